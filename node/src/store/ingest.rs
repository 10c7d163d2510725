//! Acceptance of entries into the store: exactly `Replica::ingest` — duplicates counted,
//! forks and gaps refused, HQ's feed first, each origin's run checked by
//! `entry::check_run` and applied as far as it is good — with the feeds, heads and views
//! written in the caller's transaction.

use super::error::StoreError;
use super::schema;
use super::writer::Ctx;
use cardmesh_model::entry::{
    CheckedRun, check_authority, check_checked_run, check_run, thin_signatures,
};
use cardmesh_model::replica::IngestReport;
use cardmesh_model::report;
use cardmesh_model::{Entry, EntryError, FeedHead, Hash, NodeId};
use redb::ReadableTable;
use std::collections::BTreeMap;

/// Verifies and applies `entries`. `Err` only for a storage failure, which dooms the
/// whole transaction; refused entries are in the report.
pub fn ingest(ctx: &mut Ctx<'_>, entries: Vec<Entry>) -> Result<IngestReport, StoreError> {
    let mut report = IngestReport::default();
    let mut by_origin: BTreeMap<NodeId, BTreeMap<u64, Entry>> = BTreeMap::new();
    for e in entries {
        let slot = by_origin.entry(e.origin).or_default();
        match slot.get(&e.seq) {
            Some(held) if !held.same_as(&e) => {
                report.rejected.push(EntryError::Fork(e.entry_ref()));
            }
            Some(_) => report.duplicates += 1,
            None => {
                slot.insert(e.seq, e);
            }
        }
    }
    // HQ's feed first: it carries the certificates that admit everyone else.
    let hq = ctx.node.membership.hq();
    let mut origins: Vec<NodeId> = by_origin.keys().copied().collect();
    origins.sort_by_key(|o| (*o != hq, *o));
    for origin in origins {
        let batch = by_origin.remove(&origin).unwrap_or_default();
        let head = ctx.tables.head(&origin)?;
        let mut fresh = Vec::new();
        for (seq, e) in batch {
            if seq == 0 {
                report.rejected.push(EntryError::Gap {
                    origin,
                    expected: head.seq + 1,
                    got: 0,
                });
            } else if seq > head.seq {
                fresh.push(e);
            } else {
                let held = ctx.tables.feeds.get(&schema::entry_key(&origin, seq))?;
                match held {
                    Some(bytes) => {
                        // Compared without the signatures: either copy may lack its own.
                        if schema::decode_entry(bytes.value())?.same_as(&e) {
                            report.duplicates += 1;
                        } else {
                            report.rejected.push(EntryError::Fork(e.entry_ref()));
                        }
                    }
                    None => {
                        return Err(StoreError::corrupt(format!(
                            "feed {origin} lacks entry {seq} below its head {}",
                            head.seq
                        )));
                    }
                }
            }
        }
        let check = check_run(head, &ctx.node.membership, &fresh);
        fresh.truncate(check.accepted);
        thin_signatures(&mut fresh);
        report.applied += fresh.len();
        apply(ctx, &fresh, check.head, None)?;
        report.rejected.extend(check.error);
    }
    Ok(report)
}

/// What the caller that queues a checked run makes ahead for the writer, entry by entry,
/// on its own thread.
pub struct Prepared {
    /// The bytes to store (`CheckedRun::stored_encodings`), kept only if the whole run
    /// is taken.
    stored: Vec<Vec<u8>>,
    /// Each card operation's `report::txn_digest`.
    digests: Vec<Option<Hash>>,
}

impl Prepared {
    pub fn of(run: &CheckedRun) -> Prepared {
        Prepared {
            stored: run.stored_encodings(),
            digests: run
                .entries()
                .iter()
                .map(|e| e.body.card_txn().map(report::txn_digest))
                .collect(),
        }
    }
}

/// `ingest` of one origin's checked run (see `CheckedRun`): the same checks and writes,
/// without hashing the entries or verifying their signatures again, and with what was
/// `Prepared` for it. A run that does not continue its origin's feed exactly goes the
/// way of any entries.
pub fn ingest_checked(
    ctx: &mut Ctx<'_>,
    run: CheckedRun,
    mut prepared: Prepared,
) -> Result<IngestReport, StoreError> {
    let Some(first) = run.entries().first() else {
        return Ok(IngestReport::default());
    };
    let head = ctx.tables.head(&first.origin)?;
    if first.seq != head.seq + 1 {
        return ingest(ctx, run.into_entries());
    }
    let check = check_checked_run(head, &ctx.node.membership, &run);
    let mut fresh = run.into_entries();
    // A run cut short ends at another entry, whose signature is kept: encode afresh.
    if check.accepted < fresh.len() {
        prepared.stored.clear();
    }
    fresh.truncate(check.accepted);
    thin_signatures(&mut fresh);
    apply(ctx, &fresh, check.head, Some(&prepared))?;
    Ok(IngestReport {
        applied: fresh.len(),
        duplicates: 0,
        rejected: check.error.into_iter().collect(),
    })
}

/// Applies the next entry of this node's own feed, which the writer signed a moment ago
/// after the feed's head: `check_run` without the signature check. Verifying a
/// signature made in this process with this node's key would only prove that ed25519
/// works (and cost more than the signing did); the sequence and chain hold by
/// construction; whether this node may write the body still depends on its certificate
/// and the body, and is checked exactly as `check_run` checks it. Entries that arrive
/// from anywhere else, this node's own included, go through `ingest`.
pub fn append_own(ctx: &mut Ctx<'_>, e: &Entry) -> Result<Result<(), EntryError>, StoreError> {
    if let Err(refusal) = check_authority(&ctx.node.membership, e) {
        return Ok(Err(refusal));
    }
    apply(ctx, std::slice::from_ref(e), e.head(), None)?;
    Ok(Ok(()))
}

/// Writes checked consecutive entries of one origin, which end at `head`: views, feed,
/// head, clock and version vector; with what was `Prepared` for them, if anything.
fn apply(
    ctx: &mut Ctx<'_>,
    entries: &[Entry],
    head: FeedHead,
    prepared: Option<&Prepared>,
) -> Result<(), StoreError> {
    let Some(first) = entries.first() else {
        return Ok(());
    };
    let origin = first.origin;
    let now = ctx.node.clock.now_ms();
    for (i, e) in entries.iter().enumerate() {
        let digest = prepared.and_then(|p| p.digests.get(i).copied().flatten());
        ctx.tables
            .fold(&mut ctx.docs, &mut ctx.node.membership, e, digest, now)?;
        let key = schema::entry_key(&origin, e.seq);
        match prepared.and_then(|p| p.stored.get(i)) {
            Some(bytes) => ctx.tables.feeds.insert(&key, bytes.as_slice())?,
            None => ctx.tables.feeds.insert(&key, e.encode().as_slice())?,
        };
        ctx.node.hlc.observe(e.hlc, now);
    }
    ctx.tables
        .heads
        .insert(&origin.0, &schema::head_value(&head))?;
    ctx.node.vv.advance(origin, head.seq);
    Ok(())
}
