//! Clearing runs at HQ: per merchant, the last whole period of its cycle up to a day,
//! its sales summed from the report rows of its sites, the fee and the amount to
//! transfer; the clearing file written (durably, then renamed into place) and then one
//! settlement entry per merchant appended to HQ's feed in one commit that first checks
//! the period was never settled. A period already settled is skipped by a clearing run
//! and refused by an explicit one, before and after any restart (the check reads the
//! settlements folded from the feed). A merchant's own staff (`Scope::Merchant`) see
//! their merchant's terms, lines and settled periods only, and run no clearing.

use super::HqError;
use super::report::{self, By};
use crate::store::Store;
use cardmesh_model::body::EntryRef;
use cardmesh_model::docs::{DocName, merchants};
use cardmesh_model::report::{Scope, Totals};
use cardmesh_model::settlement::{self, ClearingLine, MerchantTerms, Period, SettlementRecord};
use cardmesh_model::{BusinessDay, Entry, Hash, MerchantId};
use std::collections::BTreeMap;
use std::collections::btree_map::Entry as Slot;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The terms of every merchant `scope` may see, from the network registry.
pub fn merchants(
    store: &Store,
    scope: &Scope,
) -> Result<BTreeMap<MerchantId, MerchantTerms>, HqError> {
    let mut all = store
        .doc(&DocName::Network)?
        .map(|d| merchants::read(&d))
        .unwrap_or_default();
    all.retain(|m, _| scope.sees_merchant(m));
    Ok(all)
}

/// The settled periods (clearing entries) `scope` may see, by merchant then period.
pub fn settled(store: &Store, scope: &Scope) -> Result<Vec<(EntryRef, SettlementRecord)>, HqError> {
    let mut all = store.settlements()?;
    all.retain(|(_, r)| scope.sees_merchant(&r.merchant));
    Ok(all)
}

/// Merchants a run skipped, each with the period settled before.
pub type Skipped = Vec<(MerchantId, Period)>;

/// What a clearing run did.
#[derive(Debug)]
pub struct ClearingRun {
    pub lines: Vec<ClearingLine>,
    /// Merchants whose period was settled before, and that period.
    pub skipped: Skipped,
    /// The clearing file written, if any line was settled.
    pub file: Option<PathBuf>,
    pub file_hash: Option<Hash>,
    pub entries: Vec<Entry>,
}

/// Which merchants and periods a run settles: `only` one merchant (with an explicit
/// `period`) or every merchant's last whole period up to `as_of`.
pub enum Selection {
    Due {
        as_of: BusinessDay,
    },
    One {
        merchant: MerchantId,
        period: Period,
    },
}

/// The lines a clearing run would settle, and the merchants it skips because their
/// period was settled before, of the merchants `scope` may see. Reads only; `run`
/// writes.
pub fn compute(
    store: &Store,
    selection: Selection,
    scope: &Scope,
) -> Result<(Vec<ClearingLine>, Skipped), HqError> {
    super::require_hq(store)?;
    if let (Selection::One { merchant, .. }, Scope::Merchant(mine)) = (&selection, scope)
        && merchant != mine
    {
        return Err(HqError::NotPermitted(
            format!("merchant {merchant}'s settlement"),
            mine.clone(),
        ));
    }
    // One read of the registry for both: loading the document is most of a run's cost.
    let doc = store.doc(&DocName::Network)?.unwrap_or_default();
    let mut terms = merchants::read(&doc);
    terms.retain(|m, _| scope.sees_merchant(m));
    let reg = cardmesh_model::docs::network::read(&doc);
    let settled = settled(store, scope)?;
    let mut plan = Vec::new();
    let mut skipped = Vec::new();
    match selection {
        Selection::Due { as_of } => {
            for (m, t) in &terms {
                let period = t.cycle.last_complete(as_of);
                match settled
                    .iter()
                    .find(|(_, r)| r.merchant == *m && r.period.overlaps(&period))
                {
                    Some((_, r)) => skipped.push((m.clone(), r.period)),
                    None => plan.push((m.clone(), t.fee_bp, period)),
                }
            }
        }
        Selection::One { merchant, period } => {
            let t = terms
                .get(&merchant)
                .ok_or_else(|| HqError::UnknownMerchant(merchant.clone()))?;
            plan.push((merchant, t.fee_bp, period));
        }
    }
    let mut lines = Vec::new();
    // Merchants on the same cycle share a period: its rows are read once for all.
    let mut by_period: BTreeMap<Period, BTreeMap<String, Totals>> = BTreeMap::new();
    for (m, fee_bp, period) in plan {
        let rows = match by_period.entry(period) {
            Slot::Occupied(o) => o.into_mut(),
            Slot::Vacant(v) => v.insert(report::sales_between(
                store,
                &reg,
                By::Merchant,
                period.from,
                period.to,
                scope,
            )?),
        };
        let t = rows.get(m.as_str()).cloned().unwrap_or_default();
        let gross = t.sales().map_err(|e| HqError::Overflow(e.to_string()))?;
        let count = t.sales_count();
        lines.push(
            ClearingLine::compute(m, period, count, gross, fee_bp)
                .map_err(|e| HqError::Overflow(e.to_string()))?,
        );
    }
    Ok((lines, skipped))
}

/// Runs a clearing run and writes its file into `out_dir` as
/// `clearing-<first day>-<last day>.csv`. Only the network (HQ's own staff) settles: a
/// clearing file holds every merchant's line.
pub fn run(
    store: &Store,
    selection: Selection,
    out_dir: &Path,
    scope: &Scope,
) -> Result<ClearingRun, HqError> {
    if let Scope::Merchant(mine) = scope {
        return Err(HqError::NotPermitted("a clearing run".into(), mine.clone()));
    }
    let (lines, skipped) = compute(store, selection, scope)?;
    if lines.is_empty() {
        return Ok(ClearingRun {
            lines,
            skipped,
            file: None,
            file_hash: None,
            entries: Vec::new(),
        });
    }
    let text = settlement::clearing_file(&lines).map_err(|e| HqError::Overflow(e.to_string()))?;
    let hash = Hash::of(text.as_bytes());
    let first = lines
        .iter()
        .map(|l| l.period.from)
        .min()
        .expect("lines exist");
    let last = lines
        .iter()
        .map(|l| l.period.to)
        .max()
        .expect("lines exist");
    let path = out_dir.join(format!("clearing-{first}-{last}.csv"));
    if path.exists() {
        return Err(HqError::FileExists(path));
    }
    write_durably(&path, text.as_bytes())?;
    let records = lines.iter().map(|l| l.record(hash)).collect();
    match store.record_settlements(records)? {
        Ok(entries) => Ok(ClearingRun {
            lines,
            skipped,
            file: Some(path),
            file_hash: Some(hash),
            entries,
        }),
        Err(already) => {
            // Nothing was recorded: the file must not stand for a settlement.
            std::fs::remove_file(&path).map_err(|source| HqError::Io {
                path: path.clone(),
                source,
            })?;
            Err(HqError::Settled(already))
        }
    }
}

/// Writes a file so that it is either wholly there or not at all.
fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), HqError> {
    let tmp = path.with_extension("csv.part");
    let io = |source| HqError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        d.sync_all().map_err(io)?;
    }
    Ok(())
}

/// The sites of each merchant `scope` may see, for `settle list`.
pub fn merchant_sites(
    store: &Store,
    scope: &Scope,
) -> Result<BTreeMap<MerchantId, Vec<String>>, HqError> {
    let reg = report::registry(store)?;
    let mut out: BTreeMap<MerchantId, Vec<String>> = BTreeMap::new();
    for (site, info) in reg.sites {
        if scope.sees_merchant(&info.merchant) {
            out.entry(info.merchant).or_default().push(site.to_string());
        }
    }
    Ok(out)
}

/// Sets a merchant's settlement terms (HQ only, like every network registry edit).
pub fn set_merchant(store: &Store, id: &MerchantId, terms: &MerchantTerms) -> Result<(), HqError> {
    store.edit_doc(DocName::Network, |d| merchants::set_merchant(d, id, terms))?;
    Ok(())
}
