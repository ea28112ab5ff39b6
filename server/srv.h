/*
 * The chatd server context: the loop, the configuration, the listener, the
 * set of connections, the limits that apply to all of them (max
 * connections, the deadline of every connection in one heap under one
 * timer) and the drain on SIGTERM.
 * Everything is reached through one struct srv passed explicitly; there are
 * no globals.
 */
#ifndef CHATD_SRV_H
#define CHATD_SRV_H

#include <stdint.h>

#include <openssl/ssl.h>
#include <uv.h>

#include "config.h"
#include "dlheap.h"
#include "metrics.h"
#include "smq.h"

struct conn;
struct router;
struct cluster_glue;
struct http;
struct users;
struct sasl_cache;
struct authlimit;

/* A closing connection first gets up to SRV_FLUSH_MS to take its last
 * output (a slow reader still receives its stream error), then, once our
 * FIN is out, SRV_LINGER_MS to close its side while we discard its input;
 * then the socket is closed regardless. */
#define SRV_FLUSH_MS 15000
#define SRV_LINGER_MS 3000
/* Connections refused for --max-connections linger like any other (the
 * client should read its resource-constraint), but at most this many at
 * once: under a connect flood the rest are closed at once, so refused
 * sockets cannot eat the descriptors kept in reserve. */
#define SRV_REFUSED_LINGER_MAX 32
/* Deadlines are rounded up to this grain, so that the deadlines of many
 * connections (e.g. their pings) run together: at most one wakeup per grain,
 * none while nothing is due. */
#define SRV_TIMER_GRAIN_MS 250
/* Fairness: input one connection may read in one loop iteration. */
#define SRV_FAIR_BYTES 16384
/* How often paused (shaped) connections are checked for refilled buckets. */
#define SRV_SHAPER_TICK_MS 10
/* malloc_trim() gives freed heap pages back to the system this long after
 * TLS handshakes finished (so at most once per period while they keep
 * coming, and never while none do): otherwise a burst of handshakes leaves
 * its transient memory (tens of KiB each) in the process for good. */
#define SRV_TRIM_MS 1000
/* Size of the loop-wide read buffer and of the TLS plaintext buffer. */
#define SRV_READ_BUF 65536

enum srv_phase {
	SRV_STARTING = 0, /* not yet listening: /readyz 503 */
	SRV_RUNNING,	  /* accepting: /readyz 200 */
	SRV_DRAINING,	  /* SIGTERM: listener closed, connections kept */
	SRV_STOPPING,	  /* all connections told system-shutdown; exit when gone */
};

struct srv {
	uv_loop_t *loop;	  /* not owned */
	const struct config *cfg; /* not owned */
	char *domain;		  /* cfg->domain, nameprep'ed; owned */
	uv_tcp_t listener;	  /* client listener */
	uv_tcp_t ws_listener;	  /* --websocket: XMPP over WebSocket clients (ws.c) */
	uv_signal_t sigterm, sigint;
	uv_timer_t deadline_timer; /* armed for deadlines' top; .data NULL until srv_init */
	uv_timer_t drain_timer;	   /* the drain deadline, while draining */
	struct dlheap deadlines;   /* every connection with something due (conn->dl) */
	uint32_t armed_due;	   /* ms: when deadline_timer fires, if armed */
	int armed;		   /* deadline_timer is running */
	uv_timer_t trim_timer;	   /* runs malloc_trim() SRV_TRIM_MS after a free */
	uv_idle_t pending_idle;	   /* runs deferred closes (conn_fail) */
	uv_timer_t shaper;	   /* resumes shaped connections (SRV_SHAPER_TICK_MS) */
	uv_idle_t fair_idle;	   /* resumes connections that yielded for fairness */
	uv_prepare_t iter_prepare; /* counts loop iterations (iter), arms log_timer */
	uv_timer_t log_timer;	   /* reports rate-limited log lines, while any wait */
	uint64_t iter;		   /* loop iterations so far */
	struct conn *paused;	   /* connections whose reads are paused (conn.c) */
	struct conn *conns;	   /* every client connection (doubly linked) */
	struct conn *pending;	   /* connections marked by conn_fail() */
	struct conn *detached;	   /* detached sessions waiting to be resumed (sm.c) */
	struct conn *dead;	   /* ended detached sessions, freed from pending_idle */
	struct smq_table sm_ids;   /* resumable sessions by id (sm.c) */
	struct sm_wait *sm_waits;  /* resumptions waiting for peers (sm.c) */
	uint8_t *control_token;	   /* --control-token-file's token, or NULL; owned */
	size_t control_token_len;
	uint64_t sm_req_seq;	       /* last id of a request to peers */
	struct router *router;	       /* local sessions; owned */
	struct cluster_glue *cluster;  /* cluster links, or NULL; owned */
	struct http *http;	       /* HTTP endpoint, or NULL; owned */
	struct users *users;	       /* --users store, or NULL; owned */
	struct sasl_cache *sasl_cache; /* --auth-any SCRAM credentials; owned */
	struct authlimit *authlimit;   /* failed-login counts, or NULL (no limits); owned */
	SSL_CTX *tls_ctx;	       /* STARTTLS context, or NULL; owned */
	struct metrics metrics;	       /* counters; see metrics.h for who writes each */
	uint64_t next_conn_id;	       /* last connection id given out */
	uint64_t t0_ms;		       /* uv_now() at srv_init: the srv clock's origin */
	uint32_t drain_deadline;       /* ms (srv clock) when draining ends */
	uint32_t ping_seq;	       /* last id given to a server ping */
	unsigned refused_lingering;    /* refused connections lingering now */
	uint64_t refused_total;	       /* connections refused for --max-connections */
	uint32_t refused_log_next;     /* ms: earliest next "refused" log line */
	uint64_t accept_errors;	       /* failed accepts (EMFILE, ENOMEM), for the log */
	uint32_t accept_warn_next;     /* ms: earliest next accept_error log line */
	enum srv_phase phase;
	int listening;		  /* listeners open (client, WebSocket) */
	int signals;		  /* SIGTERM/SIGINT received */
	int done;		  /* handles closed for exit */
	unsigned char rnd[512];	  /* RAND_bytes() drawn ahead for ids (srv_random) */
	unsigned rnd_left;	  /* bytes of rnd not given out yet (at its end) */
	char rbuf[SRV_READ_BUF];  /* the one read buffer of every connection */
	char plain[SRV_READ_BUF]; /* decrypted TLS input, shared likewise */
};

/* Sets up everything that can fail before the loop runs (listener, HTTP,
 * TLS, users); 0, or a negative errno after logging why. */
int srv_init(struct srv *srv, uv_loop_t *loop, const struct config *cfg);
/* Runs the loop until the server has drained; returns the exit status. */
int srv_run(struct srv *srv);
/* Frees what srv_init() made (after srv_run() returned). */
void srv_free(struct srv *srv);

/* Milliseconds since srv_init() on the loop clock; wraps after 49 days,
 * so compare with srv_due(). */
uint32_t srv_now(const struct srv *srv);
static inline int srv_due(uint32_t now, uint32_t deadline)
{
	return (int32_t)(now - deadline) >= 0;
}

/* Starts the drain (first SIGTERM) or the immediate shutdown (second). */
void srv_drain(struct srv *srv);
void srv_shutdown(struct srv *srv);

/* What the router reaches above it: iq.c, presence.c, cluster_glue.c. */
extern const struct router_hooks srv_router_hooks;

/* Connection bookkeeping for conn.c. */
void srv_conn_added(struct srv *srv, struct conn *c);
void srv_conn_removed(struct srv *srv, struct conn *c);
void srv_mark_pending(struct srv *srv, struct conn *c);
/* srv->dead has entries: free them from the idle handle (sm_reap()). */
void srv_reap_soon(struct srv *srv);
/* Puts c at its next deadline (auth timeout before the session, flush or
 * linger end while closing, ping answer, next ping), or out of the heap when
 * nothing is due; call after changing any of these. A later t_rx needs no
 * call: the deadline then runs early, finds nothing due and moves. Out of
 * memory closes the connection. */
void srv_conn_schedule(struct srv *srv, struct conn *c);
/* A connection was paused by the shaper (yield = 0) or for fairness. */
void srv_paused(struct srv *srv, int yield);
/* Memory was freed in bulk (a TLS handshake): a trim follows. */
void srv_trim_soon(struct srv *srv);

/* n (at most 64) bytes from OpenSSL's RAND_bytes(), drawn 512 at a time:
 * one call per login cost as much as the rest of the stream header. 0 or
 * -EIO (the generator failed). */
int srv_random(struct srv *srv, void *buf, size_t n);
/* Writes n random bytes as 2n lower-case hex digits and a NUL into hex. */
int srv_random_hex(struct srv *srv, char *hex, size_t n);

#endif
