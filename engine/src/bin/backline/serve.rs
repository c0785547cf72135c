//! `backline serve` (feature `server`): ACE-Step's REST API on this machine's engine, until
//! Ctrl-C. The models stay loaded between jobs.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use backline_engine::server::{self, ServerConfig};
use backline_engine::store::Residency;
use clap::Args;

use crate::generate::local_backend;
use crate::interrupt;

#[derive(Args)]
pub struct ServeArgs {
    /// The checkpoints folder: `acestep-v15-*/`, `vae/`, `Qwen3-Embedding-0.6B/`.
    #[arg(long, value_name = "DIR", env = "BACKLINE_CHECKPOINTS", default_value = "checkpoints")]
    pub checkpoints: PathBuf,
    /// The address to listen on. Loopback unless told otherwise: another address lets other
    /// machines in (set --api-key then).
    #[arg(long, value_name = "HOST", default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// 0 picks a free port (printed at start).
    #[arg(long, value_name = "PORT", default_value_t = server::DEFAULT_PORT)]
    pub port: u16,
    /// Clients must send it (`Authorization: Bearer KEY`, or `ai_token` in the body).
    #[arg(long, value_name = "KEY", env = "BACKLINE_API_KEY")]
    pub api_key: Option<String>,
    /// Jobs queued or running at once; more are refused with 429.
    #[arg(long, value_name = "N", default_value_t = server::DEFAULT_MAX_QUEUE)]
    pub max_queue: usize,
    /// The largest request body (uploads included) in MB; larger ones are refused with 413.
    #[arg(long, value_name = "MB", default_value_t = server::DEFAULT_MAX_UPLOAD_MB)]
    pub max_upload_mb: usize,
    /// Where results are written and served from.
    #[arg(long, value_name = "DIR", default_value = "backline-serve-output")]
    pub out: PathBuf,
    /// Hours a finished task's files are kept.
    #[arg(long, value_name = "HOURS", default_value_t = 24.0)]
    pub retention_hours: f64,
    /// What runs the models: cpu, cuda, cuda:N, metal or metal:N.
    #[arg(long, value_name = "DEVICE", env = "BACKLINE_DEVICE", default_value = "cpu")]
    pub device: String,
    /// How the CPU holds the weights: bf16, f32, q8 or q4.
    #[arg(long, value_name = "PRECISION", env = "BACKLINE_PRECISION", default_value = "bf16")]
    pub precision: String,
}

pub fn run(args: ServeArgs) -> Result<(), String> {
    if !args.checkpoints.is_dir() {
        return Err(format!("the checkpoints folder {} does not exist; pass --checkpoints DIR", args.checkpoints.display()));
    }
    if !(args.retention_hours > 0.0 && args.retention_hours.is_finite()) {
        return Err(format!("--retention-hours {}: give a positive number of hours", args.retention_hours));
    }
    if args.max_queue == 0 || args.max_upload_mb == 0 {
        return Err("--max-queue and --max-upload-mb must be at least 1".into());
    }
    let backend = local_backend(args.checkpoints, &args.device, &args.precision, Residency::Keep)?;
    let config = ServerConfig {
        addr: SocketAddr::new(args.host, args.port),
        api_key: args.api_key.filter(|k| !k.is_empty()),
        max_queue: args.max_queue,
        max_upload_bytes: args.max_upload_mb.saturating_mul(1024 * 1024),
        out_dir: args.out,
        retention: Duration::from_secs_f64(args.retention_hours * 3600.0),
    };
    let auth = if config.api_key.is_some() { "an API key required" } else { "no API key" };
    let running = server::start(config, Arc::new(backend), args.device)?;
    // Scripts (and the tests) read the address from this line.
    println!("backline serve: listening on http://{} ({auth}); Ctrl-C stops", running.addr);
    interrupt::install();
    while !interrupt::interrupted() {
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("backline serve: stopping");
    running.stop();
    Ok(())
}
