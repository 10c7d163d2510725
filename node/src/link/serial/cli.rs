//! `cardmesh sync dial PORT NUMBER` and `cardmesh sync answer PORT`.

use super::call;
use crate::hq::watch::Watch;
use crate::identity::{self, DataDir};
use crate::link::NodeSync;
use crate::store::{Clock, SystemClock};
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::sync::Arc;

/// Dial another node through the modem on PORT and sync with it (iroh over the line).
#[derive(clap::Args)]
pub struct DialArgs {
    /// The modem's serial port, e.g. /dev/ttyS0.
    pub port: String,
    /// The phone number to dial.
    pub number: String,
    #[arg(long, default_value = "cardmesh-data")]
    pub data: PathBuf,
}

/// Answer calls on the modem at PORT and sync with each caller, until stopped.
#[derive(clap::Args)]
pub struct AnswerArgs {
    /// The modem's serial port, e.g. /dev/ttyS0.
    pub port: String,
    #[arg(long, default_value = "cardmesh-data")]
    pub data: PathBuf,
    /// Stop after this many calls.
    #[arg(long)]
    pub calls: Option<usize>,
}

fn open(data: &PathBuf) -> Result<NodeSync> {
    let dir = DataDir::new(data);
    let store = identity::open(&dir, Arc::new(SystemClock))?;
    Ok(NodeSync::new(store, identity::load_key(&dir)?))
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// HQ verifies what a call brings as it is committed, as on every other link.
fn verifier(sync: &NodeSync, data: &PathBuf) -> Result<Option<Watch>> {
    Ok(Watch::for_node(
        sync.store(),
        &DataDir::new(data),
        Arc::new(SystemClock),
    )?)
}

pub fn dial(args: DialArgs) -> Result<()> {
    let sync = open(&args.data)?;
    let _verifier = verifier(&sync, &args.data)?;
    let o = runtime()?
        .block_on(call::dial(&sync, &args.port, &args.number, &SystemClock))
        .with_context(|| format!("syncing by dialing {} on {}", args.number, args.port))?;
    let s = &o.session;
    println!(
        "synced with {} ({} at site {}): {} entries received, {} sent; {} bytes on the line",
        s.peer.node.short(),
        s.peer.role,
        s.peer.site,
        s.stats.entries_applied,
        s.stats.applied_by_peer,
        o.line.bytes_sent + o.line.bytes_received
    );
    for r in s.refused_here.iter().chain(&s.refused_by_peer) {
        println!("refused: {r}");
    }
    Ok(())
}

pub fn answer(args: AnswerArgs) -> Result<()> {
    let sync = open(&args.data)?;
    let _verifier = verifier(&sync, &args.data)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    println!("answering calls on {}", args.port);
    runtime()?
        .block_on(call::answer(&sync, &args.port, clock, args.calls))
        .with_context(|| format!("answering calls on {}", args.port))
}
