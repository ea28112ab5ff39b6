/*
 * One client connection: the TCP handle, the XML stream, the optional TLS
 * layer, the output bound, and the session fields the state machine
 * (session.c) and the router (router.c) use.
 *
 * Ownership: struct srv owns every struct conn through its list; a conn
 * owns everything it points to. Memory is freed only in the uv_close
 * callback, so a conn stays valid until the loop iteration after
 * conn_close(); callers may keep using it inside the callback that closed
 * it, but must check c->closing before doing protocol work.
 *
 * Out of memory anywhere on a connection closes that connection
 * (resource-constraint when we can still say so); the server goes on.
 */
#ifndef CHATD_CONN_H
#define CHATD_CONN_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "connlife.h"
#include "dlheap.h"
#include "jid.h"
#include "log.h"
#include "metrics.h"
#include "outq.h"
#include "xml.h"

struct srv;
struct sasl;
struct xstream;
struct tlsbio;
struct ws;
struct route;
struct presence_dir;
struct smq;
struct sm_wait;

/* The stream state machine (session.c session_set_state() is the only
 * writer). */
enum conn_state {
	ST_HEADER = 0,	/* waiting for the client's stream header */
	ST_NEGOTIATE,	/* features sent: STARTTLS or SASL <auth/> expected */
	ST_SASL,	/* a SASL exchange is running */
	ST_RESTART,	/* SASL succeeded: waiting for the restarted header */
	ST_BIND,	/* authenticated stream: resource binding expected */
	ST_ESTABLISHED, /* bound: stanzas flow */
	ST_CLOSED,	/* conn_close() ran; nothing more is processed */
};

const char *conn_state_name(enum conn_state s);

struct conn {
	uv_tcp_t tcp;		       /* embedded handle (container_of); owner: this conn */
	struct outq q;		       /* output; set up at the first write (conn.c conn_q) */
	struct srv *srv;	       /* the server; not owned */
	struct conn *prev, *next;      /* srv->conns list; owner: srv */
	struct conn *pend_next;	       /* srv->pending list of deferred closes, or NULL */
	uint64_t id;		       /* unique per process, for logs: conn=<id> */
	struct xstream *xs;	       /* stream parser; owned; compacted when idle */
	struct tlsbio *tls;	       /* TLS layer after STARTTLS, else NULL; owned */
	struct ws *ws;		       /* XMPP over WebSocket (ws.c), else NULL; owned */
	struct sasl *sasl;	       /* during SASL only, else NULL; owned */
	char *user;		       /* authenticated localpart (prepared) until bound,
				    then NULL (c->jid.node has it); owned */
	struct jid jid;		       /* bound full JID (parts owned); empty before bind */
	struct route *route;	       /* router entry of our bare JID while bound; owner: router */
	struct conn *rnext;	       /* next session of the same bare JID; owner: router */
	struct xnode *presence;	       /* last available presence with payload, or NULL
				    (a plain <presence/> needs no copy); owned */
	struct presence_dir *directed; /* JIDs we sent directed presence to; owned;
					  at most PRESENCE_DIRECTED_MAX entries */
	struct smq *sm;		       /* XEP-0198 counters and unacknowledged stanzas once
					  <enable/> was answered, else NULL; owned (sm.c) */
	struct sm_wait *sm_wait;       /* a <resume/> asked of peers, waiting; owned (sm.c) */
	union {
		struct sockaddr sa;
		struct sockaddr_in in;
		struct sockaddr_in6 in6;
	} peer;			   /* remote address, for logs */
	struct connlife_node life; /* srv->metrics.life while counted in chatd_connections */
	uint32_t t_rx;		   /* ms (srv clock): last byte received */
	uint32_t t_deadline;	   /* ms: auth deadline (before bind), ping deadline
				    (ping outstanding), flush/linger end (closing) */
	uint32_t ping_seq;	   /* id of our outstanding ping (0 = none) */
	struct dlentry dl;	   /* place in srv->deadlines; srv_conn_schedule() */
	int64_t tokens;		   /* input shaper: milli-bytes the connection may still
				    send now (negative: in debt, reads paused) */
	uint32_t t_fill;	   /* ms: when tokens were last refilled; while held:
				    when to close */
	uint32_t iter_bytes;	   /* bytes read in loop iteration `iter` (fairness) */
	uint64_t iter;		   /* srv->iter when iter_bytes was last reset */
	struct conn *paused_next;  /* srv->paused list while reads are paused */
	struct conn *paused_prev;
	uint8_t state;		     /* enum conn_state */
	uint8_t close_reason;	     /* enum close_reason, set by conn_close() */
	uint8_t auth_failures;	     /* SASL failures on this stream (limit 3) */
	int8_t priority;	     /* presence priority, -128..127 */
	unsigned header_sent : 1;    /* our stream header went out on this stream */
	unsigned available : 1;	     /* sent available broadcast presence */
	unsigned authenticated : 1;  /* SASL succeeded */
	unsigned restart_tls : 1;    /* <proceed/> sent: swap transport at the stop */
	unsigned restart_sasl : 1;   /* <success/> sent: reset the parser at the stop */
	unsigned closing : 1;	     /* conn_close() ran */
	unsigned handle_closed : 1;  /* uv_close() was called */
	unsigned eof : 1;	     /* the peer half-closed (or reset) the socket */
	unsigned write_dead : 1;     /* writes failed: drop output */
	unsigned overflow : 1;	     /* output passed --max-output: close pending */
	unsigned refused : 1;	     /* over --max-connections */
	unsigned refused_linger : 1; /* counted in srv->refused_lingering */
	unsigned in_feed : 1;	     /* inside xstream_feed() (callbacks running) */
	unsigned paused : 1;	     /* reads stopped by the shaper or for fairness */
	unsigned yielded : 1;	     /* paused for fairness only: resumed next iteration */
	unsigned held : 1;	     /* paused after a blocked login: closed at t_fill */
	unsigned tls_up : 1;	     /* the TLS handshake completed (counted for a trim) */
	unsigned detached : 1;	     /* a detached session: no socket, held for
				      resumption (sm.c); prev/next link srv->detached */
	unsigned stream_closed : 1;  /* the client sent </stream:stream> */
	unsigned sm_overflow : 1;    /* the unacknowledged queue passed --sm-max-queue */
	unsigned moving : 1;	     /* asked to move: waits for the <a/> to our <r/>
				      (move.c), then see-other-host at t_deadline */
};

/* Accepts a pending connection on the listener; 0 or a negative uv error.
 * websocket: the listener is --websocket's (the connection starts in HTTP). */
int conn_accept(struct srv *srv, uv_stream_t *listener, int websocket);

/* Writes bytes to the socket as they are (no TLS, no framing): the
 * WebSocket layer's way out. Bounded by --max-output like conn_send(). */
void conn_write_raw(struct conn *c, const char *data, size_t len);

/*
 * Sends bytes (through TLS or WebSocket framing when active). Never closes
 * synchronously: when the output bound is passed or the socket fails, the
 * connection is marked and closed from the loop right after the current
 * callback (so a caller iterating the router stays safe). Once the bound
 * was passed, whole sends are dropped until that close, which still sends
 * its stream error; output after a write failed is dropped.
 */
void conn_send(struct conn *c, const char *data, size_t len);
void conn_send_str(struct conn *c, const char *s);
/*
 * Sends one stanza (serialized): with stream management on it is counted
 * and queued until acknowledged (sm.c). Returns 0, or a negative errno when it could not
 * be held (see sm_outbound()): the caller answers for it.
 */
int conn_send_stanza(struct conn *c, const char *data, size_t len);
/* Serializes the stanza n (as a child of a jabber:client stream) and sends
 * it with conn_send_stanza(); its result (-1 also out of memory). */
int conn_send_node(struct conn *c, const struct xnode *n);

/*
 * Closes the connection, once (later calls do nothing): when cond is not
 * NULL, sends our stream header if it was not sent yet, then
 * <stream:error><cond/>[<text>text</text>]</stream:error></stream:stream>;
 * ends the session (router, presence); shuts the socket down after the
 * output is flushed and lingers a little, reading and discarding, so the
 * client sees the error rather than a reset. May be called from inside the
 * connection's own callbacks.
 */
void conn_close(struct conn *c, enum close_reason reason, const char *cond, const char *text);
/* conn_close() with more in the stream error: cond_text the condition
 * element's content (see-other-host's address), app an application-specific
 * condition element (serialized XML, RFC 6120 4.9.4); both may be NULL. */
void conn_close_with(struct conn *c, enum close_reason reason, const char *cond,
		     const char *cond_text, const char *text, const char *app);
/* The deferred form used from write paths (see conn_send): the connection
 * is closed right after the current callback, with the stream error that
 * fits the reason (policy-violation for CLOSE_POLICY_VIOLATION,
 * resource-constraint for CLOSE_RESOURCE_CONSTRAINT, none otherwise). */
void conn_fail(struct conn *c, enum close_reason reason);

/* Swaps the transport to TLS (after <proceed/> was written in plaintext).
 * 0, or -ENOMEM (the caller closes). */
int conn_start_tls(struct conn *c);

/* Milliseconds on the srv clock. */
uint32_t conn_now(const struct conn *c);

/* "127.0.0.1:40000" into buf. */
const char *conn_peer(const struct conn *c, char *buf, size_t size);

/* A log record with conn=<id> peer=<addr> in front of fmt's pairs. */
void conn_log(const struct conn *c, enum log_level level, const char *event, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/*
 * Input shaping. Each connection has a token bucket (--rate-limit and
 * --rate-burst once authenticated, --preauth-rate-limit and
 * --preauth-rate-burst before): bytes read take tokens, and a connection in
 * debt has its reads paused (never dropped: its bytes wait in the kernel,
 * TCP pushes back on the sender) until the bucket has refilled. And for
 * fairness, a connection that read SRV_FAIR_BYTES in one loop iteration
 * pauses until the next, so one flooder cannot hold the loop for the 2 MB
 * libuv would read from it at once. srv.c drives both resumes.
 */
/* Resumes the shaped connections whose bucket has refilled; returns how
 * many are still paused by the shaper. */
unsigned conn_resume_shaped(struct srv *srv);
/* Holds a connection whose login was refused unevaluated: reads stop, and
 * after ms it is closed with policy-violation. */
void conn_hold(struct conn *c, uint32_t ms);
/* Resumes the connections that yielded for fairness. */
void conn_resume_yielded(struct srv *srv);

/* Runs the deferred closes; srv.c calls it from its idle handle. */
void conn_run_pending(struct srv *srv);

/* Closes the socket at once (linger over or server exit). */
void conn_destroy(struct conn *c);

#endif
