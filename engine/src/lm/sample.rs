//! Choosing the next token from one row of logits, in upstream's order (`llm_inference.py`
//! `_generate_with_cfg_custom` with its PyTorch helpers): classifier-free guidance and the
//! constraint mask come first (the caller's), then the repetition penalty, top-k, top-p on the
//! un-tempered logits, the temperature, the softmax and one multinomial draw.
//!
//! The draw is PyTorch's CPU `torch.multinomial(probs, 1)`, which for one sample takes
//! `argmax(p / q)` with `q` one Exp(1) variate per vocabulary entry, each `-log1p(-u)` of a
//! 53-bit uniform from the Mersenne Twister (`sampling::noise::Mt19937`). So a seed gives the
//! tokens upstream's sampler gives for it on the CPU from the same logits (up to the last bits of
//! the softmax, which can only matter where two candidates tie).

use crate::sampling::noise::Mt19937;

/// Upstream's LM sampling settings (`inference.py` `GenerationParams` defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// Divides the logits before the softmax; 0 or less picks the most likely token.
    pub temperature: f32,
    /// Keep only the `k` most likely tokens (`None`: off).
    pub top_k: Option<usize>,
    /// Keep the most likely tokens until their probability passes `p` (`None`: off).
    pub top_p: Option<f32>,
    /// 1.0 is off; above 1 makes tokens already in the sequence less likely.
    pub repetition_penalty: f32,
}

impl Default for Sampling {
    fn default() -> Self {
        Self { temperature: 0.85, top_k: None, top_p: Some(0.9), repetition_penalty: 1.0 }
    }
}

impl Sampling {
    /// Settings as upstream's API passes them on: a top-k of 0 and a top-p of 1 or more are off.
    pub fn new(temperature: f32, top_k: usize, top_p: f32, repetition_penalty: f32) -> Self {
        Self {
            temperature,
            top_k: (top_k > 0).then_some(top_k),
            top_p: (top_p > 0.0 && top_p < 1.0).then_some(top_p),
            repetition_penalty,
        }
    }
}

/// One generation's random stream, seeded like `torch.manual_seed(seed)`.
pub struct TokenSampler {
    rng: Mt19937,
    /// Scratch for top-p's sorted order, kept across tokens.
    order: Vec<u32>,
}

impl TokenSampler {
    pub fn new(seed: u64) -> Self {
        // torch seeds its Mersenne Twister with the seed's low 32 bits.
        Self { rng: Mt19937::new(seed as u32), order: Vec::new() }
    }

    /// Apply the penalty and filters to `logits` in place and draw a token. `history` is every id
    /// of the conditional row so far, prompt included (transformers' repetition penalty sees
    /// them all).
    pub fn sample(&mut self, logits: &mut [f32], sampling: &Sampling, history: &[u32]) -> u32 {
        if sampling.repetition_penalty != 1.0 {
            repetition_penalty(logits, history, sampling.repetition_penalty);
        }
        if let Some(k) = sampling.top_k {
            top_k(logits, k);
        }
        if let Some(p) = sampling.top_p {
            self.top_p(logits, p);
        }
        if sampling.temperature <= 0.0 {
            return argmax(logits) as u32;
        }
        for l in logits.iter_mut() {
            *l /= sampling.temperature;
        }
        softmax_in_place(logits);
        self.multinomial(logits)
    }

    /// `torch.multinomial(probs, 1)` on the CPU: `argmax(p / q)`, `q ~ Exp(1)` per entry.
    fn multinomial(&mut self, probs: &[f32]) -> u32 {
        let mut best = (f32::NEG_INFINITY, 0usize);
        for (i, &p) in probs.iter().enumerate() {
            let q = (-(-self.uniform_f64()).ln_1p()) as f32;
            let score = p / q;
            if score > best.0 {
                best = (score, i);
            }
        }
        best.1 as u32
    }

    /// torch's double uniform: 53 bits of two 32-bit draws, the first the high word.
    fn uniform_f64(&mut self) -> f64 {
        let hi = self.rng.next_u32() as u64;
        let lo = self.rng.next_u32() as u64;
        (((hi << 32) | lo) & ((1u64 << 53) - 1)) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Upstream `_apply_top_p_filter`: sort descending, softmax, cumulative sum (accumulated in
    /// f64 as torch's CPU cumsum does); hide every token after the one that passes `p`.
    fn top_p(&mut self, logits: &mut [f32], p: f32) {
        self.order.clear();
        self.order.extend(0..logits.len() as u32);
        // Stable, so equal logits keep index order.
        self.order.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
        let max = logits[self.order[0] as usize];
        if max == f32::NEG_INFINITY {
            return;
        }
        let sum: f32 = self.order.iter().map(|&i| (logits[i as usize] - max).exp()).sum();
        let mut cumulative = 0f64;
        let mut keep = self.order.len();
        for (rank, &i) in self.order.iter().enumerate() {
            let prob = (logits[i as usize] - max).exp() / sum;
            cumulative += prob as f64;
            // Token `rank + 1` is removed when the sum through `rank` passes p.
            if (cumulative as f32) > p {
                keep = rank + 1;
                break;
            }
        }
        for &i in &self.order[keep..] {
            logits[i as usize] = f32::NEG_INFINITY;
        }
    }
}

/// transformers' `RepetitionPenaltyLogitsProcessor`: a seen token's logit is divided by the
/// penalty when positive and multiplied by it when negative.
fn repetition_penalty(logits: &mut [f32], history: &[u32], penalty: f32) {
    let mut seen = vec![false; logits.len()];
    for &id in history {
        let id = id as usize;
        if id < logits.len() && !seen[id] {
            seen[id] = true;
            let l = logits[id];
            logits[id] = if l < 0.0 { l * penalty } else { l / penalty };
        }
    }
}

/// Upstream `_apply_top_k_filter`: hide every logit below the k-th largest.
fn top_k(logits: &mut [f32], k: usize) {
    if k >= logits.len() {
        return;
    }
    let mut sorted = logits.to_vec();
    let (_, kth, _) = sorted.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
    let threshold = *kth;
    for l in logits.iter_mut() {
        if *l < threshold {
            *l = f32::NEG_INFINITY;
        }
    }
}

fn argmax(values: &[f32]) -> usize {
    let mut best = (f32::NEG_INFINITY, 0);
    for (i, &v) in values.iter().enumerate() {
        if v > best.0 {
            best = (v, i);
        }
    }
    best.1
}

fn softmax_in_place(values: &mut [f32]) {
    let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for v in values.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in values.iter_mut() {
        *v /= sum;
    }
}

/// Classifier-free guidance of one token's logits, `u + scale·(c − u)` in f32, written into
/// `cond` over `allowed` ids only; every other entry becomes −∞ (upstream computes the guided
/// logits over the allowed tokens alone in the codes phase).
pub fn guide(cond: &mut [f32], uncond: &[f32], scale: f32, allowed: impl Fn(usize) -> bool) {
    for (i, (c, &u)) in cond.iter_mut().zip(uncond).enumerate() {
        *c = if allowed(i) { u + scale * (*c - u) } else { f32::NEG_INFINITY };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guidance_is_applied_over_allowed_tokens_only() {
        let mut cond = vec![1.0, 2.0, 3.0, 4.0];
        guide(&mut cond, &[0.5, 1.0, 5.0, 0.0], 2.0, |i| i != 3);
        assert_eq!(cond, [1.5, 3.0, 1.0, f32::NEG_INFINITY]);
    }

    #[test]
    fn top_p_keeps_the_token_that_crosses_the_threshold() {
        // Probabilities 0.5, 0.3, 0.2: with p = 0.6 the first two stay.
        let mut logits: Vec<f32> = [0.5f32, 0.3, 0.2].iter().map(|p| p.ln()).collect();
        TokenSampler::new(0).top_p(&mut logits, 0.6);
        assert!(logits[0].is_finite() && logits[1].is_finite() && logits[2] == f32::NEG_INFINITY, "{logits:?}");
    }

    #[test]
    fn penalty_and_top_k_follow_transformers() {
        let mut logits = vec![2.0, -2.0, 1.0, 0.5];
        repetition_penalty(&mut logits, &[0, 1, 1], 2.0);
        assert_eq!(logits, [1.0, -4.0, 1.0, 0.5]);
        top_k(&mut logits, 2);
        assert_eq!(logits, [1.0, f32::NEG_INFINITY, 1.0, f32::NEG_INFINITY]);
    }

    #[test]
    fn a_zero_temperature_takes_the_best_token_and_a_seed_repeats_its_draws() {
        let sampling = Sampling { temperature: 0.0, top_k: None, top_p: None, repetition_penalty: 1.0 };
        assert_eq!(TokenSampler::new(1).sample(&mut [0.1, 3.0, 2.9], &sampling, &[]), 1);
        let draw = |seed| {
            let mut s = TokenSampler::new(seed);
            (0..20).map(|_| s.sample(&mut [1.0; 50], &Sampling::new(1.0, 0, 1.0, 1.0), &[])).collect::<Vec<_>>()
        };
        assert_eq!(draw(3), draw(3));
        assert_ne!(draw(3), draw(4));
    }
}
