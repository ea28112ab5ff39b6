/*
 * `rainbow dashboard`: a read-only live view of the platform for a room
 * full of people. One HTTP server (libmicrohttpd, a thread per viewer)
 * serves the page (deployer/web/, embedded at build time), /api/state,
 * /api/history and /events (Server-Sent Events: one "state" event per
 * poll). The poll loop runs on the calling thread and reads the platform
 * through the same observation as `rainbow status` (status_json()).
 *
 * Memory does not grow with slow viewers: events go through a bounded ring
 * (evring.h); a viewer that falls behind skips to the newest event and its
 * page refills the chart from /api/history.
 */
#ifndef RAINBOW_DASHBOARD_H
#define RAINBOW_DASHBOARD_H

#include <jansson.h>

#include "platform.h"

struct dashboard_opts {
	const char *listen;    /* ADDR:PORT (port 0: any; the URL is printed) */
	const char *state_dir; /* record.jsonl for the deploy timeline */
	const char *report;    /* chatload report (JSON) or timeline (CSV), or NULL */
	const char *chat_ws;   /* WebSocket URL for the chat page, or NULL (local: the switch's) */
	const char *chat_domain; /* XMPP domain the chat page logs in to */
	const char *strophe;	 /* Strophe.js file served as /strophe.js */
	double poll_s;		 /* seconds between observations */
	unsigned max_viewers;	 /* simultaneous HTTP connections */
	unsigned history;	 /* samples kept for the chart */
	double duration;	 /* stop after this many seconds (0: at SIGINT/SIGTERM) */
};

/* 1 when s is an IPv4 address (or localhost) and a port: what --listen takes. */
int dashboard_listen_valid(const char *s);

/* Serves until SIGINT/SIGTERM (or duration). Exit status: 0, 1 (message on stderr). */
int dashboard_run(struct platform *p, const struct dashboard_opts *o);

/*
 * The --report file's verdict: {"state": "final"|"missing"|"unreadable",
 * "dropped", "lost", "connections", "delivered" (null when unknown),
 * "note"}. A chatload JSON report: dropped + ping_timeouts, messages_lost;
 * a timeline CSV: the sums of its drops and lost columns.
 */
json_t *dashboard_report(const char *path);

#endif
