"""An XMPP over WebSocket (RFC 7395) test client: Python's `websockets`
(Debian's python3-websockets, an implementation nobody here wrote) for the
WebSocket layer, driven synchronously on a private asyncio loop.

    c = wsxmpp.Client(port)        # raises unittest.SkipTest without websockets
    c.open(); c.auth_plain("alice", "pw"); c.open(); c.bind("web")
    c.send("<message xmlns='jabber:client' to='bob@localhost'><body>hi</body></message>")
    el = c.recv()                            # one message = one element (ElementTree)
"""
import asyncio
import base64
import sys
import unittest
import xml.etree.ElementTree as ET

try:
    import websockets
except ImportError:  # Debian's package lives beside the system Python's
    sys.path.append("/usr/lib/python3/dist-packages")
    try:
        import websockets
    except ImportError:
        websockets = None

FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
CLOSE = "<close xmlns='%s'/>" % FRAMING


_loop = None


def _shared_loop():
    """One loop for every client of the process (websockets 10 looks up the
    current loop itself)."""
    global _loop
    if _loop is None or _loop.is_closed():
        _loop = asyncio.new_event_loop()
        asyncio.set_event_loop(_loop)
    return _loop


def available():
    return None if websockets else ("python3-websockets is not installed "
                                    "(scripts/deps.sh check installs it)")


def q(ns, name):
    return "{%s}%s" % (ns, name)


class Client:
    def __init__(self, port, path="/xmpp-websocket", subprotocols=("xmpp",), timeout=5.0,
                 domain="localhost"):
        self.domain = domain
        if not websockets:
            raise unittest.SkipTest(available())
        self.timeout = timeout
        self.loop = _shared_loop()
        self.ws = self.run(websockets.connect(
            "ws://127.0.0.1:%d%s" % (port, path), subprotocols=list(subprotocols),
            max_size=None, open_timeout=timeout, close_timeout=timeout))
        self.jid = None

    def run(self, coro):
        return self.loop.run_until_complete(asyncio.wait_for(coro, self.timeout))

    @property
    def subprotocol(self):
        return self.ws.subprotocol

    def send(self, text):
        self.run(self.ws.send(text))

    def send_binary(self, data):
        self.run(self.ws.send(data))

    def recv_text(self, timeout=None):
        """The next message as text."""
        return self.loop.run_until_complete(
            asyncio.wait_for(self.ws.recv(), timeout or self.timeout))

    def recv(self, timeout=None):
        """The next message, parsed by itself (RFC 7395 3.3.3 says it must be)."""
        return ET.fromstring(self.recv_text(timeout))

    def expect(self, pred, timeout=None, what="element"):
        while True:
            el = self.recv(timeout)
            if pred(el):
                return el

    def open(self):
        """<open/> and the server's <open/> and features; returns the features."""
        self.send("<open xmlns='%s' to='%s' version='1.0'/>" % (FRAMING, self.domain))
        opened = self.recv()
        assert opened.tag == q(FRAMING, "open"), opened.tag
        self.stream_id = opened.get("id")
        return self.recv()

    def auth_plain(self, user, password):
        self.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>%s</auth>"
                  % base64.b64encode(("\0%s\0%s" % (user, password)).encode()).decode())
        return self.recv()

    def bind(self, resource):
        self.send("<iq xmlns='jabber:client' type='set' id='bind1'>"
                  "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>%s</resource>"
                  "</bind></iq>" % resource)
        r = self.recv()
        self.jid = r.find(".//{urn:ietf:params:xml:ns:xmpp-bind}jid").text
        return r

    def login(self, user, password="pw", resource="web", presence=True):
        """Logs in and binds; then available presence (messages to the bare
        JID reach it), unless presence is False."""
        self.open()
        ok = self.auth_plain(user, password)
        assert ok.tag.endswith("success"), ok.tag
        self.open()
        self.bind(resource)
        if presence:
            self.send("<presence xmlns='jabber:client'/>")
        return self

    def closed(self, timeout=None):
        """Waits for the WebSocket close; returns (code, every message before it)."""
        msgs = []
        try:
            while True:
                msgs.append(self.recv_text(timeout))
        except websockets.ConnectionClosed:
            pass
        return self.ws.close_code, msgs

    def close(self):
        try:
            self.run(self.ws.close())
        except Exception:
            pass
