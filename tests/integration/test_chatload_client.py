"""chat-client (libstrophe) against a real chatd: log in, see the server's
version and instance, talk to another user, see a bounce, quit cleanly;
and a clear failure for a wrong password."""
import os
import signal
import subprocess
import tempfile
import time
import unittest

import harness


class ChatClient:
    """chat-client with a pipe for what the user types."""

    def __init__(self, port, user, password, *extra):
        """password None: neither --password nor CHAT_PASSWORD."""
        self.dir = tempfile.mkdtemp(prefix="rb-chat-client-")
        self.out_path = os.path.join(self.dir, "stdout")
        self.err_path = os.path.join(self.dir, "stderr")
        self._out = open(self.out_path, "wb")
        self._err = open(self.err_path, "wb")
        env = {k: v for k, v in os.environ.items() if k != "CHAT_PASSWORD"}
        self.p = subprocess.Popen(
            [harness.binary("chat-client"), "--jid", "%s@localhost" % user] +
            (["--password", password] if password is not None else []) +
            ["--server", "127.0.0.1:%d" % port, "--no-tls"] + list(extra),
            stdin=subprocess.PIPE, stdout=self._out, stderr=self._err, env=env)

    def out(self):
        with open(self.out_path, "rb") as f:
            return f.read().decode(errors="replace")

    def wait_out(self, text, timeout=15):
        harness.wait_for(lambda: text in self.out(), timeout=timeout,
                         what="%r in chat-client output:\n%s" % (text, self.out()))

    def type(self, line):
        self.p.stdin.write((line + "\n").encode())
        self.p.stdin.flush()

    def finish(self, timeout=15):
        try:
            rc = self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            rc = self.p.wait(timeout=5)
        self._out.close()
        self._err.close()
        self.p.stdin.close()
        with open(self.err_path, "rb") as f:
            err = f.read().decode(errors="replace")
        m = harness.SANITIZER_RE.search(err)
        return rc, (err[m.start():m.start() + 4000] if m else None)


class ChatClientTest(unittest.TestCase):
    def setUp(self):
        self.port, self.http = harness.free_port(), harness.free_port()
        self.d = harness.Proc([harness.binary("chatd"), "--listen", "127.0.0.1:%d" % self.port,
                               "--http", "127.0.0.1:%d" % self.http, "--auth-any",
                               "--version-label", "v-cc", "--instance", "pod-7",
                               "--log-level", "warn"], name="chatd")
        harness.wait_for(lambda: harness.http_get("http://127.0.0.1:%d/healthz" % self.http)[0]
                         == 200, what="chatd up")

    def tearDown(self):
        self.assertEqual(self.d.stop(signal.SIGINT, timeout=15), 0)
        self.assertIsNone(self.d.sanitizer_report())

    def test_talk_bounce_quit(self):
        # --auth-any takes the user name as the SCRAM password.
        alice = ChatClient(self.port, "alice", "alice")
        bob = ChatClient(self.port, "bob", "bob")
        for c in (alice, bob):
            c.wait_out("* server chatd version v-cc instance pod-7")
        bob.type("/msg alice hello from bob")
        alice.wait_out("<bob@localhost> hello from bob")
        alice.type("and hello back")  # goes to the last peer
        bob.wait_out("<alice@localhost> and hello back")
        bob.type("/msg nobody anyone there?")
        bob.wait_out("! message to nobody@localhost bounced: service-unavailable")
        for c in (alice, bob):
            c.type("/quit")
            rc, san = c.finish()
            self.assertEqual(rc, 0, c.out())
            self.assertIsNone(san)
            self.assertIn("* disconnected", c.out())

    def test_lines_typed_at_once(self):
        # Two lines in one write (a paste, or a pipe): both are handled at
        # once, none waits in stdio's buffer for more input.
        alice = ChatClient(self.port, "alice", "alice")
        bob = ChatClient(self.port, "bob", "bob")
        for c in (alice, bob):
            c.wait_out("* server chatd version v-cc instance pod-7")
        bob.type("/msg alice first line\n/msg alice second line")
        alice.wait_out("<bob@localhost> second line")
        self.assertIn("<bob@localhost> first line", alice.out())
        for c in (alice, bob):
            c.type("/quit")
            rc, san = c.finish()
            self.assertEqual(rc, 0, c.out())
            self.assertIsNone(san)

    def test_tutorial_command_without_password(self):
        # docs/tutorial.md's `chat-client --jid alice@localhost --no-tls`: no
        # password means the user name, what chatd --auth-any takes for SCRAM
        # (it failed with "could not log in" before).
        c = ChatClient(self.port, "alice", None)
        c.wait_out("* logged in as alice@localhost/")
        c.type("/quit")
        rc, san = c.finish()
        self.assertEqual(rc, 0, c.out())
        self.assertIsNone(san)

    def test_connection_refused(self):
        # Nothing listens: say so, not "authentication failed".
        c = ChatClient(harness.free_port(), "alice", "alice")
        rc, san = c.finish()
        self.assertEqual(rc, 1)
        self.assertIsNone(san)
        self.assertIn("could not connect to 127.0.0.1:", c.out())
        self.assertIn("connection refused", c.out())
        self.assertNotIn("authentication", c.out())

    def test_wrong_password(self):
        c = ChatClient(self.port, "carol", "not-carol")
        rc, san = c.finish()
        self.assertEqual(rc, 1)
        self.assertIsNone(san)
        self.assertIn("could not log in: authentication failed", c.out())


if __name__ == "__main__":
    unittest.main()
