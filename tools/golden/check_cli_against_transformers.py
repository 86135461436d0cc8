"""Checks `xlserve generate --print-json` against transformers on freshly drawn checkpoints.

The committed golden cases are fixed; this script draws new random xLSTM configurations
(widths, head counts, dim factors, FFN rounding, soft caps, biases, tied embeddings, the fused
layout, fp32 or bf16 weights, shards), builds each in transformers with make_model_golden.py's
machinery, records transformers' logits and greedy tokens, and runs the xlserve binary on the
same directory. Run it where torch and transformers are installed (the GPU machine):

    python3 tools/golden/check_cli_against_transformers.py --xlserve dist/bin/xlserve --cases 12

Exit status 0 when every case matches (fp32: max |dlogit| <= 1e-4, bf16: <= 1e-3, greedy
tokens identical)."""

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_model_golden as mg  # noqa: E402

TOLERANCE = {"float32": 1e-4, "bfloat16": 1e-3}


def random_case(rng, index):
    heads = rng.choice([1, 2, 4])
    hidden = heads * rng.choice([8, 16, 24, 32])
    extra = {}
    if rng.random() < 0.5:
        extra["qk_dim_factor"] = rng.choice([0.25, 0.5, 1.0])
        extra["v_dim_factor"] = rng.choice([0.5, 1.0, 2.0])
    if rng.random() < 0.5:
        extra["ffn_proj_factor"] = rng.choice([1.0, 1.3, 2.0, 2.667, 4.0])
        extra["ffn_round_up_to_multiple_of"] = rng.choice([8, 16, 32, 64])
    if rng.random() < 0.4:
        extra["gate_soft_cap"] = rng.choice([3.0, 8.0, 20.0])
        extra["output_logit_soft_cap"] = rng.choice([5.0, 12.0, 50.0])
    if rng.random() < 0.3:
        extra["use_bias"] = True
    if rng.random() < 0.2:
        extra["tie_word_embeddings"] = True
    if rng.random() < 0.2:
        extra["weight_mode"] = "fused"
    if rng.random() < 0.3:
        extra["norm_eps"] = rng.choice([1e-5, 1e-6])
        extra["eps"] = rng.choice([1e-4, 1e-6])
    chunk = rng.choice([16, 32, 64])
    cfg = mg._small(rng.choice([200, 256, 384]), hidden, rng.choice([1, 2, 3]), heads, chunk, **extra)
    dtype = rng.choice(["float32", "bfloat16"])
    # Small enough that even the smallest draw is split into several shards.
    shards = 20_000 if rng.random() < 0.2 else None
    # Longer than two of transformers' chunks plus a remainder, as make_model_golden requires.
    return mg.Case(f"random_{index:02d}_{dtype}", dtype, cfg, long_prompt_len=2 * chunk + rng.randint(3, 20),
                   max_shard_bytes=shards, summary=json.dumps(extra))


def run_xlserve(binary, model_dir, prompt):
    ids = ",".join(map(str, prompt["prompt_ids"]))
    r = subprocess.run([binary, "generate", "--model", model_dir, "--prompt-ids", ids, "--device", "cpu",
                        "--max-tokens", str(len(prompt["greedy_tokens"])), "--ignore-eos", "--print-json"],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError(f"xlserve failed on {model_dir}: {r.stderr.strip()}")
    return json.loads(r.stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--xlserve", required=True, help="path of the xlserve binary")
    parser.add_argument("--cases", type=int, default=10)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--device", default=None, help="torch device for transformers")
    args = parser.parse_args()

    import torch
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    ref = mg.Reference(device)
    rng = random.Random(args.seed)
    failures = 0
    print(f"transformers {ref.transformers.__version__}, torch {torch.__version__}, device {device}")
    print(f"{'case':<22} {'config':<70} {'max|dlogit|':>12} {'greedy':>10}")
    with tempfile.TemporaryDirectory() as root:
        for i in range(args.cases):
            case = random_case(rng, i)
            try:
                mg.build_config(case)
                ref.make_case(case, root, lambda msg: None)
            except Exception as err:  # a draw transformers cannot build or that stays tie-prone
                print(f"{case.name:<22} skipped: {str(err).splitlines()[0][:90]}")
                continue
            model_dir = os.path.join(root, case.name)
            with open(os.path.join(model_dir, "golden.json")) as f:
                golden = json.load(f)
            worst, same = 0.0, True
            for prompt in golden["prompts"]:
                out = run_xlserve(args.xlserve, model_dir, prompt)
                worst = max(worst, max(abs(a - b) for a, b in zip(out["prompt_last_logits"], prompt["last_logits"])))
                same = same and out["tokens"] == prompt["greedy_tokens"]
            ok = same and worst <= TOLERANCE[case.weights_dtype]
            failures += not ok
            print(f"{case.name:<22} {case.summary[:70]:<70} {worst:>12.3g} {'identical' if same else 'DIFFERENT':>10}"
                  + ("" if ok else "  FAIL"))
    print(f"{'all match' if failures == 0 else f'{failures} case(s) FAILED'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
