//! The 5 Hz LM's tokenizer: the checkpoint's `tokenizer.json` (Qwen3's byte-level BPE, its
//! special tokens, and the 65,535 `<|audio_code_N|>` tokens after them), used as upstream's
//! transformers tokenizer is: prompts encoded with the file's own post-processing, generated ids
//! decoded with special tokens kept.

use std::path::Path;

use tokenizers::Tokenizer;

/// The token that pads rows (`<|endoftext|>`, 151643 in the published vocabulary).
pub const PAD: &str = "<|endoftext|>";
/// The end of a turn, which ends a generation (`<|im_end|>`, 151645): the tokenizer's EOS.
pub const END_OF_TURN: &str = "<|im_end|>";
/// The end of the chain of thought (`</think>`, 151668).
pub const THINK_END: &str = "</think>";
/// The first audio-code token; code `n` is this id plus `n`.
pub const FIRST_CODE: &str = "<|audio_code_0|>";
/// Codes the FSQ codebook has (8·8·8·5·5·5); the vocabulary holds 65,535 code tokens, but only
/// these are ever generated (upstream `MAX_AUDIO_CODE = 63999`).
pub const CODEBOOK: u32 = 64_000;

#[derive(Debug, Clone)]
pub struct LmTokenizer {
    tokenizer: Tokenizer,
    pub pad_id: u32,
    pub eos_id: u32,
    pub think_end_id: u32,
    /// The id of `<|audio_code_0|>`.
    pub first_code_id: u32,
}

impl LmTokenizer {
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
        let mut tokenizer = Tokenizer::from_bytes(&bytes).map_err(|e| format!("not a tokenizer.json: {e}"))?;
        tokenizer.with_truncation(None).map_err(|e| e.to_string())?;
        tokenizer.with_padding(None);
        let id = |token: &str| tokenizer.token_to_id(token).ok_or_else(|| format!("has no {token} token (not the 5 Hz LM's tokenizer?)"));
        let (pad_id, eos_id, think_end_id, first_code_id) = (id(PAD)?, id(END_OF_TURN)?, id(THINK_END)?, id(FIRST_CODE)?);
        // Code ids are computed, not looked up: the last code must sit where arithmetic says.
        let last = format!("<|audio_code_{}|>", CODEBOOK - 1);
        if tokenizer.token_to_id(&last) != Some(first_code_id + CODEBOOK - 1) {
            return Err(format!("{last} is not {} places after {FIRST_CODE}", CODEBOOK - 1));
        }
        Ok(Self { tokenizer, pad_id, eos_id, think_end_id, first_code_id })
    }

    /// Tokens in the vocabulary, added tokens included (`len(tokenizer)` in transformers).
    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    /// A prompt to ids, as `tokenizer(prompt)` gives them (special-token text such as
    /// `<|im_start|>` becomes its single id).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, String> {
        let encoding = self.tokenizer.encode_fast(text, true).map_err(|e| e.to_string())?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Ids to text with special tokens kept (`decode(ids, skip_special_tokens=False)`).
    pub fn decode(&self, ids: &[u32]) -> Result<String, String> {
        self.tokenizer.decode(ids, false).map_err(|e| e.to_string())
    }

    /// The code an id stands for, if it is one of the codebook's.
    pub fn code_of(&self, id: u32) -> Option<u32> {
        id.checked_sub(self.first_code_id).filter(|&c| c < CODEBOOK)
    }

    /// The ids the codes phase may emit: every codebook code, then EOS.
    pub fn code_range(&self) -> std::ops::Range<u32> {
        self.first_code_id..self.first_code_id + CODEBOOK
    }
}
