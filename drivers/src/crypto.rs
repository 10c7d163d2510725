//! The e-purse cryptography: 3DES key diversification from the card number, purchase and
//! load session keys, CBC-MACs (single DES with 8-byte keys, ISO 9797-1 algorithm 3 with
//! 16-byte keys), the MAC1/MAC2/TAC of each transaction, and key check values.
//!
//! Formulas are those of `shared/reference/pboc-epurse.md`. Where the reference leaves
//! grey lock open, cardmesh defines (and the Python vector script mirrors):
//! - grey lock = a zero-amount purchase with type 91: same session key, MAC1 over
//!   `00000000 || 91 || termId || datetime`, MAC2 over `00000000`, GTAC is its TAC;
//! - debit for unlock: session key `3DES_DPK(GTAC || offlineCtr || termSeq[2..4])` (the
//!   GTAC stands in for the card random, so any station holding the grey record and a
//!   SAM can finish the debit), GMAC and TAC as a purchase with type 93.

use std::fmt;

use des::cipher::{BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
use des::{Des, TdesEde2};
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use crate::constants::TxType;
use crate::types::{Asn, BcdDateTime, Mac4, TerminalId};

/// A 16-byte double-length 3DES key (master or diversified card key). Zeroized on drop;
/// Debug prints `<redacted>`. Serializable only so that sealed stores and a simulated
/// chip's own state file can hold it; never serialize it anywhere else.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key16([u8; 16]);

/// An 8-byte single-DES key (session key or TAC key). Zeroized on drop; Debug redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Key8([u8; 8]);

impl Key16 {
    /// Wraps raw key bytes (from a sealed store or a ceremony component).
    pub fn from_bytes(bytes: [u8; 16]) -> Key16 {
        Key16(bytes)
    }

    /// The raw bytes, for sealing into a store. Never print or log them.
    pub fn expose_secret(&self) -> &[u8; 16] {
        &self.0
    }

    /// 3DES (EDE, K1 K2 K1) encryption of one block.
    pub fn encrypt(&self, block: [u8; 8]) -> [u8; 8] {
        let cipher = TdesEde2::new(&self.0.into());
        let mut b = block.into();
        cipher.encrypt_block(&mut b);
        b.into()
    }

    /// 3DES (EDE, K1 K2 K1) decryption of one block.
    pub fn decrypt(&self, block: [u8; 8]) -> [u8; 8] {
        let cipher = TdesEde2::new(&self.0.into());
        let mut b = block.into();
        cipher.decrypt_block(&mut b);
        b.into()
    }

    /// Key check value: the first 3 bytes of `3DES_K(00 x 8)`. Safe to show.
    pub fn kcv(&self) -> [u8; 3] {
        let e = self.encrypt([0; 8]);
        [e[0], e[1], e[2]]
    }

    /// The card key diversified from this master key: `3DES(ASN) || 3DES(ASN xor FF..)`.
    pub fn diversify(&self, asn: &Asn) -> Key16 {
        self.diversify_by(asn.0)
    }

    /// The same diversification by any 8-byte factor (a blank chip's transport key is
    /// diversified by its chip serial number).
    pub fn diversify_by(&self, factor: [u8; 8]) -> Key16 {
        let left = self.encrypt(factor);
        let right = self.encrypt(factor.map(|b| !b));
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&left);
        out[8..].copy_from_slice(&right);
        Key16(out)
    }

    /// The single-DES TAC key of a card TAC key DTK: left half xor right half.
    pub fn tac_key(&self) -> Key8 {
        let mut k = [0u8; 8];
        for (i, b) in k.iter_mut().enumerate() {
            *b = self.0[i] ^ self.0[i + 8];
        }
        Key8(k)
    }

    /// Derives an 8-byte session key: `3DES_K(input)`.
    pub fn session_key(&self, input: [u8; 8]) -> Key8 {
        Key8(self.encrypt(input))
    }

    /// ISO 9797-1 MAC algorithm 3 (retail MAC) with padding method 2, leftmost 4 bytes:
    /// single-DES CBC under the left half, then decrypt with the right half and encrypt
    /// with the left half. Used for secure messaging (application block/unblock).
    pub fn mac_alg3(&self, iv: [u8; 8], data: &[u8]) -> Mac4 {
        let k1 = Des::new(&<[u8; 8]>::try_from(&self.0[..8]).expect("8 bytes").into());
        let k2 = Des::new(&<[u8; 8]>::try_from(&self.0[8..]).expect("8 bytes").into());
        let mut state = cbc(&k1, iv, data);
        let mut b = state.into();
        k2.decrypt_block(&mut b);
        k1.encrypt_block(&mut b);
        state = b.into();
        Mac4([state[0], state[1], state[2], state[3]])
    }
}

impl Key8 {
    /// Wraps raw key bytes.
    pub fn from_bytes(bytes: [u8; 8]) -> Key8 {
        Key8(bytes)
    }

    /// Single-DES CBC-MAC, IV 0, 80-padding, leftmost 4 bytes.
    pub fn mac(&self, data: &[u8]) -> Mac4 {
        let state = cbc(&Des::new(&self.0.into()), [0; 8], data);
        Mac4([state[0], state[1], state[2], state[3]])
    }
}

/// CBC over `data || 80 || 00..` with the final state returned.
fn cbc(cipher: &Des, iv: [u8; 8], data: &[u8]) -> [u8; 8] {
    let mut padded = Vec::with_capacity(data.len() + 8);
    padded.extend_from_slice(data);
    padded.push(0x80);
    while padded.len() % 8 != 0 {
        padded.push(0);
    }
    let mut state = iv;
    for chunk in padded.chunks_exact(8) {
        for (s, d) in state.iter_mut().zip(chunk) {
            *s ^= d;
        }
        let mut b = state.into();
        cipher.encrypt_block(&mut b);
        state = b.into();
    }
    state
}

impl Drop for Key16 {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl Drop for Key8 {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Key16 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key16(<redacted>)")
    }
}

impl fmt::Debug for Key8 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key8(<redacted>)")
    }
}

/// Purchase (and grey-lock) session key: `3DES_DPK(random || offlineCtr || termSeq[2..4])`.
pub fn purchase_session_key(dpk: &Key16, random: [u8; 4], offline_ctr: u16, term_seq: u32) -> Key8 {
    let c = offline_ctr.to_be_bytes();
    let s = term_seq.to_be_bytes();
    dpk.session_key([
        random[0], random[1], random[2], random[3], c[0], c[1], s[2], s[3],
    ])
}

/// Load session key: `3DES_DLK(random || onlineCtr || 80 00)`.
pub fn load_session_key(dlk: &Key16, random: [u8; 4], online_ctr: u16) -> Key8 {
    let c = online_ctr.to_be_bytes();
    dlk.session_key([
        random[0], random[1], random[2], random[3], c[0], c[1], 0x80, 0x00,
    ])
}

/// Debit-for-unlock session key: the purchase session key with the GTAC as random.
pub fn unlock_session_key(dpk: &Key16, gtac: Mac4, offline_ctr: u16, term_seq: u32) -> Key8 {
    purchase_session_key(dpk, gtac.0, offline_ctr, term_seq)
}

/// Terminal MAC1 of a purchase-type debit (purchase, grey lock, unlock):
/// `MAC_SES(amount || type || termId || datetime)`.
pub fn debit_mac1(
    ses: &Key8,
    amount: u32,
    tx_type: TxType,
    term: &TerminalId,
    dt: &BcdDateTime,
) -> Mac4 {
    let mut d = Vec::with_capacity(18);
    d.extend_from_slice(&amount.to_be_bytes());
    d.push(tx_type.code());
    d.extend_from_slice(&term.0);
    d.extend_from_slice(&dt.0);
    ses.mac(&d)
}

/// Card MAC2 of a purchase-type debit: `MAC_SES(amount)`.
pub fn debit_mac2(ses: &Key8, amount: u32) -> Mac4 {
    ses.mac(&amount.to_be_bytes())
}

/// TAC of a purchase-type debit: `MAC_K(amount || type || termId || termSeq || datetime)`
/// with K the TAC key of the card's DTK.
pub fn debit_tac(
    dtk: &Key16,
    amount: u32,
    tx_type: TxType,
    term: &TerminalId,
    term_seq: u32,
    dt: &BcdDateTime,
) -> Mac4 {
    let mut d = Vec::with_capacity(22);
    d.extend_from_slice(&amount.to_be_bytes());
    d.push(tx_type.code());
    d.extend_from_slice(&term.0);
    d.extend_from_slice(&term_seq.to_be_bytes());
    d.extend_from_slice(&dt.0);
    dtk.tac_key().mac(&d)
}

/// Card MAC1 of a load: `MAC_SESLK(oldBalance || amount || 02 || termId)`.
pub fn load_mac1(ses: &Key8, old_balance: u32, amount: u32, term: &TerminalId) -> Mac4 {
    let mut d = Vec::with_capacity(15);
    d.extend_from_slice(&old_balance.to_be_bytes());
    d.extend_from_slice(&amount.to_be_bytes());
    d.push(TxType::Load.code());
    d.extend_from_slice(&term.0);
    ses.mac(&d)
}

/// Host MAC2 of a load: `MAC_SESLK(amount || 02 || termId || datetime)`.
pub fn load_mac2(ses: &Key8, amount: u32, term: &TerminalId, dt: &BcdDateTime) -> Mac4 {
    debit_mac1(ses, amount, TxType::Load, term, dt)
}

/// TAC of a load: `MAC_K(newBalance || onlineCtr || amount || 02 || termId || datetime)`,
/// where onlineCtr is the counter of the load (before the card increments it).
pub fn load_tac(
    dtk: &Key16,
    new_balance: u32,
    online_ctr: u16,
    amount: u32,
    term: &TerminalId,
    dt: &BcdDateTime,
) -> Mac4 {
    let mut d = Vec::with_capacity(24);
    d.extend_from_slice(&new_balance.to_be_bytes());
    d.extend_from_slice(&online_ctr.to_be_bytes());
    d.extend_from_slice(&amount.to_be_bytes());
    d.push(TxType::Load.code());
    d.extend_from_slice(&term.0);
    d.extend_from_slice(&dt.0);
    dtk.tac_key().mac(&d)
}

/// Constant-time comparison of two MACs, so a card cannot be probed byte by byte.
pub fn mac_eq(a: &Mac4, b: &Mac4) -> bool {
    a.0.iter()
        .zip(b.0.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// The fields a card computed one transaction's TAC over, as a terminal logged them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TacFields {
    /// Purchase, grey lock (amount 0) and debit for unlock: see [`debit_tac`].
    Debit {
        tx_type: TxType,
        amount: u32,
        terminal: TerminalId,
        term_seq: u32,
        datetime: BcdDateTime,
    },
    /// A load: see [`load_tac`].
    Load {
        new_balance: u32,
        online_ctr: u16,
        amount: u32,
        terminal: TerminalId,
        datetime: BcdDateTime,
    },
}

/// Verifies a logged TAC with the TAC master key (HQ's alone): diversifies the card's
/// TAC key from its number, recomputes the TAC and compares in constant time.
pub fn verify_tac(tac_master: &Key16, asn: &Asn, fields: &TacFields, tac: &Mac4) -> bool {
    let dtk = tac_master.diversify(asn);
    let expected = match *fields {
        TacFields::Debit {
            tx_type,
            amount,
            terminal,
            term_seq,
            datetime,
        } => debit_tac(&dtk, amount, tx_type, &terminal, term_seq, &datetime),
        TacFields::Load {
            new_balance,
            online_ctr,
            amount,
            terminal,
            datetime,
        } => load_tac(&dtk, new_balance, online_ctr, amount, &terminal, &datetime),
    };
    mac_eq(&expected, tac)
}
