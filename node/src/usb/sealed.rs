//! The envelope every file on a stick is wrapped in: a clear-text header (what the file
//! is, for which network, which part of which feed) followed by the sealed payload.
//!
//! The payload is XChaCha20-Poly1305 under a key derived from the network key, with a
//! fresh random nonce per file and the header as associated data, so a header cannot
//! be moved onto another payload. The header stays readable without the key so that a
//! node can tell a segment of another network (or a damaged file) from a forged one.

use crate::identity::NetworkKey;
use cardmesh_model::codec::{self, CodecError, Kind};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Derivation context: sticks never use the network key itself, only this subkey, so the
/// network key can seal other things without two uses ever sharing a key.
const KEY_CONTEXT: &str = "cardmesh 2026 usb stick seal v1";

pub type Nonce = [u8; 24];

/// A sealed file as it lies on the stick. `sealed_len` is the ciphertext's length, kept
/// ahead of it so that a cut-off file is told apart from a damaged one.
#[derive(Serialize, Deserialize)]
struct Envelope<H> {
    header: H,
    sealed_len: u64,
    nonce: Nonce,
    ciphertext: Vec<u8>,
}

/// Why an envelope does not open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenError {
    /// Not a cardmesh file of the expected kind at all.
    NotOurs(CodecError),
    /// The header is readable but the file ends before the payload does.
    Truncated,
    /// The file is cardmesh data but does not decode.
    Damaged(String),
    /// The header decodes but the payload does not open with this header and key.
    SealBroken,
}

fn cipher(key: &NetworkKey) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(&blake3::derive_key(KEY_CONTEXT, &key.0).into())
}

fn aad<H: Serialize>(kind: Kind, header: &H) -> Vec<u8> {
    codec::encode(kind, header)
}

/// Seals `plaintext` under `header`. `nonce` must be fresh random bytes for every file.
pub fn seal<H: Serialize>(
    kind: Kind,
    key: &NetworkKey,
    header: H,
    plaintext: &[u8],
    nonce: Nonce,
) -> Vec<u8> {
    let ciphertext = cipher(key)
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: &aad(kind, &header),
            },
        )
        .expect("XChaCha20-Poly1305 encrypts any length a file can have");
    codec::encode(
        kind,
        &Envelope {
            header,
            sealed_len: ciphertext.len() as u64,
            nonce,
            ciphertext,
        },
    )
}

/// Reads only the clear header, without the key: enough to see whose file this is.
/// Works on a truncated file as long as the header itself is whole.
pub fn peek<H: DeserializeOwned>(kind: Kind, bytes: &[u8]) -> Result<H, OpenError> {
    // The codec checks magic, version and kind (a unit value has no bytes); the header
    // follows and is decoded on its own, so that a cut-off tail does not hide it.
    let prefix = bytes
        .get(..4)
        .ok_or(OpenError::NotOurs(CodecError::BadMagic))?;
    codec::decode::<()>(kind, prefix).map_err(OpenError::NotOurs)?;
    postcard::take_from_bytes::<(H, u64)>(&bytes[4..])
        .map(|((header, _), _)| header)
        .map_err(|_| OpenError::Truncated)
}

/// What follows the header and `sealed_len` in a whole file: the nonce, the
/// ciphertext's length prefix (a varint) and the ciphertext.
fn tail_len(sealed_len: u64) -> u64 {
    let prefix = postcard::to_stdvec(&sealed_len).map_or(10, |v| v.len());
    24 + prefix as u64 + sealed_len
}

/// Opens a sealed file: its header and its plaintext.
pub fn open<H: Serialize + DeserializeOwned>(
    kind: Kind,
    key: &NetworkKey,
    bytes: &[u8],
) -> Result<(H, Vec<u8>), OpenError> {
    let envelope: Envelope<H> = envelope(kind, bytes)?;
    let plaintext = decrypt(kind, key, &envelope, &envelope.header)?;
    Ok((envelope.header, plaintext))
}

/// Opens a sealed file as if its clear header were `header`: whether a file whose
/// header reads as another network's was sealed by ours, with its header damaged since.
pub fn open_under<H: Serialize + DeserializeOwned>(
    kind: Kind,
    key: &NetworkKey,
    bytes: &[u8],
    header: &H,
) -> Result<Vec<u8>, OpenError> {
    let envelope: Envelope<H> = envelope(kind, bytes)?;
    decrypt(kind, key, &envelope, header)
}

fn envelope<H: DeserializeOwned>(kind: Kind, bytes: &[u8]) -> Result<Envelope<H>, OpenError> {
    let envelope: Envelope<H> = match codec::decode(kind, bytes) {
        Ok(e) => e,
        Err(CodecError::Corrupt { detail, .. }) => {
            return Err(match postcard::take_from_bytes::<(H, u64)>(&bytes[4..]) {
                Ok(((_, sealed_len), rest)) if (rest.len() as u64) < tail_len(sealed_len) => {
                    OpenError::Truncated
                }
                _ => OpenError::Damaged(detail),
            });
        }
        Err(other) => return Err(OpenError::NotOurs(other)),
    };
    if envelope.sealed_len != envelope.ciphertext.len() as u64 {
        return Err(OpenError::Damaged("sealed length does not match".into()));
    }
    Ok(envelope)
}

fn decrypt<H: Serialize>(
    kind: Kind,
    key: &NetworkKey,
    envelope: &Envelope<H>,
    header: &H,
) -> Result<Vec<u8>, OpenError> {
    cipher(key)
        .decrypt(
            XNonce::from_slice(&envelope.nonce),
            Payload {
                msg: &envelope.ciphertext,
                aad: &aad(kind, header),
            },
        )
        .map_err(|_| OpenError::SealBroken)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct H {
        a: u64,
        b: [u8; 4],
    }

    fn key(b: u8) -> NetworkKey {
        NetworkKey([b; 32])
    }

    fn sealed() -> Vec<u8> {
        seal(
            Kind::StickSegment,
            &key(1),
            H {
                a: 7,
                b: [1, 2, 3, 4],
            },
            b"secret payload bytes",
            [3; 24],
        )
    }

    #[test]
    fn opens_with_the_right_key_and_hides_the_payload() {
        let bytes = sealed();
        let (h, plain): (H, _) = open(Kind::StickSegment, &key(1), &bytes).unwrap();
        assert_eq!(
            (h, plain.as_slice()),
            (
                H {
                    a: 7,
                    b: [1, 2, 3, 4]
                },
                &b"secret payload bytes"[..]
            )
        );
        assert!(!bytes.windows(6).any(|w| w == b"secret"));
        assert_eq!(peek::<H>(Kind::StickSegment, &bytes).unwrap().a, 7);
    }

    #[test]
    fn every_kind_of_damage_is_told_apart() {
        let bytes = sealed();
        assert_eq!(
            open::<H>(Kind::StickSegment, &key(2), &bytes),
            Err(OpenError::SealBroken)
        );
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(
            open::<H>(Kind::StickSegment, &key(1), &flipped),
            Err(OpenError::SealBroken)
        );
        assert_eq!(
            open::<H>(Kind::StickSegment, &key(1), &bytes[..bytes.len() - 5]),
            Err(OpenError::Truncated)
        );
        assert_eq!(
            peek::<H>(Kind::StickSegment, &bytes[..bytes.len() - 5])
                .unwrap()
                .a,
            7
        );
        assert!(matches!(
            open::<H>(Kind::StickManifest, &key(1), &bytes),
            Err(OpenError::NotOurs(CodecError::WrongKind { .. }))
        ));
        assert!(matches!(
            open::<H>(Kind::StickSegment, &key(1), b"hello world"),
            Err(OpenError::NotOurs(CodecError::BadMagic))
        ));
        // A header moved onto another payload does not open: it is bound as AAD.
        let mut moved = bytes.clone();
        moved[4] ^= 1;
        assert_eq!(
            open::<H>(Kind::StickSegment, &key(1), &moved),
            Err(OpenError::SealBroken)
        );
    }
}
