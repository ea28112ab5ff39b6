/*
 * Cluster routing: the instance (create, start, leave, free), its one timer
 * (keepalive, handshake deadlines, dialing, discovery), readiness and metrics.
 * The other files of this folder: cluster_conf.c (parsing settings),
 * cluster_fwd.c (routes and forwarding), cluster_link.c (one link to a peer),
 * cluster_auth.c (the handshake), cluster_disc.c (targets, dialing,
 * discovery), cluster_proto.c (frames), cluster_routes.c (route tables).
 */
#include "cluster.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "addr.h"
#include "cluster_int.h"
#include "cluster_proto.h"
#include "cluster_routes.h"
#include "log.h"

/* ---- lifetime ---- */

int cluster_new(uv_loop_t *loop, const struct cluster_config *cfg,
		const struct cluster_hooks *hooks, void *ud, struct cluster **out)
{
	struct cluster *cl;
	struct addr la, dns;
	int rc = -ENOMEM;
	double dns_s;

	/* A numeric address: links are accepted on it and peers compare it
	 * with theirs; port 0 lets the kernel pick (cluster_listen_addr()). */
	if (!cfg->listen || addr_parse(cfg->listen, ADDR_PORT_ZERO, 0, &la) < 0) {
		log_error("cluster_config",
			  "error=\"--cluster-listen needs ADDR:PORT, a numeric address\"");
		return -EINVAL;
	}
	if (!cfg->instance || !*cfg->instance || strlen(cfg->instance) > CLUSTER_ID_MAX) {
		log_error("cluster_config", "error=\"instance id must be 1..%d bytes\"",
			  CLUSTER_ID_MAX);
		return -EINVAL;
	}
	if (!cfg->secret || cfg->secretlen < CLUSTER_SECRET_MIN) {
		log_error("cluster_config",
			  "error=\"cluster mode needs a shared secret of at least"
			  " %d bytes (--cluster-secret-file)\"",
			  CLUSTER_SECRET_MIN);
		return -EINVAL;
	}
	cl = calloc(1, sizeof(*cl));
	if (!cl)
		return -ENOMEM;
	cl->loop = loop;
	if (hooks)
		cl->hooks = *hooks;
	cl->ud = ud;
	cl->keepalive_ms =
		(uint64_t)((cfg->keepalive > 0 ? cfg->keepalive : CLUSTER_KEEPALIVE_DEFAULT) *
			   1000.0);
	if (cl->keepalive_ms < 300)
		cl->keepalive_ms = 300;
	dns_s = cfg->dns_interval > 0 ? cfg->dns_interval : CLUSTER_DNS_INTERVAL_DEFAULT;
	cl->dns_interval_ms = (uint64_t)(dns_s * 1000.0);
	cl->listen_sa = la.sa;
	cl->listen_port = (uint16_t)la.port;
	cl->listen = strdup(cfg->listen);
	cl->instance = strdup(cfg->instance);
	cl->version = strdup(cfg->version ? cfg->version : "");
	cl->secret = malloc(cfg->secretlen);
	if (!cl->listen || !cl->instance || !cl->version || !cl->secret)
		goto fail;
	memcpy(cl->secret, cfg->secret, cfg->secretlen);
	cl->secretlen = cfg->secretlen;
	if (cluster_pseudonym(cl->secret, cl->secretlen, cl->instance, cl->pseudonym) < 0)
		goto fail;
	if (strlen(cl->version) > 255)
		cl->version[255] = '\0';
	if (cfg->peers && cluster__split_list(cfg->peers, &cl->static_peers, &cl->nstatic) < 0)
		goto fail;
	if (cfg->peers_file && *cfg->peers_file) {
		cl->peers_file = strdup(cfg->peers_file);
		if (!cl->peers_file)
			goto fail;
	}
	if (cfg->peers_dns && *cfg->peers_dns) {
		if (addr_parse(cfg->peers_dns, ADDR_NAME | ADDR_PORT_OPTIONAL, la.port, &dns) < 0) {
			log_error("cluster_config", "error=\"--peers-dns needs NAME[:PORT]\"");
			rc = -EINVAL;
			goto fail;
		}
		cl->dns_name = strdup(dns.host);
		if (!cl->dns_name)
			goto fail;
		cl->dns_port = dns.port;
	}
	cluster_routes_init(&cl->remote);
	cluster_routes_init(&cl->local);
	cluster_rt_owner_init(&cl->local_owner, NULL);
	cluster_buf_init(&cl->obuf);
	if (RAND_bytes((unsigned char *)&cl->rng, sizeof(cl->rng)) != 1 || cl->rng == 0)
		cl->rng = UINT64_C(0x9e3779b97f4a7c15) ^ (uint64_t)getpid();
	*out = cl;
	return 0;
fail:
	cluster_free(cl);
	return rc;
}

void cluster_free(struct cluster *cl)
{
	struct target *t, *tn;

	if (!cl)
		return;
	for (t = cl->targets; t; t = tn) {
		tn = t->next;
		free(t->key);
		free(t->peer_id);
		free(t);
	}
	cluster__moves_free(cl);
	cluster_routes_free(&cl->remote);
	cluster_routes_free(&cl->local);
	cluster_buf_free(&cl->obuf);
	cluster__free_list(cl->static_peers, cl->nstatic);
	free(cl->listen);
	free(cl->instance);
	free(cl->version);
	free(cl->peers_file);
	free(cl->dns_name);
	if (cl->secret)
		OPENSSL_cleanse(cl->secret, cl->secretlen);
	free(cl->secret);
	free(cl);
}

/* ---- the tick: keepalive, handshake deadlines, dialing, discovery ---- */

static void on_tick(uv_timer_t *timer)
{
	struct cluster *cl = timer->data;
	uint64_t now = now_ms(cl), ping_every = cl->keepalive_ms / 3;
	struct link *l, *ln;
	struct target *t;

	for (l = cl->links; l; l = ln) {
		ln = l->next;
		if (l->state != LINK_UP) {
			if (now < l->deadline)
				continue;
			if (l->state == LINK_RETIRING)
				cluster__link_close(l, "retired");
			else if (l->dialer)
				cluster__link_close(l, "handshake-timeout");
			else
				cluster__link_refuse(l, "handshake-timeout");
			continue;
		}
		if (now - l->last_rx >= cl->keepalive_ms) {
			cluster__link_close(l, "keepalive-timeout");
			continue;
		}
		if (now - l->last_tx >= ping_every) {
			cluster_buf_reset(&cl->obuf);
			if (cluster_enc_ping(&cl->obuf, CLUSTER_MSG_PING, now) == 0)
				cluster__link_flush_obuf(l);
		}
	}
	if (cl->peers_file && now >= cl->pf_next) {
		cl->pf_next = now + 1000;
		cluster__peers_file_poll(cl);
	}
	if (cl->dns_name && now >= cl->dns_next) {
		cl->dns_next = now + cl->dns_interval_ms;
		cluster__dns_resolve(cl);
	}
	for (t = cl->targets; t; t = t->next)
		if (cluster__target_wants_dial(cl, t, now))
			cluster__target_dial(t);
	cluster__moves_tick(cl, now);
}

void cluster__on_handle_closed(uv_handle_t *h)
{
	struct cluster *cl = h->data;

	cl->handles--;
}

const char *cluster_listen_addr(const struct cluster *cl)
{
	return cl->listen;
}

int cluster_start(struct cluster *cl)
{
	struct sockaddr_storage ss;
	uint64_t period;
	int rc;

	if (cl->started)
		return -EALREADY;
	rc = uv_tcp_init(cl->loop, &cl->listener);
	if (rc < 0)
		return rc;
	cl->handles++;
	cl->listener.data = cl;
	cl->listening = 1;
	rc = uv_tcp_bind(&cl->listener, (struct sockaddr *)&cl->listen_sa, 0);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&cl->listener, 128, cluster__on_connection);
	if (rc < 0) {
		log_error("cluster_listen", "addr=%s error=%s", cl->listen, uv_err_name(rc));
		goto fail_listener;
	}
	if (cl->listen_port == 0) {
		/* The kernel picked the port: peers must learn the real one. */
		char bound[ADDR_STR_MAX];
		int len = (int)sizeof(ss);

		rc = uv_tcp_getsockname(&cl->listener, (struct sockaddr *)&ss, &len);
		if (rc == 0)
			rc = addr_format((struct sockaddr *)&ss, bound, sizeof(bound));
		if (rc >= 0) {
			free(cl->listen);
			cl->listen = strdup(bound);
			rc = cl->listen ? 0 : -ENOMEM;
		}
		if (rc < 0)
			goto fail_listener;
		cl->listen_port = (uint16_t)addr_port((struct sockaddr *)&ss);
	}
	rc = uv_timer_init(cl->loop, &cl->tick);
	if (rc < 0)
		goto fail_listener;
	cl->handles++;
	cl->tick.data = cl;
	uv_idle_init(cl->loop, &cl->fail_idle);
	cl->handles++;
	cl->fail_idle.data = cl;
	cl->started = 1;
	cl->started_at = now_ms(cl);
	cluster__targets_sync(cl, SRC_STATIC, cl->static_peers, cl->nstatic);
	period = cl->keepalive_ms / 6;
	if (period < 20)
		period = 20;
	if (period > 500)
		period = 500;
	uv_timer_start(&cl->tick, on_tick, 0, period);
	log_info("cluster_listen",
		 "addr=%s instance=%s version=%s keepalive_ms=%llu peers=%zu"
		 " peers_file=%s peers_dns=%s",
		 cl->listen, cl->instance, cl->version, (unsigned long long)cl->keepalive_ms,
		 cl->nstatic, cl->peers_file ? cl->peers_file : "-",
		 cl->dns_name ? cl->dns_name : "-");
	return 0;
fail_listener:
	cl->listening = 0;
	uv_close((uv_handle_t *)&cl->listener, cluster__on_handle_closed);
	return rc;
}

/* A peer that does not read would hold the shutdown, and the process,
 * forever: whatever has not flushed after LEAVE_GRACE_MS is closed. */
static void on_leave_timeout(uv_timer_t *timer)
{
	struct cluster *cl = timer->data;
	struct link *l;

	for (l = cl->links; l; l = l->next)
		if (!uv_is_closing((uv_handle_t *)&l->tcp))
			uv_close((uv_handle_t *)&l->tcp, cluster__on_link_closed);
	cluster__leave_done(cl);
}

void cluster_leave(struct cluster *cl)
{
	struct link *l, *ln;
	struct target *t;

	if (!cl || cl->leaving)
		return;
	cl->leaving = 1;
	log_info("cluster_leave", "peers=%llu", (unsigned long long)cl->st.peers);
	if (cl->listening) {
		cl->listening = 0;
		uv_close((uv_handle_t *)&cl->listener, cluster__on_handle_closed);
	}
	for (t = cl->targets; t; t = t->next)
		if (t->resolving)
			uv_cancel((uv_req_t *)&t->gai);
	if (cl->dns_busy)
		uv_cancel((uv_req_t *)&cl->dns_req);
	for (l = cl->links; l; l = ln) {
		int up = l->state == LINK_UP;

		ln = l->next;
		if (up) {
			cluster_buf_reset(&cl->obuf);
			if (cluster_enc_empty(&cl->obuf, CLUSTER_MSG_LEAVING) == 0)
				cluster__link_flush_obuf(l);
		}
		if (l->state == LINK_CLOSING)
			continue; /* already closing */
		/* Let the queued frames and LEAVING reach the peer: shut the
		 * write side down, close when that is done. The link stays
		 * listed until its close callback. */
		if (up) {
			cl->st.peers--;
			cluster__link_drop_routes(l);
		}
		l->state = LINK_CLOSING;
		if (l->target) {
			l->target->link = NULL;
			l->target = NULL;
		}
		/* closed on OUTQ_SHUTDOWN or OUTQ_ERROR (cluster_link.c on_outq) */
		if (!up || outq_shutdown(&l->q) < 0)
			uv_close((uv_handle_t *)&l->tcp, cluster__on_link_closed);
	}
	if (cl->started) {
		uv_timer_stop(&cl->tick);
		if (cl->links)
			uv_timer_start(&cl->tick, on_leave_timeout, LEAVE_GRACE_MS, 0);
		else
			cluster__leave_done(cl);
	}
}

int cluster_ready(const struct cluster *cl)
{
	const struct target *t;

	if (!cl->started || cl->leaving || now_ms(cl) - cl->started_at >= READY_MAX_MS)
		return 1;
	if ((cl->dns_name && !cl->dns_done) || (cl->peers_file && cl->pf_seen == 0))
		return 0;
	for (t = cl->targets; t; t = t->next)
		if (!t->removed && !t->self && !t->settled)
			return 0;
	return 1;
}

/* ---- metrics ---- */

void cluster_get_stats(const struct cluster *cl, struct cluster_stats *out)
{
	*out = cl->st;
	out->routes = cl->remote.count;
	out->local_routes = cl->local.count;
}

int cluster_metrics_print(const struct cluster *cl, char *buf, size_t size)
{
	struct cluster_stats s;

	cluster_get_stats(cl, &s);
	return snprintf(
		buf, size,
		"# HELP chatd_cluster_peers Established links to other chatd instances.\n"
		"# TYPE chatd_cluster_peers gauge\n"
		"chatd_cluster_peers %llu\n"
		"# HELP chatd_cluster_routes Sessions bound on other instances.\n"
		"# TYPE chatd_cluster_routes gauge\n"
		"chatd_cluster_routes %llu\n"
		"# HELP chatd_cluster_local_routes Local sessions announced to peers.\n"
		"# TYPE chatd_cluster_local_routes gauge\n"
		"chatd_cluster_local_routes %llu\n"
		"# HELP chatd_cluster_stanzas_forwarded_total Stanzas sent to peers.\n"
		"# TYPE chatd_cluster_stanzas_forwarded_total counter\n"
		"chatd_cluster_stanzas_forwarded_total %llu\n"
		"# HELP chatd_cluster_stanzas_received_total Stanzas received from peers.\n"
		"# TYPE chatd_cluster_stanzas_received_total counter\n"
		"chatd_cluster_stanzas_received_total %llu\n"
		"# HELP chatd_cluster_link_failures_total Links lost without notice.\n"
		"# TYPE chatd_cluster_link_failures_total counter\n"
		"chatd_cluster_link_failures_total %llu\n"
		"# HELP chatd_cluster_refused_total Link connections refused.\n"
		"# TYPE chatd_cluster_refused_total counter\n"
		"chatd_cluster_refused_total %llu\n"
		"# HELP chatd_cluster_sessions_moved_total Sessions moved between instances "
		"(XEP-0198 resumption at another instance), by direction.\n"
		"# TYPE chatd_cluster_sessions_moved_total counter\n"
		"chatd_cluster_sessions_moved_total{direction=\"in\"} %llu\n"
		"chatd_cluster_sessions_moved_total{direction=\"out\"} %llu\n"
		"# HELP chatd_cluster_stanzas_relayed_total Stanzas passed on to the instance "
		"a session moved to.\n"
		"# TYPE chatd_cluster_stanzas_relayed_total counter\n"
		"chatd_cluster_stanzas_relayed_total %llu\n",
		(unsigned long long)s.peers, (unsigned long long)s.routes,
		(unsigned long long)s.local_routes, (unsigned long long)s.forwarded,
		(unsigned long long)s.received, (unsigned long long)s.link_failures,
		(unsigned long long)s.refused, (unsigned long long)s.moved_in,
		(unsigned long long)s.moved_out, (unsigned long long)s.relayed);
}
