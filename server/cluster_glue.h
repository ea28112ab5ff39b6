/*
 * The seam between chatd (srv, router, presence) and the cluster module
 * (cluster.h): the few calls chatd makes at its bind, unbind, presence,
 * route-miss, metrics and shutdown points, and the hooks that deliver what
 * peers forwarded. Every function is a no-op returning "nothing done" when
 * cluster mode is off (srv->cluster == NULL), so the call sites need no
 * condition of their own.
 *
 * Ownership: no function here takes ownership of a stanza; the caller
 * frees it as before.
 */
#ifndef CHATD_CLUSTER_GLUE_H
#define CHATD_CLUSTER_GLUE_H

#include <stddef.h>
#include <stdint.h>

#include "cluster/cluster.h"
#include "jid.h"
#include "router.h"
#include "xml.h"

struct srv;
struct conn;

/* From srv_init(): starts cluster mode when --cluster-listen is set
 * (refusing to without a secret). 0, or a negative errno after logging why. */
int cluster_glue_init(struct srv *srv);
/* When the server exits (after the drain): LEAVING to every peer. */
void cluster_glue_leave(struct srv *srv);
/* From srv_free(), after the loop ended. */
void cluster_glue_free(struct srv *srv);

/* router_add() / router_remove(): a session bound / ended. */
void cluster_glue_bound(struct conn *c);
void cluster_glue_unbound(struct conn *c);
/* presence_broadcast(): sends the broadcast p (from stamped, no 'to') to
 * the user's remote resources and announces the session's new
 * availability (with c->priority). */
void cluster_glue_presence(struct conn *c, const struct xnode *p, int available);

/* A stanza to the full JID j that has no local session: 1 when it was
 * forwarded to the instance holding j, else 0. */
int cluster_glue_forward_full(struct srv *srv, const struct jid *j, const struct xnode *st);
/* Bare-JID rules across the cluster, for the bare JID `bare`:
 * cluster_glue_bare_best() returns the larger of local_best and the best
 * remote priority; cluster_glue_forward_bare() returns the copies
 * forwarded. */
int cluster_glue_bare_best(struct srv *srv, const char *bare, int local_best);
/* 1 when some session of the bare JID is bound on another instance (an
 * account that exists only while bound, such as an anonymous one, exists
 * cluster-wide). */
int cluster_glue_has_bare(struct srv *srv, const char *bare);
int cluster_glue_forward_bare(struct srv *srv, const char *bare, const struct xnode *st,
			      enum router_bare mode, int prio);

/* Session moves between instances (sm.c; cluster.h cluster_session_*):
 * request returns the peers asked (0 without cluster mode). */
int cluster_glue_session_request(struct srv *srv, uint64_t req, const char *previd,
				 const char *bare, uint32_t h);
int cluster_glue_session_nak(struct srv *srv, const char *peer, uint64_t req, unsigned reason);
int cluster_glue_session_give(struct srv *srv, const char *peer, uint64_t req, const char *full,
			      const uint8_t *state, size_t len);
void cluster_glue_session_taken(struct srv *srv, const char *full, const char *peer);

/* 1 when /readyz may say ready as far as the cluster goes (always when
 * cluster mode is off; see cluster_ready()). */
int cluster_glue_ready(struct srv *srv);
/* The cluster listener's bound "HOST:PORT", or NULL without cluster routing. */
const char *cluster_glue_listen_addr(struct srv *srv);

/* Appends the cluster metrics to /metrics; returns the bytes written (0
 * when off, or when they do not fit). */
size_t cluster_glue_metrics(struct srv *srv, char *buf, size_t cap);

#endif
