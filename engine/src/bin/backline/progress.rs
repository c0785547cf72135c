//! A job's events on the terminal: a spinner while models load and stages run, a bar through the
//! encode tiles and the diffusion steps. Without a terminal (a log, a test) the bar stays hidden
//! and each load and stage is one plain line on stderr instead. Ctrl-C cancels the job.

use std::io::IsTerminal;
use std::time::Duration;

use backline_engine::job::{JobError, JobEvent, JobHandle};
use crossbeam_channel::RecvTimeoutError;
use backline_engine::pipeline::Generation;
use indicatif::{ProgressBar, ProgressStyle};

/// Show `handle`'s progress until its terminal event; the generation or why there is none.
pub fn follow(handle: &JobHandle<Generation>) -> Result<Generation, JobError> {
    let plain = !std::io::stderr().is_terminal();
    let bar = ProgressBar::new_spinner();
    bar.set_style(spinner_style());
    bar.enable_steady_tick(Duration::from_millis(100));
    let mut stepping = false;
    let mut cancelling = false;
    loop {
        let event = match handle.events().recv_timeout(Duration::from_millis(50)) {
            Ok(event) => event,
            Err(RecvTimeoutError::Timeout) => {
                if crate::interrupt::interrupted() && !cancelling {
                    cancelling = true;
                    show(&bar, plain, "cancelling (Ctrl-C again to quit at once)".to_string());
                    handle.cancel();
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        match event {
            JobEvent::Queued { .. } => bar.set_message("waiting for the engine"),
            JobEvent::Started => bar.set_message("starting"),
            JobEvent::Loading { what } => show(&bar, plain, format!("loading {what}")),
            JobEvent::Stage { name } => {
                if stepping {
                    bar.set_style(spinner_style());
                    stepping = false;
                }
                show(&bar, plain, stage_label(&name).to_string());
            }
            JobEvent::Step { index, count } => {
                if !stepping {
                    bar.set_style(bar_style());
                    // The estimate should see only the steps, not the loading before them.
                    bar.reset_eta();
                    stepping = true;
                }
                bar.set_length(count as u64);
                bar.set_position(index as u64 + 1);
            }
            JobEvent::Done(generation) => {
                bar.finish_and_clear();
                return Ok(generation);
            }
            JobEvent::Failed(error) => {
                bar.finish_and_clear();
                return Err(error);
            }
            JobEvent::Cancelled => {
                bar.finish_and_clear();
                return Err(JobError::Cancelled);
            }
        }
    }
    bar.finish_and_clear();
    Err(JobError::EngineStopped)
}

fn show(bar: &ProgressBar, plain: bool, message: String) {
    if plain {
        eprintln!("{message}");
    }
    bar.set_message(message);
}

/// What the pipeline's stage names mean to a person.
fn stage_label(name: &str) -> &str {
    match name {
        "audio" => "reading the audio inputs",
        "encode" => "encoding the audio inputs",
        "text" => "encoding the caption and lyrics",
        "condition" => "conditioning",
        "diffusion" => "diffusion",
        "decode" => "decoding audio",
        other => other,
    }
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {msg} ({elapsed})").unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{msg} [{bar:30}] step {pos}/{len} ({elapsed}, {eta} left)")
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
}
