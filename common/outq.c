/*
 * Order is kept by two rules: uv_try_write only while nothing is queued or
 * in flight, and appends only into a tail chunk that is not part of the
 * pending uv_write.
 */
#include "outq.h"
#include "unconst.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* What malloc itself keeps per block, counted so that small chunks are not free. */
#define OUTQ_MALLOC_OVERHEAD 16

static size_t chunk_cost(size_t cap)
{
	return sizeof(struct outq_chunk) + cap + OUTQ_MALLOC_OVERHEAD;
}

void outq_init(struct outq *q, uv_stream_t *stream, size_t limit, size_t low, outq_cb cb,
	       void *data)
{
	memset(q, 0, sizeof(*q));
	q->stream = stream;
	q->limit = limit;
	q->low = low;
	q->cb = cb;
	q->data = data;
}

/* The requests' block, allocated when a write or a shutdown starts. */
static struct outq_io *io_get(struct outq *q)
{
	if (!q->io) {
		q->io = malloc(sizeof(*q->io));
		if (q->io) {
			q->io->req.data = q;
			q->io->sreq.data = q;
		}
	}
	return q->io;
}

/* Gives the block back once no request is pending. */
static void io_put(struct outq *q)
{
	if (q->io && !q->in_flight && !q->shut_pending) {
		free(q->io);
		q->io = NULL;
	}
}

static int outq_flush(struct outq *q);

static void shutdown_cb(uv_shutdown_t *req, int status)
{
	struct outq *q = req->data;

	q->shut_pending = 0;
	io_put(q);
	if (q->freed || status == UV_ECANCELED)
		return;
	q->cb(q, OUTQ_SHUTDOWN, status);
}

/* Issues the shutdown once everything is written; 0 or uv_shutdown's error. */
static int maybe_shutdown(struct outq *q)
{
	int rc;

	if (!q->want_shutdown || q->shut || q->head || q->failed)
		return 0;
	q->shut = 1;
	if (!io_get(q))
		return -ENOMEM;
	rc = uv_shutdown(&q->io->sreq, q->stream, shutdown_cb);
	if (rc == 0)
		q->shut_pending = 1;
	else
		io_put(q);
	return rc;
}

static void write_cb(uv_write_t *req, int status)
{
	struct outq *q = req->data;

	/* The written chunks go whatever happened: they are never retried. */
	while (q->in_flight > 0) {
		struct outq_chunk *c = q->head;

		q->head = c->next;
		if (!q->head)
			q->tail = NULL;
		q->allocated -= chunk_cost(c->cap);
		q->queued -= c->len;
		free(c);
		q->in_flight--;
	}
	io_put(q);
	if (q->freed || status == UV_ECANCELED)
		return;
	if (status < 0) {
		q->failed = 1;
		q->cb(q, OUTQ_ERROR, status);
		return;
	}
	if (q->above && q->allocated <= q->low) {
		q->above = 0;
		q->cb(q, OUTQ_DRAINED, 0);
		if (q->freed)
			return;
	}
	/* From libuv's callback the owner hears of failures through cb. */
	status = outq_flush(q);
	if (status < 0) {
		q->cb(q, OUTQ_ERROR, status);
		return;
	}
	status = maybe_shutdown(q);
	if (status < 0)
		q->cb(q, OUTQ_SHUTDOWN, status);
}

/* Hands the queued chunks to libuv (one uv_write at a time); 0 or
 * uv_write's error (the queue is failed then). Never calls cb: a caller
 * inside outq_write() gets the error as its result. */
static int outq_flush(struct outq *q)
{
	struct outq_chunk *c;
	unsigned n = 0;
	int rc;

	if (q->in_flight || !q->head || q->failed)
		return 0;
	if (!io_get(q)) {
		q->failed = 1;
		return -ENOMEM;
	}
	for (c = q->head; c && n < OUTQ_IOV_MAX; c = c->next)
		q->io->bufs[n++] = uv_buf_init(c->data, (unsigned)c->len);
	q->in_flight = n & 0xff;
	rc = uv_write(&q->io->req, q->stream, q->io->bufs, n, write_cb);
	if (rc < 0) {
		q->in_flight = 0;
		q->failed = 1;
		io_put(q);
	}
	return rc;
}

static int in_flight(const struct outq *q, const struct outq_chunk *c)
{
	const struct outq_chunk *x = q->head;

	for (unsigned i = 0; i < q->in_flight && x; i++, x = x->next)
		if (x == c)
			return 1;
	return 0;
}

/* Copies len bytes behind the queue; the tail chunk takes them when it is not in flight. */
static int append(struct outq *q, const char *data, size_t len)
{
	struct outq_chunk *t = q->tail;
	size_t cap;

	if (t && !in_flight(q, t) && t->cap - t->len >= len) {
		memcpy(t->data + t->len, data, len);
		t->len += len;
		q->queued += len;
		return 0;
	}
	cap = len > OUTQ_CHUNK_MIN ? len : OUTQ_CHUNK_MIN;
	if (q->limit && q->allocated + chunk_cost(cap) > q->limit)
		return -ENOBUFS;
	t = malloc(sizeof(*t) + cap);
	if (!t)
		return -ENOMEM;
	t->next = NULL;
	t->len = len;
	t->cap = cap;
	memcpy(t->data, data, len);
	if (q->tail)
		q->tail->next = t;
	else
		q->head = t;
	q->tail = t;
	q->allocated += chunk_cost(cap);
	q->queued += len;
	if (q->allocated > q->low)
		q->above = 1;
	return 0;
}

int outq_write(struct outq *q, const char *data, size_t len)
{
	int rc;

	if (q->failed)
		return UV_EPIPE;
	if (q->want_shutdown)
		return UV_EPIPE;
	if (len == 0)
		return 0;
	if (!q->head) {
		uv_buf_t b = uv_buf_init(unconst(data), (unsigned)len);
		int n = uv_try_write(q->stream, &b, 1);

		if (n == (int)len)
			return 0;
		if (n < 0 && n != UV_EAGAIN && n != UV_ENOSYS) {
			q->failed = 1;
			return n;
		}
		if (n > 0) {
			data += n;
			len -= (size_t)n;
		}
	}
	rc = append(q, data, len);
	if (rc < 0)
		return rc;
	return outq_flush(q);
}

int outq_shutdown(struct outq *q)
{
	if (q->failed)
		return UV_EPIPE;
	q->want_shutdown = 1;
	return maybe_shutdown(q);
}

void outq_free(struct outq *q)
{
	struct outq_chunk *c, *n;

	/* In-flight chunks were freed by their (cancelled) write callback. */
	for (c = q->head; c; c = n) {
		n = c->next;
		free(c);
	}
	free(q->io); /* every request's callback has run (uv_close cancels them first) */
	q->io = NULL;
	q->head = q->tail = NULL;
	q->allocated = q->queued = 0;
	q->in_flight = 0;
	q->freed = 1;
}
