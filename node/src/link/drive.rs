//! Runs one sync session over any reliable, ordered byte stream: reads frames, feeds
//! them to the session, writes what it answers, until both sides are done.

use super::NodeSync;
use super::frame::{FrameError, read_frame, write_frame};
use cardmesh_model::Certificate;
use cardmesh_model::sync::{Limits, Session, Side, Stats, SyncError};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(transparent)]
    Sync(#[from] SyncError),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("the peer hung up before the sync finished")]
    Hangup,
    #[error("the peer proved a different key ({proved}) than the link authenticated ({link})")]
    PeerMismatch { proved: String, link: String },
    #[error("{0}")]
    Transport(String),
}

/// What one finished session did.
#[derive(Clone, Debug)]
pub struct SessionOutcome {
    pub peer: Certificate,
    pub stats: Stats,
    pub refused_here: Vec<String>,
    pub refused_by_peer: Vec<String>,
}

fn random_nonce() -> [u8; 32] {
    let mut n = [0u8; 32];
    getrandom::fill(&mut n).expect("the operating system has no random source");
    n
}

/// Drives a session as `side` over `recv`/`send` with the node's store, with the batch
/// limits of the link (a slow one wants small batches).
pub async fn drive_with<R, W>(
    side: Side,
    limits: Limits,
    store: NodeSync,
    now_ms: u64,
    mut recv: R,
    mut send: W,
) -> Result<SessionOutcome, LinkError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut session = Session::with_limits(side, random_nonce(), now_ms, limits);
    let mut store = store;
    // The store blocks on disk: keep its calls off the async workers.
    let first = tokio::task::block_in_place(|| session.start(&mut store));
    let mut out = match first {
        Ok(frames) => frames,
        Err(e) => return Err(farewell(&mut send, e).await),
    };
    loop {
        for f in out.drain(..) {
            write_frame(&mut send, &f).await?;
        }
        send.flush().await.map_err(FrameError::from)?;
        if session.is_done() {
            break;
        }
        let Some(frame) = read_frame(&mut recv).await? else {
            return Err(LinkError::Hangup);
        };
        match tokio::task::block_in_place(|| session.handle(&mut store, &frame)) {
            Ok(frames) => out = frames,
            Err(e) => return Err(farewell(&mut send, e).await),
        }
    }
    send.shutdown().await.map_err(FrameError::from)?;
    let peer = session.peer().cloned().ok_or(LinkError::Hangup)?;
    Ok(SessionOutcome {
        peer,
        stats: session.stats().clone(),
        refused_here: session.refused_here().to_vec(),
        refused_by_peer: session.refused_by_peer().to_vec(),
    })
}

/// Tells the peer why this side gives up (when it should hear it), then returns the error.
async fn farewell<W: AsyncWrite + Unpin>(send: &mut W, e: SyncError) -> LinkError {
    if let Some(f) = e.farewell() {
        let _ = write_frame(send, &f).await;
        let _ = send.shutdown().await;
    }
    LinkError::Sync(e)
}
