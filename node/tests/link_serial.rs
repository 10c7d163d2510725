//! Sync over the dial-up link: real redb stores, iroh QUIC over real ttys (socat pty
//! pairs), with a null-modem cable or the simulated phone exchange between them: a
//! 33.6 kbit/s line that can be noisy or drop its carrier.

use cardmesh_drivers::modem::pty::SocatPair;
use cardmesh_drivers::modem::sim::{Exchange, Faults, LineConfig};
use cardmesh_model::body::{BlacklistEvent, BlockReason, Body};
use cardmesh_model::sync::SyncError;
use cardmesh_model::{CardAsn, Role};
use cardmesh_node::identity::{self, DataDir};
use cardmesh_node::link::NodeSync;
use cardmesh_node::link::drive::LinkError;
use cardmesh_node::link::serial::call::{self, CallError};
use cardmesh_node::store::{Clock, Store, SystemClock};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

fn node(store: Store, dir: &DataDir) -> NodeSync {
    NodeSync::new(store, identity::load_key(dir).unwrap())
}

/// HQ and one enrolled shop.
fn network(root: &Path) -> (NodeSync, NodeSync) {
    let hq_dir = DataDir::new(root.join("hq"));
    let hq = identity::init_hq(&hq_dir, "dial-up-chain", clock()).unwrap();
    let dir = DataDir::new(root.join("shop"));
    let req = std::fs::read(identity::init_site(&dir, "shop", clock().as_ref()).unwrap()).unwrap();
    let pkg = identity::enroll(
        &hq,
        &hq_dir,
        &req,
        "shop".parse().unwrap(),
        Role::Store,
        clock().as_ref(),
    )
    .unwrap();
    let shop = identity::join(&dir, &pkg, clock()).unwrap();
    (node(hq, &hq_dir), node(shop, &dir))
}

fn lost(n: u32) -> Body {
    let b = n.to_be_bytes();
    Body::Blacklist(BlacklistEvent::Block {
        asn: CardAsn([0x10, 0, 0, 0, b[0], b[1], b[2], b[3]]),
        reason: BlockReason::Lost,
        operator: None,
    })
}

/// Appended from several threads at once, so that group commit writes thousands of
/// entries in a few hundred commits.
fn add_blocks(node: &NodeSync, from: u32, count: u32) {
    std::thread::scope(|s| {
        for t in 0..8 {
            s.spawn(move || {
                for n in (from + t..from + count).step_by(8) {
                    node.store().append_local(lost(n)).unwrap();
                }
            });
        }
    });
}

const HQ_NUMBER: &str = "5550100";
const SHOP_NUMBER: &str = "5550200";

/// The shop's modem and HQ's modem on the exchange, each on its own socat pair.
struct Phones {
    exchange: Exchange,
    shop_port: SocatPair,
    hq_port: SocatPair,
}

fn phones(dir: &Path) -> Phones {
    let shop_port = SocatPair::start(dir, "shop-modem").unwrap();
    let hq_port = SocatPair::start(dir, "hq-modem").unwrap();
    let mut exchange = Exchange::new(LineConfig::V34);
    exchange.install(SHOP_NUMBER, shop_port.b()).unwrap();
    exchange.install(HQ_NUMBER, hq_port.b()).unwrap();
    Phones {
        exchange,
        shop_port,
        hq_port,
    }
}

/// HQ answers `calls` calls in the background.
fn hq_answers(hq: &NodeSync, phones: &Phones, calls: usize) -> tokio::task::JoinHandle<()> {
    let (hq, port) = (hq.clone(), phones.hq_port.a().to_string());
    tokio::spawn(async move {
        call::answer(&hq, &port, clock(), Some(calls))
            .await
            .unwrap();
    })
}

fn assert_converged(a: &NodeSync, b: &NodeSync) {
    assert_eq!(
        a.store().version_vector().unwrap(),
        b.store().version_vector().unwrap()
    );
    a.store().verify_views().unwrap();
    b.store().verify_views().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_null_modem_cable_carries_a_full_sync() {
    let tmp = tempfile::tempdir().unwrap();
    let (hq, shop) = network(tmp.path());
    add_blocks(&hq, 0, 5);
    add_blocks(&shop, 1000, 20);
    let cable = SocatPair::start(tmp.path(), "cable").unwrap();
    let open = |p: &str| {
        serialport::new(p, 115_200)
            .timeout(Duration::from_millis(20))
            .open()
            .unwrap()
    };
    let (hq_port, shop_port) = (open(cable.a()), open(cable.b()));
    let served = {
        let hq = hq.clone();
        tokio::spawn(async move { call::serve_line(&hq, hq_port, 115_200, clock()).await })
    };
    let o = call::sync_over_line(
        &shop,
        shop_port,
        115_200,
        Some(hq.store().node_id()),
        clock().as_ref(),
    )
    .await
    .unwrap();
    assert_eq!(o.session.peer.node, hq.store().node_id());
    assert_eq!(o.session.stats.applied_by_peer, 20);
    assert!(o.session.stats.entries_applied >= 5);
    assert!(o.line.bytes_sent > 0 && o.line.packets_received > 0);
    let (_, up) = served.await.unwrap().unwrap();
    assert!(up, "a cable has no carrier to lose");
    assert_converged(&hq, &shop);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dial_up_call_syncs_both_ways() {
    let tmp = tempfile::tempdir().unwrap();
    let (hq, shop) = network(tmp.path());
    add_blocks(&hq, 0, 10);
    add_blocks(&shop, 1000, 40);
    let phones = phones(tmp.path());
    let answering = hq_answers(&hq, &phones, 1);
    let o = call::dial(&shop, phones.shop_port.a(), HQ_NUMBER, clock().as_ref())
        .await
        .unwrap();
    answering.await.unwrap();
    assert_eq!(o.session.peer.node, hq.store().node_id());
    assert_eq!(o.session.stats.applied_by_peer, 40);
    assert!(
        hq.store()
            .is_blocked(&CardAsn([0x10, 0, 0, 0, 0, 0, 0x03, 0xE8]))
            .unwrap()
    );
    assert_converged(&hq, &shop);
    let stats = phones.exchange.stats();
    assert_eq!(stats.calls, 1);
    assert!(!phones.exchange.is_online(HQ_NUMBER), "hung up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_noisy_line_still_converges() {
    let tmp = tempfile::tempdir().unwrap();
    let (hq, shop) = network(tmp.path());
    // Enough entries to fill ~30 kB of line: a store-day's entries pack to a few bytes
    // each, and a short call might see no damaged byte at all.
    add_blocks(&shop, 1000, 4000);
    let phones = phones(tmp.path());
    // About one frame of 1200 bytes in five arrives damaged.
    phones.exchange.set_faults(
        Faults {
            byte_error_rate: 2e-4,
            drop_after_bytes: None,
        },
        7,
    );
    let answering = hq_answers(&hq, &phones, 1);
    let o = call::dial(&shop, phones.shop_port.a(), HQ_NUMBER, clock().as_ref())
        .await
        .unwrap();
    answering.await.unwrap();
    assert_eq!(o.session.stats.applied_by_peer, 4000);
    assert!(
        phones.exchange.stats().bytes_corrupted > 0,
        "the line was noisy"
    );
    assert_converged(&hq, &shop);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_carrier_is_redialed_and_only_the_rest_is_sent() {
    let tmp = tempfile::tempdir().unwrap();
    let (hq, shop) = network(tmp.path());
    add_blocks(&shop, 1000, 6000);
    let phones = phones(tmp.path());
    phones.exchange.set_faults(
        Faults {
            byte_error_rate: 0.0,
            // Packed, the 6,000 entries take about 45 kB on the line: cut after the first
            // batch's ack, well before the end.
            drop_after_bytes: Some(32_000),
        },
        1,
    );
    let answering = hq_answers(&hq, &phones, 2);
    let err = call::dial(&shop, phones.shop_port.a(), HQ_NUMBER, clock().as_ref())
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::CarrierLost), "{err}");
    assert_eq!(phones.exchange.stats().carriers_dropped, 1);
    let at_hq = hq.store().version_vector().unwrap();
    let got = at_hq.get(&shop.store().node_id());
    assert!(got > 0, "some batches were acked before the drop");
    let shop_feed = shop
        .store()
        .version_vector()
        .unwrap()
        .get(&shop.store().node_id());
    assert!(got < shop_feed, "the drop came mid-sync");

    let o = call::dial(&shop, phones.shop_port.a(), HQ_NUMBER, clock().as_ref())
        .await
        .unwrap();
    answering.await.unwrap();
    assert_eq!(
        o.session.stats.applied_by_peer,
        shop_feed - got,
        "only what HQ lacked was sent again"
    );
    assert_eq!(o.session.stats.duplicates_received, 0);
    assert_converged(&hq, &shop);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_of_another_network_is_refused_and_learns_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (hq, _) = network(&tmp.path().join("ours"));
    let (stranger, _) = network(&tmp.path().join("theirs"));
    add_blocks(&hq, 0, 3);
    let (hq_before, stranger_before) = (
        hq.store().version_vector().unwrap(),
        stranger.store().version_vector().unwrap(),
    );
    let phones = phones(tmp.path());
    let answering = hq_answers(&hq, &phones, 1);
    let err = call::dial(&stranger, phones.shop_port.a(), HQ_NUMBER, clock().as_ref())
        .await
        .unwrap_err();
    answering.await.unwrap();
    assert!(
        matches!(
            err,
            CallError::Link(LinkError::Sync(
                SyncError::WrongNetwork { .. } | SyncError::PeerRefused { .. }
            ))
        ),
        "{err}"
    );
    assert_eq!(stranger.store().version_vector().unwrap(), stranger_before);
    assert_eq!(hq.store().version_vector().unwrap(), hq_before);
}
