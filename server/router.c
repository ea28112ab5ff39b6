/*
 * Delivery rules (RFC 6121 8.5 for a single server without rosters or
 * offline storage); docs/chatd.md repeats them for users of the server.
 */
#include "router.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "session.h"
#include "srv.h"
#include "users.h"
#include "xmppns.h"

#define ROUTER_MIN_BUCKETS 1024

struct router {
	struct srv *srv;
	struct router_hooks up; /* handlers and cluster above the router */
	struct route **buckets;
	size_t nbuckets; /* power of two */
	unsigned long nroutes;
};

static uint64_t router_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

struct router *router_new(struct srv *srv)
{
	struct router *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->srv = srv;
	r->nbuckets = ROUTER_MIN_BUCKETS;
	r->buckets = calloc(r->nbuckets, sizeof(*r->buckets));
	if (!r->buckets) {
		free(r);
		return NULL;
	}
	return r;
}

void router_free(struct router *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->nbuckets; i++) {
		struct route *e = r->buckets[i], *next;

		for (; e; e = next) {
			next = e->next;
			free(e);
		}
	}
	free(r->buckets);
	free(r);
}

void router_set_hooks(struct router *r, const struct router_hooks *h)
{
	r->up = *h;
}

/* An iq the server answers, through the handler above; without one,
 * service-unavailable. */
static void up_iq(struct conn *from, struct xnode *st, enum router_to to)
{
	const struct router_hooks *up = &from->srv->router->up;

	if (up->iq)
		up->iq(from, st, to);
	else
		router_error(from, st, "cancel", "service-unavailable");
}

static void up_iq_result(struct conn *from, struct xnode *st)
{
	const struct router_hooks *up = &from->srv->router->up;

	if (up->iq_result)
		up->iq_result(from, st);
	else
		xnode_free(st);
}

/* Doubles the table when it is fuller than one entry per bucket. */
static void router_grow(struct router *r)
{
	size_t n = r->nbuckets * 2;
	struct route **b = calloc(n, sizeof(*b));

	if (!b)
		return; /* keep the longer chains; still correct */
	for (size_t i = 0; i < r->nbuckets; i++) {
		struct route *e = r->buckets[i], *next;

		for (; e; e = next) {
			next = e->next;
			size_t k = router_hash(e->bare) & (n - 1);
			e->next = b[k];
			b[k] = e;
		}
	}
	free(r->buckets);
	r->buckets = b;
	r->nbuckets = n;
}

struct route *router_lookup(struct router *r, const char *bare)
{
	struct route *e = r->buckets[router_hash(bare) & (r->nbuckets - 1)];

	for (; e; e = e->next)
		if (strcmp(e->bare, bare) == 0)
			return e;
	return NULL;
}

struct conn *router_find_full(struct router *r, const struct jid *j)
{
	char bare[2 * 1024 + 2];
	struct route *e;

	if (!j->node || !j->resource || jid_format_bare(j, bare, sizeof(bare)) < 0)
		return NULL;
	e = router_lookup(r, bare);
	for (struct conn *c = e ? e->first : NULL; c; c = c->rnext)
		if (strcmp(c->jid.resource, j->resource) == 0)
			return c;
	return NULL;
}

int router_add(struct router *r, struct conn *c, struct conn **old)
{
	char bare[2 * 1024 + 2];
	struct route *e;
	size_t len;

	*old = NULL;
	if (jid_format_bare(&c->jid, bare, sizeof(bare)) < 0)
		return -EINVAL;
	e = router_lookup(r, bare);
	if (e) {
		for (struct conn *o = e->first; o; o = o->rnext) {
			if (strcmp(o->jid.resource, c->jid.resource) == 0) {
				*old = o;
				break;
			}
		}
	} else {
		len = strlen(bare);
		e = malloc(sizeof(*e) + len + 1);
		if (!e)
			return -ENOMEM;
		memcpy(e->bare, bare, len + 1);
		e->first = NULL;
		e->count = 0;
		size_t k = router_hash(bare) & (r->nbuckets - 1);
		e->next = r->buckets[k];
		r->buckets[k] = e;
		if (++r->nroutes > r->nbuckets)
			router_grow(r);
	}
	c->rnext = e->first;
	e->first = c;
	e->count++;
	c->route = e;
	r->srv->metrics.sessions++;
	if (r->up.bound)
		r->up.bound(c); /* announce the session to the cluster */
	return 0;
}

void router_replace(struct router *r, struct conn *from, struct conn *to)
{
	struct route *e = from->route;
	struct conn **pp;

	if (!e)
		return;
	for (pp = &e->first; *pp; pp = &(*pp)->rnext) {
		if (*pp == from) {
			*pp = to;
			break;
		}
	}
	to->rnext = from->rnext;
	to->route = e;
	from->rnext = NULL;
	from->route = NULL;
}

static void route_unlink(struct router *r, struct conn *c);

void router_remove(struct router *r, struct conn *c)
{
	if (!c->route)
		return;
	if (r->up.unbound)
		r->up.unbound(c);
	route_unlink(r, c);
}

void router_forget(struct router *r, struct conn *c)
{
	if (c->route)
		route_unlink(r, c);
}

static void route_unlink(struct router *r, struct conn *c)
{
	struct route *e = c->route;
	struct conn **pp;

	for (pp = &e->first; *pp; pp = &(*pp)->rnext) {
		if (*pp == c) {
			*pp = c->rnext;
			break;
		}
	}
	c->rnext = NULL;
	c->route = NULL;
	r->srv->metrics.sessions--;
	if (--e->count > 0)
		return;
	struct route **ep = &r->buckets[router_hash(e->bare) & (r->nbuckets - 1)];
	for (; *ep; ep = &(*ep)->next) {
		if (*ep == e) {
			*ep = e->next;
			break;
		}
	}
	free(e);
	r->nroutes--;
}

/* ------------------------------------------------------------ delivery */

void router_deliver(struct conn *to, const struct xnode *st)
{
	struct xnode *copy;

	if (to->closing)
		return;
	if (conn_send_node(to, st) == 0)
		return;
	/* Not held (a detached session's queue is full): never silently. */
	copy = xnode_copy(st);
	if (copy)
		router_bounce(to->srv, copy, "service-unavailable");
}

int router_make_error(struct xnode *st, const char *type, const char *cond)
{
	const char *f = xnode_attr(st, "from"), *t = xnode_attr(st, "to");
	char *from = f ? strdup(f) : NULL, *to = t ? strdup(t) : NULL;
	struct xnode *err;
	int rc = -1;

	if ((f && !from) || (t && !to) || xnode_set_attr(st, "to", from) != 0 ||
	    xnode_set_attr(st, "from", to) != 0 || xnode_set_attr(st, "type", "error") != 0)
		goto out;
	err = xnode_add_child(st, "error", NS_CLIENT);
	if (!err || xnode_set_attr(err, "type", type) != 0 ||
	    !xnode_add_child(err, cond, NS_STANZAS))
		goto out;
	rc = 0;
out:
	free(from);
	free(to);
	return rc;
}

void router_error(struct conn *sender, struct xnode *st, const char *type, const char *cond)
{
	const char *t = xnode_attr(st, "type");

	if ((t && strcmp(t, "error") == 0) || sender->closing)
		goto out;
	if (router_make_error(st, type, cond) != 0)
		goto out;
	sender->srv->metrics.stanza_errors_total++;
	router_deliver(sender, st);
out:
	xnode_free(st);
}

static int attr_is(const struct xnode *n, const char *name, const char *value)
{
	const char *v = xnode_attr(n, name);

	return v && strcmp(v, value) == 0;
}

/* What a stanza is, for the rules that differ by kind. */
enum stanza_kind {
	KIND_MESSAGE,
	KIND_PRESENCE,
	KIND_REQUEST,  /* iq get or set */
	KIND_RESPONSE, /* iq result or error */
};

static enum stanza_kind stanza_kind(const struct xnode *st)
{
	if (strcmp(st->name, "message") == 0)
		return KIND_MESSAGE;
	if (strcmp(st->name, "presence") == 0)
		return KIND_PRESENCE;
	return attr_is(st, "type", "get") || attr_is(st, "type", "set") ? KIND_REQUEST
									: KIND_RESPONSE;
}

/* A stanza that cannot go where it is addressed: messages and iq requests
 * are answered with the error, presence is dropped, and so are iq results
 * and errors (never answered, RFC 6120 8.2.3). Takes ownership of st. */
static void refuse(struct conn *from, struct xnode *st, enum stanza_kind kind, const char *type,
		   const char *cond)
{
	if (kind == KIND_MESSAGE || kind == KIND_REQUEST)
		router_error(from, st, type, cond);
	else
		xnode_free(st);
}

/* Does the account exist? With --auth-any every name does; anonymous
 * accounts exist while they have a session, here or on another instance. */
static int account_exists(struct srv *srv, const char *node, const char *bare,
			  const struct route *e)
{
	struct scram_cred cred;

	if (e || srv->cfg->auth_any ||
	    (srv->router->up.has_bare && srv->router->up.has_bare(srv, bare)))
		return 1;
	if (!srv->users)
		return 0;
	return users_lookup(srv->users, node, SCRAM_SHA256, &cred) == 0 ||
	       users_lookup(srv->users, node, SCRAM_SHA1, &cred) == 0;
}

static int available(const struct conn *c)
{
	return c->available && !c->closing;
}

/*
 * A message to a bare JID (RFC 6121 8.5.2): chat and normal go to the
 * available resources of the highest non-negative priority (all of them on
 * a tie), headline to every available resource with a non-negative
 * priority; with none, chat and normal bounce with service-unavailable (no
 * offline storage) and headline is dropped; groupchat bounces; errors are
 * dropped.
 */
/* Delivers a message to the resources of bare JID `bare` (local ones in e)
 * that the rules pick; returns how many copies went out. */
static int deliver_bare_message(struct srv *srv, const char *bare, const struct xnode *st,
				struct route *e, int headline)
{
	const struct router_hooks *up = &srv->router->up;
	int best = -129, n = 0;

	for (struct conn *c = e ? e->first : NULL; c; c = c->rnext)
		if (available(c) && c->priority >= 0 && c->priority > best)
			best = c->priority;
	if (up->bare_best)
		best = up->bare_best(srv, bare, best); /* remote resources */
	for (struct conn *c = e ? e->first : NULL; c; c = c->rnext) {
		if (available(c) && c->priority >= 0 && (headline || c->priority == best)) {
			router_deliver(c, st);
			n++;
		}
	}
	if (up->forward_bare)
		n += up->forward_bare(srv, bare, st,
				      headline ? ROUTER_BARE_NONNEG : ROUTER_BARE_PRIO, best);
	return n;
}

static void route_bare_message(struct conn *from, struct xnode *st, struct route *e,
			       const char *bare)
{
	const char *type = xnode_attr(st, "type");
	int headline = type && strcmp(type, "headline") == 0;

	if (type && strcmp(type, "error") == 0)
		goto drop;
	if (type && strcmp(type, "groupchat") == 0) {
		router_error(from, st, "cancel", "service-unavailable");
		return;
	}
	if (deliver_bare_message(from->srv, bare, st, e, headline) == 0 && !headline) {
		router_error(from, st, "cancel", "service-unavailable");
		return;
	}
drop:
	xnode_free(st);
}

/* Presence to a bare JID: every available resource gets it (RFC 6121
 * 8.5.2.1.2); probes are not answered, as nobody is subscribed. */
static void route_bare_presence(struct conn *from, struct xnode *st, struct route *e,
				const char *bare)
{
	if (!attr_is(st, "type", "probe")) {
		for (struct conn *c = e ? e->first : NULL; c; c = c->rnext)
			if (available(c))
				router_deliver(c, st);
		if (from->srv->router->up.forward_bare)
			from->srv->router->up.forward_bare(from->srv, bare, st, ROUTER_BARE_ALL, 0);
	}
	xnode_free(st);
}

/* No 'to': the server handles it on behalf of the sender's account
 * (RFC 6120 10.3). */
static void route_no_to(struct conn *from, struct xnode *st, enum stanza_kind kind)
{
	const struct router_hooks *up = &from->srv->router->up;
	const char *type = xnode_attr(st, "type");

	if (kind == KIND_MESSAGE) {
		route_bare_message(from, st, from->route, from->route->bare);
	} else if (kind == KIND_PRESENCE) {
		if ((!type || strcmp(type, "unavailable") == 0) && up->presence_broadcast)
			up->presence_broadcast(from, st);
		else
			xnode_free(st);
	} else if (kind == KIND_REQUEST) {
		up_iq(from, st, ROUTER_TO_SELF);
	} else {
		up_iq_result(from, st);
	}
}

/* Checks the iq's type and id (RFC 6120 8.2.3); 0 when it may go on. */
static int iq_valid(struct conn *from, struct xnode *st)
{
	const char *type = xnode_attr(st, "type");
	size_t children = 0;

	if (!xnode_attr(st, "id") || !type ||
	    (strcmp(type, "get") && strcmp(type, "set") && strcmp(type, "result") &&
	     strcmp(type, "error"))) {
		router_error(from, st, "modify", "bad-request");
		return -EINVAL;
	}
	if (strcmp(type, "get") == 0 || strcmp(type, "set") == 0) {
		for (size_t i = 0; i < st->nchildren; i++)
			children += st->children[i]->name != NULL;
		if (children != 1) {
			router_error(from, st, "modify", "bad-request");
			return -EINVAL;
		}
	}
	return 0;
}

/* To the domain itself, or to domain/resource (j has no node). */
static void route_to_domain(struct conn *from, struct xnode *st, enum stanza_kind kind,
			    const struct jid *j)
{
	if (!j->resource && kind == KIND_REQUEST)
		up_iq(from, st, ROUTER_TO_SERVER);
	else if (!j->resource && kind == KIND_RESPONSE)
		up_iq_result(from, st);
	else
		refuse(from, st, kind, "cancel", "service-unavailable");
}

/* Directed presence: remember where it went (RFC 6121 4.6.3), by the
 * prepared JID, so that "Bob" and "bob" are one target. */
static void note_directed_presence(struct conn *from, const struct xnode *st, const struct jid *j,
				   const char *bare)
{
	const struct router_hooks *up = &from->srv->router->up;
	const char *type = xnode_attr(st, "type");
	char key[JID_BUF_SIZE];

	if (type && strcmp(type, "unavailable") != 0)
		return;
	if (!(from->route && strcmp(from->route->bare, bare) == 0 && !j->resource) &&
	    jid_format_full(j, key, sizeof(key)) >= 0 && up->presence_directed)
		up->presence_directed(from, key, !type);
}

/* To a full JID: its session here or on another instance; with neither,
 * RFC 6121 8.5.3.2. */
static void route_full(struct srv *srv, struct conn *from, struct xnode *st, enum stanza_kind kind,
		       const struct jid *j, struct route *e, const char *bare)
{
	const char *type = xnode_attr(st, "type");
	struct conn *t = router_find_full(srv->router, j);

	if (t) {
		router_deliver(t, st);
		xnode_free(st);
	} else if (srv->router->up.forward_full &&
		   srv->router->up.forward_full(srv, j, st)) { /* another instance */
		xnode_free(st);
	} else if (kind == KIND_MESSAGE) {
		/* RFC 6121 8.5.3.2.1: chat and normal fall back to the bare
		 * JID, groupchat bounces, headline and error are dropped. */
		if (!type || strcmp(type, "chat") == 0 || strcmp(type, "normal") == 0)
			route_bare_message(from, st, e, bare);
		else if (strcmp(type, "groupchat") == 0)
			router_error(from, st, "cancel", "service-unavailable");
		else
			xnode_free(st);
	} else if (kind == KIND_PRESENCE) {
		if (type && (strcmp(type, "subscribe") == 0 || strcmp(type, "subscribed") == 0 ||
			     strcmp(type, "unsubscribe") == 0 || strcmp(type, "unsubscribed") == 0))
			route_bare_presence(from, st, e, bare);
		else
			xnode_free(st);
	} else {
		refuse(from, st, kind, "cancel", "service-unavailable");
	}
}

/* To a bare JID (RFC 6121 8.5.1, 8.5.2). */
static void route_bare(struct srv *srv, struct conn *from, struct xnode *st, enum stanza_kind kind,
		       const struct jid *j, struct route *e, const char *bare)
{
	int self = from->route && strcmp(from->route->bare, bare) == 0;

	if (!account_exists(srv, j->node, bare, e))
		refuse(from, st, kind, "cancel", "service-unavailable");
	else if (kind == KIND_MESSAGE)
		route_bare_message(from, st, e, bare);
	else if (kind == KIND_PRESENCE)
		route_bare_presence(from, st, e, bare);
	else if (kind == KIND_REQUEST)
		up_iq(from, st, self ? ROUTER_TO_SELF : ROUTER_TO_BARE);
	else
		xnode_free(st);
}

void router_route(struct srv *srv, struct conn *from, struct xnode *st)
{
	const char *to = xnode_attr(st, "to");
	enum stanza_kind kind = stanza_kind(st);
	char bare[2 * 1024 + 2];
	struct jid j = { 0 };
	struct route *e;

	if (kind != KIND_MESSAGE && kind != KIND_PRESENCE && iq_valid(from, st) != 0)
		return;
	if (!to) {
		route_no_to(from, st, kind);
		return;
	}
	if (jid_parse(to, &j) != 0) {
		refuse(from, st, kind, "modify", "jid-malformed");
		return;
	}
	if (strcmp(j.domain, srv->domain) != 0) {
		/* No server-to-server: other domains are unreachable. */
		refuse(from, st, kind, "cancel", "remote-server-not-found");
	} else if (!j.node) {
		route_to_domain(from, st, kind, &j);
	} else if (jid_format_bare(&j, bare, sizeof(bare)) < 0) {
		refuse(from, st, kind, "modify", "jid-malformed");
	} else {
		e = router_lookup(srv->router, bare);
		if (kind == KIND_PRESENCE)
			note_directed_presence(from, st, &j, bare);
		if (j.resource)
			route_full(srv, from, st, kind, &j, e, bare);
		else
			route_bare(srv, from, st, kind, &j, e, bare);
	}
	jid_clear(&j);
}

/* ------------------------------------------- stanzas with no session at hand */

/* Delivers st to the session its 'to' names, here or on another instance;
 * with none, it is dropped (what it answers, an error, is never answered).
 * Takes ownership of st. */
static void deliver_to_jid(struct srv *srv, struct xnode *st)
{
	const char *to = xnode_attr(st, "to");
	struct jid j = { 0 };
	struct conn *c;

	if (to && jid_parse(to, &j) == 0 && j.resource && strcmp(j.domain, srv->domain) == 0) {
		c = router_find_full(srv->router, &j);
		if (c)
			router_deliver(c, st);
		else if (srv->router->up.forward_full)
			srv->router->up.forward_full(srv, &j, st);
	}
	jid_clear(&j);
	xnode_free(st);
}

void router_bounce(struct srv *srv, struct xnode *st, const char *cond)
{
	const char *t = xnode_attr(st, "type");

	if ((t && strcmp(t, "error") == 0) || !xnode_attr(st, "from") ||
	    router_make_error(st, "cancel", cond) != 0) {
		xnode_free(st);
		return;
	}
	srv->metrics.stanza_errors_total++;
	deliver_to_jid(srv, st);
}

void router_undeliverable(struct srv *srv, struct xnode *st)
{
	const char *type = xnode_attr(st, "type"), *to = xnode_attr(st, "to");
	char bare[2 * 1024 + 2];
	struct jid j = { 0 };

	if (strcmp(st->name, "message") == 0) {
		if (type && (strcmp(type, "error") == 0 || strcmp(type, "headline") == 0)) {
			xnode_free(st);
		} else if (type && strcmp(type, "chat") != 0 && strcmp(type, "normal") != 0) {
			router_bounce(srv, st, "service-unavailable"); /* groupchat */
		} else if (to && jid_parse(to, &j) == 0 && j.node && j.resource &&
			   jid_format_bare(&j, bare, sizeof(bare)) >= 0 &&
			   deliver_bare_message(srv, bare, st, router_lookup(srv->router, bare),
						0) > 0) {
			xnode_free(st); /* RFC 6121 8.5.3.2.1: another resource took it */
		} else {
			router_bounce(srv, st, "service-unavailable");
		}
	} else if (strcmp(st->name, "iq") == 0 && type &&
		   (strcmp(type, "get") == 0 || strcmp(type, "set") == 0)) {
		router_bounce(srv, st, "service-unavailable");
	} else {
		xnode_free(st);
	}
	jid_clear(&j);
}
