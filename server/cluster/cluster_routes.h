/*
 * The cluster route table: which instance holds which bound session.
 *
 * An entry is (full JID, owner): the owner is a peer link, or the local
 * instance when chatd mirrors its own sessions here for the dump that
 * starts every link. Entries are indexed by bare JID (the list of
 * resources, with priority and availability, that the RFC 6121 bare-JID
 * rules need) and chained per owner (so that a link that dies drops all of
 * its routes in time proportional to their number).
 *
 * The same full JID may briefly have two owners (a user who reconnected to
 * another instance before the old session's removal arrived): entries are
 * keyed by (full JID, owner), a removal only removes its owner's entry, and
 * a full-JID lookup returns the most recently set one.
 *
 * JIDs are prepared (common/jid.h) by whoever produced them: comparison is
 * bytewise. Errors: negative errno values.
 */
#ifndef CHATD_CLUSTER_ROUTES_H
#define CHATD_CLUSTER_ROUTES_H

#include <stddef.h>
#include <stdint.h>

struct cluster_route;
struct cluster_bare;

/* Embedded in whatever owns routes (a link); ud points back to it. */
struct cluster_rt_owner {
	struct cluster_route *head; /* this owner's entries */
	size_t count;
	void *ud;
};

struct cluster_route {
	struct cluster_bare *bare; /* the bare JID's record */
	char *full;		   /* "node@domain/resource", owned */
	const char *resource;	   /* points into full */
	struct cluster_rt_owner *owner;
	int priority;		     /* RFC 6121 presence priority, -128..127 */
	int available;		     /* 1 after available presence */
	uint64_t seq;		     /* when last set: newest wins a full-JID lookup */
	struct cluster_route *bnext; /* next resource of the same bare JID */
	struct cluster_route *onext; /* owner chain */
	struct cluster_route *oprev;
};

struct cluster_bare {
	struct cluster_bare *hnext; /* hash chain */
	uint64_t hash;
	struct cluster_route *routes;
	char jid[]; /* the bare JID */
};

struct cluster_routes {
	struct cluster_bare **buckets;
	size_t nbuckets; /* power of two, or 0 before the first insert */
	size_t nbare;
	size_t count; /* entries */
	uint64_t seq;
};

void cluster_routes_init(struct cluster_routes *rt);
/* Frees every entry; owners are left with stale chains: reinit them. */
void cluster_routes_free(struct cluster_routes *rt);
void cluster_rt_owner_init(struct cluster_rt_owner *o, void *ud);

/*
 * Adds or updates (full, owner). full must be a full JID (with a
 * resource). Returns 1 when added, 0 when updated, -EINVAL for a JID
 * without resource, -ENOMEM.
 */
int cluster_routes_set(struct cluster_routes *rt, struct cluster_rt_owner *owner, const char *full,
		       int priority, int available);
/* Removes (full, owner): 1 when removed, 0 when there was none. */
int cluster_routes_del(struct cluster_routes *rt, struct cluster_rt_owner *owner, const char *full);
/* Removes all of owner's entries; returns how many. */
size_t cluster_routes_drop_owner(struct cluster_routes *rt, struct cluster_rt_owner *owner);

/* The newest entry for full, or NULL. skip: an owner to ignore (the local
 * mirror when looking for a remote route), may be NULL. */
const struct cluster_route *cluster_routes_find(const struct cluster_routes *rt, const char *full,
						const struct cluster_rt_owner *skip);
/* The resources of a bare JID (walk ->bnext), or NULL. */
const struct cluster_route *cluster_routes_bare(const struct cluster_routes *rt, const char *bare);

#endif
