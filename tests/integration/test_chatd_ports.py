"""chatd --ports-file: with port 0 on every listener the kernel picks free
ports and chatd writes which, atomically, before it reports ready."""
import os
import shutil
import socket
import tempfile
import unittest

import harness
import xmpp


class PortsFile(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="rb-ports-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.secret = os.path.join(self.dir, "secret")
        with open(self.secret, "w") as f:
            f.write("0123456789abcdef0123456789abcdef\n")
        os.chmod(self.secret, 0o600)

    def start(self, *extra):
        ports = os.path.join(self.dir, "ports")
        p = harness.Proc([harness.binary("chatd"), "--listen", "127.0.0.1:0", "--http",
                          "127.0.0.1:0", "--auth-any", "--ports-file", ports, *extra])
        self.addCleanup(p.stop)
        return p, ports

    def read(self, path):
        with open(path) as f:
            return dict(line.strip().split("=", 1) for line in f if line.strip())

    def test_port_zero_everywhere(self):
        p, path = self.start("--cluster-listen", "127.0.0.1:0", "--cluster-secret-file",
                             self.secret)
        harness.wait_for(lambda: os.path.exists(path), timeout=20, what="ports file")
        ports = self.read(path)
        self.assertEqual(sorted(ports), ["cluster", "http", "listen"])
        got = {k: int(v.rsplit(":", 1)[1]) for k, v in ports.items()}
        self.assertNotIn(0, got.values())
        self.assertEqual(len(set(got.values())), 3, ports)
        for v in ports.values():
            self.assertTrue(v.startswith("127.0.0.1:"), ports)
        # Each is the real listener of its role.
        status, _ = harness.http_get("http://%s/readyz" % ports["http"])
        self.assertEqual(status, 200)
        c = xmpp.Client(got["listen"], domain="localhost")
        c.login("alice", "pw", mech="PLAIN")
        c.close()
        socket.create_connection(("127.0.0.1", got["cluster"]), timeout=5).close()
        self.assertEqual([n for n in os.listdir(self.dir) if n.endswith(".tmp")], [])
        self.assertTrue(p.alive())
        p.stop()
        self.assertIsNone(p.sanitizer_report(), p.sanitizer_report())

    def test_unwritable_ports_file_fails_start(self):
        p = harness.Proc([harness.binary("chatd"), "--listen", "127.0.0.1:0", "--http", "",
                          "--auth-any", "--ports-file",
                          os.path.join(self.dir, "no", "such", "dir", "ports")])
        self.addCleanup(p.stop)
        self.assertNotEqual(p.wait(20), 0)
        self.assertIn("ports_file", p.stderr())
        self.assertIsNone(p.sanitizer_report(), p.sanitizer_report())


if __name__ == "__main__":
    unittest.main()
