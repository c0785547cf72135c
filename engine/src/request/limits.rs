//! Upstream ACE-Step 1.5's limits and defaults for a request, each citing where upstream states it.

pub use crate::task::{BASE_MAX_STEPS, BASE_STEPS, SFT_STEPS, TURBO_MAX_STEPS, TURBO_STEPS};
pub use crate::timing::{DURATION_MAX_S, DURATION_MIN_S, FALLBACK_DURATION_S};
/// Tempo range (`constants.py:52-53`).
pub const BPM_MIN: u32 = 30;
pub const BPM_MAX: u32 = 300;
/// Time signatures, as the LM writes them (`constants.py:66`, `VALID_TIME_SIGNATURES`), and as
/// users write them (model-spec section 5.1: "4/4" goes into the metas verbatim).
pub const TIME_SIGNATURES: [&str; 8] = ["2", "3", "4", "6", "2/4", "3/4", "4/4", "6/8"];
/// Vocal language codes (`constants.py:13-20`, `VALID_LANGUAGES`).
pub const VOCAL_LANGUAGES: [&str; 51] = [
    "ar", "az", "bg", "bn", "ca", "cs", "da", "de", "el", "en", "es", "fa", "fi", "fr", "he", "hi", "hr", "ht", "hu",
    "id", "is", "it", "ja", "ko", "la", "lt", "ms", "ne", "nl", "no", "pa", "pl", "pt", "ro", "ru", "sa", "sk", "sr",
    "sv", "sw", "ta", "te", "th", "tl", "tr", "uk", "ur", "vi", "yue", "zh", "unknown",
];
/// The lyric header's language when none is given: `GenerationParams.vocal_language`
/// (`inference.py:117`). Upstream's REST model says "en" instead (`release_task_models.py:40`).
pub const DEFAULT_VOCAL_LANGUAGE: &str = "unknown";
/// Items per job (`core/generation/handler/service_generate_request.py:12`, `MAX_BATCH_SIZE`).
pub const MAX_BATCH_SIZE: u32 = 8;
/// Items per job when not given (`api/job_generation_setup.py:203`; `inference.py:243`).
pub const DEFAULT_BATCH_SIZE: u32 = 2;
/// Timestep shift: default and range (`api/http/release_task_models.py:92-95`;
/// `ui/gradio/interfaces/generation_advanced_dit_controls.py:129-131`).
pub const DEFAULT_SHIFT: f64 = 3.0;
pub const SHIFT_RANGE: (f64, f64) = (1.0, 5.0);
/// CFG (APG) guidance of the base and SFT models: default and range (`inference.py:136`;
/// `ui/gradio/interfaces/generation_advanced_dit_controls.py:37-39`). 1 means no CFG.
pub const DEFAULT_GUIDANCE_SCALE: f64 = 7.0;
pub const GUIDANCE_RANGE: (f64, f64) = (1.0, 15.0);
/// The most a seed can be: upstream draws seeds with `random.randint(0, 2**32 - 1)`
/// (`core/generation/handler/task_utils.py:27`). -1 asks for a random seed.
pub const MAX_SEED: i64 = u32::MAX as i64;
