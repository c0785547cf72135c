//! What each task feeds the model (`model-spec.md` section 4.2): the latent length, the context
//! source and chunk mask, the cover switch, the repaint guide and waveform splice, and the
//! reference clip for the timbre encoder.
//!
//! | task | context source | chunk mask | is_cover |
//! |---|---|---|---|
//! | text2music | silence latent | 1 | no |
//! | cover | source (the model takes its FSQ round trip) | 1 | yes |
//! | repaint | source, silence inside the window | 1; explicit mode: 1 inside the window, 0 outside | no |
//! | lego | source (kept inside the window too) | 1; explicit mode: 1 inside the window, 0 outside | no |
//! | extract, complete | source | 1 | no |
//!
//! Repaint and lego both hold the source outside the window (step injection, edge blend,
//! waveform splice), as upstream does for any item with a repaint window. The chunk mask follows
//! the request's [`ChunkMaskMode`]: upstream's default, auto, is 1 everywhere.

use std::sync::Arc;

use candle_core::{DType, Tensor};

use super::recipe::{samples_sha256, AudioInput};
use super::source::{pad, reference_clip, LatentCache};
use super::{check_finite, Pipeline};
use crate::audio::{AudioBuffer, MODEL_SAMPLE_RATE};
use crate::backend::Admitted;
use crate::error::JobError;
use crate::progress::{JobContext, StopSignal};
use crate::prompt::PromptInputs;
use crate::request::SourceSpan;
use crate::store::ResidentVae;
use crate::sampling::{RepaintGuide, RepaintMode, SeededNoise};
use crate::task::{ChunkMaskMode, TaskType};
use crate::timing::{FALLBACK_DURATION_S, HOP, MIN_LATENT_FRAMES};

/// The VAE encode's tile: windows of this many latent frames (20 s) with this many frames of
/// context on each side, decoded and thrown away. The encoder sees about 6 frames either side
/// (its receptive field), so 16 frames of context makes the tiles equal to one pass to float
/// rounding, and memory stays that of one window whatever the source's length.
pub const ENCODE_CHUNK_FRAMES: usize = 500;
pub const ENCODE_OVERLAP_FRAMES: usize = 16;

/// Encoded source audio.
pub struct SourceLatents {
    /// `[batch, frames, 64]`: the raw VAE latents, one copy per batch item.
    pub latents_batch: Tensor,
    pub record: AudioInput,
}

/// Encoded reference audio for the timbre encoder.
pub struct ReferenceLatents {
    /// `[1, 750, 64]`.
    pub latents: Tensor,
    pub record: AudioInput,
}

/// After decoding a repaint: keep the source's waveform outside the window, crossfading over
/// `crossfade` samples outside each edge.
pub struct Splice {
    original: AudioBuffer,
    window: (usize, usize),
    crossfade: usize,
}

impl Splice {
    /// `out = m·generated + (1 − m)·original`, m = 1 inside the window, ramping to 0 outside.
    pub fn apply(&self, audio: &mut AudioBuffer) {
        let (start, end) = self.window;
        let n = self.crossfade;
        let weight = |i: usize| -> f32 {
            if (start..end).contains(&i) {
                1.0
            } else if i < start && start - i <= n {
                (n + 1 - (start - i)) as f32 / (n + 1) as f32
            } else if i >= end && i - end < n {
                (n - (i - end)) as f32 / (n + 1) as f32
            } else {
                0.0
            }
        };
        for (generated, original) in audio.channels.iter_mut().zip(&self.original.channels) {
            for (i, (g, o)) in generated.iter_mut().zip(original).enumerate() {
                let m = weight(i);
                *g = m * *g + (1.0 - m) * o;
            }
        }
    }
}

/// Everything task-specific, ready for the condition encoder and the sampler.
pub struct TaskInputs {
    /// Latent frames of the result.
    pub frames: usize,
    /// The duration the prompt's metas state: the request's for text2music, the (unpadded)
    /// source's for the audio tasks (`core/generation/handler/batch_prep.py:100`).
    pub prompt_duration: Option<f64>,
    /// `[batch, frames, 64]` and `[batch, frames, 64]`.
    pub context_source: Tensor,
    pub chunk_mask: Tensor,
    pub is_cover: bool,
    pub source: Option<SourceLatents>,
    pub reference: Option<ReferenceLatents>,
    pub repaint: Option<RepaintGuide>,
    pub splice: Option<Splice>,
}

impl TaskInputs {
    /// The inputs of `job`. `vae` is filled at the first audio input the cache lacks; the
    /// caller lets go of it.
    pub fn prepare(
        p: &Pipeline,
        job: &Admitted,
        vae: &mut Option<Arc<ResidentVae>>,
        cache: &mut LatentCache,
        ctx: &JobContext,
    ) -> Result<Self, JobError> {
        let resolved = &job.resolved;
        let batch = resolved.batch_size();
        let fail = |e| JobError::model("task inputs", e);
        let hop = p.hop;
        let task = resolved.task_type;

        let reference = match &job.reference {
            Some(input) => {
                let clip = reference_clip(&input.audio);
                let (latents, record) = encode(p, vae, &clip, &input.label, cache, ctx)?;
                Some(ReferenceLatents { latents, record })
            }
            None => None,
        };

        let (Some(input), Some(span)) = (&job.source, job.span) else {
            let duration = resolved.duration_s.unwrap_or(FALLBACK_DURATION_S);
            // `floor(round(duration, 1)·48000) // 1920`, at least upstream's 128 frames.
            let samples = ((duration * 10.0).round() / 10.0 * MODEL_SAMPLE_RATE as f64).floor() as usize;
            let frames = (samples / hop).max(MIN_LATENT_FRAMES);
            let silence = p.silence_frames(frames, batch).map_err(fail)?;
            let context =
                task_context(TaskType::Text2Music, &silence, &silence, None, ChunkMaskMode::Auto).map_err(fail)?;
            return Ok(Self {
                frames,
                prompt_duration: PromptInputs::new(&resolved.recipe).duration,
                context_source: context.context_source,
                chunk_mask: context.chunk_mask,
                is_cover: false,
                source: None,
                reference,
                repaint: None,
                splice: None,
            });
        };

        let audio = &input.audio;
        let source_s = audio.frames() as f64 / MODEL_SAMPLE_RATE as f64;
        let (left, right) = padding_samples(&span);
        let padded = pad(audio, left, right);
        let (latents, record) = encode(p, vae, &padded, &input.label, cache, ctx)?;
        let frames = latents.dim(1).map_err(fail)?;
        let latents_batch = latents.repeat((batch, 1, 1)).map_err(fail)?;
        let silence = p.silence_frames(frames, batch).map_err(fail)?;

        // The window on the padded timeline (repaint and lego only).
        let window_s = resolved.repaint.map(|w| (w.start_s + span.left_pad_s, w.end_s.unwrap_or(source_s) + span.left_pad_s));
        let window = window_s.map(|(start_s, end_s)| window_frames(start_s, end_s, frames));
        let TaskContext { context_source, chunk_mask, window_mask } =
            task_context(task, &latents_batch, &silence, window, resolved.recipe.chunk_mask_mode).map_err(fail)?;

        // Repaint and lego hold the source outside the window: the sampler's injection and edge
        // blend, and (unless aggressive) the waveform splice.
        let mut repaint = None;
        let mut splice = None;
        if let (Some(mask), Some((start_s, end_s))) = (window_mask, window_s) {
            let settings = resolved.repaint_settings;
            repaint = Some(RepaintGuide {
                mask,
                clean: latents_batch.clone(),
                injection_ratio: settings.injection_ratio,
                crossfade_frames: settings.crossfade_frames,
            });
            if resolved.recipe.repaint_mode != RepaintMode::Aggressive {
                // `repaint_waveform_splice.py` truncates seconds to samples.
                let rate = MODEL_SAMPLE_RATE as f64;
                let samples = padded.frames();
                let to_sample = |s: f64| ((s * rate).max(0.0) as usize).min(samples);
                splice = Some(Splice {
                    original: padded.clone(),
                    window: (to_sample(start_s), to_sample(end_s)),
                    crossfade: (settings.splice_crossfade_s * rate) as usize,
                });
            }
        }
        Ok(Self {
            frames,
            prompt_duration: Some(source_s),
            context_source,
            chunk_mask,
            is_cover: task == TaskType::Cover,
            source: Some(SourceLatents { latents_batch, record }),
            reference,
            repaint,
            splice,
        })
    }
}

/// Samples of silence before and after the source for a window reaching past it: upstream's
/// `prepare_padding_info` truncates the padding's seconds to samples.
pub fn padding_samples(span: &SourceSpan) -> (usize, usize) {
    let rate = MODEL_SAMPLE_RATE as f64;
    ((span.left_pad_s * rate) as usize, (span.right_pad_s * rate) as usize)
}

/// The window `[start_s, end_s)` of the padded timeline in latent frames, as upstream's
/// `conditioning_masks.py` computes it: `int(seconds · 48000 // 1920)`, the start clamped to the
/// latents and the end at least one frame after it.
pub fn window_frames(start_s: f64, end_s: f64, frames: usize) -> (usize, usize) {
    let frame = |s: f64| (s * MODEL_SAMPLE_RATE as f64).div_euclid(HOP as f64).max(0.0) as usize;
    let start = frame(start_s).min(frames.saturating_sub(1));
    let end = frame(end_s).min(frames).max(start + 1);
    (start, end)
}


/// The task's part of the DiT's context.
pub struct TaskContext {
    /// `[batch, frames, channels]`: what the model sees as the source.
    pub context_source: Tensor,
    /// `[batch, frames, channels]`: 1 where the model writes, 0 where it keeps the source.
    pub chunk_mask: Tensor,
    /// `[batch, frames]`, 1 inside the window: repaint and lego hold the source outside it.
    pub window_mask: Option<Tensor>,
}

/// The context of `task` from the source latents (`[batch, frames, channels]`; ignored by
/// text2music) and the silence latent of the same shape, with the window in frames for repaint
/// and lego (see the module's table).
pub fn task_context(
    task: TaskType,
    latents: &Tensor,
    silence: &Tensor,
    window: Option<(usize, usize)>,
    mode: ChunkMaskMode,
) -> candle_core::Result<TaskContext> {
    let ones = silence.ones_like()?;
    let (window, task) = match (task, window) {
        (TaskType::Repaint | TaskType::Lego, Some(w)) => (w, task),
        (TaskType::Text2Music, _) => {
            return Ok(TaskContext { context_source: silence.clone(), chunk_mask: ones, window_mask: None })
        }
        _ => return Ok(TaskContext { context_source: latents.clone(), chunk_mask: ones, window_mask: None }),
    };
    let (batch, frames, _) = latents.dims3()?;
    let row: Vec<f32> = (0..frames).map(|f| if (window.0..window.1).contains(&f) { 1.0 } else { 0.0 }).collect();
    let mask = Tensor::from_vec(row, (1, frames), latents.device())?.repeat((batch, 1))?.to_dtype(latents.dtype())?;
    let inside = mask.unsqueeze(2)?.broadcast_as(latents.shape())?;
    // Lego keeps the source inside the window as context; repaint silences it there.
    let context_source = match task {
        TaskType::Repaint => inside.to_dtype(DType::U8)?.where_cond(silence, latents)?,
        _ => latents.clone(),
    };
    let chunk_mask = match mode {
        ChunkMaskMode::Auto => ones,
        ChunkMaskMode::Explicit => inside.contiguous()?,
    };
    Ok(TaskContext { context_source, chunk_mask, window_mask: Some(mask) })
}

/// VAE-encode 48 kHz stereo `audio` to `[1, frames, 64]` latents in tiles (progress per tile,
/// cancel between tiles), or take them from `cache` when the same samples went through the same
/// VAE before. The posterior is sampled, as upstream does, with noise seeded from the audio's
/// hash, so one input always encodes the same way.
fn encode(
    p: &Pipeline,
    vae: &mut Option<Arc<ResidentVae>>,
    audio: &AudioBuffer,
    label: &str,
    cache: &mut LatentCache,
    ctx: &JobContext,
) -> Result<(Tensor, AudioInput), JobError> {
    let fail = |e| JobError::model("VAE encode", e);
    let audio_sha256 = samples_sha256(audio.channels.iter().map(Vec::as_slice));
    // The VAE's weights are part of the key: two checkpoint folders encode differently.
    let key = format!("{}:{audio_sha256}", p.vae_file.fingerprint);
    let latents = match cache.get(&key) {
        Some(latents) => latents,
        None => {
            let samples: Vec<f32> = audio.channels.iter().flatten().copied().collect();
            let wave = Tensor::from_vec(samples, (1, audio.channels.len(), audio.frames()), &p.device)
                .and_then(|t| t.to_dtype(p.dtype))
                .map_err(fail)?;
            let vae = match vae {
                Some(vae) => vae,
                None => vae.insert(p.vae(ctx)?),
            };
            ctx.stage("encode");
            let stop = StopSignal::new();
            let mut tiles = 0;
            let posterior = vae.vae.encode_tiles(&wave, ENCODE_CHUNK_FRAMES, ENCODE_OVERLAP_FRAMES, |tile, count| {
                stop.check(ctx)?;
                if tile > 0 {
                    ctx.step(tile - 1, count);
                }
                tiles = count;
                Ok(())
            });
            let posterior = stop.outcome(posterior).map_err(JobError::from_stopped("VAE encode"))?;
            ctx.step(tiles.saturating_sub(1), tiles);
            let (_, channels, frames) = posterior.mean.dims3().map_err(fail)?;
            let seed = u32::from_str_radix(&audio_sha256[..8], 16).unwrap_or(0);
            let noise = SeededNoise::new(&[seed])
                .draw(channels, frames, &p.device)
                .and_then(|n| n.to_dtype(p.dtype))
                .map_err(fail)?;
            let latents = posterior.sample(&noise).and_then(|z| z.transpose(1, 2)?.contiguous()).map_err(fail)?;
            check_finite(&latents, "VAE encode", &format!("the latents of {label}"))?;
            cache.insert(key, latents.clone());
            latents
        }
    };
    let values: Vec<f32> = latents.to_dtype(DType::F32).and_then(|t| t.flatten_all()?.to_vec1()).map_err(fail)?;
    let record = AudioInput { path: label.to_string(), audio_sha256, latents_sha256: samples_sha256([values.as_slice()]) };
    Ok((latents, record))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splice_keeps_the_original_outside_the_window_with_ramps() {
        let original = AudioBuffer::new(MODEL_SAMPLE_RATE, vec![vec![0.0; 20]]);
        let mut generated = AudioBuffer::new(MODEL_SAMPLE_RATE, vec![vec![1.0; 20]]);
        Splice { original, window: (8, 12), crossfade: 3 }.apply(&mut generated);
        let got = &generated.channels[0];
        assert_eq!(&got[..5], &[0.0; 5]);
        assert_eq!(&got[5..8], &[0.25, 0.5, 0.75]);
        assert_eq!(&got[8..12], &[1.0; 4]);
        assert_eq!(&got[12..15], &[0.75, 0.5, 0.25]);
        assert_eq!(&got[15..], &[0.0; 5]);
    }
}
