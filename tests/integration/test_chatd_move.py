"""Moving sessions on request: POST /control/move on chatd's HTTP endpoint,
with the token of --control-token-file, ends the oldest sessions with
<see-other-host/> naming --service-address. A stream-managed session with
resumption detaches and is resumed; one with acks only gets an <r/> first
and goes once it answered (or after 2 s); one without stream management
goes at once. The endpoint refuses everything else: no token file (404),
a method other than POST (405), a missing or wrong token (403), a bad
count (400); a token file others can read stops chatd from starting.
"""
import os
import tempfile
import time
import unittest
import urllib.error
import urllib.request

import harness
import xmpp
from xmpp import NS_CLIENT, NS_SM, NS_STREAM_ERR, q

TOKEN = "move-token-0123456789abcdef"


def post(srv, path, token=TOKEN, method="POST"):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (srv.http_port, path), data=b"",
                                 method=method)
    if token is not None:
        req.add_header("X-Chatd-Control-Token", token)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def see_other_host(c):
    """The content of <see-other-host/> in the stream error c received."""
    c.wait_end(timeout=10)
    raw = bytes(c.raw).decode()
    start = raw.find("<see-other-host")
    if start < 0:
        return None
    start = raw.index(">", start) + 1
    return raw[start:raw.index("</see-other-host>", start)]


class Move(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="rb-move-")
        cls.token_file = os.path.join(cls.dir, "token")
        with open(cls.token_file, "w") as f:
            f.write(TOKEN + "\n")
        os.chmod(cls.token_file, 0o600)
        cls.srv = xmpp.Chatd(auth_any=True, tls=False, instance="move-0",
                             args=["--ping-interval", "600",
                                   "--service-address", "chat.example.test:5222",
                                   "--control-token-file", cls.token_file])
        cls.srv.start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.srv.stop()
        if rc != 0 or cls.srv.sanitizer_report():
            raise AssertionError("chatd exit %s: %s" % (rc, cls.srv.sanitizer_report()))

    def setUp(self):
        self.clients = []

    def tearDown(self):
        for c in self.clients:
            c.close()

    def login(self, user, sm=None):
        c = self.srv.client()
        self.clients.append(c)
        c.login(user, user, mech="PLAIN", resource="r")
        if sm is not None:
            en = c.sm_enable(resume=(sm == "resume"))
            self.assertEqual(en.tag, q(NS_SM, "enabled"))
            c.previd = en.get("id")
        return c

    def test_refusals(self):
        self.assertEqual(post(self.srv, "/control/move?count=1", method="GET")[0], 405)
        self.assertEqual(post(self.srv, "/control/move?count=1", token=None)[0], 403)
        self.assertEqual(post(self.srv, "/control/move?count=1", token="x" * len(TOKEN))[0], 403)
        self.assertEqual(post(self.srv, "/control/move?count=1", token=TOKEN + "x")[0], 403)
        for bad in ("", "?count=0", "?count=-1", "?count=x", "?count=100001", "?count=1x"):
            self.assertEqual(post(self.srv, "/control/move" + bad)[0], 400, bad)
        self.assertEqual(post(self.srv, "/control/moves?count=1", method="GET")[0], 404)

    def test_oldest_first_each_kind(self):
        m0 = self.srv.metrics()
        a = self.login("mova", sm="resume")
        b = self.login("movb", sm="acks")
        c = self.login("movc")
        s = self.login("movs")
        # b has a stanza it has not acknowledged
        s.message(b.jid, "pending")
        b.expect(lambda st: st.tag == q(NS_CLIENT, "message"))
        st, body = post(self.srv, "/control/move?count=2")
        self.assertEqual(st, 200, body)
        self.assertIn('"requested":2,"moved":2', body)
        # a: at once, to the service's address; its session waits
        self.assertEqual(see_other_host(a), "chat.example.test:5222")
        self.assertEqual(a.stream_error, "see-other-host")
        harness.wait_for(lambda: self.srv.metric("chatd_sessions_detached") == 1, timeout=5)
        # b: first an <r/>, then the error once it answered
        harness.wait_for(lambda: b.poll() is not None and b.sm_requests >= 1, timeout=5,
                         what="<r/> to b")
        self.assertIsNone(b.stream_error)
        b.sm_ack()
        self.assertEqual(see_other_host(b), "chat.example.test:5222")
        # c untouched so far; the next request takes it (then s)
        c.poll()
        self.assertIsNone(c.stream_error)
        st, body = post(self.srv, "/control/move?count=1")
        self.assertIn('"moved":1', body)
        self.assertEqual(see_other_host(c), "chat.example.test:5222")
        m = self.srv.metrics()
        self.assertEqual(m["chatd_sessions_moved_total"] - m0["chatd_sessions_moved_total"], 3)
        key = 'chatd_connections_closed_total{reason="see-other-host"}'
        self.assertEqual(m[key] - m0[key], 3)
        # a resumes (here: the test has one instance) with everything
        s.message(a.jid, "while-moving")
        n = self.srv.client()
        self.clients.append(n)
        n.authenticate("mova", "mova", mech="PLAIN")
        self.assertEqual(n.sm_resume(a.previd, a.sm_h).tag, q(NS_SM, "resumed"))
        n.expect(lambda st: st.findtext(q(NS_CLIENT, "body")) == "while-moving")
        # nothing bounced to the sender: b acknowledged, a resumed
        s.poll()
        self.assertFalse([x for x in s.pending if x.get("type") == "error"])

    def test_ack_never_comes(self):
        b = self.login("slowack", sm="acks")
        s = self.login("slowsend")
        s.message(b.jid, "unacked")
        b.expect(lambda st: st.tag == q(NS_CLIENT, "message"))
        t0 = time.monotonic()
        post(self.srv, "/control/move?count=1")  # b is the oldest
        self.assertEqual(see_other_host(b), "chat.example.test:5222")
        self.assertGreater(time.monotonic() - t0, 1.0)  # it waited for the <a/>
        # what it never acknowledged bounced (RFC 6121), not silently lost
        err = s.expect(lambda st: st.get("type") == "error")
        self.assertEqual(xmpp.stanza_error(err), ("cancel", "service-unavailable"))


class NoControl(unittest.TestCase):
    def test_without_token_file_the_endpoint_is_off(self):
        srv = xmpp.Chatd(auth_any=True, tls=False, instance="move-1").start()
        try:
            self.assertEqual(post(srv, "/control/move?count=1")[0], 404)
            c = srv.client()
            c.login("u", "u", mech="PLAIN")
            c.close()
        finally:
            self.assertEqual(srv.stop(), 0)
            srv.check_clean(self)

    def test_token_file_others_can_read(self):
        d = tempfile.mkdtemp(prefix="rb-move-")
        tf = os.path.join(d, "token")
        with open(tf, "w") as f:
            f.write(TOKEN)
        os.chmod(tf, 0o644)
        p = harness.Proc([harness.binary("chatd"), "--listen", "127.0.0.1:0", "--http", "",
                          "--auth-any", "--control-token-file", tf], name="chatd-perm")
        self.assertEqual(p.wait(timeout=20), 1)
        self.assertIn("--control-token-file", p.stderr())
        os.chmod(tf, 0o600)
        with open(tf, "w") as f:
            f.write("short")
        p = harness.Proc([harness.binary("chatd"), "--listen", "127.0.0.1:0", "--http", "",
                          "--auth-any", "--control-token-file", tf], name="chatd-short")
        self.assertEqual(p.wait(timeout=20), 1)
        self.assertIn("16..4096", p.stderr())

    def test_default_address_is_the_domain(self):
        d = tempfile.mkdtemp(prefix="rb-move-")
        tf = os.path.join(d, "token")
        with open(tf, "w") as f:
            f.write(TOKEN)
        os.chmod(tf, 0o600)
        srv = xmpp.Chatd(auth_any=True, tls=False, instance="move-2",
                         args=["--control-token-file", tf]).start()
        try:
            c = srv.client()
            c.login("dflt", "dflt", mech="PLAIN")
            self.assertEqual(post(srv, "/control/move?count=1")[0], 200)
            self.assertEqual(see_other_host(c), xmpp.DOMAIN)
            c.close()
        finally:
            self.assertEqual(srv.stop(), 0)
            srv.check_clean(self)


if __name__ == "__main__":
    unittest.main()
