"""Soak driver for scripts/soak.sh: moderate closed-loop load through the gateway (streaming
and whole answers, session turns, random cancels and client disconnects) for a bounded time,
sampling the resident memory of the server and the gateway. Prints a CSV of the samples and a
summary; exits 1 when RSS grew by more than --max-growth after warm-up or a slot stays busy."""

import argparse
import http.client
import json
import random
import re
import socket
import sys
import threading
import time
import urllib.request

PROMPTS = [
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return",
    "import os\nimport sys\n\n\ndef main(argv):\n    parser =",
    "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, item):\n        self.",
    "for i in range(10):\n    print(",
    "# Compute the mean of a list\ndef mean(values):\n    return sum(values) /",
]


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1)) / 1024


def server_metrics(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return {l.rsplit(" ", 1)[0]: float(l.rsplit(" ", 1)[1]) for l in r.read().decode().splitlines()
                if l and not l.startswith("#")}


def one_request(port, rng, counts):
    stream = rng.random() < 0.5
    body = {"prompt": rng.choice(PROMPTS), "max_tokens": rng.randint(8, 64), "stream": stream}
    if rng.random() < 0.2:
        body["session_id"] = f"soak-{rng.randrange(32)}"
    action = rng.random()
    data = json.dumps(body).encode()
    if action < 0.15:  # the client leaves at a random moment, before or after the answer begins
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(data), data))
        time.sleep(rng.random() * 0.5)
        sock.close()
        counts["disconnected"] += 1
        return
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("POST", "/v1/completions", body=data, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            resp.read()
            counts[f"http_{resp.status}"] += 1
            return
        if stream and action < 0.25:  # cancel mid-stream
            resp.read1(64)
            counts["cancelled"] += 1
            return
        resp.read()
        counts["ok"] += 1
    finally:
        conn.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gateway-port", type=int, required=True)
    ap.add_argument("--metrics-port", type=int, required=True)
    ap.add_argument("--server-pid", type=int, required=True)
    ap.add_argument("--gateway-pid", type=int, required=True)
    ap.add_argument("--duration", type=float, default=1800)
    ap.add_argument("--warmup", type=float, default=0.2, help="fraction of the run before the RSS baseline")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--interval", type=float, default=10)
    ap.add_argument("--max-growth", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    from collections import Counter
    counts, lock = Counter(), threading.Lock()
    end = time.time() + args.duration

    def worker(k):
        rng = random.Random(args.seed * 1000 + k)
        local = Counter()
        while time.time() < end:
            try:
                one_request(args.gateway_port, rng, local)
            except OSError as e:
                local[f"error_{type(e).__name__}"] += 1
        with lock:
            counts.update(local)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(args.concurrency)]
    for t in threads:
        t.start()
    start = time.time()
    samples = []
    print("seconds,server_rss_mb,gateway_rss_mb", flush=True)
    while time.time() < end:
        samples.append((time.time() - start, rss_mb(args.server_pid), rss_mb(args.gateway_pid)))
        print("%.0f,%.1f,%.1f" % samples[-1], flush=True)
        time.sleep(min(args.interval, max(0.0, end - time.time())))
    for t in threads:
        t.join()
    samples.append((time.time() - start, rss_mb(args.server_pid), rss_mb(args.gateway_pid)))
    print("%.0f,%.1f,%.1f" % samples[-1], flush=True)

    slots_free = False
    for _ in range(200):
        m = server_metrics(args.metrics_port)
        if m["xlserve_state_slots_in_use"] == 0 and m["xlserve_requests_running"] == 0 and m["xlserve_requests_waiting"] == 0:
            slots_free = True
            break
        time.sleep(0.1)
    warm = [s for s in samples if s[0] >= args.warmup * args.duration] or samples[-1:]
    failed = not slots_free
    print(f"requests: {dict(sorted(counts.items()))}")
    for column, name in ((1, "server"), (2, "gateway")):
        base, last, peak = warm[0][column], samples[-1][column], max(s[column] for s in warm)
        growth = (last - base) / base
        print(f"{name} RSS: {base:.1f} MB after warm-up, {last:.1f} MB at the end (peak {peak:.1f}), "
              f"growth {100 * growth:+.1f}%")
        failed |= growth > args.max_growth
    print(f"slots free at the end: {slots_free}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
