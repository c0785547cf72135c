"""The PyTorch side of `cargo xtask bench`: one stage of upstream ACE-Step 1.5 per process, f32 on
the CPU.

Usage (`cargo xtask bench` runs it; by hand only to debug a stage):

    python xtask/bench/torch_bench.py --stage {dit,vae,vae-encode-10s,vae-encode-60s,text} \
        --checkpoints DIR --upstream DIR \
        [--runs 5] [--threads 2] [--frames 750] [--encoder-len 400] [--vae-frames 250] \
        [--text-tokens 256] [--seed 0] [--load-only]

DIR (--upstream) holds upstream's `acestep/` package; nothing of it is copied here, it is imported
from there. --checkpoints is a set in the published layout (`cargo xtask synth-checkpoint` or
`tiny-checkpoint`): the same safetensors files the candle side reads, bf16 on disk, converted to
f32 at load, as each model's own `from_pretrained` does it.

Stages (one model each, so the peak RSS belongs to that model):
- dit: `AceStepConditionGenerationModel` from `acestep-v15-turbo/` (+ `silence_latent.pt`), SDPA
  attention. `condition_kv` is the decoder's `condition_embedder` and every layer's cross-attention
  K/V, computed exactly as `AceStepAttention.forward` does before it caches them; `forward` is one
  `model.decoder(...)` call with that cache already filled (`use_cache=True`), as each step of
  upstream's `generate_audio` after the first runs.
- vae: diffusers' `AutoencoderOobleck` from `vae/`, one untiled `decode`.
- vae-encode-10s, vae-encode-60s: the same VAE encoding 10 or 60 s of stereo tones (the same
  samples as the candle side's `bench_audio`) through upstream's own `tiled_encode`
  (`core/generation/handler/vae_encode.py`, its chunking on a machine without a GPU: 15 s chunks,
  2 s overlap), posterior sample included, as upstream's pipeline encodes a source.
- text: transformers' `Qwen3Model` from `Qwen3-Embedding-0.6B/` (+ its fast tokenizer), one
  forward of random token ids (`use_cache=False`), SDPA attention.

Each measured call runs once to warm up, then --runs times under `torch.inference_mode()`; the
script prints one JSON object (the last line of stdout) with every run in ms, min and median, the
load time in seconds (with --load-only, only that: `cargo xtask bench` runs extra load-only
processes and keeps each side's best load), the peak RSS (`ru_maxrss`) after each step, and the CPU that other
processes used meanwhile (from /proc/stat).
"""

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path


# Fewer /proc/stat ticks than this (all CPUs together) give no share: one tick is then > 2%.
MIN_CPU_TICKS = 50


class CpuMeter:
    """Share of the machine's CPU time that other processes used since `start` (/proc/stat busy
    ticks minus this process's own utime + stime), in percent of all cores; None when the window
    is too short to say."""

    def __init__(self):
        self.start = self.read()

    @staticmethod
    def read():
        with open("/proc/stat") as f:
            user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in f.readline().split()[1:9])
        busy = user + nice + system + irq + softirq + steal
        with open("/proc/self/stat") as f:
            stat = f.read()
        fields = stat[stat.rindex(")") + 2:].split()  # fields[0] is field 3 (state)
        own = int(fields[11]) + int(fields[12])  # utime, stime: all threads
        return busy, busy + idle + iowait, own

    def others_pct(self):
        busy, total, own = self.read()
        d_total = total - self.start[1]
        if d_total < MIN_CPU_TICKS:
            return None
        return round(max(0.0, 100.0 * ((busy - self.start[0]) - (own - self.start[2])) / d_total), 1)


def peak_rss_mib():
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)  # KiB on Linux


def time_runs(fn, runs, torch):
    """One warm-up call, then `runs` timed calls of `fn`."""
    meter = CpuMeter()
    with torch.inference_mode():
        out = fn()
        out = None
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            out = fn()
            times.append((time.perf_counter() - start) * 1e3)
            last, out = out, None
        finite = bool(all(torch.isfinite(t).all() for t in (last if isinstance(last, (list, tuple)) else [last])))
    return {
        "runs_ms": [round(t, 3) for t in times],
        "min_ms": round(min(times), 3),
        "median_ms": round(statistics.median(times), 3),
        "others_cpu_pct": meter.others_pct(),
        "peak_rss_mib": peak_rss_mib(),
        "finite": finite,
    }


def timed_load(load):
    meter = CpuMeter()
    start = time.perf_counter()
    result = load()
    seconds = time.perf_counter() - start
    return result, {"seconds": round(seconds, 3), "others_cpu_pct": meter.others_pct(), "peak_rss_mib": peak_rss_mib()}


def require_all_weights(what, info):
    bad = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if bad:
        raise SystemExit(f"{what}: the checkpoint does not match the model: {bad}")


def require_f32(what, module, torch):
    dtypes = {p.dtype for p in module.parameters()}
    if dtypes != {torch.float32}:
        raise SystemExit(f"{what}: parameters are {dtypes}, expected float32 only")


def stage_dit(args, torch):
    from acestep.models.turbo.modeling_acestep_v15_turbo import AceStepConditionGenerationModel
    from transformers.cache_utils import DynamicCache, EncoderDecoderCache

    folder = args.checkpoints / "acestep-v15-turbo"

    def load():
        model, info = AceStepConditionGenerationModel.from_pretrained(
            folder, dtype=torch.float32, attn_implementation="sdpa", output_loading_info=True)
        model.config._attn_implementation = "sdpa"
        silence = torch.load(folder / "silence_latent.pt", map_location="cpu").transpose(1, 2).float()
        return model.eval(), info, silence

    (model, info, _silence), load = timed_load(load)
    require_all_weights("DiT", info)
    require_f32("DiT", model, torch)
    if args.load_only:
        return load, {}, {}
    cfg, decoder = model.config, model.decoder

    gen = torch.Generator().manual_seed(args.seed)
    latent = cfg.audio_acoustic_hidden_dim
    states = torch.randn(1, args.encoder_len, cfg.hidden_size, generator=gen)
    x = torch.randn(1, args.frames, latent, generator=gen)
    context = torch.randn(1, args.frames, cfg.in_channels - latent, generator=gen)
    t = torch.full((1,), 0.7)

    def condition_kv():
        embedded = decoder.condition_embedder(states)
        shape = (*embedded.shape[:-1], -1, decoder.layers[0].cross_attn.head_dim)
        kv = []
        for layer in decoder.layers:
            attn = layer.cross_attn
            k = attn.k_norm(attn.k_proj(embedded).view(shape)).transpose(1, 2)
            v = attn.v_proj(embedded).view(shape).transpose(1, 2)
            kv.append((k, v))
        return [t for pair in kv for t in pair]

    cache = EncoderDecoderCache(DynamicCache(), DynamicCache())

    def forward():
        return decoder(hidden_states=x, timestep=t, timestep_r=t, attention_mask=None,
                       encoder_hidden_states=states, encoder_attention_mask=None,
                       context_latents=context, use_cache=True, past_key_values=cache)[0]

    timings = {"condition_kv": time_runs(condition_kv, args.runs, torch)}
    timings["forward"] = time_runs(forward, args.runs, torch)  # the warm-up call fills the cache
    if not all(cache.is_updated.get(i) for i in range(len(decoder.layers))):
        raise SystemExit("DiT: the cross-attention cache was not filled by the warm-up call")
    shapes = {"frames": args.frames, "encoder_len": args.encoder_len, "hidden": cfg.hidden_size,
              "latent_channels": latent, "context_channels": cfg.in_channels - latent,
              "layers": cfg.num_hidden_layers, "attention": cfg._attn_implementation}
    return load, timings, shapes


def load_vae(args, torch):
    """diffusers' `AutoencoderOobleck` from `vae/` in f32, every weight present; its load report
    and its hop (samples per latent frame)."""
    from diffusers import AutoencoderOobleck

    folder = args.checkpoints / "vae"
    (vae, info), load = timed_load(lambda: AutoencoderOobleck.from_pretrained(
        folder, torch_dtype=torch.float32, output_loading_info=True))
    require_all_weights("VAE", info)
    require_f32("VAE", vae, torch)
    hop = 1
    for r in vae.config.downsampling_ratios:
        hop *= r
    return vae.eval(), load, hop


def stage_vae(args, torch):
    vae, load, hop = load_vae(args, torch)
    if args.load_only:
        return load, {}, {}
    channels = vae.config.decoder_input_channels
    latents = torch.randn(1, channels, args.vae_frames, generator=torch.Generator().manual_seed(args.seed))
    timings = {"decode": time_runs(lambda: vae.decode(latents).sample, args.runs, torch)}
    shapes = {"frames": args.vae_frames, "latent_channels": channels, "samples": args.vae_frames * hop,
              "seconds": args.vae_frames * hop / vae.config.sampling_rate}
    return load, timings, shapes


def bench_audio(samples, torch):
    """Two channels of deterministic tones: `0.5·sin(0.0137·i + c) + 0.1·cos(0.31·i)`."""
    i = torch.arange(samples, dtype=torch.float64)
    channels = [0.5 * torch.sin(0.0137 * i + c) + 0.1 * torch.cos(0.31 * i) for c in range(2)]
    return torch.stack(channels).to(torch.float32).unsqueeze(0)


def stage_vae_encode(args, torch):
    import importlib.util

    def handler_module(name):
        """One file of upstream's handler package, without the package's `__init__` (which pulls
        in audio I/O libraries the encode never uses)."""
        path = args.upstream / "acestep/core/generation/handler" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(f"acestep_handler_{name}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    VaeEncodeMixin = handler_module("vae_encode").VaeEncodeMixin
    VaeEncodeChunksMixin = handler_module("vae_encode_chunks").VaeEncodeChunksMixin

    class Host(VaeEncodeMixin, VaeEncodeChunksMixin):
        """The attributes upstream's encode mixins read from its handler, on the CPU."""

        def __init__(self, vae):
            self.vae, self.device = vae, "cpu"
            self.use_mlx_vae, self.mlx_vae, self.disable_tqdm = False, None, True

        def _get_effective_mps_memory_gb(self):
            return None

    vae, load, hop = load_vae(args, torch)
    if args.load_only:
        return load, {}, {}
    host = Host(vae)
    seconds = int(args.stage.removeprefix("vae-encode-").removesuffix("s"))
    samples = seconds * vae.config.sampling_rate
    audio = bench_audio(samples, torch)
    encoded = {}

    def encode():
        latents = host.tiled_encode(audio)
        encoded["frames"] = latents.shape[-1]
        return latents

    timings = {"encode": time_runs(encode, args.runs, torch)}
    if encoded["frames"] != samples // hop:
        raise SystemExit(f"upstream encoded {encoded['frames']} frames, expected {samples // hop}")
    shapes = {"seconds": seconds, "samples": samples, "frames": samples // hop,
              "latent_channels": vae.config.decoder_input_channels}
    return load, timings, shapes


def stage_text(args, torch):
    from transformers import PreTrainedTokenizerFast, Qwen3Model

    folder = args.checkpoints / "Qwen3-Embedding-0.6B"

    def load():
        model, info = Qwen3Model.from_pretrained(
            folder, dtype=torch.float32, attn_implementation="sdpa", output_loading_info=True)
        tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"))
        return model.eval(), info, tokenizer

    (model, info, _tokenizer), load = timed_load(load)
    require_all_weights("text encoder", info)
    require_f32("text encoder", model, torch)
    if args.load_only:
        return load, {}, {}
    cfg = model.config
    ids = torch.randint(0, cfg.vocab_size, (1, args.text_tokens), generator=torch.Generator().manual_seed(args.seed))
    timings = {"encode": time_runs(lambda: model(input_ids=ids, use_cache=False).last_hidden_state, args.runs, torch)}
    shapes = {"tokens": args.text_tokens, "hidden": cfg.hidden_size, "vocab": cfg.vocab_size,
              "layers": cfg.num_hidden_layers, "attention": cfg._attn_implementation}
    return load, timings, shapes


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", choices=["dit", "vae", "vae-encode-10s", "vae-encode-60s", "text"], required=True)
    parser.add_argument("--checkpoints", type=Path, required=True)
    parser.add_argument("--upstream", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--frames", type=int, default=750)
    parser.add_argument("--encoder-len", type=int, default=400)
    parser.add_argument("--vae-frames", type=int, default=250)
    parser.add_argument("--text-tokens", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--load-only", action="store_true", help="load the model, report the load, run nothing")
    args = parser.parse_args()
    if args.runs < 1:
        raise SystemExit("--runs must be at least 1")
    if not (args.upstream / "acestep" / "models").is_dir():
        raise SystemExit(f"--upstream {args.upstream}: no acestep/models/ there (upstream ACE-Step 1.5's package)")
    sys.path.insert(0, str(args.upstream.resolve()))

    import torch

    # The libraries the stage loads with, imported before the start RSS is taken.
    if args.stage == "dit":
        import acestep.models.turbo.modeling_acestep_v15_turbo  # noqa: F401
    elif args.stage.startswith("vae"):
        import diffusers  # noqa: F401
    else:
        import transformers  # noqa: F401
    rss_start = peak_rss_mib()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    stages = {"dit": stage_dit, "vae": stage_vae, "vae-encode-10s": stage_vae_encode, "vae-encode-60s": stage_vae_encode,
              "text": stage_text}
    load, timings, shapes = stages[args.stage](args, torch)

    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for name in ("transformers", "diffusers"):
        module = sys.modules.get(name)
        if module is not None:
            versions[name] = module.__version__
    print(json.dumps({
        "side": "torch",
        "stage": args.stage,
        "threads": torch.get_num_threads(),
        "versions": versions,
        "shapes": shapes,
        "rss_start_mib": rss_start,
        "load": load,
        "timings": timings,
    }, allow_nan=False), flush=True)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
