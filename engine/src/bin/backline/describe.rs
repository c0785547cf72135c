//! `backline describe`: the 5 Hz LM's description modes on their own, the answer printed as JSON
//! (caption, lyrics, metas, genres): `understand` (what audio codes sound like), `sample` (a
//! whole piece from a short description) and `format` (a caption and lyrics rewritten).

use std::sync::atomic::AtomicBool;

use backline_engine::backend::{Backend, DescribeMode, DescribeRequest};
use backline_engine::lm::plan::Value as PlanValue;
use backline_engine::lm::sample::Sampling;
use backline_engine::lm::think::GivenMetas;
use backline_engine::store::Residency;
use serde_json::json;

use crate::args::{DescribeArgs, DescribeCommand};
use crate::generate::local_backend;

pub fn run(args: DescribeArgs) -> Result<(), String> {
    if !args.checkpoints.is_dir() {
        return Err(format!("the checkpoints folder {} does not exist; pass --checkpoints DIR", args.checkpoints.display()));
    }
    if !(0.0..=2.0).contains(&args.lm_temperature) {
        return Err(format!("--lm-temperature {} is outside 0 to 2", args.lm_temperature));
    }
    let mode = match args.mode {
        DescribeCommand::Understand { audio_codes } => DescribeMode::Understand { audio_codes },
        DescribeCommand::Sample { query, instrumental, language } => DescribeMode::Inspire { query, instrumental, language },
        DescribeCommand::Format { caption, lyrics, bpm, duration, key, time_signature, language } => DescribeMode::Format {
            caption,
            lyrics,
            given: GivenMetas {
                bpm: bpm.map(|b| b.to_string()),
                duration: duration.map(|d| d.to_string()),
                keyscale: key,
                timesignature: time_signature,
                language,
                ..GivenMetas::default()
            },
        },
    };
    let backend = local_backend(args.checkpoints, &args.device, &args.precision, Residency::PerStage)?;
    let sampling = Sampling::new(args.lm_temperature, args.lm_top_k, args.lm_top_p, args.lm_repetition_penalty);
    let request = DescribeRequest { mode, sampling, seed: args.seed };
    let written = backend.describe(&request, &AtomicBool::new(false)).map_err(|e| e.to_string())?;
    let plan = &written.description.plan;
    let value = |v: &Option<PlanValue>| match v {
        Some(PlanValue::Int(i)) => json!(i),
        Some(PlanValue::Text(t)) => json!(t),
        None => json!(null),
    };
    let answer = json!({
        "model": written.model,
        "caption": plan.caption,
        "lyrics": written.description.lyrics,
        "bpm": value(&plan.bpm),
        "duration": value(&plan.duration),
        "keyscale": plan.keyscale,
        "timesignature": plan.timesignature,
        "language": plan.language,
        "genres": plan.genres,
        "seed": args.seed,
    });
    println!("{}", serde_json::to_string_pretty(&answer).expect("JSON"));
    Ok(())
}
