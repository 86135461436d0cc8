#!/usr/bin/env python3
"""Adds multi-token-prediction heads to a transformers xLSTM checkpoint (xLSTMForCausalLM, e.g.
NX-AI's xLSTM-7b) and trains them by self-distillation, so that xlserve can speculate with it.

The trunk stays frozen: every tensor of the checkpoint is exported byte for byte, so the model's
own outputs do not change. Head i (1..n-1) reads the residual stream at depth --trunk-layers and
learns the frozen model's own next-token distribution at position t+i, i.e. the token the model
itself would put at t+1+i: exactly what greedy verification accepts (DESIGN §4). The
loss per head is KL(teacher || head) over the vocabulary, computed in row chunks so that no
(batch x sequence x vocabulary) tensor is ever held.

  add_heads.py --model DIR --train PATH... --out RUN [--eval PATH...] [--export DIR]

Corpora: files or directories, given after --train (and held-out ones after --eval); a directory
is walked for files matching --include. *.jsonl / *.json files hold one JSON object per line with
the document under --text-key; other files are plain text, one document each. Data is streamed
(tokenized as it is needed, never loaded whole) and packed into windows of --seq tokens.

Heads (the `mtp` config of DESIGN §2): --num-heads n counts head 0, the model itself;
--head-type mlstm_block (one xLSTM block per head, recurrent, initialised as a copy of the trunk's
block at that depth) or linear (one d x d matrix per head, stateless, initialised to the
identity). Heads share the checkpoint's out_norm and lm_head.

Precision: on a GPU the trunk keeps the checkpoint's dtype and runs under bf16 autocast; heads
keep fp32 master weights and AdamW state. On the CPU everything is fp32.

Run directory (--out): train_log.txt, trainer_state.json (settings, step, tokens, loss and eval
history, data position), ckpt-*.safetensors (heads and optimizer state) and stream.safetensors
(tokens in flight). --resume continues from it exactly: the same windows, the same updates.

Export (--export DIR): config.json with "mtp" added, the trunk's safetensors files untouched
(copied, or hard-linked with --link-trunk), the heads in model-mtp-heads.safetensors, a shard
index joining them, the tokenizer files, and add_heads.json (settings and the last eval).
`xlserve serve --model DIR` loads it. For transformers it is an ordinary sharded checkpoint whose
extra mtp_heads.* tensors it sets aside (as with the shipped model; not checked by the tests).

Progress (every --log-every steps): tokens, tokens/s, learning rate, and per head the KL to the
teacher and the agreement of its argmax with the teacher's. Eval (every --eval-every steps, on
--eval-windows held-out windows): per head the agreement, and the chained acceptance of heads
1..i (all drafts up to i match), whose sum + 1 estimates tokens per step at k = i drafts on
text like the held-out text (docs/adding-heads.md).
"""

import argparse
import itertools
import json
import math
import os
import sys
import time

import torch
import torch.utils.checkpoint
from safetensors import safe_open
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import checkpoint  # noqa: E402
import hf_checkpoint  # noqa: E402
import model as M  # noqa: E402
import text_stream  # noqa: E402
from train import Log, autocast, sync  # noqa: E402

STREAM_FILE = "stream.safetensors"
# Settings a resumed run must share with the run that wrote the checkpoint.
FIXED_ON_RESUME = ("model", "num_heads", "head_type", "trunk_layers", "seq", "batch", "grad_accum", "seed")
_DTYPES = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("model and heads")
    g.add_argument("--model", required=True, help="transformers xLSTM checkpoint directory (config.json + safetensors)")
    g.add_argument("--tokenizer", help="tokenizer.json to use (default: the model directory's)")
    g.add_argument("--num-heads", type=int, default=4, help="n, heads including head 0 (default 4: three drafts)")
    g.add_argument("--head-type", choices=("mlstm_block", "linear"), default="mlstm_block")
    g.add_argument("--trunk-layers", type=int,
                   help="depth of the residual stream the heads read (default: num_blocks - 1 for "
                        "mlstm_block, num_blocks for linear)")
    g.add_argument("--replace-heads", action="store_true",
                   help="accept a checkpoint that already has heads: they are left out of the export")
    g = p.add_argument_group("data")
    g.add_argument("--train", nargs="+", help="training corpus: files or directories")
    g.add_argument("--eval", nargs="+", help="held-out corpus for the periodic acceptance eval")
    g.add_argument("--include", default="*.txt,*.jsonl,*.json,*.md",
                   help="comma-separated globs of file names taken from directories")
    g.add_argument("--exclude", default="", help="comma-separated globs of file or folder names to skip")
    g.add_argument("--text-key", default="text", help="JSONL field holding the document")
    g.add_argument("--eos-id", type=int, help="id joining documents (default: config.json's eos_token_id)")
    g.add_argument("--shuffle-buffer", type=int, default=2048, help="windows held for shuffling")
    g = p.add_argument_group("training")
    g.add_argument("--out", required=True, help="run directory: log, resumable checkpoint")
    g.add_argument("--resume", action="store_true", help="continue the run in --out")
    g.add_argument("--steps", type=int, help="stop after this many optimizer steps in all")
    g.add_argument("--tokens", type=float, help="stop after this many training tokens in all (e.g. 1e9)")
    g.add_argument("--max-seconds", type=float, help="stop this run after this many seconds of training")
    g.add_argument("--run-steps", type=int,
                   help="stop this run after this many steps, keeping the schedule of --steps/--tokens "
                        "(a long run in pieces: continue with --resume)")
    g.add_argument("--seq", type=int, default=2048, help="tokens per window (a multiple of the chunk size)")
    g.add_argument("--batch", type=int, default=8, help="windows per micro-batch")
    g.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step")
    g.add_argument("--lr", type=float, default=1e-3)
    g.add_argument("--min-lr-ratio", type=float, default=0.1, help="cosine decay ends at this x lr")
    g.add_argument("--warmup", type=int, default=50, help="steps of linear warm-up")
    g.add_argument("--weight-decay", type=float, default=0.0)
    g.add_argument("--grad-checkpoint", action="store_true",
                   help="recompute each head block in the backward pass (for long --seq x --batch)")
    g.add_argument("--loss-chunk", type=int, default=1 << 26,
                   help="rows x vocabulary elements per loss chunk (memory of the logits)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", help="cuda or cpu (default: cuda when there is one)")
    g = p.add_argument_group("progress, eval, checkpoints, export")
    g.add_argument("--log-every", type=int, default=10)
    g.add_argument("--eval-every", type=int, default=200, help="steps between evals (0: at the end only)")
    g.add_argument("--eval-windows", type=int, default=32, help="held-out windows of --seq tokens")
    g.add_argument("--save-every", type=int, default=500, help="steps between checkpoints (and one at the end)")
    g.add_argument("--export", help="directory to write the model with heads into at the end")
    g.add_argument("--link-trunk", action="store_true", help="hard-link the trunk's files instead of copying")
    g.add_argument("--export-only", action="store_true", help="export the checkpoint in --out, no training")
    return p.parse_args(argv)


def checkpoint_dtype(model_dir: str) -> torch.dtype:
    where = hf_checkpoint.tensor_files(model_dir)
    with safe_open(os.path.join(model_dir, where["backbone.embeddings.weight"]), framework="pt") as f:
        code = f.get_slice("backbone.embeddings.weight").get_dtype()
    if code not in _DTYPES:
        raise ValueError(f"unsupported weight dtype {code}")
    return _DTYPES[code]


@torch.no_grad()
def init_heads(model: M.MtpXlstm) -> None:
    """Block heads start as copies of the trunk's block at their depth (head i then predicts like
    head 0, a far better start than noise); linear heads as the identity, for the same reason."""
    a = model.a
    source = model.backbone.blocks[min(a.trunk_layers, a.num_blocks - 1)].state_dict()
    for head in model.mtp_heads.values():
        if isinstance(head, M.Block):
            head.load_state_dict(source)
        else:
            head.proj.weight.copy_(torch.eye(a.hidden_size))


def build_model(args, config, device) -> tuple[M.MtpXlstm, torch.dtype]:
    if config.get("mtp") and not args.replace_heads:
        raise SystemExit(f"{args.model} already has heads ({config['mtp']}); give --replace-heads to train new ones")
    a = hf_checkpoint.model_args(config, args.num_heads, args.head_type, args.trunk_layers)
    if args.num_heads < 2:
        raise SystemExit("--num-heads must be at least 2 (head 0 and one draft head)")
    if args.seq % a.chunk_size:
        raise SystemExit(f"--seq {args.seq} must be a multiple of the model's chunk_size {a.chunk_size}")
    stored = checkpoint_dtype(args.model)
    model = hf_checkpoint.build(a, device, stored if device.type == "cuda" else torch.float32)
    hf_checkpoint.load_into(model, args.model, config, hf_checkpoint.trunk_parameter_names(model))
    model.mtp_heads.float()
    init_heads(model)
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith(hf_checkpoint.HEADS_PREFIX))
    return model, stored


def make_optimizer(model, args, device):
    decay = [p for p in model.mtp_heads.parameters() if p.ndim == 2]
    rest = [p for p in model.mtp_heads.parameters() if p.ndim != 2]
    groups = [g for g in ({"params": decay, "weight_decay": args.weight_decay}, {"params": rest, "weight_decay": 0.0})
              if g["params"]]
    extra = {"fused": True} if device.type == "cuda" else {}  # torch 1.x AdamW has no `fused`
    return torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.95), eps=1e-8, **extra)


def trunk_and_teacher(model, ids, device):
    """The residual stream the heads read and head 0's final hidden state, without gradients."""
    with torch.no_grad(), autocast(device):
        x = model.trunk(ids)
        return x, model.head_hidden(x, 0)


def run_head(model, i: int, x, grad_checkpoint: bool):
    head = model.mtp_heads[str(i)]
    if grad_checkpoint:
        return torch.utils.checkpoint.checkpoint(head, x, use_reentrant=False)
    return head(x)


def chunk_kl(model, student, teacher, device, grad_scale=None):
    """KL(teacher || student) per row and whether the argmaxes agree, for rows of hidden states
    (N, d) through the shared unembedding; backward at once when grad_scale is given, so that
    one chunk's logits are alive at a time."""
    with autocast(device):
        with torch.no_grad():
            t_logp = torch.log_softmax(model.logits(teacher), -1)
            t_p = t_logp.exp()
        s_logp = torch.log_softmax(model.logits(student), -1)
        kl = (t_p * (t_logp - s_logp)).sum(-1)
    if grad_scale is not None:
        (kl.sum() * grad_scale).backward()
    return kl.detach(), s_logp.detach().argmax(-1) == t_logp.argmax(-1)


def head_rows(B: int, S: int, i: int, device):
    """Flat row indices of head i's positions t < S - i and of their teacher positions t + i."""
    rows = (torch.arange(B, device=device)[:, None] * S + torch.arange(S - i, device=device)[None]).reshape(-1)
    return rows, rows + i


def distill_step(model, ids, args, device, grad_scale: float):
    """One micro-batch: forward and backward of every head. Returns per head (KL sum, agreeing
    positions, positions)."""
    B, S = ids.shape
    x, h0 = trunk_and_teacher(model, ids, device)
    d = x.shape[-1]
    h0 = h0.reshape(B * S, d)
    chunk = max(1, args.loss_chunk // model.a.vocab_size)
    stats = []
    for i in range(1, model.a.mtp_num_heads):
        with autocast(device):
            h = run_head(model, i, x, args.grad_checkpoint)
        flat = h.detach().reshape(B * S, d)
        grad = torch.zeros(flat.shape, dtype=torch.float32, device=device)
        s_rows, t_rows = head_rows(B, S, i, device)
        n = s_rows.numel()
        kl_sum = torch.zeros((), device=device)
        agree = torch.zeros((), dtype=torch.long, device=device)
        for r in range(0, n, chunk):
            student = flat[s_rows[r:r + chunk]].requires_grad_()
            kl, same = chunk_kl(model, student, h0[t_rows[r:r + chunk]], device, grad_scale / n)
            grad[s_rows[r:r + chunk]] = student.grad.float()
            kl_sum += kl.sum()
            agree += same.sum()
        h.backward(grad.reshape(h.shape).to(h.dtype))
        stats.append(torch.stack([kl_sum, agree.to(kl_sum.dtype), torch.tensor(float(n), device=device)]))
    return torch.stack(stats)  # (n-1, 3)


@torch.no_grad()
def evaluate(model, windows: torch.Tensor, args, device) -> dict:
    """Teacher-forced acceptance on held-out windows: per head the share of positions where its
    argmax equals the teacher's at its target, and the chain (heads 1..i all agree), whose
    1 + sum over i <= k estimates tokens per speculative step with k drafts."""
    n = model.a.mtp_num_heads
    model.eval()
    chunk = max(1, args.loss_chunk // model.a.vocab_size)
    kl_sum, agree_sum = torch.zeros(n - 1), torch.zeros(n - 1)
    chain_sum, positions, chain_positions = torch.zeros(n - 1), torch.zeros(n - 1), 0
    for b in range(0, windows.shape[0], args.batch):
        ids = windows[b:b + args.batch].to(device)
        B, S = ids.shape
        x, h0 = trunk_and_teacher(model, ids, device)
        h0 = h0.reshape(B * S, -1)
        chain = torch.ones(B, S - (n - 1), dtype=torch.bool, device=device)
        for i in range(1, n):
            with autocast(device):
                flat = model.mtp_heads[str(i)](x).reshape(B * S, -1)
            s_rows, t_rows = head_rows(B, S, i, device)
            kls, sames = [], []
            for r in range(0, s_rows.numel(), chunk):
                kl, same = chunk_kl(model, flat[s_rows[r:r + chunk]], h0[t_rows[r:r + chunk]], device)
                kls.append(kl)
                sames.append(same)
            same = torch.cat(sames).reshape(B, S - i)
            kl_sum[i - 1] += torch.cat(kls).sum().item()
            agree_sum[i - 1] += same.sum().item()
            positions[i - 1] += same.numel()
            chain &= same[:, :S - (n - 1)]
            chain_sum[i - 1] += chain.sum().item()
        chain_positions += chain.numel()
    model.train()
    chain = (chain_sum / chain_positions).tolist()
    return {"kl": (kl_sum / positions).tolist(), "agreement": (agree_sum / positions).tolist(), "chain": chain,
            "expected_tokens_per_step": {f"k{k}": 1 + sum(chain[:k]) for k in range(1, n)},
            "windows": int(windows.shape[0]), "seq": int(windows.shape[1])}


def eval_windows(args, tokenizer, eos: int) -> torch.Tensor | None:
    if not args.eval:
        return None
    files = text_stream.list_files(args.eval, _globs(args.include), _globs(args.exclude))
    stream = text_stream.TokenStream(files, tokenizer, eos, args.seq, args.text_key, seed=0, shuffle_buffer=1,
                                     loop=False)
    rows = list(itertools.islice(iter(stream.next_window, None), args.eval_windows))
    if not rows:
        raise SystemExit(f"the eval corpus holds less than one window of {args.seq} tokens")
    return torch.tensor(rows, dtype=torch.long)


def _globs(text: str) -> list[str]:
    return [g for g in text.split(",") if g]


def schedule(args, state: dict, run_seconds: float) -> tuple[float, float]:
    """(progress in [0, 1], learning rate): progress is the furthest of the given limits;
    warm-up, then cosine decay to min-lr-ratio x lr."""
    fracs = [0.0]
    if args.steps:
        fracs.append(state["step"] / args.steps)
    if args.tokens:
        fracs.append(state["tokens"] / args.tokens)
    if args.max_seconds:
        fracs.append(run_seconds / args.max_seconds)
    progress = min(1.0, max(fracs))
    lr = args.lr * (args.min_lr_ratio + (1 - args.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))
    return progress, lr * min(1.0, (state["step"] + 1) / max(1, args.warmup))


def save_run(args, model, optimizer, stream, state):
    position, tensors = stream.state()
    state["stream"] = position
    save_file(tensors, os.path.join(args.out, STREAM_FILE + ".tmp"))
    os.replace(os.path.join(args.out, STREAM_FILE + ".tmp"), os.path.join(args.out, STREAM_FILE))
    checkpoint.save(args.out, model.mtp_heads, optimizer, state, shard_bytes=2 << 30, moment_dtype=torch.float32)


def fmt(values, digits=3) -> str:
    return " ".join(f"{v:.{digits}f}" for v in values)


def bar(progress: float, width: int = 20) -> str:
    filled = int(progress * width)
    return "[" + "#" * filled + "-" * (width - filled) + f"] {100 * progress:3.0f}%"


def export_model(args, model, config, stored_dtype, state, log):
    a = model.a
    mtp = {"num_heads": a.mtp_num_heads, "head_type": a.mtp_head_type, "trunk_layers": a.trunk_layers}
    report = {"source": os.path.abspath(args.model), "mtp": mtp, "step": state["step"], "tokens": state["tokens"],
              "settings": state["settings"], "last_eval": (state["eval_history"] or [None])[-1]}
    hf_checkpoint.write_export(args.model, args.export, mtp, hf_checkpoint.head_tensors(model, config, stored_dtype),
                               link=args.link_trunk, tokenizer=args.tokenizer, extra={"add_heads.json": report})
    log(f"exported to {args.export}: {mtp}, heads in {stored_dtype}")


def main(argv=None):
    args = parse_args(argv)
    if not args.export_only and not args.train:
        raise SystemExit("--train is required (or --export-only)")
    if args.export_only and not (args.resume and args.export):
        raise SystemExit("--export-only needs --resume and --export")
    os.makedirs(args.out, exist_ok=True)
    log = Log(os.path.join(args.out, "train_log.txt"))
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(args.seed)
    from tokenizers import Tokenizer

    config = hf_checkpoint.read_config(args.model)
    tokenizer_path = args.tokenizer or os.path.join(args.model, "tokenizer.json")
    tokenizer = Tokenizer.from_file(tokenizer_path)
    if tokenizer.get_vocab_size() > config["vocab_size"]:
        raise SystemExit(f"{tokenizer_path} has {tokenizer.get_vocab_size()} tokens, the model {config['vocab_size']}")
    if tokenizer.get_vocab_size() < config["vocab_size"] and args.export:
        # The model can emit ids the tokenizer cannot print (xlserve then refuses them): fine for
        # throughput runs on random weights, wrong for a model anyone serves.
        print(f"warning: {tokenizer_path} has {tokenizer.get_vocab_size()} tokens, fewer than the model's "
              f"{config['vocab_size']}; the export carries it", file=sys.stderr)
    eos = args.eos_id if args.eos_id is not None else config.get("eos_token_id")
    eos = eos[0] if isinstance(eos, list) else eos
    if eos is None:
        raise SystemExit("config.json has no eos_token_id: give --eos-id")

    t_load = time.time()
    model, stored = build_model(args, config, device)
    heads = sum(p.numel() for p in model.mtp_heads.parameters())
    log(f"{args.model}: {sum(p.numel() for p in model.parameters()) - heads:,} frozen trunk parameters "
        f"({stored}), {args.num_heads - 1} {args.head_type} heads with {heads:,} trainable parameters, "
        f"trunk_layers {model.a.trunk_layers}, device {device}, loaded in {time.time() - t_load:.1f} s")
    optimizer = make_optimizer(model, args, device)
    settings = {k: getattr(args, k) for k in FIXED_ON_RESUME}
    state = {"settings": settings, "step": 0, "tokens": 0, "optimizer_step": 0, "train_seconds": 0.0,
             "history": [], "eval_history": [], "runs": []}
    stream = None
    if args.train:
        files = text_stream.list_files(args.train, _globs(args.include), _globs(args.exclude))
        stream = text_stream.TokenStream(files, tokenizer, eos, args.seq, args.text_key, seed=args.seed,
                                         shuffle_buffer=args.shuffle_buffer)
        log(f"training corpus: {len(files)} files")
    if args.resume:
        with open(os.path.join(args.out, checkpoint.STATE_FILE)) as f:
            saved = json.load(f)["settings"]
        changed = {k: (saved.get(k), v) for k, v in settings.items() if saved.get(k) != v}
        if changed:
            raise SystemExit(f"settings differ from the checkpoint's (was, now): {changed}")
        state = checkpoint.load(args.out, model.mtp_heads, optimizer)
        if stream is not None:
            stream.restore(state["stream"], load_file(os.path.join(args.out, STREAM_FILE)))
        log(f"resumed at step {state['step']} ({state['tokens']:,} tokens)")
    if args.export_only:
        export_model(args, model, config, stored, state, log)
        return

    evals = eval_windows(args, tokenizer, eos)
    if evals is None:
        log("no --eval corpus: no acceptance eval")

    def run_eval():
        if evals is None:
            return
        t0 = time.time()
        result = evaluate(model, evals, args, device)
        state["eval_history"].append({"step": state["step"], "tokens": state["tokens"], **result})
        log(f"eval at step {state['step']}: agreement {fmt(result['agreement'])} chain {fmt(result['chain'])} "
            f"kl {fmt(result['kl'])} -> expected tokens/step "
            + " ".join(f"{k}={v:.3f}" for k, v in result["expected_tokens_per_step"].items())
            + f" ({time.time() - t0:.1f} s)")

    if state["step"] == 0:
        run_eval()  # the heads as initialised: the baseline the training has to beat
    tokens_per_step = args.batch * args.seq * args.grad_accum
    run = {"start_step": state["step"], "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu"}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t_run = t_mark = time.time()
    busy = busy_mark = 0.0  # seconds of evals and checkpoints, left out of tokens/s
    step_mark, acc = state["step"], torch.zeros(model.a.mtp_num_heads - 1, 3, device=device)
    model.train()
    while True:
        progress, lr = schedule(args, state, time.time() - t_run)
        if progress >= 1.0 or not (args.steps or args.tokens or args.max_seconds):
            break
        if args.run_steps and state["step"] - run["start_step"] >= args.run_steps:
            break
        for g in optimizer.param_groups:
            g["lr"] = lr
        for _ in range(args.grad_accum):
            ids = stream.batch(args.batch)
            acc += distill_step(model, ids.to(device, non_blocking=True), args, device, 1.0 / args.grad_accum)
        torch.nn.utils.clip_grad_norm_(model.mtp_heads.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        state["step"] += 1
        state["optimizer_step"] += 1
        state["tokens"] += tokens_per_step
        last = schedule(args, state, time.time() - t_run)[0] >= 1.0 or (
            args.run_steps and state["step"] - run["start_step"] >= args.run_steps)
        if state["step"] % args.log_every == 0 or last:
            totals = acc.cpu()
            sync(device)
            now = time.time()
            rate = (state["step"] - step_mark) * tokens_per_step / (now - t_mark - (busy - busy_mark))
            state["train_seconds"] += now - t_mark - (busy - busy_mark)
            kl, agree = (totals[:, 0] / totals[:, 2]).tolist(), (totals[:, 1] / totals[:, 2]).tolist()
            state["history"].append({"step": state["step"], "tokens": state["tokens"], "lr": lr, "kl": kl,
                                     "agreement": agree, "tokens_per_second": rate})
            left = (now - t_run) / max(progress, 1e-9) * (1 - progress) if progress > 0 else float("nan")
            log(f"step {state['step']} {bar(progress)} {state['tokens'] / 1e6:.1f}M tok {rate / 1e3:.1f}k tok/s "
                f"lr {lr:.2e} | kl {fmt(kl)} | agree {fmt(agree)} | eta {left:.0f} s")
            t_mark, step_mark, busy_mark = now, state["step"], busy
            acc.zero_()
        t_busy = time.time()
        if args.eval_every and state["step"] % args.eval_every == 0 and not last:
            run_eval()
        if state["step"] % args.save_every == 0 and not last:
            save_run(args, model, optimizer, stream, state)
        busy += time.time() - t_busy
    run.update(end_step=state["step"], seconds=round(time.time() - t_run - busy, 1))
    run_eval()
    if device.type == "cuda":
        run["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    if state["step"] > run["start_step"]:
        run["tokens_per_second"] = round((state["step"] - run["start_step"]) * tokens_per_step / run["seconds"], 1)
    state["runs"].append(run)
    log(f"run: {json.dumps(run)}")
    save_run(args, model, optimizer, stream, state)
    if args.export:
        export_model(args, model, config, stored, state, log)


if __name__ == "__main__":
    main()
