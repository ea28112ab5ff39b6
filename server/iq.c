/*
 * The IQs chatd answers itself: ping, disco, version, roster, session and
 * resource binding.
 */
#include "iq.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "router.h"
#include "session.h"
#include "srv.h"
#include "xmppns.h"

struct xnode *iq_result(const struct xnode *iq)
{
	struct xnode *r = xnode_new("iq", NS_CLIENT);
	const char *id = xnode_attr(iq, "id"), *from = xnode_attr(iq, "from");
	const char *to = xnode_attr(iq, "to");

	if (!r || xnode_set_attr(r, "type", "result") != 0 ||
	    (id && xnode_set_attr(r, "id", id) != 0) ||
	    (from && xnode_set_attr(r, "to", from) != 0) ||
	    (to && xnode_set_attr(r, "from", to) != 0)) {
		xnode_free(r);
		return NULL;
	}
	return r;
}

/* Sends r (may be NULL after out of memory) to c and frees both. */
static void iq_reply(struct conn *c, struct xnode *iq, struct xnode *r)
{
	if (r)
		router_deliver(c, r);
	else
		conn_fail(c, CLOSE_RESOURCE_CONSTRAINT);
	xnode_free(r);
	xnode_free(iq);
}

static struct xnode *first_child(const struct xnode *n)
{
	for (size_t i = 0; i < n->nchildren; i++)
		if (n->children[i]->name)
			return n->children[i];
	return NULL;
}

static int add_feature(struct xnode *q, const char *var)
{
	struct xnode *f = xnode_add_child(q, "feature", NULL);

	return f && xnode_set_attr(f, "var", var) == 0 ? 0 : -ENOMEM;
}

static struct xnode *disco_info(struct conn *c, struct xnode *iq, enum router_to target)
{
	static const char *const server_features[] = {
		NS_DISCO_INFO, NS_DISCO_ITEMS, NS_PING, NS_VERSION, NS_ROSTER, NS_SESSION,
	};
	struct xnode *r = iq_result(iq), *q, *id;
	int bad = !r;

	q = r ? xnode_add_child(r, "query", NS_DISCO_INFO) : NULL;
	id = q ? xnode_add_child(q, "identity", NULL) : NULL;
	bad |= !id;
	if (!bad && target == ROUTER_TO_SERVER) {
		bad |= xnode_set_attr(id, "category", "server") ||
		       xnode_set_attr(id, "type", "im") || xnode_set_attr(id, "name", "chatd");
		for (size_t i = 0; i < sizeof(server_features) / sizeof(*server_features); i++)
			bad |= add_feature(q, server_features[i]);
	} else if (!bad) {
		bad |= xnode_set_attr(id, "category", "account") ||
		       xnode_set_attr(id, "type", "registered");
		bad |= add_feature(q, NS_DISCO_INFO) || add_feature(q, NS_PING);
	}
	if (bad) {
		xnode_free(r);
		return NULL;
	}
	return r;
}

static struct xnode *version_reply(struct conn *c, struct xnode *iq)
{
	const struct config *cfg = c->srv->cfg;
	struct xnode *r = iq_result(iq), *q, *e;
	char os[160];

	snprintf(os, sizeof(os), "instance=%s", cfg->instance);
	q = r ? xnode_add_child(r, "query", NS_VERSION) : NULL;
	if (!q || !(e = xnode_add_child(q, "name", NULL)) || !xnode_add_text(e, "chatd", 5) ||
	    !(e = xnode_add_child(q, "version", NULL)) ||
	    !xnode_add_text(e, cfg->version_label, strlen(cfg->version_label)) ||
	    !(e = xnode_add_child(q, "os", NULL)) || !xnode_add_text(e, os, strlen(os))) {
		xnode_free(r);
		return NULL;
	}
	return r;
}

/* A reply with one empty child <name xmlns=ns/> (roster, disco#items). */
static struct xnode *empty_query(struct xnode *iq, const char *ns)
{
	struct xnode *r = iq_result(iq);

	if (r && !xnode_add_child(r, "query", ns)) {
		xnode_free(r);
		return NULL;
	}
	return r;
}

void iq_handle(struct conn *c, struct xnode *iq, enum router_to target)
{
	const char *type = xnode_attr(iq, "type");
	int get = type && strcmp(type, "get") == 0;
	struct xnode *q = first_child(iq);
	const char *ns = q ? xnode_ns(q) : NULL;

	if (!q || !ns) {
		router_error(c, iq, "modify", "bad-request");
		return;
	}
	if (strcmp(ns, NS_PING) == 0 && strcmp(q->name, "ping") == 0) {
		if (!get)
			router_error(c, iq, "modify", "bad-request");
		else
			iq_reply(c, iq, iq_result(iq));
	} else if (strcmp(ns, NS_DISCO_INFO) == 0 && strcmp(q->name, "query") == 0) {
		if (!get)
			router_error(c, iq, "modify", "bad-request");
		else if (xnode_attr(q, "node"))
			router_error(c, iq, "cancel", "item-not-found");
		else
			iq_reply(c, iq, disco_info(c, iq, target));
	} else if (strcmp(ns, NS_DISCO_ITEMS) == 0 && strcmp(q->name, "query") == 0) {
		if (!get)
			router_error(c, iq, "modify", "bad-request");
		else
			iq_reply(c, iq, empty_query(iq, NS_DISCO_ITEMS));
	} else if (strcmp(ns, NS_VERSION) == 0 && strcmp(q->name, "query") == 0 &&
		   target == ROUTER_TO_SERVER) {
		if (!get)
			router_error(c, iq, "modify", "bad-request");
		else
			iq_reply(c, iq, version_reply(c, iq));
	} else if (strcmp(ns, NS_ROSTER) == 0 && strcmp(q->name, "query") == 0 &&
		   target != ROUTER_TO_SERVER) {
		/* No rosters are stored: the roster is always empty, and a roster
		 * set is refused rather than pretended. */
		if (target == ROUTER_TO_BARE)
			router_error(c, iq, "auth", "forbidden");
		else if (!get)
			router_error(c, iq, "cancel", "feature-not-implemented");
		else
			iq_reply(c, iq, empty_query(iq, NS_ROSTER));
	} else if (strcmp(ns, NS_SESSION) == 0 && strcmp(q->name, "session") == 0 &&
		   target != ROUTER_TO_BARE) {
		/* RFC 3921 3: a no-op kept for old clients. */
		if (get)
			router_error(c, iq, "modify", "bad-request");
		else
			iq_reply(c, iq, iq_result(iq));
	} else if (strcmp(ns, NS_BIND) == 0) {
		/* One resource per stream (RFC 6120 7.7.2). */
		router_error(c, iq, "cancel", "not-allowed");
	} else {
		router_error(c, iq, "cancel", "service-unavailable");
	}
}

void iq_result_to_server(struct conn *c, struct xnode *iq)
{
	/* The answer to our ping (any input already cleared the deadline), or
	 * a stray result: nothing to do either way (RFC 6120 8.2.3). */
	xnode_free(iq);
}

/* Sends an iq error for a bind request (the session is not established,
 * so router_error's stamping does not apply). */
static void bind_error(struct conn *c, struct xnode *iq, const char *type, const char *cond)
{
	struct xbuf b;
	const char *id = xnode_attr(iq, "id");

	xbuf_init(&b);
	xbuf_puts(&b, "<iq type='error' id='");
	xbuf_escape(&b, id ? id : "", id ? strlen(id) : 0);
	xbuf_printf(&b, "'><error type='%s'><%s xmlns='" NS_STANZAS "'/></error></iq>", type, cond);
	if (b.data)
		conn_send(c, b.data, b.len);
	xbuf_free(&b);
	xnode_free(iq);
}

void iq_bind(struct conn *c, struct xnode *iq)
{
	struct xnode *bind = xnode_child(iq, "bind", NS_BIND);
	struct xnode *res = bind ? xnode_child(bind, "resource", NS_BIND) : NULL;
	char *want = res ? xnode_text(res) : NULL;
	char gen[32], full[JID_BUF_SIZE];
	struct conn *old = NULL;
	struct xnode *r, *b, *jn;
	int e;

	if (!xnode_attr(iq, "id")) {
		free(want);
		bind_error(c, iq, "modify", "bad-request");
		return;
	}
	if (!want || !want[0]) {
		free(want);
		want = NULL;
		memcpy(gen, "chatd-", 6);
		if (srv_random_hex(c->srv, gen + 6, 6) != 0) {
			bind_error(c, iq, "wait", "internal-server-error");
			return;
		}
	}
	e = jid_set(&c->jid, c->user, c->srv->domain, want ? want : gen);
	free(want);
	if (e != 0) {
		bind_error(c, iq, e == JID_ERR_NOMEM ? "wait" : "modify",
			   e == JID_ERR_NOMEM ? "resource-constraint" : "bad-request");
		return;
	}
	/* RFC 6120 7.7.2.2: the new session wins; the old one hears why. It is
	 * closed (unavailable presence sent, route withdrawn, also from the
	 * cluster) before the new one is added, so nothing withdraws the new
	 * route by its shared full JID. */
	old = router_find_full(c->srv->router, &c->jid);
	if (old) {
		conn_log(old, LOG_INFO, "replaced", "by_conn=%llu", (unsigned long long)c->id);
		conn_close(old, CLOSE_CONFLICT, "conflict", "replaced by a new session");
	}
	if (router_add(c->srv->router, c, &old) != 0) {
		jid_clear(&c->jid);
		bind_error(c, iq, "wait", "resource-constraint");
		return;
	}
	jid_format_full(&c->jid, full, sizeof(full));
	r = xnode_new("iq", NS_CLIENT);
	if (!r || xnode_set_attr(r, "type", "result") ||
	    xnode_set_attr(r, "id", xnode_attr(iq, "id")) ||
	    !(b = xnode_add_child(r, "bind", NS_BIND)) || !(jn = xnode_add_child(b, "jid", NULL)) ||
	    !xnode_add_text(jn, full, strlen(full))) {
		xnode_free(r);
		xnode_free(iq);
		conn_close(c, CLOSE_RESOURCE_CONSTRAINT, "resource-constraint", NULL);
		return;
	}
	conn_send_node(c, r);
	xnode_free(r);
	xnode_free(iq);
	session_set_state(c, ST_ESTABLISHED);
	c->t_deadline = 0;
	srv_conn_schedule(c->srv, c); /* no auth deadline any more */
	/* The JID holds the user name now; idle sessions keep nothing twice. */
	free(c->user);
	c->user = NULL;
	conn_log(c, LOG_DEBUG, "bound", "jid=%s", full);
}
