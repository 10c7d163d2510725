//! What travels in a sync session: one [`Message`] per frame, encoded with the one codec
//! (`Kind::SyncMessage`). Decoding checks the frame size before it looks inside, so a
//! peer cannot make a node allocate or parse more than [`MAX_FRAME_BYTES`].

use super::{MAX_FRAME_BYTES, Nonce, SyncError};
use crate::auth::Certificate;
use crate::codec::{self, Kind};
use crate::ids::{NetworkId, NodeId};
use crate::sign::Sig;
use crate::vv::VersionVector;
use serde::{Deserialize, Serialize};

/// The session protocol's version, carried in [`Hello`]. Bumped when the message flow
/// changes in a way an older node could not follow. 2: feed format 2 (entries travel
/// with only the signatures that authenticate their runs).
pub const PROTOCOL_VERSION: u16 = 2;

/// One frame of the session. Variants are only ever appended: postcard encodes an enum
/// variant as its index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Who the sender is and the nonce the peer must sign.
    Hello(Box<Hello>),
    /// Proof that the sender holds the key of the certificate in its hello.
    Auth(Auth),
    /// How far the sender holds each feed.
    Vector(VersionVector),
    /// Entries the receiver lacks.
    Batch(Batch),
    /// What the receiver made of one batch.
    Ack(Ack),
    /// The sender has sent everything and every batch of it was acked.
    Done,
    /// The sender gives up on the session, and why.
    Error { reason: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol: u16,
    pub network: NetworkId,
    /// The sender's enrollment certificate.
    pub certificate: Certificate,
    /// HQ's self-signed certificate: the root the sender's certificate chains to.
    pub hq: Certificate,
    pub nonce: Nonce,
}

/// A signature over the session transcript (see [`auth_transcript`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Auth {
    pub sig: Sig,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// Counts up from 1 within a session; the ack names it.
    pub id: u64,
    /// Certificates of origins in this batch that the receiver may not know yet, so a
    /// relayed feed can be verified even if its enrollment came by another path.
    pub certificates: Vec<Certificate>,
    /// The entries, each origin's in feed order, packed (see [`super::packed`]).
    pub packed: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub batch: u64,
    pub applied: u32,
    pub duplicates: u32,
    pub rejected: u32,
    /// Why entries or certificates were refused, at most [`super::MAX_ACK_REASONS`].
    pub reasons: Vec<String>,
    /// Origins whose feed stopped at a refused entry: later entries of them would only be
    /// refused too, so the sender skips them for the rest of the session.
    pub stalled: Vec<NodeId>,
}

impl Message {
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(Kind::SyncMessage, self)
    }

    /// Decodes one frame. Any bytes give a message or an error, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<Message, SyncError> {
        if bytes.len() > MAX_FRAME_BYTES {
            return Err(SyncError::FrameTooLarge {
                len: bytes.len(),
                max: MAX_FRAME_BYTES,
            });
        }
        Ok(codec::decode(Kind::SyncMessage, bytes)?)
    }

    /// A short name for errors and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Hello(_) => "hello",
            Message::Auth(_) => "auth",
            Message::Vector(_) => "version vector",
            Message::Batch(_) => "batch",
            Message::Ack(_) => "ack",
            Message::Done => "done",
            Message::Error { .. } => "error",
        }
    }
}

const AUTH_DOMAIN: &[u8] = b"cardmesh/sync-auth/1";

/// Which end of the session signs: part of the transcript, so a signature made as one
/// end can never be replayed as the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Side {
    Initiator,
    Responder,
}

#[derive(Serialize)]
struct Transcript<'a> {
    network: &'a NetworkId,
    initiator: &'a NodeId,
    responder: &'a NodeId,
    initiator_nonce: &'a Nonce,
    responder_nonce: &'a Nonce,
    signer: Side,
}

/// The bytes each end signs to prove its key: both identities and both fresh nonces, so
/// a proof belongs to exactly one session between exactly these two nodes.
pub fn auth_transcript(
    network: &NetworkId,
    initiator: (&NodeId, &Nonce),
    responder: (&NodeId, &Nonce),
    signer: Side,
) -> Vec<u8> {
    let mut out = AUTH_DOMAIN.to_vec();
    postcard::to_io(
        &Transcript {
            network,
            initiator: initiator.0,
            responder: responder.0,
            initiator_nonce: initiator.1,
            responder_nonce: responder.1,
            signer,
        },
        &mut out,
    )
    .expect("serializing to a Vec cannot fail");
    out
}
