//! Primary issue at an issuing node: a blank chip from the manufacturer becomes a
//! cardmesh card. The node picks the card number ([`card_numbers`], durable before it is
//! used), derives the card's keys from the master keys, writes them and the issuer file
//! under the batch's transport key, ends personalization, and records the card in the
//! registry (`CardChange::Personalized`, status blank: ready for a secondary issue).
//!
//! A chip pulled mid-way is still blank (the card writes nothing permanent until END
//! PERSONALIZATION): personalizing it again starts over with a fresh number; the number
//! of the attempt that failed is simply never used.

use super::card_numbers::{self, card_number};
use super::operators::Operation;
use super::terminal::{Pos, PosError, card_asn, fen_u32};
use cardmesh_drivers::card::Personalization;
use cardmesh_drivers::epurse::{EPurse, EpurseError};
use cardmesh_drivers::reader::{CardReader, ReaderError};
use cardmesh_drivers::types::{Asn, ChipSerial, Pin};
use cardmesh_model::body::{Body, CardChange, CardEvent, EntryRef};
use cardmesh_model::{BusinessDay, CardAsn, MemberClass};

/// The chip's class byte. The member class (which prices and discounts follow) lives in
/// the network's card registry, which the chip's one byte cannot name; every cardmesh
/// customer card carries 01.
pub const CHIP_CARD_CLASS: u8 = 0x01;

/// What the issuer chose for a new card.
#[derive(Clone, Debug)]
pub struct CardOrder {
    pub class: MemberClass,
    pub expiry: BusinessDay,
    /// The initial cardholder PIN (the holder changes it with `change-pin`).
    pub pin: Pin,
}

/// A card made from a blank chip.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Personalized {
    pub asn: CardAsn,
    pub serial: ChipSerial,
    /// The registry entry recording the primary issue.
    pub entry: EntryRef,
}

/// `YYYYMMDD` of a day as the card's 4 BCD bytes.
fn bcd_day(d: BusinessDay) -> [u8; 4] {
    let n = d.ymd();
    let digit = |i: u32| (n / 10u32.pow(7 - i) % 10) as u8;
    [0, 2, 4, 6].map(|i| (digit(i) << 4) | digit(i + 1))
}

impl Pos {
    /// Personalizes the blank chip presented (primary issue). Needs every master key
    /// (HQ) and the transport key of the chip's batch (`cardmesh keys
    /// import-transport`).
    pub fn personalize<R: CardReader>(
        &self,
        purse: &mut EPurse<R>,
        order: &CardOrder,
    ) -> Result<Personalized, PosError> {
        const WHAT: &str = "personalization";
        let session = self.authorize(Operation::Personalize)?;
        let masters = self.keys.masters.as_ref().ok_or(PosError::MissingKey(
            "card master (only HQ personalizes cards)",
        ))?;
        let transport = self
            .keys
            .transport
            .as_ref()
            .ok_or(PosError::Keys(crate::keys::KeyError::NoTransportKey))?;
        match purse.select() {
            Err(EpurseError::NotPersonalized) => {}
            Ok(info) => {
                self.refused(&session.operator, WHAT, "card already personalized")?;
                return Err(PosError::AlreadyPersonalized(card_asn(&info)));
            }
            Err(EpurseError::ApplicationBlocked { asn: Some(asn) }) => {
                self.refused(&session.operator, WHAT, "card already personalized")?;
                return Err(PosError::AlreadyPersonalized(CardAsn(asn.0)));
            }
            Err(e) => return Err(e.into()),
        }
        let status = purse.chip_status()?;
        if status.locked {
            self.refused(&session.operator, WHAT, "transport key locked")?;
            return Err(EpurseError::TransportLocked.into());
        }
        let today = self.today();
        if order.expiry <= today {
            return Err(PosError::ExpiryNotAhead(order.expiry));
        }
        let limits = &self.docs.registry.limits;
        let max_balance = fen_u32(limits.named_max_balance.max(limits.anonymous_max_balance))?;
        let asn = self.next_card_number()?;
        let chip_asn = Asn(asn.0);
        let p = Personalization {
            asn: chip_asn,
            keys: masters.card_keys(&chip_asn),
            pin: order.pin.clone(),
            issue_date: bcd_day(today),
            expiry: bcd_day(order.expiry),
            card_class: CHIP_CARD_CLASS,
            max_balance,
        };
        match purse.personalize(transport, &p) {
            Ok(()) => {}
            Err(EpurseError::Reader(ReaderError::CardRemoved | ReaderError::CardReset)) => {
                return Err(PosError::PersonalizationInterrupted);
            }
            Err(e) => {
                if matches!(e, EpurseError::WrongTransportKey { .. }) {
                    self.refused(&session.operator, WHAT, "wrong transport key")?;
                }
                return Err(e.into());
            }
        }
        let entry = self.store.append_local(Body::CardRegistry(CardEvent {
            asn,
            change: CardChange::Personalized {
                class: order.class.clone(),
                expiry: order.expiry,
                issuer: self.site.clone(),
            },
        }))?;
        Ok(Personalized {
            asn,
            serial: status.serial,
            entry: entry.entry_ref(),
        })
    }

    /// The next card number of this terminal, skipping any the registry already knows
    /// (a card number given out by hand before this scheme).
    fn next_card_number(&self) -> Result<CardAsn, PosError> {
        loop {
            let n = self
                .store
                .next_counter(&card_numbers::counter_name(self.terminal))?;
            let asn = card_number(self.terminal, n)
                .ok_or(PosError::CardNumbersExhausted(self.terminal))?;
            if self.store.card(&asn)?.is_none() {
                return Ok(asn);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_is_written_as_bcd() {
        let d = BusinessDay {
            year: 2031,
            month: 12,
            day: 9,
        };
        assert_eq!(bcd_day(d), [0x20, 0x31, 0x12, 0x09]);
    }
}
