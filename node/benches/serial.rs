//! The dial-up link's figure: one store-day (2,000 card transactions and 1,000
//! blacklist events) from a shop to HQ over the simulated 33.6 kbit/s modem, through
//! real ttys (socat) and iroh QUIC, and the bytes on the line per entry. A plain timing,
//! not criterion: one call takes about a minute and cannot be repeated on the same
//! stores. The target: at most 60 s.
//!
//! `CARDMESH_BENCH_DAY_TXNS` and `CARDMESH_BENCH_DAY_BLOCKS` change the day's size.

use cardmesh_drivers::modem::pty::SocatPair;
use cardmesh_drivers::modem::sim::{Exchange, LineConfig};
use cardmesh_model::body::*;
use cardmesh_model::*;
use cardmesh_node::link::NodeSync;
use cardmesh_node::link::serial::call;
use cardmesh_node::store::{Clock, Store, SystemClock};
mod support;

use std::sync::Arc;
use std::time::Instant;
use support::{cert, purchase};

fn block(i: u32) -> Body {
    let b = i.to_be_bytes();
    Body::Blacklist(BlacklistEvent::Block {
        asn: CardAsn([0x10, 0, 0, 1, b[0], b[1], b[2], b[3]]),
        reason: BlockReason::Lost,
        operator: None,
    })
}

fn env(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let (txns, blocks) = (
        env("CARDMESH_BENCH_DAY_TXNS", 2_000),
        env("CARDMESH_BENCH_DAY_BLOCKS", 1_000),
    );
    let tmp = tempfile::tempdir().expect("a temporary folder");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (hq_key, shop_key) = (NodeKey::from_seed(&[1; 32]), NodeKey::from_seed(&[2; 32]));
    let hq_cert = cert(&hq_key, &hq_key, "hq", Role::Hq);
    let shop_cert = cert(&hq_key, &shop_key, "shop-a", Role::Store);
    let hq = Store::create(
        &tmp.path().join("hq.redb"),
        hq_key.clone(),
        hq_cert.clone(),
        hq_cert.clone(),
        clock.clone(),
    )
    .expect("HQ store");
    let shop = Store::create(
        &tmp.path().join("shop.redb"),
        shop_key.clone(),
        shop_cert,
        hq_cert,
        clock.clone(),
    )
    .expect("shop store");
    let mut head = FeedHead::EMPTY;
    let mut day = Vec::new();
    for i in 0..txns + blocks {
        let body = if i % 3 == 2 && i / 3 < blocks {
            block(i)
        } else {
            purchase(i)
        };
        let e = Entry::create(&shop_key, head, Hlc::new(u64::from(i) + 1, 0), body);
        head = e.head();
        day.push(e);
    }
    let entries = day.len() as u64;
    let record_bytes: usize = day
        .iter()
        .map(|e| postcard::to_allocvec(e).expect("an entry encodes").len())
        .sum();
    let report = shop.ingest(day).expect("shop ingest");
    assert!(report.rejected.is_empty(), "{:?}", report.rejected);

    let shop_port = SocatPair::start(tmp.path(), "shop").expect("socat");
    let hq_port = SocatPair::start(tmp.path(), "hq").expect("socat");
    let mut exchange = Exchange::new(LineConfig::V34);
    exchange.install("100", shop_port.b()).expect("shop modem");
    exchange.install("200", hq_port.b()).expect("HQ modem");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let (hq_sync, shop_sync) = (NodeSync::new(hq, hq_key), NodeSync::new(shop, shop_key));
    let outcome = rt.block_on(async {
        let answering = {
            let (hq, port, clock) = (hq_sync.clone(), hq_port.a().to_string(), clock.clone());
            tokio::spawn(async move { call::answer(&hq, &port, clock, Some(1)).await })
        };
        let started = Instant::now();
        let o = call::dial(&shop_sync, shop_port.a(), "200", clock.as_ref())
            .await
            .expect("the call");
        let took = started.elapsed();
        answering.await.expect("the answerer").expect("answering");
        (o, took)
    });
    let (o, took) = outcome;
    assert_eq!(o.session.stats.applied_by_peer, entries);
    assert_eq!(
        hq_sync.store().version_vector().expect("HQ's vector"),
        shop_sync
            .store()
            .version_vector()
            .expect("the shop's vector")
    );
    let line = exchange.stats();
    println!(
        "serial bench: a store-day of {txns} transactions + {blocks} blacklist events over a 33.6 kbit/s modem: {:.1} s from dial to hang-up (target <= 60 s)",
        took.as_secs_f64()
    );
    println!(
        "serial bench: {} bytes on the line shop -> HQ ({:.0} per entry), {} HQ -> shop; session bytes sent {} ({:.0} per entry), encoded entries {:.0} bytes each; line efficiency {:.0}%",
        o.line.bytes_sent,
        o.line.bytes_sent as f64 / entries as f64,
        o.line.bytes_received,
        o.session.stats.bytes_sent,
        o.session.stats.bytes_sent as f64 / entries as f64,
        record_bytes as f64 / entries as f64,
        100.0 * o.line.bytes_sent as f64 / (took.as_secs_f64() * 3360.0),
    );
    println!(
        "serial bench: {} packets sent, {} frames dropped, exchange carried {} bytes in {} call(s)",
        o.line.packets_sent, o.line.frames_dropped, line.bytes_carried, line.calls
    );
}
