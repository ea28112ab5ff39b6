/*
 * The local platform's L4 switch: the role a Kubernetes Service plays. One
 * long-lived process listens on the public port and proxies every new TCP
 * connection to a replica of the selected colour (round robin); established
 * connections keep flowing to the replica they started on, whatever the
 * selection becomes later.
 *
 * It is controlled through a unix socket (STATE_DIR/switch.sock) with a line
 * protocol, one request line -> one reply line:
 *
 *   select SHA ADDR:PORT[,ADDR:PORT...]   -> ok
 *   select -                              -> ok      (select nothing)
 *   status                                -> ok {JSON}
 *   stop                                  -> ok      (closes everything, exits)
 *   anything else / too long / malformed  -> error REASON
 *
 * A control client with more than 4 MiB of replies it has not read is
 * disconnected.
 *
 * status JSON: {"listen","pid","selected","backends":[ADDR...],
 *   "connections","accepted","refused","failed",
 *   "per_backend":[{"sha","addr","active","total","failed","selected"}]}
 *
 * The selection is persisted (STATE_DIR/switch.json, written atomically)
 * before it is acknowledged, so a restarted switch resumes it.
 */
#ifndef RAINBOW_LSWITCH_H
#define RAINBOW_LSWITCH_H

#include <stddef.h>
#include <sys/socket.h>

#include <jansson.h>

#define LSWITCH_LINE_MAX 4096
#define LSWITCH_BACKENDS_MAX 64

struct lswitch_opts {
	const char *listen; /* "127.0.0.1:5222" */
	const char *state_dir;
	size_t high_water; /* bytes allocated for one side's output before the other side's reads stop */
};

/* One control request, parsed and validated (lswitch_parse_command()). */
enum lswitch_cmd_kind {
	LSWITCH_CMD_STATUS = 1,
	LSWITCH_CMD_SELECT, /* sha "" and n 0: select nothing */
	LSWITCH_CMD_STOP,
	LSWITCH_CMD_PING,
};

struct lswitch_cmd {
	enum lswitch_cmd_kind kind;
	char sha[48];			      /* 7-40 lower-case hex, or "" */
	size_t n;			      /* backends */
	char addrs[LSWITCH_BACKENDS_MAX][64]; /* as given: "IP:PORT" or "[v6]:PORT" */
	struct sockaddr_storage sas[LSWITCH_BACKENDS_MAX];
};

/*
 * Parses one request line (without its newline; tokens are split in place,
 * so line is modified) into *cmd. 0, or -EINVAL with the reason to reply in
 * err. Pure: the switch applies the result.
 */
int lswitch_parse_command(char *line, struct lswitch_cmd *cmd, char *err, size_t errlen);

/* The arguments of `select SHA LIST` ("-" and "" select nothing); as above. */
int lswitch_parse_select(const char *sha, const char *list, struct lswitch_cmd *cmd, char *err,
			 size_t errlen);

/* Runs the switch in this process until `stop` or SIGTERM/SIGINT. 0 or -errno. */
int lswitch_run(const struct lswitch_opts *o);

/*
 * One request to a running switch (blocking, 5 s timeout). reply gets the
 * reply line without the newline. 0 (reply starts with "ok"), -EPROTO (reply
 * starts with "error"), or -errno (-ENOENT/-ECONNREFUSED: not running).
 */
int lswitch_call(const char *state_dir, const char *request, char *reply, size_t len);

/*
 * `status` of a running switch, parsed (*out: a new reference, json_decref
 * it). The reply may be long (one entry per backend), so it is read into a
 * heap buffer of LSWITCH_REPLY_MAX. 0, -EIO (not JSON) or lswitch_call's codes.
 */
#define LSWITCH_REPLY_MAX (1024 * 1024)
int lswitch_status(const char *state_dir, json_t **out);

/* STATE_DIR/switch.sock into buf; -ENAMETOOLONG when it does not fit a sun_path. */
int lswitch_sock_path(const char *state_dir, char *buf, size_t len);

#endif
