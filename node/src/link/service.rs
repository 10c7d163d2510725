//! The background sync loop of a running node: starts sessions with its configured peers
//! over the node's iroh endpoint when the [`Schedule`] says so — periodically, soon after
//! the store changed, and with backoff after failures. Serving peers' sessions is the
//! endpoint's own job; this loop only dials.

use super::iroh::IrohLink;
use super::schedule::{PeerState, Policy, Schedule};
use crate::store::{Clock, Store};
use cardmesh_model::NodeId;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::Notify;

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
    schedule: Arc<Mutex<Schedule>>,
    peers: Vec<Peer>,
    stop: Arc<Notify>,
    stopped: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
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
        let schedule = Arc::new(Mutex::new(schedule));
        let stop = Arc::new(Notify::new());
        let stopped = Arc::new(AtomicBool::new(false));
        let changed = Arc::new(Notify::new());
        watch_store(&store, changed.clone(), stopped.clone());
        let addrs: BTreeMap<NodeId, SocketAddr> = peers.iter().map(|p| (p.node, p.addr)).collect();
        let task = tokio::spawn(run(Loop {
            link,
            addrs,
            schedule: schedule.clone(),
            clock,
            changed,
            stop: stop.clone(),
            interval_ms: policy.interval_ms,
        }));
        SyncService {
            schedule,
            peers,
            stop,
            stopped,
            task,
        }
    }

    pub fn status(&self) -> Vec<PeerStatus> {
        let schedule = self.schedule.lock().unwrap_or_else(PoisonError::into_inner);
        self.peers
            .iter()
            .map(|p| PeerStatus {
                peer: p.clone(),
                state: schedule.peers().get(&p.node).cloned().unwrap_or_default(),
            })
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
    addrs: BTreeMap<NodeId, SocketAddr>,
    schedule: Arc<Mutex<Schedule>>,
    clock: Arc<dyn Clock>,
    changed: Arc<Notify>,
    stop: Arc<Notify>,
    interval_ms: u64,
}

impl Loop {
    fn schedule(&self) -> std::sync::MutexGuard<'_, Schedule> {
        self.schedule.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

async fn run(l: Loop) {
    loop {
        let wait = l
            .schedule()
            .wait_ms(l.clock.now_ms())
            .unwrap_or(l.interval_ms);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
            _ = l.changed.notified() => {
                l.schedule().store_changed(l.clock.now_ms());
                continue;
            }
            _ = l.stop.notified() => return,
        }
        let due = l.schedule().due(l.clock.now_ms());
        for peer in due {
            let addr = l.addrs[&peer];
            let result = l.link.sync_with(peer, addr).await;
            let now = l.clock.now_ms();
            match result {
                Ok(outcome) => {
                    tracing::info!(
                        peer = %peer.short(),
                        applied_here = outcome.stats.entries_applied,
                        applied_there = outcome.stats.applied_by_peer,
                        "synced"
                    );
                    l.schedule().succeeded(&peer, now);
                }
                Err(e) => {
                    tracing::warn!(peer = %peer.short(), "sync failed: {e}");
                    l.schedule().failed(&peer, now, e.to_string());
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
