//! Feed entries: what one node appended to its own log, signed and hash-chained, and the
//! checks every replica runs before it believes one.

use crate::auth::{AuthError, Membership, authorize};
use crate::body::{Body, EntryRef};
use crate::codec::{self, CodecError, Kind};
use crate::docs::{DocError, parse_change};
use crate::hlc::Hlc;
use crate::ids::NodeId;
use crate::sign::{Hash, NodeKey, PublicKey, Sig};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub origin: NodeId,
    pub seq: u64,
    pub prev: Hash,
    pub hlc: Hlc,
    pub body: Body,
    pub sig: Sig,
}

const ENTRY_DOMAIN: &[u8] = b"cardmesh/entry/1";

#[derive(Serialize)]
struct Signed<'a> {
    origin: &'a NodeId,
    seq: u64,
    prev: &'a Hash,
    hlc: &'a Hlc,
    body: &'a Body,
}

/// Where a feed stands: its last sequence number and that entry's hash.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedHead {
    pub seq: u64,
    pub hash: Hash,
}

impl FeedHead {
    pub const EMPTY: FeedHead = FeedHead {
        seq: 0,
        hash: Hash::GENESIS,
    };
}

impl Entry {
    /// Signs the next entry of `key`'s feed after `head`.
    pub fn create(key: &NodeKey, head: FeedHead, hlc: Hlc, body: Body) -> Entry {
        let origin = key.node_id();
        let seq = head.seq + 1;
        let sig = key.sign(&signing_bytes(&Signed {
            origin: &origin,
            seq,
            prev: &head.hash,
            hlc: &hlc,
            body: &body,
        }));
        Entry {
            origin,
            seq,
            prev: head.hash,
            hlc,
            body,
            sig,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        codec::encode(Kind::Entry, self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Entry, CodecError> {
        codec::decode(Kind::Entry, bytes)
    }

    /// The hash the next entry of this feed chains to: over the whole encoded entry,
    /// signature included.
    pub fn hash(&self) -> Hash {
        Hash::of(&self.encode())
    }

    pub fn head(&self) -> FeedHead {
        FeedHead {
            seq: self.seq,
            hash: self.hash(),
        }
    }

    pub fn entry_ref(&self) -> EntryRef {
        EntryRef {
            origin: self.origin,
            seq: self.seq,
        }
    }

    pub fn signature_valid(&self, key: &PublicKey) -> bool {
        let msg = signing_bytes(&Signed {
            origin: &self.origin,
            seq: self.seq,
            prev: &self.prev,
            hlc: &self.hlc,
            body: &self.body,
        });
        key.verify(&msg, &self.sig)
    }
}

fn signing_bytes(s: &Signed<'_>) -> Vec<u8> {
    let mut out = ENTRY_DOMAIN.to_vec();
    postcard::to_io(s, &mut out).expect("serializing to a Vec cannot fail");
    out
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("entry {0:?}: {1}")]
    Auth(EntryRef, AuthError),
    #[error("entry {0:?} has a bad signature: forged or corrupted")]
    BadSignature(EntryRef),
    #[error("entry {got} of feed {origin} arrived before entry {expected}")]
    Gap {
        origin: NodeId,
        expected: u64,
        got: u64,
    },
    #[error("entry {0:?} does not chain to the entry before it")]
    BrokenChain(EntryRef),
    #[error("entry {0:?} differs from the one already held: the origin signed two histories")]
    Fork(EntryRef),
    #[error("entry {0:?}: {1}")]
    BadDocChange(EntryRef, DocError),
}

/// What checking a run of one origin's entries found: the first `accepted` entries are
/// good and chain from the old head to `head`; `error`, if any, is why the next one is not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunCheck {
    pub accepted: usize,
    pub head: FeedHead,
    pub error: Option<EntryError>,
}

/// Checks consecutive entries of one origin's feed against the feed's current `head`:
/// sequence, hash chain, membership, authority, and signatures.
///
/// Only the last linked entry's signature is verified when all is well: it signs the
/// hash of the entry before it, which covers that entry's signature and so on back, so
/// the whole run is authenticated by one signature. On a failure each entry is checked
/// on its own to find the first bad one.
pub fn check_run(head: FeedHead, membership: &Membership, entries: &[Entry]) -> RunCheck {
    let mut linked = 0;
    let mut tip = head;
    let mut error = None;
    for e in entries {
        let r = e.entry_ref();
        if e.seq != tip.seq + 1 {
            error = Some(EntryError::Gap {
                origin: e.origin,
                expected: tip.seq + 1,
                got: e.seq,
            });
            break;
        }
        if e.prev != tip.hash {
            error = Some(EntryError::BrokenChain(r));
            break;
        }
        let member = match membership.writer(&e.origin, e.seq) {
            Ok(m) => m,
            Err(a) => {
                error = Some(EntryError::Auth(r, a));
                break;
            }
        };
        if let Err(a) = authorize(&member.cert, &e.body) {
            error = Some(EntryError::Auth(r, a));
            break;
        }
        if let Body::Doc(d) = &e.body
            && let Err(de) = parse_change(&d.change)
        {
            error = Some(EntryError::BadDocChange(r, de));
            break;
        }
        tip = e.head();
        linked += 1;
    }
    if linked == 0 {
        return RunCheck {
            accepted: 0,
            head,
            error,
        };
    }
    let origin = entries[0].origin;
    let key = &membership
        .writer(&origin, entries[0].seq)
        .expect("checked above")
        .key;
    if entries[linked - 1].signature_valid(key) {
        return RunCheck {
            accepted: linked,
            head: tip,
            error,
        };
    }
    let bad = entries[..linked]
        .iter()
        .position(|e| !e.signature_valid(key))
        .unwrap_or(linked - 1);
    let head = if bad == 0 {
        head
    } else {
        entries[bad - 1].head()
    };
    RunCheck {
        accepted: bad,
        head,
        error: Some(EntryError::BadSignature(entries[bad].entry_ref())),
    }
}
