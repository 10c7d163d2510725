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

/// One card's history: its counted operations by counter, and its marks. Whole, it
/// holds every link; partial (`CardChain::partial`), only the link of the counter being
/// folded, which is enough unless that operation changes the walk before its end.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CardChain {
    links: BTreeMap<(CounterSpace, u16), Link>,
    marks: ChainMarks,
    partial: bool,
}

/// The history's state beside its links: the anomalies already reported (so each is
/// reported once), the grey locks still open and where the balance walk stands. A few
/// bytes per anomaly and per grey lock, stored as one value per card.
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
    walk: Walk,
}

/// The links held per counter space (online, offline) and the highest counter held,
/// which tell whether the counters are contiguous; and, when they are, the end of the
/// balance walk over all of them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Walk {
    held: [u32; 2],
    last: [Option<u16>; 2],
    end: Option<WalkEnd>,
}

/// The end of the balance walk: the balance the last step left, and the walk's tail,
/// the steps after the other counter's last link (all of one counter, taken with no
/// rival). A new link at the end of one counter changes no step before it unless it
/// would have beaten a tail step: it is on the other counter, and either some tail step
/// did not fit its balance or the new link is not later than every tail step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct WalkEnd {
    balance: Money,
    tail: CounterSpace,
    tail_latest: CardTime,
    tail_fits: bool,
}

/// What `ChainMarks` held before the walk was kept: reported anomalies, grey locks and
/// unlocked counters. Stores read their older histories through it.
pub type MarksV7 = (
    BTreeSet<(AnomalyKind, Option<CounterSpace>, u16)>,
    BTreeMap<EntryRef, (Hlc, u16)>,
    BTreeSet<u16>,
);

impl From<MarksV7> for ChainMarks {
    fn from((reported, locks, unlocked): MarksV7) -> ChainMarks {
        ChainMarks {
            reported,
            locks,
            unlocked,
            walk: Walk::default(),
        }
    }
}

impl ChainMarks {
    /// Whether the history may hold a link for `counter`: not if it is above every
    /// counter held, the usual case of a new operation, whose link need not be looked up.
    pub fn may_hold(&self, space: CounterSpace, counter: u16) -> bool {
        self.walk.last[side(space)].is_some_and(|last| counter <= last)
    }
}

fn side(space: CounterSpace) -> usize {
    match space {
        CounterSpace::Online => 0,
        CounterSpace::Offline => 1,
    }
}

impl Walk {
    fn contiguous(&self, s: usize) -> bool {
        match self.last[s] {
            None => self.held[s] == 0,
            Some(last) => u32::from(last) + 1 == self.held[s],
        }
    }

    fn walkable(&self) -> bool {
        self.contiguous(0) && self.contiguous(1)
    }

    fn add(&mut self, space: CounterSpace, counter: u16) {
        let s = side(space);
        self.held[s] += 1;
        self.last[s] = self.last[s].max(Some(counter));
    }

    /// Takes one step, `l` on `space`, from the balance the walk left (`None` before the
    /// first step). Returns the break it shows, if any.
    fn step(&mut self, space: CounterSpace, counter: u16, l: &Link) -> Option<(u16, String)> {
        let balance = self.end.map(|e| e.balance);
        let fits = l.before == balance.unwrap_or(Money::ZERO);
        let end = match self.end {
            Some(e) if e.tail == space => WalkEnd {
                balance: l.after,
                tail: space,
                tail_latest: e.tail_latest.max(l.card_time),
                tail_fits: e.tail_fits && fits,
            },
            _ => WalkEnd {
                balance: l.after,
                tail: space,
                tail_latest: l.card_time,
                tail_fits: fits,
            },
        };
        self.end = Some(end);
        match balance {
            Some(bal) if !fits => Some((
                counter,
                format!(
                    "the card had {bal} but the operation at counter {counter} found {}",
                    l.before
                ),
            )),
            _ => None,
        }
    }
}

/// How a new link changes the walk.
enum Plan {
    /// The link is held already, or loses to the one held: nothing changes.
    Keep,
    /// A counter has a hole: no walk until it is filled.
    Hole,
    /// One step at the end of the walk.
    Append,
    /// A step before the end may change: walk every link again.
    Rewalk,
}

/// Marker error: folding this operation needs every link of the card.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeedsHistory;

/// What tells two logs of one operation from a clone's: the hash of the whole operation.
pub fn txn_digest(t: &CardTxn) -> Hash {
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
    /// Folds one operation into a whole history and returns the anomalies it newly
    /// shows. Folding the same set of operations in any order ends in the same history
    /// and reports the same clones and breaks.
    pub fn apply(&mut self, at: EntryRef, hlc: Hlc, t: &CardTxn) -> Vec<Anomaly> {
        self.try_apply(at, hlc, t)
            .expect("a whole history has every link")
    }

    /// `apply`, on a partial history too: `Err(NeedsHistory)`, with nothing changed,
    /// when the operation needs links the history does not hold.
    pub fn try_apply(
        &mut self,
        at: EntryRef,
        hlc: Hlc,
        t: &CardTxn,
    ) -> Result<Vec<Anomaly>, NeedsHistory> {
        self.try_apply_digested(at, hlc, t, txn_digest(t))
    }

    /// `try_apply` with `t`'s [`txn_digest`] made already (a bulk load makes it on a
    /// thread of its own, beside the one that folds).
    pub fn try_apply_digested(
        &mut self,
        at: EntryRef,
        hlc: Hlc,
        t: &CardTxn,
        digest: Hash,
    ) -> Result<Vec<Anomaly>, NeedsHistory> {
        debug_assert_eq!(digest, txn_digest(t), "a digest of another operation");
        let link = Link {
            at,
            digest,
            card_time: t.card_time,
            before: t.balance_before,
            after: t.balance_after,
        };
        let space = t.kind.counter_space();
        let plan = space.map(|s| self.plan(s, t.card_counter, &link));
        if self.partial && matches!(plan, Some(Plan::Rewalk)) {
            return Err(NeedsHistory);
        }
        let mut found = Vec::new();
        match (&t.kind, t.refers_to) {
            (TxnKind::GreyLock, _) if !self.marks.unlocked.contains(&t.card_counter) => {
                self.marks.locks.insert(at, (hlc, t.card_counter));
            }
            (TxnKind::DebitForUnlock, _) => {
                if let Some(lock) = t.card_counter.checked_sub(1) {
                    self.marks.unlocked.insert(lock);
                    self.marks.locks.retain(|_, (_, counter)| *counter != lock);
                }
            }
            _ => {}
        }
        let (Some(space), Some(plan)) = (space, plan) else {
            return Ok(found);
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
                self.marks.walk.add(space, t.card_counter);
            }
        }
        let breaks = match plan {
            Plan::Keep => Vec::new(),
            Plan::Hole => {
                self.marks.walk.end = None;
                Vec::new()
            }
            Plan::Append => {
                let l = &self.links[&key];
                self.marks
                    .walk
                    .step(space, t.card_counter, l)
                    .map(|(counter, detail)| (space, counter, detail))
                    .into_iter()
                    .collect()
            }
            Plan::Rewalk => self.rewalk(),
        };
        for (space, counter, detail) in breaks {
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
        Ok(found)
    }

    /// How a link for `counter` on `space` would change the walk.
    fn plan(&self, space: CounterSpace, counter: u16, link: &Link) -> Plan {
        let walk = &self.marks.walk;
        match self.links.get(&(space, counter)) {
            Some(held) if held.digest == link.digest => return Plan::Keep,
            Some(held) if link.digest > held.digest => return Plan::Keep,
            Some(_) if walk.walkable() => return Plan::Rewalk,
            Some(_) => return Plan::Hole,
            None => {}
        }
        let mut after = walk.clone();
        after.add(space, counter);
        if !after.walkable() {
            return Plan::Hole;
        }
        let at_end = walk.walkable() && u32::from(counter) == walk.held[side(space)];
        let unbeaten = match walk.end {
            None => walk.held == [0, 0],
            Some(e) => e.tail == space || (e.tail_fits && link.card_time > e.tail_latest),
        };
        if at_end && unbeaten {
            Plan::Append
        } else {
            Plan::Rewalk
        }
    }

    /// Walks both counters' operations from the start, merging them by balance: the
    /// next operation is the one (of the next online and the next offline) that starts
    /// from the balance the last one left. Where neither does, the earlier by card time
    /// is a break. Leaves the walk's end in the marks.
    fn rewalk(&mut self) -> Vec<(CounterSpace, u16, String)> {
        let mut walk = Walk {
            end: None,
            ..self.marks.walk.clone()
        };
        let run = |s: CounterSpace| -> Vec<(u16, &Link)> {
            self.links
                .range((s, 0)..=(s, u16::MAX))
                .map(|(k, l)| (k.1, l))
                .collect()
        };
        let (on, off) = (run(CounterSpace::Online), run(CounterSpace::Offline));
        let (mut i, mut j) = (0, 0);
        let mut out = Vec::new();
        while i < on.len() || j < off.len() {
            let a = on.get(i);
            let b = off.get(j);
            let balance = walk.end.map(|e| e.balance);
            let fits = |l: Option<&(u16, &Link)>| {
                l.is_some_and(|(_, l)| l.before == balance.unwrap_or(Money::ZERO))
            };
            let earlier_online = match (a, b) {
                (Some(x), Some(y)) => x.1.card_time <= y.1.card_time,
                (Some(_), None) => true,
                _ => false,
            };
            let take_online = match (fits(a), fits(b)) {
                (true, false) => true,
                (false, true) => false,
                _ => earlier_online,
            };
            let (space, (counter, l)) = if take_online {
                i += 1;
                (CounterSpace::Online, a.expect("online exists"))
            } else {
                j += 1;
                (CounterSpace::Offline, b.expect("offline exists"))
            };
            if let Some((counter, detail)) = walk.step(space, *counter, l) {
                out.push((space, counter, detail));
            }
        }
        self.marks.walk = walk;
        out
    }

    /// The balance the card should hold after the last operation HQ knows of (in a
    /// whole history).
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

    /// The whole history from its stored parts: every link by counter, and its marks
    /// (whose walk is taken again from the links).
    pub fn from_parts(
        links: impl IntoIterator<Item = (CounterSpace, u16, Link)>,
        marks: ChainMarks,
    ) -> CardChain {
        let mut chain = CardChain {
            links: links.into_iter().map(|(s, c, l)| ((s, c), l)).collect(),
            marks: ChainMarks {
                walk: Walk::default(),
                ..marks
            },
            partial: false,
        };
        for &(space, counter) in chain.links.keys() {
            chain.marks.walk.add(space, counter);
        }
        if chain.marks.walk.walkable() {
            chain.rewalk();
        }
        chain
    }

    /// A history from its marks and the link of one counter (if held): what folding an
    /// operation on that counter needs, unless `try_apply` says otherwise.
    pub fn partial(link: Option<(CounterSpace, u16, Link)>, marks: ChainMarks) -> CardChain {
        CardChain {
            links: link.into_iter().map(|(s, c, l)| ((s, c), l)).collect(),
            marks,
            partial: true,
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

    /// The operations at which a walk from scratch breaks.
    #[cfg(test)]
    pub(crate) fn walk_breaks(&self) -> Vec<EntryRef> {
        let mut scratch = self.clone();
        if !scratch.marks.walk.walkable() {
            return Vec::new();
        }
        let breaks = scratch.rewalk();
        breaks
            .into_iter()
            .map(|(s, n, _)| scratch.links[&(s, n)].at)
            .collect()
    }

    /// Operations held, by counter (in a whole history).
    pub fn len(&self) -> usize {
        self.links.len()
    }

    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }
}
