//! The network registry and the network price book as HQ keeps them: sites, terminals,
//! operators, limits, products and network prices. Every node reads them (the POS logs
//! operators in at terminals registered to its site, prices baskets and enforces the
//! limits); only HQ writes them, as document changes that spread like any entry. The
//! checks are pure functions of the documents as they stand (`check_*`); each `set_*`
//! reads them, checks, and writes one change.

use super::report::{price_book, registry};
use super::{HqError, require_hq};
use crate::pos::operators::{OperatorRole, pin_verifier};
use crate::store::Store;
use cardmesh_model::docs::discounts::{self, Discounts, TimeSlot};
use cardmesh_model::docs::network::{self, Limits, NetworkRegistry, OperatorInfo, SiteInfo};
use cardmesh_model::docs::pricebook::{self, PriceBook, Product};
use cardmesh_model::docs::{DocName, merchants};
use cardmesh_model::money::Money;
use cardmesh_model::{CardAsn, MemberClass, OperatorId, ProductId, SiteId, TerminalId};

/// Minutes east of UTC that a site's clock may be: UTC-12:00 to UTC+14:00.
const UTC_OFFSETS: std::ops::RangeInclusive<i32> = -720..=840;
/// Operator PINs are typed on a keypad: digits, and no shorter than a card's.
const PIN_DIGITS: std::ops::RangeInclusive<usize> = 4..=12;

/// Why HQ's change to the registry or the price book is refused.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("{0} must not be empty")]
    Empty(&'static str),
    #[error(
        "UTC offset {0} min is not a time zone: give minutes east of UTC, -720 to 840 (480 for China)"
    )]
    BadOffset(i32),
    #[error("site {0} is not registered: add it first with `cardmesh registry site`")]
    UnknownSite(SiteId),
    #[error("{0}")]
    BadRole(String),
    #[error("an operator PIN is 4 to 12 digits")]
    BadPin,
    #[error("operator {0} is new: give a PIN (--pin) or an operator card (--card) to log in with")]
    NoLogin(OperatorId),
    #[error("there is no operator {0}")]
    UnknownOperator(OperatorId),
    #[error("card {card} is already operator {holder}'s operator card")]
    CardTaken { card: CardAsn, holder: OperatorId },
    #[error("limits: {0}")]
    BadLimits(&'static str),
    #[error("product {0} is not in the price book: add it first with `cardmesh registry product`")]
    UnknownProduct(ProductId),
    #[error("a price must be more than zero")]
    BadPrice,
    #[error("'{0}' is not a time of day: give hh:mm, 00:00 to 23:59")]
    BadTime(String),
    #[error("a discounted price is 1 to 100 percent of the list price, not {0}")]
    BadPercent(u8),
    #[error("class {class} has no discount for {slot}")]
    NoSuchDiscount { class: MemberClass, slot: String },
}

pub fn check_site(info: &SiteInfo) -> Result<(), Refusal> {
    if info.name.trim().is_empty() {
        return Err(Refusal::Empty("a site's name"));
    }
    if !UTC_OFFSETS.contains(&info.utc_offset_min) {
        return Err(Refusal::BadOffset(info.utc_offset_min));
    }
    Ok(())
}

pub fn check_operator(
    reg: &NetworkRegistry,
    id: &OperatorId,
    info: &OperatorInfo,
    pin: Option<&str>,
    card: Option<&CardAsn>,
) -> Result<(), Refusal> {
    if info.name.trim().is_empty() {
        return Err(Refusal::Empty("an operator's name"));
    }
    info.role
        .parse::<OperatorRole>()
        .map_err(Refusal::BadRole)?;
    known_site(reg, &info.site)?;
    if !reg.operators.contains_key(id) && pin.is_none() && card.is_none() {
        return Err(Refusal::NoLogin(id.clone()));
    }
    if let Some(pin) = pin
        && !(PIN_DIGITS.contains(&pin.len()) && pin.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(Refusal::BadPin);
    }
    if let Some(card) = card
        && let Some(holder) = reg.operator_cards.get(card)
        && holder != id
    {
        return Err(Refusal::CardTaken {
            card: *card,
            holder: holder.clone(),
        });
    }
    Ok(())
}

pub fn check_limits(l: &Limits) -> Result<(), Refusal> {
    let all = [
        l.anonymous_max_balance,
        l.named_max_balance,
        l.pin_above,
        l.max_per_transaction,
        l.max_per_card_per_day,
    ];
    if all.iter().any(|m| m.fen() <= 0) {
        return Err(Refusal::BadLimits("every limit must be more than zero"));
    }
    if l.anonymous_max_balance > l.named_max_balance {
        return Err(Refusal::BadLimits(
            "an anonymous card may not hold more than a named one",
        ));
    }
    if l.max_per_transaction > l.max_per_card_per_day {
        return Err(Refusal::BadLimits(
            "one transaction may not exceed a card's daily limit",
        ));
    }
    Ok(())
}

pub fn check_product(p: &Product) -> Result<(), Refusal> {
    if p.name.trim().is_empty() {
        return Err(Refusal::Empty("a product's name"));
    }
    if p.unit.trim().is_empty() {
        return Err(Refusal::Empty("a product's unit"));
    }
    Ok(())
}

pub fn check_price(book: &PriceBook, id: &ProductId, price: Money) -> Result<(), Refusal> {
    if !book.products.contains_key(id) {
        return Err(Refusal::UnknownProduct(id.clone()));
    }
    if price.fen() <= 0 {
        return Err(Refusal::BadPrice);
    }
    Ok(())
}

/// Minutes since local midnight of a time of day written `hh:mm`.
pub fn minute_of_day(text: &str) -> Result<u16, Refusal> {
    let bad = || Refusal::BadTime(text.to_string());
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 23 || m > 59 || text.len() != 5 {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// A time slot as people read it: `22:00-06:00`, or `all day`.
pub fn slot_text(slot: TimeSlot) -> String {
    if slot.start_min == slot.end_min {
        return "all day".into();
    }
    let hm = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
    format!("{}-{}", hm(slot.start_min), hm(slot.end_min))
}

pub fn check_discount(paid_percent: u8) -> Result<(), Refusal> {
    if (1..=100).contains(&paid_percent) {
        Ok(())
    } else {
        Err(Refusal::BadPercent(paid_percent))
    }
}

pub fn known_site(reg: &NetworkRegistry, site: &SiteId) -> Result<(), Refusal> {
    if reg.sites.contains_key(site) {
        Ok(())
    } else {
        Err(Refusal::UnknownSite(site.clone()))
    }
}

/// Adds or changes a site: its name, merchant and time zone.
pub fn set_site(store: &Store, id: &SiteId, info: &SiteInfo) -> Result<(), HqError> {
    require_hq(store)?;
    check_site(info)?;
    let known = store
        .doc(&DocName::Network)?
        .is_some_and(|d| merchants::read(&d).contains_key(&info.merchant));
    if !known {
        return Err(HqError::UnknownMerchant(info.merchant.clone()));
    }
    store.edit_doc(DocName::Network, |d| network::set_site(d, id, info))?;
    Ok(())
}

/// Registers a terminal to a site (or moves it there). Returns the site it was at.
pub fn set_terminal(
    store: &Store,
    terminal: &TerminalId,
    site: &SiteId,
) -> Result<Option<SiteId>, HqError> {
    require_hq(store)?;
    let reg = registry(store)?;
    known_site(&reg, site)?;
    store.edit_doc(DocName::Network, |d| {
        network::set_terminal(d, terminal, site)
    })?;
    Ok(reg.terminals.get(terminal).cloned())
}

/// Adds or changes an operator; with `pin`, sets the PIN they log in with (the registry
/// keeps only its verifier), with `card`, gives them that operator card.
pub fn set_operator(
    store: &Store,
    id: &OperatorId,
    info: &OperatorInfo,
    pin: Option<&str>,
    card: Option<&CardAsn>,
) -> Result<(), HqError> {
    require_hq(store)?;
    check_operator(&registry(store)?, id, info, pin, card)?;
    store.edit_doc(DocName::Network, |d| {
        network::set_operator(d, id, info)?;
        if let Some(pin) = pin {
            network::set_operator_pin(d, id, &pin_verifier(id, pin))?;
        }
        if let Some(card) = card {
            network::set_operator_card(d, id, card)?;
        }
        Ok(())
    })?;
    Ok(())
}

/// Removes an operator, who can then no longer log in anywhere once it has synced.
pub fn remove_operator(store: &Store, id: &OperatorId) -> Result<(), HqError> {
    require_hq(store)?;
    let reg = registry(store)?;
    let held = reg.operators.contains_key(id)
        || reg.operator_pins.contains_key(id)
        || reg.operator_cards.values().any(|holder| holder == id);
    if !held {
        return Err(Refusal::UnknownOperator(id.clone()).into());
    }
    store.edit_doc(DocName::Network, |d| network::remove_operator(d, id))?;
    Ok(())
}

/// Replaces the limits every node enforces.
pub fn set_limits(store: &Store, limits: &Limits) -> Result<(), HqError> {
    require_hq(store)?;
    check_limits(limits)?;
    store.edit_doc(DocName::Network, |d| network::set_limits(d, limits))?;
    Ok(())
}

/// Adds or changes a product of the network price book.
pub fn set_product(store: &Store, id: &ProductId, p: &Product) -> Result<(), HqError> {
    require_hq(store)?;
    check_product(p)?;
    store.edit_doc(DocName::PriceBook, |d| pricebook::set_product(d, id, p))?;
    Ok(())
}

/// Schedules a network price for a product from `from_ms` on.
pub fn schedule_price(
    store: &Store,
    id: &ProductId,
    from_ms: i64,
    price: Money,
) -> Result<(), HqError> {
    require_hq(store)?;
    check_price(&price_book(store)?, id, price)?;
    store.edit_doc(DocName::PriceBook, |d| {
        pricebook::schedule_price(d, id, from_ms, price)
    })?;
    Ok(())
}

/// The discount rules as this node has them.
pub fn discount_rules(store: &Store) -> Result<Discounts, HqError> {
    Ok(store
        .doc(&DocName::Discounts)?
        .map(|d| discounts::read(&d))
        .unwrap_or_default())
}

/// Sets the share of the list price `class` pays in `slot` (of each site's local day),
/// or with `None` removes that rule.
pub fn set_discount(
    store: &Store,
    class: &MemberClass,
    slot: TimeSlot,
    paid_percent: Option<u8>,
) -> Result<(), HqError> {
    require_hq(store)?;
    match paid_percent {
        Some(pct) => {
            check_discount(pct)?;
            store.edit_doc(DocName::Discounts, |d| {
                discounts::set_rule(d, class, slot, pct)
            })?;
        }
        None => {
            let held = discount_rules(store)?
                .rules
                .get(class)
                .is_some_and(|r| r.contains_key(&slot));
            if !held {
                return Err(Refusal::NoSuchDiscount {
                    class: class.clone(),
                    slot: slot_text(slot),
                }
                .into());
            }
            store.edit_doc(DocName::Discounts, |d| {
                discounts::remove_rule(d, class, slot)
            })?;
        }
    }
    Ok(())
}

/// Sets the loyalty points `class` earns per yuan spent.
pub fn set_points(store: &Store, class: &MemberClass, per_yuan: u32) -> Result<(), HqError> {
    require_hq(store)?;
    store.edit_doc(DocName::Discounts, |d| {
        discounts::set_points(d, class, per_yuan)
    })?;
    Ok(())
}

/// The registry and the network price book as `cardmesh registry show` prints them, with
/// each product's price in force at `now_ms`. Shows whether an operator has a PIN, never
/// its verifier.
pub fn render(reg: &NetworkRegistry, book: &PriceBook, offers: &Discounts, now_ms: i64) -> String {
    use std::fmt::Write;
    let mut out = String::from("sites\n");
    for (id, s) in &reg.sites {
        let (sign, m) = if s.utc_offset_min < 0 {
            ('-', -s.utc_offset_min)
        } else {
            ('+', s.utc_offset_min)
        };
        let _ = writeln!(
            out,
            "  {:<12} {:<20} merchant {:<10} UTC{sign}{:02}:{:02}",
            id.as_str(),
            s.name,
            s.merchant.as_str(),
            m / 60,
            m % 60
        );
    }
    out.push_str("terminals\n");
    for (t, site) in &reg.terminals {
        let _ = writeln!(out, "  {t}  {site}");
    }
    out.push_str("operators\n");
    for (id, o) in &reg.operators {
        let pin = if reg.operator_pins.contains_key(id) {
            "PIN set"
        } else {
            "no PIN"
        };
        let cards: Vec<String> = reg
            .operator_cards
            .iter()
            .filter(|(_, holder)| *holder == id)
            .map(|(card, _)| format!(", card {card}"))
            .collect();
        let _ = writeln!(
            out,
            "  {:<12} {:<20} {:<9} {:<12} {pin}{}",
            id.as_str(),
            o.name,
            o.role,
            o.site.as_str(),
            cards.concat()
        );
    }
    let l = &reg.limits;
    let _ = writeln!(
        out,
        "limits\n  anonymous card balance {}, named card balance {}, PIN above {}, per transaction {}, per card per day {}",
        l.anonymous_max_balance,
        l.named_max_balance,
        l.pin_above,
        l.max_per_transaction,
        l.max_per_card_per_day
    );
    out.push_str("products\n");
    for (id, p) in &book.products {
        let price = match book.prices.at(id, now_ms) {
            Some((_, price)) => price.to_string(),
            None => "no price yet".into(),
        };
        let own = if p.site_override {
            ", sites may set their own"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "  {:<12} {:<20} {:<6} {price}{own}",
            id.as_str(),
            p.name,
            p.unit
        );
    }
    out.push_str("discounts\n");
    for (class, rules) in &offers.rules {
        for (slot, pct) in rules {
            let _ = writeln!(
                out,
                "  {:<12} {:<20} pays {pct}%",
                class.to_string(),
                slot_text(*slot)
            );
        }
    }
    for (class, points) in &offers.points_per_yuan {
        let _ = writeln!(out, "  {:<12} {points} points per yuan", class.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry_with_shop() -> NetworkRegistry {
        let mut reg = NetworkRegistry::default();
        let site: SiteId = "shop-1".parse().unwrap();
        reg.sites.insert(
            site,
            SiteInfo {
                name: "Shop 1".into(),
                merchant: "main".parse().unwrap(),
                utc_offset_min: 480,
            },
        );
        reg
    }

    fn cashier() -> OperatorInfo {
        OperatorInfo {
            name: "Li Na".into(),
            role: "cashier".into(),
            site: "shop-1".parse().unwrap(),
        }
    }

    #[test]
    fn an_operator_card_belongs_to_one_operator() {
        let mut reg = registry_with_shop();
        let card: CardAsn = "1000000000000003".parse().unwrap();
        let (li, wang): (OperatorId, OperatorId) = ("li".parse().unwrap(), "wang".parse().unwrap());
        reg.operators.insert(li.clone(), cashier());
        reg.operator_cards.insert(card, li.clone());
        assert!(check_operator(&reg, &li, &cashier(), None, Some(&card)).is_ok());
        assert!(matches!(
            check_operator(&reg, &wang, &cashier(), None, Some(&card)),
            Err(Refusal::CardTaken { holder, .. }) if holder == li
        ));
        assert!(check_operator(&reg, &li, &cashier(), Some("12345a"), None).is_err());
        assert!(check_operator(&reg, &li, &cashier(), Some("123456"), None).is_ok());
    }

    #[test]
    fn times_of_day_are_hh_mm_and_slots_read_back_as_written() {
        assert_eq!(minute_of_day("00:00").unwrap(), 0);
        assert_eq!(minute_of_day("22:30").unwrap(), 1350);
        for bad in ["24:00", "7:00", "07:60", "0700", "07:0a", ""] {
            assert!(minute_of_day(bad).is_err(), "{bad}");
        }
        let night = TimeSlot {
            start_min: 1320,
            end_min: 360,
        };
        assert_eq!(slot_text(night), "22:00-06:00");
        assert_eq!(
            slot_text(TimeSlot {
                start_min: 60,
                end_min: 60
            }),
            "all day"
        );
        assert!(check_discount(0).is_err() && check_discount(101).is_err());
        assert!(check_discount(100).is_ok());
    }

    #[test]
    fn limits_and_time_zones_must_make_sense() {
        assert!(check_limits(&Limits::default()).is_ok());
        let too_much_per_sale = Limits {
            max_per_transaction: Money::from_fen(600_000),
            ..Limits::default()
        };
        assert!(check_limits(&too_much_per_sale).is_err());
        let free = Limits {
            pin_above: Money::from_fen(0),
            ..Limits::default()
        };
        assert!(check_limits(&free).is_err());
        let mut site = registry_with_shop().sites.into_values().next().unwrap();
        assert!(check_site(&site).is_ok());
        site.utc_offset_min = 900;
        assert!(matches!(check_site(&site), Err(Refusal::BadOffset(900))));
    }
}
