"""Shared pieces for the integration tests: where the binaries are, free
loopback ports, real processes started and stopped with their logs kept, and
a check that no sanitizer report appeared.

Tests import it as `import harness` (tests/run.py puts tests/lib on
PYTHONPATH). Every wait here is bounded.
"""
import os
import re
import signal as _signal
import socket
import subprocess
import tempfile
import time
import urllib.request

ROOT = os.environ.get("RAINBOW_ROOT") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("RAINBOW_BUILD") or os.path.join(ROOT, "build-san")

SANITIZER_RE = re.compile(
    r"(ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|"
    r"ERROR: UndefinedBehaviorSanitizer)")


def binary(name):
    """Path of a built program (chatd, chatload, rainbow, chat-client) or a
    test helper (tests/helpers/NAME.c -> BUILD/tests/NAME)."""
    for p in (os.path.join(BUILD, name), os.path.join(BUILD, "tests", name)):
        if os.path.exists(p):
            return p
    raise FileNotFoundError("%s not built in %s" % (name, BUILD))


def free_port(host="127.0.0.1"):
    """A TCP port that was free a moment ago on host."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(pred, timeout=10.0, interval=0.02, what="condition"):
    """Polls pred() until it returns a true value; raises after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError("timed out waiting for " + what)
        time.sleep(interval)


def http_get(url, timeout=5.0):
    """(status, body) of a GET; status 0 when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except (urllib.error.URLError, ConnectionError, socket.timeout, OSError):
        return 0, ""


def parse_metrics(text):
    """Prometheus text format -> {'name{labels}': float, 'name': float}."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, val = line.rpartition(" ")
        out[key] = float(val)
    return out


class Proc:
    """A real process whose stdout/stderr go to files in a temp dir."""

    def __init__(self, argv, env=None, name=None, cwd=None):
        self.argv = [str(a) for a in argv]
        self.name = name or os.path.basename(self.argv[0])
        self.dir = tempfile.mkdtemp(prefix="rb-%s-" % self.name)
        self.out_path = os.path.join(self.dir, "stdout")
        self.err_path = os.path.join(self.dir, "stderr")
        e = dict(os.environ)
        if env:
            e.update({k: str(v) for k, v in env.items()})
        self._out = open(self.out_path, "wb")
        self._err = open(self.err_path, "wb")
        self.p = subprocess.Popen(self.argv, stdout=self._out, stderr=self._err,
                                  stdin=subprocess.DEVNULL, env=e, cwd=cwd)

    @property
    def pid(self):
        return self.p.pid

    def alive(self):
        return self.p.poll() is None

    def stdout(self):
        with open(self.out_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stderr(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode(errors="replace")

    def signal(self, sig):
        if self.alive():
            self.p.send_signal(sig)

    def wait(self, timeout=30.0):
        try:
            return self.p.wait(timeout=timeout)
        finally:
            if self.p.returncode is not None:
                self._out.close()
                self._err.close()

    def stop(self, sig=_signal.SIGTERM, timeout=30.0):
        """Sends sig and waits; SIGKILL after timeout. Returns the exit code."""
        if self.alive():
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(timeout=10)
        self._out.close()
        self._err.close()
        return self.p.returncode

    def sanitizer_report(self):
        """The sanitizer report in stderr, or None."""
        err = self.stderr()
        m = SANITIZER_RE.search(err)
        return err[m.start():m.start() + 4000] if m else None
