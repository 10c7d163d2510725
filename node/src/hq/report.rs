//! Reports read from the store's report rows: sales and operations per site, terminal,
//! merchant or operator for a day or a month; refusals by reason (the failure rate);
//! card issuance per day; products and fuel volumes per grade; risk (alarms, anomalies,
//! open grey locks, the float, freshness per site) and the grey locks on their own.
//! Months and merchants are sums of stored day and site rows; nothing here reads the
//! ledger. Every query takes the reader's `Scope`: a merchant's staff get their
//! merchant's rows and nothing else, whatever the report or format. Output as a table,
//! CSV or JSON.

use super::HqError;
use crate::store::{Freshness, OpenLock, Store};
use cardmesh_model::docs::network::NetworkRegistry;
use cardmesh_model::docs::{DocName, network, pricebook};
use cardmesh_model::report::locks;
use cardmesh_model::report::scope::{merchant_of, site_of};
use cardmesh_model::report::{Anomaly, Dim, ProductTally, Scope, Totals, TxnClass};
use cardmesh_model::{BusinessDay, Money, NodeId, ProductId, SiteId};
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

/// The network price book, or an empty one before HQ has written it.
pub fn price_book(store: &Store) -> Result<pricebook::PriceBook, HqError> {
    Ok(store
        .doc(&DocName::PriceBook)?
        .map(|d| pricebook::read(&d))
        .unwrap_or_default())
}

/// How long a grey lock may stay open before it is stale: the network registry's
/// setting (`report::locks`), a day unless HQ set it.
pub fn grey_lock_max_age_ms(store: &Store) -> Result<u64, HqError> {
    Ok(store
        .doc(&DocName::Network)?
        .map_or(locks::DEFAULT_MAX_AGE_MIN * 60_000, |d| {
            locks::max_age_ms(&d)
        }))
}

/// The site each node belongs to, from the certificates: where an entry was written.
fn node_sites(store: &Store) -> Result<BTreeMap<NodeId, SiteId>, HqError> {
    Ok(store
        .certificates()?
        .into_iter()
        .map(|c| (c.node, c.site))
        .collect())
}

/// Sales and operations per name over a span, of the rows `scope` may see.
pub fn sales(
    store: &Store,
    by: By,
    span: Span,
    scope: &Scope,
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
    scope: &Scope,
) -> Result<BTreeMap<String, Totals>, HqError> {
    let dim = match by {
        By::Site | By::Merchant => Dim::Site,
        By::Terminal => Dim::Terminal,
        By::Operator => Dim::Operator,
    };
    let mut out: BTreeMap<String, Totals> = BTreeMap::new();
    for (key, totals) in store.report_rows(dim, from, to)? {
        if !scope.sees_row(reg, dim, &key.name) {
            continue;
        }
        let name = match by {
            By::Merchant => site_of(reg, dim, &key.name)
                .and_then(|s| merchant_of(reg, &s))
                .map_or_else(|| "(no merchant)".to_string(), |m| m.to_string()),
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
pub fn span_totals(store: &Store, span: Span, scope: &Scope) -> Result<Totals, HqError> {
    let (from, to) = span.days();
    totals_between(store, &registry(store)?, from, to, scope)
}

/// Everything of the days `from..=to` in one row.
pub fn totals_between(
    store: &Store,
    reg: &NetworkRegistry,
    from: BusinessDay,
    to: BusinessDay,
    scope: &Scope,
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

const SALES_COLUMNS: [&str; 20] = [
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
    "sales_refunded",
    "returns",
    "cards_issued",
    "deposits",
    "unlock_debits",
    "unlock_amount",
    "net_sales",
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
        t.refunded.amount.to_string(),
        k(TxnClass::Return).count.to_string(),
        k(TxnClass::Issue).count.to_string(),
        t.deposits_taken
            .checked_sub(t.deposits_returned)
            .unwrap_or(Money::ZERO)
            .to_string(),
        k(TxnClass::DebitForUnlock).count.to_string(),
        k(TxnClass::DebitForUnlock).amount.to_string(),
        t.sales().map_or("overflow".into(), |m| m.to_string()),
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
        "sales_refunded": {"count": t.refunded.count, "amount_fen": t.refunded.amount.fen()},
        "net_sales_fen": t.sales().ok().map(|m| m.fen()),
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
    scope: &Scope,
) -> Result<Vec<(ProductId, ProductTally, String)>, HqError> {
    let totals = span_totals(store, span, scope)?;
    let book = price_book(store)?;
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

/// Renders rows as a table or CSV, or `json` as JSON.
fn emit(columns: &[&str], cells: &[Vec<String>], json: Value, format: Format) -> String {
    match format {
        Format::Table => table(columns, cells),
        Format::Csv => {
            let mut out = columns.join(",") + "\n";
            for r in cells {
                let escaped: Vec<String> = r.iter().map(|c| c.replace(',', ";")).collect();
                out.push_str(&escaped.join(","));
                out.push('\n');
            }
            out
        }
        Format::Json => format!("{json:#}\n"),
    }
}

/// Fuel sold in a span per grade (products sold by the litre), most litres first.
pub fn fuel(
    store: &Store,
    span: Span,
    scope: &Scope,
) -> Result<Vec<(ProductId, ProductTally)>, HqError> {
    let mut out: Vec<(ProductId, ProductTally)> = products(store, span, scope)?
        .into_iter()
        .filter(|(_, _, unit)| unit == "L")
        .map(|(p, t, _)| (p, t))
        .collect();
    out.sort_by(|a, b| b.1.quantity.cmp(&a.1.quantity).then(a.0.cmp(&b.0)));
    Ok(out)
}

pub fn render_fuel(rows: &[(ProductId, ProductTally)], format: Format) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|(p, t)| {
            vec![
                p.to_string(),
                t.quantity.to_string(),
                t.lines.to_string(),
                t.amount.to_string(),
            ]
        })
        .collect();
    let json: Vec<Value> = rows
        .iter()
        .map(|(p, t)| json!({"grade": p.as_str(), "litres_milli": t.quantity.milli(), "fills": t.lines, "amount_fen": t.amount.fen()}))
        .collect();
    emit(
        &["grade", "litres", "fills", "amount"],
        &cells,
        json!(json),
        format,
    )
}

/// Refusals at one name: operations attempted (completed + refused) and refused by the
/// reason the operator was shown.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Failures {
    pub attempted: u64,
    pub refused: BTreeMap<String, u64>,
}

impl Failures {
    /// Refusals for `reason` per thousand attempts, rounded down.
    pub fn permille(&self, refused: u64) -> u64 {
        refused * 1000 / self.attempted.max(1)
    }
}

/// The failure rate per name over a span, by refusal reason.
pub fn failures(
    store: &Store,
    by: By,
    span: Span,
    scope: &Scope,
) -> Result<BTreeMap<String, Failures>, HqError> {
    Ok(sales(store, by, span, scope)?
        .into_iter()
        .map(|(name, t)| {
            let f = Failures {
                attempted: t.operations() + t.refusals(),
                refused: t.refused,
            };
            (name, f)
        })
        .collect())
}

pub fn render_failures(rows: &BTreeMap<String, Failures>, format: Format) -> String {
    let mut cells = Vec::new();
    let mut json = Vec::new();
    for (name, f) in rows {
        let total: u64 = f.refused.values().sum();
        cells.push(vec![
            name.clone(),
            "(all)".into(),
            f.attempted.to_string(),
            total.to_string(),
            f.permille(total).to_string(),
        ]);
        for (reason, n) in &f.refused {
            cells.push(vec![
                name.clone(),
                reason.clone(),
                f.attempted.to_string(),
                n.to_string(),
                f.permille(*n).to_string(),
            ]);
        }
        let reasons: Vec<Value> = f
            .refused
            .iter()
            .map(|(r, n)| json!({"reason": r, "refused": n, "permille": f.permille(*n)}))
            .collect();
        json.push(json!({"name": name, "attempted": f.attempted, "refused": total, "permille": f.permille(total), "by_reason": reasons}));
    }
    emit(
        &["name", "reason", "attempted", "refused", "permille"],
        &cells,
        json!(json),
        format,
    )
}

/// Card issuance on one business day.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Issuance {
    /// Chips personalized at HQ.
    pub personalized: u64,
    /// Cards sold to customers, and the deposits taken for them.
    pub sold: u64,
    pub deposits_taken: Money,
    /// Cards returned, and the deposits paid back.
    pub returned: u64,
    pub deposits_returned: Money,
    pub loads: u64,
    pub loaded: Money,
}

/// Card issuance per business day of a span (a day, or each day of a month), and the
/// span's total.
pub fn issuance(
    store: &Store,
    span: Span,
    scope: &Scope,
) -> Result<(BTreeMap<BusinessDay, Issuance>, Issuance), HqError> {
    let reg = registry(store)?;
    let (from, to) = span.days();
    let mut days: BTreeMap<BusinessDay, Totals> = BTreeMap::new();
    let mut all = Totals::default();
    for (key, t) in store.report_rows(Dim::Site, from, to)? {
        if !scope.sees_row(&reg, Dim::Site, &key.name) {
            continue;
        }
        let overflow = |e: cardmesh_model::money::MoneyError| HqError::Overflow(e.to_string());
        days.entry(key.day)
            .or_default()
            .merge(&t)
            .map_err(overflow)?;
        all.merge(&t).map_err(overflow)?;
    }
    let of = |t: &Totals| Issuance {
        personalized: t.cards_personalized,
        sold: t.kind(TxnClass::Issue).count,
        deposits_taken: t.deposits_taken,
        returned: t.kind(TxnClass::Return).count,
        deposits_returned: t.deposits_returned,
        loads: t.kind(TxnClass::Load).count,
        loaded: t.kind(TxnClass::Load).amount,
    };
    let rows = days
        .iter()
        .map(|(d, t)| (*d, of(t)))
        .filter(|(_, i)| *i != Issuance::default())
        .collect();
    Ok((rows, of(&all)))
}

pub fn render_issuance(
    rows: &BTreeMap<BusinessDay, Issuance>,
    total: &Issuance,
    format: Format,
) -> String {
    let line = |name: String, i: &Issuance| {
        vec![
            name,
            i.personalized.to_string(),
            i.sold.to_string(),
            i.deposits_taken.to_string(),
            i.returned.to_string(),
            i.deposits_returned.to_string(),
            i.loads.to_string(),
            i.loaded.to_string(),
        ]
    };
    let as_json = |i: &Issuance| json!({"personalized": i.personalized, "sold": i.sold, "deposits_taken_fen": i.deposits_taken.fen(), "returned": i.returned, "deposits_returned_fen": i.deposits_returned.fen(), "loads": i.loads, "loaded_fen": i.loaded.fen()});
    let mut cells: Vec<Vec<String>> = rows.iter().map(|(d, i)| line(d.to_string(), i)).collect();
    cells.push(line("total".into(), total));
    let days: Vec<Value> = rows
        .iter()
        .map(|(d, i)| {
            let mut v = as_json(i);
            v["day"] = json!(d.to_string());
            v
        })
        .collect();
    emit(
        &[
            "day",
            "personalized",
            "sold",
            "deposits_taken",
            "returned",
            "deposits_returned",
            "loads",
            "loaded",
        ],
        &cells,
        json!({"days": days, "total": as_json(total)}),
        format,
    )
}

/// An open grey lock as reported: where it was taken, how long it has been open, and
/// whether that is longer than the network allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GreyLock {
    pub lock: OpenLock,
    /// The site of the node that logged it, if known.
    pub site: Option<SiteId>,
    pub open_ms: u64,
    pub stale: bool,
}

/// The open grey locks `scope` may see, oldest first, judged at `now_ms` against
/// `max_age_ms`.
pub fn grey_locks(
    store: &Store,
    now_ms: u64,
    max_age_ms: u64,
    scope: &Scope,
) -> Result<Vec<GreyLock>, HqError> {
    let reg = registry(store)?;
    let sites = node_sites(store)?;
    Ok(store
        .open_grey_locks()?
        .into_iter()
        .map(|lock| GreyLock {
            site: sites.get(&lock.at.origin).cloned(),
            open_ms: now_ms.saturating_sub(lock.hlc.millis),
            stale: locks::is_stale(lock.hlc, now_ms, max_age_ms),
            lock,
        })
        .filter(|g| g.site.as_ref().is_some_and(|s| scope.sees_site(&reg, s)))
        .collect())
}

pub fn render_grey_locks(rows: &[GreyLock], max_age_ms: u64, format: Format) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|g| {
            vec![
                g.lock.asn.to_string(),
                g.site.as_ref().map_or("?".into(), ToString::to_string),
                format!("{}#{}", g.lock.at.origin.short(), g.lock.at.seq),
                g.lock.hlc.millis.to_string(),
                (g.open_ms / 60_000).to_string(),
                if g.stale { "stale" } else { "open" }.into(),
            ]
        })
        .collect();
    let json: Vec<Value> = rows
        .iter()
        .map(|g| json!({"card": g.lock.asn.to_string(), "site": g.site.as_ref().map(|s| s.as_str()), "entry": format!("{}#{}", g.lock.at.origin, g.lock.at.seq), "locked_at_ms": g.lock.hlc.millis, "open_ms": g.open_ms, "stale": g.stale}))
        .collect();
    let columns = ["card", "site", "entry", "locked_at_ms", "open_min", "state"];
    match format {
        Format::Table => format!(
            "open grey locks (stale after {} min)\n{}",
            max_age_ms / 60_000,
            table(&columns, &cells)
        ),
        _ => emit(
            &columns,
            &cells,
            json!({"max_age_ms": max_age_ms, "locks": json}),
            format,
        ),
    }
}

/// The risk picture: alarms in the span, every anomaly found, open grey locks (those
/// older than the allowed age marked stale), the float and per-site freshness; for a
/// merchant, only what happened at its sites, and no network float.
pub struct Risk {
    pub span: Span,
    pub alarms: BTreeMap<String, u64>,
    pub anomalies: Vec<(Anomaly, bool)>,
    pub open_locks: Vec<GreyLock>,
    pub float: Option<Money>,
    pub freshness: Vec<(SiteId, Freshness)>,
}

pub fn risk(
    store: &Store,
    span: Span,
    now_ms: u64,
    max_lock_age_ms: u64,
    scope: &Scope,
) -> Result<Risk, HqError> {
    let reg = registry(store)?;
    let sites = node_sites(store)?;
    let seen = |node: &NodeId| sites.get(node).is_some_and(|s| scope.sees_site(&reg, s));
    Ok(Risk {
        span,
        alarms: span_totals(store, span, scope)?.alarms,
        anomalies: store
            .anomalies()?
            .into_iter()
            .filter(|(a, _)| seen(&a.at.origin))
            .collect(),
        open_locks: grey_locks(store, now_ms, max_lock_age_ms, scope)?,
        float: match scope {
            Scope::Network => Some(store.network_totals()?.float_delta),
            Scope::Merchant(_) => None,
        },
        freshness: freshness(store, scope)?,
    })
}

/// Per site the scope may see: when this node last received an entry about it.
pub fn freshness(store: &Store, scope: &Scope) -> Result<Vec<(SiteId, Freshness)>, HqError> {
    let reg = registry(store)?;
    Ok(store
        .freshness()?
        .into_iter()
        .filter(|(s, _)| scope.sees_site(&reg, s))
        .collect())
}

pub fn render_risk(r: &Risk, format: Format) -> String {
    let float = r.float.map_or("-".to_string(), |f| f.to_string());
    match format {
        Format::Json => {
            let anomalies: Vec<Value> = r.anomalies.iter().map(|(a, answered)| json!({"card": a.asn.to_string(), "kind": a.kind.name(), "entry": format!("{}#{}", a.at.origin, a.at.seq), "detail": a.detail, "answered": answered})).collect();
            let locks: Vec<Value> = r.open_locks.iter().map(|g| json!({"card": g.lock.asn.to_string(), "entry": format!("{}#{}", g.lock.at.origin, g.lock.at.seq), "locked_at_ms": g.lock.hlc.millis, "stale": g.stale})).collect();
            let fresh: Vec<Value> = r
                .freshness
                .iter()
                .map(|(s, f)| json!({"site": s.as_str(), "last_received_ms": f.received_ms, "entries": f.entries}))
                .collect();
            format!(
                "{:#}\n",
                json!({"span": r.span.to_string(), "alarms": r.alarms, "anomalies": anomalies, "open_grey_locks": locks, "float_fen": r.float.map(Money::fen), "freshness": fresh})
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
                    if *answered { " (answered)" } else { "" }
                );
            }
            for g in &r.open_locks {
                let _ = writeln!(
                    out,
                    "grey_lock,{},{},{}#{},locked at {} ms",
                    g.lock.asn,
                    if g.stale { "stale" } else { "open" },
                    g.lock.at.origin.short(),
                    g.lock.at.seq,
                    g.lock.hlc.millis
                );
            }
            for (s, f) in &r.freshness {
                let _ = writeln!(
                    out,
                    "freshness,,{s},,{} entries; last received at {} ms",
                    f.entries, f.received_ms
                );
            }
            let _ = writeln!(out, "float,,,,{float}");
            out
        }
        Format::Table => {
            let mut out = format!(
                "risk report for {}\nfloat (sum of all card balances): {float}\n",
                r.span
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
                    match (answered, a.kind.blocks()) {
                        (true, true) => " [alarm raised, card blocked]",
                        (true, false) => " [alarm raised]",
                        (false, _) => " [not yet answered: HQ answers it at its next audit]",
                    }
                );
            }
            out.push_str("open grey locks:\n");
            for g in &r.open_locks {
                let _ = writeln!(
                    out,
                    "  card {} locked by {}#{} at {} ms{}",
                    g.lock.asn,
                    g.lock.at.origin.short(),
                    g.lock.at.seq,
                    g.lock.hlc.millis,
                    if g.stale { " STALE" } else { "" }
                );
            }
            out.push_str(&freshness_text(&r.freshness));
            out
        }
    }
}
