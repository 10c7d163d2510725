//! Segments: a contiguous run of one origin's entries, with the origin's certificate so
//! that a node that never heard of the origin can still verify it (enrollment travels by
//! stick too). On the stick a segment is `segments/<origin-hex>/<from>-<to>.cms`, its
//! entries postcard-encoded, zstd-compressed and sealed with the network key.
//!
//! The seal keeps strangers out; the entries keep their own signatures, so even a holder
//! of the network key cannot make a node accept an entry its origin did not sign.

use super::sealed::{self, Nonce, OpenError};
use crate::identity::NetworkKey;
use cardmesh_model::codec::Kind;
use cardmesh_model::sign::PublicKey;
use cardmesh_model::{Certificate, Entry, FeedRange, NetworkId, NodeId};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// At most this many entries in one segment...
pub const MAX_SEGMENT_ENTRIES: usize = 4096;
/// ...and at most this many bytes of encoded entries before compression, so that a
/// segment stays around a megabyte whatever the entries are.
pub const MAX_SEGMENT_PLAIN: usize = 1 << 20;
/// A file larger than this is not read: no segment written by cardmesh comes near it
/// (a single entry larger than `MAX_SEGMENT_PLAIN` travels alone, and entries are
/// bounded by the sync frame size).
pub const MAX_SEGMENT_FILE: u64 = 4 << 20;
/// Decompression stops here, so a crafted file cannot make a node allocate gigabytes.
const MAX_DECOMPRESSED: usize = 4 << 20;
const ZSTD_LEVEL: i32 = 3;
pub const EXTENSION: &str = "cms";

/// The clear-text part of a segment: enough to file it and to tell whose it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentHeader {
    pub network: NetworkId,
    pub origin: NodeId,
    pub from: u64,
    pub to: u64,
}

impl SegmentHeader {
    pub fn range(&self) -> FeedRange {
        FeedRange {
            origin: self.origin,
            from: self.from,
            to: self.to,
        }
    }
}

/// What is sealed inside a segment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentBody {
    /// The origin's certificate, if the writer held it (not needed for HQ's own feed).
    pub certificate: Option<Certificate>,
    pub entries: Vec<Entry>,
}

/// Why a segment file cannot be used, as far as the file alone can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentError {
    NotASegment(String),
    Truncated,
    Damaged(String),
    SealBroken,
    ForeignNetwork(NetworkId),
    Misnamed {
        named: FeedRange,
        holds: FeedRange,
    },
    /// The seal opened but what is inside is not a genuine run of the origin's feed.
    Forged(String),
}

impl From<OpenError> for SegmentError {
    fn from(e: OpenError) -> SegmentError {
        match e {
            OpenError::NotOurs(c) => SegmentError::NotASegment(c.to_string()),
            OpenError::Truncated => SegmentError::Truncated,
            OpenError::Damaged(d) => SegmentError::Damaged(d),
            OpenError::SealBroken => SegmentError::SealBroken,
        }
    }
}

/// A segment's path relative to the stick folder.
pub fn relative_path(range: &FeedRange) -> PathBuf {
    Path::new("segments")
        .join(range.origin.to_string())
        .join(format!("{:020}-{:020}.{EXTENSION}", range.from, range.to))
}

/// The range a segment file name claims, from its origin folder's name and its own;
/// `None` for anything that is not a segment name.
pub fn parse_name(origin_dir: &str, file: &str) -> Option<FeedRange> {
    let origin: NodeId = origin_dir.parse().ok()?;
    let stem = file.strip_suffix(EXTENSION)?.strip_suffix('.')?;
    let (from, to) = stem.split_once('-')?;
    let digits = |s: &str| s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(from) || !digits(to) {
        return None;
    }
    let range = FeedRange {
        origin,
        from: from.parse().ok()?,
        to: to.parse().ok()?,
    };
    (range.from >= 1 && range.from <= range.to).then_some(range)
}

/// Encodes, compresses and seals a segment. `nonce` must be fresh random bytes.
pub fn seal(
    key: &NetworkKey,
    network: NetworkId,
    body: &SegmentBody,
    nonce: Nonce,
) -> Result<Vec<u8>, std::io::Error> {
    let (first, last) = match (body.entries.first(), body.entries.last()) {
        (Some(f), Some(l)) => (f, l),
        _ => return Err(std::io::Error::other("a segment needs at least one entry")),
    };
    let header = SegmentHeader {
        network,
        origin: first.origin,
        from: first.seq,
        to: last.seq,
    };
    let plain = postcard::to_stdvec(body).map_err(std::io::Error::other)?;
    let packed = zstd::bulk::compress(&plain, ZSTD_LEVEL)?;
    Ok(sealed::seal(
        Kind::StickSegment,
        key,
        header,
        &packed,
        nonce,
    ))
}

/// The encoded size of a segment's entries before compression.
pub fn plain_size(body: &SegmentBody) -> usize {
    postcard::experimental::serialized_size(body).unwrap_or(usize::MAX)
}

/// The clear header of a segment of this network, read without the key.
pub fn peek(network: NetworkId, bytes: &[u8]) -> Result<SegmentHeader, SegmentError> {
    let header: SegmentHeader = sealed::peek(Kind::StickSegment, bytes)?;
    if header.network != network {
        return Err(SegmentError::ForeignNetwork(header.network));
    }
    Ok(header)
}

/// Opens a segment file of this network and checks that it holds exactly the run of
/// the origin's feed its name and header claim, chained and signed. `named` is what the
/// file name claims, if the caller found it by name.
pub fn open(
    key: &NetworkKey,
    network: NetworkId,
    named: Option<FeedRange>,
    bytes: &[u8],
) -> Result<(SegmentHeader, SegmentBody), SegmentError> {
    // Look at the clear header first: a segment of another network is not a forgery,
    // and a truncated one should say so rather than "does not open".
    let header = peek(network, bytes)?;
    if let Some(named) = named
        && named != header.range()
    {
        return Err(SegmentError::Misnamed {
            named,
            holds: header.range(),
        });
    }
    let (header, packed): (SegmentHeader, _) = sealed::open(Kind::StickSegment, key, bytes)?;
    let plain = zstd::bulk::decompress(&packed, MAX_DECOMPRESSED)
        .map_err(|e| SegmentError::Damaged(format!("does not decompress: {e}")))?;
    let body: SegmentBody = postcard::from_bytes(&plain)
        .map_err(|e| SegmentError::Damaged(format!("does not decode: {e}")))?;
    check_contents(&header, &body).map_err(SegmentError::Forged)?;
    Ok((header, body))
}

/// The entries are `from..=to` of the origin's feed, each chained to the one before,
/// and the last one is signed by the origin. Its signature signs its hash, which covers
/// the hash of the one before it and so on back: one verification authenticates the
/// whole run, as `entry::check_run` does.
pub fn check_contents(header: &SegmentHeader, body: &SegmentBody) -> Result<(), String> {
    if header.to < header.from || body.entries.len() as u64 != header.to - header.from + 1 {
        return Err(format!(
            "holds {} entries, not entries {}..={}",
            body.entries.len(),
            header.from,
            header.to
        ));
    }
    if let Some(cert) = &body.certificate
        && cert.node != header.origin
    {
        return Err("carries the certificate of another node".into());
    }
    let mut prev = None;
    for (i, e) in body.entries.iter().enumerate() {
        if e.origin != header.origin || e.seq != header.from + i as u64 {
            return Err(format!("entry {} is out of place", e.seq));
        }
        if let Some(hash) = prev
            && e.prev != hash
        {
            return Err(format!("entry {} does not chain to the one before", e.seq));
        }
        prev = Some(e.hash());
    }
    let key = PublicKey::of(&header.origin).ok_or("the origin is not a valid key")?;
    let last = body.entries.last().ok_or("holds no entries")?;
    if !last.signature_valid(&key) {
        return Err(format!("entry {} is not signed by its origin", last.seq));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cardmesh_model::body::{BlacklistEvent, BlockReason, Body};
    use cardmesh_model::{CardAsn, FeedHead, Hlc, NodeKey};

    const NET: NetworkId = NetworkId([7; 16]);

    fn run(key: &NodeKey, n: u64) -> Vec<Entry> {
        let mut head = FeedHead::EMPTY;
        (1..=n)
            .map(|i| {
                let e = Entry::create(
                    key,
                    head,
                    Hlc::new(i, 0),
                    Body::Blacklist(BlacklistEvent::Block {
                        asn: CardAsn([i as u8; 8]),
                        reason: BlockReason::Lost,
                        operator: None,
                    }),
                );
                head = e.head();
                e
            })
            .collect()
    }

    fn body(entries: Vec<Entry>) -> SegmentBody {
        SegmentBody {
            certificate: None,
            entries,
        }
    }

    #[test]
    fn names_round_trip_and_strangers_are_not_segments() {
        let range = FeedRange {
            origin: NodeId([0xab; 32]),
            from: 4097,
            to: 8192,
        };
        let path = relative_path(&range);
        let dir = path
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap();
        let file = path.file_name().unwrap().to_str().unwrap();
        assert_eq!(file, "00000000000000004097-00000000000000008192.cms");
        assert_eq!(parse_name(dir, file), Some(range));
        for bad in [
            "00000000000000004097-00000000000000008192.cms.tmp",
            "4097-8192.cms",
            "00000000000000008192-00000000000000004097.cms",
            "00000000000000000000-00000000000000000001.cms",
            "notes.txt",
        ] {
            assert_eq!(parse_name(dir, bad), None, "{bad}");
        }
        assert_eq!(parse_name("not-a-node", file), None);
    }

    #[test]
    fn a_sealed_segment_opens_to_its_entries() {
        let key = NodeKey::from_seed(&[1; 32]);
        let nk = NetworkKey([9; 32]);
        let b = body(run(&key, 5));
        let bytes = seal(&nk, NET, &b, [1; 24]).unwrap();
        let named = b.entries[0].entry_ref();
        let range = FeedRange {
            origin: named.origin,
            from: 1,
            to: 5,
        };
        let (h, got) = open(&nk, NET, Some(range), &bytes).unwrap();
        assert_eq!((h.range(), got), (range, b));
        assert_eq!(
            open(&nk, NetworkId([8; 16]), Some(range), &bytes),
            Err(SegmentError::ForeignNetwork(NET))
        );
        let other = FeedRange { to: 4, ..range };
        assert!(matches!(
            open(&nk, NET, Some(other), &bytes),
            Err(SegmentError::Misnamed { .. })
        ));
    }

    #[test]
    fn runs_that_are_not_genuine_are_refused() {
        let key = NodeKey::from_seed(&[1; 32]);
        let entries = run(&key, 4);
        let header = SegmentHeader {
            network: NET,
            origin: key.node_id(),
            from: 1,
            to: 4,
        };
        assert_eq!(check_contents(&header, &body(entries.clone())), Ok(()));
        let mut gap = entries.clone();
        gap.remove(1);
        assert!(check_contents(&SegmentHeader { to: 3, ..header }, &body(gap)).is_err());
        let mut bent = entries.clone();
        bent[1].hlc = Hlc::new(99, 0);
        assert!(check_contents(&header, &body(bent)).is_err());
        let mut unsigned = entries.clone();
        unsigned[3].sig.as_mut().unwrap().0[0] ^= 1;
        assert!(check_contents(&header, &body(unsigned)).is_err());
        let stranger = run(&NodeKey::from_seed(&[2; 32]), 4);
        assert!(check_contents(&header, &body(stranger)).is_err());
    }
}
