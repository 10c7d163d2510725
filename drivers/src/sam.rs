//! The terminal's security module: computes MAC1 for the card and checks the card's
//! MAC2, numbering every debit with a 4-byte terminal sequence. Two implementations: a
//! software SAM holding the (sealed) purchase master key, whose sequence is reserved
//! durably through a [`SeqStore`] before it is used, and a client for a PSAM in a
//! reader slot (a real one, or the virtual PSAM through vpcd).

use std::error::Error as StdError;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::apdu::{self, Response};
use crate::constants::{KEY_VERSION, TxType, sw};
use crate::crypto::{self, Key8, Key16, mac_eq};
use crate::persist;
use crate::reader::{CardReader, ReaderError};
use crate::types::{Asn, BcdDateTime, Mac4, TerminalId};

/// What the terminal asks its SAM to sign: the PSAM MAC1 command's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mac1Request {
    /// Card random from the INITIALIZE command (for debit-for-unlock: the GTAC).
    pub random: [u8; 4],
    /// The card's offline counter from INITIALIZE.
    pub card_counter: u16,
    /// Amount in fen.
    pub amount: u32,
    /// Transaction type.
    pub tx_type: TxType,
    /// Transaction date-time.
    pub datetime: BcdDateTime,
    /// Key version reported by the card.
    pub key_version: u8,
    /// Algorithm id reported by the card.
    pub alg_id: u8,
    /// Card number, for diversification.
    pub asn: Asn,
}

/// A MAC1 and the terminal sequence number it was computed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mac1 {
    /// Terminal transaction sequence, already reserved durably.
    pub term_seq: u32,
    /// MAC1 for the card.
    pub mac1: Mac4,
}

/// A SAM operation failed.
#[derive(Debug, Error)]
pub enum SamError {
    /// The card's MAC2 does not match: the card is not genuine or the exchange was
    /// tampered with. Keep the card and report it.
    #[error("the card's MAC2 is wrong: the card may be counterfeit, keep it and report it")]
    Mac2Invalid,
    /// MAC2 check without a MAC1 computed before it.
    #[error("SAM asked to check a MAC2 without a preceding MAC1")]
    NoMac1Pending,
    /// The card uses a key version this SAM does not hold.
    #[error("the card uses key version {0}, which this SAM does not hold")]
    UnsupportedKeyVersion(u8),
    /// The terminal sequence could not be reserved durably; no MAC1 was produced.
    #[error(transparent)]
    Sequence(#[from] SeqStoreError),
    /// The terminal sequence is used up (2^32 debits): the SAM must be replaced.
    #[error("the SAM's terminal sequence is exhausted: replace the SAM")]
    SequenceExhausted,
    /// Talking to the PSAM failed.
    #[error("PSAM reader: {0}")]
    Reader(#[from] ReaderError),
    /// The PSAM refused a command.
    #[error("the PSAM refused {command} with status {sw:04X}")]
    Refused {
        /// Command name.
        command: &'static str,
        /// Status word.
        sw: u16,
    },
    /// The PSAM's answer had the wrong shape.
    #[error("the PSAM answered {command} with a malformed response")]
    Malformed {
        /// Command name.
        command: &'static str,
    },
}

/// A terminal security module.
pub trait Sam {
    /// The terminal id this SAM signs as.
    fn terminal_id(&mut self) -> Result<TerminalId, SamError>;
    /// Reserves the next terminal sequence and computes MAC1 under the card's session key.
    fn mac1(&mut self, req: &Mac1Request) -> Result<Mac1, SamError>;
    /// Checks the card's MAC2 for the last MAC1.
    fn check_mac2(&mut self, mac2: Mac4) -> Result<(), SamError>;
}

impl<S: Sam + ?Sized> Sam for &mut S {
    fn terminal_id(&mut self) -> Result<TerminalId, SamError> {
        (**self).terminal_id()
    }
    fn mac1(&mut self, req: &Mac1Request) -> Result<Mac1, SamError> {
        (**self).mac1(req)
    }
    fn check_mac2(&mut self, mac2: Mac4) -> Result<(), SamError> {
        (**self).check_mac2(mac2)
    }
}

/// The terminal sequence store could not reserve a number.
#[derive(Debug, Error)]
#[error("cannot reserve the next terminal sequence number (check the disk): {0}")]
pub struct SeqStoreError(#[source] pub Box<dyn StdError + Send + Sync>);

/// Durable terminal-sequence counter. `reserve_next` must make the returned number
/// durable before returning, so a crash never reuses a sequence number.
pub trait SeqStore {
    /// Reserves and returns the next sequence number (strictly increasing).
    fn reserve_next(&mut self) -> Result<u32, SeqStoreError>;
}

/// A [`SeqStore`] in a small file (4 bytes, big-endian, last reserved number), written
/// atomically with fsync. For tests, demos and nodes without a database at hand.
#[derive(Debug)]
pub struct FileSeqStore {
    path: PathBuf,
    last: u32,
}

impl FileSeqStore {
    /// Opens the store, starting at 0 if the file does not exist yet.
    pub fn open(path: &Path) -> Result<FileSeqStore, SeqStoreError> {
        let last = match std::fs::read(path) {
            Ok(b) => u32::from_be_bytes(b.as_slice().try_into().map_err(|_| {
                SeqStoreError(format!("{} is not a sequence file", path.display()).into())
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(SeqStoreError(e.into())),
        };
        Ok(FileSeqStore {
            path: path.to_owned(),
            last,
        })
    }
}

impl SeqStore for FileSeqStore {
    fn reserve_next(&mut self) -> Result<u32, SeqStoreError> {
        let next = self
            .last
            .checked_add(1)
            .ok_or_else(|| SeqStoreError("terminal sequence exhausted".into()))?;
        persist::write_atomic(&self.path, &next.to_be_bytes())
            .map_err(|e| SeqStoreError(e.into()))?;
        self.last = next;
        Ok(next)
    }
}

/// A non-durable [`SeqStore`] for unit tests and benchmarks only.
#[derive(Debug, Default)]
pub struct MemorySeqStore {
    last: u32,
}

impl SeqStore for MemorySeqStore {
    fn reserve_next(&mut self) -> Result<u32, SeqStoreError> {
        self.last = self
            .last
            .checked_add(1)
            .ok_or_else(|| SeqStoreError("terminal sequence exhausted".into()))?;
        Ok(self.last)
    }
}

/// MAC1 computation shared by the software SAM and the virtual PSAM: returns the
/// session key (kept for the MAC2 check) and MAC1.
pub(crate) fn compute_mac1(
    purchase_mk: &Key16,
    terminal: &TerminalId,
    req: &Mac1Request,
    term_seq: u32,
) -> (Key8, Mac4) {
    let dpk = purchase_mk.diversify(&req.asn);
    let ses = crypto::purchase_session_key(&dpk, req.random, req.card_counter, term_seq);
    let mac1 = crypto::debit_mac1(&ses, req.amount, req.tx_type, terminal, &req.datetime);
    (ses, mac1)
}

/// A SAM in software, holding the purchase master key.
#[derive(Debug)]
pub struct SoftwareSam<S: SeqStore> {
    terminal: TerminalId,
    purchase_mk: Key16,
    seq: S,
    pending: Option<(Key8, u32)>,
}

impl<S: SeqStore> SoftwareSam<S> {
    /// A SAM signing as `terminal` with the purchase master key and a sequence store.
    pub fn new(terminal: TerminalId, purchase_mk: Key16, seq: S) -> SoftwareSam<S> {
        SoftwareSam {
            terminal,
            purchase_mk,
            seq,
            pending: None,
        }
    }
}

impl<S: SeqStore> Sam for SoftwareSam<S> {
    fn terminal_id(&mut self) -> Result<TerminalId, SamError> {
        Ok(self.terminal)
    }

    fn mac1(&mut self, req: &Mac1Request) -> Result<Mac1, SamError> {
        self.pending = None;
        if req.key_version != KEY_VERSION {
            return Err(SamError::UnsupportedKeyVersion(req.key_version));
        }
        let term_seq = self.seq.reserve_next()?;
        let (ses, mac1) = compute_mac1(&self.purchase_mk, &self.terminal, req, term_seq);
        self.pending = Some((ses, req.amount));
        Ok(Mac1 { term_seq, mac1 })
    }

    fn check_mac2(&mut self, mac2: Mac4) -> Result<(), SamError> {
        let (ses, amount) = self.pending.take().ok_or(SamError::NoMac1Pending)?;
        if mac_eq(&mac2, &crypto::debit_mac2(&ses, amount)) {
            Ok(())
        } else {
            Err(SamError::Mac2Invalid)
        }
    }
}

/// A PSAM in a reader slot (PSAM commands 00B0 9600, 8070, 8072).
#[derive(Debug)]
pub struct PsamClient<R: CardReader> {
    reader: R,
    terminal: Option<TerminalId>,
}

impl<R: CardReader> PsamClient<R> {
    /// Talks to the PSAM in `reader` (the card must already be present).
    pub fn new(reader: R) -> PsamClient<R> {
        PsamClient {
            reader,
            terminal: None,
        }
    }

    fn call(
        &mut self,
        command: &'static str,
        apdu: &[u8],
        len: usize,
    ) -> Result<Vec<u8>, SamError> {
        let raw = self.reader.transmit(apdu)?;
        let r = Response::parse(&raw).map_err(|_| SamError::Malformed { command })?;
        match r.sw {
            sw::OK if r.data.len() == len => Ok(r.data),
            sw::OK => Err(SamError::Malformed { command }),
            sw::MAC_ERROR => Err(SamError::Mac2Invalid),
            sw => Err(SamError::Refused { command, sw }),
        }
    }
}

impl<R: CardReader> Sam for PsamClient<R> {
    fn terminal_id(&mut self) -> Result<TerminalId, SamError> {
        if let Some(t) = self.terminal {
            return Ok(t);
        }
        let d = self.call(
            "READ BINARY (terminal id)",
            &apdu::build(0x00, 0xB0, 0x96, 0x00, &[], Some(6)),
            6,
        )?;
        let t = TerminalId(d.try_into().map_err(|_| SamError::Malformed {
            command: "READ BINARY",
        })?);
        self.terminal = Some(t);
        Ok(t)
    }

    fn mac1(&mut self, req: &Mac1Request) -> Result<Mac1, SamError> {
        let mut data = Vec::with_capacity(28);
        data.extend_from_slice(&req.random);
        data.extend_from_slice(&req.card_counter.to_be_bytes());
        data.extend_from_slice(&req.amount.to_be_bytes());
        data.push(req.tx_type.code());
        data.extend_from_slice(&req.datetime.date());
        data.extend_from_slice(&req.datetime.time());
        data.push(req.key_version);
        data.push(req.alg_id);
        data.extend_from_slice(&req.asn.0);
        let d = self.call(
            "MAC1",
            &apdu::build(0x80, 0x70, 0x00, 0x00, &data, Some(8)),
            8,
        )?;
        Ok(Mac1 {
            term_seq: u32::from_be_bytes([d[0], d[1], d[2], d[3]]),
            mac1: Mac4([d[4], d[5], d[6], d[7]]),
        })
    }

    fn check_mac2(&mut self, mac2: Mac4) -> Result<(), SamError> {
        self.call(
            "MAC2 check",
            &apdu::build(0x80, 0x72, 0x00, 0x00, &mac2.0, None),
            0,
        )
        .map(|_| ())
    }
}
