//! The HQ side of a node: the audit that verifies every card transaction's TAC and
//! answers clones, balance breaks and bad TACs with a network-wide block (`audit`);
//! reports read from the store's incremental report rows (`report`); clearing runs with
//! merchants (`settle`); the verifier that runs the audit by itself after every batch
//! that arrives (`watch`); the network registry and price book HQ keeps (`registry`);
//! and the `cardmesh report` / `settle` / `registry` commands (`cli`).
//! The arithmetic and the folds are the model's (`cardmesh_model::report`,
//! `cardmesh_model::settlement`); this module reads the store and writes files.

pub mod access;
pub mod audit;
pub mod cli;
pub mod registry;
pub mod report;
pub mod settle;
pub mod watch;

use crate::keys::KeyError;
use crate::store::{SettledAlready, Store, StoreError};
use cardmesh_model::{MerchantId, Role};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum HqError {
    #[error("only HQ does this; this node is a {0} node")]
    NotHq(Role),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(
        "this node holds no TAC master key: run the key ceremony (`cardmesh keys ceremony`) at HQ first"
    )]
    NoTacKey,
    #[error("stored HQ state is damaged: {0}")]
    Corrupt(String),
    #[error("amounts overflow: {0}")]
    Overflow(String),
    #[error("no merchant '{0}' in the network registry: add it with `cardmesh settle merchant`")]
    UnknownMerchant(MerchantId),
    #[error("{} exists already; move it away or choose another --out folder", .0.display())]
    FileExists(PathBuf),
    #[error("writing {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Settled(#[from] SettledAlready),
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
    #[error("starting the HQ verifier: {0}")]
    Spawn(std::io::Error),
    #[error(transparent)]
    Scope(#[from] cardmesh_model::report::scope::ScopeError),
    #[error("not permitted: {0}; this reader may see only merchant {1}'s figures")]
    NotPermitted(String, MerchantId),
    #[error("wrong PIN for operator {0}, or no PIN set for them in the network registry")]
    BadPin(cardmesh_model::OperatorId),
    #[error(transparent)]
    Registry(#[from] registry::Refusal),
}

/// Refuses, unless `store` is HQ's: the work of this module is HQ's alone.
pub fn require_hq(store: &Store) -> Result<(), HqError> {
    match store.own_certificate().role {
        Role::Hq => Ok(()),
        role => Err(HqError::NotHq(role)),
    }
}
