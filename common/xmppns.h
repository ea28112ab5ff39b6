/*
 * The XMPP namespaces chatd, chatload and chat-client speak, in one place,
 * and the opening of a client stream header that every writer of one starts
 * with (chatd's own header, the headers fed to a parser to read a stored or
 * forwarded stanza, chatload's).
 */
#ifndef COMMON_XMPPNS_H
#define COMMON_XMPPNS_H

#define NS_CLIENT "jabber:client"
#define NS_STREAM "http://etherx.jabber.org/streams" /* the stream: prefix */
#define NS_STREAMS "urn:ietf:params:xml:ns:xmpp-streams"
#define NS_STANZAS "urn:ietf:params:xml:ns:xmpp-stanzas"
#define NS_TLS "urn:ietf:params:xml:ns:xmpp-tls"
#define NS_SASL "urn:ietf:params:xml:ns:xmpp-sasl"
#define NS_BIND "urn:ietf:params:xml:ns:xmpp-bind"
#define NS_SESSION "urn:ietf:params:xml:ns:xmpp-session"
#define NS_FRAMING "urn:ietf:params:xml:ns:xmpp-framing" /* RFC 7395 */
#define NS_PING "urn:xmpp:ping"				 /* XEP-0199 */
#define NS_DISCO_INFO "http://jabber.org/protocol/disco#info"
#define NS_DISCO_ITEMS "http://jabber.org/protocol/disco#items"
#define NS_VERSION "jabber:iq:version" /* XEP-0092 */
#define NS_ROSTER "jabber:iq:roster"
#define NS_SM "urn:xmpp:sm:3" /* XEP-0198 */
#define NS_XML "http://www.w3.org/XML/1998/namespace"

/* A client stream header up to its attributes: callers add theirs (id,
 * from, to, version) and the closing '>'. */
#define XMPP_STREAM_OPEN "<stream:stream xmlns='" NS_CLIENT "' xmlns:stream='" NS_STREAM "'"

#endif
