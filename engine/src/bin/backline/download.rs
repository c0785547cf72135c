//! `backline models download`: fetch published models from the hub into the checkpoints folder,
//! with a byte bar on a terminal (one line per file otherwise), then validate each folder as
//! `backline models` does. Ctrl-C stops between chunks and keeps what arrived for the next run.

use std::cell::RefCell;
use std::io::IsTerminal;
use std::path::Path;

use backline_engine::hub::{self, registry, DownloadProgress, Hub, HubModel};
use indicatif::{ProgressBar, ProgressStyle};

fn gb(bytes: u64) -> String {
    format!("{:.2} GB", bytes as f64 / 1e9)
}

/// The models `names` asks for (the essential three when empty), or which name is unknown.
fn resolve(names: &[String]) -> Result<Vec<&'static HubModel>, String> {
    if names.is_empty() {
        return Ok(registry::ESSENTIAL.iter().filter_map(|n| registry::find(n)).collect());
    }
    names
        .iter()
        .map(|name| registry::find(name).ok_or_else(|| format!("unknown model `{name}`; the models are: {}", registry::names())))
        .collect()
}

pub fn run(checkpoints: &Path, names: &[String]) -> Result<(), String> {
    let models = resolve(names)?;
    let hub = Hub::from_env();
    crate::interrupt::install();
    let plain = !std::io::stderr().is_terminal();
    for model in models {
        eprintln!("{}: from {} at {}", model.name, model.repo, hub.endpoint());
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("  {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {eta} {msg}")
                .expect("the bar's template is valid"),
        );
        if plain {
            bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        let current_file = RefCell::new(String::new());
        let progress = |p: DownloadProgress| {
            bar.set_length(p.total_bytes);
            bar.set_position(p.done_bytes);
            if *current_file.borrow() != p.file {
                *current_file.borrow_mut() = p.file.to_string();
                bar.set_message(p.file.to_string());
                if plain {
                    eprintln!("  {} ({} of {} done)", p.file, gb(p.done_bytes), gb(p.total_bytes));
                }
            }
        };
        let result = hub.download(model, checkpoints, &progress, crate::interrupt::flag());
        bar.finish_and_clear();
        let report = result.map_err(|e| format!("{}: {e}", model.name))?;
        hub::validate(model.role, &report.dir)
            .map_err(|e| format!("{} was downloaded but is not usable: {e}", report.dir.display()))?;
        println!(
            "{}: OK, {} files, {} downloaded, {} already here, validated",
            report.dir.display(),
            report.files,
            gb(report.fetched_bytes),
            gb(report.kept_bytes)
        );
    }
    Ok(())
}
