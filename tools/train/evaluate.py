#!/usr/bin/env python3
"""Evaluates exported multi-token models on the held-out validation packages.

  python3 tools/train/evaluate.py --model DIR [--model DIR2 ...] --out eval.json

Weights are read as exported (bf16) and all maths runs in fp32 with TF32 off, as in the engine.
For each model:
- per-head top-1 accuracy, teacher-forced: head i at position t against token t+1+i, over
  --acc-windows windows of --acc-len tokens; on the same windows, how often drafts agree with
  head 0's own prediction at their position (a loop-free estimate of tokens per step);
- greedy self-speculation, simulated exactly (speculation.py) for k = 1, 2, 3 drafts: the model
  greedily continues --prompts prompts of --prompt-len held-out tokens by --gen tokens; then at
  each step head 0's token plus the drafts of heads 1..k at the last accepted position are
  checked against that continuation; tokens per step = 1 + accepted drafts. Greedy
  continuations of a small model often loop, which drafts predict easily, so the distinct 4-gram
  ratio of the continuations and tokens per step on the rows that do not loop are reported too.
"""

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import corpus  # noqa: E402
import data  # noqa: E402
import export  # noqa: E402
import speculation  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", required=True, help="exported model directory (repeatable)")
    p.add_argument("--out", required=True)
    p.add_argument("--val-packages", default=",".join(corpus.DEFAULT_VAL_PACKAGES))
    p.add_argument("--acc-windows", type=int, default=256)
    p.add_argument("--acc-len", type=int, default=512)
    p.add_argument("--prompts", type=int, default=256)
    p.add_argument("--prompt-len", type=int, default=192)
    p.add_argument("--gen", type=int, default=128)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--max-k", type=int, default=3)
    return p.parse_args(argv)


def windows(tokens: torch.Tensor, length: int, count: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, tokens.numel() - length, (count,), generator=g)
    return tokens[starts[:, None] + torch.arange(length)].long()


@torch.no_grad()
def head_accuracy(model, wins: torch.Tensor, seq_len: int, batch: int, device) -> tuple[list[float], list[float]]:
    """Per-head top-1 accuracy against the text, and the teacher-forced draft agreement: the
    share of positions p where heads 1..i all agree with what head 0 predicts at p+1..p+i on the
    real text (chain[i-1]). 1 + sum(chain[:k]) estimates tokens per step on code that greedy
    decoding would write itself, without the loops that greedy continuations fall into."""
    n = model.a.mtp_num_heads
    correct = torch.zeros(n, dtype=torch.float64)
    chain = torch.zeros(n - 1, dtype=torch.float64)
    positions = seq_len - (n - 1)
    for i in range(0, wins.shape[0], batch):
        w = wins[i:i + batch].to(device)
        argmax = [lg.argmax(-1) for lg in export.logits_any_length(model, w[:, :seq_len])]
        for h, a in enumerate(argmax):
            correct[h] += (a == w[:, 1 + h:1 + h + seq_len]).sum().item()
        agree = torch.ones_like(argmax[0][:, :positions], dtype=torch.bool)
        for h in range(1, n):
            agree &= argmax[h][:, :positions] == argmax[0][:, h:h + positions]
            chain[h - 1] += agree.sum().item()
    return ((correct / (wins.shape[0] * seq_len)).tolist(), (chain / (wins.shape[0] * positions)).tolist())


@torch.no_grad()
def greedy_continue(model, prompts: torch.Tensor, steps: int) -> torch.Tensor:
    """Plain greedy decoding by recomputing the causal forward (exact, and cheap at this size)."""
    L = model.a.chunk_size
    seq = prompts
    for _ in range(steps):
        S = seq.shape[1]
        padded = torch.nn.functional.pad(seq, (0, -(-S // L) * L - S))
        hidden = model.head_hidden(model.trunk(padded), 0)[:, S - 1]
        seq = torch.cat([seq, model.logits(hidden).argmax(-1, keepdim=True)], 1)
    return seq


def distinct_4gram_ratios(seq: torch.Tensor, start: int) -> list[float]:
    """Per row, distinct 4-grams / 4-grams of the generated part: low values mean a greedy loop,
    which drafts predict easily."""
    ratios = []
    for row in seq[:, start:].tolist():
        grams = [tuple(row[i:i + 4]) for i in range(len(row) - 3)]
        ratios.append(len(set(grams)) / max(1, len(grams)))
    return ratios


@torch.no_grad()
def speculation_stats(model, prompts: torch.Tensor, gen: int, max_k: int, batch: int, device,
                      varied: float = 0.75) -> dict:
    """Tokens per step for k = 1..max_k over all prompts, and over the rows whose continuation
    is not a loop (distinct 4-gram ratio >= `varied`)."""
    n = model.a.mtp_num_heads
    ks = range(1, min(max_k, n - 1) + 1)
    totals = {k: {"tokens": 0, "steps": 0, "accepted_at": [0] * k, "per_row": []} for k in ks}
    ratios = []
    for i in range(0, prompts.shape[0], batch):
        seq = greedy_continue(model, prompts[i:i + batch].to(device), gen)
        ratios += distinct_4gram_ratios(seq, prompts.shape[1])
        drafts = torch.stack([lg.argmax(-1) for lg in export.logits_any_length(model, seq, heads=range(1, n))])
        for k in ks:
            s = speculation.simulate(seq, drafts, prompts.shape[1], k)
            t = totals[k]
            t["tokens"] += s["tokens"]
            t["steps"] += s["steps"]
            t["accepted_at"] = [a + b for a, b in zip(t["accepted_at"], s["accepted_at"])]
            t["per_row"] += s["per_row"]
    keep = [r >= varied for r in ratios]
    out = {}
    for k, t in totals.items():
        kept = [row for row, ok in zip(t["per_row"], keep) if ok]
        out[f"k{k}"] = {
            "tokens_per_step": t["tokens"] / t["steps"], "steps": t["steps"], "tokens": t["tokens"],
            "accepted_per_step_by_draft": [a / t["steps"] for a in t["accepted_at"]],
            "tokens_per_step_varied_rows": sum(r[0] for r in kept) / max(1, sum(r[1] for r in kept)),
        }
    out["generated_distinct_4gram_ratio_mean"] = sum(ratios) / len(ratios)
    out["varied_rows"] = {"threshold": varied, "rows": sum(keep), "of": len(keep)}
    return out


def main(argv=None):
    args = parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    val_packages = [p for p in args.val_packages.split(",") if p]
    with open(os.path.join(args.model[0], "tokenizer.json")) as f:
        tokenizer_json = f.read()
    val, val_info = data.prepare_val(tokenizer_json, val_packages)
    val = torch.from_numpy(val.astype("int64"))
    result = {"validation": val_info,
              "settings": {k: getattr(args, k) for k in ("acc_windows", "acc_len", "prompts", "prompt_len", "gen")},
              "compute": "weights as exported, fp32 maths, TF32 off", "models": {}}
    for model_dir in args.model:
        t0 = time.time()
        with open(os.path.join(model_dir, "tokenizer.json")) as f:
            if f.read() != tokenizer_json:
                raise ValueError(f"{model_dir} has another tokenizer than {args.model[0]}")
        model = export.load(model_dir, device).eval()
        n = model.a.mtp_num_heads
        acc, chain = head_accuracy(model, windows(val, args.acc_len + n, args.acc_windows, seed=4321),
                                   args.acc_len, args.batch, device)
        prompts = windows(val, args.prompt_len, args.prompts, seed=999)
        spec = speculation_stats(model, prompts, args.gen, args.max_k, args.batch, device)
        forced = {f"k{k}": 1 + sum(chain[:k]) for k in range(1, min(args.max_k, n - 1) + 1)}
        entry = {"head_accuracy": acc, "speculation": spec,
                 "teacher_forced_draft_agreement": {"chain": chain, "expected_tokens_per_step": forced},
                 "seconds": round(time.time() - t0, 1)}
        result["models"][os.path.basename(os.path.normpath(model_dir))] = entry
        ks = [key for key in spec if key.startswith("k")]
        print(f"{model_dir}: head accuracy {' '.join(f'{a:.3f}' for a in acc)}; tokens/step "
              + " ".join(f"k={key[1:]} {spec[key]['tokens_per_step']:.3f}" for key in ks)
              + "; on varied rows " + " ".join(f"{spec[key]['tokens_per_step_varied_rows']:.3f}" for key in ks)
              + f"; distinct 4-grams {spec['generated_distinct_4gram_ratio_mean']:.2f}; teacher-forced "
              + " ".join(f"{v:.3f}" for v in forced.values()) + f" ({entry['seconds']} s)",
              flush=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
