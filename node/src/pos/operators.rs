//! Operators and what each role may do: the permission table, PIN verifiers, and the
//! logged-in session of a terminal. Pure apart from the hash.

use cardmesh_model::{OperatorId, SiteId};
use serde::{Deserialize, Serialize};
use std::fmt;

/// What an operator is employed as (the `role` of the network registry's operator).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OperatorRole {
    Cashier,
    Manager,
    Finance,
    CardDesk,
    Admin,
}

impl std::str::FromStr for OperatorRole {
    type Err = String;
    fn from_str(s: &str) -> Result<OperatorRole, String> {
        match s {
            "cashier" => Ok(OperatorRole::Cashier),
            "manager" => Ok(OperatorRole::Manager),
            "finance" => Ok(OperatorRole::Finance),
            "card-desk" => Ok(OperatorRole::CardDesk),
            "admin" => Ok(OperatorRole::Admin),
            other => Err(format!(
                "unknown operator role '{other}': use cashier, manager, finance, card-desk or admin"
            )),
        }
    }
}

impl fmt::Display for OperatorRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OperatorRole::Cashier => "cashier",
            OperatorRole::Manager => "manager",
            OperatorRole::Finance => "finance",
            OperatorRole::CardDesk => "card-desk",
            OperatorRole::Admin => "admin",
        })
    }
}

/// Every operation the POS offers, as the permission table names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Purchase,
    Load,
    /// Goods return and reversal: money back to a card.
    Refund,
    Issue,
    ReportLost,
    Unblock,
    ReturnCard,
    ReplaceCard,
    ChangePin,
    Query,
    GreyLock,
    /// Primary issue: a blank chip personalized.
    Personalize,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::Purchase => "purchase",
            Operation::Load => "load",
            Operation::Refund => "refund",
            Operation::Issue => "issue",
            Operation::ReportLost => "report lost",
            Operation::Unblock => "unblock",
            Operation::ReturnCard => "return card",
            Operation::ReplaceCard => "replace card",
            Operation::ChangePin => "change PIN",
            Operation::Query => "balance and history",
            Operation::GreyLock => "grey lock",
            Operation::Personalize => "card personalization",
        })
    }
}

/// The permission table.
pub fn permits(role: OperatorRole, op: Operation) -> bool {
    use Operation::*;
    match role {
        OperatorRole::Admin => true,
        OperatorRole::Cashier => matches!(op, Purchase | Query | GreyLock | ChangePin),
        OperatorRole::Manager => matches!(
            op,
            Purchase | Query | GreyLock | ChangePin | Refund | ReportLost
        ),
        OperatorRole::Finance => matches!(op, Query | Refund),
        OperatorRole::CardDesk => matches!(
            op,
            Load | Issue
                | Personalize
                | ReportLost
                | Unblock
                | ReturnCard
                | ReplaceCard
                | ChangePin
                | Query
        ),
    }
}

/// The operator logged in at a terminal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub operator: OperatorId,
    pub role: OperatorRole,
    pub site: SiteId,
}

/// The verifier of an operator PIN as the network registry keeps it: a keyed hash of
/// the operator id and PIN, so that the registry never holds a PIN.
pub fn pin_verifier(operator: &OperatorId, pin: &str) -> String {
    let mut h = blake3::Hasher::new_derive_key("cardmesh operator pin v1");
    h.update(operator.as_str().as_bytes());
    h.update(&[0]);
    h.update(pin.as_bytes());
    h.finalize().to_hex().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cashier_sells_but_cannot_load_or_refund() {
        assert!(permits(OperatorRole::Cashier, Operation::Purchase));
        assert!(!permits(OperatorRole::Cashier, Operation::Load));
        assert!(!permits(OperatorRole::Cashier, Operation::Refund));
        assert!(permits(OperatorRole::Manager, Operation::Refund));
        assert!(!permits(OperatorRole::Finance, Operation::Purchase));
        assert!(permits(OperatorRole::CardDesk, Operation::Issue));
        assert!(!permits(OperatorRole::CardDesk, Operation::Purchase));
        assert!(permits(OperatorRole::Admin, Operation::Unblock));
    }

    #[test]
    fn the_pin_verifier_depends_on_operator_and_pin() {
        let a: OperatorId = "a".parse().unwrap();
        let b: OperatorId = "b".parse().unwrap();
        assert_eq!(pin_verifier(&a, "1234"), pin_verifier(&a, "1234"));
        assert_ne!(pin_verifier(&a, "1234"), pin_verifier(&a, "1235"));
        assert_ne!(pin_verifier(&a, "1234"), pin_verifier(&b, "1234"));
    }
}
