/*
 * A stream-managed session's state as it crosses a cluster link when it is
 * resumed at another instance (server/sm.c, docs/cluster.md "Moving
 * sessions"): the XEP-0198 counters and id, the resumption window, the
 * presence (priority, availability, the stored broadcast, the directed
 * presence targets) and the unacknowledged stanzas. The full JID travels
 * beside it (in the SESSION_STATE frame).
 *
 * Encoding, big endian, every length bounded and the whole consumed:
 *
 *     u8 version (1) | u32 h_in | u32 h_out | u32 window_s | i8 priority |
 *     u8 flags (1: available) | u8 id length + id |
 *     u32 presence length + serialized <presence/> (0: none stored) |
 *     u16 n + n x (u16 length + JID)          directed presence targets
 *     u32 n + n x (u32 length + stanza)        unacknowledged, oldest first
 *
 * Decoding checks every XML piece with the hardened stream layer: the
 * presence and each queued stanza must be exactly one well-formed element
 * (peers are authenticated; a corrupted state is refused, not sent on to
 * a client).
 */
#ifndef CHATD_SM_STATE_H
#define CHATD_SM_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "smq.h"
#include "xml.h"
#include "xstream.h"

struct conn;
struct presence_dir;

#define SM_STATE_VERSION 1

struct sm_state {
	char id[SMQ_ID_LEN + 1];
	uint32_t window_s;
	int priority;		       /* -128..127 */
	int available;		       /* 0/1 */
	struct xnode *presence;	       /* owned, or NULL */
	struct presence_dir *directed; /* owned list */
	unsigned ndirected;
	struct smq q; /* counters and owned items */
};

/* Appends c's state (c->sm set) to out. 0, or -ENOMEM. */
int sm_state_encode(const struct conn *c, struct xbuf *out);
/* Decodes into st (zeroed here). lim bounds each XML piece. 0, -EINVAL
 * (malformed) or -ENOMEM; st holds nothing on failure. */
int sm_state_decode(const uint8_t *p, size_t len, const struct xstream_limits *lim,
		    struct sm_state *st);
void sm_state_free(struct sm_state *st);

#endif
