/*
 * chatd's counters: one struct, owned by struct srv, written only by the
 * loop thread and read only by the /metrics answer, which is also computed
 * on the loop thread (http.c: libmicrohttpd's own thread only carries the
 * request and the reply), so plain integers suffice. Each field is changed in exactly one place; the comment
 * names it.
 */
#ifndef CHATD_METRICS_H
#define CHATD_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "connlife.h"

/* Why a client connection ended: the label of chatd_connections_closed_total.
 * The stream error conditions are the ones chatd sends (RFC 6120 4.9.3). */
enum close_reason {
	CLOSE_CLIENT = 0, /* the client closed: </stream:stream> or EOF */
	CLOSE_RESET,	  /* read/write error (ECONNRESET, EPIPE, ...) */
	CLOSE_TLS_ERROR,  /* fatal TLS error (garbage, handshake failure) */
	CLOSE_BAD_FORMAT, /* stream errors sent by chatd, one each: */
	CLOSE_CONFLICT,
	CLOSE_CONNECTION_TIMEOUT,
	CLOSE_HOST_UNKNOWN,
	CLOSE_INVALID_FROM,
	CLOSE_INVALID_NAMESPACE,
	CLOSE_INVALID_XML,
	CLOSE_NOT_AUTHORIZED,
	CLOSE_NOT_WELL_FORMED,
	CLOSE_POLICY_VIOLATION,
	CLOSE_RESOURCE_CONSTRAINT,
	CLOSE_RESTRICTED_XML,
	CLOSE_SYSTEM_SHUTDOWN,
	CLOSE_UNSUPPORTED_STANZA_TYPE,
	CLOSE_UNSUPPORTED_VERSION,
	CLOSE_INTERNAL_SERVER_ERROR,
	CLOSE_SEE_OTHER_HOST,	   /* moved: the client reconnects to the service (sm.c) */
	CLOSE_UNDEFINED_CONDITION, /* XEP-0198 handled-count-too-high */
	CLOSE_REASON_COUNT
};

/* Why a XEP-0198 resumption failed: the label of chatd_resume_failed_total. */
enum resume_fail {
	RESUME_FAIL_NOT_FOUND = 0, /* no such session (never, or its window passed) */
	RESUME_FAIL_OTHER_USER,	   /* the id belongs to another user's session */
	RESUME_FAIL_BAD_REQUEST,   /* malformed, or not allowed in this state */
	RESUME_FAIL_HANDLED_COUNT, /* the client acknowledged more than was sent */
	RESUME_FAIL_PEER,	   /* the instance holding it did not answer in time */
	RESUME_FAIL_COUNT
};
const char *resume_fail_name(enum resume_fail r);

/* The label value ("client", "reset", or the stream error condition). */
const char *close_reason_name(enum close_reason r);
/* The close reason for a stream error condition name; CLOSE_BAD_FORMAT for
 * one chatd does not send. */
enum close_reason close_reason_from_condition(const char *cond);

struct metrics {
	uint64_t connections;	    /* gauge: +1 conn_accept(), -1 conn_close() */
	uint64_t sessions;	    /* gauge: +1 router_add(), -1 router_remove() */
	uint64_t accepted_total;    /* srv.c accept callback */
	uint64_t ws_connections;    /* gauge, of connections: WebSocket ones: conn.c accept/close */
	uint64_t ws_accepted_total; /* of accepted_total: WebSocket ones: conn.c conn_accept() */
	uint64_t closed_total[CLOSE_REASON_COUNT]; /* conn_close() */
	uint64_t stanzas_total;			   /* message/presence/iq received from clients:
					session.c session_stanza() */
	uint64_t logins_total;			   /* successful SASL: session.c */
	uint64_t auth_failures_total;		   /* SASL <failure/> sent: session.c */
	uint64_t pings_sent_total;    /* server-to-client XEP-0199 pings: srv.c deadlines */
	uint64_t stanza_errors_total; /* stanza errors we generated: router.c router_error() */
	uint64_t bytes_in_total;      /* bytes read from client sockets: conn.c read callback */
	uint64_t bytes_out_total;     /* bytes handed to client sockets: conn.c conn_raw_write() */
	uint64_t auth_blocked_total;  /* logins refused by failed-login throttling: sasl.c */
	uint64_t input_paused_total;  /* reads paused by the input shaper: conn.c conn_pause() */
	uint64_t sessions_detached;   /* gauge: detached sessions waiting to be resumed: sm.c */
	uint64_t sessions_resumed_total[2];		 /* [0] local, [1] from a peer: sm.c */
	uint64_t resume_failed_total[RESUME_FAIL_COUNT]; /* <failed/> to a <resume/>: sm.c */
	uint64_t sessions_moved_total;			 /* sessions sent see-other-host: sm.c */
	int draining;					 /* 0/1: srv.c srv_drain() */
	int ready;					 /* 0/1: srv.c srv_start() / srv_drain() */
	struct connlife life; /* lifetimes and ages: conn_accept(), conn_close() */
	uint64_t start_ms;    /* uv_now() when the server started: srv.c srv_init() */
};

/*
 * Writes the Prometheus text exposition into buf (cap bytes); returns the
 * length, or -ENOSPC when it does not fit. version and instance go into
 * chatd_build_info (label values are escaped). now_ms (the clock of
 * conn_accept() and conn_close(): uv_now()) dates the connection ages; the
 * age index in m->life moves forward to it.
 */
long metrics_format(struct metrics *m, uint64_t now_ms, const char *version, const char *instance,
		    char *buf, size_t cap);

#endif
