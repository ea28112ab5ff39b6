"""chatd's TLS policy, checked with an independent client: `openssl s_client
-starttls xmpp`. TLS 1.2 with ECDHE key exchange and an AEAD cipher only,
TLS 1.3; --tls-ciphers and --tls-min-version change that."""
import re
import subprocess
import unittest

import harness
import xmpp
from xmpp import Chatd


def s_client(port, *args):
    """(handshake ok, cipher, protocol) of one s_client STARTTLS handshake."""
    p = subprocess.run(["openssl", "s_client", "-starttls", "xmpp", "-xmpphost", xmpp.DOMAIN,
                        "-connect", "127.0.0.1:%d" % port] + list(args),
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    m = re.search(r"^New, (\S+), Cipher is (\S+)", p.stdout, re.M)
    proto, cipher = (m.group(1), m.group(2)) if m else (None, None)
    ok = p.returncode == 0 and cipher not in (None, "(NONE)")
    return ok, cipher, proto


class TlsPolicy(unittest.TestCase):
    def start(self, args=()):
        d = Chatd(auth_any=True, args=list(args))
        d.start()
        self.addCleanup(self.stop, d)
        return d

    def stop(self, d):
        self.assertEqual(d.stop(), 0)
        d.check_clean(self)

    def test_default_policy(self):
        d = self.start()
        ok, cipher, proto = s_client(d.port, "-tls1_3")
        self.assertTrue(ok)
        self.assertEqual(proto, "TLSv1.3")
        ok, cipher, proto = s_client(d.port, "-tls1_2")
        self.assertTrue(ok)
        self.assertTrue(cipher.startswith("ECDHE-") and ("GCM" in cipher or "CHACHA" in cipher),
                        cipher)
        # no forward secrecy, CBC, or both: refused
        for weak in ("AES128-SHA", "AES256-GCM-SHA384", "AES128-GCM-SHA256",
                     "ECDHE-RSA-AES128-SHA", "ECDHE-RSA-AES256-SHA384",
                     "DHE-RSA-AES128-GCM-SHA256"):
            self.assertFalse(s_client(d.port, "-tls1_2", "-cipher", weak)[0], weak)
        self.assertFalse(s_client(d.port, "-tls1_1")[0])
        # the server still works for a real client afterwards
        c = d.client()
        c.login("alice", "alice", tls=True, cafile=d.cert, mech="PLAIN")
        c.close()

    def test_min_version_13(self):
        d = self.start(["--tls-min-version", "1.3"])
        self.assertTrue(s_client(d.port, "-tls1_3")[0])
        self.assertFalse(s_client(d.port, "-tls1_2")[0])

    def test_cipher_string_flag(self):
        d = self.start(["--tls-ciphers", "ECDHE-RSA-AES128-SHA"])
        ok, cipher, _ = s_client(d.port, "-tls1_2")
        self.assertTrue(ok)
        self.assertEqual(cipher, "ECDHE-RSA-AES128-SHA")
        self.assertFalse(s_client(d.port, "-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256")[0])

    def test_bad_policy_is_an_error(self):
        cert, key = xmpp.make_cert()
        base = [harness.binary("chatd"), "--listen", "127.0.0.1:0", "--http", "",
                "--tls-cert", cert, "--tls-key", key]
        p = harness.Proc(base + ["--tls-min-version", "1.1"])
        self.assertEqual(p.wait(20), 2)
        self.assertIn("--tls-min-version must be 1.2 or 1.3", p.stderr())
        p = harness.Proc(base + ["--tls-ciphers", "NO-SUCH-CIPHER"])
        self.assertEqual(p.wait(20), 1)
        self.assertIn("TLS 1.2 cipher string", p.stderr())
        self.assertIsNone(p.sanitizer_report())


if __name__ == "__main__":
    unittest.main()
