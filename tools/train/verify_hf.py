#!/usr/bin/env python3
"""Proves an export: transformers' xLSTMForCausalLM, loaded from the exported directory, gives the
same head-0 logits as the trainer's model loaded from the same files, in fp32 (TF32 off).

  python3 tools/train/verify_hf.py --model DIR --out verify.json

Checks, failing with a non-zero exit on any miss:
- transformers loads every trunk tensor (nothing missing) and ignores only mtp_heads.*;
- max |logit difference| <= --tol on held-out code at a length of whole chunks (transformers'
  chunkwise kernel) and at a ragged length (chunkwise plus its step-by-step remainder);
- greedy argmaxes agree (at >= 99.9% of positions: a near-tie may flip).
Also records how many of transformers' cached greedy `generate` tokens match the trainer's
recomputed greedy tokens (informative: a near-tie may flip between two fp32 orderings).
"""

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import corpus  # noqa: E402
import data  # noqa: E402
import evaluate  # noqa: E402
import export  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--tol", type=float, default=1e-3)
    p.add_argument("--val-packages", default=",".join(corpus.DEFAULT_VAL_PACKAGES))
    args = p.parse_args(argv)

    from transformers import xLSTMForCausalLM

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    with open(os.path.join(args.model, "tokenizer.json")) as f:
        val, _ = data.prepare_val(f.read(), [x for x in args.val_packages.split(",") if x])
    val = torch.from_numpy(val.astype("int64"))

    ours = export.load(args.model, device).eval()
    hf, info = xLSTMForCausalLM.from_pretrained(args.model, dtype=torch.float32, output_loading_info=True)
    hf = hf.to(device).eval()
    report = {"missing_keys": sorted(info["missing_keys"]), "unexpected_keys": sorted(info["unexpected_keys"])}
    failures = []
    if report["missing_keys"]:
        failures.append(f"transformers is missing {report['missing_keys']}")
    stray = [k for k in report["unexpected_keys"] if not k.startswith("mtp_heads.")]
    if stray:
        failures.append(f"transformers ignored non-mtp tensors {stray}")

    report["cases"] = []
    for batch, length, seed in ((4, 512, 11), (3, 300, 12)):
        ids = evaluate.windows(val, length, batch, seed).to(device)
        with torch.no_grad():
            want = hf(ids, use_cache=False).logits.float()
            got = export.logits_any_length(ours, ids, heads=[0])[0]
        diff = (got - want).abs().max().item()
        agree = (got.argmax(-1) == want.argmax(-1)).float().mean().item()
        report["cases"].append({"batch": batch, "length": length, "max_abs_logit_diff": diff,
                                "argmax_agreement": agree, "logit_scale": want.abs().max().item()})
        print(f"length {length}: max |diff| {diff:.2e}, argmax agreement {agree:.6f}", flush=True)
        if not diff <= args.tol:
            failures.append(f"length {length}: max |logit diff| {diff:.3e} > {args.tol}")
        # fp32 orderings differ by ~1e-5, so only a near-tie could flip an argmax.
        if agree < 0.999:
            failures.append(f"length {length}: argmax agreement {agree}")

    prompts = evaluate.windows(val, 96, 4, 13).to(device)
    with torch.no_grad():
        theirs = hf.generate(prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=32,
                             do_sample=False, use_cache=True, pad_token_id=0)
        mine = evaluate.greedy_continue(ours, prompts, 32)
    same = (theirs[:, 96:] == mine[:, 96:]).float().mean().item()
    report["cached_generate_token_agreement"] = same
    print(f"transformers cached greedy generate vs trainer greedy: {same:.4f} of 128 tokens equal", flush=True)

    report["passed"] = not failures
    report["failures"] = failures
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    if failures:
        print("VERIFY FAILED:\n  " + "\n  ".join(failures), flush=True)
        sys.exit(1)
    print("VERIFY PASSED", flush=True)


if __name__ == "__main__":
    main()
