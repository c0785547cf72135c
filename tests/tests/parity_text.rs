//! Parity of the text encoder with transformers' `Qwen3Model` (the class upstream loads
//! Qwen3-Embedding-0.6B with) on tiny random weights, and of the prompt tokenizer with
//! transformers' fast Qwen2 tokenizer on a Qwen-shaped `tokenizer.json`. Fixtures:
//! `text_encoder` stage of `tests/parity/make_fixtures.py`.

use backline_engine::model::text_encoder::{config_from_json, pad_batch, PromptTokenizer, TextEncoder};
use backline_tests::parity::{assert_close, fixture_path, load_fixture_weights};
use candle_core::{DType, Device, Tensor};

fn encoder() -> (std::collections::HashMap<String, Tensor>, TextEncoder) {
    let json = std::fs::read_to_string(fixture_path("text_encoder_config.json")).expect("fixture config");
    let cfg = config_from_json(&json).expect("transformers' Qwen3Config json parses");
    let (f, vb) = load_fixture_weights("text_encoder.safetensors");
    let encoder = TextEncoder::new(&cfg, vb).expect("un-prefixed Qwen3Model weights load");
    (f, encoder)
}

fn tokenizer() -> PromptTokenizer {
    PromptTokenizer::from_file(fixture_path("tokenizer.json")).expect("fixture tokenizer.json loads")
}

/// (name, max_len, text) of each tokenizer case; case N's ids are `out.ids.N`.
fn cases() -> Vec<(String, usize, String)> {
    let json = std::fs::read_to_string(fixture_path("text_encoder_cases.json")).expect("fixture cases");
    let cases: serde_json::Value = serde_json::from_str(&json).unwrap();
    cases
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let max_len = c["max_len"].as_u64().unwrap() as usize;
            (c["name"].as_str().unwrap().to_string(), max_len, c["text"].as_str().unwrap().to_string())
        })
        .collect()
}

fn ids_u32(t: &Tensor) -> Vec<u32> {
    t.to_vec1::<i64>().unwrap().into_iter().map(|i| u32::try_from(i).unwrap()).collect()
}

#[test]
fn text_encoder_matches_transformers() {
    let (f, encoder) = encoder();
    let ids = f["input.ids"].to_dtype(DType::U32).unwrap();
    let hidden = encoder.encode(&ids).unwrap();
    assert_close("last hidden state (batch of 2, right-padded)", &hidden, &f["out.last_hidden_state"]);
    assert_close("embeddings (lyric path)", &encoder.embed(&ids).unwrap(), &f["out.embeddings"]);
}

#[test]
fn each_prompt_alone_matches_its_padded_batch_row() {
    // Causal attention: a right-padded row's real tokens equal the prompt encoded alone (this
    // also runs candle's single-sequence attention kernel, the batch runs the packed one).
    let (f, encoder) = encoder();
    let ids = f["input.ids"].to_dtype(DType::U32).unwrap();
    let want = &f["out.last_hidden_state"];
    for (row, len) in f["input.lengths"].to_vec1::<i64>().unwrap().into_iter().enumerate() {
        let len = len as usize;
        let alone = encoder.encode(&ids.narrow(0, row, 1).unwrap().narrow(1, 0, len).unwrap()).unwrap();
        let in_batch = want.narrow(0, row, 1).unwrap().narrow(1, 0, len).unwrap();
        assert_close(&format!("row {row} alone ({len} tokens)"), &alone, &in_batch);
    }
}

#[test]
fn successive_encodes_are_identical() {
    let (f, encoder) = encoder();
    let ids = f["input.ids"].to_dtype(DType::U32).unwrap();
    let first = encoder.encode(&ids).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let second = encoder.encode(&ids).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(first, second, "a second encode must start from an empty KV cache");
    let shorter = encoder.encode(&ids.narrow(1, 0, 5).unwrap()).unwrap();
    assert_eq!(shorter.dims(), &[2, 5, 32]);
}

#[test]
fn token_ids_equal_transformers_exactly() {
    let f = backline_tests::parity::load_fixture("text_encoder.safetensors");
    let tokenizer = tokenizer();
    for (n, (name, max_len, text)) in cases().iter().enumerate() {
        let want = ids_u32(&f[&format!("out.ids.{n}")]);
        let got = tokenizer.encode(text, *max_len).unwrap();
        assert_eq!(got, want, "{name}: {text:?}");
        assert_eq!(got.last(), Some(&tokenizer.pad_id()), "{name}: ends with <|endoftext|>");
        assert!(got.len() <= *max_len, "{name}");
        eprintln!("{name}: {} ids equal", got.len());
    }
    let (name, max_len, text) = &cases()[3];
    assert_eq!(tokenizer.encode(text, *max_len).unwrap().len(), *max_len, "{name} is cut to max_len");
    assert!(tokenizer.encode(text, 0).is_err(), "no room for <|endoftext|>");
}

#[test]
fn pad_batch_right_pads_with_end_of_text() {
    let f = backline_tests::parity::load_fixture("text_encoder.safetensors");
    let tokenizer = tokenizer();
    let pad = tokenizer.pad_id();
    // The fixture's batch was padded with the tokenizer's <|endoftext|> id.
    let rows: Vec<Vec<u32>> = f["input.lengths"]
        .to_vec1::<i64>()
        .unwrap()
        .into_iter()
        .enumerate()
        .map(|(row, len)| ids_u32(&f["input.ids"].get(row).unwrap())[..len as usize].to_vec())
        .collect();
    let (ids, mask) = pad_batch(&rows, pad, &Device::Cpu).unwrap();
    assert_eq!(ids.dtype(), DType::U32);
    assert_eq!(ids.to_vec2::<u32>().unwrap(), f["input.ids"].to_dtype(DType::U32).unwrap().to_vec2::<u32>().unwrap());
    for (row, m) in mask.to_vec2::<f32>().unwrap().iter().enumerate() {
        let expected: Vec<f32> = (0..m.len()).map(|i| if i < rows[row].len() { 1. } else { 0. }).collect();
        assert_eq!(m, &expected);
    }

    let prompts: Vec<Vec<u32>> =
        cases().iter().map(|(_, max_len, text)| tokenizer.encode(text, *max_len).unwrap()).collect();
    let (ids, mask) = pad_batch(&prompts, pad, &Device::Cpu).unwrap();
    let width = prompts.iter().map(Vec::len).max().unwrap();
    assert_eq!(ids.dims(), &[prompts.len(), width]);
    assert_eq!(mask.dims(), &[prompts.len(), width]);
    let (ids, mask) = (ids.to_vec2::<u32>().unwrap(), mask.to_vec2::<f32>().unwrap());
    for (row, prompt) in prompts.iter().enumerate() {
        assert_eq!(&ids[row][..prompt.len()], prompt.as_slice());
        assert!(ids[row][prompt.len()..].iter().all(|&i| i == pad));
        assert_eq!(mask[row].iter().sum::<f32>() as usize, prompt.len());
    }
    assert!(pad_batch(&[], pad, &Device::Cpu).is_err());
}

#[test]
fn tokenizer_file_errors_name_the_file() {
    let missing = fixture_path("no-such-tokenizer.json");
    let err = PromptTokenizer::from_file(&missing).unwrap_err().to_string();
    assert!(err.contains(&missing.display().to_string()), "{err}");
    eprintln!("missing: {err}");

    let dir = std::env::temp_dir().join(format!("backline-parity-text-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let malformed = dir.join("tokenizer.json");
    std::fs::write(&malformed, "{\"model\": [").unwrap();
    let err = PromptTokenizer::from_file(&malformed).unwrap_err().to_string();
    assert!(err.contains(&malformed.display().to_string()), "{err}");
    eprintln!("malformed: {err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn config_parses_transformers_5_layout() {
    // transformers 5 writes rope_theta inside rope_parameters and may leave out default keys.
    let json = r#"{"vocab_size": 1024, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8, "max_position_embeddings": 512,
        "tie_word_embeddings": true, "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0}}"#;
    let cfg = config_from_json(json).unwrap();
    assert_eq!(cfg.rope_theta, 1e6);
    assert_eq!(cfg.rms_norm_eps, 1e-6);
    assert!(!cfg.use_sliding_window && !cfg.attention_bias);
    let shipped = std::fs::read_to_string(fixture_path("text_encoder_config.json")).unwrap();
    assert_eq!(config_from_json(&shipped).unwrap(), cfg);
}

#[test]
fn encoder_and_tokenizer_can_be_shared_across_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<TextEncoder>();
    shared::<PromptTokenizer>();
}
