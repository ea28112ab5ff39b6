"""rainbow deploy --drain-assist on the local platform, with raw XMPP
clients: the old colour's sessions are moved (see-other-host naming the
switch, the Service of the local platform) at the rate asked, spread over
its replicas; stream-managed clients resume on the new colour with their
full JID and the stanzas they had not acknowledged; a client without stream
management logs in again; the colour drains and is deleted; every batch is
in record.jsonl; status shows the assisted drain; the chart marks it.
"""
import json
import os
import subprocess
import time
import unittest

import harness
import localplat
import xmpp
from xmpp import NS_CLIENT, NS_SM, q

N_SM = 12


def see_other_host(c):
    raw = bytes(c.raw).decode(errors="replace")
    i = raw.find("<see-other-host")
    if i < 0:
        return None
    i = raw.index(">", i) + 1
    return raw[i:raw.index("</see-other-host>", i)]


class LocalAssist(unittest.TestCase):
    def setUp(self):
        self.plat = localplat.Platform(self, prefix="rb-assist-")
        self.clients = []
        self.addCleanup(self.cleanup)
        self.plat.up()

    def cleanup(self):
        for c in self.clients:
            c.abort()
        reports = self.plat.down()
        self.assertEqual(reports, [], "\n".join(reports))

    def client(self, port=None):
        c = xmpp.Client(port or self.plat.port, domain="localhost", timeout=10)
        self.clients.append(c)
        return c

    def wait_linked(self, sha, peers):
        """Until every replica of sha has its cluster links (two replicas
        started together find each other a moment after both are ready)."""
        def linked():
            for r in self.plat.replicas(sha).values():
                st, body = harness.http_get("http://%s/metrics" % r["http"])
                if st != 200 or harness.parse_metrics(body).get("chatd_cluster_peers") != peers:
                    return False
            return True
        harness.wait_for(linked, timeout=20, interval=0.2, what="replicas linked")

    def test_assisted_drain_moves_every_session(self):
        p = self.plat
        p.deploy("a1a1a1a", "-r", "2")
        self.wait_linked("a1a1a1a", 1)
        sm = []
        for i in range(N_SM):
            c = self.client()
            c.login("sm%d" % i, "pw", mech="PLAIN", resource="r", presence=True)
            en = c.sm_enable()
            self.assertEqual(en.tag, q(NS_SM, "enabled"))
            c.previd = en.get("id")
            sm.append(c)
        plain = self.client()
        plain.login("plain", "pw", mech="PLAIN", resource="r")
        sender = self.client()
        sender.login("sender", "pw", mech="PLAIN", resource="r")
        # the sender moves too (it is on the old colour): it is the last one
        for c in sm:
            sender.message(c.jid, "before-" + c.jid)
        for c in sm:
            c.expect(lambda s, c=c: s.findtext(q(NS_CLIENT, "body")) == "before-" + c.jid)
        self.assertEqual(p.colour("a1a1a1a")["connections"], N_SM + 2)
        holding = {r["name"] for r in p.colour("a1a1a1a")["replica_list"] if r["connections"]}

        t0 = time.monotonic()
        dep = subprocess.Popen([p.rainbow, "deploy", "b2b2b2b", "-r", "1", "--settle", "1s",
                                "--poll", "0.2s", "--ready-timeout", "20s",
                                "--drain-assist", "10/s"],
                               env=p.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
        moved = {}
        resumed = {}
        deadline = time.monotonic() + 60
        while len(resumed) < N_SM and time.monotonic() < deadline:
            for c in sm:
                if c in moved:
                    continue
                c.poll()
                if c.end or c.stream_error:
                    moved[c] = time.monotonic()
                    self.assertEqual(c.stream_error, "see-other-host")
                    self.assertEqual(see_other_host(c), p.listen)
                    n = self.client()
                    n.authenticate(c.jid.split("@")[0], "pw", mech="PLAIN")
                    st = n.sm_resume(c.previd, c.sm_h, timeout=10)
                    self.assertEqual(st.tag, q(NS_SM, "resumed"), xmpp.ET.tostring(st))
                    resumed[c] = n
            time.sleep(0.02)
        self.assertEqual(len(resumed), N_SM, "not every stream-managed session moved")
        # the plain client was moved too and simply logs in again
        self.assertEqual(plain.wait_stream_error(timeout=30), "see-other-host")
        again = self.client()
        again.login("plain", "pw", mech="PLAIN", resource="r")
        self.assertEqual(sender.wait_stream_error(timeout=30), "see-other-host")
        out, _ = dep.communicate(timeout=120)
        self.assertEqual(dep.returncode, 0, out)
        took = time.monotonic() - t0
        # 14 sessions at 10/s: more than one second, spread over the batches
        self.assertGreater(took, 1.0)
        self.assertIsNone(p.colour("a1a1a1a"), "the old colour was not deleted")
        # every resumed session is on the new colour with its full JID
        s2 = self.client()
        s2.login("sender2", "pw", mech="PLAIN", resource="r")
        for c, n in resumed.items():
            s2.message(c.jid, "after")
            got = n.expect(lambda s: s.findtext(q(NS_CLIENT, "body")) == "after")
            self.assertEqual(got.get("to"), c.jid)
        # the record: batches of the assist, asked of both replicas, summing up
        rec = [e for e in p.record() if e.get("event") == "assist"]
        self.assertTrue(rec, "no assist batch recorded")
        self.assertEqual(sum(e["moved"] for e in rec), N_SM + 2)
        self.assertEqual({e["sha"] for e in rec}, {"a1a1a1a"})
        self.assertEqual({e["replica"] for e in rec}, holding)  # spread over them
        for e in rec:
            self.assertLessEqual(e["moved"], e["requested"])
        # never more than the rate: at most 10 in any one second, plus one second's worth
        ts = sorted(e["t"] for e in rec for _ in range(e["moved"]))
        for i, t in enumerate(ts):
            self.assertLessEqual(len([x for x in ts if t - 1.0 < x <= t]), 20)
        # the chart marks the assisted drain
        r = p.rb("chart", "--out", os.path.join(p.state, "c"))
        if r.returncode == 0:
            with open(os.path.join(p.state, "c.gp")) as f:
                self.assertIn("assisted drain of chat-a1a1a1a", f.read())

    def test_status_shows_assist(self):
        p = self.plat
        p.deploy("c3c3c3c", "-r", "1")
        cs = []
        for i in range(3):
            c = self.client()
            c.login("st%d" % i, "pw", mech="PLAIN", resource="r")
            cs.append(c)
        # a slow rate: status shows the assist under way
        dep = subprocess.Popen([p.rainbow, "deploy", "d4d4d4d", "-r", "1", "--drain-assist",
                                "1/s", "--settle", "1s", "--poll", "0.2s"], env=p.env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        harness.wait_for(lambda: (p.colour("c3c3c3c") or {}).get("assist"), timeout=20,
                         interval=0.1, what="status shows the assist")
        c = p.colour("c3c3c3c")
        self.assertEqual(c["assist"]["rate"], 1.0)
        self.assertIn("assisted for", p.rb("status").stdout)
        for c in cs:
            self.assertEqual(c.wait_stream_error(timeout=30), "see-other-host")
        out, _ = dep.communicate(timeout=60)
        self.assertEqual(dep.returncode, 0, out)
        self.assertEqual(sum(e["moved"] for e in p.record() if e.get("event") == "assist"), 3)
        self.assertIsNone(p.colour("c3c3c3c"))

    def test_refusals(self):
        p = self.plat
        for args, msg in ((["--drain-assist", "0"], "bad --drain-assist"),
                          (["--drain-assist", "fast"], "bad --drain-assist"),
                          (["--drain-assist-after", "5s"], "need --drain-assist"),
                          (["--on-max-drain", "assist", "--max-drain", "5s"],
                           "need --drain-assist")):
            r = p.rb("deploy", "e5e5e5e", *args)
            self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
            self.assertIn(msg, r.stderr)


if __name__ == "__main__":
    unittest.main()
