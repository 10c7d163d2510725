//! Reading the report views, and the writes only HQ makes from them: answering an
//! anomaly with an alarm and a block in the same commit that marks it answered, and
//! recording settlements in the same commit that checks the period is still open.

use super::reports::{self, Freshness, OpenLock};
use super::schema::{self, *};
use super::{Store, StoreError, append_in};
use cardmesh_model::body::{Body, EntryRef};
use cardmesh_model::report::{Anomaly, CardChain, Dim, RowKey, Totals};
use cardmesh_model::settlement::{Period, SettlementRecord};
use cardmesh_model::{BusinessDay, CardAsn, Entry, MerchantId, SiteId};
use redb::ReadableTable;

/// A clearing run refused because a period was settled before.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "merchant {merchant} is already settled for {settled} (entry {}#{}); nothing was settled again",
    at.origin.short(),
    at.seq
)]
pub struct SettledAlready {
    pub merchant: MerchantId,
    pub settled: Period,
    pub at: EntryRef,
}

impl Store {
    /// One dimension's report rows for the days `from..=to`, by day then name.
    pub fn report_rows(
        &self,
        dim: Dim,
        from: BusinessDay,
        to: BusinessDay,
    ) -> Result<Vec<(RowKey, Totals)>, StoreError> {
        let txn = self.read()?;
        let rows = txn.open_table(REPORT_ROWS)?;
        let (lo, hi) = reports::row_range(dim, from, to);
        let mut out = Vec::new();
        for row in rows.range::<&[u8]>(lo.as_slice()..hi.as_slice())? {
            let (k, v) = row?;
            let key = reports::parse_row_key(k.value())
                .ok_or_else(|| StoreError::corrupt("a report row key is malformed"))?;
            out.push((key, schema::decode_view(v.value(), "report row")?));
        }
        Ok(out)
    }

    /// Merges rows computed elsewhere with the model's folds (a `report::Aggregates`)
    /// into the report rows, in one commit: how history folded outside the store (a
    /// bulk import, the 10M-transaction benchmark) joins the rows kept as entries arrive.
    pub fn merge_report_rows(&self, rows: Vec<(RowKey, Totals)>) -> Result<(), StoreError> {
        self.inner.writer.call(move |ctx| {
            for (key, t) in rows {
                if let Err(e) = ctx.tables.reports.merge_row(&key, &t)? {
                    return Ok(Err(StoreError::corrupt(format!("report row {key:?}: {e}"))));
                }
            }
            Ok(Ok(()))
        })
    }

    /// Totals of every entry this node holds: the float is `float_delta`.
    pub fn network_totals(&self) -> Result<Totals, StoreError> {
        let txn = self.read()?;
        let totals = txn.open_table(REPORT_TOTALS)?;
        match totals.get("all")? {
            Some(v) => schema::decode_view(v.value(), "report totals"),
            None => Ok(Totals::default()),
        }
    }

    /// Per site: when this node last received an entry about it.
    pub fn freshness(&self) -> Result<Vec<(SiteId, Freshness)>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(FRESHNESS)?;
        table
            .iter()?
            .map(|row| {
                let (k, v) = row?;
                let site = k
                    .value()
                    .parse()
                    .map_err(|e| StoreError::corrupt(format!("freshness: {e}")))?;
                Ok((site, schema::decode_view(v.value(), "freshness")?))
            })
            .collect()
    }

    /// A card's history as rebuilt from every feed.
    pub fn card_chain(&self, asn: &CardAsn) -> Result<Option<CardChain>, StoreError> {
        let txn = self.read()?;
        reports::load_chain(&txn.open_table(CARD_HISTORY)?, asn)
    }

    /// Every anomaly found, and whether this node has answered it.
    pub fn anomalies(&self) -> Result<Vec<(Anomaly, bool)>, StoreError> {
        let txn = self.read()?;
        let anomalies = txn.open_table(ANOMALIES)?;
        let raised = txn.open_table(RAISED)?;
        let mut out = Vec::new();
        for row in anomalies.iter()? {
            let (k, v) = row?;
            let answered = raised.get(k.value())?.is_some();
            out.push((schema::decode_view(v.value(), "anomaly")?, answered));
        }
        Ok(out)
    }

    /// Grey locks no debit for unlock has completed yet, oldest entry first.
    pub fn open_grey_locks(&self) -> Result<Vec<OpenLock>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(GREY_OPEN)?;
        let mut out = table
            .iter()?
            .map(|row| {
                let (k, v) = row?;
                reports::decode_open_lock(k.value(), v.value())
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        out.sort_by_key(|l| (l.hlc, l.at));
        Ok(out)
    }

    /// Every settled period, by merchant then period.
    pub fn settlements(&self) -> Result<Vec<(EntryRef, SettlementRecord)>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(SETTLEMENTS)?;
        table
            .iter()?
            .map(|row| schema::decode_view(row?.1.value(), "settlement"))
            .collect()
    }

    /// Answers anomalies: for each one not answered yet, records it, marks it answered
    /// and appends its bodies (an alarm, a block), all in one commit. Answering the same
    /// anomaly again does nothing. Returns the entries appended.
    pub fn raise(&self, answers: Vec<(Anomaly, Vec<Body>)>) -> Result<Vec<Entry>, StoreError> {
        self.inner.writer.call(move |ctx| {
            let mut appended = Vec::new();
            for (anomaly, bodies) in answers {
                let key = reports::anomaly_key(&anomaly);
                if ctx.tables.reports.raised.get(&key)?.is_some() {
                    continue;
                }
                if ctx.tables.reports.anomalies.get(&key)?.is_none() {
                    ctx.tables
                        .reports
                        .anomalies
                        .insert(&key, schema::encode_view(&anomaly).as_slice())?;
                }
                ctx.tables.reports.raised.insert(&key, ())?;
                for body in bodies {
                    match append_in(ctx, body)? {
                        Ok(e) => appended.push(e),
                        Err(refused) => return Ok(Err(refused)),
                    }
                }
            }
            Ok(Ok(appended))
        })
    }

    /// Appends settlement records, all or none: refused if any merchant already has a
    /// settled period overlapping its record's, checked in the same commit.
    pub fn record_settlements(
        &self,
        records: Vec<SettlementRecord>,
    ) -> Result<Result<Vec<Entry>, SettledAlready>, StoreError> {
        self.inner.writer.call(move |ctx| {
            for r in &records {
                let prefix = reports::settlement_prefix(&r.merchant);
                let mut lo = [0u8; 40];
                let mut hi = [0xffu8; 40];
                lo[..32].copy_from_slice(&prefix);
                hi[..32].copy_from_slice(&prefix);
                for row in ctx
                    .tables
                    .reports
                    .settlements
                    .range::<&[u8; 40]>(&lo..=&hi)?
                {
                    let (at, held): (EntryRef, SettlementRecord) =
                        schema::decode_view(row?.1.value(), "settlement")?;
                    if held.period.overlaps(&r.period) {
                        return Ok(Ok(Err(SettledAlready {
                            merchant: r.merchant.clone(),
                            settled: held.period,
                            at,
                        })));
                    }
                }
            }
            let mut appended = Vec::new();
            for r in records {
                match append_in(ctx, Body::Settlement(r))? {
                    Ok(e) => appended.push(e),
                    Err(refused) => return Ok(Err(refused)),
                }
            }
            Ok(Ok(Ok(appended)))
        })
    }
}
