//! Risk rules: what a load or purchase may do to a card, and what only gets flagged.
//! An illegal operation is refused; a suspicious one is done and raised as an alarm
//! for HQ. Pure: the caller passes the limits and the card's day so far.

use cardmesh_model::Money;
use cardmesh_model::docs::network::Limits;

/// Purchases per card per day above which a purchase is flagged (done, with an alarm).
pub const DEFAULT_MAX_PURCHASES_PER_DAY: u32 = 20;

/// The limits a terminal enforces: the network registry's, plus the frequency limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RiskConfig {
    pub limits: Limits,
    pub max_purchases_per_day: u32,
}

/// A refused operation.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{amount} is above the limit of {limit} per transaction")]
    OverTransactionLimit { amount: Money, limit: Money },
    #[error(
        "this card already spent {spent} today; {amount} more would pass the daily limit of {limit}"
    )]
    OverDailyLimit {
        spent: Money,
        amount: Money,
        limit: Money,
    },
    #[error("the balance would reach {after}, above the {limit} allowed on {kind} cards")]
    OverBalanceLimit {
        after: Money,
        limit: Money,
        kind: &'static str,
    },
    #[error("the amount must be positive")]
    NotPositive,
}

/// What the card did today at this node's view: money spent and number of purchases.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CardDay {
    pub spent: Money,
    pub purchases: u32,
}

/// A purchase's verdict: `Ok(None)` go, `Ok(Some(why))` go and raise an alarm.
pub fn check_purchase(
    cfg: &RiskConfig,
    amount: Money,
    day: CardDay,
) -> Result<Option<String>, Refusal> {
    if amount.fen() <= 0 {
        return Err(Refusal::NotPositive);
    }
    if amount > cfg.limits.max_per_transaction {
        return Err(Refusal::OverTransactionLimit {
            amount,
            limit: cfg.limits.max_per_transaction,
        });
    }
    let total = day.spent.fen().saturating_add(amount.fen());
    if total > cfg.limits.max_per_card_per_day.fen() {
        return Err(Refusal::OverDailyLimit {
            spent: day.spent,
            amount,
            limit: cfg.limits.max_per_card_per_day,
        });
    }
    Ok((day.purchases >= cfg.max_purchases_per_day).then(|| {
        format!(
            "{} purchases on this card today (flag above {})",
            day.purchases + 1,
            cfg.max_purchases_per_day
        )
    }))
}

/// A load's verdict: the balance after it must stay within the card kind's maximum
/// (PBOC: anonymous 1,000.00, named 5,000.00 yuan by default).
pub fn check_load(
    cfg: &RiskConfig,
    named: bool,
    balance: Money,
    amount: Money,
) -> Result<(), Refusal> {
    if amount.fen() <= 0 {
        return Err(Refusal::NotPositive);
    }
    let (limit, kind) = if named {
        (cfg.limits.named_max_balance, "named")
    } else {
        (cfg.limits.anonymous_max_balance, "anonymous")
    };
    let after = Money::from_fen(balance.fen().saturating_add(amount.fen()));
    if after > limit {
        return Err(Refusal::OverBalanceLimit { after, limit, kind });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> RiskConfig {
        RiskConfig {
            limits: Limits::default(),
            max_purchases_per_day: 3,
        }
    }

    #[test]
    fn anonymous_cards_stop_at_one_thousand_yuan_named_at_five() {
        let c = cfg();
        let y = |y: i64| Money::from_fen(y * 100);
        assert!(check_load(&c, false, y(900), y(100)).is_ok());
        assert!(matches!(
            check_load(&c, false, y(900), Money::from_fen(10_001)),
            Err(Refusal::OverBalanceLimit { .. })
        ));
        assert!(check_load(&c, true, y(900), y(4100)).is_ok());
        assert!(check_load(&c, true, y(900), y(4101)).is_err());
        assert_eq!(check_load(&c, true, y(0), y(0)), Err(Refusal::NotPositive));
    }

    #[test]
    fn purchases_over_limits_are_refused_frequent_ones_flagged() {
        let c = cfg();
        let day = |spent: i64, purchases: u32| CardDay {
            spent: Money::from_fen(spent),
            purchases,
        };
        assert_eq!(
            check_purchase(&c, Money::from_fen(100), day(0, 0)),
            Ok(None)
        );
        assert!(matches!(
            check_purchase(&c, Money::from_fen(500_001), day(0, 0)),
            Err(Refusal::OverTransactionLimit { .. })
        ));
        assert!(matches!(
            check_purchase(&c, Money::from_fen(2), day(499_999, 1)),
            Err(Refusal::OverDailyLimit { .. })
        ));
        assert!(check_purchase(&c, Money::from_fen(1), day(499_999, 1)).is_ok());
        assert!(matches!(
            check_purchase(&c, Money::from_fen(100), day(300, 3)),
            Ok(Some(_))
        ));
    }
}
