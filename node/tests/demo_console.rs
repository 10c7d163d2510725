//! `cardmesh demo` as a person sees it: started in a real terminal (tmux), driven with
//! keys, read off the screen, and gone when quit.

use std::process::Command;
use std::time::{Duration, Instant};

fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux").args(args).output().expect("tmux runs");
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn screen(session: &str) -> String {
    tmux(&["capture-pane", "-p", "-t", session])
}

/// Waits until the screen shows `text` (the console redraws on its own schedule).
fn wait_for(session: &str, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
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

#[test]
fn the_demo_shows_every_node_syncs_on_request_and_quits_cleanly() {
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
        "110",
        "-y",
        "32",
        &cmd,
    ]);

    let s = wait_for(&session, "(hq at site hq)");
    assert!(s.contains("hq │ shop-1 │ shop-2 │ station-1"), "{s}");
    assert!(
        s.contains("0# diesel") && s.contains("7.89"),
        "prices are shown: {s}"
    );
    assert!(
        s.contains("1000000000000003"),
        "the lost card is on the blacklist: {s}"
    );

    tmux(&["send-keys", "-t", &session, "Right"]);
    let s = wait_for(&session, "(store at site shop-1)");
    assert!(
        s.contains("6 known, 1 blacklisted"),
        "shop-1 has HQ's cards and the block: {s}"
    );

    tmux(&["send-keys", "-t", &session, "s"]);
    wait_for(&session, "synced every pair over iroh");
    tmux(&["send-keys", "-t", &session, "?"]);
    wait_for(&session, "sync every node with every other");
    tmux(&["send-keys", "-t", &session, "?"]);
    tmux(&["send-keys", "-t", &session, "q"]);

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
}
