//! HQ and three sites replicating over each link type alone, across partitions, and by
//! a stick carried from shop to shop (the "mule"). Convergence means identical version
//! vectors and identical folded views on every node.

use cardmesh_model::Role;
use tests::*;

const SITES: [(&str, Role); 3] = [
    ("shop-a", Role::Store),
    ("shop-b", Role::Store),
    ("station-c", Role::Station),
];

/// Every node writes something: HQ a price and a block, each site purchases.
fn everyone_writes(mesh: &Mesh, round: u16) {
    set_price(
        mesh.hq(),
        "petrol-92",
        1_000 * i64::from(round),
        700 + i64::from(round),
    );
    mesh.hq().append_local(lost(card(round as u8))).unwrap();
    for i in 1..mesh.nodes.len() {
        let s = mesh.store(i);
        for k in 0..5 {
            let counter = round * 10 + k;
            s.append_local(purchase(s, card(40 + i as u8), counter, 100, 10_000))
                .unwrap();
        }
    }
}

#[test]
fn iroh_alone_relays_along_a_chain_of_sites() {
    let mesh = Mesh::new(&SITES);
    everyone_writes(&mesh, 1);
    // Only neighbours ever talk: hq - shop-a - shop-b - station-c.
    for (a, b) in [(0, 1), (1, 2), (2, 3), (2, 1), (1, 0)] {
        mesh.iroh(a, b).unwrap();
    }
    mesh.assert_converged();
    let hq_vv = mesh.hq().version_vector().unwrap();
    assert_eq!(
        hq_vv.get(&mesh.store(3).node_id()),
        5,
        "station-c's sales reached HQ two hops away"
    );
}

#[test]
fn serial_cables_alone_relay_along_a_chain_of_sites() {
    let mesh = Mesh::new(&SITES);
    everyone_writes(&mesh, 1);
    for (a, b) in [(1, 0), (2, 1), (3, 2), (2, 3), (1, 2), (0, 1)] {
        let call = mesh.cable(a, b).unwrap();
        assert!(call.line.bytes_sent > 0, "the session went over the line");
    }
    mesh.assert_converged();
}

#[test]
fn a_stick_alone_converges_the_network() {
    let mesh = Mesh::new(&SITES);
    everyone_writes(&mesh, 1);
    let stick = mesh.stick("field");
    // A field tour visits every node, then goes round again to bring back what it missed.
    for _ in 0..2 {
        for i in [1, 2, 3, 0] {
            mesh.visit(i, &stick);
        }
    }
    mesh.assert_converged();
}

#[test]
fn the_mule_carries_sales_to_hq_and_prices_and_blocks_back() {
    let mesh = Mesh::new(&SITES);
    // HQ's certificates must reach the sites before their sales can be trusted by others:
    // the stick carries HQ's feed, which enrolls them.
    let stick = mesh.stick("mule");
    mesh.visit(0, &stick);
    let (a, b) = (1, 2);
    for k in 0..20 {
        mesh.store(a)
            .append_local(purchase(mesh.store(a), card(50), k, 250, 50_000))
            .unwrap();
        mesh.store(b)
            .append_local(purchase(mesh.store(b), card(51), k, 300, 50_000))
            .unwrap();
    }
    mesh.visit(a, &stick);
    mesh.visit(b, &stick);
    let at_hq = mesh.visit(0, &stick);
    assert_eq!(at_hq.taken_in, 40, "HQ took both shops' sales: {at_hq:?}");
    let hq_vv = mesh.hq().version_vector().unwrap();
    assert_eq!(hq_vv.get(&mesh.store(a).node_id()), 20);
    assert_eq!(hq_vv.get(&mesh.store(b).node_id()), 20);

    // HQ answers: a new price and a lost card, back to shop-a by the same stick.
    set_price(mesh.hq(), "petrol-92", 5_000, 777);
    mesh.hq().append_local(lost(card(50))).unwrap();
    mesh.visit(0, &stick);
    assert!(!mesh.store(a).is_blocked(&card(50)).unwrap());
    mesh.visit(a, &stick);
    assert!(
        mesh.store(a).is_blocked(&card(50)).unwrap(),
        "the block came back by stick"
    );
    assert_eq!(
        price(mesh.store(a), "petrol-92", 6_000).map(|m| m.fen()),
        Some(777)
    );
    // Nothing of it reached station-c, which the stick never visited.
    assert!(!mesh.store(3).is_blocked(&card(50)).unwrap());
}

#[test]
fn partitions_that_worked_apart_heal_with_one_bridge() {
    let mesh = Mesh::new(&SITES);
    // Enrollment first, so the halves can check each other's entries.
    for i in 1..4 {
        mesh.iroh(0, i).unwrap();
    }
    // Two halves: {hq, shop-a} and {shop-b, station-c}, each busy and syncing inside.
    for round in 1..=3 {
        everyone_writes(&mesh, round);
        mesh.iroh(0, 1).unwrap();
        mesh.iroh(2, 3).unwrap();
    }
    let v = mesh.vectors();
    assert_eq!(v[0], v[1]);
    assert_eq!(v[2], v[3]);
    assert_ne!(v[0], v[2], "the halves did not see each other");
    let d = mesh.digests();
    assert_eq!(d[0], d[1]);
    assert_ne!(d[1], d[2], "the halves folded different views");
    // One link across heals it, and one more round inside each half spreads the rest.
    mesh.iroh(1, 2).unwrap();
    mesh.iroh(0, 1).unwrap();
    mesh.iroh(3, 2).unwrap();
    mesh.assert_converged();
}

#[test]
fn a_block_at_hq_is_known_at_a_site_after_one_session_on_any_link() {
    let mesh = Mesh::new(&SITES);
    let lost_card = card(77);
    mesh.hq().append_local(lost(lost_card)).unwrap();
    assert!(!mesh.store(1).is_blocked(&lost_card).unwrap());
    mesh.iroh(1, 0).unwrap();
    assert!(
        mesh.store(1).is_blocked(&lost_card).unwrap(),
        "one iroh session"
    );

    let stick = mesh.stick("one-visit");
    mesh.visit(0, &stick);
    mesh.visit(2, &stick);
    assert!(
        mesh.store(2).is_blocked(&lost_card).unwrap(),
        "one stick visit"
    );
}
