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

#include "cluster_proto.h"
#include "cluster_routes.h"
#include "log.h"

/* A peer that does not finish the handshake in this time is dropped. */
#define HANDSHAKE_TIMEOUT_MS 5000
/* Output a peer has not read yet; beyond it the link is declared dead
 * rather than letting one stuck peer eat the instance's memory. */
#define OUTQ_MAX (64u << 20)
#define READ_CHUNK 65536
#define PEERS_FILE_MAX (1u << 20)
#define ADDR_MAX 300
#define LEAVE_GRACE_MS 2000
/* cluster_ready() waits at most this long for the first links. */
#define READY_MAX_MS 5000

enum link_state {
	LINK_CONNECTING, /* dialed, waiting for connect */
	LINK_HELLO,	 /* our HELLO sent, waiting for the peer's */
	LINK_AUTH,	 /* our AUTH sent, waiting for the peer's */
	LINK_IDENT,	 /* the peer proved the secret, our IDENT sent, waiting for its */
	LINK_UP,	 /* authenticated both ways */
	LINK_RETIRING,	 /* the second link to a peer: no longer written, read until EOF */
	LINK_CLOSING,
};

static const char *const link_state_names[] = { "connecting", "hello",	  "auth",   "ident",
						"up",	      "retiring", "closing" };

enum target_src { SRC_STATIC = 1, SRC_FILE = 2, SRC_DNS = 4 };

struct target;

struct link {
	uv_tcp_t tcp; /* embedded; the link is freed in its close callback */
	uv_connect_t connect;
	uv_shutdown_t shutdown;
	struct cluster *cl;
	struct link *next;     /* cl->links */
	struct target *target; /* the target we dialed; NULL when accepted or target gone */
	int dialer;	       /* 1 when we dialed */
	enum link_state state;
	uint64_t id;	     /* for logs */
	char addr[ADDR_MAX]; /* the peer's address, for logs */
	char ip[64];	     /* the peer's IP address (accepted links) */
	uint16_t peer_port;  /* the link port the peer listens on (HELLO) */
	char *hello_id;	     /* the instance field of its HELLO (a pseudonym, or an older
				peer's instance id): the id its AUTH proof covers */
	char *peer_id;	     /* its instance id: from HELLO (older peers) or IDENT */
	char *peer_version;
	uint8_t nonce[CLUSTER_NONCE_LEN];      /* ours */
	uint8_t peer_nonce[CLUSTER_NONCE_LEN]; /* theirs */
	uint8_t *in;			       /* received bytes not yet framed */
	size_t in_len;
	size_t in_cap;			/* bounded by the frame cap of the state */
	uint64_t last_rx;		/* loop ms of the last frame received */
	uint64_t last_tx;		/* loop ms of the last frame sent */
	uint64_t deadline;		/* handshake deadline */
	int clean;			/* closed on purpose: LEAVING or duplicate */
	int duplicate;			/* closed as the second link to its peer: its
				      sessions are still there, on the other link */
	struct cluster_rt_owner routes; /* the peer's routes learned on this link */
};

struct target {
	struct target *next; /* cl->targets */
	struct cluster *cl;
	char *key; /* "host:port" as discovered */
	char host[256];
	int port;
	unsigned sources;     /* enum target_src bits still listing it */
	struct link *link;    /* our dialed link, while it exists */
	uv_getaddrinfo_t gai; /* resolving a host name before a dial */
	int resolving;
	int removed;	    /* no source lists it; freed when idle */
	int self;	    /* it is ourselves: never dialed again */
	int settled;	    /* the first dial failed, or a link to it synced */
	char *peer_id;	    /* who answered last time */
	unsigned fails;	    /* failed dials since the last link that came up */
	int ever_up;	    /* a link to it came up once: it is a peer that restarts */
	uint64_t next_dial; /* loop ms */
};

struct cluster {
	uv_loop_t *loop;
	struct cluster_hooks hooks;
	void *ud;
	char *listen;
	char *instance;
	char *version;
	char pseudonym[CLUSTER_PSEUDONYM_LEN + 1]; /* our HELLO's instance field */
	char *peers_file;
	char *dns_name;
	int dns_port;
	uint8_t *secret;
	size_t secretlen;
	uint64_t keepalive_ms;
	uint16_t listen_port;
	uint64_t dns_interval_ms;
	char **static_peers;
	size_t nstatic;

	uv_tcp_t listener;
	uv_timer_t tick;
	int listening;
	int started;
	uint64_t started_at; /* loop ms of cluster_start() */
	int dns_done;	     /* the first resolution of dns_name answered */
	int leaving;
	int handles; /* open uv handles (listener, timer, links) */

	struct link *links;
	struct target *targets;
	uint64_t next_link_id;

	struct cluster_routes remote;
	struct cluster_routes local;
	struct cluster_rt_owner local_owner;
	struct cluster_buf obuf; /* scratch for encoding frames */

	/* peers file: re-read when its stat changes */
	uint64_t pf_next;
	struct stat pf_st;
	int pf_seen;
	/* DNS */
	uv_getaddrinfo_t dns_req;
	int dns_busy;
	uint64_t dns_next;
	uint64_t dns_last;
	uint64_t rng;

	struct cluster_stats st;
};

static void link_close(struct link *l, const char *reason);
static void on_handle_closed(uv_handle_t *h);
static void targets_sync(struct cluster *cl, unsigned src, char **keys, size_t n);

static uint64_t now_ms(const struct cluster *cl)
{
	return uv_now(cl->loop);
}

static uint64_t rng_next(struct cluster *cl)
{
	/* xorshift64*: jitter only, no security role */
	cl->rng ^= cl->rng >> 12;
	cl->rng ^= cl->rng << 25;
	cl->rng ^= cl->rng >> 27;
	return cl->rng * 2685821657736338717ull;
}

static const char *peer_name(const struct link *l)
{
	return l->peer_id ? l->peer_id : "-";
}

/* ---- configuration helpers ---- */

int cluster_hostport_parse(const char *s, int default_port, char *host, size_t hostsz, int *port)
{
	const char *colon, *hend, *hstart = s;
	char *end;
	long p;

	if (!s || !*s)
		return -EINVAL;
	if (*s == '[') {
		hstart = s + 1;
		hend = strchr(s, ']');
		if (!hend)
			return -EINVAL;
		colon = hend[1] == ':' ? hend + 1 : NULL;
		if (hend[1] != '\0' && !colon)
			return -EINVAL;
	} else {
		colon = strrchr(s, ':');
		if (colon && strchr(s, ':') != colon)
			return -EINVAL; /* a bare IPv6 address needs brackets */
		hend = colon ? colon : s + strlen(s);
	}
	if (hend == hstart || (size_t)(hend - hstart) >= hostsz)
		return -EINVAL;
	memcpy(host, hstart, (size_t)(hend - hstart));
	host[hend - hstart] = '\0';
	if (!colon) {
		if (default_port <= 0)
			return -EINVAL;
		*port = default_port;
		return 0;
	}
	errno = 0;
	p = strtol(colon + 1, &end, 10);
	if (errno || end == colon + 1 || *end || p < 1 || p > 65535)
		return -EINVAL;
	*port = (int)p;
	return 0;
}

/* The listen address may name port 0 (the kernel picks one); peers may not. */
static int listen_addr_parse(const char *s, char *host, size_t hostsz, int *port)
{
	size_t n = s ? strlen(s) : 0;
	char tmp[300];
	int unused;

	if (n > 2 && n - 2 < sizeof(tmp) && strcmp(s + n - 2, ":0") == 0) {
		memcpy(tmp, s, n - 2);
		tmp[n - 2] = '\0';
		*port = 0;
		return cluster_hostport_parse(tmp, 1, host, hostsz, &unused);
	}
	return cluster_hostport_parse(s, 0, host, hostsz, port);
}

int cluster_secret_load(const char *path, uint8_t **out, size_t *len)
{
	uint8_t *buf = NULL;
	size_t n = 0;
	ssize_t r;
	int fd, rc = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	buf = malloc(CLUSTER_SECRET_MAX + 2);
	if (!buf) {
		rc = -ENOMEM;
		goto out_close;
	}
	while (n < CLUSTER_SECRET_MAX + 1) {
		r = read(fd, buf + n, CLUSTER_SECRET_MAX + 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = -errno;
			goto out_free;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' ||
			 buf[n - 1] == '\t'))
		n--;
	if (n < CLUSTER_SECRET_MIN || n > CLUSTER_SECRET_MAX) {
		rc = -EINVAL;
		goto out_free;
	}
	*out = buf;
	*len = n;
	goto out_close;
out_free:
	OPENSSL_cleanse(buf, CLUSTER_SECRET_MAX + 2);
	free(buf);
out_close:
	close(fd);
	return rc;
}

static int split_list(const char *s, char ***out, size_t *n)
{
	char **v = NULL, **nv;
	const char *p = s;
	size_t cnt = 0;

	while (p && *p) {
		const char *e = strchr(p, ',');
		size_t len = e ? (size_t)(e - p) : strlen(p);

		while (len && (*p == ' ' || *p == '\t')) {
			p++;
			len--;
		}
		while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
			len--;
		if (len) {
			nv = realloc(v, (cnt + 1) * sizeof(*v));
			if (!nv)
				goto fail;
			v = nv;
			v[cnt] = strndup(p, len);
			if (!v[cnt])
				goto fail;
			cnt++;
		}
		p = e ? e + 1 : NULL;
	}
	*out = v;
	*n = cnt;
	return 0;
fail:
	while (cnt)
		free(v[--cnt]);
	free(v);
	return -ENOMEM;
}

static void free_list(char **v, size_t n)
{
	while (n)
		free(v[--n]);
	free(v);
}

/* ---- lifetime ---- */

int cluster_new(uv_loop_t *loop, const struct cluster_config *cfg,
		const struct cluster_hooks *hooks, void *ud, struct cluster **out)
{
	struct cluster *cl;
	char host[256];
	int port, rc = -ENOMEM;
	double dns_s;

	if (!cfg->listen || listen_addr_parse(cfg->listen, host, sizeof(host), &port) < 0) {
		log_error("cluster_config", "error=\"--cluster-listen needs ADDR:PORT\"");
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
	cl->listen_port = (uint16_t)port;
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
	if (cfg->peers && split_list(cfg->peers, &cl->static_peers, &cl->nstatic) < 0)
		goto fail;
	if (cfg->peers_file && *cfg->peers_file) {
		cl->peers_file = strdup(cfg->peers_file);
		if (!cl->peers_file)
			goto fail;
	}
	if (cfg->peers_dns && *cfg->peers_dns) {
		cl->dns_name = malloc(256);
		if (!cl->dns_name)
			goto fail;
		if (cluster_hostport_parse(cfg->peers_dns, port, cl->dns_name, 256, &cl->dns_port) <
		    0) {
			log_error("cluster_config", "error=\"--peers-dns needs NAME[:PORT]\"");
			rc = -EINVAL;
			goto fail;
		}
	}
	cluster_routes_init(&cl->remote);
	cluster_routes_init(&cl->local);
	cluster_rt_owner_init(&cl->local_owner, NULL);
	cluster_buf_init(&cl->obuf);
	if (RAND_bytes((unsigned char *)&cl->rng, sizeof(cl->rng)) != 1 || cl->rng == 0)
		cl->rng = 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid();
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
	cluster_routes_free(&cl->remote);
	cluster_routes_free(&cl->local);
	cluster_buf_free(&cl->obuf);
	free_list(cl->static_peers, cl->nstatic);
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

/* ---- sending ---- */

struct wreq {
	uv_write_t req;
	size_t len;
	uint8_t data[];
};

static void on_write(uv_write_t *req, int status)
{
	struct wreq *w = (struct wreq *)req;
	struct link *l = req->data;

	free(w);
	if (status < 0 && status != UV_ECANCELED)
		link_close(l, uv_err_name(status));
}

/* Sends bytes on a link: written at once when the socket takes them,
 * queued otherwise. */
static int link_write(struct link *l, const uint8_t *p, size_t len)
{
	uv_buf_t b = uv_buf_init((char *)p, (unsigned)len);
	struct wreq *w;
	int r;

	if (l->state == LINK_CLOSING || l->state == LINK_CONNECTING || l->state == LINK_RETIRING)
		return -ENOTCONN;
	r = uv_try_write((uv_stream_t *)&l->tcp, &b, 1);
	if (r == (int)len)
		goto sent;
	if (r < 0 && r != UV_EAGAIN) {
		link_close(l, uv_err_name(r));
		return r;
	}
	if (r < 0)
		r = 0;
	if (l->tcp.write_queue_size + len > OUTQ_MAX) {
		link_close(l, "peer-not-reading");
		return -ENOBUFS;
	}
	w = malloc(sizeof(*w) + len - (size_t)r);
	if (!w) {
		link_close(l, "out-of-memory");
		return -ENOMEM;
	}
	w->len = len - (size_t)r;
	memcpy(w->data, p + r, w->len);
	w->req.data = l;
	b = uv_buf_init((char *)w->data, (unsigned)w->len);
	r = uv_write(&w->req, (uv_stream_t *)&l->tcp, &b, 1, on_write);
	if (r < 0) {
		free(w);
		link_close(l, uv_err_name(r));
		return r;
	}
sent:
	l->last_tx = now_ms(l->cl);
	return 0;
}

/* Sends what is in cl->obuf and empties it. */
static int link_flush_obuf(struct link *l)
{
	struct cluster *cl = l->cl;
	int rc = cl->obuf.len ? link_write(l, cl->obuf.data, cl->obuf.len) : 0;

	cluster_buf_reset(&cl->obuf);
	return rc;
}

/* ---- routes ---- */

/* Tells chatd about an available remote session that is gone, unless
 * another owner still holds the same full JID. */
static void route_gone(struct cluster *cl, const char *full)
{
	if (cl->hooks.route_gone && !cluster_routes_find(&cl->remote, full, NULL))
		cl->hooks.route_gone(cl->ud, full);
}

static void link_drop_routes(struct link *l)
{
	struct cluster *cl = l->cl;
	struct cluster_route *r;
	char **gone = NULL;
	size_t n, ngone = 0, i;

	/* Collected first: the hook runs once the table is consistent. */
	if (cl->hooks.route_gone && l->routes.count && !l->duplicate && !cl->leaving) {
		gone = calloc(l->routes.count, sizeof(*gone));
		for (r = l->routes.head; gone && r; r = r->onext)
			if (r->available && (gone[ngone] = strdup(r->full)) != NULL)
				ngone++;
	}
	n = cluster_routes_drop_owner(&cl->remote, &l->routes);
	for (i = 0; i < ngone; i++) {
		route_gone(cl, gone[i]);
		free(gone[i]);
	}
	free(gone);

	if (n)
		log_info("cluster_routes_dropped", "link=%llu peer=%s routes=%zu",
			 (unsigned long long)l->id, peer_name(l), n);
}

/* The full table dump that starts a link, then SYNC. */
static int link_send_dump(struct link *l)
{
	struct cluster *cl = l->cl;
	struct cluster_batch bt;
	const struct cluster_route *r;
	int rc;

	cluster_buf_reset(&cl->obuf);
	rc = cluster_batch_begin(&bt, &cl->obuf, CLUSTER_MSG_ROUTE_ADD);
	for (r = cl->local_owner.head; r && rc >= 0; r = r->onext) {
		rc = cluster_batch_add(&bt, r->full, r->priority,
				       r->available ? CLUSTER_ROUTE_AVAILABLE : 0);
		if (rc == 0) {
			cluster_batch_end(&bt);
			/* flush per batch so the scratch buffer stays small */
			rc = link_flush_obuf(l);
			if (rc >= 0)
				rc = cluster_batch_begin(&bt, &cl->obuf, CLUSTER_MSG_ROUTE_ADD);
			if (rc >= 0)
				rc = cluster_batch_add(&bt, r->full, r->priority,
						       r->available ? CLUSTER_ROUTE_AVAILABLE : 0);
		}
	}
	if (rc >= 0) {
		cluster_batch_end(&bt);
		rc = cluster_enc_empty(&cl->obuf, CLUSTER_MSG_SYNC);
	}
	if (rc < 0) {
		cluster_buf_reset(&cl->obuf);
		link_close(l, "dump-failed");
		return rc;
	}
	return link_flush_obuf(l);
}

/* Sends the frames in cl->obuf to every established link, then empties
 * it; returns how many links took them. */
static int broadcast_obuf(struct cluster *cl)
{
	struct link *l, *ln;
	int n = 0;

	for (l = cl->links; l; l = ln) {
		ln = l->next; /* a failed write closes and unlists l */
		if (l->state == LINK_UP && link_write(l, cl->obuf.data, cl->obuf.len) == 0)
			n++;
	}
	cluster_buf_reset(&cl->obuf);
	return n;
}

/* Sends one route change to every established link. */
static void broadcast_route(struct cluster *cl, uint8_t type, const char *full, int priority,
			    int available)
{
	struct cluster_batch bt;
	int rc;

	cluster_buf_reset(&cl->obuf);
	rc = cluster_batch_begin(&bt, &cl->obuf, type);
	if (rc >= 0)
		rc = cluster_batch_add(&bt, full, priority,
				       available ? CLUSTER_ROUTE_AVAILABLE : 0);
	if (rc < 0) {
		cluster_buf_reset(&cl->obuf);
		return; /* an unencodable JID: nothing can route to it anyway */
	}
	cluster_batch_end(&bt);
	broadcast_obuf(cl);
}

int cluster_local_set(struct cluster *cl, const char *full, int priority, int available)
{
	int rc = cluster_routes_set(&cl->local, &cl->local_owner, full, priority, available);

	if (rc < 0)
		return rc;
	broadcast_route(cl, CLUSTER_MSG_ROUTE_ADD, full, priority, available);
	return 0;
}

void cluster_local_del(struct cluster *cl, const char *full)
{
	if (cluster_routes_del(&cl->local, &cl->local_owner, full) > 0)
		broadcast_route(cl, CLUSTER_MSG_ROUTE_DEL, full, 0, 0);
}

int cluster_has_route(const struct cluster *cl, const char *full)
{
	return cluster_routes_find(&cl->remote, full, NULL) != NULL;
}

int cluster_has_bare(const struct cluster *cl, const char *bare)
{
	return cluster_routes_bare(&cl->remote, bare) != NULL;
}

int cluster_route_available(const struct cluster *cl, const char *full)
{
	const struct cluster_route *r = cluster_routes_find(&cl->remote, full, NULL);

	return r ? r->available : -1;
}

static int send_stanza(struct cluster *cl, struct link *l, const char *to, const char *from,
		       const char *xml, size_t len)
{
	int rc;

	cluster_buf_reset(&cl->obuf);
	rc = cluster_enc_stanza(&cl->obuf, to, from, xml, len);
	if (rc < 0) {
		cluster_buf_reset(&cl->obuf);
		return rc == CLUSTER_PROTO_ENOMEM ? -ENOMEM : -EINVAL;
	}
	rc = link_flush_obuf(l);
	if (rc == 0)
		cl->st.forwarded++;
	return rc;
}

int cluster_forward(struct cluster *cl, const char *to, const char *from, const char *xml,
		    size_t len)
{
	const struct cluster_route *r = cluster_routes_find(&cl->remote, to, NULL);

	if (!r)
		return -ENOENT;
	return send_stanza(cl, r->owner->ud, to, from, xml, len);
}

int cluster_bare_best(const struct cluster *cl, const char *bare, int *best)
{
	const struct cluster_route *r;
	int n = 0, b = -1;

	for (r = cluster_routes_bare(&cl->remote, bare); r; r = r->bnext) {
		if (!r->available || r->priority < 0)
			continue;
		n++;
		if (r->priority > b)
			b = r->priority;
	}
	if (n)
		*best = b;
	return n;
}

static int bare_selected(const struct cluster_route *r, enum cluster_bare_mode mode, int prio)
{
	if (!r->available)
		return 0;
	switch (mode) {
	case CLUSTER_BARE_PRIO:
		return r->priority == prio;
	case CLUSTER_BARE_NONNEG:
		return r->priority >= 0;
	default:
		return 1;
	}
}

int cluster_forward_bare(struct cluster *cl, const char *bare, enum cluster_bare_mode mode,
			 int prio, const char *from, const char *xml, size_t len)
{
	const struct cluster_route *r, *o;
	struct link **links = NULL;
	char **fulls = NULL;
	size_t cnt = 0, i;
	int n = 0;

	/* Collected first: a failed write closes its link, which drops that
	 * link's routes out of the list being walked. */
	for (r = cluster_routes_bare(&cl->remote, bare); r; r = r->bnext)
		cnt += bare_selected(r, mode, prio);
	if (!cnt)
		return 0;
	links = calloc(cnt, sizeof(*links));
	fulls = calloc(cnt, sizeof(*fulls));
	if (!links || !fulls)
		goto out;
	cnt = 0;
	for (r = cluster_routes_bare(&cl->remote, bare); r; r = r->bnext) {
		if (!bare_selected(r, mode, prio))
			continue;
		/* one copy per session even if two owners briefly claim it */
		for (o = cluster_routes_bare(&cl->remote, bare); o != r; o = o->bnext)
			if (bare_selected(o, mode, prio) && strcmp(o->resource, r->resource) == 0)
				break;
		if (o != r)
			continue;
		fulls[cnt] = strdup(r->full);
		if (!fulls[cnt])
			break;
		links[cnt++] = r->owner->ud;
	}
	for (i = 0; i < cnt; i++)
		if (send_stanza(cl, links[i], fulls[i], from, xml, len) == 0)
			n++;
out:
	for (i = 0; fulls && i < cnt; i++)
		free(fulls[i]);
	free(fulls);
	free(links);
	return n;
}

int cluster_broadcast_presence(struct cluster *cl, const char *from, const char *xml, size_t len)
{
	const struct cluster_route *r, *o;
	const char *slash = strchr(from, '/');
	char bare[CLUSTER_JID_MAX + 1];
	size_t blen = slash ? (size_t)(slash - from) : strlen(from);
	struct link **links;
	size_t cnt = 0, i;
	int n = 0, rc;

	if (blen > CLUSTER_JID_MAX)
		return -EINVAL;
	memcpy(bare, from, blen);
	bare[blen] = '\0';
	/* Broadcast presence goes to the user's own other resources (no
	 * rosters): only the instances that hold one need it. Collected first
	 * (a failed write drops routes from the list). */
	for (r = cluster_routes_bare(&cl->remote, bare); r; r = r->bnext)
		cnt++;
	if (!cnt)
		return 0;
	links = calloc(cnt, sizeof(*links));
	if (!links)
		return -ENOMEM;
	cnt = 0;
	for (r = cluster_routes_bare(&cl->remote, bare); r; r = r->bnext) {
		for (o = cluster_routes_bare(&cl->remote, bare); o != r; o = o->bnext)
			if (o->owner == r->owner)
				break;
		if (o == r)
			links[cnt++] = r->owner->ud;
	}
	cluster_buf_reset(&cl->obuf);
	rc = cluster_enc_presence(&cl->obuf, from, xml, len);
	for (i = 0; rc == 0 && i < cnt; i++)
		if (link_write(links[i], cl->obuf.data, cl->obuf.len) == 0)
			n++;
	cluster_buf_reset(&cl->obuf);
	free(links);
	if (rc < 0)
		return rc == CLUSTER_PROTO_ENOMEM ? -ENOMEM : -EINVAL;
	cl->st.forwarded += (uint64_t)n;
	return n;
}

/* ---- links ---- */

static void target_schedule(struct target *t, int failed);

static void link_unlist(struct link *l);

/* The tick timer goes last, once leaving and no link is left. */
static void leave_done(struct cluster *cl)
{
	if (cl->started && !uv_is_closing((uv_handle_t *)&cl->tick)) {
		uv_timer_stop(&cl->tick);
		uv_close((uv_handle_t *)&cl->tick, on_handle_closed);
	}
}

/* Every target known to be peer_id has its routes now. */
static void targets_settle(struct cluster *cl, const char *peer_id)
{
	struct target *t;

	for (t = cl->targets; t; t = t->next)
		if (t->peer_id && strcmp(t->peer_id, peer_id) == 0)
			t->settled = 1;
}

static void on_link_closed(uv_handle_t *h)
{
	struct link *l = h->data;
	struct cluster *cl = l->cl;

	link_unlist(l);
	if (cl->leaving && !cl->links)
		leave_done(cl);
	cl->handles--;
	free(l->in);
	free(l->hello_id);
	free(l->peer_id);
	free(l->peer_version);
	free(l);
}

static void link_unlist(struct link *l)
{
	struct link **pp = &l->cl->links;

	while (*pp && *pp != l)
		pp = &(*pp)->next;
	if (*pp)
		*pp = l->next;
}

static void link_close(struct link *l, const char *reason)
{
	struct cluster *cl = l->cl;
	enum link_state was = l->state;

	if (was == LINK_CLOSING)
		return;
	l->state = LINK_CLOSING;
	if (was == LINK_UP) {
		cl->st.peers--;
		if (!l->clean && !cl->leaving)
			cl->st.link_failures++;
		log_info("cluster_link_down", "link=%llu peer=%s addr=%s reason=%s",
			 (unsigned long long)l->id, peer_name(l), l->addr, reason);
		link_drop_routes(l);
	}
	if (l->target) {
		struct target *t = l->target;

		t->link = NULL;
		target_schedule(t, was != LINK_UP || !l->clean);
		/* A peer that never comes up (a pod that is never ready) fails
		 * again and again: its 1st, 2nd, 4th, 8th... failure is logged. */
		if (was != LINK_UP)
			log_msg(cluster_dial_log_level(t->fails), "cluster_link_closed",
				"link=%llu peer=%s addr=%s state=%s reason=%s fails=%u "
				"next_dial_ms=%llu",
				(unsigned long long)l->id, peer_name(l), l->addr,
				link_state_names[was], reason, t->fails,
				(unsigned long long)(t->next_dial - now_ms(cl)));
		l->target = NULL;
		/* the peer set may have changed (a pod replaced): look again */
		if (cl->dns_name && !cl->leaving && now_ms(cl) - cl->dns_last >= 1000)
			cl->dns_next = now_ms(cl);
	} else if (was != LINK_UP)
		log_info("cluster_link_closed", "link=%llu peer=%s addr=%s state=%s reason=%s",
			 (unsigned long long)l->id, peer_name(l), l->addr, link_state_names[was],
			 reason);
	link_unlist(l);
	uv_close((uv_handle_t *)&l->tcp, on_link_closed);
}

static struct link *link_new(struct cluster *cl, int dialer)
{
	struct link *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	if (uv_tcp_init(cl->loop, &l->tcp) < 0) {
		free(l);
		return NULL;
	}
	cl->handles++;
	l->tcp.data = l;
	l->cl = cl;
	l->dialer = dialer;
	l->id = ++cl->next_link_id;
	l->deadline = now_ms(cl) + HANDSHAKE_TIMEOUT_MS;
	l->last_rx = now_ms(cl);
	cluster_rt_owner_init(&l->routes, l);
	strcpy(l->addr, "-");
	l->next = cl->links;
	cl->links = l;
	if (RAND_bytes(l->nonce, sizeof(l->nonce)) != 1) {
		link_close(l, "no-randomness");
		return NULL;
	}
	return l;
}

static size_t link_frame_cap(const struct link *l)
{
	return l->state == LINK_UP || l->state == LINK_RETIRING ? CLUSTER_FRAME_MAX
								: CLUSTER_FRAME_MAX_PREAUTH;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct link *l = h->data;
	size_t cap = link_frame_cap(l) + CLUSTER_FRAME_HDR;
	size_t want = l->in_len + READ_CHUNK;
	uint8_t *n;

	if (want > cap)
		want = cap > l->in_len ? cap : l->in_len;
	if (l->in_cap < want) {
		n = realloc(l->in, want);
		if (n) {
			l->in = n;
			l->in_cap = want;
		}
	}
	*buf = uv_buf_init((char *)l->in + l->in_len, (unsigned)(l->in_cap - l->in_len));
}

static void link_refuse(struct link *l, const char *why)
{
	l->cl->st.refused++;
	log_warn("cluster_refused", "link=%llu addr=%s peer=%s state=%s reason=%s",
		 (unsigned long long)l->id, l->addr, peer_name(l), link_state_names[l->state], why);
	link_close(l, why);
}

static struct link *find_up_link(struct cluster *cl, const char *peer_id, const struct link * not )
{
	struct link *l;

	for (l = cl->links; l; l = l->next)
		if (l != not &&l->state == LINK_UP && strcmp(l->peer_id, peer_id) == 0)
			return l;
	return NULL;
}

/* Of two links between the same pair both sides keep the same one: the
 * one dialed by the lower instance id; if one side dialed both (two
 * addresses of the same instance), the one with the lower dialer nonce. */
static int link_pseudonymous(const struct link *l);

static int link_preferred(const struct link *a, const struct link *b)
{
	const struct cluster *cl = a->cl;
	/* An older peer knows us by our pseudonym: compare what it compares. */
	const char *me = link_pseudonymous(a) ? cl->instance : cl->pseudonym;
	const char *da = a->dialer ? me : a->peer_id;
	const char *db = b->dialer ? me : b->peer_id;
	int c = strcmp(da, db);

	if (c)
		return c < 0;
	return memcmp(a->dialer ? a->nonce : a->peer_nonce, b->dialer ? b->nonce : b->peer_nonce,
		      CLUSTER_NONCE_LEN) < 0;
}

/* An accepted link from a peer we also know as a dial target (same IP,
 * same advertised link port): remember who the target is, so that we do
 * not dial a second link to an instance already linked. */
static void link_match_target(struct link *l)
{
	struct target *t;

	for (t = l->cl->targets; t; t = t->next) {
		if (t->port != l->peer_port || strcmp(t->host, l->ip) != 0)
			continue;
		free(t->peer_id);
		t->peer_id = strdup(l->peer_id);
	}
}

static void on_retire_shutdown(uv_shutdown_t *req, int status)
{
}

/*
 * The losing one of two links to the same peer. The peer may have written
 * stanzas on it before it saw the other link: both sides stop writing it
 * and shut its write side down, and keep reading it until EOF (at most
 * LEAVE_GRACE_MS), delivering what was already on the way. Its routes go:
 * the kept link carries the peer's full table.
 */
static void link_retire(struct link *l, struct link *kept)
{
	struct cluster *cl = l->cl;

	log_info("cluster_link_duplicate", "link=%llu peer=%s kept=%llu", (unsigned long long)l->id,
		 l->peer_id, (unsigned long long)kept->id);
	l->clean = 1;
	l->duplicate = 1;
	if (l->state == LINK_UP) {
		cl->st.peers--;
		link_drop_routes(l);
	}
	l->state = LINK_RETIRING;
	l->deadline = now_ms(cl) + LEAVE_GRACE_MS;
	if (l->target) {
		l->target->link = NULL;
		l->target = NULL;
	}
	l->shutdown.data = l;
	if (uv_shutdown(&l->shutdown, (uv_stream_t *)&l->tcp, on_retire_shutdown) < 0)
		link_close(l, "duplicate");
}

static void link_up(struct link *l)
{
	struct cluster *cl = l->cl;
	struct link *other = find_up_link(cl, l->peer_id, l);

	if (other) {
		if (link_preferred(other, l)) {
			link_retire(l, other);
			return;
		}
		link_retire(other, l);
	}
	l->state = LINK_UP;
	l->last_rx = now_ms(cl);
	cl->st.peers++;
	if (!l->dialer)
		link_match_target(l);
	if (l->target) {
		l->target->fails = 0;
		l->target->ever_up = 1;
	}
	log_info("cluster_link_up", "link=%llu peer=%s version=%s addr=%s dir=%s",
		 (unsigned long long)l->id, l->peer_id, l->peer_version, l->addr,
		 l->dialer ? "out" : "in");
	link_send_dump(l);
}

/* A peer whose HELLO hides its name (a pseudonym) sends IDENT after AUTH. */
static int link_pseudonymous(const struct link *l)
{
	return l->hello_id && l->hello_id[0] == CLUSTER_PSEUDONYM_PREFIX;
}

/* Learns who the peer is (its HELLO for an older peer, its IDENT else). */
static int link_set_peer(struct link *l, const struct cluster_str *id, const struct cluster_str *v,
			 uint16_t port)
{
	free(l->peer_id);
	free(l->peer_version);
	l->peer_id = strndup(id->p, id->len);
	l->peer_version = strndup(v->p, v->len);
	if (!l->peer_id || !l->peer_version)
		return -ENOMEM;
	l->peer_port = port;
	if (l->target) {
		free(l->target->peer_id);
		l->target->peer_id = strdup(l->peer_id);
	}
	return 0;
}

static void on_hello(struct link *l, const struct cluster_msg *m)
{
	struct cluster *cl = l->cl;
	uint8_t mac[CLUSTER_MAC_LEN];
	const char *did, *aid;
	const uint8_t *dn, *an;
	struct link *o;
	int rc;

	if (m->u.hello.proto != CLUSTER_PROTO_VERSION) {
		link_refuse(l, "protocol-version");
		return;
	}
	l->hello_id = strndup(m->u.hello.instance.p, m->u.hello.instance.len);
	if (!l->hello_id) {
		link_close(l, "out-of-memory");
		return;
	}
	memcpy(l->peer_nonce, m->u.hello.nonce, CLUSTER_NONCE_LEN);
	/* HELLO is not authenticated: the address is ours (never dialed again)
	 * only when the nonce is one of our other links', i.e. we are talking
	 * to ourselves; anyone else claiming our name or pseudonym is just
	 * refused. */
	for (o = cl->links; o; o = o->next)
		if (o != l && CRYPTO_memcmp(o->nonce, l->peer_nonce, CLUSTER_NONCE_LEN) == 0)
			break;
	if (o || strcmp(l->hello_id, cl->instance) == 0 ||
	    strcmp(l->hello_id, cl->pseudonym) == 0) {
		if (o && l->target) {
			l->target->self = 1;
			log_info("cluster_peer_self", "addr=%s", l->target->key);
		}
		link_close(l, "self");
		return;
	}
	if (!link_pseudonymous(l) &&
	    link_set_peer(l, &m->u.hello.instance, &m->u.hello.version, m->u.hello.port) < 0) {
		link_close(l, "out-of-memory");
		return;
	}
	did = l->dialer ? cl->pseudonym : l->hello_id;
	aid = l->dialer ? l->hello_id : cl->pseudonym;
	dn = l->dialer ? l->nonce : l->peer_nonce;
	an = l->dialer ? l->peer_nonce : l->nonce;
	rc = cluster_auth_mac(cl->secret, cl->secretlen,
			      l->dialer ? CLUSTER_ROLE_DIALER : CLUSTER_ROLE_ACCEPTOR, dn, an, did,
			      aid, mac);
	cluster_buf_reset(&cl->obuf);
	if (rc >= 0)
		rc = cluster_enc_auth(&cl->obuf, mac);
	OPENSSL_cleanse(mac, sizeof(mac));
	if (rc < 0) {
		cluster_buf_reset(&cl->obuf);
		link_close(l, "auth-encode");
		return;
	}
	l->state = LINK_AUTH;
	link_flush_obuf(l);
}

static void on_auth(struct link *l, const struct cluster_msg *m)
{
	struct cluster *cl = l->cl;
	const char *did = l->dialer ? cl->pseudonym : l->hello_id;
	const char *aid = l->dialer ? l->hello_id : cl->pseudonym;
	const uint8_t *dn = l->dialer ? l->nonce : l->peer_nonce;
	const uint8_t *an = l->dialer ? l->peer_nonce : l->nonce;
	enum cluster_role prover = l->dialer ? CLUSTER_ROLE_ACCEPTOR : CLUSTER_ROLE_DIALER;

	if (!cluster_auth_verify(cl->secret, cl->secretlen, prover, dn, an, did, aid,
				 m->u.auth.mac)) {
		link_refuse(l, "bad-secret");
		return;
	}
	if (!link_pseudonymous(l)) {
		link_up(l); /* an older peer: it named itself in HELLO */
		return;
	}
	/* The peer knows the secret: now say who we are. */
	cluster_buf_reset(&cl->obuf);
	if (cluster_enc_ident(&cl->obuf, cl->instance, cl->version, cl->listen_port) < 0) {
		cluster_buf_reset(&cl->obuf);
		link_close(l, "ident-encode");
		return;
	}
	l->state = LINK_IDENT;
	link_flush_obuf(l);
}

static void on_ident(struct link *l, const struct cluster_msg *m)
{
	if (link_set_peer(l, &m->u.ident.instance, &m->u.ident.version, m->u.ident.port) < 0) {
		link_close(l, "out-of-memory");
		return;
	}
	if (strcmp(l->peer_id, l->cl->instance) == 0) {
		/* another instance with our name, and the secret */
		log_warn("cluster_same_instance_id", "link=%llu addr=%s instance=%s",
			 (unsigned long long)l->id, l->addr, l->peer_id);
		link_close(l, "same-instance-id");
		return;
	}
	link_up(l);
}

static void on_routes(struct link *l, const struct cluster_msg *m)
{
	struct cluster_route_rec rec;
	char jid[CLUSTER_JID_MAX + 1];
	size_t off = 0;
	int rc;

	while (cluster_route_next(m, &off, &rec)) {
		memcpy(jid, rec.jid.p, rec.jid.len);
		jid[rec.jid.len] = '\0';
		if (m->type == CLUSTER_MSG_ROUTE_DEL) {
			const struct cluster_route *r;
			int was;

			r = cluster_routes_find(&l->cl->remote, jid, NULL);
			was = r && r->owner == &l->routes && r->available;

			if (cluster_routes_del(&l->cl->remote, &l->routes, jid) > 0 && was)
				route_gone(l->cl, jid);
			continue;
		}
		rc = cluster_routes_set(&l->cl->remote, &l->routes, jid, rec.priority,
					(rec.flags & CLUSTER_ROUTE_AVAILABLE) != 0);
		if (rc == -ENOMEM) {
			link_close(l, "out-of-memory");
			return;
		}
		if (rc < 0)
			log_warn("cluster_bad_route", "link=%llu peer=%s",
				 (unsigned long long)l->id, peer_name(l));
		if (rc == 1 && l->cl->hooks.route_added) {
			l->cl->hooks.route_added(l->cl->ud, jid, rec.priority,
						 (rec.flags & CLUSTER_ROUTE_AVAILABLE) != 0);
			/* the replaced session's ROUTE_DEL may have failed on l */
			if (l->state == LINK_CLOSING)
				return;
		}
	}
}

static void on_stanza(struct link *l, const struct cluster_msg *m)
{
	struct cluster *cl = l->cl;
	char *to = strndup(m->u.stanza.to.p, m->u.stanza.to.len);
	char *from = strndup(m->u.stanza.from.p, m->u.stanza.from.len);
	int rc = -ENOENT;

	if (!to || !from) {
		link_close(l, "out-of-memory");
		goto out;
	}
	cl->st.received++;
	if (cl->hooks.deliver)
		rc = cl->hooks.deliver(cl->ud, to, from, m->u.stanza.xml.p, m->u.stanza.xml.len);
	if (rc < 0)
		log_info("cluster_undeliverable", "link=%llu peer=%s to=%s rc=%d",
			 (unsigned long long)l->id, peer_name(l), to, rc);
out:
	free(to);
	free(from);
}

static void on_presence(struct link *l, const struct cluster_msg *m)
{
	struct cluster *cl = l->cl;
	char *from = strndup(m->u.presence.from.p, m->u.presence.from.len);

	if (!from) {
		link_close(l, "out-of-memory");
		return;
	}
	cl->st.received++;
	if (cl->hooks.presence)
		cl->hooks.presence(cl->ud, from, m->u.presence.xml.p, m->u.presence.xml.len);
	free(from);
}

static void link_dispatch(struct link *l, const struct cluster_msg *m)
{
	struct cluster *cl = l->cl;

	/* Before authentication only the handshake, in order. */
	if (l->state == LINK_HELLO) {
		if (m->type != CLUSTER_MSG_HELLO)
			link_refuse(l, "expected-hello");
		else
			on_hello(l, m);
		return;
	}
	if (l->state == LINK_AUTH) {
		if (m->type != CLUSTER_MSG_AUTH)
			link_refuse(l, "expected-auth");
		else
			on_auth(l, m);
		return;
	}
	if (l->state == LINK_IDENT) {
		if (m->type != CLUSTER_MSG_IDENT)
			link_refuse(l, "expected-ident");
		else
			on_ident(l, m);
		return;
	}
	if (l->state == LINK_RETIRING) {
		if (m->type == CLUSTER_MSG_STANZA)
			on_stanza(l, m);
		else if (m->type == CLUSTER_MSG_PRESENCE)
			on_presence(l, m);
		return; /* routes come on the kept link; it also answers pings */
	}
	switch (m->type) {
	case CLUSTER_MSG_ROUTE_ADD:
	case CLUSTER_MSG_ROUTE_DEL:
		on_routes(l, m);
		break;
	case CLUSTER_MSG_SYNC:
		log_info("cluster_synced", "link=%llu peer=%s routes=%zu",
			 (unsigned long long)l->id, l->peer_id, l->routes.count);
		targets_settle(cl, l->peer_id);
		break;
	case CLUSTER_MSG_STANZA:
		on_stanza(l, m);
		break;
	case CLUSTER_MSG_PRESENCE:
		on_presence(l, m);
		break;
	case CLUSTER_MSG_PING:
		cluster_buf_reset(&cl->obuf);
		if (cluster_enc_ping(&cl->obuf, CLUSTER_MSG_PONG, m->u.ping.token) == 0)
			link_flush_obuf(l);
		break;
	case CLUSTER_MSG_PONG:
		break;
	case CLUSTER_MSG_LEAVING:
		l->clean = 1;
		log_info("cluster_peer_leaving", "link=%llu peer=%s", (unsigned long long)l->id,
			 l->peer_id);
		link_close(l, "peer-leaving");
		break;
	default:
		link_close(l, "unexpected-frame");
		break;
	}
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct link *l = s->data;
	size_t off = 0;

	if (nread == 0)
		return;
	if (nread < 0) {
		link_close(l, nread == UV_EOF ? "eof" : uv_err_name((int)nread));
		return;
	}
	if (l->state == LINK_CLOSING)
		return;
	l->in_len += (size_t)nread;
	while (l->state != LINK_CLOSING) {
		const uint8_t *payload;
		struct cluster_msg m;
		size_t plen;
		uint8_t type;
		long n;
		int rc;

		n = cluster_frame_split(l->in + off, l->in_len - off, link_frame_cap(l), &type,
					&payload, &plen);
		if (n == CLUSTER_PROTO_EAGAIN)
			break;
		if (n < 0) {
			link_refuse(l, n == CLUSTER_PROTO_E2BIG ? "frame-too-large" : "bad-frame");
			return;
		}
		rc = cluster_msg_decode(type, payload, plen, &m);
		if (rc < 0) {
			log_warn("cluster_bad_frame", "link=%llu peer=%s type=%s error=\"%s\"",
				 (unsigned long long)l->id, peer_name(l),
				 cluster_msg_type_name(type), cluster_proto_strerror(rc));
			link_refuse(l, rc == CLUSTER_PROTO_ETYPE ? "unknown-frame" : "bad-frame");
			return;
		}
		off += (size_t)n;
		l->last_rx = now_ms(l->cl);
		link_dispatch(l, &m);
	}
	if (l->state == LINK_CLOSING)
		return;
	if (off) {
		memmove(l->in, l->in + off, l->in_len - off);
		l->in_len -= off;
	}
	/* Shrink the buffer of an idle link back to nothing: links are few,
	 * but a burst of large stanzas should not pin a megabyte each. */
	if (l->in_len == 0 && l->in_cap > READ_CHUNK) {
		free(l->in);
		l->in = NULL;
		l->in_cap = 0;
	}
}

static void link_start(struct link *l)
{
	struct cluster *cl = l->cl;
	int rc;

	l->state = LINK_HELLO;
	rc = uv_read_start((uv_stream_t *)&l->tcp, on_alloc, on_read);
	if (rc < 0) {
		link_close(l, uv_err_name(rc));
		return;
	}
	cluster_buf_reset(&cl->obuf);
	/* Nothing identifying before the peer proved the secret: a pseudonym,
	 * no version, no port (IDENT carries them after AUTH). */
	rc = cluster_enc_hello(&cl->obuf, cl->pseudonym, "", 0, l->nonce);
	if (rc < 0) {
		cluster_buf_reset(&cl->obuf);
		link_close(l, "hello-encode");
		return;
	}
	link_flush_obuf(l);
}

static void addr_string(const struct sockaddr *sa, char *buf, size_t size)
{
	char host[INET6_ADDRSTRLEN] = "?";
	int port = 0;

	if (sa->sa_family == AF_INET) {
		uv_ip4_name((const struct sockaddr_in *)sa, host, sizeof(host));
		port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
		snprintf(buf, size, "%s:%d", host, port);
	} else if (sa->sa_family == AF_INET6) {
		uv_ip6_name((const struct sockaddr_in6 *)sa, host, sizeof(host));
		port = ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
		snprintf(buf, size, "[%s]:%d", host, port);
	} else {
		snprintf(buf, size, "?");
	}
}

static void on_connection(uv_stream_t *server, int status)
{
	struct cluster *cl = server->data;
	struct sockaddr_storage ss;
	int len = sizeof(ss);
	struct link *l;

	if (status < 0) {
		log_warn("cluster_accept", "error=%s", uv_err_name(status));
		return;
	}
	l = link_new(cl, 0);
	if (!l)
		return;
	if (uv_accept(server, (uv_stream_t *)&l->tcp) < 0) {
		link_close(l, "accept-failed");
		return;
	}
	if (uv_tcp_getpeername(&l->tcp, (struct sockaddr *)&ss, &len) == 0) {
		addr_string((struct sockaddr *)&ss, l->addr, sizeof(l->addr));
		if (ss.ss_family == AF_INET)
			uv_ip4_name((struct sockaddr_in *)&ss, l->ip, sizeof(l->ip));
		else if (ss.ss_family == AF_INET6)
			uv_ip6_name((struct sockaddr_in6 *)&ss, l->ip, sizeof(l->ip));
	}
	uv_tcp_nodelay(&l->tcp, 1);
	log_debug("cluster_accepted", "link=%llu addr=%s", (unsigned long long)l->id, l->addr);
	if (cl->leaving) {
		link_close(l, "leaving");
		return;
	}
	link_start(l);
}

static void on_connect(uv_connect_t *req, int status)
{
	struct link *l = req->data;

	if (l->state == LINK_CLOSING)
		return;
	if (status < 0) {
		link_close(l, uv_err_name(status));
		return;
	}
	uv_tcp_nodelay(&l->tcp, 1);
	link_start(l);
}

/* ---- targets: discovered addresses and dialing ---- */

uint64_t cluster_backoff_ms(unsigned fails, int ever_up)
{
	uint64_t cap = ever_up ? CLUSTER_BACKOFF_MAX_MS : CLUSTER_BACKOFF_NEVER_UP_MAX_MS;
	uint64_t delay = (uint64_t)CLUSTER_BACKOFF_MIN_MS << (fails < 16 ? fails : 16);

	return delay < cap ? delay : cap;
}

enum log_level cluster_dial_log_level(unsigned fails)
{
	return fails && (fails & (fails - 1)) == 0 ? LOG_INFO : LOG_DEBUG;
}

static void target_schedule(struct target *t, int failed)
{
	struct cluster *cl = t->cl;
	uint64_t delay;

	if (failed) {
		t->settled = 1; /* a failed first attempt does not hold readiness */
		if (t->fails < 1000000000u)
			t->fails++;
	}
	delay = cluster_backoff_ms(t->fails, t->ever_up);
	/* jitter in [-25%, +25%) so that instances do not dial in lockstep */
	delay = delay * 3 / 4 + rng_next(cl) % (delay / 2 + 1);
	t->next_dial = now_ms(cl) + delay;
}

static void target_dial_addr(struct target *t, const struct sockaddr *sa)
{
	struct cluster *cl = t->cl;
	struct link *l = link_new(cl, 1);
	int rc;

	if (!l) {
		target_schedule(t, 1);
		return;
	}
	addr_string(sa, l->addr, sizeof(l->addr));
	l->target = t;
	t->link = l;
	l->connect.data = l;
	rc = uv_tcp_connect(&l->connect, &l->tcp, sa, on_connect);
	if (rc < 0) {
		link_close(l, uv_err_name(rc));
		return;
	}
	log_debug("cluster_dial", "link=%llu addr=%s", (unsigned long long)l->id, t->key);
}

static void target_free(struct cluster *cl, struct target *t)
{
	struct target **pp = &cl->targets;

	while (*pp != t)
		pp = &(*pp)->next;
	*pp = t->next;
	free(t->key);
	free(t->peer_id);
	free(t);
}

static void on_target_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct target *t = req->data;
	struct cluster *cl = t->cl;

	t->resolving = 0;
	if (t->removed || cl->leaving) {
		uv_freeaddrinfo(res);
		if (t->removed && !t->link)
			target_free(cl, t);
		return;
	}
	if (status < 0 || !res) {
		log_warn("cluster_resolve", "addr=%s error=%s", t->key, uv_err_name(status));
		target_schedule(t, 1);
	} else {
		target_dial_addr(t, res->ai_addr);
	}
	uv_freeaddrinfo(res);
}

static void target_dial(struct target *t)
{
	struct cluster *cl = t->cl;
	struct sockaddr_in6 a6;
	struct sockaddr_in a4;
	struct addrinfo hints;
	char port[8];
	int rc;

	/* Not again before the backoff, whatever happens to this attempt. */
	target_schedule(t, 0);
	if (uv_ip4_addr(t->host, t->port, &a4) == 0) {
		target_dial_addr(t, (struct sockaddr *)&a4);
		return;
	}
	if (uv_ip6_addr(t->host, t->port, &a6) == 0) {
		target_dial_addr(t, (struct sockaddr *)&a6);
		return;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	snprintf(port, sizeof(port), "%d", t->port);
	t->gai.data = t;
	rc = uv_getaddrinfo(cl->loop, &t->gai, on_target_resolved, t->host, port, &hints);
	if (rc < 0) {
		log_warn("cluster_resolve", "addr=%s error=%s", t->key, uv_err_name(rc));
		target_schedule(t, 1);
		return;
	}
	t->resolving = 1;
}

/* Whether t needs a dial now: not ourselves, not already linked (by our
 * dial or by the peer's), due. */
static int target_wants_dial(struct cluster *cl, struct target *t, uint64_t now)
{
	if (t->removed || t->self || t->link || t->resolving || now < t->next_dial)
		return 0;
	if (t->peer_id && find_up_link(cl, t->peer_id, NULL))
		return 0;
	return 1;
}

static void targets_sync(struct cluster *cl, unsigned src, char **keys, size_t n)
{
	struct target *t, *tn;
	char host[256];
	size_t i;
	int port, listen_port = 0;

	cluster_hostport_parse(cl->listen, 0, host, sizeof(host), &listen_port);
	for (t = cl->targets; t; t = t->next)
		t->sources &= ~src;
	for (i = 0; i < n; i++) {
		if (strcmp(keys[i], cl->listen) == 0)
			continue; /* ourselves, by the very address we listen on */
		for (t = cl->targets; t; t = t->next)
			if (strcmp(t->key, keys[i]) == 0)
				break;
		if (t) {
			t->sources |= src;
			if (t->removed) {
				t->removed = 0;
				t->self = 0;
			}
			continue;
		}
		if (cluster_hostport_parse(keys[i], listen_port, host, sizeof(host), &port) < 0) {
			log_warn("cluster_peer_invalid", "addr=%s", keys[i]);
			continue;
		}
		t = calloc(1, sizeof(*t));
		if (t)
			t->key = strdup(keys[i]);
		if (!t || !t->key) {
			free(t);
			continue;
		}
		t->cl = cl;
		strcpy(t->host, host);
		t->port = port;
		t->sources = src;
		t->next_dial = now_ms(cl);
		t->next = cl->targets;
		cl->targets = t;
		log_info("cluster_peer_added", "addr=%s", t->key);
	}
	for (t = cl->targets; t; t = tn) {
		tn = t->next;
		if (t->sources || t->removed)
			continue;
		log_info("cluster_peer_removed", "addr=%s", t->key);
		/* An established link stays until it fails or the peer leaves:
		 * its sessions are still reachable. */
		t->removed = 1;
		if (t->link) {
			t->link->target = NULL;
			t->link = NULL;
		}
		if (!t->resolving)
			target_free(cl, t);
	}
}

/* ---- discovery: peers file ---- */

static void peers_file_poll(struct cluster *cl)
{
	char **keys = NULL, *data = NULL, *line, *save = NULL;
	size_t n = 0, cap = 0;
	struct stat st;
	ssize_t r;
	int fd;

	if (stat(cl->peers_file, &st) < 0) {
		if (cl->pf_seen != -1)
			log_warn("cluster_peers_file", "path=%s error=\"%s\"", cl->peers_file,
				 strerror(errno));
		cl->pf_seen = -1;
		return;
	}
	if (cl->pf_seen == 1 && st.st_mtim.tv_sec == cl->pf_st.st_mtim.tv_sec &&
	    st.st_mtim.tv_nsec == cl->pf_st.st_mtim.tv_nsec && st.st_size == cl->pf_st.st_size &&
	    st.st_ino == cl->pf_st.st_ino)
		return;
	fd = open(cl->peers_file, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	data = malloc(PEERS_FILE_MAX + 1);
	if (!data)
		goto out;
	r = read(fd, data, PEERS_FILE_MAX);
	if (r < 0)
		goto out;
	data[r] = '\0';
	for (line = strtok_r(data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *e;

		while (*line == ' ' || *line == '\t')
			line++;
		e = line + strlen(line);
		while (e > line && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
			*--e = '\0';
		if (!*line || *line == '#')
			continue;
		if (n == cap) {
			char **k = realloc(keys, (cap ? cap * 2 : 16) * sizeof(*keys));

			if (!k)
				goto out;
			keys = k;
			cap = cap ? cap * 2 : 16;
		}
		keys[n++] = line;
	}
	cl->pf_st = st;
	cl->pf_seen = 1;
	log_info("cluster_peers_file", "path=%s peers=%zu", cl->peers_file, n);
	targets_sync(cl, SRC_FILE, keys, n);
out:
	free(keys);
	free(data);
	close(fd);
}

/* ---- discovery: DNS ---- */

static void on_dns(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct cluster *cl = req->data;
	char **keys = NULL, addr[ADDR_MAX];
	struct addrinfo *ai;
	size_t n = 0, i, cap = 0;

	cl->dns_busy = 0;
	cl->dns_done = 1;
	if (cl->leaving) {
		uv_freeaddrinfo(res);
		return;
	}
	if (status < 0) {
		log_warn("cluster_dns", "name=%s error=%s", cl->dns_name, uv_err_name(status));
		uv_freeaddrinfo(res);
		return; /* keep the last good set: DNS hiccups must not drop links */
	}
	for (ai = res; ai; ai = ai->ai_next) {
		struct sockaddr_storage ss;

		if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
			continue;
		memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
		if (ai->ai_family == AF_INET)
			((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)cl->dns_port);
		else
			((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)cl->dns_port);
		addr_string((struct sockaddr *)&ss, addr, sizeof(addr));
		for (i = 0; i < n; i++)
			if (strcmp(keys[i], addr) == 0)
				break;
		if (i < n)
			continue;
		if (n == cap) {
			char **k = realloc(keys, (cap ? cap * 2 : 8) * sizeof(*keys));

			if (!k)
				break;
			keys = k;
			cap = cap ? cap * 2 : 8;
		}
		keys[n] = strdup(addr);
		if (!keys[n])
			break;
		n++;
	}
	uv_freeaddrinfo(res);
	log_debug("cluster_dns", "name=%s addresses=%zu", cl->dns_name, n);
	targets_sync(cl, SRC_DNS, keys, n);
	free_list(keys, n);
}

static void dns_resolve(struct cluster *cl)
{
	struct addrinfo hints;
	int rc;

	if (cl->dns_busy)
		return;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	cl->dns_req.data = cl;
	rc = uv_getaddrinfo(cl->loop, &cl->dns_req, on_dns, cl->dns_name, NULL, &hints);
	if (rc < 0) {
		log_warn("cluster_dns", "name=%s error=%s", cl->dns_name, uv_err_name(rc));
		return;
	}
	cl->dns_busy = 1;
	cl->dns_last = now_ms(cl);
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
				link_close(l, "retired");
			else if (l->dialer)
				link_close(l, "handshake-timeout");
			else
				link_refuse(l, "handshake-timeout");
			continue;
		}
		if (now - l->last_rx >= cl->keepalive_ms) {
			link_close(l, "keepalive-timeout");
			continue;
		}
		if (now - l->last_tx >= ping_every) {
			cluster_buf_reset(&cl->obuf);
			if (cluster_enc_ping(&cl->obuf, CLUSTER_MSG_PING, now) == 0)
				link_flush_obuf(l);
		}
	}
	if (cl->peers_file && now >= cl->pf_next) {
		cl->pf_next = now + 1000;
		peers_file_poll(cl);
	}
	if (cl->dns_name && now >= cl->dns_next) {
		cl->dns_next = now + cl->dns_interval_ms;
		dns_resolve(cl);
	}
	for (t = cl->targets; t; t = t->next)
		if (target_wants_dial(cl, t, now))
			target_dial(t);
}

static void on_handle_closed(uv_handle_t *h)
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
	char host[256];
	uint64_t period;
	int port, rc;

	if (cl->started)
		return -EALREADY;
	listen_addr_parse(cl->listen, host, sizeof(host), &port);
	if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) < 0 &&
	    uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) < 0) {
		log_error("cluster_listen", "addr=%s error=\"not a numeric address\"", cl->listen);
		return -EINVAL;
	}
	rc = uv_tcp_init(cl->loop, &cl->listener);
	if (rc < 0)
		return rc;
	cl->handles++;
	cl->listener.data = cl;
	cl->listening = 1;
	rc = uv_tcp_bind(&cl->listener, (struct sockaddr *)&ss, 0);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&cl->listener, 128, on_connection);
	if (rc < 0) {
		log_error("cluster_listen", "addr=%s error=%s", cl->listen, uv_err_name(rc));
		goto fail_listener;
	}
	if (port == 0) {
		/* The kernel picked the port: peers must learn the real one. */
		char *bound;
		size_t n = strlen(host) + 16;
		int len = (int)sizeof(ss);

		rc = uv_tcp_getsockname(&cl->listener, (struct sockaddr *)&ss, &len);
		bound = malloc(n);
		if (rc < 0 || !bound) {
			free(bound);
			rc = rc < 0 ? rc : -ENOMEM;
			goto fail_listener;
		}
		port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
						      : ((struct sockaddr_in *)&ss)->sin_port);
		snprintf(bound, n, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
		free(cl->listen);
		cl->listen = bound;
		cl->listen_port = (uint16_t)port;
	}
	rc = uv_timer_init(cl->loop, &cl->tick);
	if (rc < 0)
		goto fail_listener;
	cl->handles++;
	cl->tick.data = cl;
	cl->started = 1;
	cl->started_at = now_ms(cl);
	targets_sync(cl, SRC_STATIC, cl->static_peers, cl->nstatic);
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
	uv_close((uv_handle_t *)&cl->listener, on_handle_closed);
	return rc;
}

static void on_leave_shutdown(uv_shutdown_t *req, int status)
{
	struct link *l = req->data;

	if (!uv_is_closing((uv_handle_t *)&l->tcp))
		uv_close((uv_handle_t *)&l->tcp, on_link_closed);
}

/* A peer that does not read would hold the shutdown, and the process,
 * forever: whatever has not flushed after LEAVE_GRACE_MS is closed. */
static void on_leave_timeout(uv_timer_t *timer)
{
	struct cluster *cl = timer->data;
	struct link *l;

	for (l = cl->links; l; l = l->next)
		if (!uv_is_closing((uv_handle_t *)&l->tcp))
			uv_close((uv_handle_t *)&l->tcp, on_link_closed);
	leave_done(cl);
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
		uv_close((uv_handle_t *)&cl->listener, on_handle_closed);
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
				link_flush_obuf(l);
		}
		if (l->state == LINK_CLOSING)
			continue; /* closed by a failed write, or already closing */
		/* Let the queued frames and LEAVING reach the peer: shut the
		 * write side down, close when that is done. The link stays
		 * listed until its close callback. */
		if (up) {
			cl->st.peers--;
			link_drop_routes(l);
		}
		l->state = LINK_CLOSING;
		if (l->target) {
			l->target->link = NULL;
			l->target = NULL;
		}
		l->shutdown.data = l;
		if (!up || uv_shutdown(&l->shutdown, (uv_stream_t *)&l->tcp, on_leave_shutdown) < 0)
			uv_close((uv_handle_t *)&l->tcp, on_link_closed);
	}
	if (cl->started) {
		uv_timer_stop(&cl->tick);
		if (cl->links)
			uv_timer_start(&cl->tick, on_leave_timeout, LEAVE_GRACE_MS, 0);
		else
			leave_done(cl);
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
	return snprintf(buf, size,
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
			"chatd_cluster_refused_total %llu\n",
			(unsigned long long)s.peers, (unsigned long long)s.routes,
			(unsigned long long)s.local_routes, (unsigned long long)s.forwarded,
			(unsigned long long)s.received, (unsigned long long)s.link_failures,
			(unsigned long long)s.refused);
}
