"""rainbow dashboard: the live page of the colours, its event stream and
its API against a real local platform, and the page itself in headless
Chromium (skipped with the reason where Chromium is missing)."""
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import unittest

import browser
import harness
import localplat

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_kube_platform as kube  # noqa: E402  (its fixture: the API double)


def start_dashboard(plat, *extra):
    p = harness.Proc([plat.rainbow, "dashboard", "--listen", "127.0.0.1:0", "--poll", "0.2s"]
                     + list(extra), env=plat.env, name="dashboard")
    m = harness.wait_for(lambda: re.search(r"http://127\.0\.0\.1:(\d+)/", p.stdout()),
                         what="the dashboard's URL")
    return p, int(m.group(1))


def sse_events(port, n, timeout=10.0):
    """The first n 'state' events of /events, parsed."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
    buf = b""
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        buf += s.recv(65536)
        while b"\n\n" in buf:
            block, buf = buf.split(b"\n\n", 1)
            for line in block.split(b"\n"):
                if line.startswith(b"data: "):
                    out.append(json.loads(line[6:]))
    s.close()
    return out


class DashboardTest(unittest.TestCase):
    def setUp(self):
        self.plat = localplat.Platform(self, prefix="rb-dash-")
        self.procs = []
        self.clients = []

    def tearDown(self):
        for c in self.clients:
            c.abort()
        for p in self.procs:
            p.stop()
            self.assertIsNone(p.sanitizer_report(), p.sanitizer_report())
        self.assertEqual(self.plat.down(), [])

    def dashboard(self, *extra):
        p, port = start_dashboard(self.plat, *extra)
        self.procs.append(p)
        return port

    def test_stream_api_and_read_only(self):
        self.plat.up()
        self.plat.deploy("1111111")
        port = self.dashboard()
        self.clients += self.plat.login(3)
        # Events are numbered, carry the same colours as `rainbow status -o json`.
        evs = sse_events(port, 3)
        self.assertEqual(len(evs), 3)
        self.assertEqual([e["seq"] for e in evs], list(range(evs[0]["seq"], evs[0]["seq"] + 3)))
        # (Readiness is polled by the switch: under a loaded machine a probe
        # may read one replica unready for a moment.)
        st = harness.wait_for(
            lambda: [e for e in sse_events(port, 1) if e["colours"][0]["connections"] == 3
                     and e["colours"][0]["ready"] == 2],
            what="3 connections and 2 ready replicas in an event")[0]
        c = st["colours"][0]
        self.assertEqual((c["sha"], c["state"], c["ready"], c["replicas"]),
                         ("1111111", "live", 2, 2))
        status = self.plat.status()["colours"][0]
        self.assertEqual(set(status) - {"forecast"}, set(c) - {"forecast"})
        self.assertEqual(st["sample"]["c"], {"1111111": 3})
        # The deploy timeline from the record: the create and the switch.
        self.assertEqual([(m["kind"], m["sha"]) for m in st["markers"]],
                         [("create", "1111111"), ("switch", "1111111")])
        code, body = harness.http_get("http://127.0.0.1:%d/api/history" % port)
        self.assertEqual(code, 200)
        h = json.loads(body)
        self.assertGreaterEqual(len(h["samples"]), 3)
        # Read-only: nothing but GET.
        r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
                            "http://127.0.0.1:%d/api/state" % port], capture_output=True,
                           text=True, timeout=10)
        self.assertEqual(r.stdout, "405")
        code, page = harness.http_get("http://127.0.0.1:%d/" % port)
        self.assertEqual(code, 200)
        self.assertIn("EventSource", page)
        self.assertNotRegex(page, r"(src|href)=\"https?://")  # nothing from the network

    def test_slow_viewers_do_not_hold_others(self):
        self.plat.up()
        self.plat.deploy("1111111")
        port = self.dashboard()
        # 20 viewers that open /events and never read a byte.
        stalled = []
        for _ in range(20):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", port))
            s.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
            stalled.append(s)
        first = sse_events(port, 1)[0]["seq"]
        harness.wait_for(lambda: sse_events(port, 1)[0]["seq"] >= first + 10, timeout=20,
                         what="10 more polls with stalled viewers")
        # A stalled viewer that reads again gets the newest state, not a backlog.
        s = stalled[0]
        s.settimeout(5)
        got = b""
        while got.count(b"data: ") < 2:
            got += s.recv(65536)
        seqs = [json.loads(l[6:])["seq"] for l in got.split(b"\n") if l.startswith(b"data: ")]
        self.assertGreater(seqs[-1] - seqs[0], 1, "it skipped what it missed")
        for s in stalled:
            s.close()

    def test_report_file(self):
        d = tempfile.mkdtemp(prefix="rb-dash-rep-")
        rep = os.path.join(d, "r.json")
        self.plat.up()
        port = self.dashboard("--report", rep)
        st = sse_events(port, 1)[0]
        self.assertEqual(st["report"]["state"], "missing")
        with open(rep, "w") as f:
            json.dump({"dropped": 2, "ping_timeouts": 1, "messages_lost": 4,
                       "connections": 10, "messages_delivered": 99}, f)
        st = harness.wait_for(lambda: [e for e in sse_events(port, 1)
                                       if e["report"]["state"] == "final"], what="report")[0]
        self.assertEqual((st["report"]["dropped"], st["report"]["lost"],
                          st["report"]["connections"]), (3, 4, 10))
        with open(rep, "w") as f:
            f.write("t,connected,connected_abc1234,logins,drops,server_closes,sent,delivered,"
                    "lost\n1,5,5,5,1,0,3,3,0\n2,5,5,0,0,0,4,3,2\n")
        st = harness.wait_for(lambda: [e for e in sse_events(port, 1)
                                       if e["report"]["note"] == "chatload timeline"],
                              what="timeline")[0]
        self.assertEqual((st["report"]["dropped"], st["report"]["lost"]), (1, 2))
        with open(rep, "w") as f:
            f.write("garbage")
        harness.wait_for(lambda: [e for e in sse_events(port, 1)
                                  if e["report"]["state"] == "unreadable"], what="unreadable")

    def test_chart_starts_with_the_timeline(self):
        # A dashboard started (or restarted) mid-deploy draws what rainbow
        # observed before it, from the state dir's timeline.csv, within the
        # window it keeps (3600 polls of 0.2 s here: 12 minutes).
        self.plat.up()
        now = time.time()
        with open(os.path.join(self.plat.state, "timeline.csv"), "w") as f:
            f.write("time,sha,connections,state\n")
            f.write("%.3f,aaaaaaa,40,live\n" % (now - 2000))        # before the window
            f.write("%.3f,aaaaaaa,30,live\n" % (now - 100))
            f.write("%.3f,bbbbbbb,0,starting\n" % (now - 100))      # same observation
            f.write("%.3f,aaaaaaa,20,draining\n" % (now - 50))
            f.write("%.3f,bbbbbbb,12,live\n" % (now - 50))
            f.write("%.3f,ccccccc,7,live\n" % (now - 60))           # out of order
            f.write("not,a,row\n")
            f.write("%.3f,../x,5,live\n" % (now - 40))              # not a SHA
            f.write("%.3f,aaaaaaa,-1,draining\n" % (now - 30))      # unknown count
        p, port = start_dashboard(self.plat)
        self.procs.append(p)
        self.assertIn("3 earlier observations", p.stdout())
        code, body = harness.http_get("http://127.0.0.1:%d/api/history" % port)
        self.assertEqual(code, 200)
        samples = json.loads(body)["samples"]
        past = [(round(s["t"] - now), s["c"]) for s in samples if s["t"] < now]
        self.assertEqual(past, [(-100, {"aaaaaaa": 30, "bbbbbbb": 0}),
                                (-50, {"aaaaaaa": 20, "bbbbbbb": 12}),
                                (-30, {"aaaaaaa": 0})])
        # The dashboard's own polls follow them.
        later = harness.wait_for(lambda: [s for s in json.loads(harness.http_get(
            "http://127.0.0.1:%d/api/history" % port)[1])["samples"] if s["t"] > now],
            what="a sample of the dashboard's own")
        self.assertTrue(later)

    def test_ipv6_listen(self):
        self.plat.up()
        p = harness.Proc([self.plat.rainbow, "dashboard", "--listen", "[::1]:0", "--poll", "0.2s"],
                         env=self.plat.env, name="dashboard")
        self.procs.append(p)
        m = harness.wait_for(lambda: re.search(r"http://\[::1\]:(\d+)/", p.stdout()),
                             what="the dashboard's URL")
        s = socket.create_connection(("::1", int(m.group(1))), timeout=10)
        s.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        self.assertIn(b"200", s.recv(4096).split(b"\r\n")[0])
        s.close()

    def test_bad_usage(self):
        for args in (["--listen", "nonsense"], ["--listen", "localhost:8080"], ["extra"],
                     ["--max-viewers", "0"]):
            r = self.plat.rb("dashboard", *args)
            self.assertEqual(r.returncode, 2, (args, r.stdout, r.stderr))
            self.assertIn("rainbow:", r.stderr)


class DashboardOnKubeTest(kube.KubeBase):
    """The same page on the kubernetes platform: the API double with real
    chatd pods; the chat page's WebSocket URL comes from --chat-ws."""

    def test_state_on_kubernetes(self):
        base = [harness.binary("rainbow"), "--platform", "kubernetes", "--kubeconfig",
                self.kubeconfig, "--state-dir", os.path.join(self.tmp, "state"),
                "-P", "template=" + kube.TEMPLATE, "-P", "backoff-ms=20"]
        r = subprocess.run(base + ["deploy", kube.SHA_A, "--replicas", "1", "--settle", "1s"],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        p = harness.Proc(base + ["dashboard", "--listen", "127.0.0.1:0", "--poll", "0.2s",
                                 "--chat-ws", "ws://chat.example:5290/xmpp-websocket",
                                 "--chat-domain", "chat.example"], name="dashboard")
        try:
            m = harness.wait_for(lambda: re.search(r"http://127\.0\.0\.1:(\d+)/", p.stdout()),
                                 what="the dashboard's URL")
            st = sse_events(int(m.group(1)), 1)[0]
            self.assertEqual(st["platform"], "kubernetes")
            self.assertEqual(st["selected"], kube.SHA_A)
            c = st["colours"][0]
            self.assertEqual((c["sha"], c["state"], c["ready"]), (kube.SHA_A, "live", 1))
            self.assertEqual(st["chat"], {"ws": "ws://chat.example:5290/xmpp-websocket",
                                          "domain": "chat.example"})
            self.assertEqual([m["kind"] for m in st["markers"]], ["create", "switch"])
        finally:
            p.stop()
        self.assertIsNone(p.sanitizer_report())


class DashboardBrowserTest(unittest.TestCase):
    """The page in headless Chromium: the DOM shows the live colours and
    their counts as they change."""

    def setUp(self):
        why = browser.available()
        if why:
            self.skipTest(why)
        self.plat = localplat.Platform(self, prefix="rb-dashb-")
        self.dash = None
        self.b = None
        self.clients = []

    def tearDown(self):
        for c in self.clients:
            c.abort()
        if self.b:
            self.b.close()
        if self.dash:
            self.dash.stop()
            self.assertIsNone(self.dash.sanitizer_report())
        self.assertEqual(self.plat.down(), [])

    def row(self, page, sha):
        return page.eval("""(() => { const r = document.querySelector('tr[data-sha="%s"]');
            return r && {state: r.querySelector('.state').textContent,
                         conns: r.querySelector('.conns').textContent,
                         ready: r.querySelector('.ready').textContent}; })()""" % sha)

    def test_page_follows_a_deploy(self):
        self.plat.up()
        self.plat.deploy("1111111")
        self.dash, port = start_dashboard(self.plat)
        self.b = browser.Browser()
        page = self.b.page("http://127.0.0.1:%d/" % port)
        page.wait("!!document.querySelector('tr[data-sha=\"1111111\"]')", what="the first colour")
        page.wait("document.querySelector('tr[data-sha=\"1111111\"] .ready').textContent === '2/2'",
                  what="2 of 2 replicas ready")
        self.assertEqual(self.row(page, "1111111"), {"state": "live", "conns": "0", "ready": "2/2"})
        self.clients += self.plat.login(3)
        page.wait("document.querySelector('tr[data-sha=\"1111111\"] .conns').textContent === '3'",
                  what="3 connections on the page")
        self.plat.deploy("2222222", "--no-wait")
        page.wait("document.querySelector('tr[data-sha=\"2222222\"] .state')?.textContent === "
                  "'live'", what="the new colour live")
        self.assertEqual(self.row(page, "1111111")["state"], "draining")
        self.assertEqual(self.row(page, "1111111")["conns"], "3")
        self.assertIn("switch", page.eval("[...document.querySelectorAll('#markers li')]"
                                          ".map(l => l.dataset.kind).join(' ')"))
        # The chart draws a band for the colour that holds connections, a marker per switch.
        self.assertTrue(page.eval("!!document.querySelector('#chart path[data-sha=\"1111111\"]')"))
        page.wait("document.querySelectorAll('#chart line.marker[data-kind=\"switch\"]').length"
                  " >= 1", what="the switch marked on the chart")
        self.assertIn("switch 2222222", page.eval("document.getElementById('chart').textContent"))
        for c in self.clients:
            c.close()
        self.clients = []
        page.wait("document.querySelector('tr[data-sha=\"1111111\"] .conns').textContent === '0'",
                  what="the old colour drained on the page")
        page.wait("document.querySelector('tr[data-sha=\"1111111\"] .drain').textContent"
                  ".startsWith('100% drained')", what="100% drained")
        self.assertEqual(page.errors, [])


if __name__ == "__main__":
    unittest.main()


class ChatBrowserTest(unittest.TestCase):
    """The web chat (/chat: Strophe.js over the switch's WebSocket port) in
    headless Chromium: two sessions talk across a deploy, nothing dropped,
    and a newcomer on the new colour talks with them."""

    def setUp(self):
        why = browser.available() or strophe_missing()
        if why:
            self.skipTest(why)
        self.wsport = harness.free_port()
        self.plat = localplat.Platform(self, prefix="rb-chat-",
                                       up_args=["--websocket", "127.0.0.1:%d" % self.wsport])
        self.dash = None
        self.b = None

    def tearDown(self):
        if self.b:
            self.b.close()
        if self.dash:
            self.dash.stop()
            self.assertIsNone(self.dash.sanitizer_report())
        self.assertEqual(self.plat.down(), [])

    def join(self, port, nick):
        page = self.b.page("http://127.0.0.1:%d/chat" % port)
        page.eval("chat.join(%s)" % json.dumps(nick))
        page.wait("chat.status === 'connected' && !!chat.colour", what=nick + " connected")
        return page

    def exchange(self, pages, rounds, tag):
        """Every page says `rounds` lines; every page must receive every line."""
        said = []
        for r in range(rounds):
            for name, p in pages.items():
                text = "%s %s %d" % (tag, name, r)
                p.eval("chat.say(%s)" % json.dumps(text))
                said.append(text)
        for name, p in pages.items():
            p.wait("(() => { const got = new Set(chat.received.map(m => m.text)); "
                   "return %s.every(t => got.has(t)); })()" % json.dumps(said),
                   what="%s received every line of %s" % (name, tag))
        return said

    def test_two_sessions_talk_across_a_deploy(self):
        self.plat.up()
        self.plat.deploy("1111111")
        self.dash, port = start_dashboard(self.plat)
        self.b = browser.Browser()
        alice, bob = self.join(port, "alice"), self.join(port, "bob")
        self.assertEqual(alice.eval("chat.colour"), "1111111")
        self.assertTrue(alice.eval("chat.instance").startswith("chat-1111111-"))
        alice.wait("chat.members.has('bob')", what="alice sees bob")
        self.exchange({"alice": alice, "bob": bob}, 3, "before")
        self.plat.deploy("2222222", "--no-wait")
        self.exchange({"alice": alice, "bob": bob}, 3, "during")
        # Neither moved nor dropped: still on the old colour, never disconnected.
        for p in (alice, bob):
            self.assertEqual(p.eval("chat.colour"), "1111111")
            self.assertEqual(p.eval("chat.disconnects"), 0)
            self.assertEqual(p.eval("chat.status"), "connected")
        # A newcomer lands on the new colour and the three talk across colours.
        carol = self.join(port, "carol")
        self.assertEqual(carol.eval("chat.colour"), "2222222")
        self.exchange({"alice": alice, "bob": bob, "carol": carol}, 2, "across")
        self.assertEqual(self.plat.colour("1111111")["connections"], 2)
        # The page shows who is where.
        self.assertEqual(carol.eval("document.getElementById('colour').textContent"),
                         "chat-2222222")
        for p in (alice, bob, carol):
            self.assertEqual(p.errors, [])
            self.assertEqual(p.eval("chat.disconnects"), 0)


def strophe_missing():
    import os
    path = "/usr/share/javascript/strophe/strophe.min.js"
    return None if os.path.exists(path) else "Strophe.js is not installed (libjs-strophe)"
