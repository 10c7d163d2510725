//! Seeded plain data for the console's tests: a state for every screen, and a small
//! in-memory network behind the `Nodes` trait with the rules the tests exercise (operator
//! PINs, a PIN threshold, a balance that drops).

use crate::app::{SellState, State, Tab};
use crate::nodes::*;
use cardmesh_model::{CardAsn, Money, Quantity, Role};
use std::sync::Mutex;

pub fn asn(n: u8) -> CardAsn {
    CardAsn([0x10, 0, 0, 0, 0, 0, 0, n])
}

fn yuan(fen: i64) -> Money {
    Money::from_fen(fen)
}

pub fn prices() -> Vec<PriceLine> {
    let p = |id: &str, name: &str, unit: &str, fen, next: Option<(&str, i64)>| PriceLine {
        id: id.into(),
        name: name.into(),
        unit: unit.into(),
        price: Some(yuan(fen)),
        next: next.map(|(w, f)| (w.to_string(), yuan(f))),
    };
    vec![
        p("petrol-92", "92# petrol", "L", 768, None),
        p(
            "diesel-0",
            "0# diesel",
            "L",
            789,
            Some(("2026-11-23 00:00", 812)),
        ),
        p("cola", "Cola 330ml", "pc", 300, None),
        p("ticket", "Cinema ticket", "ticket", 4500, None),
    ]
}

pub fn wallet() -> Vec<WalletCard> {
    vec![
        WalletCard {
            asn: asn(1),
            label: "Zhang Wei (gold)".into(),
        },
        WalletCard {
            asn: asn(3),
            label: "Wang Fang (standard, lost)".into(),
        },
        WalletCard {
            asn: asn(5),
            label: "anonymous".into(),
        },
    ]
}

pub fn summary() -> NodeSummary {
    NodeSummary {
        node: "3f2a9c01".into(),
        role: Role::Store,
        site: "shop-1".into(),
        network: "demo-chain".into(),
        total_entries: 42,
        store_bytes: 1 << 20,
        cards: 6,
        blacklisted: 1,
        feeds: vec![FeedRow {
            node: "3f2a9c01".into(),
            role: Role::Store,
            site: "shop-1".into(),
            entries: 12,
            this_node: true,
        }],
        blocked: vec![asn(3)],
        prices: prices(),
    }
}

pub fn links() -> Vec<LinkRow> {
    vec![
        LinkRow {
            peer: "hq".into(),
            kind: "iroh (loopback)".into(),
            last_sync: "10:15:02".into(),
            pending_out: 3,
            pending_in: 0,
            last_error: None,
        },
        LinkRow {
            peer: "shop-2".into(),
            kind: "iroh (loopback)".into(),
            last_sync: "never".into(),
            pending_out: 5,
            pending_in: 2,
            last_error: Some("peer did not answer".into()),
        },
    ]
}

pub fn dashboard() -> Dashboard {
    let mut by_hour = vec![Money::ZERO; 24];
    by_hour[8] = yuan(1_200);
    by_hour[9] = yuan(4_550);
    by_hour[12] = yuan(9_000);
    by_hour[18] = yuan(2_400);
    Dashboard {
        day: "2026-11-22".into(),
        sales: yuan(17_150),
        count: 7,
        by_hour,
        by_terminal: vec![
            TerminalSales {
                terminal: "000000000101".into(),
                count: 5,
                amount: yuan(12_600),
            },
            TerminalSales {
                terminal: "000000000102".into(),
                count: 2,
                amount: yuan(4_550),
            },
        ],
        grey_locks: vec![],
        alarms: vec!["blacklisted card 1000000000000003 presented at 000000000101".into()],
        links: links(),
        pumps: vec![],
    }
}

pub fn quote() -> Quote {
    Quote {
        lines: vec![QuoteLine {
            name: "Cola 330ml".into(),
            quantity: Quantity::pieces(3),
            unit_price: yuan(300),
            paid_percent: 95,
            amount: yuan(855),
        }],
        total: yuan(855),
    }
}

pub fn details() -> CardDetails {
    CardDetails {
        asn: asn(1),
        holder: "Zhang Wei".into(),
        class: "gold".into(),
        status: "active".into(),
        balance: Some(yuan(19_145)),
        blocked: false,
        history: vec![
            HistoryRow {
                day: "2026-11-20".into(),
                site: "hq".into(),
                kind: "load".into(),
                amount: yuan(20_000),
                balance_after: yuan(20_000),
            },
            HistoryRow {
                day: "2026-11-22".into(),
                site: "shop-1".into(),
                kind: "purchase".into(),
                amount: yuan(855),
                balance_after: yuan(19_145),
            },
        ],
    }
}

pub fn report() -> Report {
    let row = |label: &str, n, fen, loads, load_fen| ReportRow {
        label: label.into(),
        purchases: n,
        purchase_amount: yuan(fen),
        loads,
        load_amount: yuan(load_fen),
    };
    Report {
        title: "shop-1, 2026-11".into(),
        rows: vec![
            row("2026-11-19", 4, 6_400, 0, 0),
            row("2026-11-20", 6, 12_350, 1, 20_000),
            row("2026-11-21", 3, 2_100, 0, 0),
            row("2026-11-22", 7, 17_150, 0, 0),
        ],
    }
}

/// A manager logged in at shop-1 of a three-node console, everything read.
pub fn state(tab: Tab) -> State {
    State {
        nodes: vec!["hq".into(), "shop-1".into(), "shop-2".into()],
        node: 1,
        tab,
        operators: vec![
            None,
            Some(Operator {
                id: "shop1-mgr".into(),
                role: "manager".into(),
            }),
            None,
        ],
        login_hint: "demo operators: shop1-mgr / 2222 (manager), shop1-cash / 1111 (cashier)"
            .into(),
        message: "synced every link: 12 entries moved".into(),
        summary: Some(summary()),
        dashboard: Some(dashboard()),
        wallet: wallet(),
        sell: SellState {
            cursor: 2,
            basket: vec![("cola".into(), Quantity::pieces(3))],
            quote: Some(quote()),
            sale: None,
        },
        details: Some(details()),
        report: Some(report()),
        ..State::default()
    }
}

/// An in-memory network of three nodes for the key-handling tests.
pub struct Fake {
    pub balance: Mutex<Money>,
}

impl Fake {
    pub fn new() -> Fake {
        Fake {
            balance: Mutex::new(yuan(10_000)),
        }
    }
}

/// Totals above this need the card PIN.
const PIN_ABOVE: Money = Money::from_fen(2_000);

fn total(basket: &[(String, Quantity)]) -> Money {
    let fen = basket
        .iter()
        .map(|(id, q)| {
            let unit = prices().iter().find(|p| p.id == *id).and_then(|p| p.price);
            unit.map_or(0, |u| u.fen() * q.milli() / 1000)
        })
        .sum();
    Money::from_fen(fen)
}

impl Nodes for Fake {
    fn names(&self) -> Vec<String> {
        vec!["hq".into(), "shop-1".into(), "shop-2".into()]
    }
    fn login_hint(&self) -> String {
        "shop1-mgr / 2222, shop1-cash / 1111".into()
    }
    fn summary(&self, _: usize) -> Answer<NodeSummary> {
        Ok(summary())
    }
    fn dashboard(&self, _: usize) -> Answer<Dashboard> {
        Ok(dashboard())
    }
    fn login(&self, _: usize, operator: &str, pin: &str) -> Answer<Operator> {
        let role = match (operator, pin) {
            ("shop1-mgr", "2222") => "manager",
            ("shop1-cash", "1111") => "cashier",
            _ => return Err(Failure::Plain(format!("wrong operator PIN for {operator}"))),
        };
        Ok(Operator {
            id: operator.into(),
            role: role.into(),
        })
    }
    fn login_card(&self, _: usize, card: CardAsn, pin: &str) -> Answer<Operator> {
        if card.to_string() != "1000000000000009" {
            return Err(Failure::Plain("this card is not an operator card".into()));
        }
        if pin != "123456" {
            return Err(Failure::Plain("wrong card PIN".into()));
        }
        Ok(Operator {
            id: "shop1-mgr".into(),
            role: "manager".into(),
        })
    }
    fn logout(&self, _: usize) -> Answer<()> {
        Ok(())
    }
    fn wallet(&self, _: usize) -> Answer<Vec<WalletCard>> {
        Ok(wallet())
    }
    fn quote(&self, _: usize, _: CardAsn, basket: &[(String, Quantity)]) -> Answer<Quote> {
        Ok(Quote {
            lines: vec![],
            total: total(basket),
        })
    }
    fn sell(
        &self,
        _: usize,
        _: CardAsn,
        basket: &[(String, Quantity)],
        pin: Option<&str>,
    ) -> Answer<Sale> {
        let total = total(basket);
        match pin {
            None if total > PIN_ABOVE => return Err(Failure::PinRequired(total)),
            Some(p) if p != "123456" => return Err(Failure::Plain("wrong card PIN".into())),
            _ => {}
        }
        let mut b = self.balance.lock().unwrap();
        let before = *b;
        *b = Money::from_fen(before.fen() - total.fen());
        Ok(Sale {
            total,
            balance_before: before,
            balance_after: *b,
            receipt: vec![format!("total {total}")],
        })
    }
    fn card(&self, _: usize, card: CardAsn, present: bool) -> Answer<CardDetails> {
        Ok(CardDetails {
            asn: card,
            balance: present.then(|| *self.balance.lock().unwrap()),
            ..details()
        })
    }
    fn load(&self, _: usize, _: CardAsn, amount: Money, _: &str) -> Answer<String> {
        Err(Failure::Plain(format!(
            "this node does not hold the load key ({amount})"
        )))
    }
    fn issue(
        &self,
        _: usize,
        card: CardAsn,
        holder: Option<&str>,
        deposit: Money,
    ) -> Answer<String> {
        Ok(format!(
            "issued {card} to {}, deposit {deposit}",
            holder.unwrap_or("anonymous")
        ))
    }
    fn report_lost(&self, _: usize, card: CardAsn) -> Answer<String> {
        Ok(format!("{card} blocked"))
    }
    fn unblock(&self, _: usize, _: CardAsn) -> Answer<String> {
        Err(Failure::Plain("only HQ may lift a blacklist block".into()))
    }
    fn change_pin(&self, _: usize, _: CardAsn, _: &str, _: &str) -> Answer<String> {
        Ok("PIN changed".into())
    }
    fn return_card(&self, _: usize, card: CardAsn) -> Answer<String> {
        Ok(format!("{card} returned"))
    }
    fn replace_card(&self, _: usize, old: CardAsn, new: CardAsn, pin: &str) -> Answer<String> {
        match pin {
            "123456" => Ok(format!("{new} replaces {old}")),
            _ => Err(Failure::Plain("wrong card PIN".into())),
        }
    }
    fn set_price(&self, _: usize, product: &str, price: Money, from: &str) -> Answer<String> {
        Ok(format!("{product} costs {price} from {from}"))
    }
    fn sync_all(&self) -> Answer<String> {
        Ok("synced".into())
    }
    fn dial(&self, _: usize, peer: &str) -> Answer<String> {
        Ok(format!("synced with {peer}"))
    }
    fn sync_usb(&self, _: usize, progress: &mut dyn FnMut(u16)) -> Answer<String> {
        progress(500);
        progress(1000);
        Ok("USB stick synced".into())
    }
    fn report(&self, _: usize, _: Period) -> Answer<Report> {
        Ok(report())
    }
    fn export_csv(&self, _: usize, _: Period, path: &str) -> Answer<String> {
        Ok(format!("wrote {path}"))
    }
}
