"""Deployment checks that need no Docker engine: the compose file validates, the Dockerfile has
what a production image needs, and the same topology started on loopback by scripts/stack.sh
(two CPU replicas, the gateway, Debian's prometheus) serves, balances, pins sessions, gets
scraped, and survives losing a replica."""

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.request

import openai
import yaml

XLSERVE = os.path.abspath(sys.argv.pop(1) if len(sys.argv) > 1 else "xlserve")
# Parallel test runs get their own ports, below Linux's ephemeral range (32768-60999), where a
# client polling a port before its server listens could connect to itself (dns_discovery_test).
BASE = 24000 + (os.getpid() % 50) * 40


def metrics(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return {l.rsplit(" ", 1)[0]: float(l.rsplit(" ", 1)[1]) for l in r.read().decode().splitlines()
                if l and not l.startswith("#")}


class ComposeAndDockerfile(unittest.TestCase):
    def test_compose_config_validates(self):
        r = subprocess.run(["docker-compose", "-f", "docker/docker-compose.yml", "config"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        for needle in ("xlserve-0", "xlserve-1", "gateway", "prometheus", "grafana", "loadtest", "capabilities",
                       "service_healthy"):
            self.assertIn(needle, r.stdout)
        r = subprocess.run(["docker-compose", "-f", "docker/docker-compose.yml", "--profile", "loadtest", "config",
                            "--services"], capture_output=True, text=True)
        self.assertIn("loadtest", r.stdout.split())

    def test_cpu_compose_needs_no_registry_and_stays_on_loopback(self):
        r = subprocess.run(["docker-compose", "-f", "docker/docker-compose.cpu.yml", "--profile", "loadtest", "config"],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        services = yaml.safe_load(r.stdout)["services"]
        self.assertEqual(set(services), {"xlserve-0", "xlserve-1", "gateway", "prometheus", "loadtest"})
        for name, svc in services.items():
            self.assertEqual(svc["network_mode"], "host", name)
            # Every image is built here: xlserve's own, or Prometheus from Debian's package.
            self.assertIn(svc["image"], ("xlserve:cpu", "xlserve-prometheus:local"), name)
            args = svc["command"]
            if "--host" in args:
                self.assertEqual(args[args.index("--host") + 1], "127.0.0.1", name)
        self.assertIn("--web.listen-address=127.0.0.1:9190", services["prometheus"]["command"])
        gateway = services["gateway"]["command"]
        replicas = [services[f"xlserve-{i}"]["command"] for i in (0, 1)]
        self.assertEqual([gateway[i + 1] for i, a in enumerate(gateway) if a == "--upstream"],
                         [f"127.0.0.1:{c[c.index('--port') + 1]}" for c in replicas])
        scrape = open("docker/prometheus/prometheus-host.yml").read()
        for c in replicas:
            self.assertIn(f"127.0.0.1:{c[c.index('--metrics-port') + 1]}", scrape)

    def test_dockerignore_keeps_this_machine_out_of_images(self):
        ignored = open(".dockerignore").read().split()
        for entry in (".git", ".venv", ".bazelrc.setup", "bazel-*", "dist"):
            self.assertIn(entry, ignored)
        text = open("docker/Dockerfile").read()
        # VARIANT picks the Bazel config and CUDA_ARCH the nvcc targets, and the build checks it.
        self.assertIn("--config=${VARIANT}", text)
        self.assertIn("--define=xlserve_cuda_arch=${CUDA_ARCH}", text)
        self.assertIn("grep -q libcudart", text)

    def test_dockerfile_has_what_a_production_image_needs(self):
        text = open("docker/Dockerfile").read()
        stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.M)
        self.assertGreaterEqual(len(stages), 2, "multi-stage build")
        self.assertTrue(any("devel" in s[0] or "BUILD_IMAGE" in s[0] for s in stages))
        self.assertRegex(text, r"(?m)^ARG CUDA_ARCH=")
        self.assertRegex(text, r"(?m)^ARG VARIANT=")  # the CPU-only variant
        self.assertRegex(text, r"(?m)^USER (?!root)\S+")
        self.assertRegex(text, re.compile(r"^HEALTHCHECK .*?CMD \[\"xlserve\", \"health\"", re.M | re.S))
        entry = re.search(r"(?m)^ENTRYPOINT (.*)$", text)
        self.assertIsNotNone(entry)
        self.assertIsInstance(json.loads(entry.group(1)), list, "exec-form entrypoint")
        self.assertIn("models/xlstm-code-mtp", text)
        for path in re.findall(r"(?m)^COPY (?:--\S+ )*(\S+) ", text):
            if not path.startswith("/") and path != ".":
                self.assertTrue(os.path.exists(path), path)

    def test_grafana_dashboard_covers_the_metrics(self):
        dash = json.load(open("docker/grafana/dashboards/xlserve.json"))
        exprs = " ".join(t["expr"] for p in dash["panels"] for t in p["targets"])
        for metric in ("time_to_first_token", "time_per_output_token", "generation_tokens_total", "requests_waiting",
                       "state_slots_in_use", "tokens_per_decode_step"):
            self.assertIn(metric, exprs)
        served = metrics_names()
        for name in re.findall(r"xlserve_[a-z_]+", exprs):
            self.assertIn(re.sub(r"_bucket$", "", name), served, name)


def metrics_names():
    # The metric names a server exposes, read from a real one.
    p = subprocess.Popen([XLSERVE, "serve", "--model", "tests/golden/models/f32_base", "--port", "0", "--metrics-port",
                          "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        port = int(re.search(r"metrics (\d+)", p.stdout.readline()).group(1))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            return set(re.findall(r"(?m)^# TYPE (\S+)", r.read().decode()))
    finally:
        p.terminate()
        p.wait()


class LoopbackStack(unittest.TestCase):
    def setUp(self):
        self.state = tempfile.mkdtemp(prefix="xlserve-stack-")
        env = dict(os.environ, XLSERVE_BIN=XLSERVE)
        r = subprocess.run(["scripts/stack.sh", "up", "--base-port", str(BASE), "--state-dir", self.state,
                            "--scrape-interval", "1s"], capture_output=True, text=True, env=env, timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.env = env
        self.client = openai.OpenAI(base_url=f"http://127.0.0.1:{BASE + 20}/v1", api_key="x", max_retries=0,
                                    timeout=60)

    def tearDown(self):
        subprocess.run(["scripts/stack.sh", "down", "--state-dir", self.state], env=self.env, timeout=60)

    def complete(self, **kw):
        return self.client.completions.create(model="xlstm-code-mtp", max_tokens=8, **kw)

    def test_stack_serves_balances_pins_and_is_scraped(self):
        errors = []

        def worker(k):
            try:
                for j in range(4):
                    self.complete(prompt=f"def f{k}_{j}(x):")
            except Exception as e:  # noqa: BLE001 - any failure fails the test below
                errors.append(e)

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        totals = [metrics(BASE + 10 + i)["xlserve_requests_total"] for i in (0, 1)]
        self.assertEqual(sum(totals), 24)
        self.assertTrue(all(t > 0 for t in totals), f"requests spread over both replicas: {totals}")

        for turn in range(3):
            self.complete(prompt=f"\n# turn {turn}\n", extra_body={"session_id": "pinned"})
        sessions = [metrics(BASE + 10 + i)["xlserve_sessions"] for i in (0, 1)]
        self.assertEqual(sorted(sessions), [0.0, 1.0], "the session lives on exactly one replica")

        end = time.time() + 30
        series = []
        while time.time() < end:
            with urllib.request.urlopen(f"http://127.0.0.1:{BASE + 30}/api/v1/query?query=xlserve_requests_total",
                                        timeout=10) as r:
                series = json.load(r)["data"]["result"]
            if len(series) == 2 and sum(float(s["value"][1]) for s in series) >= 27:
                break
            time.sleep(0.5)
        self.assertEqual(len(series), 2)
        self.assertGreaterEqual(sum(float(s["value"][1]) for s in series), 27)

    def test_loadtest_through_the_gateway(self):
        out = os.path.join(self.state, "loadtest.json")
        r = subprocess.run([XLSERVE, "loadtest", "--http", f"http://127.0.0.1:{BASE + 20}", "--concurrency", "4",
                            "--num-requests", "16", "--max-tokens", "8", "--prompt-tokens", "16", "--json", out],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(out) as f:
            report = json.load(f)
        self.assertEqual(report["requests"]["succeeded"], 16)
        self.assertEqual(report["errors"], {})
        totals = [metrics(BASE + 10 + i)["xlserve_requests_total"] for i in (0, 1)]
        self.assertEqual(sum(totals), 16)
        self.assertTrue(all(t > 0 for t in totals), f"load spread over both replicas: {totals}")

    def test_losing_a_replica_mid_run_reroutes_without_hanging(self):
        outcomes = []

        def worker():
            for j in range(6):
                try:
                    self.complete(prompt=f"import os  # {j}")
                    outcomes.append("ok")
                except openai.APIStatusError as e:
                    outcomes.append(e.status_code)
                except openai.APIConnectionError:
                    outcomes.append("connection")

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        with open(os.path.join(self.state, "xlserve-0.pid")) as f:
            os.kill(int(f.read()), signal.SIGKILL)
        start = time.time()
        for t in threads:
            t.join(timeout=90)
        self.assertFalse(any(t.is_alive() for t in threads), "a client hung")
        # Requests in flight on the killed replica may fail; every later one is served.
        after = [self.complete(prompt=f"x = {k}").choices[0].finish_reason for k in range(6)]
        self.assertTrue(all(r in ("length", "stop") for r in after))
        self.assertLess(time.time() - start, 90)
        self.assertGreater(outcomes.count("ok"), 12)


if __name__ == "__main__":
    unittest.main(verbosity=2)
