#!/usr/bin/env python3
r"""NX-AI's own xLSTM-7B inference path (the `xlstm` package's xlstm_large model with the
`mlstm_kernels` Triton kernels) on the shapes `xlserve bench --shape 7b` measures: TTFT at
batch 1 and the greedy decode step at each batch size, bf16 weights and bf16 state.

A decode step is one replay of a CUDA graph holding the model's forward on one token per
sequence and the argmax of its logits (fed back as the next input), then the tokens copied to
the host. TTFT is the model's forward over the prompt at batch 1 from an empty state, as the
package's generate() runs it (lm_head on every prompt row), and the last row's argmax on the host.

The GPU machine has torch and triton but no network, so the wheels travel with the tree
(`.whl/` is git-ignored: carry it):
    bash bench/fetch_nxai_wheels.sh                # here, with PyPI reachable: fills .whl/
    pip install --no-index --no-deps .whl/*.whl    # there, or: pip install --no-index --no-deps
    python3 bench/nxai_peer.py --json nxai.json    #   --target .nxai .whl/*.whl; PYTHONPATH=.nxai
Run it in the same session as the bench, then `xlserve bench --shape 7b --peer nxai.json` prints
its figures beside xlserve's. The chunkwise kernel is
first tried on one block in a child process; where it cannot run (a Triton compile that aborts),
the measurement uses chunkwise--native_autograd and says so. Weights are random (the
speed does not depend on them); nothing is downloaded at run time.
Checking the logic on a CPU, with the torch-native kernels (no graph capture there):
    python3 bench/nxai_peer.py --tiny --device cpu --steps 2 --step-kernel native \
        --chunkwise-kernel chunkwise--native_autograd --sequence-kernel native_sequence__native
"""
import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import torch

try:
    from xlstm.xlstm_large import xLSTMLarge, xLSTMLargeConfig
except ImportError as e:
    raise SystemExit(f"{e}: install the wheels bench/fetch_nxai_wheels.sh fetches (its --help says how)")


def model_config(args):
    # The 7b shape of bench/hf_reference.py; --tiny keeps the structure at a size a CPU runs;
    # --probe keeps the head sizes (what the kernels are compiled for) with one block.
    if args.tiny:
        shape = dict(embedding_dim=512, num_heads=4, num_blocks=2, vocab_size=1024)
    else:
        shape = dict(embedding_dim=4096, num_heads=8, num_blocks=32, vocab_size=50304)
    if args.probe:
        shape.update(num_blocks=1, vocab_size=1024)
    return xLSTMLargeConfig(
        **shape, qk_dim_factor=0.5, v_dim_factor=1.0, ffn_proj_factor=2.667,
        ffn_round_up_to_multiple_of=64, gate_soft_cap=15.0, output_logit_soft_cap=30.0,
        use_bias=False, weight_mode=args.weight_mode,
        # "inference" runs the chunkwise kernel on a prompt and the step kernel on one token, and
        # always hands the state back; return_last_states makes forward() return it too.
        mode="inference", return_last_states=True,
        chunkwise_kernel=args.chunkwise_kernel, sequence_kernel=args.sequence_kernel,
        step_kernel=args.step_kernel, chunk_size=args.chunk_size,
        autocast_kernel_dtype="bfloat16", inference_state_dtype="bfloat16")


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, repeats, device):
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync(device)
    return (time.perf_counter() - start) / repeats * 1e3


def bf16_state(state):
    # The Triton chunkwise kernels hand back fp32 state whatever inference_state_dtype says, and
    # the model copies each new state into the tensors it was given: make those bf16, or every
    # decode step would read and write fp32 state.
    return {block: tuple(t.to(torch.bfloat16).contiguous() for t in s) for block, s in state.items()}


def decode_runner(model, batch, vocab, device):
    """A function making one greedy decode step of `batch` sequences that leaves their next
    tokens on the host, and whether that step replays a CUDA graph."""
    _, state = model(torch.randint(3, vocab, (batch, 16), device=device))
    state = bf16_state(state)
    token = torch.randint(3, vocab, (batch, 1), device=device)
    host = torch.empty(token.shape, dtype=token.dtype, pin_memory=device.type == "cuda")

    def step():
        logits, _ = model(token, state)  # writes the new state into `state` in place
        token.copy_(logits[:, -1:].argmax(-1))

    replay = step
    if device.type == "cuda":
        # Triton compiles and cuBLAS sets up its workspaces on the first calls, which must not
        # happen during capture; torch wants these warm-up calls off the default stream.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                step()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            step()
        replay = graph.replay

    def run():
        replay()
        host.copy_(token, non_blocking=True)
        sync(device)  # the host needs the tokens before it can schedule the next step

    return run, replay is not step


NATIVE_CHUNKWISE = "chunkwise--native_autograd"


def chunkwise_failure(args):
    """Why the chunkwise kernel cannot run a prompt here, or None when it can. Tried in a child
    process: a Triton compile may abort the interpreter (an LLVM assertion was seen on an H200
    machine) instead of raising."""
    cmd = [sys.executable, os.path.abspath(__file__), "--probe", "--device", args.device,
           "--chunkwise-kernel", args.chunkwise_kernel, "--step-kernel", args.step_kernel,
           "--chunk-size", str(args.chunk_size), "--weight-mode", args.weight_mode] + (["--tiny"] if args.tiny else [])
    try:
        r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        return "no result in 900 s"
    if r.returncode == 0:
        return None
    how = f"killed by {signal.Signals(-r.returncode).name}" if r.returncode < 0 else f"exit status {r.returncode}"
    last = (r.stderr.strip().splitlines() or [""])[-1]
    return f"{how}{': ' + last[:200] if last else ''}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.splitlines()[4:]))
    ap.add_argument("--batch-sizes", default="1,8,32,64,128")
    ap.add_argument("--prompts", default="128,512,2048")
    ap.add_argument("--steps", type=int, default=20, help="timed decode steps per batch size")
    ap.add_argument("--json", default="")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="2 blocks of width 512, vocab 1024")
    ap.add_argument("--chunkwise-kernel", default="chunkwise--triton_xl_chunk")
    ap.add_argument("--sequence-kernel", default="native_sequence__triton",
                    help="unused by mode 'inference' (it pads prompts to chunks), kept for the config")
    ap.add_argument("--step-kernel", default="triton")
    ap.add_argument("--chunk-size", type=int, default=128,
                    help="the xl_chunk kernel's default; prompts are padded to a multiple of it")
    ap.add_argument("--weight-mode", default="single", choices=["single", "fused"],
                    help="'single' as checkpoints load; 'fused' concatenates q,k,v,o and the gates")
    ap.add_argument("--probe", action="store_true",
                    help="only run two chunks of a prompt through one block of the shape, and exit 0 if it works "
                         "(the check run before measuring, in a child process)")
    args = ap.parse_args()
    if not args.probe and args.chunkwise_kernel != NATIVE_CHUNKWISE:
        failure = chunkwise_failure(args)
        if failure:
            print(f"chunkwise kernel {args.chunkwise_kernel} fails here ({failure}); "
                  f"measuring with {NATIVE_CHUNKWISE} instead", flush=True)
            args.chunkwise_kernel = NATIVE_CHUNKWISE

    device = torch.device(args.device)
    torch.manual_seed(0)
    # Parameters are made in bf16 directly, and on the GPU where they live: no fp32 or host copy
    # of 7B weights first.
    torch.set_default_dtype(torch.bfloat16)
    cfg = model_config(args)
    with torch.device(device) if device.type == "cuda" else contextlib.nullcontext():
        model = xLSTMLarge(cfg)
    model = model.to(device).eval()
    if args.probe:
        with torch.inference_mode():
            model(torch.randint(3, cfg.vocab_size, (1, 2 * cfg.chunk_size), device=device))
        sync(device)
        return
    rows = []
    graphs = False
    print(f"NX-AI xlstm_large, {'tiny' if args.tiny else '7b'} shape, bf16 weights and state, "
          f"{sum(p.numel() for p in model.parameters()) / 1e9:.2f} B params, kernels: chunkwise "
          f"{cfg.chunkwise_kernel}, step {cfg.step_kernel}, chunk {cfg.chunk_size}, weights {cfg.weight_mode}")
    with torch.inference_mode():
        print(f"{'prompt':>8} {'TTFT ms':>10}")
        for length in [int(x) for x in args.prompts.split(",")]:
            ids = torch.randint(3, cfg.vocab_size, (1, length), device=device)
            first_token = lambda: model(ids)[0][:, -1].argmax(-1).cpu()  # .cpu() waits for it
            first_token()  # warm-up: Triton compiles per prompt length
            ms = timed(first_token, 2, device)
            print(f"{length:>8} {ms:>10.1f}")
            rows.append({"kind": "prefill", "prompt_tokens": length, "ttft_ms": ms})
        print(f"{'batch':>6} {'step ms':>9} {'tok/s':>9}")
        for batch in [int(x) for x in args.batch_sizes.split(",")]:
            run, graphs = decode_runner(model, batch, cfg.vocab_size, device)
            run()
            ms = timed(run, args.steps, device)
            print(f"{batch:>6} {ms:>9.2f} {batch / ms * 1e3:>9.0f}")
            rows.append({"kind": "decode", "batch": batch, "step_ms": ms, "tokens_per_s": batch / ms * 1e3})
            del run
            if device.type == "cuda":
                torch.cuda.empty_cache()
    print("decode steps replayed a CUDA graph" if graphs else
          f"decode steps ran eagerly: no CUDA graph capture on device '{device.type}'")
    if args.json:
        impl = f"NX-AI xlstm_large + mlstm_kernels ({cfg.chunkwise_kernel}, step {cfg.step_kernel})"
        with open(args.json, "w") as f:
            json.dump({"impl": impl, "state_dtype": "bf16", "cuda_graph": graphs, "tiny": args.tiny,
                       "weight_mode": cfg.weight_mode, "chunk_size": cfg.chunk_size, "rows": rows},
                      f, indent=2)


if __name__ == "__main__":
    main()
