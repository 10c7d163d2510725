//! POS operations end to end on one node, with virtual cards through the reader
//! abstraction: purchases and loads with their ledger entries and TACs, the blacklist,
//! operators and their permissions, risk limits, bad inputs and a card pulled away
//! mid-debit. Each failure must leave ledger and card as they were.

mod pos_support;

use cardmesh_drivers::card::VirtualCard;
use cardmesh_drivers::constants::TxType;
use cardmesh_drivers::crypto::{debit_tac, mac_eq};
use cardmesh_drivers::epurse::{EPurse, EpurseError};
use cardmesh_drivers::reader::MemoryReader;
use cardmesh_drivers::types::{Mac4, Pin, TerminalId as CardTerminalId};
use cardmesh_model::body::{AlarmKind, Body, OperatorActionKind, TxnKind};
use cardmesh_model::{CardAsn, Money, Quantity};
use cardmesh_node::keys;
use cardmesh_node::pos::risk::Refusal;
use cardmesh_node::pos::{BasketLine, Pos, PosError, Settled};
use cardmesh_node::sam::software_sam;
use cardmesh_node::store::Store;
use pos_support::*;

const VALID: [u8; 4] = [0x20, 0x31, 0x12, 0x31];

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

fn open(net: &Net, store: &Store) -> Pos {
    Pos::open(store, &net.desk_key(), terminal(), clock()).unwrap()
}

fn login(pos: &Pos, id: &str) {
    let pin = OPERATORS.iter().find(|o| o.0 == id).unwrap().2;
    pos.login(&id.parse().unwrap(), pin).unwrap();
}

fn purse(chip: VirtualCard) -> EPurse<MemoryReader<VirtualCard>> {
    EPurse::new(MemoryReader::new(chip))
}

fn card_entries(store: &Store, asn: CardAsn) -> usize {
    store
        .card_history(&asn)
        .unwrap()
        .iter()
        .filter(|e| matches!(e.body, Body::Card(_)))
        .count()
}

fn asn(n: u8) -> CardAsn {
    CardAsn(card(n).0)
}

#[test]
fn a_purchase_debits_the_card_and_logs_one_entry_hq_can_verify() {
    let net = Net::create();
    let store = net.desk();
    let pos = open(&net, &store);
    login(&pos, "admin-1");
    let mut p = purse(net.chip(&store, 1, true, VALID));
    pos.load(&mut p, yuan("100"), &pin()).unwrap();
    let mut sam = software_sam(&store, &net.desk_key(), terminal()).unwrap();
    let r = pos
        .purchase(&mut p, &mut sam, &line("cola", 2), None)
        .unwrap();
    assert_eq!(r.txn.amount, yuan("6"));
    assert_eq!(
        (r.txn.balance_before, r.txn.balance_after),
        (yuan("100"), yuan("94"))
    );
    assert_eq!(p.balance().unwrap(), 9_400);
    assert_eq!(r.txn.items.len(), 1);
    assert_eq!(card_entries(&store, asn(1)), 2);
    assert!(store.pending_intents(&asn(1)).unwrap().is_empty());

    // Only HQ's TAC key verifies the logged TAC.
    let tac_key = keys::held(&net.hq, &net.hq_key()).unwrap().tac().unwrap();
    let expected = debit_tac(
        &tac_key.diversify(&card(1)),
        600,
        TxType::Purchase,
        &CardTerminalId(terminal().0),
        r.txn.term_seq,
        &cardmesh_drivers::types::BcdDateTime(r.txn.card_time.0),
    );
    assert!(mac_eq(&expected, &Mac4(r.txn.tac)));
}

#[test]
fn a_blacklisted_card_is_refused_blocked_on_the_chip_and_alarmed() {
    let net = Net::create();
    let store = net.desk();
    let pos = open(&net, &store);
    login(&pos, "admin-1");
    let mut p = purse(net.chip(&store, 2, true, VALID));
    pos.load(&mut p, yuan("50"), &pin()).unwrap();
    pos.report_lost(asn(2)).unwrap();
    assert!(store.is_blocked(&asn(2)).unwrap());

    let mut sam = software_sam(&store, &net.desk_key(), terminal()).unwrap();
    let before = card_entries(&store, asn(2));
    let err = pos
        .purchase(&mut p, &mut sam, &line("cola", 1), None)
        .unwrap_err();
    assert!(
        matches!(err, PosError::Blacklisted(a) if a == asn(2)),
        "{err}"
    );
    assert_eq!(card_entries(&store, asn(2)), before);
    // The chip itself is blocked now: it refuses even a node that lacks the blacklist.
    assert!(matches!(
        p.select(),
        Err(EpurseError::ApplicationBlocked { .. })
    ));
    let alarms: Vec<_> = store
        .alarms(100)
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.body {
            Body::Alarm(a) => Some(a),
            _ => None,
        })
        .collect();
    assert!(
        alarms
            .iter()
            .any(|a| a.kind == AlarmKind::BlacklistedCardPresented && a.asn == Some(asn(2)))
    );
    // Presented again, blocked chip: still refused, alarmed again.
    let err = pos
        .purchase(&mut p, &mut sam, &line("cola", 1), None)
        .unwrap_err();
    assert!(matches!(err, PosError::Blacklisted(_)));
}

#[test]
fn operators_must_log_in_hold_the_permission_and_are_audited() {
    let net = Net::create();
    let store = net.desk();
    let pos = open(&net, &store);
    let mut p = purse(net.chip(&store, 3, true, VALID));
    let mut sam = software_sam(&store, &net.desk_key(), terminal()).unwrap();

    assert!(matches!(
        pos.purchase(&mut p, &mut sam, &line("cola", 1), None),
        Err(PosError::NotLoggedIn(_))
    ));
    assert!(matches!(
        pos.login(&"cash-1".parse().unwrap(), "0000"),
        Err(PosError::BadOperatorPin(_))
    ));
    assert!(matches!(
        pos.login(&"nobody".parse().unwrap(), "0000"),
        Err(PosError::UnknownOperator(_))
    ));
    assert!(
        pos.login(&"hq-admin".parse().unwrap(), "9999").is_ok(),
        "an admin may log in anywhere"
    );
    login(&pos, "cash-1");
    let err = pos.load(&mut p, yuan("10"), &pin()).unwrap_err();
    assert!(matches!(err, PosError::NotPermitted { .. }), "{err}");
    assert!(matches!(
        pos.report_lost(asn(3)),
        Err(PosError::NotPermitted { .. })
    ));
    login(&pos, "desk-op");
    pos.load(&mut p, yuan("10"), &pin()).unwrap();
    assert!(matches!(
        pos.purchase(&mut p, &mut sam, &line("cola", 1), None),
        Err(PosError::NotPermitted { .. })
    ));
    assert!(matches!(
        pos.unblock::<MemoryReader<VirtualCard>>(asn(3), None, "x"),
        Err(PosError::HqOnly(_))
    ));
    login(&pos, "cash-1");
    pos.purchase(&mut p, &mut sam, &line("cola", 1), None)
        .unwrap();
    pos.logout().unwrap();
    assert!(matches!(pos.session(), Err(PosError::NotLoggedIn(_))));

    // The audit log: logins, refusals and the logout, each a signed entry of this node.
    let actions = operator_actions(&store);
    let refusals = actions
        .iter()
        .filter(|a| matches!(a, OperatorActionKind::Refused { .. }))
        .count();
    let logins = actions
        .iter()
        .filter(|a| matches!(a, OperatorActionKind::Login { .. }))
        .count();
    assert_eq!(refusals, 5, "{actions:?}");
    assert_eq!(logins, 4);
    assert!(matches!(actions.last(), Some(OperatorActionKind::Logout)));
}

#[test]
fn bad_inputs_are_refused_and_leave_ledger_and_card_as_they_were() {
    let net = Net::create();
    let store = net.desk();
    let pos = open(&net, &store);
    login(&pos, "admin-1");
    let mut sam = software_sam(&store, &net.desk_key(), terminal()).unwrap();
    let mut named = purse(net.chip(&store, 4, true, VALID));
    pos.load(&mut named, yuan("100"), &pin()).unwrap();
    let entries = card_entries(&store, asn(4));

    let err = pos
        .load(&mut named, yuan("10"), &Pin::parse("999999").unwrap())
        .unwrap_err();
    assert!(
        matches!(err, PosError::Card(EpurseError::WrongPin { .. })),
        "{err}"
    );
    let err = pos
        .purchase(&mut named, &mut sam, &line("tv", 1), None)
        .unwrap_err();
    assert!(matches!(err, PosError::PinRequired(_)), "{err}");
    let err = pos
        .purchase(&mut named, &mut sam, &line("tv", 1), Some(&pin()))
        .unwrap_err();
    assert!(
        matches!(err, PosError::Card(EpurseError::InsufficientFunds { .. })),
        "{err}"
    );
    let err = pos
        .purchase(&mut named, &mut sam, &line("tv", 2), Some(&pin()))
        .unwrap_err();
    assert!(
        matches!(err, PosError::Risk(Refusal::OverTransactionLimit { .. })),
        "{err}"
    );
    let err = pos
        .purchase(&mut named, &mut sam, &line("caviar", 1), None)
        .unwrap_err();
    assert!(matches!(err, PosError::Pricing(_)), "{err}");
    let err = pos.load(&mut named, yuan("4901"), &pin()).unwrap_err();
    assert!(
        matches!(err, PosError::Risk(Refusal::OverBalanceLimit { .. })),
        "{err}"
    );
    assert_eq!(named.balance().unwrap(), 10_000);
    assert_eq!(card_entries(&store, asn(4)), entries);
    assert!(store.pending_intents(&asn(4)).unwrap().is_empty());

    let mut anonymous = purse(net.chip(&store, 5, false, VALID));
    let err = pos
        .load(&mut anonymous, yuan("1000.01"), &pin())
        .unwrap_err();
    assert!(
        matches!(err, PosError::Risk(Refusal::OverBalanceLimit { .. })),
        "{err}"
    );
    pos.load(&mut anonymous, yuan("1000"), &pin()).unwrap();
    assert!(matches!(
        pos.report_lost(asn(5)),
        Err(PosError::Anonymous(_))
    ));

    let mut expired = purse(net.chip(&store, 6, true, [0x20, 0x20, 0x01, 0x01]));
    let err = pos.load(&mut expired, yuan("10"), &pin()).unwrap_err();
    assert!(
        matches!(err, PosError::Card(EpurseError::CardExpired { .. })),
        "{err}"
    );
    assert_eq!(card_entries(&store, asn(6)), 0);
    assert!(store.pending_intents(&asn(6)).unwrap().is_empty());
}

#[test]
fn a_card_pulled_during_the_debit_is_settled_on_its_next_presentation() {
    let net = Net::create();
    let store = net.desk();
    let pos = open(&net, &store);
    login(&pos, "admin-1");
    let mut sam = software_sam(&store, &net.desk_key(), terminal()).unwrap();
    for (n, executes) in [(7u8, true), (8u8, false)] {
        let mut p = purse(net.chip(&store, n, true, VALID));
        pos.load(&mut p, yuan("100"), &pin()).unwrap();
        let chip = p.into_reader().remove().unwrap();
        let mut pulled = EPurse::new(Pulled::during(chip, 0x54, executes));
        let err = pos
            .purchase(&mut pulled, &mut sam, &line("cola", 1), None)
            .unwrap_err();
        assert!(matches!(err, PosError::Interrupted("purchase")), "{err}");
        assert_eq!(store.pending_intents(&asn(n)).unwrap().len(), 1);

        let chip = pulled.into_reader().chip();
        let mut again = purse(chip);
        let view = pos.query(&mut again).unwrap();
        assert_eq!(view.settled.len(), 1);
        let expect_balance = if executes { 9_700 } else { 10_000 };
        assert_eq!(again.balance().unwrap(), expect_balance);
        match (&view.settled[0], executes) {
            (Settled::Completed { .. }, true) | (Settled::Voided { .. }, false) => {}
            (other, _) => panic!("{other:?}"),
        }
        let purchases: Vec<_> = store
            .card_history(&asn(n))
            .unwrap()
            .into_iter()
            .filter_map(|e| match e.body {
                Body::Card(t) if t.kind == TxnKind::Purchase => Some(t),
                _ => None,
            })
            .collect();
        assert_eq!(purchases.len(), usize::from(executes));
        assert!(store.pending_intents(&asn(n)).unwrap().is_empty());
        // Presenting it once more settles nothing twice.
        assert!(pos.query(&mut again).unwrap().settled.is_empty());
    }
}

#[test]
fn an_operator_logs_in_with_the_operator_card_and_its_pin() {
    use cardmesh_model::docs::{DocName, network};
    let net = Net::create();
    let store = net.desk();
    let mut op_card = purse(net.chip(&store, 20, true, VALID));
    let mut customer = purse(net.chip(&store, 21, true, VALID));
    net.hq
        .edit_doc(DocName::Network, |d| {
            network::set_operator_card(d, &"mgr-1".parse().unwrap(), &asn(20))
        })
        .unwrap()
        .unwrap();
    deliver(&net.hq, &store);
    let pos = open(&net, &store);

    let err = pos.login_card(&mut customer, &pin()).unwrap_err();
    assert!(matches!(err, PosError::NotAnOperatorCard), "{err}");
    let err = pos
        .login_card(&mut op_card, &Pin::parse("999999").unwrap())
        .unwrap_err();
    assert!(
        matches!(err, PosError::Card(EpurseError::WrongPin { .. })),
        "{err}"
    );
    assert!(matches!(pos.session(), Err(PosError::NotLoggedIn(_))));

    let session = pos.login_card(&mut op_card, &pin()).unwrap();
    assert_eq!(session.operator.as_str(), "mgr-1");
    assert_eq!(pos.session().unwrap(), session);
    assert!(matches!(
        session.role,
        cardmesh_node::pos::OperatorRole::Manager
    ));
    let actions = operator_actions(&store);
    assert!(
        matches!(
            actions[..],
            [
                OperatorActionKind::Refused { .. },
                OperatorActionKind::Login { by_card: true }
            ]
        ),
        "{actions:?}"
    );
}

/// The daily limits read what the card spent today at every till of the node, with
/// loads left out: the daily amount is refused past its limit, the frequency flagged.
#[test]
fn a_cards_spending_today_counts_at_every_till_toward_its_daily_limits() {
    let net = Net::create();
    let store = net.desk();
    let mut first = open(&net, &store);
    let mut second = Pos::open(&store, &net.desk_key(), till(1), clock()).unwrap();
    login(&first, "admin-1");
    login(&second, "admin-1");
    first.set_max_purchases_per_day(2);
    second.set_max_purchases_per_day(2);
    let mut sam = software_sam(&store, &net.desk_key(), terminal()).unwrap();
    let mut other_sam = software_sam(&store, &net.desk_key(), till(1)).unwrap();
    let mut p = purse(net.chip(&store, 6, true, VALID));
    first.load(&mut p, yuan("5000"), &pin()).unwrap();
    let day = first
        .purchase(&mut p, &mut sam, &line("tv", 1), Some(&pin()))
        .unwrap()
        .txn
        .business_day;
    second.load(&mut p, yuan("3000"), &pin()).unwrap();
    assert_eq!(
        store.card_spending(&asn(6), day).unwrap(),
        (yuan("3000"), 1)
    );

    let entries = card_entries(&store, asn(6));
    let err = second
        .purchase(&mut p, &mut other_sam, &line("tv", 1), Some(&pin()))
        .unwrap_err();
    assert!(
        matches!(
            err,
            PosError::Risk(Refusal::OverDailyLimit { spent, .. }) if spent == yuan("3000")
        ),
        "{err}"
    );
    assert_eq!(card_entries(&store, asn(6)), entries);
    assert_eq!(p.balance().unwrap(), 500_000);

    let flagged = |store: &Store| {
        store
            .alarms(100)
            .unwrap()
            .into_iter()
            .filter(|e| matches!(&e.body, Body::Alarm(a) if a.kind == AlarmKind::RiskLimit))
            .count()
    };
    second
        .purchase(&mut p, &mut other_sam, &line("cola", 1), None)
        .unwrap();
    assert_eq!(
        flagged(&store),
        0,
        "the second purchase of the day is not flagged"
    );
    first
        .purchase(&mut p, &mut sam, &line("cola", 1), None)
        .unwrap();
    assert_eq!(flagged(&store), 1, "the third is done and flagged");
    assert_eq!(
        store.card_spending(&asn(6), day).unwrap(),
        (yuan("3006"), 3)
    );
    store.verify_views().unwrap();
}
