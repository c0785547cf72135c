//! [`Session`]: the plugin instance's side that is not the audio thread. It owns the engine
//! backend, the captured bars, the loaded take audio and the session's ends of the bridge, and
//! the editor shares it. Jobs belong to it, not to the editor: closing the editor neither stops
//! nor repeats a job, and a finished job becomes a take with the editor closed.
//!
//! The backend is this process's engine ([`LocalBackend`]) or an ACE-Step server
//! ([`RemoteBackend`]), as the machine settings say; jobs, takes and the editor are the same for
//! both.
//!
//! Threads:
//! - the service thread (started in `initialize`) drains capture blocks into the store, frees
//!   takes the audio thread retired, submits when the Generate parameter turns on, and reloads
//!   take audio after the host loads a project or re-activates at a new rate;
//! - the engine worker (the local engine's, or the remote backend's client thread) runs each
//!   job's callback: progress into [`JobView`]s, results into takes;
//! - a helper thread asks a server for its models ([`ServerModels`]);
//! - a download thread, while the model panel downloads weights ([`ModelDownload`]);
//! - the GUI thread calls the rest.
//!
//! Every lock here is held for a copy or a short edit, never across a model call or file I/O
//! that another thread waits on, and never by the audio thread.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use backline_engine::audio::analysis::analyze_take;
use backline_engine::audio::grid::Grid;
use backline_engine::audio::seam::{seam_report, SeamFix, SeamRepaint};
use backline_engine::audio::take_shape::GridReport;
use backline_engine::audio::AudioBuffer;
use backline_engine::backend::{AudioInput, Backend, JobRequest, LocalBackend, LocalSettings, ModelsInfo, RemoteBackend, RemoteSettings};
use backline_engine::precision::Precision;
use backline_engine::job::{JobControl, JobEvent};
use backline_engine::pipeline::recipe::Recipe;
use backline_engine::pipeline::Generation;
use backline_engine::task::TaskType;

use crate::bridge::{self, AudioEnds, SessionEnds, ToAudio, TAKE_SLOTS};
use crate::capture_store::{CaptureStore, MIN_CAPTURE_LIMIT_S};
use crate::draft::{job_request, task_title, TakePlan};
use crate::model_download::{DownloadState, ModelDownload};
use crate::params::BacklineParams;
use crate::playback::TakeAudio;
use crate::server_models::ServerModels;
use crate::settings::MachineSettings;
use crate::state::{SessionState, TakeRecord};
use crate::takes::{self, cut_to_plan, file_name, load_take, repainted_loop, saved_placement, write_take};
use crate::transport::TransportSnapshot;
use crate::AudioShared;

/// How often the service thread wakes: capture blocks are 5 ms, and the ring holds 5 s.
const SERVICE_PERIOD: Duration = Duration::from_millis(5);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic on another thread must not lock the user out of their session.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Where a job is, for the editor.
#[derive(Debug, Clone, PartialEq)]
pub enum JobState {
    Queued { position: usize },
    Loading { what: String },
    Running { stage: String, step: usize, steps: usize },
}

/// One queued or running job.
pub struct JobView {
    pub title: String,
    pub state: Mutex<JobState>,
    pub control: OnceLock<JobControl>,
}

/// The audio thread's activation as the session knows it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Activation {
    sample_rate: f32,
    max_block: u32,
}

pub struct Session {
    /// The host-visible parameters and the persisted session (draft, takes, slots).
    pub params: Arc<BacklineParams>,
    /// What the audio thread publishes (transport, meters, counters).
    pub audio: Arc<AudioShared>,
    ends: Mutex<Option<SessionEnds>>,
    activation: Mutex<Option<Activation>>,
    capture: Mutex<CaptureStore>,
    /// Loaded take audio at the current host rate, by take id.
    take_audio: Mutex<HashMap<u64, Arc<TakeAudio>>>,
    /// The engine jobs go to, made on first use; replaced when the machine settings change.
    backend: Mutex<Option<Arc<dyn Backend>>>,
    /// What the server says it has, when jobs go to one. Asked for on its own thread.
    server_models: Arc<ServerModels>,
    machine: Mutex<MachineSettings>,
    jobs: Mutex<Vec<Arc<JobView>>>,
    /// Messages for the editor, newest last: failed jobs, missing take files, rate changes.
    notices: Mutex<Vec<String>>,
    /// The state restore whose takes are loaded (restores are counted by the session field).
    loaded_restores: AtomicU64,
    /// Held while takes are loaded and sent, so `activate` and the service thread never load
    /// the same take twice.
    syncing: Mutex<()>,
    stop: AtomicBool,
    service: Mutex<Option<JoinHandle<()>>>,
    /// Started and cancelled by the GUI thread; its own thread fetches and reports.
    download: ModelDownload,
}

impl Session {
    /// Cheap: hosts create instances just to scan them. Threads start in [`start`](Self::start).
    pub fn new(params: Arc<BacklineParams>, audio: Arc<AudioShared>) -> Arc<Self> {
        let machine = MachineSettings::load();
        Arc::new(Self {
            params,
            audio,
            ends: Mutex::new(None),
            activation: Mutex::new(None),
            capture: Mutex::new(CaptureStore::new(machine.capture_limit_s)),
            take_audio: Mutex::new(HashMap::new()),
            backend: Mutex::new(None),
            server_models: Arc::default(),
            machine: Mutex::new(machine),
            jobs: Mutex::new(Vec::new()),
            notices: Mutex::new(Vec::new()),
            loaded_restores: AtomicU64::new(0),
            syncing: Mutex::new(()),
            stop: AtomicBool::new(false),
            service: Mutex::new(None),
            download: ModelDownload::default(),
        })
    }

    /// Starts the service thread (once).
    pub fn start(self: &Arc<Self>) {
        let mut service = lock(&self.service);
        if service.is_some() {
            return;
        }
        let weak = Arc::downgrade(self);
        // Read before the thread exists: a Generate pressed while it starts is a new request,
        // not part of what it found.
        let seen_generate = self.audio.generate_requests.load(Ordering::Acquire);
        let spawned = std::thread::Builder::new()
            .name("backline-session".into())
            .spawn(move || service_loop(weak, seen_generate));
        match spawned {
            Ok(handle) => *service = Some(handle),
            Err(e) => self.notice(format!("Backline could not start its background thread ({e}); capture and takes are off.")),
        }
    }

    /// Stops the service thread and the engine (cancelling its jobs). Main thread, on drop of
    /// the plugin: the backend is dropped here, never on its own worker.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::Release);
        // Not joined: a download ends at its next chunk and keeps what arrived.
        self.download.cancel();
        if let Some(handle) = lock(&self.service).take() {
            let _ = handle.join();
        }
        let backend = lock(&self.backend).take();
        drop(backend);
        self.server_models.finish();
    }

    /// Main thread (`activate`): fresh queues for a new processor, with the slots' takes loaded
    /// for the (maybe new) rate and already queued for it, so the first block plays them: a
    /// host that activates right before an offline render (a bounce) hears every take.
    pub fn connect(&self, sample_rate: f32, max_block: u32) -> AudioEnds {
        let (session_ends, audio_ends) = bridge::new();
        *lock(&self.ends) = Some(session_ends);
        let now = Activation { sample_rate, max_block };
        let before = lock(&self.activation).replace(now);
        if let Some(before) = before.filter(|b| b.sample_rate != sample_rate) {
            lock(&self.take_audio).clear();
            let mut capture = lock(&self.capture);
            let had_capture = !capture.summary().is_empty();
            capture.clear();
            let dropped = if had_capture { " The captured bars were cleared: play them again." } else { "" };
            self.notice(format!(
                "The host changed the sample rate from {} Hz to {} Hz: takes are resampled.{dropped}",
                before.sample_rate, sample_rate
            ));
        } else if let Some(before) = before.filter(|b| b.max_block != max_block) {
            self.notice(format!("The host changed the block size from {} to {} samples.", before.max_block, max_block));
        }
        self.sync_takes();
        audio_ends
    }

    /// A message for the editor; also written to the host's log, where it outlives the editor.
    pub fn notice(&self, text: String) {
        nice_plug::nice_log!("{text}");
        let mut notices = lock(&self.notices);
        notices.push(text);
        let excess = notices.len().saturating_sub(20);
        notices.drain(..excess);
    }

    pub fn notices(&self) -> Vec<String> {
        lock(&self.notices).clone()
    }

    pub fn dismiss_notices(&self) {
        lock(&self.notices).clear();
    }

    pub fn machine(&self) -> MachineSettings {
        lock(&self.machine).clone()
    }

    /// Points the session at another checkpoints folder and remembers it for this machine.
    pub fn set_checkpoints(&self, folder: String) {
        if self.remember("The checkpoints folder", |m| std::mem::replace(&mut m.checkpoints, folder.clone()) != folder) {
            let old = lock(&self.backend).take();
            drop(old);
        }
    }

    /// Where jobs run: on the ACE-Step server at `url` (with its API key) when `use_server`, else
    /// in this process; remembered for this machine. An address without a scheme gets `http://`.
    /// Jobs of the engine left are cancelled.
    pub fn set_server(&self, use_server: bool, url: &str, api_key: &str) {
        let url = server_address(url);
        let api_key = api_key.trim().to_owned();
        let changed = self.remember("The engine choice", |m| {
            let before = (m.use_server, std::mem::take(&mut m.server_url), std::mem::take(&mut m.server_api_key));
            (m.use_server, m.server_url, m.server_api_key) = (use_server, url.clone(), api_key.clone());
            before != (use_server, url, api_key)
        });
        if changed {
            let old = lock(&self.backend).take();
            drop(old);
            self.server_models.reset();
        }
    }

    pub fn download(&self) -> &ModelDownload {
        &self.download
    }

    /// Download `models` into `folder` off the GUI thread; once every one arrived and validated,
    /// the session uses that folder. A failure is also a notice.
    pub fn start_download(self: &Arc<Self>, folder: String, models: Vec<&'static backline_engine::hub::HubModel>) -> Result<(), String> {
        if folder.trim().is_empty() {
            return Err("Choose the folder the models go in first.".into());
        }
        let session = Arc::downgrade(self);
        let target = folder.trim().to_owned();
        self.download.start(PathBuf::from(&target), models, move |end| {
            let Some(session) = session.upgrade() else { return };
            match end {
                DownloadState::Finished { .. } => session.set_checkpoints(target),
                DownloadState::Failed { message } => session.notice(format!("Download failed: {message}")),
                _ => {}
            }
        })
    }

    /// How the engine holds the weights, remembered for this machine. The next job loads the
    /// models at the new precision (this session's engine is rebuilt; models the old one loaded
    /// are freed once no Backline uses them).
    pub fn set_precision(&self, precision: Precision) {
        if self.remember("The precision", |m| std::mem::replace(&mut m.precision, precision) != precision) {
            let old = lock(&self.backend).take();
            drop(old);
        }
    }

    /// How many seconds of input the capture keeps, remembered for this machine. A lower limit
    /// drops the oldest bars now.
    pub fn set_capture_limit(&self, seconds: f64) {
        let seconds = seconds.max(MIN_CAPTURE_LIMIT_S);
        lock(&self.capture).set_limit_s(seconds);
        self.remember("The capture limit", |m| std::mem::replace(&mut m.capture_limit_s, seconds) != seconds);
    }

    /// Applies `change` to this machine's settings and saves them when it reports a change;
    /// a failed save is a notice naming `what`. Returns whether anything changed.
    fn remember(&self, what: &str, change: impl FnOnce(&mut MachineSettings) -> bool) -> bool {
        let mut machine = lock(&self.machine);
        if !change(&mut machine) {
            return false;
        }
        if let Err(e) = machine.save() {
            self.notice(format!("{what} is used but not remembered: {e}"));
        }
        true
    }

    /// The backend the machine settings name (the checkpoints folder here, or a server), made
    /// on first use.
    fn backend(&self) -> Result<Arc<dyn Backend>, String> {
        if self.stop.load(Ordering::Acquire) {
            return Err("Backline is closing.".into());
        }
        let machine = self.machine();
        if machine.use_server && machine.server_url.is_empty() {
            return Err(format!("Enter the address of the ACE-Step server ({SERVER_EXAMPLE}), or choose This computer."));
        }
        if !machine.use_server && machine.checkpoints.is_empty() {
            return Err(format!("Choose the folder that holds the ACE-Step 1.5 checkpoints first. {HOW_TO_GET_WEIGHTS}"));
        }
        let mut backend = lock(&self.backend);
        if let Some(b) = backend.as_ref() {
            return Ok(Arc::clone(b));
        }
        let made: Arc<dyn Backend> = if machine.use_server {
            let mut settings = RemoteSettings::new(machine.server_url.clone());
            settings.api_key = Some(machine.server_api_key.clone()).filter(|k| !k.is_empty());
            Arc::new(RemoteBackend::new(settings).map_err(|e| format!("The server's client could not start: {e}"))?)
        } else {
            let settings = LocalSettings { precision: machine.precision, ..LocalSettings::cpu(PathBuf::from(&machine.checkpoints)) };
            Arc::new(LocalBackend::new(settings).map_err(|e| format!("The engine could not start: {e}"))?)
        };
        *backend = Some(Arc::clone(&made));
        Ok(made)
    }

    /// What the checkpoints folder holds, or why it cannot be read (with how to get weights).
    /// With a server: its last answer, asked for off this thread (the first call answers that
    /// it is asking).
    pub fn models(&self) -> Result<ModelsInfo, String> {
        let backend = self.backend()?;
        let machine = self.machine();
        if machine.use_server {
            return match self.server_models.read(&backend) {
                Some(answer) => answer,
                None => Err(format!("Asking {} for its models…", machine.server_url)),
            };
        }
        backend.models().map_err(|e| format!("{e}. {HOW_TO_GET_WEIGHTS}"))
    }

    /// The captured bars (behind the lock; hold it briefly).
    pub fn capture(&self) -> MutexGuard<'_, CaptureStore> {
        lock(&self.capture)
    }

    pub fn jobs(&self) -> Vec<Arc<JobView>> {
        lock(&self.jobs).clone()
    }

    /// Cancels every queued and running job.
    pub fn cancel_all(&self) {
        for job in self.jobs() {
            if let Some(control) = job.control.get() {
                control.cancel();
            }
        }
    }

    /// Submits the draft at the host's current tempo and meter. Errors are notices.
    pub fn generate(self: &Arc<Self>) {
        let draft = self.params.session.read().clone();
        if let Err(e) = self.submit(&draft, &self.audio.transport.read()) {
            self.notice(e);
        }
    }

    /// Submits the take's settings again with a new seed.
    pub fn reroll(self: &Arc<Self>, id: u64) {
        let Some(record) = self.params.session.read().takes.iter().find(|t| t.id == id).cloned() else { return };
        let r = &record.recipe.request;
        let draft = SessionState {
            task: r.task_type,
            caption: r.caption.clone(),
            lyrics: r.lyrics.clone(),
            instrumental: r.instrumental,
            keyscale: r.keyscale.clone().unwrap_or_default(),
            start_bar: record.start_bar,
            length_bars: record.bars,
            track_name: r.track_name.clone().or_else(|| r.track_classes.first().cloned()).unwrap_or_else(|| "drums".into()),
            strength: r.audio_cover_strength,
            steps: r.inference_steps.unwrap_or(0),
            seed: -1,
            model: r.model.clone().unwrap_or_default(),
            // Shaped as the take was (a take from before the grid: as the draft says now).
            take_options: record.recipe.grid.as_ref().map_or(self.params.session.read().take_options, |g| g.options),
            ..self.params.session.read().clone()
        };
        if let Err(e) = self.submit(&draft, &self.audio.transport.read()) {
            self.notice(e);
        }
    }

    fn submit(self: &Arc<Self>, draft: &SessionState, transport: &TransportSnapshot) -> Result<(), String> {
        let grid: Grid = transport.grid();
        let captured = if draft.task.needs_source_audio() {
            let region = self.capture().region(draft.start_bar as i64, draft.length_bars.max(1));
            match region {
                Ok(region) if region.audio.sample_rate as f64 != grid.sample_rate().round() => {
                    return Err("The captured bars are at another sample rate: play them again.".into())
                }
                Ok(region) => Some(region),
                Err(e) => return Err(format!("{}: {e}.", task_title(draft.task))),
            }
        } else {
            None
        };
        let (job, plan) = job_request(draft, &grid, captured.as_ref())?;
        let backend = self.backend()?;
        let title = match draft.task {
            TaskType::Lego | TaskType::Extract | TaskType::Complete => {
                format!("{} ({}), bars {}–{}", task_title(draft.task), draft.track_name, plan.bars.start_bar + 1, plan.bars.start_bar + plan.bars.bars)
            }
            _ => format!("{}, bars {}–{}", task_title(draft.task), plan.bars.start_bar + 1, plan.bars.start_bar + plan.bars.bars),
        };
        let view = Arc::new(JobView { title, state: Mutex::new(JobState::Queued { position: 0 }), control: OnceLock::new() });
        lock(&self.jobs).push(Arc::clone(&view));
        let weak = Arc::downgrade(self);
        let callback_view = Arc::clone(&view);
        let caption = draft.caption.clone();
        let control = backend.submit_with(
            job,
            Box::new(move |event| {
                if let Some(session) = weak.upgrade() {
                    session.on_event(&callback_view, event, &plan, &caption);
                }
            }),
        );
        let _ = view.control.set(control);
        Ok(())
    }

    /// Shows a job's progress in its view (the terminal events are the caller's to handle).
    fn show_progress(view: &JobView, event: &JobEvent<Generation>) {
        match event {
            JobEvent::Queued { position } => *lock(&view.state) = JobState::Queued { position: *position },
            JobEvent::Started => *lock(&view.state) = JobState::Running { stage: "starting".into(), step: 0, steps: 0 },
            JobEvent::Loading { what } => *lock(&view.state) = JobState::Loading { what: what.clone() },
            JobEvent::Stage { name } => *lock(&view.state) = JobState::Running { stage: name.clone(), step: 0, steps: 0 },
            JobEvent::Step { index, count } => {
                let mut state = lock(&view.state);
                if let JobState::Running { step, steps, .. } = &mut *state {
                    (*step, *steps) = (index + 1, *count);
                }
            }
            JobEvent::Done(_) | JobEvent::Failed(_) | JobEvent::Cancelled => {}
        }
    }

    /// The engine worker (or the submitting thread, for `Queued`): one event of one job.
    fn on_event(self: &Arc<Self>, view: &Arc<JobView>, event: JobEvent<Generation>, plan: &TakePlan, caption: &str) {
        let terminal = event.is_terminal();
        Self::show_progress(view, &event);
        match event {
            JobEvent::Done(generation) => {
                if let Err(e) = self.add_takes(&view.title, generation, plan, caption) {
                    self.notice(format!("{}: the result could not be kept: {e}", view.title));
                }
            }
            JobEvent::Failed(error) => self.notice(format!("{} failed: {error}", view.title)),
            _ => {}
        }
        // After the result is handled: a follow-up job (a loop's wrap) is listed by then, so the
        // queue never looks empty while work remains.
        if terminal {
            lock(&self.jobs).retain(|j| !Arc::ptr_eq(j, view));
        }
    }

    /// Shapes each item of a generation to its bars; keeps it as a take at once, or once the
    /// model has repainted its loop's wrap.
    fn add_takes(self: &Arc<Self>, title: &str, generation: Generation, plan: &TakePlan, caption: &str) -> Result<(), String> {
        let seeds = generation.recipe.seeds();
        for (item, audio) in generation.audio.iter().enumerate() {
            let (take, grid_report) = cut_to_plan(audio, plan)?;
            let seed = seeds.get(item).copied();
            let mut recipe = generation.recipe.clone();
            recipe.request.seed = seed.map(|s| backline_engine::request::Seed::One(s as i64));
            let title = format!("{title}{}", seed.map(|s| format!(", seed {s}")).unwrap_or_default());
            if plan.options.looped && plan.options.seam == SeamFix::Repaint {
                self.repaint_seam(title, recipe, take, grid_report, plan, caption);
            } else {
                self.keep_take(&title, recipe, take, grid_report, plan, caption)?;
            }
        }
        Ok(())
    }

    /// Has the model repaint a loop take's wrap (a second, short job, listed in the queue), then
    /// keeps the take; if that job fails or is cancelled, the crossfaded loop is kept.
    fn repaint_seam(self: &Arc<Self>, title: String, recipe: Recipe, take: TakeAudio, report: GridReport, plan: &TakePlan, caption: &str) {
        let closed = AudioBuffer::new(take.sample_rate as u32, vec![take.left.clone(), take.right.clone()]);
        let seam = SeamRepaint::new(&plan.bars, &closed);
        let mut request = recipe.request.clone();
        request.task_type = TaskType::Repaint;
        request.src_audio = None;
        request.duration = None;
        request.batch_size = Some(1);
        (request.repainting_start, request.repainting_end) = (seam.window_s.0, Some(seam.window_s.1));
        let job = JobRequest::new(request).with_source(AudioInput::samples("the loop, its wrap mid-pass", seam.source.clone()));
        let backend = match self.backend() {
            Ok(backend) => backend,
            Err(e) => {
                self.notice(format!("{title}: the loop's wrap could not be repainted ({e}); the crossfaded loop is kept"));
                if let Err(e) = self.keep_take(&title, recipe, take, report, plan, caption) {
                    self.notice(format!("{title}: the result could not be kept: {e}"));
                }
                return;
            }
        };
        let view = Arc::new(JobView {
            title: format!("{title}: repainting the loop's wrap"),
            state: Mutex::new(JobState::Queued { position: 0 }),
            control: OnceLock::new(),
        });
        lock(&self.jobs).push(Arc::clone(&view));
        let weak = Arc::downgrade(self);
        let callback_view = Arc::clone(&view);
        let (plan, caption) = (plan.clone(), caption.to_string());
        let mut waiting = Some((recipe, take, report));
        let control = backend.submit_with(
            job,
            Box::new(move |event| {
                let Some(session) = weak.upgrade() else { return };
                Self::show_progress(&callback_view, &event);
                if !event.is_terminal() {
                    return;
                }
                if let Some((recipe, crossfaded, mut report)) = waiting.take() {
                    let kept = match event {
                        JobEvent::Done(generation) => match repainted_loop(&generation, &seam, &plan) {
                            Ok(looped) => {
                                let both = AudioBuffer::new(looped.sample_rate as u32, vec![looped.left.clone(), looped.right.clone()]);
                                report.seam = seam_report(&both, Some(plan.grid().samples_per_beat()));
                                report.seam_fix = Some(SeamFix::Repaint);
                                looped
                            }
                            Err(e) => {
                                session.notice(format!("{title}: the repainted wrap could not be used ({e}); the crossfaded loop is kept"));
                                crossfaded
                            }
                        },
                        JobEvent::Failed(e) => {
                            session.notice(format!("{title}: repainting the loop's wrap failed ({e}); the crossfaded loop is kept"));
                            crossfaded
                        }
                        _ => crossfaded,
                    };
                    if let Err(e) = session.keep_take(&title, recipe, kept, report, &plan, &caption) {
                        session.notice(format!("{title}: the result could not be kept: {e}"));
                    }
                }
                lock(&session.jobs).retain(|j| !Arc::ptr_eq(j, &callback_view));
            }),
        );
        let _ = view.control.set(control);
    }

    /// Writes a shaped take, measures it, lists it with its recipe and makes it the A/B choice.
    fn keep_take(&self, title: &str, mut recipe: Recipe, take: TakeAudio, grid_report: GridReport, plan: &TakePlan, caption: &str) -> Result<(), String> {
        let id = {
            let mut state = self.params.session.write();
            let id = state.next_take_id;
            state.next_take_id += 1;
            id
        };
        let seed = recipe.seeds().first().copied();
        let name = file_name(id, &format!("{} {}", recipe.request.task_type.as_str(), caption), seed);
        let (path, sha) = write_take(&self.take_folder(), &name, &take)?;
        // The take as shaped, measured against the host's tempo and meter and the draft's key.
        let left_right = AudioBuffer::new(take.sample_rate as u32, vec![take.left.clone(), take.right.clone()]);
        let grid = plan.grid();
        let meter = grid.meter().to_string();
        recipe.analysis = Some(analyze_take(&left_right, Some(grid.bpm()), Some(&meter), plan.keyscale.as_deref()));
        recipe.grid = Some(grid_report);
        let record = TakeRecord {
            id,
            name: title.to_string(),
            file: path.display().to_string(),
            audio_sha256: sha,
            placement: saved_placement(plan),
            start_bar: plan.bars.start_bar,
            bars: plan.bars.bars,
            meter,
            recipe,
        };
        let audio = Arc::new(take);
        lock(&self.take_audio).insert(id, Arc::clone(&audio));
        {
            let mut state = self.params.session.write();
            state.takes.push(record);
            state.slots[0] = Some(id);
        }
        self.send_slot(0);
        Ok(())
    }

    /// Where new takes go: the project's folder, else this machine's default.
    pub fn take_folder(&self) -> PathBuf {
        let project = self.params.session.read().take_folder.clone();
        if project.is_empty() {
            lock(&self.machine).default_take_folder()
        } else {
            PathBuf::from(project)
        }
    }

    /// Puts take `id` (or nothing) in `slot` and tells the audio thread.
    pub fn assign_slot(&self, slot: usize, id: Option<u64>) {
        if slot >= TAKE_SLOTS {
            return;
        }
        self.params.session.write().slots[slot] = id;
        self.send_slot(slot);
    }

    /// Plays slot 1's take from its start, whatever the transport does (or stops).
    pub fn audition(&self, on: bool) {
        self.send(ToAudio::Audition { slot: 0, on });
    }

    pub fn rename_take(&self, id: u64, name: String) {
        if let Some(t) = self.params.session.write().takes.iter_mut().find(|t| t.id == id) {
            t.name = name;
        }
    }

    /// Removes a take from the list and its slots. The file stays (a producer may have dragged
    /// it into the DAW); the editor says where it is.
    pub fn delete_take(&self, id: u64) {
        let slots: Vec<usize> = {
            let mut state = self.params.session.write();
            state.takes.retain(|t| t.id != id);
            (0..TAKE_SLOTS).filter(|&k| state.slots[k] == Some(id)).collect()
        };
        for slot in slots {
            self.assign_slot(slot, None);
        }
        lock(&self.take_audio).remove(&id);
    }

    /// Tells the audio thread what slot `slot` holds now.
    fn send_slot(&self, slot: usize) {
        let Some(activation) = *lock(&self.activation) else { return };
        let (id, record) = {
            let state = self.params.session.read();
            let id = state.slots[slot];
            (id, id.and_then(|id| state.takes.iter().find(|t| t.id == id).cloned()))
        };
        let take = id.and_then(|id| lock(&self.take_audio).get(&id).cloned());
        let placement = record
            .map(|r| takes::placement(&r.placement, activation.sample_rate))
            .unwrap_or(crate::playback::Placement { start_quarters: 0.0, samples_per_quarter: 1.0, gain: 0.0 });
        self.send(ToAudio::SetTake { slot, take, placement });
    }

    fn send(&self, command: ToAudio) {
        if let Some(ends) = lock(&self.ends).as_mut() {
            if ends.commands.push(command).is_err() {
                self.notice("The audio thread is not taking commands (is the host processing?); try again.".into());
            }
        }
    }

    /// Loads the takes in the slots (again, after a state restore) and sends every slot.
    fn sync_takes(&self) {
        let _one = lock(&self.syncing);
        let restores = self.params.session.restores();
        if self.loaded_restores.swap(restores, Ordering::AcqRel) != restores {
            lock(&self.take_audio).clear();
        }
        self.reload_takes();
    }

    /// Loads the audio of every take in a slot that is not loaded at the current rate, and
    /// resends every slot. Missing or changed files are notices.
    fn reload_takes(&self) {
        let Some(activation) = *lock(&self.activation) else { return };
        let (records, slots) = {
            let state = self.params.session.read();
            (state.takes.clone(), state.slots)
        };
        for record in records.iter().filter(|r| slots.contains(&Some(r.id))) {
            if lock(&self.take_audio).contains_key(&record.id) {
                continue;
            }
            match load_take(record, activation.sample_rate) {
                Ok(audio) => {
                    lock(&self.take_audio).insert(record.id, Arc::new(audio));
                }
                Err(e) => self.notice(format!("Take \"{}\" cannot play: {e}.", record.name)),
            }
        }
        for slot in 0..TAKE_SLOTS {
            self.send_slot(slot);
        }
    }

    /// Service thread: one round of its chores.
    fn service(self: &Arc<Self>, seen_generate: &mut u64) {
        // Read before the capture is drained: the blocks captured before a press are then
        // in the store when the request is submitted below.
        let requests = self.audio.generate_requests.load(Ordering::Acquire);
        if let Some(ends) = lock(&self.ends).as_mut() {
            let mut capture = lock(&self.capture);
            while let Ok(block) = ends.capture.pop() {
                capture.add(&block);
            }
            let evicted = capture.take_evicted();
            let limit_s = capture.limit_s();
            drop(capture);
            while let Ok(take) = ends.retired.pop() {
                drop(take);
            }
            if evicted > 0 {
                self.notice(format!(
                    "The capture limit ({limit_s:.0} s) was reached: the {evicted} bar(s) recorded longest ago were dropped."
                ));
            }
        }
        // A project loaded since: its takes replace what is loaded (`activate` loads them too).
        if self.params.session.restores() != self.loaded_restores.load(Ordering::Acquire) {
            self.sync_takes();
        }
        if requests != *seen_generate {
            *seen_generate = requests;
            // At the tempo and meter of the block in which Generate turned on.
            let draft = self.params.session.read().clone();
            if let Err(e) = self.submit(&draft, &self.audio.generate_transport.read()) {
                self.notice(e);
            }
        }
    }
}

fn service_loop(session: Weak<Session>, mut seen_generate: u64) {
    loop {
        let Some(s) = session.upgrade() else { return };
        if s.stop.load(Ordering::Acquire) {
            return;
        }
        s.service(&mut seen_generate);
        drop(s);
        std::thread::sleep(SERVICE_PERIOD);
    }
}

/// Said wherever a folder holds no usable weights.
/// What a server's address looks like, for messages and the editor's hint.
pub const SERVER_EXAMPLE: &str = "such as http://192.168.1.20:8001";

/// `host:port` as `http://host:port`; no trailing `/`.
fn server_address(typed: &str) -> String {
    let typed = typed.trim().trim_end_matches('/');
    if typed.is_empty() || typed.contains("://") {
        typed.to_owned()
    } else {
        format!("http://{typed}")
    }
}

pub const HOW_TO_GET_WEIGHTS: &str = "Choose a folder and press Download below (or run `backline models download \
--checkpoints DIR`): it fetches acestep-v15-turbo, vae and Qwen3-Embedding-0.6B from the model hub; \
acestep-v15-base adds lego, extract and complete.";
