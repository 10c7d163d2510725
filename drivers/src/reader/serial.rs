//! Serial (RS232) card reader, its frame, and a simulator that hosts a simulated chip
//! at the other end of a serial line.
//!
//! Frame, both directions: `STX(02) LEN(2, big-endian) PAYLOAD CHK ETX(03)`, where LEN
//! counts the payload bytes (1..=512) and CHK is the XOR of the two LEN bytes and every
//! payload byte.
//! - Host to reader, payload = `command(1) data`: `01` TRANSMIT (data = C-APDU),
//!   `02` STATUS (no data).
//! - Reader to host, payload = `status(1) data`: `00` OK (TRANSMIT: data = R-APDU;
//!   STATUS: data = `01` card present or `00` empty), `01` no card, `02` card removed
//!   during the command, `03` the reader received a damaged frame, `04` unknown command.
//!
//! A serial reader has no event line, so waiting for a card polls STATUS every 50 ms.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serialport::SerialPort;
use thiserror::Error;

use super::{CardReader, ReaderError};
use crate::apdu::ApduProcessor;

const STX: u8 = 0x02;
const ETX: u8 = 0x03;
/// Largest payload: a command byte plus a short APDU with 255 bytes of data and Le,
/// rounded up generously.
pub const MAX_PAYLOAD: usize = 512;

const CMD_TRANSMIT: u8 = 0x01;
const CMD_STATUS: u8 = 0x02;
const ST_OK: u8 = 0x00;
const ST_NO_CARD: u8 = 0x01;
const ST_CARD_REMOVED: u8 = 0x02;
const ST_BAD_FRAME: u8 = 0x03;
const ST_UNKNOWN: u8 = 0x04;

const POLL: Duration = Duration::from_millis(50);

/// A damaged or incomplete frame.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    /// The frame did not start with STX.
    #[error("frame starts with {0:#04x} instead of STX")]
    BadStart(u8),
    /// The length field is 0 or larger than the maximum.
    #[error("frame length {0} is out of range")]
    BadLength(usize),
    /// The line went quiet or closed in the middle of a frame.
    #[error("frame cut off after {got} bytes")]
    Truncated {
        /// Bytes received before the cut.
        got: usize,
    },
    /// The checksum does not match.
    #[error("checksum {got:#04x} does not match {expected:#04x}")]
    Checksum {
        /// Computed over the received bytes.
        expected: u8,
        /// Received.
        got: u8,
    },
    /// The frame did not end with ETX.
    #[error("frame ends with {0:#04x} instead of ETX")]
    BadEnd(u8),
}

/// Encodes one frame around `payload`.
pub fn encode_frame(payload: &[u8]) -> Vec<u8> {
    assert!(
        (1..=MAX_PAYLOAD).contains(&payload.len()),
        "frame payload length {} out of range",
        payload.len()
    );
    let len = (payload.len() as u16).to_be_bytes();
    let chk = payload.iter().fold(len[0] ^ len[1], |a, b| a ^ b);
    let mut f = Vec::with_capacity(payload.len() + 5);
    f.push(STX);
    f.extend_from_slice(&len);
    f.extend_from_slice(payload);
    f.push(chk);
    f.push(ETX);
    f
}

/// Reads one frame. `Ok(None)` if nothing at all arrived before the port's read
/// timeout (an idle line); a frame that starts but does not finish is an error.
pub fn read_frame<R: Read + ?Sized>(r: &mut R) -> Result<Option<Vec<u8>>, ReaderError> {
    let mut first = [0u8; 1];
    match r.read(&mut first) {
        Ok(0) => return Ok(None),
        Ok(_) => {}
        Err(e) if is_timeout(&e) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    if first[0] != STX {
        return Err(FrameError::BadStart(first[0]).into());
    }
    let mut got = 1;
    let mut len = [0u8; 2];
    read_exact_counted(r, &mut len, &mut got)?;
    let n = usize::from(u16::from_be_bytes(len));
    if !(1..=MAX_PAYLOAD).contains(&n) {
        return Err(FrameError::BadLength(n).into());
    }
    let mut rest = vec![0u8; n + 2];
    read_exact_counted(r, &mut rest, &mut got)?;
    let payload = &rest[..n];
    let expected = payload.iter().fold(len[0] ^ len[1], |a, b| a ^ b);
    if rest[n] != expected {
        return Err(FrameError::Checksum {
            expected,
            got: rest[n],
        }
        .into());
    }
    if rest[n + 1] != ETX {
        return Err(FrameError::BadEnd(rest[n + 1]).into());
    }
    rest.truncate(n);
    Ok(Some(rest))
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}

fn read_exact_counted<R: Read + ?Sized>(
    r: &mut R,
    buf: &mut [u8],
    got: &mut usize,
) -> Result<(), ReaderError> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => return Err(FrameError::Truncated { got: *got }.into()),
            Ok(n) => {
                filled += n;
                *got += n;
            }
            Err(e) if is_timeout(&e) => return Err(FrameError::Truncated { got: *got }.into()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// A card reader on a serial line speaking the frame above.
pub struct SerialReader {
    port: Box<dyn SerialPort>,
}

impl std::fmt::Debug for SerialReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SerialReader")
            .field("port", &self.port.name())
            .finish()
    }
}

impl SerialReader {
    /// Opens the reader on `path` (e.g. `/dev/ttyS0`) at `baud`; a reply must start
    /// within `reply_timeout`.
    pub fn open(
        path: &str,
        baud: u32,
        reply_timeout: Duration,
    ) -> Result<SerialReader, ReaderError> {
        let port = serialport::new(path, baud)
            .timeout(reply_timeout)
            .open()
            .map_err(|e| {
                ReaderError::Io(io::Error::other(format!(
                    "cannot open serial port {path}: {e}"
                )))
            })?;
        Ok(SerialReader { port })
    }

    /// A reader on an already opened port.
    pub fn from_port(port: Box<dyn SerialPort>) -> SerialReader {
        SerialReader { port }
    }

    fn exchange(&mut self, payload: &[u8]) -> Result<Vec<u8>, ReaderError> {
        self.port.write_all(&encode_frame(payload))?;
        self.port.flush()?;
        let mut reply = read_frame(&mut self.port)?.ok_or(ReaderError::Timeout)?;
        match reply.first().copied() {
            Some(ST_OK) => Ok(reply.split_off(1)),
            Some(ST_NO_CARD) => Err(ReaderError::NoCard),
            Some(ST_CARD_REMOVED) => Err(ReaderError::CardRemoved),
            Some(code) => Err(ReaderError::ReaderFault(code)),
            None => Err(FrameError::BadLength(0).into()),
        }
    }

    fn card_present(&mut self) -> Result<bool, ReaderError> {
        Ok(self.exchange(&[CMD_STATUS])? == [0x01])
    }

    fn poll_until(&mut self, timeout: Duration, present: bool) -> Result<(), ReaderError> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.card_present()? == present {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(ReaderError::Timeout);
            }
            thread::sleep(POLL.min(deadline.saturating_duration_since(Instant::now())));
        }
    }
}

impl CardReader for SerialReader {
    fn transmit(&mut self, c_apdu: &[u8]) -> Result<Vec<u8>, ReaderError> {
        let mut payload = Vec::with_capacity(c_apdu.len() + 1);
        payload.push(CMD_TRANSMIT);
        payload.extend_from_slice(c_apdu);
        self.exchange(&payload)
    }

    fn wait_for_card(&mut self, timeout: Duration) -> Result<(), ReaderError> {
        self.poll_until(timeout, true)
    }

    fn wait_for_removal(&mut self, timeout: Duration) -> Result<(), ReaderError> {
        self.poll_until(timeout, false)
    }
}

type Slot = Arc<Mutex<Option<Box<dyn ApduProcessor>>>>;

/// A serial card reader simulator: answers the frame protocol on a serial port (one
/// end of a pty pair) with whatever chip is in its slot. Runs on its own thread until
/// dropped.
pub struct SerialReaderSimulator {
    slot: Slot,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SerialReaderSimulator {
    /// Starts serving on `port`. The port's read timeout sets how fast `drop` returns.
    pub fn spawn(mut port: Box<dyn SerialPort>) -> SerialReaderSimulator {
        let slot: Slot = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let (slot2, stop2) = (slot.clone(), stop.clone());
        let thread = thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                let reply = match read_frame(&mut port) {
                    Ok(None) => continue,
                    Ok(Some(payload)) => serve(&slot2, &payload),
                    Err(ReaderError::Io(_)) => return,
                    Err(_) => vec![ST_BAD_FRAME],
                };
                if port.write_all(&encode_frame(&reply)).is_err() {
                    return;
                }
            }
        });
        SerialReaderSimulator {
            slot,
            stop,
            thread: Some(thread),
        }
    }

    /// Puts a chip in the slot (powered up), returning the one that was there.
    pub fn insert(&self, mut chip: Box<dyn ApduProcessor>) -> Option<Box<dyn ApduProcessor>> {
        chip.reset();
        self.slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(chip)
    }

    /// Pulls the chip out.
    pub fn remove(&self) -> Option<Box<dyn ApduProcessor>> {
        self.slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

fn serve(slot: &Slot, payload: &[u8]) -> Vec<u8> {
    let mut chip = slot.lock().unwrap_or_else(PoisonError::into_inner);
    match (payload[0], chip.as_mut()) {
        (CMD_STATUS, c) => vec![ST_OK, u8::from(c.is_some())],
        (CMD_TRANSMIT, None) => vec![ST_NO_CARD],
        (CMD_TRANSMIT, Some(c)) => {
            let r = c.process(&payload[1..]);
            if r.len() < 2 {
                return vec![ST_CARD_REMOVED];
            }
            [&[ST_OK][..], &r].concat()
        }
        _ => vec![ST_UNKNOWN],
    }
}

impl Drop for SerialReaderSimulator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            // A panic in the simulator thread has already been reported by the runtime.
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> Result<Option<Vec<u8>>, ReaderError> {
        read_frame(&mut &bytes[..])
    }

    #[test]
    fn frame_roundtrips() {
        let f = encode_frame(&[0x01, 0x80, 0x5C, 0x00, 0x02, 0x04]);
        assert_eq!(f[0], STX);
        assert_eq!(*f.last().unwrap(), ETX);
        assert_eq!(
            read(&f).unwrap(),
            Some(vec![0x01, 0x80, 0x5C, 0x00, 0x02, 0x04])
        );
    }

    #[test]
    fn truncated_frame_is_a_typed_error() {
        let f = encode_frame(&[0x00, 0x90, 0x00]);
        for cut in 1..f.len() {
            match read(&f[..cut]) {
                Err(ReaderError::Frame(FrameError::Truncated { got })) => assert_eq!(got, cut),
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
    }

    #[test]
    fn corrupt_frames_are_typed_errors() {
        let mut f = encode_frame(&[0x00, 0x90, 0x00]);
        f[4] ^= 0x01;
        assert!(matches!(
            read(&f),
            Err(ReaderError::Frame(FrameError::Checksum { .. }))
        ));
        let mut f = encode_frame(&[0x00, 0x90, 0x00]);
        let last = f.len() - 1;
        f[last] = 0x04;
        assert!(matches!(
            read(&f),
            Err(ReaderError::Frame(FrameError::BadEnd(0x04)))
        ));
        assert!(matches!(
            read(&[0x55]),
            Err(ReaderError::Frame(FrameError::BadStart(0x55)))
        ));
        assert!(matches!(
            read(&[STX, 0x00, 0x00, 0x00, ETX]),
            Err(ReaderError::Frame(FrameError::BadLength(0)))
        ));
        assert!(matches!(
            read(&[STX, 0xFF, 0xFF]),
            Err(ReaderError::Frame(FrameError::BadLength(0xFFFF)))
        ));
    }

    #[test]
    fn idle_line_is_not_an_error() {
        assert_eq!(read(&[]).unwrap(), None);
    }
}
