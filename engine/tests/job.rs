//! The job engine with fake workers: FIFO order, progress and exactly one terminal event, cancel
//! while running and while queued, panics, a failing factory and shutdown. Every wait has a
//! timeout, so a bug fails a test instead of hanging it.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use backline_engine::job::{Engine, JobContext, JobError, JobEvent, JobHandle, Worker};
use crossbeam_channel::{Receiver, RecvTimeoutError};

/// Long enough for a loaded 2-core machine; a passing test never waits this long.
const TIMEOUT: Duration = Duration::from_secs(10);

/// What the fake worker does with one job. Its output is the job's tag.
enum Work {
    /// Returns at once.
    Echo,
    /// `steps` steps of `step_ms` each, checking cancel before each, inside stage "dit".
    Steps { steps: usize, step_ms: u64 },
    /// Like `Steps`, but each step waits for a tick from the test (the test decides the pace).
    Ticks(Receiver<()>),
    /// Waits until the gate is opened (a message or a dropped sender), checking cancel meanwhile.
    Gate(Receiver<()>),
    Panic(&'static str),
    Fail(&'static str),
}

struct Req {
    tag: u32,
    work: Work,
}

/// What the fakes record, shared with the test.
#[derive(Default)]
struct Probe {
    /// How many workers the factory built.
    built: AtomicUsize,
    /// Tags of the jobs whose `run` began, in order.
    ran: Mutex<Vec<u32>>,
}

struct Fake {
    probe: Arc<Probe>,
    loaded: bool,
}

impl Worker for Fake {
    type Request = Req;
    type Output = u32;

    fn run(&mut self, req: Req, ctx: &JobContext<'_>) -> Result<u32, JobError> {
        self.probe.ran.lock().unwrap().push(req.tag);
        if !self.loaded {
            ctx.loading("fake models");
            self.loaded = true;
        }
        match req.work {
            Work::Echo => {}
            Work::Steps { steps, step_ms } => {
                ctx.stage("dit");
                for i in 0..steps {
                    ctx.check_cancelled()?;
                    thread::sleep(Duration::from_millis(step_ms));
                    ctx.step(i, steps);
                }
                ctx.stage("vae");
            }
            Work::Ticks(ticks) => {
                ctx.stage("dit");
                for i in 0..usize::MAX {
                    ctx.check_cancelled()?;
                    if ticks.recv().is_err() {
                        return Err(JobError::model("test", "the test dropped its ticks"));
                    }
                    ctx.step(i, usize::MAX);
                }
            }
            Work::Gate(gate) => loop {
                ctx.check_cancelled()?;
                match gate.recv_timeout(Duration::from_millis(2)) {
                    Err(RecvTimeoutError::Timeout) => {}
                    _ => break,
                }
            },
            Work::Panic(message) => panic!("{message}"),
            Work::Fail(message) => return Err(JobError::model("test", message)),
        }
        Ok(req.tag)
    }
}

fn start() -> (Engine<Fake>, Arc<Probe>) {
    let probe = Arc::new(Probe::default());
    let factory_probe = Arc::clone(&probe);
    let engine = Engine::start(move || {
        factory_probe.built.fetch_add(1, SeqCst);
        Ok::<_, String>(Fake { probe: factory_probe, loaded: false })
    })
    .unwrap();
    (engine, probe)
}

fn req(tag: u32, work: Work) -> Req {
    Req { tag, work }
}

/// Every event of the job until its channel disconnects, which happens once the engine is done
/// with it. Asserts exactly one terminal event, and that it comes last.
fn drain<O: std::fmt::Debug>(handle: &JobHandle<O>) -> Vec<JobEvent<O>> {
    let mut events = Vec::new();
    loop {
        match handle.events().recv_timeout(TIMEOUT) {
            Ok(event) => events.push(event),
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => panic!("job {} still open after {events:?}", handle.id()),
        }
    }
    let terminals = events.iter().filter(|e| e.is_terminal()).count();
    assert_eq!(terminals, 1, "job {}: {events:?}", handle.id());
    assert!(events.last().unwrap().is_terminal(), "job {}: {events:?}", handle.id());
    events
}

fn wait<O>(handle: &JobHandle<O>) -> Result<O, JobError> {
    handle.wait_timeout(TIMEOUT).expect("the job did not end in time")
}

/// Waits for the first event matching `want`, skipping the others.
fn wait_for<O: std::fmt::Debug>(handle: &JobHandle<O>, want: impl Fn(&JobEvent<O>) -> bool) {
    loop {
        let event = handle.events().recv_timeout(TIMEOUT).expect("the event did not come");
        assert!(!event.is_terminal(), "the job ended first: {event:?}");
        if want(&event) {
            return;
        }
    }
}

#[test]
fn jobs_run_one_at_a_time_in_submission_order() {
    let (engine, probe) = start();
    let (open, gate) = crossbeam_channel::bounded(1);
    let first = engine.submit(req(0, Work::Gate(gate)));
    let rest: Vec<_> = (1..=5).map(|tag| engine.submit(req(tag, Work::Echo))).collect();
    assert_eq!(engine.pending(), 6);
    open.send(()).unwrap();

    let ids: Vec<_> = std::iter::once(&first).chain(&rest).map(|h| h.id().0).collect();
    assert_eq!(ids, [1, 2, 3, 4, 5, 6]);
    for (position, handle) in std::iter::once(&first).chain(&rest).enumerate() {
        let events = drain(handle);
        assert_eq!(events[0], JobEvent::Queued { position });
        assert_eq!(events.last(), Some(&JobEvent::Done(position as u32)));
    }
    assert_eq!(*probe.ran.lock().unwrap(), [0, 1, 2, 3, 4, 5]);
    assert_eq!(probe.built.load(SeqCst), 1);
    assert_eq!(engine.pending(), 0);
}

#[test]
fn progress_comes_in_order_with_one_terminal_event() {
    let (engine, _probe) = start();
    let events = drain(&engine.submit(req(9, Work::Steps { steps: 3, step_ms: 0 })));
    let expected = vec![
        JobEvent::Queued { position: 0 },
        JobEvent::Started,
        JobEvent::Loading { what: "fake models".into() },
        JobEvent::Stage { name: "dit".into() },
        JobEvent::Step { index: 0, count: 3 },
        JobEvent::Step { index: 1, count: 3 },
        JobEvent::Step { index: 2, count: 3 },
        JobEvent::Stage { name: "vae".into() },
        JobEvent::Done(9),
    ];
    assert_eq!(events, expected);

    // The models stay loaded: the second job does not load them again.
    let events = drain(&engine.submit(req(10, Work::Echo)));
    assert_eq!(events, [JobEvent::Queued { position: 0 }, JobEvent::Started, JobEvent::Done(10)]);
}

#[test]
fn cancel_while_running_lands_within_one_step() {
    let (engine, probe) = start();
    let (tick, ticks) = crossbeam_channel::unbounded();
    let handle = engine.submit(req(1, Work::Ticks(ticks)));
    for _ in 0..4 {
        tick.send(()).unwrap();
    }
    wait_for(&handle, |e| *e == JobEvent::Step { index: 3, count: usize::MAX });

    assert!(handle.cancel());
    // The worker is either at its next check, or already past it and waiting for step 4's tick.
    // One tick lets that step finish; the check before step 5 must then end the job.
    tick.send(()).unwrap();
    let rest = drain(&handle);
    let allowed = [
        vec![JobEvent::Cancelled],
        vec![JobEvent::Step { index: 4, count: usize::MAX }, JobEvent::Cancelled],
    ];
    assert!(allowed.contains(&rest), "after the cancel: {rest:?}");
    assert!(!engine.cancel(handle.id()), "an ended job cannot be cancelled");

    // The same worker goes on.
    assert_eq!(wait(&engine.submit(req(2, Work::Echo))), Ok(2));
    assert_eq!(*probe.ran.lock().unwrap(), [1, 2]);
}

#[test]
fn cancel_ends_a_sleeping_job_promptly() {
    let (engine, _probe) = start();
    let handle = engine.submit(req(1, Work::Steps { steps: 100_000, step_ms: 5 }));
    wait_for(&handle, |e| matches!(e, JobEvent::Step { .. }));
    let cancelled_at = Instant::now();
    assert!(engine.cancel(handle.id()));
    assert_eq!(wait(&handle), Err(JobError::Cancelled));
    assert!(cancelled_at.elapsed() < Duration::from_secs(2), "took {:?}", cancelled_at.elapsed());
}

#[test]
fn a_job_cancelled_while_queued_never_runs() {
    let (engine, probe) = start();
    let (open, gate) = crossbeam_channel::bounded(1);
    let first = engine.submit(req(0, Work::Gate(gate)));
    let doomed = engine.submit(req(1, Work::Echo));
    let last = engine.submit(req(2, Work::Echo));

    assert!(doomed.cancel());
    // `Cancelled` comes at once, while the first job still holds the worker.
    assert_eq!(wait(&doomed), Err(JobError::Cancelled));
    assert!(!engine.cancel(doomed.id()));
    assert_eq!(engine.pending(), 2);

    open.send(()).unwrap();
    assert_eq!(wait(&first), Ok(0));
    assert_eq!(wait(&last), Ok(2));
    // Nothing after the terminal event, and the channel closes once the worker has skipped it.
    assert_eq!(doomed.events().recv_timeout(TIMEOUT), Err(RecvTimeoutError::Disconnected));
    assert_eq!(*probe.ran.lock().unwrap(), [0, 2]);
}

#[test]
fn a_panic_fails_its_job_and_the_same_worker_runs_the_next() {
    let (engine, probe) = start();
    let panicking = engine.submit(req(1, Work::Panic("tensor shape mismatch")));
    let failing = engine.submit(req(2, Work::Fail("no such checkpoint")));
    let fine = engine.submit(req(3, Work::Steps { steps: 2, step_ms: 0 }));

    let events = drain(&panicking);
    assert_eq!(events.last(), Some(&JobEvent::Failed(JobError::Panicked("tensor shape mismatch".into()))));
    assert_eq!(wait(&failing), Err(JobError::model("test", "no such checkpoint")));
    assert_eq!(wait(&fine), Ok(3));
    assert_eq!(*probe.ran.lock().unwrap(), [1, 2, 3]);
    assert_eq!(probe.built.load(SeqCst), 1, "the worker was rebuilt");
}

#[test]
fn a_failing_factory_fails_every_job_with_its_cause() {
    let engine: Engine<Fake> = Engine::start(|| Err("no checkpoint in /models")).unwrap();
    let handles: Vec<_> = (0..3).map(|tag| engine.submit(req(tag, Work::Echo))).collect();
    for handle in &handles {
        let err = wait(handle).unwrap_err();
        assert_eq!(err, JobError::WorkerInit("no checkpoint in /models".into()));
        assert!(err.to_string().contains("no checkpoint in /models"), "{err}");
    }
    // Still answering after the first failures.
    assert!(matches!(wait(&engine.submit(req(9, Work::Echo))), Err(JobError::WorkerInit(_))));
}

#[test]
fn a_panicking_factory_fails_every_job_with_the_panic_message() {
    let engine: Engine<Fake> = Engine::start(|| -> Result<Fake, String> { panic!("out of memory") }).unwrap();
    let err = wait(&engine.submit(req(0, Work::Echo))).unwrap_err();
    assert_eq!(err, JobError::WorkerInit("it panicked: out of memory".into()));
    drop(engine); // joins without hanging
}

#[test]
fn dropping_the_engine_cancels_the_running_and_queued_jobs() {
    let (engine, probe) = start();
    let running = engine.submit(req(0, Work::Steps { steps: 100_000, step_ms: 2 }));
    let queued: Vec<_> = (1..=3).map(|tag| engine.submit(req(tag, Work::Echo))).collect();
    wait_for(&running, |e| *e == JobEvent::Started);

    let dropped_at = Instant::now();
    drop(engine);
    assert!(dropped_at.elapsed() < Duration::from_secs(2), "drop took {:?}", dropped_at.elapsed());

    assert_eq!(drain(&running).last(), Some(&JobEvent::Cancelled));
    for handle in &queued {
        assert_eq!(drain(handle).last(), Some(&JobEvent::Cancelled));
    }
    assert_eq!(*probe.ran.lock().unwrap(), [0]);
}

#[test]
fn a_dropped_handle_does_not_stall_the_engine() {
    let (engine, _probe) = start();
    drop(engine.submit(req(1, Work::Steps { steps: 20, step_ms: 1 })));
    let next = engine.submit(req(2, Work::Echo));
    assert_eq!(next.wait(), Ok(2));
}

/// Many jobs, cancelled from another thread while queued, running or already done: each still
/// gets exactly one terminal event (`drain` checks it).
#[test]
fn racing_cancels_never_give_a_job_two_endings() {
    let (engine, _probe) = start();
    let handles: Vec<_> = (0..200).map(|tag| engine.submit(req(tag, Work::Steps { steps: 3, step_ms: 0 }))).collect();
    let ids: Vec<_> = handles.iter().map(JobHandle::id).collect();
    let engine = Arc::new(engine);
    let canceller = {
        let engine = Arc::clone(&engine);
        thread::spawn(move || {
            for id in ids.iter().step_by(3) {
                engine.cancel(*id);
                thread::yield_now();
            }
        })
    };
    canceller.join().unwrap();
    let mut ended = [0; 2];
    for (tag, handle) in handles.iter().enumerate() {
        match drain(handle).pop().unwrap() {
            JobEvent::Done(output) => {
                assert_eq!(output, tag as u32);
                ended[0] += 1;
            }
            JobEvent::Cancelled => ended[1] += 1,
            other => panic!("job {tag}: {other:?}"),
        }
    }
    assert_eq!(ended[0] + ended[1], 200);
    assert!(ended[0] >= 200 - 67, "only every third job was cancelled: {ended:?}");
}

/// The worker never leaves its thread, so it need not be `Send` (an `Rc` inside is fine), and the
/// engine can still be shared between threads.
#[test]
fn a_worker_need_not_be_send_and_the_engine_is_shared() {
    struct Local(std::rc::Rc<u32>);
    impl Worker for Local {
        type Request = ();
        type Output = u32;
        fn run(&mut self, (): (), _ctx: &JobContext<'_>) -> Result<u32, JobError> {
            Ok(*self.0)
        }
    }
    fn shareable<T: Send + Sync>(_: &T) {}

    let engine = Engine::start(|| Ok::<_, String>(Local(std::rc::Rc::new(5)))).unwrap();
    shareable(&engine);
    let handle = thread::scope(|s| s.spawn(|| engine.submit(())).join().unwrap());
    assert_eq!(wait(&handle), Ok(5));
}
