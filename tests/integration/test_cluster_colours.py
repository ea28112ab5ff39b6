"""Two "colours" (chatd instances with different version labels, linked as
one cluster, as during a rainbow switch): chatload clients spread over both
exchange messages with zero loss, and chatload's report shows deliveries for
every (sender colour, receiver colour) pair, so cross-colour traffic is
counted, not assumed.
"""
import json
import os
import subprocess
import tempfile
import unittest

import harness
import xmpp


class TwoColoursTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="rb-colours-")
        secret = os.path.join(self.tmp, "secret")
        with open(secret, "w") as f:
            f.write(os.urandom(24).hex())
        os.chmod(secret, 0o600)  # chatd refuses a secret others can read
        cport = [harness.free_port(), harness.free_port()]
        self.colours = []
        for i, label in enumerate(("v-aaa", "v-bbb")):
            d = xmpp.Chatd(auth_any=True, tls=False, instance="chat-%s-0" % label,
                           version_label=label, name=label,
                           args=["--cluster-listen", "127.0.0.1:%d" % cport[i],
                                 "--cluster-secret-file", secret,
                                 "--peers", "127.0.0.1:%d" % cport[1 - i],
                                 "--drain-timeout", "5"])
            self.colours.append(d.start())
        harness.wait_for(lambda: all(d.metric("chatd_cluster_peers") == 1
                                     for d in self.colours), timeout=10, what="colours linked")

    def tearDown(self):
        for d in self.colours:
            self.assertEqual(d.stop(timeout=15), 0)
            d.check_clean(self)

    def run_chatload(self, target):
        report = os.path.join(self.tmp, "report-%s.json" % target)
        argv = [harness.binary("chatload"), "--domain", xmpp.DOMAIN, "--clients", "16",
                "--message-rate", "2", "--duration", "3s", "--quiet", "--target", target,
                "--expect-zero-loss", "--expect-zero-drops", "--report", report]
        for d in self.colours:
            argv += ["--server", "127.0.0.1:%d" % d.port]
        p = harness.Proc(argv, name="chatload")
        rc = p.wait(timeout=60)
        self.assertIsNone(p.sanitizer_report())
        self.assertEqual(rc, 0, p.stderr()[-3000:])
        with open(report) as f:
            return json.load(f)

    def check_pairs(self, r):
        pairs = {(p["from"], p["to"]): p for p in r["message_pairs"]}
        for a in ("v-aaa", "v-bbb"):
            for b in ("v-aaa", "v-bbb"):
                p = pairs.get((a, b))
                self.assertIsNotNone(p, "no messages %s -> %s" % (a, b))
                self.assertGreater(p["delivered"], 0, (a, b))
                self.assertEqual(p["delivered"], p["sent"], (a, b))
                self.assertEqual((p["lost"], p["duplicated"], p["bounced"]), (0, 0, 0), (a, b))
        self.assertEqual(r["messages_lost"], 0)
        self.assertEqual(r["messages_delivered"], r["messages_sent"])
        self.assertEqual(r["dropped"], 0)
        # the forwarded counts are the cross-colour deliveries seen by chatload
        fwd = sum(d.metric("chatd_cluster_stanzas_forwarded_total") for d in self.colours)
        cross = pairs[("v-aaa", "v-bbb")]["delivered"] + pairs[("v-bbb", "v-aaa")]["delivered"]
        self.assertGreaterEqual(fwd, cross)

    def test_full_jids(self):
        self.check_pairs(self.run_chatload("full"))

    def test_bare_jids(self):
        self.check_pairs(self.run_chatload("bare"))


if __name__ == "__main__":
    unittest.main()
