"""Interop: slixmpp (Debian's python3-slixmpp, not written here) against
chatd's stream management and session moves. slixmpp enables XEP-0198 on
an instance of one colour; chatd moves the session (<see-other-host/>
naming an instance of the other colour); slixmpp follows the address and
resumes there: same full JID, the messages sent to it while it moved
arrive once, and it goes on talking. (slixmpp 1.8.3 parses the address
and reconnects, but then dials the JID's domain, or port 5222 of a numeric
host: the helper's connect() goes to the address see-other-host named;
everything else, the XEP-0198 resumption included, is slixmpp's own.)
"""
import json
import os
import queue
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.request

import harness
import xmpp
from xmpp import NS_CLIENT, q

TOKEN = "slixmpp-interop-token-0123456789"
HELPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib", "slixclient.py")
SYSTEM_PYTHON = "/usr/bin/python3"


def have_slixmpp():
    try:
        return subprocess.run([SYSTEM_PYTHON, "-c", "import slixmpp"], capture_output=True,
                              timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


class Slix:
    """The slixmpp client process and the events it reports."""

    def __init__(self, port, user):
        self.p = subprocess.Popen([SYSTEM_PYTHON, HELPER, "127.0.0.1", str(port),
                                   "%s@%s" % (user, xmpp.DOMAIN), user],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        self.events = queue.Queue()
        self.seen = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            try:
                self.events.put(json.loads(line))
            except ValueError:
                pass

    def wait(self, event, timeout=20, **match):
        deadline = time.monotonic() + timeout
        for e in self.seen:
            if e["event"] == event and all(e.get(k) == v for k, v in match.items()):
                return e
        while time.monotonic() < deadline:
            try:
                e = self.events.get(timeout=max(0.05, deadline - time.monotonic()))
            except queue.Empty:
                break
            self.seen.append(e)
            if e["event"] == event and all(e.get(k) == v for k, v in match.items()):
                return e
        raise AssertionError("slixmpp: no %s %s; saw %s; stderr %s" % (
            event, match, self.seen, self.p.stderr.read() if self.p.poll() is not None else ""))

    def messages(self):
        while True:
            try:
                self.seen.append(self.events.get_nowait())
            except queue.Empty:
                break
        return [e["body"] for e in self.seen if e["event"] == "message"]

    def send(self, to, body):
        self.p.stdin.write("send %s %s\n" % (to, body))
        self.p.stdin.flush()

    def stop(self):
        try:
            self.p.stdin.close()
        except OSError:
            pass
        try:
            self.p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


@unittest.skipUnless(have_slixmpp(), "python3-slixmpp is not installed (scripts/deps.sh check)")
class SlixmppResume(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="rb-slix-")
        secret = os.path.join(self.tmp, "secret")
        token = os.path.join(self.tmp, "token")
        for path, value in ((secret, os.urandom(24).hex()), (token, TOKEN)):
            with open(path, "w") as f:
                f.write(value)
            os.chmod(path, 0o600)
        cport = [harness.free_port(), harness.free_port()]
        self.b = xmpp.Chatd(auth_any=True, tls=False, instance="chat-bbb-0",
                            version_label="v-bbb", name="b",
                            args=["--cluster-listen", "127.0.0.1:%d" % cport[1],
                                  "--cluster-secret-file", secret,
                                  "--peers", "127.0.0.1:%d" % cport[0],
                                  "--control-token-file", token, "--drain-timeout", "5"]).start()
        self.a = xmpp.Chatd(auth_any=True, tls=False, instance="chat-aaa-0",
                            version_label="v-aaa", name="a",
                            args=["--cluster-listen", "127.0.0.1:%d" % cport[0],
                                  "--cluster-secret-file", secret,
                                  "--peers", "127.0.0.1:%d" % cport[1],
                                  "--control-token-file", token, "--drain-timeout", "5",
                                  "--service-address", "127.0.0.1:%d" % self.b.port]).start()
        harness.wait_for(lambda: self.a.metric("chatd_cluster_peers") == 1 and
                         self.b.metric("chatd_cluster_peers") == 1, timeout=10)
        self.slix = None

    def tearDown(self):
        if self.slix:
            self.slix.stop()
        for d in (self.a, self.b):
            self.assertEqual(d.stop(timeout=15), 0)
            d.check_clean(self)

    def move(self, srv):
        req = urllib.request.Request("http://127.0.0.1:%d/control/move?count=1" % srv.http_port,
                                     data=b"", method="POST")
        req.add_header("X-Chatd-Control-Token", TOKEN)
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read().decode())

    def test_slixmpp_follows_see_other_host_and_resumes_on_the_other_colour(self):
        self.slix = s = Slix(self.a.port, "slix")
        jid = s.wait("session_start")["jid"]
        self.assertTrue(jid.startswith("slix@%s/" % xmpp.DOMAIN), jid)
        s.wait("sm_enabled")
        peer = self.b.client()
        peer.login("peer", "peer", mech="PLAIN", resource="r")
        peer.message(jid, "before")
        harness.wait_for(lambda: "before" in s.messages(), timeout=10, what="first message")
        self.assertEqual(self.move(self.a)["moved"], 1)
        for i in range(5):  # while it moves
            peer.message(jid, "during-%d" % i)
        e = s.wait("stream_error", condition="see-other-host")
        self.assertEqual(e["see_other_host"], "127.0.0.1:%d" % self.b.port)
        r = s.wait("session_resumed")
        self.assertEqual(r["jid"], jid)  # the same full JID
        peer.message(jid, "after")
        harness.wait_for(lambda: "after" in s.messages(), timeout=10, what="message after")
        got = s.messages()
        for body in ["before", "after"] + ["during-%d" % i for i in range(5)]:
            self.assertEqual(got.count(body), 1, got)  # each exactly once
        # it lives on the other colour now, and talks from there
        self.assertEqual(self.b.metrics()['chatd_sessions_resumed_total{from="peer"}'], 1)
        self.assertEqual(self.a.metric("chatd_sessions"), 0)
        s.send(peer.jid, "from-slix")
        m = peer.expect(lambda st: st.findtext(q(NS_CLIENT, "body")) == "from-slix")
        self.assertEqual(m.get("from"), jid)
        peer.close()


if __name__ == "__main__":
    unittest.main()
