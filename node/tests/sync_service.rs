//! The background sync loop of running nodes, over real iroh endpoints on loopback: a
//! site picks up HQ's block on its own, a write at the site reaches HQ without waiting for
//! the period, and a peer that refuses the session is recorded with its reason.

use cardmesh_model::body::{BlacklistEvent, BlockReason, Body};
use cardmesh_model::{CardAsn, Role};
use cardmesh_node::config::{NamedPeer, NodeConfig};
use cardmesh_node::handle::Running;
use cardmesh_node::identity::{self, DataDir};
use cardmesh_node::link::iroh::Reach;
use cardmesh_node::link::schedule::Policy;
use cardmesh_node::link::service::Peer;
use cardmesh_node::store::{Clock, SystemClock};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

fn lost(n: u8) -> Body {
    Body::Blacklist(BlacklistEvent::Block {
        asn: CardAsn([0x10, 0, 0, 0, 0, 0, 0, n]),
        reason: BlockReason::Lost,
        operator: None,
    })
}

/// A config that only a store change or the start can trigger within a test's time.
fn config(peers: Vec<NamedPeer>) -> NodeConfig {
    NodeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        policy: Policy {
            interval_ms: 3_600_000,
            debounce_ms: 200,
            ..Policy::default()
        },
        peers,
        reach: Reach::DIRECT,
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// HQ's data folder and one enrolled site's, both closed again.
fn network(root: &Path, name: &str) -> (DataDir, DataDir) {
    let hq = DataDir::new(root.join(format!("{name}-hq")));
    let hq_store = identity::init_hq(&hq, name, clock()).unwrap();
    hq_store.append_local(lost(1)).unwrap();
    let site = DataDir::new(root.join(format!("{name}-shop")));
    let req = std::fs::read(identity::init_site(&site, "till", clock().as_ref()).unwrap()).unwrap();
    let pkg = identity::enroll(
        &hq_store,
        &hq,
        &req,
        "shop-1".parse().unwrap(),
        Role::Store,
        clock().as_ref(),
    )
    .unwrap();
    drop(identity::join(&site, &pkg, clock()).unwrap());
    (hq, site)
}

#[test]
fn a_running_site_syncs_at_start_and_again_soon_after_each_write() {
    let tmp = tempfile::tempdir().unwrap();
    let (hq_dir, site_dir) = network(tmp.path(), "chain");
    let hq = Running::start(&hq_dir, config(Vec::new()), clock()).unwrap();
    let hq_peer = NamedPeer {
        name: "hq".into(),
        peer: Peer {
            node: hq.node().store().node_id(),
            addr: hq.local_addrs()[0],
        },
    };
    let site = Running::start(&site_dir, config(vec![hq_peer]), clock()).unwrap();
    let lost_card = CardAsn([0x10, 0, 0, 0, 0, 0, 0, 1]);
    wait_until("the site has HQ's block", || {
        site.node().store().is_blocked(&lost_card).unwrap()
    });
    let status = site.peer_status();
    assert_eq!(status.len(), 1);
    assert!(status[0].state.last_ok_ms.is_some(), "{status:?}");

    let me = site.node().store().node_id();
    let before = hq.node().store().version_vector().unwrap().get(&me);
    site.node().store().append_local(lost(2)).unwrap();
    wait_until("HQ has the site's new entry", || {
        hq.node().store().version_vector().unwrap().get(&me) > before
    });
}

#[test]
fn a_peer_that_refuses_is_recorded_with_its_reason_and_backed_off() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, site_dir) = network(tmp.path(), "ours");
    let (stranger_dir, _) = network(tmp.path(), "theirs");
    let stranger = Running::start(&stranger_dir, config(Vec::new()), clock()).unwrap();
    let peer = NamedPeer {
        name: "stranger".into(),
        peer: Peer {
            node: stranger.node().store().node_id(),
            addr: stranger.local_addrs()[0],
        },
    };
    let site = Running::start(&site_dir, config(vec![peer]), clock()).unwrap();
    wait_until("the failure is recorded", || {
        site.peer_status()[0].state.failures > 0
    });
    let state = &site.peer_status()[0].state;
    let error = state.last_error.as_deref().unwrap();
    assert!(error.contains("network"), "{error}");
    assert!(state.last_ok_ms.is_none());
    let now = SystemClock.now_ms();
    assert!(
        state.next_due_ms > now + 1_000,
        "backed off, not retried at once"
    );
}
