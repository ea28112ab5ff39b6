/*
 * Failed-login throttling: decaying counts per address and per user name.
 */
#include "authlimit.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

struct authlimit_slot {
	uint64_t key;	/* hash of the address or name; 0 = free */
	uint32_t t;	/* ms (srv clock) of the last halving step */
	uint32_t count; /* failures, halved every AUTHLIMIT_HALF_LIFE_MS */
};

struct authlimit {
	unsigned ip_max, user_max;
	struct authlimit_slot ip[AUTHLIMIT_SLOTS];
	struct authlimit_slot user[AUTHLIMIT_SLOTS];
};

struct authlimit *authlimit_new(unsigned ip_max, unsigned user_max)
{
	struct authlimit *a;

	if (!ip_max && !user_max)
		return NULL; /* nothing to limit */
	a = calloc(1, sizeof(*a));
	if (!a)
		return NULL;
	a->ip_max = ip_max;
	a->user_max = user_max;
	return a;
}

void authlimit_free(struct authlimit *a)
{
	free(a);
}

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 1099511628211ull;
	return h | 1; /* never 0 (a free slot) */
}

static uint64_t ip_key(const struct sockaddr *sa)
{
	uint64_t h = 1469598103934665603ull;

	if (sa->sa_family == AF_INET)
		return fnv(h, &((const struct sockaddr_in *)sa)->sin_addr, 4);
	if (sa->sa_family == AF_INET6)
		return fnv(h ^ 6, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
	return 0;
}

static uint64_t user_key(const char *user)
{
	return user ? fnv(1469598103934665603ull ^ 'u', user, strlen(user)) : 0;
}

/* The slot for key with its count decayed to now; NULL for no key. */
static struct authlimit_slot *slot_get(struct authlimit_slot *tab, uint64_t key, uint32_t now)
{
	struct authlimit_slot *s;
	uint32_t steps;

	if (!key)
		return NULL;
	s = &tab[key % AUTHLIMIT_SLOTS];
	if (s->key != key) {
		/* another key's slot: it is replaced when this one fails */
		return s;
	}
	steps = (now - s->t) / AUTHLIMIT_HALF_LIFE_MS;
	if (steps) {
		s->count = steps >= 32 ? 0 : s->count >> steps;
		s->t += steps * AUTHLIMIT_HALF_LIFE_MS;
	}
	return s;
}

static unsigned count_of(struct authlimit_slot *tab, uint64_t key, uint32_t now)
{
	struct authlimit_slot *s = slot_get(tab, key, now);

	return s && s->key == key ? s->count : 0;
}

static void bump(struct authlimit_slot *tab, uint64_t key, uint32_t now)
{
	struct authlimit_slot *s = slot_get(tab, key, now);

	if (!s)
		return;
	if (s->key != key) {
		s->key = key;
		s->t = now;
		s->count = 0;
	}
	if (s->count < UINT32_MAX)
		s->count++;
}

int authlimit_blocked(struct authlimit *a, const struct sockaddr *sa, const char *user,
		      uint32_t now_ms)
{
	if (!a)
		return 0;
	if (a->ip_max && count_of(a->ip, ip_key(sa), now_ms) >= a->ip_max)
		return 1;
	return a->user_max && user && count_of(a->user, user_key(user), now_ms) >= a->user_max;
}

void authlimit_failed(struct authlimit *a, const struct sockaddr *sa, const char *user,
		      uint32_t now_ms)
{
	if (!a)
		return;
	if (a->ip_max)
		bump(a->ip, ip_key(sa), now_ms);
	if (a->user_max && user)
		bump(a->user, user_key(user), now_ms);
}

void authlimit_succeeded(struct authlimit *a, const char *user)
{
	struct authlimit_slot *s;
	uint64_t key = user_key(user);

	if (!a || !key)
		return;
	s = &a->user[key % AUTHLIMIT_SLOTS];
	if (s->key == key)
		memset(s, 0, sizeof(*s));
}
