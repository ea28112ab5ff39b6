/*
 * XEP-0198 bookkeeping: the stanza counters, the queue of unacknowledged
 * stanzas and the table of resumable sessions (pure, no I/O).
 */
#include "smq.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

void smq_init(struct smq *q)
{
	memset(q, 0, sizeof(*q));
}

void smq_clear(struct smq *q)
{
	struct smq_item *it;

	while ((it = q->head)) {
		q->head = it->next;
		free(it);
	}
	q->tail = NULL;
	q->count = 0;
	q->bytes = 0;
}

int smq_push(struct smq *q, const char *data, size_t len, size_t max_bytes)
{
	struct smq_item *it;

	if (len > UINT32_MAX || (max_bytes && q->bytes + smq_cost(len) > max_bytes))
		return -ENOBUFS;
	it = malloc(sizeof(*it) + len);
	if (!it)
		return -ENOMEM;
	it->next = NULL;
	it->len = (uint32_t)len;
	memcpy(it->data, data, len);
	if (q->tail)
		q->tail->next = it;
	else
		q->head = it;
	q->tail = it;
	q->count++;
	q->bytes += smq_cost(len);
	q->h_out++;
	return 0;
}

long smq_ack(struct smq *q, uint32_t h)
{
	uint32_t n = h - smq_acked(q); /* wraps like the protocol's counter */
	uint32_t i;

	if (n > q->count)
		return -ERANGE;
	for (i = 0; i < n; i++) {
		struct smq_item *it = q->head;

		q->head = it->next;
		q->bytes -= smq_cost(it->len);
		free(it);
	}
	q->count -= n;
	if (!q->head)
		q->tail = NULL;
	return (long)n;
}

/* ---- the id table ---- */

static uint64_t id_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a; ids are random anyway */

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

void smq_table_init(struct smq_table *t)
{
	memset(t, 0, sizeof(*t));
}

void smq_table_free(struct smq_table *t)
{
	free(t->buckets);
	smq_table_init(t);
}

static int table_grow(struct smq_table *t)
{
	size_t n = t->nbuckets ? t->nbuckets * 2 : 64, i;
	struct smq **nb = calloc(n, sizeof(*nb));

	if (!nb)
		return -ENOMEM;
	for (i = 0; i < t->nbuckets; i++) {
		struct smq *q = t->buckets[i], *next;

		for (; q; q = next) {
			next = q->hnext;
			q->hnext = nb[id_hash(q->id) & (n - 1)];
			nb[id_hash(q->id) & (n - 1)] = q;
		}
	}
	free(t->buckets);
	t->buckets = nb;
	t->nbuckets = n;
	return 0;
}

int smq_table_add(struct smq_table *t, struct smq *q)
{
	size_t k;

	if (t->count >= t->nbuckets && table_grow(t) < 0 && !t->nbuckets)
		return -ENOMEM;
	k = id_hash(q->id) & (t->nbuckets - 1);
	q->hnext = t->buckets[k];
	t->buckets[k] = q;
	t->count++;
	return 0;
}

struct smq *smq_table_find(const struct smq_table *t, const char *id)
{
	struct smq *q;

	if (!t->nbuckets || !smq_id_valid(id))
		return NULL;
	for (q = t->buckets[id_hash(id) & (t->nbuckets - 1)]; q; q = q->hnext)
		if (CRYPTO_memcmp(q->id, id, SMQ_ID_LEN) == 0)
			return q;
	return NULL;
}

void smq_table_del(struct smq_table *t, struct smq *q)
{
	struct smq **pp;

	if (!t->nbuckets || !q->id[0])
		return;
	for (pp = &t->buckets[id_hash(q->id) & (t->nbuckets - 1)]; *pp; pp = &(*pp)->hnext) {
		if (*pp == q) {
			*pp = q->hnext;
			q->hnext = NULL;
			t->count--;
			return;
		}
	}
}

int smq_id_valid(const char *s)
{
	size_t i;

	for (i = 0; i < SMQ_ID_LEN; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return s[i] == '\0';
}
