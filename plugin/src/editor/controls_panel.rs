//! The host parameters as widgets, and the input meters.

use nice_plug::context::gui::GuiContext;
use std::sync::atomic::Ordering;

use nice_plug::prelude::*;
use nice_plug_egui::widgets::ParamSlider;

use crate::session::Session;

fn meter(ui: &mut egui::Ui, label: &str, peak: f32) {
    let db = util::gain_to_db(peak.max(1e-6));
    ui.horizontal(|ui| {
        ui.label(label);
        // -60 dB .. 0 dB mapped onto the bar.
        let fill = ((db + 60.0) / 60.0).clamp(0.0, 1.0);
        let text = if db <= -60.0 { "silent".to_owned() } else { format!("{db:.1} dB") };
        ui.add(egui::ProgressBar::new(fill).desired_width(200.0).text(text));
    });
}

pub fn show(ui: &mut egui::Ui, session: &Session, gui: &GuiContext) {
    let (params, shared) = (&session.params, &session.audio);
    let setter = gui.param_setter();
    egui::Grid::new("controls").num_columns(2).spacing([12.0, 6.0]).show(ui, |ui| {
        for (label, param) in [("Output gain", &params.gain), ("Take level", &params.take_level)] {
            ui.label(label);
            ui.add(ParamSlider::for_param(param, &setter));
            ui.end_row();
        }
        ui.label("Capture source");
        ui.add(ParamSlider::for_param(&params.capture_source, &setter));
        ui.end_row();
        ui.label("Mix");
        ui.add(ParamSlider::for_param(&params.mix, &setter));
        ui.end_row();
        ui.label("Guide click");
        ui.add(ParamSlider::for_param(&params.click, &setter));
        ui.end_row();
        ui.label("Bypass");
        ui.add(ParamSlider::for_param(&params.bypass, &setter));
        ui.end_row();
    });
    ui.add_space(4.0);
    meter(ui, "Main in   ", shared.main_in_peak.load(Ordering::Relaxed));
    meter(ui, "Sidechain", shared.sidechain_in_peak.load(Ordering::Relaxed));
}
