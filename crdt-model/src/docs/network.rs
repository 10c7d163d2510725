//! The network registry document: sites (merchant, time zone), terminals, operators and
//! the limits every node enforces. Node membership itself travels as certificates.

use super::{as_i64, as_str, scalars};
use crate::ids::{CardAsn, MerchantId, OperatorId, SiteId, TerminalId};
use crate::money::Money;
use automerge::transaction::Transactable;
use automerge::{AutoCommit, AutomergeError, ROOT, ReadDoc};
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteInfo {
    pub name: String,
    pub merchant: MerchantId,
    /// Minutes east of UTC (480 for China).
    pub utc_offset_min: i32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperatorInfo {
    pub name: String,
    /// One of cashier, manager, finance, card-desk, admin.
    pub role: String,
    pub site: SiteId,
}

/// Limits every node enforces. Defaults follow the PBOC prepaid-card rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    pub anonymous_max_balance: Money,
    pub named_max_balance: Money,
    /// A purchase above this asks for the card PIN.
    pub pin_above: Money,
    pub max_per_transaction: Money,
    pub max_per_card_per_day: Money,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            anonymous_max_balance: Money::from_fen(100_000),
            named_max_balance: Money::from_fen(500_000),
            pin_above: Money::from_fen(20_000),
            max_per_transaction: Money::from_fen(500_000),
            max_per_card_per_day: Money::from_fen(500_000),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkRegistry {
    pub sites: BTreeMap<SiteId, SiteInfo>,
    pub terminals: BTreeMap<TerminalId, SiteId>,
    pub operators: BTreeMap<OperatorId, OperatorInfo>,
    pub limits: Limits,
    /// Operator PIN verifiers (a keyed hash, never the PIN), for login by id + PIN.
    pub operator_pins: BTreeMap<OperatorId, String>,
    /// Operator cards: card number -> operator, for login by card.
    pub operator_cards: BTreeMap<CardAsn, OperatorId>,
}

pub fn set_site(doc: &mut AutoCommit, id: &SiteId, s: &SiteInfo) -> Result<(), AutomergeError> {
    doc.put(ROOT, format!("site/{id}/name"), s.name.as_str())?;
    doc.put(ROOT, format!("site/{id}/merchant"), s.merchant.as_str())?;
    doc.put(
        ROOT,
        format!("site/{id}/utc_offset"),
        i64::from(s.utc_offset_min),
    )?;
    Ok(())
}

pub fn set_terminal(
    doc: &mut AutoCommit,
    t: &TerminalId,
    site: &SiteId,
) -> Result<(), AutomergeError> {
    doc.put(ROOT, format!("terminal/{t}"), site.as_str())
}

pub fn set_operator(
    doc: &mut AutoCommit,
    id: &OperatorId,
    o: &OperatorInfo,
) -> Result<(), AutomergeError> {
    doc.put(ROOT, format!("operator/{id}/name"), o.name.as_str())?;
    doc.put(ROOT, format!("operator/{id}/role"), o.role.as_str())?;
    doc.put(ROOT, format!("operator/{id}/site"), o.site.as_str())?;
    Ok(())
}

/// Sets the verifier an operator's PIN must match (computed by the node, see its POS).
pub fn set_operator_pin(
    doc: &mut AutoCommit,
    id: &OperatorId,
    verifier: &str,
) -> Result<(), AutomergeError> {
    doc.put(ROOT, format!("operator/{id}/pin"), verifier)
}

/// Gives an operator an operator card.
pub fn set_operator_card(
    doc: &mut AutoCommit,
    id: &OperatorId,
    card: &CardAsn,
) -> Result<(), AutomergeError> {
    doc.put(ROOT, format!("operator/{id}/card"), card.to_string())
}

/// Removes an operator: their record, PIN verifier and operator card, so that they can
/// no longer log in. What they did stays in the feeds, signed by the node they used.
pub fn remove_operator(doc: &mut AutoCommit, id: &OperatorId) -> Result<(), AutomergeError> {
    for field in ["name", "role", "site", "pin", "card"] {
        let key = format!("operator/{id}/{field}");
        if doc.get(ROOT, key.as_str())?.is_some() {
            doc.delete(ROOT, key)?;
        }
    }
    Ok(())
}

pub fn set_limits(doc: &mut AutoCommit, l: &Limits) -> Result<(), AutomergeError> {
    for (k, v) in [
        ("anonymous_max_balance", l.anonymous_max_balance),
        ("named_max_balance", l.named_max_balance),
        ("pin_above", l.pin_above),
        ("max_per_transaction", l.max_per_transaction),
        ("max_per_card_per_day", l.max_per_card_per_day),
    ] {
        doc.put(ROOT, format!("limit/{k}"), v.fen())?;
    }
    Ok(())
}

type PartialSite = (Option<String>, Option<MerchantId>, Option<i32>);
type PartialOperator = (Option<String>, Option<String>, Option<SiteId>);

/// Reads the registry; incomplete or malformed records are left out.
pub fn read(doc: &AutoCommit) -> NetworkRegistry {
    let mut r = NetworkRegistry::default();
    let mut sites: BTreeMap<SiteId, PartialSite> = BTreeMap::new();
    let mut ops: BTreeMap<OperatorId, PartialOperator> = BTreeMap::new();
    for (key, value) in scalars(doc) {
        let parts: Vec<&str> = key.split('/').collect();
        let text = as_str(&value);
        match parts.as_slice() {
            ["site", id, field] => {
                let Ok(id) = id.parse::<SiteId>() else {
                    continue;
                };
                let e = sites.entry(id).or_default();
                match *field {
                    "name" => e.0 = text.map(str::to_string),
                    "merchant" => e.1 = text.and_then(|t| t.parse().ok()),
                    "utc_offset" => e.2 = as_i64(&value).and_then(|v| i32::try_from(v).ok()),
                    _ => {}
                }
            }
            ["terminal", t] => {
                if let (Ok(t), Some(Ok(site))) =
                    (t.parse::<TerminalId>(), text.map(str::parse::<SiteId>))
                {
                    r.terminals.insert(t, site);
                }
            }
            ["operator", id, field] => {
                let Ok(id) = id.parse::<OperatorId>() else {
                    continue;
                };
                let e = ops.entry(id.clone()).or_default();
                match *field {
                    "name" => e.0 = text.map(str::to_string),
                    "role" => e.1 = text.map(str::to_string),
                    "site" => e.2 = text.and_then(|t| t.parse().ok()),
                    "pin" => {
                        if let Some(t) = text {
                            r.operator_pins.insert(id, t.to_string());
                        }
                    }
                    "card" => {
                        if let Some(Ok(card)) = text.map(str::parse::<CardAsn>) {
                            r.operator_cards.insert(card, id);
                        }
                    }
                    _ => {}
                }
            }
            ["limit", name] => {
                let Some(v) = as_i64(&value).map(Money::from_fen) else {
                    continue;
                };
                let l = &mut r.limits;
                match *name {
                    "anonymous_max_balance" => l.anonymous_max_balance = v,
                    "named_max_balance" => l.named_max_balance = v,
                    "pin_above" => l.pin_above = v,
                    "max_per_transaction" => l.max_per_transaction = v,
                    "max_per_card_per_day" => l.max_per_card_per_day = v,
                    _ => {}
                }
            }
            _ => {}
        }
    }
    for (id, s) in sites {
        if let (Some(name), Some(merchant), Some(utc_offset_min)) = s {
            r.sites.insert(
                id,
                SiteInfo {
                    name,
                    merchant,
                    utc_offset_min,
                },
            );
        }
    }
    for (id, o) in ops {
        if let (Some(name), Some(role), Some(site)) = o {
            r.operators.insert(id, OperatorInfo { name, role, site });
        }
    }
    r
}
