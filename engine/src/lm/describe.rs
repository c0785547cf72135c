//! The LM's description modes, each a chain of thought with genres and then free text (the
//! lyrics), written by one unguided row under the constrained decoder's describe phase (upstream
//! `llm_inference.py` `understand_audio_from_codes`, `create_sample_from_query`,
//! `format_sample_from_input`):
//!
//! - understand: audio codes in, the piece's metadata, caption and lyrics out;
//! - inspire (upstream's sample mode): a short description in, a whole request out (caption,
//!   lyrics, metadata), instrumental or in a given language;
//! - format: the user's caption and lyrics in, a fuller caption, lyrics and metadata out, keeping
//!   the metadata the user gave.

use super::codes::LmError;
use super::genres::GenreVocabulary;
use super::plan::Plan;
use super::prompt::{self, NO_USER_INPUT};
use super::sample::Sampling;
use super::think::{write_constrained, GivenMetas, ThoughtConstraint};
use super::tokenizer::LmTokenizer;
use crate::model::causal_lm::CausalLm;

/// Upstream's lyrics for an instrumental piece.
pub const INSTRUMENTAL: &str = "[Instrumental]";

/// What a description mode wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Description {
    /// The thought's fields, genres included.
    pub plan: Plan,
    /// The lyrics: the text after the thought, or the mode's fallback when there was none
    /// (see each mode).
    pub lyrics: String,
    /// Everything generated, as text.
    pub text: String,
    /// Every generated id, EOS last.
    pub tokens: Vec<u32>,
}

/// The model, its tokenizer and genre list, and how to sample: what every mode runs with.
pub struct Describer<'a> {
    pub lm: &'a CausalLm,
    pub tokenizer: &'a LmTokenizer,
    pub genres: Option<&'a GenreVocabulary>,
    pub sampling: Sampling,
    pub seed: u64,
}

impl Describer<'_> {
    /// Write a description after `prompt_text` (one of `prompt`'s description prompts) with the
    /// fields in `given` injected and the language left out when `skip_language`. The lyrics are
    /// what followed the thought, empty when nothing did: each mode applies its own fallback.
    pub fn describe(
        &self,
        prompt_text: &str,
        given: GivenMetas,
        skip_language: bool,
        keep_going: &mut dyn FnMut() -> bool,
        on_token: &mut dyn FnMut(usize),
    ) -> Result<Description, LmError> {
        let prompt = self.tokenizer.encode(prompt_text).map_err(LmError::Tokenizer)?;
        let mut constraint =
            ThoughtConstraint::describing(self.tokenizer, self.genres, given, skip_language).map_err(LmError::Tokenizer)?;
        let tokens = write_constrained(self.lm, self.tokenizer, prompt, &mut constraint, &self.sampling, self.seed, keep_going, on_token)?;
        let text = self.tokenizer.decode(&tokens).map_err(LmError::Tokenizer)?;
        Ok(Description { plan: Plan::parse(&text), lyrics: lyrics_after_thought(&text), text, tokens })
    }

    /// Understand: what the codes (`<|audio_code_N|>` text) sound like. The lyrics are empty when
    /// the model wrote none.
    pub fn understand(
        &self,
        code_text: &str,
        keep_going: &mut dyn FnMut() -> bool,
        on_token: &mut dyn FnMut(usize),
    ) -> Result<Description, LmError> {
        if code_text.trim().is_empty() {
            return Err(LmError::Input("understanding needs audio codes, and none were given".into()));
        }
        self.describe(&prompt::understand(code_text), GivenMetas::default(), false, keep_going, on_token)
    }

    /// Inspire: a whole piece from a short description. `language` (unless empty or `unknown`) is
    /// written as the thought's language; an instrumental piece without lyrics gets
    /// `[Instrumental]`.
    pub fn inspire(
        &self,
        query: &str,
        instrumental: bool,
        language: Option<&str>,
        keep_going: &mut dyn FnMut() -> bool,
        on_token: &mut dyn FnMut(usize),
    ) -> Result<Description, LmError> {
        let query = if query.trim().is_empty() { NO_USER_INPUT } else { query };
        let language = language.map(str::trim).filter(|l| !l.is_empty() && !l.eq_ignore_ascii_case("unknown"));
        let given = GivenMetas { language: language.map(str::to_string), ..GivenMetas::default() };
        let mut description = self.describe(&prompt::inspire(query, instrumental), given, false, keep_going, on_token)?;
        if description.lyrics.is_empty() && instrumental {
            description.lyrics = INSTRUMENTAL.into();
        }
        Ok(description)
    }

    /// Format: the user's caption and lyrics rewritten, with the metadata they gave (`given`:
    /// bpm, duration, keyscale, timesignature, language) kept as given; a given language is not
    /// written at all, as upstream skips the field. Empty input reads as upstream's placeholders;
    /// the lyrics stay the user's when the model wrote none.
    pub fn format(
        &self,
        caption: &str,
        lyrics: &str,
        given: GivenMetas,
        keep_going: &mut dyn FnMut() -> bool,
        on_token: &mut dyn FnMut(usize),
    ) -> Result<Description, LmError> {
        let caption = if caption.trim().is_empty() { NO_USER_INPUT } else { caption };
        let lyrics = if lyrics.trim().is_empty() { INSTRUMENTAL } else { lyrics };
        let given = GivenMetas { caption: None, ..given };
        let skip_language = given.language.is_some();
        let mut description = self.describe(&prompt::format(caption, lyrics), given, skip_language, keep_going, on_token)?;
        if description.lyrics.is_empty() {
            description.lyrics = lyrics.to_string();
        }
        Ok(description)
    }
}

/// The text after `</think>` without a leading `# Lyric` header or the final `<|im_end|>`
/// (upstream `_extract_lyrics_from_output`, whose header pattern `^#\s*Lyri[c|cs]?\s*\n` also
/// matches `# Lyri` and `# Lyri|`, but not `# Lyrics`).
pub fn lyrics_after_thought(text: &str) -> String {
    let Some(end) = text.find("</think>") else { return String::new() };
    let mut after = text[end + "</think>".len()..].trim();
    if let Some(rest) = strip_lyric_header(after) {
        after = rest;
    }
    let after = after.trim_end();
    let after = after.strip_suffix("<|im_end|>").unwrap_or(after);
    after.trim().to_string()
}

/// `^#\s*Lyri[c|s]?\s*\n`, case-insensitive: what follows the header, if the text starts with one.
fn strip_lyric_header(text: &str) -> Option<&str> {
    let rest = text.strip_prefix('#')?.trim_start_matches(char::is_whitespace);
    let head = rest.get(..4)?;
    if !head.eq_ignore_ascii_case("lyri") {
        return None;
    }
    let rest = &rest[4..];
    let after_letter = match rest.chars().next() {
        Some(c) if "cC|sS".contains(c) => Some(&rest[1..]),
        _ => None,
    };
    // The regex tries with the optional letter first, then without it; each time `\s*\n`
    // backtracks to the last newline of the whitespace run.
    [after_letter, Some(rest)].into_iter().flatten().find_map(|tail| {
        let run = tail.len() - tail.trim_start_matches(char::is_whitespace).len();
        tail[..run].rfind('\n').map(|newline| &tail[newline + 1..])
    })
}

/// What a sample-mode description hints (upstream `server_utils.py` `parse_description_hints`):
/// a language it names (the first of upstream's list that appears as a word) and whether it asks
/// for an instrumental piece.
pub fn description_hints(description: &str) -> (Option<&'static str>, bool) {
    const LANGUAGE_NAMES: [(&str, &str); 48] = [
        ("english", "en"), ("en", "en"), ("chinese", "zh"), ("中文", "zh"), ("zh", "zh"), ("mandarin", "zh"),
        ("japanese", "ja"), ("日本語", "ja"), ("ja", "ja"), ("korean", "ko"), ("한국어", "ko"), ("ko", "ko"),
        ("spanish", "es"), ("español", "es"), ("es", "es"), ("french", "fr"), ("français", "fr"), ("fr", "fr"),
        ("german", "de"), ("deutsch", "de"), ("de", "de"), ("italian", "it"), ("italiano", "it"), ("it", "it"),
        ("portuguese", "pt"), ("português", "pt"), ("pt", "pt"), ("russian", "ru"), ("русский", "ru"), ("ru", "ru"),
        ("bengali", "bn"), ("bn", "bn"), ("hindi", "hi"), ("hi", "hi"), ("arabic", "ar"), ("ar", "ar"),
        ("thai", "th"), ("th", "th"), ("vietnamese", "vi"), ("vi", "vi"), ("indonesian", "id"), ("id", "id"),
        ("turkish", "tr"), ("tr", "tr"), ("dutch", "nl"), ("nl", "nl"), ("polish", "pl"), ("pl", "pl"),
    ];
    let lower = description.to_lowercase();
    let lower = lower.trim();
    if lower.is_empty() {
        return (None, false);
    }
    let language = LANGUAGE_NAMES.iter().find(|(name, _)| names_word(lower, name)).map(|&(_, code)| code);
    let instrumental = lower.contains("instrumental")
        || lower.contains("pure music")
        || lower.contains("pure instrument")
        || lower.ends_with(" solo")
        || lower == "solo";
    (language, instrumental)
}

/// Whether `name` stands in `text` as a word: for two-letter codes, between the text's ends,
/// whitespace or `.,;:!?`; for names, between regex word boundaries.
fn names_word(text: &str, name: &str) -> bool {
    let short = name.chars().count() <= 2;
    let word_char = |c: char| c.is_alphanumeric() || c == '_';
    let separator = |c: Option<char>| match c {
        None => true,
        Some(c) if short => c.is_whitespace() || ".,;:!?".contains(c),
        Some(c) => !word_char(c),
    };
    text.match_indices(name).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + name.len()..].chars().next();
        // A word boundary needs a word character on the inner side too.
        let inner_ok = short || (name.chars().next().is_some_and(word_char) && name.chars().next_back().is_some_and(word_char));
        inner_ok && separator(before) && separator(after)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lyrics_are_read_after_the_thought_as_upstream_reads_them() {
        assert_eq!(lyrics_after_thought("<think>\nbpm: 90\n</think>\n\n# Lyric\n[Verse]\nla la\n<|im_end|>"), "[Verse]\nla la");
        assert_eq!(lyrics_after_thought("<think>\n</think>\n# lyric \n\n[Chorus]<|im_end|>"), "[Chorus]");
        // Upstream's pattern misses "# Lyrics": the header stays.
        assert_eq!(lyrics_after_thought("<think>\n</think>\n# Lyrics\n[Verse]<|im_end|>"), "# Lyrics\n[Verse]");
        assert_eq!(lyrics_after_thought("<think>\n</think>\n\n<|im_end|>"), "");
        assert_eq!(lyrics_after_thought("no thought at all"), "");
    }

    #[test]
    fn descriptions_hint_language_and_instrumental_as_upstream() {
        assert_eq!(description_hints("a soft Bengali love song"), (Some("bn"), false));
        assert_eq!(description_hints("upbeat french pop, instrumental"), (Some("fr"), true));
        assert_eq!(description_hints("piano solo"), (None, true));
        // Two-letter codes need separators: "it" inside "with" or "guitar" is not Italian.
        assert_eq!(description_hints("chill beat with guitar"), (None, false));
        assert_eq!(description_hints("lofi, ja."), (Some("ja"), false));
        assert_eq!(description_hints("English ballad in Spanish style"), (Some("en"), false));
        assert_eq!(description_hints(""), (None, false));
    }
}
