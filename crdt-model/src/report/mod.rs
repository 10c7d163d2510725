//! Reports and verification, pure: what each entry contributes to the report rows
//! (`totals`), which rows it lands in (`rows_of`), each card's rebuilt history with
//! the clones and balance breaks it shows and HQ's answer to them (`chain`), grey locks
//! left open too long (`locks`), and what a merchant's own staff may see (`scope`).
//!
//! A report row is keyed by business day and one dimension (site, terminal, operator);
//! months and merchants are sums of day rows and site rows when read. Because `Totals`
//! merge in any order, a store folds each entry into its rows as it arrives and never
//! recomputes a report from the ledger.

pub mod chain;
pub mod locks;
pub mod scope;
pub mod totals;

pub use chain::{
    Anomaly, AnomalyKind, CardChain, ChainMarks, CounterSpace, Link, MarksV7, NeedsHistory, answer,
    txn_digest,
};
pub use locks::stale_locks;
pub use scope::Scope;
pub use totals::{ProductTally, Tally, Totals, TxnClass};

use crate::body::{Body, CardChange, CardTxn, TxnKind};
use crate::hlc::Hlc;
use crate::ids::{BusinessDay, SiteId};
use crate::money::MoneyError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a report row is per.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Dim {
    Site,
    Terminal,
    Operator,
}

impl Dim {
    pub fn name(self) -> &'static str {
        match self {
            Dim::Site => "site",
            Dim::Terminal => "terminal",
            Dim::Operator => "operator",
        }
    }
}

/// Where one row lives: a business day, a dimension and the name along it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RowKey {
    pub day: BusinessDay,
    pub dim: Dim,
    pub name: String,
}

/// The rows a refund is charged to, as a refund of the sale it refers to: the sale's
/// site and terminal, on the refund's business day (the period that settles it). The
/// refund's own rows, where the money went onto the card, come from [`rows_of`].
/// Nothing for any other operation.
pub fn refund_rows(refund: &CardTxn, sale: &CardTxn) -> Vec<(RowKey, Totals)> {
    if refund.kind != TxnKind::Refund {
        return Vec::new();
    }
    let totals = Totals {
        refunded: Tally {
            count: 1,
            amount: refund.amount,
        },
        ..Totals::default()
    };
    let key = |dim, name: String| RowKey {
        day: refund.business_day,
        dim,
        name,
    };
    vec![
        (key(Dim::Site, sale.site.to_string()), totals.clone()),
        (key(Dim::Terminal, sale.terminal.to_string()), totals),
    ]
}

/// The name an operation without an operator is reported under.
pub const NO_OPERATOR: &str = "-";

/// The rows an entry adds to and what it adds. `site` is the site of the entry's
/// origin and `day_of` the business day of an instant there; both matter only for
/// entries that do not carry their own (refusals, personalizations, alarms). Entries
/// that no report counts give nothing.
pub fn rows_of(
    body: &Body,
    hlc: Hlc,
    site: &SiteId,
    day_of: impl Fn(u64) -> BusinessDay,
) -> Result<Vec<(RowKey, Totals)>, MoneyError> {
    let at_site = |day: BusinessDay, t: Totals| {
        vec![(
            RowKey {
                day,
                dim: Dim::Site,
                name: site.to_string(),
            },
            t,
        )]
    };
    Ok(match body {
        Body::Card(t) | Body::Completion(crate::body::Completion { txn: t, .. }) => {
            let totals = Totals::of_txn(t)?;
            let key = |dim, name: String| RowKey {
                day: t.business_day,
                dim,
                name,
            };
            vec![
                (key(Dim::Site, t.site.to_string()), totals.clone()),
                (key(Dim::Terminal, t.terminal.to_string()), totals.clone()),
                (
                    key(
                        Dim::Operator,
                        t.operator
                            .as_ref()
                            .map_or(NO_OPERATOR.to_string(), ToString::to_string),
                    ),
                    totals,
                ),
            ]
        }
        Body::Operator(a) => match &a.action {
            crate::body::OperatorActionKind::Refused { reason, .. } => {
                let totals = Totals::of_refusal(reason);
                let day = day_of(hlc.millis);
                let mut rows = at_site(day, totals.clone());
                rows.push((
                    RowKey {
                        day,
                        dim: Dim::Operator,
                        name: a.operator.to_string(),
                    },
                    totals.clone(),
                ));
                if let Some(t) = a.terminal {
                    rows.push((
                        RowKey {
                            day,
                            dim: Dim::Terminal,
                            name: t.to_string(),
                        },
                        totals,
                    ));
                }
                rows
            }
            _ => Vec::new(),
        },
        Body::CardRegistry(c) if matches!(c.change, CardChange::Personalized { .. }) => {
            at_site(day_of(hlc.millis), Totals::of_personalization())
        }
        Body::Alarm(a) => at_site(day_of(hlc.millis), Totals::of_alarm(&a.kind)),
        _ => Vec::new(),
    })
}

/// Report rows in memory: the reference the store's tables are checked against, and
/// what tests and benchmarks fold into.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Aggregates {
    rows: BTreeMap<RowKey, Totals>,
}

impl Aggregates {
    pub fn add(&mut self, rows: Vec<(RowKey, Totals)>) -> Result<(), MoneyError> {
        for (key, t) in rows {
            self.rows.entry(key).or_default().merge(&t)?;
        }
        Ok(())
    }

    pub fn row(&self, key: &RowKey) -> Option<&Totals> {
        self.rows.get(key)
    }

    pub fn rows(&self) -> impl Iterator<Item = (&RowKey, &Totals)> {
        self.rows.iter()
    }
}

#[cfg(test)]
mod tests;
