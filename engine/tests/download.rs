//! Downloading the published folders (`backline models download`, `hub::Hub`) from a model hub
//! on loopback that serves the tiny synthetic set in the hub's layout: a full download that
//! validates, a connection cut mid-file and resumed with a `Range` request, a corrupted file
//! refused and removed, a full disk, a cancel, and unknown names.
#![cfg(feature = "cli")]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use backline_engine::checkpoint::synth::{self, SynthSize, XL_TURBO_FOLDER};
use backline_engine::checkpoint::{BASE_FOLDER, TEXT_ENCODER_FOLDER, TURBO_FOLDER, VAE_FOLDER};
use backline_engine::hub::{registry, DownloadError, Hub};
use support::loopback_hub::{same_files, Faults, LoopbackHub};

fn scratch(name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("backline-download-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A hub serving the tiny set (and a tiny XL turbo) as ACE-Step publishes them: the main
/// repository with the turbo DiT, VAE and text encoder as folders, the others at their roots.
/// Returns the hub and the folder of originals.
fn tiny_hub(name: &str) -> (LoopbackHub, PathBuf) {
    let originals = scratch(name).join("originals");
    synth::write_set(&originals, SynthSize::Tiny, 3).unwrap();
    synth::write_xl_turbo(&originals, SynthSize::Tiny, 4).unwrap();
    let hub = LoopbackHub::start();
    for folder in [TURBO_FOLDER, VAE_FOLDER, TEXT_ENCODER_FOLDER] {
        hub.add_folder(registry::MAIN_REPO, folder, &originals.join(folder));
    }
    for folder in [BASE_FOLDER, XL_TURBO_FOLDER] {
        hub.add_folder(registry::find(folder).unwrap().repo, "", &originals.join(folder));
    }
    (hub, originals)
}

fn backline(hub: &LoopbackHub, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_backline"))
        .args(args)
        .env("HF_ENDPOINT", &hub.endpoint)
        .env_remove("HF_TOKEN")
        .env_remove("BACKLINE_CHECKPOINTS")
        .output()
        .expect("the backline binary runs")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn never() -> AtomicBool {
    AtomicBool::new(false)
}

#[test]
fn one_command_fetches_what_generation_needs_and_it_validates() {
    let (hub, originals) = tiny_hub("full");
    let checkpoints = originals.parent().unwrap().join("checkpoints");
    let out = backline(&hub, &["models", "download", "--checkpoints", s(&checkpoints)]);
    assert!(out.status.success(), "{}", text(&out));
    for folder in [TURBO_FOLDER, VAE_FOLDER, TEXT_ENCODER_FOLDER] {
        assert!(same_files(&checkpoints.join(folder), &originals.join(folder)), "{folder} differs from the hub's");
        assert!(text(&out).contains(&format!("{}: OK", checkpoints.join(folder).display())), "{}", text(&out));
    }
    // The main repository's own file stays out of the model folders.
    assert!(!checkpoints.join(TURBO_FOLDER).join(".gitattributes").exists());
    // Large files came through the CDN redirect, small ones directly; nothing was asked twice.
    let served = hub.served();
    assert_eq!(served.len(), served.iter().map(|s| &s.path).collect::<std::collections::BTreeSet<_>>().len());
    let listed = backline(&hub, &["models", "--checkpoints", s(&checkpoints)]);
    assert!(listed.status.success(), "{}", text(&listed));

    // A second run finds every file complete and fetches nothing.
    let again = backline(&hub, &["models", "download", "--checkpoints", s(&checkpoints)]);
    assert!(again.status.success() && text(&again).contains("0.00 GB downloaded"), "{}", text(&again));
    assert_eq!(hub.served().len(), served.len());

    // Another DiT from its own repository, and XL.
    let more = backline(&hub, &["models", "download", "--checkpoints", s(&checkpoints), "--model", "acestep-v15-base", "--model", XL_TURBO_FOLDER]);
    assert!(more.status.success(), "{}", text(&more));
    assert!(same_files(&checkpoints.join(XL_TURBO_FOLDER), &originals.join(XL_TURBO_FOLDER)));
    let listed = backline(&hub, &["models", "--checkpoints", s(&checkpoints)]);
    assert!(listed.status.success() && text(&listed).contains(XL_TURBO_FOLDER), "{}", text(&listed));
}

#[test]
fn a_cut_connection_resumes_from_the_bytes_kept() {
    let (hub, originals) = tiny_hub("cut");
    let checkpoints = originals.parent().unwrap().join("checkpoints");
    let turbo = registry::find(TURBO_FOLDER).unwrap();
    let weights = checkpoints.join(TURBO_FOLDER).join("model.safetensors");
    let size = std::fs::metadata(originals.join(TURBO_FOLDER).join("model.safetensors")).unwrap().len();
    hub.set_faults(Faults { cut: Some(("model.safetensors".into(), 300_000, 1)), corrupt: None, stall: None });

    // One try a run: the run stops, the bytes stay in the part file, nothing looks complete.
    let mut client = Hub::new(&hub.endpoint);
    client.attempts = 1;
    let err = client.download(turbo, &checkpoints, &|_| {}, &never()).unwrap_err();
    assert!(matches!(err, DownloadError::Cut { kept: 300_000, .. }), "{err}");
    assert!(err.to_string().contains("run again to resume"), "{err}");
    assert!(!weights.exists());
    let part = weights.with_file_name("model.safetensors.part");
    assert_eq!(std::fs::metadata(&part).unwrap().len(), 300_000);

    // The next run asks for the rest only, and the file is whole and checked.
    let report = client.download(turbo, &checkpoints, &|_| {}, &never()).unwrap();
    let asked: Vec<_> = hub.served().into_iter().filter(|s| s.path.ends_with("model.safetensors")).collect();
    assert_eq!(asked.len(), 2);
    assert_eq!(asked[1].range_start, Some(300_000));
    assert_eq!(asked[1].body_bytes, size - 300_000);
    assert!(report.kept_bytes >= 300_000, "{report:?}");
    assert!(same_files(&checkpoints.join(TURBO_FOLDER), &originals.join(TURBO_FOLDER)));
    assert!(!part.exists());

    // With the default tries, a cut is resumed within the same run.
    let fresh = originals.parent().unwrap().join("fresh");
    hub.set_faults(Faults { cut: Some(("model.safetensors".into(), 100_000, 1)), corrupt: None, stall: None });
    let out = backline(&hub, &["models", "download", "--checkpoints", s(&fresh), "--model", TURBO_FOLDER]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(same_files(&fresh.join(TURBO_FOLDER), &originals.join(TURBO_FOLDER)));
    assert!(hub.served().iter().any(|s| s.range_start == Some(100_000)));
}

#[test]
fn a_corrupted_file_is_refused_and_removed() {
    let (hub, originals) = tiny_hub("corrupt");
    let checkpoints = originals.parent().unwrap().join("checkpoints");
    hub.set_faults(Faults { corrupt: Some("diffusion_pytorch_model.safetensors".into()), ..Faults::default() });
    let out = backline(&hub, &["models", "download", "--checkpoints", s(&checkpoints), "--model", VAE_FOLDER]);
    assert!(!out.status.success());
    let message = text(&out);
    assert!(message.contains("diffusion_pytorch_model.safetensors does not match") && message.contains("SHA-256"), "{message}");
    let vae = checkpoints.join(VAE_FOLDER);
    assert!(!vae.join("diffusion_pytorch_model.safetensors").exists());
    assert!(!vae.join("diffusion_pytorch_model.safetensors.part").exists());
    // The folder is not usable, and `backline check` says why.
    let check = backline(&hub, &["check", s(&vae)]);
    assert!(!check.status.success() && text(&check).contains("diffusion_pytorch_model.safetensors"), "{}", text(&check));

    // Once the hub serves the right bytes, the run completes.
    hub.set_faults(Faults::default());
    let out = backline(&hub, &["models", "download", "--checkpoints", s(&checkpoints), "--model", VAE_FOLDER]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(same_files(&vae, &originals.join(VAE_FOLDER)));
}

#[test]
fn a_full_disk_is_a_clear_error_and_a_cancel_keeps_the_bytes() {
    let (hub, originals) = tiny_hub("disk");
    let checkpoints = originals.parent().unwrap().join("checkpoints");
    let client = Hub::new(&hub.endpoint);
    let vae = registry::find(VAE_FOLDER).unwrap();
    // The part file is the full device: every write fails with "no space left".
    let dir = checkpoints.join(VAE_FOLDER);
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink("/dev/full", dir.join("diffusion_pytorch_model.safetensors.part")).unwrap();
    let err = client.download(vae, &checkpoints, &|_| {}, &never()).unwrap_err();
    assert!(matches!(err, DownloadError::DiskFull { .. }), "{err}");
    assert!(err.to_string().contains("disk filled up"), "{err}");
    assert!(!dir.join("diffusion_pytorch_model.safetensors").exists());
    std::fs::remove_file(dir.join("diffusion_pytorch_model.safetensors.part")).unwrap();

    // Cancelled after the first chunk of the DiT's weights: the bytes so far stay for next time.
    let turbo = registry::find(TURBO_FOLDER).unwrap();
    let cancel = never();
    let file_start = std::cell::Cell::new(None);
    let stop_midway = |p: backline_engine::hub::DownloadProgress| {
        if p.file == "model.safetensors" {
            let start = *file_start.get().get_or_insert(p.done_bytes);
            file_start.set(Some(start));
            if p.done_bytes > start {
                cancel.store(true, Ordering::Relaxed);
            }
        }
    };
    let err = client.download(turbo, &checkpoints, &stop_midway, &cancel).unwrap_err();
    assert!(matches!(err, DownloadError::Cancelled), "{err}");
    let part = checkpoints.join(TURBO_FOLDER).join("model.safetensors.part");
    assert!(std::fs::metadata(&part).unwrap().len() > 0);
    assert!(!checkpoints.join(TURBO_FOLDER).join("model.safetensors").exists());
    client.download(turbo, &checkpoints, &|_| {}, &never()).unwrap();
    assert!(same_files(&checkpoints.join(TURBO_FOLDER), &originals.join(TURBO_FOLDER)));
}

#[test]
fn unknown_models_and_repositories_are_named() {
    let (hub, originals) = tiny_hub("unknown");
    let checkpoints = originals.parent().unwrap().join("checkpoints");
    let out = backline(&hub, &["models", "download", "--checkpoints", s(&checkpoints), "--model", "acestep-v99"]);
    assert!(!out.status.success() && text(&out).contains("unknown model `acestep-v99`") && text(&out).contains("acestep-v15-xl-turbo"), "{}", text(&out));
    // A model the hub does not have: its listing answers 404.
    let out = backline(&hub, &["models", "download", "--checkpoints", s(&checkpoints), "--model", "acestep-v15-sft"]);
    assert!(!out.status.success() && text(&out).contains("HTTP 404") && text(&out).contains("HF_ENDPOINT"), "{}", text(&out));
}

#[test]
fn a_5hz_lm_downloads_by_name_and_validates() {
    let (hub, originals) = tiny_hub("lm");
    let lm = backline_engine::checkpoint::LM_FOLDERS[0];
    hub.add_folder(registry::find(lm).unwrap().repo, "", &originals.join(lm));
    let checkpoints = originals.parent().unwrap().join("checkpoints");
    let out = backline(&hub, &["models", "download", "--checkpoints", s(&checkpoints), "--model", lm]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(same_files(&checkpoints.join(lm), &originals.join(lm)), "{lm} differs from the hub's");
    assert!(text(&out).contains(&format!("{}: OK", checkpoints.join(lm).display())), "{}", text(&out));
}
