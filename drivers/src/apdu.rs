//! APDU framing shared by cards, readers and clients: parsing a C-APDU on the card side,
//! splitting an R-APDU into data and status word on the terminal side, and the trait
//! every simulated chip (card, PSAM) implements so any reader can host it.

use thiserror::Error;

/// A simulated chip: the sans-IO half of a card that a reader, the vpcd bridge or the
/// serial simulator drives.
pub trait ApduProcessor: Send {
    /// Answer-to-reset bytes sent when the reader powers the chip.
    fn atr(&self) -> Vec<u8>;
    /// Power cycle: forgets volatile state (selection, PIN verified, open sessions).
    fn reset(&mut self);
    /// Handles one C-APDU and returns the R-APDU (data then SW1 SW2). Never panics on
    /// malformed input: it answers with a status word.
    fn process(&mut self, c_apdu: &[u8]) -> Vec<u8>;
}

/// A parsed command APDU (short form only, as the e-purse uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Command<'a> {
    /// Class byte.
    pub cla: u8,
    /// Instruction byte.
    pub ins: u8,
    /// Parameter 1.
    pub p1: u8,
    /// Parameter 2.
    pub p2: u8,
    /// Command data (empty when there is no Lc).
    pub data: &'a [u8],
    /// Expected response length, when present.
    pub le: Option<u8>,
}

impl<'a> Command<'a> {
    /// Parses cases 1-4 of ISO 7816-4 short APDUs; `None` when the length bytes do not
    /// match the actual length.
    pub fn parse(bytes: &'a [u8]) -> Option<Command<'a>> {
        let (header, body) = bytes.split_at_checked(4)?;
        let mut cmd = Command {
            cla: header[0],
            ins: header[1],
            p1: header[2],
            p2: header[3],
            data: &[],
            le: None,
        };
        match body {
            [] => {}
            [le] => cmd.le = Some(*le),
            [lc, rest @ ..] => {
                let lc = usize::from(*lc);
                match rest.len().checked_sub(lc)? {
                    0 => cmd.data = rest,
                    1 => {
                        cmd.data = &rest[..lc];
                        cmd.le = Some(rest[lc]);
                    }
                    _ => return None,
                }
                if lc == 0 {
                    return None;
                }
            }
        }
        Some(cmd)
    }
}

/// Builds a C-APDU with data and an optional Le.
pub fn build(cla: u8, ins: u8, p1: u8, p2: u8, data: &[u8], le: Option<u8>) -> Vec<u8> {
    let mut v = Vec::with_capacity(6 + data.len());
    v.extend_from_slice(&[cla, ins, p1, p2]);
    if !data.is_empty() {
        // Short APDUs only: every e-purse command's data fits in one byte of Lc.
        v.push(u8::try_from(data.len()).expect("short APDU data"));
        v.extend_from_slice(data);
    }
    v.extend(le);
    v
}

/// An R-APDU too short to carry a status word.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("the card answered {0} byte(s), too short for a status word")]
pub struct TooShort(pub usize);

/// A response APDU split into data and status word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Response data.
    pub data: Vec<u8>,
    /// Status word SW1 SW2.
    pub sw: u16,
}

impl Response {
    /// Splits the last two bytes off as the status word.
    pub fn parse(bytes: &[u8]) -> Result<Response, TooShort> {
        let split = bytes.len().checked_sub(2).ok_or(TooShort(bytes.len()))?;
        Ok(Response {
            data: bytes[..split].to_vec(),
            sw: u16::from_be_bytes([bytes[split], bytes[split + 1]]),
        })
    }
}

/// ATR of a T=1 chip with the given 8 historical bytes: `3B 88 80 01 <hist> TCK`.
pub fn atr_with_history(history: &[u8; 8]) -> Vec<u8> {
    let mut atr = vec![0x3B, 0x88, 0x80, 0x01];
    atr.extend_from_slice(history);
    // TCK makes the XOR of T0..TCK zero; it is required when T=1 is offered.
    let tck = atr[1..].iter().fold(0u8, |acc, b| acc ^ b);
    atr.push(tck);
    atr
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_parse_handles_all_four_cases_and_rejects_bad_lengths() {
        let c = Command::parse(&[0x80, 0x5C, 0x00, 0x02, 0x04]).unwrap();
        assert_eq!((c.data, c.le), (&[][..], Some(4)));
        let c = Command::parse(&[0x00, 0xA4, 0x04, 0x00, 0x02, 0xAA, 0xBB]).unwrap();
        assert_eq!((c.data, c.le), (&[0xAA, 0xBB][..], None));
        let c = Command::parse(&[0x00, 0xA4, 0x04, 0x00, 0x02, 0xAA, 0xBB, 0x00]).unwrap();
        assert_eq!((c.data, c.le), (&[0xAA, 0xBB][..], Some(0)));
        assert!(Command::parse(&[0x00, 0xA4, 0x04]).is_none());
        assert!(Command::parse(&[0x00, 0xA4, 0x04, 0x00, 0x05, 0xAA]).is_none());
        assert!(Command::parse(&[0x00, 0xA4, 0x04, 0x00, 0x01, 0xAA, 0xBB, 0xCC]).is_none());
    }

    #[test]
    fn response_parse_splits_status_word_and_rejects_one_byte() {
        let r = Response::parse(&[0x01, 0x02, 0x90, 0x00]).unwrap();
        assert_eq!((r.data, r.sw), (vec![1, 2], 0x9000));
        assert_eq!(Response::parse(&[0x90]), Err(TooShort(1)));
    }

    #[test]
    fn atr_checksum_xors_to_zero() {
        let atr = atr_with_history(b"CARDMESH");
        assert_eq!(atr[1..].iter().fold(0, |a, b| a ^ b), 0);
        assert_eq!(atr.len(), 13);
    }
}
