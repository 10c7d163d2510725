//! A blank chip (life cycle "pre-personalization"): the sans-IO processor of the
//! personalization commands, with what has been written so far as persistent state.
//! The commands and status words are in the [`super`] module doc; the layouts and the
//! secure messaging in [`crate::perso`].
//!
//! Writes go to the blank state only; nothing becomes a card until END
//! PERSONALIZATION finds every key and file written and hands back a
//! [`Personalization`], which the card turns into exactly the state a card made from it
//! directly has. Authentication is volatile, so a chip pulled mid-way must be
//! authenticated again and can be personalized again from the start.

use serde::{Deserialize, Serialize};

use super::{Personalization, Reply, fci, new_challenge, take};
use crate::apdu::Command;
use crate::constants::{EPURSE_AID, TRANSPORT_TRIES, sw};
use crate::crypto::Key16;
use crate::keys::CardKeys;
use crate::perso::{
    self, ChipStatus, IssuerFile, KeyType, SFI_ISSUER, SFI_PURSE_PARAMS, TAG_PERSO_STATUS,
    WRITTEN_ISSUER_FILE, WRITTEN_PURSE_PARAMS,
};
use crate::types::{ChipSerial, Mac4, Pin};

/// What a blank chip keeps across power cycles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct BlankState {
    serial: ChipSerial,
    transport: Key16,
    tries_left: u8,
    dpk: Option<Key16>,
    dlk: Option<Key16>,
    dtk: Option<Key16>,
    dpuk: Option<Key16>,
    damk: Option<Key16>,
    pin: Option<Pin>,
    issuer: Option<IssuerFile>,
    max_balance: Option<u32>,
}

impl BlankState {
    fn key_slot(&mut self, t: KeyType) -> Option<&mut Option<Key16>> {
        match t {
            KeyType::Purchase => Some(&mut self.dpk),
            KeyType::Load => Some(&mut self.dlk),
            KeyType::Tac => Some(&mut self.dtk),
            KeyType::PinUnblock => Some(&mut self.dpuk),
            KeyType::Maintenance => Some(&mut self.damk),
            KeyType::Pin => None,
        }
    }

    fn written(&self) -> u8 {
        let keys = [
            (KeyType::Purchase, self.dpk.is_some()),
            (KeyType::Load, self.dlk.is_some()),
            (KeyType::Tac, self.dtk.is_some()),
            (KeyType::PinUnblock, self.dpuk.is_some()),
            (KeyType::Maintenance, self.damk.is_some()),
            (KeyType::Pin, self.pin.is_some()),
        ];
        let files = [
            (WRITTEN_ISSUER_FILE, self.issuer.is_some()),
            (WRITTEN_PURSE_PARAMS, self.max_balance.is_some()),
        ];
        keys.iter()
            .map(|(t, w)| (t.bit(), *w))
            .chain(files)
            .filter(|(_, w)| *w)
            .fold(0, |acc, (bit, _)| acc | bit)
    }

    /// Everything END PERSONALIZATION needs, or `None` if something is missing.
    fn complete(&self) -> Option<Personalization> {
        let issuer = self.issuer?;
        Some(Personalization {
            asn: issuer.asn,
            keys: CardKeys {
                dpk: self.dpk.clone()?,
                dlk: self.dlk.clone()?,
                dtk: self.dtk.clone()?,
                dpuk: self.dpuk.clone()?,
                damk: self.damk.clone()?,
            },
            pin: self.pin.clone()?,
            issue_date: issuer.issue_date,
            expiry: issuer.expiry,
            card_class: issuer.card_class,
            max_balance: self.max_balance?,
        })
    }
}

/// What a command did.
pub(super) enum Step {
    /// Answer with this data and 9000.
    Answer(Vec<u8>),
    /// END PERSONALIZATION succeeded: the chip is now this card.
    Personalized(Personalization),
}

/// A blank chip: persistent state and the volatile selection and authentication.
pub(super) struct Blank {
    pub(super) state: BlankState,
    selected: bool,
    authenticated: bool,
    challenge: Option<[u8; 4]>,
}

impl Blank {
    pub(super) fn new(serial: ChipSerial, transport: Key16) -> Blank {
        Blank::from_state(BlankState {
            serial,
            transport,
            tries_left: TRANSPORT_TRIES,
            dpk: None,
            dlk: None,
            dtk: None,
            dpuk: None,
            damk: None,
            pin: None,
            issuer: None,
            max_balance: None,
        })
    }

    pub(super) fn from_state(state: BlankState) -> Blank {
        Blank {
            state,
            selected: false,
            authenticated: false,
            challenge: None,
        }
    }

    /// Power cycle: selection, authentication and challenge are forgotten.
    pub(super) fn reset(&mut self) {
        self.selected = false;
        self.authenticated = false;
        self.challenge = None;
    }

    pub(super) fn process(&mut self, raw: &[u8]) -> Result<Step, u16> {
        // A challenge is good for the one command that follows it.
        let challenge = self.challenge.take();
        let c = Command::parse(raw).ok_or(sw::WRONG_LENGTH)?;
        let answer = |r: Reply| r.map(Step::Answer);
        match (c.cla, c.ins) {
            (0x00, 0xA4) => return answer(self.select(&c)),
            (0x00, 0x84) => return answer(self.get_challenge(&c)),
            (0x00 | 0x04 | 0x80 | 0x84 | 0xE0, _) => {}
            _ => return Err(sw::CLA_NOT_SUPPORTED),
        }
        if !self.selected {
            return Err(sw::CONDITIONS_NOT_SATISFIED);
        }
        match (c.cla, c.ins) {
            (0x80, 0xCA) => answer(self.get_data(&c)),
            (0x00, 0x82) => answer(self.external_authenticate(&c, challenge)),
            (0x84, 0xD4) => answer(self.write_key(&c, challenge)),
            (0x04, 0xD6) => answer(self.update_binary(&c, challenge)),
            (0x84, 0xF0) => self.end_personalization(&c, challenge),
            // Every e-purse command (money, PIN, log, grey lock, block) waits for
            // personalization.
            _ => Err(sw::CONDITIONS_NOT_SATISFIED),
        }
    }

    fn select(&mut self, c: &Command) -> Reply {
        if c.p1 != 0x04 {
            return Err(sw::WRONG_P1P2);
        }
        self.authenticated = false;
        self.selected = c.data == EPURSE_AID;
        if !self.selected {
            return Err(sw::FILE_NOT_FOUND);
        }
        Ok(fci(None))
    }

    fn get_challenge(&mut self, c: &Command) -> Reply {
        let r = new_challenge(c)?;
        self.challenge = Some(r);
        Ok(r.to_vec())
    }

    fn get_data(&self, c: &Command) -> Reply {
        if [c.p1, c.p2] != TAG_PERSO_STATUS {
            return Err(sw::DATA_NOT_FOUND);
        }
        let s = &self.state;
        Ok(ChipStatus {
            serial: s.serial,
            locked: s.tries_left == 0,
            tries_left: s.tries_left,
            written: s.written(),
        }
        .to_bytes()
        .to_vec())
    }

    fn external_authenticate(&mut self, c: &Command, challenge: Option<[u8; 4]>) -> Reply {
        if (c.p1, c.p2) != (0x00, 0x00) {
            return Err(sw::WRONG_P1P2);
        }
        let cryptogram: &[u8; 8] = c.data.try_into().map_err(|_| sw::WRONG_LENGTH)?;
        if self.state.tries_left == 0 {
            return Err(sw::AUTH_BLOCKED);
        }
        let challenge = challenge.ok_or(sw::NO_RANDOM)?;
        let expected = perso::auth_cryptogram(&self.state.transport, challenge);
        let same = expected
            .iter()
            .zip(cryptogram)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
        if same {
            self.state.tries_left = TRANSPORT_TRIES;
            self.authenticated = true;
            return Ok(Vec::new());
        }
        self.authenticated = false;
        self.state.tries_left -= 1;
        match self.state.tries_left {
            0 => Err(sw::AUTH_BLOCKED),
            n => Err(sw::WRONG_CRYPTOGRAM_BASE | u16::from(n)),
        }
    }

    /// Checks a secure-messaging command (`data MAC`) and returns its data.
    fn open_secure<'c>(
        &self,
        c: &Command<'c>,
        challenge: Option<[u8; 4]>,
    ) -> Result<&'c [u8], u16> {
        if !self.authenticated {
            return Err(sw::SECURITY_NOT_SATISFIED);
        }
        let challenge = challenge.ok_or(sw::NO_RANDOM)?;
        let split = c.data.len().checked_sub(4).ok_or(sw::WRONG_LENGTH)?;
        let (data, mac) = c.data.split_at(split);
        let expected = perso::sm_mac(
            &self.state.transport,
            challenge,
            [c.cla, c.ins, c.p1, c.p2],
            data,
        );
        if !crate::crypto::mac_eq(&Mac4(take(mac)), &expected) {
            return Err(sw::SM_MAC_INCORRECT);
        }
        Ok(data)
    }

    fn write_key(&mut self, c: &Command, challenge: Option<[u8; 4]>) -> Reply {
        let data = self.open_secure(c, challenge)?;
        if c.p1 != 0x00 {
            return Err(sw::WRONG_P1P2);
        }
        let t = KeyType::from_code(c.p2).ok_or(sw::DATA_NOT_FOUND)?;
        let value = perso::unwrap_key(&self.state.transport, data).ok_or(sw::WRONG_DATA)?;
        match self.state.key_slot(t) {
            Some(slot) => {
                let key: [u8; 16] = value.as_slice().try_into().map_err(|_| sw::WRONG_DATA)?;
                *slot = Some(Key16::from_bytes(key));
            }
            None => self.state.pin = Some(Pin::from_bcd(&value).ok_or(sw::WRONG_DATA)?),
        }
        Ok(Vec::new())
    }

    fn update_binary(&mut self, c: &Command, challenge: Option<[u8; 4]>) -> Reply {
        let data = self.open_secure(c, challenge)?;
        // Whole files only: P1 = 80 | SFI, offset 0.
        if c.p1 & 0x80 == 0 || c.p2 != 0 {
            return Err(sw::WRONG_P1P2);
        }
        match c.p1 & 0x1F {
            SFI_ISSUER => {
                if data.len() != 30 {
                    return Err(sw::WRONG_LENGTH);
                }
                self.state.issuer = Some(IssuerFile::parse_strict(data).ok_or(sw::WRONG_DATA)?);
            }
            SFI_PURSE_PARAMS => {
                let max: [u8; 4] = data.try_into().map_err(|_| sw::WRONG_LENGTH)?;
                self.state.max_balance = Some(u32::from_be_bytes(max));
            }
            _ => return Err(sw::FILE_NOT_FOUND),
        }
        Ok(Vec::new())
    }

    fn end_personalization(
        &mut self,
        c: &Command,
        challenge: Option<[u8; 4]>,
    ) -> Result<Step, u16> {
        if !self.open_secure(c, challenge)?.is_empty() {
            return Err(sw::WRONG_LENGTH);
        }
        if (c.p1, c.p2) != (0x40, 0x0F) {
            return Err(sw::WRONG_P1P2);
        }
        self.state
            .complete()
            .map(Step::Personalized)
            .ok_or(sw::CONDITIONS_NOT_SATISFIED)
    }
}
