/*
 * The local platform: colours are groups of chatd processes on this host,
 * the switch (lswitch.h) plays the Service. Everything lives in the state
 * directory, so rainbow may be killed at any point:
 *
 *   STATE/switch.sock, switch.json, switch.pid, switch.log   the switch
 *   STATE/colours/SHA.json    one colour: replicas (pid, ports), meta
 *   STATE/logs/chat-SHA-N.log each replica's stderr/stdout
 *   STATE/peers               every replica's cluster address, one a line
 *   STATE/cluster.secret      shared cluster secret (created once)
 *
 * Replicas are started detached (double fork + setsid) so they outlive
 * rainbow and are never its zombies; a pid counts as the replica only while
 * /proc/PID/cmdline still names the replica's instance.
 */
#ifndef RAINBOW_LOCAL_H
#define RAINBOW_LOCAL_H

#include <stddef.h>

#include "platform.h"

#define LOCAL_LISTEN_DEFAULT "127.0.0.1:5222"

/* mkdir -p of the state dir and its subfolders; 0 or -errno. */
int local_state_init(const char *state_dir);

/*
 * Starts the switch daemon (`exe local serve ...`, detached, log in
 * STATE/switch.log) unless one answers; waits until it answers. 0, or
 * -errno with a message in err. *already is set when it was running.
 */
int local_up(const char *exe, const char *state_dir, const char *listen, int *already, char *err,
	     size_t errlen);

/*
 * Stops every colour's replicas (unless keep_colours) and the switch.
 * Callers ask for confirmation before when connections are open.
 */
int local_down(const char *state_dir, int keep_colours, char *err, size_t errlen);

#endif
