//! App state and input: keys map to actions, actions change the state, and the screen
//! is rebuilt from node summaries. The event loop owns the terminal.

use crate::nodes::Nodes;
use crate::view::{Screen, render};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    NextNode,
    PrevNode,
    SyncAll,
    Refresh,
    ToggleHelp,
    Quit,
}

pub fn action_for(key: KeyEvent) -> Option<Action> {
    if key.kind != KeyEventKind::Press {
        return None;
    }
    match key.code {
        KeyCode::Tab | KeyCode::Right => Some(Action::NextNode),
        KeyCode::BackTab | KeyCode::Left => Some(Action::PrevNode),
        KeyCode::Char('s') => Some(Action::SyncAll),
        KeyCode::Char('r') => Some(Action::Refresh),
        KeyCode::Char('?') => Some(Action::ToggleHelp),
        KeyCode::Char('q') | KeyCode::Esc => Some(Action::Quit),
        KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => Some(Action::Quit),
        _ => None,
    }
}

pub struct App {
    nodes: Box<dyn Nodes>,
    names: Vec<String>,
    selected: usize,
    help: bool,
    message: String,
    quit: bool,
    screen: Screen,
}

impl App {
    pub fn new(nodes: Box<dyn Nodes>) -> App {
        let names = nodes.names();
        let mut app = App {
            nodes,
            names,
            selected: 0,
            help: false,
            message: String::new(),
            quit: false,
            screen: Screen::default(),
        };
        app.refresh();
        app
    }

    pub fn screen(&self) -> &Screen {
        &self.screen
    }

    pub fn apply(&mut self, action: Action) {
        let n = self.names.len().max(1);
        match action {
            Action::NextNode => self.selected = (self.selected + 1) % n,
            Action::PrevNode => self.selected = (self.selected + n - 1) % n,
            Action::SyncAll => {
                self.message = self
                    .nodes
                    .sync_all()
                    .unwrap_or_else(|e| format!("sync failed: {e}"))
            }
            Action::Refresh => self.message.clear(),
            Action::ToggleHelp => self.help = !self.help,
            Action::Quit => self.quit = true,
        }
        self.refresh();
    }

    fn refresh(&mut self) {
        let mut screen = Screen {
            tabs: self.names.clone(),
            selected: self.selected,
            help: self.help,
            message: self.message.clone(),
            node: None,
        };
        if !self.names.is_empty() {
            match self.nodes.summary(self.selected) {
                Ok(s) => screen.node = Some(s),
                Err(e) => screen.message = format!("{}: {e}", self.names[self.selected]),
            }
        }
        self.screen = screen;
    }

    /// Runs the console until the user quits.
    pub fn run(mut self) -> std::io::Result<()> {
        let mut terminal = ratatui::init();
        let mut last_refresh = Instant::now();
        let result = loop {
            if let Err(e) = terminal.draw(|f| render(f, &self.screen)) {
                break Err(e);
            }
            if self.quit {
                break Ok(());
            }
            match event::poll(Duration::from_millis(250)) {
                Ok(true) => match event::read() {
                    Ok(Event::Key(k)) => {
                        if let Some(a) = action_for(k) {
                            self.apply(a);
                        }
                    }
                    Ok(_) => {}
                    Err(e) => break Err(e),
                },
                Ok(false) => {}
                Err(e) => break Err(e),
            }
            if last_refresh.elapsed() > Duration::from_secs(1) {
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

    #[test]
    fn keys_map_to_actions_and_others_are_ignored() {
        let k = |c| KeyEvent::new(c, KeyModifiers::NONE);
        assert_eq!(action_for(k(KeyCode::Tab)), Some(Action::NextNode));
        assert_eq!(action_for(k(KeyCode::Char('q'))), Some(Action::Quit));
        assert_eq!(
            action_for(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Some(Action::Quit)
        );
        assert_eq!(action_for(k(KeyCode::Char('x'))), None);
    }

    struct Fake(Vec<&'static str>);

    impl Nodes for Fake {
        fn names(&self) -> Vec<String> {
            self.0.iter().map(|s| s.to_string()).collect()
        }
        fn summary(&self, index: usize) -> Result<crate::NodeSummary, String> {
            Err(format!("store of {} is locked", self.0[index]))
        }
        fn sync_all(&self) -> Result<String, String> {
            Err("no link".into())
        }
    }

    #[test]
    fn node_selection_wraps_and_errors_are_shown_in_words() {
        let mut app = App::new(Box::new(Fake(vec!["hq", "shop-1", "shop-2"])));
        app.apply(Action::PrevNode);
        assert_eq!(app.screen().selected, 2);
        assert_eq!(app.screen().message, "shop-2: store of shop-2 is locked");
        app.apply(Action::NextNode);
        assert_eq!(app.screen().selected, 0);
        app.apply(Action::SyncAll);
        assert_eq!(app.screen().message, "hq: store of hq is locked");
    }
}
