//! The fuel station: the node's side of the IC-card dispensers. It reads the
//! `[station]` section of `config.toml` ([`config`]), opens each fuelling point's pump
//! (drivers' DART driver on its port of the serial hub) and the receipt printer, and runs
//! one worker per fuelling point on a thread of its own ([`point`]): card -> blacklist
//! and grey-status checks -> grey lock -> authorize the pump -> live volume and amount
//! -> nozzle hung up -> debit for unlock at the price of authorization -> receipt.
//!
//! What survives a crash: the grey lock entry (in the feed, so it replicates) and the
//! point's journal ([`fill`]); a restarted station picks the fill up from the pump's
//! totals, and a card that left before its debit is debited when it comes back here or
//! at any station that holds the deferred-debit record. The live state of every point
//! is plain data on a [`Board`] ([`board`]) for the console; [`cli`] is
//! `cardmesh station check`.

pub mod board;
pub mod cli;
pub mod config;
pub mod fill;
pub mod point;
pub mod receipts;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::thread::{self, JoinHandle};

use cardmesh_drivers::dispenser::DispenserError;
use cardmesh_drivers::dispenser::flow::FlowError;
use cardmesh_drivers::epurse::{EPurse, EpurseError};
use cardmesh_drivers::printer::{PrinterError, Receipt, SerialPrinter};
use cardmesh_drivers::reader::pcsc::PcscReader;
use cardmesh_drivers::reader::{CardReader, ReaderError};
use cardmesh_model::{CardAsn, Money, NodeKey, TerminalId};

pub use board::{Board, PointSnapshot};
pub use config::StationConfig;
pub use point::Command;

use crate::identity::{self, DataDir, IdentityError};
use crate::keys::KeyError;
use crate::pos::{Pos, PosError};
use crate::sam::software_sam;
use crate::store::{Clock, Store, StoreError};

/// The station could not start, or a fill went wrong; the message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum StationError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Config { path: String, message: String },
    #[error("the station config lists no reader for its fuelling points: set station.readers")]
    NoReaders,
    #[error("fuelling point {0} does not exist")]
    NoSuchPoint(usize),
    #[error("fuelling point {0} is not filling: nothing to stop")]
    NothingToStop(usize),
    #[error("no grade of fuelling point {0} has a price: set the station's prices first")]
    NoPrices(usize),
    #[error("card {0} has nothing to spend: load it first")]
    NothingToSpend(CardAsn),
    #[error(
        "card {asn} is grey-locked by terminal {terminal} and its fuel debit is not known here: \
         sync with that station, or take the card back there"
    )]
    DebitUnknown { asn: CardAsn, terminal: TerminalId },
    #[error("another card ({0}'s was expected) is in the reader")]
    OtherCard(CardAsn),
    #[error("the fill has no journal: the station's store was changed behind its back")]
    NoJournal,
    #[error("starting a fuelling point's thread: {0}")]
    Thread(std::io::Error),
    #[error(transparent)]
    Pos(#[from] PosError),
    #[error(transparent)]
    Pump(#[from] DispenserError),
    #[error(transparent)]
    Flow(#[from] FlowError),
    #[error("card: {0}")]
    Card(#[from] EpurseError),
    #[error("card reader: {0}")]
    Reader(#[from] ReaderError),
    #[error(transparent)]
    Printer(#[from] PrinterError),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A running station: one worker thread per fuelling point, until dropped.
pub struct Station {
    board: Board,
    receipts: Receipts,
    commands: Vec<Sender<Command>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

use receipts::Receipts;

impl Station {
    /// Starts the station of `config` on this node, with `readers[i]` the card reader
    /// of fuelling point `i + 1`. Every point's terminal must be registered to this
    /// node's site and hold a logged-in operator (`cardmesh pos login`), so each fill is
    /// on a shift.
    pub fn start(
        store: &Store,
        key: &NodeKey,
        clock: Arc<dyn Clock>,
        config: &StationConfig,
        readers: Vec<Box<dyn CardReader + Send>>,
    ) -> Result<Station, StationError> {
        if readers.len() != config.devices.points.len() {
            return Err(StationError::NoReaders);
        }
        let pumps = config.devices.open_points()?;
        let printer = match &config.devices.printer {
            Some(p) => Some(SerialPrinter::open(p)?),
            None => None,
        };
        let board = Board::new(
            config
                .terminals
                .iter()
                .enumerate()
                .map(|(i, t)| PointSnapshot::new(i + 1, *t))
                .collect(),
        );
        let receipts = Receipts::new(printer);
        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::new();
        let mut commands = Vec::new();
        for (index, ((pump, reader), terminal)) in pumps
            .into_iter()
            .zip(readers)
            .zip(&config.terminals)
            .enumerate()
        {
            let pos = Pos::open(store, key, *terminal, clock.clone())?;
            pos.session()?;
            let (tx, rx) = mpsc::channel();
            commands.push(tx);
            workers.push(point::Worker {
                index,
                terminal: *terminal,
                store: store.clone(),
                pos,
                sam: software_sam(store, key, *terminal)?,
                purse: EPurse::new(reader),
                pump,
                max_fill: config.max_fill,
                receipts: receipts.clone(),
                board: board.clone(),
                commands: rx,
                stop: stop.clone(),
            });
        }
        let mut station = Station {
            board,
            receipts,
            commands,
            stop,
            threads: Vec::new(),
        };
        for w in workers {
            let t = thread::Builder::new()
                .name(format!("station-point-{}", w.index + 1))
                .spawn(move || w.run())
                .map_err(StationError::Thread)?;
            station.threads.push(t);
        }
        Ok(station)
    }

    /// Starts the station of `config.toml`'s `[station]` section in `dir`, with its
    /// PC/SC readers, if the node has one.
    pub fn start_configured(
        dir: &DataDir,
        store: &Store,
        clock: Arc<dyn Clock>,
    ) -> Result<Option<Station>, StationError> {
        let Some(config) = config::load(dir.path())? else {
            return Ok(None);
        };
        if config.readers.is_empty() {
            return Err(StationError::NoReaders);
        }
        let readers = config
            .readers
            .iter()
            .map(|name| PcscReader::open(name).map(|r| Box::new(r) as Box<dyn CardReader + Send>))
            .collect::<Result<Vec<_>, _>>()?;
        let key = identity::load_key(dir)?;
        Station::start(store, &key, clock, &config, readers).map(Some)
    }

    /// Every fuelling point's live state.
    pub fn snapshot(&self) -> Vec<PointSnapshot> {
        self.board.snapshot()
    }

    /// The board the snapshots are on (to share with a console).
    pub fn board(&self) -> &Board {
        &self.board
    }

    fn send(&self, point: usize, c: Command) -> Result<(), StationError> {
        point
            .checked_sub(1)
            .and_then(|i| self.commands.get(i))
            .and_then(|tx| tx.send(c).ok())
            .ok_or(StationError::NoSuchPoint(point))
    }

    /// Stops the fill at fuelling point `point` (1-based); what was delivered is
    /// charged.
    pub fn stop_fill(&self, point: usize) -> Result<(), StationError> {
        self.send(point, Command::Stop)
    }

    /// The next card at `point` fills for at most `amount`.
    pub fn preset(&self, point: usize, amount: Money) -> Result<(), StationError> {
        self.send(point, Command::Preset(amount))
    }

    /// Prints the last receipt again, marked as a reprint; `false` if there is none.
    pub fn reprint(&self) -> Result<bool, StationError> {
        Ok(self.receipts.reprint()?)
    }

    /// The last receipt printed.
    pub fn last_receipt(&self) -> Option<Receipt> {
        self.receipts.last()
    }
}

impl Drop for Station {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            // A worker's panic has already been reported by the runtime.
            let _ = t.join();
        }
    }
}
