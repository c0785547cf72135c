//! The command line. `generate`'s request flags are the request's fields in kebab-case; their
//! values stay text here and go to the engine's own parser, so a bad value gets the same message
//! as it would in a REST body or a preset.

use std::fs;
use std::path::{Path, PathBuf};

use backline_engine::audio::OutputFormat;

use crate::bars::BarFlags;
use backline_engine::request::{AudioFormat, GenerationRequest};
use clap::{Arg, ArgAction, ArgMatches, Args, FromArgMatches, Parser, Subcommand, ValueEnum};
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
    /// List the folders in a checkpoints folder and validate each; `models download` fetches them.
    Models(ModelsArgs),
    /// Validate one checkpoint folder: a DiT, the VAE or the text encoder.
    Check(CheckArgs),
    /// Write a tiny synthetic checkpoint set (if missing) and generate 10 seconds with it.
    Demo(DemoArgs),
    /// Ask the 5 Hz LM alone: what audio codes sound like, a whole piece from a short
    /// description, or a caption and lyrics rewritten; the answer is printed as JSON.
    Describe(Box<DescribeArgs>),
    /// Serve ACE-Step 1.5's REST API (its native `/release_task` and `/query_result` routes) on
    /// this machine's engine, so ACE-Step's clients can use it.
    #[cfg(feature = "server")]
    Serve(Box<crate::serve::ServeArgs>),
}

#[derive(Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub request: RequestFlags,
    #[command(flatten)]
    pub bars: BarFlags,
    #[command(flatten)]
    pub window: WindowFlags,
    /// The checkpoints folder: `acestep-v15-*/`, `vae/`, `Qwen3-Embedding-0.6B/`.
    #[arg(long, value_name = "DIR", env = "BACKLINE_CHECKPOINTS", default_value = "checkpoints")]
    pub checkpoints: PathBuf,
    /// What runs the models: cpu, cuda, cuda:N, metal or metal:N (GPU backends only in builds
    /// with the `cuda` or `metal` feature).
    #[arg(long, value_name = "DEVICE", env = "BACKLINE_DEVICE", default_value = "cpu")]
    pub device: String,
    /// How the CPU holds the weights: bf16 (the published weights exactly), f32 (twice the
    /// memory, a few percent faster), q8 (8-bit, about half of bf16) or q4 (4-bit, a quarter).
    #[arg(long, value_name = "PRECISION", env = "BACKLINE_PRECISION", default_value = "bf16")]
    pub precision: String,
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
    /// Generate on an ACE-Step server (`backline serve`, or upstream's) at this address, e.g.
    /// `http://studio-pc:8001`, instead of this machine's engine. Audio inputs are uploaded.
    #[arg(long, value_name = "URL")]
    pub remote: Option<String>,
    /// The remote server's API key (sent as `Authorization: Bearer KEY`).
    #[arg(long, value_name = "KEY", env = "BACKLINE_REMOTE_API_KEY", requires = "remote")]
    pub api_key: Option<String>,
    /// The remote server's API form: native (`/release_task`), jobs (`/v1/music/generate`) or
    /// chat (`/v1/chat/completions`). Unset: asked of the server.
    #[arg(long, value_name = "FORM", requires = "remote", value_parser = ["native", "jobs", "chat"])]
    pub api_form: Option<String>,
}

/// The hosted endpoints' repaint windows (as `backline serve` reads them): an in-paint window
/// that may count back from the source's end, or an out-paint past its ends. Each becomes a
/// repaint window once the source's length is known.
#[derive(Args)]
pub struct WindowFlags {
    /// In-paint from this second of the source (see --start-time-relative-to).
    #[arg(long, value_name = "SECONDS", conflicts_with_all = ["repainting_start", "repainting_end"])]
    pub start_time: Option<String>,
    /// In-paint up to this second (default 30, cut to the source).
    #[arg(long, value_name = "SECONDS", conflicts_with_all = ["repainting_start", "repainting_end"])]
    pub end_time: Option<String>,
    /// `end`: --start-time counts back from the source's end. Default `start`.
    #[arg(long, value_name = "start|end", requires = "start_time")]
    pub start_time_relative_to: Option<String>,
    /// `end`: --end-time counts back from the source's end. Default `start`.
    #[arg(long, value_name = "start|end", requires = "end_time")]
    pub end_time_relative_to: Option<String>,
    /// Out-paint this many seconds before the source.
    #[arg(long, value_name = "SECONDS", conflicts_with_all = ["repainting_start", "repainting_end", "start_time", "end_time"])]
    pub extend_before_duration: Option<String>,
    /// Out-paint this many seconds after the source.
    #[arg(long, value_name = "SECONDS", conflicts_with_all = ["repainting_start", "repainting_end", "start_time", "end_time"])]
    pub extend_after_duration: Option<String>,
}

impl WindowFlags {
    /// The flags given, under the hosted field names.
    pub fn fields(&self) -> Map<String, Value> {
        let given = [
            ("start_time", &self.start_time),
            ("end_time", &self.end_time),
            ("start_time_relative_to", &self.start_time_relative_to),
            ("end_time_relative_to", &self.end_time_relative_to),
            ("extend_before_duration", &self.extend_before_duration),
            ("extend_after_duration", &self.extend_after_duration),
        ];
        given.into_iter().filter_map(|(k, v)| Some((k.to_owned(), Value::String(v.clone()?)))).collect()
    }
}

#[derive(Args)]
pub struct ModelsArgs {
    /// The checkpoints folder to list (or download into).
    #[arg(long, global = true, value_name = "DIR", env = "BACKLINE_CHECKPOINTS", default_value = "checkpoints")]
    pub checkpoints: PathBuf,
    #[command(subcommand)]
    pub action: Option<ModelsAction>,
}

#[derive(Subcommand)]
pub enum ModelsAction {
    /// Download published models from the model hub (`HF_ENDPOINT` names a mirror; `HF_TOKEN`
    /// is sent when set) into the checkpoints folder, resuming partial files, checking every
    /// file's size and hash, then validating each folder.
    Download(DownloadArgs),
}

#[derive(Args)]
pub struct DownloadArgs {
    /// A model to fetch, by folder name (repeatable): acestep-v15-turbo, vae,
    /// Qwen3-Embedding-0.6B, acestep-v15-base, acestep-v15-sft, acestep-v15-turbo-shift1,
    /// acestep-v15-turbo-shift3, acestep-v15-turbo-continuous, acestep-v15-xl-turbo,
    /// acestep-v15-xl-base, acestep-v15-xl-sft. Default: the turbo DiT, the VAE and the text
    /// encoder, all a generation needs.
    #[arg(long = "model", value_name = "NAME")]
    pub models: Vec<String>,
}

#[derive(Args)]
pub struct CheckArgs {
    /// One checkpoint folder, e.g. `checkpoints/acestep-v15-turbo`.
    pub dir: PathBuf,
}

#[derive(Args)]
pub struct DescribeArgs {
    #[command(subcommand)]
    pub mode: DescribeCommand,
    /// The checkpoints folder, with an `acestep-5Hz-lm-*` folder (and, if you have it, upstream's
    /// `genres_vocab.txt`).
    #[arg(long, global = true, value_name = "DIR", env = "BACKLINE_CHECKPOINTS", default_value = "checkpoints")]
    pub checkpoints: PathBuf,
    /// What runs the LM: cpu, cuda, cuda:N, metal or metal:N.
    #[arg(long, global = true, value_name = "DEVICE", env = "BACKLINE_DEVICE", default_value = "cpu")]
    pub device: String,
    /// How the CPU holds the weights: bf16, f32, q8 or q4.
    #[arg(long, global = true, value_name = "PRECISION", env = "BACKLINE_PRECISION", default_value = "bf16")]
    pub precision: String,
    /// The sampling seed (the same seed and settings give the same answer).
    #[arg(long, global = true, default_value_t = 0)]
    pub seed: u64,
    /// Sampling temperature, 0 to 2 (upstream's defaults: 0.3 to understand, 0.85 otherwise).
    #[arg(long, global = true, default_value_t = 0.85)]
    pub lm_temperature: f32,
    /// Top-k (0: off).
    #[arg(long, global = true, default_value_t = 0)]
    pub lm_top_k: usize,
    /// Top-p (1: off, the default here, as upstream's description modes run).
    #[arg(long, global = true, default_value_t = 1.0)]
    pub lm_top_p: f32,
    /// Repetition penalty (1: off).
    #[arg(long, global = true, default_value_t = 1.0)]
    pub lm_repetition_penalty: f32,
}

#[derive(Subcommand)]
pub enum DescribeCommand {
    /// What 5 Hz audio codes sound like: caption, bpm, key, meter, duration, language, genres and
    /// lyrics.
    Understand {
        /// The codes as the LM writes them: `<|audio_code_N|>...`.
        #[arg(long, value_name = "CODES")]
        audio_codes: String,
    },
    /// A whole piece from a short description (upstream's sample mode).
    Sample {
        /// The description, e.g. "a soft Bengali love song for a quiet evening".
        query: String,
        /// No vocals: the lyrics are `[Instrumental]` unless the LM writes some.
        #[arg(long)]
        instrumental: bool,
        /// The lyrics' language (a code such as en, ja, bn).
        #[arg(long)]
        language: Option<String>,
    },
    /// Your caption and lyrics rewritten into fuller ones, the metas you give kept.
    Format {
        #[arg(long, default_value = "")]
        caption: String,
        #[arg(long, default_value = "")]
        lyrics: String,
        #[arg(long)]
        bpm: Option<u32>,
        /// Seconds.
        #[arg(long)]
        duration: Option<u32>,
        /// e.g. "F# minor".
        #[arg(long)]
        key: Option<String>,
        /// 2, 3, 4 or 6.
        #[arg(long)]
        time_signature: Option<String>,
        #[arg(long)]
        language: Option<String>,
    },
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

/// How a request field's flag reads its value (always as text: the engine parses it, so a bad
/// value gets the same message as in a REST body or a preset).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    /// May be negative (`-1`, `-3.5`), which clap would otherwise take for a flag.
    Signed,
    /// `--flag` alone means true; `--flag=false` turns it off.
    Switch,
    /// Repeat the flag or separate the values with commas.
    List,
}

/// One request field as a flag: `--` and the field's name in kebab-case.
struct Flag {
    field: &'static str,
    help: &'static str,
    kind: Kind,
    value_name: Option<&'static str>,
    /// A second spelling shown in the help.
    alias: Option<&'static str>,
}

const fn flag(field: &'static str, kind: Kind, help: &'static str) -> Flag {
    Flag { field, help, kind, value_name: None, alias: None }
}

/// The request's fields as flags, in the order `--help` lists them: the one table the CLI's
/// request flags come from.
const FLAGS: &[Flag] = &[
    flag("task_type", Kind::Text, "text2music, repaint, cover, lego, extract or complete. Default text2music."),
    Flag { alias: Some("tags"), ..flag("caption", Kind::Text, "What the music is: genre, instruments, mood.") },
    flag("lyrics", Kind::Text, "Lyrics; tags such as [Verse] are plain text."),
    flag("instrumental", Kind::Switch, "No vocals (replaces the lyrics with [Instrumental]); `--instrumental=false` turns it off."),
    flag("vocal_language", Kind::Text, "Language code of the lyrics, e.g. en, de, ja."),
    flag("bpm", Kind::Text, "Beats per minute, 30 to 300."),
    Flag { alias: Some("key"), ..flag("keyscale", Kind::Text, "Key, e.g. \"F# minor\".") },
    Flag { alias: Some("time-signature"), ..flag("timesignature", Kind::Text, "Time signature: 2, 3, 4, 6, 2/4, 3/4, 4/4 or 6/8.") },
    flag("duration", Kind::Signed, "Seconds to generate (text2music), 10 to 600."),
    Flag { value_name: Some("PATH"), ..flag("src_audio", Kind::Text, "The source audio file (every task but text2music).") },
    Flag { value_name: Some("PATH"), ..flag("reference_audio", Kind::Text, "Audio whose timbre conditions the result.") },
    Flag {
        value_name: Some("SECONDS"),
        ..flag("repainting_start", Kind::Signed, "Start of the repaint/lego window in seconds (negative out-paints before the source).")
    },
    Flag { value_name: Some("SECONDS"), ..flag("repainting_end", Kind::Signed, "End of the repaint/lego window in seconds (-1: the source's end).") },
    flag("repaint_mode", Kind::Text, "aggressive, balanced or conservative."),
    flag("repaint_strength", Kind::Text, "Balanced mode's dial, 0 to 1."),
    flag(
        "chunk_mask_mode",
        Kind::Text,
        "The model's mask for a repaint/lego window: auto (upstream's default, 1 everywhere) or explicit (1 inside, 0 outside).",
    ),
    flag("audio_cover_strength", Kind::Text, "Share of the steps that follow the source's structure (cover), 0 to 1."),
    flag("cover_noise_strength", Kind::Text, "How close to the source the noise starts (cover), 0 to 1."),
    flag("track_name", Kind::Text, "The track lego adds or extract pulls out, e.g. drums, bass, vocals."),
    flag("track_classes", Kind::List, "The tracks complete adds; repeat the flag or separate with commas."),
    flag("inference_steps", Kind::Text, "Model evaluations (default 8 on turbo, 32 on base)."),
    flag("shift", Kind::Text, "Timestep shift, 1 to 5."),
    flag("guidance_scale", Kind::Text, "CFG strength on base/SFT, 1 to 15."),
    flag("cfg_interval_start", Kind::Text, "Timestep where CFG starts applying, 0 to 1."),
    flag("cfg_interval_end", Kind::Text, "Timestep where CFG stops applying, 0 to 1."),
    flag("use_adg", Kind::Switch, "Adaptive dual guidance instead of APG (base/SFT)."),
    flag("infer_method", Kind::Text, "ode or sde."),
    flag("timesteps", Kind::Text, "A custom schedule from 1 down, comma-separated, e.g. 0.97,0.76,0.5,0.28,0."),
    flag("seed", Kind::Signed, "A seed (item i gets seed + i), or one per item, comma-separated; -1 draws one."),
    flag("use_random_seed", Kind::Switch, "Draw every seed, ignoring the request file's."),
    flag("batch_size", Kind::Text, "Items to generate, 1 to 8 (default 2, or one per seed given)."),
    flag("instruction", Kind::Text, "The caption prompt's instruction block, replacing the task's own."),
    flag(
        "thinking",
        Kind::Switch,
        "Let the 5 Hz LM plan the piece (text2music): it writes audio codes from the caption, lyrics, bpm, key, \
         time signature and duration, and the DiT renders them. Needs an acestep-5Hz-lm-* folder.",
    ),
    Flag {
        alias: Some("audio-codes"),
        ..flag("audio_code_string", Kind::Text, "5 Hz audio codes (<|audio_code_N|>...) for text2music to render, as the LM writes them.")
    },
    flag("lm_temperature", Kind::Text, "The LM's sampling temperature, 0 to 2 (default 0.85)."),
    flag("lm_cfg_scale", Kind::Text, "The LM's classifier-free guidance (default 2; 1 turns it off)."),
    flag("lm_top_k", Kind::Text, "The LM's top-k (default 0, off)."),
    flag("lm_top_p", Kind::Text, "The LM's top-p (default 0.9; 1 is off)."),
    flag("lm_repetition_penalty", Kind::Text, "The LM's repetition penalty (default 1, off)."),
    flag("lm_negative_prompt", Kind::Text, "What the LM's guidance steers away from (default: none)."),
    flag(
        "use_cot_caption",
        Kind::Switch,
        "Let the LM's plan rewrite the caption the DiT reads (default true); `--use-cot-caption=false` keeps yours.",
    ),
    flag(
        "use_cot_language",
        Kind::Switch,
        "Let the LM's plan write a language line (default true); `--use-cot-language=false` leaves it out.",
    ),
    flag(
        "sample_query",
        Kind::Text,
        "Sample mode: the 5 Hz LM first writes the whole request (caption, lyrics, bpm, key, meter, duration) \
         from this short description.",
    ),
    flag("sample_mode", Kind::Switch, "Sample mode without a description: the LM invents the piece."),
    flag(
        "use_format",
        Kind::Switch,
        "Let the 5 Hz LM first rewrite the caption and lyrics into fuller ones and fill in the metas you leave open.",
    ),
    Flag {
        value_name: Some("NAME"),
        ..flag(
            "model",
            Kind::Text,
            "The DiT folder in the checkpoints folder, or turbo, base or sft. Default: the task's usual model \
             (turbo for text2music, cover and repaint; base for lego, extract and complete).",
        )
    },
];

/// The two flags that are not request fields.
const REQUEST_FILE: &str = "request";
const LYRICS_FILE: &str = "lyrics_file";

impl Flag {
    fn arg(&self) -> Arg {
        let mut arg = Arg::new(self.field).long(self.field.replace('_', "-")).help(self.help);
        if let Some(name) = self.value_name {
            arg = arg.value_name(name);
        }
        if let Some(alias) = self.alias {
            arg = arg.visible_alias(alias);
        }
        match self.kind {
            Kind::Text => arg,
            Kind::Signed => arg.allow_negative_numbers(true),
            Kind::Switch => arg.num_args(0..=1).require_equals(true).default_missing_value("true").value_name("BOOL"),
            Kind::List => arg.value_delimiter(',').action(ArgAction::Append),
        }
    }
}

/// The request's fields as flags ([`FLAGS`]). Every value is optional: unset flags leave the
/// request file's value (or the engine's default) alone.
pub struct RequestFlags {
    /// Start from this JSON request (or a recipe), flags overriding its fields.
    pub request: Option<PathBuf>,
    pub lyrics_file: Option<PathBuf>,
    /// The request fields given as flags, under their canonical names, as text.
    given: Vec<(&'static str, Value)>,
}

impl Args for RequestFlags {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        let request = Arg::new(REQUEST_FILE)
            .long(REQUEST_FILE)
            .value_name("FILE.json")
            .value_parser(clap::value_parser!(PathBuf))
            .help("Start from this JSON request (or a recipe written beside an earlier result); flags override its fields.");
        let lyrics_file = Arg::new(LYRICS_FILE)
            .long("lyrics-file")
            .value_name("PATH")
            .value_parser(clap::value_parser!(PathBuf))
            .conflicts_with("lyrics")
            .help("Read the lyrics from a text file.");
        FLAGS.iter().fold(cmd.arg(request).arg(lyrics_file), |cmd, flag| cmd.arg(flag.arg()))
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl FromArgMatches for RequestFlags {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let given = FLAGS
            .iter()
            .filter_map(|flag| {
                let mut values = matches.get_many::<String>(flag.field)?;
                let value = match flag.kind {
                    Kind::List => Value::Array(values.map(|v| Value::String(v.trim().to_string())).collect()),
                    _ => Value::String(values.next()?.clone()),
                };
                Some((flag.field, value))
            })
            .collect();
        Ok(Self {
            request: matches.get_one::<PathBuf>(REQUEST_FILE).cloned(),
            lyrics_file: matches.get_one::<PathBuf>(LYRICS_FILE).cloned(),
            given,
        })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl RequestFlags {
    /// Take a flag's value out before the request is built (the grid reads `--bpm` with decimals
    /// and `--timesignature` as any meter, then sets the fields the model takes).
    pub fn take_text(&mut self, field: &str) -> Option<String> {
        let at = self.given.iter().position(|(f, _)| *f == field)?;
        match self.given.remove(at).1 {
            Value::String(text) => Some(text),
            other => Some(other.to_string()),
        }
    }

    /// Whether the flag for `field` was given.
    pub fn has(&self, field: &str) -> bool {
        self.given.iter().any(|(f, _)| *f == field)
    }

    /// The request: the `--request` file's fields, then each flag given, parsed by the engine.
    pub fn build(&self) -> Result<GenerationRequest, String> {
        let mut body = match &self.request {
            Some(path) => read_request_file(path)?,
            None => Map::new(),
        };
        for (field, value) in &self.given {
            body.insert(field.to_string(), value.clone());
        }
        if let Some(path) = &self.lyrics_file {
            let lyrics =
                fs::read_to_string(path).map_err(|e| format!("cannot read the lyrics file {}: {e}", path.display()))?;
            body.insert("lyrics".into(), Value::String(lyrics));
        }
        GenerationRequest::from_value(Value::Object(body)).map_err(|e| format!("invalid request: {e}"))
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

#[cfg(test)]
mod tests {
    use super::*;
    use backline_engine::request::{RequestError, Seed};
    use serde_json::json;

    #[test]
    fn every_flag_is_a_request_field() {
        for flag in FLAGS {
            let body = json!({ flag.field: "?" });
            if let Err(RequestError::UnknownField { field, .. }) = GenerationRequest::from_value(body) {
                panic!("--{} is not a request field ({field})", flag.field.replace('_', "-"));
            }
        }
    }

    #[test]
    fn flags_reach_the_request_under_their_fields() {
        let cli = Cli::try_parse_from([
            "backline", "generate", "--key", "F# minor", "--seed", "-1", "--instrumental", "--track-classes",
            "drums, bass", "--track-classes", "keyboard", "--repainting-start", "-2.5", "--use-adg=false",
        ])
        .unwrap();
        let Command::Generate(args) = cli.command else { panic!("not generate") };
        let request = args.request.build().unwrap();
        assert_eq!(request.keyscale.as_deref(), Some("F# minor"));
        assert_eq!(request.seed, Some(Seed::One(-1)));
        assert!(request.instrumental && !request.use_adg);
        assert_eq!(request.track_classes, ["drums", "bass", "keyboard"]);
        assert_eq!(request.repainting_start, -2.5);
    }
}
