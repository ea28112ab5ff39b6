/*
 * Prometheus text exposition written into a caller's fixed buffer: once
 * it is full, every later write is dropped and overflow is set, so a
 * formatter writes on and checks once at the end.
 */
#ifndef CHATD_PROMOUT_H
#define CHATD_PROMOUT_H

#include <stddef.h>

struct promout {
	char *buf;
	size_t cap;   /* bytes of buf */
	size_t len;   /* bytes written, without the terminating NUL */
	int overflow; /* a write did not fit: buf holds a truncated text */
};

__attribute__((format(printf, 2, 3))) void promout_put(struct promout *o, const char *fmt, ...);

/* A label value, escaping backslash, double quote and newline. */
void promout_label(struct promout *o, const char *s);

#endif
