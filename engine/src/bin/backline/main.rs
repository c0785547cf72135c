//! `backline`: ACE-Step 1.5 generation from a terminal (feature `cli`).
//!
//! - `backline generate`: one request (flags, or a JSON request or recipe plus flags) to audio
//!   files, each with its recipe beside it.
//! - `backline models`: list and validate the checkpoint folders.
//! - `backline models download`: fetch the published folders from the model hub.
//! - `backline check DIR`: validate one checkpoint folder.
//! - `backline demo`: a synthetic tiny checkpoint set and one short generation, no download needed.
//! - `backline describe`: the 5 Hz LM alone (understand audio codes, sample mode, format).
//! - `backline serve` (feature `server`): ACE-Step's REST API over this machine's engine.
//!
//! Every problem ends the run with one `error:` line and exit status 1 (2 for bad usage, as clap
//! reports it). Nothing on disk is replaced unless `--overwrite` says so.

mod args;
mod bars;
mod demo;
mod describe;
mod download;
mod folders;
mod generate;
mod interrupt;
mod outputs;
mod progress;
#[cfg(feature = "server")]
mod serve;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command, ModelsAction};

/// Huge pages behind the engine's large buffers (weights, VAE activations): `engine/src/alloc.rs`.
#[global_allocator]
static ALLOC: backline_engine::alloc::HugePageAlloc = backline_engine::alloc::HugePageAlloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Generate(args) => generate::run(*args),
        Command::Models(args) => match args.action {
            None => folders::list(&args.checkpoints),
            Some(ModelsAction::Download(download)) => download::run(&args.checkpoints, &download.models),
        },
        Command::Check(args) => folders::check(&args.dir),
        Command::Demo(args) => demo::run(&args),
        Command::Describe(args) => describe::run(*args),
        #[cfg(feature = "server")]
        Command::Serve(args) => serve::run(*args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
