//! `cardmesh demo`: a whole network on this machine. HQ, two shops and a fuel station,
//! each a real node with its own key and redb store in a demo folder, enrolled through
//! the same request -> certificate -> join files a real site uses, seeded with a network
//! registry, a price book with a change scheduled for midnight, discount rules, cards and
//! one lost card, then synced over iroh endpoints on loopback.

use crate::handle::{Cluster, Node};
use crate::identity::{self, DataDir, IdentityError};
use crate::link::drive::LinkError;
use crate::store::{Clock, StoreError};
use cardmesh_model::body::{
    BlacklistEvent, BlockReason, Body, CardChange, CardEvent, CardStatus, Holder,
};
use cardmesh_model::docs::DocName;
use cardmesh_model::docs::discounts::{self, TimeSlot};
use cardmesh_model::docs::network::{self, Limits, OperatorInfo, SiteInfo};
use cardmesh_model::docs::pricebook::{self, Product};
use cardmesh_model::{BusinessDay, CardAsn, MemberClass, Money, Role, SiteId, TerminalId};
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
}

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
    let mut nodes = vec![Node::from_store("hq", hq_store, clock.clone())];
    let mut keys = vec![identity::load_key(&hq_dir)?];
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
        nodes.push(Node::from_store(name, store, clock.clone()));
        keys.push(identity::load_key(&dir)?);
    }
    seed_hq(&nodes[0], clock.now_ms() as i64)?;
    let cards = demo_cards();
    // A customer reports card 3 lost at shop-1; the shop writes the block itself.
    nodes[1]
        .store()
        .append_local(Body::Blacklist(BlacklistEvent::Block {
            asn: cards[2].0,
            reason: BlockReason::Lost,
            operator: Some("shop1-mgr".parse().expect("valid operator id")),
        }))?;
    let cluster = Cluster::start(nodes.into_iter().zip(keys).collect())?;
    // Two rounds: the first spreads HQ's certificates, the second everything relayed.
    for _ in 0..2 {
        cluster.sync_round().map_err(DemoError::Sync)?;
    }
    Ok(cluster)
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
            let op = |name: &str, role: &str, s: &str| OperatorInfo {
                name: name.into(),
                role: role.into(),
                site: site(s),
            };
            network::set_operator(
                d,
                &"shop1-mgr".parse().expect("id"),
                &op("Chen Jing", "manager", "shop-1"),
            )?;
            network::set_operator(
                d,
                &"shop1-cash".parse().expect("id"),
                &op("Zhao Lei", "cashier", "shop-1"),
            )?;
            network::set_operator(
                d,
                &"fuel-cash".parse().expect("id"),
                &op("Sun Hao", "cashier", "station-1"),
            )?;
            network::set_limits(d, &Limits::default())
        })?
        .ok_or_else(|| DemoError::Seed("network registry unchanged".into()))?;

    // Prices take effect from the start of today; diesel goes up at the next midnight.
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
                pricebook::schedule_price(d, &id, day_start, Money::from_fen(fen))?;
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
