//! The 5 Hz LM against upstream (fixture stage `lm`, made on the tiny set's
//! `acestep-5Hz-lm-0.6B`: tiny widths, the published vocabulary layout): prompts byte for byte and
//! id for id, next-token logits, the chain of thought written and read as upstream does, and whole
//! codes-phase generations token for token for the same seed.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use backline_engine::checkpoint::synth::{self, SynthSize};
use backline_engine::checkpoint::{LmFolder, LoadAs, LM_FOLDERS};
use backline_engine::lm::codes::{generate_codes, CodesRequest, LmError};
use backline_engine::lm::plan::{Plan, Value as PlanValue};
use backline_engine::lm::prompt;
use backline_engine::lm::sample::Sampling;
use backline_engine::lm::think::{generate_thought, GivenMetas, ThoughtRequest, LANGUAGES};
use backline_engine::lm::tokenizer::LmTokenizer;
use backline_engine::model::causal_lm::CausalLm;
use backline_engine::precision::Precision;
use backline_engine::pipeline::recipe::hex;
use serde_json::Value;
use sha2::{Digest, Sha256};

fn fixture() -> &'static Value {
    static FIXTURE: OnceLock<Value> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/parity/fixtures/lm.json");
        serde_json::from_str(&std::fs::read_to_string(path).expect("lm.json")).expect("lm.json is JSON")
    })
}

/// The tiny set the fixture was made on (seed 0), written once for this test binary.
fn tiny_lm_folder() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = std::env::temp_dir().join(format!("backline-lm-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        synth::write_set(&root, SynthSize::Tiny, 0).expect("tiny set");
        let dir = root.join(LM_FOLDERS[0]);
        for (file, sha256) in fixture()["checkpoint_sha256"].as_object().unwrap() {
            let ours = hex(&Sha256::digest(std::fs::read(dir.join(file)).unwrap()));
            assert_eq!(&ours, sha256, "{file} is not the file the fixture was made from: remake stage lm");
        }
        dir
    })
}

fn loaded() -> &'static (CausalLm, LmTokenizer) {
    static LM: OnceLock<(CausalLm, LmTokenizer)> = OnceLock::new();
    LM.get_or_init(|| LmFolder::open(tiny_lm_folder()).unwrap().load(&LoadAs::cpu(Precision::F32)).unwrap())
}

fn ids(value: &Value) -> Vec<u32> {
    value.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect()
}

fn assert_logits_close(ours: &[f32], theirs: &Value, what: &str) {
    let stride = fixture()["logit_stride"].as_u64().unwrap() as usize;
    let theirs: Vec<f32> = theirs.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    let ours: Vec<f32> = ours.iter().step_by(stride).copied().collect();
    assert_eq!(ours.len(), theirs.len(), "{what}: logits compared");
    let worst = ours.iter().zip(&theirs).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(worst < 1e-4, "{what}: logits differ from transformers' by up to {worst}");
}

#[test]
fn prompts_are_upstreams_to_the_byte_and_the_id() {
    let (_, tokenizer) = loaded();
    let f = fixture();
    let cot = &f["chains_of_thought"][0].as_str().unwrap();
    let (caption, lyrics) = ("lofi hip hop, dusty drums, mellow keys", "[Instrumental]");
    let ours = [
        ("plan", prompt::plan(caption, lyrics)),
        ("codes", prompt::codes(caption, lyrics, cot)),
        ("codes_unconditional", prompt::codes_unconditional(prompt::NO_USER_INPUT)),
        ("codes_negative", prompt::codes_unconditional("harsh noise")),
        ("understand", prompt::understand("<|audio_code_1|><|audio_code_63999|>")),
        ("inspire", prompt::inspire("a rainy night in Tokyo", true)),
        ("format", prompt::format(caption, "la la la")),
    ];
    for (name, text) in ours {
        assert_eq!(text, f["prompts"][name].as_str().unwrap(), "{name} prompt");
        assert_eq!(tokenizer.encode(&text).unwrap(), ids(&f["prompt_ids"][name]), "{name} prompt ids");
    }
    let understand = ids(&f["prompt_ids"]["understand"]);
    assert!(understand.contains(&(tokenizer.first_code_id + 63_999)), "a code in a prompt is its one token");
}

fn plan_from(meta: &Value) -> Plan {
    let text = |k: &str| meta.get(k).map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string));
    let number = |k: &str| meta.get(k).map(|v| v.as_i64().map_or_else(|| PlanValue::Text(v.as_str().unwrap().into()), PlanValue::Int));
    Plan {
        bpm: number("bpm"),
        caption: text("caption"),
        duration: number("duration"),
        genres: None,
        keyscale: text("keyscale"),
        language: text("language"),
        timesignature: text("timesignature"),
    }
}

#[test]
fn the_chain_of_thought_is_written_and_read_as_upstream_does() {
    let f = fixture();
    for (meta, cot) in f["metas"].as_array().unwrap().iter().zip(f["chains_of_thought"].as_array().unwrap()) {
        assert_eq!(plan_from(meta).chain_of_thought(), cot.as_str().unwrap(), "{meta}");
    }
    for (text, parsed) in f["outputs"].as_array().unwrap().iter().zip(f["parsed"].as_array().unwrap()) {
        assert_eq!(Plan::parse(text.as_str().unwrap()), plan_from(parsed), "{text}");
    }
}

#[test]
fn next_token_logits_equal_transformers() {
    let (lm, tokenizer) = loaded();
    let f = fixture();
    let plan = ids(&f["prompt_ids"]["plan"]);
    let mut cache = lm.new_cache(1, plan.len()).unwrap();
    let logits = lm.prefill(&[plan], tokenizer.pad_id, &mut cache).unwrap();
    assert_logits_close(&logits.get(0).unwrap().to_vec1().unwrap(), &f["plan_logits"], "the plan prompt");

    // The two guidance rows, left-padded to one width in one batch.
    let rows = [ids(&f["prompt_ids"]["codes"]), ids(&f["prompt_ids"]["codes_unconditional"])];
    let width = rows.iter().map(Vec::len).max().unwrap();
    let padding: Vec<u64> = rows.iter().map(|r| (width - r.len()) as u64).collect();
    assert_eq!(padding, f["cfg_padding"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect::<Vec<_>>());
    let mut cache = lm.new_cache(2, width).unwrap();
    let logits = lm.prefill(&rows, tokenizer.pad_id, &mut cache).unwrap();
    for row in 0..2 {
        assert_logits_close(&logits.get(row).unwrap().to_vec1().unwrap(), &f["cfg_logits"][row], &format!("guidance row {row}"));
    }
}

#[test]
fn a_cached_step_equals_running_the_whole_sequence() {
    let (lm, tokenizer) = loaded();
    let prompt = tokenizer.encode(&prompt::plan("ambient pads", "")).unwrap();
    let extra = [tokenizer.first_code_id + 5, tokenizer.first_code_id + 9, 198];
    let mut cache = lm.new_cache(2, prompt.len() + extra.len()).unwrap();
    // Row 1 is shorter, so it is left-padded: its steps must not see the padding.
    let short = prompt[3..].to_vec();
    lm.prefill(&[prompt.clone(), short.clone()], tokenizer.pad_id, &mut cache).unwrap();
    let mut stepped = None;
    for &t in &extra {
        stepped = Some(lm.step(&[t, t], &mut cache).unwrap());
    }
    let stepped = stepped.unwrap();
    for (row, seq) in [prompt, short].into_iter().enumerate() {
        let full: Vec<u32> = seq.iter().copied().chain(extra).collect();
        let mut fresh = lm.new_cache(1, full.len()).unwrap();
        let whole: Vec<f32> = lm.prefill(&[full], tokenizer.pad_id, &mut fresh).unwrap().get(0).unwrap().to_vec1().unwrap();
        let step: Vec<f32> = stepped.get(row).unwrap().to_vec1().unwrap();
        let worst = whole.iter().zip(&step).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst < 1e-4, "row {row}: cached steps differ from a whole forward by {worst}");
    }
}

#[test]
fn seeded_codes_are_upstreams_token_for_token() {
    let (lm, tokenizer) = loaded();
    let f = fixture();
    let plan = plan_from(&f["metas"][0]);
    for case in f["generations"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let duration = case["duration"].as_u64().unwrap() as usize;
        let sampling = Sampling::new(
            case["temperature"].as_f64().unwrap() as f32,
            case["top_k"].as_u64().unwrap() as usize,
            case["top_p"].as_f64().unwrap() as f32,
            case["repetition_penalty"].as_f64().unwrap() as f32,
        );
        let request = CodesRequest {
            caption: "lofi hip hop, dusty drums, mellow keys",
            lyrics: "[Instrumental]",
            plan: &plan,
            negative_prompt: prompt::NO_USER_INPUT,
            target_codes: duration * 5,
            cfg_scale: case["cfg_scale"].as_f64().unwrap() as f32,
            sampling,
            seed: case["seed"].as_u64().unwrap(),
        };
        let mut reported = 0;
        let out = generate_codes(lm, tokenizer, &request, &mut || true, &mut |done, _| reported = done).unwrap();
        assert_eq!(out.tokens, ids(&case["tokens"]), "{name}: the tokens upstream sampled with this seed");
        assert_eq!(out.codes.len(), duration * 5, "{name}: exactly duration x 5 codes, then EOS");
        assert_eq!(*out.tokens.last().unwrap(), tokenizer.eos_id, "{name}");
        assert_eq!(reported, duration * 5);
        let text: String = out.codes.iter().map(|c| format!("<|audio_code_{c}|>")).collect();
        assert_eq!(text, case["codes_text"].as_str().unwrap(), "{name}: the code string upstream parses");
    }
}

#[test]
fn seeded_chains_of_thought_are_upstreams_token_for_token() {
    let (lm, tokenizer) = loaded();
    for case in fixture()["thoughts"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let given = &case["given"];
        let text = |k: &str| given.get(k).map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string));
        let request = ThoughtRequest {
            caption: "lofi hip hop, dusty drums, mellow keys",
            lyrics: "[Instrumental]",
            given: GivenMetas {
                bpm: text("bpm"),
                caption: text("caption"),
                duration: text("duration"),
                keyscale: text("keyscale"),
                language: text("language"),
                timesignature: text("timesignature"),
            },
            skip_caption: case["skip_caption"].as_bool().unwrap(),
            skip_language: false,
            sampling: Sampling::default(),
            seed: case["seed"].as_u64().unwrap(),
        };
        let thought = generate_thought(lm, tokenizer, &request, &mut || true, &mut |_| {}).unwrap();
        assert_eq!(thought.tokens, ids(&case["tokens"]), "{name}: the tokens upstream's decoder sampled with this seed");
        assert_eq!(thought.text, case["text"].as_str().unwrap(), "{name}");
        assert_eq!(thought.plan, plan_from(&case["parsed"]), "{name}: the fields upstream reads from it");
        assert_eq!(*thought.tokens.last().unwrap(), tokenizer.eos_id, "{name}: it ends at </think>");
    }
}

#[test]
fn the_thought_is_always_valid_metadata_whatever_the_seed() {
    let (lm, tokenizer) = loaded();
    for seed in 0..24 {
        let request = ThoughtRequest {
            caption: "x",
            lyrics: "",
            given: GivenMetas::default(),
            skip_caption: true,
            skip_language: false,
            sampling: Sampling { temperature: 1.5, top_k: None, top_p: None, repetition_penalty: 1.0 },
            seed,
        };
        let plan = generate_thought(lm, tokenizer, &request, &mut || true, &mut |_| {}).unwrap().plan;
        let bpm = plan.bpm.as_ref().and_then(PlanValue::as_int).expect("a bpm");
        let duration = plan.duration.as_ref().and_then(PlanValue::as_int).expect("a duration");
        assert!((30..=300).contains(&bpm) && (10..=600).contains(&duration), "seed {seed}: {plan:?}");
        assert!(backline_engine::task::is_valid_keyscale(plan.keyscale.as_deref().unwrap()), "seed {seed}: {plan:?}");
        assert!(["2", "3", "4", "6"].contains(&plan.timesignature.as_deref().unwrap()), "seed {seed}: {plan:?}");
        assert!(LANGUAGES.contains(&plan.language.as_deref().unwrap()), "seed {seed}: {plan:?}");
    }
}

#[test]
fn a_prompt_longer_than_the_context_is_a_clear_error() {
    let (lm, tokenizer) = loaded();
    let plan = plan_from(&fixture()["metas"][0]);
    let lyrics = "la ".repeat(lm.max_positions());
    let request = CodesRequest {
        caption: "x",
        lyrics: &lyrics,
        plan: &plan,
        negative_prompt: "",
        target_codes: 50,
        cfg_scale: 2.0,
        sampling: Sampling::default(),
        seed: 1,
    };
    let err = generate_codes(lm, tokenizer, &request, &mut || true, &mut |_, _| {}).unwrap_err();
    assert!(matches!(err, LmError::TooLong { .. }), "{err}");
    assert!(err.to_string().contains(&lm.max_positions().to_string()), "{err}");
}

#[test]
fn a_cancelled_generation_stops_between_tokens() {
    let (lm, tokenizer) = loaded();
    let plan = plan_from(&fixture()["metas"][0]);
    let request = CodesRequest {
        caption: "x",
        lyrics: "",
        plan: &plan,
        negative_prompt: "",
        target_codes: 50,
        cfg_scale: 2.0,
        sampling: Sampling::default(),
        seed: 1,
    };
    let mut asked = 0;
    let result = generate_codes(lm, tokenizer, &request, &mut || {
        asked += 1;
        asked <= 4
    }, &mut |_, _| {});
    assert!(matches!(result, Err(LmError::Cancelled)), "{result:?}");
    assert_eq!(asked, 5, "asked once per token, stopping at the first no");
}

#[test]
fn an_lm_folder_that_does_not_match_is_a_clear_error() {
    let source = tiny_lm_folder();
    let dir = std::env::temp_dir().join(format!("backline-lm-bad-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for file in ["config.json", "model.safetensors", "tokenizer_config.json"] {
        std::fs::copy(source.join(file), dir.join(file)).unwrap();
    }
    // The text encoder's tokenizer in the LM's folder: no audio codes.
    let text_tokenizer = source.parent().unwrap().join("Qwen3-Embedding-0.6B/tokenizer.json");
    std::fs::copy(text_tokenizer, dir.join("tokenizer.json")).unwrap();
    let err = LmFolder::open(&dir).unwrap().validate().unwrap_err().to_string();
    assert!(err.contains("tokenizer.json") && err.contains("</think>"), "{err}");

    // A truncated weights file.
    std::fs::copy(source.join("tokenizer.json"), dir.join("tokenizer.json")).unwrap();
    let weights = std::fs::read(source.join("model.safetensors")).unwrap();
    std::fs::write(dir.join("model.safetensors"), &weights[..weights.len() / 2]).unwrap();
    let err = match LmFolder::open(&dir) {
        Err(e) => e.to_string(),
        Ok(folder) => folder.validate().unwrap_err().to_string(),
    };
    assert!(err.contains("model.safetensors"), "{err}");
}

/// Tokens per second of phase 2 (both guidance rows in one batch, 50 codes, upstream's default
/// sampling) on the LM folder in `BACKLINE_LM_DIR`, at `BACKLINE_LM_PRECISION` (f32 by default).
/// PyTorch's figure on the same folder comes from `tests/parity/bench_lm.py`; docs/benchmarks.md
/// has both and the commands.
#[test]
#[ignore = "needs a published-size LM folder (cargo xtask synth-checkpoint DIR --lm 0.6B) in BACKLINE_LM_DIR; run by hand as docs/benchmarks.md (The 5 Hz LM: tokens per second) says"]
fn lm_tokens_per_second() {
    let dir = PathBuf::from(std::env::var("BACKLINE_LM_DIR").expect("BACKLINE_LM_DIR"));
    let precision = Precision::parse(&std::env::var("BACKLINE_LM_PRECISION").unwrap_or_else(|_| "f32".into())).expect("f32, bf16, q8 or q4");
    let started = std::time::Instant::now();
    let (lm, tokenizer) = LmFolder::open(&dir).unwrap().load(&LoadAs::cpu(precision)).unwrap();
    let load_s = started.elapsed().as_secs_f64();
    let plan = plan_from(&serde_json::json!({"bpm": 92, "duration": 10, "keyscale": "F# minor", "timesignature": "4"}));
    let request = CodesRequest {
        caption: "lofi hip hop, dusty drums, mellow keys",
        lyrics: "[Instrumental]",
        plan: &plan,
        negative_prompt: prompt::NO_USER_INPUT,
        target_codes: 50,
        cfg_scale: 2.0,
        sampling: Sampling::default(),
        seed: 7,
    };
    let mut first = None;
    let started = std::time::Instant::now();
    let out = generate_codes(&lm, &tokenizer, &request, &mut || true, &mut |done, _| {
        if done == 1 {
            first = Some(started.elapsed().as_secs_f64());
        }
    })
    .unwrap();
    let total = started.elapsed().as_secs_f64();
    let first = first.unwrap();
    let decode_tokens = out.tokens.len() - 1;
    println!(
        "lm {} {precision}: load {load_s:.1} s, prompt + first token {first:.3} s, then {decode_tokens} tokens in {:.2} s = {:.2} tokens/s ({:.2} overall)",
        dir.display(),
        total - first,
        decode_tokens as f64 / (total - first),
        out.tokens.len() as f64 / total
    );
}
