/*
 * Deadlines: a binary min-heap of entries embedded in their owners (a
 * connection embeds one), ordered by a due time in milliseconds of a
 * wrapping 32-bit clock (compared as srv_due() does, so it stays right
 * across the wrap as long as no deadline is more than 24 days away).
 *
 * The owner of the heap arms one timer for dlheap_top(); there is no
 * periodic scan: with nothing due, nothing runs.
 */
#ifndef CHATD_DLHEAP_H
#define CHATD_DLHEAP_H

#include <stddef.h>
#include <stdint.h>

struct dlentry {
	uint32_t due; /* ms; meaningful while queued */
	uint32_t pos; /* index + 1 in the heap, 0 when not queued */
};

struct dlheap {
	struct dlentry **v; /* the heap array; owned */
	uint32_t n, cap;
};

/* Queues e with due, or moves it there when queued already. 0, or -ENOMEM when
 * the array cannot grow (e is then not queued). */
int dlheap_set(struct dlheap *h, struct dlentry *e, uint32_t due);
/* Unqueues e; nothing when it is not queued. */
void dlheap_remove(struct dlheap *h, struct dlentry *e);
/* The entry due first, or NULL when the heap is empty. */
static inline struct dlentry *dlheap_top(const struct dlheap *h)
{
	return h->n ? h->v[0] : NULL;
}
/* Frees the array (entries belong to their owners). */
void dlheap_free(struct dlheap *h);

#endif
