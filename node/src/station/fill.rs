//! The station's own decisions about a fill, pure: how much a card may be grey-locked
//! for, the deferred-debit record logged when the card is gone before its debit, and the
//! journal of the fill in progress at a fuelling point, from which a restarted station
//! picks the fill up again with the pump's totals.
//!
//! The journal is local (the node's config table, not its feed): the grey lock entry is
//! what replicates; the journal only says which pump that lock is fuelling through.

use cardmesh_drivers::dispenser::flow::{FlowError, FlowEvent, PumpFlow};
use cardmesh_drivers::dispenser::point::MAX_8_DIGITS;
use cardmesh_drivers::dispenser::{
    AuthorizedPrices, GradePrices, NozzleConfig, PointState, authorized_prices,
};
use cardmesh_drivers::types::Asn;
use cardmesh_model::body::{CardTxn, EntryRef, TxnKind};
use cardmesh_model::{Money, TerminalId};
use serde::{Deserialize, Serialize};

/// The most a fill may cost: the customer's preset or the station's maximum, within
/// the card's balance and what a pump preset can carry. `None` if that is nothing.
pub fn fill_limit(balance: Money, preset: Option<Money>, max_fill: Money) -> Option<Money> {
    let cap = preset.map_or(max_fill, |p| p.min(max_fill));
    let limit = balance.min(cap).min(Money::from_fen(MAX_8_DIGITS));
    (limit > Money::ZERO).then_some(limit)
}

/// The fill in progress at one fuelling point, written when the card is grey-locked
/// and again when the pump is authorized.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    /// The grey lock as logged.
    pub lock: CardTxn,
    /// Its entry.
    pub lock_entry: EntryRef,
    /// The most this fill may cost.
    pub limit: Money,
    /// The prices the pump was to be authorized at.
    pub prices: GradePrices,
    /// The prices it was authorized at, once it was.
    pub authorized: Option<AuthorizedPrices>,
}

/// The config key of a point's journal.
pub fn journal_key(terminal: &TerminalId) -> String {
    format!("station/fill/{terminal}")
}

impl Journal {
    /// The flow event that started this fill.
    pub fn locked_event(&self) -> FlowEvent {
        FlowEvent::CardLocked {
            card: Asn(self.lock.asn.0),
            limit: self.limit,
            volume: None,
            prices: self.prices.clone(),
        }
    }

    /// The card counter the debit for unlock of this lock consumes.
    pub fn unlock_counter(&self) -> u16 {
        self.lock.card_counter.wrapping_add(1)
    }
}

/// Rebuilds the flow of a journaled fill after a restart, and the event that carries
/// it on given the pump's state now. A pump that is authorized, filling or holding a
/// completed fill was authorized (at the journaled prices, if the station died before it
/// could note the reply); any other pump never delivered for this card.
pub fn resume(
    j: &Journal,
    pump: PointState,
    nozzles: &[NozzleConfig],
) -> Result<(PumpFlow, FlowEvent), FlowError> {
    let mut flow = PumpFlow::new();
    // The authorization this asks for was sent (or not) before the restart.
    flow.handle(j.locked_event())?;
    let next = match (&j.authorized, pump) {
        (Some(a), _) => FlowEvent::PumpAuthorized(a.clone()),
        (None, PointState::Authorized | PointState::Filling | PointState::Completed) => {
            FlowEvent::PumpAuthorized(authorized_prices(nozzles, &j.prices))
        }
        (None, PointState::Idle | PointState::Calling | PointState::Error) => {
            FlowEvent::AuthorizeFailed("the station stopped before the pump was authorized".into())
        }
    };
    Ok((flow, next))
}

/// The debit for unlock this fill owes, logged as an intent when the card is gone
/// before it could be debited: the record that lets any station holding it complete the
/// debit when the card comes back (`Pos::unlock` without an amount). It carries the
/// counter and terminal sequence the debit will use, and no MACs: the card has not seen
/// it.
pub fn deferred_debit(lock: &CardTxn, lock_entry: EntryRef, amount: Money) -> CardTxn {
    let mut t = lock.clone();
    t.kind = TxnKind::DebitForUnlock;
    t.card_counter = lock.card_counter.wrapping_add(1);
    t.term_seq = lock.term_seq.wrapping_add(1);
    t.amount = amount;
    t.balance_before = lock.balance_before;
    t.balance_after = Money::from_fen(lock.balance_before.fen().saturating_sub(amount.fen()));
    t.mac1 = [0; 4];
    t.mac2 = [0; 4];
    t.tac = [0; 4];
    t.items = Vec::new();
    t.refers_to = Some(lock_entry);
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use cardmesh_drivers::dispenser::NozzleNumber;
    use cardmesh_drivers::dispenser::flow::Stage;
    use cardmesh_model::{BusinessDay, CardAsn, CardTime, NodeId, ProductId};

    fn m(fen: i64) -> Money {
        Money::from_fen(fen)
    }

    fn journal(authorized: Option<AuthorizedPrices>) -> Journal {
        Journal {
            lock: CardTxn {
                kind: TxnKind::GreyLock,
                asn: CardAsn([0x10, 0, 0, 0, 0, 0, 0, 7]),
                site: "station-1".parse().unwrap(),
                terminal: "000000000301".parse().unwrap(),
                operator: Some("cash-1".parse().unwrap()),
                business_day: BusinessDay {
                    year: 2026,
                    month: 11,
                    day: 22,
                },
                card_time: CardTime([0x20, 0x26, 0x11, 0x22, 0x08, 0x30, 0x00]),
                card_counter: 4,
                term_seq: 17,
                amount: Money::ZERO,
                balance_before: m(50_000),
                balance_after: m(50_000),
                mac1: [1; 4],
                mac2: [2; 4],
                tac: [3; 4],
                items: Vec::new(),
                refers_to: None,
            },
            lock_entry: EntryRef {
                origin: NodeId([9; 32]),
                seq: 12,
            },
            limit: m(50_000),
            prices: [(ProductId::new("92").unwrap(), m(750))].into(),
            authorized,
        }
    }

    fn nozzles() -> Vec<NozzleConfig> {
        vec![NozzleConfig {
            nozzle: NozzleNumber::new(1).unwrap(),
            grade: ProductId::new("92").unwrap(),
        }]
    }

    #[test]
    fn the_limit_is_the_smallest_of_balance_preset_and_maximum() {
        assert_eq!(fill_limit(m(50_000), None, m(100_000)), Some(m(50_000)));
        assert_eq!(fill_limit(m(500_000), None, m(100_000)), Some(m(100_000)));
        assert_eq!(
            fill_limit(m(500_000), Some(m(20_000)), m(100_000)),
            Some(m(20_000))
        );
        assert_eq!(
            fill_limit(m(500_000), Some(m(900_000)), m(100_000)),
            Some(m(100_000))
        );
        assert_eq!(fill_limit(Money::ZERO, None, m(100_000)), None);
        assert_eq!(fill_limit(m(100), Some(Money::ZERO), m(100_000)), None);
    }

    #[test]
    fn the_deferred_debit_is_the_unlock_of_its_lock() {
        let j = journal(None);
        let t = deferred_debit(&j.lock, j.lock_entry, m(9_000));
        assert_eq!(t.kind, TxnKind::DebitForUnlock);
        assert_eq!(t.card_counter, j.unlock_counter());
        assert_eq!(t.card_counter, 5);
        assert_eq!(t.term_seq, 18);
        assert_eq!((t.balance_before, t.balance_after), (m(50_000), m(41_000)));
        assert_eq!(t.refers_to, Some(j.lock_entry));
        assert_eq!((t.mac1, t.mac2, t.tac), ([0; 4], [0; 4], [0; 4]));
        assert_eq!(t.asn, j.lock.asn);
    }

    #[test]
    fn a_restarted_fill_goes_on_at_its_authorized_prices() {
        let auth = authorized_prices(
            &nozzles(),
            &[(ProductId::new("92").unwrap(), m(730))].into(),
        );
        let (flow, next) =
            resume(&journal(Some(auth.clone())), PointState::Idle, &nozzles()).unwrap();
        assert_eq!(flow.stage(), &Stage::Authorizing);
        assert_eq!(next, FlowEvent::PumpAuthorized(auth));
    }

    #[test]
    fn a_restart_before_the_reply_asks_the_pump() {
        let j = journal(None);
        for state in [
            PointState::Authorized,
            PointState::Filling,
            PointState::Completed,
        ] {
            let (_, next) = resume(&j, state, &nozzles()).unwrap();
            assert_eq!(
                next,
                FlowEvent::PumpAuthorized(authorized_prices(&nozzles(), &j.prices)),
                "{state}"
            );
        }
        for state in [PointState::Idle, PointState::Calling, PointState::Error] {
            let (_, next) = resume(&j, state, &nozzles()).unwrap();
            assert!(matches!(next, FlowEvent::AuthorizeFailed(_)), "{state}");
        }
    }
}
