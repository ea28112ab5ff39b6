/*
 * chatd: an XMPP chat server (docs/chatd.md).
 *   chatd [flags]                      serve (see --help)
 *   chatd passwd --users FILE USER     add or replace a user (password on stdin)
 */
#include <stdio.h>
#include <string.h>

#include <uv.h>

#include "config.h"
#include "log.h"
#include "srv.h"
#include "users.h"

static void close_any(uv_handle_t *h, void *arg)
{
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

int main(int argc, char **argv)
{
	static struct srv srv; /* holds the 128 KiB of shared buffers: not on the stack */
	struct config cfg;
	uv_loop_t loop;
	int r;

	if (argc > 1 && strcmp(argv[1], "passwd") == 0)
		return users_passwd_command(argc - 1, argv + 1);
	r = config_load(&cfg, argc, argv);
	if (r != 0)
		return r == 1 ? 0 : 2;
	log_init("chatd", cfg.log_level);
	if (uv_loop_init(&loop) != 0) {
		log_error("loop_error", "%s", "");
		return 1;
	}
	r = srv_init(&srv, &loop, &cfg);
	if (r == 0)
		r = srv_run(&srv);
	else
		r = 1;
	/* Close whatever is still open (after a failed start) and let the
	 * close callbacks run, so nothing leaks. */
	uv_walk(&loop, close_any, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	srv_free(&srv);
	if (uv_loop_close(&loop) != 0)
		log_warn("loop_busy", "%s", "");
	return r;
}
