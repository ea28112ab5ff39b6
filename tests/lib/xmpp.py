"""A small raw-socket XMPP client for the integration tests, and helpers that
start a chatd on free loopback ports with a users file and a self-signed
certificate.

The client speaks the protocol byte by byte so tests can send anything,
including what a well-behaved library never would: it opens streams, reads
features, does STARTTLS, SASL PLAIN and SCRAM-SHA-1/256 (RFC 5802/7677, with
the server signature checked), binds, sends and awaits stanzas, and reports
how the server ended the stream (stream error condition, closing tag, EOF or
reset). The server's stream is parsed incrementally with expat from the
stdlib; stanzas come back as xml.etree.ElementTree elements with
'{namespace}name' tags.

Every wait is bounded by a timeout.
"""
import base64
import hashlib
import hmac
import os
import re
import select
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
import xml.parsers.expat

import harness

DOMAIN = "example.test"

NS_STREAM = "http://etherx.jabber.org/streams"
NS_CLIENT = "jabber:client"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"
NS_SESSION = "urn:ietf:params:xml:ns:xmpp-session"
NS_STREAM_ERR = "urn:ietf:params:xml:ns:xmpp-streams"
NS_STANZA_ERR = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_PING = "urn:xmpp:ping"
NS_VERSION = "jabber:iq:version"
NS_ROSTER = "jabber:iq:roster"
NS_DISCO = "http://jabber.org/protocol/disco#info"
NS_SM = "urn:xmpp:sm:3"


def q(ns, name):
    """ElementTree tag for name in namespace ns."""
    return "{%s}%s" % (ns, name)


def xml_escape(s):
    return (s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("'", "&apos;").replace('"', "&quot;"))


def stream_header(to=DOMAIN, version="1.0", ns=NS_CLIENT, stream_ns=NS_STREAM,
                  decl=True, extra=""):
    """The opening stream header a client sends; None drops an attribute."""
    attrs = ""
    if ns is not None:
        attrs += " xmlns='%s'" % ns
    if stream_ns is not None:
        attrs += " xmlns:stream='%s'" % stream_ns
    if to is not None:
        attrs += " to='%s'" % to
    if version is not None:
        attrs += " version='%s'" % version
    return ("<?xml version='1.0'?>" if decl else "") + \
        "<stream:stream%s%s>" % (attrs, extra)


def condition(err, ns):
    """Name of the defined condition child of an <error/> (or stream error)
    element in namespace ns, or None."""
    if err is None:
        return None
    for c in err:
        if c.tag.startswith("{%s}" % ns) and not c.tag.endswith("}text"):
            return c.tag.split("}", 1)[1]
    return None


def stanza_error(st):
    """(type, condition) of an error stanza, or None when it is no error."""
    if st.get("type") != "error":
        return None
    e = st.find(q(NS_CLIENT, "error"))
    if e is None:
        return ("", None)
    return (e.get("type", ""), condition(e, NS_STANZA_ERR))


class ProtocolError(Exception):
    pass


class _Restart(Exception):
    pass


class StreamReader:
    """Incremental expat parser of the server's side of a stream. Collects
    events: ('open', attrs), ('stanza', Element), ('close',).

    After <success/> (SASL) or <proceed/> (STARTTLS) the server starts a
    new stream, possibly in the same read: the parser is replaced right
    after that element and the rest of the bytes go to the new one (for
    <proceed/> they are kept in `leftover`: they would be TLS)."""

    RESTART = ("{%s}success" % "urn:ietf:params:xml:ns:xmpp-sasl",
               "{%s}proceed" % "urn:ietf:params:xml:ns:xmpp-tls")

    def __init__(self):
        self.events = []
        self.error = None
        self.leftover = b""
        self.reset()

    def reset(self):
        p = xml.parsers.expat.ParserCreate(namespace_separator="}")
        p.StartElementHandler = self._start
        p.EndElementHandler = self._end
        p.CharacterDataHandler = self._text
        p.buffer_text = True
        self.p = p
        self.depth = 0
        self.stack = []
        self.fed = 0        # bytes given to this parser before the current chunk
        self.chunk = b""
        self.restart_at = None

    @staticmethod
    def _tag(name):
        return "{" + name if "}" in name else name

    def _start(self, name, attrs):
        tag = self._tag(name)
        attrs = {self._tag(k): v for k, v in attrs.items()}
        self.depth += 1
        if self.depth == 1:
            self.events.append(("open", tag, attrs))
        elif self.depth == 2:
            self.stack = [ET.Element(tag, attrs)]
        else:
            self.stack.append(ET.SubElement(self.stack[-1], tag, attrs))

    def _end(self, name):
        self.depth -= 1
        if self.depth == 0:
            self.events.append(("close",))
        elif self.depth == 1:
            st = self.stack[0]
            self.events.append(("stanza", st))
            self.stack = []
            if st.tag in self.RESTART:
                # expat reports the end of <x/> after its '/>', the end of
                # <x>..</x> at its '</'
                rel = max(self.p.CurrentByteIndex - self.fed, 0)
                if self.chunk.startswith(b"</", rel):
                    rel = self.chunk.index(b">", rel) + 1
                self.restart_at = (st.tag, rel)
                raise _Restart()
        else:
            self.stack.pop()

    def _text(self, data):
        if not self.stack:
            return  # whitespace between stanzas
        cur = self.stack[-1]
        if len(cur):
            cur[-1].tail = (cur[-1].tail or "") + data
        else:
            cur.text = (cur.text or "") + data

    def feed(self, data):
        if self.error:
            return
        self.chunk = data
        try:
            self.p.Parse(data, False)
            self.fed += len(data)
        except _Restart:
            tag, off = self.restart_at
            rest = data[off:]
            self.reset()
            if tag.endswith("}proceed"):
                self.leftover = rest
            elif rest:
                self.feed(rest)
        except xml.parsers.expat.ExpatError as e:
            self.error = str(e)


class Client:
    """One raw XMPP client connection to chatd.

    After the server ends the stream, `end` says how: 'eof' (orderly TCP
    close), 'reset', 'tls-error' (a broken TLS record; `end_detail` says
    which), or None while the connection is open; `stream_error`
    holds the condition of a <stream:error/> the server sent, and
    `closed_tag` whether </stream:stream> arrived.
    """

    def __init__(self, port, host="127.0.0.1", domain=DOMAIN, timeout=5.0,
                 rcvbuf=None, source=None):
        self.domain = domain
        self.timeout = timeout
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if source:
            s.bind((source, 0))
        s.settimeout(timeout)
        s.connect((host, port))
        self.sock = s
        self.reader = StreamReader()
        self.pending = []
        self.header = None
        self.features = None
        self.stream_error = None
        self.stream_error_text = None
        self.closed_tag = False
        self.end = None
        self.end_detail = None
        self.closed = False         # we closed the socket
        self.jid = None
        self.raw = bytearray()      # everything received (for messages)
        self.auto_pong = True
        self._seq = 0
        # XEP-0198: sm_h counts the stanzas received once counting is on
        # (sm_enable/sm_resume turn it on); the server's <r/> requests are
        # counted in sm_requests and answered at once when sm_auto_ack.
        self.sm_counting = False
        self.sm_h = 0
        self.sm_requests = 0
        self.sm_auto_ack = False

    # ---- transport -------------------------------------------------------

    def send(self, data):
        """Sends str or bytes. Returns False when the server already closed
        (EPIPE/ECONNRESET) instead of raising."""
        if isinstance(data, str):
            data = data.encode()
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False
        except ssl.SSLError:
            return False

    def _recv_once(self, timeout):
        """Reads what is available (waiting up to timeout) and parses it.
        Returns False when nothing arrived in time."""
        if self.end or self.closed:
            return False
        if not (isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()):
            r, _, _ = select.select([self.sock], [], [], max(timeout, 0))
            if not r:
                return False
        try:
            self.sock.settimeout(max(timeout, 0.01))
            data = self.sock.recv(65536)
        except ConnectionResetError:
            self.end = "reset"
            return True
        except socket.timeout:
            return False
        except ssl.SSLWantReadError:
            return False
        except ssl.SSLEOFError:
            self.end = "eof"  # TCP FIN without TLS close_notify
            return True
        except (ssl.SSLError, OSError) as e:
            self.end = "reset" if "reset" in str(e).lower() else "tls-error"
            self.end_detail = repr(e)
            return True
        if not data:
            self.end = "eof"
            return True
        self.raw += data
        self.reader.feed(data)
        self._drain_events()
        return True

    def _drain_events(self):
        for ev in self.reader.events:
            if ev[0] == "open":
                self.header = ev[2]
            elif ev[0] == "close":
                self.closed_tag = True
            else:
                st = ev[1]
                if self.sm_counting and st.tag in (q(NS_CLIENT, "message"),
                                                   q(NS_CLIENT, "presence"),
                                                   q(NS_CLIENT, "iq")):
                    self.sm_h = (self.sm_h + 1) % (1 << 32)
                if st.tag == q(NS_SM, "r"):
                    self.sm_requests += 1
                    if self.sm_auto_ack:
                        self.send("<a xmlns='%s' h='%d'/>" % (NS_SM, self.sm_h))
                    continue
                if st.tag == q(NS_STREAM, "error"):
                    self.stream_error = condition(st, NS_STREAM_ERR)
                    t = st.find(q(NS_STREAM_ERR, "text"))
                    self.stream_error_text = t.text if t is not None else None
                elif (self.auto_pong and st.tag == q(NS_CLIENT, "iq") and
                      st.get("type") == "get" and
                      st.find(q(NS_PING, "ping")) is not None):
                    self.send("<iq type='result' id='%s'%s/>" % (
                        xml_escape(st.get("id", "")),
                        (" to='%s'" % xml_escape(st.get("from")))
                        if st.get("from") else ""))
                else:
                    self.pending.append(st)
        self.reader.events = []

    def next_stanza(self, timeout=None):
        """The next stanza (not a stream error), or None on timeout or when
        the connection ended."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self.pending:
            left = deadline - time.monotonic()
            if left <= 0 or self.end:
                return None
            self._recv_once(left)
        return self.pending.pop(0)

    def poll(self):
        """Reads whatever has arrived, without waiting; returns the number of
        stanzas queued."""
        while self._recv_once(0):
            if self.end:
                break
        return len(self.pending)

    def expect(self, pred, timeout=None, what="stanza"):
        """The first received stanza for which pred(st) holds; others stay
        queued. Raises ProtocolError on timeout or end of stream."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            for i, st in enumerate(self.pending):
                if pred(st):
                    return self.pending.pop(i)
            left = deadline - time.monotonic()
            if left <= 0:
                raise ProtocolError("timed out waiting for %s; got %s" % (
                    what, [ET.tostring(s)[:200] for s in self.pending]))
            if self.end or self.stream_error:
                raise ProtocolError("stream ended (%s, stream error %s) waiting for %s" % (
                    self.end, self.stream_error, what))
            self._recv_once(left)

    def wait_end(self, timeout=None):
        """Reads until the server closes the connection. Returns end
        ('eof'/'reset'/'tls-error'), or None when it stayed open past timeout."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self.end:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._recv_once(left)
        return self.end

    def wait_stream_error(self, timeout=None):
        """Reads until the connection ends; returns the stream error
        condition (None when there was none)."""
        self.wait_end(timeout)
        return self.stream_error

    def close(self, send_close=True):
        if send_close and not self.end and not self.closed:
            self.send("</stream:stream>")
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass

    def abort(self):
        """Closes the socket with a TCP RST (SO_LINGER 0)."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                 b"\x01\x00\x00\x00\x00\x00\x00\x00")
        except OSError:
            pass
        self.closed = True
        self.sock.close()

    # ---- stream negotiation ---------------------------------------------

    def open_stream(self, header=None, timeout=None, **kw):
        """Sends a stream header and waits for the server's header and
        features. Returns the features element (None if the stream ended)."""
        self.header = None
        self.features = None
        self.send(header if header is not None else stream_header(to=self.domain, **kw))
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while self.features is None:
            for i, st in enumerate(self.pending):
                if st.tag == q(NS_STREAM, "features"):
                    self.features = self.pending.pop(i)
                    return self.features
            if self.end or self.stream_error or time.monotonic() > deadline:
                return None
            self._recv_once(deadline - time.monotonic())
        return self.features

    def mechanisms(self, features=None):
        f = features if features is not None else self.features
        m = f.find(q(NS_SASL, "mechanisms")) if f is not None else None
        return [e.text for e in m.findall(q(NS_SASL, "mechanism"))] if m is not None else []

    def starttls(self, cafile=None, verify=True, server_hostname=DOMAIN, reopen=True):
        """STARTTLS (RFC 6120 5.4): <starttls/>, <proceed/>, handshake, new
        stream. Returns the new features."""
        self.send("<starttls xmlns='%s'/>" % NS_TLS)
        st = self.expect(lambda s: s.tag.startswith("{%s}" % NS_TLS), what="proceed")
        if st.tag != q(NS_TLS, "proceed"):
            raise ProtocolError("starttls answered with %s" % st.tag)
        self.wrap_tls(cafile, verify, server_hostname)
        return self.open_stream() if reopen else None

    def wrap_tls(self, cafile=None, verify=True, server_hostname=DOMAIN):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if verify and cafile:
            ctx.load_verify_locations(cafile)
        else:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        self.sock.settimeout(self.timeout)
        self.sock = ctx.wrap_socket(self.sock, server_hostname=server_hostname)

    def _sasl_result(self, timeout=None):
        st = self.expect(lambda s: s.tag.startswith("{%s}" % NS_SASL), timeout=timeout,
                         what="SASL reply")
        return st

    def auth_plain(self, user, password, authzid=""):
        """SASL PLAIN. Returns ('success', None) or ('failure', condition)."""
        msg = ("%s\0%s\0%s" % (authzid, user, password)).encode()
        self.send("<auth xmlns='%s' mechanism='PLAIN'>%s</auth>" % (
            NS_SASL, base64.b64encode(msg).decode()))
        st = self._sasl_result()
        return self._finish_auth(st)

    def _finish_auth(self, st):
        name = st.tag.split("}", 1)[1]
        if name == "success":
            return ("success", None)  # the reader restarted the parser
        if name == "failure":
            return ("failure", condition(st, NS_SASL))
        raise ProtocolError("unexpected SASL element %s" % name)

    def auth_scram(self, user, password, mech="SCRAM-SHA-256", tamper=None, gs2=None,
                   final_cbind=None, final_nonce=None):
        """SASL SCRAM-SHA-1/-256 (RFC 5802, RFC 7677). The server signature
        is checked. For hostile tests: gs2 replaces the GS2 header ("n,,"),
        final_cbind / final_nonce the c= / r= values of the final message
        (the proof is computed over what is sent), and tamper(client_final)
        alters the final message after the proof.
        Returns ('success', None) or ('failure', condition)."""
        h = {"SCRAM-SHA-1": "sha1", "SCRAM-SHA-256": "sha256"}[mech]
        cnonce = base64.b64encode(os.urandom(18)).decode()
        uname = user.replace("=", "=3D").replace(",", "=2C")
        first_bare = "n=%s,r=%s" % (uname, cnonce)
        gs2 = "n,," if gs2 is None else gs2
        self.send("<auth xmlns='%s' mechanism='%s'>%s</auth>" % (
            NS_SASL, mech, base64.b64encode((gs2 + first_bare).encode()).decode()))
        st = self._sasl_result()
        if st.tag != q(NS_SASL, "challenge"):
            return self._finish_auth(st)
        server_first = base64.b64decode(st.text or "").decode()
        attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
        if not attrs["r"].startswith(cnonce):
            raise ProtocolError("server nonce does not extend ours")
        salt = base64.b64decode(attrs["s"])
        iters = int(attrs["i"])
        salted = hashlib.pbkdf2_hmac(h, password.encode(), salt, iters)
        client_key = hmac.new(salted, b"Client Key", h).digest()
        stored_key = hashlib.new(h, client_key).digest()
        final_wo_proof = "c=%s,r=%s" % (
            final_cbind or base64.b64encode(gs2.encode()).decode(), final_nonce or attrs["r"])
        auth_msg = ",".join([first_bare, server_first, final_wo_proof]).encode()
        client_sig = hmac.new(stored_key, auth_msg, h).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, client_sig))
        final = "%s,p=%s" % (final_wo_proof, base64.b64encode(proof).decode())
        if tamper:
            final = tamper(final)
        self.send("<response xmlns='%s'>%s</response>" % (
            NS_SASL, base64.b64encode(final.encode()).decode()))
        st = self._sasl_result()
        server_key = hmac.new(salted, b"Server Key", h).digest()
        want_v = base64.b64encode(hmac.new(server_key, auth_msg, h).digest()).decode()
        if st.tag == q(NS_SASL, "challenge"):
            # server-final as a challenge (RFC 6120 6.3.10 allows both)
            server_final = base64.b64decode(st.text or "").decode()
            self.send("<response xmlns='%s'/>" % NS_SASL)
            st = self._sasl_result()
        elif st.tag == q(NS_SASL, "success"):
            server_final = base64.b64decode(st.text or "").decode() if st.text else ""
        else:
            return self._finish_auth(st)
        res = self._finish_auth(st)
        if res[0] == "success" and server_final != "v=" + want_v:
            raise ProtocolError("bad server signature %r" % server_final)
        return res

    def next_id(self):
        self._seq += 1
        return "r%d" % self._seq

    def iq(self, body, type_="get", to=None, timeout=None):
        """Sends an iq and returns the reply with the same id."""
        iid = self.next_id()
        self.send("<iq type='%s' id='%s'%s>%s</iq>" % (
            type_, iid, (" to='%s'" % xml_escape(to)) if to else "", body))
        return self.expect(lambda s: s.tag == q(NS_CLIENT, "iq") and s.get("id") == iid,
                           timeout=timeout, what="iq reply %s" % iid)

    def bind(self, resource=None):
        body = "<bind xmlns='%s'>%s</bind>" % (
            NS_BIND, "<resource>%s</resource>" % xml_escape(resource) if resource else "")
        st = self.iq(body, "set")
        if st.get("type") != "result":
            raise ProtocolError("bind failed: %s" % (stanza_error(st),))
        self.jid = st.find(q(NS_BIND, "bind")).find(q(NS_BIND, "jid")).text
        return self.jid

    def login(self, user, password, mech="SCRAM-SHA-256", tls=False, cafile=None,
              resource=None, session=True, presence=False, header_extra=""):
        """Full login: stream, optional STARTTLS, SASL, restart, bind (and the
        RFC 3921 session when offered). Returns the bound JID. header_extra
        goes into every stream header (e.g. namespace declarations)."""
        f = self.open_stream(extra=header_extra)
        if f is None:
            raise ProtocolError("no features (stream error %s)" % self.stream_error)
        if tls:
            self.starttls(cafile=cafile, verify=cafile is not None, reopen=False)
            f = self.open_stream(extra=header_extra)
        if mech == "PLAIN":
            res = self.auth_plain(user, password)
        else:
            res = self.auth_scram(user, password, mech)
        if res[0] != "success":
            raise ProtocolError("auth failed: %s" % (res,))
        f = self.open_stream(extra=header_extra)
        if f is None or f.find(q(NS_BIND, "bind")) is None:
            raise ProtocolError("no bind feature after auth")
        jid = self.bind(resource)
        sess = f.find(q(NS_SESSION, "session"))
        if session and sess is not None and sess.find(q(NS_SESSION, "optional")) is None:
            st = self.iq("<session xmlns='%s'/>" % NS_SESSION, "set")
            if st.get("type") != "result":
                raise ProtocolError("session failed")
        if presence:
            self.send("<presence/>")
        return jid

    def authenticate(self, user, password, mech="SCRAM-SHA-256"):
        """Stream, SASL and the restarted stream, without binding (for a
        XEP-0198 resumption). Returns the features after SASL."""
        if self.open_stream() is None:
            raise ProtocolError("no features (stream error %s)" % self.stream_error)
        res = self.auth_plain(user, password) if mech == "PLAIN" else \
            self.auth_scram(user, password, mech)
        if res[0] != "success":
            raise ProtocolError("auth failed: %s" % (res,))
        return self.open_stream()

    def sm_enable(self, resume=True, max_=None, timeout=None):
        """XEP-0198 <enable/>; returns the <enabled/> or <failed/> element
        and starts counting received stanzas."""
        self.send("<enable xmlns='%s'%s%s/>" % (
            NS_SM, " resume='true'" if resume else "",
            (" max='%s'" % max_) if max_ is not None else ""))
        st = self.expect(lambda s: s.tag in (q(NS_SM, "enabled"), q(NS_SM, "failed")),
                         timeout=timeout, what="enabled or failed")
        if st.tag == q(NS_SM, "enabled"):
            self.sm_counting = True
            self.sm_h = 0
        return st

    def sm_resume(self, previd, h, timeout=None):
        """XEP-0198 <resume/> (after authenticate()); returns <resumed/> or
        <failed/>. Counting goes on from h."""
        self.send("<resume xmlns='%s' previd='%s' h='%d'/>" % (NS_SM, xml_escape(previd), h))
        st = self.expect(lambda s: s.tag in (q(NS_SM, "resumed"), q(NS_SM, "failed")),
                         timeout=timeout, what="resumed or failed")
        if st.tag == q(NS_SM, "resumed"):
            self.sm_counting = True
            self.sm_h = h
        return st

    def sm_ack(self):
        """Sends <a h/> with what was received so far."""
        self.send("<a xmlns='%s' h='%d'/>" % (NS_SM, self.sm_h))

    def sm_request(self, timeout=None):
        """Sends <r/>; returns the h of the server's <a/>."""
        self.send("<r xmlns='%s'/>" % NS_SM)
        st = self.expect(lambda s: s.tag == q(NS_SM, "a"), timeout=timeout, what="<a/>")
        return int(st.get("h"))

    def message(self, to, body, type_="chat", id_=None):
        self.send("<message to='%s' type='%s'%s><body>%s</body></message>" % (
            xml_escape(to), type_, (" id='%s'" % id_) if id_ else "", xml_escape(body)))

    def expect_message(self, body=None, timeout=None):
        return self.expect(lambda s: s.tag == q(NS_CLIENT, "message") and
                           s.get("type") != "error" and
                           (body is None or s.findtext(q(NS_CLIENT, "body")) == body),
                           timeout=timeout, what="message %r" % body)


def bare(jid):
    return jid.split("/", 1)[0]


# ---- chatd under test -------------------------------------------------------

_cert_cache = {}


def make_cert(directory=None):
    """A self-signed certificate for DOMAIN (made once per process with the
    openssl command). Returns (certfile, keyfile)."""
    if "pair" in _cert_cache:
        return _cert_cache["pair"]
    d = directory or tempfile.mkdtemp(prefix="rb-cert-")
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                    "-subj", "/CN=" + DOMAIN, "-addext", "subjectAltName=DNS:" + DOMAIN,
                    "-days", "1", "-keyout", key, "-out", cert],
                   check=True, capture_output=True, timeout=60)
    _cert_cache["pair"] = (cert, key)
    return cert, key


def rss_kb(pid):
    """VmRSS of a process in KiB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise ValueError("no VmRSS")


class Chatd:
    """A chatd on free loopback ports with a temp users file and certificate.

        d = Chatd(users={"alice": "pw"}, args=["--auth-timeout", "2"])
        d.start()
        ... d.port, d.http_port, d.metrics() ...
        rc = d.stop()        # SIGTERM, exit code
        d.check_clean(self)  # no sanitizer report
    """

    def __init__(self, users=None, args=(), tls=True, auth_any=False, domain=DOMAIN,
                 env=None, instance="test-0", version_label="v-test", name="chatd"):
        self.users = users or {}
        self.args = list(args)
        self.tls = tls
        self.auth_any = auth_any
        self.domain = domain
        self.env = env
        self.instance = instance
        self.version_label = version_label
        self.name = name
        self.dir = tempfile.mkdtemp(prefix="rb-chatd-")
        self.users_file = os.path.join(self.dir, "users")
        self.cert = self.key = None
        self.port = self.http_port = None
        self.proc = None
        self.passwd_errors = []
        self.added = set()

    def add_user(self, user, password):
        p = subprocess.run([harness.binary("chatd"), "passwd", "--users", self.users_file, user],
                           input=password + "\n", capture_output=True, text=True, timeout=60)
        if harness.SANITIZER_RE.search(p.stderr):
            self.passwd_errors.append(p.stderr)
        if p.returncode != 0:
            raise RuntimeError("chatd passwd failed (%d): %s" % (p.returncode, p.stderr))

    def argv(self):
        a = [harness.binary("chatd"), "--listen", "127.0.0.1:%d" % self.port,
             "--http", "127.0.0.1:%d" % self.http_port, "--domain", self.domain]
        if self.instance is not None:
            a += ["--instance", self.instance]
        if self.version_label is not None:
            a += ["--version-label", self.version_label]
        if self.users:
            a += ["--users", self.users_file]
        if self.auth_any:
            a += ["--auth-any"]
        if self.tls:
            a += ["--tls-cert", self.cert, "--tls-key", self.key]
        return a + self.args

    def start(self, wait_ready=True, timeout=20.0):
        for u, pw in self.users.items():
            if u not in self.added:
                self.add_user(u, pw)
                self.added.add(u)
        if self.tls and not self.cert:
            self.cert, self.key = make_cert()
        last = None
        for _ in range(3):  # a free port may be taken in between: retry
            self.port = harness.free_port()
            self.http_port = harness.free_port()
            self.proc = harness.Proc(self.argv(), env=self.env, name=self.name)
            try:
                if wait_ready:
                    harness.wait_for(lambda: not self.proc.alive() or
                                     self.http("/readyz")[0] == 200,
                                     timeout=timeout, what="chatd /readyz")
                if self.proc.alive():
                    return self
            except TimeoutError as e:
                last = e
            last = last or RuntimeError("chatd exited %s: %s" % (
                self.proc.p.poll(), self.proc.stderr()[-2000:]))
            self.proc.stop(signal.SIGKILL)
        raise last

    @property
    def pid(self):
        return self.proc.pid

    def http(self, path, timeout=5.0):
        return harness.http_get("http://127.0.0.1:%d%s" % (self.http_port, path), timeout)

    def metrics(self):
        st, body = self.http("/metrics")
        if st != 200:
            raise RuntimeError("/metrics answered %d" % st)
        return harness.parse_metrics(body)

    def metrics_text(self):
        return self.http("/metrics")[1]

    def metric(self, name, default=None):
        return self.metrics().get(name, default)

    def closed_total(self, reason=None):
        """Sum of chatd_connections_closed_total (for one reason or all)."""
        tot = 0.0
        for k, v in self.metrics().items():
            if k.startswith("chatd_connections_closed_total"):
                if reason is None or ('reason="%s"' % reason) in k:
                    tot += v
        return tot

    def wait_metric(self, name, value, timeout=10.0):
        """Waits until metric name == value (bounded); returns the last value."""
        last = [None]

        def ok():
            last[0] = self.metric(name)
            return last[0] == value
        try:
            harness.wait_for(ok, timeout=timeout, interval=0.05, what="%s == %s" % (name, value))
        except TimeoutError:
            pass
        return last[0]

    def rss_kb(self):
        return rss_kb(self.pid)

    def alive(self):
        return self.proc is not None and self.proc.alive()

    def stop(self, sig=signal.SIGTERM, timeout=30.0):
        if self.proc is None:
            return None
        return self.proc.stop(sig, timeout)

    def client(self, **kw):
        return Client(self.port, domain=self.domain, **kw)

    def login(self, user, password=None, **kw):
        """A new logged-in raw client (SCRAM-SHA-256 over plaintext by default)."""
        c = self.client(timeout=kw.pop("timeout", 5.0))
        c.login(user, password if password is not None else self.users.get(user, "x"), **kw)
        return c

    def sanitizer_report(self):
        if self.passwd_errors:
            return self.passwd_errors[0][:4000]
        return self.proc.sanitizer_report() if self.proc else None

    def check_clean(self, tc):
        """Fails the test case when a sanitizer reported something."""
        rep = self.sanitizer_report()
        tc.assertIsNone(rep, "sanitizer report from chatd:\n%s" % rep)


def parse_labels(key):
    """'name{a="x",b="y"}' -> ('name', {'a': 'x', 'b': 'y'})."""
    m = re.match(r'^([^{]+)(?:\{(.*)\})?$', key)
    labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
    return m.group(1), labels


class Strophe:
    """The libstrophe test client (tests/helpers/strophe_client.c) as a
    process; its stdout is one JSON event per line."""

    def __init__(self, chatd, jid, password, actions, resource=None, tls_mode="require",
                 cafile=True, mech=None, timeout=20, extra=(), port=None):
        argv = [harness.binary("strophe_client"), "--jid", jid, "--password", password,
                "--host", "127.0.0.1", "--port", str(port or chatd.port),
                "--tls-mode", tls_mode,
                "--timeout", str(timeout)]
        if cafile is True:
            argv += ["--cafile", chatd.cert]
        elif cafile:
            argv += ["--cafile", cafile]
        if mech:
            argv += ["--mech", mech]
        if resource:
            argv += ["--resource", resource]
        argv += list(extra) + list(actions)
        self.proc = harness.Proc(argv, name="strophe_client")

    def events(self):
        import json
        out = []
        for line in self.proc.stdout().splitlines():
            line = line.strip()
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def find(self, event, **match):
        return [e for e in self.events() if e.get("event") == event and
                all(e.get(k) == v for k, v in match.items())]

    def wait_event(self, event, timeout=20.0, **match):
        """The first event of that kind (matching fields); raises when the
        process exits or timeout passes without it."""
        def pred():
            found = self.find(event, **match)
            if found:
                return found
            if not self.proc.alive():
                found = self.find(event, **match)
                if not found:
                    raise AssertionError("strophe_client exited without %s %s\n%s" % (
                        event, match, self.describe()))
            return found
        return harness.wait_for(pred, timeout=timeout, interval=0.05,
                                what="strophe_client event %s %s" % (event, match))[0]

    def wait(self, timeout=30.0):
        return self.proc.wait(timeout)

    def stop(self):
        return self.proc.stop()

    def describe(self):
        return "stdout:\n%s\nstderr:\n%s" % (self.proc.stdout()[-3000:],
                                            self.proc.stderr()[-3000:])


class MechFilterProxy:
    """A STARTTLS-aware relay between one test client and chatd that hides
    some SASL mechanisms from the features the server sends.

    libstrophe always prefers SCRAM when it is offered and has no switch to
    choose PLAIN; behind this relay it sees a server that offers PLAIN only,
    and the PLAIN exchange itself passes unchanged. The relay terminates TLS
    on both sides after <proceed/> (towards the client with chatd's own
    certificate, towards chatd verifying it), so the client still verifies
    the certificate it gets. `auth_mechs` records the mechanism of every
    <auth/> the client sent.
    """

    def __init__(self, chatd, hide=("SCRAM-SHA-256", "SCRAM-SHA-1")):
        self.chatd = chatd
        self.hide = [("<mechanism>%s</mechanism>" % m).encode() for m in hide]
        self.auth_mechs = []
        self.errors = []
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(8)
        self.lsock.settimeout(0.2)
        self.port = self.lsock.getsockname()[1]
        self.stopped = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def close(self):
        self.stopped = True
        self.thread.join(5)
        self.lsock.close()

    def _serve(self):
        while not self.stopped:
            try:
                cl, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(cl,), daemon=True).start()

    def _filter(self, data):
        for h in self.hide:
            data = data.replace(h, b"")
        return data

    def _relay(self, cl, sv, until_proceed):
        """Copies both ways until a side closes, or (until_proceed) until
        <proceed/> went to the client. Returns True at <proceed/>."""
        down = b""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not self.stopped:
            ready = [s for s in (cl, sv) if isinstance(s, ssl.SSLSocket) and s.pending()]
            if not ready:
                ready, _, _ = select.select([cl, sv], [], [], 0.2)
            for s in ready:
                data = s.recv(65536)
                if not data:
                    return False
                if s is cl:
                    for m in re.findall(rb"<auth [^>]*mechanism=['\"]([A-Z0-9-]+)", data):
                        self.auth_mechs.append(m.decode())
                    sv.sendall(data)
                    continue
                down += data
                # hold a features element back until it is complete
                if b"<stream:features" in down and b"</stream:features>" not in down:
                    continue
                cl.sendall(self._filter(down))
                proceed = b"<proceed" in down
                down = b""
                if until_proceed and proceed:
                    return True
        return False

    def _handle(self, cl):
        sv = None
        try:
            cl.settimeout(10)
            sv = socket.create_connection(("127.0.0.1", self.chatd.port), timeout=10)
            if not self._relay(cl, sv, until_proceed=True):
                return
            up = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            up.load_verify_locations(self.chatd.cert)
            sv = up.wrap_socket(sv, server_hostname=self.chatd.domain)
            down = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            down.load_cert_chain(self.chatd.cert, self.chatd.key)
            cl = down.wrap_socket(cl, server_side=True)
            self._relay(cl, sv, until_proceed=False)
        except (OSError, ssl.SSLError) as e:
            self.errors.append(repr(e))
        finally:
            for s in (cl, sv):
                if s is not None:
                    try:
                        s.close()
                    except OSError:
                        pass
