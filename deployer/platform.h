/*
 * The platform operations table: the one seam between rainbow's deploy logic
 * (deployer/deploy.c, pure, no I/O) and the place colours run.
 *
 *   local       deployer/local*.c   groups of chatd processes + an L4 switch
 *   kubernetes  deployer/kube*.c    apps/v1 Deployments + a Service selector
 *
 * Vocabulary
 *   colour    one deployment of one git SHA, named chat-<sha> (sha: 7-40
 *             lower-case hex, as given on the command line; platforms never
 *             shorten or lengthen it).
 *   replica   one chatd of a colour (a process / a pod); it has a name that is
 *             also chatd's --instance (local: chat-<sha>-<n>; kube: pod name).
 *   selected  the colour that receives NEW connections (the Service selector /
 *             the local switch). Established connections are never moved.
 *   meta      small key/value strings stored IN the platform per colour
 *             (kube: annotations on the Deployment, local: the colour's JSON
 *             file), so that everything rainbow needs to resume survives
 *             rainbow being killed. Keys are the PLATFORM_META_* names below
 *             (platforms may prefix them, e.g. "rainbow.chat/draining-since",
 *             but must give them back unprefixed in struct platform_colour).
 *
 * Error convention (every op returning int)
 *   0 on success, a negative errno-style code on failure, and then a one-line
 *   human message in p->err (set with platform_error()). Codes with meaning
 *   to the caller:
 *     -ENOENT   the colour (or the platform itself: local switch not running,
 *               namespace/Service missing) does not exist
 *     -EEXIST   create: the colour already exists (nothing was changed)
 *     -EACCES   not allowed (kube: 401/403, the message names verb+resource)
 *     -ETIMEDOUT, -ECONNREFUSED, -EIO   transport / server trouble, after the
 *               platform's own bounded retries
 *     -EINVAL   bad argument (unknown option, bad sha)
 *     -EBUSY    remove_replica: the replica still holds connections
 *   Every op must be safe to repeat after rainbow was killed halfway through
 *   it (idempotent or detectably partial).
 *
 * Memory: arrays returned through out-pointers are allocated with malloc and
 * freed by the caller with free() (they hold no inner pointers).
 *
 * Threads: none. Ops block (bounded by their own timeouts, a few seconds).
 *
 * Changes after the first version are announced here:
 *   - meta time values are "unix seconds with milliseconds" (1796000000.250);
 *     platforms still treat every value as an opaque string.
 *   - list leaves out colours being deleted (kube: deletionTimestamp set).
 *   - rainbow also writes the meta keys "max-drain-at" (deploy.h
 *     DEPLOY_META_MAX_DRAIN_AT) and "drain-from" (PLATFORM_META_DRAIN_FROM,
 *     the count when deselected): up to 10 keys per colour in all.
 *   - struct platform_colour has route_drift (0 unless the platform's switch
 *     can point elsewhere than the selected colour's ready replicas).
 *   - replicas also carries each chatd's lifetime histogram and age buckets
 *     (struct platform_replica lifetimes, ages) for the drain forecast:
 *     platforms fill the replica from the /metrics body they read with
 *     platform_replica_metrics().
 *   - an optional op, event (NULL when the platform has none): rainbow
 *     reports every decision it applied on a colour (kube: an
 *     events.k8s.io/v1 Event regarding the colour's Deployment).
 *   - struct platform_replica has restarts, lost, failed and fault (0/"" on
 *     platforms that cannot tell): a failed replica fails its deploy at once.
 *   - an optional op, move (NULL when the platform cannot): the assisted
 *     drain asks one replica to move some of its sessions now; rainbow
 *     also writes the meta keys "assist-since" and "assist-rate".
 */
#ifndef RAINBOW_PLATFORM_H
#define RAINBOW_PLATFORM_H

#include <stddef.h>
#include <stdint.h>

#define PLATFORM_SHA_MAX 41   /* 40 hex + NUL */
#define PLATFORM_NAME_MAX 128 /* replica name: chat-<sha>-<n> / pod name */
#define PLATFORM_ERR_MAX 512
#define PLATFORM_META_MAX 16 /* key/value pairs per colour */
#define PLATFORM_META_KEY_MAX 48
#define PLATFORM_META_VAL_MAX 128

/*
 * Meta keys rainbow writes (values are unix seconds with milliseconds,
 * "1796000000.250", unless noted). Values are opaque strings to platforms;
 * platforms store any key given; these are the ones with meaning.
 */
#define PLATFORM_META_SELECTED_AT "selected-at"	      /* last time it became selected */
#define PLATFORM_META_DRAINING_SINCE "draining-since" /* deselected at (switch time) */
#define PLATFORM_META_DRAINED_AT "drained-at"	      /* settled at 0: drained */
#define PLATFORM_META_FAILED "failed"		      /* reason text: never became ready */
#define PLATFORM_META_SHUTDOWN_AT "shutdown-at"	      /* --on-max-drain shutdown sent */
#define PLATFORM_META_KEPT "kept"		      /* "1": scaled to 0, kept for rollback */
#define PLATFORM_META_REPLICAS "replicas"	      /* replicas wanted when live */
#define PLATFORM_META_DRAIN_FROM "drain-from"	      /* connections when deselected (count) */

struct platform_kv {
	char key[PLATFORM_META_KEY_MAX];
	char value[PLATFORM_META_VAL_MAX];
};

struct platform_colour {
	char sha[PLATFORM_SHA_MAX];
	int replicas; /* desired replicas now (0 when scaled down) */
	int ready;    /* replicas ready (chatd /readyz 200) */
	int selected; /* 1: the switch/Service sends new connections here */
	/*
	 * Selected colour only: how far the switch's backends are from its
	 * ready replicas (backends that are not one, plus ready replicas that
	 * are not backends). 0 when in line, and on platforms whose Service
	 * follows readiness by itself (kubernetes).
	 */
	int route_drift;
	int64_t created; /* unix seconds */
	size_t n_meta;
	struct platform_kv meta[PLATFORM_META_MAX];
};

/* Largest number of finite histogram bounds read from a chatd (it exports 61). */
#define PLATFORM_HIST_MAX 64

#define PLATFORM_FAULT_MAX 768

/* A cumulative histogram as chatd exports it (Prometheus _bucket samples). */
struct platform_hist {
	int n;			      /* finite bounds; <= 0: none (not exported, unreadable) */
	double le[PLATFORM_HIST_MAX]; /* upper bounds, seconds, increasing */
	double cum[PLATFORM_HIST_MAX + 1]; /* counts with value <= le[i]; cum[n] = all */
};

struct platform_replica {
	char name[PLATFORM_NAME_MAX];
	int ready;			/* 1 ready, 0 not (starting, draining, dead) */
	long connections;		/* chatd_connections + chatd_sessions_detached (sessions
					   waiting to be resumed); -1 when unreadable */
	long detached;			/* of them, chatd_sessions_detached (0: none, unknown) */
	struct platform_hist lifetimes; /* chatd_connection_duration_seconds: ended ones */
	struct platform_hist ages;	/* chatd_connection_age_seconds_bucket: open ones */
	int restarts; /* times the platform restarted it (0 when it cannot tell) */
	long lost;    /* connections it held when it crashed, all crashes (0: none known) */
	int failed;   /* 1: it exited before it was ever ready; it is not restarted */
	char fault[PLATFORM_FAULT_MAX]; /* failed or crashed: how it exited, its last log lines */
	double uptime_s;		/* chatd_uptime_seconds; <= 0: unknown */
};

/*
 * Options from the command line / environment. Strings are borrowed for the
 * platform's lifetime; NULL means "not given, use the platform's default".
 */
struct platform_opts {
	const char *state_dir; /* rainbow's own files (timeline, record) */
	/* local */
	const char *chatd;	/* chatd binary (--chatd / RAINBOW_CHATD) */
	int auth_any;		/* start chatd with --auth-any (default 1) */
	const char *chatd_args; /* extra chatd flags, space separated */
	/* kubernetes */
	const char *kubeconfig; /* --kubeconfig / KUBECONFIG */
	const char *context;	/* --context */
	const char *namespace;	/* --namespace */
	/* anything else: -P KEY=VALUE, repeatable; platform documents its keys */
	size_t n_extra;
	const struct platform_kv *extra;
};

/*
 * One decision rainbow applied on a colour, told the way Kubernetes tells
 * its own (an Event): type "Normal" or "Warning", a CamelCase reason
 * ("Switched", "Drained"), a CamelCase action (what was done: "Switch",
 * "Delete"), and a sentence with the numbers.
 */
#define PLATFORM_EVENT_FIELD_MAX 128 /* reason, action: Kubernetes' limit */
#define PLATFORM_EVENT_NOTE_MAX 1024 /* note, NUL included: under Kubernetes' 1 kB */

struct platform_event {
	const char *type;
	const char *reason;
	const char *action;
	char note[PLATFORM_EVENT_NOTE_MAX];
};

struct platform;

struct platform_ops {
	const char *name; /* "local", "kubernetes" */
	/*
	 * 1: the platform honours struct platform's dry_run (describes, does
	 * not make, every change). 0: a dry run must not call a changing op.
	 */
	int can_dry_run;

	/* Connects/opens; sets p->ctx. -ENOENT when the platform is not up. */
	int (*open)(struct platform *p, const struct platform_opts *o);
	/* Frees p->ctx; safe after a failed open. */
	void (*close)(struct platform *p);

	/*
	 * Every colour that exists (including ones scaled to 0), any order;
	 * colours being deleted (kube: deletionTimestamp set) are left out.
	 */
	int (*list)(struct platform *p, struct platform_colour **out, size_t *n);

	/*
	 * Creates colour sha with `replicas` replicas, not selected. Returns at
	 * once (readiness is polled with list/replicas). -EEXIST if it exists.
	 */
	int (*create)(struct platform *p, const char *sha, int replicas);

	/*
	 * Per-replica readiness and live connection count of one colour, read
	 * from each chatd's /readyz and /metrics now. -ENOENT: no such colour.
	 */
	int (*replicas)(struct platform *p, const char *sha, struct platform_replica **out,
			size_t *n);

	/*
	 * Sends new connections to colour sha only (atomically, read back to
	 * confirm); established connections are untouched. sha NULL or ""
	 * selects nothing (new connections are refused).
	 */
	int (*select)(struct platform *p, const char *sha);
	/* The selected colour's sha into out ("" when none). */
	int (*selected)(struct platform *p, char out[PLATFORM_SHA_MAX]);

	/*
	 * Deletes colour sha and its meta. Its replicas get SIGTERM (chatd drains
	 * what is left, then system-shutdown). -ENOENT when already gone.
	 */
	int (*remove)(struct platform *p, const char *sha);

	/*
	 * Sets the desired replica count (0 = keep the colour, run nothing: for
	 * --keep-drained; back up for rollback). Removed replicas get SIGTERM.
	 */
	int (*scale)(struct platform *p, const char *sha, int replicas);

	/*
	 * Removes exactly the named replica and lowers the desired count by one
	 * (--shrink). The caller saw its count at 0 for the settle period; the
	 * platform re-checks and returns -EBUSY if it now holds a connection.
	 * (kube: pod-deletion-cost on that pod, then scale down by one.)
	 */
	int (*remove_replica)(struct platform *p, const char *sha, const char *name);

	/*
	 * Sets meta key to value on colour sha; value NULL removes the key.
	 * -ENOSPC when PLATFORM_META_MAX keys are already set.
	 */
	int (*meta_set)(struct platform *p, const char *sha, const char *key, const char *value);

	/*
	 * Optional (NULL: the platform records none). Records ev as having
	 * happened now on colour sha, which may already be deleted (an Event
	 * about a deleted colour is still recorded). Best effort: rainbow logs
	 * a failure and goes on; a failed event is never retried. Bounded like
	 * every op, but with fewer retries: it must not slow a deploy.
	 */
	int (*event)(struct platform *p, const char *sha, const struct platform_event *ev);

	/*
	 * Optional (NULL: no assisted drain on this platform). Asks replica
	 * `name` of colour sha to move `count` of its sessions now: chatd's
	 * POST /control/move with the deployment's control token (chatd ends
	 * the oldest sessions with see-other-host to the service's address;
	 * stream-managed clients resume on the selected colour). *moved: how
	 * many it asked to move (fewer when it holds fewer). -ENOENT: no such
	 * replica (or it is gone); -EACCES: the token was refused; -ENOTSUP:
	 * the replica has no control endpoint (a chatd without it).
	 */
	int (*move)(struct platform *p, const char *sha, const char *name, int count, int *moved);
};

struct json_t;

struct platform {
	const struct platform_ops *ops;
	void *ctx;		    /* the platform's own state */
	char err[PLATFORM_ERR_MAX]; /* message of the last failed op */
	/*
	 * Set before open (ops->can_dry_run only): a JSON array. Ops then change
	 * nothing and append what they would send instead (kube: each request,
	 * {"method", "path", "content_type", "body"}); reads still happen.
	 */
	struct json_t *dry_run;
};

/* The local platform (deployer/local.c). */
const struct platform_ops *local_platform_ops(void);

/* Formats p->err and returns code (a negative errno), for `return platform_error(...)`. */
int platform_error(struct platform *p, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* The value of key in c's meta, or NULL. */
const char *platform_meta_get(const struct platform_colour *c, const char *key);
/* Sets key in c's meta in memory (for platforms building a colour): 0 or -ENOSPC. */
int platform_meta_put(struct platform_colour *c, const char *key, const char *value);

/*
 * Fills r's connections, lifetimes and ages from a chatd /metrics body
 * (text NULL: nothing was read: -1 and n = -1 everywhere).
 */
void platform_replica_metrics(struct platform_replica *r, const char *text);

/* 1 when sha is 7-40 lower-case hex digits. */
int platform_sha_valid(const char *sha);

#endif
