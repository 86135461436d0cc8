"""A started `xlserve serve` for the served benches (serve_7b.py, serve_speculation.py): its
ports from the line it prints once listening, its metrics, its memory, and a clean stop."""
import re
import signal
import subprocess
import urllib.request


class Server:
    def __init__(self, args, log_path):
        """args: the whole command line, `serve` and its flags, with --port 0 --metrics-port 0."""
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.proc.stdout.readline()
        m = re.search(r"listening on (\S+):(\d+) metrics (\d+)", line)
        if not m:
            self.proc.wait(timeout=30)
            self.log.close()
            raise RuntimeError(f"server did not start ({line!r}); see {log_path}")
        self.port, self.metrics_port = int(m.group(2)), int(m.group(3))

    def metrics(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as r:
            out = {}
            for line in r.read().decode().splitlines():
                if line and not line.startswith("#"):
                    name, value = line.rsplit(" ", 1)
                    out[name] = float(value)
            return out

    def rss_gib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            kb = next(int(l.split()[1]) for l in f if l.startswith("VmRSS"))
        return kb / 2**20

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)
        self.proc.stdout.close()
        self.log.close()


def engine_share(before, after):
    """The passes between two readings of Server.metrics(): their number, the mean pass and the
    engine thread's own host time per pass, in ms."""
    steps, step_s, loop_s = (after.get(k, 0) - before.get(k, 0) for k in (
        "xlserve_engine_steps_total", "xlserve_engine_step_seconds_total", "xlserve_engine_loop_seconds_total"))
    if steps <= 0:
        return {"passes": 0}
    return {"passes": int(steps), "pass_ms": 1e3 * step_s / steps, "host_ms": 1e3 * (loop_s - step_s) / steps}
