//! The one binary codec for everything cardmesh writes to disk or a wire: a magic, a
//! format version and a kind byte, then postcard. Decoding never panics and never
//! accepts trailing bytes, whatever it is given.

use serde::{Deserialize, Serialize};

pub const MAGIC: [u8; 2] = *b"CM";
/// 2: feed format 2 (entries hash without their signature; see `entry`).
pub const VERSION: u8 = 2;

/// What a blob holds. Values are fixed forever; new kinds take new values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Entry = 1,
    Certificate = 2,
    EnrollRequest = 3,
    SyncMessage = 4,
    StickSegment = 5,
    StickManifest = 6,
    View = 7,
    JoinPackage = 8,
    KeyPackage = 9,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("not cardmesh data (bad magic)")]
    BadMagic,
    #[error("written by a newer cardmesh (format {0}); upgrade this node")]
    NewerVersion(u8),
    #[error(
        "a {kind:?} of format {found}, which this cardmesh no longer reads (it needs format \
         {needed} or later)"
    )]
    OlderVersion { kind: Kind, found: u8, needed: u8 },
    #[error("expected a {expected:?}, found kind {found}")]
    WrongKind { expected: Kind, found: u8 },
    #[error("corrupt {kind:?}: {detail}")]
    Corrupt { kind: Kind, detail: String },
}

pub fn encode<T: Serialize + ?Sized>(kind: Kind, value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(kind as u8);
    postcard::to_io(value, &mut out).expect("serializing to a Vec cannot fail");
    out
}

pub fn decode<'a, T: Deserialize<'a>>(kind: Kind, bytes: &'a [u8]) -> Result<T, CodecError> {
    decode_since(kind, 1, bytes)
}

/// As [`decode`], for a kind whose layout changed in format `since`: older blobs of it
/// are refused as such rather than misread as corrupt.
pub fn decode_since<'a, T: Deserialize<'a>>(
    kind: Kind,
    since: u8,
    bytes: &'a [u8],
) -> Result<T, CodecError> {
    let [m0, m1, version, found, body @ ..] = bytes else {
        return Err(CodecError::BadMagic);
    };
    if [*m0, *m1] != MAGIC {
        return Err(CodecError::BadMagic);
    }
    if *version > VERSION {
        return Err(CodecError::NewerVersion(*version));
    }
    if *version == 0 {
        return Err(CodecError::BadMagic);
    }
    if *found != kind as u8 {
        return Err(CodecError::WrongKind {
            expected: kind,
            found: *found,
        });
    }
    if *version < since {
        return Err(CodecError::OlderVersion {
            kind,
            found: *version,
            needed: since,
        });
    }
    let (value, rest) = postcard::take_from_bytes(body).map_err(|e| CodecError::Corrupt {
        kind,
        detail: e.to_string(),
    })?;
    if !rest.is_empty() {
        return Err(CodecError::Corrupt {
            kind,
            detail: format!("{} trailing bytes", rest.len()),
        });
    }
    Ok(value)
}
