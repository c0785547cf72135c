//! The take list: A/B between takes while the song plays (the choice plays in slot 1), put a take
//! on another output bus (slots 2-4), audition it with the transport stopped, rename, re-roll
//! with a new seed, delete, and export (copy the file's path, or show the file in its folder).
//! Above the list: the project's take folder (empty = this machine's default).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::bridge::TAKE_SLOTS;
use super::browse_button;
use crate::folder_dialog::FolderDialog;
use crate::session::Session;
use crate::takes::grid_summary;

#[derive(Default)]
pub struct TakesPanel {
    /// The take being renamed and the text so far.
    renaming: Option<(u64, String)>,
    dialog: FolderDialog,
}

/// Opens the folder holding `path` in the system's file manager.
fn reveal(path: &str) -> std::io::Result<()> {
    let folder = std::path::Path::new(path).parent().unwrap_or(std::path::Path::new("."));
    let program = if cfg!(target_os = "macos") {
        "open"
    } else if cfg!(target_os = "windows") {
        "explorer"
    } else {
        "xdg-open"
    };
    std::process::Command::new(program).arg(folder).spawn().map(|_| ())
}

impl TakesPanel {
    /// The project's take folder: a text field (empty = the machine's default, shown as the hint)
    /// and the folder dialog.
    fn show_folder(&mut self, ui: &mut egui::Ui, session: &Session) {
        let picked = ui.horizontal(|ui| {
            ui.label("Take folder");
            let mut folder = session.params.session.read().take_folder.clone();
            let default = if folder.is_empty() { session.take_folder().display().to_string() } else { String::new() };
            let edit = ui.add(egui::TextEdit::singleline(&mut folder).hint_text(default).desired_width(420.0));
            if edit.changed() {
                session.params.session.write().take_folder = folder;
            }
            browse_button(ui, &mut self.dialog, session, "Choose where this project's takes go", || session.take_folder())
        });
        if let Some(folder) = picked.inner {
            session.params.session.write().take_folder = folder.display().to_string();
        }
    }

    pub fn show(&mut self, ui: &mut egui::Ui, session: &Arc<Session>) {
        self.show_folder(ui, session);
        let (takes, slots) = {
            let state = session.params.session.read();
            (state.takes.clone(), state.slots)
        };
        if takes.is_empty() {
            ui.weak("No takes yet: press Generate.");
            return;
        }
        ui.horizontal(|ui| {
            let auditioning = session.audio.auditioning.load(Ordering::Relaxed);
            if ui.button(if auditioning { "Stop audition" } else { "Audition A/B take" }).clicked() {
                session.audition(!auditioning);
            }
            ui.weak("The A/B take plays on the main output and on bus \"Take 1\".");
        });
        egui::Grid::new("takes").num_columns(4).spacing([8.0, 4.0]).striped(true).show(ui, |ui| {
            for take in takes.iter().rev() {
                let mut chosen = slots[0] == Some(take.id);
                if ui.radio(chosen, "").on_hover_text("Play this take (A/B)").clicked() && !chosen {
                    chosen = true;
                    session.assign_slot(0, Some(take.id));
                }
                let _ = chosen;
                match &mut self.renaming {
                    Some((id, text)) if *id == take.id => {
                        let edit = ui.text_edit_singleline(text);
                        if edit.lost_focus() {
                            session.rename_take(take.id, text.trim().to_owned());
                            self.renaming = None;
                        }
                    }
                    _ => {
                        let (tag, grid_lines) = grid_summary(&take.recipe);
                        let mut details = format!(
                            "bars {}–{} in {} at {:.2} BPM\n",
                            take.start_bar + 1,
                            take.start_bar + take.bars,
                            take.meter,
                            take.placement.bpm
                        );
                        for line in grid_lines {
                            details += &line;
                            details.push('\n');
                        }
                        details += &take.file;
                        details += "\nDouble-click to rename";
                        ui.horizontal(|ui| {
                            if ui.label(&take.name).on_hover_text(details).double_clicked() {
                                self.renaming = Some((take.id, take.name.clone()));
                            }
                            if !tag.is_empty() {
                                ui.weak(tag);
                            }
                        });
                    }
                }
                let current = (1..TAKE_SLOTS).find(|&k| slots[k] == Some(take.id));
                let label = current.map_or("no bus".to_owned(), |k| format!("bus Take {}", k + 1));
                egui::ComboBox::from_id_salt(("slot", take.id)).selected_text(label).width(90.0).show_ui(ui, |ui| {
                    if ui.selectable_label(current.is_none(), "no bus").clicked() {
                        if let Some(k) = current {
                            session.assign_slot(k, None);
                        }
                    }
                    for k in 1..TAKE_SLOTS {
                        if ui.selectable_label(current == Some(k), format!("bus Take {}", k + 1)).clicked() {
                            if let Some(old) = current {
                                session.assign_slot(old, None);
                            }
                            session.assign_slot(k, Some(take.id));
                        }
                    }
                });
                ui.horizontal(|ui| {
                    if ui.small_button("Re-roll").on_hover_text("Same settings, new seed").clicked() {
                        session.reroll(take.id);
                    }
                    if ui.small_button("Copy path").clicked() {
                        ui.ctx().copy_text(take.file.clone());
                    }
                    if ui.small_button("Show file").clicked() {
                        if let Err(e) = reveal(&take.file) {
                            session.notice(format!("Could not open the take folder: {e}"));
                        }
                    }
                    if ui.small_button("Delete").on_hover_text("Remove from the list; the file stays").clicked() {
                        session.delete_take(take.id);
                    }
                });
                ui.end_row();
            }
        });
    }
}
