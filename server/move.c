#include "move.h"

#include <stddef.h>
#include <string.h>

#include "log.h"
#include "sm.h"
#include "smq.h"
#include "srv.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

const char *move_address(const struct srv *srv)
{
	return srv->cfg->service_address[0] ? srv->cfg->service_address : srv->domain;
}

static void move_now(struct conn *c)
{
	c->moving = 0;
	conn_close_with(c, CLOSE_SEE_OTHER_HOST, "see-other-host", move_address(c->srv),
			"reconnect to the service: this instance is leaving", NULL);
}

void move_session(struct conn *c)
{
	if (c->closing || c->detached || c->moving || c->state != ST_ESTABLISHED)
		return;
	c->srv->metrics.sessions_moved_total++;
	conn_log(c, LOG_DEBUG, "move", "sm=%s",
		 !c->sm		   ? "off"
		 : c->sm->window_s ? "resume"
				   : "acks");
	if (c->sm && !c->sm->window_s && c->sm->count) {
		/* Acks without resumption: learn what arrived before the end. */
		c->moving = 1;
		c->sm->r_pending = 1;
		conn_send_str(c, "<r xmlns='" NS_SM "'/>");
		c->t_deadline = srv_now(c->srv) + MOVE_ACK_WAIT_MS;
		srv_conn_schedule(c->srv, c);
		return;
	}
	move_now(c);
}

void move_acked(struct conn *c)
{
	if (c->moving && !c->closing)
		move_now(c);
}

unsigned move_sessions(struct srv *srv, unsigned n)
{
	struct connlife_node *node, *next;
	unsigned moved = 0;

	/* Oldest first: the connection list of the lifetime metrics is kept
	 * in start order. A move closes the connection, which unlinks it. */
	for (node = srv->metrics.life.oldest; node && moved < n; node = next) {
		struct conn *c = container_of(node, struct conn, life);

		next = node->newer;
		if (c->closing || c->moving || c->state != ST_ESTABLISHED)
			continue;
		move_session(c);
		moved++;
	}
	if (moved)
		log_info("move_sessions", "asked=%u moved=%u sessions=%llu", n, moved,
			 (unsigned long long)srv->metrics.sessions);
	return moved;
}
