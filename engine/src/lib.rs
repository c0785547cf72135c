//! Backline's engine: everything that is not the plugin. A map of the modules, from the leaves up:
//!
//! - [`task`]: the vocabulary: the six tasks, the model kinds and their step limits, track names, keys.
//! - [`timing`]: the model's time base (sample rate, hop, latent frame rate, duration limits).
//! - [`progress`]: progress out and cancellation in, shared by the job engine and the pipeline.
//! - [`alloc`]: huge-page-backed buffers for weights and large activations.
//! - [`audio`]: the musical grid, [`audio::AudioBuffer`], decode, resample, levels, WAV/FLAC writes.
//! - [`prompt`]: the DiT's text prompts (instructions, caption and metas, lyrics), byte-exact with upstream.
//! - [`request`]: [`request::GenerationRequest`] in ACE-Step's field names: parse, validate, resolve.
//! - [`kernels`]: CPU kernels below the networks (blocked attention with its masks, the VAE's
//!   fused residual unit).
//! - [`model`]: the ACE-Step 1.5 networks in candle (DiT, condition encoders, FSQ, VAE, text encoder).
//! - [`checkpoint`]: checkpoint folders in the published layout, validated and loaded; synthetic sets.
//! - [`hub`]: downloading the published folders from the model hub, resumable and hash-checked.
//! - [`sampling`]: turbo and base schedules, APG/ADG guidance, ODE/SDE, cover and repaint controls.
//! - [`error`]: [`error::JobError`], why a job did not produce audio, with its cause kept as a value.
//! - [`store`]: the process's resident models (text encoder and VAE shared, DiTs under a budget).
//! - [`pipeline`]: one admitted job end to end: encode, condition, sample, decode, recipe.
//! - [`job`]: the job engine: one worker thread, FIFO jobs, events, cancel, panic recovery.
//! - [`backend`]: the [`backend::Backend`] contract and [`backend::LocalBackend`], which every
//!   front end (the plugin, the CLI, the server) submits through.
//! - `server` (feature `server`): ACE-Step's REST API over a backend, for `backline serve`.

pub mod alloc;
pub mod audio;
pub mod backend;
pub mod checkpoint;
pub mod error;
pub mod hub;
pub mod job;
pub mod kernels;
pub mod lm;
pub mod model;
pub mod pipeline;
pub mod precision;
pub mod progress;
pub mod prompt;
pub mod request;
pub mod sampling;
#[cfg(feature = "server")]
pub mod server;
pub mod store;
pub mod task;
pub mod timing;
