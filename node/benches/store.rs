//! Store benchmarks: durable appends with 1 and 16 concurrent callers (group commit),
//! ingest of 1000-entry batches, blacklist lookups among 1M blacklisted cards (with the
//! p99 measured by hand), and cold open of a store holding a year of one shop's
//! transactions (730k) besides that blacklist.
//!
//! The big fixture is built once per run, by ingesting a shop's signed feed in large
//! batches; it takes a minute or two in release.

use cardmesh_model::body::*;
use cardmesh_model::*;
use cardmesh_node::store::{Clock, Store, SystemClock};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const NETWORK: NetworkId = NetworkId([0x42; 16]);
const BLACKLISTED: u32 = 1_000_000;
const TRANSACTIONS: u32 = 730_000;
const FIXTURE_BATCH: usize = 10_000;

struct Net {
    hq: NodeKey,
    shop: NodeKey,
    hq_cert: Certificate,
    shop_cert: Certificate,
}

fn cert(hq: &NodeKey, node: &NodeKey, site: &str, role: Role) -> Certificate {
    Certificate::issue(
        hq,
        CertRequest {
            network: NETWORK,
            network_name: "bench".into(),
            node: node.node_id(),
            site: site.parse().unwrap(),
            role,
            issued: Hlc::new(1, 0),
        },
    )
}

impl Net {
    fn new() -> Net {
        let hq = NodeKey::from_seed(&[1; 32]);
        let shop = NodeKey::from_seed(&[2; 32]);
        Net {
            hq_cert: cert(&hq, &hq, "hq", Role::Hq),
            shop_cert: cert(&hq, &shop, "shop-a", Role::Store),
            hq,
            shop,
        }
    }

    fn hq_store(&self, path: &Path) -> Store {
        let store = Store::create(
            path,
            self.hq.clone(),
            self.hq_cert.clone(),
            self.hq_cert.clone(),
            clock(),
        )
        .unwrap();
        store.admit(self.shop_cert.clone()).unwrap();
        store
    }
}

fn clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

fn card(n: u32) -> CardAsn {
    let b = n.to_be_bytes();
    CardAsn([0x10, 0, 0, 0, b[0], b[1], b[2], b[3]])
}

fn block(asn: CardAsn) -> Body {
    Body::Blacklist(BlacklistEvent::Block {
        asn,
        reason: BlockReason::Lost,
        operator: None,
    })
}

fn purchase(n: u32) -> Body {
    Body::Card(CardTxn {
        kind: TxnKind::Purchase,
        asn: card(2_000_000 + n % 50_000),
        site: "shop-a".parse().unwrap(),
        terminal: TerminalId([0, 0, 0, 0, 0, (n % 12) as u8]),
        operator: Some("op1".parse().unwrap()),
        business_day: BusinessDay::of_instant(
            1_767_225_600_000 + i64::from(n / 2_000) * 86_400_000,
            480,
        ),
        card_time: CardTime([0x20, 0x26, 0x01, 0x01, 0x10, 0x00, 0x00]),
        card_counter: n as u16,
        term_seq: n,
        amount: Money::from_fen(1_000),
        balance_before: Money::from_fen(50_000),
        balance_after: Money::from_fen(49_000),
        mac1: [1, 2, 3, 4],
        mac2: [5, 6, 7, 8],
        tac: [9, 10, 11, 12],
        items: vec![LineItem {
            product: "diesel-0".parse().unwrap(),
            quantity: Quantity::from_milli(10_000),
            unit_price: Money::from_fen(100),
            paid_percent: 100,
            amount: Money::from_fen(1_000),
        }],
        refers_to: None,
    })
}

/// The shop's feed, signed entry by entry as the shop would write it.
struct Feed {
    key: NodeKey,
    head: FeedHead,
}

impl Feed {
    fn next(&mut self, body: Body) -> Entry {
        let e = Entry::create(&self.key, self.head, Hlc::new(self.head.seq + 1, 0), body);
        self.head = e.head();
        e
    }
}

/// A store holding 1M blacklisted cards and 730k card transactions.
fn build_fixture(path: &Path, net: &Net) -> Store {
    let started = Instant::now();
    let store = net.hq_store(path);
    let mut feed = Feed {
        key: net.shop.clone(),
        head: FeedHead::EMPTY,
    };
    let bodies = (0..BLACKLISTED)
        .map(|n| block(card(n)))
        .chain((0..TRANSACTIONS).map(purchase));
    let mut batch = Vec::with_capacity(FIXTURE_BATCH);
    for body in bodies {
        batch.push(feed.next(body));
        if batch.len() == FIXTURE_BATCH {
            let report = store.ingest(std::mem::take(&mut batch)).unwrap();
            assert!(report.rejected.is_empty());
        }
    }
    store.ingest(batch).unwrap();
    let stats = store.stats().unwrap();
    println!(
        "fixture: {} entries, {} blacklisted cards, {} MB, built in {:.1?}",
        stats.total_entries,
        stats.blacklisted,
        stats.file_bytes / 1_000_000,
        started.elapsed()
    );
    store
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn appends(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let net = Net::new();
    let store = net.hq_store(&dir.path().join("appends.redb"));
    let mut g = c.benchmark_group("durable append");
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    let mut n = 0;
    g.throughput(Throughput::Elements(1));
    g.bench_function("1 caller", |b| {
        b.iter(|| {
            n += 1;
            store.append_local(block(card(n))).unwrap()
        })
    });
    const THREADS: u32 = 16;
    const EACH: u32 = 20;
    g.throughput(Throughput::Elements(u64::from(THREADS * EACH)));
    g.bench_function("16 concurrent callers", |b| {
        b.iter(|| {
            n += THREADS * EACH;
            let base = n;
            std::thread::scope(|s| {
                for t in 0..THREADS {
                    let store = &store;
                    s.spawn(move || {
                        for i in 0..EACH {
                            store
                                .append_local(block(card(base + t * EACH + i)))
                                .unwrap();
                        }
                    });
                }
            })
        })
    });
    g.finish();
}

fn ingest(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let net = Net::new();
    let store = net.hq_store(&dir.path().join("ingest.redb"));
    let mut feed = Feed {
        key: net.shop.clone(),
        head: FeedHead::EMPTY,
    };
    let mut n = 0;
    let mut g = c.benchmark_group("ingest");
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    g.throughput(Throughput::Elements(1000));
    g.bench_function("batches of 1000 entries", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let batch: Vec<Entry> = (0..1000)
                    .map(|_| {
                        n += 1;
                        feed.next(if n % 3 == 0 {
                            block(card(n))
                        } else {
                            purchase(n)
                        })
                    })
                    .collect();
                let t = Instant::now();
                let report = store.ingest(batch).unwrap();
                spent += t.elapsed();
                assert_eq!(report.applied, 1000);
            }
            spent
        })
    });
    g.finish();
}

fn big_store(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let net = Net::new();
    let path = dir.path().join("year.redb");
    let store = build_fixture(&path, &net);

    // Half of the lookups hit a blacklisted card, half a clean one.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next_card = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        card((x % u64::from(2 * BLACKLISTED)) as u32)
    };
    let mut latencies = Vec::with_capacity(200_000);
    for _ in 0..200_000 {
        let asn = next_card();
        let t = Instant::now();
        let blocked = store.is_blocked(&asn).unwrap();
        latencies.push(t.elapsed());
        std::hint::black_box(blocked);
    }
    latencies.sort();
    println!(
        "is_blocked among 1M blacklisted cards: p50 {:?}, p99 {:?}, p99.9 {:?}, max {:?}",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        percentile(&latencies, 0.999),
        latencies[latencies.len() - 1]
    );
    latencies.clear();
    for _ in 0..200_000 {
        let asn = next_card();
        let t = Instant::now();
        let state = store.blacklist(&asn).unwrap();
        latencies.push(t.elapsed());
        std::hint::black_box(state);
    }
    latencies.sort();
    println!(
        "blacklist (full card state) among 1M: p50 {:?}, p99 {:?}, p99.9 {:?}",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        percentile(&latencies, 0.999)
    );

    let mut g = c.benchmark_group("1M blacklisted cards");
    g.bench_function("is_blocked", |b| {
        b.iter(|| store.is_blocked(&next_card()).unwrap())
    });
    g.bench_function("blacklist state", |b| {
        b.iter(|| store.blacklist(&next_card()).unwrap())
    });
    g.finish();
    drop(store);

    let mut g = c.benchmark_group("cold open");
    g.sample_size(10);
    g.bench_function("730k transactions + 1M blacklist", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let t = Instant::now();
                let store = Store::open(&path, net.hq.clone(), clock()).unwrap();
                std::hint::black_box(store.version_vector().unwrap());
                spent += t.elapsed();
                drop(store);
            }
            spent
        })
    });
    g.finish();
}

criterion_group!(benches, appends, ingest, big_store);
criterion_main!(benches);
