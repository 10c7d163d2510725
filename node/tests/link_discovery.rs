//! LAN discovery with real iroh endpoints and real mDNS: running nodes with no peer
//! addresses in their config find each other, sync with the enrolled ones and converge; a
//! node of another network is found but never dialled, with the reason logged, and is
//! refused when it dials; the endpoint a node builds by default has no relay and no
//! public address lookup.
//!
//! Each test runs again inside a network namespace of its own (`unshare --net`, which
//! needs root) whose only interface, loopback, carries multicast: the nodes' mDNS
//! announcements stay on this machine and tests running at the same time do not hear
//! each other's nodes.

use cardmesh_model::body::{BlacklistEvent, BlockReason, Body};
use cardmesh_model::{CardAsn, NodeId, Role};
use cardmesh_node::config::{NamedPeer, NodeConfig};
use cardmesh_node::handle::Running;
use cardmesh_node::identity::{self, DataDir};
use cardmesh_node::link::NodeSync;
use cardmesh_node::link::iroh::{IrohLink, Reach};
use cardmesh_node::link::schedule::{Policy, Standing};
use cardmesh_node::link::service::Peer;
use cardmesh_node::store::{Clock, SystemClock};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Set in the re-run of a test inside its namespace.
const INSIDE: &str = "CARDMESH_TEST_IN_NETNS";

/// Brings loopback up with multicast routed to it, then runs the test binary.
const NAMESPACE_SETUP: &str = "ip link set lo up && ip link set lo multicast on \
     && ip route add 224.0.0.0/4 dev lo && exec \"$@\"";

/// True inside the test's namespace: go on with the test. Outside, runs test `name` again
/// in a new namespace, asserts it passed and that its log holds each of `logged`, and
/// returns false. Without root or `unshare` it fails when CARDMESH_REQUIRE_HW is set (as
/// in CI), and otherwise says it skipped.
fn in_own_lan(name: &str, logged: &[&str]) -> bool {
    if std::env::var_os(INSIDE).is_some() {
        let _ = tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .try_init();
        return true;
    }
    let probe = Command::new("unshare").args(["--net", "true"]).output();
    if !probe.as_ref().is_ok_and(|o| o.status.success()) {
        assert!(
            std::env::var_os("CARDMESH_REQUIRE_HW").is_none(),
            "cannot create a network namespace (root and util-linux's unshare needed): {probe:?}"
        );
        eprintln!(
            "SKIPPED {name}: cannot create a network namespace (needs root and unshare); \
             with CARDMESH_REQUIRE_HW set this fails instead"
        );
        return false;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = Command::new("unshare")
        .args(["--net", "--", "sh", "-c", NAMESPACE_SETUP, "sh"])
        .arg(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(INSIDE, "1")
        .output()
        .expect("running unshare");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let all = format!("--- stdout\n{stdout}\n--- stderr\n{stderr}");
    assert!(
        out.status.success(),
        "{name} failed in its namespace:\n{all}"
    );
    assert!(
        stdout.contains("1 passed"),
        "{name} did not run in its namespace:\n{all}"
    );
    for text in logged {
        assert!(
            stderr.contains(text),
            "{name} never logged {text:?}:\n{all}"
        );
    }
    false
}

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

/// A node that knows no peer address: only LAN discovery (the default reach) can give it
/// peers, and only a store change or the start can trigger a session within a test's
/// time.
fn lan_only() -> NodeConfig {
    NodeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        policy: Policy {
            interval_ms: 3_600_000,
            debounce_ms: 200,
            ..Policy::default()
        },
        peers: Vec::new(),
        reach: Reach::default(),
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(45);
    while !done() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// HQ's data folder (HQ has blocked card 1) and one per enrolled site, all closed again.
fn network(root: &Path, name: &str, sites: &[&str]) -> (DataDir, Vec<DataDir>) {
    let hq = DataDir::new(root.join(format!("{name}-hq")));
    let hq_store = identity::init_hq(&hq, name, clock()).unwrap();
    hq_store.append_local(lost(1)).unwrap();
    let mut dirs = Vec::new();
    for site in sites {
        let dir = DataDir::new(root.join(format!("{name}-{site}")));
        let req =
            std::fs::read(identity::init_site(&dir, site, clock().as_ref()).unwrap()).unwrap();
        let pkg = identity::enroll(
            &hq_store,
            &hq,
            &req,
            site.parse().unwrap(),
            Role::Store,
            clock().as_ref(),
        )
        .unwrap();
        drop(identity::join(&dir, &pkg, clock()).unwrap());
        dirs.push(dir);
    }
    (hq, dirs)
}

fn id(node: &Running) -> NodeId {
    node.node().store().node_id()
}

fn converged(nodes: &[&Running]) -> bool {
    let views: Vec<_> = nodes
        .iter()
        .map(|n| {
            let s = n.node().store();
            (s.version_vector().unwrap(), s.replica_digest().unwrap())
        })
        .collect();
    views.windows(2).all(|w| w[0] == w[1])
}

#[test]
fn nodes_with_no_peer_addresses_find_each_other_and_converge() {
    if !in_own_lan(
        "nodes_with_no_peer_addresses_find_each_other_and_converge",
        &["found a member on the LAN"],
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (hq_dir, sites) = network(tmp.path(), "lan", &["shop-1", "shop-2"]);
    let hq = Running::start(&hq_dir, lan_only(), clock()).unwrap();
    let one = Running::start(&sites[0], lan_only(), clock()).unwrap();
    let two = Running::start(&sites[1], lan_only(), clock()).unwrap();
    let all = [&hq, &one, &two];

    let blocked = |n: &Running, card: u8| {
        n.node()
            .store()
            .is_blocked(&CardAsn([0x10, 0, 0, 0, 0, 0, 0, card]))
            .unwrap()
    };
    wait_until("both shops have HQ's block", || {
        blocked(&one, 1) && blocked(&two, 1)
    });
    one.node().store().append_local(lost(2)).unwrap();
    two.node().store().append_local(lost(3)).unwrap();
    wait_until("every node has every block and the same replica", || {
        all.iter().all(|n| (1..=3).all(|c| blocked(n, c))) && converged(&all)
    });

    // Each shop learnt of the other from HQ's enrollments and dialled it as a LAN member.
    for (me, other) in [(&one, &two), (&two, &one)] {
        wait_until("a shop has synced with the other shop", || {
            me.peer_status()
                .iter()
                .any(|s| s.peer.node == id(other) && s.state.last_ok_ms.is_some())
        });
        let found = me.neighbours();
        let (_, n) = found.iter().find(|(node, _)| *node == id(other)).unwrap();
        assert_eq!(n.standing, Standing::Member);
        assert!(!n.addrs.is_empty());
    }
    let hq_peers: Vec<NodeId> = hq.peer_status().iter().map(|s| s.peer.node).collect();
    assert!(hq_peers.contains(&id(&one)) && hq_peers.contains(&id(&two)));
}

#[test]
fn a_node_of_another_network_is_found_but_never_dialled_and_refused_when_it_dials() {
    if !in_own_lan(
        "a_node_of_another_network_is_found_but_never_dialled_and_refused_when_it_dials",
        &[Standing::STRANGER_REASON, "sync session refused or failed"],
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (hq_dir, sites) = network(tmp.path(), "ours", &["shop-1"]);
    let (rival_dir, _) = network(tmp.path(), "theirs", &[]);
    let hq = Running::start(&hq_dir, lan_only(), clock()).unwrap();
    let shop = Running::start(&sites[0], lan_only(), clock()).unwrap();
    // The rival knows our HQ's address as well as hearing of it: it dials, HQ refuses.
    let mut rival_config = lan_only();
    rival_config.peers.push(NamedPeer {
        name: "their hq".into(),
        peer: Peer {
            node: id(&hq),
            addr: hq.local_addrs()[0],
        },
    });
    let rival = Running::start(&rival_dir, rival_config, clock()).unwrap();

    let standing = |n: &Running, of: NodeId| {
        n.neighbours()
            .into_iter()
            .find(|(node, _)| *node == of)
            .map(|(_, n)| n.standing)
    };
    wait_until(
        "our nodes have heard of the rival and of each other",
        || {
            [&hq, &shop]
                .iter()
                .all(|n| standing(n, id(&rival)) == Some(Standing::Stranger))
                && standing(&shop, id(&hq)) == Some(Standing::Member)
        },
    );
    // (Not of our HQ: while it dials HQ, iroh's own lookup takes HQ's announcements.)
    wait_until("the rival has heard of our shop", || {
        standing(&rival, id(&shop)) == Some(Standing::Stranger)
    });
    wait_until("the rival's session with our HQ is refused", || {
        rival.peer_status()[0].state.failures > 0
    });
    let state = &rival.peer_status()[0].state;
    let error = state.last_error.as_deref().unwrap();
    assert!(error.contains("network"), "{error}");
    assert!(state.last_ok_ms.is_none());

    // The shop syncs with HQ, found on the LAN; nobody ever schedules the rival.
    wait_until("the shop has synced with HQ", || converged(&[&hq, &shop]));
    for n in [&hq, &shop] {
        assert!(
            n.peer_status().iter().all(|s| s.peer.node != id(&rival)),
            "a stranger was scheduled: {:?}",
            n.peer_status()
        );
        let vv = n.node().store().version_vector().unwrap();
        assert_eq!(vv.get(&id(&rival)), 0, "the rival's feed got in");
    }
    assert_eq!(
        rival.peer_status().len(),
        1,
        "the rival dials only its configured peer: {:?}",
        rival.peer_status()
    );
}

#[test]
fn the_default_endpoint_has_no_relay_and_no_public_lookup() {
    if !in_own_lan(
        "the_default_endpoint_has_no_relay_and_no_public_lookup",
        &[],
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (hq_dir, _) = network(tmp.path(), "reach", &[]);
    let store = identity::open(&hq_dir, clock()).unwrap();
    let sync = NodeSync::new(store, identity::load_key(&hq_dir).unwrap());
    let n0_relays: Vec<_> = iroh::RelayMode::Default.relay_map().urls();
    assert!(!n0_relays.is_empty());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let bind = "127.0.0.1:0".parse().unwrap();
        let default = NodeConfig::default().reach;
        let link = IrohLink::bind_with(sync.clone(), bind, clock(), default)
            .await
            .unwrap();
        let endpoint = link.endpoint();
        assert_eq!(
            endpoint.address_lookup().unwrap().len(),
            1,
            "mDNS only, no public lookup"
        );
        assert!(endpoint.addr().relay_urls().next().is_none());
        for url in &n0_relays {
            assert!(endpoint.remove_relay(url).await.is_none(), "{url} is set");
        }
        link.shutdown().await;

        // The same checks see relays and public lookup once the config turns them on (in
        // this namespace there is no route out, so nothing is sent anywhere).
        let everything = Reach {
            lan_discovery: true,
            relays: true,
            public_discovery: true,
        };
        let link = IrohLink::bind_with(sync, bind, clock(), everything)
            .await
            .unwrap();
        assert_eq!(link.endpoint().address_lookup().unwrap().len(), 4);
        assert!(link.endpoint().remove_relay(&n0_relays[0]).await.is_some());
        link.shutdown().await;
    });
}
