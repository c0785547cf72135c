"""Tokens per second of upstream's 5 Hz LM codes phase in PyTorch, for docs/benchmarks.md.

Usage:
    python tests/parity/bench_lm.py --upstream DIR --lm FOLDER [--threads N]

FOLDER is an LM folder (e.g. `cargo xtask synth-checkpoint DIR --lm 0.6B` writes
DIR/acestep-5Hz-lm-0.6B). Runs upstream's own `LLMHandler._generate_with_cfg_custom` with its
`MetadataConstrainedLogitsProcessor` in the codes phase: the same prompt, plan, 50 codes, guidance
2.0 and default sampling as the Rust side's ignored test `lm_tokens_per_second` (engine/tests/lm.rs),
in float32. Reports the prompt plus first token and the per-token rate after it.
"""

import argparse
import sys
import time
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="directory containing upstream's acestep/")
    parser.add_argument("--lm", required=True, help="the LM folder")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    sys.path.insert(0, args.upstream)
    if args.threads:
        torch.set_num_threads(args.threads)

    from transformers import AutoModelForCausalLM, AutoTokenizer
    from acestep.llm_inference import LLMHandler
    from acestep.constrained_logits_processor import MetadataConstrainedLogitsProcessor

    folder = Path(args.lm)
    started = time.time()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    load_s = time.time() - started
    handler = LLMHandler()
    handler.llm, handler.llm_tokenizer, handler.llm_initialized, handler.llm_backend = model, tokenizer, True, "pt"
    handler.device, handler.disable_tqdm = "cpu", True
    handler.constrained_processor = MetadataConstrainedLogitsProcessor(tokenizer, enabled=True)

    caption, lyrics = "lofi hip hop, dusty drums, mellow keys", "[Instrumental]"
    cot = handler._format_metadata_as_cot({"bpm": 92, "duration": 10, "keyscale": "F# minor", "timesignature": "4"})
    rows = [handler.build_formatted_prompt_with_cot(caption, lyrics, cot),
            handler.build_formatted_prompt_with_cot(caption, lyrics, cot, is_negative_prompt=True)]
    tokenizer.padding_side = "left"
    batch = tokenizer(rows, return_tensors="pt", padding=True)
    processor = handler._setup_constrained_processor(
        use_constrained_decoding=True, constrained_decoding_debug=False, target_duration=10, user_metadata=None,
        stop_at_reasoning=False, skip_genres=True, skip_caption=True, skip_language=True, generation_phase="codes",
        is_batch=False)

    # Time the first token apart: it carries the prompt.
    first = {}
    original = handler._forward_pass

    def timed(*a, **k):
        out = original(*a, **k)
        first.setdefault("s", time.time() - t0)
        return out

    handler._forward_pass = timed
    torch.manual_seed(7)
    t0 = time.time()
    ids = handler._generate_with_cfg_custom(
        batch_input_ids=batch["input_ids"], batch_attention_mask=batch["attention_mask"], max_new_tokens=60,
        temperature=0.85, cfg_scale=2.0, top_k=None, top_p=0.9, repetition_penalty=1.0,
        pad_token_id=tokenizer.pad_token_id, streamer=None, constrained_processor=processor)
    total = time.time() - t0
    tokens = ids.shape[1] - batch["input_ids"].shape[1]
    rest = total - first["s"]
    print(f"pytorch {folder} f32 ({torch.get_num_threads()} threads): load {load_s:.1f} s, prompt + first token "
          f"{first['s']:.3f} s, then {tokens - 1} tokens in {rest:.2f} s = {(tokens - 1) / rest:.2f} tokens/s "
          f"({tokens / total:.2f} overall)")


if __name__ == "__main__":
    main()
