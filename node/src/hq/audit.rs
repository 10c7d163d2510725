//! HQ's audit: verifies the TAC of every card transaction it has not verified yet (HQ
//! alone holds the TAC master key), then answers every fraud the card histories show —
//! a cloned counter, a balance break, a bad TAC — with an alarm and a network-wide block
//! in HQ's feed, which every link then carries to every node; and raises one alarm for
//! each grey lock open longer than allowed. What to answer is the model's decision
//! (`report::answer`); `watch` runs this after every batch that arrives.
//!
//! The audit is resumable and idempotent: which transactions were verified is a version
//! vector kept in the store, and each anomaly is answered once (`Store::raise`), so a
//! crash at any point only means some TACs are verified again.

use super::HqError;
use crate::store::{OpenLock, Store};
use cardmesh_drivers::constants::TxType;
use cardmesh_drivers::crypto::{Key16, TacFields, verify_tac};
use cardmesh_drivers::types::{Asn, BcdDateTime, Mac4, TerminalId};
use cardmesh_model::body::{BlacklistEvent, Body, CardTxn, EntryRef, TxnKind};
use cardmesh_model::codec::{self, Kind};
use cardmesh_model::report::locks::{is_stale, stale_lock_anomaly};
use cardmesh_model::report::{Anomaly, AnomalyKind, answer};
use cardmesh_model::{CardAsn, Entry, FeedRange, VersionVector};
use std::collections::BTreeSet;

/// Config key of the version vector of transactions whose TAC was verified.
const CURSOR: &str = "hq.audit.verified";
/// Entries read per batch while verifying.
const BATCH: usize = 10_000;

/// What the card computed a transaction's TAC over, if the transaction ran on the card
/// with a TAC: purchases, grey locks (amount 0) and debits for unlock are debits; loads
/// are credits. Refunds and reversals go back onto the card as loads; a card's return
/// empties it with a purchase of its whole balance. Issuing and replacing a card run no
/// card transaction and carry no TAC.
pub fn tac_fields(t: &CardTxn) -> Option<TacFields> {
    let amount = u32::try_from(t.amount.fen()).ok()?;
    let terminal = TerminalId(t.terminal.0);
    let datetime = BcdDateTime(t.card_time.0);
    let debit = |tx_type, amount| TacFields::Debit {
        tx_type,
        amount,
        terminal,
        term_seq: t.term_seq,
        datetime,
    };
    match t.kind {
        TxnKind::Purchase | TxnKind::Return { .. } => Some(debit(TxType::Purchase, amount)),
        TxnKind::GreyLock => Some(debit(TxType::GreyLock, 0)),
        TxnKind::DebitForUnlock => Some(debit(TxType::UnlockDebit, amount)),
        TxnKind::Load | TxnKind::Refund | TxnKind::Reversal => Some(TacFields::Load {
            new_balance: u32::try_from(t.balance_after.fen()).ok()?,
            online_ctr: t.card_counter,
            amount,
            terminal,
            datetime,
        }),
        TxnKind::Issue { .. } | TxnKind::Replace { .. } => None,
    }
}

/// Whether a transaction's TAC is one its card computed. Amounts a card cannot hold
/// (negative, or beyond 4 bytes) cannot have a valid TAC.
pub fn tac_valid(tac_master: &Key16, t: &CardTxn) -> bool {
    let out_of_range = |m: cardmesh_model::Money| u32::try_from(m.fen()).is_err();
    if out_of_range(t.amount) || out_of_range(t.balance_after) {
        return false;
    }
    match tac_fields(t) {
        Some(fields) => verify_tac(tac_master, &Asn(t.asn.0), &fields, &Mac4(t.tac)),
        None => true,
    }
}

/// What one audit did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditReport {
    /// Card transactions whose TAC was checked in this run.
    pub verified: u64,
    pub bad_tacs: u64,
    /// Entries appended (alarms and blocks).
    pub appended: Vec<Entry>,
    /// Cards this run blocked.
    pub blocked: Vec<CardAsn>,
    /// Grey locks open longer than the allowed age.
    pub stale_locks: Vec<OpenLock>,
}

/// Runs the audit at HQ. `now_ms` and `max_lock_age_ms` decide which open grey locks are
/// reported as stale.
pub fn audit(
    store: &Store,
    tac_master: &Key16,
    now_ms: u64,
    max_lock_age_ms: u64,
) -> Result<AuditReport, HqError> {
    super::require_hq(store)?;
    let mut report = AuditReport::default();
    let mut cursor: VersionVector = match store.config_get(CURSOR)? {
        Some(b) => codec::decode(Kind::View, &b).map_err(|e| HqError::Corrupt(e.to_string()))?,
        None => VersionVector::new(),
    };
    let held = store.version_vector()?;
    let mut found: Vec<Anomaly> = Vec::new();
    for (origin, &head) in held.iter() {
        let mut next = cursor.get(origin) + 1;
        while next <= head {
            let batch = store.entries(
                FeedRange {
                    origin: *origin,
                    from: next,
                    to: head,
                },
                BATCH,
            )?;
            let Some(last) = batch.last() else { break };
            next = last.seq + 1;
            for e in &batch {
                // A completion carries the card's own record of another site's intent.
                if let Some(t) = e.body.card_txn() {
                    report.verified += 1;
                    if !tac_valid(tac_master, t) {
                        report.bad_tacs += 1;
                        found.push(bad_tac(e.entry_ref(), t));
                    }
                }
            }
        }
    }
    for (a, answered) in store.anomalies()? {
        if !answered {
            found.push(a);
        }
    }
    let stale: Vec<OpenLock> = store
        .open_grey_locks()?
        .into_iter()
        .filter(|l| is_stale(l.hlc, now_ms, max_lock_age_ms))
        .collect();
    for l in &stale {
        found.push(stale_lock_anomaly(l.asn, l.at, l.hlc, now_ms));
    }
    let mut blocking: BTreeSet<CardAsn> = BTreeSet::new();
    let mut answers = Vec::new();
    for a in found {
        let blocked = a.kind.blocks() && (store.is_blocked(&a.asn)? || !blocking.insert(a.asn));
        let bodies = answer(&a, blocked);
        answers.push((a, bodies));
    }
    report.appended = store.raise(answers)?;
    report.blocked = report
        .appended
        .iter()
        .filter_map(|e| match &e.body {
            Body::Blacklist(BlacklistEvent::Block { asn, .. }) => Some(*asn),
            _ => None,
        })
        .collect();
    for (origin, &head) in held.iter() {
        cursor.advance(*origin, head);
    }
    store.config_set(CURSOR, &codec::encode(Kind::View, &cursor))?;
    report.stale_locks = stale;
    Ok(report)
}

fn bad_tac(at: EntryRef, t: &CardTxn) -> Anomaly {
    Anomaly {
        asn: t.asn,
        kind: AnomalyKind::BadTac,
        at,
        detail: format!(
            "{} of {} at terminal {} (counter {}) carries a TAC the card did not compute",
            t.kind.name(),
            t.amount,
            t.terminal,
            t.card_counter
        ),
    }
}
