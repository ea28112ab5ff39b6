/*
 * One simulated XMPP client: the connection, its login state machine,
 * messages, pings and its one fate.
 */
#include "client.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "addr.h"
#include "b64.h"
#include "fleet.h"
#include "log.h"
#include "scram.h"
#include "tlsbio.h"
#include "xml.h"
#include "xmppns.h"
#include "xstream.h"

/* Output we let pile up towards a server that does not read (bytes the
 * queue allocated). */
#define CLIENT_MAX_OUTPUT (256 * 1024)
/* An idle client's parser is compacted after this long without input: soon,
 * so that few parsers are alive at once and their memory is reused. */
#define CLIENT_COMPACT_MS 200
/* A slot whose connection failed tries again after this long. */
#define CLIENT_RETRY_MS 1000
/* Longest wait for the XEP-0092 answer (within the login deadline); past it
 * the session counts as established with version "unknown". */
#define CLIENT_VERSION_WAIT_MS 5000

static const struct xstream_limits client_limits = { 65536, 32 };

/* RFC 6120 4.9.3 stream error conditions; index 0 means "none". */
static const char *const client_conditions[] = {
	"none",
	"bad-format",
	"bad-namespace-prefix",
	"conflict",
	"connection-timeout",
	"host-gone",
	"host-unknown",
	"improper-addressing",
	"internal-server-error",
	"invalid-from",
	"invalid-namespace",
	"invalid-xml",
	"not-authorized",
	"not-well-formed",
	"policy-violation",
	"remote-connection-failed",
	"reset",
	"resource-constraint",
	"restricted-xml",
	"see-other-host",
	"system-shutdown",
	"undefined-condition",
	"unsupported-encoding",
	"unsupported-feature",
	"unsupported-stanza-type",
	"unsupported-version",
	"other",
};
#define CLIENT_NCONDITIONS (sizeof(client_conditions) / sizeof(client_conditions[0]))

static const char *const client_fate_names[] = {
	[FATE_CLOSED_BY_CLIENT] = "closed_by_client",
	[FATE_CLOSED_BY_SERVER] = "closed_by_server",
	[FATE_DROPPED] = "dropped",
	[FATE_CONNECT_FAILURE] = "connect_failure",
	[FATE_LOGIN_FAILURE] = "login_failure",
	[FATE_PING_TIMEOUT] = "ping_timeout",
	[FATE_MIGRATED] = "migrated",
};

static const char *const client_state_names[] = {
	"idle",	  "connecting", "stream",  "starttls",	  "tls",     "auth",  "bind",
	"resume", "session",	"version", "established", "closing", "ended",
};

static void client_on_open(void *ud, const struct xnode *header, const char *default_ns);
static void client_on_stanza(void *ud, struct xnode *stanza);
static void client_on_close(void *ud);
static const struct xstream_cbs client_cbs = { client_on_open, client_on_stanza, client_on_close };

static void client_set_state(struct client *c, enum client_state s)
{
	log_debug("client_state", "slot=%u gen=%u from=%s to=%s", c->slot, c->gen,
		  client_state_names[c->state], client_state_names[s]);
	c->state = (uint8_t)s;
}

static bool client_is_live(const struct client *c)
{
	return c->state != CLIENT_IDLE && c->state != CLIENT_ENDED;
}

/* ------------------------------------------------------------------ closing */

static void client_fate(struct client *c, enum client_fate fate, const char *detail);

/* Forgets XEP-0198 state: id, counters, our unacknowledged stanzas. */
static void client_sm_reset(struct client *c)
{
	struct client_smo *o;

	while ((o = c->smo_head)) {
		c->smo_head = o->next;
		free(o);
	}
	c->smo_tail = NULL;
	c->smo_n = 0;
	c->sm_h_in = c->sm_h_out = 0;
	c->sm_on = c->sm_enabled = c->sm_r_out = 0;
	c->migrating = 0;
	free(c->sm_id);
	c->sm_id = NULL;
	free(c->move_to);
	c->move_to = NULL;
}

static void client_on_closed(uv_handle_t *h)
{
	struct client *c = h->data;
	struct fleet *fl = c->fl;

	/* Every path records the fate before closing; this keeps the books
	 * balanced should one ever not. */
	if (client_is_live(c))
		client_fate(c, FATE_DROPPED, "closed");
	if (c->failing) {
		struct client **pp = &fl->failing;

		while (*pp && *pp != c)
			pp = &(*pp)->fail_next;
		if (*pp)
			*pp = c->fail_next;
		c->failing = 0;
	}
	outq_free(&c->q);
	xstream_free(c->xs);
	c->xs = NULL;
	tlsbio_free(c->tls);
	c->tls = NULL;
	scram_client_free(c->scram);
	c->scram = NULL;
	c->handle_open = 0;
	fl->open_handles--;
	client_set_state(c, CLIENT_IDLE);
	if (c->migrating && fl->phase == FLEET_RUNNING) {
		/* Moved: back at once (no ramp), with the JID and the stream
		 * management state, to resume where the server sent us. */
		client_start(c);
		return;
	}
	client_sm_reset(c);
	free(c->jid);
	c->jid = NULL;
}

static void client_close_handle(struct client *c)
{
	if (c->handle_open && !uv_is_closing((uv_handle_t *)&c->tcp))
		uv_close((uv_handle_t *)&c->tcp, client_on_closed);
}

/* Leaves the established set (messages stop targeting us) and the gauges. */
static void client_unestablish(struct client *c)
{
	struct fleet *fl = c->fl;
	struct stats *st = fl->st;
	uint32_t last;

	if (c->state != CLIENT_ESTABLISHED)
		return;
	last = fl->est[--fl->nest];
	fl->est[c->est_pos] = last;
	fl->clients[last].est_pos = c->est_pos;
	st->connected--;
	st->versions[c->version].connected--;
	st->instances[c->instance].connected--;
	if (fl->link)
		wire_printf(fl->link, "X %u\n", fl->o->worker_first + c->slot);
}

/* Counts an end of fate in st; its detail in the tally of that kind of end, where it has one. */
static void count_fate(struct stats *st, enum client_fate fate, const char *detail)
{
	const struct {
		uint64_t *count;
		struct stats_names *detail;
	} tally[] = {
		[FATE_CLOSED_BY_CLIENT] = { &st->closed_by_client, NULL },
		[FATE_CLOSED_BY_SERVER] = { &st->closed_by_server, &st->server_conditions },
		[FATE_DROPPED] = { &st->dropped, &st->drop_reasons },
		[FATE_CONNECT_FAILURE] = { &st->connect_failures, &st->connect_failure_reasons },
		[FATE_LOGIN_FAILURE] = { &st->login_failures, &st->login_failure_reasons },
		[FATE_PING_TIMEOUT] = { &st->ping_timeouts, NULL },
		[FATE_MIGRATED] = { &st->migrated, NULL },
	};
	(*tally[fate].count)++;
	if (tally[fate].detail)
		stats_names_add(tally[fate].detail, detail, 1);
}

/* The one place where a connection's fate is counted. */
static void client_fate(struct client *c, enum client_fate fate, const char *detail)
{
	struct fleet *fl = c->fl;
	struct stats *st = fl->st;
	uint32_t now = fleet_now_ms(fl);

	if (!client_is_live(c))
		return;
	if (c->state == CLIENT_ESTABLISHED)
		client_unestablish(c);
	else if (c->state != CLIENT_CLOSING)
		st->connecting--;
	count_fate(st, fate, detail);
	if (c->migrating && fate != FATE_MIGRATED && fate != FATE_CLOSED_BY_CLIENT) {
		/* The connection after a move failed: that move did not succeed,
		 * the moved connection counts as dropped. */
		st->migrated--;
		st->dropped++;
		stats_names_add(&st->drop_reasons, "migration-failed", 1);
		c->migrating = 0;
	}
	if (fate == FATE_MIGRATED) {
		c->migrating = 1;
		c->moved_us = fleet_now_us(fl);
	} else if ((fate == FATE_CLOSED_BY_SERVER || fate == FATE_DROPPED ||
		    fate == FATE_PING_TIMEOUT) &&
		   c->state == CLIENT_ESTABLISHED && fl->phase == FLEET_RUNNING) {
		c->gap_other = 1; /* the time until the slot is back counts too */
		c->moved_us = fleet_now_us(fl);
	}
	log_info("client_end", "slot=%u gen=%u fate=%s detail=%s state=%s", c->slot, c->gen,
		 client_fate_names[fate], detail ? detail : "-", client_state_names[c->state]);
	/* A socket left open after its fate (closing once </stream:stream> is
	 * written) would stay forever with a peer that never reads: client_tick
	 * closes it at this deadline. */
	c->deadline_ms = now + (uint32_t)(c->fl->o->close_timeout * 1000);
	client_set_state(c, CLIENT_ENDED);
	/* Failures retry after a pause; ends of a session reconnect at once
	 * (subject to the ramp), like real users. */
	c->respawn_ms = now + ((fate == FATE_CONNECT_FAILURE || fate == FATE_LOGIN_FAILURE)
				       ? CLIENT_RETRY_MS
				       : 0);
}

/* ------------------------------------------------------------------ output */

/*
 * A write failed or passed CLIENT_MAX_OUTPUT: the connection ends with
 * fate, but only after the current callback (client_run_failed), so that
 * whoever wrote (the tick sending messages, the protocol answering) never
 * has its client end under it. Later writes are refused.
 */
static void client_run_failed_cb(uv_idle_t *idle)
{
	struct fleet *fl = idle->data;

	uv_idle_stop(idle);
	client_run_failed(fl);
}

static void client_fail(struct client *c, enum client_fate fate, const char *detail)
{
	struct fleet *fl = c->fl;

	if (c->failing || !c->handle_open)
		return;
	c->failing = 1;
	c->fail_fate = (uint8_t)fate;
	c->fail_detail = detail;
	c->fail_gen = c->gen;
	c->fail_next = fl->failing;
	fl->failing = c;
	uv_idle_start(&fl->fail_idle, client_run_failed_cb);
}

void client_run_failed(struct fleet *fl)
{
	struct client *c;

	while ((c = fl->failing)) {
		fl->failing = c->fail_next;
		c->failing = 0;
		if (c->gen != c->fail_gen)
			continue; /* that connection is gone already */
		if (client_is_live(c))
			client_fate(c, (enum client_fate)c->fail_fate, c->fail_detail);
		client_close_handle(c);
	}
}

/* Events of the output queue, from libuv's callbacks. */
static void client_on_outq(struct outq *q, enum outq_event ev, int status)
{
	struct client *c = q->data;

	if (ev == OUTQ_SHUTDOWN) {
		client_close_handle(c); /* client_send_ex(close_after): written, FIN sent */
	} else if (ev == OUTQ_ERROR) {
		if (client_is_live(c))
			client_fate(c,
				    c->state == CLIENT_CLOSING ? FATE_CLOSED_BY_CLIENT
							       : FATE_DROPPED,
				    uv_err_name(status));
		client_close_handle(c);
	}
}

/* Bytes to the socket (the kernel first, the rest queued); heap, a buffer
 * that holds them or NULL, is freed. 0 or a negative errno; never ends the
 * client. */
static int client_write_raw(struct client *c, const char *data, size_t len, void *heap)
{
	int r = outq_write(&c->q, data, len);

	free(heap);
	return r;
}

/* Sends TLS output waiting in the engine. */
static int client_flush_tls(struct client *c)
{
	size_t len;
	void *p;
	int r = 0;

	while (r == 0 && c->tls && tlsbio_pending_out(c->tls)) {
		p = tlsbio_steal_out(c->tls, &len);
		if (!p)
			return -ENOMEM;
		r = client_write_raw(c, p, len, p);
	}
	return r;
}

/*
 * Sends protocol text (through TLS once it is up); close_after: then shut
 * our side and close. A failure ends the client after the current callback
 * (client_fail): dropped, or closed by the client when it was closing.
 */
static int client_send_ex(struct client *c, const char *data, size_t len, bool close_after)
{
	int r;

	if (!c->handle_open || uv_is_closing((uv_handle_t *)&c->tcp) || c->failing)
		return -EPIPE;
	if (c->tls && c->tls_done) {
		r = tlsbio_write(c->tls, data, len);
		if (r == 0)
			r = client_flush_tls(c);
	} else {
		r = client_write_raw(c, data, len, NULL);
	}
	if (r == 0 && close_after)
		r = outq_shutdown(&c->q); /* client_on_outq closes once it is done */
	if (r == -ENOBUFS)
		client_fail(c, FATE_DROPPED, "output-overflow");
	else if (r < 0)
		client_fail(c, c->state == CLIENT_CLOSING ? FATE_CLOSED_BY_CLIENT : FATE_DROPPED,
			    "write-error");
	return r;
}

static int client_send(struct client *c, const char *s)
{
	return client_send_ex(c, s, strlen(s), false);
}

static int client_send_buf(struct client *c, struct xbuf *b)
{
	int r = client_send_ex(c, b->data, b->len, false);

	xbuf_free(b);
	return r;
}

static void client_finish(struct client *c, enum client_fate fate, const char *detail);

/* Binds a resource of this generation's own (r<gen>). */
static void client_send_bind(struct client *c)
{
	struct xbuf b;

	xbuf_init(&b);
	xbuf_printf(&b,
		    "<iq type='set' id='bind'><bind xmlns='" NS_BIND "'><resource>"
		    "r%u</resource></bind></iq>",
		    c->gen);
	client_send_buf(c, &b);
}

/*
 * Sends one stanza: with stream management on (<enable/> sent) it is
 * counted and kept until the server acknowledges it, to be sent again
 * after a resumption.
 */
static int client_send_stanza(struct client *c, const char *data, size_t len)
{
	if (c->sm_on) {
		struct client_smo *o = malloc(sizeof(*o) + len);

		if (!o) {
			client_fail(c, FATE_DROPPED, "nomem");
			return -ENOMEM;
		}
		o->next = NULL;
		o->len = (uint32_t)len;
		memcpy(o->data, data, len);
		if (c->smo_tail)
			c->smo_tail->next = o;
		else
			c->smo_head = o;
		c->smo_tail = o;
		c->smo_n++;
		c->sm_h_out++;
	}
	return client_send_ex(c, data, len, false);
}

static int client_send_stanza_buf(struct client *c, struct xbuf *b)
{
	int r = b->data ? client_send_stanza(c, b->data, b->len) : -ENOMEM;

	xbuf_free(b);
	return r;
}

/* The server acknowledged h of our stanzas: drop what it covers. */
static void client_sm_acked(struct client *c, uint32_t h)
{
	uint32_t n = h - (c->sm_h_out - c->smo_n); /* modulo 2^32, as the protocol counts */

	if (n > c->smo_n) {
		log_info("sm_bad_ack", "slot=%u h=%u sent=%u queued=%u", c->slot, h, c->sm_h_out,
			 c->smo_n);
		n = c->smo_n;
	}
	while (n--) {
		struct client_smo *o = c->smo_head;

		c->smo_head = o->next;
		free(o);
		c->smo_n--;
	}
	if (!c->smo_head)
		c->smo_tail = NULL;
}

static void client_send_header(struct client *c)
{
	struct xbuf b;

	xbuf_init(&b);
	xbuf_puts(&b, "<?xml version='1.0'?>" XMPP_STREAM_OPEN " version='1.0' to='");
	xbuf_escape(&b, c->fl->o->domain, strlen(c->fl->o->domain));
	xbuf_puts(&b, "'>");
	client_send_buf(c, &b);
}

/* Writes </stream:stream> (once). */
static void client_send_close(struct client *c, bool close_after)
{
	static const char close_tag[] = "</stream:stream>";

	if (c->sent_close) {
		if (close_after)
			client_close_handle(c);
		return;
	}
	c->sent_close = 1;
	client_send_ex(c, close_tag, sizeof(close_tag) - 1, close_after);
}

/* Ends with fate and closes our side: stream close first when the stream is up. */
static void client_finish(struct client *c, enum client_fate fate, const char *detail)
{
	bool stream_up = c->state >= CLIENT_STREAM && c->state != CLIENT_TLS;

	client_fate(c, fate, detail);
	if (stream_up && c->handle_open)
		client_send_close(c, true);
	else
		client_close_handle(c);
}

/* ------------------------------------------------------------------ start */

static void client_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void client_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void client_connected(uv_connect_t *req, int status)
{
	struct client *c = req->handle->data;

	free(req);
	if (c->state != CLIENT_CONNECTING)
		return; /* stopped meanwhile; already accounted */
	if (status < 0) {
		log_info("connect_failed", "slot=%u error=%s", c->slot, uv_err_name(status));
		client_fate(c, FATE_CONNECT_FAILURE, uv_err_name(status));
		client_close_handle(c);
		return;
	}
	c->xs = xstream_new(&client_limits, &client_cbs, c);
	if (!c->xs) {
		client_fate(c, FATE_DROPPED, "nomem");
		client_close_handle(c);
		return;
	}
	client_set_state(c, CLIENT_STREAM);
	c->last_rx_ms = fleet_now_ms(c->fl);
	if (uv_read_start((uv_stream_t *)&c->tcp, client_alloc, client_on_read) < 0) {
		client_fate(c, FATE_DROPPED, "read-start");
		client_close_handle(c);
		return;
	}
	client_send_header(c);
}

void client_start(struct client *c)
{
	struct fleet *fl = c->fl;
	const struct load_opts *o = fl->o;
	const struct sockaddr *srv;
	uv_connect_t *req;
	uint32_t now = fleet_now_ms(fl);
	unsigned gslot = o->worker_first + c->slot;
	int r;

	c->gen++;
	c->sent_close = c->tls_done = c->restart = c->starttls = c->compacted = 0;
	c->need_session = 0;
	c->server_cond = 0;
	c->ping_sent_ms = 0;
	c->start_us = fleet_now_us(fl);
	c->deadline_ms = now + (uint32_t)(o->login_timeout * 1000);
	fl->st->connections++;
	fl->st->connecting++;
	client_set_state(c, CLIENT_CONNECTING);

	srv = (const struct sockaddr *)&o->servers[gslot % o->nservers];
	if (c->migrating && c->move_to)
		srv = (const struct sockaddr *)c->move_to; /* where see-other-host sent us */
	r = uv_tcp_init_ex(fl->loop, &c->tcp, srv->sa_family);
	if (r < 0)
		goto fail_noclose;
	c->tcp.data = c;
	outq_init(&c->q, (uv_stream_t *)&c->tcp, CLIENT_MAX_OUTPUT, 0, client_on_outq, c);
	c->handle_open = 1;
	fl->open_handles++;
	uv_tcp_nodelay(&c->tcp, 1);
	if (fl->nsrc && srv->sa_family == AF_INET) {
		struct sockaddr_in sin;
		uv_os_fd_t fd;
		int one = 1;
		memset(&sin, 0, sizeof(sin));
		sin.sin_family = AF_INET;
		sin.sin_addr.s_addr = fl->src_ips[gslot % fl->nsrc];
		/* The port is picked at connect time, per destination, so each
		 * source address gets its own ephemeral range per server. */
		if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
			setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
		r = uv_tcp_bind(&c->tcp, (const struct sockaddr *)&sin, 0);
		if (r < 0)
			goto fail;
	}
	req = malloc(sizeof(*req));
	if (!req) {
		r = UV_ENOMEM;
		goto fail;
	}
	r = uv_tcp_connect(req, &c->tcp, srv, client_connected);
	if (r < 0) {
		free(req);
		goto fail;
	}
	return;
fail:
	client_fate(c, FATE_CONNECT_FAILURE, uv_err_name(r));
	client_close_handle(c);
	return;
fail_noclose:
	client_fate(c, FATE_CONNECT_FAILURE, uv_err_name(r));
	client_set_state(c, CLIENT_IDLE);
}

/* ------------------------------------------------------------------ input */

static void client_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct client *c = h->data;

	/* One buffer for the whole loop: each read is consumed before the next. */
	*buf = uv_buf_init(c->fl->rbuf, 65536);
}

/* Feeds plaintext to the parser, handling stream restarts and STARTTLS. */
static void client_input(struct client *c, const char *data, size_t len)
{
	while (len > 0 && c->xs && client_is_live(c)) {
		size_t used = 0;
		int r = xstream_feed(c->xs, data, len, &used);

		if (r == XSTREAM_OK)
			return;
		if (r < 0) {
			log_info("bad_input", "slot=%u error=%s", c->slot, xstream_strerror(r));
			client_finish(c, FATE_DROPPED, "bad-xml");
			return;
		}
		data += used;
		len -= used;
		if (c->starttls) {
			/* RFC 6120 5.4.3.3: whatever followed <proceed/> is discarded. */
			c->starttls = 0;
			xstream_reset(c->xs);
			c->tls = tlsbio_new(c->fl->tls_ctx, TLSBIO_CLIENT, c->fl->o->domain);
			if (!c->tls) {
				client_finish(c, FATE_DROPPED, "nomem");
				return;
			}
			client_set_state(c, CLIENT_TLS);
			if (tlsbio_handshake(c->tls) < 0 || client_flush_tls(c) < 0) {
				client_finish(c, FATE_DROPPED, "tls");
			}
			return;
		}
		if (c->restart) {
			c->restart = 0;
			xstream_reset(c->xs);
			client_send_header(c);
		}
	}
}

/* The server ended the stream with see-other-host, and we follow it:
 * stream management on, and a session to come back to. */
static bool client_moved(const struct client *c)
{
	return c->fl->o->stream_management && c->server_cond &&
	       strcmp(client_conditions[c->server_cond], "see-other-host") == 0 &&
	       c->fl->phase == FLEET_RUNNING &&
	       (c->state == CLIENT_ESTABLISHED || c->state == CLIENT_VERSION);
}

static void client_read_end(struct client *c, ssize_t nread)
{
	const char *reason = nread == UV_EOF	      ? "eof"
			     : nread == UV_ECONNRESET ? "reset"
						      : uv_err_name((int)nread);

	if (c->state == CLIENT_CLOSING) {
		/* We asked for the end; the server closed without its stream close. */
		c->fl->st->closes_unacknowledged++;
		client_fate(c, FATE_CLOSED_BY_CLIENT, NULL);
	} else if (client_moved(c)) {
		client_fate(c, FATE_MIGRATED, NULL);
	} else if (c->server_cond) {
		client_fate(c, FATE_CLOSED_BY_SERVER, client_conditions[c->server_cond]);
	} else {
		client_fate(c, FATE_DROPPED, reason);
	}
	client_close_handle(c);
}

static void client_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct client *c = s->data;

	if (nread == 0)
		return;
	if (nread < 0) {
		if (client_is_live(c))
			client_read_end(c, nread);
		else
			client_close_handle(c);
		return;
	}
	if (!client_is_live(c))
		return;
	c->last_rx_ms = fleet_now_ms(c->fl);
	c->compacted = 0;
	if (!c->tls) {
		client_input(c, buf->base, (size_t)nread);
		return;
	}
	if (tlsbio_feed(c->tls, buf->base, (size_t)nread) < 0) {
		client_finish(c, FATE_DROPPED, "nomem");
		return;
	}
	for (;;) {
		long r = tlsbio_read(c->tls, c->fl->pbuf, 65536);
		if (r > 0) {
			client_input(c, c->fl->pbuf, (size_t)r);
			if (!client_is_live(c) || !c->tls)
				return;
			continue;
		}
		if (r == TLSBIO_ERR_CLOSED) {
			client_read_end(c, UV_EOF);
			return;
		}
		if (r < 0) {
			log_info("tls_error", "slot=%u error=%s", c->slot,
				 tlsbio_last_error(c->tls));
			client_flush_tls(c);
			client_fate(c,
				    c->state == CLIENT_CLOSING ? FATE_CLOSED_BY_CLIENT
							       : FATE_DROPPED,
				    "tls");
			client_close_handle(c);
			return;
		}
		break;
	}
	if (c->state == CLIENT_TLS && tlsbio_handshake_done(c->tls)) {
		c->tls_done = 1;
		/* The handshake's transient memory was freed: towards a trim. */
		c->fl->compactions += 8;
		client_set_state(c, CLIENT_STREAM);
		client_send_header(c);
	}
	if (client_flush_tls(c) < 0)
		client_finish(c, FATE_DROPPED, "write-error");
}

/* ------------------------------------------------------------------ protocol */

static void client_on_open(void *ud, const struct xnode *header, const char *default_ns)
{
	struct client *c = ud;

	if (!default_ns || strcmp(default_ns, NS_CLIENT) != 0)
		log_info("stream_ns", "slot=%u ns=%s", c->slot, default_ns ? default_ns : "-");
}

static void client_auth_plain(struct client *c, const char *user)
{
	const char *pw = c->fl->o->password;
	size_t ul = strlen(user), pl = strlen(pw);
	char raw[600];
	char *enc;
	struct xbuf b;

	if (ul + pl + 2 > sizeof(raw)) {
		client_finish(c, FATE_LOGIN_FAILURE, "credentials-too-long");
		return;
	}
	raw[0] = '\0';
	memcpy(raw + 1, user, ul);
	raw[1 + ul] = '\0';
	memcpy(raw + 2 + ul, pw, pl);
	enc = b64_encode_alloc(raw, ul + pl + 2);
	if (!enc) {
		client_finish(c, FATE_DROPPED, "nomem");
		return;
	}
	xbuf_init(&b);
	xbuf_printf(&b, "<auth xmlns='" NS_SASL "' mechanism='PLAIN'>%s</auth>", enc);
	free(enc);
	client_send_buf(c, &b);
}

static void client_auth_scram(struct client *c, const char *user)
{
	char *first = NULL, *enc;
	size_t len;
	int err = 0;
	struct xbuf b;

	c->scram = scram_client_new(SCRAM_SHA256, user, c->fl->o->password, NULL, &err);
	if (!c->scram || scram_client_first(c->scram, &first, &len) < 0) {
		client_finish(c, FATE_LOGIN_FAILURE, "scram-client");
		return;
	}
	enc = b64_encode_alloc(first, len);
	free(first);
	if (!enc) {
		client_finish(c, FATE_DROPPED, "nomem");
		return;
	}
	xbuf_init(&b);
	xbuf_printf(&b, "<auth xmlns='" NS_SASL "' mechanism='%s'>%s</auth>",
		    scram_mech_name(SCRAM_SHA256), enc);
	free(enc);
	client_send_buf(c, &b);
}

static bool client_has_mech(const struct xnode *mechs, const char *name)
{
	for (size_t i = 0; mechs && i < mechs->nchildren; i++) {
		const struct xnode *m = mechs->children[i];
		char *t;
		bool eq;
		if (!m->name || strcmp(m->name, "mechanism") != 0)
			continue;
		t = xnode_text(m);
		eq = t && strcmp(t, name) == 0;
		free(t);
		if (eq)
			return true;
	}
	return false;
}

static void client_features(struct client *c, const struct xnode *f)
{
	const struct load_opts *o = c->fl->o;
	const struct xnode *mechs;
	char user[256];

	if (c->state == CLIENT_BIND) {
		struct xbuf b;
		if (c->migrating && c->sm_id && xnode_child(f, "sm", NS_SM)) {
			/* Moved here: resume the session instead of binding a new one. */
			xbuf_init(&b);
			xbuf_printf(&b, "<resume xmlns='" NS_SM "' previd='%s' h='%u'/>", c->sm_id,
				    c->sm_h_in);
			client_set_state(c, CLIENT_RESUME);
			client_send_buf(c, &b);
			return;
		}
		if (c->migrating) {
			/* Nothing to resume (no id, no feature): a new session. */
			client_sm_reset(c);
			c->migrating = 1;
		}
		if (!xnode_child(f, "bind", NS_BIND)) {
			client_finish(c, FATE_LOGIN_FAILURE, "no-bind");
			return;
		}
		client_send_bind(c);
		/* A mandatory legacy session (RFC 3921) is requested after bind. */
		c->need_session =
			xnode_child(f, "session", NS_SESSION) &&
			!xnode_child(xnode_child(f, "session", NS_SESSION), "optional", NULL);
		return;
	}
	if (c->state != CLIENT_STREAM) {
		client_finish(c, FATE_DROPPED, "unexpected-features");
		return;
	}
	if (o->tls && !c->tls_done) {
		if (!xnode_child(f, "starttls", NS_TLS)) {
			client_finish(c, FATE_LOGIN_FAILURE, "no-starttls");
			return;
		}
		client_set_state(c, CLIENT_STARTTLS);
		client_send(c, "<starttls xmlns='" NS_TLS "'/>");
		return;
	}
	mechs = xnode_child(f, "mechanisms", NS_SASL);
	opts_user_name(o, o->worker_first + c->slot, user, sizeof(user));
	client_set_state(c, CLIENT_AUTH);
	switch (o->auth) {
	case OPTS_AUTH_ANONYMOUS:
		if (!client_has_mech(mechs, "ANONYMOUS"))
			break;
		client_send(c, "<auth xmlns='" NS_SASL "' mechanism='ANONYMOUS'/>");
		return;
	case OPTS_AUTH_SCRAM:
		if (!client_has_mech(mechs, scram_mech_name(SCRAM_SHA256)))
			break;
		client_auth_scram(c, user);
		return;
	case OPTS_AUTH_PLAIN:
		if (!client_has_mech(mechs, "PLAIN"))
			break;
		client_auth_plain(c, user);
		return;
	case OPTS_AUTH_AUTO:
		/* PLAIN first: a login costs no PBKDF2 on our side. */
		if (client_has_mech(mechs, "PLAIN"))
			client_auth_plain(c, user);
		else if (client_has_mech(mechs, scram_mech_name(SCRAM_SHA256)))
			client_auth_scram(c, user);
		else
			break;
		return;
	}
	client_finish(c, FATE_LOGIN_FAILURE, "no-mechanism");
}

static void client_sasl(struct client *c, struct xnode *st)
{
	char *text = NULL, *out = NULL, *enc = NULL;
	unsigned char *raw = NULL;
	size_t rawlen = 0, outlen = 0;
	struct xbuf b;

	if (c->state != CLIENT_AUTH) {
		client_finish(c, FATE_DROPPED, "unexpected-sasl");
		return;
	}
	if (strcmp(st->name, "failure") == 0) {
		const struct xnode *cond = NULL;
		for (size_t i = 0; i < st->nchildren; i++)
			if (st->children[i]->name && strcmp(st->children[i]->name, "text") != 0)
				cond = st->children[i];
		client_finish(c, FATE_LOGIN_FAILURE, cond ? cond->name : "failure");
		return;
	}
	text = xnode_text(st);
	if (!text)
		goto nomem;
	if (c->scram) {
		raw = b64_decode_alloc(text, strlen(text), &rawlen);
		if (!raw && rawlen != 0)
			goto nomem;
	}
	if (strcmp(st->name, "challenge") == 0) {
		if (!c->scram || !raw ||
		    scram_client_final(c->scram, (char *)raw, rawlen, &out, &outlen) < 0) {
			client_finish(c, FATE_LOGIN_FAILURE, "bad-challenge");
			goto out;
		}
		enc = b64_encode_alloc(out, outlen);
		if (!enc)
			goto nomem;
		xbuf_init(&b);
		xbuf_printf(&b, "<response xmlns='" NS_SASL "'>%s</response>", enc);
		client_send_buf(c, &b);
	} else if (strcmp(st->name, "success") == 0) {
		if (c->scram) {
			if (!raw || scram_client_verify(c->scram, (char *)raw, rawlen) != 0) {
				client_finish(c, FATE_LOGIN_FAILURE, "server-signature");
				goto out;
			}
			scram_client_free(c->scram);
			c->scram = NULL;
		}
		client_set_state(c, CLIENT_BIND);
		c->restart = 1;
		xstream_stop(c->xs);
	} else {
		client_finish(c, FATE_DROPPED, "unexpected-sasl");
	}
	goto out;
nomem:
	client_finish(c, FATE_DROPPED, "nomem");
out:
	free(text);
	free(raw);
	free(out);
	free(enc);
}

/* Presence (not after a resumption: the session kept it) and the XEP-0092
 * query whose answer ends the login. */
static void client_send_version_query_ex(struct client *c, bool presence)
{
	uint32_t until = fleet_now_ms(c->fl) + CLIENT_VERSION_WAIT_MS;
	struct xbuf b;

	client_set_state(c, CLIENT_VERSION);
	if ((int32_t)(until - c->deadline_ms) < 0)
		c->deadline_ms = until;
	if (presence && client_send_stanza(c, "<presence/>", 11) < 0)
		return;
	xbuf_init(&b);
	xbuf_puts(&b, "<iq type='get' id='ver' to='");
	xbuf_escape(&b, c->fl->o->domain, strlen(c->fl->o->domain));
	xbuf_puts(&b, "'><query xmlns='" NS_VERSION "'/></iq>");
	client_send_stanza_buf(c, &b);
}

static void client_send_version_query(struct client *c)
{
	client_send_version_query_ex(c, true);
}

static void client_established(struct client *c, const char *version, const char *instance)
{
	struct fleet *fl = c->fl;
	struct stats *st = fl->st;
	const struct load_opts *o = fl->o;
	uint32_t now = fleet_now_ms(fl);
	double life;

	c->version = (uint8_t)stats_version_index(st, version);
	c->instance = (uint16_t)stats_instance_index(st, c->version, instance);
	st->connecting--;
	st->connected++;
	if (st->connected > st->connected_peak)
		st->connected_peak = st->connected;
	if (st->connected >= fl->nclients && st->ramp_s < 0)
		st->ramp_s = (double)now / 1000.0;
	st->logins++;
	st->versions[c->version].logins++;
	st->versions[c->version].connected++;
	if (st->versions[c->version].connected > st->versions[c->version].peak)
		st->versions[c->version].peak = st->versions[c->version].connected;
	st->instances[c->instance].logins++;
	st->instances[c->instance].connected++;
	hist_record(&st->login_us, fleet_now_us(fl) - c->start_us);
	if (c->migrating) {
		/* Back after a move: how long the user was away. */
		hist_record(&st->reconnect_gap_us, fleet_now_us(fl) - c->moved_us);
		c->migrating = 0;
	} else if (c->gap_other) {
		hist_record(&st->reconnect_gap_other_us, fleet_now_us(fl) - c->moved_us);
	}
	c->gap_other = 0;
	c->est_pos = fl->nest;
	fl->est[fl->nest++] = c->slot;
	client_set_state(c, CLIENT_ESTABLISHED);
	if (fl->link) {
		/* The accountant learns labels before the records that use them. */
		for (; fl->versions_sent < st->nversions; fl->versions_sent++)
			wire_printf(fl->link, "V %u %s\n", fl->versions_sent,
				    st->versions[fl->versions_sent].label);
		/* A JID that cannot be one record field is no target for others. */
		if (c->jid && *c->jid && !c->jid[strcspn(c->jid, " \t\r\n")])
			wire_printf(fl->link, "E %u %u %s\n", o->worker_first + c->slot, c->version,
				    c->jid);
	}

	life = opts_lifetime_draw(&o->lifetime, fleet_rand01(fl));
	c->end_ms = life < 0 ? UINT32_MAX : now + (uint32_t)(life * 1000);
	if (o->message_rate > 0)
		c->next_msg_ms =
			now + (uint32_t)(-log(1.0 - fleet_rand01(fl)) / o->message_rate * 1000);
	if (o->ping_interval > 0)
		c->next_ping_ms = now + (uint32_t)(o->ping_interval * 1000 * fleet_rand01(fl)) + 1;
	log_debug("established", "slot=%u jid=%s version=%s instance=%s", c->slot,
		  c->jid ? c->jid : "-", version, instance);
}

/* The XEP-0092 answer ends the login. iq is NULL for an error or no answer by
 * the deadline: a server without the feature still counts, as "unknown". */
static void client_version_reply(struct client *c, const struct xnode *iq)
{
	const struct xnode *q = iq ? xnode_child(iq, "query", NS_VERSION) : NULL;
	char *ver = NULL, *os = NULL;
	const char *inst = "unknown";

	if (q) {
		const struct xnode *v = xnode_child(q, "version", NULL);
		const struct xnode *osn = xnode_child(q, "os", NULL);
		ver = v ? xnode_text(v) : NULL;
		os = osn ? xnode_text(osn) : NULL;
	}
	if (os) {
		/* chatd answers os="instance=<name>"; other servers name an OS. */
		char *p = strstr(os, "instance=");
		inst = p ? p + 9 : os;
	}
	client_established(c, ver && *ver ? ver : "unknown", *inst ? inst : "unknown");
	free(ver);
	free(os);
}

static void client_iq_result(struct client *c, struct xnode *iq, const char *id, bool error)
{
	if (strcmp(id, "bind") == 0 && c->state == CLIENT_BIND) {
		const struct xnode *bn = error ? NULL : xnode_child(iq, "bind", NS_BIND);
		const struct xnode *jn = bn ? xnode_child(bn, "jid", NULL) : NULL;
		if (!jn) {
			client_finish(c, FATE_LOGIN_FAILURE, "bind");
			return;
		}
		free(c->jid);
		c->jid = xnode_text(jn);
		if (!c->jid) {
			client_finish(c, FATE_DROPPED, "nomem");
			return;
		}
		if (c->fl->o->stream_management && !c->sm_on) {
			/* Counting starts with <enable/>: everything after it is kept
			 * until acknowledged. */
			client_send(c, "<enable xmlns='" NS_SM "' resume='true'/>");
			c->sm_on = 1;
			c->sm_h_out = 0;
		}
		if (c->need_session) {
			static const char sess[] =
				"<iq type='set' id='sess'><session xmlns='" NS_SESSION "'/></iq>";

			client_set_state(c, CLIENT_SESSION);
			client_send_stanza(c, sess, sizeof(sess) - 1);
			return;
		}
		client_send_version_query(c);
	} else if (strcmp(id, "sess") == 0 && c->state == CLIENT_SESSION) {
		if (error) {
			client_finish(c, FATE_LOGIN_FAILURE, "session");
			return;
		}
		client_send_version_query(c);
	} else if (strcmp(id, "ver") == 0 && c->state == CLIENT_VERSION) {
		client_version_reply(c, error ? NULL : iq);
	} else if (strcmp(id, "ping") == 0 && c->ping_sent_ms) {
		c->ping_sent_ms = 0;
		c->fl->st->pongs++;
	}
}

static void client_iq(struct client *c, struct xnode *iq)
{
	const char *type = xnode_attr(iq, "type"), *id = xnode_attr(iq, "id");
	struct xbuf b;

	if (!type || !id)
		return;
	if (strcmp(type, "result") == 0 || strcmp(type, "error") == 0) {
		client_iq_result(c, iq, id, type[0] == 'e');
		return;
	}
	if (strcmp(type, "get") != 0 && strcmp(type, "set") != 0)
		return;
	xbuf_init(&b);
	xbuf_puts(&b, "<iq id='");
	xbuf_escape(&b, id, strlen(id));
	if (xnode_attr(iq, "from")) {
		xbuf_puts(&b, "' to='");
		xbuf_escape(&b, xnode_attr(iq, "from"), strlen(xnode_attr(iq, "from")));
	}
	if (strcmp(type, "get") == 0 && xnode_child(iq, "ping", NS_PING)) {
		c->fl->st->server_pings++;
		xbuf_puts(&b, "' type='result'/>");
	} else {
		xbuf_puts(&b, "' type='error'><error type='cancel'><service-unavailable "
			      "xmlns='" NS_STANZAS "'/></error></iq>");
	}
	client_send_stanza_buf(c, &b);
}

/* "w<worker>-<seq>": seq and *worker, else 0. */
static uint64_t client_msg_seq(const char *id, unsigned long *worker)
{
	char *end;
	unsigned long long seq;

	if (!id || id[0] != 'w' || id[1] < '0' || id[1] > '9')
		return 0;
	*worker = strtoul(id + 1, &end, 10);
	if (*end != '-' || end[1] < '0' || end[1] > '9')
		return 0;
	seq = strtoull(end + 1, &end, 10);
	return *end ? 0 : seq;
}

static void client_message(struct client *c, struct xnode *m)
{
	struct fleet *fl = c->fl;
	const char *type = xnode_attr(m, "type");
	unsigned long w = 0;
	uint64_t seq = client_msg_seq(xnode_attr(m, "id"), &w);
	uint32_t by = fl->o->worker_first + c->slot;

	if (type && strcmp(type, "error") == 0) {
		if (!seq || w != fl->worker)
			return;
		if (fl->link)
			wire_printf(fl->link, "B %" PRIu64 "\n", seq);
		else
			msgtrack_bounced(&fl->mt, seq);
		return;
	}
	if (!xnode_child(m, "body", NULL))
		return; /* chat states, receipts: not ours */
	if (!fl->link) {
		msgtrack_received(&fl->mt, w == fl->worker ? seq : 0, fleet_now_us(fl), by);
		return;
	}
	/* Whoever sent it, the accountant settles it. */
	if (seq && w < opts_total_workers(fl->o))
		wire_printf(fl->link, "R %lu %" PRIu64 " %" PRIu32 " %" PRIu64 "\n", w, seq, by,
			    fleet_wall_us());
	else
		fl->st->messages_foreign++;
}

static void client_stream_error(struct client *c, const struct xnode *e)
{
	unsigned idx = CLIENT_NCONDITIONS - 1;

	for (size_t i = 0; i < e->nchildren; i++) {
		const struct xnode *ch = e->children[i];
		if (!ch->name || strcmp(ch->name, "text") == 0)
			continue;
		for (unsigned k = 1; k < CLIENT_NCONDITIONS; k++)
			if (strcmp(ch->name, client_conditions[k]) == 0)
				idx = k;
		if (strcmp(ch->name, "see-other-host") == 0 && c->fl->o->stream_management) {
			/* Where to go: "HOST:PORT" or "[V6]:PORT" (RFC 6120
			 * 4.9.3.19); a name we cannot use as is means the
			 * service's address we were given. */
			char *to = xnode_text(ch);
			struct addr a;

			free(c->move_to);
			c->move_to = NULL;
			if (to && addr_parse(to, ADDR_PORT_OPTIONAL, 5222, &a) == 0) {
				c->move_to = malloc(sizeof(a.sa));
				if (c->move_to)
					memcpy(c->move_to, &a.sa, sizeof(a.sa));
			}
			free(to);
		}
		break;
	}
	c->server_cond = (uint8_t)idx;
	log_info("stream_error", "slot=%u condition=%s", c->slot, client_conditions[idx]);
}

/* An h attribute: a decimal uint32; 0 and false when malformed. */
static bool client_parse_h(const char *s, uint32_t *out)
{
	char *end;
	unsigned long long v;

	if (!s || *s < '0' || *s > '9')
		return false;
	v = strtoull(s, &end, 10);
	if (*end || v > UINT32_MAX)
		return false;
	*out = (uint32_t)v;
	return true;
}

/* The XEP-0198 elements: enabled, failed, resumed, r, a. */
static void client_sm_element(struct client *c, struct xnode *st)
{
	struct stats *stt = c->fl->st;
	uint32_t h = 0;
	char a[64];

	if (strcmp(st->name, "enabled") == 0) {
		const char *id = xnode_attr(st, "id");

		c->sm_enabled = 1;
		c->sm_h_in = 0;
		free(c->sm_id);
		c->sm_id = id && *id && strlen(id) < 128 ? strdup(id) : NULL;
	} else if (strcmp(st->name, "r") == 0 && c->sm_enabled) {
		snprintf(a, sizeof(a), "<a xmlns='" NS_SM "' h='%u'/>", c->sm_h_in);
		client_send(c, a);
	} else if (strcmp(st->name, "a") == 0 && c->sm_on) {
		if (client_parse_h(xnode_attr(st, "h"), &h))
			client_sm_acked(c, h);
		c->sm_r_out = 0;
	} else if (strcmp(st->name, "resumed") == 0 && c->state == CLIENT_RESUME) {
		/* Back in the session: what the server did not handle goes again
		 * (already counted), then the version of where we are now. */
		if (client_parse_h(xnode_attr(st, "h"), &h))
			client_sm_acked(c, h);
		c->sm_enabled = 1;
		c->sm_r_out = 0;
		stt->resumed++;
		for (struct client_smo *o = c->smo_head; o; o = o->next)
			if (client_send_ex(c, o->data, o->len, false) < 0)
				return;
		if (c->smo_n) {
			c->sm_r_out = 1;
			client_send(c, "<r xmlns='" NS_SM "'/>");
		}
		client_send_version_query_ex(c, false);
	} else if (strcmp(st->name, "failed") == 0 && c->state == CLIENT_RESUME) {
		/* Not resumed: a new session (new resource), like a fresh login. */
		stt->resume_failed++;
		client_sm_reset(c);
		c->migrating = 1;
		client_set_state(c, CLIENT_BIND);
		client_send_bind(c);
	} else if (strcmp(st->name, "failed") == 0) {
		/* <enable/> refused: no stream management on this stream. */
		client_sm_reset(c);
	}
}

static void client_on_stanza(void *ud, struct xnode *st)
{
	struct client *c = ud;
	const char *ns = xnode_ns(st);

	if (!client_is_live(c) || !st->name)
		goto out;
	if (ns && strcmp(ns, NS_STREAM) == 0) {
		if (strcmp(st->name, "features") == 0)
			client_features(c, st);
		else if (strcmp(st->name, "error") == 0)
			client_stream_error(c, st);
		goto out;
	}
	if (ns && strcmp(ns, NS_SASL) == 0) {
		client_sasl(c, st);
		goto out;
	}
	if (ns && strcmp(ns, NS_SM) == 0) {
		client_sm_element(c, st);
		goto out;
	}
	if (c->sm_enabled && ns && strcmp(ns, NS_CLIENT) == 0 &&
	    (strcmp(st->name, "message") == 0 || strcmp(st->name, "presence") == 0 ||
	     strcmp(st->name, "iq") == 0))
		c->sm_h_in++; /* XEP-0198: what we handled, modulo 2^32 */
	if (ns && strcmp(ns, NS_TLS) == 0) {
		if (strcmp(st->name, "proceed") == 0 && c->state == CLIENT_STARTTLS) {
			c->starttls = 1;
			xstream_stop(c->xs);
		} else {
			client_finish(c, FATE_LOGIN_FAILURE, "starttls");
		}
		goto out;
	}
	if (strcmp(st->name, "iq") == 0)
		client_iq(c, st);
	else if (strcmp(st->name, "message") == 0)
		client_message(c, st);
out:
	xnode_free(st);
}

static void client_on_close(void *ud)
{
	struct client *c = ud;

	if (!client_is_live(c))
		return;
	if (c->state == CLIENT_CLOSING)
		client_fate(c, FATE_CLOSED_BY_CLIENT, NULL);
	else if (client_moved(c))
		client_fate(c, FATE_MIGRATED, NULL);
	else
		client_fate(c, FATE_CLOSED_BY_SERVER, client_conditions[c->server_cond]);
	/* Answer the server's close with ours, then close the socket. */
	client_send_close(c, true);
	if (c->xs)
		xstream_stop(c->xs);
}

/* ------------------------------------------------------------------ timing */

static void client_send_message(struct client *c)
{
	struct fleet *fl = c->fl;
	const struct load_opts *o = fl->o;
	char to[300];
	unsigned rver;
	uint32_t to_client;
	uint64_t seq;
	struct timespec ts;
	struct xbuf b;

	if (o->offline_share > 0 && fleet_rand01(fl) < o->offline_share) {
		char user[256];
		/* Numbers past every slot of every worker are never online. */
		to_client = o->clients + 1 + c->slot;
		opts_user_name(o, to_client, user, sizeof(user));
		snprintf(to, sizeof(to), "%s@%s", user, o->domain);
		rver = MSGTRACK_NO_VERSION;
	} else if (fl->link && fl->nsample &&
		   fleet_rand01(fl) * ((double)fl->nest - 1 + fl->remote_est) >= fl->nest - 1) {
		/* A client of another process, from the accountant's sample. */
		const struct fleet_target *t =
			&fl->sample[(unsigned)(fleet_rand01(fl) * fl->nsample) % fl->nsample];
		size_t len = o->target == OPTS_TARGET_FULL ? strlen(t->jid) : strcspn(t->jid, "/");
		snprintf(to, sizeof(to), "%.*s", (int)len, t->jid);
		rver = MSGTRACK_NO_VERSION; /* the accountant knows it */
		to_client = t->client;
	} else {
		struct client *t;
		uint32_t pick;
		if (fl->nest < 2)
			return;
		pick = (uint32_t)(fleet_rand01(fl) * (fl->nest - 1));
		if (pick >= c->est_pos)
			pick++; /* anyone but ourselves */
		t = &fl->clients[fl->est[pick]];
		if (t->jid) {
			/* The bound JID, or its bare part (anonymous users have
			 * server-made names). */
			size_t len = o->target == OPTS_TARGET_FULL ? strlen(t->jid)
								   : strcspn(t->jid, "/");
			snprintf(to, sizeof(to), "%.*s", (int)len, t->jid);
		} else {
			char user[256];
			opts_user_name(o, o->worker_first + t->slot, user, sizeof(user));
			snprintf(to, sizeof(to), "%s@%s", user, o->domain);
		}
		rver = t->version;
		to_client = o->worker_first + t->slot;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	if (fl->link) {
		/* The send record goes out before the message can arrive. */
		seq = ++fl->next_seq;
		wire_printf(fl->link, "S %" PRIu64 " %" PRIu32 " %u %" PRIu64 "\n", seq, to_client,
			    c->version,
			    (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000);
		if (wire_flush(fl->link, true) < 0)
			return;
	} else {
		seq = msgtrack_send(&fl->mt, fleet_now_us(fl), c->version, rver, to_client);
		if (!seq)
			return;
	}
	xbuf_init(&b);
	xbuf_puts(&b, "<message type='chat' to='");
	xbuf_escape(&b, to, strlen(to));
	xbuf_printf(&b, "' id='w%u-%" PRIu64 "'><body>sent=%lld.%06ld</body></message>", fl->worker,
		    seq, (long long)ts.tv_sec, ts.tv_nsec / 1000);
	if (client_send_stanza_buf(c, &b) < 0)
		return;
	if (c->sm_enabled && !c->sm_r_out) {
		/* Ask what the server has: our queue stays short. */
		c->sm_r_out = 1;
		client_send(c, "<r xmlns='" NS_SM "'/>");
	}
}

void client_tick(struct client *c, uint32_t now)
{
	const struct load_opts *o = c->fl->o;

	switch (c->state) {
	case CLIENT_IDLE:
		return;
	case CLIENT_ENDED:
		/* Fate already counted; only the socket may be left to close. */
		if (c->handle_open && (int32_t)(now - c->deadline_ms) >= 0)
			client_close_handle(c);
		return;
	case CLIENT_ESTABLISHED:
		break;
	case CLIENT_CLOSING:
		if ((int32_t)(now - c->deadline_ms) >= 0) {
			c->fl->st->closes_unacknowledged++;
			client_fate(c, FATE_CLOSED_BY_CLIENT, NULL);
			client_close_handle(c);
		}
		return;
	case CLIENT_CONNECTING:
		/* No TCP connection was made (SYNs dropped, e.g. a full accept
		 * queue): a connect failure, whatever the kernel's own timeout. */
		if ((int32_t)(now - c->deadline_ms) >= 0) {
			client_fate(c, FATE_CONNECT_FAILURE, uv_err_name(UV_ETIMEDOUT));
			client_close_handle(c);
		}
		return;
	case CLIENT_VERSION:
		/* Logged in; only the version is missing. */
		if ((int32_t)(now - c->deadline_ms) >= 0)
			client_version_reply(c, NULL);
		if (c->state != CLIENT_ESTABLISHED)
			return;
		break;
	default:
		if ((int32_t)(now - c->deadline_ms) >= 0)
			client_finish(c, FATE_LOGIN_FAILURE, "timeout");
		return;
	}
	if (c->end_ms != UINT32_MAX && (int32_t)(now - c->end_ms) >= 0) {
		client_logout(c);
		return;
	}
	if (c->ping_sent_ms && now - c->ping_sent_ms >= (uint32_t)(o->ping_timeout * 1000)) {
		client_finish(c, FATE_PING_TIMEOUT, NULL);
		return;
	}
	if (o->ping_interval > 0 && !c->ping_sent_ms && (int32_t)(now - c->next_ping_ms) >= 0) {
		struct xbuf b;
		xbuf_init(&b);
		xbuf_puts(&b, "<iq type='get' id='ping' to='");
		xbuf_escape(&b, o->domain, strlen(o->domain));
		xbuf_puts(&b, "'><ping xmlns='" NS_PING "'/></iq>");
		c->ping_sent_ms = now ? now : 1;
		c->next_ping_ms = now + (uint32_t)(o->ping_interval * 1000);
		c->fl->st->pings_sent++;
		if (client_send_stanza_buf(c, &b) < 0)
			return;
	}
	if (o->message_rate > 0 && c->fl->phase == FLEET_RUNNING) {
		/* Poisson sends; at most twice a tick's share (and at least 4) per
		 * tick, so the rate holds up to 1000/s but a stall does not burst. */
		int most = (int)(o->message_rate * FLEET_TICK_MS / 1000.0 * 2) + 4;
		for (int k = 0; k < most && (int32_t)(now - c->next_msg_ms) >= 0; k++) {
			client_send_message(c);
			if (c->state != CLIENT_ESTABLISHED)
				return;
			c->next_msg_ms += (uint32_t)(-log(1.0 - fleet_rand01(c->fl)) /
						     o->message_rate * 1000) +
					  1;
		}
		if ((int32_t)(now - c->next_msg_ms) >= 0)
			c->next_msg_ms = now + 1;
	}
	if (!c->compacted && now - c->last_rx_ms >= CLIENT_COMPACT_MS && c->xs) {
		c->compacted = 1;
		if (xstream_compact(c->xs))
			c->fl->compactions++;
	}
}

void client_logout(struct client *c)
{
	if (c->state != CLIENT_ESTABLISHED)
		return;
	client_unestablish(c);
	client_set_state(c, CLIENT_CLOSING);
	c->deadline_ms = fleet_now_ms(c->fl) + (uint32_t)(c->fl->o->close_timeout * 1000);
	if (c->sm_enabled) {
		/* Everything received is acknowledged before the end, so that the
		 * server answers for nothing we have. */
		char a[64];

		snprintf(a, sizeof(a), "<a xmlns='" NS_SM "' h='%u'/>", c->sm_h_in);
		client_send(c, a);
	}
	client_send_close(c, false);
}

void client_stop(struct client *c)
{
	switch (c->state) {
	case CLIENT_IDLE:
	case CLIENT_ENDED:
	case CLIENT_CLOSING:
		return;
	case CLIENT_ESTABLISHED:
		client_logout(c);
		return;
	case CLIENT_CONNECTING:
		client_fate(c, FATE_CLOSED_BY_CLIENT, "stopped");
		client_close_handle(c);
		return;
	default:
		client_finish(c, FATE_CLOSED_BY_CLIENT, "stopped");
		return;
	}
}
