//! The editor opens and renders. The standalone app (`backline-standalone`, dummy audio backend
//! with a playing transport at 128 BPM in 7/8) runs under Xvfb; the test finds the "Backline"
//! window, saves a screenshot to `target/test-artifacts/editor.png`, and checks it is a drawn
//! editor, not a blank or black window. Needs Xvfb, xwininfo and ImageMagick's `import`
//! (`cargo xtask test` installs them on Debian).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use backline_engine::checkpoint::{TEXT_ENCODER_FOLDER, TURBO_FOLDER, VAE_FOLDER};
use backline_engine::hub::registry;
use backline_tests::workflow::{scratch, use_tiny_checkpoints};
use backline_tests::{artifacts_dir, existing, workspace_root};

#[path = "../../engine/tests/support/loopback_hub.rs"]
mod loopback_hub;

/// One Xvfb at a time: two tests picking a display number at once could pick the same one.
static DISPLAY_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Kills the child process when dropped, so a failing test leaves nothing running.
struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn standalone() -> PathBuf {
    existing(workspace_root().join("target/release/backline-standalone"), "BACKLINE_STANDALONE")
}

fn wait_for<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Start Xvfb on a free display number.
fn start_xvfb() -> (Killed, String) {
    let number = (90..140)
        .find(|n| !Path::new(&format!("/tmp/.X{n}-lock")).exists())
        .expect("a free X display number");
    let display = format!(":{number}");
    let child = Command::new("Xvfb")
        .args([&display, "-screen", "0", "1280x1024x24", "-nolisten", "tcp"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start Xvfb (apt-get install xvfb)");
    let xvfb = Killed(child);
    let socket = format!("/tmp/.X11-unix/X{number}");
    wait_for("the Xvfb socket", Duration::from_secs(20), || Path::new(&socket).exists().then_some(()));
    (xvfb, display)
}

/// The id and size of the top-level window named `name`, from `xwininfo -root -tree`.
fn find_window(display: &str, name: &str) -> Option<(String, u32, u32)> {
    let out = Command::new("xwininfo").args(["-root", "-tree"]).env("DISPLAY", display).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().find(|l| l.contains(&format!("\"{name}\""))).and_then(|line| {
        let id = line.split_whitespace().next()?.to_owned();
        // "... 640x560+0+0  +0+0": the first WxH after the name.
        let size = line.split_whitespace().find(|w| w.contains('x') && w.contains('+'))?;
        let (w, rest) = size.split_once('x')?;
        let h = rest.split('+').next()?;
        Some((id, w.parse().ok()?, h.parse().ok()?))
    })
}

/// Saves a screenshot of window `id` to `target/test-artifacts/<name>` and returns its RGB rows.
fn screenshot(display: &str, id: &str, name: &str) -> (Vec<[u8; 3]>, u32, u32) {
    let png = artifacts_dir().join(name);
    let status = Command::new("import")
        .args(["-window", id, png.to_str().unwrap()])
        .env("DISPLAY", display)
        .status()
        .expect("run ImageMagick import");
    assert!(status.success(), "screenshot failed");
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut pixels).unwrap();
    let channels = info.color_type.samples();
    let rgb = pixels[..info.buffer_size()]
        .chunks(channels)
        .map(|p| [p[0], p[1.min(channels - 1)], p[2.min(channels - 1)]])
        .collect();
    (rgb, info.width, info.height)
}

/// A drawn editor, not a blank or black window: brightness varies in every third of its height
/// and antialiased text gives many colours.
fn assert_drawn(rgb: &[[u8; 3]], width: u32, height: u32) {
    let luma: Vec<f32> = rgb.iter().map(|p| (p[0] as f32 + p[1] as f32 + p[2] as f32) / 3.0).collect();
    let mean = luma.iter().sum::<f32>() / luma.len() as f32;
    let spread = (luma.iter().map(|l| (l - mean).powi(2)).sum::<f32>() / luma.len() as f32).sqrt();
    let mut distinct = rgb.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    assert!(spread > 5.0, "screenshot looks blank: luma spread {spread}");
    assert!(distinct.len() > 50, "screenshot has only {} colours", distinct.len());
    for third in 0..3 {
        let rows = (third * height as usize / 3)..((third + 1) * height as usize / 3);
        let band = &luma[rows.start * width as usize..rows.end * width as usize];
        let band_mean = band.iter().sum::<f32>() / band.len() as f32;
        let band_spread = (band.iter().map(|l| (l - band_mean).powi(2)).sum::<f32>() / band.len() as f32).sqrt();
        assert!(band_spread > 2.0, "third {third} of the editor is empty (spread {band_spread})");
    }
}

/// Starts the standalone app (dummy audio backend, transport playing at `tempo` in 7/8) on
/// `display`; returns it and its window's id and size.
fn start_app(display: &str, tempo: &str, env: &[(&str, std::ffi::OsString)]) -> (Killed, String, u32, u32) {
    let app = Command::new(standalone())
        .args(["--backend", "dummy", "--tempo", tempo, "--timesig-num", "7", "--timesig-denom", "8"])
        .env("DISPLAY", display)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the standalone app");
    let app = Killed(app);
    let (id, width, height) =
        wait_for("the Backline window", Duration::from_secs(60), || find_window(display, "Backline"));
    assert!(width >= 400 && height >= 300, "window is {width}x{height}");
    (app, id, width, height)
}

fn xdotool(display: &str, args: &[&str]) {
    let status = Command::new("xdotool").args(args).env("DISPLAY", display).status().expect("run xdotool");
    assert!(status.success(), "xdotool {args:?} failed");
}

/// Clicks at (x, y) inside window `id`.
fn click(display: &str, id: &str, x: u32, y: u32) {
    xdotool(display, &["mousemove", "--window", id, &x.to_string(), &y.to_string()]);
    std::thread::sleep(Duration::from_millis(150));
    xdotool(display, &["click", "1"]);
    std::thread::sleep(Duration::from_millis(400));
}

#[test]
fn the_editor_opens_under_xvfb_and_draws_itself() {
    let _one = DISPLAY_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let (_xvfb, display) = start_xvfb();
    let (_app, id, width, height) = start_app(&display, "128", &[]);
    // Let egui draw a few frames with the transport running.
    std::thread::sleep(Duration::from_secs(3));
    let (rgb, w, h) = screenshot(&display, &id, "editor.png");
    assert_eq!((w, h), (width, height));
    assert_drawn(&rgb, w, h);
}

/// Where the widgets are in the default window (logical pixels at scale 1): the checkpoints
/// folder's Browse button, the task picker's box, its "Generate (text to music)" entry once open,
/// and the Generate button (with a checkpoints folder that holds the models).
const BROWSE_CHECKPOINTS: (u32, u32) = (633, 148);
/// The Models panel's Download button while the folder is empty (its two warnings above it).
const DOWNLOAD_BUTTON: (u32, u32) = (521, 303);
/// The Models panel's Weights box, and its third entry (8-bit) once open.
const WEIGHTS_BOX: (u32, u32) = (92, 218);
const WEIGHTS_Q8: (u32, u32) = (120, 291);
const TASK_BOX: (u32, u32) = (183, 433);
const TASK_ITEM: (u32, u32) = (148, 460);
/// The Take row's Loop checkbox (the loop's wrap choice appears beside it once on).
const LOOP_CHECKBOX: (u32, u32) = (71, 628);
/// The Key box, an item in its list, and *Let the model plan* beside it (Generate only).
const KEY_BOX: (u32, u32) = (120, 576);
const KEY_ITEM: (u32, u32) = (110, 624);
const PLAN_CHECKBOX: (u32, u32) = (197, 576);
const GENERATE_BUTTON: (u32, u32) = (61, 724);

/// A stand-in for the desktop's folder dialog (`zenity`, as the plugin runs it on Linux): it
/// answers `folder` as the real one does when the user picks it, and refuses unless it was asked
/// for a folder. Returns the directory to put first on PATH.
fn folder_dialog_answering(folder: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = scratch("editor-dialog-bin");
    let script = format!(
        "#!/bin/sh\ncase \" $* \" in *\" --directory \"*) ;; *) exit 5;; esac\nprintf '%s\\n' '{}'\n",
        folder.display()
    );
    std::fs::write(bin.join("zenity"), script).unwrap();
    std::fs::set_permissions(bin.join("zenity"), std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

/// The producer's way in: the editor under Xvfb, driven with xdotool. The app starts pointed at
/// an empty folder; Download fetches what generation needs into it from a model hub on loopback
/// (`HF_ENDPOINT`), off the GUI thread, with its progress drawn. Browse… opens the folder dialog
/// and the folder picked there is used and remembered. Weights set to 8-bit is remembered too.
/// Then tick Loop in the Take row, choose the task, press Generate, and
/// wait for the take to be written and listed; the screenshots show the job's progress and then
/// the take list.
#[test]
fn generate_from_the_editor_under_xvfb() {
    let _one = DISPLAY_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let checkpoints = use_tiny_checkpoints("editor");
    let takes = scratch("editor-takes");
    std::env::set_var("BACKLINE_TAKES", &takes);
    let empty = scratch("editor-empty-folder");
    let dialog_bin = folder_dialog_answering(checkpoints);
    let path = std::env::join_paths(
        std::iter::once(dialog_bin).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )
    .unwrap();
    let hub = loopback_hub::LoopbackHub::start();
    for folder in [TURBO_FOLDER, VAE_FOLDER, TEXT_ENCODER_FOLDER] {
        hub.add_folder(registry::MAIN_REPO, folder, &checkpoints.join(folder));
    }
    // Slow enough in the DiT's weights for the progress to be on screen.
    hub.set_faults(loopback_hub::Faults { stall: Some(("model.safetensors".into(), Duration::from_secs(2))), ..Default::default() });
    let (_xvfb, display) = start_xvfb();
    let (_app, id, _, _) = start_app(
        &display,
        "140",
        &[("BACKLINE_CHECKPOINTS", empty.clone().into_os_string()), ("PATH", path), ("HF_ENDPOINT", hub.endpoint.clone().into())],
    );
    std::thread::sleep(Duration::from_secs(2));
    let (no_models, w0, _) = screenshot(&display, &id, "editor-no-models.png");

    click(&display, &id, DOWNLOAD_BUTTON.0, DOWNLOAD_BUTTON.1);
    std::thread::sleep(Duration::from_millis(700));
    let (downloading, _, _) = screenshot(&display, &id, "editor-downloading.png");
    let row = |rgb: &[[u8; 3]], y: u32| rgb[(y * w0) as usize..((y + 1) * w0) as usize].to_vec();
    assert_ne!(row(&no_models, DOWNLOAD_BUTTON.1), row(&downloading, DOWNLOAD_BUTTON.1), "no progress where the Download row was");
    wait_for("the download into the empty folder", Duration::from_secs(60), || {
        [TURBO_FOLDER, VAE_FOLDER, TEXT_ENCODER_FOLDER]
            .iter()
            .all(|f| loopback_hub::same_files(&empty.join(f), &checkpoints.join(f)))
            .then_some(())
    });
    std::thread::sleep(Duration::from_secs(4));
    screenshot(&display, &id, "editor-downloaded.png");

    click(&display, &id, BROWSE_CHECKPOINTS.0, BROWSE_CHECKPOINTS.1);
    let settings = Path::new(&std::env::var_os("XDG_CONFIG_HOME").unwrap()).join("backline/settings.json");
    let wanted = checkpoints.display().to_string();
    wait_for("the picked folder to be remembered for this machine", Duration::from_secs(20), || {
        let saved: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&settings).ok()?).ok()?;
        (saved["checkpoints"] == wanted.as_str()).then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));

    click(&display, &id, WEIGHTS_BOX.0, WEIGHTS_BOX.1);
    std::thread::sleep(Duration::from_millis(500));
    screenshot(&display, &id, "editor-weights.png");
    click(&display, &id, WEIGHTS_Q8.0, WEIGHTS_Q8.1);
    wait_for("the 8-bit weights to be remembered for this machine", Duration::from_secs(20), || {
        let saved: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&settings).ok()?).ok()?;
        (saved["precision"] == "q8").then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    let (before, w, h) = screenshot(&display, &id, "editor-before.png");

    click(&display, &id, LOOP_CHECKBOX.0, LOOP_CHECKBOX.1);
    std::thread::sleep(Duration::from_millis(500));
    let (looped, _, _) = screenshot(&display, &id, "editor-loop.png");
    let take_row = |rgb: &[[u8; 3]]| rgb[((LOOP_CHECKBOX.1 - 8) * w) as usize..((LOOP_CHECKBOX.1 + 8) * w) as usize].to_vec();
    assert_ne!(take_row(&before), take_row(&looped), "Loop did not turn on (no wrap choice beside it)");

    click(&display, &id, TASK_BOX.0, TASK_BOX.1);
    click(&display, &id, TASK_ITEM.0, TASK_ITEM.1);
    // Let the model plan: it needs a key, so it is greyed until one is chosen.
    let plan_row = |rgb: &[[u8; 3]]| rgb[((PLAN_CHECKBOX.1 - 8) * w) as usize..((PLAN_CHECKBOX.1 + 8) * w) as usize].to_vec();
    click(&display, &id, KEY_BOX.0, KEY_BOX.1);
    std::thread::sleep(Duration::from_millis(500));
    screenshot(&display, &id, "editor-keys.png");
    click(&display, &id, KEY_ITEM.0, KEY_ITEM.1);
    std::thread::sleep(Duration::from_millis(500));
    let (keyed, _, _) = screenshot(&display, &id, "editor-key.png");
    click(&display, &id, PLAN_CHECKBOX.0, PLAN_CHECKBOX.1);
    std::thread::sleep(Duration::from_millis(500));
    let (planned, _, _) = screenshot(&display, &id, "editor-plan.png");
    assert_ne!(plan_row(&looped), plan_row(&keyed), "no key was chosen");
    assert_ne!(plan_row(&keyed), plan_row(&planned), "Let the model plan did not tick");
    click(&display, &id, GENERATE_BUTTON.0, GENERATE_BUTTON.1);
    std::thread::sleep(Duration::from_millis(300));
    screenshot(&display, &id, "editor-progress.png");

    let wav = wait_for("a take file", Duration::from_secs(300), || {
        std::fs::read_dir(&takes).ok()?.flatten().map(|e| e.path()).find(|p| p.extension().is_some_and(|x| x == "wav"))
    });
    assert!(std::fs::metadata(&wav).unwrap().len() > 44, "{} is empty", wav.display());
    std::thread::sleep(Duration::from_secs(1));
    let (after, w2, h2) = screenshot(&display, &id, "editor-take.png");
    assert_eq!((w, h), (w2, h2));
    assert_drawn(&after, w, h);
    // The take list grew below the Generate button: rows there changed.
    let changed_rows = (GENERATE_BUTTON.1 + 40..h)
        .filter(|&y| {
            let row = (y * w) as usize..((y + 1) * w) as usize;
            before[row.clone()] != after[row]
        })
        .count();
    assert!(changed_rows > 12, "the take list did not appear ({changed_rows} rows changed)");
}

/// The Models section's Engine choice (on its title row), and in server mode the address field.
const SERVER_RADIO: (u32, u32) = (240, 125);
const SERVER_ADDRESS: (u32, u32) = (440, 125);
const SERVER_KEY: (u32, u32) = (630, 125);
/// The Models section's rows below its title, where a message or the server's models appear.
const MODELS_BODY_ROWS: std::ops::Range<u32> = 132..230;
/// The Generate button with a server's two models listed.
const GENERATE_BUTTON_SERVER: (u32, u32) = (61, 673);

/// Pixels in egui's warning colour (orange text) in `rows`.
fn warning_pixels(rgb: &[[u8; 3]], width: u32, rows: std::ops::Range<u32>) -> usize {
    rgb[(rows.start * width) as usize..(rows.end * width) as usize]
        .iter()
        .filter(|p| p[0] > 180 && (90..170).contains(&p[1]) && p[2] < 60)
        .count()
}

/// Replaces the text of the field at (x, y) with `text`, as a user does: click, select all, type.
fn type_into(display: &str, id: &str, (x, y): (u32, u32), text: &str) {
    click(display, id, x, y);
    xdotool(display, &["key", "ctrl+a"]);
    xdotool(display, &["type", "--delay", "20", text]);
    std::thread::sleep(Duration::from_millis(300));
}

/// The producer's other engine: an ACE-Step server, chosen in the Models section. The app starts
/// on a machine with no models at all; the user picks "ACE-Step server", types an address where
/// nothing answers (the section says so, in the warning colour), then the real server's address
/// and its key: the server's models are listed, the choice is remembered for the machine, and
/// Generate writes a take that only the server can have made.
#[test]
fn generate_through_a_server_chosen_in_the_editor() {
    use backline_engine::backend::{LocalBackend, LocalSettings};
    use backline_engine::server::{self, ServerConfig};
    let _one = DISPLAY_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let checkpoints = use_tiny_checkpoints("editor");
    let root = scratch("editor-server");
    let backend = LocalBackend::new(LocalSettings::cpu(checkpoints)).unwrap();
    let config = ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        api_key: Some("studio-key".into()),
        max_queue: server::DEFAULT_MAX_QUEUE,
        max_upload_bytes: 64 << 20,
        out_dir: root.join("served"),
        retention: server::DEFAULT_RETENTION,
    };
    let running = server::start(config, std::sync::Arc::new(backend), "cpu".into()).unwrap();
    let takes = root.join("takes");
    let config_home = root.join("config");
    let no_models = root.join("no-models");
    std::fs::create_dir_all(&no_models).unwrap();

    let (_xvfb, display) = start_xvfb();
    let (_app, id, _, _) = start_app(
        &display,
        "120",
        &[
            ("BACKLINE_CHECKPOINTS", no_models.into_os_string()),
            ("BACKLINE_TAKES", takes.clone().into_os_string()),
            ("XDG_CONFIG_HOME", config_home.clone().into_os_string()),
        ],
    );
    std::thread::sleep(Duration::from_secs(2));
    let (local, w, _) = screenshot(&display, &id, "editor-server-local.png");
    click(&display, &id, SERVER_RADIO.0, SERVER_RADIO.1);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    type_into(&display, &id, SERVER_ADDRESS, &closed.to_string());
    xdotool(&display, &["key", "Return"]);
    std::thread::sleep(Duration::from_secs(2));
    let (down, _, _) = screenshot(&display, &id, "editor-server-down.png");
    let body = |rgb: &[[u8; 3]]| rgb[(MODELS_BODY_ROWS.start * w) as usize..(MODELS_BODY_ROWS.end * w) as usize].to_vec();
    assert_ne!(body(&local), body(&down), "the Models section did not change to the server's");
    assert!(warning_pixels(&down, w, MODELS_BODY_ROWS) > 50, "no message for a server that is not answering");

    type_into(&display, &id, SERVER_ADDRESS, &running.addr.to_string());
    type_into(&display, &id, SERVER_KEY, "studio-key");
    xdotool(&display, &["key", "Return"]);
    let settings = config_home.join("backline/settings.json");
    let wanted = format!("http://{}", running.addr);
    wait_for("the server to be remembered for this machine", Duration::from_secs(20), || {
        let saved: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&settings).ok()?).ok()?;
        (saved["use_server"] == true && saved["server_url"] == wanted.as_str() && saved["server_api_key"] == "studio-key")
            .then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    let (up, _, _) = screenshot(&display, &id, "editor-server.png");
    assert_eq!(warning_pixels(&up, w, MODELS_BODY_ROWS), 0, "a warning while the server answers");

    click(&display, &id, GENERATE_BUTTON_SERVER.0, GENERATE_BUTTON_SERVER.1);
    let wav = wait_for("a take made through the server", Duration::from_secs(300), || {
        std::fs::read_dir(&takes).ok()?.flatten().map(|e| e.path()).find(|p| p.extension().is_some_and(|x| x == "wav"))
    });
    assert!(std::fs::metadata(&wav).unwrap().len() > 44, "{} is empty", wav.display());
    std::thread::sleep(Duration::from_secs(1));
    screenshot(&display, &id, "editor-server-take.png");
    running.stop();
}
