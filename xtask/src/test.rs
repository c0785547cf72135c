//! `cargo xtask test`: prepare everything the tests use, then run them.

use std::path::{Path, PathBuf};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// Debian packages the tests need: Xvfb + ImageMagick + x11-utils + xdotool for the editor test,
/// ALSA/JACK headers for the standalone app, python3-venv for the DawDreamer render.
const APT_PACKAGES: &[&str] = &[
    "xvfb",
    "xauth",
    "x11-utils",
    "xdotool",
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

/// Runs this xtask binary's bundler (nice-plug's) with `args` after the package name.
fn bundle(root: &Path, args: &[&str]) -> Result<()> {
    run_command(Command::new(std::env::current_exe()?).current_dir(root).args(["bundle", "backline-plugin"]).args(args))
}

/// The release bundles, and the alloc-check build of them (the same release build with the
/// `alloc-check` feature, which aborts on any allocation inside `process`) moved aside to
/// `target/bundled-alloc-check/`. Only the plugin crate differs between the two, so the second
/// costs one crate, not a second build of every dependency.
fn bundle_release_and_alloc_check(root: &Path, target: &Path) -> Result<()> {
    bundle(root, &["--release", "--features", "alloc-check"])?;
    let checked = target.join("bundled-alloc-check");
    if checked.exists() {
        std::fs::remove_dir_all(&checked)?;
    }
    std::fs::rename(target.join("bundled"), &checked)?;
    bundle(root, &["--release"])
}

pub fn run_tests(extra_args: &[String]) -> Result<()> {
    let root = workspace_root();
    let target = root.join("target");
    ensure_system_packages()?;
    let python = ensure_python_venv(&root)?;

    bundle_release_and_alloc_check(&root, &target)?;
    run_command(Command::new("cargo")
        .current_dir(&root)
        .args(["build", "--release", "-p", "backline-standalone"]))?;

    let extra: Vec<&String> = extra_args.iter().skip_while(|a| *a == "--").collect();
    let mut cmd = Command::new("cargo");
    cmd.current_dir(&root)
        // The `backline` CLI's tests need its feature.
        .args(["test", "--release", "--no-fail-fast", "--features", "backline-engine/server"])
        .args(extra)
        .env("BACKLINE_PYTHON", &python)
        .env("BACKLINE_STANDALONE", target.join("release").join("backline-standalone"))
        .stdout(Stdio::piped());
    eprintln!("+ {cmd:?}");
    let mut child = cmd.spawn().context("could not start cargo test")?;
    let mut totals = TestTotals::default();
    for line in BufReader::new(child.stdout.take().expect("piped stdout")).lines() {
        let line = line?;
        println!("{line}");
        totals.add(&line);
    }
    let status = child.wait()?;
    // One closing line over every test binary: cargo's own last line is often a doc-test run
    // of zero tests, which says nothing about the suite.
    println!("{} passed, {} failed, {} skipped", totals.passed, totals.failed, totals.ignored);
    if !status.success() || totals.failed > 0 {
        bail!("tests failed");
    }
    if totals.passed == 0 {
        bail!("no test ran");
    }
    Ok(())
}

/// Sums cargo's per-binary `test result: ok. N passed; M failed; K ignored; ...` lines.
#[derive(Default)]
struct TestTotals {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl TestTotals {
    fn add(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix("test result: ") else { return };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(label), Some(count)) = (words.next(), words.next()) else { continue };
            let Ok(count) = count.parse::<u64>() else { continue };
            match label {
                "passed" => self.passed += count,
                "failed" => self.failed += count,
                "ignored" => self.ignored += count,
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TestTotals;

    #[test]
    fn sums_cargo_test_result_lines() {
        let mut totals = TestTotals::default();
        totals.add("test result: ok. 16 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s");
        totals.add("test result: FAILED. 7 passed; 1 failed; 2 ignored; 0 measured; 0 filtered out");
        totals.add("test something ... ok");
        assert_eq!((totals.passed, totals.failed, totals.ignored), (23, 1, 2));
    }
}
