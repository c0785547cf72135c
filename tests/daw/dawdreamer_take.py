"""A take made in DawDreamer (a JUCE host) plays back from the saved project.

Usage: dawdreamer_take.py PLUGIN.vst3 TAKES_DIR OUT_DIR

The plugin finds the tiny checkpoint set through BACKLINE_CHECKPOINTS and writes takes to
TAKES_DIR (BACKLINE_TAKES); the Rust test `tests/tests/dawdreamer.rs` sets both.
  1. Render with the host automating "Generate" (off, on for a few blocks, off), as a DAW's
     automation lane or a button press would; the default draft is a 4-bar text2music loop.
  2. Wait for the take file, then save the plugin's state through JUCE (the DAW project).
  3. Load that state into a fresh instance and render 5 bars from the song's start:
     take_playback.wav (2 channels).
Prints a JSON summary on stdout.
"""

import json
import sys
import time
from pathlib import Path

import dawdreamer as daw
import numpy as np

from dawdreamer_render import BLOCK, SAMPLE_RATE, param_index, write_float_wav

BPM = 100.0
BAR_SECONDS = 4 * 60.0 / BPM
JOB_TIMEOUT_S = 300


def engine_with(plugin: str, name: str, seconds: float):
    engine = daw.RenderEngine(SAMPLE_RATE, BLOCK)
    engine.set_bpm(BPM)
    silence = np.zeros((4, int(SAMPLE_RATE * seconds)), dtype=np.float32)
    src = engine.make_playback_processor("src", silence)
    fx = engine.make_plugin_processor(name, plugin)
    return engine, src, fx


def main() -> None:
    plugin, takes_dir, out_dir = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    out_dir.mkdir(parents=True, exist_ok=True)

    seconds = 1.0
    engine, src, fx = engine_with(plugin, "maker", seconds)
    press = np.zeros(int(SAMPLE_RATE * seconds), dtype=np.float32)
    press[4 * BLOCK:8 * BLOCK] = 1.0
    fx.set_automation(param_index(fx, "Generate"), press)
    engine.load_graph([(src, []), (fx, ["src"])])
    engine.render(seconds)

    started = time.monotonic()
    while not list(takes_dir.glob("*.wav")):
        if time.monotonic() - started > JOB_TIMEOUT_S:
            raise SystemExit(f"no take in {takes_dir} after {JOB_TIMEOUT_S} s")
        time.sleep(0.2)
    # The take is listed in the session right after its file is written.
    time.sleep(1.0)
    state_path = out_dir / "project_with_take.bin"
    fx.save_state(str(state_path))
    del fx, engine

    seconds = 5 * BAR_SECONDS
    engine, src, fresh = engine_with(plugin, "reopened", seconds)
    fresh.load_state(str(state_path))
    engine.load_graph([(src, []), (fresh, ["src"])])
    # Rendered at once, as a bounce right after opening the project: the plugin loads the take
    # when the host activates it, so the first block already plays it.
    engine.render(seconds)
    out = out_dir / "take_playback.wav"
    write_float_wav(out, engine.get_audio())

    takes = sorted(str(p) for p in takes_dir.glob("*.wav"))
    print(json.dumps({"sample_rate": SAMPLE_RATE, "bpm": BPM, "playback": str(out), "takes": takes}))


if __name__ == "__main__":
    main()
