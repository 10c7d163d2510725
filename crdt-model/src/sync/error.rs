//! Why a session stopped. Every refusal names the peer and what to do about it, because
//! the message ends up in a shop manager's log.

use super::message::Message;
use crate::codec::CodecError;
use crate::ids::{NetworkId, NodeId};

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("garbled sync message ({0}): the link corrupted it or the peer is not cardmesh")]
    Garbled(#[from] CodecError),
    #[error("sync frame of {len} bytes is over the {max}-byte limit: the peer is misbehaving")]
    FrameTooLarge { len: usize, max: usize },
    #[error("peer speaks sync protocol {theirs}, this node {ours}: upgrade the older node")]
    UnsupportedProtocol { ours: u16, theirs: u16 },
    #[error(
        "peer belongs to network {theirs}, this node to {ours}: check the peer address or the node's enrollment"
    )]
    WrongNetwork { ours: NetworkId, theirs: NetworkId },
    #[error(
        "peer {node} is not enrolled in this network ({reason}): enroll it at HQ and bring its certificate"
    )]
    NotEnrolled { node: NodeId, reason: String },
    #[error("peer {node} has been revoked by HQ: it may no longer sync")]
    Revoked { node: NodeId },
    #[error(
        "peer presented the certificate of {node} but cannot prove it holds that node's key: an impostor or a copied certificate"
    )]
    BadAuth { node: NodeId },
    #[error("the peer is this node itself: check the peer address")]
    SelfConnection,
    #[error("protocol violation: got a {got} while {expected}")]
    Unexpected {
        got: &'static str,
        expected: &'static str,
    },
    #[error("peer acked batch {0}, which is not in flight: the peer is misbehaving")]
    UnknownBatch(u64),
    #[error("peer sent {got} {what}, over the limit of {max}: the peer is misbehaving")]
    OverLimit {
        what: &'static str,
        got: usize,
        max: usize,
    },
    #[error("peer sent a bad batch ({0}): the link corrupted it or the peer is misbehaving")]
    BadBatch(#[from] super::packed::PackError),
    #[error("peer ended the session: {reason}")]
    PeerRefused { reason: String },
    #[error("the session is over; start a new one")]
    Closed,
    #[error("local store failed during sync: {0}")]
    Store(Box<dyn std::error::Error + Send + Sync>),
}

impl SyncError {
    /// The frame that tells the peer why this node gave up, if the peer should hear it:
    /// not when the peer gave up first or the session was already over.
    pub fn farewell(&self) -> Option<Vec<u8>> {
        match self {
            SyncError::PeerRefused { .. } | SyncError::Closed => None,
            // The details of a local disk failure are this node's business.
            SyncError::Store(_) => Some(
                Message::Error {
                    reason: "the peer's store failed; try again later".into(),
                }
                .encode(),
            ),
            other => Some(
                Message::Error {
                    reason: other.to_string(),
                }
                .encode(),
            ),
        }
    }
}
