//! HQ verifies by itself: a running HQ (`hq::watch`) audits every batch that arrives,
//! over a real iroh link on loopback, and answers a cloned card with an alarm and a
//! network-wide block without anyone typing a command; the block reaches a shop at its
//! next sync and its till refuses the card.

mod hq_support;

use cardmesh_drivers::types::BcdDateTime;
use cardmesh_model::body::{AlarmKind, BlacklistEvent, Body};
use cardmesh_model::docs::{DocName, network};
use cardmesh_model::settlement::{Cycle, MerchantTerms};
use cardmesh_model::{CardAsn, FeedRange, Quantity};
use cardmesh_node::hq::watch::Watch;
use cardmesh_node::identity;
use cardmesh_node::link::NodeSync;
use cardmesh_node::link::iroh::IrohLink;
use cardmesh_node::pos::operators::pin_verifier;
use cardmesh_node::pos::{BasketLine, Pos, PosError};
use cardmesh_node::store::Store;
use hq_support::*;
use std::time::{Duration, Instant};

const OPERATOR_PIN: &str = "4321";

async fn endpoint(node: &Node) -> IrohLink {
    IrohLink::bind(
        NodeSync::new(node.store.clone(), node.key.clone()),
        "127.0.0.1:0".parse().unwrap(),
        clock(),
    )
    .await
    .unwrap()
}

fn alarms(store: &Store) -> Vec<(AlarmKind, Option<CardAsn>)> {
    store
        .alarms(100)
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.body {
            Body::Alarm(a) => Some((a.kind, a.asn)),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clone_synced_to_a_running_hq_is_blocked_without_a_command_and_refused_at_a_till() {
    let tmp = tempfile::tempdir().unwrap();
    let chain = Chain::new(tmp.path(), 2);
    let terms = MerchantTerms {
        name: "Chain".into(),
        cycle: Cycle::Daily,
        fee_bp: 60,
    };
    chain.register(&["north", "north"], &[("north", terms)]);
    chain
        .hq
        .store
        .edit_doc(DocName::Network, |d| {
            let op = operator(1, 1);
            network::set_operator_pin(d, &op, &pin_verifier(&op, OPERATOR_PIN))
        })
        .unwrap();
    let bday = day(2026, 11, 20);
    let (asn, chip) = chain.card(1);
    chain.load(
        &chip,
        20_000,
        BcdDateTime::new(2026, 11, 20, 8, 0, 0).unwrap(),
        bday,
    );
    // Everyone has the registry and the load before anything goes wrong.
    chain.sync_all();
    let card = CardAsn(asn.0);

    // HQ runs: its endpoint serves the shops and its verifier watches its store.
    let hq_link = endpoint(&chain.hq).await;
    let hq_addr = hq_link.local_addrs()[0];
    let hq_node = chain.hq.store.node_id();
    let watch = Watch::start(
        chain.hq.store.clone(),
        tac_key(&chain),
        clock(),
        Duration::from_secs(3600),
    )
    .unwrap();

    // Someone copies the chip; the copy and the original each buy with counter 0.
    let clone = tmp.path().join("clone.chip");
    std::fs::copy(&chip, &clone).unwrap();
    let a = chain.sell(
        (1, 1, 1),
        &chip,
        vec![item("cola", 2_000, 300)],
        BcdDateTime::new(2026, 11, 20, 10, 0, 0).unwrap(),
        bday,
    );
    let b = chain.sell(
        (2, 1, 1),
        &clone,
        vec![item("petrol-92", 10_000, 768)],
        BcdDateTime::new(2026, 11, 20, 10, 2, 0).unwrap(),
        bday,
    );
    assert_eq!(a.card_counter, b.card_counter);
    assert_ne!(a, b);

    // Each shop syncs with HQ over QUIC. Nobody runs an audit.
    let shop_links = [
        endpoint(&chain.shops[0]).await,
        endpoint(&chain.shops[1]).await,
    ];
    for link in &shop_links {
        link.sync_with(hq_node, hq_addr).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !chain.hq.store.is_blocked(&card).unwrap() {
        assert!(
            Instant::now() < deadline,
            "HQ did not block the cloned card by itself: {:?}",
            watch.outcome()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        alarms(&chain.hq.store),
        vec![(AlarmKind::CloneSuspected, Some(card))]
    );
    let hq_feed = chain
        .hq
        .store
        .entries(
            FeedRange {
                origin: hq_node,
                from: 1,
                to: u64::MAX,
            },
            usize::MAX,
        )
        .unwrap();
    let blocks: Vec<_> = hq_feed
        .iter()
        .filter(|e| matches!(&e.body, Body::Blacklist(BlacklistEvent::Block { asn, .. }) if *asn == card))
        .collect();
    assert_eq!(blocks.len(), 1, "one block, written by HQ itself");
    let answered = chain.hq.store.anomalies().unwrap();
    assert_eq!(answered.len(), 1);
    assert!(answered[0].1, "the clone is answered");
    assert!(watch.outcome().last_error.is_none());

    // Shop 1 has not synced since: it still sells to the card.
    assert!(!chain.shops[0].store.is_blocked(&card).unwrap());
    shop_links[0].sync_with(hq_node, hq_addr).await.unwrap();
    assert!(chain.shops[0].store.is_blocked(&card).unwrap());
    assert_eq!(
        alarms(&chain.shops[0].store),
        vec![(AlarmKind::CloneSuspected, Some(card))]
    );

    // At the till, the card is refused.
    let pos = Pos::open(
        &chain.shops[0].store,
        &chain.shops[0].key,
        shop_terminal(1, 1),
        clock(),
    )
    .unwrap();
    pos.login(&operator(1, 1), OPERATOR_PIN).unwrap();
    let mut sam = chain.sam(1, 1);
    let basket = [BasketLine {
        product: "cola".parse().unwrap(),
        quantity: Quantity::from_milli(1_000),
    }];
    let refused = pos.purchase(&mut purse(&chip), &mut sam, &basket, None);
    assert!(
        matches!(refused, Err(PosError::Blacklisted(c)) if c == card),
        "{refused:?}"
    );

    drop(watch);
    for link in shop_links {
        link.shutdown().await;
    }
    hq_link.shutdown().await;
    // The verifier left nothing half-done: a restarted HQ has nothing more to answer.
    let Chain { hq, shops, .. } = chain;
    drop(hq.store);
    let reopened = identity::open(&hq.dir, clock()).unwrap();
    assert!(
        reopened
            .anomalies()
            .unwrap()
            .iter()
            .all(|(_, answered)| *answered)
    );
    drop(shops);
}
