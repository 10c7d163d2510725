//! A network of real nodes for whole-system scenarios: HQ and sites, each with its own
//! key, redb file and iroh endpoint on loopback, enrolled by the same request ->
//! certificate -> join files a real site uses, plus sticks that are plain folders. A test
//! decides which links exist when, so partitions are just sessions not run.

pub mod sim;

use cardmesh_drivers::modem::pty::SocatPair;
use cardmesh_model::body::{BlacklistEvent, BlockReason, Body};
use cardmesh_model::docs::{DocName, pricebook};
use cardmesh_model::{CardAsn, Entry, Money, Role, VersionVector};
use cardmesh_node::identity::{self, DataDir, NetworkKey};
use cardmesh_node::link::NodeSync;
use cardmesh_node::link::drive::{LinkError, SessionOutcome};
use cardmesh_node::link::iroh::IrohLink;
use cardmesh_node::link::serial::call::{self, CallError, CallOutcome};
use cardmesh_node::store::{Clock, Store, SystemClock};
use cardmesh_node::usb::{self, StickReport};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub struct MeshNode {
    pub name: String,
    pub dir: DataDir,
    pub store: Store,
    sync: NodeSync,
    network_key: NetworkKey,
    link: IrohLink,
}

/// HQ (index 0) and sites, all running. Dropping it shuts the endpoints down.
pub struct Mesh {
    pub nodes: Vec<MeshNode>,
    runtime: tokio::runtime::Runtime,
    root: tempfile::TempDir,
}

fn clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

impl Mesh {
    /// Creates a network: HQ, then one node per `(name, role)`, each enrolled at HQ.
    pub fn new(sites: &[(&str, Role)]) -> Mesh {
        let root = tempfile::tempdir().expect("temp dir");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let hq_dir = DataDir::new(root.path().join("hq"));
        let hq_store = identity::init_hq(&hq_dir, "mesh-chain", clock()).expect("init HQ");
        let mut made = Vec::new();
        for (name, role) in sites {
            let dir = DataDir::new(root.path().join(name));
            let request = std::fs::read(
                identity::init_site(&dir, name, clock().as_ref()).expect("init site"),
            )
            .expect("request file");
            let package = identity::enroll(
                &hq_store,
                &hq_dir,
                &request,
                name.parse().expect("site id"),
                *role,
                clock().as_ref(),
            )
            .expect("enroll");
            let store = identity::join(&dir, &package, clock()).expect("join");
            made.push((name.to_string(), dir, store));
        }
        made.insert(0, ("hq".to_string(), hq_dir, hq_store));
        let nodes = made
            .into_iter()
            .map(|(name, dir, store)| {
                let key = identity::load_key(&dir).expect("node key");
                let network_key = identity::load_network_key(&dir).expect("network key");
                let sync = NodeSync::new(store.clone(), key);
                let link = runtime
                    .block_on(IrohLink::bind(
                        sync.clone(),
                        "127.0.0.1:0".parse().expect("address"),
                        clock(),
                    ))
                    .expect("iroh endpoint");
                MeshNode {
                    name,
                    dir,
                    store,
                    sync,
                    network_key,
                    link,
                }
            })
            .collect();
        Mesh {
            nodes,
            runtime,
            root,
        }
    }

    pub fn hq(&self) -> &Store {
        &self.nodes[0].store
    }

    pub fn store(&self, i: usize) -> &Store {
        &self.nodes[i].store
    }

    /// One sync session over iroh (QUIC on loopback), `a` initiating.
    pub fn iroh(&self, a: usize, b: usize) -> Result<SessionOutcome, LinkError> {
        let peer = self.nodes[b].store.node_id();
        let addr = self.nodes[b].link.local_addrs()[0];
        self.runtime
            .block_on(self.nodes[a].link.sync_with(peer, addr))
    }

    /// One sync session over a null-modem cable (a socat pty pair at 115,200 baud),
    /// iroh QUIC on the serial line: `a` dials, `b` answers.
    pub fn cable(&self, a: usize, b: usize) -> Result<CallOutcome, CallError> {
        const BAUD: u32 = 115_200;
        let pair = SocatPair::start(self.root.path(), &format!("cable-{a}-{b}"))
            .expect("socat pty pair (tests/system-packages installs socat)");
        let open = |p: &str| {
            serialport::new(p, BAUD)
                .timeout(Duration::from_millis(20))
                .open()
                .expect("pty opens")
        };
        let (a_port, b_port) = (open(pair.a()), open(pair.b()));
        let (dialer, answerer) = (self.nodes[a].sync.clone(), self.nodes[b].sync.clone());
        let expected = answerer.store().node_id();
        self.runtime.block_on(async move {
            let served =
                tokio::spawn(
                    async move { call::serve_line(&answerer, b_port, BAUD, clock()).await },
                );
            let outcome =
                call::sync_over_line(&dialer, a_port, BAUD, Some(expected), clock().as_ref()).await;
            let _ = served.await;
            outcome
        })
    }

    /// A new, empty stick: a folder standing for a mounted drive.
    pub fn stick(&self, name: &str) -> PathBuf {
        let mount = self.root.path().join("sticks").join(name);
        std::fs::create_dir_all(&mount).expect("stick folder");
        mount
    }

    /// Node `i` syncs with the stick mounted at `mount`, with no size budget to speak of.
    pub fn visit(&self, i: usize, mount: &Path) -> StickReport {
        let n = &self.nodes[i];
        usb::sync_stick(
            &n.store,
            &n.network_key,
            &usb::stick_folder(mount),
            1 << 30,
            &mut |_| {},
        )
        .unwrap_or_else(|e| panic!("{} syncing with the stick: {e}", n.name))
    }

    /// Panics unless every node holds the same feeds and the same folded views, and each
    /// node's views equal a refold of its feeds.
    pub fn assert_converged(&self) {
        let first = &self.nodes[0];
        let vv = first.store.version_vector().expect("version vector");
        let digest = first.store.replica_digest().expect("digest");
        for n in &self.nodes {
            n.store.verify_views().expect("views equal a refold");
            assert_eq!(
                n.store.version_vector().expect("version vector"),
                vv,
                "{} holds other feeds than {}",
                n.name,
                first.name
            );
            assert_eq!(
                n.store.replica_digest().expect("digest"),
                digest,
                "{} folded the same feeds into other views than {}",
                n.name,
                first.name
            );
        }
    }

    /// The replica digests of all nodes (see `Store::replica_digest`).
    pub fn digests(&self) -> Vec<cardmesh_model::Hash> {
        self.nodes
            .iter()
            .map(|n| n.store.replica_digest().expect("digest"))
            .collect()
    }

    /// The version vectors of all nodes, for asserting that something did not spread.
    pub fn vectors(&self) -> Vec<VersionVector> {
        self.nodes
            .iter()
            .map(|n| n.store.version_vector().expect("version vector"))
            .collect()
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        for n in self.nodes.drain(..) {
            self.runtime.block_on(n.link.shutdown());
        }
    }
}

pub fn card(n: u8) -> CardAsn {
    CardAsn([0x10, 0, 0, 0, 0, 0, 0, n])
}

/// A lost-card block, as a card desk writes it.
pub fn lost(card: CardAsn) -> Body {
    Body::Blacklist(BlacklistEvent::Block {
        asn: card,
        reason: BlockReason::Lost,
        operator: None,
    })
}

/// Sets `product`'s price from `from_ms` on (HQ's price book).
pub fn set_price(store: &Store, product: &str, from_ms: i64, fen: i64) -> Entry {
    let id = product.parse().expect("product id");
    store
        .edit_doc(DocName::PriceBook, |d| {
            pricebook::set_product(
                d,
                &id,
                &pricebook::Product {
                    name: product.into(),
                    unit: "L".into(),
                    site_override: false,
                },
            )?;
            pricebook::schedule_price(d, &id, from_ms, Money::from_fen(fen))
        })
        .expect("price edit")
        .expect("the edit changed the price book")
}

/// `product`'s price at `at_ms` in `store`'s copy of the price book.
pub fn price(store: &Store, product: &str, at_ms: i64) -> Option<Money> {
    let doc = store.doc(&DocName::PriceBook).expect("price book")?;
    let book = pricebook::read(&doc);
    book.prices
        .at(&product.parse().expect("product id"), at_ms)
        .map(|(_, m)| m)
}

/// A purchase as node `store`'s till logs it (its own site; MACs as a card gave them).
pub fn purchase(store: &Store, card: CardAsn, counter: u16, fen: i64, before_fen: i64) -> Body {
    use cardmesh_model::body::{CardTxn, LineItem, TxnKind};
    use cardmesh_model::{BusinessDay, CardTime, Quantity};
    Body::Card(CardTxn {
        kind: TxnKind::Purchase,
        asn: card,
        site: store.own_certificate().site,
        terminal: "000000000001".parse().expect("terminal id"),
        operator: Some("op1".parse().expect("operator id")),
        business_day: BusinessDay {
            year: 2026,
            month: 11,
            day: 21,
        },
        card_time: CardTime([0x20, 0x26, 0x11, 0x21, 0x10, 0x00, 0x00]),
        card_counter: counter,
        term_seq: u32::from(counter),
        amount: Money::from_fen(fen),
        balance_before: Money::from_fen(before_fen),
        balance_after: Money::from_fen(before_fen - fen),
        mac1: [1, 2, 3, 4],
        mac2: [5, 6, 7, 8],
        tac: [9, 10, 11, 12],
        items: vec![LineItem {
            product: "petrol-92".parse().expect("product id"),
            quantity: Quantity::from_milli(1_000),
            unit_price: Money::from_fen(fen),
            paid_percent: 100,
            amount: Money::from_fen(fen),
        }],
        refers_to: None,
    })
}
