"""chatd's outside view: /metrics counts connections exactly, build info,
/healthz and /readyz, the SIGTERM drain (and a second SIGTERM), server pings
closing dead clients, and whitespace keepalives keeping live ones.
"""
import os
import re
import signal
import socket
import time
import unittest

import harness
import xmpp
from xmpp import Chatd, NS_CLIENT, NS_PING, q

D = xmpp.DOMAIN
USERS = {"alice": "alice-pw", "bob": "bob-pw"}


def exit_clean(tc, d, rc):
    tc.assertEqual(rc, 0, "chatd exit status %s\n%s" % (rc, d.proc.stderr()[-3000:]))
    d.check_clean(tc)


class Counting(unittest.TestCase):
    def setUp(self):
        self.d = Chatd(users=USERS, instance="m-1", version_label="v-metrics",
                       args=["--auth-timeout", "60", "--ping-interval", "600"])
        self.d.start()
        self.clients = []

    def tearDown(self):
        for c in self.clients:
            c.close(send_close=False)
        exit_clean(self, self.d, self.d.stop())

    def test_open_n_close_m(self):
        d = self.d
        m0 = d.metrics()
        self.assertEqual(m0["chatd_connections"], 0)
        self.assertEqual(m0["chatd_sessions"], 0)
        acc0 = m0["chatd_connections_accepted_total"]
        # N = 15 connections in three kinds: bare TCP, open stream, session
        tcp = [d.client() for _ in range(5)]
        streams = [d.client() for _ in range(5)]
        for c in streams:
            self.assertIsNotNone(c.open_stream())
        sess = [d.login("alice" if i % 2 else "bob", resource="r%d" % i) for i in range(5)]
        self.clients += tcp + streams + sess
        n = 15
        self.assertEqual(d.wait_metric("chatd_connections", n), n)
        self.assertEqual(d.metric("chatd_sessions"), 5)
        self.assertEqual(d.metric("chatd_connections_accepted_total") - acc0, n)
        # M = 7 closed: FIN, </stream:stream>, RST, in every kind
        client0, reset0 = d.closed_total("client"), d.closed_total("reset")
        tcp[0].close(send_close=False)
        tcp[1].abort()
        streams[0].close()
        streams[1].abort()
        sess[0].close()
        sess[1].close(send_close=False)
        sess[2].abort()
        m = 7
        self.assertEqual(d.wait_metric("chatd_connections", n - m), n - m)
        self.assertEqual(d.wait_metric("chatd_sessions", 2), 2)
        # settled: it stays exact
        for _ in range(5):
            self.assertEqual(d.metric("chatd_connections"), n - m)
            time.sleep(0.05)
        self.assertEqual(d.closed_total() - sum(
            v for k, v in m0.items() if k.startswith("chatd_connections_closed_total")), m)
        self.assertEqual(d.closed_total("reset") - reset0, 3)
        self.assertEqual(d.closed_total("client") - client0, 4)
        self.assertEqual(d.metric("chatd_connections_accepted_total") - acc0, n)
        # the remaining sessions still work
        sess[3].message(sess[4].jid, "still here")
        sess[4].expect_message("still here")
        self.assertGreater(d.metric("chatd_stanzas_total"), 0)

    def test_lifetimes_and_ages(self):
        """Open N, close M: the duration histogram counts exactly M more, the
        age buckets count the N - M open ones, and every age lies between
        what the test's own clock allows."""
        d = self.d

        def hist(m, name):
            out = {}
            for k, v in m.items():
                n, labels = xmpp.parse_labels(k)
                if n == name:
                    le = labels["le"]
                    out[float("inf") if le == "+Inf" else float(le)] = v
            return out

        m0 = d.metrics()
        dur0 = hist(m0, "chatd_connection_duration_seconds_bucket")
        count0 = m0["chatd_connection_duration_seconds_count"]
        self.assertEqual(hist(m0, "chatd_connection_age_seconds_bucket")[float("inf")], 0)
        bounds = sorted(dur0)
        self.assertEqual(bounds, sorted(hist(m0, "chatd_connection_age_seconds_bucket")))
        self.assertEqual(len(bounds), 62)
        self.assertEqual((bounds[0], bounds[-2]), (1.0, 1e6))
        t_old = time.monotonic()
        old = [d.client() for _ in range(6)]
        self.clients += old
        self.assertEqual(d.wait_metric("chatd_connections", 6), 6)
        time.sleep(1.3)  # the six are now older than 1.25 s, whatever comes next
        t_new = time.monotonic()
        new = [d.client() for _ in range(4)]
        self.clients += new
        self.assertEqual(d.wait_metric("chatd_connections", 10), 10)
        for c in old[:3] + new[:2]:
            c.close(send_close=False)
        self.assertEqual(d.wait_metric("chatd_connections", 5), 5)
        m = d.metrics()
        t_read = time.monotonic()
        ages = hist(m, "chatd_connection_age_seconds_bucket")
        dur = hist(m, "chatd_connection_duration_seconds_bucket")
        self.assertEqual(ages[float("inf")], 5)
        # chatd ran before the first connect and runs on
        self.assertGreaterEqual(m["chatd_uptime_seconds"], t_read - t_old - 0.01)
        self.assertGreaterEqual(d.metric("chatd_uptime_seconds"), m["chatd_uptime_seconds"])
        self.assertEqual(m["chatd_connection_duration_seconds_count"] - count0, 5)
        self.assertEqual(dur[float("inf")], m["chatd_connection_duration_seconds_count"])
        self.assertGreater(m["chatd_connection_duration_seconds_sum"],
                           m0["chatd_connection_duration_seconds_sum"])
        prev = 0
        for b in bounds:  # cumulative: never decreasing
            self.assertGreaterEqual(ages[b], prev)
            prev = ages[b]
        # No open connection is younger than 0 or older than the test's
        # clock allows: the 3 old ones are older than 1.25 s, and every one
        # is younger than the time since the first connect.
        for b in bounds[:-1]:
            if b <= 1.25:
                self.assertLessEqual(ages[b], 2, b)  # only the 2 new ones may be this young
            if b >= t_read - t_old:
                self.assertEqual(ages[b], 5, b)
            if b >= t_read - t_new and b < 1.25:
                self.assertEqual(ages[b], 2, b)
        # Lifetimes: the 3 old ones lived over 1.25 s, the 2 new ones less
        # than their time since connect; none lived longer than the test.
        for b in bounds[:-1]:
            delta = dur[b] - dur0[b]
            if b < 1.25:
                self.assertLessEqual(delta, 2, b)
            if b >= t_read - t_new and b < 1.25:
                self.assertEqual(delta, 2, b)
            if b >= t_read - t_old:
                self.assertEqual(delta, 5, b)

    def test_exposition_format(self):
        st, body = self.d.http("/metrics")
        self.assertEqual(st, 200)
        types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", body, re.M))
        self.assertEqual(types.get("chatd_connections"), "gauge")
        self.assertEqual(types.get("chatd_sessions"), "gauge")
        self.assertEqual(types.get("chatd_draining"), "gauge")
        for c in ("chatd_connections_accepted_total", "chatd_connections_closed_total",
                  "chatd_stanzas_total"):
            self.assertIn(types.get(c), ("counter",), c)
        m = self.d.metrics()
        info = [k for k in m if k.startswith("chatd_build_info")]
        self.assertEqual(len(info), 1, info)
        name, labels = xmpp.parse_labels(info[0])
        self.assertEqual(labels.get("version"), "v-metrics")
        self.assertEqual(labels.get("instance"), "m-1")
        self.assertEqual(m[info[0]], 1)
        self.assertEqual(m["chatd_draining"], 0)
        self.assertEqual(self.d.http("/healthz")[0], 200)
        self.assertEqual(self.d.http("/readyz")[0], 200)
        self.assertEqual(self.d.http("/nope")[0], 404)

    def test_build_info_from_environment(self):
        # CHATD_VERSION and POD_NAME, as Kubernetes sets them
        d = Chatd(users=USERS, instance=None, version_label=None,
                  env={"CHATD_VERSION": "v-env", "POD_NAME": "chat-abc-123"})
        d.start()
        try:
            info = [k for k in d.metrics() if k.startswith("chatd_build_info")]
            labels = xmpp.parse_labels(info[0])[1]
            self.assertEqual((labels["version"], labels["instance"]), ("v-env", "chat-abc-123"))
            c = d.login("alice")
            st = c.iq("<query xmlns='%s'/>" % xmpp.NS_VERSION, to=D)
            qv = st.find(q(xmpp.NS_VERSION, "query"))
            self.assertEqual(qv.findtext(q(xmpp.NS_VERSION, "name")), "chatd")
            self.assertEqual(qv.findtext(q(xmpp.NS_VERSION, "version")), "v-env")
            self.assertEqual(qv.findtext(q(xmpp.NS_VERSION, "os")), "instance=chat-abc-123")
            c.close()
        finally:
            rc = d.stop()
        exit_clean(self, d, rc)


    def test_configuration_from_environment_only(self):
        # every flag also from CHATD_<FLAG>
        d = Chatd(users=USERS)
        d.cert, d.key = xmpp.make_cert()
        for u, pw in USERS.items():
            d.add_user(u, pw)
        d.port, d.http_port = harness.free_port(), harness.free_port()
        env = {"CHATD_LISTEN": "127.0.0.1:%d" % d.port, "CHATD_HTTP": "127.0.0.1:%d" % d.http_port,
               "CHATD_DOMAIN": "env.test", "CHATD_USERS": d.users_file,
               "CHATD_TLS_CERT": d.cert, "CHATD_TLS_KEY": d.key, "CHATD_REQUIRE_TLS": "1",
               "CHATD_MAX_CONNECTIONS": "2", "CHATD_INSTANCE": "env-inst"}
        d.proc = harness.Proc([harness.binary("chatd")], env=env, name="chatd")
        try:
            harness.wait_for(lambda: d.http("/readyz")[0] == 200, 20, what="ready")
            c = xmpp.Client(d.port, domain="example.test")
            c.open_stream()
            self.assertEqual(c.wait_stream_error(5), "host-unknown")
            c.close()
            c = xmpp.Client(d.port, domain="env.test")
            f = c.open_stream()
            self.assertEqual(c.mechanisms(f), [])  # CHATD_REQUIRE_TLS
            c2 = xmpp.Client(d.port, domain="env.test")
            c3 = xmpp.Client(d.port, domain="env.test")
            c3.send(xmpp.stream_header(to="env.test"))
            self.assertEqual(c3.wait_stream_error(5), "resource-constraint")  # max 2
            for x in (c, c2, c3):
                x.close()
            self.assertIn('instance="env-inst"', d.metrics_text())
        finally:
            rc = d.stop()
        exit_clean(self, d, rc)

    def test_http_garbage_leaves_server_up(self):
        for junk in (b"\x16\x03\x01\x02\x00" + os.urandom(200), b"GET /" + b"a" * 100000 +
                     b" HTTP/1.1\r\n\r\n", b"GET /metrics HTTP/1.1\r\nX: " + b"b" * 200000 +
                     b"\r\n\r\n", b"\r\n\r\n\r\n"):
            s = socket.create_connection(("127.0.0.1", self.d.http_port), timeout=5)
            try:
                s.sendall(junk)
                s.settimeout(5)
                while s.recv(65536):
                    pass
            except OSError:
                pass
            s.close()
        self.assertEqual(self.d.http("/healthz")[0], 200)
        self.assertEqual(self.d.metric("chatd_connections"), 0)


class Drain(unittest.TestCase):
    def start(self, drain):
        d = Chatd(users=USERS, args=["--drain-timeout", str(drain), "--ping-interval", "600"])
        d.start()
        return d

    def test_drain_keeps_sessions_then_system_shutdown(self):
        drain = 3
        d = self.start(drain)
        a = d.login("alice", resource="a")
        b = d.login("bob", resource="b")
        leaver = d.login("alice", resource="leaver")
        self.assertEqual(d.http("/readyz")[0], 200)
        d.proc.signal(signal.SIGTERM)
        t0 = time.monotonic()
        harness.wait_for(lambda: d.http("/readyz")[0] == 503, 5, what="/readyz 503")
        self.assertEqual(d.metric("chatd_draining"), 1)
        self.assertEqual(d.http("/healthz")[0], 200)
        # the listener is closed: new connections are refused
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", d.port), timeout=2).close()
        # established sessions keep working while draining
        a.message(b.jid, "during drain")
        self.assertEqual(b.expect_message("during drain").get("from"), a.jid)
        leaver.close()
        self.assertEqual(d.wait_metric("chatd_connections", 2), 2)
        # after --drain-timeout: system-shutdown for the rest, exit 0
        self.assertEqual(a.wait_stream_error(drain + 10), "system-shutdown")
        self.assertEqual(b.wait_stream_error(5), "system-shutdown")
        self.assertTrue(a.closed_tag and b.closed_tag)
        self.assertGreaterEqual(time.monotonic() - t0, drain - 1)
        a.close()
        b.close()
        exit_clean(self, d, d.proc.wait(15))

    def test_drain_over_tls_and_sigint(self):
        # SIGINT drains like SIGTERM; the system-shutdown error arrives
        # intact through TLS
        d = self.start(1)
        a = d.client()
        a.login("alice", "alice-pw", tls=True, cafile=d.cert)
        d.proc.signal(signal.SIGINT)
        self.assertEqual(a.wait_stream_error(15), "system-shutdown", a.end_detail)
        self.assertTrue(a.closed_tag)
        a.close()
        exit_clean(self, d, d.proc.wait(15))

    def test_drain_ends_when_last_client_leaves(self):
        d = self.start(120)
        a = d.login("alice")
        d.proc.signal(signal.SIGTERM)
        harness.wait_for(lambda: d.http("/readyz")[0] == 503, 5, what="/readyz 503")
        st = a.iq("<ping xmlns='%s'/>" % NS_PING, to=D)
        self.assertEqual(st.get("type"), "result")
        a.close()
        # nothing left to wait for: exits long before the 120 s deadline
        exit_clean(self, d, d.proc.wait(20))

    def test_second_sigterm_closes_at_once(self):
        d = self.start(120)
        a = d.login("alice")
        d.proc.signal(signal.SIGTERM)
        harness.wait_for(lambda: d.http("/readyz")[0] == 503, 5, what="/readyz 503")
        self.assertIsNone(a.wait_end(0.5))  # still connected
        d.proc.signal(signal.SIGTERM)
        self.assertEqual(a.wait_stream_error(10), "system-shutdown")
        a.close()
        exit_clean(self, d, d.proc.wait(20))

    def test_timeouts_beyond_the_clock_range_are_refused(self):
        # deadlines are compared on a 32-bit millisecond clock: 30 days of
        # --drain-timeout used to read as already past, and SIGTERM then
        # closed every session at once
        for flag in ("--drain-timeout", "--ping-interval", "--ping-timeout",
                     "--auth-timeout"):
            p = harness.Proc([harness.binary("chatd"), "--listen",
                              "127.0.0.1:%d" % harness.free_port(), "--http", "",
                              "--auth-any", flag, "2592000"], name="chatd")
            self.assertEqual(p.wait(timeout=20), 2, flag)
            self.assertIn(flag.lstrip("-"), p.stderr())
            self.assertIsNone(p.sanitizer_report())
        d = self.start(2000000)  # the largest accepted: 23 days
        a = d.login("alice")
        d.proc.signal(signal.SIGTERM)
        harness.wait_for(lambda: d.http("/readyz")[0] == 503, 5, what="/readyz 503")
        self.assertIsNone(a.wait_end(1.5))  # still connected: draining
        a.close()
        exit_clean(self, d, d.proc.wait(20))

    def test_listen_failure_exits_nonzero(self):
        # a chatd that cannot listen never becomes ready: non-zero exit
        blocker = socket.socket()
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        port = blocker.getsockname()[1]
        d = Chatd(users=USERS)
        d.port, d.http_port = port, harness.free_port()
        d.cert, d.key = xmpp.make_cert()
        for u, pw in USERS.items():
            d.add_user(u, pw)
        d.proc = harness.Proc(d.argv(), name="chatd")
        try:
            rc = d.proc.wait(20)
        finally:
            blocker.close()
        self.assertNotEqual(rc, 0)
        d.check_clean(self)


class Pings(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # interval 2 s: keepalives every 0.2 s keep a wide margin on a
        # loaded machine; the timeout stays short
        cls.d = Chatd(users=USERS, args=["--ping-interval", "2", "--ping-timeout", "1",
                                         "--auth-timeout", "30"])
        cls.d.start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.d.stop()
        if rc != 0 or cls.d.sanitizer_report():
            raise AssertionError("chatd exit %s, sanitizer %s" % (rc, cls.d.sanitizer_report()))

    def test_dead_client_closed_live_client_kept(self):
        dead = self.d.login("alice", resource="dead")
        dead.auto_pong = False
        live = self.d.login("bob", resource="live")
        # the live client answers pings as they come (auto_pong while polling)
        deadline = time.monotonic() + 15
        while dead.end is None and time.monotonic() < deadline:
            dead.poll()
            live.poll()
            time.sleep(0.05)
        # the server pinged the silent client...
        pings = [s for s in dead.pending if s.tag == q(NS_CLIENT, "iq") and
                 s.find(q(NS_PING, "ping")) is not None]
        self.assertEqual(len(pings), 1, dead.pending)
        self.assertEqual(pings[0].get("type"), "get")
        # ...and closed it when no answer came
        self.assertEqual(dead.wait_stream_error(5), "connection-timeout")
        self.assertTrue(dead.closed_tag)
        # the answering client is still there
        self.assertIsNone(live.end)
        st = live.iq("<ping xmlns='%s'/>" % NS_PING, to=D)
        self.assertEqual(st.get("type"), "result")
        self.assertGreater(self.d.metric("chatd_connections_closed_total"
                                         '{reason="connection-timeout"}', 0), 0)
        live.close()

    def test_ping_to_a_resource_with_xml_special_characters(self):
        # resourceprep allows ' & < in a resource: the server's ping must
        # escape the JID, or the client's stream breaks
        c = self.d.login("alice", resource="q'a&b<c\"")
        c.auto_pong = False
        ping = None
        deadline = time.monotonic() + 8
        while ping is None and c.end is None and time.monotonic() < deadline:
            c.poll()
            for st in c.pending:
                if st.tag == q(NS_CLIENT, "iq") and st.find(q(NS_PING, "ping")) is not None:
                    ping = st
            time.sleep(0.05)
        self.assertIsNotNone(ping, "no well-formed ping (end=%s)" % (c.end,))
        self.assertEqual(ping.get("to"), c.jid)
        self.assertTrue(c.jid.endswith("/q'a&b<c\""), c.jid)
        c.close()

    def test_error_reply_to_ping_means_alive(self):
        # XEP-0199: an error reply (a client without ping support) still
        # proves the client is there
        c = self.d.login("alice", resource="err")
        c.auto_pong = False
        answered = 0
        end = time.monotonic() + 4.5
        while time.monotonic() < end and c.end is None:
            c.poll()
            for st in c.pending:
                if st.tag == q(NS_CLIENT, "iq") and st.get("type") == "get":
                    c.send("<iq type='error' id='%s' to='%s'><ping xmlns='%s'/><error "
                           "type='cancel'><service-unavailable xmlns='%s'/></error></iq>" % (
                               st.get("id"), st.get("from") or D, NS_PING, xmpp.NS_STANZA_ERR))
                    answered += 1
            c.pending = []
            time.sleep(0.05)
        self.assertGreaterEqual(answered, 1)
        self.assertIsNone(c.end, "closed although it answered: %s" % c.stream_error)
        c.close()

    def test_whitespace_keepalive(self):
        c = self.d.login("alice", resource="ws")
        c.auto_pong = False
        end = time.monotonic() + 4.5
        while time.monotonic() < end:
            self.assertTrue(c.send(" "))
            st = c.next_stanza(timeout=0.2)
            self.assertIsNone(st, "got %s although the client was never idle" % (
                st is not None and xmpp.ET.tostring(st)))
            self.assertIsNone(c.end)
        st = c.iq("<ping xmlns='%s'/>" % NS_PING, to=D)
        self.assertEqual(st.get("type"), "result")
        c.close()

    def test_libstrophe_answers_server_pings(self):
        s = xmpp.Strophe(self.d, "bob@" + D, "bob-pw", resource="st",
                         actions=["presence", "sleep", "4000", "ping"])
        self.assertEqual(s.wait(30), 0, s.describe())
        self.assertGreaterEqual(len(s.find("ping-received")), 1, s.describe())
        self.assertIsNone(s.proc.sanitizer_report())


if __name__ == "__main__":
    unittest.main()
