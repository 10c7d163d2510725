//! Clearing runs: per merchant the period of its cycle, gross sales, fee and transfer as
//! computed here from the raw transactions; a clearing file whose checksum holds; and a
//! period that is never settled twice, also after HQ restarts.

mod hq_support;

use cardmesh_drivers::types::BcdDateTime;
use cardmesh_model::body::CardTxn;
use cardmesh_model::report::Scope;
use cardmesh_model::settlement::{self, Cycle, MerchantTerms, Period};
use cardmesh_model::{MerchantId, Money};
use cardmesh_node::hq::HqError;
use cardmesh_node::hq::settle::{self, Selection};
use hq_support::*;

/// Gross sales of one shop over a period, and how many sales.
fn gross(made: &[CardTxn], shop: &str, p: Period) -> (u64, i64) {
    made.iter()
        .filter(|t| t.site.as_str() == shop && p.contains(t.business_day))
        .filter(|t| t.kind == cardmesh_model::body::TxnKind::Purchase)
        .fold((0, 0), |(n, s), t| (n + 1, s + t.amount.fen()))
}

#[test]
fn a_period_is_settled_once_with_a_checked_clearing_file_even_across_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("clearing");
    std::fs::create_dir(&out).unwrap();
    let chain = Chain::new(tmp.path(), 2);
    chain.register(
        &["cinema", "fuel"],
        &[
            (
                "cinema",
                MerchantTerms {
                    name: "Star Cinema".into(),
                    cycle: Cycle::Daily,
                    fee_bp: 60,
                },
            ),
            (
                "fuel",
                MerchantTerms {
                    name: "Fuel Co".into(),
                    cycle: Cycle::Weekly,
                    fee_bp: 125,
                },
            ),
        ],
    );
    let (_, chip) = chain.card(1);
    let mut made = vec![chain.load(
        &chip,
        200_000,
        BcdDateTime::new(2026, 11, 16, 8, 0, 0).unwrap(),
        day(2026, 11, 16),
    )];
    // Monday 16th to Sunday 22nd: each day a ticket at shop 1 and fuel at shop 2.
    for d in 16..=22u8 {
        let bday = day(2026, 11, d);
        made.push(chain.sell(
            (1, 1, 1),
            &chip,
            vec![item("ticket", 1_000, 4_567)],
            BcdDateTime::new(2026, 11, d, 12, 0, 0).unwrap(),
            bday,
        ));
        made.push(chain.sell(
            (2, 1, 1),
            &chip,
            vec![item("petrol-92", 12_345 + u32::from(d) as i64, 768)],
            BcdDateTime::new(2026, 11, d, 13, 0, 0).unwrap(),
            bday,
        ));
    }
    chain.sync_all();
    let hq = &chain.hq.store;

    let sunday = day(2026, 11, 22);
    let run = settle::run(hq, Selection::Due { as_of: sunday }, &out, &Scope::Network).unwrap();
    assert!(run.skipped.is_empty());
    assert_eq!(run.lines.len(), 2);
    let expect = |m: &str, shop: &str, p: Period, bp: u32| {
        let (n, g) = gross(&made, shop, p);
        let fee = settlement::fee(Money::from_fen(g), bp).unwrap();
        (m.to_string(), p, n, g, fee.fen(), g - fee.fen())
    };
    let got: Vec<_> = run
        .lines
        .iter()
        .map(|l| {
            (
                l.merchant.to_string(),
                l.period,
                l.txn_count,
                l.gross.fen(),
                l.fee.fen(),
                l.net.fen(),
            )
        })
        .collect();
    let one_day = Period {
        from: sunday,
        to: sunday,
    };
    let week = Period {
        from: day(2026, 11, 16),
        to: sunday,
    };
    assert_eq!(
        got,
        vec![
            expect("cinema", "shop-1", one_day, 60),
            expect("fuel", "shop-2", week, 125)
        ]
    );
    // The fee of the fuel week by hand: 0.0125 x gross, half away from zero.
    let (_, g) = gross(&made, "shop-2", week);
    assert_eq!(run.lines[1].fee.fen(), (g * 125 + 5_000) / 10_000);

    let file = run.file.clone().unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(settlement::check_clearing_file(&text).map(|_| ()), Ok(()));
    assert_eq!(text.lines().count(), 4, "header, two merchants, checksum");
    assert!(text.lines().last().unwrap().starts_with("#checksum,2,"));
    assert_eq!(hq.settlements().unwrap().len(), 2);

    // The same run again settles nothing and writes nothing.
    let again = settle::run(hq, Selection::Due { as_of: sunday }, &out, &Scope::Network).unwrap();
    assert!(again.lines.is_empty() && again.file.is_none());
    assert_eq!(again.skipped.len(), 2);
    // An explicit period overlapping a settled one is refused, and leaves no file.
    let cinema: MerchantId = "cinema".parse().unwrap();
    let err = settle::run(
        hq,
        Selection::One {
            merchant: "fuel".parse().unwrap(),
            period: Period {
                from: day(2026, 11, 20),
                to: day(2026, 11, 23),
            },
        },
        &out,
        &Scope::Network,
    )
    .unwrap_err();
    assert!(
        matches!(err, HqError::Settled(ref s) if s.settled == week),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1);

    // The settlement entries are in HQ's feed: the shops get them too.
    chain.sync_all();
    assert_eq!(chain.shops[0].store.settlements().unwrap().len(), 2);
    // A shop may not settle.
    assert!(matches!(
        settle::run(
            &chain.shops[0].store,
            Selection::Due { as_of: sunday },
            &out,
            &Scope::Network
        ),
        Err(HqError::NotHq(_))
    ));

    // After a restart HQ still knows what it settled.
    let Chain { hq, shops, .. } = chain;
    drop(hq.store);
    let hq_store = cardmesh_node::identity::open(&hq.dir, clock()).unwrap();
    let after = settle::run(
        &hq_store,
        Selection::Due { as_of: sunday },
        &out,
        &Scope::Network,
    )
    .unwrap();
    assert!(after.lines.is_empty());
    let err = settle::run(
        &hq_store,
        Selection::One {
            merchant: cinema.clone(),
            period: one_day,
        },
        &out,
        &Scope::Network,
    )
    .unwrap_err();
    assert!(matches!(err, HqError::Settled(_)));
    // The next day is a new period for the daily merchant only.
    let monday = day(2026, 11, 23);
    let next = settle::run(
        &hq_store,
        Selection::Due { as_of: monday },
        &out,
        &Scope::Network,
    )
    .unwrap();
    assert_eq!(next.lines.len(), 1);
    assert_eq!(next.lines[0].merchant, cinema);
    assert_eq!(next.lines[0].gross, Money::ZERO);
    drop(shops);
}
