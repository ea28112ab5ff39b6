/*
 * XEP-0198 stream management bookkeeping, without I/O: the two stanza
 * counters, the queue of stanzas sent but not yet acknowledged, and the
 * table that finds a resumable session by its id. Pure code, unit-tested
 * on its own (tests/unit/test_smq.c); server/sm.c speaks the protocol with
 * it on chatd's sessions.
 *
 * Counting (XEP-0198 4): `h` is the number of stanzas handled, modulo
 * 2^32. h_out counts the stanzas chatd sent since <enabled/>; the queue
 * holds the last `count` of them, numbered h_out - count + 1 .. h_out
 * (mod 2^32), so the client's <a h='N'/> acknowledges N - (h_out - count)
 * of them, computed in uint32_t arithmetic, which wraps exactly as the
 * protocol's counter does.
 *
 * Memory: every queued stanza is one allocation of SMQ_ITEM_OVERHEAD bytes
 * plus its serialized length; `bytes` sums them, so a bound on `bytes`
 * (--sm-max-queue) bounds the memory one session's queue holds.
 */
#ifndef CHATD_SMQ_H
#define CHATD_SMQ_H

#include <stddef.h>
#include <stdint.h>

/* The resumption id: 16 random bytes as 32 hex digits. */
#define SMQ_ID_LEN 32

/* One stanza sent and not yet acknowledged, serialized as it went out. */
struct smq_item {
	struct smq_item *next;
	uint32_t len;
	char data[];
};

/* What one queued stanza costs beyond its bytes: the item header and the
 * allocator's own (about 16 bytes for glibc malloc). */
#define SMQ_ITEM_OVERHEAD (sizeof(struct smq_item) + 16)

struct smq {
	struct smq *hnext;	      /* chain in a struct smq_table */
	void *owner;		      /* the session that holds this state (not owned) */
	char id[SMQ_ID_LEN + 1];      /* resumption id; "" when not resumable */
	uint32_t h_in;		      /* stanzas received from the client, mod 2^32 */
	uint32_t h_out;		      /* stanzas sent to the client, mod 2^32 */
	struct smq_item *head, *tail; /* unacknowledged, oldest first; owned */
	uint32_t count;		      /* items queued */
	size_t bytes;		      /* memory they hold, SMQ_ITEM_OVERHEAD included */
	uint32_t window_s;	      /* resumption window granted, s; 0: not resumable */
	unsigned r_pending : 1;	      /* our <r/> waits for the client's <a/> */
};

void smq_init(struct smq *q);
/* Frees the queued stanzas (the counters stay). */
void smq_clear(struct smq *q);

/* The h value the client has acknowledged so far. */
static inline uint32_t smq_acked(const struct smq *q)
{
	return q->h_out - q->count;
}

/* What queuing len more bytes would make q->bytes. */
static inline size_t smq_cost(size_t len)
{
	return SMQ_ITEM_OVERHEAD + len;
}

/*
 * Counts one stanza sent (h_out + 1) and queues a copy of its bytes.
 * Returns 0; -ENOBUFS when max_bytes (0: no bound) would be passed, or
 * -ENOMEM: then nothing is counted or queued.
 */
int smq_push(struct smq *q, const char *data, size_t len, size_t max_bytes);

/*
 * The client acknowledged h: drops the stanzas it covers. Returns how many
 * were dropped (0 when h repeats the last value), or -ERANGE when h
 * acknowledges more stanzas than are queued (XEP-0198
 * handled-count-too-high; also an h that goes backwards, which looks the
 * same modulo 2^32): then nothing changes.
 */
long smq_ack(struct smq *q, uint32_t h);

/* The table of resumable sessions by id (open hashing, grows by doubling). */
struct smq_table {
	struct smq **buckets;
	size_t nbuckets; /* power of two, 0 before the first insert */
	size_t count;
};

void smq_table_init(struct smq_table *t);
/* Frees the buckets only (the entries belong to their sessions). */
void smq_table_free(struct smq_table *t);
/* Adds q (q->id set, not in the table yet). 0 or -ENOMEM. */
int smq_table_add(struct smq_table *t, struct smq *q);
/* The entry with this id, or NULL. */
struct smq *smq_table_find(const struct smq_table *t, const char *id);
/* Removes q when it is in the table. */
void smq_table_del(struct smq_table *t, struct smq *q);

/* 1 when s is a well-formed id (SMQ_ID_LEN lower-case hex digits). */
int smq_id_valid(const char *s);

#endif
