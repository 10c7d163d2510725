//! The station's receipt printer, shared by its fuelling points, and the last receipt
//! printed, kept for a reprint. A station without a printer still keeps the receipt.

use std::sync::{Arc, Mutex, PoisonError};

use cardmesh_drivers::printer::{PrinterError, Receipt, SerialPrinter};

#[derive(Debug, Default)]
struct Inner {
    printer: Option<SerialPrinter>,
    last: Option<Receipt>,
}

/// The printer and the last receipt.
#[derive(Clone, Debug, Default)]
pub struct Receipts(Arc<Mutex<Inner>>);

impl Receipts {
    /// Receipts printed on `printer`, if there is one.
    pub fn new(printer: Option<SerialPrinter>) -> Receipts {
        Receipts(Arc::new(Mutex::new(Inner {
            printer,
            last: None,
        })))
    }

    /// Prints `r` and keeps it as the last receipt (also when printing fails, so a
    /// reprint after fixing the paper works).
    pub fn print(&self, r: &Receipt) -> Result<(), PrinterError> {
        let mut inner = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        inner.last = Some(r.clone());
        match inner.printer.as_mut() {
            Some(p) => p.print(r),
            None => Ok(()),
        }
    }

    /// Prints the last receipt again, marked as a reprint. `Ok(false)` if nothing was
    /// printed yet.
    pub fn reprint(&self) -> Result<bool, PrinterError> {
        let mut inner = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(mut r) = inner.last.clone() else {
            return Ok(false);
        };
        r.reprint = true;
        if let Some(p) = inner.printer.as_mut() {
            p.print(&r)?;
        }
        Ok(true)
    }

    /// The last receipt.
    pub fn last(&self) -> Option<Receipt> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .last
            .clone()
    }
}
