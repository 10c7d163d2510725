//! Reports at HQ, kept current as entries arrive, checked against totals this test
//! computes itself from the raw transactions it made with real (virtual) cards.

mod hq_support;

use cardmesh_drivers::types::BcdDateTime;
use cardmesh_model::body::{Body, CardTxn, OperatorAction, OperatorActionKind, TxnKind};
use cardmesh_model::report::{Scope, TxnClass};
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
    // Refusals at shop 1: two, now (a store dates what it appends by its own clock).
    let mut refused_at = 0;
    for reason in ["card blocked", "insufficient balance"] {
        refused_at = chain.shops[0]
            .store
            .append_local(Body::Operator(OperatorAction {
                operator: operator(1, 1),
                terminal: Some(shop_terminal(1, 1)),
                action: OperatorActionKind::Refused {
                    what: "purchase".into(),
                    reason: reason.into(),
                },
            }))
            .unwrap()
            .hlc
            .millis;
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
        let rows = report::sales(hq, By::Site, Span::Day(bday), &Scope::Network).unwrap();
        let expect = sum_by(&made, TxnKind::Purchase, |t| {
            on(t).then(|| t.site.to_string())
        });
        assert_eq!(
            reported(&rows, TxnClass::Purchase),
            expect,
            "sites on {bday}"
        );
        let rows = report::sales(hq, By::Terminal, Span::Day(bday), &Scope::Network).unwrap();
        let expect = sum_by(&made, TxnKind::Purchase, |t| {
            on(t).then(|| t.terminal.to_string())
        });
        assert_eq!(reported(&rows, TxnClass::Purchase), expect, "terminals");
        let rows = report::sales(hq, By::Operator, Span::Day(bday), &Scope::Network).unwrap();
        let expect = sum_by(&made, TxnKind::Purchase, |t| {
            on(t).then(|| t.operator.as_ref().unwrap().to_string())
        });
        assert_eq!(reported(&rows, TxnClass::Purchase), expect, "operators");
        let rows = report::sales(hq, By::Merchant, Span::Day(bday), &Scope::Network).unwrap();
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
    let rows = report::sales(hq, By::Site, november, &Scope::Network).unwrap();
    let expect = sum_by(&made, TxnKind::Purchase, |t| {
        in_nov(t).then(|| t.site.to_string())
    });
    assert_eq!(reported(&rows, TxnClass::Purchase), expect);
    let expect = sum_by(&made, TxnKind::Load, |t| {
        in_nov(t).then(|| t.site.to_string())
    });
    assert_eq!(reported(&rows, TxnClass::Load), expect);

    // The refusals count on the business day they happened, at the shop's UTC+8.
    let refusal_day = BusinessDay::of_instant(refused_at as i64, 480);
    let rows = report::sales(hq, By::Site, Span::Day(refusal_day), &Scope::Network).unwrap();
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
    let products = report::products(hq, november, &Scope::Network).unwrap();
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
    let rows = report::sales(hq, By::Site, november, &Scope::Merchant(north.clone())).unwrap();
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
    let rows = report::sales(hq, By::Site, Span::Day(days[1]), &Scope::Network).unwrap();
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

/// Every entry HQ holds, from its feeds: the raw material the expectations below are
/// computed from.
fn raw_entries(store: &cardmesh_node::store::Store) -> Vec<cardmesh_model::Entry> {
    let vv = store.version_vector().unwrap();
    vv.iter()
        .flat_map(|(origin, &to)| {
            store
                .entries(
                    cardmesh_model::FeedRange {
                        origin: *origin,
                        from: 1,
                        to,
                    },
                    usize::MAX,
                )
                .unwrap()
        })
        .collect()
}

#[test]
fn failures_issuance_fuel_alarms_and_freshness_equal_counts_from_the_raw_entries() {
    use cardmesh_model::body::{Alarm, AlarmKind, CardChange, CardEvent};
    use cardmesh_model::docs::{DocName, pricebook};
    use cardmesh_model::report::totals::alarm_name;
    use cardmesh_model::{CardAsn, CardTime, SiteId};

    let tmp = tempfile::tempdir().unwrap();
    let chain = Chain::new(tmp.path(), 2);
    chain.register(
        &["north", "south"],
        &[("north", terms("North Co")), ("south", terms("South Co"))],
    );
    chain
        .hq
        .store
        .edit_doc(DocName::PriceBook, |d| {
            for (p, unit) in [("petrol-92", "L"), ("diesel-0", "L"), ("cola", "pc")] {
                let product = pricebook::Product {
                    name: p.into(),
                    unit: unit.into(),
                    site_override: false,
                };
                pricebook::set_product(d, &p.parse().unwrap(), &product)?;
            }
            Ok(())
        })
        .unwrap();
    let hq = &chain.hq.store;
    // Every site of this chain is at UTC+8: the business day of an instant is its day
    // there.
    let day_at = |ms: u64| BusinessDay::of_instant(ms as i64, 480);

    // Primary issue at HQ: three chips personalized.
    let mut today = None;
    for n in 1..=3u8 {
        let e = hq
            .append_local(Body::CardRegistry(CardEvent {
                asn: CardAsn([0x10, 0, 0, 0, 0, 0, 0, n]),
                change: CardChange::Personalized {
                    class: "standard".parse().unwrap(),
                    expiry: day(2031, 12, 31),
                    issuer: "hq".parse().unwrap(),
                },
            }))
            .unwrap();
        today = Some(day_at(e.hlc.millis));
    }
    let today = today.unwrap();
    let when =
        |h: u8, m: u8| BcdDateTime::new(today.year, today.month, today.day, h, m, 0).unwrap();
    let cards: Vec<_> = (1..=3).map(|n| chain.card(n)).collect();
    for (i, (_, chip)) in cards.iter().enumerate() {
        chain.load(chip, 50_000 + 1_000 * i as u32, when(8, i as u8), today);
    }
    // Secondary issue at HQ's card desk (shops may not issue): cards sold with
    // deposits, one returned.
    let desk = |n: u8, kind: TxnKind| {
        let t = CardTxn {
            kind,
            asn: CardAsn([0x10, 0, 0, 0, 0, 0, 0, n]),
            site: "hq".parse().unwrap(),
            terminal: hq_terminal(),
            operator: None,
            business_day: today,
            card_time: CardTime::default(),
            card_counter: 0,
            term_seq: 0,
            amount: Money::ZERO,
            balance_before: Money::ZERO,
            balance_after: Money::ZERO,
            mac1: [0; 4],
            mac2: [0; 4],
            tac: [0; 4],
            items: Vec::new(),
            refers_to: None,
        };
        hq.append_local(Body::Card(t)).unwrap();
    };
    let deposit = Money::from_fen(2_000);
    desk(1, TxnKind::Issue { deposit });
    desk(2, TxnKind::Issue { deposit });
    desk(3, TxnKind::Issue { deposit });
    desk(3, TxnKind::Return { deposit });
    // Fuel and shop sales.
    chain.sell(
        (1, 1, 1),
        &cards[0].1,
        vec![item("petrol-92", 30_250, 768)],
        when(9, 0),
        today,
    );
    chain.sell(
        (1, 1, 1),
        &cards[1].1,
        vec![item("diesel-0", 12_000, 789), item("cola", 2_000, 300)],
        when(9, 5),
        today,
    );
    chain.sell(
        (2, 1, 1),
        &cards[2].1,
        vec![item("petrol-92", 5_125, 768)],
        when(9, 10),
        today,
    );
    // Refusals and alarms.
    let refuse = |shop: usize, term: usize, reason: &str| {
        chain.shops[shop - 1]
            .store
            .append_local(Body::Operator(OperatorAction {
                operator: operator(shop, 1),
                terminal: Some(shop_terminal(shop, term)),
                action: OperatorActionKind::Refused {
                    what: "purchase".into(),
                    reason: reason.into(),
                },
            }))
            .unwrap();
    };
    refuse(1, 1, "insufficient balance");
    refuse(1, 1, "insufficient balance");
    refuse(1, 2, "card blocked");
    refuse(2, 1, "wrong card PIN");
    for (shop, kind) in [
        (2, AlarmKind::RiskLimit),
        (2, AlarmKind::RiskLimit),
        (1, AlarmKind::BlacklistedCardPresented),
    ] {
        chain.shops[shop - 1]
            .store
            .append_local(Body::Alarm(Alarm {
                kind,
                asn: Some(CardAsn([0x10, 0, 0, 0, 0, 0, 0, 1])),
                detail: "test".into(),
            }))
            .unwrap();
    }
    chain.sync_all();

    // What the raw entries say.
    let site_of: BTreeMap<cardmesh_model::NodeId, SiteId> = hq
        .certificates()
        .unwrap()
        .into_iter()
        .map(|c| (c.node, c.site))
        .collect();
    let raw = raw_entries(hq);
    let mut attempted: BTreeMap<String, u64> = BTreeMap::new();
    let mut refused: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut personalized = 0;
    let (mut sold, mut returned, mut loads) = (0, 0, 0);
    let (mut taken, mut paid_back, mut loaded) = (0, 0, 0);
    let mut litres: BTreeMap<String, i64> = BTreeMap::new();
    let mut alarms: BTreeMap<String, u64> = BTreeMap::new();
    let mut fresh: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for e in &raw {
        let origin_site = site_of[&e.origin].to_string();
        let about = match &e.body {
            Body::Card(t) => t.site.to_string(),
            _ => origin_site.clone(),
        };
        let f = fresh.entry(about).or_default();
        f.0 += 1;
        f.1 = f.1.max(e.hlc.millis);
        match &e.body {
            Body::Card(t) if t.business_day == today => {
                *attempted.entry(t.site.to_string()).or_default() += 1;
                match &t.kind {
                    TxnKind::Issue { deposit } => {
                        sold += 1;
                        taken += deposit.fen();
                    }
                    TxnKind::Return { deposit } => {
                        returned += 1;
                        paid_back += deposit.fen();
                    }
                    TxnKind::Load => {
                        loads += 1;
                        loaded += t.amount.fen();
                    }
                    _ => {}
                }
                for l in &t.items {
                    if l.product.as_str() != "cola" {
                        *litres.entry(l.product.to_string()).or_default() += l.quantity.milli();
                    }
                }
            }
            Body::Operator(OperatorAction {
                action: OperatorActionKind::Refused { reason, .. },
                ..
            }) if day_at(e.hlc.millis) == today => {
                *attempted.entry(origin_site.clone()).or_default() += 1;
                *refused.entry((origin_site, reason.clone())).or_default() += 1;
            }
            Body::CardRegistry(CardEvent {
                change: CardChange::Personalized { .. },
                ..
            }) if day_at(e.hlc.millis) == today => personalized += 1,
            Body::Alarm(a) if day_at(e.hlc.millis) == today => {
                *alarms.entry(alarm_name(&a.kind).to_string()).or_default() += 1;
            }
            _ => {}
        }
    }
    assert_eq!(refused.values().sum::<u64>(), 4, "every refusal is today's");
    assert_eq!(personalized, 3);

    // Failure rate by refusal reason, per site.
    let span = Span::Day(today);
    let failures = report::failures(hq, By::Site, span, &Scope::Network).unwrap();
    for (site, n) in &attempted {
        assert_eq!(failures[site].attempted, *n, "attempts at {site}");
    }
    let got: BTreeMap<(String, String), u64> = failures
        .iter()
        .flat_map(|(s, f)| f.refused.iter().map(|(r, n)| ((s.clone(), r.clone()), *n)))
        .collect();
    assert_eq!(got, refused);
    let csv = report::render_failures(&failures, Format::Csv);
    let line = csv
        .lines()
        .find(|l| l.starts_with("shop-1,insufficient balance,"))
        .unwrap();
    let permille = 2 * 1000 / attempted["shop-1"];
    assert_eq!(
        line,
        format!(
            "shop-1,insufficient balance,{},2,{permille}",
            attempted["shop-1"]
        )
    );

    // Card issuance today, and the month it is in.
    for span in [
        span,
        Span::Month {
            year: today.year,
            month: today.month,
        },
    ] {
        let (days, total) = report::issuance(hq, span, &Scope::Network).unwrap();
        assert_eq!(days.keys().collect::<Vec<_>>(), vec![&today]);
        assert_eq!(total.personalized, personalized);
        assert_eq!((total.sold, total.deposits_taken.fen()), (sold, taken));
        assert_eq!(
            (total.returned, total.deposits_returned.fen()),
            (returned, paid_back)
        );
        assert_eq!((total.loads, total.loaded.fen()), (loads, loaded));
        let json: serde_json::Value =
            serde_json::from_str(&report::render_issuance(&days, &total, Format::Json)).unwrap();
        assert_eq!(json["total"]["loaded_fen"], loaded);
        assert_eq!(json["days"][0]["day"], today.to_string());
    }

    // Fuel volumes per grade: only the products sold by the litre.
    let fuel = report::fuel(hq, span, &Scope::Network).unwrap();
    let got: BTreeMap<String, i64> = fuel
        .iter()
        .map(|(p, t)| (p.to_string(), t.quantity.milli()))
        .collect();
    assert_eq!(got, litres);
    assert_eq!(fuel[0].0.as_str(), "petrol-92", "most litres first");

    // Alarms and risk events of the day.
    let risk = report::risk(hq, span, 0, u64::MAX, &Scope::Network).unwrap();
    assert_eq!(risk.alarms, alarms);

    // Freshness: per site, the entries received about it and the newest one.
    let got: BTreeMap<String, (u64, u64)> = report::freshness(hq, &Scope::Network)
        .unwrap()
        .into_iter()
        .map(|(s, f)| (s.to_string(), (f.entries, f.newest.millis)))
        .collect();
    assert_eq!(got, fresh);
}
