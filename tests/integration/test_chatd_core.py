"""chatd core checks by the chatd author (the broad suites are
test_chatd_badinput / _interop / _metrics): the --auth-any demo mode (PLAIN
over plaintext with any password, SCRAM with the user name as password),
messages and presence between two users and two resources, directed
presence, the empty roster, the version reply and the metrics that count it
all. One chatd for the module; well under 30 s.
"""
import unittest

import xmpp
from xmpp import Chatd, NS_CLIENT, q

D = xmpp.DOMAIN
NS_ROSTER = "jabber:iq:roster"
NS_VERSION = "jabber:iq:version"


def setUpModule():
    global SRV
    SRV = Chatd(auth_any=True, tls=False, instance="core-0", version_label="v-core",
                args=["--ping-interval", "600"])
    SRV.start()


def tearDownModule():
    rc = SRV.stop()
    rep = SRV.sanitizer_report()
    if rc != 0 or rep:
        raise AssertionError("chatd exit %s, sanitizer: %s\n%s" % (
            rc, rep, SRV.proc.stderr()[-3000:]))


def presence_from(c, jid, type_=None, timeout=5):
    return c.expect(lambda s: s.tag == q(NS_CLIENT, "presence") and s.get("from") == jid and
                    s.get("type") == type_, timeout=timeout,
                    what="presence %s from %s" % (type_, jid))


class AuthAny(unittest.TestCase):
    def setUp(self):
        self.clients = []

    def tearDown(self):
        for c in self.clients:
            c.close()

    def login(self, user, password, **kw):
        c = SRV.client()
        self.clients.append(c)
        c.login(user, password, **kw)
        return c

    def test_plain_any_password_in_plaintext(self):
        c = SRV.client()
        self.clients.append(c)
        f = c.open_stream()
        self.assertIn("PLAIN", c.mechanisms(f))
        self.assertEqual(c.auth_plain("Zed", "whatever-1"), ("success", None))
        c2 = self.login("zed", "something-else", mech="PLAIN", resource="two")
        # nodeprep folded the name
        self.assertEqual(c2.jid, "zed@%s/two" % D)

    def test_scram_password_is_the_user_name(self):
        c = self.login("sam", "sam", mech="SCRAM-SHA-256")
        self.assertEqual(xmpp.bare(c.jid), "sam@" + D)
        c = self.login("sam", "sam", mech="SCRAM-SHA-1")  # cached credentials
        self.assertEqual(xmpp.bare(c.jid), "sam@" + D)
        c = SRV.client()
        self.clients.append(c)
        c.open_stream()
        self.assertEqual(c.auth_scram("sam", "not-sam"), ("failure", "not-authorized"))

    def test_messages_presence_roster_version_metrics(self):
        m0 = SRV.metrics()
        a = self.login("alice", "x", mech="PLAIN", resource="a1", presence=True)
        b = self.login("bob", "y", mech="PLAIN", presence=True)
        self.assertTrue(b.jid.startswith("bob@%s/chatd-" % D), b.jid)  # generated resource
        presence_from(a, a.jid)  # own broadcast comes back (RFC 6121 4.2.2)
        # messages both ways, to the bare JID and to the full JID
        a.message("bob@" + D, "to-bare")
        self.assertEqual(b.expect_message("to-bare").get("from"), a.jid)
        b.message(a.jid, "to-full")
        self.assertEqual(a.expect_message("to-full").get("from"), b.jid)
        # a second resource of alice sees a1, and a1 sees it come and go
        a2 = self.login("alice", "x", mech="PLAIN", resource="a2", presence=True)
        presence_from(a2, a.jid)
        presence_from(a, a2.jid)
        a2.close()
        self.clients.remove(a2)
        presence_from(a, a2.jid, "unavailable")
        # directed presence: bob gets unavailable when alice leaves
        a.send("<presence to='%s'/>" % b.jid)
        presence_from(b, a.jid)
        # empty roster, version with the instance
        st = a.iq("<query xmlns='%s'/>" % NS_ROSTER)
        self.assertEqual(st.get("type"), "result")
        self.assertEqual(len(list(st.find(q(NS_ROSTER, "query")))), 0)
        st = a.iq("<query xmlns='%s'/>" % NS_VERSION, to=D)
        qv = st.find(q(NS_VERSION, "query"))
        self.assertEqual(qv.findtext(q(NS_VERSION, "name")), "chatd")
        self.assertEqual(qv.findtext(q(NS_VERSION, "version")), "v-core")
        self.assertEqual(qv.findtext(q(NS_VERSION, "os")), "instance=core-0")
        m = SRV.metrics()
        self.assertEqual(m["chatd_sessions"], 2)
        self.assertEqual(m["chatd_connections"], 2)
        self.assertEqual(m["chatd_logins_total"] - m0["chatd_logins_total"], 3)
        self.assertGreaterEqual(m["chatd_stanzas_total"] - m0["chatd_stanzas_total"], 7)
        a.close()
        self.clients.remove(a)
        presence_from(b, a.jid, "unavailable")
        self.assertEqual(SRV.wait_metric("chatd_sessions", 1), 1)
        self.assertEqual(SRV.closed_total("client") - (
            m0.get('chatd_connections_closed_total{reason="client"}', 0)), 2)


if __name__ == "__main__":
    unittest.main()
