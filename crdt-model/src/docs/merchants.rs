//! Merchants and their settlement terms, kept in the network registry document (HQ
//! writes it) next to the sites that name them: `merchant/<id>/name`, `.../cycle`
//! (`daily`, `weekly` or `monthly`) and `.../fee_bp` (the fee in basis points of the
//! merchant's sales). Which sites belong to a merchant is the site's `merchant` field.

use super::{as_i64, as_str, scalars};
use crate::ids::MerchantId;
use crate::settlement::{Cycle, MerchantTerms};
use automerge::transaction::Transactable;
use automerge::{AutoCommit, AutomergeError, ROOT};
use std::collections::BTreeMap;

/// Writes (or overwrites) one merchant's terms.
pub fn set_merchant(
    doc: &mut AutoCommit,
    id: &MerchantId,
    terms: &MerchantTerms,
) -> Result<(), AutomergeError> {
    doc.put(ROOT, format!("merchant/{id}/name"), terms.name.as_str())?;
    doc.put(ROOT, format!("merchant/{id}/cycle"), terms.cycle.name())?;
    doc.put(
        ROOT,
        format!("merchant/{id}/fee_bp"),
        i64::from(terms.fee_bp),
    )?;
    Ok(())
}

type Partial = (Option<String>, Option<Cycle>, Option<u32>);

/// Every merchant with complete, well-formed terms; malformed records are left out.
pub fn read(doc: &AutoCommit) -> BTreeMap<MerchantId, MerchantTerms> {
    let mut partial: BTreeMap<MerchantId, Partial> = BTreeMap::new();
    for (key, value) in scalars(doc) {
        let parts: Vec<&str> = key.split('/').collect();
        let ["merchant", id, field] = parts.as_slice() else {
            continue;
        };
        let Ok(id) = id.parse::<MerchantId>() else {
            continue;
        };
        let e = partial.entry(id).or_default();
        match *field {
            "name" => e.0 = as_str(&value).map(str::to_string),
            "cycle" => e.1 = as_str(&value).and_then(|c| c.parse().ok()),
            "fee_bp" => e.2 = as_i64(&value).and_then(|v| u32::try_from(v).ok()),
            _ => {}
        }
    }
    partial
        .into_iter()
        .filter_map(|(id, p)| match p {
            (Some(name), Some(cycle), Some(fee_bp)) if fee_bp <= 10_000 => Some((
                id,
                MerchantTerms {
                    name,
                    cycle,
                    fee_bp,
                },
            )),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merchant_terms_round_trip_and_bad_fees_are_left_out() {
        let mut doc = AutoCommit::new();
        let m: MerchantId = "cinema".parse().unwrap();
        let terms = MerchantTerms {
            name: "Star Cinema".into(),
            cycle: Cycle::Weekly,
            fee_bp: 60,
        };
        set_merchant(&mut doc, &m, &terms).unwrap();
        let bad: MerchantId = "bad".parse().unwrap();
        set_merchant(
            &mut doc,
            &bad,
            &MerchantTerms {
                fee_bp: 10_001,
                ..terms.clone()
            },
        )
        .unwrap();
        let read = read(&doc);
        assert_eq!(read.get(&m), Some(&terms));
        assert!(!read.contains_key(&bad));
    }
}
