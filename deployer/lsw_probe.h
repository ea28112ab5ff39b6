/*
 * HTTP GETs on the switch's libuv loop (libcurl's multi interface driven by
 * uv_poll and a uv_timer), for readiness (/readyz) and counts (/metrics) of
 * the replicas the switch supervises. Never blocks the loop.
 *
 * A request object is reused for every probe of one replica, so libcurl
 * keeps its connection open between probes (one descriptor per object).
 */
#ifndef RAINBOW_LSW_PROBE_H
#define RAINBOW_LSW_PROBE_H

#include <stddef.h>

#include <uv.h>

#include "bodybuf.h"

#define LSW_PROBE_BODY_MAX (256 * 1024)

struct lsw_probe;
struct lsw_probe_req;

/* code: the HTTP status, 0 when nothing answered in time; body only when asked. */
typedef void (*lsw_probe_cb)(struct lsw_probe_req *r, long code, const char *body, size_t len);

struct lsw_probe_req {
	struct lsw_probe *pr;
	void *easy; /* CURL * */
	lsw_probe_cb cb;
	void *data;
	int busy;
	int want_body;
	struct bodybuf body; /* at most LSW_PROBE_BODY_MAX */
	char url[128];
};

struct lsw_probe *lsw_probe_new(uv_loop_t *loop);
/* Frees it after cancelling every request; closes its handles (run the loop after). */
void lsw_probe_free(struct lsw_probe *pr);

/* GET url (timeout_ms in all); cb exactly once unless cancelled. 0 or -errno (-EBUSY). */
int lsw_probe_get(struct lsw_probe *pr, struct lsw_probe_req *r, const char *url, long timeout_ms,
		  int want_body, lsw_probe_cb cb, void *data);

/* Stops a pending GET (no callback) and frees the request's resources. */
void lsw_probe_req_free(struct lsw_probe_req *r);

#endif
