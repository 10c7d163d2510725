//! A connected serial line as an iroh custom transport: each QUIC packet travels as one
//! line frame (sync word, length, CRC32); a damaged frame is dropped and QUIC resends.
//!
//! Two threads own the port: a reader that deframes and hands packets to iroh, and a
//! writer that sends queued frames paced at the connect rate, so that the modem's buffer
//! never fills and QUIC sees the line's real round-trip time. The send queue holds about
//! two packets; beyond that iroh is told to wait, as a full UDP socket would.
//!
//! Before QUIC starts the dialer must learn whom it called: it asks over the line and
//! the answerer tells its node id. That id is only a hint: the QUIC handshake then
//! proves the key, and the sync session checks it is an enrolled member.

use cardmesh_drivers::modem::line::{Deframer, encode};
use iroh::EndpointId;
use iroh::endpoint::transports::{
    CustomEndpoint, CustomSender, CustomTransport, RecvInfo, Transmit,
};
use iroh_base::CustomAddr;
use serialport::SerialPort;
use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// The custom-transport id of a serial line (iroh's ids above 0x20 are free for
/// applications).
pub const SERIAL_TRANSPORT_ID: u64 = 0x636d_7365_7269_616c;

/// This side of the line, and the other: a point-to-point line needs no more.
fn local_addr() -> CustomAddr {
    CustomAddr::from_parts(SERIAL_TRANSPORT_ID, b"here")
}

/// The address iroh dials to reach whoever is at the other end of the line.
pub fn peer_addr() -> CustomAddr {
    CustomAddr::from_parts(SERIAL_TRANSPORT_ID, b"there")
}

const KIND_PACKET: u8 = 0;
const KIND_WHO: u8 = 1;
const KIND_IAM: u8 = 2;

/// Packets waiting for the line beyond this many bytes make iroh wait.
const QUEUE_BYTES: usize = 2 * 1300;
/// Packets received and not yet taken by iroh; more are dropped, as UDP would.
const RECV_QUEUE: usize = 64;
const READ_TIMEOUT: Duration = Duration::from_millis(20);
const NO_CARRIER: &[u8] = b"NO CARRIER";

/// Byte counts of one call's line, both directions, framing included.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LineCounters {
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub packets_sent: u64,
    pub packets_received: u64,
    /// Frames the noise damaged (dropped here, resent by QUIC).
    pub frames_dropped: u64,
}

#[derive(Default)]
struct Counters {
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
    packets_sent: AtomicU64,
    packets_received: AtomicU64,
    frames_dropped: AtomicU64,
}

#[derive(Default)]
struct SendQueue {
    frames: VecDeque<Vec<u8>>,
    bytes: usize,
    waker: Option<Waker>,
}

struct Shared {
    own: EndpointId,
    queue: Mutex<SendQueue>,
    ready: Condvar,
    stop: AtomicBool,
    carrier: watch::Sender<bool>,
    peer: watch::Sender<Option<EndpointId>>,
    counters: Counters,
}

impl Shared {
    fn queue(&self) -> std::sync::MutexGuard<'_, SendQueue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push_front(&self, frame: Vec<u8>) {
        let mut q = self.queue();
        q.bytes += frame.len();
        q.frames.push_front(frame);
        self.ready.notify_one();
    }

    fn lose_carrier(&self) {
        self.carrier.send_replace(false);
        self.stop.store(true, Ordering::Relaxed);
        self.ready.notify_all();
        if let Some(w) = self.queue().waker.take() {
            w.wake();
        }
    }
}

/// A serial line in data mode, carrying frames until stopped or the carrier drops.
pub struct SerialLine {
    shared: Arc<Shared>,
    packets: Mutex<Option<mpsc::Receiver<Vec<u8>>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for SerialLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SerialLine").finish_non_exhaustive()
    }
}

impl SerialLine {
    /// Starts carrying frames on `port` (already connected) at `rate` bit/s; `own` is
    /// the id this side tells a peer that asks.
    pub fn start(port: &dyn SerialPort, rate: u32, own: EndpointId) -> io::Result<SerialLine> {
        let (reader, writer) = (port.try_clone()?, port.try_clone()?);
        let (tx, rx) = mpsc::channel(RECV_QUEUE);
        let shared = Arc::new(Shared {
            own,
            queue: Mutex::new(SendQueue::default()),
            ready: Condvar::new(),
            stop: AtomicBool::new(false),
            carrier: watch::Sender::new(true),
            peer: watch::Sender::new(None),
            counters: Counters::default(),
        });
        let threads = vec![
            {
                let shared = shared.clone();
                thread::spawn(move || read_line(&shared, reader, &tx))
            },
            {
                let shared = shared.clone();
                thread::spawn(move || write_line(&shared, writer, rate))
            },
        ];
        Ok(SerialLine {
            shared,
            packets: Mutex::new(Some(rx)),
            threads: Mutex::new(threads),
        })
    }

    /// Asks the other end who it is, every `every`, until it says or `timeout` passes.
    pub async fn ask_peer(&self, every: Duration, timeout: Duration) -> Option<EndpointId> {
        let mut peer = self.shared.peer.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline && self.has_carrier() {
            self.shared.push_front(encode(&[KIND_WHO]));
            let wait = tokio::time::timeout(every, peer.wait_for(Option::is_some)).await;
            if let Ok(Ok(id)) = wait {
                return *id;
            }
        }
        None
    }

    pub fn has_carrier(&self) -> bool {
        *self.shared.carrier.borrow()
    }

    /// Resolves when the carrier is lost (`NO CARRIER` on the line, or the port failed).
    pub async fn carrier_lost(&self) {
        let mut c = self.shared.carrier.subscribe();
        let _ = c.wait_for(|up| !up).await;
    }

    /// The iroh transport over this line; an endpoint binds it once.
    pub fn transport(self: &Arc<Self>) -> Arc<dyn CustomTransport> {
        Arc::new(LineTransport(self.clone()))
    }

    pub fn counters(&self) -> LineCounters {
        let c = &self.shared.counters;
        LineCounters {
            bytes_sent: c.bytes_sent.load(Ordering::Relaxed),
            bytes_received: c.bytes_received.load(Ordering::Relaxed),
            packets_sent: c.packets_sent.load(Ordering::Relaxed),
            packets_received: c.packets_received.load(Ordering::Relaxed),
            frames_dropped: c.frames_dropped.load(Ordering::Relaxed),
        }
    }

    /// Lets the queued frames go out (up to `grace`), then stops both threads; the port
    /// is free for modem commands again.
    pub fn stop(&self, grace: Duration) -> LineCounters {
        let deadline = Instant::now() + grace;
        while !self.shared.queue().frames.is_empty()
            && self.has_carrier()
            && Instant::now() < deadline
        {
            thread::sleep(Duration::from_millis(10));
        }
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.ready.notify_all();
        let threads =
            std::mem::take(&mut *self.threads.lock().unwrap_or_else(PoisonError::into_inner));
        for t in threads {
            // A panic in a line thread has already been reported by the runtime.
            let _ = t.join();
        }
        self.counters()
    }
}

fn read_line(shared: &Shared, mut port: Box<dyn SerialPort>, packets: &mpsc::Sender<Vec<u8>>) {
    let _ = port.set_timeout(READ_TIMEOUT);
    let mut deframer = Deframer::new();
    // The modem's `NO CARRIER` may come right after a frame the cut left incomplete, so
    // it is looked for in the raw bytes (an encrypted packet will not spell it).
    let mut raw: Vec<u8> = Vec::new();
    let mut buf = [0u8; 1024];
    while !shared.stop.load(Ordering::Relaxed) {
        let n = match port.read(&mut buf) {
            Ok(0) => continue,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::TimedOut => continue,
            Err(e) => {
                tracing::warn!("serial line read failed: {e}");
                shared.lose_carrier();
                return;
            }
        };
        let c = &shared.counters;
        c.bytes_received.fetch_add(n as u64, Ordering::Relaxed);
        for frame in deframer.push(&buf[..n]) {
            match frame.split_first() {
                Some((&KIND_PACKET, packet)) => {
                    c.packets_received.fetch_add(1, Ordering::Relaxed);
                    // A full queue drops the packet, as a UDP socket would.
                    let _ = packets.try_send(packet.to_vec());
                }
                Some((&KIND_WHO, _)) => {
                    let iam = [&[KIND_IAM][..], shared.own.as_bytes()].concat();
                    shared.push_front(encode(&iam));
                }
                Some((&KIND_IAM, id)) => {
                    if let Some(id) = <&[u8; 32]>::try_from(id)
                        .ok()
                        .and_then(|b| EndpointId::from_bytes(b).ok())
                    {
                        shared.peer.send_replace(Some(id));
                    }
                }
                _ => {}
            }
        }
        c.frames_dropped
            .store(deframer.stats().dropped, Ordering::Relaxed);
        raw.extend_from_slice(&buf[..n]);
        if raw.windows(NO_CARRIER.len()).any(|w| w == NO_CARRIER) {
            tracing::info!("serial line: NO CARRIER");
            shared.lose_carrier();
            return;
        }
        let over = raw.len().saturating_sub(NO_CARRIER.len() - 1);
        raw.drain(..over);
    }
}

fn write_line(shared: &Shared, mut port: Box<dyn SerialPort>, rate: u32) {
    // The time one byte takes on the line: start bit, 8 data bits, stop bit.
    let byte_time = Duration::from_secs(10) / rate.max(300);
    let mut free_at = Instant::now();
    loop {
        let frame = {
            let mut q = shared.queue();
            loop {
                if shared.stop.load(Ordering::Relaxed) {
                    return;
                }
                if let Some(f) = q.frames.pop_front() {
                    q.bytes -= f.len();
                    if let Some(w) = q.waker.take() {
                        w.wake();
                    }
                    break f;
                }
                q = shared
                    .ready
                    .wait_timeout(q, Duration::from_millis(50))
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
        };
        let now = Instant::now();
        if free_at > now {
            thread::sleep(free_at - now);
        }
        if let Err(e) = port.write_all(&frame).and_then(|()| port.flush()) {
            tracing::warn!("serial line write failed: {e}");
            shared.lose_carrier();
            return;
        }
        free_at = free_at.max(now) + byte_time * frame.len() as u32;
        shared
            .counters
            .bytes_sent
            .fetch_add(frame.len() as u64, Ordering::Relaxed);
    }
}

#[derive(Debug)]
struct LineTransport(Arc<SerialLine>);

impl CustomTransport for LineTransport {
    fn bind(&self) -> io::Result<Box<dyn CustomEndpoint>> {
        let packets = self
            .0
            .packets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .ok_or_else(|| io::Error::other("the serial line is already bound to an endpoint"))?;
        Ok(Box::new(LineEndpoint {
            line: self.0.clone(),
            packets,
            addrs: n0_watcher::Watchable::new(vec![local_addr()]),
        }))
    }
}

struct LineEndpoint {
    line: Arc<SerialLine>,
    packets: mpsc::Receiver<Vec<u8>>,
    addrs: n0_watcher::Watchable<Vec<CustomAddr>>,
}

impl std::fmt::Debug for LineEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("serial line endpoint")
    }
}

impl CustomEndpoint for LineEndpoint {
    fn watch_local_addrs(&self) -> n0_watcher::Direct<Vec<CustomAddr>> {
        self.addrs.watch()
    }

    fn create_sender(&self) -> Arc<dyn CustomSender> {
        Arc::new(LineSender(self.line.shared.clone()))
    }

    fn poll_recv(
        &mut self,
        cx: &mut Context,
        bufs: &mut [io::IoSliceMut<'_>],
        metas: &mut [noq_udp::RecvMeta],
        recv_infos: &mut [RecvInfo],
    ) -> Poll<io::Result<usize>> {
        let mut filled = 0;
        while filled < bufs.len() {
            // A stopped line stays silent, like a UDP socket nobody sends to.
            let Poll::Ready(Some(packet)) = self.packets.poll_recv(cx) else {
                break;
            };
            if packet.len() > bufs[filled].len() {
                // Larger than any packet iroh sends on this line: line damage.
                continue;
            }
            bufs[filled][..packet.len()].copy_from_slice(&packet);
            metas[filled].len = packet.len();
            metas[filled].stride = packet.len();
            recv_infos[filled] = RecvInfo::new(peer_addr(), Some(local_addr()));
            filled += 1;
        }
        if filled == 0 {
            Poll::Pending
        } else {
            Poll::Ready(Ok(filled))
        }
    }
}

#[derive(Clone)]
struct LineSender(Arc<Shared>);

impl std::fmt::Debug for LineSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("serial line sender")
    }
}

impl CustomSender for LineSender {
    fn is_valid_send_addr(&self, addr: &CustomAddr) -> bool {
        addr.id() == SERIAL_TRANSPORT_ID
    }

    fn poll_send(
        &self,
        cx: &mut Context,
        _dst: &CustomAddr,
        _src: Option<&CustomAddr>,
        transmit: &Transmit<'_>,
    ) -> Poll<io::Result<()>> {
        let shared = &self.0;
        if shared.stop.load(Ordering::Relaxed) {
            // A dead line loses packets; the connection ends on the carrier loss.
            return Poll::Ready(Ok(()));
        }
        let mut q = shared.queue();
        if !q.frames.is_empty() && q.bytes + transmit.contents.len() > QUEUE_BYTES {
            q.waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let size = transmit
            .segment_size
            .unwrap_or(transmit.contents.len())
            .max(1);
        for packet in transmit.contents.chunks(size) {
            let frame = encode(&[&[KIND_PACKET][..], packet].concat());
            q.bytes += frame.len();
            q.frames.push_back(frame);
            shared.counters.packets_sent.fetch_add(1, Ordering::Relaxed);
        }
        shared.ready.notify_one();
        Poll::Ready(Ok(()))
    }
}
