//! CPU kernels the networks call where candle's op-by-op path is slower. Each falls back to
//! plain candle ops on other devices and dtypes; none imports anything from `model`.
//!
//! - `attention`: scaled dot-product attention (causal, windowed, key-padded or full) as one
//!   blocked pass per head and query rows, and the additive masks of the op-by-op path.
//! - `fused_residual`: the VAE's residual unit (Snake, dilated conv, Snake, 1x1 conv, skip) as one
//!   blocked pass over GEMM.
//! - `snake`: the Snake activation with a polynomial `sin²` (no libm call per element).
//! - `packed`: Linear weights held as bf16 or 8-/4-bit blocks, widened per product into f32.
//! - `int8`: the product with 8-/4-bit blocks in integer dot products (AVX-512 VNNI).
//! - `cpu_f32`: borrowed slices of f32 CPU tensors, and a parallel element-wise zip.

pub mod attention;
pub mod cpu_f32;
pub mod fused_residual;
pub mod int8;
pub mod packed;
pub mod snake;
