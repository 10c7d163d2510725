//! What the simulation knows independently of the nodes: the cards in customers'
//! hands, the transactions a terminal acknowledged, the blocks and clears written, and
//! the tallies of what was done. The invariants compare the nodes against it.

use cardmesh_drivers::card::VirtualCard;
use cardmesh_model::body::EntryRef;
use cardmesh_model::body::{BlacklistEvent, Body, CounterSpace};
use cardmesh_model::{CardAsn, Entry, VersionVector};
use std::collections::BTreeMap;

/// A card out in the world.
pub struct Card {
    pub asn: CardAsn,
    /// `None` only while the card sits in a reader.
    pub chip: Option<VirtualCard>,
    /// The node whose counter the card is at.
    pub at: usize,
    pub named: bool,
}

/// A transaction a terminal reported as done to its cashier.
#[derive(Clone, Debug)]
pub struct Ack {
    pub entry: EntryRef,
    pub asn: CardAsn,
    pub space: CounterSpace,
    pub counter: u16,
}

/// A block or clear written somewhere, as the model of who has heard of it.
#[derive(Clone, Debug)]
pub struct BlacklistWrite {
    pub entry: EntryRef,
    pub asn: CardAsn,
    /// The blocks a clear lifts; empty for a block.
    pub clears: Vec<EntryRef>,
    pub is_block: bool,
}

impl BlacklistWrite {
    pub fn of(entry: &Entry) -> Option<BlacklistWrite> {
        match &entry.body {
            Body::Blacklist(BlacklistEvent::Block { asn, .. }) => Some(BlacklistWrite {
                entry: entry.entry_ref(),
                asn: *asn,
                clears: Vec::new(),
                is_block: true,
            }),
            Body::Blacklist(BlacklistEvent::Clear { asn, clears, .. }) => Some(BlacklistWrite {
                entry: entry.entry_ref(),
                asn: *asn,
                clears: clears.clone(),
                is_block: false,
            }),
            _ => None,
        }
    }
}

fn holds(vv: &VersionVector, e: &EntryRef) -> bool {
    vv.get(&e.origin) >= e.seq
}

/// Is `asn` blocked for a node holding `vv`, by the writes the simulation saw? A block
/// counts once the node holds it, until the node holds a clear that names it.
pub fn blocked_for(writes: &[BlacklistWrite], asn: CardAsn, vv: &VersionVector) -> bool {
    let held = |w: &&BlacklistWrite| w.asn == asn && holds(vv, &w.entry);
    writes.iter().filter(held).filter(|w| w.is_block).any(|b| {
        !writes
            .iter()
            .filter(held)
            .any(|c| !c.is_block && c.clears.contains(&b.entry))
    })
}

/// Tallies for the report: operations by kind and faults by kind.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    pub ops: BTreeMap<&'static str, u64>,
    pub faults: BTreeMap<&'static str, u64>,
}

impl Tally {
    pub fn op(&mut self, what: &'static str) {
        *self.ops.entry(what).or_default() += 1;
    }

    pub fn fault(&mut self, what: &'static str) {
        *self.faults.entry(what).or_default() += 1;
    }

    pub fn add(&mut self, other: &Tally) {
        for (k, v) in &other.ops {
            *self.ops.entry(k).or_default() += v;
        }
        for (k, v) in &other.faults {
            *self.faults.entry(k).or_default() += v;
        }
    }

    pub fn ops_total(&self) -> u64 {
        self.ops.values().sum()
    }

    pub fn faults_total(&self) -> u64 {
        self.faults.values().sum()
    }
}
