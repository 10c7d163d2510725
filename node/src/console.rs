//! The console's view of nodes: `cardmesh_tui::Nodes` over the demo's [`Cluster`] and a
//! site's [`Running`] node. Every answer comes from the node's own APIs: the POS
//! terminal for operators and card operations, the store's views for the dashboard, the
//! HQ report rows for reports, the iroh link and the USB stick for sync. Errors become
//! the plain words of their `Display`.
//!
//! A node's console works at one terminal: the first one the network registry assigns to
//! its site. Cards are presented from the demo's wallet (virtual cards kept in files, so
//! one card carried from node to node keeps its balance) or from a PC/SC reader.

use crate::handle::{Cluster, Node, Running, Session};
use crate::hq::report::{self as hq_report, By};
use crate::identity::NetworkKey;
use crate::link::NodeSync;
use crate::link::serial::call;
use crate::pos::{BasketLine, OperatorRole, Pos, PosError};
use crate::sam::software_sam;
use crate::store::{Store, StoreError};
use crate::usb;
use cardmesh_drivers::card::VirtualCard;
use cardmesh_drivers::epurse::{EPurse, EpurseError};
use cardmesh_drivers::modem::pty::SocatPair;
use cardmesh_drivers::modem::sim::{Exchange, LineConfig};
use cardmesh_drivers::reader::pcsc::PcscReader;
use cardmesh_drivers::reader::{CardReader, MemoryReader, ReaderError};
use cardmesh_drivers::types::Pin;
use cardmesh_model::body::{Body, CardTxn, Holder, TxnKind};
use cardmesh_model::docs::DocName;
use cardmesh_model::docs::network::{self, NetworkRegistry};
use cardmesh_model::docs::pricebook;
use cardmesh_model::registry::CardRecord;
use cardmesh_model::report::{Scope, Totals, TxnClass};
use cardmesh_model::settlement::{day_of, days_from_civil};
use cardmesh_model::{
    BusinessDay, CardAsn, Money, NodeKey, OperatorId, ProductId, Quantity, Role, SiteId, TerminalId,
};
use cardmesh_tui::{
    Answer, CardDetails, Dashboard, Failure, HistoryRow, LinkRow, NodeSummary, Nodes, Operator,
    Period, Quote, QuoteLine, Report, ReportRow, Sale, TerminalSales, WalletCard,
};
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

const DAY_MS: i64 = 86_400_000;
/// What one USB sync from the console may write to the stick.
const USB_BUDGET: u64 = 64 << 20;

/// Where a node's console finds the cards it presents.
#[derive(Clone, Debug)]
pub enum CardSource {
    /// Virtual cards, one state file per card (`<asn>.card`) in this folder.
    Wallet(PathBuf),
    /// The PC/SC reader whose name contains this text.
    Reader(String),
}

/// What the demo's console has besides the nodes: its wallet, USB stick folder and the
/// dial-up line.
pub struct DemoDevices {
    pub cards: CardSource,
    pub stick: PathBuf,
    pub network_key: NetworkKey,
    /// The login screen's line: the demo operators and their PINs.
    pub hint: String,
    pub dial_up: Option<DialUp>,
    /// A fuel station with a simulated pump and a customer, on node `.0`.
    pub forecourt: Option<(usize, crate::forecourt::Forecourt)>,
}

/// Two demo nodes joined by the simulated phone exchange: each has a modem on its own
/// socat pty pair, the caller dials, the answerer picks up once per call.
pub struct DialUp {
    pub caller: usize,
    pub answerer: usize,
    // Dropped first: the exchange's pumps hold the ptys socat serves.
    exchange: Exchange,
    caller_port: SocatPair,
    answerer_port: SocatPair,
    last: Mutex<Option<Session>>,
}

const ANSWERER_NUMBER: &str = "5550100";
const CALLER_NUMBER: &str = "5550300";

/// The peer name the dial-up link has in the console (the iroh link has the plain name).
pub fn dial_up_name(peer: &str) -> String {
    format!("{peer}/modem")
}

impl DialUp {
    /// Puts modems for nodes `caller` and `answerer` on a 33.6 kbit/s exchange, with
    /// the socat ptys in `dir`.
    pub fn install(dir: &Path, caller: usize, answerer: usize) -> std::io::Result<DialUp> {
        let caller_port = SocatPair::start(dir, "caller-modem")?;
        let answerer_port = SocatPair::start(dir, "answerer-modem")?;
        let mut exchange = Exchange::new(LineConfig::V34);
        exchange.install(CALLER_NUMBER, caller_port.b())?;
        exchange.install(ANSWERER_NUMBER, answerer_port.b())?;
        Ok(DialUp {
            caller,
            answerer,
            exchange,
            caller_port,
            answerer_port,
            last: Mutex::new(None),
        })
    }

    fn connects(&self, a: usize, b: usize) -> bool {
        (a, b) == (self.caller, self.answerer) || (b, a) == (self.caller, self.answerer)
    }

    fn last(&self) -> Option<Session> {
        self.last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

fn plain(e: impl std::fmt::Display) -> Failure {
    Failure::Plain(e.to_string())
}

fn pos_failure(e: PosError) -> Failure {
    match e {
        PosError::PinRequired(total) => Failure::PinRequired(total),
        e => plain(e),
    }
}

/// The registry's UTC offset of `site` (0 before HQ has written it).
pub fn utc_offset(store: &Store, site: &SiteId) -> Result<i32, StoreError> {
    Ok(registry(store)?
        .sites
        .get(site)
        .map_or(0, |s| s.utc_offset_min))
}

fn registry(store: &Store) -> Result<NetworkRegistry, StoreError> {
    Ok(store
        .doc(&DocName::Network)?
        .map(|d| network::read(&d))
        .unwrap_or_default())
}

/// An instant as site-local "YYYY-MM-DD hh:mm".
pub fn local_time(ms: i64, utc_offset_min: i32) -> String {
    let local = ms + i64::from(utc_offset_min) * 60_000;
    let mins = local.rem_euclid(DAY_MS) / 60_000;
    format!(
        "{} {:02}:{:02}",
        BusinessDay::of_instant(ms, utc_offset_min),
        mins / 60,
        mins % 60
    )
}

/// When a price change typed at the console takes effect: "now", or the site-local
/// midnight starting a day (2026-12-01).
pub fn price_from(text: &str, now_ms: i64, utc_offset_min: i32) -> Result<i64, String> {
    if text.eq_ignore_ascii_case("now") {
        return Ok(now_ms);
    }
    let bad = || format!("'{text}' is neither 'now' nor a day like 2026-12-01");
    let parts: Vec<u32> = text
        .split('-')
        .map(|p| p.parse().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    let [year, month, day] = parts[..] else {
        return Err(bad());
    };
    let d = BusinessDay {
        year: u16::try_from(year).map_err(|_| bad())?,
        month: u8::try_from(month).map_err(|_| bad())?,
        day: u8::try_from(day).map_err(|_| bad())?,
    };
    let days = days_from_civil(d);
    if day_of(days) != d {
        return Err(bad());
    }
    let at = days * DAY_MS - i64::from(utc_offset_min) * 60_000;
    if at < now_ms - DAY_MS {
        return Err(format!(
            "{text} is past: a price change takes effect now or later"
        ));
    }
    Ok(at)
}

fn bcd(b: u8) -> u32 {
    u32::from(b >> 4) * 10 + u32::from(b & 0x0f)
}

fn kind_word(kind: &TxnKind) -> &'static str {
    match kind {
        TxnKind::Purchase => "purchase",
        TxnKind::Load => "load",
        TxnKind::Refund => "refund",
        TxnKind::Reversal => "reversal",
        TxnKind::GreyLock => "grey lock",
        TxnKind::DebitForUnlock => "fuel",
        TxnKind::Issue { .. } => "issue",
        TxnKind::Return { .. } => "return",
        TxnKind::Replace { .. } => "replace",
    }
}

/// Today's sales from a day's ledger: totals, by local hour (from the card time) and by
/// terminal. Pure, so it is tested without a store.
pub fn day_sales(txns: &[CardTxn]) -> (Money, u64, Vec<Money>, Vec<TerminalSales>) {
    let mut total = 0i64;
    let mut count = 0;
    let mut by_hour = vec![0i64; 24];
    let mut by_terminal: std::collections::BTreeMap<String, (u64, i64)> = Default::default();
    for t in txns {
        if !matches!(t.kind, TxnKind::Purchase | TxnKind::DebitForUnlock) {
            continue;
        }
        let fen = t.amount.fen();
        total = total.saturating_add(fen);
        count += 1;
        let hour = bcd(t.card_time.0[4]) as usize;
        if let Some(h) = by_hour.get_mut(hour) {
            *h = h.saturating_add(fen);
        }
        let e = by_terminal.entry(t.terminal.to_string()).or_default();
        e.0 += 1;
        e.1 = e.1.saturating_add(fen);
    }
    (
        Money::from_fen(total),
        count,
        by_hour.into_iter().map(Money::from_fen).collect(),
        by_terminal
            .into_iter()
            .map(|(terminal, (count, fen))| TerminalSales {
                terminal,
                count,
                amount: Money::from_fen(fen),
            })
            .collect(),
    )
}

/// A report as CSV: one line per period.
pub fn report_csv(r: &Report) -> String {
    let mut out = String::from("period,purchases,purchase_yuan,loads,load_yuan\n");
    for row in &r.rows {
        let _ = writeln!(
            out,
            "{},{},{},{},{}",
            row.label, row.purchases, row.purchase_amount, row.loads, row.load_amount
        );
    }
    out
}

/// One node as its console terminal: the node, its key, its terminal and its cards.
struct Seat<'a> {
    node: &'a Node,
    key: &'a NodeKey,
    cards: &'a CardSource,
}

impl Seat<'_> {
    fn store(&self) -> &Store {
        self.node.store()
    }

    fn site(&self) -> SiteId {
        self.store().own_certificate().site
    }

    fn terminal(&self) -> Answer<TerminalId> {
        let site = self.site();
        registry(self.store())
            .map_err(plain)?
            .terminals
            .iter()
            .find(|(_, s)| **s == site)
            .map(|(t, _)| *t)
            .ok_or_else(|| {
                plain(format!(
                    "no terminal is registered to site {site}: HQ must register one"
                ))
            })
    }

    fn pos(&self) -> Answer<Pos> {
        Pos::open(self.store(), self.key, self.terminal()?, self.node.clock()).map_err(pos_failure)
    }

    fn purse(&self, asn: CardAsn) -> Answer<EPurse<Box<dyn CardReader>>> {
        let reader: Box<dyn CardReader> = match self.cards {
            CardSource::Wallet(dir) => {
                let path = dir.join(format!("{asn}.card"));
                let chip = VirtualCard::open(&path)
                    .map_err(|e| plain(format!("card {asn} is not in the wallet: {e}")))?;
                Box::new(MemoryReader::new(chip))
            }
            CardSource::Reader(name) => Box::new(
                on_reader(name, CARD_WAIT)?
                    .ok_or_else(|| plain("no card on the reader: put the customer's card on it"))?,
            ),
        };
        Ok(EPurse::new(reader))
    }

    fn now_ms(&self) -> i64 {
        self.node.clock().now_ms() as i64
    }

    fn offset(&self) -> Answer<i32> {
        utc_offset(self.store(), &self.site()).map_err(plain)
    }

    fn login(&self, operator: &str, pin: &str) -> Answer<Operator> {
        let id: OperatorId = operator
            .parse()
            .map_err(|_| plain(format!("'{operator}' is not an operator id")))?;
        let session = self.pos()?.login(&id, pin).map_err(pos_failure)?;
        Ok(logged_in(&session))
    }

    fn login_card(&self, card: CardAsn, pin: &str) -> Answer<Operator> {
        let pin = Pin::parse(pin).map_err(plain)?;
        let session = self
            .pos()?
            .login_card(&mut self.purse(card)?, &pin)
            .map_err(pos_failure)?;
        Ok(logged_in(&session))
    }

    fn wallet(&self) -> Answer<Vec<WalletCard>> {
        match self.cards {
            CardSource::Wallet(dir) => {
                let mut cards = Vec::new();
                for entry in std::fs::read_dir(dir).map_err(plain)? {
                    let path = entry.map_err(plain)?.path();
                    let Some(asn) = path
                        .file_stem()
                        .and_then(|s| s.to_str())
                        .and_then(|s| s.parse::<CardAsn>().ok())
                    else {
                        continue;
                    };
                    cards.push(WalletCard {
                        asn,
                        label: self.label(asn)?,
                    });
                }
                cards.sort_by_key(|c| c.asn);
                Ok(cards)
            }
            // The card on the reader now, if any: the one the cashier serves.
            CardSource::Reader(name) => {
                let Some(reader) = on_reader(name, Duration::ZERO)? else {
                    return Ok(Vec::new());
                };
                let mut purse = EPurse::new(reader);
                let asn = match purse.select() {
                    Ok(info) => CardAsn(info.asn.0),
                    Err(EpurseError::ApplicationBlocked { asn: Some(a) }) => CardAsn(a.0),
                    Err(_) => return Ok(Vec::new()),
                };
                Ok(vec![WalletCard {
                    asn,
                    label: format!("{}, on the reader", self.label(asn)?),
                }])
            }
        }
    }

    /// A card's holder and class in words, as this node knows them.
    fn label(&self, asn: CardAsn) -> Answer<String> {
        let record = self.store().card(&asn).map_err(plain)?;
        let (holder, class) = holder_and_class(record.as_ref());
        let lost = if self.store().is_blocked(&asn).map_err(plain)? {
            ", blacklisted"
        } else {
            ""
        };
        Ok(format!("{holder} ({class}{lost})"))
    }

    fn basket(basket: &[(String, Quantity)]) -> Answer<Vec<BasketLine>> {
        basket
            .iter()
            .map(|(id, quantity)| {
                Ok(BasketLine {
                    product: id
                        .parse::<ProductId>()
                        .map_err(|_| plain(format!("'{id}' is not a product id")))?,
                    quantity: *quantity,
                })
            })
            .collect()
    }

    fn product_names(&self) -> Answer<pricebook::PriceBook> {
        Ok(self
            .store()
            .doc(&DocName::PriceBook)
            .map_err(plain)?
            .map(|d| pricebook::read(&d))
            .unwrap_or_default())
    }

    fn quote(&self, card: CardAsn, basket: &[(String, Quantity)]) -> Answer<Quote> {
        let record = self.store().card(&card).map_err(plain)?;
        let class = record
            .as_ref()
            .and_then(|r| r.class.as_ref())
            .map(|c| c.value.clone());
        let items = self
            .pos()?
            .price(&Self::basket(basket)?, class.as_ref())
            .map_err(pos_failure)?;
        let book = self.product_names()?;
        let mut total = Money::ZERO;
        let mut lines = Vec::new();
        for i in items {
            total = total.checked_add(i.amount).map_err(plain)?;
            lines.push(QuoteLine {
                name: book
                    .products
                    .get(&i.product)
                    .map_or_else(|| i.product.to_string(), |p| p.name.clone()),
                quantity: i.quantity,
                unit_price: i.unit_price,
                paid_percent: i.paid_percent,
                amount: i.amount,
            });
        }
        Ok(Quote { lines, total })
    }

    fn sell(
        &self,
        card: CardAsn,
        basket: &[(String, Quantity)],
        pin: Option<&str>,
    ) -> Answer<Sale> {
        let pos = self.pos()?;
        let pin = pin.map(Pin::parse).transpose().map_err(plain)?;
        let mut purse = self.purse(card)?;
        let mut sam = software_sam(self.store(), self.key, pos.terminal()).map_err(plain)?;
        let r = pos
            .purchase(&mut purse, &mut sam, &Self::basket(basket)?, pin.as_ref())
            .map_err(pos_failure)?;
        let book = self.product_names()?;
        let t = &r.txn;
        let mut receipt = vec![format!(
            "{}  terminal {}  {}  card {}",
            t.site,
            t.terminal,
            t.operator.as_ref().map_or(String::new(), |o| o.to_string()),
            t.asn
        )];
        for i in &t.items {
            let name = book
                .products
                .get(&i.product)
                .map_or_else(|| i.product.to_string(), |p| p.name.clone());
            let discount = if i.paid_percent < 100 {
                format!(" -{}%", 100 - i.paid_percent)
            } else {
                String::new()
            };
            receipt.push(format!(
                "{name}  {} x {}{discount}  {}",
                i.quantity, i.unit_price, i.amount
            ));
        }
        receipt.push(format!(
            "total {}   balance {} -> {}",
            t.amount, t.balance_before, t.balance_after
        ));
        if let Some(why) = &r.flagged {
            receipt.push(format!("flagged to HQ: {why}"));
        }
        Ok(Sale {
            total: t.amount,
            balance_before: t.balance_before,
            balance_after: t.balance_after,
            receipt,
        })
    }

    fn card(&self, asn: CardAsn, present: bool) -> Answer<CardDetails> {
        let (balance, ledger, record) = if present {
            let v = self
                .pos()?
                .query(&mut self.purse(asn)?)
                .map_err(pos_failure)?;
            (Some(v.balance), v.ledger, v.record)
        } else {
            let s = self.store();
            (
                None,
                s.card_history(&asn).map_err(plain)?,
                s.card(&asn).map_err(plain)?,
            )
        };
        let (holder, class) = holder_and_class(record.as_ref());
        let status = record
            .as_ref()
            .and_then(CardRecord::status)
            .map_or("unknown here".to_string(), |s| {
                format!("{s:?}").to_lowercase()
            });
        let history = ledger
            .iter()
            .rev()
            .filter_map(|e| match &e.body {
                Body::Card(t) => Some(HistoryRow {
                    day: t.business_day.to_string(),
                    site: t.site.to_string(),
                    kind: kind_word(&t.kind).into(),
                    amount: t.amount,
                    balance_after: t.balance_after,
                }),
                _ => None,
            })
            .collect();
        Ok(CardDetails {
            asn,
            holder,
            class,
            status,
            balance,
            blocked: self.store().is_blocked(&asn).map_err(plain)?,
            history,
        })
    }

    fn load(&self, card: CardAsn, amount: Money, pin: &str) -> Answer<String> {
        let pin = Pin::parse(pin).map_err(plain)?;
        let r = self
            .pos()?
            .load(&mut self.purse(card)?, amount, &pin)
            .map_err(pos_failure)?;
        Ok(format!(
            "loaded {} onto {card}: balance {} -> {}",
            r.txn.amount, r.txn.balance_before, r.txn.balance_after
        ))
    }

    fn issue(&self, card: CardAsn, holder: Option<&str>, deposit: Money) -> Answer<String> {
        let holder = holder.map(|name| Holder {
            name: name.to_string(),
            id_number: String::new(),
            phone: String::new(),
        });
        let who = holder
            .as_ref()
            .map_or("anonymous".to_string(), |h| h.name.clone());
        self.pos()?
            .issue(&mut self.purse(card)?, holder, deposit)
            .map_err(pos_failure)?;
        Ok(format!("issued card {card} to {who}, deposit {deposit}"))
    }

    fn change_pin(&self, card: CardAsn, old: &str, new: &str) -> Answer<String> {
        let old = Pin::parse(old).map_err(plain)?;
        let new = Pin::parse(new).map_err(plain)?;
        self.pos()?
            .change_pin(&mut self.purse(card)?, &old, &new)
            .map_err(pos_failure)?;
        Ok(format!("the PIN of card {card} is changed"))
    }

    fn return_card(&self, card: CardAsn) -> Answer<String> {
        let pos = self.pos()?;
        let mut sam = software_sam(self.store(), self.key, pos.terminal()).map_err(plain)?;
        let r = pos
            .return_card(&mut self.purse(card)?, &mut sam)
            .map_err(pos_failure)?;
        Ok(format!(
            "card {card} returned: pay {} in cash (balance {} + deposit {}); the card is blocked",
            r.cash, r.balance, r.deposit
        ))
    }

    fn replace_card(&self, old: CardAsn, new: CardAsn, pin: &str) -> Answer<String> {
        let pin = Pin::parse(pin).map_err(plain)?;
        let pos = self.pos()?;
        // A card reported lost is not in the customer's hand: its balance comes from
        // the ledger. Any other is presented, and the chip says what it holds.
        let lost = self.store().is_blocked(&old).map_err(plain)?;
        let mut old_purse = if lost { None } else { Some(self.purse(old)?) };
        let r = pos
            .replace_card(old, old_purse.as_mut(), &mut self.purse(new)?, &pin)
            .map_err(pos_failure)?;
        let from = if lost { "its ledger" } else { "its chip" };
        Ok(format!(
            "card {new} replaces {old}: {} moved from {from}; {old} is blocked",
            r.moved
        ))
    }

    fn set_price(&self, product: &str, price: Money, from: &str) -> Answer<String> {
        let pos = self.pos()?;
        let session = pos.session().map_err(pos_failure)?;
        if !matches!(session.role, OperatorRole::Manager | OperatorRole::Admin) {
            return Err(plain(format!(
                "operator {} ({}) may not change prices: ask a manager",
                session.operator, session.role
            )));
        }
        let id: ProductId = product
            .parse()
            .map_err(|_| plain(format!("'{product}' is not a product id")))?;
        let book = self.product_names()?;
        let Some(p) = book.products.get(&id) else {
            return Err(plain(format!("{product} is not in the price book")));
        };
        let offset = self.offset()?;
        let at = price_from(from, self.now_ms(), offset).map_err(Failure::Plain)?;
        let store = self.store();
        let cert = store.own_certificate();
        let doc = if cert.role == Role::Hq {
            DocName::PriceBook
        } else if p.site_override {
            DocName::SitePrices(cert.site.clone())
        } else {
            return Err(plain(format!(
                "{} has one price for the whole network: only HQ changes it",
                p.name
            )));
        };
        store
            .edit_doc(doc, |d| pricebook::schedule_price(d, &id, at, price))
            .map_err(plain)?
            .ok_or_else(|| plain("this node may not change that price list"))?;
        Ok(format!(
            "{} costs {price} from {}",
            p.name,
            local_time(at, offset)
        ))
    }

    fn dashboard(&self, links: Vec<LinkRow>) -> Answer<Dashboard> {
        let store = self.store();
        let reg = registry(store).map_err(plain)?;
        let offset = self.offset()?;
        let day = BusinessDay::of_instant(self.now_ms(), offset);
        let cert = store.own_certificate();
        let sites: Vec<SiteId> = if cert.role == Role::Hq {
            reg.sites.keys().cloned().collect()
        } else {
            vec![cert.site.clone()]
        };
        let mut txns = Vec::new();
        for site in &sites {
            for e in store.day_ledger(site, day).map_err(plain)? {
                if let Body::Card(t) = e.body {
                    txns.push(t);
                }
            }
        }
        let (sales, count, by_hour, by_terminal) = day_sales(&txns);
        let grey_locks = store
            .open_grey_locks()
            .map_err(plain)?
            .iter()
            .map(|l| {
                format!(
                    "card {} locked {}",
                    l.asn,
                    local_time(l.hlc.millis as i64, offset)
                )
            })
            .collect();
        let alarms = store
            .alarms(8)
            .map_err(plain)?
            .iter()
            .filter_map(|e| match &e.body {
                Body::Alarm(a) => Some(format!(
                    "{}: {}",
                    cardmesh_model::report::totals::alarm_name(&a.kind),
                    a.detail
                )),
                _ => None,
            })
            .collect();
        Ok(Dashboard {
            day: day.to_string(),
            sales,
            count,
            by_hour,
            by_terminal,
            grey_locks,
            alarms,
            links,
            pumps: Vec::new(),
        })
    }

    /// This node's totals over `from..=to`: at HQ what the logged-in operator may read
    /// (the network, or their merchant), its own site's elsewhere.
    fn totals(&self, reg: &NetworkRegistry, from: BusinessDay, to: BusinessDay) -> Answer<Totals> {
        let store = self.store();
        let cert = store.own_certificate();
        if cert.role == Role::Hq {
            let session = self.pos()?.session().map_err(pos_failure)?;
            let scope = Scope::of_operator(reg, &cert.site, &session.operator).map_err(plain)?;
            return hq_report::totals_between(store, reg, from, to, &scope).map_err(plain);
        }
        Ok(
            hq_report::sales_between(store, reg, By::Site, from, to, &Scope::Network)
                .map_err(plain)?
                .remove(&cert.site.to_string())
                .unwrap_or_default(),
        )
    }

    fn report(&self, period: Period) -> Answer<Report> {
        let store = self.store();
        let reg = registry(store).map_err(plain)?;
        let today = BusinessDay::of_instant(self.now_ms(), self.offset()?);
        let mut spans = Vec::new();
        let title = match period {
            Period::Daily => {
                let first = BusinessDay { day: 1, ..today };
                for n in 0..31 {
                    let d = day_of(days_from_civil(first) + n);
                    if d.month != today.month || d > today {
                        break;
                    }
                    spans.push((d.to_string(), d, d));
                }
                format!("{}-{:02}", today.year, today.month)
            }
            Period::Monthly => {
                for month in 1..=today.month {
                    let from = BusinessDay {
                        year: today.year,
                        month,
                        day: 1,
                    };
                    let to = BusinessDay { day: 31, ..from };
                    spans.push((format!("{}-{month:02}", today.year), from, to));
                }
                today.year.to_string()
            }
        };
        let mut rows = Vec::new();
        for (label, from, to) in spans {
            let t = self.totals(&reg, from, to)?;
            if t.operations() == 0 {
                continue;
            }
            let p = t.kind(TxnClass::Purchase);
            let l = t.kind(TxnClass::Load);
            rows.push(ReportRow {
                label,
                purchases: p.count,
                purchase_amount: p.amount,
                loads: l.count,
                load_amount: l.amount,
            });
        }
        Ok(Report {
            title: format!("{}, {title}", self.site()),
            rows,
        })
    }

    fn export_csv(&self, period: Period, path: &str) -> Answer<String> {
        let r = self.report(period)?;
        let path = Path::new(path);
        // Never overwrite: an earlier export may be the only copy someone has.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| plain(format!("cannot write {}: {e}", path.display())))?;
        std::io::Write::write_all(&mut file, report_csv(&r).as_bytes())
            .map_err(|e| plain(format!("writing {}: {e}", path.display())))?;
        Ok(format!("wrote {} rows to {}", r.rows.len(), path.display()))
    }

    fn sync_usb(
        &self,
        stick: &Path,
        key: &NetworkKey,
        progress: &mut dyn FnMut(u16),
    ) -> Answer<String> {
        let mut report = |p: usb::Progress| {
            let permille = (p.done * 1000)
                .checked_div(p.total)
                .unwrap_or(1000)
                .min(1000);
            let half = permille as u16 / 2;
            progress(match p.phase {
                usb::Phase::Reading => half,
                usb::Phase::Writing => 500 + half,
            });
        };
        std::fs::create_dir_all(stick).map_err(plain)?;
        let r = usb::sync_stick(
            self.store(),
            key,
            &usb::stick_folder(stick),
            USB_BUDGET,
            &mut report,
        )
        .map_err(plain)?;
        progress(1000);
        Ok(format!(
            "USB stick: took {} entries, wrote {}{}",
            r.taken_in,
            r.written_out,
            if r.skipped.is_empty() {
                String::new()
            } else {
                format!(", skipped {} damaged segments", r.skipped.len())
            }
        ))
    }
}

fn holder_and_class(record: Option<&CardRecord>) -> (String, String) {
    if record.is_none() {
        return ("not issued".into(), "blank".into());
    }
    let holder = record
        .and_then(|r| r.holder.as_ref())
        .map_or("unknown card".to_string(), |h| {
            h.value
                .as_ref()
                .map_or("anonymous".to_string(), |h| h.name.clone())
        });
    let class = record
        .and_then(|r| r.class.as_ref())
        .map_or("no class".to_string(), |c| c.value.to_string());
    (holder, class)
}

/// Entries `a` holds that `b` lacks.
fn lacking(a: &Store, b: &Store) -> Result<u64, StoreError> {
    let va = a.version_vector()?;
    let vb = b.version_vector()?;
    Ok(va
        .iter()
        .map(|(origin, seq)| seq.saturating_sub(vb.get(origin)))
        .sum())
}

impl Cluster {
    fn seat(&self, index: usize) -> Answer<Seat<'_>> {
        let devices = self
            .devices
            .as_ref()
            .ok_or_else(|| plain("this network has no console devices"))?;
        let node = self
            .nodes()
            .get(index)
            .ok_or_else(|| plain(format!("there is no node {index}")))?;
        Ok(Seat {
            node,
            key: self.key(index),
            cards: &devices.cards,
        })
    }

    fn link_rows(&self, index: usize) -> Answer<Vec<LinkRow>> {
        let me = &self.nodes()[index];
        let offset = utc_offset(me.store(), &me.store().own_certificate().site).map_err(plain)?;
        let mut rows = Vec::new();
        for (j, peer) in self.nodes().iter().enumerate() {
            if j == index {
                continue;
            }
            let last = self.last_session(index, j);
            rows.push(LinkRow {
                peer: peer.name().to_string(),
                kind: "iroh (loopback)".into(),
                last_sync: last.as_ref().map_or("never".into(), |s| {
                    local_time(s.at_ms as i64, offset)
                        .split_once(' ')
                        .map_or(String::new(), |(_, t)| t.to_string())
                }),
                pending_out: lacking(me.store(), peer.store()).map_err(plain)?,
                pending_in: lacking(peer.store(), me.store()).map_err(plain)?,
                last_error: last.and_then(|s| s.error),
            });
        }
        if let Some(d) = self.devices.as_ref().and_then(|d| d.dial_up.as_ref())
            && (d.caller == index || d.answerer == index)
        {
            let peer = if d.caller == index {
                d.answerer
            } else {
                d.caller
            };
            let last = d.last();
            let other = self.nodes()[peer].store();
            rows.push(LinkRow {
                peer: dial_up_name(self.nodes()[peer].name()),
                kind: "dial-up (modem)".into(),
                last_sync: last.as_ref().map_or("never".into(), |s| {
                    local_time(s.at_ms as i64, offset)
                        .split_once(' ')
                        .map_or(String::new(), |(_, t)| t.to_string())
                }),
                pending_out: lacking(me.store(), other).map_err(plain)?,
                pending_in: lacking(other, me.store()).map_err(plain)?,
                last_error: last.and_then(|s| s.error),
            });
        }
        Ok(rows)
    }

    /// One call over the dial-up line between nodes `a` and `b` (either may ask; the
    /// caller always dials): the answerer picks up once, the caller syncs and hangs up.
    fn call(&self, d: &DialUp, a: usize, b: usize) -> Answer<String> {
        if !d.connects(a, b) {
            return Err(plain("there is no dial-up line between these nodes"));
        }
        let sync = |i: usize| NodeSync::new(self.nodes()[i].store().clone(), self.key(i).clone());
        let (caller, answerer) = (sync(d.caller), sync(d.answerer));
        let clock = self.nodes()[d.caller].clock();
        let answer_port = d.answerer_port.a().to_string();
        let answer_clock = clock.clone();
        let result = self.block_on(async move {
            let answering = tokio::spawn(async move {
                call::answer(&answerer, &answer_port, answer_clock, Some(1)).await
            });
            let dialled =
                call::dial(&caller, d.caller_port.a(), ANSWERER_NUMBER, clock.as_ref()).await;
            let answered = answering.await;
            let o = dialled.map_err(|e| format!("the call failed: {e}"))?;
            match answered {
                Ok(Ok(())) => Ok(o),
                Ok(Err(e)) => Err(format!("the answering modem failed: {e}")),
                Err(e) => Err(format!("the answering side stopped: {e}")),
            }
        });
        *d.last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Session {
            at_ms: self.nodes()[a].clock().now_ms(),
            error: result.as_ref().err().cloned(),
        });
        let o = result.map_err(Failure::Plain)?;
        Ok(format!(
            "dial-up call {}: {} called {}, {} in / {} out, {} bytes",
            d.exchange.stats().calls,
            self.nodes()[d.caller].name(),
            self.nodes()[d.answerer].name(),
            o.session.stats.entries_applied,
            o.session.stats.applied_by_peer,
            o.line.bytes_sent
        ))
    }
}

impl Nodes for Cluster {
    fn names(&self) -> Vec<String> {
        self.nodes().iter().map(|n| n.name().to_string()).collect()
    }

    fn login_hint(&self) -> String {
        self.devices
            .as_ref()
            .map_or(String::new(), |d| d.hint.clone())
    }

    fn summary(&self, index: usize) -> Answer<NodeSummary> {
        self.seat(index)?.node.summary().map_err(plain)
    }

    fn dashboard(&self, index: usize) -> Answer<Dashboard> {
        let mut d = self.seat(index)?.dashboard(self.link_rows(index)?)?;
        if let Some((at, forecourt)) = self.devices.as_ref().and_then(|d| d.forecourt.as_ref())
            && *at == index
        {
            d.pumps = pump_lines(forecourt.station());
        }
        Ok(d)
    }

    fn login(&self, index: usize, operator: &str, pin: &str) -> Answer<Operator> {
        self.seat(index)?.login(operator, pin)
    }

    fn login_card(&self, index: usize, card: CardAsn, pin: &str) -> Answer<Operator> {
        self.seat(index)?.login_card(card, pin)
    }

    fn logout(&self, index: usize) -> Answer<()> {
        self.seat(index)?.pos()?.logout().map_err(pos_failure)
    }

    fn wallet(&self, index: usize) -> Answer<Vec<WalletCard>> {
        self.seat(index)?.wallet()
    }

    fn quote(&self, index: usize, card: CardAsn, basket: &[(String, Quantity)]) -> Answer<Quote> {
        self.seat(index)?.quote(card, basket)
    }

    fn sell(
        &self,
        index: usize,
        card: CardAsn,
        basket: &[(String, Quantity)],
        pin: Option<&str>,
    ) -> Answer<Sale> {
        self.seat(index)?.sell(card, basket, pin)
    }

    fn card(&self, index: usize, card: CardAsn, present: bool) -> Answer<CardDetails> {
        self.seat(index)?.card(card, present)
    }

    fn load(&self, index: usize, card: CardAsn, amount: Money, pin: &str) -> Answer<String> {
        self.seat(index)?.load(card, amount, pin)
    }

    fn issue(
        &self,
        index: usize,
        card: CardAsn,
        holder: Option<&str>,
        deposit: Money,
    ) -> Answer<String> {
        self.seat(index)?.issue(card, holder, deposit)
    }

    fn report_lost(&self, index: usize, card: CardAsn) -> Answer<String> {
        self.seat(index)?
            .pos()?
            .report_lost(card)
            .map_err(pos_failure)?;
        Ok(format!(
            "card {card} is blacklisted as lost; syncing spreads the block"
        ))
    }

    fn unblock(&self, index: usize, card: CardAsn) -> Answer<String> {
        self.seat(index)?
            .pos()?
            .unblock::<Box<dyn CardReader>>(card, None, "lifted at the console")
            .map_err(pos_failure)?;
        Ok(format!("card {card} is unblocked; syncing spreads it"))
    }

    fn change_pin(&self, index: usize, card: CardAsn, old: &str, new: &str) -> Answer<String> {
        self.seat(index)?.change_pin(card, old, new)
    }

    fn return_card(&self, index: usize, card: CardAsn) -> Answer<String> {
        self.seat(index)?.return_card(card)
    }

    fn replace_card(&self, index: usize, old: CardAsn, new: CardAsn, pin: &str) -> Answer<String> {
        self.seat(index)?.replace_card(old, new, pin)
    }

    fn set_price(&self, index: usize, product: &str, price: Money, from: &str) -> Answer<String> {
        self.seat(index)?.set_price(product, price, from)
    }

    fn sync_all(&self) -> Answer<String> {
        let moved = self.sync_round().map_err(Failure::Plain)?;
        Ok(format!(
            "synced every pair over iroh (loopback QUIC): {moved} entries moved"
        ))
    }

    fn dial(&self, index: usize, peer: &str) -> Answer<String> {
        let by_name = |name: &str| self.nodes().iter().position(|n| n.name() == name);
        if let Some(d) = self.devices.as_ref().and_then(|d| d.dial_up.as_ref())
            && let Some(j) = self
                .nodes()
                .iter()
                .position(|n| dial_up_name(n.name()) == peer)
        {
            return self.call(d, index, j);
        }
        let j = by_name(peer).ok_or_else(|| plain(format!("no peer called {peer}")))?;
        let moved = self.sync_pair(index, j).map_err(Failure::Plain)?;
        Ok(format!("synced with {peer}: {moved} entries moved"))
    }

    fn sync_usb(&self, index: usize, progress: &mut dyn FnMut(u16)) -> Answer<String> {
        let seat = self.seat(index)?;
        let devices = self.devices.as_ref().expect("seat checked the devices");
        seat.sync_usb(&devices.stick, &devices.network_key, progress)
    }

    fn report(&self, index: usize, period: Period) -> Answer<Report> {
        self.seat(index)?.report(period)
    }

    fn export_csv(&self, index: usize, period: Period, path: &str) -> Answer<String> {
        self.seat(index)?.export_csv(period, path)
    }
}

/// A running site node presents cards from the first PC/SC reader.
static PCSC: CardSource = CardSource::Reader(String::new());

/// The one removable drive mounted, for "sync USB now" at a site.
fn stick_mount() -> Answer<PathBuf> {
    match usb::find_removable_mounts().as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(plain(
            "no removable drive is mounted: plug the USB stick in",
        )),
        many => Err(plain(format!(
            "{} removable drives are mounted: leave only the stick in",
            many.len()
        ))),
    }
}

impl Running {
    fn seat(&self) -> Seat<'_> {
        Seat {
            node: self.node(),
            key: self.key(),
            cards: &PCSC,
        }
    }

    fn links(&self) -> Vec<LinkRow> {
        let status = self.peer_status();
        self.peers()
            .iter()
            .map(|p| {
                let state = status.iter().find(|s| s.peer == p.peer).map(|s| &s.state);
                LinkRow {
                    peer: p.name.clone(),
                    kind: "iroh".into(),
                    last_sync: state
                        .and_then(|s| s.last_ok_ms)
                        .map_or("never".into(), |ms| {
                            local_time(ms as i64, 0)
                                .split_once(' ')
                                .map_or(String::new(), |(_, t)| format!("{t} UTC"))
                        }),
                    // A remote peer's holdings are known only during a session.
                    pending_out: 0,
                    pending_in: 0,
                    last_error: state.and_then(|s| s.last_error.clone()),
                }
            })
            .collect()
    }
}

impl Nodes for Running {
    fn names(&self) -> Vec<String> {
        vec![self.node().name().to_string()]
    }

    fn login_hint(&self) -> String {
        String::new()
    }

    fn summary(&self, _: usize) -> Answer<NodeSummary> {
        self.node().summary().map_err(plain)
    }

    fn dashboard(&self, _: usize) -> Answer<Dashboard> {
        let mut d = self.seat().dashboard(self.links())?;
        if let Some(station) = self.station() {
            d.pumps = pump_lines(station);
        }
        Ok(d)
    }

    fn login(&self, _: usize, operator: &str, pin: &str) -> Answer<Operator> {
        self.seat().login(operator, pin)
    }

    fn login_card(&self, _: usize, card: CardAsn, pin: &str) -> Answer<Operator> {
        self.seat().login_card(card, pin)
    }

    fn logout(&self, _: usize) -> Answer<()> {
        self.seat().pos()?.logout().map_err(pos_failure)
    }

    fn wallet(&self, _: usize) -> Answer<Vec<WalletCard>> {
        self.seat().wallet()
    }

    fn quote(&self, _: usize, card: CardAsn, basket: &[(String, Quantity)]) -> Answer<Quote> {
        self.seat().quote(card, basket)
    }

    fn sell(
        &self,
        _: usize,
        card: CardAsn,
        basket: &[(String, Quantity)],
        pin: Option<&str>,
    ) -> Answer<Sale> {
        self.seat().sell(card, basket, pin)
    }

    fn card(&self, _: usize, card: CardAsn, present: bool) -> Answer<CardDetails> {
        self.seat().card(card, present)
    }

    fn load(&self, _: usize, card: CardAsn, amount: Money, pin: &str) -> Answer<String> {
        self.seat().load(card, amount, pin)
    }

    fn issue(
        &self,
        _: usize,
        card: CardAsn,
        holder: Option<&str>,
        deposit: Money,
    ) -> Answer<String> {
        self.seat().issue(card, holder, deposit)
    }

    fn report_lost(&self, _: usize, card: CardAsn) -> Answer<String> {
        self.seat().pos()?.report_lost(card).map_err(pos_failure)?;
        Ok(format!("card {card} is blacklisted as lost"))
    }

    fn unblock(&self, _: usize, card: CardAsn) -> Answer<String> {
        self.seat()
            .pos()?
            .unblock::<Box<dyn CardReader>>(card, None, "lifted at the console")
            .map_err(pos_failure)?;
        Ok(format!("card {card} is unblocked"))
    }

    fn change_pin(&self, _: usize, card: CardAsn, old: &str, new: &str) -> Answer<String> {
        self.seat().change_pin(card, old, new)
    }

    fn return_card(&self, _: usize, card: CardAsn) -> Answer<String> {
        self.seat().return_card(card)
    }

    fn replace_card(&self, _: usize, old: CardAsn, new: CardAsn, pin: &str) -> Answer<String> {
        self.seat().replace_card(old, new, pin)
    }

    fn set_price(&self, _: usize, product: &str, price: Money, from: &str) -> Answer<String> {
        self.seat().set_price(product, price, from)
    }

    fn sync_all(&self) -> Answer<String> {
        let peers = self.peer_status();
        if peers.is_empty() {
            return Err(plain(format!(
                "no peers configured or found on the LAN: add [[sync.peer]] entries to {} in the data folder",
                crate::config::FILE
            )));
        }
        let lines: Vec<String> = peers
            .iter()
            .map(|s| {
                let name = self.peer_name(s.peer.node);
                self.sync_peer(&name, &s.peer)
                    .unwrap_or_else(|e| format!("{name}: {e}"))
            })
            .collect();
        Ok(lines.join("; "))
    }

    fn dial(&self, _: usize, peer: &str) -> Answer<String> {
        let p = self
            .peers()
            .iter()
            .find(|p| p.name == peer)
            .ok_or_else(|| plain(format!("no configured peer called {peer}")))?;
        self.sync_peer(&p.name, &p.peer).map_err(plain)
    }

    fn sync_usb(&self, _: usize, progress: &mut dyn FnMut(u16)) -> Answer<String> {
        let key = crate::identity::load_network_key(self.data_dir()).map_err(plain)?;
        self.seat().sync_usb(&stick_mount()?, &key, progress)
    }

    fn report(&self, _: usize, period: Period) -> Answer<Report> {
        self.seat().report(period)
    }

    fn export_csv(&self, _: usize, period: Period, path: &str) -> Answer<String> {
        self.seat().export_csv(period, path)
    }
}

/// The console's view of an operator session.
fn logged_in(session: &crate::pos::Session) -> Operator {
    Operator {
        id: session.operator.to_string(),
        role: session.role.to_string(),
    }
}

/// How long a card operation waits for the card to be put on the reader.
const CARD_WAIT: Duration = Duration::from_secs(3);

/// The PC/SC reader `name`, connected to the card on it; `None` if no card comes
/// within `wait`.
fn on_reader(name: &str, wait: Duration) -> Answer<Option<PcscReader>> {
    let mut reader = PcscReader::open(name).map_err(plain)?;
    match reader.wait_for_card(wait) {
        Ok(()) => Ok(Some(reader)),
        Err(ReaderError::Timeout) => Ok(None),
        Err(e) => Err(plain(e)),
    }
}

/// The dashboard's line for each fuelling point of `station`.
fn pump_lines(station: &crate::station::Station) -> Vec<String> {
    station.snapshot().iter().map(|p| p.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_take_effect_now_or_at_a_local_midnight() {
        let now = 1_763_800_000_000; // 2025-11-22 08:26:40 UTC
        assert_eq!(price_from("now", now, 480), Ok(now));
        let at = price_from("2025-12-01", now, 480).unwrap();
        assert_eq!(local_time(at, 480), "2025-12-01 00:00");
        assert!(price_from("2025-02-30", now, 480).is_err());
        assert!(
            price_from("2020-01-01", now, 480)
                .unwrap_err()
                .contains("past")
        );
        assert!(price_from("tomorrow", now, 480).is_err());
    }

    #[test]
    fn report_csv_has_a_header_and_yuan_with_two_decimals() {
        let r = Report {
            title: "shop-1, 2026-11".into(),
            rows: vec![ReportRow {
                label: "2026-11-20".into(),
                purchases: 2,
                purchase_amount: Money::from_fen(855),
                loads: 1,
                load_amount: Money::from_fen(20_000),
            }],
        };
        assert_eq!(
            report_csv(&r),
            "period,purchases,purchase_yuan,loads,load_yuan\n2026-11-20,2,8.55,1,200.00\n"
        );
    }
}
