//! The worker thread that owns the [`Nodes`] implementation. The UI sends it jobs and
//! polls for their replies between frames, so a slow card or link never freezes the
//! screen. Jobs run one at a time, in order: a node is one terminal, as at a real till.

use crate::nodes::Nodes;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

/// A job: asks the nodes something and returns the reply; may report progress on the way
/// (permille) through the callback.
pub type Job<R> = Box<dyn FnOnce(&dyn Nodes, &mut dyn FnMut(u16)) -> R + Send>;

/// What comes back from the worker.
pub enum Event<R> {
    Progress(u16),
    Done(R),
}

pub struct Worker<R> {
    jobs: Option<Sender<Job<R>>>,
    events: Receiver<Event<R>>,
    pending: usize,
    thread: Option<JoinHandle<()>>,
}

impl<R: Send + 'static> Worker<R> {
    pub fn spawn(nodes: Box<dyn Nodes>) -> Worker<R> {
        let (job_tx, job_rx) = mpsc::channel::<Job<R>>();
        let (event_tx, event_rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("console-worker".into())
            .spawn(move || {
                for job in job_rx {
                    let progress_tx = event_tx.clone();
                    let mut progress = move |p| {
                        let _ = progress_tx.send(Event::Progress(p));
                    };
                    let reply = job(nodes.as_ref(), &mut progress);
                    if event_tx.send(Event::Done(reply)).is_err() {
                        break;
                    }
                }
                // `nodes` drops here, on the thread that used it: endpoints close cleanly.
            })
            .expect("the OS can start a thread");
        Worker {
            jobs: Some(job_tx),
            events: event_rx,
            pending: 0,
            thread: Some(thread),
        }
    }

    pub fn send(&mut self, job: Job<R>) {
        if let Some(tx) = &self.jobs
            && tx.send(job).is_ok()
        {
            self.pending += 1;
        }
    }

    /// Jobs sent and not yet answered.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// The next event, waiting at most `wait`.
    pub fn poll(&mut self, wait: Duration) -> Option<Event<R>> {
        let event = match self.events.recv_timeout(wait) {
            Ok(e) => e,
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
        };
        if matches!(event, Event::Done(_)) {
            self.pending = self.pending.saturating_sub(1);
        }
        Some(event)
    }
}

impl<R> Drop for Worker<R> {
    fn drop(&mut self) {
        // Closing the channel ends the thread's loop after the job in hand.
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
