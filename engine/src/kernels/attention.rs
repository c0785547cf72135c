//! Scaled dot-product attention, `softmax(q·kᵀ·scale + mask)·v`, with grouped-query heads.
//!
//! On the CPU in f32 it runs as one blocked kernel: each task takes one head and a block of query
//! rows, computes their scores against just the keys the mask lets them see (a causal block stops
//! at its last row, a window block spans its rows ± the window), applies the softmax in place
//! while the block is in cache, multiplies by the values and writes its rows straight into the
//! (B, L, heads·D) output. Op by op (candle's matmul, scale, mask add, softmax, matmul, then a
//! transpose copy) each step wrote the whole (B, heads, L, S) score tensor, the key/value heads
//! were copied once per query head, and masked scores were computed only to be thrown away: the
//! text encoder's attention took 12 ms a layer that way, 3 ms this way.
//!
//! candle-nn 0.11's own `flash_attn` CPU kernel is not used: it refuses a batch above 1 with an
//! explicit mask, and the encoders need batched key-padding masks and windows.
//!
//! Other devices and dtypes take the op-by-op path, with the mask built as upstream builds it
//! (additive, `f32::MIN` where a key is hidden). Skipping hidden keys gives the same result:
//! upstream's `exp(score + f32::MIN - max)` is exactly 0.

use candle_core::{DType, Result, Tensor};
use gemm::{gemm, Parallelism};
use rayon::prelude::*;

use super::cpu_f32::CpuF32;
use candle_core::Device;

/// The value upstream fills masked attention scores with (`torch.finfo(float32).min`).
pub const MASKED: f32 = f32::MIN;

/// Additive bidirectional attention mask, (B, 1, L, L): query i may see key j when
/// `|i - j| <= window` (if a window is given) and key j is not padding (`key_padding[b, j] != 0`).
pub fn bidirectional_mask(
    batch: usize,
    len: usize,
    window: Option<usize>,
    key_padding: Option<&Tensor>,
    device: &Device,
) -> Result<Tensor> {
    let keep_key: Vec<Vec<f32>> = match key_padding {
        Some(mask) => mask.to_dtype(DType::F32)?.to_vec2()?,
        None => vec![vec![1.0; len]; batch],
    };
    let mut values = Vec::with_capacity(batch * len * len);
    for keys in &keep_key {
        for i in 0..len {
            for (j, keep) in keys.iter().enumerate() {
                let in_window = window.is_none_or(|w| i.abs_diff(j) <= w);
                values.push(if in_window && *keep != 0.0 { 0.0 } else { MASKED });
            }
        }
    }
    Tensor::from_vec(values, (batch, 1, len, len), device)
}

/// Additive causal mask, (1, 1, L, L): query i sees keys 0..=i.
pub fn causal_mask(len: usize, device: &Device) -> Result<Tensor> {
    let values: Vec<f32> = (0..len).flat_map(|i| (0..len).map(move |j| if j <= i { 0.0 } else { MASKED })).collect();
    Tensor::from_vec(values, (1, 1, len, len), device)
}

/// Which keys each query may see.
#[derive(Debug, Clone, Copy)]
pub enum Mask<'a> {
    /// Every key.
    None,
    /// Keys `0..=i` for query `i` (self-attention).
    Causal,
    /// Keys `j` with `|i - j| <= window` (self-attention).
    Window(usize),
    /// An additive mask (1 or B, 1, L, S): 0 keeps a key, `f32::MIN` hides it. Used where keys
    /// can be padding; a row that hides every key averages over all of them, as upstream does.
    Additive(&'a Tensor),
}

/// Query rows per task: a block's scores (rows x keys) stay in L2, and a 256-token prompt with
/// 16 heads still makes 64 tasks for the cores.
const QUERY_BLOCK: usize = 64;

/// `q` (B, H, L, D), `k` and `v` (B, KV, S, D) with H a multiple of KV (query head `h` reads
/// key/value head `h / (H / KV)`): the attention output (B, L, H·D).
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64, mask: Mask) -> Result<Tensor> {
    attention_over_prefix(q, k, v, k.dim(2)?, scale, mask)
}

/// [`attention`] over only the first `keys` positions of `k` and `v` (B, KV, capacity, D): a key
/// and value cache that is filled up to `keys`. On the CPU in f32 the kernel reads the cache where
/// it lies, so a decoder step costs no copy of everything cached so far.
pub fn attention_over_prefix(q: &Tensor, k: &Tensor, v: &Tensor, keys: usize, scale: f64, mask: Mask) -> Result<Tensor> {
    let (b, heads, len, dim) = q.dims4()?;
    let (kb, kv_heads, kv_rows, kdim) = k.dims4()?;
    if keys == 0 || keys > kv_rows {
        candle_core::bail!("attention: {keys} keys asked of a cache of {kv_rows}");
    }
    if k.dims() != v.dims() || kb != b || kdim != dim || kv_heads == 0 || heads % kv_heads != 0 {
        candle_core::bail!("attention: q {:?}, k {:?}, v {:?} do not fit together", q.dims(), k.dims(), v.dims());
    }
    if matches!(mask, Mask::Causal | Mask::Window(_)) && keys != len {
        candle_core::bail!("attention: a causal or window mask needs as many keys as queries ({keys} vs {len})");
    }
    let (q, k, v) = (q.contiguous()?, k.contiguous()?, v.contiguous()?);
    let additive = match mask {
        Mask::Additive(m) => {
            let (mb, one, ml, ms) = m.dims4()?;
            if !(mb == 1 || mb == b) || one != 1 || ml != len || ms != keys {
                candle_core::bail!("attention: mask {:?} does not fit {b} x {len} queries x {keys} keys", m.dims());
            }
            Some(m.to_dtype(q.dtype())?.contiguous()?)
        }
        _ => None,
    };
    let shape = Shape { batch: b, heads, kv_heads, len, keys, kv_rows, dim };
    if q.dtype() == DType::F32 {
        if let (Some(qs), Some(ks), Some(vs)) = (CpuF32::of(&q), CpuF32::of(&k), CpuF32::of(&v)) {
            let mask_view = additive.as_ref().map(CpuF32::of);
            let mask_values = match &mask_view {
                None => Some(None),
                Some(Some(m)) => Some(Some((m.values(), m.values().len() / (len * keys).max(1)))),
                Some(None) => None, // a mask on another device: op by op
            };
            if let Some(mask_values) = mask_values {
                let out = blocked(&shape, qs.values(), ks.values(), vs.values(), scale as f32, mask, mask_values);
                return Tensor::from_vec(out, (b, len, heads * dim), q.device());
            }
        }
    }
    let (k, v) = if keys == kv_rows { (k, v) } else { (k.narrow(2, 0, keys)?.contiguous()?, v.narrow(2, 0, keys)?.contiguous()?) };
    op_by_op(&q, &k, &v, scale, mask, additive.as_ref())
}

/// The sizes of one attention call.
struct Shape {
    batch: usize,
    heads: usize,
    kv_heads: usize,
    len: usize,
    keys: usize,
    /// Rows each key/value head has in storage (`keys` or more: a cache's capacity).
    kv_rows: usize,
    dim: usize,
}

/// The output, written by several tasks at once, each to its own rows and head columns.
struct SharedOut(*mut f32);
// Safety: every task writes a disjoint set of elements (its query rows x its head's columns).
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

fn blocked(s: &Shape, q: &[f32], k: &[f32], v: &[f32], scale: f32, mask: Mask, additive: Option<(&[f32], usize)>) -> Vec<f32> {
    let (len, keys, dim, heads) = (s.len, s.keys, s.dim, s.heads);
    let group = heads / s.kv_heads;
    let width = heads * dim;
    let mut out = vec![0f32; s.batch * len * width];
    let blocks = len.div_ceil(QUERY_BLOCK);
    let shared = SharedOut(out.as_mut_ptr());
    let shared = &shared;
    (0..s.batch * heads * blocks).into_par_iter().for_each_init(
        || vec![0f32; QUERY_BLOCK * keys],
        |scores, task| {
            let (item, head, block) = (task / (heads * blocks), task / blocks % heads, task % blocks);
            let (first, last) = (block * QUERY_BLOCK, ((block + 1) * QUERY_BLOCK).min(len));
            let rows = last - first;
            // The keys any row of this block may see.
            let (k0, k1) = match mask {
                Mask::Causal => (0, last),
                Mask::Window(w) => (first.saturating_sub(w), (last + w).min(keys)),
                Mask::None | Mask::Additive(_) => (0, keys),
            };
            let span = k1 - k0;
            let scores = &mut scores[..rows * span];
            let q_rows = &q[((item * heads + head) * len + first) * dim..];
            let kv_base = ((item * s.kv_heads + head / group) * s.kv_rows + k0) * dim;
            // Safety (both GEMMs): every pointer covers the rows x columns its strides walk:
            // q rows `first..last` of this head, keys/values `k0..k1` of its kv head, the block's
            // scores, and the output's rows `first..last` at this head's `dim` columns.
            unsafe {
                // scores = scale · q_block · k_spanᵀ
                gemm(
                    rows, span, dim,
                    scores.as_mut_ptr(), 1, span as isize, false,
                    q_rows.as_ptr(), 1, dim as isize,
                    k[kv_base..].as_ptr(), dim as isize, 1,
                    0.0, scale, false, false, false, Parallelism::None,
                );
            }
            for (r, row) in scores.chunks_exact_mut(span).enumerate() {
                let i = first + r;
                let (lo, hi) = match mask {
                    Mask::Causal => (0, i + 1 - k0),
                    Mask::Window(w) => (i.saturating_sub(w) - k0, (i + w + 1).min(keys) - k0),
                    Mask::None => (0, span),
                    Mask::Additive(_) => {
                        let (values, mask_batch) = additive.expect("additive values come with an additive mask");
                        let at = ((if mask_batch == 1 { 0 } else { item }) * len + i) * keys;
                        for (score, m) in row.iter_mut().zip(&values[at..at + keys]) {
                            *score += m;
                        }
                        (0, span)
                    }
                };
                softmax_in_place(row, lo, hi);
            }
            unsafe {
                // out rows = probabilities · v_span
                gemm(
                    rows, dim, span,
                    shared.0.add((item * len + first) * width + head * dim), 1, width as isize, false,
                    scores.as_ptr(), 1, span as isize,
                    v[kv_base..].as_ptr(), 1, dim as isize,
                    0.0, 1.0, false, false, false, Parallelism::None,
                );
            }
        },
    );
    out
}

/// Softmax over `row[lo..hi]`; the rest of the row (keys the query may not see) becomes 0.
fn softmax_in_place(row: &mut [f32], lo: usize, hi: usize) {
    row[..lo].fill(0.0);
    row[hi..].fill(0.0);
    let seen = &mut row[lo..hi];
    let max = seen.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for x in seen.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    let inv = 1.0 / sum;
    for x in seen.iter_mut() {
        *x *= inv;
    }
}

/// The same computation op by op, for devices and dtypes the kernel does not cover.
fn op_by_op(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64, mask: Mask, additive: Option<&Tensor>) -> Result<Tensor> {
    let (b, heads, len, dim) = q.dims4()?;
    let groups = heads / k.dim(1)?;
    let repeat = |x: &Tensor| -> Result<Tensor> {
        if groups == 1 {
            return Ok(x.clone());
        }
        let (b, kv, s, d) = x.dims4()?;
        x.unsqueeze(2)?.expand((b, kv, groups, s, d))?.reshape((b, kv * groups, s, d))
    };
    let (k, v) = (repeat(k)?, repeat(v)?);
    let scores = (q.matmul(&k.t()?)? * scale)?;
    let built = match mask {
        Mask::None | Mask::Additive(_) => None,
        Mask::Causal => Some(causal_mask(len, q.device())?),
        Mask::Window(w) => Some(bidirectional_mask(1, len, Some(w), None, q.device())?),
    };
    let scores = match additive.or(built.as_ref()) {
        Some(mask) => scores.broadcast_add(&mask.to_dtype(scores.dtype())?)?,
        None => scores,
    };
    let probs = candle_nn::ops::softmax_last_dim(&scores)?;
    probs.matmul(&v)?.transpose(1, 2)?.reshape((b, len, heads * dim))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn random(shape: (usize, usize, usize, usize), seed: u64) -> Tensor {
        let n = shape.0 * shape.1 * shape.2 * shape.3;
        // A small LCG: fixed values without a dependency on candle's RNG.
        let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let values: Vec<f32> = (0..n)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
            })
            .collect();
        Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
    }

    /// The largest difference relative to the reference's largest magnitude.
    fn relative_error(a: &Tensor, b: &Tensor) -> f32 {
        let diff = (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
        let scale = b.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
        diff / scale
    }

    /// The kernel against the op-by-op path with the mask built as upstream builds it, for every
    /// mask kind, grouped heads, and lengths that are and are not multiples of the query block.
    #[test]
    fn kernel_equals_masked_matmul_softmax() {
        let dev = Device::Cpu;
        for (len, keys) in [(5, 5), (64, 64), (130, 130), (97, 40)] {
            let (b, heads, kv, dim) = (2, 4, 2, 16);
            let q = random((b, heads, len, dim), 1);
            let k = random((b, kv, keys, dim), 2);
            let v = random((b, kv, keys, dim), 3);
            let scale = (dim as f64).powf(-0.5);
            // Keys padded from a different point in each item, and one item with every key hidden.
            let mut padding = vec![vec![1f32; keys]; b];
            padding[0][keys - keys / 3..].fill(0.0);
            padding[1].fill(0.0);
            let padding = Tensor::new(padding, &dev).unwrap();
            let padded = bidirectional_mask(b, keys, None, Some(&padding), &dev).unwrap();
            let padded = if keys == len { Some(padded) } else { None };
            let mut cases = vec![("none", Mask::None, None)];
            if keys == len {
                cases.push(("causal", Mask::Causal, Some(causal_mask(len, &dev).unwrap())));
                cases.push(("window 3", Mask::Window(3), Some(bidirectional_mask(1, len, Some(3), None, &dev).unwrap())));
                cases.push(("window 70", Mask::Window(70), Some(bidirectional_mask(1, len, Some(70), None, &dev).unwrap())));
            }
            let reference_only: Vec<_> = cases.iter().map(|(name, _, m)| (*name, m.clone())).collect();
            for ((name, mask, _), (_, built)) in cases.into_iter().zip(reference_only) {
                let got = attention(&q, &k, &v, scale, mask).unwrap();
                let want = op_by_op(&q, &k, &v, scale, Mask::None, built.as_ref()).unwrap();
                let err = relative_error(&got, &want);
                assert!(err < 1e-5, "{name}, {len} x {keys}: relative error {err}");
            }
            if let Some(padded) = padded {
                let got = attention(&q, &k, &v, scale, Mask::Additive(&padded)).unwrap();
                let want = op_by_op(&q, &k, &v, scale, Mask::None, Some(&padded)).unwrap();
                let err = relative_error(&got, &want);
                assert!(err < 1e-5, "key padding, {len}: relative error {err}");
            }
        }
    }

    /// Other dtypes (bf16, as on a GPU) take the op-by-op path with the masks built from the kind,
    /// and agree with the f32 kernel to bf16 precision.
    #[test]
    fn bf16_takes_the_op_by_op_path_with_the_same_masks() {
        let (q, k, v) = (random((1, 4, 70, 16), 1), random((1, 2, 70, 16), 2), random((1, 2, 70, 16), 3));
        let half = |t: &Tensor| t.to_dtype(DType::BF16).unwrap();
        // The f32 reference runs on the same bf16-rounded inputs.
        let widened = |t: &Tensor| half(t).to_dtype(DType::F32).unwrap();
        for mask in [Mask::None, Mask::Causal, Mask::Window(5)] {
            let want = attention(&widened(&q), &widened(&k), &widened(&v), 0.25, mask).unwrap();
            let got = attention(&half(&q), &half(&k), &half(&v), 0.25, mask).unwrap();
            assert_eq!(got.dtype(), DType::BF16);
            // bf16 keeps 8 bits: its probabilities and products land within a few percent.
            let err = relative_error(&got.to_dtype(DType::F32).unwrap(), &want);
            assert!(err < 5e-2, "{mask:?}: relative error {err}");
        }
        // A mask of the wrong kind is far outside that.
        let causal = attention(&half(&q), &half(&k), &half(&v), 0.25, Mask::Causal).unwrap().to_dtype(DType::F32).unwrap();
        let full = attention(&widened(&q), &widened(&k), &widened(&v), 0.25, Mask::None).unwrap();
        assert!(relative_error(&causal, &full) > 0.3);
    }

    #[test]
    fn mismatched_shapes_are_errors() {
        let q = random((1, 4, 8, 16), 1);
        let k = random((1, 3, 8, 16), 2);
        assert!(attention(&q, &k, &k, 1.0, Mask::None).is_err(), "4 heads over 3 kv heads");
        let k = random((1, 2, 9, 16), 2);
        assert!(attention(&q, &k, &k, 1.0, Mask::Causal).is_err(), "causal needs as many keys as queries");
    }
}
