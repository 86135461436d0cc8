"""The gateway's DNS discovery on loopback (gateway/upstream_pool.h): `--upstream
dns:///NAME:PORT` serves from every address NAME has, and follows the name as replicas are
added and removed, without a restart; a session stays on its replica meanwhile.

NAME is resolved through /etc/hosts, which the test replaces in a private mount namespace
(root), so the name can point at 127.0.0.1 and 127.0.0.2: two replicas on the same port, as the
pods behind a Kubernetes headless Service are. The gateway re-resolves every 5 s."""

import concurrent.futures
import json
import os
import re
import subprocess
import sys
import tempfile
import unittest
import urllib.request

if os.environ.get("XLSERVE_DNS_TEST_NS") != "1":
    # Run again in a mount namespace of our own, where /etc/hosts can be swapped.
    env = dict(os.environ, XLSERVE_DNS_TEST_NS="1")
    sys.exit(subprocess.call(["unshare", "--mount", "--propagation", "private", sys.executable] + sys.argv, env=env))

XLSERVE = os.path.abspath(sys.argv.pop(1) if len(sys.argv) > 1 else "xlserve")
sys.path.insert(0, os.getcwd())  # the runfiles root: tests/testing is there
from tests.testing.xlserve_processes import wait_for  # noqa: E402

NAME = "replicas.xlserve.test"
# Fixed ports (two replicas share one, as pods behind a headless Service do), below Linux's
# ephemeral range (32768-60999): a client polling a port in that range before the server
# listens can be handed that very port as its own and connect to itself, reading back its own
# request (seen as "BadStatusLine: GET /metrics" under ASan).
PORT = 21000 + (os.getpid() % 200) * 5
GATEWAY = PORT + 1
METRICS = PORT + 2
IPS = ("127.0.0.1", "127.0.0.2")


def http_json(url, body=None, timeout=60):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.load(r)


def requests_served(ip):
    with urllib.request.urlopen(f"http://{ip}:{METRICS}/metrics", timeout=10) as r:
        text = r.read().decode()
    return float(re.search(r"(?m)^xlserve_requests_total (\S+)", text).group(1))


def wait_until(what, predicate, timeout=30):
    if not wait_for(predicate, timeout):
        raise AssertionError(f"timed out waiting for {what}")


class DnsDiscovery(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="xlserve-dns-")
        cls.hosts = os.path.join(cls.tmp, "hosts")
        cls.set_hosts(IPS[:1])
        subprocess.run(["mount", "--bind", cls.hosts, "/etc/hosts"], check=True)
        cls.procs = {}
        cls.logs = []
        # Class cleanups run even when setUpClass fails, which tearDownClass would not.
        cls.addClassCleanup(cls.stop_all)
        for ip in IPS:
            cls.procs[ip] = subprocess.Popen(
                [XLSERVE, "serve", "--model", "models/xlstm-code-mtp", "--device", "cpu", "--threads", "1",
                 "--max-num-seqs", "4", "--host", ip, "--port", str(PORT), "--metrics-port", str(METRICS)],
                stdout=subprocess.DEVNULL, stderr=cls.log(f"serve-{ip}.log"))
        for ip in IPS:
            wait_until(f"replica {ip}", lambda ip=ip: requests_served(ip) == 0)
        cls.procs["gateway"] = subprocess.Popen(
            [XLSERVE, "gateway", "--host", "127.0.0.1", "--port", str(GATEWAY), "--upstream",
             f"dns:///{NAME}:{PORT}"], stdout=subprocess.DEVNULL, stderr=cls.log("gateway.log"))
        wait_until("the gateway", lambda: cls.health()["upstreams"] == 1)

    @classmethod
    def log(cls, name):
        cls.logs.append(open(os.path.join(cls.tmp, name), "w"))
        return cls.logs[-1]

    @classmethod
    def stop_all(cls):
        for p in cls.procs.values():
            if p.poll() is None:
                p.terminate()
                p.wait(timeout=30)
        for f in cls.logs:
            f.close()

    @classmethod
    def set_hosts(cls, ips):
        # Rewritten in place: the bind mount keeps pointing at this file.
        with open(cls.hosts, "w") as f:
            f.write("127.0.0.1 localhost\n" + "".join(f"{ip} {NAME}\n" for ip in ips))

    @classmethod
    def health(cls):
        return http_json(f"http://127.0.0.1:{GATEWAY}/health", timeout=10)

    def complete(self, session):
        out = http_json(f"http://127.0.0.1:{GATEWAY}/v1/completions",
                        {"model": "xlstm-code-mtp", "prompt": "def f(x):", "max_tokens": 4, "session_id": session})
        self.assertEqual(out["usage"]["completion_tokens"], 4)

    def test_replicas_follow_the_name(self):
        # One address: every request goes to it.
        for i in range(4):
            self.complete(f"one-{i}")
        self.assertEqual([requests_served(ip) for ip in IPS], [4, 0])
        self.complete("pinned")
        self.assertEqual(requests_served(IPS[0]), 5)

        # Scale up: the second address joins without a restart and takes new sessions.
        self.set_hosts(IPS)
        wait_until("the second replica to join", lambda: self.health()["upstreams"] == 2, timeout=20)
        # Concurrent, so that the least-loaded choice spreads them.
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            list(pool.map(self.complete, [f"two-{i}" for i in range(6)]))
        self.assertGreater(requests_served(IPS[1]), 0, "the new replica takes requests")
        self.assertEqual(requests_served(IPS[0]) + requests_served(IPS[1]), 11)
        before = requests_served(IPS[0])
        for _ in range(3):
            self.complete("pinned")
        self.assertEqual(requests_served(IPS[0]), before + 3, "a session stays on the replica holding its state")

        # Scale down: the first address leaves the name, then its server stops; nothing fails.
        self.set_hosts(IPS[1:])
        wait_until("the first replica to leave", lambda: self.health()["upstreams"] == 1, timeout=20)
        self.procs[IPS[0]].terminate()
        self.procs[IPS[0]].wait(timeout=30)
        served = requests_served(IPS[1])
        for i in range(4):
            self.complete(f"three-{i}")
        self.complete("pinned")
        self.assertEqual(requests_served(IPS[1]), served + 5)
        self.assertEqual(self.health()["status"], "ok")


if __name__ == "__main__":
    unittest.main()
