//! The egui editor: the producer's whole workflow on one scrolling page, top to bottom in the
//! order it is used: transport, models, capture, request (with Generate and the job queue),
//! takes, and the plugin's controls.
//!
//! The editor holds an `Arc` of the [`Session`], never the plugin. It reads the transport through
//! the lock-free snapshot and edits the session through its short locks; the audio thread is
//! never waited on. Closing it changes nothing about running jobs.

use std::path::PathBuf;
use std::sync::Arc;

use nice_plug::context::gui::GuiContext;
use nice_plug::editor::dpi::LogicalSize;
use nice_plug_egui::{
    create_egui_editor, EguiEditor, EguiEditorState, EguiNiceSettings, Frame, NiceEguiApp,
    RepaintNotifier,
};

use crate::folder_dialog::{FolderDialog, Picked};
use crate::session::Session;

mod capture_panel;
mod controls_panel;
mod models_panel;
mod request_panel;
mod takes_panel;
mod transport_panel;

pub const WIDTH: f64 = 760.0;
pub const HEIGHT: f64 = 820.0;

pub fn default_state() -> Arc<EguiEditorState> {
    EguiEditorState::from_size(LogicalSize::new(WIDTH, HEIGHT), 1.0)
}

/// The editor app. Lives on the GUI thread while the window is open.
pub struct BacklineEditor {
    session: Arc<Session>,
    gui: Option<GuiContext>,
    models: models_panel::ModelsPanel,
    capture: capture_panel::CapturePanel,
    takes: takes_panel::TakesPanel,
}

pub fn create(
    session: Arc<Session>,
    state: Arc<EguiEditorState>,
    repaint: RepaintNotifier,
) -> Option<EguiEditor<BacklineEditor>> {
    let models = models_panel::ModelsPanel::new(&session);
    create_egui_editor(
        state,
        repaint,
        EguiNiceSettings::new().with_tile("Backline"),
        BacklineEditor { session, gui: None, models, capture: Default::default(), takes: Default::default() },
    )
}

/// A folder field's "Browse…" button (where the system has a folder dialog), and the folder the
/// user picked once the dialog closes. A dialog that cannot open is a notice.
fn browse_button(
    ui: &mut egui::Ui,
    dialog: &mut FolderDialog,
    session: &Session,
    title: &str,
    start: impl FnOnce() -> PathBuf,
) -> Option<PathBuf> {
    if !FolderDialog::SUPPORTED {
        return None;
    }
    if ui.add_enabled(!dialog.is_open(), egui::Button::new("Browse…")).clicked() {
        dialog.open(title, &start());
    }
    let picked = match dialog.poll() {
        Some(Picked::Folder(folder)) => Some(folder),
        Some(Picked::Unavailable(why)) => {
            session.notice(why);
            None
        }
        Some(Picked::Cancelled) | None => None,
    };
    if dialog.is_open() {
        // The answer comes from another thread: look again soon.
        ui.ctx().request_repaint_after(std::time::Duration::from_millis(100));
    }
    picked
}

fn section(ui: &mut egui::Ui, title: &str, add: impl FnOnce(&mut egui::Ui)) {
    framed(ui, |ui| {
        ui.strong(title);
        add(ui);
    });
}

/// A section's frame, for a panel that draws its own title row.
fn framed(ui: &mut egui::Ui, add: impl FnOnce(&mut egui::Ui)) {
    egui::Frame::group(ui.style()).show(ui, |ui| {
        ui.set_width(ui.available_width());
        add(ui);
    });
    ui.add_space(6.0);
}

/// The session's notices and the saved state's load notice, each dismissable.
fn show_notices(ui: &mut egui::Ui, session: &Session) {
    let warn = ui.visuals().warn_fg_color;
    let load_notice = session.params.session.read().load_notice.clone();
    if let Some(notice) = load_notice {
        ui.horizontal_wrapped(|ui| {
            ui.colored_label(warn, format!("Note: {notice}"));
            if ui.button("Dismiss").clicked() {
                session.params.session.write().load_notice = None;
            }
        });
    }
    let notices = session.notices();
    if !notices.is_empty() {
        for notice in &notices {
            ui.colored_label(warn, notice);
        }
        if ui.button("Dismiss messages").clicked() {
            session.dismiss_notices();
        }
    }
}

impl NiceEguiApp for BacklineEditor {
    fn build(
        &mut self,
        _egui_ctx: egui::Context,
        gui: GuiContext,
        _frame: &mut Frame,
    ) -> Result<(), nice_plug_egui::baseview::HandlerError> {
        self.gui = Some(gui);
        Ok(())
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut Frame) {
        let transport = self.session.audio.transport.read();
        egui::ScrollArea::vertical().show(ui, |ui| {
            ui.heading("Backline");
            show_notices(ui, &self.session);
            section(ui, "Transport", |ui| transport_panel::show(ui, &transport));
            framed(ui, |ui| self.models.show(ui, &self.session));
            section(ui, "Capture", |ui| self.capture.show(ui, &self.session, &transport));
            section(ui, "Request", |ui| request_panel::show(ui, &self.session, &transport));
            section(ui, "Takes", |ui| self.takes.show(ui, &self.session));
            if let Some(gui) = self.gui.as_ref() {
                section(ui, "Controls", |ui| controls_panel::show(ui, &self.session, gui));
            }
        });
        // Jobs and captures move without host redraws while the transport is stopped.
        ui.ctx().request_repaint_after(std::time::Duration::from_millis(100));
    }

    fn editor_closed(&mut self) {
        self.gui = None;
    }
}
