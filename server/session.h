/*
 * The client stream state machine (RFC 6120 4-7): stream header ->
 * [STARTTLS -> restart] -> SASL -> restart -> resource binding ->
 * [RFC 3921 session] -> established. Input arrives from conn.c as bytes;
 * session.c feeds the stream parser and dispatches each element on (state,
 * element, namespace). Stream errors close the connection through
 * conn_close(); stanzas of an established session go to router.c and iq.c.
 */
#ifndef CHATD_SESSION_H
#define CHATD_SESSION_H

#include <stddef.h>

#include "conn.h"
#include "xml.h"
#include "xmppns.h"

/* Creates the parser (pre-authentication limits). 0 or -ENOMEM. */
int session_init(struct conn *c);
/* Plaintext input from the socket or from TLS. May close the connection. */
void session_input(struct conn *c, const char *data, size_t len);
/* Appends our stream header to b (and marks it sent). */
void session_header(struct conn *c, struct xbuf *b);
/* The one place the state changes; logs old -> new at debug level. */
void session_set_state(struct conn *c, enum conn_state st);
/* Ends the bound session, if any: unavailable presence to whoever saw us,
 * removal from the router. Idempotent. */
void session_end(struct conn *c);
/* Frees what the session owns (user, JID, presence, SASL state). */
void session_free(struct conn *c);

#endif
