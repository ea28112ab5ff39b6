/*
 * Presence without rosters: broadcast to the user's own resources, directed
 * presence remembered for the unavailable it owes (RFC 6121 4).
 */
#include "presence.h"

#include <stdlib.h>
#include <string.h>

#include "cluster_glue.h"
#include "router.h"
#include "session.h"
#include "srv.h"
#include "xmppns.h"

/* <priority/> of an available presence, clamped to -128..127 (RFC 6121
 * 4.7.2.3); 0 when absent or not a number. */
static int presence_priority(const struct xnode *p)
{
	struct xnode *pr = xnode_child(p, "priority", NS_CLIENT);
	char *text, *end;
	long v;

	if (!pr)
		return 0;
	text = xnode_text(pr);
	if (!text)
		return 0;
	v = strtol(text, &end, 10);
	if (end == text || *end)
		v = 0;
	free(text);
	return v < -128 ? -128 : v > 127 ? 127 : (int)v;
}

/* Sends p to `to` with 'to' set to its full JID. */
static void presence_send(struct conn *to, struct xnode *p)
{
	char full[JID_BUF_SIZE];

	if (to->closing || jid_format_full(&to->jid, full, sizeof(full)) < 0 ||
	    xnode_set_attr(p, "to", full) != 0)
		return;
	router_deliver(to, p);
}

/* The current presence of c, as seen by others: its stored stanza or a
 * plain <presence/>, from its full JID. */
static struct xnode *presence_of(const struct conn *c)
{
	char full[JID_BUF_SIZE];
	struct xnode *p;

	p = c->presence ? xnode_copy(c->presence) : xnode_new("presence", NS_CLIENT);
	if (p && (jid_format_full(&c->jid, full, sizeof(full)) < 0 ||
		  xnode_set_attr(p, "from", full) != 0)) {
		xnode_free(p);
		p = NULL;
	}
	return p;
}

void presence_broadcast(struct conn *c, struct xnode *p)
{
	const char *type = xnode_attr(p, "type");
	int was = c->available;

	if (type) {
		/* unavailable: tell the others, then the directed targets. */
		if (!c->available && !c->directed) {
			xnode_free(p);
			return;
		}
		cluster_glue_presence(c, p, 0); /* cluster hook: remote resources */
		for (struct conn *o = c->route ? c->route->first : NULL; o; o = o->rnext)
			if (o != c && o->available)
				presence_send(o, p);
		xnode_free(p);
		c->available = 0;
		xnode_free(c->presence);
		c->presence = NULL;
		presence_gone(c); /* only the directed targets are left */
		return;
	}
	c->available = 1;
	c->priority = (int8_t)presence_priority(p);
	cluster_glue_presence(c, p, 1); /* cluster hook: remote resources */
	xnode_free(c->presence);
	c->presence = NULL;
	if (p->nchildren) {
		c->presence = xnode_copy(p);
		if (c->presence) {
			xnode_set_attr(c->presence, "from", NULL);
			xnode_set_attr(c->presence, "to", NULL);
		}
	}
	/* RFC 6121 4.2.2: to every available resource of the user, the sender
	 * included. */
	for (struct conn *o = c->route ? c->route->first : NULL; o; o = o->rnext)
		if (o->available)
			presence_send(o, p);
	xnode_free(p);
	if (was)
		return;
	/* A newly available resource learns about its siblings. */
	for (struct conn *o = c->route ? c->route->first : NULL; o; o = o->rnext) {
		if (o == c || !o->available || o->closing)
			continue;
		struct xnode *op = presence_of(o);
		if (op) {
			presence_send(c, op);
			xnode_free(op);
		}
	}
}

void presence_directed(struct conn *c, const char *jid, int avail)
{
	struct presence_dir **pp, *d;
	unsigned n = 0;
	size_t len;

	for (pp = &c->directed; *pp; pp = &(*pp)->next, n++) {
		if (strcmp((*pp)->jid, jid) == 0) {
			if (!avail) {
				d = *pp;
				*pp = d->next;
				free(d);
			}
			return;
		}
	}
	if (!avail || n >= PRESENCE_DIRECTED_MAX)
		return;
	len = strlen(jid);
	d = malloc(sizeof(*d) + len + 1);
	if (!d)
		return;
	memcpy(d->jid, jid, len + 1);
	d->next = c->directed;
	c->directed = d;
}

void presence_gone(struct conn *c)
{
	struct presence_dir *list = c->directed, *d;
	char full[JID_BUF_SIZE];
	struct xnode *p;

	if (!c->route || jid_format_full(&c->jid, full, sizeof(full)) < 0)
		return;
	if (c->available) {
		c->available = 0;
		p = xnode_new("presence", NS_CLIENT);
		if (p && xnode_set_attr(p, "type", "unavailable") == 0 &&
		    xnode_set_attr(p, "from", full) == 0)
			for (struct conn *o = c->route->first; o; o = o->rnext)
				if (o != c && o->available)
					presence_send(o, p);
		xnode_free(p);
	}
	/* Detached first: routing the notices may look at c->directed. */
	c->directed = NULL;
	while ((d = list)) {
		list = d->next;
		p = xnode_new("presence", NS_CLIENT);
		if (p && xnode_set_attr(p, "type", "unavailable") == 0 &&
		    xnode_set_attr(p, "from", full) == 0 && xnode_set_attr(p, "to", d->jid) == 0)
			router_route(c->srv, c, p);
		else
			xnode_free(p);
		free(d);
	}
}

void presence_free(struct conn *c)
{
	struct presence_dir *d;

	while ((d = c->directed)) {
		c->directed = d->next;
		free(d);
	}
	xnode_free(c->presence);
	c->presence = NULL;
}
