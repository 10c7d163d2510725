//! Card readers: the blocking [`CardReader`] trait the e-purse client and the PSAM
//! client talk through, its errors, and the readers: PC/SC ([`pcsc`]), serial
//! ([`serial`], with its frame and simulator) and in-process ([`MemoryReader`]).
//! The node calls these from a blocking thread of its own.

pub mod pcsc;
pub mod serial;

use std::io;
use std::time::Duration;

use thiserror::Error;

use crate::apdu::ApduProcessor;

/// A reader operation failed.
#[derive(Debug, Error)]
pub enum ReaderError {
    /// No card in the reader.
    #[error("no card in the reader: insert a card")]
    NoCard,
    /// The card left the reader while a command was in flight: the command may or may
    /// not have been executed by the card.
    #[error("the card was removed during the command: present it again to check the result")]
    CardRemoved,
    /// Another program reset the card; its session (selection, PIN) is lost.
    #[error("the card was reset by another program: start the operation again")]
    CardReset,
    /// Nothing happened within the timeout.
    #[error("timed out waiting for the reader")]
    Timeout,
    /// The PC/SC service is not running.
    #[error("the PC/SC service is not running: start pcscd")]
    NoService,
    /// No reader with that name is connected.
    #[error("no card reader named like {0:?} is connected: check the cable and the reader name")]
    ReaderNotFound(String),
    /// Another PC/SC error.
    #[error("PC/SC error: {0}")]
    Pcsc(#[from] ::pcsc::Error),
    /// The serial line failed.
    #[error("serial line error: {0}")]
    Io(#[from] io::Error),
    /// A frame on the serial line was damaged.
    #[error("damaged frame from the serial reader: {0}")]
    Frame(#[from] serial::FrameError),
    /// The serial reader reported an error code.
    #[error("the serial reader reported error {0:#04x}")]
    ReaderFault(u8),
}

/// A card reader with a card slot.
pub trait CardReader {
    /// Sends a C-APDU to the card and returns the R-APDU (data then SW1 SW2).
    fn transmit(&mut self, c_apdu: &[u8]) -> Result<Vec<u8>, ReaderError>;
    /// Blocks until a card is present and powered, or `timeout` elapses.
    fn wait_for_card(&mut self, timeout: Duration) -> Result<(), ReaderError>;
    /// Blocks until the slot is empty, or `timeout` elapses.
    fn wait_for_removal(&mut self, timeout: Duration) -> Result<(), ReaderError>;
}

impl<R: CardReader + ?Sized> CardReader for &mut R {
    fn transmit(&mut self, c_apdu: &[u8]) -> Result<Vec<u8>, ReaderError> {
        (**self).transmit(c_apdu)
    }
    fn wait_for_card(&mut self, timeout: Duration) -> Result<(), ReaderError> {
        (**self).wait_for_card(timeout)
    }
    fn wait_for_removal(&mut self, timeout: Duration) -> Result<(), ReaderError> {
        (**self).wait_for_removal(timeout)
    }
}

impl<R: CardReader + ?Sized> CardReader for Box<R> {
    fn transmit(&mut self, c_apdu: &[u8]) -> Result<Vec<u8>, ReaderError> {
        (**self).transmit(c_apdu)
    }
    fn wait_for_card(&mut self, timeout: Duration) -> Result<(), ReaderError> {
        (**self).wait_for_card(timeout)
    }
    fn wait_for_removal(&mut self, timeout: Duration) -> Result<(), ReaderError> {
        (**self).wait_for_removal(timeout)
    }
}

/// An in-process reader holding a simulated chip: no I/O, for unit tests and
/// benchmarks. Nothing else can insert a card while it waits, so the waits answer
/// at once (present, or [`ReaderError::Timeout`]).
#[derive(Debug)]
pub struct MemoryReader<C: ApduProcessor> {
    chip: Option<C>,
}

impl<C: ApduProcessor> MemoryReader<C> {
    /// A reader with `chip` inserted (and powered).
    pub fn new(mut chip: C) -> MemoryReader<C> {
        chip.reset();
        MemoryReader { chip: Some(chip) }
    }

    /// An empty reader.
    pub fn empty() -> MemoryReader<C> {
        MemoryReader { chip: None }
    }

    /// Inserts a chip (powering it up), returning any chip that was there.
    pub fn insert(&mut self, mut chip: C) -> Option<C> {
        chip.reset();
        self.chip.replace(chip)
    }

    /// Pulls the chip out.
    pub fn remove(&mut self) -> Option<C> {
        self.chip.take()
    }

    /// The chip in the slot.
    pub fn chip(&self) -> Option<&C> {
        self.chip.as_ref()
    }
}

impl<C: ApduProcessor> CardReader for MemoryReader<C> {
    fn transmit(&mut self, c_apdu: &[u8]) -> Result<Vec<u8>, ReaderError> {
        let chip = self.chip.as_mut().ok_or(ReaderError::NoCard)?;
        Ok(chip.process(c_apdu))
    }

    fn wait_for_card(&mut self, _timeout: Duration) -> Result<(), ReaderError> {
        self.chip.as_ref().map(|_| ()).ok_or(ReaderError::Timeout)
    }

    fn wait_for_removal(&mut self, _timeout: Duration) -> Result<(), ReaderError> {
        match self.chip {
            Some(_) => Err(ReaderError::Timeout),
            None => Ok(()),
        }
    }
}
