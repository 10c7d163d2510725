//! Primary issue at an issuing node: a blank chip from the manufacturer becomes a
//! cardmesh card. The node picks the card number ([`card_numbers`], durable before it is
//! used), derives the card's keys from the master keys, writes them and the issuer file
//! under the batch's transport key, ends personalization, and records the card in the
//! registry (`CardChange::Personalized`, status blank: ready for a secondary issue).
//!
//! A chip pulled mid-way is still blank (the card writes nothing permanent until END
//! PERSONALIZATION): personalizing it again starts over with a fresh number; the number
//! of the attempt that failed is simply never used. If the node dies after the chip
//! ended personalization but before the registry entry, presenting the chip again at
//! the same terminal records it (the chip carries one of this terminal's numbers that
//! the registry does not know).

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
    /// The chip's serial; `None` when an interrupted personalization was only recorded.
    pub serial: Option<ChipSerial>,
    /// The registry entry recording the primary issue.
    pub entry: EntryRef,
}

/// `YYYYMMDD` of a day as the card's 4 BCD bytes.
fn bcd_day(d: BusinessDay) -> [u8; 4] {
    let n = d.ymd();
    let digit = |i: u32| (n / 10u32.pow(7 - i) % 10) as u8;
    [0, 2, 4, 6].map(|i| (digit(i) << 4) | digit(i + 1))
}

/// The day of the card's 4 BCD bytes `YYYYMMDD`; `None` if they are not BCD.
fn day_of_bcd(b: [u8; 4]) -> Option<BusinessDay> {
    let n = b.iter().try_fold(0u32, |acc, x| {
        let (hi, lo) = (x >> 4, x & 0x0F);
        (hi <= 9 && lo <= 9).then(|| acc * 100 + u32::from(hi) * 10 + u32::from(lo))
    })?;
    Some(BusinessDay {
        year: (n / 10_000) as u16,
        month: (n / 100 % 100) as u8,
        day: (n % 100) as u8,
    })
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
            Ok(info) if self.interrupted_here(card_asn(&info))? => {
                // The chip is the truth about what was written into it.
                let expiry = day_of_bcd(info.expiry).unwrap_or(order.expiry);
                return self.record(card_asn(&info), None, &order.class, expiry);
            }
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
        self.stops.at("personalize:chip-done");
        self.record(asn, Some(status.serial), &order.class, order.expiry)
    }

    /// Records the primary issue in the registry.
    fn record(
        &self,
        asn: CardAsn,
        serial: Option<ChipSerial>,
        class: &MemberClass,
        expiry: BusinessDay,
    ) -> Result<Personalized, PosError> {
        let entry = self.store.append_local(Body::CardRegistry(CardEvent {
            asn,
            change: CardChange::Personalized {
                class: class.clone(),
                expiry,
                issuer: self.site.clone(),
            },
        }))?;
        Ok(Personalized {
            asn,
            serial,
            entry: entry.entry_ref(),
        })
    }

    /// Whether a personalized chip is one this terminal made whose registry entry was
    /// never written (the node died in between).
    fn interrupted_here(&self, asn: CardAsn) -> Result<bool, PosError> {
        let last = self
            .store
            .counter(&card_numbers::counter_name(self.terminal))?;
        Ok(card_numbers::is_numbered_by(asn, self.terminal, last)
            && self.store.card(&asn)?.is_none())
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
    fn day_is_written_and_read_as_bcd() {
        let d = BusinessDay {
            year: 2031,
            month: 12,
            day: 9,
        };
        assert_eq!(bcd_day(d), [0x20, 0x31, 0x12, 0x09]);
        assert_eq!(day_of_bcd(bcd_day(d)), Some(d));
        assert_eq!(day_of_bcd([0x20, 0x3A, 0x12, 0x09]), None);
    }
}
