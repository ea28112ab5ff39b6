"""chatd against hostile or misbehaving clients: nothing one client does may
take the server down, starve the others or flood the log.

Only outcomes are asserted (who got answered, who was closed and with which
stream error, how many log lines), never timings; the figures are in
bench/run.sh fairness.
"""
import re
import socket
import threading
import time
import unittest

import harness
import xmpp
from xmpp import Chatd


def log_count(text, event):
    """Lines of event in text, counting those reported as suppressed."""
    shown = len(re.findall(r" event=%s( |$)" % re.escape(event), text, re.M))
    hidden = sum(int(n) for n in re.findall(
        r" event=log_suppressed of=%s count=(\d+)" % re.escape(event), text))
    return shown, hidden


def flood_bytes(n):
    """n bytes (about) of headline messages to an offline full JID: chatd
    drops them, so they produce no output."""
    one = ("<message to='nobody@%s/gone' type='headline'><body>%s</body></message>"
           % (xmpp.DOMAIN, "f" * 150)).encode()
    return one * (n // len(one) + 1)


class Shaper(unittest.TestCase):
    def test_flooder_is_paused_not_dropped_and_a_quiet_client_is_answered(self):
        d = Chatd(auth_any=True, tls=False,
                  args=["--rate-limit", "65536", "--rate-burst", "16384"])
        d.start()
        try:
            quiet = d.client()
            quiet.login("quiet", "quiet", mech="PLAIN")
            flooder = d.client()
            flooder.login("flooder", "flooder", mech="PLAIN")
            closed0 = d.closed_total()
            data = flood_bytes(250000)
            done = []

            def flood():
                flooder.sock.settimeout(60)
                flooder.sock.sendall(data)
                done.append(True)
            t = threading.Thread(target=flood, daemon=True)
            t.start()
            harness.wait_for(lambda: d.metric("chatd_input_paused_total") > 0, 10,
                             what="the flooder's reads paused")
            for i in range(10):
                r = quiet.iq("<ping xmlns='urn:xmpp:ping'/>", to=xmpp.DOMAIN, timeout=10)
                self.assertEqual(r.get("type"), "result", "ping %d" % i)
            t.join(60)
            self.assertTrue(done, "the flood could not be written")
            # every byte was read in the end, none dropped, nobody closed
            r = flooder.iq("<ping xmlns='urn:xmpp:ping'/>", to=xmpp.DOMAIN, timeout=30)
            self.assertEqual(r.get("type"), "result")
            self.assertEqual(d.closed_total(), closed0)
            self.assertGreaterEqual(d.metric("chatd_stanzas_total"), len(data) // 230)
            quiet.close()
            flooder.close()
        finally:
            rc = d.stop()
        self.assertEqual(rc, 0)
        d.check_clean(self)

    def test_input_before_authentication_is_shaped(self):
        d = Chatd(auth_any=True, tls=False,
                  args=["--preauth-rate-limit", "4096", "--preauth-rate-burst", "4096",
                        "--auth-timeout", "60"])
        d.start()
        try:
            c = d.client()
            c.open_stream()
            c.sock.sendall(b" " * 20000)  # whitespace keepalives: legal, but a lot
            harness.wait_for(lambda: d.metric("chatd_input_paused_total") > 0, 10,
                             what="pre-auth reads paused")
            # paused, not dropped: the stream goes on once the bucket refills
            c.sock.sendall(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' "
                           b"mechanism='PLAIN'>AGFsaWNlAGFsaWNl</auth>")
            self.assertEqual(c._sasl_result(timeout=20).tag, xmpp.q(xmpp.NS_SASL, "success"))
            self.assertEqual(d.closed_total(), 0)
            c.close()
        finally:
            rc = d.stop()
        self.assertEqual(rc, 0)
        d.check_clean(self)

    def test_bad_shaper_flags(self):
        for args in (["--rate-burst", "100"], ["--preauth-rate-burst", "1"],
                     ["--rate-limit", "x"]):
            p = harness.Proc([harness.binary("chatd"), "--http", ""] + args)
            self.assertEqual(p.wait(20), 2, args)


class FailedLogins(unittest.TestCase):
    USERS = {"alice": "alice-pw", "bob": "bob-pw"}

    def start(self, args):
        d = Chatd(users=self.USERS, tls=False, args=["--allow-plaintext-auth"] + args)
        d.start()
        self.addCleanup(self.stop, d)
        return d

    def stop(self, d):
        self.assertEqual(d.stop(), 0)
        d.check_clean(self)

    def attempt(self, d, user, password, mech="PLAIN", source=None):
        c = d.client(source=source)
        c.open_stream()
        try:
            if mech == "PLAIN":
                return c.auth_plain(user, password)
            return c.auth_scram(user, password, mech=mech)
        except (TimeoutError, xmpp.ProtocolError, OSError):
            # no SASL answer: the stream must end with policy-violation
            c.wait_end(10)
            return ("closed", c.stream_error)
        finally:
            c.close(send_close=False)

    def test_user_name_is_blocked_after_failures(self):
        d = self.start(["--auth-fail-user-max", "3", "--auth-fail-ip-max", "0"])
        for _ in range(3):
            self.assertEqual(self.attempt(d, "alice", "guess"), ("failure", "not-authorized"))
        # blocked: even the right password is not evaluated; no answer, then
        # the stream error
        self.assertEqual(self.attempt(d, "alice", "alice-pw"), ("closed", "policy-violation"))
        self.assertEqual(self.attempt(d, "alice", "alice-pw", mech="SCRAM-SHA-256"),
                         ("closed", "policy-violation"))
        # other names are not affected
        self.assertEqual(self.attempt(d, "bob", "bob-pw"), ("success", None))
        self.assertEqual(d.metric("chatd_auth_blocked_total"), 2)
        self.assertIn("event=auth_blocked", d.proc.stderr())

    def test_address_is_blocked_after_failures(self):
        d = self.start(["--auth-fail-ip-max", "3", "--auth-fail-user-max", "0"])
        for name in ("x1", "x2", "nobody"):
            self.assertEqual(self.attempt(d, name, "guess", mech="SCRAM-SHA-1")[0], "failure")
        self.assertEqual(self.attempt(d, "bob", "bob-pw"), ("closed", "policy-violation"))
        # pipelined attempts behind a blocked one are not evaluated either
        c = d.client()
        c.open_stream()
        c.send("<auth xmlns='%s' mechanism='PLAIN'>AGJvYgBib2ItcHc=</auth>" % xmpp.NS_SASL * 5)
        c.wait_end(10)
        self.assertEqual(c.stream_error, "policy-violation")
        self.assertFalse([st for st in c.pending if st.tag.startswith("{%s}" % xmpp.NS_SASL)])
        c.close(send_close=False)
        # another address is not affected
        self.assertEqual(self.attempt(d, "bob", "bob-pw", source="127.0.0.2"), ("success", None))
        self.assertEqual(d.metric("chatd_auth_blocked_total"), 2)

    def test_success_forgets_the_name(self):
        d = self.start(["--auth-fail-user-max", "3", "--auth-fail-ip-max", "0"])
        for _ in range(2):
            self.assertEqual(self.attempt(d, "alice", "guess")[0], "failure")
        self.assertEqual(self.attempt(d, "alice", "alice-pw"), ("success", None))
        for _ in range(2):
            self.assertEqual(self.attempt(d, "alice", "guess")[0], "failure")
        self.assertEqual(self.attempt(d, "alice", "alice-pw"), ("success", None))


class LogFlood(unittest.TestCase):
    def test_silent_connections_do_not_flood_the_log(self):
        # 300 connections that never log in: each times out. One line per
        # connection used to reach the log; now at most LOG_RATE_BURST a
        # second per event, and the rest are counted.
        d = Chatd(auth_any=True, tls=False, args=["--auth-timeout", "1"])
        d.start()
        socks = []
        try:
            for _ in range(300):
                socks.append(socket.create_connection(("127.0.0.1", d.port), timeout=5))
            harness.wait_for(lambda: d.closed_total("connection-timeout") == 300, 20,
                             what="300 auth timeouts")
            harness.wait_for(lambda: sum(log_count(d.proc.stderr(), "auth_timeout")) == 300,
                             10, what="the suppressed count in the log")
            shown, hidden = log_count(d.proc.stderr(), "auth_timeout")
            self.assertLessEqual(shown, 100, "one line per timed-out connection")
            self.assertGreater(hidden, 0)
            # the server still answers
            c = d.client()
            c.login("after", "after", mech="PLAIN")
            c.close()
        finally:
            for s in socks:
                s.close()
            rc = d.stop()
        self.assertEqual(rc, 0)
        d.check_clean(self)


if __name__ == "__main__":
    unittest.main()
