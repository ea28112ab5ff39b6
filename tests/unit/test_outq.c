/*
 * The bounded output queue against a real libuv stream: one end of a unix
 * socketpair is the libuv pipe, the test reads the other end by hand (or
 * does not, to make the queue grow).
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "outq.h"

struct fix {
	uv_loop_t loop;
	uv_pipe_t pipe;
	struct outq q;
	int peer; /* the other end, non-blocking */
	int drained, errors, shutdowns, closed;
	int last_status;
};

static void on_event(struct outq *q, enum outq_event ev, int status)
{
	struct fix *f = q->data;

	if (ev == OUTQ_DRAINED)
		f->drained++;
	else if (ev == OUTQ_ERROR)
		f->errors++;
	else
		f->shutdowns++;
	f->last_status = status;
}

static void fix_open(struct fix *f, size_t limit, size_t low, int sndbuf)
{
	int sv[2];

	memset(f, 0, sizeof(*f));
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	if (sndbuf) {
		setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
		setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &sndbuf, sizeof(sndbuf));
	}
	assert_int_equal(uv_loop_init(&f->loop), 0);
	assert_int_equal(uv_pipe_init(&f->loop, &f->pipe, 0), 0);
	assert_int_equal(uv_pipe_open(&f->pipe, sv[0]), 0);
	f->peer = sv[1];
	fcntl(f->peer, F_SETFL, fcntl(f->peer, F_GETFL) | O_NONBLOCK);
	outq_init(&f->q, (uv_stream_t *)&f->pipe, limit, low, on_event, f);
}

static void close_cb(uv_handle_t *h)
{
	struct fix *f = h->data;

	outq_free(&f->q);
	f->closed = 1;
}

static void fix_close(struct fix *f)
{
	f->pipe.data = f;
	uv_close((uv_handle_t *)&f->pipe, close_cb);
	while (!f->closed)
		uv_run(&f->loop, UV_RUN_ONCE);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	if (f->peer >= 0)
		close(f->peer);
}

/* Reads what is there now from the peer end into buf (appending); returns bytes read. */
static size_t peer_read(struct fix *f, char *buf, size_t *off, size_t cap)
{
	size_t got = 0;

	for (;;) {
		ssize_t n = read(f->peer, buf + *off, cap - *off);

		if (n <= 0)
			break;
		*off += (size_t)n;
		got += (size_t)n;
		if (*off == cap)
			break;
	}
	return got;
}

static void test_fast_path_allocates_nothing(void **state)
{
	struct fix f;
	char buf[64];
	size_t off = 0;

	fix_open(&f, 0, 0, 0);
	assert_int_equal(outq_write(&f.q, "hello", 5), 0);
	assert_int_equal(outq_allocated(&f.q), 0);
	assert_int_equal(outq_queued(&f.q), 0);
	assert_int_equal(peer_read(&f, buf, &off, sizeof(buf)), 5);
	assert_memory_equal(buf, "hello", 5);
	fix_close(&f);
}

/* A peer that does not read: the rest is queued, counted with its headers. */
static void test_counts_allocated_bytes(void **state)
{
	struct fix f;
	char big[4096];
	size_t total = 0;

	memset(big, 'x', sizeof(big));
	fix_open(&f, 0, 0, 4096);
	/* Fill the kernel buffers: the queue stays empty until they refuse. */
	while (outq_queued(&f.q) == 0) {
		assert_int_equal(outq_write(&f.q, big, sizeof(big)), 0);
		total += sizeof(big);
		assert_true(total < 64 * 1024 * 1024);
	}
	/* 10,000 one-byte writes coalesce: a few KiB, not 10,000 allocations. */
	{
		size_t before = outq_allocated(&f.q);

		for (int i = 0; i < 10000; i++)
			assert_int_equal(outq_write(&f.q, "y", 1), 0);
		assert_true(outq_allocated(&f.q) - before < 16 * 1024);
		assert_true(outq_allocated(&f.q) - before >= 10000);
	}
	assert_true(outq_allocated(&f.q) > outq_queued(&f.q));
	fix_close(&f);
}

static void test_hard_limit_refuses(void **state)
{
	struct fix f;
	char big[8192];
	int rc = 0;

	memset(big, 'z', sizeof(big));
	fix_open(&f, 64 * 1024, 0, 4096);
	for (int i = 0; i < 10000 && rc == 0; i++)
		rc = outq_write(&f.q, big, sizeof(big));
	assert_int_equal(rc, -ENOBUFS);
	assert_true(outq_allocated(&f.q) <= 64 * 1024);
	fix_close(&f);
}

/* Random sizes, the peer reading slowly: every byte arrives, in order. */
static void test_order_and_drained(void **state)
{
	struct fix f;
	enum { TOTAL = 3 * 1024 * 1024 };
	char *src = malloc(TOTAL), *dst = malloc(TOTAL);
	size_t sent = 0, off = 0;
	unsigned seed = 7;

	assert_non_null(src);
	assert_non_null(dst);
	for (size_t i = 0; i < TOTAL; i++)
		src[i] = (char)(i * 131 + (i >> 9));
	fix_open(&f, 0, 16 * 1024, 8192);
	while (sent < TOTAL) {
		size_t n = 1 + (size_t)(rand_r(&seed) % 20000);

		if (n > TOTAL - sent)
			n = TOTAL - sent;
		assert_int_equal(outq_write(&f.q, src + sent, n), 0);
		sent += n;
		if (rand_r(&seed) % 4 == 0) {
			peer_read(&f, dst, &off, TOTAL);
			uv_run(&f.loop, UV_RUN_NOWAIT);
		}
	}
	while (off < TOTAL) {
		peer_read(&f, dst, &off, TOTAL);
		uv_run(&f.loop, UV_RUN_NOWAIT);
	}
	assert_memory_equal(src, dst, TOTAL);
	assert_int_equal(outq_queued(&f.q), 0);
	assert_int_equal(outq_allocated(&f.q), 0);
	assert_true(f.drained >= 1);
	assert_int_equal(f.errors, 0);
	fix_close(&f);
	free(src);
	free(dst);
}

static void test_shutdown_after_queued(void **state)
{
	struct fix f;
	char big[65536], dst[1 << 20];
	size_t off = 0, sent = 0;

	memset(big, 'q', sizeof(big));
	fix_open(&f, 0, 0, 4096);
	for (int i = 0; i < 8; i++) {
		assert_int_equal(outq_write(&f.q, big, sizeof(big)), 0);
		sent += sizeof(big);
	}
	assert_true(outq_queued(&f.q) > 0);
	assert_int_equal(outq_shutdown(&f.q), 0);
	assert_int_equal(outq_write(&f.q, "late", 4), UV_EPIPE);
	for (;;) {
		ssize_t n = read(f.peer, dst + off, sizeof(dst) - off);

		if (n > 0)
			off += (size_t)n;
		else if (n == 0)
			break; /* EOF after every byte */
		uv_run(&f.loop, UV_RUN_NOWAIT);
	}
	assert_int_equal(off, sent);
	while (!f.shutdowns)
		uv_run(&f.loop, UV_RUN_ONCE);
	assert_int_equal(f.last_status, 0);
	fix_close(&f);
}

/* The peer goes away with data queued: an error event, then refusal. */
static void test_peer_gone_is_error(void **state)
{
	struct fix f;
	char big[65536];

	memset(big, 'e', sizeof(big));
	fix_open(&f, 0, 0, 4096);
	for (int i = 0; i < 4; i++)
		assert_int_equal(outq_write(&f.q, big, sizeof(big)), 0);
	close(f.peer);
	f.peer = -1;
	while (!f.errors)
		uv_run(&f.loop, UV_RUN_ONCE);
	assert_true(outq_write(&f.q, "x", 1) < 0);
	fix_close(&f);
}

/* The requests' block exists only while a write is pending: an idle queue
 * (every chatd connection embeds one) holds no memory. */
static void test_requests_only_while_writing(void **state)
{
	struct fix f;
	char big[65536], *dst = malloc(1 << 20);
	size_t off = 0;

	memset(big, 'r', sizeof(big));
	fix_open(&f, 0, 0, 4096);
	assert_int_equal(outq_write(&f.q, "small", 5), 0);
	assert_null(f.q.io); /* the kernel took it */
	for (int i = 0; i < 4; i++)
		assert_int_equal(outq_write(&f.q, big, sizeof(big)), 0);
	assert_non_null(f.q.io);
	while (off < 5 + 4 * sizeof(big)) {
		peer_read(&f, dst, &off, 1 << 20);
		uv_run(&f.loop, UV_RUN_NOWAIT);
	}
	while (outq_queued(&f.q) || f.q.io)
		uv_run(&f.loop, UV_RUN_NOWAIT);
	assert_int_equal(outq_allocated(&f.q), 0);
	assert_null(f.q.io);
	free(dst);
	fix_close(&f);
}

static void noop_shutdown(uv_shutdown_t *req, int status)
{
}

/* A shutdown libuv refuses at once is outq_shutdown()'s result, never a
 * callback from inside the call (a writer must not see its connection
 * closed under it). */
static void test_refusal_is_returned_not_called_back(void **state)
{
	struct fix f;
	uv_shutdown_t req;

	fix_open(&f, 0, 0, 0);
	assert_int_equal(uv_shutdown(&req, (uv_stream_t *)&f.pipe, noop_shutdown), 0);
	assert_true(outq_shutdown(&f.q) < 0);
	assert_int_equal(f.shutdowns + f.errors, 0);
	fix_close(&f);
}

/* Closed with data queued and a write in flight: everything freed (ASan). */
static void test_close_with_queued(void **state)
{
	struct fix f;
	char big[65536];

	memset(big, 'c', sizeof(big));
	fix_open(&f, 0, 0, 4096);
	for (int i = 0; i < 20; i++)
		assert_int_equal(outq_write(&f.q, big, sizeof(big)), 0);
	assert_true(outq_allocated(&f.q) > 0);
	fix_close(&f);
	assert_int_equal(f.errors, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fast_path_allocates_nothing),
		cmocka_unit_test(test_counts_allocated_bytes),
		cmocka_unit_test(test_hard_limit_refuses),
		cmocka_unit_test(test_order_and_drained),
		cmocka_unit_test(test_shutdown_after_queued),
		cmocka_unit_test(test_peer_gone_is_error),
		cmocka_unit_test(test_close_with_queued),
		cmocka_unit_test(test_refusal_is_returned_not_called_back),
		cmocka_unit_test(test_requests_only_while_writing),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
