//! The genre vocabulary that constrains the `genres:` field of the LM's description modes
//! (understand, sample, format), as upstream's `constrained_logits_processor.py` uses its
//! `genres_vocab.txt`: one genre per line, `#` lines and blank lines skipped, lower-cased. The
//! whole written value must be one entry of the list (commas included: an entry such as
//! `pop, rock` is one genre to the decoder).
//!
//! Upstream ships the list inside its Python package, not with the checkpoints, so Backline reads
//! it from the LM's folder or the checkpoints folder when the user has put it there. Without it the
//! field is free text ended by the model (see `think`).
//!
//! The list is held sorted: a prefix is a node of upstream's character trie exactly when some entry
//! starts with it, which a binary search answers without building the trie.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use super::tokenizer::LmTokenizer;

/// What Python's `str.strip()` strips.
fn py_space(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

/// The file's name, as upstream names it.
pub const FILE_NAME: &str = "genres_vocab.txt";

pub struct GenreVocabulary {
    /// Every genre, lower-cased, sorted, without repeats.
    entries: Vec<String>,
    /// Each token's text as upstream compares it: lower-cased, trailing whitespace dropped, a
    /// whitespace-only token as one space; `None` for tokens that decode to nothing.
    token_texts: Vec<Option<String>>,
    /// Tokens by their first character and by their first non-space character, lower-cased.
    by_first_char: HashMap<char, Vec<u32>>,
}

impl GenreVocabulary {
    pub fn load(path: &Path, tokenizer: &LmTokenizer) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::from_text(&text, tokenizer)
    }

    pub fn from_text(text: &str, tokenizer: &LmTokenizer) -> Result<Self, String> {
        let mut entries: Vec<String> = text
            .lines()
            .map(|line| line.trim_matches(py_space))
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(str::to_lowercase)
            .collect();
        entries.sort();
        entries.dedup();
        let mut token_texts = Vec::with_capacity(tokenizer.vocab_size());
        let mut by_first_char: HashMap<char, Vec<u32>> = HashMap::new();
        for id in 0..tokenizer.vocab_size() as u32 {
            let text = tokenizer.decode(&[id]).unwrap_or_default();
            let Some(first) = text.chars().next() else {
                token_texts.push(None);
                continue;
            };
            let lower = text.to_lowercase();
            let has_content = !lower.trim_matches(py_space).is_empty();
            token_texts.push(Some(if has_content { lower.trim_end_matches(py_space).to_string() } else { " ".to_string() }));
            // Python keys on `char.lower()`, which for a few characters is two; no genre's
            // character ever matches those keys, so they are left out.
            let single_lower = |c: char| {
                let mut lower = c.to_lowercase();
                lower.next().filter(|_| lower.next().is_none())
            };
            let mut keys: Vec<char> = single_lower(first).into_iter().collect();
            let stripped = text.trim_start_matches(py_space);
            if stripped.len() != text.len() {
                keys.extend(stripped.chars().next().and_then(single_lower));
            }
            keys.dedup();
            for key in keys {
                by_first_char.entry(key).or_default().push(id);
            }
        }
        Ok(Self { entries, token_texts, by_first_char })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Where the entries starting with `prefix` begin.
    fn first_with(&self, prefix: &str) -> usize {
        self.entries.partition_point(|e| e.as_str() < prefix)
    }

    fn is_prefix(&self, prefix: &str) -> bool {
        self.entries.get(self.first_with(prefix)).is_some_and(|e| e.starts_with(prefix))
    }

    fn is_entry(&self, text: &str) -> bool {
        self.entries.binary_search_by(|e| e.as_str().cmp(text)).is_ok()
    }

    fn next_chars(&self, prefix: &str) -> BTreeSet<char> {
        self.entries[self.first_with(prefix)..]
            .iter()
            .take_while(|e| e.starts_with(prefix))
            .filter_map(|e| e[prefix.len()..].chars().next())
            .collect()
    }

    /// The tokens that may follow `written` (the field's text so far) so that it stays the start
    /// of some genre; the newline too when it is a whole genre. Upstream's
    /// `_get_allowed_genres_tokens`: the text is compared lower-cased and stripped, and a token's
    /// text is appended as it decodes, so a token with a leading space cannot start the value.
    pub fn allowed(&self, written: &str, newline: u32) -> Vec<u32> {
        let lower = written.to_lowercase();
        let prefix = lower.trim_matches(py_space);
        if !self.is_prefix(prefix) {
            return vec![newline];
        }
        let next = self.next_chars(prefix);
        let complete = self.is_entry(prefix);
        let mut allowed = BTreeSet::new();
        let mut candidate = String::new();
        for c in &next {
            for &id in self.by_first_char.get(c).map(Vec::as_slice).unwrap_or_default() {
                let Some(text) = &self.token_texts[id as usize] else { continue };
                if text.trim_matches(py_space).is_empty() {
                    if next.contains(&' ') || next.contains(&',') {
                        allowed.insert(id);
                    }
                    continue;
                }
                candidate.clear();
                candidate.push_str(prefix);
                candidate.push_str(text);
                if self.is_prefix(&candidate) {
                    allowed.insert(id);
                }
            }
        }
        if complete {
            allowed.insert(newline);
        }
        allowed.into_iter().collect()
    }
}
