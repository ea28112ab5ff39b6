"""Files of secrets: chatd refuses to start with a --users or
--cluster-secret-file that others can read (or write), says which file and
how to fix it, and --insecure-permissions lets it start anyway."""
import os
import shutil
import tempfile
import unittest

import harness
import xmpp


class Permissions(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="rb-secrets-")
        cls.users = os.path.join(cls.tmp, "users")
        d = xmpp.Chatd(users={"alice": "alice-pw"})
        d.users_file = cls.users
        d.add_user("alice", "alice-pw")
        cls.secret = os.path.join(cls.tmp, "secret")
        with open(cls.secret, "w") as f:
            f.write(os.urandom(24).hex() + "\n")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def run_chatd(self, args, expect_start):
        """Starts chatd with args; returns its stderr after it exited (or was
        stopped once ready)."""
        port, hport = harness.free_port(), harness.free_port()
        p = harness.Proc([harness.binary("chatd"), "--listen", "127.0.0.1:%d" % port,
                          "--http", "127.0.0.1:%d" % hport] + args)
        if expect_start:
            harness.wait_for(lambda: not p.alive() or harness.http_get(
                "http://127.0.0.1:%d/readyz" % hport)[0] == 200, 20, what="ready")
            self.assertTrue(p.alive(), p.stderr()[-2000:])
            self.assertEqual(p.stop(), 0)
        else:
            self.assertEqual(p.wait(20), 1, p.stderr()[-2000:])
        self.assertIsNone(p.sanitizer_report())
        return p.stderr()

    def users_args(self):
        return ["--users", self.users]

    def cluster_args(self):
        return ["--auth-any", "--cluster-listen", "127.0.0.1:%d" % harness.free_port(),
                "--cluster-secret-file", self.secret]

    def check(self, path, args, flag):
        os.chmod(path, 0o600)
        self.run_chatd(args, True)
        for mode, what in ((0o644, "readable by others"), (0o604, "readable by others"),
                           (0o602, "writable by others"), (0o620, "writable by its group")):
            os.chmod(path, mode)
            err = self.run_chatd(args, False)
            self.assertIn("%s %s is %s (mode %04o" % (flag, path, what, mode), err)
            self.assertIn("--insecure-permissions", err)
        # the escape hatch
        os.chmod(path, 0o644)
        self.run_chatd(args + ["--insecure-permissions"], True)
        # group-readable: only when root owns it (a Kubernetes Secret volume)
        os.chmod(path, 0o640)
        if os.getuid() == 0:
            self.run_chatd(args, True)
            os.chown(path, 65534, -1)
            try:
                err = self.run_chatd(args, False)
                self.assertIn("is readable by its group (mode 0640, owner uid 65534)", err)
            finally:
                os.chown(path, 0, -1)
        else:
            err = self.run_chatd(args, False)
            self.assertIn("is readable by its group (mode 0640", err)
        os.chmod(path, 0o600)

    def test_users_file(self):
        self.check(self.users, self.users_args(), "--users")

    def test_cluster_secret_file(self):
        self.check(self.secret, self.cluster_args(), "--cluster-secret-file")

    def test_missing_file(self):
        err = self.run_chatd(["--users", os.path.join(self.tmp, "nope")], False)
        self.assertIn("No such file", err)


if __name__ == "__main__":
    unittest.main()
