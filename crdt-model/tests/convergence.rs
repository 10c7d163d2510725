//! Replicas that see the same entries agree, whatever the order, duplication or path.

mod common;

use cardmesh_model::body::EntryRef;
use cardmesh_model::docs::{DocName, discounts, pricebook};
use cardmesh_model::replica::Replica;
use cardmesh_model::*;
use common::*;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Action {
    Purchase {
        writer: usize,
        card: u8,
        amount: i64,
    },
    Block {
        writer: usize,
        card: u8,
    },
    Clear {
        card: u8,
    },
    Holder {
        writer: usize,
        card: u8,
        name: u8,
    },
    Price {
        writer: usize,
        product: u8,
        from: i64,
        fen: i64,
    },
    Discount {
        start: u16,
        end: u16,
        pct: u8,
    },
    Sync {
        a: usize,
        b: usize,
    },
}

fn action() -> impl Strategy<Value = Action> {
    let w = 0usize..4;
    prop_oneof![
        3 => (w.clone(), 0u8..6, 1i64..5000).prop_map(|(writer, card, amount)| Action::Purchase { writer, card, amount }),
        2 => (w.clone(), 0u8..6).prop_map(|(writer, card)| Action::Block { writer, card }),
        2 => (0u8..6).prop_map(|card| Action::Clear { card }),
        1 => (w.clone(), 0u8..6, 0u8..4).prop_map(|(writer, card, name)| Action::Holder { writer, card, name }),
        2 => (w.clone(), 0u8..3, 0i64..5, 100i64..999).prop_map(|(writer, product, from, fen)| Action::Price { writer, product, from, fen }),
        1 => (0u16..1440, 0u16..1440, 50u8..=100).prop_map(|(start, end, pct)| Action::Discount { start, end, pct }),
        3 => (w.clone(), w).prop_map(|(a, b)| Action::Sync { a, b }),
    ]
}

/// Runs the actions on one replica per writer, with partial syncs in between, and returns
/// the replicas. Writes a role may not make are refused and simply not there.
fn run(net: &Net, actions: &[Action]) -> Vec<Replica> {
    let mut world: Vec<Replica> = (0..4).map(|_| net.replica()).collect();
    let mut clocks = [HlcClock::default(); 4];
    for (step, a) in actions.iter().enumerate() {
        let now = 1_000 + step as u64;
        let mut tick = |w: usize| clocks[w].tick(now);
        match a.clone() {
            Action::Purchase {
                writer,
                card,
                amount,
            } => {
                let (k, s) = net.writer(writer);
                let body = purchase(s, asn(card), step as u16, amount, 10_000);
                world[writer].append(k, tick(writer), body).unwrap();
            }
            Action::Block { writer, card } => {
                let (k, _) = net.writer(writer);
                world[writer]
                    .append(k, tick(writer), block(asn(card)))
                    .unwrap();
            }
            Action::Clear { card } => {
                let open: Vec<EntryRef> = world[0]
                    .views()
                    .blacklist
                    .card(&asn(card))
                    .map(|c| c.open_blocks().into_iter().map(|b| b.at).collect())
                    .unwrap_or_default();
                if !open.is_empty() {
                    world[0]
                        .append(&net.hq, tick(0), clear(asn(card), open))
                        .unwrap();
                }
            }
            Action::Holder { writer, card, name } => {
                let (k, _) = net.writer(writer);
                let _ = world[writer].append(
                    k,
                    tick(writer),
                    holder(asn(card), &format!("holder{name}")),
                );
            }
            Action::Price {
                writer,
                product,
                from,
                fen,
            } => {
                let (k, s) = net.writer(writer);
                let doc = if writer == 0 {
                    DocName::PriceBook
                } else {
                    DocName::SitePrices(s)
                };
                let p: ProductId = format!("p{product}").parse().unwrap();
                let hlc = tick(writer);
                world[writer]
                    .edit_doc(k, hlc, doc, |d| {
                        if writer == 0 {
                            let info = pricebook::Product {
                                name: format!("P{product}"),
                                unit: "pc".into(),
                                site_override: true,
                            };
                            pricebook::set_product(d, &p, &info)?;
                        }
                        pricebook::schedule_price(d, &p, from * 86_400_000, Money::from_fen(fen))
                    })
                    .unwrap();
            }
            Action::Discount { start, end, pct } => {
                let slot = discounts::TimeSlot {
                    start_min: start,
                    end_min: end,
                };
                let class: MemberClass = "gold".parse().unwrap();
                let hlc = tick(0);
                world[0]
                    .edit_doc(&net.hq, hlc, DocName::Discounts, |d| {
                        discounts::set_rule(d, &class, slot, pct)
                    })
                    .unwrap();
            }
            Action::Sync { a, b } => {
                let (lo, hi) = (a.min(b), a.max(b));
                if lo != hi {
                    let (left, right) = world.split_at_mut(hi);
                    let report = pull(&mut left[lo], &right[0]);
                    assert!(report.rejected.is_empty(), "{:?}", report.rejected);
                    let report = pull(&mut right[0], &left[lo]);
                    assert!(report.rejected.is_empty(), "{:?}", report.rejected);
                }
            }
        }
    }
    world
}

/// A deterministic shuffle (xorshift), so a failing case replays from its seed.
fn shuffle<T>(v: &mut [T], mut seed: u64) {
    for i in (1..v.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        v.swap(i, (seed % (i as u64 + 1)) as usize);
    }
}

/// Delivers `entries` (with every third one duplicated) in a shuffled order, in batches
/// of `batch`, retrying what arrived before its predecessor, until nothing more applies.
fn deliver(entries: &[Entry], seed: u64, batch: usize, net: &Net) -> Replica {
    let mut r = net.replica();
    let mut pending: Vec<Entry> = entries
        .iter()
        .cloned()
        .chain(entries.iter().step_by(3).cloned())
        .collect();
    let mut round = seed | 1;
    while !pending.is_empty() {
        round = round.wrapping_mul(6364136223846793005).wrapping_add(1);
        shuffle(&mut pending, round);
        let before = r.version_vector().total();
        for chunk in pending.chunks(batch.max(1)) {
            r.ingest(chunk.to_vec());
        }
        let vv = r.version_vector();
        pending.retain(|e| e.seq > vv.get(&e.origin));
        assert!(
            r.version_vector().total() > before || pending.is_empty(),
            "delivery stalled"
        );
    }
    r
}

fn all_entries(world: &[Replica], net: &Net) -> Vec<Entry> {
    (0..4)
        .flat_map(|i| {
            let origin = net.writer(i).0.node_id();
            let r = FeedRange {
                origin,
                from: 1,
                to: u64::MAX,
            };
            world[i].entries(r).to_vec()
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn replicas_fed_the_same_entries_in_any_order_agree(
        actions in proptest::collection::vec(action(), 1..60),
        seed_a: u64,
        seed_b: u64,
        batch_a in 1usize..8,
        batch_b in 1usize..40,
    ) {
        let net = Net::new();
        let mut world = run(&net, &actions);
        let entries = all_entries(&world, &net);
        let a = deliver(&entries, seed_a, batch_a, &net);
        let b = deliver(&entries, seed_b, batch_b, &net);
        prop_assert_eq!(a.version_vector().total(), entries.len() as u64);
        let snap = a.snapshot();
        prop_assert_eq!(&snap, &b.snapshot());

        // The writers themselves converge to the same state once every link has run.
        for _ in 0..2 {
            for i in 0..4 {
                for j in 0..4 {
                    if i != j {
                        let (src, dst) = if i < j {
                            let (l, r) = world.split_at_mut(j);
                            (&l[i], &mut r[0])
                        } else {
                            let (l, r) = world.split_at_mut(i);
                            (&r[0], &mut l[j])
                        };
                        pull(dst, src);
                    }
                }
            }
        }
        for w in &world {
            prop_assert_eq!(&w.snapshot(), &snap);
        }
    }
}
