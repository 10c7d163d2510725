//! The blacklist fold. Per card, the set of block events and the set of block events
//! that clears have named. A card is blocked while any block is not named by a clear.
//! A clear can only name blocks its writer had seen, so a block concurrent with a clear
//! (or after it) keeps the card blocked: block wins, in any delivery order.

use crate::body::{BlacklistEvent, BlockReason, EntryRef};
use crate::hlc::Hlc;
use crate::ids::CardAsn;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A block that no clear has lifted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    pub at: EntryRef,
    pub hlc: Hlc,
    pub reason: BlockReason,
}

/// Everything known about one card's blacklist history; the unit the store keeps per card.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardBlocks {
    blocks: BTreeMap<EntryRef, (Hlc, BlockReason)>,
    cleared: BTreeSet<EntryRef>,
}

impl CardBlocks {
    /// Folds one event in. Idempotent and commutative with every other event.
    pub fn apply(&mut self, at: EntryRef, hlc: Hlc, event: &BlacklistEvent) {
        match event {
            BlacklistEvent::Block { reason, .. } => {
                self.blocks.insert(at, (hlc, reason.clone()));
            }
            BlacklistEvent::Clear { clears, .. } => self.cleared.extend(clears.iter().copied()),
        }
    }

    /// The blocks still in force, oldest first.
    pub fn open_blocks(&self) -> Vec<Block> {
        let mut open: Vec<Block> = self
            .blocks
            .iter()
            .filter(|(r, _)| !self.cleared.contains(r))
            .map(|(r, (hlc, reason))| Block {
                at: *r,
                hlc: *hlc,
                reason: reason.clone(),
            })
            .collect();
        open.sort_by_key(|b| (b.hlc, b.at));
        open
    }

    pub fn is_blocked(&self) -> bool {
        self.blocks.keys().any(|r| !self.cleared.contains(r))
    }
}

/// The blacklist of the whole network, in memory (the node keeps the same per-card
/// state in its store).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Blacklist {
    cards: BTreeMap<CardAsn, CardBlocks>,
}

impl Blacklist {
    pub fn apply(&mut self, at: EntryRef, hlc: Hlc, event: &BlacklistEvent) {
        self.cards
            .entry(event.asn())
            .or_default()
            .apply(at, hlc, event);
    }

    pub fn card(&self, asn: &CardAsn) -> Option<&CardBlocks> {
        self.cards.get(asn)
    }

    pub fn is_blocked(&self, asn: &CardAsn) -> bool {
        self.cards.get(asn).is_some_and(CardBlocks::is_blocked)
    }

    pub fn blocked_cards(&self) -> impl Iterator<Item = &CardAsn> {
        self.cards
            .iter()
            .filter(|(_, c)| c.is_blocked())
            .map(|(a, _)| a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::NodeId;
    use proptest::prelude::*;

    fn r(o: u8, seq: u64) -> EntryRef {
        EntryRef {
            origin: NodeId([o; 32]),
            seq,
        }
    }

    fn block(asn: CardAsn) -> BlacklistEvent {
        BlacklistEvent::Block {
            asn,
            reason: BlockReason::Lost,
            operator: None,
        }
    }

    fn clear(asn: CardAsn, clears: Vec<EntryRef>) -> BlacklistEvent {
        BlacklistEvent::Clear {
            asn,
            clears,
            note: String::new(),
            operator: None,
        }
    }

    #[test]
    fn a_clear_after_the_block_unblocks() {
        let asn = CardAsn([1; 8]);
        let mut bl = Blacklist::default();
        bl.apply(r(2, 1), Hlc::new(10, 0), &block(asn));
        assert!(bl.is_blocked(&asn));
        bl.apply(r(1, 1), Hlc::new(20, 0), &clear(asn, vec![r(2, 1)]));
        assert!(!bl.is_blocked(&asn));
    }

    proptest! {
        /// Block b1 is seen by the clear; block b2 is concurrent with it. In every
        /// delivery order the card ends blocked by b2 alone.
        #[test]
        fn concurrent_block_and_clear_end_blocked_in_any_order(order in Just(vec![0usize, 1, 2]).prop_shuffle()) {
            let asn = CardAsn([9; 8]);
            let events = [
                (r(2, 1), Hlc::new(10, 0), block(asn)),
                (r(3, 4), Hlc::new(30, 0), block(asn)),
                (r(1, 7), Hlc::new(40, 0), clear(asn, vec![r(2, 1)])),
            ];
            let mut bl = Blacklist::default();
            for i in order {
                let (at, hlc, e) = &events[i];
                bl.apply(*at, *hlc, e);
            }
            let open = bl.card(&asn).unwrap().open_blocks();
            prop_assert_eq!(open.len(), 1);
            prop_assert_eq!(open[0].at, r(3, 4));
        }
    }
}
