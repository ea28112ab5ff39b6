"""chatd against hostile or misbehaving clients: nothing one client does may
take the server down, starve the others or flood the log.

Only outcomes are asserted (who got answered, who was closed and with which
stream error, how many log lines), never timings; the figures are in
bench/run.sh fairness.
"""
import re
import socket
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
