/*
 * Moving sessions on request (docs/chatd.md "Moving sessions"): chatd ends
 * a session with the stream error <see-other-host/> naming the service's
 * address (--service-address, never the instance's own), so that the
 * client reconnects through the Service to the colour that takes new
 * connections.
 *
 *   - stream management with resumption: at once; the session detaches
 *     with its queue, so every stanza sent and not acknowledged is sent
 *     again when the client resumes, here or at another instance;
 *   - stream management without resumption: an <r/> first, and the error
 *     once the client's <a/> says what it received (at most
 *     MOVE_ACK_WAIT_MS); what it did not acknowledge is answered for as
 *     RFC 6121 says when the session ends;
 *   - no stream management: at once; the client logs in again.
 *
 * Who may ask: the HTTP endpoint's POST /control/move, with the token of
 * --control-token-file (http.c).
 */
#ifndef CHATD_MOVE_H
#define CHATD_MOVE_H

#include "conn.h"

#define MOVE_ACK_WAIT_MS 2000
#define MOVE_MAX_PER_REQUEST 100000

struct srv;

/* The address clients are sent to: --service-address, else the domain. */
const char *move_address(const struct srv *srv);
/* Asks up to n established sessions to move, oldest first (the
 * connections that have been open longest). Returns how many were asked
 * (fewer when fewer are established and not moving already). */
unsigned move_sessions(struct srv *srv, unsigned n);
/* Moves one session (established, not closing). */
void move_session(struct conn *c);
/* The client's <a/> arrived while c waited for it to move (sm.c). */
void move_acked(struct conn *c);

#endif
