//! Grey locks left open: how long one may stay open before HQ calls it stale (a setting
//! of the network registry, `hq/grey_lock_max_age_min`, 24 hours unless HQ sets it), and
//! which open locks are stale at a given instant. A station that died mid-fill leaves its
//! lock open until the card comes back; one left too long is money nobody collects.

use super::chain::{Anomaly, AnomalyKind};
use crate::body::EntryRef;
use crate::docs::{as_i64, scalars};
use crate::hlc::Hlc;
use crate::ids::CardAsn;
use automerge::transaction::Transactable;
use automerge::{AutoCommit, AutomergeError, ROOT};

/// The network registry key of the setting, in minutes.
pub const MAX_AGE_KEY: &str = "hq/grey_lock_max_age_min";
/// A lock open longer than a day is stale unless HQ says otherwise: a fill that has not
/// been completed by the next day is one nobody will complete without being told.
pub const DEFAULT_MAX_AGE_MIN: u64 = 24 * 60;

/// Sets how many minutes a grey lock may stay open (at least one).
pub fn set_max_age_min(doc: &mut AutoCommit, minutes: u64) -> Result<(), AutomergeError> {
    let minutes = i64::try_from(minutes.max(1)).unwrap_or(i64::MAX);
    doc.put(ROOT, MAX_AGE_KEY, minutes)
}

/// The allowed age of an open grey lock in ms, from the network registry (the default
/// if it is not set or not a positive number).
pub fn max_age_ms(doc: &AutoCommit) -> u64 {
    let minutes = scalars(doc)
        .into_iter()
        .find(|(k, _)| k == MAX_AGE_KEY)
        .and_then(|(_, v)| as_i64(&v))
        .and_then(|m| u64::try_from(m).ok())
        .filter(|m| *m > 0)
        .unwrap_or(DEFAULT_MAX_AGE_MIN);
    minutes.saturating_mul(60_000)
}

/// The grey locks among `open` (lock, when logged) older than `max_age_ms` at `now_ms`.
pub fn stale_locks<T: Clone>(open: &[(T, Hlc)], now_ms: u64, max_age_ms: u64) -> Vec<T> {
    open.iter()
        .filter(|(_, hlc)| is_stale(*hlc, now_ms, max_age_ms))
        .map(|(r, _)| r.clone())
        .collect()
}

pub fn is_stale(locked: Hlc, now_ms: u64, max_age_ms: u64) -> bool {
    now_ms.saturating_sub(locked.millis) > max_age_ms
}

/// The anomaly HQ answers a stale lock with: one per lock (it is keyed by the lock's
/// entry), whatever how often the locks are checked.
pub fn stale_lock_anomaly(asn: CardAsn, lock: EntryRef, locked: Hlc, now_ms: u64) -> Anomaly {
    let open_min = now_ms.saturating_sub(locked.millis) / 60_000;
    Anomaly {
        asn,
        kind: AnomalyKind::StaleGreyLock,
        at: lock,
        detail: format!(
            "grey lock {}#{} open for {open_min} min: the fill was never completed; complete it when the card is next presented",
            lock.origin.short(),
            lock.seq
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::NodeId;

    #[test]
    fn the_allowed_age_defaults_to_a_day_and_follows_the_registry() {
        let mut doc = AutoCommit::new();
        assert_eq!(max_age_ms(&doc), 24 * 3_600_000);
        set_max_age_min(&mut doc, 90).unwrap();
        assert_eq!(max_age_ms(&doc), 90 * 60_000);
        doc.put(ROOT, MAX_AGE_KEY, -5).unwrap();
        assert_eq!(max_age_ms(&doc), 24 * 3_600_000, "nonsense falls back");
    }

    #[test]
    fn a_lock_is_stale_only_once_older_than_the_allowed_age() {
        let lock = EntryRef {
            origin: NodeId([1; 32]),
            seq: 4,
        };
        let open = [(lock, Hlc::new(1_000, 0))];
        assert!(stale_locks(&open, 61_000, 60_000).is_empty());
        assert_eq!(stale_locks(&open, 61_001, 60_000), vec![lock]);
        let a = stale_lock_anomaly(CardAsn([2; 8]), lock, Hlc::new(1_000, 0), 121_000);
        assert_eq!(a.kind, AnomalyKind::StaleGreyLock);
        assert!(a.detail.contains("open for 2 min"), "{}", a.detail);
        assert_eq!(a.at, lock);
    }
}
