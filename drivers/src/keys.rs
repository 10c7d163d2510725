//! The pure half of the HQ key ceremony and the key sets derived from it.
//!
//! Two custodians each enter a 16-byte component; the combined key is their XOR, so
//! neither custodian alone knows anything about it. The KCVs of each component and of
//! the combined key are shown so each custodian can check their entry. The master keys
//! are derived from the combined key by one fixed rule, so the ceremony needs no
//! randomness and can be checked by re-running it:
//!
//! `MK_x = 3DES_C("CM" || code_x || "1") || 3DES_C("CM" || code_x || "2")`, where the
//! 5-character codes are `PURCH` (purchase), `LOAD_` (load), `TAC__` (TAC), `PINUB`
//! (PIN unblock) and `MAINT` (application maintenance: block/unblock). Encrypting
//! distinct labels under the combined key gives independent pseudo-random keys.
//!
//! Card keys are the master keys diversified by the card's ASN. The sealing and the CLI
//! live in the node; this module only computes.

use crate::crypto::Key16;
use crate::types::Asn;

/// One custodian's 16-byte key component.
#[derive(Debug, Clone)]
pub struct KeyComponent(Key16);

impl KeyComponent {
    /// Wraps the bytes a custodian entered.
    pub fn from_bytes(bytes: [u8; 16]) -> KeyComponent {
        KeyComponent(Key16::from_bytes(bytes))
    }

    /// KCV of this component, for the custodian to check what they typed.
    pub fn kcv(&self) -> [u8; 3] {
        self.0.kcv()
    }
}

/// Combines two components by XOR into the ceremony key.
pub fn combine(a: &KeyComponent, b: &KeyComponent) -> Key16 {
    let (x, y) = (a.0.expose_secret(), b.0.expose_secret());
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = x[i] ^ y[i];
    }
    let key = Key16::from_bytes(out);
    zeroize::Zeroize::zeroize(&mut out);
    key
}

/// The network's master keys. Which of them a node may hold depends on its role: a
/// store needs `purchase` (for its SAM) and `maintenance` (to block blacklisted cards),
/// an issuer `load`, HQ all of them (`tac` is HQ's alone).
#[derive(Debug, Clone)]
pub struct MasterKeys {
    /// Purchase master key MPK (card: DPK), held by SAMs.
    pub purchase: Key16,
    /// Load master key MLK (card: DLK), held by issuers.
    pub load: Key16,
    /// TAC master key MTK (card: DTK), held by HQ to verify TACs.
    pub tac: Key16,
    /// PIN-unblock master key (card: DPUK).
    pub pin_unblock: Key16,
    /// Application maintenance master key (card: DAMK) for block/unblock.
    pub maintenance: Key16,
}

impl MasterKeys {
    /// Derives every master key from the combined ceremony key (see module docs).
    pub fn derive(combined: &Key16) -> MasterKeys {
        let derive = |code: &[u8; 5]| {
            let label = |half: u8| {
                let mut l = [0u8; 8];
                l[..2].copy_from_slice(b"CM");
                l[2..7].copy_from_slice(code);
                l[7] = half;
                l
            };
            let mut k = [0u8; 16];
            k[..8].copy_from_slice(&combined.encrypt(label(b'1')));
            k[8..].copy_from_slice(&combined.encrypt(label(b'2')));
            let key = Key16::from_bytes(k);
            zeroize::Zeroize::zeroize(&mut k);
            key
        };
        MasterKeys {
            purchase: derive(b"PURCH"),
            load: derive(b"LOAD_"),
            tac: derive(b"TAC__"),
            pin_unblock: derive(b"PINUB"),
            maintenance: derive(b"MAINT"),
        }
    }

    /// The diversified keys to personalize the card with number `asn`.
    pub fn card_keys(&self, asn: &Asn) -> CardKeys {
        CardKeys {
            dpk: self.purchase.diversify(asn),
            dlk: self.load.diversify(asn),
            dtk: self.tac.diversify(asn),
            dpuk: self.pin_unblock.diversify(asn),
            damk: self.maintenance.diversify(asn),
        }
    }
}

/// One card's diversified keys, as written into the chip at personalization.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CardKeys {
    /// Purchase key.
    pub dpk: Key16,
    /// Load key.
    pub dlk: Key16,
    /// TAC key.
    pub dtk: Key16,
    /// PIN-unblock key.
    pub dpuk: Key16,
    /// Application maintenance key.
    pub damk: Key16,
}
