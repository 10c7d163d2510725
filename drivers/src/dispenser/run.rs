//! The pump's side of a [`PumpFlow`](super::flow::PumpFlow): carries out the flow
//! actions that concern the dispenser and turns the outcome into the flow's next event.
//! The debit and the receipt are the node's (POS and printer).
//!
//! A lost reply is the hard case: an AUTHORIZE whose ACK was damaged may have been
//! applied. Unless the pump refused it outright, its status decides, so fuel never
//! flows on a fill the flow thinks was not authorized.

use super::flow::{FlowAction, FlowEvent};
use super::{Dispenser, DispenserError, PointState, authorized_prices};

/// Runs `action` on `d` if it is a pump action; returns the event to feed back into
/// the flow, if any. An `Err` means the pump's state is unknown: poll
/// [`Dispenser::status`] and run the action again.
pub fn run_pump_action(
    d: &mut dyn Dispenser,
    action: &FlowAction,
) -> Result<Option<FlowEvent>, DispenserError> {
    match action {
        FlowAction::AuthorizePump { preset, prices } => match d.authorize(*preset, prices) {
            Ok(p) => Ok(Some(FlowEvent::PumpAuthorized(p))),
            Err(e @ (DispenserError::Refused(_) | DispenserError::NoPricedNozzle)) => {
                Ok(Some(FlowEvent::AuthorizeFailed(e.to_string())))
            }
            Err(e) => {
                let s = d.status()?;
                Ok(Some(match s.point.state {
                    PointState::Authorized | PointState::Filling | PointState::Completed => {
                        FlowEvent::PumpAuthorized(authorized_prices(d.nozzles(), prices))
                    }
                    PointState::Idle | PointState::Calling | PointState::Error => {
                        FlowEvent::AuthorizeFailed(e.to_string())
                    }
                }))
            }
        },
        // A refused STOP means the fill already ended; the next status poll says how.
        FlowAction::StopPump => match d.stop() {
            Ok(()) | Err(DispenserError::Refused(_)) => Ok(None),
            Err(e) => Err(e),
        },
        FlowAction::ResetPump => d.reset().map(|()| None),
        FlowAction::Debit(_) | FlowAction::Print(_) => Ok(None),
    }
}
