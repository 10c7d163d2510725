//! The terminal side of the e-purse: typed operations over any [`CardReader`] and
//! [`Sam`], returning receipts with everything the node logs (counters, balances before
//! and after, MACs, TAC, terminal sequence, date-time) and typed errors. A short or
//! garbled answer from the card is a [`EpurseError::MalformedResponse`], never a panic.
//!
//! If the card leaves the reader after a debit or credit command was sent, the card may
//! or may not have executed it: the error is [`EpurseError::Interrupted`] with the
//! counter to ask [`EPurse::transaction_prove`] about once the card is back.

use thiserror::Error;

use crate::apdu::{self, Response};
use crate::card::{TxRecord, admin_mac};
use crate::constants::{
    ALG_ID_3DES, EPURSE_AID, KEY_INDEX, KEY_VERSION, P2_EPURSE, P2_TX_LOG, TX_LOG_LEN, TxType, sw,
};
use crate::crypto::{self, Key16, mac_eq};
use crate::perso::IssuerFile;
use crate::reader::{CardReader, ReaderError};
use crate::sam::{Mac1, Mac1Request, Sam, SamError};
use crate::types::{Asn, BcdDateTime, Mac4, Pin, TerminalId};

/// An e-purse operation failed.
#[derive(Debug, Error)]
pub enum EpurseError {
    /// The balance is too low for the amount.
    #[error("insufficient funds: balance {balance:?} fen, {amount} fen needed")]
    InsufficientFunds {
        /// Amount asked for, in fen.
        amount: u32,
        /// Balance read back from the card, when it could be read.
        balance: Option<u32>,
    },
    /// The card rejected the terminal's MAC (wrong keys for this card, or tampering).
    #[error("the card rejected the transaction MAC: this terminal's keys do not match the card")]
    MacRejected,
    /// A MAC computed by the card is wrong: the card is not genuine. Keep the card.
    #[error("the card's MAC is wrong: the card may be counterfeit, keep it and report it")]
    CardMacInvalid,
    /// After a purchase the card's MAC2 failed the SAM's check; the card says it
    /// debited, with this receipt. Log it as a fraud alarm.
    #[error(
        "the card's MAC2 is wrong after a debit: the card may be counterfeit, keep it and report it"
    )]
    Mac2Invalid {
        /// What the card reported.
        receipt: Box<PurchaseReceipt>,
    },
    /// Wrong PIN.
    #[error("wrong PIN, {tries_left} tries left")]
    WrongPin {
        /// Tries left before the PIN blocks.
        tries_left: u8,
    },
    /// PIN blocked.
    #[error("the PIN is blocked: the cardholder must have it unblocked at an issuing desk")]
    PinBlocked,
    /// The command needs the PIN first.
    #[error("the cardholder must enter the PIN first")]
    PinRequired,
    /// The e-purse application is blocked (blacklisted card).
    #[error("the card {asn:?} is blocked: keep it and send the customer to customer service")]
    ApplicationBlocked {
        /// Card number, when the card told it.
        asn: Option<Asn>,
    },
    /// The whole card is permanently blocked.
    #[error("the card is permanently blocked")]
    CardBlocked,
    /// A blank chip: it must be personalized (primary issue) before any other use.
    #[error(
        "this card is blank (not personalized): an issuing desk must personalize it first (`cardmesh pos personalize`)"
    )]
    NotPersonalized,
    /// The transport key of this batch does not open the blank chip.
    #[error(
        "the blank card refused the transport key ({tries_left} tries left before it locks for good): check that the transport key imported is the one of this card's batch"
    )]
    WrongTransportKey {
        /// Wrong cryptograms left before the chip locks.
        tries_left: u8,
    },
    /// The blank chip's transport key is locked: it can never be personalized.
    #[error(
        "this blank card's transport key is locked after too many wrong keys: it can never be personalized, return it to the manufacturer"
    )]
    TransportLocked,
    /// END PERSONALIZATION refused: a key or file is missing on the chip.
    #[error("the card refused to end personalization: a key or file is missing; run it again")]
    PersonalizationIncomplete,
    /// Not a cardmesh e-purse card.
    #[error("this card has no cardmesh e-purse application")]
    NotAnEpurse,
    /// The card is grey-locked: finish the pending fuel debit first.
    #[error(
        "the card is grey-locked by terminal {terminal:?}: complete the pending fuel debit first"
    )]
    GreyLocked {
        /// Terminal holding the lock, when known.
        terminal: Option<TerminalId>,
    },
    /// Debit for unlock on a card that is not grey-locked.
    #[error("the card is not grey-locked")]
    NotGreyLocked,
    /// The load would take the balance over the card's maximum.
    #[error("the load would take the balance over the card's limit")]
    BalanceLimit,
    /// The card's expiry date is before the transaction date.
    #[error("the card expired on {expiry}")]
    CardExpired {
        /// Expiry, `YYYYMMDD`.
        expiry: String,
    },
    /// The card left the reader after a debit or credit was sent: it may have been
    /// executed. Present the card again and call [`EPurse::transaction_prove`].
    #[error("the card was removed during the transaction: present it again to check the result")]
    Interrupted {
        /// Which counter the transaction used.
        kind: ProveKind,
        /// The counter value to ask about.
        counter: u16,
    },
    /// Operation needs SELECT first.
    #[error("select the card first")]
    NotSelected,
    /// The card answered with a status the operation does not expect.
    #[error("the card refused {command} with status {sw:04X}")]
    Status {
        /// Command name.
        command: &'static str,
        /// Status word.
        sw: u16,
    },
    /// The card's answer has the wrong length or shape.
    #[error("the card gave a malformed answer to {0}: try again or use another card")]
    MalformedResponse(&'static str),
    /// The reader failed (no card, removed, timeout, ...).
    #[error(transparent)]
    Reader(#[from] ReaderError),
    /// The SAM failed.
    #[error("SAM: {0}")]
    Sam(#[from] SamError),
}

/// Which of the card's counters (and so which GET TRANSACTION PROVE P2) a transaction used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProveKind {
    /// Loads: online counter (P2 = 02).
    Load,
    /// Purchases, grey locks and unlocks: offline counter (P2 = 06).
    Offline,
}

/// What SELECT tells about the card (from its issuer data in the FCI).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CardInfo {
    /// Card number.
    pub asn: Asn,
    /// Issue date, BCD `YYYYMMDD`.
    pub issue_date: [u8; 4],
    /// Expiry date, BCD `YYYYMMDD`.
    pub expiry: [u8; 4],
    /// Card class.
    pub card_class: u8,
}

/// A completed purchase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurchaseReceipt {
    /// Card.
    pub asn: Asn,
    /// Terminal.
    pub terminal: TerminalId,
    /// Terminal sequence used.
    pub term_seq: u32,
    /// Card offline counter of this purchase.
    pub offline_counter: u16,
    /// Amount in fen.
    pub amount: u32,
    /// Balance before, in fen.
    pub balance_before: u32,
    /// Balance after, in fen.
    pub balance_after: u32,
    /// When.
    pub datetime: BcdDateTime,
    /// Terminal MAC1.
    pub mac1: Mac4,
    /// Card MAC2.
    pub mac2: Mac4,
    /// Card TAC (verifiable by HQ).
    pub tac: Mac4,
}

/// A completed load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadReceipt {
    /// Card.
    pub asn: Asn,
    /// Terminal.
    pub terminal: TerminalId,
    /// Card online counter of this load.
    pub online_counter: u16,
    /// Amount in fen.
    pub amount: u32,
    /// Balance before, in fen.
    pub balance_before: u32,
    /// Balance after, in fen.
    pub balance_after: u32,
    /// When.
    pub datetime: BcdDateTime,
    /// Card MAC1.
    pub mac1: Mac4,
    /// Host MAC2.
    pub mac2: Mac4,
    /// Card TAC.
    pub tac: Mac4,
}

/// A completed grey lock. This is the grey record that replicates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GreyLockReceipt {
    /// Card.
    pub asn: Asn,
    /// Locking terminal.
    pub terminal: TerminalId,
    /// Terminal sequence used.
    pub term_seq: u32,
    /// Offline counter consumed by the lock.
    pub offline_counter: u16,
    /// Balance at lock, in fen.
    pub balance: u32,
    /// When.
    pub datetime: BcdDateTime,
    /// Terminal MAC1.
    pub mac1: Mac4,
    /// Card MAC2.
    pub mac2: Mac4,
    /// Grey TAC.
    pub gtac: Mac4,
}

/// A completed debit for unlock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnlockReceipt {
    /// Card.
    pub asn: Asn,
    /// Unlocking terminal (may differ from the locking one).
    pub terminal: TerminalId,
    /// Terminal sequence used.
    pub term_seq: u32,
    /// Offline counter of the unlock debit.
    pub offline_counter: u16,
    /// Amount in fen.
    pub amount: u32,
    /// Balance before, in fen.
    pub balance_before: u32,
    /// Balance after, in fen.
    pub balance_after: u32,
    /// When.
    pub datetime: BcdDateTime,
    /// Terminal GMAC.
    pub gmac: Mac4,
    /// Card TAC.
    pub tac: Mac4,
}

/// The card's grey-lock status (GREY STATUS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GreyStatus {
    /// Whether the card is locked now.
    pub locked: bool,
    /// The last lock, if the card was ever locked.
    pub last_lock: Option<GreyLockInfo>,
}

/// The last grey lock as the card remembers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GreyLockInfo {
    /// Balance at lock.
    pub balance: u32,
    /// Offline counter consumed by the lock.
    pub offline_counter: u16,
    /// Locking terminal.
    pub terminal: TerminalId,
    /// Its terminal sequence.
    pub term_seq: u32,
    /// When.
    pub datetime: BcdDateTime,
    /// Grey TAC.
    pub gtac: Mac4,
}

/// Proof of a past transaction (GET TRANSACTION PROVE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransactionProof {
    /// Card MAC2 (purchase, grey lock) or the host MAC it accepted (load, unlock).
    pub mac: Mac4,
    /// TAC of the transaction.
    pub tac: Mac4,
}

/// Issuer-side load master key: computes the card's DLK to check MAC1 and make MAC2.
#[derive(Debug, Clone)]
pub struct LoadKey(Key16);

impl LoadKey {
    /// Wraps the load master key.
    pub fn new(master: Key16) -> LoadKey {
        LoadKey(master)
    }
}

/// Application maintenance master key: blocks and unblocks applications and cards.
#[derive(Debug, Clone)]
pub struct MaintenanceKey(Key16);

impl MaintenanceKey {
    /// Wraps the maintenance master key.
    pub fn new(master: Key16) -> MaintenanceKey {
        MaintenanceKey(master)
    }
}

/// PIN-unblock master key.
#[derive(Debug, Clone)]
pub struct PinUnblockKey(Key16);

impl PinUnblockKey {
    /// Wraps the PIN-unblock master key.
    pub fn new(master: Key16) -> PinUnblockKey {
        PinUnblockKey(master)
    }
}

/// A purchase initialized on the card and not yet debited (see
/// [`EPurse::purchase_begin`]).
#[derive(Debug)]
pub struct PurchaseStarted {
    asn: Asn,
    terminal: TerminalId,
    amount: u32,
    datetime: BcdDateTime,
    balance: u32,
    counter: u16,
    mac1: Mac1,
}

impl PurchaseStarted {
    /// The offline counter the debit will consume.
    pub fn counter(&self) -> u16 {
        self.counter
    }

    /// The balance before the debit, in fen.
    pub fn balance(&self) -> u32 {
        self.balance
    }

    /// The terminal the SAM signs as.
    pub fn terminal(&self) -> TerminalId {
        self.terminal
    }

    /// The terminal sequence and MAC1 the debit will carry.
    pub fn mac1(&self) -> Mac1 {
        self.mac1
    }
}

/// A load initialized on the card, its MAC1 checked, not yet credited (see
/// [`EPurse::load_begin`]). The receipt's TAC is still zero.
#[derive(Debug)]
pub struct LoadStarted {
    receipt: LoadReceipt,
}

impl LoadStarted {
    /// What the load will be, TAC aside.
    pub fn receipt(&self) -> &LoadReceipt {
        &self.receipt
    }
}

/// Result of INITIALIZE FOR PURCHASE / GREY LOCK.
struct OfflineInit {
    balance: u32,
    counter: u16,
    key_version: u8,
    alg_id: u8,
    random: [u8; 4],
}

/// An e-purse session over a reader. Call [`EPurse::select`] first.
#[derive(Debug)]
pub struct EPurse<R: CardReader> {
    reader: R,
    info: Option<CardInfo>,
}

impl<R: CardReader> EPurse<R> {
    /// Wraps a reader with a card present.
    pub fn new(reader: R) -> EPurse<R> {
        EPurse { reader, info: None }
    }

    /// The reader, e.g. to wait for removal.
    pub fn reader_mut(&mut self) -> &mut R {
        &mut self.reader
    }

    /// Gives the reader back.
    pub fn into_reader(self) -> R {
        self.reader
    }

    pub(crate) fn send(&mut self, c_apdu: &[u8]) -> Result<Response, EpurseError> {
        let raw = self.reader.transmit(c_apdu)?;
        Response::parse(&raw).map_err(|_| EpurseError::MalformedResponse("(any command)"))
    }

    /// Sends a command expecting 9000 and exactly `len` data bytes.
    pub(crate) fn call(
        &mut self,
        command: &'static str,
        c_apdu: &[u8],
        len: usize,
    ) -> Result<Vec<u8>, EpurseError> {
        let r = self.send(c_apdu)?;
        if r.sw != sw::OK {
            return Err(status_error(command, r.sw));
        }
        if r.data.len() != len {
            return Err(EpurseError::MalformedResponse(command));
        }
        Ok(r.data)
    }

    fn info(&self) -> Result<CardInfo, EpurseError> {
        self.info.ok_or(EpurseError::NotSelected)
    }

    /// Selects the e-purse and reads the card's number, dates and class.
    pub fn select(&mut self) -> Result<CardInfo, EpurseError> {
        self.info = None;
        let r = self.send(&apdu::build(0x00, 0xA4, 0x04, 0x00, EPURSE_AID, Some(0)))?;
        match r.sw {
            sw::OK | sw::SELECTED_FILE_INVALIDATED => {}
            sw::FILE_NOT_FOUND => return Err(EpurseError::NotAnEpurse),
            s => return Err(status_error("SELECT", s)),
        }
        let info = match parse_fci(&r.data) {
            Some(info) => info,
            // A blank chip's FCI names the application but carries no issuer data yet.
            None if tlv(&r.data, 0x6F).and_then(|b| tlv(b, 0x84)) == Some(EPURSE_AID) => {
                return Err(EpurseError::NotPersonalized);
            }
            None => return Err(EpurseError::MalformedResponse("SELECT")),
        };
        self.info = Some(info);
        if r.sw == sw::SELECTED_FILE_INVALIDATED {
            return Err(EpurseError::ApplicationBlocked {
                asn: Some(info.asn),
            });
        }
        Ok(info)
    }

    /// Reads the balance in fen.
    pub fn balance(&mut self) -> Result<u32, EpurseError> {
        let d = self.call(
            "GET BALANCE",
            &apdu::build(0x80, 0x5C, 0x00, P2_EPURSE, &[], Some(4)),
            4,
        )?;
        Ok(u32::from_be_bytes([d[0], d[1], d[2], d[3]]))
    }

    /// Presents the cardholder PIN.
    pub fn verify_pin(&mut self, pin: &Pin) -> Result<(), EpurseError> {
        self.call(
            "VERIFY",
            &apdu::build(0x00, 0x20, 0x00, 0x00, &pin.to_bcd(), None),
            0,
        )
        .map(|_| ())
    }

    /// Changes the PIN (the old PIN is checked by the card).
    pub fn change_pin(&mut self, old: &Pin, new: &Pin) -> Result<(), EpurseError> {
        let data = [old.to_bcd(), vec![0xFF], new.to_bcd()].concat();
        self.call(
            "CHANGE PIN",
            &apdu::build(0x80, 0x5E, 0x01, 0x00, &data, None),
            0,
        )
        .map(|_| ())
    }

    fn check_expiry(&self, dt: &BcdDateTime) -> Result<(), EpurseError> {
        let info = self.info()?;
        if dt.date() > info.expiry {
            let e = info.expiry;
            return Err(EpurseError::CardExpired {
                expiry: format!("{:02x}{:02x}-{:02x}-{:02x}", e[0], e[1], e[2], e[3]),
            });
        }
        Ok(())
    }

    /// Loads `amount` fen. Needs the PIN verified and the issuer's load key.
    pub fn load(
        &mut self,
        key: &LoadKey,
        terminal: TerminalId,
        amount: u32,
        datetime: BcdDateTime,
    ) -> Result<LoadReceipt, EpurseError> {
        let started = self.load_begin(key, terminal, amount, datetime)?;
        self.load_finish(started)
    }

    /// The first half of a load: INITIALIZE FOR LOAD and the check of the card's MAC1.
    /// The card has not moved money yet; the caller logs the intent (with the online
    /// counter) and then calls [`EPurse::load_finish`] with no other command between.
    pub fn load_begin(
        &mut self,
        key: &LoadKey,
        terminal: TerminalId,
        amount: u32,
        datetime: BcdDateTime,
    ) -> Result<LoadStarted, EpurseError> {
        self.check_expiry(&datetime)?;
        let asn = self.info()?.asn;
        let mut data = vec![KEY_INDEX];
        data.extend_from_slice(&amount.to_be_bytes());
        data.extend_from_slice(&terminal.0);
        let d = self.call(
            "INITIALIZE FOR LOAD",
            &apdu::build(0x80, 0x50, 0x00, P2_EPURSE, &data, Some(0x10)),
            16,
        )?;
        let balance_before = u32::from_be_bytes([d[0], d[1], d[2], d[3]]);
        let online_counter = u16::from_be_bytes([d[4], d[5]]);
        let random = [d[8], d[9], d[10], d[11]];
        let mac1 = Mac4([d[12], d[13], d[14], d[15]]);
        let ses = crypto::load_session_key(&key.0.diversify(&asn), random, online_counter);
        if !mac_eq(
            &mac1,
            &crypto::load_mac1(&ses, balance_before, amount, &terminal),
        ) {
            return Err(EpurseError::CardMacInvalid);
        }
        let balance_after = balance_before
            .checked_add(amount)
            .ok_or(EpurseError::BalanceLimit)?;
        let mac2 = crypto::load_mac2(&ses, amount, &terminal, &datetime);
        Ok(LoadStarted {
            receipt: LoadReceipt {
                asn,
                terminal,
                online_counter,
                amount,
                balance_before,
                balance_after,
                datetime,
                mac1,
                mac2,
                tac: Mac4([0; 4]),
            },
        })
    }

    /// The second half of a load: CREDIT FOR LOAD. On a card removal the error is
    /// [`EpurseError::Interrupted`]: the card may have credited.
    pub fn load_finish(&mut self, started: LoadStarted) -> Result<LoadReceipt, EpurseError> {
        let mut receipt = started.receipt;
        let data = [&receipt.datetime.0[..], &receipt.mac2.0].concat();
        let tac = self
            .call(
                "CREDIT FOR LOAD",
                &apdu::build(0x80, 0x52, 0x00, 0x00, &data, Some(4)),
                4,
            )
            .map_err(|e| interrupted(e, ProveKind::Load, receipt.online_counter))?;
        receipt.tac = Mac4([tac[0], tac[1], tac[2], tac[3]]);
        Ok(receipt)
    }

    fn offline_init(
        &mut self,
        command: &'static str,
        c_apdu: &[u8],
    ) -> Result<OfflineInit, EpurseError> {
        let d = self.call(command, c_apdu, 15)?;
        Ok(OfflineInit {
            balance: u32::from_be_bytes([d[0], d[1], d[2], d[3]]),
            counter: u16::from_be_bytes([d[4], d[5]]),
            key_version: d[9],
            alg_id: d[10],
            random: [d[11], d[12], d[13], d[14]],
        })
    }

    /// Debits `amount` fen offline, with MAC1 from the SAM and MAC2 checked by it.
    pub fn purchase<S: Sam>(
        &mut self,
        sam: &mut S,
        amount: u32,
        datetime: BcdDateTime,
    ) -> Result<PurchaseReceipt, EpurseError> {
        let started = self.purchase_begin(sam, amount, datetime)?;
        self.purchase_finish(sam, started)
    }

    /// The first half of a purchase: INITIALIZE FOR PURCHASE, which tells the balance
    /// and the offline counter the debit will use, and MAC1 from the SAM (which reserves
    /// the terminal sequence). The card has not moved money yet;
    /// the caller logs the intent and then calls [`EPurse::purchase_finish`] with no
    /// other command to the card between.
    pub fn purchase_begin<S: Sam>(
        &mut self,
        sam: &mut S,
        amount: u32,
        datetime: BcdDateTime,
    ) -> Result<PurchaseStarted, EpurseError> {
        self.check_expiry(&datetime)?;
        let asn = self.info()?.asn;
        let terminal = sam.terminal_id()?;
        let mut data = vec![KEY_INDEX];
        data.extend_from_slice(&amount.to_be_bytes());
        data.extend_from_slice(&terminal.0);
        let init = match self.offline_init(
            "INITIALIZE FOR PURCHASE",
            &apdu::build(0x80, 0x50, 0x01, P2_EPURSE, &data, Some(0x0F)),
        ) {
            Err(EpurseError::InsufficientFunds { .. }) => {
                return Err(EpurseError::InsufficientFunds {
                    amount,
                    balance: self.balance().ok(),
                });
            }
            Err(EpurseError::Status {
                sw: sw::CONDITIONS_NOT_SATISFIED,
                ..
            }) => return Err(self.grey_locked_error()),
            other => other?,
        };
        let mac1 = sam.mac1(&Mac1Request {
            random: init.random,
            card_counter: init.counter,
            amount,
            tx_type: TxType::Purchase,
            datetime,
            key_version: init.key_version,
            alg_id: init.alg_id,
            asn,
        })?;
        Ok(PurchaseStarted {
            asn,
            terminal,
            amount,
            datetime,
            balance: init.balance,
            counter: init.counter,
            mac1,
        })
    }

    /// The second half of a purchase: DEBIT FOR PURCHASE and the MAC2 check by the SAM
    /// that made the MAC1. On a card removal the error is [`EpurseError::Interrupted`]: the card may
    /// have debited.
    pub fn purchase_finish<S: Sam>(
        &mut self,
        sam: &mut S,
        started: PurchaseStarted,
    ) -> Result<PurchaseReceipt, EpurseError> {
        let PurchaseStarted {
            asn,
            terminal,
            amount,
            datetime,
            balance,
            counter,
            mac1,
        } = started;
        let mut data = mac1.term_seq.to_be_bytes().to_vec();
        data.extend_from_slice(&datetime.0);
        data.extend_from_slice(&mac1.mac1.0);
        let d = self
            .call(
                "DEBIT FOR PURCHASE",
                &apdu::build(0x80, 0x54, 0x01, 0x00, &data, Some(8)),
                8,
            )
            .map_err(|e| interrupted(e, ProveKind::Offline, counter))?;
        let receipt = PurchaseReceipt {
            asn,
            terminal,
            term_seq: mac1.term_seq,
            offline_counter: counter,
            amount,
            balance_before: balance,
            balance_after: balance.saturating_sub(amount),
            datetime,
            mac1: mac1.mac1,
            tac: Mac4([d[0], d[1], d[2], d[3]]),
            mac2: Mac4([d[4], d[5], d[6], d[7]]),
        };
        match sam.check_mac2(receipt.mac2) {
            Ok(()) => Ok(receipt),
            Err(SamError::Mac2Invalid) => Err(EpurseError::Mac2Invalid {
                receipt: Box::new(receipt),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// The error for a purchase or lock refused with 6985: grey-locked, with the
    /// locking terminal when the card tells it.
    fn grey_locked_error(&mut self) -> EpurseError {
        match self.grey_status() {
            Ok(GreyStatus {
                locked: true,
                last_lock,
            }) => EpurseError::GreyLocked {
                terminal: last_lock.map(|l| l.terminal),
            },
            _ => EpurseError::Status {
                command: "INITIALIZE",
                sw: sw::CONDITIONS_NOT_SATISFIED,
            },
        }
    }

    /// Grey-locks the card before fuelling.
    pub fn grey_lock<S: Sam>(
        &mut self,
        sam: &mut S,
        datetime: BcdDateTime,
    ) -> Result<GreyLockReceipt, EpurseError> {
        let started = self.grey_lock_begin(sam, datetime)?;
        self.grey_lock_finish(sam, started)
    }

    /// The first half of a grey lock: INITIALIZE FOR GREY LOCK and MAC1. The returned
    /// receipt has the counter, balance and terminal sequence; MAC2 and GTAC are zero
    /// until [`EPurse::grey_lock_finish`].
    pub fn grey_lock_begin<S: Sam>(
        &mut self,
        sam: &mut S,
        datetime: BcdDateTime,
    ) -> Result<GreyLockReceipt, EpurseError> {
        self.check_expiry(&datetime)?;
        let asn = self.info()?.asn;
        let terminal = sam.terminal_id()?;
        let data = [&[KEY_INDEX][..], &terminal.0].concat();
        let init = match self.offline_init(
            "INITIALIZE FOR GREY LOCK",
            &apdu::build(0xE0, 0x7A, 0x08, P2_EPURSE, &data, Some(0x0F)),
        ) {
            Err(EpurseError::Status {
                sw: sw::CONDITIONS_NOT_SATISFIED,
                ..
            }) => return Err(self.grey_locked_error()),
            other => other?,
        };
        let mac1 = sam.mac1(&Mac1Request {
            random: init.random,
            card_counter: init.counter,
            amount: 0,
            tx_type: TxType::GreyLock,
            datetime,
            key_version: init.key_version,
            alg_id: init.alg_id,
            asn,
        })?;
        Ok(GreyLockReceipt {
            asn,
            terminal,
            term_seq: mac1.term_seq,
            offline_counter: init.counter,
            balance: init.balance,
            datetime,
            mac1: mac1.mac1,
            gtac: Mac4([0; 4]),
            mac2: Mac4([0; 4]),
        })
    }

    /// The second half of a grey lock: the GREY LOCK command and the MAC2 check.
    pub fn grey_lock_finish<S: Sam>(
        &mut self,
        sam: &mut S,
        started: GreyLockReceipt,
    ) -> Result<GreyLockReceipt, EpurseError> {
        let mut receipt = started;
        let mut data = receipt.term_seq.to_be_bytes().to_vec();
        // The terminal random of the published layout; cardmesh's MACs do not use it.
        data.extend_from_slice(&[0; 4]);
        data.extend_from_slice(&receipt.datetime.0);
        data.extend_from_slice(&receipt.mac1.0);
        let d = self
            .call(
                "GREY LOCK",
                &apdu::build(0xE0, 0x7C, 0x08, 0x00, &data, Some(8)),
                8,
            )
            .map_err(|e| interrupted(e, ProveKind::Offline, receipt.offline_counter))?;
        receipt.gtac = Mac4([d[0], d[1], d[2], d[3]]);
        receipt.mac2 = Mac4([d[4], d[5], d[6], d[7]]);
        match sam.check_mac2(receipt.mac2) {
            Ok(()) => Ok(receipt),
            Err(SamError::Mac2Invalid) => Err(EpurseError::CardMacInvalid),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads the card's grey-lock status.
    pub fn grey_status(&mut self) -> Result<GreyStatus, EpurseError> {
        let d = self.call(
            "GREY STATUS",
            &apdu::build(0xE0, 0xCA, 0x00, 0x00, &[], Some(0x1E)),
            30,
        )?;
        let last_lock = (d[1..].iter().any(|&b| b != 0)).then(|| GreyLockInfo {
            balance: u32::from_be_bytes([d[1], d[2], d[3], d[4]]),
            offline_counter: u16::from_be_bytes([d[5], d[6]]),
            terminal: TerminalId([d[9], d[10], d[11], d[12], d[13], d[14]]),
            term_seq: u32::from_be_bytes([d[15], d[16], d[17], d[18]]),
            datetime: BcdDateTime([d[19], d[20], d[21], d[22], d[23], d[24], d[25]]),
            gtac: Mac4([d[26], d[27], d[28], d[29]]),
        });
        Ok(GreyStatus {
            locked: d[0] == 0x01,
            last_lock,
        })
    }

    /// Debits the real amount and unlocks a grey-locked card. Works at any station with
    /// a SAM: the GTAC and counters are read from the card.
    pub fn debit_for_unlock<S: Sam>(
        &mut self,
        sam: &mut S,
        amount: u32,
        datetime: BcdDateTime,
    ) -> Result<UnlockReceipt, EpurseError> {
        let started = self.unlock_begin(sam, amount, datetime)?;
        self.unlock_finish(started)
    }

    /// The first half of a debit for unlock: reads the lock and the balance and has the
    /// SAM compute the GMAC. The receipt's TAC is zero until [`EPurse::unlock_finish`].
    pub fn unlock_begin<S: Sam>(
        &mut self,
        sam: &mut S,
        amount: u32,
        datetime: BcdDateTime,
    ) -> Result<UnlockReceipt, EpurseError> {
        let asn = self.info()?.asn;
        let status = self.grey_status()?;
        let lock = match (status.locked, status.last_lock) {
            (true, Some(lock)) => lock,
            _ => return Err(EpurseError::NotGreyLocked),
        };
        let balance_before = self.balance()?;
        if amount > balance_before {
            return Err(EpurseError::InsufficientFunds {
                amount,
                balance: Some(balance_before),
            });
        }
        let counter = lock
            .offline_counter
            .checked_add(1)
            .ok_or(EpurseError::MalformedResponse("GREY STATUS"))?;
        let terminal = sam.terminal_id()?;
        let gmac = sam.mac1(&Mac1Request {
            random: lock.gtac.0,
            card_counter: counter,
            amount,
            tx_type: TxType::UnlockDebit,
            datetime,
            key_version: KEY_VERSION,
            alg_id: ALG_ID_3DES,
            asn,
        })?;
        Ok(UnlockReceipt {
            asn,
            terminal,
            term_seq: gmac.term_seq,
            offline_counter: counter,
            amount,
            balance_before,
            balance_after: balance_before - amount,
            datetime,
            gmac: gmac.mac1,
            tac: Mac4([0; 4]),
        })
    }

    /// The second half of a debit for unlock: the DEBIT FOR UNLOCK command.
    pub fn unlock_finish(&mut self, started: UnlockReceipt) -> Result<UnlockReceipt, EpurseError> {
        let mut r = started;
        let mut data = r.amount.to_be_bytes().to_vec();
        data.extend_from_slice(&r.offline_counter.to_be_bytes());
        data.extend_from_slice(&r.terminal.0);
        data.extend_from_slice(&r.term_seq.to_be_bytes());
        data.extend_from_slice(&r.datetime.0);
        data.extend_from_slice(&r.gmac.0);
        let counter = r.offline_counter;
        let d = self
            .call(
                "DEBIT FOR UNLOCK",
                &apdu::build(0xE0, 0x7E, 0x08, P2_EPURSE, &data, Some(4)),
                4,
            )
            .map_err(|e| match e {
                EpurseError::Status {
                    sw: sw::CONDITIONS_NOT_SATISFIED,
                    ..
                } => EpurseError::NotGreyLocked,
                e => interrupted(e, ProveKind::Offline, counter),
            })?;
        r.tac = Mac4([d[0], d[1], d[2], d[3]]);
        Ok(r)
    }

    /// Asks the card for the MAC and TAC of its last transaction on a counter, to
    /// settle a transaction interrupted by a card removal. `Ok(None)`: the card never
    /// executed it.
    pub fn transaction_prove(
        &mut self,
        kind: ProveKind,
        counter: u16,
    ) -> Result<Option<TransactionProof>, EpurseError> {
        let p2 = match kind {
            ProveKind::Load => 0x02,
            ProveKind::Offline => 0x06,
        };
        let r = self.send(&apdu::build(
            0x80,
            0x5A,
            0x00,
            p2,
            &counter.to_be_bytes(),
            Some(8),
        ))?;
        match (r.sw, r.data.len()) {
            (sw::OK, 8) => Ok(Some(TransactionProof {
                mac: Mac4([r.data[0], r.data[1], r.data[2], r.data[3]]),
                tac: Mac4([r.data[4], r.data[5], r.data[6], r.data[7]]),
            })),
            (sw::OK, _) => Err(EpurseError::MalformedResponse("GET TRANSACTION PROVE")),
            (sw::RECORD_NOT_FOUND, _) => Ok(None),
            (s, _) => Err(status_error("GET TRANSACTION PROVE", s)),
        }
    }

    /// Reads the card's transaction log, latest first.
    pub fn read_records(&mut self) -> Result<Vec<TxRecord>, EpurseError> {
        let mut out = Vec::with_capacity(TX_LOG_LEN);
        for n in 1..=TX_LOG_LEN as u8 {
            let r = self.send(&apdu::build(0x00, 0xB2, n, P2_TX_LOG, &[], Some(23)))?;
            match r.sw {
                sw::OK => out.push(
                    TxRecord::from_bytes(&r.data)
                        .ok_or(EpurseError::MalformedResponse("READ RECORD"))?,
                ),
                sw::RECORD_NOT_FOUND => break,
                s => return Err(status_error("READ RECORD", s)),
            }
        }
        Ok(out)
    }

    fn secure_admin(
        &mut self,
        command: &'static str,
        key: &Key16,
        ins: u8,
    ) -> Result<(), EpurseError> {
        let asn = self.info()?.asn;
        let c = self.call(
            "GET CHALLENGE",
            &apdu::build(0x00, 0x84, 0x00, 0x00, &[], Some(4)),
            4,
        )?;
        let challenge = [c[0], c[1], c[2], c[3]];
        let mac = admin_mac(&key.diversify(&asn), challenge, ins, 0x00, 0x00);
        self.call(
            command,
            &apdu::build(0x84, ins, 0x00, 0x00, &mac.0, None),
            0,
        )
        .map(|_| ())
    }

    /// Blocks the e-purse application (blacklisted card). Purchases and loads are then
    /// refused until [`EPurse::application_unblock`].
    pub fn application_block(&mut self, key: &MaintenanceKey) -> Result<(), EpurseError> {
        self.secure_admin("APPLICATION BLOCK", &key.0, 0x1E)
    }

    /// Unblocks the application (after [`EPurse::select`] reported it blocked).
    pub fn application_unblock(&mut self, key: &MaintenanceKey) -> Result<(), EpurseError> {
        self.secure_admin("APPLICATION UNBLOCK", &key.0, 0x18)
    }

    /// Blocks the card permanently: it will answer nothing any more.
    pub fn card_block(&mut self, key: &MaintenanceKey) -> Result<(), EpurseError> {
        self.secure_admin("CARD BLOCK", &key.0, 0x16)
    }

    /// Resets the PIN try counter of a blocked PIN (issuing desk).
    pub fn pin_unblock(&mut self, key: &PinUnblockKey) -> Result<(), EpurseError> {
        self.secure_admin("PIN UNBLOCK", &key.0, 0x24)
    }
}

/// Maps a reader-level card removal during a money command to
/// [`EpurseError::Interrupted`].
fn interrupted(e: EpurseError, kind: ProveKind, counter: u16) -> EpurseError {
    match e {
        EpurseError::Reader(ReaderError::CardRemoved | ReaderError::CardReset) => {
            EpurseError::Interrupted { kind, counter }
        }
        e => e,
    }
}

fn status_error(command: &'static str, s: u16) -> EpurseError {
    match s {
        sw::INSUFFICIENT_FUNDS => EpurseError::InsufficientFunds {
            amount: 0,
            balance: None,
        },
        sw::MAC_ERROR => EpurseError::MacRejected,
        sw::PIN_BLOCKED => EpurseError::PinBlocked,
        s if s & 0xFFF0 == sw::WRONG_PIN_BASE => EpurseError::WrongPin {
            tries_left: (s & 0x0F) as u8,
        },
        sw::SECURITY_NOT_SATISFIED => EpurseError::PinRequired,
        sw::FUNCTION_NOT_SUPPORTED => EpurseError::ApplicationBlocked { asn: None },
        sw::BALANCE_LIMIT => EpurseError::BalanceLimit,
        sw => EpurseError::Status { command, sw },
    }
}

/// Parses `6F [84 AID] [A5 [9F0C 30-byte issuer data]]`.
fn parse_fci(fci: &[u8]) -> Option<CardInfo> {
    let body = tlv(fci, 0x6F)?;
    let a5 = tlv_find(body, 0xA5)?;
    let issuer = tlv_find2(a5, [0x9F, 0x0C])?;
    let f = IssuerFile::from_bytes(issuer)?;
    Some(CardInfo {
        asn: f.asn,
        issue_date: f.issue_date,
        expiry: f.expiry,
        card_class: f.card_class,
    })
}

/// The value of a TLV that must start `data` with one-byte tag `tag`.
fn tlv(data: &[u8], tag: u8) -> Option<&[u8]> {
    match data {
        [t, len, rest @ ..] if *t == tag => rest.get(..usize::from(*len)),
        _ => None,
    }
}

/// Finds a one-byte-tag TLV among siblings (one-byte lengths, as in the e-purse FCI).
fn tlv_find(mut data: &[u8], tag: u8) -> Option<&[u8]> {
    while let [t, len, rest @ ..] = data {
        let (value, next) = rest.split_at_checked(usize::from(*len))?;
        if *t == tag {
            return Some(value);
        }
        data = next;
    }
    None
}

/// Finds a two-byte-tag TLV (such as 9F0C) among siblings.
fn tlv_find2(mut data: &[u8], tag: [u8; 2]) -> Option<&[u8]> {
    while let [t0, t1, len, rest @ ..] = data {
        let (value, next) = rest.split_at_checked(usize::from(*len))?;
        if [*t0, *t1] == tag {
            return Some(value);
        }
        data = next;
    }
    None
}
