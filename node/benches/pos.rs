//! POS benchmark: purchases per second on one node with the software SAM and
//! in-process virtual cards, with 1 till and with 8 and 16 tills selling at once (their
//! store writes share group commits), and the p50/p99 latency of one purchase (measured
//! by hand: criterion reports means), alone and with every till busy. Each purchase is
//! the whole path: blacklist, registry, pricing, risk, intent (durable, carrying the
//! terminal sequence the SAM used), SAM MAC1, card debit, completion (durable): two
//! commits, shared with the other tills'.

#[path = "../tests/pos_support/mod.rs"]
mod pos_support;

use cardmesh_drivers::card::VirtualCard;
use cardmesh_drivers::epurse::EPurse;
use cardmesh_drivers::reader::MemoryReader;
use cardmesh_drivers::sam::SoftwareSam;
use cardmesh_drivers::types::Pin;
use cardmesh_model::Quantity;
use cardmesh_node::pos::seq::{IntentSeq, till_sam};
use cardmesh_node::pos::{BasketLine, Pos};
use cardmesh_node::store::Store;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pos_support::*;
use std::time::{Duration, Instant};

const TILL_COUNT: u32 = 16;
/// Customers (cards) each till serves in turn, so that no card's day grows unrealistic.
const CARDS_PER_TILL: u32 = 8;
/// Purchases each till makes per measured iteration.
const PER_TILL: u32 = 25;

struct Till {
    pos: Pos,
    sam: SoftwareSam<IntentSeq>,
    purses: Vec<EPurse<MemoryReader<VirtualCard>>>,
    next: usize,
}

fn tills(net: &Net, store: &Store, n: u32) -> Vec<Till> {
    let key = net.desk_key();
    (0..n)
        .map(|i| {
            let mut pos = Pos::open(store, &key, till(i), clock()).unwrap();
            pos.login(&"admin-1".parse().unwrap(), "5555").unwrap();
            // The frequency limit would flag every purchase after the 20th: lift it.
            pos.set_max_purchases_per_day(u32::MAX);
            let purses = (0..CARDS_PER_TILL)
                .map(|k| {
                    let n = 20 + i * CARDS_PER_TILL + k;
                    let mut purse = EPurse::new(MemoryReader::new(net.chip(
                        store,
                        n as u8,
                        true,
                        [0x20, 0x31, 0x12, 0x31],
                    )));
                    // 5,000.00 keeps the card buying 0.01 gum for the whole run.
                    pos.load(
                        &mut purse,
                        "5000".parse().unwrap(),
                        &Pin::parse(CARD_PIN).unwrap(),
                    )
                    .unwrap();
                    purse
                })
                .collect();
            Till {
                sam: till_sam(store, &key, till(i)).unwrap(),
                pos,
                purses,
                next: 0,
            }
        })
        .collect()
}

fn basket() -> Vec<BasketLine> {
    vec![BasketLine {
        product: "gum".parse().unwrap(),
        quantity: Quantity::pieces(1),
    }]
}

fn sell(t: &mut Till, basket: &[BasketLine]) {
    t.next = (t.next + 1) % t.purses.len();
    t.pos
        .purchase(&mut t.purses[t.next], &mut t.sam, basket, None)
        .unwrap();
}

fn percentiles(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let pct = |p: usize| samples[(samples.len() * p / 100).min(samples.len() - 1)];
    println!(
        "pos purchase latency, {label}: p50 {:?}, p99 {:?}, max {:?} ({} purchases)",
        pct(50),
        pct(99),
        samples[samples.len() - 1],
        samples.len()
    );
}

/// Every till sells `per_till` times at once; the latency of each purchase.
fn all_selling(all: &mut [Till], basket: &[BasketLine], per_till: u32) -> Vec<Duration> {
    std::thread::scope(|s| {
        let handles: Vec<_> = all
            .iter_mut()
            .map(|t| {
                s.spawn(move || {
                    (0..per_till)
                        .map(|_| {
                            let t0 = Instant::now();
                            sell(t, basket);
                            t0.elapsed()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

fn bench(c: &mut Criterion) {
    let net = Net::create();
    let store = net.desk();
    let mut all = tills(&net, &store, TILL_COUNT);
    let basket = basket();

    let alone: Vec<Duration> = (0..1000)
        .map(|_| {
            let t0 = Instant::now();
            sell(&mut all[0], &basket);
            t0.elapsed()
        })
        .collect();
    percentiles("1 till", alone);
    let t0 = Instant::now();
    let busy = all_selling(&mut all, &basket, 100);
    let wall = t0.elapsed();
    println!(
        "pos purchases, {TILL_COUNT} tills selling 100 each: {:.0}/s",
        busy.len() as f64 / wall.as_secs_f64()
    );
    percentiles(&format!("{TILL_COUNT} tills selling at once"), busy);

    let mut g = c.benchmark_group("pos");
    g.sample_size(10);
    g.throughput(Throughput::Elements(1));
    g.bench_function("purchase_1_till", |b| b.iter(|| sell(&mut all[0], &basket)));
    for tills in [8, TILL_COUNT] {
        g.throughput(Throughput::Elements(u64::from(tills * PER_TILL)));
        g.bench_function(format!("purchase_{tills}_tills"), |b| {
            b.iter(|| all_selling(&mut all[..tills as usize], &basket, PER_TILL))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
