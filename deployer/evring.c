/*
 * The dashboard's bounded ring of reference-counted events, shared by many
 * reader threads (evring.h).
 */
#include "evring.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int evring_init(struct evring *r, size_t cap)
{
	memset(r, 0, sizeof(*r));
	r->slot = calloc(cap ? cap : 1, sizeof(*r->slot));
	if (!r->slot)
		return -ENOMEM;
	r->cap = cap ? cap : 1;
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, NULL);
	return 0;
}

static void ev_unref(struct evring *r, struct evring_ev *ev)
{
	if (ev && --ev->refs == 0) {
		r->live--;
		free(ev);
	}
}

void evring_destroy(struct evring *r)
{
	for (size_t i = 0; i < r->cap; i++)
		ev_unref(r, r->slot[i]);
	free(r->slot);
	r->slot = NULL;
	pthread_cond_destroy(&r->cv);
	pthread_mutex_destroy(&r->mu);
}

int evring_publish(struct evring *r, const char *data, size_t len)
{
	struct evring_ev *ev = malloc(sizeof(*ev) + len + 1);
	size_t i;

	if (!ev)
		return -ENOMEM;
	memcpy(ev->data, data, len);
	ev->data[len] = '\0';
	ev->len = len;
	ev->refs = 1; /* the ring's */
	pthread_mutex_lock(&r->mu);
	ev->seq = ++r->last;
	i = (size_t)(ev->seq % r->cap);
	ev_unref(r, r->slot[i]);
	r->slot[i] = ev;
	r->live++;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
	return 0;
}

int evring_get(struct evring *r, uint64_t want, int timeout_ms, struct evring_ev **ev)
{
	struct timespec dl;
	int rc = 0;

	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += timeout_ms / 1000;
	dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (dl.tv_nsec >= 1000000000L) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000L;
	}
	*ev = NULL;
	pthread_mutex_lock(&r->mu);
	for (;;) {
		if (r->closed) {
			rc = -1;
			break;
		}
		if (r->last && (want == 0 || want + r->cap <= r->last)) {
			/* Behind by more than the ring holds (or no place yet): the newest. */
			if (want)
				r->skipped += r->last - want;
			want = r->last;
		}
		if (want && want <= r->last) {
			*ev = r->slot[want % r->cap];
			(*ev)->refs++;
			rc = 1;
			break;
		}
		if (pthread_cond_timedwait(&r->cv, &r->mu, &dl) == ETIMEDOUT)
			break;
	}
	pthread_mutex_unlock(&r->mu);
	return rc;
}

void evring_put(struct evring *r, struct evring_ev *ev)
{
	if (!ev)
		return;
	pthread_mutex_lock(&r->mu);
	ev_unref(r, ev);
	pthread_mutex_unlock(&r->mu);
}

void evring_close(struct evring *r)
{
	pthread_mutex_lock(&r->mu);
	r->closed = 1;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
}
