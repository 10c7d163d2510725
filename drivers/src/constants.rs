//! Protocol numbers cardmesh chose where the public PBOC sources disagree or leave a
//! choice open: transaction type codes, the application id, key index/version and the
//! status words the virtual card answers with. Everything else refers to this module so
//! that the card, the terminal and the SAM cannot drift apart.

/// Transaction type byte carried in MACs, TACs and the card's transaction log.
///
/// Grey-lock codes differ between published sources (91 or 92 for the lock, 93 or 95
/// for the unlock); cardmesh uses 91 for the lock and 93 for the offline unlock debit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum TxType {
    /// Load (credit) of the e-purse: 02.
    Load,
    /// Purchase (debit) from the e-purse: 06.
    Purchase,
    /// Grey lock before fuelling: 91.
    GreyLock,
    /// Debit for unlock after fuelling: 93.
    UnlockDebit,
}

impl TxType {
    /// The byte written on the wire.
    pub const fn code(self) -> u8 {
        match self {
            TxType::Load => 0x02,
            TxType::Purchase => 0x06,
            TxType::GreyLock => 0x91,
            TxType::UnlockDebit => 0x93,
        }
    }

    /// Parses a type byte; `None` for codes cardmesh does not produce.
    pub const fn from_code(code: u8) -> Option<TxType> {
        match code {
            0x02 => Some(TxType::Load),
            0x06 => Some(TxType::Purchase),
            0x91 => Some(TxType::GreyLock),
            0x93 => Some(TxType::UnlockDebit),
            _ => None,
        }
    }
}

/// AID of the cardmesh e-purse ADF: `D156000001` is a proprietary AID under the
/// national-registration category for China (D + 156), followed by "EP".
pub const EPURSE_AID: &[u8] = &[0xD1, 0x56, 0x00, 0x00, 0x01, 0x45, 0x50];

/// P2 of INITIALIZE FOR LOAD/PURCHASE and GET BALANCE: 02 selects the e-purse (EP).
pub const P2_EPURSE: u8 = 0x02;

/// The only key index the card holds for each key type.
pub const KEY_INDEX: u8 = 0x01;
/// Version of the card's keys, returned by INITIALIZE commands.
pub const KEY_VERSION: u8 = 0x01;
/// Algorithm id returned by INITIALIZE commands: 00 = 3DES.
pub const ALG_ID_3DES: u8 = 0x00;

/// P2 of READ RECORD for the transaction log: SFI 1, "read record P1" (`0C`).
pub const P2_TX_LOG: u8 = 0x0C;
/// How many transactions the card's cyclic log keeps.
pub const TX_LOG_LEN: usize = 10;
/// Wrong PIN presentations before the PIN blocks.
pub const PIN_TRIES: u8 = 3;

/// Wrong transport-key cryptograms (EXTERNAL AUTHENTICATE) before a blank card locks
/// its transport key for good.
pub const TRANSPORT_TRIES: u8 = 3;

/// Status words. `9000` and the PBOC-specific ones come from the reference; the ISO
/// ones mark what cardmesh decided where the reference is silent.
pub mod sw {
    /// Success.
    pub const OK: u16 = 0x9000;
    /// Insufficient funds (purchase or grey-lock unlock larger than the balance).
    pub const INSUFFICIENT_FUNDS: u16 = 0x9401;
    /// The MAC (MAC1, MAC2, GMAC or secure-messaging MAC) is wrong.
    pub const MAC_ERROR: u16 = 0x9302;
    /// Key index not supported by the card.
    pub const KEY_NOT_FOUND: u16 = 0x9403;
    /// No session open: debit/credit without initialize, or secure messaging without
    /// GET CHALLENGE.
    pub const NO_RANDOM: u16 = 0x6984;
    /// PIN blocked after too many wrong presentations.
    pub const PIN_BLOCKED: u16 = 0x6983;
    /// Wrong PIN; the low nibble of `63Cx` is the number of tries left.
    pub const WRONG_PIN_BASE: u16 = 0x63C0;
    /// PIN not verified for a command that needs it (load, change PIN).
    pub const SECURITY_NOT_SATISFIED: u16 = 0x6982;
    /// Conditions not satisfied: no application selected, purchase or second lock on a
    /// grey-locked card, unlock on a card that is not grey-locked, counter exhausted.
    pub const CONDITIONS_NOT_SATISFIED: u16 = 0x6985;
    /// Application selected but blocked (answer to SELECT, FCI still returned).
    pub const SELECTED_FILE_INVALIDATED: u16 = 0x6283;
    /// Application or card blocked: every other command is refused.
    pub const FUNCTION_NOT_SUPPORTED: u16 = 0x6A81;
    /// Application (AID) not found.
    pub const FILE_NOT_FOUND: u16 = 0x6A82;
    /// Record or transaction proof not found.
    pub const RECORD_NOT_FOUND: u16 = 0x6A83;
    /// A load would take the balance over the card's maximum balance.
    pub const BALANCE_LIMIT: u16 = 0x6A84;
    /// Wrong data field (e.g. a new PIN that is not 4 to 12 digits).
    pub const WRONG_DATA: u16 = 0x6A80;
    /// Wrong P1/P2.
    pub const WRONG_P1P2: u16 = 0x6A86;
    /// Wrong length (Lc or data length).
    pub const WRONG_LENGTH: u16 = 0x6700;
    /// Instruction not supported.
    pub const INS_NOT_SUPPORTED: u16 = 0x6D00;
    /// Class not supported.
    pub const CLA_NOT_SUPPORTED: u16 = 0x6E00;
    /// Secure messaging: the MAC of a personalization command (WRITE KEY, UPDATE
    /// BINARY, END PERSONALIZATION) is wrong; nothing was written.
    pub const SM_MAC_INCORRECT: u16 = 0x6988;
    /// Wrong transport-key cryptogram; the low nibble of `63Cx` is the tries left.
    pub const WRONG_CRYPTOGRAM_BASE: u16 = 0x63C0;
    /// The transport key is locked after too many wrong cryptograms: the blank card can
    /// never be personalized.
    pub const AUTH_BLOCKED: u16 = 0x6983;
    /// GET DATA of a tag the card does not hold, or WRITE KEY of an unknown key type.
    pub const DATA_NOT_FOUND: u16 = 0x6A88;
    /// Persistent memory (the card's state file) could not be written; nothing changed.
    pub const MEMORY_FAILURE: u16 = 0x6581;
}
