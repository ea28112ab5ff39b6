/*
 * Deadlines: a binary min-heap of entries embedded in their owners.
 */
#include "dlheap.h"

#include <errno.h>
#include <stdlib.h>

static int dl_before(const struct dlentry *a, const struct dlentry *b)
{
	return (int32_t)(a->due - b->due) < 0;
}

static void dl_place(struct dlheap *h, uint32_t i, struct dlentry *e)
{
	h->v[i] = e;
	e->pos = i + 1;
}

static void dl_up(struct dlheap *h, uint32_t i)
{
	struct dlentry *e = h->v[i];

	while (i > 0) {
		uint32_t parent = (i - 1) / 2;

		if (!dl_before(e, h->v[parent]))
			break;
		dl_place(h, i, h->v[parent]);
		i = parent;
	}
	dl_place(h, i, e);
}

static void dl_down(struct dlheap *h, uint32_t i)
{
	struct dlentry *e = h->v[i];

	for (;;) {
		uint32_t l = 2 * i + 1, m;

		if (l >= h->n)
			break;
		m = l + 1 < h->n && dl_before(h->v[l + 1], h->v[l]) ? l + 1 : l;
		if (!dl_before(h->v[m], e))
			break;
		dl_place(h, i, h->v[m]);
		i = m;
	}
	dl_place(h, i, e);
}

int dlheap_set(struct dlheap *h, struct dlentry *e, uint32_t due)
{
	if (e->pos) {
		uint32_t i = e->pos - 1;
		int earlier = (int32_t)(due - e->due) < 0;

		e->due = due;
		if (earlier)
			dl_up(h, i);
		else
			dl_down(h, i);
		return 0;
	}
	if (h->n == h->cap) {
		uint32_t cap = h->cap ? h->cap * 2 : 64;
		struct dlentry **v = realloc(h->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		h->v = v;
		h->cap = cap;
	}
	e->due = due;
	h->v[h->n] = e;
	e->pos = ++h->n;
	dl_up(h, h->n - 1);
	return 0;
}

void dlheap_remove(struct dlheap *h, struct dlentry *e)
{
	uint32_t i;
	struct dlentry *last;

	if (!e->pos)
		return;
	i = e->pos - 1;
	e->pos = 0;
	last = h->v[--h->n];
	if (i == h->n)
		return;
	dl_place(h, i, last);
	if (i > 0 && dl_before(last, h->v[(i - 1) / 2]))
		dl_up(h, i);
	else
		dl_down(h, i);
}

void dlheap_free(struct dlheap *h)
{
	free(h->v);
	h->v = NULL;
	h->n = h->cap = 0;
}
