"""Make parity fixtures from the upstream ACE-Step 1.5 PyTorch code.

Usage:
    python tests/parity/make_fixtures.py --upstream DIR [--out tests/parity/fixtures]

DIR holds upstream's `acestep/` package: at least `acestep/__init__.py` and `acestep/models/`
from ACE-Step 1.5 commit 6d467e4 (e.g. `git archive 6d467e4 acestep/models acestep/__init__.py
| tar x -C DIR`). Needs torch 2.15, transformers 4.57.6, safetensors, numpy (and loguru, which
upstream imports). Runs in float32 on one CPU thread so the numbers do not depend on the machine's
thread count. Nothing here reimplements the model: every output comes from upstream modules.

Each stage writes `<stage>.safetensors` (weights under their checkpoint names, inputs under
`input.*`, results under `out.*`) and the tiny `config.json` the Rust side parses.
"""

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

SEED = 20261124

# The tiny configuration of reference/parity-oracle.md: every size small, sliding window 4 so a
# 40-frame sequence exercises it.
TINY_CONFIG = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    num_lyric_encoder_hidden_layers=2,
    text_hidden_dim=32,
    fsq_dim=64,
    num_timbre_encoder_hidden_layers=1,
    num_attention_pooler_hidden_layers=1,
    num_audio_decoder_hidden_layers=2,
    sliding_window=4,
    timbre_fix_frame=30,
)


def tiny_config():
    from acestep.models.common.configuration_acestep_v15 import AceStepConfig

    config = AceStepConfig(**TINY_CONFIG)
    config._attn_implementation = "sdpa"
    return config


def randomize(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Replace upstream's near-identity init (std 0.02 linears, unit norms) with weights large
    enough that attention patterns, masks and norms all matter to the result."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("norm.weight") or "layernorm" in name:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=generator))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=generator))
            else:
                fan_in = p.shape[-1] if p.dim() > 1 else p.shape[0]
                p.copy_(torch.randn(p.shape, generator=generator) / fan_in**0.5)


def lyric_encoder_stage(out: Path) -> None:
    """The lyric encoder: projection, bidirectional encoder layers (sliding and full attention)
    with a key padding mask, final norm. Also the masks and rotary tables it builds."""
    from acestep.models.turbo import modeling_acestep_v15_turbo as turbo

    config = tiny_config()
    generator = torch.Generator().manual_seed(SEED)
    encoder = turbo.AceStepLyricEncoder(config).eval()
    randomize(encoder, generator)

    batch, length = 2, 40
    embeds = torch.randn(batch, length, config.text_hidden_dim, generator=generator)
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[1, 33:] = 0  # the second item is 7 frames shorter

    layer_outputs = []
    hooks = [
        layer.register_forward_hook(lambda _m, _i, o: layer_outputs.append(o[0].detach().clone()))
        for layer in encoder.layers
    ]
    with torch.no_grad():
        result = encoder(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        positions = torch.arange(length).unsqueeze(0)
        cos, sin = encoder.rotary_emb(embeds, positions)
    for h in hooks:
        h.remove()

    full_mask = turbo.create_4d_mask(length, torch.float32, "cpu", mask, None, False, False)
    sliding_mask = turbo.create_4d_mask(length, torch.float32, "cpu", mask, config.sliding_window, True, False)

    tensors = {f"encoder.lyric_encoder.{k}": v.contiguous() for k, v in encoder.state_dict().items()}
    tensors.update({
        "input.embeds": embeds,
        "input.mask": mask.to(torch.float32),
        "out.rope_cos": cos[0],
        "out.rope_sin": sin[0],
        "out.full_mask": full_mask,
        "out.sliding_mask": sliding_mask,
        "out.final": result,
    })
    for i, h in enumerate(layer_outputs):
        tensors[f"out.layer{i}"] = h
    save_file(tensors, str(out / "lyric_encoder.safetensors"), metadata={"seed": str(SEED)})
    print(f"lyric_encoder: {len(tensors)} tensors, layer types {config.layer_types}")


def condition_encoder_stage(out: Path) -> None:
    """The whole condition encoder: text projection, lyric encoder, timbre encoder over packed
    reference clips (one for the first item, two for the second), and the packing of lyric,
    timbre and text states into one sequence with its mask."""
    from acestep.models.turbo import modeling_acestep_v15_turbo as turbo

    config = tiny_config()
    generator = torch.Generator().manual_seed(SEED + 1)
    encoder = turbo.AceStepConditionEncoder(config).eval()
    randomize(encoder, generator)

    batch = 2
    text = torch.randn(batch, 12, config.text_hidden_dim, generator=generator)
    text_mask = torch.ones(batch, 12, dtype=torch.long)
    text_mask[1, 9:] = 0
    lyric = torch.randn(batch, 24, config.text_hidden_dim, generator=generator)
    lyric_mask = torch.ones(batch, 24, dtype=torch.long)
    lyric_mask[0, 20:] = 0
    refs = torch.randn(3, 30, config.timbre_hidden_dim, generator=generator)
    order = torch.tensor([1, 0, 1])  # clip 0 and 2 belong to item 1, clip 1 to item 0

    with torch.no_grad():
        timbre, timbre_mask = encoder.timbre_encoder(refs, order)
        states, mask = encoder(text, text_mask, lyric, lyric_mask, refs, order)

    tensors = {f"encoder.{k}": v.contiguous() for k, v in encoder.state_dict().items()}
    tensors.update({
        "input.text": text,
        "input.text_mask": text_mask.to(torch.float32),
        "input.lyric": lyric,
        "input.lyric_mask": lyric_mask.to(torch.float32),
        "input.refs": refs,
        "input.order": order.to(torch.float32),
        "out.timbre": timbre,
        "out.timbre_mask": timbre_mask.to(torch.float32),
        "out.states": states,
        "out.mask": mask.to(torch.float32),
    })
    save_file(tensors, str(out / "condition_encoder.safetensors"), metadata={"seed": str(SEED + 1)})
    print(f"condition_encoder: {len(tensors)} tensors, packed {tuple(states.shape)}")


def dit_stage(out: Path) -> None:
    """The whole turbo model on a two-item batch: condition encoder, context latents, one DiT
    forward at a mid timestep (with the real condition and with the CFG null condition), and the
    8-step shift-3 turbo trajectory of `generate_audio` from saved noise, every step's input and
    velocity recorded."""
    from acestep.models.turbo import modeling_acestep_v15_turbo as turbo

    config = tiny_config()
    generator = torch.Generator().manual_seed(SEED + 2)
    model = turbo.AceStepConditionGenerationModel(config).eval()
    randomize(model, generator)

    batch, frames, latent = 2, 40, config.audio_acoustic_hidden_dim
    text = torch.randn(batch, 7, config.text_hidden_dim, generator=generator)
    text_mask = torch.ones(batch, 7)
    text_mask[1, 5:] = 0
    lyric = torch.randn(batch, 9, config.text_hidden_dim, generator=generator)
    lyric_mask = torch.ones(batch, 9)
    lyric_mask[0, 6:] = 0
    refs = torch.randn(3, 30, latent, generator=generator)
    order = torch.tensor([0, 0, 1])
    silence = torch.randn(1, 200, latent, generator=generator)
    src = torch.randn(batch, frames, latent, generator=generator)
    chunk_masks = torch.ones(batch, frames, latent)
    chunk_masks[1, 10:25] = 0  # the second item keeps a window of its source
    is_covers = torch.zeros(batch, dtype=torch.long)
    seed = 42

    with torch.no_grad():
        states, states_mask, context = model.prepare_condition(
            text, text_mask, lyric, lyric_mask, refs, order,
            src, torch.ones(batch, frames), silence, src, chunk_masks, is_covers)
        xt = torch.randn(batch, frames, latent, generator=generator)
        t = torch.full((batch,), 0.7)
        decoder_kwargs = dict(hidden_states=xt, timestep=t, timestep_r=t, attention_mask=None,
                              encoder_attention_mask=states_mask, context_latents=context, use_cache=False)
        vt = model.decoder(encoder_hidden_states=states, **decoder_kwargs)[0]
        null_states = model.null_condition_emb.expand_as(states)
        vt_null = model.decoder(encoder_hidden_states=null_states, **decoder_kwargs)[0]

        steps = []
        hook = model.decoder.register_forward_hook(
            lambda _m, _a, kwargs, o: steps.append(
                (kwargs["hidden_states"].clone(), kwargs["timestep"].clone(), o[0].clone())),
            with_kwargs=True)
        noise = model.prepare_noise(context, seed)
        result = model.generate_audio(
            text_hidden_states=text, text_attention_mask=text_mask,
            lyric_hidden_states=lyric, lyric_attention_mask=lyric_mask,
            refer_audio_acoustic_hidden_states_packed=refs, refer_audio_order_mask=order,
            src_latents=src, chunk_masks=chunk_masks, is_covers=is_covers, silence_latent=silence,
            seed=seed, shift=3.0, dcw_enabled=False)
        hook.remove()

    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    tensors.update({
        "input.text": text, "input.text_mask": text_mask,
        "input.lyric": lyric, "input.lyric_mask": lyric_mask,
        "input.refs": refs, "input.order": order.to(torch.float32),
        "input.src": src, "input.chunk_masks": chunk_masks, "input.silence": silence,
        "input.xt": xt, "input.t": t, "input.noise": noise,
        "out.states": states, "out.context": context,
        "out.vt": vt, "out.vt_null": vt_null,
        "out.timesteps": torch.stack([s[1][0] for s in steps]),
        "out.target": result["target_latents"],
    })
    for i, (x, _t, v) in enumerate(steps):
        tensors[f"out.step{i}.xt"] = x
        tensors[f"out.step{i}.vt"] = v
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    save_file(tensors, str(out / "dit.safetensors"), metadata={"seed": str(SEED + 2)})
    print(f"dit: {len(tensors)} tensors, {len(steps)} steps, target {tuple(result['target_latents'].shape)}")


# The tiny VAE: the real model's strides (hop 1920) with small widths so the fixture stays
# under 2 MB; multiples [1, 2, 1, 2, 1] make an in/out channel swap a shape error.
TINY_VAE_CONFIG = dict(
    encoder_hidden_size=24,
    downsampling_ratios=[2, 4, 4, 6, 10],
    channel_multiples=[1, 2, 1, 2, 1],
    decoder_channels=8,
    decoder_input_channels=12,
    audio_channels=2,
    sampling_rate=48000,
)


def tokenizer_stage(out: Path) -> None:
    """The audio tokenizer (attention pooler over 5-frame windows, FSQ) and detokenizer: latents
    whose length is not a multiple of the window (padded with the silence latent), their codes
    and quantized states, the codes decoded back (`get_output_from_indices`), the 25 Hz hints,
    and the cover item's context latents from `prepare_condition`."""
    from acestep.models.turbo import modeling_acestep_v15_turbo as turbo

    config = tiny_config()
    generator = torch.Generator().manual_seed(SEED + 3)
    model = turbo.AceStepConditionGenerationModel(config).eval()
    randomize(model, generator)

    batch, frames, latent = 2, 43, config.audio_acoustic_hidden_dim
    latents = torch.randn(batch, frames, latent, generator=generator)
    silence = torch.randn(1, 60, latent, generator=generator)
    chunk_masks = torch.ones(batch, frames, latent)
    is_covers = torch.tensor([0, 1])
    # Condition inputs only so prepare_condition runs; its encoder output is not compared here.
    text = torch.randn(batch, 3, config.text_hidden_dim, generator=generator)
    lyric = torch.randn(batch, 3, config.text_hidden_dim, generator=generator)
    refs = torch.randn(2, 30, latent, generator=generator)
    ones = torch.ones(batch, 3)

    with torch.no_grad():
        quantized, indices, _ = model.tokenize(latents, silence, torch.ones(batch, frames))
        hints = model.detokenize(quantized)
        from_indices = model.tokenizer.quantizer.get_output_from_indices(indices)
        _, _, context = model.prepare_condition(
            text, ones, lyric, ones, refs, torch.tensor([0, 1]),
            latents, torch.ones(batch, frames), silence, latents, chunk_masks, is_covers)

    weights = {k: v for k, v in model.state_dict().items() if k.startswith(("tokenizer.", "detokenizer."))}
    tensors = {k: v.contiguous() for k, v in weights.items()}
    tensors.update({
        "input.latents": latents, "input.silence": silence, "input.chunk_masks": chunk_masks,
        "out.quantized": quantized, "out.indices": indices[..., 0].to(torch.int64),
        "out.from_indices": from_indices, "out.hints": hints, "out.context": context,
    })
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    save_file(tensors, str(out / "tokenizer.safetensors"), metadata={"seed": str(SEED + 3)})
    distinct = len(set(indices.flatten().tolist()))
    print(f"tokenizer: {len(tensors)} tensors, codes {tuple(indices.shape)} ({distinct} distinct), hints {tuple(hints.shape)}")


STAGES = {"lyric_encoder": lyric_encoder_stage, "condition_encoder": condition_encoder_stage,
          "dit": dit_stage, "tokenizer": tokenizer_stage}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="directory containing upstream's acestep/")
    parser.add_argument("--out", default=str(Path(__file__).parent / "fixtures"))
    parser.add_argument("--stage", action="append", choices=sorted(STAGES), help="default: all")
    args = parser.parse_args()

    sys.path.insert(0, args.upstream)
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tiny_config().to_json_file(str(out / "config.json"))
    for stage in args.stage or sorted(STAGES):
        STAGES[stage](out)


if __name__ == "__main__":
    main()
