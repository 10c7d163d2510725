//! What the console needs from the nodes it shows, as a trait and plain data. The node
//! crate implements it over its handle. The app never calls it from the UI thread: a
//! worker thread owns the implementation (see [`crate::worker`]), so a slow card or link
//! only delays that one answer.

use cardmesh_model::{CardAsn, Money, Quantity, Role};
use std::fmt;

/// One member's feed as the console lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedRow {
    pub node: String,
    pub role: Role,
    pub site: String,
    pub entries: u64,
    pub this_node: bool,
}

/// A product of the price book with its price now and the next scheduled change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PriceLine {
    pub id: String,
    pub name: String,
    pub unit: String,
    pub price: Option<Money>,
    /// The next scheduled change: when (site local time, as words) and the new price.
    pub next: Option<(String, Money)>,
}

/// One node's state for the status and price screens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSummary {
    pub node: String,
    pub role: Role,
    pub site: String,
    pub network: String,
    pub total_entries: u64,
    pub store_bytes: u64,
    pub cards: u64,
    pub blacklisted: u64,
    pub feeds: Vec<FeedRow>,
    pub blocked: Vec<CardAsn>,
    pub prices: Vec<PriceLine>,
}

/// The operator logged in at a node's terminal. `role` is the registry's word for it
/// (cashier, manager, finance, card-desk, admin); [`crate::app::screens_for`] decides
/// what it may see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operator {
    pub id: String,
    pub role: String,
}

/// A card the console can present to a node's reader (the demo's wallet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalletCard {
    pub asn: CardAsn,
    /// Who holds it, in words: "Zhang Wei (gold)", "anonymous".
    pub label: String,
}

/// One priced basket line, as the sale will charge it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuoteLine {
    pub name: String,
    pub quantity: Quantity,
    pub unit_price: Money,
    /// Percent of the list amount paid (100 = no discount).
    pub paid_percent: u8,
    pub amount: Money,
}

/// A basket priced for one card's member class.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quote {
    pub lines: Vec<QuoteLine>,
    pub total: Money,
}

/// A completed sale.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sale {
    pub total: Money,
    pub balance_before: Money,
    pub balance_after: Money,
    /// The receipt as printed, one line per entry.
    pub receipt: Vec<String>,
}

/// One line of a card's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryRow {
    pub day: String,
    pub site: String,
    pub kind: String,
    pub amount: Money,
    pub balance_after: Money,
}

/// A card as the card desk sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardDetails {
    pub asn: CardAsn,
    pub holder: String,
    pub class: String,
    pub status: String,
    /// Read from the chip; `None` when the card was not presented.
    pub balance: Option<Money>,
    pub blocked: bool,
    pub history: Vec<HistoryRow>,
}

/// One sync link of a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkRow {
    pub peer: String,
    /// "iroh (loopback)", "dial-up (modem)", ...
    pub kind: String,
    /// When the last session ended, in words ("never", "12:03:05").
    pub last_sync: String,
    /// Entries this node has that the peer lacks, and the other way round.
    pub pending_out: u64,
    pub pending_in: u64,
    pub last_error: Option<String>,
}

/// Sales of one terminal today.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TerminalSales {
    pub terminal: String,
    pub count: u64,
    pub amount: Money,
}

/// A node's day at a glance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dashboard {
    pub day: String,
    pub sales: Money,
    pub count: u64,
    /// Sales per local hour, 24 buckets.
    pub by_hour: Vec<Money>,
    pub by_terminal: Vec<TerminalSales>,
    /// Cards grey-locked and not yet debited, in words.
    pub grey_locks: Vec<String>,
    pub alarms: Vec<String>,
    pub links: Vec<LinkRow>,
    /// A fuel station's fuelling points, one line each as the station reports them
    /// (state, nozzle, grade, volume, amount, card, last error); empty elsewhere.
    pub pumps: Vec<String>,
}

/// Daily (one month, per day) or monthly (one year, per month) reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Period {
    #[default]
    Daily,
    Monthly,
}

/// One row of a report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportRow {
    pub label: String,
    pub purchases: u64,
    pub purchase_amount: Money,
    pub loads: u64,
    pub load_amount: Money,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub title: String,
    pub rows: Vec<ReportRow>,
}

/// Why a node refused or failed. Everything but a missing PIN is plain words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The total is above the PIN threshold: ask the cardholder and try again.
    PinRequired(Money),
    Plain(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::PinRequired(total) => {
                write!(f, "{total} is above the PIN threshold: enter the card PIN")
            }
            Failure::Plain(s) => f.write_str(s),
        }
    }
}

impl From<String> for Failure {
    fn from(s: String) -> Failure {
        Failure::Plain(s)
    }
}

pub type Answer<T> = Result<T, Failure>;

/// The nodes one console shows (one for a site's own node; several in the demo). Node
/// `index` is a position in [`Nodes::names`]. Called from the console's worker thread.
pub trait Nodes: Send {
    fn names(&self) -> Vec<String>;
    /// A line for the login screen (the demo lists its operators and PINs).
    fn login_hint(&self) -> String;
    /// The summary of node `index`, or an error in words a manager can act on.
    fn summary(&self, index: usize) -> Answer<NodeSummary>;
    fn dashboard(&self, index: usize) -> Answer<Dashboard>;
    fn login(&self, index: usize, operator: &str, pin: &str) -> Answer<Operator>;
    /// Logs in the operator whose operator card `card` is presented, with its card PIN.
    fn login_card(&self, index: usize, card: CardAsn, pin: &str) -> Answer<Operator>;
    fn logout(&self, index: usize) -> Answer<()>;
    /// The cards that can be presented to this node's reader.
    fn wallet(&self, index: usize) -> Answer<Vec<WalletCard>>;
    /// Prices a basket (product id, quantity) for the member class of `card`.
    fn quote(&self, index: usize, card: CardAsn, basket: &[(String, Quantity)]) -> Answer<Quote>;
    /// Sells the basket to the card presented; a PIN only when the node asked for one.
    fn sell(
        &self,
        index: usize,
        card: CardAsn,
        basket: &[(String, Quantity)],
        pin: Option<&str>,
    ) -> Answer<Sale>;
    /// The card's record and history; with `present`, read from the chip too.
    fn card(&self, index: usize, card: CardAsn, present: bool) -> Answer<CardDetails>;
    fn load(&self, index: usize, card: CardAsn, amount: Money, pin: &str) -> Answer<String>;
    /// Sells a blank card to a customer: named (`holder`) or anonymous, with a deposit.
    fn issue(
        &self,
        index: usize,
        card: CardAsn,
        holder: Option<&str>,
        deposit: Money,
    ) -> Answer<String>;
    fn report_lost(&self, index: usize, card: CardAsn) -> Answer<String>;
    fn unblock(&self, index: usize, card: CardAsn) -> Answer<String>;
    fn change_pin(&self, index: usize, card: CardAsn, old: &str, new: &str) -> Answer<String>;
    /// The customer hands the card back: its balance and deposit are paid in cash, the
    /// chip is emptied and the card blocked.
    fn return_card(&self, index: usize, card: CardAsn) -> Answer<String>;
    /// A new card (`new`, from the wallet) takes over `old`'s balance, read from the
    /// chip or, for a card reported lost, from the ledger; `old` is blocked.
    fn replace_card(&self, index: usize, old: CardAsn, new: CardAsn, pin: &str) -> Answer<String>;
    /// Schedules `price` for `product` from `from` ("now" or a day, 2026-12-01).
    fn set_price(&self, index: usize, product: &str, price: Money, from: &str) -> Answer<String>;
    /// Runs one sync round with every peer it can reach; says what moved.
    fn sync_all(&self) -> Answer<String>;
    /// Syncs node `index` with one peer now.
    fn dial(&self, index: usize, peer: &str) -> Answer<String>;
    /// Syncs node `index` with the USB stick both ways; `progress` is told the permille
    /// done as it goes.
    fn sync_usb(&self, index: usize, progress: &mut dyn FnMut(u16)) -> Answer<String>;
    fn report(&self, index: usize, period: Period) -> Answer<Report>;
    /// Writes the report as CSV to `path`.
    fn export_csv(&self, index: usize, period: Period, path: &str) -> Answer<String>;
}
