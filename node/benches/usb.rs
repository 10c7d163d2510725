//! USB stick throughput: a shop writes its feed of N card transactions to a stick, then
//! HQ ingests them from the stick's segments (the target: 1M in at most 10 s).
//! A plain timing, not criterion: each phase is one long, stateful run that cannot be
//! repeated on the same store.
//!
//! N is 200,000 by default (signing and building the shop's store take longer than the
//! measured part); set `CARDMESH_BENCH_STICK_N=1000000` for the full figure. With
//! `CARDMESH_BENCH_STICK_KEEP=DIR` the shop's stick is kept in DIR and a later run with
//! the same N ingests a copy of it, so that it measures only HQ's part: this VM runs
//! slower for a while after minutes of load, and building 1M entries is such a load.

use cardmesh_model::*;
use cardmesh_node::identity::NetworkKey;
use cardmesh_node::store::{Clock, Store, SystemClock};
use cardmesh_node::usb::sync_stick;
mod support;

use std::path::Path;
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
    let network_key = NetworkKey([9; 32]);
    let hq = Store::create(
        &tmp.path().join("hq.redb"),
        hq_key.clone(),
        hq_cert.clone(),
        hq_cert.clone(),
        clock.clone(),
    )
    .expect("HQ store");

    let stick = tmp.path().join("stick");
    let shop_cert = cert(&hq_key, &shop_key, "shop-a", Role::Store);
    let shop_path = tmp.path().join("shop.redb");
    let write_stick = |to: &Path| {
        write_shop_stick(
            n,
            &shop_path,
            &shop_key,
            &shop_cert,
            &hq_cert,
            &network_key,
            to,
        )
    };
    match std::env::var_os("CARDMESH_BENCH_STICK_KEEP") {
        Some(keep) => {
            let kept = Path::new(&keep).join(format!("stick-{n}"));
            if !kept.exists() {
                let building = Path::new(&keep).join(format!("stick-{n}.part"));
                let _ = std::fs::remove_dir_all(&building);
                write_stick(&building);
                std::fs::rename(&building, &kept).expect("keep the stick");
            }
            copy_dir(&kept, &stick);
            println!("usb bench: a copy of the stick kept in {}", kept.display());
        }
        None => write_stick(&stick),
    }

    let (started, cpu) = (Instant::now(), cpu_seconds());
    let into = sync_stick(&hq, &network_key, &stick, 0, &mut |_| {}).expect("HQ sync");
    let (ingest, cpu) = (started.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    assert_eq!(into.taken_in, u64::from(n));
    assert!(into.skipped.is_empty(), "{:?}", into.skipped);
    let rate = f64::from(n) / ingest;
    println!(
        "usb bench: stick -> HQ ingest: {n} entries in {ingest:.2} s, {cpu:.2} s of CPU on all threads ({rate:.0} entries/s; 1M would take {:.1} s, target <= 10 s)",
        1e6 / rate
    );
}

/// Builds the shop's store of `n` purchases and writes its feed to a stick at `stick`.
fn write_shop_stick(
    n: u32,
    path: &Path,
    shop_key: &NodeKey,
    shop_cert: &Certificate,
    hq_cert: &Certificate,
    network_key: &NetworkKey,
    stick: &Path,
) {
    let shop = Store::create(
        path,
        shop_key.clone(),
        shop_cert.clone(),
        hq_cert.clone(),
        Arc::new(SystemClock),
    )
    .expect("shop store");
    let started = Instant::now();
    let mut head = FeedHead::EMPTY;
    let mut batch = Vec::with_capacity(BUILD_BATCH);
    for i in 1..=n {
        let e = Entry::create(shop_key, head, Hlc::new(u64::from(i), 0), purchase(i));
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

    let started = Instant::now();
    let out = sync_stick(&shop, network_key, stick, u64::MAX, &mut |_| {}).expect("shop sync");
    let write = started.elapsed().as_secs_f64();
    assert_eq!(out.written_out, u64::from(n));
    println!(
        "usb bench: shop -> stick: {n} entries in {write:.2} s ({:.0} entries/s), {} segments, {:.1} MB ({:.0} bytes/entry)",
        f64::from(n) / write,
        out.segments_written,
        out.bytes_written as f64 / 1e6,
        out.bytes_written as f64 / f64::from(n)
    );
}

/// User + system CPU time of this process so far, in seconds (Linux, 100 ticks/s).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // The fields after the command name, which is in parentheses: utime and stime are
    // the 14th and 15th of the line.
    let after = &stat[stat.rfind(')').expect("a stat line") + 2..];
    let ticks: u64 = after
        .split(' ')
        .skip(11)
        .take(2)
        .map(|f| f.parse::<u64>().expect("clock ticks"))
        .sum();
    ticks as f64 / 100.0
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("dir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy");
        }
    }
}
