//! The session state machine: a handshake that authenticates both ends, then two
//! independent one-way transfers (ours to the peer, the peer's to us) over one link.

use super::message::{Ack, Auth, Batch, Hello, Message, PROTOCOL_VERSION, Side, auth_transcript};
use super::{
    Limits, MAX_ACK_REASONS, MAX_BATCH_ENTRIES, MAX_FRAME_BYTES, MAX_KEPT_REASONS,
    MAX_REASON_BYTES, Nonce, SyncError, SyncStore, packed, plan,
};
use crate::auth::{AuthError, Certificate};
use crate::entry::{Entry, signed_prefix};
use crate::ids::NodeId;
use crate::sign::PublicKey;
use crate::vv::{FeedRange, VersionVector};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// What a session did, for logs and the console.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// The caller's clock when the session began.
    pub started_ms: u64,
    pub frames_sent: u64,
    pub frames_received: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub batches_sent: u64,
    pub batches_received: u64,
    pub entries_sent: u64,
    pub entries_received: u64,
    /// Entries of the peer's batches this node applied.
    pub entries_applied: u64,
    pub duplicates_received: u64,
    /// Entries and certificates of the peer's batches this node refused.
    pub refused_here: u64,
    /// Entries of this node's batches the peer applied.
    pub applied_by_peer: u64,
    /// Entries and certificates of this node's batches the peer refused.
    pub refused_by_peer: u64,
}

enum Phase {
    /// An initiator that has not said hello yet.
    New,
    AwaitHello,
    /// The peer's hello checked out; waiting for proof that it holds the key.
    AwaitAuth {
        peer: Box<Certificate>,
        peer_nonce: Nonce,
    },
    Syncing(Box<Transfer>),
    Done,
    Failed,
}

/// The data phase, both directions.
struct Transfer {
    /// What the peer holds; `None` until its vector arrives.
    theirs: Option<VersionVector>,
    /// What is left to send, HQ's feed first.
    queue: VecDeque<FeedRange>,
    /// Certificates of the origins to send, attached to the first batch of each.
    certificates: BTreeMap<NodeId, Certificate>,
    certificates_sent: BTreeSet<NodeId>,
    /// Ids of batches sent and not yet acked, oldest first.
    in_flight: VecDeque<u64>,
    next_batch: u64,
    done_sent: bool,
    peer_done: bool,
}

pub struct Session {
    side: Side,
    nonce: Nonce,
    limits: Limits,
    phase: Phase,
    peer: Option<Certificate>,
    stats: Stats,
    refused_by_peer: Vec<String>,
    refused_here: Vec<String>,
    not_sent: Vec<String>,
}

/// Room in a batch frame for everything but the entries and certificates: codec header,
/// message tag, batch id and the two lengths.
const BATCH_OVERHEAD: usize = 64;

fn store_err<E: std::error::Error + Send + Sync + 'static>(e: E) -> SyncError {
    SyncError::Store(Box::new(e))
}

impl Session {
    /// `nonce` must be fresh random bytes; `now_ms` is the caller's clock.
    pub fn new(side: Side, nonce: Nonce, now_ms: u64) -> Session {
        Session::with_limits(side, nonce, now_ms, Limits::DEFAULT)
    }

    pub fn with_limits(side: Side, nonce: Nonce, now_ms: u64, limits: Limits) -> Session {
        Session {
            side,
            nonce,
            limits: limits.clamped(),
            phase: match side {
                Side::Initiator => Phase::New,
                Side::Responder => Phase::AwaitHello,
            },
            peer: None,
            stats: Stats {
                started_ms: now_ms,
                ..Stats::default()
            },
            refused_by_peer: Vec::new(),
            refused_here: Vec::new(),
            not_sent: Vec::new(),
        }
    }

    /// The first frames to send: the initiator's hello; nothing for a responder, which
    /// speaks when spoken to.
    pub fn start(&mut self, store: &mut impl SyncStore) -> Result<Vec<Vec<u8>>, SyncError> {
        match (&self.phase, self.side) {
            (Phase::New, Side::Initiator) => {}
            (Phase::AwaitHello, Side::Responder) => return Ok(Vec::new()),
            _ => {
                return Err(SyncError::Unexpected {
                    got: "second start",
                    expected: "a session that has not started",
                });
            }
        }
        let hello = self.hello(store).map(|h| vec![h]);
        if hello.is_ok() {
            self.phase = Phase::AwaitHello;
        }
        self.guard(hello)
    }

    /// Takes one frame from the peer and returns the frames to send back, in order. An
    /// error ends the session: send its [`SyncError::farewell`] and close the link.
    pub fn handle(
        &mut self,
        store: &mut impl SyncStore,
        frame: &[u8],
    ) -> Result<Vec<Vec<u8>>, SyncError> {
        if matches!(self.phase, Phase::Done | Phase::Failed) {
            return Err(SyncError::Closed);
        }
        self.stats.frames_received += 1;
        self.stats.bytes_received += frame.len() as u64;
        let out = Message::decode(frame).and_then(|msg| self.dispatch(store, msg));
        self.guard(out)
    }

    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    /// The peer's certificate, once it has proven it holds that key. A transport that
    /// authenticates the peer itself (iroh) should check it names the same node.
    pub fn peer(&self) -> Option<&Certificate> {
        self.peer.as_ref()
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Why the peer refused entries this node sent (the first [`MAX_KEPT_REASONS`]).
    pub fn refused_by_peer(&self) -> &[String] {
        &self.refused_by_peer
    }

    /// Why this node refused entries the peer sent (the first [`MAX_KEPT_REASONS`]).
    pub fn refused_here(&self) -> &[String] {
        &self.refused_here
    }

    /// Entries this node could not send at all, and why (the first [`MAX_KEPT_REASONS`]).
    pub fn not_sent(&self) -> &[String] {
        &self.not_sent
    }

    /// Counts what goes out, and fails the session for good on an error.
    fn guard(&mut self, out: Result<Vec<Vec<u8>>, SyncError>) -> Result<Vec<Vec<u8>>, SyncError> {
        match out {
            Ok(frames) => {
                for f in &frames {
                    debug_assert!(f.len() <= MAX_FRAME_BYTES, "frame over the limit");
                    self.stats.frames_sent += 1;
                    self.stats.bytes_sent += f.len() as u64;
                }
                Ok(frames)
            }
            Err(e) => {
                self.phase = Phase::Failed;
                Err(e)
            }
        }
    }

    fn dispatch(
        &mut self,
        store: &mut impl SyncStore,
        msg: Message,
    ) -> Result<Vec<Vec<u8>>, SyncError> {
        if let Message::Error { mut reason } = msg {
            truncate_reason(&mut reason);
            return Err(SyncError::PeerRefused { reason });
        }
        match std::mem::replace(&mut self.phase, Phase::Failed) {
            Phase::AwaitHello => match msg {
                Message::Hello(h) => self.on_hello(store, *h),
                other => Err(unexpected(&other, "waiting for the peer's hello")),
            },
            Phase::AwaitAuth { peer, peer_nonce } => match msg {
                Message::Auth(a) => self.on_auth(store, peer, peer_nonce, a),
                other => Err(unexpected(&other, "waiting for the peer's proof of key")),
            },
            Phase::Syncing(mut t) => {
                let out = self.on_transfer(store, &mut t, msg)?;
                self.phase = if t.done_sent && t.peer_done {
                    Phase::Done
                } else {
                    Phase::Syncing(t)
                };
                Ok(out)
            }
            Phase::New => Err(unexpected(&msg, "not started: call start first")),
            Phase::Done | Phase::Failed => Err(SyncError::Closed),
        }
    }

    fn hello(&self, store: &impl SyncStore) -> Result<Vec<u8>, SyncError> {
        let hq = store.hq_certificate().map_err(store_err)?;
        Ok(Message::Hello(Box::new(Hello {
            protocol: PROTOCOL_VERSION,
            network: hq.network,
            certificate: store.local_certificate().map_err(store_err)?,
            hq,
            nonce: self.nonce,
        }))
        .encode())
    }

    fn on_hello(
        &mut self,
        store: &mut impl SyncStore,
        hello: Hello,
    ) -> Result<Vec<Vec<u8>>, SyncError> {
        check_peer(store, &hello)?;
        let mut out = Vec::new();
        if self.side == Side::Responder {
            out.push(self.hello(store)?);
            out.push(self.auth(store, &hello.certificate.node, &hello.nonce)?);
        }
        self.phase = Phase::AwaitAuth {
            peer: Box::new(hello.certificate),
            peer_nonce: hello.nonce,
        };
        Ok(out)
    }

    /// Our proof of key over the transcript of this session.
    fn auth(
        &self,
        store: &impl SyncStore,
        peer: &NodeId,
        peer_nonce: &Nonce,
    ) -> Result<Vec<u8>, SyncError> {
        let me = store.local_node();
        let transcript =
            self.transcript(store, (&me, &self.nonce), (peer, peer_nonce), self.side)?;
        let sig = store.sign(&transcript).map_err(store_err)?;
        Ok(Message::Auth(Auth { sig }).encode())
    }

    /// Orders the two ends as initiator and responder, whoever is asking.
    fn transcript(
        &self,
        store: &impl SyncStore,
        me: (&NodeId, &Nonce),
        peer: (&NodeId, &Nonce),
        signer: Side,
    ) -> Result<Vec<u8>, SyncError> {
        let network = store.hq_certificate().map_err(store_err)?.network;
        let (initiator, responder) = match self.side {
            Side::Initiator => (me, peer),
            Side::Responder => (peer, me),
        };
        Ok(auth_transcript(&network, initiator, responder, signer))
    }

    fn on_auth(
        &mut self,
        store: &mut impl SyncStore,
        peer: Box<Certificate>,
        peer_nonce: Nonce,
        auth: Auth,
    ) -> Result<Vec<Vec<u8>>, SyncError> {
        let me = store.local_node();
        let peer_side = match self.side {
            Side::Initiator => Side::Responder,
            Side::Responder => Side::Initiator,
        };
        let transcript = self.transcript(
            store,
            (&me, &self.nonce),
            (&peer.node, &peer_nonce),
            peer_side,
        )?;
        let key = PublicKey::of(&peer.node).ok_or(SyncError::BadAuth { node: peer.node })?;
        if !key.verify(&transcript, &auth.sig) {
            return Err(SyncError::BadAuth { node: peer.node });
        }
        let mut out = Vec::new();
        if self.side == Side::Initiator {
            out.push(self.auth(store, &peer.node, &peer_nonce)?);
        }
        let ours = store.version_vector().map_err(store_err)?;
        out.push(Message::Vector(ours).encode());
        self.peer = Some(*peer);
        self.phase = Phase::Syncing(Box::new(Transfer {
            theirs: None,
            queue: VecDeque::new(),
            certificates: BTreeMap::new(),
            certificates_sent: BTreeSet::new(),
            in_flight: VecDeque::new(),
            next_batch: 1,
            done_sent: false,
            peer_done: false,
        }));
        Ok(out)
    }

    fn on_transfer(
        &mut self,
        store: &mut impl SyncStore,
        t: &mut Transfer,
        msg: Message,
    ) -> Result<Vec<Vec<u8>>, SyncError> {
        let mut out = Vec::new();
        match msg {
            Message::Vector(theirs) if t.theirs.is_none() => {
                self.on_vector(store, t, theirs)?;
            }
            Message::Batch(b) if t.theirs.is_some() && !t.peer_done => {
                out.push(self.on_batch(store, b)?);
            }
            Message::Ack(a) => self.on_ack(t, a)?,
            Message::Done if t.theirs.is_some() && !t.peer_done => t.peer_done = true,
            other => return Err(unexpected(&other, "syncing")),
        }
        self.fill_window(store, t, &mut out)?;
        Ok(out)
    }

    fn on_vector(
        &mut self,
        store: &mut impl SyncStore,
        t: &mut Transfer,
        theirs: VersionVector,
    ) -> Result<(), SyncError> {
        let ours = store.version_vector().map_err(store_err)?;
        let hq = store.hq_certificate().map_err(store_err)?.node;
        let peer = self.peer.as_ref().map(|p| p.node);
        t.queue = plan(&ours, &theirs, hq).into();
        let origins: BTreeSet<NodeId> = t.queue.iter().map(|r| r.origin).collect();
        // The peer has HQ's certificate (the handshake checked) and its own.
        t.certificates = store
            .certificates()
            .map_err(store_err)?
            .into_iter()
            .filter(|c| origins.contains(&c.node) && c.node != hq && Some(c.node) != peer)
            .map(|c| (c.node, c))
            .collect();
        t.theirs = Some(theirs);
        Ok(())
    }

    fn on_batch(&mut self, store: &mut impl SyncStore, b: Batch) -> Result<Vec<u8>, SyncError> {
        if b.certificates.len() > MAX_BATCH_ENTRIES {
            return Err(SyncError::OverLimit {
                what: "certificates",
                got: b.certificates.len(),
                max: MAX_BATCH_ENTRIES,
            });
        }
        let entries = packed::unpack(&b.packed)?;
        self.stats.batches_received += 1;
        self.stats.entries_received += entries.len() as u64;
        let mut reasons = Vec::new();
        let hq = store.hq_certificate().map_err(store_err)?;
        for cert in b.certificates {
            let node = cert.node;
            match verify_certificate(&cert, &hq) {
                Ok(()) => {
                    store.admit(cert).map_err(store_err)?;
                }
                Err(e) => reasons.push(format!("certificate of node {node}: {e}")),
            }
        }
        let mut tips: BTreeMap<NodeId, u64> = BTreeMap::new();
        for e in &entries {
            let tip = tips.entry(e.origin).or_default();
            *tip = (*tip).max(e.seq);
        }
        let report = store.ingest(entries).map_err(store_err)?;
        reasons.extend(report.rejected.iter().map(ToString::to_string));
        let stalled = if report.rejected.is_empty() {
            Vec::new()
        } else {
            let held = store.version_vector().map_err(store_err)?;
            tips.into_iter()
                .filter(|(origin, tip)| held.get(origin) < *tip)
                .map(|(origin, _)| origin)
                .collect()
        };
        self.stats.entries_applied += report.applied as u64;
        self.stats.duplicates_received += report.duplicates as u64;
        self.stats.refused_here += reasons.len() as u64;
        keep(&mut self.refused_here, &reasons);
        let rejected = reasons.len();
        reasons.truncate(MAX_ACK_REASONS);
        for r in &mut reasons {
            truncate_reason(r);
        }
        Ok(Message::Ack(Ack {
            batch: b.id,
            applied: count(report.applied),
            duplicates: count(report.duplicates),
            rejected: count(rejected),
            reasons,
            stalled,
        })
        .encode())
    }

    fn on_ack(&mut self, t: &mut Transfer, ack: Ack) -> Result<(), SyncError> {
        // The link is ordered and the peer acks as it receives, so acks come in order.
        if t.in_flight.front() != Some(&ack.batch) {
            return Err(SyncError::UnknownBatch(ack.batch));
        }
        if ack.reasons.len() > MAX_ACK_REASONS {
            return Err(SyncError::OverLimit {
                what: "refusal reasons",
                got: ack.reasons.len(),
                max: MAX_ACK_REASONS,
            });
        }
        t.in_flight.pop_front();
        self.stats.applied_by_peer += u64::from(ack.applied);
        self.stats.refused_by_peer += u64::from(ack.rejected);
        keep(&mut self.refused_by_peer, &ack.reasons);
        let stalled: BTreeSet<NodeId> = ack.stalled.into_iter().collect();
        t.queue.retain(|r| !stalled.contains(&r.origin));
        Ok(())
    }

    /// Sends batches while the window has room, then Done once all were acked.
    fn fill_window(
        &mut self,
        store: &mut impl SyncStore,
        t: &mut Transfer,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), SyncError> {
        if t.theirs.is_none() {
            return Ok(());
        }
        while t.in_flight.len() < self.limits.window {
            let Some(frame) = self.next_batch(store, t)? else {
                break;
            };
            out.push(frame);
        }
        if t.queue.is_empty() && t.in_flight.is_empty() && !t.done_sent {
            t.done_sent = true;
            out.push(Message::Done.encode());
        }
        Ok(())
    }

    /// The next batch from the front of the queue, bounded by entry count and bytes,
    /// each of its runs ending at a signed entry.
    fn next_batch(
        &mut self,
        store: &impl SyncStore,
        t: &mut Transfer,
    ) -> Result<Option<Vec<u8>>, SyncError> {
        let mut entries = self.collect(store, t, self.limits, false)?;
        if entries.is_empty()
            && let Some(front) = t.queue.front().copied()
        {
            // The front feed's next signature lies beyond this link's batch limits (a
            // relay holds one every `CHECKPOINT_EVERY` entries): the batch goes up to
            // it, within the protocol's own limits, which reach it unless its entries
            // are huge.
            entries = self.collect(store, t, Limits::DEFAULT, true)?;
            if entries.is_empty() && t.queue.front() == Some(&front) {
                let reason = format!(
                    "entries {}..={} of feed {}: no signed entry within a batch's limits, \
                     the feed is not sent past entry {}",
                    front.from,
                    front.to,
                    front.origin,
                    front.from - 1
                );
                keep(&mut self.not_sent, &[reason]);
                t.queue.pop_front();
            }
        }
        if entries.is_empty() {
            return Ok(None);
        }
        let mut certificates = Vec::new();
        for e in &entries {
            if t.certificates_sent.insert(e.origin)
                && let Some(c) = t.certificates.get(&e.origin)
            {
                certificates.push(c.clone());
            }
        }
        let id = t.next_batch;
        let sent = entries.len() as u64;
        let frame = Message::Batch(Batch {
            id,
            certificates,
            packed: packed::pack(&entries),
        })
        .encode();
        debug_assert!(frame.len() <= MAX_FRAME_BYTES, "batch over the frame limit");
        t.next_batch += 1;
        t.in_flight.push_back(id);
        self.stats.batches_sent += 1;
        self.stats.entries_sent += sent;
        Ok(Some(frame))
    }

    /// Takes entries from the front of the queue within `limits` (counting the
    /// certificate each origin's first batch carries), or only up to the front feed's
    /// first signed entry if `to_first_signature`, then gives back each run's tail
    /// after its last signed entry: the peer could not authenticate it.
    fn collect(
        &mut self,
        store: &impl SyncStore,
        t: &mut Transfer,
        limits: Limits,
        to_first_signature: bool,
    ) -> Result<Vec<Entry>, SyncError> {
        let mut entries: Vec<Entry> = Vec::new();
        let mut bytes = 0;
        'ranges: while let Some(range) = t.queue.front_mut() {
            let room = limits.batch_entries - entries.len();
            if room == 0 || (to_first_signature && !entries.is_empty()) {
                break;
            }
            let got = store.entries(*range, room).map_err(store_err)?;
            if got.is_empty() {
                // The store holds less than its vector promised: nothing more to send
                // of this feed.
                t.queue.pop_front();
                continue;
            }
            let cert = (!t.certificates_sent.contains(&range.origin))
                .then(|| t.certificates.get(&range.origin))
                .flatten()
                .map_or(0, encoded_size);
            for e in got {
                let first = entries.last().is_none_or(|l| l.origin != e.origin);
                let size = encoded_size(&e) + if first { cert } else { 0 };
                if packed::packed_bound(size) > MAX_FRAME_BYTES - BATCH_OVERHEAD {
                    // No frame can carry it, and the peer cannot apply what follows it
                    // without it: this feed stops here, the others still go.
                    let reason = format!(
                        "entry {} of feed {} takes {size} bytes, more than a sync frame \
                         carries ({}): the feed is not sent past it",
                        e.seq,
                        e.origin,
                        MAX_FRAME_BYTES - BATCH_OVERHEAD
                    );
                    keep(&mut self.not_sent, &[reason]);
                    t.queue.pop_front();
                    continue 'ranges;
                }
                if !entries.is_empty() && bytes + size > limits.batch_bytes {
                    break 'ranges;
                }
                bytes += size;
                range.from = e.seq + 1;
                let signed = e.sig.is_some();
                entries.push(e);
                if to_first_signature && signed {
                    break 'ranges;
                }
            }
            if range.is_empty() {
                t.queue.pop_front();
            }
        }
        let mut kept = Vec::with_capacity(entries.len());
        let mut taken = entries.into_iter().peekable();
        while let Some(first) = taken.next() {
            let origin = first.origin;
            let mut run = vec![first];
            while let Some(e) = taken.next_if(|e| e.origin == origin) {
                run.push(e);
            }
            let signed = signed_prefix(&run);
            if let Some(cut) = run.get(signed)
                && let Some(front) = t.queue.front_mut().filter(|r| r.origin == origin)
            {
                front.from = cut.seq;
            }
            run.truncate(signed);
            kept.append(&mut run);
        }
        Ok(kept)
    }
}

/// Checks a peer's hello against this node's network, and records its certificate.
fn check_peer(store: &mut impl SyncStore, hello: &Hello) -> Result<(), SyncError> {
    if hello.protocol != PROTOCOL_VERSION {
        return Err(SyncError::UnsupportedProtocol {
            ours: PROTOCOL_VERSION,
            theirs: hello.protocol,
        });
    }
    let hq = store.hq_certificate().map_err(store_err)?;
    let ours = hq.network;
    for theirs in [hello.network, hello.hq.network, hello.certificate.network] {
        if theirs != ours {
            return Err(SyncError::WrongNetwork { ours, theirs });
        }
    }
    let node = hello.certificate.node;
    if hello.hq.node != hq.node {
        return Err(SyncError::NotEnrolled {
            node,
            reason: format!(
                "it presents HQ {}, this network's HQ is {}",
                hello.hq.node, hq.node
            ),
        });
    }
    if node == store.local_node() {
        return Err(SyncError::SelfConnection);
    }
    verify_certificate(&hello.certificate, &hq).map_err(|e| SyncError::NotEnrolled {
        node,
        reason: e.to_string(),
    })?;
    store.admit(hello.certificate.clone()).map_err(store_err)?;
    if !store.is_member(&node).map_err(store_err)? {
        return Err(SyncError::Revoked { node });
    }
    Ok(())
}

/// Signed by this network's HQ, for a usable key.
fn verify_certificate(cert: &Certificate, hq: &Certificate) -> Result<(), AuthError> {
    cert.verify(hq.network, hq.node)?;
    PublicKey::of(&cert.node).ok_or(AuthError::UnknownOrigin(cert.node))?;
    Ok(())
}

fn unexpected(msg: &Message, expected: &'static str) -> SyncError {
    SyncError::Unexpected {
        got: msg.name(),
        expected,
    }
}

fn encoded_size<T: serde::Serialize>(value: &T) -> usize {
    postcard::experimental::serialized_size(value).expect("sizing a value cannot fail")
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn keep(log: &mut Vec<String>, reasons: &[String]) {
    let room = MAX_KEPT_REASONS.saturating_sub(log.len());
    log.extend(reasons.iter().take(room).cloned());
}

fn truncate_reason(r: &mut String) {
    if r.len() > MAX_REASON_BYTES {
        let mut end = MAX_REASON_BYTES;
        while !r.is_char_boundary(end) {
            end -= 1;
        }
        r.truncate(end);
    }
}
