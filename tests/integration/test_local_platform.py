"""The local platform keeps its promise: a deploy of the live SHA reconciles
it (replicas, readiness, the switch's backends), whatever happened to the
platform under it.
"""
import unittest

import harness
import localplat


class LocalPlatform(unittest.TestCase):
    def setUp(self):
        self.plat = localplat.Platform(self)
        self.clients = []
        self.addCleanup(self.cleanup)
        self.plat.up()

    def cleanup(self):
        for c in self.clients:
            c.abort()
        reports = self.plat.down()
        self.assertEqual(reports, [], "\n".join(reports))

    def login_all(self, n, prefix):
        cs = self.plat.login(n, prefix=prefix)
        self.clients += cs
        return cs

    def test_redeploy_live_sha_reconciles(self):
        p = self.plat
        p.deploy("8c8c8c8", "-r", "1")
        r = p.rb("local", "down", "--force")
        self.assertEqual(r.returncode, 0, r.stderr)
        p.up()
        # The switch resumed selecting 8c8c8c8, whose replicas are gone.
        out = p.deploy("8c8c8c8", "-r", "1").stdout
        self.assertIn("done", out)
        self.login_all(4, "a")
        # -r on the live SHA scales it; every replica is a backend of the switch.
        p.deploy("8c8c8c8", "-r", "3")
        c = p.colour("8c8c8c8")
        self.assertEqual((c["state"], c["replicas"], c["ready"]), ("live", 3, 3), c)
        sw = p.switch()
        self.assertEqual(len(sw["backends"]), 3, sw)
        self.login_all(6, "b")
        harness.wait_for(lambda: all(r["connections"] > 0 for r in
                                     p.colour("8c8c8c8")["replica_list"]),
                         timeout=10, interval=0.2, what="every replica serving")
        # Without -r the colour keeps its count.
        p.deploy("8c8c8c8")
        self.assertEqual(p.colour("8c8c8c8")["replicas"], 3)


if __name__ == "__main__":
    unittest.main()
