"""XMPP over WebSocket (RFC 7395) in chatd, against an independent
WebSocket client (Python's websockets, Debian's python3-websockets): the
upgrade and its refusals, <open/>/<close/> framing, SASL, bind, routing to
and from TCP clients, limits, metrics by transport and drain."""
import os
import signal
import socket
import tempfile
import unittest

import harness
import wsxmpp
import xmpp

SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
STREAMS = "urn:ietf:params:xml:ns:xmpp-streams"
STREAM = "http://etherx.jabber.org/streams"


class WebSocketTest(unittest.TestCase):
    def setUp(self):
        why = wsxmpp.available()
        if why:
            self.skipTest(why)
        self.ports = os.path.join(tempfile.mkdtemp(prefix="rb-ws-"), "ports")
        self.d = xmpp.Chatd(auth_any=True, tls=True,
                            args=["--websocket", "127.0.0.1:0", "--ports-file", self.ports,
                                  "--max-stanza", "8192"])
        self.d.start()
        with open(self.ports) as f:
            lines = dict(l.strip().split("=", 1) for l in f if "=" in l)
        self.wsport = int(lines["websocket"].rsplit(":", 1)[1])
        self.clients = []

    def tearDown(self):
        for c in self.clients:
            c.close()
        self.d.stop()
        self.d.check_clean(self)

    def ws(self, **kw):
        c = wsxmpp.Client(self.wsport, domain=xmpp.DOMAIN, **kw)
        self.clients.append(c)
        return c

    def test_login_and_framing(self):
        c = self.ws()
        self.assertEqual(c.subprotocol, "xmpp")
        feats = c.open()
        # Every message parses by itself; features carry their namespace.
        self.assertEqual(feats.tag, "{%s}features" % STREAM)
        mechs = [m.text for m in feats.iter("{%s}mechanism" % SASL)]
        self.assertIn("SCRAM-SHA-1", mechs)
        # No STARTTLS over WebSocket (RFC 7395 3.6), though chatd has TLS.
        self.assertIsNone(feats.find("{urn:ietf:params:xml:ns:xmpp-tls}starttls"))
        self.assertTrue(c.auth_plain("alice", "pw").tag.endswith("success"))
        feats = c.open()
        self.assertIsNotNone(feats.find("{urn:ietf:params:xml:ns:xmpp-bind}bind"))
        c.bind("web")
        self.assertEqual(c.jid, "alice@%s/web" % xmpp.DOMAIN)
        # A stanza to itself comes back in jabber:client, in one message.
        c.send("<message xmlns='jabber:client' to='alice@%s/web' id='m1'>"
               "<body>hi</body></message>" % xmpp.DOMAIN)
        m = c.recv()
        self.assertEqual(m.tag, "{jabber:client}message")
        self.assertEqual(m.get("from"), "alice@%s/web" % xmpp.DOMAIN)
        # <close/> is answered with <close/>, then the WebSocket closes (1000).
        c.send(wsxmpp.CLOSE)
        code, msgs = c.closed()
        self.assertEqual(msgs, ['<close xmlns="%s" />' % wsxmpp.FRAMING])
        self.assertEqual(code, 1000)
        self.assertEqual(self.d.wait_metric('chatd_connections_closed_total{reason="client"}',
                                            1), 1)

    def test_routes_to_and_from_tcp(self):
        w = self.ws().login("alice")
        t = self.d.login("bob", "bob", mech="SCRAM-SHA-1")
        t.send("<presence/>")
        t.message("alice@" + xmpp.DOMAIN, "from tcp", id_="t1")
        m = w.expect(lambda e: e.tag == "{jabber:client}message")
        self.assertEqual(m.get("from"), t.jid)
        self.assertEqual(m.find("{jabber:client}body").text, "from tcp")
        w.send("<message xmlns='jabber:client' to='bob@%s' type='chat' id='w1'>"
               "<body>from web</body></message>" % xmpp.DOMAIN)
        got = t.expect(lambda st: st.tag == xmpp.q(xmpp.NS_CLIENT, "message"))
        self.assertEqual(got.get("from"), "alice@%s/web" % xmpp.DOMAIN)
        # XEP-0092 over WebSocket: the colour and instance a web page shows.
        w.send("<iq xmlns='jabber:client' type='get' to='%s' id='v1'>"
               "<query xmlns='jabber:iq:version'/></iq>" % xmpp.DOMAIN)
        v = w.expect(lambda e: e.get("id") == "v1")
        self.assertEqual(v.find(".//{jabber:iq:version}version").text.split()[0], "v-test")
        t.close()

    def test_metrics_by_transport(self):
        w = self.ws().login("alice")
        t = self.d.login("bob", "bob", mech="SCRAM-SHA-1")
        m = self.d.metrics()
        self.assertEqual(m["chatd_connections"], 2)
        self.assertEqual(m['chatd_connections_by_transport{transport="websocket"}'], 1)
        self.assertEqual(m['chatd_connections_by_transport{transport="tcp"}'], 1)
        self.assertEqual(m['chatd_connections_accepted_by_transport_total{transport="websocket"}'],
                         1)
        self.assertEqual(m["chatd_sessions"], 2)
        w.send(wsxmpp.CLOSE)
        w.closed()
        self.assertEqual(self.d.wait_metric(
            'chatd_connections_by_transport{transport="websocket"}', 0), 0)
        self.assertEqual(self.d.metric("chatd_connections"), 1)
        t.close()

    def raw_upgrade(self, request):
        s = socket.create_connection(("127.0.0.1", self.wsport), timeout=5)
        s.sendall(request.encode())
        data = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
        s.close()
        return data.decode(errors="replace")

    def test_upgrade_refusals(self):
        key = "dGhlIHNhbXBsZSBub25jZQ=="
        ok = ("Host: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
              "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n" % key)
        cases = [
            ("GET /other HTTP/1.1\r\n" + ok + "Sec-WebSocket-Protocol: xmpp\r\n\r\n", "404"),
            ("GET /xmpp-websocket HTTP/1.1\r\n" + ok + "\r\n", "400"),  # no subprotocol
            ("GET /xmpp-websocket HTTP/1.1\r\n" + ok + "Sec-WebSocket-Protocol: chat\r\n\r\n",
             "400"),
            ("GET /xmpp-websocket HTTP/1.1\r\nHost: x\r\n\r\n", "426"),  # not an upgrade
            ("POST /xmpp-websocket HTTP/1.1\r\n" + ok + "Content-Length: 0\r\n\r\n", "405"),
            ("GARBAGE\r\n\r\n", "400"),
            ("GET /xmpp-websocket HTTP/1.1\r\n" + "X-Pad: %s\r\n" % ("a" * 9000), "431"),
        ]
        for req, status in cases:
            resp = self.raw_upgrade(req)
            self.assertTrue(resp.startswith("HTTP/1.1 " + status), (req[:60], resp[:200]))
        # The RFC 6455 example key gets the RFC's accept value, and subprotocol xmpp.
        s = socket.create_connection(("127.0.0.1", self.wsport), timeout=5)
        s.sendall(("GET /xmpp-websocket?x=1 HTTP/1.1\r\n" + ok +
                   "Sec-WebSocket-Protocol: chat, xmpp\r\n\r\n").encode())
        resp = s.recv(4096).decode()
        s.close()
        self.assertIn("101 Switching Protocols", resp)
        self.assertIn("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", resp)
        self.assertIn("Sec-WebSocket-Protocol: xmpp", resp)
        self.assertEqual(self.d.metric("chatd_connections"), 0)

    def stream_error(self, c):
        code, msgs = c.closed()
        errs = [m for m in msgs if "stream:error" in m]
        self.assertEqual(msgs[-1], '<close xmlns="%s" />' % wsxmpp.FRAMING)
        self.assertEqual(code, 1000)
        el = wsxmpp.ET.fromstring(errs[0])
        return [ch.tag.split("}")[1] for ch in el if ch.tag.startswith("{%s}" % STREAMS)][0]

    def test_bad_input(self):
        # Half an element in a message.
        c = self.ws()
        c.open()
        c.send("<auth xmlns='%s' mechanism='PLAIN'>" % SASL)
        self.assertEqual(self.stream_error(c), "bad-format")
        # A stanza before <open/>.
        c = self.ws()
        c.send("<message xmlns='jabber:client'/>")
        self.assertEqual(self.stream_error(c), "bad-format")
        # <open/> in another namespace.
        c = self.ws()
        c.send("<open xmlns='jabber:client' to='%s' version='1.0'/>" % xmpp.DOMAIN)
        self.assertEqual(self.stream_error(c), "bad-format")
        # A binary message.
        c = self.ws()
        c.open()
        c.send_binary(b"<presence/>")
        self.assertEqual(self.stream_error(c), "bad-format")
        # Stanzas before authentication: the same rules as TCP.
        c = self.ws()
        c.open()
        c.send("<message xmlns='jabber:client' to='x@%s'/>" % xmpp.DOMAIN)
        self.assertEqual(self.stream_error(c), "not-authorized")
        # The stanza size limit (--max-stanza 8192, smaller before login).
        c = self.ws().login("big")
        c.send("<message xmlns='jabber:client' to='x@%s'><body>%s</body></message>"
               % (xmpp.DOMAIN, "x" * 9000))
        self.assertEqual(self.stream_error(c), "policy-violation")
        # Over the WebSocket message bound: wslay closes with 1009.
        c = self.ws().login("huge")
        c.send("<message xmlns='jabber:client'><body>%s</body></message>" % ("x" * 20000))
        code, _ = c.closed()
        self.assertEqual(code, 1009)
        harness.wait_for(lambda: self.d.metric("chatd_connections") == 0, what="all closed")
        self.assertTrue(self.d.alive())

    def test_drain(self):
        w = self.ws().login("alice")
        t = self.d.login("bob", "bob", mech="SCRAM-SHA-1")
        self.d.proc.signal(signal.SIGTERM)
        harness.wait_for(lambda: self.d.http("/readyz")[0] == 503, what="draining")
        # Established WebSocket sessions are kept and still talk...
        t.message("alice@" + xmpp.DOMAIN, "still here", id_="d1")
        m = w.expect(lambda e: e.tag == "{jabber:client}message")
        self.assertEqual(m.find("{jabber:client}body").text, "still here")
        # ...new ones are refused: the WebSocket listener closed with the other.
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", self.wsport), timeout=2).close()
        # The second signal: system-shutdown, said over the WebSocket.
        self.d.proc.signal(signal.SIGTERM)
        self.assertEqual(self.stream_error(w), "system-shutdown")
        t.close()


if __name__ == "__main__":
    unittest.main()
