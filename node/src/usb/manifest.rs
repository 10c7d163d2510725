//! The stick's manifest, `manifest.cmm`: which network the stick serves (in clear, so a
//! stick of another network is recognised before anything is written to it), the
//! stick's version vector and its segment list (sealed). Written last in a sync and
//! atomically, so it never names a segment that is not on the stick. A node reads it to
//! notice deleted segments, never to decide what the stick holds: that is worked out
//! from the segments themselves.

use super::sealed::{self, Nonce, OpenError};
use crate::identity::NetworkKey;
use cardmesh_model::codec::Kind;
use cardmesh_model::{FeedRange, NetworkId, NodeId, VersionVector};
use serde::{Deserialize, Serialize};

pub const FILE_NAME: &str = "manifest.cmm";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestHeader {
    pub network: NetworkId,
}

/// One segment file as the manifest lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listed {
    pub origin: NodeId,
    pub from: u64,
    pub to: u64,
    pub bytes: u64,
}

impl Listed {
    pub fn range(&self) -> FeedRange {
        FeedRange {
            origin: self.origin,
            from: self.from,
            to: self.to,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// How far each feed is held without a hole.
    pub vector: VersionVector,
    /// Every readable segment, by origin then range.
    pub segments: Vec<Listed>,
}

/// Why a manifest could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestError {
    /// The file is not a cardmesh stick manifest at all.
    NotAManifest(String),
    /// A manifest of another network's stick.
    Foreign(NetworkId),
    /// Ours, but cut short, altered or undecodable: it will be rewritten.
    Damaged(String),
}

pub fn seal(key: &NetworkKey, network: NetworkId, manifest: &Manifest, nonce: Nonce) -> Vec<u8> {
    let plain = postcard::to_stdvec(manifest).expect("serializing to a Vec cannot fail");
    sealed::seal(
        Kind::StickManifest,
        key,
        ManifestHeader { network },
        &plain,
        nonce,
    )
}

pub fn open(key: &NetworkKey, network: NetworkId, bytes: &[u8]) -> Result<Manifest, ManifestError> {
    let header: ManifestHeader = match sealed::peek(Kind::StickManifest, bytes) {
        Ok(h) => h,
        Err(OpenError::NotOurs(e)) => return Err(ManifestError::NotAManifest(e.to_string())),
        Err(_) => return Err(ManifestError::Damaged("cut short".into())),
    };
    if header.network != network {
        // One flipped bit in the clear header must not make our own stick look like
        // another network's (and be refused): if it opens under our id, it is ours.
        let ours = ManifestHeader { network };
        if sealed::open_under(Kind::StickManifest, key, bytes, &ours).is_ok() {
            return Err(ManifestError::Damaged(
                "the network id in its clear header is damaged".into(),
            ));
        }
        return Err(ManifestError::Foreign(header.network));
    }
    let (_, plain): (ManifestHeader, _) =
        sealed::open(Kind::StickManifest, key, bytes).map_err(|e| {
            ManifestError::Damaged(match e {
                OpenError::SealBroken => "does not open with this network's key".into(),
                other => format!("{other:?}"),
            })
        })?;
    postcard::from_bytes(&plain).map_err(|e| ManifestError::Damaged(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_opens_only_for_its_network() {
        let key = NetworkKey([4; 32]);
        let net = NetworkId([1; 16]);
        let mut vector = VersionVector::new();
        vector.advance(NodeId([2; 32]), 9);
        let m = Manifest {
            vector,
            segments: vec![Listed {
                origin: NodeId([2; 32]),
                from: 1,
                to: 9,
                bytes: 300,
            }],
        };
        let bytes = seal(&key, net, &m, [5; 24]);
        assert_eq!(open(&key, net, &bytes), Ok(m));
        assert_eq!(
            open(&key, NetworkId([3; 16]), &bytes),
            Err(ManifestError::Foreign(net))
        );
        assert!(matches!(
            open(&NetworkKey([6; 32]), net, &bytes),
            Err(ManifestError::Damaged(_))
        ));
        assert!(matches!(
            open(&key, net, b"# my shopping list"),
            Err(ManifestError::NotAManifest(_))
        ));
        // The network id follows the codec's 4-byte prefix, in clear.
        let mut flipped = bytes.clone();
        flipped[4] ^= 0x10;
        assert!(matches!(
            open(&key, net, &flipped),
            Err(ManifestError::Damaged(why)) if why.contains("network id")
        ));
    }
}
