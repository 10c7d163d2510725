//! The virtual PSAM: a sans-IO terminal security module holding the purchase master key
//! and the terminal's id and sequence, answering the PSAM commands of the reference:
//! - `00 B0 96 00 06` READ BINARY of the terminal id file (SFI 16h);
//! - `80 70 00 00 1C` MAC1 generation: random(4) cardCtr(2) amount(4) type(1) date(4)
//!   time(3) keyVer(1) algId(1) ASN(8) -> termSeq(4) MAC1(4). cardmesh diversifies
//!   once (by ASN), so the 24h-byte form with a second factor is refused with 6700;
//! - `80 72 00 00 04` MAC2 check -> 9000, or 9302 when wrong, 6984 without a MAC1.
//!
//! The sequence is written to the state file before MAC1 is returned.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::apdu::{ApduProcessor, Command, atr_with_history};
use crate::constants::{KEY_VERSION, TxType, sw};
use crate::crypto::{self, Key8, Key16, mac_eq};
use crate::persist::{self, StateFileError};
use crate::sam::{Mac1Request, compute_mac1};
use crate::types::{Asn, BcdDateTime, Mac4, TerminalId};

const MAGIC: &[u8; 8] = b"CMPSAM01";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct PsamState {
    terminal: TerminalId,
    purchase_mk: Key16,
    last_seq: u32,
}

/// A virtual PSAM. See the module docs.
#[derive(Debug)]
pub struct VirtualPsam {
    state: PsamState,
    file: Option<PathBuf>,
    pending: Option<(Key8, u32)>,
}

impl VirtualPsam {
    /// A PSAM in memory only.
    pub fn new(terminal: TerminalId, purchase_mk: Key16) -> VirtualPsam {
        VirtualPsam {
            state: PsamState {
                terminal,
                purchase_mk,
                last_seq: 0,
            },
            file: None,
            pending: None,
        }
    }

    /// A PSAM whose state lives in `path` (created or overwritten now).
    pub fn create(
        path: &Path,
        terminal: TerminalId,
        purchase_mk: Key16,
    ) -> Result<VirtualPsam, StateFileError> {
        let mut psam = VirtualPsam::new(terminal, purchase_mk);
        persist::save(path, MAGIC, &psam.state)?;
        psam.file = Some(path.to_owned());
        Ok(psam)
    }

    /// Opens a PSAM from its state file.
    pub fn open(path: &Path) -> Result<VirtualPsam, StateFileError> {
        Ok(VirtualPsam {
            state: persist::load(path, MAGIC, "virtual PSAM")?,
            file: Some(path.to_owned()),
            pending: None,
        })
    }

    /// The last terminal sequence number handed out.
    pub fn last_seq(&self) -> u32 {
        self.state.last_seq
    }

    fn route(&mut self, raw: &[u8]) -> Result<Vec<u8>, u16> {
        let pending = self.pending.take();
        let c = Command::parse(raw).ok_or(sw::WRONG_LENGTH)?;
        match (c.cla, c.ins) {
            (0x00, 0xB0) if (c.p1, c.p2) == (0x96, 0x00) => Ok(self.state.terminal.0.to_vec()),
            (0x00, 0xB0) => Err(sw::FILE_NOT_FOUND),
            (0x80, 0x70) => self.mac1(&c),
            (0x80, 0x72) => {
                let mac2 = Mac4(c.data.try_into().map_err(|_| sw::WRONG_LENGTH)?);
                let (ses, amount) = pending.ok_or(sw::NO_RANDOM)?;
                if mac_eq(&mac2, &crypto::debit_mac2(&ses, amount)) {
                    Ok(Vec::new())
                } else {
                    Err(sw::MAC_ERROR)
                }
            }
            (0x00 | 0x80, _) => Err(sw::INS_NOT_SUPPORTED),
            _ => Err(sw::CLA_NOT_SUPPORTED),
        }
    }

    fn mac1(&mut self, c: &Command) -> Result<Vec<u8>, u16> {
        if (c.p1, c.p2) != (0, 0) {
            return Err(sw::WRONG_P1P2);
        }
        let d: &[u8; 28] = c.data.try_into().map_err(|_| sw::WRONG_LENGTH)?;
        let mut dt = [0u8; 7];
        dt.copy_from_slice(&d[11..18]);
        let req = Mac1Request {
            random: [d[0], d[1], d[2], d[3]],
            card_counter: u16::from_be_bytes([d[4], d[5]]),
            amount: u32::from_be_bytes([d[6], d[7], d[8], d[9]]),
            tx_type: TxType::from_code(d[10]).ok_or(sw::WRONG_DATA)?,
            datetime: BcdDateTime(dt),
            key_version: d[18],
            alg_id: d[19],
            asn: Asn(d[20..28].try_into().map_err(|_| sw::WRONG_LENGTH)?),
        };
        if req.key_version != KEY_VERSION {
            return Err(sw::KEY_NOT_FOUND);
        }
        let term_seq = self
            .state
            .last_seq
            .checked_add(1)
            .ok_or(sw::CONDITIONS_NOT_SATISFIED)?;
        self.state.last_seq = term_seq;
        let (ses, mac1) = compute_mac1(
            &self.state.purchase_mk,
            &self.state.terminal,
            &req,
            term_seq,
        );
        self.pending = Some((ses, req.amount));
        Ok([term_seq.to_be_bytes(), mac1.0].concat())
    }
}

impl ApduProcessor for VirtualPsam {
    fn atr(&self) -> Vec<u8> {
        atr_with_history(b"CMPSAM01")
    }

    fn reset(&mut self) {
        self.pending = None;
    }

    fn process(&mut self, c_apdu: &[u8]) -> Vec<u8> {
        let before = self.state.last_seq;
        let (mut out, status) = match self.route(c_apdu) {
            Ok(d) => (d, sw::OK),
            Err(s) => (Vec::new(), s),
        };
        if self.state.last_seq != before
            && let Some(path) = &self.file
            && persist::save(path, MAGIC, &self.state).is_err()
        {
            // Never hand out a sequence number that is not on disk.
            self.state.last_seq = before;
            self.pending = None;
            return sw::MEMORY_FAILURE.to_be_bytes().to_vec();
        }
        out.extend_from_slice(&status.to_be_bytes());
        out
    }
}
