"""The OpenAI-compatible gateway in front of a real `xlserve serve`, driven by the official
`openai` Python SDK and by raw HTTP (SSE framing, disconnects)."""

import http.client
import json
import os
import sys
import threading
import time
import unittest
import urllib.request

import openai

XLSERVE = os.path.abspath(sys.argv.pop(1) if len(sys.argv) > 1 else "xlserve")
MODEL = "models/xlstm-code-mtp"
sys.path.insert(0, os.getcwd())  # the runfiles root: tests/testing is there
from tests.testing import xlserve_processes as processes  # noqa: E402
from tests.testing.xlserve_processes import start  # noqa: E402

processes.XLSERVE = XLSERVE


def start_server(*extra):
    return processes.start_server(*extra)


def start_gateway(*extra):
    return processes.start_gateway(*extra)








def stop(proc):
    proc.terminate()
    return proc.wait(timeout=30)


def server_metrics(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return {l.rsplit(" ", 1)[0]: float(l.rsplit(" ", 1)[1]) for l in r.read().decode().splitlines()
                if l and not l.startswith("#")}


class GatewayTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server, cls.grpc_port, cls.metrics_port = start_server("--max-num-seqs", "4")
        cls.gateway, cls.port = start_gateway("--upstream", f"127.0.0.1:{cls.grpc_port}",
                                              "--upstream-metrics", f"127.0.0.1:{cls.metrics_port}")
        cls.client = openai.OpenAI(base_url=f"http://127.0.0.1:{cls.port}/v1", api_key="unused", max_retries=0)

    @classmethod
    def tearDownClass(cls):
        assert stop(cls.gateway) == 0
        assert stop(cls.server) == 0

    def test_completions_streaming_and_not_agree(self):
        prompt = "def fibonacci(n):\n    if n < 2:\n        return n\n    return"
        full = self.client.completions.create(model="xlstm-code-mtp", prompt=prompt, max_tokens=24)
        self.assertEqual(full.object, "text_completion")
        self.assertIn(full.choices[0].finish_reason, ("length", "stop"))
        self.assertGreater(full.usage.completion_tokens, 0)
        chunks = list(self.client.completions.create(model="xlstm-code-mtp", prompt=prompt, max_tokens=24, stream=True,
                                                     stream_options={"include_usage": True}))
        text = "".join(c.choices[0].text for c in chunks if c.choices)
        self.assertEqual(text, full.choices[0].text)
        self.assertEqual(chunks[-1].usage.completion_tokens, full.usage.completion_tokens)

    def test_chat_streaming_and_not(self):
        messages = [{"role": "system", "content": "You write Python."}, {"role": "user", "content": "A stack class"}]
        full = self.client.chat.completions.create(model="xlstm-code-mtp", messages=messages, max_tokens=16)
        self.assertEqual(full.choices[0].message.role, "assistant")
        self.assertTrue(full.choices[0].message.content)
        stream = self.client.chat.completions.create(model="xlstm-code-mtp", messages=messages, max_tokens=16,
                                                     stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        self.assertEqual(text, full.choices[0].message.content)

    def test_stop_n_seed_logprobs(self):
        prompt = "import os\nimport sys\n\n\ndef main():\n   "
        base = self.client.completions.create(model="xlstm-code-mtp", prompt=prompt, max_tokens=20).choices[0].text
        stop = base[4:7]
        cut = self.client.completions.create(model="xlstm-code-mtp", prompt=prompt, max_tokens=20, stop=[stop]).choices[0]
        self.assertEqual(cut.finish_reason, "stop")
        self.assertEqual(cut.text, base[: base.find(stop)])
        many = self.client.completions.create(model="xlstm-code-mtp", prompt=prompt, max_tokens=8, n=3, temperature=1.0, seed=3)
        self.assertEqual(sorted(c.index for c in many.choices), [0, 1, 2])
        again = self.client.completions.create(model="xlstm-code-mtp", prompt=prompt, max_tokens=8, n=3, temperature=1.0, seed=3)
        self.assertEqual([c.text for c in many.choices], [c.text for c in again.choices])
        lp = self.client.completions.create(model="xlstm-code-mtp", prompt=prompt, max_tokens=4, logprobs=2).choices[0].logprobs
        self.assertEqual(len(lp.token_logprobs), 4)
        self.assertEqual(len(lp.top_logprobs[0]), 2)

    def test_errors_are_sdk_exceptions(self):
        with self.assertRaises(openai.BadRequestError):
            self.client.completions.create(model="xlstm-code-mtp", prompt="x", max_tokens=0)
        with self.assertRaises(openai.BadRequestError):
            self.client.completions.create(model="xlstm-code-mtp", prompt="x", max_tokens=4, temperature=-2)
        with self.assertRaises(openai.NotFoundError):
            self.client.completions.create(model="no-such-model", prompt="x", max_tokens=4)
        with self.assertRaises(openai.BadRequestError):
            self.client.chat.completions.create(model="xlstm-code-mtp", messages=[], max_tokens=4)
        models = self.client.models.list()
        self.assertEqual([m.id for m in models.data], ["xlstm-code-mtp"])

    def test_raw_sse_framing_and_disconnect_cancels(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        conn.request("POST", "/v1/completions", body=json.dumps({"prompt": "def f(x):", "max_tokens": 6, "stream": True}),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        self.assertEqual(resp.status, 200)
        self.assertTrue(resp.getheader("Content-Type").startswith("text/event-stream"))
        events = [e for e in resp.read().decode().split("\n\n") if e]
        self.assertTrue(all(e.startswith("data: ") for e in events))
        self.assertEqual(events[-1], "data: [DONE]")
        conn.close()

        before = server_metrics(self.metrics_port)["xlserve_requests_cancelled_total"]
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        conn.request("POST", "/v1/completions",
                     body=json.dumps({"prompt": "class A:", "max_tokens": 4000, "stream": True}),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read1(64)
        resp.close()  # the client goes away mid-stream
        conn.close()
        end = time.time() + 20
        while time.time() < end:
            m = server_metrics(self.metrics_port)
            if m["xlserve_requests_cancelled_total"] > before and m["xlserve_state_slots_in_use"] == 0:
                break
            time.sleep(0.1)
        self.assertGreater(m["xlserve_requests_cancelled_total"], before)
        self.assertEqual(m["xlserve_state_slots_in_use"], 0)

    def test_health_and_metrics(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=10) as r:
            self.assertEqual(json.loads(r.read())["status"], "ok")
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as r:
            text = r.read().decode()
        self.assertIn("xlserve_gateway_requests_total", text)
        # The upstream's own series, forwarded with a label naming it.
        self.assertIn(f'xlserve_requests_total{{upstream="127.0.0.1:{self.metrics_port}"}}', text)
        self.assertEqual(text.count("# TYPE xlserve_requests_total counter"), 1)


class GatewayLimitsTest(unittest.TestCase):
    def test_auth_size_overload_and_upstream_down(self):
        server, grpc_port, _ = start_server("--max-num-seqs", "1", "--max-queue", "1")
        gateway, port = start_gateway("--upstream", f"127.0.0.1:{grpc_port}", "--api-key", "sekret", "--max-body-mb", "0.01")
        try:
            url = f"http://127.0.0.1:{port}/v1"
            with self.assertRaises(openai.AuthenticationError):
                openai.OpenAI(base_url=url, api_key="wrong", max_retries=0).completions.create(model="xlstm-code-mtp", prompt="x", max_tokens=2)
            client = openai.OpenAI(base_url=url, api_key="sekret", max_retries=0)
            self.assertTrue(client.completions.create(model="xlstm-code-mtp", prompt="x", max_tokens=2).choices)
            with self.assertRaises(openai.APIStatusError) as err:
                client.completions.create(model="xlstm-code-mtp", prompt="y" * 20000, max_tokens=2)
            self.assertEqual(err.exception.status_code, 413)
            codes = []

            def flood():
                try:
                    client.completions.create(model="xlstm-code-mtp", prompt="def f():", max_tokens=300)
                    codes.append(200)
                except openai.RateLimitError:
                    codes.append(429)

            threads = [threading.Thread(target=flood) for _ in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            self.assertIn(429, codes)
        finally:
            stop(gateway)
            stop(server)
        # Nothing listens on the upstream any more: 503, quickly, not a hang.
        gateway, port = start_gateway("--upstream", f"127.0.0.1:{grpc_port}")
        try:
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0, timeout=30)
            with self.assertRaises(openai.InternalServerError) as err:
                client.completions.create(model="xlstm-code-mtp", prompt="x", max_tokens=2)
            self.assertEqual(err.exception.status_code, 503)
        finally:
            stop(gateway)


if __name__ == "__main__":
    unittest.main(verbosity=2)
