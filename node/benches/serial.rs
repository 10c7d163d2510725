//! The links' figures. First the dial-up one: one store-day (2,000 card transactions
//! and 1,000 blacklist events) from a shop to HQ over the simulated 33.6 kbit/s modem,
//! through real ttys (socat) and iroh QUIC, and the bytes on the line per entry (the
//! issue's target: at most 60 s). Then entries/s of a sync session over iroh QUIC on
//! loopback, the LAN link with no line in the way. Plain timings, not criterion: each
//! run is one long session that cannot be repeated on the same stores.
//!
//! `CARDMESH_BENCH_DAY_TXNS` and `CARDMESH_BENCH_DAY_BLOCKS` change the day's size,
//! `CARDMESH_BENCH_IROH_N` the loopback run's (100,000 transactions by default).

use cardmesh_drivers::modem::pty::SocatPair;
use cardmesh_drivers::modem::sim::{Exchange, LineConfig};
use cardmesh_model::body::*;
use cardmesh_model::*;
use cardmesh_node::link::NodeSync;
use cardmesh_node::link::iroh::IrohLink;
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
    store_day_over_the_modem();
    iroh_on_loopback(env("CARDMESH_BENCH_IROH_N", 100_000));
}

/// HQ's and a shop's stores in `dir`, and the shop's key.
fn stores(dir: &std::path::Path, clock: &Arc<dyn Clock>) -> (Store, Store, NodeKey, NodeKey) {
    let (hq_key, shop_key) = (NodeKey::from_seed(&[1; 32]), NodeKey::from_seed(&[2; 32]));
    let hq_cert = cert(&hq_key, &hq_key, "hq", Role::Hq);
    let shop_cert = cert(&hq_key, &shop_key, "shop-a", Role::Store);
    let hq = Store::create(
        &dir.join("hq.redb"),
        hq_key.clone(),
        hq_cert.clone(),
        hq_cert.clone(),
        clock.clone(),
    )
    .expect("HQ store");
    let shop = Store::create(
        &dir.join("shop.redb"),
        shop_key.clone(),
        shop_cert,
        hq_cert,
        clock.clone(),
    )
    .expect("shop store");
    (hq, shop, hq_key, shop_key)
}

/// A shop's feed of `n` purchases, signed and stored in `shop`.
fn fill(shop: &Store, key: &NodeKey, n: u32) {
    let mut head = FeedHead::EMPTY;
    let mut batch = Vec::new();
    for i in 0..n {
        let e = Entry::create(key, head, Hlc::new(u64::from(i) + 1, 0), purchase(i));
        head = e.head();
        batch.push(e);
        if batch.len() == 10_000 || i + 1 == n {
            let report = shop
                .ingest(std::mem::take(&mut batch))
                .expect("shop ingest");
            assert!(report.rejected.is_empty(), "{:?}", report.rejected);
        }
    }
}

fn iroh_on_loopback(n: u32) {
    let tmp = tempfile::tempdir().expect("a temporary folder");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (hq, shop, hq_key, shop_key) = stores(tmp.path(), &clock);
    fill(&shop, &shop_key, n);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let loopback = "127.0.0.1:0".parse().expect("an address");
    let (o, took) = rt.block_on(async {
        let hq_link = IrohLink::bind(NodeSync::new(hq.clone(), hq_key), loopback, clock.clone())
            .await
            .expect("HQ's endpoint");
        let shop_link = IrohLink::bind(
            NodeSync::new(shop.clone(), shop_key),
            loopback,
            clock.clone(),
        )
        .await
        .expect("the shop's endpoint");
        let started = Instant::now();
        let o = shop_link
            .sync_with(hq.node_id(), hq_link.local_addrs()[0])
            .await
            .expect("the session");
        let took = started.elapsed();
        shop_link.shutdown().await;
        hq_link.shutdown().await;
        (o, took)
    });
    assert_eq!(o.stats.applied_by_peer, u64::from(n));
    assert_eq!(
        hq.version_vector().expect("HQ's vector"),
        shop.version_vector().expect("the shop's vector")
    );
    println!(
        "iroh bench: {n} transactions shop -> HQ over iroh QUIC on loopback in {:.2} s: {:.0} entries/s, {:.0} session bytes per entry",
        took.as_secs_f64(),
        f64::from(n) / took.as_secs_f64(),
        o.stats.bytes_sent as f64 / f64::from(n)
    );
}

fn store_day_over_the_modem() {
    let (txns, blocks) = (
        env("CARDMESH_BENCH_DAY_TXNS", 2_000),
        env("CARDMESH_BENCH_DAY_BLOCKS", 1_000),
    );
    let tmp = tempfile::tempdir().expect("a temporary folder");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (hq, shop, hq_key, shop_key) = stores(tmp.path(), &clock);
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
