#!/usr/bin/env python3
"""Golden data for xlserve's bf16 precision: transformers' xLSTMForCausalLM running the bf16
golden models (tests/golden/models/bf16_*) in bf16.

For each case whose golden.json says "weights_dtype": "bfloat16", the checkpoint is loaded with
`from_pretrained(dtype=torch.bfloat16)`, so activations, products, the residual stream and the
recurrent state cache are bf16 as transformers computes them for a bf16 model (its own cache
takes the model's dtype; its chunkwise kernel refuses an fp32 state beside bf16 inputs; the
recurrent kernels still do their maths in fp32, the config's inference_state_dtype). The cache
is allocated here with the layers' sizes, as make_model_golden.py explains. The prompts of golden.json
run greedily as make_model_golden.py runs them (cached prefill, then one token at a time),
and golden_bf16.json beside golden.json records, per prompt, the logits after the prompt, the
32 greedy tokens and each step's top-1 minus top-2 logit (near-ties may break either way in
another bf16 engine). tests/golden/README.md gives the format.

Usage (needs torch and a CUDA GPU; about 10 s):
  python3 tools/golden/make_bf16_golden.py                     # into tests/golden/models/
  python3 tools/golden/make_bf16_golden.py --models-dir DIR    # the cases under DIR
"""

import argparse
import json
import os
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_model_golden as mg  # noqa: E402  (the fp32 generator: greedy loop, cache, number format)

GENERATOR = "tools/golden/make_bf16_golden.py"


class Bf16Reference(mg.Reference):
    def new_cache(self, model):
        cache = super().new_cache(model)
        cache.rnn_state = {layer: tuple(t.to(self.torch.bfloat16) for t in state)
                           for layer, state in cache.rnn_state.items()}
        return cache


def make_case(ref, case_dir, log):
    torch = ref.torch
    with open(os.path.join(case_dir, "golden.json")) as f:
        golden = json.load(f)
    model = ref.model_class.from_pretrained(case_dir, dtype=torch.bfloat16).to(ref.device).eval()
    wrong = {n: p.dtype for n, p in model.named_parameters() if p.dtype != torch.bfloat16}
    if wrong:
        raise AssertionError(f"{golden['case']}: parameters not bf16: {wrong}")
    prompts, worst = [], 0.0
    for p in golden["prompts"]:
        tokens, margins, step_logits = ref.greedy(model, p["prompt_ids"])
        last = step_logits[0].cpu()
        diff = float((last - torch.tensor(p["last_logits"])).abs().max())
        worst = max(worst, diff)
        same = sum(1 for a, b in zip(tokens, p["greedy_tokens"]) if a == b)
        log(f"  prompt len {len(p['prompt_ids'])}: max |bf16 - fp32| {diff:.3g}, greedy equal to fp32's at "
            f"{same}/{len(tokens)} steps, min margin {min(margins):.3g}")
        prompts.append({
            "prompt_ids": p["prompt_ids"],
            "last_logits": [mg.fp32_json_number(x) for x in last.tolist()],
            "greedy_tokens": tokens,
            "greedy_margins": [mg.fp32_json_number(m) for m in margins],
        })
    out = {
        "format_version": mg.FORMAT_VERSION,
        "generator": GENERATOR,
        "transformers_version": ref.transformers.__version__,
        "torch_version": ref.torch.__version__,
        "device": torch.cuda.get_device_name() if ref.device.type == "cuda" else "cpu",
        "case": golden["case"],
        "description": "transformers in bf16 (from_pretrained dtype bfloat16, bf16 state cache) on the prompts of "
                       "golden.json; max |logit - golden.json's fp32 logit| over the prompts: "
                       f"{worst:.4g}",
        "prompts": prompts,
    }
    with open(os.path.join(case_dir, "golden_bf16.json"), "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    return worst


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", default=os.path.join(os.path.dirname(__file__), "..", "..",
                                                             "tests", "golden", "models"))
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    ref = Bf16Reference(args.device)

    def log(msg):
        print(msg, flush=True)

    log(f"transformers {ref.transformers.__version__}, torch {ref.torch.__version__}, device {args.device}")
    root = os.path.abspath(args.models_dir)
    done = failed = 0
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name, "golden.json")
        if not os.path.exists(path):
            continue
        with open(path) as f:
            if json.load(f)["weights_dtype"] != "bfloat16":
                continue
        log(f"== {name}")
        try:
            worst = make_case(ref, os.path.join(root, name), log)
        except Exception:  # report every case; the caller sees the exit status
            log(traceback.format_exc())
            failed += 1
            continue
        log(f"  wrote golden_bf16.json; max |bf16 - fp32| {worst:.3g}")
        done += 1
    if done == 0 or failed:
        log(f"{done} case(s) written, {failed} failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
