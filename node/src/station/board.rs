//! The live state of each fuelling point as plain data, for the console and scripts:
//! each point's worker writes its own snapshot, anyone may copy the board.

use std::sync::{Arc, Mutex, PoisonError};

use cardmesh_drivers::dispenser::flow::Stage;
use cardmesh_drivers::dispenser::{NozzleNumber, PointState};
use cardmesh_model::{CardAsn, Money, ProductId, Quantity, TerminalId};

/// One fuelling point, as last seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PointSnapshot {
    /// 1-based, in config order.
    pub point: usize,
    /// The point's POS terminal.
    pub terminal: TerminalId,
    /// What the pump last reported; `None` until it first answers.
    pub state: Option<PointState>,
    /// Where the card fill is.
    pub stage: Stage,
    /// The nozzle lifted or last used.
    pub nozzle: Option<NozzleNumber>,
    /// Its grade.
    pub grade: Option<ProductId>,
    /// Delivered in the current (or last) fill.
    pub volume: Quantity,
    /// Its amount at the price of authorization.
    pub amount: Money,
    /// The card in the reader (served, or being served).
    pub card: Option<CardAsn>,
    /// The last thing that went wrong, in words for the cashier; cleared by the next
    /// card.
    pub last_error: Option<String>,
    /// Fills finished (debited or deferred) since the station started, deferred
    /// debits completed here included.
    pub fills: u64,
}

impl PointSnapshot {
    /// A point before anything happened.
    pub fn new(point: usize, terminal: TerminalId) -> PointSnapshot {
        PointSnapshot {
            point,
            terminal,
            state: None,
            stage: Stage::WaitingForCard,
            nozzle: None,
            grade: None,
            volume: Quantity::from_milli(0),
            amount: Money::ZERO,
            card: None,
            last_error: None,
            fills: 0,
        }
    }
}

/// One dashboard line: `1 000000000301 filling nozzle 1 (92) 10.000 L 75.00 card
/// 1000000000000007`, then the last error if any.
impl std::fmt::Display for PointSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} ", self.point, self.terminal)?;
        match self.state {
            Some(s) => write!(f, "{s}")?,
            None => f.write_str("not answering")?,
        }
        if let Some(n) = self.nozzle {
            write!(f, " nozzle {}", n.get())?;
        }
        if let Some(g) = &self.grade {
            write!(f, " ({g})")?;
        }
        let ml = self.volume.milli();
        write!(f, " {}.{:03} L {}", ml / 1000, ml % 1000, self.amount)?;
        if let Some(c) = &self.card {
            write!(f, " card {c}")?;
        }
        if let Some(e) = &self.last_error {
            write!(f, ": {e}")?;
        }
        Ok(())
    }
}

/// The snapshots of every point of a station.
#[derive(Clone, Debug, Default)]
pub struct Board(Arc<Mutex<Vec<PointSnapshot>>>);

impl Board {
    /// A board of these points.
    pub fn new(points: Vec<PointSnapshot>) -> Board {
        Board(Arc::new(Mutex::new(points)))
    }

    /// A copy of every point's snapshot.
    pub fn snapshot(&self) -> Vec<PointSnapshot> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Changes point `index` (0-based).
    pub(crate) fn update(&self, index: usize, f: impl FnOnce(&mut PointSnapshot)) {
        let mut points = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(p) = points.get_mut(index) {
            f(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_point_reads_as_one_dashboard_line() {
        let mut p = PointSnapshot::new(1, "000000000301".parse().unwrap());
        assert_eq!(p.to_string(), "1 000000000301 not answering 0.000 L 0.00");
        p.state = Some(PointState::Filling);
        p.nozzle = Some(NozzleNumber::new(1).unwrap());
        p.grade = Some(ProductId::new("92").unwrap());
        p.volume = Quantity::from_milli(10_005);
        p.amount = Money::from_fen(7_504);
        p.card = Some(CardAsn([0x10, 0, 0, 0, 0, 0, 0, 7]));
        assert_eq!(
            p.to_string(),
            "1 000000000301 filling nozzle 1 (92) 10.005 L 75.04 card 1000000000000007"
        );
        p.last_error = Some("card removed".into());
        assert!(p.to_string().ends_with("1000000000000007: card removed"));
    }
}
