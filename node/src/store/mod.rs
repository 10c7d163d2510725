//! The node's durable store: one redb file holding the node's identity, its copy of
//! every feed, the views folded from them, the shared documents, and local counters.
//!
//! Reads run in their own read transactions, from any thread, and never wait for
//! writes. Every write goes through one writer thread that commits concurrent callers
//! together (group commit, see `writer`) and answers only once the commit is on disk.
//! What is accepted and how it folds is the model's (`Replica` is the reference); this
//! module only decides where it lives.
//!
//! - `schema`: tables, key encodings, the schema version
//! - `migrate`: upgrades of older files on open
//! - `writer`: the writer thread and group commit
//! - `ingest`: acceptance of entries (the store's `Replica::ingest`)
//! - `views`: the folds, per card, into tables
//! - `docs`: automerge documents as snapshot + changes
//! - `verify`: the refold check behind `cardmesh check`
//! - `reports`: report rows, card histories, grey locks, settlements (the HQ views)
//! - `hq`: reading those views, and HQ's own writes (alarms, blocks, settlements)

mod docs;
mod error;
mod hq;
mod ingest;
mod migrate;
mod reports;
mod schema;
mod verify;
mod views;
mod writer;

pub use error::StoreError;
pub use hq::SettledAlready;
pub use reports::{Freshness, OpenLock};
pub use schema::SCHEMA_VERSION;
pub use writer::Queued;

use automerge::{AutoCommit, AutomergeError};
use cardmesh_model::blacklist::CardBlocks;
use cardmesh_model::body::{Body, CounterSpace, DocChange, EntryRef};
use cardmesh_model::docs::DocName;
use cardmesh_model::entry::{CheckedRun, keeps_signature};
use cardmesh_model::money::Money;
use cardmesh_model::registry::CardRecord;
use cardmesh_model::replica::IngestReport;
use cardmesh_model::{
    BusinessDay, CardAsn, Certificate, Entry, EntryError, FeedHead, FeedRange, Hlc, HlcClock,
    Membership, NodeId, NodeKey, Revocation, SiteId, TerminalId, VersionVector,
};
use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata};
use schema::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};
use writer::{NodeState, Subscribers, Writer};

/// The wall clock, injected wherever time matters so that tests can control it.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// The operating system's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        // A clock before 1970 is a broken clock; the HLC keeps time moving forward anyway.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

/// Counts for `cardmesh status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreStats {
    /// Entries held per origin.
    pub per_origin: VersionVector,
    pub total_entries: u64,
    /// Cards blocked now.
    pub blacklisted: u64,
    /// Cards in the card registry.
    pub cards: u64,
    pub file_bytes: u64,
    pub schema_version: u32,
}

/// Notices a subscriber may have unread before further ones are dropped.
const SUBSCRIBER_BACKLOG: usize = 16;

/// A node's store. Cheap to clone; all clones share one database and one writer.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    // Declared first so that it is dropped first: the writer finishes its queue before
    // the database goes.
    writer: Writer,
    db: Arc<Database>,
    path: PathBuf,
    node: NodeId,
    own_cert: Certificate,
    hq_cert: Certificate,
    subscribers: Subscribers,
    /// Serializes local document edits, so each one starts from the document with the
    /// previous edit in it.
    edits: Mutex<()>,
}

fn open_error(e: redb::DatabaseError, path: &Path) -> StoreError {
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen => StoreError::InUse(path.to_path_buf()),
        other => other.into(),
    }
}

impl Store {
    /// Creates the store file of a node: writes the schema version, the node's own
    /// certificate and HQ's certificate.
    pub fn create(
        path: &Path,
        key: NodeKey,
        own_cert: Certificate,
        hq_cert: Certificate,
        clock: Arc<dyn Clock>,
    ) -> Result<Store, StoreError> {
        if path.exists() {
            return Err(StoreError::AlreadyExists(path.to_path_buf()));
        }
        if own_cert.node != key.node_id() {
            return Err(StoreError::WrongNode {
                store: own_cert.node,
                key: key.node_id(),
            });
        }
        let mut membership = Membership::new(hq_cert.clone())?;
        membership.admit(own_cert.clone())?;
        let db = Database::builder()
            .create(path)
            .map_err(|e| open_error(e, path))?;
        if let Err(e) = write_identity(&db, &key.node_id(), &own_cert, &hq_cert) {
            // Leave no half-made store behind for `open` to trip over.
            drop(db);
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
        let node = NodeState {
            key,
            membership,
            hlc: HlcClock::default(),
            vv: VersionVector::new(),
            clock,
        };
        Store::start(db, path, node, own_cert, hq_cert)
    }

    /// Opens an existing store, migrating an older schema; refuses a key that is not
    /// this store's node.
    pub fn open(path: &Path, key: NodeKey, clock: Arc<dyn Clock>) -> Result<Store, StoreError> {
        if !path.exists() {
            return Err(StoreError::Missing(path.to_path_buf()));
        }
        let db = Database::builder()
            .open(path)
            .map_err(|e| open_error(e, path))?;
        let found = migrate::run(&db)?;
        if found != SCHEMA_VERSION {
            tracing::info!(from = found, to = SCHEMA_VERSION, "store schema migrated");
        }
        let (own_cert, hq_cert, node) = {
            let txn = db.begin_read()?;
            let meta = txn.open_table(META)?;
            let get = |k: &str| -> Result<Vec<u8>, StoreError> {
                meta.get(k)?
                    .map(|v| v.value().to_vec())
                    .ok_or_else(|| StoreError::corrupt(format!("no {k} in the store")))
            };
            let stored = NodeId(
                get(META_NODE)?
                    .try_into()
                    .map_err(|_| StoreError::corrupt("node id is not 32 bytes"))?,
            );
            if stored != key.node_id() {
                return Err(StoreError::WrongNode {
                    store: stored,
                    key: key.node_id(),
                });
            }
            let own_cert = decode_cert(&get(META_OWN_CERT)?)?;
            let hq_cert = decode_cert(&get(META_HQ_CERT)?)?;
            let hlc = match meta.get(META_HLC)? {
                Some(v) => decode_view::<Hlc>(v.value(), "clock")?,
                None => Hlc::default(),
            };
            let node = NodeState {
                key,
                membership: load_membership(&txn, &hq_cert)?,
                hlc: HlcClock::resume(hlc),
                vv: read_vv(&txn)?,
                clock,
            };
            (own_cert, hq_cert, node)
        };
        Store::start(db, path, node, own_cert, hq_cert)
    }

    fn start(
        db: Database,
        path: &Path,
        node: NodeState,
        own_cert: Certificate,
        hq_cert: Certificate,
    ) -> Result<Store, StoreError> {
        let db = Arc::new(db);
        let subscribers = Subscribers::default();
        let node_id = node.key.node_id();
        let writer = Writer::spawn(db.clone(), node, subscribers.clone())?;
        Ok(Store {
            inner: Arc::new(Inner {
                writer,
                db,
                path: path.to_path_buf(),
                node: node_id,
                own_cert,
                hq_cert,
                subscribers,
                edits: Mutex::new(()),
            }),
        })
    }

    pub fn node_id(&self) -> NodeId {
        self.inner.node
    }

    pub fn own_certificate(&self) -> Certificate {
        self.inner.own_cert.clone()
    }

    pub fn hq_certificate(&self) -> Certificate {
        self.inner.hq_cert.clone()
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn read(&self) -> Result<ReadTransaction, StoreError> {
        Ok(self.inner.db.begin_read()?)
    }

    /// Signs the next entry of this node's feed (timestamped by the node's HLC), applies
    /// it, and returns once it is on disk. Concurrent callers share one commit.
    pub fn append_local(&self, body: Body) -> Result<Entry, StoreError> {
        self.inner.writer.call(move |ctx| append_in(ctx, body))
    }

    /// Edits a shared document as this node and appends the change, like
    /// `Replica::edit_doc`: the edit is made on a private copy, so an edit this node may
    /// not make changes nothing. `None` if the edit changed nothing.
    pub fn edit_doc(
        &self,
        name: DocName,
        f: impl FnOnce(&mut AutoCommit) -> Result<(), AutomergeError>,
    ) -> Result<Option<Entry>, StoreError> {
        // Two concurrent edits from one copy would both claim this node's next automerge
        // sequence number, and one of them would not apply anywhere.
        let _one_at_a_time = self
            .inner
            .edits
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let node = self.node_id();
        let at = EntryRef {
            origin: node,
            seq: self.head(&node)?.seq + 1,
        };
        let mut draft = self.doc(&name)?.unwrap_or_default();
        match cardmesh_model::docs::edit(&mut draft, &node, f) {
            Err(e) => Err(EntryError::BadDocChange(at, e).into()),
            Ok(None) => Ok(None),
            Ok(Some(change)) => self
                .append_local(Body::Doc(DocChange { doc: name, change }))
                .map(Some),
        }
    }

    /// Verifies and applies entries from any origins in one durable transaction: feeds,
    /// heads and views together. Duplicates are counted, not errors; a bad entry refuses
    /// the rest of its origin's entries and leaves everything else applied.
    pub fn ingest(&self, entries: Vec<Entry>) -> Result<IngestReport, StoreError> {
        if entries.is_empty() {
            return Ok(IngestReport::default());
        }
        self.ingest_queued(entries)?.wait()
    }

    /// `ingest`, queued: returns at once, and the answer comes when it is on disk. A bulk
    /// load keeps several batches queued so that they share commits (one transaction of
    /// some 30k entries costs a fifth less per entry than eight of 4k); each batch sees
    /// the ones queued before it.
    pub fn ingest_queued(&self, entries: Vec<Entry>) -> Result<Queued<IngestReport>, StoreError> {
        self.inner
            .writer
            .submit(move |ctx| Ok(Ok(ingest::ingest(ctx, entries)?)))
    }

    /// `ingest_queued` of a run checked already (hash chain and signatures, on the
    /// caller's thread): the writer checks only where it meets the feed and whether
    /// its writer may write it.
    pub fn ingest_run_queued(&self, run: CheckedRun) -> Result<Queued<IngestReport>, StoreError> {
        let prepared = ingest::Prepared::of(&run);
        self.inner
            .writer
            .submit(move |ctx| Ok(Ok(ingest::ingest_checked(ctx, run, prepared)?)))
    }

    /// Installs a certificate that came by file, in a sync hello or with a stick
    /// segment. Returns whether it was new.
    pub fn admit(&self, cert: Certificate) -> Result<bool, StoreError> {
        // Every segment on a stick carries its origin's certificate, nearly always the
        // one held already: the same bytes were verified when they were stored, so a
        // read answers, where the writer would spend a durable commit saying "not new".
        let held = self
            .read()?
            .open_table(CERTS)?
            .get(&cert.node.0)?
            .is_some_and(|v| v.value() == encode_cert(&cert).as_slice());
        if held {
            return Ok(false);
        }
        self.inner
            .writer
            .call(move |ctx| match ctx.node.membership.admit(cert.clone()) {
                Ok(true) => {
                    ctx.tables
                        .certs
                        .insert(&cert.node.0, encode_cert(&cert).as_slice())?;
                    Ok(Ok(true))
                }
                Ok(false) => Ok(Ok(false)),
                Err(e) => Ok(Err(e.into())),
            })
    }

    /// Every member's current certificate.
    pub fn certificates(&self) -> Result<Vec<Certificate>, StoreError> {
        let txn = self.read()?;
        let certs = txn.open_table(CERTS)?;
        certs
            .iter()?
            .map(|row| decode_cert(row?.1.value()))
            .collect()
    }

    /// Enrolled and never revoked: the nodes this one will sync with.
    pub fn is_member(&self, node: &NodeId) -> Result<bool, StoreError> {
        let txn = self.read()?;
        if txn.open_table(CERTS)?.get(&node.0)?.is_none() {
            return Ok(false);
        }
        let mut lo = [0u8; 40];
        let mut hi = [0xffu8; 40];
        lo[..32].copy_from_slice(&node.0);
        hi[..32].copy_from_slice(&node.0);
        let revoked = txn
            .open_table(REVOCATIONS)?
            .range::<&[u8; 40]>(&lo..=&hi)?
            .next()
            .is_some();
        Ok(!revoked)
    }

    /// The nodes HQ has revoked, each with the revocation membership applies to it.
    pub fn revocations(&self) -> Result<BTreeMap<NodeId, Revocation>, StoreError> {
        let membership = load_membership(&self.read()?, &self.hq_certificate())?;
        Ok(membership.revocations().clone())
    }

    pub fn version_vector(&self) -> Result<VersionVector, StoreError> {
        read_vv(&self.read()?)
    }

    pub fn head(&self, origin: &NodeId) -> Result<FeedHead, StoreError> {
        let txn = self.read()?;
        let heads = txn.open_table(HEADS)?;
        Ok(heads
            .get(&origin.0)?
            .map_or(FeedHead::EMPTY, |v| parse_head(v.value())))
    }

    /// The entries of a range, in order, at most `limit` of them (sync sends bounded
    /// batches).
    pub fn entries(&self, range: FeedRange, limit: usize) -> Result<Vec<Entry>, StoreError> {
        let from = range.from.max(1);
        if range.to < from || limit == 0 {
            return Ok(Vec::new());
        }
        let txn = self.read()?;
        let feeds = txn.open_table(FEEDS)?;
        let (lo, hi) = (
            entry_key(&range.origin, from),
            entry_key(&range.origin, range.to),
        );
        feeds
            .range::<&[u8; 40]>(&lo..=&hi)?
            .take(limit)
            .map(|row| decode_entry(row?.1.value()))
            .collect()
    }

    /// One entry by its reference, if this store holds it.
    pub fn entry(&self, at: EntryRef) -> Result<Option<Entry>, StoreError> {
        let range = FeedRange {
            origin: at.origin,
            from: at.seq,
            to: at.seq,
        };
        Ok(self.entries(range, 1)?.pop())
    }

    /// One card's blacklist state: one point lookup.
    pub fn blacklist(&self, asn: &CardAsn) -> Result<Option<CardBlocks>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(BLACKLIST)?;
        table
            .get(&asn.0)?
            .map(|v| decode_view(v.value(), "blacklist"))
            .transpose()
    }

    /// Is the card blocked now? One point lookup in the index of blocked cards.
    pub fn is_blocked(&self, asn: &CardAsn) -> Result<bool, StoreError> {
        let txn = self.read()?;
        let blocked = txn.open_table(BLOCKED)?;
        Ok(blocked.get(&asn.0)?.is_some())
    }

    /// Up to `limit` blocked cards, in card order.
    pub fn blacklisted_cards(&self, limit: usize) -> Result<Vec<CardAsn>, StoreError> {
        let txn = self.read()?;
        let blocked = txn.open_table(BLOCKED)?;
        blocked
            .iter()?
            .take(limit)
            .map(|row| Ok(CardAsn(*row?.0.value())))
            .collect()
    }

    pub fn card(&self, asn: &CardAsn) -> Result<Option<CardRecord>, StoreError> {
        let txn = self.read()?;
        let cards = txn.open_table(CARDS)?;
        cards
            .get(&asn.0)?
            .map(|v| decode_view(v.value(), "card record"))
            .transpose()
    }

    /// A card's transactions, in HLC order.
    pub fn card_history(&self, asn: &CardAsn) -> Result<Vec<Entry>, StoreError> {
        let (lo, hi) = card_range(asn);
        let mut entries = self.indexed(LEDGER_BY_CARD, &lo, &hi)?;
        // The index orders them by counter first.
        entries.sort_by_key(|e| (e.hlc, e.entry_ref()));
        Ok(entries)
    }

    /// What a card spent on one business day, and in how many operations (purchases and
    /// debits for unlock), as this node's ledger holds them.
    pub fn card_spending(
        &self,
        asn: &CardAsn,
        day: BusinessDay,
    ) -> Result<(Money, u32), StoreError> {
        let txn = self.read()?;
        let (fen, count) = txn
            .open_table(CARD_DAYS)?
            .get(&card_day_key(asn, day))?
            .map_or((0, 0), |v| v.value());
        Ok((Money::from_fen(fen), count))
    }

    /// A site's card transactions of one business day, in HLC order.
    pub fn day_ledger(&self, site: &SiteId, day: BusinessDay) -> Result<Vec<Entry>, StoreError> {
        let (lo, hi) = site_day_range(site, day);
        self.indexed(LEDGER_BY_SITE_DAY, &lo, &hi)
    }

    /// A terminal's card transactions of one business day at its site, in HLC order.
    /// Read from the site's day: only a reprint asks, and a ledger index of its own cost
    /// every transaction one more B-tree insert wherever it was folded.
    pub fn terminal_ledger(
        &self,
        site: &SiteId,
        terminal: &TerminalId,
        day: BusinessDay,
    ) -> Result<Vec<Entry>, StoreError> {
        let mut entries = self.day_ledger(site, day)?;
        entries.retain(|e| e.body.card_txn().is_some_and(|t| t.terminal == *terminal));
        Ok(entries)
    }

    /// The entries a range of a ledger index points at.
    fn indexed<const N: usize>(
        &self,
        index: redb::TableDefinition<&'static [u8; N], ()>,
        lo: &[u8; N],
        hi: &[u8; N],
    ) -> Result<Vec<Entry>, StoreError> {
        let txn = self.read()?;
        let index = txn.open_table(index)?;
        let feeds = txn.open_table(FEEDS)?;
        let mut out = Vec::new();
        for row in index.range::<&[u8; N]>(lo..=hi)? {
            let at = index_tail(row?.0.value());
            out.push(indexed_entry(&feeds, &entry_key(&at.origin, at.seq))?);
        }
        Ok(out)
    }

    /// The intents logged for a card and not yet resolved, oldest counter first: what
    /// must be settled with the card the next time it is presented.
    pub fn pending_intents(&self, asn: &CardAsn) -> Result<Vec<Entry>, StoreError> {
        let txn = self.read()?;
        let pending = txn.open_table(PENDING_INTENTS)?;
        let feeds = txn.open_table(FEEDS)?;
        let (lo, hi) = pending_range(&asn.0);
        let mut out = Vec::new();
        for row in pending.range::<&[u8; 51]>(&lo..=&hi)? {
            let at = index_tail(row?.0.value());
            let bytes = feeds.get(&entry_key(&at.origin, at.seq))?.ok_or_else(|| {
                StoreError::corrupt(format!("a pending intent names a missing entry {at:?}"))
            })?;
            out.push(decode_entry(bytes.value())?);
        }
        Ok(out)
    }

    /// The card transaction logged with one card counter, if any: the earliest by
    /// (HLC, origin, seq) if a clone used the counter too.
    pub fn counter_entry(
        &self,
        asn: &CardAsn,
        space: CounterSpace,
        counter: u16,
    ) -> Result<Option<Entry>, StoreError> {
        let txn = self.read()?;
        let ledger = txn.open_table(LEDGER_BY_CARD)?;
        let (lo, hi) = card_counter_range(&counter_key(asn, space, counter));
        let Some(row) = ledger.range::<&[u8; 63]>(&lo..=&hi)?.next() else {
            return Ok(None);
        };
        let at = index_tail(row?.0.value());
        let feeds = txn.open_table(FEEDS)?;
        indexed_entry(&feeds, &entry_key(&at.origin, at.seq)).map(Some)
    }

    /// Alarm entries, oldest origin and sequence first, at most `limit`.
    pub fn alarms(&self, limit: usize) -> Result<Vec<Entry>, StoreError> {
        let txn = self.read()?;
        let alarms = txn.open_table(ALARMS)?;
        let feeds = txn.open_table(FEEDS)?;
        let mut out = Vec::new();
        for row in alarms.iter()?.take(limit) {
            let (key, _) = row?;
            let bytes = feeds
                .get(key.value())?
                .ok_or_else(|| StoreError::corrupt("an alarm names a missing entry"))?;
            out.push(decode_entry(bytes.value())?);
        }
        Ok(out)
    }

    /// Entries held in the feeds whose content could not be folded, and why.
    pub fn unfoldable(&self) -> Result<Vec<(EntryRef, String)>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(UNFOLDABLE)?;
        table
            .iter()?
            .map(|row| {
                let (k, why) = row?;
                Ok((parse_entry_key(k.value()), why.value().to_string()))
            })
            .collect()
    }

    /// A shared document: its snapshot with the changes since applied. `None` if no
    /// change to it has arrived yet.
    pub fn doc(&self, name: &DocName) -> Result<Option<AutoCommit>, StoreError> {
        let txn = self.read()?;
        let loaded = docs::load(&txn.open_table(DOCS)?, &txn.open_table(DOC_CHANGES)?, name)?;
        Ok(loaded.map(|(doc, _)| doc))
    }

    /// Reserves the next sequence number of a terminal (PSAM) durably before it is used,
    /// so that no number is ever handed out twice, whatever crashes.
    pub fn next_term_seq(&self, terminal: &TerminalId) -> Result<u32, StoreError> {
        let terminal = *terminal;
        self.inner.writer.call(move |ctx| {
            let last = ctx
                .tables
                .term_seq
                .get(&terminal.0)?
                .map_or(0, |v| v.value());
            let Some(next) = last.checked_add(1) else {
                return Ok(Err(StoreError::TermSeqExhausted(terminal)));
            };
            ctx.tables.term_seq.insert(&terminal.0, next)?;
            Ok(Ok(next))
        })
    }

    /// The last sequence number of a terminal made durable (reserved, or used by a
    /// logged intent).
    pub fn last_term_seq(&self, terminal: &TerminalId) -> Result<u32, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(TERM_SEQ)?;
        Ok(table.get(&terminal.0)?.map_or(0, |v| v.value()))
    }

    /// Hands out the next value (from 1) of a counter kept in the config table, made
    /// durable before it is returned, so no value is handed out twice whatever crashes.
    pub fn next_counter(&self, name: &str) -> Result<u64, StoreError> {
        let name = name.to_string();
        self.inner.writer.call(move |ctx| {
            let last = {
                let held = ctx.tables.config.get(name.as_str())?;
                counter_value(held.as_ref().map(|v| v.value()))
            };
            let next = last + 1;
            ctx.tables
                .config
                .insert(name.as_str(), next.to_be_bytes().as_slice())?;
            Ok(Ok(next))
        })
    }

    /// The last value [`Store::next_counter`] handed out for `name` (0 if none).
    pub fn counter(&self, name: &str) -> Result<u64, StoreError> {
        Ok(counter_value(self.config_get(name)?.as_deref()))
    }

    pub fn config_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.read()?;
        let config = txn.open_table(CONFIG)?;
        Ok(config.get(key)?.map(|v| v.value().to_vec()))
    }

    pub fn config_set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let (key, value) = (key.to_string(), value.to_vec());
        self.inner.writer.call(move |ctx| {
            ctx.tables.config.insert(key.as_str(), value.as_slice())?;
            Ok(Ok(()))
        })
    }

    pub fn stats(&self) -> Result<StoreStats, StoreError> {
        let txn = self.read()?;
        let per_origin = read_vv(&txn)?;
        let meta = txn.open_table(META)?;
        let schema_version = meta
            .get(META_SCHEMA)?
            .and_then(|v| <[u8; 4]>::try_from(v.value()).ok())
            .map_or(0, u32::from_le_bytes);
        Ok(StoreStats {
            total_entries: per_origin.total(),
            per_origin,
            blacklisted: txn.open_table(BLOCKED)?.len()?,
            cards: txn.open_table(CARDS)?.len()?,
            file_bytes: std::fs::metadata(&self.inner.path)?.len(),
            schema_version,
        })
    }

    /// Rebuilds an in-memory `Replica` from the stored feeds and compares it with the
    /// stored views; `Err(ViewsDiffer)` names the first difference.
    pub fn verify_views(&self) -> Result<(), StoreError> {
        verify::verify(&self.read()?, &self.inner.hq_cert)
    }

    /// What replicas holding the same entries must agree on, as one hash (see
    /// [`verify::replica_digest`]): two nodes that synced fully have equal digests.
    pub fn replica_digest(&self) -> Result<cardmesh_model::Hash, StoreError> {
        verify::replica_digest(&self.read()?)
    }

    /// A notice after every commit that applied entries, carrying the version vector of
    /// that commit. The channel is bounded: a subscriber that falls more than a few
    /// notices behind misses the newer ones but still has unread ones queued, so it
    /// should treat a notice as "something changed" and ask `version_vector()` for the
    /// current state. Dropping the receiver unsubscribes.
    pub fn subscribe(&self) -> Receiver<VersionVector> {
        let (tx, rx) = mpsc::sync_channel(SUBSCRIBER_BACKLOG);
        self.inner
            .subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(tx);
        rx
    }
}

/// Signs and applies the next entry of this node's feed inside a writer job.
fn append_in(
    ctx: &mut writer::Ctx<'_>,
    body: Body,
) -> Result<Result<Entry, StoreError>, StoreError> {
    let own = ctx.node.key.node_id();
    let head = ctx.tables.head(&own)?;
    let hlc = ctx.node.hlc.tick(ctx.node.clock.now_ms());
    let mut entry = Entry::unsigned(own, head, hlc, body);
    // Signed now if a replica keeps this signature or no later job of the group can
    // vouch for it; otherwise the group's last own entry does (`writer::sign_own_head`).
    if ctx.last_job || keeps_signature(entry.seq, false) {
        entry.sign(&ctx.node.key);
    }
    let appended = ingest::append_own(ctx, &entry)?;
    if appended.is_ok() {
        ctx.own_head_unsigned = entry.sig.is_none();
    }
    Ok(appended.map(|()| entry).map_err(StoreError::from))
}

/// A counter's value as the config table holds it (0 if it holds none).
fn counter_value(bytes: Option<&[u8]>) -> u64 {
    bytes
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0, u64::from_be_bytes)
}

fn write_identity(
    db: &Database,
    node: &NodeId,
    own_cert: &Certificate,
    hq_cert: &Certificate,
) -> Result<(), StoreError> {
    let txn = db.begin_write()?;
    schema::create_tables(&txn)?;
    {
        let mut meta = txn.open_table(META)?;
        meta.insert(META_SCHEMA, SCHEMA_VERSION.to_le_bytes().as_slice())?;
        meta.insert(META_NODE, node.0.as_slice())?;
        meta.insert(META_OWN_CERT, encode_cert(own_cert).as_slice())?;
        meta.insert(META_HQ_CERT, encode_cert(hq_cert).as_slice())?;
        let mut certs = txn.open_table(CERTS)?;
        certs.insert(&hq_cert.node.0, encode_cert(hq_cert).as_slice())?;
        certs.insert(&own_cert.node.0, encode_cert(own_cert).as_slice())?;
    }
    txn.commit()?;
    Ok(())
}

/// Membership as it stood at the last commit: HQ, every stored certificate, every
/// revocation in the order HQ wrote them.
fn load_membership(txn: &ReadTransaction, hq_cert: &Certificate) -> Result<Membership, StoreError> {
    let bad = |e: &dyn std::fmt::Display| StoreError::corrupt(format!("membership: {e}"));
    let mut membership = Membership::new(hq_cert.clone()).map_err(|e| bad(&e))?;
    for row in txn.open_table(CERTS)?.iter()? {
        membership
            .admit(decode_cert(row?.1.value())?)
            .map_err(|e| bad(&e))?;
    }
    for row in txn.open_table(REVOCATIONS)?.iter()? {
        membership.revoke(decode_view::<Revocation>(row?.1.value(), "revocation")?);
    }
    Ok(membership)
}

fn read_vv(txn: &ReadTransaction) -> Result<VersionVector, StoreError> {
    let mut vv = VersionVector::new();
    for row in txn.open_table(HEADS)?.iter()? {
        let (origin, head) = row?;
        vv.advance(NodeId(*origin.value()), parse_head(head.value()).seq);
    }
    Ok(vv)
}
