//! Linear-layer weights kept compact in memory and widened to f32 one layer at a time.
//!
//! The CPU computes in f32, but holding every weight in f32 doubles the published bf16 files
//! (13.5 GiB for a turbo generation). A [`PackedMatrix`] keeps a `Linear`'s weight as bf16 or as
//! 8- or 4-bit blocks, laid out `(in, out)` row-major (the layout the GEMM reads
//! without re-packing, see `checkpoint::widen`). Each product decodes the whole matrix into a
//! per-thread f32 scratch on every core and runs the f32 GEMM on it: decoding reads each weight
//! once and costs about a tenth of the product at the DiT's shapes (`docs/benchmarks.md`), so the
//! speed stays that of f32 while memory drops to the stored width.
//!
//! Quantized rows: for each input channel, the `out` weights are cut into blocks of [`BLOCK`]
//! consecutive outputs, each with an f16 scale `d`:
//! - [`PackedFormat::Q8`]: `q = round(w / d)` in `-127..=127`, `d = max|w| / 127`; 8.5 bits a weight.
//! - [`PackedFormat::Q4`]: ggml's Q4_0 rule: `d = m / -8` where `m` is the block's value of
//!   largest magnitude (sign kept), `q = clamp(round(w / d) + 8, 0, 15)`, decoded `(q - 8) · d`;
//!   two weights a byte (even output in the low nibble), 4.5 bits a weight.
//!
//! A row is its scales (`out / BLOCK` little-endian f16) followed by its values. Blocks run along
//! the output axis (ggml's run along the input axis) so that a row decodes into one contiguous
//! run of the `(in, out)` scratch.

use std::cell::RefCell;

use candle_core::{CpuStorage, DType, Device, Result, Tensor};
use gemm::{gemm, Parallelism};
use half::f16;
use rayon::prelude::*;

/// Weights sharing one scale in the quantized formats.
pub const BLOCK: usize = 32;

/// How a packed matrix stores its weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PackedFormat {
    Bf16,
    Q8,
    Q4,
}

impl PackedFormat {
    /// Bytes of one stored row: one input channel's `n` output weights.
    pub fn row_bytes(self, n: usize) -> usize {
        match self {
            Self::Bf16 => 2 * n,
            Self::Q8 => 2 * (n / BLOCK) + n,
            Self::Q4 => 2 * (n / BLOCK) + n / 2,
        }
    }

    /// Whether a matrix with `n` outputs can be stored this way (the quantized rows are whole
    /// blocks).
    pub fn fits(self, n: usize) -> bool {
        match self {
            Self::Bf16 => true,
            Self::Q8 | Self::Q4 => n > 0 && n % BLOCK == 0,
        }
    }

    /// Bits one weight takes, scales included.
    pub fn bits_per_weight(self) -> f64 {
        self.row_bytes(BLOCK) as f64 * 8.0 / BLOCK as f64
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Bf16 => "bf16",
            Self::Q8 => "q8",
            Self::Q4 => "q4",
        }
    }
}

/// A `Linear` weight in a [`PackedFormat`]: `k` input rows of `n` outputs, held as a `(k,
/// row_bytes)` U8 CPU tensor so that a checkpoint loader can hand it over like any weight. The
/// row length tells the format ([`PackedMatrix::from_tensor`]).
#[derive(Debug, Clone)]
pub struct PackedMatrix {
    format: PackedFormat,
    k: usize,
    n: usize,
    data: Tensor,
}

impl PackedMatrix {
    /// Pack `values`, the `(in, out)` = `(k, n)` row-major matrix. Bf16 rounds to nearest even
    /// (exact for values that came from bf16).
    pub fn encode(format: PackedFormat, values: &[f32], k: usize, n: usize) -> Result<Self> {
        if values.len() != k * n {
            candle_core::bail!("packing a {k}x{n} matrix from {} values", values.len());
        }
        if !format.fits(n) {
            candle_core::bail!("a matrix with {n} outputs cannot be stored as {} (blocks of {BLOCK})", format.name());
        }
        let row_bytes = format.row_bytes(n);
        let bytes = crate::alloc::fill_fresh::<u8>(k * row_bytes, row_bytes.max(1) * 64, |start, out| {
            // Chunks are whole rows: `start` and the chunk length are multiples of `row_bytes`.
            let first_row = start / row_bytes;
            for byte in out.iter_mut() {
                byte.write(0);
            }
            // Safety: every byte of `out` was just initialised.
            let out = unsafe { &mut *(out as *mut [std::mem::MaybeUninit<u8>] as *mut [u8]) };
            let rows = out.len() / row_bytes;
            encode_rows(format, &values[first_row * n..(first_row + rows) * n], out, row_bytes, n);
        });
        let data = Tensor::from_vec(bytes, (k, row_bytes), &Device::Cpu)?;
        Ok(Self { format, k, n, data })
    }

    /// The matrix held by `data` (as [`PackedMatrix::tensor`] gives it) with `n` outputs.
    pub fn from_tensor(data: Tensor, n: usize) -> Result<Self> {
        let (k, cols) = data.dims2()?;
        let format = [PackedFormat::Bf16, PackedFormat::Q8, PackedFormat::Q4]
            .into_iter()
            .find(|f| data.dtype() == DType::U8 && f.fits(n) && cols == f.row_bytes(n));
        let Some(format) = format else {
            candle_core::bail!("a ({k}, {cols}) {:?} tensor is not a packed matrix with {n} outputs", data.dtype())
        };
        if !data.device().is_cpu() || !data.is_contiguous() {
            candle_core::bail!("a packed matrix lives in contiguous CPU memory");
        }
        Ok(Self { format, k, n, data })
    }

    /// The tensor holding the packed rows.
    pub fn tensor(&self) -> &Tensor {
        &self.data
    }

    pub fn format(&self) -> PackedFormat {
        self.format
    }

    /// (in, out).
    pub fn dims(&self) -> (usize, usize) {
        (self.k, self.n)
    }

    /// The packed rows as bytes, borrowed from the tensor's storage.
    fn with_bytes<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        let (storage, layout) = self.data.storage_and_layout();
        let (start, end) = layout.contiguous_offsets().expect("checked when built");
        match &*storage {
            candle_core::Storage::Cpu(CpuStorage::U8(v)) => f(&v[start..end]),
            _ => unreachable!("checked when built"),
        }
    }

    /// The whole matrix as f32 `(k, n)` row-major, into `out`, on every core.
    pub fn decode_into(&self, out: &mut [f32]) {
        assert_eq!(out.len(), self.k * self.n, "decode_into: wrong output size");
        if self.n == 0 {
            return;
        }
        let row_bytes = self.format.row_bytes(self.n);
        // About 64 K weights a task: enough to amortise the task, small enough to balance.
        let rows_per_task = (65_536 / self.n).max(1);
        self.with_bytes(|bytes| {
            out.par_chunks_mut(rows_per_task * self.n).zip(bytes.par_chunks(rows_per_task * row_bytes)).for_each(|(out, bytes)| {
                decode_rows(self.format, bytes, out, row_bytes, self.n);
            })
        });
    }

    /// `x · W` for `x` of `m` rows of `k` (row-major), as `m` rows of `n`.
    pub fn matmul(&self, x: &[f32], m: usize) -> Vec<f32> {
        assert_eq!(x.len(), m * self.k, "matmul: x is not {m}x{}", self.k);
        let (k, n) = (self.k, self.n);
        let mut out = vec![0f32; m * n];
        if m == 0 || n == 0 {
            return out;
        }
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            if scratch.len() < k * n {
                // Grows to the largest layer once per thread, then is reused by every layer.
                *scratch = vec![0f32; k * n];
            }
            let w = &mut scratch[..k * n];
            self.decode_into(w);
            // Safety: the pointers and row strides describe `out` (m x n), `x` (m x k) and `w`
            // (k x n), all row-major and alive for the call; `read_dst` is false so `out` is only
            // written.
            unsafe {
                gemm(
                    m, n, k,
                    out.as_mut_ptr(), 1, n as isize, false,
                    x.as_ptr(), 1, k as isize,
                    w.as_ptr(), 1, n as isize,
                    0.0, 1.0, false, false, false,
                    Parallelism::Rayon(rayon::current_num_threads()),
                )
            };
        });
        out
    }
}

thread_local! {
    /// The f32 copy of the layer being multiplied, one per thread that runs models.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Free this thread's decode scratch (the largest layer's f32 size), e.g. when a job ends.
pub fn release_scratch() {
    SCRATCH.with(|s| *s.borrow_mut() = Vec::new());
}

/// Encode whole rows, with the widest vector instructions the CPU has (as [`decode_rows`]).
fn encode_rows(format: PackedFormat, values: &[f32], out: &mut [u8], row_bytes: usize, n: usize) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("f16c") {
        // Safety: the CPU has the features the function is compiled for.
        return unsafe { encode_rows_avx2(format, values, out, row_bytes, n) };
    }
    encode_rows_generic(format, values, out, row_bytes, n)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c,fma")]
fn encode_rows_avx2(format: PackedFormat, values: &[f32], out: &mut [u8], row_bytes: usize, n: usize) {
    encode_rows_generic(format, values, out, row_bytes, n)
}

#[inline(always)]
fn encode_rows_generic(format: PackedFormat, values: &[f32], out: &mut [u8], row_bytes: usize, n: usize) {
    for (row, src) in out.chunks_exact_mut(row_bytes).zip(values.chunks_exact(n)) {
        encode_row(format, src, row);
    }
}

#[inline(always)]
fn encode_row(format: PackedFormat, src: &[f32], row: &mut [u8]) {
    match format {
        PackedFormat::Bf16 => {
            for (b, &v) in row.as_chunks_mut::<2>().0.iter_mut().zip(src) {
                *b = half::bf16::from_f32(v).to_le_bytes();
            }
        }
        PackedFormat::Q8 | PackedFormat::Q4 => {
            let blocks = src.len() / BLOCK;
            let (scales, values) = row.split_at_mut(2 * blocks);
            for (b, block) in src.chunks_exact(BLOCK).enumerate() {
                let d = if format == PackedFormat::Q8 {
                    let amax = block.iter().fold(0f32, |a, v| a.max(v.abs()));
                    let d = f16::from_f32(amax / 127.0);
                    let inv = if d.to_f32() == 0.0 { 0.0 } else { 1.0 / d.to_f32() };
                    for (q, &v) in values[b * BLOCK..(b + 1) * BLOCK].iter_mut().zip(block) {
                        *q = ((v * inv).round().clamp(-127.0, 127.0) as i8) as u8;
                    }
                    d
                } else {
                    let extreme = block.iter().fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
                    let d = f16::from_f32(extreme / -8.0);
                    let inv = if d.to_f32() == 0.0 { 0.0 } else { 1.0 / d.to_f32() };
                    let out = &mut values[b * BLOCK / 2..(b + 1) * BLOCK / 2];
                    for (byte, pair) in out.iter_mut().zip(block.chunks_exact(2)) {
                        let q = |v: f32| ((v * inv).round() + 8.0).clamp(0.0, 15.0) as u8;
                        *byte = q(pair[0]) | (q(pair[1]) << 4);
                    }
                    d
                };
                scales[2 * b..2 * b + 2].copy_from_slice(&d.to_le_bytes());
            }
        }
    }
}

/// Decode whole rows, with the widest vector instructions the CPU has. The generic x86-64
/// baseline (SSE2) has no byte-to-int widening or f16 conversion, and the 8-bit decode ran at a
/// third of the bf16 one's speed.
fn decode_rows(format: PackedFormat, bytes: &[u8], out: &mut [f32], row_bytes: usize, n: usize) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("f16c") {
        // Safety: the CPU has the features the function is compiled for.
        return unsafe { decode_rows_avx2(format, bytes, out, row_bytes, n) };
    }
    decode_rows_generic(format, bytes, out, row_bytes, n)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c,fma")]
fn decode_rows_avx2(format: PackedFormat, bytes: &[u8], out: &mut [f32], row_bytes: usize, n: usize) {
    decode_rows_generic(format, bytes, out, row_bytes, n)
}

#[inline(always)]
fn decode_rows_generic(format: PackedFormat, bytes: &[u8], out: &mut [f32], row_bytes: usize, n: usize) {
    for (dst, src) in out.chunks_exact_mut(n).zip(bytes.chunks_exact(row_bytes)) {
        decode_row(format, src, dst);
    }
}

#[inline(always)]
fn decode_row(format: PackedFormat, row: &[u8], dst: &mut [f32]) {
    match format {
        PackedFormat::Bf16 => {
            for (d, b) in dst.iter_mut().zip(row.as_chunks::<2>().0) {
                *d = f32::from_bits((u16::from_le_bytes(*b) as u32) << 16);
            }
        }
        PackedFormat::Q8 => {
            let blocks = dst.len() / BLOCK;
            let (scales, values) = row.split_at(2 * blocks);
            for ((out, q), s) in dst.as_chunks_mut::<BLOCK>().0.iter_mut().zip(values.as_chunks::<BLOCK>().0).zip(scales.as_chunks::<2>().0) {
                let d = f16::from_bits(u16::from_le_bytes(*s)).to_f32();
                for j in 0..BLOCK {
                    out[j] = (q[j] as i8) as f32 * d;
                }
            }
        }
        PackedFormat::Q4 => {
            let blocks = dst.len() / BLOCK;
            let (scales, values) = row.split_at(2 * blocks);
            for ((out, q), s) in dst.as_chunks_mut::<BLOCK>().0.iter_mut().zip(values.as_chunks::<{ BLOCK / 2 }>().0).zip(scales.as_chunks::<2>().0) {
                let d = f16::from_bits(u16::from_le_bytes(*s)).to_f32();
                for j in 0..BLOCK / 2 {
                    out[2 * j] = ((q[j] & 15) as f32 - 8.0) * d;
                    out[2 * j + 1] = ((q[j] >> 4) as f32 - 8.0) * d;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(k: usize, n: usize) -> Vec<f32> {
        // Deterministic, sign-mixed, with a few outliers per row like trained weights.
        (0..k * n)
            .map(|i| {
                let v = ((i * 7919 % 1009) as f32 - 504.0) / 504.0 * 0.05;
                if i % 97 == 0 { v * 8.0 } else { v }
            })
            .collect()
    }

    fn rel_error(a: &[f32], b: &[f32]) -> f32 {
        let num: f32 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum();
        let den: f32 = b.iter().map(|y| y * y).sum();
        (num / den).sqrt()
    }

    #[test]
    fn bf16_round_trips_its_own_values() {
        let (k, n) = (37, 70);
        let values: Vec<f32> = matrix(k, n).into_iter().map(|v| half::bf16::from_f32(v).to_f32()).collect();
        let packed = PackedMatrix::encode(PackedFormat::Bf16, &values, k, n).unwrap();
        assert_eq!(packed.tensor().dims(), [k, 2 * n]);
        let mut out = vec![0f32; k * n];
        packed.decode_into(&mut out);
        assert_eq!(out, values);
    }

    #[test]
    fn quantized_formats_stay_within_their_step() {
        let (k, n) = (50, 96);
        let values = matrix(k, n);
        // Largest error for a block whose largest magnitude is `amax`: Q8 rounds to half a step of
        // amax / 127; Q4 has steps of amax / 8 and, on the side opposite the extreme, clamps at 7
        // steps, so a value there can be off by a whole step.
        for (format, max_step_error, max_rel) in [(PackedFormat::Q8, 0.5 / 127.0, 0.01), (PackedFormat::Q4, 1.0 / 8.0, 0.15)] {
            let packed = PackedMatrix::encode(format, &values, k, n).unwrap();
            assert_eq!(packed.tensor().dims(), [k, format.row_bytes(n)]);
            let again = PackedMatrix::from_tensor(packed.tensor().clone(), n).unwrap();
            assert_eq!(again.format(), format);
            let mut out = vec![0f32; k * n];
            packed.decode_into(&mut out);
            // Every weight within its bound (plus the f16 scale's rounding).
            for (row, (got, want)) in out.chunks(n).zip(values.chunks(n)).enumerate() {
                for (b, (g, w)) in got.chunks(BLOCK).zip(want.chunks(BLOCK)).enumerate() {
                    let amax = w.iter().fold(0f32, |a, v| a.max(v.abs()));
                    for (g, w) in g.iter().zip(w) {
                        assert!((g - w).abs() <= amax * (max_step_error + 1e-3), "{format:?} row {row} block {b}: {g} vs {w}");
                    }
                }
            }
            let err = rel_error(&out, &values);
            assert!(err < max_rel && err > 0.0, "{format:?}: relative error {err}");
        }
        assert_eq!(PackedFormat::Q8.bits_per_weight(), 8.5);
        assert_eq!(PackedFormat::Q4.bits_per_weight(), 4.5);
    }

    #[test]
    fn an_all_zero_block_decodes_to_zeros() {
        let mut values = matrix(2, 64);
        values[..32].fill(0.0);
        for format in [PackedFormat::Q8, PackedFormat::Q4] {
            let packed = PackedMatrix::encode(format, &values, 2, 64).unwrap();
            let mut out = vec![1f32; 128];
            packed.decode_into(&mut out);
            assert!(out[..32].iter().all(|&v| v == 0.0), "{format:?}");
        }
    }

    #[test]
    fn the_product_is_the_f32_product_of_the_decoded_weights() {
        let (m, k, n) = (5, 300, 64);
        let x: Vec<f32> = (0..m * k).map(|i| ((i * 31 % 17) as f32 - 8.0) * 0.1).collect();
        for format in [PackedFormat::Bf16, PackedFormat::Q8, PackedFormat::Q4] {
            let packed = PackedMatrix::encode(format, &matrix(k, n), k, n).unwrap();
            let mut w = vec![0f32; k * n];
            packed.decode_into(&mut w);
            let got = packed.matmul(&x, m);
            for i in 0..m {
                for j in 0..n {
                    let want: f64 = (0..k).map(|p| x[i * k + p] as f64 * w[p * n + j] as f64).sum();
                    assert!((got[i * n + j] as f64 - want).abs() < 1e-4, "{format:?} ({i}, {j}): {} vs {want}", got[i * n + j]);
                }
            }
        }
        release_scratch();
    }

    #[test]
    fn shapes_that_do_not_fit_are_errors() {
        assert!(PackedMatrix::encode(PackedFormat::Q8, &matrix(2, 40), 2, 40).is_err());
        assert!(PackedMatrix::encode(PackedFormat::Bf16, &matrix(2, 40), 3, 40).is_err());
        let bytes = Tensor::zeros((2, 10), DType::U8, &Device::Cpu).unwrap();
        assert!(PackedMatrix::from_tensor(bytes, 64).is_err());
        let floats = Tensor::zeros((2, 128), DType::F32, &Device::Cpu).unwrap();
        assert!(PackedMatrix::from_tensor(floats, 64).is_err(), "only bytes are packed");
        assert!(PackedMatrix::encode(PackedFormat::Bf16, &matrix(2, 40), 2, 40).is_ok());
    }
}
