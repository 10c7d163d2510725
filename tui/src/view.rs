//! Rendering: a pure function from the app [`State`] (plain data) to a frame. One
//! function per screen, the tab bar on top, the prompt and the status bar at the bottom.

use crate::app::{State, Tab};
use crate::nodes::{Dashboard, Period};
use cardmesh_model::Money;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Bar, BarChart, BarGroup, Block, Clear, Gauge, Paragraph, Row, Table, Tabs, Wrap,
};

pub fn render(frame: &mut Frame, s: &State) {
    let prompt_rows = u16::from(s.prompt.is_some());
    let [top, body, prompt, bar] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Min(5),
        Constraint::Length(prompt_rows),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let tabs = s.tabs();
    let titles = tabs.iter().map(|t| format!("{} {}", number(*t), t.title()));
    let node = s.nodes.get(s.node).map_or("", String::as_str);
    let tab_bar = Tabs::new(titles)
        .select(tabs.iter().position(|t| *t == s.tab))
        .highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .block(Block::bordered().title(format!(" cardmesh · {node} ")));
    frame.render_widget(tab_bar, top);

    match s.tab {
        Tab::Login => login(frame, body, s),
        Tab::Dashboard => dashboard(frame, body, s),
        Tab::Sell => sell(frame, body, s),
        Tab::Cards => cards(frame, body, s),
        Tab::Prices => prices(frame, body, s),
        Tab::Sync => sync(frame, body, s),
        Tab::Reports => reports(frame, body, s),
    }
    if let Some(p) = &s.prompt {
        let value = if p.secret {
            "*".repeat(p.value.chars().count())
        } else {
            p.value.clone()
        };
        frame.render_widget(
            Paragraph::new(Line::from(vec![
                Span::from(format!(" {}: ", p.label)).bold(),
                Span::from(format!("{value}█")),
                Span::from("   Enter ok · Esc cancel").dim(),
            ])),
            prompt,
        );
    }
    frame.render_widget(Paragraph::new(status_line(s)).reversed(), bar);
    if s.help {
        help(frame, body, s.tab);
    }
}

fn number(t: Tab) -> usize {
    Tab::ALL.iter().position(|x| *x == t).unwrap_or(0) + 1
}

/// Node, operator, link state, filter and the last message (or what is in progress).
fn status_line(s: &State) -> String {
    let node = s.nodes.get(s.node).map_or("-", String::as_str);
    let operator = s.operator().map_or("not logged in".to_string(), |o| {
        format!("{} ({})", o.id, o.role)
    });
    let mut parts = vec![node.to_string(), operator, s.link_state()];
    if !s.filter.is_empty() {
        parts.push(format!("filter '{}'", s.filter));
    }
    parts.push(match &s.busy {
        Some(b) => format!("{b}…"),
        None => s.message.clone(),
    });
    format!(" {} │ ? help", parts.join(" │ "))
}

fn bordered(title: &str) -> Block<'_> {
    Block::bordered().title(format!(" {title} "))
}

fn cursor_row(row: Row<'_>, selected: bool) -> Row<'_> {
    if selected {
        row.add_modifier(Modifier::REVERSED)
    } else {
        row
    }
}

fn login(frame: &mut Frame, area: Rect, s: &State) {
    let who = match s.operator() {
        Some(o) => format!("{} is logged in as {}", o.id, o.role),
        None => "nobody is logged in at this terminal".into(),
    };
    let mut lines = vec![
        Line::from(who).bold(),
        Line::from(""),
        Line::from("Enter  log in with operator id and PIN"),
        Line::from("c      log in with an operator card and its PIN"),
        Line::from("o      log out"),
        Line::from("n, N   next / previous node"),
        Line::from(""),
        Line::from("Your role decides which screens you see and what you may do."),
        Line::from(""),
    ];
    lines.extend(
        s.login_hint
            .lines()
            .map(|l| Line::from(l.to_string()).dim()),
    );
    frame.render_widget(Paragraph::new(lines).block(bordered("login")), area);
}

fn dashboard(frame: &mut Frame, area: Rect, s: &State) {
    let Some(d) = &s.dashboard else {
        frame.render_widget(
            Paragraph::new("reading the node…").block(bordered("dashboard")),
            area,
        );
        return;
    };
    let pump_rows = match d.pumps.len() {
        0 => 0,
        n => n as u16 + 2,
    };
    let [upper, pumps, links] = Layout::vertical([
        Constraint::Min(8),
        Constraint::Length(pump_rows),
        Constraint::Length(d.links.len() as u16 + 3),
    ])
    .areas(area);
    if !d.pumps.is_empty() {
        frame.render_widget(
            Paragraph::new(words_or(&d.pumps, "")).block(bordered("fuelling points")),
            pumps,
        );
    }
    let [chart, side] =
        Layout::horizontal([Constraint::Length(52), Constraint::Min(20)]).areas(upper);
    hour_chart(frame, chart, d);

    let [terminals, locks, alarms] = Layout::vertical([
        Constraint::Length(d.by_terminal.len().max(1) as u16 + 3),
        Constraint::Length(d.grey_locks.len().max(1) as u16 + 2),
        Constraint::Min(3),
    ])
    .areas(side);
    let rows = d.by_terminal.iter().map(|t| {
        Row::new(vec![
            t.terminal.clone(),
            t.count.to_string(),
            t.amount.to_string(),
        ])
    });
    frame.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(13),
                Constraint::Length(6),
                Constraint::Min(10),
            ],
        )
        .header(Row::new(vec!["terminal", "sales", "yuan"]).bold())
        .block(bordered("by terminal")),
        terminals,
    );
    frame.render_widget(
        Paragraph::new(words_or(&d.grey_locks, "no card is grey-locked"))
            .block(bordered("grey locks outstanding")),
        locks,
    );
    frame.render_widget(
        Paragraph::new(words_or(&d.alarms, "no alarm"))
            .wrap(Wrap { trim: true })
            .block(bordered("alarms")),
        alarms,
    );
    link_table(frame, links, s, None);
}

fn words_or(items: &[String], none: &str) -> Vec<Line<'static>> {
    if items.is_empty() {
        vec![Line::from(none.to_string()).dim()]
    } else {
        items.iter().map(|i| Line::from(i.clone())).collect()
    }
}

fn hour_chart(frame: &mut Frame, area: Rect, d: &Dashboard) {
    let block = bordered("today by hour");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [head, chart, axis] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(2),
        Constraint::Length(1),
    ])
    .areas(inner);
    frame.render_widget(
        Paragraph::new(format!("{}: {} sales, {} yuan", d.day, d.count, d.sales)).bold(),
        head,
    );
    let bars: Vec<Bar> = d
        .by_hour
        .iter()
        .map(|m| Bar::default().value(m.fen().max(0) as u64).text_value(""))
        .collect();
    frame.render_widget(
        BarChart::default()
            .data(BarGroup::default().bars(&bars))
            .bar_width(1)
            .bar_gap(1),
        chart,
    );
    frame.render_widget(
        Paragraph::new("0h          6h          12h         18h       23h").dim(),
        axis,
    );
}

fn link_table(frame: &mut Frame, area: Rect, s: &State, cursor: Option<usize>) {
    let links = s.dashboard.iter().flat_map(|d| &d.links);
    let rows = links.enumerate().map(|(i, l)| {
        cursor_row(
            Row::new(vec![
                l.peer.clone(),
                l.kind.clone(),
                l.last_sync.clone(),
                l.pending_out.to_string(),
                l.pending_in.to_string(),
                l.last_error.clone().unwrap_or_else(|| "ok".into()),
            ]),
            cursor == Some(i),
        )
    });
    frame.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(16),
                Constraint::Length(16),
                Constraint::Length(10),
                Constraint::Length(9),
                Constraint::Length(9),
                Constraint::Min(10),
            ],
        )
        .header(
            Row::new(vec![
                "peer",
                "link",
                "last sync",
                "to send",
                "to get",
                "state",
            ])
            .bold(),
        )
        .block(bordered("sync links")),
        area,
    );
}

fn sell(frame: &mut Frame, area: Rect, s: &State) {
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(area);
    let products = s.products();
    let rows = products.iter().enumerate().map(|(i, p)| {
        let qty = s
            .sell
            .basket
            .iter()
            .find(|(id, _)| *id == p.id)
            .map_or(String::new(), |(_, q)| q.to_string());
        cursor_row(
            Row::new(vec![
                p.name.clone(),
                p.unit.clone(),
                price_or_none(p.price),
                qty,
            ]),
            i == s.sell.cursor,
        )
    });
    frame.render_widget(
        Table::new(
            rows,
            [
                Constraint::Min(12),
                Constraint::Length(6),
                Constraint::Length(9),
                Constraint::Length(4),
            ],
        )
        .header(Row::new(vec!["product", "unit", "price", "qty"]).bold())
        .block(bordered("price book  ↑↓ choose · + - quantity")),
        left,
    );

    let receipt_rows = s
        .sell
        .sale
        .as_ref()
        .map_or(3, |r| r.receipt.len() as u16 + 2);
    let [card, basket, receipt] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Min(5),
        Constraint::Length(receipt_rows),
    ])
    .areas(right);
    let chosen = s
        .chosen_card()
        .map_or("no card in the wallet".to_string(), |c| {
            format!("{}  {}", c.asn, c.label)
        });
    frame.render_widget(
        Paragraph::new(chosen).block(bordered("card to present  ←→ change")),
        card,
    );
    let mut lines: Vec<Row> = Vec::new();
    match &s.sell.quote {
        Some(q) => {
            for l in &q.lines {
                let discount = if l.paid_percent < 100 {
                    format!("-{}%", 100 - l.paid_percent)
                } else {
                    String::new()
                };
                lines.push(Row::new(vec![
                    l.name.clone(),
                    l.quantity.to_string(),
                    l.unit_price.to_string(),
                    discount,
                    l.amount.to_string(),
                ]));
            }
            lines.push(
                Row::new(vec![
                    "total".to_string(),
                    String::new(),
                    String::new(),
                    String::new(),
                    q.total.to_string(),
                ])
                .bold(),
            );
        }
        None if s.sell.basket.is_empty() => {}
        None => lines.push(Row::new(vec!["pricing…".to_string()])),
    }
    frame.render_widget(
        Table::new(
            lines,
            [
                Constraint::Min(12),
                Constraint::Length(5),
                Constraint::Length(8),
                Constraint::Length(5),
                Constraint::Length(9),
            ],
        )
        .header(Row::new(vec!["basket", "qty", "price", "disc", "amount"]).bold())
        .block(bordered("basket  Enter pay · x clear")),
        basket,
    );
    let receipt_lines: Vec<Line> = match &s.sell.sale {
        Some(sale) => sale.receipt.iter().map(|l| Line::from(l.clone())).collect(),
        None => vec![Line::from("no sale yet").dim()],
    };
    frame.render_widget(
        Paragraph::new(receipt_lines).block(bordered("receipt")),
        receipt,
    );
}

fn price_or_none(p: Option<Money>) -> String {
    p.map_or("no price".into(), |m| m.to_string())
}

fn cards(frame: &mut Frame, area: Rect, s: &State) {
    let [left, right] =
        Layout::horizontal([Constraint::Length(52), Constraint::Min(30)]).areas(area);
    let rows = s.cards().into_iter().map(|(i, c)| {
        cursor_row(
            Row::new(vec![c.asn.to_string(), c.label.clone()]),
            i == s.card,
        )
    });
    frame.render_widget(
        Table::new(rows, [Constraint::Length(17), Constraint::Min(10)])
            .header(Row::new(vec!["card", "holder"]).bold())
            .block(bordered("wallet  ↑↓ choose · Enter present")),
        left,
    );
    let keys = "l load · i issue · ! lost · p PIN · e return · w swap";
    let Some(d) = &s.details else {
        frame.render_widget(
            Paragraph::new("present the card (Enter) to read it").block(bordered(keys)),
            right,
        );
        return;
    };
    let [facts, history] =
        Layout::vertical([Constraint::Length(7), Constraint::Min(3)]).areas(right);
    let fact =
        |k: &str, v: String| Line::from(vec![Span::from(format!("{k:<9}")).bold(), Span::from(v)]);
    let lines = vec![
        fact("card", d.asn.to_string()),
        fact("holder", d.holder.clone()),
        fact("class", d.class.clone()),
        fact(
            "status",
            if d.blocked {
                format!("{} — BLACKLISTED", d.status)
            } else {
                d.status.clone()
            },
        ),
        fact(
            "balance",
            d.balance.map_or("not read".into(), |b| format!("{b} yuan")),
        ),
    ];
    frame.render_widget(Paragraph::new(lines).block(bordered(keys)), facts);
    let rows = d.history.iter().map(|h| {
        Row::new(vec![
            h.day.clone(),
            h.site.clone(),
            h.kind.clone(),
            h.amount.to_string(),
            h.balance_after.to_string(),
        ])
    });
    frame.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(11),
                Constraint::Length(10),
                Constraint::Length(10),
                Constraint::Length(9),
                Constraint::Min(9),
            ],
        )
        .header(Row::new(vec!["day", "site", "what", "amount", "balance"]).bold())
        .block(bordered("history")),
        history,
    );
}

fn prices(frame: &mut Frame, area: Rect, s: &State) {
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(area);
    let rows = s.products().into_iter().enumerate().map(|(i, p)| {
        let next = p
            .next
            .as_ref()
            .map_or(String::new(), |(when, m)| format!("{m} from {when}"));
        cursor_row(
            Row::new(vec![
                p.name.clone(),
                p.unit.clone(),
                price_or_none(p.price),
                next,
            ]),
            i == s.price_cursor,
        )
    });
    frame.render_widget(
        Table::new(
            rows,
            [
                Constraint::Min(12),
                Constraint::Length(6),
                Constraint::Length(9),
                Constraint::Min(18),
            ],
        )
        .header(Row::new(vec!["product", "unit", "now", "scheduled"]).bold())
        .block(bordered("prices  ↑↓ choose · e edit / schedule")),
        left,
    );
    let blocked = s.blocked();
    let lines: Vec<Line> = if blocked.is_empty() {
        vec![Line::from("no card is blocked").dim()]
    } else {
        blocked
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let l = Line::from(a.to_string());
                if i == s.blocked_cursor {
                    l.reversed()
                } else {
                    l
                }
            })
            .collect()
    };
    frame.render_widget(
        Paragraph::new(lines).block(bordered("blacklist  PgUp/PgDn · b block · u unblock")),
        right,
    );
}

fn sync(frame: &mut Frame, area: Rect, s: &State) {
    let [links, usb, keys] = Layout::vertical([
        Constraint::Min(4),
        Constraint::Length(3),
        Constraint::Length(1),
    ])
    .areas(area);
    link_table(frame, links, s, Some(s.link_cursor));
    let (ratio, label) = match s.progress {
        Some(p) => (f64::from(p.min(1000)) / 1000.0, format!("{}%", p / 10)),
        None => (0.0, "idle".to_string()),
    };
    frame.render_widget(
        Gauge::default()
            .block(bordered("USB stick"))
            .ratio(ratio)
            .label(label),
        usb,
    );
    frame.render_widget(
        Paragraph::new(" ↑↓ choose a peer · d dial now · u sync USB now · s sync every link").dim(),
        keys,
    );
}

fn reports(frame: &mut Frame, area: Rect, s: &State) {
    let period = match s.period {
        Period::Daily => "daily",
        Period::Monthly => "monthly",
    };
    let title = format!("{period} report  d daily · m monthly · e export CSV");
    let Some(r) = &s.report else {
        frame.render_widget(
            Paragraph::new("reading the report…").block(bordered(&title)),
            area,
        );
        return;
    };
    let [chart, table] =
        Layout::vertical([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(area);
    let bars: Vec<Bar> = r
        .rows
        .iter()
        .map(|row| {
            Bar::default()
                .value(row.purchase_amount.fen().max(0) as u64)
                .text_value(format!("{}", row.purchase_amount.fen() / 100))
                .label(Line::from(short_label(&row.label)))
        })
        .collect();
    frame.render_widget(
        BarChart::default()
            .block(bordered(&format!("{} — purchases, yuan", r.title)))
            .data(BarGroup::default().bars(&bars))
            .bar_width(5)
            .bar_gap(1),
        chart,
    );
    let rows = r.rows.iter().map(|row| {
        Row::new(vec![
            row.label.clone(),
            row.purchases.to_string(),
            row.purchase_amount.to_string(),
            row.loads.to_string(),
            row.load_amount.to_string(),
        ])
    });
    frame.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(12),
                Constraint::Length(10),
                Constraint::Length(12),
                Constraint::Length(7),
                Constraint::Min(10),
            ],
        )
        .header(Row::new(vec!["period", "purchases", "amount", "loads", "amount"]).bold())
        .block(bordered(&title)),
        table,
    );
}

/// The part of a day or month label a bar has room for: "11-20" of "2026-11-20".
fn short_label(label: &str) -> String {
    label.get(5..).unwrap_or(label).to_string()
}

fn help(frame: &mut Frame, area: Rect, tab: Tab) {
    let screen: &[&str] = match tab {
        Tab::Login => &[
            "Enter   log in (operator id, then PIN)",
            "c       log in with an operator card (card number, then its PIN)",
            "o       log out",
        ],
        Tab::Dashboard => &["today's sales by hour and terminal, locks, alarms, links"],
        Tab::Sell => &[
            "↑↓      choose a product     + -  quantity in the basket",
            "←→, c   choose the card      x    clear the basket",
            "Enter   present the card and pay (asks the PIN when needed)",
        ],
        Tab::Cards => &[
            "↑↓      choose a card        Enter  present it (balance, history)",
            "l       load money           !      report lost",
            "p       change the PIN       i      issue a blank card (name, deposit)",
            "e       return the card      w      swap it for a new card (replace)",
        ],
        Tab::Prices => &[
            "↑↓      choose a product     e      new price, now or from a day",
            "PgUp/Dn choose a blocked card  b block a card · u unblock (HQ)",
        ],
        Tab::Sync => &[
            "↑↓      choose a peer        d      dial it now",
            "u       sync with the USB stick now",
        ],
        Tab::Reports => &["d daily · m monthly · e export CSV to a file"],
    };
    let mut text = vec![Line::from(tab.title()).bold(), Line::from("")];
    text.extend(screen.iter().map(|l| Line::from(*l)));
    text.extend(
        [
            "",
            "Tab, 1-7  switch screen      n, N   next / previous node",
            "/         filter the lists   Esc    clear the filter",
            "s         sync every link    r      refresh",
            "q         quit (stops every node)    ?  close this help",
        ]
        .map(Line::from),
    );
    let w = area.width.min(72);
    let h = area.height.min(text.len() as u16 + 2);
    let popup = Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    };
    frame.render_widget(Clear, popup);
    frame.render_widget(Paragraph::new(text).block(bordered("help")), popup);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::{Ask, Prompt};
    use crate::fixture::state;
    use crate::nodes::Sale;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    fn draw(s: &State) -> String {
        let mut t = Terminal::new(TestBackend::new(110, 30)).unwrap();
        t.draw(|f| render(f, s)).unwrap();
        format!("{}", t.backend())
    }

    #[test]
    fn login_screen_shows_who_is_logged_in_and_the_demo_operators() {
        insta::assert_snapshot!(draw(&state(Tab::Login)));
    }

    #[test]
    fn login_screen_before_anyone_logged_in_offers_only_login() {
        let mut s = state(Tab::Login);
        s.operators[1] = None;
        s.prompt = Some(Prompt {
            label: "PIN of shop1-mgr".into(),
            value: "987".into(),
            secret: true,
            ask: Ask::OperatorPin {
                operator: "shop1-mgr".into(),
            },
        });
        let screen = draw(&s);
        assert!(!screen.contains("Dashboard"), "{screen}");
        assert!(!screen.contains("987"), "a PIN is never shown: {screen}");
        assert!(screen.contains("PIN of shop1-mgr: ***"), "{screen}");
        insta::assert_snapshot!(screen);
    }

    #[test]
    fn dashboard_shows_sales_by_hour_and_terminal_locks_alarms_and_links() {
        insta::assert_snapshot!(draw(&state(Tab::Dashboard)));
    }

    #[test]
    fn station_dashboard_shows_each_fuelling_point_live() {
        let mut s = state(Tab::Dashboard);
        let d = s.dashboard.as_mut().expect("the fixture has a dashboard");
        d.pumps = vec![
            "1 000000000301 filling nozzle 1 (92) 10.000 L 75.00 card 1000000000000007".into(),
            "2 000000000302 idle 0.000 L 0.00".into(),
        ];
        let screen = draw(&s);
        assert!(screen.contains("fuelling points"), "{screen}");
        assert!(
            screen.contains("filling nozzle 1 (92) 10.000 L 75.00"),
            "{screen}"
        );
        insta::assert_snapshot!(screen);
    }

    #[test]
    fn sell_screen_shows_basket_with_discount_card_and_total() {
        insta::assert_snapshot!(draw(&state(Tab::Sell)));
    }

    #[test]
    fn sell_screen_after_a_sale_shows_the_receipt() {
        let mut s = state(Tab::Sell);
        s.sell.basket.clear();
        s.sell.quote = None;
        s.sell.sale = Some(Sale {
            total: Money::from_fen(855),
            balance_before: Money::from_fen(20_000),
            balance_after: Money::from_fen(19_145),
            receipt: vec![
                "shop-1  terminal 000000000101  shop1-mgr".into(),
                "Cola 330ml  3 x 3.00  -5%  8.55".into(),
                "total 8.55   balance 200.00 -> 191.45".into(),
            ],
        });
        s.message = "sold 8.55: balance 200.00 -> 191.45".into();
        insta::assert_snapshot!(draw(&s));
    }

    #[test]
    fn cards_screen_shows_the_wallet_and_the_presented_card() {
        insta::assert_snapshot!(draw(&state(Tab::Cards)));
    }

    #[test]
    fn prices_screen_shows_prices_schedule_and_blacklist() {
        insta::assert_snapshot!(draw(&state(Tab::Prices)));
    }

    #[test]
    fn sync_screen_shows_links_and_usb_progress() {
        let mut s = state(Tab::Sync);
        s.progress = Some(420);
        s.busy = Some("syncing with the USB stick".into());
        insta::assert_snapshot!(draw(&s));
    }

    #[test]
    fn reports_screen_shows_chart_and_table() {
        insta::assert_snapshot!(draw(&state(Tab::Reports)));
    }

    #[test]
    fn help_overlay_lists_the_keys_of_the_screen() {
        let mut s = state(Tab::Sell);
        s.help = true;
        insta::assert_snapshot!(draw(&s));
    }

    #[test]
    fn the_filter_narrows_the_lists_and_shows_in_the_status_bar() {
        let mut s = state(Tab::Prices);
        s.filter = "diesel".into();
        let screen = draw(&s);
        assert!(
            screen.contains("0# diesel") && !screen.contains("Cola"),
            "{screen}"
        );
        assert!(screen.contains("filter 'diesel'"), "{screen}");
    }
}
