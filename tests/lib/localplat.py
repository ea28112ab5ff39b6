"""A local rainbow platform in a temp state dir for the integration tests:
`rainbow local up` on a free port, the real chatd as replicas, helpers to
run rainbow, read its status, record and the switch's status, to log real
XMPP clients in through the switch, and a teardown that stops everything
and returns the sanitizer reports found in the switch's and replicas' logs.
"""
import json
import os
import shutil
import socket
import subprocess
import tempfile

import harness
import xmpp


def read_record(state):
    """The events of a state dir's record.jsonl, oldest first ([] before the first)."""
    path = os.path.join(state, "record.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


class Platform:
    def __init__(self, test, prefix="rb-local-", up_args=()):
        self.test = test
        self.state = tempfile.mkdtemp(prefix=prefix)
        self.port = harness.free_port()
        self.listen = "127.0.0.1:%d" % self.port
        self.rainbow = harness.binary("rainbow")
        self.up_args = list(up_args)
        self.env = dict(os.environ)
        self.env["RAINBOW_CHATD"] = harness.binary("chatd")
        self.env["RAINBOW_STATE_DIR"] = self.state

    def rb(self, *args, timeout=120, env=None):
        e = dict(self.env)
        if env:
            e.update(env)
        return subprocess.run([self.rainbow] + list(args), capture_output=True, text=True,
                              timeout=timeout, env=e, stdin=subprocess.DEVNULL)

    def up(self, *extra):
        r = self.rb("local", "up", "--listen", self.listen, *self.up_args, *extra)
        self.test.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return r

    def deploy(self, sha, *extra, ok=True):
        r = self.rb("deploy", sha, "--ready-timeout", "20s", "--settle", "1s",
                    "--poll", "0.2s", *extra)
        if ok:
            self.test.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return r

    def status(self):
        r = self.rb("status", "-o", "json")
        self.test.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return json.loads(r.stdout)

    def colour(self, sha):
        for c in self.status()["colours"]:
            if c["sha"] == sha:
                return c
        return None

    def switch(self):
        """The switch's own status (rainbow local status -o json)."""
        r = self.rb("local", "status", "-o", "json")
        self.test.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return json.loads(r.stdout)

    def replicas(self, sha):
        """The switch's own view of a colour's replicas (pid, state, ready, ports,
        restarts, lost, count, fault), by name."""
        for c in self.switch().get("colours", []):
            if c["sha"] == sha:
                return {r["name"]: r for r in c["replicas"]}
        return {}

    def record(self):
        return read_record(self.state)

    def login(self, n, prefix="u", timeout=10.0):
        """n real XMPP clients logged in through the switch (PLAIN; the
        replicas run with --auth-any). Raises when one cannot log in."""
        out = []
        for i in range(n):
            c = xmpp.Client(self.port, domain="localhost", timeout=timeout)
            c.login("%s%d" % (prefix, i), "pw", mech="PLAIN")
            out.append(c)
        return out

    def sanitizer_reports(self):
        out = []
        paths = [os.path.join(self.state, "switch.log")]
        logs = os.path.join(self.state, "logs")
        if os.path.isdir(logs):
            paths += [os.path.join(logs, n) for n in os.listdir(logs)]
        for p in paths:
            if not os.path.exists(p):
                continue
            with open(p, errors="replace") as f:
                text = f.read()
            m = harness.SANITIZER_RE.search(text)
            if m:
                out.append("%s:\n%s" % (p, text[m.start():m.start() + 3000]))
        return out

    def down(self):
        self.rb("local", "down", "--force")
        reports = self.sanitizer_reports()
        shutil.rmtree(self.state, ignore_errors=True)
        return reports
