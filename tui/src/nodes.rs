//! What the console needs from the nodes it shows, as a trait and plain data. The node
//! crate implements it over its handle.

use cardmesh_model::{CardAsn, Money, Role};

/// One member's feed as the console lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedRow {
    pub node: String,
    pub role: Role,
    pub site: String,
    pub entries: u64,
    pub this_node: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PriceLine {
    pub name: String,
    pub unit: String,
    pub price: Option<Money>,
}

/// One node's state for the status screen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSummary {
    pub node: String,
    pub role: Role,
    pub site: String,
    pub network: String,
    pub total_entries: u64,
    pub store_bytes: u64,
    pub cards: u64,
    pub blacklisted: u64,
    pub feeds: Vec<FeedRow>,
    pub blocked: Vec<CardAsn>,
    pub prices: Vec<PriceLine>,
}

/// The nodes one console shows (one for a site's own node; several in the demo).
pub trait Nodes {
    fn names(&self) -> Vec<String>;
    /// The summary of node `index`, or an error in words a manager can act on.
    fn summary(&self, index: usize) -> Result<NodeSummary, String>;
    /// Runs one sync round between every pair of nodes it can reach; says what moved.
    fn sync_all(&self) -> Result<String, String>;
}
