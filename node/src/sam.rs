//! The node's software SAM: the drivers' `SoftwareSam` with the purchase master key
//! this node imported from HQ and its terminal sequence reserved durably in the store
//! before each use, so a crash never reuses a sequence number.

use crate::keys::{self, KeyError};
use crate::store::Store;
use cardmesh_drivers::sam::{SeqStore, SeqStoreError, SoftwareSam};
use cardmesh_drivers::types::TerminalId as CardTerminalId;
use cardmesh_model::{NodeKey, TerminalId};

/// Terminal sequence numbers kept in the node's store.
pub struct StoreSeq {
    store: Store,
    terminal: TerminalId,
}

impl SeqStore for StoreSeq {
    fn reserve_next(&mut self) -> Result<u32, SeqStoreError> {
        self.store
            .next_term_seq(&self.terminal)
            .map_err(|e| SeqStoreError(Box::new(e)))
    }
}

/// A software SAM for `terminal`, holding this node's purchase key.
pub fn software_sam(
    store: &Store,
    key: &NodeKey,
    terminal: TerminalId,
) -> Result<SoftwareSam<StoreSeq>, KeyError> {
    let purchase = keys::held(store, key)?
        .purchase()
        .ok_or(KeyError::NoCeremony)?;
    let seq = StoreSeq {
        store: store.clone(),
        terminal,
    };
    Ok(SoftwareSam::new(CardTerminalId(terminal.0), purchase, seq))
}
