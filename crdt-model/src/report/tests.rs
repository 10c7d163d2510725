use super::*;
use crate::body::{CardTxn, LineItem, TxnKind};
use crate::ids::{CardAsn, CardTime, NodeId, TerminalId};
use crate::money::{Money, MoneyError, Quantity};
use proptest::prelude::*;

fn day(d: u8) -> BusinessDay {
    BusinessDay {
        year: 2026,
        month: 11,
        day: d,
    }
}

fn at(o: u8, seq: u64) -> crate::body::EntryRef {
    crate::body::EntryRef {
        origin: NodeId([o; 32]),
        seq,
    }
}

fn txn(kind: TxnKind, counter: u16, before: i64, after: i64, second: u8) -> CardTxn {
    let amount = (before - after).abs();
    CardTxn {
        kind,
        asn: CardAsn([7; 8]),
        site: "shop-1".parse().unwrap(),
        terminal: TerminalId([0, 0, 0, 0, 0, 1]),
        operator: None,
        business_day: day(20),
        card_time: CardTime([0x20, 0x26, 0x11, 0x20, 0x10, 0x00, second]),
        card_counter: counter,
        term_seq: u32::from(counter) + 1,
        amount: Money::from_fen(amount),
        balance_before: Money::from_fen(before),
        balance_after: Money::from_fen(after),
        mac1: [0; 4],
        mac2: [0; 4],
        tac: [0; 4],
        items: Vec::new(),
        refers_to: None,
    }
}

fn kinds(chain: &mut CardChain, ops: &[(crate::body::EntryRef, CardTxn)]) -> Vec<AnomalyKind> {
    let mut out: Vec<AnomalyKind> = ops
        .iter()
        .flat_map(|(r, t)| chain.apply(*r, Hlc::new(r.seq, 0), t))
        .map(|a| a.kind)
        .collect();
    out.sort();
    out
}

#[test]
fn a_clean_history_with_loads_and_purchases_raises_nothing_whatever_the_clocks_say() {
    // The purchase terminal's clock is behind the load desk's: card time says the
    // purchase came first, but the balances say otherwise.
    let ops = vec![
        (at(1, 1), txn(TxnKind::Load, 0, 0, 10_000, 0x30)),
        (at(2, 1), txn(TxnKind::Purchase, 0, 10_000, 8_000, 0x10)),
        (at(2, 2), txn(TxnKind::Purchase, 1, 8_000, 7_500, 0x40)),
        (at(1, 2), txn(TxnKind::Load, 1, 7_500, 9_500, 0x50)),
    ];
    let mut chain = CardChain::default();
    assert!(kinds(&mut chain, &ops).is_empty());
    assert_eq!(chain.shadow_balance(), Some(Money::from_fen(9_500)));
}

#[test]
fn a_balance_that_does_not_chain_is_a_break_once_the_history_has_no_hole() {
    let ops = vec![
        (at(1, 1), txn(TxnKind::Load, 0, 0, 10_000, 1)),
        // Counter 1 of the offline counter is still on its way.
        (at(2, 1), txn(TxnKind::Purchase, 0, 10_000, 9_000, 2)),
        (at(2, 3), txn(TxnKind::Purchase, 2, 9_900, 9_800, 4)),
    ];
    let mut chain = CardChain::default();
    assert!(kinds(&mut chain, &ops).is_empty(), "a hole is not a break");
    // The missing purchase arrives and starts from the right balance, but ends at a
    // balance the next one did not find.
    let late = (at(2, 2), txn(TxnKind::Purchase, 1, 9_000, 8_000, 3));
    assert_eq!(kinds(&mut chain, &[late]), vec![AnomalyKind::BalanceBreak]);
}

#[test]
fn wrong_arithmetic_in_one_operation_is_a_break() {
    let mut bad = txn(TxnKind::Purchase, 0, 10_000, 9_000, 1);
    bad.amount = Money::from_fen(10);
    let mut chain = CardChain::default();
    let found = chain.apply(at(1, 1), Hlc::new(1, 0), &bad);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].kind, AnomalyKind::BalanceBreak);
}

#[test]
fn grey_locks_stay_open_until_their_debit_arrives_in_either_order() {
    let lock = txn(TxnKind::GreyLock, 0, 5_000, 5_000, 1);
    let mut debit = txn(TxnKind::DebitForUnlock, 1, 5_000, 3_000, 2);
    debit.refers_to = Some(at(1, 1));
    let mut a = CardChain::default();
    a.apply(at(1, 1), Hlc::new(100, 0), &lock);
    assert_eq!(a.open_locks(), vec![(at(1, 1), Hlc::new(100, 0))]);
    assert_eq!(stale_locks(&a.open_locks(), 10_000, 1_000), vec![at(1, 1)]);
    assert!(stale_locks(&a.open_locks(), 1_000, 1_000).is_empty());
    a.apply(at(2, 1), Hlc::new(200, 0), &debit);
    assert!(a.open_locks().is_empty());
    let mut b = CardChain::default();
    b.apply(at(2, 1), Hlc::new(200, 0), &debit);
    b.apply(at(1, 1), Hlc::new(100, 0), &lock);
    assert!(b.open_locks().is_empty());
    assert_eq!(a, b);
}

#[test]
fn a_lock_logged_twice_is_closed_by_a_debit_naming_either_entry_in_any_order() {
    // The lock's own site logged it at 1#1; another site completed the same intent at 3#1.
    let lock = txn(TxnKind::GreyLock, 0, 5_000, 5_000, 1);
    for named in [at(1, 1), at(3, 1)] {
        let mut debit = txn(TxnKind::DebitForUnlock, 1, 5_000, 3_000, 2);
        debit.refers_to = Some(named);
        let ops = [
            (at(1, 1), Hlc::new(100, 0), &lock),
            (at(3, 1), Hlc::new(150, 0), &lock),
            (at(2, 1), Hlc::new(200, 0), &debit),
        ];
        for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0], [0, 2, 1]] {
            let mut chain = CardChain::default();
            for i in order {
                let (r, h, t) = ops[i];
                chain.apply(r, h, t);
            }
            assert!(chain.open_locks().is_empty(), "{named:?} {order:?}");
        }
    }
    let mut only_locks = CardChain::default();
    only_locks.apply(at(1, 1), Hlc::new(100, 0), &lock);
    only_locks.apply(at(3, 1), Hlc::new(150, 0), &lock);
    assert_eq!(
        only_locks.open_locks(),
        vec![(at(1, 1), Hlc::new(100, 0))],
        "one lock, listed once, until the debit"
    );
}

fn arb_txn() -> impl Strategy<Value = CardTxn> {
    (0usize..4, 1i64..5_000, 0u8..3, 0u8..2, 0u8..4, 1u8..28).prop_map(
        |(k, amount, product, operator, terminal, d)| {
            let kind = [
                TxnKind::Purchase,
                TxnKind::Load,
                TxnKind::Reversal,
                TxnKind::Issue {
                    deposit: Money::from_fen(2_000),
                },
            ][k]
                .clone();
            let mut t = txn(kind, 0, 10_000, 10_000 - amount, 0);
            t.business_day = day(d);
            t.terminal = TerminalId([0, 0, 0, 0, 0, terminal]);
            t.operator = (operator == 1).then(|| "cashier-1".parse().unwrap());
            t.items = vec![LineItem {
                product: ["petrol-92", "cola", "ticket"][usize::from(product)]
                    .parse()
                    .unwrap(),
                quantity: Quantity::from_milli(amount * 7),
                unit_price: Money::from_fen(100),
                paid_percent: 100,
                amount: Money::from_fen(amount),
            }];
            t
        },
    )
}

proptest! {
    /// Folding entries one at a time, in any order and from any split into batches,
    /// gives the rows a from-scratch computation gives.
    #[test]
    fn incremental_rows_equal_rows_recomputed_from_scratch(
        txns in proptest::collection::vec(arb_txn(), 1..40),
        seed in any::<u64>(),
    ) {
        let site: SiteId = "shop-1".parse().unwrap();
        let bodies: Vec<Body> = txns.iter().cloned().map(Body::Card).collect();
        let mut order: Vec<usize> = (0..bodies.len()).collect();
        let mut s = seed;
        for i in (1..order.len()).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            order.swap(i, (s >> 33) as usize % (i + 1));
        }
        let mut incremental = Aggregates::default();
        for i in order {
            incremental.add(rows_of(&bodies[i], Hlc::default(), &site, |_| day(1)).unwrap()).unwrap();
        }
        // From scratch: group the transactions by row and sum each group directly.
        let mut scratch: BTreeMap<(BusinessDay, Dim, String), (u64, i64, i64)> = BTreeMap::new();
        for t in &txns {
            for (dim, name) in [
                (Dim::Site, t.site.to_string()),
                (Dim::Terminal, t.terminal.to_string()),
                (Dim::Operator, t.operator.as_ref().map_or("-".into(), |o| o.to_string())),
            ] {
                let e = scratch.entry((t.business_day, dim, name)).or_default();
                e.0 += 1;
                e.1 += t.amount.fen();
                e.2 += t.balance_after.fen() - t.balance_before.fen();
            }
        }
        let got: BTreeMap<(BusinessDay, Dim, String), (u64, i64, i64)> = incremental
            .rows()
            .map(|(k, t)| ((k.day, k.dim, k.name.clone()), (t.operations(), t.kinds.values().map(|x| x.amount.fen()).sum(), t.float_delta.fen())))
            .collect();
        prop_assert_eq!(got, scratch);
    }

    /// A cloned counter is reported exactly once, whatever the arrival order.
    #[test]
    fn a_clone_is_reported_once_in_any_order(order in Just(vec![0usize, 1, 2, 3]).prop_shuffle()) {
        let ops = [
            (at(1, 1), txn(TxnKind::Load, 0, 0, 10_000, 1)),
            (at(2, 1), txn(TxnKind::Purchase, 0, 10_000, 9_000, 2)),
            (at(3, 1), txn(TxnKind::Purchase, 0, 10_000, 9_500, 3)),
            (at(2, 2), txn(TxnKind::Purchase, 1, 9_000, 8_000, 4)),
        ];
        let mut chain = CardChain::default();
        let shuffled: Vec<_> = order.iter().map(|&i| ops[i].clone()).collect();
        let found = kinds(&mut chain, &shuffled);
        prop_assert_eq!(found.iter().filter(|k| **k == AnomalyKind::CloneSuspected).count(), 1);
        let mut reference = CardChain::default();
        kinds(&mut reference, &ops);
        prop_assert_eq!(chain.shadow_balance(), reference.shadow_balance());
        let stored = CardChain::from_parts(
            chain.links().map(|(s, c, l)| (s, c, l.clone())),
            chain.marks().clone(),
        );
        prop_assert_eq!(stored, chain);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Loads, purchases and grey locks on both counters, some starting from a wrong balance, some
    /// counters used twice (clones), with clocks all over the place, in any arrival
    /// order: folded one at a time, the history's walk is always the walk taken from
    /// scratch, and every break of that walk has been reported.
    #[test]
    fn the_walk_kept_step_by_step_is_the_walk_from_scratch(
        steps in prop::collection::vec((any::<bool>(), 0u8..5, 1i64..50, 0u8..40), 1..16),
        clones in prop::collection::vec((0usize..16, 1i64..9), 0..3),
        arrival in prop::collection::vec(any::<u32>(), 20),
    ) {
        let mut ops = Vec::new();
        let (mut balance, mut counters) = (0i64, [0u16; 2]);
        for (i, (online, skew, amount, second)) in steps.iter().enumerate() {
            let before = if *skew == 0 { balance + 1 } else { balance };
            // Grey locks leave the balance as it was, so that more than one operation
            // can start from the same balance.
            let (kind, after, n) = if *online {
                (TxnKind::Load, before + amount * 3, &mut counters[0])
            } else if amount % 3 == 0 {
                (TxnKind::GreyLock, before, &mut counters[1])
            } else {
                (TxnKind::Purchase, before - amount, &mut counters[1])
            };
            ops.push((at(1 + (i % 3) as u8, i as u64), txn(kind, *n, before, after, *second)));
            *n += 1;
            balance = after;
        }
        for (k, (pick, delta)) in clones.iter().enumerate() {
            let mut twin = ops[pick % steps.len()].1.clone();
            twin.balance_after = Money::from_fen(twin.balance_after.fen() + delta + 10 * k as i64);
            ops.push((at(9, 100 + k as u64), twin));
        }
        let mut order: Vec<usize> = (0..ops.len()).collect();
        order.sort_by_key(|i| (arrival[i % arrival.len()], *i));

        // Anomalies are reported once per counter, at whichever entry showed one first.
        let counter_of = |r: crate::body::EntryRef| {
            let t = &ops.iter().find(|(at, _)| *at == r).expect("an op").1;
            (t.kind.counter_space(), t.card_counter)
        };
        let mut chain = CardChain::default();
        let mut found = std::collections::BTreeSet::new();
        // Beside the whole history, the rows a store keeps, folded as a store does:
        // partial, and whole only when the operation needs it.
        let (mut rows, mut marks) = (BTreeMap::new(), ChainMarks::default());
        for i in order {
            let (r, t) = &ops[i];
            let whole = chain.apply(*r, Hlc::new(r.seq, 0), t);
            let key = t.kind.counter_space().map(|s| (s, t.card_counter));
            let held = key
                .filter(|k| marks.may_hold(k.0, k.1))
                .and_then(|k| rows.get(&k).map(|l: &Link| (k.0, k.1, l.clone())));
            let mut part = CardChain::partial(held, marks.clone());
            let stored = match part.try_apply(*r, Hlc::new(r.seq, 0), t) {
                Ok(found) => found,
                Err(NeedsHistory) => {
                    part = CardChain::from_parts(
                        rows.iter().map(|(k, l): (&(CounterSpace, u16), &Link)| (k.0, k.1, l.clone())),
                        marks.clone(),
                    );
                    part.apply(*r, Hlc::new(r.seq, 0), t)
                }
            };
            if let Some(k) = key && let Some(l) = part.link(k.0, k.1) {
                rows.insert(k, l.clone());
            }
            marks = part.marks().clone();
            prop_assert_eq!(&stored, &whole);
            prop_assert_eq!(&marks, chain.marks());
            for a in whole {
                found.insert((a.kind, counter_of(a.at)));
            }
            let scratch = CardChain::from_parts(
                chain.links().map(|(s, c, l)| (s, c, l.clone())),
                chain.marks().clone(),
            );
            prop_assert_eq!(&scratch, &chain);
            for b in chain.walk_breaks() {
                prop_assert!(
                    found.contains(&(AnomalyKind::BalanceBreak, counter_of(b))),
                    "{:?}",
                    b
                );
            }
        }
        let mut in_order = CardChain::default();
        for (r, t) in &ops {
            in_order.apply(*r, Hlc::new(r.seq, 0), t);
        }
        let links = |c: &CardChain| c.links().map(|(s, n, l)| (s, n, l.clone())).collect::<Vec<_>>();
        prop_assert_eq!(
            CardChain::from_parts(links(&chain), ChainMarks::default()),
            CardChain::from_parts(links(&in_order), ChainMarks::default())
        );
    }
}

#[test]
fn a_merge_that_overflows_leaves_the_row_as_it_was() {
    let site: SiteId = "shop-1".parse().unwrap();
    let row_of = |amount: i64| {
        let mut t = txn(TxnKind::Purchase, 0, 10_000, 10_000 - amount, 0);
        t.items = vec![LineItem {
            product: "cola".parse().unwrap(),
            quantity: Quantity::from_milli(1_000),
            unit_price: Money::from_fen(amount),
            paid_percent: 100,
            amount: Money::from_fen(i64::MAX - 10),
        }];
        rows_of(&Body::Card(t), Hlc::default(), &site, |_| day(1))
            .unwrap()
            .remove(0)
            .1
    };
    let mut row = row_of(100);
    let before = row.clone();
    // The purchase counts and amounts come before the products in a merge: they would
    // have changed by the time the product amount overflows.
    assert_eq!(row.merge(&row_of(200)), Err(MoneyError::Overflow));
    assert_eq!(row, before);
    assert_eq!(row.fits(&row_of(300)), Err(MoneyError::Overflow));
    assert_eq!(row.fits(&Totals::default()), Ok(()));
}
