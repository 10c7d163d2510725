//! Frames on a raw, noisy serial line: what carries packets once a modem said CONNECT.
//!
//! `SYNC(2) LEN(2, big-endian) !LEN(2) PAYLOAD CRC32(4, big-endian)`, the CRC over LEN
//! and the payload. The inverted length copy lets a receiver reject a damaged header at
//! once instead of waiting for a payload that never comes. A damaged frame is dropped
//! (whatever rides on the line retransmits); the receiver then looks for the next sync
//! word one byte further on, so a frame that followed a damaged one is still found.

/// Marks the start of a frame.
pub const SYNC: [u8; 2] = [0x7E, 0xC3];
/// Largest payload: a QUIC packet of the line's MTU, with room to spare.
pub const MAX_LINE_PAYLOAD: usize = 2048;
const HEADER: usize = 6;
const TRAILER: usize = 4;
/// Bytes a frame adds around its payload.
pub const FRAME_OVERHEAD: usize = HEADER + TRAILER;

/// Encodes `payload` as one line frame.
///
/// # Panics
/// If the payload is longer than [`MAX_LINE_PAYLOAD`]: callers size packets to the line.
pub fn encode(payload: &[u8]) -> Vec<u8> {
    assert!(
        payload.len() <= MAX_LINE_PAYLOAD,
        "line frame payload of {} bytes exceeds {MAX_LINE_PAYLOAD}",
        payload.len()
    );
    let len = (payload.len() as u16).to_be_bytes();
    let mut crc = crc32fast::Hasher::new();
    crc.update(&len);
    crc.update(payload);
    let mut f = Vec::with_capacity(payload.len() + FRAME_OVERHEAD);
    f.extend_from_slice(&SYNC);
    f.extend_from_slice(&len);
    f.extend_from_slice(&[!len[0], !len[1]]);
    f.extend_from_slice(payload);
    f.extend_from_slice(&crc.finalize().to_be_bytes());
    f
}

/// What the deframer has seen so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LineStats {
    pub frames: u64,
    /// Frames whose header or CRC did not check out.
    pub dropped: u64,
    /// Bytes that belonged to no good frame (noise, modem messages, damaged frames).
    pub skipped_bytes: u64,
}

/// Finds frames in a byte stream that may hold noise, cut frames and modem messages.
#[derive(Debug, Default)]
pub struct Deframer {
    buf: Vec<u8>,
    stats: LineStats,
}

impl Deframer {
    pub fn new() -> Deframer {
        Deframer::default()
    }

    /// Feeds bytes from the line; returns the good frames they completed, in order.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        self.buf.extend_from_slice(bytes);
        let mut frames = Vec::new();
        let mut at = 0;
        loop {
            let rest = &self.buf[at..];
            let Some(start) = rest.windows(2).position(|w| w == SYNC) else {
                // A lone first sync byte at the end may be the start of the next frame.
                let keep = usize::from(rest.last() == Some(&SYNC[0]));
                let end = self.buf.len() - keep;
                self.skip(at, end);
                at = end;
                break;
            };
            self.skip(at, at + start);
            at += start;
            let rest = &self.buf[at..];
            if rest.len() < HEADER {
                break;
            }
            let len = u16::from_be_bytes([rest[2], rest[3]]);
            if u16::from_be_bytes([rest[4], rest[5]]) != !len || usize::from(len) > MAX_LINE_PAYLOAD
            {
                self.stats.dropped += 1;
                self.skip(at, at + 1);
                at += 1;
                continue;
            }
            let total = HEADER + usize::from(len) + TRAILER;
            if rest.len() < total {
                break;
            }
            let body = &rest[HEADER..HEADER + usize::from(len)];
            let mut crc = crc32fast::Hasher::new();
            crc.update(&rest[2..4]);
            crc.update(body);
            let want = u32::from_be_bytes(rest[total - 4..total].try_into().expect("4 bytes"));
            if crc.finalize() != want {
                self.stats.dropped += 1;
                self.skip(at, at + 1);
                at += 1;
                continue;
            }
            frames.push(body.to_vec());
            self.stats.frames += 1;
            at += total;
        }
        self.buf.drain(..at);
        frames
    }

    fn skip(&mut self, from: usize, to: usize) {
        if to <= from {
            return;
        }
        self.stats.skipped_bytes += (to - from) as u64;
    }

    /// Bytes held while a frame is incomplete.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    pub fn stats(&self) -> LineStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn frames_round_trip_in_one_push_and_byte_by_byte() {
        let mut wire = encode(b"first");
        wire.extend(encode(b""));
        wire.extend(encode(&[0x7E; 300]));
        let mut d = Deframer::new();
        assert_eq!(
            d.push(&wire),
            vec![b"first".to_vec(), vec![], vec![0x7E; 300]]
        );
        let mut d = Deframer::new();
        let got: Vec<_> = wire.iter().flat_map(|b| d.push(&[*b])).collect();
        assert_eq!(got.len(), 3);
        assert_eq!(d.stats().skipped_bytes, 0);
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn a_truncated_frame_waits_then_gives_way_to_the_next_one() {
        let f = encode(b"cut short");
        let mut d = Deframer::new();
        assert!(d.push(&f[..f.len() - 3]).is_empty());
        assert_eq!(d.pending(), f.len() - 3);
        assert_eq!(d.push(&encode(b"next")), vec![b"next".to_vec()]);
        assert_eq!(d.stats().dropped, 1);
        assert_eq!(d.stats().frames, 1);
    }

    #[test]
    fn a_corrupted_frame_is_dropped_and_the_following_one_kept() {
        for i in 2..encode(b"payload").len() {
            let mut wire = encode(b"payload");
            wire[i] ^= 0x10;
            wire.extend(encode(b"after"));
            let mut d = Deframer::new();
            assert_eq!(d.push(&wire), vec![b"after".to_vec()], "flip at {i}");
            assert!(d.stats().dropped >= 1, "flip at {i}");
        }
    }

    #[test]
    fn resyncs_after_garbage_and_modem_messages() {
        let mut wire = b"\r\nRING\r\n\x7e\x7e\xc3\x00".to_vec();
        wire.extend(encode(b"data"));
        wire.extend(b"\r\nNO CARRIER\r\n");
        let mut d = Deframer::new();
        assert_eq!(d.push(&wire), vec![b"data".to_vec()]);
        assert_eq!(d.stats().skipped_bytes, 12 + 14);
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn an_oversized_length_is_refused_without_waiting() {
        let len = (MAX_LINE_PAYLOAD as u16 + 1).to_be_bytes();
        let mut wire = SYNC.to_vec();
        wire.extend([len[0], len[1], !len[0], !len[1]]);
        wire.extend(encode(b"ok"));
        let mut d = Deframer::new();
        assert_eq!(d.push(&wire), vec![b"ok".to_vec()]);
        assert_eq!(d.stats().dropped, 1);
    }

    proptest! {
        #[test]
        fn noise_never_yields_a_frame_that_was_not_sent(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..8),
            flips in proptest::collection::vec((any::<usize>(), 0u8..8), 0..6),
            chunk in 1usize..50,
        ) {
            let mut wire: Vec<u8> = payloads.iter().flat_map(|p| encode(p)).collect();
            for (at, bit) in &flips {
                let i = at % wire.len();
                wire[i] ^= 1 << bit;
            }
            let mut d = Deframer::new();
            let got: Vec<_> = wire.chunks(chunk).flat_map(|c| d.push(c)).collect();
            // Every frame received was sent, in order; without noise, all of them.
            let mut sent = payloads.iter();
            for g in &got {
                prop_assert!(sent.any(|p| p == g));
            }
            if flips.is_empty() {
                prop_assert_eq!(got, payloads);
            }
        }
    }
}
