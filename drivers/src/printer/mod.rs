//! Receipt printers: ESC/POS over a serial port. [`escpos`] renders a [`Receipt`] to
//! printer bytes and decodes such bytes back; [`SerialPrinter`] sends them down the
//! port; [`PrinterSink`] reads the printer end of a pty and hands back each printed
//! receipt, for tests and the demo.

pub mod escpos;

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use cardmesh_model::Money;
use serde::{Deserialize, Serialize};
use serialport::SerialPort;
use thiserror::Error;

pub use escpos::{Align, EscPosError, PrintedLine, PrintedReceipt};

fn default_baud() -> u32 {
    9600
}

fn default_width() -> usize {
    32
}

/// The receipt printer as the station's config describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrinterConfig {
    /// The serial port, e.g. `/dev/ttyS1`.
    pub port: String,
    /// Line speed.
    #[serde(default = "default_baud")]
    pub baud: u32,
    /// Lines printed centered at the top; the first large and bold.
    #[serde(default)]
    pub header: Vec<String>,
    /// Lines printed centered at the bottom.
    #[serde(default)]
    pub footer: Vec<String>,
    /// Columns of the paper (32 on 58 mm paper, 48 on 80 mm).
    #[serde(default = "default_width")]
    pub width: usize,
}

/// One `label ... value` line of a receipt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptLine {
    /// Left.
    pub label: String,
    /// Right.
    pub value: String,
}

impl ReceiptLine {
    /// A line.
    pub fn new(label: impl Into<String>, value: impl Into<String>) -> ReceiptLine {
        ReceiptLine {
            label: label.into(),
            value: value.into(),
        }
    }
}

/// What one receipt says, between the configured header and footer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// Item lines (grade, volume, price, amount, card, time, ...).
    pub items: Vec<ReceiptLine>,
    /// The card's balance after the sale, printed bold.
    pub balance_after: Option<Money>,
    /// A copy printed again: marked so it cannot pass for a second sale.
    pub reprint: bool,
}

/// Printing failed.
#[derive(Debug, Error)]
pub enum PrinterError {
    /// The port could not be opened.
    #[error("cannot open the receipt printer's serial port {port}: {reason}")]
    Open {
        /// The port.
        port: String,
        /// Why.
        reason: String,
    },
    /// Writing failed.
    #[error("receipt printer line error: {0}: check paper, power and cable")]
    Io(#[from] io::Error),
    /// Nothing printed within the wait ([`PrinterSink`]).
    #[error("no complete receipt arrived at the printer")]
    Timeout,
    /// What arrived is not valid ESC/POS ([`PrinterSink`]).
    #[error("the printer received a damaged stream: {0}")]
    Decode(#[from] EscPosError),
}

/// An ESC/POS printer on a serial port.
pub struct SerialPrinter {
    port: Box<dyn SerialPort>,
    cfg: PrinterConfig,
}

impl std::fmt::Debug for SerialPrinter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SerialPrinter")
            .field("port", &self.cfg.port)
            .finish()
    }
}

impl SerialPrinter {
    /// Opens the printer's port.
    pub fn open(cfg: &PrinterConfig) -> Result<SerialPrinter, PrinterError> {
        let port = serialport::new(&cfg.port, cfg.baud)
            .timeout(Duration::from_secs(2))
            .open()
            .map_err(|e| PrinterError::Open {
                port: cfg.port.clone(),
                reason: e.to_string(),
            })?;
        Ok(SerialPrinter {
            port,
            cfg: cfg.clone(),
        })
    }

    /// Prints `r` with the configured header and footer, and cuts.
    pub fn print(&mut self, r: &Receipt) -> Result<(), PrinterError> {
        self.port.write_all(&escpos::render(&self.cfg, r))?;
        self.port.flush()?;
        Ok(())
    }
}

/// The printer end of a serial line: collects bytes on a thread and returns each
/// receipt once its cut arrives.
pub struct PrinterSink {
    bytes: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PrinterSink {
    /// Starts reading `port` (its read timeout sets how fast `drop` returns).
    pub fn spawn(mut port: Box<dyn SerialPort>) -> PrinterSink {
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (b2, s2) = (bytes.clone(), stop.clone());
        let thread = thread::spawn(move || {
            let mut buf = [0u8; 256];
            while !s2.load(Ordering::Relaxed) {
                match port.read(&mut buf) {
                    Ok(n) => b2
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
                    Err(_) => return,
                }
            }
        });
        PrinterSink {
            bytes,
            stop,
            thread: Some(thread),
        }
    }

    /// Waits up to `timeout` for the next receipt (everything up to a cut) and decodes
    /// it.
    pub fn next_receipt(&self, timeout: Duration) -> Result<PrintedReceipt, PrinterError> {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let mut b = self.bytes.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(end) = cut_end(&b) {
                    let receipt: Vec<u8> = b.drain(..end).collect();
                    return Ok(escpos::decode(&receipt)?);
                }
            }
            if Instant::now() >= deadline {
                return Err(PrinterError::Timeout);
            }
            thread::sleep(Duration::from_millis(5));
        }
    }
}

/// The end of the first `GS V` cut command. GB18030 text never holds 0x1D, so a GS is
/// always a command.
fn cut_end(b: &[u8]) -> Option<usize> {
    let at = b.windows(2).position(|w| w == [0x1D, b'V'])?;
    let m = *b.get(at + 2)?;
    let end = if m == 65 || m == 66 { at + 4 } else { at + 3 };
    (end <= b.len()).then_some(end)
}

impl Drop for PrinterSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            // A panic in the sink thread has already been reported by the runtime.
            let _ = t.join();
        }
    }
}
