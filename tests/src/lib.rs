//! Helpers shared by the host tests: where the bundles are, and how to read the plugin's
//! behaviour back out of the audio it returns (the guide click marks every beat it sees).

use std::path::{Path, PathBuf};

pub mod clap;
pub mod clicks;
pub mod parity;
pub mod workflow;

/// The workspace root (this crate lives in `<root>/tests`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// Where test artifacts (screenshots, renders) are written: `target/test-artifacts/`.
pub fn artifacts_dir() -> PathBuf {
    let dir = workspace_root().join("target").join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("create target/test-artifacts");
    dir
}

/// Which build of the plugin a test loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Build {
    /// `cargo xtask bundle backline-plugin --release` -> `target/bundled/`.
    Release,
    /// The release build with `--features alloc-check`: any allocation or free inside `process`
    /// aborts the host -> `target/bundled-alloc-check/`.
    AllocCheck,
}

fn bundled_dir(build: Build) -> PathBuf {
    let target = workspace_root().join("target");
    match build {
        Build::Release => target.join("bundled"),
        Build::AllocCheck => target.join("bundled-alloc-check"),
    }
}

/// `$env` if set, else `default`; it must exist (the message says how to build it).
pub fn existing(default: PathBuf, env: &str) -> PathBuf {
    let path = std::env::var_os(env).map(PathBuf::from).unwrap_or(default);
    assert!(
        path.exists(),
        "{} does not exist. Build it first with `cargo xtask test` (or set {env}).",
        path.display()
    );
    path
}

/// The `.clap` file (on Linux the bundle is the shared object itself).
pub fn clap_bundle(build: Build) -> PathBuf {
    let env = if build == Build::Release { "BACKLINE_CLAP" } else { "BACKLINE_ALLOC_CHECK_CLAP" };
    existing(bundled_dir(build).join("Backline.clap"), env)
}

/// The `.vst3` bundle directory.
pub fn vst3_bundle(build: Build) -> PathBuf {
    let env = if build == Build::Release { "BACKLINE_VST3" } else { "BACKLINE_ALLOC_CHECK_VST3" };
    existing(bundled_dir(build).join("Backline.vst3"), env)
}

/// The shared object inside the `.vst3` bundle, for hosts that `dlopen` it directly.
pub fn vst3_shared_object(build: Build) -> PathBuf {
    let bundle = vst3_bundle(build);
    existing(bundle.join("Contents").join("x86_64-linux").join("Backline.so"), "BACKLINE_VST3_SO")
}
