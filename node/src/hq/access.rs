//! Who is reading reports. Without an operator, the node's own user (who holds its data
//! folder and key) reads the whole network; an operator who identifies with their id and
//! PIN reads what `Scope::of_operator` allows, and may narrow it to one merchant but
//! never widen it.

use super::HqError;
use super::report;
use crate::pos::operators::pin_verifier;
use crate::store::Store;
use cardmesh_model::report::Scope;
use cardmesh_model::{MerchantId, OperatorId};

/// The scope of a reader: `operator` with `pin` if given, narrowed to `merchant` if
/// given.
pub fn scope(
    store: &Store,
    operator: Option<(&OperatorId, &str)>,
    merchant: Option<&MerchantId>,
) -> Result<Scope, HqError> {
    let reader = match operator {
        None => Scope::Network,
        Some((op, pin)) => {
            let reg = report::registry(store)?;
            let known = reg
                .operator_pins
                .get(op)
                .is_some_and(|v| *v == pin_verifier(op, pin));
            if !known {
                return Err(HqError::BadPin(op.clone()));
            }
            Scope::of_operator(&reg, &store.own_certificate().site, op)?
        }
    };
    match (reader, merchant) {
        (reader, None) => Ok(reader),
        (Scope::Network, Some(m)) => Ok(Scope::Merchant(m.clone())),
        (Scope::Merchant(mine), Some(m)) if mine == *m => Ok(Scope::Merchant(mine)),
        (Scope::Merchant(mine), Some(m)) => Err(HqError::NotPermitted(
            format!("merchant {m}'s figures"),
            mine,
        )),
    }
}
