//! Money and quantities. Money is integer fen (0.01 yuan) in an `i64`; every operation
//! that could overflow is checked, and nothing here ever touches a float.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// An amount of money in fen. Negative values exist (a refund's effect, a float delta)
/// but a card balance never goes below zero; callers assert that where it matters.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Money(i64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("amount overflows: the result would be larger than any sane balance")]
    Overflow,
    #[error("'{0}' is not an amount in yuan (write e.g. 12.50)")]
    Parse(String),
}

impl Money {
    pub const ZERO: Money = Money(0);

    pub const fn from_fen(fen: i64) -> Money {
        Money(fen)
    }

    pub const fn fen(self) -> i64 {
        self.0
    }

    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        self.0
            .checked_add(other.0)
            .map(Money)
            .ok_or(MoneyError::Overflow)
    }

    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        self.0
            .checked_sub(other.0)
            .map(Money)
            .ok_or(MoneyError::Overflow)
    }

    pub fn is_negative(self) -> bool {
        self.0 < 0
    }

    /// `unit_price x quantity`, rounded half away from zero to the fen. The quantity is in
    /// thousandths of a unit (millilitres of fuel, or 1000 per piece).
    pub fn times_quantity(self, qty: Quantity) -> Result<Money, MoneyError> {
        let milli = i128::from(self.0) * i128::from(qty.milli());
        let fen = div_round_half_away(milli, 1000);
        i64::try_from(fen)
            .map(Money)
            .map_err(|_| MoneyError::Overflow)
    }

    /// This amount scaled to `percent` of itself, rounded half away from zero.
    pub fn percent(self, percent: u8) -> Money {
        let scaled = div_round_half_away(i128::from(self.0) * i128::from(percent), 100);
        Money(scaled as i64)
    }
}

fn div_round_half_away(n: i128, d: i128) -> i128 {
    let q = n / d;
    let r = n % d;
    if 2 * r.abs() >= d { q + n.signum() } else { q }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

impl FromStr for Money {
    type Err = MoneyError;

    /// Parses yuan with at most two decimals: `12`, `12.5`, `-0.05`.
    fn from_str(s: &str) -> Result<Money, MoneyError> {
        let err = || MoneyError::Parse(s.to_string());
        let (neg, body) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let (whole, frac) = match body.split_once('.') {
            Some((w, f)) => (w, Some(f)),
            None => (body, None),
        };
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        let frac_ok = frac.is_none_or(|f| digits(f) && f.len() <= 2);
        if !digits(whole) || !frac_ok {
            return Err(err());
        }
        let whole: i64 = whole.parse().map_err(|_| err())?;
        let frac_fen: i64 = match frac {
            None => 0,
            Some(f) if f.len() == 1 => f.parse::<i64>().map_err(|_| err())? * 10,
            Some(f) => f.parse().map_err(|_| err())?,
        };
        let fen = whole
            .checked_mul(100)
            .and_then(|w| w.checked_add(frac_fen))
            .ok_or(MoneyError::Overflow)?;
        Ok(Money(if neg { -fen } else { fen }))
    }
}

/// A quantity in thousandths of a unit: 35.120 litres is 35120; 3 pieces are 3000.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Quantity(i64);

impl Quantity {
    pub const fn from_milli(milli: i64) -> Quantity {
        Quantity(milli)
    }

    pub const fn pieces(n: i64) -> Quantity {
        Quantity(n * 1000)
    }

    pub const fn milli(self) -> i64 {
        self.0
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        if abs.is_multiple_of(1000) {
            write!(f, "{sign}{}", abs / 1000)
        } else {
            write!(f, "{sign}{}.{:03}", abs / 1000, abs % 1000)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_as_yuan_with_two_decimals() {
        assert_eq!(Money::from_fen(123456).to_string(), "1234.56");
        assert_eq!(Money::from_fen(-5).to_string(), "-0.05");
        assert_eq!(Money::ZERO.to_string(), "0.00");
    }

    #[test]
    fn parses_yuan_and_rejects_garbage() {
        assert_eq!("12".parse::<Money>(), Ok(Money::from_fen(1200)));
        assert_eq!("12.5".parse::<Money>(), Ok(Money::from_fen(1250)));
        assert_eq!("-0.05".parse::<Money>(), Ok(Money::from_fen(-5)));
        for bad in [
            "",
            "1.234",
            "1,00",
            "abc",
            ".5",
            "1.",
            "--1",
            "99999999999999999999",
        ] {
            assert!(bad.parse::<Money>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn quantity_pricing_rounds_half_away_from_zero() {
        // 7.89 yuan/L x 35.120 L = 277.0968 -> 277.10
        let p = Money::from_fen(789)
            .times_quantity(Quantity::from_milli(35120))
            .unwrap();
        assert_eq!(p, Money::from_fen(27710));
        // 0.05 x 0.1 = 0.005 -> 0.01
        let p = Money::from_fen(5)
            .times_quantity(Quantity::from_milli(100))
            .unwrap();
        assert_eq!(p, Money::from_fen(1));
        assert_eq!(Money::from_fen(999).percent(85), Money::from_fen(849));
    }

    #[test]
    fn overflow_is_an_error_not_a_wrap() {
        assert_eq!(
            Money::from_fen(i64::MAX).checked_add(Money::from_fen(1)),
            Err(MoneyError::Overflow)
        );
        assert!(
            Money::from_fen(i64::MAX)
                .times_quantity(Quantity::pieces(2))
                .is_err()
        );
    }
}
