//! Primary issuance: turning a blank chip from the card manufacturer into a cardmesh
//! e-purse. This module holds what the card ([`crate::card`]) and the issuer agree on
//! (the personalization commands, their secure messaging, the issuer file layout, the
//! key types) and the issuer's side of the exchange ([`EPurse::personalize`]).
//!
//! A blank chip holds only its serial number and a transport key diversified from the
//! manufacturer's transport master key by that serial ([`transport_key`]); the
//! manufacturer sends the master with the batch. The issuer proves it holds the
//! transport key (EXTERNAL AUTHENTICATE), writes the card's keys and files under it, and
//! ends personalization; from then on the transport key is gone and the card is the same
//! as one made from a [`Personalization`] directly. The commands, layouts and status
//! words are listed in the [`crate::card`] module doc.

use crate::apdu;
use crate::card::Personalization;
use crate::constants::{KEY_VERSION, P2_EPURSE, sw};
use crate::crypto::Key16;
use crate::epurse::{EPurse, EpurseError};
use crate::keys::CardKeys;
use crate::reader::CardReader;
use crate::types::{Asn, ChipSerial, Mac4, Pin};

/// The issuer id in the issuer file (and so in the FCI). cardmesh is one issuer; the
/// FCI of every cardmesh card has always carried zeros here.
pub const ISSUER_ID: [u8; 8] = [0; 8];
/// Short file id of the issuer file, EF 0015 (30 bytes, see [`IssuerFile`]).
pub const SFI_ISSUER: u8 = 0x15;
/// Short file id of cardmesh's purse parameter file, EF 0019: the largest balance a
/// load may reach (4 bytes, fen, big-endian).
pub const SFI_PURSE_PARAMS: u8 = 0x19;
/// Tag (P1 P2) of GET DATA for the personalization status.
pub const TAG_PERSO_STATUS: [u8; 2] = [0xDF, 0x01];

/// Life-cycle byte of GET DATA DF01: blank, waiting for personalization.
pub const LIFE_BLANK: u8 = 0x07;
/// Life-cycle byte of GET DATA DF01: blank, transport key locked (the chip is waste).
pub const LIFE_TRANSPORT_LOCKED: u8 = 0x83;

/// What WRITE KEY writes (its P2), and the bit it sets in GET DATA DF01's "written"
/// byte. The EF bits are [`WRITTEN_ISSUER_FILE`] and [`WRITTEN_PURSE_PARAMS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    /// Purchase key DPK: 3E.
    Purchase,
    /// Load key DLK: 3F.
    Load,
    /// TAC key DTK: 34.
    Tac,
    /// PIN-unblock key DPUK: 37.
    PinUnblock,
    /// Application maintenance key DAMK: 36.
    Maintenance,
    /// The cardholder PIN (BCD, F-padded): 3A.
    Pin,
}

impl KeyType {
    /// Every key type, in the order of their bits.
    pub const ALL: [KeyType; 6] = [
        KeyType::Purchase,
        KeyType::Load,
        KeyType::Tac,
        KeyType::PinUnblock,
        KeyType::Maintenance,
        KeyType::Pin,
    ];

    /// P2 of WRITE KEY.
    pub const fn code(self) -> u8 {
        match self {
            KeyType::Purchase => 0x3E,
            KeyType::Load => 0x3F,
            KeyType::Tac => 0x34,
            KeyType::PinUnblock => 0x37,
            KeyType::Maintenance => 0x36,
            KeyType::Pin => 0x3A,
        }
    }

    /// Parses a WRITE KEY P2.
    pub fn from_code(code: u8) -> Option<KeyType> {
        KeyType::ALL.into_iter().find(|t| t.code() == code)
    }

    /// Its bit in the "written" byte of GET DATA DF01.
    pub const fn bit(self) -> u8 {
        match self {
            KeyType::Purchase => 0x01,
            KeyType::Load => 0x02,
            KeyType::Tac => 0x04,
            KeyType::PinUnblock => 0x08,
            KeyType::Maintenance => 0x10,
            KeyType::Pin => 0x20,
        }
    }
}

/// A card's five keys with the WRITE KEY type each is written under (the PIN is the
/// sixth write).
pub fn keys_by_type(keys: &CardKeys) -> [(KeyType, &Key16); 5] {
    [
        (KeyType::Purchase, &keys.dpk),
        (KeyType::Load, &keys.dlk),
        (KeyType::Tac, &keys.dtk),
        (KeyType::PinUnblock, &keys.dpuk),
        (KeyType::Maintenance, &keys.damk),
    ]
}

/// "Written" bit of the issuer file EF 0015.
pub const WRITTEN_ISSUER_FILE: u8 = 0x40;
/// "Written" bit of the purse parameter file EF 0019.
pub const WRITTEN_PURSE_PARAMS: u8 = 0x80;
/// Everything END PERSONALIZATION needs.
pub const WRITTEN_ALL: u8 = 0xFF;

/// The issuer file EF 0015 (PBOC "public application basic data"), 30 bytes, which is
/// also the FCI's issuer discretionary data (tag 9F0C):
/// `0..8` issuer id ([`ISSUER_ID`]), `8` application type (02 = EP), `9` application
/// version (the key version), `10..20` ASN (10 bytes, the first two 00), `20..24`
/// start (issue) date BCD `YYYYMMDD`, `24..28` expiry date, `28` card class, `29` 00.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IssuerFile {
    /// Card number.
    pub asn: Asn,
    /// Issue date, BCD `YYYYMMDD`.
    pub issue_date: [u8; 4],
    /// Expiry date, BCD `YYYYMMDD`.
    pub expiry: [u8; 4],
    /// Card class.
    pub card_class: u8,
}

impl IssuerFile {
    /// The 30-byte layout.
    pub fn to_bytes(&self) -> [u8; 30] {
        let mut b = [0u8; 30];
        b[0..8].copy_from_slice(&ISSUER_ID);
        b[8] = P2_EPURSE;
        b[9] = KEY_VERSION;
        b[12..20].copy_from_slice(&self.asn.0);
        b[20..24].copy_from_slice(&self.issue_date);
        b[24..28].copy_from_slice(&self.expiry);
        b[28] = self.card_class;
        b
    }

    /// Reads the fields of any 30 bytes, as a terminal reads a card's FCI (a card's
    /// dates are the card's business: an expired card must still be read).
    pub fn from_bytes(b: &[u8]) -> Option<IssuerFile> {
        let b: &[u8; 30] = b.try_into().ok()?;
        Some(IssuerFile {
            asn: Asn(b[12..20].try_into().ok()?),
            issue_date: b[20..24].try_into().ok()?,
            expiry: b[24..28].try_into().ok()?,
            card_class: b[28],
        })
    }

    /// What a blank card accepts in UPDATE BINARY: every fixed byte as cardmesh writes
    /// it, and both dates real BCD dates with the issue date not after the expiry.
    pub fn parse_strict(b: &[u8]) -> Option<IssuerFile> {
        let f = IssuerFile::from_bytes(b)?;
        let fixed = b[0..8] == ISSUER_ID
            && b[8] == P2_EPURSE
            && b[9] == KEY_VERSION
            && b[10..12] == [0, 0]
            && b[29] == 0;
        (fixed && bcd_date(&f.issue_date) && bcd_date(&f.expiry) && f.issue_date <= f.expiry)
            .then_some(f)
    }
}

/// Whether 4 bytes are a BCD date `YYYYMMDD` with month 01-12 and day 01-31.
fn bcd_date(d: &[u8; 4]) -> bool {
    let digits_ok = d.iter().all(|b| b >> 4 <= 9 && b & 0x0F <= 9);
    digits_ok && (0x01..=0x12).contains(&d[2]) && (0x01..=0x31).contains(&d[3])
}

/// The manufacturer's transport master key, which comes with a batch of blank cards.
/// Debug is redacted (it is a [`Key16`]).
#[derive(Debug, Clone)]
pub struct TransportKey(Key16);

impl TransportKey {
    /// Wraps the master key from the manufacturer's key file.
    pub fn new(master: Key16) -> TransportKey {
        TransportKey(master)
    }

    /// The raw bytes, for sealing into a store. Never print or log them.
    pub fn expose_secret(&self) -> &[u8; 16] {
        self.0.expose_secret()
    }

    /// Key check value, to compare with the one the manufacturer printed.
    pub fn kcv(&self) -> [u8; 3] {
        self.0.kcv()
    }

    /// The transport key of one chip.
    pub fn for_chip(&self, serial: &ChipSerial) -> Key16 {
        transport_key(&self.0, serial)
    }
}

/// A chip's transport key: the transport master key diversified by the chip serial,
/// as in the card keys' diversification.
pub fn transport_key(master: &Key16, serial: &ChipSerial) -> Key16 {
    master.diversify_by(serial.0)
}

/// Transport-key cryptogram of EXTERNAL AUTHENTICATE: `3DES_TK(challenge || 00000000)`.
pub fn auth_cryptogram(tk: &Key16, challenge: [u8; 4]) -> [u8; 8] {
    let mut block = [0u8; 8];
    block[..4].copy_from_slice(&challenge);
    tk.encrypt(block)
}

/// Secure-messaging MAC of a personalization command `CLA INS P1 P2 Lc data MAC`: ISO
/// 9797-1 alg. 3 under the transport key over `CLA INS P1 P2 Lc data`, with Lc counting
/// the 4 MAC bytes, IV = last GET CHALLENGE || 00000000.
pub fn sm_mac(tk: &Key16, challenge: [u8; 4], header: [u8; 4], data: &[u8]) -> Mac4 {
    let mut iv = [0u8; 8];
    iv[..4].copy_from_slice(&challenge);
    let mut m = Vec::with_capacity(5 + data.len());
    m.extend_from_slice(&header);
    m.push(u8::try_from(data.len() + 4).unwrap_or(u8::MAX));
    m.extend_from_slice(data);
    tk.mac_alg3(iv, &m)
}

/// Encrypts a key value for WRITE KEY: `L || value`, padded with 80 00.. to whole
/// blocks, 3DES-ECB under the transport key.
pub fn wrap_key(tk: &Key16, value: &[u8]) -> Vec<u8> {
    let mut plain = Vec::with_capacity(value.len() + 9);
    plain.push(u8::try_from(value.len()).unwrap_or(u8::MAX));
    plain.extend_from_slice(value);
    plain.push(0x80);
    while !plain.len().is_multiple_of(8) {
        plain.push(0);
    }
    let out = plain
        .chunks_exact(8)
        .flat_map(|b| tk.encrypt(b.try_into().expect("8-byte chunk")))
        .collect();
    zeroize::Zeroize::zeroize(&mut plain);
    out
}

/// Decrypts what [`wrap_key`] made; `None` if its length or padding is wrong.
pub fn unwrap_key(tk: &Key16, wrapped: &[u8]) -> Option<zeroize::Zeroizing<Vec<u8>>> {
    if wrapped.is_empty() || !wrapped.len().is_multiple_of(8) {
        return None;
    }
    let plain: zeroize::Zeroizing<Vec<u8>> = zeroize::Zeroizing::new(
        wrapped
            .chunks_exact(8)
            .flat_map(|b| tk.decrypt(b.try_into().expect("8-byte chunk")))
            .collect(),
    );
    let len = usize::from(*plain.first()?);
    let (value, pad) = plain.get(1..)?.split_at_checked(len)?;
    let padded = pad.first() == Some(&0x80) && pad[1..].iter().all(|&b| b == 0) && pad.len() <= 8;
    padded.then(|| zeroize::Zeroizing::new(value.to_vec()))
}

/// What GET DATA DF01 tells about a blank chip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChipStatus {
    /// Chip serial number.
    pub serial: ChipSerial,
    /// The transport key is locked: the chip can never be personalized.
    pub locked: bool,
    /// Wrong cryptograms left before it locks.
    pub tries_left: u8,
    /// Bits of what was written so far ([`KeyType::bit`], [`WRITTEN_ISSUER_FILE`],
    /// [`WRITTEN_PURSE_PARAMS`]).
    pub written: u8,
}

impl ChipStatus {
    /// The 11-byte answer: life cycle(1) serial(8) tries left(1) written(1).
    pub fn to_bytes(&self) -> [u8; 11] {
        let mut b = [0u8; 11];
        b[0] = if self.locked {
            LIFE_TRANSPORT_LOCKED
        } else {
            LIFE_BLANK
        };
        b[1..9].copy_from_slice(&self.serial.0);
        b[9] = self.tries_left;
        b[10] = self.written;
        b
    }

    fn from_bytes(b: &[u8]) -> Option<ChipStatus> {
        let b: &[u8; 11] = b.try_into().ok()?;
        let locked = match b[0] {
            LIFE_BLANK => false,
            LIFE_TRANSPORT_LOCKED => true,
            _ => return None,
        };
        Some(ChipStatus {
            serial: ChipSerial(b[1..9].try_into().ok()?),
            locked,
            tries_left: b[9],
            written: b[10],
        })
    }
}

impl<R: CardReader> EPurse<R> {
    /// Reads a blank chip's personalization status. Call [`EPurse::select`] first: it
    /// answers [`EpurseError::NotPersonalized`] for a blank chip.
    pub fn chip_status(&mut self) -> Result<ChipStatus, EpurseError> {
        let [p1, p2] = TAG_PERSO_STATUS;
        let d = self.call(
            "GET DATA",
            &apdu::build(0x80, 0xCA, p1, p2, &[], Some(11)),
            11,
        )?;
        ChipStatus::from_bytes(&d).ok_or(EpurseError::MalformedResponse("GET DATA"))
    }

    /// Personalizes the blank chip in the reader with `p` under the transport key of
    /// its batch: authenticates, writes every key and file, ends personalization. If
    /// the card leaves the reader on the way it is still blank; run this again.
    pub fn personalize(
        &mut self,
        transport: &TransportKey,
        p: &Personalization,
    ) -> Result<(), EpurseError> {
        let status = self.chip_status()?;
        if status.locked {
            return Err(EpurseError::TransportLocked);
        }
        let tk = transport.for_chip(&status.serial);
        let challenge = self.challenge()?;
        let auth = apdu::build(
            0x00,
            0x82,
            0x00,
            0x00,
            &auth_cryptogram(&tk, challenge),
            None,
        );
        match self.send(&auth)?.sw {
            sw::OK => {}
            sw::AUTH_BLOCKED => return Err(EpurseError::TransportLocked),
            s if s & 0xFFF0 == sw::WRONG_CRYPTOGRAM_BASE => {
                return Err(EpurseError::WrongTransportKey {
                    tries_left: (s & 0x0F) as u8,
                });
            }
            s => return Err(status_error("EXTERNAL AUTHENTICATE", s)),
        }
        for (t, k) in keys_by_type(&p.keys) {
            self.write_key(&tk, t, k.expose_secret())?;
        }
        self.write_key(&tk, KeyType::Pin, &Pin::to_bcd(&p.pin))?;
        let issuer = IssuerFile {
            asn: p.asn,
            issue_date: p.issue_date,
            expiry: p.expiry,
            card_class: p.card_class,
        };
        self.secure(
            &tk,
            "UPDATE BINARY",
            [0x04, 0xD6, 0x80 | SFI_ISSUER, 0x00],
            &issuer.to_bytes(),
        )?;
        self.secure(
            &tk,
            "UPDATE BINARY",
            [0x04, 0xD6, 0x80 | SFI_PURSE_PARAMS, 0x00],
            &p.max_balance.to_be_bytes(),
        )?;
        match self.secure(&tk, "END PERSONALIZATION", [0x84, 0xF0, 0x40, 0x0F], &[]) {
            Err(EpurseError::Status {
                sw: sw::CONDITIONS_NOT_SATISFIED,
                ..
            }) => Err(EpurseError::PersonalizationIncomplete),
            r => r,
        }
    }

    fn challenge(&mut self) -> Result<[u8; 4], EpurseError> {
        let c = self.call(
            "GET CHALLENGE",
            &apdu::build(0x00, 0x84, 0x00, 0x00, &[], Some(4)),
            4,
        )?;
        Ok([c[0], c[1], c[2], c[3]])
    }

    fn write_key(&mut self, tk: &Key16, t: KeyType, value: &[u8]) -> Result<(), EpurseError> {
        let wrapped = wrap_key(tk, value);
        self.secure(tk, "WRITE KEY", [0x84, 0xD4, 0x00, t.code()], &wrapped)
    }

    /// Sends `header data MAC` after a fresh challenge.
    fn secure(
        &mut self,
        tk: &Key16,
        command: &'static str,
        header: [u8; 4],
        data: &[u8],
    ) -> Result<(), EpurseError> {
        let challenge = self.challenge()?;
        let mac = sm_mac(tk, challenge, header, data);
        let [cla, ins, p1, p2] = header;
        let body = [data, &mac.0].concat();
        match self.send(&apdu::build(cla, ins, p1, p2, &body, None))?.sw {
            sw::OK => Ok(()),
            sw::SM_MAC_INCORRECT => Err(EpurseError::MacRejected),
            s => Err(status_error(command, s)),
        }
    }
}

fn status_error(command: &'static str, sw: u16) -> EpurseError {
    EpurseError::Status { command, sw }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> IssuerFile {
        IssuerFile {
            asn: Asn([0x10, 0, 0, 0, 0, 0, 0, 0x42]),
            issue_date: [0x20, 0x26, 0x11, 0x22],
            expiry: [0x20, 0x31, 0x12, 0x31],
            card_class: 1,
        }
    }

    #[test]
    fn issuer_file_round_trips_and_a_blank_card_rejects_foreign_layouts() {
        let b = file().to_bytes();
        assert_eq!(IssuerFile::parse_strict(&b), Some(file()));
        for (i, v) in [(0, 1), (8, 0x01), (9, 0x02), (10, 1), (29, 1), (22, 0x13)] {
            let mut bad = b;
            bad[i] = v;
            assert_eq!(IssuerFile::parse_strict(&bad), None, "byte {i} = {v:02X}");
        }
        let mut backwards = file();
        backwards.expiry = [0x20, 0x20, 0x01, 0x01];
        assert_eq!(IssuerFile::parse_strict(&backwards.to_bytes()), None);
        assert_eq!(
            IssuerFile::from_bytes(&backwards.to_bytes()),
            Some(backwards),
            "a terminal still reads an expired card"
        );
        assert_eq!(IssuerFile::from_bytes(&b[..29]), None);
    }

    #[test]
    fn wrapped_key_unwraps_only_under_the_same_key() {
        let tk = Key16::from_bytes([7; 16]);
        let value = [0xA5u8; 16];
        let w = wrap_key(&tk, &value);
        assert_eq!(w.len(), 24);
        assert_ne!(&w[1..17], &value[..]);
        assert_eq!(
            unwrap_key(&tk, &w).as_deref().map(Vec::as_slice),
            Some(&value[..])
        );
        assert_eq!(unwrap_key(&Key16::from_bytes([8; 16]), &w), None);
        assert_eq!(unwrap_key(&tk, &w[..16]), None);
    }

    #[test]
    fn key_type_codes_and_bits_are_distinct_and_cover_the_written_byte() {
        let bits = KeyType::ALL.iter().fold(0u8, |acc, t| {
            assert_eq!(acc & t.bit(), 0);
            assert_eq!(KeyType::from_code(t.code()), Some(*t));
            acc | t.bit()
        });
        assert_eq!(
            bits | WRITTEN_ISSUER_FILE | WRITTEN_PURSE_PARAMS,
            WRITTEN_ALL
        );
    }
}
