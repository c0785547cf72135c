//! The request being drafted (task, caption, lyrics, key, bars, how the take is shaped to them,
//! track, strength, steps, seed, model), the Generate and Cancel buttons, and the job queue with
//! each job's stage and step.

use std::sync::Arc;

use backline_engine::audio::conform::{ConformMode, OctaveChoice};
use backline_engine::audio::seam::SeamFix;
use backline_engine::task::{keyscale_choices, TaskType, TRACK_NAMES};

use crate::presets;
use crate::session::{JobState, Session};
use crate::state::MAX_BARS;
use crate::transport::TransportSnapshot;

fn conform_label(mode: ConformMode) -> &'static str {
    match mode {
        ConformMode::Stretch => "stretched onto the grid",
        ConformMode::Trim => "from the first beat",
        ConformMode::Off => "as made",
    }
}

fn seam_label(fix: SeamFix) -> &'static str {
    match fix {
        SeamFix::Repaint => "wrap repainted",
        SeamFix::Crossfade => "wrap crossfaded",
    }
}

fn octave_label(choice: OctaveChoice) -> &'static str {
    match choice {
        OctaveChoice::Flag => "half/double time kept",
        OctaveChoice::Stretch => "half/double time stretched",
    }
}

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

pub fn show(ui: &mut egui::Ui, session: &Arc<Session>, transport: &TransportSnapshot) {
    // Edit a copy, write back on change: the lock is held only for the copy and the write.
    let before = session.params.session.read().clone();
    let mut s = before.clone();

    egui::Grid::new("request").num_columns(2).spacing([12.0, 6.0]).show(ui, |ui| {
        ui.label("Task");
        ui.horizontal(|ui| {
            egui::ComboBox::from_id_salt("task")
                .selected_text(task_label(s.task))
                .width(240.0)
                .show_ui(ui, |ui| {
                    for task in TaskType::ALL {
                        ui.selectable_value(&mut s.task, task, task_label(task));
                    }
                });
            // A preset fills the task, the bars and the fields it sets.
            egui::ComboBox::from_id_salt("preset").selected_text("Preset…").width(120.0).show_ui(ui, |ui| {
                for preset in presets::all() {
                    if ui.selectable_label(false, &preset.name).clicked() {
                        preset.apply(&mut s);
                    }
                }
            });
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
        ui.horizontal(|ui| {
            let shown = if s.keyscale.is_empty() { "model decides" } else { s.keyscale.as_str() };
            egui::ComboBox::from_id_salt("key").selected_text(shown.to_owned()).show_ui(ui, |ui| {
                ui.selectable_value(&mut s.keyscale, String::new(), "model decides");
                for key in keyscale_choices() {
                    ui.selectable_value(&mut s.keyscale, key.clone(), key);
                }
            });
            // Generate only (upstream skips the LM for the audio tasks).
            if s.task == TaskType::Text2Music {
                ui.checkbox(&mut s.plan_with_lm, "Let the model plan (5 Hz LM)").on_hover_text(
                    "The 5 Hz LM sketches the bars as audio codes from the caption, lyrics, tempo, meter and length \
                     (and the key, or chooses one, and rewrites the caption); the DiT renders its sketch",
                );
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

        if s.task.uses_track_names() {
            ui.label("Track");
            egui::ComboBox::from_id_salt("track").selected_text(s.track_name.clone()).show_ui(ui, |ui| {
                for track in TRACK_NAMES {
                    ui.selectable_value(&mut s.track_name, track.to_string(), track);
                }
            });
            ui.end_row();
        }
        if s.task == TaskType::Cover {
            ui.label("Strength");
            ui.add(egui::Slider::new(&mut s.strength, 0.0..=1.0).text("of the source's structure"));
            ui.end_row();
        }

        ui.label("Take");
        ui.horizontal(|ui| {
            let options = &mut s.take_options;
            ui.checkbox(&mut options.looped, "Loop").on_hover_text("Make the take's end run into its start");
            if options.looped {
                egui::ComboBox::from_id_salt("seam").selected_text(seam_label(options.seam)).show_ui(ui, |ui| {
                    for fix in [SeamFix::Repaint, SeamFix::Crossfade] {
                        ui.selectable_value(&mut options.seam, fix, seam_label(fix));
                    }
                });
            }
            ui.label("Beats");
            egui::ComboBox::from_id_salt("conform").selected_text(conform_label(options.conform)).show_ui(ui, |ui| {
                for mode in [ConformMode::Stretch, ConformMode::Trim, ConformMode::Off] {
                    ui.selectable_value(&mut options.conform, mode, conform_label(mode));
                }
            });
            if options.conform == ConformMode::Stretch {
                egui::ComboBox::from_id_salt("octave").selected_text(octave_label(options.octave)).show_ui(ui, |ui| {
                    for choice in [OctaveChoice::Flag, OctaveChoice::Stretch] {
                        ui.selectable_value(&mut options.octave, choice, octave_label(choice));
                    }
                });
            }
            ui.add_enabled(!s.keyscale.is_empty(), egui::Checkbox::new(&mut options.correct_key, "Correct key"))
                .on_hover_text("Shift the pitch by the nearest interval when the take comes out in another key")
                .on_disabled_hover_text("Set a key to correct to");
        });
        ui.end_row();

        ui.label("Steps");
        ui.horizontal(|ui| {
            ui.add(egui::DragValue::new(&mut s.steps).range(0..=200));
            ui.weak(if s.steps == 0 { "model default" } else { "" });
            ui.label("Seed");
            ui.add(egui::DragValue::new(&mut s.seed).range(-1..=u32::MAX as i64));
            ui.weak(if s.seed < 0 { "new each time" } else { "" });
        });
        ui.end_row();

        ui.label("Model");
        ui.add(egui::TextEdit::singleline(&mut s.model).hint_text("any that runs the task").desired_width(240.0));
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
        // Only the draft's fields: takes may have arrived from the worker meanwhile.
        let mut state = session.params.session.write();
        let (takes, slots, next) = (std::mem::take(&mut state.takes), state.slots, state.next_take_id);
        *state = s;
        (state.takes, state.slots, state.next_take_id) = (takes, slots, next);
    }

    ui.horizontal(|ui| {
        if ui.add(egui::Button::new("Generate").min_size(egui::vec2(110.0, 26.0))).clicked() {
            session.generate();
        }
        let jobs = session.jobs();
        if ui.add_enabled(!jobs.is_empty(), egui::Button::new("Cancel")).clicked() {
            session.cancel_all();
        }
        if jobs.is_empty() {
            ui.weak("No job running.");
        }
    });
    for (i, job) in session.jobs().iter().enumerate() {
        let state = job.state.lock().map(|s| s.clone()).unwrap_or_else(|p| p.into_inner().clone());
        ui.horizontal(|ui| {
            ui.label(if i == 0 { "Running:" } else { "Queued:" });
            ui.label(&job.title);
            match state {
                JobState::Queued { position } => {
                    ui.weak(format!("{position} ahead"));
                }
                JobState::Loading { what } => {
                    ui.add(egui::Spinner::new());
                    ui.label(format!("loading {what}"));
                }
                // Stages without steps (encode, text, decode) spin; the DiT shows its steps.
                JobState::Running { stage, step, steps } if steps > 0 => {
                    let text = format!("{stage} {step}/{steps}");
                    ui.add(egui::ProgressBar::new(step as f32 / steps as f32).desired_width(220.0).text(text));
                }
                JobState::Running { stage, .. } => {
                    ui.add(egui::Spinner::new());
                    ui.label(stage);
                }
            }
        });
    }
}
