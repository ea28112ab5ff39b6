/*
 * A bounded ring of published events shared by many readers on other
 * threads (the dashboard's Server-Sent Events viewers). Events are
 * immutable, reference-counted byte strings numbered 1, 2, 3...; the ring
 * keeps the newest `cap` of them. A reader holds only the number it wants
 * next and at most one event: a reader that falls more than `cap` events
 * behind skips to the newest (counted in skipped), so a slow reader never
 * makes the ring grow. Memory is bounded by cap events plus one event per
 * reader.
 *
 * Threads: every function is safe from any thread; init and destroy only
 * while no other thread uses the ring.
 */
#ifndef RAINBOW_EVRING_H
#define RAINBOW_EVRING_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

struct evring_ev {
	uint64_t seq; /* 1, 2, 3... in publication order */
	long refs;    /* guarded by the ring's mutex */
	size_t len;
	char data[]; /* len bytes, then a NUL */
};

struct evring {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct evring_ev **slot; /* slot[seq % cap] */
	size_t cap;
	uint64_t last;	  /* seq of the newest event, 0 before the first */
	uint64_t skipped; /* events readers skipped because they fell behind */
	size_t live;	  /* events allocated (in the ring or held by readers) */
	int closed;
};

/* 0, or -ENOMEM. cap >= 1. */
int evring_init(struct evring *r, size_t cap);
/* Frees every event still in the ring; readers must have put theirs. */
void evring_destroy(struct evring *r);
/* Copies data in as the next event; wakes every waiting reader. 0 or -ENOMEM. */
int evring_publish(struct evring *r, const char *data, size_t len);
/*
 * The event numbered `want`, or the newest when want is older than what the
 * ring keeps (want 0 also means the newest); waits up to timeout_ms for it
 * to be published. Returns 1 and a held event in *ev (give it back with
 * evring_put), 0 when nothing came in time, -1 when the ring is closed.
 */
int evring_get(struct evring *r, uint64_t want, int timeout_ms, struct evring_ev **ev);
void evring_put(struct evring *r, struct evring_ev *ev);
/* Wakes every reader for good: evring_get returns -1 from now on. */
void evring_close(struct evring *r);

#endif
