//! The store applies exactly what the model's in-memory `Replica` applies: the same
//! acceptance and the same folds, whatever the batches, order and duplicates.

mod store_support;

use cardmesh_model::docs::{DocName, pricebook};
use cardmesh_model::replica::Replica;
use cardmesh_model::*;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use store_support::*;

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
        from: i64,
        fen: i64,
    },
}

fn action() -> impl Strategy<Value = Action> {
    let w = 0usize..4;
    prop_oneof![
        3 => (w.clone(), 0u8..6, 1i64..5000).prop_map(|(writer, card, amount)| Action::Purchase { writer, card, amount }),
        2 => (w.clone(), 0u8..6).prop_map(|(writer, card)| Action::Block { writer, card }),
        2 => (0u8..6).prop_map(|card| Action::Clear { card }),
        1 => (w.clone(), 0u8..6, 0u8..4).prop_map(|(writer, card, name)| Action::Holder { writer, card, name }),
        2 => (w, 0i64..5, 100i64..999).prop_map(|(writer, from, fen)| Action::Price { writer, from, fen }),
    ]
}

/// Everything the network writes, from one replica that knows every member; writes a
/// role may not make are simply not there.
fn world(net: &Net, actions: &[Action]) -> Vec<Entry> {
    let mut w = net.replica();
    let mut hlc = HlcClock::default();
    net.enrollments(&mut w, &mut hlc);
    let product: ProductId = "diesel-0".parse().unwrap();
    for (step, a) in actions.iter().enumerate() {
        let now = 1_000 + step as u64;
        let _ = match a.clone() {
            Action::Purchase {
                writer,
                card,
                amount,
            } => w
                .append(
                    &net.keys[writer],
                    hlc.tick(now),
                    purchase(net.site_of(writer), asn(card), step as u16, amount),
                )
                .map(Some),
            Action::Block { writer, card } => w
                .append(&net.keys[writer], hlc.tick(now), block(asn(card)))
                .map(Some),
            Action::Clear { card } => {
                let open = w
                    .views()
                    .blacklist
                    .card(&asn(card))
                    .map(|c| c.open_blocks().iter().map(|b| b.at).collect())
                    .unwrap_or_default();
                w.append(&net.hq, hlc.tick(now), clear(asn(card), open))
                    .map(Some)
            }
            Action::Holder { writer, card, name } => w
                .append(
                    &net.keys[writer],
                    hlc.tick(now),
                    holder(asn(card), &format!("h{name}")),
                )
                .map(Some),
            Action::Price { writer, from, fen } => {
                let doc = if writer == 0 {
                    DocName::PriceBook
                } else {
                    DocName::SitePrices(net.site_of(writer))
                };
                w.edit_doc(&net.keys[writer], hlc.tick(now), doc, |d| {
                    pricebook::schedule_price(d, &product, from, Money::from_fen(fen))
                })
            }
        };
    }
    all_entries(&w)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 12,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn store_and_replica_agree_on_any_delivery(
        actions in proptest::collection::vec(action(), 1..40),
        cuts in proptest::collection::vec(0usize..200, 0..6),
        dup_every in 2usize..7,
        seed in any::<u64>(),
    ) {
        let net = Net::new();
        let mut entries = world(&net, &actions);
        // A deterministic shuffle, and some entries twice.
        let mut x = seed | 1;
        for i in (1..entries.len()).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            entries.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let dups: Vec<Entry> = entries.iter().step_by(dup_every).cloned().collect();
        entries.extend(dups);
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (entries.len() + 1)).collect();
        cuts.push(entries.len());
        cuts.sort();

        let dir = tempfile::tempdir().unwrap();
        let store = net.store(dir.path(), 3);
        let mut reference = Replica::new(net.certs[0].clone()).unwrap();
        reference.admit(net.certs[3].clone()).unwrap();
        let mut from = 0;
        // Twice over: the second round delivers what gaps held back the first time.
        for _ in 0..2 {
            for &to in &cuts {
                let batch = entries[from.min(to)..to].to_vec();
                from = to;
                prop_assert_eq!(store.ingest(batch.clone()).unwrap(), reference.ingest(batch));
            }
            from = 0;
        }

        prop_assert_eq!(store.version_vector().unwrap(), reference.version_vector());
        let views = reference.views();
        for card in 0..6 {
            let a = asn(card);
            prop_assert_eq!(store.blacklist(&a).unwrap(), views.blacklist.card(&a).cloned());
            prop_assert_eq!(store.is_blocked(&a).unwrap(), views.blacklist.is_blocked(&a));
            prop_assert_eq!(store.card(&a).unwrap(), views.cards.get(&a).cloned());
            let history: Vec<_> = store.card_history(&a).unwrap().iter().map(|e| (e.hlc, e.entry_ref())).collect();
            let expected: Vec<_> = views.ledger.get(&a).map(|l| l.iter().copied().collect()).unwrap_or_default();
            prop_assert_eq!(history, expected);
        }
        for name in views.docs.names() {
            let stored = store.doc(name).unwrap().unwrap();
            prop_assert_eq!(pricebook::read(&stored), pricebook::read(views.docs.get(name).unwrap()));
        }
        store.verify_views().unwrap();
    }
}
