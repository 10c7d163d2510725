//! The LAN/internet link: iroh QUIC with the node's ed25519 key as its identity, ALPN
//! `cardmesh/sync/1`. How far an endpoint reaches is its [`Reach`]: by default a running
//! node talks to the addresses it is given (static peers) and to the nodes LAN discovery
//! finds; n0's public relays and public address lookup are off unless the config turns
//! them on, and port mapping is always off.
//!
//! Membership is decided by the sync session, not before it: the peer's hello carries
//! its HQ-signed certificate (a site may not have heard of another site yet) and the
//! peer proves it holds that certificate's key. Both sides then check that the key that
//! authenticated the QUIC connection is the key the session proved.

use super::NodeSync;
use super::drive::{LinkError, SessionOutcome, drive_with};
use super::lan::{Lan, Sighting};
use crate::store::Clock;
use cardmesh_model::NodeId;
use cardmesh_model::sync::{Limits, Side};
use iroh::address_lookup::{DnsAddressLookup, PkarrPublisher, PkarrResolver};
use iroh::endpoint::{Builder, Connection, PortmapperConfig, presets};
use iroh::protocol::{AcceptError, ProtocolHandler, Router};
use iroh::{Endpoint, EndpointAddr, NetReportConfig, RelayMode};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::mpsc;

pub const ALPN: &[u8] = b"cardmesh/sync/1";

/// How long a refusing side waits for the peer to read its reason and hang up.
const FAREWELL_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

fn node_of(id: &iroh::EndpointId) -> NodeId {
    NodeId(*id.as_bytes())
}

/// An endpoint builder with the node's key as identity, the sync ALPN, and nothing that
/// reaches beyond the transports a link adds: no relays, no address lookup, no port
/// mapping, no IP transports.
pub(crate) fn endpoint_builder(sync: &NodeSync) -> Builder {
    Endpoint::builder(presets::Minimal)
        .secret_key(iroh::SecretKey::from_bytes(&sync.key().to_seed()))
        .alpns(vec![ALPN.to_vec()])
        .relay_mode(RelayMode::Disabled)
        .clear_address_lookup()
        .portmapper_config(PortmapperConfig::Disabled)
        .net_report_config(NetReportConfig::minimal())
        .clear_ip_transports()
}

/// How far an endpoint reaches beyond the addresses it is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reach {
    /// Announce this node and hear of others on the local network (mDNS).
    pub lan_discovery: bool,
    /// Use n0's public relays when no direct path works (the traffic stays end-to-end
    /// encrypted, but a third party sees who talks to whom).
    pub relays: bool,
    /// Publish this node's addresses to n0's public DNS and look peers up there (pkarr).
    pub public_discovery: bool,
}

impl Reach {
    /// Only the addresses given: tests, one-off sessions, the demo.
    pub const DIRECT: Reach = Reach {
        lan_discovery: false,
        relays: false,
        public_discovery: false,
    };
}

impl Default for Reach {
    /// A site on a LAN: finds its neighbours, tells nobody outside.
    fn default() -> Reach {
        Reach {
            lan_discovery: true,
            relays: false,
            public_discovery: false,
        }
    }
}

/// [`endpoint_builder`] with IP's reach beyond given addresses: relays and public address
/// lookup as `reach` allows (LAN discovery starts once the endpoint is bound).
fn ip_endpoint_builder(sync: &NodeSync, reach: Reach) -> Builder {
    let mut builder = endpoint_builder(sync);
    if reach.relays {
        builder = builder.relay_mode(RelayMode::Default);
    }
    if reach.public_discovery {
        builder = builder
            .address_lookup(PkarrPublisher::n0_dns())
            .address_lookup(PkarrResolver::n0_dns())
            .address_lookup(DnsAddressLookup::n0_dns());
    }
    builder
}

/// Runs one sync session as the initiator on an open connection, then closes it.
pub(crate) async fn initiate(
    conn: &Connection,
    sync: &NodeSync,
    clock: &dyn Clock,
    limits: Limits,
) -> Result<SessionOutcome, LinkError> {
    let (send, recv) = conn
        .open_bi()
        .await
        .map_err(|e| LinkError::Transport(e.to_string()))?;
    let result = drive_with(
        Side::Initiator,
        limits,
        sync.clone(),
        clock.now_ms(),
        recv,
        send,
    )
    .await;
    let outcome = result.and_then(|o| same_peer(o, conn));
    conn.close(0u32.into(), b"sync done");
    outcome
}

/// A node's iroh endpoint: serves sync sessions to enrolled peers and starts them.
pub struct IrohLink {
    router: Router,
    sync: NodeSync,
    clock: Arc<dyn Clock>,
    lan: Option<Lan>,
}

impl IrohLink {
    /// Binds an endpoint on `bind` (e.g. `127.0.0.1:0`) that reaches only the addresses
    /// it is given.
    pub async fn bind(
        sync: NodeSync,
        bind: SocketAddr,
        clock: Arc<dyn Clock>,
    ) -> Result<IrohLink, LinkError> {
        IrohLink::bind_with(sync, bind, clock, Reach::DIRECT).await
    }

    /// Binds an endpoint on `bind` (e.g. `0.0.0.0:7470` at a site) with `reach`.
    pub async fn bind_with(
        sync: NodeSync,
        bind: SocketAddr,
        clock: Arc<dyn Clock>,
        reach: Reach,
    ) -> Result<IrohLink, LinkError> {
        let transport = |e: &dyn std::fmt::Display| {
            LinkError::Transport(format!("iroh endpoint on {bind}: {e}"))
        };
        let endpoint = ip_endpoint_builder(&sync, reach)
            .bind_addr(bind)
            .map_err(|e| transport(&e))?
            .bind()
            .await
            .map_err(|e| transport(&e))?;
        let lan = match reach.lan_discovery {
            true => Some(Lan::start(&endpoint)?),
            false => None,
        };
        let handler = Responder::new(sync.clone(), clock.clone(), Limits::DEFAULT);
        let router = Router::builder(endpoint).accept(ALPN, handler).spawn();
        Ok(IrohLink {
            router,
            sync,
            clock,
            lan,
        })
    }

    /// The UDP addresses the endpoint listens on.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.router.endpoint().bound_sockets()
    }

    /// The iroh endpoint, for inspecting what it reaches.
    pub fn endpoint(&self) -> &Endpoint {
        self.router.endpoint()
    }

    /// The nodes LAN discovery hears of from now on; `None` without LAN discovery.
    pub async fn sightings(&self) -> Option<mpsc::Receiver<Sighting>> {
        match &self.lan {
            Some(lan) => Some(lan.sightings().await),
            None => None,
        }
    }

    /// Runs one sync session with `peer` at `addr`. The session refuses a peer of
    /// another network, an unenrolled or a revoked one, with a typed error.
    pub async fn sync_with(
        &self,
        peer: NodeId,
        addr: SocketAddr,
    ) -> Result<SessionOutcome, LinkError> {
        self.sync_at(peer, &[addr]).await
    }

    /// [`IrohLink::sync_with`] a peer known at several addresses (a configured one and
    /// those it announces on the LAN); iroh tries them all.
    pub async fn sync_at(
        &self,
        peer: NodeId,
        addrs: &[SocketAddr],
    ) -> Result<SessionOutcome, LinkError> {
        let id = iroh::PublicKey::from_bytes(&peer.0)
            .map_err(|e| LinkError::Transport(e.to_string()))?;
        let target = addrs
            .iter()
            .fold(EndpointAddr::new(id), |a, addr| a.with_ip_addr(*addr));
        let conn = self
            .router
            .endpoint()
            .connect(target, ALPN)
            .await
            .map_err(|e| {
                let at: Vec<String> = addrs.iter().map(SocketAddr::to_string).collect();
                let at = at.join(", ");
                LinkError::Transport(format!("connecting to {} at {at}: {e}", peer.short()))
            })?;
        initiate(&conn, &self.sync, self.clock.as_ref(), Limits::DEFAULT).await
    }

    /// Stops serving and closes the endpoint.
    pub async fn shutdown(self) {
        let _ = self.router.shutdown().await;
    }
}

fn same_peer(outcome: SessionOutcome, conn: &Connection) -> Result<SessionOutcome, LinkError> {
    let link = node_of(&conn.remote_id());
    if outcome.peer.node != link {
        return Err(LinkError::PeerMismatch {
            proved: outcome.peer.node.short(),
            link: link.short(),
        });
    }
    Ok(outcome)
}

/// Serves the sync sessions a peer opens on a connection.
#[derive(Clone)]
pub(crate) struct Responder {
    sync: NodeSync,
    clock: Arc<dyn Clock>,
    limits: Limits,
}

impl Responder {
    pub(crate) fn new(sync: NodeSync, clock: Arc<dyn Clock>, limits: Limits) -> Responder {
        Responder {
            sync,
            clock,
            limits,
        }
    }
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("cardmesh sync responder")
    }
}

impl ProtocolHandler for Responder {
    async fn accept(&self, conn: Connection) -> Result<(), AcceptError> {
        let remote = node_of(&conn.remote_id());
        // Serve every stream the peer opens; one session per stream.
        while let Ok((send, recv)) = conn.accept_bi().await {
            match drive_with(
                Side::Responder,
                self.limits,
                self.sync.clone(),
                self.clock.now_ms(),
                recv,
                send,
            )
            .await
            {
                Ok(o) => match same_peer(o, &conn) {
                    Ok(o) => tracing::info!(
                        peer = %remote.short(),
                        received = o.stats.entries_applied,
                        sent = o.stats.applied_by_peer,
                        "sync session done"
                    ),
                    Err(e) => {
                        tracing::warn!(peer = %remote.short(), "{e}");
                        conn.close(2u32.into(), b"peer identity mismatch");
                    }
                },
                Err(e) => {
                    tracing::warn!(peer = %remote.short(), "sync session refused or failed: {e}");
                    // Let the peer read why before the connection goes.
                    let _ = tokio::time::timeout(FAREWELL_GRACE, conn.closed()).await;
                    conn.close(1u32.into(), b"sync refused");
                }
            }
        }
        Ok(())
    }
}
