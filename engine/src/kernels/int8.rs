//! Products of f32 activations with quantized weights (`kernels::packed`) in integer arithmetic,
//! on CPUs with AVX-512 VNNI.
//!
//! The activations are quantized as ggml quantizes them for its Q8_0 products: each row in
//! blocks of [`BLOCK`] inputs, `dx = max|x| / 127`, `qx = round(x / dx)` (ties to even). For one
//! block of one output, `Σ x·w ≈ dx · dw · Σ qx·q`. `vpdpbusd` sums four products of an unsigned
//! byte and a signed byte into each of 16 lanes, so the weights are its unsigned operand as
//! stored (`q + o`: o = 128 for Q8, 8 for Q4) and the block's integer sum starts at
//! `-o · Σ qx` to take the offset back out. Each block's sum is then scaled and added to an f32
//! accumulator.
//!
//! Work is split by pairs of tiles (32 outputs), each taken through every row in strips of up
//! to [`STRIP`] rows: a pair's weights (about 70 KB for k = 2048) stay in the core's cache while
//! all rows pass over them, and a strip's 2 x 6 accumulators and their integer sums fill the
//! 32 vector registers without spilling.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use rayon::prelude::*;

use super::packed::{PackedFormat, BLOCK, TILE};

/// Rows one call of the inner kernel takes.
const STRIP: usize = 6;
/// Tiles one task takes.
const TILES_PER_TASK: usize = 2;

/// Whether the integer product runs: the CPU has AVX-512 F, BW and VNNI, and it was not turned
/// off ([`allow`]).
pub fn available() -> bool {
    cpu_supports() && ALLOWED.load(Ordering::Relaxed)
}

/// Turn the integer product off (or back on) for this process, so that the quantized formats run
/// widened: for measuring one against the other.
pub fn allow(allowed: bool) {
    ALLOWED.store(allowed, Ordering::Relaxed);
}

static ALLOWED: AtomicBool = AtomicBool::new(true);

/// Whether this CPU has AVX-512 F, BW and VNNI.
pub fn cpu_supports() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512bw") && std::arch::is_x86_feature_detected!("avx512vnni")
        }
        #[cfg(not(target_arch = "x86_64"))]
        false
    })
}

/// Activation rows quantized per block: `m x k` values, and `m x k/32` scales and sums.
#[derive(Default)]
pub struct QuantizedRows {
    pub values: Vec<i8>,
    pub scales: Vec<f32>,
    pub sums: Vec<i32>,
}

impl QuantizedRows {
    /// Quantize the `m x k` row-major `x` (k a multiple of [`BLOCK`]), reusing this buffer.
    pub fn quantize(&mut self, x: &[f32], m: usize, k: usize) {
        assert!(k % BLOCK == 0 && x.len() == m * k, "quantize: x is not {m}x{k} with whole blocks");
        let blocks = k / BLOCK;
        self.values.resize(m * k, 0);
        self.scales.resize(m * blocks, 0.0);
        self.sums.resize(m * blocks, 0);
        // Rows in tasks of about 64 K values.
        let rows = (65_536 / k.max(1)).max(1);
        self.values
            .par_chunks_mut(rows * k)
            .zip(self.scales.par_chunks_mut(rows * blocks))
            .zip(self.sums.par_chunks_mut(rows * blocks))
            .zip(x.par_chunks(rows * k))
            .for_each(|(((q, d), s), x)| quantize_blocks(x, q, d, s));
    }
}

/// Quantize whole blocks of `x` into `q`, with each block's scale and sum.
fn quantize_blocks(x: &[f32], q: &mut [i8], d: &mut [f32], s: &mut [i32]) {
    #[cfg(target_arch = "x86_64")]
    if cpu_supports() {
        // Safety: the CPU has the features the function is compiled for.
        return unsafe { avx512::quantize_blocks(x, q, d, s) };
    }
    quantize_blocks_scalar(x, q, d, s)
}

/// The reference rule; the vector version gives the same bytes.
pub fn quantize_blocks_scalar(x: &[f32], q: &mut [i8], d: &mut [f32], s: &mut [i32]) {
    for (((x, q), d), s) in x.chunks_exact(BLOCK).zip(q.chunks_exact_mut(BLOCK)).zip(d.iter_mut()).zip(s.iter_mut()) {
        let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
        *d = amax / 127.0;
        let inv = if *d > 0.0 { 1.0 / *d } else { 0.0 };
        let mut sum = 0;
        for (q, &x) in q.iter_mut().zip(x) {
            *q = (x * inv).round_ties_even().clamp(-127.0, 127.0) as i8;
            sum += *q as i32;
        }
        *s = sum;
    }
}

thread_local! {
    /// The quantized activations of the product being run, one per thread that runs models.
    static ACTIVATIONS: RefCell<QuantizedRows> = RefCell::new(QuantizedRows::default());
}

/// Free this thread's quantized activations.
pub fn release_scratch() {
    ACTIVATIONS.with(|a| {
        if let Ok(mut a) = a.try_borrow_mut() {
            *a = QuantizedRows::default();
        }
    });
}

/// `out = x · W` for the quantized (Q8 or Q4) `(k, n)` matrix whose tiles are `tiles`, `x` being
/// `m x k` and `out` `m x n`, row-major. Panics without [`cpu_supports`].
pub fn product(format: PackedFormat, tiles: &[u8], k: usize, n: usize, x: &[f32], m: usize, out: &mut [f32]) {
    assert!(cpu_supports(), "the integer product needs AVX-512 VNNI");
    assert!(format != PackedFormat::Bf16, "bf16 is multiplied widened");
    let q4 = format == PackedFormat::Q4;
    assert!(format.fits(k, n) && tiles.len() == format.bytes(k, n), "product: tiles are not a {k}x{n} {} matrix", format.name());
    assert!(x.len() == m * k && out.len() == m * n, "product: x or out is not {m} rows");
    ACTIVATIONS.with(|scratch| {
        // A product started on this thread while another waits here (a rayon worker stealing
        // work) gets a buffer of its own.
        let mut own = QuantizedRows::default();
        let mut borrowed = scratch.try_borrow_mut();
        let acts = match borrowed.as_deref_mut() {
            Ok(acts) => acts,
            Err(_) => &mut own,
        };
        acts.quantize(x, m, k);
        let acts = &*acts;
        let tile_bytes = (k / BLOCK) * format.block_bytes();
        let tiles_total = n / TILE;
        let out = SharedOut(out.as_mut_ptr());
        (0..tiles_total.div_ceil(TILES_PER_TASK)).into_par_iter().for_each(|task| {
            let first = task * TILES_PER_TASK;
            let count = TILES_PER_TASK.min(tiles_total - first);
            let job = Columns { tiles: &tiles[first * tile_bytes..(first + count) * tile_bytes], tile_bytes, blocks: k / BLOCK, k, n, col0: first * TILE };
            // Safety: the CPU has AVX-512 VNNI (asserted above); each task writes only its own
            // columns of `out`, whose bounds were checked above.
            #[cfg(target_arch = "x86_64")]
            unsafe {
                avx512::columns(q4, count, &job, acts, m, out.get())
            };
            #[cfg(not(target_arch = "x86_64"))]
            let _ = (job, &out);
        });
    });
}

/// A raw pointer to the output that tasks writing disjoint columns share.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// Safety: tasks write disjoint elements through it (see `product`).
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    // A method, not the field: a closure naming `out.0` would capture the bare pointer.
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// One task's share: up to [`TILES_PER_TASK`] consecutive tiles, starting at output `col0`.
struct Columns<'a> {
    tiles: &'a [u8],
    tile_bytes: usize,
    blocks: usize,
    k: usize,
    n: usize,
    col0: usize,
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{Columns, QuantizedRows, BLOCK, STRIP};
    use crate::kernels::packed::PackedFormat;

    /// [`super::quantize_blocks_scalar`], 32 values at a time.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn quantize_blocks(x: &[f32], q: &mut [i8], d: &mut [f32], s: &mut [i32]) {
        let blocks = x.len() / BLOCK;
        assert!(q.len() >= blocks * BLOCK && d.len() >= blocks && s.len() >= blocks);
        for b in 0..blocks {
            // Safety: block `b` is within `x` and `q` (asserted above).
            unsafe {
                let v0 = _mm512_loadu_ps(x.as_ptr().add(b * BLOCK));
                let v1 = _mm512_loadu_ps(x.as_ptr().add(b * BLOCK + 16));
                let amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
                let scale = amax / 127.0;
                let inv = _mm512_set1_ps(if scale > 0.0 { 1.0 / scale } else { 0.0 });
                // Rounds to nearest even (the default rounding mode); |x / d| <= 127 but for
                // rounding, and the saturating narrowing clamps at ±127 like the scalar rule.
                let i0 = _mm512_max_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(v0, inv)), _mm512_set1_epi32(-127));
                let i1 = _mm512_max_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(v1, inv)), _mm512_set1_epi32(-127));
                _mm_storeu_si128(q.as_mut_ptr().add(b * BLOCK) as *mut __m128i, _mm512_cvtsepi32_epi8(i0));
                _mm_storeu_si128(q.as_mut_ptr().add(b * BLOCK + 16) as *mut __m128i, _mm512_cvtsepi32_epi8(i1));
                *d.get_unchecked_mut(b) = scale;
                *s.get_unchecked_mut(b) = _mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1));
            }
        }
    }

    /// Every row of `m` through the task's tiles (1 or 2), writing `out` (`m x n`).
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn columns(q4: bool, tiles: usize, job: &Columns, acts: &QuantizedRows, m: usize, out: *mut f32) {
        let mut row = 0;
        while row < m {
            let rows = STRIP.min(m - row);
            // Safety: as the caller's; `rows` rows from `row` are within `m`.
            unsafe {
                match (q4, tiles) {
                    (false, 1) => strip_dispatch::<1, false>(rows, job, acts, row, out),
                    (false, _) => strip_dispatch::<2, false>(rows, job, acts, row, out),
                    (true, 1) => strip_dispatch::<1, true>(rows, job, acts, row, out),
                    (true, _) => strip_dispatch::<2, true>(rows, job, acts, row, out),
                }
            }
            row += rows;
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn strip_dispatch<const T: usize, const Q4: bool>(rows: usize, job: &Columns, acts: &QuantizedRows, row0: usize, out: *mut f32) {
        // Safety: as the caller's.
        unsafe {
            match rows {
                1 => strip::<1, T, Q4>(job, acts, row0, out),
                2 => strip::<2, T, Q4>(job, acts, row0, out),
                3 => strip::<3, T, Q4>(job, acts, row0, out),
                4 => strip::<4, T, Q4>(job, acts, row0, out),
                5 => strip::<5, T, Q4>(job, acts, row0, out),
                _ => strip::<6, T, Q4>(job, acts, row0, out),
            }
        }
    }

    /// Four bytes of activations, the same in every lane.
    #[inline(always)]
    unsafe fn broadcast4(p: *const i8) -> __m512i {
        // Safety: the caller's `p` has 4 readable bytes.
        unsafe { _mm512_set1_epi32(std::ptr::read_unaligned(p as *const i32)) }
    }

    /// Rows `row0..row0+R` against `T` tiles: `R x 16T` outputs of `out`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn strip<const R: usize, const T: usize, const Q4: bool>(job: &Columns, acts: &QuantizedRows, row0: usize, out: *mut f32) {
        let format = if Q4 { PackedFormat::Q4 } else { PackedFormat::Q8 };
        let block_bytes = format.block_bytes();
        let offset: i32 = if Q4 { 8 } else { 128 };
        let (k, blocks) = (job.k, job.blocks);
        // Safety (for the whole body): the rows and blocks read are within `acts` (m x k
        // quantized, with `m >= row0 + R`), the tiles' bytes within `job.tiles` (T tiles of
        // `blocks` blocks), and the outputs written within `out`'s rows `row0..row0+R`, columns
        // `col0..col0+16T`, as `product` checked.
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); T]; R];
            let mut rows_q = [std::ptr::null::<i8>(); R];
            for r in 0..R {
                rows_q[r] = acts.values.as_ptr().add((row0 + r) * k);
            }
            for b in 0..blocks {
                let mut sum = [[_mm512_setzero_si512(); T]; R];
                for r in 0..R {
                    let start = _mm512_set1_epi32(-offset * *acts.sums.get_unchecked((row0 + r) * blocks + b));
                    for t in 0..T {
                        sum[r][t] = start;
                    }
                }
                let mut tile = [std::ptr::null::<u8>(); T];
                for t in 0..T {
                    tile[t] = job.tiles.as_ptr().add(t * job.tile_bytes + b * block_bytes);
                }
                let x = b * BLOCK;
                if Q4 {
                    let low_nibbles = _mm512_set1_epi8(0x0F);
                    for g in 0..4 {
                        let mut lo = [_mm512_setzero_si512(); T];
                        let mut hi = [_mm512_setzero_si512(); T];
                        for t in 0..T {
                            let v = _mm512_loadu_si512(tile[t].add(32 + 64 * g) as *const _);
                            lo[t] = _mm512_and_si512(v, low_nibbles);
                            hi[t] = _mm512_and_si512(_mm512_srli_epi16::<4>(v), low_nibbles);
                        }
                        for r in 0..R {
                            let a_lo = broadcast4(rows_q[r].add(x + 4 * g));
                            let a_hi = broadcast4(rows_q[r].add(x + 16 + 4 * g));
                            for t in 0..T {
                                sum[r][t] = _mm512_dpbusd_epi32(sum[r][t], lo[t], a_lo);
                                sum[r][t] = _mm512_dpbusd_epi32(sum[r][t], hi[t], a_hi);
                            }
                        }
                    }
                } else {
                    for g in 0..8 {
                        let mut w = [_mm512_setzero_si512(); T];
                        for t in 0..T {
                            w[t] = _mm512_loadu_si512(tile[t].add(32 + 64 * g) as *const _);
                        }
                        for r in 0..R {
                            let a = broadcast4(rows_q[r].add(x + 4 * g));
                            for t in 0..T {
                                sum[r][t] = _mm512_dpbusd_epi32(sum[r][t], w[t], a);
                            }
                        }
                    }
                }
                let mut dw = [_mm512_setzero_ps(); T];
                for t in 0..T {
                    dw[t] = _mm512_cvtph_ps(_mm256_loadu_si256(tile[t] as *const __m256i));
                }
                for r in 0..R {
                    let dx = _mm512_set1_ps(*acts.scales.get_unchecked((row0 + r) * blocks + b));
                    for t in 0..T {
                        acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum[r][t]), _mm512_mul_ps(dw[t], dx), acc[r][t]);
                    }
                }
            }
            for r in 0..R {
                for t in 0..T {
                    _mm512_storeu_ps(out.add((row0 + r) * job.n + job.col0 + 16 * t), acc[r][t]);
                }
            }
        }
    }
}
