/*
 * The XMPP stream layer shared by chatd and chatload: an expat parser
 * hardened for RFC 6120 and framing by depth. The stream header
 * (<stream:stream ...>) is reported by on_open, each element that closes at
 * depth 1 is built into a tree and handed over by on_stanza, and
 * </stream:stream> is reported by on_close. Whitespace between stanzas
 * (keepalives) is ignored.
 *
 * Limits are enforced while parsing, before memory is spent:
 *   - a stanza larger than max_stanza bytes of input  -> XSTREAM_ERR_POLICY
 *   - nesting deeper than max_depth                    -> XSTREAM_ERR_POLICY
 *   - DTD, entity declarations, comments, PIs          -> XSTREAM_ERR_RESTRICTED
 *   - malformed XML, bad UTF-8, undefined entities     -> XSTREAM_ERR_NOT_WELL_FORMED
 *   - a root that is not stream in http://etherx.jabber.org/streams
 *                                                      -> XSTREAM_ERR_INVALID_NS
 *                                                         (or BAD_FORMAT)
 *
 * Callbacks run inside xstream_feed(). A callback may call xstream_stop():
 * parsing stops after the current event and xstream_feed() returns
 * XSTREAM_STOPPED with *consumed set to the bytes used so far, so that the
 * caller can reset the parser at a stream restart (SASL success: feed the
 * rest again; STARTTLS: discard the rest, RFC 6120 5.4.3.3). A callback must
 * not free, reset or feed the xstream; it may call xstream_stop() and let the
 * caller do so.
 * Without a reset, feeding data + *consumed continues the same stream.
 *
 * Also:
 *   - text other than whitespace between stanzas           -> XSTREAM_ERR_BAD_FORMAT
 *   - a stanza tree over 16 x max_stanza bytes of memory, or an
 *     element with more than XSTREAM_MAX_ATTRS attributes
 *     or namespace declarations                            -> XSTREAM_ERR_POLICY
 *   - non-whitespace after </stream:stream>                -> XSTREAM_ERR_CLOSED
 *   - an XML declaration naming an encoding other than UTF-8
 *     (RFC 6120 11.6)                                      -> XSTREAM_ERR_ENCODING
 *   - a stream header (<stream:stream>) as a first-level child, at its
 *     start tag                                            -> XSTREAM_ERR_NESTED_HEADER
 * The input is always parsed as UTF-8.
 * Elements in no namespace get ns "" (not NULL). Attribute names are "to",
 * "xml:lang", or "{uri}local" for other namespaced attributes (see xml.h).
 * The stream header and stanzas carry no parent: the header node is only
 * valid during on_open.
 */
#ifndef COMMON_XSTREAM_H
#define COMMON_XSTREAM_H

#include <stddef.h>

#include "xml.h"

enum xstream_err {
	XSTREAM_OK = 0,
	XSTREAM_STOPPED = 1, /* a callback called xstream_stop() */
	XSTREAM_ERR_NOT_WELL_FORMED = -1,
	XSTREAM_ERR_RESTRICTED = -2,	/* restricted-xml */
	XSTREAM_ERR_POLICY = -3,	/* policy-violation: size or depth */
	XSTREAM_ERR_INVALID_NS = -4,	/* invalid-namespace */
	XSTREAM_ERR_BAD_FORMAT = -5,	/* bad-format */
	XSTREAM_ERR_NOMEM = -6,		/* resource-constraint */
	XSTREAM_ERR_CLOSED = -7,	/* data after </stream:stream> */
	XSTREAM_ERR_ENCODING = -8,	/* unsupported-encoding: declared other than UTF-8 */
	XSTREAM_ERR_NESTED_HEADER = -9, /* unsupported-stanza-type: <stream:stream> at depth 1 */
};

/* A limit of 0 (or limits == NULL) selects the default. */
#define XSTREAM_DEFAULT_MAX_STANZA 65536
#define XSTREAM_DEFAULT_MAX_DEPTH 32
/* Attributes, and namespace declarations, per element (stream header
 * included); more -> XSTREAM_ERR_POLICY. */
#define XSTREAM_MAX_ATTRS 64

struct xstream_limits {
	size_t max_stanza;  /* bytes of input per stanza, e.g. 65536; also bounds
			     * the stream header and the bytes expat may buffer
			     * for an unfinished stanza (+4 KiB) */
	unsigned max_depth; /* element depth inside a stanza, e.g. 32: the
			     * stanza element is depth 1, its children 2 */
};

struct xstream_cbs {
	/* The stream header; attributes such as to, from, version, id, xml:lang
	 * are on the node, its ns is NS_STREAM, and default_ns is the default
	 * namespace declared on it ("jabber:client"), or NULL. */
	void (*on_open)(void *ud, const struct xnode *header, const char *default_ns);
	/* A complete stanza; ownership passes to the callee (xnode_free it). */
	void (*on_stanza)(void *ud, struct xnode *stanza);
	/* </stream:stream> was read. */
	void (*on_close)(void *ud);
};

struct xstream;

struct xstream *xstream_new(const struct xstream_limits *limits, const struct xstream_cbs *cbs,
			    void *ud);
void xstream_free(struct xstream *xs);

/* Changes the limits (for example larger after authentication). */
void xstream_set_limits(struct xstream *xs, const struct xstream_limits *limits);

/*
 * Feeds bytes. Returns XSTREAM_OK when all were consumed, XSTREAM_STOPPED
 * (see above), or a negative enum xstream_err; after an error the stream is
 * dead and only xstream_reset() or xstream_free() may follow. consumed may be
 * NULL.
 */
int xstream_feed(struct xstream *xs, const char *data, size_t len, size_t *consumed);

/* Called from a callback: stop after the current event. */
void xstream_stop(struct xstream *xs);

/* Starts a fresh stream (restart after STARTTLS or SASL). */
int xstream_reset(struct xstream *xs);

/*
 * Frees the expat parser while the stream sits idle between stanzas (depth
 * 1, no partial input); the next xstream_feed() recreates it transparently.
 * Returns 1 when no parser is held any more (freed now or earlier), 0 when
 * the stream is not at a boundary. Keeps idle connections small: see
 * docs/xstream.md for the figures. Cheap; call it after every read that
 * leaves the stream idle.
 */
int xstream_compact(struct xstream *xs);

/* Heap bytes held by this xstream now (struct, expat, stanza being built). */
size_t xstream_mem(const struct xstream *xs);

/*
 * For tests only: in this thread, the expat allocation after the next n
 * succeeds fails (n < 0: none fail). Exercises the out-of-memory paths.
 */
void xstream_test_fail_alloc(long n);

/* RFC 6120 stream error condition for an xstream_err (e.g. "restricted-xml"). */
const char *xstream_condition(int err);
/* Human text for logs. */
const char *xstream_strerror(int err);
/* The depth the parser is at (0 before the header, 1 between stanzas). */
unsigned xstream_depth(const struct xstream *xs);

/*
 * 1 when the stream is open and between stanzas with no partial input
 * buffered (a stanza, or a start tag, begun and not finished): what a
 * framed transport (XMPP over WebSocket, one element per message) checks
 * after each message.
 */
int xstream_at_boundary(const struct xstream *xs);

#endif
