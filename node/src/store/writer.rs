//! Group commit. One writer thread owns the write side of the store. Callers hand it
//! jobs through a bounded queue and wait for their answer; the writer takes everything
//! queued, runs it in ONE write transaction, makes it durable with ONE commit, and only
//! then answers every caller. Concurrent callers (eight nozzles and four tills) thus share
//! an fsync instead of queueing behind each other's.
//!
//! A job's own refusal (a bad entry, a foreign certificate) is its answer and does not
//! disturb the others; a storage failure dooms the whole batch, which is then answered
//! with that failure and leaves both disk and memory as they were.

use super::Clock;
use super::docs::DocCache;
use super::error::StoreError;
use super::schema::{self, META_HLC};
use super::views::Tables;
use cardmesh_model::{HlcClock, Membership, NodeKey, VersionVector};
use redb::{Database, Durability, ReadableTable};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

/// Jobs waiting for the writer; callers beyond this block, which bounds memory.
const QUEUE: usize = 1024;
/// Jobs in one transaction at most, so one commit never grows without bound.
const MAX_BATCH: usize = 4096;

/// What the writer keeps between transactions: the node's key, membership, clock and
/// version vector, all restored if a commit fails.
pub struct NodeState {
    pub key: NodeKey,
    pub membership: Membership,
    pub hlc: HlcClock,
    pub vv: VersionVector,
    pub clock: Arc<dyn Clock>,
}

/// What a job works with: the open tables of the shared transaction and the node state.
pub struct Ctx<'t> {
    pub tables: Tables<'t>,
    pub docs: DocCache,
    pub node: &'t mut NodeState,
    /// Whether the job running is the last of its group commit: see `sign_own_head`.
    pub last_job: bool,
    /// Whether this node's newest entry was appended in this group without a signature.
    pub own_head_unsigned: bool,
}

/// The answer channel of each subscriber (see `Store::subscribe`).
pub type Subscribers = Arc<Mutex<Vec<SyncSender<VersionVector>>>>;

trait Job: Send {
    /// Does the job's writes in the shared transaction; `Err` aborts the whole batch.
    fn run(&mut self, ctx: &mut Ctx<'_>) -> Result<(), StoreError>;
    /// Answers the caller once the batch is durable, or with the batch's failure.
    fn answer(self: Box<Self>, failure: Option<&StoreError>);
}

/// `work` returns `Err` for a storage failure and `Ok(answer)` otherwise.
struct Call<T, F> {
    work: Option<F>,
    outcome: Option<Result<T, StoreError>>,
    reply: SyncSender<Result<T, StoreError>>,
}

impl<T, F> Job for Call<T, F>
where
    T: Send,
    F: FnOnce(&mut Ctx<'_>) -> Result<Result<T, StoreError>, StoreError> + Send,
{
    fn run(&mut self, ctx: &mut Ctx<'_>) -> Result<(), StoreError> {
        let work = self.work.take().expect("a job runs once");
        self.outcome = Some(work(ctx)?);
        Ok(())
    }

    fn answer(self: Box<Self>, failure: Option<&StoreError>) {
        let outcome = match (failure, self.outcome) {
            (Some(e), _) => Err(e.clone()),
            (None, Some(outcome)) => outcome,
            (None, None) => unreachable!("a committed batch ran every job"),
        };
        // A caller that stopped waiting has nobody left to tell.
        let _ = self.reply.send(outcome);
    }
}

/// The store's side of the writer: the queue, and the thread to join on close.
pub struct Writer {
    queue: Option<SyncSender<Box<dyn Job>>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    pub fn spawn(
        db: Arc<Database>,
        node: NodeState,
        subscribers: Subscribers,
    ) -> Result<Writer, StoreError> {
        let (queue, jobs) = mpsc::sync_channel(QUEUE);
        let thread = std::thread::Builder::new()
            .name("cardmesh-store-writer".into())
            .spawn(move || run(&db, node, &jobs, &subscribers))?;
        Ok(Writer {
            queue: Some(queue),
            thread: Some(thread),
        })
    }

    /// Runs `work` in the next group commit and returns its answer once that is on disk.
    pub fn call<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Ctx<'_>) -> Result<Result<T, StoreError>, StoreError> + Send + 'static,
    {
        self.submit(work)?.wait()
    }

    /// Queues `work` for a group commit and returns at once. Jobs run in the order they
    /// were queued, so a caller with several queued jobs sees each one's writes in the
    /// next, and the writer puts what is queued together into one commit.
    pub fn submit<T, F>(&self, work: F) -> Result<Queued<T>, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Ctx<'_>) -> Result<Result<T, StoreError>, StoreError> + Send + 'static,
    {
        let (reply, answer) = mpsc::sync_channel(1);
        let job = Box::new(Call {
            work: Some(work),
            outcome: None,
            reply,
        });
        self.queue
            .as_ref()
            .ok_or(StoreError::Closed)?
            .send(job)
            .map_err(|_| StoreError::Closed)?;
        Ok(Queued(answer))
    }
}

/// The answer to a queued job, to wait for.
pub struct Queued<T>(Receiver<Result<T, StoreError>>);

impl<T> Queued<T> {
    /// The job's answer once its commit is on disk, or the failure that doomed it.
    pub fn wait(self) -> Result<T, StoreError> {
        self.0.recv().map_err(|_| StoreError::Closed)?
    }
}

impl Drop for Writer {
    /// Lets the writer finish what is queued, then waits for it, so that the database is
    /// closed when the last `Store` is gone.
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the store writer panicked");
        }
    }
}

fn run(
    db: &Database,
    mut node: NodeState,
    jobs: &Receiver<Box<dyn Job>>,
    subscribers: &Mutex<Vec<SyncSender<VersionVector>>>,
) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let before = (node.membership.clone(), node.hlc, node.vv.clone());
        match commit(db, &mut node, &mut batch) {
            Ok(()) => {
                for job in batch {
                    job.answer(None);
                }
                if node.vv != before.2 {
                    notify(subscribers, &node.vv);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "group commit failed; nothing of it was kept");
                (node.membership, node.hlc, node.vv) = before;
                for job in batch {
                    job.answer(Some(&e));
                }
            }
        }
    }
}

fn commit(
    db: &Database,
    node: &mut NodeState,
    batch: &mut [Box<dyn Job>],
) -> Result<(), StoreError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)
        .map_err(|e| StoreError::Database(e.to_string()))?;
    // A power cut must not turn the next start into a scan of the whole file.
    txn.set_quick_repair(true);
    let hlc_before = node.hlc;
    {
        let mut ctx = Ctx {
            tables: Tables::open(&txn)?,
            docs: DocCache::default(),
            node,
            last_job: false,
            own_head_unsigned: false,
        };
        let jobs = batch.len();
        for (i, job) in batch.iter_mut().enumerate() {
            ctx.last_job = i + 1 == jobs;
            job.run(&mut ctx)?;
        }
        let Ctx {
            mut tables,
            docs,
            node,
            own_head_unsigned,
            ..
        } = ctx;
        if own_head_unsigned {
            sign_own_head(&mut tables, &node.key)?;
        }
        tables.reports.flush()?;
        docs.flush(&mut tables.docs, &mut tables.doc_changes)?;
        if node.hlc != hlc_before {
            tables
                .meta
                .insert(META_HLC, schema::encode_view(&node.hlc.last()).as_slice())?;
        }
    }
    txn.commit()?;
    Ok(())
}

/// Signs this node's newest entry if it is not signed yet. The node's own entries are
/// signed only where a replica keeps signatures (every `CHECKPOINT_EVERY`th) and at the
/// end of each group commit: feed format 2 lets that one signature vouch, through the
/// hash chain, for the group's other entries, so eight tills sharing a commit cost one
/// signature instead of eight. The last job signs its own entry as it makes it; this
/// covers a group whose last job appended nothing, and runs only then.
fn sign_own_head(tables: &mut Tables<'_>, key: &NodeKey) -> Result<(), StoreError> {
    let own = key.node_id();
    let head = tables.head(&own)?;
    if head.seq == 0 {
        return Ok(());
    }
    let at = schema::entry_key(&own, head.seq);
    let mut entry = match tables.feeds.get(&at)? {
        Some(bytes) => schema::decode_entry(bytes.value())?,
        None => return Err(StoreError::corrupt("this node's feed lacks its head entry")),
    };
    if entry.sig.is_none() {
        entry.sign(key);
        tables.feeds.insert(&at, entry.encode().as_slice())?;
    }
    Ok(())
}

/// Tells every subscriber the new vector; one that has not read its last notice yet
/// keeps that notice (it will look up the current vector anyway), and one that hung up
/// is forgotten.
fn notify(subscribers: &Mutex<Vec<SyncSender<VersionVector>>>, vv: &VersionVector) {
    let mut subs = subscribers.lock().unwrap_or_else(PoisonError::into_inner);
    subs.retain(|s| !matches!(s.try_send(vv.clone()), Err(TrySendError::Disconnected(_))));
}
