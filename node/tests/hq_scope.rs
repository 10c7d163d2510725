//! Merchant-scoped readers: an operator of a merchant's site, identified by id and PIN,
//! reads that merchant's figures only — in every report, in every format, in settlement
//! lines and clearing entries — and cannot widen the scope or run a clearing.

mod hq_support;

use cardmesh_drivers::types::BcdDateTime;
use cardmesh_model::body::{Body, CardTxn, OperatorAction, OperatorActionKind, TxnKind};
use cardmesh_model::docs::DocName;
use cardmesh_model::docs::network::{self, OperatorInfo};
use cardmesh_model::report::Scope;
use cardmesh_model::settlement::{Cycle, MerchantTerms};
use cardmesh_model::{BusinessDay, CardAsn, MerchantId, Money};
use cardmesh_node::hq::report::{self, By, Format, Span};
use cardmesh_node::hq::settle::{self, Selection};
use cardmesh_node::hq::{HqError, access};
use cardmesh_node::pos::operators::pin_verifier;
use hq_support::*;

const PIN: &str = "2468";

fn terms(name: &str) -> MerchantTerms {
    MerchantTerms {
        name: name.into(),
        cycle: Cycle::Daily,
        fee_bp: 100,
    }
}

/// Everything a reader can get out of the report and settlement API, rendered in every
/// format, as one text: of the sales' day and month, and of `today`, the day of what the
/// stores dated by their own clocks.
fn everything(
    hq: &cardmesh_node::store::Store,
    scope: &Scope,
    now: u64,
    today: BusinessDay,
) -> String {
    let bday = day(2026, 11, 20);
    let spans = [
        Span::Day(bday),
        Span::Month {
            year: 2026,
            month: 11,
        },
        Span::Day(today),
    ];
    let mut out = String::new();
    for span in spans {
        for format in [Format::Table, Format::Csv, Format::Json] {
            for by in [By::Site, By::Terminal, By::Merchant, By::Operator] {
                let rows = report::sales(hq, by, span, scope).unwrap();
                let fresh = report::freshness(hq, scope).unwrap();
                out += &report::render_sales(by, span, &rows, &fresh, format);
                let f = report::failures(hq, by, span, scope).unwrap();
                out += &report::render_failures(&f, format);
            }
            let (days, total) = report::issuance(hq, span, scope).unwrap();
            out += &report::render_issuance(&days, &total, format);
            out += &report::render_products(&report::products(hq, span, scope).unwrap(), format);
            out += &report::render_fuel(&report::fuel(hq, span, scope).unwrap(), format);
            let risk = report::risk(hq, span, now, 60_000, scope).unwrap();
            out += &report::render_risk(&risk, format);
            let locks = report::grey_locks(hq, now, 60_000, scope).unwrap();
            out += &report::render_grey_locks(&locks, 60_000, format);
        }
    }
    let (lines, skipped) = settle::compute(hq, Selection::Due { as_of: bday }, scope).unwrap();
    out += &format!("{lines:?}{skipped:?}");
    out += &format!("{:?}", settle::settled(hq, scope).unwrap());
    out += &format!("{:?}", settle::merchants(hq, scope).unwrap());
    out += &format!("{:?}", settle::merchant_sites(hq, scope).unwrap());
    out
}

#[test]
fn a_merchants_operator_reads_only_that_merchants_figures_in_every_report_and_format() {
    let tmp = tempfile::tempdir().unwrap();
    let chain = Chain::new(tmp.path(), 2);
    chain.register(
        &["north", "south"],
        &[
            ("north", terms("North Co")),
            ("south", terms("South Co")),
            ("hq-desk", terms("HQ desk")),
        ],
    );
    chain
        .hq
        .store
        .edit_doc(DocName::Network, |d| {
            let boss = "boss".parse().unwrap();
            network::set_operator(
                d,
                &boss,
                &OperatorInfo {
                    name: "HQ finance".into(),
                    role: "finance".into(),
                    site: "hq".parse().unwrap(),
                },
            )?;
            network::set_operator_pin(d, &boss, &pin_verifier(&boss, PIN))?;
            for i in 1..=2 {
                let op = operator(i, 1);
                network::set_operator_pin(d, &op, &pin_verifier(&op, PIN))?;
            }
            Ok(())
        })
        .unwrap();
    let bday = day(2026, 11, 20);
    let (_, north_card) = chain.card(1);
    let (south_asn, south_card) = chain.card(2);
    for chip in [&north_card, &south_card] {
        chain.load(
            chip,
            100_000,
            BcdDateTime::new(2026, 11, 20, 8, 0, 0).unwrap(),
            bday,
        );
    }
    let made = [
        chain.sell(
            (1, 1, 1),
            &north_card,
            vec![item("cola", 3_000, 300)],
            BcdDateTime::new(2026, 11, 20, 10, 0, 0).unwrap(),
            bday,
        ),
        // South sells what north never does, for an amount that appears nowhere else.
        chain.sell(
            (2, 2, 1),
            &south_card,
            vec![item("diesel-0", 37_771, 791)],
            BcdDateTime::new(2026, 11, 20, 10, 5, 0).unwrap(),
            bday,
        ),
    ];
    let refused = chain.shops[1]
        .store
        .append_local(Body::Operator(OperatorAction {
            operator: operator(2, 1),
            terminal: Some(shop_terminal(2, 1)),
            action: OperatorActionKind::Refused {
                what: "purchase".into(),
                reason: "southern refusal".into(),
            },
        }))
        .unwrap();
    // A refusal counts on the day its store's clock gave it, at the shop's UTC+8.
    let today = BusinessDay::of_instant(refused.hlc.millis as i64, 480);
    // A grey lock left open at south.
    let mut sam = chain.sam(2, 1);
    let lock = purse(&south_card)
        .grey_lock(&mut sam, BcdDateTime::new(2026, 11, 20, 11, 0, 0).unwrap())
        .unwrap();
    chain.shops[1]
        .store
        .append_local(Body::Card(CardTxn {
            kind: TxnKind::GreyLock,
            asn: CardAsn(south_asn.0),
            site: "shop-2".parse().unwrap(),
            terminal: shop_terminal(2, 1),
            operator: Some(operator(2, 1)),
            business_day: bday,
            card_time: cardmesh_model::CardTime(lock.datetime.0),
            card_counter: lock.offline_counter,
            term_seq: lock.term_seq,
            amount: Money::ZERO,
            balance_before: Money::from_fen(i64::from(lock.balance)),
            balance_after: Money::from_fen(i64::from(lock.balance)),
            mac1: lock.mac1.0,
            mac2: lock.mac2.0,
            tac: lock.gtac.0,
            items: Vec::new(),
            refers_to: None,
        }))
        .unwrap();
    chain.sync_all();
    let hq = &chain.hq.store;
    let out = tmp.path().join("clearing");
    std::fs::create_dir(&out).unwrap();
    let run = settle::run(hq, Selection::Due { as_of: bday }, &out, &Scope::Network).unwrap();
    assert_eq!(run.lines.len(), 3);
    let now = u64::MAX / 2;

    // Who reads what.
    let north: MerchantId = "north".parse().unwrap();
    let as_north = access::scope(hq, Some((&operator(1, 1), PIN)), None).unwrap();
    assert_eq!(as_north, Scope::Merchant(north.clone()));
    assert_eq!(
        access::scope(hq, Some((&"boss".parse().unwrap(), PIN)), None).unwrap(),
        Scope::Network
    );
    assert!(matches!(
        access::scope(hq, Some((&operator(1, 1), "0000")), None),
        Err(HqError::BadPin(_))
    ));
    assert!(matches!(
        access::scope(
            hq,
            Some((&operator(1, 1), PIN)),
            Some(&"south".parse().unwrap())
        ),
        Err(HqError::NotPermitted(..))
    ));
    assert_eq!(
        access::scope(hq, Some((&operator(1, 1), PIN)), Some(&north)).unwrap(),
        as_north
    );

    // The network sees south; north sees none of it, by any report, in any format.
    let south_marks = [
        "shop-2".to_string(),
        "south".to_string(),
        "diesel-0".to_string(),
        shop_terminal(2, 1).to_string(),
        shop_terminal(2, 2).to_string(),
        operator(2, 1).to_string(),
        "southern refusal".to_string(),
        CardAsn(south_asn.0).to_string(),
        made[1].amount.to_string(),
    ];
    let all = everything(hq, &Scope::Network, now, today);
    for mark in &south_marks {
        assert!(all.contains(mark.as_str()), "the network sees {mark}");
    }
    let seen = everything(hq, &as_north, now, today);
    for mark in &south_marks {
        assert!(!seen.contains(mark.as_str()), "north must not see {mark}");
    }
    assert!(seen.contains("shop-1") && seen.contains("cola"));

    // North's own figures are whole: its sales equal its raw transactions.
    let rows = report::sales(hq, By::Merchant, Span::Day(bday), &as_north).unwrap();
    assert_eq!(rows.keys().collect::<Vec<_>>(), vec!["north"]);
    assert_eq!(rows["north"].sales().unwrap(), made[0].amount);
    let (lines, _) = settle::compute(
        hq,
        Selection::Due {
            as_of: day(2026, 11, 21),
        },
        &as_north,
    )
    .unwrap();
    assert_eq!(
        lines.iter().map(|l| &l.merchant).collect::<Vec<_>>(),
        vec![&north]
    );
    let settled = settle::settled(hq, &as_north).unwrap();
    assert_eq!(settled.len(), 1);
    assert_eq!(settled[0].1.merchant, north);
    assert_eq!(settled[0].1.gross, made[0].amount);

    // A scoped reader can neither ask for south's settlement nor run a clearing.
    assert!(matches!(
        settle::compute(
            hq,
            Selection::One {
                merchant: "south".parse().unwrap(),
                period: cardmesh_model::settlement::Period {
                    from: bday,
                    to: bday
                },
            },
            &as_north,
        ),
        Err(HqError::NotPermitted(..))
    ));
    assert!(matches!(
        settle::run(
            hq,
            Selection::Due {
                as_of: day(2026, 11, 21)
            },
            &out,
            &as_north
        ),
        Err(HqError::NotPermitted(..))
    ));
}
