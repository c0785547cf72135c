//! The 5 Hz LM against upstream (fixture stage `lm`, made on the tiny set's
//! `acestep-5Hz-lm-0.6B`: tiny widths, the published vocabulary layout): prompts byte for byte and
//! id for id, next-token logits, the chain of thought written and read as upstream does, and whole
//! codes-phase generations token for token for the same seed.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use backline_engine::checkpoint::synth::{self, SynthSize};
use backline_engine::checkpoint::{LmFolder, LoadAs, LM_FOLDERS};
use backline_engine::lm::codes::{generate_codes, CodesRequest, LmError};
use backline_engine::lm::describe::{Description, Describer};
use backline_engine::lm::genres::GenreVocabulary;
use backline_engine::lm::plan::{Plan, Value as PlanValue};
use backline_engine::lm::prompt;
use backline_engine::lm::sample::Sampling;
use backline_engine::lm::think::{generate_thought, GivenMetas, ThoughtConstraint, ThoughtRequest, LANGUAGES};
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
        genres: text("genres"),
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

fn modes_fixture() -> &'static Value {
    static FIXTURE: OnceLock<Value> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/parity/fixtures/lm_modes.json");
        let modes: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("lm_modes.json")).expect("lm_modes.json is JSON");
        assert_eq!(modes["checkpoint_sha256"], fixture()["checkpoint_sha256"], "lm_modes.json was made on another tiny LM: remake it");
        modes
    })
}

/// The genre list the description fixtures were made with.
fn genre_list() -> &'static GenreVocabulary {
    static LIST: OnceLock<GenreVocabulary> = OnceLock::new();
    LIST.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/parity/fixtures/genres_vocab.txt");
        GenreVocabulary::load(&path, &loaded().1).unwrap()
    })
}

fn describer(case: &Value, sampling: Sampling) -> Describer<'static> {
    let (lm, tokenizer) = loaded();
    Describer { lm, tokenizer, genres: Some(genre_list()), sampling, seed: case["seed"].as_u64().unwrap() }
}

fn assert_description_is_upstreams(ours: &Description, case: &Value, fields: &Value) {
    let name = case["name"].as_str().unwrap();
    assert_eq!(ours.tokens, ids(&case["tokens"]), "{name}: the tokens upstream's decoder sampled with this seed");
    let mut fields = fields.clone();
    fields.as_object_mut().unwrap().remove("instrumental");
    assert_eq!(ours.plan, plan_from(&fields), "{name}: the fields upstream reads");
    assert_eq!(ours.lyrics.chars().count() as u64, case["lyrics_chars"].as_u64().unwrap(), "{name}: the lyrics' length");
    assert_eq!(&hex(&Sha256::digest(ours.lyrics.as_bytes())), case["lyrics_sha256"].as_str().unwrap(), "{name}: the lyrics");
    assert!(lyrics_have_no_codes(&ours.text), "{name}: the lyrics hold no codebook codes");
}

#[test]
fn description_modes_are_upstreams_token_for_token() {
    for case in modes_fixture()["modes"].as_array().unwrap() {
        let temperature = case["temperature"].as_f64().unwrap() as f32;
        let top_k = case.get("top_k").and_then(Value::as_u64).map(|k| k as usize);
        let repetition_penalty = case.get("repetition_penalty").and_then(Value::as_f64).unwrap_or(1.0) as f32;
        let d = describer(case, Sampling { temperature, top_k, top_p: None, repetition_penalty });
        let description = match case["name"].as_str().unwrap() {
            "understand" => d.understand(case["codes"].as_str().unwrap(), &mut || true, &mut |_| {}),
            "inspire" => d.inspire(
                case["query"].as_str().unwrap(),
                case["instrumental"].as_bool().unwrap(),
                case["language"].as_str(),
                &mut || true,
                &mut |_| {},
            ),
            "format" => {
                let given = &case["given"];
                let text = |k: &str| given.get(k).map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string));
                let given = GivenMetas { bpm: text("bpm"), duration: text("duration"), language: text("language"), ..GivenMetas::default() };
                d.format(case["caption"].as_str().unwrap(), case["lyrics"].as_str().unwrap(), given, &mut || true, &mut |_| {})
            }
            other => panic!("unknown mode {other}"),
        }
        .unwrap();
        assert_description_is_upstreams(&description, case, &case["metadata"]);
    }
}

/// The tiny model's own captions are noise to the token limit, so these give the caption and
/// let it write the genres (from the list), the other fields, `</think>` and the lyrics.
#[test]
fn described_genres_fields_and_lyrics_are_upstreams_token_for_token() {
    for case in modes_fixture()["describes"].as_array().unwrap() {
        let temperature = case["temperature"].as_f64().unwrap() as f32;
        let d = describer(case, Sampling { temperature, top_k: None, top_p: None, repetition_penalty: 1.0 });
        let given = &case["given"];
        let text = |k: &str| given.get(k).and_then(Value::as_str).map(str::to_string);
        let given = GivenMetas { caption: text("caption"), language: text("language"), ..GivenMetas::default() };
        let prompt = prompt::format("lofi hip hop", "[Instrumental]");
        let description = d.describe(&prompt, given, case["skip_language"].as_bool().unwrap(), &mut || true, &mut |_| {}).unwrap();
        assert_description_is_upstreams(&description, case, &case["parsed"]);
        assert!(description.plan.genres.is_some(), "{}: genres written", case["name"]);
        assert!(description.text.contains("</think>"), "{}: the thought closes and the lyrics follow", case["name"]);
    }
}

/// A scripted "model" that wants to write `target`: at each step the first token of what is
/// left of it scores highest (EOS, once it is off the script); the constraint then has its say
/// and the best token is taken.
fn write_as_scripted(constraint: &mut ThoughtConstraint, tokenizer: &LmTokenizer, target: &str) -> String {
    let mut written = String::new();
    for _ in 0..400 {
        let mut scores = vec![0.0f32; tokenizer.vocab_size()];
        // Once the constraint has made it write something else, it wants to end its turn.
        match target.strip_prefix(written.as_str()).filter(|r| !r.is_empty()) {
            Some(rest) => scores[tokenizer.encode(rest).unwrap()[0] as usize] = 10.0,
            None => scores[tokenizer.eos_id as usize] = 10.0,
        }
        constraint.apply(&mut scores).unwrap();
        let token = (0..scores.len()).max_by(|&a, &b| scores[a].total_cmp(&scores[b])).unwrap() as u32;
        constraint.update(token);
        written.push_str(&tokenizer.decode(&[token]).unwrap());
        if token == tokenizer.eos_id {
            return written;
        }
    }
    panic!("no end after 400 tokens: {written:?}");
}

#[test]
fn a_description_without_a_genre_list_ends_its_genres_where_the_model_does() {
    let tokenizer = &loaded().1;
    let target = "<think>\nbpm: 92\ncaption: warm tape loops\nduration: 40\ngenres: lofi beats\nkeyscale: C major\n\
                  language: en\ntimesignature: 4\n</think>\n\n[Verse]\nslow rain<|im_end|>";
    let mut constraint = ThoughtConstraint::describing(tokenizer, None, GivenMetas::default(), false).unwrap();
    let written = write_as_scripted(&mut constraint, tokenizer, target);
    assert_eq!(written, target, "a model that writes a valid description is let through, the next field's name whole");
    let plan = Plan::parse(&written);
    assert_eq!((plan.genres.as_deref(), plan.keyscale.as_deref()), (Some("lofi beats"), Some("C major")));
    assert_eq!(backline_engine::lm::describe::lyrics_after_thought(&written), "[Verse]\nslow rain");

    // With a list, genres outside it cannot be written; given fields are written as given.
    let list = GenreVocabulary::from_text("lofi hip hop\nrock", tokenizer).unwrap();
    let given = GivenMetas { bpm: Some("120".into()), ..GivenMetas::default() };
    let mut constraint = ThoughtConstraint::describing(tokenizer, Some(&list), given, false).unwrap();
    let written = write_as_scripted(&mut constraint, tokenizer, &target.replace("bpm: 92", "bpm: 120"));
    let plan = Plan::parse(&written);
    assert_eq!(plan.bpm, Some(PlanValue::Int(120)), "{written}");
    let genres = plan.genres.expect("genres written").to_lowercase();
    assert!(["lofi hip hop", "rock"].contains(&genres.as_str()) || "lofi hip hop".starts_with(&genres), "{genres:?} is (the start of) a listed genre");
    assert!(lyrics_have_no_codes(&written));
}

/// No code of the codebook after the thought (upstream bans 0..63999 there; the vocabulary's
/// 1,535 codes past the codebook stay allowed, as they do upstream).
fn lyrics_have_no_codes(text: &str) -> bool {
    let lyrics = backline_engine::lm::describe::lyrics_after_thought(text);
    lyrics.split("<|audio_code_").skip(1).all(|rest| rest.split("|>").next().and_then(|n| n.parse::<u32>().ok()).is_some_and(|n| n >= 64_000))
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
