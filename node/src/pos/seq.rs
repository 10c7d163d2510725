//! Terminal sequence numbers for a till's SAM without a commit of their own: a number
//! is handed out from memory and becomes durable in the commit of the intent that uses
//! it (the store folds an intent's number into its terminal's counter). A number whose
//! intent never committed was never sent to a card, so handing it out again after a
//! crash is harmless; a number a card has seen is always durable first.

use crate::keys::{self, KeyError};
use crate::store::Store;
use cardmesh_drivers::sam::{SeqStore, SeqStoreError, SoftwareSam};
use cardmesh_drivers::types::TerminalId as CardTerminalId;
use cardmesh_model::{NodeKey, TerminalId};

/// The next number after both the store's durable one and the last handed out here.
pub struct IntentSeq {
    store: Store,
    terminal: TerminalId,
    last: u32,
}

impl SeqStore for IntentSeq {
    fn reserve_next(&mut self) -> Result<u32, SeqStoreError> {
        let durable = self
            .store
            .last_term_seq(&self.terminal)
            .map_err(|e| SeqStoreError(Box::new(e)))?;
        let next = durable.max(self.last).checked_add(1).ok_or_else(|| {
            SeqStoreError(Box::new(crate::store::StoreError::TermSeqExhausted(
                self.terminal,
            )))
        })?;
        self.last = next;
        Ok(next)
    }
}

/// A software SAM for a till of this node, holding its purchase key, with sequence
/// numbers made durable by the intents that use them.
pub fn till_sam(
    store: &Store,
    key: &NodeKey,
    terminal: TerminalId,
) -> Result<SoftwareSam<IntentSeq>, KeyError> {
    let purchase = keys::held(store, key)?
        .purchase()
        .ok_or(KeyError::NoCeremony)?;
    let seq = IntentSeq {
        store: store.clone(),
        terminal,
        last: 0,
    };
    Ok(SoftwareSam::new(CardTerminalId(terminal.0), purchase, seq))
}
