#!/usr/bin/env python3
"""Tunes a checkpoint's MTP heads on the model's own greedy continuations (on-policy
self-distillation), the trunk and head 0 frozen, so that the model's outputs do not change.

Speculation drafts for text the model writes itself, and greedy text differs from human code:
it repeats itself, and its next token is always head 0's argmax. Heads tuned on human code alone
(train.py's head tuning, add_heads.py) never see it. Here:

1. prompts: --prompts windows of --prompt-tokens tokens from the .py files under --prompts-from,
   at seeded random places; files of --exclude-packages (the held-out packages a benchmark will
   use) and any file whose content also occurs in one of them stay out;
2. continuations: `xlserve generate` continues each prompt greedily by --new-tokens tokens on the
   CPU, --jobs at a time, kept in WORK/continuations.jsonl (a rerun reuses them);
3. tuning: heads 1..n-1 learn head 0's distribution at the positions they draft for, over prompt
   + continuation (soft targets, as train.py's head tuning), AdamW with warm-up and linear decay
   for --epochs passes over all but a tenth of the windows;
4. eval, before and after, on that held-out tenth: the chained agreement of drafts 1..i with head
   0 on the continuations (a draft is accepted when it and all before it agree), whose sum + 1
   estimates tokens per decode step at k = i;
5. export: --out gets the checkpoint's files with only the mtp_heads tensors replaced (in the
   checkpoint's dtype and layout), and on_policy_tuning.json (settings and both evals).

  tune_heads_on_policy.py --model DIR --prompts-from DIR [--prompts-from DIR ...] \\
      --exclude-packages networkx,seaborn --xlserve bazel-bin/xlserve --work WORK --out DIR
"""

import argparse
import concurrent.futures
import json
import os
import random
import shutil
import subprocess
import sys
import time

import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import corpus  # noqa: E402
import hf_checkpoint  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="checkpoint directory with MTP heads and tokenizer.json")
    p.add_argument("--prompts-from", action="append", required=True, help="directory of .py files (repeatable)")
    p.add_argument("--exclude-packages", default="", help="comma-separated directory names kept out (held out)")
    p.add_argument("--xlserve", required=True, help="the xlserve binary that writes the continuations")
    p.add_argument("--work", required=True, help="directory for continuations.jsonl")
    p.add_argument("--out", required=True, help="directory of the tuned checkpoint")
    p.add_argument("--prompts", type=int, default=3072)
    p.add_argument("--prompt-tokens", type=int, default=128)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="xlserve processes at once")
    p.add_argument("--epochs", type=float, default=2.0)
    p.add_argument("--batch", type=int, default=16, help="windows per step")
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--warmup-steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--log-every", type=int, default=20)
    args = p.parse_args(argv)
    if os.path.realpath(args.out) == os.path.realpath(args.model):
        p.error("--out must not be the source checkpoint (write elsewhere, then replace it)")
    if not (os.path.isfile(args.xlserve) and os.access(args.xlserve, os.X_OK)):
        p.error(f"--xlserve {args.xlserve}: not an executable file")
    for name in ("config.json", "tokenizer.json"):
        if not os.path.isfile(os.path.join(args.model, name)):
            p.error(f"--model {args.model}: no {name}")
    for d in args.prompts_from:
        if not os.path.isdir(d):
            p.error(f"--prompts-from {d}: not a directory")
    return args


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def source_files(dirs: list[str], exclude: set[str]) -> list[str]:
    """The .py files under `dirs` in a fixed order, without excluded packages' files, copies of
    them elsewhere, or duplicate contents."""
    kept, excluded_digests = [], set()
    for root in dirs:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            held_out = bool(exclude & set(os.path.relpath(dirpath, root).split(os.sep)))
            for name in sorted(filenames):
                if name.endswith(".py"):
                    path = os.path.join(dirpath, name)
                    if held_out:
                        excluded_digests.add(_digest(path))
                    else:
                        kept.append(path)
    out, seen = [], set(excluded_digests)
    for path in kept:
        digest = _digest(path)
        if digest and digest not in seen:
            seen.add(digest)
            out.append(path)
    return out


def _digest(path: str) -> str | None:
    read = corpus.read_source(path)
    return read[0] if read else None


def sample_prompts(files: list[str], tokenizer, count: int, length: int, seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    order = files[:]
    rng.shuffle(order)
    prompts = []
    for path in order:
        try:
            with open(path, encoding="utf-8") as f:
                ids = tokenizer.encode(f.read()).ids
        except (OSError, UnicodeDecodeError):
            continue
        if len(ids) < 2 * length:
            continue
        start = rng.randrange(0, len(ids) - length + 1)
        prompts.append(ids[start:start + length])
        if len(prompts) == count:
            return prompts
    raise SystemExit(f"only {len(prompts)} of {count} prompts: too few files of {2 * length} tokens or more")


def continue_greedily(args, prompts: list[list[int]]) -> list[list[int]]:
    """Each prompt followed by its greedy continuation, from the cache or from `xlserve generate`."""
    path = os.path.join(args.work, "continuations.jsonl")
    cached = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                row = json.loads(line)
                cached[tuple(row["prompt"])] = row["continuation"]

    def run(prompt):
        cmd = [args.xlserve, "generate", "--model", args.model, "--prompt-ids", ",".join(map(str, prompt)),
               "--max-tokens", str(args.new_tokens), "--speculation", "off", "--device", "cpu", "--threads", "1",
               "--ignore-eos", "--print-json"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise SystemExit(f"xlserve generate failed: {done.stderr.strip()}")
        return json.loads(done.stdout)["tokens"]

    todo = [p for p in prompts if len(cached.get(tuple(p), [])) != args.new_tokens]
    log(f"continuations: {len(prompts) - len(todo)} cached, {len(todo)} to generate with {args.jobs} jobs")
    t0 = time.time()
    with open(path, "a") as out, concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        for n, (prompt, tokens) in enumerate(zip(todo, pool.map(run, todo)), 1):
            cached[tuple(prompt)] = tokens
            out.write(json.dumps({"prompt": prompt, "continuation": tokens}) + "\n")
            if n % 100 == 0 or n == len(todo):
                out.flush()
                log(f"continuations: {n}/{len(todo)} in {time.time() - t0:.0f} s")
    return [p + cached[tuple(p)] for p in prompts]


@torch.no_grad()
def evaluate(model, z: torch.Tensor, prompt_tokens: int, batch: int) -> dict:
    """Head losses, and the chained agreement at the continuations' positions (the last prompt
    position drafts the first continuation tokens)."""
    n = model.a.mtp_num_heads
    losses = torch.zeros(n - 1, dtype=torch.float64)
    chain = torch.zeros(n - 1, dtype=torch.float64)
    positions = 0
    span = slice(prompt_tokens - 1, z.shape[1] - (n - 1))
    for i in range(0, z.shape[0], batch):
        part, agree = model.head_distill(z[i:i + batch])
        losses += part.double() * z[i:i + batch].shape[0]
        ok = torch.ones_like(agree[0][:, span])
        for h in range(n - 1):
            ok = ok & agree[h][:, span]
            chain[h] += ok.sum().item()
        positions += ok.numel()
    chain /= positions
    return {"loss": (losses / z.shape[0]).tolist(), "chain": chain.tolist(),
            "tokens_per_step": [1 + chain[:k].sum().item() for k in range(1, n)]}


def export_heads(model, src_dir: str, out_dir: str, report: dict) -> None:
    """out_dir: src_dir's files with the mtp_heads tensors replaced, in their dtype and layout."""
    config = hf_checkpoint.read_config(src_dir)
    where = hf_checkpoint.tensor_files(src_dir)
    head_names = [n for n in where if n.startswith(hf_checkpoint.HEADS_PREFIX)]
    dtype = hf_checkpoint.load_tensors(src_dir, head_names[:1])[head_names[0]].dtype
    heads = hf_checkpoint.head_tensors(model, config, dtype)
    if sorted(heads) != sorted(head_names):
        raise SystemExit("the tuned heads' tensors do not match the checkpoint's mtp_heads tensors")
    os.makedirs(out_dir, exist_ok=True)
    for name in os.listdir(src_dir):
        src = os.path.join(src_dir, name)
        if os.path.isfile(src) and name not in set(where.values()):
            shutil.copyfile(src, os.path.join(out_dir, name))
    for file in sorted(set(where.values())):
        tensors = load_file(os.path.join(src_dir, file))
        if any(n in heads for n in tensors):
            tensors.update({n: t for n, t in heads.items() if where[n] == file})
            save_file(tensors, os.path.join(out_dir, file), metadata={"format": "pt"})
        else:
            shutil.copyfile(os.path.join(src_dir, file), os.path.join(out_dir, file))
    with open(os.path.join(out_dir, "on_policy_tuning.json"), "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")


def main(argv=None):
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    os.makedirs(args.work, exist_ok=True)
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(os.path.join(args.model, "tokenizer.json"))
    exclude = {p for p in args.exclude_packages.split(",") if p}
    files = source_files(args.prompts_from, exclude)
    log(f"prompts: {len(files)} files under {', '.join(args.prompts_from)} (excluded: {sorted(exclude)})")
    prompts = sample_prompts(files, tokenizer, args.prompts, args.prompt_tokens, args.seed)
    windows = torch.tensor(continue_greedily(args, prompts))

    model = hf_checkpoint.load_model(args.model)
    if model.a.mtp_num_heads < 2 or model.a.mtp_head_type != "mlstm_block":
        raise SystemExit("--model needs mlstm_block MTP heads to tune")
    if windows.shape[1] % model.a.chunk_size:
        raise SystemExit(f"--prompt-tokens + --new-tokens must be a multiple of the chunk size {model.a.chunk_size}")
    model.eval()
    t0 = time.time()
    with torch.no_grad():
        z = torch.cat([model.trunk(windows[i:i + 64]) for i in range(0, len(windows), 64)])
    log(f"trunk over {len(windows)} windows of {windows.shape[1]} tokens in {time.time() - t0:.0f} s")
    order = list(range(len(windows)))
    random.Random(args.seed).shuffle(order)
    held = max(1, len(order) // 10)
    eval_z, train_idx = z[order[:held]], order[held:]
    before = evaluate(model, eval_z, args.prompt_tokens, args.batch)
    log(f"before: tokens per step at k = 1..{len(before['chain'])} {[round(x, 3) for x in before['tokens_per_step']]}")

    heads = []
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith(hf_checkpoint.HEADS_PREFIX))
        if p.requires_grad:
            heads.append(p)
    opt = torch.optim.AdamW(heads, lr=args.lr, betas=(0.9, 0.95), weight_decay=0.0)
    steps = max(1, int(args.epochs * len(train_idx) / args.batch))
    rng = random.Random(args.seed + 1)
    queue: list[int] = []
    model.train()
    t0 = time.time()
    for step in range(steps):
        if len(queue) < args.batch:
            more = train_idx[:]
            rng.shuffle(more)
            queue += more
        batch, queue = queue[:args.batch], queue[args.batch:]
        lr = args.lr * min(1.0, (step + 1) / args.warmup_steps) * (1 - step / steps)
        for g in opt.param_groups:
            g["lr"] = lr
        losses, _ = model.head_distill(z[batch])
        opt.zero_grad(set_to_none=True)
        losses.sum().backward()
        torch.nn.utils.clip_grad_norm_(heads, 1.0)
        opt.step()
        if (step + 1) % args.log_every == 0 or step + 1 == steps:
            log(f"step {step + 1}/{steps} ({time.time() - t0:.0f} s) lr {lr:.2e} "
                f"loss {' '.join(f'{x:.3f}' for x in losses.tolist())}")
    model.eval()
    after = evaluate(model, eval_z, args.prompt_tokens, args.batch)
    log(f"after: tokens per step at k = 1..{len(after['chain'])} {[round(x, 3) for x in after['tokens_per_step']]}")
    settings = {k: v for k, v in vars(args).items() if k not in ("xlserve", "work", "out")}
    report = {"settings": settings, "windows": len(windows), "held_out_windows": held, "steps": steps,
              "before": before, "after": after}
    export_heads(model, args.model, args.out, report)
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
