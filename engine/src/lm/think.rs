//! The chain of thought (phase 1 of thinking), written under upstream's constrained decoder
//! (`constrained_logits_processor.py` `MetadataConstrainedLogitsProcessor` in the `cot` phase,
//! run by `_generate_with_constrained_decoding` with no guidance and `stop_at_reasoning`).
//!
//! A state machine walks the fields in order, `<think>`, `\n`, then `bpm:`, `caption:`,
//! `duration:`, `keyscale:`, `language:`, `timesignature:`, each name forced token by token:
//! - numbers (bpm 30-300, duration 10-600, time signature 2, 3, 4 or 6), keys (the 70 valid
//!   ones) and languages follow prefix trees of their values' actual token ids after the name;
//!   a newline ends them where a whole value is written (keys and time signatures end at once,
//!   numbers may go on), and a language's first token is the best of its candidates;
//! - the caption is free text without backticks or audio codes, at most 512 tokens; it ends when,
//!   after a newline, the model's best token is not indented, and the model then names the next
//!   field itself;
//! - a field the user gave is not sampled: ` {value}\n` is forced token by token;
//! - at `</think>` the generation ends (EOS is forced), so the thought is read without it.
//!
//! The description modes run the same machine in its describe phase (upstream's `understand`
//! phase, without `stop_at_reasoning`): a `genres:` field comes after the duration (bounded by the
//! genre list when there is one, see `genres`; else free text ended by the model's newline),
//! `</think>` is written, and the model goes on freely, audio codes banned, until it ends its
//! turn: the lyrics.
//!
//! Token texts and prefixes come from the checkpoint's tokenizer, as upstream builds them.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::codes::LmError;
use super::genres::GenreVocabulary;
use super::plan::Plan;
use super::prompt;
use super::sample::{Sampling, TokenSampler};
use super::tokenizer::LmTokenizer;
use crate::model::causal_lm::CausalLm;
use crate::task::valid_keyscales;

/// Upstream's languages (`constants.py` `VALID_LANGUAGES`).
pub const LANGUAGES: [&str; 51] = [
    "ar", "az", "bg", "bn", "ca", "cs", "da", "de", "el", "en", "es", "fa", "fi", "fr", "he", "hi", "hr", "ht", "hu", "id",
    "is", "it", "ja", "ko", "la", "lt", "ms", "ne", "nl", "no", "pa", "pl", "pt", "ro", "ru", "sa", "sk", "sr", "sv", "sw",
    "ta", "te", "th", "tl", "tr", "uk", "ur", "vi", "yue", "zh", "unknown",
];
/// Longest caption, in tokens, before a newline is forced.
const CAPTION_MAX_TOKENS: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Bpm,
    Caption,
    Duration,
    Genres,
    Keyscale,
    Language,
    Timesignature,
}

impl Field {
    const ORDER: [Field; 7] =
        [Field::Bpm, Field::Caption, Field::Duration, Field::Genres, Field::Keyscale, Field::Language, Field::Timesignature];

    fn name(self) -> &'static str {
        match self {
            Field::Bpm => "bpm",
            Field::Caption => "caption",
            Field::Duration => "duration",
            Field::Genres => "genres",
            Field::Keyscale => "keyscale",
            Field::Language => "language",
            Field::Timesignature => "timesignature",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    ThinkTag,
    NewlineAfterThink,
    Name(Field),
    Value(Field),
    ThinkEndTag,
    Completed,
}

/// What the user gave, as upstream's `user_metadata` holds it (text, injected as ` {value}\n`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GivenMetas {
    pub bpm: Option<String>,
    pub caption: Option<String>,
    pub duration: Option<String>,
    pub keyscale: Option<String>,
    pub language: Option<String>,
    pub timesignature: Option<String>,
}

impl GivenMetas {
    fn get(&self, field: Field) -> Option<&str> {
        match field {
            Field::Bpm => self.bpm.as_deref(),
            Field::Caption => self.caption.as_deref(),
            Field::Duration => self.duration.as_deref(),
            Field::Genres => None,
            Field::Keyscale => self.keyscale.as_deref(),
            Field::Language => self.language.as_deref(),
            Field::Timesignature => self.timesignature.as_deref(),
        }
    }
}

type PrefixTree = BTreeMap<Vec<u32>, BTreeSet<u32>>;

/// What the decoder writes after the prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Phase 1 of thinking: the thought alone (no `genres:`); the generation ends at `</think>`.
    Plan,
    /// The description modes (understand, sample, format; upstream's `understand` phase): the
    /// thought with a `genres:` field, `</think>`, then free text (the lyrics) in which audio codes
    /// are banned, until the model ends its turn.
    Describe,
}

/// The decoder's state for one generation.
pub struct ThoughtConstraint<'a> {
    tokenizer: &'a LmTokenizer,
    phase: Phase,
    /// The genre list that bounds `genres:` (describe phase only); free text without one.
    genres: Option<&'a GenreVocabulary>,
    given: GivenMetas,
    skip_caption: bool,
    skip_language: bool,
    newline: u32,
    backtick: Option<u32>,
    trees: BTreeMap<&'static str, PrefixTree>,
    state: State,
    /// Characters of the current fixed string already written.
    position: usize,
    accumulated: String,
    accumulated_ids: Vec<u32>,
    caption_after_newline: bool,
    caption_tokens: usize,
    caption_ending: bool,
    pending_name: String,
    queue: VecDeque<u32>,
    injecting: Option<Field>,
}

impl<'a> ThoughtConstraint<'a> {
    /// `skip_caption` / `skip_language`: leave those fields out (upstream's `use_cot_caption` /
    /// `use_cot_language` off).
    pub fn new(tokenizer: &'a LmTokenizer, given: GivenMetas, skip_caption: bool, skip_language: bool) -> Result<Self, String> {
        Self::with_phase(tokenizer, Phase::Plan, None, given, skip_caption, skip_language)
    }

    /// The describe phase: every field written, `genres:` included (bounded by `genres` when there
    /// is a list), then the free text after the thought.
    pub fn describing(
        tokenizer: &'a LmTokenizer,
        genres: Option<&'a GenreVocabulary>,
        given: GivenMetas,
        skip_language: bool,
    ) -> Result<Self, String> {
        Self::with_phase(tokenizer, Phase::Describe, genres, given, false, skip_language)
    }

    fn with_phase(
        tokenizer: &'a LmTokenizer,
        phase: Phase,
        genres: Option<&'a GenreVocabulary>,
        given: GivenMetas,
        skip_caption: bool,
        skip_language: bool,
    ) -> Result<Self, String> {
        let last = |text: &str| -> Result<u32, String> {
            tokenizer.encode(text)?.last().copied().ok_or_else(|| format!("{text:?} encodes to nothing"))
        };
        let newline = last("\n")?;
        let backtick = tokenizer.encode("`")?.last().copied();
        let mut trees = BTreeMap::new();
        let numbers = |range: std::ops::RangeInclusive<u32>| range.map(|v| v.to_string()).collect::<Vec<_>>();
        trees.insert("bpm", prefix_tree(tokenizer, "bpm", &numbers(30..=300), newline, false)?);
        trees.insert("duration", prefix_tree(tokenizer, "duration", &numbers(10..=600), newline, false)?);
        trees.insert("timesignature", prefix_tree(tokenizer, "timesignature", &["2", "3", "4", "6"].map(String::from), newline, false)?);
        let keys: Vec<String> = valid_keyscales().collect();
        trees.insert("keyscale", prefix_tree(tokenizer, "keyscale", &keys, newline, true)?);
        trees.insert("language", prefix_tree(tokenizer, "language", &LANGUAGES.map(String::from), newline, false)?);
        Ok(Self {
            tokenizer,
            phase,
            genres,
            given,
            skip_caption,
            skip_language,
            newline,
            backtick,
            trees,
            state: State::ThinkTag,
            position: 0,
            accumulated: String::new(),
            accumulated_ids: Vec::new(),
            caption_after_newline: false,
            caption_tokens: 0,
            caption_ending: false,
            pending_name: String::new(),
            queue: VecDeque::new(),
            injecting: None,
        })
    }

    /// Whether the thought is over (at `</think>`: EOS was forced, or the free text began).
    pub fn is_complete(&self) -> bool {
        self.state == State::Completed
    }

    fn fixed_string(&self) -> Option<String> {
        Some(match self.state {
            State::ThinkTag => "<think>".into(),
            State::NewlineAfterThink => "\n".into(),
            State::Name(field) => format!("{}:", field.name()),
            State::ThinkEndTag => "</think>".into(),
            _ => return None,
        })
    }

    fn next_field(&self, after: Option<Field>) -> State {
        let start = after.map_or(0, |f| Field::ORDER.iter().position(|&x| x == f).expect("a field") + 1);
        Field::ORDER[start..]
            .iter()
            .find(|&&f| !self.leaves_out(f))
            .map_or(State::ThinkEndTag, |&f| State::Name(f))
    }

    /// Fields this generation does not write: the caption and language when told to skip them,
    /// the genres when planning.
    fn leaves_out(&self, field: Field) -> bool {
        match field {
            Field::Caption => self.skip_caption,
            Field::Language => self.skip_language,
            Field::Genres => self.phase == Phase::Plan,
            _ => false,
        }
    }

    fn transition(&mut self) {
        self.state = match self.state {
            State::ThinkTag => State::NewlineAfterThink,
            State::NewlineAfterThink => self.next_field(None),
            State::Name(field) => State::Value(field),
            State::Value(field) => self.next_field(Some(field)),
            State::ThinkEndTag | State::Completed => State::Completed,
        };
        self.position = 0;
        self.accumulated.clear();
        self.accumulated_ids.clear();
        self.caption_after_newline = false;
        self.caption_tokens = 0;
        self.caption_ending = false;
        self.pending_name.clear();
    }

    fn decode(&self, id: u32) -> String {
        self.tokenizer.decode(&[id]).unwrap_or_default()
    }

    /// Constrain the next token's logits (one row, in place).
    pub fn apply(&mut self, scores: &mut [f32]) -> Result<(), String> {
        if self.state == State::Completed {
            if self.phase == Phase::Describe {
                // The lyrics after the thought: any text, but no audio codes.
                for id in self.tokenizer.code_range() {
                    scores[id as usize] = f32::NEG_INFINITY;
                }
            }
            return Ok(());
        }
        if let Some(&next) = self.queue.front() {
            whitelist(scores, &[next]);
            return Ok(());
        }
        if let Some(fixed) = self.fixed_string() {
            // Planning never writes `</think>`: the thought ends there (stop_at_reasoning).
            if self.state == State::ThinkEndTag && self.phase == Phase::Plan {
                whitelist(scores, &[self.tokenizer.eos_id]);
                return Ok(());
            }
            let remaining: String = fixed.chars().skip(self.position).collect();
            match self.longest_single_token(&remaining)? {
                Some(token) => whitelist(scores, &[token]),
                None => {
                    self.transition();
                    if self.fixed_string().is_none() {
                        scores.fill(0.0);
                        return self.apply(scores);
                    }
                }
            }
            return Ok(());
        }
        let State::Value(field) = self.state else { return Ok(()) };
        if let Some(value) = self.given.get(field) {
            if self.accumulated_ids.is_empty() && self.accumulated.is_empty() {
                let tokens = self.tokenizer.encode(&format!(" {value}\n"))?;
                if let Some(&first) = tokens.first() {
                    self.queue = tokens.into();
                    self.injecting = Some(field);
                    whitelist(scores, &[first]);
                    return Ok(());
                }
            }
        }
        match field {
            Field::Bpm | Field::Duration => {
                let tree = &self.trees[field.name()];
                let allowed: Vec<u32> = tree.get(&self.accumulated_ids).map(|s| s.iter().copied().collect()).unwrap_or_default();
                whitelist(scores, &allowed);
            }
            Field::Keyscale | Field::Timesignature => {
                let tree = &self.trees[field.name()];
                let next = tree.get(&self.accumulated_ids);
                if next.is_some_and(|s| s.contains(&self.newline)) {
                    whitelist(scores, &[self.newline]);
                } else {
                    let allowed: Vec<u32> = next.map(|s| s.iter().copied().collect()).unwrap_or_default();
                    if allowed.is_empty() && field == Field::Keyscale {
                        whitelist(scores, &[self.newline]);
                    } else {
                        whitelist(scores, &allowed);
                    }
                }
            }
            Field::Language => {
                let tree = &self.trees["language"];
                if self.accumulated_ids.is_empty() {
                    // The best first token among the languages' (upstream picks it, not the sampler).
                    let best = tree
                        .get(&Vec::new())
                        .and_then(|c| c.iter().copied().fold(None, |best: Option<u32>, t| match best {
                            Some(b) if scores[b as usize] >= scores[t as usize] => Some(b),
                            _ => Some(t),
                        }));
                    whitelist(scores, &[best.unwrap_or(self.newline)]);
                } else {
                    let next = tree.get(&self.accumulated_ids);
                    if next.is_some_and(|s| s.contains(&self.newline)) {
                        whitelist(scores, &[self.newline]);
                    } else {
                        let allowed: Vec<u32> = next.map(|s| s.iter().copied().collect()).unwrap_or_default();
                        whitelist(scores, if allowed.is_empty() { std::slice::from_ref(&self.newline) } else { &allowed });
                    }
                }
            }
            Field::Genres => match self.genres {
                Some(list) => {
                    let allowed = list.allowed(&self.accumulated, self.newline);
                    whitelist(scores, if allowed.is_empty() { std::slice::from_ref(&self.newline) } else { &allowed });
                }
                None => {
                    // Upstream's rule without its list: a newline ends the genres once there is
                    // some text and the newline is the model's likeliest token. (Upstream then
                    // counts that newline against the next field's name and writes `eyscale:`;
                    // the newline here is the field's own, so the next name is whole.)
                    if self.accumulated.trim().is_empty() {
                        scores[self.newline as usize] = f32::NEG_INFINITY;
                    } else if argmax(scores) == self.newline {
                        whitelist(scores, &[self.newline]);
                    }
                }
            },
            Field::Caption => {
                if self.caption_after_newline {
                    let top = argmax(scores);
                    let text = self.decode(top);
                    self.caption_after_newline = false;
                    if text.chars().next().is_some_and(|c| c != ' ' && c != '\t') {
                        // Not a continuation line: the model names the next field itself.
                        self.caption_ending = true;
                        self.pending_name.clear();
                        return Ok(());
                    }
                }
                if self.caption_ending {
                    return Ok(());
                }
                if let Some(b) = self.backtick {
                    scores[b as usize] = f32::NEG_INFINITY;
                }
                for id in self.tokenizer.code_range() {
                    scores[id as usize] = f32::NEG_INFINITY;
                }
                if self.caption_tokens >= CAPTION_MAX_TOKENS {
                    whitelist(scores, &[self.newline]);
                }
            }
        }
        Ok(())
    }

    /// Upstream's pick for a fixed string: the longest prefix of what is left that is one token.
    fn longest_single_token(&self, remaining: &str) -> Result<Option<u32>, String> {
        let ends: Vec<usize> = remaining.char_indices().map(|(i, c)| i + c.len_utf8()).collect();
        for &end in ends.iter().rev() {
            let tokens = self.tokenizer.encode(&remaining[..end])?;
            if tokens.len() == 1 {
                return Ok(Some(tokens[0]));
            }
        }
        Ok(None)
    }

    /// Follow the token the sampler chose.
    pub fn update(&mut self, token: u32) {
        if self.state == State::Completed {
            return;
        }
        if !self.queue.is_empty() {
            self.queue.pop_front();
            if self.queue.is_empty() {
                let field = self.injecting.take();
                let next = self.next_field(field);
                self.state = next;
                self.position = 0;
                self.accumulated.clear();
                self.accumulated_ids.clear();
            }
            return;
        }
        let text = self.decode(token);
        if let Some(fixed) = self.fixed_string() {
            self.position += text.chars().count();
            if self.position >= fixed.chars().count() {
                if self.state == State::ThinkEndTag {
                    self.state = State::Completed;
                } else {
                    self.transition();
                }
            }
            return;
        }
        let State::Value(field) = self.state else { return };
        match field {
            Field::Bpm | Field::Duration | Field::Timesignature => {
                if token == self.newline {
                    self.transition();
                } else {
                    self.accumulated_ids.push(token);
                    let trimmed = text.trim();
                    if !trimmed.is_empty() && trimmed.chars().all(|c| c.is_numeric()) {
                        self.accumulated.push_str(trimmed);
                    }
                }
            }
            Field::Genres => {
                if token == self.newline {
                    self.transition();
                } else {
                    self.accumulated.push_str(&text);
                }
            }
            Field::Keyscale | Field::Language => {
                if token == self.newline {
                    self.transition();
                } else {
                    self.accumulated_ids.push(token);
                    self.accumulated.push_str(&text);
                }
            }
            Field::Caption => {
                self.caption_tokens += 1;
                self.accumulated.push_str(&text);
                self.caption_after_newline = text.contains('\n');
                if self.caption_ending {
                    self.pending_name.push_str(&text);
                    if text.contains(':') {
                        let name = self.pending_name.trim().trim_end_matches(':').trim().to_lowercase();
                        let jump = match name.as_str() {
                            "duration" => Some(Field::Duration),
                            "genres" => Some(Field::Genres),
                            "keyscale" => Some(Field::Keyscale),
                            "language" => Some(Field::Language),
                            "timesignature" => Some(Field::Timesignature),
                            _ => None,
                        };
                        match jump {
                            Some(field) => {
                                self.state = State::Value(field);
                                self.position = 0;
                                self.accumulated.clear();
                                self.accumulated_ids.clear();
                                self.caption_ending = false;
                                self.pending_name.clear();
                            }
                            None => {
                                self.caption_ending = false;
                                self.pending_name.clear();
                                self.transition();
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Upstream's value prefix tree for a field: each value encoded after `{name}: ` as the tokenizer
/// really splits it, the tokens after those of `{name}:` forming the path, a newline after a
/// whole value. `keys` keeps only values whose first token starts with a note letter.
fn prefix_tree(tokenizer: &LmTokenizer, name: &str, values: &[String], newline: u32, keys: bool) -> Result<PrefixTree, String> {
    let context = tokenizer.encode(&format!("{name}:"))?;
    let mut tree = PrefixTree::new();
    for value in values {
        let ids = tokenizer.encode(&format!("{name}: {value}"))?;
        if !ids.starts_with(&context) {
            continue;
        }
        let value_ids = &ids[context.len()..];
        if keys {
            let Some(&first) = value_ids.first() else { continue };
            let text = tokenizer.decode(&[first])?;
            if !text.trim_start().chars().next().is_some_and(|c| "ABCDEFG".contains(c.to_ascii_uppercase())) {
                continue;
            }
        } else if value_ids.is_empty() && name == "language" {
            continue;
        }
        for i in 0..=value_ids.len() {
            let next = tree.entry(value_ids[..i].to_vec()).or_default();
            next.insert(if i < value_ids.len() { value_ids[i] } else { newline });
        }
    }
    Ok(tree)
}

/// Keep only `allowed`'s logits (upstream `_apply_whitelist_inplace`); nothing allowed hides all.
fn whitelist(scores: &mut [f32], allowed: &[u32]) {
    let kept: Vec<(u32, f32)> = allowed.iter().filter(|&&t| (t as usize) < scores.len()).map(|&t| (t, scores[t as usize])).collect();
    scores.fill(f32::NEG_INFINITY);
    for (t, v) in kept {
        scores[t as usize] = v;
    }
}

fn argmax(values: &[f32]) -> u32 {
    let mut best = (f32::NEG_INFINITY, 0usize);
    for (i, &v) in values.iter().enumerate() {
        if v > best.0 {
            best = (v, i);
        }
    }
    best.1 as u32
}

/// What phase 1 is asked.
#[derive(Debug, Clone)]
pub struct ThoughtRequest<'a> {
    pub caption: &'a str,
    pub lyrics: &'a str,
    /// Fields the user gave: written as given, not sampled.
    pub given: GivenMetas,
    pub skip_caption: bool,
    pub skip_language: bool,
    pub sampling: Sampling,
    pub seed: u64,
}

/// What phase 1 wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Thought {
    /// The generated text (`<think>\n...`, without `</think>`: the generation stops there).
    pub text: String,
    /// Its fields, read as upstream reads them.
    pub plan: Plan,
    /// Every generated token id, EOS last.
    pub tokens: Vec<u32>,
}

/// Upstream's token budget for a generation without a target duration (the thought, the
/// description modes): 600 s of codes and 500 more, under its model length.
pub const THOUGHT_MAX_NEW_TOKENS: usize = 3500;

/// Write the chain of thought. No guidance (upstream forces it off here: it distorts text).
/// `keep_going` is asked between tokens; `on_token(done)` reports progress.
pub fn generate_thought(
    lm: &CausalLm,
    tokenizer: &LmTokenizer,
    request: &ThoughtRequest,
    keep_going: &mut dyn FnMut() -> bool,
    on_token: &mut dyn FnMut(usize),
) -> Result<Thought, LmError> {
    let prompt = tokenizer.encode(&prompt::plan(request.caption, request.lyrics)).map_err(LmError::Tokenizer)?;
    let mut constraint = ThoughtConstraint::new(tokenizer, request.given.clone(), request.skip_caption, request.skip_language)
        .map_err(LmError::Tokenizer)?;
    let tokens = write_constrained(lm, tokenizer, prompt, &mut constraint, &request.sampling, request.seed, keep_going, on_token)?;
    let text = tokenizer.decode(&tokens).map_err(LmError::Tokenizer)?;
    Ok(Thought { plan: Plan::parse(&text), text, tokens })
}

/// Generate after `prompt` under `constraint`, one row without guidance (upstream's
/// `_generate_with_constrained_decoding`), until EOS or padding is drawn or
/// [`THOUGHT_MAX_NEW_TOKENS`] are written. Returns the generated ids, the last EOS included.
#[allow(clippy::too_many_arguments)]
pub(super) fn write_constrained(
    lm: &CausalLm,
    tokenizer: &LmTokenizer,
    prompt: Vec<u32>,
    constraint: &mut ThoughtConstraint,
    sampling: &Sampling,
    seed: u64,
    keep_going: &mut dyn FnMut() -> bool,
    on_token: &mut dyn FnMut(usize),
) -> Result<Vec<u32>, LmError> {
    let max_new = THOUGHT_MAX_NEW_TOKENS;
    if prompt.len() + max_new > lm.max_positions() {
        return Err(LmError::TooLong { prompt: prompt.len(), new: max_new, limit: lm.max_positions() });
    }
    let mut cache = lm.new_cache(1, prompt.len() + max_new)?;
    let mut logits = lm.prefill(std::slice::from_ref(&prompt), tokenizer.pad_id, &mut cache)?;
    let mut history = prompt;
    let mut sampler = TokenSampler::new(seed);
    let mut tokens = Vec::new();
    for _ in 0..max_new {
        if !keep_going() {
            return Err(LmError::Cancelled);
        }
        let mut row: Vec<f32> = logits.get(0)?.to_vec1()?;
        constraint.apply(&mut row).map_err(LmError::Tokenizer)?;
        let token = sampler.sample(&mut row, sampling, &history);
        constraint.update(token);
        tokens.push(token);
        history.push(token);
        on_token(tokens.len());
        if token == tokenizer.eos_id || token == tokenizer.pad_id {
            break;
        }
        logits = lm.step(&[token], &mut cache)?;
    }
    Ok(tokens)
}
