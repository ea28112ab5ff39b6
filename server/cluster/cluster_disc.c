/*
 * Dial targets and discovery: static peers, the peers file, DNS; per-target
 * backoff and dialing.
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

void cluster__target_schedule(struct target *t, int failed)
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
	struct link *l = cluster__link_new(cl, 1);
	int rc;

	if (!l) {
		cluster__target_schedule(t, 1);
		return;
	}
	cluster__addr_string(sa, l->addr, sizeof(l->addr));
	l->target = t;
	t->link = l;
	l->connect.data = l;
	rc = uv_tcp_connect(&l->connect, &l->tcp, sa, cluster__on_connect);
	if (rc < 0) {
		cluster__link_close(l, uv_err_name(rc));
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
		cluster__target_schedule(t, 1);
	} else {
		target_dial_addr(t, res->ai_addr);
	}
	uv_freeaddrinfo(res);
}

void cluster__target_dial(struct target *t)
{
	struct cluster *cl = t->cl;
	struct sockaddr_in6 a6;
	struct sockaddr_in a4;
	struct addrinfo hints;
	char port[8];
	int rc;

	/* Not again before the backoff, whatever happens to this attempt. */
	cluster__target_schedule(t, 0);
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
		cluster__target_schedule(t, 1);
		return;
	}
	t->resolving = 1;
}

/* Whether t needs a dial now: not ourselves, not already linked (by our
 * dial or by the peer's), due. */
int cluster__target_wants_dial(struct cluster *cl, struct target *t, uint64_t now)
{
	if (t->removed || t->self || t->link || t->resolving || now < t->next_dial)
		return 0;
	if (t->peer_id && cluster__find_up_link(cl, t->peer_id, NULL))
		return 0;
	return 1;
}

void cluster__targets_sync(struct cluster *cl, unsigned src, char **keys, size_t n)
{
	struct target *t, *tn;
	struct addr a;
	size_t i;

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
		if (addr_parse(keys[i], ADDR_NAME | ADDR_PORT_OPTIONAL, cl->listen_port, &a) < 0) {
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
		snprintf(t->host, sizeof(t->host), "%s", a.host);
		t->port = a.port;
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

void cluster__peers_file_poll(struct cluster *cl)
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
	cluster__targets_sync(cl, SRC_FILE, keys, n);
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
		cluster__addr_string((struct sockaddr *)&ss, addr, sizeof(addr));
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
	cluster__targets_sync(cl, SRC_DNS, keys, n);
	cluster__free_list(keys, n);
}

void cluster__dns_resolve(struct cluster *cl)
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
