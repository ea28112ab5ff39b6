/*
 * Inside the switch (deployer/lswitch.c, lsw_sup.c): the leader process's
 * state. Not for the rest of rainbow, which talks to the switch through
 * its control socket only (lswitch.h).
 */
#ifndef RAINBOW_LSW_INT_H
#define RAINBOW_LSW_INT_H

#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "lswitch.h"
#include "lsw_probe.h"
#include "lsw_proxy.h"

#define LSW_FAULT_MAX 1024
#define LSW_NAME_MAX 128
#define LSW_REPLICAS_MAX 32
#define LSW_FOLLOWERS_MAX 32

/* What a replica is doing, as the switch sees it. */
enum lsw_rep_state {
	LSW_REP_SPAWNED,     /* started, its ports file not written yet */
	LSW_REP_STARTING,    /* listening, /readyz not 200 yet */
	LSW_REP_READY,	     /* /readyz 200: receives new connections when its colour is live */
	LSW_REP_UNREADY,     /* was ready; probes (or a refused connect) failing */
	LSW_REP_BACKOFF,     /* exited; restarted at backoff_until */
	LSW_REP_FAILED,	     /* exited before it was ever ready: not restarted */
	LSW_REP_CRASHED,     /* exited while its colour drained: not restarted */
	LSW_REP_TERMINATING, /* SIGTERM sent (scale down, remove): gone once it exits */
};

struct lsw_colour;

/* Watches one process until it exits: our child (uv_process_t) or adopted (pidfd). */
struct lsw_watch {
	union {
		uv_process_t proc;
		uv_poll_t poll;
	} h;
	int adopted;
	int pidfd;
	struct lsw_rep *rep; /* NULL once the replica let go of it */
};

struct lsw_rep {
	struct lsw_colour *col;
	char name[LSW_NAME_MAX]; /* chat-SHA-N: chatd's --instance */
	int index;
	int pid; /* 0: not running */
	struct lsw_watch *watch;
	enum lsw_rep_state state;
	char listen[64], http[64], cluster[64]; /* from its ports file; "" until then */
	char websocket[64];			/* its XMPP over WebSocket port, likewise */
	struct lsw_backend *be;			/* its listener, once known */
	int ever_ready;				/* this incarnation was ready once */
	int was_ready;				/* any incarnation was ready once */
	int restarts;				/* restarts by the switch */
	int streak;				/* crashes since it last stayed up LSW_STABLE_MS */
	int fails;				/* consecutive failed probes */
	int term_sent;				/* SIGTERMs sent */
	int term_twice;				/* a second SIGTERM is due (remove: close now) */
	uint64_t started_ms;			/* monotonic */
	uint64_t ready_ms;			/* became ready (monotonic) */
	uint64_t backoff_until;			/* monotonic */
	int64_t started_unix;
	long count;		   /* chatd_connections at the last /metrics (-1 unknown) */
	long lost;		   /* connections lost in its crashes, all incarnations */
	int tick;		   /* probe ticks (every 4th reads /metrics) */
	char fault[LSW_FAULT_MAX]; /* the last exit: how, and its log's last lines */
	struct lsw_probe_req readyz, metrics;
};

/* How to start a colour's replicas (sent by rainbow with every scale). */
struct lsw_spec {
	char chatd[2048];
	int auth_any;
	int cluster;	    /* chatd takes --cluster-listen/--peers-file */
	int cluster_secret; /* chatd takes --cluster-secret-file */
	int control;	    /* chatd takes --control-token-file and --service-address */
	char args[1024];    /* extra flags, space separated */
};

struct lsw_colour {
	struct lsw_colour *next;
	struct lsw *sw;
	char sha[48];
	int wanted;
	int removing; /* remove: its record goes once every replica exited */
	int ever_selected;
	int next_index;
	struct lsw_spec spec;
	size_t n_rep;
	struct lsw_rep *rep[LSW_REPLICAS_MAX * 2]; /* wanted ones + terminating ones */
};

struct lsw_follower {
	struct lsw *sw;
	int slot;
	int pid;
	uv_process_t proc;
	uv_pipe_t link;
	int proc_open, link_open;
	char buf[65536];
	size_t len;
	json_t *stats; /* its last report */
	uint64_t backoff_until;
	int restarts;
};

struct lsw_ctl;

struct lsw {
	uv_loop_t *loop;
	struct lsw_dp dp;
	struct lsw_dp ws_dp; /* --websocket: the same route to the replicas' WebSocket ports */
	char ws_listen[64];  /* "" without */
	uv_pipe_t ctl;
	uv_signal_t sig_term, sig_int;
	uv_timer_t tick;
	char listen[64];
	struct sockaddr_storage listen_sa;
	char state_dir[2048];
	char sock_path[108];
	char json_path[2200];
	char beat_path[2200];
	char exe[4096]; /* rainbow itself, for followers */
	int n_switches;
	/* selection: a colour's ready replicas, or static backends */
	char selected[48];
	int static_sel; /* selected with an explicit backend list */
	size_t n_static;
	struct lsw_backend *statics[LSWITCH_BACKENDS_MAX];
	unsigned next_id;
	struct lsw_colour *colours;
	struct lsw_probe *probe;
	struct lsw_follower followers[LSW_FOLLOWERS_MAX];
	size_t n_followers;
	int n_ctl;
	int stopping;
	int ctl_bound;
	struct lsw_ctl *down_waiter; /* `down`: replied once every replica exited */
	uint64_t down_deadline;
	uint64_t beat_next;
	int beat_written;     /* this process wrote STATE/switch.beat */
	int64_t started_unix; /* unix seconds */
	uint64_t save_fail_log;
	int dirty; /* state changed since the last successful save */
	char route_sig[96];
	uint64_t started_ms;
};

/* Counters summed over the leader and its followers (status). */
struct lsw_totals {
	long connections, accepted, refused, refused_limit, failed, retried, max_connections;
	long queued_bytes;
};

/* lsw_follow.c: follower switch processes (SO_REUSEPORT) */
int lsw_followers_start(struct lsw *sw, int n);
void lsw_followers_route(struct lsw *sw);
void lsw_followers_tick(struct lsw *sw);
void lsw_followers_stop(struct lsw *sw);
/* Adds the followers' last reports to t, and one object each to switches (may be NULL). */
void lsw_followers_totals(struct lsw *sw, struct lsw_totals *t, json_t *switches);
int lsw_follower_run(const struct lswitch_opts *o);

/* lsw_sup.c: the replicas */
int lsw_sup_init(struct lsw *sw);
void lsw_sup_tick(struct lsw *sw);
void lsw_sup_resume(struct lsw *sw, json_t *colours);
json_t *lsw_sup_json(struct lsw *sw, int for_status);
int lsw_sup_scale(struct lsw *sw, const char *sha, int n, const struct lsw_spec *spec, char *err,
		  size_t errlen);
/* force: even the selected colour (down). */
int lsw_sup_remove(struct lsw *sw, const char *sha, int force, char *err, size_t errlen);
int lsw_sup_remove_replica(struct lsw *sw, const char *sha, const char *name, char *err,
			   size_t errlen);
void lsw_sup_down(struct lsw *sw);
int lsw_sup_running(struct lsw *sw);
void lsw_sup_backend_down(struct lsw *sw, struct lsw_backend *be, const char *why);
struct lsw_colour *lsw_colour_find(struct lsw *sw, const char *sha);
/* A spec as rainbow sends it ({"chatd","auth_any","cluster","cluster_secret","args"}). */
int lsw_spec_parse(json_t *o, struct lsw_spec *s);
void lsw_sup_free(struct lsw *sw);

/* lswitch.c, for lsw_sup.c */
void lsw_route_update(struct lsw *sw);
int lsw_save(struct lsw *sw);
void lsw_record(struct lsw *sw, json_t *event);
unsigned lsw_new_id(struct lsw *sw);

#endif
