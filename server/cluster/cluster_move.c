/*
 * Session moves between instances (docs/cluster.md "Moving sessions"): a
 * session resumed at another instance is fetched over the link, and the
 * route table changes owner exactly once.
 *
 *   B (new)  -- SESSION_REQ -->  A (old, holds the session)
 *   B        <-- SESSION_STATE -- A: A's session is gone, its route leaves
 *                                  A's table silently and a tombstone
 *                                  points at B
 *   B: installs the session, announces the route (ROUTE_ADD to every
 *      peer), then fences every link (a PING whose PONG proves the
 *      ROUTE_ADD was read) and sends SESSION_DONE to A
 *   A: drops the tombstone, ROUTE_DEL to every peer
 *
 * Until SESSION_DONE, a stanza for the session that reaches A (a peer still
 * routing by A's old entry, or a local sender) goes on to B (RELAY, which
 * is never passed on again); from the ROUTE_ADD on, peers route to B (the
 * newest entry wins a lookup). So at every moment one instance is the
 * owner: A until it sends SESSION_STATE (what reached it is in the state),
 * B after; no stanza is held twice or dropped on the way. Peers learn
 * capabilities from a PING probe (cluster_proto.h); older peers get none
 * of the new frames.
 */
#include "cluster.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_int.h"
#include "cluster_proto.h"
#include "cluster_routes.h"
#include "log.h"

/* ---- capabilities ---- */

void cluster__caps_probe(struct link *l)
{
	struct cluster *cl = l->cl;

	cluster_buf_reset(&cl->obuf);
	if (cluster_enc_ping(&cl->obuf, CLUSTER_MSG_PING, CLUSTER_CAPS_PROBE | CLUSTER_CAPS_MINE) ==
	    0)
		cluster__link_flush_obuf(l);
}

static int capable(const struct link *l)
{
	return l && l->state == LINK_UP && (l->peer_caps & CLUSTER_CAP_SESSIONS);
}

static struct link *capable_link(struct cluster *cl, const char *peer_id)
{
	struct link *l = peer_id ? cluster__find_up_link(cl, peer_id, NULL) : NULL;

	return capable(l) ? l : NULL;
}

/* ---- tombstones ---- */

static struct cluster_tomb *tomb_find(struct cluster *cl, const char *full)
{
	struct cluster_tomb *t;

	for (t = cl->tombs; t; t = t->next)
		if (strcmp(t->full, full) == 0)
			return t;
	return NULL;
}

/* Removes the tombstone; the peers drop our old entry for its JID unless
 * we hold the JID again ourselves. */
static void tomb_end(struct cluster *cl, struct cluster_tomb *t, const char *why)
{
	struct cluster_tomb **pp;
	struct cluster_batch bt;
	struct cluster_buf b;

	for (pp = &cl->tombs; *pp != t; pp = &(*pp)->next)
		;
	*pp = t->next;
	log_debug("cluster_move_done", "jid=%s to=%s why=%s", t->full, t->peer_id, why);
	/* Its own buffer: this runs from inside writes that use cl->obuf (a
	 * failed write closes a link, which ends the tombstones over it). */
	cluster_buf_init(&b);
	if (!cluster_routes_find(&cl->local, t->full, NULL) &&
	    cluster_batch_begin(&bt, &b, CLUSTER_MSG_ROUTE_DEL) >= 0 &&
	    cluster_batch_add(&bt, t->full, 0, 0) == 1) {
		struct link *l, *ln;

		cluster_batch_end(&bt);
		for (l = cl->links; l; l = ln) {
			ln = l->next;
			if (l->state == LINK_UP)
				cluster__link_write(l, b.data, b.len);
		}
	}
	cluster_buf_free(&b);
	free(t->full);
	free(t->peer_id);
	free(t);
}

/* The peer a stanza for full should go on to, or NULL. */
struct link *cluster__tomb_link(struct cluster *cl, const char *full)
{
	struct cluster_tomb *t = cl->tombs ? tomb_find(cl, full) : NULL;

	return t ? capable_link(cl, t->peer_id) : NULL;
}

int cluster__relay(struct cluster *cl, const char *to, const char *from, const char *xml,
		   size_t len)
{
	struct link *l;
	int rc;

	if (!cl->tombs || cluster_routes_find(&cl->local, to, NULL))
		return 0;
	l = cluster__tomb_link(cl, to);
	if (!l)
		return 0;
	cluster_buf_reset(&cl->obuf);
	rc = cluster_enc_relay(&cl->obuf, to, from, xml, len);
	if (rc < 0) {
		cluster_buf_reset(&cl->obuf);
		return 0;
	}
	if (cluster__link_flush_obuf(l) < 0)
		return 0;
	cl->st.forwarded++;
	cl->st.relayed++;
	return 1;
}

/* ---- fences ---- */

/* Takes f off the list (its memory stays with the caller). */
static void fence_free(struct cluster *cl, struct cluster_fence *f)
{
	struct cluster_fence **pp;

	if (!f)
		return;
	for (pp = &cl->fences; *pp && *pp != f; pp = &(*pp)->next)
		;
	if (*pp)
		*pp = f->next;
}

/* Every link answered (or is gone): the old owner may withdraw its route. */
static void fence_done(struct cluster *cl, struct cluster_fence *f)
{
	struct link *l = capable_link(cl, f->from_peer);
	struct cluster_buf b;

	fence_free(cl, f); /* unlisted before any write */
	cluster_buf_init(&b);
	if (l && cluster_enc_session_done(&b, f->full) == 0)
		cluster__link_write(l, b.data, b.len);
	cluster_buf_free(&b);
	free(f->full);
	free(f->from_peer);
	free(f->links);
	free(f);
}

static void fence_clear_link(struct cluster *cl, struct cluster_fence *f, uint64_t link_id)
{
	for (size_t i = 0; i < f->nlinks; i++) {
		if (f->links[i] == link_id) {
			f->links[i] = f->links[--f->nlinks];
			break;
		}
	}
	if (!f->nlinks && f->armed)
		fence_done(cl, f);
}

int cluster__fence_pong(struct link *l, uint64_t token)
{
	struct cluster *cl = l->cl;
	struct cluster_fence *f;

	if ((token & CLUSTER_FENCE_TAG_MASK) != CLUSTER_FENCE_TAG)
		return 0;
	for (f = cl->fences; f; f = f->next) {
		if (f->seq == (uint32_t)token) {
			fence_clear_link(cl, f, l->id);
			break;
		}
	}
	return 1;
}

/* A link closes: no fence waits for it, no tombstone points over it. */
void cluster__moves_link_closed(struct link *l)
{
	struct cluster *cl = l->cl;
	struct cluster_fence *f, *fn;
	struct cluster_tomb *t, *tn;

	for (f = cl->fences; f; f = fn) {
		fn = f->next; /* fence_done() may free f, never another fence */
		fence_clear_link(cl, f, l->id);
	}
	if (!l->peer_id || cl->leaving)
		return;
	for (t = cl->tombs; t; t = tn) {
		tn = t->next;
		if (strcmp(t->peer_id, l->peer_id) == 0 &&
		    !cluster__find_up_link(cl, l->peer_id, l))
			tomb_end(cl, t, "link-closed");
	}
}

void cluster__moves_tick(struct cluster *cl, uint64_t now)
{
	struct cluster_fence *f, *fn;
	struct cluster_tomb *t, *tn;

	for (f = cl->fences; f; f = fn) {
		fn = f->next;
		if (now >= f->deadline)
			fence_done(cl, f); /* a silent peer is found by the keepalive */
	}
	for (t = cl->tombs; t; t = tn) {
		tn = t->next;
		if (now >= t->expires)
			tomb_end(cl, t, "expired");
	}
}

void cluster__moves_free(struct cluster *cl)
{
	while (cl->fences) {
		struct cluster_fence *f = cl->fences;

		cl->fences = f->next;
		free(f->full);
		free(f->from_peer);
		free(f->links);
		free(f);
	}
	while (cl->tombs) {
		struct cluster_tomb *t = cl->tombs;

		cl->tombs = t->next;
		free(t->full);
		free(t->peer_id);
		free(t);
	}
}

/* ---- the frames ---- */

void cluster__on_session_frame(struct link *l, const struct cluster_msg *m)
{
	struct cluster *cl = l->cl;
	char previd[CLUSTER_PREVID_MAX + 1], bare[CLUSTER_JID_MAX + 1], full[CLUSTER_JID_MAX + 1];
	struct cluster_tomb *t;

	switch (m->type) {
	case CLUSTER_MSG_SESSION_REQ:
		memcpy(previd, m->u.sreq.previd.p, m->u.sreq.previd.len);
		previd[m->u.sreq.previd.len] = '\0';
		memcpy(bare, m->u.sreq.bare.p, m->u.sreq.bare.len);
		bare[m->u.sreq.bare.len] = '\0';
		if (cl->hooks.session_req)
			cl->hooks.session_req(cl->ud, l->peer_id, m->u.sreq.req, previd, bare,
					      m->u.sreq.h);
		else
			cluster_session_nak(cl, l->peer_id, m->u.sreq.req, CLUSTER_NAK_NOT_FOUND);
		break;
	case CLUSTER_MSG_SESSION_NAK:
		if (cl->hooks.session_nak)
			cl->hooks.session_nak(cl->ud, l->peer_id, m->u.snak.req, m->u.snak.reason);
		break;
	case CLUSTER_MSG_SESSION_STATE:
		memcpy(full, m->u.sstate.full.p, m->u.sstate.full.len);
		full[m->u.sstate.full.len] = '\0';
		cl->st.moved_in++;
		if (cl->hooks.session_state)
			cl->hooks.session_state(cl->ud, l->peer_id, m->u.sstate.req, full,
						(const uint8_t *)m->u.sstate.state.p,
						m->u.sstate.state.len);
		break;
	case CLUSTER_MSG_SESSION_DONE:
		memcpy(full, m->u.sdone.full.p, m->u.sdone.full.len);
		full[m->u.sdone.full.len] = '\0';
		t = tomb_find(cl, full);
		if (t && strcmp(t->peer_id, l->peer_id) == 0)
			tomb_end(cl, t, "done");
		break;
	default:
		break;
	}
}

/* ---- the API ---- */

int cluster_session_request(struct cluster *cl, uint64_t req, const char *previd, const char *bare,
			    uint32_t h)
{
	const struct cluster_route *r, *o;
	uint64_t ids[CLUSTER_REQ_FANOUT];
	struct cluster_buf b;
	struct link *l, *ln;
	size_t nids = 0, i;
	int n = 0;

	/* The session is in the route table: only the instances holding a
	 * resource of this user can have it. One request per instance;
	 * collected first (a failed write drops routes from the list). */
	for (r = cluster_routes_bare(&cl->remote, bare); r && nids < CLUSTER_REQ_FANOUT;
	     r = r->bnext) {
		l = r->owner->ud;
		for (o = cluster_routes_bare(&cl->remote, bare); o != r; o = o->bnext)
			if (o->owner == r->owner)
				break;
		if (o == r && capable(l))
			ids[nids++] = l->id;
	}
	cluster_buf_init(&b);
	if (nids && cluster_enc_session_req(&b, req, previd, bare, h) < 0) {
		cluster_buf_free(&b);
		return -EINVAL;
	}
	for (l = cl->links; l; l = ln) {
		ln = l->next;
		for (i = 0; i < nids; i++)
			if (ids[i] == l->id && capable(l) &&
			    cluster__link_write(l, b.data, b.len) == 0)
				n++;
	}
	cluster_buf_free(&b);
	return n;
}

int cluster_session_nak(struct cluster *cl, const char *peer, uint64_t req, unsigned reason)
{
	struct link *l = capable_link(cl, peer);
	int rc;

	if (!l)
		return -ENOTCONN;
	cluster_buf_reset(&cl->obuf);
	rc = cluster_enc_session_nak(&cl->obuf, req, reason);
	if (rc < 0) {
		cluster_buf_reset(&cl->obuf);
		return -EINVAL;
	}
	return cluster__link_flush_obuf(l);
}

int cluster_session_give(struct cluster *cl, const char *peer, uint64_t req, const char *full,
			 const uint8_t *state, size_t len)
{
	struct link *l = capable_link(cl, peer);
	struct cluster_tomb *t;
	int rc;

	if (!l)
		return -ENOTCONN;
	t = calloc(1, sizeof(*t));
	if (t) {
		t->full = strdup(full);
		t->peer_id = strdup(peer);
	}
	if (!t || !t->full || !t->peer_id) {
		if (t) {
			free(t->full);
			free(t->peer_id);
		}
		free(t);
		return -ENOMEM;
	}
	cluster_buf_reset(&cl->obuf);
	rc = cluster_enc_session_state(&cl->obuf, req, full, state, len);
	if (rc < 0) {
		cluster_buf_reset(&cl->obuf);
		free(t->full);
		free(t->peer_id);
		free(t);
		return rc == CLUSTER_PROTO_ENOMEM ? -ENOMEM : -E2BIG;
	}
	rc = cluster__link_flush_obuf(l);
	if (rc < 0) {
		free(t->full);
		free(t->peer_id);
		free(t);
		return rc;
	}
	/* Gone from here: no ROUTE_DEL yet (peers route by our entry until
	 * they have the new owner's), and what still comes goes on. */
	cluster_routes_del(&cl->local, &cl->local_owner, full);
	t->expires = now_ms(cl) + CLUSTER_TOMB_MS;
	t->next = cl->tombs;
	cl->tombs = t;
	cl->st.moved_out++;
	return 0;
}

int cluster_session_taken(struct cluster *cl, const char *full, const char *from_peer)
{
	struct cluster_fence *f = calloc(1, sizeof(*f));
	struct link *l;
	size_t n = 0;

	if (f) {
		f->full = strdup(full);
		f->from_peer = strdup(from_peer);
		for (l = cl->links; l; l = l->next)
			n += l->state == LINK_UP;
		f->links = calloc(n ? n : 1, sizeof(*f->links));
	}
	if (!f || !f->full || !f->from_peer || !f->links) {
		if (f) {
			free(f->full);
			free(f->from_peer);
			free(f->links);
		}
		free(f);
		return -ENOMEM;
	}
	f->seq = ++cl->fence_seq;
	f->deadline = now_ms(cl) + CLUSTER_FENCE_MS;
	f->next = cl->fences;
	cl->fences = f;
	{
		struct cluster_buf b;
		struct link *ln;

		cluster_buf_init(&b);
		if (cluster_enc_ping(&b, CLUSTER_MSG_PING, CLUSTER_FENCE_TAG | f->seq) == 0) {
			for (l = cl->links; l && f->nlinks < n; l = ln) {
				ln = l->next;
				if (l->state == LINK_UP &&
				    cluster__link_write(l, b.data, b.len) == 0)
					f->links[f->nlinks++] = l->id;
			}
		}
		cluster_buf_free(&b);
	}
	f->armed = 1;
	if (!f->nlinks)
		fence_done(cl, f);
	return 0;
}
