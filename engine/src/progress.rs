//! Progress out and cancellation in: what a running job and the code it calls share.
//!
//! A leaf below both the job engine (`job`), which builds a [`JobContext`] for each job, and the
//! pipeline, which reports through it. Cancellation is a value ([`Cancelled`]) from the flag to
//! the caller; where it has to cross candle's callbacks, a [`StopSignal`] records that the
//! callback stopped the run, so a stop is never read back out of an error message.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};

/// The job was cancelled (or its engine is shutting down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the job was cancelled")]
pub struct Cancelled;

/// What a running job can report (the progress events of `job::JobEvent`).
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// A model or tokenizer is being loaded.
    Loading(String),
    /// The job entered a stage ("audio", "text", "diffusion", "decode", ...).
    Stage(String),
    /// Step `index` (0-based) of `count` in the current stage has finished.
    Step { index: usize, count: usize },
}

/// The running job's view of its job: progress out, cancellation in.
pub struct JobContext<'a> {
    cancel: &'a AtomicBool,
    /// `None` for a detached context, whose progress goes nowhere.
    progress: Option<&'a dyn Fn(Progress)>,
}

impl<'a> JobContext<'a> {
    /// A context whose progress goes to `sink`.
    pub fn new(cancel: &'a AtomicBool, sink: &'a dyn Fn(Progress)) -> Self {
        Self { cancel, progress: Some(sink) }
    }

    /// A context outside any engine (a pipeline test): progress is dropped, and the job counts as
    /// cancelled once `cancel` is set.
    pub fn detached(cancel: &'a AtomicBool) -> Self {
        Self { cancel, progress: None }
    }

    /// Reports that `what` (a model, a tokenizer) is being loaded.
    pub fn loading(&self, what: &str) {
        self.send(Progress::Loading(what.to_string()));
    }

    /// Reports that the job has entered the stage `name`.
    pub fn stage(&self, name: &str) {
        self.send(Progress::Stage(name.to_string()));
    }

    /// Reports that step `index` (0-based) of `count` has finished.
    pub fn step(&self, index: usize, count: usize) {
        self.send(Progress::Step { index, count });
    }

    /// Whether the job has been cancelled (or the engine is shutting down).
    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(SeqCst)
    }

    /// `Err(Cancelled)` once the job has been cancelled: call it with `?` between steps.
    pub fn check_cancelled(&self) -> Result<(), Cancelled> {
        if self.is_cancelled() {
            Err(Cancelled)
        } else {
            Ok(())
        }
    }

    fn send(&self, progress: Progress) {
        if let Some(sink) = self.progress {
            sink(progress);
        }
    }
}

/// Lets a callback inside a candle computation (a sampler step, a VAE tile) stop it on cancel.
///
/// candle's callbacks can only stop a run with a `candle_core::Error`. [`StopSignal::check`]
/// returns one and remembers that it did, and [`StopSignal::outcome`] turns that run's result
/// back into `Err(Stopped::Cancelled)`, apart from any real model error.
#[derive(Default)]
pub struct StopSignal {
    stopped: Cell<bool>,
}

/// Why a candle computation watched by a [`StopSignal`] did not finish.
#[derive(Debug)]
pub enum Stopped {
    Cancelled,
    Failed(candle_core::Error),
}

impl StopSignal {
    pub fn new() -> Self {
        Self::default()
    }

    /// For the callback: `Ok` while the job runs, a stopping error once it is cancelled.
    pub fn check(&self, ctx: &JobContext) -> candle_core::Result<()> {
        if ctx.is_cancelled() {
            self.stopped.set(true);
            Err(candle_core::Error::Msg("stopped: the job was cancelled".into()))
        } else {
            Ok(())
        }
    }

    /// The run's result, with the stop this signal made told apart from a failure.
    pub fn outcome<T>(&self, result: candle_core::Result<T>) -> Result<T, Stopped> {
        match result {
            Ok(value) => Ok(value),
            Err(_) if self.stopped.get() => Err(Stopped::Cancelled),
            Err(e) => Err(Stopped::Failed(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detached_context_follows_its_flag_and_drops_progress() {
        let cancel = AtomicBool::new(false);
        let ctx = JobContext::detached(&cancel);
        ctx.stage("dit");
        ctx.step(0, 8);
        assert_eq!(ctx.check_cancelled(), Ok(()));
        cancel.store(true, SeqCst);
        assert!(ctx.is_cancelled());
        assert_eq!(ctx.check_cancelled(), Err(Cancelled));
    }

    #[test]
    fn a_stop_signal_tells_its_own_stop_from_a_model_error() {
        let cancel = AtomicBool::new(false);
        let ctx = JobContext::detached(&cancel);
        let signal = StopSignal::new();
        assert!(signal.check(&ctx).is_ok());
        // A model error while the job runs stays a failure, even if a cancel comes in later.
        let failed = signal.outcome::<()>(Err(candle_core::Error::Msg("shape mismatch".into())));
        cancel.store(true, SeqCst);
        assert!(matches!(failed, Err(Stopped::Failed(_))));
        // Once the callback has stopped the run, its error reads as the cancel it was.
        let stop = signal.check(&ctx).unwrap_err();
        assert!(matches!(signal.outcome::<()>(Err(stop)), Err(Stopped::Cancelled)));
    }
}
