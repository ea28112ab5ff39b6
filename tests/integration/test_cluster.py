"""chatd cluster routing (docs/cluster.md): several chatd processes
on loopback linked with --cluster-listen, with raw XMPP clients on each.

- messages (full and bare JID) and directed presence between every pair of
  instances, a user's own resources across instances (broadcast presence,
  RFC 6121 bare-JID priority rules), errors for absent users equal to the
  single-instance ones;
- discovery by --peers, --peers-file (written after start) and --peers-dns;
- an instance SIGSTOPped: its routes go from the others within the keepalive
  timeout; SIGKILLed: same, the rest untouched;
- an instance drained with SIGTERM keeps its sessions reachable while it
  drains, then leaves cleanly (LEAVING: no link failure counted);
- bad input on the link port (not a peer, wrong secret, garbage frames):
  refused and logged, nothing else disturbed. A fake peer written here from
  docs/cluster.md completes the handshake, which checks the document too.

Every process is checked for sanitizer reports.
"""
import hashlib
import hmac
import os
import signal
import socket
import struct
import tempfile
import time
import unittest

import harness
import xmpp
from xmpp import NS_CLIENT, NS_STANZA_ERR, q

KEEPALIVE = 1  # s; small so that a dead link is found fast
DOMAIN = xmpp.DOMAIN


def presence_from(jid):
    return lambda s: s.tag == q(NS_CLIENT, "presence") and s.get("from") == jid


def msg_body(body):
    return lambda s: (s.tag == q(NS_CLIENT, "message") and s.get("type") != "error" and
                      s.findtext(q(NS_CLIENT, "body")) == body)


# ---- the link protocol, written from docs/cluster.md --------------------------

HELLO, AUTH, ROUTE_ADD, ROUTE_DEL, SYNC, STANZA, PRESENCE, PING, PONG, LEAVING, IDENT = \
    range(1, 12)


def frame(ftype, payload=b""):
    return struct.pack(">IB", len(payload) + 1, ftype) + payload


def s16(b):
    return struct.pack(">H", len(b)) + b


def auth_mac(secret, role, dnonce, anonce, did, aid):
    msg = (b"rainbow-cluster-auth-v1\0" + role + dnonce + anonce + s16(did) + s16(aid))
    return hmac.new(secret, msg, hashlib.sha256).digest()


class FakePeer:
    """A link client: dials a chatd's link port as instance `iid`."""

    def __init__(self, port, iid=b"fake-peer"):
        self.iid = iid
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = b""
        self.nonce = os.urandom(32)

    def send(self, data):
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def hello(self):
        self.send(frame(HELLO, bytes([1]) + s16(self.iid) + s16(b"fake") +
                        struct.pack(">H", 0) + self.nonce))

    def read_frame(self, timeout=5.0):
        """(type, payload), or None when the connection ended."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 4:
                n = struct.unpack(">I", self.buf[:4])[0]
                if len(self.buf) >= 4 + n:
                    f = (self.buf[4], self.buf[5:4 + n])
                    self.buf = self.buf[4 + n:]
                    return f
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no frame")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except (ConnectionResetError, socket.timeout):
                return None
            if not data:
                return None
            self.buf += data

    def closed(self, timeout=5.0):
        """True when the server closes the connection within timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                f = self.read_frame(deadline - time.monotonic())
            except TimeoutError:
                return False
            if f is None:
                return True
        return False

    def close(self):
        self.sock.close()


def parse_hello(payload):
    il = struct.unpack(">H", payload[1:3])[0]
    iid = payload[3:3 + il]
    o = 3 + il
    vl = struct.unpack(">H", payload[o:o + 2])[0]
    o += 2 + vl + 2
    return iid, payload[o:o + 32]


def parse_hello_fields(payload):
    """(instance, version, port) of a HELLO."""
    il = struct.unpack(">H", payload[1:3])[0]
    o = 3 + il
    vl = struct.unpack(">H", payload[o:o + 2])[0]
    return (payload[3:3 + il], payload[o + 2:o + 2 + vl],
            struct.unpack(">H", payload[o + 2 + vl:o + 4 + vl])[0])


def ident(iid, version=b"v-fake", port=0):
    return frame(IDENT, s16(iid) + s16(version) + struct.pack(">H", port))


def parse_ident(payload):
    il = struct.unpack(">H", payload[:2])[0]
    o = 2 + il
    vl = struct.unpack(">H", payload[o:o + 2])[0]
    return (payload[2:2 + il], payload[o + 2:o + 2 + vl],
            struct.unpack(">H", payload[o + 2 + vl:o + 4 + vl])[0])


def parse_routes(payload):
    n = struct.unpack(">H", payload[:2])[0]
    o, out = 2, []
    for _ in range(n):
        jl = struct.unpack(">H", payload[o:o + 2])[0]
        out.append(payload[o + 2:o + 2 + jl].decode())
        o += 2 + jl + 2
    return out


class ClusterTest(unittest.TestCase):
    """Three instances A, B, C (A and B dial each other by --peers, C finds
    them by --peers-file); the later tests add and remove more."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="rb-cluster-")
        cls.secret_file = os.path.join(cls.tmp, "secret")
        cls.secret = os.urandom(24).hex().encode()
        with open(cls.secret_file, "wb") as f:
            f.write(cls.secret + b"\n")
        os.chmod(cls.secret_file, 0o600)  # chatd refuses a secret others can read
        cls.procs = []
        cls.clients = []
        cls.cport = [harness.free_port() for _ in range(3)]
        peers_ab = ",".join("127.0.0.1:%d" % p for p in cls.cport[:2])
        cls.peers_file = os.path.join(cls.tmp, "peers")
        with open(cls.peers_file, "w") as f:
            f.write("# A and B\n127.0.0.1:%d\n127.0.0.1:%d\n" % tuple(cls.cport[:2]))
        cls.a = cls.start_instance("inst-a", cls.cport[0], ["--peers", peers_ab])
        cls.b = cls.start_instance("inst-b", cls.cport[1], ["--peers", peers_ab])
        cls.c = cls.start_instance("inst-c", cls.cport[2], ["--peers-file", cls.peers_file])
        cls.nodes = [cls.a, cls.b, cls.c]
        harness.wait_for(lambda: all(cls.peers(d) == 2 for d in cls.nodes), timeout=15,
                         what="three instances linked")

    @classmethod
    def start_instance(cls, name, cport, extra, version="v-test"):
        d = xmpp.Chatd(auth_any=True, tls=False, instance=name, version_label=version,
                       name=name, args=["--cluster-listen", "127.0.0.1:%d" % cport,
                                        "--cluster-secret-file", cls.secret_file,
                                        "--cluster-keepalive", str(KEEPALIVE),
                                        "--drain-timeout", "20"] + extra)
        d.start()
        d.cport = cport
        cls.procs.append(d)
        return d

    @classmethod
    def tearDownClass(cls):
        for c in cls.clients:
            try:
                c.close()
            except OSError:
                pass  # closed by the test already
        reports = []
        for d in cls.procs:
            d.stop(signal.SIGTERM, timeout=15)
            if d.sanitizer_report():
                reports.append(d.sanitizer_report())
        if reports:
            raise AssertionError("sanitizer report at exit:\n" + reports[0])

    @staticmethod
    def peers(d):
        return d.metric("chatd_cluster_peers", -1)

    def tearDown(self):
        for d in self.procs:
            d.check_clean(self)

    def login(self, d, user, presence=True, resource=None):
        c = d.login(user, user, resource=resource)
        self.clients.append(c)
        if presence:
            c.send(presence if isinstance(presence, str) else "<presence/>")
            c.expect(presence_from(c.jid), what="own presence")
        return c

    def barrier(self, senders, receivers):
        """Full-JID messages from every sender to every receiver on another
        instance; when they arrived, everything sent before on those links
        was processed too."""
        for s in senders:
            for r in receivers:
                if r is not s:
                    s.message(r.jid, "barrier %s" % s.jid)
        for s in senders:
            for r in receivers:
                if r is not s:
                    r.expect(msg_body("barrier %s" % s.jid), what="barrier")

    # ---- tests -----------------------------------------------------------

    def test_1_messages_and_presence_every_pair(self):
        users = [self.login(d, "user%d" % i) for i, d in enumerate(self.nodes)]
        # full JID delivery both ways between every pair (also the barrier)
        self.barrier(users, users)
        for s in users:
            for r in users:
                if r is s:
                    continue
                body = "bare %s -> %s" % (s.jid, r.jid)
                s.message(xmpp.bare(r.jid), body)
                got = r.expect(msg_body(body), what=body)
                self.assertEqual(got.get("from"), s.jid)
                s.send("<presence to='%s'/>" % xmpp.bare(r.jid))
                r.expect(presence_from(s.jid), what="directed presence from %s" % s.jid)
        for d in self.nodes:
            m = d.metrics()
            self.assertEqual(m["chatd_cluster_peers"], 2)
            self.assertGreater(m["chatd_cluster_stanzas_forwarded_total"], 0)
            self.assertGreater(m["chatd_cluster_stanzas_received_total"], 0)
            self.assertGreaterEqual(m["chatd_cluster_routes"], 2)

    def test_2_bare_jid_rules_across_instances(self):
        sender = self.login(self.a, "sender2")
        d_a = self.login(self.a, "dave", "<presence><priority>1</priority></presence>", "a")
        d_b = self.login(self.b, "dave", "<presence><priority>5</priority></presence>", "b")
        d_c = self.login(self.c, "dave", "<presence><priority>5</priority></presence>", "c")
        self.barrier([sender, d_b, d_c], [sender, d_a, d_b, d_c])
        # one user's resources see each other's broadcast presence
        for r in (d_a, d_b, d_c):
            for o in (d_a, d_b, d_c):
                if o is not r:
                    r.expect(presence_from(o.jid), what="%s sees %s" % (r.jid, o.jid))
        # chat to the bare JID: the highest priority resources, wherever
        sender.message("dave@" + DOMAIN, "to the best")
        d_b.expect(msg_body("to the best"))
        d_c.expect(msg_body("to the best"))
        # headline: every non-negative resource
        sender.message("dave@" + DOMAIN, "headline", type_="headline")
        for r in (d_a, d_b, d_c):
            r.expect(msg_body("headline"))
        # c goes unavailable: its siblings hear it; chat now goes to b only
        d_c.send("<presence type='unavailable'/>")
        d_a.expect(lambda s: presence_from(d_c.jid)(s) and s.get("type") == "unavailable")
        d_b.expect(lambda s: presence_from(d_c.jid)(s) and s.get("type") == "unavailable")
        self.barrier([d_c], [sender])  # the availability update arrived
        sender.message("dave@" + DOMAIN, "only b")
        d_b.expect(msg_body("only b"))
        # what a did not get: the chat messages went elsewhere
        sender.message(d_a.jid, "marker")
        d_a.expect(msg_body("marker"))
        self.assertFalse([s for s in d_a.pending
                          if s.findtext(q(NS_CLIENT, "body")) in ("to the best", "only b")])
        self.assertFalse([s for s in d_c.pending
                          if s.findtext(q(NS_CLIENT, "body")) == "only b"])
        # b's session ends: the others get its unavailable presence (the
        # route removal tells them), a gets the next chat
        d_b.close()
        d_a.expect(lambda s: presence_from(d_b.jid)(s) and s.get("type") == "unavailable")
        sender.message("dave@" + DOMAIN, "now a")
        d_a.expect(msg_body("now a"))

    def test_3_absent_users_get_the_single_instance_errors(self):
        s = self.login(self.b, "asker")
        other = self.login(self.c, "present3")
        self.barrier([other], [s])
        cases = [
            ("<message to='nobody@%s' type='chat' id='m1'><body>x</body></message>" % DOMAIN,
             "m1"),
            ("<message to='nobody@%s/res' type='chat' id='m2'><body>x</body></message>"
             % DOMAIN, "m2"),
            ("<iq to='nobody@%s/res' type='get' id='i1'><ping xmlns='urn:xmpp:ping'/></iq>"
             % DOMAIN, "i1"),
            ("<iq to='%s/gone' type='get' id='i2'><ping xmlns='urn:xmpp:ping'/></iq>"
             % xmpp.bare(other.jid), "i2"),
        ]
        for xml, sid in cases:
            s.send(xml)
            e = s.expect(lambda st: st.get("id") == sid, what=sid)
            self.assertEqual(e.get("type"), "error", sid)
            self.assertEqual(xmpp.stanza_error(e), ("cancel", "service-unavailable"), sid)
        # a full-JID iq to a user on another instance is answered by that client
        s.send("<iq to='%s' type='get' id='i3'><query xmlns='urn:test:cluster'/></iq>"
               % other.jid)
        got = other.expect(lambda st: st.get("id") == "i3", what="forwarded iq")
        other.send("<iq to='%s' type='result' id='i3'/>" % got.get("from"))
        r = s.expect(lambda st: st.get("id") == "i3", what="iq result across instances")
        self.assertEqual(r.get("type"), "result")

    def test_4_bad_input_on_the_link_port(self):
        watcher = self.login(self.a, "watcher4")
        talker = self.login(self.b, "talker4")
        self.barrier([talker], [watcher])
        refused0 = self.a.metric("chatd_cluster_refused_total")
        port = self.a.cport

        # not a peer: an HTTP client
        p = FakePeer(port)
        p.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(p.closed(), "HTTP on the link port was not refused")
        p.close()
        # a wrong secret
        # (and before the secret is proved, chatd tells nothing identifying:
        # a pseudonym, no version, no port; no IDENT follows)
        p = FakePeer(port, b"~0123456789abcdef")
        p.hello()
        t, payload = p.read_frame()
        self.assertEqual(t, HELLO)
        iid, anonce = parse_hello(payload)
        self.assertTrue(iid.startswith(b"~") and len(iid) == 17, iid)
        self.assertEqual(parse_hello_fields(payload)[1:], (b"", 0))
        t, _ = p.read_frame()
        self.assertEqual(t, AUTH)
        p.send(frame(AUTH, auth_mac(b"not the secret at all", b"D", p.nonce, anonce,
                                    p.iid, iid)))
        rest = b""
        while True:
            f = p.read_frame()
            if f is None:
                break
            rest += bytes([f[0]]) + f[1]
        self.assertNotIn(b"inst-a", payload + rest)
        self.assertNotIn(b"v-test", payload + rest)
        self.assertEqual(rest, b"", "frames after a wrong proof")
        p.close()
        # a proof reflected back: chatd's own (acceptor) MAC does not pass as ours
        p = FakePeer(port, b"reflector")
        p.hello()
        t, payload = p.read_frame()
        iid, anonce = parse_hello(payload)
        t, theirs = p.read_frame()
        self.assertEqual(t, AUTH)
        p.send(frame(AUTH, theirs))
        self.assertTrue(p.closed(), "a reflected proof was accepted")
        p.close()
        # a data frame before authentication
        p = FakePeer(port, b"early")
        p.hello()
        p.send(frame(STANZA, s16(b"x@y/z") + s16(b"a@b/c") + struct.pack(">I", 4) + b"<a/>"))
        self.assertTrue(p.closed(), "a frame before AUTH was accepted")
        p.close()
        # the right secret from a peer that hides its name too: each side
        # names itself (IDENT) only after the other's AUTH checked
        p = FakePeer(port, b"~fedcba9876543210")
        p.hello()
        t, payload = p.read_frame()
        iid, anonce = parse_hello(payload)
        t, theirs = p.read_frame()
        self.assertEqual(theirs, auth_mac(self.secret, b"A", p.nonce, anonce, p.iid, iid))
        p.send(frame(AUTH, auth_mac(self.secret, b"D", p.nonce, anonce, p.iid, iid)))
        t, payload = p.read_frame()
        self.assertEqual(t, IDENT)
        self.assertEqual(parse_ident(payload), (b"inst-a", b"v-test", self.a.cport))
        p.send(ident(b"ident-peer"))
        t, _ = p.read_frame()
        self.assertIn(t, (ROUTE_ADD, SYNC))
        harness.wait_for(lambda: self.peers(self.a) == 3, timeout=5, what="ident peer up")
        self.assertIn("peer=ident-peer version=v-fake", self.a.proc.stderr())
        p.close()
        harness.wait_for(lambda: self.peers(self.a) == 2, timeout=5, what="ident peer gone")
        # the right secret from an older peer that names itself in HELLO (and
        # gets no IDENT, only the pseudonym): the handshake works as
        # documented, the route dump holds the watcher; then garbage frames:
        # refused, routes dropped
        p = FakePeer(port, b"docs-peer")
        p.hello()
        t, payload = p.read_frame()
        iid, anonce = parse_hello(payload)
        t, theirs = p.read_frame()
        self.assertEqual(theirs, auth_mac(self.secret, b"A", p.nonce, anonce, p.iid, iid))
        p.send(frame(AUTH, auth_mac(self.secret, b"D", p.nonce, anonce, p.iid, iid)))
        routes = []
        while True:
            t, payload = p.read_frame()
            if t == SYNC:
                break
            self.assertEqual(t, ROUTE_ADD)
            routes += parse_routes(payload)
        self.assertIn(watcher.jid, routes)
        harness.wait_for(lambda: self.peers(self.a) == 3, timeout=5, what="fake peer up")
        p.send(frame(77, b"\x00" * 10))
        self.assertTrue(p.closed(), "an unknown frame type was accepted")
        p.close()
        # a huge length
        p = FakePeer(port, b"huge")
        p.send(struct.pack(">IB", 0x7fffffff, HELLO))
        self.assertTrue(p.closed(), "a 2 GB frame was not refused")
        p.close()

        harness.wait_for(lambda: self.peers(self.a) == 2, timeout=5, what="fake peer gone")
        self.assertGreaterEqual(self.a.metric("chatd_cluster_refused_total") - refused0, 5)
        err = self.a.proc.stderr()
        for why in ("bad-secret", "frame-too-large", "expected-auth", "unknown-frame"):
            self.assertIn("reason=" + why, err)
        # nothing else disturbed: same links, clients still talk both ways
        for d in self.nodes:
            self.assertEqual(self.peers(d), 2)
        talker.message(watcher.jid, "still here")
        watcher.expect(msg_body("still here"))
        watcher.message(talker.jid, "me too")
        talker.expect(msg_body("me too"))

    def test_5_discovery_by_file_change_and_dns(self):
        # E starts with an empty peers file; the deployer writes A into it
        pf = os.path.join(self.tmp, "peers-e")
        open(pf, "w").close()
        e = self.start_instance("inst-e", harness.free_port(), ["--peers-file", pf])
        time.sleep(0.2)
        self.assertEqual(self.peers(e), 0)
        with open(pf + ".new", "w") as f:
            f.write("127.0.0.1:%d\n" % self.a.cport)
        os.rename(pf + ".new", pf)
        harness.wait_for(lambda: self.peers(e) == 1, timeout=10, what="peers file re-read")
        # F finds A by DNS: localhost resolves to 127.0.0.1
        f_ = self.start_instance("inst-f", harness.free_port(),
                                 ["--peers-dns", "localhost:%d" % self.a.cport])
        harness.wait_for(lambda: self.peers(f_) == 1, timeout=10, what="peer found by DNS")
        ue = self.login(e, "eve5")
        uf = self.login(f_, "fay5")
        ua = self.login(self.a, "al5")
        self.barrier([ue, uf], [ua])
        ue.message(ua.jid, "from e")
        ua.expect(msg_body("from e"))
        uf.message(ua.jid, "from f")
        ua.expect(msg_body("from f"))
        ue.close()
        uf.close()
        for d in (e, f_):
            self.assertEqual(d.stop(signal.SIGTERM, timeout=15), 0)

    def test_6_killed_instance_routes_go(self):
        ga = self.login(self.a, "ga6")
        gb = self.login(self.b, "gb6")
        peers = "127.0.0.1:%d,127.0.0.1:%d" % (self.a.cport, self.b.cport)
        x = self.start_instance("inst-x", harness.free_port(), ["--peers", peers])
        harness.wait_for(lambda: self.peers(x) == 2, timeout=10, what="x linked")
        ux = self.login(x, "xavier")
        self.barrier([ux], [ga, gb])
        failures0 = self.a.metric("chatd_cluster_link_failures_total")
        # stopped: no frame for KEEPALIVE s, the others declare it dead
        x.proc.signal(signal.SIGSTOP)
        try:
            harness.wait_for(lambda: self.peers(self.a) == 2 and self.peers(self.b) == 2,
                             timeout=KEEPALIVE * 5, what="stopped instance dropped")
            ga.message("xavier@" + DOMAIN, "gone?")
            e = ga.expect(lambda s: s.get("type") == "error", what="error for a dead route")
            self.assertEqual(xmpp.stanza_error(e), ("cancel", "service-unavailable"))
            self.assertEqual(self.a.metric("chatd_cluster_link_failures_total"),
                             failures0 + 1)
            self.assertIn("reason=keepalive-timeout", self.a.proc.stderr())
        finally:
            x.proc.signal(signal.SIGCONT)
        # it comes back (x redials), then is killed for good
        harness.wait_for(lambda: self.peers(x) == 2, timeout=15, what="x relinked")
        ux2 = self.login(x, "xavier2")
        self.barrier([ux2], [ga])
        x.stop(signal.SIGKILL)
        harness.wait_for(lambda: self.peers(self.a) == 2 and self.peers(self.b) == 2,
                         timeout=KEEPALIVE * 5, what="killed instance dropped")
        # the others are untouched
        ga.message(gb.jid, "after the kill")
        gb.expect(msg_body("after the kill"))
        self.assertFalse(ga.end or gb.end)

    def test_7_drained_instance_stays_reachable_then_leaves(self):
        ha = self.login(self.a, "ha7")
        peers = "127.0.0.1:%d,127.0.0.1:%d" % (self.a.cport, self.b.cport)
        old = self.start_instance("inst-old", harness.free_port(), ["--peers", peers],
                                  version="v-old")
        # /readyz said ready only once both peers had sent their route tables
        m = old.metrics()
        self.assertEqual(m["chatd_cluster_peers"], 2)
        self.assertGreaterEqual(m["chatd_cluster_routes"], 1)
        hold = self.login(old, "holly")
        self.barrier([hold], [ha])
        failures0 = [d.metric("chatd_cluster_link_failures_total") for d in (self.a, self.b)]
        old.proc.signal(signal.SIGTERM)
        harness.wait_for(lambda: old.http("/readyz")[0] == 503, timeout=5, what="draining")
        # during the drain its sessions still talk with the other instances
        ha.message("holly@" + DOMAIN, "during the drain")
        hold.expect(msg_body("during the drain"))
        hold.message(ha.jid, "still on the old colour")
        ha.expect(msg_body("still on the old colour"))
        # the last client leaves: the instance exits and leaves cleanly
        hold.close()
        self.assertEqual(old.proc.wait(timeout=15), 0)
        harness.wait_for(lambda: self.peers(self.a) == 2 and self.peers(self.b) == 2,
                         timeout=2, what="peers dropped the leaver")
        self.assertIn("event=cluster_peer_leaving", self.a.proc.stderr())
        self.assertEqual([d.metric("chatd_cluster_link_failures_total")
                          for d in (self.a, self.b)], failures0)
        ha.message("holly@" + DOMAIN, "after")
        e = ha.expect(lambda s: s.get("type") == "error", what="error after leave")
        self.assertEqual(xmpp.stanza_error(e), ("cancel", "service-unavailable"))
        self.assertIsNone(old.sanitizer_report())


    def test_8_resource_conflict_keeps_the_route(self):
        far = self.login(self.b, "far8")
        first = self.login(self.a, "conflicted", resource="same")
        second = self.login(self.a, "conflicted", resource="same")
        self.assertEqual(first.wait_stream_error(), "conflict")
        self.assertEqual(second.jid, first.jid)
        # the replaced session's end did not withdraw the route of its successor
        self.barrier([second], [far])
        far.message(second.jid, "to the successor")
        second.expect(msg_body("to the successor"))

    def test_9_resource_conflict_across_instances(self):
        # RFC 6120 7.7.2.2 cluster-wide: a second session with the same full
        # JID on another instance replaces the first, as on one instance
        local = self.login(self.a, "near9")
        far = self.login(self.c, "far9")
        first = self.login(self.a, "conflicted9", resource="same")
        self.barrier([first], [far])  # its route has reached the others
        second = self.login(self.b, "conflicted9", resource="same")
        self.assertEqual(second.jid, first.jid)
        self.assertEqual(first.wait_stream_error(10), "conflict")
        # the successor gets the full-JID messages from every instance,
        # including the one that held the replaced session
        self.barrier([local, far], [second])

    def test_10_presence_of_own_resources_after_a_link_outage(self):
        # a link lost and re-established: the user's resources on either
        # side were told "unavailable" when the routes went; when the route
        # tables come back they learn the others are available again
        y = self.start_instance("inst-y", harness.free_port(),
                                ["--peers", "127.0.0.1:%d" % self.a.cport])
        harness.wait_for(lambda: self.peers(y) >= 1 and self.peers(self.a) == 3, timeout=10,
                         what="y linked to a")
        fa = self.login(self.a, "flap10", resource="a")
        fy = self.login(y, "flap10", resource="y")
        fa.expect(presence_from(fy.jid), what="y's presence on a")
        y.proc.signal(signal.SIGSTOP)
        try:
            fa.expect(lambda st: presence_from(fy.jid)(st) and st.get("type") == "unavailable",
                      timeout=KEEPALIVE * 5, what="unavailable when the link died")
        finally:
            y.proc.signal(signal.SIGCONT)
        fy.expect(lambda st: presence_from(fa.jid)(st) and st.get("type") == "unavailable",
                  timeout=KEEPALIVE * 5, what="unavailable on y too")
        harness.wait_for(lambda: self.peers(self.a) == 3, timeout=15, what="y relinked")
        p = fa.expect(presence_from(fy.jid), timeout=10, what="y's presence again")
        self.assertIsNone(p.get("type"))
        p = fy.expect(presence_from(fa.jid), timeout=10, what="a's presence again")
        self.assertIsNone(p.get("type"))
        y.stop(signal.SIGKILL)
        harness.wait_for(lambda: self.peers(self.a) == 2, timeout=KEEPALIVE * 5,
                         what="y gone")


class AnonymousAcrossInstancesTest(unittest.TestCase):
    """Accounts from --users plus SASL ANONYMOUS (no --auth-any): an
    anonymous account exists while it is bound, on whichever instance."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="rb-cluster-anon-")
        secret = os.path.join(self.tmp, "secret")
        with open(secret, "w") as f:
            f.write(os.urandom(24).hex())
        os.chmod(secret, 0o600)  # chatd refuses a secret others can read
        cport = [harness.free_port() for _ in range(2)]
        peers = ",".join("127.0.0.1:%d" % p for p in cport)
        self.nodes = []
        self.clients = []
        for i, name in enumerate(["anon-a", "anon-b"]):
            d = xmpp.Chatd(users={"alice": "alice-pw"}, tls=False, instance=name, name=name,
                           args=["--allow-anonymous", "--allow-plaintext-auth",
                                 "--cluster-listen", "127.0.0.1:%d" % cport[i],
                                 "--cluster-secret-file", secret, "--peers", peers,
                                 "--cluster-keepalive", str(KEEPALIVE)])
            self.nodes.append(d.start())
        harness.wait_for(lambda: all(ClusterTest.peers(d) == 1 for d in self.nodes),
                         timeout=15, what="two instances linked")

    def tearDown(self):
        for c in self.clients:
            c.close()
        for d in self.nodes:
            d.stop(signal.SIGTERM, timeout=15)
            self.assertIsNone(d.sanitizer_report())

    def test_bare_jid_message_to_an_anonymous_user_on_another_instance(self):
        anon = self.nodes[1].client()
        self.clients.append(anon)
        anon.open_stream()
        anon.send("<auth xmlns='%s' mechanism='ANONYMOUS'/>" % xmpp.NS_SASL)
        self.assertEqual(anon._finish_auth(anon._sasl_result()), ("success", None))
        anon.open_stream()
        anon.bind()
        anon.send("<presence/>")
        anon.expect(presence_from(anon.jid), what="own presence")
        alice = self.nodes[0].login("alice", "alice-pw")
        self.clients.append(alice)
        # the route has reached instance A once a full-JID message gets through
        alice.message(anon.jid, "full")
        anon.expect(msg_body("full"))
        alice.message(xmpp.bare(anon.jid), "bare", id_="b1")
        anon.expect(msg_body("bare"))
        # and no bounce came back to the sender
        alice.send("<iq type='get' id='p1' to='%s'><ping xmlns='urn:xmpp:ping'/></iq>"
                   % DOMAIN)
        alice.expect(lambda st: st.get("id") == "p1", what="ping reply")
        self.assertFalse([st for st in alice.pending if st.get("id") == "b1"],
                         "bare-JID message bounced: %s" % alice.pending)


class ImpostorTest(unittest.TestCase):
    def test_unauthenticated_hello_with_our_id_does_not_stop_dialing(self):
        # a process at a peer address that answers HELLO with chatd's own
        # instance id (before any authentication) must not make chatd take
        # that address for itself and never dial it again
        tmp = tempfile.mkdtemp(prefix="rb-cluster-imp-")
        secret = os.path.join(tmp, "secret")
        with open(secret, "w") as f:
            f.write(os.urandom(24).hex())
        os.chmod(secret, 0o600)  # chatd refuses a secret others can read
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(8)
        lsock.settimeout(10)
        d = xmpp.Chatd(auth_any=True, tls=False, instance="imp-victim", name="imp-victim",
                       args=["--cluster-listen", "127.0.0.1:%d" % harness.free_port(),
                             "--cluster-secret-file", secret, "--cluster-keepalive", "1",
                             "--peers", "127.0.0.1:%d" % lsock.getsockname()[1]])
        d.start(wait_ready=False)
        try:
            s, _ = lsock.accept()
            p = FakePeer.__new__(FakePeer)
            p.sock, p.buf, p.iid, p.nonce = s, b"", b"imp-victim", os.urandom(32)
            t, payload = p.read_frame()
            self.assertEqual(t, HELLO)
            self.assertNotEqual(parse_hello(payload)[0], b"imp-victim")  # a pseudonym
            p.hello()
            self.assertTrue(p.closed(), "chatd kept a link that claims its own id")
            p.close()
            # chatd dials again after its backoff
            s2, _ = lsock.accept()
            s2.close()
        finally:
            lsock.close()
            d.stop(signal.SIGTERM, timeout=15)
        self.assertIsNone(d.sanitizer_report())


class NeverReadyPeersTest(unittest.TestCase):
    def test_peers_that_never_come_up_back_off_and_log_little(self):
        # Kubernetes publishes not-ready pods in chat-peers: addresses where
        # nothing answers, for good. chatd retries each with its own growing
        # backoff and logs its 1st, 2nd, 4th, 8th... failure, not each one.
        tmp = tempfile.mkdtemp(prefix="rb-cluster-nr-")
        secret = os.path.join(tmp, "secret")
        with open(secret, "w") as f:
            f.write(os.urandom(24).hex())
        os.chmod(secret, 0o600)  # chatd refuses a secret others can read
        dead = [harness.free_port() for _ in range(3)]
        d = xmpp.Chatd(auth_any=True, tls=False, instance="nr-0", name="nr-0",
                       args=["--cluster-listen", "127.0.0.1:%d" % harness.free_port(),
                             "--cluster-secret-file", secret,
                             "--peers", ",".join("127.0.0.1:%d" % p for p in dead)])
        d.start()
        try:
            time.sleep(4)  # about 5 dials to each at 200, 400, 800, 1600 ms
            err = d.proc.stderr()
            for p in dead:
                lines = [ln for ln in err.splitlines()
                         if "event=cluster_link_closed" in ln and ":%d " % p in ln]
                self.assertGreaterEqual(len(lines), 1, "never dialed 127.0.0.1:%d" % p)
                self.assertLessEqual(len(lines), 3, "\n".join(lines))
                self.assertIn("fails=1 ", lines[0])
            self.assertEqual(d.http("/readyz")[0], 200)  # dead peers do not hold readiness
        finally:
            d.stop()
        self.assertIsNone(d.sanitizer_report())


class StartupTest(unittest.TestCase):
    def test_cluster_mode_needs_a_secret(self):
        p = harness.Proc([harness.binary("chatd"), "--listen", "127.0.0.1:%d" % harness.free_port(),
                          "--http", "", "--auth-any",
                          "--cluster-listen", "127.0.0.1:%d" % harness.free_port()])
        self.assertEqual(p.wait(timeout=20), 2)
        self.assertIn("cluster-secret-file", p.stderr())
        d = tempfile.mkdtemp(prefix="rb-cluster-")
        short = os.path.join(d, "short")
        with open(short, "w") as f:
            f.write("tooshort\n")
        os.chmod(short, 0o600)  # chatd refuses a secret others can read
        p = harness.Proc([harness.binary("chatd"), "--listen", "127.0.0.1:%d" % harness.free_port(),
                          "--http", "", "--auth-any",
                          "--cluster-listen", "127.0.0.1:%d" % harness.free_port(),
                          "--cluster-secret-file", short])
        self.assertNotEqual(p.wait(timeout=20), 0)
        self.assertIn("event=cluster_config", p.stderr())
        self.assertIsNone(p.sanitizer_report())

    def test_link_port_in_use(self):
        d = tempfile.mkdtemp(prefix="rb-cluster-")
        secret = os.path.join(d, "secret")
        with open(secret, "w") as f:
            f.write(os.urandom(24).hex())
        os.chmod(secret, 0o600)  # chatd refuses a secret others can read
        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        try:
            p = harness.Proc([harness.binary("chatd"),
                              "--listen", "127.0.0.1:%d" % harness.free_port(),
                              "--http", "", "--auth-any", "--cluster-secret-file", secret,
                              "--cluster-listen", "127.0.0.1:%d" % busy.getsockname()[1]])
            self.assertNotEqual(p.wait(timeout=20), 0)
        finally:
            busy.close()
        self.assertIn("event=cluster_listen", p.stderr())
        self.assertIsNone(p.sanitizer_report())


if __name__ == "__main__":
    unittest.main()
