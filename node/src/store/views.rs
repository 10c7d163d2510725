//! The folded views in their tables, and how one accepted entry changes them: the same
//! folds as `Replica::fold`, with each card's state read, folded and written back as one
//! row, so a lookup is one point read and a batch touches only the cards it names.

use super::docs::DocCache;
use super::error::StoreError;
use super::reports::ReportTables;
use super::schema::{self, *};
use cardmesh_model::blacklist::CardBlocks;
use cardmesh_model::body::{Body, CardTxn, EntryRef};
use cardmesh_model::registry::{CardRecord, Stamp};
use cardmesh_model::{Entry, FeedHead, Hash, Hlc, Membership, NodeId};
use redb::{ReadableTable, ReadableTableMetadata, Table, WriteTransaction};

/// Every table of the store, open for writing in one transaction.
pub struct Tables<'t> {
    pub meta: Table<'t, &'static str, &'static [u8]>,
    pub feeds: Table<'t, &'static [u8; 40], &'static [u8]>,
    pub heads: Table<'t, &'static [u8; 32], &'static [u8; 40]>,
    pub certs: Table<'t, &'static [u8; 32], &'static [u8]>,
    pub revocations: Table<'t, &'static [u8; 40], &'static [u8]>,
    pub blacklist: Table<'t, &'static [u8; 8], &'static [u8]>,
    pub blocked: Table<'t, &'static [u8; 8], ()>,
    pub cards: Table<'t, &'static [u8; 8], &'static [u8]>,
    pub by_card: Table<'t, &'static [u8; 63], ()>,
    pub by_site_day: Table<'t, &'static [u8; 88], ()>,
    pub card_days: Table<'t, &'static [u8; 12], (i64, u32)>,
    pub alarms: Table<'t, &'static [u8; 40], ()>,
    pub unfoldable: Table<'t, &'static [u8; 40], &'static str>,
    pub docs: Table<'t, &'static [u8], &'static [u8]>,
    pub doc_changes: Table<'t, (&'static [u8], u64), &'static [u8]>,
    pub term_seq: Table<'t, &'static [u8; 6], u32>,
    pub config: Table<'t, &'static str, &'static [u8]>,
    pub reports: ReportTables<'t>,
    pub intents: Table<'t, &'static [u8; 40], u8>,
    pub pending_intents: Table<'t, &'static [u8; 51], ()>,
}

impl<'t> Tables<'t> {
    pub fn open(txn: &'t WriteTransaction) -> Result<Tables<'t>, StoreError> {
        Ok(Tables {
            meta: txn.open_table(META)?,
            feeds: txn.open_table(FEEDS)?,
            heads: txn.open_table(HEADS)?,
            certs: txn.open_table(CERTS)?,
            revocations: txn.open_table(REVOCATIONS)?,
            blacklist: txn.open_table(BLACKLIST)?,
            blocked: txn.open_table(BLOCKED)?,
            cards: txn.open_table(CARDS)?,
            by_card: txn.open_table(LEDGER_BY_CARD)?,
            by_site_day: txn.open_table(LEDGER_BY_SITE_DAY)?,
            card_days: txn.open_table(CARD_DAYS)?,
            alarms: txn.open_table(ALARMS)?,
            unfoldable: txn.open_table(UNFOLDABLE)?,
            docs: txn.open_table(DOCS)?,
            doc_changes: txn.open_table(DOC_CHANGES)?,
            term_seq: txn.open_table(TERM_SEQ)?,
            config: txn.open_table(CONFIG)?,
            reports: ReportTables::open(txn)?,
            intents: txn.open_table(INTENTS)?,
            pending_intents: txn.open_table(PENDING_INTENTS)?,
        })
    }

    pub fn head(&self, origin: &NodeId) -> Result<FeedHead, StoreError> {
        Ok(self
            .heads
            .get(&origin.0)?
            .map_or(FeedHead::EMPTY, |v| schema::parse_head(v.value())))
    }

    /// A card transaction consumed `counter`: every intent waiting on that counter is
    /// resolved by it.
    fn fold_counter(&mut self, counter: &[u8; 11]) -> Result<(), StoreError> {
        // Most nodes wait on no intent at all: then there is nothing to look up.
        if self.pending_intents.is_empty()? {
            return Ok(());
        }
        let (lo, hi) = schema::pending_range(counter);
        let waiting: Vec<[u8; 51]> = self
            .pending_intents
            .range::<&[u8; 51]>(&lo..=&hi)?
            .map(|row| row.map(|(k, _)| *k.value()))
            .collect::<Result<_, _>>()?;
        for k in waiting {
            self.pending_intents.remove(&k)?;
            let intent: [u8; 40] = k[11..].try_into().expect("40-byte entry key");
            self.intents.insert(&intent, INTENT_DONE)?;
        }
        Ok(())
    }

    /// The ledger index keys of one card transaction, and its card's spending that day.
    fn index_txn(
        &mut self,
        t: &CardTxn,
        hlc: Hlc,
        at: &EntryRef,
        add: bool,
    ) -> Result<(), StoreError> {
        let by_card = schema::card_key(t, hlc, at);
        let by_site = schema::site_day_key(&t.site, t.business_day, hlc, at);
        if add {
            self.by_card.insert(&by_card, ())?;
            self.by_site_day.insert(&by_site, ())?;
        } else {
            self.by_card.remove(&by_card)?;
            self.by_site_day.remove(&by_site)?;
        }
        if t.kind.is_spending() {
            let key = schema::card_day_key(&t.asn, t.business_day);
            let day = self.card_days.get(&key)?.map_or((0, 0), |v| v.value());
            // A day emptied by a twin moving to another day goes, so that replicas
            // holding the same ledger hold the same rows.
            match schema::card_day_with(day, t.amount.fen(), add) {
                (0, 0) => self.card_days.remove(&key)?,
                day => self.card_days.insert(&key, day)?,
            };
        }
        Ok(())
    }

    /// Puts a card transaction in the ledger, as `Views::fold_txn` does: a counter that
    /// already holds the same transaction (completed at two sites) keeps one entry, the
    /// earlier by (HLC, origin, seq). Returns whether `e` was such a duplicate, which
    /// the reports must not count again.
    fn fold_txn(&mut self, t: &CardTxn, e: &Entry) -> Result<bool, StoreError> {
        let at = e.entry_ref();
        let Some(space) = t.kind.counter_space() else {
            self.index_txn(t, e.hlc, &at, true)?;
            return Ok(false);
        };
        let counter = schema::counter_key(&t.asn, space, t.card_counter);
        if let Some(twin) = self.counter_twin(t, &counter)? {
            let twin_at = twin.entry_ref();
            if (e.hlc, at) < (twin.hlc, twin_at) {
                let twin_txn = twin.body.card_txn().expect("a ledger entry");
                self.index_txn(twin_txn, twin.hlc, &twin_at, false)?;
                self.index_txn(t, e.hlc, &at, true)?;
            }
            return Ok(true);
        }
        self.index_txn(t, e.hlc, &at, true)?;
        self.fold_counter(&counter)?;
        Ok(false)
    }

    /// The ledger entry holding the same transaction as `t` on its card counter, if any.
    /// Nearly every counter has no entry yet, and a clone's has one or two.
    fn counter_twin(&self, t: &CardTxn, counter: &[u8; 11]) -> Result<Option<Entry>, StoreError> {
        let (lo, hi) = schema::card_counter_range(counter);
        for row in self.by_card.range::<&[u8; 63]>(&lo..=&hi)? {
            let at = schema::index_tail(row?.0.value());
            let e = schema::indexed_entry(&self.feeds, &schema::entry_key(&at.origin, at.seq))?;
            if e.body
                .card_txn()
                .is_some_and(|held| held.same_transaction(t))
            {
                return Ok(Some(e));
            }
        }
        Ok(None)
    }

    /// Whether the ledger holds an entry that used `counter`.
    fn counter_used(&self, counter: &[u8; 11]) -> Result<bool, StoreError> {
        let (lo, hi) = schema::card_counter_range(counter);
        Ok(self.by_card.range::<&[u8; 63]>(&lo..=&hi)?.next().is_some())
    }

    /// Folds one accepted entry into the views, as `Replica::fold` does, and into the
    /// report views (received at `now_ms`). `digest`: its card operation's
    /// `report::txn_digest`, if made already.
    pub fn fold(
        &mut self,
        docs: &mut DocCache,
        membership: &mut Membership,
        e: &Entry,
        digest: Option<Hash>,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let duplicate = match e.body.card_txn() {
            Some(t) => self.fold_txn(t, e)?,
            None => false,
        };
        let site = membership
            .writer(&e.origin, e.seq)
            .map(|m| m.cert.site.clone());
        if let Ok(site) = &site
            && !duplicate
            && let Err(why) =
                self.reports
                    .fold(e, digest, site, now_ms, (&self.docs, &self.doc_changes))?
        {
            tracing::warn!(entry = ?e.entry_ref(), %why, "entry left out of the reports");
        }
        if let Err(why) = self.reports.charge_refunds(e, !duplicate, &self.feeds)? {
            tracing::warn!(entry = ?e.entry_ref(), %why, "refund not charged to its sale");
        }
        let at = e.entry_ref();
        let unfoldable = |t: &mut Tables<'_>, why: String| -> Result<(), StoreError> {
            t.unfoldable
                .insert(&schema::entry_key(&at.origin, at.seq), why.as_str())?;
            Ok(())
        };
        match &e.body {
            Body::Card(_) | Body::Completion(_) => {}
            Body::Intent(t) => {
                // The intent is the durable record of its terminal sequence number: a
                // SAM reserves numbers in memory and they become durable here, in the
                // same commit as the intent, before the card ever sees them.
                let reserved = self.term_seq.get(&t.terminal.0)?.map_or(0, |v| v.value());
                if t.term_seq > reserved {
                    self.term_seq.insert(&t.terminal.0, t.term_seq)?;
                }
                let key = schema::entry_key(&at.origin, at.seq);
                let counter = t
                    .kind
                    .counter_space()
                    .map(|space| schema::counter_key(&t.asn, space, t.card_counter));
                let resolved = self.intents.get(&key)?.is_some()
                    || match &counter {
                        Some(c) => self.counter_used(c)?,
                        None => true,
                    };
                if resolved {
                    if self.intents.get(&key)?.is_none() {
                        self.intents.insert(&key, INTENT_DONE)?;
                    }
                } else if let Some(c) = counter {
                    self.intents.insert(&key, INTENT_PENDING)?;
                    self.pending_intents
                        .insert(&schema::pending_key(&c, &at), ())?;
                }
            }
            Body::IntentVoid(v) => {
                let key = schema::entry_key(&v.intent.origin, v.intent.seq);
                self.intents.insert(&key, INTENT_VOID)?;
                let (lo, hi) = schema::pending_range(&v.asn.0);
                let stale: Vec<[u8; 51]> = self
                    .pending_intents
                    .range::<&[u8; 51]>(&lo..=&hi)?
                    .map(|row| row.map(|(k, _)| *k.value()))
                    .filter(|k| k.as_ref().map_or(true, |k| k[11..] == key))
                    .collect::<Result<_, _>>()?;
                for k in stale {
                    self.pending_intents.remove(&k)?;
                }
            }
            Body::Blacklist(event) => {
                let asn = event.asn();
                let mut blocks: CardBlocks = match self.blacklist.get(&asn.0)? {
                    Some(v) => schema::decode_view(v.value(), "blacklist")?,
                    None => CardBlocks::default(),
                };
                blocks.apply(at, e.hlc, event);
                self.blacklist
                    .insert(&asn.0, schema::encode_view(&blocks).as_slice())?;
                if blocks.is_blocked() {
                    self.blocked.insert(&asn.0, ())?;
                } else {
                    self.blocked.remove(&asn.0)?;
                }
            }
            Body::CardRegistry(c) => {
                let mut record: CardRecord = match self.cards.get(&c.asn.0)? {
                    Some(v) => schema::decode_view(v.value(), "card record")?,
                    None => CardRecord::default(),
                };
                record.apply(&c.change, Stamp { hlc: e.hlc, at });
                self.cards
                    .insert(&c.asn.0, schema::encode_view(&record).as_slice())?;
            }
            Body::Operator(_) | Body::Settlement(_) => {}
            Body::Alarm(_) => {
                self.alarms
                    .insert(&schema::entry_key(&at.origin, at.seq), ())?;
            }
            Body::Enroll(cert) => match membership.admit(cert.clone()) {
                Ok(true) => {
                    self.certs
                        .insert(&cert.node.0, schema::encode_cert(cert).as_slice())?;
                }
                Ok(false) => {}
                Err(err) => unfoldable(self, err.to_string())?,
            },
            Body::Revoke(r) => {
                membership.revoke(r.clone());
                self.revocations.insert(
                    &schema::entry_key(&r.node, at.seq),
                    schema::encode_view(r).as_slice(),
                )?;
            }
            Body::Doc(d) => {
                if let Err(why) =
                    docs.apply(&self.docs, &mut self.doc_changes, &d.doc, &d.change)?
                {
                    unfoldable(self, why)?;
                }
            }
        }
        Ok(())
    }
}
