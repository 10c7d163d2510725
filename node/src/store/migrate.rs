//! Schema migrations: the file records the schema version it was written with, and
//! opening an older file runs each step from that version to the current one, all in one
//! write transaction, so a crash mid-migration leaves the old file as it was.
//!
//! To change the schema: bump `schema::SCHEMA_VERSION`, append one function to
//! `MIGRATIONS`, and add a test that opens a file in the previous format.

use super::error::StoreError;
use super::reports::ReportTables;
use super::schema::{
    self, BLACKLIST, BLOCKED, CARD_DAYS, CARD_HISTORY, CERTS, DOC_CHANGES, DOCS, FEEDS, INTENTS,
    LEDGER_BY_CARD, META, META_SCHEMA, PENDING_INTENTS, REPORT_ROWS, REPORT_TOTALS, SCHEMA_VERSION,
};
use cardmesh_model::CardAsn;
use cardmesh_model::blacklist::CardBlocks;
use cardmesh_model::body::Body;
use cardmesh_model::report::{CardChain, ChainMarks, CounterSpace, Link, MarksV7, Tally, Totals};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use std::collections::BTreeMap;

type Migration = fn(&WriteTransaction) -> Result<(), StoreError>;

/// `MIGRATIONS[i]` takes a file from schema version `i + 1` to `i + 2`.
const MIGRATIONS: [Migration; (SCHEMA_VERSION - 1) as usize] = [
    v1_to_v2, v2_to_v3, v3_to_v4, v4_to_v5, v5_to_v6, v6_to_v7, v7_to_v8, v8_to_v9, v9_to_v10,
];

/// Brings the file to the current schema; returns the version it was found at.
pub fn run(db: &Database) -> Result<u32, StoreError> {
    let found = {
        let txn = db.begin_read()?;
        read_version(&txn.open_table(META).map_err(not_a_store)?)?
    };
    if found == SCHEMA_VERSION {
        return Ok(found);
    }
    if found > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    let txn = db.begin_write()?;
    for step in &MIGRATIONS[(found - 1) as usize..] {
        step(&txn)?;
    }
    schema::create_tables(&txn)?;
    txn.open_table(META)?
        .insert(META_SCHEMA, SCHEMA_VERSION.to_le_bytes().as_slice())?;
    txn.commit()?;
    Ok(found)
}

fn not_a_store(e: redb::TableError) -> StoreError {
    match e {
        redb::TableError::TableDoesNotExist(_) => {
            StoreError::corrupt("not a cardmesh store, or its creation was interrupted")
        }
        other => other.into(),
    }
}

fn read_version(meta: &impl ReadableTable<&'static str, &'static [u8]>) -> Result<u32, StoreError> {
    let v = meta
        .get(META_SCHEMA)?
        .ok_or_else(|| StoreError::corrupt("no schema version"))?;
    let bytes: [u8; 4] = v
        .value()
        .try_into()
        .map_err(|_| StoreError::corrupt("schema version is not 4 bytes"))?;
    match u32::from_le_bytes(bytes) {
        0 => Err(StoreError::corrupt("schema version 0")),
        n => Ok(n),
    }
}

/// v2 adds the index of cards blocked now, built from the per-card blacklist states.
fn v1_to_v2(txn: &WriteTransaction) -> Result<(), StoreError> {
    let blacklist = txn.open_table(BLACKLIST)?;
    let mut blocked = txn.open_table(BLOCKED)?;
    for row in blacklist.iter()? {
        let (asn, state) = row?;
        let state: CardBlocks = schema::decode_view(state.value(), "blacklist")?;
        if state.is_blocked() {
            blocked.insert(asn.value(), ())?;
        }
    }
    Ok(())
}

/// v3 adds the card-counter index and the intent tables. A v2 file holds no intents, but
/// its card transactions must be indexed by counter.
fn v2_to_v3(txn: &WriteTransaction) -> Result<(), StoreError> {
    let feeds = txn.open_table(FEEDS)?;
    let mut counters = txn.open_table(CARD_COUNTERS)?;
    for row in feeds.iter()? {
        let (key, bytes) = row?;
        let entry = schema::decode_entry(bytes.value())?;
        if let Body::Card(t) = &entry.body
            && let Some(space) = t.kind.counter_space()
        {
            let k = schema::counter_key(&t.asn, space, t.card_counter);
            if counters.get(&k)?.is_none() {
                counters.insert(&k, key.value())?;
            }
        }
    }
    txn.open_table(INTENTS)?;
    txn.open_table(PENDING_INTENTS)?;
    Ok(())
}

/// v4 adds the report views (rows, totals, freshness, card histories, anomalies, grey
/// locks, settlements): every entry already held is folded into them, received "when it
/// was written" (its HLC), since the real arrival times were never recorded.
fn v3_to_v4(txn: &WriteTransaction) -> Result<(), StoreError> {
    let feeds = txn.open_table(FEEDS)?;
    let certs = txn.open_table(CERTS)?;
    let docs = txn.open_table(DOCS)?;
    let changes = txn.open_table(DOC_CHANGES)?;
    let mut reports = ReportTables::open(txn)?;
    for row in feeds.iter()? {
        let (_, bytes) = row?;
        let e = schema::decode_entry(bytes.value())?;
        let Some(cert) = certs.get(&e.origin.0)? else {
            continue;
        };
        let site = schema::decode_cert(cert.value())?.site;
        if let Err(why) = reports.fold(&e, None, &site, e.hlc.millis, (&docs, &changes))? {
            tracing::warn!(entry = ?e.entry_ref(), %why, "entry left out of the reports");
        }
    }
    reports.flush()
}

/// v5 charges refunds to the report rows of the sales they refer to (`Totals::refunded`,
/// the last field of a row). Postcard writes a struct as its fields in order, so a v4
/// row followed by an empty `Tally` is the same row in v5 (rows that `v3_to_v4` just
/// wrote are v5 already and decode as they are); then every refund already held is
/// charged, as `Tables::fold` does for the ones that come later.
fn v4_to_v5(txn: &WriteTransaction) -> Result<(), StoreError> {
    let empty = postcard::to_allocvec(&Tally::default()).expect("a Tally serializes");
    let is_v5 = |v: &[u8]| schema::decode_view::<Totals>(v, "report row").is_ok();
    let mut rows = txn.open_table(REPORT_ROWS)?;
    let old: Vec<(Vec<u8>, Vec<u8>)> = rows
        .iter()?
        .map(|row| row.map(|(k, v)| (k.value().to_vec(), v.value().to_vec())))
        .collect::<Result<_, _>>()?;
    for (k, mut v) in old.into_iter().filter(|(_, v)| !is_v5(v)) {
        v.extend_from_slice(&empty);
        rows.insert(k.as_slice(), v.as_slice())?;
    }
    drop(rows);
    let mut totals = txn.open_table(REPORT_TOTALS)?;
    let old: Vec<(String, Vec<u8>)> = totals
        .iter()?
        .map(|row| row.map(|(k, v)| (k.value().to_string(), v.value().to_vec())))
        .collect::<Result<_, _>>()?;
    for (k, mut v) in old.into_iter().filter(|(_, v)| !is_v5(v)) {
        v.extend_from_slice(&empty);
        totals.insert(k.as_str(), v.as_slice())?;
    }
    drop(totals);
    let feeds = txn.open_table(FEEDS)?;
    let counters = txn.open_table(CARD_COUNTERS)?;
    let mut reports = ReportTables::open(txn)?;
    for row in feeds.iter()? {
        let (key, bytes) = row?;
        let e = schema::decode_entry(bytes.value())?;
        let Some(t) = e.body.card_txn() else {
            continue;
        };
        let counted = match t.kind.counter_space() {
            Some(space) => counters
                .get(&schema::counter_key(&t.asn, space, t.card_counter))?
                .is_some_and(|first| first.value() == key.value()),
            None => true,
        };
        if let Err(why) = reports.charge_refunds(&e, counted, &feeds)? {
            tracing::warn!(entry = ?e.entry_ref(), %why, "refund not charged to its sale");
        }
    }
    reports.flush()
}

/// v6 is feed format 2, whose entry hashes leave the signature out. Format-1 entries
/// cannot be converted (their signatures sign the old hashes), so a file holding them is
/// refused, untouched, with what to do. A node's entries are all of one format, so the
/// first one tells.
fn v5_to_v6(txn: &WriteTransaction) -> Result<(), StoreError> {
    let feeds = txn.open_table(FEEDS)?;
    if let Some(row) = feeds.first()? {
        schema::decode_entry(row.1.value())?;
    }
    Ok(())
}

/// v7 adds each card's spending per business day, summed from the ledger as it stands.
fn v6_to_v7(txn: &WriteTransaction) -> Result<(), StoreError> {
    let ledger = txn.open_table(LEDGER_BY_CARD_V9)?;
    let feeds = txn.open_table(FEEDS)?;
    let mut days: BTreeMap<[u8; 12], (i64, u32)> = BTreeMap::new();
    for row in ledger.iter()? {
        let at = schema::index_tail(row?.0.value());
        let e = schema::indexed_entry(&feeds, &schema::entry_key(&at.origin, at.seq))?;
        if let Some(t) = e.body.card_txn() {
            schema::tally_card_day(&mut days, t);
        }
    }
    let mut table = txn.open_table(CARD_DAYS)?;
    for (k, v) in days {
        table.insert(&k, v)?;
    }
    Ok(())
}

/// Before v8: card -> `CardChain`, each card's whole history in one value.
const CARD_CHAINS: TableDefinition<&[u8; 8], &[u8]> = TableDefinition::new("card_chains");

/// v8 keeps each card's history in rows, one per operation plus its marks, so that an
/// operation no longer rewrites the card's whole history; the marks now also keep where
/// the balance walk stands, taken here from the links.
fn v7_to_v8(txn: &WriteTransaction) -> Result<(), StoreError> {
    let chains = txn.open_table(CARD_CHAINS)?;
    let mut history = txn.open_table(CARD_HISTORY)?;
    for row in chains.iter()? {
        let (asn, v) = row?;
        let asn = CardAsn(*asn.value());
        let (links, marks): (BTreeMap<(CounterSpace, u16), Link>, MarksV7) =
            schema::decode_view(v.value(), "card history")?;
        let chain = CardChain::from_parts(
            links.into_iter().map(|((s, n), l)| (s, n, l)),
            ChainMarks::from(marks),
        );
        for (space, n, link) in chain.links() {
            history.insert(
                &schema::counter_key(&asn, space, n),
                schema::encode_view(link).as_slice(),
            )?;
        }
        history.insert(
            &schema::chain_marks_key(&asn),
            schema::encode_view(chain.marks()).as_slice(),
        )?;
    }
    drop(chains);
    txn.delete_table(CARD_CHAINS)?;
    Ok(())
}

/// Before v9: (terminal, business day, hlc, origin, seq), card transactions by terminal.
const LEDGER_BY_TERMINAL_DAY: TableDefinition<&[u8; 62], ()> =
    TableDefinition::new("ledger_by_terminal_day");

/// v9 drops the ledger index by terminal: a terminal's day is read from its site's day
/// (`Store::terminal_ledger`), and every transaction folded costs one insert less.
fn v8_to_v9(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.delete_table(LEDGER_BY_TERMINAL_DAY)?;
    Ok(())
}

/// Before v10: (card, hlc, origin, seq), card transactions by card.
const LEDGER_BY_CARD_V9: TableDefinition<&[u8; 60], ()> = TableDefinition::new("ledger_by_card");
/// Before v10: (card, counter space, counter) -> the first entry logged with the counter.
const CARD_COUNTERS: TableDefinition<&[u8; 11], &[u8; 40]> = TableDefinition::new("card_counters");

/// v10 keys the ledger by card by the card counter too, so that a counter's entries are
/// a prefix of it and the table of each counter's first entry, one more insert per
/// transaction, goes.
fn v9_to_v10(txn: &WriteTransaction) -> Result<(), StoreError> {
    let old = txn.open_table(LEDGER_BY_CARD_V9)?;
    let feeds = txn.open_table(FEEDS)?;
    let mut ledger = txn.open_table(LEDGER_BY_CARD)?;
    for row in old.iter()? {
        let at = schema::index_tail(row?.0.value());
        let e = schema::indexed_entry(&feeds, &schema::entry_key(&at.origin, at.seq))?;
        let t = e
            .body
            .card_txn()
            .ok_or_else(|| StoreError::corrupt("the ledger by card names a non-card entry"))?;
        ledger.insert(&schema::card_key(t, e.hlc, &at), ())?;
    }
    drop(old);
    txn.delete_table(LEDGER_BY_CARD_V9)?;
    txn.delete_table(CARD_COUNTERS)?;
    Ok(())
}
