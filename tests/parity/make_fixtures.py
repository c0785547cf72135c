"""Make parity fixtures from the upstream ACE-Step 1.5 PyTorch code.

Usage:
    python tests/parity/make_fixtures.py --upstream DIR [--out tests/parity/fixtures]

DIR holds upstream's `acestep/` package: at least `acestep/__init__.py` and `acestep/models/`
from ACE-Step 1.5 commit 6d467e4 (e.g. `git archive 6d467e4 acestep/models acestep/__init__.py
| tar x -C DIR`); the prompts stage also needs `acestep/constants.py`, `acestep/api/job_generation_setup.py`,
`acestep/ui/gradio/events/generation/ui_helpers.py` and, in `acestep/core/generation/handler/`, `task_utils.py`,
`prompt_utils.py`, `metadata_utils.py`, `batch_prep.py`, `conditioning_text.py`; the task_inputs stage
`conditioning_masks.py` and `padding_utils.py`. The e2e stage (not run by default) runs upstream's whole
pipeline: it needs the whole `acestep/` package, soundfile, torchaudio, einops and vector-quantize-pytorch, and
`--checkpoints DIR` from `cargo xtask tiny-checkpoint DIR --seed 0`. Needs torch 2.15, transformers
4.57.6, diffusers 0.39.0 (the VAE), safetensors, numpy (and loguru, which upstream imports). Runs in float32 on
one CPU thread so the numbers do not depend on the machine's thread count. Nothing here reimplements the model: every output comes from upstream modules.

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


def condition_batch(config, generator, batch=2, frames=40):
    """The condition encoder's inputs and a source for a two-item batch, drawn in a fixed order:
    text (7 tokens, item 1 padded after 5), lyrics (9, item 0 padded after 6), three 30-frame
    reference clips, a 200-frame silence latent and the source latents."""
    latent = config.audio_acoustic_hidden_dim
    text = torch.randn(batch, 7, config.text_hidden_dim, generator=generator)
    text_mask = torch.ones(batch, 7)
    text_mask[1, 5:] = 0
    lyric = torch.randn(batch, 9, config.text_hidden_dim, generator=generator)
    lyric_mask = torch.ones(batch, 9)
    lyric_mask[0, 6:] = 0
    refs = torch.randn(3, 30, latent, generator=generator)
    silence = torch.randn(1, 200, latent, generator=generator)
    src = torch.randn(batch, frames, latent, generator=generator)
    return text, text_mask, lyric, lyric_mask, refs, silence, src


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
    text, text_mask, lyric, lyric_mask, refs, silence, src = condition_batch(config, generator)
    order = torch.tensor([0, 0, 1])
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


def vae_stage(out: Path) -> None:
    """diffusers' `AutoencoderOobleck` (the ACE-Step 1.5 VAE) at tiny widths: encode a two-item
    stereo batch to the posterior's mean and std, one posterior sample from saved noise, and the
    decode of a 40-frame latent. Also writes the VAE's own `vae_config.json`."""
    import math

    from diffusers import AutoencoderOobleck

    generator = torch.Generator().manual_seed(SEED + 4)
    vae = AutoencoderOobleck(**TINY_VAE_CONFIG).eval()
    # Weight norm is kept as diffusers stores it (`weight_g`, `weight_v`). Gains below 1 on the
    # residual convs keep activations O(1) through the stack (with unit gains they grow ~3x per
    # block); snake alpha/beta are log-scale, so exp() of them lands in about [0.5, 2].
    with torch.no_grad():
        for name, p in vae.named_parameters():
            if name.endswith(("alpha", "beta")):
                p.copy_(0.3 * torch.randn(p.shape, generator=generator))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=generator))
            elif name.endswith("weight_v"):
                p.copy_(torch.randn(p.shape, generator=generator))
            elif name.endswith("weight_g"):
                low, span = (0.15, 0.3) if "res_unit" in name else (0.6, 0.8)
                p.copy_(low + span * torch.rand(p.shape, generator=generator))
            else:
                raise ValueError(f"unexpected VAE parameter {name}")

    samples = 10 * vae.hop_length
    t = torch.arange(samples) / TINY_VAE_CONFIG["sampling_rate"]
    tone = lambda hz, phase=0.0: torch.sin(2 * math.pi * hz * t + phase)
    audio = torch.stack([
        torch.stack([tone(220) + 0.5 * tone(1375), tone(330, 1.0)]),
        torch.stack([tone(97, 0.3) * tone(2, 0.0), tone(4410) + tone(55, 2.0)]),
    ])
    audio = audio + 0.1 * torch.randn(audio.shape, generator=generator)
    audio = 0.5 * audio / audio.abs().amax(dim=(1, 2), keepdim=True)
    latents = torch.randn(1, TINY_VAE_CONFIG["decoder_input_channels"], 40, generator=generator)

    with torch.no_grad():
        posterior = vae.encode(audio).latent_dist
        state = generator.get_state()
        noise = torch.randn(posterior.mean.shape, generator=generator)
        generator.set_state(state)
        sample = posterior.sample(generator=generator)  # draws the same noise
        assert torch.equal(sample, posterior.mean + posterior.std * noise)
        decoded = vae.decode(latents).sample

    tensors = {k: v.contiguous() for k, v in vae.state_dict().items()}
    tensors.update({
        "input.audio": audio,
        "input.noise": noise,
        "input.latents": latents,
        "out.mean": posterior.mean,
        "out.std": posterior.std,
        "out.sample": sample,
        "out.decoded": decoded,
    })
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    save_file(tensors, str(out / "vae.safetensors"), metadata={"seed": str(SEED + 4)})
    # What `save_config` writes as `config.json` (which would clobber the DiT's here).
    (out / "vae_config.json").write_text(vae.to_json_string())
    params = sum(p.numel() for p in vae.parameters())
    print(f"vae: {len(tensors)} tensors, {params} parameters, latent {tuple(posterior.mean.shape)}, "
          f"decoded {tuple(decoded.shape)}")


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


def silence_latent_stage(out: Path) -> None:
    """A small `silence_latent.pt` written by `torch.save` itself (the DiT folders' format: a
    [1, 64, frames] f32 tensor in torch's zip pickle), with the same values in safetensors."""
    generator = torch.Generator().manual_seed(SEED + 5)
    latent = torch.randn(1, 64, 12, generator=generator)
    torch.save(latent, str(out / "silence_latent.pt"))
    save_file({"out.silence_latent": latent}, str(out / "silence_latent.safetensors"), metadata={"seed": str(SEED + 5)})
    print(f"silence_latent: {tuple(latent.shape)}")


# Qwen3-Embedding-0.6B's shape family, shrunk (hidden 32 = TINY_CONFIG's text_hidden_dim).
TINY_QWEN3_CONFIG = dict(
    vocab_size=1024,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=8,
    hidden_act="silu",
    max_position_embeddings=512,
    rms_norm_eps=1e-6,
    rope_theta=1000000.0,
    tie_word_embeddings=True,
    attention_bias=False,
)

# Training text for the tiny prompt tokenizer: caption and lyric prompts as upstream builds them.
TOKENIZER_CORPUS = [
    "# Instruction\nFill the audio semantic mask based on the given conditions:\n\n",
    "# Caption\nupbeat synth pop with bright pads, punchy drums and a catchy vocal hook\n\n",
    "# Caption\nlo-fi hip hop, dusty drums, warm vinyl crackle, mellow piano chords\n\n",
    "# Caption\ndreamy indie rock ballad, reverb guitars, soft female vocals, slow tempo\n\n",
    "# Metas\n- bpm: 120\n- timesignature: 4\n- keyscale: C major\n- duration: 30 seconds\n",
    "# Metas\n- bpm: 92\n- timesignature: 3\n- keyscale: A minor\n- duration: 184 seconds\n",
    "# Languages\nen\n\n# Lyric\n",
    "[Verse]\nWalking down the empty street, the city lights are fading\n",
    "I can hear the rhythm of the rain upon the window pane\n",
    "[Chorus]\nWe'll sing it loud, we'll sing it proud, tonight we're never sleeping\n",
    "Hold me closer, hold me now, don't let the music end\n",
    "[Bridge]\nAnd if the morning never comes, I'll be dancing in the dark\n",
    "[Outro]\nOh oh oh, the night is young, and we're still singing\n",
    "[Instrumental]\n",
    "Je t'aime, café au lait, naïve mélodie sous la pluie de Paris\n",
    "東京の夜、星が光る。歌を歌おう\n",
]
TOKENIZER_VOCAB = 640  # 256 byte symbols + merges; the 3 special tokens go after it, like Qwen's


def make_prompt_tokenizer():
    """A byte-level BPE tokenizer built like Qwen3-Embedding's `tokenizer.json`: NFC, the Qwen2/3
    split regex then ByteLevel without its own regex, special tokens after the BPE vocabulary,
    and a `TemplateProcessing` post-processor that appends `<|endoftext|>` to single sequences."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers
    from tokenizers import pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(
            r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
        ), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=TOKENIZER_VOCAB, min_frequency=1, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(TOKENIZER_CORPUS, trainer)
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False)
                                  for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>")])
    eos = tokenizer.token_to_id("<|endoftext|>")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A:0 <|endoftext|>:0", pair="$A:0 <|endoftext|>:0 $B:1 <|endoftext|>:1",
        special_tokens=[("<|endoftext|>", eos)])
    return tokenizer


def text_encoder_stage(out: Path) -> None:
    """The Qwen3 text encoder (transformers `Qwen3Model`, as upstream loads Qwen3-Embedding-0.6B):
    the last hidden state of a right-padded two-item batch run without an attention mask (as
    upstream does; the model is causal) and the embedding lookup of the lyric path. Also a
    Qwen-shaped prompt tokenizer (`tokenizer.json`) and the ids transformers gives for a few
    prompts with special tokens and truncation (`text_encoder_cases.json` names them)."""
    from transformers import Qwen2TokenizerFast, Qwen3Config, Qwen3Model

    generator = torch.Generator().manual_seed(SEED + 5)
    config = Qwen3Config(**TINY_QWEN3_CONFIG)
    config._attn_implementation = "sdpa"
    model = Qwen3Model(config).eval()
    randomize(model, generator)

    tokenizer = make_prompt_tokenizer()
    tokenizer.save(str(out / "tokenizer.json"))
    fast = Qwen2TokenizerFast(tokenizer_file=str(out / "tokenizer.json"))  # what AutoTokenizer gives
    pad = fast.pad_token_id
    assert pad == tokenizer.token_to_id("<|endoftext|>") and tokenizer.get_vocab_size() <= config.vocab_size

    lengths = [11, 7]
    ids = torch.randint(0, pad, (len(lengths), max(lengths)), generator=generator)
    for row, n in enumerate(lengths):
        ids[row, n - 1] = pad  # each prompt ends with <|endoftext|>
        ids[row, n:] = pad
    with torch.no_grad():
        hidden = model(input_ids=ids, use_cache=False).last_hidden_state
        embeddings = model.embed_tokens(ids)

    cases = [
        ("caption", 256, "# Instruction\nFill the audio semantic mask based on the given conditions:\n\n"
         "# Caption\nlo-fi hip hop, dusty drums\n\n# Metas\n- bpm: 120\n- timesignature: 4/4\n"
         "- keyscale: C major\n- duration: 30 seconds\n<|endoftext|>\n"),
        ("lyrics", 2048, "# Languages\nfr\n\n# Lyric\n[Verse]\nJe t'aime, café — naïve 東京\n"
         "[Chorus]\r\nWE'LL sing   it LOUD!!  \n\tcafe\u0301 123<|endoftext|>"),
        ("empty", 256, ""),
        ("truncated", 16, "Walking down the empty street, the city lights are fading into the rain"),
    ]
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    tensors.update({"input.ids": ids.to(torch.int64), "input.lengths": torch.tensor(lengths),
                    "out.last_hidden_state": hidden, "out.embeddings": embeddings})
    for n, (_, max_len, text) in enumerate(cases):
        got = fast(text, max_length=max_len, truncation=True)["input_ids"]
        tokenizer.enable_truncation(max_len)
        assert got == tokenizer.encode(text).ids, text
        tensors[f"out.ids.{n}"] = torch.tensor(got, dtype=torch.int64)
    save_file(tensors, str(out / "text_encoder.safetensors"), metadata={"seed": str(SEED + 5)})
    config.to_json_file(str(out / "text_encoder_config.json"))
    (out / "text_encoder_cases.json").write_text(json.dumps(
        [{"name": name, "max_len": max_len, "text": text} for name, max_len, text in cases],
        ensure_ascii=False, indent=1) + "\n")
    case_lengths = [len(tensors[f"out.ids.{n}"]) for n in range(len(cases))]
    print(f"text_encoder: {len(tensors)} tensors, hidden {tuple(hidden.shape)}, tokenizer vocab "
          f"{tokenizer.get_vocab_size()} (pad {pad}), case lengths {case_lengths}")


def upstream_module(upstream: str, dotted: str):
    """One upstream module loaded from its file under its own name, without running its package's
    `__init__` (the handler package imports every mixin, and with them MLX, diffusers, ...)."""
    import importlib.util

    path = Path(upstream, *dotted.split(".")).with_suffix(".py")
    spec = importlib.util.spec_from_file_location(dotted, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def upstream_function(upstream: str, relpath: str, name: str):
    """One top-level function compiled from its upstream file's own source, for modules whose
    imports (gradio, torchaudio) this venv lacks while the function itself needs none of them."""
    import ast
    import typing

    path = Path(upstream, relpath)
    tree = ast.parse(path.read_text(), filename=str(path))
    [fn] = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name]
    namespace = {k: getattr(typing, k) for k in typing.__all__}
    exec(compile(ast.Module(body=[fn], type_ignores=[]), str(path), "exec"), namespace)
    return namespace[fn.name]


# Inputs of the prompts cases, under GenerationParams/REST names. `duration` is the request's
# (None: unknown); `source_samples` (48 kHz) replaces it for audio tasks, whose duration upstream
# takes from the source audio. `instrumental` is the UI checkbox.
PROMPT_DEFAULTS = dict(task_type="text2music", instruction=None, track_name=None, track_classes=[],
                       caption="", lyrics="", instrumental=False, vocal_language="unknown", bpm=None,
                       keyscale=None, timesignature=None, duration=None, source_samples=None)
PROMPT_CASES = [
    ("text2music, nothing known", dict(caption="upbeat synth pop")),
    ("text2music, all metas", dict(caption="upbeat synth pop", bpm=120, keyscale="C major",
                                   timesignature="4", duration=30.0, vocal_language="en",
                                   lyrics="[Verse]\nWalking down the empty street\n\n[Chorus]\nWe sing it loud")),
    ("non-integer duration, 4/4, instrumental", dict(caption="lo-fi hip hop, dusty drums", bpm=92,
                                                     keyscale="F# minor", timesignature="4/4", duration=184.75,
                                                     lyrics="these words are replaced", instrumental=True)),
    ("instrumental with no lyrics, 6/8, flat key", dict(caption="waltz", bpm=300, keyscale="E♭ minor",
                                                       timesignature="6/8", duration=600.5, instrumental=True)),
    ("zero and blank metas", dict(caption="ambient drone", bpm=0, keyscale="   ", timesignature="N/A",
                                  duration=0.0, vocal_language="en")),
    ("negative duration, blank time signature", dict(caption="x", keyscale="A minor", timesignature=" \t",
                                                     duration=-1.0)),
    ("duration just under and under one second", dict(caption="short", duration=9.999, bpm=60)),
    ("sub-second duration", dict(caption="blip", duration=0.4)),
    ("metas kept verbatim, unstripped", dict(caption="  padded caption \n", keyscale=" C major ",
                                             timesignature=" 3", bpm=128, duration=12.0)),
    ("own instruction without colon", dict(instruction="Make it sound like a jazz trio",
                                           caption="jazz", bpm=140)),
    ("own instruction with colon and trailing space", dict(instruction="Do this: ", caption="c")),
    ("own instruction ending in a colon", dict(task_type="cover", instruction="Cover it:", caption="c",
                                               source_samples=48000 * 15)),
    ("blank instruction resolves by task", dict(task_type="repaint", instruction="  ", caption="c",
                                                source_samples=48000 * 8 + 1)),
    ("default instruction resolves by task", dict(task_type="lego", track_name="guitar",
                                                  instruction="Fill the audio semantic mask based on the given conditions:",
                                                  caption="c", source_samples=48000 * 10)),
    ("repaint, unicode lyrics", dict(task_type="repaint", caption="J-pop ballad, piano", vocal_language="ja",
                                     lyrics="[Verse]\n東京の夜、星が光る。\r\n歌を歌おう 🎤\n", bpm=76,
                                     keyscale="D major", timesignature="4", source_samples=48000 * 20 + 1234)),
    ("cover, french lyrics", dict(task_type="cover", caption="chanson, accordion", vocal_language="fr",
                                  lyrics="Je t'aime, café au lait, naïve mélodie\n", source_samples=1_234_567)),
    ("cover, empty lyrics", dict(task_type="cover", caption="rock version", vocal_language="en",
                                 source_samples=48000 * 30)),
    ("lego guitar", dict(task_type="lego", track_name="guitar", caption="funky rhythm guitar",
                         source_samples=48000 * 12 + 24000)),
    ("lego backing vocals", dict(task_type="lego", track_name="backing_vocals", caption="airy harmonies",
                                 lyrics="ooh ooh", vocal_language="en", source_samples=48000 * 16)),
    ("lego, no track", dict(task_type="lego", caption="something", source_samples=48000 * 16)),
    ("lego, non-ASCII track name", dict(task_type="lego", track_name="straße", caption="c",
                                        source_samples=48000 * 16)),
    ("extract vocals", dict(task_type="extract", track_name="vocals", caption="", source_samples=48000 * 40)),
    ("extract, empty track name", dict(task_type="extract", track_name="", caption="",
                                       source_samples=48000 * 40)),
    ("extract, no track", dict(task_type="extract", source_samples=48000 * 40)),
    ("complete with three classes", dict(task_type="complete", track_classes=["drums", "bass", "guitar"],
                                         caption="full band", bpm=110, keyscale="G major", timesignature="4",
                                         source_samples=48000 * 24, duration=60.0)),
    ("complete with one class", dict(task_type="complete", track_classes=["keyboard"], caption="c",
                                     source_samples=48000 * 24)),
    ("complete, no classes", dict(task_type="complete", caption="c", source_samples=48000 * 24)),
    ("complete, a blank class", dict(task_type="complete", track_classes=["", "fx"], caption="c",
                                     source_samples=48000 * 24)),
    ("lego ignores track classes", dict(task_type="lego", track_name="synth", track_classes=["drums"],
                                         caption="c", source_samples=48000 * 24)),
    ("complete ignores the track name", dict(task_type="complete", track_name="synth", caption="c",
                                             source_samples=48000 * 24)),
    ("caption in SFT format", dict(caption="# Instruction\nold instruction:\n\n# Caption\n  the real caption\n"
                                           "second line\n\n# Metas\n- bpm: 1\n", bpm=100)),
    ("caption in SFT format, no metas", dict(caption="# Instruction\nx\n# Caption \t\n\nbody only  \n")),
    ("caption with a caption header but no instruction", dict(caption="# Caption\nkept as is")),
    ("SFT caption: the first header followed by a newline wins", dict(
        caption="# Instruction\n# Caption: not this\n#Caption\u3000\n\x1f body\u2003\n \t# Metas\ntail\n# Caption\nlater")),
    ("SFT caption: empty body", dict(caption="# Instruction\ni\n# Caption\n")),
    ("Python-only whitespace is blank", dict(instruction="\x1c\u3000", task_type="extract", track_name="drums",
                                             keyscale="\x1f", timesignature="\u2003\x1e", caption="c",
                                             source_samples=48000 * 11)),
    ("empty caption and lyrics, chinese", dict(vocal_language="zh", lyrics="")),
    ("lyrics with tags and CRLF", dict(caption="c", vocal_language="en",
                                       lyrics="[Intro]\r\n\r\n[Verse 1]\nline one\nline two\n\n[Outro]\n")),
]


class RecordingTokenizer:
    """Stands in for the Qwen3 tokenizer in upstream's text conditioning: records each text and
    `max_length` it is asked to tokenize and returns one dummy token."""

    pad_token_id = 0

    def __init__(self):
        self.calls = []

    def __call__(self, text, padding, truncation, max_length, return_tensors):
        from types import SimpleNamespace

        assert (padding, truncation, return_tensors) == ("longest", True, "pt")
        self.calls.append((text, max_length))
        return SimpleNamespace(input_ids=torch.zeros(1, 1, dtype=torch.long),
                               attention_mask=torch.ones(1, 1, dtype=torch.long))


def prompts_stage(out: Path) -> None:
    """The DiT's text prompts, strings only: each case's instruction, metas block, caption prompt
    (and its non-cover twin with the default instruction) and lyric prompt, as upstream's request
    path builds them (see the README row for the functions). No model, no tokenizer."""
    from types import SimpleNamespace

    from loguru import logger

    import acestep
    from acestep.constants import DEFAULT_DIT_INSTRUCTION, TASK_INSTRUCTIONS

    upstream = str(Path(acestep.__file__).parent.parent)  # the --upstream directory

    handler = "acestep.core.generation.handler."
    mixins = [getattr(upstream_module(upstream, handler + module), cls) for module, cls in [
        ("task_utils", "TaskUtilsMixin"), ("prompt_utils", "PromptMixin"), ("metadata_utils", "MetadataMixin"),
        ("batch_prep", "BatchPrepMixin"), ("conditioning_text", "ConditioningTextMixin")]]
    Host = type("Host", tuple(mixins), {"model": None})
    resolve_instruction = upstream_function(upstream, "acestep/api/job_generation_setup.py", "_resolve_instruction")
    instrumental_checkbox = upstream_function(upstream, "acestep/ui/gradio/events/generation/ui_helpers.py",
                                              "handle_instrumental_checkbox")

    logger.disable("acestep")  # conditioning_text logs every prompt it builds
    cases = []
    for name, overrides in PROMPT_CASES:
        inputs = {**PROMPT_DEFAULTS, **overrides}
        host = Host()
        host.text_tokenizer = RecordingTokenizer()

        # REST request -> GenerationParams (api/job_generation_setup.py).
        req = SimpleNamespace(task_type=inputs["task_type"], track_name=inputs["track_name"],
                              track_classes=inputs["track_classes"],
                              instruction=DEFAULT_DIT_INSTRUCTION if inputs["instruction"] is None else inputs["instruction"])
        instruction = resolve_instruction(req=req, default_dit_instruction=DEFAULT_DIT_INSTRUCTION,
                                          task_instructions=TASK_INSTRUCTIONS)
        if inputs["instruction"] is None:  # the handler/UI helper gives the same strings
            assert instruction == host.generate_instruction(inputs["task_type"], inputs["track_name"],
                                                            inputs["track_classes"]), name
        lyrics = inputs["lyrics"]
        if inputs["instrumental"]:
            lyrics, _ = instrumental_checkbox(True, lyrics, "")

        # generate_music -> prepare_batch_data -> _parse_metas -> _prepare_text_conditioning_inputs.
        src = None if inputs["source_samples"] is None else torch.zeros(2, inputs["source_samples"])
        captions, instructions, lyrics_batch, languages, metas = host.prepare_batch_data(
            1, src, inputs["duration"], inputs["caption"], lyrics, inputs["vocal_language"], instruction,
            inputs["bpm"], inputs["keyscale"] or "", inputs["timesignature"] or "")
        parsed_metas = host._parse_metas(metas)
        host._prepare_text_conditioning_inputs(1, instructions, captions, lyrics_batch, parsed_metas, languages,
                                               audio_cover_strength=0.5)
        [(caption_prompt, caption_max), (lyric_prompt, lyric_max), (non_cover_prompt, _)] = host.text_tokenizer.calls
        cases.append({
            "name": name, "inputs": inputs, "instruction": host._format_instruction(instructions[0]),
            "metas": parsed_metas[0], "caption_prompt": caption_prompt, "non_cover_caption_prompt": non_cover_prompt,
            "lyric_prompt": lyric_prompt, "caption_max_length": caption_max, "lyric_max_length": lyric_max,
        })
    logger.enable("acestep")

    (out / "prompts.json").write_text(json.dumps(cases, ensure_ascii=False, indent=1) + "\n")
    print(f"prompts: {len(cases)} cases, tasks {sorted({c['inputs']['task_type'] for c in cases})}")


def sampler_stage(out: Path) -> None:
    """The samplers around the DiT, on the `dit` stage's weights (read back from dit.safetensors,
    so the repo holds them once): the base model's 4-step shift-3 run with APG guidance 7, an ADG
    run with a CFG interval and a conservative repaint (injection to the last step, latent
    crossfade), turbo's repaint with step injection, turbo's cover with `cover_noise_strength`
    and the switch to the text2music condition, base schedules, and CPU `torch.randn` draws
    for seeded noise. Every decoder call's input, timestep and output is recorded."""
    from safetensors.torch import load_file
    from acestep.models.base import modeling_acestep_v15_base as base
    from acestep.models.turbo import modeling_acestep_v15_turbo as turbo

    config = tiny_config()
    weights = {k: v for k, v in load_file(str(out / "dit.safetensors")).items()
               if not k.startswith(("input.", "out."))}
    models = {}
    for name, module in (("base", base), ("turbo", turbo)):
        model = module.AceStepConditionGenerationModel(config).eval()
        model.load_state_dict(weights, strict=True)
        models[name] = model

    generator = torch.Generator().manual_seed(SEED + 6)
    batch, frames, latent = 2, 40, config.audio_acoustic_hidden_dim
    text = torch.randn(batch, 7, config.text_hidden_dim, generator=generator)
    text_mask = torch.ones(batch, 7)
    text_mask[1, 5:] = 0
    non_cover_text = torch.randn(batch, 6, config.text_hidden_dim, generator=generator)
    non_cover_text_mask = torch.ones(batch, 6)
    lyric = torch.randn(batch, 9, config.text_hidden_dim, generator=generator)
    lyric_mask = torch.ones(batch, 9)
    lyric_mask[0, 6:] = 0
    refs = torch.randn(2, 30, latent, generator=generator)
    order = torch.tensor([0, 1])
    silence = torch.randn(1, 200, latent, generator=generator)
    src = torch.randn(batch, frames, latent, generator=generator)
    ones = torch.ones(batch, frames, latent)
    repaint_mask = torch.zeros(batch, frames, dtype=torch.bool)
    repaint_mask[0, 12:30] = True
    repaint_mask[1, 0:9] = True  # touches the start: only the right edge is blended
    chunk_masks = repaint_mask.unsqueeze(-1).expand(batch, frames, latent).to(torch.float32)
    repaint_src = torch.where(repaint_mask.unsqueeze(-1), silence[:, :frames].expand(batch, -1, -1), src)
    seeds = [7, 1234]

    common = dict(text_hidden_states=text, text_attention_mask=text_mask,
                  lyric_hidden_states=lyric, lyric_attention_mask=lyric_mask,
                  refer_audio_acoustic_hidden_states_packed=refs, refer_audio_order_mask=order,
                  silence_latent=silence, seed=seeds, dcw_enabled=False, use_progress_bar=False)
    runs = {
        "apg": ("base", dict(src_latents=src, chunk_masks=ones, is_covers=torch.zeros(batch, dtype=torch.long),
                             infer_steps=4, shift=3.0, diffusion_guidance_scale=7.0)),
        "adg_repaint": ("base", dict(src_latents=repaint_src, chunk_masks=chunk_masks,
                                     is_covers=torch.zeros(batch, dtype=torch.long), infer_steps=4, shift=3.0,
                                     diffusion_guidance_scale=5.0, use_adg=True, cfg_interval_start=0.0,
                                     cfg_interval_end=0.8, repaint_mask=repaint_mask, clean_src_latents=src,
                                     repaint_injection_ratio=1.0, repaint_crossfade_frames=4)),
        "turbo_repaint": ("turbo", dict(src_latents=repaint_src, chunk_masks=chunk_masks,
                                        is_covers=torch.zeros(batch, dtype=torch.long), infer_steps=8, shift=3.0,
                                        repaint_mask=repaint_mask, clean_src_latents=src,
                                        repaint_injection_ratio=0.5, repaint_crossfade_frames=3)),
        "turbo_cover": ("turbo", dict(src_latents=src, chunk_masks=ones, is_covers=torch.ones(batch, dtype=torch.long),
                                      infer_steps=8, shift=3.0, audio_cover_strength=0.5, cover_noise_strength=0.3,
                                      non_cover_text_hidden_states=non_cover_text,
                                      non_cover_text_attention_mask=non_cover_text_mask)),
    }
    tensors = {
        "input.text": text, "input.text_mask": text_mask,
        "input.non_cover_text": non_cover_text, "input.non_cover_text_mask": non_cover_text_mask,
        "input.lyric": lyric, "input.lyric_mask": lyric_mask, "input.refs": refs,
        "input.order": order.to(torch.float32), "input.silence": silence, "input.src": src,
        "input.repaint_mask": repaint_mask.to(torch.float32), "input.repaint_src": repaint_src,
        "input.chunk_masks": chunk_masks,
    }
    for run, (kind, kwargs) in runs.items():
        model = models[kind]
        calls = []
        hook = model.decoder.register_forward_hook(
            lambda _m, _a, kw, o: calls.append((kw["hidden_states"].clone(), kw["timestep"].clone(),
                                                o[0].clone())),
            with_kwargs=True)
        with torch.no_grad():
            noise = model.prepare_noise(torch.cat([src, src], dim=-1), seeds)
            result = model.generate_audio(**common, **kwargs)
        hook.remove()
        tensors[f"{run}.noise"] = noise
        tensors[f"{run}.target"] = result["target_latents"]
        tensors[f"{run}.timesteps"] = torch.stack([c[1][0] for c in calls])
        for i, (x, _t, v) in enumerate(calls):
            tensors[f"{run}.call{i}.x"] = x
            tensors[f"{run}.call{i}.v"] = v

    for steps, shift in ((4, 3.0), (32, 3.0), (50, 3.0), (7, 2.5), (50, 1.0)):
        t = torch.linspace(1.0, 0.0, steps + 1)
        if shift != 1.0:
            t = shift * t / (1 + (shift - 1) * t)
        tensors[f"schedule.base.{steps}.{shift}"] = t
    for seed, shape in ((42, (1, 40, 64)), (7, (1, 5, 3)), (2**32 - 1, (1, 3, 7))):
        tensors[f"randn.{seed}"] = torch.randn(shape, generator=torch.Generator().manual_seed(seed))

    tensors = {k: v.contiguous() for k, v in tensors.items()}
    save_file(tensors, str(out / "sampler.safetensors"), metadata={"seed": str(SEED + 6)})
    print(f"sampler: {len(tensors)} tensors, runs {[(r, int(tensors[r + '.timesteps'].numel())) for r in runs]}")


def task_inputs_stage(out: Path) -> None:
    """What each task feeds the DiT, from upstream's handler: `prepare_padding_info` (out-painting
    pads the source) and `_build_chunk_masks_and_src_latents` (context source, chunk mask in both
    modes: "explicit" 0/1 and the default "auto", cover flag and repaint mask), on random
    source latents of the padded length the VAE gives (`samples // 1920`: diffusers' strided convs
    floor, so a partial last frame is dropped)."""
    import acestep

    upstream = str(Path(acestep.__file__).parent.parent)  # the --upstream directory
    handler = "acestep.core.generation.handler."
    masks = upstream_module(upstream, handler + "conditioning_masks").ConditioningMaskMixin
    padding = upstream_module(upstream, handler + "padding_utils").PaddingMixin

    class Host(masks, padding):
        device = "cpu"
        sample_rate = 48000

        def create_target_wavs(self, duration):
            return torch.zeros(2, int(duration * 48000))

    host = Host()
    generator = torch.Generator().manual_seed(SEED + 7)
    channels = 8  # the handler is channel-agnostic; 8 keeps the fixture small
    silence = torch.randn(1, 2000, channels, generator=generator)
    # (name, task, source seconds (None: no source), repainting_start, repainting_end)
    cases = [
        ("text2music", "text2music", None, None, None),
        ("cover", "cover", 12.0, None, None),
        ("extract", "extract", 12.0, None, None),
        ("complete", "complete", 12.0, None, None),
        ("repaint_inside", "repaint", 12.0, 4.0, 8.0),
        ("repaint_fractional", "repaint", 12.0, 2.33, 7.71),
        ("repaint_to_end", "repaint", 12.0, 6.5, -1.0),
        ("repaint_outpaint_before", "repaint", 12.0, -3.5, 2.0),
        ("repaint_outpaint_after", "repaint", 12.0, 9.0, 15.25),
        ("lego_window", "lego", 12.0, 2.0, 10.0),
        ("lego_default_end", "lego", 12.0, 0.0, None),
    ]
    tensors = {"input.silence": silence}
    meta = []
    for name, task, source_s, start, end in cases:
        # Non-silent audio: the handler treats an all-zero source as no source at all.
        src = None if source_s is None else torch.full((2, int(source_s * 48000)), 0.1)
        repaint_like = task in ("repaint", "lego")
        starts, ends, wavs = host.prepare_padding_info(
            1, src, 10.0 if src is None else None, start if repaint_like else None,
            end if repaint_like else None, task == "repaint", task == "lego", task == "cover", repaint_like)
        frames = wavs.shape[-1] // 1920
        latents = torch.randn(1, frames, channels, generator=generator)
        silence_tiled = silence[0, :frames]
        target_wavs = wavs if src is not None else torch.zeros_like(wavs)
        chunk, spans, is_covers, src_latents, repaint_mask = host._build_chunk_masks_and_src_latents(
            1, frames, ["x"], [None], target_wavs, latents, starts, ends, silence_tiled,
            chunk_mask_modes=None, task_type=task)
        tensors[f"{name}.latents"] = latents
        tensors[f"{name}.src_latents"] = src_latents
        tensors[f"{name}.chunk_mask"] = chunk.to(torch.float32)
        auto = host._build_chunk_masks_and_src_latents(
            1, frames, ["x"], [None], target_wavs, latents, starts, ends, silence_tiled,
            chunk_mask_modes=["auto"], task_type=task)[0]
        tensors[f"{name}.chunk_mask_auto"] = auto.to(torch.float32)
        if repaint_mask is not None:
            tensors[f"{name}.repaint_mask"] = repaint_mask.to(torch.float32)
        meta.append({"name": name, "task": task, "source_s": source_s, "repainting_start": start,
                     "repainting_end": end, "padded_samples": wavs.shape[-1], "frames": frames,
                     "adjusted_start": None if starts is None else starts[0],
                     "adjusted_end": None if ends is None else ends[0], "is_cover": bool(is_covers[0]),
                     "span": list(spans[0])})
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    save_file(tensors, str(out / "task_inputs.safetensors"), metadata={"seed": str(SEED + 7)})
    (out / "task_inputs.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"task_inputs: {len(cases)} cases")


# The tiny XL configuration: the tiny config's condition encoder (width 64, 4 / 2 heads) under a
# wider decoder (80, 3 layers, 8 query heads of 16, so the heads' total width is not the hidden
# size), as XL keeps the 2B encoder (2048) under a 2560-wide decoder.
TINY_XL_CONFIG = dict(
    TINY_CONFIG,
    hidden_size=80,
    intermediate_size=192,
    num_hidden_layers=3,
    num_attention_heads=8,
    num_audio_decoder_hidden_layers=3,
    encoder_hidden_size=64,
    encoder_intermediate_size=128,
    encoder_num_attention_heads=4,
    encoder_num_key_value_heads=2,
    layer_types=["sliding_attention", "full_attention", "sliding_attention"],
)


def xl_stage(out: Path) -> None:
    """The tiny XL turbo model (upstream's `xl_turbo` code) on a two-item batch with item 1 a
    cover: the packed condition (its timbre read through the summary token), the context
    latents, one DiT velocity at t = 0.7, and `generate_audio`'s 8-step trajectory target."""
    from acestep.models.common.configuration_acestep_v15 import AceStepConfig
    from acestep.models.xl_turbo import modeling_acestep_v15_xl_turbo as xl

    config = AceStepConfig(**TINY_XL_CONFIG)
    config._attn_implementation = "sdpa"
    config.to_json_file(str(out / "xl_config.json"))
    generator = torch.Generator().manual_seed(SEED + 8)
    model = xl.AceStepConditionGenerationModel(config).eval()
    randomize(model, generator)

    batch, frames, latent = 2, 40, config.audio_acoustic_hidden_dim
    text, text_mask, lyric, lyric_mask, refs, silence, src = condition_batch(config, generator)
    order = torch.tensor([0, 1, 1])
    chunk_masks = torch.ones(batch, frames, latent)
    is_covers = torch.tensor([0, 1])
    seed = 7

    with torch.no_grad():
        states, states_mask, context = model.prepare_condition(
            text, text_mask, lyric, lyric_mask, refs, order,
            src, torch.ones(batch, frames), silence, src, chunk_masks, is_covers)
        xt = torch.randn(batch, frames, latent, generator=generator)
        t = torch.full((batch,), 0.7)
        vt = model.decoder(hidden_states=xt, timestep=t, timestep_r=t, attention_mask=None,
                           encoder_hidden_states=states, encoder_attention_mask=states_mask,
                           context_latents=context, use_cache=False)[0]
        noise = model.prepare_noise(context, seed)
        result = model.generate_audio(
            text_hidden_states=text, text_attention_mask=text_mask,
            lyric_hidden_states=lyric, lyric_attention_mask=lyric_mask,
            refer_audio_acoustic_hidden_states_packed=refs, refer_audio_order_mask=order,
            src_latents=src, chunk_masks=chunk_masks, is_covers=is_covers, silence_latent=silence,
            seed=seed, shift=3.0, dcw_enabled=False)

    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    tensors.update({
        "input.text": text, "input.text_mask": text_mask,
        "input.lyric": lyric, "input.lyric_mask": lyric_mask,
        "input.refs": refs, "input.order": order.to(torch.float32),
        "input.src": src, "input.chunk_masks": chunk_masks, "input.silence": silence,
        "input.is_covers": is_covers.to(torch.float32),
        "input.xt": xt, "input.t": t, "input.noise": noise,
        "out.states": states, "out.states_mask": states_mask.to(torch.float32), "out.context": context,
        "out.vt": vt, "out.target": result["target_latents"],
    })
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    save_file(tensors, str(out / "xl.safetensors"), metadata={"seed": str(SEED + 8)})
    print(f"xl: {len(tensors)} tensors, target {tuple(result['target_latents'].shape)}")


# The end-to-end cases: upstream's top-level `acestep.inference.generate_music` on the tiny set,
# LM and DCW off, one item, seed 7. Each is also the request the Rust test sends the CLI.
E2E_SEED = 7
E2E_SOURCE_SECONDS = 10  # Backline makes 10 s at least
E2E_STRIDE = 5  # every 5th sample of each channel is stored, to keep the fixture small
E2E_CASES = [
    ("text2music", dict(task_type="text2music", duration=10.0)),
    ("cover", dict(task_type="cover", audio_cover_strength=0.5)),
    ("repaint", dict(task_type="repaint", repainting_start=3.0, repainting_end=7.0)),
]
E2E_COMMON = dict(caption="warm synth pop", lyrics="[Instrumental]", instrumental=True, inference_steps=8,
                  shift=1.0, seed=E2E_SEED)


def e2e_source(seconds: int) -> "np.ndarray":
    """The source clip of the audio tasks: two detuned sawtooth chords, built in integer
    arithmetic and divided by 2^15, so Rust makes the same float samples bit for bit (the VAE's
    posterior noise is seeded from their hash)."""
    import numpy as np

    n = np.arange(seconds * 48000, dtype=np.int64)
    channels = []
    for periods in ((218, 175, 146), (220, 173, 147)):
        total = sum(((n % p) * 2 * 3000) // p - 3000 for p in periods)
        channels.append(total.astype(np.float32) / np.float32(32768.0))
    return np.stack(channels)


def samples_sha256(audio) -> str:
    """Backline's hash of a clip: SHA-256 over each channel's little-endian f32 samples in turn."""
    import hashlib

    digest = hashlib.sha256()
    for channel in audio:
        digest.update(channel.astype("<f4").tobytes())
    return digest.hexdigest()


def e2e_stage(out: Path, checkpoints: Path) -> None:
    """Whole generations by upstream's `generate_music` on the tiny set that `cargo xtask
    tiny-checkpoint` writes (its files' hashes are recorded, so the test knows it has the same
    weights). The DiT folders get what the published ones carry for `AutoModel`: upstream's model
    code beside the weights and `auto_map` in `config.json` (a scratch copy; nothing of upstream's is
    stored). Before each run torch's global RNG is seeded as Backline seeds the VAE posterior's
    noise (the first 8 hex digits of the source's hash), the only draw from it."""
    import hashlib
    import os
    import shutil
    import tempfile

    import numpy as np
    import soundfile
    import acestep
    from acestep.constants import TASK_INSTRUCTIONS
    from acestep.handler import AceStepHandler
    from acestep.inference import GenerationConfig, GenerationParams, generate_music

    models = Path(acestep.__file__).parent / "models"
    hashes = {str(f.relative_to(checkpoints)): hashlib.sha256(f.read_bytes()).hexdigest()
              for f in sorted(checkpoints.rglob("*")) if f.is_file()}
    scratch = Path(tempfile.mkdtemp(prefix="backline-e2e-"))
    root = scratch / "checkpoints"
    shutil.copytree(checkpoints, root)
    for folder, kind in (("acestep-v15-turbo", "turbo"), ("acestep-v15-base", "base")):
        if not (root / folder).is_dir():
            continue
        config_path = root / folder / "config.json"
        config = json.loads(config_path.read_text())
        config["auto_map"] = {"AutoConfig": "configuration_acestep_v15.AceStepConfig",
                              "AutoModel": f"modeling_acestep_v15_{kind}.AceStepConditionGenerationModel"}
        config_path.write_text(json.dumps(config, indent=2))
        for code in (models / kind).glob("*.py"):
            shutil.copy(code, root / folder / code.name)

    source = e2e_source(E2E_SOURCE_SECONDS)
    source_path = scratch / "source.wav"
    soundfile.write(str(source_path), source.T, 48000, subtype="FLOAT")
    posterior_seed = int(samples_sha256(source)[:8], 16)

    # Upstream keeps a `.cache/` in the working directory: keep it in the scratch folder.
    previous_cwd = Path.cwd()
    os.chdir(scratch)
    handler = AceStepHandler()
    handler.initialize_service(str(scratch), "acestep-v15-turbo", device="cpu", use_mlx_dit=False)
    tensors = {}
    cases = {}
    for name, fields in E2E_CASES:
        request = dict(E2E_COMMON, **fields)
        if fields["task_type"] != "text2music":
            request["src_audio"] = "source.wav"
        # generate_music takes the instruction as given; upstream's server picks the task's
        # (`api/job_generation_setup.py` `_resolve_instruction`), as Backline does.
        params = dict(request, instruction=TASK_INSTRUCTIONS[request["task_type"]], dcw_enabled=False,
                      thinking=False, use_cot_metas=False, use_cot_caption=False, use_cot_language=False)
        if "src_audio" in params:
            params["src_audio"] = str(source_path)
        torch.manual_seed(posterior_seed)
        result = generate_music(handler, None, GenerationParams(**params),
                                GenerationConfig(batch_size=1, use_random_seed=False, seeds=[E2E_SEED],
                                                 audio_format="wav"),
                                save_dir=str(scratch / name))
        if not result.success:
            raise RuntimeError(f"{name}: {result.error}")
        audio = result.audios[0]["tensor"].to(torch.float32)
        tensors[f"out.{name}"] = audio[:, ::E2E_STRIDE].contiguous()
        cases[name] = {"request": request, "samples": audio.shape[-1]}
        print(f"e2e {name}: {tuple(audio.shape)}, max |x| {audio.abs().max().item():.4f}")
    save_file(tensors, str(out / "e2e.safetensors"))
    meta = {"stride": E2E_STRIDE, "source_seconds": E2E_SOURCE_SECONDS, "source_sha256": samples_sha256(source),
            "checkpoint_sha256": hashes, "cases": cases}
    (out / "e2e.json").write_text(json.dumps(meta, indent=1) + "\n")
    os.chdir(previous_cwd)
    shutil.rmtree(scratch)


LM_FOLDER = "acestep-5Hz-lm-0.6B"
# Every 97th vocabulary id (texts, specials and codes alike), where logits are compared.
LM_LOGIT_STRIDE = 97


def tiny_lm_handler(checkpoints: Path, **processor_options):
    """The tiny set's LM in upstream's `LLMHandler` (PyTorch backend, CPU) with a fresh
    `MetadataConstrainedLogitsProcessor`, and the SHA-256 of the files it was read from."""
    import hashlib

    from transformers import AutoModelForCausalLM, AutoTokenizer
    from acestep.llm_inference import LLMHandler
    from acestep.constrained_logits_processor import MetadataConstrainedLogitsProcessor

    folder = checkpoints / LM_FOLDER
    hashes = {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in ("model.safetensors", "tokenizer.json")}
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    handler = LLMHandler()
    handler.llm, handler.llm_tokenizer, handler.llm_initialized, handler.llm_backend = model, tokenizer, True, "pt"
    handler.device, handler.disable_tqdm = "cpu", True
    handler.constrained_processor = MetadataConstrainedLogitsProcessor(tokenizer, enabled=True, **processor_options)
    return hashes, tokenizer, model, handler


def lm_stage(out: Path, checkpoints: Path) -> None:
    """The 5 Hz LM on the tiny set's `acestep-5Hz-lm-0.6B` (tiny widths, the published vocabulary
    layout; its files' hashes are recorded): upstream's `LLMHandler` prompt builders, its
    `_format_metadata_as_cot` and `parse_lm_output`, transformers' `Qwen3ForCausalLM` next-token
    logits for a prompt and for the two left-padded CFG rows, whole chains of thought (phase 1, under the
    processor's `cot` state machine with `stop_at_reasoning`, with and without user metas), and whole codes-phase generations by
    upstream's own loops (`_generate_with_cfg_custom` with guidance, `_generate_with_constrained_decoding`
    without) with its `MetadataConstrainedLogitsProcessor` in the codes phase, each after
    `torch.manual_seed(seed)`. Needs `acestep/llm_inference.py`, `constrained_logits_processor.py`,
    `constants.py` and what they import (loguru, tqdm, pyyaml)."""
    import json

    hashes, tokenizer, model, handler = tiny_lm_handler(checkpoints)

    metas = [
        {"bpm": 92, "duration": 30, "keyscale": "F# minor", "timesignature": "4"},
        {"bpm": 120, "caption": "An upbeat synth-pop track: bright arpeggios, punchy drums and a warm bassline that carries the chorus all the way",
         "duration": 12, "keyscale": "B\u266d major", "language": "no", "timesignature": "3/4"},
        {"caption": "it's 2024-01-01 and the  quiet  ends", "language": "en", "duration": "45"},
    ]
    cots = [handler._format_metadata_as_cot(m) for m in metas]
    outputs = [
        "<think>\nbpm: 73\ncaption: A calm piano melody with soft strings that\n  swell into a gentle finale.\nduration: 273\nkeyscale: G major\nlanguage: en\ntimesignature: 4\n</think>\n\n<|audio_code_56535|><|audio_code_62918|>",
        "bpm: fast\ncaption:\n  first line\n\tsecond line\n<tag>\nKeyScale: D minor",
    ]
    parsed = [handler.parse_lm_output(o)[0] for o in outputs]

    caption, lyrics = "lofi hip hop, dusty drums, mellow keys", "[Instrumental]"
    prompts = {
        "plan": handler.build_formatted_prompt(caption, lyrics),
        "codes": handler.build_formatted_prompt_with_cot(caption, lyrics, cots[0]),
        "codes_unconditional": handler.build_formatted_prompt_with_cot(caption, lyrics, cots[0], is_negative_prompt=True),
        "codes_negative": handler.build_formatted_prompt_with_cot(caption, lyrics, cots[0], is_negative_prompt=True, negative_prompt="harsh noise"),
        "understand": handler.build_formatted_prompt_for_understanding("<|audio_code_1|><|audio_code_63999|>"),
        "inspire": handler.build_formatted_prompt_for_inspiration("a rainy night in Tokyo", instrumental=True),
        "format": handler.build_formatted_prompt_for_format(caption, "la la la"),
    }
    prompt_ids = {name: tokenizer(text)["input_ids"] for name, text in prompts.items()}

    def logit_slice(row):
        return [float(v) for v in row[::LM_LOGIT_STRIDE]]

    with torch.no_grad():
        plan_logits = model(torch.tensor([prompt_ids["plan"]])).logits[0, -1]
        tokenizer.padding_side = "left"
        batch = tokenizer([prompts["codes"], prompts["codes_unconditional"]], return_tensors="pt", padding=True)
        tokenizer.padding_side = "right"
        cfg_logits = model(**batch).logits[:, -1]

    def codes_case(name, seed, duration, cfg_scale, temperature, top_k, top_p, repetition_penalty):
        processor = handler._setup_constrained_processor(
            use_constrained_decoding=True, constrained_decoding_debug=False, target_duration=duration,
            user_metadata=None, stop_at_reasoning=False, skip_genres=True, skip_caption=True, skip_language=True,
            generation_phase="codes", is_batch=False)
        max_new = handler._compute_max_new_tokens(duration, "codes")
        torch.manual_seed(seed)
        if cfg_scale > 1.0:
            tokenizer.padding_side = "left"
            rows = tokenizer([prompts["codes"], prompts["codes_unconditional"]], return_tensors="pt", padding=True)
            tokenizer.padding_side = "right"
            ids = handler._generate_with_cfg_custom(
                batch_input_ids=rows["input_ids"], batch_attention_mask=rows["attention_mask"], max_new_tokens=max_new,
                temperature=temperature, cfg_scale=cfg_scale, top_k=top_k, top_p=top_p,
                repetition_penalty=repetition_penalty, pad_token_id=tokenizer.pad_token_id, streamer=None,
                constrained_processor=processor)
            width = rows["input_ids"].shape[1]
        else:
            row = tokenizer(prompts["codes"], return_tensors="pt")
            ids = handler._generate_with_constrained_decoding(
                input_ids=row["input_ids"], attention_mask=row["attention_mask"], max_new_tokens=max_new,
                temperature=temperature, top_k=top_k, top_p=top_p, repetition_penalty=repetition_penalty,
                pad_token_id=tokenizer.pad_token_id, streamer=None, constrained_processor=processor)
            width = row["input_ids"].shape[1]
        tokens = ids[0, width:].tolist()
        text = tokenizer.decode(tokens, skip_special_tokens=False)
        return {"name": name, "seed": seed, "duration": duration, "cfg_scale": cfg_scale, "temperature": temperature,
                "top_k": top_k or 0, "top_p": top_p or 1.0, "repetition_penalty": repetition_penalty,
                "tokens": tokens, "codes_text": handler.parse_lm_output(text)[1]}

    generations = [
        codes_case("guided", 7, 10, 2.0, 0.85, None, 0.9, 1.0),
        codes_case("guided_hot", 3, 10, 2.0, 1.5, None, 0.98, 1.0),
        codes_case("unguided_top_k_penalty", 11, 10, 1.0, 1.0, 40, None, 1.3),
    ]
    def thought_case(name, seed, given, skip_caption):
        processor = handler._setup_constrained_processor(
            use_constrained_decoding=True, constrained_decoding_debug=False, target_duration=None,
            user_metadata=given, stop_at_reasoning=True, skip_genres=True, skip_caption=skip_caption, skip_language=False,
            generation_phase="cot", is_batch=False)
        max_new = handler._compute_max_new_tokens(None, "cot", fallback_max=getattr(model.config, "max_new_tokens", 4096))
        row = tokenizer(prompts["plan"], return_tensors="pt")
        torch.manual_seed(seed)
        ids = handler._generate_with_constrained_decoding(
            input_ids=row["input_ids"], attention_mask=row["attention_mask"], max_new_tokens=max_new,
            temperature=0.85, top_k=None, top_p=0.9, repetition_penalty=1.0, pad_token_id=tokenizer.pad_token_id,
            streamer=None, constrained_processor=processor)
        tokens = ids[0, row["input_ids"].shape[1]:].tolist()
        text = tokenizer.decode(tokens, skip_special_tokens=False)
        return {"name": name, "seed": seed, "given": given or {}, "skip_caption": skip_caption, "max_new_tokens": max_new, "tokens": tokens,
                "text": text, "parsed": handler.parse_lm_output(text)[0]}

    # The tiny model's free caption is noise that runs to the token limit, so the cases give the
    # caption or leave it out (use_cot_caption off); every other field is sampled or injected.
    thoughts = [
        thought_case("all_sampled", 5, None, True),
        thought_case("given_bpm_and_key", 9, {"bpm": 120, "keyscale": "G major"}, True),
        thought_case("given_caption", 13, {"caption": "warm tape hiss, slow piano", "duration": 24}, False),
    ]
    meta = {
        "checkpoint_sha256": hashes, "logit_stride": LM_LOGIT_STRIDE, "thoughts": thoughts,
        "metas": metas, "chains_of_thought": cots, "outputs": outputs, "parsed": parsed,
        "prompts": prompts, "prompt_ids": prompt_ids,
        "plan_logits": logit_slice(plan_logits),
        "cfg_padding": (batch["attention_mask"] == 0).sum(dim=1).tolist(),
        "cfg_logits": [logit_slice(r) for r in cfg_logits],
        "generations": generations,
    }
    (out / "lm.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1) + "\n")


# A small genre list in upstream's `genres_vocab.txt` format, for the description modes' fixtures
# (upstream's own list is 178,571 lines; the decoder's rules are the same for any list).
GENRES_FILE = Path(__file__).parent / "fixtures" / "genres_vocab.txt"


def lm_modes_stage(out: Path, checkpoints: Path) -> None:
    """The 5 Hz LM's description modes on the tiny set's `acestep-5Hz-lm-0.6B`, generated by
    upstream's own functions after `torch.manual_seed(seed)` with its processor reading
    `fixtures/genres_vocab.txt`: `understand_audio_from_codes`, `create_sample_from_query` and
    `format_sample_from_input` whole (prompt, decoding, lyrics and fallbacks), and describe-phase
    generations (`generation_phase="understand"`, no stop at `</think>`) with a given caption, so
    that the tiny model, whose free caption is noise to its token limit, reaches the genres, the
    other fields and the lyrics. Each case records the generated ids (captured from
    `_generate_with_constrained_decoding`) and what the function returned."""
    import hashlib
    import json

    hashes, tokenizer, _, handler = tiny_lm_handler(checkpoints, genres_vocab_path=str(GENRES_FILE))
    assert handler.constrained_processor.genres_vocab, "the genre list did not load"

    def lyrics_digest(lyrics):
        # The tiny model's lyrics are thousands of filler tokens: kept as their length and hash.
        return {"lyrics_chars": len(lyrics), "lyrics_sha256": hashlib.sha256(lyrics.encode()).hexdigest()}

    captured = []
    generate = handler._generate_with_constrained_decoding

    def capturing(**kwargs):
        ids = generate(**kwargs)
        captured.append(ids[0, kwargs["input_ids"].shape[1]:].tolist())
        return ids
    handler._generate_with_constrained_decoding = capturing

    def run(name, seed, call):
        captured.clear()
        torch.manual_seed(seed)
        metadata, status = call()
        assert len(captured) == 1, status
        metadata = dict(metadata)
        return {"name": name, "seed": seed, "tokens": captured[0], "metadata": metadata, **lyrics_digest(metadata.pop("lyrics", ""))}

    codes = "".join(f"<|audio_code_{c}|>" for c in (17, 40321, 5, 63999, 1200, 777, 31000, 8))
    modes = [
        dict(run("understand", 21, lambda: handler.understand_audio_from_codes(codes, temperature=0.3)), codes=codes, temperature=0.3),
        dict(run("inspire", 22, lambda: handler.create_sample_from_query(
            "a rainy night in Tokyo, instrumental", instrumental=True, vocal_language="ja", temperature=0.85, top_k=50)),
            query="a rainy night in Tokyo, instrumental", instrumental=True, language="ja", temperature=0.85, top_k=50),
        dict(run("format", 23, lambda: handler.format_sample_from_input(
            "synthwave, night drive", "[Verse]\nneon on the road", user_metadata={"bpm": 104, "duration": 40, "language": "en"},
            temperature=0.85, repetition_penalty=1.1)),
            caption="synthwave, night drive", lyrics="[Verse]\nneon on the road", given={"bpm": 104, "duration": 40, "language": "en"},
            temperature=0.85, repetition_penalty=1.1),
    ]

    def describe_case(name, seed, given, skip_language, temperature):
        prompt = handler.build_formatted_prompt_for_format("lofi hip hop", "[Instrumental]")
        cfg = {"temperature": temperature, "top_k": None, "top_p": None, "repetition_penalty": 1.0, "target_duration": None,
               "user_metadata": given, "skip_caption": False, "skip_language": skip_language, "skip_genres": False,
               "generation_phase": "understand", "caption": "", "lyrics": ""}
        captured.clear()
        torch.manual_seed(seed)
        text, status = handler.generate_from_formatted_prompt(prompt, cfg=cfg, use_constrained_decoding=True, stop_at_reasoning=False)
        assert len(captured) == 1, status
        metadata, _ = handler.parse_lm_output(text)
        return {"name": name, "seed": seed, "given": given, "skip_language": skip_language, "temperature": temperature,
                "tokens": captured[0], "parsed": metadata, **lyrics_digest(handler._extract_lyrics_from_output(text))}

    describes = [
        describe_case("caption_given", 31, {"caption": "dusty drums and warm keys"}, False, 0.85),
        describe_case("caption_and_language_given", 32, {"caption": "bright brass", "language": "en"}, True, 1.0),
        describe_case("caption_given_cold", 33, {"caption": "slow piano"}, False, 0.3),
    ]
    meta = {"checkpoint_sha256": hashes, "genres_file": GENRES_FILE.name, "modes": modes, "describes": describes}
    (out / "lm_modes.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1) + "\n")


STAGES = {"lyric_encoder": lyric_encoder_stage, "condition_encoder": condition_encoder_stage,
          "dit": dit_stage, "tokenizer": tokenizer_stage, "silence_latent": silence_latent_stage, "vae": vae_stage,
          "text_encoder": text_encoder_stage, "prompts": prompts_stage,
          "sampler": sampler_stage, "task_inputs": task_inputs_stage, "xl": xl_stage}
# Stages that run upstream's whole pipeline on the checkpoint set given by --checkpoints.
CHECKPOINT_STAGES = {"e2e": e2e_stage, "lm": lm_stage, "lm_modes": lm_modes_stage}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="directory containing upstream's acestep/")
    parser.add_argument("--out", default=str(Path(__file__).parent / "fixtures"))
    parser.add_argument("--stage", action="append", choices=sorted(STAGES) + sorted(CHECKPOINT_STAGES),
                        help="default: all but e2e")
    parser.add_argument("--checkpoints", help="for --stage e2e, lm and lm_modes: the set `cargo xtask tiny-checkpoint DIR` wrote")
    args = parser.parse_args()

    sys.path.insert(0, args.upstream)
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    tiny_config().to_json_file(str(out / "config.json"))
    for stage in args.stage or sorted(STAGES):
        if stage in CHECKPOINT_STAGES:
            if not args.checkpoints:
                parser.error(f"--stage {stage} needs --checkpoints DIR")
            CHECKPOINT_STAGES[stage](out, Path(args.checkpoints).resolve())
        else:
            STAGES[stage](out)


if __name__ == "__main__":
    main()
