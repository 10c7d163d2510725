//! Station benchmark: one card fill end to end on a running station, over real ptys —
//! card presented -> blacklist and grey-status checks -> grey lock (durable) -> pump
//! authorized over DART -> 0.1 L delivered -> nozzle hung up -> debit for unlock
//! (durable) -> receipt printed and decoded at the printer's end. Also the two waits a
//! customer feels, by hand (criterion reports the whole cycle): card to pump
//! authorized, and nozzle hung up to receipt. The worker polls card and pump every 20
//! ms, which bounds both from below.

#[path = "../tests/station_support/mod.rs"]
mod station_support;

use cardmesh_drivers::card::VirtualCard;
use cardmesh_drivers::dispenser::PointState;
use cardmesh_node::station::Station;
use criterion::{Criterion, criterion_group, criterion_main};
use station_support::*;
use std::time::{Duration, Instant};

/// One fill; returns the card and the two waits.
fn fill(rig: &Rig, station: &Station, chip: VirtualCard) -> (VirtualCard, Duration, Duration) {
    let start = Instant::now();
    rig.slot.insert(chip);
    while rig.sim.status().state != PointState::Authorized {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "never authorized"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let authorized = start.elapsed();
    rig.sim.lift(1).unwrap();
    rig.sim.pump(100).unwrap();
    let hung_up = Instant::now();
    rig.sim.hang_up().unwrap();
    rig.receipt();
    let printed = hung_up.elapsed();
    let chip = rig.slot.remove();
    wait(station, "the card seen gone", |p| p.card.is_none());
    (chip, authorized, printed)
}

fn bench(c: &mut Criterion) {
    let (net, desk) = fuel_net();
    let key = net.desk_key();
    let mut chip = Some(loaded_card(&net, &desk, 7, "900"));
    login(&desk, &key, terminal_1(), CASHIER_1);
    let rig = Rig::new(net.tmp.path(), "bench", terminal_1());
    let station = rig.start(&desk, &key);

    let (mut to_pump, mut to_receipt) = (Vec::new(), Vec::new());
    for _ in 0..30 {
        let (back, a, p) = fill(&rig, &station, chip.take().unwrap());
        chip = Some(back);
        to_pump.push(a);
        to_receipt.push(p);
    }
    to_pump.sort();
    to_receipt.sort();
    println!(
        "station: card to pump authorized p50 {:?} p90 {:?}; hang-up to receipt p50 {:?} p90 {:?} (30 fills)",
        to_pump[15], to_pump[27], to_receipt[15], to_receipt[27]
    );

    let mut g = c.benchmark_group("station");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.bench_function("card_fill_end_to_end", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let (back, _, _) = fill(&rig, &station, chip.take().unwrap());
                chip = Some(back);
            }
            start.elapsed()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
