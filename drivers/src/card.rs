//! The virtual e-purse card: a sans-IO PBOC-style command processor (bytes in, bytes
//! out) with the card's persistent state, which it writes through to a file before it
//! answers, like a chip writes its EEPROM, so a card can be "carried" between nodes.
//!
//! Commands, data layouts and status words are listed in `shared/reference/pboc-epurse.md`
//! and [`crate::constants`]. Choices made here:
//! - the e-purse must be SELECTed after every reset (otherwise 6985);
//! - INITIALIZE FOR LOAD needs a verified PIN (6982), a purchase does not;
//! - the card keeps one open session: any command other than the matching
//!   CREDIT/DEBIT/GREY LOCK closes it (then 6984);
//! - a grey-locked card refuses INITIALIZE FOR PURCHASE and a second lock (6985); loads
//!   are still accepted; DEBIT FOR UNLOCK must carry the card's current offline counter;
//! - a blocked application answers SELECT with its FCI and 6283 and every other command
//!   except GET CHALLENGE and APPLICATION UNBLOCK with 6A81; a blocked card answers
//!   everything with 6A81;
//! - block/unblock/card block use secure messaging under DAMK, PIN UNBLOCK under DPUK:
//!   `84 INS P1 P2 04 MAC`, MAC = ISO 9797-1 alg. 3 over `84 INS P1 P2 04`, IV =
//!   last GET CHALLENGE || 00000000; PIN UNBLOCK resets the try counter;
//! - GET TRANSACTION PROVE keeps the last load and the last offline-counter transaction
//!   (purchase, grey lock or unlock); its MAC is the card's MAC2 for purchase and grey
//!   lock, and the host MAC the card accepted for load (MAC2) and unlock (GMAC);
//! - GREY STATUS (30 bytes): `0` status (01 locked, 00 not), `1..5` balance at lock,
//!   `5..7` offline counter of the lock, `7` key version, `8` algorithm, `9..15`
//!   locking terminal, `15..19` its terminal sequence, `19..26` datetime, `26..30` GTAC.
//!   The record of the last lock stays readable after the unlock, with status 00.
//! - Transaction log record (23 bytes, record 1 = latest): counter(2) overdraft(3)
//!   amount(4) type(1) termId(6) date(4) time(3).
//!
//! # Blank chips and personalization (primary issue)
//!
//! A chip can also be created blank ([`VirtualCard::blank`]), as the manufacturer
//! delivers it: life cycle "pre-personalization", a chip serial number and a transport
//! key `TK = 3DES diversification of the transport master key by the serial` (the
//! master comes with the batch). A blank chip answers only:
//!
//! | command | C-APDU | data | response / status words |
//! |---|---|---|---|
//! | SELECT | `00 A4 04 00 07 AID` | | FCI `6F [84 AID]` without issuer data |
//! | GET CHALLENGE | `00 84 00 00 04` | | random(4), good for the next command only |
//! | GET DATA (status) | `80 CA DF 01 0B` | | life cycle(1) (07 blank, 83 transport locked) serial(8) transport tries left(1) written(1) |
//! | EXTERNAL AUTHENTICATE | `00 82 00 00 08` | `3DES_TK(challenge ‖ 00000000)` | 63Cx wrong (x tries left), 6983 locked, 6984 no challenge |
//! | WRITE KEY | `84 D4 00 type Lc` | `ENC ‖ MAC` | 6988 bad MAC, 6A88 unknown type, 6A80 bad value |
//! | UPDATE BINARY | `04 D6 80+SFI 00 Lc` | `file ‖ MAC` | whole file at offset 0; 6A82 unknown file |
//! | END PERSONALIZATION (SET STATUS) | `84 F0 40 0F 04` | `MAC` | 6985 while a key or file is missing |
//!
//! Everything else (every money, PIN, log, grey-lock and block command) is refused with
//! 6985; commands before SELECT with 6985. WRITE KEY, UPDATE BINARY and END need a
//! successful EXTERNAL AUTHENTICATE since the last SELECT or reset (else 6982) and a
//! GET CHALLENGE just before (else 6984). Their MAC is ISO 9797-1 alg. 3 under TK over
//! `CLA INS P1 P2 Lc data` (Lc counting the MAC), IV = challenge ‖ 00000000; a bad
//! MAC answers 6988 and writes nothing. ENC (WRITE KEY) is `L ‖ value` padded 80 00..,
//! 3DES-ECB under TK. Key types (P2 of WRITE KEY, "written" bit): 3E purchase DPK (01),
//! 3F load DLK (02), 34 TAC DTK (04), 37 PIN unblock DPUK (08), 36 maintenance DAMK
//! (10), 3A cardholder PIN as BCD, F-padded (20). Files: EF 0015, the issuer file (30
//! bytes, the FCI's 9F0C, layout in [`crate::perso::IssuerFile`]; bit 40) and EF 0019,
//! cardmesh's purse parameters: maximum balance(4), fen (bit 80). Three wrong
//! cryptograms lock the transport key for good (6983 to every later EXTERNAL
//! AUTHENTICATE); a right one restores the count. There is no holder file: the holder
//! lives in the network's card registry, not on the chip.
//!
//! Each change (tries, a key, a file) is written to the state file before the answer,
//! so a chip pulled mid-way is still blank with what it had, and can be personalized
//! again from the start. END PERSONALIZATION writes the card exactly as
//! [`VirtualCard::create`] would from the same [`Personalization`]; the blank state,
//! with the transport key, is gone.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::apdu::{ApduProcessor, Command, atr_with_history};
use crate::constants::{
    ALG_ID_3DES, EPURSE_AID, KEY_INDEX, KEY_VERSION, P2_EPURSE, P2_TX_LOG, PIN_TRIES, TX_LOG_LEN,
    TxType, sw,
};
use crate::crypto::{self, Key8, Key16, mac_eq};
use crate::keys::CardKeys;
use crate::persist::{self, StateFileError};
use crate::perso::IssuerFile;
use crate::types::{Asn, BcdDateTime, ChipSerial, Mac4, Pin, TerminalId};

mod blank;
use blank::{Blank, Step};

const MAGIC: &[u8; 8] = b"CMCARD01";
/// A blank chip's state file has its own magic, so a personalized card's file keeps
/// exactly the layout it always had.
const BLANK_MAGIC: &[u8; 8] = b"CMBLANK1";

/// What is written into a card when it is issued.
#[derive(Debug, Clone)]
pub struct Personalization {
    /// Card number.
    pub asn: Asn,
    /// Diversified keys (from [`crate::keys::MasterKeys::card_keys`]).
    pub keys: CardKeys,
    /// Initial cardholder PIN.
    pub pin: Pin,
    /// Issue date, BCD `YYYYMMDD`.
    pub issue_date: [u8; 4],
    /// Expiry date, BCD `YYYYMMDD`.
    pub expiry: [u8; 4],
    /// Card class (member class, staff card, ...), chosen by the business.
    pub card_class: u8,
    /// Largest balance a load may reach, in fen.
    pub max_balance: u32,
}

/// A line of the card's transaction log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxRecord {
    /// Online counter (load) or offline counter (others) of the transaction.
    pub counter: u16,
    /// Amount in fen (0 for a grey lock).
    pub amount: u32,
    /// Transaction type.
    pub tx_type: TxType,
    /// Terminal.
    pub terminal: TerminalId,
    /// When.
    pub datetime: BcdDateTime,
}

impl TxRecord {
    /// The 23-byte record layout of READ RECORD.
    pub fn to_bytes(&self) -> [u8; 23] {
        let mut b = [0u8; 23];
        b[0..2].copy_from_slice(&self.counter.to_be_bytes());
        b[5..9].copy_from_slice(&self.amount.to_be_bytes());
        b[9] = self.tx_type.code();
        b[10..16].copy_from_slice(&self.terminal.0);
        b[16..23].copy_from_slice(&self.datetime.0);
        b
    }

    /// Parses a 23-byte record; `None` if its length or type code is wrong.
    pub fn from_bytes(b: &[u8]) -> Option<TxRecord> {
        let b: &[u8; 23] = b.try_into().ok()?;
        Some(TxRecord {
            counter: u16::from_be_bytes([b[0], b[1]]),
            amount: u32::from_be_bytes([b[5], b[6], b[7], b[8]]),
            tx_type: TxType::from_code(b[9])?,
            terminal: TerminalId(b[10..16].try_into().ok()?),
            datetime: BcdDateTime(b[16..23].try_into().ok()?),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Proof {
    counter: u16,
    mac: Mac4,
    tac: Mac4,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct GreyRecord {
    locked: bool,
    balance: u32,
    counter: u16,
    terminal: TerminalId,
    term_seq: u32,
    datetime: BcdDateTime,
    gtac: Mac4,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct CardState {
    asn: Asn,
    keys: CardKeys,
    pin: Pin,
    pin_tries_left: u8,
    issue_date: [u8; 4],
    expiry: [u8; 4],
    card_class: u8,
    max_balance: u32,
    balance: u32,
    online_ctr: u16,
    offline_ctr: u16,
    /// Most recent first, at most [`TX_LOG_LEN`].
    log: VecDeque<TxRecord>,
    last_load: Option<Proof>,
    last_offline: Option<Proof>,
    grey: Option<GreyRecord>,
    app_blocked: bool,
    card_blocked: bool,
}

enum Session {
    Load {
        amount: u32,
        terminal: TerminalId,
        counter: u16,
        ses: Key8,
    },
    Purchase {
        amount: u32,
        terminal: TerminalId,
        counter: u16,
        random: [u8; 4],
    },
    GreyLock {
        terminal: TerminalId,
        counter: u16,
        random: [u8; 4],
    },
}

/// A virtual e-purse card. See the module docs for its behaviour.
pub struct VirtualCard {
    chip: Chip,
    file: Option<PathBuf>,
}

/// The two lives of a chip: blank (only personalization) and personalized (e-purse).
enum Chip {
    Blank(Blank),
    Personalized(App),
}

/// The personalized e-purse application: persistent state and volatile session.
struct App {
    state: CardState,
    selected: bool,
    pin_verified: bool,
    session: Option<Session>,
    challenge: Option<[u8; 4]>,
}

type Reply = Result<Vec<u8>, u16>;

impl VirtualCard {
    /// Issues a card that lives in memory only.
    pub fn new(p: Personalization) -> VirtualCard {
        VirtualCard {
            chip: Chip::Personalized(App::new(p)),
            file: None,
        }
    }

    /// Issues a card whose state lives in `path` (created or overwritten now).
    pub fn create(path: &Path, p: Personalization) -> Result<VirtualCard, StateFileError> {
        let app = App::new(p);
        persist::save(path, MAGIC, &app.state)?;
        Ok(VirtualCard {
            chip: Chip::Personalized(app),
            file: Some(path.to_owned()),
        })
    }

    /// A blank chip as the manufacturer delivers it, in memory only: its serial number
    /// and its transport key ([`crate::perso::transport_key`] of the batch's master).
    pub fn blank(serial: ChipSerial, transport_key: Key16) -> VirtualCard {
        VirtualCard {
            chip: Chip::Blank(Blank::new(serial, transport_key)),
            file: None,
        }
    }

    /// A blank chip whose state lives in `path` (created or overwritten now).
    pub fn create_blank(
        path: &Path,
        serial: ChipSerial,
        transport_key: Key16,
    ) -> Result<VirtualCard, StateFileError> {
        let blank = Blank::new(serial, transport_key);
        persist::save(path, BLANK_MAGIC, &blank.state)?;
        Ok(VirtualCard {
            chip: Chip::Blank(blank),
            file: Some(path.to_owned()),
        })
    }

    /// Picks up a card from its state file, e.g. one carried over from another node.
    pub fn open(path: &Path) -> Result<VirtualCard, StateFileError> {
        let chip =
            match persist::load(path, MAGIC, "virtual card") {
                Ok(state) => Chip::Personalized(App::from_state(state)),
                Err(StateFileError::Corrupt { .. }) => Chip::Blank(Blank::from_state(
                    persist::load(path, BLANK_MAGIC, "virtual card")?,
                )),
                Err(e) => return Err(e),
            };
        Ok(VirtualCard {
            chip,
            file: Some(path.to_owned()),
        })
    }

    /// The card number; `None` while the chip is blank.
    pub fn asn(&self) -> Option<Asn> {
        match &self.chip {
            Chip::Personalized(app) => Some(app.state.asn),
            Chip::Blank(_) => None,
        }
    }

    /// The balance in fen, as the chip holds it (for tests and the demo's card view);
    /// 0 while the chip is blank.
    pub fn balance(&self) -> u32 {
        match &self.chip {
            Chip::Personalized(app) => app.state.balance,
            Chip::Blank(_) => 0,
        }
    }

    /// Handles one command of a blank chip; on END PERSONALIZATION the chip becomes
    /// the personalized card, written to its file before it answers.
    fn process_blank(&mut self, c_apdu: &[u8]) -> Vec<u8> {
        let Chip::Blank(blank) = &mut self.chip else {
            unreachable!("only called on a blank chip");
        };
        let before = blank.state.clone();
        let (out, sw, done) = match blank.process(c_apdu) {
            Ok(Step::Answer(data)) => (data, sw::OK, None),
            Ok(Step::Personalized(p)) => (Vec::new(), sw::OK, Some(p)),
            Err(sw) => (Vec::new(), sw, None),
        };
        let saved = match (&done, &self.file) {
            (Some(p), Some(path)) => persist::save(path, MAGIC, &App::new(p.clone()).state),
            (None, Some(path)) if blank.state != before => {
                persist::save(path, BLANK_MAGIC, &blank.state)
            }
            _ => Ok(()),
        };
        if saved.is_err() {
            blank.state = before;
            return sw::MEMORY_FAILURE.to_be_bytes().to_vec();
        }
        if let Some(p) = done {
            // SET STATUS does not deselect: the terminal may go on with the e-purse.
            let mut app = App::new(p);
            app.selected = true;
            self.chip = Chip::Personalized(app);
        }
        let mut out = out;
        out.extend_from_slice(&sw.to_be_bytes());
        out
    }
}

impl App {
    fn new(p: Personalization) -> App {
        App::from_state(CardState {
            asn: p.asn,
            keys: p.keys,
            pin: p.pin,
            pin_tries_left: PIN_TRIES,
            issue_date: p.issue_date,
            expiry: p.expiry,
            card_class: p.card_class,
            max_balance: p.max_balance,
            balance: 0,
            online_ctr: 0,
            offline_ctr: 0,
            log: VecDeque::new(),
            last_load: None,
            last_offline: None,
            grey: None,
            app_blocked: false,
            card_blocked: false,
        })
    }

    fn from_state(state: CardState) -> App {
        App {
            state,
            selected: false,
            pin_verified: false,
            session: None,
            challenge: None,
        }
    }

    /// Runs one command and returns its data and status word.
    fn dispatch(&mut self, raw: &[u8]) -> (Vec<u8>, u16) {
        match self.route(raw) {
            // A blocked application still answers SELECT with its FCI so the terminal
            // can read the card number, but warns with 6283.
            Ok(fci) if raw.starts_with(&[0x00, 0xA4]) && self.state.app_blocked => {
                (fci, sw::SELECTED_FILE_INVALIDATED)
            }
            Ok(data) => (data, sw::OK),
            Err(sw) => (Vec::new(), sw),
        }
    }

    fn route(&mut self, raw: &[u8]) -> Reply {
        let session = self.session.take();
        let challenge = self.challenge.take();
        if self.state.card_blocked {
            return Err(sw::FUNCTION_NOT_SUPPORTED);
        }
        let c = Command::parse(raw).ok_or(sw::WRONG_LENGTH)?;
        match (c.cla, c.ins) {
            (0x00, 0xA4) => return self.select(&c),
            (0x00, 0x84) => return self.get_challenge(&c),
            (0x00 | 0x80 | 0x84 | 0xE0, _) => {}
            _ => return Err(sw::CLA_NOT_SUPPORTED),
        }
        if !self.selected {
            return Err(sw::CONDITIONS_NOT_SATISFIED);
        }
        if self.state.app_blocked && !matches!((c.cla, c.ins), (0x84, 0x18 | 0x16)) {
            return Err(sw::FUNCTION_NOT_SUPPORTED);
        }
        match (c.cla, c.ins) {
            (0x00, 0x20) => self.verify_pin(&c),
            (0x80, 0x5E) => self.change_pin(&c),
            (0x80, 0x5C) => self.get_balance(&c),
            (0x80, 0x50) if c.p1 == 0x00 => self.init_load(&c),
            (0x80, 0x50) if c.p1 == 0x01 => self.init_purchase(&c),
            (0x80, 0x50) => Err(sw::WRONG_P1P2),
            (0x80, 0x52) => self.credit_for_load(&c, session),
            (0x80, 0x54) => self.debit_for_purchase(&c, session),
            (0x80, 0x5A) => self.get_transaction_prove(&c),
            (0x00, 0xB2) => self.read_record(&c),
            (0xE0, 0x7A) => self.init_grey_lock(&c),
            (0xE0, 0x7C) => self.grey_lock(&c, session),
            (0xE0, 0x7E) => self.debit_for_unlock(&c),
            (0xE0, 0xCA) => self.grey_status(&c),
            (0x84, 0x1E | 0x18 | 0x16 | 0x24) => self.secure_admin(&c, challenge),
            _ => Err(sw::INS_NOT_SUPPORTED),
        }
    }

    fn fci(&self) -> Vec<u8> {
        let s = &self.state;
        let issuer = IssuerFile {
            asn: s.asn,
            issue_date: s.issue_date,
            expiry: s.expiry,
            card_class: s.card_class,
        }
        .to_bytes();
        fci(Some(&issuer))
    }

    fn select(&mut self, c: &Command) -> Reply {
        if c.p1 != 0x04 {
            return Err(sw::WRONG_P1P2);
        }
        self.pin_verified = false;
        if c.data != EPURSE_AID {
            self.selected = false;
            return Err(sw::FILE_NOT_FOUND);
        }
        self.selected = true;
        Ok(self.fci())
    }

    fn get_challenge(&mut self, c: &Command) -> Reply {
        let r = new_challenge(c)?;
        self.challenge = Some(r);
        Ok(r.to_vec())
    }

    fn verify_pin(&mut self, c: &Command) -> Reply {
        if (c.p1, c.p2) != (0, 0) {
            return Err(sw::WRONG_P1P2);
        }
        if !(2..=6).contains(&c.data.len()) {
            return Err(sw::WRONG_LENGTH);
        }
        self.check_pin(c.data)?;
        self.pin_verified = true;
        Ok(Vec::new())
    }

    /// Compares a presented BCD PIN, counting down tries on a mismatch.
    fn check_pin(&mut self, presented: &[u8]) -> Result<(), u16> {
        if self.state.pin_tries_left == 0 {
            return Err(sw::PIN_BLOCKED);
        }
        let expected = self.state.pin.to_bcd();
        let same = expected.len() == presented.len()
            && expected
                .iter()
                .zip(presented)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if same {
            self.state.pin_tries_left = PIN_TRIES;
            return Ok(());
        }
        self.pin_verified = false;
        self.state.pin_tries_left -= 1;
        match self.state.pin_tries_left {
            0 => Err(sw::PIN_BLOCKED),
            n => Err(sw::WRONG_PIN_BASE | u16::from(n)),
        }
    }

    fn change_pin(&mut self, c: &Command) -> Reply {
        if (c.p1, c.p2) != (0x01, 0x00) {
            return Err(sw::WRONG_P1P2);
        }
        let sep = c
            .data
            .iter()
            .position(|&b| b == 0xFF)
            .ok_or(sw::WRONG_LENGTH)?;
        let (old, new) = (&c.data[..sep], &c.data[sep + 1..]);
        if !(2..=6).contains(&old.len()) {
            return Err(sw::WRONG_LENGTH);
        }
        let new = Pin::from_bcd(new).ok_or(sw::WRONG_DATA)?;
        self.check_pin(old)?;
        self.state.pin = new;
        self.pin_verified = true;
        Ok(Vec::new())
    }

    fn get_balance(&mut self, c: &Command) -> Reply {
        if (c.p1, c.p2) != (0x00, P2_EPURSE) {
            return Err(sw::WRONG_P1P2);
        }
        if !c.data.is_empty() {
            return Err(sw::WRONG_LENGTH);
        }
        Ok(self.state.balance.to_be_bytes().to_vec())
    }

    /// Parses `keyIdx(1) amount(4) termId(6)` of INITIALIZE FOR LOAD/PURCHASE.
    fn init_fields(c: &Command) -> Result<(u32, TerminalId), u16> {
        if c.p2 != P2_EPURSE {
            return Err(sw::WRONG_P1P2);
        }
        let d: &[u8; 11] = c.data.try_into().map_err(|_| sw::WRONG_LENGTH)?;
        if d[0] != KEY_INDEX {
            return Err(sw::KEY_NOT_FOUND);
        }
        let amount = u32::from_be_bytes([d[1], d[2], d[3], d[4]]);
        Ok((amount, TerminalId(take(&d[5..11]))))
    }

    fn init_load(&mut self, c: &Command) -> Reply {
        let (amount, terminal) = Self::init_fields(c)?;
        if !self.pin_verified {
            return Err(sw::SECURITY_NOT_SATISFIED);
        }
        let s = &self.state;
        if s.online_ctr == u16::MAX {
            return Err(sw::CONDITIONS_NOT_SATISFIED);
        }
        if s.balance
            .checked_add(amount)
            .is_none_or(|b| b > s.max_balance)
        {
            return Err(sw::BALANCE_LIMIT);
        }
        let random = random4()?;
        let ses = crypto::load_session_key(&s.keys.dlk, random, s.online_ctr);
        let mac1 = crypto::load_mac1(&ses, s.balance, amount, &terminal);
        let mut out = Vec::with_capacity(16);
        out.extend_from_slice(&s.balance.to_be_bytes());
        out.extend_from_slice(&s.online_ctr.to_be_bytes());
        out.extend_from_slice(&[KEY_VERSION, ALG_ID_3DES]);
        out.extend_from_slice(&random);
        out.extend_from_slice(&mac1.0);
        self.session = Some(Session::Load {
            amount,
            terminal,
            counter: s.online_ctr,
            ses,
        });
        Ok(out)
    }

    fn credit_for_load(&mut self, c: &Command, session: Option<Session>) -> Reply {
        if (c.p1, c.p2) != (0x00, 0x00) {
            return Err(sw::WRONG_P1P2);
        }
        let d: &[u8; 11] = c.data.try_into().map_err(|_| sw::WRONG_LENGTH)?;
        let Some(Session::Load {
            amount,
            terminal,
            counter,
            ses,
        }) = session
        else {
            return Err(sw::NO_RANDOM);
        };
        let dt = BcdDateTime(take(&d[0..7]));
        let mac2 = Mac4(take(&d[7..11]));
        if !mac_eq(&mac2, &crypto::load_mac2(&ses, amount, &terminal, &dt)) {
            return Err(sw::MAC_ERROR);
        }
        let s = &mut self.state;
        let new_balance = s
            .balance
            .checked_add(amount)
            .filter(|b| *b <= s.max_balance)
            .ok_or(sw::BALANCE_LIMIT)?;
        let tac = crypto::load_tac(&s.keys.dtk, new_balance, counter, amount, &terminal, &dt);
        s.balance = new_balance;
        s.online_ctr = counter + 1;
        s.last_load = Some(Proof {
            counter,
            mac: mac2,
            tac,
        });
        self.log(TxRecord {
            counter,
            amount,
            tx_type: TxType::Load,
            terminal,
            datetime: dt,
        });
        Ok(tac.0.to_vec())
    }

    /// Response of INITIALIZE FOR PURCHASE / GREY LOCK:
    /// balance(4) offlineCtr(2) overdraft(3) keyVer(1) algId(1) random(4).
    fn offline_init_response(&self, random: [u8; 4]) -> Vec<u8> {
        let mut out = Vec::with_capacity(15);
        out.extend_from_slice(&self.state.balance.to_be_bytes());
        out.extend_from_slice(&self.state.offline_ctr.to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, KEY_VERSION, ALG_ID_3DES]);
        out.extend_from_slice(&random);
        out
    }

    fn is_grey_locked(&self) -> bool {
        self.state.grey.as_ref().is_some_and(|g| g.locked)
    }

    fn init_purchase(&mut self, c: &Command) -> Reply {
        let (amount, terminal) = Self::init_fields(c)?;
        if self.is_grey_locked() || self.state.offline_ctr == u16::MAX {
            return Err(sw::CONDITIONS_NOT_SATISFIED);
        }
        if amount > self.state.balance {
            return Err(sw::INSUFFICIENT_FUNDS);
        }
        let random = random4()?;
        self.session = Some(Session::Purchase {
            amount,
            terminal,
            counter: self.state.offline_ctr,
            random,
        });
        Ok(self.offline_init_response(random))
    }

    fn debit_for_purchase(&mut self, c: &Command, session: Option<Session>) -> Reply {
        if (c.p1, c.p2) != (0x01, 0x00) {
            return Err(sw::WRONG_P1P2);
        }
        let d: &[u8; 15] = c.data.try_into().map_err(|_| sw::WRONG_LENGTH)?;
        let Some(Session::Purchase {
            amount,
            terminal,
            counter,
            random,
        }) = session
        else {
            return Err(sw::NO_RANDOM);
        };
        let term_seq = u32::from_be_bytes(take(&d[0..4]));
        let dt = BcdDateTime(take(&d[4..11]));
        let mac1 = Mac4(take(&d[11..15]));
        let s = &mut self.state;
        let ses = crypto::purchase_session_key(&s.keys.dpk, random, counter, term_seq);
        let expected = crypto::debit_mac1(&ses, amount, TxType::Purchase, &terminal, &dt);
        if !mac_eq(&mac1, &expected) {
            return Err(sw::MAC_ERROR);
        }
        s.balance = s
            .balance
            .checked_sub(amount)
            .ok_or(sw::INSUFFICIENT_FUNDS)?;
        s.offline_ctr = counter + 1;
        let tac = crypto::debit_tac(
            &s.keys.dtk,
            amount,
            TxType::Purchase,
            &terminal,
            term_seq,
            &dt,
        );
        let mac2 = crypto::debit_mac2(&ses, amount);
        s.last_offline = Some(Proof {
            counter,
            mac: mac2,
            tac,
        });
        self.log(TxRecord {
            counter,
            amount,
            tx_type: TxType::Purchase,
            terminal,
            datetime: dt,
        });
        Ok([tac.0, mac2.0].concat())
    }

    fn get_transaction_prove(&mut self, c: &Command) -> Reply {
        let d: &[u8; 2] = c.data.try_into().map_err(|_| sw::WRONG_LENGTH)?;
        let counter = u16::from_be_bytes(*d);
        let proof = match (c.p1, c.p2) {
            (0x00, 0x02) => &self.state.last_load,
            (0x00, 0x06) => &self.state.last_offline,
            _ => return Err(sw::WRONG_P1P2),
        };
        match proof {
            Some(p) if p.counter == counter => Ok([p.mac.0, p.tac.0].concat()),
            _ => Err(sw::RECORD_NOT_FOUND),
        }
    }

    fn read_record(&mut self, c: &Command) -> Reply {
        if c.p2 != P2_TX_LOG {
            return Err(sw::WRONG_P1P2);
        }
        if !c.data.is_empty() {
            return Err(sw::WRONG_LENGTH);
        }
        let idx = usize::from(c.p1).checked_sub(1).ok_or(sw::WRONG_P1P2)?;
        self.state
            .log
            .get(idx)
            .map(|r| r.to_bytes().to_vec())
            .ok_or(sw::RECORD_NOT_FOUND)
    }

    fn init_grey_lock(&mut self, c: &Command) -> Reply {
        if (c.p1, c.p2) != (0x08, P2_EPURSE) {
            return Err(sw::WRONG_P1P2);
        }
        let d: &[u8; 7] = c.data.try_into().map_err(|_| sw::WRONG_LENGTH)?;
        if d[0] != KEY_INDEX {
            return Err(sw::KEY_NOT_FOUND);
        }
        if self.is_grey_locked() || self.state.offline_ctr >= u16::MAX - 1 {
            return Err(sw::CONDITIONS_NOT_SATISFIED);
        }
        let random = random4()?;
        self.session = Some(Session::GreyLock {
            terminal: TerminalId(take(&d[1..7])),
            counter: self.state.offline_ctr,
            random,
        });
        Ok(self.offline_init_response(random))
    }

    fn grey_lock(&mut self, c: &Command, session: Option<Session>) -> Reply {
        if (c.p1, c.p2) != (0x08, 0x00) {
            return Err(sw::WRONG_P1P2);
        }
        // termSeq(4) termRandom(4) datetime(7) MAC1(4); the terminal random is part of
        // the published layout but takes no part in cardmesh's MACs.
        let d: &[u8; 19] = c.data.try_into().map_err(|_| sw::WRONG_LENGTH)?;
        let Some(Session::GreyLock {
            terminal,
            counter,
            random,
        }) = session
        else {
            return Err(sw::NO_RANDOM);
        };
        let term_seq = u32::from_be_bytes(take(&d[0..4]));
        let dt = BcdDateTime(take(&d[8..15]));
        let mac1 = Mac4(take(&d[15..19]));
        let s = &mut self.state;
        let ses = crypto::purchase_session_key(&s.keys.dpk, random, counter, term_seq);
        if !mac_eq(
            &mac1,
            &crypto::debit_mac1(&ses, 0, TxType::GreyLock, &terminal, &dt),
        ) {
            return Err(sw::MAC_ERROR);
        }
        let gtac = crypto::debit_tac(&s.keys.dtk, 0, TxType::GreyLock, &terminal, term_seq, &dt);
        let mac2 = crypto::debit_mac2(&ses, 0);
        s.grey = Some(GreyRecord {
            locked: true,
            balance: s.balance,
            counter,
            terminal,
            term_seq,
            datetime: dt,
            gtac,
        });
        s.offline_ctr = counter + 1;
        s.last_offline = Some(Proof {
            counter,
            mac: mac2,
            tac: gtac,
        });
        self.log(TxRecord {
            counter,
            amount: 0,
            tx_type: TxType::GreyLock,
            terminal,
            datetime: dt,
        });
        Ok([gtac.0, mac2.0].concat())
    }

    fn debit_for_unlock(&mut self, c: &Command) -> Reply {
        if (c.p1, c.p2) != (0x08, P2_EPURSE) {
            return Err(sw::WRONG_P1P2);
        }
        let d: &[u8; 27] = c.data.try_into().map_err(|_| sw::WRONG_LENGTH)?;
        let amount = u32::from_be_bytes(take(&d[0..4]));
        let counter = u16::from_be_bytes(take(&d[4..6]));
        let terminal = TerminalId(take(&d[6..12]));
        let term_seq = u32::from_be_bytes(take(&d[12..16]));
        let dt = BcdDateTime(take(&d[16..23]));
        let gmac = Mac4(take(&d[23..27]));
        let s = &mut self.state;
        let gtac = match &s.grey {
            Some(g) if g.locked => g.gtac,
            _ => return Err(sw::CONDITIONS_NOT_SATISFIED),
        };
        if counter != s.offline_ctr {
            return Err(sw::CONDITIONS_NOT_SATISFIED);
        }
        if amount > s.balance {
            return Err(sw::INSUFFICIENT_FUNDS);
        }
        let ses = crypto::unlock_session_key(&s.keys.dpk, gtac, counter, term_seq);
        let expected = crypto::debit_mac1(&ses, amount, TxType::UnlockDebit, &terminal, &dt);
        if !mac_eq(&gmac, &expected) {
            return Err(sw::MAC_ERROR);
        }
        let tac = crypto::debit_tac(
            &s.keys.dtk,
            amount,
            TxType::UnlockDebit,
            &terminal,
            term_seq,
            &dt,
        );
        s.balance -= amount;
        s.offline_ctr = counter + 1;
        if let Some(g) = s.grey.as_mut() {
            g.locked = false;
        }
        s.last_offline = Some(Proof {
            counter,
            mac: gmac,
            tac,
        });
        self.log(TxRecord {
            counter,
            amount,
            tx_type: TxType::UnlockDebit,
            terminal,
            datetime: dt,
        });
        Ok(tac.0.to_vec())
    }

    fn grey_status(&mut self, c: &Command) -> Reply {
        if (c.p1, c.p2) != (0x00, 0x00) {
            return Err(sw::WRONG_P1P2);
        }
        if !c.data.is_empty() {
            return Err(sw::WRONG_LENGTH);
        }
        let mut out = vec![0u8; 30];
        if let Some(g) = &self.state.grey {
            out[0] = u8::from(g.locked);
            out[1..5].copy_from_slice(&g.balance.to_be_bytes());
            out[5..7].copy_from_slice(&g.counter.to_be_bytes());
            out[7] = KEY_VERSION;
            out[8] = ALG_ID_3DES;
            out[9..15].copy_from_slice(&g.terminal.0);
            out[15..19].copy_from_slice(&g.term_seq.to_be_bytes());
            out[19..26].copy_from_slice(&g.datetime.0);
            out[26..30].copy_from_slice(&g.gtac.0);
        }
        Ok(out)
    }

    fn secure_admin(&mut self, c: &Command, challenge: Option<[u8; 4]>) -> Reply {
        let mac = Mac4(c.data.try_into().map_err(|_| sw::WRONG_LENGTH)?);
        let challenge = challenge.ok_or(sw::NO_RANDOM)?;
        let key = if c.ins == 0x24 {
            &self.state.keys.dpuk
        } else {
            &self.state.keys.damk
        };
        if !mac_eq(&mac, &admin_mac(key, challenge, c.ins, c.p1, c.p2)) {
            return Err(sw::MAC_ERROR);
        }
        match c.ins {
            0x1E => self.state.app_blocked = true,
            0x18 => self.state.app_blocked = false,
            0x16 => self.state.card_blocked = true,
            _ => self.state.pin_tries_left = PIN_TRIES,
        }
        Ok(Vec::new())
    }

    fn log(&mut self, r: TxRecord) {
        self.state.log.push_front(r);
        self.state.log.truncate(TX_LOG_LEN);
    }
}

/// Secure-messaging MAC of an administrative command `84 INS P1 P2 04 MAC`:
/// ISO 9797-1 alg. 3 under the 16-byte key, IV = challenge || 00000000.
pub fn admin_mac(key: &Key16, challenge: [u8; 4], ins: u8, p1: u8, p2: u8) -> Mac4 {
    let mut iv = [0u8; 8];
    iv[..4].copy_from_slice(&challenge);
    key.mac_alg3(iv, &[0x84, ins, p1, p2, 0x04])
}

fn take<const N: usize>(s: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(s);
    a
}

/// 4 random bytes from the OS; a chip whose RNG fails refuses the command.
pub(crate) fn random4() -> Result<[u8; 4], u16> {
    let mut r = [0u8; 4];
    getrandom::fill(&mut r).map_err(|_| sw::MEMORY_FAILURE)?;
    Ok(r)
}

/// The challenge a GET CHALLENGE (`00 84 00 00 04`) asks for, blank chip or card alike.
pub(crate) fn new_challenge(c: &Command) -> Result<[u8; 4], u16> {
    if c.le != Some(4) || !c.data.is_empty() {
        return Err(sw::WRONG_LENGTH);
    }
    random4()
}

/// The FCI of the e-purse: `6F [84 AID] [A5 [9F0C issuer file]]`; a blank chip has no
/// issuer file yet and answers only `6F [84 AID]`.
fn fci(issuer: Option<&[u8; 30]>) -> Vec<u8> {
    let mut body = vec![0x84, EPURSE_AID.len() as u8];
    body.extend_from_slice(EPURSE_AID);
    if let Some(issuer) = issuer {
        let mut a5 = vec![0x9F, 0x0C, issuer.len() as u8];
        a5.extend_from_slice(issuer);
        body.push(0xA5);
        body.push(a5.len() as u8);
        body.extend_from_slice(&a5);
    }
    let mut fci = vec![0x6F, body.len() as u8];
    fci.extend_from_slice(&body);
    fci
}

impl ApduProcessor for VirtualCard {
    fn atr(&self) -> Vec<u8> {
        atr_with_history(b"CMEPURSE")
    }

    fn reset(&mut self) {
        match &mut self.chip {
            Chip::Personalized(app) => {
                app.selected = false;
                app.pin_verified = false;
                app.session = None;
                app.challenge = None;
            }
            Chip::Blank(blank) => blank.reset(),
        }
    }

    fn process(&mut self, c_apdu: &[u8]) -> Vec<u8> {
        let app = match &mut self.chip {
            Chip::Personalized(app) => app,
            Chip::Blank(_) => return self.process_blank(c_apdu),
        };
        let before = app.state.clone();
        let (mut out, sw) = app.dispatch(c_apdu);
        if app.state != before
            && let Some(path) = &self.file
            && persist::save(path, MAGIC, &app.state).is_err()
        {
            // The chip could not write its memory: roll back so the answer and the
            // stored state agree, and tell the terminal nothing happened.
            app.state = before;
            app.session = None;
            return sw::MEMORY_FAILURE.to_be_bytes().to_vec();
        }
        out.extend_from_slice(&sw.to_be_bytes());
        out
    }
}
