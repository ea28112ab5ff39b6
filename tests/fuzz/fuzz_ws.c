/*
 * libFuzzer target for a whole XMPP over WebSocket (RFC 7395) client
 * connection of chatd: the input is what one client sends on --websocket's
 * port, the HTTP upgrade request and then WebSocket frames (masked or not,
 * fragmented, control frames, <open/>, SASL, bind, stanzas, <close/>), fed
 * through the real ws (http-parser, wslay, the output framer)/conn/session/
 * sasl/iq/router/presence code on a socketpair inside a libuv loop. A
 * second, already bound session (witness@example.test/w, available, plain
 * TCP) receives what the fuzzed client routes to it, so the output framer
 * also sees stanzas routed to a WebSocket client when the witness answers.
 *
 * The first input byte picks how the rest is cut into reads (0: one read,
 * n: reads of n bytes): a request line, a frame header or a message may
 * straddle reads. Every allocation is freed by the end of the run
 * (LeakSanitizer checks). Seeds: tests/fuzz/corpus/fuzz_ws (whole logins).
 */
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
#include "../../server/ws.h"
#include "../../server/srv.h"
#include "log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define D "example.test"

static struct srv srv; /* large (shared buffers): not on the stack */
static struct config cfg;
static uv_loop_t loop;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_init("fuzz_ws", LOG_OFF);
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
	return 0;
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct conn *c, *w, *old = NULL;
	int fd, wfd;
	size_t step;

	if (size < 1)
		return 0;
	step = data[0] ? data[0] : size;
	data++;
	size--;

	/* the witness: bound and available */
	w = new_conn(&wfd);
	w->state = ST_ESTABLISHED;
	w->available = 1;
	if (jid_set(&w->jid, "witness", D, "w") != 0 || router_add(srv.router, w, &old) != 0 || old)
		abort();

	/* Failed-login throttling with tiny limits, fresh for every input so
	 * that a run does not depend on the ones before it. */
	srv.authlimit = authlimit_new(3, 1);
	if (!srv.authlimit)
		abort();
	c = new_conn(&fd);
	srv.metrics.ws_connections++;
	c->ws = ws_new(c);
	if (!c->ws || session_init(c) != 0)
		abort();
	while (size > 0 && !c->closing) {
		size_t n = size < step ? size : step;

		c->t_rx = srv_now(&srv);
		ws_input(c, (const char *)data, n);
		data += n;
		size -= n;
		spin(fd, wfd);
	}
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
	return 0;
}
