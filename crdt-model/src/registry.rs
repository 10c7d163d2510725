//! The card registry fold: one record per card, each field last-writer-wins by the
//! (HLC, origin, seq) of the event that set it, so any delivery order gives one answer.

use crate::body::{CardChange, CardEvent, CardStatus, EntryRef, Holder};
use crate::hlc::Hlc;
use crate::ids::{BusinessDay, CardAsn, MemberClass, SiteId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The total order of writes: HLC first, then the writer, then its sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Stamp {
    pub hlc: Hlc,
    pub at: EntryRef,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lww<T> {
    pub value: T,
    pub stamp: Stamp,
}

fn set<T: Clone>(field: &mut Option<Lww<T>>, value: &T, stamp: Stamp) {
    if field.as_ref().is_none_or(|f| f.stamp < stamp) {
        *field = Some(Lww {
            value: value.clone(),
            stamp,
        });
    }
}

/// What the network knows about one card (the balance lives on the card; its shadow is
/// computed from the ledger).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardRecord {
    pub class: Option<Lww<MemberClass>>,
    pub expiry: Option<Lww<BusinessDay>>,
    pub issuer: Option<Lww<SiteId>>,
    pub holder: Option<Lww<Option<Holder>>>,
    pub status: Option<Lww<CardStatus>>,
}

impl CardRecord {
    pub fn apply(&mut self, change: &CardChange, stamp: Stamp) {
        match change {
            CardChange::Personalized {
                class,
                expiry,
                issuer,
            } => {
                set(&mut self.class, class, stamp);
                set(&mut self.expiry, expiry, stamp);
                set(&mut self.issuer, issuer, stamp);
                set(&mut self.status, &CardStatus::Blank, stamp);
            }
            CardChange::Holder(h) => set(&mut self.holder, h, stamp),
            CardChange::Status(s) => set(&mut self.status, s, stamp),
            CardChange::Class(c) => set(&mut self.class, c, stamp),
        }
    }

    /// A named card has a holder on record; only named cards can be reported lost.
    pub fn is_named(&self) -> bool {
        self.holder.as_ref().is_some_and(|h| h.value.is_some())
    }

    pub fn status(&self) -> Option<&CardStatus> {
        self.status.as_ref().map(|s| &s.value)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CardRegistry {
    cards: BTreeMap<CardAsn, CardRecord>,
}

impl CardRegistry {
    pub fn apply(&mut self, event: &CardEvent, stamp: Stamp) {
        self.cards
            .entry(event.asn)
            .or_default()
            .apply(&event.change, stamp);
    }

    pub fn get(&self, asn: &CardAsn) -> Option<&CardRecord> {
        self.cards.get(asn)
    }

    pub fn len(&self) -> usize {
        self.cards.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cards.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::NodeId;

    fn stamp(ms: u64, o: u8) -> Stamp {
        Stamp {
            hlc: Hlc::new(ms, 0),
            at: EntryRef {
                origin: NodeId([o; 32]),
                seq: 1,
            },
        }
    }

    #[test]
    fn the_later_holder_wins_whatever_arrives_first() {
        let asn = CardAsn([1; 8]);
        let h = |n: &str| CardEvent {
            asn,
            change: CardChange::Holder(Some(Holder {
                name: n.into(),
                id_number: String::new(),
                phone: String::new(),
            })),
        };
        let (old, new) = ((h("Li"), stamp(10, 1)), (h("Wang"), stamp(20, 2)));
        let mut a = CardRegistry::default();
        a.apply(&old.0, old.1);
        a.apply(&new.0, new.1);
        let mut b = CardRegistry::default();
        b.apply(&new.0, new.1);
        b.apply(&old.0, old.1);
        assert_eq!(a, b);
        assert_eq!(
            a.get(&asn)
                .unwrap()
                .holder
                .as_ref()
                .unwrap()
                .value
                .as_ref()
                .unwrap()
                .name,
            "Wang"
        );
    }
}
