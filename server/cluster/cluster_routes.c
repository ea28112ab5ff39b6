/*
 * The cluster route table: (full JID, owner) entries indexed by bare JID
 * and chained per owner.
 */
#include "cluster_routes.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static uint64_t hash_bytes(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */

	while (n--) {
		h ^= (unsigned char)*s++;
		h *= 1099511628211ull;
	}
	return h;
}

void cluster_routes_init(struct cluster_routes *rt)
{
	memset(rt, 0, sizeof(*rt));
}

void cluster_rt_owner_init(struct cluster_rt_owner *o, void *ud)
{
	o->head = NULL;
	o->count = 0;
	o->ud = ud;
}

static void route_free(struct cluster_route *r)
{
	free(r->full);
	free(r);
}

void cluster_routes_free(struct cluster_routes *rt)
{
	size_t i;

	for (i = 0; i < rt->nbuckets; i++) {
		struct cluster_bare *b = rt->buckets[i], *bn;

		for (; b; b = bn) {
			struct cluster_route *r = b->routes, *rn;

			bn = b->hnext;
			for (; r; r = rn) {
				rn = r->bnext;
				route_free(r);
			}
			free(b);
		}
	}
	free(rt->buckets);
	cluster_routes_init(rt);
}

static struct cluster_bare *bare_find(const struct cluster_routes *rt, const char *bare, size_t len,
				      uint64_t h)
{
	struct cluster_bare *b;

	if (!rt->nbuckets)
		return NULL;
	for (b = rt->buckets[h & (rt->nbuckets - 1)]; b; b = b->hnext)
		if (b->hash == h && strncmp(b->jid, bare, len) == 0 && b->jid[len] == '\0')
			return b;
	return NULL;
}

static int grow(struct cluster_routes *rt)
{
	size_t n = rt->nbuckets ? rt->nbuckets * 2 : 64, i;
	struct cluster_bare **nb = calloc(n, sizeof(*nb));

	if (!nb)
		return -ENOMEM;
	for (i = 0; i < rt->nbuckets; i++) {
		struct cluster_bare *b = rt->buckets[i], *next;

		for (; b; b = next) {
			next = b->hnext;
			b->hnext = nb[b->hash & (n - 1)];
			nb[b->hash & (n - 1)] = b;
		}
	}
	free(rt->buckets);
	rt->buckets = nb;
	rt->nbuckets = n;
	return 0;
}

static void bare_unlink(struct cluster_routes *rt, struct cluster_bare *b)
{
	struct cluster_bare **pp = &rt->buckets[b->hash & (rt->nbuckets - 1)];

	while (*pp != b)
		pp = &(*pp)->hnext;
	*pp = b->hnext;
	rt->nbare--;
	free(b);
}

int cluster_routes_set(struct cluster_routes *rt, struct cluster_rt_owner *owner, const char *full,
		       int priority, int available)
{
	const char *slash = strchr(full, '/');
	size_t blen;
	uint64_t h;
	struct cluster_bare *b;
	struct cluster_route *r;

	if (!slash || slash == full || slash[1] == '\0')
		return -EINVAL;
	blen = (size_t)(slash - full);
	h = hash_bytes(full, blen);
	b = bare_find(rt, full, blen, h);
	if (b) {
		for (r = b->routes; r; r = r->bnext) {
			if (r->owner == owner && strcmp(r->resource, slash + 1) == 0) {
				r->priority = priority;
				r->available = available;
				r->seq = ++rt->seq;
				return 0;
			}
		}
	} else {
		if (rt->nbare >= rt->nbuckets && grow(rt) < 0)
			return -ENOMEM;
		b = malloc(sizeof(*b) + blen + 1);
		if (!b)
			return -ENOMEM;
		b->hash = h;
		b->routes = NULL;
		memcpy(b->jid, full, blen);
		b->jid[blen] = '\0';
		b->hnext = rt->buckets[h & (rt->nbuckets - 1)];
		rt->buckets[h & (rt->nbuckets - 1)] = b;
		rt->nbare++;
	}
	r = calloc(1, sizeof(*r));
	if (r)
		r->full = strdup(full);
	if (!r || !r->full) {
		free(r);
		if (!b->routes)
			bare_unlink(rt, b);
		return -ENOMEM;
	}
	r->bare = b;
	r->resource = r->full + blen + 1;
	r->owner = owner;
	r->priority = priority;
	r->available = available;
	r->seq = ++rt->seq;
	r->bnext = b->routes;
	b->routes = r;
	r->onext = owner->head;
	if (owner->head)
		owner->head->oprev = r;
	owner->head = r;
	owner->count++;
	rt->count++;
	return 1;
}

static void route_remove(struct cluster_routes *rt, struct cluster_route *r)
{
	struct cluster_bare *b = r->bare;
	struct cluster_route **pp = &b->routes;

	while (*pp != r)
		pp = &(*pp)->bnext;
	*pp = r->bnext;
	if (r->oprev)
		r->oprev->onext = r->onext;
	else
		r->owner->head = r->onext;
	if (r->onext)
		r->onext->oprev = r->oprev;
	r->owner->count--;
	rt->count--;
	if (!b->routes)
		bare_unlink(rt, b);
	route_free(r);
}

int cluster_routes_del(struct cluster_routes *rt, struct cluster_rt_owner *owner, const char *full)
{
	const char *slash = strchr(full, '/');
	struct cluster_bare *b;
	struct cluster_route *r;
	size_t blen;

	if (!slash)
		return 0;
	blen = (size_t)(slash - full);
	b = bare_find(rt, full, blen, hash_bytes(full, blen));
	if (!b)
		return 0;
	for (r = b->routes; r; r = r->bnext) {
		if (r->owner == owner && strcmp(r->resource, slash + 1) == 0) {
			route_remove(rt, r);
			return 1;
		}
	}
	return 0;
}

size_t cluster_routes_drop_owner(struct cluster_routes *rt, struct cluster_rt_owner *owner)
{
	size_t n = 0;

	while (owner->head) {
		route_remove(rt, owner->head);
		n++;
	}
	return n;
}

const struct cluster_route *cluster_routes_find(const struct cluster_routes *rt, const char *full,
						const struct cluster_rt_owner *skip)
{
	const char *slash = strchr(full, '/');
	const struct cluster_route *r, *best = NULL;
	struct cluster_bare *b;
	size_t blen;

	if (!slash)
		return NULL;
	blen = (size_t)(slash - full);
	b = bare_find(rt, full, blen, hash_bytes(full, blen));
	if (!b)
		return NULL;
	for (r = b->routes; r; r = r->bnext)
		if (r->owner != skip && strcmp(r->resource, slash + 1) == 0 &&
		    (!best || r->seq > best->seq))
			best = r;
	return best;
}

const struct cluster_route *cluster_routes_bare(const struct cluster_routes *rt, const char *bare)
{
	size_t blen = strlen(bare);
	struct cluster_bare *b = bare_find(rt, bare, blen, hash_bytes(bare, blen));

	return b ? b->routes : NULL;
}
