//! The pump flow of one card fill, as a pure state machine (events in, actions out; no
//! I/O, no clock): card grey-locked -> authorize the pump -> live volume and amount ->
//! fill ends -> debit for unlock -> receipt.
//!
//! The node feeds it what happened ([`FlowEvent`]: the POS's grey lock and debit, the
//! driver's replies and status polls) and carries out what it returns ([`FlowAction`]).
//! The money rules live here:
//! - the fill is charged at the price the pump was authorized at, whatever the price
//!   book says by the time the nozzle is hung up;
//! - the debit is never above the grey-locked amount (the preset sent to the pump keeps
//!   the fill within it; the debit is capped again in case a pump overruns);
//! - a fill stopped or broken off by a pump fault is charged for what was delivered.

use cardmesh_model::ids::ProductId;
use cardmesh_model::{Money, Quantity};
use thiserror::Error;

use super::point::max_volume_for;
use super::{AuthorizedPrices, DispenserStatus, GradePrices, NozzleNumber, PointState, Preset};
use crate::printer::{Receipt, ReceiptLine};
use crate::types::Asn;

/// What happened, as the node saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlowEvent {
    /// The POS passed the blacklist and grey-status checks and grey-locked the card:
    /// it may be charged up to `limit`.
    CardLocked {
        /// The card.
        card: Asn,
        /// The most this fill may cost (the customer's preset, or the balance).
        limit: Money,
        /// The customer asked for this many litres instead of an amount.
        volume: Option<Quantity>,
        /// Today's prices of the station's grades.
        prices: GradePrices,
    },
    /// The driver authorized the pump at these prices.
    PumpAuthorized(AuthorizedPrices),
    /// The driver could not authorize the pump.
    AuthorizeFailed(String),
    /// A status poll of the pump.
    Pump(DispenserStatus),
    /// The cashier or the customer pressed stop.
    StopPressed,
    /// The POS debited the card for unlock.
    Debited {
        /// The card's balance after the debit.
        balance_after: Money,
    },
    /// The debit could not be made now (card removed, node restarting): the grey record
    /// stays in the feed and the debit completes when the card comes back.
    DebitDeferred,
}

/// What the node must do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlowAction {
    /// Call [`super::Dispenser::authorize`] with these.
    AuthorizePump {
        /// Preset within the grey lock.
        preset: Preset,
        /// Prices to authorize at.
        prices: GradePrices,
    },
    /// Call [`super::Dispenser::stop`].
    StopPump,
    /// Debit the card for unlock with `fill.amount` (possibly zero, which just unlocks).
    Debit(Fill),
    /// Print this receipt.
    Print(Receipt),
    /// Call [`super::Dispenser::reset`]: the pump's totals are no longer needed.
    ResetPump,
}

/// How a fill ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FillEnd {
    /// The nozzle was hung up or the preset was reached.
    Completed,
    /// Stopped by the stop button.
    Stopped,
    /// The pump faulted with this alarm code.
    Fault(u8),
    /// The pump was never authorized.
    NotAuthorized,
}

/// The outcome of a fill: what to debit and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fill {
    /// The card.
    pub card: Asn,
    /// The grey-locked limit.
    pub limit: Money,
    /// The nozzle used, if any was.
    pub nozzle: Option<NozzleNumber>,
    /// Its grade.
    pub grade: Option<ProductId>,
    /// The price at authorization, fen per litre.
    pub price: Money,
    /// Delivered.
    pub volume: Quantity,
    /// To debit: `price x volume`, at most `limit`.
    pub amount: Money,
    /// How it ended.
    pub end: FillEnd,
}

/// Live figures of a fill for the dashboard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Live {
    /// The pump's state.
    pub state: PointState,
    /// Delivered so far.
    pub volume: Quantity,
    /// At the price of authorization.
    pub amount: Money,
}

/// Where the flow is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stage {
    /// No card.
    WaitingForCard,
    /// Authorization sent to the pump.
    Authorizing,
    /// The pump is authorized or delivering.
    Fuelling,
    /// The fill ended; the debit is being made.
    Debiting,
    /// Debited and printed.
    Done,
    /// The debit waits for the card to come back.
    Deferred,
}

/// An event that does not fit the flow's stage; nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{event} does not fit a pump flow that is {stage:?}")]
pub struct FlowError {
    /// The event.
    pub event: &'static str,
    /// The stage it arrived in.
    pub stage: Stage,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Card {
    asn: Asn,
    limit: Money,
}

/// One card fill at one fuelling point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PumpFlow {
    stage: Stage,
    card: Option<Card>,
    auth: Option<AuthorizedPrices>,
    last: Option<DispenserStatus>,
    stop_pressed: bool,
    fill: Option<Fill>,
}

impl Default for PumpFlow {
    fn default() -> PumpFlow {
        PumpFlow::new()
    }
}

impl PumpFlow {
    /// A flow waiting for a card.
    pub fn new() -> PumpFlow {
        PumpFlow {
            stage: Stage::WaitingForCard,
            card: None,
            auth: None,
            last: None,
            stop_pressed: false,
            fill: None,
        }
    }

    /// The stage.
    pub fn stage(&self) -> &Stage {
        &self.stage
    }

    /// The fill's outcome, once it ended.
    pub fn fill(&self) -> Option<&Fill> {
        self.fill.as_ref()
    }

    /// Live figures while fuelling (at the price of authorization).
    pub fn live(&self) -> Option<Live> {
        let s = self.last.as_ref()?;
        let price = self.price_of(s);
        Some(Live {
            state: s.point.state,
            volume: s.point.volume,
            amount: self.charge(price, s.point.volume),
        })
    }

    fn unexpected(&self, event: &'static str) -> FlowError {
        FlowError {
            event,
            stage: self.stage.clone(),
        }
    }

    fn price_of(&self, s: &DispenserStatus) -> Money {
        let auth = s
            .point
            .nozzle
            .and_then(|n| self.auth.as_ref()?.for_nozzle(n))
            .map(|(_, p)| p);
        // A nozzle that was not authorized cannot deliver on a working pump; if one
        // did, its own price is the best evidence, and the lock still caps the debit.
        auth.or(s.point.price).unwrap_or(Money::ZERO)
    }

    fn charge(&self, price: Money, volume: Quantity) -> Money {
        let limit = self.card.as_ref().map_or(Money::ZERO, |c| c.limit);
        price
            .times_quantity(volume)
            .unwrap_or(limit)
            .min(limit)
            .max(Money::ZERO)
    }

    /// Handles one event and returns what to do; an event that does not fit changes
    /// nothing.
    pub fn handle(&mut self, ev: FlowEvent) -> Result<Vec<FlowAction>, FlowError> {
        match (ev, &self.stage) {
            (
                FlowEvent::CardLocked {
                    card,
                    limit,
                    volume,
                    prices,
                },
                Stage::WaitingForCard,
            ) => {
                let preset = preset_within(limit, volume, &prices);
                self.card = Some(Card { asn: card, limit });
                self.stage = Stage::Authorizing;
                Ok(vec![FlowAction::AuthorizePump { preset, prices }])
            }
            (FlowEvent::PumpAuthorized(auth), Stage::Authorizing) => {
                self.auth = Some(auth);
                self.stage = Stage::Fuelling;
                Ok(Vec::new())
            }
            (FlowEvent::AuthorizeFailed(_), Stage::Authorizing) => {
                Ok(self.end(FillEnd::NotAuthorized))
            }
            (FlowEvent::StopPressed, Stage::Fuelling) => {
                self.stop_pressed = true;
                Ok(vec![FlowAction::StopPump])
            }
            (FlowEvent::Pump(s), Stage::Fuelling) => {
                let state = s.point.state;
                let alarm = s.point.alarm;
                self.last = Some(s);
                Ok(match state {
                    PointState::Authorized | PointState::Filling => Vec::new(),
                    PointState::Error => self.end(FillEnd::Fault(alarm.unwrap_or(0))),
                    PointState::Completed if self.stop_pressed => self.end(FillEnd::Stopped),
                    PointState::Completed => self.end(FillEnd::Completed),
                    // Reset behind our back (power cut): charge what was last seen.
                    PointState::Idle | PointState::Calling => {
                        self.end(FillEnd::Fault(alarm.unwrap_or(0)))
                    }
                })
            }
            (FlowEvent::Pump(s), _) => {
                self.last = Some(s);
                Ok(Vec::new())
            }
            (FlowEvent::Debited { balance_after }, Stage::Debiting) => {
                self.stage = Stage::Done;
                Ok(vec![
                    FlowAction::Print(self.receipt(Some(balance_after))),
                    FlowAction::ResetPump,
                ])
            }
            (FlowEvent::DebitDeferred, Stage::Debiting) => {
                self.stage = Stage::Deferred;
                Ok(vec![
                    FlowAction::Print(self.receipt(None)),
                    FlowAction::ResetPump,
                ])
            }
            (FlowEvent::CardLocked { .. }, _) => Err(self.unexpected("a second card")),
            (FlowEvent::PumpAuthorized(_), _) => Err(self.unexpected("a pump authorization")),
            (FlowEvent::AuthorizeFailed(_), _) => Err(self.unexpected("a failed authorization")),
            (FlowEvent::StopPressed, _) => Err(self.unexpected("stop")),
            (FlowEvent::Debited { .. }, _) => Err(self.unexpected("a debit")),
            (FlowEvent::DebitDeferred, _) => Err(self.unexpected("a deferred debit")),
        }
    }

    fn end(&mut self, end: FillEnd) -> Vec<FlowAction> {
        let Some(card) = self.card.clone() else {
            return Vec::new();
        };
        let (nozzle, grade, price, volume) = match &self.last {
            Some(s) if end != FillEnd::NotAuthorized => (
                s.point.nozzle,
                s.grade.clone(),
                self.price_of(s),
                s.point.volume,
            ),
            _ => (None, None, Money::ZERO, Quantity::from_milli(0)),
        };
        let fill = Fill {
            amount: self.charge(price, volume),
            card: card.asn,
            limit: card.limit,
            nozzle,
            grade,
            price,
            volume,
            end,
        };
        debug_assert!(fill.amount <= fill.limit && fill.amount >= Money::ZERO);
        self.fill = Some(fill.clone());
        self.stage = Stage::Debiting;
        vec![FlowAction::Debit(fill)]
    }

    fn receipt(&self, balance_after: Option<Money>) -> Receipt {
        let mut items = Vec::new();
        if let Some(f) = &self.fill {
            items.push(ReceiptLine::new("卡号 Card", f.card.to_string()));
            if let Some(n) = f.nozzle {
                items.push(ReceiptLine::new("油枪 Nozzle", n.get().to_string()));
            }
            if let Some(g) = &f.grade {
                items.push(ReceiptLine::new("油品 Grade", g.to_string()));
            }
            items.push(ReceiptLine::new("单价 Price/L", f.price.to_string()));
            items.push(ReceiptLine::new(
                "升数 Litres",
                format!("{:.3}", Litres(f.volume)),
            ));
            items.push(ReceiptLine::new("金额 Amount", f.amount.to_string()));
            match f.end {
                FillEnd::Completed => {}
                FillEnd::Stopped => items.push(ReceiptLine::new("备注 Note", "中途停止 Stopped")),
                FillEnd::Fault(code) => items.push(ReceiptLine::new(
                    "备注 Note",
                    format!("油机故障 Pump fault {code:#04x}"),
                )),
                FillEnd::NotAuthorized => {
                    items.push(ReceiptLine::new("备注 Note", "未加油 Pump not authorized"))
                }
            }
            if balance_after.is_none() {
                items.push(ReceiptLine::new(
                    "待扣款 Debit pending",
                    f.amount.to_string(),
                ));
            }
        }
        Receipt {
            items,
            balance_after,
            reprint: false,
        }
    }
}

/// Litres with three decimals, whatever the quantity's own display trims.
struct Litres(Quantity);

impl std::fmt::Display for Litres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ml = self.0.milli();
        write!(f, "{}.{:03}", ml / 1000, (ml % 1000).abs())
    }
}

/// The preset to send: the customer's volume if it cannot cost more than the lock at
/// the dearest grade, else the locked amount.
pub fn preset_within(limit: Money, volume: Option<Quantity>, prices: &GradePrices) -> Preset {
    let dearest = prices.values().copied().max().unwrap_or(Money::ZERO);
    match volume {
        Some(v) if dearest > Money::ZERO && v.milli() <= max_volume_for(limit, dearest) => {
            Preset::Volume(v)
        }
        _ => Preset::Amount(limit),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispenser::{NozzleConfig, PointStatus};
    use proptest::prelude::*;

    fn asn() -> Asn {
        Asn::parse("3100000000000042").unwrap()
    }

    fn g(s: &str) -> ProductId {
        ProductId::new(s).unwrap()
    }

    fn prices(p92: i64) -> GradePrices {
        [
            (g("92"), Money::from_fen(p92)),
            (g("95"), Money::from_fen(810)),
        ]
        .into()
    }

    fn authorized(p92: i64) -> AuthorizedPrices {
        AuthorizedPrices(vec![
            (
                NozzleConfig {
                    nozzle: NozzleNumber::new(1).unwrap(),
                    grade: g("92"),
                },
                Money::from_fen(p92),
            ),
            (
                NozzleConfig {
                    nozzle: NozzleNumber::new(2).unwrap(),
                    grade: g("95"),
                },
                Money::from_fen(810),
            ),
        ])
    }

    fn status(state: PointState, pump_price: i64, ml: i64, alarm: Option<u8>) -> DispenserStatus {
        let price = Money::from_fen(pump_price);
        DispenserStatus {
            point: PointStatus {
                state,
                nozzle: Some(NozzleNumber::new(1).unwrap()),
                nozzle_out: state != PointState::Completed,
                price: Some(price),
                volume: Quantity::from_milli(ml),
                amount: price.times_quantity(Quantity::from_milli(ml)).unwrap(),
                alarm,
            },
            grade: Some(g("92")),
        }
    }

    fn locked(limit: i64) -> PumpFlow {
        let mut f = PumpFlow::new();
        let a = f
            .handle(FlowEvent::CardLocked {
                card: asn(),
                limit: Money::from_fen(limit),
                volume: None,
                prices: prices(750),
            })
            .unwrap();
        assert_eq!(
            a,
            vec![FlowAction::AuthorizePump {
                preset: Preset::Amount(Money::from_fen(limit)),
                prices: prices(750)
            }]
        );
        assert!(
            f.handle(FlowEvent::PumpAuthorized(authorized(750)))
                .unwrap()
                .is_empty()
        );
        f
    }

    fn debit_of(actions: Vec<FlowAction>) -> Fill {
        match actions.as_slice() {
            [FlowAction::Debit(fill)] => fill.clone(),
            other => panic!("expected a debit, got {other:?}"),
        }
    }

    #[test]
    fn full_fill_debits_at_the_authorized_price_and_prints() {
        let mut f = locked(20_000);
        assert!(
            f.handle(FlowEvent::Pump(status(
                PointState::Filling,
                750,
                8_000,
                None
            )))
            .unwrap()
            .is_empty()
        );
        assert_eq!(f.live().unwrap().amount, Money::from_fen(6_000));
        // The pump shows a new price mid-fill (repriced on its display): the authorized
        // 7.50 still holds.
        let fill = debit_of(
            f.handle(FlowEvent::Pump(status(
                PointState::Completed,
                799,
                20_000,
                None,
            )))
            .unwrap(),
        );
        assert_eq!(fill.price, Money::from_fen(750));
        assert_eq!(fill.amount, Money::from_fen(15_000));
        assert_eq!(fill.end, FillEnd::Completed);
        assert_eq!(f.stage(), &Stage::Debiting);
        let a = f
            .handle(FlowEvent::Debited {
                balance_after: Money::from_fen(85_000),
            })
            .unwrap();
        let FlowAction::Print(r) = &a[0] else {
            panic!("{a:?}")
        };
        assert_eq!(a[1], FlowAction::ResetPump);
        assert_eq!(r.balance_after, Some(Money::from_fen(85_000)));
        let lines: Vec<_> = r
            .items
            .iter()
            .map(|l| (l.label.as_str(), l.value.as_str()))
            .collect();
        assert!(lines.contains(&("升数 Litres", "20.000")));
        assert!(lines.contains(&("金额 Amount", "150.00")));
        assert!(lines.contains(&("单价 Price/L", "7.50")));
        assert!(lines.contains(&("油品 Grade", "92")));
        assert_eq!(f.stage(), &Stage::Done);
    }

    #[test]
    fn the_debit_never_exceeds_the_grey_lock() {
        let mut f = locked(10_000);
        // An overrunning pump: 20 litres at 7.50 would be 150.00.
        let fill = debit_of(
            f.handle(FlowEvent::Pump(status(
                PointState::Completed,
                750,
                20_000,
                None,
            )))
            .unwrap(),
        );
        assert_eq!(fill.amount, Money::from_fen(10_000));
    }

    #[test]
    fn stop_and_fault_debit_what_was_delivered() {
        let mut f = locked(20_000);
        assert_eq!(
            f.handle(FlowEvent::StopPressed).unwrap(),
            vec![FlowAction::StopPump]
        );
        let fill = debit_of(
            f.handle(FlowEvent::Pump(status(
                PointState::Completed,
                750,
                3_333,
                None,
            )))
            .unwrap(),
        );
        assert_eq!(
            (fill.end, fill.amount),
            (FillEnd::Stopped, Money::from_fen(2_500))
        );

        let mut f = locked(20_000);
        f.handle(FlowEvent::Pump(status(
            PointState::Filling,
            750,
            1_000,
            None,
        )))
        .unwrap();
        let fill = debit_of(
            f.handle(FlowEvent::Pump(status(
                PointState::Error,
                750,
                1_500,
                Some(0x21),
            )))
            .unwrap(),
        );
        assert_eq!(
            (fill.end, fill.amount),
            (FillEnd::Fault(0x21), Money::from_fen(1_125))
        );
        let a = f.handle(FlowEvent::DebitDeferred).unwrap();
        let FlowAction::Print(r) = &a[0] else {
            panic!("{a:?}")
        };
        assert!(
            r.items
                .iter()
                .any(|l| l.label.starts_with("待扣款") && l.value == "11.25")
        );
        assert!(r.items.iter().any(|l| l.value.contains("0x21")));
        assert_eq!(f.stage(), &Stage::Deferred);
    }

    #[test]
    fn a_failed_authorization_unlocks_for_nothing() {
        let mut f = PumpFlow::new();
        f.handle(FlowEvent::CardLocked {
            card: asn(),
            limit: Money::from_fen(5_000),
            volume: None,
            prices: prices(750),
        })
        .unwrap();
        let fill = debit_of(
            f.handle(FlowEvent::AuthorizeFailed("timeout".into()))
                .unwrap(),
        );
        assert_eq!(
            (fill.end, fill.amount),
            (FillEnd::NotAuthorized, Money::ZERO)
        );
    }

    #[test]
    fn events_out_of_order_change_nothing() {
        let mut f = PumpFlow::new();
        assert!(
            f.handle(FlowEvent::Debited {
                balance_after: Money::ZERO
            })
            .is_err()
        );
        assert!(f.handle(FlowEvent::StopPressed).is_err());
        let mut f = locked(1_000);
        let before = f.clone();
        let e = f
            .handle(FlowEvent::CardLocked {
                card: asn(),
                limit: Money::from_fen(1),
                volume: None,
                prices: prices(1),
            })
            .unwrap_err();
        assert_eq!(e.stage, Stage::Fuelling);
        assert_eq!(f, before);
    }

    #[test]
    fn a_volume_preset_is_used_only_if_it_fits_the_lock() {
        let p = prices(750);
        // 20 litres at the dearest 8.10 is 162.00.
        assert_eq!(
            preset_within(
                Money::from_fen(16_200),
                Some(Quantity::from_milli(20_000)),
                &p
            ),
            Preset::Volume(Quantity::from_milli(20_000))
        );
        assert_eq!(
            preset_within(
                Money::from_fen(16_199),
                Some(Quantity::from_milli(20_000)),
                &p
            ),
            Preset::Amount(Money::from_fen(16_199))
        );
    }

    proptest! {
        #[test]
        fn any_fill_debits_within_the_lock_at_the_authorized_price(
            limit in 0i64..1_000_000,
            auth_price in 1i64..2_000,
            pump_price in 1i64..2_000,
            ml in 0i64..200_000,
            stop in any::<bool>(),
        ) {
            let mut f = PumpFlow::new();
            f.handle(FlowEvent::CardLocked { card: asn(), limit: Money::from_fen(limit), volume: None, prices: prices(auth_price) }).unwrap();
            f.handle(FlowEvent::PumpAuthorized(authorized(auth_price))).unwrap();
            if stop { f.handle(FlowEvent::StopPressed).unwrap(); }
            let fill = debit_of(f.handle(FlowEvent::Pump(status(PointState::Completed, pump_price, ml, None))).unwrap());
            let due = Money::from_fen(auth_price).times_quantity(Quantity::from_milli(ml)).unwrap();
            prop_assert_eq!(fill.amount, due.min(Money::from_fen(limit)));
        }
    }
}
