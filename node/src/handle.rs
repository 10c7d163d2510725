//! The node's public handle: what front ends may ask of a node and tell it to do. The
//! console reaches nodes only through `cardmesh_tui::Nodes`, implemented over these
//! handles in [`crate::console`].

use crate::identity::{self, DataDir, IdentityError};
use crate::link::NodeSync;
use crate::link::drive::LinkError;
use crate::link::iroh::IrohLink;
use crate::link::schedule::Neighbour;
use crate::link::service::{Peer, PeerStatus, SyncService};
use crate::status::NodeStatus;
use crate::store::{Clock, Store, StoreError};
use cardmesh_model::docs::{DocName, pricebook};
use cardmesh_model::{NodeId, NodeKey};
use cardmesh_tui::{FeedRow, NodeSummary, PriceLine};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

#[derive(Clone)]
pub struct Node {
    name: String,
    store: Store,
    clock: Arc<dyn Clock>,
}

impl Node {
    pub fn open(name: &str, dir: &DataDir, clock: Arc<dyn Clock>) -> Result<Node, IdentityError> {
        Ok(Node::from_store(
            name,
            identity::open(dir, clock.clone())?,
            clock,
        ))
    }

    pub fn from_store(name: &str, store: Store, clock: Arc<dyn Clock>) -> Node {
        Node {
            name: name.to_string(),
            store,
            clock,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    /// The store, for the node's own subsystems (POS, sync, reports); not for front ends.
    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn summary(&self) -> Result<NodeSummary, StoreError> {
        let status = NodeStatus::gather(&self.store)?;
        let book = self
            .store
            .doc(&DocName::PriceBook)?
            .map(|d| pricebook::read(&d))
            .unwrap_or_default();
        let now = self.clock.now_ms() as i64;
        let c = &status.cert;
        let offset = crate::console::utc_offset(&self.store, &c.site)?;
        Ok(NodeSummary {
            node: c.node.short(),
            role: c.role,
            site: c.site.to_string(),
            network: c.network_name.clone(),
            total_entries: status.stats.total_entries,
            store_bytes: status.stats.file_bytes,
            cards: status.stats.cards,
            blacklisted: status.stats.blacklisted,
            feeds: status
                .feeds
                .iter()
                .map(|(m, entries)| FeedRow {
                    node: m.node.short(),
                    role: m.role,
                    site: m.site.to_string(),
                    entries: *entries,
                    this_node: m.node == c.node,
                })
                .collect(),
            blocked: self.store.blacklisted_cards(50)?,
            prices: book
                .products
                .iter()
                .map(|(id, p)| PriceLine {
                    id: id.to_string(),
                    name: p.name.clone(),
                    unit: p.unit.clone(),
                    price: book.prices.at(id, now).map(|(_, m)| m),
                    next: book.prices.0.get(id).and_then(|changes| {
                        changes
                            .range(now + 1..)
                            .next()
                            .map(|(at, m)| (crate::console::local_time(*at, offset), *m))
                    }),
                })
                .collect(),
        })
    }
}

/// Several nodes shown in one console (the demo), each with its own iroh endpoint on
/// loopback: a sync round runs a real session over QUIC between every pair.
pub struct Cluster {
    nodes: Vec<Node>,
    keys: Vec<NodeKey>,
    links: Vec<IrohLink>,
    runtime: tokio::runtime::Runtime,
    /// How the last session between two nodes (lower index first) went.
    sessions: Mutex<BTreeMap<(usize, usize), Session>>,
    pub(crate) devices: Option<crate::console::DemoDevices>,
}

/// The end of the last sync session over one link.
#[derive(Clone, Debug)]
pub struct Session {
    pub at_ms: u64,
    pub error: Option<String>,
}

impl Cluster {
    /// Binds an endpoint on 127.0.0.1 for every node (given with its key).
    pub fn start(nodes: Vec<(Node, NodeKey)>) -> Result<Cluster, LinkError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| LinkError::Transport(format!("starting the async runtime: {e}")))?;
        let loopback: SocketAddr = "127.0.0.1:0".parse().expect("valid address");
        let links = runtime.block_on(async {
            let mut links = Vec::new();
            for (n, key) in &nodes {
                let sync = NodeSync::new(n.store.clone(), key.clone());
                links.push(IrohLink::bind(sync, loopback, n.clock.clone()).await?);
            }
            Ok::<_, LinkError>(links)
        })?;
        let (nodes, keys) = nodes.into_iter().unzip();
        Ok(Cluster {
            nodes,
            keys,
            links,
            runtime,
            sessions: Mutex::new(BTreeMap::new()),
            devices: None,
        })
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The signing key of node `index` (for its POS terminal and SAM).
    pub fn key(&self, index: usize) -> &NodeKey {
        &self.keys[index]
    }

    /// One session between every pair; returns the entries applied on both sides.
    pub fn sync_round(&self) -> Result<u64, String> {
        let mut moved = 0;
        for i in 0..self.nodes.len() {
            for j in i + 1..self.nodes.len() {
                moved += self.sync_pair(i, j)?;
            }
        }
        Ok(moved)
    }

    /// One session from node `i` to node `j`; returns the entries applied on both sides.
    pub fn sync_pair(&self, i: usize, j: usize) -> Result<u64, String> {
        let peer = self.nodes[j].store.node_id();
        let addr = self.links[j].local_addrs()[0];
        let result = self
            .runtime
            .block_on(self.links[i].sync_with(peer, addr))
            .map(|o| o.stats.entries_applied + o.stats.applied_by_peer)
            .map_err(|e| format!("{} <-> {}: {e}", self.nodes[i].name, self.nodes[j].name));
        let session = Session {
            at_ms: self.nodes[i].clock.now_ms(),
            error: result.as_ref().err().cloned(),
        };
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert((i.min(j), i.max(j)), session);
        result
    }

    /// Runs a future on the cluster's runtime (the dial-up line's call).
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// How the last session between nodes `i` and `j` went, if there was one.
    pub fn last_session(&self, i: usize, j: usize) -> Option<Session> {
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&(i.min(j), i.max(j)))
            .cloned()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for link in self.links.drain(..) {
            self.runtime.block_on(link.shutdown());
        }
    }
}

/// A site's own node running for real: its endpoint serving peers, the background loop
/// dialing the configured ones, and what the console needs to show it.
pub struct Running {
    node: Node,
    /// Taken only by `drop`.
    link: Option<Arc<IrohLink>>,
    service: Option<SyncService>,
    peers: Vec<crate::config::NamedPeer>,
    key: NodeKey,
    dir: DataDir,
    station: Option<crate::station::Station>,
    runtime: tokio::runtime::Runtime,
}

impl Running {
    /// Opens the node in `dir`, binds its endpoint on `config.listen` with `config.reach`
    /// and starts dialing `config.peers` and the members LAN discovery finds.
    pub fn start(
        dir: &DataDir,
        config: crate::config::NodeConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Running, LinkError> {
        let identity_err = |e: IdentityError| LinkError::Transport(e.to_string());
        let store = identity::open(dir, clock.clone()).map_err(identity_err)?;
        let key = identity::load_key(dir).map_err(identity_err)?;
        let signing = key.clone();
        let name = store.own_certificate().site.to_string();
        let node = Node::from_store(&name, store.clone(), clock.clone());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| LinkError::Transport(format!("starting the async runtime: {e}")))?;
        let link = Arc::new(runtime.block_on(IrohLink::bind_with(
            NodeSync::new(store.clone(), key),
            config.listen,
            clock.clone(),
            config.reach,
        ))?);
        let peers: Vec<_> = config.peers.iter().map(|p| p.peer.clone()).collect();
        let service = {
            let _in_runtime = runtime.enter();
            SyncService::spawn(link.clone(), store, peers, config.policy, clock)
        };
        Ok(Running {
            node,
            link: Some(link),
            service: Some(service),
            peers: config.peers,
            key: signing,
            dir: dir.clone(),
            station: None,
            runtime,
        })
    }

    /// Starts the fuel station of `config.toml`'s `[station]` section, if it has one;
    /// returns whether it did.
    pub fn start_station(&mut self, dir: &DataDir) -> Result<bool, crate::station::StationError> {
        self.station = crate::station::Station::start_configured(
            dir,
            self.node.store(),
            self.node.clock.clone(),
        )?;
        Ok(self.station.is_some())
    }

    /// The fuel station, if this node runs one: its points' live state for the console.
    pub fn station(&self) -> Option<&crate::station::Station> {
        self.station.as_ref()
    }

    pub fn node(&self) -> &Node {
        &self.node
    }

    pub fn key(&self) -> &NodeKey {
        &self.key
    }

    pub fn data_dir(&self) -> &DataDir {
        &self.dir
    }

    /// The configured peers, by name.
    pub fn peers(&self) -> &[crate::config::NamedPeer] {
        &self.peers
    }

    /// One session now with a peer, configured or found on the LAN; says what moved.
    pub fn sync_peer(&self, name: &str, peer: &Peer) -> Result<String, LinkError> {
        let o = self
            .runtime
            .block_on(self.link().sync_with(peer.node, peer.addr))?;
        Ok(format!(
            "{name}: {} in, {} out",
            o.stats.entries_applied, o.stats.applied_by_peer
        ))
    }

    /// The name a peer goes by: its name in config.toml, else its short node id.
    pub fn peer_name(&self, node: NodeId) -> String {
        self.peers
            .iter()
            .find(|c| c.peer.node == node)
            .map_or_else(|| node.short(), |c| c.name.clone())
    }

    fn link(&self) -> &IrohLink {
        self.link
            .as_ref()
            .expect("the link is there until the node is dropped")
    }

    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.link().local_addrs()
    }

    /// The configured peers and the members found on the LAN, and how syncing with each
    /// is going.
    pub fn peer_status(&self) -> Vec<PeerStatus> {
        self.service
            .as_ref()
            .map(SyncService::status)
            .unwrap_or_default()
    }

    /// The nodes LAN discovery found, members and strangers.
    pub fn neighbours(&self) -> Vec<(NodeId, Neighbour)> {
        self.service
            .as_ref()
            .map(SyncService::neighbours)
            .unwrap_or_default()
    }

    /// Waits for Ctrl-C (a service's way to stop).
    pub fn wait_for_interrupt(&self) -> std::io::Result<()> {
        self.runtime.block_on(tokio::signal::ctrl_c())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(service) = self.service.take() {
            self.runtime.block_on(service.stop());
        }
        // The loop held the only other reference; once it has stopped, the endpoint can
        // close cleanly instead of just vanishing.
        if let Some(link) = self.link.take().and_then(|l| Arc::try_unwrap(l).ok()) {
            self.runtime.block_on(link.shutdown());
        }
    }
}
