/*
 * Client connections: accept, read, write with a bound, TLS swap, and the
 * one close path. The protocol itself is in session.c.
 */
#include "conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "log.h"
#include "presence.h"
#include "session.h"
#include "sm.h"
#include "srv.h"
#include "tlsbio.h"
#include "ws.h"
#include "xmppns.h"
#include "xstream.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

static const char *const state_names[] = {
	[ST_HEADER] = "header",	  [ST_NEGOTIATE] = "negotiate", [ST_SASL] = "sasl",
	[ST_RESTART] = "restart", [ST_BIND] = "bind",		[ST_ESTABLISHED] = "established",
	[ST_CLOSED] = "closed",
};

const char *conn_state_name(enum conn_state s)
{
	return (unsigned)s < sizeof(state_names) / sizeof(state_names[0]) ? state_names[s] : "?";
}

uint32_t conn_now(const struct conn *c)
{
	return srv_now(c->srv);
}

const char *conn_peer(const struct conn *c, char *buf, size_t size)
{
	if (addr_format(&c->peer.sa, buf, size) < 0)
		snprintf(buf, size, "?");
	return buf;
}

void conn_log(const struct conn *c, enum log_level level, const char *event, const char *fmt, ...)
{
	char rest[1536], peer[64];
	va_list ap;

	if (level < log_get_level())
		return;
	va_start(ap, fmt);
	vsnprintf(rest, sizeof(rest), fmt, ap);
	va_end(ap);
	log_msg(level, event, "conn=%llu peer=%s%s%s", (unsigned long long)c->id,
		conn_peer(c, peer, sizeof(peer)), rest[0] ? " " : "", rest);
}

/* ------------------------------------------------------ input shaping */

static void conn_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void conn_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);

/* The bucket that applies now: (bytes/s, bytes); rate 0 = no limit. */
static void conn_bucket(const struct conn *c, unsigned *rate, unsigned *burst)
{
	const struct config *cfg = c->srv->cfg;

	*rate = c->authenticated ? cfg->rate_limit : cfg->preauth_rate_limit;
	*burst = c->authenticated ? cfg->rate_burst : cfg->preauth_rate_burst;
}

static void conn_refill(struct conn *c)
{
	uint32_t now = conn_now(c), dt = now - c->t_fill;
	unsigned rate, burst;

	conn_bucket(c, &rate, &burst);
	c->t_fill = now;
	if (dt > 1000000)
		dt = 1000000;		 /* any bucket is full long before; no overflow */
	c->tokens += (int64_t)rate * dt; /* bytes/s x ms = milli-bytes */
	if (c->tokens > (int64_t)burst * 1000)
		c->tokens = (int64_t)burst * 1000;
}

static void conn_unlink_paused(struct conn *c)
{
	if (c->paused_prev)
		c->paused_prev->paused_next = c->paused_next;
	else
		c->srv->paused = c->paused_next;
	if (c->paused_next)
		c->paused_next->paused_prev = c->paused_prev;
	c->paused_next = c->paused_prev = NULL;
	c->paused = 0;
	c->yielded = 0;
	c->held = 0;
}

enum pause_why { PAUSE_SHAPER, PAUSE_YIELD, PAUSE_HOLD };

static void conn_pause(struct conn *c, enum pause_why why)
{
	struct srv *srv = c->srv;
	int yield = why == PAUSE_YIELD;

	if (c->paused)
		return;
	uv_read_stop((uv_stream_t *)&c->tcp);
	c->paused = 1;
	c->yielded = yield ? 1 : 0;
	c->held = why == PAUSE_HOLD;
	c->paused_prev = NULL;
	c->paused_next = srv->paused;
	if (srv->paused)
		srv->paused->paused_prev = c;
	srv->paused = c;
	if (why == PAUSE_SHAPER)
		srv->metrics.input_paused_total++;
	srv_paused(srv, yield);
}

static void conn_unpause(struct conn *c)
{
	int r;

	conn_unlink_paused(c);
	if (c->eof || c->handle_closed)
		return;
	r = uv_read_start((uv_stream_t *)&c->tcp, conn_alloc_cb, conn_read_cb);
	if (r && !c->closing) {
		c->eof = 1;
		conn_close(c, CLOSE_RESET, NULL, NULL);
	}
}

/* Bytes were read and processed: charge them, pause if due. */
static void conn_account(struct conn *c, size_t n)
{
	struct srv *srv = c->srv;
	unsigned rate, burst;

	if (c->held)
		return; /* t_fill is its deadline now */
	conn_bucket(c, &rate, &burst);
	if (rate) {
		conn_refill(c);
		c->tokens -= (int64_t)n * 1000;
		if (c->tokens < 0) {
			conn_pause(c, PAUSE_SHAPER);
			return;
		}
	}
	if (c->iter != srv->iter) {
		c->iter = srv->iter;
		c->iter_bytes = 0;
	}
	c->iter_bytes += (uint32_t)n;
	if (c->iter_bytes >= SRV_FAIR_BYTES)
		conn_pause(c, PAUSE_YIELD);
}

unsigned conn_resume_shaped(struct srv *srv)
{
	struct conn *c, *next;
	unsigned left = 0;

	for (c = srv->paused; c; c = next) {
		next = c->paused_next;
		if (c->yielded)
			continue;
		if (c->held) {
			if (srv_due(conn_now(c), c->t_fill))
				conn_close(c, CLOSE_POLICY_VIOLATION, "policy-violation",
					   "too many failed logins; try again later");
			else
				left++;
			continue;
		}
		conn_refill(c);
		if (c->tokens >= 0)
			conn_unpause(c);
		else
			left++;
	}
	return left;
}

void conn_hold(struct conn *c, uint32_t ms)
{
	if (c->paused)
		conn_unlink_paused(c);
	c->t_fill = conn_now(c) + ms;
	conn_pause(c, PAUSE_HOLD);
}

void conn_resume_yielded(struct srv *srv)
{
	struct conn *c, *next;

	for (c = srv->paused; c; c = next) {
		next = c->paused_next;
		if (c->yielded)
			conn_unpause(c);
	}
}

/* ------------------------------------------------------------- closing */

static void conn_close_cb(uv_handle_t *h)
{
	struct conn *c = container_of(h, struct conn, tcp);
	struct srv *srv = c->srv;

	if (c->paused)
		conn_unlink_paused(c);
	if (c->refused_linger)
		srv->refused_lingering--;
	srv_conn_removed(srv, c);
	outq_free(&c->q);
	xstream_free(c->xs);
	tlsbio_free(c->tls);
	ws_free(c->ws);
	session_free(c);
	free(c);
}

void conn_destroy(struct conn *c)
{
	if (c->handle_closed)
		return;
	if (!c->closing)
		conn_close(c, CLOSE_RESET, NULL, NULL); /* counts it; calls us back */
	if (c->handle_closed)
		return;
	c->handle_closed = 1;
	uv_close((uv_handle_t *)&c->tcp, conn_close_cb);
}

static struct outq *conn_q(struct conn *c);

void conn_close(struct conn *c, enum close_reason reason, const char *cond, const char *text)
{
	conn_close_with(c, reason, cond, NULL, text, NULL);
}

void conn_close_with(struct conn *c, enum close_reason reason, const char *cond,
		     const char *cond_text, const char *text, const char *app)
{
	struct xbuf b;

	if (c->detached) {
		sm_end_detached(c, reason); /* a session without a connection */
		return;
	}
	if (c->closing)
		return;
	c->closing = 1;
	c->close_reason = (uint8_t)reason;
	/* Counted when decided, not when the socket finally closes: the gauge
	 * is what the deployer watches, and a lingering socket is done. */
	c->srv->metrics.closed_total[reason]++;
	c->srv->metrics.connections--;
	if (c->ws)
		c->srv->metrics.ws_connections--;
	connlife_close(&c->srv->metrics.life, &c->life, uv_now(c->srv->loop));
	if (c->xs && c->in_feed)
		xstream_stop(c->xs);
	if (cond && !c->write_dead) {
		xbuf_init(&b);
		if (!c->header_sent)
			session_header(c, &b);
		if (cond_text) {
			xbuf_printf(&b, "<stream:error><%s xmlns='" NS_STREAMS "'>", cond);
			xbuf_escape(&b, cond_text, strlen(cond_text));
			xbuf_printf(&b, "</%s>", cond);
		} else {
			xbuf_printf(&b, "<stream:error><%s xmlns='" NS_STREAMS "'/>", cond);
		}
		if (text) {
			xbuf_puts(&b, "<text xmlns='" NS_STREAMS "'>");
			xbuf_escape(&b, text, strlen(text));
			xbuf_puts(&b, "</text>");
		}
		if (app)
			xbuf_puts(&b, app);
		xbuf_puts(&b, "</stream:error></stream:stream>");
		if (b.data)
			conn_send(c, b.data, b.len);
		xbuf_free(&b);
	} else if (reason == CLOSE_CLIENT && c->header_sent && !c->eof) {
		/* The client sent </stream:stream>: answer in kind. */
		conn_send_str(c, "</stream:stream>");
	}
	{
		char q[256];

		/* Orderly closes, refusals (counted by the rate-limited "refused"
		 * line) and the shutdown of every connection (one "shutdown" line)
		 * are routine. */
		int routine =
			reason == CLOSE_CLIENT || reason == CLOSE_SYSTEM_SHUTDOWN || c->refused;

		conn_log(c, routine ? LOG_DEBUG : LOG_INFO, "close", "reason=%s state=%s text=%s",
			 close_reason_name(reason), conn_state_name((enum conn_state)c->state),
			 log_quote(q, sizeof(q), text ? text : ""));
	}
	session_set_state(c, ST_CLOSED);
	sm_close(c, reason); /* detaches a resumable session, or ends it */
	if (c->eof || c->write_dead ||
	    (c->refused && c->srv->refused_lingering >= SRV_REFUSED_LINGER_MAX)) {
		conn_destroy(c);
		return;
	}
	if (c->refused) {
		c->refused_linger = 1;
		c->srv->refused_lingering++;
	}
	if (c->tls) {
		tlsbio_shutdown(c->tls);
		conn_send(c, NULL, 0); /* flush the close_notify */
	}
	/* Lingering reads (and discards) input: no shaping any more. */
	if (c->paused)
		conn_unpause(c);
	/* Half-close after the queued output (OUTQ_SHUTDOWN in conn_outq_cb);
	 * keep reading (and discarding) so unread input does not turn our close
	 * into a reset that would make the client lose the stream error. */
	if (outq_shutdown(conn_q(c)) != 0) {
		conn_destroy(c);
		return;
	}
	c->t_deadline = conn_now(c) + SRV_FLUSH_MS;
	srv_conn_schedule(c->srv, c);
}

void conn_fail(struct conn *c, enum close_reason reason)
{
	if (c->closing || c->pend_next || c->srv->pending == c)
		return;
	c->close_reason = (uint8_t)reason;
	if (reason == CLOSE_RESET)
		c->write_dead = 1;
	srv_mark_pending(c->srv, c);
}

void conn_run_pending(struct srv *srv)
{
	struct conn *c;

	while ((c = srv->pending)) {
		srv->pending = c->pend_next;
		c->pend_next = NULL;
		if (c->closing)
			continue;
		enum close_reason r = (enum close_reason)c->close_reason;
		if (r == CLOSE_POLICY_VIOLATION)
			conn_close(c, r, "policy-violation",
				   c->sm_overflow ? "unacknowledged stanza queue limit exceeded"
						  : "output queue limit exceeded");
		else if (r == CLOSE_RESOURCE_CONSTRAINT)
			conn_close(c, r, "resource-constraint", NULL);
		else
			conn_close(c, r, NULL, NULL);
	}
}

/* --------------------------------------------------------------- output */

/* Events of the output queue, from libuv's callbacks. */
static void conn_outq_cb(struct outq *q, enum outq_event ev, int status)
{
	struct conn *c = q->data;

	if (ev == OUTQ_SHUTDOWN) {
		/* Our output and FIN are out: the client has a little while to close. */
		if (status == 0 && !c->handle_closed) {
			c->t_deadline = conn_now(c) + SRV_LINGER_MS;
			srv_conn_schedule(c->srv, c);
		}
	} else if (ev == OUTQ_ERROR && !c->write_dead) {
		c->write_dead = 1;
		conn_log(c, LOG_DEBUG, "write_error", "err=%s", uv_err_name(status));
		if (!c->closing)
			conn_close(c, CLOSE_RESET, NULL, NULL);
		else
			conn_destroy(c);
	}
}

/* The output queue, set up at the first use (conn_accept() makes every
 * connection, but tests build some by hand). */
static struct outq *conn_q(struct conn *c)
{
	if (!c->q.stream)
		outq_init(&c->q, (uv_stream_t *)&c->tcp, 0, 0, conn_outq_cb, c);
	return &c->q;
}

/*
 * Writes ciphertext or plaintext to the socket (the kernel first, the rest
 * queued). `owned` is a malloc'd buffer holding data, freed here, or NULL.
 * Never closes: a failure or the output bound marks the connection
 * (conn_fail) for a close after the current callback.
 */
static void conn_raw_write(struct conn *c, const char *data, size_t len, char *owned)
{
	int r;

	if (c->write_dead || c->handle_closed || len == 0) {
		free(owned);
		return;
	}
	c->srv->metrics.bytes_out_total += len;
	r = outq_write(conn_q(c), data, len);
	free(owned);
	if (r == -ENOMEM) {
		/* Bytes lost mid-stream: nothing more can be said on it. */
		c->write_dead = 1;
		conn_fail(c, CLOSE_RESOURCE_CONSTRAINT);
	} else if (r < 0) {
		conn_fail(c, CLOSE_RESET);
	} else if (!c->closing && !c->overflow && outq_allocated(&c->q) > c->srv->cfg->max_output) {
		/* A slow reader. These bytes are still queued, as part of them
		 * may be on the wire already (and TLS records cannot be skipped):
		 * the stream stays well-formed up to the stream error, and
		 * conn_send() drops whole stanzas from now on. */
		c->overflow = 1;
		conn_fail(c, CLOSE_POLICY_VIOLATION);
	}
}

void conn_write_raw(struct conn *c, const char *data, size_t len)
{
	conn_raw_write(c, data, len, NULL);
}

/* Sends what TLS produced (handshake records, alerts, application data). */
static void conn_tls_flush(struct conn *c)
{
	size_t len;
	char *p;

	while (c->tls && tlsbio_pending_out(c->tls)) {
		p = tlsbio_steal_out(c->tls, &len);
		if (!p)
			break;
		conn_raw_write(c, p, len, p);
	}
}

void conn_send(struct conn *c, const char *data, size_t len)
{
	if (c->handle_closed || c->write_dead)
		return;
	if (c->overflow && !c->closing)
		return; /* over --max-output: whole stanzas are dropped until the close */
	if (c->ws) {
		ws_send(c, data, len);
		return;
	}
	if (!c->tls) {
		conn_raw_write(c, data, len, NULL);
		return;
	}
	if (len && tlsbio_write(c->tls, data, len) != 0) {
		conn_fail(c, CLOSE_TLS_ERROR);
		return;
	}
	conn_tls_flush(c);
}

void conn_send_str(struct conn *c, const char *s)
{
	conn_send(c, s, strlen(s));
}

int conn_send_stanza(struct conn *c, const char *data, size_t len)
{
	if (c->sm)
		return sm_outbound(c, data, len);
	conn_send(c, data, len);
	return 0;
}

int conn_send_node(struct conn *c, const struct xnode *n)
{
	struct xbuf b;
	int rc = -1;

	xbuf_init(&b);
	if (xnode_serialize(n, NS_CLIENT, &b) == 0)
		rc = conn_send_stanza(c, b.data, b.len);
	else if (!c->detached)
		conn_fail(c, CLOSE_RESOURCE_CONSTRAINT);
	xbuf_free(&b);
	return rc;
}

/* ---------------------------------------------------------------- input */

static void conn_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct conn *c = container_of(h, struct conn, tcp);

	unsigned rate, burst;

	/* libuv calls read_cb right after alloc_cb, so one buffer serves all. */
	buf->base = c->srv->rbuf;
	buf->len = sizeof(c->srv->rbuf);
	/* At most SRV_FAIR_BYTES a read (the fairness bound of a loop
	 * iteration); a shaped connection no more than its bucket holds (at
	 * least 1 KiB), so that its debt stays small. */
	buf->len = SRV_FAIR_BYTES;
	conn_bucket(c, &rate, &burst);
	if (rate && !c->closing && c->tokens / 1000 < (int64_t)buf->len)
		buf->len = c->tokens < 1024000 ? 1024 : (size_t)(c->tokens / 1000);
}

/* Ciphertext in: decrypt and hand the plaintext on. */
static void conn_tls_input(struct conn *c, const char *data, size_t len)
{
	struct srv *srv = c->srv;
	long r;

	if (tlsbio_feed(c->tls, data, len) != 0) {
		conn_close(c, CLOSE_RESOURCE_CONSTRAINT, NULL, NULL);
		return;
	}
	while (!c->closing && c->tls) {
		r = tlsbio_read(c->tls, srv->plain, sizeof(srv->plain));
		if (r > 0) {
			session_input(c, srv->plain, (size_t)r);
			continue;
		}
		if (r == 0)
			break;
		if (r == TLSBIO_ERR_CLOSED) {
			conn_close(c, CLOSE_CLIENT, NULL, NULL);
		} else {
			conn_log(c, LOG_INFO, "tls_error", "err=%s",
				 tlsbio_last_error(c->tls)[0] ? tlsbio_last_error(c->tls) : "?");
			conn_tls_flush(c); /* the alert */
			c->eof = 1;	   /* nothing more can be said over this TLS */
			conn_close(c, CLOSE_TLS_ERROR, NULL, NULL);
		}
		return;
	}
	if (c->tls) {
		if (!c->tls_up && tlsbio_handshake_done(c->tls)) {
			/* The handshake's transient memory (tens of KiB) was freed. */
			c->tls_up = 1;
			srv_trim_soon(srv);
		}
		conn_tls_flush(c);
	}
}

static void conn_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct conn *c = container_of(s, struct conn, tcp);

	if (nread == 0)
		return;
	if (nread < 0) {
		c->eof = 1;
		uv_read_stop(s);
		if (c->closing) {
			conn_destroy(c);
		} else if (nread == UV_EOF) {
			conn_close(c, CLOSE_CLIENT, NULL, NULL);
		} else {
			conn_log(c, LOG_DEBUG, "read_error", "err=%s", uv_err_name((int)nread));
			c->write_dead = 1;
			conn_close(c, CLOSE_RESET, NULL, NULL);
		}
		return;
	}
	c->srv->metrics.bytes_in_total += (uint64_t)nread;
	if (c->closing)
		return; /* lingering: discard */
	c->t_rx = conn_now(c);
	if (c->ping_seq) {
		/* Any byte proves the client alive, whatever it answers. */
		c->ping_seq = 0;
		c->t_deadline = 0;
	}
	if (c->ws)
		ws_input(c, buf->base, (size_t)nread);
	else if (c->tls)
		conn_tls_input(c, buf->base, (size_t)nread);
	else
		session_input(c, buf->base, (size_t)nread);
	if (!c->closing && !c->handle_closed)
		conn_account(c, (size_t)nread);
}

int conn_start_tls(struct conn *c)
{
	c->tls = tlsbio_new(c->srv->tls_ctx, TLSBIO_SERVER, NULL);
	return c->tls ? 0 : -ENOMEM;
}

static void conn_free_uncounted(uv_handle_t *h)
{
	free(container_of(h, struct conn, tcp));
}

int conn_accept(struct srv *srv, uv_stream_t *listener, int websocket)
{
	struct conn *c;
	int len, r;

	c = calloc(1, sizeof(*c));
	if (!c)
		return UV_ENOMEM;
	r = uv_tcp_init(srv->loop, &c->tcp);
	if (r) {
		free(c);
		return r;
	}
	c->srv = srv;
	r = uv_accept(listener, (uv_stream_t *)&c->tcp);
	if (r) {
		/* The handle must still be closed; it is not counted. */
		uv_close((uv_handle_t *)&c->tcp, conn_free_uncounted);
		return r;
	}
	c->id = ++srv->next_conn_id;
	len = sizeof(c->peer);
	uv_tcp_getpeername(&c->tcp, &c->peer.sa, &len);
	uv_tcp_nodelay(&c->tcp, 1);
	c->t_rx = srv_now(srv);
	c->t_deadline = c->t_rx + srv->cfg->auth_timeout * 1000u;
	c->t_fill = c->t_rx;
	c->tokens = (int64_t)srv->cfg->preauth_rate_burst * 1000;
	srv->metrics.accepted_total++;
	srv->metrics.connections++;
	if (websocket) {
		srv->metrics.ws_accepted_total++;
		srv->metrics.ws_connections++;
		c->ws = ws_new(c);
	}
	connlife_open(&srv->metrics.life, &c->life, uv_now(srv->loop));
	srv_conn_added(srv, c);
	srv_conn_schedule(srv, c);
	conn_log(c, LOG_DEBUG, "accept", "connections=%llu",
		 (unsigned long long)srv->metrics.connections);
	if (session_init(c) != 0 || (websocket && !c->ws)) {
		conn_close(c, CLOSE_RESOURCE_CONSTRAINT, "resource-constraint", NULL);
		return 0;
	}
	if (srv->metrics.connections > srv->cfg->max_connections) {
		c->refused = 1;
		srv->refused_total++;
		/* At most one line a second under a connect flood. */
		if (srv->refused_total == 1 || srv_due(srv_now(srv), srv->refused_log_next)) {
			conn_log(c, LOG_WARN, "refused", "max_connections=%u refused_total=%llu",
				 srv->cfg->max_connections, (unsigned long long)srv->refused_total);
			srv->refused_log_next = srv_now(srv) + 1000;
		}
		conn_close(c, CLOSE_RESOURCE_CONSTRAINT, "resource-constraint",
			   "too many connections");
	}
	r = uv_read_start((uv_stream_t *)&c->tcp, conn_alloc_cb, conn_read_cb);
	if (r && !c->closing) {
		c->eof = 1;
		conn_close(c, CLOSE_RESET, NULL, NULL);
	}
	return 0;
}
