//! The USB stick link: a stick is a passive replica, a folder (by default `cardmesh/`
//! at the stick's root) of sealed feed segments plus a manifest. Syncing a node with a
//! stick moves data both ways: the node takes in what it lacks, the stick takes what it
//! lacks up to a byte budget, so a stick carried shop -> shop -> HQ is a data mule both
//! ways. A stick cannot hold a conversation, so it carries sealed segments instead of
//! running the sync session; the entries inside keep their signatures and go through
//! the store's `ingest` like any others.
//!
//! ```text
//! <stick>/cardmesh/manifest.cmm                                    sealed: vector, segment list
//! <stick>/cardmesh/segments/<origin-hex>/<from:020>-<to:020>.cms   sealed: certificate, entries
//! ```
//!
//! - `sealed`: the envelope (clear header, AEAD-sealed payload) of every file
//! - `segment`: segment naming, sealing, opening and the genuineness check
//! - `coverage`: what a stick holds and lacks, worked out from its segments (pure)
//! - `manifest`: the stick's manifest
//! - `files`: atomic writes
//! - `sync`: `sync_stick`, the shell that reads and writes the folder
//! - `mounts`: finding a mounted stick

pub mod coverage;
mod files;
pub mod manifest;
pub mod mounts;
pub mod sealed;
pub mod segment;
mod sync;

pub use mounts::{find_removable_mounts, parse_mounts};
pub use sync::sync_stick;

use crate::store::StoreError;
use cardmesh_model::{FeedRange, NetworkId, VersionVector};
use std::io;
use std::path::{Path, PathBuf};

/// The folder cardmesh keeps on a stick mounted at `mount`.
pub fn stick_folder(mount: &Path) -> PathBuf {
    mount.join("cardmesh")
}

/// Which half of a sync a progress event is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Reading the stick's segments into the node; counts entries in segments looked at.
    Reading,
    /// Writing what the stick lacks; counts entries written.
    Writing,
}

/// How far a sync is, for a progress bar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    pub phase: Phase,
    pub done: u64,
    pub total: u64,
}

/// Why a segment on the stick was not used. Each is reported and the sync goes on with
/// the other segments; nothing of a skipped segment is applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SkipReason {
    #[error("cannot be read ({0})")]
    Unreadable(String),
    #[error("is not a cardmesh segment ({0})")]
    NotASegment(String),
    #[error("is cut short: a copy or a write to the stick was interrupted")]
    Truncated,
    #[error("is damaged ({0})")]
    Damaged(String),
    #[error("does not open with this network's key: altered (a flipped bit) or forged")]
    SealBroken,
    #[error("belongs to another cardmesh network ({0})")]
    ForeignNetwork(NetworkId),
    #[error(
        "holds entries {}..={} but is named {}..={}: renamed or altered",
        holds.from, holds.to, named.from, named.to
    )]
    Misnamed { named: FeedRange, holds: FeedRange },
    #[error("opens, but its entries are not genuine: {0}")]
    Forged(String),
    #[error("this node refused its entries: {0}")]
    Refused(String),
    #[error("differs from this node's copy of the feed: a forked or altered history")]
    Differs,
    #[error("repeats entries other segments on the stick hold: a replayed or leftover copy")]
    Duplicate,
    #[error(
        "starts after entries this node lacks and the stick does not hold; kept for a node that has them"
    )]
    Unreachable,
    #[error("is listed in the stick's manifest but is not on the stick: deleted?")]
    Missing,
}

/// A segment that was skipped, by its path inside the stick folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: SkipReason,
}

/// What one sync with a stick did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StickReport {
    /// Entries from the stick this node applied.
    pub taken_in: u64,
    /// Entries written to the stick.
    pub written_out: u64,
    /// Genuine segments found on the stick.
    pub segments_read: usize,
    pub segments_written: usize,
    pub skipped: Vec<Skipped>,
    /// Skipped segments deleted because good copies of their entries are now on the
    /// stick.
    pub removed: Vec<PathBuf>,
    /// Bytes of segments written by this sync (what the budget limits).
    pub bytes_written: u64,
    /// Bytes the stick's readable segments and manifest take after the sync.
    pub stick_bytes: u64,
    /// The budget ran out before the stick had everything this node holds.
    pub budget_exhausted: bool,
    /// The stick ran out of space before it had everything this node holds.
    pub stick_full: bool,
    /// Entries this node holds that the stick still lacks: what the next sync writes.
    pub stick_lacks: u64,
    /// The manifest was missing or damaged and has been written anew.
    pub manifest_rebuilt: bool,
    /// How far the stick holds each feed without a hole, after the sync.
    pub stick_vector: VersionVector,
}

/// Why a sync with a stick could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum UsbError {
    #[error("{} does not exist: is the stick plugged in and mounted?", .0.display())]
    NoStick(PathBuf),
    #[error("{} is not a cardmesh stick folder: {reason}", path.display())]
    NotAStick { path: PathBuf, reason: String },
    #[error(
        "the stick at {} carries data of another cardmesh network ({network}); use a stick of this network or an empty one",
        path.display()
    )]
    ForeignStick { path: PathBuf, network: NetworkId },
    #[error(
        "cannot write to the stick at {} ({source}): slide its write-protect switch off, free some space, or remount it read-write",
        path.display()
    )]
    Unwritable { path: PathBuf, source: io::Error },
    #[error("reading or writing {} failed ({source}): check that the stick is still plugged in", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
}
