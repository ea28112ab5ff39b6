/*
 * The chatd server context: listeners, accept, the deadline heap and its
 * timer, deferred closes, the drain on SIGTERM, the ports file.
 */
#include "srv.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "addr.h"
#include "authlimit.h"
#include "cluster_glue.h"
#include "conn.h"
#include "http.h"
#include "iq.h"
#include "jid.h"
#include "log.h"
#include "move.h"
#include "presence.h"
#include "router.h"
#include "sasl.h"
#include "sm.h"
#include "tlsbio.h"
#include "users.h"
#include "ws.h"
#include "xmppns.h"
#include "xstream.h"

const struct router_hooks srv_router_hooks = {
	.iq = iq_handle,
	.iq_result = iq_result_to_server,
	.presence_broadcast = presence_broadcast,
	.presence_directed = presence_directed,
	.bound = cluster_glue_bound,
	.unbound = cluster_glue_unbound,
	.has_bare = cluster_glue_has_bare,
	.bare_best = cluster_glue_bare_best,
	.forward_bare = cluster_glue_forward_bare,
	.forward_full = cluster_glue_forward_full,
};

uint32_t srv_now(const struct srv *srv)
{
	return (uint32_t)(uv_now(srv->loop) - srv->t0_ms);
}

int srv_random(struct srv *srv, void *buf, size_t n)
{
	if (n > 64)
		return -EINVAL;
	if (srv->rnd_left < n) {
		if (RAND_bytes(srv->rnd, sizeof(srv->rnd)) != 1)
			return -EIO;
		srv->rnd_left = sizeof(srv->rnd);
	}
	srv->rnd_left -= (unsigned)n;
	memcpy(buf, srv->rnd + srv->rnd_left, n);
	return 0;
}

int srv_random_hex(struct srv *srv, char *hex, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	unsigned char r[64];
	size_t i;

	if (srv_random(srv, r, n) != 0)
		return -EIO;
	for (i = 0; i < n; i++) {
		hex[2 * i] = digits[r[i] >> 4];
		hex[2 * i + 1] = digits[r[i] & 15];
	}
	hex[2 * n] = '\0';
	return 0;
}

/* --------------------------------------------------------- connections */

void srv_conn_added(struct srv *srv, struct conn *c)
{
	c->prev = NULL;
	c->next = srv->conns;
	if (srv->conns)
		srv->conns->prev = c;
	srv->conns = c;
}

static void srv_maybe_done(struct srv *srv);

void srv_conn_removed(struct srv *srv, struct conn *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		srv->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	dlheap_remove(&srv->deadlines, &c->dl);
	/* A pending close for a connection that is gone is void. */
	for (struct conn **pp = &srv->pending; *pp; pp = &(*pp)->pend_next) {
		if (*pp == c) {
			*pp = c->pend_next;
			break;
		}
	}
	srv_maybe_done(srv);
}

static void srv_pending_cb(uv_idle_t *idle)
{
	struct srv *srv = idle->data;

	conn_run_pending(srv);
	sm_reap(srv);
	if (!srv->pending)
		uv_idle_stop(idle);
	srv_maybe_done(srv); /* the last detached session may have gone */
}

void srv_reap_soon(struct srv *srv)
{
	if (srv->pending_idle.data)
		uv_idle_start(&srv->pending_idle, srv_pending_cb);
}

void srv_mark_pending(struct srv *srv, struct conn *c)
{
	c->pend_next = srv->pending;
	srv->pending = c;
	/* An idle handle keeps the loop from blocking until it has run. */
	uv_idle_start(&srv->pending_idle, srv_pending_cb);
}

static void srv_shaper_cb(uv_timer_t *t)
{
	if (conn_resume_shaped(t->data) == 0)
		uv_timer_stop(t);
}

static void srv_fair_cb(uv_idle_t *idle)
{
	uv_idle_stop(idle);
	conn_resume_yielded(idle->data);
}

static void srv_log_cb(uv_timer_t *t)
{
	log_flush();
}

static void srv_iter_cb(uv_prepare_t *p)
{
	struct srv *srv = p->data;

	srv->iter++;
	/* No wakeup while nothing was held back by the log's rate limit. */
	if (log_pending() && !uv_is_active((uv_handle_t *)&srv->log_timer))
		uv_timer_start(&srv->log_timer, srv_log_cb, 1000, 0);
}

void srv_paused(struct srv *srv, int yield)
{
	if (yield)
		uv_idle_start(&srv->fair_idle, srv_fair_cb);
	else if (!uv_is_active((uv_handle_t *)&srv->shaper))
		uv_timer_start(&srv->shaper, srv_shaper_cb, SRV_SHAPER_TICK_MS, SRV_SHAPER_TICK_MS);
}

static void srv_accept_cb(uv_stream_t *listener, int status)
{
	struct srv *srv = listener->data;
	int r = status;

	if (r >= 0)
		r = conn_accept(srv, listener, listener == (uv_stream_t *)&srv->ws_listener);
	if (r >= 0 || r == UV_EAGAIN)
		return;
	/* Out of descriptors under a connect flood (libuv sheds the excess):
	 * one line per second, with how many were missed. */
	srv->accept_errors++;
	if (srv->accept_errors == 1 || srv_due(srv_now(srv), srv->accept_warn_next)) {
		log_warn("accept_error", "err=%s count=%llu", uv_err_name(r),
			 (unsigned long long)srv->accept_errors);
		srv->accept_warn_next = srv_now(srv) + 1000;
	}
}

/* ----------------------------------------------------------- deadlines */

/* Sends a XEP-0199 ping to an established client that has been silent. */
static void srv_ping(struct srv *srv, struct conn *c, uint32_t now)
{
	char full[JID_BUF_SIZE];
	struct xbuf b;

	if (jid_format_full(&c->jid, full, sizeof(full)) < 0)
		return;
	c->ping_seq = ++srv->ping_seq ? srv->ping_seq : ++srv->ping_seq;
	c->t_deadline = now + srv->cfg->ping_timeout * 1000u;
	/* A resourcepart may hold ' & < (resourceprep allows them): escaped. */
	xbuf_init(&b);
	xbuf_printf(&b, "<iq type='get' id='ping-%u' from='", c->ping_seq);
	xbuf_escape(&b, srv->domain, strlen(srv->domain));
	xbuf_puts(&b, "' to='");
	xbuf_escape(&b, full, strlen(full));
	if (xbuf_puts(&b, "'><ping xmlns='" NS_PING "'/></iq>") == 0 && b.data) {
		srv->metrics.pings_sent_total++;
		conn_send_stanza(c, b.data, b.len); /* a stanza: counted by XEP-0198 */
	}
	xbuf_free(&b);
}

/* What is due for c at now, if anything: the old sweep's work for one
 * connection. */
static void srv_conn_deadline(struct srv *srv, struct conn *c, uint32_t now)
{
	if (c->detached) {
		/* Its resumption window passed. */
		if (!c->closing && srv_due(now, c->t_deadline))
			sm_end_detached(c, CLOSE_CONNECTION_TIMEOUT);
		return;
	}
	if (c->handle_closed)
		return;
	if (c->closing) {
		if (srv_due(now, c->t_deadline))
			conn_destroy(c);
		return;
	}
	if (c->state != ST_ESTABLISHED) {
		if (c->sm_wait && srv_due(now, c->t_deadline)) {
			sm_wait_expired(c); /* peers did not answer a <resume/> */
			return;
		}
		if (srv_due(now, c->t_deadline)) {
			conn_log(c, LOG_INFO, "auth_timeout", "state=%s",
				 conn_state_name((enum conn_state)c->state));
			conn_close(c, CLOSE_CONNECTION_TIMEOUT, "connection-timeout",
				   "no session established in time");
		}
		return;
	}
	if (c->moving) {
		if (srv_due(now, c->t_deadline))
			move_acked(c); /* no <a/> in time: it goes all the same */
		return;
	}
	if (c->ping_seq) {
		if (srv_due(now, c->t_deadline)) {
			conn_log(c, LOG_INFO, "ping_timeout", "%s", "");
			conn_close(c, CLOSE_CONNECTION_TIMEOUT, "connection-timeout",
				   "no answer to ping");
		}
	} else if (srv->cfg->ping_interval && now - c->t_rx >= srv->cfg->ping_interval * 1000u) {
		srv_ping(srv, c, now);
	}
}

/* The next time something is due for c; 0 when nothing ever is. */
static int srv_conn_next(const struct srv *srv, const struct conn *c, uint32_t *due)
{
	if (c->detached) {
		*due = c->t_deadline;
		return !c->closing;
	}
	if (c->handle_closed)
		return 0;
	if (c->closing || c->state != ST_ESTABLISHED || c->ping_seq || c->moving) {
		*due = c->t_deadline;
		return 1;
	}
	if (!srv->cfg->ping_interval)
		return 0;
	*due = c->t_rx + srv->cfg->ping_interval * 1000u;
	return 1;
}

static void srv_deadline_cb(uv_timer_t *t);

/* Arms the timer for the first deadline, or stops it. */
static void srv_arm(struct srv *srv)
{
	struct dlentry *top = dlheap_top(&srv->deadlines);
	uint32_t now;

	if (!srv->deadline_timer.data)
		return; /* no loop timer (a srv built by hand in unit tests) */
	if (!top) {
		if (srv->armed)
			uv_timer_stop(&srv->deadline_timer);
		srv->armed = 0;
		return;
	}
	if (srv->armed && srv->armed_due == top->due)
		return;
	now = srv_now(srv);
	uv_timer_start(&srv->deadline_timer, srv_deadline_cb,
		       srv_due(now, top->due) ? 0 : top->due - now, 0);
	srv->armed = 1;
	srv->armed_due = top->due;
}

static void srv_schedule_at(struct srv *srv, struct conn *c, uint32_t now)
{
	uint32_t due;

	if (!srv_conn_next(srv, c, &due)) {
		dlheap_remove(&srv->deadlines, &c->dl);
		return;
	}
	/* Never in the past: what is due now runs at the next grain. */
	if (srv_due(now, due))
		due = now + 1;
	due = (due + SRV_TIMER_GRAIN_MS - 1) / SRV_TIMER_GRAIN_MS * SRV_TIMER_GRAIN_MS;
	if (c->dl.pos && c->dl.due == due)
		return;
	if (dlheap_set(&srv->deadlines, &c->dl, due) != 0) {
		/* Without a deadline it could stay forever: the OOM policy. */
		if (c->closing)
			conn_destroy(c);
		else
			conn_fail(c, CLOSE_RESOURCE_CONSTRAINT);
	}
}

void srv_conn_schedule(struct srv *srv, struct conn *c)
{
	srv_schedule_at(srv, c, srv_now(srv));
	srv_arm(srv);
}

/* Gives back the heap pages a burst freed (see SRV_TRIM_MS). */
static void srv_trim_cb(uv_timer_t *t)
{
	malloc_trim(0);
}

void srv_trim_soon(struct srv *srv)
{
	if (srv->trim_timer.data && !uv_is_active((uv_handle_t *)&srv->trim_timer))
		uv_timer_start(&srv->trim_timer, srv_trim_cb, SRV_TRIM_MS, 0);
}

static void srv_deadline_cb(uv_timer_t *t)
{
	struct srv *srv = t->data;
	uint32_t now = srv_now(srv);
	struct dlentry *e;

	srv->armed = 0;
	while ((e = dlheap_top(&srv->deadlines)) && srv_due(now, e->due)) {
		/* Memory is freed only in the close callback: c stays valid. */
		struct conn *c = (struct conn *)((char *)e - offsetof(struct conn, dl));

		dlheap_remove(&srv->deadlines, e);
		srv_conn_deadline(srv, c, now);
		srv_schedule_at(srv, c, now);
	}
	srv_arm(srv);
}

static void srv_drain_timeout_cb(uv_timer_t *t)
{
	struct srv *srv = t->data;

	log_info("drain_timeout", "connections=%llu", (unsigned long long)srv->metrics.connections);
	srv_shutdown(srv);
}

/* ---------------------------------------------------------------- drain */

static void srv_close_handles(struct srv *srv)
{
	uv_close((uv_handle_t *)&srv->deadline_timer, NULL);
	uv_close((uv_handle_t *)&srv->drain_timer, NULL);
	uv_close((uv_handle_t *)&srv->trim_timer, NULL);
	uv_close((uv_handle_t *)&srv->pending_idle, NULL);
	uv_close((uv_handle_t *)&srv->shaper, NULL);
	uv_close((uv_handle_t *)&srv->fair_idle, NULL);
	uv_close((uv_handle_t *)&srv->iter_prepare, NULL);
	uv_close((uv_handle_t *)&srv->log_timer, NULL);
	uv_close((uv_handle_t *)&srv->sigterm, NULL);
	uv_close((uv_handle_t *)&srv->sigint, NULL);
	http_stop(srv->http);
	srv->http = NULL;
	cluster_glue_leave(srv); /* cluster hook: peers drop our routes at once */
}

/* Once stopping (or draining) and no connection is left, close everything
 * so uv_run() returns. */
static void srv_maybe_done(struct srv *srv)
{
	if (srv->phase < SRV_DRAINING || srv->conns || srv->detached || srv->listening || srv->done)
		return;
	srv->done = 1;
	log_info("drained", "accepted=%llu", (unsigned long long)srv->metrics.accepted_total);
	srv_close_handles(srv);
}

static void srv_listener_closed(uv_handle_t *h)
{
	struct srv *srv = h->data;

	srv->listening--;
	srv_maybe_done(srv);
}

void srv_drain(struct srv *srv)
{
	if (srv->phase >= SRV_DRAINING)
		return;
	srv->phase = SRV_DRAINING;
	srv->metrics.ready = 0;
	srv->metrics.draining = 1;
	srv->drain_deadline = srv_now(srv) + srv->cfg->drain_timeout * 1000u;
	uv_timer_start(&srv->drain_timer, srv_drain_timeout_cb, srv->cfg->drain_timeout * 1000u, 0);
	log_info("drain", "connections=%llu sessions=%llu drain_timeout=%u",
		 (unsigned long long)srv->metrics.connections,
		 (unsigned long long)srv->metrics.sessions, srv->cfg->drain_timeout);
	uv_close((uv_handle_t *)&srv->listener, srv_listener_closed);
	if (srv->cfg->websocket[0])
		uv_close((uv_handle_t *)&srv->ws_listener, srv_listener_closed);
}

void srv_shutdown(struct srv *srv)
{
	struct conn *c, *next;

	srv_drain(srv);
	if (srv->phase == SRV_STOPPING)
		return;
	srv->phase = SRV_STOPPING;
	log_info("shutdown", "connections=%llu", (unsigned long long)srv->metrics.connections);
	for (c = srv->conns; c; c = next) {
		next = c->next;
		conn_close(c, CLOSE_SYSTEM_SHUTDOWN, "system-shutdown", "server shutting down");
	}
	/* Detached sessions end too: their queued stanzas are answered for. */
	while (srv->detached)
		sm_end_detached(srv->detached, CLOSE_SYSTEM_SHUTDOWN);
	srv_maybe_done(srv);
}

static void srv_signal_cb(uv_signal_t *s, int signum)
{
	struct srv *srv = s->data;

	log_info("signal", "signal=%s count=%d", signum == SIGTERM ? "TERM" : "INT",
		 srv->signals + 1);
	if (srv->signals++ == 0)
		srv_drain(srv);
	else
		srv_shutdown(srv);
}

/* ----------------------------------------------------------------- setup */

/* "HOST:PORT" a listener is bound to; the length or a negative errno. */
static int srv_bound(uv_tcp_t *t, char *buf, size_t size)
{
	struct sockaddr_storage ss;
	int len = (int)sizeof(ss), r = uv_tcp_getsockname(t, (struct sockaddr *)&ss, &len);

	return r < 0 ? r : addr_format((struct sockaddr *)&ss, buf, size);
}

/*
 * --ports-file: the bound addresses, one "role=HOST:PORT" line each, written
 * to a temp file renamed into place, so a reader never sees half of it.
 * Written once every listener is bound and before chatd reports ready.
 */
static int srv_write_ports(struct srv *srv)
{
	const struct config *cfg = srv->cfg;
	char tmp[1100], buf[1024], a[ADDR_STR_MAX];
	const char *cl = cluster_glue_listen_addr(srv);
	struct addr http;
	int n, fd, r;

	if ((r = srv_bound(&srv->listener, a, sizeof(a))) < 0)
		return r;
	n = snprintf(buf, sizeof(buf), "listen=%s\n", a);
	if (cfg->websocket[0]) {
		if ((r = srv_bound(&srv->ws_listener, a, sizeof(a))) < 0)
			return r;
		n += snprintf(buf + n, sizeof(buf) - (size_t)n, "websocket=%s\n", a);
	}
	if (srv->http && addr_parse(cfg->http, ADDR_PORT_ZERO, 0, &http) == 0 &&
	    http_bound_port(srv->http) > 0 &&
	    addr_join(http.host, http_bound_port(srv->http), a, sizeof(a)) >= 0)
		n += snprintf(buf + n, sizeof(buf) - (size_t)n, "http=%s\n", a);
	if (cl)
		n += snprintf(buf + n, sizeof(buf) - (size_t)n, "cluster=%s\n", cl);
	snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", cfg->ports_file, (long)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		goto fail;
	if (write(fd, buf, (size_t)n) != n || close(fd) != 0) {
		if (errno == 0)
			errno = EIO;
		unlink(tmp);
		goto fail;
	}
	if (rename(tmp, cfg->ports_file) != 0) {
		unlink(tmp);
		goto fail;
	}
	return 0;
fail:
	r = -errno;
	log_error("ports_file", "path=%s err=\"%s\"", cfg->ports_file, strerror(-r));
	return r;
}

int srv_init(struct srv *srv, uv_loop_t *loop, const struct config *cfg)
{
	struct addr a;
	char err[512];
	int r;

	memset(srv, 0, sizeof(*srv));
	srv->loop = loop;
	srv->cfg = cfg;
	srv->t0_ms = uv_now(loop);
	srv->metrics.start_ms = srv->t0_ms;
	if (jid_prep_domain(cfg->domain, &srv->domain) != 0) {
		log_error("config_error", "msg=\"--domain is not a valid domain\" domain=%s",
			  cfg->domain);
		return -EINVAL;
	}
	srv->router = router_new(srv);
	if (srv->router)
		router_set_hooks(srv->router, &srv_router_hooks);
	srv->sasl_cache = cfg->auth_any ? sasl_cache_new() : NULL;
	srv->authlimit = authlimit_new(cfg->auth_fail_ip_max, cfg->auth_fail_user_max);
	if (!srv->router || (cfg->auth_any && !srv->sasl_cache) ||
	    (!srv->authlimit && (cfg->auth_fail_ip_max || cfg->auth_fail_user_max)))
		return -ENOMEM;
	if (!cfg->insecure_permissions) {
		const char *files[3][2] = { { cfg->users, "--users" },
					    { cfg->cluster_secret_file, "--cluster-secret-file" },
					    { cfg->control_token_file, "--control-token-file" } };

		for (int i = 0; i < 3; i++) {
			char q[600];

			if (!files[i][0][0] ||
			    config_check_private(files[i][0], files[i][1], err, sizeof(err)) == 0)
				continue;
			log_error("config_error", "msg=%s", log_quote(q, sizeof(q), err));
			return -EACCES;
		}
	}
	if (cfg->users[0]) {
		r = users_load(cfg->users, &srv->users, err, sizeof(err));
		if (r != 0) {
			char q[600];
			log_error("config_error", "msg=%s", log_quote(q, sizeof(q), err));
			return r;
		}
		log_info("users", "file=%s count=%zu", cfg->users, users_count(srv->users));
	}
	if (cfg->tls_cert[0]) {
		srv->tls_ctx = tlsbio_server_ctx_new(cfg->tls_cert, cfg->tls_key, err, sizeof(err));
		if (srv->tls_ctx &&
		    tlsbio_ctx_set_policy(srv->tls_ctx, cfg->tls_ciphers, cfg->tls_min_version, err,
					  sizeof(err)) != 0) {
			SSL_CTX_free(srv->tls_ctx);
			srv->tls_ctx = NULL;
		}
		if (!srv->tls_ctx) {
			char q[600];
			log_error("config_error", "msg=%s", log_quote(q, sizeof(q), err));
			return -EINVAL;
		}
	}
	if (cfg->auth_any)
		log_warn("auth_any", "msg=\"DEMO MODE: any user name and password is "
				     "accepted (PLAIN); SCRAM password is the user name. "
				     "Never in production.\"");
	if (!cfg->auth_any && !srv->users && !cfg->allow_anonymous)
		log_warn("no_accounts", "msg=\"no --users, --auth-any or --allow-anonymous: "
					"nobody can log in\"");
	if (addr_parse(cfg->listen, ADDR_PORT_ZERO, 0, &a) != 0) {
		log_error("config_error", "msg=\"bad --listen address\" listen=%s", cfg->listen);
		return -EINVAL;
	}
	uv_tcp_init(loop, &srv->listener);
	srv->listener.data = srv;
	srv->listening = 1;
	r = uv_tcp_bind(&srv->listener, (struct sockaddr *)&a.sa, 0);
	if (r == 0)
		r = uv_listen((uv_stream_t *)&srv->listener, 4096, srv_accept_cb);
	if (r != 0) {
		log_error("listen_error", "addr=%s err=%s", cfg->listen, uv_strerror(r));
		return r;
	}
	if (cfg->websocket[0]) {
		if (addr_parse(cfg->websocket, ADDR_PORT_ZERO, 0, &a) != 0) {
			log_error("config_error", "msg=\"bad --websocket address\" websocket=%s",
				  cfg->websocket);
			return -EINVAL;
		}
		uv_tcp_init(loop, &srv->ws_listener);
		srv->ws_listener.data = srv;
		srv->listening++;
		r = uv_tcp_bind(&srv->ws_listener, (struct sockaddr *)&a.sa, 0);
		if (r == 0)
			r = uv_listen((uv_stream_t *)&srv->ws_listener, 4096, srv_accept_cb);
		if (r != 0) {
			log_error("listen_error", "addr=%s err=%s", cfg->websocket, uv_strerror(r));
			return r;
		}
		log_info("listen_websocket", "addr=%s path=" WS_PATH, cfg->websocket);
	}
	if (cfg->control_token_file[0]) {
		/* Same shape as the cluster secret: the file's bytes, trailing
		 * whitespace dropped, 16..4096 of them. */
		r = cluster_secret_load(cfg->control_token_file, &srv->control_token,
					&srv->control_token_len);
		if (r < 0) {
			log_error("config_error", "path=%s msg=\"%s\"", cfg->control_token_file,
				  r == -EINVAL ? "the control token must be 16..4096 bytes"
					       : strerror(-r));
			return r;
		}
	}
	if (cfg->http[0]) {
		srv->http = http_start(srv, cfg->http);
		if (!srv->http)
			return -EINVAL; /* logged by http_start() */
	}
	r = cluster_glue_init(srv); /* cluster routing */
	if (r == 0 && cfg->ports_file[0])
		r = srv_write_ports(srv);
	if (r != 0)
		return r;
	uv_timer_init(loop, &srv->deadline_timer);
	srv->deadline_timer.data = srv;
	uv_timer_init(loop, &srv->drain_timer);
	srv->drain_timer.data = srv;
	uv_timer_init(loop, &srv->trim_timer);
	srv->trim_timer.data = srv;
	uv_idle_init(loop, &srv->pending_idle);
	srv->pending_idle.data = srv;
	uv_timer_init(loop, &srv->shaper);
	srv->shaper.data = srv;
	uv_idle_init(loop, &srv->fair_idle);
	srv->fair_idle.data = srv;
	uv_timer_init(loop, &srv->log_timer);
	uv_prepare_init(loop, &srv->iter_prepare);
	srv->iter_prepare.data = srv;
	uv_prepare_start(&srv->iter_prepare, srv_iter_cb);
	uv_signal_init(loop, &srv->sigterm);
	uv_signal_init(loop, &srv->sigint);
	srv->sigterm.data = srv;
	srv->sigint.data = srv;
	uv_signal_start(&srv->sigterm, srv_signal_cb, SIGTERM);
	uv_signal_start(&srv->sigint, srv_signal_cb, SIGINT);
	signal(SIGPIPE, SIG_IGN);
	srv->phase = SRV_RUNNING;
	srv->metrics.ready = 1;
	log_info("listen", "addr=%s domain=%s version=%s instance=%s max_connections=%u",
		 cfg->listen, srv->domain, cfg->version_label, cfg->instance, cfg->max_connections);
	return 0;
}

int srv_run(struct srv *srv)
{
	uv_run(srv->loop, UV_RUN_DEFAULT);
	log_flush_all();
	log_info("exit", "status=0");
	return 0;
}

void srv_free(struct srv *srv)
{
	if (srv->control_token)
		OPENSSL_cleanse(srv->control_token, srv->control_token_len);
	free(srv->control_token);
	sm_reap(srv);
	smq_table_free(&srv->sm_ids);
	cluster_glue_free(srv); /* cluster hook */
	router_free(srv->router);
	users_free(srv->users);
	sasl_cache_free(srv->sasl_cache);
	dlheap_free(&srv->deadlines);
	authlimit_free(srv->authlimit);
	if (srv->tls_ctx)
		SSL_CTX_free(srv->tls_ctx);
	free(srv->domain);
}
