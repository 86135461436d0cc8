"""Overload check (issue 19): the shipped model on the CPU behind the gateway, driven on
loopback by --factor times as many streaming clients as it has slots, for a bounded time.
Each client honours Retry-After on 429. Reports the answers by status (every request must get
200 or 429, no connection error), time to first token of admitted requests against the same
server unloaded, and the gateway's peak RSS. Exit 1 when a request got no HTTP answer or the
admitted p99 TTFT exceeds --max-ttft-ratio times the unloaded p99.

    python3 scripts/overload.py --xlserve bazel-bin/xlserve --slots 4 --factor 10 --duration 60
"""

import argparse
import http.client
import json
import random
import re
import subprocess
import sys
import threading
import time
from collections import Counter

PROMPT = "def fibonacci(n):\n    if n < 2:\n        return n\n    return"


def start(cmd, pattern):
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    m = re.search(pattern, proc.stdout.readline())
    if not m:
        proc.kill()
        sys.exit(f"did not start: {cmd}")
    return proc, m


def stream_once(port, max_tokens):
    """(status, ttft seconds or None, retry_after)"""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        start_time = time.time()
        conn.request("POST", "/v1/completions", body=json.dumps(
            {"prompt": PROMPT, "max_tokens": max_tokens, "ignore_eos": True, "stream": True}),
            headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            resp.read()
            return resp.status, None, float(resp.getheader("Retry-After") or 1)
        ttft = None
        for line in resp:
            if line.startswith(b"data: {") and ttft is None:
                ttft = time.time() - start_time
        return 200, ttft, 0
    finally:
        conn.close()


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def peak_rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmHWM:\s+(\d+) kB", f.read()).group(1)) / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--xlserve", default="bazel-bin/xlserve")
    ap.add_argument("--slots", type=int, default=4)
    ap.add_argument("--factor", type=int, default=10)
    ap.add_argument("--duration", type=float, default=60)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--max-ttft-ratio", type=float, default=2.0)
    args = ap.parse_args()

    server, m = start([args.xlserve, "serve", "--model", "models/xlstm-code-mtp", "--port", "0", "--metrics-port", "-1",
                       "--threads", "2", "--max-num-seqs", str(args.slots)], r"listening on [\d.]+:(\d+)")
    gateway, g = start([args.xlserve, "gateway", "--port", "0", "--upstream", f"127.0.0.1:{m.group(1)}"],
                       r"listening on [\d.]+:(\d+)")
    port = int(g.group(1))
    try:
        time.sleep(0.5)
        # Unloaded: the same requests, `slots` at a time (the load an admitted request sees).
        unloaded = []
        for _ in range(3):
            batch = []
            threads = [threading.Thread(target=lambda: batch.append(stream_once(port, args.max_tokens)))
                       for _ in range(args.slots)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            unloaded += [ttft for status, ttft, _ in batch if status == 200]

        statuses, ttfts, lock = Counter(), [], threading.Lock()
        end = time.time() + args.duration

        def client(k):
            rng = random.Random(k)
            while time.time() < end:
                try:
                    status, ttft, retry = stream_once(port, args.max_tokens)
                except OSError as e:
                    status, ttft, retry = type(e).__name__, None, 1
                with lock:
                    statuses[str(status)] += 1
                    if ttft is not None:
                        ttfts.append(ttft)
                if retry:
                    time.sleep(retry * rng.uniform(0.5, 1.0))

        threads = [threading.Thread(target=client, args=(k,)) for k in range(args.slots * args.factor)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        ratio = percentile(ttfts, 0.99) / percentile(unloaded, 0.99)
        print(f"clients {args.slots * args.factor} for {args.slots} slots, {args.duration:.0f} s: answers {dict(statuses)}")
        print(f"TTFT ms unloaded p50 {1000 * percentile(unloaded, 0.5):.0f} p99 {1000 * percentile(unloaded, 0.99):.0f}; "
              f"admitted under overload p50 {1000 * percentile(ttfts, 0.5):.0f} p99 {1000 * percentile(ttfts, 0.99):.0f} "
              f"({ratio:.2f}x)")
        print(f"gateway peak RSS {peak_rss_mb(gateway.pid):.1f} MB, server peak RSS {peak_rss_mb(server.pid):.1f} MB")
        ok = set(statuses) <= {"200", "429"} and ratio <= args.max_ttft_ratio
        sys.exit(0 if ok else 1)
    finally:
        for p in (gateway, server):
            p.terminate()
            p.wait(timeout=30)


if __name__ == "__main__":
    main()
