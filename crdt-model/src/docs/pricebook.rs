//! The price book document: products and their scheduled prices. The network document
//! (HQ) holds products and network prices; a site document holds only scheduled prices,
//! which count for products HQ marked as overridable.

use super::{as_i64, as_str, scalars};
use crate::ids::ProductId;
use crate::money::Money;
use automerge::transaction::Transactable;
use automerge::{AutoCommit, AutomergeError, ROOT};
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Product {
    pub name: String,
    /// What a quantity of 1 means: `pc`, `L`, `ticket`.
    pub unit: String,
    /// Whether a site's own price for this product counts.
    pub site_override: bool,
}

/// Scheduled prices: per product, effective-from instant (unix ms) -> unit price.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schedule(pub BTreeMap<ProductId, BTreeMap<i64, Money>>);

impl Schedule {
    /// The price in force at `at_ms` and since when.
    pub fn at(&self, product: &ProductId, at_ms: i64) -> Option<(i64, Money)> {
        self.0
            .get(product)?
            .range(..=at_ms)
            .next_back()
            .map(|(f, p)| (*f, *p))
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PriceBook {
    pub products: BTreeMap<ProductId, Product>,
    pub prices: Schedule,
}

fn price_key(product: &ProductId, from_ms: i64) -> String {
    format!("price/{product}/{from_ms:020}")
}

pub fn set_product(
    doc: &mut AutoCommit,
    id: &ProductId,
    p: &Product,
) -> Result<(), AutomergeError> {
    doc.put(ROOT, format!("product/{id}/name"), p.name.as_str())?;
    doc.put(ROOT, format!("product/{id}/unit"), p.unit.as_str())?;
    doc.put(ROOT, format!("product/{id}/site_override"), p.site_override)?;
    Ok(())
}

/// Schedules `price` for `product` from the instant `from_ms` on.
pub fn schedule_price(
    doc: &mut AutoCommit,
    product: &ProductId,
    from_ms: i64,
    price: Money,
) -> Result<(), AutomergeError> {
    doc.put(ROOT, price_key(product, from_ms), price.fen())
}

/// Withdraws a scheduled price that has not been needed yet (or was a mistake).
pub fn cancel_price(
    doc: &mut AutoCommit,
    product: &ProductId,
    from_ms: i64,
) -> Result<(), AutomergeError> {
    doc.delete(ROOT, price_key(product, from_ms))
}

/// Reads a price book document; keys it does not understand are ignored.
pub fn read(doc: &AutoCommit) -> PriceBook {
    let mut book = PriceBook::default();
    let mut names: BTreeMap<ProductId, (Option<String>, Option<String>, bool)> = BTreeMap::new();
    for (key, value) in scalars(doc) {
        let parts: Vec<&str> = key.split('/').collect();
        match parts.as_slice() {
            ["price", product, from] => {
                if let (Ok(p), Ok(f), Some(fen)) = (
                    product.parse::<ProductId>(),
                    from.parse::<i64>(),
                    as_i64(&value),
                ) {
                    book.prices
                        .0
                        .entry(p)
                        .or_default()
                        .insert(f, Money::from_fen(fen));
                }
            }
            ["product", product, field] => {
                let Ok(p) = product.parse::<ProductId>() else {
                    continue;
                };
                let e = names.entry(p).or_default();
                match (*field, &value) {
                    ("name", v) => e.0 = as_str(v).map(str::to_string),
                    ("unit", v) => e.1 = as_str(v).map(str::to_string),
                    ("site_override", automerge::ScalarValue::Boolean(b)) => e.2 = *b,
                    _ => {}
                }
            }
            _ => {}
        }
    }
    for (id, (name, unit, site_override)) in names {
        if let (Some(name), Some(unit)) = (name, unit) {
            book.products.insert(
                id,
                Product {
                    name,
                    unit,
                    site_override,
                },
            );
        }
    }
    book
}
