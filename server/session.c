/*
 * The client stream state machine: stream header, STARTTLS, SASL, restarts
 * and binding, then stanzas of the established session to the router.
 */
#include "session.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authlimit.h"
#include "iq.h"
#include "log.h"
#include "presence.h"
#include "router.h"
#include "sasl.h"
#include "sm.h"
#include "srv.h"
#include "ws.h"
#include "xmppns.h"
#include "xstream.h"

/* SASL failures allowed on one stream (RFC 6120 6.4.5: 2 to 5). */
#define SESSION_MAX_AUTH_FAILURES 3

static void on_open(void *ud, const struct xnode *header, const char *default_ns);
static void on_stanza(void *ud, struct xnode *st);
static void on_close(void *ud);

static const struct xstream_cbs session_cbs = { on_open, on_stanza, on_close };

void session_set_state(struct conn *c, enum conn_state st)
{
	if (c->state == st)
		return;
	conn_log(c, LOG_DEBUG, "state", "from=%s to=%s", conn_state_name((enum conn_state)c->state),
		 conn_state_name(st));
	c->state = (uint8_t)st;
}

static void session_limits(struct conn *c, int authenticated)
{
	const struct config *cfg = c->srv->cfg;
	struct xstream_limits lim = { cfg->max_stanza, cfg->max_depth };

	if (!authenticated && lim.max_stanza > CONFIG_PREAUTH_STANZA)
		lim.max_stanza = CONFIG_PREAUTH_STANZA;
	xstream_set_limits(c->xs, &lim);
}

int session_init(struct conn *c)
{
	const struct config *cfg = c->srv->cfg;
	struct xstream_limits lim = { cfg->max_stanza, cfg->max_depth };

	if (lim.max_stanza > CONFIG_PREAUTH_STANZA)
		lim.max_stanza = CONFIG_PREAUTH_STANZA;
	c->xs = xstream_new(&lim, &session_cbs, c);
	return c->xs ? 0 : -ENOMEM;
}

void session_header(struct conn *c, struct xbuf *b)
{
	char id[17];

	/* Unique and unpredictable (RFC 6120 4.7.3), not secret. */
	if (srv_random_hex(c->srv, id, 8) != 0)
		snprintf(id, sizeof(id), "%016llx", (unsigned long long)c->id);
	if (c->ws) {
		/* RFC 7395 3.3.2: the header is an <open/> element of its own. */
		ws_open_header(b, id, c->srv->domain);
		c->header_sent = 1;
		return;
	}
	xbuf_puts(b, "<?xml version='1.0'?>" XMPP_STREAM_OPEN " id='");
	xbuf_puts(b, id);
	xbuf_puts(b, "' from='");
	xbuf_escape(b, c->srv->domain, strlen(c->srv->domain));
	xbuf_puts(b, "' version='1.0' xml:lang='en'>");
	c->header_sent = 1;
}

/* ---------------------------------------------------------------- input */

void session_input(struct conn *c, const char *data, size_t len)
{
	size_t used;
	int r;

	while (len > 0 && !c->closing && !c->held) {
		used = 0;
		c->in_feed = 1;
		r = xstream_feed(c->xs, data, len, &used);
		c->in_feed = 0;
		if (c->closing)
			return;
		if (r == XSTREAM_OK)
			break;
		if (r == XSTREAM_STOPPED) {
			data += used;
			len -= used;
			if (c->restart_tls) {
				/* RFC 6120 5.4.3.3: plaintext after <starttls/> is discarded. */
				c->restart_tls = 0;
				if (conn_start_tls(c) != 0 || xstream_reset(c->xs) != 0) {
					conn_close(c, CLOSE_RESOURCE_CONSTRAINT, NULL, NULL);
					return;
				}
				if (len)
					conn_log(c, LOG_DEBUG, "starttls_discard", "bytes=%zu",
						 len);
				return;
			}
			if (c->restart_sasl) {
				c->restart_sasl = 0;
				if (xstream_reset(c->xs) != 0) {
					conn_close(c, CLOSE_RESOURCE_CONSTRAINT,
						   "resource-constraint", NULL);
					return;
				}
				session_limits(c, 1);
			}
			continue;
		}
		{
			char q[128];

			conn_log(c, LOG_INFO, "stream_error", "condition=%s why=%s",
				 xstream_condition(r),
				 log_quote(q, sizeof(q), xstream_strerror(r)));
		}
		conn_close(c, close_reason_from_condition(xstream_condition(r)),
			   xstream_condition(r), xstream_strerror(r));
		return;
	}
	/* Idle between stanzas: give the parser's memory back. At once: a
	 * parser kept for a while (even only through a login's round trips)
	 * left a burst of logins' heap fragmented, 13 KiB per idle session
	 * with 1,000 logins at once instead of 1.2. */
	if (!c->closing && xstream_depth(c->xs) == 1)
		xstream_compact(c->xs);
}

static void stream_error(struct conn *c, const char *cond, const char *text)
{
	conn_close(c, close_reason_from_condition(cond), cond, text);
}

/* --------------------------------------------------------------- header */

static void send_features(struct conn *c, struct xbuf *b)
{
	xbuf_puts(b, "<stream:features>");
	if (c->authenticated) {
		xbuf_puts(b, "<bind xmlns='" NS_BIND "'/>"
			     "<session xmlns='" NS_SESSION "'><optional/></session>");
		sm_features(c, b);
	} else {
		/* No STARTTLS over WebSocket: TLS is the WebSocket's (RFC 7395 3.6). */
		if (c->srv->tls_ctx && !c->tls && !c->ws)
			xbuf_puts(b, c->srv->cfg->require_tls ? "<starttls xmlns='" NS_TLS
								"'><required/></starttls>"
							      : "<starttls xmlns='" NS_TLS "'/>");
		sasl_features(c, b);
	}
	xbuf_puts(b, "</stream:features>");
}

/* RFC 6120 4.7.5: "1.x" for any x is answered with 1.0; no version at all
 * means pre-1.0 XMPP, which is refused like a higher major version. */
static int version_ok(const char *v)
{
	if (!v || strncmp(v, "1.", 2) != 0 || !v[2])
		return 0;
	for (v += 2; *v; v++)
		if (*v < '0' || *v > '9')
			return 0;
	return 1;
}

static void on_open(void *ud, const struct xnode *header, const char *default_ns)
{
	struct conn *c = ud;
	const char *version = xnode_attr(header, "version");
	const char *to = xnode_attr(header, "to");
	struct xbuf b;

	if (c->closing)
		return;
	if (!default_ns || strcmp(default_ns, NS_CLIENT) != 0) {
		stream_error(c, "invalid-namespace", "the default namespace must be " NS_CLIENT);
		return;
	}
	if (to) {
		char *dom = NULL;
		int ok = jid_prep_domain(to, &dom) == 0 && strcmp(dom, c->srv->domain) == 0;

		free(dom);
		if (!ok) {
			stream_error(c, "host-unknown", "this server does not serve that domain");
			return;
		}
	}
	if (!version_ok(version)) {
		stream_error(c, "unsupported-version", "only XMPP version 1.x is supported");
		return;
	}
	xbuf_init(&b);
	session_header(c, &b);
	send_features(c, &b);
	if (!b.data) {
		xbuf_free(&b);
		stream_error(c, "resource-constraint", NULL);
		return;
	}
	conn_send(c, b.data, b.len);
	xbuf_free(&b);
	session_set_state(c, c->authenticated ? ST_BIND : ST_NEGOTIATE);
}

static void on_close(void *ud)
{
	struct conn *c = ud;

	c->stream_closed = 1; /* a clean end: the session ends, never detaches */
	conn_close(c, CLOSE_CLIENT, NULL, NULL);
}

/* ------------------------------------------------------------- dispatch */

static int is(const struct xnode *n, const char *name, const char *ns)
{
	const char *nns = xnode_ns(n);

	return strcmp(n->name, name) == 0 && nns && strcmp(nns, ns) == 0;
}

static int is_stanza(const struct xnode *n)
{
	return is(n, "message", NS_CLIENT) || is(n, "presence", NS_CLIENT) ||
	       is(n, "iq", NS_CLIENT);
}

/* Anything before authentication that is not negotiation. */
static void preauth_violation(struct conn *c, const struct xnode *n)
{
	if (is_stanza(n))
		stream_error(c, "not-authorized", "authenticate first");
	else
		stream_error(c, "unsupported-stanza-type", "unexpected element");
}

static void handle_starttls(struct conn *c)
{
	if (!c->srv->tls_ctx || c->tls || c->ws) {
		conn_send_str(c, "<failure xmlns='" NS_TLS "'/></stream:stream>");
		c->header_sent = 0; /* the stream is over: no second header */
		conn_close(c, CLOSE_TLS_ERROR, NULL, NULL);
		return;
	}
	conn_send_str(c, "<proceed xmlns='" NS_TLS "'/>");
	c->restart_tls = 1;
	c->header_sent = 0;
	session_set_state(c, ST_HEADER);
	xstream_stop(c->xs);
}

static void after_sasl(struct conn *c, enum sasl_result r)
{
	switch (r) {
	case SASL_CONTINUE:
		session_set_state(c, ST_SASL);
		break;
	case SASL_SUCCESS:
		c->authenticated = 1;
		c->restart_sasl = 1;
		c->header_sent = 0;
		session_set_state(c, ST_RESTART);
		xstream_stop(c->xs);
		break;
	case SASL_BLOCKED:
		/* Unanswered for a while (a guesser learns nothing, and slowly),
		 * then policy-violation. */
		session_set_state(c, ST_NEGOTIATE);
		conn_hold(c, AUTHLIMIT_HOLD_MS);
		xstream_stop(c->xs); /* nothing pipelined behind it is evaluated */
		break;
	case SASL_FAILURE:
		session_set_state(c, ST_NEGOTIATE);
		if (++c->auth_failures >= SESSION_MAX_AUTH_FAILURES)
			stream_error(c, "policy-violation", "too many authentication failures");
		break;
	}
}

/* ST_NEGOTIATE and ST_SASL: the same SASL elements (a new <auth/> restarts
 * the exchange); STARTTLS only before SASL has begun. */
static void dispatch_preauth(struct conn *c, struct xnode *n)
{
	if (c->state == ST_NEGOTIATE && is(n, "starttls", NS_TLS))
		handle_starttls(c);
	else if (is(n, "auth", NS_SASL))
		after_sasl(c, sasl_auth(c, n));
	else if (is(n, "response", NS_SASL))
		after_sasl(c, sasl_response(c, n));
	else if (is(n, "abort", NS_SASL)) {
		sasl_abort(c);
		after_sasl(c, SASL_FAILURE);
	} else
		preauth_violation(c, n);
	xnode_free(n);
}

static void dispatch_bind(struct conn *c, struct xnode *n)
{
	const char *type = xnode_attr(n, "type");
	const char *ns = xnode_ns(n);

	if (ns && strcmp(ns, NS_SM) == 0) {
		sm_element(c, n); /* <resume/> (and a premature <enable/>) */
		return;
	}

	if (is(n, "iq", NS_CLIENT) && type && strcmp(type, "set") == 0 &&
	    xnode_child(n, "bind", NS_BIND)) {
		iq_bind(c, n);
		return;
	}
	if (is_stanza(n))
		stream_error(c, "not-authorized", "bind a resource first");
	else
		stream_error(c, "unsupported-stanza-type", "unexpected element");
	xnode_free(n);
}

/* An established session's stanza: check and stamp 'from', then route. */
static void session_stanza(struct conn *c, struct xnode *n)
{
	const char *from;

	if (!is_stanza(n)) {
		const char *ns = xnode_ns(n);

		if (ns && strcmp(ns, NS_SM) == 0) {
			sm_element(c, n); /* XEP-0198: enable, r, a */
			return;
		}
		stream_error(c, "unsupported-stanza-type", "not a stanza");
		xnode_free(n);
		return;
	}
	c->srv->metrics.stanzas_total++;
	sm_inbound(c);
	from = xnode_attr(n, "from");
	if (from) {
		/* RFC 6120 8.1.2.1: a client may only name itself. */
		struct jid j = { 0 };
		int ok = jid_parse(from, &j) == 0 && jid_bare_equal(&j, &c->jid) &&
			 (!j.resource || jid_equal(&j, &c->jid));

		jid_clear(&j);
		if (!ok) {
			stream_error(c, "invalid-from", "from does not match the session");
			xnode_free(n);
			return;
		}
	}
	char full[JID_BUF_SIZE];
	if (jid_format_full(&c->jid, full, sizeof(full)) < 0 ||
	    xnode_set_attr(n, "from", full) != 0) {
		stream_error(c, "resource-constraint", NULL);
		xnode_free(n);
		return;
	}
	router_route(c->srv, c, n);
}

static void on_stanza(void *ud, struct xnode *n)
{
	struct conn *c = ud;

	if (c->closing) {
		xnode_free(n);
		return;
	}
	/* RFC 6120 4.9.1.1: the client's stream error ends its stream. It gets
	 * our closing tag, not an error of ours about its error; like its
	 * </stream:stream>, a clean end (no resumption). */
	if (is(n, "error", NS_STREAM)) {
		xnode_free(n);
		on_close(c);
		return;
	}
	switch ((enum conn_state)c->state) {
	case ST_NEGOTIATE:
	case ST_SASL:
		dispatch_preauth(c, n);
		break;
	case ST_BIND:
		dispatch_bind(c, n);
		break;
	case ST_ESTABLISHED:
		session_stanza(c, n);
		break;
	default:
		/* The parser reports elements only after a header. */
		stream_error(c, "internal-server-error", NULL);
		xnode_free(n);
		break;
	}
}

/* ------------------------------------------------------------- teardown */

void session_end(struct conn *c)
{
	if (!c->route)
		return;
	presence_gone(c);
	router_remove(c->srv->router, c);
}

void session_free(struct conn *c)
{
	sm_free(c);
	sasl_free(c->sasl);
	c->sasl = NULL;
	presence_free(c);
	free(c->user);
	c->user = NULL;
	jid_clear(&c->jid);
}
