/*
 * One bounded output queue for a libuv stream, shared by every program that
 * writes to sockets (the local switch, chatd's client connections, the
 * cluster links, chatload's clients).
 *
 * outq_write() first tries the kernel (uv_try_write: no copy, no
 * allocation); only what the kernel does not take now is copied into
 * chunks, written in order with at most one uv_write in flight. The queue
 * counts the bytes it has ALLOCATED (chunk headers and unused chunk room
 * included), not the payload, so a bound on outq_allocated() is a bound on
 * memory: many small writes to a peer that does not read cost what they
 * really cost. Besides the chunks, a queue that is writing holds one
 * struct outq_io (the libuv requests); an idle one holds nothing.
 *
 * The owner enforces its own bound: it stops producing (e.g. stops reading
 * the other side of a proxy) when outq_allocated() reaches its mark, and
 * resumes on OUTQ_DRAINED (allocated fell to the low mark). outq_write()
 * itself refuses (-ENOBUFS, nothing queued) only past the hard limit given
 * to outq_init(), for owners that close a slow reader instead.
 *
 * The callback runs only from libuv's callbacks, never from inside
 * outq_write() or outq_shutdown(): those return their failure instead, so
 * a writer never has its connection closed under it.
 *
 * Lifetime: the struct is embedded in the owner's connection. After
 * uv_close() of the stream, libuv calls the pending write's callback
 * (cancelled) before the close callback; the owner calls outq_free() in its
 * close callback. Callbacks never run after outq_free().
 */
#ifndef COMMON_OUTQ_H
#define COMMON_OUTQ_H

#include <stddef.h>

#include <uv.h>

#define OUTQ_IOV_MAX 8	    /* chunks handed to one uv_write */
#define OUTQ_CHUNK_MIN 2048 /* smallest chunk: small writes coalesce into it */

struct outq;

enum outq_event {
	OUTQ_DRAINED,  /* allocated fell to the low mark after being above it */
	OUTQ_ERROR,    /* a write failed (status): the stream is broken */
	OUTQ_SHUTDOWN, /* outq_shutdown() finished (status: uv_shutdown's) */
};

typedef void (*outq_cb)(struct outq *q, enum outq_event ev, int status);

struct outq_chunk {
	struct outq_chunk *next;
	size_t len; /* payload bytes in data */
	size_t cap; /* room in data */
	char data[];
};

/* The libuv requests of a queue that is writing or shutting down: one
 * block allocated only then, so that an idle queue costs no more than
 * struct outq (every chatd connection embeds one). */
struct outq_io {
	uv_write_t req;
	uv_shutdown_t sreq;
	uv_buf_t bufs[OUTQ_IOV_MAX];
};

struct outq {
	uv_stream_t *stream;
	outq_cb cb;
	void *data;	  /* the owner's */
	size_t limit;	  /* outq_write refuses past this many allocated bytes (0: none) */
	size_t low;	  /* OUTQ_DRAINED when allocated falls to this */
	size_t allocated; /* bytes malloc'd for chunks, headers included */
	size_t queued;	  /* payload bytes not yet written */
	struct outq_chunk *head, *tail;
	struct outq_io *io;	    /* while a uv_write or uv_shutdown is pending, else NULL */
	unsigned in_flight : 8;	    /* chunks from head in the pending uv_write */
	unsigned above : 1;	    /* allocated went above low since the last OUTQ_DRAINED */
	unsigned want_shutdown : 1; /* outq_shutdown(): once everything is written */
	unsigned shut : 1;	    /* uv_shutdown issued */
	unsigned shut_pending : 1;  /* ... and its callback has not run yet */
	unsigned failed : 1;	    /* a write failed: everything is refused */
	unsigned freed : 1;
};

/* limit: hard bound on allocated bytes (0: none); low: OUTQ_DRAINED threshold. */
void outq_init(struct outq *q, uv_stream_t *stream, size_t limit, size_t low, outq_cb cb,
	       void *data);

/*
 * Writes or queues len bytes (data is not kept). 0, -ENOBUFS (past the hard
 * limit: nothing queued), -ENOMEM, or the libuv error of a broken stream.
 */
int outq_write(struct outq *q, const char *data, size_t len);

/* Shuts the write side down once everything queued is written
 * (OUTQ_SHUTDOWN); 0, or the error when the queue failed or uv_shutdown
 * refused at once. */
int outq_shutdown(struct outq *q);

/* Bytes allocated for queued data (the memory this queue holds). */
static inline size_t outq_allocated(const struct outq *q)
{
	return q->allocated;
}

/* Payload bytes not yet written. */
static inline size_t outq_queued(const struct outq *q)
{
	return q->queued;
}

/* Frees what is queued (call in the stream's close callback); no callback after. */
void outq_free(struct outq *q);

#endif
