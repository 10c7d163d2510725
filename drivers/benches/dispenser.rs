//! Benchmarks of the fuel station's device lines: DART frame encode/decode, a stream
//! split into frames, ESC/POS receipt render/decode, and a status poll round trip to
//! the dispenser simulator over a socat pty (skipped with a message without socat).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cardmesh_drivers::dispenser::dart::{self, Address, Frame, Kind, Splitter};
use cardmesh_drivers::dispenser::driver::{DartConfig, DartDispenser, Parity};
use cardmesh_drivers::dispenser::sim::DispenserSimulator;
use cardmesh_drivers::dispenser::{Dispenser, NozzleConfig, NozzleNumber, PointState, PointStatus};
use cardmesh_drivers::printer::{PrinterConfig, Receipt, ReceiptLine, escpos};
use cardmesh_model::ids::ProductId;
use cardmesh_model::{Money, Quantity};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn status_frame() -> Frame {
    let s = PointStatus {
        state: PointState::Filling,
        nozzle: Some(NozzleNumber::new(2).unwrap()),
        nozzle_out: true,
        price: Some(Money::from_fen(810)),
        volume: Quantity::from_milli(24_691),
        amount: Money::from_fen(20_000),
        alarm: None,
    };
    Frame {
        address: Address::new(0x51).unwrap(),
        kind: Kind::Data,
        seq: 7,
        blocks: dart::status_blocks(&s, false),
    }
}

fn codec(c: &mut Criterion) {
    let f = status_frame();
    let raw = dart::encode(&f);
    let mut g = c.benchmark_group("dart");
    g.throughput(Throughput::Bytes(raw.len() as u64));
    g.bench_function("encode_status_frame", |b| b.iter(|| dart::encode(&f)));
    g.bench_function("decode_status_frame", |b| {
        b.iter(|| dart::decode(&raw).unwrap())
    });
    let stream: Vec<u8> = (0..1000).flat_map(|_| raw.clone()).collect();
    g.throughput(Throughput::Bytes(stream.len() as u64));
    g.bench_function("split_and_decode_1000_frames", |b| {
        b.iter(|| {
            let mut sp = Splitter::new();
            let mut n = 0;
            for &byte in &stream {
                if let Some(r) = sp.push(byte) {
                    dart::parse_status(&dart::decode(&r.unwrap()).unwrap().blocks).unwrap();
                    n += 1;
                }
            }
            assert_eq!(n, 1000);
        })
    });
    g.finish();
}

fn receipts(c: &mut Criterion) {
    let cfg = PrinterConfig {
        port: String::new(),
        baud: 9600,
        header: vec!["第一加油站".into(), "No.1 Fuel Station".into()],
        footer: vec!["谢谢惠顾".into()],
        width: 32,
    };
    let r = Receipt {
        items: vec![
            ReceiptLine::new("卡号 Card", "3100000000000042"),
            ReceiptLine::new("油品 Grade", "95号汽油"),
            ReceiptLine::new("升数 Litres", "24.691"),
            ReceiptLine::new("金额 Amount", "200.00"),
        ],
        balance_after: Some(Money::from_fen(123_456)),
        reprint: false,
    };
    let bytes = escpos::render(&cfg, &r);
    let mut g = c.benchmark_group("escpos");
    g.bench_function("render_receipt", |b| b.iter(|| escpos::render(&cfg, &r)));
    g.bench_function("decode_receipt", |b| {
        b.iter(|| escpos::decode(&bytes).unwrap())
    });
    g.finish();
}

struct Socat(Child);

impl Drop for Socat {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn pty_poll(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (host, dev): (PathBuf, PathBuf) = (dir.path().join("host"), dir.path().join("dev"));
    let child = Command::new("socat")
        .arg(format!("pty,raw,echo=0,link={}", host.display()))
        .arg(format!("pty,raw,echo=0,link={}", dev.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(child) = child else {
        eprintln!("skipping dart/status_poll_over_pty: socat is not installed");
        return;
    };
    let _socat = Socat(child);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !(host.exists() && dev.exists()) {
        assert!(Instant::now() < deadline, "socat did not create the ptys");
        std::thread::sleep(Duration::from_millis(5));
    }
    let port = serialport::new(dev.to_str().unwrap(), 9600)
        .timeout(Duration::from_millis(20))
        .open()
        .unwrap();
    let _sim = DispenserSimulator::spawn(port, Address::new(0x51).unwrap(), 1).unwrap();
    let mut pump = DartDispenser::open(&DartConfig {
        port: host.to_str().unwrap().into(),
        baud: 9600,
        parity: Parity::None,
        address: 0x51,
        nozzles: vec![NozzleConfig {
            nozzle: NozzleNumber::new(1).unwrap(),
            grade: ProductId::new("92").unwrap(),
        }],
        reply_timeout_ms: 500,
    })
    .unwrap();
    c.bench_function("dart/status_poll_over_pty", |b| {
        b.iter(|| pump.status().unwrap())
    });
}

criterion_group!(benches, codec, receipts, pty_poll);
criterion_main!(benches);
