//! An interrupted purchase completed at another site: the `cardmesh` process of site A
//! (desk-1) is killed with SIGKILL after the card was debited and before it logged the
//! completion; its feed reaches site B (shop-1, not HQ), where the card is presented
//! and B writes the completion referring to A's intent. A also resolves it on its own
//! before hearing from B: once the feeds are exchanged both nodes hold one ledger entry
//! for the card counter, agree on every view, and count the sale once.

mod pos_support;

use cardmesh_drivers::card::VirtualCard;
use cardmesh_drivers::epurse::EPurse;
use cardmesh_drivers::reader::MemoryReader;
use cardmesh_model::body::{Body, TxnKind};
use cardmesh_model::report::totals::TxnClass;
use cardmesh_model::{CardAsn, Role, TerminalId};
use cardmesh_node::identity;
use cardmesh_node::pos::steps::STOP_AT_ENV;
use cardmesh_node::pos::{Pos, Settled};
use cardmesh_node::store::Store;
use pos_support::*;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

fn desk_pos(net: &Net, args: &[&str]) -> Command {
    let mut c = Command::new(cardmesh());
    c.arg("pos")
        .arg("--data")
        .arg(net.desk_dir.path())
        .arg("--terminal")
        .arg(TERMINAL)
        .args(args);
    c
}

fn run_ok(mut c: Command) {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{c:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn kill_at(mut c: Command, step: &str) {
    let mut child = c
        .env(STOP_AT_ENV, step)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    for line in BufReader::new(stderr).lines() {
        if line.unwrap().contains(&format!("stopped at step {step}")) {
            child.kill().unwrap();
            child.wait().unwrap();
            return;
        }
    }
    panic!("the child never reached {step}: {}", child.wait().unwrap());
}

/// Every entry one node holds of its own feed, delivered to the other.
fn sync(a: &Store, b: &Store) {
    deliver(a, b);
    deliver(b, a);
}

fn presented(pos: &Pos, file: &Path) -> Vec<Settled> {
    let mut purse = EPurse::new(MemoryReader::new(VirtualCard::open(file).unwrap()));
    pos.query(&mut purse).unwrap().settled
}

/// One ledger entry per consumed card counter, and the ledger's last balance is the
/// chip's.
fn assert_one_entry_per_counter(store: &Store, asn: CardAsn, chip_balance: i64) {
    let mut counters = BTreeSet::new();
    let mut last = None;
    for e in store.card_history(&asn).unwrap() {
        let t = e
            .body
            .card_txn()
            .expect("the ledger holds card transactions");
        let space = t.kind.counter_space().unwrap();
        assert!(
            counters.insert((space, t.card_counter)),
            "two ledger entries for counter {:?}",
            (space, t.card_counter)
        );
        last = Some(t.balance_after.fen());
    }
    assert_eq!(last, Some(chip_balance));
    assert!(store.pending_intents(&asn).unwrap().is_empty());
}

#[test]
fn a_purchase_killed_at_one_site_is_completed_once_at_another() {
    let net = Net::create();
    let shop_terminal: TerminalId = "000000000301".parse().unwrap();
    let shop_dir = net.add_site("shop-1", Role::Store, shop_terminal);
    let file = net.card_file(1, true);
    let asn = CardAsn(card(1).0);
    let card = ["--card-file", file.to_str().unwrap()];
    {
        // desk-1 learns of shop-1 (its certificate comes in HQ's feed).
        let desk = net.desk();
        deliver(&net.hq, &desk);
    }
    run_ok(desk_pos(&net, &["login", "admin-1", "--pin", "5555"]));
    run_ok(desk_pos(
        &net,
        &[
            &["load", "--amount", "100", "--pin", CARD_PIN][..],
            &card[..],
        ]
        .concat(),
    ));
    kill_at(
        desk_pos(
            &net,
            &[&["purchase", "--item", "cola:2"][..], &card[..]].concat(),
        ),
        "purchase:card-debited",
    );
    assert_eq!(VirtualCard::open(&file).unwrap().balance(), 9_400);

    let desk = net.desk();
    let shop = identity::open(&shop_dir, clock()).unwrap();
    let shop_key = identity::load_key(&shop_dir).unwrap();
    let pending = desk.pending_intents(&asn).unwrap();
    assert_eq!(pending.len(), 1, "one intent left by the kill");
    let intent = pending[0].entry_ref();
    deliver(&net.hq, &shop);
    deliver(&desk, &shop);

    // Site B settles A's intent when the card is presented there.
    let pos = Pos::open(&shop, &shop_key, shop_terminal, clock()).unwrap();
    pos.login(&"admin-1".parse().unwrap(), "5555").unwrap();
    let settled = presented(&pos, &file);
    let [
        Settled::Completed {
            intent: done,
            entry,
        },
    ] = settled[..]
    else {
        panic!("completed at site B: {settled:?}");
    };
    assert_eq!(done, intent);
    assert_eq!(entry.origin, shop.node_id());
    let completion = shop
        .card_history(&asn)
        .unwrap()
        .into_iter()
        .find(|e| e.entry_ref() == entry)
        .unwrap();
    let Body::Completion(c) = &completion.body else {
        panic!("a completion entry: {:?}", completion.body);
    };
    assert_eq!(c.intent, intent);
    assert_eq!(c.txn.kind, TxnKind::Purchase);
    assert_eq!(c.txn.site.as_str(), "desk-1", "the sale stays desk-1's");
    assert_ne!(c.txn.tac, [0; 4], "proven by the card");
    assert_one_entry_per_counter(&shop, asn, 9_400);

    // Site A, not having heard from B, settles it too when the card comes back.
    let desk_pos = Pos::open(&desk, &net.desk_key(), terminal(), clock()).unwrap();
    let settled = presented(&desk_pos, &file);
    assert!(
        matches!(settled[..], [Settled::Completed { .. }]),
        "{settled:?}"
    );

    // Both resolutions meet: one entry per counter on both nodes, same views.
    sync(&desk, &shop);
    for store in [&desk, &shop] {
        assert_one_entry_per_counter(store, asn, 9_400);
        store.verify_views().unwrap();
        let totals = store.network_totals().unwrap();
        assert_eq!(
            totals.kind(TxnClass::Purchase).count,
            1,
            "the sale counts once"
        );
        assert_eq!(totals.kind(TxnClass::Load).count, 1);
    }
    assert_eq!(
        desk.replica_digest().unwrap(),
        shop.replica_digest().unwrap(),
        "both sites agree"
    );
    // The card keeps working at B.
    let mut purse = EPurse::new(MemoryReader::new(VirtualCard::open(&file).unwrap()));
    let mut sam = cardmesh_node::pos::seq::till_sam(&shop, &shop_key, shop_terminal).unwrap();
    let line = [cardmesh_node::pos::BasketLine {
        product: "cola".parse().unwrap(),
        quantity: cardmesh_model::Quantity::pieces(1),
    }];
    pos.purchase(&mut purse, &mut sam, &line, None).unwrap();
    assert_one_entry_per_counter(&shop, asn, 9_100);
}
