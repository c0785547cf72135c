//! Where a generation's files go: `<out>/<stem>-<seed>.<ext>` with the recipe as `<same>.json`,
//! each item's recipe carrying that take measured against its request (`audio::analysis`) and,
//! for a take in bars, how it was shaped to them (`audio::take_shape`).
//! The names are known before generating (the seeds are drawn up front), so a file in the way
//! stops the run before any work, and nothing on disk is replaced without `--overwrite`.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use backline_engine::audio::analysis::analyze_take;
use backline_engine::audio::take_shape::GridReport;
use backline_engine::audio::AudioBuffer;
use backline_engine::audio::{write_audio, OutputFormat};
use backline_engine::pipeline::recipe::Recipe;
use backline_engine::pipeline::Generation;
use backline_engine::request::Seed;

use crate::bars::BarRun;

/// One batch item's files.
pub struct ItemFiles {
    pub audio: PathBuf,
    pub recipe: PathBuf,
}

pub struct Outputs {
    dir: PathBuf,
    pub items: Vec<ItemFiles>,
    format: OutputFormat,
    overwrite: bool,
}

impl Outputs {
    /// One pair of files per seed. Where seeds repeat, the item number keeps the names apart.
    pub fn plan(dir: &Path, stem: &str, seeds: &[u32], format: OutputFormat, overwrite: bool) -> Result<Self, String> {
        if stem.trim().is_empty() || stem.contains(['/', '\\']) {
            return Err(format!("--name \"{stem}\" must be a plain file name stem (no folders)"));
        }
        let repeats = |seed: u32| seeds.iter().filter(|&&s| s == seed).count() > 1;
        let items = seeds
            .iter()
            .enumerate()
            .map(|(i, &seed)| {
                let base = if repeats(seed) { format!("{stem}-{seed}-{}", i + 1) } else { format!("{stem}-{seed}") };
                ItemFiles {
                    audio: dir.join(format!("{base}.{}", format.extension())),
                    recipe: dir.join(format!("{base}.json")),
                }
            })
            .collect();
        Ok(Self { dir: dir.to_path_buf(), items, format, overwrite })
    }

    /// Refuse files in the way unless overwriting, then create the folder. Runs before generating.
    pub fn prepare(&self) -> Result<(), String> {
        if !self.overwrite {
            let taken = self.items.iter().flat_map(|f| [&f.audio, &f.recipe]).find(|p| fs::symlink_metadata(p).is_ok());
            if let Some(path) = taken {
                return Err(format!(
                    "{} already exists; not overwriting it (pass --overwrite to replace it, or pick another --out or --name)",
                    path.display()
                ));
            }
        }
        fs::create_dir_all(&self.dir)
            .map_err(|e| format!("cannot create the output folder {}: {e}", self.dir.display()))
    }

    /// Write each item's audio and its recipe; returns the paths written, in order. `shaped`,
    /// for a take in bars, holds each item shaped to them and its report.
    pub fn write(&self, generation: &Generation, shaped: Option<(&[(AudioBuffer, GridReport)], &BarRun)>) -> Result<Vec<PathBuf>, String> {
        if generation.audio.len() != self.items.len() {
            return Err(format!(
                "the engine returned {} items for a batch of {}",
                generation.audio.len(),
                self.items.len()
            ));
        }
        let mut written = Vec::new();
        for (i, (files, made)) in self.items.iter().zip(&generation.audio).enumerate() {
            let mut recipe = item_recipe(&generation.recipe, i);
            let (audio, grid) = match shaped {
                Some((takes, _)) => (&takes[i].0, Some(takes[i].1.clone())),
                None => (made, None),
            };
            write_audio(&files.audio, audio, self.format, self.overwrite).map_err(|e| e.to_string())?;
            written.push(files.audio.clone());
            // A take in bars is measured against the real tempo and meter, not the metas'.
            let request = &recipe.request;
            let (bpm, meter) = match shaped {
                Some((_, run)) => (Some(run.plan.grid.bpm()), Some(run.plan.grid.meter().to_string())),
                None => (request.bpm.map(f64::from), request.timesignature.clone()),
            };
            recipe.analysis = Some(analyze_take(audio, bpm, meter.as_deref(), request.keyscale.as_deref()));
            recipe.grid = grid;
            let json =
                serde_json::to_string_pretty(&recipe).map_err(|e| format!("cannot serialise the recipe: {e}"))?;
            write_text(&files.recipe, &(json + "\n"), self.overwrite)?;
            written.push(files.recipe.clone());
        }
        Ok(written)
    }
}

/// The batch's recipe narrowed to item `i`: its seed alone and a batch of one, which makes that
/// item again (each item's noise comes from its own seed).
pub fn item_recipe(recipe: &Recipe, i: usize) -> Recipe {
    let mut one = recipe.clone();
    if let Some(&seed) = recipe.seeds().get(i) {
        one.request.seed = Some(Seed::PerItem(vec![seed as i64]));
        one.request.batch_size = Some(1);
    }
    if let Some(lm) = one.lm.as_mut() {
        lm.audio_codes = lm.audio_codes.get(i).cloned().into_iter().collect();
    }
    one
}

/// Write a text file, refusing to replace one unless `overwrite`.
fn write_text(path: &Path, text: &str, overwrite: bool) -> Result<(), String> {
    let mut options = OpenOptions::new();
    options.write(true);
    if overwrite {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => format!("{} already exists; not overwriting it", path.display()),
        _ => format!("cannot write {}: {e}", path.display()),
    })?;
    file.write_all(text.as_bytes()).map_err(|e| format!("cannot write {}: {e}", path.display()))
}
