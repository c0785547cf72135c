//! What each task feeds the model (`model-spec.md` section 4.2): the latent length, the context
//! source and chunk mask, the cover switch, the repaint guide and waveform splice, and the
//! reference clip for the timbre encoder.
//!
//! | task | context source | chunk mask | is_cover |
//! |---|---|---|---|
//! | text2music | silence latent | 1 | no |
//! | cover | source (the model takes its FSQ round trip) | 1 | yes |
//! | repaint | source, silence inside the window | 1 inside the window, 0 outside | no |
//! | lego | source (kept inside the window too) | 1 inside the window, 0 outside | no |
//! | extract, complete | source | 1 | no |
//!
//! Repaint and lego both hold the source outside the window (step injection, edge blend,
//! waveform splice), as upstream does for any item with a repaint window.
//!
//! Upstream's chunk mask became "1 everywhere" for repaint in March 2026 by accident (a bool
//! tensor given 2.0); Backline sends the explicit 0/1 mask the model was trained with.

use std::path::Path;

use candle_core::{DType, Tensor};

use super::recipe::{samples_sha256, AudioInput};
use super::source::{load_model_audio, pad, reference_clip};
use super::{check_finite, model_error, Pipeline, PipelineError};
use crate::audio::{AudioBuffer, MODEL_SAMPLE_RATE};
use crate::job::JobContext;
use crate::prompt::PromptInputs;
use crate::request::ResolvedRequest;
use crate::sampling::{RepaintGuide, RepaintMode, SeededNoise};
use crate::task::TaskType;

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
    /// The prompts' inputs, with the duration the metas state.
    pub prompt: PromptInputs,
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
    pub fn prepare(p: &mut Pipeline, resolved: &ResolvedRequest, ctx: &JobContext) -> Result<Self, PipelineError> {
        let batch = resolved.batch_size();
        let fail = model_error("task inputs", ctx);
        let hop = p.vae.config().hop_length();
        let task = resolved.task_type;

        let reference = match &resolved.reference_audio {
            Some(path) => {
                let clip = reference_clip(&load_model_audio(Path::new(path), "reference")?);
                let (latents, record) = p.encode(&clip, path, ctx)?;
                Some(ReferenceLatents { latents, record })
            }
            None => None,
        };

        let Some(path) = resolved.src_audio.as_deref().filter(|_| task.needs_source_audio()) else {
            let duration = resolved.duration_s.unwrap_or(30.0);
            // `floor(round(duration, 1)·48000) // 1920`, at least upstream's 128 frames.
            let samples = ((duration * 10.0).round() / 10.0 * MODEL_SAMPLE_RATE as f64).floor() as usize;
            let frames = (samples / hop).max(128);
            let silence = p.silence_frames(frames, batch).map_err(&fail)?;
            return Ok(Self {
                frames,
                prompt: resolved.prompt.clone(),
                chunk_mask: silence.ones_like().map_err(&fail)?,
                context_source: silence,
                is_cover: false,
                source: None,
                reference,
                repaint: None,
                splice: None,
            });
        };

        let audio = load_model_audio(Path::new(path), "source")?;
        let source_s = audio.frames() as f64 / MODEL_SAMPLE_RATE as f64;
        let span = resolved.source_span(source_s)?;
        let rate = MODEL_SAMPLE_RATE as f64;
        let left = (span.left_pad_s * rate).round() as usize;
        let right = (span.right_pad_s * rate).round() as usize;
        let padded = pad(&audio, left, right, hop);
        let (latents, record) = p.encode(&padded, path, ctx)?;
        let frames = latents.dim(1).map_err(&fail)?;
        let latents_batch = latents.repeat((batch, 1, 1)).map_err(&fail)?;
        let ones = latents_batch.ones_like().map_err(&fail)?;

        // The window in latent frames of the padded timeline (upstream `conditioning_masks.py`).
        // The window in latent frames of the padded timeline, with upstream's arithmetic
        // (`conditioning_masks.py`: `int(seconds * 48000 // 1920)`, clamped).
        let window = resolved.repaint.map(|w| {
            let start_s = w.start_s + span.left_pad_s;
            let end_s = w.end_s.unwrap_or(source_s) + span.left_pad_s;
            let frame = |s: f64| (s * rate).div_euclid(hop as f64).max(0.0) as usize;
            let start = frame(start_s).min(frames - 1);
            let end = frame(end_s).min(frames).max(start + 1);
            (start, end, start_s, end_s)
        });

        // Repaint and lego hold the source outside the window: the mask for the chunk mask and
        // the sampler's injection and edge blend, and (unless aggressive) the waveform splice.
        // Upstream builds the same `repaint_mask` for both tasks (`conditioning_masks.py`).
        let mut repaint = None;
        let mut splice = None;
        let mut context_source = latents_batch.clone();
        let mut chunk_mask = ones;
        if let (TaskType::Repaint | TaskType::Lego, Some((start, end, start_s, end_s))) = (task, window) {
            let row: Vec<f32> = (0..frames).map(|f| if (start..end).contains(&f) { 1.0 } else { 0.0 }).collect();
            let mask = Tensor::from_vec(row, (1, frames), &p.device)
                .and_then(|m| m.repeat((batch, 1))?.to_dtype(p.dtype))
                .map_err(&fail)?;
            let inside = mask.unsqueeze(2).and_then(|m| m.broadcast_as(latents_batch.shape())).map_err(&fail)?;
            if task == TaskType::Repaint {
                // Lego keeps the source inside the window as context; repaint silences it.
                let silence = p.silence_frames(frames, batch).map_err(&fail)?;
                context_source =
                    inside.to_dtype(DType::U8).and_then(|m| m.where_cond(&silence, &latents_batch)).map_err(&fail)?;
            }
            chunk_mask = inside.to_dtype(p.dtype).and_then(|m| m.contiguous()).map_err(&fail)?;
            let settings = resolved.repaint_settings;
            repaint = Some(RepaintGuide {
                mask,
                clean: latents_batch.clone(),
                injection_ratio: settings.injection_ratio,
                crossfade_frames: settings.crossfade_frames,
            });
            if resolved.recipe.repaint_mode != RepaintMode::Aggressive {
                // `repaint_waveform_splice.py` truncates seconds to samples.
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
            prompt: resolved.prompt_for_source(source_s),
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

impl Pipeline {
    /// VAE-encode 48 kHz stereo `audio` to `[1, frames, 64]` latents, or take them from the cache
    /// when the same samples were encoded before. The posterior is sampled, as upstream does,
    /// with noise seeded from the audio's hash, so one input always encodes the same way.
    pub(super) fn encode(
        &mut self,
        audio: &AudioBuffer,
        path: &str,
        ctx: &JobContext,
    ) -> Result<(Tensor, AudioInput), PipelineError> {
        let fail = model_error("VAE encode", ctx);
        let audio_sha256 = samples_sha256(audio.channels.iter().map(Vec::as_slice));
        let latents = match self.latents.get(&audio_sha256) {
            Some(latents) => latents,
            None => {
                let samples: Vec<f32> = audio.channels.iter().flatten().copied().collect();
                let wave = Tensor::from_vec(samples, (1, audio.channels.len(), audio.frames()), &self.device)
                    .and_then(|t| t.to_dtype(self.dtype))
                    .map_err(&fail)?;
                let posterior = self.vae.encode(&wave).map_err(&fail)?;
                let (_, channels, frames) = posterior.mean.dims3().map_err(&fail)?;
                let seed = u32::from_str_radix(&audio_sha256[..8], 16).unwrap_or(0);
                let noise = SeededNoise::new(&[seed])
                    .draw(channels, frames, &self.device)
                    .and_then(|n| n.to_dtype(self.dtype))
                    .map_err(&fail)?;
                let latents = posterior.sample(&noise).and_then(|z| z.transpose(1, 2)?.contiguous()).map_err(&fail)?;
                check_finite(&latents, &format!("the latents of {path}"))?;
                self.latents.insert(audio_sha256.clone(), latents.clone());
                latents
            }
        };
        let values: Vec<f32> = latents.to_dtype(DType::F32).and_then(|t| t.flatten_all()?.to_vec1()).map_err(&fail)?;
        let record = AudioInput { path: path.to_string(), audio_sha256, latents_sha256: samples_sha256([values.as_slice()]) };
        Ok((latents, record))
    }

    /// How many encoded inputs the cache holds (for tests of the cache).
    pub fn cached_inputs(&self) -> usize {
        self.latents.len()
    }
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
