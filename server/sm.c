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
#include "presence.h"
#include "router.h"
#include "session.h"
#include "smq.h"
#include "srv.h"
#include "xstream.h"

#define SM_JID_MAX (3 * 1024 + 4)

static const char SM_PARSE_HEADER[] = "<stream:stream xmlns='jabber:client' "
				      "xmlns:stream='http://etherx.jabber.org/streams' "
				      "version='1.0'>";

/* ---- small helpers ---- */

static int is_sm(const struct xnode *n, const char *name)
{
	const char *ns = xnode_ns(n);

	return ns && strcmp(ns, NS_SM) == 0 && strcmp(n->name, name) == 0;
}

/* A decimal uint32 (XEP-0198 h: xs:unsignedInt). 0 or -1. */
static int parse_h(const char *s, uint32_t *out)
{
	unsigned long long v = 0;

	if (!s || !*s)
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (unsigned)(*s - '0');
		if (v > UINT32_MAX)
			return -1;
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

/* ---- parsing queued stanzas back (to answer for them) ---- */

struct sm_parse {
	struct xnode *st;
	unsigned n;
};

static void parse_open(void *ud, const struct xnode *header, const char *default_ns)
{
}

static void parse_stanza(void *ud, struct xnode *st)
{
	struct sm_parse *p = ud;

	if (p->n++ == 0)
		p->st = st;
	else
		xnode_free(st);
}

static void parse_close(void *ud)
{
}

static const struct xstream_cbs parse_cbs = { parse_open, parse_stanza, parse_close };

/* Hands every queued stanza of q to router_undeliverable() and empties q.
 * The bytes are chatd's own serialization: parsed with the same stream
 * layer as client input, all in one stream. */
static void answer_queue(struct srv *srv, struct smq *q)
{
	struct xstream_limits lim = { srv->cfg->max_stanza + 4096, srv->cfg->max_depth + 2 };
	struct sm_parse p = { 0 };
	struct xstream *xs;
	struct smq_item *it;

	if (!q->count)
		return;
	xs = xstream_new(&lim, &parse_cbs, &p);
	if (xs &&
	    xstream_feed(xs, SM_PARSE_HEADER, sizeof(SM_PARSE_HEADER) - 1, NULL) != XSTREAM_OK) {
		xstream_free(xs);
		xs = NULL;
	}
	for (it = q->head; it; it = it->next) {
		p.st = NULL;
		p.n = 0;
		if (!xs || xstream_feed(xs, it->data, it->len, NULL) != XSTREAM_OK || p.n != 1) {
			log_warn("sm_unparsable", "bytes=%u", it->len);
			xnode_free(p.st);
			continue;
		}
		router_undeliverable(srv, p.st);
	}
	xstream_free(xs);
	smq_clear(q);
}

/* ---- outbound ---- */

int sm_outbound(struct conn *c, const char *data, size_t len)
{
	struct smq *q = c->sm;
	size_t max = c->srv->cfg->sm_max_queue;
	int r;

	if (c->sm_overflow)
		return -1;
	r = smq_push(q, data, len, max);
	if (r < 0) {
		if (c->detached)
			return -1; /* the sender hears it: router_deliver() */
		/* An attached client that does not acknowledge: as a slow
		 * consumer, but the stanzas it never confirmed are answered for
		 * when its session ends. */
		c->sm_overflow = 1;
		conn_fail(c, r == -ENOMEM ? CLOSE_RESOURCE_CONSTRAINT : CLOSE_POLICY_VIOLATION);
		return -1;
	}
	if (c->detached)
		return 0;
	conn_send(c, data, len);
	if (q->count >= SM_ACK_EVERY || (max && q->bytes > max / 2))
		request_ack(c);
	return 0;
}

/* ---- detached sessions ---- */

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
	char full[SM_JID_MAX];

	if (!h)
		return -1;
	h->srv = srv;
	h->id = c->id;
	h->peer = c->peer;
	h->state = ST_ESTABLISHED;
	h->detached = 1;
	h->handle_closed = 1; /* nothing is ever written */
	h->header_sent = 1;
	session_move(h, c);
	h->t_deadline = srv_now(srv) + h->sm->window_s * 1000u;
	h->next = srv->detached;
	if (srv->detached)
		srv->detached->prev = h;
	srv->detached = h;
	srv->metrics.sessions_detached++;
	srv_conn_schedule(srv, h);
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

void sm_close(struct conn *c, enum close_reason reason)
{
	if (resumable(c, reason) && detach(c) == 0)
		return;
	end_session(c);
}

void sm_end_detached(struct conn *h, enum close_reason reason)
{
	struct srv *srv = h->srv;
	char full[SM_JID_MAX];

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
	char full[SM_JID_MAX], b[128];

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
		if (o->detached)
			sm_end_detached(o, CLOSE_UNDEFINED_CONDITION);
		else
			conn_close(o, CLOSE_CONFLICT, "conflict", "replaced by a new session");
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
