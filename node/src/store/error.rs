//! What can go wrong with a store, said so that a shop manager knows what to do next.
//!
//! `StoreError` is `Clone` because one failed group commit has to answer every caller
//! that shared it.

use cardmesh_model::{AuthError, EntryError, NodeId, TerminalId};
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error(
        "cannot read or write the store file: {0}; check the disk (free space, permissions) and restart the node"
    )]
    Io(#[source] Arc<io::Error>),
    #[error(
        "the store file is damaged ({0}); restore it from a backup or re-create this node and sync it from its peers"
    )]
    Corrupt(String),
    #[error(
        "the database refused the operation: {0}; restart the node, and report it if it happens again"
    )]
    Database(String),
    #[error("no store at {}: run `cardmesh init` (or `cardmesh join`) first", .0.display())]
    Missing(PathBuf),
    #[error("a store already exists at {}; refusing to overwrite it", .0.display())]
    AlreadyExists(PathBuf),
    #[error("the store at {} is open in another cardmesh process; stop that one first", .0.display())]
    InUse(PathBuf),
    #[error(
        "this store belongs to node {store}, not to the key given ({key}): wrong data folder or wrong key file"
    )]
    WrongNode { store: NodeId, key: NodeId },
    #[error(
        "the store was written by a newer cardmesh (schema v{found}; this one reads up to v{supported}): upgrade cardmesh on this node"
    )]
    NewerSchema { found: u32, supported: u32 },
    #[error(
        "the store holds feed entries of format 1, written before feed format 2; this cardmesh cannot verify them: keep the older cardmesh on this node, or re-create its data folder (`cardmesh init` or `cardmesh join`) and let it sync from peers that run this release"
    )]
    OldFeedFormat,
    #[error(transparent)]
    Entry(#[from] EntryError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("terminal {0} has used every sequence number; replace its PSAM")]
    TermSeqExhausted(TerminalId),
    #[error("the store is shutting down and takes no more writes")]
    Closed,
    #[error("the store's views differ from its feeds: {0}")]
    ViewsDiffer(String),
}

impl StoreError {
    pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
        StoreError::Corrupt(what.to_string())
    }
}

impl From<redb::Error> for StoreError {
    fn from(e: redb::Error) -> StoreError {
        match e {
            redb::Error::Io(io) => StoreError::Io(Arc::new(io)),
            redb::Error::Corrupted(what) => StoreError::Corrupt(what),
            other => StoreError::Database(other.to_string()),
        }
    }
}

/// The specific redb errors all funnel through `redb::Error`, which knows which of them
/// are I/O and which are corruption.
macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> StoreError {
                StoreError::from(redb::Error::from(e))
            }
        }
    )*};
}

from_redb!(
    redb::StorageError,
    redb::TableError,
    redb::TransactionError,
    redb::CommitError,
    redb::DatabaseError
);

impl From<io::Error> for StoreError {
    fn from(e: io::Error) -> StoreError {
        StoreError::Io(Arc::new(e))
    }
}
