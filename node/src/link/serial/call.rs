//! Calls on a serial line: a QUIC connection over [`SerialLine`] carrying one sync
//! session, on a null-modem cable ([`sync_over_line`], [`serve_line`]) or through a
//! modem ([`dial`], [`answer`]). A call is cut the moment the line reports `NO CARRIER`;
//! the next call's session plans from the version vectors again, so only what the peer
//! did not ack is sent again.

use super::line::{LineCounters, SerialLine, peer_addr};
use crate::link::NodeSync;
use crate::link::drive::{LinkError, SessionOutcome};
use crate::link::iroh::{ALPN, Responder, endpoint_builder, initiate};
use crate::store::Clock;
use cardmesh_drivers::modem::at::{Modem, ModemError};
use cardmesh_model::NodeId;
use cardmesh_model::sync::Limits;
use iroh::endpoint::{IdleTimeout, MtuDiscoveryConfig, QuicTransportConfig};
use iroh::protocol::ProtocolHandler;
use iroh::{Endpoint, EndpointAddr, TransportAddr};
use serialport::SerialPort;
use std::sync::Arc;
use std::time::Duration;

/// Batches sized for 33.6 kbit/s: a 16 KiB batch takes about 5 s on the line, so a
/// carrier drop costs at most a few seconds of resending.
pub const LINE_LIMITS: Limits = Limits {
    batch_entries: 256,
    batch_bytes: 16 << 10,
    window: 2,
};

/// QUIC's smallest packet: fewer bytes per frame to lose to a flipped bit.
const LINE_MTU: u16 = 1200;
/// A 1200-byte packet takes 0.36 s each way at 33.6 kbit/s; an ack comes back after it.
const LINE_INITIAL_RTT: Duration = Duration::from_secs(1);
/// The carrier signal ends a dead call at once; this is for a line gone silent.
const LINE_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const LINE_KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How long the dialer asks the answerer who it is.
const ASK_EVERY: Duration = Duration::from_secs(1);
const ASK_FOR: Duration = Duration::from_secs(15);
/// Time for the last packets (the connection close) to leave before the line stops.
const DRAIN: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error(transparent)]
    Modem(#[from] ModemError),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error("the carrier was lost (NO CARRIER) during the call")]
    CarrierLost,
    #[error("the other end of the line did not say who it is")]
    NoAnswerer,
    #[error("serial line: {0}")]
    Line(String),
}

/// What one call did.
#[derive(Clone, Debug)]
pub struct CallOutcome {
    pub session: SessionOutcome,
    pub line: LineCounters,
}

/// QUIC tuned for a slow serial line.
fn line_transport_config() -> QuicTransportConfig {
    QuicTransportConfig::builder()
        .initial_mtu(LINE_MTU)
        .min_mtu(LINE_MTU)
        .mtu_discovery_config(None::<MtuDiscoveryConfig>)
        .initial_rtt(LINE_INITIAL_RTT)
        .max_idle_timeout(Some(
            IdleTimeout::try_from(LINE_IDLE_TIMEOUT).expect("60 s fits an idle timeout"),
        ))
        .keep_alive_interval(LINE_KEEP_ALIVE)
        .default_path_keep_alive_interval(LINE_KEEP_ALIVE)
        .default_path_max_idle_timeout(LINE_IDLE_TIMEOUT)
        .build()
}

async fn line_endpoint(sync: &NodeSync, line: &Arc<SerialLine>) -> Result<Endpoint, CallError> {
    endpoint_builder(sync)
        .add_custom_transport(line.transport())
        .transport_config(line_transport_config())
        .bind()
        .await
        .map_err(|e| CallError::Line(format!("iroh endpoint on the serial line: {e}")))
}

fn own_id(sync: &NodeSync) -> iroh::EndpointId {
    iroh::SecretKey::from_bytes(&sync.key().to_seed()).public()
}

/// Races `work` against the carrier.
async fn unless_cut<T>(
    line: &SerialLine,
    work: impl Future<Output = Result<T, CallError>>,
) -> Result<T, CallError> {
    tokio::select! {
        r = work => r,
        () = line.carrier_lost() => Err(CallError::CarrierLost),
    }
}

/// Calls the node at the other end of a connected line and runs one sync session as the
/// initiator. `peer`, if given, is the node this side expects to reach.
pub async fn sync_over_line(
    sync: &NodeSync,
    port: Box<dyn SerialPort>,
    rate: u32,
    peer: Option<NodeId>,
    clock: &dyn Clock,
) -> Result<CallOutcome, CallError> {
    let line = Arc::new(
        SerialLine::start(port.as_ref(), rate, own_id(sync))
            .map_err(|e| CallError::Line(e.to_string()))?,
    );
    let result = unless_cut(&line, async {
        let said = line
            .ask_peer(ASK_EVERY, ASK_FOR)
            .await
            .ok_or(CallError::NoAnswerer)?;
        if let Some(want) = peer
            && want.0 != *said.as_bytes()
        {
            return Err(CallError::Link(LinkError::PeerMismatch {
                proved: NodeId(*said.as_bytes()).short(),
                link: want.short(),
            }));
        }
        let endpoint = line_endpoint(sync, &line).await?;
        let addr = EndpointAddr::from_parts(said, [TransportAddr::Custom(peer_addr())]);
        let outcome = async {
            let conn = endpoint
                .connect(addr, ALPN)
                .await
                .map_err(|e| LinkError::Transport(format!("QUIC over the serial line: {e}")))?;
            Ok::<_, CallError>(initiate(&conn, sync, clock, LINE_LIMITS).await?)
        }
        .await;
        // Sends the close to the peer (bounded by the idle timeout).
        let _ = tokio::time::timeout(DRAIN, endpoint.close()).await;
        outcome
    })
    .await;
    let counters = stop(line).await?;
    result.map(|session| CallOutcome {
        session,
        line: counters,
    })
}

/// How long the answerer waits for the caller to hang up after its last session.
const HANG_UP_WAIT: Duration = Duration::from_secs(10);

/// Answers the node at the other end of a connected line: serves its sync sessions
/// until it closes the connection or the carrier drops. After a session that ended
/// well it waits a while for the caller to hang up; `LineCounters` and whether the line
/// is still up.
pub async fn serve_line(
    sync: &NodeSync,
    port: Box<dyn SerialPort>,
    rate: u32,
    clock: Arc<dyn Clock>,
) -> Result<(LineCounters, bool), CallError> {
    let line = Arc::new(
        SerialLine::start(port.as_ref(), rate, own_id(sync))
            .map_err(|e| CallError::Line(e.to_string()))?,
    );
    let result = unless_cut(&line, async {
        let endpoint = line_endpoint(sync, &line).await?;
        let served = async {
            let incoming = endpoint
                .accept()
                .await
                .ok_or_else(|| CallError::Line("the endpoint closed".into()))?;
            let conn = incoming
                .await
                .map_err(|e| LinkError::Transport(format!("QUIC over the serial line: {e}")))?;
            Responder::new(sync.clone(), clock.clone(), LINE_LIMITS)
                .accept(conn)
                .await
                .map_err(|e| CallError::Line(e.to_string()))
        }
        .await;
        let _ = tokio::time::timeout(DRAIN, endpoint.close()).await;
        served
    })
    .await;
    if result.is_ok() {
        let _ = tokio::time::timeout(HANG_UP_WAIT, line.carrier_lost()).await;
    }
    let up = line.has_carrier();
    let counters = stop(line).await?;
    result.map(|()| (counters, up))
}

/// Stops the line's threads, so the modem can have its port back.
async fn stop(line: Arc<SerialLine>) -> Result<LineCounters, CallError> {
    tokio::task::spawn_blocking(move || line.stop(DRAIN))
        .await
        .map_err(|e| CallError::Line(e.to_string()))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ModemError> + Send + 'static,
) -> Result<T, CallError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| CallError::Line(e.to_string()))?
        .map_err(CallError::from)
}

/// How long a dial may take to connect (rings and modem training).
const DIAL_TIMEOUT: Duration = Duration::from_secs(60);

/// Dials `number` with the modem on `port`, syncs with the node that answers, hangs up.
pub async fn dial(
    sync: &NodeSync,
    port: &str,
    number: &str,
    clock: &dyn Clock,
) -> Result<CallOutcome, CallError> {
    let (path, number) = (port.to_string(), number.to_string());
    let (mut modem, rate) = blocking(move || {
        let mut m = Modem::open(&path)?;
        let rate = m.dial(&number, DIAL_TIMEOUT)?;
        Ok((m, rate))
    })
    .await?;
    tracing::info!(rate, "connected");
    let port = modem
        .port()
        .try_clone()
        .map_err(|e| CallError::Line(e.to_string()))?;
    let result = sync_over_line(sync, port, rate, None, clock).await;
    let hung_up = blocking(move || modem.hang_up()).await;
    let outcome = result?;
    hung_up?;
    Ok(outcome)
}

/// Answers calls on the modem at `port` (auto-answer on the first ring) and serves each
/// caller's sync sessions; after `calls` calls if given, else forever. A call that
/// fails is logged and the modem waits for the next one.
pub async fn answer(
    sync: &NodeSync,
    port: &str,
    clock: Arc<dyn Clock>,
    calls: Option<usize>,
) -> Result<(), CallError> {
    let path = port.to_string();
    let mut modem = blocking(move || {
        let mut m = Modem::open(&path)?;
        m.auto_answer()?;
        Ok(m)
    })
    .await?;
    let mut answered = 0;
    while calls.is_none_or(|n| answered < n) {
        let (m, rate) = blocking(move || {
            let rate = loop {
                match modem.wait_for_call(Duration::from_secs(3600)) {
                    Err(ModemError::Timeout(_)) => {}
                    r => break r?,
                }
            };
            Ok((modem, rate))
        })
        .await?;
        modem = m;
        answered += 1;
        tracing::info!(rate, "answered a call");
        let port = modem
            .port()
            .try_clone()
            .map_err(|e| CallError::Line(e.to_string()))?;
        let up = match serve_line(sync, port, rate, clock.clone()).await {
            Ok((c, up)) => {
                tracing::info!(
                    sent = c.bytes_sent,
                    received = c.bytes_received,
                    "call done"
                );
                up
            }
            Err(CallError::CarrierLost) => {
                tracing::warn!("call cut: NO CARRIER");
                false
            }
            Err(e) => {
                tracing::warn!("call failed: {e}");
                true
            }
        };
        // A modem that lost its carrier is back in command mode, maybe already
        // answering the next call: escaping and hanging up would cut that one.
        if up {
            modem = blocking(move || {
                modem.hang_up()?;
                Ok(modem)
            })
            .await?;
        }
    }
    Ok(())
}
