"""`xlserve loadtest` end to end on loopback: against the real `xlserve serve` (CPU, shipped code
model) in open loop, closed loop and a two-rate sweep (CSV + SVG plot); against a fake
OpenAI-compatible SSE server for the REST path; and on bad input (an unreachable target gives
error counts and exit 1, bad flags one error line and exit 1)."""

import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import unittest
import xml.etree.ElementTree as ET

XLSERVE = os.path.abspath(sys.argv.pop(1) if len(sys.argv) > 1 else "xlserve")
MODEL = "models/xlstm-code-mtp"
SVG = "{http://www.w3.org/2000/svg}"
# Every run here is small; this bounds a hung one. Sanitizer builds (.bazelrc) run the model
# several times slower, so the runs and each request get longer.
TIME_SCALE = float(os.environ.get("XLSERVE_TEST_TIME_SCALE", "1"))
RUN_TIMEOUT_S = 60 * TIME_SCALE


def loadtest(*args):
    scaled = ["--request-timeout-s", str(60 * TIME_SCALE)] if TIME_SCALE != 1 else []
    return subprocess.run([XLSERVE, "loadtest", *scaled, *args], capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S)


def closed_port():
    """A loopback port that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeCompletions(http.server.BaseHTTPRequestHandler):
    """POST /v1/completions answered as OpenAI streams it: one SSE event per text delta, a usage
    event, then [DONE]. Every third request is refused with 429 and an OpenAI error object."""
    protocol_version = "HTTP/1.1"
    lock = threading.Lock()
    requests = []

    def log_message(self, *args):
        pass

    def chunk(self, text):
        data = text.encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with FakeCompletions.lock:
            FakeCompletions.requests.append((self.path, self.headers.get("Authorization"), body))
            number = len(FakeCompletions.requests)
        if number % 3 == 0:
            error = json.dumps({"error": {"message": "queue full", "type": "rate_limit_error", "code": "429"}}).encode()
            self.send_response(429)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(error)))
            self.end_headers()
            self.wfile.write(error)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        n = body["max_tokens"]
        for i in range(n):
            event = {"id": "cmpl-1", "object": "text_completion", "choices": [{"index": 0, "text": f" t{i}", "finish_reason": None}]}
            self.chunk(f"data: {json.dumps(event)}\n\n")
        if body.get("stream_options", {}).get("include_usage"):
            usage = {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": n, "total_tokens": n + 3}}
            self.chunk(f"data: {json.dumps(usage)}\n\n")
        self.chunk("data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")


class LoadtestTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="xlserve-loadtest-")
        cls.server = subprocess.Popen(
            [XLSERVE, "serve", "--model", MODEL, "--port", "0", "--metrics-port", "-1", "--threads", "2"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = cls.server.stdout.readline()
        m = re.match(r"xlserve listening on ([\d.]+):(\d+) metrics (-?\d+)", line)
        if not m:
            cls.server.kill()
            raise RuntimeError(f"server did not start: {line!r}")
        cls.target = f"127.0.0.1:{m.group(2)}"

    @classmethod
    def tearDownClass(cls):
        cls.server.send_signal(15)
        cls.server.wait(timeout=30)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.tmp, name)

    def run_ok(self, *args):
        r = loadtest(*args)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r

    def assert_sane(self, run, sent, output_tokens_each):
        self.assertEqual(run["requests"]["sent"], sent)
        self.assertEqual(run["requests"]["succeeded"], sent, run["errors"])
        self.assertEqual(run["requests"]["failed"], 0)
        self.assertEqual(run["errors"], {})
        self.assertEqual(run["tokens"]["output"], sent * output_tokens_each)
        self.assertGreater(run["tokens"]["prompt"], 0)
        self.assertGreater(run["duration_s"], 0)
        self.assertGreater(run["throughput"]["requests_per_s"], 0)
        self.assertGreater(run["throughput"]["output_tokens_per_s"], 0)
        for key in ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"):
            s = run[key]
            self.assertGreater(s["count"], 0, key)
            self.assertTrue(0 < s["p50"] <= s["p90"] <= s["p99"], (key, s))
        self.assertEqual(run["ttft_ms"]["count"], sent)
        self.assertLessEqual(run["ttft_ms"]["p50"], run["e2e_ms"]["p50"])

    def test_open_loop_smoke(self):
        r = self.run_ok("--grpc", self.target, "--rate", "4", "--num-requests", "12", "--max-tokens", "16",
                        "--seed", "3", "--slo-ttft-ms", "100000", "--slo-tpot-ms", "100000", "--json", self.path("open.json"))
        with open(self.path("open.json")) as f:
            run = json.load(f)
        self.assertEqual(run["mode"], "open")
        self.assertEqual(run["rate"], 4)
        self.assert_sane(run, 12, 16)
        self.assertEqual(run["goodput"]["good"], 12)
        self.assertEqual(run["goodput"]["fraction"], 1.0)
        self.assertIn("TTFT", r.stdout)
        self.assertIn("open loop, Poisson 4.00 req/s", r.stdout)
        self.assertIn("12/12 done", r.stderr)  # progress lines, stderr not being a terminal

    def test_closed_loop_with_warmup_token_ids_and_a_strict_slo(self):
        self.run_ok("--grpc", self.target, "--concurrency", "3", "--num-requests", "9", "--warmup", "2",
                    "--token-ids", "--prompt-tokens-dist", "uniform:4:24", "--max-tokens", "8",
                    "--slo-ttft-ms", "0.001", "--json", self.path("closed.json"))
        with open(self.path("closed.json")) as f:
            run = json.load(f)
        self.assertEqual(run["mode"], "closed")
        self.assertEqual(run["concurrency"], 3)
        self.assertEqual(run["requests"]["warmup"], 2)
        self.assert_sane(run, 9, 8)
        self.assertEqual(run["goodput"]["good"], 0)  # nobody answers within a microsecond

    def test_dataset_prompts(self):
        dataset = self.path("prompts.jsonl")
        with open(dataset, "w") as f:
            f.write(json.dumps({"prompt": "def add(a, b):", "max_tokens": 4}) + "\n")
            f.write(json.dumps({"prompt": "import os\n", "max_tokens": 6}) + "\n")
        self.run_ok("--grpc", self.target, "--concurrency", "2", "--num-requests", "4", "--dataset", dataset,
                    "--json", self.path("dataset.json"))
        with open(self.path("dataset.json")) as f:
            run = json.load(f)
        self.assert_sane(run, 4, 5)  # 4 + 6 + 4 + 6 output tokens

    def test_sweep_writes_csv_and_a_plot(self):
        csv, svg = self.path("sweep.csv"), self.path("sweep.svg")
        r = self.run_ok("--grpc", self.target, "--sweep", "4,8", "--num-requests", "8", "--max-tokens", "8",
                        "--sweep-csv", csv, "--plot", svg, "--json", self.path("sweep.json"))
        self.assertEqual(r.stdout.count("xlserve loadtest:"), 2)
        with open(self.path("sweep.json")) as f:
            runs = json.load(f)["sweep"]
        self.assertEqual([run["rate"] for run in runs], [4, 8])
        for run in runs:
            self.assert_sane(run, 8, 8)
        with open(csv) as f:
            rows = f.read().strip().split("\n")
        self.assertEqual(len(rows), 3)
        self.assertTrue(rows[0].startswith("rate,sent,succeeded"))
        self.assertEqual([row.split(",")[0] for row in rows[1:]], ["4", "8"])

        root = ET.parse(svg).getroot()
        self.assertEqual(root.tag, f"{SVG}svg")
        panels = [g for g in root.iter(f"{SVG}g") if g.get("class") == "panel"]
        self.assertEqual(len(panels), 2)
        for panel in panels:
            lines = [p for p in panel.iter(f"{SVG}polyline") if p.get("class") == "series"]
            self.assertEqual(len(lines), 2)
            for line in lines:
                self.assertEqual(len(line.get("points").split()), 2)  # one point per rate
            legend = [g for g in panel.iter(f"{SVG}g") if g.get("class") == "legend"][0]
            self.assertEqual([t.text for t in legend.iter(f"{SVG}text")], ["p50", "p99"])
        texts = [t.text for t in root.iter(f"{SVG}text")]
        for label in ("TTFT (ms)", "TPOT (ms)", "achieved throughput (requests/s)", "0"):
            self.assertIn(label, texts)

        converter = shutil.which("rsvg-convert")
        if converter:
            png = self.path("sweep.png")
            subprocess.run([converter, svg, "-o", png], check=True, timeout=30)
            with open(png, "rb") as f:
                self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")

    def test_http_path_against_a_fake_sse_server(self):
        FakeCompletions.requests = []
        fake = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeCompletions)
        threading.Thread(target=fake.serve_forever, daemon=True).start()
        try:
            r = loadtest("--http", f"http://127.0.0.1:{fake.server_address[1]}", "--api-key", "sk-test",
                         "--model-name", "xlstm-code-mtp", "--concurrency", "1", "--num-requests", "6", "--max-tokens", "5",
                         "--json", self.path("http.json"))
        finally:
            fake.shutdown()
            fake.server_close()
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(self.path("http.json")) as f:
            run = json.load(f)
        self.assertEqual(run["target"], f"http http://127.0.0.1:{fake.server_address[1]}/v1/completions")
        self.assertEqual(run["requests"]["sent"], 6)
        self.assertEqual(run["requests"]["succeeded"], 4)
        self.assertEqual(run["errors"], {"http 429": 2})
        self.assertEqual(run["error_messages"]["http 429"], "queue full")
        self.assertEqual(run["tokens"]["output"], 4 * 5)  # from the usage chunks
        self.assertEqual(run["tokens"]["prompt"], 4 * 3)
        self.assertEqual(run["itl_ms"]["count"], 4 * 4)
        self.assertIn("http 429", r.stdout)
        self.assertEqual(len(FakeCompletions.requests), 6)
        path, auth, body = FakeCompletions.requests[0]
        self.assertEqual(path, "/v1/completions")
        self.assertEqual(auth, "Bearer sk-test")
        self.assertEqual(body["model"], "xlstm-code-mtp")
        self.assertIs(body["stream"], True)
        self.assertIs(body["stream_options"]["include_usage"], True)
        self.assertIsInstance(body["prompt"], str)

    def test_unreachable_targets_count_errors_and_exit_1(self):
        port = closed_port()
        for target, key in ((["--grpc", f"127.0.0.1:{port}"], "grpc UNAVAILABLE"),
                            (["--http", f"http://127.0.0.1:{port}"], "http connection")):
            out = self.path("unreachable.json")
            r = loadtest(*target, "--rate", "50", "--num-requests", "4", "--json", out)
            self.assertEqual(r.returncode, 1, r.stderr)
            with open(out) as f:
                run = json.load(f)
            self.assertEqual(run["errors"], {key: 4})
            self.assertEqual(run["requests"]["failed"], 4)
            self.assertIn(key, r.stdout)
            last = r.stderr.strip().splitlines()[-1]
            self.assertRegex(last, r"^xlserve loadtest: error: all 4 requests to .* failed")

    def test_bad_flags_exit_1_with_one_line(self):
        cases = [
            (["--rate", "1"], "exactly one target"),
            (["--grpc", self.target], "exactly one of --rate, --concurrency and --sweep"),
            (["--grpc", self.target, "--rate", "1", "--concurrency", "2"], "exactly one of"),
            (["--grpc", self.target, "--rate", "-3"], "rate (--rate) must be in"),
            (["--grpc", self.target, "--rate", "fast"], "--rate"),
            (["--grpc", self.target, "--sweep", "1,x"], "--sweep"),
            (["--grpc", self.target, "--rate", "1", "--plot", "p.svg"], "need --sweep"),
            (["--grpc", self.target, "--rate", "1", "--prompt-tokens-dist", "zipf:1:2"], "--prompt-tokens-dist"),
            (["--grpc", self.target, "--rate", "1", "--num-requests", "0"], "--num-requests"),
            (["--grpc", self.target, "--rate", "1", "--dataset", self.path("missing.jsonl")], "missing.jsonl"),
            (["--http", "127.0.0.1:8000", "--rate", "1"], "--http"),
            (["--grpc", self.target, "--rate", "1", "--no-such-flag"], "--no-such-flag"),
        ]
        for args, message in cases:
            r = loadtest(*args)
            self.assertEqual(r.returncode, 1, (args, r.stderr))
            lines = r.stderr.strip().splitlines()
            self.assertEqual(len(lines), 1, (args, r.stderr))
            self.assertTrue(lines[0].startswith("xlserve loadtest: error:"), lines[0])
            self.assertIn(message, lines[0], args)
            self.assertEqual(r.stdout, "")


if __name__ == "__main__":
    unittest.main(verbosity=2)
