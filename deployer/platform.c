/*
 * What every platform shares: the error message, per-colour meta, a
 * replica's numbers from its /metrics text, SHA validation.
 */
#include "platform.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "promtext.h"

int platform_error(struct platform *p, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(p->err, sizeof(p->err), fmt, ap);
	va_end(ap);
	return code;
}

const char *platform_meta_get(const struct platform_colour *c, const char *key)
{
	for (size_t i = 0; i < c->n_meta; i++)
		if (strcmp(c->meta[i].key, key) == 0)
			return c->meta[i].value;
	return NULL;
}

int platform_meta_put(struct platform_colour *c, const char *key, const char *value)
{
	size_t i;

	for (i = 0; i < c->n_meta; i++)
		if (strcmp(c->meta[i].key, key) == 0)
			break;
	if (!value) {
		if (i < c->n_meta) {
			c->meta[i] = c->meta[c->n_meta - 1];
			c->n_meta--;
		}
		return 0;
	}
	if (i == c->n_meta) {
		if (c->n_meta >= PLATFORM_META_MAX)
			return -ENOSPC;
		c->n_meta++;
	}
	snprintf(c->meta[i].key, sizeof(c->meta[i].key), "%s", key);
	snprintf(c->meta[i].value, sizeof(c->meta[i].value), "%s", value);
	return 0;
}

static void read_hist(struct platform_hist *h, const char *text, const char *name)
{
	h->n = text ? promtext_hist(text, name, h->le, h->cum, PLATFORM_HIST_MAX) : -1;
}

void platform_replica_metrics(struct platform_replica *r, const char *text)
{
	long det = text ? promtext_count(text, "chatd_sessions_detached") : -1;

	r->connections = text ? promtext_count(text, "chatd_connections") : -1;
	/* A session held for resumption (XEP-0198) is not over: a colour
	 * with one is not drained (chatd before it has no such metric). */
	r->detached = 0;
	if (r->connections >= 0 && det > 0) {
		r->connections += det;
		r->detached = det;
	}
	read_hist(&r->lifetimes, text, "chatd_connection_duration_seconds_bucket");
	read_hist(&r->ages, text, "chatd_connection_age_seconds_bucket");
	r->uptime_s = text ? (double)promtext_count(text, "chatd_uptime_seconds") : -1;
}

int platform_sha_valid(const char *sha)
{
	size_t n = 0;

	if (!sha)
		return 0;
	for (; sha[n]; n++)
		if (!((sha[n] >= '0' && sha[n] <= '9') || (sha[n] >= 'a' && sha[n] <= 'f')))
			return 0;
	return n >= 7 && n <= 40;
}
