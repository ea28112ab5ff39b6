/*
 * XEP-0198 stream management on chatd's sessions (sm.h): the elements, the
 * detach at a connection's end, resumption on this instance, the end of a
 * session that is not resumed.
 */
#include "sm.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "move.h"
#include "presence.h"
#include "router.h"
#include "session.h"
#include "cluster/cluster_proto.h"
#include "cluster_glue.h"
#include "sm_state.h"
#include "smq.h"
#include "srv.h"
#include "stanzaparse.h"
#include "xmppns.h"
#include "xstream.h"

/* A <resume/> asked of peers (the id is not held here). */
struct sm_wait {
	struct sm_wait *next; /* srv->sm_waits */
	uint64_t req;	      /* the request's id on the links */
	struct conn *c;	      /* the connection that resumes */
	unsigned pending;     /* peers that have not answered */
	enum resume_fail why; /* the most telling refusal so far */
	char previd[SMQ_ID_LEN + 1];
};

/* ---- small helpers ---- */

static int is_sm(const struct xnode *n, const char *name)
{
	const char *ns = xnode_ns(n);

	return ns && strcmp(ns, NS_SM) == 0 && strcmp(n->name, name) == 0;
}

/* A decimal uint32 (XEP-0198 h: xs:unsignedInt). 0 or -EINVAL. */
static int parse_h(const char *s, uint32_t *out)
{
	unsigned long long v = 0;

	if (!s || !*s)
		return -EINVAL;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -EINVAL;
		v = v * 10 + (unsigned)(*s - '0');
		if (v > UINT32_MAX)
			return -EINVAL;
	}
	*out = (uint32_t)v;
	return 0;
}

/* <failed xmlns='urn:xmpp:sm:3' [h='N']><cond xmlns=stanzas/></failed> */
static void send_failed(struct conn *c, const char *cond, const struct smq *q)
{
	struct xbuf b;

	xbuf_init(&b);
	xbuf_puts(&b, "<failed xmlns='" NS_SM "'");
	if (q)
		xbuf_printf(&b, " h='%u'", q->h_in);
	xbuf_printf(&b, "><%s xmlns='" NS_STANZAS "'/></failed>", cond);
	if (b.data)
		conn_send(c, b.data, b.len);
	xbuf_free(&b);
}

static void request_ack(struct conn *c)
{
	if (c->detached || c->sm->r_pending)
		return;
	c->sm->r_pending = 1;
	conn_send_str(c, "<r xmlns='" NS_SM "'/>");
}

void sm_features(struct conn *c, struct xbuf *b)
{
	xbuf_puts(b, "<sm xmlns='" NS_SM "'/>");
}

void sm_inbound(struct conn *c)
{
	if (c->sm)
		c->sm->h_in++;
}

/* Hands every queued stanza of q to router_undeliverable() and empties q.
 * The bytes are chatd's own serialization, parsed back with the same
 * stream layer as client input. */
static void answer_queue(struct srv *srv, struct smq *q)
{
	struct xstream_limits lim = { srv->cfg->max_stanza + 4096, srv->cfg->max_depth + 2 };
	struct stanza_parser *sp;
	struct smq_item *it;
	struct xnode *st;

	if (!q->count)
		return;
	sp = stanza_parser_new(&lim);
	for (it = q->head; it; it = it->next) {
		st = sp ? stanza_parse(sp, it->data, it->len, NULL, NULL) : NULL;
		if (!st) {
			log_warn("sm_unparsable", "bytes=%u", it->len);
			continue;
		}
		router_undeliverable(srv, st);
	}
	stanza_parser_free(sp);
	smq_clear(q);
}

/* ---- outbound ---- */

int sm_outbound(struct conn *c, const char *data, size_t len)
{
	struct smq *q = c->sm;
	size_t max = c->srv->cfg->sm_max_queue;
	int r;

	if (c->sm_overflow)
		return -ENOBUFS;
	r = smq_push(q, data, len, max);
	if (r < 0) {
		if (c->detached)
			return r; /* the sender hears it: router_deliver() */
		/* An attached client that does not acknowledge: as a slow
		 * consumer, but the stanzas it never confirmed are answered for
		 * when its session ends. */
		c->sm_overflow = 1;
		conn_fail(c, r == -ENOMEM ? CLOSE_RESOURCE_CONSTRAINT : CLOSE_POLICY_VIOLATION);
		return r;
	}
	if (c->detached)
		return 0;
	conn_send(c, data, len);
	if (q->count >= SM_ACK_EVERY || (max && q->bytes > max / 2))
		request_ack(c);
	return 0;
}

/* ---- detached sessions ---- */

/* Holds h for its resumption window: first in srv->detached, its deadline
 * scheduled. */
static void detached_link(struct srv *srv, struct conn *h)
{
	h->t_deadline = srv_now(srv) + h->sm->window_s * 1000u;
	h->next = srv->detached;
	if (srv->detached)
		srv->detached->prev = h;
	srv->detached = h;
	srv->metrics.sessions_detached++;
	srv_conn_schedule(srv, h);
}

static void detached_unlink(struct srv *srv, struct conn *h)
{
	if (h->prev)
		h->prev->next = h->next;
	else
		srv->detached = h->next;
	if (h->next)
		h->next->prev = h->prev;
	h->prev = h->next = NULL;
	dlheap_remove(&srv->deadlines, &h->dl);
	srv->metrics.sessions_detached--;
}

/* Moves the session (JID, place in the router, presence, directed
 * presence, stream management) from one struct conn to another. */
static void session_move(struct conn *to, struct conn *from)
{
	to->jid = from->jid;
	memset(&from->jid, 0, sizeof(from->jid));
	router_replace(to->srv->router, from, to);
	to->presence = from->presence;
	from->presence = NULL;
	to->directed = from->directed;
	from->directed = NULL;
	to->priority = from->priority;
	to->available = from->available;
	from->available = 0;
	to->sm = from->sm;
	from->sm = NULL;
	to->sm->owner = to;
	to->sm->r_pending = 0;
	to->authenticated = 1;
}

/* Detaches c's session into a struct conn of its own. 0, or -1 (out of
 * memory: the caller ends the session). */
static int detach(struct conn *c)
{
	struct srv *srv = c->srv;
	struct conn *h = calloc(1, sizeof(*h));
	char full[JID_BUF_SIZE];

	if (!h)
		return -ENOMEM;
	h->srv = srv;
	h->id = c->id;
	h->peer = c->peer;
	h->state = ST_ESTABLISHED;
	h->detached = 1;
	h->handle_closed = 1; /* nothing is ever written */
	h->header_sent = 1;
	session_move(h, c);
	detached_link(srv, h);
	jid_format_full(&h->jid, full, sizeof(full));
	conn_log(h, LOG_DEBUG, "detached", "jid=%s window_s=%u queued=%u", full, h->sm->window_s,
		 h->sm->count);
	return 0;
}

/* May a session that ends this way be resumed? Broken and timed-out
 * connections and moved sessions; never a clean close, a replaced
 * session, a policy violation, a shutdown. */
static int resumable(const struct conn *c, enum close_reason reason)
{
	if (!c->sm || !c->sm->window_s || !c->route || c->sm_overflow ||
	    c->srv->phase == SRV_STOPPING)
		return 0;
	switch (reason) {
	case CLOSE_CLIENT:
		return !c->stream_closed;
	case CLOSE_RESET:
	case CLOSE_TLS_ERROR:
	case CLOSE_CONNECTION_TIMEOUT:
	case CLOSE_SEE_OTHER_HOST:
		return 1;
	default:
		return 0;
	}
}

/* The session ends for good: presence, router, then its unacknowledged
 * stanzas (the session is out of the table, so none comes back to it). */
static void end_session(struct conn *c)
{
	struct smq *q = c->sm;

	if (q) {
		smq_table_del(&c->srv->sm_ids, q);
		c->sm = NULL;
	}
	session_end(c);
	if (q) {
		answer_queue(c->srv, q);
		free(q);
	}
}

static void wait_end(struct conn *c);

void sm_close(struct conn *c, enum close_reason reason)
{
	/* A state a peer sends after this becomes a detached session. */
	wait_end(c);
	if (resumable(c, reason) && detach(c) == 0)
		return;
	end_session(c);
}

void sm_end_detached(struct conn *h, enum close_reason reason)
{
	struct srv *srv = h->srv;
	char full[JID_BUF_SIZE];

	if (h->closing)
		return;
	h->closing = 1;
	h->close_reason = (uint8_t)reason;
	detached_unlink(srv, h);
	jid_format_full(&h->jid, full, sizeof(full));
	conn_log(h, LOG_INFO, "detached_end", "jid=%s reason=%s queued=%u", full,
		 close_reason_name(reason), h->sm ? h->sm->count : 0);
	end_session(h);
	/* Freed from the idle handle: callers may still hold it. */
	h->pend_next = srv->dead;
	srv->dead = h;
	srv_reap_soon(srv);
}

/* A session that a resumption (here or from a peer) could not trust ends:
 * held, it is dropped; on a live connection, that connection closes. */
static void session_end_replaced(struct conn *o)
{
	if (o->detached)
		sm_end_detached(o, CLOSE_UNDEFINED_CONDITION);
	else
		conn_close(o, CLOSE_CONFLICT, "conflict", "replaced by a new session");
}

void sm_reap(struct srv *srv)
{
	struct conn *h;

	while ((h = srv->dead)) {
		srv->dead = h->pend_next;
		session_free(h);
		free(h);
	}
}

void sm_free(struct conn *c)
{
	wait_end(c);
	if (!c->sm)
		return;
	smq_table_del(&c->srv->sm_ids, c->sm);
	smq_clear(c->sm);
	free(c->sm);
	c->sm = NULL;
}

/* ---- elements ---- */

static void handle_enable(struct conn *c, struct xnode *n)
{
	const struct config *cfg = c->srv->cfg;
	const char *resume = xnode_attr(n, "resume"), *max = xnode_attr(n, "max");
	int want = resume && (strcmp(resume, "true") == 0 || strcmp(resume, "1") == 0);
	uint32_t window = cfg->resume_timeout, m;
	struct smq *q;
	struct xbuf b;

	if (c->state != ST_ESTABLISHED || c->sm) {
		/* XEP-0198 3: only once, and only after binding. */
		send_failed(c, "unexpected-request", NULL);
		return;
	}
	q = malloc(sizeof(*q));
	if (!q) {
		send_failed(c, "resource-constraint", NULL);
		return;
	}
	smq_init(q);
	q->owner = c;
	if (want && window && max && parse_h(max, &m) == 0 && m > 0 && m < window)
		window = m; /* the client's preference, when shorter */
	if (want && window) {
		if (srv_random_hex(c->srv, q->id, SMQ_ID_LEN / 2) != 0 ||
		    smq_table_add(&c->srv->sm_ids, q) != 0) {
			free(q);
			send_failed(c, "resource-constraint", NULL);
			return;
		}
		q->window_s = window;
	}
	c->sm = q;
	xbuf_init(&b);
	if (q->window_s)
		xbuf_printf(&b, "<enabled xmlns='" NS_SM "' id='%s' resume='true' max='%u'/>",
			    q->id, q->window_s);
	else
		xbuf_puts(&b, "<enabled xmlns='" NS_SM "'/>");
	if (b.data)
		conn_send(c, b.data, b.len);
	xbuf_free(&b);
	conn_log(c, LOG_DEBUG, "sm_enabled", "resume_s=%u", q->window_s);
}

static void handle_ack(struct conn *c, struct xnode *n)
{
	uint32_t h;
	long r;

	if (!c->sm) {
		conn_close(c, CLOSE_UNSUPPORTED_STANZA_TYPE, "unsupported-stanza-type",
			   "stream management is not enabled");
		return;
	}
	if (parse_h(xnode_attr(n, "h"), &h) != 0) {
		conn_close(c, CLOSE_BAD_FORMAT, "bad-format",
			   "h must be an unsigned 32-bit integer");
		return;
	}
	r = smq_ack(c->sm, h);
	if (r < 0) {
		char app[160];

		snprintf(app, sizeof(app),
			 "<handled-count-too-high xmlns='" NS_SM "' h='%u' send-count='%u'/>", h,
			 c->sm->h_out);
		conn_close_with(c, CLOSE_UNDEFINED_CONDITION, "undefined-condition", NULL,
				"you acknowledged stanzas never sent", app);
		return;
	}
	c->sm->r_pending = 0;
	if (c->moving) {
		move_acked(c); /* what it received is known: now it may go */
		return;
	}
	if (c->sm->count >= SM_ACK_EVERY)
		request_ack(c);
}

static void handle_r(struct conn *c)
{
	char a[64];

	if (!c->sm) {
		conn_close(c, CLOSE_UNSUPPORTED_STANZA_TYPE, "unsupported-stanza-type",
			   "stream management is not enabled");
		return;
	}
	snprintf(a, sizeof(a), "<a xmlns='" NS_SM "' h='%u'/>", c->sm->h_in);
	conn_send_str(c, a);
}

/* The resumed session goes on on c: <resumed/>, then every stanza the
 * client did not acknowledge, then a request for an ack. */
static void resumed(struct conn *c, int from_peer)
{
	struct smq *q = c->sm;
	char full[JID_BUF_SIZE], b[128];

	snprintf(b, sizeof(b), "<resumed xmlns='" NS_SM "' h='%u' previd='%s'/>", q->h_in, q->id);
	conn_send_str(c, b);
	for (struct smq_item *it = q->head; it; it = it->next)
		conn_send(c, it->data, it->len);
	if (q->count)
		request_ack(c);
	free(c->user);
	c->user = NULL;
	session_set_state(c, ST_ESTABLISHED);
	c->t_deadline = 0;
	srv_conn_schedule(c->srv, c);
	c->srv->metrics.sessions_resumed_total[from_peer ? 1 : 0]++;
	jid_format_full(&c->jid, full, sizeof(full));
	conn_log(c, LOG_INFO, "resumed", "jid=%s from=%s resent=%u", full,
		 from_peer ? "peer" : "local", q->count);
}

static void resume_failed(struct conn *c, enum resume_fail why, const char *cond,
			  const char *previd)
{
	char q[80];

	c->srv->metrics.resume_failed_total[why]++;
	conn_log(c, why == RESUME_FAIL_OTHER_USER ? LOG_WARN : LOG_INFO, "resume_failed",
		 "reason=%s previd=%s", resume_fail_name(why),
		 log_quote(q, sizeof(q), previd ? previd : ""));
	send_failed(c, cond, NULL);
}

/* ---- resumption at another instance ---- */

static struct sm_wait *wait_find(struct srv *srv, uint64_t req)
{
	struct sm_wait *w;

	for (w = srv->sm_waits; w; w = w->next)
		if (w->req == req)
			return w;
	return NULL;
}

static void wait_end(struct conn *c)
{
	struct sm_wait **pp, *w = c->sm_wait;

	if (!w)
		return;
	for (pp = &c->srv->sm_waits; *pp && *pp != w; pp = &(*pp)->next)
		;
	if (*pp)
		*pp = w->next;
	free(w);
	c->sm_wait = NULL;
}

/* Asks the peers that hold a resource of the user for the session. 0 when
 * asked (the stream waits for their answer), a negative errno when no peer
 * can have it. */
static int ask_peers(struct conn *c, const char *previd, uint32_t h)
{
	struct srv *srv = c->srv;
	char bare[JID_BUF_SIZE];
	struct sm_wait *w;
	int n;

	if (!srv->cluster || !smq_id_valid(previd) ||
	    snprintf(bare, sizeof(bare), "%s@%s", c->user, srv->domain) >= (int)sizeof(bare))
		return -EINVAL;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->req = ++srv->sm_req_seq;
	n = cluster_glue_session_request(srv, w->req, previd, bare, h);
	if (n <= 0) {
		free(w);
		return -ENOENT;
	}
	w->c = c;
	w->pending = (unsigned)n;
	w->why = RESUME_FAIL_NOT_FOUND;
	memcpy(w->previd, previd, sizeof(w->previd));
	w->next = srv->sm_waits;
	srv->sm_waits = w;
	c->sm_wait = w;
	/* bounded: an instance that never answers fails the resumption */
	if (srv_due(c->t_deadline, srv_now(srv) + SM_PEER_TIMEOUT_MS)) {
		c->t_deadline = srv_now(srv) + SM_PEER_TIMEOUT_MS;
		srv_conn_schedule(srv, c);
	}
	conn_log(c, LOG_DEBUG, "resume_asked", "peers=%d", n);
	return 0;
}

static const char *fail_condition(enum resume_fail why)
{
	return why == RESUME_FAIL_HANDLED_COUNT ? "undefined-condition" : "item-not-found";
}

void sm_peer_nak(struct srv *srv, uint64_t req, unsigned reason)
{
	static const enum resume_fail map[] = {
		[CLUSTER_NAK_NOT_FOUND] = RESUME_FAIL_NOT_FOUND,
		[CLUSTER_NAK_OTHER_USER] = RESUME_FAIL_OTHER_USER,
		[CLUSTER_NAK_BAD_H] = RESUME_FAIL_HANDLED_COUNT,
		[CLUSTER_NAK_FAILED] = RESUME_FAIL_PEER,
	};
	struct sm_wait *w = wait_find(srv, req);
	enum resume_fail why;
	struct conn *c;
	char previd[SMQ_ID_LEN + 1];

	if (!w)
		return;
	why = reason < sizeof(map) / sizeof(map[0]) ? map[reason] : RESUME_FAIL_NOT_FOUND;
	if (why != RESUME_FAIL_NOT_FOUND)
		w->why = why; /* one instance had it: its answer is the one */
	if (--w->pending > 0)
		return;
	c = w->c;
	why = w->why;
	memcpy(previd, w->previd, sizeof(previd));
	wait_end(c);
	resume_failed(c, why, fail_condition(why), previd);
	if (why == RESUME_FAIL_HANDLED_COUNT)
		c->t_deadline = srv_now(srv) + srv->cfg->auth_timeout * 1000u;
}

void sm_wait_expired(struct conn *c)
{
	struct srv *srv = c->srv;
	char previd[SMQ_ID_LEN + 1];

	memcpy(previd, c->sm_wait->previd, sizeof(previd));
	wait_end(c);
	resume_failed(c, RESUME_FAIL_PEER, "item-not-found", previd);
	/* a new window to bind a fresh session */
	c->t_deadline = srv_now(srv) + srv->cfg->auth_timeout * 1000u;
}

/* A peer asks for one of our sessions: it goes there, with its route. */
void sm_peer_request(struct srv *srv, const char *peer, uint64_t req, const char *previd,
		     const char *bare, uint32_t h)
{
	struct smq *q = smq_table_find(&srv->sm_ids, previd);
	struct conn *o = q ? q->owner : NULL;
	char ob[JID_BUF_SIZE], full[JID_BUF_SIZE];
	struct xbuf b;
	int rc;

	if (!o || o->closing || o->sm_wait) {
		cluster_glue_session_nak(srv, peer, req, CLUSTER_NAK_NOT_FOUND);
		return;
	}
	if (jid_format_bare(&o->jid, ob, sizeof(ob)) < 0 || strcmp(ob, bare) != 0) {
		char qp[80];

		log_warn("resume_refused", "peer=%s reason=other-user previd=%s", peer,
			 log_quote(qp, sizeof(qp), previd));
		cluster_glue_session_nak(srv, peer, req, CLUSTER_NAK_OTHER_USER);
		return;
	}
	if (h - smq_acked(q) > q->count) {
		cluster_glue_session_nak(srv, peer, req, CLUSTER_NAK_BAD_H);
		session_end_replaced(o);
		return;
	}
	smq_ack(q, h);
	jid_format_full(&o->jid, full, sizeof(full));
	xbuf_init(&b);
	rc = sm_state_encode(o, &b);
	if (rc == 0)
		rc = cluster_glue_session_give(srv, peer, req, full, (const uint8_t *)b.data,
					       b.len);
	xbuf_free(&b);
	if (rc != 0) {
		/* Not handed over: it stays here, the client may try again. */
		conn_log(o, LOG_WARN, "move_failed", "jid=%s peer=%s err=%d", full, peer, rc);
		cluster_glue_session_nak(srv, peer, req, CLUSTER_NAK_FAILED);
		return;
	}
	/* It lives on there: out of here without a word to anyone (the new
	 * instance announces it; presence goes on unchanged). */
	router_forget(srv->router, o);
	smq_table_del(&srv->sm_ids, o->sm);
	smq_clear(o->sm);
	free(o->sm);
	o->sm = NULL;
	presence_free(o);
	o->available = 0;
	conn_log(o, LOG_INFO, "moved_out", "jid=%s to=%s", full, peer);
	if (o->detached) {
		detached_unlink(srv, o);
		o->closing = 1;
		o->pend_next = srv->dead;
		srv->dead = o;
		srv_reap_soon(srv);
	} else {
		conn_close(o, CLOSE_CONFLICT, "conflict", "the session was resumed elsewhere");
	}
}

/* Puts a session that came from a peer on c (a waiting connection, or a
 * fresh detached one) and announces it. 0, or a negative errno (c holds
 * nothing). */
static int install(struct srv *srv, struct conn *c, const char *full, struct sm_state *st)
{
	struct conn *old = NULL;
	struct smq *q;

	if (jid_parse(full, &c->jid) != 0 || !c->jid.node || !c->jid.resource)
		return -EINVAL;
	old = router_find_full(srv->router, &c->jid);
	if (old) /* bound here meanwhile: the resumed session wins */
		conn_close(old, CLOSE_CONFLICT, "conflict", "replaced by a resumed session");
	q = malloc(sizeof(*q));
	if (!q)
		return -ENOMEM;
	*q = st->q;
	smq_init(&st->q);
	q->hnext = NULL;
	q->owner = c;
	if (smq_table_add(&srv->sm_ids, q) != 0)
		q->id[0] = '\0'; /* resumed, but not resumable again */
	c->sm = q;
	c->presence = st->presence;
	st->presence = NULL;
	c->directed = st->directed;
	st->directed = NULL;
	c->priority = (int8_t)st->priority;
	c->available = st->available ? 1 : 0;
	c->authenticated = 1;
	return router_add(srv->router, c, &old);
}

void sm_peer_state(struct srv *srv, const char *peer, uint64_t req, const char *full,
		   const uint8_t *state, size_t len)
{
	struct xstream_limits lim = { srv->cfg->max_stanza + 4096, srv->cfg->max_depth + 2 };
	struct sm_wait *w = wait_find(srv, req);
	struct conn *c = w ? w->c : NULL;
	struct sm_state st;
	int rc;

	rc = sm_state_decode(state, len, &lim, &st);
	if (rc != 0) {
		log_error("move_refused", "peer=%s jid=%s err=%d bytes=%zu", peer, full, rc, len);
		if (c) {
			char previd[SMQ_ID_LEN + 1];

			memcpy(previd, w->previd, sizeof(previd));
			wait_end(c);
			resume_failed(c, RESUME_FAIL_PEER, "item-not-found", previd);
		}
		return;
	}
	if (c) {
		wait_end(c);
		if (c->closing || c->state != ST_BIND || c->sm || !c->user)
			c = NULL;
	}
	if (!c) {
		/* The connection that asked is gone: the session waits here. */
		struct conn *h = calloc(1, sizeof(*h));

		if (!h) {
			log_error("move_lost", "peer=%s jid=%s", peer, full);
			sm_state_free(&st);
			return;
		}
		h->srv = srv;
		h->id = ++srv->next_conn_id;
		h->state = ST_ESTABLISHED;
		h->detached = 1;
		h->handle_closed = 1;
		h->header_sent = 1;
		if (install(srv, h, full, &st) != 0) {
			log_error("move_lost", "peer=%s jid=%s", peer, full);
			sm_state_free(&st);
			smq_table_del(&srv->sm_ids, h->sm);
			router_forget(srv->router, h);
			sm_free(h);
			session_free(h);
			free(h);
			return;
		}
		detached_link(srv, h);
		cluster_glue_session_taken(srv, full, peer);
		conn_log(h, LOG_INFO, "moved_in", "jid=%s from=%s attached=0", full, peer);
		return;
	}
	if (install(srv, c, full, &st) != 0) {
		sm_state_free(&st);
		conn_log(c, LOG_ERROR, "move_lost", "peer=%s jid=%s", peer, full);
		conn_close(c, CLOSE_RESOURCE_CONSTRAINT, "resource-constraint", NULL);
		return;
	}
	sm_state_free(&st);
	cluster_glue_session_taken(srv, full, peer);
	resumed(c, 1);
}

static void handle_resume(struct conn *c, struct xnode *n)
{
	const char *previd = xnode_attr(n, "previd");
	struct smq *q;
	struct conn *o;
	uint32_t h;

	if (c->state != ST_BIND || c->sm || !c->user) {
		resume_failed(c, RESUME_FAIL_BAD_REQUEST, "unexpected-request", previd);
		return;
	}
	if (!previd || parse_h(xnode_attr(n, "h"), &h) != 0) {
		resume_failed(c, RESUME_FAIL_BAD_REQUEST, "bad-request", previd);
		return;
	}
	q = smq_table_find(&c->srv->sm_ids, previd);
	o = q ? q->owner : NULL;
	if ((!o || o->closing) && ask_peers(c, previd, h) == 0)
		return; /* the answer comes from a peer */
	if (!o || o->closing) {
		resume_failed(c, RESUME_FAIL_NOT_FOUND, "item-not-found", previd);
		return;
	}
	/* Bound to its user: someone else's id is as unknown as a wrong one. */
	if (!o->jid.node || strcmp(o->jid.node, c->user) != 0) {
		resume_failed(c, RESUME_FAIL_OTHER_USER, "item-not-found", previd);
		return;
	}
	if (h - smq_acked(q) > q->count) {
		/* The client claims stanzas never sent: nothing can be trusted;
		 * the session ends, its queue is answered for. */
		resume_failed(c, RESUME_FAIL_HANDLED_COUNT, "undefined-condition", previd);
		session_end_replaced(o);
		return;
	}
	smq_ack(q, h);
	if (o->detached) {
		detached_unlink(c->srv, o);
		session_move(c, o);
		o->closing = 1;
		o->pend_next = c->srv->dead;
		c->srv->dead = o;
		srv_reap_soon(c->srv);
	} else {
		/* Its connection is still open (the client saw it break first):
		 * the session leaves it, then it is closed. */
		session_move(c, o);
		conn_close(o, CLOSE_CONFLICT, "conflict", "the session was resumed elsewhere");
	}
	resumed(c, 0);
}

void sm_element(struct conn *c, struct xnode *n)
{
	if (is_sm(n, "enable"))
		handle_enable(c, n);
	else if (is_sm(n, "r") && c->state == ST_ESTABLISHED)
		handle_r(c);
	else if (is_sm(n, "a") && c->state == ST_ESTABLISHED)
		handle_ack(c, n);
	else if (is_sm(n, "resume"))
		handle_resume(c, n);
	else
		conn_close(c, CLOSE_UNSUPPORTED_STANZA_TYPE, "unsupported-stanza-type",
			   "unexpected element");
	xnode_free(n);
}
