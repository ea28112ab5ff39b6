"""Interop: chatd against libstrophe, an XMPP client library nobody here
wrote (tests/helpers/strophe_client.c).

Two libstrophe clients log in over STARTTLS (certificate verified against a
CA file, not blindly trusted), with SCRAM-SHA-256 against a users file and
with PLAIN against --auth-any (libstrophe uses PLAIN only when the server
offers nothing stronger, and a server that does not know the password can
only offer PLAIN), bind, exchange presence and messages, ping the server,
read its XEP-0092 version, roster and disco#info, and see a <conflict/>
stream error when a second session takes their full JID.
"""
import unittest

import xmpp
from xmpp import Chatd, Strophe

D = xmpp.DOMAIN


class InteropScram(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Chatd(users={"alice": "alice-pw", "bob": "b0b pw é"},
                      instance="interop-7", version_label="v-interop")
        cls.d.start()
        cls.clients = []

    @classmethod
    def tearDownClass(cls):
        for c in cls.clients:
            c.stop()
        rc = cls.d.stop()
        rep = cls.d.sanitizer_report()
        if rep or rc != 0:
            raise AssertionError("chatd exit %s after SIGTERM; sanitizer: %s\n%s" % (
                rc, rep, cls.d.proc.stderr()[-2000:]))

    def tearDown(self):
        self.d.check_clean(self)
        for c in self.clients:
            rep = c.proc.sanitizer_report()
            self.assertIsNone(rep, "strophe_client sanitizer report:\n%s" % rep)
        self.assertTrue(self.d.alive(), "chatd died:\n" + self.d.proc.stderr()[-3000:])

    def strophe(self, *a, **kw):
        c = Strophe(self.d, *a, **kw)
        self.clients.append(c)
        return c

    def test_scram_sha256_messages_presence_ping_version(self):
        bob = self.strophe("bob@" + D, "b0b pw é", resource="phone", mech="SCRAM-SHA-256",
                           actions=["presence", "wait-presence", "bob@%s/phone" % D,
                                    "wait-presence", "alice@" + D,
                                    "wait-messages", "2",
                                    "send", "alice@%s/desk" % D, "hi alice <&>",
                                    "ping", "version"])
        ev = bob.wait_event("connected")
        self.assertEqual(ev["jid"], "bob@%s/phone" % D)
        self.assertTrue(ev["secured"])
        self.assertEqual(ev["mech"], "SCRAM-SHA-256")
        # RFC 6121 4.2.2: initial presence comes back to the sender's own
        # available resources; after that bob is available for bare-JID mail.
        bob.wait_event("presence", **{"from": "bob@%s/phone" % D})

        alice = self.strophe("alice@" + D, "alice-pw", resource="desk", mech="SCRAM-SHA-256",
                             actions=["presence", "presence-to", "bob@" + D,
                                      "send", "bob@" + D, "to bare",
                                      "send", "bob@%s/phone" % D, "to full",
                                      "wait-messages", "1",
                                      "ping", "version", "roster", "disco"])
        self.assertEqual(alice.wait(30), 0, alice.describe())
        self.assertEqual(bob.wait(30), 0, bob.describe())

        ev = alice.find("connected")[0]
        self.assertEqual(ev["jid"], "alice@%s/desk" % D)
        self.assertTrue(ev["secured"])
        msgs = alice.find("message")
        self.assertEqual(len(msgs), 1, alice.describe())
        self.assertEqual(msgs[0]["from"], "bob@%s/phone" % D)
        self.assertEqual(msgs[0]["body"], "hi alice <&>")
        self.assertEqual(msgs[0]["type"], "chat")
        self.assertEqual(len(alice.find("pong")), 1)
        v = alice.find("version")[0]
        self.assertEqual(v["name"], "chatd")
        self.assertEqual(v["version"], "v-interop")
        self.assertEqual(v["os"], "instance=interop-7")
        r = alice.find("roster")[0]
        self.assertTrue(r["query"])
        self.assertEqual(r["items"], 0)  # rosters are not stored: empty
        feats = alice.find("disco")[0]["features"]
        for f in ("urn:xmpp:ping", "jabber:iq:version",
                  "http://jabber.org/protocol/disco#info"):
            self.assertIn(f, feats)

        got = {(m["from"], m["body"]) for m in bob.find("message")}
        self.assertEqual(got, {("alice@%s/desk" % D, "to bare"),
                               ("alice@%s/desk" % D, "to full")}, bob.describe())
        self.assertTrue(bob.find("presence", **{"from": "alice@%s/desk" % D}))
        self.assertEqual(len(bob.find("pong")), 1)
        self.assertEqual(bob.find("version")[0]["os"], "instance=interop-7")
        self.assertEqual(alice.find("iq-error") + bob.find("iq-error"), [])

    def test_conflict_replaces_old_session(self):
        old = self.strophe("alice@" + D, "alice-pw", resource="same",
                           actions=["presence", "wait-disconnect"])
        old.wait_event("connected")
        new = self.strophe("alice@" + D, "alice-pw", resource="same",
                           actions=["presence", "ping"])
        self.assertEqual(new.wait(30), 0, new.describe())
        self.assertEqual(new.find("connected")[0]["jid"], "alice@%s/same" % D)
        self.assertEqual(old.wait(30), 0, old.describe())
        self.assertEqual(old.find("stream-error")[0]["condition"], "conflict", old.describe())

    def test_scram_without_tls(self):
        # STARTTLS is optional here: libstrophe with TLS disabled still gets
        # SCRAM (PLAIN is not offered without TLS)
        c = self.strophe("bob@" + D, "b0b pw é", mech="SCRAM-SHA-256", tls_mode="disable",
                         cafile=None, actions=["ping"])
        self.assertEqual(c.wait(30), 0, c.describe())
        self.assertFalse(c.find("connected")[0]["secured"])

    def test_wrong_password_fails(self):
        c = self.strophe("alice@" + D, "not-the-password", actions=["ping"], timeout=15)
        self.assertEqual(c.wait(30), 1)
        self.assertEqual(c.find("connected"), [])

    def test_untrusted_certificate_is_refused(self):
        # Sanity of the setup: the client really verifies the certificate,
        # so the other tests prove a proper TLS session.
        c = self.strophe("alice@" + D, "alice-pw", actions=["ping"], cafile="/dev/null",
                         timeout=15)
        self.assertEqual(c.wait(30), 1)
        self.assertEqual(c.find("connected"), [])


class InteropAnonymous(unittest.TestCase):
    def test_anonymous_login(self):
        # libstrophe uses SASL ANONYMOUS for a JID without a localpart
        d = Chatd(users={"alice": "alice-pw"}, args=["--allow-anonymous"])
        d.start()
        try:
            c = Strophe(d, D, "unused", mech="ANONYMOUS", actions=["ping", "version"])
            self.assertEqual(c.wait(30), 0, c.describe())
            ev = c.find("connected")[0]
            self.assertTrue(ev["secured"])
            self.assertRegex(ev["jid"], r"^anon-[0-9a-f]{16}@%s/" % D.replace(".", r"\."))
            self.assertIsNone(c.proc.sanitizer_report())
        finally:
            rc = d.stop()
        self.assertEqual(rc, 0)
        d.check_clean(self)


class InteropPlain(unittest.TestCase):
    """libstrophe never picks PLAIN while SCRAM is offered and cannot be told
    to; chatd offers SCRAM whenever it offers PLAIN. A relay that hides the
    SCRAM mechanisms from the features (xmpp.MechFilterProxy, TLS terminated
    with chatd's certificate on both sides) lets libstrophe log in with
    PLAIN over STARTTLS against chatd's real PLAIN verifier (users file)."""

    def test_plain_over_starttls(self):
        d = Chatd(users={"carol": "carol pw", "dave": "dave-pw"},
                  instance="plain-1", version_label="v-plain")
        d.start()
        proxies = []
        try:
            # what chatd itself offers: PLAIN only after STARTTLS
            c = xmpp.Client(d.port)
            f = c.open_stream()
            self.assertIsNotNone(f.find(xmpp.q(xmpp.NS_TLS, "starttls")))
            self.assertNotIn("PLAIN", c.mechanisms(f))
            f = c.starttls(cafile=d.cert)
            self.assertIn("PLAIN", c.mechanisms(f))
            c.close()

            pd, pc = xmpp.MechFilterProxy(d), xmpp.MechFilterProxy(d)
            proxies += [pd, pc]
            dave = Strophe(d, "dave@" + D, "dave-pw", resource="r", mech="PLAIN",
                           port=pd.port,
                           actions=["presence", "wait-messages", "1", "send",
                                    "carol@%s/r" % D, "back", "version"])
            dave.wait_event("connected")
            carol = Strophe(d, "carol@" + D, "carol pw", resource="r", mech="PLAIN",
                            port=pc.port,
                            actions=["send", "dave@%s/r" % D, "hello dave",
                                     "wait-messages", "1", "ping"])
            self.assertEqual(carol.wait(30), 0, carol.describe())
            self.assertEqual(dave.wait(30), 0, dave.describe())
            self.assertEqual((pd.auth_mechs, pc.auth_mechs), (["PLAIN"], ["PLAIN"]),
                             pd.errors + pc.errors)
            ev = carol.find("connected")[0]
            self.assertEqual((ev["mech"], ev["secured"], ev["jid"]),
                             ("PLAIN", True, "carol@%s/r" % D))
            self.assertEqual(carol.find("message")[0]["body"], "back")
            self.assertEqual(dave.find("message")[0]["from"], "carol@%s/r" % D)
            self.assertEqual(dave.find("version")[0]["version"], "v-plain")
            for s in (carol, dave):
                self.assertIsNone(s.proc.sanitizer_report())
            # a wrong PLAIN password is refused through the same path
            pw = xmpp.MechFilterProxy(d)
            proxies.append(pw)
            bad = Strophe(d, "dave@" + D, "wrong", port=pw.port, actions=["ping"], timeout=15)
            self.assertEqual(bad.wait(30), 1)
            self.assertEqual(pw.auth_mechs, ["PLAIN"])
        finally:
            for p in proxies:
                p.close()
            rc = d.stop()
        self.assertEqual(rc, 0)
        d.check_clean(self)


if __name__ == "__main__":
    unittest.main()
