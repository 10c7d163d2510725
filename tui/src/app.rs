//! App state and input: a key changes the [`State`] and may send a job to the worker;
//! the worker's replies change the state again. Rendering is a pure function of the
//! state (what the snapshot tests use). The event loop owns the terminal.

use crate::nodes::{
    Answer, CardDetails, Dashboard, Failure, NodeSummary, Nodes, Operator, Period, PriceLine,
    Quote, Report, Sale, WalletCard,
};
use crate::view::render;
use crate::worker::{Event as WorkerEvent, Job, Worker};
use cardmesh_model::{CardAsn, Money, Quantity};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use std::time::{Duration, Instant};

/// The console's screens, in tab order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Tab {
    #[default]
    Login,
    Dashboard,
    Sell,
    Cards,
    Prices,
    Sync,
    Reports,
}

impl Tab {
    pub const ALL: [Tab; 7] = [
        Tab::Login,
        Tab::Dashboard,
        Tab::Sell,
        Tab::Cards,
        Tab::Prices,
        Tab::Sync,
        Tab::Reports,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Tab::Login => "Login",
            Tab::Dashboard => "Dashboard",
            Tab::Sell => "Sell",
            Tab::Cards => "Cards",
            Tab::Prices => "Blacklist & prices",
            Tab::Sync => "Sync",
            Tab::Reports => "Reports",
        }
    }
}

/// The screens an operator role may see. Nobody logged in sees only the login screen.
pub fn screens_for(role: Option<&str>) -> Vec<Tab> {
    use Tab::*;
    match role {
        Some("admin") => Tab::ALL.to_vec(),
        Some("manager") => vec![Login, Dashboard, Sell, Cards, Prices, Sync, Reports],
        Some("cashier") => vec![Login, Dashboard, Sell, Cards],
        Some("finance") => vec![Login, Dashboard, Reports],
        Some("card-desk") => vec![Login, Dashboard, Cards],
        _ => vec![Login],
    }
}

/// What a line of input typed into a prompt is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ask {
    OperatorId,
    OperatorPin { operator: String },
    OperatorCard,
    OperatorCardPin { card: CardAsn },
    SalePin,
    LoadAmount,
    LoadPin { amount: Money },
    IssueHolder,
    IssueDeposit { holder: String },
    OldPin,
    NewPin { old: String },
    ConfirmReturn,
    ReplaceWith,
    ReplacePin { new: CardAsn },
    Price { product: String },
    PriceFrom { product: String, price: Money },
    BlockCard,
    ExportPath,
    Filter,
}

/// A one-line input at the bottom of the screen; every key goes to it until Enter or Esc.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prompt {
    pub label: String,
    pub value: String,
    /// Shown as stars (PINs).
    pub secret: bool,
    pub ask: Ask,
}

/// The Sell screen: product cursor, basket, card chosen, its price and the last sale.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SellState {
    pub cursor: usize,
    /// Product id and quantity, in the order rung up.
    pub basket: Vec<(String, Quantity)>,
    pub quote: Option<Quote>,
    pub sale: Option<Sale>,
}

/// Everything the console shows, as plain data.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    pub nodes: Vec<String>,
    pub node: usize,
    pub tab: Tab,
    /// Who is logged in at each node's terminal.
    pub operators: Vec<Option<Operator>>,
    pub login_hint: String,
    pub help: bool,
    pub filter: String,
    pub prompt: Option<Prompt>,
    /// The last thing that happened, in words.
    pub message: String,
    /// What the worker is doing now, if it is doing something the operator asked for.
    pub busy: Option<String>,
    /// Permille of a USB sync, while one runs.
    pub progress: Option<u16>,
    pub summary: Option<NodeSummary>,
    pub dashboard: Option<Dashboard>,
    pub wallet: Vec<WalletCard>,
    /// The card chosen in the wallet (Sell and Cards present this one).
    pub card: usize,
    pub sell: SellState,
    pub details: Option<CardDetails>,
    pub price_cursor: usize,
    pub blocked_cursor: usize,
    pub link_cursor: usize,
    pub period: Period,
    pub report: Option<Report>,
}

impl State {
    pub fn operator(&self) -> Option<&Operator> {
        self.operators.get(self.node).and_then(Option::as_ref)
    }

    pub fn tabs(&self) -> Vec<Tab> {
        screens_for(self.operator().map(|o| o.role.as_str()))
    }

    fn matches(&self, text: &str) -> bool {
        self.filter.is_empty() || text.to_lowercase().contains(&self.filter.to_lowercase())
    }

    /// The price book's products the filter lets through.
    pub fn products(&self) -> Vec<&PriceLine> {
        self.summary
            .iter()
            .flat_map(|s| &s.prices)
            .filter(|p| self.matches(&p.name) || self.matches(&p.id))
            .collect()
    }

    /// The wallet's cards the filter lets through, with their index in the wallet.
    pub fn cards(&self) -> Vec<(usize, &WalletCard)> {
        self.wallet
            .iter()
            .enumerate()
            .filter(|(_, c)| self.matches(&c.label) || self.matches(&c.asn.to_string()))
            .collect()
    }

    /// Blacklisted cards the filter lets through.
    pub fn blocked(&self) -> Vec<CardAsn> {
        self.summary
            .iter()
            .flat_map(|s| &s.blocked)
            .filter(|a| self.matches(&a.to_string()))
            .copied()
            .collect()
    }

    pub fn chosen_card(&self) -> Option<&WalletCard> {
        self.wallet.get(self.card)
    }

    /// The status bar's link summary: how many links synced without error.
    pub fn link_state(&self) -> String {
        match &self.dashboard {
            Some(d) if !d.links.is_empty() => {
                let ok = d.links.iter().filter(|l| l.last_error.is_none()).count();
                format!("links {ok}/{} ok", d.links.len())
            }
            _ => "no links".into(),
        }
    }
}

/// What a refresh reads of one node.
pub struct Refreshed {
    node: usize,
    summary: Answer<NodeSummary>,
    dashboard: Answer<Dashboard>,
    wallet: Answer<Vec<WalletCard>>,
}

/// A worker's reply, applied to the state on the UI thread.
pub enum Reply {
    Refreshed(Box<Refreshed>),
    LoggedIn(usize, Answer<Operator>),
    LoggedOut(usize, Answer<()>),
    Quoted(Answer<Quote>),
    Sold(Answer<Sale>),
    Card(Answer<CardDetails>),
    /// An action that answers in words; the state is refreshed after it.
    Done(Answer<String>),
    Report(Answer<Report>),
}

pub struct App {
    state: State,
    worker: Worker<Reply>,
    refreshing: bool,
    quit: bool,
}

impl App {
    pub fn new(nodes: Box<dyn Nodes>) -> App {
        let names = nodes.names();
        let state = State {
            operators: vec![None; names.len()],
            nodes: names,
            login_hint: nodes.login_hint(),
            message: "log in: press Enter".into(),
            ..State::default()
        };
        let mut app = App {
            state,
            worker: Worker::spawn(nodes),
            refreshing: false,
            quit: false,
        };
        app.refresh();
        app
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    fn job(&mut self, busy: &str, job: Job<Reply>) {
        if !busy.is_empty() {
            self.state.busy = Some(busy.to_string());
        }
        self.worker.send(job);
    }

    /// Asks for the current node's summary, dashboard and wallet, unless already asked.
    pub fn refresh(&mut self) {
        if self.refreshing || self.state.nodes.is_empty() {
            return;
        }
        self.refreshing = true;
        let node = self.state.node;
        self.job(
            "",
            Box::new(move |n, _| {
                Reply::Refreshed(Box::new(Refreshed {
                    node,
                    summary: n.summary(node),
                    dashboard: n.dashboard(node),
                    wallet: n.wallet(node),
                }))
            }),
        );
    }

    /// Applies the worker's replies that have arrived, waiting at most `wait` for one.
    pub fn poll(&mut self, wait: Duration) {
        let mut wait = wait;
        while let Some(event) = self.worker.poll(wait) {
            wait = Duration::ZERO;
            match event {
                WorkerEvent::Progress(p) => self.state.progress = Some(p),
                WorkerEvent::Done(reply) => self.apply(reply),
            }
        }
        if self.worker.pending() == 0 {
            self.state.busy = None;
        }
    }

    /// Waits until every job sent has been answered (tests; the loop never waits).
    pub fn settle(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.worker.pending() > 0 && Instant::now() < deadline {
            self.poll(Duration::from_millis(20));
        }
    }

    fn fail(&mut self, f: Failure) {
        self.state.message = f.to_string();
    }

    fn apply(&mut self, reply: Reply) {
        let s = &mut self.state;
        match reply {
            Reply::Refreshed(r) => {
                let Refreshed {
                    node,
                    summary,
                    dashboard,
                    wallet,
                } = *r;
                self.refreshing = false;
                if node != s.node {
                    return self.refresh();
                }
                let name = s.nodes[node].clone();
                let mut errors = Vec::new();
                match summary {
                    Ok(x) => s.summary = Some(x),
                    Err(e) => errors.push(e.to_string()),
                }
                match dashboard {
                    Ok(x) => s.dashboard = Some(x),
                    Err(e) => errors.push(e.to_string()),
                }
                match wallet {
                    Ok(x) => s.wallet = x,
                    Err(e) => errors.push(e.to_string()),
                }
                if !errors.is_empty() {
                    s.message = format!("{name}: {}", errors.join("; "));
                }
            }
            Reply::LoggedIn(node, r) => match r {
                Ok(op) => {
                    s.message = format!("{} logged in as {} at {}", op.id, op.role, s.nodes[node]);
                    s.operators[node] = Some(op);
                    if node == s.node {
                        s.tab = Tab::Dashboard;
                    }
                }
                Err(e) => self.fail(e),
            },
            Reply::LoggedOut(node, r) => match r {
                Ok(()) => {
                    s.operators[node] = None;
                    s.tab = Tab::Login;
                    s.message = "logged out".into();
                }
                Err(e) => self.fail(e),
            },
            Reply::Quoted(r) => match r {
                Ok(q) => s.sell.quote = Some(q),
                Err(e) => {
                    s.sell.quote = None;
                    self.fail(e);
                }
            },
            Reply::Sold(r) => match r {
                Ok(sale) => {
                    s.message = format!(
                        "sold {}: balance {} -> {}",
                        sale.total, sale.balance_before, sale.balance_after
                    );
                    s.sell.sale = Some(sale);
                    s.sell.basket.clear();
                    s.sell.quote = None;
                    self.refresh();
                }
                Err(Failure::PinRequired(total)) => {
                    s.message = Failure::PinRequired(total).to_string();
                    s.prompt = Some(Prompt {
                        label: format!("card PIN for {total}"),
                        value: String::new(),
                        secret: true,
                        ask: Ask::SalePin,
                    });
                }
                Err(e) => self.fail(e),
            },
            Reply::Card(r) => match r {
                Ok(d) => {
                    s.message = match d.balance {
                        Some(b) => format!("card {} read: balance {b}", d.asn),
                        None => format!("card {} from the records", d.asn),
                    };
                    s.details = Some(d);
                }
                Err(e) => self.fail(e),
            },
            Reply::Done(r) => {
                s.progress = None;
                match r {
                    Ok(m) => s.message = m,
                    Err(e) => self.fail(e),
                }
                self.refresh();
            }
            Reply::Report(r) => match r {
                Ok(rep) => self.state.report = Some(rep),
                Err(e) => self.fail(e),
            },
        }
    }

    /// Handles one key press.
    pub fn key(&mut self, key: KeyEvent) {
        if key.kind != KeyEventKind::Press {
            return;
        }
        if key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL) {
            self.quit = true;
            return;
        }
        if self.state.prompt.is_some() {
            return self.prompt_key(key.code);
        }
        if self.state.help {
            if matches!(key.code, KeyCode::Char('?') | KeyCode::Esc) {
                self.state.help = false;
            }
            return;
        }
        if self.global_key(key.code) {
            return;
        }
        match self.state.tab {
            Tab::Login => self.login_key(key.code),
            Tab::Dashboard => {}
            Tab::Sell => self.sell_key(key.code),
            Tab::Cards => self.cards_key(key.code),
            Tab::Prices => self.prices_key(key.code),
            Tab::Sync => self.sync_key(key.code),
            Tab::Reports => self.reports_key(key.code),
        }
    }

    /// Keys that work on every screen; true if the key was one of them.
    fn global_key(&mut self, code: KeyCode) -> bool {
        let tabs = self.state.tabs();
        let at = tabs.iter().position(|t| *t == self.state.tab).unwrap_or(0);
        match code {
            KeyCode::Char('q') => self.quit = true,
            KeyCode::Char('?') => self.state.help = true,
            KeyCode::Tab => self.enter(tabs[(at + 1) % tabs.len()]),
            KeyCode::BackTab => self.enter(tabs[(at + tabs.len() - 1) % tabs.len()]),
            KeyCode::Char(c @ '1'..='7') => {
                let want = Tab::ALL[c as usize - '1' as usize];
                if tabs.contains(&want) {
                    self.enter(want);
                } else {
                    self.state.message = format!(
                        "{} is not open to {}",
                        want.title(),
                        self.state
                            .operator()
                            .map_or("anyone not logged in".to_string(), |o| o.role.clone())
                    );
                }
            }
            KeyCode::Char('n') | KeyCode::Char('N') if self.state.nodes.len() > 1 => {
                let n = self.state.nodes.len();
                self.state.node = if code == KeyCode::Char('n') {
                    (self.state.node + 1) % n
                } else {
                    (self.state.node + n - 1) % n
                };
                self.switched_node();
            }
            KeyCode::Char('/') => self.ask("filter", false, Ask::Filter),
            KeyCode::Char('s') => self.job("syncing", Box::new(|n, _| Reply::Done(n.sync_all()))),
            KeyCode::Char('r') => self.refresh(),
            KeyCode::Esc if !self.state.filter.is_empty() => self.state.filter.clear(),
            _ => return false,
        }
        true
    }

    /// Opens a screen; the reports screen asks for its report.
    fn enter(&mut self, tab: Tab) {
        self.state.tab = tab;
        if tab == Tab::Reports && self.state.report.is_none() {
            self.reports_key(KeyCode::Enter);
        }
    }

    fn switched_node(&mut self) {
        let s = &mut self.state;
        s.summary = None;
        s.dashboard = None;
        s.details = None;
        s.report = None;
        s.sell = SellState::default();
        if !s.tabs().contains(&s.tab) {
            s.tab = Tab::Login;
        }
        s.message = format!("now at {}", s.nodes[s.node]);
        self.refresh();
    }

    fn ask(&mut self, label: &str, secret: bool, ask: Ask) {
        self.state.prompt = Some(Prompt {
            label: label.into(),
            value: String::new(),
            secret,
            ask,
        });
    }

    fn prompt_key(&mut self, code: KeyCode) {
        let Some(p) = self.state.prompt.as_mut() else {
            return;
        };
        match code {
            KeyCode::Esc => {
                self.state.prompt = None;
                self.state.message = "cancelled".into();
            }
            KeyCode::Backspace => {
                p.value.pop();
            }
            KeyCode::Char(c) => p.value.push(c),
            KeyCode::Enter => {
                let p = self.state.prompt.take().expect("checked above");
                self.answered(p.ask, p.value.trim().to_string());
            }
            _ => {}
        }
    }

    /// A prompt was answered: go on with what it was for.
    fn answered(&mut self, ask: Ask, value: String) {
        let node = self.state.node;
        let card = self.state.chosen_card().map(|c| c.asn);
        match ask {
            Ask::Filter => {
                self.state.filter = value;
                self.state.price_cursor = 0;
                self.state.sell.cursor = 0;
                self.state.blocked_cursor = 0;
                if let Some((i, _)) = self.state.cards().first() {
                    self.state.card = *i;
                }
            }
            Ask::OperatorId if value.is_empty() => self.state.message = "no operator id".into(),
            Ask::OperatorId => self.ask(
                &format!("PIN of {value}"),
                true,
                Ask::OperatorPin { operator: value },
            ),
            Ask::OperatorPin { operator } => self.job(
                "logging in",
                Box::new(move |n, _| Reply::LoggedIn(node, n.login(node, &operator, &value))),
            ),
            Ask::OperatorCard => {
                if let Some(card) = self.card_number(&value) {
                    self.ask(
                        &format!("card PIN of operator card {card}"),
                        true,
                        Ask::OperatorCardPin { card },
                    )
                }
            }
            Ask::OperatorCardPin { card } => self.job(
                "logging in by operator card",
                Box::new(move |n, _| Reply::LoggedIn(node, n.login_card(node, card, &value))),
            ),
            Ask::SalePin => self.sell(Some(value)),
            Ask::LoadAmount => match value.parse::<Money>() {
                Ok(amount) if amount > Money::ZERO => {
                    self.ask("card PIN", true, Ask::LoadPin { amount })
                }
                _ => {
                    self.state.message =
                        format!("'{value}' is not an amount in yuan (like 100 or 25.50)")
                }
            },
            Ask::LoadPin { amount } => {
                if let Some(card) = card {
                    self.job(
                        "loading the card",
                        Box::new(move |n, _| Reply::Done(n.load(node, card, amount, &value))),
                    );
                    self.present();
                }
            }
            Ask::IssueHolder => {
                self.ask("deposit (yuan)", false, Ask::IssueDeposit { holder: value })
            }
            Ask::IssueDeposit { holder } => match (value.parse::<Money>(), card) {
                (Ok(deposit), Some(card)) if deposit >= Money::ZERO => self.job(
                    "issuing the card",
                    Box::new(move |n, _| {
                        let holder = (!holder.is_empty()).then_some(holder.as_str());
                        Reply::Done(n.issue(node, card, holder, deposit))
                    }),
                ),
                _ => {
                    self.state.message =
                        format!("'{value}' is not a deposit in yuan (like 20 or 0)")
                }
            },
            Ask::OldPin => self.ask("new card PIN", true, Ask::NewPin { old: value }),
            Ask::NewPin { old } => {
                if let Some(card) = card {
                    self.job(
                        "changing the PIN",
                        Box::new(move |n, _| Reply::Done(n.change_pin(node, card, &old, &value))),
                    );
                }
            }
            Ask::ConfirmReturn => match (value.as_str(), card) {
                ("yes", Some(card)) => {
                    self.job(
                        "returning the card",
                        Box::new(move |n, _| Reply::Done(n.return_card(node, card))),
                    );
                }
                _ => self.state.message = "card return cancelled".into(),
            },
            Ask::ReplaceWith => {
                if let Some(new) = self.card_number(&value) {
                    self.ask("the new card's PIN", true, Ask::ReplacePin { new })
                }
            }
            Ask::ReplacePin { new } => {
                if let Some(old) = card {
                    self.job(
                        "replacing the card",
                        Box::new(move |n, _| Reply::Done(n.replace_card(node, old, new, &value))),
                    );
                }
            }
            Ask::Price { product } => match value.parse::<Money>() {
                Ok(price) if price > Money::ZERO => self.ask(
                    "from (now, or a day like 2026-12-01)",
                    false,
                    Ask::PriceFrom { product, price },
                ),
                _ => self.state.message = format!("'{value}' is not a price in yuan (like 7.89)"),
            },
            Ask::PriceFrom { product, price } => {
                let from = if value.is_empty() {
                    "now".into()
                } else {
                    value
                };
                self.job(
                    "changing the price",
                    Box::new(move |n, _| Reply::Done(n.set_price(node, &product, price, &from))),
                );
            }
            Ask::BlockCard => {
                if let Some(asn) = self.card_number(&value) {
                    self.job(
                        "blocking the card",
                        Box::new(move |n, _| Reply::Done(n.report_lost(node, asn))),
                    )
                }
            }
            Ask::ExportPath => {
                let period = self.state.period;
                self.job(
                    "exporting",
                    Box::new(move |n, _| Reply::Done(n.export_csv(node, period, &value))),
                );
            }
        }
    }

    /// The card number typed at a prompt, or `None` with the message saying why not.
    fn card_number(&mut self, value: &str) -> Option<CardAsn> {
        let card = value.parse::<CardAsn>().ok();
        if card.is_none() {
            self.state.message = format!("'{value}' is not a card number (16 digits)");
        }
        card
    }

    fn login_key(&mut self, code: KeyCode) {
        match code {
            KeyCode::Enter => self.ask("operator id", false, Ask::OperatorId),
            KeyCode::Char('c') => self.ask(
                "operator card number (present it)",
                false,
                Ask::OperatorCard,
            ),
            KeyCode::Char('o') if self.state.operator().is_some() => {
                let node = self.state.node;
                self.job(
                    "logging out",
                    Box::new(move |n, _| Reply::LoggedOut(node, n.logout(node))),
                );
            }
            _ => {}
        }
    }

    /// Moves the wallet choice to the next/previous card the filter shows.
    fn step_card(&mut self, forward: bool) {
        let shown: Vec<usize> = self.state.cards().iter().map(|(i, _)| *i).collect();
        if shown.is_empty() {
            return;
        }
        let at = shown.iter().position(|i| *i == self.state.card);
        let next = match (at, forward) {
            (None, _) => 0,
            (Some(a), true) => (a + 1) % shown.len(),
            (Some(a), false) => (a + shown.len() - 1) % shown.len(),
        };
        self.state.card = shown[next];
        self.state.details = None;
    }

    fn sell_key(&mut self, code: KeyCode) {
        let products: Vec<String> = self.state.products().iter().map(|p| p.id.clone()).collect();
        let sell = &mut self.state.sell;
        match code {
            KeyCode::Up => sell.cursor = sell.cursor.saturating_sub(1),
            KeyCode::Down => sell.cursor = (sell.cursor + 1).min(products.len().saturating_sub(1)),
            KeyCode::Char('+') | KeyCode::Char('=') | KeyCode::Char('-') => {
                let Some(id) = products.get(sell.cursor) else {
                    return;
                };
                let delta = if code == KeyCode::Char('-') { -1 } else { 1 };
                match sell.basket.iter().position(|(p, _)| p == id) {
                    Some(i) => {
                        let q = sell.basket[i].1.milli() + delta * 1000;
                        if q <= 0 {
                            sell.basket.remove(i);
                        } else {
                            sell.basket[i].1 = Quantity::from_milli(q);
                        }
                    }
                    None if delta > 0 => sell.basket.push((id.clone(), Quantity::pieces(1))),
                    None => {}
                }
                sell.sale = None;
                self.quote();
            }
            KeyCode::Char('x') => {
                sell.basket.clear();
                sell.quote = None;
            }
            KeyCode::Left | KeyCode::Char('c') => {
                self.step_card(code != KeyCode::Left);
                self.quote();
            }
            KeyCode::Right => {
                self.step_card(true);
                self.quote();
            }
            KeyCode::Enter => self.sell(None),
            _ => {}
        }
    }

    fn quote(&mut self) {
        let node = self.state.node;
        let basket = self.state.sell.basket.clone();
        match self.state.chosen_card() {
            Some(c) if !basket.is_empty() => {
                let card = c.asn;
                self.job(
                    "",
                    Box::new(move |n, _| Reply::Quoted(n.quote(node, card, &basket))),
                );
            }
            _ => self.state.sell.quote = None,
        }
    }

    fn sell(&mut self, pin: Option<String>) {
        let node = self.state.node;
        let basket = self.state.sell.basket.clone();
        if basket.is_empty() {
            self.state.message = "the basket is empty: add products with +".into();
            return;
        }
        let Some(card) = self.state.chosen_card().map(|c| c.asn) else {
            self.state.message = "no card to present".into();
            return;
        };
        self.job(
            "card on the reader: selling",
            Box::new(move |n, _| Reply::Sold(n.sell(node, card, &basket, pin.as_deref()))),
        );
    }

    /// Presents the chosen card: reads balance and history from the chip.
    fn present(&mut self) {
        let node = self.state.node;
        if let Some(card) = self.state.chosen_card().map(|c| c.asn) {
            self.job(
                "reading the card",
                Box::new(move |n, _| Reply::Card(n.card(node, card, true))),
            );
        }
    }

    fn cards_key(&mut self, code: KeyCode) {
        let node = self.state.node;
        let card = self.state.chosen_card().map(|c| c.asn);
        match (code, card) {
            (KeyCode::Up | KeyCode::Left, _) => self.step_card(false),
            (KeyCode::Down | KeyCode::Right, _) => self.step_card(true),
            (KeyCode::Enter, _) => self.present(),
            (KeyCode::Char('l'), Some(_)) => {
                self.ask("amount to load (yuan)", false, Ask::LoadAmount)
            }
            (KeyCode::Char('p'), Some(_)) => self.ask("current card PIN", true, Ask::OldPin),
            (KeyCode::Char('i'), Some(_)) => {
                self.ask("holder's name (empty: anonymous)", false, Ask::IssueHolder)
            }
            (KeyCode::Char('!'), Some(card)) => self.job(
                "reporting the card lost",
                Box::new(move |n, _| Reply::Done(n.report_lost(node, card))),
            ),
            (KeyCode::Char('e'), Some(_)) => self.ask(
                "return the card: pay out balance and deposit, block it? type yes",
                false,
                Ask::ConfirmReturn,
            ),
            (KeyCode::Char('w'), Some(_)) => {
                self.ask("new card number (from the wallet)", false, Ask::ReplaceWith)
            }
            _ => {}
        }
    }

    fn prices_key(&mut self, code: KeyCode) {
        let node = self.state.node;
        let products = self.state.products().len();
        let blocked = self.state.blocked();
        match code {
            KeyCode::Up => self.state.price_cursor = self.state.price_cursor.saturating_sub(1),
            KeyCode::Down => {
                self.state.price_cursor =
                    (self.state.price_cursor + 1).min(products.saturating_sub(1))
            }
            KeyCode::PageUp => {
                self.state.blocked_cursor = self.state.blocked_cursor.saturating_sub(1)
            }
            KeyCode::PageDown => {
                self.state.blocked_cursor =
                    (self.state.blocked_cursor + 1).min(blocked.len().saturating_sub(1))
            }
            KeyCode::Char('e') => {
                let Some(p) = self.state.products().get(self.state.price_cursor).copied() else {
                    return;
                };
                let product = p.id.clone();
                self.ask(
                    &format!("new price of {} (yuan)", p.name),
                    false,
                    Ask::Price { product },
                );
            }
            KeyCode::Char('b') => self.ask("card number to block", false, Ask::BlockCard),
            KeyCode::Char('u') => {
                if let Some(asn) = blocked.get(self.state.blocked_cursor).copied() {
                    self.job(
                        "unblocking the card",
                        Box::new(move |n, _| Reply::Done(n.unblock(node, asn))),
                    );
                }
            }
            _ => {}
        }
    }

    fn sync_key(&mut self, code: KeyCode) {
        let node = self.state.node;
        let links: Vec<String> = self
            .state
            .dashboard
            .iter()
            .flat_map(|d| &d.links)
            .map(|l| l.peer.clone())
            .collect();
        match code {
            KeyCode::Up => self.state.link_cursor = self.state.link_cursor.saturating_sub(1),
            KeyCode::Down => {
                self.state.link_cursor =
                    (self.state.link_cursor + 1).min(links.len().saturating_sub(1))
            }
            KeyCode::Char('d') => {
                if let Some(peer) = links.get(self.state.link_cursor).cloned() {
                    self.job(
                        &format!("dialing {peer}"),
                        Box::new(move |n, _| Reply::Done(n.dial(node, &peer))),
                    );
                }
            }
            KeyCode::Char('u') => {
                self.state.progress = Some(0);
                self.job(
                    "syncing with the USB stick",
                    Box::new(move |n, progress| Reply::Done(n.sync_usb(node, progress))),
                );
            }
            _ => {}
        }
    }

    fn reports_key(&mut self, code: KeyCode) {
        let node = self.state.node;
        match code {
            KeyCode::Char('d') => self.state.period = Period::Daily,
            KeyCode::Char('m') => self.state.period = Period::Monthly,
            KeyCode::Char('e') => return self.ask("CSV file to write", false, Ask::ExportPath),
            KeyCode::Enter => {}
            _ => return,
        }
        let period = self.state.period;
        self.job(
            "reading the report",
            Box::new(move |n, _| Reply::Report(n.report(node, period))),
        );
    }

    /// Runs the console until the user quits.
    pub fn run(mut self) -> std::io::Result<()> {
        let mut terminal = ratatui::init();
        let mut last_refresh = Instant::now();
        let result = loop {
            if let Err(e) = terminal.draw(|f| render(f, &self.state)) {
                break Err(e);
            }
            if self.quit {
                break Ok(());
            }
            match event::poll(Duration::from_millis(50)) {
                Ok(true) => match event::read() {
                    Ok(Event::Key(k)) => self.key(k),
                    Ok(_) => {}
                    Err(e) => break Err(e),
                },
                Ok(false) => {}
                Err(e) => break Err(e),
            }
            self.poll(Duration::ZERO);
            if last_refresh.elapsed() > Duration::from_secs(2) {
                self.refresh();
                last_refresh = Instant::now();
            }
        };
        ratatui::restore();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::Fake;

    fn press(app: &mut App, code: KeyCode) {
        app.key(KeyEvent::new(code, KeyModifiers::NONE));
        app.settle();
    }

    fn typed(app: &mut App, text: &str) {
        for c in text.chars() {
            press(app, KeyCode::Char(c));
        }
        press(app, KeyCode::Enter);
    }

    fn app() -> App {
        let mut app = App::new(Box::new(Fake::new()));
        app.settle();
        app
    }

    fn login(app: &mut App, id: &str, pin: &str) {
        press(app, KeyCode::Char('1'));
        press(app, KeyCode::Enter);
        typed(app, id);
        typed(app, pin);
    }

    #[test]
    fn roles_decide_the_screens() {
        assert_eq!(screens_for(None), vec![Tab::Login]);
        assert!(!screens_for(Some("cashier")).contains(&Tab::Prices));
        assert!(!screens_for(Some("cashier")).contains(&Tab::Reports));
        assert!(screens_for(Some("manager")).contains(&Tab::Prices));
        assert_eq!(screens_for(Some("admin")).len(), Tab::ALL.len());
        assert_eq!(screens_for(Some("nobody-knows")), vec![Tab::Login]);
    }

    #[test]
    fn before_login_only_the_login_screen_opens() {
        let mut app = app();
        press(&mut app, KeyCode::Tab);
        assert_eq!(app.state().tab, Tab::Login);
        press(&mut app, KeyCode::Char('3'));
        assert_eq!(app.state().tab, Tab::Login);
        assert_eq!(
            app.state().message,
            "Sell is not open to anyone not logged in"
        );
    }

    #[test]
    fn a_wrong_pin_is_refused_in_words_and_a_right_one_logs_in() {
        let mut app = app();
        login(&mut app, "shop1-mgr", "9999");
        assert_eq!(app.state().operator(), None);
        assert_eq!(app.state().message, "wrong operator PIN for shop1-mgr");
        login(&mut app, "shop1-mgr", "2222");
        assert_eq!(app.state().operator().unwrap().role, "manager");
        assert_eq!(app.state().tab, Tab::Dashboard);
    }

    #[test]
    fn tabs_cycle_through_the_screens_the_role_may_see() {
        let mut app = app();
        login(&mut app, "shop1-cash", "1111");
        let mut seen = vec![app.state().tab];
        for _ in 0..4 {
            press(&mut app, KeyCode::Tab);
            seen.push(app.state().tab);
        }
        assert_eq!(
            seen,
            vec![
                Tab::Dashboard,
                Tab::Sell,
                Tab::Cards,
                Tab::Login,
                Tab::Dashboard
            ]
        );
        press(&mut app, KeyCode::BackTab);
        assert_eq!(app.state().tab, Tab::Login);
        press(&mut app, KeyCode::Char('5'));
        assert_eq!(app.state().tab, Tab::Login, "a cashier cannot open prices");
    }

    #[test]
    fn the_operator_is_per_node_and_switching_node_hides_what_it_may_not_see() {
        let mut app = app();
        login(&mut app, "shop1-mgr", "2222");
        press(&mut app, KeyCode::Char('5'));
        assert_eq!(app.state().tab, Tab::Prices);
        press(&mut app, KeyCode::Char('n'));
        assert_eq!(app.state().node, 1);
        assert_eq!(app.state().operator(), None);
        assert_eq!(app.state().tab, Tab::Login);
        press(&mut app, KeyCode::Char('N'));
        assert_eq!(app.state().operator().unwrap().id, "shop1-mgr");
    }

    #[test]
    fn filter_narrows_products_and_esc_clears_it() {
        let mut app = app();
        login(&mut app, "shop1-mgr", "2222");
        press(&mut app, KeyCode::Char('/'));
        typed(&mut app, "PETROL");
        let names: Vec<_> = app
            .state()
            .products()
            .iter()
            .map(|p| p.id.clone())
            .collect();
        assert_eq!(names, vec!["petrol-92"]);
        press(&mut app, KeyCode::Esc);
        assert_eq!(app.state().products().len(), 4);
    }

    #[test]
    fn a_sale_above_the_threshold_prompts_for_the_pin_then_sells() {
        let mut app = app();
        login(&mut app, "shop1-cash", "1111");
        press(&mut app, KeyCode::Char('3'));
        // Cursor on the cinema ticket (45.00), above the 20.00 threshold.
        for _ in 0..3 {
            press(&mut app, KeyCode::Down);
        }
        press(&mut app, KeyCode::Char('+'));
        assert_eq!(
            app.state().sell.quote.as_ref().unwrap().total.to_string(),
            "45.00"
        );
        press(&mut app, KeyCode::Enter);
        let prompt = app.state().prompt.clone().expect("a PIN prompt");
        assert!(prompt.secret);
        assert_eq!(prompt.ask, Ask::SalePin);
        typed(&mut app, "123456");
        let sale = app.state().sell.sale.clone().expect("sold");
        assert_eq!(sale.balance_after.to_string(), "55.00");
        assert!(app.state().sell.basket.is_empty());
        assert_eq!(app.state().message, "sold 45.00: balance 100.00 -> 55.00");
    }

    #[test]
    fn a_small_sale_needs_no_pin_and_esc_cancels_a_prompt() {
        let mut app = app();
        login(&mut app, "shop1-cash", "1111");
        press(&mut app, KeyCode::Char('3'));
        press(&mut app, KeyCode::Enter);
        assert_eq!(
            app.state().message,
            "the basket is empty: add products with +"
        );
        press(&mut app, KeyCode::Char('+'));
        press(&mut app, KeyCode::Char('+'));
        press(&mut app, KeyCode::Char('-'));
        assert_eq!(app.state().sell.basket[0].1, Quantity::pieces(1));
        press(&mut app, KeyCode::Enter);
        assert_eq!(app.state().prompt, None);
        assert_eq!(app.state().message, "sold 7.68: balance 100.00 -> 92.32");
        press(&mut app, KeyCode::Char('/'));
        press(&mut app, KeyCode::Esc);
        assert_eq!(app.state().prompt, None);
        assert_eq!(app.state().message, "cancelled");
    }

    #[test]
    fn bad_amounts_are_refused_before_reaching_the_node() {
        let mut app = app();
        login(&mut app, "shop1-mgr", "2222");
        press(&mut app, KeyCode::Char('4'));
        press(&mut app, KeyCode::Char('l'));
        typed(&mut app, "12.345");
        assert_eq!(
            app.state().message,
            "'12.345' is not an amount in yuan (like 100 or 25.50)"
        );
        assert_eq!(app.state().prompt, None);
    }

    #[test]
    fn issuing_asks_holder_then_deposit_and_refuses_a_bad_deposit() {
        let mut app = app();
        login(&mut app, "shop1-mgr", "2222");
        press(&mut app, KeyCode::Char('4'));
        press(&mut app, KeyCode::Char('i'));
        typed(&mut app, "Ma Li");
        typed(&mut app, "twenty");
        assert_eq!(
            app.state().message,
            "'twenty' is not a deposit in yuan (like 20 or 0)"
        );
        press(&mut app, KeyCode::Char('i'));
        typed(&mut app, "Ma Li");
        typed(&mut app, "20");
        assert_eq!(
            app.state().message,
            "issued 1000000000000001 to Ma Li, deposit 20.00"
        );
        press(&mut app, KeyCode::Char('i'));
        typed(&mut app, "");
        typed(&mut app, "0");
        assert_eq!(
            app.state().message,
            "issued 1000000000000001 to anonymous, deposit 0.00"
        );
    }

    #[test]
    fn a_card_return_needs_a_yes_and_a_replacement_the_new_card_and_its_pin() {
        let mut app = app();
        login(&mut app, "shop1-mgr", "2222");
        press(&mut app, KeyCode::Char('4'));
        press(&mut app, KeyCode::Char('e'));
        typed(&mut app, "y");
        assert_eq!(app.state().message, "card return cancelled");
        press(&mut app, KeyCode::Char('e'));
        typed(&mut app, "yes");
        assert_eq!(app.state().message, "1000000000000001 returned");

        press(&mut app, KeyCode::Char('w'));
        typed(&mut app, "card nine");
        assert_eq!(
            app.state().message,
            "'card nine' is not a card number (16 digits)"
        );
        assert_eq!(app.state().prompt, None);
        press(&mut app, KeyCode::Char('w'));
        typed(&mut app, "1000000000000009");
        assert_eq!(app.state().prompt.as_ref().map(|p| p.secret), Some(true));
        typed(&mut app, "654321");
        assert_eq!(app.state().message, "wrong card PIN");
        press(&mut app, KeyCode::Char('w'));
        typed(&mut app, "1000000000000009");
        typed(&mut app, "123456");
        assert_eq!(
            app.state().message,
            "1000000000000009 replaces 1000000000000001"
        );
    }

    #[test]
    fn an_operator_card_and_its_pin_log_in() {
        let mut app = app();
        press(&mut app, KeyCode::Char('1'));
        press(&mut app, KeyCode::Char('c'));
        typed(&mut app, "1000000000000001");
        typed(&mut app, "123456");
        assert_eq!(app.state().message, "this card is not an operator card");
        assert_eq!(app.state().operator(), None);
        press(&mut app, KeyCode::Char('c'));
        typed(&mut app, "1000000000000009");
        assert_eq!(app.state().prompt.as_ref().map(|p| p.secret), Some(true));
        typed(&mut app, "123456");
        assert_eq!(
            app.state().operator().map(|o| o.role.as_str()),
            Some("manager")
        );
    }

    #[test]
    fn usb_sync_reports_progress_then_the_result() {
        let mut app = app();
        login(&mut app, "shop1-mgr", "2222");
        press(&mut app, KeyCode::Char('6'));
        press(&mut app, KeyCode::Char('u'));
        assert_eq!(app.state().message, "USB stick synced");
        assert_eq!(app.state().progress, None);
    }

    #[test]
    fn help_toggles_and_swallows_keys_while_open() {
        let mut app = app();
        press(&mut app, KeyCode::Char('?'));
        assert!(app.state().help);
        press(&mut app, KeyCode::Char('q'));
        assert!(!app.quit);
        press(&mut app, KeyCode::Esc);
        assert!(!app.state().help);
        press(&mut app, KeyCode::Char('q'));
        assert!(app.quit);
    }
}
