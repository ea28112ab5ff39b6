/*
 * XEP-0198 stream management (urn:xmpp:sm:3) on chatd's sessions:
 * <enable/>, acks (<r/>, <a/>), the queue of unacknowledged stanzas, and
 * resumption: a session whose connection dies without a clean close is
 * detached, keeps its full JID, presence and queue for --resume-timeout
 * seconds, and a new connection of the same user takes it over with
 * <resume previd='...' h='...'/> (docs/chatd.md "Stream management").
 *
 * A detached session is a struct conn with no socket (c->detached): it
 * keeps its place in the router, so stanzas routed to it are queued like
 * any stanza sent to a stream-managed session. It is not in srv->conns and
 * not counted in chatd_connections; it sits in srv->detached and in the
 * deadline heap (its window's end). Its memory is freed from the loop's
 * idle handle, never inside a call that may still hold it.
 *
 * Counters and queue: server/smq.h.
 */
#ifndef CHATD_SM_H
#define CHATD_SM_H

#include <stddef.h>
#include <stdint.h>

#include "conn.h"
#include "xml.h"
#include "xmppns.h"

/* The server asks for an ack (<r/>) once this many stanzas wait for one. */
#define SM_ACK_EVERY 5

/* Appends <sm xmlns='urn:xmpp:sm:3'/> to the features after SASL. */
void sm_features(struct conn *c, struct xbuf *b);

/* An element in NS_SM from the client (bound, or authenticated and about
 * to bind): enable, r, a, resume. Takes ownership of n. May close c. */
void sm_element(struct conn *c, struct xnode *n);

/* A stanza arrived from the client: counted once stream management is on. */
void sm_inbound(struct conn *c);

/*
 * One stanza to the client (c->sm set): counted and queued, then written
 * when c has a socket. Returns 0, or a negative errno when it could not be held: a
 * detached session's queue is full (the caller answers the sender), or an
 * attached one's passed --sm-max-queue (the connection is closed with
 * policy-violation and the session ends).
 */
int sm_outbound(struct conn *c, const char *data, size_t len);

/*
 * The connection is closing (conn_close()): either detaches the session
 * (stream management with resumption on, and an end that may be resumed:
 * the connection broke or timed out, or chatd moved it) or ends it:
 * unavailable presence, out of the router, its unacknowledged stanzas
 * handled as RFC 6121 says (router_undeliverable()).
 */
void sm_close(struct conn *c, enum close_reason reason);

/* Ends a detached session for good (its window passed, a new session took
 * its full JID, the server shuts down). Idempotent. */
void sm_end_detached(struct conn *c, enum close_reason reason);

/*
 * Resumption at another instance (docs/cluster.md "Moving sessions"): a
 * <resume/> whose id is not held here is asked of the peers that hold a
 * resource of the user; the cluster hooks (cluster_glue.c) bring their
 * answers here. sm_peer_request(): a peer asks for one of our sessions;
 * sm_peer_nak() / sm_peer_state(): a peer answered our request.
 */
#define SM_PEER_TIMEOUT_MS 5000
void sm_peer_request(struct srv *srv, const char *peer, uint64_t req, const char *previd,
		     const char *bare, uint32_t h);
void sm_peer_nak(struct srv *srv, uint64_t req, unsigned reason);
void sm_peer_state(struct srv *srv, const char *peer, uint64_t req, const char *full,
		   const uint8_t *state, size_t len);
/* c's request to peers went unanswered for SM_PEER_TIMEOUT_MS (srv.c). */
void sm_wait_expired(struct conn *c);

/* Frees what c's stream management holds (from session_free()). */
void sm_free(struct conn *c);

/* Frees the detached sessions that have ended (srv.c's idle handle). */
void sm_reap(struct srv *srv);

#endif
