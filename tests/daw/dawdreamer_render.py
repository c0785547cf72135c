"""Render Backline's VST3 in DawDreamer (a JUCE host) with a playing transport.

Usage: dawdreamer_render.py PLUGIN.vst3 OUT_DIR

Writes float WAVs to OUT_DIR and prints a JSON summary on stdout; the Rust test
`tests/tests/dawdreamer.rs` checks them:
  clicks.wav       silence in, guide click on, 100 BPM: a click on every beat
  passthrough.wav  4 channels: output L/R, then the main input L/R (click off)
  restored_clicks.wav  a fresh instance loaded from the state saved with click on, gain -24 dB
"""

import json
import struct
import sys
from pathlib import Path

import dawdreamer as daw
import numpy as np

SAMPLE_RATE = 48_000
BLOCK = 512
BPM = 100.0
SECONDS = 4.8  # 8 beats at 100 BPM


def write_float_wav(path: Path, channels: np.ndarray) -> None:
    """channels: (n_channels, n_samples) float32 -> IEEE-float WAV."""
    data = np.ascontiguousarray(channels.T, dtype="<f4").tobytes()
    n_ch = channels.shape[0]
    header = b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 3, n_ch, SAMPLE_RATE, SAMPLE_RATE * 4 * n_ch, 4 * n_ch, 32)
    header += b"data" + struct.pack("<I", len(data))
    path.write_bytes(header + data)


def param_index(fx, name: str) -> int:
    for p in fx.get_parameters_description():
        if p["name"] == name:
            return p["index"]
    raise SystemExit(f"no parameter named {name!r}")


def render(plugin: str, source: np.ndarray, params: dict) -> np.ndarray:
    engine = daw.RenderEngine(SAMPLE_RATE, BLOCK)
    engine.set_bpm(BPM)
    src = engine.make_playback_processor("src", source)
    fx = engine.make_plugin_processor("backline", plugin)
    for name, value in params.items():
        fx.set_parameter(param_index(fx, name), value)
    engine.load_graph([(src, []), (fx, ["src"])])
    engine.render(SECONDS)
    return engine.get_audio()


def main() -> None:
    plugin, out_dir = sys.argv[1], Path(sys.argv[2])
    out_dir.mkdir(parents=True, exist_ok=True)
    n = int(SAMPLE_RATE * SECONDS)
    t = np.arange(n) / SAMPLE_RATE

    # Main input (channels 0-1) and sidechain (2-3): the plugin has a stereo sidechain bus.
    silence = np.zeros((4, n), dtype=np.float32)
    clicks = render(plugin, silence, {"Guide click": 1.0})
    write_float_wav(out_dir / "clicks.wav", clicks)

    music = np.stack([
        0.25 * np.sin(2 * np.pi * 220 * t),
        0.25 * np.sin(2 * np.pi * 330 * t),
        0.1 * np.sin(2 * np.pi * 50 * t),
        0.1 * np.sin(2 * np.pi * 60 * t),
    ]).astype(np.float32)
    through = render(plugin, music, {})
    write_float_wav(out_dir / "passthrough.wav", np.concatenate([through[:2], music[:2]]))

    # State round trip through the JUCE host. VST3 parameter changes reach the plugin through
    # process(), so render once before saving, as a DAW would have.
    engine = daw.RenderEngine(SAMPLE_RATE, BLOCK)
    engine.set_bpm(BPM)
    src = engine.make_playback_processor("src", silence)
    fx = engine.make_plugin_processor("a", plugin)
    fx.set_parameter(param_index(fx, "Guide click"), 1.0)
    fx.set_parameter(param_index(fx, "Output gain"), 0.5)
    engine.load_graph([(src, []), (fx, ["src"])])
    engine.render(0.1)
    state_path = out_dir / "state.bin"
    fx.save_state(str(state_path))
    saved = {p["name"]: p["currentValText"] for p in fx.get_parameters_description()}

    engine = daw.RenderEngine(SAMPLE_RATE, BLOCK)
    engine.set_bpm(BPM)
    src = engine.make_playback_processor("src", silence)
    fresh = engine.make_plugin_processor("b", plugin)
    fresh.load_state(str(state_path))
    engine.load_graph([(src, []), (fresh, ["src"])])
    engine.render(SECONDS)
    write_float_wav(out_dir / "restored_clicks.wav", engine.get_audio())

    print(json.dumps({
        "sample_rate": SAMPLE_RATE,
        "bpm": BPM,
        "clicks": str(out_dir / "clicks.wav"),
        "passthrough": str(out_dir / "passthrough.wav"),
        "restored_clicks": str(out_dir / "restored_clicks.wav"),
        "saved_params": saved,
    }))


if __name__ == "__main__":
    main()
