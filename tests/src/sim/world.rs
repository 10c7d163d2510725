//! The simulated network: HQ and sites, each a real redb store on a RAM disk, built
//! from the run's seed alone (keys, network id, key ceremony), so that a seed replays
//! the same network. A node can crash (its store dropped, whatever was in flight lost)
//! and restart from its file.

use super::clock::SimClock;
use cardmesh_drivers::keys::MasterKeys;
use cardmesh_model::auth::CertRequest;
use cardmesh_model::body::Body;
use cardmesh_model::docs::DocName;
use cardmesh_model::docs::network::{self, Limits, OperatorInfo, SiteInfo};
use cardmesh_model::docs::pricebook::{self, Product};
use cardmesh_model::{
    Certificate, Hlc, Money, NetworkId, NodeKey, OperatorId, ProductId, Role, SiteId, TerminalId,
};
use cardmesh_node::identity::NetworkKey;
use cardmesh_node::keys;
use cardmesh_node::link::NodeSync;
use cardmesh_node::pos::operators::pin_verifier;
use cardmesh_node::pos::{Pos, PosError};
use cardmesh_node::store::{Clock, Store};
use rand::Rng;
use rand::rngs::StdRng;
use std::path::{Path, PathBuf};

/// Every operator's PIN (they are all admins of their own site: the simulation is
/// about the network, not about permissions).
pub const OPERATOR_PIN: &str = "2468";
/// The fuel every station sells, priced per litre.
pub const FUEL: &str = "petrol-92";
/// What the shops sell, by the piece.
pub const SHOP_ITEM: &str = "cola";

pub struct SimNode {
    pub name: String,
    pub role: Role,
    pub site: SiteId,
    pub terminal: TerminalId,
    pub operator: OperatorId,
    key: NodeKey,
    path: PathBuf,
    store: Option<Store>,
}

impl SimNode {
    /// The node's store; a crashed node has been restarted before anyone asks.
    pub fn store(&self) -> &Store {
        self.store.as_ref().expect("the node is running")
    }

    pub fn key(&self) -> &NodeKey {
        &self.key
    }

    /// The node as a sync session sees it.
    pub fn sync(&self) -> NodeSync {
        NodeSync::new(self.store().clone(), self.key.clone())
    }

    /// A POS terminal of this node, reading the documents as they are now.
    pub fn pos(&self, clock: &SimClock) -> Result<Pos, PosError> {
        Pos::open(self.store(), &self.key, self.terminal, clock.as_clock())
    }

    /// Power loss: the store goes away with the process; only what was committed is in
    /// the file.
    pub fn crash(&mut self) {
        self.store = None;
    }

    /// Starts the node again from its file.
    pub fn restart(&mut self, clock: &SimClock) {
        let store = Store::open(&self.path, self.key.clone(), clock.as_clock())
            .unwrap_or_else(|e| panic!("{} does not reopen after a crash: {e}", self.name));
        self.store = Some(store);
    }
}

pub struct World {
    pub clock: SimClock,
    pub nodes: Vec<SimNode>,
    pub network_key: NetworkKey,
    pub masters: MasterKeys,
    pub root: tempfile::TempDir,
}

fn seed32(rng: &mut StdRng) -> [u8; 32] {
    let mut b = [0u8; 32];
    rng.fill_bytes(&mut b);
    b
}

/// A temporary folder in RAM where there is one: hundreds of seeds each create and
/// fsync several redb files.
fn temp_root() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    let builder = tempfile::Builder::new().prefix("cardmesh-sim-").clone();
    if shm.is_dir() {
        builder.tempdir_in(shm).expect("temp dir in /dev/shm")
    } else {
        builder.tempdir().expect("temp dir")
    }
}

/// The role of node `i`: HQ first, then stations and shops in turn.
pub fn role_of(i: usize) -> Role {
    match i {
        0 => Role::Hq,
        i if i % 2 == 1 => Role::Station,
        _ => Role::Store,
    }
}

impl World {
    /// Builds HQ and `nodes - 1` sites, holds the key ceremony, gives every site its
    /// keys and seeds the registry and price book at HQ. Sites start empty: the first
    /// links bring them HQ's feed, as a real site's first sync does.
    pub fn build(rng: &mut StdRng, nodes: usize) -> World {
        assert!(nodes >= 2, "a network needs HQ and at least one site");
        let clock = SimClock::new();
        let root = temp_root();
        let mut network = [0u8; 16];
        rng.fill_bytes(&mut network);
        let network = NetworkId(network);
        let hq_key = NodeKey::from_seed(&seed32(rng));
        let issued = Hlc::new(clock.now_ms(), 0);
        let request = |key: &NodeKey, site: &SiteId, role| CertRequest {
            network,
            network_name: "sim".into(),
            node: key.node_id(),
            site: site.clone(),
            role,
            issued,
        };
        let hq_site: SiteId = "hq".parse().expect("site id");
        let hq_cert = Certificate::issue(&hq_key, request(&hq_key, &hq_site, Role::Hq));
        let node = |i: usize, key: NodeKey, site: SiteId, store: Store| SimNode {
            name: if i == 0 {
                "hq".into()
            } else {
                format!("site-{i}")
            },
            role: role_of(i),
            site,
            terminal: format!("{:012}", i + 1).parse().expect("terminal id"),
            operator: format!("admin-{i}").parse().expect("operator id"),
            key,
            path: root.path().join(format!("node-{i}.redb")),
            store: Some(store),
        };
        let hq_store = Store::create(
            &root.path().join("node-0.redb"),
            hq_key.clone(),
            hq_cert.clone(),
            hq_cert.clone(),
            clock.as_clock(),
        )
        .expect("HQ store");
        let hex = |rng: &mut StdRng| {
            let mut b = [0u8; 16];
            rng.fill_bytes(&mut b);
            b.iter().map(|x| format!("{x:02X}")).collect::<String>()
        };
        let (a, b) = (hex(rng), hex(rng));
        keys::ceremony(
            &hq_store,
            &keys::parse_component(&a).expect("component"),
            &keys::parse_component(&b).expect("component"),
        )
        .expect("key ceremony");
        let masters = keys::held(&hq_store, &hq_key)
            .expect("HQ keys")
            .masters()
            .expect("HQ holds the master keys");
        let mut made = vec![node(0, hq_key.clone(), hq_site, hq_store.clone())];
        for i in 1..nodes {
            let key = NodeKey::from_seed(&seed32(rng));
            let site: SiteId = format!("site-{i}").parse().expect("site id");
            let cert = Certificate::issue(&hq_key, request(&key, &site, role_of(i)));
            hq_store
                .append_local(Body::Enroll(cert.clone()))
                .expect("enrollment");
            let store = Store::create(
                &root.path().join(format!("node-{i}.redb")),
                key.clone(),
                cert,
                hq_cert.clone(),
                clock.as_clock(),
            )
            .expect("site store");
            let package = keys::export(&hq_store, &hq_key, &key.node_id()).expect("key export");
            keys::import(&store, &key, &package).expect("key import");
            made.push(node(i, key, site, store));
        }
        seed_documents(&hq_store, &made);
        World {
            clock,
            nodes: made,
            network_key: NetworkKey(seed32(rng)),
            masters,
            root,
        }
    }

    pub fn hq(&self) -> &Store {
        self.nodes[0].store()
    }

    /// The folder of stick `k`, created on first use.
    pub fn stick(&self, k: usize) -> PathBuf {
        let mount = self.root.path().join("sticks").join(k.to_string());
        std::fs::create_dir_all(&mount).expect("stick folder");
        mount
    }
}

/// The network registry (sites, terminals, operators, limits) and the first prices.
fn seed_documents(hq: &Store, nodes: &[SimNode]) {
    hq.edit_doc(DocName::Network, |d| {
        for n in nodes {
            network::set_site(
                d,
                &n.site,
                &SiteInfo {
                    name: n.name.clone(),
                    merchant: "main".parse().expect("merchant id"),
                    utc_offset_min: 480,
                },
            )?;
            network::set_terminal(d, &n.terminal, &n.site)?;
            network::set_operator(
                d,
                &n.operator,
                &OperatorInfo {
                    name: n.name.clone(),
                    role: "admin".into(),
                    site: n.site.clone(),
                },
            )?;
            network::set_operator_pin(d, &n.operator, &pin_verifier(&n.operator, OPERATOR_PIN))?;
        }
        network::set_limits(d, &Limits::default())
    })
    .expect("registry edit")
    .expect("the registry changed");
    hq.edit_doc(DocName::PriceBook, |d| {
        for (id, unit, fen) in [(FUEL, "L", 750), (SHOP_ITEM, "pc", 300)] {
            let id: ProductId = id.parse().expect("product id");
            pricebook::set_product(
                d,
                &id,
                &Product {
                    name: id.to_string(),
                    unit: unit.into(),
                    site_override: false,
                },
            )?;
            pricebook::schedule_price(d, &id, 0, Money::from_fen(fen))?;
        }
        Ok(())
    })
    .expect("price book edit")
    .expect("the price book changed");
}
