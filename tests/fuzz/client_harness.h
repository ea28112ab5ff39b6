/*
 * What the client-connection fuzz targets share (fuzz_c2s: plaintext TCP,
 * fuzz_ws: XMPP over WebSocket): chatd's server state in demo mode with
 * stream management, a connection on a socketpair, the witness session
 * that receives what the fuzzed client routes, feeding the input in reads
 * of a chosen size with the loop run between them, and the end of a run
 * that frees everything (LeakSanitizer checks). Included by each target
 * (static functions: each target is its own program).
 */
#ifndef RAINBOW_FUZZ_CLIENT_HARNESS_H
#define RAINBOW_FUZZ_CLIENT_HARNESS_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>

#include "../../server/authlimit.h"
#include "../../server/config.h"
#include "../../server/conn.h"
#include "../../server/router.h"
#include "../../server/sasl.h"
#include "../../server/session.h"
#include "../../server/sm.h"
#include "../../server/srv.h"
#include "log.h"

#define D "example.test"

static struct srv srv; /* large (shared buffers): not on the stack */
static struct config cfg;
static uv_loop_t loop;

/* chatd's server state for the whole fuzzing process, as config_load would set it. */
static void harness_init(const char *name)
{
	log_init(name, LOG_OFF);
	cfg.auth_any = 1;
	cfg.allow_anonymous = 1;
	cfg.max_output = 1 << 20;
	cfg.max_stanza = 65536;
	cfg.max_depth = 32;
	cfg.max_connections = 100;
	cfg.auth_timeout = 30;
	cfg.ping_timeout = 30;
	cfg.resume_timeout = 300; /* XEP-0198: sessions detach and resume */
	cfg.sm_max_queue = 1 << 20;
	snprintf(cfg.domain, sizeof(cfg.domain), D);
	snprintf(cfg.version_label, sizeof(cfg.version_label), "fuzz");
	snprintf(cfg.instance, sizeof(cfg.instance), "fuzz-0");
	if (uv_loop_init(&loop) != 0)
		abort();
	srv.loop = &loop;
	srv.cfg = &cfg;
	srv.t0_ms = uv_now(&loop);
	srv.domain = strdup(D);
	srv.router = router_new(&srv);
	if (srv.router)
		router_set_hooks(srv.router, &srv_router_hooks);
	srv.sasl_cache = sasl_cache_new();
	if (!srv.domain || !srv.router || !srv.sasl_cache)
		abort();
	uv_idle_init(&loop, &srv.pending_idle);
	srv.pending_idle.data = &srv;
	uv_timer_init(&loop, &srv.shaper);
	srv.shaper.data = &srv;
	uv_idle_init(&loop, &srv.fair_idle);
	srv.fair_idle.data = &srv;
	srv.phase = SRV_RUNNING;
}

/* A connection on one end of a socketpair; *fd gets the other end. */
static struct conn *new_conn(int *fd)
{
	struct conn *c;
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0)
		abort();
	c = calloc(1, sizeof(*c));
	if (!c || uv_tcp_init(&loop, &c->tcp) != 0 || uv_tcp_open(&c->tcp, sv[0]) != 0)
		abort();
	c->srv = &srv;
	c->id = ++srv.next_conn_id;
	c->t_rx = srv_now(&srv);
	srv.metrics.connections++;
	srv_conn_added(&srv, c);
	*fd = sv[1];
	return c;
}

/* Reads and discards what chatd wrote to the peer's end. */
static void drain(int fd)
{
	char buf[65536];

	while (read(fd, buf, sizeof(buf)) > 0)
		;
}

static void spin(int fd1, int fd2)
{
	for (int i = 0; i < 4; i++) {
		drain(fd1);
		drain(fd2);
		uv_run(&loop, UV_RUN_NOWAIT);
	}
}

/*
 * The start of a run: the witness (witness@example.test/w, bound and
 * available; *wfd gets its peer's end) and failed-login throttling with
 * tiny limits, fresh for every input so that a run does not depend on the
 * ones before it.
 */
static struct conn *harness_start(int *wfd)
{
	struct conn *w = new_conn(wfd), *old = NULL;

	w->state = ST_ESTABLISHED;
	w->available = 1;
	if (jid_set(&w->jid, "witness", D, "w") != 0 || router_add(srv.router, w, &old) != 0 || old)
		abort();
	srv.authlimit = authlimit_new(3, 1);
	if (!srv.authlimit)
		abort();
	return w;
}

/* Feeds data to c in reads of step bytes through input, the loop run after each. */
static void harness_feed(struct conn *c, int fd, int wfd, const uint8_t *data, size_t size,
			 size_t step, void (*input)(struct conn *, const char *, size_t))
{
	while (size > 0 && !c->closing) {
		size_t n = size < step ? size : step;

		c->t_rx = srv_now(&srv);
		input(c, (const char *)data, n);
		data += n;
		size -= n;
		spin(fd, wfd);
	}
}

/* The end of a run: both connections closed and freed, nothing left. */
static void harness_finish(struct conn *c, int fd, struct conn *w, int wfd)
{
	if (!c->closing)
		conn_close(c, CLOSE_CLIENT, NULL, NULL);
	if (!w->closing)
		conn_close(w, CLOSE_CLIENT, NULL, NULL);
	conn_destroy(c);
	conn_destroy(w);
	/* A stream-managed session may have detached: it ends with the run. */
	while (srv.detached)
		sm_end_detached(srv.detached, CLOSE_SYSTEM_SHUTDOWN);
	authlimit_free(srv.authlimit);
	srv.authlimit = NULL;
	if (!srv.paused)
		uv_timer_stop(&srv.shaper); /* a held stream started it */
	close(fd);
	close(wfd);
	while (srv.conns || uv_run(&loop, UV_RUN_NOWAIT))
		uv_run(&loop, UV_RUN_NOWAIT);
	sm_reap(&srv);
}

/*
 * One input: its first byte picks how the rest is cut into reads (0: one
 * read, n: reads of n bytes); setup makes the fresh connection a client
 * of its transport (0, or abort), input is that transport's read path.
 */
static int harness_run(const uint8_t *data, size_t size, int (*setup)(struct conn *),
		       void (*input)(struct conn *, const char *, size_t))
{
	struct conn *c, *w;
	int fd, wfd;
	size_t step;

	if (size < 1)
		return 0;
	step = data[0] ? data[0] : size;
	w = harness_start(&wfd);
	c = new_conn(&fd);
	if (setup(c) != 0)
		abort();
	harness_feed(c, fd, wfd, data + 1, size - 1, step, input);
	harness_finish(c, fd, w, wfd);
	return 0;
}

#endif
