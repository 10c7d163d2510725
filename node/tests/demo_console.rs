//! `cardmesh demo` as a person sees it: started in a real terminal (tmux), driven with
//! keys, read off the screen, and gone when quit: log in at a shop, read a card, sell to
//! it, see its balance drop by the basket total, sync, and see the sale at HQ.

use std::process::Command;
use std::time::{Duration, Instant};

fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux").args(args).output().expect("tmux runs");
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn screen(session: &str) -> String {
    tmux(&["capture-pane", "-p", "-t", session])
}

/// What three colas cost a gold member now, and the discount shown. Within minutes of
/// a time slot's edge it waits the edge out, so the basket and the check agree.
fn gold_price_of_three_colas() -> (i64, &'static str) {
    loop {
        let unix_min = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            / 60;
        let local_min = (unix_min + 8 * 60) % (24 * 60);
        let near_edge = [6 * 60, 22 * 60]
            .iter()
            .any(|edge| local_min + 2 >= *edge && local_min <= *edge + 1);
        if near_edge {
            std::thread::sleep(Duration::from_secs(30));
            continue;
        }
        let night = !(6 * 60..22 * 60).contains(&local_min);
        return if night { (810, "-10%") } else { (855, "-5%") };
    }
}

/// Waits until the screen shows `text` (the console redraws on its own schedule).
fn wait_for(session: &str, text: &str) -> String {
    wait_within(session, text, Duration::from_secs(20))
}

fn wait_within(session: &str, text: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let s = screen(session);
        if s.contains(text) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "screen never showed {text:?}:\n{s}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Kills the tmux session even when an assertion fails, so no demo outlives the test.
struct Session(String);

impl Drop for Session {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

fn keys(session: &str, keys: &[&str]) {
    let mut args = vec!["send-keys", "-t", session];
    args.extend_from_slice(keys);
    tmux(&args);
}

/// Types `text` into the prompt and presses Enter.
fn type_line(session: &str, text: &str) {
    keys(session, &["-l", text]);
    keys(session, &["Enter"]);
}

/// The amount in yuan right after `label` on the screen ("balance 377.00" -> 37700 fen).
fn fen_after(screen: &str, label: &str) -> i64 {
    let at = screen
        .find(label)
        .unwrap_or_else(|| panic!("no {label:?} in:\n{screen}"));
    let text: String = screen[at + label.len()..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let (yuan, fen) = text.split_once('.').unwrap_or_else(|| panic!("{text:?}"));
    yuan.parse::<i64>().unwrap() * 100 + fen.parse::<i64>().unwrap()
}

fn yuan(fen: i64) -> String {
    format!("{}.{:02}", fen / 100, fen % 100)
}

/// Processes whose command line names `needle` (the demo's data folder).
fn processes_naming(needle: &str) -> Vec<String> {
    let out = Command::new("pgrep")
        .args(["-af", needle])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.contains("pgrep"))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_demo_sells_to_a_card_syncs_and_shows_the_sale_at_hq_then_quits_cleanly() {
    if Command::new("tmux").arg("-V").output().is_err() {
        assert!(
            std::env::var_os("CARDMESH_REQUIRE_HW").is_none(),
            "tmux is required (tests/system-packages installs it)"
        );
        eprintln!("skipping: tmux is not installed");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("demo");
    let guard = Session(format!("cardmesh-demo-{}", std::process::id()));
    let session = guard.0.clone();
    let cmd = format!(
        "{} demo --data {}",
        env!("CARGO_BIN_EXE_cardmesh"),
        data.display()
    );
    tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "120",
        "-y",
        "36",
        &cmd,
    ]);
    let s = wait_for(&session, "demo operators");
    assert!(s.contains("nobody is logged in"), "{s}");
    assert!(
        !s.contains("Dashboard"),
        "nothing but login before logging in: {s}"
    );

    // shop-1: a wrong PIN is refused in words, the right one opens the manager's tabs.
    keys(&session, &["n"]);
    wait_for(&session, "cardmesh · shop-1");
    keys(&session, &["Enter"]);
    type_line(&session, "shop1-mgr");
    type_line(&session, "0000");
    wait_for(&session, "wrong operator PIN for shop1-mgr");
    keys(&session, &["Enter"]);
    type_line(&session, "shop1-mgr");
    type_line(&session, "2222");
    let s = wait_for(&session, "shop1-mgr (manager)");
    assert!(
        s.contains("Blacklist & prices") && s.contains("Reports"),
        "{s}"
    );

    // Cards: present Zhang Wei's card and read its balance off the screen.
    keys(&session, &["4"]);
    wait_for(&session, "Zhang Wei (gold)");
    keys(&session, &["Enter"]);
    let s = wait_for(&session, "read: balance ");
    let before = fen_after(&s, "read: balance ");
    assert!(
        s.contains("purchase") && s.contains("load"),
        "the seeded history: {s}"
    );

    // Sell three colas (3.00 each) to it: gold members pay 95%, or 90% from 22:00 to
    // 06:00 at the sites (UTC+8).
    let (total, percent) = gold_price_of_three_colas();
    let sold = yuan(total);
    keys(&session, &["3"]);
    wait_for(&session, "Cola 330ml");
    keys(&session, &["+", "+", "+"]);
    // The basket is drawn after each key: wait for the third one's total.
    let s = wait_for(&session, &sold);
    assert!(s.contains(percent), "the basket with the discount: {s}");
    keys(&session, &["Enter"]);
    let after = before - total;
    let s = wait_for(
        &session,
        &format!("sold {sold}: balance {} -> {}", yuan(before), yuan(after)),
    );
    assert!(s.contains(&format!("total {sold}")), "the receipt: {s}");

    // The card itself says so too.
    keys(&session, &["4"]);
    keys(&session, &["Enter"]);
    wait_for(&session, &format!("read: balance {}", yuan(after)));

    // Sync, then HQ's dashboard shows the sale at shop-1's terminal, its only one today.
    keys(&session, &["s"]);
    wait_for(&session, "synced every pair over iroh");
    keys(&session, &["N"]);
    wait_for(&session, "cardmesh · hq");
    keys(&session, &["Enter"]);
    type_line(&session, "hq-admin");
    type_line(&session, "9999");
    let s = wait_for(&session, "000000000101");
    assert!(
        s.contains(&format!("000000000101  1      {sold}")),
        "one sale of {sold} at shop-1's terminal: {s}"
    );
    assert!(
        s.contains("links 4/4 ok"),
        "three iroh links and a dial-up line: {s}"
    );

    // HQ's admin issues the wallet's blank card to a customer.
    keys(&session, &["4"]);
    let s = wait_for(&session, "not issued (blank)");
    assert!(s.contains("1000000000000007"), "{s}");
    keys(
        &session,
        &["Down", "Down", "Down", "Down", "Down", "Down", "i"],
    );
    type_line(&session, "Ma Li");
    type_line(&session, "20");
    wait_for(
        &session,
        "issued card 1000000000000007 to Ma Li, deposit 20.00",
    );
    wait_for(&session, "1000000000000007  Ma Li");

    // From HQ's sync screen, the station calls HQ over the simulated dial-up line.
    keys(&session, &["6"]);
    let s = wait_for(&session, "station-1/modem");
    assert!(s.contains("dial-up (modem)"), "{s}");
    keys(&session, &["Down", "Down", "Down", "d"]);
    let s = wait_within(
        &session,
        "dial-up call 1: station-1 called hq",
        Duration::from_secs(90),
    );
    assert!(s.contains(" out, ") && s.contains(" bytes "), "{s}");

    keys(&session, &["?"]);
    wait_for(&session, "sync every link");
    keys(&session, &["?"]);
    keys(&session, &["q"]);

    let deadline = Instant::now() + Duration::from_secs(10);
    while Command::new("tmux")
        .args(["has-session", "-t", &session])
        .status()
        .unwrap()
        .success()
    {
        assert!(Instant::now() < deadline, "the demo did not exit on q");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        data.join("hq/store.redb").exists(),
        "the demo's stores stay on disk"
    );
    let left = processes_naming(&data.display().to_string());
    assert!(
        left.is_empty(),
        "nothing of the demo runs after q: {left:?}"
    );
}
