//! The egui editor: live transport, the request being drafted, and the plugin's controls.
//!
//! The editor holds `Arc` clones of what it shows, never the plugin. It reads the transport
//! through the lock-free snapshot and edits the session (a GUI-thread-only `RwLock`); the audio
//! thread is never waited on.

use std::sync::Arc;

use nice_plug::context::gui::GuiContext;
use nice_plug::editor::dpi::LogicalSize;
use nice_plug_egui::{
    create_egui_editor, EguiEditor, EguiEditorState, EguiNiceSettings, Frame, NiceEguiApp,
    RepaintNotifier,
};

use crate::params::BacklineParams;
use crate::AudioShared;

mod controls_panel;
mod request_panel;
mod transport_panel;

pub const WIDTH: f64 = 640.0;
pub const HEIGHT: f64 = 560.0;

pub fn default_state() -> Arc<EguiEditorState> {
    EguiEditorState::from_size(LogicalSize::new(WIDTH, HEIGHT), 1.0)
}

/// The editor app. Lives on the GUI thread while the window is open.
pub struct BacklineEditor {
    params: Arc<BacklineParams>,
    shared: Arc<AudioShared>,
    gui: Option<GuiContext>,
}

pub fn create(
    params: Arc<BacklineParams>,
    shared: Arc<AudioShared>,
    state: Arc<EguiEditorState>,
    repaint: RepaintNotifier,
) -> Option<EguiEditor<BacklineEditor>> {
    create_egui_editor(
        state,
        repaint,
        EguiNiceSettings::new().with_tile("Backline"),
        BacklineEditor { params, shared, gui: None },
    )
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
        let transport = self.shared.transport.read();
        egui::ScrollArea::vertical().show(ui, |ui| {
            ui.heading("Backline");
            ui.add_space(4.0);
            request_panel::show_load_notice(ui, &self.params);
            egui::Frame::group(ui.style()).show(ui, |ui| {
                transport_panel::show(ui, &transport);
            });
            ui.add_space(6.0);
            egui::Frame::group(ui.style()).show(ui, |ui| {
                request_panel::show(ui, &self.params, &transport);
            });
            ui.add_space(6.0);
            if let Some(gui) = self.gui.as_ref() {
                egui::Frame::group(ui.style()).show(ui, |ui| {
                    controls_panel::show(ui, &self.params, &self.shared, gui);
                });
            }
        });
    }

    fn editor_closed(&mut self) {
        self.gui = None;
    }
}
