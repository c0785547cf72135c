//! Where jobs run: this computer or an ACE-Step server (its address and key; what it serves, or
//! why it cannot be reached). On this computer, the checkpoints folder: where it is (remembered
//! for this machine), what it holds, which tasks each model runs, what is loaded and the memory it
//! takes, and the weights' precision with the memory of each choice. A wrong folder is a message
//! that says how to get the weights, and the panel downloads them: the models generation needs,
//! or any other published one, into the folder in the field, with progress and a cancel.

use std::sync::Arc;
use std::time::{Duration, Instant};

use backline_engine::backend::ModelsInfo;
use backline_engine::hub::registry::{self, HubModel};
use backline_engine::precision::Precision;

use super::browse_button;
use crate::folder_dialog::FolderDialog;
use crate::model_download::DownloadState;
use crate::session::{Session, SERVER_EXAMPLE};

/// How often the panel reads the folder again while open (it may be filled by a download).
const REFRESH: Duration = Duration::from_secs(3);
/// How often it reads the session's last answer from a server (asked for off the GUI thread).
const SERVER_REFRESH: Duration = Duration::from_millis(250);

pub struct ModelsPanel {
    folder: String,
    /// The engine row as edited (applied by its radio buttons, Connect or Enter).
    use_server: bool,
    server_url: String,
    api_key: String,
    info: Option<Result<ModelsInfo, String>>,
    read_at: Option<Instant>,
    dialog: FolderDialog,
    /// What the Download button fetches: 0 for what generation needs, else `registry::MODELS[i - 1]`.
    download_choice: usize,
}

impl ModelsPanel {
    pub fn new(session: &Session) -> Self {
        let machine = session.machine();
        Self {
            folder: machine.checkpoints,
            use_server: machine.use_server,
            server_url: machine.server_url,
            api_key: machine.server_api_key,
            info: None,
            read_at: None,
            dialog: FolderDialog::default(),
            download_choice: 0,
        }
    }

    /// The section with its title: the engine choice shares the title's row.
    pub fn show(&mut self, ui: &mut egui::Ui, session: &Arc<Session>) {
        ui.horizontal(|ui| {
            ui.strong("Models");
            ui.add_space(12.0);
            self.show_engine_row(ui, session);
        });
        if self.use_server {
            self.show_server(ui, session);
            return;
        }
        let picked = ui.horizontal(|ui| {
            ui.label("Checkpoints folder");
            let edit = ui.add(
                egui::TextEdit::singleline(&mut self.folder)
                    .hint_text("/path/to/ACE-Step-1.5/checkpoints")
                    .desired_width(420.0),
            );
            let entered = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            if ui.button("Use").clicked() || entered {
                session.set_checkpoints(self.folder.trim().to_owned());
                self.read_at = None;
            }
            let folder = &self.folder;
            browse_button(ui, &mut self.dialog, session, "Choose the ACE-Step checkpoints folder", || {
                folder.trim().into()
            })
        });
        if let Some(folder) = picked.inner {
            self.folder = folder.display().to_string();
            session.set_checkpoints(self.folder.clone());
            self.read_at = None;
        }
        if self.read_at.is_none_or(|t| t.elapsed() > REFRESH) {
            self.info = Some(session.models());
            self.read_at = Some(Instant::now());
        }
        match &self.info {
            Some(Ok(info)) => {
                show_info(ui, info);
                ui.horizontal(|ui| {
                    if let Some(precision) = precision_choice(ui, info, session.jobs().is_empty()) {
                        session.set_precision(precision);
                        self.read_at = None;
                    }
                    let resident: u64 = info.resident.iter().map(|r| r.bytes).sum();
                    ui.weak(format!(
                        "In memory: {} of models, shared by every Backline in this DAW (budget {})",
                        gib(resident),
                        gib(info.budget_bytes)
                    ));
                });
            }
            Some(Err(message)) => {
                ui.colored_label(ui.visuals().warn_fg_color, message);
            }
            None => {}
        }
        if self.show_download(ui, session) {
            self.read_at = None;
        }
    }

    /// This computer or a server; with a server, its address, key and Connect.
    fn show_engine_row(&mut self, ui: &mut egui::Ui, session: &Arc<Session>) {
        ui.horizontal(|ui| {
            ui.label("Engine");
            let mut use_server = self.use_server;
            ui.radio_value(&mut use_server, false, "This computer");
            ui.radio_value(&mut use_server, true, "ACE-Step server")
                .on_hover_text("`backline serve` or ACE-Step's own API server, on this or another machine");
            let mut apply = use_server != self.use_server;
            self.use_server = use_server;
            if use_server {
                let address = ui.add(
                    egui::TextEdit::singleline(&mut self.server_url).hint_text(SERVER_EXAMPLE.trim_start_matches("such as ")).desired_width(200.0),
                );
                ui.label("Key");
                let key = ui.add(egui::TextEdit::singleline(&mut self.api_key).password(true).hint_text("none").desired_width(90.0));
                let entered = (address.lost_focus() || key.lost_focus()) && ui.input(|i| i.key_pressed(egui::Key::Enter));
                apply |= ui.button("Connect").clicked() || entered;
            }
            if apply {
                session.set_server(self.use_server, &self.server_url, &self.api_key);
                self.server_url = session.machine().server_url;
                self.read_at = None;
                self.info = None;
            }
        });
    }

    /// What the server serves (each model and its tasks), or why it cannot be used.
    fn show_server(&mut self, ui: &mut egui::Ui, session: &Arc<Session>) {
        // Cheap: the session asks the server on its own thread and keeps the answer.
        if self.read_at.is_none_or(|t| t.elapsed() > SERVER_REFRESH) {
            self.info = Some(session.models());
            self.read_at = Some(Instant::now());
        }
        match &self.info {
            Some(Ok(info)) => {
                ui.label(format!("{} answers: jobs run there, and its models load there.", session.machine().server_url));
                show_server_models(ui, info);
            }
            Some(Err(message)) => {
                ui.colored_label(ui.visuals().warn_fg_color, message);
            }
            None => {}
        }
    }

    /// The download row: a choice and its button, or the running download's progress and
    /// Cancel. Returns whether the folder's contents may have changed.
    fn show_download(&mut self, ui: &mut egui::Ui, session: &Arc<Session>) -> bool {
        let state = session.download().state();
        if let DownloadState::Running { model, file, done_bytes, total_bytes } = &state {
            ui.horizontal(|ui| {
                let share = if *total_bytes > 0 { *done_bytes as f32 / *total_bytes as f32 } else { 0.0 };
                let text = format!("{model}: {file}  {} of {}", gib(*done_bytes), gib(*total_bytes));
                ui.add(egui::ProgressBar::new(share).text(text).desired_width(460.0));
                if ui.button("Cancel download").clicked() {
                    session.download().cancel();
                }
            });
            ui.ctx().request_repaint_after(Duration::from_millis(200));
            return true;
        }
        let label = |choice: usize| match choice.checked_sub(1).map(|i| &registry::MODELS[i]) {
            None => format!("what generation needs: turbo, VAE, text encoder ({})", approx(&essential())),
            Some(model) => format!("{} ({})", model.name, approx(&[model])),
        };
        let mut started = false;
        ui.horizontal(|ui| {
            ui.label("Download");
            egui::ComboBox::from_id_salt("download-model")
                .selected_text(label(self.download_choice))
                .width(330.0)
                .show_ui(ui, |ui| {
                    for choice in 0..=registry::MODELS.len() {
                        ui.selectable_value(&mut self.download_choice, choice, label(choice));
                    }
                });
            let has_folder = !self.folder.trim().is_empty();
            let button = ui
                .add_enabled(has_folder, egui::Button::new("Download"))
                .on_hover_text("From the model hub (HF_ENDPOINT names a mirror) into the folder above; resumes partial files and checks every file")
                .on_disabled_hover_text("Choose the folder the models go in first.");
            if button.clicked() {
                let models = match self.download_choice.checked_sub(1) {
                    None => essential(),
                    Some(i) => vec![&registry::MODELS[i]],
                };
                if let Err(message) = session.start_download(self.folder.clone(), models) {
                    session.notice(message);
                }
                started = true;
            }
            // On the same row, so the panel keeps its height whatever the last download did.
            match &state {
                DownloadState::Finished { message } => {
                    // Short, so it fits beside the button; the models it fetched on hover.
                    ui.label("Downloaded and checked.").on_hover_text(message);
                }
                DownloadState::Cancelled => {
                    ui.label("Cancelled: what arrived is kept, and the next download resumes it.");
                }
                DownloadState::Failed { message } => {
                    // The whole message is also among the notices at the top.
                    ui.colored_label(ui.visuals().warn_fg_color, "Download failed (see the message above)").on_hover_text(message);
                }
                DownloadState::Idle | DownloadState::Running { .. } => {}
            }
        });
        started
    }
}

fn essential() -> Vec<&'static HubModel> {
    registry::ESSENTIAL.iter().filter_map(|name| registry::find(name)).collect()
}

fn approx(models: &[&HubModel]) -> String {
    format!("about {:.1} GB", models.iter().map(|m| m.approx_bytes).sum::<u64>() as f64 / 1e9)
}

fn gib(bytes: u64) -> String {
    if bytes < 1 << 30 {
        format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
    } else {
        format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
    }
}

/// A server's models: name, tasks, and whether it holds the model in memory.
fn show_server_models(ui: &mut egui::Ui, info: &ModelsInfo) {
    if info.dits.is_empty() {
        ui.colored_label(ui.visuals().warn_fg_color, "The server lists no ACE-Step model.");
    }
    egui::Grid::new("server-models").num_columns(3).spacing([12.0, 4.0]).show(ui, |ui| {
        for dit in &info.dits {
            ui.monospace(&dit.name);
            let tasks: Vec<&str> = dit.tasks.iter().map(|t| t.as_str()).collect();
            ui.label(tasks.join(", "));
            ui.label(if dit.loaded { "loaded" } else { "not loaded" });
            ui.end_row();
        }
    });
}

fn show_info(ui: &mut egui::Ui, info: &ModelsInfo) {
    let warn = ui.visuals().warn_fg_color;
    if let Some(problem) = &info.shared_problem {
        ui.colored_label(warn, format!("{problem}. {}", crate::session::HOW_TO_GET_WEIGHTS));
    }
    if info.dits.is_empty() {
        ui.colored_label(warn, format!("No ACE-Step DiT folder (acestep-v15-*) here. {}", crate::session::HOW_TO_GET_WEIGHTS));
    }
    egui::Grid::new("models").num_columns(4).spacing([12.0, 4.0]).show(ui, |ui| {
        for dit in &info.dits {
            ui.monospace(&dit.name);
            match &dit.problem {
                Some(problem) => {
                    ui.colored_label(warn, problem);
                }
                None => {
                    let tasks: Vec<&str> = dit.tasks.iter().map(|t| t.as_str()).collect();
                    ui.label(tasks.join(", "));
                    ui.label(gib(dit.bytes));
                    ui.label(if dit.loaded { "loaded" } else { "not loaded" });
                }
            }
            ui.end_row();
        }
    });
}

/// The weights' precision, each choice with the memory a generation needs at it (the largest DiT
/// here plus the text encoder and VAE). Changing it waits for the jobs to finish: the engine is
/// rebuilt for it. Returns the choice the user made.
fn precision_choice(ui: &mut egui::Ui, info: &ModelsInfo, idle: bool) -> Option<Precision> {
    let label = |p: Precision| match info.memory_at(p) {
        Some(bytes) => format!("{} ({})", p.describe(), gib(bytes)),
        None => p.describe().to_string(),
    };
    let mut chosen = info.precision;
    ui.label("Weights");
    ui.add_enabled_ui(idle, |ui| {
        egui::ComboBox::from_id_salt("precision")
            .selected_text(info.precision.name())
            .width(60.0)
            .show_ui(ui, |ui| {
                for p in Precision::ALL {
                    // A format this CPU cannot run at speed is shown, greyed, with the reason.
                    let missing = p.missing_instructions();
                    ui.add_enabled_ui(missing.is_none(), |ui| {
                        let item = ui.selectable_value(&mut chosen, p, label(p));
                        if let Some(missing) = missing {
                            item.on_disabled_hover_text(format!("needs the {missing} instructions, which this CPU lacks"));
                        }
                    });
                }
            })
            .response
            .on_hover_text(label(info.precision))
            .on_disabled_hover_text("Finish or cancel the jobs to change the precision.");
    });
    (chosen != info.precision).then_some(chosen)
}
