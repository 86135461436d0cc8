#!/usr/bin/env python3
"""transformers' xLSTM (its native PyTorch kernels) on the shapes `xlserve bench --shape 7b`
measures: TTFT at batch 1 and decode step time at each batch size, bf16 weights and state.

Run it on the GPU machine in the same session as the bench, so the two tables compare:
    python3 bench/hf_reference.py --json hf.json
Weights are random (the speed does not depend on them); nothing is downloaded.
"""
import argparse
import json
import time

import torch
from transformers import xLSTMConfig, xLSTMForCausalLM
from transformers.models.xlstm.modeling_xlstm import xLSTMCache


def seven_b_config():
    return xLSTMConfig(
        vocab_size=50304, hidden_size=4096, num_blocks=32, num_heads=8, qk_dim_factor=0.5,
        v_dim_factor=1.0, ffn_proj_factor=2.667, ffn_round_up_to_multiple_of=64,
        gate_soft_cap=15.0, output_logit_soft_cap=30.0, use_bias=False, weight_mode="single",
        mode="inference", tie_word_embeddings=False, bos_token_id=0, pad_token_id=1, eos_token_id=2)


def timed(fn, repeats):
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-sizes", default="1,8,32,64,128")
    ap.add_argument("--prompts", default="128,512,2048")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--json", default="")
    args = ap.parse_args()

    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = xLSTMForCausalLM(seven_b_config()).eval()
    cfg = model.config
    rows = []
    print(f"transformers xLSTM, 7b shape, bf16, {sum(p.numel() for p in model.parameters()) / 1e9:.2f} B params")
    with torch.no_grad():
        print(f"{'prompt':>8} {'TTFT ms':>10}")
        for length in [int(x) for x in args.prompts.split(",")]:
            ids = torch.randint(3, cfg.vocab_size, (1, length), device="cuda")
            model(ids, use_cache=True)  # warm-up
            ms = timed(lambda: model(ids, use_cache=True), 2)
            print(f"{length:>8} {ms:>10.1f}")
            rows.append({"kind": "prefill", "prompt_tokens": length, "ttft_ms": ms})
        print(f"{'batch':>6} {'step ms':>9} {'tok/s':>9}")
        for batch in [int(x) for x in args.batch_sizes.split(",")]:
            cache = xLSTMCache(cfg, batch, dtype=torch.bfloat16, device="cuda")
            prompt = torch.randint(3, cfg.vocab_size, (batch, 16), device="cuda")
            model(prompt, cache_params=cache, use_cache=True)
            token = torch.randint(3, cfg.vocab_size, (batch, 1), device="cuda")
            step = lambda: model(token, cache_params=cache, use_cache=True)
            step()
            ms = timed(step, args.steps)
            print(f"{batch:>6} {ms:>9.2f} {batch / ms * 1e3:>9.0f}")
            rows.append({"kind": "decode", "batch": batch, "step_ms": ms, "tokens_per_s": batch / ms * 1e3})
            del cache
            torch.cuda.empty_cache()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"impl": "transformers xLSTMForCausalLM (native kernels)", "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
