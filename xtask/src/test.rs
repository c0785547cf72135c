//! `cargo xtask test`: prepare everything the tests use, then run them.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Debian packages the tests need: Xvfb + ImageMagick + x11-utils for the editor screenshot,
/// ALSA/JACK headers for the standalone app, python3-venv for the DawDreamer render.
const APT_PACKAGES: &[&str] = &[
    "xvfb",
    "xauth",
    "x11-utils",
    "imagemagick",
    "pkg-config",
    "libasound2-dev",
    "libjack-jackd2-dev",
    "python3-venv",
];

/// Python packages for the DawDreamer render (pinned: the versions tried in reference/tooling.md).
const PIP_PACKAGES: &[&str] = &["dawdreamer==0.9.0", "numpy<2.3"];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask/ has a parent").to_path_buf()
}

fn run_command(cmd: &mut Command) -> Result<()> {
    eprintln!("+ {cmd:?}");
    let status = cmd.status().with_context(|| format!("could not start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.output().is_ok_and(|o| o.status.success())
}

fn have_program(name: &str) -> bool {
    succeeds(Command::new("sh").args(["-c", &format!("command -v {name}")]))
}

/// Install missing Debian packages when we can (root with apt-get); otherwise say what to run.
fn ensure_system_packages() -> Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| !installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let is_root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0"));
    if !(is_root && have_program("apt-get")) {
        bail!(
            "missing system packages: {}\ninstall them with: sudo apt-get install -y {}",
            missing.join(" "),
            missing.join(" ")
        );
    }
    run_command(Command::new("apt-get").args(["update", "-qq"]))?;
    run_command(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

/// `target/venv` with DawDreamer; returns its python.
fn ensure_python_venv(root: &Path) -> Result<PathBuf> {
    let venv = root.join("target").join("venv");
    let python = venv.join("bin").join("python");
    if succeeds(Command::new(&python).args(["-c", "import dawdreamer, numpy"])) {
        return Ok(python);
    }
    run_command(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    run_command(Command::new(&python).args(["-m", "pip", "install", "-q"]).args(PIP_PACKAGES))?;
    Ok(python)
}

fn bundle(root: &Path, release: bool, target_dir: Option<&Path>) -> Result<()> {
    // Re-run this xtask binary for the bundler so a separate target dir does not rebuild xtask.
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.current_dir(root).args(["bundle", "backline-plugin"]);
    if release {
        cmd.arg("--release");
    }
    if let Some(dir) = target_dir {
        cmd.env("CARGO_TARGET_DIR", dir);
    }
    run_command(&mut cmd)
}

pub fn run_tests(extra_args: &[String]) -> Result<()> {
    let root = workspace_root();
    let target = root.join("target");
    ensure_system_packages()?;
    let python = ensure_python_venv(&root)?;

    // Release bundles for the host tests, and a debug bundle (own target dir, so it does not
    // overwrite them) in which assert_process_allocs is armed.
    bundle(&root, true, None)?;
    bundle(&root, false, Some(&target.join("debug-bundle")))?;
    run_command(Command::new("cargo")
        .current_dir(&root)
        .args(["build", "--release", "-p", "backline-standalone"]))?;

    let extra: Vec<&String> = extra_args.iter().skip_while(|a| *a == "--").collect();
    run_command(Command::new("cargo")
        .current_dir(&root)
        .args(["test", "--release"])
        .args(extra)
        .env("BACKLINE_PYTHON", &python)
        .env("BACKLINE_STANDALONE", target.join("release").join("backline-standalone")))
}
