/*
 * Cluster routes and forwarding: the route dump that starts a link, route
 * changes broadcast to every link, stanzas and presence sent to the instance
 * that holds the session.
 */
#include "cluster.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "cluster_int.h"
#include "cluster_proto.h"
#include "cluster_routes.h"
#include "log.h"
#include "unconst.h"

/* ---- sending ---- */

/* Sends bytes on a link through its queue. A failure marks the link for
 * closing after the current callback and is returned; never closes. */
int cluster__link_write(struct link *l, const uint8_t *p, size_t len)
{
	int r;

	if (l->fail_reason || l->state == LINK_CLOSING || l->state == LINK_CONNECTING ||
	    l->state == LINK_RETIRING)
		return -ENOTCONN;
	r = outq_write(&l->q, (const char *)p, len);
	if (r < 0) {
		cluster__link_fail(l, r == -ENOBUFS  ? "peer-not-reading"
				      : r == -ENOMEM ? "out-of-memory"
						     : uv_err_name(r));
		return r;
	}
	l->last_tx = now_ms(l->cl);
	return 0;
}

/* Sends what is in cl->obuf and empties it. */
int cluster__link_flush_obuf(struct link *l)
{
	struct cluster *cl = l->cl;
	int rc = cl->obuf.len ? cluster__link_write(l, cl->obuf.data, cl->obuf.len) : 0;

	cluster_buf_reset(&cl->obuf);
	return rc;
}

/* ---- routes ---- */

/* Tells chatd about an available remote session that is gone, unless
 * another owner still holds the same full JID. */
void cluster__route_gone(struct cluster *cl, const char *full)
{
	if (cl->hooks.route_gone && !cluster_routes_find(&cl->remote, full, NULL))
		cl->hooks.route_gone(cl->ud, full);
}

void cluster__link_drop_routes(struct link *l)
{
	struct cluster *cl = l->cl;
	struct cluster_route *r;
	char **gone = NULL;
	size_t n, ngone = 0, i;

	/* Collected first: the hook runs once the table is consistent. */
	if (cl->hooks.route_gone && l->routes.count && !l->duplicate && !cl->leaving) {
		gone = calloc(l->routes.count, sizeof(*gone));
		for (r = l->routes.head; gone && r; r = r->onext)
			if (r->available && (gone[ngone] = strdup(r->full)) != NULL)
				ngone++;
	}
	n = cluster_routes_drop_owner(&cl->remote, &l->routes);
	for (i = 0; i < ngone; i++) {
		cluster__route_gone(cl, gone[i]);
		free(gone[i]);
	}
	free(gone);

	if (n)
		log_info("cluster_routes_dropped", "link=%llu peer=%s routes=%zu",
			 (unsigned long long)l->id, peer_name(l), n);
}

/* The full table dump that starts a link, then SYNC. */
int cluster__link_send_dump(struct link *l)
{
	struct cluster *cl = l->cl;
	struct cluster_batch bt;
	const struct cluster_route *r;
	int rc;

	cluster_buf_reset(&cl->obuf);
	rc = cluster_batch_begin(&bt, &cl->obuf, CLUSTER_MSG_ROUTE_ADD);
	for (r = cl->local_owner.head; r && rc >= 0; r = r->onext) {
		rc = cluster_batch_add(&bt, r->full, r->priority,
				       r->available ? CLUSTER_ROUTE_AVAILABLE : 0);
		if (rc == 0) {
			cluster_batch_end(&bt);
			/* flush per batch so the scratch buffer stays small */
			rc = cluster__link_flush_obuf(l);
			if (rc >= 0)
				rc = cluster_batch_begin(&bt, &cl->obuf, CLUSTER_MSG_ROUTE_ADD);
			if (rc >= 0)
				rc = cluster_batch_add(&bt, r->full, r->priority,
						       r->available ? CLUSTER_ROUTE_AVAILABLE : 0);
		}
	}
	if (rc >= 0) {
		cluster_batch_end(&bt);
		rc = cluster_enc_empty(&cl->obuf, CLUSTER_MSG_SYNC);
	}
	if (rc < 0) {
		cluster_buf_reset(&cl->obuf);
		cluster__link_close(l, "dump-failed");
		return rc;
	}
	return cluster__link_flush_obuf(l);
}

/* Sends the frames in cl->obuf to every established link, then empties
 * it; returns how many links took them. */
static int broadcast_obuf(struct cluster *cl)
{
	struct link *l;
	int n = 0;

	for (l = cl->links; l; l = l->next) {
		if (l->state == LINK_UP && cluster__link_write(l, cl->obuf.data, cl->obuf.len) == 0)
			n++;
	}
	cluster_buf_reset(&cl->obuf);
	return n;
}

/* Sends one route change to every established link. */
static void broadcast_route(struct cluster *cl, uint8_t type, const char *full, int priority,
			    int available)
{
	struct cluster_batch bt;
	int rc;

	cluster_buf_reset(&cl->obuf);
	rc = cluster_batch_begin(&bt, &cl->obuf, type);
	if (rc >= 0)
		rc = cluster_batch_add(&bt, full, priority,
				       available ? CLUSTER_ROUTE_AVAILABLE : 0);
	if (rc < 0) {
		cluster_buf_reset(&cl->obuf);
		return; /* an unencodable JID: nothing can route to it anyway */
	}
	cluster_batch_end(&bt);
	broadcast_obuf(cl);
}

int cluster_local_set(struct cluster *cl, const char *full, int priority, int available)
{
	int rc = cluster_routes_set(&cl->local, &cl->local_owner, full, priority, available);

	if (rc < 0)
		return rc;
	broadcast_route(cl, CLUSTER_MSG_ROUTE_ADD, full, priority, available);
	return 0;
}

void cluster_local_del(struct cluster *cl, const char *full)
{
	if (cluster_routes_del(&cl->local, &cl->local_owner, full) > 0)
		broadcast_route(cl, CLUSTER_MSG_ROUTE_DEL, full, 0, 0);
}

int cluster_has_route(const struct cluster *cl, const char *full)
{
	return cluster_routes_find(&cl->remote, full, NULL) != NULL ||
	       cluster__tomb_link(unconst(cl), full) != NULL;
}

int cluster_has_bare(const struct cluster *cl, const char *bare)
{
	return cluster_routes_bare(&cl->remote, bare) != NULL;
}

int cluster_route_available(const struct cluster *cl, const char *full)
{
	const struct cluster_route *r = cluster_routes_find(&cl->remote, full, NULL);

	return r ? r->available : -ENOENT;
}

static int send_stanza(struct cluster *cl, struct link *l, const char *to, const char *from,
		       const char *xml, size_t len)
{
	int rc;

	cluster_buf_reset(&cl->obuf);
	rc = cluster_enc_stanza(&cl->obuf, to, from, xml, len);
	if (rc < 0) {
		cluster_buf_reset(&cl->obuf);
		return rc == CLUSTER_PROTO_ENOMEM ? -ENOMEM : -EINVAL;
	}
	rc = cluster__link_flush_obuf(l);
	if (rc == 0)
		cl->st.forwarded++;
	return rc;
}

int cluster_forward(struct cluster *cl, const char *to, const char *from, const char *xml,
		    size_t len)
{
	const struct cluster_route *r = cluster_routes_find(&cl->remote, to, NULL);
	struct link *l;

	if (r)
		return send_stanza(cl, r->owner->ud, to, from, xml, len);
	/* Given to another instance a moment ago, its route not here yet. */
	l = cluster__tomb_link(cl, to);
	return l ? send_stanza(cl, l, to, from, xml, len) : -ENOENT;
}

int cluster_bare_best(const struct cluster *cl, const char *bare, int *best)
{
	const struct cluster_route *r;
	int n = 0, b = -1;

	for (r = cluster_routes_bare(&cl->remote, bare); r; r = r->bnext) {
		if (!r->available || r->priority < 0)
			continue;
		n++;
		if (r->priority > b)
			b = r->priority;
	}
	if (n)
		*best = b;
	return n;
}

static int bare_selected(const struct cluster_route *r, enum cluster_bare_mode mode, int prio)
{
	if (!r->available)
		return 0;
	switch (mode) {
	case CLUSTER_BARE_PRIO:
		return r->priority == prio;
	case CLUSTER_BARE_NONNEG:
		return r->priority >= 0;
	default:
		return 1;
	}
}

int cluster_forward_bare(struct cluster *cl, const char *bare, enum cluster_bare_mode mode,
			 int prio, const char *from, const char *xml, size_t len)
{
	const struct cluster_route *r, *o;
	struct link **links = NULL;
	char **fulls = NULL;
	size_t cnt = 0, i;
	int n = 0;

	/* Collected first: a failed write closes its link, which drops that
	 * link's routes out of the list being walked. */
	for (r = cluster_routes_bare(&cl->remote, bare); r; r = r->bnext)
		cnt += (size_t)bare_selected(r, mode, prio);
	if (!cnt)
		return 0;
	links = calloc(cnt, sizeof(*links));
	fulls = calloc(cnt, sizeof(*fulls));
	if (!links || !fulls)
		goto out;
	cnt = 0;
	for (r = cluster_routes_bare(&cl->remote, bare); r; r = r->bnext) {
		if (!bare_selected(r, mode, prio))
			continue;
		/* one copy per session even if two owners briefly claim it */
		for (o = cluster_routes_bare(&cl->remote, bare); o != r; o = o->bnext)
			if (bare_selected(o, mode, prio) && strcmp(o->resource, r->resource) == 0)
				break;
		if (o != r)
			continue;
		fulls[cnt] = strdup(r->full);
		if (!fulls[cnt])
			break;
		links[cnt++] = r->owner->ud;
	}
	for (i = 0; i < cnt; i++)
		if (send_stanza(cl, links[i], fulls[i], from, xml, len) == 0)
			n++;
out:
	for (i = 0; fulls && i < cnt; i++)
		free(fulls[i]);
	free(fulls);
	free(links);
	return n;
}

int cluster_broadcast_presence(struct cluster *cl, const char *from, const char *xml, size_t len)
{
	const struct cluster_route *r, *o;
	const char *slash = strchr(from, '/');
	char bare[CLUSTER_JID_MAX + 1];
	size_t blen = slash ? (size_t)(slash - from) : strlen(from);
	struct link **links;
	size_t cnt = 0, i;
	int n = 0, rc;

	if (blen > CLUSTER_JID_MAX)
		return -EINVAL;
	memcpy(bare, from, blen);
	bare[blen] = '\0';
	/* Broadcast presence goes to the user's own other resources (no
	 * rosters): only the instances that hold one need it. Collected first
	 * (a failed write drops routes from the list). */
	for (r = cluster_routes_bare(&cl->remote, bare); r; r = r->bnext)
		cnt++;
	if (!cnt)
		return 0;
	links = calloc(cnt, sizeof(*links));
	if (!links)
		return -ENOMEM;
	cnt = 0;
	for (r = cluster_routes_bare(&cl->remote, bare); r; r = r->bnext) {
		for (o = cluster_routes_bare(&cl->remote, bare); o != r; o = o->bnext)
			if (o->owner == r->owner)
				break;
		if (o == r)
			links[cnt++] = r->owner->ud;
	}
	cluster_buf_reset(&cl->obuf);
	rc = cluster_enc_presence(&cl->obuf, from, xml, len);
	for (i = 0; rc == 0 && i < cnt; i++)
		if (cluster__link_write(links[i], cl->obuf.data, cl->obuf.len) == 0)
			n++;
	cluster_buf_reset(&cl->obuf);
	free(links);
	if (rc < 0)
		return rc == CLUSTER_PROTO_ENOMEM ? -ENOMEM : -EINVAL;
	cl->st.forwarded += (uint64_t)n;
	return n;
}
