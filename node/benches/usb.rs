//! USB stick throughput: a shop writes its feed of N card transactions to a stick, then
//! HQ ingests them from the stick's segments (the target: 1M in at most 10 s).
//! A plain timing, not criterion: each phase is one long, stateful run that cannot be
//! repeated on the same store.
//!
//! N is 200,000 by default (signing and building the shop's store take longer than the
//! measured part); set `CARDMESH_BENCH_STICK_N=1000000` for the full figure.

use cardmesh_model::*;
use cardmesh_node::identity::NetworkKey;
use cardmesh_node::store::{Clock, Store, SystemClock};
use cardmesh_node::usb::sync_stick;
mod support;

use std::sync::Arc;
use std::time::Instant;
use support::{cert, purchase};

const BUILD_BATCH: usize = 10_000;

fn main() {
    let n: u32 = std::env::var("CARDMESH_BENCH_STICK_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let tmp = tempfile::tempdir().expect("a temporary folder");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (hq_key, shop_key) = (NodeKey::from_seed(&[1; 32]), NodeKey::from_seed(&[2; 32]));
    let hq_cert = cert(&hq_key, &hq_key, "hq", Role::Hq);
    let shop_cert = cert(&hq_key, &shop_key, "shop-a", Role::Store);
    let network_key = NetworkKey([9; 32]);
    let hq = Store::create(
        &tmp.path().join("hq.redb"),
        hq_key,
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
        clock,
    )
    .expect("shop store");

    let started = Instant::now();
    let mut head = FeedHead::EMPTY;
    let mut batch = Vec::with_capacity(BUILD_BATCH);
    for i in 1..=n {
        let e = Entry::create(&shop_key, head, Hlc::new(u64::from(i), 0), purchase(i));
        head = e.head();
        batch.push(e);
        if batch.len() == BUILD_BATCH || i == n {
            let report = shop
                .ingest(std::mem::take(&mut batch))
                .expect("shop ingest");
            assert!(report.rejected.is_empty(), "{:?}", report.rejected);
        }
    }
    println!(
        "usb bench: shop feed of {n} transactions built in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let stick = tmp.path().join("stick");
    let started = Instant::now();
    let out = sync_stick(&shop, &network_key, &stick, u64::MAX, &mut |_| {}).expect("shop sync");
    let write = started.elapsed().as_secs_f64();
    assert_eq!(out.written_out, u64::from(n));
    println!(
        "usb bench: shop -> stick: {n} entries in {write:.2} s ({:.0} entries/s), {} segments, {:.1} MB ({:.0} bytes/entry)",
        f64::from(n) / write,
        out.segments_written,
        out.bytes_written as f64 / 1e6,
        out.bytes_written as f64 / f64::from(n)
    );

    let started = Instant::now();
    let into = sync_stick(&hq, &network_key, &stick, 0, &mut |_| {}).expect("HQ sync");
    let ingest = started.elapsed().as_secs_f64();
    assert_eq!(into.taken_in, u64::from(n));
    assert!(into.skipped.is_empty(), "{:?}", into.skipped);
    let rate = f64::from(n) / ingest;
    println!(
        "usb bench: stick -> HQ ingest: {n} entries in {ingest:.2} s ({rate:.0} entries/s; 1M would take {:.1} s, target <= 10 s)",
        1e6 / rate
    );
}
