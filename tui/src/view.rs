//! Rendering: a pure function from a `Screen` (plain data) to a frame.

use crate::nodes::NodeSummary;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Row, Table, Tabs};

/// What the console shows, as plain data.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Screen {
    pub tabs: Vec<String>,
    pub selected: usize,
    pub node: Option<NodeSummary>,
    pub message: String,
    pub help: bool,
}

const KEYS: &str = " Tab/←→ node   s sync all   r refresh   ? help   q quit ";

pub fn render(frame: &mut Frame, s: &Screen) {
    let [top, body, bar] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Min(5),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let tabs = Tabs::new(s.tabs.iter().map(String::as_str))
        .select(s.selected)
        .highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .block(Block::bordered().title(" cardmesh "));
    frame.render_widget(tabs, top);

    if let Some(n) = &s.node {
        node(frame, body, n);
    }
    let status = if s.message.is_empty() {
        KEYS.to_string()
    } else {
        format!(" {} |{KEYS}", s.message)
    };
    frame.render_widget(Paragraph::new(status).reversed(), bar);
    if s.help {
        help(frame, body);
    }
}

fn node(frame: &mut Frame, body: Rect, n: &NodeSummary) {
    let identity = [
        (
            "node",
            format!("{} ({} at site {})", n.node, n.role, n.site),
        ),
        ("network", n.network.clone()),
        (
            "store",
            format!("{} entries, {} KiB", n.total_entries, n.store_bytes / 1024),
        ),
        (
            "cards",
            format!("{} known, {} blacklisted", n.cards, n.blacklisted),
        ),
    ];
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(body);
    let [ident, feeds] = Layout::vertical([
        Constraint::Length(identity.len() as u16 + 2),
        Constraint::Min(3),
    ])
    .areas(left);
    let lines: Vec<Line> = identity
        .iter()
        .map(|(k, v)| {
            Line::from(vec![
                Span::from(format!("{k:<9}")).bold(),
                Span::from(v.as_str()),
            ])
        })
        .collect();
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" node ")),
        ident,
    );

    let rows = n.feeds.iter().map(|f| {
        let mark = if f.this_node { "*" } else { "" };
        Row::new(vec![
            format!("{}{mark}", f.node),
            f.role.to_string(),
            f.site.clone(),
            f.entries.to_string(),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(10),
            Constraint::Length(8),
            Constraint::Min(10),
            Constraint::Length(8),
        ],
    )
    .header(Row::new(vec!["node", "role", "site", "entries"]).bold())
    .block(Block::bordered().title(" members and feeds "));
    frame.render_widget(table, feeds);

    let [prices, blocked] =
        Layout::vertical([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(right);
    let rows = n.prices.iter().map(|p| {
        let price = p.price.map_or("no price".to_string(), |m| m.to_string());
        Row::new(vec![p.name.clone(), p.unit.clone(), price])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Min(10),
            Constraint::Length(6),
            Constraint::Length(10),
        ],
    )
    .header(Row::new(vec!["product", "unit", "price"]).bold())
    .block(Block::bordered().title(" prices now "));
    frame.render_widget(table, prices);
    let lines: Vec<Line> = if n.blocked.is_empty() {
        vec![Line::from("no card is blocked")]
    } else {
        n.blocked
            .iter()
            .map(|a| Line::from(a.to_string()))
            .collect()
    };
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" blacklist ")),
        blocked,
    );
}

fn help(frame: &mut Frame, area: Rect) {
    let text = vec![
        Line::from("Each tab is one node of the network, with its own store."),
        Line::from(""),
        Line::from("Tab, →  next node        Shift-Tab, ←  previous node"),
        Line::from("s       sync every node with every other"),
        Line::from("r       refresh from the stores"),
        Line::from("q, Esc  quit (stops every node)"),
        Line::from("?       close this help"),
    ];
    let w = area.width.min(60);
    let h = area.height.min(text.len() as u16 + 2);
    let popup = Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    };
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(text).block(Block::bordered().title(" help ")),
        popup,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodes::{FeedRow, PriceLine};
    use cardmesh_model::{CardAsn, Money, Role};
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    fn screen() -> Screen {
        let feed = |node: &str, role, site: &str, entries, this_node| FeedRow {
            node: node.into(),
            role,
            site: site.into(),
            entries,
            this_node,
        };
        let price = |name: &str, unit: &str, price| PriceLine {
            name: name.into(),
            unit: unit.into(),
            price,
        };
        Screen {
            tabs: vec!["hq".into(), "shop-1".into(), "station-1".into()],
            selected: 1,
            node: Some(NodeSummary {
                node: "3f2a9c01".into(),
                role: Role::Store,
                site: "shop-1".into(),
                network: "demo-chain".into(),
                total_entries: 42,
                store_bytes: 1 << 20,
                cards: 8,
                blacklisted: 1,
                feeds: vec![
                    feed("a1b2c3d4", Role::Hq, "hq", 30, false),
                    feed("3f2a9c01", Role::Store, "shop-1", 12, true),
                ],
                blocked: vec![CardAsn([0x10, 0, 0, 0, 0, 0, 0, 7])],
                prices: vec![
                    price("0# diesel", "L", Some(Money::from_fen(789))),
                    price("cola", "pc", None),
                ],
            }),
            message: "synced: 12 entries moved".into(),
            help: false,
        }
    }

    fn draw(s: &Screen) -> String {
        let mut t = Terminal::new(TestBackend::new(90, 20)).unwrap();
        t.draw(|f| render(f, s)).unwrap();
        format!("{}", t.backend())
    }

    #[test]
    fn status_screen_shows_node_feeds_prices_and_blacklist() {
        insta::assert_snapshot!(draw(&screen()));
    }

    #[test]
    fn help_overlay_lists_the_keys() {
        insta::assert_snapshot!(draw(&Screen {
            help: true,
            ..screen()
        }));
    }
}
