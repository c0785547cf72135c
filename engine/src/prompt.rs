//! The DiT's text prompts: the caption prompt the text encoder runs over, the lyric prompt whose
//! tokens are only embedded, and the task instruction that opens the caption prompt.
//!
//! Byte-exact with upstream 6d467e4 (fixture `tests/parity/fixtures/prompts.json`), following the
//! path a REST request takes:
//! - instruction: `api/job_generation_setup.py` `_resolve_instruction` (the same strings as the
//!   handler's `task_utils.py` `generate_instruction`), then `prompt_utils.py` `_format_instruction`;
//! - caption: `prompt_utils.py` `extract_caption_from_sft_format` (run by `batch_prep.py`
//!   `prepare_batch_data`);
//! - metas: `metadata_utils.py` `_build_metadata_dict`, then `_dict_to_meta_string`;
//! - caption prompt: `constants.py` `SFT_GEN_PROMPT`, filled in by `conditioning_text.py`;
//! - lyric prompt: `prompt_utils.py` `_format_lyrics`.
//!
//! Upstream quirks are kept on purpose, because the models were conditioned on what upstream
//! sends:
//! - values go in verbatim: keys, captions and lyrics are not trimmed, and a time signature of
//!   "4/4" stays "4/4";
//! - "blank" means blank to Python's `str.strip()`, which also strips U+001C..U+001F;
//! - the duration is truncated, not rounded;
//! - empty lyrics stay empty. Only the instrumental switch writes `[Instrumental]`, as upstream's
//!   UI checkbox does.
//!
//! The SFT-stems lego caption (`Global: ...`) is not built here: it needs a checkpoint we do not
//! support.

use crate::model::text_encoder::END_OF_TEXT;
use crate::request::{GenerationRequest, DEFAULT_VOCAL_LANGUAGE};
use crate::task::TaskType;

/// The text2music instruction. Upstream also uses it as the "no instruction given" value, and for
/// the non-cover prompt that cover mixes in when `audio_cover_strength < 1`.
pub const DEFAULT_DIT_INSTRUCTION: &str = "Fill the audio semantic mask based on the given conditions:";

/// The lyrics of an instrumental piece, as upstream's UI writes them and its training data uses.
pub const INSTRUMENTAL_LYRICS: &str = "[Instrumental]";

/// The duration the metas state when it is not known.
pub const UNKNOWN_DURATION_SECONDS: u32 = 30;

/// What the metas say for an unknown bpm, key or time signature.
const NOT_AVAILABLE: &str = "N/A";

/// The instruction for a task (`generate_instruction`): track names are upper-cased, and the
/// classes of complete are joined with `" | "`. A missing or empty track name, or no classes,
/// selects the task's generic instruction. Lego and extract read only the name, and complete reads
/// only the classes.
pub fn task_instruction<S: AsRef<str>>(task: TaskType, track_name: Option<&str>, track_classes: &[S]) -> String {
    let track = track_name.filter(|name| !name.is_empty()).map(str::to_uppercase);
    match task {
        TaskType::Text2Music => DEFAULT_DIT_INSTRUCTION.to_string(),
        TaskType::Repaint => "Repaint the mask area based on the given conditions:".to_string(),
        TaskType::Cover => "Generate audio semantic tokens based on the given conditions:".to_string(),
        TaskType::Extract => match track {
            Some(name) => format!("Extract the {name} track from the audio:"),
            None => "Extract the track from the audio:".to_string(),
        },
        TaskType::Lego => match track {
            Some(name) => format!("Generate the {name} track based on the audio context:"),
            None => "Generate the track based on the audio context:".to_string(),
        },
        TaskType::Complete if track_classes.is_empty() => "Complete the input track:".to_string(),
        TaskType::Complete => {
            let classes: Vec<String> = track_classes.iter().map(|c| c.as_ref().to_uppercase()).collect();
            format!("Complete the input track with {}:", classes.join(" | "))
        }
    }
}

/// The instruction a request runs with (`_resolve_instruction`, then `_format_instruction`). A
/// request's own instruction is used verbatim unless it is blank or equals the text2music
/// default. The REST field defaults to that string, so a client that always sends it still gets
/// the task's instruction.
pub fn resolve_instruction<S: AsRef<str>>(
    own: Option<&str>,
    task: TaskType,
    track_name: Option<&str>,
    track_classes: &[S],
) -> String {
    match own {
        Some(own) if !is_py_blank(own) && own != DEFAULT_DIT_INSTRUCTION => format_instruction(own),
        _ => format_instruction(&task_instruction(task, track_name, track_classes)),
    }
}

/// Append the ':' every instruction ends with, if missing (`_format_instruction`). Trailing
/// spaces are not trimmed, so "Do this: " becomes "Do this: :".
pub fn format_instruction(instruction: &str) -> String {
    if instruction.ends_with(':') {
        instruction.to_string()
    } else {
        format!("{instruction}:")
    }
}

/// The metas block: four lines, each ending in '\n'. A bpm of 0 or none, and a blank key or time
/// signature, read "N/A". Other values go in verbatim, spaces included. The duration is
/// truncated to whole seconds, and reads 30 seconds when unknown or not positive.
pub fn metas(
    bpm: Option<u32>,
    keyscale: Option<&str>,
    timesignature: Option<&str>,
    duration: Option<f64>,
) -> String {
    let bpm = bpm.filter(|&b| b != 0).map_or(NOT_AVAILABLE.to_string(), |b| b.to_string());
    let text_or_na = |value: Option<&str>| value.filter(|v| !is_py_blank(v)).unwrap_or(NOT_AVAILABLE).to_string();
    let (timesignature, keyscale) = (text_or_na(timesignature), text_or_na(keyscale));
    // Upstream: `int(duration)` when `duration > 0`. That raises on infinity, which here reads as
    // unknown.
    let seconds = match duration {
        Some(d) if d > 0.0 && d.is_finite() => format!("{:.0}", d.trunc()),
        _ => UNKNOWN_DURATION_SECONDS.to_string(),
    };
    format!(
        "- bpm: {bpm}\n- timesignature: {timesignature}\n- keyscale: {keyscale}\n- duration: {seconds} seconds\n"
    )
}

/// The text encoder's caption prompt (`SFT_GEN_PROMPT`). It ends with `<|endoftext|>` and a
/// newline, and the tokenizer appends another `<|endoftext|>` after that.
pub fn caption_prompt(instruction: &str, caption: &str, metas: &str) -> String {
    format!("# Instruction\n{instruction}\n\n# Caption\n{caption}\n\n# Metas\n{metas}{END_OF_TEXT}\n")
}

/// The lyric prompt (`_format_lyrics`). There is no newline before `<|endoftext|>`.
pub fn lyric_prompt(vocal_language: &str, lyrics: &str) -> String {
    format!("# Languages\n{vocal_language}\n\n# Lyric\n{lyrics}{END_OF_TEXT}")
}

/// A caption pasted from a whole caption prompt is reduced to its body
/// (`extract_caption_from_sft_format`). This applies only when the caption contains both
/// "# Instruction" and "# Caption". It mirrors `re.search(r"#\s*Caption\s*\n(.*?)(?:\n\s*#\s*Metas|$)",
/// caption, re.DOTALL).group(1).strip()`. Any other caption is returned unchanged.
pub fn extract_caption_from_sft_format(caption: &str) -> &str {
    if !(caption.contains("# Instruction") && caption.contains("# Caption")) {
        return caption;
    }
    for (hash, _) in caption.match_indices('#') {
        let Some(after_header) = caption[hash + 1..].trim_start_matches(is_py_space).strip_prefix("Caption") else {
            continue;
        };
        // `\s*\n`: the greedy whitespace run backs off to its last newline. A run with no newline
        // fails this '#', and the search moves on to the next one.
        let run = after_header.len() - after_header.trim_start_matches(is_py_space).len();
        let Some(newline) = after_header[..run].rfind('\n') else { continue };
        let body = &after_header[newline + 1..];
        // The lazy body stops at the first metas header, else at the end (`$`; `strip()` removes a
        // final newline either way).
        let end = first_metas_header(body).unwrap_or(body.len());
        return py_strip(&body[..end]);
    }
    caption
}

/// Where `\n\s*#\s*Metas` first matches in `s`.
fn first_metas_header(s: &str) -> Option<usize> {
    s.match_indices('\n').map(|(at, _)| at).find(|&at| {
        let after = s[at + 1..].trim_start_matches(is_py_space);
        after.strip_prefix('#').is_some_and(|a| a.trim_start_matches(is_py_space).starts_with("Metas"))
    })
}

/// Python's `str.isspace`, which is also what `re`'s `\s` matches: Unicode White_Space plus the
/// separators U+001C..U+001F.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

fn is_py_blank(s: &str) -> bool {
    s.chars().all(is_py_space)
}

fn py_strip(s: &str) -> &str {
    s.trim_matches(is_py_space)
}

/// What the prompts are built from: a request's text fields, read from the request itself
/// (named after ACE-Step's `GenerationParams` and its REST request), and the duration the metas
/// state.
#[derive(Debug, Clone, Copy)]
pub struct PromptInputs<'a> {
    pub request: &'a GenerationRequest,
    /// Seconds the DiT generates: the request's for text2music, and for the audio tasks the
    /// source audio's, computed as `samples as f64 / 48000.0`. `None` reads as 30 seconds.
    pub duration: Option<f64>,
}

impl<'a> PromptInputs<'a> {
    /// The prompts of `request`, stating its duration for text2music and none for the audio
    /// tasks until the source is known ([`PromptInputs::with_duration`]).
    pub fn new(request: &'a GenerationRequest) -> Self {
        let duration = if request.task_type.needs_source_audio() { None } else { request.duration };
        Self { request, duration }
    }

    /// The same prompts stating `duration` seconds (an audio task's source length).
    pub fn with_duration(self, duration: Option<f64>) -> Self {
        Self { duration, ..self }
    }

    /// The instruction, ending in ':'. The request's own instruction, unless it is blank or the
    /// text2music default; track names in lower case. Text2music with audio codes runs as cover,
    /// so callers pass `TaskType::Cover` for it, as upstream's handler does.
    pub fn instruction(&self) -> String {
        let r = self.request;
        let track = r.track_name.as_deref().map(str::to_lowercase);
        let classes: Vec<String> = r.track_classes.iter().map(|c| c.to_lowercase()).collect();
        resolve_instruction(r.instruction.as_deref(), r.task_type, track.as_deref(), &classes)
    }

    /// The metas block of the caption prompt.
    pub fn metas(&self) -> String {
        let r = self.request;
        metas(r.bpm, r.keyscale.as_deref(), r.timesignature.as_deref(), self.duration)
    }

    /// The caption prompt for the text encoder (at most `CAPTION_MAX_TOKENS` tokens).
    pub fn caption_prompt(&self) -> String {
        caption_prompt(&self.instruction(), extract_caption_from_sft_format(&self.request.caption), &self.metas())
    }

    /// The caption prompt with the text2music instruction. Upstream encodes it for every task when
    /// `audio_cover_strength < 1`, and cover blends between the two.
    pub fn non_cover_caption_prompt(&self) -> String {
        caption_prompt(DEFAULT_DIT_INSTRUCTION, extract_caption_from_sft_format(&self.request.caption), &self.metas())
    }

    /// The lyric prompt for the embedding lookup (at most `LYRIC_MAX_TOKENS` tokens); the
    /// language defaults to upstream's "unknown".
    pub fn lyric_prompt(&self) -> String {
        let r = self.request;
        let lyrics = if r.instrumental { INSTRUMENTAL_LYRICS } else { &r.lyrics };
        lyric_prompt(r.vocal_language.as_deref().unwrap_or(DEFAULT_VOCAL_LANGUAGE), lyrics)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: &[&str] = &[];

    #[test]
    fn instructions_per_task() {
        let cases = [
            (TaskType::Text2Music, "Fill the audio semantic mask based on the given conditions:"),
            (TaskType::Repaint, "Repaint the mask area based on the given conditions:"),
            (TaskType::Cover, "Generate audio semantic tokens based on the given conditions:"),
            (TaskType::Extract, "Extract the BACKING_VOCALS track from the audio:"),
            (TaskType::Lego, "Generate the BACKING_VOCALS track based on the audio context:"),
            (TaskType::Complete, "Complete the input track with DRUMS | BASS:"),
        ];
        for (task, want) in cases {
            assert_eq!(task_instruction(task, Some("backing_vocals"), &["drums", "bass"]), want, "{task}");
        }
        assert_eq!(task_instruction(TaskType::Extract, None, NONE), "Extract the track from the audio:");
        assert_eq!(task_instruction(TaskType::Extract, Some(""), NONE), "Extract the track from the audio:");
        let lego = task_instruction(TaskType::Lego, None, &["drums"]);
        assert_eq!(lego, "Generate the track based on the audio context:");
        assert_eq!(task_instruction(TaskType::Complete, Some("drums"), NONE), "Complete the input track:");
        // An empty class still counts (Python: the list is truthy).
        assert_eq!(task_instruction(TaskType::Complete, None, &["", "fx"]), "Complete the input track with  | FX:");
    }

    #[test]
    fn own_instructions_are_kept_but_blank_or_default_ones_resolve_by_task() {
        let lego = |own| resolve_instruction(own, TaskType::Lego, Some("guitar"), NONE);
        let guitar = "Generate the GUITAR track based on the audio context:";
        assert_eq!(lego(None), guitar);
        assert_eq!(lego(Some("")), guitar);
        assert_eq!(lego(Some("\u{1c} \u{3000}")), guitar);
        assert_eq!(lego(Some(DEFAULT_DIT_INSTRUCTION)), guitar);
        assert_eq!(lego(Some("Add a solo")), "Add a solo:");
        assert_eq!(lego(Some("Add a solo:")), "Add a solo:");
        assert_eq!(lego(Some("Do this: ")), "Do this: :");
    }

    #[test]
    fn metas_lines() {
        assert_eq!(
            metas(None, None, None, None),
            "- bpm: N/A\n- timesignature: N/A\n- keyscale: N/A\n- duration: 30 seconds\n"
        );
        assert_eq!(
            metas(Some(120), Some("C major"), Some("4"), Some(30.0)),
            "- bpm: 120\n- timesignature: 4\n- keyscale: C major\n- duration: 30 seconds\n"
        );
        assert_eq!(
            metas(Some(0), Some(" \t"), Some("\u{1f}"), Some(184.75)),
            "- bpm: N/A\n- timesignature: N/A\n- keyscale: N/A\n- duration: 184 seconds\n"
        );
        let verbatim = metas(None, Some(" C major "), Some("4/4"), None);
        assert!(verbatim.contains("- timesignature: 4/4\n- keyscale:  C major \n"), "{verbatim:?}");
        let duration = |d| metas(None, None, None, Some(d)).lines().last().unwrap().to_string();
        assert_eq!(duration(9.999), "- duration: 9 seconds");
        assert_eq!(duration(0.4), "- duration: 0 seconds");
        assert_eq!(duration(1e20), "- duration: 100000000000000000000 seconds");
        for unknown in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(duration(unknown), "- duration: 30 seconds", "{unknown}");
        }
    }

    #[test]
    fn spec_example_caption_prompt() {
        let request = GenerationRequest {
            caption: "upbeat synth pop".into(),
            bpm: Some(120),
            timesignature: Some("4".into()),
            keyscale: Some("C major".into()),
            duration: Some(30.0),
            ..Default::default()
        };
        let inputs = PromptInputs::new(&request);
        assert_eq!(
            inputs.caption_prompt(),
            "# Instruction\nFill the audio semantic mask based on the given conditions:\n\n\
             # Caption\nupbeat synth pop\n\n\
             # Metas\n- bpm: 120\n- timesignature: 4\n- keyscale: C major\n- duration: 30 seconds\n<|endoftext|>\n"
        );
        assert_eq!(inputs.non_cover_caption_prompt(), inputs.caption_prompt());
        let cover_request = GenerationRequest { task_type: TaskType::Cover, ..request.clone() };
        let cover = PromptInputs::new(&cover_request).with_duration(Some(30.0));
        assert_eq!(cover.metas(), inputs.metas());
        assert!(cover.caption_prompt().starts_with("# Instruction\nGenerate audio semantic tokens"));
        assert!(cover.non_cover_caption_prompt().starts_with("# Instruction\nFill the audio semantic mask"));
    }

    #[test]
    fn lyric_prompts() {
        let mut request =
            GenerationRequest { lyrics: "[Verse]\nla la\n".into(), vocal_language: Some("en".into()), ..Default::default() };
        assert_eq!(PromptInputs::new(&request).lyric_prompt(), "# Languages\nen\n\n# Lyric\n[Verse]\nla la\n<|endoftext|>");
        request.instrumental = true;
        assert_eq!(PromptInputs::new(&request).lyric_prompt(), "# Languages\nen\n\n# Lyric\n[Instrumental]<|endoftext|>");
        // Empty lyrics are sent empty, as upstream's handler does; the default language is upstream's.
        let plain = GenerationRequest::default();
        assert_eq!(PromptInputs::new(&plain).lyric_prompt(), "# Languages\nunknown\n\n# Lyric\n<|endoftext|>");
    }

    #[test]
    fn track_names_are_read_in_lower_case_and_audio_tasks_wait_for_the_source() {
        let request = GenerationRequest { task_type: TaskType::Lego, track_name: Some("Guitar".into()), duration: Some(40.0), ..Default::default() };
        let inputs = PromptInputs::new(&request);
        assert_eq!(inputs.instruction(), "Generate the GUITAR track based on the audio context:");
        assert_eq!(inputs.duration, None, "an audio task's metas state its source's length");
        assert_eq!(inputs.with_duration(Some(12.5)).duration, Some(12.5));
    }

    #[test]
    fn sft_format_captions_are_reduced_to_their_body() {
        let plain = "# Caption\nnot SFT without an instruction header";
        assert_eq!(extract_caption_from_sft_format(plain), plain);
        assert_eq!(extract_caption_from_sft_format("  kept  \n"), "  kept  \n");
        assert_eq!(
            extract_caption_from_sft_format("# Instruction\ni:\n\n# Caption\n  body\nline 2\n\n# Metas\n- bpm: 1\n"),
            "body\nline 2"
        );
        // The first "#…Caption" followed by whitespace holding a newline wins. "\u{1f}" counts as
        // whitespace to Python, so it is stripped too.
        assert_eq!(
            extract_caption_from_sft_format(
                "# Instruction\n# Caption: no\n#Caption\u{3000}\n\u{1f} body\u{2003}\n \t# Metas\nx\n# Caption\nlater"
            ),
            "body"
        );
        assert_eq!(extract_caption_from_sft_format("# Instruction\n# Caption\n"), "");
        // No newline after any caption header: no match, so the caption is kept whole.
        let no_newline = "# Instruction\n# Caption: inline";
        assert_eq!(extract_caption_from_sft_format(no_newline), no_newline);
    }

    #[test]
    fn python_whitespace() {
        assert!(is_py_blank(""));
        assert!(is_py_blank("\u{1c}\u{1d}\u{1e}\u{1f} \t\n\u{85}\u{a0}\u{3000}"));
        assert!(!is_py_blank("\u{200b}"));
        assert_eq!(py_strip("\u{1f} x \u{2003}"), "x");
    }
}
