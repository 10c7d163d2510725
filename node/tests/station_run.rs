//! `cardmesh run` on a node whose config.toml has a `[station]` section runs the station
//! in the background, as a user starts it: the card is a virtual chip in vpcd's slot
//! read through real pcscd, the pump and the printer are at the far ends of socat ptys.

mod station_support;

use cardmesh_drivers::dispenser::PointState;
use cardmesh_drivers::vpcd::{CARD_READER_NAME, CARD_SLOT, VpcdBridge, VpcdSlots};
use cardmesh_model::body::{Body, TxnKind};
use cardmesh_node::config;
use station_support::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A config.toml whose station is `rig`'s, with `extra` lines in `[station]`.
fn station_toml(rig: &Rig, extra: &str) -> String {
    let point = &rig.config.devices.points[0];
    let printer = rig.config.devices.printer.as_ref().unwrap();
    format!(
        r#"[sync]
listen = "127.0.0.1:0"

[station]
terminals = ["{terminal}"]
{extra}

[[station.points]]
port = "{pump}"
address = 0x50
reply_timeout_ms = 300
nozzles = [{{ nozzle = 1, grade = "92" }}, {{ nozzle = 2, grade = "95" }}]

[station.printer]
port = "{printer}"
header = ["{HEADER}"]
footer = ["{FOOTER}"]
"#,
        terminal = terminal_1(),
        pump = point.port,
        printer = printer.port,
    )
}

#[test]
fn station_check_names_each_device_and_what_it_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let rig = Rig::new(tmp.path(), "chk", terminal_1());
    rig.sim.lift(1).unwrap();
    let config = tmp.path().join(config::FILE);
    std::fs::write(&config, station_toml(&rig, "")).unwrap();
    let check = || {
        Command::new(cardmesh())
            .args(["station", "check", "--data"])
            .arg(tmp.path())
            .output()
            .unwrap()
    };
    let out = check();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "point 1: terminal {}, {} at 9600 baud, address 0x50, nozzles 1=92 2=95, no reader configured: nozzle 1 (92) calling",
            terminal_1(),
            rig.config.devices.points[0].port
        )),
        "{stdout}"
    );
    assert!(stdout.contains("32 columns: port open"), "{stdout}");
    assert!(
        stdout.contains("most one fill may cost: 1000.00"),
        "{stdout}"
    );

    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("address = 0x50", "address = 0x51")).unwrap();
    let out = check();
    let (stdout, stderr) = (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    );
    assert!(!out.status.success());
    assert!(stdout.contains("NOT ANSWERING"), "{stdout}");
    assert!(stderr.contains("did not answer"), "{stderr}");
}

#[test]
fn cardmesh_run_starts_the_station_of_its_config_and_fills_through_pcscd() {
    let Some(_slots) = VpcdSlots::for_test() else {
        return;
    };
    let (net, desk) = fuel_net();
    let key = net.desk_key();
    let chip = loaded_card(&net, &desk, 7, "500");
    login(&desk, &key, terminal_1(), CASHIER_1);
    drop(desk);
    let rig = Rig::new(net.tmp.path(), "st1", terminal_1());
    std::fs::write(
        net.desk_dir.path().join(config::FILE),
        station_toml(&rig, &format!("readers = [\"{CARD_READER_NAME}\"]")),
    )
    .unwrap();

    let log = net.tmp.path().join("node.log");
    let mut node = Command::new(cardmesh())
        .args(["run", "--headless", "--data"])
        .arg(net.desk_dir.path())
        .env("RUST_LOG", "info,cardmesh_node=debug")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let first = BufReader::new(node.stdout.take().unwrap())
        .lines()
        .next()
        .unwrap()
        .unwrap();
    assert!(first.contains("fuel station started"), "{first}");
    // Nobody reads the node's stdout from here on, as when its terminal is closed:
    // the station must go on serving all the same.

    let card = VpcdBridge::insert(chip, CARD_SLOT).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while rig.sim.status().state != PointState::Authorized {
        assert!(
            Instant::now() < deadline,
            "the pump was never authorized; the node said:\n{}",
            std::fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    rig.sim.lift(1).unwrap();
    rig.sim.pump(10_000).unwrap();
    rig.sim.hang_up().unwrap();
    let r = rig.receipt();
    assert!(line(&r, "金额 Amount").ends_with("75.00"), "{}", r.text());
    assert!(
        line(&r, "卡余额 Balance").ends_with("425.00"),
        "{}",
        r.text()
    );
    node.kill().unwrap();
    node.wait().unwrap();

    assert_eq!(card.remove().balance(), 42_500);
    let desk = net.desk();
    let unlocks: Vec<_> = desk
        .card_history(&asn(7))
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.body {
            Body::Card(t) if t.kind == TxnKind::DebitForUnlock => Some(t.amount),
            _ => None,
        })
        .collect();
    assert_eq!(unlocks, vec!["75.00".parse().unwrap()]);
}
