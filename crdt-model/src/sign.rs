//! Node keys, signatures and content hashes. A node's ed25519 secret is the same 32 bytes
//! as its iroh identity, so one key both signs its feed and authenticates its links.

use crate::ids::NodeId;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A node's signing key. Debug never shows the secret.
#[derive(Clone)]
pub struct NodeKey(SigningKey);

impl NodeKey {
    /// From 32 bytes of secret seed (fresh randomness, or the key file on disk).
    pub fn from_seed(seed: &[u8; 32]) -> NodeKey {
        NodeKey(SigningKey::from_bytes(seed))
    }

    /// The seed, for writing the key file. The only way the secret leaves this type.
    pub fn to_seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    pub fn node_id(&self) -> NodeId {
        NodeId(self.0.verifying_key().to_bytes())
    }

    pub fn sign(&self, msg: &[u8]) -> Sig {
        Sig(self.0.sign(msg).to_bytes())
    }
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeKey({}, <secret redacted>)", self.node_id().short())
    }
}

/// A node's public key, decompressed once so that verifying many entries from one origin
/// does not pay for it each time.
#[derive(Clone, Debug)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    pub fn of(node: &NodeId) -> Option<PublicKey> {
        VerifyingKey::from_bytes(&node.0).ok().map(PublicKey)
    }

    /// Strict verification: rejects small-order keys and malleable signatures.
    pub fn verify(&self, msg: &[u8], sig: &Sig) -> bool {
        let sig = ed25519_dalek::Signature::from_bytes(&sig.0);
        self.0.verify_strict(msg, &sig).is_ok()
    }
}

/// An ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sig(pub [u8; 64]);

impl fmt::Debug for Sig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sig({:02x}{:02x}..)", self.0[0], self.0[1])
    }
}

impl Serialize for Sig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Sig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Sig, D::Error> {
        struct SigVisitor;
        impl Visitor<'_> for SigVisitor {
            type Value = Sig;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("64 signature bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Sig, E> {
                <[u8; 64]>::try_from(v)
                    .map(Sig)
                    .map_err(|_| E::invalid_length(v.len(), &self))
            }
        }
        d.deserialize_bytes(SigVisitor)
    }
}

/// A blake3 content hash: the link of a feed's hash chain.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// The `prev` of a feed's first entry.
    pub const GENESIS: Hash = Hash([0; 32]);

    pub fn of(bytes: &[u8]) -> Hash {
        Hash(*blake3::hash(bytes).as_bytes())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Hash({:02x}{:02x}{:02x}{:02x})",
            self.0[0], self.0[1], self.0[2], self.0[3]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let key = NodeKey::from_seed(&[7; 32]);
        let shown = format!("{key:?}");
        assert!(shown.contains("redacted"));
        assert!(!shown.contains("0707"));
    }

    #[test]
    fn a_signature_verifies_only_for_its_message_and_key() {
        let a = NodeKey::from_seed(&[1; 32]);
        let b = NodeKey::from_seed(&[2; 32]);
        let sig = a.sign(b"hello");
        let pa = PublicKey::of(&a.node_id()).unwrap();
        let pb = PublicKey::of(&b.node_id()).unwrap();
        assert!(pa.verify(b"hello", &sig));
        assert!(!pa.verify(b"hellp", &sig));
        assert!(!pb.verify(b"hello", &sig));
    }
}
