//! [`ServerModels`]: the model list of the ACE-Step server the session uses, asked for on a
//! helper thread so the editor never waits on the network (a server that is slow or down would
//! freeze the DAW's window). The editor reads the last answer; one older than its freshness is
//! asked again, one question at a time.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use backline_engine::backend::{Backend, ModelsInfo};

/// How long an answer stands before it is asked again.
pub const FRESH_FOR: Duration = Duration::from_secs(3);

#[derive(Default)]
pub struct ServerModels {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Counts server changes: an answer from before the last change is dropped.
    server: u64,
    answer: Option<Result<ModelsInfo, String>>,
    asked_at: Option<Instant>,
    /// The last question's thread: one at a time (a question to a server the session left ends
    /// before the next server is asked), and joined at shutdown, as no thread of the plugin's
    /// may outlive it.
    thread: Option<JoinHandle<()>>,
}

impl ServerModels {
    /// The last answer (`None` until the first arrives); asks `backend` again when it is stale.
    pub fn read(self: &Arc<Self>, backend: &Arc<dyn Backend>) -> Option<Result<ModelsInfo, String>> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let stale = state.asked_at.is_none_or(|t| t.elapsed() >= FRESH_FOR);
        let idle = state.thread.as_ref().is_none_or(JoinHandle::is_finished);
        if stale && idle {
            let server = state.server;
            let (models, backend) = (Arc::clone(self), Arc::clone(backend));
            let asked = std::thread::Builder::new().name("backline-server-models".into()).spawn(move || {
                let answer = backend.models().map_err(|e| e.to_string());
                let mut state = models.state.lock().unwrap_or_else(|p| p.into_inner());
                if state.server == server {
                    state.answer = Some(answer);
                }
            });
            match asked {
                // The thread before has ended.
                Ok(thread) => drop(state.thread.replace(thread)),
                Err(e) => state.answer = Some(Err(format!("cannot ask the server: {e}"))),
            }
            state.asked_at = Some(Instant::now());
        }
        state.answer.clone()
    }

    /// Waits for the question out, if any (its HTTP calls have timeouts). Main thread, at
    /// shutdown.
    pub fn finish(&self) {
        let thread = self.state.lock().unwrap_or_else(|p| p.into_inner()).thread.take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }

    /// Forgets what the last server said: the session now uses another (or none).
    pub fn reset(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.server += 1;
        state.answer = None;
        state.asked_at = None;
    }
}
