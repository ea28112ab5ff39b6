/*
 * The data path of one switch process: the public listener, the proxies
 * (client <-> replica), the backends they point at and the route (where
 * new connections go). The leader switch and every follower run one; the
 * leader decides the route, followers are told it.
 *
 * Rules: an established proxy never moves when the route changes; a new
 * connection goes round robin to a backend of the route, and when its
 * upstream connect fails (refused, or no answer within
 * LSW_CONNECT_TIMEOUT_MS) it is retried on another backend of the route
 * (nothing was forwarded yet) and the backend is reported down at once
 * (passive failure detection). With an empty route, or at the descriptor
 * budget, a new connection is refused with a TCP reset right after
 * accept (what kube-proxy's REJECT gives a client: a clear, immediate
 * error, never a connection that hangs).
 *
 * Memory: see common/outq.h; each proxy holds at most about two
 * high-water marks of queued bytes.
 */
#ifndef RAINBOW_LSW_PROXY_H
#define RAINBOW_LSW_PROXY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <uv.h>

#include "addr.h"

#define LSW_ROUTE_MAX 256
#define LSW_READ_SIZE 65536
#define LSW_CONNECT_TIMEOUT_MS 3000
#define LSW_HIGH_WATER_DEFAULT (128 * 1024)

struct lsw_backend {
	struct lsw_backend *next;
	unsigned id; /* given by the leader; stable for the backend's life */
	char sha[48];
	char addr[64]; /* "IP:PORT" / "[v6]:PORT" */
	struct sockaddr_storage sa;
	int ready;     /* new connections may go here (set by the leader) */
	int routed;    /* in the route now */
	int keep;      /* the leader still knows it (a replica, a static backend) */
	long active;   /* proxies connected to it now (this process) */
	long total;    /* proxies ever connected (this process) */
	long failed;   /* upstream connects that failed (this process) */
	long refs;     /* proxies pointing at it, connecting or connected */
	long f_active; /* leader: the followers' last reported sums */
	long f_total, f_failed;
};

struct lsw_dp;
struct lsw_proxy;

/* A backend's upstream connect failed: it should leave the route (leader decides). */
typedef void (*lsw_backend_down_cb)(struct lsw_dp *dp, struct lsw_backend *be, const char *why);

struct lsw_dp {
	uv_loop_t *loop;
	uv_tcp_t listener;
	int listening;
	size_t high_water;
	struct lsw_backend *backends;
	struct lsw_backend *route[LSW_ROUTE_MAX];
	size_t n_route, rr;
	struct lsw_proxy *proxies;
	uv_timer_t sweep; /* connect timeouts, rate-limited log lines */
	int sweep_on;
	lsw_backend_down_cb down_cb;
	void *data;
	/* descriptors: two per proxy, the rest of the limit is reserved */
	long fd_limit;		/* RLIMIT_NOFILE (raised to the hard limit) */
	long reserve;		/* descriptors kept for control, probes, state files */
	long max_proxies;	/* (fd_limit - reserve) / 2 */
	long active;		/* proxies connected */
	long open;		/* proxies holding descriptors (connecting or connected) */
	long accepted;		/* client connections accepted */
	long refused;		/* refused: nothing ready to route to */
	long refused_limit;	/* refused: at the descriptor budget (or accept failed) */
	long failed;		/* upstream connects that failed */
	long retried;		/* connections moved to another backend after a failed connect */
	long log_refused_limit; /* refusals not logged yet (one line a second) */
	uint64_t log_next_ms;
	size_t queued_bytes;	  /* allocated in every proxy's output queues */
	char rbuf[LSW_READ_SIZE]; /* one read buffer for every proxy */
};

/*
 * reserve: descriptors kept out of the proxies' budget (control, probes,
 * ...); at most a quarter of the limit (at least 32) when the limit is small.
 */
void lsw_dp_init(struct lsw_dp *dp, uv_loop_t *loop, size_t high_water, long reserve,
		 lsw_backend_down_cb down_cb, void *data);

/*
 * Listens on sa (fd < 0: a new socket, SO_REUSEPORT when reuseport), or on
 * the already bound socket fd (a follower's, from its leader). 0 or a libuv
 * error.
 */
int lsw_dp_listen(struct lsw_dp *dp, const struct sockaddr *sa, int fd, int reuseport);

/* Stops accepting (established proxies go on). */
void lsw_dp_unlisten(struct lsw_dp *dp);

/* The backend with this id, or a new one (ready, not routed); NULL on OOM. */
struct lsw_backend *lsw_dp_backend(struct lsw_dp *dp, unsigned id, const char *sha,
				   const char *addr, const struct sockaddr_storage *sa);
struct lsw_backend *lsw_dp_backend_find(struct lsw_dp *dp, unsigned id);

/* New connections go to these (ready ones only), round robin. */
void lsw_dp_set_route(struct lsw_dp *dp, struct lsw_backend *const *bes, size_t n);

/* Frees backends nobody keeps, routes or uses. */
void lsw_dp_gc(struct lsw_dp *dp);

/* Closes the listener and every proxy (the loop then ends). */
void lsw_dp_close(struct lsw_dp *dp);

/* Frees the backends once the loop ran the close callbacks. */
void lsw_dp_free(struct lsw_dp *dp);

/* The switch's addresses (listeners, backends): numeric IP:PORT or
 * [V6]:PORT, port 1..65535, into sa; 0 or -EINVAL. */
static inline int lsw_addr(const char *s, struct sockaddr_storage *sa)
{
	struct addr a;
	int rc = addr_parse(s, 0, 0, &a);

	if (rc == 0)
		*sa = a.sa;
	return rc;
}

uint64_t lsw_now_ms(void);

#endif
