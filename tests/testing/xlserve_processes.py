"""Starting `xlserve serve` and `xlserve gateway` for end-to-end tests: each prints its
"listening on" line first, which gives the ports it picked (--port 0). Tests set XLSERVE to the
binary under test before starting anything."""

import os
import re
import subprocess
import threading
import time

XLSERVE = "xlserve"
MODEL = "models/xlstm-code-mtp"
# Sanitizer builds run the model several times slower (.bazelrc sets the factor); every wait on
# the server scales with it.
TIME_SCALE = float(os.environ.get("XLSERVE_TEST_TIME_SCALE", "1"))


def wait_for(predicate, timeout):
    """Polls `predicate` for `timeout` seconds times TIME_SCALE; an OSError (not listening yet)
    counts as false. Returns whether it became true."""
    end = time.time() + timeout * TIME_SCALE
    while True:
        try:
            if predicate():
                return True
        except OSError:
            pass
        if time.time() >= end:
            return False
        time.sleep(0.05)


def start(args, pattern, env=None):
    """Runs `xlserve ARGS`; returns the process and the match of `pattern` on its first line."""
    proc = subprocess.Popen([XLSERVE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()
    m = re.search(pattern, line)
    if not m:
        proc.kill()
        raise RuntimeError(f"{args[0]} did not start: {line!r} {proc.stderr.read()}")
    # A full pipe would block the process: drain both, and close each at its end (an unclosed
    # pipe is a ResourceWarning when the test exits).
    for pipe in (proc.stdout, proc.stderr):
        threading.Thread(target=drain, args=(pipe,), daemon=True).start()
    return proc, m


def drain(pipe):
    with pipe:
        pipe.read()


def start_server(*extra, env=None, metrics=True):
    """The shipped model on the CPU; (process, gRPC port, metrics port or None)."""
    if metrics:
        proc, m = start(["serve", "--model", MODEL, "--port", "0", "--metrics-port", "0", "--threads", "2", *extra],
                        r"listening on [\d.]+:(\d+) metrics (\d+)", env=env)
        return proc, int(m.group(1)), int(m.group(2))
    proc, m = start(["serve", "--model", MODEL, "--port", "0", "--metrics-port", "-1", "--threads", "2", *extra],
                    r"listening on [\d.]+:(\d+)", env=env)
    return proc, int(m.group(1)), None


def start_gateway(*extra, env=None):
    """(process, HTTP port)."""
    proc, m = start(["gateway", "--port", "0", *extra], r"listening on [\d.]+:(\d+)", env=env)
    return proc, int(m.group(1))
