//! The card reader of the simulation: an in-process slot holding a virtual chip, from
//! which the customer may pull the card at a chosen command, before or after the chip
//! executed it (the case the POS intents exist for).

use cardmesh_drivers::apdu::ApduProcessor;
use cardmesh_drivers::card::VirtualCard;
use cardmesh_drivers::reader::{CardReader, ReaderError};
use std::time::Duration;

/// When the card leaves the reader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pull {
    /// The command (counted from 1) during which the card is pulled.
    pub at_command: u32,
    /// The chip executed that command before it lost power.
    pub executed: bool,
}

pub struct SimReader {
    chip: Option<VirtualCard>,
    pull: Option<Pull>,
    commands: u32,
}

impl SimReader {
    pub fn new(mut chip: VirtualCard, pull: Option<Pull>) -> SimReader {
        chip.reset();
        SimReader {
            chip: Some(chip),
            pull,
            commands: 0,
        }
    }

    /// The chip, wherever it is now (in the slot or in the customer's hand).
    pub fn take(self) -> VirtualCard {
        self.chip.expect("the chip is never lost, only pulled")
    }

    /// The card was pulled during an operation.
    pub fn pulled(&self) -> bool {
        self.pull.is_some_and(|p| self.commands >= p.at_command)
    }
}

impl CardReader for SimReader {
    fn transmit(&mut self, c_apdu: &[u8]) -> Result<Vec<u8>, ReaderError> {
        let chip = self.chip.as_mut().ok_or(ReaderError::NoCard)?;
        self.commands += 1;
        match self.pull {
            Some(p) if self.commands == p.at_command => {
                if p.executed {
                    chip.process(c_apdu);
                }
                Err(ReaderError::CardRemoved)
            }
            Some(p) if self.commands > p.at_command => Err(ReaderError::NoCard),
            _ => Ok(chip.process(c_apdu)),
        }
    }

    fn wait_for_card(&mut self, _: Duration) -> Result<(), ReaderError> {
        Ok(())
    }

    fn wait_for_removal(&mut self, _: Duration) -> Result<(), ReaderError> {
        Ok(())
    }
}
