//! The DART dispenser driver against the dispenser simulator over a real socat pty
//! pair: a full fill, stop mid-fill, a pump fault, the price at authorization holding,
//! and damaged frames on the line giving typed errors the driver recovers from.

#[path = "common/socat.rs"]
mod socat;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use cardmesh_drivers::dispenser::dart::{self, Address, DartError, Frame, Kind};
use cardmesh_drivers::dispenser::driver::{DartConfig, DartDispenser, Parity};
use cardmesh_drivers::dispenser::sim::{Damage, DispenserSimulator};
use cardmesh_drivers::dispenser::{
    Dispenser, DispenserError, DispenserStatus, GradePrices, NozzleConfig, NozzleNumber,
    PointState, Preset,
};
use cardmesh_model::ids::ProductId;
use cardmesh_model::{Money, Quantity};
use socat::PtyPair;

const ADDRESS: u8 = 0x51;

fn grade(s: &str) -> ProductId {
    ProductId::new(s).unwrap()
}

fn config(pair: &PtyPair, address: u8) -> DartConfig {
    DartConfig {
        port: pair.host.to_str().unwrap().to_string(),
        baud: 9600,
        parity: Parity::Odd,
        address,
        nozzles: vec![
            NozzleConfig {
                nozzle: NozzleNumber::new(1).unwrap(),
                grade: grade("92"),
            },
            NozzleConfig {
                nozzle: NozzleNumber::new(2).unwrap(),
                grade: grade("95"),
            },
        ],
        reply_timeout_ms: 300,
    }
}

/// A simulated pump on the device end of a pty pair and the driver on the host end,
/// opened by path from its config as the station would.
fn station() -> (PtyPair, DispenserSimulator, DartDispenser) {
    let pair = PtyPair::new();
    let sim =
        DispenserSimulator::spawn(pair.open_device(), Address::new(ADDRESS).unwrap(), 2).unwrap();
    let pump = DartDispenser::open(&config(&pair, ADDRESS)).unwrap();
    (pair, sim, pump)
}

fn prices(p92: i64, p95: i64) -> GradePrices {
    [
        (grade("92"), Money::from_fen(p92)),
        (grade("95"), Money::from_fen(p95)),
    ]
    .into_iter()
    .collect()
}

/// Polls the pump until `done` holds.
fn wait_for(pump: &mut DartDispenser, done: impl Fn(&DispenserStatus) -> bool) -> DispenserStatus {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = pump.status().unwrap();
        if done(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "pump never got there: {s:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn full_fill_with_an_amount_preset() {
    let (_pair, sim, mut pump) = station();
    assert_eq!(pump.status().unwrap().point.state, PointState::Idle);
    sim.lift(2).unwrap();
    let s = pump.status().unwrap();
    assert_eq!(s.point.state, PointState::Calling);
    assert_eq!(s.grade, Some(grade("95")));

    let auth = pump
        .authorize(Preset::Amount(Money::from_fen(20_000)), &prices(750, 810))
        .unwrap();
    assert_eq!(
        auth.for_nozzle(NozzleNumber::new(2).unwrap()),
        Some((&grade("95"), Money::from_fen(810)))
    );
    assert_eq!(pump.status().unwrap().point.state, PointState::Authorized);

    sim.pump(10_000).unwrap();
    let live = pump.status().unwrap();
    assert_eq!(live.point.state, PointState::Filling);
    assert_eq!(live.point.volume, Quantity::from_milli(10_000));
    assert_eq!(live.point.amount, Money::from_fen(8_100));

    // Then at a rate until the preset of 200.00 stops the pump by itself.
    sim.start_flow(20_000);
    let done = wait_for(&mut pump, |s| s.point.state == PointState::Completed);
    // 200.00 / 8.10 = 24.691 litres, the most whose amount stays within 200.00.
    assert_eq!(done.point.volume, Quantity::from_milli(24_691));
    assert_eq!(done.point.amount, Money::from_fen(20_000));
    assert!(done.point.nozzle_out);
    sim.hang_up().unwrap();
    let s = pump.status().unwrap();
    assert_eq!(
        (s.point.state, s.point.nozzle_out, s.point.volume),
        (PointState::Completed, false, Quantity::from_milli(24_691))
    );
    pump.reset().unwrap();
    assert_eq!(pump.status().unwrap().point.state, PointState::Idle);
}

#[test]
fn hanging_up_completes_the_fill_with_what_was_delivered() {
    let (_pair, sim, mut pump) = station();
    pump.authorize(
        Preset::Volume(Quantity::from_milli(400_000)),
        &prices(750, 810),
    )
    .unwrap();
    sim.lift(1).unwrap();
    sim.start_flow(25_000);
    wait_for(&mut pump, |s| s.point.volume.milli() >= 5_000);
    sim.hang_up().unwrap();
    let s = pump.status().unwrap();
    assert_eq!(s.point.state, PointState::Completed);
    assert_eq!(s.grade, Some(grade("92")));
    let v = s.point.volume;
    assert!(v.milli() >= 5_000 && v.milli() < 400_000, "{v}");
    assert_eq!(
        s.point.amount,
        Money::from_fen(750).times_quantity(v).unwrap()
    );
}

#[test]
fn stop_mid_fill_keeps_the_delivered_volume() {
    let (_pair, sim, mut pump) = station();
    sim.lift(1).unwrap();
    pump.authorize(
        Preset::Volume(Quantity::from_milli(500_000)),
        &prices(750, 810),
    )
    .unwrap();
    sim.start_flow(20_000);
    wait_for(&mut pump, |s| s.point.volume.milli() > 1_000);
    pump.stop().unwrap();
    let stopped = pump.status().unwrap();
    assert_eq!(stopped.point.state, PointState::Completed);
    assert!(stopped.point.volume.milli() < 500_000);
    // Nothing more flows after STOP.
    assert!(sim.pump(1_000).is_err());
    std::thread::sleep(Duration::from_millis(60));
    assert_eq!(pump.status().unwrap().point.volume, stopped.point.volume);
    assert_eq!(
        stopped.point.amount,
        Money::from_fen(750)
            .times_quantity(stopped.point.volume)
            .unwrap()
    );
    // A second STOP has nothing to stop.
    assert!(matches!(pump.stop(), Err(DispenserError::Refused("stop"))));
}

#[test]
fn pump_fault_reports_error_with_the_delivered_totals() {
    let (_pair, sim, mut pump) = station();
    sim.lift(2).unwrap();
    pump.authorize(Preset::Amount(Money::from_fen(30_000)), &prices(750, 810))
        .unwrap();
    sim.pump(3_000).unwrap();
    sim.fault(0x21);
    let s = pump.status().unwrap();
    assert_eq!(s.point.state, PointState::Error);
    assert_eq!(s.point.alarm, Some(0x21));
    assert_eq!(s.point.volume, Quantity::from_milli(3_000));
    assert_eq!(s.point.amount, Money::from_fen(2_430));
    // A faulted pump cannot be authorized again until reset, which clears the fault.
    assert!(pump.stop().is_err());
    pump.reset().unwrap();
    let s = pump.status().unwrap();
    assert_eq!((s.point.state, s.point.alarm), (PointState::Calling, None));
}

#[test]
fn price_at_authorization_holds_while_filling() {
    let (_pair, sim, mut pump) = station();
    sim.lift(1).unwrap();
    pump.authorize(Preset::Amount(Money::from_fen(50_000)), &prices(750, 810))
        .unwrap();
    sim.pump(10_000).unwrap();
    // The station reprices 92 mid-fill: the pump refuses a new authorization while
    // filling, and the fill keeps its price.
    let e = pump
        .authorize(Preset::Amount(Money::from_fen(50_000)), &prices(799, 810))
        .unwrap_err();
    assert!(matches!(e, DispenserError::Refused("reset")), "{e:?}");
    sim.pump(10_000).unwrap();
    let s = pump.status().unwrap();
    assert_eq!(s.point.price, Some(Money::from_fen(750)));
    assert_eq!(s.point.amount, Money::from_fen(15_000));
}

#[test]
fn authorize_needs_a_priced_grade() {
    let (_pair, _sim, mut pump) = station();
    let only_diesel: GradePrices = [(grade("0-diesel"), Money::from_fen(700))].into();
    assert!(matches!(
        pump.authorize(Preset::Amount(Money::from_fen(100)), &only_diesel),
        Err(DispenserError::NoPricedNozzle)
    ));
    assert_eq!(pump.status().unwrap().point.state, PointState::Idle);
}

#[test]
fn damaged_replies_are_typed_errors_and_the_driver_recovers() {
    let (_pair, sim, mut pump) = station();
    sim.lift(1).unwrap();
    sim.damage_next_reply(Damage::Crc);
    let e = pump.status().unwrap_err();
    assert!(
        matches!(e, DispenserError::Frame(DartError::Crc { .. })),
        "{e:?}"
    );
    assert_eq!(pump.status().unwrap().point.state, PointState::Calling);

    sim.damage_next_reply(Damage::Truncate);
    let e = pump.status().unwrap_err();
    assert!(
        matches!(e, DispenserError::Frame(DartError::Truncated { got }) if got > 0),
        "{e:?}"
    );
    // A lost ACK: the command was applied, a fresh status tells.
    sim.damage_next_reply(Damage::Truncate);
    assert!(pump.reset().is_err());
    let s = pump.status().unwrap();
    assert_eq!(s.point.state, PointState::Calling);
    pump.authorize(
        Preset::Volume(Quantity::from_milli(1_000)),
        &prices(750, 810),
    )
    .unwrap();
    assert_eq!(pump.status().unwrap().point.state, PointState::Authorized);
}

#[test]
fn the_pump_ignores_damaged_requests_and_answers_the_next_good_one() {
    let pair = PtyPair::new();
    let sim =
        DispenserSimulator::spawn(pair.open_device(), Address::new(ADDRESS).unwrap(), 2).unwrap();
    let mut host = serialport::new(pair.host.to_str().unwrap(), 9600)
        .timeout(Duration::from_millis(200))
        .open()
        .unwrap();
    let poll = dart::encode(&Frame {
        address: Address::new(ADDRESS).unwrap(),
        kind: Kind::Poll,
        seq: 1,
        blocks: Vec::new(),
    });
    let mut bad = poll.clone();
    bad[1] ^= 0x04;
    host.write_all(&bad).unwrap();
    let mut buf = [0u8; 64];
    assert!(host.read(&mut buf).is_err(), "no answer to a damaged frame");
    assert_eq!(sim.line_errors(), 1);
    host.write_all(&poll).unwrap();
    let mut got = Vec::new();
    while got.last() != Some(&dart::SF) {
        let n = host.read(&mut buf).unwrap();
        got.extend_from_slice(&buf[..n]);
    }
    let reply = dart::decode(&got).unwrap();
    assert_eq!((reply.kind, reply.seq), (Kind::Data, 1));
}

#[test]
fn a_pump_at_another_address_is_a_clear_timeout() {
    let pair = PtyPair::new();
    let _sim =
        DispenserSimulator::spawn(pair.open_device(), Address::new(ADDRESS).unwrap(), 2).unwrap();
    let mut pump = DartDispenser::open(&config(&pair, 0x52)).unwrap();
    let e = pump.status().unwrap_err();
    assert!(matches!(e, DispenserError::Timeout(0x52)), "{e:?}");
    assert!(e.to_string().contains("did not answer"));
}

#[test]
fn a_missing_port_is_a_clear_error() {
    let mut cfg = config(&PtyPair::new(), ADDRESS);
    cfg.port = "/dev/cardmesh-no-such-port".into();
    let e = DartDispenser::open(&cfg).unwrap_err();
    assert!(matches!(e, DispenserError::Open { .. }), "{e:?}");
    assert!(e.to_string().contains("/dev/cardmesh-no-such-port"));
}
