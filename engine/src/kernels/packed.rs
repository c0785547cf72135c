//! Linear-layer weights kept compact in memory: bf16, or 8- or 4-bit blocks.
//!
//! The CPU computes in f32, but holding every weight in f32 doubles the published bf16 files
//! (13.5 GiB for a turbo generation). A [`PackedMatrix`] keeps a `Linear`'s `(in, out)` = `(k, n)`
//! weight in a [`PackedFormat`] and multiplies by it in one of two ways:
//! - widened: the whole matrix is decoded into a per-thread f32 scratch on every core and the f32
//!   GEMM runs on it. Decoding reads each weight once and costs about a tenth of the product at
//!   the DiT's shapes (`docs/benchmarks.md`). Bf16 always runs this way, and so do the quantized
//!   formats on a CPU without AVX-512 VNNI.
//! - in integers (`kernels::int8`): the quantized formats on a CPU with AVX-512 VNNI multiply
//!   their blocks straight against activations quantized to 8 bits, with no f32 copy of the layer.
//!
//! Bf16 rows are `(k, 2n)` bytes, the layout the GEMM reads without re-packing (see
//! `checkpoint::widen`); the value is rounded to nearest even (exact for values that came from
//! bf16).
//!
//! The quantized formats cut each output's `k` weights into blocks of [`BLOCK`] consecutive
//! inputs, as ggml's Q8_0 and Q4_0 do, each block with an f16 scale `d`:
//! - [`PackedFormat::Q8`]: `q = round(w / d)` in `-127..=127`, `d = max|w| / 127`; 8.5 bits a weight.
//! - [`PackedFormat::Q4`]: ggml's Q4_0 rule: `d = m / -8` where `m` is the block's value of
//!   largest magnitude (sign kept), `q = clamp(round(w / d) + 8, 0, 15)`, decoded `(q - 8) · d`;
//!   4.5 bits a weight.
//!
//! They are stored in tiles of [`TILE`] outputs, the shape an AVX-512 dot-product instruction
//! takes: 16 lanes of 4 bytes, each lane 4 consecutive inputs of one output. A tile is its `k /
//! 32` blocks one after the other, and a block is 32 bytes of scales (the tile's 16 outputs' f16,
//! little-endian) followed by its values:
//! - Q8: 8 groups of 64 bytes, group `g` holding inputs `4g..4g+4` of each output (output `c`
//!   at bytes `4c..4c+4`), each `q + 128` (the unsigned operand of the instruction).
//! - Q4: 4 groups of 64 bytes laid out the same, the low nibble holding inputs `4g..4g+4` and
//!   the high nibble inputs `16+4g..16+4g+4`, each `q` (already unsigned).
//!
//! The matrix is the `(n / 16, k / 32 · block bytes)` U8 tensor of its tiles.

use std::cell::RefCell;

use candle_core::{CpuStorage, DType, Device, Result, Tensor};
use gemm::{gemm, Parallelism};
use half::f16;
use rayon::prelude::*;

use super::int8;

/// Inputs sharing one scale in the quantized formats.
pub const BLOCK: usize = 32;
/// Outputs stored side by side in the quantized formats.
pub const TILE: usize = 16;
/// Bytes of one block's scales in a tile.
const SCALE_BYTES: usize = 2 * TILE;

/// How a packed matrix stores its weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PackedFormat {
    Bf16,
    Q8,
    Q4,
}

impl PackedFormat {
    /// Bytes of the whole `(k, n)` matrix.
    pub fn bytes(self, k: usize, n: usize) -> usize {
        match self {
            Self::Bf16 => 2 * k * n,
            Self::Q8 | Self::Q4 => (n / TILE) * (k / BLOCK) * self.block_bytes(),
        }
    }

    /// Bytes of one block of one tile: its scales and `TILE x BLOCK` values.
    pub(crate) fn block_bytes(self) -> usize {
        match self {
            Self::Bf16 => 2 * TILE * BLOCK,
            Self::Q8 => SCALE_BYTES + TILE * BLOCK,
            Self::Q4 => SCALE_BYTES + TILE * BLOCK / 2,
        }
    }

    /// Whether a `(k, n)` matrix can be stored this way (the quantized ones are whole tiles of
    /// whole blocks).
    pub fn fits(self, k: usize, n: usize) -> bool {
        match self {
            Self::Bf16 => true,
            Self::Q8 | Self::Q4 => k > 0 && n > 0 && k % BLOCK == 0 && n % TILE == 0,
        }
    }

    /// Bits one weight takes, scales included.
    pub fn bits_per_weight(self) -> f64 {
        self.block_bytes() as f64 * 8.0 / (TILE * BLOCK) as f64
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Bf16 => "bf16",
            Self::Q8 => "q8",
            Self::Q4 => "q4",
        }
    }

    /// The tensor shape a `(k, n)` matrix is held in.
    fn shape(self, k: usize, n: usize) -> (usize, usize) {
        match self {
            Self::Bf16 => (k, 2 * n),
            Self::Q8 | Self::Q4 => (n / TILE, (k / BLOCK) * self.block_bytes()),
        }
    }
}

/// A `Linear` weight in a [`PackedFormat`]: `k` inputs, `n` outputs, held as a U8 CPU tensor so
/// that a checkpoint loader can hand it over like any weight. Its shape tells the format
/// ([`PackedMatrix::from_tensor`]).
#[derive(Debug, Clone)]
pub struct PackedMatrix {
    format: PackedFormat,
    k: usize,
    n: usize,
    data: Tensor,
}

impl PackedMatrix {
    /// Pack `values`, the `(in, out)` = `(k, n)` row-major matrix.
    pub fn encode(format: PackedFormat, values: &[f32], k: usize, n: usize) -> Result<Self> {
        check_shape(format, values, k, n)?;
        if format != PackedFormat::Bf16 {
            let transposed: Vec<f32> = (0..n * k).map(|i| values[(i % k) * n + i / k]).collect();
            return Self::quantize_out_in(format, &transposed, k, n);
        }
        let data = fill_rows(format.shape(k, n), |row, out| encode_bf16_row(&values[row * n..(row + 1) * n], out))?;
        Ok(Self { format, k, n, data })
    }

    /// Quantize `values`, the `(out, in)` = `(n, k)` row-major matrix (a Linear weight as
    /// stored, whose rows are whole blocks), to Q8 or Q4.
    pub fn quantize_out_in(format: PackedFormat, values: &[f32], k: usize, n: usize) -> Result<Self> {
        check_shape(format, values, k, n)?;
        if format == PackedFormat::Bf16 {
            candle_core::bail!("bf16 is packed from the (in, out) matrix");
        }
        let data = fill_rows(format.shape(k, n), |tile, out| quantize_tile(format, &values[tile * TILE * k..(tile + 1) * TILE * k], k, out))?;
        Ok(Self { format, k, n, data })
    }

    /// The `(k, n)` matrix held by `data` (as [`PackedMatrix::tensor`] gives it).
    pub fn from_tensor(data: Tensor, k: usize, n: usize) -> Result<Self> {
        let dims = data.dims().to_vec();
        let format = [PackedFormat::Bf16, PackedFormat::Q8, PackedFormat::Q4]
            .into_iter()
            .find(|f| data.dtype() == DType::U8 && f.fits(k, n) && dims == [f.shape(k, n).0, f.shape(k, n).1]);
        let Some(format) = format else {
            candle_core::bail!("a {dims:?} {:?} tensor is not a packed {k}x{n} matrix", data.dtype())
        };
        if !data.device().is_cpu() || !data.is_contiguous() {
            candle_core::bail!("a packed matrix lives in contiguous CPU memory");
        }
        Ok(Self { format, k, n, data })
    }

    /// The tensor holding the packed weights.
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

    /// The packed weights as bytes, borrowed from the tensor's storage.
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
        if self.n == 0 || self.k == 0 {
            return;
        }
        let (k, n, format) = (self.k, self.n, self.format);
        self.with_bytes(|bytes| match format {
            PackedFormat::Bf16 => {
                // About 64 K weights a task: enough to amortise the task, small enough to balance.
                let rows_per_task = (65_536 / n).max(1);
                out.par_chunks_mut(rows_per_task * n).zip(bytes.par_chunks(rows_per_task * 2 * n)).for_each(|(out, bytes)| decode_bf16(bytes, out));
            }
            // One task per block of inputs: `BLOCK` whole rows of the output, read from every tile.
            PackedFormat::Q8 | PackedFormat::Q4 => out.par_chunks_mut(BLOCK * n).enumerate().for_each(|(block, out)| decode_block_rows(format, bytes, k, n, block, out)),
        });
    }

    /// `x · W` for `x` of `m` rows of `k` (row-major), as `m` rows of `n`: in integers where the
    /// CPU can (quantized formats, AVX-512 VNNI), else widened.
    pub fn matmul(&self, x: &[f32], m: usize) -> Vec<f32> {
        match self.format {
            PackedFormat::Q8 | PackedFormat::Q4 if int8::available() => self.matmul_int8(x, m),
            _ => self.matmul_widened(x, m),
        }
    }

    /// [`PackedMatrix::matmul`] with activations quantized to 8 bits and integer dot products.
    /// Panics on a CPU without AVX-512 VNNI ([`int8::cpu_supports`]) or for bf16.
    pub fn matmul_int8(&self, x: &[f32], m: usize) -> Vec<f32> {
        assert_eq!(x.len(), m * self.k, "matmul: x is not {m}x{}", self.k);
        let mut out = vec![0f32; m * self.n];
        if m > 0 {
            self.with_bytes(|tiles| int8::product(self.format, tiles, self.k, self.n, x, m, &mut out));
        }
        out
    }

    /// [`PackedMatrix::matmul`] by decoding the weights to f32 and running the f32 GEMM.
    pub fn matmul_widened(&self, x: &[f32], m: usize) -> Vec<f32> {
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

/// Free this thread's scratch (the largest layer's f32 copy, the quantized activations), e.g.
/// when a job ends.
pub fn release_scratch() {
    SCRATCH.with(|s| *s.borrow_mut() = Vec::new());
    int8::release_scratch();
}

fn check_shape(format: PackedFormat, values: &[f32], k: usize, n: usize) -> Result<()> {
    if values.len() != k * n {
        candle_core::bail!("packing a {k}x{n} matrix from {} values", values.len());
    }
    if !format.fits(k, n) {
        candle_core::bail!("a {k}x{n} matrix cannot be stored as {} (tiles of {TILE} outputs, blocks of {BLOCK} inputs)", format.name());
    }
    Ok(())
}

/// A `(rows, cols)` U8 tensor whose rows `fill(row, bytes)` writes (from zeros), on every core
/// into fresh memory.
fn fill_rows((rows, cols): (usize, usize), fill: impl Fn(usize, &mut [u8]) + Sync) -> Result<Tensor> {
    // Chunks of whole rows, about 64 KiB each.
    let rows_per_chunk = (65_536 / cols.max(1)).max(1);
    let bytes = crate::alloc::fill_fresh::<u8>(rows * cols, rows_per_chunk * cols, |start, out| {
        for byte in out.iter_mut() {
            byte.write(0);
        }
        // Safety: every byte of `out` was just initialised.
        let out = unsafe { &mut *(out as *mut [std::mem::MaybeUninit<u8>] as *mut [u8]) };
        for (i, row) in out.chunks_exact_mut(cols).enumerate() {
            fill(start / cols + i, row);
        }
    });
    Tensor::from_vec(bytes, (rows, cols), &Device::Cpu)
}

fn encode_bf16_row(src: &[f32], row: &mut [u8]) {
    for (b, &v) in row.as_chunks_mut::<2>().0.iter_mut().zip(src) {
        *b = half::bf16::from_f32(v).to_le_bytes();
    }
}

/// Quantize one tile: `rows`, its 16 outputs' `k` weights each, into `out`, with the widest
/// vector instructions the CPU has (as [`decode_block_rows`]).
fn quantize_tile(format: PackedFormat, rows: &[f32], k: usize, out: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("f16c") {
        // Safety: the CPU has the features the function is compiled for.
        return unsafe { quantize_tile_avx2(format, rows, k, out) };
    }
    quantize_tile_generic(format, rows, k, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c,fma")]
fn quantize_tile_avx2(format: PackedFormat, rows: &[f32], k: usize, out: &mut [u8]) {
    quantize_tile_generic(format, rows, k, out)
}

#[inline(always)]
fn quantize_tile_generic(format: PackedFormat, rows: &[f32], k: usize, out: &mut [u8]) {
    for (block, out) in out.chunks_exact_mut(format.block_bytes()).enumerate() {
        let (scales, quants) = out.split_at_mut(SCALE_BYTES);
        for c in 0..TILE {
            let w: &[f32; BLOCK] = rows[c * k + block * BLOCK..][..BLOCK].try_into().expect("a whole block");
            let (d, q) = quantize_block(format, w);
            scales[2 * c..2 * c + 2].copy_from_slice(&d.to_le_bytes());
            for (i, q) in q.into_iter().enumerate() {
                let (byte, shift) = value_position(format, c, i);
                quants[byte] |= q << shift;
            }
        }
    }
}

/// A block's scale and its stored values (`q + 128` for Q8, `q` for Q4).
#[inline(always)]
fn quantize_block(format: PackedFormat, w: &[f32; BLOCK]) -> (f16, [u8; BLOCK]) {
    // The largest magnitude, in 8 lanes so that it compiles to vector code.
    let mut lanes = [0f32; 8];
    for (i, v) in w.iter().enumerate() {
        lanes[i % 8] = lanes[i % 8].max(v.abs());
    }
    let amax = lanes.iter().fold(0f32, |a, &v| a.max(v));
    // The stored value is `round(w / d) + offset`, clamped to `low..=high`: Q8's q in -127..=127
    // plus 128, Q4's in -8..=7 plus 8.
    let (d, offset, low, high) = match format {
        PackedFormat::Q8 => (amax / 127.0, 128.0, 1.0, 255.0),
        // ggml's Q4_0: the first value of largest magnitude, sign kept, is -8 steps.
        _ => (w.iter().copied().find(|v| v.abs() == amax).unwrap_or(0.0) / -8.0, 8.0, 0.0, 15.0),
    };
    let d = f16::from_f32(d);
    let inv = if d.to_f32() == 0.0 { 0.0 } else { 1.0 / d.to_f32() };
    (d, w.map(|v| ((v * inv).round() + offset).clamp(low, high) as u8))
}

/// Where input `i` of a block's output `c` is stored among the block's values: (byte, bit shift).
#[inline(always)]
fn value_position(format: PackedFormat, c: usize, i: usize) -> (usize, u32) {
    match format {
        PackedFormat::Q4 => {
            let (half, i) = (i / 16, i % 16);
            ((i / 4) * 64 + 4 * c + i % 4, 4 * half as u32)
        }
        _ => ((i / 4) * 64 + 4 * c + i % 4, 0),
    }
}

/// Decode bf16 rows, with the widest vector instructions the CPU has.
fn decode_bf16(bytes: &[u8], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // Safety: the CPU has the features the function is compiled for.
        return unsafe { decode_bf16_avx2(bytes, out) };
    }
    decode_bf16_generic(bytes, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn decode_bf16_avx2(bytes: &[u8], out: &mut [f32]) {
    decode_bf16_generic(bytes, out)
}

#[inline(always)]
fn decode_bf16_generic(bytes: &[u8], out: &mut [f32]) {
    for (d, b) in out.iter_mut().zip(bytes.as_chunks::<2>().0) {
        *d = f32::from_bits((u16::from_le_bytes(*b) as u32) << 16);
    }
}

/// Decode block `block` of every tile: output rows `32·block..32·block+32`, into `out`. The
/// generic x86-64 baseline has no f16 conversion; with AVX2 and F16C the compiler vectorises it.
fn decode_block_rows(format: PackedFormat, bytes: &[u8], k: usize, n: usize, block: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("f16c") {
        // Safety: the CPU has the features the function is compiled for.
        return unsafe { decode_block_rows_avx2(format, bytes, k, n, block, out) };
    }
    decode_block_rows_generic(format, bytes, k, n, block, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c,fma")]
fn decode_block_rows_avx2(format: PackedFormat, bytes: &[u8], k: usize, n: usize, block: usize, out: &mut [f32]) {
    decode_block_rows_generic(format, bytes, k, n, block, out)
}

#[inline(always)]
fn decode_block_rows_generic(format: PackedFormat, bytes: &[u8], k: usize, n: usize, block: usize, out: &mut [f32]) {
    let block_bytes = format.block_bytes();
    let tile_bytes = (k / BLOCK) * block_bytes;
    for tile in 0..n / TILE {
        let at = tile * tile_bytes + block * block_bytes;
        let (scales, quants) = bytes[at..at + block_bytes].split_at(SCALE_BYTES);
        let d: [f32; TILE] = std::array::from_fn(|c| f16::from_le_bytes([scales[2 * c], scales[2 * c + 1]]).to_f32());
        for i in 0..BLOCK {
            let row = &mut out[i * n + tile * TILE..i * n + (tile + 1) * TILE];
            for c in 0..TILE {
                let (byte, shift) = value_position(format, c, i);
                let q = match format {
                    PackedFormat::Q4 => ((quants[byte] >> shift) & 15) as f32 - 8.0,
                    _ => quants[byte] as f32 - 128.0,
                };
                row[c] = q * d[c];
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
        let (k, n) = (96, 48);
        let values = matrix(k, n);
        // Largest error for a block whose largest magnitude is `amax`: Q8 rounds to half a step of
        // amax / 127; Q4 has steps of amax / 8 and, on the side opposite the extreme, clamps at 7
        // steps, so a value there can be off by a whole step.
        for (format, max_step_error, max_rel) in [(PackedFormat::Q8, 0.5 / 127.0, 0.01), (PackedFormat::Q4, 1.0 / 8.0, 0.15)] {
            let packed = PackedMatrix::encode(format, &values, k, n).unwrap();
            assert_eq!(packed.tensor().elem_count(), format.bytes(k, n));
            let again = PackedMatrix::from_tensor(packed.tensor().clone(), k, n).unwrap();
            assert_eq!(again.format(), format);
            let mut out = vec![0f32; k * n];
            packed.decode_into(&mut out);
            // Every weight within its bound (plus the f16 scale's rounding), blocks running along
            // the input axis.
            for column in 0..n {
                for block in 0..k / BLOCK {
                    let at = |i: usize| (block * BLOCK + i) * n + column;
                    let amax = (0..BLOCK).fold(0f32, |a, i| a.max(values[at(i)].abs()));
                    for i in 0..BLOCK {
                        let (g, w) = (out[at(i)], values[at(i)]);
                        assert!((g - w).abs() <= amax * (max_step_error + 1e-3), "{format:?} column {column} block {block}: {g} vs {w}");
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
        let (k, n) = (64, 16);
        let mut values = matrix(k, n);
        // The first block of every output.
        values[..BLOCK * n].fill(0.0);
        for format in [PackedFormat::Q8, PackedFormat::Q4] {
            let packed = PackedMatrix::encode(format, &values, k, n).unwrap();
            let mut out = vec![1f32; k * n];
            packed.decode_into(&mut out);
            assert!(out[..BLOCK * n].iter().all(|&v| v == 0.0), "{format:?}");
            assert!(out[BLOCK * n..].iter().any(|&v| v != 0.0), "{format:?}");
        }
    }

    #[test]
    fn the_widened_product_is_the_f32_product_of_the_decoded_weights() {
        let (m, k, n) = (5, 320, 64);
        let x: Vec<f32> = (0..m * k).map(|i| ((i * 31 % 17) as f32 - 8.0) * 0.1).collect();
        for format in [PackedFormat::Bf16, PackedFormat::Q8, PackedFormat::Q4] {
            let packed = PackedMatrix::encode(format, &matrix(k, n), k, n).unwrap();
            let mut w = vec![0f32; k * n];
            packed.decode_into(&mut w);
            let got = packed.matmul_widened(&x, m);
            for i in 0..m {
                for j in 0..n {
                    let want: f64 = (0..k).map(|p| x[i * k + p] as f64 * w[p * n + j] as f64).sum();
                    assert!((got[i * n + j] as f64 - want).abs() < 1e-4, "{format:?} ({i}, {j}): {} vs {want}", got[i * n + j]);
                }
            }
        }
        release_scratch();
    }

    /// The integer product against the same sum in f64 over the quantized activations (the
    /// reference rule) and the decoded weights, on every row count a strip can have and an odd
    /// tile count; and against the f32 product within the activations' rounding.
    #[test]
    fn the_integer_product_sums_quantized_activations_times_the_decoded_weights() {
        if !int8::cpu_supports() {
            eprintln!("skipped: this CPU has no AVX-512 VNNI (the widened product runs instead)");
            return;
        }
        let (k, n) = (160, 48);
        for m in [1, 5, 6, 13] {
            let x: Vec<f32> = (0..m * k).map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.07 + if i % 41 == 0 { 3.0 } else { 0.0 }).collect();
            let mut acts = int8::QuantizedRows::default();
            acts.values.resize(m * k, 0);
            acts.scales.resize(m * k / BLOCK, 0.0);
            acts.sums.resize(m * k / BLOCK, 0);
            int8::quantize_blocks_scalar(&x, &mut acts.values, &mut acts.scales, &mut acts.sums);
            let mut vector = int8::QuantizedRows::default();
            vector.quantize(&x, m, k);
            assert_eq!((&vector.values, &vector.scales, &vector.sums), (&acts.values, &acts.scales, &acts.sums), "vector and scalar quantization");
            for format in [PackedFormat::Q8, PackedFormat::Q4] {
                let packed = PackedMatrix::encode(format, &matrix(k, n), k, n).unwrap();
                let mut w = vec![0f32; k * n];
                packed.decode_into(&mut w);
                let got = packed.matmul_int8(&x, m);
                let widened = packed.matmul_widened(&x, m);
                for i in 0..m {
                    for j in 0..n {
                        let want: f64 = (0..k)
                            .map(|p| acts.values[i * k + p] as f64 * acts.scales[(i * k + p) / BLOCK] as f64 * w[p * n + j] as f64)
                            .sum();
                        let scale: f64 = (0..k).map(|p| (x[i * k + p] as f64 * w[p * n + j] as f64).abs()).sum();
                        assert!((got[i * n + j] as f64 - want).abs() <= 1e-5 * scale, "{format:?} m {m} ({i}, {j}): {} vs {want}", got[i * n + j]);
                    }
                }
                let err = rel_error(&got, &widened);
                assert!(err < 0.01 && err > 0.0, "{format:?} m {m}: {err} from the f32 product");
                assert_eq!(packed.matmul(&x, m), got, "{format:?}: the integer product is the one used");
            }
        }
        release_scratch();
    }

    #[test]
    fn shapes_that_do_not_fit_are_errors() {
        assert!(PackedMatrix::encode(PackedFormat::Q8, &matrix(32, 40), 32, 40).is_err(), "40 outputs are not whole tiles");
        assert!(PackedMatrix::encode(PackedFormat::Q4, &matrix(40, 32), 40, 32).is_err(), "40 inputs are not whole blocks");
        assert!(PackedMatrix::encode(PackedFormat::Bf16, &matrix(2, 40), 3, 40).is_err());
        let bytes = Tensor::zeros((2, 10), DType::U8, &Device::Cpu).unwrap();
        assert!(PackedMatrix::from_tensor(bytes, 64, 64).is_err());
        let floats = Tensor::zeros((2, 128), DType::F32, &Device::Cpu).unwrap();
        assert!(PackedMatrix::from_tensor(floats, 2, 64).is_err(), "only bytes are packed");
        let q8 = PackedMatrix::encode(PackedFormat::Q8, &matrix(64, 32), 64, 32).unwrap();
        assert!(PackedMatrix::from_tensor(q8.tensor().clone(), 32, 64).is_err(), "a 64x32 matrix read as 32x64");
        assert!(PackedMatrix::encode(PackedFormat::Bf16, &matrix(2, 40), 2, 40).is_ok());
    }
}
