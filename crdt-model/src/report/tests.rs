use super::*;
use crate::body::{CardTxn, LineItem, TxnKind};
use crate::ids::{CardAsn, CardTime, NodeId, TerminalId};
use crate::money::{Money, Quantity};
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
