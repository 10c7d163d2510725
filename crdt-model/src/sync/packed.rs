//! How a batch's entries travel: grouped into runs of one origin's consecutive entries,
//! with what the receiver can recompute left out (the origin and sequence number of every
//! entry but the first, and every hash link but the first) and the signatures it does not
//! need (all but the run's last and the checkpoints, `entry::keeps_signature`), then
//! compressed with zstd.
//! A dial-up line is the slowest link a node has, and entries are what fills it.
//!
//! Nothing is trusted for being left out: the receiver rebuilds each entry's `prev` from
//! the entry before it, so a sender that packed a broken chain produces entries whose
//! signatures fail, exactly as if it had sent them whole.

use super::{MAX_BATCH_ENTRIES, MAX_FRAME_BYTES};
use crate::body::Body;
use crate::entry::{Entry, keeps_signature};
use crate::hlc::Hlc;
use crate::ids::NodeId;
use crate::sign::{Hash, Sig};
use serde::{Deserialize, Serialize};

/// zstd's level for batches: its default, which keeps a LAN sync CPU-cheap; batches are
/// small enough that higher levels gain little.
const LEVEL: i32 = 3;

/// Unpacked runs of a batch never exceed this: the entries of a batch fit in a frame
/// (see [`packed_bound`]), and the runs are smaller than the entries. It bounds what a
/// compressed frame can make a node allocate.
const MAX_UNPACKED_BYTES: usize = MAX_FRAME_BYTES;

#[derive(Serialize, Deserialize)]
struct Run {
    origin: NodeId,
    first_seq: u64,
    /// The hash the first entry chains to.
    prev: Hash,
    entries: Vec<Link>,
}

#[derive(Serialize, Deserialize)]
struct Link {
    /// The clock's milliseconds less the previous entry's (the first entry's less 0):
    /// a feed's clock moves by small steps, and small numbers take one or two bytes.
    millis_step: i64,
    logical: u32,
    body: Body,
    sig: Option<Sig>,
}

/// Why a packed batch could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackError {
    #[error("batch does not decompress within {max} bytes: {reason}")]
    Decompress { max: usize, reason: String },
    #[error("batch runs do not decode: {0}")]
    Decode(String),
    #[error("batch holds more than {max} entries")]
    TooManyEntries { max: usize },
    #[error("batch run of feed {origin} overflows the sequence numbers")]
    SeqOverflow { origin: NodeId },
}

/// The most bytes `pack` can produce from entries whose encodings add up to `raw`:
/// zstd's worst case on incompressible input plus the run headers.
pub fn packed_bound(raw: usize) -> usize {
    raw + raw / 128 + 512
}

/// Packs entries, in the order given, into the bytes a batch carries.
pub fn pack(entries: &[Entry]) -> Vec<u8> {
    let mut runs: Vec<Run> = Vec::new();
    let mut tip: Option<(NodeId, u64, Hash, u64)> = None;
    for e in entries {
        let continues = tip.is_some_and(|(origin, seq, hash, _)| {
            origin == e.origin && seq.checked_add(1) == Some(e.seq) && hash == e.prev
        });
        let millis_before = match tip {
            Some((.., millis)) if continues => millis,
            _ => 0,
        };
        if !continues {
            runs.push(Run {
                origin: e.origin,
                first_seq: e.seq,
                prev: e.prev,
                entries: Vec::new(),
            });
        }
        runs.last_mut()
            .expect("a run was just pushed if there was none")
            .entries
            .push(Link {
                millis_step: e.hlc.millis.wrapping_sub(millis_before) as i64,
                logical: e.hlc.logical,
                body: e.body.clone(),
                sig: e.sig,
            });
        tip = Some((e.origin, e.seq, e.hash(), e.hlc.millis));
    }
    for run in &mut runs {
        let last = run.entries.len() - 1;
        for (i, link) in run.entries.iter_mut().enumerate() {
            if !keeps_signature(run.first_seq + i as u64, i == last) {
                link.sig = None;
            }
        }
    }
    let raw = postcard::to_stdvec(&runs).expect("serializing to a Vec cannot fail");
    zstd::bulk::compress(&raw, LEVEL).expect("compressing into a Vec cannot fail")
}

/// Rebuilds the entries of a packed batch. Any bytes give entries or an error, never a
/// panic, and never more than [`MAX_UNPACKED_BYTES`] of decompressed data.
pub fn unpack(packed: &[u8]) -> Result<Vec<Entry>, PackError> {
    let raw =
        zstd::bulk::decompress(packed, MAX_UNPACKED_BYTES).map_err(|e| PackError::Decompress {
            max: MAX_UNPACKED_BYTES,
            reason: e.to_string(),
        })?;
    let runs: Vec<Run> =
        postcard::from_bytes(&raw).map_err(|e| PackError::Decode(e.to_string()))?;
    let total: usize = runs.iter().map(|r| r.entries.len()).sum();
    if total > MAX_BATCH_ENTRIES {
        return Err(PackError::TooManyEntries {
            max: MAX_BATCH_ENTRIES,
        });
    }
    let mut out = Vec::with_capacity(total);
    for run in runs {
        let mut prev = run.prev;
        let mut seq = run.first_seq;
        let mut millis = 0u64;
        let last = run.entries.len();
        for (i, link) in run.entries.into_iter().enumerate() {
            millis = millis.wrapping_add(link.millis_step as u64);
            let e = Entry {
                origin: run.origin,
                seq,
                prev,
                hlc: Hlc::new(millis, link.logical),
                body: link.body,
                sig: link.sig,
            };
            if i + 1 < last {
                prev = e.hash();
                seq = seq
                    .checked_add(1)
                    .ok_or(PackError::SeqOverflow { origin: run.origin })?;
            }
            out.push(e);
        }
    }
    Ok(out)
}
