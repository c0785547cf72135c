//! Settings that belong to the machine, not the project: where the ACE-Step checkpoints are,
//! where takes go by default, how much input the capture keeps, the weights' precision, and
//! whether jobs run here or on an ACE-Step server. Saved as JSON in the user's config folder, so
//! every project and every instance finds the weights (or the server) without asking again.
//!
//! `BACKLINE_CHECKPOINTS` and `BACKLINE_TAKES`, when set, win over the file (a studio that keeps
//! the weights on a shared drive, and the tests).

use std::path::{Path, PathBuf};

use backline_engine::precision::Precision;
use serde::{Deserialize, Serialize};

use crate::capture_store::DEFAULT_CAPTURE_LIMIT_S;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MachineSettings {
    /// The checkpoints folder (`acestep-v15-*/`, `vae/`, `Qwen3-Embedding-0.6B/`); empty = unset.
    pub checkpoints: String,
    /// The default take folder; empty = `<music folder>/Backline Takes`.
    pub take_folder: String,
    /// How many seconds of input the capture keeps (its memory is this machine's).
    pub capture_limit_s: f64,
    /// How the engine holds the model weights (memory against fidelity; this machine's memory).
    pub precision: Precision,
    /// Jobs run on the ACE-Step server at `server_url` instead of this machine's engine.
    pub use_server: bool,
    /// The server's address (`http://host:port`); kept while the switch is off.
    pub server_url: String,
    /// The server's API key; empty = none.
    pub server_api_key: String,
}

impl Default for MachineSettings {
    fn default() -> Self {
        Self {
            checkpoints: String::new(),
            take_folder: String::new(),
            capture_limit_s: DEFAULT_CAPTURE_LIMIT_S,
            precision: Precision::default(),
            use_server: false,
            server_url: String::new(),
            server_api_key: String::new(),
        }
    }
}

impl MachineSettings {
    /// The settings file: `$XDG_CONFIG_HOME/backline/settings.json` (or `~/.config/...`) on Linux,
    /// `~/Library/Application Support/Backline/` on macOS, `%APPDATA%\Backline\` on Windows.
    pub fn file() -> Option<PathBuf> {
        let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        let dir = if cfg!(target_os = "windows") {
            env("APPDATA")?.join("Backline")
        } else if cfg!(target_os = "macos") {
            env("HOME")?.join("Library/Application Support/Backline")
        } else {
            env("XDG_CONFIG_HOME").or_else(|| env("HOME").map(|h| h.join(".config")))?.join("backline")
        };
        Some(dir.join("settings.json"))
    }

    /// The saved settings with the environment's overrides; an unreadable file reads as unset.
    pub fn load() -> Self {
        let mut settings: Self = Self::file()
            .and_then(|f| std::fs::read_to_string(f).ok())
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        settings.apply_env();
        settings
    }

    fn apply_env(&mut self) {
        if let Some(dir) = std::env::var_os("BACKLINE_CHECKPOINTS").filter(|v| !v.is_empty()) {
            self.checkpoints = dir.to_string_lossy().into_owned();
        }
        if let Some(dir) = std::env::var_os("BACKLINE_TAKES").filter(|v| !v.is_empty()) {
            self.take_folder = dir.to_string_lossy().into_owned();
        }
    }

    /// Writes the file. Errors are for the editor to show.
    pub fn save(&self) -> Result<(), String> {
        let file = Self::file().ok_or("no home folder to keep settings in")?;
        save_to(&file, self)
    }

    /// The take folder to use when the project names none.
    pub fn default_take_folder(&self) -> PathBuf {
        if !self.take_folder.is_empty() {
            return PathBuf::from(&self.take_folder);
        }
        let home = std::env::var_os("HOME").or_else(|| std::env::var_os("USERPROFILE")).map(PathBuf::from);
        let music = std::env::var_os("XDG_MUSIC_DIR").map(PathBuf::from).or_else(|| home.map(|h| h.join("Music")));
        music.unwrap_or_else(std::env::temp_dir).join("Backline Takes")
    }
}

fn save_to(file: &Path, settings: &MachineSettings) -> Result<(), String> {
    let dir = file.parent().ok_or("settings file has no folder")?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let text = serde_json::to_string_pretty(settings).expect("strings always serialise");
    std::fs::write(file, text).map_err(|e| format!("cannot write {}: {e}", file.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_an_unreadable_file_reads_as_unset() {
        let dir = std::env::temp_dir().join(format!("backline-settings-{}", std::process::id()));
        let file = dir.join("settings.json");
        let s = MachineSettings {
            checkpoints: "/models/ace".into(),
            capture_limit_s: 90.0,
            precision: Precision::Q8,
            use_server: true,
            server_url: "http://studio:8001".into(),
            ..MachineSettings::default()
        };
        save_to(&file, &s).unwrap();
        let back: MachineSettings = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        assert_eq!(back, s);
        assert_eq!(serde_json::from_str::<MachineSettings>("{}").unwrap(), MachineSettings::default());
        assert!(serde_json::from_str::<MachineSettings>("{oops").is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
