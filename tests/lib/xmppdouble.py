"""A minimal XMPP server double on loopback, for testing chatload against a
server that is not chatd.

It speaks just enough of RFC 6120 for a client to log in: stream header,
features offering SASL PLAIN (any name and password succeed), the stream
restart, resource binding (and, with session=True, the old session
establishment). Every other <iq/> of type get or set is answered as `iq`
says:

  "error"   an error of type cancel with <service-unavailable/> (what a
            server without the feature, e.g. without XEP-0092, answers)
  "silent"  no answer at all
  "empty"   a result without any payload

`bind` picks the answer to the bind request the same way ("ok" binds
user@domain/double-N, "error" refuses it with service-unavailable).
Every <iq/> received is recorded in `iqs` as (namespace of its first child,
type). Messages and presence are ignored. Each connection has its own
thread; every socket read is bounded by a timeout.
"""
import socket
import threading
import xml.parsers.expat

NS_STREAM = "http://etherx.jabber.org/streams"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"
NS_SESSION = "urn:ietf:params:xml:ns:xmpp-session"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"

ERROR = ("<error type='cancel'><service-unavailable xmlns='%s'/></error>" % NS_STANZAS)


def _esc(s):
    return (s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("'", "&apos;").replace('"', "&quot;"))


class _Conn:
    """One client connection: a streaming expat parser rebuilt at each
    stream restart; stanzas are (name, attrs, [(child name, child ns)])."""

    def __init__(self, srv, sock, n):
        self.srv, self.sock, self.n = srv, sock, n
        self.authed = False
        self.depth = 0
        self.stanza = None
        self.restart = False
        self._parser()

    def _parser(self):
        p = xml.parsers.expat.ParserCreate(namespace_separator=" ")
        p.StartElementHandler = self._start
        p.EndElementHandler = self._end
        self.p = p
        self.depth = 0

    def _start(self, name, attrs):
        self.depth += 1
        ns, _, local = name.rpartition(" ")
        if self.depth == 1:
            self._open()
        elif self.depth == 2:
            self.stanza = (local, ns, attrs, [])
        elif self.depth == 3:
            self.stanza[3].append((local, ns))

    def _end(self, name):
        self.depth -= 1
        if self.depth == 0:
            self.send("</stream:stream>")
            raise EOFError()
        if self.depth == 1:
            st, self.stanza = self.stanza, None
            self._stanza(*st)

    def send(self, s):
        self.sock.sendall(s.encode())

    def _open(self):
        self.send("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                  "xmlns:stream='%s' from='%s' id='d%d' version='1.0'>" % (
                      NS_STREAM, _esc(self.srv.domain), self.n))
        if not self.authed:
            self.send("<stream:features><mechanisms xmlns='%s'><mechanism>PLAIN</mechanism>"
                      "</mechanisms></stream:features>" % NS_SASL)
        else:
            sess = "<session xmlns='%s'/>" % NS_SESSION if self.srv.session else ""
            self.send("<stream:features><bind xmlns='%s'/>%s</stream:features>" % (
                NS_BIND, sess))

    def _stanza(self, name, ns, attrs, children):
        if name == "auth" and ns == NS_SASL and not self.authed:
            self.authed = True
            self.send("<success xmlns='%s'/>" % NS_SASL)
            self.restart = True  # the client's next bytes open a new stream
            return
        if name != "iq" or attrs.get("type") not in ("get", "set"):
            return
        iid = _esc(attrs.get("id", ""))
        first = children[0] if children else ("", "")
        with self.srv.lock:
            self.srv.iqs.append((first[1], attrs["type"]))
        if first == ("bind", NS_BIND):
            how = self.srv.bind
            payload = ("<bind xmlns='%s'><jid>user%d@%s/double-%d</jid></bind>" % (
                NS_BIND, self.n, _esc(self.srv.domain), self.n))
        elif first == ("session", NS_SESSION):
            how, payload = "ok", ""
        else:
            how, payload = self.srv.iq, ""
        if how == "ok" or how == "empty":
            self.send("<iq type='result' id='%s'>%s</iq>" % (iid, payload if how == "ok"
                                                              else ""))
        elif how == "error":
            self.send("<iq type='error' id='%s'>%s</iq>" % (iid, ERROR))
        # "silent": nothing

    def run(self):
        self.sock.settimeout(self.srv.timeout)
        try:
            while not self.srv.stopped:
                data = self.sock.recv(65536)
                if not data:
                    break
                if self.restart:
                    self.restart = False
                    self._parser()
                self.p.Parse(data, False)
        except (OSError, EOFError, xml.parsers.expat.ExpatError):
            pass
        finally:
            try:
                self.sock.close()
            except OSError:
                pass


class XmppDouble:
    """Listens on 127.0.0.1:<free port> (self.port) until close()."""

    def __init__(self, iq="error", bind="ok", session=False, domain="localhost",
                 timeout=60.0):
        self.iq, self.bind, self.session = iq, bind, session
        self.domain, self.timeout = domain, timeout
        self.iqs = []
        self.lock = threading.Lock()
        self.stopped = False
        self.connections = 0
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(128)
        self.lsock.settimeout(0.2)
        self.port = self.lsock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopped:
            try:
                s, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.connections += 1
                n = self.connections
            threading.Thread(target=_Conn(self, s, n).run, daemon=True).start()

    def iq_namespaces(self):
        with self.lock:
            return [ns for ns, _ in self.iqs]

    def close(self):
        self.stopped = True
        self.thread.join(5)
        self.lsock.close()

