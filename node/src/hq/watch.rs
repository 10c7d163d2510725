//! HQ verifies by itself. A running HQ node audits after every commit that brought
//! entries — from whichever link: an iroh session, a serial call, a USB stick — so a
//! clone, a broken chain or a bad TAC is answered with an alarm and a network-wide block
//! without anyone typing `cardmesh report audit`; and it checks the open grey locks
//! every so often, since a lock goes stale with time rather than with entries.
//!
//! The trigger is the store's commit notice (`Store::subscribe`); what is verified and
//! what is answered is `audit`'s, and the decision the model's. A watch does one last
//! audit when it stops, so a one-shot command (a stick sync) leaves nothing unanswered.

use super::HqError;
use super::audit::{self, AuditReport};
use super::report;
use crate::identity::{self, DataDir};
use crate::keys::{self, KeyError};
use crate::store::{Clock, Store};
use cardmesh_drivers::crypto::Key16;
use cardmesh_model::Role;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often open grey locks are checked when no entries arrive.
pub const LOCK_CHECK_EVERY: Duration = Duration::from_secs(60);
/// How long a stop request may wait for the watch to notice it.
const WAKE: Duration = Duration::from_millis(200);

/// The running verifier of an HQ node. Dropping it stops it after a last audit.
pub struct Watch {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    outcome: Arc<Mutex<Outcome>>,
}

/// What the watch has done so far.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub audits: u64,
    /// Entries appended (alarms and blocks) by every audit so far.
    pub appended: u64,
    /// The last audit's failure, if it failed; the next notice retries.
    pub last_error: Option<String>,
}

impl Watch {
    /// Starts verifying `store`, an HQ node's, holding the TAC master key `tac`: once
    /// now, after every commit that brought entries, and every `lock_check` for stale
    /// grey locks (their allowed age is the network registry's setting).
    pub fn start(
        store: Store,
        tac: Key16,
        clock: Arc<dyn Clock>,
        lock_check: Duration,
    ) -> Result<Watch, HqError> {
        super::require_hq(&store)?;
        let stop = Arc::new(AtomicBool::new(false));
        let outcome = Arc::new(Mutex::new(Outcome::default()));
        let notices = store.subscribe();
        let thread = {
            let (stop, outcome) = (stop.clone(), outcome.clone());
            std::thread::Builder::new()
                .name("cardmesh-hq-verify".into())
                .spawn(move || {
                    let run = |outcome: &Mutex<Outcome>| {
                        record(outcome, audit_now(&store, &tac, clock.as_ref()))
                    };
                    run(&outcome);
                    let mut checked = Instant::now();
                    while !stop.load(Ordering::Relaxed) {
                        match notices.recv_timeout(WAKE) {
                            Ok(_) => {
                                // One audit covers every notice queued behind this one.
                                while notices.try_recv().is_ok() {}
                                run(&outcome);
                                checked = Instant::now();
                            }
                            Err(RecvTimeoutError::Timeout) if checked.elapsed() >= lock_check => {
                                run(&outcome);
                                checked = Instant::now();
                            }
                            Err(RecvTimeoutError::Timeout) => {}
                            Err(RecvTimeoutError::Disconnected) => break,
                        }
                    }
                    run(&outcome);
                })
                .map_err(HqError::Spawn)?
        };
        Ok(Watch {
            stop,
            thread: Some(thread),
            outcome,
        })
    }

    /// The watch of a node's data folder if the node is HQ and holds the TAC master key;
    /// `None` for any other node (sites verify nothing) and for an HQ before its key
    /// ceremony (it says so in the log).
    pub fn for_node(
        store: &Store,
        dir: &DataDir,
        clock: Arc<dyn Clock>,
    ) -> Result<Option<Watch>, HqError> {
        if store.own_certificate().role != Role::Hq {
            return Ok(None);
        }
        let key = identity::load_key(dir)?;
        let tac = match keys::held(store, &key) {
            Ok(held) => held.tac(),
            Err(KeyError::NoCeremony) => None,
            Err(e) => return Err(e.into()),
        };
        match tac {
            Some(tac) => Ok(Some(Watch::start(
                store.clone(),
                tac,
                clock,
                LOCK_CHECK_EVERY,
            )?)),
            None => {
                tracing::warn!(
                    "no TAC master key yet: transactions are not verified until the key ceremony"
                );
                Ok(None)
            }
        }
    }

    pub fn outcome(&self) -> Outcome {
        self.outcome
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("the HQ verifier panicked");
        }
    }
}

/// One audit at the clock's now, with the network's allowed grey lock age.
fn audit_now(store: &Store, tac: &Key16, clock: &dyn Clock) -> Result<AuditReport, HqError> {
    let max_age = report::grey_lock_max_age_ms(store)?;
    audit::audit(store, tac, clock.now_ms(), max_age)
}

fn record(outcome: &Mutex<Outcome>, result: Result<AuditReport, HqError>) {
    let mut o = outcome.lock().unwrap_or_else(PoisonError::into_inner);
    o.audits += 1;
    match result {
        Ok(r) => {
            o.appended += r.appended.len() as u64;
            o.last_error = None;
            for asn in &r.blocked {
                tracing::warn!(card = %asn, "card blocked network-wide by HQ's verification");
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "HQ verification failed; retrying at the next change");
            o.last_error = Some(e.to_string());
        }
    }
}
