/*
 * XMPP over WebSocket (RFC 7395): a second transport into the same session
 * code. A connection accepted on --websocket first speaks HTTP: the
 * upgrade request (parsed with http-parser) must be a GET of
 * /xmpp-websocket offering the subprotocol "xmpp"; then WebSocket frames
 * (wslay) carry one XML element per text message.
 *
 * Only the framing differs from TCP: an <open/> message becomes a stream
 * header for the session's parser, <close/> its </stream:stream>, any other
 * message is fed as it is (it must be one whole element); what the session
 * writes is cut into one message per top-level element, the stream header
 * written as <open/> (session.c) and </stream:stream> as <close/> followed
 * by a WebSocket close. SASL, binding, routing, limits, metrics and drain
 * are the session's, unchanged. No STARTTLS on this transport (RFC 7395
 * 3.6: TLS belongs to the WebSocket layer).
 *
 * Ownership: struct conn owns its struct ws (conn_close_cb frees it).
 */
#ifndef CHATD_WS_H
#define CHATD_WS_H

#include <stddef.h>

#include "xml.h"

struct conn;
struct ws;

#define WS_PATH "/xmpp-websocket"
#define WS_PROTOCOL "xmpp"
/* Largest upgrade request (request line and headers). */
#define WS_MAX_REQUEST 8192

/* The transport state of a new connection; NULL when out of memory. */
struct ws *ws_new(struct conn *c);
void ws_free(struct ws *ws);

/* Bytes from the socket: the upgrade request, then frames. May close c. */
void ws_input(struct conn *c, const char *data, size_t len);

/*
 * What the session writes, cut into messages (see above). Before the
 * upgrade nothing is sent but, when c is closing, one HTTP 503.
 */
void ws_send(struct conn *c, const char *data, size_t len);

/* The stream header as RFC 7395 frames it: <open xmlns=... from id version/>. */
void ws_open_header(struct xbuf *b, const char *id, const char *domain);

/*
 * The output reframer on its own (for tests): feeds session output and
 * calls emit with each whole element as it should travel in a message;
 * close is 1 for the <close/> that ends the stream.
 */
struct ws_framer {
	struct xbuf cur;       /* the element being collected */
	unsigned depth;	       /* elements open within cur */
	unsigned char st;      /* scanner state */
	unsigned char quote;   /* the quote closing the current attribute value */
	unsigned char closing; /* the current tag is an end tag */
	unsigned char last;    /* the previous character inside the tag */
};
typedef void (*ws_emit_fn)(void *ud, const char *msg, size_t len, int close);
void ws_framer_init(struct ws_framer *f);
void ws_framer_free(struct ws_framer *f);
/* 0, or -ENOMEM. */
int ws_framer_feed(struct ws_framer *f, const char *data, size_t len, ws_emit_fn emit, void *ud);

#endif
