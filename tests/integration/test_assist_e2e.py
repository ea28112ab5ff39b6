"""The assisted drain end to end on the local platform: 300 chatload clients
with XEP-0198 stream management talk across a deploy whose old colour is
drained with --drain-assist; every session is moved (see-other-host) and
resumes on the new colour. chatload's report is the proof: 0 dropped, 0
lost, 0 duplicated, every moved session resumed, every message sent
delivered or (while the new colour's links settle) bounced back, none
silently gone; rainbow's record has the batches, within the rate.
"""
import json
import os
import subprocess
import time
import unittest

import harness
import localplat

CLIENTS = 300
RATE = 100


class AssistE2E(unittest.TestCase):
    def setUp(self):
        self.plat = localplat.Platform(self, prefix="rb-assist-e2e-")
        self.addCleanup(self.cleanup)
        self.plat.up()
        self.load = None

    def cleanup(self):
        if self.load and self.load.poll() is None:
            self.load.kill()
            self.load.wait()
        reports = self.plat.down()
        self.assertEqual(reports, [], "\n".join(reports))

    def test_assisted_drain_loses_nothing(self):
        p = self.plat
        p.deploy("a0a0a0a", "-r", "2")
        report = os.path.join(p.state, "chatload.json")
        self.load = subprocess.Popen(
            [harness.binary("chatload"), "--server", p.listen, "--domain", "localhost",
             "--clients", str(CLIENTS), "--ramp", "300/s", "--message-rate", "0.5",
             "--duration", "16s", "--stream-management", "--loss-timeout", "8s",
             "--quiet", "--report", report, "--expect-zero-drops", "--expect-zero-loss"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        harness.wait_for(lambda: (p.colour("a0a0a0a") or {}).get("connections") == CLIENTS,
                         timeout=30, interval=0.2, what="every client on the old colour")
        r = p.rb("deploy", "b1b1b1b", "-r", "2", "--settle", "1s", "--poll", "0.2s",
                 "--ready-timeout", "20s", "--drain-assist", "%d/s" % RATE, timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIsNone(p.colour("a0a0a0a"), "the old colour is still there")
        out, _ = self.load.communicate(timeout=120)
        with open(report) as f:
            rep = json.load(f)
        summary = {k: rep[k] for k in (
            "connections", "dropped", "closed_by_server_total", "migrated", "resumed",
            "resume_failed", "messages_sent", "messages_delivered", "messages_lost",
            "messages_duplicated", "messages_bounced", "messages_misdelivered")}
        self.assertEqual(self.load.returncode, 0, out + json.dumps(summary))
        self.assertEqual(rep["dropped"], 0, summary)
        self.assertEqual(rep["messages_lost"], 0, summary)
        self.assertEqual(rep["messages_duplicated"], 0, summary)
        self.assertEqual(rep["messages_misdelivered"], 0, summary)
        self.assertEqual(rep["closed_by_server_total"], 0, summary)
        self.assertEqual(rep["migrated"], CLIENTS, summary)
        self.assertEqual(rep["resumed"], CLIENTS, summary)
        self.assertEqual(rep["messages_delivered"] + rep["messages_bounced"],
                         rep["messages_sent"], summary)
        self.assertEqual(rep["reconnect_gap_ms"]["count"], CLIENTS)
        # messages went between the colours both ways
        pairs = {(x["from"], x["to"]): x for x in rep["message_pairs"]}
        self.assertGreater(pairs.get(("a0a0a0a", "b1b1b1b"), {}).get("delivered", 0) +
                           pairs.get(("b1b1b1b", "a0a0a0a"), {}).get("delivered", 0), 0, pairs)
        # the record: every session in batches, at most RATE a second plus one second's worth
        batches = [e for e in p.record() if e.get("event") == "assist"]
        self.assertEqual(sum(e["moved"] for e in batches), CLIENTS)
        ts = sorted(e["t"] for e in batches for _ in range(e["moved"]))
        self.assertGreaterEqual(ts[-1] - ts[0], (CLIENTS - 2 * RATE) / RATE)
        for t in ts:
            self.assertLessEqual(len([x for x in ts if t - 1.0 < x <= t]), 2 * RATE)


if __name__ == "__main__":
    unittest.main()
