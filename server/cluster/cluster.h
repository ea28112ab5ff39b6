/*
 * chatd cluster routing (docs/cluster.md): links to the other
 * chatd instances, peer discovery, and the remote route table, so that
 * every instance of every colour is one chat service.
 *
 * One struct cluster per chatd process, on chatd's libuv loop. chatd tells
 * it about its own sessions (cluster_local_set / cluster_local_del), asks it
 * to forward what it cannot deliver locally (cluster_forward,
 * cluster_forward_bare, cluster_broadcast_presence), and receives what
 * peers forwarded through struct cluster_hooks. Whatever arrives from a
 * peer is delivered locally only, never forwarded again: a stanza crosses
 * at most one link, so it is delivered exactly once.
 *
 * Errors: 0 or a count for success, negative errno values otherwise.
 * Functions never call the hooks synchronously (a write that fails closes
 * its link only after the current callback); the hooks are called from the
 * loop (a link's read callback, the tick, the closing of a failed link)
 * and may call any cluster_* function.
 */
#ifndef CHATD_CLUSTER_H
#define CHATD_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "log.h"

#define CLUSTER_KEEPALIVE_DEFAULT 10.0	  /* seconds */
#define CLUSTER_DNS_INTERVAL_DEFAULT 10.0 /* seconds */
#define CLUSTER_SECRET_MIN 16		  /* bytes */
#define CLUSTER_SECRET_MAX 4096

struct cluster_config {
	const char *listen;	/* "ADDR:PORT" (numeric address) for links; required */
	const char *instance;	/* this instance's id, unique in the cluster; required */
	const char *version;	/* version label, reported to peers; may be NULL */
	const char *peers;	/* "HOST:PORT,HOST:PORT" or NULL */
	const char *peers_file; /* one HOST:PORT per line, re-read when it changes */
	const char *peers_dns;	/* NAME[:PORT]; port defaults to the listen port */
	const uint8_t *secret;	/* shared secret (cluster_secret_load); copied */
	size_t secretlen;
	double keepalive;    /* seconds without a frame before a link is dead */
	double dns_interval; /* seconds between re-resolutions of peers_dns */
};

struct cluster_hooks {
	/*
	 * A stanza forwarded by a peer: deliver it to the local session bound
	 * to `to` (a full JID; `xml` is the serialized stanza, whose own to=
	 * may be the bare JID it was addressed to). Deliver locally only.
	 * Returns 0 when delivered, a negative errno when no such session
	 * exists any more (logged; the glue may answer the sender with an
	 * error stanza through cluster_forward).
	 */
	int (*deliver)(void *ud, const char *to, const char *from, const char *xml, size_t len);
	/* Presence broadcast by a remote user: deliver it to the local
	 * sessions that chatd's own broadcast rule picks. */
	void (*presence)(void *ud, const char *from, const char *xml, size_t len);
	/* A remote session's route went away (unbound, its link died, its
	 * instance left) while it was available: chatd tells the user's
	 * local resources it is unavailable. May be NULL. */
	void (*route_gone)(void *ud, const char *full);
	/* A peer announced a session its link had not announced before (a
	 * bind there, or its table at link start): chatd replaces a local
	 * session with the same full JID (RFC 6120 7.7.2.2: <conflict/>), and
	 * when the route is already available (a table at link start, e.g.
	 * after an outage that told the user's resources it was gone) tells
	 * the user's local resources it is available; `moved` when another
	 * instance already held that full JID (a session that moved: nothing
	 * changed for the user's other resources). May be NULL. */
	void (*route_added)(void *ud, const char *full, int priority, int available, int moved);
	/*
	 * Session moves (all may be NULL). session_req: the peer `peer` asks
	 * for the resumable session `previd` of the user `bare` (a client
	 * resumes there); chatd answers with cluster_session_give() or
	 * cluster_session_nak(). session_nak: a peer refused our request
	 * (CLUSTER_NAK_*). session_state: a peer gave us the session our
	 * request `req` asked for (the bytes are chatd's own serialization);
	 * chatd installs it, announces it (cluster_local_set) and calls
	 * cluster_session_taken().
	 */
	void (*session_req)(void *ud, const char *peer, uint64_t req, const char *previd,
			    const char *bare, uint32_t h);
	void (*session_nak)(void *ud, const char *peer, uint64_t req, unsigned reason);
	void (*session_state)(void *ud, const char *peer, uint64_t req, const char *full,
			      const uint8_t *state, size_t len);
};

/* Which remote resources of a bare JID get a copy (RFC 6121 8.5.2). */
enum cluster_bare_mode {
	CLUSTER_BARE_PRIO,   /* available, priority == prio (message chat/normal) */
	CLUSTER_BARE_NONNEG, /* available, priority >= 0 (message headline) */
	CLUSTER_BARE_ALL,    /* available (presence) */
};

struct cluster;

/* Reads the shared secret: the file's bytes minus trailing whitespace,
 * CLUSTER_SECRET_MIN..CLUSTER_SECRET_MAX bytes. *out is malloc'd. Returns
 * 0, -errno from opening/reading, or -EINVAL when too short/long. */
int cluster_secret_load(const char *path, uint8_t **out, size_t *len);

/*
 * Dialing a target that fails backs off per target: CLUSTER_BACKOFF_MIN_MS
 * doubled per failure, up to CLUSTER_BACKOFF_MAX_MS for a peer that was
 * linked before (a restarting pod: relink fast) and up to
 * CLUSTER_BACKOFF_NEVER_UP_MAX_MS for one never reached (a pod that never
 * becomes ready stays in the peer list: no point in knocking every 5 s,
 * and it dials us itself once it is up); +-25% jitter on top.
 */
#define CLUSTER_BACKOFF_MIN_MS 200
#define CLUSTER_BACKOFF_MAX_MS 5000
#define CLUSTER_BACKOFF_NEVER_UP_MAX_MS 60000
uint64_t cluster_backoff_ms(unsigned fails, int ever_up);
/* The level of the line for a target's fails-th failed dial: info for the
 * 1st, 2nd, 4th, 8th..., debug otherwise. */
enum log_level cluster_dial_log_level(unsigned fails);

/* Validates cfg and creates the cluster (not started). */
int cluster_new(uv_loop_t *loop, const struct cluster_config *cfg,
		const struct cluster_hooks *hooks, void *ud, struct cluster **out);
/* Listens, starts discovery and dialing. */
int cluster_start(struct cluster *cl);
/*
 * Clean shutdown: sends LEAVING on every link (peers drop our routes at
 * once), closes links and the listener, stops discovery. The handles close
 * during the next loop iterations; call cluster_free() after uv_run()
 * returned. Idempotent.
 */
void cluster_leave(struct cluster *cl);
/*
 * 1 once the first discovery round is through: the peers file was read
 * and the DNS name answered once (when configured), and every known peer
 * either sent its full route table or failed its first dial; or 5 s after
 * cluster_start() whatever the state. chatd reports ready only then, so
 * that a new colour takes clients only once it can reach the old ones.
 */
int cluster_ready(const struct cluster *cl);
/* The address links are accepted on, "HOST:PORT" as bound (a port 0 given in
 * the configuration is the kernel's pick here, once started). */
const char *cluster_listen_addr(const struct cluster *cl);
/* Frees everything; the cluster must not be started or must have left and
 * the loop must have run its close callbacks. */
void cluster_free(struct cluster *cl);

/* A local session bound or changed presence (priority -128..127,
 * available after available presence): announced to every peer. */
int cluster_local_set(struct cluster *cl, const char *full, int priority, int available);
/* A local session ended. */
void cluster_local_del(struct cluster *cl, const char *full);

/*
 * Forwards a stanza to the instance where the full JID `to` is bound.
 * Returns 0 when sent, -ENOENT when no peer holds it (the caller then
 * answers as a single instance would), or another negative errno.
 */
int cluster_forward(struct cluster *cl, const char *to, const char *from, const char *xml,
		    size_t len);
/*
 * Remote resources of a bare JID for the RFC 6121 rules: returns how many
 * remote resources are available with a non-negative priority and sets
 * *best to the highest such priority (untouched when none).
 */
int cluster_bare_best(const struct cluster *cl, const char *bare, int *best);
/* Forwards one copy to each remote resource of bare that mode selects.
 * Returns the number of copies sent. */
int cluster_forward_bare(struct cluster *cl, const char *bare, enum cluster_bare_mode mode,
			 int prio, const char *from, const char *xml, size_t len);
/* Sends presence broadcast by a local user (from: full JID) to every peer
 * that holds another resource of the same user. Returns the number of
 * peers it went to. */
int cluster_broadcast_presence(struct cluster *cl, const char *from, const char *xml, size_t len);

/*
 * Session moves between instances (cluster_move.c, docs/cluster.md
 * "Moving sessions"). cluster_session_request() asks every peer that holds
 * a resource of `bare` (and can move sessions) for the session `previd`;
 * returns how many were asked (0: nobody can have it). The answers come
 * through the hooks session_nak and session_state.
 * cluster_session_give() sends the session to `peer` and hands the route
 * over: full leaves our table without a ROUTE_DEL, and what still reaches
 * us for it goes on to peer until peer reports SESSION_DONE (then
 * ROUTE_DEL). 0, or a negative errno (nothing changed: the session stays).
 * cluster_session_taken(): the session from `from_peer` is ours and
 * announced; once every link has read that, from_peer is told.
 */
int cluster_session_request(struct cluster *cl, uint64_t req, const char *previd, const char *bare,
			    uint32_t h);
int cluster_session_nak(struct cluster *cl, const char *peer, uint64_t req, unsigned reason);
int cluster_session_give(struct cluster *cl, const char *peer, uint64_t req, const char *full,
			 const uint8_t *state, size_t len);
int cluster_session_taken(struct cluster *cl, const char *full, const char *from_peer);

/* 1 when full is bound on some peer (or was just given to one). */
int cluster_has_route(const struct cluster *cl, const char *full);
/* 1 when some session of bare is bound on a peer. */
int cluster_has_bare(const struct cluster *cl, const char *bare);
/* 1 when full is bound on a peer and available, 0 when bound and not
 * available, -ENOENT when not bound on any peer. */
int cluster_route_available(const struct cluster *cl, const char *full);

struct cluster_stats {
	uint64_t peers;		/* established links */
	uint64_t routes;	/* remote route entries */
	uint64_t local_routes;	/* local sessions announced */
	uint64_t forwarded;	/* stanzas (and presence copies) sent to peers */
	uint64_t received;	/* stanzas and presence received from peers */
	uint64_t link_failures; /* links lost without a LEAVING notice */
	uint64_t refused;	/* inbound connections refused (auth, protocol) */
	uint64_t moved_in;	/* sessions taken from peers */
	uint64_t moved_out;	/* sessions given to peers */
	uint64_t relayed;	/* stanzas passed on to where a session moved */
};

void cluster_get_stats(const struct cluster *cl, struct cluster_stats *out);
/* Writes the cluster metrics in Prometheus text format into buf; returns
 * the length as snprintf does (>= size when truncated). */
int cluster_metrics_print(const struct cluster *cl, char *buf, size_t size);

#endif
