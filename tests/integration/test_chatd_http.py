"""The HTTP endpoint (/healthz, /readyz, /metrics) under held, idle and
slow connections: it must keep answering while they are held and after they
are gone, and its limits (--http-max-connections, --http-max-per-ip,
--http-timeout) must apply. Only answers are asserted, never how fast they
came (the latency figure is bench/run.sh http).

The held connections come from other loopback addresses (127.0.0.2 ...)
than the probes (127.0.0.1), as a kubelet's probes come from the node while
the connections that hold the port come from elsewhere.
"""
import socket
import time
import unittest

import harness
import xmpp
from xmpp import Chatd


def hold(port, n, sources, slow=False):
    """n connections to port spread over the source addresses; with slow,
    each sends the start of a request head and never finishes it."""
    socks = []
    for i in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((sources[i % len(sources)], 0))
        s.settimeout(5)
        s.connect(("127.0.0.1", port))
        if slow:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        socks.append(s)
    return socks


def closed_by_peer(s, timeout=5.0):
    """True when the server closed s (EOF or reset) within timeout."""
    s.settimeout(timeout)
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


class Http(unittest.TestCase):
    def start(self, args=()):
        d = Chatd(auth_any=True, tls=False, args=list(args))
        d.start()
        self.addCleanup(self.stop, d)
        return d

    def stop(self, d):
        rc = d.stop()
        self.assertEqual(rc, 0, d.proc.stderr()[-2000:])
        d.check_clean(self)

    def assert_answers(self, d):
        self.assertEqual(d.http("/healthz"), (200, "ok\n"))
        self.assertEqual(d.http("/readyz"), (200, "ready\n"))
        st, body = d.http("/metrics")
        self.assertEqual(st, 200)
        self.assertIn("chatd_connections ", body)

    def test_answers_after_64_held_connections_close(self):
        # libmicrohttpd stopped accepting at its limit of 64 and nothing ran
        # it again once they closed: the endpoint was dead for good.
        d = self.start()
        socks = hold(d.http_port, 64, ["127.0.0.1"])
        time.sleep(1)
        for s in socks:
            s.close()
        harness.wait_for(lambda: d.http("/healthz", timeout=2)[0] == 200, 10,
                         what="/healthz after the held connections closed")
        self.assert_answers(d)

    def test_probe_answers_while_1000_idle_and_slow_connections_are_held(self):
        d = self.start()
        sources = ["127.0.0.%d" % i for i in range(2, 22)]  # 20 x 50 < --http-max-per-ip 64
        socks = []
        try:
            socks += hold(d.http_port, 500, sources)
            socks += hold(d.http_port, 500, sources, slow=True)
            # a client session meanwhile
            c = d.client()
            c.login("alice", "alice", mech="PLAIN")
            for i in range(20):
                st, body = d.http("/healthz", timeout=5)
                self.assertEqual((st, body), (200, "ok\n"), "poll %d" % i)
            self.assert_answers(d)
            self.assertEqual(d.metric("chatd_connections"), 1)
            c.close()
            # the 1000 are still held by the server (none was closed)
            for s in socks[:5] + socks[-5:]:
                self.assertFalse(closed_by_peer(s, 0.05))
        finally:
            for s in socks:
                s.close()
        self.assert_answers(d)

    def test_per_address_limit(self):
        d = self.start(["--http-max-per-ip", "8"])
        socks = hold(d.http_port, 8, ["127.0.0.2"])
        try:
            extra = hold(d.http_port, 1, ["127.0.0.2"])[0]
            socks.append(extra)
            self.assertTrue(closed_by_peer(extra), "a 9th connection from one address")
            self.assertFalse(closed_by_peer(socks[0], 0.05))
            self.assert_answers(d)  # from another address
        finally:
            for s in socks:
                s.close()

    def test_silent_connection_is_closed_after_the_timeout(self):
        d = self.start(["--http-timeout", "1"])
        idle, slow = hold(d.http_port, 1, ["127.0.0.2"]) + hold(d.http_port, 1, ["127.0.0.2"],
                                                                slow=True)
        try:
            self.assertTrue(closed_by_peer(idle, 10), "idle connection kept")
            self.assertTrue(closed_by_peer(slow, 10), "half a request head kept")
            self.assert_answers(d)
        finally:
            idle.close()
            slow.close()

    def test_bad_limits_are_usage_errors(self):
        for args in (["--http-max-connections", "0"], ["--http-timeout", "0"],
                     ["--http-timeout", "3000000"], ["--http-max-per-ip", "x"]):
            p = harness.Proc([harness.binary("chatd"), "--http", "127.0.0.1:0"] + args)
            self.assertEqual(p.wait(20), 2, args)
            self.assertIn("chatd:", p.stderr())

    def test_draining_server_answers_until_the_end(self):
        d = Chatd(auth_any=True, tls=False, args=["--drain-timeout", "30"])
        d.start()
        try:
            c = d.client()
            c.login("bob", "bob", mech="PLAIN")
            d.proc.signal(15)
            harness.wait_for(lambda: d.http("/readyz")[0] == 503, 10, what="draining")
            self.assertEqual(d.http("/readyz"), (503, "draining\n"))
            self.assertEqual(d.http("/healthz"), (200, "ok\n"))
            self.assertEqual(d.metric("chatd_draining"), 1)
            c.close()
            self.assertEqual(d.proc.wait(20), 0)
        finally:
            d.stop()
        d.check_clean(self)


if __name__ == "__main__":
    unittest.main()
