//! Backline in a real CLAP host (clack-host): what it reports, how it follows the transport, its
//! parameters, and its saved state. Needs the release bundle (`cargo xtask test` builds it).

use backline_engine::audio::grid::TimeSignature;
use backline_tests::clap::{
    render_silence, set_param, state_bytes, state_json, ClapPlugin, HostTransport, PortDesc,
};
use backline_tests::clicks::{assert_beats, expected_beats, find_onsets};
use backline_tests::{clap_bundle, Build};
use clack_extensions::params::ParamInfoFlags;

fn load() -> ClapPlugin {
    ClapPlugin::load(&clap_bundle(Build::Release))
}

fn playing(bpm: f64, meter: (u16, u16), quarters: f64) -> HostTransport {
    HostTransport { playing: true, tempo: Some(bpm), meter: Some(meter), quarters }
}

fn sine(len: usize, offset: usize) -> Vec<f32> {
    (0..len).map(|i| (((i + offset) as f32) * 0.031).sin() * 0.7).collect()
}

/// Process `blocks` blocks of a sine on the main input and return (input, output) left channels.
fn run_sine(
    plugin: &mut ClapPlugin,
    transport: Option<HostTransport>,
    block: usize,
    blocks: usize,
    first_events: &[clack_host::events::event_types::ParamValueEvent],
) -> (Vec<f32>, Vec<f32>) {
    let (mut input, mut output) = (Vec::new(), Vec::new());
    let silence = vec![0.0; block];
    let mut events = first_events;
    for b in 0..blocks {
        let x = sine(block, b * block);
        let t = transport.map(|t| HostTransport { quarters: t.quarters + (b * block) as f64 / 24_000.0, ..t });
        let [left, _] = plugin.process([&x, &x], [&silence, &silence], events, t.map(|t| t.event()).as_ref());
        events = &[];
        input.extend_from_slice(&x);
        output.extend_from_slice(&left);
    }
    (input, output)
}

#[test]
fn describes_itself_to_the_host() {
    let mut plugin = load();
    assert_eq!(
        plugin.audio_ports(true),
        [PortDesc { name: "Input".into(), channels: 2 }, PortDesc { name: "Sidechain".into(), channels: 2 }]
    );
    let outputs: Vec<PortDesc> = ["Output", "Take 1", "Take 2", "Take 3", "Take 4"]
        .iter()
        .map(|name| PortDesc { name: name.to_string(), channels: 2 })
        .collect();
    assert_eq!(plugin.audio_ports(false), outputs);
    let names: Vec<&str> = plugin.params.iter().map(|p| p.name.as_str()).collect();
    for name in ["Output gain", "Take level", "Guide click", "Capture source", "Mix", "Generate", "Bypass"] {
        assert!(names.contains(&name), "missing parameter {name:?} in {names:?}");
    }
    for p in &plugin.params {
        assert!(p.flags.contains(ParamInfoFlags::IS_AUTOMATABLE), "{} is not automatable", p.name);
    }
    let bypass = plugin.params.iter().find(|p| p.name == "Bypass").unwrap();
    assert!(bypass.flags.contains(ParamInfoFlags::IS_BYPASS));
    assert_eq!((bypass.min, bypass.max, bypass.default), (0.0, 1.0, 0.0));
}

/// Hosts show parameter values as text and let users type them: every value's text must parse
/// back to a value that shows the same text (clap-validator's `param-conversions`).
#[test]
fn parameter_text_round_trips() {
    let mut plugin = load();
    let params = plugin.params.clone();
    for p in &params {
        for step in 0..=20 {
            let value = p.min + (p.max - p.min) * step as f64 / 20.0;
            let text = plugin.value_to_text(&p.name, value);
            let back = plugin.text_to_value(&p.name, &text);
            let again = plugin.value_to_text(&p.name, back);
            assert_eq!(again, text, "{}: {value} -> {text:?} -> {back} -> {again:?}", p.name);
        }
    }
}

/// The guide click must land on exactly the samples where the host's beats fall, with accents on
/// the host's bar lines, at two tempi and in simple, compound and odd meters.
#[test]
fn clicks_follow_the_host_tempo_and_meter() {
    let cases: [(f64, (u16, u16)); 5] =
        [(120.0, (4, 4)), (90.0, (3, 4)), (90.0, (6, 8)), (140.0, (7, 8)), (174.0, (4, 4))];
    for (bpm, (num, den)) in cases {
        let mut plugin = load();
        plugin.activate(48_000.0, 1024);
        let meter = TimeSignature::new(num as u32, den as u32).unwrap();
        // Start 1.25 bars in, so the first click is not at sample 0 and bar lines are not at
        // multiples of the block size.
        let start = 1.25 * meter.quarters_per_bar();
        let total = (3.0 * meter.quarters_per_bar() * 48_000.0 * 60.0 / bpm) as usize;
        let click_on = set_param(plugin.param("Guide click"), 1.0);
        let out = render_silence(&mut plugin, 48_000.0, playing(bpm, (num, den), start), &[480, 333, 1024], total, &[click_on]);
        let expected = expected_beats(bpm, meter, 48_000.0, start, total);
        assert!(expected.len() >= 3 * num as usize - 1);
        assert_beats(&find_onsets(&out, 1.0), &expected, 0, &format!("{bpm} BPM {meter}"));
    }
}

#[test]
fn stopped_transport_passes_audio_through_without_clicks() {
    let mut plugin = load();
    plugin.activate(48_000.0, 512);
    let click_on = [set_param(plugin.param("Guide click"), 1.0)];
    let stopped = HostTransport { playing: false, ..playing(120.0, (4, 4), 8.0) };
    let (input, output) = run_sine(&mut plugin, Some(stopped), 512, 100, &click_on);
    assert_eq!(input, output, "a stopped host must hear its input unchanged");
    // A host that sends no transport at all is treated the same.
    let (input, output) = run_sine(&mut plugin, None, 512, 20, &[]);
    assert_eq!(input, output);
}

#[test]
fn a_host_without_tempo_gets_clicks_at_120_bpm() {
    let mut plugin = load();
    plugin.activate(48_000.0, 512);
    let click_on = set_param(plugin.param("Guide click"), 1.0);
    let no_tempo = HostTransport { playing: true, tempo: None, meter: None, quarters: 0.0 };
    let total = 4 * 24_000 + 100;
    let out = render_silence(&mut plugin, 48_000.0, no_tempo, &[512], total, &[click_on]);
    let expected = expected_beats(120.0, TimeSignature::FOUR_FOUR, 48_000.0, 0.0, total);
    assert_beats(&find_onsets(&out, 1.0), &expected, 0, "no tempo from host");
}

#[test]
fn gain_and_bypass_follow_parameter_events() {
    let mut plugin = load();
    plugin.activate(48_000.0, 480);
    let half = plugin.text_to_value("Output gain", "-6.0206 dB");
    let gain = set_param(plugin.param("Output gain"), half);
    let (input, output) = run_sine(&mut plugin, None, 480, 40, &[gain]);
    // After the 20 ms smoother (here: the last 10 blocks, 100 ms in), the output is half the input.
    for (x, y) in input[30 * 480..].iter().zip(&output[30 * 480..]) {
        assert!((y - 0.5 * x).abs() < 1e-4, "{y} != 0.5 * {x}");
    }
    assert!((plugin.param_values()["Output gain"] - half).abs() < 1e-9);

    // Bypass: the input comes out untouched, even with the gain down and the click on.
    let events = [set_param(plugin.param("Bypass"), 1.0), set_param(plugin.param("Guide click"), 1.0)];
    let (input, output) = run_sine(&mut plugin, Some(playing(120.0, (4, 4), 0.0)), 480, 200, &events);
    assert_eq!(input, output);
}

#[test]
fn state_round_trips_into_a_new_instance() {
    let mut original = load();
    original.activate(48_000.0, 480);
    let events = [
        set_param(original.param("Output gain"), original.text_to_value("Output gain", "-12 dB")),
        set_param(original.param("Take level"), original.text_to_value("Take level", "3 dB")),
        set_param(original.param("Guide click"), 1.0),
        set_param(original.param("Capture source"), 1.0),
    ];
    run_sine(&mut original, None, 480, 2, &events);
    let saved = original.save_state();

    // The host stores the blob; the session is saved inside it, with its schema number.
    let mut blob = state_json(&saved);
    let session: serde_json::Value = serde_json::from_str(blob["fields"]["session"].as_str().unwrap()).unwrap();
    assert_eq!(session["schema"], 1);

    let mut restored = load();
    restored.load_state(&saved).expect("load saved state");
    assert_eq!(restored.param_values(), original.param_values());
    assert_eq!(restored.save_state(), saved, "saving again gives the same blob");

    // A session with user text survives a load/save through the host.
    let mut edited = session.clone();
    edited["caption"] = "dusty boom-bap drums".into();
    edited["keyscale"] = "F# minor".into();
    edited["length_bars"] = 8.into();
    blob["fields"]["session"] = edited.to_string().into();
    let mut third = load();
    third.load_state(&state_bytes(&blob)).expect("load edited state");
    let again = state_json(&third.save_state());
    let session: serde_json::Value = serde_json::from_str(again["fields"]["session"].as_str().unwrap()).unwrap();
    assert_eq!((session["caption"].as_str(), session["keyscale"].as_str(), session["length_bars"].as_u64()),
        (Some("dusty boom-bap drums"), Some("F# minor"), Some(8)));

    // And the restored instance behaves as saved: the click is on.
    restored.activate(48_000.0, 480);
    let out = render_silence(&mut restored, 48_000.0, playing(120.0, (4, 4), 0.0), &[480], 30_000, &[]);
    let quarter_db = 10f32.powf(-12.0 / 20.0);
    assert_beats(&find_onsets(&out, quarter_db), &[(0, true), (24_000, false)], 0, "restored click");
}

#[test]
fn corrupt_and_old_states_keep_the_plugin_running() {
    let mut plugin = load();
    plugin.activate(48_000.0, 256);
    let defaults = plugin.param_values();

    // Garbage and truncated blobs are refused, and nothing changes.
    let good = plugin.save_state();
    let garbage: Vec<u8> = (0..997u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let mut not_json = good.clone();
    not_json[8..].iter_mut().for_each(|b| *b = b'#');
    let cases = [("garbage", &garbage[..]), ("truncated", &good[..good.len() / 2]), ("not JSON", &not_json[..]), ("empty", &[][..])];
    for (what, blob) in cases {
        assert!(plugin.load_state(blob).is_err(), "{what} state was accepted");
        assert_eq!(plugin.param_values(), defaults, "{what} state changed parameters");
    }

    // A readable blob whose session is garbage: parameters load, the session falls back to
    // defaults (the editor shows why).
    let mut blob = state_json(&good);
    blob["params"]["click"] = serde_json::json!({ "bool": true });
    blob["fields"]["session"] = "{\"caption\": 12, oops".into();
    plugin.load_state(&state_bytes(&blob)).expect("blob with a corrupt session");
    assert_eq!(plugin.param_values()["Guide click"], 1.0);
    let after = state_json(&plugin.save_state());
    let session: serde_json::Value = serde_json::from_str(after["fields"]["session"].as_str().unwrap()).unwrap();
    assert_eq!(session["caption"], "");
    assert_eq!(session["schema"], 1);

    // An older blob: no session, a parameter this version lacks, one it added since missing.
    let old = serde_json::json!({
        "version": "0.0.1",
        "params": { "gain": { "f32": 0.5 }, "retired_param": { "f32": 3.0 } },
        "fields": {}
    });
    plugin.load_state(&state_bytes(&old)).expect("older state");
    let half = plugin.text_to_value("Output gain", "-6.0206");
    assert!((plugin.param_values()["Output gain"] - half).abs() < 1e-6);

    // Still processing normally.
    let (input, output) = run_sine(&mut plugin, None, 256, 50, &[]);
    for (x, y) in input[40 * 256..].iter().zip(&output[40 * 256..]) {
        assert!((y - 0.5 * x).abs() < 1e-4);
    }
}

/// Hosts change sample rate between activations and use any block size from 1 to 8192.
#[test]
fn sample_rate_changes_and_any_block_size() {
    let mut plugin = load();
    let click_id = plugin.param("Guide click");
    for sample_rate in [44_100.0, 96_000.0, 48_000.0] {
        plugin.activate(sample_rate, 8192);
        let total = (sample_rate * 6.0) as usize; // 3 bars of 4/4 at 120
        let sizes = [1, 7, 64, 480, 4096, 8192, 2, 1000];
        let out = render_silence(&mut plugin, sample_rate, playing(120.0, (4, 4), 0.5), &sizes, total, &[set_param(click_id, 1.0)]);
        let expected = expected_beats(120.0, TimeSignature::FOUR_FOUR, sample_rate, 0.5, total);
        assert_beats(&find_onsets(&out, 1.0), &expected, 0, &format!("{sample_rate} Hz"));
    }
}
