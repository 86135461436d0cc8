"""The real `xlserve serve` binary driven over loopback by Python gRPC clients.

Covers: streamed results equal to `xlserve generate` for each prompt alone under concurrency,
prefix-cache and session hits (identical tokens, fewer prefill tokens; also after a stop token
accepted as a draft), cancellation and deadlines freeing slots and queue places, queue overflow,
malformed requests, health and reflection, preemption, a 200-request run with random cancels,
and SIGTERM (queued requests cancelled, running streams drained within the grace period, exit 0)."""

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.request

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

XLSERVE = os.path.abspath(sys.argv.pop(1) if len(sys.argv) > 1 else "xlserve")
# Sanitizer builds run several times slower (.bazelrc): time bounds below stretch by this.
TIME_SCALE = float(os.environ.get("XLSERVE_TEST_TIME_SCALE", "1"))
MODEL = "models/xlstm-code-mtp"
PROTO_DIR = "proto"

STUBS = tempfile.mkdtemp(prefix="xlserve-stubs-")
from grpc_tools import protoc  # noqa: E402

if protoc.main(["protoc", f"-I{PROTO_DIR}", f"--python_out={STUBS}", f"--grpc_python_out={STUBS}",
                f"{PROTO_DIR}/xlserve/v1/xlserve.proto"]) != 0:
    raise RuntimeError("cannot generate Python stubs")
sys.path.insert(0, STUBS)
from xlserve.v1 import xlserve_pb2 as pb, xlserve_pb2_grpc as pb_grpc  # noqa: E402

PROMPTS = [
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return",
    "import os\nimport sys\n\n\ndef main(argv):\n    parser =",
    "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, item):\n        self.",
    "for i in range(10):\n    print(",
    "x = {'a': 1, 'b': 2}\nfor key, value in x.",
    "# Compute the mean of a list\ndef mean(values):\n    return sum(values) /",
]


class ServerProcess:
    def __init__(self, *extra):
        self.proc = subprocess.Popen(
            [XLSERVE, "serve", "--model", MODEL, "--port", "0", "--metrics-port", "0", "--threads", "2", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        m = re.match(r"xlserve listening on ([\d.]+):(\d+) metrics (-?\d+)", line)
        if not m:
            self.proc.kill()
            raise RuntimeError(f"server did not start: {line!r} {self.proc.stderr.read()}")
        self.port, self.metrics_port = int(m.group(2)), int(m.group(3))
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        self.stub = pb_grpc.XlServeStub(self.channel)
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()  # keep the pipe drained

    def metrics(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as r:
            text = r.read().decode()
        values = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                values[name] = float(value)
        return values

    def wait_slots_free(self, timeout=10.0):
        end = time.time() + timeout
        while time.time() < end:
            if self.metrics()["xlserve_state_slots_in_use"] == 0:
                return True
            time.sleep(0.05)
        return False

    def stop(self):
        self.channel.close()
        self.proc.send_signal(15)
        return self.proc.wait(timeout=30)


def collect(stream):
    tokens, text, final, ids = [], "", None, set()
    for msg in stream:
        tokens += list(msg.token_ids)
        text += msg.text
        ids.add(msg.request_id)
        if msg.finish_reason:
            final = msg
    return tokens, text, final, ids


def cli_generate(prompt, max_tokens, speculative="off"):
    r = subprocess.run([XLSERVE, "generate", "--model", MODEL, "--prompt", prompt, "--max-tokens", str(max_tokens),
                        "--speculation", speculative, "--threads", "2", "--print-json"],
                       capture_output=True, text=True, timeout=120, check=True)
    return json.loads(r.stdout)


class ServerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = ServerProcess("--max-num-seqs", "4", "--max-queue", "8")
        cls.expected = {p: cli_generate(p, 20)["tokens"] for p in PROMPTS}

    @classmethod
    def tearDownClass(cls):
        assert cls.server.stop() == 0

    def generate(self, **kw):
        return collect(self.server.stub.Generate(pb.GenerateRequest(**kw), timeout=120))

    def test_concurrent_streams_match_generate_alone(self):
        results = {}

        def run(i, prompt):
            mode = [pb.SPECULATION_MODE_OFF, pb.SPECULATION_MODE_ON, pb.SPECULATION_MODE_AUTO][i % 3]
            results[i] = self.generate(prompt=prompt, max_tokens=20, speculation=mode)

        prompts = PROMPTS + PROMPTS[:2]  # no more than the queue holds, even before any admission
        threads = [threading.Thread(target=run, args=(i, p)) for i, p in enumerate(prompts)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for i, p in enumerate(prompts):
            tokens, text, final, ids = results[i]
            self.assertEqual(tokens, self.expected[p], p)
            self.assertEqual(len(ids), 1)
            self.assertIn(final.finish_reason, ("length", "eos"))
            self.assertEqual(final.usage.completion_tokens, len(tokens))
        self.assertTrue(self.server.wait_slots_free())

    def test_text_streams_decode_to_the_tokens(self):
        tokens, text, final, _ = self.generate(prompt=PROMPTS[0], max_tokens=20)
        detok = self.server.stub.Detokenize(pb.DetokenizeRequest(token_ids=tokens))
        self.assertEqual(text, detok.text)

    def test_prefix_cache_hit_is_identical_and_cheaper(self):
        base = list(self.server.stub.Tokenize(pb.TokenizeRequest(text=PROMPTS[2] * 2)).token_ids)
        extra = list(self.server.stub.Tokenize(pb.TokenizeRequest(text="\n\nclass Queue:\n    def")).token_ids)
        self.generate(prompt_token_ids=base, max_tokens=4)  # keeps the state after the whole prompt
        before = self.server.metrics()["xlserve_prefill_tokens_total"]
        tokens, _, final, _ = self.generate(prompt_token_ids=base + extra, max_tokens=16, speculation=pb.SPECULATION_MODE_OFF)
        self.assertEqual(final.usage.cached_prompt_tokens, len(base))
        self.assertEqual(final.usage.prefill_tokens, len(extra))
        self.assertEqual(self.server.metrics()["xlserve_prefill_tokens_total"] - before, final.usage.prefill_tokens)
        self.assertEqual(tokens, self.cold_ids(base + extra, 16))

    def cold_ids(self, ids, max_tokens):
        r = subprocess.run([XLSERVE, "generate", "--model", MODEL, "--prompt-ids", ",".join(map(str, ids)),
                            "--max-tokens", str(max_tokens), "--speculation", "off", "--threads", "2", "--print-json"],
                           capture_output=True, text=True, timeout=120, check=True)
        return json.loads(r.stdout)["tokens"]

    def test_session_continues_from_its_state(self):
        p1 = list(self.server.stub.Tokenize(pb.TokenizeRequest(text=PROMPTS[4])).token_ids)
        p2 = list(self.server.stub.Tokenize(pb.TokenizeRequest(text="\n\ndef other():\n    return")).token_ids)
        t1, _, f1, _ = self.generate(prompt_token_ids=p1, max_tokens=12, session_id="s-1", ignore_eos=True)
        t2, _, f2, _ = self.generate(prompt_token_ids=p2, max_tokens=12, session_id="s-1", ignore_eos=True)
        self.assertEqual(f2.usage.cached_prompt_tokens, len(p1) + len(t1) - 1)
        self.assertEqual(f2.usage.prefill_tokens, 1 + len(p2))  # last turn's final token + the new turn
        self.assertEqual(t2, self.cold_ids(p1 + t1 + p2, 12))

    def test_unknown_session_runs_fresh_and_says_so_or_fails_when_required(self):
        p = list(self.server.stub.Tokenize(pb.TokenizeRequest(text=PROMPTS[1])).token_ids)
        _, _, first, _ = self.generate(prompt_token_ids=p, max_tokens=3, session_id="s-new")
        self.assertFalse(first.usage.session_resumed)
        _, _, second, _ = self.generate(prompt_token_ids=p, max_tokens=3, session_id="s-new")
        self.assertTrue(second.usage.session_resumed)
        with self.assertRaises(grpc.RpcError) as raised:
            self.generate(prompt_token_ids=p, max_tokens=3, session_id="s-never", require_session=True)
        self.assertEqual(raised.exception.code(), grpc.StatusCode.NOT_FOUND)
        m = self.server.metrics()
        self.assertGreaterEqual(m["xlserve_sessions_resumed_total"], 1)
        self.assertGreaterEqual(m["xlserve_sessions_missed_total"], 1)
        self.assertGreater(m['xlserve_state_store_used_bytes{tier="host"}'], 0)
        self.assertLessEqual(m['xlserve_state_store_used_bytes{tier="host"}'],
                             m['xlserve_state_store_capacity_bytes{tier="host"}'])

    def test_session_after_a_stop_token_accepted_as_a_draft(self):
        # Messages are decode steps: in a self-speculative step every token but the last is an
        # accepted draft (the first message also opens with the prefill's token). Ending turn 1
        # on such a draft must still leave the session's state one token short of the output.
        p1 = list(self.server.stub.Tokenize(pb.TokenizeRequest(text=PROMPTS[0])).token_ids)
        steps = [list(m.token_ids) for m in self.server.stub.Generate(pb.GenerateRequest(
            prompt_token_ids=p1, max_tokens=24, speculation=pb.SPECULATION_MODE_ON, ignore_eos=True), timeout=60)]
        output, drafts = [], []
        for i, step in enumerate(steps):
            drafts += [(len(output) + j, t) for j, t in enumerate(step[:-1]) if i > 0 or j > 0]
            output += step
        stop = next(t for pos, t in drafts if output.index(t) == pos)
        t1, _, f1, _ = self.generate(prompt_token_ids=p1, max_tokens=24, session_id="s-draft-stop",
                                     stop_token_ids=[stop], speculation=pb.SPECULATION_MODE_ON)
        self.assertEqual(f1.finish_reason, "stop")
        self.assertEqual(t1, output[: output.index(stop) + 1])
        p2 = list(self.server.stub.Tokenize(pb.TokenizeRequest(text="\n\ndef other():\n    return")).token_ids)
        # Greedy tokens barely notice a token fed twice; log-probabilities do (by ~0.2 here).
        # Both paths run the same maths in fp32, so they agree to ~1e-6.
        turn = dict(max_tokens=12, ignore_eos=True, speculation=pb.SPECULATION_MODE_OFF, logprobs=1)
        session = list(self.server.stub.Generate(pb.GenerateRequest(
            prompt_token_ids=p2, session_id="s-draft-stop", **turn), timeout=60))
        cold = list(self.server.stub.Generate(pb.GenerateRequest(prompt_token_ids=p1 + t1 + p2, **turn), timeout=60))
        self.assertEqual(session[-1].usage.cached_prompt_tokens, len(p1) + len(t1) - 1)
        session_lps = [(lp.token_id, lp.logprob) for m in session for lp in m.logprobs]
        cold_lps = [(lp.token_id, lp.logprob) for m in cold for lp in m.logprobs]
        self.assertEqual([t for t, _ in session_lps], [t for t, _ in cold_lps])
        for (_, a), (_, b) in zip(session_lps, cold_lps):
            self.assertAlmostEqual(a, b, delta=1e-4)

    def test_cancellation_frees_the_slot(self):
        call = self.server.stub.Generate(pb.GenerateRequest(prompt=PROMPTS[1], max_tokens=3000, ignore_eos=True))
        next(iter(call))
        call.cancel()
        self.assertTrue(self.server.wait_slots_free())

    def test_deadline_frees_the_slot(self):
        with self.assertRaises(grpc.RpcError) as err:
            collect(self.server.stub.Generate(pb.GenerateRequest(prompt=PROMPTS[3], max_tokens=3000, ignore_eos=True),
                                              timeout=0.5))
        self.assertEqual(err.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
        self.assertTrue(self.server.wait_slots_free())

    def test_queued_requests_past_their_deadline_leave_the_queue(self):
        running = [self.server.stub.Generate(pb.GenerateRequest(prompt=PROMPTS[0], max_tokens=3000, ignore_eos=True))
                   for _ in range(4)]  # every slot
        for c in running:
            next(iter(c))
        expiring = [self.server.stub.Generate(pb.GenerateRequest(prompt=PROMPTS[1], max_tokens=8), timeout=0.3)
                    for _ in range(8)]  # fills the queue
        for c in expiring:
            with self.assertRaises(grpc.RpcError) as err:
                collect(c)
            self.assertEqual(err.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
        # They leave while the slots are still busy, so the queue has room again.
        end = time.time() + 5
        while self.server.metrics()["xlserve_requests_waiting"] > 0 and time.time() < end:
            time.sleep(0.05)
        self.assertEqual(self.server.metrics()["xlserve_requests_waiting"], 0)
        later = [self.server.stub.Generate(pb.GenerateRequest(prompt=PROMPTS[1], max_tokens=8), timeout=120)
                 for _ in range(8)]
        for c in running:
            c.cancel()
        for c in later:
            _, _, final, _ = collect(c)
            self.assertIn(final.finish_reason, ("length", "eos"))
        self.assertTrue(self.server.wait_slots_free())

    def test_queue_overflow_is_resource_exhausted(self):
        # 4 slots and 8 queue places: of 16 long requests at least 4 are refused at once (more
        # when some arrive before the scheduler admits the first ones).
        rejected_before = self.server.metrics()["xlserve_requests_rejected_total"]
        calls = [self.server.stub.Generate(pb.GenerateRequest(prompt=PROMPTS[0], max_tokens=3000, ignore_eos=True))
                 for _ in range(16)]
        end = time.time() + 10
        while time.time() < end:
            m = self.server.metrics()
            rejected = int(m["xlserve_requests_rejected_total"] - rejected_before)
            if (rejected + m["xlserve_requests_waiting"] + m["xlserve_requests_running"] == 16
                    and sum(c.done() for c in calls) == rejected):
                break
            time.sleep(0.02)
        self.assertGreaterEqual(rejected, 4)
        refused = [c for c in calls if c.done()]
        self.assertEqual(len(refused), rejected)
        for c in refused:
            self.assertEqual(c.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
            self.assertIn("retry", c.details())
            self.assertIn(("retry-after-ms", "1000"), tuple(c.trailing_metadata()))
        for c in calls:
            c.cancel()
        self.assertTrue(self.server.wait_slots_free(30))

    def test_malformed_requests(self):
        bad = [
            (dict(), grpc.StatusCode.INVALID_ARGUMENT),
            (dict(prompt="x", prompt_token_ids=[1]), grpc.StatusCode.INVALID_ARGUMENT),
            (dict(prompt_token_ids=[1, 99999]), grpc.StatusCode.INVALID_ARGUMENT),
            (dict(prompt_token_ids=[-1]), grpc.StatusCode.INVALID_ARGUMENT),
            (dict(prompt="x", max_tokens=0), grpc.StatusCode.INVALID_ARGUMENT),
            (dict(prompt="x", max_tokens=10 ** 8), grpc.StatusCode.INVALID_ARGUMENT),
            (dict(prompt="x", temperature=-1), grpc.StatusCode.INVALID_ARGUMENT),
            (dict(prompt="x", top_p=2), grpc.StatusCode.INVALID_ARGUMENT),
            (dict(prompt="x", n=100), grpc.StatusCode.INVALID_ARGUMENT),
            (dict(prompt="x", logprobs=50), grpc.StatusCode.INVALID_ARGUMENT),
            (dict(prompt="x", stop=[""]), grpc.StatusCode.INVALID_ARGUMENT),
            (dict(prompt="x", model="gpt-7"), grpc.StatusCode.NOT_FOUND),
            (dict(prompt="y" * (5 << 20)), grpc.StatusCode.INVALID_ARGUMENT),
            (dict(prompt="def f(): " * 3000), grpc.StatusCode.INVALID_ARGUMENT),
        ]
        for kw, code in bad:
            with self.subTest(kw={k: (v if len(str(v)) < 40 else "...") for k, v in kw.items()}):
                with self.assertRaises(grpc.RpcError) as err:
                    self.generate(**kw)
                self.assertEqual(err.exception.code(), code, err.exception.details())
                self.assertTrue(err.exception.details())

    def test_stop_strings_and_logprobs_and_n(self):
        tokens, text, final, _ = self.generate(prompt=PROMPTS[0], max_tokens=20)
        stop = text[5:8]
        _, text2, final2, _ = self.generate(prompt=PROMPTS[0], max_tokens=20, stop=[stop])
        self.assertEqual(final2.finish_reason, "stop")
        self.assertEqual(text2, text[: text.find(stop)])
        stream = self.server.stub.Generate(pb.GenerateRequest(prompt=PROMPTS[0], max_tokens=5, logprobs=3), timeout=60)
        lps = [lp for m in stream for lp in m.logprobs]
        self.assertEqual(len(lps), 5)
        for lp in lps:
            self.assertEqual(len(lp.top_logprobs), 3)
            self.assertLessEqual(lp.logprob, 0.0)
            self.assertGreaterEqual(lp.top_logprobs[0].logprob, lp.logprob - 1e-6)
        finals = {}
        for m in self.server.stub.Generate(pb.GenerateRequest(prompt=PROMPTS[3], max_tokens=8, n=3, temperature=1.0,
                                                              seed=5), timeout=60):
            if m.finish_reason:
                finals[m.index] = m
        self.assertEqual(sorted(finals), [0, 1, 2])

    def test_health_reflection_and_info(self):
        health = health_pb2_grpc.HealthStub(self.server.channel)
        self.assertEqual(health.Check(health_pb2.HealthCheckRequest()).status, health_pb2.HealthCheckResponse.SERVING)
        refl = reflection_pb2_grpc.ServerReflectionStub(self.server.channel)
        responses = refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = {s.name for r in responses for s in r.list_services_response.service}
        self.assertIn("xlserve.v1.XlServe", names)
        self.assertIn("grpc.health.v1.Health", names)
        info = self.server.stub.GetModelInfo(pb.GetModelInfoRequest())
        self.assertEqual(info.vocab_size, 4096)
        self.assertEqual(info.mtp_heads, 3)


class PreemptionTest(unittest.TestCase):
    def test_higher_priority_swaps_a_running_sequence_out_and_back(self):
        server = ServerProcess("--max-num-seqs", "1", "--max-queue", "4")
        try:
            low_expected = cli_generate(PROMPTS[1], 60, "off")["tokens"]
            high_expected = cli_generate(PROMPTS[2], 10, "off")["tokens"]
            low = server.stub.Generate(pb.GenerateRequest(prompt=PROMPTS[1], max_tokens=60, priority=0,
                                                          speculation=pb.SPECULATION_MODE_OFF), timeout=120)
            low_iter = iter(low)
            first = next(low_iter)  # the low-priority sequence holds the only slot now
            tokens, _, final, _ = collect(server.stub.Generate(pb.GenerateRequest(
                prompt=PROMPTS[2], max_tokens=10, priority=5, speculation=pb.SPECULATION_MODE_OFF), timeout=120))
            self.assertEqual(tokens, high_expected)
            low_tokens, low_final = list(first.token_ids), None
            for m in low_iter:
                low_tokens += list(m.token_ids)
                if m.finish_reason:
                    low_final = m
            self.assertEqual(low_tokens, low_expected)
            # Resumed from its copied state: the prompt was prefilled once, nothing recomputed.
            self.assertEqual(low_final.usage.prefill_tokens, low_final.usage.prompt_tokens)
            self.assertGreaterEqual(server.metrics()["xlserve_preemptions_total"], 1)
            self.assertTrue(server.wait_slots_free())
        finally:
            self.assertEqual(server.stop(), 0)


class TensorParallelTest(unittest.TestCase):
    def test_a_server_split_over_two_ranks_streams_what_generate_gives_alone(self):
        server = ServerProcess("--tensor-parallel", "2", "--max-num-seqs", "2")
        try:
            for prompt, mode in zip(PROMPTS[:2], (pb.SPECULATION_MODE_OFF, pb.SPECULATION_MODE_ON)):
                tokens = collect(server.stub.Generate(pb.GenerateRequest(prompt=prompt, max_tokens=12, speculation=mode),
                                                      timeout=120 * TIME_SCALE))[0]
                self.assertEqual(tokens, cli_generate(prompt, 12)["tokens"], prompt)
        finally:
            self.assertEqual(server.stop(), 0)


class ShutdownTest(unittest.TestCase):
    def test_sigterm_drains_running_streams_and_cancels_queued_ones(self):
        server = ServerProcess("--max-num-seqs", "1", "--shutdown-grace-s", str(60 * TIME_SCALE))
        # Long enough (about 4 s on 2 CPU cores) to still run while the checks below happen.
        running = server.stub.Generate(pb.GenerateRequest(prompt=PROMPTS[2], max_tokens=600, ignore_eos=True,
                                                          speculation=pb.SPECULATION_MODE_OFF),
                                       timeout=120 * TIME_SCALE)
        running_iter = iter(running)
        tokens = list(next(running_iter).token_ids)
        queued = server.stub.Generate(pb.GenerateRequest(prompt=PROMPTS[3], max_tokens=8), timeout=120 * TIME_SCALE)
        end = time.time() + 5
        while server.metrics()["xlserve_requests_waiting"] < 1 and time.time() < end:
            time.sleep(0.02)
        server.proc.send_signal(signal.SIGTERM)

        self.assertEqual(collect(queued)[2].finish_reason, "cancelled")
        health = health_pb2_grpc.HealthStub(server.channel)
        self.assertEqual(health.Check(health_pb2.HealthCheckRequest()).status,
                         health_pb2.HealthCheckResponse.NOT_SERVING)
        with self.assertRaises(grpc.RpcError) as err:
            collect(server.stub.Generate(pb.GenerateRequest(prompt=PROMPTS[0], max_tokens=4), timeout=30))
        self.assertEqual(err.exception.code(), grpc.StatusCode.UNAVAILABLE)

        final = None
        for m in running_iter:
            tokens += list(m.token_ids)
            final = m if m.finish_reason else final
        self.assertEqual(final.finish_reason, "length")  # finished within the grace period
        self.assertEqual(len(tokens), 600)
        self.assertEqual(server.proc.wait(timeout=30), 0)

    def test_sigterm_cancels_streams_still_running_after_the_grace_period(self):
        server = ServerProcess("--shutdown-grace-s", "0.3")
        call = server.stub.Generate(pb.GenerateRequest(prompt=PROMPTS[0], max_tokens=3000, ignore_eos=True), timeout=120)
        stream = iter(call)
        next(stream)
        start = time.time()
        server.proc.send_signal(signal.SIGTERM)
        self.assertEqual(collect(stream)[2].finish_reason, "cancelled")
        self.assertEqual(server.proc.wait(timeout=30), 0)
        self.assertLess(time.time() - start, 10)


def serve_exit(*args):
    r = subprocess.run([XLSERVE, "serve", "--model", MODEL, "--threads", "1", *args], capture_output=True, text=True,
                       timeout=60)
    return r.returncode, r.stderr


class ListenTest(unittest.TestCase):
    """An address that cannot be bound ends `serve` with exit 1 and a message (it crashed with
    SIGSEGV), and a port another server holds is refused rather than shared."""

    def test_taken_unparsable_or_foreign_addresses_exit_1(self):
        holder = socket.socket()
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = str(holder.getsockname()[1])
        try:
            for args in (["--port", taken, "--metrics-port", "-1"],
                         ["--host", "not a host!", "--port", "0", "--metrics-port", "-1"],
                         ["--host", "192.0.2.1", "--port", "0", "--metrics-port", "-1"],  # TEST-NET-1: not ours
                         ["--port", "0", "--metrics-port", taken]):
                with self.subTest(args=args):
                    rc, err = serve_exit(*args)
                    self.assertEqual(rc, 1, err[-500:])
                    self.assertIn("cannot listen", err)
        finally:
            holder.close()

    def test_ports_of_a_running_server_are_not_shared(self):
        server = ServerProcess()
        try:
            for args in (["--port", str(server.port), "--metrics-port", "-1"],
                         ["--port", "0", "--metrics-port", str(server.metrics_port)]):
                with self.subTest(args=args):
                    rc, err = serve_exit(*args)
                    self.assertEqual(rc, 1, err[-500:])
                    self.assertIn("cannot listen", err)
        finally:
            self.assertEqual(server.stop(), 0)

    def test_slow_clients_do_not_starve_the_metrics_port(self):
        server = ServerProcess()
        slow = []
        try:
            # Twice the old thread pool's size, each sending its headers a byte at a time.
            slow = [socket.create_connection(("127.0.0.1", server.metrics_port)) for _ in range(16)]
            stop = threading.Event()

            def drip():
                for byte in b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
                    for s in slow:
                        try:
                            s.send(bytes([byte]))
                        except OSError:
                            pass
                    if stop.wait(0.5):
                        return

            dripper = threading.Thread(target=drip)
            dripper.start()
            try:
                time.sleep(0.5)
                start = time.time()
                with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/health", timeout=4) as r:
                    self.assertEqual(r.status, 200)
                self.assertLess(time.time() - start, 1.0)
            finally:
                stop.set()
                dripper.join()
        finally:
            for s in slow:
                s.close()
            self.assertEqual(server.stop(), 0)


class LoadTest(unittest.TestCase):
    def test_200_requests_with_random_cancels(self):
        server = ServerProcess("--max-num-seqs", "6", "--max-queue", "256")
        try:
            expected = {p: cli_generate(p, 12)["tokens"] for p in PROMPTS}
            rng = random.Random(7)
            plan = [(PROMPTS[rng.randrange(len(PROMPTS))], rng.random() < 0.25, rng.random() < 0.5) for _ in range(200)]
            outcomes = [None] * len(plan)

            def worker(indices):
                for i in indices:
                    prompt, cancel, spec = plan[i]
                    call = server.stub.Generate(pb.GenerateRequest(
                        prompt=prompt, max_tokens=12,
                        speculation=pb.SPECULATION_MODE_ON if spec else pb.SPECULATION_MODE_OFF), timeout=300)
                    tokens, rids, finished = [], set(), None
                    try:
                        for m in call:
                            tokens += list(m.token_ids)
                            rids.add(m.request_id)
                            if m.finish_reason:
                                finished = m.finish_reason
                            if cancel and len(tokens) >= 2:
                                call.cancel()
                    except grpc.RpcError as e:
                        if e.code() != grpc.StatusCode.CANCELLED:
                            raise
                    outcomes[i] = (tokens, rids, finished)

            threads = [threading.Thread(target=worker, args=(range(k, len(plan), 16),)) for k in range(16)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            completed = 0
            for (prompt, cancel, _), (tokens, rids, finished) in zip(plan, outcomes):
                self.assertLessEqual(len(rids), 1)
                # Every token a stream received belongs to its own prompt's continuation.
                self.assertEqual(tokens, expected[prompt][: len(tokens)])
                if finished in ("length", "eos"):
                    completed += 1
                    self.assertEqual(tokens, expected[prompt])
            self.assertGreater(completed, 100)
            self.assertTrue(server.wait_slots_free(30))
            m = server.metrics()
            self.assertEqual(m["xlserve_requests_running"], 0)
            self.assertEqual(m["xlserve_requests_total"], 200)
        finally:
            self.assertEqual(server.stop(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
