//! The desktop's "choose a folder" dialog, for the checkpoints folder and the take folder.
//!
//! On Linux the dialog is the desktop's own chooser run as a child process: kdialog on KDE,
//! zenity elsewhere (GNOME and the other GTK desktops), as JUCE does on Linux. A plugin must not
//! start a GUI toolkit inside the host's process, where the host may run another version of it.
//! The child runs on its own thread, so the editor keeps drawing while the dialog is open.
//! Other systems get the text field only (Backline's bundles are built for Linux).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc::{self, Receiver, TryRecvError};

/// What the user did with the dialog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Picked {
    Folder(PathBuf),
    Cancelled,
    /// No dialog could be shown; the text says why and what to do instead.
    Unavailable(String),
}

/// One dialog at a time, owned by an editor panel (GUI thread).
#[derive(Default)]
pub struct FolderDialog {
    open: Option<Receiver<Picked>>,
}

impl FolderDialog {
    /// Whether this system has a dialog to offer (the editor shows "Browse…" only then).
    pub const SUPPORTED: bool = cfg!(target_os = "linux");

    /// Opens the dialog at `start` unless one is open already.
    pub fn open(&mut self, title: &str, start: &Path) {
        if self.is_open() {
            return;
        }
        let (tx, rx) = mpsc::channel();
        let (title, start) = (title.to_owned(), start.to_owned());
        let spawned = std::thread::Builder::new().name("backline-folder-dialog".into()).spawn(move || {
            let _ = tx.send(run_chooser(&title, &start));
        });
        match spawned {
            Ok(_) => self.open = Some(rx),
            Err(e) => {
                let (tx, rx) = mpsc::channel();
                let _ = tx.send(Picked::Unavailable(format!("The folder dialog could not start ({e}).")));
                self.open = Some(rx);
            }
        }
    }

    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// The user's answer, once, when the dialog has closed.
    pub fn poll(&mut self) -> Option<Picked> {
        let rx = self.open.as_ref()?;
        let picked = match rx.try_recv() {
            Ok(picked) => picked,
            Err(TryRecvError::Empty) => return None,
            Err(TryRecvError::Disconnected) => Picked::Unavailable("The folder dialog stopped without an answer.".into()),
        };
        self.open = None;
        Some(picked)
    }
}

/// The choosers to try, in order: the desktop's own first.
fn choosers(title: &str, start: &Path) -> Vec<Command> {
    // zenity opens a folder given with a trailing slash, rather than selecting it in its parent.
    let mut start_dir = start.as_os_str().to_owned();
    if !start_dir.is_empty() && !start.to_string_lossy().ends_with('/') {
        start_dir.push("/");
    }
    let mut zenity = Command::new("zenity");
    zenity.args(["--file-selection", "--directory", "--title", title]);
    if !start.as_os_str().is_empty() {
        zenity.arg("--filename").arg(&start_dir);
    }
    let mut kdialog = Command::new("kdialog");
    kdialog.args(["--title", title, "--getexistingdirectory"]).arg(if start.as_os_str().is_empty() {
        Path::new(".")
    } else {
        start
    });
    let on_kde = std::env::var("XDG_CURRENT_DESKTOP").is_ok_and(|d| d.to_ascii_uppercase().contains("KDE"));
    if on_kde {
        vec![kdialog, zenity]
    } else {
        vec![zenity, kdialog]
    }
}

/// Runs the first chooser that exists and reads its answer: the folder on standard output and
/// exit status 0; status 1 means the user cancelled.
fn run_chooser(title: &str, start: &Path) -> Picked {
    for mut chooser in choosers(title, start) {
        let program = chooser.get_program().to_string_lossy().into_owned();
        let output = match chooser.output() {
            Ok(output) => output,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Picked::Unavailable(format!("The folder dialog ({program}) could not start: {e}.")),
        };
        return match output.status.code() {
            Some(0) => {
                let text = String::from_utf8_lossy(&output.stdout);
                let folder = text.trim_end_matches(['\n', '\r']);
                if folder.is_empty() {
                    Picked::Cancelled
                } else {
                    Picked::Folder(PathBuf::from(folder))
                }
            }
            Some(1) => Picked::Cancelled,
            _ => Picked::Unavailable(format!(
                "The folder dialog ({program}) failed: {}. Type the path in the field instead.",
                String::from_utf8_lossy(&output.stderr).trim()
            )),
        };
    }
    Picked::Unavailable(
        "No folder dialog on this system (install zenity or kdialog); type the path in the field instead.".into(),
    )
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A stand-in `zenity` that answers as the real one does: the folder and status 0, or
    /// status 1 for Cancel. It refuses to answer unless asked for a folder.
    fn fake_zenity(dir: &Path, answer: &str, status: i32) {
        std::fs::create_dir_all(dir).unwrap();
        let script = format!(
            "#!/bin/sh\ncase \" $* \" in *\" --directory \"*) ;; *) exit 5;; esac\nprintf '%s\\n' '{answer}'\nexit {status}\n"
        );
        let file = dir.join("zenity");
        std::fs::write(&file, script).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn pick(dialog: &mut FolderDialog) -> Picked {
        dialog.open("Checkpoints", Path::new("/tmp"));
        assert!(dialog.is_open());
        loop {
            if let Some(picked) = dialog.poll() {
                assert!(!dialog.is_open());
                return picked;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// One test changes PATH for the process, so the three answers run in order in it.
    #[test]
    fn answers_of_the_desktop_chooser() {
        let root = std::env::temp_dir().join(format!("backline-dialog-{}", std::process::id()));
        let old_path = std::env::var_os("PATH").unwrap_or_default();
        let mut dialog = FolderDialog::default();

        fake_zenity(&root.join("ok"), "/music/ACE Step/checkpoints", 0);
        std::env::set_var("PATH", root.join("ok"));
        assert_eq!(pick(&mut dialog), Picked::Folder("/music/ACE Step/checkpoints".into()), "spaces kept");

        fake_zenity(&root.join("cancel"), "", 1);
        std::env::set_var("PATH", root.join("cancel"));
        assert_eq!(pick(&mut dialog), Picked::Cancelled);

        std::env::set_var("PATH", root.join("nothing-here"));
        let Picked::Unavailable(why) = pick(&mut dialog) else { panic!("no chooser must say so") };
        assert!(why.contains("zenity") && why.contains("type the path"), "{why}");

        std::env::set_var("PATH", old_path);
        let _ = std::fs::remove_dir_all(root);
    }
}
