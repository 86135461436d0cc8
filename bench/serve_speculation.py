#!/usr/bin/env python3
"""Self-speculation through the server: `xlserve serve` with `--speculation off`, `auto` and
`on` in turn, each driven by `xlserve loadtest` at several concurrencies with the same greedy
prompts of held-out code, and output tokens/s of each mode against `off` (#16 item 5).

Run from the repository root with the binary built (or the GPU bundle unpacked):
    python3 bench/serve_speculation.py --xlserve dist/bin/xlserve --prompts-from DIR
DIR holds source files the model never saw (e.g. an installed package such as networkx);
prompts are ~--prompt-chars characters from the middle of each, whole lines, as the bench's.
Prints one table per run (tokens a streamed chunk: a speculative step's tokens come as one
chunk, the server's counterpart of the bench's tokens a step) and, with --runs above 1, each
mode's median ratio to `off` over the runs; --json keeps every loadtest result.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

from served import Server, engine_share


def write_prompts(src_dir, path, count, chars, max_tokens):
    """~chars characters from the middle of each .py file, whole lines, files in sorted order: the
    texts `xlserve bench --speculative --prompts-from` takes (its prompts are the middle tokens),
    so that the server's figures and the bench's measure the same kind of text. A file's head
    (licence, docstring, imports) drafts differently from its code."""
    files = []
    for root, _, names in os.walk(src_dir):
        files += [os.path.join(root, n) for n in sorted(names) if n.endswith(".py")]
    files.sort()
    prompts = []
    for f in files:
        with open(f, errors="replace") as fh:
            text = fh.read()
        if len(text) < 2 * chars:
            continue
        start = text.find("\n", len(text) // 2 - chars // 2) + 1
        cut = text.rfind("\n", start, start + chars)
        prompts.append(text[start: cut if cut > start + chars // 2 else start + chars])
        if len(prompts) == count:
            break
    if not prompts:
        raise SystemExit(f"no .py file of at least {2 * chars} characters under {src_dir}")
    with open(path, "w") as out:
        for p in prompts:
            out.write(json.dumps({"prompt": p, "max_tokens": max_tokens}) + "\n")
    return len(prompts)


def speculation_share(before, after):
    """The engine's side of one loadtest (its warm-up requests included), from the server's
    counters: served.engine_share's passes, mean pass and host work per pass, then drafts per
    pass, the share of drafts kept, and the decode steps of mixed shapes (no graph replays them).
    Where `auto` trails `off`, these say whether it ran more passes, dearer passes or more host
    work."""
    share = engine_share(before, after)
    drafted, kept, mixed = (after.get(k, 0) - before.get(k, 0) for k in (
        "xlserve_drafted_tokens_total", "xlserve_accepted_drafts_total", "xlserve_mixed_decode_steps_total"))
    passes = share["passes"]
    return {"pass_ms": 0.0, "host_ms": 0.0, **share, "drafts_per_pass": drafted / passes if passes else 0.0,
            "kept": kept / drafted if drafted else 0.0, "mixed": int(mixed)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--xlserve", default="dist/bin/xlserve")
    ap.add_argument("--model", default="models/xlstm-code-mtp", help="model directory with MTP heads")
    ap.add_argument("--prompts-from", required=True, help="directory of held-out .py files")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--modes", default="off,auto,on", help="comma-separated speculation modes; off first")
    ap.add_argument("--concurrency", default="1,8,32", help="comma-separated closed-loop concurrencies")
    ap.add_argument("--requests-per-user", type=int, default=4, help="measured requests per concurrent user")
    ap.add_argument("--prompt-chars", type=int, default=600)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--work", default="", help="folder for prompts and logs (default: a temporary one)")
    ap.add_argument("--runs", type=int, default=1, help="rounds of every mode, taking turns; the summary takes medians")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs: at least 1")

    modes = args.modes.split(",")
    levels = [int(c) for c in args.concurrency.split(",")]
    work = args.work or tempfile.mkdtemp(prefix="serve-spec-")
    os.makedirs(work, exist_ok=True)
    dataset = os.path.join(work, "prompts.jsonl")
    count = write_prompts(args.prompts_from, dataset, 256, args.prompt_chars, args.max_tokens)
    print(f"{count} held-out prompts from {args.prompts_from}", flush=True)

    results, builds, engine = {}, {}, {}
    # Runs take the modes in turn, each with a server of its own: two servers of one binary
    # differ by more than a mode may gain (the shipped model, H100, concurrency 32: `off` made
    # 150-184 k tok/s across calls), so a verdict wants the median over runs.
    for run in range(args.runs):
        for mode in modes:
            tag = f"{mode}-r{run + 1}" if args.runs > 1 else mode
            server = Server([args.xlserve, "serve", "--model", args.model, "--device", args.device, "--speculation",
                             mode, "--max-num-seqs", str(max(levels)), "--port", "0", "--metrics-port", "0"],
                            os.path.join(work, f"{tag}.log"))
            try:
                for c in levels:
                    out = os.path.join(work, f"{tag}-c{c}.json")
                    before = server.metrics()
                    cmd = [args.xlserve, "loadtest", "--grpc", f"127.0.0.1:{server.port}", "--dataset", dataset,
                           "--concurrency", str(c), "--num-requests", str(c * args.requests_per_user),
                           "--warmup", str(c), "--temperature", "0", "--request-timeout-s", "300", "--json", out]
                    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=900)
                    with open(out) as f:
                        results[(run, mode, c)] = json.load(f)
                    engine[(run, mode, c)] = speculation_share(before, server.metrics())
                    r = results[(run, mode, c)]
                    print(f"  run {run + 1}, {mode} c{c}: {r['throughput']['output_tokens_per_s']:.0f} tok/s", flush=True)
                # Graphs built inside live steps are one-time work warm-up should have done.
                builds[(run, mode)] = server.metrics().get("xlserve_live_graph_builds_total", 0)
            finally:
                server.stop()

    base = modes[0]
    lines = []
    for run in range(args.runs):
        if args.runs > 1:
            lines.append(f"run {run + 1} of {args.runs}")
        lines += run_table(run, modes, levels, results, engine, builds)
    lines.append("passes, pass ms, host ms, drafts/pass, kept, mixed: the engine's counters over each loadtest, its "
                 "warm-up requests included (host ms: the engine thread's work per pass outside it; mixed: decode "
                 "steps whose sequences differ in shape, which run eagerly)")
    if args.runs > 1:
        lines.append(f"over the {args.runs} runs: output tok/s against {base} of the same run, median [range]")
        lines.append(f"{'concurrency':>11s} {'mode':>5s} {'median':>8s} {'range':>13s}")
        for c in levels:
            for mode in modes[1:]:
                ratios = sorted(results[(run, mode, c)]["throughput"]["output_tokens_per_s"] /
                                results[(run, base, c)]["throughput"]["output_tokens_per_s"] for run in range(args.runs))
                lines.append(f"{c:>11d} {mode:>5s} {statistics.median(ratios):>7.2f}x "
                             f"{ratios[0]:>6.2f}-{ratios[-1]:.2f}x")
    print("\n".join(lines), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": args.model, "device": args.device, "prompts": count,
                       "runs": [{"run": run + 1, "mode": m, "concurrency": c, "result": results[(run, m, c)],
                                 "engine": engine[(run, m, c)]} for run, m, c in results],
                       "live_graph_builds": [{"run": run + 1, "mode": m, "builds": b} for (run, m), b in builds.items()]},
                      f, indent=1)


def run_table(run, modes, levels, results, engine, builds):
    """One run's table: each mode against the first at every concurrency, with the engine's side."""
    base = modes[0]
    # steady: while every user had a request in flight (the loadtest's steady window), without the
    # ramp and drain that weigh on these short phases.
    lines = [f"{'concurrency':>11s} {'mode':>5s} {'tok/s':>9s} {'vs ' + base:>8s} {'steady':>9s} {'vs ' + base:>8s} "
             f"{'tok/chunk':>10s} {'TPOT p50 ms':>12s} {'TTFT p50 ms':>12s} {'errors':>6s} "
             f"{'passes':>7s} {'pass ms':>8s} {'host ms':>8s} {'drafts/pass':>11s} {'kept':>5s} {'mixed':>6s}"]
    steady = lambda r: r["throughput"].get("steady_output_tokens_per_s") or 0.0
    for c in levels:
        ref = results[(run, base, c)]["throughput"]["output_tokens_per_s"]
        ref_steady = steady(results[(run, base, c)])
        for mode in modes:
            r, e = results[(run, mode, c)], engine[(run, mode, c)]
            tps = r["throughput"]["output_tokens_per_s"]
            # Each request's first chunk, then one per inter-chunk gap.
            chunks = r["itl_ms"]["count"] + r["requests"]["succeeded"]
            per_chunk = r["tokens"]["output"] / chunks if chunks else 0.0
            vs_steady = f"{steady(r) / ref_steady:>7.2f}x" if ref_steady and steady(r) else f"{'-':>8s}"
            lines.append(f"{c:>11d} {mode:>5s} {tps:>9.0f} {tps / ref:>7.2f}x {steady(r):>9.0f} {vs_steady} "
                         f"{per_chunk:>10.2f} {r['tpot_ms']['p50']:>12.2f} {r['ttft_ms']['p50']:>12.1f} "
                         f"{r['requests']['failed']:>6d} {e['passes']:>7d} {e['pass_ms']:>8.3f} {e['host_ms']:>8.3f} "
                         f"{e['drafts_per_pass']:>11.2f} {e['kept']:>5.2f} {e['mixed']:>6d}")
    lines.append("graphs built inside live steps (xlserve_live_graph_builds_total): " +
                 ", ".join(f"{m} {builds[(run, m)]:.0f}" for m in modes))
    return lines


if __name__ == "__main__":
    sys.exit(main())
