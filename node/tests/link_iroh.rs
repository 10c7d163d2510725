//! Sync over real iroh endpoints on loopback: HQ and three sites, each with its own redb
//! store and QUIC endpoint, enrolled by files.

use cardmesh_model::body::{BlacklistEvent, BlockReason, Body};
use cardmesh_model::docs::{DocName, pricebook};
use cardmesh_model::sync::SyncError;
use cardmesh_model::{CardAsn, Money, Role};
use cardmesh_node::identity::{self, DataDir};
use cardmesh_node::link::NodeSync;
use cardmesh_node::link::drive::LinkError;
use cardmesh_node::link::iroh::IrohLink;
use cardmesh_node::store::{Clock, Store, SystemClock};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

fn clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

struct Site {
    store: Store,
    link: IrohLink,
}

impl Site {
    fn addr(&self) -> SocketAddr {
        self.link.local_addrs()[0]
    }
}

async fn start(store: Store, dir: &DataDir) -> Site {
    let key = identity::load_key(dir).unwrap();
    let link = IrohLink::bind(
        NodeSync::new(store.clone(), key.clone()),
        loopback(),
        clock(),
    )
    .await
    .unwrap();
    Site { store, link }
}

/// HQ and `roles.len()` enrolled sites, each with a running endpoint.
async fn network(root: &Path, roles: &[(&str, Role)]) -> (Site, Vec<Site>) {
    let hq_dir = DataDir::new(root.join("hq"));
    let hq_store = identity::init_hq(&hq_dir, "loopback-chain", clock()).unwrap();
    let mut sites = Vec::new();
    for (name, role) in roles {
        let dir = DataDir::new(root.join(name));
        let req =
            std::fs::read(identity::init_site(&dir, name, clock().as_ref()).unwrap()).unwrap();
        let pkg = identity::enroll(
            &hq_store,
            &hq_dir,
            &req,
            name.parse().unwrap(),
            *role,
            clock().as_ref(),
        )
        .unwrap();
        let store = identity::join(&dir, &pkg, clock()).unwrap();
        sites.push(start(store, &dir).await);
    }
    (start(hq_store, &hq_dir).await, sites)
}

fn lost(n: u8) -> Body {
    Body::Blacklist(BlacklistEvent::Block {
        asn: CardAsn([0x10, 0, 0, 0, 0, 0, 0, n]),
        reason: BlockReason::Lost,
        operator: None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_written_at_hq_reaches_every_site_by_relay_over_iroh() {
    let tmp = tempfile::tempdir().unwrap();
    let (hq, sites) = network(
        tmp.path(),
        &[
            ("shop-a", Role::Store),
            ("shop-b", Role::Store),
            ("station-c", Role::Station),
        ],
    )
    .await;
    let card = CardAsn([0x10, 0, 0, 0, 0, 0, 0, 9]);
    hq.store.append_local(lost(9)).unwrap();
    hq.store
        .edit_doc(DocName::PriceBook, |d| {
            pricebook::schedule_price(d, &"cola".parse().unwrap(), 0, Money::from_fen(300))
        })
        .unwrap();
    for (i, s) in sites.iter().enumerate() {
        for n in 0..5 {
            s.store
                .append_local(lost(100 + (i as u8) * 10 + n))
                .unwrap();
        }
    }
    // A line: HQ - shop-a - shop-b - station-c. Entries cross it hop by hop.
    hq.link
        .sync_with(sites[0].store.node_id(), sites[0].addr())
        .await
        .unwrap();
    for w in sites.windows(2) {
        w[0].link
            .sync_with(w[1].store.node_id(), w[1].addr())
            .await
            .unwrap();
    }
    assert!(
        sites[2].store.is_blocked(&card).unwrap(),
        "the block crossed three hops"
    );
    // And back the other way, so every node has every feed.
    for w in sites.windows(2).rev() {
        w[1].link
            .sync_with(w[0].store.node_id(), w[0].addr())
            .await
            .unwrap();
    }
    let o = sites[0]
        .link
        .sync_with(hq.store.node_id(), hq.addr())
        .await
        .unwrap();
    assert_eq!(o.peer.node, hq.store.node_id());
    let vv = hq.store.version_vector().unwrap();
    // HQ: three enrollments, a block and a price change; five blocks from each site.
    assert_eq!(vv.total(), 5 + 3 * 5);
    for s in &sites {
        assert_eq!(s.store.version_vector().unwrap(), vv);
        s.store.verify_views().unwrap();
        assert!(s.store.is_blocked(&card).unwrap());
    }
    hq.link.shutdown().await;
    for s in sites {
        s.link.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_another_network_is_refused_and_learns_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (hq, _) = network(&tmp.path().join("ours"), &[]).await;
    let (stranger, _) = network(&tmp.path().join("theirs"), &[]).await;
    hq.store.append_local(lost(1)).unwrap();
    let before = stranger.store.version_vector().unwrap();

    let stranger_before = hq.store.version_vector().unwrap();
    for err in [
        hq.link
            .sync_with(stranger.store.node_id(), stranger.addr())
            .await
            .unwrap_err(),
        stranger
            .link
            .sync_with(hq.store.node_id(), hq.addr())
            .await
            .unwrap_err(),
    ] {
        assert!(
            matches!(
                err,
                LinkError::Sync(SyncError::WrongNetwork { .. })
                    | LinkError::Sync(SyncError::PeerRefused { .. })
            ),
            "{err}"
        );
    }
    assert_eq!(
        stranger.store.version_vector().unwrap(),
        before,
        "the stranger learned nothing"
    );
    assert_eq!(
        hq.store.version_vector().unwrap(),
        stranger_before,
        "HQ took nothing"
    );
    hq.link.shutdown().await;
    stranger.link.shutdown().await;
}
