//! The six ACE-Step tasks and the names a request may use with them (tracks, keys).
//!
//! Names and support follow upstream `acestep/constants.py` (`TASK_TYPES`, `TASK_TYPES_TURBO`,
//! `TRACK_NAMES`, `VALID_KEYSCALES`); see `reference/model-spec.md` section 4.

use std::fmt;

/// What a generation job does. Serialised with ACE-Step's `task_type` strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskType {
    /// A new piece from caption, lyrics and metadata.
    #[default]
    Text2Music,
    /// Regenerate a window of the source audio, keeping the rest.
    Repaint,
    /// Re-render the source audio in a new style, keeping its structure.
    Cover,
    /// Add one track (instrument) on top of the source audio. Base model only.
    Lego,
    /// Pull one track (stem) out of the source audio. Base model only.
    Extract,
    /// Complete a partial arrangement with the named track classes. Base model only.
    Complete,
}

impl TaskType {
    pub const ALL: [TaskType; 6] = [
        TaskType::Text2Music,
        TaskType::Repaint,
        TaskType::Cover,
        TaskType::Lego,
        TaskType::Extract,
        TaskType::Complete,
    ];

    /// The `task_type` string ACE-Step uses.
    pub fn as_str(&self) -> &'static str {
        match self {
            TaskType::Text2Music => "text2music",
            TaskType::Repaint => "repaint",
            TaskType::Cover => "cover",
            TaskType::Lego => "lego",
            TaskType::Extract => "extract",
            TaskType::Complete => "complete",
        }
    }

    /// Whether the task reads source audio (a captured region, in the plugin).
    pub fn needs_source_audio(&self) -> bool {
        !matches!(self, TaskType::Text2Music)
    }

    /// Whether the task names a track (lego, extract) or track classes (complete).
    pub fn uses_track_names(&self) -> bool {
        matches!(self, TaskType::Lego | TaskType::Extract | TaskType::Complete)
    }

    /// Whether only the base model can run the task (the turbo and SFT models cannot).
    pub fn needs_base_model(&self) -> bool {
        self.uses_track_names()
    }
}

impl fmt::Display for TaskType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the DiT's chunk mask holds for a repaint or lego window (upstream `chunk_mask_mode`,
/// `inference.py:163`). Every other task's mask is 1 everywhere in either mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChunkMaskMode {
    /// Upstream's default: 1 on every frame. Upstream means "2.0, the model decides" but writes
    /// 2.0 into a bool tensor, which reads back as 1 (`conditioning_masks.py:74-77`). The window
    /// still silences repaint's source, and the source is still held outside it.
    #[default]
    Auto,
    /// 1 inside the window, 0 outside.
    Explicit,
}

/// Turbo's step limit: its sampler's variable schedule stops at 20
/// (`models/turbo/modeling_acestep_v15_turbo.py:1971`) and the UI offers 1-20
/// (`ui/gradio/events/generation/model_config.py:117`).
pub const TURBO_MAX_STEPS: u32 = 20;
/// The turbo model's default number of steps (`model-spec.md` section 3).
pub const TURBO_STEPS: u32 = 8;
/// Steps for the base model, the SFT model, and the most either takes
/// (`ui/gradio/events/generation/model_config.py:131-134`).
pub const BASE_STEPS: u32 = 32;
pub const SFT_STEPS: u32 = 50;
pub const BASE_MAX_STEPS: u32 = 200;
/// Which DiT is loaded. Decides the defaults and which tasks can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// `acestep-v15-turbo`: CFG-distilled, 8 steps, no guidance.
    Turbo,
    /// `acestep-v15-base`: CFG (APG) guidance, and the only model that runs every task.
    Base,
    /// `acestep-v15-sft`: like base for sampling, with 50 default steps; it runs only the turbo's
    /// tasks (`constants.py:82`; `ui/gradio/events/generation/model_config.py:107-112`).
    Sft,
}

impl ModelKind {
    /// Steps when the request gives none (`ui/gradio/events/generation/model_config.py:116,131`).
    pub fn default_steps(self) -> u32 {
        match self {
            ModelKind::Turbo => TURBO_STEPS,
            ModelKind::Base => BASE_STEPS,
            ModelKind::Sft => SFT_STEPS,
        }
    }

    pub fn max_steps(self) -> u32 {
        match self {
            ModelKind::Turbo => TURBO_MAX_STEPS,
            ModelKind::Base | ModelKind::Sft => BASE_MAX_STEPS,
        }
    }

    /// Whether the model samples with classifier-free guidance. The turbo model has it distilled
    /// in, and upstream forces its guidance to 1 (`core/generation/handler/generate_music.py:288-294`).
    pub fn uses_cfg(self) -> bool {
        !matches!(self, ModelKind::Turbo)
    }

    /// Whether the model can run `task` (`constants.py:82,89`).
    pub fn runs(self, task: TaskType) -> bool {
        self == ModelKind::Base || !task.needs_base_model()
    }

    /// The kind a model folder's name says (`acestep-v15-xl-turbo`: turbo), where nothing more
    /// is known of it: a remote server's model list.
    pub fn from_folder_name(name: &str) -> ModelKind {
        let name = name.to_ascii_lowercase();
        if name.contains("turbo") {
            ModelKind::Turbo
        } else if name.contains("sft") {
            ModelKind::Sft
        } else {
            ModelKind::Base
        }
    }

    /// The checkpoint folder ACE-Step publishes this model in.
    pub const fn folder(self) -> &'static str {
        match self {
            ModelKind::Turbo => "acestep-v15-turbo",
            ModelKind::Base => "acestep-v15-base",
            ModelKind::Sft => "acestep-v15-sft",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Turbo => "turbo",
            ModelKind::Base => "base",
            ModelKind::Sft => "sft",
        }
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Track names for lego, extract and complete, in upstream order.
pub const TRACK_NAMES: [&str; 12] = [
    "woodwinds",
    "brass",
    "fx",
    "synth",
    "strings",
    "percussion",
    "keyboard",
    "guitar",
    "bass",
    "drums",
    "backing_vocals",
    "vocals",
];

const KEY_LETTERS: [char; 7] = ['A', 'B', 'C', 'D', 'E', 'F', 'G'];
const KEY_ACCIDENTALS: [&str; 5] = ["", "#", "b", "♯", "♭"];

/// Whether `keyscale` is one of ACE-Step's 70 valid keys: `{A..G}{'',#,b,♯,♭} {major|minor}`.
pub fn is_valid_keyscale(keyscale: &str) -> bool {
    let Some((tonic, mode)) = keyscale.split_once(' ') else { return false };
    let mut chars = tonic.chars();
    let letter_ok = chars.next().is_some_and(|c| KEY_LETTERS.contains(&c));
    letter_ok && KEY_ACCIDENTALS.contains(&chars.as_str()) && matches!(mode, "major" | "minor")
}

/// All 70 valid keys, every spelling (`constants.py` `VALID_KEYSCALES`).
pub fn valid_keyscales() -> impl Iterator<Item = String> {
    KEY_LETTERS.into_iter().flat_map(|letter| {
        KEY_ACCIDENTALS.into_iter().flat_map(move |acc| ["major", "minor"].into_iter().map(move |mode| format!("{letter}{acc} {mode}")))
    })
}

/// The keys offered to users, in ASCII spelling, circle-of-letters order: "C major", "C minor",
/// "C# major", ... (the Unicode ♯/♭ spellings are accepted but not offered).
pub fn keyscale_choices() -> impl Iterator<Item = String> {
    ['C', 'D', 'E', 'F', 'G', 'A', 'B'].into_iter().flat_map(|letter| {
        ["", "#", "b"].into_iter().flat_map(move |acc| {
            ["major", "minor"].into_iter().map(move |mode| format!("{letter}{acc} {mode}"))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_strings_round_trip_through_serde() {
        for task in TaskType::ALL {
            let json = serde_json::to_string(&task).unwrap();
            assert_eq!(json, format!("\"{}\"", task.as_str()));
            assert_eq!(serde_json::from_str::<TaskType>(&json).unwrap(), task);
        }
        assert!(serde_json::from_str::<TaskType>("\"remix\"").is_err());
    }

    #[test]
    fn only_base_model_tasks_name_tracks() {
        let base_only: Vec<_> = TaskType::ALL.iter().filter(|t| t.needs_base_model()).collect();
        assert_eq!(base_only, [&TaskType::Lego, &TaskType::Extract, &TaskType::Complete]);
    }

    #[test]
    fn seventy_valid_keyscales() {
        let mut valid = 0;
        for letter in KEY_LETTERS {
            for acc in KEY_ACCIDENTALS {
                for mode in ["major", "minor"] {
                    assert!(is_valid_keyscale(&format!("{letter}{acc} {mode}")));
                    valid += 1;
                }
            }
        }
        assert_eq!(valid, 70);
        for bad in ["", "C", "H major", "C## major", "c major", "C Major", "C  major", "Cb dorian"] {
            assert!(!is_valid_keyscale(bad), "{bad:?}");
        }
        let offered: Vec<String> = keyscale_choices().collect();
        assert_eq!(offered.len(), 42);
        assert!(offered.iter().all(|k| is_valid_keyscale(k)));
        assert_eq!(offered[0], "C major");
    }
}
