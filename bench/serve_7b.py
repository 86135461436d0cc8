#!/usr/bin/env python3
"""The served system at the 7B shape: `xlserve serve` on a random-weight xLSTM-7b checkpoint
written by transformers, driven by `xlserve loadtest`, with the state cache on (defaults) and
off in one run, beside the engine's own figures (`xlserve bench --shape 7b`).

Run on the GPU machine from the repository root, with the bundle unpacked (scripts/bundle.sh):
    python3 bench/serve_7b.py --xlserve dist/bin/xlserve --work /tmp/serve7b --json serve7b.json
Prints one table; --json keeps every loadtest result and the servers' state-store metrics.
--precision exact|bf16|auto is the servers' (and picks the engine rows); --scenarios c32,c64
runs only those; --cache on skips the cache-off server.
Scenarios (token-id prompts, greedy, bf16 state, --max-num-seqs 64):
  c1        concurrency 1, 128 prompt + 128 output tokens: TTFT, time per output token
  c32, c64  concurrency 32 / 64, 128 + 128: output tok/s, TTFT, inter-token latency; a warm-up
            round, then --rounds requests per client
  long      31 streams decoding 128 + 256 while 2,048-token prompts arrive: their ITL p99,
            against the same streams alone
  shared    concurrency 2, 24 prompts sharing a 2,048-token prefix (+32 each): TTFT of the hits
  distinct  concurrency 2, 24 distinct 2,080-token prompts: TTFT
  session   a 10-turn session (64 new tokens a turn, 32 out): TTFT of the resumed turns
  sessions  2,000 distinct sessions: store bytes per tier stay within the configured bounds
"""
import argparse
import json
import os
import random
import shlex
import subprocess
import sys
import time

from served import Server, engine_share

VOCAB = 50304  # xLSTM-7b; --model takes the vocabulary from its config.json


def write_checkpoint(path):
    if os.path.exists(os.path.join(path, "config.json")):
        return
    import torch
    from transformers import xLSTMConfig, xLSTMForCausalLM
    start = time.time()
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = xLSTMForCausalLM(xLSTMConfig()).to(torch.bfloat16)
    model.save_pretrained(path)
    del model
    torch.cuda.empty_cache()
    print(f"checkpoint: random xLSTM-7b written to {path} in {time.time() - start:.0f} s", flush=True)


def ids(rng, n):
    return [rng.randrange(1, VOCAB) for _ in range(n)]


def write_datasets(work):
    rng = random.Random(7)
    sets = {}
    prefix = ids(rng, 2048)
    sets["shared"] = [{"prompt": prefix + ids(rng, 32), "max_tokens": 16} for _ in range(24)]
    sets["distinct"] = [{"prompt": ids(rng, 2080), "max_tokens": 16} for _ in range(24)]
    sets["session"] = [{"prompt": ids(rng, 64), "max_tokens": 32, "session_id": "bench-chat"} for _ in range(10)]
    sets["sessions"] = [{"prompt": ids(rng, 32), "max_tokens": 2, "session_id": f"bench-{i}"} for i in range(2000)]
    paths = {}
    for name, lines in sets.items():
        paths[name] = os.path.join(work, f"{name}.jsonl")
        with open(paths[name], "w") as f:
            for line in lines:
                f.write(json.dumps(line) + "\n")
    return paths


def start_server(xl, model, extra, log):
    args = [xl, "serve", "--model", model, "--device", DEVICE, "--max-num-seqs", "64",
            "--max-queue", "4096", "--port", "0", "--metrics-port", "0", "--precision", PRECISION] + extra
    if DEVICE == "cuda":
        args += ["--state-dtype", "bf16"]
    return Server(args, log)


def loadtest(xl, server, out, *args, background=False):
    cmd = [xl, "loadtest", "--grpc", f"127.0.0.1:{server.port}", "--token-ids", "--vocab-size", str(VOCAB),
           "--request-timeout-s", "300", "--json", out] + [str(a) for a in args]
    if background:
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=900)
    with open(out) as f:
        return json.load(f)


def run_mode(xl, model, work, name, extra, data):
    print(f"== cache {name}: starting the server", flush=True)
    started = time.time()
    server = start_server(xl, model, extra, os.path.join(work, f"serve-{name}.log"))
    res = {"startup_s": time.time() - started}
    p = lambda s: os.path.join(work, f"{name}-{s}.json")
    try:
        common = ["--prompt-tokens", PROMPT_TOKENS, "--max-tokens", OUTPUT_TOKENS]
        # A seed per run: no run's prompts repeat another's (the cache would serve them).
        if "c1" in SCENARIOS:
            res["c1"] = loadtest(xl, server, p("c1"), "--concurrency", 1, "--num-requests", 12, "--warmup", 2,
                                 "--seed", 1, *common)
        for c, seed in (("c32", 2), ("c64", 3)):
            if c in SCENARIOS:
                # A first round per client unmeasured, then ROUNDS measured: the window runs from the
                # first measured send to the last end, so its ramp and drain weigh 1 / ROUNDS.
                clients = int(c[1:])
                before = server.metrics()
                res[c] = loadtest(xl, server, p(c), "--concurrency", clients, "--num-requests",
                                  clients * (ROUNDS + 1), "--warmup", clients, "--seed", seed, *common)
                res[c]["engine"] = engine_share(before, server.metrics())
        if "long" in SCENARIOS:
            streams = ["--concurrency", 31, "--num-requests", 62, "--warmup", 0, "--prompt-tokens", 128,
                       "--max-tokens", 256]
            res["long_base"] = loadtest(xl, server, p("long-base"), *streams, "--seed", 4)
            bg = loadtest(xl, server, p("long-mixed"), *streams, "--seed", 5, background=True)
            time.sleep(1.0)
            loadtest(xl, server, p("long-prompts"), "--concurrency", 1, "--num-requests", 6, "--prompt-tokens", 2048,
                     "--max-tokens", 4, "--seed", 6)
            bg.wait(timeout=600)
            with open(p("long-mixed")) as f:
                res["long_mixed"] = json.load(f)
        for scenario, concurrency, count, warmup in (("shared", 2, 24, 2), ("distinct", 2, 24, 2),
                                                      ("session", 1, 10, 1), ("sessions", 64, 2000, 0)):
            if scenario in SCENARIOS:
                res[scenario] = loadtest(xl, server, p(scenario), "--dataset", data[scenario], "--concurrency",
                                         concurrency, "--num-requests", count, "--warmup", warmup)
        res["metrics"] = {k: v for k, v in server.metrics().items() if "state_store" in k or "prefix" in k
                          or "session" in k or "engine_" in k or k.startswith("xlserve_prefill") or "graph" in k}
        res["rss_gib"] = server.rss_gib()
    finally:
        server.stop()
    with open(os.path.join(work, f"serve-{name}.log")) as f:
        res["startup_log"] = [l.strip() for l in f if "start-up" in l or "warm-up" in l]
    return res


def table(engine, on, off):
    rows = []

    def add(name, key, fn, fmt, target=""):
        if key not in on:
            return
        a, b = fn(on[key]), fn(off[key]) if off else None
        rows.append((name, fmt.format(a), fmt.format(b) if off else "-", f"{a / b:.2f}" if b else "-", target))

    add("c1 TTFT p50 ms", "c1", lambda r: r["ttft_ms"]["p50"], "{:.1f}", "on <= 1.1 x off; <= 1.3 x bench TTFT(128)")
    add("c1 TPOT p50 ms", "c1", lambda r: r["tpot_ms"]["p50"], "{:.2f}", "within 5% of bench step B=1")
    for c in ("c32", "c64"):
        add(f"{c} output tok/s", c, lambda r: r["throughput"]["output_tokens_per_s"], "{:.0f}",
            "on >= 0.95 x off; >= 0.85 x bench")
        add(f"{c} output tok/s, all users busy", c,
            lambda r: r["throughput"].get("steady_output_tokens_per_s") or 0, "{:.0f}",
            "the run less its ramp and drain (loadtest's steady window)")
        add(f"{c} TTFT p50 ms", c, lambda r: r["ttft_ms"]["p50"], "{:.1f}", "on <= 1.1 x off")
        add(f"{c} ITL p50 ms", c, lambda r: r["itl_ms"]["p50"], "{:.2f}")
        add(f"{c} ITL p99 ms", c, lambda r: r["itl_ms"]["p99"], "{:.2f}", "<= 2 x p50")
        add(f"{c} engine: mean pass ms", c, lambda r: r["engine"].get("pass_ms", 0), "{:.2f}",
            f"warm-up round included; {ROUNDS} rounds measured")
        add(f"{c} engine: host ms per pass", c, lambda r: r["engine"].get("host_ms", 0), "{:.3f}",
            "engine thread outside the pass")
    add("31 streams alone: ITL p99 ms", "long_base", lambda r: r["itl_ms"]["p99"], "{:.2f}")
    add("31 streams + 2,048-token prompts: ITL p99 ms", "long_mixed", lambda r: r["itl_ms"]["p99"], "{:.2f}",
        "<= 2 x alone")
    add("shared 2,048 prefix: TTFT p50 ms (hits)", "shared", lambda r: r["ttft_ms"]["p50"], "{:.1f}", "on <= 25")
    add("distinct 2,080: TTFT p50 ms", "distinct", lambda r: r["ttft_ms"]["p50"], "{:.1f}", "on <= 1.1 x off")
    add("session turns 2-10: TTFT max ms", "session", lambda r: r["ttft_ms"]["max"], "{:.1f}", "on <= 25")
    add("2,000 sessions: output tok/s", "sessions", lambda r: r["throughput"]["output_tokens_per_s"], "{:.0f}")
    out = [f"{'scenario':46s} {'cache on':>10s} {'cache off':>10s} {'on/off':>7s}  target"]
    out += [f"{n:46s} {a:>10s} {b:>10s} {r:>7s}  {t}" for n, a, b, r, t in rows]
    m = on["metrics"]
    out.append("")
    out.append("server metrics (cache on), after all scenarios:")
    for k in sorted(m):
        out.append(f"  {k} = {m[k]:.6g}")
    out.append(f"  server RSS {on['rss_gib']:.2f} GiB" + (f" (cache off: {off['rss_gib']:.2f} GiB)" if off else ""))
    for name, res in (("on", on), ("off", off)) if off else (("on", on),):
        out.append(f"start-up, cache {name} ({res['startup_s']:.1f} s to listening):")
        out += [f"  {l}" for l in res["startup_log"]]
    if engine:
        out.append("engine alone (xlserve bench --shape 7b, same run):")
        out += served_limits(engine)
        for r in engine["rows"]:
            if PRECISION != "auto" and r.get("precision", PRECISION) != PRECISION:
                continue
            if r["kind"] == "decode" and r["state_dtype"] == "bf16":
                out.append(f"  decode {r.get('precision', '')} B={r['batch']}: {r['step_ms']:.2f} ms/step, "
                           f"{0.85 * r['batch'] / r['step_ms'] * 1e3:.0f} tok/s is 0.85 of it")
            if r["kind"] == "prefill":
                out.append(f"  {r.get('precision', '')} TTFT({r['prompt_tokens']}): {r['ttft_ms']:.1f} ms")
            if r["kind"] == "mixed":
                prompts = r.get("prompts", 1)
                out.append(f"  mixed B={r['batch']} ({r['batch'] - prompts} decode rows + {prompts} x {r['chunk']} "
                           f"prompt tokens): {r['step_ms']:.2f} ms, {r['cost_ratio']:.2f} x a plain step")
    return "\n".join(out)


def served_limits(engine):
    """c32 and c64 beside two ceilings, from the engine's rows of the same run. Each request brings
    one prompt every OUTPUT_TOKENS steps of its stream, so a fraction p = C / OUTPUT_TOKENS of the
    passes carries a prompt.
    - Physical bound: a pass takes the longer of its HBM floor (weights and states) and its GEMMs'
      rows at the measured tensor-core rate; memory and tensor cores work at once.
    - The engine's own passes: the bench's plain step and its step with one prompt beside C - 1
      decode rows, mixed as p says, with one pass a request in which a closed-loop client's stream
      is away (its next request arrives while a pass runs)."""
    rows = [r for r in engine["rows"] if PRECISION == "auto" or r.get("precision", PRECISION) == PRECISION]
    roofline = {r.get("precision"): r["roofline_ms"] for r in rows
                if r["kind"] == "prefill" and r["prompt_tokens"] == PROMPT_TOKENS}
    mixed = {(r.get("precision"), r["batch"]): r["step_ms"] for r in rows
             if r["kind"] == "mixed" and r.get("prompts", 1) == 1 and r["chunk"] == PROMPT_TOKENS}
    out = []
    for r in rows:
        prec, batch = r.get("precision"), r["batch"] if r["kind"] == "decode" else 0
        if r["kind"] != "decode" or r["state_dtype"] != "bf16" or batch not in (32, 64) or prec not in roofline:
            continue
        p = batch / OUTPUT_TOKENS
        gemm_ms = lambda rows_: rows_ / PROMPT_TOKENS * roofline[prec]
        bound_ms = (1 - p) * max(r["floor_ms"], gemm_ms(batch)) + p * max(r["floor_ms"],
                                                                        gemm_ms(batch - 1 + PROMPT_TOKENS))
        bound = batch / bound_ms * 1e3
        target = 0.85 * batch / r["step_ms"] * 1e3
        mixed_rows = batch - 1 + PROMPT_TOKENS
        line = (f"  c{batch} {prec}: physical bound {bound:.0f} tok/s (a pass {bound_ms:.2f} ms: HBM floor "
                f"{r['floor_ms']:.2f} ms; {mixed_rows} rows' GEMMs {gemm_ms(mixed_rows):.2f} ms at the tensor-core "
                f"rate)")
        if (prec, batch) in mixed:
            pass_ms = (1 - p) * r["step_ms"] + p * mixed[(prec, batch)]
            engine_rate = batch / pass_ms * 1e3 * OUTPUT_TOKENS / (OUTPUT_TOKENS + 1)
            line += (f"; the engine's passes give {engine_rate:.0f} tok/s ({r['step_ms']:.2f} ms plain, "
                     f"{mixed[(prec, batch)]:.2f} ms with a prompt in {p:.2f} of them, one pass a request away); "
                     f"the target {target:.0f} is {target / engine_rate:.2f} of that")
        out.append(line + f", {target / bound:.2f} of the bound")
    return out


DEVICE = "cuda"
PRECISION = "auto"
PROMPT_TOKENS = OUTPUT_TOKENS = 128  # c1, c32, c64
ROUNDS = 16
SCENARIOS = {"c1", "c32", "c64", "long", "shared", "distinct", "session", "sessions"}


def main():
    global VOCAB, DEVICE, PRECISION, SCENARIOS, ROUNDS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--xlserve", default="dist/bin/xlserve")
    ap.add_argument("--work", default="/tmp/serve7b")
    ap.add_argument("--json", default="")
    ap.add_argument("--no-bench", action="store_true", help="skip the engine's own figures")
    ap.add_argument("--model", default="", help="serve this checkpoint instead of writing the random 7B one")
    ap.add_argument("--device", default="cuda", help="cpu: a smoke run of this script on a small --model")
    ap.add_argument("--session-test", default="",
                    help="tests/gpu:cuda_session_test binary: also check resumed turns' logits on the 7B checkpoint")
    ap.add_argument("--precision", default="auto", choices=["auto", "exact", "bf16"], help="the servers' precision")
    ap.add_argument("--scenarios", default=",".join(sorted(SCENARIOS)), help="comma-separated subset to run")
    ap.add_argument("--rounds", type=int, default=ROUNDS,
                    help="c32, c64: measured requests per client after a warm-up round (ramp and drain weigh 1 / rounds)")
    ap.add_argument("--cache", default="both", choices=["both", "on"], help="serve with the state cache off too")
    ap.add_argument("--server-args", default="",
                    help="more `xlserve serve` flags for every server, e.g. \"--prefill-chunk-while-decoding 128\"")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    DEVICE = args.device
    PRECISION = args.precision
    SCENARIOS = set(args.scenarios.split(","))
    ROUNDS = args.rounds
    model = args.model or os.path.join(args.work, "xlstm-7b-random")
    if not args.model:
        write_checkpoint(model)
    with open(os.path.join(model, "config.json")) as f:
        VOCAB = json.load(f)["vocab_size"]
    data = write_datasets(args.work)
    session_check = ""
    if args.session_test:
        check = subprocess.run([args.session_test, "[.7b]"], env=dict(os.environ, XLSERVE_7B_MODEL=model),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900)
        session_check = "\n".join(l for l in check.stdout.splitlines() if "7B" in l or "passed" in l or "FAILED" in l)
    engine = None
    if not args.no_bench:
        bench_json = os.path.join(args.work, "bench.json")
        bench = subprocess.run([args.xlserve, "bench", "--shape", "7b", "--batch-sizes", "1,32,64", "--json", bench_json],
                               check=True, stdout=subprocess.PIPE, text=True, timeout=900)
        with open(os.path.join(args.work, "bench.txt"), "w") as f:
            f.write(bench.stdout)
        with open(bench_json) as f:
            engine = json.load(f)
    extra = shlex.split(args.server_args)
    on = run_mode(args.xlserve, model, args.work, "on", extra, data)
    off = None
    if args.cache == "both":
        off = run_mode(args.xlserve, model, args.work, "off",
                       extra + ["--state-cache-gpu-mb", "0", "--state-cache-host-mb", "0", "--max-sessions", "0"],
                       data)
    text = table(engine, on, off) + ("\nsession logits check (7B): " + session_check if session_check else "")
    print(text, flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"engine": engine, "cache_on": on, "cache_off": off, "table": text}, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
