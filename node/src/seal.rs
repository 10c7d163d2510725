//! Sealing a secret to one node: anyone may seal, only the holder of the node's key can
//! open. Used to hand the network key to a site inside its join package. X25519 with the
//! Montgomery form of the node's ed25519 key, an ephemeral sender key, a key derived
//! with blake3, and XChaCha20-Poly1305.

use cardmesh_model::{NodeId, NodeKey};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use curve25519_dalek::edwards::CompressedEdwardsY;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    pub ephemeral: [u8; 32],
    pub nonce: [u8; 24],
    pub ciphertext: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("the recipient's node id is not a valid public key")]
    BadRecipient,
    #[error("sealed data was not made for this node, or was altered")]
    CannotOpen,
}

const CONTEXT: &str = "cardmesh 2026 seal to node v1";

fn session_key(shared: &[u8; 32], ephemeral: &[u8; 32], recipient: &NodeId) -> [u8; 32] {
    let mut material = Vec::with_capacity(96);
    material.extend_from_slice(shared);
    material.extend_from_slice(ephemeral);
    material.extend_from_slice(&recipient.0);
    blake3::derive_key(CONTEXT, &material)
}

/// Seals `secret` to `recipient`. `randomness` is 56 fresh random bytes (ephemeral key
/// and nonce), passed in so this stays testable without a random source.
pub fn seal(recipient: &NodeId, secret: &[u8], randomness: &[u8; 56]) -> Result<Sealed, SealError> {
    let point = CompressedEdwardsY(recipient.0)
        .decompress()
        .ok_or(SealError::BadRecipient)?
        .to_montgomery();
    let eph_secret: [u8; 32] = randomness[..32].try_into().expect("32 bytes");
    let ephemeral = curve25519_dalek::MontgomeryPoint::mul_base_clamped(eph_secret).to_bytes();
    let shared = point.mul_clamped(eph_secret).to_bytes();
    let nonce: [u8; 24] = randomness[32..].try_into().expect("24 bytes");
    let cipher = XChaCha20Poly1305::new(&session_key(&shared, &ephemeral, recipient).into());
    let ciphertext = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: secret,
                aad: &recipient.0,
            },
        )
        .map_err(|_| SealError::CannotOpen)?;
    Ok(Sealed {
        ephemeral,
        nonce,
        ciphertext,
    })
}

/// Opens what was sealed to `key`'s node.
pub fn open(key: &NodeKey, sealed: &Sealed) -> Result<Vec<u8>, SealError> {
    let me = key.node_id();
    let scalar = ed25519_dalek::SigningKey::from_bytes(&key.to_seed()).to_scalar_bytes();
    let shared = curve25519_dalek::MontgomeryPoint(sealed.ephemeral)
        .mul_clamped(scalar)
        .to_bytes();
    let cipher = XChaCha20Poly1305::new(&session_key(&shared, &sealed.ephemeral, &me).into());
    cipher
        .decrypt(
            XNonce::from_slice(&sealed.nonce),
            Payload {
                msg: &sealed.ciphertext,
                aad: &me.0,
            },
        )
        .map_err(|_| SealError::CannotOpen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_recipient_opens_and_tampering_is_detected() {
        let site = NodeKey::from_seed(&[5; 32]);
        let other = NodeKey::from_seed(&[6; 32]);
        let sealed = seal(&site.node_id(), b"network key bytes", &[9; 56]).unwrap();
        assert_eq!(open(&site, &sealed).unwrap(), b"network key bytes");
        assert_eq!(open(&other, &sealed), Err(SealError::CannotOpen));
        let mut bent = sealed.clone();
        bent.ciphertext[0] ^= 1;
        assert_eq!(open(&site, &bent), Err(SealError::CannotOpen));
        assert!(!sealed.ciphertext.windows(7).any(|w| w == b"network"));
    }
}
