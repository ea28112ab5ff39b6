"""Bad input: hostile and malformed streams against one chatd.

Each case asserts the exact stream error (RFC 6120 4.9.3) or stanza error
(RFC 6120 8.3.3 / RFC 6121 8.5) and then, in tearDown, that the server is
still fine: /healthz is 200, two sessions established before any case still
exchange messages both ways, a fresh login works, the connection gauge is
back to those two sessions (nothing leaked), and no sanitizer report.

The one chatd for the module runs with small limits (--auth-timeout 2,
--max-connections 30, --max-output 256 KiB) so every case is quick.
"""
import os
import signal
import socket
import ssl
import time
import unittest

import harness
import xmpp
from xmpp import Chatd, NS_CLIENT, NS_SASL, NS_STANZA_ERR, NS_TLS, q

D = xmpp.DOMAIN
MAX_CONN = 30
AUTH_TIMEOUT = 2
MAX_OUTPUT = 256 * 1024
USERS = {"w1": "w1-pw", "w2": "w2-pw", "alice": "alice-pw", "bob": "bob-pw",
         "carol": "carol-pw", "dave": "dave-pw"}


def setUpModule():
    global SRV, W1, W2
    SRV = Chatd(users=USERS, instance="bad-0",
                args=["--auth-timeout", str(AUTH_TIMEOUT), "--max-connections", str(MAX_CONN),
                      "--max-output", str(MAX_OUTPUT), "--ping-interval", "600",
                      "--max-stanza", "65536", "--max-depth", "32",
                      # the input shaper has its own tests (test_chatd_hostile); here
                      # clients must be able to fill output queues fast
                      "--rate-limit", "0"])
    SRV.start()
    W1 = SRV.login("w1", resource="witness", presence=True)
    W2 = SRV.login("w2", resource="witness", presence=True)


def tearDownModule():
    for w in (W1, W2):
        w.close()
    rc = SRV.stop()
    rep = SRV.sanitizer_report()
    if rc != 0 or rep:
        raise AssertionError("chatd exit %s after SIGTERM, sanitizer: %s\n%s" % (
            rc, rep, SRV.proc.stderr()[-3000:]))


class Base(unittest.TestCase):
    seq = 0

    def setUp(self):
        self.clients = []
        self.closed_before = SRV.closed_total()

    def tearDown(self):
        for c in self.clients:
            c.close(send_close=False)
        self.assert_server_ok()

    # ---- helpers ---------------------------------------------------------

    def client(self, **kw):
        c = SRV.client(**kw)
        self.clients.append(c)
        return c

    def login(self, user="alice", **kw):
        c = self.client()
        c.login(user, USERS[user], **kw)
        return c

    def assert_server_ok(self):
        self.assertTrue(SRV.alive(), "chatd died:\n" + SRV.proc.stderr()[-4000:])
        SRV.check_clean(self)
        self.assertEqual(SRV.http("/healthz")[0], 200)
        # the established witnesses are untouched, both ways
        Base.seq += 1
        for w in (W1, W2):
            w.poll()
            w.pending = []
        for a, b in ((W1, W2), (W2, W1)):
            body = "witness-%d-%s" % (Base.seq, a.jid)
            a.message(b.jid, body)
            st = b.expect_message(body, timeout=10)
            self.assertEqual(st.get("from"), a.jid)
        # a fresh login still works
        c = SRV.client()
        try:
            self.assertEqual(xmpp.bare(c.login("carol", USERS["carol"])), "carol@" + D)
        finally:
            c.close()
        # every connection of the case is gone: only the two witnesses left
        got = SRV.wait_metric("chatd_connections", 2, timeout=10)
        self.assertEqual(got, 2, "connection gauge did not return to the witnesses")

    def open_ok(self, c):
        f = c.open_stream()
        self.assertIsNotNone(f, "no features: stream error %s" % c.stream_error)
        return f

    def assert_stream_error(self, c, cond, timeout=10):
        """The server sends <stream:error><cond/></stream:error>, then
        </stream:stream>, then closes the TCP connection (RFC 6120 4.9.1.1)."""
        got = c.wait_stream_error(timeout)
        self.assertIsNone(c.reader.error, "server output not well-formed: %s\n%r" % (
            c.reader.error, bytes(c.raw[-500:])))
        self.assertIsNotNone(c.header, "no stream header before the error")
        self.assertEqual(got, cond, "raw: %r" % bytes(c.raw[-600:]))
        self.assertTrue(c.closed_tag, "no </stream:stream> after the error")
        self.assertIn(c.end, ("eof", "reset"), "connection not closed")

    def bad_stream(self, data, cond, header=True, pre=None):
        c = self.client()
        if pre is not None:
            c.send(pre)
        if header:
            self.open_ok(c)
        c.send(data)
        self.assert_stream_error(c, cond)
        return c

    def assert_stanza_error(self, st, cond, type_=None):
        err = xmpp.stanza_error(st)
        self.assertIsNotNone(err, "not an error: %s" % xmpp.ET.tostring(st))
        self.assertEqual(err[1], cond, xmpp.ET.tostring(st))
        if type_:
            self.assertEqual(err[0], type_)

    def expect_error_reply(self, c, tag, cond, **attrs):
        st = c.expect(lambda s: s.tag == q(NS_CLIENT, tag) and s.get("type") == "error" and
                      all(s.get(k) == v for k, v in attrs.items()), timeout=5,
                      what="%s error %s" % (tag, cond))
        self.assert_stanza_error(st, cond)
        return st



class BadInput(Base):
    # ---- stream level ----------------------------------------------------

    def test_01_truncated_xml_then_close(self):
        c = self.client()
        self.open_ok(c)
        c.send("<message to='alice@%s'><bo" % D)
        c.sock.shutdown(socket.SHUT_WR)
        self.assertIn(c.wait_end(10), ("eof", "reset"))
        self.assertEqual(c.pending, [])

    def test_02_truncated_xml_then_reset(self):
        c = self.login("alice", resource="trunc")
        c.send("<message to='bob@%s' type='chat'><body>half" % D)
        c.abort()
        self.clients.remove(c)
        harness.wait_for(lambda: SRV.metric("chatd_sessions") == 2, 10, what="session gone")

    def test_03_wrong_stream_namespace(self):
        self.bad_stream(xmpp.stream_header(stream_ns="http://example.com/not-streams"),
                        "invalid-namespace", header=False)

    def test_04_wrong_content_namespace(self):
        self.bad_stream(xmpp.stream_header(ns="urn:example:not-client"),
                        "invalid-namespace", header=False)

    def test_05_missing_version(self):
        # RFC 6120 4.7.5: no version means 0.9, which chatd does not speak
        self.bad_stream(xmpp.stream_header(version=None), "unsupported-version", header=False)

    def test_06_unsupported_major_version(self):
        self.bad_stream(xmpp.stream_header(version="11.0"), "unsupported-version", header=False)

    def test_07_higher_minor_version_is_accepted(self):
        # RFC 6120 4.7.5: answer with the lower of the two versions
        c = self.client()
        f = c.open_stream(xmpp.stream_header(version="1.7"))
        self.assertIsNotNone(f, c.stream_error)
        self.assertEqual(c.header.get("version"), "1.0")
        c.close()

    def test_08_wrong_to_domain(self):
        self.bad_stream(xmpp.stream_header(to="other.test"), "host-unknown", header=False)

    def test_09_doctype(self):
        self.bad_stream("<?xml version='1.0'?><!DOCTYPE stream:stream>" +
                        xmpp.stream_header(decl=False), "restricted-xml", header=False)

    def test_10_internal_entity_declaration(self):
        self.bad_stream("<?xml version='1.0'?><!DOCTYPE stream:stream [<!ENTITY x 'y'>]>" +
                        xmpp.stream_header(decl=False), "restricted-xml", header=False)

    def test_11_billion_laughs(self):
        ents = "<!ENTITY lol 'lol'>" + "".join(
            "<!ENTITY lol%d '%s'>" % (i, ("&lol%s;" % (i - 1 if i > 1 else "")) * 10)
            for i in range(1, 10))
        rss0 = SRV.rss_kb()
        self.bad_stream("<?xml version='1.0'?><!DOCTYPE stream:stream [%s]>" % ents +
                        xmpp.stream_header(decl=False, extra=" id='&lol9;'"),
                        "restricted-xml", header=False)
        self.assertLess(SRV.rss_kb() - rss0, 16 * 1024)

    def test_12_external_entity(self):
        self.bad_stream("<?xml version='1.0'?><!DOCTYPE stream:stream "
                        "[<!ENTITY xxe SYSTEM 'file:///etc/passwd'>]>" +
                        xmpp.stream_header(decl=False), "restricted-xml", header=False)

    def test_13_comment_between_stanzas(self):
        self.bad_stream("<!-- a comment -->", "restricted-xml")

    def test_14_comment_inside_stanza(self):
        c = self.login("alice", resource="cmt")
        c.send("<message to='bob@%s'><!-- hidden --><body>x</body></message>" % D)
        self.assert_stream_error(c, "restricted-xml")

    def test_15_processing_instruction(self):
        self.bad_stream("<?evil data?>", "restricted-xml")

    def test_16_undefined_entity_reference(self):
        c = self.login("alice", resource="ent")
        c.send("<message to='bob@%s'><body>&nbsp;</body></message>" % D)
        self.assert_stream_error(c, "not-well-formed")

    def test_17_invalid_utf8(self):
        c = self.login("alice", resource="utf8")
        c.send(b"<message to='bob@" + D.encode() + b"'><body>\xff\xfe\xc3\x28</body></message>")
        self.assert_stream_error(c, "not-well-formed")

    def test_18_overlong_utf8_in_header(self):
        # an overlong encoding of '/' (0xC0 0xAF) is invalid UTF-8 too
        self.bad_stream(b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                        b"xmlns:stream='http://etherx.jabber.org/streams' to='example.test' "
                        b"version='1.0' id='\xc0\xaf'>", "not-well-formed", header=False)

    def test_18b_encoding_other_than_utf8(self):
        # RFC 6120 11.6: UTF-8 only
        self.bad_stream("<?xml version='1.0' encoding='UTF-16'?>" +
                        xmpp.stream_header(decl=False), "unsupported-encoding", header=False)

    def test_19_http_request_on_xmpp_port(self):
        self.bad_stream("GET / HTTP/1.1\r\nHost: x\r\n\r\n", "not-well-formed", header=False)

    def test_20_direct_tls_on_plain_port(self):
        # a TLS ClientHello where a stream header is expected
        c = self.client()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(inc, out, server_hostname=D)
        try:
            obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        c.send(out.read())
        self.assert_stream_error(c, "not-well-formed")

    def _big_stanza(self, make, size, tls=False):
        c = self.client()
        c.login("alice", USERS["alice"], resource="big", tls=tls, cafile=SRV.cert)
        rss0 = SRV.rss_kb()
        head, chunk = make
        ok = c.send(head)
        sent = 0
        block = (chunk * (65536 // len(chunk))).encode()
        c.sock.settimeout(10)
        while ok and sent < size:
            try:
                c.sock.sendall(block)
            except (BrokenPipeError, ConnectionResetError, socket.timeout):
                break
            sent += len(block)
        self.assert_stream_error(c, "policy-violation")
        grow = SRV.rss_kb() - rss0
        self.assertLess(grow, 4 * 1024, "RSS grew by %d KiB for a 10 MB stanza" % grow)

    def test_21_ten_megabyte_stanza_text(self):
        self._big_stanza(("<message to='bob@%s'><body>" % D, "a" * 1024), 10 << 20)

    def test_22_ten_megabyte_attribute(self):
        # one 10 MB token: expat would buffer all of it unless the size
        # limit is applied to input bytes, not to finished elements
        self._big_stanza(("<message to='bob@%s' id='" % D, "b" * 1024), 10 << 20)

    def test_22b_ten_megabyte_stanza_over_tls(self):
        # the same limit behind the TLS layer
        self._big_stanza(("<message to='bob@%s'><body>" % D, "c" * 1024), 10 << 20, tls=True)

    def test_23_deep_nesting(self):
        c = self.login("alice", resource="deep")
        c.send("<message to='bob@%s'>" % D + "<a>" * 10000)
        self.assert_stream_error(c, "policy-violation")

    def test_24_unknown_top_level_element(self):
        c = self.login("alice", resource="unk")
        c.send("<foo/>")
        self.assert_stream_error(c, "unsupported-stanza-type")

    def test_24b_stream_header_inside_the_open_stream(self):
        # A client that restarts its stream unasked: answered at the start
        # tag, not after the ping or auth timeout (no end tag ever comes).
        c = self.client()
        c.open_stream()
        c.send(xmpp.stream_header(decl=False))  # an XML declaration: not-well-formed
        self.assert_stream_error(c, "unsupported-stanza-type", timeout=AUTH_TIMEOUT - 0.5)
        c = self.login("alice", resource="restart")
        c.send(xmpp.stream_header(decl=False))
        self.assert_stream_error(c, "unsupported-stanza-type", timeout=5)

    def test_25_data_after_stream_close(self):
        c = self.login("alice", resource="after")
        c.send("</stream:stream><message to='bob@%s'><body>late</body></message>" % D)
        self.assertIn(c.wait_end(10), ("eof", "reset"))
        self.assertTrue(c.closed_tag, "server did not close its stream")
        self.assertIsNone(c.stream_error)

    # ---- before authentication --------------------------------------------

    def test_26_stanzas_before_auth(self):
        for st in ("<message to='bob@%s'><body>x</body></message>" % D,
                   "<presence/>",
                   "<iq type='get' id='1' to='%s'><ping xmlns='urn:xmpp:ping'/></iq>" % D,
                   "<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>"):
            with self.subTest(stanza=st):
                self.bad_stream(st, "not-authorized")

    def test_27_sasl_bad_base64(self):
        c = self.client()
        self.open_ok(c)
        c.send("<auth xmlns='%s' mechanism='SCRAM-SHA-256'>!!not*base64!!</auth>" % NS_SASL)
        st = c.expect(lambda s: s.tag.startswith("{%s}" % NS_SASL))
        self.assertEqual(st.tag, q(NS_SASL, "failure"))
        self.assertEqual(xmpp.condition(st, NS_SASL), "incorrect-encoding")
        # RFC 6120 6.4.5: the stream stays; a correct attempt still works
        self.assertEqual(c.auth_scram("dave", USERS["dave"]), ("success", None))

    def test_28_sasl_malformed_scram_message(self):
        import base64
        c = self.client()
        self.open_ok(c)
        c.send("<auth xmlns='%s' mechanism='SCRAM-SHA-256'>%s</auth>" % (
            NS_SASL, base64.b64encode(b"hello, not scram").decode()))
        st = c.expect(lambda s: s.tag.startswith("{%s}" % NS_SASL))
        self.assertEqual(st.tag, q(NS_SASL, "failure"))
        self.assertEqual(xmpp.condition(st, NS_SASL), "malformed-request")

    def test_29_unknown_mechanism(self):
        c = self.client()
        self.open_ok(c)
        c.send("<auth xmlns='%s' mechanism='X-NOPE'>AA==</auth>" % NS_SASL)
        st = c.expect(lambda s: s.tag.startswith("{%s}" % NS_SASL))
        self.assertEqual(xmpp.condition(st, NS_SASL), "invalid-mechanism")

    def test_30_wrong_password(self):
        c = self.client()
        self.open_ok(c)
        self.assertEqual(c.auth_scram("alice", "wrong"), ("failure", "not-authorized"))
        self.assertEqual(c.auth_scram("nosuchuser", "wrong"), ("failure", "not-authorized"))
        c2 = self.client()
        self.open_ok(c2)
        # a forged proof for the right user is refused too
        self.assertEqual(c2.auth_scram("alice", USERS["alice"],
                                       tamper=lambda m: m[:-4] + "AAA="),
                         ("failure", "not-authorized"))
        # and the stream still allows a correct login after failures
        self.assertEqual(c.auth_scram("alice", USERS["alice"]), ("success", None))

    def test_30b_too_many_auth_failures(self):
        # chatd allows 3 failed attempts per stream, then policy-violation
        c = self.client()
        self.open_ok(c)
        for _ in range(3):
            self.assertEqual(c.auth_scram("alice", "wrong"), ("failure", "not-authorized"))
        self.assert_stream_error(c, "policy-violation")

    def test_30c_authzid_naming_someone_else(self):
        # RFC 6120 6.4.6: an authorization identity the authenticated user
        # may not act as -> <invalid-authzid/>, for every mechanism
        c = self.client()
        self.open_ok(c)
        c.starttls(cafile=SRV.cert)
        self.assertEqual(c.auth_plain("alice", USERS["alice"], authzid="bob@" + D),
                         ("failure", "invalid-authzid"))
        self.assertEqual(c.auth_plain("alice", USERS["alice"], authzid="alice@" + D),
                         ("success", None))
        c2 = self.client()
        self.open_ok(c2)
        self.assertEqual(c2.auth_scram("alice", USERS["alice"], gs2="n,a=bob@%s," % D),
                         ("failure", "invalid-authzid"))

    def test_30d_scram_binding_and_nonce_checked(self):
        # RFC 5802 5.1: c= must repeat the GS2 header, r= the full nonce;
        # the proof is valid for what is sent, so only those checks stop it
        import base64
        for kw in ({"final_cbind": base64.b64encode(b"y,,").decode()},
                   {"final_nonce": "not-the-server-nonce"},
                   {"gs2": "p=tls-unique,,"}):
            with self.subTest(**kw):
                c = self.client()
                self.open_ok(c)
                self.assertEqual(c.auth_scram("alice", USERS["alice"], **kw),
                                 ("failure", "not-authorized"))

    def test_30e_plain_malformed(self):
        import base64
        c = self.client()
        self.open_ok(c)
        c.starttls(cafile=SRV.cert)
        c.send("<auth xmlns='%s' mechanism='PLAIN'>%s</auth>" % (
            NS_SASL, base64.b64encode(b"no separators").decode()))
        st = c.expect(lambda s: s.tag.startswith("{%s}" % NS_SASL))
        self.assertEqual(xmpp.condition(st, NS_SASL), "malformed-request")
        # no initial response: RFC 6120 6.4.2, an empty challenge first
        c.send("<auth xmlns='%s' mechanism='PLAIN'/>" % NS_SASL)
        st = c.expect(lambda s: s.tag.startswith("{%s}" % NS_SASL))
        self.assertEqual((st.tag, st.text), (q(NS_SASL, "challenge"), None))
        c.send("<response xmlns='%s'>%s</response>" % (
            NS_SASL, base64.b64encode(b"\0bob\0" + USERS["bob"].encode()).decode()))
        st = c.expect(lambda s: s.tag.startswith("{%s}" % NS_SASL))
        self.assertEqual(st.tag, q(NS_SASL, "success"))

    def test_31_plain_without_tls_refused(self):
        c = self.client()
        f = self.open_ok(c)
        mechs = c.mechanisms(f)
        self.assertIn("SCRAM-SHA-256", mechs)
        self.assertNotIn("PLAIN", mechs)
        res = c.auth_plain("alice", USERS["alice"])
        # RFC 6120 6.5.4 names encryption-required for exactly this case
        self.assertEqual(res, ("failure", "encryption-required"))

    def test_32_plain_after_starttls_allowed(self):
        c = self.client()
        self.open_ok(c)
        f = c.starttls(cafile=SRV.cert)
        self.assertIn("PLAIN", c.mechanisms(f))
        self.assertEqual(c.auth_plain("alice", USERS["alice"]), ("success", None))
        c.close()

    def test_33_tls_garbage_after_proceed(self):
        c = self.client()
        self.open_ok(c)
        c.send("<starttls xmlns='%s'/>" % NS_TLS)
        st = c.expect(lambda s: s.tag.startswith("{%s}" % NS_TLS))
        self.assertEqual(st.tag, q(NS_TLS, "proceed"))
        c.send(os.urandom(300))
        # RFC 6120 5.4.3.2: a failed TLS negotiation ends the TCP connection
        self.assertIn(c.wait_end(10), ("eof", "reset"))

    def test_34_plaintext_injected_after_starttls_is_discarded(self):
        # RFC 6120 5.4.3.3 / the STARTTLS injection class of bugs: bytes sent
        # in plaintext after <starttls/> must not reach the TLS layer or the
        # new stream.
        c = self.client()
        self.open_ok(c)
        c.send("<starttls xmlns='%s'/><message to='w1@%s/witness'><body>injected</body>"
               "</message>" % (NS_TLS, D))
        st = c.expect(lambda s: s.tag.startswith("{%s}" % NS_TLS))
        self.assertEqual(st.tag, q(NS_TLS, "proceed"))
        c.wrap_tls(cafile=SRV.cert)
        self.assertIsNotNone(c.open_stream(), "TLS stream after injected plaintext failed")
        self.assertEqual(c.auth_plain("bob", USERS["bob"]), ("success", None))
        time.sleep(0.3)
        W1.poll()
        self.assertEqual([s for s in W1.pending if s.findtext(q(NS_CLIENT, "body")) == "injected"],
                         [], "injected plaintext was delivered")

    def test_35_idle_before_auth(self):
        # --auth-timeout runs from accept to bind, whatever is sent meanwhile
        t0 = time.monotonic()
        header_only = self.client()
        self.open_ok(header_only)
        silent = self.client()                    # TCP only, never speaks
        unbound = self.client()                   # authenticated, never binds
        self.open_ok(unbound)
        self.assertEqual(unbound.auth_scram("dave", USERS["dave"]), ("success", None))
        self.assertIsNotNone(unbound.open_stream())
        chatty = self.client()                    # keepalives do not extend it
        self.open_ok(chatty)
        while chatty.end is None and time.monotonic() - t0 < AUTH_TIMEOUT + 8:
            chatty.send(" ")
            chatty.wait_end(0.3)
        for c in (header_only, unbound, chatty):
            self.assert_stream_error(c, "connection-timeout", timeout=AUTH_TIMEOUT + 8)
        self.assertGreaterEqual(time.monotonic() - t0, AUTH_TIMEOUT - 1)
        self.assertIn(silent.wait_end(AUTH_TIMEOUT + 8), ("eof", "reset"))

    def test_36_connection_flood(self):
        # the two witnesses hold two slots
        held = []
        for i in range(MAX_CONN - 2):
            c = self.client()
            c.login("dave", USERS["dave"], resource="flood%d" % i)
            held.append(c)
        self.assertEqual(SRV.metric("chatd_connections"), MAX_CONN)
        refused0 = SRV.closed_total("resource-constraint")
        accepted0 = SRV.metric("chatd_connections_accepted_total")
        extra = [self.client() for _ in range(5)]
        for c in extra:
            # refused with a stream error (header first), then closed
            c.send(xmpp.stream_header())
            self.assert_stream_error(c, "resource-constraint")
        # the refused ones are accounted for, and never counted as held
        self.assertEqual(SRV.closed_total("resource-constraint") - refused0, 5)
        self.assertEqual(SRV.metric("chatd_connections_accepted_total") - accepted0, 5)
        self.assertEqual(SRV.metric("chatd_connections"), MAX_CONN)
        # the connections already held are untouched
        for c in held:
            st = c.iq("<ping xmlns='urn:xmpp:ping'/>", to=D)
            self.assertEqual(st.get("type"), "result")
        for c in held:
            c.close()
        SRV.wait_metric("chatd_connections", 2)
        # and the slots are free again
        c = self.login("alice", resource="after-flood")
        c.close()

    def _slow_consumer(self, tls):
        # the victim never reads; its receive window is tiny so that the
        # server's output queue (--max-output) fills quickly
        victim = self.client(rcvbuf=4096)
        victim.login("bob", USERS["bob"], resource="slow", tls=tls, cafile=SRV.cert)
        sender = self.login("alice", resource="flooder")
        body = "z" * 16000
        closed0 = SRV.closed_total("policy-violation")
        victim_gone = False
        for i in range(2000):  # at most 32 MB
            sender.message(victim.jid, "%d %s" % (i, body))
            sender.poll()  # the sender itself reads what comes back
            sender.pending = []
            if i % 16 == 15 and SRV.closed_total("policy-violation") > closed0:
                victim_gone = True
                break
        if not victim_gone:
            victim_gone = harness.wait_for(
                lambda: SRV.closed_total("policy-violation") > closed0, 10,
                what="victim closed") and True
        self.assertTrue(victim_gone)
        # the sender is untouched: it still talks to the server and others
        st = sender.iq("<ping xmlns='urn:xmpp:ping'/>", to=D, timeout=20)
        self.assertEqual(st.get("type"), "result")
        sender.message(W1.jid, "sender-alive")
        W1.expect_message("sender-alive", timeout=10)
        # the victim, once it reads, finds the queued messages and then the
        # stream error (chatd flushes before closing)
        victim.wait_end(20)
        self.assertIn(victim.end, ("eof", "reset"), victim.end_detail)
        self.assertIsNone(victim.reader.error)
        self.assertGreater(len(victim.pending), 0)
        self.assertEqual(victim.stream_error, "policy-violation", "%s %r" % (
            victim.end, bytes(victim.raw[-300:])))
        self.assertTrue(victim.closed_tag)

    def test_37_slow_consumer(self):
        self._slow_consumer(tls=False)

    def test_37b_slow_consumer_over_tls(self):
        # output queued inside the TLS layer counts against the bound too
        self._slow_consumer(tls=True)

    def test_99_chaos(self):
        # Seeded random mixes of half-finished negotiations, resets at odd
        # moments, conflicts and traffic to sessions that are going away:
        # the close paths under the sanitizers. Bounded: 120 steps.
        import random
        rnd = random.Random(int(os.environ.get("CHAOS_SEED", "20261127")))
        live = []
        for step in range(int(os.environ.get("CHAOS_STEPS", "120"))):
            kind = rnd.randrange(6)
            try:
                if kind == 0:      # cut a negotiation anywhere
                    c = self.client()
                    data = (xmpp.stream_header() + "<auth xmlns='%s' mechanism='SCRAM-SHA-256'>"
                            "biwsbj1hbGljZSxyPWFiY2RlZg==</auth><response xmlns='%s'>AAAA"
                            % (NS_SASL, NS_SASL)).encode()
                    c.send(data[:rnd.randrange(len(data))])
                    c.abort() if rnd.random() < 0.5 else c.close(send_close=False)
                elif kind == 1:    # a session that talks, then vanishes mid-stanza
                    c = self.login(rnd.choice(["alice", "bob", "dave"]),
                                   resource="chaos%d" % rnd.randrange(6))
                    live.append(c)
                    for other in rnd.sample(live, min(3, len(live))):
                        if other.jid:
                            c.message(other.jid, "chaos %d" % step)
                    if rnd.random() < 0.5:
                        c.send("<message to='%s'><body>cut" % (live[0].jid or D))
                        c.abort()
                elif kind == 2:    # STARTTLS, then reset inside the handshake
                    c = self.client()
                    self.open_ok(c)
                    c.send("<starttls xmlns='%s'/>" % NS_TLS)
                    c.send(b"\x16\x03\x01\x00\xc8\x01\x00" + os.urandom(rnd.randrange(40)))
                    c.abort()
                elif kind == 3 and live:   # reset an established session
                    live.pop(rnd.randrange(len(live))).abort()
                elif kind == 4:    # garbage after a good header
                    c = self.client()
                    c.send(xmpp.stream_header() + os.urandom(rnd.randrange(1, 64)).decode(
                        "latin-1"))
                    if rnd.random() < 0.5:
                        c.abort()
                else:              # broadcast presence among the chaos sessions
                    for c in live[-3:]:
                        c.send("<presence/>")
            except (OSError, xmpp.ProtocolError):
                pass  # a session taken away by a conflict: expected here
        self.assertTrue(SRV.alive())

    # ---- after authentication ----------------------------------------------

    def test_38_second_bind_same_full_jid(self):
        old = self.login("alice", resource="dup", presence=True)
        new = self.login("alice", resource="dup")
        self.assertEqual(new.jid, "alice@%s/dup" % D)
        self.assert_stream_error(old, "conflict")
        new.message(W1.jid, "from-new")
        self.assertEqual(W1.expect_message("from-new").get("from"), "alice@%s/dup" % D)

    def test_39_invalid_jids_in_to(self):
        c = self.login("alice", resource="jid")
        bad = ["@" + D, "a@b@" + D, "alice@", "alice@%s/" % D, "a b@" + D,
               "x" * 1100 + "@" + D, "alice@%s/" % D + "r" * 1100, "<x>@" + D,
               "alice@exa mple.test", "/res", "alice@" + "d" * 1100]
        for i, to in enumerate(bad):
            with self.subTest(to=to[:40]):
                c.send("<message id='j%d' type='chat' to='%s'><body>x</body></message>" % (
                    i, xmpp.xml_escape(to)))
                self.expect_error_reply(c, "message", "jid-malformed", id="j%d" % i)
        # the session is still fine afterwards
        st = c.iq("<ping xmlns='urn:xmpp:ping'/>", to=D)
        self.assertEqual(st.get("type"), "result")

    def test_40_spoofed_from(self):
        c = self.login("alice", resource="spoof")
        W1.poll()
        W1.pending = []
        c.send("<message from='w2@%s/witness' to='%s' type='chat'><body>spoof</body>"
               "</message>" % (D, W1.jid))
        # RFC 6120 4.9.3.9 invalid-from, or the server stamps the true sender:
        # either way the forged address never reaches the recipient.
        try:
            st = W1.expect(lambda s: s.findtext(q(NS_CLIENT, "body")) == "spoof", timeout=2)
        except xmpp.ProtocolError:
            self.assert_stream_error(c, "invalid-from")
        else:
            self.assertEqual(st.get("from"), c.jid, xmpp.ET.tostring(st))

    def test_41_iq_without_id(self):
        c = self.login("alice", resource="noid")
        c.send("<iq type='get' to='%s'><ping xmlns='urn:xmpp:ping'/></iq>" % D)
        st = c.expect(lambda s: s.tag == q(NS_CLIENT, "iq"), timeout=5)
        self.assert_stanza_error(st, "bad-request")

    def test_42_iq_bad_type(self):
        c = self.login("alice", resource="badtype")
        c.send("<iq type='fetch' id='t1' to='%s'><ping xmlns='urn:xmpp:ping'/></iq>" % D)
        self.expect_error_reply(c, "iq", "bad-request", id="t1")
        c.send("<iq id='t2' to='%s'><ping xmlns='urn:xmpp:ping'/></iq>" % D)
        self.expect_error_reply(c, "iq", "bad-request", id="t2")

    def test_43_iq_child_count(self):
        # RFC 6120 8.2.3: a get/set carries exactly one payload child
        c = self.login("alice", resource="kids")
        c.send("<iq type='get' id='k0' to='%s'/>" % D)
        self.expect_error_reply(c, "iq", "bad-request", id="k0")
        c.send("<iq type='get' id='k2' to='%s'><ping xmlns='urn:xmpp:ping'/>"
               "<query xmlns='jabber:iq:version'/></iq>" % D)
        self.expect_error_reply(c, "iq", "bad-request", id="k2")

    def test_44_iq_unknown_namespace(self):
        # RFC 6120 8.4: an unknown payload namespace -> service-unavailable
        c = self.login("alice", resource="ns")
        st = c.iq("<query xmlns='urn:example:nothing'/>", to=D)
        self.assert_stanza_error(st, "service-unavailable")
        st = c.iq("<query xmlns='urn:example:nothing'/>", type_="set")
        self.assert_stanza_error(st, "service-unavailable")

    def test_45_message_to_absent_users(self):
        c = self.login("alice", resource="absent")
        # RFC 6121 8.5.2.2.1: a known user with no resource, no offline store
        c.send("<message id='m1' type='chat' to='dave@%s'><body>x</body></message>" % D)
        self.expect_error_reply(c, "message", "service-unavailable", id="m1")
        # RFC 6121 8.5.1: no such user; chatd bounces rather than ignores
        c.send("<message id='m2' type='chat' to='nobody@%s'><body>x</body></message>" % D)
        self.expect_error_reply(c, "message", "service-unavailable", id="m2")
        # RFC 6121 8.5.1 / 8.5.2.2.3 / 8.5.3.2.3: iq -> service-unavailable
        st = c.iq("<ping xmlns='urn:xmpp:ping'/>", to="nobody@" + D)
        self.assert_stanza_error(st, "service-unavailable")
        st = c.iq("<ping xmlns='urn:xmpp:ping'/>", to="w1@%s/no-such-resource" % D)
        self.assert_stanza_error(st, "service-unavailable")
        # RFC 6121 8.5.2.2.1: headline and error to nobody are silently dropped
        c.send("<message id='m3' type='headline' to='dave@%s'><body>x</body></message>" % D)
        c.send("<message id='m4' type='error' to='dave@%s'/>" % D)
        # RFC 6121 8.5.3.2.1: chat to an unknown resource of an online user
        # goes to the bare JID rules: delivered to the available resource
        c.send("<message id='m5' type='chat' to='w1@%s/gone'><body>re-routed</body>"
               "</message>" % D)
        st = W1.expect_message("re-routed", timeout=5)
        self.assertEqual(st.get("from"), c.jid)
        st = c.iq("<ping xmlns='urn:xmpp:ping'/>", to=D)
        self.assertEqual(st.get("type"), "result")
        left = [s for s in c.pending if s.get("id") in ("m3", "m4", "m5")]
        self.assertEqual(left, [], "reply to a stanza that must be ignored")

    def test_46_stanza_just_under_limit_delivered(self):
        c = self.login("alice", resource="limit")
        body = "k" * 60000
        c.message(W1.jid, body)
        st = W1.expect_message(body, timeout=10)
        self.assertEqual(st.get("from"), c.jid)

    def test_47_case_and_width_folding_of_jids(self):
        # nodeprep/nameprep (libidn): ALICE@EXAMPLE.TEST is alice@example.test
        c = self.login("alice", resource="fold")
        c.message("W1@EXAMPLE.TEST/witness", "folded")
        self.assertEqual(W1.expect_message("folded").get("from"), c.jid)


class Edges(Base):
    """Routing and negotiation edge cases (RFC 6120 / RFC 6121) on the same
    server, with the same after-case checks."""

    def drain(self, c, wait=0.3):
        time.sleep(wait)
        c.poll()
        got, c.pending = c.pending, []
        return got

    def test_e01_directed_presence_then_unavailable_on_close(self):
        # RFC 6121 4.6.3: entities that got directed presence get
        # unavailable presence when the sender goes offline
        a = self.login("alice", resource="dir")
        b = self.login("bob", resource="dir", presence=True)
        self.drain(b)
        a.send("<presence to='bob@%s'/>" % D)
        st = b.expect(lambda s: s.tag == q(NS_CLIENT, "presence"))
        self.assertEqual((st.get("from"), st.get("type")), (a.jid, None))
        a.close()
        st = b.expect(lambda s: s.tag == q(NS_CLIENT, "presence"))
        self.assertEqual((st.get("from"), st.get("type")), (a.jid, "unavailable"))

    def test_e02_bare_jid_skips_negative_priority(self):
        # RFC 6121 8.5.2.1.1: only resources with non-negative priority
        pos = self.login("bob", resource="pos", presence=True)
        neg = self.login("bob", resource="neg")
        neg.send("<presence><priority>-1</priority></presence>")
        a = self.login("alice", resource="np")
        time.sleep(0.2)
        a.message("bob@" + D, "to-bare")
        self.assertEqual(pos.expect_message("to-bare").get("from"), a.jid)
        self.assertEqual([m for m in self.drain(neg) if m.tag == q(NS_CLIENT, "message")], [])

    def test_e03_iq_to_bare_jid_is_answered_by_the_server(self):
        # RFC 6121 8.5.2.1.3: the server answers for the account
        b = self.login("bob", resource="iqb", presence=True)
        a = self.login("alice", resource="iqa")
        st = a.iq("<ping xmlns='urn:xmpp:ping'/>", to="bob@" + D)
        self.assertEqual((st.get("type"), st.get("from")), ("result", "bob@" + D))
        st = a.iq("<query xmlns='jabber:iq:version'/>", to="bob@" + D)
        self.assert_stanza_error(st, "service-unavailable")
        self.assertEqual([s for s in self.drain(b) if s.tag == q(NS_CLIENT, "iq")], [])

    def test_e04_iq_to_full_jid_is_delivered_and_answered(self):
        b = self.login("bob", resource="iqf")
        a = self.login("alice", resource="iqf")
        a.send("<iq type='get' id='v1' to='%s'><query xmlns='jabber:iq:version'/></iq>" % b.jid)
        st = b.expect(lambda s: s.tag == q(NS_CLIENT, "iq") and s.get("id") == "v1")
        self.assertEqual(st.get("from"), a.jid)
        b.send("<iq type='result' id='v1' to='%s'><query xmlns='jabber:iq:version'>"
               "<name>bob</name></query></iq>" % a.jid)
        st = a.expect(lambda s: s.tag == q(NS_CLIENT, "iq") and s.get("id") == "v1")
        self.assertEqual((st.get("type"), st.get("from")), ("result", b.jid))

    def test_e05_iq_result_to_server_gets_no_reply(self):
        # RFC 6120 8.2.3: never answer a result or an error
        a = self.login("alice", resource="res")
        a.send("<iq type='result' id='stray' to='%s'/>" % D)
        a.send("<iq type='error' id='stray2' to='%s'><error type='cancel'>"
               "<bad-request xmlns='%s'/></error></iq>" % (D, NS_STANZA_ERR))
        self.assertEqual(self.drain(a), [])

    def test_e06_message_without_to_goes_to_own_bare_jid(self):
        # RFC 6120 10.3.1
        a = self.login("alice", resource="self", presence=True)
        self.drain(a)
        a.send("<message type='chat'><body>to myself</body></message>")
        self.assertEqual(a.expect_message("to myself").get("from"), a.jid)

    def test_e07_payload_and_unicode_preserved(self):
        a = self.login("alice", resource="pl")
        a.send("<message to='%s' type='chat' xml:lang='fr'><body>h\U0001F600 &lt;&amp;&gt; "
               "\u00e9</body><x xmlns='urn:example:x' k='v&apos;'><y xmlns='urn:example:y'/>t"
               "</x></message>" % W1.jid)
        st = W1.expect(lambda s: s.find(q("urn:example:x", "x")) is not None)
        self.assertEqual(st.findtext(q(NS_CLIENT, "body")), "h\U0001F600 <&> \u00e9")
        x = st.find(q("urn:example:x", "x"))
        self.assertEqual(x.get("k"), "v'")
        self.assertIsNotNone(x.find(q("urn:example:y", "y")))
        self.assertEqual(x.find(q("urn:example:y", "y")).tail, "t")
        self.assertEqual(st.get("{http://www.w3.org/XML/1998/namespace}lang"), "fr")

    def test_e08_sasl_abort(self):
        import base64
        c = self.client()
        self.open_ok(c)
        c.send("<auth xmlns='%s' mechanism='SCRAM-SHA-256'>%s</auth>" % (
            NS_SASL, base64.b64encode(b"n,,n=alice,r=abcdefgh").decode()))
        st = c.expect(lambda s: s.tag.startswith("{%s}" % NS_SASL))
        self.assertEqual(st.tag, q(NS_SASL, "challenge"))
        c.send("<abort xmlns='%s'/>" % NS_SASL)
        st = c.expect(lambda s: s.tag.startswith("{%s}" % NS_SASL))
        self.assertEqual((st.tag, xmpp.condition(st, NS_SASL)),
                         (q(NS_SASL, "failure"), "aborted"))

    def test_e09_starttls_twice(self):
        # RFC 6120 5.4.2.2: <failure/>, close the stream and the connection
        c = self.client()
        self.open_ok(c)
        c.starttls(cafile=SRV.cert)
        c.send("<starttls xmlns='%s'/>" % NS_TLS)
        st = c.expect(lambda s: s.tag.startswith("{%s}" % NS_TLS))
        self.assertEqual(st.tag, q(NS_TLS, "failure"))
        self.assertIn(c.wait_end(10), ("eof", "reset"))
        self.assertTrue(c.closed_tag)

    def test_e10_preauth_stanza_limit(self):
        # before authentication only small negotiation elements are legal
        c = self.client()
        self.open_ok(c)
        c.send("<auth xmlns='%s' mechanism='SCRAM-SHA-256'>%s</auth>" % (NS_SASL, "A" * 10000))
        self.assert_stream_error(c, "policy-violation")

    def test_e11_too_many_attributes(self):
        c = self.login("alice", resource="attrs")
        c.send("<message to='bob@%s' %s/>" % (D, " ".join("a%d='x'" % i for i in range(70))))
        self.assert_stream_error(c, "policy-violation")

    def test_e12_pipelined_login(self):
        # auth, restarted header and bind in one write: the server resets
        # its parser at <success/> and goes on with the rest
        import base64
        c = self.client()
        self.open_ok(c)
        c.starttls(cafile=SRV.cert)
        c.send("<auth xmlns='%s' mechanism='PLAIN'>%s</auth>" % (
            NS_SASL, base64.b64encode(b"\0carol\0" + USERS["carol"].encode()).decode()) +
            xmpp.stream_header() + "<iq type='set' id='pb'><bind xmlns='%s'/></iq>" % xmpp.NS_BIND)
        st = c.expect(lambda s: s.tag == q(NS_CLIENT, "iq") and s.get("id") == "pb")
        self.assertEqual(st.get("type"), "result")
        jid = st.find(q(xmpp.NS_BIND, "bind")).findtext(q(xmpp.NS_BIND, "jid"))
        self.assertTrue(jid.startswith("carol@%s/" % D), jid)

    def test_e13_username_is_prepared(self):
        # SASL username through nodeprep: "Alice" is alice
        c = self.client()
        self.assertTrue(c.login("Alice", USERS["alice"]).startswith("alice@%s/" % D))

    def test_e14_generated_resources_are_unique(self):
        j = {self.login("dave").jid for _ in range(3)}
        self.assertEqual(len(j), 3)

    def test_e15_stanza_sent_byte_by_byte(self):
        c = self.login("alice", resource="bytes")
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for ch in ("<message to='%s' type='chat'><body>bytewise \u00e9</body></message>" %
                   W1.jid).encode():
            c.sock.send(bytes([ch]))
        self.assertEqual(W1.expect_message("bytewise \u00e9").get("from"), c.jid)

    def test_e16_remote_and_domain_addresses(self):
        a = self.login("alice", resource="remote")
        a.send("<message id='rd' to='x@other.test' type='chat'><body>x</body></message>")
        self.expect_error_reply(a, "message", "remote-server-not-found", id="rd")
        a.send("<message id='dm' to='%s' type='chat'><body>x</body></message>" % D)
        self.expect_error_reply(a, "message", "service-unavailable", id="dm")

    def test_e17_scram_sha1_login(self):
        c = self.client()
        self.open_ok(c)
        self.assertIn("SCRAM-SHA-1", c.mechanisms())
        self.assertEqual(c.auth_scram("bob", USERS["bob"], "SCRAM-SHA-1"), ("success", None))
        self.assertIsNotNone(c.open_stream())
        self.assertTrue(c.bind("sha1").startswith("bob@"))

    def test_e18_roster_get_is_empty(self):
        a = self.login("alice", resource="roster")
        st = a.iq("<query xmlns='jabber:iq:roster'/>")
        self.assertEqual(st.get("type"), "result")
        self.assertEqual(len(st.find(q("jabber:iq:roster", "query"))), 0)

    def test_e19_second_bind_on_one_stream(self):
        a = self.login("alice", resource="once")
        st = a.iq("<bind xmlns='%s'><resource>twice</resource></bind>" % xmpp.NS_BIND, "set")
        self.assert_stanza_error(st, "not-allowed")
        self.assertEqual(a.iq("<ping xmlns='urn:xmpp:ping'/>", to=D).get("type"), "result")

    def test_e20_disco_node_and_foreign_roster(self):
        a = self.login("alice", resource="disco")
        st = a.iq("<query xmlns='%s' node='nope'/>" % xmpp.NS_DISCO, to=D)
        self.assert_stanza_error(st, "item-not-found")
        st = a.iq("<query xmlns='jabber:iq:roster'/>", to="bob@" + D)
        self.assert_stanza_error(st, "forbidden")
        st = a.iq("<ping xmlns='urn:xmpp:ping'/>", to=D + "/some-resource")
        self.assert_stanza_error(st, "service-unavailable")

    def test_e21_groupchat_to_bare_jid_bounces(self):
        # RFC 6121 8.5.2.1.1: groupchat to a bare JID is never delivered
        a = self.login("alice", resource="gc")
        a.send("<message id='g1' type='groupchat' to='w1@%s'><body>x</body></message>" % D)
        self.expect_error_reply(a, "message", "service-unavailable", id="g1")
        self.assertEqual([m for m in self.drain(W1) if m.get("id") == "g1"], [])

    def test_e22_presence_of_other_resources(self):
        # RFC 6121 4.2.2 / 4.2.3: a new available resource learns about the
        # user's other available resources; when one drops, the others hear
        one = self.login("carol", resource="one", presence=True)
        self.drain(one)
        two = self.login("carol", resource="two", presence=True)
        two.expect(lambda s: s.tag == q(NS_CLIENT, "presence") and s.get("from") == one.jid)
        one.expect(lambda s: s.tag == q(NS_CLIENT, "presence") and s.get("from") == two.jid)
        two.abort()
        self.clients.remove(two)
        st = one.expect(lambda s: s.tag == q(NS_CLIENT, "presence") and
                        s.get("from") == two.jid)
        self.assertEqual(st.get("type"), "unavailable")

    def test_e23_header_namespace_after_idle(self):
        # a prefix declared on the stream header still applies to stanzas
        # after the connection sat idle (chatd frees the parser when idle
        # and replays the header's declarations)
        c = self.client()
        c.login("carol", USERS["carol"], resource="pfx",
                header_extra=" xmlns:ex='urn:example:pfx'")
        time.sleep(1.2)
        c.send("<message to='%s' type='chat'><body>pfx</body><ex:data ex:k='v'/></message>" %
               W1.jid)
        st = W1.expect_message("pfx")
        e = st.find(q("urn:example:pfx", "data"))
        self.assertIsNotNone(e)
        self.assertEqual(e.get(q("urn:example:pfx", "k")), "v")

    def test_e24_utf8_split_across_reads(self):
        c = self.login("carol", resource="split")
        c.send(b"<message to='" + W1.jid.encode() + b"' type='chat'><body>split \xf0\x9f")
        time.sleep(0.2)
        c.send(b"\x98\x80</body></message>")
        self.assertEqual(W1.expect_message("split \U0001F600").get("from"), c.jid)

    def test_e25_bind_bad_resource(self):
        # RFC 6120 7.7.2.1: a resource that fails resourceprep or is too long
        for r in ("r" * 1100, "a\u200eb"):
            with self.subTest(resource=r[:8]):
                c = self.client()
                self.open_ok(c)
                self.assertEqual(c.auth_scram("carol", USERS["carol"]), ("success", None))
                self.assertIsNotNone(c.open_stream())
                st = c.iq("<bind xmlns='%s'><resource>%s</resource></bind>" % (
                    xmpp.NS_BIND, r), "set")
                self.assert_stanza_error(st, "bad-request")


class SmallOutputBound(unittest.TestCase):
    def test_slow_consumer_with_bound_below_stanza_size(self):
        # --max-output smaller than one stanza: when the socket takes only
        # part of a stanza, the rest must still go out before the stream
        # error (a cut stanza makes the error unreadable)
        d = Chatd(users={"alice": "alice-pw", "bob": "bob-pw"},
                  args=["--max-output", "8192", "--ping-interval", "600", "--rate-limit", "0"])
        d.start()
        clients = []
        try:
            victim = d.client(rcvbuf=4096)
            clients.append(victim)
            victim.login("bob", "bob-pw", resource="v")
            sender = d.login("alice", resource="s")
            clients.append(sender)
            closed0 = d.closed_total("policy-violation")
            for i in range(400):  # at most 24 MB
                sender.message(victim.jid, "%d %s" % (i, "q" * 60000))
                sender.poll()
                sender.pending = []
                if i % 8 == 7 and d.closed_total("policy-violation") > closed0:
                    break
            harness.wait_for(lambda: d.closed_total("policy-violation") > closed0, 10,
                             what="victim closed")
            victim.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            victim.wait_end(20)
            self.assertIsNone(victim.reader.error, "stream cut before the error: %r" % bytes(
                victim.raw[-200:]))
            self.assertEqual(victim.stream_error, "policy-violation")
        finally:
            for c in clients:
                c.close()
            rc = d.stop()
        self.assertEqual(rc, 0)
        d.check_clean(self)


class FdExhaustion(unittest.TestCase):
    LOG_CAP = 5 << 20

    def test_connection_burst_past_the_open_files_limit(self):
        # A burst of connections beyond --max-connections while the open-files
        # limit is near: refused connections still hold a descriptor until
        # they are closed, so accept() and the HTTP endpoint can meet
        # EMFILE. chatd must neither spin nor flood its log there, and must
        # serve /healthz again (and new clients) once the burst is gone.
        # The limit is lowered with prlimit(1) to keep the case small.
        port, hport = harness.free_port(), harness.free_port()
        proc = harness.Proc(["prlimit", "--nofile=300:300", harness.binary("chatd"),
                             "--listen", "127.0.0.1:%d" % port,
                             "--http", "127.0.0.1:%d" % hport, "--auth-any",
                             "--domain", D, "--auth-timeout", "60"], name="chatd")
        socks = []
        try:
            harness.wait_for(lambda: harness.http_get(
                "http://127.0.0.1:%d/readyz" % hport)[0] == 200, 20, what="ready")
            self.assertIn("max_connections=200", proc.stderr())
            for i in range(400):
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                s.sendall(xmpp.stream_header().encode())
                socks.append(s)
                if i % 20 == 19:
                    size = os.path.getsize(proc.err_path)
                    self.assertLess(size, self.LOG_CAP, "log flood: %d bytes after %d "
                                    "connections: %s" % (size, i + 1, proc.stderr()[-400:]))
            # a probe or a metrics scrape arriving meanwhile (it may fail);
            # watched from here so that a flood is stopped at LOG_CAP
            import threading
            probe = threading.Thread(target=harness.http_get, daemon=True,
                                     args=("http://127.0.0.1:%d/healthz" % hport, 3))
            probe.start()
            while probe.is_alive() and os.path.getsize(proc.err_path) < self.LOG_CAP:
                time.sleep(0.01)
            if os.path.getsize(proc.err_path) >= self.LOG_CAP:
                with open(proc.err_path, "rb") as f:
                    f.seek(-600, os.SEEK_END)
                    self.fail("log flood while an HTTP request met EMFILE: ..." +
                              f.read().decode(errors="replace"))
            for s in socks:
                s.close()
            socks = []
            harness.wait_for(lambda: harness.http_get(
                "http://127.0.0.1:%d/healthz" % hport)[0] == 200, 10, what="/healthz")
            c = xmpp.Client(port)
            self.assertTrue(c.login("after", "after", mech="SCRAM-SHA-256").startswith("after@"))
            c.close()
            self.assertLess(os.path.getsize(proc.err_path), self.LOG_CAP, "log flood")
        finally:
            for s in socks:
                s.close()
            flooded = os.path.getsize(proc.err_path) >= self.LOG_CAP
            if flooded:
                proc.stop(signal.SIGKILL)
                with open(proc.err_path, "rb") as f:
                    head = f.read(3000).decode(errors="replace")
                    f.seek(-3000, os.SEEK_END)
                    tail = f.read().decode(errors="replace")
                os.truncate(proc.err_path, 0)  # do not leave hundreds of MB in /tmp
                with open(proc.err_path, "w") as f:
                    f.write(head + "\n[log cut by the test: flood]\n" + tail)
            rc = proc.stop()
        self.assertEqual(rc, 0)
        self.assertIsNone(proc.sanitizer_report())


class RequireTLS(unittest.TestCase):
    def test_no_sasl_before_starttls(self):
        d = Chatd(users={"alice": "alice-pw"}, args=["--require-tls"])
        d.start()
        c = None
        try:
            c = d.client()
            f = c.open_stream()
            tls = f.find(q(NS_TLS, "starttls"))
            self.assertIsNotNone(tls)
            self.assertIsNotNone(tls.find(q(NS_TLS, "required")))
            self.assertEqual(c.mechanisms(f), [])
            self.assertEqual(c.auth_scram("alice", "alice-pw"), ("failure", "encryption-required"))
            c.close()
            c = d.client()
            c.login("alice", "alice-pw", tls=True, cafile=d.cert, mech="PLAIN")
        finally:
            if c is not None:
                c.close()
            rc = d.stop()
        self.assertEqual(rc, 0)
        d.check_clean(self)


if __name__ == "__main__":
    unittest.main()
