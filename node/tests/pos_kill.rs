//! No transaction lost: the `cardmesh` process is killed with SIGKILL at every step of
//! a purchase and of a load (before the intent, after the intent, after the card moved
//! the money, after the completion); the card is then presented again, and the ledger
//! must equal the card: same balance, one entry per consumed card counter, nothing
//! pending.

mod pos_support;

use cardmesh_drivers::card::VirtualCard;
use cardmesh_drivers::constants::TxType;
use cardmesh_drivers::epurse::EPurse;
use cardmesh_drivers::reader::MemoryReader;
use cardmesh_model::CardAsn;
use cardmesh_model::body::{Body, CounterSpace, TxnKind};
use cardmesh_node::pos::steps::STOP_AT_ENV;
use pos_support::*;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};

fn pos(net: &Net, args: &[&str]) -> Command {
    let mut c = Command::new(cardmesh());
    c.arg("pos")
        .arg("--data")
        .arg(net.desk_dir.path())
        .arg("--terminal")
        .arg(TERMINAL)
        .args(args);
    c
}

fn run_ok(mut c: Command) -> String {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{:?} failed: {}",
        c,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs the command until it announces `step`, then SIGKILLs it.
fn kill_at(mut c: Command, step: &str) {
    let mut child = c
        .env(STOP_AT_ENV, step)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut seen = Vec::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        if line.contains(&format!("stopped at step {step}")) {
            child.kill().unwrap();
            let status = child.wait().unwrap();
            assert_eq!(status.signal(), Some(9), "killed with SIGKILL");
            return;
        }
        seen.push(line);
    }
    let status = child.wait().unwrap();
    panic!("the child never reached {step} ({status}): {seen:?}");
}

/// Ledger = card: the balance the ledger chains to is the chip's, every counter the
/// chip consumed has exactly one entry, and no intent is pending.
fn assert_ledger_equals_card(net: &Net, card_file: &Path, asn: CardAsn) {
    let chip = VirtualCard::open(card_file).unwrap();
    let chip_balance = i64::from(chip.balance());
    let mut purse = EPurse::new(MemoryReader::new(chip));
    purse.select().unwrap();
    let log = purse.read_records().unwrap();
    let store = net.desk();
    assert!(
        store.pending_intents(&asn).unwrap().is_empty(),
        "nothing pending"
    );
    let mut ledger_balance = 0i64;
    let mut counters = BTreeSet::new();
    for e in store.card_history(&asn).unwrap() {
        let Body::Card(t) = &e.body else { continue };
        let space = t.kind.counter_space().unwrap();
        assert!(
            counters.insert((space, t.card_counter)),
            "two entries for counter {:?}",
            (space, t.card_counter)
        );
        match t.kind {
            TxnKind::Load => ledger_balance += t.amount.fen(),
            TxnKind::Purchase => ledger_balance -= t.amount.fen(),
            ref k => panic!("unexpected {k:?}"),
        }
        assert_eq!(t.balance_after.fen(), ledger_balance, "balances chain");
    }
    assert_eq!(
        ledger_balance, chip_balance,
        "ledger balance = chip balance"
    );
    let on_card: BTreeSet<(CounterSpace, u16)> = log
        .iter()
        .map(|r| {
            let space = if r.tx_type == TxType::Load {
                CounterSpace::Online
            } else {
                CounterSpace::Offline
            };
            (space, r.counter)
        })
        .collect();
    assert_eq!(counters, on_card, "one ledger entry per consumed counter");
    store.verify_views().unwrap();
}

#[test]
fn killing_the_node_at_any_step_of_a_purchase_or_load_loses_nothing() {
    let net = Net::create();
    let file = net.card_file(1, true);
    let asn = CardAsn(card(1).0);
    let card = ["--card-file", file.to_str().unwrap()];
    run_ok(pos(&net, &["login", "admin-1", "--pin", "5555"]));
    run_ok(pos(
        &net,
        &[
            &["load", "--amount", "100", "--pin", CARD_PIN][..],
            &card[..],
        ]
        .concat(),
    ));
    assert_ledger_equals_card(&net, &file, asn);

    let purchase = [&["purchase", "--item", "cola:2"][..], &card[..]].concat();
    let load = [
        &["load", "--amount", "10", "--pin", CARD_PIN][..],
        &card[..],
    ]
    .concat();
    let steps = [
        (&purchase, "purchase:begun", 0),
        (&purchase, "purchase:intent-logged", 0),
        (&purchase, "purchase:card-debited", -600),
        (&purchase, "purchase:completed", -600),
        (&load, "load:begun", 0),
        (&load, "load:intent-logged", 0),
        (&load, "load:card-credited", 1000),
        (&load, "load:completed", 1000),
    ];
    let mut expected = 10_000i64;
    for (args, step, delta) in steps {
        kill_at(pos(&net, args), step);
        // Presenting the card again settles whatever the kill left.
        run_ok(pos(&net, &[&["balance"][..], &card[..]].concat()));
        expected += delta;
        assert_eq!(
            i64::from(VirtualCard::open(&file).unwrap().balance()),
            expected,
            "after a kill at {step}"
        );
        assert_ledger_equals_card(&net, &file, asn);
    }
    // The till still works after all that.
    run_ok(pos(&net, &purchase));
    assert_ledger_equals_card(&net, &file, asn);
}
