/*
 * Inside cluster routing (server/cluster/): the structures every file of the
 * folder shares, and the functions one file offers the others (cluster__*,
 * internal: the outside uses cluster.h).
 */
#ifndef CHATD_CLUSTER_INT_H
#define CHATD_CLUSTER_INT_H

#include <stdint.h>
#include <sys/stat.h>

#include <uv.h>

#include "cluster.h"
#include "cluster_proto.h"
#include "cluster_routes.h"
#include "log.h"
#include "outq.h"

/* A peer that does not finish the handshake in this time is dropped. */
#define HANDSHAKE_TIMEOUT_MS 5000
/* Output a peer has not read yet (bytes allocated in the link's queue);
 * beyond it the link is declared dead rather than letting one stuck peer
 * eat the instance's memory. */
#define LINK_OUTQ_MAX (64u << 20)
#define READ_CHUNK 65536
#define PEERS_FILE_MAX (1u << 20)
#define ADDR_MAX 300
#define LEAVE_GRACE_MS 2000
/* cluster_ready() waits at most this long for the first links. */
#define READY_MAX_MS 5000
/* Session moves (cluster_move.c): what we can do, announced in the probe;
 * how long a tombstone relays at most (SESSION_DONE normally ends it after
 * one round trip); how long a fence waits for its PONGs; how many
 * instances one resumption asks. */
#define CLUSTER_CAPS_MINE CLUSTER_CAP_SESSIONS
#define CLUSTER_TOMB_MS 30000
#define CLUSTER_FENCE_MS 10000
#define CLUSTER_REQ_FANOUT 64

enum link_state {
	LINK_CONNECTING, /* dialed, waiting for connect */
	LINK_HELLO,	 /* our HELLO sent, waiting for the peer's */
	LINK_AUTH,	 /* our AUTH sent, waiting for the peer's */
	LINK_IDENT,	 /* the peer proved the secret, our IDENT sent, waiting for its */
	LINK_UP,	 /* authenticated both ways */
	LINK_RETIRING,	 /* the second link to a peer: no longer written, read until EOF */
	LINK_CLOSING,
};

extern const char *const cluster__link_state_names[];

enum target_src { SRC_STATIC = 1, SRC_FILE = 2, SRC_DNS = 4 };

struct target;

struct link {
	uv_tcp_t tcp; /* embedded; the link is freed in its close callback */
	uv_connect_t connect;
	struct outq q;		 /* everything written to the peer (LINK_OUTQ_MAX) */
	const char *fail_reason; /* a write failed: closed after the current
				    callback (cluster__link_fail), or NULL */
	struct cluster *cl;
	struct link *next;     /* cl->links */
	struct target *target; /* the target we dialed; NULL when accepted or target gone */
	int dialer;	       /* 1 when we dialed */
	enum link_state state;
	uint64_t id;	     /* for logs */
	char addr[ADDR_MAX]; /* the peer's address, for logs */
	char ip[64];	     /* the peer's IP address (accepted links) */
	uint16_t peer_port;  /* the link port the peer listens on (HELLO) */
	char *hello_id;	     /* the instance field of its HELLO (a pseudonym, or an older
				peer's instance id): the id its AUTH proof covers */
	char *peer_id;	     /* its instance id: from HELLO (older peers) or IDENT */
	char *peer_version;
	uint8_t nonce[CLUSTER_NONCE_LEN];      /* ours */
	uint8_t peer_nonce[CLUSTER_NONCE_LEN]; /* theirs */
	uint8_t *in;			       /* received bytes not yet framed */
	size_t in_len;
	size_t in_cap;			/* bounded by the frame cap of the state */
	uint64_t last_rx;		/* loop ms of the last frame received */
	uint64_t last_tx;		/* loop ms of the last frame sent */
	uint64_t deadline;		/* handshake deadline */
	int clean;			/* closed on purpose: LEAVING or duplicate */
	int duplicate;			/* closed as the second link to its peer: its
				      sessions are still there, on the other link */
	struct cluster_rt_owner routes; /* the peer's routes learned on this link */
	unsigned peer_caps;		/* CLUSTER_CAP_* the peer announced (0: none, or
				   an older chatd) */
};

/* A session given to another instance: stanzas for its JID that still
 * reach us go on there, until it says every peer has its route. */
struct cluster_tomb {
	struct cluster_tomb *next;
	char *full;	  /* the session's full JID */
	char *peer_id;	  /* the instance that has it now */
	uint64_t expires; /* loop ms */
};

/* A session taken from another instance: our ROUTE_ADD went out, a PING
 * went after it on every link; when each PONG is back, SESSION_DONE. */
struct cluster_fence {
	struct cluster_fence *next;
	uint32_t seq;	   /* in the PING token */
	char *full;	   /* the session's full JID */
	char *from_peer;   /* the instance it came from */
	uint64_t *links;   /* ids of the links whose PONG is awaited */
	size_t nlinks;	   /* how many */
	int armed;	   /* every PING is out: the last PONG completes it */
	uint64_t deadline; /* loop ms */
};

struct target {
	struct target *next; /* cl->targets */
	struct cluster *cl;
	char *key; /* "host:port" as discovered */
	char host[256];
	int port;
	unsigned sources;     /* enum target_src bits still listing it */
	struct link *link;    /* our dialed link, while it exists */
	uv_getaddrinfo_t gai; /* resolving a host name before a dial */
	int resolving;
	int removed;	    /* no source lists it; freed when idle */
	int self;	    /* it is ourselves: never dialed again */
	int settled;	    /* the first dial failed, or a link to it synced */
	char *peer_id;	    /* who answered last time */
	unsigned fails;	    /* failed dials since the last link that came up */
	int ever_up;	    /* a link to it came up once: it is a peer that restarts */
	uint64_t next_dial; /* loop ms */
};

struct cluster {
	uv_loop_t *loop;
	struct cluster_hooks hooks;
	void *ud;
	char *listen;
	char *instance;
	char *version;
	char pseudonym[CLUSTER_PSEUDONYM_LEN + 1]; /* our HELLO's instance field */
	char *peers_file;
	char *dns_name;
	int dns_port;
	uint8_t *secret;
	size_t secretlen;
	uint64_t keepalive_ms;
	uint16_t listen_port;		   /* the bound one, once started */
	struct sockaddr_storage listen_sa; /* what --cluster-listen said */
	uint64_t dns_interval_ms;
	char **static_peers;
	size_t nstatic;

	uv_tcp_t listener;
	uv_timer_t tick;
	uv_idle_t fail_idle; /* closes the links whose writes failed */
	int listening;
	int started;
	uint64_t started_at; /* loop ms of cluster_start() */
	int dns_done;	     /* the first resolution of dns_name answered */
	int leaving;
	int handles; /* open uv handles (listener, timer, links) */

	struct link *links;
	struct target *targets;
	uint64_t next_link_id;

	struct cluster_routes remote;
	struct cluster_routes local;
	struct cluster_rt_owner local_owner;
	struct cluster_buf obuf;      /* scratch for encoding frames */
	struct cluster_tomb *tombs;   /* sessions given away, still relayed (cluster_move.c) */
	struct cluster_fence *fences; /* sessions taken, their fences */
	uint32_t fence_seq;

	/* peers file: re-read when its stat changes */
	uint64_t pf_next;
	struct stat pf_st;
	int pf_seen;
	/* DNS */
	uv_getaddrinfo_t dns_req;
	int dns_busy;
	uint64_t dns_next;
	uint64_t dns_last;
	uint64_t rng;

	struct cluster_stats st;
};

static inline uint64_t now_ms(const struct cluster *cl)
{
	return uv_now(cl->loop);
}

static inline uint64_t rng_next(struct cluster *cl)
{
	/* xorshift64*: jitter only, no security role */
	cl->rng ^= cl->rng >> 12;
	cl->rng ^= cl->rng << 25;
	cl->rng ^= cl->rng >> 27;
	return cl->rng * 2685821657736338717ull;
}

static inline const char *peer_name(const struct link *l)
{
	return l->peer_id ? l->peer_id : "-";
}

/*
 * What one file of the folder offers the others. Defined in:
 *   cluster.c       on_handle_closed
 *   cluster_conf.c  split_list, free_list
 *   cluster_fwd.c   route_gone, link_drop_routes, link_send_dump, link_flush_obuf
 *   cluster_link.c  link_new, link_close, link_fail, link_refuse, link_up, find_up_link, leave_done,
 *                   on_link_closed, on_connection, on_connect, addr_string
 *   cluster_auth.c  on_hello, on_auth, on_ident, link_pseudonymous
 *   cluster_disc.c  target_*, targets_sync, peers_file_poll, dns_resolve
 *   cluster_move.c  caps_probe, fence_pong, moves_*, on_session_frame, relay, tomb_link
 * A function that may close the link says so at its definition; none frees
 * memory outside a close callback. Writing never closes a link: a failed
 * write marks it (cluster__link_fail) and fail_idle closes it after the
 * current callback, so code walking cl->links while it writes, and the
 * callers of the cluster_* functions, never see a link close (or a hook
 * run) under them.
 */
void cluster__addr_string(const struct sockaddr *sa, char *buf, size_t size);
void cluster__caps_probe(struct link *l);
int cluster__fence_pong(struct link *l, uint64_t token);
int cluster__link_write(struct link *l, const uint8_t *p, size_t len);
void cluster__moves_free(struct cluster *cl);
void cluster__moves_link_closed(struct link *l);
void cluster__moves_tick(struct cluster *cl, uint64_t now);
void cluster__on_session_frame(struct link *l, const struct cluster_msg *m);
int cluster__relay(struct cluster *cl, const char *to, const char *from, const char *xml,
		   size_t len);
struct link *cluster__tomb_link(struct cluster *cl, const char *full);
void cluster__dns_resolve(struct cluster *cl);
struct link *cluster__find_up_link(struct cluster *cl, const char *peer_id,
				   const struct link *skip);
void cluster__free_list(char **v, size_t n);
void cluster__leave_done(struct cluster *cl);
void cluster__link_close(struct link *l, const char *reason);
void cluster__link_fail(struct link *l, const char *reason);
void cluster__link_drop_routes(struct link *l);
int cluster__link_flush_obuf(struct link *l);
struct link *cluster__link_new(struct cluster *cl, int dialer);
int cluster__link_pseudonymous(const struct link *l);
void cluster__link_refuse(struct link *l, const char *why);
int cluster__link_send_dump(struct link *l);
void cluster__link_up(struct link *l);
void cluster__on_auth(struct link *l, const struct cluster_msg *m);
void cluster__on_connect(uv_connect_t *req, int status);
void cluster__on_connection(uv_stream_t *server, int status);
void cluster__on_handle_closed(uv_handle_t *h);
void cluster__on_hello(struct link *l, const struct cluster_msg *m);
void cluster__on_ident(struct link *l, const struct cluster_msg *m);
void cluster__on_link_closed(uv_handle_t *h);
void cluster__peers_file_poll(struct cluster *cl);
void cluster__route_gone(struct cluster *cl, const char *full);
int cluster__split_list(const char *s, char ***out, size_t *n);
void cluster__target_dial(struct target *t);
void cluster__target_schedule(struct target *t, int failed);
int cluster__target_wants_dial(struct cluster *cl, struct target *t, uint64_t now);
void cluster__targets_sync(struct cluster *cl, unsigned src, char **keys, size_t n);

#endif
