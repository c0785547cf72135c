//! ACE-Step 1.5's time base, stated once: the audio the VAE takes, the latent frames the DiT
//! works in, and how long a generation may be. Everything else derives from these.

/// The VAE's sample rate (`vae/config.json`: `sampling_rate`).
pub const SAMPLE_RATE: u32 = 48_000;
/// The VAE's channel count: it encodes and decodes stereo.
pub const CHANNELS: usize = 2;
/// Samples per latent frame: the product of the VAE's downsampling ratios (2·4·4·6·10).
pub const HOP: usize = 1920;
/// Latent frames per second (25).
pub const LATENT_FRAMES_PER_SECOND: f64 = SAMPLE_RATE as f64 / HOP as f64;
/// Shortest and longest audio the DiT makes, in seconds (`constants.py:58-59`).
pub const DURATION_MIN_S: f64 = 10.0;
pub const DURATION_MAX_S: f64 = 600.0;
/// What text2music generates when no duration is given and no LM picks one
/// (`core/generation/handler/padding_utils.py:81`). The metas still say 30 seconds, as upstream's do.
pub const FALLBACK_DURATION_S: f64 = 120.0;
/// The fewest latent frames a generation has (upstream pads shorter requests to 128).
pub const MIN_LATENT_FRAMES: usize = 128;
