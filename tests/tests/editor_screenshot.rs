//! The editor opens and renders. The standalone app (`backline-standalone`, dummy audio backend
//! with a playing transport at 128 BPM in 7/8) runs under Xvfb; the test finds the "Backline"
//! window, saves a screenshot to `target/test-artifacts/editor.png`, and checks it is a drawn
//! editor, not a blank or black window. Needs Xvfb, xwininfo and ImageMagick's `import`
//! (`cargo xtask test` installs them on Debian).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use backline_tests::{artifacts_dir, existing, workspace_root};

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
        .args([&display, "-screen", "0", "1024x768x24", "-nolisten", "tcp"])
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

#[test]
fn the_editor_opens_under_xvfb_and_draws_itself() {
    let (_xvfb, display) = start_xvfb();
    let app = Command::new(standalone())
        .args(["--backend", "dummy", "--tempo", "128", "--timesig-num", "7", "--timesig-denom", "8"])
        .env("DISPLAY", &display)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the standalone app");
    let _app = Killed(app);

    let (id, width, height) =
        wait_for("the Backline window", Duration::from_secs(60), || find_window(&display, "Backline"));
    assert!(width >= 400 && height >= 300, "window is {width}x{height}");
    // Let egui draw a few frames with the transport running.
    std::thread::sleep(Duration::from_secs(3));

    let png = artifacts_dir().join("editor.png");
    let status = Command::new("import")
        .args(["-window", &id, png.to_str().unwrap()])
        .env("DISPLAY", &display)
        .status()
        .expect("run ImageMagick import");
    assert!(status.success(), "screenshot failed");

    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut pixels).unwrap();
    assert_eq!((info.width, info.height), (width, height));
    let channels = info.color_type.samples();
    let luma: Vec<f32> = pixels[..info.buffer_size()]
        .chunks(channels)
        .map(|p| (p[0] as f32 + p[1.min(channels - 1)] as f32 + p[2.min(channels - 1)] as f32) / 3.0)
        .collect();
    let mean = luma.iter().sum::<f32>() / luma.len() as f32;
    let spread = (luma.iter().map(|l| (l - mean).powi(2)).sum::<f32>() / luma.len() as f32).sqrt();
    let mut distinct: Vec<[u8; 3]> = pixels[..info.buffer_size()].chunks(channels).map(|p| [p[0], p[1], p[2]]).collect();
    distinct.sort_unstable();
    distinct.dedup();
    // A blank, black or single-colour window has no spread and a handful of colours; text and
    // widgets (antialiased) give hundreds.
    assert!(spread > 5.0, "screenshot looks blank: luma spread {spread}");
    assert!(distinct.len() > 50, "screenshot has only {} colours", distinct.len());
    // Text is drawn across the window, not in one corner: each third of the height has detail.
    for third in 0..3 {
        let rows = (third * height as usize / 3)..((third + 1) * height as usize / 3);
        let band = &luma[rows.start * width as usize..rows.end * width as usize];
        let band_mean = band.iter().sum::<f32>() / band.len() as f32;
        let band_spread = (band.iter().map(|l| (l - band_mean).powi(2)).sum::<f32>() / band.len() as f32).sqrt();
        assert!(band_spread > 2.0, "third {third} of the editor is empty (spread {band_spread})");
    }
}
