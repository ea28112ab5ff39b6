/*
 * Presence without rosters (RFC 6121 4, as far as it applies when nobody has
 * subscriptions):
 *   - broadcast presence (no 'to') of a session goes to every other
 *     available resource of the same user, and to the sender itself;
 *   - a newly available resource receives the current presence of the
 *     user's other available resources;
 *   - directed presence ('to' set) is routed like any stanza and the target
 *     is remembered (at most PRESENCE_DIRECTED_MAX per session), so that
 *     the target gets unavailable presence when the session goes
 *     unavailable or ends (RFC 6121 4.6.3);
 *   - probes are not answered (no subscription exists, RFC 6121 4.3.2);
 *     subscription requests are delivered to the available resources of the
 *     addressee and nothing is stored.
 */
#ifndef CHATD_PRESENCE_H
#define CHATD_PRESENCE_H

#include "conn.h"
#include "xml.h"

#define PRESENCE_DIRECTED_MAX 64

struct presence_dir {
	struct presence_dir *next;
	char jid[]; /* full or bare JID string the presence went to */
};

/* Broadcast presence from c (no 'to'); takes ownership of p, whose 'from'
 * is already stamped. */
void presence_broadcast(struct conn *c, struct xnode *p);
/* Notes that c sent directed available presence to jid (or, for
 * unavailable, forgets it). */
void presence_directed(struct conn *c, const char *jid, int available);
/* c ends or goes unavailable: unavailable presence to the user's other
 * resources and to the directed-presence targets. */
void presence_gone(struct conn *c);
void presence_free(struct conn *c);

#endif
