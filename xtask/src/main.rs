//! `cargo xtask`: project tasks beyond plain cargo.
//!
//! - `cargo xtask bundle backline-plugin [--release]`: build the CLAP and VST3 bundles into
//!   `target/bundled/` (nice-plug's bundler).
//! - `cargo xtask test`: everything the test suite needs, then the tests: system packages (when
//!   run as root on Debian), the release bundles and their alloc-check build, the standalone app, a Python venv
//!   with DawDreamer, and `cargo test --release`.
//! - `cargo xtask tiny-checkpoint DIR [--xl] [--seed N]`: a tiny random checkpoint set (a few MB)
//!   in the published folder layout; `--xl` adds a tiny XL turbo DiT.
//! - `cargo xtask synth-checkpoint DIR (--full | --xl) [--seed N]`: random weights with the
//!   published shapes (several GB): the 2B set, or the XL turbo DiT (f32, about 20 GB), for load,
//!   memory and speed work.
//! - `cargo xtask bench [--checkpoints DIR] [--runs N] [--upstream DIR] [--python PATH]
//!   [--skip-torch]`: load time, speed and peak memory of the candle engine against upstream
//!   PyTorch (f32, CPU) on the same synthetic checkpoint set (default `target/synth-full`); see
//!   `docs/benchmarks.md`. It runs each stage as `xtask bench-stage` (internal) in a child process.
//! - `cargo xtask bench-cpp --acestep-cpp DIR [--checkpoints DIR] [--python PATH] [--durations
//!   30,10] [--precisions bf16,q8]`: whole generations side by side with acestep.cpp (a checkout
//!   built by the user, given by path), per-stage time and peak memory, and the DiT's GFLOP/s.
//! - `cargo xtask bench-grid [--minutes N] [--runs N]`: seconds per minute of audio that
//!   measuring a take's tempo, phase and key costs.

mod bench;
mod bench_grid;
mod checkpoints;
mod side_by_side;
mod test;

/// Huge pages behind the engine's large buffers (weights, VAE activations): `engine/src/alloc.rs`.
#[global_allocator]
static ALLOC: backline_engine::alloc::HugePageAlloc = backline_engine::alloc::HugePageAlloc;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("test") => test::run_tests(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
        Some("bench-stage") => bench::run_stage(&args[1..]),
        Some("bench-cpp") => side_by_side::run(&args[1..]),
        Some("bench-grid") => bench_grid::run(&args[1..]),
        Some("bench-warm-memory") => bench::warm_memory_child(&args[1..]),
        Some(command @ ("tiny-checkpoint" | "synth-checkpoint")) => checkpoints::run(command, &args[1..]),
        Some("bundle" | "bundle-universal" | "known-packages") => {
            nice_plug_xtask::main_with_args("cargo xtask", args)
        }
        _ => {
            eprintln!(
                "usage:\n  cargo xtask bundle <package> [--release]\n  cargo xtask test [-- <cargo test args>]\n  \
                 cargo xtask tiny-checkpoint DIR [--xl] [--seed N]\n  cargo xtask synth-checkpoint DIR (--full | --xl | --lm 0.6B|1.7B|4B) [--seed N]\n  \
                 cargo xtask bench [--checkpoints DIR] [--runs N] [--upstream DIR] [--python PATH] [--skip-torch]\n  \
                 cargo xtask bench-cpp --acestep-cpp DIR [--checkpoints DIR] [--python PATH] [--durations 30,10] [--precisions bf16,q8]\n  \
                 cargo xtask bench-grid [--minutes N] [--runs N]"
            );
            std::process::exit(2)
        }
    }
}
