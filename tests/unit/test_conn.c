/*
 * Unit tests for server/conn.c against real libuv and loopback TCP
 * (chatd_fix.h): the one counted close path, the deferred close out of
 * write paths, the output bound (--max-output) and its policy-violation,
 * the half-close after the queued output and the lingering reads, and the
 * read limits (the input shaper and the per-iteration fairness bound).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "chatd_fix.h"

#define STREAM_ERROR_END "</stream:error></stream:stream>"

static int teardown(void **state)
{
	fix_stop();
	return 0;
}

/* A connection whose stream header was answered. */
static struct cli *open_stream(void)
{
	struct cli *cl = cli_open();

	cli_send(cl, FIX_HEADER);
	assert_true(cli_wait(cl, "</stream:features>"));
	cli_take(cl);
	assert_int_equal(cl->c->state, ST_NEGOTIATE);
	return cl;
}

static int bytes_in_reached(struct cli *cl, const void *n)
{
	return fix.srv.metrics.bytes_in_total >= *(const uint64_t *)n;
}

/* Whether s ends with suffix. */
static int ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);

	return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* conn_close() twice (and the other ways in) counts and says one close. */
static void test_conn_close_twice_counts_once(void **state)
{
	const char *const flags[] = { "--auth-any", NULL };
	struct cli *cl;
	struct conn *c;

	fix_start(flags);
	cl = open_stream();
	c = cl->c;
	assert_int_equal(fix.srv.metrics.connections, 1);
	conn_close(c, CLOSE_POLICY_VIOLATION, "policy-violation", "first");
	conn_close(c, CLOSE_CONFLICT, "conflict", "second");
	conn_close_with(c, CLOSE_SEE_OTHER_HOST, "see-other-host", "elsewhere", NULL, NULL);
	conn_fail(c, CLOSE_RESOURCE_CONSTRAINT);
	assert_int_equal(c->close_reason, CLOSE_POLICY_VIOLATION);
	assert_int_equal(c->state, ST_CLOSED);
	assert_int_equal(fix.srv.metrics.closed_total[CLOSE_POLICY_VIOLATION], 1);
	assert_int_equal(fix_closed_total(), 1);
	assert_int_equal(fix.srv.metrics.connections, 0);
	assert_true(cli_wait_eof(cl));
	assert_false(cl->reset);
	const char *got = cli_take(cl);
	assert_int_equal(count_of(got, "<stream:error>"), 1);
	assert_non_null(strstr(got, "<policy-violation xmlns='" NS_STREAMS "'/>"));
	assert_non_null(strstr(got, "<text xmlns='" NS_STREAMS "'>first</text>"));
	assert_null(strstr(got, "second"));
	assert_null(strstr(got, "elsewhere"));
	assert_true(ends_with(got, STREAM_ERROR_END));
	/* the client's FIN reaches a closing connection: freed, not counted */
	cli_close(cl);
	assert_int_equal(fix_closed_total(), 1);
	assert_int_equal(fix.srv.metrics.connections, 0);
}

/* A connection that closes itself from inside its read callback (a stream
 * error) and then gets EOF, and one that is reset: each counted once. */
static void test_conn_close_in_callback_then_eof(void **state)
{
	struct cli *a, *b;
	struct linger lg = { 1, 0 };

	fix_start(NULL);
	a = open_stream();
	/* bad XML after which more input and the peer's FIN follow at once */
	cli_send(a, "<message><</message><message/>");
	shutdown(a->fd, SHUT_WR);
	assert_true(cli_wait_eof(a));
	const char *got = cli_take(a);
	assert_int_equal(count_of(got, "<stream:error>"), 1);
	assert_non_null(strstr(got, "<not-well-formed "));
	assert_true(ends_with(got, STREAM_ERROR_END));
	assert_true(fix_wait_freed(a));
	assert_int_equal(fix.srv.metrics.closed_total[CLOSE_NOT_WELL_FORMED], 1);
	assert_int_equal(fix_closed_total(), 1);
	cli_close(a);

	/* a reset: nothing can be sent; freed at once, counted as reset */
	b = open_stream();
	assert_int_equal(setsockopt(b->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
	cli_close(b);
	assert_int_equal(fix.srv.metrics.closed_total[CLOSE_RESET], 1);
	assert_int_equal(fix_closed_total(), 2);
	assert_int_equal(fix.srv.metrics.connections, 0);
}

/* The client half-closes without </stream:stream>: a client close, our
 * side follows with FIN (no stream end can be read any more). */
static void test_conn_client_eof(void **state)
{
	struct cli *cl;

	fix_start(NULL);
	cl = open_stream();
	shutdown(cl->fd, SHUT_WR);
	assert_true(cli_wait_eof(cl));
	assert_false(cl->reset);
	assert_string_equal(cli_take(cl), "");
	assert_true(fix_wait_freed(cl));
	assert_int_equal(fix.srv.metrics.closed_total[CLOSE_CLIENT], 1);
	assert_int_equal(fix_closed_total(), 1);
	cli_close(cl);
}

/* conn_fail() (the write paths' close) closes after the current callback,
 * with the stream error of its reason. */
static void test_conn_fail_is_deferred(void **state)
{
	struct cli *a, *b;

	fix_start(NULL);
	a = open_stream();
	b = open_stream();
	conn_fail(a->c, CLOSE_POLICY_VIOLATION);
	conn_fail(a->c, CLOSE_RESET); /* already pending: ignored */
	conn_fail(b->c, CLOSE_RESOURCE_CONSTRAINT);
	assert_false(a->c->closing);
	assert_false(b->c->closing);
	assert_int_equal(fix_closed_total(), 0);
	/* still usable until then */
	conn_send_str(a->c, "<still-here/>");
	fix_step(NULL, 0);
	assert_true(a->c->closing);
	assert_true(b->c->closing);
	assert_int_equal(fix.srv.metrics.closed_total[CLOSE_POLICY_VIOLATION], 1);
	assert_int_equal(fix.srv.metrics.closed_total[CLOSE_RESOURCE_CONSTRAINT], 1);
	assert_int_equal(fix_closed_total(), 2);
	assert_true(cli_wait_eof(a));
	assert_string_equal(cli_take(a),
			    "<still-here/><stream:error><policy-violation xmlns='" NS_STREAMS
			    "'/><text xmlns='" NS_STREAMS
			    "'>output queue limit exceeded</text>" STREAM_ERROR_END);
	assert_true(cli_wait_eof(b));
	assert_string_equal(cli_take(b), "<stream:error><resource-constraint xmlns='" NS_STREAMS
					 "'/>" STREAM_ERROR_END);
	cli_close(a);
	cli_close(b);
}

/* A reader that does not read: once more than --max-output is queued the
 * connection is marked, later sends are dropped whole, and after the
 * current callback it is closed with policy-violation; everything queued
 * before still arrives, then the stream error, then FIN. */
static void test_conn_max_output_policy_violation(void **state)
{
	const char *const flags[] = { "--max-output", "8192", NULL };
	static char chunk[16384];
	struct cli *cl;
	struct conn *c;
	int sends = 0;

	fix_start(flags);
	cl = cli_open_buf(4096);
	c = cl->c;
	cli_send(cl, FIX_HEADER);
	assert_true(cli_wait(cl, "</stream:features>"));
	memset(chunk, 'x', sizeof(chunk));
	memcpy(chunk, "<fill>", 6);
	memcpy(chunk + sizeof(chunk) - 7, "</fill>", 7);
	while (!c->overflow && sends < 4096) {
		conn_send(c, chunk, sizeof(chunk));
		sends++;
	}
	assert_true(c->overflow);
	assert_true(outq_allocated(&c->q) > fix.cfg.max_output);
	/* not closed inside the write: the caller may still be iterating */
	assert_false(c->closing);
	assert_int_equal(fix_closed_total(), 0);
	uint64_t out = fix.srv.metrics.bytes_out_total;
	conn_send_str(c, "<message id='dropped'/>");
	assert_int_equal(fix.srv.metrics.bytes_out_total, out);
	fix_step(NULL, 0);
	assert_true(c->closing);
	assert_int_equal(fix.srv.metrics.closed_total[CLOSE_POLICY_VIOLATION], 1);
	assert_int_equal(fix_closed_total(), 1);
	assert_true(cli_wait_eof(cl));
	assert_false(cl->reset);
	const char *got = cli_take(cl);
	assert_int_equal(count_of(got, "<fill>"), sends);
	assert_int_equal(count_of(got, "</fill>"), sends);
	assert_null(strstr(got, "dropped"));
	assert_true(ends_with(got, "</fill><stream:error><policy-violation xmlns='" NS_STREAMS
				   "'/><text xmlns='" NS_STREAMS
				   "'>output queue limit exceeded</text>" STREAM_ERROR_END));
	/* every byte counted as sent was received, no more */
	assert_int_equal(cl->total, fix.srv.metrics.bytes_out_total);
	cli_close(cl);
	assert_int_equal(fix_closed_total(), 1);
}

/* A close with output still queued: FIN only after all of it, then the
 * connection lingers, reading and discarding, until the client closes. */
static void test_conn_half_close_after_queue(void **state)
{
	const char *const flags[] = { "--max-output", "67108864", NULL };
	static char chunk[65536];
	struct cli *cl;
	struct conn *c;
	size_t sends = 0;

	fix_start(flags);
	cl = cli_open_buf(4096);
	c = cl->c;
	cli_send(cl, FIX_HEADER);
	assert_true(cli_wait(cl, "</stream:features>"));
	cli_take(cl);
	memset(chunk, 'y', sizeof(chunk));
	/* until the kernel holds no more and the rest waits in our queue */
	while (outq_queued(&c->q) == 0 && sends < 512) {
		conn_send(c, chunk, sizeof(chunk));
		sends++;
	}
	conn_send_str(c, "<last/>");
	assert_true(outq_queued(&c->q) > 0);
	assert_false(c->overflow);
	conn_close(c, CLOSE_SYSTEM_SHUTDOWN, "system-shutdown", NULL);
	assert_true(c->closing);
	assert_false(c->handle_closed);
	assert_true(cli_wait_eof(cl));
	assert_false(cl->reset);
	assert_int_equal(cl->len, sends * sizeof(chunk) +
					  strlen("<last/><stream:error><system-shutdown "
						 "xmlns='" NS_STREAMS "'/>" STREAM_ERROR_END));
	assert_true(ends_with(cl->buf, "yy<last/><stream:error><system-shutdown xmlns='" NS_STREAMS
				       "'/>" STREAM_ERROR_END));
	/* lingering: input is read and thrown away, not parsed, not refused */
	uint64_t want = fix.srv.metrics.bytes_in_total;
	const char *late = "<message to='a@" FIX_DOMAIN "'><body>late</body></message>";
	cli_send(cl, late);
	want += strlen(late);
	assert_true(fix_until(cl, bytes_in_reached, &want));
	char byte;
	assert_int_equal(recv(cl->fd, &byte, 1, MSG_DONTWAIT), 0); /* still FIN, no reset */
	assert_int_equal(fix.srv.metrics.stanzas_total, 0);
	assert_false(conn_gone(cl, c));
	assert_int_equal(fix_closed_total(), 1);
	cli_close(cl);
}

/* Past the bucket, reads pause (the bytes wait in the kernel) and resume
 * as it refills; nothing is lost. */
static void test_conn_shaper_pauses_reads(void **state)
{
	const char *const flags[] = { "--preauth-rate-limit", "65536", "--preauth-rate-burst",
				      "4096", NULL };
	static char in[sizeof(FIX_HEADER) - 1 + 16384];
	struct cli *cl;

	fix_start(flags);
	cl = cli_open();
	memcpy(in, FIX_HEADER, sizeof(FIX_HEADER) - 1);
	memset(in + sizeof(FIX_HEADER) - 1, ' ', 16384);
	cli_send_n(cl, in, sizeof(in));
	uint64_t end = fix_ms() + FIX_GIVE_UP_MS;
	while (!cl->c->paused && fix_ms() < end)
		fix_step(cl, 1);
	assert_true(cl->c->paused);
	assert_int_equal(fix.srv.metrics.input_paused_total, 1);
	/* paused in debt: the bucket and at most one 1 KiB read more */
	assert_true(fix.srv.metrics.bytes_in_total <= 4096 + 1024);
	assert_true(fix.srv.metrics.bytes_in_total < sizeof(in));
	uint64_t want = sizeof(in);
	assert_true(fix_until(cl, bytes_in_reached, &want));
	assert_int_equal(fix.srv.metrics.bytes_in_total, sizeof(in));
	assert_true(fix.srv.metrics.input_paused_total > 1);
	assert_non_null(strstr(cl->buf, "</stream:features>"));
	assert_false(cl->c->closing);
	cli_close(cl);
	assert_int_equal(fix_closed_total(), 1);
}

/* Without shaping, one connection reads at most about SRV_FAIR_BYTES in a
 * loop iteration, then yields until the next. */
static void test_conn_fairness_bound(void **state)
{
	const char *const flags[] = { "--preauth-rate-limit", "0", NULL };
	static char in[sizeof(FIX_HEADER) - 1 + 4 * SRV_FAIR_BYTES];
	struct cli *cl;
	int yields = 0, iters = 0;

	fix_start(flags);
	cl = cli_open();
	memcpy(in, FIX_HEADER, sizeof(FIX_HEADER) - 1);
	memset(in + sizeof(FIX_HEADER) - 1, '\n', 4 * SRV_FAIR_BYTES);
	uint64_t end = fix_ms() + FIX_GIVE_UP_MS;
	size_t sent = 0;
	while (fix.srv.metrics.bytes_in_total < sizeof(in)) {
		uint64_t before = fix.srv.metrics.bytes_in_total;
		ssize_t n;

		assert_true(fix_ms() < end);
		while (sent < sizeof(in) &&
		       (n = send(cl->fd, in + sent, sizeof(in) - sent, MSG_NOSIGNAL)) > 0)
			sent += (size_t)n;
		uv_run(&fix.loop, UV_RUN_NOWAIT);
		iters++;
		/* one read of at most SRV_FAIR_BYTES may follow a short one */
		assert_true(fix.srv.metrics.bytes_in_total - before < 2 * SRV_FAIR_BYTES);
		yields += cl->c->yielded;
	}
	assert_true(yields >= 2);
	assert_true(iters >= 3);
	assert_true(cli_wait(cl, "</stream:features>"));
	assert_false(cl->c->closing);
	cli_close(cl);
}

/* Over --max-connections: refused with resource-constraint (our header
 * first), counted, the others untouched. */
static void test_conn_max_connections_refused(void **state)
{
	const char *const flags[] = { "--max-connections", "1", NULL };
	struct cli *a, *b;

	fix_start(flags);
	a = open_stream();
	b = cli_open();
	assert_true(cli_wait_eof(b));
	assert_false(b->reset);
	const char *got = strstr(cli_take(b), "' version='1.0' xml:lang='en'>");
	assert_non_null(got);
	assert_string_equal(got, "' version='1.0' xml:lang='en'><stream:error><resource-constraint "
				 "xmlns='" NS_STREAMS "'/><text xmlns='" NS_STREAMS
				 "'>too many connections</text>" STREAM_ERROR_END);
	assert_int_equal(fix.srv.metrics.closed_total[CLOSE_RESOURCE_CONSTRAINT], 1);
	assert_int_equal(fix.srv.metrics.connections, 1);
	cli_close(b);
	assert_int_equal(fix.srv.refused_lingering, 0);
	/* the first one still works */
	cli_send(a, "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='X'/>");
	assert_true(cli_wait(a, "</failure>"));
	assert_false(a->c->closing);
	cli_close(a);
	assert_int_equal(fix_closed_total(), 2);
}

/* conn_close_with(): the condition's content, the text and an application
 * condition, escaped where they are text. */
static void test_conn_close_with_parts(void **state)
{
	struct cli *cl;

	fix_start(NULL);
	cl = open_stream();
	conn_close_with(cl->c, CLOSE_SEE_OTHER_HOST, "see-other-host", "[::1]:5222", "a < b & 'c'",
			"<moved xmlns='urn:example'/>");
	assert_true(cli_wait_eof(cl));
	assert_string_equal(cli_take(cl), "<stream:error><see-other-host xmlns='" NS_STREAMS
					  "'>[::1]:5222</see-other-host><text xmlns='" NS_STREAMS
					  "'>a &lt; b &amp; &apos;c&apos;</text><moved "
					  "xmlns='urn:example'/>" STREAM_ERROR_END);
	assert_int_equal(fix.srv.metrics.closed_total[CLOSE_SEE_OTHER_HOST], 1);
	cli_close(cl);
}

/* A client that resets while output waits in our queue, before or after
 * the close: freed at once (not after the flush time), counted once. */
static void test_conn_reset_with_queued_output(void **state)
{
	const char *const flags[] = { "--max-output", "67108864", NULL };
	static char chunk[65536];
	struct linger lg = { 1, 0 };

	fix_start(flags);
	memset(chunk, 'z', sizeof(chunk));
	for (int closed_first = 0; closed_first < 2; closed_first++) {
		struct cli *cl = cli_open_buf(4096);
		struct conn *c = cl->c;
		int sends = 0;

		while (outq_queued(&c->q) == 0 && sends++ < 512)
			conn_send(c, chunk, sizeof(chunk));
		assert_true(outq_queued(&c->q) > 0);
		if (closed_first)
			conn_close(c, CLOSE_SYSTEM_SHUTDOWN, "system-shutdown", NULL);
		assert_int_equal(setsockopt(cl->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
		cli_close(cl); /* waits until the server freed it */
	}
	assert_int_equal(fix.srv.metrics.closed_total[CLOSE_RESET], 1);
	assert_int_equal(fix.srv.metrics.closed_total[CLOSE_SYSTEM_SHUTDOWN], 1);
	assert_int_equal(fix_closed_total(), 2);
	assert_int_equal(fix.srv.metrics.connections, 0);
}

/* ------------------------------------------------------------------ TLS */

#define TLS_NS "urn:ietf:params:xml:ns:xmpp-tls"

/* chatd with STARTTLS (a certificate made for the run). */
static void start_tls_server(void)
{
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	char dir[128], cert[160], key[160];

	snprintf(dir, sizeof(dir), "%s/test_conn-XXXXXX", tmp);
	assert_non_null(mkdtemp(dir));
	snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
	snprintf(key, sizeof(key), "%s/key.pem", dir);
	assert_int_equal(fix_make_cert(cert, key), 0);
	const char *const flags[] = { "--auth-any", "--tls-cert", cert, "--tls-key", key, NULL };
	fix_start(flags);
	unlink(cert);
	unlink(key);
	rmdir(dir);
}

/* Up to <proceed/>: the next bytes are TLS. */
static struct cli *proceeded(void)
{
	struct cli *cl = open_stream();

	cli_send(cl, "<starttls xmlns='" TLS_NS "'/>");
	assert_true(cli_wait(cl, "<proceed xmlns='" TLS_NS "'/>"));
	cli_take(cl);
	assert_non_null(cl->c->tls);
	return cl;
}

/* Not TLS after <proceed/>, or a broken ClientHello: at most an alert,
 * then the socket closes; a TLS error, counted once each. */
static void test_conn_tls_garbage(void **state)
{
	/* a handshake record holding a ClientHello of one byte */
	static const char hello[] = "\x16\x03\x01\x00\x05\x01\x00\x00\x01\xff";
	struct cli *cl;

	start_tls_server();
	cl = proceeded();
	cli_send(cl, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
	assert_true(cli_wait_eof(cl));
	assert_false(cl->reset);
	assert_int_equal(cl->len, 0); /* OpenSSL sends no alert to HTTP */
	assert_int_equal(fix.srv.metrics.closed_total[CLOSE_TLS_ERROR], 1);
	cli_close(cl);

	cl = proceeded();
	cli_send_n(cl, hello, sizeof(hello) - 1);
	assert_true(cli_wait_eof(cl));
	/* one TLS record of type alert (21), level fatal (2) */
	assert_int_equal(cl->len, 7);
	assert_int_equal((unsigned char)cl->buf[0], 21);
	assert_int_equal((unsigned char)cl->buf[1], 3);
	assert_int_equal((unsigned char)cl->buf[5], 2);
	assert_int_equal(fix.srv.metrics.closed_total[CLOSE_TLS_ERROR], 2);
	assert_int_equal(fix_closed_total(), 2);
	cli_close(cl);
}

/* A close over TLS: the stream error encrypted, then our close_notify,
 * then FIN; and the client's close_notify is a client close. */
static void test_conn_tls_close(void **state)
{
	struct tcli a = { 0 }, b = { 0 };

	start_tls_server();
	a.cl = proceeded();
	tcli_start(&a);
	tls_send(&a, FIX_HEADER);
	assert_true(tls_wait(&a, "</stream:features>"));
	tls_take(&a);
	assert_true(a.cl->c->tls_up);
	conn_close(a.cl->c, CLOSE_SYSTEM_SHUTDOWN, "system-shutdown", NULL);
	assert_true(tls_wait(&a, STREAM_ERROR_END));
	assert_string_equal(tls_take(&a), "<stream:error><system-shutdown xmlns='" NS_STREAMS
					  "'/>" STREAM_ERROR_END);
	assert_true(cli_wait_eof(a.cl));
	const struct tls_want rest = { &a, NULL };
	tls_has(a.cl, &rest); /* decrypts what came with the FIN */
	assert_true(a.closed);
	assert_false(a.cl->reset);
	tlsbio_free(a.t);
	cli_close(a.cl);

	b.cl = proceeded();
	tcli_start(&b);
	assert_int_equal(tlsbio_shutdown(b.t), 0);
	tls_flush(&b);
	assert_true(cli_wait_eof(b.cl));
	assert_int_equal(fix.srv.metrics.closed_total[CLOSE_CLIENT], 1);
	tlsbio_free(b.t);
	cli_close(b.cl);
	assert_int_equal(fix_closed_total(), 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_conn_close_twice_counts_once, teardown),
		cmocka_unit_test_teardown(test_conn_close_in_callback_then_eof, teardown),
		cmocka_unit_test_teardown(test_conn_client_eof, teardown),
		cmocka_unit_test_teardown(test_conn_fail_is_deferred, teardown),
		cmocka_unit_test_teardown(test_conn_max_output_policy_violation, teardown),
		cmocka_unit_test_teardown(test_conn_half_close_after_queue, teardown),
		cmocka_unit_test_teardown(test_conn_shaper_pauses_reads, teardown),
		cmocka_unit_test_teardown(test_conn_fairness_bound, teardown),
		cmocka_unit_test_teardown(test_conn_max_connections_refused, teardown),
		cmocka_unit_test_teardown(test_conn_close_with_parts, teardown),
		cmocka_unit_test_teardown(test_conn_reset_with_queued_output, teardown),
		cmocka_unit_test_teardown(test_conn_tls_garbage, teardown),
		cmocka_unit_test_teardown(test_conn_tls_close, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
