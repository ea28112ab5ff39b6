/*
 * The local platform: colours are groups of chatd processes on this host;
 * the switch daemon (lswitch.h) plays the Service and the ReplicaSet: it
 * starts, watches, probes and restarts the replicas. Everything lives in
 * the state directory, so rainbow may be killed at any point:
 *
 *   STATE/switch.sock, switch.json, switch.log   the switch (its state:
 *                             selection, every replica's pid and ports)
 *   STATE/colours/SHA.json    rainbow's record of a colour: created, the
 *                             replicas wanted, meta
 *   STATE/logs/chat-SHA-N.log each replica's stderr/stdout
 *   STATE/run/chat-SHA-N.ports the ports a replica bound (chatd --ports-file)
 *   STATE/peers               every replica's cluster address, one a line
 *   STATE/cluster.secret      shared cluster secret (created once)
 */
#ifndef RAINBOW_LOCAL_H
#define RAINBOW_LOCAL_H

#include <stddef.h>

#include <jansson.h>

#include "platform.h"

#define LOCAL_LISTEN_DEFAULT "127.0.0.1:5222"

/* mkdir -p of the state dir and its subfolders; 0 or -errno. */
int local_state_init(const char *state_dir);

/*
 * Starts the switch daemon (`exe local serve ...`, detached, log in
 * STATE/switch.log; switches > 0: that many processes sharing the port,
 * 0: as saved, else 1; websocket, or NULL: its XMPP over WebSocket address)
 * unless one answers; waits until it answers. 0, or -errno with a message
 * in err. *already is set when it was running.
 */
int local_up(const char *exe, const char *state_dir, const char *listen, const char *websocket,
	     int switches, int *already, char *err, size_t errlen);

/*
 * Stops every colour's replicas (unless keep_colours) and the switch.
 * Callers ask for confirmation before when connections are open.
 */
int local_down(const char *state_dir, int keep_colours, char *err, size_t errlen);

/* Writes o to path atomically (temp file + rename): 0 or the real -errno. */
int local_write_json(json_t *o, const char *path);

/*
 * When the switch of state_dir died without `local down` (its heartbeat,
 * STATE/switch.beat, names a pid that is gone), a message saying what that
 * did into msg and 1 (*beat, when asked: the heartbeat, a new reference);
 * else 0.
 */
int local_switch_died(const char *state_dir, char *msg, size_t len, json_t **beat);

#endif
