//! POS benchmark: purchases per second on one node with the software SAM and
//! in-process virtual cards, with 1 till and with 8 tills selling at once (their store
//! writes share group commits), and the p99 latency of one purchase on a till (measured
//! by hand: criterion reports means). Each purchase is the whole path: blacklist,
//! registry, pricing, risk, intent (durable), SAM MAC1 with a durable terminal
//! sequence, card debit, completion (durable).

#[path = "../tests/pos_support/mod.rs"]
mod pos_support;

use cardmesh_drivers::card::VirtualCard;
use cardmesh_drivers::epurse::EPurse;
use cardmesh_drivers::reader::MemoryReader;
use cardmesh_drivers::sam::SoftwareSam;
use cardmesh_drivers::types::Pin;
use cardmesh_model::Quantity;
use cardmesh_node::pos::{BasketLine, Pos};
use cardmesh_node::sam::{StoreSeq, software_sam};
use cardmesh_node::store::Store;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pos_support::*;
use std::time::{Duration, Instant};

const TILL_COUNT: u32 = 8;
/// Purchases each till makes per measured iteration.
const PER_TILL: u32 = 25;

struct Till {
    pos: Pos,
    sam: SoftwareSam<StoreSeq>,
    purse: EPurse<MemoryReader<VirtualCard>>,
}

fn tills(net: &Net, store: &Store, n: u32) -> Vec<Till> {
    let key = net.desk_key();
    (0..n)
        .map(|i| {
            let pos = Pos::open(store, &key, till(i), clock()).unwrap();
            pos.login(&"admin-1".parse().unwrap(), "5555").unwrap();
            let mut purse = EPurse::new(MemoryReader::new(net.chip(
                store,
                100 + i as u8,
                true,
                [0x20, 0x31, 0x12, 0x31],
            )));
            // Loads of 5,000.00 keep every till selling for the whole run.
            pos.load(
                &mut purse,
                "5000".parse().unwrap(),
                &Pin::parse(CARD_PIN).unwrap(),
            )
            .unwrap();
            Till {
                sam: software_sam(store, &key, till(i)).unwrap(),
                pos,
                purse,
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
    t.pos
        .purchase(&mut t.purse, &mut t.sam, basket, None)
        .unwrap();
}

fn bench(c: &mut Criterion) {
    let net = Net::create();
    let store = net.desk();
    let mut all = tills(&net, &store, TILL_COUNT);
    // A day's frequency limit would flag every purchase after the 20th: lift it.
    for t in &mut all {
        t.pos.set_max_purchases_per_day(u32::MAX);
    }
    let basket = basket();

    // p99 of one purchase on one till, by hand.
    let mut samples: Vec<Duration> = (0..1000)
        .map(|_| {
            let t0 = Instant::now();
            sell(&mut all[0], &basket);
            t0.elapsed()
        })
        .collect();
    samples.sort();
    let pct = |p: usize| samples[samples.len() * p / 100];
    println!(
        "pos purchase latency, 1 till: p50 {:?}, p99 {:?}, max {:?}",
        pct(50),
        pct(99),
        samples[samples.len() - 1]
    );

    let mut g = c.benchmark_group("pos");
    g.sample_size(10);
    g.throughput(Throughput::Elements(1));
    g.bench_function("purchase_1_till", |b| b.iter(|| sell(&mut all[0], &basket)));
    g.throughput(Throughput::Elements(u64::from(TILL_COUNT * PER_TILL)));
    g.bench_function("purchase_8_tills", |b| {
        b.iter(|| {
            std::thread::scope(|s| {
                for t in all.iter_mut() {
                    let basket = &basket;
                    s.spawn(move || {
                        for _ in 0..PER_TILL {
                            sell(t, basket);
                        }
                    });
                }
            })
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
