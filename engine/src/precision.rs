//! How the CPU holds the networks' Linear weights: the producer's trade between memory, speed
//! and fidelity (`kernels::packed`). f32 and bf16 compute in f32; the 8- and 4-bit formats
//! multiply in integers against 8-bit activations on a CPU with AVX-512 VNNI (`kernels::int8`,
//! over 3x the f32 product's speed), else widened to f32. The DiT and the text encoder follow it;
//! the VAE, norms, biases and embedding tables do not (they are a small part of the memory).
//!
//! On a GPU the weights take the device dtype and this choice does not apply.

use serde::{Deserialize, Serialize};

use crate::kernels::packed::PackedFormat;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Widened to f32 once at load: twice the memory of the bf16 files, a few percent faster.
    F32,
    /// Kept in bf16 and widened layer by layer: the published weights exactly, half of f32.
    #[default]
    Bf16,
    /// 8-bit blocks of 32 inputs with an f16 scale (8.5 bits a weight), ggml's Q8_0 rule.
    Q8,
    /// 4-bit blocks of 32 inputs with an f16 scale (4.5 bits a weight), ggml's Q4_0 rule.
    Q4,
}

impl Precision {
    pub const ALL: [Precision; 4] = [Precision::F32, Precision::Bf16, Precision::Q8, Precision::Q4];

    /// The name used on the command line, in settings and in requests.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
            Self::Q8 => "q8",
            Self::Q4 => "q4",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name().eq_ignore_ascii_case(name))
    }

    /// One line for a user choosing.
    pub fn describe(self) -> &'static str {
        match self {
            Self::F32 => "f32: fastest on the CPU, twice the memory of bf16",
            Self::Bf16 => "bf16: the published weights exactly",
            Self::Q8 => "8-bit: about half of bf16, close to it",
            Self::Q4 => "4-bit: about a quarter of bf16, audibly rougher",
        }
    }

    /// The instructions this CPU lacks to run `self` at speed, named for the user; `None` when it
    /// has them. On x86-64 the 8- and 4-bit formats decode with AVX2 and F16C where they do not
    /// multiply in integers (AVX-512 VNNI): without them every
    /// product waits on a scalar decode (1.7x the diffusion time), so they are refused rather than
    /// run slowly. bf16 and f32 run anywhere, and ARM's NEON is always there.
    pub fn missing_instructions(self) -> Option<&'static str> {
        #[cfg(target_arch = "x86_64")]
        let has = |feature: &str| match feature {
            "avx2" => std::arch::is_x86_feature_detected!("avx2"),
            "f16c" => std::arch::is_x86_feature_detected!("f16c"),
            _ => false,
        };
        #[cfg(not(target_arch = "x86_64"))]
        let has = |_: &str| true;
        self.missing_given(has)
    }

    /// [`Precision::missing_instructions`] on a CPU that has the features `has` says.
    pub fn missing_given(self, has: impl Fn(&str) -> bool) -> Option<&'static str> {
        match self {
            Self::F32 | Self::Bf16 => None,
            Self::Q8 | Self::Q4 => (!(has("avx2") && has("f16c"))).then_some("AVX2 and F16C"),
        }
    }

    /// How a Linear weight of `k` inputs and `n` outputs stored as `stored` (a safetensors dtype)
    /// is held: packed, or `None` for a dense f32 tensor. A layer that is not whole blocks and
    /// tiles (`kernels::packed`) stays in bf16.
    pub fn linear_format(self, stored: &str, k: usize, n: usize) -> Option<PackedFormat> {
        let format = match self {
            Self::F32 => return None,
            // An f32 or f16 file stays f32: bf16 would round it.
            Self::Bf16 if stored != "BF16" => return None,
            Self::Bf16 => PackedFormat::Bf16,
            Self::Q8 => PackedFormat::Q8,
            Self::Q4 => PackedFormat::Q4,
        };
        Some(if format.fits(k, n) { format } else { PackedFormat::Bf16 })
    }

    /// Bytes a Linear weight of `in_dim x n` stored as `stored` takes resident.
    pub fn linear_bytes(self, stored: &str, in_dim: usize, n: usize) -> u64 {
        (match self.linear_format(stored, in_dim, n) {
            Some(format) => format.bytes(in_dim, n),
            None => 4 * in_dim * n,
        }) as u64
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantized_weights_need_avx2_and_f16c_and_the_others_run_anywhere() {
        let without_avx2 = |f: &str| f == "f16c";
        assert_eq!(Precision::Q8.missing_given(without_avx2), Some("AVX2 and F16C"));
        assert_eq!(Precision::Q4.missing_given(|_| false), Some("AVX2 and F16C"));
        assert_eq!(Precision::Q8.missing_given(|_| true), None);
        for always in [Precision::F32, Precision::Bf16] {
            assert_eq!(always.missing_given(|_| false), None, "{always}");
        }
    }

    #[test]
    fn names_round_trip() {
        for p in Precision::ALL {
            assert_eq!(Precision::parse(p.name()), Some(p));
        }
        assert_eq!(Precision::parse("Q8"), Some(Precision::Q8));
        assert_eq!(Precision::parse("int3"), None);
    }

    #[test]
    fn each_choice_holds_a_published_weight_at_its_width() {
        let (k, n) = (2048, 6144);
        let bytes = |p: Precision| Precision::linear_bytes(p, "BF16", k, n) as f64 / (k * n) as f64;
        assert_eq!(bytes(Precision::F32), 4.0);
        assert_eq!(bytes(Precision::Bf16), 2.0);
        assert_eq!(bytes(Precision::Q8), 8.5 / 8.0);
        assert_eq!(bytes(Precision::Q4), 4.5 / 8.0);
        // f32 files stay f32 unless asked to quantize; odd widths fall back to bf16.
        assert_eq!(Precision::Bf16.linear_format("F32", k, n), None);
        assert_eq!(Precision::Q8.linear_format("F32", k, n), Some(PackedFormat::Q8));
        assert_eq!(Precision::Q4.linear_format("BF16", k, 6), Some(PackedFormat::Bf16));
        assert_eq!(Precision::Q8.linear_format("BF16", 40, n), Some(PackedFormat::Bf16));
    }
}
