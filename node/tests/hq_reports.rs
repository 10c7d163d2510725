//! Reports at HQ, kept current as entries arrive, checked against totals this test
//! computes itself from the raw transactions it made with real (virtual) cards.

mod hq_support;

use cardmesh_drivers::types::BcdDateTime;
use cardmesh_model::body::{Body, CardTxn, OperatorAction, OperatorActionKind, TxnKind};
use cardmesh_model::report::TxnClass;
use cardmesh_model::settlement::{Cycle, MerchantTerms};
use cardmesh_model::{BusinessDay, MerchantId, Money};
use cardmesh_node::hq::audit;
use cardmesh_node::hq::report::{self, By, Format, Span};
use hq_support::*;
use std::collections::BTreeMap;

fn terms(name: &str) -> MerchantTerms {
    MerchantTerms {
        name: name.into(),
        cycle: Cycle::Daily,
        fee_bp: 60,
    }
}

/// (count, amount in fen) per key.
type Sums = BTreeMap<String, (u64, i64)>;

fn sum_by(txns: &[CardTxn], kind: TxnKind, key: impl Fn(&CardTxn) -> Option<String>) -> Sums {
    let mut out = Sums::new();
    for t in txns.iter().filter(|t| t.kind == kind) {
        if let Some(k) = key(t) {
            let e = out.entry(k).or_default();
            e.0 += 1;
            e.1 += t.amount.fen();
        }
    }
    out
}

fn reported(rows: &BTreeMap<String, cardmesh_model::report::Totals>, class: TxnClass) -> Sums {
    rows.iter()
        .map(|(k, t)| (k.clone(), (t.kind(class).count, t.kind(class).amount.fen())))
        .filter(|(_, v)| v.0 > 0)
        .collect()
}

#[test]
fn daily_and_monthly_reports_equal_totals_computed_from_the_raw_transactions() {
    let tmp = tempfile::tempdir().unwrap();
    let chain = Chain::new(tmp.path(), 2);
    chain.register(
        &["north", "south"],
        &[("north", terms("North Co")), ("south", terms("South Co"))],
    );
    let days = [day(2026, 11, 19), day(2026, 11, 20), day(2026, 12, 1)];
    let cards: Vec<_> = (1..=4).map(|n| chain.card(n)).collect();
    let mut made: Vec<CardTxn> = Vec::new();
    for (_, chip) in &cards {
        let when = BcdDateTime::new(2026, 11, 19, 8, 0, 0).unwrap();
        made.push(chain.load(chip, 400_000, when, days[0]));
    }
    // A fixed pseudo-random pattern of sales: shop, terminal, operator, card, basket.
    let mut s: u64 = 7;
    let mut next = |n: u64| {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
        (s >> 33) % n
    };
    for (d, bday) in days.iter().enumerate() {
        for k in 0..12 {
            let shop = 1 + next(2) as usize;
            let term = 1 + next(2) as usize;
            let op = 1 + next(2) as usize;
            let card = next(4) as usize;
            let items = match next(3) {
                0 => vec![item("petrol-92", 10_000 + 137 * k, 768)],
                1 => vec![item("cola", 2_000, 300), item("popcorn", 1_000, 1_800)],
                _ => vec![item("diesel-0", 25_500, 789)],
            };
            let when =
                BcdDateTime::new(bday.year, bday.month, bday.day, 9 + d as u8, k as u8, 0).unwrap();
            made.push(chain.sell((shop, term, op), &cards[card].1, items, when, *bday));
        }
    }
    // Refusals at shop 1: two on the first day.
    for reason in ["card blocked", "insufficient balance"] {
        chain.shops[0]
            .store
            .append_local(Body::Operator(OperatorAction {
                operator: operator(1, 1),
                terminal: Some(shop_terminal(1, 1)),
                action: OperatorActionKind::Refused {
                    what: "purchase".into(),
                    reason: reason.into(),
                },
            }))
            .unwrap();
    }
    chain.sync_all();
    let hq = &chain.hq.store;

    // Every TAC is the card's own, and the card histories chain: nothing to answer.
    let audited = audit::audit(hq, &tac_key(&chain), 0, u64::MAX).unwrap();
    assert_eq!(audited.verified, made.len() as u64);
    assert_eq!(audited.bad_tacs, 0);
    assert!(audited.appended.is_empty(), "{:?}", audited.appended);
    assert!(hq.anomalies().unwrap().is_empty());

    // The HQ store saw every transaction, and it is the test's own list.
    let mut held = card_txns(hq);
    held.sort_by_key(|t| (t.asn, t.card_counter, t.kind.name()));
    let mut mine = made.clone();
    mine.sort_by_key(|t| (t.asn, t.card_counter, t.kind.name()));
    assert_eq!(held, mine);

    for bday in days {
        let on = |t: &CardTxn| t.business_day == bday;
        let rows = report::sales(hq, By::Site, Span::Day(bday), None).unwrap();
        let expect = sum_by(&made, TxnKind::Purchase, |t| {
            on(t).then(|| t.site.to_string())
        });
        assert_eq!(
            reported(&rows, TxnClass::Purchase),
            expect,
            "sites on {bday}"
        );
        let rows = report::sales(hq, By::Terminal, Span::Day(bday), None).unwrap();
        let expect = sum_by(&made, TxnKind::Purchase, |t| {
            on(t).then(|| t.terminal.to_string())
        });
        assert_eq!(reported(&rows, TxnClass::Purchase), expect, "terminals");
        let rows = report::sales(hq, By::Operator, Span::Day(bday), None).unwrap();
        let expect = sum_by(&made, TxnKind::Purchase, |t| {
            on(t).then(|| t.operator.as_ref().unwrap().to_string())
        });
        assert_eq!(reported(&rows, TxnClass::Purchase), expect, "operators");
        let rows = report::sales(hq, By::Merchant, Span::Day(bday), None).unwrap();
        let expect = sum_by(&made, TxnKind::Purchase, |t| {
            on(t).then(|| {
                if t.site.as_str() == "shop-1" {
                    "north"
                } else {
                    "south"
                }
                .into()
            })
        });
        assert_eq!(reported(&rows, TxnClass::Purchase), expect, "merchants");
    }

    // The month of November: both November days, nothing of December.
    let november = Span::Month {
        year: 2026,
        month: 11,
    };
    let in_nov = |t: &CardTxn| t.business_day.month == 11;
    let rows = report::sales(hq, By::Site, november, None).unwrap();
    let expect = sum_by(&made, TxnKind::Purchase, |t| {
        in_nov(t).then(|| t.site.to_string())
    });
    assert_eq!(reported(&rows, TxnClass::Purchase), expect);
    let expect = sum_by(&made, TxnKind::Load, |t| {
        in_nov(t).then(|| t.site.to_string())
    });
    assert_eq!(reported(&rows, TxnClass::Load), expect);
    assert_eq!(rows["shop-1"].refusals(), 2);
    let shop1_ops = rows["shop-1"].operations();
    assert_eq!(
        rows["shop-1"].failure_permille(),
        Some(2 * 1000 / (shop1_ops + 2))
    );

    // Fuel volumes per grade over the whole of the data: litres sold of each product.
    let mut litres: BTreeMap<String, i64> = BTreeMap::new();
    for t in made.iter().filter(|t| in_nov(t)) {
        for l in &t.items {
            *litres.entry(l.product.to_string()).or_default() += l.quantity.milli();
        }
    }
    let products = report::products(hq, november, None).unwrap();
    let got: BTreeMap<String, i64> = products
        .iter()
        .map(|(p, t, _)| (p.to_string(), t.quantity.milli()))
        .collect();
    assert_eq!(got, litres);
    assert!(
        products.windows(2).all(|w| w[0].1.amount >= w[1].1.amount),
        "best sellers first"
    );

    // The float is what is on the cards themselves.
    let on_cards: i64 = cards
        .iter()
        .map(|(_, chip)| i64::from(purse(chip).balance().unwrap()))
        .sum();
    assert_eq!(
        hq.network_totals().unwrap().float_delta,
        Money::from_fen(on_cards)
    );

    // A merchant's own view holds its sites only.
    let north: MerchantId = "north".parse().unwrap();
    let rows = report::sales(hq, By::Site, november, Some(&north)).unwrap();
    assert_eq!(rows.keys().collect::<Vec<_>>(), vec!["shop-1"]);

    // Freshness: HQ has heard from both shops and from itself.
    let fresh: Vec<String> = hq
        .freshness()
        .unwrap()
        .into_iter()
        .map(|(s, _)| s.to_string())
        .collect();
    assert_eq!(fresh, vec!["hq", "shop-1", "shop-2"]);

    // The same numbers as CSV and JSON.
    let rows = report::sales(hq, By::Site, Span::Day(days[1]), None).unwrap();
    let csv = report::render_sales(By::Site, Span::Day(days[1]), &rows, &[], Format::Csv);
    let shop2 = csv.lines().find(|l| l.starts_with("shop-2,")).unwrap();
    let fields: Vec<&str> = shop2.split(',').collect();
    let (n, fen) = sum_by(&made, TxnKind::Purchase, |t| {
        (t.business_day == days[1] && t.site.as_str() == "shop-2").then(|| "x".into())
    })["x"];
    assert_eq!(fields[2], n.to_string());
    assert_eq!(fields[3], Money::from_fen(fen).to_string());
    let json = report::render_sales(By::Site, Span::Day(days[1]), &rows, &[], Format::Json);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let row = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "shop-2")
        .unwrap();
    assert_eq!(row["kinds"]["purchase"]["amount_fen"], fen);
}

#[test]
fn a_month_or_day_that_does_not_exist_is_refused() {
    assert!("2026-02-30".parse::<Span>().is_err());
    assert!("2026-13".parse::<Span>().is_err());
    assert!("2026-1-01".parse::<Span>().is_err());
    assert_eq!(
        "2026-11".parse::<Span>(),
        Ok(Span::Month {
            year: 2026,
            month: 11
        })
    );
    assert_eq!(
        "2028-02-29".parse::<Span>(),
        Ok(Span::Day(BusinessDay {
            year: 2028,
            month: 2,
            day: 29
        }))
    );
}
