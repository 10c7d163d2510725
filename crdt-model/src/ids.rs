//! Identifiers and small value types that cross module boundaries: who (node, site,
//! operator, merchant), what (card, product, member class), where (terminal) and when
//! (business day, the card's BCD date-time).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("'{value}' is not a valid {what}: {rule}")]
    Invalid {
        what: &'static str,
        value: String,
        rule: &'static str,
    },
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex<const N: usize>(s: &str, what: &'static str) -> Result<[u8; N], IdError> {
    let err = || IdError::Invalid {
        what,
        value: s.to_string(),
        rule: "expected hex digits",
    };
    if s.len() != 2 * N || !s.is_ascii() {
        return Err(err());
    }
    let mut out = [0u8; N];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| err())?;
    }
    Ok(out)
}

/// A node: its ed25519 public key, which is also its iroh identity.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub [u8; 32]);

impl NodeId {
    /// The first 8 hex digits: enough to tell nodes apart on a screen.
    pub fn short(&self) -> String {
        hex(&self.0[..4])
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.short())
    }
}

impl FromStr for NodeId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        unhex(s, "node id").map(NodeId)
    }
}

/// A network (one chain's cards and nodes), chosen at random when HQ creates it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NetworkId(pub [u8; 16]);

impl fmt::Display for NetworkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl fmt::Debug for NetworkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NetworkId({})", hex(&self.0[..4]))
    }
}

impl FromStr for NetworkId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        unhex(s, "network id").map(NetworkId)
    }
}

macro_rules! name_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                let ok = !s.is_empty()
                    && s.len() <= 32
                    && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
                if ok {
                    Ok($name(s))
                } else {
                    Err(IdError::Invalid {
                        what: $what,
                        value: s,
                        rule: "1 to 32 letters, digits, '-', '_' or '.'",
                    })
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                $name::new(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                $name::new(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }
    };
}

name_id!(
    /// A site: one shop, fuel station or cinema.
    SiteId, "site id"
);
name_id!(
    /// A person who works a terminal (cashier, manager, finance, card desk, admin).
    OperatorId, "operator id"
);
name_id!(
    /// A product in the price book (a fuel grade, a ticket, an article).
    ProductId, "product id"
);
name_id!(
    /// A merchant settled with separately; one chain may host several.
    MerchantId, "merchant id"
);
name_id!(
    /// A member class that discount rules are written for (e.g. `standard`, `gold`).
    MemberClass, "member class"
);

fn bcd_digits(bytes: &[u8]) -> Option<String> {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        for nib in [b >> 4, b & 0x0f] {
            if nib > 9 {
                return None;
            }
            s.push(char::from(b'0' + nib));
        }
    }
    Some(s)
}

fn parse_bcd<const N: usize>(s: &str, what: &'static str) -> Result<[u8; N], IdError> {
    let err = || IdError::Invalid {
        what,
        value: s.to_string(),
        rule: "expected decimal digits",
    };
    if s.len() != 2 * N || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err());
    }
    let d = s.as_bytes();
    let mut out = [0u8; N];
    for (i, b) in out.iter_mut().enumerate() {
        *b = ((d[2 * i] - b'0') << 4) | (d[2 * i + 1] - b'0');
    }
    Ok(out)
}

/// A terminal: 6 bytes BCD (12 digits) exactly as the card and PSAM see it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TerminalId(pub [u8; 6]);

impl fmt::Display for TerminalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match bcd_digits(&self.0) {
            Some(d) => f.write_str(&d),
            None => write!(f, "x{}", hex(&self.0)),
        }
    }
}

impl fmt::Debug for TerminalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TerminalId({self})")
    }
}

impl FromStr for TerminalId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        parse_bcd(s, "terminal id (12 digits)").map(TerminalId)
    }
}

/// A card's application serial number (the card number on the chip): 8 bytes, written
/// as 16 hex digits (usually all decimal).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CardAsn(pub [u8; 8]);

impl fmt::Display for CardAsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl fmt::Debug for CardAsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CardAsn({self})")
    }
}

impl FromStr for CardAsn {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        unhex(s, "card number (16 digits)").map(CardAsn)
    }
}

/// The card's 7-byte BCD date-time `YYYYMMDDhhmmss`, kept as the card saw it because
/// the MACs and TAC are computed over these exact bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct CardTime(pub [u8; 7]);

impl fmt::Display for CardTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match bcd_digits(&self.0) {
            Some(d) => write!(
                f,
                "{}-{}-{} {}:{}:{}",
                &d[0..4],
                &d[4..6],
                &d[6..8],
                &d[8..10],
                &d[10..12],
                &d[12..14]
            ),
            None => write!(f, "x{}", hex(&self.0)),
        }
    }
}

impl fmt::Debug for CardTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CardTime({self})")
    }
}

/// A calendar day in the site's local time, the unit of daily reports and settlement.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BusinessDay {
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

impl BusinessDay {
    /// The local day of the instant `unix_ms` at a site `utc_offset_min` minutes east of UTC.
    pub fn of_instant(unix_ms: i64, utc_offset_min: i32) -> BusinessDay {
        let local_ms = unix_ms + i64::from(utc_offset_min) * 60_000;
        let days = local_ms.div_euclid(86_400_000);
        let (y, m, d) = civil_from_days(days);
        BusinessDay {
            year: y as u16,
            month: m as u8,
            day: d as u8,
        }
    }

    /// `yyyymmdd` as a number: sortable, and what the reports print.
    pub fn ymd(&self) -> u32 {
        u32::from(self.year) * 10_000 + u32::from(self.month) * 100 + u32::from(self.day)
    }
}

impl fmt::Display for BusinessDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl fmt::Debug for BusinessDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BusinessDay({self})")
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Minute of the local day (0..1440) of an instant at a site.
pub fn local_minute_of_day(unix_ms: i64, utc_offset_min: i32) -> u16 {
    let local_ms = unix_ms + i64::from(utc_offset_min) * 60_000;
    (local_ms.rem_euclid(86_400_000) / 60_000) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_id_round_trips_as_twelve_bcd_digits() {
        let t: TerminalId = "010203040506".parse().unwrap();
        assert_eq!(t.0, [0x01, 0x02, 0x03, 0x04, 0x05, 0x06]);
        assert_eq!(t.to_string(), "010203040506");
        assert!("01020304050".parse::<TerminalId>().is_err());
        assert!("01020304050a".parse::<TerminalId>().is_err());
    }

    #[test]
    fn names_are_validated_on_decode_too() {
        assert!(SiteId::new("shop-01").is_ok());
        assert!(SiteId::new("").is_err());
        assert!(SiteId::new("a b").is_err());
        let bytes = postcard::to_stdvec(&"bad name!".to_string()).unwrap();
        assert!(postcard::from_bytes::<SiteId>(&bytes).is_err());
    }

    #[test]
    fn business_day_follows_the_site_offset_across_midnight() {
        // 2026-11-21 16:30 UTC is 2026-11-22 00:30 in Beijing (UTC+8).
        let ms = 1_795_278_600_000;
        assert_eq!(BusinessDay::of_instant(ms, 0).to_string(), "2026-11-21");
        assert_eq!(BusinessDay::of_instant(ms, 480).to_string(), "2026-11-22");
        assert_eq!(local_minute_of_day(ms, 480), 30);
        assert_eq!(BusinessDay::of_instant(0, 0).ymd(), 19_700_101);
        assert_eq!(
            BusinessDay::of_instant(951_782_400_000, 0).to_string(),
            "2000-02-29"
        );
    }
}
