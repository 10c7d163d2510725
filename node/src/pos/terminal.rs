//! One POS terminal of a node: its operator session and the card operations, each
//! checked (operator, blacklist, registry, risk), logged (intent first for money), and
//! done on the card through any reader and SAM.

use super::credit::{Credit, CreditRefusal, DEFAULT_REVERSAL_WINDOW_MS};
use super::operators::{self, Operation, OperatorRole, Session};
use super::resolve::{self, Decision};
use super::risk::{self, CardDay, DEFAULT_MAX_PURCHASES_PER_DAY, Refusal, RiskConfig};
use super::steps::Stops;
use crate::keys::{self, KeyError};
use crate::store::{Clock, Store, StoreError};
use cardmesh_drivers::card::TxRecord;
use cardmesh_drivers::crypto::Key16;
use cardmesh_drivers::epurse::{
    CardInfo, EPurse, EpurseError, MaintenanceKey, PinUnblockKey, ProveKind, PurchaseReceipt,
    PurchaseStarted,
};
use cardmesh_drivers::keys::MasterKeys;
use cardmesh_drivers::perso::TransportKey;
use cardmesh_drivers::reader::CardReader;
use cardmesh_drivers::sam::Sam;
use cardmesh_drivers::types::{BcdDateTime, Pin};
use cardmesh_model::body::{
    Alarm, AlarmKind, BlacklistEvent, BlockReason, Body, CardTxn, Completion, CounterSpace,
    EntryRef, IntentVoid, LineItem, OperatorAction, OperatorActionKind, TxnKind,
};
use cardmesh_model::body::{CardStatus, Holder};
use cardmesh_model::docs::DocName;
use cardmesh_model::docs::discounts::{self, Discounts};
use cardmesh_model::docs::network::{self, NetworkRegistry};
use cardmesh_model::docs::pricebook::{self, PriceBook, Schedule};
use cardmesh_model::pricing::{self, PricingError, QuoteRequest};
use cardmesh_model::registry::CardRecord;
use cardmesh_model::{
    BusinessDay, CardAsn, CardTime, Entry, MemberClass, Money, NodeKey, OperatorId, ProductId,
    Quantity, Role, SiteId, TerminalId,
};
use std::sync::Arc;

/// A POS operation failed; nothing was half-applied (an interrupted card operation stays
/// logged as an intent that the card's next presentation settles).
#[derive(Debug, thiserror::Error)]
pub enum PosError {
    #[error("no operator is logged in at terminal {0}: log in first")]
    NotLoggedIn(TerminalId),
    #[error("operator {operator} ({role}) may not do a {op}: ask a manager")]
    NotPermitted {
        operator: OperatorId,
        role: OperatorRole,
        op: Operation,
    },
    #[error("operator {0} is not in the network registry")]
    UnknownOperator(OperatorId),
    #[error("wrong operator PIN for {0}")]
    BadOperatorPin(OperatorId),
    #[error("this card is not an operator card")]
    NotAnOperatorCard,
    #[error("operator {operator} works at site {site}, not here")]
    OperatorOtherSite { operator: OperatorId, site: SiteId },
    #[error("operator {operator} has an unknown role: {reason}")]
    BadOperatorRole {
        operator: OperatorId,
        reason: String,
    },
    #[error("terminal {0} is not in the network registry: HQ must register it")]
    UnknownTerminal(TerminalId),
    #[error("terminal {terminal} belongs to site {site}, not to this node's site")]
    TerminalOtherSite { terminal: TerminalId, site: SiteId },
    #[error("card {0} is blacklisted: keep it and send the customer to customer service")]
    Blacklisted(CardAsn),
    #[error("card {asn} is {status}: it cannot be used")]
    CardNotActive { asn: CardAsn, status: String },
    #[error("card {0} is anonymous: only named cards can be reported lost")]
    Anonymous(CardAsn),
    #[error("{0} is above the PIN threshold: the cardholder must enter the PIN")]
    PinRequired(Money),
    #[error("only HQ may {0}")]
    HqOnly(&'static str),
    #[error("card {0} has no fuel debit waiting here: enter the amount from the dispenser")]
    NoDeferredDebit(CardAsn),
    #[error("the basket is empty")]
    EmptyBasket,
    #[error(transparent)]
    Risk(#[from] Refusal),
    #[error(transparent)]
    Pricing(#[from] PricingError),
    #[error("the card was removed during the {0}: present it again to settle the transaction")]
    Interrupted(&'static str),
    #[error("card: {0}")]
    Card(#[from] EpurseError),
    #[error("this node does not hold the {0} key")]
    MissingKey(&'static str),
    #[error("the clock is outside 2000-2099: set the system time")]
    Clock,
    #[error("amount out of range for a card: {0}")]
    Amount(Money),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(
        "this node cannot put money back on a card: a {what} is a credit-for-load and needs the load key, which only card desks hold; do it at: {desks}"
    )]
    NoLoadKey { what: &'static str, desks: String },
    #[error("operator {operator} is a {role}, not a manager: a manager must authorize this")]
    NotAManager {
        operator: OperatorId,
        role: OperatorRole,
    },
    #[error("no card transaction {}:{} in this node's ledger", .0.origin.short(), .0.seq)]
    NoSuchEntry(EntryRef),
    #[error("no receipt of terminal {terminal} {which} in this node's ledger")]
    NoSuchReceipt { terminal: TerminalId, which: String },
    #[error(transparent)]
    Credit(#[from] CreditRefusal),
    #[error("the new card is the card being replaced ({0}): present a blank card")]
    SameCard(CardAsn),
    #[error("card {old} is already being replaced by card {new}: finish with that card")]
    ReplacedAlready { old: CardAsn, new: CardAsn },
    #[error("this is card {presented}, not card {expected}")]
    WrongCard {
        expected: CardAsn,
        presented: CardAsn,
    },
    #[error(
        "card {0} has a transaction still unsettled and is not here: present the old card, or ask HQ to settle it first"
    )]
    UnsettledOldCard(CardAsn),
    #[error(
        "card {0} is already personalized: primary issue is for blank cards from the manufacturer; sell it with `issue`"
    )]
    AlreadyPersonalized(CardAsn),
    #[error("the expiry date {0} is not after today")]
    ExpiryNotAhead(BusinessDay),
    #[error(
        "the card was removed during personalization: it is still blank; present it again and personalize it from the start"
    )]
    PersonalizationInterrupted,
    #[error(
        "terminal {0} has given out all its card numbers: personalize at another terminal (HQ registers one)"
    )]
    CardNumbersExhausted(TerminalId),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One line of a basket as rung up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BasketLine {
    pub product: ProductId,
    pub quantity: Quantity,
}

/// What the receipt printer prints, and what the ledger holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    pub entry: EntryRef,
    pub txn: CardTxn,
    /// Why the operation was flagged to HQ, if it was.
    pub flagged: Option<String>,
}

/// How a pending intent was settled when its card came back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Settled {
    Completed { intent: EntryRef, entry: EntryRef },
    Voided { intent: EntryRef, reason: String },
    Undetermined { intent: EntryRef, reason: String },
}

/// What a balance query shows.
#[derive(Clone, Debug)]
pub struct CardView {
    pub info: CardInfo,
    pub balance: Money,
    pub card_log: Vec<TxRecord>,
    pub ledger: Vec<Entry>,
    pub record: Option<CardRecord>,
    pub settled: Vec<Settled>,
}

/// The documents a terminal prices and checks with, read once and refreshed on demand.
pub(super) struct Docs {
    pub(super) registry: NetworkRegistry,
    book: PriceBook,
    site_prices: Option<Schedule>,
    discounts: Discounts,
}

/// The keys a terminal may need besides its SAM's.
pub(super) struct Keys {
    pub(super) load: Option<Key16>,
    pub(super) maintenance: Option<Key16>,
    pin_unblock: Option<Key16>,
    /// Every master key (HQ only), to personalize blank cards.
    pub(super) masters: Option<MasterKeys>,
    /// The transport master key of the blank cards' batch.
    pub(super) transport: Option<TransportKey>,
}

/// A POS terminal on this node.
pub struct Pos {
    pub(super) store: Store,
    pub(super) terminal: TerminalId,
    pub(super) site: SiteId,
    pub(super) role: Role,
    clock: Arc<dyn Clock>,
    pub(super) docs: Docs,
    pub(super) keys: Keys,
    pub(super) stops: Stops,
    max_purchases_per_day: u32,
    reversal_window_ms: u64,
}

const SESSION_PREFIX: &str = "pos/session/";

pub(super) fn card_asn(info: &CardInfo) -> CardAsn {
    CardAsn(info.asn.0)
}

pub(super) fn fen_u32(m: Money) -> Result<u32, PosError> {
    u32::try_from(m.fen()).map_err(|_| PosError::Amount(m))
}

/// The card's date-time of an instant at a site.
pub fn card_time(now_ms: i64, utc_offset_min: i32) -> Result<BcdDateTime, PosError> {
    let day = BusinessDay::of_instant(now_ms, utc_offset_min);
    let local = now_ms + i64::from(utc_offset_min) * 60_000;
    let secs = local.rem_euclid(86_400_000) / 1000;
    BcdDateTime::new(
        day.year,
        day.month,
        day.day,
        (secs / 3600) as u8,
        (secs / 60 % 60) as u8,
        (secs % 60) as u8,
    )
    .map_err(|_| PosError::Clock)
}

impl Pos {
    /// Opens terminal `terminal` of this node. The terminal must be registered to this
    /// node's site in the network registry.
    pub fn open(
        store: &Store,
        key: &NodeKey,
        terminal: TerminalId,
        clock: Arc<dyn Clock>,
    ) -> Result<Pos, PosError> {
        let cert = store.own_certificate();
        let docs = read_docs(store, &cert.site)?;
        match docs.registry.terminals.get(&terminal) {
            None => return Err(PosError::UnknownTerminal(terminal)),
            Some(site) if *site != cert.site => {
                return Err(PosError::TerminalOtherSite {
                    terminal,
                    site: site.clone(),
                });
            }
            Some(_) => {}
        }
        let transport = keys::transport(store, key)?;
        let keys = match keys::held(store, key) {
            Ok(held) => Keys {
                load: held.load(),
                maintenance: held.maintenance.map(Key16::from_bytes),
                pin_unblock: held.pin_unblock.map(Key16::from_bytes),
                masters: held.masters(),
                transport,
            },
            Err(KeyError::NoCeremony) => Keys {
                load: None,
                maintenance: None,
                pin_unblock: None,
                masters: None,
                transport,
            },
            Err(e) => return Err(e.into()),
        };
        Ok(Pos {
            store: store.clone(),
            terminal,
            site: cert.site,
            role: cert.role,
            clock,
            docs,
            keys,
            stops: Stops::from_env(),
            max_purchases_per_day: DEFAULT_MAX_PURCHASES_PER_DAY,
            reversal_window_ms: DEFAULT_REVERSAL_WINDOW_MS,
        })
    }

    pub fn terminal(&self) -> TerminalId {
        self.terminal
    }

    /// Rereads the registry, price book and discounts (after a sync).
    pub fn refresh(&mut self) -> Result<(), PosError> {
        self.docs = read_docs(&self.store, &self.site)?;
        Ok(())
    }

    /// Sets the number of purchases per card per day above which a purchase is flagged.
    pub fn set_max_purchases_per_day(&mut self, n: u32) {
        self.max_purchases_per_day = n;
    }

    /// Sets how long after a sale the cashier may still reverse it.
    pub fn set_reversal_window(&mut self, window: std::time::Duration) {
        self.reversal_window_ms = window.as_millis().try_into().unwrap_or(u64::MAX);
    }

    pub(super) fn reversal_window_ms(&self) -> u64 {
        self.reversal_window_ms
    }

    fn risk(&self) -> RiskConfig {
        RiskConfig {
            limits: self.docs.registry.limits.clone(),
            max_purchases_per_day: self.max_purchases_per_day,
        }
    }

    pub(super) fn now_ms(&self) -> i64 {
        self.clock.now_ms() as i64
    }

    pub(super) fn utc_offset(&self) -> i32 {
        self.docs
            .registry
            .sites
            .get(&self.site)
            .map_or(0, |s| s.utc_offset_min)
    }

    pub(super) fn today(&self) -> BusinessDay {
        BusinessDay::of_instant(self.now_ms(), self.utc_offset())
    }

    fn session_key(&self) -> String {
        format!("{SESSION_PREFIX}{}", self.terminal)
    }

    // ---- operators ----------------------------------------------------------------

    pub(super) fn operator_session(&self, operator: &OperatorId) -> Result<Session, PosError> {
        let info = self
            .docs
            .registry
            .operators
            .get(operator)
            .ok_or_else(|| PosError::UnknownOperator(operator.clone()))?;
        let role: OperatorRole =
            info.role
                .parse()
                .map_err(|reason: String| PosError::BadOperatorRole {
                    operator: operator.clone(),
                    reason,
                })?;
        if info.site != self.site && role != OperatorRole::Admin {
            return Err(PosError::OperatorOtherSite {
                operator: operator.clone(),
                site: info.site.clone(),
            });
        }
        Ok(Session {
            operator: operator.clone(),
            role,
            site: self.site.clone(),
        })
    }

    fn start_session(&self, session: Session, by_card: bool) -> Result<Session, PosError> {
        self.audit(&session.operator, OperatorActionKind::Login { by_card })?;
        self.store.config_set(
            &self.session_key(),
            &postcard::to_stdvec(&session).expect("serializing to a Vec cannot fail"),
        )?;
        Ok(session)
    }

    /// Logs an operator in by id and PIN; a wrong PIN is refused and audited.
    pub fn login(&self, operator: &OperatorId, pin: &str) -> Result<Session, PosError> {
        let session = self.operator_session(operator)?;
        let ok = self
            .docs
            .registry
            .operator_pins
            .get(operator)
            .is_some_and(|v| *v == operators::pin_verifier(operator, pin));
        if !ok {
            self.refused(operator, "login", "wrong operator PIN")?;
            return Err(PosError::BadOperatorPin(operator.clone()));
        }
        self.start_session(session, false)
    }

    /// Logs an operator in with their operator card and its card PIN.
    pub fn login_card<R: CardReader>(
        &self,
        purse: &mut EPurse<R>,
        pin: &Pin,
    ) -> Result<Session, PosError> {
        let info = purse.select()?;
        let operator = self
            .docs
            .registry
            .operator_cards
            .get(&card_asn(&info))
            .ok_or(PosError::NotAnOperatorCard)?
            .clone();
        let session = self.operator_session(&operator)?;
        if let Err(e) = purse.verify_pin(pin) {
            self.refused(&operator, "login by card", &e.to_string())?;
            return Err(e.into());
        }
        self.start_session(session, true)
    }

    /// Ends the session at this terminal.
    pub fn logout(&self) -> Result<(), PosError> {
        let session = self.session()?;
        self.audit(&session.operator, OperatorActionKind::Logout)?;
        self.store.config_set(&self.session_key(), &[])?;
        Ok(())
    }

    /// The operator logged in at this terminal.
    pub fn session(&self) -> Result<Session, PosError> {
        match self.store.config_get(&self.session_key())? {
            Some(bytes) if !bytes.is_empty() => postcard::from_bytes(&bytes)
                .map_err(|e| PosError::Store(StoreError::corrupt(format!("POS session: {e}")))),
            _ => Err(PosError::NotLoggedIn(self.terminal)),
        }
    }

    /// The session, if it may do `op`; a refusal is audited. The operator works as the
    /// registry has them now, not as at login: HQ may since have removed them, moved them
    /// to another site or given them another role. A session the registry no longer
    /// allows ends here.
    pub(super) fn authorize(&self, op: Operation) -> Result<Session, PosError> {
        let held = self.session()?;
        let session = match self.operator_session(&held.operator) {
            Ok(session) => session,
            Err(gone) => {
                self.store.config_set(&self.session_key(), &[])?;
                self.refused(&held.operator, &op.to_string(), &gone.to_string())?;
                return Err(gone);
            }
        };
        if !operators::permits(session.role, op) {
            self.refused(&session.operator, &op.to_string(), "not permitted")?;
            return Err(PosError::NotPermitted {
                operator: session.operator,
                role: session.role,
                op,
            });
        }
        Ok(session)
    }

    pub(super) fn audit(
        &self,
        operator: &OperatorId,
        action: OperatorActionKind,
    ) -> Result<Entry, PosError> {
        Ok(self.store.append_local(Body::Operator(OperatorAction {
            operator: operator.clone(),
            terminal: Some(self.terminal),
            action,
        }))?)
    }

    pub(super) fn refused(
        &self,
        operator: &OperatorId,
        what: &str,
        reason: &str,
    ) -> Result<(), PosError> {
        self.audit(
            operator,
            OperatorActionKind::Refused {
                what: what.into(),
                reason: reason.into(),
            },
        )?;
        Ok(())
    }

    pub(super) fn alarm(
        &self,
        kind: AlarmKind,
        asn: CardAsn,
        detail: String,
    ) -> Result<Entry, PosError> {
        Ok(self.store.append_local(Body::Alarm(Alarm {
            kind,
            asn: Some(asn),
            detail,
        }))?)
    }

    // ---- presentation -------------------------------------------------------------

    /// Selects the card, refuses it if blacklisted (blocking it on the card and raising
    /// an alarm), and settles every intent still pending for it.
    pub(super) fn present<R: CardReader>(
        &self,
        purse: &mut EPurse<R>,
        session: &Session,
        what: &str,
    ) -> Result<(CardInfo, Vec<Settled>), PosError> {
        let info = match purse.select() {
            Ok(info) => info,
            Err(EpurseError::ApplicationBlocked { asn: Some(asn) }) => {
                let asn = CardAsn(asn.0);
                self.alarm(
                    AlarmKind::BlacklistedCardPresented,
                    asn,
                    format!("blocked card presented for a {what}"),
                )?;
                self.refused(&session.operator, what, "card blocked")?;
                return Err(PosError::Blacklisted(asn));
            }
            Err(e) => return Err(e.into()),
        };
        let asn = card_asn(&info);
        if self.store.is_blocked(&asn)? {
            // The card may still work elsewhere until its chip is blocked too.
            let blocked_chip = match &self.keys.maintenance {
                Some(k) => purse
                    .application_block(&MaintenanceKey::new(k.clone()))
                    .map_or_else(
                        |e| format!("chip not blocked: {e}"),
                        |()| "chip blocked".into(),
                    ),
                None => "chip not blocked: no maintenance key here".into(),
            };
            self.alarm(
                AlarmKind::BlacklistedCardPresented,
                asn,
                format!("blacklisted card presented for a {what}; {blocked_chip}"),
            )?;
            self.refused(&session.operator, what, "card blacklisted")?;
            return Err(PosError::Blacklisted(asn));
        }
        let settled = self.settle(purse, asn)?;
        Ok((info, settled))
    }

    /// Settles the card's pending intents from its proof and log.
    pub(super) fn settle<R: CardReader>(
        &self,
        purse: &mut EPurse<R>,
        asn: CardAsn,
    ) -> Result<Vec<Settled>, PosError> {
        let pending = self.store.pending_intents(&asn)?;
        if pending.is_empty() {
            return Ok(Vec::new());
        }
        let log = purse.read_records()?;
        let mut out = Vec::new();
        for entry in pending {
            let intent = entry.entry_ref();
            let Body::Intent(txn) = entry.body else {
                return Err(StoreError::corrupt("a pending intent is not an intent").into());
            };
            let Some(space) = txn.kind.counter_space() else {
                continue;
            };
            let prove_kind = match space {
                CounterSpace::Online => ProveKind::Load,
                CounterSpace::Offline => ProveKind::Offline,
            };
            let proof = purse.transaction_prove(prove_kind, txn.card_counter)?;
            let decision = resolve::decide(&txn, proof, &log);
            if matches!(decision, Decision::Void(_))
                && txn.kind == TxnKind::DebitForUnlock
                && self.awaits_unlock(purse, txn.card_counter)?
            {
                // A deferred debit: the card is still locked for it; `unlock` does it.
                continue;
            }
            out.push(match decision {
                Decision::Complete { mac, tac, proven } => {
                    let mut done = txn;
                    if space == CounterSpace::Offline {
                        done.mac2 = mac;
                    }
                    done.tac = tac;
                    // Another site's intent: its sale stays its own, completed here.
                    let body = if done.site == self.site {
                        Body::Card(done)
                    } else {
                        Body::Completion(Completion { intent, txn: done })
                    };
                    let entry = self.store.append_local(body)?;
                    if !proven {
                        self.alarm(
                            AlarmKind::TransactionUnsettled,
                            asn,
                            format!(
                                "intent {}:{} completed from the card's log without its TAC",
                                intent.origin.short(),
                                intent.seq
                            ),
                        )?;
                    }
                    Settled::Completed {
                        intent,
                        entry: entry.entry_ref(),
                    }
                }
                Decision::Void(reason) => {
                    self.store.append_local(Body::IntentVoid(IntentVoid {
                        intent,
                        asn,
                        reason: reason.clone(),
                    }))?;
                    Settled::Voided { intent, reason }
                }
                Decision::Undetermined(reason) => {
                    self.alarm(AlarmKind::TransactionUnsettled, asn, reason.clone())?;
                    Settled::Undetermined { intent, reason }
                }
            });
        }
        Ok(out)
    }

    /// Is the card grey-locked with the lock that `counter` would unlock?
    fn awaits_unlock<R: CardReader>(
        &self,
        purse: &mut EPurse<R>,
        counter: u16,
    ) -> Result<bool, PosError> {
        let status = purse.grey_status()?;
        Ok(status.locked
            && status
                .last_lock
                .is_some_and(|l| l.offline_counter.wrapping_add(1) == counter))
    }

    /// The card's registry record, refusing a card that is not active.
    pub(super) fn active_record(&self, asn: CardAsn) -> Result<Option<CardRecord>, PosError> {
        let record = self.store.card(&asn)?;
        if let Some(status) = record.as_ref().and_then(CardRecord::status)
            && *status != CardStatus::Active
        {
            return Err(PosError::CardNotActive {
                asn,
                status: format!("{status:?}").to_lowercase(),
            });
        }
        Ok(record)
    }

    /// Money spent and purchases made with a card today, from the local ledger.
    fn card_day(&self, asn: &CardAsn) -> Result<CardDay, PosError> {
        let (spent, purchases) = self.store.card_spending(asn, self.today())?;
        Ok(CardDay { spent, purchases })
    }

    pub(super) fn blank_txn(
        &self,
        kind: TxnKind,
        asn: CardAsn,
        operator: &OperatorId,
        when: BcdDateTime,
    ) -> CardTxn {
        CardTxn {
            kind,
            asn,
            site: self.site.clone(),
            terminal: self.terminal,
            operator: Some(operator.clone()),
            business_day: self.today(),
            card_time: CardTime(when.0),
            card_counter: 0,
            term_seq: 0,
            amount: Money::ZERO,
            balance_before: Money::ZERO,
            balance_after: Money::ZERO,
            mac1: [0; 4],
            mac2: [0; 4],
            tac: [0; 4],
            items: Vec::new(),
            refers_to: None,
        }
    }

    /// Prices a basket for a member class now.
    pub fn price(
        &self,
        basket: &[BasketLine],
        class: Option<&MemberClass>,
    ) -> Result<Vec<LineItem>, PosError> {
        if basket.is_empty() {
            return Err(PosError::EmptyBasket);
        }
        basket
            .iter()
            .map(|line| {
                let q = pricing::quote(
                    &self.docs.book,
                    self.docs.site_prices.as_ref(),
                    &self.docs.discounts,
                    &QuoteRequest {
                        product: &line.product,
                        quantity: line.quantity,
                        class,
                        at_ms: self.now_ms(),
                        utc_offset_min: self.utc_offset(),
                    },
                )?;
                Ok(LineItem {
                    product: line.product.clone(),
                    quantity: line.quantity,
                    unit_price: q.unit_price,
                    paid_percent: q.paid_percent,
                    amount: q.amount,
                })
            })
            .collect()
    }

    // ---- money ------------------------------------------------------------------

    /// Sells a basket to the card: blacklist first, registry status, risk limits, PIN
    /// above the threshold, then intent -> debit -> completion.
    pub fn purchase<R: CardReader, S: Sam>(
        &self,
        purse: &mut EPurse<R>,
        sam: &mut S,
        basket: &[BasketLine],
        pin: Option<&Pin>,
    ) -> Result<Receipt, PosError> {
        let session = self.authorize(Operation::Purchase)?;
        let (info, _) = self.present(purse, &session, "purchase")?;
        let asn = card_asn(&info);
        let record = self.active_record(asn)?;
        let class = record
            .as_ref()
            .and_then(|r| r.class.as_ref())
            .map(|c| &c.value);
        let items = self.price(basket, class)?;
        let total = items.iter().try_fold(Money::ZERO, |sum, i| {
            sum.checked_add(i.amount)
                .map_err(|_| PosError::Amount(i.amount))
        })?;
        let flagged = match risk::check_purchase(&self.risk(), total, self.card_day(&asn)?) {
            Ok(flag) => flag,
            Err(refusal) => {
                self.refused(&session.operator, "purchase", &refusal.to_string())?;
                return Err(refusal.into());
            }
        };
        if total > self.docs.registry.limits.pin_above {
            let pin = pin.ok_or(PosError::PinRequired(total))?;
            purse.verify_pin(pin)?;
        }
        let when = card_time(self.now_ms(), self.utc_offset())?;
        let amount = fen_u32(total)?;
        let started = purse.purchase_begin(sam, amount, when)?;
        self.stops.at("purchase:begun");
        let mut txn = self.blank_txn(TxnKind::Purchase, asn, &session.operator, when);
        txn.card_counter = started.counter();
        txn.term_seq = started.mac1().term_seq;
        txn.mac1 = started.mac1().mac1.0;
        txn.amount = total;
        txn.balance_before = Money::from_fen(started.balance().into());
        txn.balance_after = Money::from_fen(i64::from(started.balance()) - total.fen());
        txn.items = items;
        let intent = self.store.append_local(Body::Intent(txn.clone()))?;
        self.stops.at("purchase:intent-logged");
        let receipt =
            self.finish_debit(purse, sam, started, &txn, intent.entry_ref(), "purchase")?;
        self.stops.at("purchase:card-debited");
        txn.mac2 = receipt.mac2.0;
        txn.tac = receipt.tac.0;
        let entry = self.store.append_local(Body::Card(txn.clone()))?;
        self.stops.at("purchase:completed");
        if let Some(why) = &flagged {
            self.alarm(AlarmKind::RiskLimit, asn, why.clone())?;
        }
        Ok(Receipt {
            entry: entry.entry_ref(),
            txn,
            flagged,
        })
    }

    /// Completes a debit whose intent (`txn`, logged as `intent`) is on disk. A card whose
    /// MAC2 is wrong has debited all the same: its entry is logged and HQ alarmed, as the
    /// card looks forged.
    pub(super) fn finish_debit<R: CardReader, S: Sam>(
        &self,
        purse: &mut EPurse<R>,
        sam: &mut S,
        started: PurchaseStarted,
        txn: &CardTxn,
        intent: EntryRef,
        what: &'static str,
    ) -> Result<PurchaseReceipt, PosError> {
        match purse.purchase_finish(sam, started) {
            Ok(r) => Ok(r),
            Err(EpurseError::Mac2Invalid { receipt }) => {
                let mut debited = txn.clone();
                debited.mac2 = receipt.mac2.0;
                debited.tac = receipt.tac.0;
                self.store.append_local(Body::Card(debited))?;
                self.alarm(
                    AlarmKind::CloneSuspected,
                    txn.asn,
                    format!("MAC2 wrong after a {what}'s debit"),
                )?;
                Err(EpurseError::Mac2Invalid { receipt }.into())
            }
            Err(e) => Err(self.unfinished(intent, txn.asn, e, what)),
        }
    }

    /// A money command failed after its intent was logged. A refusal by the card means
    /// the counter was not consumed: the intent is voided now. Anything else (a pulled
    /// card, a dead reader) leaves it for the card's next presentation.
    pub(super) fn unfinished(
        &self,
        intent: EntryRef,
        asn: CardAsn,
        e: EpurseError,
        what: &'static str,
    ) -> PosError {
        match e {
            EpurseError::Interrupted { .. } | EpurseError::Reader(_) => PosError::Interrupted(what),
            e => {
                if let Err(store) = self.store.append_local(Body::IntentVoid(IntentVoid {
                    intent,
                    asn,
                    reason: format!("the card refused it: {e}"),
                })) {
                    return store.into();
                }
                e.into()
            }
        }
    }

    /// Loads money onto the card (card desk, issuer nodes): PIN, balance limit by card
    /// kind, then intent -> credit -> completion.
    pub fn load<R: CardReader>(
        &self,
        purse: &mut EPurse<R>,
        amount: Money,
        pin: &Pin,
    ) -> Result<Receipt, PosError> {
        let session = self.authorize(Operation::Load)?;
        let key = self.keys.load.clone().ok_or(PosError::MissingKey("load"))?;
        let (info, _) = self.present(purse, &session, "load")?;
        let asn = card_asn(&info);
        let record = self.active_record(asn)?;
        let named = record.as_ref().is_some_and(CardRecord::is_named);
        let balance = Money::from_fen(purse.balance()?.into());
        if let Err(refusal) = risk::check_load(&self.risk(), named, balance, amount) {
            self.refused(&session.operator, "load", &refusal.to_string())?;
            return Err(refusal.into());
        }
        self.credit(
            purse,
            Credit {
                session: &session,
                kind: TxnKind::Load,
                asn,
                amount,
                refers_to: None,
                key,
                pin,
                step: "load",
            },
        )
    }

    /// Grey-locks the card before fuelling: intent -> lock -> completion. The lock
    /// entry is the grey record that replicates to every station.
    pub fn grey_lock<R: CardReader, S: Sam>(
        &self,
        purse: &mut EPurse<R>,
        sam: &mut S,
    ) -> Result<Receipt, PosError> {
        let session = self.authorize(Operation::GreyLock)?;
        let (info, _) = self.present(purse, &session, "grey lock")?;
        let asn = card_asn(&info);
        self.active_record(asn)?;
        let when = card_time(self.now_ms(), self.utc_offset())?;
        let started = purse.grey_lock_begin(sam, when)?;
        let mut txn = self.blank_txn(TxnKind::GreyLock, asn, &session.operator, when);
        txn.card_counter = started.offline_counter;
        txn.term_seq = started.term_seq;
        txn.mac1 = started.mac1.0;
        txn.balance_before = Money::from_fen(started.balance.into());
        txn.balance_after = txn.balance_before;
        let intent = self.store.append_local(Body::Intent(txn.clone()))?;
        let r = purse
            .grey_lock_finish(sam, started)
            .map_err(|e| self.unfinished(intent.entry_ref(), asn, e, "grey lock"))?;
        txn.mac2 = r.mac2.0;
        txn.tac = r.gtac.0;
        let entry = self.store.append_local(Body::Card(txn.clone()))?;
        Ok(Receipt {
            entry: entry.entry_ref(),
            txn,
            flagged: None,
        })
    }

    /// Debits the fuel and unlocks a grey-locked card, locked here or at any other
    /// station. Without `amount` this is the deferred debit: the amount is the one the
    /// locking station logged (its intent replicated here) before it could debit.
    pub fn unlock<R: CardReader, S: Sam>(
        &self,
        purse: &mut EPurse<R>,
        sam: &mut S,
        amount: Option<Money>,
    ) -> Result<Receipt, PosError> {
        let session = self.authorize(Operation::GreyLock)?;
        let (info, _) = self.present(purse, &session, "debit for unlock")?;
        let asn = card_asn(&info);
        let status = purse.grey_status()?;
        let lock = match (status.locked, status.last_lock) {
            (true, Some(lock)) => lock,
            _ => return Err(EpurseError::NotGreyLocked.into()),
        };
        let counter = lock.offline_counter.wrapping_add(1);
        let amount = match amount {
            Some(a) => a,
            None => self
                .store
                .pending_intents(&asn)?
                .into_iter()
                .find_map(|e| match e.body {
                    Body::Intent(t)
                        if t.kind == TxnKind::DebitForUnlock && t.card_counter == counter =>
                    {
                        Some(t.amount)
                    }
                    _ => None,
                })
                .ok_or(PosError::NoDeferredDebit(asn))?,
        };
        let lock_entry = self
            .store
            .counter_entry(&asn, CounterSpace::Offline, lock.offline_counter)?
            .map(|e| e.entry_ref());
        let when = card_time(self.now_ms(), self.utc_offset())?;
        let started = purse.unlock_begin(sam, fen_u32(amount)?, when)?;
        let mut txn = self.blank_txn(TxnKind::DebitForUnlock, asn, &session.operator, when);
        txn.card_counter = started.offline_counter;
        txn.term_seq = started.term_seq;
        txn.mac1 = started.gmac.0;
        txn.amount = amount;
        txn.balance_before = Money::from_fen(started.balance_before.into());
        txn.balance_after = Money::from_fen(started.balance_after.into());
        txn.refers_to = lock_entry;
        let intent = self.store.append_local(Body::Intent(txn.clone()))?;
        self.stops.at("unlock:intent-logged");
        let r = purse
            .unlock_finish(started)
            .map_err(|e| self.unfinished(intent.entry_ref(), asn, e, "debit for unlock"))?;
        txn.tac = r.tac.0;
        let entry = self.store.append_local(Body::Card(txn.clone()))?;
        Ok(Receipt {
            entry: entry.entry_ref(),
            txn,
            flagged: None,
        })
    }

    // ---- card desk ----------------------------------------------------------------

    /// Balance and history: the card's own balance and log, the local ledger, the
    /// registry record. Settles pending intents on the way.
    pub fn query<R: CardReader>(&self, purse: &mut EPurse<R>) -> Result<CardView, PosError> {
        let session = self.authorize(Operation::Query)?;
        let (info, settled) = self.present(purse, &session, "balance query")?;
        let asn = card_asn(&info);
        Ok(CardView {
            info,
            balance: Money::from_fen(purse.balance()?.into()),
            card_log: purse.read_records()?,
            ledger: self.store.card_history(&asn)?,
            record: self.store.card(&asn)?,
            settled,
        })
    }

    /// Reports a named card lost: a blacklist block that replicates to every node.
    pub fn report_lost(&self, asn: CardAsn) -> Result<Entry, PosError> {
        let session = self.authorize(Operation::ReportLost)?;
        let named = self.store.card(&asn)?.is_some_and(|r| r.is_named());
        if !named {
            self.refused(&session.operator, "report lost", "anonymous card")?;
            return Err(PosError::Anonymous(asn));
        }
        Ok(self
            .store
            .append_local(Body::Blacklist(BlacklistEvent::Block {
                asn,
                reason: BlockReason::Lost,
                operator: Some(session.operator),
            }))?)
    }

    /// Lifts every block of a card this node knows of (HQ only), and unblocks the chip
    /// if the card is in the reader.
    pub fn unblock<R: CardReader>(
        &self,
        asn: CardAsn,
        purse: Option<&mut EPurse<R>>,
        note: &str,
    ) -> Result<Entry, PosError> {
        let session = self.authorize(Operation::Unblock)?;
        if self.role != Role::Hq {
            self.refused(&session.operator, "unblock", "not HQ")?;
            return Err(PosError::HqOnly("lift a blacklist block"));
        }
        let clears = self
            .store
            .blacklist(&asn)?
            .map(|b| b.open_blocks().into_iter().map(|b| b.at).collect())
            .unwrap_or_default();
        let entry = self
            .store
            .append_local(Body::Blacklist(BlacklistEvent::Clear {
                asn,
                clears,
                note: note.into(),
                operator: Some(session.operator),
            }))?;
        if let Some(purse) = purse {
            let key = self
                .keys
                .maintenance
                .clone()
                .ok_or(PosError::MissingKey("maintenance"))?;
            match purse.select() {
                Ok(_) | Err(EpurseError::ApplicationBlocked { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            purse.application_unblock(&MaintenanceKey::new(key))?;
        }
        Ok(entry)
    }

    /// Changes the cardholder's PIN on the card.
    pub fn change_pin<R: CardReader>(
        &self,
        purse: &mut EPurse<R>,
        old: &Pin,
        new: &Pin,
    ) -> Result<(), PosError> {
        let session = self.authorize(Operation::ChangePin)?;
        self.present(purse, &session, "PIN change")?;
        purse.change_pin(old, new)?;
        self.audit(
            &session.operator,
            OperatorActionKind::Approved {
                what: "cardholder PIN changed".into(),
            },
        )?;
        Ok(())
    }

    /// Resets a blocked PIN's try counter (issuing desk, needs the PIN-unblock key).
    pub fn unblock_pin<R: CardReader>(&self, purse: &mut EPurse<R>) -> Result<(), PosError> {
        let session = self.authorize(Operation::Issue)?;
        let key = self
            .keys
            .pin_unblock
            .clone()
            .ok_or(PosError::MissingKey("PIN-unblock"))?;
        self.present(purse, &session, "PIN unblock")?;
        purse.pin_unblock(&PinUnblockKey::new(key))?;
        self.audit(
            &session.operator,
            OperatorActionKind::Approved {
                what: "cardholder PIN unblocked".into(),
            },
        )?;
        Ok(())
    }

    /// Secondary issue: the card is sold, named (with a holder) or anonymous, with a
    /// deposit. The registry records the holder and the card becomes active.
    pub fn issue<R: CardReader>(
        &self,
        purse: &mut EPurse<R>,
        holder: Option<Holder>,
        deposit: Money,
    ) -> Result<Receipt, PosError> {
        use cardmesh_model::body::{CardChange, CardEvent};
        let session = self.authorize(Operation::Issue)?;
        let (info, _) = self.present(purse, &session, "issue")?;
        let asn = card_asn(&info);
        if let Some(status) = self.store.card(&asn)?.as_ref().and_then(CardRecord::status)
            && !matches!(status, CardStatus::Blank | CardStatus::Returned)
        {
            return Err(PosError::CardNotActive {
                asn,
                status: format!("{status:?} (not blank)").to_lowercase(),
            });
        }
        let balance = Money::from_fen(purse.balance()?.into());
        let when = card_time(self.now_ms(), self.utc_offset())?;
        let mut txn = self.blank_txn(TxnKind::Issue { deposit }, asn, &session.operator, when);
        txn.amount = deposit;
        txn.balance_before = balance;
        txn.balance_after = balance;
        let entry = self.store.append_local(Body::Card(txn.clone()))?;
        self.store.append_local(Body::CardRegistry(CardEvent {
            asn,
            change: CardChange::Holder(holder),
        }))?;
        self.store.append_local(Body::CardRegistry(CardEvent {
            asn,
            change: CardChange::Status(CardStatus::Active),
        }))?;
        Ok(Receipt {
            entry: entry.entry_ref(),
            txn,
            flagged: None,
        })
    }
}

fn read_docs(store: &Store, site: &SiteId) -> Result<Docs, PosError> {
    Ok(Docs {
        registry: store
            .doc(&DocName::Network)?
            .map(|d| network::read(&d))
            .unwrap_or_default(),
        book: store
            .doc(&DocName::PriceBook)?
            .map(|d| pricebook::read(&d))
            .unwrap_or_default(),
        site_prices: store
            .doc(&DocName::SitePrices(site.clone()))?
            .map(|d| pricebook::read(&d).prices),
        discounts: store
            .doc(&DocName::Discounts)?
            .map(|d| discounts::read(&d))
            .unwrap_or_default(),
    })
}
