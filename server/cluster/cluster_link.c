/*
 * One link to a peer: accept or connect, read and frame, dispatch after the
 * handshake, retire a duplicate, close.
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

#include "addr.h"
#include "cluster_int.h"
#include "cluster_proto.h"
#include "cluster_routes.h"
#include "log.h"

/* ---- links ---- */

const char *const cluster__link_state_names[] = { "connecting", "hello",    "auth",   "ident",
						  "up",		"retiring", "closing" };

void cluster__target_schedule(struct target *t, int failed);

static void link_unlist(struct link *l);

/* The tick timer and the idle go last, once leaving and no link is left. */
void cluster__leave_done(struct cluster *cl)
{
	if (cl->started && !uv_is_closing((uv_handle_t *)&cl->tick)) {
		uv_timer_stop(&cl->tick);
		uv_close((uv_handle_t *)&cl->tick, cluster__on_handle_closed);
		uv_close((uv_handle_t *)&cl->fail_idle, cluster__on_handle_closed);
	}
}

/* Every target known to be peer_id has its routes now. */
static void targets_settle(struct cluster *cl, const char *peer_id)
{
	struct target *t;

	for (t = cl->targets; t; t = t->next)
		if (t->peer_id && strcmp(t->peer_id, peer_id) == 0)
			t->settled = 1;
}

void cluster__on_link_closed(uv_handle_t *h)
{
	struct link *l = h->data;
	struct cluster *cl = l->cl;

	link_unlist(l);
	if (cl->leaving && !cl->links)
		cluster__leave_done(cl);
	cl->handles--;
	outq_free(&l->q);
	free(l->in);
	free(l->hello_id);
	free(l->peer_id);
	free(l->peer_version);
	free(l);
}

static void link_unlist(struct link *l)
{
	struct link **pp = &l->cl->links;

	while (*pp && *pp != l)
		pp = &(*pp)->next;
	if (*pp)
		*pp = l->next;
}

void cluster__link_close(struct link *l, const char *reason)
{
	struct cluster *cl = l->cl;
	enum link_state was = l->state;

	if (was == LINK_CLOSING)
		return;
	l->state = LINK_CLOSING;
	if (was == LINK_UP) {
		cl->st.peers--;
		if (!l->clean && !cl->leaving)
			cl->st.link_failures++;
		log_info("cluster_link_down", "link=%llu peer=%s addr=%s reason=%s",
			 (unsigned long long)l->id, peer_name(l), l->addr, reason);
		cluster__link_drop_routes(l);
	}
	cluster__moves_link_closed(l);
	if (l->target) {
		struct target *t = l->target;

		t->link = NULL;
		cluster__target_schedule(t, was != LINK_UP || !l->clean);
		/* A peer that never comes up (a pod that is never ready) fails
		 * again and again: its 1st, 2nd, 4th, 8th... failure is logged. */
		if (was != LINK_UP)
			log_msg(cluster_dial_log_level(t->fails), "cluster_link_closed",
				"link=%llu peer=%s addr=%s state=%s reason=%s fails=%u "
				"next_dial_ms=%llu",
				(unsigned long long)l->id, peer_name(l), l->addr,
				cluster__link_state_names[was], reason, t->fails,
				(unsigned long long)(t->next_dial - now_ms(cl)));
		l->target = NULL;
		/* the peer set may have changed (a pod replaced): look again */
		if (cl->dns_name && !cl->leaving && now_ms(cl) - cl->dns_last >= 1000)
			cl->dns_next = now_ms(cl);
	} else if (was != LINK_UP)
		log_info("cluster_link_closed", "link=%llu peer=%s addr=%s state=%s reason=%s",
			 (unsigned long long)l->id, peer_name(l), l->addr,
			 cluster__link_state_names[was], reason);
	link_unlist(l);
	uv_close((uv_handle_t *)&l->tcp, cluster__on_link_closed);
}

/* Closes the links marked by cluster__link_fail(); runs right after the
 * callback that marked them. */
static void on_fail_idle(uv_idle_t *idle)
{
	struct cluster *cl = idle->data;
	struct link *l, *ln;

	uv_idle_stop(idle);
	for (l = cl->links; l; l = ln) {
		ln = l->next;
		if (l->fail_reason && l->state != LINK_CLOSING)
			cluster__link_close(l, l->fail_reason);
	}
}

void cluster__link_fail(struct link *l, const char *reason)
{
	struct cluster *cl = l->cl;

	if (l->fail_reason || l->state == LINK_CLOSING)
		return;
	l->fail_reason = reason;
	uv_idle_start(&cl->fail_idle, on_fail_idle);
}

/* Events of a link's output queue (from libuv's write callbacks only). */
static void on_outq(struct outq *q, enum outq_event ev, int status)
{
	struct link *l = q->data;

	if (ev == OUTQ_ERROR) {
		if (l->state == LINK_CLOSING) /* leaving: nothing more will flush */
			uv_close((uv_handle_t *)&l->tcp, cluster__on_link_closed);
		else
			cluster__link_fail(l, uv_err_name(status));
	} else if (ev == OUTQ_SHUTDOWN && l->state == LINK_CLOSING &&
		   !uv_is_closing((uv_handle_t *)&l->tcp)) {
		/* cluster_leave(): the LEAVING frame and all before it are out */
		uv_close((uv_handle_t *)&l->tcp, cluster__on_link_closed);
	}
	/* OUTQ_SHUTDOWN of a retiring link: read on until EOF or its deadline */
}

struct link *cluster__link_new(struct cluster *cl, int dialer)
{
	struct link *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	if (uv_tcp_init(cl->loop, &l->tcp) < 0) {
		free(l);
		return NULL;
	}
	cl->handles++;
	l->tcp.data = l;
	outq_init(&l->q, (uv_stream_t *)&l->tcp, LINK_OUTQ_MAX, 0, on_outq, l);
	l->cl = cl;
	l->dialer = dialer;
	l->id = ++cl->next_link_id;
	l->deadline = now_ms(cl) + HANDSHAKE_TIMEOUT_MS;
	l->last_rx = now_ms(cl);
	cluster_rt_owner_init(&l->routes, l);
	strcpy(l->addr, "-");
	l->next = cl->links;
	cl->links = l;
	if (RAND_bytes(l->nonce, sizeof(l->nonce)) != 1) {
		cluster__link_close(l, "no-randomness");
		return NULL;
	}
	return l;
}

static size_t link_frame_cap(const struct link *l)
{
	return l->state == LINK_UP || l->state == LINK_RETIRING ? CLUSTER_FRAME_MAX
								: CLUSTER_FRAME_MAX_PREAUTH;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct link *l = h->data;
	size_t cap = link_frame_cap(l) + CLUSTER_FRAME_HDR;
	size_t want = l->in_len + READ_CHUNK;
	uint8_t *n;

	if (want > cap)
		want = cap > l->in_len ? cap : l->in_len;
	if (l->in_cap < want) {
		n = realloc(l->in, want);
		if (n) {
			l->in = n;
			l->in_cap = want;
		}
	}
	*buf = uv_buf_init((char *)l->in + l->in_len, (unsigned)(l->in_cap - l->in_len));
}

void cluster__link_refuse(struct link *l, const char *why)
{
	l->cl->st.refused++;
	log_warn("cluster_refused", "link=%llu addr=%s peer=%s state=%s reason=%s",
		 (unsigned long long)l->id, l->addr, peer_name(l),
		 cluster__link_state_names[l->state], why);
	cluster__link_close(l, why);
}

struct link *cluster__find_up_link(struct cluster *cl, const char *peer_id, const struct link *skip)
{
	struct link *l;

	for (l = cl->links; l; l = l->next)
		if (l != skip && l->state == LINK_UP && strcmp(l->peer_id, peer_id) == 0)
			return l;
	return NULL;
}

/* Of two links between the same pair both sides keep the same one: the
 * one dialed by the lower instance id; if one side dialed both (two
 * addresses of the same instance), the one with the lower dialer nonce. */
int cluster__link_pseudonymous(const struct link *l);

static int link_preferred(const struct link *a, const struct link *b)
{
	const struct cluster *cl = a->cl;
	/* An older peer knows us by our pseudonym: compare what it compares. */
	const char *me = cluster__link_pseudonymous(a) ? cl->instance : cl->pseudonym;
	const char *da = a->dialer ? me : a->peer_id;
	const char *db = b->dialer ? me : b->peer_id;
	int c = strcmp(da, db);

	if (c)
		return c < 0;
	return memcmp(a->dialer ? a->nonce : a->peer_nonce, b->dialer ? b->nonce : b->peer_nonce,
		      CLUSTER_NONCE_LEN) < 0;
}

/* An accepted link from a peer we also know as a dial target (same IP,
 * same advertised link port): remember who the target is, so that we do
 * not dial a second link to an instance already linked. */
static void link_match_target(struct link *l)
{
	struct target *t;

	for (t = l->cl->targets; t; t = t->next) {
		if (t->port != l->peer_port || strcmp(t->host, l->ip) != 0)
			continue;
		free(t->peer_id);
		t->peer_id = strdup(l->peer_id);
	}
}

/*
 * The losing one of two links to the same peer. The peer may have written
 * stanzas on it before it saw the other link: both sides stop writing it
 * and shut its write side down, and keep reading it until EOF (at most
 * LEAVE_GRACE_MS), delivering what was already on the way. Its routes go:
 * the kept link carries the peer's full table.
 */
static void link_retire(struct link *l, struct link *kept)
{
	struct cluster *cl = l->cl;

	log_info("cluster_link_duplicate", "link=%llu peer=%s kept=%llu", (unsigned long long)l->id,
		 l->peer_id, (unsigned long long)kept->id);
	l->clean = 1;
	l->duplicate = 1;
	if (l->state == LINK_UP) {
		cl->st.peers--;
		cluster__link_drop_routes(l);
	}
	l->state = LINK_RETIRING;
	l->deadline = now_ms(cl) + LEAVE_GRACE_MS;
	if (l->target) {
		l->target->link = NULL;
		l->target = NULL;
	}
	if (outq_shutdown(&l->q) < 0)
		cluster__link_close(l, "duplicate");
}

void cluster__link_up(struct link *l)
{
	struct cluster *cl = l->cl;
	struct link *other = cluster__find_up_link(cl, l->peer_id, l);

	if (other) {
		if (link_preferred(other, l)) {
			link_retire(l, other);
			return;
		}
		link_retire(other, l);
	}
	l->state = LINK_UP;
	l->last_rx = now_ms(cl);
	cl->st.peers++;
	if (!l->dialer)
		link_match_target(l);
	if (l->target) {
		l->target->fails = 0;
		l->target->ever_up = 1;
	}
	log_info("cluster_link_up", "link=%llu peer=%s version=%s addr=%s dir=%s",
		 (unsigned long long)l->id, l->peer_id, l->peer_version, l->addr,
		 l->dialer ? "out" : "in");
	if (cluster__link_send_dump(l) == 0)
		cluster__caps_probe(l);
}

static void on_routes(struct link *l, const struct cluster_msg *m)
{
	struct cluster_route_rec rec;
	char jid[CLUSTER_JID_MAX + 1];
	size_t off = 0;
	int rc, moved;

	while (cluster_route_next(m, &off, &rec)) {
		memcpy(jid, rec.jid.p, rec.jid.len);
		jid[rec.jid.len] = '\0';
		if (m->type == CLUSTER_MSG_ROUTE_DEL) {
			const struct cluster_route *r;
			int was;

			r = cluster_routes_find(&l->cl->remote, jid, NULL);
			was = r && r->owner == &l->routes && r->available;

			if (cluster_routes_del(&l->cl->remote, &l->routes, jid) > 0 && was)
				cluster__route_gone(l->cl, jid);
			continue;
		}
		{
			const struct cluster_route *prev =
				cluster_routes_find(&l->cl->remote, jid, NULL);

			/* Another owner holds it: a session moving here from there. */
			moved = prev && prev->owner != &l->routes;
		}
		rc = cluster_routes_set(&l->cl->remote, &l->routes, jid, rec.priority,
					(rec.flags & CLUSTER_ROUTE_AVAILABLE) != 0);
		if (rc == -ENOMEM) {
			cluster__link_close(l, "out-of-memory");
			return;
		}
		if (rc < 0)
			log_warn("cluster_bad_route", "link=%llu peer=%s",
				 (unsigned long long)l->id, peer_name(l));
		if (rc == 1 && l->cl->hooks.route_added) {
			l->cl->hooks.route_added(l->cl->ud, jid, rec.priority,
						 (rec.flags & CLUSTER_ROUTE_AVAILABLE) != 0, moved);
			/* the replaced session's ROUTE_DEL may have failed on l */
			if (l->state == LINK_CLOSING)
				return;
		}
	}
}

static void on_stanza(struct link *l, const struct cluster_msg *m)
{
	struct cluster *cl = l->cl;
	char *to = strndup(m->u.stanza.to.p, m->u.stanza.to.len);
	char *from = strndup(m->u.stanza.from.p, m->u.stanza.from.len);
	int rc = -ENOENT;

	if (!to || !from) {
		cluster__link_close(l, "out-of-memory");
		goto out;
	}
	cl->st.received++;
	/* A session that moved away from here: on to its new instance (a
	 * RELAY, which goes no further). */
	if (m->type == CLUSTER_MSG_STANZA &&
	    cluster__relay(cl, to, from, m->u.stanza.xml.p, m->u.stanza.xml.len))
		goto out;
	if (cl->hooks.deliver)
		rc = cl->hooks.deliver(cl->ud, to, from, m->u.stanza.xml.p, m->u.stanza.xml.len);
	if (rc < 0)
		log_info("cluster_undeliverable", "link=%llu peer=%s to=%s rc=%d",
			 (unsigned long long)l->id, peer_name(l), to, rc);
out:
	free(to);
	free(from);
}

static void on_presence(struct link *l, const struct cluster_msg *m)
{
	struct cluster *cl = l->cl;
	char *from = strndup(m->u.presence.from.p, m->u.presence.from.len);

	if (!from) {
		cluster__link_close(l, "out-of-memory");
		return;
	}
	cl->st.received++;
	if (cl->hooks.presence)
		cl->hooks.presence(cl->ud, from, m->u.presence.xml.p, m->u.presence.xml.len);
	free(from);
}

static void link_dispatch(struct link *l, const struct cluster_msg *m)
{
	struct cluster *cl = l->cl;

	/* Before authentication only the handshake, in order. */
	if (l->state == LINK_HELLO) {
		if (m->type != CLUSTER_MSG_HELLO)
			cluster__link_refuse(l, "expected-hello");
		else
			cluster__on_hello(l, m);
		return;
	}
	if (l->state == LINK_AUTH) {
		if (m->type != CLUSTER_MSG_AUTH)
			cluster__link_refuse(l, "expected-auth");
		else
			cluster__on_auth(l, m);
		return;
	}
	if (l->state == LINK_IDENT) {
		if (m->type != CLUSTER_MSG_IDENT)
			cluster__link_refuse(l, "expected-ident");
		else
			cluster__on_ident(l, m);
		return;
	}
	if (l->state == LINK_RETIRING) {
		if (m->type == CLUSTER_MSG_STANZA || m->type == CLUSTER_MSG_RELAY)
			on_stanza(l, m);
		else if (m->type == CLUSTER_MSG_PRESENCE)
			on_presence(l, m);
		return; /* routes come on the kept link; it also answers pings */
	}
	switch (m->type) {
	case CLUSTER_MSG_ROUTE_ADD:
	case CLUSTER_MSG_ROUTE_DEL:
		on_routes(l, m);
		break;
	case CLUSTER_MSG_SYNC:
		log_info("cluster_synced", "link=%llu peer=%s routes=%zu",
			 (unsigned long long)l->id, l->peer_id, l->routes.count);
		targets_settle(cl, l->peer_id);
		break;
	case CLUSTER_MSG_STANZA:
	case CLUSTER_MSG_RELAY:
		on_stanza(l, m);
		break;
	case CLUSTER_MSG_PRESENCE:
		on_presence(l, m);
		break;
	case CLUSTER_MSG_PING: {
		uint64_t token = m->u.ping.token;

		if ((token & CLUSTER_CAPS_TAG_MASK) == CLUSTER_CAPS_PROBE) {
			/* The peer's capabilities; ours in the answer. */
			l->peer_caps = (unsigned)(token & 0xffff);
			token = CLUSTER_CAPS_ACK | CLUSTER_CAPS_MINE;
		}
		cluster_buf_reset(&cl->obuf);
		if (cluster_enc_ping(&cl->obuf, CLUSTER_MSG_PONG, token) == 0)
			cluster__link_flush_obuf(l);
		break;
	}
	case CLUSTER_MSG_PONG:
		if ((m->u.ping.token & CLUSTER_CAPS_TAG_MASK) == CLUSTER_CAPS_ACK ||
		    (m->u.ping.token & CLUSTER_CAPS_TAG_MASK) == CLUSTER_CAPS_PROBE) {
			/* an older chatd echoes the probe: no capabilities */
			l->peer_caps = (m->u.ping.token & CLUSTER_CAPS_TAG_MASK) == CLUSTER_CAPS_ACK
					       ? (unsigned)(m->u.ping.token & 0xffff)
					       : 0;
			log_debug("cluster_caps", "link=%llu peer=%s caps=%u",
				  (unsigned long long)l->id, peer_name(l), l->peer_caps);
		} else {
			cluster__fence_pong(l, m->u.ping.token);
		}
		break;
	case CLUSTER_MSG_SESSION_REQ:
	case CLUSTER_MSG_SESSION_NAK:
	case CLUSTER_MSG_SESSION_STATE:
	case CLUSTER_MSG_SESSION_DONE:
		cluster__on_session_frame(l, m);
		break;
	case CLUSTER_MSG_LEAVING:
		l->clean = 1;
		log_info("cluster_peer_leaving", "link=%llu peer=%s", (unsigned long long)l->id,
			 l->peer_id);
		cluster__link_close(l, "peer-leaving");
		break;
	default:
		cluster__link_close(l, "unexpected-frame");
		break;
	}
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct link *l = s->data;
	size_t off = 0;

	if (nread == 0)
		return;
	if (nread < 0) {
		cluster__link_close(l, nread == UV_EOF ? "eof" : uv_err_name((int)nread));
		return;
	}
	if (l->state == LINK_CLOSING)
		return;
	l->in_len += (size_t)nread;
	while (l->state != LINK_CLOSING) {
		const uint8_t *payload;
		struct cluster_msg m;
		size_t plen;
		uint8_t type;
		long n;
		int rc;

		n = cluster_frame_split(l->in + off, l->in_len - off, link_frame_cap(l), &type,
					&payload, &plen);
		if (n == CLUSTER_PROTO_EAGAIN)
			break;
		if (n < 0) {
			cluster__link_refuse(l, n == CLUSTER_PROTO_E2BIG ? "frame-too-large"
									 : "bad-frame");
			return;
		}
		rc = cluster_msg_decode(type, payload, plen, &m);
		if (rc < 0) {
			log_warn("cluster_bad_frame", "link=%llu peer=%s type=%s error=\"%s\"",
				 (unsigned long long)l->id, peer_name(l),
				 cluster_msg_type_name(type), cluster_proto_strerror(rc));
			cluster__link_refuse(l, rc == CLUSTER_PROTO_ETYPE ? "unknown-frame"
									  : "bad-frame");
			return;
		}
		off += (size_t)n;
		l->last_rx = now_ms(l->cl);
		link_dispatch(l, &m);
	}
	if (l->state == LINK_CLOSING)
		return;
	if (off) {
		memmove(l->in, l->in + off, l->in_len - off);
		l->in_len -= off;
	}
	/* Shrink the buffer of an idle link back to nothing: links are few,
	 * but a burst of large stanzas should not pin a megabyte each. */
	if (l->in_len == 0 && l->in_cap > READ_CHUNK) {
		free(l->in);
		l->in = NULL;
		l->in_cap = 0;
	}
}

static void link_start(struct link *l)
{
	struct cluster *cl = l->cl;
	int rc;

	l->state = LINK_HELLO;
	rc = uv_read_start((uv_stream_t *)&l->tcp, on_alloc, on_read);
	if (rc < 0) {
		cluster__link_close(l, uv_err_name(rc));
		return;
	}
	cluster_buf_reset(&cl->obuf);
	/* Nothing identifying before the peer proved the secret: a pseudonym,
	 * no version, no port (IDENT carries them after AUTH). */
	rc = cluster_enc_hello(&cl->obuf, cl->pseudonym, "", 0, l->nonce);
	if (rc < 0) {
		cluster_buf_reset(&cl->obuf);
		cluster__link_close(l, "hello-encode");
		return;
	}
	cluster__link_flush_obuf(l);
}

void cluster__addr_string(const struct sockaddr *sa, char *buf, size_t size)
{
	if (addr_format(sa, buf, size) < 0)
		snprintf(buf, size, "?");
}

void cluster__on_connection(uv_stream_t *server, int status)
{
	struct cluster *cl = server->data;
	struct sockaddr_storage ss;
	int len = sizeof(ss);
	struct link *l;

	if (status < 0) {
		log_warn("cluster_accept", "error=%s", uv_err_name(status));
		return;
	}
	l = cluster__link_new(cl, 0);
	if (!l)
		return;
	if (uv_accept(server, (uv_stream_t *)&l->tcp) < 0) {
		cluster__link_close(l, "accept-failed");
		return;
	}
	if (uv_tcp_getpeername(&l->tcp, (struct sockaddr *)&ss, &len) == 0) {
		cluster__addr_string((struct sockaddr *)&ss, l->addr, sizeof(l->addr));
		if (ss.ss_family == AF_INET)
			uv_ip4_name((struct sockaddr_in *)&ss, l->ip, sizeof(l->ip));
		else if (ss.ss_family == AF_INET6)
			uv_ip6_name((struct sockaddr_in6 *)&ss, l->ip, sizeof(l->ip));
	}
	uv_tcp_nodelay(&l->tcp, 1);
	log_debug("cluster_accepted", "link=%llu addr=%s", (unsigned long long)l->id, l->addr);
	if (cl->leaving) {
		cluster__link_close(l, "leaving");
		return;
	}
	link_start(l);
}

void cluster__on_connect(uv_connect_t *req, int status)
{
	struct link *l = req->data;

	if (l->state == LINK_CLOSING)
		return;
	if (status < 0) {
		cluster__link_close(l, uv_err_name(status));
		return;
	}
	uv_tcp_nodelay(&l->tcp, 1);
	link_start(l);
}
