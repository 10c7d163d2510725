//! Settlement with merchants, pure: settlement cycles and their periods, fees in integer
//! fen, which periods a clearing run settles, the clearing file and its checksum line.
//!
//! Rounding rule: the fee is computed once per merchant and period, on the period's
//! gross sales, as `gross x fee_bp / 10000` rounded half away from zero to the fen; the
//! amount to transfer is `gross - fee`, so the three always add up exactly.

use crate::ids::{BusinessDay, MerchantId};
use crate::money::{Money, MoneyError};
use crate::sign::Hash;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// How often a merchant is settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Cycle {
    Daily,
    /// Monday to Sunday.
    Weekly,
    Monthly,
}

impl Cycle {
    pub fn name(self) -> &'static str {
        match self {
            Cycle::Daily => "daily",
            Cycle::Weekly => "weekly",
            Cycle::Monthly => "monthly",
        }
    }

    /// The last whole period of this cycle that ends on or before `as_of`.
    pub fn last_complete(self, as_of: BusinessDay) -> Period {
        let d = days_from_civil(as_of);
        match self {
            Cycle::Daily => Period {
                from: as_of,
                to: as_of,
            },
            Cycle::Weekly => {
                // 1970-01-01 was a Thursday: weekday 0 = Monday.
                let weekday = (d + 3).rem_euclid(7);
                let sunday = if weekday == 6 { d } else { d - weekday - 1 };
                Period {
                    from: day_of(sunday - 6),
                    to: day_of(sunday),
                }
            }
            Cycle::Monthly => {
                let last_of_month = day_of(d + 1).day == 1;
                let end = if last_of_month {
                    d
                } else {
                    d - i64::from(as_of.day)
                };
                let to = day_of(end);
                Period {
                    from: BusinessDay { day: 1, ..to },
                    to,
                }
            }
        }
    }
}

impl FromStr for Cycle {
    type Err = String;
    fn from_str(s: &str) -> Result<Cycle, String> {
        match s {
            "daily" => Ok(Cycle::Daily),
            "weekly" => Ok(Cycle::Weekly),
            "monthly" => Ok(Cycle::Monthly),
            other => Err(format!(
                "unknown settlement cycle '{other}': use daily, weekly or monthly"
            )),
        }
    }
}

impl fmt::Display for Cycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Days since 1970-01-01 of a day (H. Hinnant's algorithm).
pub fn days_from_civil(d: BusinessDay) -> i64 {
    let (m, day) = (i64::from(d.month), i64::from(d.day));
    let y = i64::from(d.year) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The day `days` after 1970-01-01.
pub fn day_of(days: i64) -> BusinessDay {
    BusinessDay::of_instant(days * 86_400_000, 0)
}

/// A settlement cycle's terms for one merchant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerchantTerms {
    pub name: String,
    pub cycle: Cycle,
    /// Fee in basis points of gross sales (60 = 0.60%); at most 10000.
    pub fee_bp: u32,
}

/// Days `from..=to`, both included.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Period {
    pub from: BusinessDay,
    pub to: BusinessDay,
}

impl Period {
    pub fn overlaps(&self, other: &Period) -> bool {
        self.from <= other.to && other.from <= self.to
    }

    pub fn contains(&self, day: BusinessDay) -> bool {
        self.from <= day && day <= self.to
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", self.from, self.to)
    }
}

/// `gross x fee_bp / 10000`, rounded half away from zero to the fen.
pub fn fee(gross: Money, fee_bp: u32) -> Result<Money, MoneyError> {
    let n = i128::from(gross.fen()) * i128::from(fee_bp);
    let (q, r) = (n / 10_000, n % 10_000);
    let rounded = if 2 * r.abs() >= 10_000 {
        q + n.signum()
    } else {
        q
    };
    i64::try_from(rounded)
        .map(Money::from_fen)
        .map_err(|_| MoneyError::Overflow)
}

/// One merchant's line of a clearing run; also what HQ records in its feed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettlementRecord {
    pub merchant: MerchantId,
    pub period: Period,
    pub txn_count: u64,
    pub gross: Money,
    pub fee_bp: u32,
    pub fee: Money,
    /// What HQ transfers to the merchant: `gross - fee`.
    pub net: Money,
    /// The blake3 hash of the clearing file this line was written to.
    pub file_hash: Hash,
}

/// A merchant's line before it is written to a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClearingLine {
    pub merchant: MerchantId,
    pub period: Period,
    pub txn_count: u64,
    pub gross: Money,
    pub fee_bp: u32,
    pub fee: Money,
    pub net: Money,
}

impl ClearingLine {
    pub fn compute(
        merchant: MerchantId,
        period: Period,
        txn_count: u64,
        gross: Money,
        fee_bp: u32,
    ) -> Result<ClearingLine, MoneyError> {
        let fee = fee(gross, fee_bp)?;
        Ok(ClearingLine {
            merchant,
            period,
            txn_count,
            gross,
            fee_bp,
            fee,
            net: gross.checked_sub(fee)?,
        })
    }

    pub fn record(&self, file_hash: Hash) -> SettlementRecord {
        SettlementRecord {
            merchant: self.merchant.clone(),
            period: self.period,
            txn_count: self.txn_count,
            gross: self.gross,
            fee_bp: self.fee_bp,
            fee: self.fee,
            net: self.net,
            file_hash,
        }
    }
}

pub const CLEARING_HEADER: &str = "merchant,period_from,period_to,txn_count,gross,fee_bp,fee,net";

/// The clearing file: a header, one CSV line per merchant (amounts in yuan with two
/// decimals), then `#checksum,<lines>,<total net>,<blake3 of everything above>`.
pub fn clearing_file(lines: &[ClearingLine]) -> Result<String, MoneyError> {
    let mut out = format!("{CLEARING_HEADER}\n");
    let mut total = Money::ZERO;
    for l in lines {
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{}\n",
            l.merchant, l.period.from, l.period.to, l.txn_count, l.gross, l.fee_bp, l.fee, l.net
        ));
        total = total.checked_add(l.net)?;
    }
    let hash = Hash::of(out.as_bytes());
    out.push_str(&format!(
        "#checksum,{},{},{}\n",
        lines.len(),
        total,
        hex(&hash.0)
    ));
    Ok(out)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClearingFileError {
    #[error("the clearing file has no checksum line: it was cut short")]
    NoChecksum,
    #[error("the clearing file's checksum does not match its contents: it was altered")]
    BadChecksum,
    #[error("the checksum line counts {claimed} lines but the file has {found}")]
    LineCount { claimed: usize, found: usize },
}

/// Checks a clearing file's checksum line against its contents; returns the hash that
/// settlement records name.
pub fn check_clearing_file(text: &str) -> Result<Hash, ClearingFileError> {
    let body_end = text
        .trim_end_matches('\n')
        .rfind('\n')
        .map(|i| i + 1)
        .ok_or(ClearingFileError::NoChecksum)?;
    let (body, last) = text.split_at(body_end);
    let fields: Vec<&str> = last.trim_end().split(',').collect();
    let ["#checksum", count, _total, hash] = fields.as_slice() else {
        return Err(ClearingFileError::NoChecksum);
    };
    let computed = Hash::of(body.as_bytes());
    if *hash != hex(&computed.0) {
        return Err(ClearingFileError::BadChecksum);
    }
    let found = body.lines().count().saturating_sub(1);
    let claimed: usize = count.parse().map_err(|_| ClearingFileError::BadChecksum)?;
    if claimed != found {
        return Err(ClearingFileError::LineCount { claimed, found });
    }
    Ok(Hash::of(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn day(y: u16, m: u8, d: u8) -> BusinessDay {
        BusinessDay {
            year: y,
            month: m,
            day: d,
        }
    }

    #[test]
    fn periods_of_each_cycle_end_on_or_before_the_day() {
        // 2026-11-21 is a Saturday.
        let sat = day(2026, 11, 21);
        assert_eq!(
            Cycle::Weekly.last_complete(sat),
            Period {
                from: day(2026, 11, 9),
                to: day(2026, 11, 15)
            }
        );
        assert_eq!(
            Cycle::Weekly.last_complete(day(2026, 11, 22)),
            Period {
                from: day(2026, 11, 16),
                to: day(2026, 11, 22)
            }
        );
        assert_eq!(
            Cycle::Monthly.last_complete(sat),
            Period {
                from: day(2026, 10, 1),
                to: day(2026, 10, 31)
            }
        );
        assert_eq!(
            Cycle::Monthly.last_complete(day(2028, 2, 29)),
            Period {
                from: day(2028, 2, 1),
                to: day(2028, 2, 29)
            }
        );
        assert_eq!(Cycle::Daily.last_complete(sat).to, sat);
    }

    #[test]
    fn fee_rounds_half_away_from_zero() {
        // 0.60% of 1234.50 = 7.407 -> 7.41; of 0.75 = 0.0045 -> 0.00; of 2.50 = 0.015 -> 0.02
        assert_eq!(fee(Money::from_fen(123_450), 60), Ok(Money::from_fen(741)));
        assert_eq!(fee(Money::from_fen(75), 60), Ok(Money::ZERO));
        assert_eq!(fee(Money::from_fen(250), 60), Ok(Money::from_fen(2)));
        assert_eq!(fee(Money::from_fen(-250), 60), Ok(Money::from_fen(-2)));
    }

    #[test]
    fn an_altered_clearing_file_is_refused() {
        let line = ClearingLine::compute(
            "cinema".parse().unwrap(),
            Cycle::Daily.last_complete(day(2026, 11, 20)),
            3,
            Money::from_fen(10_000),
            60,
        )
        .unwrap();
        let file = clearing_file(&[line]).unwrap();
        assert!(check_clearing_file(&file).is_ok());
        assert!(file.contains("cinema,2026-11-20,2026-11-20,3,100.00,60,0.60,99.40\n"));
        let altered = file.replace("99.40", "99.50");
        assert_eq!(
            check_clearing_file(&altered),
            Err(ClearingFileError::BadChecksum)
        );
        let cut: String = file.lines().next().unwrap().to_string() + "\n";
        assert_eq!(
            check_clearing_file(&cut),
            Err(ClearingFileError::NoChecksum)
        );
    }

    proptest! {
        #[test]
        fn fee_and_net_add_up_to_gross(gross in -1_000_000_000_000i64..1_000_000_000_000, bp in 0u32..=10_000) {
            let l = ClearingLine::compute("m".parse().unwrap(), Cycle::Daily.last_complete(day(2026, 1, 1)), 1, Money::from_fen(gross), bp).unwrap();
            prop_assert_eq!(l.fee.checked_add(l.net).unwrap(), l.gross);
            // Never more than half a fen from the exact fee.
            let exact = i128::from(gross) * i128::from(bp);
            prop_assert!((i128::from(l.fee.fen()) * 10_000 - exact).abs() * 2 <= 10_000);
        }

        #[test]
        fn days_round_trip(d in -100_000i64..200_000) {
            prop_assert_eq!(days_from_civil(day_of(d)), d);
        }
    }
}
