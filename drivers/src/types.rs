//! Small value types that cross the card interface: the card number (ASN), terminal id,
//! BCD date-time and the 4-byte MACs, each with its wire encoding.

use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A value could not be parsed into one of the card-interface types.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ParseError {
    /// A card number must be 16 hex digits (the 8 bytes used for diversification).
    #[error("card number {0:?} must be 16 hex digits")]
    Asn(String),
    /// A chip serial number must be 16 hex digits.
    #[error("chip serial number {0:?} must be 16 hex digits")]
    ChipSerial(String),
    /// A terminal id must be 12 decimal digits.
    #[error("terminal id {0:?} must be 12 decimal digits")]
    TerminalId(String),
    /// A date-time must be a real calendar time between years 2000 and 2099.
    #[error("date-time {0} is not a valid time between 2000 and 2099")]
    DateTime(String),
    /// A PIN must be 4 to 12 decimal digits.
    #[error("a PIN must be 4 to 12 digits")]
    Pin,
}

/// Application serial number: the card number on the chip, 8 bytes (the rightmost 8 of
/// a 10-byte ASN), used for key diversification.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Asn(pub [u8; 8]);

impl Asn {
    /// Parses 16 hex digits.
    pub fn parse(s: &str) -> Result<Asn, ParseError> {
        let bytes = hex_bytes(s).ok_or_else(|| ParseError::Asn(s.to_owned()))?;
        bytes
            .try_into()
            .map(Asn)
            .map_err(|_| ParseError::Asn(s.to_owned()))
    }
}

impl fmt::Display for Asn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for Asn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Asn({self})")
    }
}

/// Chip serial number: 8 bytes the card manufacturer burns into each chip, readable
/// before personalization; the transport key of a blank card is diversified by it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ChipSerial(pub [u8; 8]);

impl ChipSerial {
    /// Parses 16 hex digits.
    pub fn parse(s: &str) -> Result<ChipSerial, ParseError> {
        let bytes = hex_bytes(s).ok_or_else(|| ParseError::ChipSerial(s.to_owned()))?;
        bytes
            .try_into()
            .map(ChipSerial)
            .map_err(|_| ParseError::ChipSerial(s.to_owned()))
    }
}

impl fmt::Display for ChipSerial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for ChipSerial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChipSerial({self})")
    }
}

/// Terminal id: 6 bytes BCD, 12 digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TerminalId(pub [u8; 6]);

impl TerminalId {
    /// Parses 12 decimal digits.
    pub fn parse(s: &str) -> Result<TerminalId, ParseError> {
        let err = || ParseError::TerminalId(s.to_owned());
        if s.len() != 12 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        hex_bytes(s)
            .and_then(|b| b.try_into().ok())
            .map(TerminalId)
            .ok_or_else(err)
    }
}

impl fmt::Display for TerminalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for TerminalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TerminalId({self})")
    }
}

/// Transaction date-time, 7 bytes BCD `YYYYMMDDhhmmss`. The caller injects the clock.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BcdDateTime(pub [u8; 7]);

impl BcdDateTime {
    /// Builds a date-time, checking that it is a real calendar time in 2000..=2099.
    pub fn new(
        year: u16,
        month: u8,
        day: u8,
        hour: u8,
        minute: u8,
        second: u8,
    ) -> Result<BcdDateTime, ParseError> {
        let leap =
            year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
        let days_in_month = match month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => 0,
        };
        if !(2000..=2099).contains(&year)
            || day == 0
            || day > days_in_month
            || hour > 23
            || minute > 59
            || second > 59
        {
            return Err(ParseError::DateTime(format!(
                "{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02}"
            )));
        }
        let bcd = |v: u8| ((v / 10) << 4) | (v % 10);
        Ok(BcdDateTime([
            bcd((year / 100) as u8),
            bcd((year % 100) as u8),
            bcd(month),
            bcd(day),
            bcd(hour),
            bcd(minute),
            bcd(second),
        ]))
    }

    /// The 4-byte BCD date `YYYYMMDD`, as the PSAM and the transaction log carry it.
    pub fn date(&self) -> [u8; 4] {
        [self.0[0], self.0[1], self.0[2], self.0[3]]
    }

    /// The 3-byte BCD time `hhmmss`.
    pub fn time(&self) -> [u8; 3] {
        [self.0[4], self.0[5], self.0[6]]
    }
}

impl fmt::Display for BcdDateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.0;
        write!(
            f,
            "{:02x}{:02x}-{:02x}-{:02x} {:02x}:{:02x}:{:02x}",
            d[0], d[1], d[2], d[3], d[4], d[5], d[6]
        )
    }
}

impl fmt::Debug for BcdDateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BcdDateTime({self})")
    }
}

/// A 4-byte MAC or TAC as carried in APDUs.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Mac4(pub [u8; 4]);

impl fmt::Display for Mac4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for Mac4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mac4({self})")
    }
}

/// A cardholder PIN, 4 to 12 digits. Its Debug output is redacted.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin(Vec<u8>);

impl Pin {
    /// Parses 4 to 12 decimal digits.
    pub fn parse(digits: &str) -> Result<Pin, ParseError> {
        if !(4..=12).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError::Pin);
        }
        Ok(Pin(digits.bytes().map(|b| b - b'0').collect()))
    }

    /// Decodes a BCD PIN as sent in VERIFY (digits, F-padded); `None` if not 4-12 digits.
    pub fn from_bcd(bytes: &[u8]) -> Option<Pin> {
        let last = (bytes.len() * 2).checked_sub(1)?;
        let mut digits = Vec::with_capacity(bytes.len() * 2);
        for (i, nibble) in bytes.iter().flat_map(|b| [b >> 4, b & 0x0F]).enumerate() {
            match nibble {
                0..=9 => digits.push(nibble),
                // Only the very last nibble may be the F padding.
                0x0F if i == last => {}
                _ => return None,
            }
        }
        (4..=12).contains(&digits.len()).then_some(Pin(digits))
    }

    /// The PIN as sent in VERIFY: BCD digits, padded with F to whole bytes.
    pub fn to_bcd(&self) -> Vec<u8> {
        self.0
            .chunks(2)
            .map(|pair| (pair[0] << 4) | pair.get(1).copied().unwrap_or(0x0F))
            .collect()
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(<redacted>)")
    }
}

impl Drop for Pin {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

fn hex_bytes(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|p| u8::from_str_radix(p, 16).ok()))
        .collect()
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    bytes.iter().try_for_each(|b| write!(f, "{b:02X}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetime_encodes_bcd_and_rejects_impossible_dates() {
        let dt = BcdDateTime::new(2025, 3, 1, 12, 34, 56).unwrap();
        assert_eq!(dt.0, [0x20, 0x25, 0x03, 0x01, 0x12, 0x34, 0x56]);
        assert_eq!(dt.date(), [0x20, 0x25, 0x03, 0x01]);
        assert_eq!(dt.time(), [0x12, 0x34, 0x56]);
        assert!(BcdDateTime::new(2025, 2, 29, 0, 0, 0).is_err());
        assert!(BcdDateTime::new(2024, 2, 29, 0, 0, 0).is_ok());
        assert!(BcdDateTime::new(2025, 13, 1, 0, 0, 0).is_err());
        assert!(BcdDateTime::new(1999, 1, 1, 0, 0, 0).is_err());
    }

    #[test]
    fn pin_pads_odd_digits_with_f_and_hides_in_debug() {
        assert_eq!(
            Pin::parse("123456").unwrap().to_bcd(),
            vec![0x12, 0x34, 0x56]
        );
        assert_eq!(
            Pin::parse("12345").unwrap().to_bcd(),
            vec![0x12, 0x34, 0x5F]
        );
        assert!(Pin::parse("123").is_err());
        assert!(Pin::parse("12a456").is_err());
        assert_eq!(
            format!("{:?}", Pin::parse("123456").unwrap()),
            "Pin(<redacted>)"
        );
        assert_eq!(
            Pin::from_bcd(&[0x12, 0x34, 0x5F]),
            Some(Pin::parse("12345").unwrap())
        );
        assert_eq!(Pin::from_bcd(&[0x12, 0xF4, 0x56]), None);
        assert_eq!(Pin::from_bcd(&[0x12, 0x3F]), None);
    }

    #[test]
    fn terminal_id_and_asn_parse_and_display() {
        let t = TerminalId::parse("112233445566").unwrap();
        assert_eq!(t.0, [0x11, 0x22, 0x33, 0x44, 0x55, 0x66]);
        assert_eq!(t.to_string(), "112233445566");
        assert!(TerminalId::parse("11223344556A").is_err());
        let a = Asn::parse("3100000000000042").unwrap();
        assert_eq!(a.to_string(), "3100000000000042");
        assert!(Asn::parse("31").is_err());
    }
}
