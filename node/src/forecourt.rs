//! The demo's forecourt: station-1 runs a real fuel station (the same `Station` a real
//! node starts from its config) whose fuelling point is the DART pump simulator at the
//! far end of a socat pty and whose receipt printer is another pty, read by a sink that
//! appends each decoded receipt to `receipts.txt`. A customer with the fleet card comes
//! by every little while, puts the card in the pump's slot, lifts a nozzle, fills for
//! some seconds and hangs up; the station does the rest (grey lock, authorization, debit
//! for unlock, receipt), and the console's dashboard shows it live.

use crate::station::{Board, Station, StationConfig, StationError};
use crate::store::{Clock, Store};
use cardmesh_drivers::card::VirtualCard;
use cardmesh_drivers::dispenser::PointState;
use cardmesh_drivers::dispenser::dart::Address;
use cardmesh_drivers::dispenser::sim::DispenserSimulator;
use cardmesh_drivers::modem::pty::SocatPair;
use cardmesh_drivers::printer::PrinterSink;
use cardmesh_drivers::reader::{CardReader, MemoryReader, ReaderError};
use cardmesh_model::{NodeKey, TerminalId};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The grades of the pump's nozzles 1 and 2.
const GRADES: [&str; 2] = ["petrol-92", "petrol-95"];
/// How long the customer waits between visits, and fills for, in seconds.
const BETWEEN_VISITS: (u64, u64) = (6, 15);
const FILLING: (u64, u64) = (8, 20);

#[derive(Debug, thiserror::Error)]
pub enum ForecourtError {
    #[error("the pump's and printer's lines (socat): {0}")]
    Line(std::io::Error),
    #[error("the pump simulator: {0}")]
    Pump(String),
    #[error(transparent)]
    Station(#[from] StationError),
}

/// The pump's card slot, shared by the station's worker and the customer.
#[derive(Clone)]
struct Slot(Arc<Mutex<MemoryReader<VirtualCard>>>);

impl CardReader for Slot {
    fn transmit(&mut self, c_apdu: &[u8]) -> Result<Vec<u8>, ReaderError> {
        self.lock().transmit(c_apdu)
    }
    fn wait_for_card(&mut self, t: Duration) -> Result<(), ReaderError> {
        self.wait(t, true)
    }
    fn wait_for_removal(&mut self, t: Duration) -> Result<(), ReaderError> {
        self.wait(t, false)
    }
}

impl Slot {
    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryReader<VirtualCard>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits up to `t` for a card in the slot (`present`) or none, without holding the
    /// slot meanwhile: the customer must be able to put the card in or take it out.
    fn wait(&self, t: Duration, present: bool) -> Result<(), ReaderError> {
        let deadline = Instant::now() + t;
        while self.lock().chip().is_some() != present {
            if Instant::now() >= deadline {
                return Err(ReaderError::Timeout);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

/// The running forecourt; dropping it sends the customer home and stops the station.
pub struct Forecourt {
    station: Station,
    stop: Arc<AtomicBool>,
    customer: Option<JoinHandle<()>>,
    // Dropped last: the simulator and the sink hold the far ends of these lines.
    _lines: [SocatPair; 2],
}

impl Forecourt {
    /// Starts the station of `store`'s node with one simulated fuelling point at
    /// `terminal` (an operator must be logged in there), and the customer with the
    /// card whose state file is `card`. Lines and receipts live in `dir`.
    pub fn start(
        dir: &Path,
        store: &Store,
        key: &NodeKey,
        clock: Arc<dyn Clock>,
        terminal: TerminalId,
        card: PathBuf,
    ) -> Result<Forecourt, ForecourtError> {
        std::fs::create_dir_all(dir).map_err(ForecourtError::Line)?;
        let pump_line = SocatPair::start(dir, "pump").map_err(ForecourtError::Line)?;
        let printer_line = SocatPair::start(dir, "printer").map_err(ForecourtError::Line)?;
        let device_end = |path: &str| {
            serialport::new(path, 9600)
                .timeout(Duration::from_millis(20))
                .open()
                .map_err(|e| ForecourtError::Line(std::io::Error::other(e)))
        };
        let address = Address::new(0x50).map_err(|e| ForecourtError::Pump(e.to_string()))?;
        let pump = DispenserSimulator::spawn(device_end(pump_line.b())?, address, 2)
            .map_err(|e| ForecourtError::Pump(e.to_string()))?;
        let printer = PrinterSink::spawn(device_end(printer_line.b())?);
        let config = StationConfig::one_point(
            pump_line.a(),
            printer_line.a(),
            &GRADES,
            ("cardmesh 加油站 station 1", "谢谢惠顾 thank you"),
            terminal,
        );
        let slot = Slot(Arc::new(Mutex::new(MemoryReader::empty())));
        let station = Station::start(store, key, clock, &config, vec![Box::new(slot.clone())])?;
        let stop = Arc::new(AtomicBool::new(false));
        let visit = Visit {
            pump,
            printer,
            slot,
            board: station.board().clone(),
            card,
            receipts: dir.join("receipts.txt"),
            stop: stop.clone(),
        };
        let customer = std::thread::spawn(move || visit.come_by_now_and_then());
        Ok(Forecourt {
            station,
            stop,
            customer: Some(customer),
            _lines: [pump_line, printer_line],
        })
    }

    pub fn station(&self) -> &Station {
        &self.station
    }
}

impl Drop for Forecourt {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(c) = self.customer.take() {
            // A panic in the customer's thread has already been reported.
            let _ = c.join();
        }
    }
}

/// The customer's side of the pump.
struct Visit {
    pump: DispenserSimulator,
    printer: PrinterSink,
    slot: Slot,
    board: Board,
    card: PathBuf,
    receipts: PathBuf,
    stop: Arc<AtomicBool>,
}

impl Visit {
    fn come_by_now_and_then(&self) {
        let mut turn = 0u64;
        while self.pause(spread(BETWEEN_VISITS, turn)) {
            if let Err(why) = self.fill(turn) {
                tracing::warn!(%why, "the demo customer's fill did not finish");
            }
            turn += 1;
        }
    }

    /// Sleeps `secs` unless the demo stops first; says whether to go on.
    fn pause(&self, secs: u64) -> bool {
        self.until(secs, || false);
        !self.stop.load(Ordering::Relaxed)
    }

    /// Waits up to `secs` for `done`; false if it never came or the demo stops.
    fn until(&self, secs: u64, done: impl Fn() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !done() {
            if Instant::now() >= deadline || self.stop.load(Ordering::Relaxed) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        true
    }

    fn fill(&self, turn: u64) -> Result<(), String> {
        let chip = VirtualCard::open(&self.card).map_err(|e| e.to_string())?;
        self.slot.lock().insert(chip);
        let served = self.at_the_pump(turn);
        // The card leaves with the customer, whatever happened, its state saved in its
        // file.
        self.slot.lock().remove();
        served
    }

    /// Lifts a nozzle, fills, hangs up and keeps the receipt, with the card in the slot.
    fn at_the_pump(&self, turn: u64) -> Result<(), String> {
        let fills = self.fills();
        let nozzle = (turn % GRADES.len() as u64) as u8 + 1;
        self.pump.lift(nozzle).map_err(|e| e.to_string())?;
        // Patient: on a busy machine the station may take a while.
        let authorized = self.until(60, || self.pump.status().state == PointState::Authorized);
        if authorized {
            self.pump.start_flow(400 + 50 * (turn % 5) as i64);
            self.pause(spread(FILLING, turn));
        }
        self.pump.hang_up().map_err(|e| e.to_string())?;
        if !authorized {
            return Err("the pump was not authorized (see the dashboard)".into());
        }
        if !self.until(120, || self.fills() > fills) {
            return Err("the station did not finish the fill".into());
        }
        if let Ok(r) = self.printer.next_receipt(Duration::from_secs(30)) {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.receipts)
                .map_err(|e| e.to_string())?;
            writeln!(file, "{}\n", r.text()).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn fills(&self) -> u64 {
        self.board.snapshot().first().map_or(0, |p| p.fills)
    }
}

/// A number in `lo..=hi` that varies from turn to turn.
fn spread((lo, hi): (u64, u64), turn: u64) -> u64 {
    lo + (turn * 7 + 3) % (hi - lo + 1)
}
