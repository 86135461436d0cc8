"""The gateway attacked as in issue 19, on loopback with the shipped model: each test pins one
defect that was found (port sharing, unbounded memory, starvation, overload, abandoned work,
open endpoints, wrapped numbers, unbounded shutdown, a /health that lied). Every load is
bounded in count and time."""

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

XLSERVE = os.path.abspath(sys.argv.pop(1) if len(sys.argv) > 1 else "xlserve")
MODEL = "models/xlstm-code-mtp"
sys.path.insert(0, os.getcwd())  # the runfiles root: tests/testing is there
from tests.testing import xlserve_processes as processes  # noqa: E402
from tests.testing.xlserve_processes import TIME_SCALE, start, wait_for  # noqa: E402

processes.XLSERVE = XLSERVE


def start_server(*extra):
    return processes.start_server(*extra)


def start_gateway(grpc_port, *extra, env=None):
    return processes.start_gateway("--upstream", f"127.0.0.1:{grpc_port}", *extra, env=env)


def stop(proc, timeout=30):
    proc.terminate()
    return proc.wait(timeout=timeout)


def metrics(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return {l.rsplit(" ", 1)[0]: float(l.rsplit(" ", 1)[1]) for l in r.read().decode().splitlines()
                if l and not l.startswith("#")}


def post(port, path, body, headers=None, timeout=60):
    """(status, headers, body) of one request; body may be a dict (sent as JSON) or bytes."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout * TIME_SCALE)
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    conn.request("POST", path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
    resp = conn.getresponse()
    out = resp.status, dict(resp.getheaders()), resp.read()
    conn.close()
    return out


def get(port, path, headers=None, timeout=10):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request("GET", path, headers=headers or {})
    resp = conn.getresponse()
    out = resp.status, dict(resp.getheaders()), resp.read()
    conn.close()
    return out


def peak_rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmHWM:\s+(\d+) kB", f.read()).group(1)) / 1024


class GatewayHardeningTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server, cls.grpc_port, cls.metrics_port = start_server("--max-num-seqs", "2")
        cls.gateway, cls.port = start_gateway(cls.grpc_port, "--max-body-mb", "1")

    @classmethod
    def tearDownClass(cls):
        assert stop(cls.gateway) == 0
        assert stop(cls.server) == 0

    def slots_free(self):
        return wait_for(lambda: metrics(self.metrics_port)["xlserve_state_slots_in_use"] == 0, 20)

    def test_a_second_gateway_on_the_same_port_fails(self):
        r = subprocess.run([XLSERVE, "gateway", "--port", str(self.port), "--upstream", f"127.0.0.1:{self.grpc_port}"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 1, r.stderr[-300:])
        self.assertIn("cannot listen", r.stderr)

    def test_wrapping_numbers_and_mistyped_fields_are_400(self):
        for body in ({"prompt": "x", "max_tokens": 4294967297}, {"prompt": "x", "max_tokens": 2, "n": 4294967297},
                     {"prompt": [1, 4294967652], "max_tokens": 2},
                     {"prompt": "x", "max_tokens": 2, "stream": True, "stream_options": {"include_usage": "yes"}},
                     {"prompt": "x", "max_tokens": 2, "session_id": "s\n[info] forged"}):
            with self.subTest(body=body):
                status, headers, data = post(self.port, "/v1/completions", body)
                self.assertEqual(status, 400, data)
                self.assertNotIn("EXCEPTION_WHAT", {k.upper() for k in headers})
                self.assertEqual(json.loads(data)["error"]["type"], "invalid_request_error")

    def test_chat_template_does_not_multiply_content(self):
        # A role full of "{content}" made the prompt len(role) x len(content) bytes: here 200
        # copies of the content, far beyond the server's 8192 prompt tokens.
        role, content = "{content}" * 200, "word " * 100
        status, _, data = post(self.port, "/v1/chat/completions",
                               {"messages": [{"role": role, "content": content}], "max_tokens": 1})
        self.assertEqual(status, 200, data)
        self.assertLess(json.loads(data)["usage"]["prompt_tokens"], 2000)

    def test_chunked_body_beyond_the_limit_is_refused_unbuffered(self):
        before = peak_rss_mb(self.gateway.pid)
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n%s\r\n" % (1 << 20, b"x" * (1 << 20))
        try:
            for _ in range(96):  # 96 MB against a 1 MB limit
                sock.sendall(chunk)
        except OSError:
            pass  # the gateway stopped reading
        reply = b""
        try:
            while b"\r\n\r\n" not in reply:
                data = sock.recv(4096)
                if not data:
                    break
                reply += data
        except OSError:
            pass
        sock.close()
        self.assertTrue(reply.startswith(b"HTTP/1.1 413"), reply[:100])
        self.assertLess(peak_rss_mb(self.gateway.pid) - before, 24)

    def test_slow_clients_do_not_starve_the_gateway(self):
        # Twice as many slow clients as the gateway has worker threads, each sending a byte at a
        # time; connected one by one, so that each is accepted.
        slow = []
        for _ in range(128):
            slow.append(socket.create_connection(("127.0.0.1", self.port)))
            time.sleep(0.005)
        stop_drip = threading.Event()

        def drip():
            for byte in b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
                for s in slow:
                    try:
                        s.send(bytes([byte]))
                    except OSError:
                        pass
                if stop_drip.wait(0.5):
                    return

        dripper = threading.Thread(target=drip)
        dripper.start()
        try:
            time.sleep(1)
            start_time = time.time()
            status, _, _ = get(self.port, "/health", timeout=5)
            self.assertEqual(status, 200)
            status, _, data = post(self.port, "/v1/completions", {"prompt": "def f(x):", "max_tokens": 2}, timeout=10)
            self.assertEqual(status, 200, data)
            self.assertLess(time.time() - start_time, 3 * TIME_SCALE)
        finally:
            stop_drip.set()
            dripper.join()
            for s in slow:
                s.close()

    def test_a_client_that_leaves_cancels_its_request(self):
        for stream in (False, True):
            with self.subTest(stream=stream):
                before = metrics(self.metrics_port)["xlserve_requests_cancelled_total"]
                sock = socket.create_connection(("127.0.0.1", self.port))
                body = json.dumps({"prompt": "class A:", "max_tokens": 3000, "ignore_eos": True,
                                   "stream": stream}).encode()
                sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                self.assertTrue(wait_for(lambda: metrics(self.metrics_port)["xlserve_state_slots_in_use"] > 0, 10))
                sock.close()
                self.assertTrue(wait_for(
                    lambda: metrics(self.metrics_port)["xlserve_requests_cancelled_total"] > before, 5))
                self.assertTrue(self.slots_free())

    def test_a_streaming_client_that_leaves_before_its_first_token_cancels_it(self):
        # An 8000-token prompt takes seconds to prefill on the CPU: leave well before the first token.
        before = metrics(self.metrics_port)
        sock = socket.create_connection(("127.0.0.1", self.port))
        body = json.dumps({"prompt": [65] * 8000, "max_tokens": 8, "stream": True}).encode()
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        self.assertTrue(wait_for(lambda: metrics(self.metrics_port)["xlserve_state_slots_in_use"] > 0, 10))
        sock.close()
        self.assertTrue(self.slots_free())
        after = metrics(self.metrics_port)
        self.assertGreater(after["xlserve_requests_cancelled_total"], before["xlserve_requests_cancelled_total"])
        self.assertLess(after["xlserve_prefill_tokens_total"] - before["xlserve_prefill_tokens_total"], 8000)
        self.assertEqual(after["xlserve_generation_tokens_total"], before["xlserve_generation_tokens_total"])

    def test_overload_is_answered_with_429_and_retry_after(self):
        # 10x the two slots, all at once: each gets an answer, none a reset.
        results, barrier = [], threading.Barrier(20)

        def client():
            barrier.wait()
            try:
                status, headers, data = post(self.port, "/v1/completions",
                                             {"prompt": "def f(x):", "max_tokens": 16, "ignore_eos": True}, timeout=120)
                results.append((status, headers.get("Retry-After")))
            except OSError as e:
                results.append((repr(e), None))

        threads = [threading.Thread(target=client) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        statuses = sorted(str(s) for s, _ in results)
        self.assertTrue(all(s in ("200", "429") for s in statuses), statuses)
        self.assertIn("429", statuses)
        self.assertTrue(all(retry == "1" for s, retry in results if s == 429))
        self.assertTrue(self.slots_free())


class GatewaySecurityTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server, cls.grpc_port, cls.metrics_port = start_server("--max-num-seqs", "2")
        cls.key_file = tempfile.NamedTemporaryFile("w", suffix=".keys", delete=False)
        cls.key_file.write("# gateway keys\nkey-from-file\n")
        cls.key_file.close()
        env = dict(os.environ, XLSERVE_GATEWAY_API_KEYS="key-from-env-1,key-from-env-2")
        cls.gateway, cls.port = start_gateway(cls.grpc_port, "--api-key-file", cls.key_file.name,
                                              "--upstream-metrics", f"127.0.0.1:{cls.metrics_port}", env=env)

    @classmethod
    def tearDownClass(cls):
        assert stop(cls.gateway) == 0
        assert stop(cls.server) == 0
        os.unlink(cls.key_file.name)

    def test_every_endpoint_but_livez_needs_a_key(self):
        for path in ("/health", "/metrics", "/v1/models"):
            with self.subTest(path=path):
                self.assertEqual(get(self.port, path)[0], 401)
                self.assertEqual(get(self.port, path, {"Authorization": "Bearer wrong"})[0], 401)
                self.assertEqual(get(self.port, path, {"Authorization": "Bearer key-from-file"})[0], 200)
        status, _, body = get(self.port, "/livez")
        self.assertEqual((status, body), (200, b"ok\n"))
        _, _, text = get(self.port, "/metrics", {"Authorization": "Bearer key-from-env-2"})
        self.assertIn(f'upstream="127.0.0.1:{self.metrics_port}"', text.decode())
        status, _, body = get(self.port, "/metrics")
        self.assertNotIn(b"127.0.0.1", body)

    def test_the_key_is_checked_before_the_body_is_read(self):
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 300000000\r\n\r\n")
        self.assertTrue(sock.recv(4096).startswith(b"HTTP/1.1 401"))
        sock.close()

    def test_only_json_posts_are_accepted(self):
        auth = {"Authorization": "Bearer key-from-env-1"}
        body = json.dumps({"prompt": "x", "max_tokens": 1}).encode()
        for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
            with self.subTest(content_type=content_type):
                status, _, _ = post(self.port, "/v1/completions", body, {**auth, "Content-Type": content_type})
                self.assertEqual(status, 415)
        status, _, _ = post(self.port, "/v1/completions", body, {**auth, "Content-Type": "application/json; charset=utf-8"})
        self.assertEqual(status, 200)

    def test_sessions_belong_to_the_key_that_opened_them(self):
        def turn(key, prompt):
            status, _, data = post(self.port, "/v1/completions",
                                   {"prompt": prompt, "max_tokens": 4, "session_id": "shared-name"},
                                   {"Authorization": f"Bearer {key}"})
            self.assertEqual(status, 200, data)
            return json.loads(data)["usage"]["prompt_tokens_details"]["cached_tokens"]

        self.assertEqual(turn("key-from-file", "def fibonacci(n):"), 0)
        self.assertGreater(turn("key-from-file", "\n\nprint(1)"), 0)
        self.assertEqual(turn("key-from-env-1", "\n\nprint(1)"), 0)  # another key, a new session


def open_stream(port, max_tokens=3000):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("POST", "/v1/completions", body=json.dumps(
        {"prompt": "class A:", "max_tokens": max_tokens, "ignore_eos": True, "stream": True}),
        headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    return conn, resp.status


class GatewayLifecycleTest(unittest.TestCase):
    def test_shutdown_cancels_what_runs_past_the_grace_period(self):
        server, grpc_port, metrics_port = start_server("--max-num-seqs", "1")
        gateway, port = start_gateway(grpc_port)  # default grace: 5 s
        try:
            conn, status = open_stream(port)  # about a minute of decoding on 2 CPU cores
            self.assertEqual(status, 200)
            start_time = time.time()
            gateway.send_signal(signal.SIGTERM)
            self.assertEqual(gateway.wait(timeout=30), 0)
            self.assertLess(time.time() - start_time, 9)
            self.assertTrue(wait_for(lambda: metrics(metrics_port)["xlserve_state_slots_in_use"] == 0, 10))
            conn.close()
        finally:
            for p in (gateway, server):
                if p.poll() is None:
                    stop(p)

    def test_health_is_not_ready_while_the_replicas_drain(self):
        server, grpc_port, _ = start_server("--max-num-seqs", "1", "--shutdown-grace-s", "30")
        gateway, port = start_gateway(grpc_port)
        try:
            self.assertEqual(get(port, "/health")[0], 200)
            conn, status = open_stream(port)
            self.assertEqual(status, 200)
            server.send_signal(signal.SIGTERM)  # draining: the running stream may finish, nothing new starts
            self.assertTrue(wait_for(lambda: get(port, "/health")[0] == 503, 10))
            status, _, data = post(port, "/v1/completions", {"prompt": "x", "max_tokens": 2})
            self.assertEqual(status, 503)
            self.assertNotIn(b"127.0.0.1", data)  # no replica addresses in answers
            conn.close()
        finally:
            for p in (gateway, server):
                if p.poll() is None:
                    stop(p)


if __name__ == "__main__":
    unittest.main(verbosity=2)
