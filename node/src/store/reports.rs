//! The report and verification views: report rows per day and site, terminal or
//! operator, network totals (the float), per-site freshness, each card's rebuilt
//! history with the anomalies it shows, open grey locks, and settled periods. Folded
//! entry by entry in the same transaction as the feeds, with the model's pure folds
//! (`cardmesh_model::report`), so a report is a range read, never a recomputation.

use super::docs;
use super::error::StoreError;
use super::schema::{self, *};
use cardmesh_model::body::{Body, CardChange, CardTxn, EntryRef, TxnKind};
use cardmesh_model::docs::{DocName, network};
use cardmesh_model::report::{
    self, Anomaly, AnomalyKind, CardChain, ChainMarks, Dim, Link, NeedsHistory, RowKey, Totals,
};
use cardmesh_model::settlement::SettlementRecord;
use cardmesh_model::{BusinessDay, CardAsn, Entry, Hash, Hlc, MerchantId, SiteId};
use redb::{ReadableTable, ReadableTableMetadata, Table, WriteTransaction};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::collections::btree_map::Entry as Slot;

/// When this node last received an entry about a site, and the newest one it has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Freshness {
    /// This node's clock when the last entry arrived, in ms since the epoch.
    pub received_ms: u64,
    /// The newest HLC among the site's entries.
    pub newest: Hlc,
    pub entries: u64,
}

/// The report tables, open for writing.
pub struct ReportTables<'t> {
    rows: Table<'t, &'static [u8], &'static [u8]>,
    totals: Table<'t, &'static str, &'static [u8]>,
    freshness: Table<'t, &'static str, &'static [u8]>,
    history: Table<'t, &'static [u8; 11], &'static [u8]>,
    pub anomalies: Table<'t, &'static [u8; 49], &'static [u8]>,
    pub raised: Table<'t, &'static [u8; 49], ()>,
    grey_open: Table<'t, &'static [u8; 40], &'static [u8]>,
    pub settlements: Table<'t, &'static [u8; 40], &'static [u8]>,
    refunds_waiting: Table<'t, &'static [u8; 80], ()>,
    /// Site time zones, read from the network registry once per transaction and only if
    /// an entry without its own business day needs one.
    offsets: Option<BTreeMap<SiteId, i32>>,
    /// Rows, network totals and site freshness change with nearly every entry, and the
    /// entries of one transaction hit the same few (one site's day): each is read once,
    /// kept here, and written once by [`ReportTables::flush`] before the commit.
    rows_held: BTreeMap<RowKey, Totals>,
    all_held: Option<Totals>,
    freshness_held: BTreeMap<SiteId, Freshness>,
}

const ALL: &str = "all";

pub fn row_key(key: &RowKey) -> Vec<u8> {
    let mut k = vec![dim_code(key.dim)];
    k.extend_from_slice(&key.day.ymd().to_be_bytes());
    k.extend_from_slice(key.name.as_bytes());
    k
}

fn dim_code(d: Dim) -> u8 {
    match d {
        Dim::Site => 0,
        Dim::Terminal => 1,
        Dim::Operator => 2,
    }
}

pub fn parse_row_key(k: &[u8]) -> Option<RowKey> {
    let dim = match k.first()? {
        0 => Dim::Site,
        1 => Dim::Terminal,
        2 => Dim::Operator,
        _ => return None,
    };
    let ymd = u32::from_be_bytes(k.get(1..5)?.try_into().ok()?);
    let day = BusinessDay {
        year: (ymd / 10_000) as u16,
        month: (ymd / 100 % 100) as u8,
        day: (ymd % 100) as u8,
    };
    let name = std::str::from_utf8(k.get(5..)?).ok()?.to_string();
    Some(RowKey { day, dim, name })
}

/// The key range of one dimension's rows from day `from` to day `to`.
pub fn row_range(dim: Dim, from: BusinessDay, to: BusinessDay) -> (Vec<u8>, Vec<u8>) {
    let mut lo = vec![dim_code(dim)];
    lo.extend_from_slice(&from.ymd().to_be_bytes());
    let mut hi = vec![dim_code(dim)];
    hi.extend_from_slice(&(to.ymd() + 1).to_be_bytes());
    (lo, hi)
}

pub fn anomaly_key(a: &Anomaly) -> [u8; 49] {
    let mut k = [0; 49];
    k[..8].copy_from_slice(&a.asn.0);
    k[8] = match a.kind {
        AnomalyKind::CloneSuspected => 0,
        AnomalyKind::BalanceBreak => 1,
        AnomalyKind::BadTac => 2,
        AnomalyKind::StaleGreyLock => 3,
    };
    k[9..].copy_from_slice(&entry_key(&a.at.origin, a.at.seq));
    k
}

pub fn settlement_prefix(m: &MerchantId) -> [u8; 32] {
    let mut p = [0; 32];
    p[..m.as_str().len()].copy_from_slice(m.as_str().as_bytes());
    p
}

pub fn settlement_key(r: &SettlementRecord) -> [u8; 40] {
    let mut k = [0; 40];
    k[..32].copy_from_slice(&settlement_prefix(&r.merchant));
    k[32..36].copy_from_slice(&r.period.from.ymd().to_be_bytes());
    k[36..].copy_from_slice(&r.period.to.ymd().to_be_bytes());
    k
}

impl<'t> ReportTables<'t> {
    pub fn open(txn: &'t WriteTransaction) -> Result<ReportTables<'t>, StoreError> {
        Ok(ReportTables {
            rows: txn.open_table(REPORT_ROWS)?,
            totals: txn.open_table(REPORT_TOTALS)?,
            freshness: txn.open_table(FRESHNESS)?,
            history: txn.open_table(CARD_HISTORY)?,
            anomalies: txn.open_table(ANOMALIES)?,
            raised: txn.open_table(RAISED)?,
            grey_open: txn.open_table(GREY_OPEN)?,
            settlements: txn.open_table(SETTLEMENTS)?,
            refunds_waiting: txn.open_table(REFUNDS_WAITING)?,
            offsets: None,
            rows_held: BTreeMap::new(),
            all_held: None,
            freshness_held: BTreeMap::new(),
        })
    }

    /// Writes the rows, totals and freshness changed in this transaction. Must run
    /// before the transaction commits; until then nothing of them is in the tables.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        for (k, row) in std::mem::take(&mut self.rows_held) {
            self.rows
                .insert(row_key(&k).as_slice(), schema::encode_view(&row).as_slice())?;
        }
        if let Some(all) = self.all_held.take() {
            self.totals
                .insert(ALL, schema::encode_view(&all).as_slice())?;
        }
        for (site, f) in std::mem::take(&mut self.freshness_held) {
            self.freshness
                .insert(site.as_str(), schema::encode_view(&f).as_slice())?;
        }
        Ok(())
    }

    /// A report row as this transaction has it so far, held from now on until `flush`.
    fn held_row(&mut self, k: &RowKey) -> Result<&mut Totals, StoreError> {
        if !self.rows_held.contains_key(k) {
            let row = match self.rows.get(row_key(k).as_slice())? {
                Some(v) => schema::decode_view(v.value(), "report row")?,
                None => Totals::default(),
            };
            self.rows_held.insert(k.clone(), row);
        }
        Ok(self.rows_held.get_mut(k).expect("held just above"))
    }

    /// The network totals as this transaction has them so far, held until `flush`.
    fn held_all(&mut self) -> Result<&mut Totals, StoreError> {
        if self.all_held.is_none() {
            self.all_held = Some(match self.totals.get(ALL)? {
                Some(v) => schema::decode_view(v.value(), "report totals")?,
                None => Totals::default(),
            });
        }
        Ok(self.all_held.as_mut().expect("held just above"))
    }

    /// Folds one accepted entry, written by a node of `site`, received at `now_ms`;
    /// `digest` is its card operation's `report::txn_digest` if made already.
    /// `Ok(Err(why))`: the entry's amounts overflow a report row; nothing was changed.
    pub fn fold(
        &mut self,
        e: &Entry,
        digest: Option<Hash>,
        site: &SiteId,
        now_ms: u64,
        docs: (
            &impl ReadableTable<&'static [u8], &'static [u8]>,
            &impl ReadableTable<(&'static [u8], u64), &'static [u8]>,
        ),
    ) -> Result<Result<(), String>, StoreError> {
        let needs_offset = matches!(
            &e.body,
            Body::Alarm(_)
                | Body::Operator(_)
                | Body::CardRegistry(cardmesh_model::body::CardEvent {
                    change: CardChange::Personalized { .. },
                    ..
                })
        );
        if needs_offset && self.offsets.is_none() {
            let reg = docs::load(docs.0, docs.1, &DocName::Network)?
                .map(|(d, _)| network::read(&d))
                .unwrap_or_default();
            self.offsets = Some(
                reg.sites
                    .into_iter()
                    .map(|(s, i)| (s, i.utc_offset_min))
                    .collect(),
            );
        }
        let offset = self
            .offsets
            .as_ref()
            .and_then(|o| o.get(site).copied())
            .unwrap_or(0);
        let rows = match report::rows_of(&e.body, e.hlc, site, |ms| {
            BusinessDay::of_instant(ms as i64, offset)
        }) {
            Ok(rows) => rows,
            Err(err) => return Ok(Err(format!("report totals: {err}"))),
        };
        if let Err(why) = self.add_rows(&rows)? {
            return Ok(Err(why));
        }
        let about = e.body.card_txn().map_or(site, |t| &t.site);
        self.touch(about, e.hlc, now_ms)?;
        match &e.body {
            Body::Card(t) | Body::Completion(cardmesh_model::body::Completion { txn: t, .. }) => {
                self.fold_card(e, t, digest)?
            }
            Body::Settlement(r) => {
                self.settlements.insert(
                    &settlement_key(r),
                    schema::encode_view(&(e.entry_ref(), r)).as_slice(),
                )?;
            }
            _ => {}
        }
        Ok(Ok(()))
    }

    /// Adds `rows`, and their site row to the network totals (every operation has one
    /// site row, so the totals count it once). Every sum is checked before any row
    /// changes, so that an overflow leaves every row as it was; `rows` names each
    /// dimension once (`report::rows_of`, `report::refund_rows`), so no row is checked
    /// for one addition and then given two.
    fn add_rows(&mut self, rows: &[(RowKey, Totals)]) -> Result<Result<(), String>, StoreError> {
        for (k, t) in rows {
            if let Err(err) = self.held_row(k)?.fits(t) {
                return Ok(Err(format!("report row {k:?}: {err}")));
            }
        }
        let site = rows
            .iter()
            .find(|(k, _)| k.dim == Dim::Site)
            .map(|(_, t)| t);
        if let Some(t) = site
            && let Err(err) = self.held_all()?.fits(t)
        {
            return Ok(Err(format!("network totals: {err}")));
        }
        for (k, t) in rows {
            let row = self.rows_held.get_mut(k).expect("held above");
            row.merge(t).expect("checked above");
        }
        if let Some(t) = site {
            self.held_all()?.merge(t).expect("checked above");
        }
        Ok(Ok(()))
    }

    /// Charges refunds to the rows of the sales they refer to (`report::refund_rows`),
    /// whichever of the two arrives first: a refund whose sale is not here yet waits,
    /// and is charged when the sale comes, so every delivery order ends with the same
    /// rows. `counted`: `e` is the first entry for its card counter (a refund completed
    /// at two nodes is charged once). `feeds` holds every entry folded before `e`.
    pub fn charge_refunds(
        &mut self,
        e: &Entry,
        counted: bool,
        feeds: &impl ReadableTable<&'static [u8; 40], &'static [u8]>,
    ) -> Result<Result<(), String>, StoreError> {
        let Some(t) = e.body.card_txn() else {
            return Ok(Ok(()));
        };
        if counted
            && t.kind == TxnKind::Refund
            && let Some(sale) = t.refers_to
        {
            match held_txn(feeds, sale)? {
                Some(sale_txn) => {
                    if let Err(why) = self.add_rows(&report::refund_rows(t, &sale_txn))? {
                        return Ok(Err(why));
                    }
                }
                None => {
                    self.refunds_waiting
                        .insert(&waiting_key(sale, e.entry_ref()), ())?;
                }
            }
        }
        if self.refunds_waiting.is_empty()? {
            return Ok(Ok(()));
        }
        let mut lo = [0; 80];
        lo[..40].copy_from_slice(&entry_key(&e.origin, e.seq));
        let mut hi = lo;
        hi[40..].fill(0xff);
        let waiting: Vec<[u8; 80]> = self
            .refunds_waiting
            .range::<&[u8; 80]>(&lo..=&hi)?
            .map(|row| row.map(|(k, _)| *k.value()))
            .collect::<Result<_, _>>()?;
        for k in waiting {
            let refund = parse_entry_key(&k[40..]);
            let refund_txn = held_txn(feeds, refund)?.ok_or_else(|| {
                StoreError::corrupt(format!("waiting refund {refund:?} is not in the feeds"))
            })?;
            self.refunds_waiting.remove(&k)?;
            if let Err(why) = self.add_rows(&report::refund_rows(&refund_txn, t))? {
                return Ok(Err(why));
            }
        }
        Ok(Ok(()))
    }

    /// Adds `t` to one row. `Ok(Err)` on an overflow, with the row unchanged.
    pub fn merge_row(
        &mut self,
        key: &RowKey,
        t: &Totals,
    ) -> Result<Result<(), cardmesh_model::money::MoneyError>, StoreError> {
        Ok(self.held_row(key)?.merge(t))
    }

    fn touch(&mut self, site: &SiteId, hlc: Hlc, now_ms: u64) -> Result<(), StoreError> {
        let f = match self.freshness_held.entry(site.clone()) {
            Slot::Occupied(held) => held.into_mut(),
            Slot::Vacant(slot) => slot.insert(match self.freshness.get(site.as_str())? {
                Some(v) => schema::decode_view(v.value(), "freshness")?,
                None => Freshness::default(),
            }),
        };
        f.received_ms = f.received_ms.max(now_ms);
        f.newest = f.newest.max(hlc);
        f.entries += 1;
        Ok(())
    }

    fn fold_card(
        &mut self,
        e: &Entry,
        t: &cardmesh_model::body::CardTxn,
        digest: Option<Hash>,
    ) -> Result<(), StoreError> {
        let counter = t.kind.counter_space().map(|space| (space, t.card_counter));
        let marks_before: ChainMarks = match self.history.get(&schema::chain_marks_key(&t.asn))? {
            Some(v) => schema::decode_view(v.value(), "card history marks")?,
            None => ChainMarks::default(),
        };
        let link_before: Option<Link> = match counter {
            Some((space, n)) if marks_before.may_hold(space, n) => self
                .history
                .get(&schema::counter_key(&t.asn, space, n))?
                .map(|v| schema::decode_view(v.value(), "card history link"))
                .transpose()?,
            _ => None,
        };
        let mut chain = CardChain::partial(
            counter
                .zip(link_before.clone())
                .map(|((s, n), l)| (s, n, l)),
            marks_before.clone(),
        );
        let open_before = chain.open_locks();
        let digest = digest.unwrap_or_else(|| report::txn_digest(t));
        let found = match chain.try_apply_digested(e.entry_ref(), e.hlc, t, digest) {
            Ok(found) => found,
            Err(NeedsHistory) => {
                chain = load_chain(&self.history, &t.asn)?.unwrap_or_default();
                chain.apply(e.entry_ref(), e.hlc, t)
            }
        };
        for a in found {
            self.anomalies
                .insert(&anomaly_key(&a), schema::encode_view(&a).as_slice())?;
        }
        let open_after = chain.open_locks();
        for (lock, _) in &open_before {
            if !open_after.iter().any(|(r, _)| r == lock) {
                self.grey_open.remove(&entry_key(&lock.origin, lock.seq))?;
            }
        }
        for (lock, hlc) in &open_after {
            self.grey_open.insert(
                &entry_key(&lock.origin, lock.seq),
                schema::encode_view(&(t.asn, *hlc)).as_slice(),
            )?;
        }
        if let Some((space, n)) = counter
            && let Some(link) = chain.link(space, n)
            && Some(link) != link_before.as_ref()
        {
            self.history.insert(
                &schema::counter_key(&t.asn, space, n),
                schema::encode_view(link).as_slice(),
            )?;
        }
        if chain.marks() != &marks_before {
            self.history.insert(
                &schema::chain_marks_key(&t.asn),
                schema::encode_view(chain.marks()).as_slice(),
            )?;
        }
        Ok(())
    }
}

/// A card's history from its rows in `CARD_HISTORY`; `None` if it has none.
pub fn load_chain(
    history: &impl ReadableTable<&'static [u8; 11], &'static [u8]>,
    asn: &CardAsn,
) -> Result<Option<CardChain>, StoreError> {
    let (lo, hi) = schema::card_history_range(asn);
    let (mut links, mut marks) = (Vec::new(), None);
    for row in history.range::<&[u8; 11]>(&lo..=&hi)? {
        let (k, v) = row?;
        match schema::parse_counter_key(k.value()) {
            Some((space, n)) => links.push((
                space,
                n,
                schema::decode_view(v.value(), "card history link")?,
            )),
            None => marks = Some(schema::decode_view(v.value(), "card history marks")?),
        }
    }
    if links.is_empty() && marks.is_none() {
        return Ok(None);
    }
    Ok(Some(CardChain::from_parts(
        links,
        marks.unwrap_or_default(),
    )))
}

fn waiting_key(sale: EntryRef, refund: EntryRef) -> [u8; 80] {
    let mut k = [0; 80];
    k[..40].copy_from_slice(&entry_key(&sale.origin, sale.seq));
    k[40..].copy_from_slice(&entry_key(&refund.origin, refund.seq));
    k
}

/// The card transaction of entry `at`, if it is held and is one.
fn held_txn(
    feeds: &impl ReadableTable<&'static [u8; 40], &'static [u8]>,
    at: EntryRef,
) -> Result<Option<CardTxn>, StoreError> {
    let Some(bytes) = feeds.get(&entry_key(&at.origin, at.seq))? else {
        return Ok(None);
    };
    Ok(schema::decode_entry(bytes.value())?
        .body
        .card_txn()
        .cloned())
}

/// An open grey lock as the report lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenLock {
    pub at: EntryRef,
    pub asn: CardAsn,
    pub hlc: Hlc,
}

pub fn decode_open_lock(key: &[u8], value: &[u8]) -> Result<OpenLock, StoreError> {
    let (asn, hlc): (CardAsn, Hlc) = schema::decode_view(value, "grey lock")?;
    Ok(OpenLock {
        at: parse_entry_key(key),
        asn,
        hlc,
    })
}
