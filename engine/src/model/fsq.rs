//! Finite scalar quantization of the 5 Hz audio codes (checkpoint prefix `tokenizer.quantizer`):
//! upstream's `ResidualFSQ(dim=fsq_dim, levels=[8,8,8,5,5,5], num_quantizers=1)` from
//! vector-quantize-pytorch, which builds its FSQ layer symmetric and hard-clamped.
//!
//! Per dimension d with L levels: `z = tanh(z / c)·c` with `c = 1 + 1/(L-1)` (soft clamp), then
//! `digit = floor((L-1)·(clamp(z, -1, 1) + 1)/2 + 0.5)` in 0..L and the code value
//! `digit·2/(L-1) - 1`. A code index packs the digits little-endian in mixed radix:
//! `index = Σ digit_d · Π_{e<d} L_e` (64,000 codes for the published levels).
//! `project_in`/`project_out` map between the model width and the L code dimensions.

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::linear::{linear, Linear};

/// Mixed-radix digits and code values of the FSQ codebook.
#[derive(Debug, Clone, PartialEq)]
pub struct Levels {
    levels: Vec<u32>,
}

impl Levels {
    pub fn new(levels: &[u32]) -> Self {
        Self { levels: levels.to_vec() }
    }

    /// Number of distinct codes (the product of the levels).
    pub fn codebook_size(&self) -> u32 {
        self.levels.iter().product()
    }

    pub fn dims(&self) -> usize {
        self.levels.len()
    }

    /// The digits of `index`, one per dimension.
    pub fn digits(&self, index: u32) -> Vec<u32> {
        let mut rest = index;
        self.levels
            .iter()
            .map(|&l| {
                let digit = rest % l;
                rest /= l;
                digit
            })
            .collect()
    }

    pub fn index(&self, digits: &[u32]) -> u32 {
        digits.iter().zip(&self.levels).rev().fold(0, |acc, (&d, &l)| acc * l + d)
    }

    /// The code vector (each value in [-1, 1]) of `index`.
    pub fn code(&self, index: u32) -> Vec<f32> {
        let digits = self.digits(index);
        digits.iter().zip(&self.levels).map(|(&d, &l)| d as f32 * (2.0 / (l - 1) as f32) - 1.0).collect()
    }
}

/// The quantizer with its projections.
#[derive(Debug, Clone)]
pub struct Fsq {
    levels: Levels,
    project_in: Linear,
    project_out: Linear,
}

impl Fsq {
    /// `dim` is the model-side width (`fsq_dim`).
    pub fn new(dim: usize, levels: &[u32], vb: VarBuilder) -> Result<Self> {
        if levels.len() < 2 || levels.iter().any(|&l| l < 2) {
            candle_core::bail!("fsq_input_levels must have at least 2 levels of at least 2 each, got {levels:?}");
        }
        Ok(Self {
            levels: Levels::new(levels),
            project_in: linear(dim, levels.len(), vb.pp("project_in"))?,
            project_out: linear(levels.len(), dim, vb.pp("project_out"))?,
        })
    }

    pub fn levels(&self) -> &Levels {
        &self.levels
    }

    /// A per-dimension constant as a (1, 1, L) tensor.
    fn per_level(&self, f: impl Fn(f32) -> f32, device: &Device) -> Result<Tensor> {
        let values: Vec<f32> = self.levels.levels.iter().map(|&l| f(l as f32)).collect();
        Tensor::from_vec(values, (1, 1, self.levels.dims()), device)
    }

    /// Quantize (B, N, dim) states: the quantized states (B, N, dim) after `project_out`, and the
    /// code indices (B, N) as u32.
    pub fn forward(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let dtype = x.dtype();
        let device = x.device();
        let z = self.project_in.forward(x)?;
        let clamp = self.per_level(|l| 1.0 + 1.0 / (l - 1.0), device)?.to_dtype(dtype)?;
        let z = z.broadcast_div(&clamp)?.tanh()?.broadcast_mul(&clamp)?;

        // Digits in f32 whatever the model dtype (upstream forces the quantization to f32).
        let z = z.to_dtype(DType::F32)?.clamp(-1f32, 1f32)?;
        let l_minus_1 = self.per_level(|l| l - 1.0, device)?;
        let digits = (((z + 1.0)?.broadcast_mul(&l_minus_1)? / 2.0)? + 0.5)?.floor()?;
        let step = self.per_level(|l| 2.0 / (l - 1.0), device)?;
        let codes = (digits.broadcast_mul(&step)? - 1.0)?;

        let basis: Vec<f32> = (0..self.levels.dims())
            .map(|d| self.levels.levels[..d].iter().product::<u32>() as f32)
            .collect();
        let basis = Tensor::from_vec(basis, (1, 1, self.levels.dims()), device)?;
        // Exact: every partial sum is an integer below 2^24.
        let indices = digits.broadcast_mul(&basis)?.sum(2)?.to_dtype(DType::U32)?;
        Ok((self.project_out.forward(&codes.to_dtype(dtype)?)?, indices))
    }

    /// The quantized states of code indices (B, N) (upstream `get_output_from_indices`). Indices
    /// outside the codebook are an error.
    pub fn output_from_indices(&self, indices: &Tensor) -> Result<Tensor> {
        let (b, n) = indices.dims2()?;
        let size = self.levels.codebook_size();
        let mut values = Vec::with_capacity(b * n * self.levels.dims());
        for index in indices.to_dtype(DType::U32)?.flatten_all()?.to_vec1::<u32>()? {
            if index >= size {
                candle_core::bail!("audio code {index} is outside the codebook (0..{size})");
            }
            values.extend(self.levels.code(index));
        }
        let codes = Tensor::from_vec(values, (b, n, self.levels.dims()), indices.device())?;
        let dtype = self.project_out.input_dtype();
        self.project_out.forward(&codes.to_dtype(dtype)?)
    }
}

/// The highest code id a `<|audio_code_N|>` string may carry; larger values are clamped (as
/// upstream's parser does).
pub const MAX_AUDIO_CODE: u32 = 63_999;

/// The code ids in a string of `<|audio_code_N|>` tokens, in order. Anything between tokens is
/// ignored; ids above [`MAX_AUDIO_CODE`] are clamped to it.
pub fn parse_audio_codes(text: &str) -> Vec<u32> {
    const OPEN: &str = "<|audio_code_";
    let mut codes = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(OPEN) {
        rest = &rest[start + OPEN.len()..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && rest[digits..].starts_with("|>") {
            // Too many digits for u64 still means "too large": clamp.
            let value = rest[..digits].parse::<u64>().unwrap_or(u64::MAX);
            codes.push(value.min(MAX_AUDIO_CODE as u64) as u32);
            rest = &rest[digits + 2..];
        }
    }
    codes
}

/// `<|audio_code_N|>` tokens for `codes`, concatenated.
pub fn format_audio_codes(codes: &[u32]) -> String {
    codes.iter().map(|c| format!("<|audio_code_{c}|>")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PUBLISHED: [u32; 6] = [8, 8, 8, 5, 5, 5];

    #[test]
    fn digits_and_indices_round_trip_over_the_whole_codebook() {
        let levels = Levels::new(&PUBLISHED);
        assert_eq!(levels.codebook_size(), 64_000);
        for index in 0..levels.codebook_size() {
            assert_eq!(levels.index(&levels.digits(index)), index);
        }
        assert_eq!(levels.digits(1 + 8 * 3 + 512 * 4), [1, 3, 0, 4, 0, 0]);
        assert_eq!(levels.code(0), [-1.0; 6]);
        assert_eq!(levels.code(63_999), [1.0; 6]);
    }

    #[test]
    fn code_strings_parse_clamp_and_format() {
        let text = "<|audio_code_5|><|audio_code_63999|> x <|audio_code_70000|><|audio_code_|><|audio_code_12";
        assert_eq!(parse_audio_codes(text), [5, 63_999, 63_999]);
        assert_eq!(parse_audio_codes(&format_audio_codes(&[0, 42, 63_999])), [0, 42, 63_999]);
        assert_eq!(format_audio_codes(&[7, 8]), "<|audio_code_7|><|audio_code_8|>");
        assert!(parse_audio_codes("no codes").is_empty());
    }
}
