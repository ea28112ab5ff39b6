/*
 * Failed-login throttling: counts of failed SASL attempts per source
 * address and per user name, in two fixed tables (no allocation per
 * attempt; a collision only shares a count). A count halves every
 * AUTHLIMIT_HALF_LIFE_MS. When the count of the address or of the name has
 * reached its limit, an attempt is not even evaluated: the connection is
 * held AUTHLIMIT_HOLD_MS without an answer, then closed with
 * policy-violation (session.c, conn.c). So a guesser gets at most the
 * limit's worth of answers, slowly, and costs no crypto beyond it.
 *
 * Every function accepts a NULL struct authlimit (no limits).
 */
#ifndef CHATD_AUTHLIMIT_H
#define CHATD_AUTHLIMIT_H

#include <stdint.h>
#include <sys/socket.h>

#define AUTHLIMIT_SLOTS 4096
#define AUTHLIMIT_HALF_LIFE_MS 60000u
#define AUTHLIMIT_HOLD_MS 2000u

struct authlimit;

/* ip_max, user_max: failures that block (0: that limit is off). */
struct authlimit *authlimit_new(unsigned ip_max, unsigned user_max);
void authlimit_free(struct authlimit *a);

/* 1 when attempts from sa, or for user (NULL: not known yet), are blocked. */
int authlimit_blocked(struct authlimit *a, const struct sockaddr *sa, const char *user,
		      uint32_t now_ms);
/* Counts a failed attempt (user NULL: no name was given). */
void authlimit_failed(struct authlimit *a, const struct sockaddr *sa, const char *user,
		      uint32_t now_ms);
/* A successful login forgets the name's failures (not the address's). */
void authlimit_succeeded(struct authlimit *a, const char *user);

#endif
