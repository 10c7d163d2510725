//! The small shared documents people edit together, as automerge documents: the price
//! book (HQ's network prices and each site's overrides), the network registry and the
//! discount rules. Each document keeps a flat map of string keys to scalars (for example
//! `price/diesel-0/00000001795283200000` -> fen): concurrent writes to one key resolve the
//! automerge way, and no two writers ever race to create the same nested object, whose
//! loser's contents automerge would hide.
//!
//! Who may write which document is decided by its name alone (see `auth::authorize`),
//! never by its contents, so every replica accepts the same changes.

pub mod discounts;
pub mod merchants;
pub mod network;
pub mod pricebook;

use crate::ids::{NodeId, SiteId};
use automerge::{ActorId, AutoCommit, Change, ROOT, ReadDoc, ScalarValue, Value};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum DocName {
    /// Network prices and product definitions (HQ writes).
    PriceBook,
    /// One site's price overrides (that site's nodes write; HQ decides per product
    /// whether they count).
    SitePrices(SiteId),
    /// Sites, terminals, operators and limits (HQ writes).
    Network,
    /// Member class x time slot discounts and points (HQ writes).
    Discounts,
}

impl fmt::Display for DocName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DocName::PriceBook => f.write_str("price book"),
            DocName::SitePrices(s) => write!(f, "prices of site {s}"),
            DocName::Network => f.write_str("network registry"),
            DocName::Discounts => f.write_str("discount rules"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocError {
    #[error("not a valid document change: {0}")]
    Parse(String),
    #[error("document change could not be applied: {0}")]
    Apply(String),
    #[error("document edit failed: {0}")]
    Edit(String),
}

/// Parses one automerge change as carried in a feed entry.
pub fn parse_change(bytes: &[u8]) -> Result<Change, DocError> {
    Change::from_bytes(bytes.to_vec()).map_err(|e| DocError::Parse(e.to_string()))
}

/// All shared documents of one replica.
#[derive(Default)]
pub struct Docs {
    docs: BTreeMap<DocName, AutoCommit>,
}

impl Docs {
    /// Applies a change received in a feed entry. Applying a change twice is a no-op, and
    /// a change whose dependencies have not arrived yet waits inside the document.
    pub fn apply(&mut self, name: &DocName, change: &[u8]) -> Result<(), DocError> {
        let change = parse_change(change)?;
        self.docs
            .entry(name.clone())
            .or_default()
            .apply_changes([change])
            .map_err(|e| DocError::Apply(e.to_string()))
    }

    pub fn get(&self, name: &DocName) -> Option<&AutoCommit> {
        self.docs.get(name)
    }

    /// The document to edit locally (created empty if this replica has none yet).
    pub fn get_mut(&mut self, name: &DocName) -> &mut AutoCommit {
        self.docs.entry(name.clone()).or_default()
    }

    pub fn names(&self) -> impl Iterator<Item = &DocName> {
        self.docs.keys()
    }
}

/// Makes one local edit to `doc` as `actor` and returns the automerge change to put in
/// a feed entry, or `None` if the edit changed nothing.
pub fn edit(
    doc: &mut AutoCommit,
    actor: &NodeId,
    f: impl FnOnce(&mut AutoCommit) -> Result<(), automerge::AutomergeError>,
) -> Result<Option<Vec<u8>>, DocError> {
    doc.set_actor(ActorId::from(actor.0.as_slice()));
    let before = doc.get_heads();
    f(doc).map_err(|e| DocError::Edit(e.to_string()))?;
    doc.commit();
    if doc.get_heads() == before {
        return Ok(None);
    }
    Ok(doc.get_last_local_change().map(|c| c.raw_bytes().to_vec()))
}

/// Every (key, scalar) of the document's root map, in key order.
pub(crate) fn scalars(doc: &AutoCommit) -> Vec<(String, ScalarValue)> {
    doc.keys(ROOT)
        .filter_map(|k| match doc.get(ROOT, k.as_str()) {
            Ok(Some((Value::Scalar(s), _))) => Some((k, s.into_owned())),
            _ => None,
        })
        .collect()
}

pub(crate) fn as_i64(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::Int(i) => Some(*i),
        ScalarValue::Uint(u) => i64::try_from(*u).ok(),
        _ => None,
    }
}

pub(crate) fn as_str(v: &ScalarValue) -> Option<&str> {
    match v {
        ScalarValue::Str(s) => Some(s.as_str()),
        _ => None,
    }
}
