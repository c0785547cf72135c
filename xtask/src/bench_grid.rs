//! `cargo xtask bench-grid [--minutes N] [--runs N]`: what measuring a take against the grid
//! costs (`engine/src/audio/analysis.rs`: beat tracking and key estimation) and what shaping it to
//! bars costs (`take_shape.rs`: alignment, a 2 % stretch onto the grid, closing the loop), per
//! minute of stereo 48 kHz audio, to set beside a generation's seconds per minute
//! (`docs/benchmarks.md`).

use std::time::Instant;

use anyhow::{bail, Context, Result};
use backline_engine::audio::align::{estimate_lag, remove_lag};
use backline_engine::audio::analysis::analyze_take;
use backline_engine::audio::bar_plan::{BarPlan, BarSpec};
use backline_engine::audio::stretch::{warp, TimeMap};
use backline_engine::audio::take_shape::{shape_take, TakeOptions};
use backline_engine::audio::beats::track_beats;
use backline_engine::audio::grid::TimeSignature;
use backline_engine::audio::key::estimate_key;
use backline_engine::audio::AudioBuffer;

const RATE: u32 = 48_000;

pub fn run(args: &[String]) -> Result<()> {
    let (mut minutes, mut runs) = (1usize, 5usize);
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let mut value = || rest.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--minutes" => minutes = value()?.parse().context("--minutes must be a whole number")?,
            "--runs" => runs = value()?.parse().context("--runs must be a whole number")?,
            other => bail!("bench-grid: unexpected argument {other}"),
        }
    }
    let audio = music(minutes as f64 * 60.0);
    let per_minute = |seconds: f64| seconds / minutes as f64;
    let median = |mut times: Vec<f64>| {
        times.sort_by(f64::total_cmp);
        times[times.len() / 2]
    };
    let time = |call: &dyn Fn()| median((0..runs).map(|_| {
        let start = Instant::now();
        call();
        start.elapsed().as_secs_f64()
    }).collect());
    let beats = time(&|| {
        track_beats(&audio, 120.0, TimeSignature::FOUR_FOUR).expect("the test music has a beat");
    });
    let key = time(&|| {
        estimate_key(&audio).expect("the test music has a key");
    });
    let whole = time(&|| {
        analyze_take(&audio, Some(120.0), Some("4"), Some("A minor"));
    });
    let stretch = time(&|| {
        warp(&audio, &TimeMap::constant(1.02), 0.0, (audio.frames() as f64 * 1.02) as usize);
    });
    let late = remove_lag(&audio, -1234);
    let align = time(&|| {
        estimate_lag(&audio, &late).expect("the music lines up with itself");
    });
    // Asked for 122.4 BPM: the 120 BPM music is 2 % slow, so the whole take is stretched. As many
    // bars as fit in the audio, looped.
    let bpm = 122.4;
    let bars = (audio.duration_s() / (4.0 * 60.0 / bpm)) as u32 - 1;
    let plan = BarPlan::new(BarSpec { bars, start_bar: 0, bpm, meter: (4, 4), sample_rate: RATE as f64 })?;
    let options = TakeOptions { looped: true, ..Default::default() };
    let shape = time(&|| {
        let (_, report) = shape_take(&audio, &plan, None, None, options);
        assert!(report.correction.stretch_ratio.is_some(), "the take was stretched");
    });
    println!("grid analysis of {minutes} min of stereo 48 kHz audio, median of {runs} runs, seconds per minute of audio:");
    println!("  beat tracking   {:.3}", per_minute(beats));
    println!("  key estimation  {:.3}", per_minute(key));
    println!("  analyze_take    {:.3}", per_minute(whole));
    println!("  stretch by 2 %  {:.3}", per_minute(stretch));
    println!("  source lag      {:.3}", per_minute(align));
    println!("  shape_take      {:.3}  (track, stretch onto the grid, close the loop, seam)", per_minute(shape));
    Ok(())
}

/// `seconds` of 120 BPM music: a kick on every beat, a noise hat on the off-beats and an A-minor
/// bass line, made from integer-seeded noise and sines.
fn music(seconds: f64) -> AudioBuffer {
    let len = (seconds * RATE as f64) as usize;
    let mut out = vec![0.0f32; len];
    let mut noise = 1u64;
    let notes = [55.0f32, 65.41, 82.41, 110.0];
    let beat = RATE as usize / 2;
    for (k, start) in (0..len).step_by(beat / 2).enumerate() {
        for i in 0..(beat / 2).min(len - start) {
            let t = i as f32 / RATE as f32;
            let sample = if k % 2 == 0 {
                let bass = notes[(k / 2) % notes.len()];
                (-t / 0.08).exp() * (std::f32::consts::TAU * 50.0 * t).sin() + 0.5 * (-t / 0.2).exp() * (std::f32::consts::TAU * bass * t).sin()
            } else {
                noise = noise.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                0.2 * (-t / 0.01).exp() * ((noise >> 40) as f32 / (1u64 << 24) as f32 - 0.5)
            };
            out[start + i] += sample;
        }
    }
    AudioBuffer::new(RATE, vec![out.clone(), out])
}
