//! Phase 2: the audio codes, generated after the chain of thought (upstream `llm_inference.py`
//! `generate_with_stop_condition`, codes phase, through `_generate_with_cfg_custom` and the
//! constrained processor's `CODES_GENERATION` state).
//!
//! - The conditional row is the caption and lyrics with the chain of thought as a completed
//!   thought; the unconditional row the negative prompt with an empty one (`prompt`).
//! - Both rows run in one batched forward per token. With a guidance scale above 1 the logits
//!   are guided over the allowed tokens only; at 1 or below the conditional row runs alone.
//! - Only the 64,000 codebook tokens and EOS are allowed. With `target = duration·5` codes, EOS is
//!   blocked until `target` codes exist, then it is the only token left, so a piece has exactly
//!   the asked length. The sampled token is appended to both rows.

use candle_core::Tensor;

use super::plan::Plan;
use super::prompt;
use super::sample::{guide, Sampling, TokenSampler};
use super::tokenizer::LmTokenizer;
use crate::model::causal_lm::CausalLm;

/// Upstream's `max_model_len`: the longest row (prompt and generated tokens) a generation may
/// have; `max_new_tokens` is capped 64 tokens under it.
pub const MAX_MODEL_LEN: usize = 4096;

/// Codes per second of audio (the tokenizer pools 25 Hz latents in windows of 5).
pub const CODES_PER_SECOND: usize = 5;

/// What phase 2 is asked.
#[derive(Debug, Clone)]
pub struct CodesRequest<'a> {
    pub caption: &'a str,
    pub lyrics: &'a str,
    /// The plan the codes follow (phase 1's, or the user's metadata when every field was given).
    pub plan: &'a Plan,
    /// The unconditional row's user turn; empty or `NO USER INPUT` for none.
    pub negative_prompt: &'a str,
    /// Exactly this many codes are generated (`duration·5`).
    pub target_codes: usize,
    pub cfg_scale: f32,
    pub sampling: Sampling,
    pub seed: u64,
}

/// What went wrong in a generation.
#[derive(Debug, thiserror::Error)]
pub enum LmError {
    #[error("the 5 Hz LM prompt has {prompt} tokens and {new} more are to be generated, past the {limit} a generation may hold")]
    TooLong { prompt: usize, new: usize, limit: usize },
    #[error("the 5 Hz LM failed: {0}")]
    Model(String),
    #[error("the 5 Hz LM's tokenizer failed: {0}")]
    Tokenizer(String),
    #[error("{0}")]
    Input(String),
    #[error("cancelled")]
    Cancelled,
}

impl From<candle_core::Error> for LmError {
    fn from(e: candle_core::Error) -> Self {
        LmError::Model(e.to_string())
    }
}

/// What phase 2 produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Codes {
    /// Codebook indices, `target_codes` of them unless the model ended early (it cannot while
    /// the constraint holds) or the generation hit its length limit.
    pub codes: Vec<u32>,
    /// Every generated token id (the codes' tokens, then EOS), for parity checks.
    pub tokens: Vec<u32>,
}

/// Generate the codes. `keep_going` is asked between tokens; `false` stops with
/// [`LmError::Cancelled`]. `on_token(done, total)` reports progress.
pub fn generate_codes(
    lm: &CausalLm,
    tokenizer: &LmTokenizer,
    request: &CodesRequest,
    keep_going: &mut dyn FnMut() -> bool,
    on_token: &mut dyn FnMut(usize, usize),
) -> Result<Codes, LmError> {
    let encode = |text: &str| tokenizer.encode(text).map_err(LmError::Tokenizer);
    let conditional = encode(&prompt::codes(request.caption, request.lyrics, &request.plan.chain_of_thought()))?;
    let guided = request.cfg_scale > 1.0;
    let mut rows = vec![conditional];
    if guided {
        rows.push(encode(&prompt::codes_unconditional(request.negative_prompt))?);
    }
    let width = rows.iter().map(Vec::len).max().unwrap_or(0);
    let max_new = (request.target_codes + 10).min(MAX_MODEL_LEN - 64);
    let limit = lm.max_positions();
    if width + max_new > limit {
        return Err(LmError::TooLong { prompt: width, new: max_new, limit });
    }

    let mut cache = lm.new_cache(rows.len(), width + max_new)?;
    let mut logits = lm.prefill(&rows, tokenizer.pad_id, &mut cache)?;
    // The conditional row as the repetition penalty sees it: left padding, prompt, new tokens.
    let mut history: Vec<u32> = std::iter::repeat_n(tokenizer.pad_id, width - rows[0].len()).chain(rows[0].iter().copied()).collect();
    let mut sampler = TokenSampler::new(request.seed);
    let codes_range = tokenizer.code_range();
    let (eos, pad) = (tokenizer.eos_id as usize, tokenizer.pad_id as usize);
    let mut out = Codes { codes: Vec::with_capacity(request.target_codes), tokens: Vec::with_capacity(max_new) };

    for _ in 0..max_new {
        if !keep_going() {
            return Err(LmError::Cancelled);
        }
        let mut row = next_logits(&logits, request.cfg_scale, guided, |i| codes_range.contains(&(i as u32)) || i == eos)?;
        if out.codes.len() < request.target_codes {
            row[eos] = f32::NEG_INFINITY;
        } else {
            let kept = row[eos];
            row.fill(f32::NEG_INFINITY);
            row[eos] = kept;
        }
        let token = sampler.sample(&mut row, &request.sampling, &history);
        out.tokens.push(token);
        history.push(token);
        if token as usize == eos || token as usize == pad {
            break;
        }
        if let Some(code) = tokenizer.code_of(token) {
            out.codes.push(code);
        }
        on_token(out.codes.len(), request.target_codes);
        let step: Vec<u32> = vec![token; cache.rows()];
        logits = lm.step(&step, &mut cache)?;
    }
    Ok(out)
}

/// The conditional row's logits, guided by the unconditional row's over the allowed tokens, or
/// masked to them when unguided.
fn next_logits(logits: &Tensor, scale: f32, guided: bool, allowed: impl Fn(usize) -> bool) -> Result<Vec<f32>, LmError> {
    let mut cond: Vec<f32> = logits.get(0)?.to_vec1()?;
    if guided {
        let uncond: Vec<f32> = logits.get(1)?.to_vec1()?;
        guide(&mut cond, &uncond, scale, allowed);
    } else {
        for (i, l) in cond.iter_mut().enumerate() {
            if !allowed(i) {
                *l = f32::NEG_INFINITY;
            }
        }
    }
    Ok(cond)
}
