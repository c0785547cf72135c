//! ACE-Step 1.5's VAE: diffusers' `AutoencoderOobleck` (Stable Audio's "Oobleck"), read from the
//! `vae/` checkpoint folder. Mirrors `diffusers/models/autoencoders/autoencoder_oobleck.py`.
//!
//! 48 kHz stereo in and out; one latent frame per `hop_length()` samples (1920 for the shipped
//! config, 25 frames/s), 64 latent channels. Latents are used raw: no scaling or shift.
//!
//! Every convolution is weight-normed in the checkpoint; the norm is folded into a plain weight
//! once at load. Convolutions are written as GEMMs because candle's CPU `conv1d` and especially
//! `conv_transpose1d` are several times slower than PyTorch's (`reference/perf.md`): 1x1 convs are
//! a matmul, stride-1 convs an im2col matmul over blocks of time, and the transposed convs of the
//! decoder a polyphase matmul (see `ConvTranspose1d`). Only the encoder's strided convs use
//! candle's own `conv1d`: the encoder runs once per source or reference clip, not per step.

use candle_core::{DType, Result, Tensor};

use crate::kernels::cpu_f32::CpuF32;
use crate::kernels::fused_residual;
use candle_nn::VarBuilder;
use serde::Deserialize;

/// `vae/config.json` as diffusers writes it. Field names are the JSON keys; the others
/// (`_class_name`, `_diffusers_version`) are ignored. Every size is required: diffusers' own
/// defaults (hop 2048 at 44.1 kHz) are not ACE-Step's.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct VaeConfig {
    pub encoder_hidden_size: usize,
    pub downsampling_ratios: Vec<usize>,
    pub channel_multiples: Vec<usize>,
    pub decoder_channels: usize,
    pub decoder_input_channels: usize,
    pub audio_channels: usize,
    pub sampling_rate: usize,
}

impl VaeConfig {
    pub fn from_json(json: &str) -> std::result::Result<Self, serde_json::Error> {
        serde_json::from_str(json)
    }

    /// Audio samples per latent frame.
    pub fn hop_length(&self) -> usize {
        self.downsampling_ratios.iter().product()
    }

    /// Channels of the posterior's mean (the encoder emits mean and scale stacked).
    pub fn latent_channels(&self) -> usize {
        self.encoder_hidden_size / 2
    }

    /// Channel widths at each resolution, finest first (`[1] + channel_multiples`, times `base`).
    fn widths(&self, base: usize) -> Vec<usize> {
        std::iter::once(1).chain(self.channel_multiples.iter().copied()).map(|m| base * m).collect()
    }
}

/// `w = g · v / ‖v‖` with the norm over every dim but 0 (`torch.nn.utils.weight_norm`, dim 0).
/// Folded in f32 whatever the load dtype, so a 16-bit load loses nothing more to the reduction.
fn weight_norm(vb: &VarBuilder, shape: (usize, usize, usize)) -> Result<Tensor> {
    let v = vb.get(shape, "weight_v")?;
    let g = vb.get((shape.0, 1, 1), "weight_g")?;
    let (v, g) = (v.to_dtype(DType::F32)?, g.to_dtype(DType::F32)?);
    let norm = v.sqr()?.sum_keepdim((1, 2))?.sqrt()?;
    v.broadcast_mul(&g.broadcast_div(&norm)?)?.to_dtype(vb.dtype())
}

/// Upper bound on the elements of one im2col block, so a long stride-1 conv never materialises
/// `k` copies of its whole input (8 MiB in f32: the block stays in L3 for the GEMM).
const IM2COL_BLOCK_ELEMENTS: usize = 1 << 21;

/// A 1-D convolution (`nn.Conv1d`, weight `[out, in, k]`).
#[derive(Debug, Clone)]
pub struct Conv1d {
    /// `[out, in, k]`, for candle's strided conv.
    weight: Tensor,
    /// `[out, in·k]`, the im2col GEMM's left operand (column `c·k + j` = tap j of channel c).
    weight_2d: Tensor,
    /// `[1, out, 1]`.
    bias: Option<Tensor>,
    kernel: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
}

impl Conv1d {
    pub fn new(weight: Tensor, bias: Option<Tensor>, stride: usize, padding: usize, dilation: usize) -> Result<Self> {
        let (out, inp, kernel) = weight.dims3()?;
        if stride == 0 || dilation == 0 {
            candle_core::bail!("conv1d: stride and dilation must be positive")
        }
        let bias = bias.map(|b| b.reshape((1, out, 1))).transpose()?;
        let weight = weight.contiguous()?;
        Ok(Self { weight_2d: weight.reshape((out, inp * kernel))?, weight, bias, kernel, stride, padding, dilation })
    }

    /// A weight-normed conv from the checkpoint (`weight_g`, `weight_v`, optional `bias`).
    #[allow(clippy::too_many_arguments)]
    fn load(
        vb: VarBuilder,
        inp: usize,
        out: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        dilation: usize,
        bias: bool,
    ) -> Result<Self> {
        let weight = weight_norm(&vb, (out, inp, kernel))?;
        let bias = if bias { Some(vb.get(out, "bias")?) } else { None };
        Self::new(weight, bias, stride, padding, dilation)
    }

    /// (B, in, L) -> (B, out, L_out), `L_out = (L + 2p - d(k-1) - 1) / s + 1`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, inp, len) = x.dims3()?;
        let y = if self.kernel == 1 && self.stride == 1 && self.padding == 0 {
            self.weight_2d.broadcast_left(b)?.matmul(&x.contiguous()?)?
        } else if self.stride != 1 && self.dilation == 1 && self.kernel.is_multiple_of(self.stride) {
            self.forward_framed(x)?
        } else if self.stride != 1 {
            x.conv1d(&self.weight, self.padding, self.stride, self.dilation, 1)?
        } else {
            let span = self.dilation * (self.kernel - 1) + 1;
            let out_len = (len + 2 * self.padding).checked_sub(span).map(|n| n + 1);
            let Some(out_len) = out_len else {
                candle_core::bail!("conv1d: input of {len} samples is shorter than the kernel span {span}")
            };
            let x = x.pad_with_zeros(2, self.padding, self.padding)?;
            let weight = self.weight_2d.broadcast_left(b)?;
            let block = (IM2COL_BLOCK_ELEMENTS / (inp * self.kernel)).max(256);
            let mut blocks = Vec::with_capacity(out_len.div_ceil(block));
            for start in (0..out_len).step_by(block) {
                let n = block.min(out_len - start);
                let taps = (0..self.kernel)
                    .map(|j| x.narrow(2, start + j * self.dilation, n))
                    .collect::<Result<Vec<_>>>()?;
                let cols = Tensor::stack(&taps, 2)?.reshape((b, inp * self.kernel, n))?;
                blocks.push(weight.matmul(&cols)?);
            }
            Tensor::cat(&blocks, 2)?
        };
        match &self.bias {
            Some(bias) => y.broadcast_add(bias),
            None => Ok(y),
        }
    }
}

impl Conv1d {
    /// A strided conv whose kernel is `q` whole strides (the encoder's downsampling convs, k = 2s)
    /// as blocked im2col + GEMM. Cut the padded input into frames of `stride` samples: output `t`
    /// reads frames `t..t + q`, so its columns are `q` shifted views of one framed copy of the
    /// input. candle's own strided `conv1d` took most of an encode's time this way.
    fn forward_framed(&self, x: &Tensor) -> Result<Tensor> {
        let (b, inp, len) = x.dims3()?;
        let (s, k) = (self.stride, self.kernel);
        let q = k / s;
        let Some(out_len) = (len + 2 * self.padding).checked_sub(k).map(|n| n / s + 1) else {
            candle_core::bail!("conv1d: input of {len} samples is shorter than the kernel {k}")
        };
        let frames = out_len + q - 1;
        // (B, C, F·s) -> (B, C, F, s) -> (B, C, s, F): tap r of frame f at [.., r, f].
        let x = x.pad_with_zeros(2, self.padding, self.padding)?.narrow(2, 0, frames * s)?.contiguous()?;
        let framed = x.reshape((b, inp, frames, s))?.transpose(2, 3)?.contiguous()?;
        let weight = self.weight_2d.broadcast_left(b)?;
        let block = (IM2COL_BLOCK_ELEMENTS / (inp * k)).max(256);
        let mut blocks = Vec::with_capacity(out_len.div_ceil(block));
        for start in (0..out_len).step_by(block) {
            let n = block.min(out_len - start);
            let taps = (0..q).map(|i| framed.narrow(3, start + i, n)).collect::<Result<Vec<_>>>()?;
            // (B, C, q·s, n): row c·k + i·s + r is tap i·s + r of channel c, as `weight_2d` is laid out.
            let cols = Tensor::cat(&taps, 2)?.reshape((b, inp * k, n))?;
            blocks.push(weight.matmul(&cols)?);
        }
        Tensor::cat(&blocks, 2)
    }
}

/// A 1-D transposed convolution (`nn.ConvTranspose1d`, weight `[in, out, k]`), as one GEMM.
///
/// Output sample `f·s + r` (before cropping `padding`) sums tap `q·s + r` of the kernel over input
/// frames `f - q`, q = 0..Q with Q = ceil(k/s). So each phase r is an ordinary stride-1 conv with
/// Q taps, and all s phases share one im2col of the input: the overlap-add happens inside the
/// GEMM's reduction instead of as passes over the (s times longer) output, and the only
/// output-sized copy left is interleaving the phases.
#[derive(Debug, Clone)]
pub struct ConvTranspose1d {
    /// `[out·s, in·Q]`: row `o·s + r`, column `c·Q + q'` holds `w[c, o, (Q-1-q')·s + r]`
    /// (zero past the kernel's end).
    weight: Tensor,
    /// `[1, out, 1]`.
    bias: Option<Tensor>,
    out_channels: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    taps: usize,
}

impl ConvTranspose1d {
    pub fn new(weight: Tensor, bias: Option<Tensor>, stride: usize, padding: usize) -> Result<Self> {
        let (inp, out, kernel) = weight.dims3()?;
        if stride == 0 {
            candle_core::bail!("conv_transpose1d: stride must be positive")
        }
        let taps = kernel.div_ceil(stride);
        // [in, out, k] -> zero-pad k to Q·s -> [in, out, Q, s] -> flip Q -> [out, s, in, Q].
        let w = weight.pad_with_zeros(2, 0, taps * stride - kernel)?.reshape((inp, out, taps, stride))?;
        let flipped = (0..taps).rev().map(|q| w.narrow(2, q, 1)).collect::<Result<Vec<_>>>()?;
        let w = Tensor::cat(&flipped, 2)?.permute((1, 3, 0, 2))?.contiguous()?;
        let bias = bias.map(|b| b.reshape((1, out, 1))).transpose()?;
        Ok(Self {
            weight: w.reshape((out * stride, inp * taps))?,
            bias,
            out_channels: out,
            kernel,
            stride,
            padding,
            taps,
        })
    }

    /// A weight-normed transposed conv from the checkpoint. Its `weight_g` is `[in, 1, 1]`:
    /// dim 0 of a transposed conv's weight is the input channel.
    fn load(vb: VarBuilder, inp: usize, out: usize, kernel: usize, stride: usize, padding: usize) -> Result<Self> {
        let weight = weight_norm(&vb, (inp, out, kernel))?;
        let bias = vb.get(out, "bias")?;
        Self::new(weight, Some(bias), stride, padding)
    }

    /// (B, in, L) -> (B, out, (L-1)·s - 2p + k).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, inp, len) = x.dims3()?;
        let (s, q) = (self.stride, self.taps);
        let full_len = len.checked_sub(1).map(|l| l * s + self.kernel);
        let Some(out_len) = full_len.and_then(|n| n.checked_sub(2 * self.padding)) else {
            candle_core::bail!("conv_transpose1d: {len} frames with padding {} leave no output", self.padding)
        };
        let frames = len + q - 1;
        let x = x.pad_with_zeros(2, q - 1, q - 1)?;
        let taps = (0..q).map(|j| x.narrow(2, j, frames)).collect::<Result<Vec<_>>>()?;
        let cols = Tensor::stack(&taps, 2)?.reshape((b, inp * q, frames))?;
        let phases = self.weight.broadcast_left(b)?.matmul(&cols)?; // (B, out·s, F)
        let y = phases
            .reshape((b, self.out_channels, s, frames))?
            .transpose(2, 3)?
            .contiguous()?
            .reshape((b, self.out_channels, frames * s))?
            .narrow(2, self.padding, out_len)?;
        match &self.bias {
            Some(bias) => y.broadcast_add(bias),
            None => y.contiguous(),
        }
    }
}

/// `x + 1/β · sin(αx)²` per channel. The checkpoint stores log α and log β; both are
/// exponentiated once here.
#[derive(Debug, Clone)]
struct Snake {
    /// `[1, C, 1]`: α.
    alpha: Tensor,
    /// `[1, C, 1]`: 1 / (β + 1e-9), diffusers' guard against a zero β.
    inv_beta: Tensor,
    /// The same per channel, for the fused CPU pass.
    alpha_values: Vec<f32>,
    inv_beta_values: Vec<f32>,
}

impl Snake {
    fn load(vb: VarBuilder, channels: usize) -> Result<Self> {
        let alpha = vb.get((1, channels, 1), "alpha")?;
        let beta = vb.get((1, channels, 1), "beta")?;
        let dtype = alpha.dtype();
        let alpha = alpha.to_dtype(DType::F32)?.exp()?;
        let inv_beta = (beta.to_dtype(DType::F32)?.exp()? + 1e-9)?.recip()?;
        Ok(Self {
            alpha_values: alpha.flatten_all()?.to_vec1()?,
            inv_beta_values: inv_beta.flatten_all()?.to_vec1()?,
            alpha: alpha.to_dtype(dtype)?,
            inv_beta: inv_beta.to_dtype(dtype)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if let Some(out) = self.forward_cpu_f32(x)? {
            return Ok(out);
        }
        let wave = x.broadcast_mul(&self.alpha)?.sin()?.sqr()?;
        x + wave.broadcast_mul(&self.inv_beta)?
    }

    /// One fused pass over every core for contiguous f32 on the CPU. The decoder's last blocks
    /// run Snake over 128 channels x 480,000 samples per 10 s; as five separate tensor ops that
    /// is five full-size buffers to allocate and fault in, and five passes on one thread.
    fn forward_cpu_f32(&self, x: &Tensor) -> Result<Option<Tensor>> {
        let Some(view) = CpuF32::of(x) else { return Ok(None) };
        let (batch, channels, len) = x.dims3()?;
        if channels != self.alpha_values.len() || len == 0 {
            return Ok(None);
        }
        let input = view.values();
        // One chunk per (item, channel) row.
        let out = crate::alloc::fill_fresh(input.len(), len, |start, out| {
            let channel = start / len % channels;
            let (alpha, inv_beta) = (self.alpha_values[channel], self.inv_beta_values[channel]);
            for (o, &v) in out.iter_mut().zip(&input[start..]) {
                o.write(crate::kernels::snake::snake(v, alpha, inv_beta));
            }
        });
        drop(view);
        Ok(Some(Tensor::from_vec(out, (batch, channels, len), x.device())?))
    }
}

/// Snake, dilated k7 conv, Snake, 1x1 conv, plus the skip (`OobleckResidualUnit`).
#[derive(Debug, Clone)]
struct ResidualUnit {
    snake1: Snake,
    conv1: Conv1d,
    snake2: Snake,
    conv2: Conv1d,
}

impl ResidualUnit {
    fn load(vb: VarBuilder, channels: usize, dilation: usize) -> Result<Self> {
        Ok(Self {
            snake1: Snake::load(vb.pp("snake1"), channels)?,
            conv1: Conv1d::load(vb.pp("conv1"), channels, channels, 7, 1, 3 * dilation, dilation, true)?,
            snake2: Snake::load(vb.pp("snake2"), channels)?,
            conv2: Conv1d::load(vb.pp("conv2"), channels, channels, 1, 1, 0, 1, true)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self.forward_cpu_f32(x)? {
            Some(out) => Ok(out),
            None => self.forward_ops(x),
        }
    }

    /// Op by op, on any device and dtype.
    fn forward_ops(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.conv1.forward(&self.snake1.forward(x)?)?;
        let y = self.conv2.forward(&self.snake2.forward(&y)?)?;
        // diffusers centre-crops the skip when the convs shorten the signal; with padding 3d
        // they never do, but a shorter `y` must not silently misalign.
        let crop = (x.dim(2)? - y.dim(2)?) / 2;
        x.narrow(2, crop, y.dim(2)?)? + y
    }
}

impl ResidualUnit {
    /// The whole unit in one blocked pass (`fused_residual`) for contiguous f32 on the CPU;
    /// `None` for anything else, which takes the op-by-op path.
    fn forward_cpu_f32(&self, x: &Tensor) -> Result<Option<Tensor>> {
        let (batch, channels, len) = x.dims3()?;
        let conv1_ok = self.conv1.kernel == fused_residual::KERNEL
            && self.conv1.stride == 1
            && self.conv1.padding == (fused_residual::KERNEL / 2) * self.conv1.dilation;
        let conv2_ok = self.conv2.kernel == 1 && self.conv2.stride == 1 && self.conv2.padding == 0;
        if !conv1_ok || !conv2_ok || channels != self.snake1.alpha_values.len() {
            return Ok(None);
        }
        let (Some(bias1), Some(bias2)) = (&self.conv1.bias, &self.conv2.bias) else { return Ok(None) };
        let views = [x, &self.conv1.weight_2d, bias1, &self.conv2.weight_2d, bias2].map(CpuF32::of);
        let [Some(xs), Some(w1), Some(b1), Some(w2), Some(b2)] = &views else { return Ok(None) };
        let params = fused_residual::UnitParams {
            channels,
            dilation: self.conv1.dilation,
            snake1: fused_residual::SnakeParams { alpha: &self.snake1.alpha_values, inv_beta: &self.snake1.inv_beta_values },
            conv1_weight: w1.values(),
            conv1_bias: b1.values(),
            snake2: fused_residual::SnakeParams { alpha: &self.snake2.alpha_values, inv_beta: &self.snake2.inv_beta_values },
            conv2_weight: w2.values(),
            conv2_bias: b2.values(),
        };
        let out = fused_residual::residual_unit(xs.values(), batch, len, &params);
        drop(views);
        Ok(Some(Tensor::from_vec(out, (batch, channels, len), x.device())?))
    }
}

/// Residual units at dilations 1, 3, 9 (the receptive field of every Oobleck block).
fn residual_units(vb: &VarBuilder, channels: usize) -> Result<[ResidualUnit; 3]> {
    Ok([
        ResidualUnit::load(vb.pp("res_unit1"), channels, 1)?,
        ResidualUnit::load(vb.pp("res_unit2"), channels, 3)?,
        ResidualUnit::load(vb.pp("res_unit3"), channels, 9)?,
    ])
}

/// `OobleckEncoderBlock`: residual units, Snake, then a conv with kernel 2s, stride s, padding
/// ceil(s/2), so an input that is a multiple of s shrinks exactly s times.
#[derive(Debug, Clone)]
struct EncoderBlock {
    res_units: [ResidualUnit; 3],
    snake1: Snake,
    conv1: Conv1d,
}

impl EncoderBlock {
    fn load(vb: VarBuilder, inp: usize, out: usize, stride: usize) -> Result<Self> {
        Ok(Self {
            res_units: residual_units(&vb, inp)?,
            snake1: Snake::load(vb.pp("snake1"), inp)?,
            conv1: Conv1d::load(vb.pp("conv1"), inp, out, 2 * stride, stride, stride.div_ceil(2), 1, true)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        for unit in &self.res_units {
            x = unit.forward(&x)?;
        }
        self.conv1.forward(&self.snake1.forward(&x)?)
    }
}

/// `OobleckDecoderBlock`: Snake, a transposed conv with kernel 2s, stride s, padding ceil(s/2)
/// (exactly s times longer for even s, one sample short for odd s), then residual units.
#[derive(Debug, Clone)]
struct DecoderBlock {
    snake1: Snake,
    conv_t1: ConvTranspose1d,
    res_units: [ResidualUnit; 3],
}

impl DecoderBlock {
    fn load(vb: VarBuilder, inp: usize, out: usize, stride: usize) -> Result<Self> {
        Ok(Self {
            snake1: Snake::load(vb.pp("snake1"), inp)?,
            conv_t1: ConvTranspose1d::load(vb.pp("conv_t1"), inp, out, 2 * stride, stride, stride.div_ceil(2))?,
            res_units: residual_units(&vb, out)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = self.conv_t1.forward(&self.snake1.forward(x)?)?;
        for unit in &self.res_units {
            x = unit.forward(&x)?;
        }
        Ok(x)
    }
}

/// `OobleckEncoder`: audio (B, audio_channels, S) -> (B, encoder_hidden_size, S / hop).
#[derive(Debug, Clone)]
struct Encoder {
    conv1: Conv1d,
    blocks: Vec<EncoderBlock>,
    snake1: Snake,
    conv2: Conv1d,
}

impl Encoder {
    fn load(cfg: &VaeConfig, vb: VarBuilder) -> Result<Self> {
        let widths = cfg.widths(cfg.encoder_hidden_size);
        let blocks = cfg
            .downsampling_ratios
            .iter()
            .enumerate()
            .map(|(i, &stride)| EncoderBlock::load(vb.pp("block").pp(i), widths[i], widths[i + 1], stride))
            .collect::<Result<Vec<_>>>()?;
        let deepest = *widths.last().expect("widths has at least the stem");
        Ok(Self {
            conv1: Conv1d::load(vb.pp("conv1"), cfg.audio_channels, cfg.encoder_hidden_size, 7, 1, 3, 1, true)?,
            blocks,
            snake1: Snake::load(vb.pp("snake1"), deepest)?,
            conv2: Conv1d::load(vb.pp("conv2"), deepest, cfg.encoder_hidden_size, 3, 1, 1, 1, true)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = self.conv1.forward(x)?;
        for block in &self.blocks {
            x = block.forward(&x)?;
        }
        self.conv2.forward(&self.snake1.forward(&x)?)
    }
}

/// `OobleckDecoder`: latents (B, decoder_input_channels, T) -> audio (B, audio_channels, T·hop).
#[derive(Debug, Clone)]
struct Decoder {
    conv1: Conv1d,
    blocks: Vec<DecoderBlock>,
    snake1: Snake,
    conv2: Conv1d,
}

impl Decoder {
    fn load(cfg: &VaeConfig, vb: VarBuilder) -> Result<Self> {
        let widths = cfg.widths(cfg.decoder_channels);
        let n = cfg.downsampling_ratios.len();
        let blocks = cfg
            .downsampling_ratios
            .iter()
            .rev()
            .enumerate()
            .map(|(i, &stride)| DecoderBlock::load(vb.pp("block").pp(i), widths[n - i], widths[n - i - 1], stride))
            .collect::<Result<Vec<_>>>()?;
        let (c, audio) = (cfg.decoder_channels, cfg.audio_channels);
        Ok(Self {
            conv1: Conv1d::load(vb.pp("conv1"), cfg.decoder_input_channels, widths[n], 7, 1, 3, 1, true)?,
            blocks,
            snake1: Snake::load(vb.pp("snake1"), c)?,
            conv2: Conv1d::load(vb.pp("conv2"), c, audio, 7, 1, 3, 1, false)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = self.conv1.forward(x)?;
        for block in &self.blocks {
            x = block.forward(&x)?;
        }
        self.conv2.forward(&self.snake1.forward(&x)?)
    }
}

/// The encoder's diagonal Gaussian (`OobleckDiagonalGaussianDistribution`), (B, latent, T) each.
#[derive(Debug, Clone)]
pub struct Posterior {
    pub mean: Tensor,
    /// `softplus(scale) + 1e-4`.
    pub std: Tensor,
}

impl Posterior {
    /// `mean + std · noise`, what upstream feeds the DiT (`latent_dist.sample()`); `noise` is
    /// standard normal of the mean's shape, drawn by the caller so seeds stay under its control.
    pub fn sample(&self, noise: &Tensor) -> Result<Tensor> {
        &self.mean + (&self.std * noise)?
    }
}

/// `softplus(x) = ln(1 + eˣ)`, written as `max(x, 0) + ln(1 + e^-|x|)` so it cannot overflow.
fn softplus(x: &Tensor) -> Result<Tensor> {
    x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?
}

/// `AutoencoderOobleck` (checkpoint prefixes `encoder.` and `decoder.`).
#[derive(Debug, Clone)]
pub struct Vae {
    encoder: Encoder,
    decoder: Decoder,
    cfg: VaeConfig,
}

impl Vae {
    pub fn new(cfg: &VaeConfig, vb: VarBuilder) -> Result<Self> {
        if cfg.downsampling_ratios.len() != cfg.channel_multiples.len() {
            candle_core::bail!(
                "VAE config: {} downsampling ratios but {} channel multiples",
                cfg.downsampling_ratios.len(),
                cfg.channel_multiples.len()
            )
        }
        if !cfg.encoder_hidden_size.is_multiple_of(2) || cfg.downsampling_ratios.contains(&0) {
            candle_core::bail!("VAE config: encoder_hidden_size must be even and every ratio positive")
        }
        Ok(Self {
            encoder: Encoder::load(cfg, vb.pp("encoder"))?,
            decoder: Decoder::load(cfg, vb.pp("decoder"))?,
            cfg: cfg.clone(),
        })
    }

    pub fn config(&self) -> &VaeConfig {
        &self.cfg
    }

    /// Audio (B, audio_channels, S) -> the posterior over (B, latent, S / hop) latents. S should
    /// be a multiple of the hop; otherwise each strided conv floors the length, as in diffusers.
    pub fn encode(&self, audio: &Tensor) -> Result<Posterior> {
        let h = self.encoder.forward(audio)?;
        let half = self.cfg.latent_channels();
        Ok(Posterior { mean: h.narrow(1, 0, half)?, std: (softplus(&h.narrow(1, half, half)?)? + 1e-4)? })
    }

    /// [`Vae::encode`] in windows of `chunk_frames` latent frames: cores of `chunk_frames -
    /// 2·overlap_frames` frames, each encoded with up to `overlap_frames` of audio on either side
    /// that is encoded and thrown away, calling `before_tile(index, count)` before each window
    /// (an error from it stops the encode). Memory is that of one window whatever the audio's
    /// length. Window starts fall on whole hops, so every strided conv samples the same
    /// positions as one pass; the cores equal [`Vae::encode`] (to float rounding) once the
    /// overlap covers the encoder's receptive field, about 6 frames for the Oobleck stack.
    pub fn encode_tiles(
        &self,
        audio: &Tensor,
        chunk_frames: usize,
        overlap_frames: usize,
        mut before_tile: impl FnMut(usize, usize) -> Result<()>,
    ) -> Result<Posterior> {
        let samples = audio.dim(2)?;
        let hop = self.cfg.hop_length();
        let frames = samples / hop;
        if frames <= chunk_frames {
            before_tile(0, 1)?;
            return self.encode(audio);
        }
        let Some(stride) = chunk_frames.checked_sub(2 * overlap_frames).filter(|&s| s > 0) else {
            candle_core::bail!(
                "encode_tiles: a chunk of {chunk_frames} frames must exceed twice the overlap of {overlap_frames}"
            )
        };
        let tiles = frames.div_ceil(stride);
        let (mut means, mut stds) = (Vec::with_capacity(tiles), Vec::with_capacity(tiles));
        for (tile, core_start) in (0..frames).step_by(stride).enumerate() {
            before_tile(tile, tiles)?;
            let core_end = (core_start + stride).min(frames);
            let win_start = core_start.saturating_sub(overlap_frames);
            let win_end = (core_end + overlap_frames).min(frames);
            // The last window takes the partial hop at the end too, as one pass sees it.
            let sample_end = if win_end == frames { samples } else { win_end * hop };
            let window = audio.narrow(2, win_start * hop, sample_end - win_start * hop)?;
            let posterior = self.encode(&window)?;
            let keep = (core_start - win_start, core_end - core_start);
            means.push(posterior.mean.narrow(2, keep.0, keep.1)?);
            stds.push(posterior.std.narrow(2, keep.0, keep.1)?);
        }
        Ok(Posterior { mean: Tensor::cat(&means, 2)?, std: Tensor::cat(&stds, 2)? })
    }

    /// Latents (B, decoder_input_channels, T) -> audio (B, audio_channels, T·hop).
    pub fn decode(&self, latents: &Tensor) -> Result<Tensor> {
        self.decoder.forward(latents)
    }

    /// `decode` in windows of `chunk_frames` latent frames, as upstream's default tiled decode
    /// (`vae_decode_chunks.py`): cores of `chunk_frames - 2·overlap_frames` frames, each decoded
    /// with up to `overlap_frames` of context on either side that is decoded and thrown away;
    /// batch items one at a time. Memory is bounded by the window instead of the song. The
    /// result equals `decode` (to float rounding) once the overlap covers the decoder's receptive
    /// field, about 9 frames for the Oobleck stack; with less, window edges leak into the cores.
    pub fn decode_tiled(&self, latents: &Tensor, chunk_frames: usize, overlap_frames: usize) -> Result<Tensor> {
        self.decode_tiles(latents, chunk_frames, overlap_frames, |_, _| Ok(()))
    }

    /// [`Vae::decode_tiled`], calling `before_tile(index, count)` before each window is decoded;
    /// an error from it stops the decode (cancellation lands within one tile).
    pub fn decode_tiles(
        &self,
        latents: &Tensor,
        chunk_frames: usize,
        overlap_frames: usize,
        mut before_tile: impl FnMut(usize, usize) -> Result<()>,
    ) -> Result<Tensor> {
        let (batch, _, frames) = latents.dims3()?;
        if frames <= chunk_frames {
            before_tile(0, batch)?;
            return self.decode(latents);
        }
        let Some(stride) = chunk_frames.checked_sub(2 * overlap_frames).filter(|&s| s > 0) else {
            candle_core::bail!(
                "decode_tiled: a chunk of {chunk_frames} frames must exceed twice the overlap of {overlap_frames}"
            )
        };
        let mut items = Vec::with_capacity(batch);
        for item in 0..batch {
            let latents = latents.narrow(0, item, 1)?;
            let mut cores = Vec::with_capacity(frames.div_ceil(stride));
            let tiles = frames.div_ceil(stride);
            for (tile, core_start) in (0..frames).step_by(stride).enumerate() {
                before_tile(item * tiles + tile, batch * tiles)?;
                let core_end = (core_start + stride).min(frames);
                let win_start = core_start.saturating_sub(overlap_frames);
                let win_end = (core_end + overlap_frames).min(frames);
                let audio = self.decode(&latents.narrow(2, win_start, win_end - win_start)?)?;
                // Upstream scales frames to samples by the window's decoded length (exactly the
                // hop for even strides) and rounds.
                let samples = audio.dim(2)?;
                let per_frame = samples as f64 / (win_end - win_start) as f64;
                let trim_start = ((core_start - win_start) as f64 * per_frame).round() as usize;
                let trim_end = ((win_end - core_end) as f64 * per_frame).round() as usize;
                cores.push(audio.narrow(2, trim_start, samples - trim_end - trim_start)?);
            }
            items.push(Tensor::cat(&cores, 2)?);
        }
        Tensor::cat(&items, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use std::collections::HashMap;

    fn random_unit(channels: usize, dilation: usize) -> ResidualUnit {
        let dev = Device::Cpu;
        let randn = |shape: &[usize], scale: f64| (Tensor::randn(0f32, 1., shape, &dev).unwrap() * scale).unwrap();
        let mut tensors = HashMap::new();
        for snake in ["snake1", "snake2"] {
            tensors.insert(format!("{snake}.alpha"), randn(&[1, channels, 1], 0.3));
            tensors.insert(format!("{snake}.beta"), randn(&[1, channels, 1], 0.3));
        }
        for (conv, k) in [("conv1", 7), ("conv2", 1)] {
            tensors.insert(format!("{conv}.weight_v"), randn(&[channels, channels, k], 1.0));
            tensors.insert(format!("{conv}.weight_g"), randn(&[channels, 1, 1], 0.5));
            tensors.insert(format!("{conv}.bias"), randn(&[channels], 0.1));
        }
        ResidualUnit::load(VarBuilder::from_tensors(tensors, DType::F32, &dev), channels, dilation).unwrap()
    }

    /// The fused CPU pass against the op-by-op path: block edges, the zero padding at both ends
    /// of the signal, batches, and signals shorter than the kernel's reach.
    #[test]
    fn fused_residual_unit_matches_op_by_op() {
        for (channels, dilation, batch, len) in [(8, 1, 1, 1000), (8, 9, 2, 700), (16, 3, 1, 20_000), (4, 9, 2, 5)] {
            let unit = random_unit(channels, dilation);
            let x = Tensor::randn(0f32, 1., (batch, channels, len), &Device::Cpu).unwrap();
            let fused = unit.forward_cpu_f32(&x).unwrap().expect("contiguous f32 on the CPU takes the fused path");
            let reference = unit.forward_ops(&x).unwrap();
            let scale = reference.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            let error = (fused - &reference).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(error <= 1e-5 * scale, "C {channels}, dilation {dilation}, len {len}: error {error} of {scale}");
        }
    }

    /// The framed strided conv against candle's `conv1d`: the encoder's (k, s, p) pairs, odd
    /// lengths (a partial last stride is dropped), batches, and blocks of columns.
    #[test]
    fn framed_strided_conv_matches_candle() {
        let dev = Device::Cpu;
        for (inp, out, s, batch, len) in [(3, 5, 2usize, 2, 1001), (4, 6, 4, 1, 4099), (2, 3, 6, 2, 777), (8, 4, 10, 1, 5003), (300, 2, 2, 1, 20_000)] {
            let (k, p) = (2 * s, s.div_ceil(2));
            let weight = Tensor::randn(0f32, 1., (out, inp, k), &dev).unwrap();
            let bias = Tensor::randn(0f32, 1., out, &dev).unwrap();
            let conv = Conv1d::new(weight.clone(), Some(bias.clone()), s, p, 1).unwrap();
            let x = Tensor::randn(0f32, 1., (batch, inp, len), &dev).unwrap();
            let got = conv.forward(&x).unwrap();
            let want = x.conv1d(&weight, p, s, 1, 1).unwrap().broadcast_add(&bias.reshape((1, out, 1)).unwrap()).unwrap();
            assert_eq!(got.dims(), want.dims(), "k {k}, s {s}");
            let scale = want.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            let error = (got - &want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(error <= 1e-5 * scale, "k {k}, s {s}, len {len}: error {error} of {scale}");
        }
    }

    #[test]
    fn non_contiguous_input_takes_the_op_by_op_path() {
        let unit = random_unit(4, 1);
        let x = Tensor::randn(0f32, 1., (1, 300, 4), &Device::Cpu).unwrap().transpose(1, 2).unwrap();
        assert!(unit.forward_cpu_f32(&x).unwrap().is_none());
        assert_eq!(unit.forward(&x).unwrap().dims(), &[1, 4, 300]);
    }
}
