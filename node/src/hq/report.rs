//! Reports read from the store's report rows: sales and operations per site, terminal,
//! merchant or operator for a day or a month; products and fuel volumes; risk (alarms,
//! anomalies, open grey locks, the float, freshness per site). Months and merchants are
//! sums of stored day and site rows; nothing here reads the ledger. Output as a table,
//! CSV or JSON.

use super::HqError;
use crate::store::{Freshness, OpenLock, Store};
use cardmesh_model::docs::network::NetworkRegistry;
use cardmesh_model::docs::{DocName, network, pricebook};
use cardmesh_model::report::{Anomaly, Dim, ProductTally, Totals, TxnClass};
use cardmesh_model::{BusinessDay, MerchantId, Money, ProductId, SiteId};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::str::FromStr;

/// The days a report covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Span {
    Day(BusinessDay),
    Month { year: u16, month: u8 },
}

impl Span {
    pub fn days(self) -> (BusinessDay, BusinessDay) {
        match self {
            Span::Day(d) => (d, d),
            Span::Month { year, month } => (
                BusinessDay {
                    year,
                    month,
                    day: 1,
                },
                BusinessDay {
                    year,
                    month,
                    day: 31,
                },
            ),
        }
    }
}

impl std::fmt::Display for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Span::Day(d) => write!(f, "{d}"),
            Span::Month { year, month } => write!(f, "{year:04}-{month:02}"),
        }
    }
}

impl FromStr for Span {
    type Err = String;
    /// `2026-11-20` is a day, `2026-11` a month.
    fn from_str(s: &str) -> Result<Span, String> {
        let err = || format!("'{s}' is neither a day (2026-11-20) nor a month (2026-11)");
        let parts: Vec<&str> = s.split('-').collect();
        let num = |p: &str, len: usize| -> Result<u16, String> {
            if p.len() != len || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err());
            }
            p.parse().map_err(|_| err())
        };
        let (year, month) = match parts.as_slice() {
            [y, m] | [y, m, _] => (num(y, 4)?, num(m, 2)? as u8),
            _ => return Err(err()),
        };
        if !(1..=12).contains(&month) {
            return Err(err());
        }
        match parts.as_slice() {
            [_, _, d] => {
                let day = num(d, 2)? as u8;
                let parsed = BusinessDay { year, month, day };
                // A day that does not exist would silently select nothing.
                let days = cardmesh_model::settlement::days_from_civil(parsed);
                if cardmesh_model::settlement::day_of(days) != parsed || day == 0 {
                    return Err(err());
                }
                Ok(Span::Day(parsed))
            }
            _ => Ok(Span::Month { year, month }),
        }
    }
}

/// What a sales report is per.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum By {
    Site,
    Terminal,
    Merchant,
    Operator,
}

/// The network registry, or an empty one before HQ has written it.
pub fn registry(store: &Store) -> Result<NetworkRegistry, HqError> {
    Ok(store
        .doc(&DocName::Network)?
        .map(|d| network::read(&d))
        .unwrap_or_default())
}

/// The site a row's name belongs to, if known: used to scope rows to one merchant.
fn site_of(reg: &NetworkRegistry, dim: Dim, name: &str) -> Option<SiteId> {
    match dim {
        Dim::Site => name.parse().ok(),
        Dim::Terminal => reg.terminals.get(&name.parse().ok()?).cloned(),
        Dim::Operator => reg
            .operators
            .get(&name.parse().ok()?)
            .map(|o| o.site.clone()),
    }
}

fn merchant_of(reg: &NetworkRegistry, site: &SiteId) -> Option<MerchantId> {
    reg.sites.get(site).map(|s| s.merchant.clone())
}

/// Sales and operations per name over a span; with `scope`, only rows of that
/// merchant's sites (what a merchant-scoped user sees).
pub fn sales(
    store: &Store,
    by: By,
    span: Span,
    scope: Option<&MerchantId>,
) -> Result<BTreeMap<String, Totals>, HqError> {
    let (from, to) = span.days();
    sales_between(store, &registry(store)?, by, from, to, scope)
}

/// Sales and operations per name over the days `from..=to`.
pub fn sales_between(
    store: &Store,
    reg: &NetworkRegistry,
    by: By,
    from: BusinessDay,
    to: BusinessDay,
    scope: Option<&MerchantId>,
) -> Result<BTreeMap<String, Totals>, HqError> {
    let dim = match by {
        By::Site | By::Merchant => Dim::Site,
        By::Terminal => Dim::Terminal,
        By::Operator => Dim::Operator,
    };
    let mut out: BTreeMap<String, Totals> = BTreeMap::new();
    for (key, totals) in store.report_rows(dim, from, to)? {
        let site = site_of(reg, dim, &key.name);
        let merchant = site.as_ref().and_then(|s| merchant_of(reg, s));
        if scope.is_some_and(|m| merchant.as_ref() != Some(m)) {
            continue;
        }
        let name = match by {
            By::Merchant => merchant.map_or_else(|| "(no merchant)".to_string(), |m| m.to_string()),
            _ => key.name,
        };
        out.entry(name)
            .or_default()
            .merge(&totals)
            .map_err(|e| HqError::Overflow(e.to_string()))?;
    }
    Ok(out)
}

/// Everything of a span in one row (the sum of every site).
pub fn span_totals(
    store: &Store,
    span: Span,
    scope: Option<&MerchantId>,
) -> Result<Totals, HqError> {
    let (from, to) = span.days();
    totals_between(store, &registry(store)?, from, to, scope)
}

/// Everything of the days `from..=to` in one row.
pub fn totals_between(
    store: &Store,
    reg: &NetworkRegistry,
    from: BusinessDay,
    to: BusinessDay,
    scope: Option<&MerchantId>,
) -> Result<Totals, HqError> {
    let mut all = Totals::default();
    for t in sales_between(store, reg, By::Site, from, to, scope)?.values() {
        all.merge(t).map_err(|e| HqError::Overflow(e.to_string()))?;
    }
    Ok(all)
}

/// Output format of a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Csv,
    Json,
}

const SALES_COLUMNS: [&str; 18] = [
    "name",
    "operations",
    "purchases",
    "purchase_amount",
    "reversals",
    "reversal_amount",
    "loads",
    "load_amount",
    "refunds",
    "refund_amount",
    "returns",
    "cards_issued",
    "deposits",
    "unlock_debits",
    "unlock_amount",
    "refused",
    "failure_permille",
    "float_change",
];

fn sales_cells(name: &str, t: &Totals) -> Vec<String> {
    let k = |c: TxnClass| t.kind(c);
    vec![
        name.to_string(),
        t.operations().to_string(),
        k(TxnClass::Purchase).count.to_string(),
        k(TxnClass::Purchase).amount.to_string(),
        k(TxnClass::Reversal).count.to_string(),
        k(TxnClass::Reversal).amount.to_string(),
        k(TxnClass::Load).count.to_string(),
        k(TxnClass::Load).amount.to_string(),
        k(TxnClass::Refund).count.to_string(),
        k(TxnClass::Refund).amount.to_string(),
        k(TxnClass::Return).count.to_string(),
        k(TxnClass::Issue).count.to_string(),
        t.deposits_taken
            .checked_sub(t.deposits_returned)
            .unwrap_or(Money::ZERO)
            .to_string(),
        k(TxnClass::DebitForUnlock).count.to_string(),
        k(TxnClass::DebitForUnlock).amount.to_string(),
        t.refusals().to_string(),
        t.failure_permille().map_or("-".into(), |p| p.to_string()),
        t.float_delta.to_string(),
    ]
}

fn sales_json(t: &Totals) -> Value {
    let kinds: serde_json::Map<String, Value> = TxnClass::ALL
        .iter()
        .map(|c| {
            let k = t.kind(*c);
            (
                c.name().to_string(),
                json!({"count": k.count, "amount_fen": k.amount.fen()}),
            )
        })
        .collect();
    json!({
        "operations": t.operations(),
        "kinds": kinds,
        "cards_personalized": t.cards_personalized,
        "deposits_taken_fen": t.deposits_taken.fen(),
        "deposits_returned_fen": t.deposits_returned.fen(),
        "refused": t.refusals(),
        "refused_by_reason": t.refused,
        "failure_permille": t.failure_permille(),
        "alarms": t.alarms,
        "float_change_fen": t.float_delta.fen(),
    })
}

/// Renders a sales report.
pub fn render_sales(
    by: By,
    span: Span,
    rows: &BTreeMap<String, Totals>,
    fresh: &[(SiteId, Freshness)],
    format: Format,
) -> String {
    match format {
        Format::Json => {
            let rows: Vec<Value> = rows
                .iter()
                .map(|(name, t)| {
                    let mut v = sales_json(t);
                    v["name"] = json!(name);
                    v
                })
                .collect();
            let fresh: Vec<Value> = fresh
                .iter()
                .map(|(s, f)| json!({"site": s.as_str(), "last_received_ms": f.received_ms, "newest_hlc_ms": f.newest.millis, "entries": f.entries}))
                .collect();
            let doc = json!({"by": format!("{by:?}").to_lowercase(), "span": span.to_string(), "rows": rows, "freshness": fresh});
            format!("{doc:#}\n")
        }
        Format::Csv => {
            let mut out = SALES_COLUMNS.join(",") + "\n";
            for (name, t) in rows {
                out.push_str(&sales_cells(name, t).join(","));
                out.push('\n');
            }
            out
        }
        Format::Table => {
            let cells: Vec<Vec<String>> = rows.iter().map(|(n, t)| sales_cells(n, t)).collect();
            let mut out = format!("{by:?} report for {span}\n");
            out.push_str(&table(&SALES_COLUMNS, &cells));
            out.push_str(&freshness_text(fresh));
            out
        }
    }
}

fn freshness_text(fresh: &[(SiteId, Freshness)]) -> String {
    let mut out = String::from("freshness (last entry received per site):\n");
    for (site, f) in fresh {
        let _ = writeln!(
            out,
            "  {site}: {} entries, last received at {} ms, newest written at {} ms",
            f.entries, f.received_ms, f.newest.millis
        );
    }
    out
}

fn table(columns: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = columns.iter().map(|c| c.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let mut l = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:>w$}"))
            .collect::<Vec<_>>()
            .join("  ");
        l.push('\n');
        l
    };
    let mut out = line(columns.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// Products sold in a span, best-selling (by amount) first, with each one's unit from
/// the price book (`L` for fuel grades: their quantity is the volume).
pub fn products(
    store: &Store,
    span: Span,
    scope: Option<&MerchantId>,
) -> Result<Vec<(ProductId, ProductTally, String)>, HqError> {
    let totals = span_totals(store, span, scope)?;
    let book = store
        .doc(&DocName::PriceBook)?
        .map(|d| pricebook::read(&d))
        .unwrap_or_default();
    let mut out: Vec<(ProductId, ProductTally, String)> = totals
        .products
        .into_iter()
        .map(|(p, t)| {
            let unit = book
                .products
                .get(&p)
                .map_or_else(|| "?".to_string(), |x| x.unit.clone());
            (p, t, unit)
        })
        .collect();
    out.sort_by(|a, b| b.1.amount.cmp(&a.1.amount).then(a.0.cmp(&b.0)));
    Ok(out)
}

pub fn render_products(rows: &[(ProductId, ProductTally, String)], format: Format) -> String {
    let columns = ["product", "unit", "lines", "quantity", "amount"];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|(p, t, u)| {
            vec![
                p.to_string(),
                u.clone(),
                t.lines.to_string(),
                t.quantity.to_string(),
                t.amount.to_string(),
            ]
        })
        .collect();
    match format {
        Format::Table => table(&columns, &cells),
        Format::Csv => {
            let mut out = columns.join(",") + "\n";
            for r in cells {
                out.push_str(&r.join(","));
                out.push('\n');
            }
            out
        }
        Format::Json => {
            let v: Vec<Value> = rows
                .iter()
                .map(|(p, t, u)| json!({"product": p.as_str(), "unit": u, "lines": t.lines, "quantity_milli": t.quantity.milli(), "amount_fen": t.amount.fen()}))
                .collect();
            format!("{:#}\n", json!(v))
        }
    }
}

/// The risk picture: alarms in the span, every anomaly found, open grey locks (those
/// older than the allowed age marked stale), the float and per-site freshness.
pub struct Risk {
    pub span: Span,
    pub alarms: BTreeMap<String, u64>,
    pub anomalies: Vec<(Anomaly, bool)>,
    pub open_locks: Vec<(OpenLock, bool)>,
    pub float: Money,
    pub freshness: Vec<(SiteId, Freshness)>,
}

pub fn risk(store: &Store, span: Span, now_ms: u64, max_lock_age_ms: u64) -> Result<Risk, HqError> {
    Ok(Risk {
        span,
        alarms: span_totals(store, span, None)?.alarms,
        anomalies: store.anomalies()?,
        open_locks: store
            .open_grey_locks()?
            .into_iter()
            .map(|l| (l, now_ms.saturating_sub(l.hlc.millis) > max_lock_age_ms))
            .collect(),
        float: store.network_totals()?.float_delta,
        freshness: store.freshness()?,
    })
}

pub fn render_risk(r: &Risk, format: Format) -> String {
    match format {
        Format::Json => {
            let anomalies: Vec<Value> = r.anomalies.iter().map(|(a, answered)| json!({"card": a.asn.to_string(), "kind": a.kind.name(), "entry": format!("{}#{}", a.at.origin, a.at.seq), "detail": a.detail, "answered": answered})).collect();
            let locks: Vec<Value> = r.open_locks.iter().map(|(l, stale)| json!({"card": l.asn.to_string(), "entry": format!("{}#{}", l.at.origin, l.at.seq), "locked_at_ms": l.hlc.millis, "stale": stale})).collect();
            let fresh: Vec<Value> = r
                .freshness
                .iter()
                .map(|(s, f)| json!({"site": s.as_str(), "last_received_ms": f.received_ms, "entries": f.entries}))
                .collect();
            format!(
                "{:#}\n",
                json!({"span": r.span.to_string(), "alarms": r.alarms, "anomalies": anomalies, "open_grey_locks": locks, "float_fen": r.float.fen(), "freshness": fresh})
            )
        }
        Format::Csv => {
            let mut out = String::from("section,card,kind,entry,detail\n");
            for (kind, n) in &r.alarms {
                let _ = writeln!(out, "alarm,,{kind},,{n}");
            }
            for (a, answered) in &r.anomalies {
                let _ = writeln!(
                    out,
                    "anomaly,{},{},{}#{},{}{}",
                    a.asn,
                    a.kind.name(),
                    a.at.origin.short(),
                    a.at.seq,
                    a.detail.replace(',', ";"),
                    if *answered { " (blocked)" } else { "" }
                );
            }
            for (l, stale) in &r.open_locks {
                let _ = writeln!(
                    out,
                    "grey_lock,{},{},{}#{},locked at {} ms",
                    l.asn,
                    if *stale { "stale" } else { "open" },
                    l.at.origin.short(),
                    l.at.seq,
                    l.hlc.millis
                );
            }
            let _ = writeln!(out, "float,,,,{}", r.float);
            out
        }
        Format::Table => {
            let mut out = format!(
                "risk report for {}\nfloat (sum of all card balances): {}\n",
                r.span, r.float
            );
            out.push_str("alarms:\n");
            for (kind, n) in &r.alarms {
                let _ = writeln!(out, "  {kind}: {n}");
            }
            out.push_str("anomalies:\n");
            for (a, answered) in &r.anomalies {
                let _ = writeln!(
                    out,
                    "  card {} {}: {}{}",
                    a.asn,
                    a.kind.name(),
                    a.detail,
                    if *answered {
                        " [alarm raised, card blocked]"
                    } else {
                        " [not yet answered: run `cardmesh report audit`]"
                    }
                );
            }
            out.push_str("open grey locks:\n");
            for (l, stale) in &r.open_locks {
                let _ = writeln!(
                    out,
                    "  card {} locked by {}#{} at {} ms{}",
                    l.asn,
                    l.at.origin.short(),
                    l.at.seq,
                    l.hlc.millis,
                    if *stale { " STALE" } else { "" }
                );
            }
            out.push_str(&freshness_text(&r.freshness));
            out
        }
    }
}
