"""XEP-0198 stream management on one chatd: enable, acks and their
counting, the server's ack requests, resumption with the same full JID,
presence and unacknowledged stanzas, the <failed/> conditions (unknown,
expired, another user's id, out of order), the queue's bound attached and
detached, the end of a session that is never resumed (its stanzas answered
as RFC 6121 says) and the drain waiting for detached sessions.
"""
import os
import signal
import time
import unittest

import harness
import xmpp
from xmpp import Chatd, NS_CLIENT, NS_SM, NS_STANZA_ERR, NS_STREAM_ERR, q

D = xmpp.DOMAIN


def setUpModule():
    global SRV
    SRV = Chatd(auth_any=True, tls=False, instance="sm-0",
                args=["--ping-interval", "600", "--resume-timeout", "30"])
    SRV.start()


def tearDownModule():
    rc = SRV.stop()
    rep = SRV.sanitizer_report()
    if rc != 0 or rep:
        raise AssertionError("chatd exit %s, sanitizer: %s\n%s" % (
            rc, rep, SRV.proc.stderr()[-3000:]))


def is_msg(body):
    return lambda s: (s.tag == q(NS_CLIENT, "message") and s.get("type") != "error" and
                      s.findtext(q(NS_CLIENT, "body")) == body)


def is_error_for(body):
    return lambda s: (s.tag == q(NS_CLIENT, "message") and s.get("type") == "error" and
                      s.findtext(q(NS_CLIENT, "body")) == body)


def failed_condition(st):
    return xmpp.condition(st, NS_STANZA_ERR) if st.tag == q(NS_SM, "failed") else None


class Base(unittest.TestCase):
    srv = None

    def setUp(self):
        self.clients = []

    def tearDown(self):
        for c in self.clients:
            c.close()

    def server(self):
        return self.srv or SRV

    def login(self, user, resource=None, presence=False, sm=False, srv=None):
        c = (srv or self.server()).client()
        self.clients.append(c)
        c.login(user, user, mech="PLAIN", resource=resource, presence=presence)
        if sm:
            en = c.sm_enable()
            self.assertEqual(en.tag, q(NS_SM, "enabled"))
            c.previd = en.get("id")
        return c

    def resume(self, user, previd, h, srv=None):
        c = (srv or self.server()).client()
        self.clients.append(c)
        f = c.authenticate(user, user, mech="PLAIN")
        self.assertIsNotNone(f.find(q(NS_SM, "sm")), "no <sm/> feature after SASL")
        return c, c.sm_resume(previd, h)

    def metric(self, key):
        return self.server().metrics().get(key, 0)

    def wait_detached(self, n, srv=None):
        s = srv or self.server()
        harness.wait_for(lambda: s.metrics().get("chatd_sessions_detached") == n,
                         timeout=10, what="chatd_sessions_detached == %d" % n)


class Enable(Base):
    def test_feature_enable_and_window(self):
        c = self.srv_client_bound("en1")
        en = c.sm_enable(max_=20)
        self.assertEqual(en.tag, q(NS_SM, "enabled"))
        self.assertEqual(en.get("resume"), "true")
        self.assertEqual(en.get("max"), "20")  # the client's shorter window
        self.assertRegex(en.get("id"), r"^[0-9a-f]{32}$")
        # a second enable: unexpected-request, the stream goes on
        st = c.sm_enable()
        self.assertEqual(failed_condition(st), "unexpected-request")
        self.assertEqual(c.sm_request(), 0)
        c2 = self.srv_client_bound("en2")
        en2 = c2.sm_enable(max_=100000)
        self.assertEqual(en2.get("max"), "30")  # capped by --resume-timeout
        self.assertNotEqual(en2.get("id"), en.get("id"))
        c3 = self.srv_client_bound("en3")
        en3 = c3.sm_enable(resume=False)
        self.assertIsNone(en3.get("id"))  # acks only: nothing to resume

    def srv_client_bound(self, user):
        c = SRV.client()
        self.clients.append(c)
        f = c.authenticate(user, user, mech="PLAIN")
        self.assertIsNotNone(f.find(q(NS_SM, "sm")))
        c.bind()
        return c

    def test_enable_before_bind_and_resume_after_bind(self):
        c = SRV.client()
        self.clients.append(c)
        c.authenticate("early", "early", mech="PLAIN")
        self.assertEqual(failed_condition(c.sm_enable()), "unexpected-request")
        c.bind()
        self.assertEqual(c.sm_enable().tag, q(NS_SM, "enabled"))
        st = c.sm_resume("0" * 32, 0)
        self.assertEqual(failed_condition(st), "unexpected-request")

    def test_ack_elements_without_sm_are_refused(self):
        c = self.login("nosm")
        c.send("<r xmlns='%s'/>" % NS_SM)
        self.assertEqual(c.wait_stream_error(), "unsupported-stanza-type")

    def test_bad_h_is_bad_format(self):
        c = self.login("badh", sm=True)
        c.send("<a xmlns='%s' h='-1'/>" % NS_SM)
        self.assertEqual(c.wait_stream_error(), "bad-format")

    def test_h_is_an_unsigned_32_bit_count(self):
        # 2^32 - 1 is a count (too high here: nothing was sent yet) ...
        a = self.login("hmax", sm=True)
        a.send("<a xmlns='%s' h='4294967295'/>" % NS_SM)
        self.assertEqual(a.wait_stream_error(), "undefined-condition")
        self.assertIn(b"handled-count-too-high", bytes(a.raw))
        # ... 2^32 is not one (not read as 0, which would be a valid ack)
        b = self.login("hover", sm=True)
        b.send("<a xmlns='%s' h='4294967296'/>" % NS_SM)
        self.assertEqual(b.wait_stream_error(), "bad-format")


class Acks(Base):
    def test_counting_both_ways(self):
        a = self.login("cnt", resource="r", sm=True)
        # inbound: message, presence, iq are counted; <r/> and <a/> are not
        a.message(a.jid, "one")
        a.expect(is_msg("one"))
        a.send("<presence/>")
        a.iq("<ping xmlns='urn:xmpp:ping'/>")
        self.assertEqual(a.sm_request(), 3)
        # outbound: the message, our own presence and the iq result: 3
        self.assertEqual(a.sm_h, 3)
        a.sm_ack()
        self.assertEqual(a.sm_request(), 3)

    def test_server_requests_acks_and_trims(self):
        a = self.login("req", resource="r", sm=True)
        b = self.login("req2", resource="r")
        for i in range(12):
            b.message(a.jid, "m%d" % i)
        for i in range(12):
            a.expect(is_msg("m%d" % i))
        # one <r/> after 5 stanzas; the next only once that one is answered
        harness.wait_for(lambda: a.poll() is not None and a.sm_requests >= 1, timeout=5)
        self.assertEqual(a.sm_requests, 1)
        a.sm_ack()  # acknowledges all 12: nothing left to resend
        b.message(a.jid, "after")
        a.expect(is_msg("after"))
        a.abort()
        self.wait_detached(1)
        c, st = self.resume("req", a.previd, 12)
        self.assertEqual(st.tag, q(NS_SM, "resumed"))
        # only the one stanza after the ack is sent again
        c.expect(is_msg("after"))
        b.message(a.jid, "new")
        c.expect(is_msg("new"))
        self.assertEqual(c.sm_request(), 0)

    def test_handled_count_too_high(self):
        a = self.login("hct", sm=True)
        a.send("<a xmlns='%s' h='100'/>" % NS_SM)
        self.assertEqual(a.wait_stream_error(), "undefined-condition")
        self.assertIn(b"handled-count-too-high", bytes(a.raw))


class Resume(Base):
    def test_resume_keeps_jid_presence_and_queue(self):
        m0 = SRV.metrics()
        a = self.login("ann", resource="phone", presence=True, sm=True)
        w = self.login("ann", resource="watch", presence=True)  # sees ann's presence
        b = self.login("ben", resource="desk", presence=True)
        a.expect(lambda s: s.tag == q(NS_CLIENT, "presence") and s.get("from") == a.jid)
        for i in range(3):
            b.message(a.jid, "before-%d" % i)
        for i in range(3):
            a.expect(is_msg("before-%d" % i))
        seen = a.sm_h  # received, not acknowledged
        a.abort()  # the connection breaks: RST, no </stream:stream>
        self.wait_detached(1)
        m1 = SRV.metrics()
        self.assertEqual(m1["chatd_connections"], m0["chatd_connections"] + 2)
        self.assertEqual(m1["chatd_sessions"], m0["chatd_sessions"] + 3)
        # stanzas for the detached session wait for it, nothing bounces
        for i in range(2):
            b.message(a.jid, "while-%d" % i)
        time.sleep(0.3)
        b.poll()
        self.assertFalse([s for s in b.pending if s.get("type") == "error"], b.pending)
        c, st = self.resume("ann", a.previd, seen)
        self.assertEqual(st.tag, q(NS_SM, "resumed"))
        self.assertEqual(st.get("previd"), a.previd)
        self.assertEqual(st.get("h"), "0")  # nothing sent since <enable/>
        for i in range(2):
            c.expect(is_msg("while-%d" % i))
        # same full JID: a message to it arrives on the new connection
        b.message(a.jid, "after")
        got = c.expect(is_msg("after"))
        self.assertEqual(got.get("to"), a.jid)
        # presence kept: the other resource saw no unavailable, and a
        # broadcast still reaches the resumed resource
        w.poll()
        self.assertFalse([s for s in w.pending if s.get("type") == "unavailable"])
        w.send("<presence><status>hi</status></presence>")
        c.expect(lambda s: s.tag == q(NS_CLIENT, "presence") and s.get("from") == w.jid)
        self.assertEqual(SRV.metrics()["chatd_sessions_resumed_total{from=\"local\"}"],
                         m0["chatd_sessions_resumed_total{from=\"local\"}"] + 1)
        self.assertEqual(SRV.metric("chatd_sessions_detached"), 0)
        # and it can be resumed again with the same id
        h = c.sm_h
        c.abort()
        self.wait_detached(1)
        c2, st = self.resume("ann", a.previd, h)
        self.assertEqual(st.tag, q(NS_SM, "resumed"))

    def test_resume_while_old_connection_open(self):
        a = self.login("olga", sm=True)
        b = self.login("oleg")
        b.message(a.jid, "x1")
        a.expect(is_msg("x1"))
        c, st = self.resume("olga", a.previd, 0)
        self.assertEqual(st.tag, q(NS_SM, "resumed"))
        c.expect(is_msg("x1"))  # never acknowledged: sent again
        self.assertEqual(a.wait_stream_error(), "conflict")
        b.message(a.jid, "x2")
        c.expect(is_msg("x2"))

    def test_unknown_and_forged_ids(self):
        m0 = SRV.metrics()
        c, st = self.resume("zed", "0123456789abcdef0123456789abcdef", 0)
        self.assertEqual(failed_condition(st), "item-not-found")
        c.bind()  # the stream goes on: bind a new session instead
        c, st = self.resume("zed", "not-an-id", 0)
        self.assertEqual(failed_condition(st), "item-not-found")
        c, st = self.resume("zed", "", 0)
        self.assertEqual(failed_condition(st), "item-not-found")
        key = 'chatd_resume_failed_total{reason="not-found"}'
        self.assertEqual(SRV.metrics()[key], m0[key] + 3)

    def test_another_users_id_is_refused(self):
        m0 = SRV.metrics()
        a = self.login("vic", sm=True)
        b = self.login("mal")
        b.message(a.jid, "secret")
        a.expect(is_msg("secret"))
        a.abort()
        self.wait_detached(1)
        # mal knows (stole) the id: refused as if unknown
        c, st = self.resume("mal", a.previd, 0)
        self.assertEqual(failed_condition(st), "item-not-found")
        c.poll()
        self.assertFalse([s for s in c.pending if s.tag == q(NS_CLIENT, "message")])
        key = 'chatd_resume_failed_total{reason="other-user"}'
        self.assertEqual(SRV.metrics()[key], m0[key] + 1)
        # the session is still there for its owner
        c, st = self.resume("vic", a.previd, 0)
        self.assertEqual(st.tag, q(NS_SM, "resumed"))
        c.expect(is_msg("secret"))

    def test_ack_count_too_high_on_resume(self):
        m0 = SRV.metrics()
        a = self.login("hi", sm=True)
        a.abort()
        self.wait_detached(1)
        c, st = self.resume("hi", a.previd, 5)
        self.assertEqual(failed_condition(st), "undefined-condition")
        self.wait_detached(0)
        c, st = self.resume("hi", a.previd, 0)
        self.assertEqual(failed_condition(st), "item-not-found")
        for reason, n in (("handled-count-too-high", 1), ("not-found", 1)):
            key = 'chatd_resume_failed_total{reason="%s"}' % reason
            self.assertEqual(SRV.metrics()[key], m0[key] + n, key)

    def test_malformed_or_misplaced_resume_is_bad_request(self):
        m0 = SRV.metrics()
        a = self.login("mres", sm=True)
        a.abort()
        self.wait_detached(1)
        # on a bound stream: unexpected-request
        d = self.login("mres", resource="other")
        self.assertEqual(failed_condition(d.sm_resume(a.previd, 0)), "unexpected-request")
        # h past 2^32 - 1, then no h at all: bad-request, the session stays
        c, st = self.resume("mres", a.previd, 4294967296)
        self.assertEqual(failed_condition(st), "bad-request")
        c.send("<resume xmlns='%s' previd='%s'/>" % (NS_SM, a.previd))
        st = c.expect(lambda s: s.tag in (q(NS_SM, "resumed"), q(NS_SM, "failed")))
        self.assertEqual(failed_condition(st), "bad-request")
        key = 'chatd_resume_failed_total{reason="bad-request"}'
        self.assertEqual(SRV.metrics()[key], m0[key] + 3)
        self.assertEqual(SRV.metric("chatd_sessions_detached"), 1)
        # the same stream may try again
        self.assertEqual(c.sm_resume(a.previd, 0).tag, q(NS_SM, "resumed"))

    def test_clean_close_ends_the_session_and_answers_its_queue(self):
        a = self.login("cc", resource="r", sm=True)
        b = self.login("cd", resource="r")
        b.message(a.jid, "unacked")
        a.expect(is_msg("unacked"))
        a.close()  # </stream:stream>: no resumption
        err = b.expect(is_error_for("unacked"))
        self.assertEqual(xmpp.stanza_error(err), ("cancel", "service-unavailable"))
        self.assertEqual(SRV.metric("chatd_sessions_detached"), 0)
        c, st = self.resume("cc", a.previd, 1)
        self.assertEqual(failed_condition(st), "item-not-found")


class Window(Base):
    """A short window: the session ends, what it held is answered for."""

    @classmethod
    def setUpClass(cls):
        cls.srv = Chatd(auth_any=True, tls=False, instance="sm-w",
                        args=["--ping-interval", "600", "--resume-timeout", "1"])
        cls.srv.start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.srv.stop()
        if rc != 0 or cls.srv.sanitizer_report():
            raise AssertionError("chatd exit %s: %s" % (rc, cls.srv.sanitizer_report()))

    def test_expired_session_bounces_and_fails(self):
        a = self.login("exp", resource="r", sm=True)
        a.auto_pong = False  # the ping below stays unanswered
        b = self.login("exq", resource="r")
        b.message(a.jid, "held", id_="h1")
        a.expect(is_msg("held"))
        b.send("<iq type='get' id='q1' to='%s'><ping xmlns='urn:xmpp:ping'/></iq>" % a.jid)
        a.expect(lambda s: s.tag == q(NS_CLIENT, "iq") and s.get("id") == "q1")
        b.send("<message to='%s' type='headline'><body>hl</body></message>" % a.jid)
        a.expect(is_msg("hl"))
        a.abort()
        self.wait_detached(1)
        # the window passes: message and iq request bounce, headline is dropped
        err = b.expect(is_error_for("held"), timeout=10)
        self.assertEqual(xmpp.stanza_error(err), ("cancel", "service-unavailable"))
        iq = b.expect(lambda s: s.tag == q(NS_CLIENT, "iq") and s.get("id") == "q1")
        self.assertEqual(xmpp.stanza_error(iq), ("cancel", "service-unavailable"))
        self.wait_detached(0)
        c, st = self.resume("exp", a.previd, 0)
        self.assertEqual(failed_condition(st), "item-not-found")
        b.poll()
        self.assertFalse([s for s in b.pending if s.findtext(q(NS_CLIENT, "body")) == "hl"])

    def test_expired_message_goes_to_another_resource(self):
        a = self.login("two", resource="a", presence=True, sm=True)
        o = self.login("two", resource="o", presence=True)
        b = self.login("sender", resource="r")
        b.message(a.jid, "to-full")
        a.expect(is_msg("to-full"))
        a.abort()
        self.wait_detached(1)
        # RFC 6121 8.5.3.2.1: the other resource of the user gets it
        got = o.expect(is_msg("to-full"), timeout=10)
        self.assertEqual(got.get("to"), a.jid)
        o.expect(lambda s: s.tag == q(NS_CLIENT, "presence") and s.get("from") == a.jid and
                 s.get("type") == "unavailable")
        b.poll()
        self.assertFalse([s for s in b.pending if s.get("type") == "error"])


class Bounds(Base):
    """--sm-max-queue: attached, the client that never acknowledges is
    closed; detached, what does not fit bounces at once."""

    @classmethod
    def setUpClass(cls):
        cls.srv = Chatd(auth_any=True, tls=False, instance="sm-b",
                        args=["--ping-interval", "600", "--max-stanza", "1024",
                              "--sm-max-queue", "12000"])
        cls.srv.start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.srv.stop()
        if rc != 0 or cls.srv.sanitizer_report():
            raise AssertionError("chatd exit %s: %s" % (rc, cls.srv.sanitizer_report()))

    def test_attached_client_that_never_acks(self):
        a = self.login("lazy", resource="r", sm=True)
        b = self.login("busy", resource="r")
        body = "x" * 500
        for i in range(40):
            b.message(a.jid, "%d%s" % (i, body))
        self.assertEqual(a.wait_stream_error(timeout=10), "policy-violation")
        self.assertIn(b"unacknowledged stanza queue limit exceeded", bytes(a.raw))
        # every message it did not acknowledge is answered for, none is lost
        errs = set()
        harness.wait_for(lambda: (b.poll() is not None and
                                  len([s for s in b.pending if s.get("type") == "error"]) >= 40),
                         timeout=10, what="40 bounces")
        for s in b.pending:
            if s.get("type") == "error":
                errs.add(s.findtext(q(NS_CLIENT, "body")))
        self.assertEqual(len(errs), 40)

    def test_detached_queue_full_bounces_the_rest(self):
        a = self.login("full", resource="r", sm=True)
        b = self.login("fill", resource="r")
        a.abort()
        self.wait_detached(1)
        body = "y" * 500
        for i in range(40):
            b.message(a.jid, "%d%s" % (i, body))
        # the queue takes about 12000 bytes: the rest bounce at once
        harness.wait_for(lambda: b.poll() is not None and
                         any(s.get("type") == "error" for s in b.pending), timeout=5)
        time.sleep(0.3)
        b.poll()
        bounced = {s.findtext(q(NS_CLIENT, "body")) for s in b.pending
                   if s.get("type") == "error"}
        c, st = self.resume("full", a.previd, 0)
        self.assertEqual(st.tag, q(NS_SM, "resumed"))
        got = set()
        while True:
            s = c.next_stanza(timeout=1)
            if s is None:
                break
            if s.tag == q(NS_CLIENT, "message"):
                got.add(s.findtext(q(NS_CLIENT, "body")))
        # each message either waited and arrived, or bounced: never both, never none
        self.assertTrue(got and bounced)
        self.assertEqual(got | bounced, {"%d%s" % (i, body) for i in range(40)})
        self.assertFalse(got & bounced)


class Drain(Base):
    def test_sigterm_waits_for_detached_sessions(self):
        srv = Chatd(auth_any=True, tls=False, instance="sm-d",
                    args=["--ping-interval", "600", "--resume-timeout", "2"])
        srv.start()
        try:
            a = self.login("dr", sm=True, srv=srv)
            a.abort()
            self.wait_detached(1, srv)
            srv.proc.signal(signal.SIGTERM)
            time.sleep(0.5)
            self.assertTrue(srv.alive(), "exited with a detached session held")
            self.assertEqual(srv.proc.wait(timeout=10), 0)
            self.assertIn("event=detached_end", srv.proc.stderr())
        finally:
            srv.stop()
            srv.check_clean(self)


if __name__ == "__main__":
    unittest.main()
