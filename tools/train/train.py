#!/usr/bin/env python3
"""Trains xlserve's default model: a small xLSTM with n multi-token heads, jointly from scratch on
the multi-token objective (Gloeckle et al. 2024: shared trunk, one block per head, shared
unembedding, loss = sum of the n cross-entropies), on the Python code of the machine it runs on.

Training is budgeted in wall-clock time, so that one GPU command (10 minutes at most) holds data
preparation, training, export and evaluation, and a later command resumes from the checkpoint:

  python3 tools/train/train.py --out DIR --stop-at UNIX_TIME [--resume DIR] [--decay-seconds S]
      [--tune-seconds S] [--export-dir DIR] [--export-untuned-dir DIR]

Learning rate: linear warm-up, then constant (warmup-stable-decay), and with --decay-seconds a
linear decay to min-lr-ratio x lr over the last seconds of the main phase. --tune-seconds adds a
final head-tuning phase: trunk and head 0 frozen (the plain model and its outputs stay as they
are), heads 1..n-1 trained to reproduce head 0's distribution at their target position (the
token greedy decoding will emit there), which is what speculative acceptance rewards.
See tools/train/README.md.
"""

import argparse
import dataclasses
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import checkpoint  # noqa: E402
import corpus  # noqa: E402
import data  # noqa: E402
import export  # noqa: E402
import model as M  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="checkpoint directory written by this run")
    p.add_argument("--resume", help="checkpoint directory of an earlier run (its model shape and tokenizer win)")
    p.add_argument("--stop-at", type=float, required=True, help="unix time at which all training stops")
    p.add_argument("--decay-seconds", type=float, default=0.0)
    p.add_argument("--tune-seconds", type=float, default=0.0)
    p.add_argument("--export-dir", help="HF directory of the final model (bf16) plus tokenizer.json")
    p.add_argument("--export-untuned-dir", help="HF directory of the model before head tuning")
    p.add_argument("--max-steps", type=int, default=None, help="also stop after this many steps (tests)")
    # Model (ignored on --resume).
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--hidden", type=int, default=192)
    p.add_argument("--blocks", type=int, default=6, help="num_blocks: trunk blocks + head 0")
    p.add_argument("--mlstm-heads", type=int, default=4)
    p.add_argument("--qk-factor", type=float, default=1.0)
    p.add_argument("--ffn-factor", type=float, default=2.0)
    p.add_argument("--chunk", type=int, default=64)
    p.add_argument("--mtp", type=int, default=4, help="n: number of heads including head 0")
    # Optimisation.
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--min-lr-ratio", type=float, default=0.02)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--tune-lr", type=float, default=1e-3)
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                   help="torch.compile the main phase's loss (the short head tuning runs eagerly)")
    p.add_argument("--eager-probe-steps", type=int, default=10,
                   help="first steps of a run run eagerly and are timed, to compare with compiled steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-packages", default=",".join(corpus.DEFAULT_VAL_PACKAGES))
    p.add_argument("--val-every", type=float, default=60.0, help="seconds between validation losses")
    p.add_argument("--ckpt-every", type=float, default=150.0, help="seconds between safety checkpoints")
    p.add_argument("--log-every", type=int, default=50, help="steps between training-loss records")
    return p.parse_args(argv)


class Log:
    def __init__(self, path):
        self.f = open(path, "a")

    def __call__(self, msg):
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        print(line, flush=True)
        self.f.write(line + "\n")
        self.f.flush()


def window_sampler(tokens: torch.Tensor, length: int, batch: int, generator: torch.Generator):
    offsets = torch.arange(length, device=tokens.device)

    def sample():
        starts = torch.randint(0, tokens.numel() - length, (batch,), device=tokens.device, generator=generator)
        return tokens[starts[:, None] + offsets].long()
    return sample


def fixed_windows(tokens: torch.Tensor, length: int, count: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, tokens.numel() - length, (count,), generator=g).to(tokens.device)
    return tokens[starts[:, None] + torch.arange(length, device=tokens.device)].long()


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def autocast(device):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


@torch.no_grad()
def validation_losses(model, windows, device, batch=32) -> list[float]:
    model.eval()
    total = torch.zeros(model.a.mtp_num_heads, device=device)
    for i in range(0, windows.shape[0], batch):
        with autocast(device):
            total += model.mtp_loss(windows[i:i + batch]) * windows[i:i + batch].shape[0]
    model.train()
    return (total / windows.shape[0]).tolist()


def make_optimizer(model, lr, weight_decay, device):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.ndim == 2 and "embeddings" not in name else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), eps=1e-8, fused=device.type == "cuda")


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    log = Log(os.path.join(args.out, "train_log.txt"))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    t_script = time.time()
    log(f"device {device}, torch {torch.__version__}, {args.stop_at - t_script:.0f} s of training budget left")

    prior = None
    if args.resume:
        with open(os.path.join(args.resume, checkpoint.STATE_FILE)) as f:
            prior = json.load(f)
        margs = M.ModelArgs(**prior["model_args"])
        tokenizer_path = os.path.join(args.resume, "tokenizer.json")
        val_packages = prior["data"]["val_packages_requested"]
    else:
        margs = M.ModelArgs(vocab_size=args.vocab, hidden_size=args.hidden, num_blocks=args.blocks,
                            num_heads=args.mlstm_heads, qk_dim_factor=args.qk_factor,
                            ffn_proj_factor=args.ffn_factor, chunk_size=args.chunk, mtp_num_heads=args.mtp)
        tokenizer_path = None
        val_packages = [p for p in args.val_packages.split(",") if p]

    prepared = data.prepare(tokenizer_path, margs.vocab_size, val_packages, log=log)
    with open(os.path.join(args.out, "tokenizer.json"), "w") as f:
        f.write(prepared["tokenizer_json"])
    train_tokens = torch.from_numpy(prepared["train"].astype("int32")).to(device)
    val_tokens = torch.from_numpy(prepared["val"].astype("int32")).to(device)

    torch.manual_seed(args.seed)
    model = M.MtpXlstm(margs).to(device)
    optimizer = make_optimizer(model, args.lr, args.weight_decay, device)
    state = {"model_args": dataclasses.asdict(margs), "step": 0, "tokens": 0, "train_seconds": 0.0,
             "optimizer_step": 0, "history": [], "val_history": [], "tune_history": [], "runs": [],
             "data": {"val_packages_requested": val_packages, **prepared["info"]}}
    if args.resume:
        state = checkpoint.load(args.resume, model, optimizer)
        state["data"] = {"val_packages_requested": val_packages, **prepared["info"]}
        log(f"resumed from {args.resume} at step {state['step']} ({state['tokens']:,} tokens)")
    log(f"model: {M.count_parameters(model):,} parameters, {margs}")

    n = margs.mtp_num_heads
    length = args.seq + n
    generator = torch.Generator(device=device).manual_seed(args.seed + 1000 * len(state["runs"]))
    sample = window_sampler(train_tokens, length, args.batch, generator)
    val_windows = fixed_windows(val_tokens, length, 64, seed=1234)
    loss_fn = torch.compile(model.mtp_loss) if args.compile else model.mtp_loss
    run = {"start_step": state["step"], "batch": args.batch, "seq": args.seq, "lr": args.lr,
           "decay_seconds": args.decay_seconds, "tune_seconds": args.tune_seconds, "compile": args.compile,
           "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu"}

    def save_checkpoint():
        checkpoint.save(args.out, model, optimizer, state)

    main_end = args.stop_at - args.tune_seconds
    t_train = time.time()
    log(f"main phase: {main_end - t_train:.0f} s, decay over the last {args.decay_seconds:.0f} s")
    acc = torch.zeros(n, device=device)
    acc_steps, last_val, last_ckpt, t_mark, step_mark = 0, t_train, t_train, t_train, state["step"]
    steps_this_run = 0
    probe = max(2, args.eager_probe_steps)
    model.train()
    while time.time() < main_end and (args.max_steps is None or steps_this_run < args.max_steps):
        now = time.time()
        lr = args.lr * min(1.0, (state["step"] + 1) / args.warmup)
        if args.decay_seconds > 0 and now > main_end - args.decay_seconds:
            frac = max(0.0, (main_end - now) / args.decay_seconds)
            lr *= args.min_lr_ratio + (1 - args.min_lr_ratio) * frac
        for g in optimizer.param_groups:
            g["lr"] = lr
        # Step 0 warms up; steps 1..probe-1 time the eager loss; step `probe` compiles.
        if steps_this_run == 1:
            sync(device)
            t_probe = time.time()
        elif steps_this_run == probe:
            sync(device)
            run["eager_ms_per_step"] = round((time.time() - t_probe) / (probe - 1) * 1e3, 1)
            log(f"eager: {run['eager_ms_per_step']} ms/step")
            t_compile = time.time()
        window = sample()
        with autocast(device):
            losses = (model.mtp_loss if steps_this_run < probe else loss_fn)(window)
        optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        acc += losses.detach()
        acc_steps += 1
        if steps_this_run == probe and args.compile:
            sync(device)
            run["first_compiled_step_seconds"] = round(time.time() - t_compile, 1)
            log(f"first compiled step (compilation included): {run['first_compiled_step_seconds']} s")
        steps_this_run += 1
        state["step"] += 1
        state["optimizer_step"] += 1
        state["tokens"] += args.batch * args.seq
        if state["step"] % args.log_every == 0:
            mean = (acc / acc_steps).tolist()
            now = time.time()
            state["train_seconds"] += now - t_mark
            rate = (state["step"] - step_mark) * args.batch * args.seq / (now - t_mark)
            t_mark, step_mark = now, state["step"]
            state["history"].append({"step": state["step"], "tokens": state["tokens"], "lr": lr,
                                     "seconds": round(state["train_seconds"], 1), "loss": mean})
            acc.zero_()
            acc_steps = 0
            log(f"step {state['step']} tok {state['tokens'] / 1e6:.0f}M lr {lr:.2e} "
                f"loss {' '.join(f'{x:.3f}' for x in mean)} ({rate / 1e3:.0f}k tok/s)")
            if now - last_val >= args.val_every:
                val = validation_losses(model, val_windows, device)
                state["val_history"].append({"step": state["step"], "tokens": state["tokens"], "loss": val})
                log(f"val loss {' '.join(f'{x:.3f}' for x in val)}")
                last_val = time.time()
            if now - last_ckpt >= args.ckpt_every:
                save_checkpoint()
                last_ckpt = time.time()
    state["train_seconds"] += time.time() - t_mark
    val = validation_losses(model, val_windows, device)
    state["val_history"].append({"step": state["step"], "tokens": state["tokens"], "loss": val})
    log(f"main phase done: step {state['step']}, {state['tokens']:,} tokens, val loss "
        f"{' '.join(f'{x:.3f}' for x in val)}")
    run["end_step"] = state["step"]
    run["main_seconds"] = round(time.time() - t_train, 1)

    if args.tune_seconds > 0 and n > 1:
        if args.export_untuned_dir:
            export.export(model, args.export_untuned_dir)
            with open(os.path.join(args.export_untuned_dir, "tokenizer.json"), "w") as f:
                f.write(prepared["tokenizer_json"])
        run["tune_steps"] = tune_heads(model, sample, device, args, state, log)
        run["tune_lr"] = args.tune_lr
    state["runs"].append(run)
    save_checkpoint()
    if args.export_dir:
        export.export(model, args.export_dir)
        with open(os.path.join(args.export_dir, "tokenizer.json"), "w") as f:
            f.write(prepared["tokenizer_json"])
    log(f"done in {time.time() - t_script:.0f} s")


def tune_heads(model, sample, device, args, state, log) -> int:
    """Heads 1..n-1 learn head 0's distribution at their target position; all else frozen."""
    heads = []
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("mtp_heads."))
        if p.requires_grad:
            heads.append(p)
    opt = torch.optim.AdamW(heads, lr=args.tune_lr, betas=(0.9, 0.95), weight_decay=0.0,
                            fused=device.type == "cuda")
    loss_fn = model.distill_loss
    state["tune_history"] = []  # the shipped heads come from this run's tuning alone
    t0 = time.time()
    end = args.stop_at
    steps = 0
    acc = torch.zeros(model.a.mtp_num_heads - 1, device=device)
    model.train()
    while time.time() < end and (args.max_steps is None or steps < args.max_steps):
        frac = max(0.0, (end - time.time()) / max(1e-9, end - t0))
        lr = args.tune_lr * min(1.0, (steps + 1) / 50) * frac
        for g in opt.param_groups:
            g["lr"] = lr
        with autocast(device):
            losses = loss_fn(sample())
        opt.zero_grad(set_to_none=True)
        losses.sum().backward()
        torch.nn.utils.clip_grad_norm_(heads, 1.0)
        opt.step()
        acc += losses.detach()
        steps += 1
        if steps % args.log_every == 0:
            mean = (acc / args.log_every).tolist()
            acc.zero_()
            state["tune_history"].append({"tune_step": steps, "lr": lr, "loss": mean})
            log(f"tune step {steps} lr {lr:.2e} distill loss {' '.join(f'{x:.3f}' for x in mean)}")
    for p in model.parameters():
        p.requires_grad_(True)
    log(f"head tuning: {steps} steps in {time.time() - t0:.0f} s")
    return steps


if __name__ == "__main__":
    main()
