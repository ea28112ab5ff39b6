"""chatload's accounting against a real chatd (--auth-any): every connection's
fate and every message's fate checked against ground truth (chatd's own
/metrics counters, what a proxy swallowed, what chatd was made to do), plus
bad usage and the exit codes.
"""
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

import harness
import xmppdouble


def metrics(http_port):
    st, body = harness.http_get("http://127.0.0.1:%d/metrics" % http_port)
    return harness.parse_metrics(body) if st == 200 else {}


class Chatd:
    """A chatd on loopback with its HTTP port for /metrics."""

    def __init__(self, args=(), label="v-test", instance="inst-a"):
        self.port = harness.free_port()
        self.http = harness.free_port()
        self.proc = harness.Proc(
            [harness.binary("chatd"), "--listen", "127.0.0.1:%d" % self.port,
             "--http", "127.0.0.1:%d" % self.http, "--domain", "localhost",
             "--version-label", label, "--instance", instance,
             "--log-level", "warn"] + list(args), name="chatd")
        harness.wait_for(lambda: metrics(self.http), timeout=15, what="chatd /metrics")

    def metric(self, name):
        return metrics(self.http).get(name, 0)

    def wait_sessions(self, n, timeout=20):
        harness.wait_for(lambda: self.metric("chatd_sessions") == n, timeout=timeout,
                         what="%d chatd sessions" % n)


class ChatloadCase(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="rb-chatload-test-")
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            p.stop(signal.SIGKILL, timeout=5)
        for p in self.procs:
            self.assertIsNone(p.sanitizer_report(), "%s: sanitizer report" % p.name)

    def chatd(self, *args, **kw):
        d = Chatd(args, **kw)
        self.procs.append(d.proc)
        return d

    def chatload(self, *args, report=True):
        """Starts chatload; returns (proc, report path)."""
        path = os.path.join(self.tmp, "report-%d.json" % len(self.procs))
        argv = [harness.binary("chatload"), "--quiet", "--ping-interval", "0"] + [
            str(a) for a in args]
        if report:
            argv += ["--report", path]
        p = harness.Proc(argv, name="chatload")
        self.procs.append(p)
        return p, path

    def run_chatload(self, *args, timeout=60):
        p, path = self.chatload(*args)
        rc = p.wait(timeout=timeout)
        self.assertIsNone(p.sanitizer_report(), "chatload sanitizer report")
        with open(path) as f:
            return rc, json.load(f), p

    def assert_every_connection_has_one_fate(self, r):
        fates = (r["closed_by_client"] + r["closed_by_server_total"] + r["dropped"] +
                 r["connect_failures"] + r["login_failures"] + r["ping_timeouts"])
        self.assertEqual(fates, r["connections"], r)
        self.assertEqual(sum(r["closed_by_server"].values()), r["closed_by_server_total"])
        self.assertEqual(sum(r["dropped_by_reason"].values()), r["dropped"])


class Usage(ChatloadCase):
    def usage(self, *args):
        p = subprocess.run([harness.binary("chatload")] + list(args), capture_output=True,
                           text=True, timeout=20)
        self.assertNotIn("runtime error", p.stderr)
        return p

    def test_unknown_flag(self):
        p = self.usage("--clients", "3", "--frobnicate")
        self.assertEqual(p.returncode, 2)
        self.assertIn("unknown option --frobnicate", p.stderr)

    def test_bad_lifetime(self):
        for spec, why in (("fixed:abc", "bad duration"), ("gauss:5s", "expected none"),
                          ("uniform:9s-3s", "LOW <= HIGH"), ("exp:0s", "positive"),
                          ("lognormal:5s", "MEDIAN,SIGMA"), ("lognormal:5s,0", "SIGMA")):
            p = self.usage("--lifetime", spec)
            self.assertEqual(p.returncode, 2, spec)
            self.assertIn("--lifetime %s" % spec, p.stderr)
            self.assertIn(why, p.stderr)

    def test_bad_values(self):
        for args in (["--clients", "0"], ["--ramp", "fast"], ["--server", "nohostport"],
                     ["--user-pattern", "user"], ["--source-ips", "127.0.0.9-127.0.0.2"],
                     ["--duration"], ["extra-argument"]):
            p = self.usage(*args)
            self.assertEqual(p.returncode, 2, args)
            self.assertTrue(p.stderr.startswith("chatload: "), p.stderr)

    def test_help_lists_every_flag(self):
        p = self.usage("--help")
        self.assertEqual(p.returncode, 0)
        for flag in ("--server", "--domain", "--clients", "--ramp", "--source-ips",
                     "--user-pattern", "--password", "--tls", "--message-rate",
                     "--ping-interval", "--lifetime", "--duration", "--report", "--timeline",
                     "--expect-zero-drops", "--expect-zero-loss", "--workers",
                     "--loss-timeout"):
            self.assertIn(flag, p.stdout)

    def test_open_files_limit_of_64(self):
        # The open-files advice divides by (limit - 64): a limit of exactly
        # 64 must give the advice, not a division by zero.
        import resource

        def low_limit():
            resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
        p = subprocess.run([harness.binary("chatload"), "--quiet", "--clients", "100",
                            "--server", "127.0.0.1:%d" % harness.free_port(),
                            "--duration", "0.3", "--ping-interval", "0"],
                           capture_output=True, text=True, timeout=30, preexec_fn=low_limit)
        self.assertNotIn("runtime error", p.stderr)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("open-files limit is 64", p.stderr)

    def test_unreachable_server(self):
        port = harness.free_port()
        rc, r, p = self.run_chatload("--server", "127.0.0.1:%d" % port, "--clients", "3",
                                     "--duration", "1.5")
        self.assertEqual(rc, 1)
        self.assertIn("cannot connect to 127.0.0.1:%d" % port, p.stderr())
        self.assertIn("ECONNREFUSED", p.stderr())
        self.assertGreaterEqual(r["connect_failures"], 3)
        self.assertEqual(r["logins"], 0)
        self.assertIs(r["ok"], False)  # exit 1: the report says the same
        self.assertIsNone(r["ramp_s"])
        self.assert_every_connection_has_one_fate(r)


class Fates(ChatloadCase):
    def test_lognormal_lifetimes(self):
        """Heavy-tailed lifetimes end sessions like the others: every
        connection closed by its client, and chatd's lifetime histogram
        counted every one of them."""
        d = self.chatd("--auth-any")
        rc, r, _ = self.run_chatload("--server", "127.0.0.1:%d" % d.port, "--clients", "6",
                                     "--lifetime", "lognormal:300ms,0.5", "--duration", "3",
                                     "--seed", "7", "--expect-zero-drops",
                                     "--expect-no-server-close")
        self.assertEqual(rc, 0)
        self.assert_every_connection_has_one_fate(r)
        harness.wait_for(lambda: d.metric("chatd_connections") == 0, what="chatd empty")
        self.assertEqual(r["closed_by_client"], r["connections"])
        self.assertGreaterEqual(r["logins"], 12)  # every slot logged in again
        self.assertEqual(d.metric("chatd_connection_duration_seconds_count"), r["connections"])

    def test_lifetimes_closed_by_client(self):
        d = self.chatd("--auth-any")
        timeline = os.path.join(self.tmp, "t.csv")
        rc, r, _ = self.run_chatload("--server", "127.0.0.1:%d" % d.port, "--clients", "6",
                                     "--lifetime", "fixed:700ms", "--duration", "3",
                                     "--timeline", timeline, "--expect-zero-drops",
                                     "--expect-no-server-close")
        self.assertEqual(rc, 0)
        self.assert_every_connection_has_one_fate(r)
        # Ground truth: chatd accepted exactly the connections we made, and
        # every one ended as a session closed by its client.
        harness.wait_for(lambda: d.metric("chatd_connections") == 0, what="chatd empty")
        self.assertEqual(d.metric("chatd_connections_accepted_total"), r["connections"])
        # Connections still logging in when the run ended were ended by us too.
        self.assertTrue(r["connections"] - 6 <= r["logins"] <= r["connections"], r)
        self.assertEqual(r["closed_by_client"], r["connections"])
        self.assertGreaterEqual(r["logins"], 12)  # every slot logged in again
        self.assertEqual(r["dropped"], 0)
        self.assertEqual(r["closes_unacknowledged"], 0)
        self.assertEqual(r["connected_peak"], 6)
        self.assertEqual(list(r["per_version"]), ["v-test"])
        self.assertEqual(r["per_version"]["v-test"]["logins"], r["logins"])
        self.assertEqual(list(r["per_version"]["v-test"]["instances"]), ["inst-a"])
        with open(timeline) as f:
            rows = f.read().splitlines()
        self.assertEqual(rows[0].split(",")[:3], ["t", "connected", "connected_v-test"])
        self.assertGreaterEqual(len(rows), 4)
        self.assertEqual(sum(int(x.split(",")[3]) for x in rows[1:]), r["logins"])
        self.assertTrue(all(int(x.split(",")[1]) <= 6 for x in rows[1:]))
        self.assertEqual([x.split(",")[1] for x in rows[1:]],
                         [x.split(",")[2] for x in rows[1:]])

    def test_log_names_fates_and_phases(self):
        d = self.chatd("--auth-any")
        rc, r, p = self.run_chatload("--server", "127.0.0.1:%d" % d.port, "--clients", "2",
                                     "--duration", "1", "--log-level", "info")
        self.assertEqual(rc, 0)
        err = p.stderr()
        ends = re.findall(r"event=client_end .*?fate=(\S+)", err)
        self.assertEqual(ends, ["closed_by_client"] * r["connections"], err)
        phases = re.findall(r"event=phase from=(\S+) to=(\S+)", err)
        self.assertEqual(phases, [("running", "draining"), ("draining", "closing")], err)

    def test_sigkill_counts_drops(self):
        d = self.chatd("--auth-any")
        p, path = self.chatload("--server", "127.0.0.1:%d" % d.port, "--clients", "7",
                                "--duration", "3", "--expect-zero-drops")
        d.wait_sessions(7)
        d.proc.stop(signal.SIGKILL)
        self.assertEqual(p.wait(timeout=30), 1)  # zero drops expected, violated
        with open(path) as f:
            r = json.load(f)
        self.assertEqual(r["dropped"], 7)
        self.assertEqual(r["closed_by_client"], 0)
        self.assertEqual(r["closed_by_server_total"], 0)
        # chatd counts a session at bind, chatload a login at the version
        # reply: one killed in between is a drop that never logged in.
        self.assertTrue(0 < r["logins"] <= 7, r["logins"])
        self.assertGreater(r["connect_failures"], 0)  # reconnects found nobody
        self.assert_every_connection_has_one_fate(r)
        self.assertIn("expected zero drops: 7 dropped", p.stderr())
        # The verdict line at --duration's end says it too.
        self.assertRegex(p.stdout(), r"^7 dropped connections, 0 lost messages \(\d+ connections")

    def test_sigterm_short_drain_is_system_shutdown(self):
        d = self.chatd("--auth-any", "--drain-timeout", "1")
        p, path = self.chatload("--server", "127.0.0.1:%d" % d.port, "--clients", "7",
                                "--duration", "4", "--expect-zero-drops")
        d.wait_sessions(7)
        d.proc.signal(signal.SIGTERM)
        self.assertEqual(d.proc.wait(timeout=20), 0)
        self.assertEqual(p.wait(timeout=30), 0)  # no drop: the server closed properly
        with open(path) as f:
            r = json.load(f)
        self.assertEqual(r["closed_by_server"], {"system-shutdown": 7})
        self.assertEqual(r["dropped"], 0)
        self.assertEqual(r["logins"], 7)
        self.assert_every_connection_has_one_fate(r)

    def test_server_pings_are_answered(self):
        d = self.chatd("--auth-any", "--ping-interval", "1", "--ping-timeout", "1")
        rc, r, _ = self.run_chatload("--server", "127.0.0.1:%d" % d.port, "--clients", "3",
                                     "--duration", "3.5", "--expect-zero-drops",
                                     "--expect-no-server-close")
        self.assertEqual(rc, 0)
        self.assertGreaterEqual(r["server_pings"], 3)
        self.assertEqual(r["closed_by_client"], 3)
        self.assertEqual(r["connections"], 3)

    def test_sigint_closes_cleanly_and_reports(self):
        d = self.chatd("--auth-any")
        p, path = self.chatload("--server", "127.0.0.1:%d" % d.port, "--clients", "5",
                                "--message-rate", "2")
        d.wait_sessions(5)
        time.sleep(0.5)
        p.signal(signal.SIGINT)
        self.assertEqual(p.wait(timeout=30), 0)
        with open(path) as f:
            r = json.load(f)
        self.assertEqual(r["closed_by_client"], 5)
        self.assertEqual(r["closes_unacknowledged"], 0)
        # Established when the run ended, before the final logout.
        self.assertEqual(r["connected_end"], 5)
        self.assertEqual(r["per_version"]["v-test"]["connected_end"], 5)
        self.assertEqual(r["per_version"]["v-test"]["instances"]["inst-a"]["connected_end"], 5)
        self.assertIs(r["ok"], True)
        self.assertEqual(r["messages_lost"], 0)
        self.assertEqual(r["messages_delivered"], r["messages_sent"])
        # Ctrl-C ends with one human verdict line (as make demo prints it).
        self.assertEqual(p.stdout(), "0 dropped connections, 0 lost messages (5 connections, "
                         "%d messages delivered, %d bounced, 0 closed by the server)\n"
                         % (r["messages_delivered"], r["messages_bounced"]))
        harness.wait_for(lambda: d.metric("chatd_connections") == 0, what="chatd empty")

    def test_connect_that_never_completes_is_connect_failure(self):
        # A listener that never accepts and has a full backlog drops SYNs: the
        # TCP connect hangs. At --login-timeout that is a connect failure (no
        # TCP connection was made), not a login failure.
        lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(lsock.close)
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(0)
        port = lsock.getsockname()[1]
        fillers = []
        for _ in range(4):  # fill the accept queue (its size varies by kernel)
            f = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            f.setblocking(False)
            self.addCleanup(f.close)
            f.connect_ex(("127.0.0.1", port))
            fillers.append(f)
        time.sleep(0.3)
        rc, r, _ = self.run_chatload("--server", "127.0.0.1:%d" % port, "--clients", "3",
                                     "--login-timeout", "700ms", "--duration", "1.2")
        self.assertEqual(rc, 1)
        self.assert_every_connection_has_one_fate(r)
        self.assertEqual(r["logins"], 0)
        self.assertEqual(r["login_failures"], 0, r)
        self.assertGreaterEqual(r["connect_failures_by_reason"].get("ETIMEDOUT", 0), 3, r)

    def test_wrong_password_is_login_failure(self):
        users = os.path.join(self.tmp, "users")
        for u in ("user0", "user1"):
            subprocess.run([harness.binary("chatd"), "passwd", "--users", users, u],
                           input="right-pw\n", text=True, check=True, timeout=20,
                           capture_output=True)
        d = self.chatd("--users", users, "--allow-plaintext-auth")
        rc, r, p = self.run_chatload("--server", "127.0.0.1:%d" % d.port, "--clients", "2",
                                     "--password", "wrong-pw", "--duration", "1.5")
        self.assertEqual(rc, 1)
        self.assertIn("login failed: not-authorized", p.stderr())
        self.assertGreaterEqual(r["login_failures"], 2)
        self.assertEqual(r["login_failures_by_reason"], {"not-authorized": r["login_failures"]})
        self.assertEqual(r["logins"], 0)
        self.assertIs(r["ok"], False)  # exit 1: the report says the same
        self.assertIsNone(r["ramp_s"])
        self.assert_every_connection_has_one_fate(r)
        # The right password, through SCRAM-SHA-256, logs in.
        rc, r, _ = self.run_chatload("--server", "127.0.0.1:%d" % d.port, "--clients", "2",
                                     "--password", "right-pw", "--auth", "scram",
                                     "--duration", "2")
        self.assertEqual(rc, 0)
        self.assertEqual(r["logins"], 2)


class Tls(ChatloadCase):
    def test_starttls_required(self):
        cert, key = os.path.join(self.tmp, "cert.pem"), os.path.join(self.tmp, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                        key, "-out", cert, "-days", "2", "-subj", "/CN=localhost"],
                       check=True, capture_output=True, timeout=60)
        d = self.chatd("--auth-any", "--tls-cert", cert, "--tls-key", key, "--require-tls")
        rc, r, _ = self.run_chatload("--server", "127.0.0.1:%d" % d.port, "--clients", "3",
                                     "--tls", "--lifetime", "fixed:600ms",
                                     "--message-rate", "3", "--duration", "2",
                                     "--expect-zero-drops", "--expect-zero-loss")
        self.assertEqual(rc, 0)
        self.assertGreaterEqual(r["logins"], 6)
        self.assertEqual(r["closed_by_client"], r["connections"])
        self.assertEqual(r["messages_delivered"], r["messages_sent"])
        # Without --tls the server offers no mechanism before STARTTLS.
        rc, r, p = self.run_chatload("--server", "127.0.0.1:%d" % d.port, "--clients", "1",
                                     "--duration", "0.5")
        self.assertEqual(rc, 1)
        self.assertIn("login failed: no-mechanism", p.stderr())


class SwallowingProxy:
    """TCP proxy that forwards both ways but swallows the first <message> with
    a <body> going from the server to a client; with freeze=True it instead
    stops passing anything from the server once the version reply went by
    (a server that hangs after login)."""

    def __init__(self, target_port, freeze=False):
        self.target = target_port
        self.freeze = freeze
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.swallowed = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            s = socket.create_connection(("127.0.0.1", self.target))
            pair = {"socks": (c, s), "open": 2}
            threading.Thread(target=self._pump, args=(c, s, False, pair), daemon=True).start()
            threading.Thread(target=self._pump, args=(s, c, True, pair), daemon=True).start()

    def _filter(self, buf, out, state):
        """Moves what may pass from buf to out; returns the rest (a partial
        <message> kept until its end arrives)."""
        if self.freeze:
            if not state.get("frozen"):
                i = buf.find(b"jabber:iq:version")
                if i < 0:
                    out += buf
                    return b""
                out += buf[:buf.find(b"</iq>", i) + 5]
                state["frozen"] = True
            return b""
        while buf:
            with self.lock:
                done = bool(self.swallowed)
            if done:
                out += buf
                return b""
            i = buf.find(b"<message")
            if i < 0:
                keep = 0
                for k in range(1, 8):
                    if b"<message".startswith(buf[-k:]):
                        keep = k
                out += buf[:len(buf) - keep]
                return buf[len(buf) - keep:]
            out += buf[:i]
            buf = buf[i:]
            j = buf.find(b"</message>")
            if j < 0:
                return buf
            stanza, buf = buf[:j + 10], buf[j + 10:]
            if b"<body>" in stanza and not re.search(rb"type=['\"]error", stanza):
                with self.lock:
                    self.swallowed.append(stanza)
                continue
            out += stanza
        return buf

    def _pump(self, src, dst, filtering, pair):
        buf = b""
        state = {}
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if filtering:
                    out = bytearray()
                    buf = self._filter(buf + data, out, state)
                    data = bytes(out)
                if data:
                    dst.sendall(data)
        except OSError:
            pass
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        with self.lock:
            pair["open"] -= 1
            last = pair["open"] == 0
        if last:
            for x in pair["socks"]:
                x.close()

    def close(self):
        self.lsock.close()


class Messages(ChatloadCase):
    def test_delivered_with_latency_and_pairs(self):
        d = self.chatd("--auth-any")
        rc, r, _ = self.run_chatload("--server", "127.0.0.1:%d" % d.port, "--clients", "6",
                                     "--message-rate", "4", "--duration", "2",
                                     "--expect-zero-loss", "--expect-zero-drops")
        self.assertEqual(rc, 0)
        self.assertGreater(r["messages_sent"], 10)
        self.assertEqual(r["messages_delivered"], r["messages_sent"])
        self.assertEqual(r["messages_lost"] + r["messages_duplicated"] + r["messages_bounced"], 0)
        self.assertEqual(r["messages_misdelivered"], 0)  # each reached its addressee
        lat = r["latency_ms"]
        self.assertEqual(lat["count"], r["messages_delivered"])
        self.assertTrue(0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"])
        self.assertEqual(r["message_pairs"],
                         [{"from": "v-test", "to": "v-test", "sent": r["messages_sent"],
                           "delivered": r["messages_sent"], "lost": 0, "bounced": 0,
                           "duplicated": 0}])

    def test_message_rate_above_the_tick_rate(self):
        # 300/s per client is 30 per 100 ms tick: all of them are sent (at
        # most 4 per tick were, 40/s whatever --message-rate said).
        d = self.chatd("--auth-any")
        rc, r, _ = self.run_chatload("--server", "127.0.0.1:%d" % d.port, "--clients", "2",
                                     "--message-rate", "300", "--duration", "1.5",
                                     "--expect-zero-loss")
        self.assertEqual(rc, 0)
        self.assertGreater(r["messages_sent"], 300, r["messages_sent"])
        self.assertEqual(r["messages_delivered"], r["messages_sent"])

    def test_anonymous_to_bare_jids(self):
        d = self.chatd("--allow-anonymous")
        rc, r, _ = self.run_chatload("--server", "127.0.0.1:%d" % d.port, "--clients", "3",
                                     "--auth", "anonymous", "--target", "bare",
                                     "--message-rate", "4", "--duration", "1.5",
                                     "--expect-zero-loss")
        self.assertEqual(rc, 0)
        self.assertEqual(r["logins"], 3)
        self.assertGreater(r["messages_sent"], 3)
        self.assertEqual(r["messages_delivered"], r["messages_sent"])
        self.assertEqual(r["messages_misdelivered"], 0)

    def test_offline_user_is_bounced_not_lost(self):
        d = self.chatd("--auth-any")
        rc, r, _ = self.run_chatload("--server", "127.0.0.1:%d" % d.port, "--clients", "3",
                                     "--message-rate", "4", "--offline-share", "1",
                                     "--duration", "1.5", "--loss-timeout", "3",
                                     "--expect-zero-loss")
        self.assertEqual(rc, 0)
        self.assertGreater(r["messages_sent"], 3)
        self.assertEqual(r["messages_offline"], r["messages_sent"])
        self.assertEqual(r["messages_bounced"], r["messages_sent"])
        self.assertEqual(r["messages_lost"], 0)
        self.assertEqual(r["messages_delivered"], 0)

    def test_swallowed_message_is_lost(self):
        d = self.chatd("--auth-any")
        proxy = SwallowingProxy(d.port)
        self.addCleanup(proxy.close)
        rc, r, p = self.run_chatload("--server", "127.0.0.1:%d" % proxy.port, "--clients",
                                     "3", "--message-rate", "3", "--duration", "2",
                                     "--loss-timeout", "1", "--expect-zero-loss")
        self.assertEqual(len(proxy.swallowed), 1)
        self.assertEqual(rc, 1)
        self.assertIn("expected zero loss: 1 messages lost", p.stderr())
        self.assertEqual(r["messages_lost"], 1)
        self.assertEqual(r["messages_delivered"], r["messages_sent"] - 1)
        self.assertEqual(r["messages_duplicated"], 0)
        self.assertEqual(r["dropped"], 0)
        # The swallowed one is the one the report says: its id was sent.
        m = re.search(rb"id=['\"]w0-(\d+)['\"]", proxy.swallowed[0])
        self.assertIsNotNone(m)
        self.assertLessEqual(int(m.group(1)), r["messages_sent"])


class PingTimeouts(ChatloadCase):
    def test_hung_server_is_ping_timeout(self):
        d = self.chatd("--auth-any")
        proxy = SwallowingProxy(d.port, freeze=True)
        self.addCleanup(proxy.close)
        rc, r, p = self.run_chatload("--server", "127.0.0.1:%d" % proxy.port, "--clients",
                                     "3", "--ping-interval", "500ms", "--ping-timeout",
                                     "400ms", "--duration", "2", "--close-timeout", "300ms",
                                     "--expect-zero-drops")
        self.assertEqual(rc, 1)
        self.assertIn("ping timeouts", p.stderr())
        self.assertGreaterEqual(r["ping_timeouts"], 3)
        self.assertEqual(r["dropped"], 0)
        self.assertEqual(r["pongs"], 0)
        self.assert_every_connection_has_one_fate(r)


class Workers(ChatloadCase):
    def test_two_workers_merge_exactly(self):
        d = self.chatd("--auth-any")
        timeline = os.path.join(self.tmp, "t.csv")
        rc, r, _ = self.run_chatload("--server", "127.0.0.1:%d" % d.port, "--clients", "8",
                                     "--workers", "2", "--lifetime", "fixed:800ms",
                                     "--message-rate", "2", "--duration", "2.5",
                                     "--source-ips", "127.0.0.2-127.0.0.5",
                                     "--timeline", timeline, "--expect-zero-loss")
        self.assertEqual(rc, 0)
        harness.wait_for(lambda: d.metric("chatd_connections") == 0, what="chatd empty")
        self.assertEqual(d.metric("chatd_connections_accepted_total"), r["connections"])
        self.assertEqual(r["closed_by_client"], r["connections"])
        self.assertEqual(r["workers"], 2)
        # Merged peak: per-second samples of the sum, at least each worker's.
        self.assertTrue(4 <= r["connected_peak"] <= 8, r["connected_peak"])
        # Sessions of 0.8 s: a target in the other worker may have logged out
        # since the accountant named it (at most 0.25 s): bounced, not lost.
        self.assertEqual(r["messages_lost"], 0)
        self.assertEqual(r["messages_delivered"] + r["messages_bounced"], r["messages_sent"])
        self.assertEqual(r["messages_misdelivered"], 0)  # global slot numbers per worker
        self.assertEqual(r["latency_ms"]["count"], r["messages_delivered"])
        self.assert_every_connection_has_one_fate(r)
        with open(timeline) as f:
            rows = [x.split(",") for x in f.read().splitlines()[1:]]
        self.assertEqual(sum(int(x[3]) for x in rows), r["logins"])
        self.assertEqual(sum(int(x[6]) for x in rows), r["messages_sent"])

    def exchange_through_swallowing_proxy(self, workers):
        """workers processes, clients messaging clients of every process; the
        proxy swallows exactly one message: exactly one lost in the merged
        report, every other one delivered, many of them across processes."""
        d = self.chatd("--auth-any")
        proxy = SwallowingProxy(d.port)
        self.addCleanup(proxy.close)
        rc, r, p = self.run_chatload("--server", "127.0.0.1:%d" % proxy.port, "--clients",
                                     2 * workers, "--workers", workers, "--message-rate", "4",
                                     "--duration", "2.5", "--loss-timeout", "1",
                                     "--expect-zero-loss")
        self.assertEqual(len(proxy.swallowed), 1)
        self.assertEqual(rc, 1)
        self.assertIn("expected zero loss: 1 messages lost", p.stderr())
        self.assertEqual(r["workers"], workers)
        self.assertEqual(r["workers_failed"], 0)
        self.assertEqual(r["messages_lost"], 1)
        self.assertEqual(r["messages_bounced"] + r["messages_duplicated"], 0)
        self.assertEqual(r["messages_misdelivered"] + r["messages_foreign"], 0)
        self.assertEqual(r["messages_delivered"], r["messages_sent"] - 1)
        self.assertEqual(r["latency_ms"]["count"], r["messages_delivered"])
        x = r["messages_cross_worker"]
        # Most targets live in another process: uniform over the clients.
        self.assertGreater(x["sent"], r["messages_sent"] // 4, r)
        self.assertEqual(x["delivered"] + x["lost"], x["sent"])
        self.assertEqual(r["message_pairs"][0]["sent"], r["messages_sent"])
        self.assertEqual(r["message_pairs"][0]["lost"], 1)
        # The swallowed one: its id was handed out by one of the workers.
        m = re.search(rb"id=['\"]w(\d+)-(\d+)['\"]", proxy.swallowed[0])
        self.assertIsNotNone(m)
        self.assertLess(int(m.group(1)), workers)
        self.assert_every_connection_has_one_fate(r)

    def test_two_workers_exchange_messages_exactly(self):
        self.exchange_through_swallowing_proxy(2)

    def test_four_workers_exchange_messages_exactly(self):
        self.exchange_through_swallowing_proxy(4)

    def test_failed_worker_is_counted_failed(self):
        d = self.chatd("--auth-any")
        path = os.path.join(self.tmp, "killed.json")
        p = harness.Proc([harness.binary("chatload"), "--ping-interval", "0", "--server",
                          "127.0.0.1:%d" % d.port, "--clients", "4", "--workers", "2",
                          "--duration", "4", "--message-rate", "5", "--loss-timeout", "1",
                          "--progress-interval", "100ms", "--report", path], name="chatload")
        self.procs.append(p)
        # The parent's progress shows both workers' statuses with their logins.
        harness.wait_for(lambda: "connected 4/4" in p.stderr(), timeout=20,
                         what="both workers' status")
        kids_file = "/proc/%d/task/%d/children" % (p.pid, p.pid)
        with open(kids_file) as f:
            kids = [int(x) for x in f.read().split()]
        self.assertEqual(len(kids), 2)
        os.kill(kids[0], signal.SIGKILL)
        self.assertEqual(p.wait(timeout=30), 1)
        self.assertIn("worker 0 failed (killed by signal 9): its 2 clients are counted failed",
                      p.stderr())
        with open(path) as f:
            r = json.load(f)
        self.assertEqual(r["workers_failed"], 1)
        self.assertEqual(r["workers_failed_clients"], 2)
        self.assertIs(r["ok"], False)  # half the run is missing from the report
        # Its share is in the report as failed, not silently missing: its two
        # sessions (from its last status, sent every 0.5 s) ended dropped,
        # "worker-failed".
        self.assertEqual(r["logins"], 4)
        self.assertEqual(r["dropped_by_reason"], {"worker-failed": 2})
        self.assert_every_connection_has_one_fate(r)
        # Every message it sent or was sent is settled: to its dead clients
        # bounced by chatd (or lost in flight), none missing.
        self.assertGreater(r["messages_sent"], 0)
        self.assertEqual(r["messages_delivered"] + r["messages_lost"] + r["messages_bounced"],
                         r["messages_sent"])

    def test_pods_exchange_messages_through_the_coordinator(self):
        # Two processes as two pods of one run: the second reports to the
        # first over TCP; targets live in both; one report, exact.
        d = self.chatd("--auth-any")
        port = harness.free_port()
        common = ["--server", "127.0.0.1:%d" % d.port, "--clients", "12", "--workers", "2",
                  "--pods", "2", "--message-rate", "3", "--duration", "2.5",
                  "--expect-zero-loss"]
        other = harness.Proc([harness.binary("chatload"), "--quiet", "--ping-interval", "0",
                              "--pod-index", "1", "--coordinator",
                              "127.0.0.1:%d" % port] + common, name="chatload-pod1")
        self.procs.append(other)
        rc, r, _ = self.run_chatload("--pod-index", "0", "--coordinator-listen",
                                     "127.0.0.1:%d" % port, *common)
        self.assertEqual(rc, 0)
        self.assertEqual(other.wait(timeout=30), 0)
        self.assertEqual(r["pods"], 2)
        self.assertEqual(r["workers"], 4)
        self.assertEqual(r["logins"], 12)
        harness.wait_for(lambda: d.metric("chatd_connections") == 0, what="chatd empty")
        self.assertEqual(d.metric("chatd_connections_accepted_total"), r["connections"])
        self.assertEqual(r["messages_delivered"], r["messages_sent"])
        self.assertEqual(r["messages_misdelivered"] + r["messages_foreign"], 0)
        x = r["messages_cross_worker"]
        self.assertGreater(x["sent"], r["messages_sent"] // 2, r)
        self.assertEqual(x["delivered"], x["sent"])
        self.assert_every_connection_has_one_fate(r)

    def test_pods_usage(self):
        for args, msg in (
                (["--pods", "2"], "--pods needs --workers 1 or more"),
                (["--pods", "2", "--workers", "1"], "exactly one of --coordinator"),
                (["--coordinator", "h:1"], "need --pods 2 or more"),
                (["--pods", "2", "--workers", "1", "--pod-index", "2",
                  "--coordinator", "h:1"], "--pod-index 2: expected below --pods 2"),
                (["--pods", "2", "--workers", "1", "--coordinator", "h:1", "--report", "x"],
                 "--report and --timeline belong to the --coordinator-listen process"),
                (["--pods", "0"], "--pods 0: expected 1..1024"),
                (["--pods", "4", "--workers", "3", "--clients", "10",
                  "--coordinator-listen", "127.0.0.1:1"],
                 "12 worker processes is more than --clients 10")):
            p, _ = self.chatload(*args, report=False)
            self.assertEqual(p.wait(timeout=10), 2, args)
            self.assertIn(msg, p.stderr(), args)

class Merge(ChatloadCase):
    def merge(self, *args):
        out = os.path.join(self.tmp, "merged-%d.json" % len(self.procs))
        p = harness.Proc([harness.binary("chatload"), "merge", "--report", out] +
                         [str(a) for a in args], name="chatload-merge")
        self.procs.append(p)
        rc = p.wait(timeout=30)
        r = None
        if os.path.exists(out):
            with open(out) as f:
                r = json.load(f)
        return rc, r, p

    def test_merge_overlapping_versions_and_pairs(self):
        # Part a talks to two servers (versions v1 and v2), part b to v2 only:
        # v2 and its pair v2->v2 are in both parts.
        d1 = self.chatd("--auth-any", label="v1", instance="i1")
        d2 = self.chatd("--auth-any", label="v2", instance="i2")
        rca, a, _ = self.run_chatload("--server", "127.0.0.1:%d" % d1.port, "--server",
                                      "127.0.0.1:%d" % d2.port, "--clients", "6",
                                      "--message-rate", "4", "--duration", "1.5",
                                      "--loss-timeout", "1", "--expect-zero-drops")
        rcb, b, _ = self.run_chatload("--server", "127.0.0.1:%d" % d2.port, "--clients", "4",
                                      "--user-pattern", "other%d", "--message-rate", "4",
                                      "--duration", "1.5", "--expect-zero-loss")
        self.assertEqual((rca, rcb), (0, 0))
        pa, pb = (os.path.join(self.tmp, "report-%d.json" % i) for i in (2, 3))
        rc, m, _ = self.merge(pa, pb)
        self.assertEqual(rc, 0)
        self.assertIs(m["ok"], True)
        self.assertEqual(m["parts"], 2)
        self.assertEqual(m["clients"], 10)
        self.assertEqual(sorted(m["expectations"]), ["zero-drops", "zero-loss"])
        self.assertEqual(m["servers"], a["servers"])  # b's server is one of a's
        for k in ("connections", "logins", "closed_by_client", "messages_sent",
                  "messages_delivered", "messages_bounced", "messages_lost", "pings_sent"):
            self.assertEqual(m[k], a[k] + b[k], k)
        self.assertEqual(sorted(m["per_version"]), ["v1", "v2"])
        self.assertEqual(m["per_version"]["v2"]["logins"],
                         a["per_version"]["v2"]["logins"] + b["per_version"]["v2"]["logins"])
        self.assertEqual(m["per_version"]["v2"]["instances"]["i2"]["logins"],
                         m["per_version"]["v2"]["logins"])
        self.assertEqual(m["per_version"]["v1"], a["per_version"]["v1"])

        def pairs(r):
            return {(p["from"], p["to"]): p for p in r["message_pairs"]}
        pm, pa_, pb_ = pairs(m), pairs(a), pairs(b)
        self.assertIn(("v2", "v2"), pa_)
        self.assertEqual(set(pm), set(pa_) | set(pb_))
        for key, p in pm.items():
            for f in ("sent", "delivered", "lost", "bounced", "duplicated"):
                self.assertEqual(p[f], pa_.get(key, {}).get(f, 0) + pb_.get(key, {}).get(f, 0))
        # Histograms merge bucket by bucket: counts, sums and every bucket add up.
        for h in ("latency_us", "login_us"):
            hm, ha, hb = (r["histograms"][h] for r in (m, a, b))
            self.assertEqual(hm["count"], ha["count"] + hb["count"])
            self.assertEqual(hm["sum"], ha["sum"] + hb["sum"])
            self.assertEqual(hm["max"], max(ha["max"], hb["max"]))
            buckets = {}
            for i, c in ha["buckets"] + hb["buckets"]:
                buckets[i] = buckets.get(i, 0) + c
            self.assertEqual(dict((i, c) for i, c in hm["buckets"]), buckets)
        self.assertEqual(m["latency_ms"]["count"], m["messages_delivered"])
        lat = m["latency_ms"]
        self.assertTrue(lat["min"] <= lat["p50"] <= lat["p99"] <= lat["max"])

        # ok: false when a part is not ok, or when the merged numbers break an
        # expectation (a part's, or one given to merge).
        with open(pb) as f:
            bad = json.load(f)
        bad["ok"] = False
        pbad = os.path.join(self.tmp, "bad.json")
        with open(pbad, "w") as f:
            json.dump(bad, f)
        rc, m2, p = self.merge(pa, pbad)
        self.assertEqual(rc, 1)
        self.assertIs(m2["ok"], False)
        self.assertIn("a part's report is not ok", p.stderr())
        bad["ok"] = True
        bad["messages_lost"] = 1  # part a expected zero loss of the whole
        with open(pbad, "w") as f:
            json.dump(bad, f)
        rc, m3, p = self.merge(pa, pbad)
        self.assertEqual(rc, 1)
        self.assertIs(m3["ok"], False)
        self.assertIn("expected zero loss: 1 messages lost", p.stderr())
        rc, m4, _ = self.merge("--expect-no-server-close", pa, pb)
        self.assertEqual(rc, 0)
        self.assertIn("no-server-close", m4["expectations"])

    def test_merge_usage(self):
        junk = os.path.join(self.tmp, "junk.json")
        with open(junk, "w") as f:
            f.write('{"hello": 1}')
        for args, msg in (([], "no report to merge"),
                          (["--bogus", junk], "unknown option --bogus"),
                          ([junk], "not a chatload report"),
                          ([os.path.join(self.tmp, "missing.json")], "missing.json")):
            rc, _, p = self.merge(*args)
            self.assertEqual(rc, 2, args)
            self.assertIn(msg, p.stderr(), args)


class OtherServers(ChatloadCase):
    """chatload against a server double that is not chatd (tests/lib/xmppdouble.py):
    its XEP-0092 version query is a nicety; an error, no answer or an empty
    answer records the version "unknown", never a failure or a crash."""

    def double(self, **kw):
        d = xmppdouble.XmppDouble(**kw)
        self.addCleanup(d.close)
        return d

    def run_against(self, d, *extra):
        return self.run_chatload("--server", "127.0.0.1:%d" % d.port, "--clients", "3",
                                 "--duration", "1.5", "--expect-zero-drops", *extra)

    def assert_logged_in_as_unknown(self, d, rc, r):
        self.assertEqual(rc, 0)
        self.assertEqual(r["logins"], 3)
        self.assertEqual(r["login_failures"], 0)
        self.assertEqual(r["closed_by_client"], 3)
        self.assertEqual(list(r["per_version"]), ["unknown"])
        self.assertEqual(r["per_version"]["unknown"]["logins"], 3)
        self.assertEqual(d.iq_namespaces().count("jabber:iq:version"), 3)
        self.assert_every_connection_has_one_fate(r)

    def test_version_service_unavailable(self):
        d = self.double(iq="error")
        rc, r, _ = self.run_against(d)
        self.assert_logged_in_as_unknown(d, rc, r)

    def test_version_empty_result(self):
        d = self.double(iq="empty")
        rc, r, _ = self.run_against(d)
        self.assert_logged_in_as_unknown(d, rc, r)

    def test_version_never_answered(self):
        # The wait for the answer ends with the login deadline: established
        # as "unknown", not a login failure.
        d = self.double(iq="silent")
        rc, r, _ = self.run_against(d, "--login-timeout", "1s", "--duration", "2.5")
        self.assert_logged_in_as_unknown(d, rc, r)

    def test_session_then_version_error(self):
        d = self.double(iq="error", session=True)
        rc, r, _ = self.run_against(d)
        self.assert_logged_in_as_unknown(d, rc, r)
        self.assertEqual(d.iq_namespaces().count("urn:ietf:params:xml:ns:xmpp-session"), 3)

    def test_bind_refused_is_login_failure(self):
        d = self.double(bind="error")
        rc, r, p = self.run_chatload("--server", "127.0.0.1:%d" % d.port, "--clients", "2",
                                     "--duration", "1")
        self.assertEqual(rc, 1)
        self.assertIn("login failed: bind", p.stderr())
        self.assertGreaterEqual(r["login_failures"], 2)
        self.assertEqual(r["login_failures_by_reason"], {"bind": r["login_failures"]})
        self.assertEqual(r["logins"], 0)
        self.assert_every_connection_has_one_fate(r)


if __name__ == "__main__":
    unittest.main()
