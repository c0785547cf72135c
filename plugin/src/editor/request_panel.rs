//! The request being drafted: task, caption, lyrics, key and the bar range it applies to.

use backline_engine::task::{keyscale_choices, TaskType};

use crate::params::BacklineParams;
use crate::state::{SessionState, MAX_BARS};
use crate::transport::TransportSnapshot;

fn task_label(task: TaskType) -> &'static str {
    match task {
        TaskType::Text2Music => "Generate (text to music)",
        TaskType::Repaint => "Repaint region",
        TaskType::Cover => "Cover region",
        TaskType::Lego => "Add a layer (lego)",
        TaskType::Extract => "Extract a stem",
        TaskType::Complete => "Complete the arrangement",
    }
}

fn lock_session(params: &BacklineParams) -> std::sync::RwLockWriteGuard<'_, SessionState> {
    // A panic elsewhere while holding the lock must not lock the user out of their session.
    params.session.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A banner when loading the saved session lost or changed something.
pub fn show_load_notice(ui: &mut egui::Ui, params: &BacklineParams) {
    let mut session = lock_session(params);
    let Some(notice) = session.load_notice.clone() else { return };
    let warn = ui.visuals().warn_fg_color;
    ui.horizontal_wrapped(|ui| {
        ui.colored_label(warn, format!("Note: {notice}"));
        if ui.button("Dismiss").clicked() {
            session.load_notice = None;
        }
    });
    ui.add_space(4.0);
}

pub fn show(ui: &mut egui::Ui, params: &BacklineParams, transport: &TransportSnapshot) {
    // Edit a copy, write back on change: the lock is held only for the copy and the write.
    let before = lock_session(params).clone();
    let mut s = before.clone();

    egui::Grid::new("request").num_columns(2).spacing([12.0, 6.0]).show(ui, |ui| {
        ui.label("Task");
        egui::ComboBox::from_id_salt("task")
            .selected_text(task_label(s.task))
            .width(240.0)
            .show_ui(ui, |ui| {
                for task in TaskType::ALL {
                    ui.selectable_value(&mut s.task, task, task_label(task));
                }
            });
        ui.end_row();

        ui.label("Caption");
        ui.add(
            egui::TextEdit::multiline(&mut s.caption)
                .hint_text("e.g. dusty boom-bap drums, vinyl crackle")
                .desired_rows(2)
                .desired_width(f32::INFINITY),
        );
        ui.end_row();

        ui.label("Lyrics");
        ui.vertical(|ui| {
            ui.checkbox(&mut s.instrumental, "Instrumental");
            ui.add_enabled(
                !s.instrumental,
                egui::TextEdit::multiline(&mut s.lyrics)
                    .hint_text("[verse]\n...")
                    .desired_rows(3)
                    .desired_width(f32::INFINITY),
            );
        });
        ui.end_row();

        ui.label("Key");
        let shown = if s.keyscale.is_empty() { "model decides" } else { s.keyscale.as_str() };
        egui::ComboBox::from_id_salt("key").selected_text(shown.to_owned()).show_ui(ui, |ui| {
            ui.selectable_value(&mut s.keyscale, String::new(), "model decides");
            for key in keyscale_choices() {
                ui.selectable_value(&mut s.keyscale, key.clone(), key);
            }
        });
        ui.end_row();

        ui.label("Bars");
        ui.horizontal(|ui| {
            let mut first_bar = s.start_bar + 1;
            ui.label("from");
            ui.add(egui::DragValue::new(&mut first_bar).range(1..=100_000));
            s.start_bar = first_bar - 1;
            ui.label("length");
            ui.add(egui::DragValue::new(&mut s.length_bars).range(1..=MAX_BARS).suffix(" bars"));
        });
        ui.end_row();
    });

    let grid = transport.grid();
    let seconds = grid.bars_to_seconds(s.length_bars as f64);
    ui.weak(format!(
        "Bars {}–{} = {:.2} s at {:.2} BPM {}",
        s.start_bar + 1,
        s.start_bar + s.length_bars,
        seconds,
        grid.bpm(),
        grid.meter()
    ));

    if s != before {
        *lock_session(params) = s;
    }
}
