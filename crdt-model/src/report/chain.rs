//! One card's history as HQ rebuilds it from every feed, and the frauds it shows:
//!
//! - **clone**: one counter of the card used twice with different contents (two chips
//!   answering with the same keys and counters);
//! - **balance break**: an operation whose own arithmetic is wrong, or a history whose
//!   balances do not chain (what one operation left is not what the next one found).
//!
//! And what HQ answers each anomaly with (`answer`): the decision is here, pure, so
//! that the edge that triggers it (a sync, a stick, the audit command) only carries it
//! out.
//!
//! The card keeps two counters: the online counter (loads and other credits) and the
//! offline counter (purchases, grey locks, debits for unlock). Each orders its own
//! operations exactly; how the two interleave is found from the balances themselves
//! (terminal clocks drift, so the card time only breaks ties). The balance chain is
//! checked only once each counter's operations are contiguous from 0, so a history with
//! a hole in it (an entry still on its way, in whatever order feeds arrive) raises
//! nothing until the hole is filled.

use super::totals::TxnClass;
pub use crate::body::CounterSpace;
use crate::body::{
    Alarm, AlarmKind, BlacklistEvent, BlockReason, Body, CardTxn, EntryRef, TxnKind,
};
use crate::hlc::Hlc;
use crate::ids::{CardAsn, CardTime};
use crate::money::Money;
use crate::sign::Hash;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AnomalyKind {
    CloneSuspected,
    BalanceBreak,
    BadTac,
    /// A grey lock open longer than the network allows (found at the lock).
    StaleGreyLock,
}

impl AnomalyKind {
    pub fn name(self) -> &'static str {
        match self {
            AnomalyKind::CloneSuspected => "clone suspected",
            AnomalyKind::BalanceBreak => "balance break",
            AnomalyKind::BadTac => "bad TAC",
            AnomalyKind::StaleGreyLock => "stale grey lock",
        }
    }

    /// Whether the card is blocked for it: frauds are; a stale grey lock is a station
    /// that died mid-fill, so the card is still good and the lock still completable.
    pub fn blocks(self) -> bool {
        !matches!(self, AnomalyKind::StaleGreyLock)
    }

    pub fn alarm(self) -> AlarmKind {
        match self {
            AnomalyKind::CloneSuspected => AlarmKind::CloneSuspected,
            AnomalyKind::BalanceBreak => AlarmKind::BalanceBreak,
            AnomalyKind::BadTac => AlarmKind::BadTac,
            AnomalyKind::StaleGreyLock => AlarmKind::GreyLockStale,
        }
    }
}

/// What HQ appends to answer one anomaly: an alarm naming the card, and for a fraud a
/// network-wide block of the card unless it is `blocked` already (by an earlier answer
/// or by anyone's block).
pub fn answer(a: &Anomaly, blocked: bool) -> Vec<Body> {
    let mut bodies = vec![Body::Alarm(Alarm {
        kind: a.kind.alarm(),
        asn: Some(a.asn),
        detail: a.detail.clone(),
    })];
    if a.kind.blocks() && !blocked {
        bodies.push(Body::Blacklist(BlacklistEvent::Block {
            asn: a.asn,
            reason: BlockReason::Fraud,
            operator: None,
        }));
    }
    bodies
}

/// Something wrong with one card, found at one operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anomaly {
    pub asn: CardAsn,
    pub kind: AnomalyKind,
    /// The operation it was found at.
    pub at: EntryRef,
    pub detail: String,
}

/// What the history keeps of one operation. A store keeps one row per link, so that an
/// operation writes its own link and not the card's whole history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    at: EntryRef,
    digest: Hash,
    card_time: CardTime,
    before: Money,
    after: Money,
}

/// One card's history: every counted operation by counter, and its marks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardChain {
    links: BTreeMap<(CounterSpace, u16), Link>,
    marks: ChainMarks,
}

/// The history's state beside its links: the anomalies already reported (so each is
/// reported once) and the grey locks still open. A few bytes per anomaly and per grey
/// lock, stored as one value per card.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainMarks {
    reported: BTreeSet<(AnomalyKind, Option<CounterSpace>, u16)>,
    /// Grey lock entries with when they were logged and the counter they used. One lock
    /// may be logged twice (its own site's entry and another site's completion of the
    /// same intent), and a node may hold only one of the two: so the counter, not the
    /// entry, identifies a lock.
    locks: BTreeMap<EntryRef, (Hlc, u16)>,
    /// Counters of the locks a debit for unlock completed. A grey-locked card refuses
    /// everything but the debit for unlock, so that debit uses the lock's counter + 1.
    /// A completed lock leaves `locks`, whichever of the two arrived first.
    unlocked: BTreeSet<u16>,
}

fn digest(t: &CardTxn) -> Hash {
    Hash::of(&postcard::to_stdvec(t).expect("serializing to a Vec cannot fail"))
}

/// Whether an operation's own balances agree with its kind and amount.
fn arithmetic_holds(t: &CardTxn) -> bool {
    let (b, a, x) = (t.balance_before, t.balance_after, t.amount);
    match TxnClass::of(&t.kind) {
        TxnClass::Purchase | TxnClass::DebitForUnlock | TxnClass::Return => {
            b.checked_sub(x) == Ok(a)
        }
        TxnClass::Load | TxnClass::Refund | TxnClass::Reversal => b.checked_add(x) == Ok(a),
        TxnClass::GreyLock => a == b,
        _ => true,
    }
}

impl CardChain {
    /// Folds one operation in and returns the anomalies it newly shows. Folding the
    /// same set of operations in any order ends in the same history and reports the
    /// same clones and breaks.
    pub fn apply(&mut self, at: EntryRef, hlc: Hlc, t: &CardTxn) -> Vec<Anomaly> {
        let mut found = Vec::new();
        match (&t.kind, t.refers_to) {
            (TxnKind::GreyLock, _) => {
                if !self.marks.unlocked.contains(&t.card_counter) {
                    self.marks.locks.insert(at, (hlc, t.card_counter));
                }
            }
            (TxnKind::DebitForUnlock, _) => {
                if let Some(lock) = t.card_counter.checked_sub(1) {
                    self.marks.unlocked.insert(lock);
                    self.marks.locks.retain(|_, (_, counter)| *counter != lock);
                }
            }
            _ => {}
        }
        let Some(space) = t.kind.counter_space() else {
            return found;
        };
        let mut report = |chain: &mut CardChain, kind, detail: String| {
            if chain
                .marks
                .reported
                .insert((kind, Some(space), t.card_counter))
            {
                found.push(Anomaly {
                    asn: t.asn,
                    kind,
                    at,
                    detail,
                });
            }
        };
        if !arithmetic_holds(t) {
            report(
                self,
                AnomalyKind::BalanceBreak,
                format!(
                    "{} of {} took the balance from {} to {}",
                    t.kind.name(),
                    t.amount,
                    t.balance_before,
                    t.balance_after
                ),
            );
        }
        let link = Link {
            at,
            digest: digest(t),
            card_time: t.card_time,
            before: t.balance_before,
            after: t.balance_after,
        };
        let key = (space, t.card_counter);
        match self.links.get(&key) {
            Some(held) if held.digest != link.digest => {
                let detail = format!(
                    "counter {} used twice: entries {}#{} and {}#{}",
                    t.card_counter,
                    held.at.origin.short(),
                    held.at.seq,
                    at.origin.short(),
                    at.seq
                );
                // Keep the smaller digest, so that every arrival order keeps the same one.
                if link.digest < held.digest {
                    self.links.insert(key, link);
                }
                report(self, AnomalyKind::CloneSuspected, detail);
            }
            Some(_) => {}
            None => {
                self.links.insert(key, link);
            }
        }
        for (space, counter, detail) in self.breaks() {
            if self
                .marks
                .reported
                .insert((AnomalyKind::BalanceBreak, Some(space), counter))
            {
                found.push(Anomaly {
                    asn: t.asn,
                    kind: AnomalyKind::BalanceBreak,
                    at: self.links[&(space, counter)].at,
                    detail,
                });
            }
        }
        found
    }

    /// Whether one counter's operations have no hole: a chip's counters start at 0, so
    /// any number missing from 0 to the last is an operation still on its way.
    fn contiguous(&self, space: CounterSpace) -> bool {
        let held = self.links.range((space, 0)..=(space, u16::MAX));
        match held.clone().next_back() {
            None => true,
            Some(((_, last), _)) => usize::from(*last) + 1 == held.count(),
        }
    }

    /// Walks both counters' operations, merging them by balance: the next operation is
    /// the one (of the next online and the next offline) that starts from the balance
    /// the last one left. Where neither does, the earlier by card time is a break.
    fn breaks(&self) -> Vec<(CounterSpace, u16, String)> {
        if !self.contiguous(CounterSpace::Online) || !self.contiguous(CounterSpace::Offline) {
            return Vec::new();
        }
        let side = |s: CounterSpace| -> Vec<(u16, &Link)> {
            self.links
                .range((s, 0)..=(s, u16::MAX))
                .map(|(k, l)| (k.1, l))
                .collect()
        };
        let (on, off) = (side(CounterSpace::Online), side(CounterSpace::Offline));
        let (mut i, mut j) = (0, 0);
        let mut balance: Option<Money> = None;
        let mut out = Vec::new();
        while i < on.len() || j < off.len() {
            let a = on.get(i);
            let b = off.get(j);
            let fits = |l: Option<&(u16, &Link)>| match (l, balance) {
                (Some((_, l)), Some(bal)) => l.before == bal,
                (Some((_, l)), None) => l.before == Money::ZERO,
                (None, _) => false,
            };
            let earlier_online = match (a, b) {
                (Some(x), Some(y)) => x.1.card_time <= y.1.card_time,
                (Some(_), None) => true,
                _ => false,
            };
            let take_online = match (fits(a), fits(b)) {
                (true, false) => true,
                (false, true) => false,
                (true, true) => earlier_online,
                (false, false) => {
                    if let Some(bal) = balance {
                        let (space, (counter, l)) = if earlier_online {
                            (CounterSpace::Online, a.expect("online exists"))
                        } else {
                            (CounterSpace::Offline, b.expect("offline exists"))
                        };
                        out.push((
                            space,
                            *counter,
                            format!(
                                "the card had {bal} but the operation at counter {counter} found {}",
                                l.before
                            ),
                        ));
                    }
                    earlier_online
                }
            };
            let l = if take_online {
                i += 1;
                a.expect("online exists").1
            } else {
                j += 1;
                b.expect("offline exists").1
            };
            balance = Some(l.after);
        }
        out
    }

    /// The balance the card should hold after the last operation HQ knows of.
    pub fn shadow_balance(&self) -> Option<Money> {
        self.links
            .values()
            .max_by_key(|l| l.card_time)
            .map(|l| l.after)
    }

    /// Grey locks not yet completed by a debit for unlock, with when they were logged.
    /// A lock logged twice is listed once, as its earliest entry.
    pub fn open_locks(&self) -> Vec<(EntryRef, Hlc)> {
        let mut open: BTreeMap<u16, (Hlc, EntryRef)> = BTreeMap::new();
        for (r, (h, counter)) in &self.marks.locks {
            // Histories stored before schema v8 kept completed locks in `locks`.
            if self.marks.unlocked.contains(counter) {
                continue;
            }
            let earliest = open.entry(*counter).or_insert((*h, *r));
            *earliest = (*earliest).min((*h, *r));
        }
        open.into_values().map(|(h, r)| (r, h)).collect()
    }

    /// The history from its stored parts: its links by counter, and its marks.
    pub fn from_parts(
        links: impl IntoIterator<Item = (CounterSpace, u16, Link)>,
        marks: ChainMarks,
    ) -> CardChain {
        CardChain {
            links: links.into_iter().map(|(s, c, l)| ((s, c), l)).collect(),
            marks,
        }
    }

    /// The link held for one counter.
    pub fn link(&self, space: CounterSpace, counter: u16) -> Option<&Link> {
        self.links.get(&(space, counter))
    }

    pub fn links(&self) -> impl Iterator<Item = (CounterSpace, u16, &Link)> {
        self.links.iter().map(|((s, c), l)| (*s, *c, l))
    }

    pub fn marks(&self) -> &ChainMarks {
        &self.marks
    }

    /// Operations held, by counter.
    pub fn len(&self) -> usize {
        self.links.len()
    }

    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }
}
