//! The command line. `generate`'s request flags are the request's fields in kebab-case; their
//! values stay text here and go to the engine's own parser, so a bad value gets the same message
//! as it would in a REST body or a preset.

use std::fs;
use std::path::{Path, PathBuf};

use backline_engine::audio::OutputFormat;
use backline_engine::request::{AudioFormat, GenerationRequest};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::{Map, Value};

#[derive(Parser)]
#[command(name = "backline", version, about = "ACE-Step 1.5 music generation from the command line")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Generate audio: a JSON request and/or flags in, audio files with their recipes out.
    Generate(Box<GenerateArgs>),
    /// List the folders in a checkpoints folder and validate each.
    Models(ModelsArgs),
    /// Validate one checkpoint folder: a DiT, the VAE or the text encoder.
    Check(CheckArgs),
    /// Write a tiny synthetic checkpoint set (if missing) and generate 10 seconds with it.
    Demo(DemoArgs),
}

#[derive(Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub request: RequestFlags,
    /// The checkpoints folder: `acestep-v15-*/`, `vae/`, `Qwen3-Embedding-0.6B/`.
    #[arg(long, value_name = "DIR", env = "BACKLINE_CHECKPOINTS", default_value = "checkpoints")]
    pub checkpoints: PathBuf,
    /// What runs the models: cpu, cuda, cuda:N, metal or metal:N (GPU backends only in builds
    /// with the `cuda` or `metal` feature).
    #[arg(long, value_name = "DEVICE", env = "BACKLINE_DEVICE", default_value = "cpu")]
    pub device: String,
    /// File format: wav (32-bit float), wav16, wav24 or flac (24-bit). Unset: the request's
    /// `audio_format` (flac, wav or wav32), else flac.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Where the files go; created if missing.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out: PathBuf,
    /// File name stem: files are `<out>/<name>-<seed>.<ext>`. Default: `backline-<task>`.
    #[arg(long)]
    pub name: Option<String>,
    /// Replace files that are already there (otherwise the run stops before generating).
    #[arg(long)]
    pub overwrite: bool,
}

#[derive(Args)]
pub struct ModelsArgs {
    /// The checkpoints folder to list.
    #[arg(long, value_name = "DIR", env = "BACKLINE_CHECKPOINTS", default_value = "checkpoints")]
    pub checkpoints: PathBuf,
}

#[derive(Args)]
pub struct CheckArgs {
    /// One checkpoint folder, e.g. `checkpoints/acestep-v15-turbo`.
    pub dir: PathBuf,
}

#[derive(Args)]
pub struct DemoArgs {
    /// Where the demo's files go. Default `target/backline-demo/out`, where earlier demo output
    /// is replaced; elsewhere existing files are kept unless `--overwrite`.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// The checkpoints folder; the tiny synthetic set is written there if it has no turbo model.
    /// Default `target/backline-demo/checkpoints`.
    #[arg(long, value_name = "DIR")]
    pub checkpoints: Option<PathBuf>,
    /// Replace existing files in a `--out` folder.
    #[arg(long)]
    pub overwrite: bool,
}

/// The file formats the CLI writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// 32-bit float WAV.
    Wav,
    /// 16-bit PCM WAV.
    Wav16,
    /// 24-bit PCM WAV.
    Wav24,
    /// 24-bit FLAC.
    Flac,
}

impl Format {
    pub fn output(self) -> OutputFormat {
        match self {
            Format::Wav => OutputFormat::WavF32,
            Format::Wav16 => OutputFormat::WavPcm16,
            Format::Wav24 => OutputFormat::WavPcm24,
            Format::Flac => OutputFormat::Flac24,
        }
    }

    /// The request's name for it, so the recipe says what was written (upstream's `wav` is PCM,
    /// `wav32` float).
    pub fn audio_format(self) -> AudioFormat {
        match self {
            Format::Wav => AudioFormat::Wav32,
            Format::Wav16 | Format::Wav24 => AudioFormat::Wav,
            Format::Flac => AudioFormat::Flac,
        }
    }

    /// The format a request's `audio_format` asks for, if the CLI can write it.
    pub fn from_request(format: AudioFormat) -> Option<Self> {
        match format {
            AudioFormat::Flac => Some(Format::Flac),
            AudioFormat::Wav => Some(Format::Wav16),
            AudioFormat::Wav32 => Some(Format::Wav),
            AudioFormat::Mp3 | AudioFormat::Opus | AudioFormat::Aac => None,
        }
    }
}

/// The request's fields as flags. Every value is optional: unset flags leave the request file's
/// value (or the engine's default) alone.
#[derive(Args)]
pub struct RequestFlags {
    /// Start from this JSON request (or a recipe written beside an earlier result); flags override
    /// its fields.
    #[arg(long, value_name = "FILE.json")]
    pub request: Option<PathBuf>,
    /// text2music, repaint, cover, lego, extract or complete. Default text2music.
    #[arg(long)]
    pub task_type: Option<String>,
    /// What the music is: genre, instruments, mood.
    #[arg(long)]
    pub caption: Option<String>,
    /// Lyrics; tags such as [Verse] are plain text.
    #[arg(long, conflicts_with = "lyrics_file")]
    pub lyrics: Option<String>,
    /// Read the lyrics from a text file.
    #[arg(long, value_name = "PATH")]
    pub lyrics_file: Option<PathBuf>,
    /// No vocals (replaces the lyrics with [Instrumental]); `--instrumental=false` turns it off.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub instrumental: Option<String>,
    /// Language code of the lyrics, e.g. en, de, ja.
    #[arg(long)]
    pub vocal_language: Option<String>,
    /// Beats per minute, 30 to 300.
    #[arg(long)]
    pub bpm: Option<String>,
    /// Key, e.g. "F# minor".
    #[arg(long, visible_alias = "key")]
    pub keyscale: Option<String>,
    /// Time signature: 2, 3, 4, 6, 2/4, 3/4, 4/4 or 6/8.
    #[arg(long, visible_alias = "time-signature")]
    pub timesignature: Option<String>,
    /// Seconds to generate (text2music), 10 to 600.
    #[arg(long, allow_negative_numbers = true)]
    pub duration: Option<String>,
    /// The source audio file (every task but text2music).
    #[arg(long, value_name = "PATH")]
    pub src_audio: Option<String>,
    /// Audio whose timbre conditions the result.
    #[arg(long, value_name = "PATH")]
    pub reference_audio: Option<String>,
    /// Start of the repaint/lego window in seconds (negative out-paints before the source).
    #[arg(long, allow_negative_numbers = true, value_name = "SECONDS")]
    pub repainting_start: Option<String>,
    /// End of the repaint/lego window in seconds (-1: the source's end).
    #[arg(long, allow_negative_numbers = true, value_name = "SECONDS")]
    pub repainting_end: Option<String>,
    /// aggressive, balanced or conservative.
    #[arg(long)]
    pub repaint_mode: Option<String>,
    /// Balanced mode's dial, 0 to 1.
    #[arg(long)]
    pub repaint_strength: Option<String>,
    /// Share of the steps that follow the source's structure (cover), 0 to 1.
    #[arg(long)]
    pub audio_cover_strength: Option<String>,
    /// How close to the source the noise starts (cover), 0 to 1.
    #[arg(long)]
    pub cover_noise_strength: Option<String>,
    /// The track lego adds or extract pulls out, e.g. drums, bass, vocals.
    #[arg(long)]
    pub track_name: Option<String>,
    /// The tracks complete adds; repeat the flag or separate with commas.
    #[arg(long, value_delimiter = ',')]
    pub track_classes: Vec<String>,
    /// Model evaluations (default 8 on turbo, 32 on base).
    #[arg(long)]
    pub inference_steps: Option<String>,
    /// Timestep shift, 1 to 5.
    #[arg(long)]
    pub shift: Option<String>,
    /// CFG strength on base/SFT, 1 to 15.
    #[arg(long)]
    pub guidance_scale: Option<String>,
    /// Timestep where CFG starts applying, 0 to 1.
    #[arg(long)]
    pub cfg_interval_start: Option<String>,
    /// Timestep where CFG stops applying, 0 to 1.
    #[arg(long)]
    pub cfg_interval_end: Option<String>,
    /// Adaptive dual guidance instead of APG (base/SFT).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub use_adg: Option<String>,
    /// ode or sde.
    #[arg(long)]
    pub infer_method: Option<String>,
    /// A custom schedule from 1 down, comma-separated, e.g. 0.97,0.76,0.5,0.28,0.
    #[arg(long)]
    pub timesteps: Option<String>,
    /// A seed (item i gets seed + i), or one per item, comma-separated; -1 draws one.
    #[arg(long, allow_negative_numbers = true)]
    pub seed: Option<String>,
    /// Draw every seed, ignoring the request file's.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub use_random_seed: Option<String>,
    /// Items to generate, 1 to 8 (default 2, or one per seed given).
    #[arg(long)]
    pub batch_size: Option<String>,
    /// The caption prompt's instruction block, replacing the task's own.
    #[arg(long)]
    pub instruction: Option<String>,
    /// The DiT folder in the checkpoints folder. Default acestep-v15-turbo.
    #[arg(long, value_name = "NAME")]
    pub model: Option<String>,
}

impl RequestFlags {
    /// The request: the `--request` file's fields, then each flag given, parsed by the engine.
    pub fn build(&self) -> Result<GenerationRequest, String> {
        let mut body = match &self.request {
            Some(path) => read_request_file(path)?,
            None => Map::new(),
        };
        for (field, value) in self.given()? {
            body.insert(field.to_string(), value);
        }
        GenerationRequest::from_value(Value::Object(body)).map_err(|e| format!("invalid request: {e}"))
    }

    /// The flags that were given, under the request's canonical field names.
    fn given(&self) -> Result<Vec<(&'static str, Value)>, String> {
        let lyrics = match &self.lyrics_file {
            Some(path) => Some(
                fs::read_to_string(path).map_err(|e| format!("cannot read the lyrics file {}: {e}", path.display()))?,
            ),
            None => self.lyrics.clone(),
        };
        let texts = [
            ("task_type", &self.task_type),
            ("caption", &self.caption),
            ("lyrics", &lyrics),
            ("instrumental", &self.instrumental),
            ("vocal_language", &self.vocal_language),
            ("bpm", &self.bpm),
            ("keyscale", &self.keyscale),
            ("timesignature", &self.timesignature),
            ("duration", &self.duration),
            ("src_audio", &self.src_audio),
            ("reference_audio", &self.reference_audio),
            ("repainting_start", &self.repainting_start),
            ("repainting_end", &self.repainting_end),
            ("repaint_mode", &self.repaint_mode),
            ("repaint_strength", &self.repaint_strength),
            ("audio_cover_strength", &self.audio_cover_strength),
            ("cover_noise_strength", &self.cover_noise_strength),
            ("track_name", &self.track_name),
            ("inference_steps", &self.inference_steps),
            ("shift", &self.shift),
            ("guidance_scale", &self.guidance_scale),
            ("cfg_interval_start", &self.cfg_interval_start),
            ("cfg_interval_end", &self.cfg_interval_end),
            ("use_adg", &self.use_adg),
            ("infer_method", &self.infer_method),
            ("timesteps", &self.timesteps),
            ("seed", &self.seed),
            ("use_random_seed", &self.use_random_seed),
            ("batch_size", &self.batch_size),
            ("instruction", &self.instruction),
            ("model", &self.model),
        ];
        let mut given: Vec<(&'static str, Value)> =
            texts.into_iter().filter_map(|(field, value)| Some((field, Value::String(value.clone()?)))).collect();
        if !self.track_classes.is_empty() {
            let classes = self.track_classes.iter().map(|c| Value::String(c.trim().to_string())).collect();
            given.push(("track_classes", Value::Array(classes)));
        }
        Ok(given)
    }
}

/// A request file's fields under their canonical names, so a flag replaces the field whatever
/// alias the file used. A recipe (written beside each result) holds its request under `request`.
fn read_request_file(path: &Path) -> Result<Map<String, Value>, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("cannot read the request {}: {e}", path.display()))?;
    let mut body: Value =
        serde_json::from_str(&text).map_err(|e| format!("the request {} is not valid JSON: {e}", path.display()))?;
    if let Some(inner) = body.get_mut("request").filter(|r| r.is_object()) {
        body = inner.take();
    }
    let request =
        GenerationRequest::from_value(body).map_err(|e| format!("invalid request in {}: {e}", path.display()))?;
    match serde_json::to_value(&request) {
        Ok(Value::Object(fields)) => Ok(fields),
        Ok(_) => Err("a request did not serialise to a JSON object".into()),
        Err(e) => Err(format!("cannot re-read the request {}: {e}", path.display())),
    }
}
