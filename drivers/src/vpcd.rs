//! Bridge from a simulated chip to pcscd's vpcd driver (package `vsmartcard-vpcd`), so
//! the node reaches the virtual card through real pcscd and the `pcsc` crate exactly as
//! it would a real card. Connecting is inserting the card; [`VpcdBridge::remove`] or
//! dropping the bridge closes the socket, which pulls the card out.
//!
//! vpcd protocol: each message is a 2-byte big-endian length then data. A 1-byte
//! message is a control code from the reader: 0 power off, 1 power on, 2 reset (no
//! reply), 4 get ATR (reply with the ATR). A longer message is a C-APDU; the reply is
//! the R-APDU. The chip persists its own state before answering (see
//! [`crate::card::VirtualCard`]), so every APDU that changed the card is on disk.
//!
//! vpcd writes the length and the body in two segments: without `TCP_NODELAY` and
//! `TCP_QUICKACK` after every read, Nagle and delayed ACKs cost about 48 ms per APDU.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::thread::{self, JoinHandle};

use socket2::SockRef;

use crate::apdu::ApduProcessor;

/// vpcd's first slot ("Virtual PCD 00 00"): the customer card.
pub const CARD_SLOT: (&str, u16) = ("127.0.0.1", 35963);
/// vpcd's second slot ("Virtual PCD 00 01"): the PSAM.
pub const PSAM_SLOT: (&str, u16) = ("127.0.0.1", 35964);
/// Name of the reader of [`CARD_SLOT`] as pcscd lists it.
pub const CARD_READER_NAME: &str = "Virtual PCD 00 00";
/// Name of the reader of [`PSAM_SLOT`] as pcscd lists it.
pub const PSAM_READER_NAME: &str = "Virtual PCD 00 01";

/// Exclusive use of both vpcd slots, across processes: there is one pcscd per machine and
/// its vpcd ports are fixed, so two test binaries (or two checkouts testing at once) that
/// insert cards concurrently would talk to each other's chips. Held until dropped.
#[derive(Debug)]
pub struct VpcdSlots {
    _lock: File,
}

/// Why the vpcd slots cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SlotsError {
    #[error("cannot take the vpcd slot lock {path}: {source}")]
    Lock { path: String, source: io::Error },
    #[error("pcscd with the vpcd readers is not available: {0}")]
    Unavailable(String),
}

impl VpcdSlots {
    /// Waits for the machine-wide slot lock, then checks that pcscd lists both vpcd
    /// readers.
    pub fn take() -> Result<VpcdSlots, SlotsError> {
        let path = std::env::temp_dir().join("cardmesh-vpcd.lock");
        let lock_err = |source| SlotsError::Lock {
            path: path.display().to_string(),
            source,
        };
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(lock_err)?;
        file.lock().map_err(lock_err)?;
        let readers = crate::reader::pcsc::list_readers()
            .map_err(|e| SlotsError::Unavailable(e.to_string()))?;
        let has = |name: &str| readers.iter().any(|r| r.contains(name));
        if !has(CARD_READER_NAME) || !has(PSAM_READER_NAME) {
            return Err(SlotsError::Unavailable(format!(
                "pcscd lists {readers:?}, not both {CARD_READER_NAME:?} and {PSAM_READER_NAME:?}"
            )));
        }
        Ok(VpcdSlots { _lock: file })
    }

    /// For tests: the slots, or `None` (the test skips, saying why) when pcscd is not
    /// there and `CARDMESH_REQUIRE_HW` is unset. With it set, a missing pcscd panics so
    /// CI can never pass by skipping.
    pub fn for_test() -> Option<VpcdSlots> {
        match VpcdSlots::take() {
            Ok(slots) => Some(slots),
            Err(e) if std::env::var_os("CARDMESH_REQUIRE_HW").is_some() => {
                panic!("{e}, and CARDMESH_REQUIRE_HW is set")
            }
            Err(e) => {
                eprintln!("skipping: {e}; start pcscd to run this test");
                None
            }
        }
    }
}

/// A chip inserted in a vpcd slot, served by a background thread.
pub struct VpcdBridge<C: ApduProcessor + 'static> {
    stream: TcpStream,
    thread: Option<JoinHandle<C>>,
}

impl<C: ApduProcessor + 'static> std::fmt::Debug for VpcdBridge<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VpcdBridge")
            .field("peer", &self.stream.peer_addr().ok())
            .finish()
    }
}

impl<C: ApduProcessor + 'static> VpcdBridge<C> {
    /// Inserts `chip` into the vpcd slot at `addr` (e.g. [`CARD_SLOT`]). Fails if
    /// pcscd with vpcd is not listening there.
    pub fn insert(chip: C, addr: impl ToSocketAddrs) -> io::Result<VpcdBridge<C>> {
        let stream = TcpStream::connect(addr).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot reach pcscd's vpcd slot (is pcscd running with vsmartcard-vpcd?): {e}"
                ),
            )
        })?;
        stream.set_nodelay(true)?;
        let served = stream.try_clone()?;
        let thread = thread::Builder::new()
            .name("vpcd-bridge".into())
            .spawn(move || serve(chip, served))?;
        Ok(VpcdBridge {
            stream,
            thread: Some(thread),
        })
    }

    /// Pulls the card out and gives the chip back.
    pub fn remove(mut self) -> C {
        self.disconnect()
            .expect("the bridge thread is joined only here or in drop")
    }

    fn disconnect(&mut self) -> Option<C> {
        // Shutdown makes the serving thread's blocking read return; an error means the
        // socket is already closed, which is the state we want.
        let _ = self.stream.shutdown(Shutdown::Both);
        let thread = self.thread.take()?;
        match thread.join() {
            Ok(chip) => Some(chip),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl<C: ApduProcessor + 'static> Drop for VpcdBridge<C> {
    fn drop(&mut self) {
        self.disconnect();
    }
}

fn read_message(s: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len)?;
    quickack(s);
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf)?;
    quickack(s);
    Ok(buf)
}

/// Re-arms TCP_QUICKACK, which the kernel clears after use. Failing to set it only
/// costs latency, so errors are ignored.
fn quickack(s: &TcpStream) {
    let _ = SockRef::from(s).set_tcp_quickack(true);
}

fn serve<C: ApduProcessor>(mut chip: C, mut s: TcpStream) -> C {
    quickack(&s);
    while let Ok(msg) = read_message(&mut s) {
        let reply = match msg.as_slice() {
            [0..=2] => {
                chip.reset();
                continue;
            }
            [4] => chip.atr(),
            [_] | [] => continue,
            apdu => chip.process(apdu),
        };
        let Ok(len) = u16::try_from(reply.len()) else {
            continue;
        };
        let mut frame = Vec::with_capacity(reply.len() + 2);
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(&reply);
        if s.write_all(&frame).is_err() {
            break;
        }
    }
    chip
}
