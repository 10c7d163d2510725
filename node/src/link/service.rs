//! The background sync loop of a running node: starts sessions with its peers over the
//! node's iroh endpoint when the [`Schedule`] says so — periodically, soon after the
//! store changed, and with backoff after failures. Peers are the configured ones and the
//! enrolled nodes LAN discovery finds ([`Neighbours`]); a node the store does not know
//! as a member is noted with the reason and never dialled. Serving peers' sessions is the
//! endpoint's own job; this loop only dials.

use super::iroh::IrohLink;
use super::lan::Sighting;
use super::schedule::{Neighbour, Neighbours, Noticed, PeerState, Policy, Schedule, Standing};
use crate::store::{Clock, Store};
use cardmesh_model::NodeId;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{Notify, mpsc};

/// A peer to dial: its node id and where it listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub node: NodeId,
    pub addr: SocketAddr,
}

/// One peer as the console shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerStatus {
    pub peer: Peer,
    pub state: PeerState,
}

/// The running loop. Dropping it without [`SyncService::stop`] leaves the task running
/// until the runtime ends.
pub struct SyncService {
    plan: Arc<Mutex<Plan>>,
    peers: Vec<Peer>,
    stop: Arc<Notify>,
    stopped: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

/// Whom to dial when, shared by the loop and the status calls.
struct Plan {
    schedule: Schedule,
    neighbours: Neighbours,
}

impl SyncService {
    /// Starts the loop on the current tokio runtime.
    pub fn spawn(
        link: Arc<IrohLink>,
        store: Store,
        peers: Vec<Peer>,
        policy: Policy,
        clock: Arc<dyn Clock>,
    ) -> SyncService {
        let now = clock.now_ms();
        let mut schedule = Schedule::new(policy);
        for p in &peers {
            schedule.add_peer(p.node, now);
        }
        let plan = Arc::new(Mutex::new(Plan {
            schedule,
            neighbours: Neighbours::new(),
        }));
        let stop = Arc::new(Notify::new());
        let stopped = Arc::new(AtomicBool::new(false));
        let changed = Arc::new(Notify::new());
        watch_store(&store, changed.clone(), stopped.clone());
        let configured: BTreeMap<NodeId, SocketAddr> =
            peers.iter().map(|p| (p.node, p.addr)).collect();
        let task = tokio::spawn(run(Loop {
            link,
            store,
            configured,
            plan: plan.clone(),
            clock,
            changed,
            stop: stop.clone(),
            interval_ms: policy.interval_ms,
        }));
        SyncService {
            plan,
            peers,
            stop,
            stopped,
            task,
        }
    }

    fn plan(&self) -> std::sync::MutexGuard<'_, Plan> {
        self.plan.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The configured peers, then the members found on the LAN, each with how syncing
    /// with it is going.
    pub fn status(&self) -> Vec<PeerStatus> {
        let plan = self.plan();
        let state = |node: &NodeId| plan.schedule.peers().get(node).cloned().unwrap_or_default();
        let mut status: Vec<PeerStatus> = self
            .peers
            .iter()
            .map(|p| PeerStatus {
                peer: p.clone(),
                state: state(&p.node),
            })
            .collect();
        for (node, n) in plan.neighbours.all() {
            let configured = self.peers.iter().any(|p| p.node == *node);
            if let (false, Standing::Member, Some(addr)) = (configured, n.standing, n.addrs.first())
            {
                status.push(PeerStatus {
                    peer: Peer {
                        node: *node,
                        addr: *addr,
                    },
                    state: state(node),
                });
            }
        }
        status
    }

    /// Every node LAN discovery has found and not lost, members and strangers.
    pub fn neighbours(&self) -> Vec<(NodeId, Neighbour)> {
        self.plan()
            .neighbours
            .all()
            .iter()
            .map(|(node, n)| (*node, n.clone()))
            .collect()
    }

    /// Stops the loop after the session under way, if any.
    pub async fn stop(self) {
        self.stopped.store(true, Ordering::Relaxed);
        self.stop.notify_one();
        let _ = self.task.await;
    }
}

struct Loop {
    link: Arc<IrohLink>,
    store: Store,
    configured: BTreeMap<NodeId, SocketAddr>,
    plan: Arc<Mutex<Plan>>,
    clock: Arc<dyn Clock>,
    changed: Arc<Notify>,
    stop: Arc<Notify>,
    interval_ms: u64,
}

/// What woke the loop.
enum Wake {
    Due,
    StoreChanged,
    Sighted(Option<Sighting>),
    Stop,
}

impl Loop {
    fn plan(&self) -> std::sync::MutexGuard<'_, Plan> {
        self.plan.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the store knows `node` as enrolled and not revoked; a store that cannot
    /// say makes it a stranger until it can.
    fn member(&self, node: &NodeId) -> bool {
        self.store.is_member(node).unwrap_or_else(|e| {
            tracing::warn!(node = %node.short(), "cannot read membership: {e}");
            false
        })
    }

    /// Starts or stops dialling a node found on the LAN whose standing is new.
    fn follow(&self, plan: &mut Plan, node: NodeId, standing: Standing, now: u64) {
        let addrs = plan
            .neighbours
            .get(&node)
            .map(|n| n.addrs.clone())
            .unwrap_or_default();
        match standing {
            Standing::Member => {
                tracing::info!(peer = %node.short(), ?addrs, "found a member on the LAN: syncing with it");
                plan.schedule.add_peer(node, now);
            }
            Standing::Stranger => {
                tracing::warn!(
                    node = %node.short(),
                    ?addrs,
                    "ignoring a node found on the LAN: {}",
                    Standing::STRANGER_REASON
                );
                if !self.configured.contains_key(&node) {
                    plan.schedule.remove_peer(&node);
                }
            }
        }
    }

    fn sighted(&self, sighting: Sighting) {
        let now = self.clock.now_ms();
        match sighting {
            Sighting::Seen { node, addrs } => {
                let member = self.member(&node);
                let mut plan = self.plan();
                match plan.neighbours.seen(node, addrs, member) {
                    Noticed::NewMember => self.follow(&mut plan, node, Standing::Member, now),
                    Noticed::NewStranger => self.follow(&mut plan, node, Standing::Stranger, now),
                    Noticed::Known => {}
                }
            }
            Sighting::Gone(node) => {
                let mut plan = self.plan();
                if plan.neighbours.gone(&node).is_some() {
                    tracing::info!(node = %node.short(), "no longer heard on the LAN");
                    if !self.configured.contains_key(&node) {
                        plan.schedule.remove_peer(&node);
                    }
                }
            }
        }
    }

    /// The store changed: peers are due soon, and an enrollment or a revocation that
    /// arrived may change a neighbour's standing.
    fn store_changed(&self) {
        let now = self.clock.now_ms();
        let nodes: Vec<NodeId> = self.plan().neighbours.all().keys().copied().collect();
        let members: BTreeMap<NodeId, bool> =
            nodes.into_iter().map(|n| (n, self.member(&n))).collect();
        let mut plan = self.plan();
        plan.schedule.store_changed(now);
        let changed = plan
            .neighbours
            .recheck(|n| members.get(n).copied().unwrap_or(false));
        for (node, standing) in changed {
            self.follow(&mut plan, node, standing, now);
        }
    }

    /// Where to reach `peer`: its configured address, then what it announces on the LAN.
    fn addrs(&self, peer: &NodeId) -> Vec<SocketAddr> {
        let mut addrs: Vec<SocketAddr> = self.configured.get(peer).copied().into_iter().collect();
        if let Some(n) = self.plan().neighbours.get(peer) {
            for addr in &n.addrs {
                if !addrs.contains(addr) {
                    addrs.push(*addr);
                }
            }
        }
        addrs
    }
}

async fn next_sighting(sightings: &mut Option<mpsc::Receiver<Sighting>>) -> Option<Sighting> {
    match sightings {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn run(l: Loop) {
    let mut sightings = l.link.sightings().await;
    loop {
        let wait = l
            .plan()
            .schedule
            .wait_ms(l.clock.now_ms())
            .unwrap_or(l.interval_ms);
        let wake = tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(wait)) => Wake::Due,
            _ = l.changed.notified() => Wake::StoreChanged,
            s = next_sighting(&mut sightings) => Wake::Sighted(s),
            _ = l.stop.notified() => Wake::Stop,
        };
        match wake {
            Wake::Due => {}
            Wake::StoreChanged => {
                l.store_changed();
                continue;
            }
            Wake::Sighted(Some(s)) => {
                l.sighted(s);
                continue;
            }
            Wake::Sighted(None) => {
                tracing::warn!("LAN discovery stopped; syncing with configured peers only");
                sightings = None;
                continue;
            }
            Wake::Stop => return,
        }
        let due = l.plan().schedule.due(l.clock.now_ms());
        for peer in due {
            let addrs = l.addrs(&peer);
            let result = l.link.sync_at(peer, &addrs).await;
            let now = l.clock.now_ms();
            match result {
                Ok(outcome) => {
                    tracing::info!(
                        peer = %peer.short(),
                        applied_here = outcome.stats.entries_applied,
                        applied_there = outcome.stats.applied_by_peer,
                        "synced"
                    );
                    l.plan().schedule.succeeded(&peer, now);
                }
                Err(e) => {
                    tracing::warn!(peer = %peer.short(), "sync failed: {e}");
                    l.plan().schedule.failed(&peer, now, e.to_string());
                }
            }
        }
    }
}

/// Turns the store's commit notices into wake-ups of the loop, from a thread because the
/// store's channel is a blocking one.
fn watch_store(store: &Store, changed: Arc<Notify>, stopped: Arc<AtomicBool>) {
    let notices = store.subscribe();
    std::thread::spawn(move || {
        while !stopped.load(Ordering::Relaxed) {
            match notices.recv_timeout(Duration::from_millis(500)) {
                Ok(_) => changed.notify_one(),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
    });
}
