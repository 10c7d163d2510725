//! The LAN/internet link: iroh QUIC with the node's ed25519 key as its identity, ALPN
//! `cardmesh/sync/1`. Relays, public discovery and port mapping are off: a node talks
//! to the addresses it is given (static peers; LAN discovery comes with config).
//!
//! Membership is decided by the sync session, not before it: the peer's hello carries
//! its HQ-signed certificate (a site may not have heard of another site yet) and the
//! peer proves it holds that certificate's key. Both sides then check that the key that
//! authenticated the QUIC connection is the key the session proved.

use super::NodeSync;
use super::drive::{LinkError, SessionOutcome, drive_with};
use crate::store::Clock;
use cardmesh_model::NodeId;
use cardmesh_model::sync::{Limits, Side};
use iroh::endpoint::{Builder, Connection, PortmapperConfig, presets};
use iroh::protocol::{AcceptError, ProtocolHandler, Router};
use iroh::{Endpoint, EndpointAddr, NetReportConfig, RelayMode};
use std::net::SocketAddr;
use std::sync::Arc;

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
}

impl IrohLink {
    /// Binds the endpoint on `bind` (e.g. `127.0.0.1:0`, or `0.0.0.0:7470` at a site).
    pub async fn bind(
        sync: NodeSync,
        bind: SocketAddr,
        clock: Arc<dyn Clock>,
    ) -> Result<IrohLink, LinkError> {
        let transport = |e: &dyn std::fmt::Display| {
            LinkError::Transport(format!("iroh endpoint on {bind}: {e}"))
        };
        let endpoint = endpoint_builder(&sync)
            .bind_addr(bind)
            .map_err(|e| transport(&e))?
            .bind()
            .await
            .map_err(|e| transport(&e))?;
        let handler = Responder::new(sync.clone(), clock.clone(), Limits::DEFAULT);
        let router = Router::builder(endpoint).accept(ALPN, handler).spawn();
        Ok(IrohLink {
            router,
            sync,
            clock,
        })
    }

    /// The UDP addresses the endpoint listens on.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.router.endpoint().bound_sockets()
    }

    /// Runs one sync session with `peer` at `addr`. The session refuses a peer of
    /// another network, an unenrolled or a revoked one, with a typed error.
    pub async fn sync_with(
        &self,
        peer: NodeId,
        addr: SocketAddr,
    ) -> Result<SessionOutcome, LinkError> {
        let id = iroh::PublicKey::from_bytes(&peer.0)
            .map_err(|e| LinkError::Transport(e.to_string()))?;
        let conn = self
            .router
            .endpoint()
            .connect(EndpointAddr::new(id).with_ip_addr(addr), ALPN)
            .await
            .map_err(|e| {
                LinkError::Transport(format!("connecting to {} at {addr}: {e}", peer.short()))
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
