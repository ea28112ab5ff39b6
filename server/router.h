/*
 * Local routing: which sessions are bound on this server, and the RFC 6121
 * 8.5 delivery rules for the stanzas they send (docs/chatd.md "Delivery").
 *
 * The table maps a bare JID to its sessions (struct conn, linked through
 * c->rnext). router_route() is the single entry point for a stanza from an
 * established session.
 *
 * The router is below the stanza handlers (iq.c, presence.c) and the cluster
 * (cluster_glue.c): they call it to deliver, it reaches them only through
 * the table of struct router_hooks that srv.c fills (srv_router_hooks), so
 * router.c includes none of them. A NULL entry means "not there": an iq
 * with no handler is answered service-unavailable, no cluster means a
 * single instance.
 */
#ifndef CHATD_ROUTER_H
#define CHATD_ROUTER_H

#include "conn.h"
#include "jid.h"
#include "xml.h"

struct srv;
struct router;

/* One bare JID's sessions. */
struct route {
	struct route *next; /* hash chain */
	struct conn *first; /* sessions, linked by c->rnext */
	unsigned count;	    /* number of sessions */
	char bare[];	    /* "node@domain" */
};

/* Who an iq get/set that the server answers is addressed to. */
enum router_to {
	ROUTER_TO_SERVER, /* to the domain */
	ROUTER_TO_SELF,	  /* no 'to', or the sender's own bare JID */
	ROUTER_TO_BARE,	  /* another local user's bare JID (handled on their behalf) */
};

/* Which remote resources of a bare JID get a copy (RFC 6121 8.5.2). */
enum router_bare {
	ROUTER_BARE_PRIO,   /* those of the highest non-negative priority (chat, normal) */
	ROUTER_BARE_NONNEG, /* every one with a non-negative priority (headline) */
	ROUTER_BARE_ALL,    /* every available one (presence) */
};

struct router_hooks {
	/* stanza handlers; each takes ownership of st */
	void (*iq)(struct conn *from, struct xnode *st, enum router_to to);
	void (*iq_result)(struct conn *from, struct xnode *st); /* result/error to us */
	void (*presence_broadcast)(struct conn *from, struct xnode *st);
	/* available (or unavailable) directed presence went to full JID `to` */
	void (*presence_directed)(struct conn *from, const char *to, int available);
	/* the cluster: sessions bound and unbound here, and what other
	 * instances hold (st is not taken) */
	void (*bound)(struct conn *c);
	void (*unbound)(struct conn *c);
	int (*has_bare)(struct srv *srv, const char *bare);
	/* the larger of local_best and the best remote priority of bare */
	int (*bare_best)(struct srv *srv, const char *bare, int local_best);
	/* copies of st to the remote resources of bare that mode picks */
	int (*forward_bare)(struct srv *srv, const char *bare, const struct xnode *st,
			    enum router_bare mode, int best);
	int (*forward_full)(struct srv *srv, const struct jid *j, const struct xnode *st);
};

struct router *router_new(struct srv *srv);
void router_free(struct router *r);
/* Sets the table (copied); until then every entry is NULL. */
void router_set_hooks(struct router *r, const struct router_hooks *h);

/* Adds c (c->jid bound, full). A session already bound to the same full JID
 * is returned in *old; the caller closes it with <conflict/>, which removes
 * it. 0, or -ENOMEM. */
int router_add(struct router *r, struct conn *c, struct conn **old);
/* Removes c if it is bound. */
void router_remove(struct router *r, struct conn *c);
/* Removes c without telling the cluster (the unbound hook does not run):
 * its session moved to another instance, which announces it (sm.c). */
void router_forget(struct router *r, struct conn *c);

/* The sessions of a bare JID ("node@domain"), or NULL. */
struct route *router_lookup(struct router *r, const char *bare);
/* The session bound to a full JID, or NULL. */
struct conn *router_find_full(struct router *r, const struct jid *j);

/*
 * Routes a stanza (message, presence or iq) from an established session.
 * 'from' is already stamped with the sender's full JID. Takes ownership of
 * st. Never closes the sender; a recipient whose output overflows is closed
 * after the current callback.
 */
void router_route(struct srv *srv, struct conn *from, struct xnode *st);

/* Puts `to` where `from` is in the table (a session moving from one
 * connection to another: stream resumption, server/sm.c); from leaves it.
 * No hook runs: for the cluster nothing changed. */
void router_replace(struct router *r, struct conn *from, struct conn *to);

/* Delivers st to one session (serializes it). When the session cannot take
 * it (a detached session whose resumption queue is full), the sender gets
 * service-unavailable (router_bounce()). */
void router_deliver(struct conn *to, const struct xnode *st);

/*
 * Stanzas that a session will never receive, with no sending session at
 * hand: those still unacknowledged when a stream-managed session ends for
 * good (XEP-0198; its resumption window passed, or it was replaced). The
 * session must be out of the table already. RFC 6121 8.5.3.2 as for a full
 * JID with no session: a chat or normal message addressed to the full JID
 * goes to the user's other resources under the bare-JID rules; a message
 * addressed to the bare JID (it had its bare-JID delivery already) and an
 * iq get/set bounce with service-unavailable; presence, headline, error and
 * iq results are dropped. Takes ownership of st.
 */
void router_undeliverable(struct srv *srv, struct xnode *st);
/* Answers st with a stanza error (cancel/cond) to its sender, wherever
 * that is (a local session, or another instance); never an error to an
 * error. Takes ownership of st. */
void router_bounce(struct srv *srv, struct xnode *st, const char *cond);

/*
 * Answers st (from `sender`) with a stanza error: swaps to/from, sets
 * type='error' and adds <error type='type'><cond/></error>. Takes ownership
 * of st. Never answers an error with an error.
 */
void router_error(struct conn *sender, struct xnode *st, const char *type, const char *cond);
/* The stanza-error rewrite router_error() does, without sending: st becomes
 * its own error reply. 0, or -1 out of memory (st is then half rewritten). */
int router_make_error(struct xnode *st, const char *type, const char *cond);

#endif
