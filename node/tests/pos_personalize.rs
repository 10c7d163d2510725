//! Primary issue end to end: HQ personalizes blank chips from the manufacturer under
//! the batch's transport key, records them in the registry, and the card desk sells,
//! loads and spends them like any card. A wrong transport key, a card that is already
//! personalized, and a card pulled mid-way each give a clear error and lose nothing.

mod pos_support;

use cardmesh_drivers::card::VirtualCard;
use cardmesh_drivers::crypto::Key16;
use cardmesh_drivers::epurse::{EPurse, EpurseError};
use cardmesh_drivers::perso::TransportKey;
use cardmesh_drivers::reader::{CardReader, MemoryReader};
use cardmesh_drivers::types::{ChipSerial, Pin};
use cardmesh_model::body::{Body, CardChange, CardStatus, OperatorActionKind, TxnKind};
use cardmesh_model::{BusinessDay, CardAsn, Money, Quantity};
use cardmesh_node::keys;
use cardmesh_node::pos::{BasketLine, CardOrder, Pos, PosError};
use cardmesh_node::sam::software_sam;
use cardmesh_node::store::Store;
use pos_support::*;
use std::path::Path;

fn batch_key() -> TransportKey {
    TransportKey::new(Key16::from_bytes(*b"batch-2026-11-tk"))
}

fn serial(n: u8) -> ChipSerial {
    ChipSerial([0xC0, 0xFF, 0xEE, 0, 0, 0, 0, n])
}

fn blank_chip(n: u8) -> VirtualCard {
    VirtualCard::blank(serial(n), batch_key().for_chip(&serial(n)))
}

fn order() -> CardOrder {
    CardOrder {
        class: "standard".parse().unwrap(),
        expiry: BusinessDay {
            year: 2031,
            month: 12,
            day: 31,
        },
        pin: Pin::parse(CARD_PIN).unwrap(),
    }
}

/// HQ's terminal with `hq-admin` logged in, holding `transport` as its batch key.
fn hq_pos(net: &Net, transport: &TransportKey) -> Pos {
    keys::import_transport(&net.hq, &net.hq_key(), transport).unwrap();
    let pos = Pos::open(
        &net.hq,
        &net.hq_key(),
        HQ_TERMINAL.parse().unwrap(),
        clock(),
    )
    .unwrap();
    pos.login(&"hq-admin".parse().unwrap(), "9999").unwrap();
    pos
}

fn desk_pos(net: &Net, desk: &Store) -> Pos {
    let pos = Pos::open(desk, &net.desk_key(), terminal(), clock()).unwrap();
    pos.login(&"desk-op".parse().unwrap(), "4444").unwrap();
    pos
}

fn is_blank<R: CardReader>(purse: &mut EPurse<R>) -> bool {
    matches!(purse.select(), Err(EpurseError::NotPersonalized))
}

#[test]
fn blank_card_is_personalized_sold_loaded_and_spent_with_ledger_equal_to_card() {
    let net = Net::create();
    let hq = hq_pos(&net, &batch_key());
    let mut purse = EPurse::new(MemoryReader::new(blank_chip(1)));
    let done = hq.personalize(&mut purse, &order()).unwrap();
    assert_eq!(done.serial, Some(serial(1)));
    assert_eq!(
        done.asn.to_string(),
        "0000000000010001",
        "HQ terminal + 0001"
    );
    let record = net.hq.card(&done.asn).unwrap().unwrap();
    assert_eq!(record.status(), Some(&CardStatus::Blank));
    assert_eq!(record.issuer.unwrap().value, "hq".parse().unwrap());
    let history = hq.issuance_history(done.asn).unwrap();
    let primary = history.personalized.expect("primary issue in the history");
    assert_eq!(primary.entry_ref(), done.entry);
    assert!(matches!(
        primary.body,
        Body::CardRegistry(ref e) if matches!(e.change, CardChange::Personalized { .. })
    ));

    // The desk sells, loads and spends the new card as it does any card.
    let desk = net.desk();
    deliver(&net.hq, &desk);
    let pos = desk_pos(&net, &desk);
    let sold = pos.issue(&mut purse, None, Money::from_fen(2000)).unwrap();
    assert!(matches!(sold.txn.kind, TxnKind::Issue { .. }));
    let pin = Pin::parse(CARD_PIN).unwrap();
    pos.load(&mut purse, Money::from_fen(10_000), &pin).unwrap();
    pos.logout().unwrap();
    pos.login(&"cash-1".parse().unwrap(), "1111").unwrap();
    let mut sam = software_sam(&desk, &net.desk_key(), terminal()).unwrap();
    let basket = [BasketLine {
        product: "cola".parse().unwrap(),
        quantity: Quantity::pieces(2),
    }];
    let sale = pos.purchase(&mut purse, &mut sam, &basket, None).unwrap();
    assert_eq!(sale.txn.amount, Money::from_fen(600));

    purse.select().unwrap();
    let chip_balance = i64::from(purse.balance().unwrap());
    assert_eq!(chip_balance, 9400);
    let ledger: i64 = desk
        .card_history(&done.asn)
        .unwrap()
        .iter()
        .filter_map(|e| e.body.card_txn())
        .map(|t| match t.kind {
            TxnKind::Load => t.amount.fen(),
            TxnKind::Purchase => -t.amount.fen(),
            _ => 0,
        })
        .sum();
    assert_eq!(ledger, chip_balance, "ledger = card");
    assert!(desk.pending_intents(&done.asn).unwrap().is_empty());
    assert_eq!(
        purse.read_records().unwrap().len(),
        2,
        "one load, one purchase on the chip"
    );
}

#[test]
fn wrong_transport_key_is_refused_clearly_and_leaves_the_card_blank() {
    let net = Net::create();
    let wrong = TransportKey::new(Key16::from_bytes(*b"another-batch-tk"));
    let hq = hq_pos(&net, &wrong);
    let mut purse = EPurse::new(MemoryReader::new(blank_chip(2)));
    let err = hq.personalize(&mut purse, &order()).unwrap_err();
    assert!(
        matches!(
            err,
            PosError::Card(EpurseError::WrongTransportKey { tries_left: 2 })
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("transport key"), "{err}");
    assert!(is_blank(&mut purse));
    let refusals = operator_actions(&net.hq)
        .into_iter()
        .filter(|a| {
            matches!(a, OperatorActionKind::Refused { reason, .. } if reason == "wrong transport key")
        })
        .count();
    assert_eq!(refusals, 1, "the refusal is a signed entry");

    // With the batch's key it works, and no card number went to the registry before.
    let hq = hq_pos(&net, &batch_key());
    let done = hq.personalize(&mut purse, &order()).unwrap();
    assert_eq!(
        done.asn.to_string(),
        "0000000000010002",
        "the failed try used a number"
    );
    let first: CardAsn = "0000000000010001".parse().unwrap();
    assert!(net.hq.card(&first).unwrap().is_none());
    assert_eq!(purse.select().unwrap().asn.0, done.asn.0);
}

#[test]
fn personalized_card_is_refused_for_primary_issue() {
    let net = Net::create();
    let hq = hq_pos(&net, &batch_key());
    let desk = net.desk();
    let mut already = EPurse::new(MemoryReader::new(net.chip(
        &desk,
        7,
        false,
        [0x20, 0x31, 0x12, 0x31],
    )));
    let err = hq.personalize(&mut already, &order()).unwrap_err();
    assert!(
        matches!(err, PosError::AlreadyPersonalized(asn) if asn == CardAsn(card(7).0)),
        "{err:?}"
    );
    assert!(err.to_string().contains("already personalized"), "{err}");

    let mut purse = EPurse::new(MemoryReader::new(blank_chip(3)));
    let done = hq.personalize(&mut purse, &order()).unwrap();
    let err = hq.personalize(&mut purse, &order()).unwrap_err();
    assert!(matches!(err, PosError::AlreadyPersonalized(asn) if asn == done.asn));
}

#[test]
fn desk_without_master_keys_or_operator_without_the_right_cannot_personalize() {
    let net = Net::create();
    let desk = net.desk();
    keys::import_transport(&desk, &net.desk_key(), &batch_key()).unwrap();
    let pos = desk_pos(&net, &desk);
    let mut purse = EPurse::new(MemoryReader::new(blank_chip(4)));
    let err = pos.personalize(&mut purse, &order()).unwrap_err();
    assert!(matches!(err, PosError::MissingKey(_)), "{err:?}");
    assert!(err.to_string().contains("only HQ"), "{err}");
    pos.logout().unwrap();
    pos.login(&"cash-1".parse().unwrap(), "1111").unwrap();
    assert!(matches!(
        pos.personalize(&mut purse, &order()),
        Err(PosError::NotPermitted { .. })
    ));
    assert!(is_blank(&mut purse));
}

fn blank_file(path: &Path, n: u8) {
    VirtualCard::create_blank(path, serial(n), batch_key().for_chip(&serial(n))).unwrap();
}

#[test]
fn card_removed_mid_personalization_is_personalized_again_from_the_start() {
    let net = Net::create();
    let hq = hq_pos(&net, &batch_key());
    let path = net.path("blank-5.card");
    blank_file(&path, 5);
    // Pulled after the third key was written.
    let mut pulled =
        EPurse::new(Pulled::during(VirtualCard::open(&path).unwrap(), 0xD4, true).skipping(2));
    let err = hq.personalize(&mut pulled, &order()).unwrap_err();
    assert!(
        matches!(err, PosError::PersonalizationInterrupted),
        "{err:?}"
    );
    assert!(err.to_string().contains("still blank"), "{err}");

    let mut purse = EPurse::new(MemoryReader::new(VirtualCard::open(&path).unwrap()));
    assert!(is_blank(&mut purse));
    assert_eq!(purse.chip_status().unwrap().written, 0b0000_0111);
    let done = hq.personalize(&mut purse, &order()).unwrap();
    let again = VirtualCard::open(&path).unwrap();
    assert_eq!(again.asn().map(|a| a.0), Some(done.asn.0));
    let interrupted: CardAsn = "0000000000010001".parse().unwrap();
    assert!(net.hq.card(&interrupted).unwrap().is_none());
    assert_eq!(
        net.hq.card(&done.asn).unwrap().unwrap().status(),
        Some(&CardStatus::Blank)
    );
}

fn run(args: &[&str]) -> std::process::Output {
    std::process::Command::new(cardmesh())
        .args(args)
        .output()
        .unwrap()
}

fn run_ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `cardmesh pos` at HQ's terminal on the store in `data`, with `args`.
fn pos_command<'a>(data: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["pos", "--data", data, "--terminal", HQ_TERMINAL];
    all.extend_from_slice(args);
    all
}

#[test]
fn the_cli_imports_the_batch_key_makes_a_blank_card_and_personalizes_it() {
    let Net {
        hq, hq_dir, tmp, ..
    } = Net::create();
    // The child processes open HQ's store.
    drop(hq);
    let dir = tmp.path();
    let key_hex = "62617463682D323032362D31312D746B";
    let kcv: String = batch_key()
        .kcv()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    let key_file = dir.join("batch.key");
    std::fs::write(&key_file, format!("# batch 2026-11\n{key_hex}\n{kcv}\n")).unwrap();
    let (data, key_path) = (hq_dir.path().to_str().unwrap(), key_file.to_str().unwrap());
    let card = dir.join("new.card");
    let card = card.to_str().unwrap();

    let out = run_ok(&["keys", "import-transport", key_path, "--data", data]);
    assert!(out.contains(&kcv), "{out}");
    assert!(!out.contains(key_hex), "the key is never printed");
    run_ok(&[
        "blank-card",
        card,
        "--serial",
        "C0FFEE0000000009",
        "--transport-key",
        key_path,
    ]);
    let pos = |args: &[&str]| run(&pos_command(data, args));
    let pos_ok = |args: &[&str]| run_ok(&pos_command(data, args));
    assert!(
        pos(&["login", "hq-admin", "--pin", "9999"])
            .status
            .success()
    );
    let personalize = [
        "personalize",
        "--card-file",
        card,
        "--expiry",
        "2031-12-31",
        "--class",
        "gold",
        "--pin",
        CARD_PIN,
    ];
    let stdout = pos_ok(&personalize);
    assert!(
        stdout.contains("card 0000000000010001 personalized (chip C0FFEE0000000009)"),
        "{stdout}"
    );
    let again = pos(&personalize);
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("already personalized"), "{stderr}");

    // Killed after the chip was done, before its registry entry: presenting the chip
    // again records it.
    let second = dir.join("second.card");
    let second = second.to_str().unwrap();
    run_ok(&[
        "blank-card",
        second,
        "--serial",
        "C0FFEE0000000010",
        "--transport-key",
        key_path,
    ]);
    let mut retry = personalize;
    retry[2] = second;
    let mut killed = std::process::Command::new(cardmesh())
        .args(["pos", "--data", data, "--terminal", HQ_TERMINAL])
        .args(retry)
        .env("CARDMESH_POS_STOP_AT", "personalize:chip-done")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(killed.stderr.take().unwrap()));
    assert!(lines.any(|l| l.unwrap().contains("stopped at step personalize:chip-done")));
    killed.kill().unwrap();
    killed.wait().unwrap();
    let stdout = pos_ok(&retry);
    assert!(
        stdout.contains("card 0000000000010002 was personalized here before a crash: now recorded"),
        "{stdout}"
    );

    let stdout = pos_ok(&["issuance", "--card", "0000000000010001"]);
    assert!(
        stdout.contains("primary issue: personalized at hq, class gold, expires 2031-12-31"),
        "{stdout}"
    );
}
