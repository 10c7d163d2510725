//! The layout of a store file: every table, how its keys are encoded, and the current
//! schema version.
//!
//! Composite keys are fixed-width byte arrays with big-endian numbers, so that redb's
//! byte order is the order we want (by origin then sequence, by card then HLC, ...) and a
//! prefix is a range. Values that are model types go through the model's codec
//! (`Kind::View`), so a damaged value is reported, never misread.

use super::error::StoreError;
use cardmesh_model::body::{CardTxn, CounterSpace, EntryRef};
use cardmesh_model::codec::{self, CodecError, Kind};
use cardmesh_model::{BusinessDay, CardAsn, FeedHead, Hash, Hlc, NodeId, SiteId};
use redb::{ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;

/// The schema this build writes. Older files are migrated on open (see `migrate`).
pub const SCHEMA_VERSION: u32 = 10;

/// Identity and bookkeeping: schema version, this node's id, its certificate and HQ's,
/// the last HLC issued.
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
pub const META_SCHEMA: &str = "schema_version";
pub const META_NODE: &str = "node";
pub const META_OWN_CERT: &str = "own_cert";
pub const META_HQ_CERT: &str = "hq_cert";
pub const META_HLC: &str = "hlc";

/// (origin, seq) -> `Entry::encode` bytes: the feeds, the only source of truth.
pub const FEEDS: TableDefinition<&[u8; 40], &[u8]> = TableDefinition::new("feeds");
/// origin -> (seq, hash) of its last held entry. Doubles as the version vector: one row
/// per origin, so opening and answering "what do you have" never scans the feeds.
pub const HEADS: TableDefinition<&[u8; 32], &[u8; 40]> = TableDefinition::new("heads");
/// node -> codec-encoded certificate: every member, from files and from HQ's feed.
pub const CERTS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("certificates");
/// (revoked node, seq of the revocation in HQ's feed) -> revocation.
pub const REVOCATIONS: TableDefinition<&[u8; 40], &[u8]> = TableDefinition::new("revocations");
/// card -> `CardBlocks`: the blacklist fold, one row per card that ever had an event.
pub const BLACKLIST: TableDefinition<&[u8; 8], &[u8]> = TableDefinition::new("blacklist");
/// card -> (): cards blocked now. Since schema v2; lets counts and lists skip the
/// cleared cards without decoding a million rows.
pub const BLOCKED: TableDefinition<&[u8; 8], ()> = TableDefinition::new("blocked");
/// card -> `CardRecord`: the card registry fold.
pub const CARDS: TableDefinition<&[u8; 8], &[u8]> = TableDefinition::new("cards");
/// (card, counter space, counter, hlc, origin, seq): card transactions by card and the
/// card counter they used (`NO_COUNTER` for those that use none), so that the entries
/// of one counter are a prefix, the earliest first. Since schema v10; before it, (card,
/// hlc, origin, seq) beside a table of each counter's first entry.
pub const LEDGER_BY_CARD: TableDefinition<&[u8; 63], ()> =
    TableDefinition::new("ledger_by_card_counter");
/// The counter-space byte of a `LEDGER_BY_CARD` key whose transaction uses no counter.
pub const NO_COUNTER: u8 = 2;
/// (site, business day, hlc, origin, seq): card transactions by site and day.
pub const LEDGER_BY_SITE_DAY: TableDefinition<&[u8; 88], ()> =
    TableDefinition::new("ledger_by_site_day");
/// (card, business day) -> (fen, count) of the card's spending that day (purchases and
/// debits for unlock) as the ledger holds it: what the per-card daily limits read, in one
/// point read however long the card's day. Since schema v7.
pub const CARD_DAYS: TableDefinition<&[u8; 12], (i64, u32)> = TableDefinition::new("card_days");
/// (origin, seq) -> (): alarm entries.
pub const ALARMS: TableDefinition<&[u8; 40], ()> = TableDefinition::new("alarms");
/// (origin, seq) -> why the entry's content could not be folded.
pub const UNFOLDABLE: TableDefinition<&[u8; 40], &str> = TableDefinition::new("unfoldable");
/// postcard(doc name) -> `DocState` (saved snapshot and change counters).
pub const DOCS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("docs");
/// (postcard(doc name), n) -> one automerge change applied since the snapshot.
pub const DOC_CHANGES: TableDefinition<(&[u8], u64), &[u8]> = TableDefinition::new("doc_changes");
/// terminal -> the last sequence number reserved for it.
pub const TERM_SEQ: TableDefinition<&[u8; 6], u32> = TableDefinition::new("terminal_seq");
/// (origin, seq) of an intent -> its state (`INTENT_*`). Since schema v3.
pub const INTENTS: TableDefinition<&[u8; 40], u8> = TableDefinition::new("intents");
pub const INTENT_PENDING: u8 = 0;
pub const INTENT_DONE: u8 = 1;
pub const INTENT_VOID: u8 = 2;
/// (card, counter space, counter, origin, seq) -> (): intents not yet resolved, found by
/// card when it is presented. Since schema v3.
pub const PENDING_INTENTS: TableDefinition<&[u8; 51], ()> = TableDefinition::new("pending_intents");
/// Free-form node settings.
pub const CONFIG: TableDefinition<&str, &[u8]> = TableDefinition::new("config");
/// (dimension, business day, name) -> `report::Totals`: the report rows, kept current
/// as entries arrive. Since schema v3, like every table below.
pub const REPORT_ROWS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("report_rows");
/// "all" -> `report::Totals` of every entry ever folded: the network float and totals.
pub const REPORT_TOTALS: TableDefinition<&str, &[u8]> = TableDefinition::new("report_totals");
/// site -> `Freshness`: when this node last received an entry about the site.
pub const FRESHNESS: TableDefinition<&str, &[u8]> = TableDefinition::new("freshness");
/// Each card's rebuilt history (`report::CardChain`) in rows: (card, counter space,
/// counter) -> `report::Link`, and (card, `CHAIN_MARKS`) -> `report::ChainMarks`, so an
/// operation writes one link however long the card's history. Since schema v8; before
/// it, one value per card.
pub const CARD_HISTORY: TableDefinition<&[u8; 11], &[u8]> = TableDefinition::new("card_history");
/// The tag of a card's `ChainMarks` row in `CARD_HISTORY`, after the two counter spaces.
pub const CHAIN_MARKS: u8 = 0xff;
/// (card, anomaly kind, origin, seq) -> `report::Anomaly`: frauds found in card histories.
pub const ANOMALIES: TableDefinition<&[u8; 49], &[u8]> = TableDefinition::new("anomalies");
/// Same keys as `ANOMALIES`: the ones this node has answered with an alarm and a block.
pub const RAISED: TableDefinition<&[u8; 49], ()> = TableDefinition::new("anomalies_raised");
/// (origin, seq) of a grey lock -> (card, hlc): grey locks not yet completed.
pub const GREY_OPEN: TableDefinition<&[u8; 40], &[u8]> = TableDefinition::new("grey_open");
/// (merchant, period from, period to) -> (entry, `SettlementRecord`): settled periods.
pub const SETTLEMENTS: TableDefinition<&[u8; 40], &[u8]> = TableDefinition::new("settlements");
/// (sale's origin, seq, refund's origin, seq): refunds not yet charged to their sale's
/// report rows because the sale has not arrived here.
pub const REFUNDS_WAITING: TableDefinition<&[u8; 80], ()> = TableDefinition::new("refunds_waiting");

/// Opens (creating) every table of the current schema, so that readers never meet a
/// missing one.
pub fn create_tables(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(META)?;
    txn.open_table(FEEDS)?;
    txn.open_table(HEADS)?;
    txn.open_table(CERTS)?;
    txn.open_table(REVOCATIONS)?;
    txn.open_table(BLACKLIST)?;
    txn.open_table(BLOCKED)?;
    txn.open_table(CARDS)?;
    txn.open_table(LEDGER_BY_CARD)?;
    txn.open_table(LEDGER_BY_SITE_DAY)?;
    txn.open_table(CARD_DAYS)?;
    txn.open_table(ALARMS)?;
    txn.open_table(UNFOLDABLE)?;
    txn.open_table(DOCS)?;
    txn.open_table(DOC_CHANGES)?;
    txn.open_table(TERM_SEQ)?;
    txn.open_table(CONFIG)?;
    txn.open_table(REPORT_ROWS)?;
    txn.open_table(REPORT_TOTALS)?;
    txn.open_table(FRESHNESS)?;
    txn.open_table(CARD_HISTORY)?;
    txn.open_table(ANOMALIES)?;
    txn.open_table(RAISED)?;
    txn.open_table(GREY_OPEN)?;
    txn.open_table(SETTLEMENTS)?;
    txn.open_table(REFUNDS_WAITING)?;
    txn.open_table(INTENTS)?;
    txn.open_table(PENDING_INTENTS)?;
    Ok(())
}

pub fn entry_key(origin: &NodeId, seq: u64) -> [u8; 40] {
    let mut k = [0; 40];
    k[..32].copy_from_slice(&origin.0);
    k[32..].copy_from_slice(&seq.to_be_bytes());
    k
}

pub fn parse_entry_key(k: &[u8]) -> EntryRef {
    let (origin, seq) = k.split_at(32);
    EntryRef {
        origin: NodeId(origin.try_into().expect("32-byte origin")),
        seq: u64::from_be_bytes(seq.try_into().expect("8-byte sequence")),
    }
}

pub fn head_value(head: &FeedHead) -> [u8; 40] {
    let mut v = [0; 40];
    v[..8].copy_from_slice(&head.seq.to_be_bytes());
    v[8..].copy_from_slice(&head.hash.0);
    v
}

pub fn parse_head(v: &[u8; 40]) -> FeedHead {
    FeedHead {
        seq: u64::from_be_bytes(v[..8].try_into().expect("8-byte sequence")),
        hash: Hash(v[8..].try_into().expect("32-byte hash")),
    }
}

/// Appends `hlc, origin, seq` to an index key prefix: the tail every ledger key shares.
fn with_tail<const N: usize>(prefix: &[u8], hlc: Hlc, at: &EntryRef) -> [u8; N] {
    let mut k = [0; N];
    let p = prefix.len();
    k[..p].copy_from_slice(prefix);
    k[p..p + 8].copy_from_slice(&hlc.millis.to_be_bytes());
    k[p + 8..p + 12].copy_from_slice(&hlc.logical.to_be_bytes());
    k[p + 12..p + 44].copy_from_slice(&at.origin.0);
    k[p + 44..].copy_from_slice(&at.seq.to_be_bytes());
    k
}

/// The length of the `hlc, origin, seq` tail.
const TAIL: usize = 12 + 40;

pub fn index_tail(k: &[u8]) -> EntryRef {
    parse_entry_key(&k[k.len() - 40..])
}

/// The ledger-by-card key of one transaction, the range of one card's keys, and the
/// range of the keys of one card counter (`counter_key`).
pub fn card_key(t: &CardTxn, hlc: Hlc, at: &EntryRef) -> [u8; 63] {
    let prefix = match t.kind.counter_space() {
        Some(space) => counter_key(&t.asn, space, t.card_counter),
        None => {
            let mut k = [0; 11];
            k[..8].copy_from_slice(&t.asn.0);
            k[8] = NO_COUNTER;
            k
        }
    };
    with_tail(&prefix, hlc, at)
}

pub fn card_range(asn: &CardAsn) -> ([u8; 63], [u8; 63]) {
    padded_range(&asn.0)
}

pub fn card_counter_range(counter: &[u8; 11]) -> ([u8; 63], [u8; 63]) {
    prefix_range(counter)
}

/// The hlc in a `LEDGER_BY_CARD` key.
pub fn card_key_hlc(k: &[u8; 63]) -> Hlc {
    Hlc::new(
        u64::from_be_bytes(k[11..19].try_into().expect("8 bytes")),
        u32::from_be_bytes(k[19..23].try_into().expect("4 bytes")),
    )
}

pub fn card_day_key(asn: &CardAsn, day: BusinessDay) -> [u8; 12] {
    let mut k = [0; 12];
    k[..8].copy_from_slice(&asn.0);
    k[8..].copy_from_slice(&day.ymd().to_be_bytes());
    k
}

/// Adds one ledger transaction to per-(card, day) totals in the form `CARD_DAYS` holds.
pub fn tally_card_day(days: &mut BTreeMap<[u8; 12], (i64, u32)>, t: &CardTxn) {
    if t.kind.is_spending() {
        let day = days
            .entry(card_day_key(&t.asn, t.business_day))
            .or_default();
        *day = card_day_with(*day, t.amount.fen(), true);
    }
}

/// A `CARD_DAYS` value with one operation of `amount` added or taken away.
pub fn card_day_with(day: (i64, u32), amount: i64, add: bool) -> (i64, u32) {
    if add {
        (day.0.saturating_add(amount), day.1.saturating_add(1))
    } else {
        (day.0.saturating_sub(amount), day.1.saturating_sub(1))
    }
}

/// Site names are at most 32 bytes of ASCII without NUL, so zero padding keeps both
/// their order and their uniqueness.
fn site_day_prefix(site: &SiteId, day: BusinessDay) -> [u8; 36] {
    let mut p = [0; 36];
    let name = site.as_str().as_bytes();
    p[..name.len()].copy_from_slice(name);
    p[32..].copy_from_slice(&day.ymd().to_be_bytes());
    p
}

pub fn site_day_key(site: &SiteId, day: BusinessDay, hlc: Hlc, at: &EntryRef) -> [u8; 88] {
    with_tail(&site_day_prefix(site, day), hlc, at)
}

pub fn site_day_range(site: &SiteId, day: BusinessDay) -> ([u8; 88], [u8; 88]) {
    prefix_range(&site_day_prefix(site, day))
}

/// The first and last key of `N` bytes that start with `prefix` and end in a tail.
fn prefix_range<const N: usize>(prefix: &[u8]) -> ([u8; N], [u8; N]) {
    debug_assert_eq!(prefix.len() + TAIL, N);
    padded_range(prefix)
}

/// The first and last key of `N` bytes that start with `prefix`.
fn padded_range<const N: usize>(prefix: &[u8]) -> ([u8; N], [u8; N]) {
    let mut lo = [0; N];
    let mut hi = [0xff; N];
    lo[..prefix.len()].copy_from_slice(prefix);
    hi[..prefix.len()].copy_from_slice(prefix);
    (lo, hi)
}

/// The key of one card counter: its `CARD_HISTORY` link's, and the prefix of the
/// `LEDGER_BY_CARD` keys of the transactions that used it.
pub fn counter_key(asn: &CardAsn, space: CounterSpace, counter: u16) -> [u8; 11] {
    let mut k = [0; 11];
    k[..8].copy_from_slice(&asn.0);
    k[8] = match space {
        CounterSpace::Online => 0,
        CounterSpace::Offline => 1,
    };
    k[9..].copy_from_slice(&counter.to_be_bytes());
    k
}

/// The `CARD_HISTORY` key of a card's marks, and the range of all its rows.
pub fn chain_marks_key(asn: &CardAsn) -> [u8; 11] {
    let mut k = [0; 11];
    k[..8].copy_from_slice(&asn.0);
    k[8] = CHAIN_MARKS;
    k
}

pub fn card_history_range(asn: &CardAsn) -> ([u8; 11], [u8; 11]) {
    padded_range(&asn.0)
}

/// The counter a `CARD_HISTORY` key names; `None` for the marks row.
pub fn parse_counter_key(k: &[u8; 11]) -> Option<(CounterSpace, u16)> {
    let space = match k[8] {
        0 => CounterSpace::Online,
        1 => CounterSpace::Offline,
        _ => return None,
    };
    Some((space, u16::from_be_bytes([k[9], k[10]])))
}

/// The pending-intent key of an intent, and the range of one card's pending intents (or
/// of one counter's, given `counter`).
pub fn pending_key(counter: &[u8; 11], at: &EntryRef) -> [u8; 51] {
    let mut k = [0; 51];
    k[..11].copy_from_slice(counter);
    k[11..].copy_from_slice(&entry_key(&at.origin, at.seq));
    k
}

pub fn pending_range(prefix: &[u8]) -> ([u8; 51], [u8; 51]) {
    padded_range(prefix)
}

pub fn doc_key(name: &cardmesh_model::docs::DocName) -> Vec<u8> {
    postcard::to_stdvec(name).expect("serializing to a Vec cannot fail")
}

pub fn encode_view<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    codec::encode(Kind::View, value)
}

pub fn decode_view<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, StoreError> {
    codec::decode(Kind::View, bytes).map_err(|e| StoreError::corrupt(format!("{what}: {e}")))
}

pub fn decode_cert(bytes: &[u8]) -> Result<cardmesh_model::Certificate, StoreError> {
    codec::decode(Kind::Certificate, bytes)
        .map_err(|e| StoreError::corrupt(format!("certificate: {e}")))
}

pub fn encode_cert(cert: &cardmesh_model::Certificate) -> Vec<u8> {
    codec::encode(Kind::Certificate, cert)
}

/// The entry an index names by its `entry_key`: its absence means a damaged file.
pub fn indexed_entry(
    feeds: &impl ReadableTable<&'static [u8; 40], &'static [u8]>,
    key: &[u8; 40],
) -> Result<cardmesh_model::Entry, StoreError> {
    match feeds.get(key)? {
        Some(bytes) => decode_entry(bytes.value()),
        None => Err(StoreError::corrupt(format!(
            "a ledger index names a missing entry {:?}",
            parse_entry_key(key)
        ))),
    }
}

pub fn decode_entry(bytes: &[u8]) -> Result<cardmesh_model::Entry, StoreError> {
    cardmesh_model::Entry::decode(bytes).map_err(|e| match e {
        CodecError::OlderVersion { .. } => StoreError::OldFeedFormat,
        e => StoreError::corrupt(format!("feed entry: {e}")),
    })
}
