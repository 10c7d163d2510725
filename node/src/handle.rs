//! The node's public handle: what front ends may ask of a node and tell it to do. The
//! console reaches nodes only through `cardmesh_tui::Nodes`, implemented here.

use crate::identity::{self, DataDir, IdentityError};
use crate::status::NodeStatus;
use crate::store::{Clock, Store, StoreError};
use cardmesh_model::FeedRange;
use cardmesh_model::docs::{DocName, pricebook};
use cardmesh_tui::{FeedRow, NodeSummary, Nodes, PriceLine};
use std::sync::Arc;

#[derive(Clone)]
pub struct Node {
    name: String,
    store: Store,
    clock: Arc<dyn Clock>,
}

/// How much one in-process sync moved each way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncCount {
    pub received: usize,
    pub sent: usize,
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
                    name: p.name.clone(),
                    unit: p.unit.clone(),
                    price: book.prices.at(id, now).map(|(_, m)| m),
                })
                .collect(),
        })
    }

    /// Exchanges what each side lacks directly between two stores on this machine, in
    /// bounded batches: the plan every link runs (version vectors, then missing ranges).
    pub fn sync_in_process(&self, peer: &Node) -> Result<SyncCount, StoreError> {
        Ok(SyncCount {
            received: pull(&self.store, &peer.store)?,
            sent: pull(&peer.store, &self.store)?,
        })
    }
}

const BATCH: usize = 1000;

fn pull(to: &Store, from: &Store) -> Result<usize, StoreError> {
    let mut moved = 0;
    for range in to.version_vector()?.lacks(&from.version_vector()?) {
        let mut next = range.from;
        while next <= range.to {
            let batch = from.entries(
                FeedRange {
                    from: next,
                    ..range
                },
                BATCH,
            )?;
            let Some(last) = batch.last().map(|e| e.seq) else {
                break;
            };
            let report = to.ingest(batch)?;
            moved += report.applied;
            if !report.rejected.is_empty() {
                tracing::warn!(from = %range.origin.short(), errors = ?report.rejected, "entries refused");
                break;
            }
            next = last + 1;
        }
    }
    Ok(moved)
}

/// Several nodes shown in one console (the demo); syncs every pair in process.
pub struct Cluster(pub Vec<Node>);

impl Nodes for Cluster {
    fn names(&self) -> Vec<String> {
        self.0.iter().map(|n| n.name.clone()).collect()
    }

    fn summary(&self, index: usize) -> Result<NodeSummary, String> {
        self.0[index].summary().map_err(|e| e.to_string())
    }

    fn sync_all(&self) -> Result<String, String> {
        let mut moved = 0;
        for (i, a) in self.0.iter().enumerate() {
            for b in &self.0[i + 1..] {
                let c = a
                    .sync_in_process(b)
                    .map_err(|e| format!("{} <-> {}: {e}", a.name, b.name))?;
                moved += c.received + c.sent;
            }
        }
        Ok(format!("synced every pair of nodes: {moved} entries moved"))
    }
}
