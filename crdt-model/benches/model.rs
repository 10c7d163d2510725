//! How fast a replica verifies and folds entries, and how long a price lookup takes.

use cardmesh_model::body::*;
use cardmesh_model::docs::discounts::{Discounts, TimeSlot};
use cardmesh_model::docs::pricebook::{PriceBook, Product};
use cardmesh_model::pricing::{QuoteRequest, quote};
use cardmesh_model::replica::Replica;
use cardmesh_model::*;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

const N: usize = 20_000;

fn cert(hq: &NodeKey, node: &NodeKey, site: &str, role: Role) -> Certificate {
    Certificate::issue(
        hq,
        CertRequest {
            network: NetworkId([7; 16]),
            network_name: "bench".into(),
            node: node.node_id(),
            site: site.parse().unwrap(),
            role,
            issued: Hlc::new(1, 0),
        },
    )
}

fn purchase(site: &SiteId, i: usize) -> Body {
    Body::Card(CardTxn {
        kind: TxnKind::Purchase,
        asn: CardAsn((i as u64 % 5000).to_be_bytes()),
        site: site.clone(),
        terminal: "000000000001".parse().unwrap(),
        operator: Some("op1".parse().unwrap()),
        business_day: BusinessDay {
            year: 2026,
            month: 11,
            day: 21,
        },
        card_time: CardTime([0x20, 0x26, 0x11, 0x21, 0x10, 0x00, 0x00]),
        card_counter: i as u16,
        term_seq: i as u32,
        amount: Money::from_fen(1250),
        balance_before: Money::from_fen(100_000),
        balance_after: Money::from_fen(98_750),
        mac1: [1; 4],
        mac2: [2; 4],
        tac: [3; 4],
        items: vec![LineItem {
            product: "cola".parse().unwrap(),
            quantity: Quantity::pieces(5),
            unit_price: Money::from_fen(250),
            paid_percent: 100,
            amount: Money::from_fen(1250),
        }],
        refers_to: None,
    })
}

fn ingest(c: &mut Criterion) {
    let hq = NodeKey::from_seed(&[1; 32]);
    let shop = NodeKey::from_seed(&[2; 32]);
    let site: SiteId = "shop-a".parse().unwrap();
    let certs = [
        cert(&hq, &hq, "hq", Role::Hq),
        cert(&hq, &shop, "shop-a", Role::Store),
    ];
    let fresh = || {
        let mut r = Replica::new(certs[0].clone()).unwrap();
        r.admit(certs[1].clone()).unwrap();
        r
    };
    let mut author = fresh();
    let mut entries = Vec::with_capacity(N);
    for i in 0..N {
        let body = if i % 10 == 9 {
            Body::Blacklist(BlacklistEvent::Block {
                asn: CardAsn((i as u64).to_be_bytes()),
                reason: BlockReason::Lost,
                operator: None,
            })
        } else {
            purchase(&site, i)
        };
        entries.push(author.append(&shop, Hlc::new(i as u64, 0), body).unwrap());
    }
    let encoded: Vec<Vec<u8>> = entries.iter().map(Entry::encode).collect();

    let mut g = c.benchmark_group("replica");
    g.throughput(Throughput::Elements(N as u64));
    g.sample_size(10);
    g.bench_function("verify_and_fold_batches_of_1000", |b| {
        b.iter_batched(
            || (fresh(), entries.clone()),
            |(mut r, es)| {
                for chunk in es.chunks(1000) {
                    let rep = r.ingest(chunk.to_vec());
                    assert_eq!(rep.applied, chunk.len());
                }
                r
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("decode_verify_and_fold_batches_of_1000", |b| {
        b.iter_batched(
            fresh,
            |mut r| {
                for chunk in encoded.chunks(1000) {
                    let es: Vec<Entry> = chunk.iter().map(|e| Entry::decode(e).unwrap()).collect();
                    r.ingest(es);
                }
                r
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();

    // One entry per ingest: every signature is verified on its own.
    let mut g = c.benchmark_group("replica_single");
    g.throughput(Throughput::Elements(2000));
    g.sample_size(10);
    g.bench_function("verify_and_fold_one_at_a_time", |b| {
        b.iter_batched(
            || (fresh(), entries[..2000].to_vec()),
            |(mut r, es)| {
                for e in es {
                    r.ingest([e]);
                }
                r
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn pricing(c: &mut Criterion) {
    let mut book = PriceBook::default();
    for p in 0..200 {
        let id: ProductId = format!("p{p}").parse().unwrap();
        book.products.insert(
            id.clone(),
            Product {
                name: format!("product {p}"),
                unit: "pc".into(),
                site_override: true,
            },
        );
        let s = book.prices.0.entry(id).or_default();
        for k in 0..20 {
            s.insert(k * 86_400_000, Money::from_fen(100 + k));
        }
    }
    let gold: MemberClass = "gold".parse().unwrap();
    let mut d = Discounts::default();
    let rules = d.rules.entry(gold.clone()).or_default();
    rules.insert(
        TimeSlot {
            start_min: 1320,
            end_min: 360,
        },
        90,
    );
    rules.insert(
        TimeSlot {
            start_min: 720,
            end_min: 840,
        },
        85,
    );
    d.points_per_yuan.insert(gold.clone(), 1);
    let product: ProductId = "p123".parse().unwrap();
    c.bench_function("price_quote", |b| {
        b.iter(|| {
            let req = QuoteRequest {
                product: black_box(&product),
                quantity: Quantity::from_milli(35_120),
                class: Some(&gold),
                at_ms: black_box(15 * 86_400_000 + 3_600_000),
                utc_offset_min: 480,
            };
            quote(&book, None, &d, &req).unwrap()
        })
    });
}

criterion_group!(benches, ingest, pricing);
criterion_main!(benches);
