//! The transport strip: what Backline reads from the host, and where it had to assume.

use crate::transport::TransportSnapshot;

pub fn show(ui: &mut egui::Ui, t: &TransportSnapshot) {
    let warn = ui.visuals().warn_fg_color;
    ui.horizontal(|ui| {
        // Plain words: egui's default fonts have no transport glyphs (▶ draws as a box).
        if t.playing {
            ui.colored_label(egui::Color32::from_rgb(90, 200, 120), "PLAYING");
        } else {
            ui.weak("STOPPED");
        }
        ui.separator();
        if t.tempo_from_host {
            ui.monospace(format!("{:.2} BPM", t.bpm));
        } else {
            ui.colored_label(warn, format!("{:.2} BPM (host sent no tempo)", t.bpm));
        }
        ui.separator();
        if t.meter_from_host {
            ui.monospace(t.meter.to_string());
        } else {
            ui.colored_label(warn, format!("{} (host sent no meter)", t.meter));
        }
        ui.separator();
        match t.position() {
            Some(p) => ui.monospace(format!("bar {} | beat {}", p.bar + 1, p.beat + 1)),
            None => ui.colored_label(warn, "no position from host"),
        };
    });
    ui.horizontal(|ui| {
        ui.weak(format!("{:.1} kHz", t.sample_rate / 1000.0));
        if let Some(samples) = t.pos_samples {
            ui.weak(format!("sample {samples}"));
        }
        if let Some((start, end)) = t.loop_quarters {
            let grid = t.grid();
            let (a, b) = (grid.position(start), grid.position(end));
            ui.weak(format!("loop {a} – {b}"));
        }
        if t.block_counter == 0 {
            ui.weak("(no audio processed yet)");
        }
    });
}
