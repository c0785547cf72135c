//! The resident job engine: one worker thread owns the models and runs generation jobs one at a
//! time, in the order they were submitted.
//!
//! Threading contract:
//! - [`Engine::start`] spawns the thread [`THREAD_NAME`] and builds the [`Worker`] on it with the
//!   factory. Models load there once, off the GUI and audio threads, and stay resident for every
//!   later job. The worker never leaves that thread, so it need not be `Send`.
//! - [`Engine::submit`] never blocks. It queues the request and returns a [`JobHandle`] with the
//!   job's own event channel. Events go through unbounded channels, so a slow or dropped receiver
//!   never stalls the worker.
//! - Each job gets `Queued`, then `Started` and progress events if it runs, and exactly one terminal
//!   event (`Done`, `Failed` or `Cancelled`), also when the worker panics or the engine is dropped.
//!   Nothing follows the terminal event, and the channel disconnects soon after it.
//! - Cancelling is cooperative. The worker calls [`JobContext::check_cancelled`] between DiT steps
//!   and between VAE tiles, so a running job ends within one step. A job cancelled while queued
//!   never runs: it gets `Cancelled` at once, sent by the thread that cancels it.
//! - A panic in [`Worker::run`] is caught and becomes `Failed(JobError::Panicked)`. The same worker,
//!   models still loaded, serves the next job. If the factory fails or panics, every job fails with
//!   [`JobError::WorkerInit`], which names the cause.
//! - Dropping the [`Engine`] cancels the running job and every queued one, then joins the thread.
//!   Dropping a [`JobHandle`] does not cancel its job: jobs belong to the plugin, not the editor.

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

pub use crate::error::JobError;
pub use crate::progress::{JobContext, Progress};

/// The worker thread's name, as debuggers and panic messages show it.
pub const THREAD_NAME: &str = "backline-engine";

/// The work the engine runs: the ACE-Step pipeline in the plugin, fakes in tests.
///
/// A worker is built on the engine's thread and lives there until the engine is dropped, so it
/// holds the resident models. It may also load them lazily on its first job, reporting that with
/// [`JobContext::loading`].
pub trait Worker: 'static {
    type Request: Send + 'static;
    type Output: Send + 'static;

    /// Runs one job. Reports progress and checks for cancellation through `ctx`.
    ///
    /// Return [`JobError::Cancelled`] (what `ctx.check_cancelled()?` does) to end a cancelled job.
    /// After a panic the same worker runs the next job, so per-job state (a KV cache, say) should
    /// be reset at the start of `run`, not only at its end.
    fn run(&mut self, request: Self::Request, ctx: &JobContext<'_>) -> Result<Self::Output, JobError>;
}

/// Names one job of one engine. Ids count up from 1 in submission order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobId(pub u64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What a [`JobHandle`] hears about its job, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum JobEvent<O> {
    /// Sent by `submit`. `position` counts the jobs ahead of this one, the running one included,
    /// at the time of submission: 0 means it starts as soon as the worker is free.
    Queued { position: usize },
    /// The worker has taken the job up.
    Started,
    /// The worker is loading something (a model) before it can go on.
    Loading { what: String },
    /// The job has entered a pipeline stage ("encode", "dit", "vae", ...).
    Stage { name: String },
    /// Step `index` (0-based) of `count` in the current stage has finished.
    Step { index: usize, count: usize },
    /// Terminal: the result.
    Done(O),
    /// Terminal: the job failed, panicked, or the worker could not start.
    Failed(JobError),
    /// Terminal: the job was cancelled, while queued or while running.
    Cancelled,
}

impl<O> JobEvent<O> {
    /// True for `Done`, `Failed` and `Cancelled`, the last event of every job.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Done(_) | Self::Failed(_) | Self::Cancelled)
    }
}

impl<O> From<Progress> for JobEvent<O> {
    fn from(progress: Progress) -> Self {
        match progress {
            Progress::Loading(what) => Self::Loading { what },
            Progress::Stage(name) => Self::Stage { name },
            Progress::Step { index, count } => Self::Step { index, count },
        }
    }
}

/// Where a job's events go: the handle's channel, or a callback that runs where the event
/// happens (on the worker thread for everything from `Started` on).
enum Sink<O> {
    Channel(Sender<JobEvent<O>>),
    Callback(Mutex<EventCallback<O>>),
}

/// A callback for every event of one job (see [`Engine::submit_with`]).
pub type EventCallback<O> = Box<dyn FnMut(JobEvent<O>) + Send>;

/// Cancels jobs by id: the part of a backend that a [`JobControl`] holds.
pub trait CancelJob: Send + Sync {
    /// Cancels job `id`. Returns false when it has already ended (or never existed).
    fn cancel(&self, id: JobId) -> bool;
}

/// A job's id and its cancel hook, from any backend. Cheap to clone; holding one does not keep
/// the job alive.
#[derive(Clone)]
pub struct JobControl {
    id: JobId,
    canceller: Arc<dyn CancelJob>,
}

impl JobControl {
    pub fn new(id: JobId, canceller: Arc<dyn CancelJob>) -> Self {
        Self { id, canceller }
    }

    pub fn id(&self) -> JobId {
        self.id
    }

    /// Cancels the job: at once if it is queued, at its next check if it is running. Returns
    /// false when it has already ended.
    pub fn cancel(&self) -> bool {
        self.canceller.cancel(self.id)
    }
}

impl fmt::Debug for JobControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobControl").field("id", &self.id).finish_non_exhaustive()
    }
}

// A job's life: QUEUED -> RUNNING -> ENDED, or QUEUED -> ENDED when it is cancelled while queued.
// Whoever moves it to ENDED sends its terminal event, so there is exactly one.
const QUEUED: u8 = 0;
const RUNNING: u8 = 1;
const ENDED: u8 = 2;

/// One job, shared by the engine's table of live jobs and the queue entry on its way to the worker.
struct Job<O> {
    id: JobId,
    state: AtomicU8,
    cancel: AtomicBool,
    events: Sink<O>,
}

impl<O> Job<O> {
    /// Events to a dropped handle are ignored.
    fn send(&self, event: JobEvent<O>) {
        match &self.events {
            Sink::Channel(sender) => {
                let _ = sender.send(event);
            }
            // A callback that panicked once has poisoned nothing of ours: keep calling it.
            Sink::Callback(callback) => (callback.lock().unwrap_or_else(PoisonError::into_inner))(event),
        }
    }

    /// Flags the job as cancelled. A queued job ends here, with its `Cancelled` event (returns
    /// true); a running one ends at its next `check_cancelled`.
    fn cancel(&self) -> bool {
        self.cancel.store(true, SeqCst);
        let ended_here = self.state.compare_exchange(QUEUED, ENDED, SeqCst, SeqCst).is_ok();
        if ended_here {
            self.send(JobEvent::Cancelled);
        }
        ended_here
    }
}

/// State shared by the engine, its handles and the worker thread.
struct Shared<O> {
    jobs: Mutex<Jobs<O>>,
}

struct Jobs<O> {
    next_id: u64,
    /// Jobs that are queued or running, by id (so in submission order).
    live: BTreeMap<JobId, Arc<Job<O>>>,
}

impl<O> Shared<O> {
    fn lock(&self) -> MutexGuard<'_, Jobs<O>> {
        // Nothing panics while holding the lock, and the table stays consistent if it did.
        self.jobs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn cancel_job(&self, id: JobId) -> bool {
        let mut jobs = self.lock();
        let Some(job) = jobs.live.get(&id) else { return false };
        if job.cancel() {
            jobs.live.remove(&id);
        }
        true
    }

    fn cancel_all(&self) {
        self.lock().live.retain(|_, job| !job.cancel());
    }

    /// The worker's end of a job that ran (or could not run): exactly one terminal event.
    fn finish(&self, job: &Job<O>, result: Result<O, JobError>) {
        // Out of the table first, so a `submit` made after the handle sees the result counts
        // positions without this job.
        self.lock().live.remove(&job.id);
        job.state.store(ENDED, SeqCst);
        job.send(match result {
            Ok(output) => JobEvent::Done(output),
            Err(JobError::Cancelled) => JobEvent::Cancelled,
            Err(err) => JobEvent::Failed(err),
        });
    }
}

impl<O: Send> CancelJob for Shared<O> {
    fn cancel(&self, id: JobId) -> bool {
        self.cancel_job(id)
    }
}

/// A request on its way to the worker.
struct Queued<W: Worker> {
    job: Arc<Job<W::Output>>,
    request: W::Request,
}

/// The resident engine: one worker thread, a FIFO queue of jobs, a table of live jobs for cancel.
///
/// `Engine` is `Send + Sync`: the plugin can share it (in an `Arc`) between the GUI thread and
/// whoever else submits. Dropping it cancels everything and joins the thread (see the module doc).
pub struct Engine<W: Worker> {
    shared: Arc<Shared<W::Output>>,
    /// `None` only while dropping: closing the queue is what lets the worker return.
    queue: Option<Sender<Queued<W>>>,
    thread: Option<JoinHandle<()>>,
}

impl<W: Worker> Engine<W> {
    /// Spawns the worker thread and builds the worker on it with `factory`.
    ///
    /// Returns at once; the factory runs on the new thread, before the first job. If it returns an
    /// error or panics, every job fails with [`JobError::WorkerInit`]. The only error here is the
    /// OS refusing to spawn a thread.
    pub fn start<F, E>(factory: F) -> std::io::Result<Self>
    where
        F: FnOnce() -> Result<W, E> + Send + 'static,
        E: fmt::Display,
    {
        let shared = Arc::new(Shared { jobs: Mutex::new(Jobs { next_id: 1, live: BTreeMap::new() }) });
        let (queue, requests) = crossbeam_channel::unbounded();
        let worker_shared = Arc::clone(&shared);
        let thread = thread::Builder::new()
            .name(THREAD_NAME.to_string())
            .spawn(move || serve(factory, requests, &worker_shared))?;
        Ok(Self { shared, queue: Some(queue), thread: Some(thread) })
    }

    /// Queues `request` behind the jobs already submitted. Never blocks.
    pub fn submit(&self, request: W::Request) -> JobHandle<W::Output> {
        let (events, receiver) = crossbeam_channel::unbounded();
        let id = self.enqueue(request, Sink::Channel(events));
        JobHandle { control: self.control(id), events: receiver }
    }

    /// Like [`submit`](Self::submit), but every event of the job goes to `on_event` instead of
    /// a channel. It runs on the worker thread for `Started` through the terminal event, so the
    /// result is handled even when nobody is listening (the plugin builds its take there). Only
    /// `Queued` (on the submitting thread) and a `Cancelled` for a job cancelled while queued (on
    /// the cancelling thread) arrive elsewhere. Keep it short: the next job waits for it.
    pub fn submit_with(&self, request: W::Request, on_event: EventCallback<W::Output>) -> JobControl {
        let id = self.enqueue(request, Sink::Callback(Mutex::new(on_event)));
        self.control(id)
    }

    fn control(&self, id: JobId) -> JobControl {
        JobControl::new(id, Arc::clone(&self.shared) as Arc<dyn CancelJob>)
    }

    fn enqueue(&self, request: W::Request, events: Sink<W::Output>) -> JobId {
        // Holding the lock from id to queue keeps ids, positions and queue order in agreement when
        // several threads submit.
        let mut jobs = self.shared.lock();
        let id = JobId(jobs.next_id);
        jobs.next_id += 1;
        let job = Arc::new(Job { id, state: AtomicU8::new(QUEUED), cancel: AtomicBool::new(false), events });
        job.send(JobEvent::Queued { position: jobs.live.len() });
        let entry = Queued { job: Arc::clone(&job), request };
        match self.queue.as_ref().map(|queue| queue.send(entry)) {
            Some(Ok(())) => {
                jobs.live.insert(id, job);
            }
            // The worker thread is gone (it cannot be while `self` lives, short of a bug).
            _ => {
                job.state.store(ENDED, SeqCst);
                job.send(JobEvent::Failed(JobError::EngineStopped));
            }
        }
        id
    }

    /// Cancels job `id`: at once if it is queued, at its next check if it is running. Returns false
    /// when the job has already ended (or never existed).
    pub fn cancel(&self, id: JobId) -> bool {
        self.shared.cancel_job(id)
    }

    /// Cancels the running job and every queued one.
    pub fn cancel_all(&self) {
        self.shared.cancel_all();
    }

    /// How many jobs are queued or running.
    pub fn pending(&self) -> usize {
        self.shared.lock().live.len()
    }
}

impl<W: Worker> Drop for Engine<W> {
    fn drop(&mut self) {
        self.shared.cancel_all();
        // With the queue closed, the worker skips what is left in it (all ended by now), drops the
        // worker and returns. A running job ends at its next `check_cancelled`; a factory still
        // loading models is waited for.
        self.queue = None;
        if let Some(thread) = self.thread.take() {
            // A panic on that thread outside `Worker::run` would be a bug here; the jobs it left
            // have seen `EngineStopped` through their disconnected channels.
            let _ = thread.join();
        }
    }
}

/// The worker thread's body.
fn serve<W, F, E>(factory: F, requests: Receiver<Queued<W>>, shared: &Shared<W::Output>)
where
    W: Worker,
    F: FnOnce() -> Result<W, E>,
    E: fmt::Display,
{
    let mut worker = match panic::catch_unwind(AssertUnwindSafe(factory)) {
        Ok(Ok(worker)) => Ok(worker),
        Ok(Err(err)) => Err(err.to_string()),
        Err(payload) => Err(format!("it panicked: {}", panic_message(payload.as_ref()))),
    };
    for Queued { job, request } in requests {
        if job.state.compare_exchange(QUEUED, RUNNING, SeqCst, SeqCst).is_err() {
            continue; // cancelled while queued: it has had its `Cancelled` already
        }
        let result = match &mut worker {
            Err(cause) => Err(JobError::WorkerInit(cause.clone())),
            Ok(_) if job.cancel.load(SeqCst) => Err(JobError::Cancelled),
            Ok(worker) => run_job(worker, request, &job),
        };
        shared.finish(&job, result);
    }
}

fn run_job<W: Worker>(worker: &mut W, request: W::Request, job: &Job<W::Output>) -> Result<W::Output, JobError> {
    job.send(JobEvent::Started);
    let progress = |progress: Progress| job.send(progress.into());
    let ctx = JobContext::new(&job.cancel, &progress);
    // The worker may be mid-update when it panics; it is reused anyway, because reloading the
    // models would cost more than the risk (see `Worker::run`).
    panic::catch_unwind(AssertUnwindSafe(|| worker.run(request, &ctx)))
        .unwrap_or_else(|payload| Err(JobError::Panicked(panic_message(payload.as_ref()))))
}

/// The message of a panic payload (`panic!` with a literal gives `&str`, with arguments `String`).
fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        message.to_string()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// The submitter's end of one job: its id, its events, and cancel. Any backend can make one
/// from a channel and a [`JobControl`].
///
/// Dropping the handle leaves the job running; its events are then discarded.
pub struct JobHandle<O> {
    control: JobControl,
    events: Receiver<JobEvent<O>>,
}

impl<O> JobHandle<O> {
    pub fn new(control: JobControl, events: Receiver<JobEvent<O>>) -> Self {
        Self { control, events }
    }

    pub fn id(&self) -> JobId {
        self.control.id()
    }

    /// Cancels the job (see [`Engine::cancel`]). Returns false when it has already ended.
    pub fn cancel(&self) -> bool {
        self.control.cancel()
    }

    /// The id and cancel hook alone, to keep after the handle has been consumed by `wait`.
    pub fn control(&self) -> JobControl {
        self.control.clone()
    }

    /// The job's events, for polling (`try_recv` on the GUI thread) or `select!`.
    pub fn events(&self) -> &Receiver<JobEvent<O>> {
        &self.events
    }

    /// Blocks until the job ends, skipping progress events.
    pub fn wait(self) -> Result<O, JobError> {
        self.wait_until(None).unwrap_or(Err(JobError::EngineStopped))
    }

    /// Like [`wait`](Self::wait), but gives up after `timeout` and returns `None`. The events
    /// read so far are consumed. Once it has returned `Some`, the job is over: do not wait again.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Result<O, JobError>> {
        self.wait_until(Some(Instant::now() + timeout))
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Option<Result<O, JobError>> {
        loop {
            let event = match deadline {
                Some(deadline) => self.events.recv_deadline(deadline),
                None => self.events.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match event {
                Ok(JobEvent::Done(output)) => return Some(Ok(output)),
                Ok(JobEvent::Failed(err)) => return Some(Err(err)),
                Ok(JobEvent::Cancelled) => return Some(Err(JobError::Cancelled)),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => return None,
                Err(RecvTimeoutError::Disconnected) => return Some(Err(JobError::EngineStopped)),
            }
        }
    }
}

impl<O> fmt::Debug for JobHandle<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobHandle").field("id", &self.id()).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_message_reads_str_and_string_payloads() {
        let literal = panic::catch_unwind(|| panic!("plain")).unwrap_err();
        assert_eq!(panic_message(literal.as_ref()), "plain");
        let formatted = panic::catch_unwind(|| panic!("step {}", 3)).unwrap_err();
        assert_eq!(panic_message(formatted.as_ref()), "step 3");
        let other = panic::catch_unwind(|| panic::panic_any(7_u32)).unwrap_err();
        assert_eq!(panic_message(other.as_ref()), "a panic without a message");
    }

    #[test]
    fn cancel_ends_only_a_queued_job_and_only_once() {
        let (events, receiver) = crossbeam_channel::unbounded::<JobEvent<()>>();
        let job =
            Job { id: JobId(1), state: AtomicU8::new(QUEUED), cancel: AtomicBool::new(false), events: Sink::Channel(events) };
        // The worker took it up first: cancel only raises the flag.
        assert!(job.state.compare_exchange(QUEUED, RUNNING, SeqCst, SeqCst).is_ok());
        assert!(!job.cancel());
        assert!(job.cancel.load(SeqCst));
        assert!(receiver.try_recv().is_err());
        // A second cancel of a queued job sends nothing more.
        job.state.store(QUEUED, SeqCst);
        assert!(job.cancel());
        assert!(!job.cancel());
        assert_eq!(receiver.try_iter().collect::<Vec<_>>(), vec![JobEvent::Cancelled]);
    }
}
