//! Price resolution: what one line of a basket costs at a site, for a member class, at
//! an instant. Pure: the caller passes the price book, the site's overrides, the discount
//! rules and the site's UTC offset.
//!
//! Rule: the most recently effective scheduled price wins, whether HQ's or the site's
//! (a site's price counts only for products HQ marked overridable); on equal
//! effective-from the site's price wins. A network change made after a site override
//! therefore replaces it, which is what HQ expects when it reprices the chain.

use crate::docs::discounts::Discounts;
use crate::docs::pricebook::{PriceBook, Schedule};
use crate::ids::{MemberClass, ProductId, local_minute_of_day};
use crate::money::{Money, MoneyError, Quantity};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PriceSource {
    Network { since_ms: i64 },
    Site { since_ms: i64 },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quote {
    pub unit_price: Money,
    pub source: PriceSource,
    pub list_amount: Money,
    pub paid_percent: u8,
    pub amount: Money,
    pub points: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PricingError {
    #[error("product {0} is not in the price book")]
    UnknownProduct(ProductId),
    #[error("product {0} has no price yet at this time")]
    NoPrice(ProductId),
    #[error("quantity must be positive")]
    BadQuantity,
    #[error(transparent)]
    Money(#[from] MoneyError),
}

/// The unit price of `product` in force at `at_ms`.
pub fn unit_price(
    book: &PriceBook,
    site_prices: Option<&Schedule>,
    product: &ProductId,
    at_ms: i64,
) -> Result<(Money, PriceSource), PricingError> {
    let info = book
        .products
        .get(product)
        .ok_or_else(|| PricingError::UnknownProduct(product.clone()))?;
    let network = book.prices.at(product, at_ms);
    let site = if info.site_override {
        site_prices.and_then(|s| s.at(product, at_ms))
    } else {
        None
    };
    match (network, site) {
        (Some((n_from, _)), Some((s_from, s_price))) if s_from >= n_from => {
            Ok((s_price, PriceSource::Site { since_ms: s_from }))
        }
        (Some((n_from, n_price)), _) => Ok((n_price, PriceSource::Network { since_ms: n_from })),
        (None, Some((s_from, s_price))) => Ok((s_price, PriceSource::Site { since_ms: s_from })),
        (None, None) => Err(PricingError::NoPrice(product.clone())),
    }
}

/// What a member of `class` pays for `quantity` of `product` at `at_ms` at a site
/// `utc_offset_min` east of UTC.
pub struct QuoteRequest<'a> {
    pub product: &'a ProductId,
    pub quantity: Quantity,
    pub class: Option<&'a MemberClass>,
    pub at_ms: i64,
    pub utc_offset_min: i32,
}

pub fn quote(
    book: &PriceBook,
    site_prices: Option<&Schedule>,
    discounts: &Discounts,
    req: &QuoteRequest<'_>,
) -> Result<Quote, PricingError> {
    if req.quantity.milli() <= 0 {
        return Err(PricingError::BadQuantity);
    }
    let (unit, source) = unit_price(book, site_prices, req.product, req.at_ms)?;
    let list_amount = unit.times_quantity(req.quantity)?;
    let minute = local_minute_of_day(req.at_ms, req.utc_offset_min);
    let paid_percent = req.class.map_or(100, |c| discounts.paid_percent(c, minute));
    let amount = list_amount.percent(paid_percent);
    let per_yuan = req
        .class
        .and_then(|c| discounts.points_per_yuan.get(c))
        .copied()
        .unwrap_or(0);
    let points = u64::try_from(amount.fen()).unwrap_or(0) * u64::from(per_yuan) / 100;
    Ok(Quote {
        unit_price: unit,
        source,
        list_amount,
        paid_percent,
        amount,
        points,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docs::discounts::TimeSlot;
    use crate::docs::pricebook::Product;

    const BEIJING: i32 = 480;
    /// 2026-11-22 00:00 in Beijing (= 2026-11-21 16:00 UTC).
    const MIDNIGHT: i64 = 1_795_276_800_000;
    const MINUTE: i64 = 60_000;

    fn pid(s: &str) -> ProductId {
        s.parse().unwrap()
    }

    fn book(overridable: bool) -> PriceBook {
        let mut b = PriceBook::default();
        b.products.insert(
            pid("diesel-0"),
            Product {
                name: "0# diesel".into(),
                unit: "L".into(),
                site_override: overridable,
            },
        );
        let s = b.prices.0.entry(pid("diesel-0")).or_default();
        s.insert(MIDNIGHT - 30 * 86_400_000, Money::from_fen(789));
        s.insert(MIDNIGHT, Money::from_fen(812));
        b
    }

    fn req<'a>(p: &'a ProductId, class: Option<&'a MemberClass>, at_ms: i64) -> QuoteRequest<'a> {
        QuoteRequest {
            product: p,
            quantity: Quantity::from_milli(10_000),
            class,
            at_ms,
            utc_offset_min: BEIJING,
        }
    }

    #[test]
    fn a_price_scheduled_for_midnight_applies_from_the_first_minute_of_the_day() {
        let b = book(false);
        let p = pid("diesel-0");
        let before = quote(
            &b,
            None,
            &Discounts::default(),
            &req(&p, None, MIDNIGHT - MINUTE),
        )
        .unwrap();
        let after = quote(&b, None, &Discounts::default(), &req(&p, None, MIDNIGHT)).unwrap();
        assert_eq!(before.unit_price, Money::from_fen(789));
        assert_eq!(before.amount, Money::from_fen(7890));
        assert_eq!(after.unit_price, Money::from_fen(812));
        assert_eq!(after.source, PriceSource::Network { since_ms: MIDNIGHT });
    }

    #[test]
    fn a_night_discount_spans_midnight() {
        let b = book(false);
        let p = pid("diesel-0");
        let gold: MemberClass = "gold".parse().unwrap();
        let mut d = Discounts::default();
        d.rules.entry(gold.clone()).or_default().insert(
            TimeSlot {
                start_min: 22 * 60,
                end_min: 6 * 60,
            },
            90,
        );
        d.points_per_yuan.insert(gold.clone(), 2);
        let at = |ms| quote(&b, None, &d, &req(&p, Some(&gold), ms)).unwrap();
        assert_eq!(
            at(MIDNIGHT - 121 * MINUTE).paid_percent,
            100,
            "21:59 is before the slot"
        );
        assert_eq!(
            at(MIDNIGHT - 120 * MINUTE).paid_percent,
            90,
            "22:00 opens it"
        );
        let q = at(MIDNIGHT + 5 * MINUTE);
        assert_eq!(
            (q.paid_percent, q.amount, q.points),
            (90, Money::from_fen(7308), 146)
        );
        assert_eq!(
            at(MIDNIGHT + 360 * MINUTE).paid_percent,
            100,
            "06:00 closes it"
        );
    }

    #[test]
    fn a_site_override_counts_only_where_hq_allows_and_until_hq_reprices() {
        let p = pid("diesel-0");
        let mut site = Schedule::default();
        site.0
            .entry(p.clone())
            .or_default()
            .insert(MIDNIGHT - 86_400_000, Money::from_fen(799));
        let d = Discounts::default();
        let q = quote(
            &book(false),
            Some(&site),
            &d,
            &req(&p, None, MIDNIGHT - MINUTE),
        )
        .unwrap();
        assert_eq!(q.unit_price, Money::from_fen(789), "not overridable");
        let q = quote(
            &book(true),
            Some(&site),
            &d,
            &req(&p, None, MIDNIGHT - MINUTE),
        )
        .unwrap();
        assert_eq!(q.unit_price, Money::from_fen(799));
        let q = quote(&book(true), Some(&site), &d, &req(&p, None, MIDNIGHT)).unwrap();
        assert_eq!(
            q.unit_price,
            Money::from_fen(812),
            "HQ's later price replaces the override"
        );
    }

    #[test]
    fn unknown_products_and_unpriced_times_are_clear_errors() {
        let b = book(false);
        let d = Discounts::default();
        let ghost = pid("ghost");
        assert_eq!(
            quote(&b, None, &d, &req(&ghost, None, MIDNIGHT)),
            Err(PricingError::UnknownProduct(ghost.clone()))
        );
        let p = pid("diesel-0");
        assert_eq!(
            quote(&b, None, &d, &req(&p, None, 0)),
            Err(PricingError::NoPrice(p.clone()))
        );
    }
}
