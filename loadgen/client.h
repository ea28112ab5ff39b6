/*
 * One simulated XMPP user: a small state machine over one TCP connection
 *
 *   connect -> stream -> [STARTTLS -> TLS -> stream] -> SASL -> stream
 *   -> bind -> presence + XEP-0092 version query -> established
 *   -> (messages, pings) -> logout / server close / drop
 *
 * and the fleet that drives all of them from one libuv loop (fleet.c).
 *
 * A client lives in a fixed slot of the fleet and is reused for the next
 * connection of that slot once its handle is closed. Every connection ends
 * in exactly one fate, recorded by client_fate() (the only place that
 * counts fates):
 *   closed_by_client  we ended it (logout, end of run), whether or not the
 *                     server acknowledged with its own </stream:stream>
 *   closed_by_server  the server closed the stream, with the condition of
 *                     its <stream:error/> ("none" without one)
 *   dropped           EOF, reset or any error without a stream close
 *   migrated          (--stream-management) the server asked us to move
 *                     (<see-other-host/>) and the next connection of the
 *                     slot resumed the session (XEP-0198) or logged in
 *                     again within the login timeout; when it does not, the
 *                     connection counts as dropped ("migration-failed")
 *   connect_failure, login_failure, ping_timeout
 * Memory: the per-client struct is small, reading uses the fleet's one
 * buffer, and an idle client's parser is compacted (xstream_compact()).
 * Memory a client owns is freed only in its close callback.
 */
#ifndef CHATLOAD_CLIENT_H
#define CHATLOAD_CLIENT_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "msgtrack.h"
#include "outq.h"
#include "opts.h"
#include "stats.h"
#include "wire.h"

struct xstream;
struct tlsbio;
struct scram_client;

enum client_state {
	CLIENT_IDLE = 0,   /* no connection; may be (re)started */
	CLIENT_CONNECTING, /* TCP connect in progress */
	CLIENT_STREAM,	   /* header sent, waiting for features */
	CLIENT_STARTTLS,   /* <starttls/> sent, waiting for <proceed/> */
	CLIENT_TLS,	   /* TLS handshake */
	CLIENT_AUTH,	   /* <auth/> sent */
	CLIENT_BIND,	   /* restarted after SASL, waiting for features / bind */
	CLIENT_RESUME,	   /* <resume/> sent after a move, waiting for <resumed/> */
	CLIENT_SESSION,	   /* legacy session iq sent */
	CLIENT_VERSION,	   /* presence + version query sent */
	CLIENT_ESTABLISHED,
	CLIENT_CLOSING, /* we sent </stream:stream>, waiting for the server's */
	CLIENT_ENDED,	/* fate recorded; the handle is closing */
};

enum client_fate {
	FATE_CLOSED_BY_CLIENT,
	FATE_CLOSED_BY_SERVER,
	FATE_DROPPED,
	FATE_CONNECT_FAILURE,
	FATE_LOGIN_FAILURE,
	FATE_PING_TIMEOUT,
	FATE_MIGRATED,
};

/* One stanza we sent that the server has not acknowledged (XEP-0198). */
struct client_smo {
	struct client_smo *next;
	uint32_t len;
	char data[];
};

struct client {
	uv_tcp_t tcp;  /* embedded handle; tcp.data = this */
	struct outq q; /* what we write, at most CLIENT_MAX_OUTPUT allocated */
	struct fleet *fl;
	struct xstream *xs;	    /* parser; NULL while idle */
	struct tlsbio *tls;	    /* NULL without TLS */
	struct scram_client *scram; /* during SCRAM only */
	char *jid;		    /* bound full JID, malloc'd */
	uint64_t start_us;	    /* connect start (monotonic), for login latency */
	uint32_t slot;		    /* index in fleet->clients */
	uint32_t est_pos;	    /* index in fleet->est while established */
	uint32_t gen;		    /* connections made by this slot (resource name) */
	uint32_t respawn_ms;	    /* idle: start again at this time (run ms) */
	uint32_t deadline_ms;	    /* login or close deadline (run ms) */
	uint32_t end_ms;	    /* lifetime end; UINT32_MAX = never */
	uint32_t next_msg_ms;	    /* next message due */
	uint32_t next_ping_ms;	    /* next ping due */
	uint32_t ping_sent_ms;	    /* outstanding ping sent at; 0 = none */
	uint32_t last_rx_ms;	    /* last input, to compact idle parsers */
	uint16_t instance;	    /* stats instance index */
	uint8_t version;	    /* stats version index */
	uint8_t state;		    /* enum client_state */
	uint8_t server_cond;	    /* index into the condition table; 0 = none */
	uint8_t handle_open : 1;    /* tcp initialised and not yet closed */
	uint8_t sent_close : 1;	    /* we wrote </stream:stream> */
	uint8_t tls_done : 1;	    /* STARTTLS finished */
	uint8_t restart : 1;	    /* reset the parser after this stanza (SASL) */
	uint8_t starttls : 1;	    /* switch to TLS after this stanza */
	uint8_t compacted : 1;	    /* the parser was compacted since the last input */
	uint8_t need_session : 1;   /* the server wants a legacy session iq */
	uint8_t failing : 1;	    /* a write failed: on fl->failing (client_fail) */
	/* XEP-0198 (--stream-management) */
	uint8_t sm_on : 1;	/* <enable/> sent: our stanzas are counted and kept */
	uint8_t sm_enabled : 1; /* <enabled/> came: the server's stanzas are counted */
	uint8_t sm_r_out : 1;	/* our <r/> waits for the server's <a/> */
	uint8_t migrating : 1;	/* this slot's connection was moved: the next one resumes */
	uint8_t gap_other : 1;	/* the server ended the last one: the next login's gap counts */
	char *sm_id;		/* resumption id, kept across a move; malloc'd */
	struct client_smo *smo_head, *smo_tail; /* our unacknowledged stanzas, oldest first */
	uint32_t smo_n;				/* how many */
	uint32_t sm_h_in;			/* stanzas received since <enabled/> */
	uint32_t sm_h_out;			/* stanzas sent since <enable/> */
	uint64_t moved_us;			/* when the server moved us (see-other-host) */
	struct sockaddr_storage *move_to;	/* where it sent us (numeric), else NULL */
	struct client *fail_next;		/* fl->failing, while failing */
	const char *fail_detail;		/* its fate's detail (a static string) */
	uint32_t fail_gen;			/* gen of the connection that failed */
	uint8_t fail_fate;			/* enum client_fate */
};

enum fleet_phase { FLEET_RUNNING, FLEET_DRAINING, FLEET_CLOSING, FLEET_DONE };

/* A message target established in another process (from the accountant). */
struct fleet_target {
	uint32_t client; /* global slot number */
	char *jid;	 /* its bound JID */
};

struct fleet {
	uv_loop_t *loop;
	const struct load_opts *o;
	struct stats *st;
	struct msgtrack mt;
	struct client *clients; /* nclients slots */
	uint32_t nclients;
	uint32_t *est; /* slots of established clients (nest) */
	uint32_t nest;
	uint32_t open_handles; /* handles not yet closed */
	char *rbuf;	       /* the one read buffer */
	char *pbuf;	       /* decrypted TLS input */
	SSL_CTX *tls_ctx;
	uv_timer_t tick;
	uv_idle_t fail_idle;	/* ends the clients whose writes failed (client_fail) */
	struct client *failing; /* those clients */
	uv_signal_t sigint, sigterm;
	uv_signal_t sigusr1; /* opens / closes the measurement window (stats.h) */
	uint64_t t0_us;	     /* run start (uv_hrtime / 1000) */
	double tokens;	     /* ramp budget (connections) */
	double ramp;	     /* connections per second for this process */
	uint32_t last_tick_ms;
	uint32_t phase_deadline_ms;
	enum fleet_phase phase;
	bool stop_requested;
	bool abort_requested; /* second SIGINT: skip waiting */
	unsigned worker;      /* for message ids */
	uint32_t *src_ips;    /* network order; nsrc entries */
	unsigned nsrc;
	unsigned spawn_cursor;
	size_t next_second; /* next timeline sample */
	double next_progress;
	bool tty;
	/* Worker of a split run: records to the accountant (account.h) over
	 * link, and the targets it hands out in other processes. */
	struct wire *link;	     /* NULL in a single process */
	uv_poll_t link_poll;	     /* readable: samples, Q, K */
	unsigned versions_sent;	     /* version labels announced (V records) */
	uint64_t next_seq;	     /* last message id number handed out */
	struct fleet_target *sample; /* targets in other processes */
	unsigned nsample, sample_fill, sample_want;
	uint32_t remote_est; /* clients of other processes established */
	bool settled;	     /* the accountant says nothing is pending */
	int go;		     /* the accountant's start: 1, or -1 refused */
	uint64_t rng;
	uint64_t compactions; /* parsers (TLS handshakes: 8) freed since the last malloc_trim() */
	uint32_t last_trim_ms;
};

uint32_t fleet_now_ms(const struct fleet *fl);
uint64_t fleet_now_us(const struct fleet *fl);
/* Wall-clock time in microseconds (CLOCK_REALTIME): the records' clock. */
uint64_t fleet_wall_us(void);
double fleet_rand01(struct fleet *fl);

/* Ends the clients marked by a failed write (fl->fail_idle runs it, right
 * after the callback that wrote). */
void client_run_failed(struct fleet *fl);

/* Starts a connection in slot c (state must be IDLE). */
void client_start(struct client *c);
/* Tick work for one client at time now (lifetimes, messages, pings, deadlines). */
void client_tick(struct client *c, uint32_t now);
/* Ends the session politely: </stream:stream> and wait for the server's. */
void client_logout(struct client *c);
/* Stops a client at the end of the run whatever its state. */
void client_stop(struct client *c);

#endif
