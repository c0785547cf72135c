//! The Oobleck residual unit (Snake, dilated k=7 conv, Snake, 1x1 conv, plus the skip) as one
//! pass over blocks of time on the CPU.
//!
//! Op by op, every step writes a whole (C, L) tensor: at the VAE decoder's last block, 128
//! channels x 480,000 samples for 10 s, that is a fresh 245 MB buffer per step (plus the im2col
//! copies), and a quarter of the decode went to the kernel zeroing those pages. Here each block
//! of a couple of thousand samples goes through all the steps while it is in cache: the two convs
//! are GEMMs with the `gemm` crate (the kernel behind candle's CPU matmul), the bias, the second
//! Snake and the skip are folded in around them, and only the unit's output is written at full
//! size. Blocks run in parallel on rayon's pool, one GEMM per block on one thread.

use gemm::{gemm, Parallelism};
use rayon::prelude::*;

/// Taps of the unit's first conv (`OobleckResidualUnit`: kernel 7, padding 3·dilation).
pub const KERNEL: usize = 7;

/// Upper bound on one block's im2col elements (8 MiB in f32), as in `vae::Conv1d`.
const BLOCK_ELEMENTS: usize = 1 << 21;
/// Shortest block: below this the per-block GEMM set-up outweighs the work.
const MIN_BLOCK: usize = 256;

/// One Snake: per-channel α and 1 / β.
#[derive(Clone, Copy)]
pub struct SnakeParams<'a> {
    pub alpha: &'a [f32],
    pub inv_beta: &'a [f32],
}

impl SnakeParams<'_> {
    #[inline]
    fn apply(&self, channel: usize, v: f32) -> f32 {
        super::snake::snake(v, self.alpha[channel], self.inv_beta[channel])
    }
}

/// A residual unit's parameters, all f32 and contiguous.
pub struct UnitParams<'a> {
    pub channels: usize,
    pub dilation: usize,
    pub snake1: SnakeParams<'a>,
    /// `[C, C·7]`: column `c·7 + j` is tap j of input channel c.
    pub conv1_weight: &'a [f32],
    pub conv1_bias: &'a [f32],
    pub snake2: SnakeParams<'a>,
    /// `[C, C]`.
    pub conv2_weight: &'a [f32],
    pub conv2_bias: &'a [f32],
}

/// Per-thread working memory for one block.
struct Scratch {
    /// Snake1 of the block and its halo, `[C, n + 2·reach]`.
    snaked: Vec<f32>,
    /// `[C·7, n]`.
    columns: Vec<f32>,
    /// The first conv's output, then its Snake, `[C, n]`.
    hidden: Vec<f32>,
}

/// The output buffer, written by several threads at once, each to its own blocks.
struct SharedOut(*mut f32);
// Safety: every block writes a disjoint set of elements (its own time range in every row).
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

/// `x + conv2(snake2(conv1(snake1(x))))` for `x` of shape (batch, C, len), row-major.
pub fn residual_unit(x: &[f32], batch: usize, len: usize, p: &UnitParams) -> Vec<f32> {
    let c = p.channels;
    assert_eq!(x.len(), batch * c * len, "residual unit: input is not (batch, {c}, {len})");
    assert!(
        p.snake1.alpha.len() == c
            && p.snake2.alpha.len() == c
            && p.conv1_weight.len() == c * c * KERNEL
            && p.conv2_weight.len() == c * c
            && p.conv1_bias.len() == c
            && p.conv2_bias.len() == c,
        "residual unit: parameters are not for {c} channels"
    );
    let mut out = vec![0f32; x.len()];
    if len == 0 {
        return out;
    }
    let reach = (KERNEL / 2) * p.dilation;
    let block = (BLOCK_ELEMENTS / (c * KERNEL)).max(MIN_BLOCK).min(len);
    let blocks = len.div_ceil(block);
    let shared = SharedOut(out.as_mut_ptr());
    let shared = &shared;
    (0..batch * blocks).into_par_iter().for_each_init(
        || Scratch {
            snaked: vec![0.0; c * (block + 2 * reach)],
            columns: vec![0.0; c * KERNEL * block],
            hidden: vec![0.0; c * block],
        },
        |scratch, job| {
            let (item, start) = (job / blocks, (job % blocks) * block);
            let n = block.min(len - start);
            let x_item = &x[item * c * len..(item + 1) * c * len];
            // Safety: `item`'s rows start inside `out`, which outlives the parallel loop.
            let out_item = unsafe { shared.0.add(item * c * len) };
            unit_block(x_item, out_item, len, start, n, reach, p, scratch);
        },
    );
    out
}

/// One block: output samples `start..start + n` of every channel of one batch item.
#[allow(clippy::too_many_arguments)]
fn unit_block(x: &[f32], out: *mut f32, len: usize, start: usize, n: usize, reach: usize, p: &UnitParams, s: &mut Scratch) {
    let c = p.channels;
    let width = n + 2 * reach;

    // Snake1 over the block and `reach` samples each side; zero beyond the signal, which is the
    // conv's zero padding (applied after the Snake).
    for ch in 0..c {
        let row = &x[ch * len..(ch + 1) * len];
        let dst = &mut s.snaked[ch * width..(ch + 1) * width];
        for (i, d) in dst.iter_mut().enumerate() {
            let t = (start + i).wrapping_sub(reach);
            *d = if t < len { p.snake1.apply(ch, row[t]) } else { 0.0 };
        }
    }

    // im2col: row c·7 + j holds tap j of channel c, the snaked row shifted by j·dilation.
    for ch in 0..c {
        let src = &s.snaked[ch * width..(ch + 1) * width];
        for j in 0..KERNEL {
            let row = (ch * KERNEL + j) * n;
            s.columns[row..row + n].copy_from_slice(&src[j * p.dilation..j * p.dilation + n]);
        }
    }

    // hidden = bias1 + W1 · columns, then Snake2 in place.
    let hidden = &mut s.hidden[..c * n];
    for (ch, row) in hidden.chunks_exact_mut(n).enumerate() {
        row.fill(p.conv1_bias[ch]);
    }
    // Safety: the slices hold m·k, k·n and m·n elements at the strides given.
    unsafe {
        gemm(
            c, n, c * KERNEL,
            hidden.as_mut_ptr(), 1, n as isize, true,
            p.conv1_weight.as_ptr(), 1, (c * KERNEL) as isize,
            s.columns.as_ptr(), 1, n as isize,
            1.0, 1.0, false, false, false, Parallelism::None,
        );
    }
    for (ch, row) in hidden.chunks_exact_mut(n).enumerate() {
        for v in row {
            *v = p.snake2.apply(ch, *v);
        }
    }

    // out = x + bias2 + W2 · hidden, written straight into this block of the output rows.
    for ch in 0..c {
        let skip = &x[ch * len + start..ch * len + start + n];
        for (i, &v) in skip.iter().enumerate() {
            // Safety: (ch, start + i) lies in this item's rows, and no other block writes it.
            unsafe { out.add(ch * len + start + i).write(v + p.conv2_bias[ch]) };
        }
    }
    // Safety: dst is the (C, n) window at column `start` of rows `len` apart, inside `out`.
    unsafe {
        gemm(
            c, n, c,
            out.add(start), 1, len as isize, true,
            p.conv2_weight.as_ptr(), 1, c as isize,
            hidden.as_ptr(), 1, n as isize,
            1.0, 1.0, false, false, false, Parallelism::None,
        );
    }
}
