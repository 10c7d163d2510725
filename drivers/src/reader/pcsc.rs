//! PC/SC card reader through pcscd and the `pcsc` crate. Waiting for insertion or
//! removal uses `SCardGetStatusChange` (no polling, no sleeps); a card pulled out
//! mid-command (`SCARD_W_REMOVED_CARD`, or `SCARD_E_NOT_TRANSACTED` as vpcd reports it)
//! becomes [`ReaderError::CardRemoved`].

use std::ffi::CString;
use std::time::{Duration, Instant};

use pcsc::{Card, Context, Disposition, Protocols, ReaderState, Scope, ShareMode, State};

use super::{CardReader, ReaderError};

/// Lists the names of the connected PC/SC readers.
pub fn list_readers() -> Result<Vec<String>, ReaderError> {
    let ctx = establish()?;
    names(&ctx)
}

fn establish() -> Result<Context, ReaderError> {
    Context::establish(Scope::User).map_err(map_err)
}

fn names(ctx: &Context) -> Result<Vec<String>, ReaderError> {
    Ok(ctx
        .list_readers_owned()
        .map_err(map_err)?
        .into_iter()
        .map(|n| n.to_string_lossy().into_owned())
        .collect())
}

fn map_err(e: pcsc::Error) -> ReaderError {
    match e {
        pcsc::Error::NoService | pcsc::Error::ServiceStopped => ReaderError::NoService,
        pcsc::Error::RemovedCard | pcsc::Error::NoSmartcard => ReaderError::CardRemoved,
        pcsc::Error::ResetCard => ReaderError::CardReset,
        pcsc::Error::Timeout => ReaderError::Timeout,
        e => ReaderError::Pcsc(e),
    }
}

/// One PC/SC reader slot.
pub struct PcscReader {
    ctx: Context,
    name: CString,
    card: Option<Card>,
    /// pcscd's insertion/removal event count when the current card was seen present.
    /// A removal is complete only once pcscd's poller has counted it: a failed transmit
    /// already shows the slot EMPTY, but a card inserted before the poller noticed the
    /// removal would never be reported as inserted.
    present_count: Option<u32>,
}

impl std::fmt::Debug for PcscReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcscReader")
            .field("name", &self.name)
            .field("connected", &self.card.is_some())
            .finish()
    }
}

impl PcscReader {
    /// Opens the first reader whose name contains `name_contains` (e.g. "Virtual PCD 00 00").
    pub fn open(name_contains: &str) -> Result<PcscReader, ReaderError> {
        let ctx = establish()?;
        let name = names(&ctx)?
            .into_iter()
            .find(|n| n.contains(name_contains))
            .ok_or_else(|| ReaderError::ReaderNotFound(name_contains.to_owned()))?;
        Ok(PcscReader {
            ctx,
            name: CString::new(name)
                .map_err(|_| ReaderError::ReaderNotFound(name_contains.to_owned()))?,
            card: None,
            present_count: None,
        })
    }

    /// The reader's full name.
    pub fn name(&self) -> String {
        self.name.to_string_lossy().into_owned()
    }

    /// Waits until the reader state and event count satisfy `done`, or the deadline
    /// passes; returns the event count.
    fn wait_state(
        &self,
        timeout: Duration,
        done: impl Fn(State, u32) -> bool,
    ) -> Result<u32, ReaderError> {
        let deadline = Instant::now() + timeout;
        let mut states = [ReaderState::new(self.name.clone(), State::UNAWARE)];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.ctx.get_status_change(left, &mut states) {
                Ok(()) => {}
                Err(pcsc::Error::Timeout) => return Err(ReaderError::Timeout),
                Err(e) => return Err(map_err(e)),
            }
            let state = states[0].event_state();
            if state.contains(State::UNKNOWN) || state.contains(State::UNAVAILABLE) {
                return Err(ReaderError::ReaderNotFound(self.name()));
            }
            if done(state, states[0].event_count()) {
                return Ok(states[0].event_count());
            }
            states[0].sync_current_state();
        }
    }
}

impl CardReader for PcscReader {
    fn transmit(&mut self, c_apdu: &[u8]) -> Result<Vec<u8>, ReaderError> {
        let card = self.card.as_ref().ok_or(ReaderError::NoCard)?;
        let mut buf = [0u8; pcsc::MAX_BUFFER_SIZE_EXTENDED];
        match card.transmit(c_apdu, &mut buf) {
            Ok(r) => Ok(r.to_vec()),
            Err(e) => {
                let err = match e {
                    // The reader lost the card mid-exchange: with vpcd the socket closed,
                    // with a contactless card it left the field. Either way the command
                    // may or may not have run, which is what CardRemoved tells.
                    pcsc::Error::NotTransacted => ReaderError::CardRemoved,
                    e => map_err(e),
                };
                if matches!(err, ReaderError::CardRemoved | ReaderError::CardReset) {
                    // The handle is dead; the next wait_for_card connects afresh.
                    self.card = None;
                }
                Err(err)
            }
        }
    }

    fn wait_for_card(&mut self, timeout: Duration) -> Result<(), ReaderError> {
        let deadline = Instant::now() + timeout;
        if let Some(card) = &self.card {
            if card.status2_owned().is_ok() {
                return Ok(());
            }
            self.card = None;
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let count = self.wait_state(left, |s, _| {
                s.contains(State::PRESENT) && !s.contains(State::MUTE)
            })?;
            match self
                .ctx
                .connect(&self.name, ShareMode::Shared, Protocols::ANY)
            {
                Ok(card) => {
                    self.card = Some(card);
                    self.present_count = Some(count);
                    return Ok(());
                }
                // Pulled out again between the event and the connect: keep waiting.
                Err(pcsc::Error::NoSmartcard | pcsc::Error::RemovedCard) => continue,
                Err(e) => return Err(map_err(e)),
            }
        }
    }

    fn wait_for_removal(&mut self, timeout: Duration) -> Result<(), ReaderError> {
        if let Some(card) = self.card.take() {
            // LeaveCard: the card keeps its state for the next program; ignoring a
            // failure is right because a failing disconnect means the card is gone.
            let _ = card.disconnect(Disposition::LeaveCard);
        }
        let seen = self.present_count;
        self.wait_state(timeout, |s, count| {
            s.contains(State::EMPTY) && seen.is_none_or(|c| count != c)
        })?;
        self.present_count = None;
        Ok(())
    }
}
