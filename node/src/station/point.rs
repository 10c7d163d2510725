//! One fuelling point's worker, on a thread of its own: it waits for a card in the
//! point's reader, checks it (blacklist, grey status), grey-locks it through the POS,
//! drives the pump through the pure [`PumpFlow`], debits for unlock with the delivered
//! amount at the price of authorization, and prints the receipt. A card that comes back
//! grey-locked with a deferred debit known here is debited first.
//!
//! Each presentation is one attempt: after it, success or not, the point waits for the
//! card to leave before it takes a card again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::thread;
use std::time::Duration;

use cardmesh_drivers::dispenser::flow::{Fill, FlowAction, FlowEvent, PumpFlow, Stage};
use cardmesh_drivers::dispenser::run::run_pump_action;
use cardmesh_drivers::dispenser::{Dispenser, GradePrices};
use cardmesh_drivers::epurse::{EPurse, GreyLockInfo};
use cardmesh_drivers::printer::{Receipt, ReceiptLine};
use cardmesh_drivers::reader::{CardReader, ReaderError};
use cardmesh_drivers::sam::SoftwareSam;
use cardmesh_drivers::types::TerminalId as CardTerminalId;
use cardmesh_model::body::{Body, CounterSpace, TxnKind};
use cardmesh_model::{CardAsn, Money, Quantity, TerminalId};

use super::StationError;
use super::board::Board;
use super::fill::{self, Journal};
use super::receipts::Receipts;
use crate::pos::{BasketLine, Pos, PosError};
use crate::sam::StoreSeq;
use crate::store::Store;

/// How often an idle point looks for a card and a busy one polls its pump.
const TICK: Duration = Duration::from_millis(20);
/// How long a pump command is retried when the pump's state is unknown.
const PUMP_TRIES: u32 = 3;

/// What the cashier or the customer asks of a point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Stop the fill now.
    Stop,
    /// The next card's fill costs at most this much.
    Preset(Money),
}

/// Everything a point's worker drives.
pub(crate) struct Worker {
    pub index: usize,
    pub terminal: TerminalId,
    pub store: Store,
    pub pos: Pos,
    pub sam: SoftwareSam<StoreSeq>,
    pub purse: EPurse<Box<dyn CardReader + Send>>,
    pub pump: Box<dyn Dispenser + Send>,
    pub max_fill: Money,
    pub receipts: Receipts,
    pub board: Board,
    pub commands: Receiver<Command>,
    pub stop: Arc<AtomicBool>,
}

/// A worker's changing state.
struct Run {
    w: Worker,
    flow: PumpFlow,
    journal: Option<Journal>,
    /// A journaled fill from before a restart is still to be picked up.
    recovering: bool,
    /// The card of the last presentation is still in the reader.
    await_removal: bool,
    preset: Option<Money>,
}

impl Worker {
    /// Runs until the station stops.
    pub fn run(self) {
        let mut r = Run {
            w: self,
            flow: PumpFlow::new(),
            journal: None,
            recovering: true,
            await_removal: false,
            preset: None,
        };
        while !r.w.stop.load(Ordering::Relaxed) {
            if let Err(e) = r.step() {
                r.error(e.to_string());
            }
            r.show_stage();
            thread::sleep(TICK);
        }
    }
}

impl Run {
    /// Shows `message` on the board; logs it once, not on every tick it repeats.
    fn error(&self, message: String) {
        let mut fresh = false;
        self.w.board.update(self.w.index, |p| {
            fresh = p.last_error.as_ref() != Some(&message);
            p.last_error = Some(message.clone());
        });
        if fresh {
            tracing::warn!(point = self.w.index + 1, "{message}");
        }
    }

    fn show_stage(&self) {
        let stage = self.flow.stage().clone();
        self.w.board.update(self.w.index, |p| p.stage = stage);
    }

    fn step(&mut self) -> Result<(), StationError> {
        if self.recovering {
            self.recover()?;
        }
        self.commands()?;
        match self.flow.stage() {
            Stage::WaitingForCard => self.idle(),
            Stage::Authorizing | Stage::Fuelling => self.poll(),
            Stage::Debiting => self.retry_debit(),
            Stage::Done | Stage::Deferred => self.finish(),
        }
    }

    // ---- the journal ------------------------------------------------------------

    fn save_journal(&mut self, j: Option<Journal>) -> Result<(), StationError> {
        let bytes = match &j {
            Some(j) => postcard::to_stdvec(j).expect("serializing to a Vec cannot fail"),
            None => Vec::new(),
        };
        self.w
            .store
            .config_set(&fill::journal_key(&self.w.terminal), &bytes)?;
        self.journal = j;
        Ok(())
    }

    /// Picks up a fill the station was serving when it stopped: its grey lock is on
    /// the card, and the pump holds what was delivered.
    fn recover(&mut self) -> Result<(), StationError> {
        let bytes = self
            .w
            .store
            .config_get(&fill::journal_key(&self.w.terminal))?
            .unwrap_or_default();
        if bytes.is_empty() {
            self.recovering = false;
            return Ok(());
        }
        let j: Journal = postcard::from_bytes(&bytes).map_err(|e| {
            StationError::Store(crate::store::StoreError::corrupt(format!(
                "station journal: {e}"
            )))
        })?;
        let status = self.w.pump.status()?;
        let (flow, next) = fill::resume(&j, status.point.state, self.w.pump.nozzles())?;
        tracing::info!(
            point = self.w.index + 1,
            "picking up the fill of card {} after a restart",
            j.lock.asn
        );
        let card = j.lock.asn;
        self.flow = flow;
        self.journal = Some(j);
        self.recovering = false;
        self.await_removal = true;
        self.w.board.update(self.w.index, |p| p.card = Some(card));
        self.feed(next)
    }

    // ---- commands ---------------------------------------------------------------

    fn commands(&mut self) -> Result<(), StationError> {
        while let Ok(c) = self.w.commands.try_recv() {
            match c {
                Command::Stop if self.flow.stage() == &Stage::Fuelling => {
                    self.feed(FlowEvent::StopPressed)?;
                }
                Command::Stop => return Err(StationError::NothingToStop(self.w.index + 1)),
                Command::Preset(m) => self.preset = Some(m),
            }
        }
        Ok(())
    }

    // ---- waiting for a card -----------------------------------------------------

    fn idle(&mut self) -> Result<(), StationError> {
        let s = self.w.pump.status()?;
        self.w.board.update(self.w.index, |p| {
            p.state = Some(s.point.state);
            p.nozzle = s.point.nozzle;
            p.grade = s.grade.clone();
        });
        let reader = self.w.purse.reader_mut();
        if self.await_removal {
            match reader.wait_for_removal(TICK) {
                Ok(()) => {
                    self.await_removal = false;
                    self.w.board.update(self.w.index, |p| p.card = None);
                }
                Err(ReaderError::Timeout) => {}
                Err(e) => return Err(e.into()),
            }
            return Ok(());
        }
        match reader.wait_for_card(TICK) {
            Ok(()) => {}
            Err(ReaderError::Timeout | ReaderError::NoCard) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        self.await_removal = true;
        self.present()
    }

    /// Today's price of each grade of this point's nozzles; grades without a price are
    /// left out (the pump will not deliver them).
    fn prices(&self) -> Result<GradePrices, StationError> {
        let mut prices = GradePrices::new();
        for n in self.w.pump.nozzles() {
            let line = BasketLine {
                product: n.grade.clone(),
                quantity: Quantity::from_milli(1000),
            };
            match self.w.pos.price(&[line], None) {
                Ok(items) => {
                    if let Some(i) = items.first() {
                        prices.insert(n.grade.clone(), i.unit_price);
                    }
                }
                Err(PosError::Pricing(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if prices.is_empty() {
            return Err(StationError::NoPrices(self.w.index + 1));
        }
        Ok(prices)
    }

    fn present(&mut self) -> Result<(), StationError> {
        self.w.pos.refresh()?;
        let info = self.w.purse.select()?;
        let asn = CardAsn(info.asn.0);
        self.w.board.update(self.w.index, |p| {
            p.card = Some(asn);
            p.last_error = None;
            p.volume = Quantity::from_milli(0);
            p.amount = Money::ZERO;
        });
        let grey = self.w.purse.grey_status()?;
        if let (true, Some(lock)) = (grey.locked, grey.last_lock) {
            return self.deferred_debit(asn, lock);
        }
        let balance = Money::from_fen(self.w.purse.balance()?.into());
        let limit = fill::fill_limit(balance, self.preset.take(), self.w.max_fill)
            .ok_or(StationError::NothingToSpend(asn))?;
        let prices = self.prices()?;
        let lock = self.w.pos.grey_lock(&mut self.w.purse, &mut self.w.sam)?;
        self.save_journal(Some(Journal {
            lock: lock.txn,
            lock_entry: lock.entry,
            limit,
            prices: prices.clone(),
            authorized: None,
        }))?;
        self.feed(FlowEvent::CardLocked {
            card: info.asn,
            limit,
            volume: None,
            prices,
        })
    }

    /// A card still grey-locked from an earlier fill, here or at another station: its
    /// debit is completed with the amount that station logged. A lock of this point
    /// with nothing logged never reached the pump (the journal is written before the
    /// pump is authorized and cleared only after the debit or its record), so it is
    /// unlocked for nothing.
    fn deferred_debit(&mut self, asn: CardAsn, lock: GreyLockInfo) -> Result<(), StationError> {
        let ours = lock.terminal == CardTerminalId(self.w.terminal.0);
        let done = match self.w.pos.unlock(&mut self.w.purse, &mut self.w.sam, None) {
            Ok(r) => r,
            Err(PosError::NoDeferredDebit(_)) if ours && self.journal.is_none() => self
                .w
                .pos
                .unlock(&mut self.w.purse, &mut self.w.sam, Some(Money::ZERO))?,
            Err(PosError::NoDeferredDebit(_)) => {
                return Err(StationError::DebitUnknown {
                    asn,
                    terminal: TerminalId(lock.terminal.0),
                });
            }
            Err(e) => return Err(e.into()),
        };
        let receipt = Receipt {
            items: vec![
                ReceiptLine::new("卡号 Card", asn.to_string()),
                ReceiptLine::new(
                    "加油终端 Fuelled at",
                    TerminalId(lock.terminal.0).to_string(),
                ),
                ReceiptLine::new("补扣 Deferred debit", done.txn.amount.to_string()),
            ],
            balance_after: Some(done.txn.balance_after),
            reprint: false,
        };
        let amount = done.txn.amount;
        self.w.board.update(self.w.index, |p| {
            p.amount = amount;
            p.fills += 1;
        });
        self.w.receipts.print(&receipt)?;
        Ok(())
    }

    // ---- fuelling ---------------------------------------------------------------

    fn poll(&mut self) -> Result<(), StationError> {
        let s = self.w.pump.status()?;
        self.w.board.update(self.w.index, |p| {
            p.state = Some(s.point.state);
            p.nozzle = s.point.nozzle;
            p.grade = s.grade.clone();
        });
        self.feed(FlowEvent::Pump(s))?;
        if let Some(live) = self.flow.live() {
            self.w.board.update(self.w.index, |p| {
                p.volume = live.volume;
                p.amount = live.amount;
            });
        }
        Ok(())
    }

    /// Feeds `ev` to the flow and carries out every action it leads to.
    fn feed(&mut self, ev: FlowEvent) -> Result<(), StationError> {
        let mut events = vec![ev];
        while let Some(ev) = events.pop() {
            for action in self.flow.handle(ev)? {
                match &action {
                    FlowAction::Debit(f) => events.push(self.debit(f)?),
                    FlowAction::Print(r) => {
                        if let Err(e) = self.w.receipts.print(r) {
                            self.error(format!("{e}; reprint the receipt when fixed"));
                        }
                    }
                    FlowAction::AuthorizePump { .. }
                    | FlowAction::StopPump
                    | FlowAction::ResetPump => {
                        if let Some(next) = self.pump_action(&action)? {
                            if let FlowEvent::PumpAuthorized(a) = &next
                                && let Some(mut j) = self.journal.clone()
                            {
                                j.authorized = Some(a.clone());
                                self.save_journal(Some(j))?;
                            }
                            events.push(next);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Runs a pump action, trying again while the pump's state is unknown. A pump that
    /// cannot be reached to authorize is not authorized: the card is unlocked for
    /// nothing.
    fn pump_action(&mut self, action: &FlowAction) -> Result<Option<FlowEvent>, StationError> {
        let mut tries = 0;
        loop {
            match run_pump_action(self.w.pump.as_mut(), action) {
                Ok(ev) => return Ok(ev),
                Err(e) if tries + 1 < PUMP_TRIES => {
                    tries += 1;
                    self.error(format!("{e}; trying again"));
                    thread::sleep(TICK * 5);
                }
                Err(e) => {
                    return match action {
                        FlowAction::AuthorizePump { .. } => {
                            Ok(Some(FlowEvent::AuthorizeFailed(e.to_string())))
                        }
                        _ => Err(e.into()),
                    };
                }
            }
        }
    }

    /// Debits the card for unlock with the fill's amount. If the card is gone (or the
    /// debit fails any other way) the debit is deferred: its record is logged, so this
    /// or any station that holds it completes the debit when the card comes back.
    fn debit(&mut self, f: &Fill) -> Result<FlowEvent, StationError> {
        let here = self.w.purse.select().map(|i| i.asn == f.card);
        let result = match here {
            Ok(true) => self
                .w
                .pos
                .unlock(&mut self.w.purse, &mut self.w.sam, Some(f.amount))
                .map_err(StationError::from),
            Ok(false) => Err(StationError::OtherCard(CardAsn(f.card.0))),
            Err(e) => Err(e.into()),
        };
        match result {
            Ok(r) => Ok(FlowEvent::Debited {
                balance_after: r.txn.balance_after,
            }),
            Err(e) => {
                self.record_deferred(f.amount)?;
                self.error(format!(
                    "the debit of {} from card {} waits for the card: {e}",
                    f.amount,
                    CardAsn(f.card.0)
                ));
                Ok(FlowEvent::DebitDeferred)
            }
        }
    }

    /// A debit that could neither be made nor recorded (the store failed): again.
    fn retry_debit(&mut self) -> Result<(), StationError> {
        let Some(f) = self.flow.fill().cloned() else {
            return Ok(());
        };
        let ev = self.debit(&f)?;
        self.feed(ev)
    }

    /// Logs the deferred debit, unless the POS already logged its intent (the card left
    /// during the debit itself) or the card's counter is already settled.
    fn record_deferred(&mut self, amount: Money) -> Result<(), StationError> {
        let j = self.journal.clone().ok_or(StationError::NoJournal)?;
        let asn = j.lock.asn;
        let counter = j.unlock_counter();
        let logged = self.w.store.pending_intents(&asn)?.iter().any(|e| {
            matches!(&e.body, Body::Intent(t)
                if t.kind == TxnKind::DebitForUnlock && t.card_counter == counter)
        });
        let settled = self
            .w
            .store
            .counter_entry(&asn, CounterSpace::Offline, counter)?
            .is_some();
        if !logged && !settled {
            self.w
                .store
                .append_local(Body::Intent(fill::deferred_debit(
                    &j.lock,
                    j.lock_entry,
                    amount,
                )))?;
        }
        Ok(())
    }

    /// The fill is debited (or its debit recorded) and printed: forget it.
    fn finish(&mut self) -> Result<(), StationError> {
        self.save_journal(None)?;
        self.flow = PumpFlow::new();
        self.w.board.update(self.w.index, |p| p.fills += 1);
        Ok(())
    }
}
