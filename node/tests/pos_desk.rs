//! Money back and the card desk, end to end on one node with virtual cards: refunds
//! with a manager's authorization, reversals of the last sale, reprints, taking cards
//! back and replacing them, issuance history. Every bad input (not a manager, wrong
//! PIN, a refund above the sale, a card removed mid-operation) gives a clear error and
//! leaves ledger = card.

mod pos_support;

use cardmesh_drivers::card::VirtualCard;
use cardmesh_drivers::constants::TxType;
use cardmesh_drivers::epurse::{EPurse, EpurseError};
use cardmesh_drivers::reader::MemoryReader;
use cardmesh_drivers::types::Pin;
use cardmesh_model::body::{
    Body, CardStatus, CounterSpace, EntryRef, Holder, OperatorActionKind, TxnKind,
};
use cardmesh_model::{CardAsn, Money, Quantity, Role, TerminalId};
use cardmesh_node::identity;
use cardmesh_node::pos::receipt::{self, REPRINT_MARK};
use cardmesh_node::pos::{BasketLine, CreditRefusal, ManagerCode, Pos, PosError, Settled};
use cardmesh_node::sam::software_sam;
use cardmesh_node::store::Store;
use pos_support::*;
use std::collections::BTreeSet;
use std::time::Duration;

const VALID: [u8; 4] = [0x20, 0x31, 0x12, 0x31];

type Purse = EPurse<MemoryReader<VirtualCard>>;

fn line(product: &str, n: i64) -> Vec<BasketLine> {
    vec![BasketLine {
        product: product.parse().unwrap(),
        quantity: Quantity::pieces(n),
    }]
}

fn pin() -> Pin {
    Pin::parse(CARD_PIN).unwrap()
}

fn yuan(s: &str) -> Money {
    s.parse().unwrap()
}

fn asn(n: u8) -> CardAsn {
    CardAsn(card(n).0)
}

fn open_at(net: &Net, store: &Store, terminal: TerminalId) -> Pos {
    Pos::open(store, &net.desk_key(), terminal, clock()).unwrap()
}

fn login(pos: &Pos, id: &str) {
    let pin = OPERATORS.iter().find(|o| o.0 == id).unwrap().2;
    pos.login(&id.parse().unwrap(), pin).unwrap();
}

fn manager(id: &str, pin: &str) -> ManagerCode {
    ManagerCode {
        operator: id.parse().unwrap(),
        pin: pin.into(),
    }
}

fn purse(chip: VirtualCard) -> Purse {
    EPurse::new(MemoryReader::new(chip))
}

fn balance(p: &mut Purse) -> i64 {
    p.select().unwrap();
    i64::from(p.balance().unwrap())
}

/// Ledger = card: every counter the chip consumed has exactly one ledger entry, the
/// ledger's balances chain to the chip's balance, and nothing is pending.
fn assert_ledger_equals_card(store: &Store, p: &mut Purse, asn: CardAsn) {
    let chip_balance = balance(p);
    let log = p.read_records().unwrap();
    assert!(store.pending_intents(&asn).unwrap().is_empty(), "pending");
    let mut ledger = 0i64;
    let mut counters = BTreeSet::new();
    for e in store.card_history(&asn).unwrap() {
        let Body::Card(t) = &e.body else { continue };
        let Some(space) = t.kind.counter_space() else {
            continue;
        };
        assert!(
            counters.insert((space, t.card_counter)),
            "two entries for {:?}",
            (space, t.card_counter)
        );
        match t.kind {
            TxnKind::Load | TxnKind::Refund | TxnKind::Reversal => ledger += t.amount.fen(),
            TxnKind::Purchase | TxnKind::Return { .. } => ledger -= t.amount.fen(),
            ref k => panic!("unexpected {k:?}"),
        }
        assert_eq!(t.balance_after.fen(), ledger, "balances chain");
    }
    assert_eq!(ledger, chip_balance, "ledger balance = chip balance");
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
}

const CREDIT_FOR_LOAD: u8 = 0x52;
const DEBIT_FOR_PURCHASE: u8 = 0x54;

#[test]
fn a_refund_needs_a_manager_never_exceeds_the_sale_and_leaves_ledger_equal_to_card() {
    let net = Net::create();
    let store = net.desk();
    let pos = open_at(&net, &store, terminal());
    let mut sam = software_sam(&store, &net.desk_key(), terminal()).unwrap();
    login(&pos, "admin-1");
    let mut p = purse(net.chip(&store, 1, true, VALID));
    let mut other = purse(net.chip(&store, 2, true, VALID));
    pos.load(&mut p, yuan("100"), &pin()).unwrap();
    pos.load(&mut other, yuan("100"), &pin()).unwrap();
    login(&pos, "cash-1");
    let sale = pos
        .purchase(&mut p, &mut sam, &line("cola", 10), None)
        .unwrap();
    assert_eq!(sale.txn.amount, yuan("30"));
    let other_sale = pos
        .purchase(&mut other, &mut sam, &line("cola", 1), None)
        .unwrap();

    // A cashier alone may not; a finance clerk or a cashier is no manager; a wrong
    // manager PIN is refused.
    let refund = |p: &mut Purse, amount: &str, code: Option<&ManagerCode>| {
        pos.refund(p, sale.entry, yuan(amount), &pin(), code)
    };
    let err = refund(&mut p, "10", None).unwrap_err();
    assert!(matches!(err, PosError::NotPermitted { .. }), "{err}");
    let err = refund(&mut p, "10", Some(&manager("fin-1", "3333"))).unwrap_err();
    assert!(matches!(err, PosError::NotAManager { .. }), "{err}");
    let err = refund(&mut p, "10", Some(&manager("cash-1", "1111"))).unwrap_err();
    assert!(matches!(err, PosError::NotAManager { .. }), "{err}");
    let err = refund(&mut p, "10", Some(&manager("mgr-1", "0000"))).unwrap_err();
    assert!(matches!(err, PosError::BadOperatorPin(_)), "{err}");
    assert_eq!(balance(&mut p), 7_000);

    let mgr = manager("mgr-1", "2222");
    let r = refund(&mut p, "10", Some(&mgr)).unwrap();
    assert_eq!(r.txn.kind, TxnKind::Refund);
    assert_eq!(r.txn.refers_to, Some(sale.entry));
    assert_eq!(r.txn.operator, Some("cash-1".parse().unwrap()));
    assert_eq!(balance(&mut p), 8_000);
    assert!(
        operator_actions(&store)
            .iter()
            .any(|a| matches!(a, OperatorActionKind::Approved { what } if what.contains("refund")))
    );

    // Above what is left of the sale, with another card, a wrong card PIN: refused.
    let err = refund(&mut p, "20.01", Some(&mgr)).unwrap_err();
    assert!(
        matches!(err, PosError::Credit(CreditRefusal::OverRefund { left, .. }) if left == yuan("20")),
        "{err}"
    );
    let err = refund(&mut other, "1", Some(&mgr)).unwrap_err();
    assert!(
        matches!(err, PosError::Credit(CreditRefusal::OtherCard { .. })),
        "{err}"
    );
    let err = pos
        .refund(
            &mut p,
            sale.entry,
            yuan("1"),
            &Pin::parse("999999").unwrap(),
            Some(&mgr),
        )
        .unwrap_err();
    assert!(
        matches!(err, PosError::Card(EpurseError::WrongPin { .. })),
        "{err}"
    );
    let err = pos
        .refund(&mut p, other_sale.entry, yuan("1"), &pin(), Some(&mgr))
        .unwrap_err();
    assert!(
        matches!(err, PosError::Credit(CreditRefusal::OtherCard { .. })),
        "{err}"
    );
    assert_eq!(balance(&mut p), 8_000);
    assert_ledger_equals_card(&store, &mut p, asn(1));

    // The card pulled during the credit: settled on its next presentation, and the
    // pending credit still counts against what is left.
    let chip = p.into_reader().remove().unwrap();
    let mut pulled = EPurse::new(Pulled::during(chip, CREDIT_FOR_LOAD, true));
    let err = pos
        .refund(&mut pulled, sale.entry, yuan("5"), &pin(), Some(&mgr))
        .unwrap_err();
    assert!(matches!(err, PosError::Interrupted(_)), "{err}");
    let mut p = purse(pulled.into_reader().chip());
    let err = refund(&mut p, "15.01", Some(&mgr)).unwrap_err();
    assert!(
        matches!(err, PosError::Credit(CreditRefusal::OverRefund { left, .. }) if left == yuan("15")),
        "{err}"
    );
    assert_eq!(balance(&mut p), 8_500);
    assert_ledger_equals_card(&store, &mut p, asn(1));

    // A manager logged in needs no code; the rest of the sale, then nothing more.
    login(&pos, "mgr-1");
    refund(&mut p, "15", None).unwrap();
    let err = refund(&mut p, "0.01", None).unwrap_err();
    assert!(
        matches!(err, PosError::Credit(CreditRefusal::OverRefund { left, .. }) if left == Money::ZERO),
        "{err}"
    );
    assert_eq!(balance(&mut p), 10_000);
    assert_ledger_equals_card(&store, &mut p, asn(1));
    store.verify_views().unwrap();
}

#[test]
fn a_node_without_the_load_key_refuses_refunds_and_names_the_card_desks() {
    let net = Net::create();
    let shop_terminal: TerminalId = "000000000301".parse().unwrap();
    let shop_dir = net.add_site("shop-1", Role::Store, shop_terminal);
    let shop = identity::open(&shop_dir, clock()).unwrap();
    let shop_key = identity::load_key(&shop_dir).unwrap();
    let desk = net.desk();
    let mut p = purse(net.chip(&desk, 3, true, VALID));
    let desk_pos = open_at(&net, &desk, terminal());
    login(&desk_pos, "admin-1");
    desk_pos.load(&mut p, yuan("50"), &pin()).unwrap();
    deliver(&net.hq, &shop);

    let pos = Pos::open(&shop, &shop_key, shop_terminal, clock()).unwrap();
    login(&pos, "admin-1");
    let mut sam = software_sam(&shop, &shop_key, shop_terminal).unwrap();
    let sale = pos
        .purchase(&mut p, &mut sam, &line("cola", 1), None)
        .unwrap();
    let err = pos
        .refund(&mut p, sale.entry, yuan("3"), &pin(), None)
        .unwrap_err();
    assert!(
        matches!(&err, PosError::NoLoadKey { desks, .. } if desks.contains("desk-1") && !desks.contains("shop-1")),
        "{err}"
    );
    assert!(err.to_string().contains("desk-1"), "{err}");
    let err = pos.reverse(&mut p, &pin(), None).unwrap_err();
    assert!(matches!(err, PosError::NoLoadKey { .. }), "{err}");
    assert_eq!(balance(&mut p), 4_700);
}

#[test]
fn a_reversal_gives_back_the_last_sale_at_its_terminal_within_the_window() {
    let net = Net::create();
    let store = net.desk();
    let mut pos = open_at(&net, &store, till(0));
    let other_till = open_at(&net, &store, till(1));
    let mut sam = software_sam(&store, &net.desk_key(), till(0)).unwrap();
    login(&pos, "admin-1");
    login(&other_till, "admin-1");
    let mut p = purse(net.chip(&store, 4, true, VALID));
    pos.load(&mut p, yuan("100"), &pin()).unwrap();

    // Nothing to reverse: the last transaction is a load.
    let err = pos.reverse(&mut p, &pin(), None).unwrap_err();
    assert!(
        matches!(err, PosError::Credit(CreditRefusal::NotLastTransaction)),
        "{err}"
    );
    let sale = pos
        .purchase(&mut p, &mut sam, &line("ticket", 1), None)
        .unwrap();
    let err = other_till.reverse(&mut p, &pin(), None).unwrap_err();
    assert!(
        matches!(err, PosError::Credit(CreditRefusal::OtherTerminal { .. })),
        "{err}"
    );
    pos.set_reversal_window(Duration::ZERO);
    std::thread::sleep(Duration::from_millis(5));
    let err = pos.reverse(&mut p, &pin(), None).unwrap_err();
    assert!(
        matches!(err, PosError::Credit(CreditRefusal::WindowPassed { .. })),
        "{err}"
    );
    pos.set_reversal_window(Duration::from_secs(600));
    login(&pos, "cash-1");
    let err = pos.reverse(&mut p, &pin(), None).unwrap_err();
    assert!(matches!(err, PosError::NotPermitted { .. }), "{err}");
    let r = pos
        .reverse(&mut p, &pin(), Some(&manager("mgr-1", "2222")))
        .unwrap();
    assert_eq!(r.txn.kind, TxnKind::Reversal);
    assert_eq!(r.txn.amount, yuan("45"));
    assert_eq!(r.txn.refers_to, Some(sale.entry));
    assert_eq!(balance(&mut p), 10_000);
    // Reversed once only: the card's last transaction is now the reversal itself.
    let err = pos
        .reverse(&mut p, &pin(), Some(&manager("mgr-1", "2222")))
        .unwrap_err();
    assert!(
        matches!(err, PosError::Credit(CreditRefusal::NotLastTransaction)),
        "{err}"
    );
    // A partly refunded sale is not reversed in full on top.
    let sale = pos
        .purchase(&mut p, &mut sam, &line("cola", 1), None)
        .unwrap();
    login(&pos, "mgr-1");
    pos.refund(&mut p, sale.entry, yuan("1"), &pin(), None)
        .unwrap();
    let err = pos.reverse(&mut p, &pin(), None).unwrap_err();
    assert!(
        matches!(err, PosError::Credit(CreditRefusal::NotLastTransaction)),
        "{err}"
    );
    assert_ledger_equals_card(&store, &mut p, asn(4));
}

#[test]
fn a_reprint_rebuilds_the_receipt_from_the_ledger_marked_reprint() {
    let net = Net::create();
    let store = net.desk();
    let pos = open_at(&net, &store, terminal());
    let mut sam = software_sam(&store, &net.desk_key(), terminal()).unwrap();
    login(&pos, "admin-1");
    let mut p = purse(net.chip(&store, 5, true, VALID));
    let load = pos.load(&mut p, yuan("100"), &pin()).unwrap();
    let first = pos
        .purchase(&mut p, &mut sam, &line("cola", 2), None)
        .unwrap();
    let last = pos
        .purchase(&mut p, &mut sam, &line("ticket", 1), None)
        .unwrap();
    login(&pos, "cash-1");

    let again = pos.reprint(None, None).unwrap();
    assert_eq!((again.entry, &again.txn), (last.entry, &last.txn));
    let again = pos.reprint(None, Some(first.txn.term_seq)).unwrap();
    assert_eq!((again.entry, &again.txn), (first.entry, &first.txn));
    let again = pos.reprint(None, Some(load.txn.term_seq)).unwrap();
    assert_eq!(again.entry, load.entry);
    assert_ne!(load.txn.term_seq, first.txn.term_seq);

    let text = receipt::lines(&again, true);
    assert_eq!(text.first().map(String::as_str), Some(REPRINT_MARK));
    assert_eq!(text.last().map(String::as_str), Some(REPRINT_MARK));
    assert!(
        !receipt::lines(&again, false)
            .iter()
            .any(|l| l == REPRINT_MARK)
    );
    assert_eq!(
        receipt::lines(&again, true)[1..text.len() - 1],
        receipt::lines(&again, false)[..]
    );

    let err = pos.reprint(None, Some(999_999)).unwrap_err();
    assert!(matches!(err, PosError::NoSuchReceipt { .. }), "{err}");
    let err = pos.reprint(Some(till(5)), None).unwrap_err();
    assert!(matches!(err, PosError::NoSuchReceipt { .. }), "{err}");
    let reprints = operator_actions(&store)
        .into_iter()
        .filter(|a| matches!(a, OperatorActionKind::Reprinted { .. }))
        .count();
    assert_eq!(reprints, 3, "every reprint is audited");
}

fn sell_blank(pos: &Pos, chip: VirtualCard, deposit: &str) -> Purse {
    let mut p = purse(chip);
    pos.issue(
        &mut p,
        Some(Holder {
            name: "Li Na".into(),
            id_number: "110101199202020000".into(),
            phone: "13900000000".into(),
        }),
        yuan(deposit),
    )
    .unwrap();
    p
}

#[test]
fn returning_a_card_pays_balance_and_deposit_empties_blocks_and_marks_it_returned() {
    let net = Net::create();
    let store = net.desk();
    let pos = open_at(&net, &store, terminal());
    let mut sam = software_sam(&store, &net.desk_key(), terminal()).unwrap();
    login(&pos, "admin-1");
    let mut p = sell_blank(&pos, net.blank_chip(&store, 6), "20");
    pos.load(&mut p, yuan("50"), &pin()).unwrap();
    pos.purchase(&mut p, &mut sam, &line("cola", 1), None)
        .unwrap();

    login(&pos, "cash-1");
    let err = pos.return_card(&mut p, &mut sam).unwrap_err();
    assert!(matches!(err, PosError::NotPermitted { .. }), "{err}");
    login(&pos, "desk-op");

    // Pulled during the debit before the card did it: nothing happened, and the next
    // presentation says so.
    let chip = p.into_reader().remove().unwrap();
    let mut pulled = EPurse::new(Pulled::during(chip, DEBIT_FOR_PURCHASE, false));
    let err = pos.return_card(&mut pulled, &mut sam).unwrap_err();
    assert!(matches!(err, PosError::Interrupted(_)), "{err}");
    let mut p = purse(pulled.into_reader().chip());
    let view = pos.query(&mut p).unwrap();
    assert!(matches!(view.settled[..], [Settled::Voided { .. }]));
    assert_eq!(balance(&mut p), 4_700);
    assert_eq!(
        store.card(&asn(6)).unwrap().unwrap().status(),
        Some(&CardStatus::Active)
    );

    let r = pos.return_card(&mut p, &mut sam).unwrap();
    assert_eq!(
        (r.balance, r.deposit, r.cash),
        (yuan("47"), yuan("20"), yuan("67"))
    );
    assert_eq!(r.receipt.txn.balance_after, Money::ZERO);
    assert!(matches!(r.receipt.txn.kind, TxnKind::Return { deposit } if deposit == yuan("20")));
    assert_eq!(
        store.card(&asn(6)).unwrap().unwrap().status(),
        Some(&CardStatus::Returned)
    );
    // The chip is empty and blocked; the ledger says the same.
    let mut check = purse(p.into_reader().remove().unwrap());
    assert!(matches!(
        check.select(),
        Err(EpurseError::ApplicationBlocked { .. })
    ));
    let chip = check.into_reader().remove().unwrap();
    assert_eq!(chip.balance(), 0);
    let err = pos.return_card(&mut purse(chip), &mut sam).unwrap_err();
    assert!(matches!(err, PosError::Blacklisted(_)), "{err}");
    let returns = store
        .card_history(&asn(6))
        .unwrap()
        .into_iter()
        .filter(|e| matches!(&e.body, Body::Card(t) if matches!(t.kind, TxnKind::Return { .. })))
        .count();
    assert_eq!(returns, 1, "paid out once");
    store.verify_views().unwrap();
}

#[test]
fn replacing_a_card_moves_its_balance_blocks_the_old_one_and_links_them() {
    let net = Net::create();
    let store = net.desk();
    let pos = open_at(&net, &store, terminal());
    let mut sam = software_sam(&store, &net.desk_key(), terminal()).unwrap();
    login(&pos, "admin-1");
    let mut old = sell_blank(&pos, net.blank_chip(&store, 7), "20");
    pos.load(&mut old, yuan("80"), &pin()).unwrap();
    pos.purchase(&mut old, &mut sam, &line("cola", 1), None)
        .unwrap();

    // Present: the balance is read from the chip, which is blocked.
    login(&pos, "cash-1");
    let mut new = purse(net.blank_chip(&store, 8));
    let err = pos
        .replace_card(asn(7), Some(&mut old), &mut new, &pin())
        .unwrap_err();
    assert!(matches!(err, PosError::NotPermitted { .. }), "{err}");
    login(&pos, "desk-op");
    let err = pos
        .replace_card(asn(7), Some(&mut old), &mut old_copy(&net, &store), &pin())
        .unwrap_err();
    assert!(matches!(err, PosError::CardNotActive { .. }), "{err}");
    let r = pos
        .replace_card(asn(7), Some(&mut old), &mut new, &pin())
        .unwrap();
    assert_eq!(r.moved, yuan("77"));
    assert_eq!(balance(&mut new), 7_700);
    assert!(matches!(
        old.select(),
        Err(EpurseError::ApplicationBlocked { .. })
    ));
    assert!(store.is_blocked(&asn(7)).unwrap());
    let rec = store.card(&asn(7)).unwrap().unwrap();
    assert_eq!(rec.status(), Some(&CardStatus::ReplacedBy(asn(8))));
    let rec = store.card(&asn(8)).unwrap().unwrap();
    assert_eq!(rec.status(), Some(&CardStatus::Active));
    assert_eq!(
        rec.holder.unwrap().value.unwrap().name,
        "Li Na",
        "the holder moves to the new card"
    );
    assert_eq!(
        r.credit.as_ref().unwrap().txn.refers_to,
        Some(r.replace),
        "the credit names the replacement"
    );
    assert_ledger_equals_card(&store, &mut new, asn(8));
    // The old card cannot be used; the new one can, and a return pays its deposit.
    login(&pos, "admin-1");
    let err = pos
        .purchase(&mut old, &mut sam, &line("cola", 1), None)
        .unwrap_err();
    assert!(matches!(err, PosError::Blacklisted(_)), "{err}");
    let back = pos.return_card(&mut new, &mut sam).unwrap();
    assert_eq!((back.balance, back.deposit), (yuan("77"), yuan("20")));

    // Lost (not here), and the new card pulled during the credit: the balance comes
    // from the ledger, and running the replacement again finishes it, crediting once.
    let mut lost = sell_blank(&pos, net.blank_chip(&store, 9), "0");
    pos.load(&mut lost, yuan("30"), &pin()).unwrap();
    let chip = net.blank_chip(&store, 10);
    let mut pulled = EPurse::new(Pulled::during(chip, CREDIT_FOR_LOAD, true));
    let err = pos
        .replace_card::<MemoryReader<VirtualCard>, _>(asn(9), None, &mut pulled, &pin())
        .unwrap_err();
    assert!(matches!(err, PosError::Interrupted(_)), "{err}");
    assert!(
        store.is_blocked(&asn(9)).unwrap(),
        "blocked before the move"
    );
    let mut new = purse(pulled.into_reader().chip());
    let err = pos
        .replace_card::<MemoryReader<VirtualCard>, _>(
            asn(9),
            None,
            &mut purse(net.blank_chip(&store, 11)),
            &pin(),
        )
        .unwrap_err();
    assert!(matches!(err, PosError::ReplacedAlready { .. }), "{err}");
    let r = pos
        .replace_card::<MemoryReader<VirtualCard>, _>(asn(9), None, &mut new, &pin())
        .unwrap();
    assert!(
        r.credit.is_none(),
        "the interrupted credit was settled, not repeated"
    );
    assert_eq!(r.moved, yuan("30"));
    assert_eq!(balance(&mut new), 3_000);
    assert_eq!(
        store.card(&asn(9)).unwrap().unwrap().status(),
        Some(&CardStatus::ReplacedBy(asn(10)))
    );
    assert_ledger_equals_card(&store, &mut new, asn(10));

    // Issuance history: per card, and this site's day.
    let h = pos.issuance_history(asn(7)).unwrap();
    let kinds: Vec<&str> = h
        .entries
        .iter()
        .filter_map(|e| match &e.body {
            Body::Card(t) => Some(t.kind.name()),
            _ => None,
        })
        .collect();
    assert_eq!(kinds, ["issue", "replace"]);
    let h = pos.issuance_history(asn(8)).unwrap();
    assert_eq!(h.entries.len(), 2, "the credit from card 7 and the return");
    let day = pos.reprint(None, None).unwrap().txn.business_day;
    let today: Vec<EntryRef> = pos
        .issuances_on(day)
        .unwrap()
        .iter()
        .map(|e| e.entry_ref())
        .collect();
    assert_eq!(
        today.len(),
        2 + 2 + 2 + 1,
        "2 cards sold, 2 replaced, 2 replacement credits, 1 return"
    );
    store.verify_views().unwrap();
}

/// A card already active (sold): not a blank card to replace onto.
fn old_copy(net: &Net, store: &Store) -> Purse {
    purse(net.chip(store, 12, true, VALID))
}

fn cli(net: &Net, args: &[&str]) -> std::process::Output {
    std::process::Command::new(cardmesh())
        .arg("pos")
        .arg("--data")
        .arg(net.desk_dir.path())
        .arg("--terminal")
        .arg(TERMINAL)
        .args(args)
        .output()
        .unwrap()
}

fn cli_ok(net: &Net, args: &[&str]) -> String {
    let out = cli(net, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn cli_err(net: &Net, args: &[&str]) -> String {
    let out = cli(net, args);
    assert!(!out.status.success(), "{args:?} should fail");
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn the_cli_refunds_reverses_reprints_returns_and_replaces() {
    let net = Net::create();
    let file = net.card_file(1, true);
    let new_file = net.blank_card_file(2);
    let card = file.to_str().unwrap();
    cli_ok(&net, &["login", "cash-1", "--pin", "1111"]);
    let err = cli_err(
        &net,
        &[
            "load",
            "--card-file",
            card,
            "--amount",
            "100",
            "--pin",
            CARD_PIN,
        ],
    );
    assert!(err.contains("may not do a load"), "{err}");
    cli_ok(&net, &["login", "admin-1", "--pin", "5555"]);
    cli_ok(
        &net,
        &[
            "load",
            "--card-file",
            card,
            "--amount",
            "100",
            "--pin",
            CARD_PIN,
        ],
    );
    cli_ok(&net, &["login", "cash-1", "--pin", "1111"]);
    let sale = cli_ok(&net, &["purchase", "--card-file", card, "--item", "cola:3"]);
    let seq = sale
        .split_whitespace()
        .skip_while(|w| *w != "seq")
        .nth(1)
        .unwrap()
        .to_string();

    // Reprint: the same receipt, marked.
    let again = cli_ok(&net, &["reprint", "--seq", &seq]);
    assert!(again.starts_with(REPRINT_MARK), "{again}");
    assert!(again.contains(sale.lines().next().unwrap()), "{again}");

    // Refund: a manager's code, never above the sale.
    let refund = |amount: &str, mgr_pin: &str| {
        cli(
            &net,
            &[
                "refund",
                "--card-file",
                card,
                "--sale-seq",
                &seq,
                "--amount",
                amount,
                "--pin",
                CARD_PIN,
                "--manager",
                "mgr-1",
                "--manager-pin",
                mgr_pin,
            ],
        )
    };
    let err = String::from_utf8(refund("1", "0000").stderr).unwrap();
    assert!(err.contains("wrong operator PIN for mgr-1"), "{err}");
    let err = String::from_utf8(refund("9.01", "2222").stderr).unwrap();
    assert!(err.contains("only 9.00 of that sale is left"), "{err}");
    let out = refund("4", "2222");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = cli_err(
        &net,
        &[
            "reverse",
            "--card-file",
            card,
            "--pin",
            CARD_PIN,
            "--manager",
            "mgr-1",
            "--manager-pin",
            "2222",
        ],
    );
    assert!(err.contains("last transaction is not that sale"), "{err}");
    assert_eq!(VirtualCard::open(&file).unwrap().balance(), 9_500);

    // Return: balance paid out, card emptied.
    cli_ok(&net, &["login", "desk-op", "--pin", "4444"]);
    let out = cli_ok(&net, &["return-card", "--card-file", card]);
    assert!(out.contains("pay the customer 95.00 in cash"), "{out}");
    assert_eq!(VirtualCard::open(&file).unwrap().balance(), 0);
    let history = cli_ok(&net, &["issuance", "--card", &asn(1).to_string()]);
    assert!(history.contains("Returned"), "{history}");
    assert!(history.contains(" return "), "{history}");

    // Replace a lost card (not here) with the blank one: its balance moves.
    let lost = net.card_file(3, true);
    cli_ok(&net, &["login", "admin-1", "--pin", "5555"]);
    cli_ok(
        &net,
        &[
            "load",
            "--card-file",
            lost.to_str().unwrap(),
            "--amount",
            "12.34",
            "--pin",
            CARD_PIN,
        ],
    );
    let out = cli_ok(
        &net,
        &[
            "replace-card",
            &asn(3).to_string(),
            "--card-file",
            new_file.to_str().unwrap(),
            "--pin",
            CARD_PIN,
        ],
    );
    assert!(out.contains("12.34 moved"), "{out}");
    assert_eq!(VirtualCard::open(&new_file).unwrap().balance(), 1_234);
    let err = cli_err(
        &net,
        &[
            "purchase",
            "--card-file",
            lost.to_str().unwrap(),
            "--item",
            "cola:1",
        ],
    );
    assert!(err.contains("blacklisted"), "{err}");
}
