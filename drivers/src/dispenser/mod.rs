//! Fuel dispensers: the IFSF-shaped fuelling point ([`point`]), the [`Dispenser`] trait
//! every dispenser protocol's driver implements, the DART-style protocol ([`dart`]) with
//! its serial driver ([`driver`]) and simulator ([`sim`]), the pure pump flow that
//! sequences a card fill ([`flow`]) and the pump's side of carrying it out ([`run`]).
//!
//! One driver talks to one fuelling point on one serial port (the seed systems wire each
//! point to its own port of an 8- or 16-port hub). Calls block for at most the reply
//! timeout; the node runs each point's driver on a blocking thread of its own and polls
//! [`Dispenser::status`].

pub mod dart;
pub mod driver;
pub mod flow;
pub mod point;
pub mod run;
pub mod sim;

use std::collections::BTreeMap;
use std::io;

use cardmesh_model::Money;
use cardmesh_model::ids::ProductId;
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use point::{NozzleNumber, PointState, PointStatus, Preset};

/// The station's current price of each grade, fen per litre.
pub type GradePrices = BTreeMap<ProductId, Money>;

/// Which grade a nozzle delivers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NozzleConfig {
    /// The nozzle.
    pub nozzle: NozzleNumber,
    /// The grade (a product of the price book, e.g. `92`, `95`, `0-diesel`).
    pub grade: ProductId,
}

/// A fuelling point's status with the grade of its nozzle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DispenserStatus {
    /// What the pump reports.
    pub point: PointStatus,
    /// The grade of `point.nozzle`, if configured.
    pub grade: Option<ProductId>,
}

/// One line for the station's dashboard: `nozzle 2 (95) filling 24.691 L 200.00`.
impl std::fmt::Display for DispenserStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = &self.point;
        if let Some(n) = p.nozzle {
            write!(f, "nozzle {}", n.get())?;
            if let Some(g) = &self.grade {
                write!(f, " ({g})")?;
            }
            f.write_str(" ")?;
        }
        write!(f, "{}", p.state)?;
        if let Some(a) = p.alarm {
            write!(f, " (alarm {a:#04x})")?;
        }
        if p.volume.milli() > 0 || matches!(p.state, PointState::Filling | PointState::Completed) {
            let ml = p.volume.milli();
            write!(f, " {}.{:03} L {}", ml / 1000, ml % 1000, p.amount)?;
        }
        Ok(())
    }
}

/// The prices a fill was authorized at, per nozzle: they hold for the whole fill.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizedPrices(pub Vec<(NozzleConfig, Money)>);

impl AuthorizedPrices {
    /// The price nozzle `n` was authorized at.
    pub fn for_nozzle(&self, n: NozzleNumber) -> Option<(&ProductId, Money)> {
        self.0
            .iter()
            .find(|(c, _)| c.nozzle == n)
            .map(|(c, p)| (&c.grade, *p))
    }
}

/// The nozzles of `nozzles` whose grade has a price in `prices`, with that price: what
/// an authorization sends and then charges at.
pub fn authorized_prices(nozzles: &[NozzleConfig], prices: &GradePrices) -> AuthorizedPrices {
    AuthorizedPrices(
        nozzles
            .iter()
            .filter_map(|c| prices.get(&c.grade).map(|p| (c.clone(), *p)))
            .collect(),
    )
}

/// A dispenser operation failed.
#[derive(Debug, Error)]
pub enum DispenserError {
    /// The serial port could not be opened.
    #[error("cannot open the dispenser's serial port {port}: {reason}")]
    Open {
        /// The port.
        port: String,
        /// Why.
        reason: String,
    },
    /// Reading or writing the port failed.
    #[error("dispenser serial line error: {0}")]
    Io(#[from] io::Error),
    /// No reply within the timeout.
    #[error(
        "the dispenser at address {0:#04x} did not answer: check the cable, its address and that it is powered"
    )]
    Timeout(u8),
    /// A damaged frame arrived.
    #[error("damaged frame from the dispenser: {0}")]
    Frame(#[from] dart::DartError),
    /// The reply came from another address.
    #[error(
        "reply from address {got:#04x}, expected {expected:#04x}: two pumps share a line or an address is misconfigured"
    )]
    WrongAddress {
        /// Configured.
        expected: u8,
        /// Received.
        got: u8,
    },
    /// The pump refused the command in its current state.
    #[error("the dispenser refused {0}: check the fuelling point's state")]
    Refused(&'static str),
    /// An answer of a kind that does not fit the request.
    #[error("unexpected {0:?} frame from the dispenser")]
    Unexpected(dart::Kind),
    /// None of the point's nozzles has a price.
    #[error("no grade of this fuelling point has a price: set the station's prices first")]
    NoPricedNozzle,
    /// The configuration is not usable.
    #[error("dispenser configuration: {0}")]
    Config(String),
}

/// One fuelling point, whatever protocol its dispenser speaks.
pub trait Dispenser {
    /// The nozzles and their grades.
    fn nozzles(&self) -> &[NozzleConfig];
    /// Reads the state and the current (or last) fill.
    fn status(&mut self) -> Result<DispenserStatus, DispenserError>;
    /// Ends a completed or failed fill (its totals are cleared) and cancels an
    /// authorization that has not delivered.
    fn reset(&mut self) -> Result<(), DispenserError>;
    /// Authorizes one fill up to `preset`, at today's `prices` for the nozzles whose
    /// grade has one. Returns the prices sent: the fill is charged at those.
    fn authorize(
        &mut self,
        preset: Preset,
        prices: &GradePrices,
    ) -> Result<AuthorizedPrices, DispenserError>;
    /// Stops delivery; what was delivered stands.
    fn stop(&mut self) -> Result<(), DispenserError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use cardmesh_model::Quantity;

    #[test]
    fn dashboard_line_shows_nozzle_grade_state_and_totals() {
        let mut s = DispenserStatus {
            point: PointStatus {
                state: PointState::Filling,
                nozzle: Some(NozzleNumber::new(2).unwrap()),
                nozzle_out: true,
                price: Some(Money::from_fen(810)),
                volume: Quantity::from_milli(24_691),
                amount: Money::from_fen(20_000),
                alarm: None,
            },
            grade: Some(ProductId::new("95").unwrap()),
        };
        assert_eq!(s.to_string(), "nozzle 2 (95) filling 24.691 L 200.00");
        s.point.state = PointState::Error;
        s.point.alarm = Some(0x21);
        assert_eq!(
            s.to_string(),
            "nozzle 2 (95) error (alarm 0x21) 24.691 L 200.00"
        );
        s.point = PointStatus {
            state: PointState::Idle,
            nozzle: None,
            nozzle_out: false,
            price: None,
            volume: Quantity::from_milli(0),
            amount: Money::ZERO,
            alarm: None,
        };
        assert_eq!(s.to_string(), "idle");
    }
}
