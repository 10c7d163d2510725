//! `cardmesh demo`: a whole network on this machine. HQ, two shops and a fuel station,
//! each a real node with its own key and redb store in a demo folder, enrolled through
//! the same request -> certificate -> join files a real site uses, given their keys by
//! the same ceremony and key packages, seeded with a network registry (operators with
//! PINs), a price book with a change scheduled for midnight, discount rules, cards and
//! one lost card, then synced over iroh endpoints on loopback.
//!
//! The cards are virtual chips in files (the wallet), personalized with the network's
//! keys: the console presents them to any node's terminal. A few earlier business days
//! of loads and purchases, made through the POS with the clock set back, give the
//! reports and charts something to show.

use crate::console::{CardSource, DemoDevices, DialUp};
use crate::handle::{Cluster, Node};
use crate::identity::{self, DataDir, IdentityError};
use crate::keys::{self, KeyError};
use crate::link::drive::LinkError;
use crate::pos::operators::pin_verifier;
use crate::pos::{BasketLine, Pos, PosError};
use crate::sam::software_sam;
use crate::store::{Clock, StoreError};
use cardmesh_drivers::card::{Personalization, VirtualCard};
use cardmesh_drivers::epurse::EPurse;
use cardmesh_drivers::keys::MasterKeys;
use cardmesh_drivers::reader::MemoryReader;
use cardmesh_drivers::types::{Asn, Pin};
use cardmesh_model::body::{
    BlacklistEvent, BlockReason, Body, CardChange, CardEvent, CardStatus, Holder,
};
use cardmesh_model::docs::DocName;
use cardmesh_model::docs::discounts::{self, TimeSlot};
use cardmesh_model::docs::network::{self, Limits, OperatorInfo, SiteInfo};
use cardmesh_model::docs::pricebook::{self, Product};
use cardmesh_model::{
    BusinessDay, CardAsn, MemberClass, Money, Quantity, Role, SiteId, TerminalId,
};
use std::fs;
use std::path::Path;
use std::sync::Arc;

/// Marks a folder as made by the demo, so that a rerun may wipe it and nothing else.
const MARKER: &str = ".cardmesh-demo";
/// Sites are in China: UTC+8.
const UTC_OFFSET_MIN: i32 = 480;
const DAY_MS: i64 = 86_400_000;

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{0} exists and was not made by the demo; choose another --data folder")]
    NotADemoFolder(std::path::PathBuf),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("demo folder: {0}")]
    Io(#[from] std::io::Error),
    #[error("seeding the demo: {0}")]
    Seed(String),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error("syncing the demo nodes: {0}")]
    Sync(String),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error("the demo's card wallet: {0}")]
    Wallet(String),
    #[error("seeding the demo's history: {0}")]
    Pos(#[from] PosError),
}

/// The demo's operators: id, name, role, site and PIN (shown on the login screen).
pub const OPERATORS: [(&str, &str, &str, &str, &str); 5] = [
    ("hq-admin", "Qian Yu", "admin", "hq", "9999"),
    ("shop1-mgr", "Chen Jing", "manager", "shop-1", "2222"),
    ("shop1-cash", "Zhao Lei", "cashier", "shop-1", "1111"),
    ("shop2-mgr", "Zhou Min", "manager", "shop-2", "2222"),
    ("fuel-cash", "Sun Hao", "cashier", "station-1", "1111"),
];

/// Every demo card's PIN.
pub const CARD_PIN: &str = "123456";

/// The demo's key components. Demo only: a real network's custodians type their own.
const DEMO_COMPONENTS: [&str; 2] = [
    "0123456789ABCDEFFEDCBA9876543210",
    "1111111111111111222222222222222F",
];

/// The demo's nodes: name, site and role. HQ first.
pub const NODES: [(&str, Role); 4] = [
    ("hq", Role::Hq),
    ("shop-1", Role::Store),
    ("shop-2", Role::Store),
    ("station-1", Role::Station),
];

fn site(s: &str) -> SiteId {
    s.parse().expect("demo site ids are valid")
}

/// Creates (or recreates) the demo network under `root`, starts each node's endpoint and
/// syncs them.
pub fn create(root: &Path, clock: Arc<dyn Clock>) -> Result<Cluster, DemoError> {
    if root.exists() {
        if !root.join(MARKER).exists() {
            return Err(DemoError::NotADemoFolder(root.to_path_buf()));
        }
        fs::remove_dir_all(root)?;
    }
    fs::create_dir_all(root)?;
    fs::write(
        root.join(MARKER),
        "made by `cardmesh demo`; rerunning the demo wipes this folder\n",
    )?;

    let hq_dir = DataDir::new(root.join("hq"));
    let hq_store = identity::init_hq(&hq_dir, "demo-chain", clock.clone())?;
    let a = keys::parse_component(DEMO_COMPONENTS[0])?;
    let b = keys::parse_component(DEMO_COMPONENTS[1])?;
    keys::ceremony(&hq_store, &a, &b)?;
    let hq_key = identity::load_key(&hq_dir)?;
    let masters = keys::held(&hq_store, &hq_key)?
        .masters()
        .ok_or_else(|| DemoError::Seed("the ceremony left no master keys".into()))?;
    let mut nodes = vec![Node::from_store("hq", hq_store, clock.clone())];
    let mut node_keys = vec![hq_key.clone()];
    for (name, role) in &NODES[1..] {
        let dir = DataDir::new(root.join(name));
        let request = fs::read(identity::init_site(&dir, name, clock.as_ref())?)?;
        let package = identity::enroll(
            nodes[0].store(),
            &hq_dir,
            &request,
            site(name),
            *role,
            clock.as_ref(),
        )?;
        let path = root.join(format!("{name}.cmjoin"));
        fs::write(&path, &package)?;
        let store = identity::join(&dir, &fs::read(&path)?, clock.clone())?;
        let key = identity::load_key(&dir)?;
        let exported = keys::export(nodes[0].store(), &hq_key, &store.node_id())?;
        keys::import(&store, &key, &exported)?;
        nodes.push(Node::from_store(name, store, clock.clone()));
        node_keys.push(key);
    }
    let now = clock.now_ms() as i64;
    seed_hq(&nodes[0], now)?;
    let wallet = root.join("wallet");
    fill_wallet(&wallet, &masters)?;
    let mut cluster = Cluster::start(nodes.into_iter().zip(node_keys).collect())?;
    // Two rounds: the first spreads HQ's certificates, the second everything relayed.
    for _ in 0..2 {
        cluster.sync_round().map_err(DemoError::Sync)?;
    }
    let cards = CardSource::Wallet(wallet);
    history(&cluster, &cards, now)?;
    // A customer reports card 3 lost at shop-1; the shop writes the block itself.
    cluster.nodes()[1]
        .store()
        .append_local(Body::Blacklist(BlacklistEvent::Block {
            asn: demo_cards()[2].0,
            reason: BlockReason::Lost,
            operator: Some("shop1-mgr".parse().expect("valid operator id")),
        }))?;
    for _ in 0..2 {
        cluster.sync_round().map_err(DemoError::Sync)?;
    }
    let hint = OPERATORS
        .iter()
        .map(|(id, _, role, site, pin)| format!("{id} / {pin} ({role} at {site})"))
        .collect::<Vec<_>>()
        .join(", ");
    // The station reaches HQ over dial-up too, through the simulated phone exchange.
    let dial_up = DialUp::install(root, STATION, 0)
        .map_err(|e| DemoError::Seed(format!("the dial-up line (socat and modems): {e}")))?;
    cluster.devices = Some(DemoDevices {
        cards,
        stick: root.join("usb-stick"),
        network_key: identity::load_network_key(&hq_dir)?,
        hint: format!(
            "demo operators: {hint}. Card {OPERATOR_CARD} is shop1-mgr's operator card. \
             Every demo card's PIN is {CARD_PIN}."
        ),
        dial_up: Some(dial_up),
        forecourt: Some((STATION, forecourt(root, &cluster, clock)?)),
    });
    Ok(cluster)
}

/// Station-1's node index.
const STATION: usize = 3;

/// Station-1's pump, with its cashier logged in at the pump's terminal and the fleet
/// card moved from the wallet to the customer's pocket.
fn forecourt(
    root: &Path,
    cluster: &Cluster,
    clock: Arc<dyn Clock>,
) -> Result<crate::forecourt::Forecourt, DemoError> {
    let dir = root.join("forecourt");
    fs::create_dir_all(&dir)?;
    let card = dir.join("fleet.card");
    fs::rename(
        root.join("wallet").join(format!("{FLEET_CARD}.card")),
        &card,
    )?;
    let node = &cluster.nodes()[STATION];
    let terminal: TerminalId = PUMP_TERMINAL.parse().expect("12 digits");
    let pos = Pos::open(node.store(), cluster.key(STATION), terminal, clock.clone())?;
    log_in(&pos, "fuel-cash")?;
    crate::forecourt::Forecourt::start(
        &dir,
        node.store(),
        cluster.key(STATION),
        clock,
        terminal,
        card,
    )
    .map_err(|e| DemoError::Seed(format!("the forecourt: {e}")))
}

/// Logs demo operator `operator` in at `pos`'s terminal, with the PIN of `OPERATORS`.
fn log_in(pos: &Pos, operator: &str) -> Result<(), DemoError> {
    let pin = OPERATORS
        .iter()
        .find(|o| o.0 == operator)
        .map(|o| o.4)
        .expect("a demo operator");
    pos.login(&operator.parse().expect("valid operator id"), pin)?;
    Ok(())
}

/// A clock fixed at one instant: the seeded history's "now".
struct At(u64);

impl Clock for At {
    fn now_ms(&self) -> u64 {
        self.0
    }
}

/// The forecourt customer's card: issued and loaded like the others, then taken out of
/// the wallet (the customer keeps it at the pump).
const FLEET_CARD: CardAsn = CardAsn([0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08]);
/// Station-1's fuelling point, a terminal of its own beside the console's.
const PUMP_TERMINAL: &str = "000000000203";

/// Shop-1's manager's operator card (login with `c` on the login screen).
const OPERATOR_CARD: CardAsn = CardAsn([0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09]);

/// A personalized chip the registry does not know yet: the card desk issues it.
const BLANK_CARD: CardAsn = CardAsn([0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07]);

/// Personalizes a chip for every demo card, and one blank, into `dir`, one state file
/// per card.
fn fill_wallet(dir: &Path, masters: &MasterKeys) -> Result<(), DemoError> {
    fs::create_dir_all(dir)?;
    let pin = Pin::parse(CARD_PIN).map_err(|e| DemoError::Wallet(e.to_string()))?;
    let blank = (BLANK_CARD, None, "standard");
    let operator = (OPERATOR_CARD, None, "standard");
    for (asn, _, class) in demo_cards().into_iter().chain([blank, operator]) {
        let chip = Asn(asn.0);
        let p = Personalization {
            asn: chip,
            keys: masters.card_keys(&chip),
            pin: pin.clone(),
            issue_date: [0x20, 0x26, 0x01, 0x01],
            expiry: [0x20, 0x31, 0x12, 0x31],
            card_class: u8::from(class == "gold"),
            max_balance: 1_000_000,
        };
        VirtualCard::create(&dir.join(format!("{asn}.card")), p)
            .map_err(|e| DemoError::Wallet(e.to_string()))?;
    }
    Ok(())
}

/// Loads at HQ and purchases at the shops and the station over the three business days
/// before today, and a few at shop-2 and the station earlier today (the dashboard's
/// chart), through each node's POS with the clock set to that day and hour. Shop-1's
/// today is left empty: it is where the demo's user sells.
fn history(cluster: &Cluster, cards: &CardSource, now: i64) -> Result<(), DemoError> {
    let CardSource::Wallet(dir) = cards else {
        return Ok(());
    };
    let day_start = now - (now + i64::from(UTC_OFFSET_MIN) * 60_000).rem_euclid(DAY_MS);
    let at = |days_ago: i64, hour: i64| (day_start - days_ago * DAY_MS + hour * 3_600_000) as u64;
    // Today's sales fall in the part of today already gone, in quarters of it.
    let today = |quarter: i64| (day_start + (now - day_start) * quarter / 4) as u64;
    let card = |n: usize| demo_cards()[n].0;
    let pin = Pin::parse(CARD_PIN).map_err(|e| DemoError::Wallet(e.to_string()))?;
    let purse = |asn: CardAsn| -> Result<_, DemoError> {
        let chip = VirtualCard::open(&dir.join(format!("{asn}.card")))
            .map_err(|e| DemoError::Wallet(e.to_string()))?;
        Ok(EPurse::new(MemoryReader::new(chip)))
    };
    // Node index, operator, when; what it does is in the closure.
    let till = |node: usize, operator: &str, when: u64| -> Result<Pos, DemoError> {
        let n = &cluster.nodes()[node];
        let terminal: TerminalId = format!("{:012}", 100 + node).parse().expect("12 digits");
        let pos = Pos::open(n.store(), cluster.key(node), terminal, Arc::new(At(when)))?;
        log_in(&pos, operator)?;
        Ok(pos)
    };
    let hq = till(0, "hq-admin", at(3, 9))?;
    for (n, yuan) in [(0, 500), (1, 200), (2, 100), (3, 300), (4, 100), (6, 2000)] {
        hq.load(&mut purse(card(n))?, Money::from_fen(yuan * 100), &pin)?;
    }
    hq.logout()?;
    let sales: [(i64, i64, usize, &str, usize, &str, i64); 9] = [
        (3, 10, 1, "shop1-mgr", 0, "cola", 2),
        (3, 15, 2, "shop2-mgr", 1, "popcorn", 1),
        (3, 19, 3, "fuel-cash", 3, "petrol-92", 20),
        (2, 11, 1, "shop1-cash", 1, "ticket", 2),
        (2, 12, 1, "shop1-cash", 4, "cola", 3),
        (2, 18, 3, "fuel-cash", 0, "petrol-95", 15),
        (1, 9, 2, "shop2-mgr", 0, "ticket", 1),
        (1, 13, 1, "shop1-mgr", 3, "popcorn", 2),
        (1, 20, 3, "fuel-cash", 3, "diesel-0", 10),
    ];
    let earlier_today = [
        (today(1), 2, "shop2-mgr", 1, "cola", 2),
        (today(2), 3, "fuel-cash", 0, "petrol-92", 12),
        (today(3), 2, "shop2-mgr", 4, "popcorn", 1),
    ];
    let all = sales
        .into_iter()
        .map(|(days_ago, hour, node, operator, n, product, qty)| {
            (at(days_ago, hour), node, operator, n, product, qty)
        })
        .chain(earlier_today);
    for (when, node, operator, n, product, qty) in all {
        let pos = till(node, operator, when)?;
        let mut sam = software_sam(
            cluster.nodes()[node].store(),
            cluster.key(node),
            pos.terminal(),
        )?;
        let basket = [BasketLine {
            product: product.parse().expect("valid product id"),
            quantity: Quantity::pieces(qty),
        }];
        pos.purchase(&mut purse(card(n))?, &mut sam, &basket, Some(&pin))?;
        pos.logout()?;
    }
    Ok(())
}

/// The demo's cards: number, holder (None = anonymous) and member class.
fn demo_cards() -> Vec<(CardAsn, Option<&'static str>, &'static str)> {
    let asn = |n: u8| CardAsn([0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, n]);
    vec![
        (asn(1), Some("Zhang Wei"), "gold"),
        (asn(2), Some("Li Na"), "standard"),
        (asn(3), Some("Wang Fang"), "standard"),
        (asn(4), Some("Liu Yang"), "gold"),
        (asn(5), None, "standard"),
        (asn(6), None, "standard"),
        (FLEET_CARD, Some("Chen Jie (fleet)"), "standard"),
    ]
}

fn seed_hq(hq: &Node, now_ms: i64) -> Result<(), DemoError> {
    let store = hq.store();
    let merchant: cardmesh_model::MerchantId = "main".parse().expect("valid merchant id");
    store
        .edit_doc(DocName::Network, |d| {
            for (name, _) in &NODES {
                let info = SiteInfo {
                    name: name.replace('-', " "),
                    merchant: merchant.clone(),
                    utc_offset_min: UTC_OFFSET_MIN,
                };
                network::set_site(d, &site(name), &info)?;
            }
            for (n, (name, _)) in NODES.iter().enumerate() {
                let t: TerminalId = format!("{:012}", 100 + n).parse().expect("12 digits");
                network::set_terminal(d, &t, &site(name))?;
            }
            let pump: TerminalId = PUMP_TERMINAL.parse().expect("12 digits");
            network::set_terminal(d, &pump, &site("station-1"))?;
            for (id, name, role, site_name, pin) in OPERATORS {
                let id = id.parse().expect("valid operator id");
                let info = OperatorInfo {
                    name: name.into(),
                    role: role.into(),
                    site: site(site_name),
                };
                network::set_operator(d, &id, &info)?;
                network::set_operator_pin(d, &id, &pin_verifier(&id, pin))?;
            }
            network::set_operator_card(
                d,
                &"shop1-mgr".parse().expect("valid operator id"),
                &OPERATOR_CARD,
            )?;
            network::set_limits(d, &Limits::default())
        })?
        .ok_or_else(|| DemoError::Seed("network registry unchanged".into()))?;

    // Prices take effect from a week ago (the seeded history is priced with them);
    // diesel goes up at the next midnight.
    let day_start = now_ms - (now_ms + i64::from(UTC_OFFSET_MIN) * 60_000).rem_euclid(DAY_MS);
    let products = [
        ("petrol-92", "92# petrol", "L", 768, true),
        ("petrol-95", "95# petrol", "L", 818, true),
        ("diesel-0", "0# diesel", "L", 789, false),
        ("cola", "Cola 330ml", "pc", 300, true),
        ("popcorn", "Popcorn", "pc", 1800, false),
        ("ticket", "Cinema ticket", "ticket", 4500, false),
    ];
    store
        .edit_doc(DocName::PriceBook, |d| {
            for (id, name, unit, fen, overridable) in products {
                let id = id.parse().expect("valid product id");
                let p = Product {
                    name: name.into(),
                    unit: unit.into(),
                    site_override: overridable,
                };
                pricebook::set_product(d, &id, &p)?;
                pricebook::schedule_price(d, &id, day_start - 7 * DAY_MS, Money::from_fen(fen))?;
            }
            pricebook::schedule_price(
                d,
                &"diesel-0".parse().expect("id"),
                day_start + DAY_MS,
                Money::from_fen(812),
            )
        })?
        .ok_or_else(|| DemoError::Seed("price book unchanged".into()))?;

    let gold: MemberClass = "gold".parse().expect("valid class");
    store
        .edit_doc(DocName::Discounts, |d| {
            discounts::set_rule(
                d,
                &gold,
                TimeSlot {
                    start_min: 0,
                    end_min: 0,
                },
                95,
            )?;
            discounts::set_rule(
                d,
                &gold,
                TimeSlot {
                    start_min: 22 * 60,
                    end_min: 6 * 60,
                },
                90,
            )?;
            discounts::set_points(d, &gold, 2)
        })?
        .ok_or_else(|| DemoError::Seed("discounts unchanged".into()))?;

    let expiry = BusinessDay {
        year: 2031,
        month: 12,
        day: 31,
    };
    for (asn, holder, class) in demo_cards() {
        let class: MemberClass = class.parse().expect("valid class");
        let change = CardChange::Personalized {
            class,
            expiry,
            issuer: site("hq"),
        };
        store.append_local(Body::CardRegistry(CardEvent { asn, change }))?;
        let holder = holder.map(|name| Holder {
            name: name.into(),
            id_number: String::new(),
            phone: String::new(),
        });
        store.append_local(Body::CardRegistry(CardEvent {
            asn,
            change: CardChange::Holder(holder),
        }))?;
        store.append_local(Body::CardRegistry(CardEvent {
            asn,
            change: CardChange::Status(CardStatus::Active),
        }))?;
    }
    Ok(())
}
