/*
 * The local platform's switch: the roles a Kubernetes Service (with
 * kube-proxy and its EndpointSlices) and a ReplicaSet play. One long-lived
 * process (plus, for scale, follower processes sharing the public port
 * with SO_REUSEPORT) that
 *  - proxies every new TCP connection to a READY replica of the selected
 *    colour (round robin); established connections keep flowing to the
 *    replica they started on, whatever the selection becomes later; with
 *    a WebSocket address, a second listener does the same for the
 *    replicas' XMPP over WebSocket ports (leader process only);
 *  - supervises the replicas: starts them, checks their readiness
 *    continuously, restarts those of live and starting colours that exit
 *    (with backoff), reports the others (deployer/lsw_sup.c).
 *
 * It is controlled through a unix socket (STATE_DIR/switch.sock) with a line
 * protocol, one request line -> one reply line:
 *
 *   select SHA                            -> ok   (colour SHA's ready replicas)
 *   select SHA ADDR:PORT[,ADDR:PORT...]   -> ok   (fixed backends, not supervised)
 *   select -                              -> ok   (select nothing)
 *   scale SHA N {"chatd":PATH,"args":STR,"auth_any":B,"cluster":B,"cluster_secret":B}
 *                                         -> ok   (N replicas of colour SHA)
 *   remove SHA                            -> ok   (SIGTERM twice to its replicas)
 *   remove-replica SHA NAME               -> ok   (SIGTERM once: it drains)
 *   status                                -> ok {JSON}
 *   stop                                  -> ok   (closes everything, exits; replicas run on)
 *   down                                  -> ok   (stops every replica, then exits)
 *   ping                                  -> ok pong
 *   anything else / too long / malformed  -> error REASON
 *
 * A control client with more than 4 MiB of replies it has not read is
 * disconnected. Every change is saved (STATE_DIR/switch.json, atomically)
 * before it is acknowledged, so a restarted switch resumes the selection
 * and adopts the replicas that still run.
 */
#ifndef RAINBOW_LSWITCH_H
#define RAINBOW_LSWITCH_H

#include <stddef.h>
#include <sys/socket.h>

#include <jansson.h>

#define LSWITCH_LINE_MAX 8192
#define LSWITCH_BACKENDS_MAX 64
#define LSWITCH_SWITCHES_MAX 16

struct lswitch_opts {
	const char *listen;    /* "127.0.0.1:5222" */
	const char *websocket; /* XMPP over WebSocket public address, or NULL: none */
	const char *state_dir;
	size_t high_water; /* bytes allocated for one side's output before the other side's reads stop */
	int switches;	   /* processes sharing the public port (1: no SO_REUSEPORT) */
	const char *exe; /* rainbow itself (followers are started with it) */
	int follower;	 /* run as a follower: fd 3 the listener, fd 4 the leader */
};

/* One control request, parsed and validated (lswitch_parse_command()). */
enum lswitch_cmd_kind {
	LSWITCH_CMD_STATUS = 1,
	LSWITCH_CMD_SELECT, /* sha "" and n 0: nothing; n 0: the colour's replicas */
	LSWITCH_CMD_STOP,
	LSWITCH_CMD_PING,
	LSWITCH_CMD_DOWN,
	LSWITCH_CMD_SCALE,	    /* sha, replicas, spec */
	LSWITCH_CMD_REMOVE,	    /* sha */
	LSWITCH_CMD_REMOVE_REPLICA, /* sha, name */
};

struct lswitch_cmd {
	enum lswitch_cmd_kind kind;
	char sha[48];			      /* 7-40 lower-case hex, or "" */
	size_t n;			      /* backends */
	char addrs[LSWITCH_BACKENDS_MAX][64]; /* as given: "IP:PORT" or "[v6]:PORT" */
	struct sockaddr_storage sas[LSWITCH_BACKENDS_MAX];
	int replicas;	  /* scale: 0..32 */
	char name[128];	  /* remove-replica */
	const char *spec; /* scale: the JSON text (points into the parsed line) */
};

/*
 * Parses one request line (without its newline; tokens are split in place,
 * so line is modified) into *cmd. 0, or -EINVAL with the reason to reply in
 * err. Pure: the switch applies the result.
 */
int lswitch_parse_command(char *line, struct lswitch_cmd *cmd, char *err, size_t errlen);

/* The arguments of `select SHA [LIST]` ("-" selects nothing); as above. */
int lswitch_parse_select(const char *sha, const char *list, struct lswitch_cmd *cmd, char *err,
			 size_t errlen);

/* Runs the switch in this process until `stop`/`down` or SIGTERM/SIGINT. 0 or -errno. */
int lswitch_run(const struct lswitch_opts *o);

/*
 * One request to a running switch (blocking, timeout_ms). reply gets the
 * reply line without the newline. 0 (reply starts with "ok"), -EPROTO
 * (reply starts with "error"), -ENOENT (no switch: no socket or nobody
 * listens on it), or -EAGAIN (a switch is there but did not answer in time,
 * or this process is out of descriptors: worth another try).
 */
int lswitch_call_timeout(const char *state_dir, const char *request, char *reply, size_t len,
			 int timeout_ms);
/* lswitch_call_timeout() with 5 s. */
int lswitch_call(const char *state_dir, const char *request, char *reply, size_t len);

/*
 * `status` of a running switch, parsed (*out: a new reference, json_decref
 * it). The reply may be long (one entry per backend and replica), so it is
 * read into a heap buffer of LSWITCH_REPLY_MAX. 0, -EIO (not JSON) or
 * lswitch_call's codes.
 */
#define LSWITCH_REPLY_MAX (4 * 1024 * 1024)
int lswitch_status(const char *state_dir, json_t **out);

/* STATE_DIR/switch.sock into buf; -ENAMETOOLONG when it does not fit a sun_path. */
int lswitch_sock_path(const char *state_dir, char *buf, size_t len);

/*
 * 1 when pid is alive (not a zombie) and, when name is given, has it as a
 * whole argument (a replica's --instance): a recorded pid counts as the
 * replica only while it still runs it (pids are reused).
 */
int lswitch_pid_runs(int pid, const char *name);

#endif
