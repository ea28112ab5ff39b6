/*
 * Cluster glue: chatd's sessions and stanzas on one side, struct cluster's
 * links on the other (cluster_glue.h). Stanzas cross links serialized; the
 * receiving side parses them with the same hardened stream layer the
 * client connections use, inside one long-lived stream opened once.
 */
#include "cluster_glue.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "cluster/cluster_proto.h"
#include "conn.h"
#include "log.h"
#include "router.h"
#include "session.h"
#include "sm.h"
#include "srv.h"
#include "stanzaparse.h"
#include "xmppns.h"
#include "xstream.h"

struct cluster_glue {
	struct srv *srv;
	struct cluster *cl;
	struct stanza_parser *sp; /* parses what peers forwarded */
};

/* ---- parsing forwarded stanzas ---- */

/* One frame's XML into one stanza, or NULL (logged). Peers are
 * authenticated, but a frame that is not exactly one stanza is refused
 * rather than trusted. */
static struct xnode *glue_parse(struct cluster_glue *g, const char *xml, size_t len)
{
	unsigned n = 0;
	int rc = XSTREAM_OK;
	struct xnode *st = stanza_parse(g->sp, xml, len, &rc, &n);

	if (!st)
		log_warn("cluster_bad_stanza", "error=\"%s\" stanzas=%u", xstream_strerror(rc), n);
	return st;
}

static char *glue_serialize(const struct xnode *st, size_t *len)
{
	struct xbuf b;

	xbuf_init(&b);
	if (xnode_serialize(st, NS_CLIENT, &b) != 0 || xbuf_append(&b, "", 1) != 0) {
		xbuf_free(&b);
		return NULL;
	}
	*len = b.len - 1;
	return b.data;
}

/* ---- hooks: what peers send us ---- */

static int attr_is(const struct xnode *n, const char *name, const char *value)
{
	const char *v = xnode_attr(n, name);

	return v && strcmp(v, value) == 0;
}

static void glue_send_to(struct conn *o, struct xnode *st)
{
	char full[JID_BUF_SIZE];

	if (o->closing || jid_format_full(&o->jid, full, sizeof(full)) < 0 ||
	    xnode_set_attr(st, "to", full) != 0)
		return;
	router_deliver(o, st);
}

/*
 * The session a stanza was forwarded to is gone (it ended while the
 * stanza crossed the link): answer as a single instance answers a stanza
 * to an absent full JID, through the link the stanza came from.
 */
static void glue_bounce(struct cluster_glue *g, struct xnode *st, const char *sender)
{
	const char *type = xnode_attr(st, "type");
	int is_msg = strcmp(st->name, "message") == 0;
	int is_req = strcmp(st->name, "iq") == 0 && type &&
		     (strcmp(type, "get") == 0 || strcmp(type, "set") == 0);
	char *xml;
	size_t len;

	if (!(is_req ||
	      (is_msg && !attr_is(st, "type", "error") && !attr_is(st, "type", "headline"))))
		return;
	if (!xnode_attr(st, "from") || !xnode_attr(st, "to") ||
	    router_make_error(st, "cancel", "service-unavailable") != 0)
		return;
	/* 'from' of the error is the JID the stanza was addressed to */
	xml = glue_serialize(st, &len);
	if (xml && cluster_forward(g->cl, sender, xnode_attr(st, "from"), xml, len) == 0)
		g->srv->metrics.stanza_errors_total++;
	free(xml);
}

static int glue_deliver(void *ud, const char *to, const char *from, const char *xml, size_t len)
{
	struct cluster_glue *g = ud;
	struct xnode *st = glue_parse(g, xml, len);
	struct jid j = { 0 };
	struct conn *c = NULL;
	int rc = -ENOENT;

	if (!st)
		return -EINVAL;
	if (jid_parse(to, &j) == 0)
		c = router_find_full(g->srv->router, &j);
	if (c && !c->closing) {
		router_deliver(c, st);
		rc = 0;
	} else {
		glue_bounce(g, st, from);
	}
	jid_clear(&j);
	xnode_free(st);
	return rc;
}

/* Our available resources' presence, sent to a remote resource of the
 * same user that just became available (what presence.c does locally). */
static void glue_presence_to_new(struct cluster_glue *g, struct route *e, const char *newcomer)
{
	char full[JID_BUF_SIZE];
	struct xnode *p;
	char *xml;
	size_t len;

	for (struct conn *o = e->first; o; o = o->rnext) {
		if (!o->available || o->closing || jid_format_full(&o->jid, full, sizeof(full)) < 0)
			continue;
		p = o->presence ? xnode_copy(o->presence) : xnode_new("presence", NS_CLIENT);
		if (!p)
			continue;
		xml = NULL;
		if (xnode_set_attr(p, "from", full) == 0 && xnode_set_attr(p, "to", newcomer) == 0)
			xml = glue_serialize(p, &len);
		if (xml)
			cluster_forward(g->cl, newcomer, full, xml, len);
		free(xml);
		xnode_free(p);
	}
}

static void glue_presence(void *ud, const char *from, const char *xml, size_t len)
{
	struct cluster_glue *g = ud;
	struct xnode *st = glue_parse(g, xml, len);
	char bare[JID_BUF_SIZE];
	struct jid j = { 0 };
	struct route *e;
	int initial;

	if (!st)
		return;
	if (jid_parse(from, &j) != 0 || jid_format_bare(&j, bare, sizeof(bare)) < 0)
		goto out;
	e = router_lookup(g->srv->router, bare);
	if (!e)
		goto out;
	/* The route still says unavailable: this is its initial presence
	 * (the route update follows the broadcast on the same link). */
	initial = !xnode_attr(st, "type") && cluster_route_available(g->cl, from) == 0;
	for (struct conn *o = e->first; o; o = o->rnext)
		if (o->available)
			glue_send_to(o, st);
	if (initial)
		glue_presence_to_new(g, e, from);
out:
	jid_clear(&j);
	xnode_free(st);
}

/* A presence from the remote session `full` (type NULL: available, with
 * priority when not 0) to the local available resources of its user. */
static void glue_presence_to_user(struct cluster_glue *g, const struct jid *j, const char *full,
				  const char *type, int priority)
{
	char bare[JID_BUF_SIZE], prio[8];
	struct xnode *p, *pr;
	struct route *e;

	if (jid_format_bare(j, bare, sizeof(bare)) < 0)
		return;
	e = router_lookup(g->srv->router, bare);
	if (!e)
		return;
	p = xnode_new("presence", NS_CLIENT);
	if (!p || (type && xnode_set_attr(p, "type", type) != 0) ||
	    xnode_set_attr(p, "from", full) != 0)
		goto out;
	if (priority) {
		snprintf(prio, sizeof(prio), "%d", priority);
		pr = xnode_add_child(p, "priority", NS_CLIENT);
		if (!pr || !xnode_add_text(pr, prio, strlen(prio)))
			goto out;
	}
	for (struct conn *o = e->first; o; o = o->rnext)
		if (o->available)
			glue_send_to(o, p);
out:
	xnode_free(p);
}

static void glue_route_gone(void *ud, const char *full)
{
	struct cluster_glue *g = ud;
	struct jid j = { 0 };

	/* Bound here (it moved here from that instance): nothing changed. */
	if (jid_parse(full, &j) == 0 && !router_find_full(g->srv->router, &j))
		glue_presence_to_user(g, &j, full, "unavailable", 0);
	jid_clear(&j);
}

/* A session announced by a peer for the first time on its link. */
static void glue_route_added(void *ud, const char *full, int priority, int available, int moved)
{
	struct cluster_glue *g = ud;
	struct jid j = { 0 };
	struct conn *c;

	if (jid_parse(full, &j) != 0)
		goto out;
	/* RFC 6120 7.7.2.2 across instances: the session bound elsewhere is
	 * the newer one, so the local session with that full JID goes. */
	c = router_find_full(g->srv->router, &j);
	if (c && !c->closing) {
		conn_log(c, LOG_INFO, "replaced", "by=%s", "remote");
		conn_close(c, CLOSE_CONFLICT, "conflict", "replaced by a new session");
	}
	/* Available at once: a route table sent at link start. A bind is
	 * announced unavailable, and its initial presence arrives as such. A
	 * session that moved from another instance was available already. */
	if (available && !moved)
		glue_presence_to_user(g, &j, full, NULL, priority);
out:
	jid_clear(&j);
}

/* ---- session moves: the answers come to sm.c ---- */

static void glue_session_req(void *ud, const char *peer, uint64_t req, const char *previd,
			     const char *bare, uint32_t h)
{
	struct cluster_glue *g = ud;

	sm_peer_request(g->srv, peer, req, previd, bare, h);
}

static void glue_session_nak(void *ud, const char *peer, uint64_t req, unsigned reason)
{
	struct cluster_glue *g = ud;

	sm_peer_nak(g->srv, req, reason);
}

static void glue_session_state(void *ud, const char *peer, uint64_t req, const char *full,
			       const uint8_t *state, size_t len)
{
	struct cluster_glue *g = ud;

	sm_peer_state(g->srv, peer, req, full, state, len);
}

int cluster_glue_session_request(struct srv *srv, uint64_t req, const char *previd,
				 const char *bare, uint32_t h)
{
	return srv->cluster ? cluster_session_request(srv->cluster->cl, req, previd, bare, h) : 0;
}

int cluster_glue_session_nak(struct srv *srv, const char *peer, uint64_t req, unsigned reason)
{
	return srv->cluster ? cluster_session_nak(srv->cluster->cl, peer, req, reason) : -ENOTCONN;
}

int cluster_glue_session_give(struct srv *srv, const char *peer, uint64_t req, const char *full,
			      const uint8_t *state, size_t len)
{
	return srv->cluster ? cluster_session_give(srv->cluster->cl, peer, req, full, state, len)
			    : -ENOTCONN;
}

void cluster_glue_session_taken(struct srv *srv, const char *full, const char *peer)
{
	if (srv->cluster)
		cluster_session_taken(srv->cluster->cl, full, peer);
}

/* ---- lifetime ---- */

int cluster_glue_init(struct srv *srv)
{
	const struct config *cfg = srv->cfg;
	struct xstream_limits lim = { CLUSTER_FRAME_MAX, cfg->max_depth + 2 };
	struct cluster_hooks hooks = { glue_deliver,	  glue_presence,    glue_route_gone,
				       glue_route_added,  glue_session_req, glue_session_nak,
				       glue_session_state };
	struct cluster_config cc = { 0 };
	struct cluster_glue *g;
	uint8_t *secret = NULL;
	size_t secretlen = 0;
	int rc;

	srv->cluster = NULL;
	if (!cfg->cluster_listen[0])
		return 0;
	if (!cfg->cluster_secret_file[0]) {
		log_error("cluster_config",
			  "error=\"cluster mode (--cluster-listen) needs"
			  " --cluster-secret-file or CHATD_CLUSTER_SECRET_FILE\"");
		return -EINVAL;
	}
	rc = cluster_secret_load(cfg->cluster_secret_file, &secret, &secretlen);
	if (rc < 0) {
		log_error("cluster_config", "path=%s error=\"%s\"", cfg->cluster_secret_file,
			  rc == -EINVAL ? "the secret must be 16..4096 bytes" : strerror(-rc));
		return rc;
	}
	rc = -ENOMEM;
	g = calloc(1, sizeof(*g));
	if (!g)
		goto fail;
	g->srv = srv;
	g->sp = stanza_parser_new(&lim);
	if (!g->sp)
		goto fail;
	cc.listen = cfg->cluster_listen;
	cc.instance = cfg->instance;
	cc.version = cfg->version_label;
	cc.peers = cfg->peers[0] ? cfg->peers : NULL;
	cc.peers_file = cfg->peers_file[0] ? cfg->peers_file : NULL;
	cc.peers_dns = cfg->peers_dns[0] ? cfg->peers_dns : NULL;
	cc.secret = secret;
	cc.secretlen = secretlen;
	cc.keepalive = cfg->cluster_keepalive;
	rc = cluster_new(srv->loop, &cc, &hooks, g, &g->cl);
	if (rc < 0)
		goto fail;
	OPENSSL_cleanse(secret, secretlen);
	free(secret);
	/* Kept even when the start fails: the listener it opened closes
	 * during the loop run that follows a failed srv_init(), and
	 * cluster_glue_free() frees it after that. */
	srv->cluster = g;
	return cluster_start(g->cl);
fail:
	if (g)
		stanza_parser_free(g->sp);
	free(g);
	OPENSSL_cleanse(secret, secretlen);
	free(secret);
	return rc;
}

void cluster_glue_leave(struct srv *srv)
{
	if (srv->cluster)
		cluster_leave(srv->cluster->cl);
}

void cluster_glue_free(struct srv *srv)
{
	struct cluster_glue *g = srv->cluster;

	if (!g)
		return;
	cluster_free(g->cl);
	stanza_parser_free(g->sp);
	free(g);
	srv->cluster = NULL;
}

/* ---- calls from chatd ---- */

void cluster_glue_bound(struct conn *c)
{
	char full[JID_BUF_SIZE];

	if (c->srv->cluster && jid_format_full(&c->jid, full, sizeof(full)) >= 0)
		cluster_local_set(c->srv->cluster->cl, full, c->priority, c->available);
}

void cluster_glue_unbound(struct conn *c)
{
	char full[JID_BUF_SIZE];

	if (c->srv->cluster && jid_format_full(&c->jid, full, sizeof(full)) >= 0)
		cluster_local_del(c->srv->cluster->cl, full);
}

void cluster_glue_presence(struct conn *c, const struct xnode *p, int available)
{
	struct cluster_glue *g = c->srv->cluster;
	char full[JID_BUF_SIZE];
	char *xml;
	size_t len;

	if (!g || jid_format_full(&c->jid, full, sizeof(full)) < 0)
		return;
	/* The broadcast first, then the availability: a peer that sees the
	 * presence while the route still says unavailable knows it is the
	 * initial one. */
	xml = glue_serialize(p, &len);
	if (xml)
		cluster_broadcast_presence(g->cl, full, xml, len);
	free(xml);
	cluster_local_set(g->cl, full, c->priority, available);
}

int cluster_glue_forward_full(struct srv *srv, const struct jid *j, const struct xnode *st)
{
	struct cluster_glue *g = srv->cluster;
	char full[JID_BUF_SIZE];
	const char *from = xnode_attr(st, "from");
	char *xml;
	size_t len;
	int rc;

	if (!g || !from || jid_format_full(j, full, sizeof(full)) < 0 ||
	    !cluster_has_route(g->cl, full))
		return 0;
	xml = glue_serialize(st, &len);
	if (!xml)
		return 0;
	rc = cluster_forward(g->cl, full, from, xml, len);
	free(xml);
	return rc == 0;
}

int cluster_glue_bare_best(struct srv *srv, const char *bare, int local_best)
{
	struct cluster_glue *g = srv->cluster;
	int best;

	if (g && cluster_bare_best(g->cl, bare, &best) > 0 && best > local_best)
		return best;
	return local_best;
}

int cluster_glue_has_bare(struct srv *srv, const char *bare)
{
	return srv->cluster && cluster_has_bare(srv->cluster->cl, bare);
}

int cluster_glue_forward_bare(struct srv *srv, const char *bare, const struct xnode *st,
			      enum router_bare mode, int prio)
{
	static const enum cluster_bare_mode modes[] = {
		[ROUTER_BARE_PRIO] = CLUSTER_BARE_PRIO,
		[ROUTER_BARE_NONNEG] = CLUSTER_BARE_NONNEG,
		[ROUTER_BARE_ALL] = CLUSTER_BARE_ALL,
	};
	struct cluster_glue *g = srv->cluster;
	const char *sender = xnode_attr(st, "from");
	char *xml;
	size_t len;
	int n;

	if (!g || !sender || !cluster_has_bare(g->cl, bare))
		return 0;
	xml = glue_serialize(st, &len);
	if (!xml)
		return 0;
	n = cluster_forward_bare(g->cl, bare, modes[mode], prio, sender, xml, len);
	free(xml);
	return n;
}

int cluster_glue_ready(struct srv *srv)
{
	return !srv->cluster || cluster_ready(srv->cluster->cl);
}

size_t cluster_glue_metrics(struct srv *srv, char *buf, size_t cap)
{
	int n;

	if (!srv->cluster || cap == 0)
		return 0;
	n = cluster_metrics_print(srv->cluster->cl, buf, cap);
	if (n < 0 || (size_t)n >= cap) {
		buf[0] = '\0';
		return 0;
	}
	return (size_t)n;
}

const char *cluster_glue_listen_addr(struct srv *srv)
{
	return srv->cluster && srv->cluster->cl ? cluster_listen_addr(srv->cluster->cl) : NULL;
}
