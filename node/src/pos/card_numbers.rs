//! Card numbers (ASNs) for primary issue, chosen offline by any issuing node without
//! ever colliding with another's: the 16 digits are the personalizing terminal's 12
//! digits followed by that terminal's own 4-digit count (0001-9999). HQ registers each
//! terminal id to one site and a terminal's count is kept durably in its node's store,
//! so two nodes can never produce the same number, whatever they do offline. Pure.

use cardmesh_model::{CardAsn, TerminalId};

/// Card numbers one terminal can hand out; then HQ registers it another terminal.
pub const PER_TERMINAL: u64 = 9_999;

/// The `n`th card number of `terminal` (n from 1); `None` past [`PER_TERMINAL`].
pub fn card_number(terminal: TerminalId, n: u64) -> Option<CardAsn> {
    if !(1..=PER_TERMINAL).contains(&n) {
        return None;
    }
    let digits = [n / 1000, n / 100 % 10, n / 10 % 10, n % 10].map(|d| d as u8);
    let mut asn = [0u8; 8];
    asn[..6].copy_from_slice(&terminal.0);
    asn[6] = (digits[0] << 4) | digits[1];
    asn[7] = (digits[2] << 4) | digits[3];
    Some(CardAsn(asn))
}

/// Whether `asn` is one of the first `last` numbers of `terminal`.
pub fn is_numbered_by(asn: CardAsn, terminal: TerminalId, last: u64) -> bool {
    (1..=last.min(PER_TERMINAL)).any(|n| card_number(terminal, n) == Some(asn))
}

/// The name of the durable counter of `terminal`'s card numbers in the store.
pub fn counter_name(terminal: TerminalId) -> String {
    format!("pos/card-numbers/{terminal}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> TerminalId {
        s.parse().unwrap()
    }

    #[test]
    fn card_number_is_the_terminal_then_its_count() {
        let asn = card_number(t("000000000301"), 42).unwrap();
        assert_eq!(asn.to_string(), "0000000003010042");
        assert_eq!(
            card_number(t("123456789012"), 9999).unwrap().to_string(),
            "1234567890129999"
        );
    }

    #[test]
    fn numbers_of_two_terminals_never_meet_and_the_range_is_bounded() {
        let a: Vec<_> = (1..=PER_TERMINAL)
            .map(|n| card_number(t("000000000301"), n).unwrap())
            .collect();
        let b: std::collections::BTreeSet<_> = (1..=PER_TERMINAL)
            .map(|n| card_number(t("000000000302"), n).unwrap())
            .collect();
        let distinct: std::collections::BTreeSet<_> = a.iter().collect();
        assert_eq!(distinct.len(), a.len());
        assert!(a.iter().all(|x| !b.contains(x)));
        assert_eq!(card_number(t("000000000301"), 0), None);
        assert_eq!(card_number(t("000000000301"), PER_TERMINAL + 1), None);
        assert!(is_numbered_by(a[41], t("000000000301"), 42));
        assert!(!is_numbered_by(a[42], t("000000000301"), 42));
        assert!(!is_numbered_by(a[0], t("000000000302"), PER_TERMINAL));
    }
}
