//! LAN discovery: a node announces its iroh endpoint on the local network by mDNS (iroh's
//! swarm-discovery lookup, under cardmesh's own service name so that other iroh programs
//! on the LAN stay out of it) and reports the nodes it hears of. A sighting is only a
//! hint: the sync loop dials enrolled nodes alone, and every session proves membership
//! again whoever started it.

use super::drive::LinkError;
use cardmesh_model::NodeId;
use iroh::Endpoint;
use iroh_mdns_address_lookup::{DiscoveryEvent, MdnsAddressLookup};
use n0_future::StreamExt;
use std::net::SocketAddr;
use tokio::sync::mpsc;

/// The mDNS service cardmesh nodes announce themselves under
/// (`<endpoint id>._cardmesh._udp.local`).
pub const SERVICE: &str = "cardmesh";

/// Sightings not yet taken by the sync loop before the oldest are held back.
const QUEUED_SIGHTINGS: usize = 64;

/// What LAN discovery heard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sighting {
    /// A node announced itself, for the first time or at new addresses.
    Seen {
        node: NodeId,
        addrs: Vec<SocketAddr>,
    },
    /// A node's announcements stopped.
    Gone(NodeId),
}

/// The running mDNS announcer and listener of one endpoint.
#[derive(Clone, Debug)]
pub(crate) struct Lan {
    mdns: MdnsAddressLookup,
}

impl Lan {
    /// Starts announcing `endpoint` (its addresses follow the endpoint's own, as they
    /// change) and lets the endpoint resolve node ids heard on the LAN.
    pub(crate) fn start(endpoint: &Endpoint) -> Result<Lan, LinkError> {
        let failed = |e: &dyn std::fmt::Display| {
            LinkError::Transport(format!("starting LAN discovery (mDNS): {e}"))
        };
        let mdns = MdnsAddressLookup::builder()
            .service_name(SERVICE)
            .build(endpoint.id())
            .map_err(|e| failed(&e))?;
        endpoint
            .address_lookup()
            .map_err(|e| failed(&e))?
            .add(mdns.clone());
        Ok(Lan { mdns })
    }

    /// A channel of sightings from now on; it closes when discovery stops.
    pub(crate) async fn sightings(&self) -> mpsc::Receiver<Sighting> {
        let mut events = self.mdns.subscribe().await;
        let (tx, rx) = mpsc::channel(QUEUED_SIGHTINGS);
        tokio::spawn(async move {
            while let Some(event) = events.next().await {
                let sighting = match event {
                    DiscoveryEvent::Discovered { endpoint_info, .. } => Sighting::Seen {
                        node: NodeId(*endpoint_info.endpoint_id.as_bytes()),
                        addrs: endpoint_info.ip_addrs().copied().collect(),
                    },
                    DiscoveryEvent::Expired { endpoint_id } => {
                        Sighting::Gone(NodeId(*endpoint_id.as_bytes()))
                    }
                    _ => continue,
                };
                if tx.send(sighting).await.is_err() {
                    return;
                }
            }
        });
        rx
    }
}
