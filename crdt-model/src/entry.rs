//! Feed entries: what one node appended to its own log, signed and hash-chained, and the
//! checks every replica runs before it believes one.
//!
//! Feed format 2: an entry's hash covers everything but its signature, and the signature
//! signs that hash. A signature therefore authenticates its entry and, through the `prev`
//! links, every entry before it, so a replica need not keep, and a link need not carry,
//! every entry's signature: only the last of each run and one every
//! [`CHECKPOINT_EVERY`] entries (see [`thin_signatures`]). What a dial-up line carries per
//! transaction drops from ~78 bytes to ~9 that way; 64 of the 78 were the signature.

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
    /// The origin's signature of [`Entry::hash`]. Every entry is signed when created; a
    /// replica holds it without one only if it also holds a later signed entry of the
    /// same feed, whose signature covers this one through the chain.
    pub sig: Option<Sig>,
}

const ENTRY_DOMAIN: &[u8] = b"cardmesh/entry/2";
const SIGNATURE_DOMAIN: &[u8] = b"cardmesh/entry-sig/2";
/// Bytes hashed for an entry of a card transaction with a few basket lines, and more.
const HASHED_CAPACITY: usize = 512;

/// Every replica keeps the signature of each entry whose sequence number is a multiple
/// of this (and of the last entry of every run it took in), so between two signatures it
/// holds there are fewer than this many entries, and anything it sends can end at a
/// signed entry within one batch or segment, whoever it got the entries from.
pub const CHECKPOINT_EVERY: u64 = 64;

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
        let mut entry = Entry::unsigned(key.node_id(), head, hlc, body);
        entry.sign(key);
        entry
    }

    /// The next entry of `origin`'s feed after `head`, not signed yet: a later entry's
    /// signature can vouch for it (see [`check_run`]), or [`Entry::sign`] adds its own.
    pub fn unsigned(origin: NodeId, head: FeedHead, hlc: Hlc, body: Body) -> Entry {
        Entry {
            origin,
            seq: head.seq + 1,
            prev: head.hash,
            hlc,
            body,
            sig: None,
        }
    }

    /// Signs the entry with its origin's `key`. The hash leaves the signature out, so
    /// this changes neither the entry's hash nor the chain after it.
    pub fn sign(&mut self, key: &NodeKey) {
        self.sig = Some(key.sign(&signature_message(&self.hash())));
    }

    pub fn encode(&self) -> Vec<u8> {
        codec::encode(Kind::Entry, self)
    }

    /// Refuses entries of feed format 1, whose hashes covered their signatures.
    pub fn decode(bytes: &[u8]) -> Result<Entry, CodecError> {
        codec::decode_since(Kind::Entry, 2, bytes)
    }

    /// The hash the next entry of this feed chains to, and what the origin signs: over
    /// everything but the signature.
    pub fn hash(&self) -> Hash {
        // Every entry a replica checks or appends is hashed: a buffer sized for a whole
        // entry at once, rather than grown from the domain's 16 bytes (five reallocations,
        // which cost more than the hashing), and one call to the hasher (fed field by
        // field, it costs twice as much).
        let mut bytes = Vec::with_capacity(HASHED_CAPACITY);
        bytes.extend_from_slice(ENTRY_DOMAIN);
        let signed = Signed {
            origin: &self.origin,
            seq: self.seq,
            prev: &self.prev,
            hlc: &self.hlc,
            body: &self.body,
        };
        postcard::to_io(&signed, &mut bytes).expect("serializing to a Vec cannot fail");
        Hash::of(&bytes)
    }

    /// The same entry of the same feed, whether or not either carries its signature.
    pub fn same_as(&self, other: &Entry) -> bool {
        self.origin == other.origin
            && self.seq == other.seq
            && self.prev == other.prev
            && self.hlc == other.hlc
            && self.body == other.body
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

    /// Carries a signature, and it is the origin's. An entry without one is not valid
    /// on its own.
    pub fn signature_valid(&self, key: &PublicKey) -> bool {
        self.signs(&self.hash(), key)
    }

    /// Carries the origin's signature of `hash`, which is this entry's.
    fn signs(&self, hash: &Hash, key: &PublicKey) -> bool {
        self.sig
            .is_some_and(|sig| key.verify(&signature_message(hash), &sig))
    }
}

/// Consecutive entries of one origin's feed whose hash chain and signatures have been
/// checked, with their hashes: the part of [`check_run`] that needs no replica and costs
/// the most (a hash per entry, a signature per checkpoint), done where it can run beside
/// a replica's writer, as a stick's segment reader does. Only [`CheckedRun::check`]
/// makes one, so a replica can take one's word for what it checked;
/// [`check_checked_run`] does the rest.
#[derive(Debug)]
pub struct CheckedRun {
    entries: Vec<Entry>,
    hashes: Vec<Hash>,
}

impl CheckedRun {
    /// `entries` as a checked run if they follow each other in one feed, each chained to
    /// the one before, and every signature a replica keeps is good: the last entry's,
    /// which it must carry, and any checkpoint's. Otherwise the entries come back, for
    /// [`check_run`] to tell what is wrong with them.
    pub fn check(entries: Vec<Entry>) -> Result<CheckedRun, Vec<Entry>> {
        let Some(key) = entries.first().and_then(|e| PublicKey::of(&e.origin)) else {
            return Err(entries);
        };
        let mut hashes: Vec<Hash> = Vec::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            let follows = i == 0 || {
                let before = &entries[i - 1];
                e.origin == before.origin
                    && Some(e.seq) == before.seq.checked_add(1)
                    && e.prev == hashes[i - 1]
            };
            if !follows {
                return Err(entries);
            }
            hashes.push(e.hash());
        }
        let last = entries.len() - 1;
        let signed = entries
            .iter()
            .zip(&hashes)
            .enumerate()
            .all(|(i, (e, hash))| {
                let kept = i == last || (e.sig.is_some() && keeps_signature(e.seq, false));
                !kept || e.signs(hash, &key)
            });
        if !signed {
            return Err(entries);
        }
        Ok(CheckedRun { entries, hashes })
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn into_entries(self) -> Vec<Entry> {
        self.entries
    }

    /// Each entry's bytes as a replica that takes the whole run stores them: encoded
    /// with only the signatures [`thin_signatures`] keeps. Made by whoever hands the run
    /// to a replica, on its own thread, so that the replica's writer need not encode
    /// what it applies.
    pub fn stored_encodings(&self) -> Vec<Vec<u8>> {
        let last = self.entries.len().saturating_sub(1);
        self.entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                if e.sig.is_none() || keeps_signature(e.seq, i == last) {
                    e.encode()
                } else {
                    Entry {
                        sig: None,
                        ..e.clone()
                    }
                    .encode()
                }
            })
            .collect()
    }

    /// The hash of the run's last entry.
    pub fn last_hash(&self) -> Option<Hash> {
        self.hashes.last().copied()
    }

    /// The run without its first `n` entries (which a replica holds already): still a
    /// checked run, since the last entry's signature and the chain still stand.
    pub fn skip(mut self, n: usize) -> CheckedRun {
        let n = n.min(self.entries.len());
        self.entries.drain(..n);
        self.hashes.drain(..n);
        self
    }
}

/// What [`check_run`] answers for the entries of `run`, without hashing them or
/// verifying their signatures again: only where the run meets the feed's `head`, and
/// whether its writer may write each entry, are left to check.
pub fn check_checked_run(head: FeedHead, membership: &Membership, run: &CheckedRun) -> RunCheck {
    let refused = |error| RunCheck {
        accepted: 0,
        head,
        error: Some(error),
    };
    let Some(first) = run.entries.first() else {
        return RunCheck {
            accepted: 0,
            head,
            error: None,
        };
    };
    if first.seq != head.seq + 1 {
        return refused(EntryError::Gap {
            origin: first.origin,
            expected: head.seq + 1,
            got: first.seq,
        });
    }
    if first.prev != head.hash {
        return refused(EntryError::BrokenChain(first.entry_ref()));
    }
    let mut accepted = run.entries.len();
    let mut error = None;
    for (i, e) in run.entries.iter().enumerate() {
        if let Err(refusal) = check_authority(membership, e) {
            accepted = i;
            error = Some(refusal);
            break;
        }
    }
    if accepted > 0 && accepted < run.entries.len() {
        let key = &membership
            .writer(&first.origin, first.seq)
            .expect("the first entry is authorized")
            .key;
        accepted = vouched_by_own(&run.entries[..accepted], &error, key);
    }
    RunCheck {
        accepted,
        head: match accepted {
            0 => head,
            n => FeedHead {
                seq: run.entries[n - 1].seq,
                hash: run.hashes[n - 1],
            },
        },
        error,
    }
}

/// Drops the signatures a replica or a link does not need from `entries`, given in feed
/// order (see [`keeps_signature`]).
pub fn thin_signatures(entries: &mut [Entry]) {
    for i in 0..entries.len() {
        let ends_run = entries.get(i + 1).is_none_or(|next| {
            next.origin != entries[i].origin || Some(next.seq) != entries[i].seq.checked_add(1)
        });
        if !keeps_signature(entries[i].seq, ends_run) {
            entries[i].sig = None;
        }
    }
}

/// Whether the entry `seq` of a run keeps its signature where runs are stored or sent:
/// the last one of the run (it authenticates the run), and every [`CHECKPOINT_EVERY`]th.
pub fn keeps_signature(seq: u64, ends_run: bool) -> bool {
    ends_run || seq.is_multiple_of(CHECKPOINT_EVERY)
}

/// How many of `entries` (one feed's, in order) can be sent as a run that ends at a
/// signed entry: those up to and including the last one carrying a signature.
pub fn signed_prefix(entries: &[Entry]) -> usize {
    entries
        .iter()
        .rposition(|e| e.sig.is_some())
        .map_or(0, |i| i + 1)
}

fn signature_message(hash: &Hash) -> Vec<u8> {
    [SIGNATURE_DOMAIN, hash.0.as_slice()].concat()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("entry {0:?}: {1}")]
    Auth(EntryRef, AuthError),
    #[error("entry {0:?} has a bad signature: forged or corrupted")]
    BadSignature(EntryRef),
    #[error(
        "entry {0:?} came without its origin's signature and no signed entry of its feed \
         after it: unauthenticated"
    )]
    Unsigned(EntryRef),
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
/// The last signed entry's signature authenticates the run: it signs that entry's hash,
/// which covers the entry before it and so on back. Entries after the last signature
/// are not accepted. If the writer may no longer write that last entry (after a
/// revocation), the entries before it are accepted up to their own last signature only
/// (see `vouched_by_own`), so that a replica's feed always ends at a signature it
/// keeps. The checkpoints' signatures are verified too, because the replica keeps them;
/// the caller drops the others with [`thin_signatures`] on what it accepts. On a failure
/// each signed entry is checked on its own to find the first bad one.
pub fn check_run(head: FeedHead, membership: &Membership, entries: &[Entry]) -> RunCheck {
    let mut chained = 0;
    let mut tip = head;
    let mut error = None;
    for e in entries {
        if e.seq != tip.seq + 1 {
            error = Some(EntryError::Gap {
                origin: e.origin,
                expected: tip.seq + 1,
                got: e.seq,
            });
            break;
        }
        if e.prev != tip.hash {
            error = Some(EntryError::BrokenChain(e.entry_ref()));
            break;
        }
        tip = e.head();
        chained += 1;
    }
    let mut authorized = chained;
    for (i, e) in entries[..chained].iter().enumerate() {
        if let Err(refusal) = check_authority(membership, e) {
            authorized = i;
            error = Some(refusal);
            break;
        }
    }
    let refused = |error| RunCheck {
        accepted: 0,
        head,
        error,
    };
    if authorized == 0 {
        return refused(error);
    }
    let Some(signed) = entries[..chained].iter().rposition(|e| e.sig.is_some()) else {
        return refused(Some(EntryError::Unsigned(entries[0].entry_ref())));
    };
    let key = &membership
        .writer(&entries[0].origin, entries[0].seq)
        .expect("the first entry is authorized")
        .key;
    // The signatures a replica keeps must all be good, or it would pass a bad one on.
    let mut kept = entries[..signed]
        .iter()
        .filter(|e| e.sig.is_some() && keeps_signature(e.seq, false))
        .chain([&entries[signed]]);
    let authenticated = if kept.all(|e| e.signature_valid(key)) {
        signed + 1
    } else {
        let mut good = 0;
        let mut bad = signed;
        for (i, e) in entries[..=signed].iter().enumerate() {
            if e.sig.is_some() {
                if !e.signature_valid(key) {
                    bad = i;
                    break;
                }
                good = i + 1;
            }
        }
        if bad < authorized {
            error = Some(EntryError::BadSignature(entries[bad].entry_ref()));
        }
        good
    };
    if authenticated < authorized && !matches!(error, Some(EntryError::BadSignature(_))) {
        error = Some(EntryError::Unsigned(entries[authenticated].entry_ref()));
    }
    let mut accepted = authenticated.min(authorized);
    if accepted < authenticated {
        accepted = vouched_by_own(&entries[..accepted], &error, key);
    }
    RunCheck {
        accepted,
        head: match accepted {
            0 => head,
            n => entries[n - 1].head(),
        },
        error,
    }
}

/// How much of `accepted`, a run's prefix that a signature after it vouches for, is
/// kept when the run is refused from there on for `error`. After a revocation, only up
/// to the prefix's own last signature: a replica stores no proof of the refused entry
/// that vouched for the rest, so it could neither check that rest again (`cardmesh
/// check`) nor pass it on. Nothing is lost: HQ revokes at the head it holds, signed,
/// and passes those entries on itself. Any other refusal keeps the whole prefix: there
/// the writer is still a member, and its entries up to the refused one may exist
/// nowhere signed.
fn vouched_by_own(accepted: &[Entry], error: &Option<EntryError>, key: &PublicKey) -> usize {
    if !matches!(error, Some(EntryError::Auth(_, AuthError::Revoked { .. }))) {
        return accepted.len();
    }
    accepted
        .iter()
        .rposition(|e| e.sig.is_some() && e.signature_valid(key))
        .map_or(0, |i| i + 1)
}

/// Whether the entry's writer may write it: an enrolled, unrevoked member whose role
/// allows the body, and a document change that parses. `check_run` checks it for every
/// entry; a node appending to its own feed checks only this (see the store).
pub fn check_authority(membership: &Membership, e: &Entry) -> Result<(), EntryError> {
    let r = e.entry_ref();
    let member = membership
        .writer(&e.origin, e.seq)
        .map_err(|a| EntryError::Auth(r, a))?;
    authorize(&member.cert, &e.body).map_err(|a| EntryError::Auth(r, a))?;
    if let Body::Doc(d) = &e.body {
        parse_change(&d.change).map_err(|de| EntryError::BadDocChange(r, de))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::{BlacklistEvent, BlockReason};
    use crate::ids::CardAsn;

    /// Feed format 2 defines an entry's hash as blake3 of the domain and the postcard
    /// bytes of everything but the signature: every stored and signed entry depends on
    /// it, however the hash is computed.
    #[test]
    fn the_hash_is_blake3_of_the_domain_and_the_unsigned_fields() {
        let key = NodeKey::from_seed(&[3; 32]);
        let body = Body::Blacklist(BlacklistEvent::Block {
            asn: CardAsn([0x10, 0, 0, 0, 0, 0, 0, 7]),
            reason: BlockReason::Lost,
            operator: None,
        });
        let e = Entry::create(&key, FeedHead::EMPTY, Hlc::new(1_800_000_000_000, 3), body);
        let fields = postcard::to_allocvec(&Signed {
            origin: &e.origin,
            seq: e.seq,
            prev: &e.prev,
            hlc: &e.hlc,
            body: &e.body,
        })
        .unwrap();
        assert_eq!(e.hash(), Hash::of(&[ENTRY_DOMAIN, &fields].concat()));
        assert!(e.signature_valid(&PublicKey::of(&e.origin).unwrap()));
    }

    /// A run of 130 entries, every one signed, from seq 60: the stored bytes keep the
    /// signatures of 64, 128 and the last, exactly as `thin_signatures` does.
    #[test]
    fn a_checked_runs_stored_encodings_are_its_thinned_entries_encoded() {
        let key = NodeKey::from_seed(&[5; 32]);
        let mut head = FeedHead::EMPTY;
        let mut entries = Vec::new();
        for n in 1..=189u32 {
            let body = Body::Blacklist(BlacklistEvent::Block {
                asn: CardAsn([0x10, 0, 0, 0, 0, 0, 0, n as u8]),
                reason: BlockReason::Lost,
                operator: None,
            });
            let e = Entry::create(&key, head, Hlc::new(u64::from(n), 0), body);
            head = e.head();
            entries.push(e);
        }
        let run: Vec<Entry> = entries.split_off(59);
        assert_eq!(run[0].seq, 60);
        let mut thinned = run.clone();
        thin_signatures(&mut thinned);
        assert_eq!(thinned.iter().filter(|e| e.sig.is_some()).count(), 3);
        let checked = CheckedRun::check(run).expect("a good run");
        let expected: Vec<Vec<u8>> = thinned.iter().map(Entry::encode).collect();
        assert_eq!(checked.stored_encodings(), expected);
    }
}
