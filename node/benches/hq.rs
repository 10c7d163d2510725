//! HQ over a 10M-transaction ledger: the daily report and the daily clearing run, read
//! from the incremental report rows of a real redb store.
//!
//! Ingesting 10M signed entries would take hours on the CI machine, so the ledger is
//! generated as card transactions and folded through the same function the store folds
//! every arriving entry with (`report::rows_of`, then `Totals::merge`); the resulting
//! rows are merged into HQ's store (`Store::merge_report_rows`). What is measured is
//! what a user waits for: reading and summing the rows of one day (report), and per
//! merchant the period's sales, fee and transfer plus the clearing file (settlement;
//! the durable commit of the settlement entries is one redb commit, measured by the
//! store bench). `CARDMESH_BENCH_TXNS` scales the ledger down for a quick run.

use cardmesh_model::body::{Body, CardTxn, LineItem, TxnKind};
use cardmesh_model::docs::network::{self, OperatorInfo, SiteInfo};
use cardmesh_model::docs::{DocName, merchants};
use cardmesh_model::report::{Aggregates, Scope, rows_of};
use cardmesh_model::settlement::{self, Cycle, MerchantTerms};
use cardmesh_model::{
    BusinessDay, CardAsn, CardTime, Hlc, Money, OperatorId, Quantity, SiteId, TerminalId,
};
use cardmesh_node::hq::report::{self, By, Span};
use cardmesh_node::hq::settle::{self, Selection};
use cardmesh_node::identity::{self, DataDir};
use cardmesh_node::store::{Store, SystemClock};
use criterion::{Criterion, criterion_group, criterion_main};
use std::sync::Arc;
use std::time::Instant;

const SITES: usize = 100;
const MERCHANTS: usize = 10;
const TERMINALS_PER_SITE: usize = 10;
const OPERATORS_PER_SITE: usize = 10;
const DAYS: usize = 100;

fn site(i: usize) -> SiteId {
    format!("site-{i:03}").parse().unwrap()
}

fn terminal(site: usize, n: usize) -> TerminalId {
    format!("{:08}{:04}", site, n).parse().unwrap()
}

fn operator(site: usize, n: usize) -> OperatorId {
    format!("op-{site:03}-{n:02}").parse().unwrap()
}

fn day(n: usize) -> BusinessDay {
    settlement::day_of(
        settlement::days_from_civil(BusinessDay {
            year: 2026,
            month: 1,
            day: 1,
        }) + n as i64,
    )
}

fn register(store: &Store) {
    store
        .edit_doc(DocName::Network, |d| {
            for s in 0..SITES {
                let info = SiteInfo {
                    name: format!("site {s}"),
                    merchant: format!("m-{:02}", s % MERCHANTS).parse().unwrap(),
                    utc_offset_min: 480,
                };
                network::set_site(d, &site(s), &info)?;
                for t in 0..TERMINALS_PER_SITE {
                    network::set_terminal(d, &terminal(s, t), &site(s))?;
                }
                for o in 0..OPERATORS_PER_SITE {
                    let info = OperatorInfo {
                        name: "cashier".into(),
                        role: "cashier".into(),
                        site: site(s),
                    };
                    network::set_operator(d, &operator(s, o), &info)?;
                }
            }
            for m in 0..MERCHANTS {
                let terms = MerchantTerms {
                    name: format!("merchant {m}"),
                    cycle: Cycle::Daily,
                    fee_bp: 60,
                };
                merchants::set_merchant(d, &format!("m-{m:02}").parse().unwrap(), &terms)?;
            }
            Ok(())
        })
        .unwrap();
}

fn ledger(store: &Store, txns: usize) {
    let started = Instant::now();
    let products = ["petrol-92", "petrol-95", "diesel-0", "cola", "ticket"];
    let mut agg = Aggregates::default();
    let mut s: u64 = 1;
    let origin_site = site(0);
    for i in 0..txns {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let r = (s >> 33) as usize;
        let site_n = r % SITES;
        let amount = Money::from_fen(100 + (r % 50_000) as i64);
        let kind = if r.is_multiple_of(20) {
            TxnKind::Load
        } else {
            TxnKind::Purchase
        };
        let t = CardTxn {
            kind,
            asn: CardAsn((r as u64 % 1_000_000).to_be_bytes()),
            site: site(site_n),
            terminal: terminal(site_n, (r / SITES) % TERMINALS_PER_SITE),
            operator: Some(operator(site_n, (r / 7) % OPERATORS_PER_SITE)),
            business_day: day(i * DAYS / txns),
            card_time: CardTime::default(),
            card_counter: 0,
            term_seq: i as u32,
            amount,
            balance_before: Money::from_fen(100_000),
            balance_after: Money::from_fen(100_000 - amount.fen()),
            mac1: [0; 4],
            mac2: [0; 4],
            tac: [0; 4],
            items: vec![LineItem {
                product: products[r % products.len()].parse().unwrap(),
                quantity: Quantity::from_milli(1_000 + (r % 40_000) as i64),
                unit_price: amount,
                paid_percent: 100,
                amount,
            }],
            refers_to: None,
        };
        let rows = rows_of(&Body::Card(t), Hlc::default(), &origin_site, |_| day(0)).unwrap();
        agg.add(rows).unwrap();
    }
    let rows: Vec<_> = agg.rows().map(|(k, t)| (k.clone(), t.clone())).collect();
    let folded = started.elapsed();
    let n = rows.len();
    for chunk in rows.chunks(20_000) {
        store.merge_report_rows(chunk.to_vec()).unwrap();
    }
    eprintln!(
        "hq bench: {txns} transactions folded into {n} report rows in {folded:?}, stored in {:?} more",
        started.elapsed() - folded
    );
}

fn bench(c: &mut Criterion) {
    let txns: usize = std::env::var("CARDMESH_BENCH_TXNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let tmp = tempfile::tempdir().unwrap();
    let store = identity::init_hq(
        &DataDir::new(tmp.path().join("hq")),
        "bench-chain",
        Arc::new(SystemClock),
    )
    .unwrap();
    register(&store);
    ledger(&store, txns);
    let d = day(DAYS / 2);

    let mut g = c.benchmark_group("hq_10m_ledger");
    g.sample_size(20);
    g.bench_function("daily_report_by_site", |b| {
        b.iter(|| report::sales(&store, By::Site, Span::Day(d), &Scope::Network).unwrap())
    });
    g.bench_function("daily_report_by_terminal", |b| {
        b.iter(|| report::sales(&store, By::Terminal, Span::Day(d), &Scope::Network).unwrap())
    });
    g.bench_function("monthly_report_by_merchant", |b| {
        b.iter(|| {
            report::sales(
                &store,
                By::Merchant,
                Span::Month {
                    year: d.year,
                    month: d.month,
                },
                &Scope::Network,
            )
            .unwrap()
        })
    });
    g.bench_function("daily_settlement_10_merchants", |b| {
        b.iter(|| {
            let (lines, _) =
                settle::compute(&store, Selection::Due { as_of: d }, &Scope::Network).unwrap();
            assert_eq!(lines.len(), MERCHANTS);
            settlement::clearing_file(&lines).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
