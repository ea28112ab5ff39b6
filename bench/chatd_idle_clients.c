/*
 * chatd_idle_clients: the client side of bench/chatd_idle.py.
 *
 * Login mode (default): opens --count XMPP sessions against chatd (stream,
 * optional STARTTLS, SASL PLAIN, bind, session, initial presence: a login is
 * done when the server echoed our presence back, RFC 6121 4.2.2), at most
 * --concurrency logins in
 * flight, spread over the --source loopback addresses, and prints one JSON
 * line with the number of sessions and the login rate. With --hold the
 * sessions then stay open, idle, until stdin reaches EOF.
 *
 * RTT mode (--rtt N): two sessions; A sends a message to B, B echoes it, A
 * measures the round trip, N times in a row; prints p50/p99/mean in
 * microseconds.
 *
 * Sockets are non-blocking under one epoll; the server's stream is parsed by
 * the project's xstream layer. Writes are a few hundred bytes into an empty
 * socket buffer, so a short write is counted as a failed session rather than
 * queued. Every run is bounded by --timeout.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "b64.h"
#include "unconst.h"
#include "xml.h"
#include "xstream.h"

#define IC_NS_SASL "urn:ietf:params:xml:ns:xmpp-sasl"
#define IC_NS_TLS "urn:ietf:params:xml:ns:xmpp-tls"
#define IC_NS_BIND "urn:ietf:params:xml:ns:xmpp-bind"
#define IC_NS_SESSION "urn:ietf:params:xml:ns:xmpp-session"
#define IC_MAX_SOURCES 16

enum ic_state {
	IC_CONNECT,
	IC_FEATURES, /* first features */
	IC_PROCEED,  /* <starttls/> sent */
	IC_HANDSHAKE,
	IC_FEATURES_TLS, /* features of the TLS stream */
	IC_AUTH,
	IC_FEATURES_AUTH, /* features after the SASL restart */
	IC_BIND,
	IC_SESSION,  /* session request sent */
	IC_PRESENCE, /* initial presence sent: waiting for its echo */
	IC_IDLE,
	IC_DEAD,
};

enum ic_restart { IC_RESTART_NONE, IC_RESTART_TLS, IC_RESTART_SASL };

struct ic;

struct ic_client {
	struct ic *ic;
	int fd;	      /* -1 when closed */
	unsigned idx; /* user name suffix */
	enum ic_state state;
	enum ic_restart restart; /* set by a callback that stopped the parser */
	uint32_t events;	 /* current epoll interest */
	SSL *ssl;		 /* after <proceed/>; owned */
	struct xstream *xs;	 /* freed once idle unless in RTT mode */
	char jid[128];		 /* bound full JID */
};

struct ic {
	int ep;
	int use_tls;  /* --tls: STARTTLS before SASL */
	int starting; /* inside ic_start_next(): no recursion */
	SSL_CTX *tls; /* client context when use_tls */
	struct ic_client *cl;
	unsigned count, next, inflight, concurrency, done, failed;
	struct sockaddr_in dst;
	struct in_addr src[IC_MAX_SOURCES];
	unsigned nsrc;
	const char *domain, *prefix, *password;
	int hold, stdin_open;
	double t0, t_done;
	/* RTT mode */
	unsigned rtt_n, rtt_i;
	double rtt_sent;
	double *rtt;
};

static double ic_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void ic_watch(struct ic_client *c, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = c };

	if (c->events == events)
		return;
	epoll_ctl(c->ic->ep, c->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd, &ev);
	c->events = events;
}

static void ic_start_next(struct ic *ic);

static void ic_fail(struct ic_client *c, const char *why)
{
	struct ic *ic = c->ic;

	if (c->state == IC_DEAD)
		return;
	if (ic->failed < 5)
		fprintf(stderr, "chatd_idle_clients: session %u failed in state %d: %s\n", c->idx,
			c->state, why);
	if (c->state != IC_IDLE)
		ic->inflight--;
	else
		ic->done--;
	ic->failed++;
	c->state = IC_DEAD;
	if (c->ssl)
		SSL_free(c->ssl);
	c->ssl = NULL;
	if (c->xs)
		xstream_free(c->xs);
	c->xs = NULL;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	if (!ic->starting)
		ic_start_next(ic);
}

static int ic_send(struct ic_client *c, const char *s)
{
	size_t len = strlen(s);
	long n;

	if (c->ssl)
		n = SSL_write(c->ssl, s, (int)len);
	else
		n = write(c->fd, s, len);
	if (n != (long)len) {
		ic_fail(c, "short write");
		return -1;
	}
	return 0;
}

static void ic_send_header(struct ic_client *c)
{
	char buf[512];

	snprintf(buf, sizeof(buf),
		 "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
		 "xmlns:stream='http://etherx.jabber.org/streams' to='%s' version='1.0'>",
		 c->ic->domain);
	ic_send(c, buf);
}

static void ic_send_auth(struct ic_client *c)
{
	struct ic *ic = c->ic;
	char plain[512], b64[1024], buf[1200];
	int n;

	n = snprintf(plain, sizeof(plain), "%c%s%u%c%s", 0, ic->prefix, c->idx, 0, ic->password);
	if (n <= 0 || (size_t)n >= sizeof(plain) ||
	    b64_encode(plain, (size_t)n, b64, sizeof(b64)) < 0) {
		ic_fail(c, "credentials too long");
		return;
	}
	snprintf(buf, sizeof(buf), "<auth xmlns='" IC_NS_SASL "' mechanism='PLAIN'>%s</auth>", b64);
	c->state = IC_AUTH;
	ic_send(c, buf);
}

static void ic_on_open(void *ud, const struct xnode *header, const char *default_ns)
{
}

static void ic_on_close(void *ud)
{
	ic_fail(ud, "server closed the stream");
}

static int ic_is(const struct xnode *n, const char *name, const char *ns)
{
	return n->name && strcmp(n->name, name) == 0 && n->ns && strcmp(n->ns, ns) == 0;
}

static void ic_rtt_message(struct ic_client *c, struct xnode *st)
{
	struct ic *ic = c->ic;
	struct ic_client *a = &ic->cl[0], *b = &ic->cl[1];
	const char *from = xnode_attr(st, "from");
	char buf[512];

	if (!st->name || strcmp(st->name, "message") != 0 || !from)
		return;
	if (c == b) {
		/* echo back to the sender */
		snprintf(buf, sizeof(buf),
			 "<message to='%s' type='chat'><body>echo</body></message>", from);
		ic_send(c, buf);
		return;
	}
	ic->rtt[ic->rtt_i++] = (ic_now() - ic->rtt_sent) * 1e6;
	if (ic->rtt_i < ic->rtt_n) {
		snprintf(buf, sizeof(buf), "<message to='%s' type='chat'><body>%u</body></message>",
			 b->jid, ic->rtt_i);
		ic->rtt_sent = ic_now();
		ic_send(a, buf);
	}
}

static void ic_on_stanza(void *ud, struct xnode *st)
{
	struct ic_client *c = ud;
	struct ic *ic = c->ic;
	struct xnode *bind, *jid;
	char *text;

	switch (c->state) {
	case IC_FEATURES:
		if (ic->tls) {
			c->state = IC_PROCEED;
			ic_send(c, "<starttls xmlns='" IC_NS_TLS "'/>");
		} else {
			ic_send_auth(c);
		}
		break;
	case IC_PROCEED:
		if (!ic_is(st, "proceed", IC_NS_TLS)) {
			ic_fail(c, "starttls refused");
			break;
		}
		c->restart = IC_RESTART_TLS;
		xstream_stop(c->xs);
		break;
	case IC_FEATURES_TLS:
		ic_send_auth(c);
		break;
	case IC_AUTH:
		if (!ic_is(st, "success", IC_NS_SASL)) {
			ic_fail(c, "authentication failed");
			break;
		}
		c->restart = IC_RESTART_SASL;
		xstream_stop(c->xs);
		break;
	case IC_FEATURES_AUTH:
		c->state = IC_BIND;
		ic_send(c, "<iq type='set' id='b1'><bind xmlns='" IC_NS_BIND "'/></iq>");
		break;
	case IC_BIND:
		bind = xnode_child(st, "bind", IC_NS_BIND);
		jid = bind ? xnode_child(bind, "jid", NULL) : NULL;
		text = jid ? xnode_text(jid) : NULL;
		if (!text || !xnode_attr(st, "type") || strcmp(xnode_attr(st, "type"), "result")) {
			free(text);
			ic_fail(c, "bind failed");
			break;
		}
		snprintf(c->jid, sizeof(c->jid), "%s", text);
		free(text);
		c->state = IC_SESSION;
		ic_send(c, "<iq type='set' id='s1'><session xmlns='" IC_NS_SESSION "'/></iq>");
		break;
	case IC_SESSION:
		if (!st->name || strcmp(st->name, "iq") != 0 || !xnode_attr(st, "type") ||
		    strcmp(xnode_attr(st, "type"), "result")) {
			ic_fail(c, "session failed");
			break;
		}
		c->state = IC_PRESENCE;
		ic_send(c, "<presence/>");
		break;
	case IC_PRESENCE:
		if (!st->name || strcmp(st->name, "presence") != 0 || !xnode_attr(st, "from") ||
		    strcmp(xnode_attr(st, "from"), c->jid) != 0)
			break; /* not yet our own presence */
		c->state = IC_IDLE;
		ic->inflight--;
		ic->done++;
		ic_start_next(ic);
		break;
	case IC_IDLE:
		if (ic->rtt_n)
			ic_rtt_message(c, st);
		break;
	default:
		break;
	}
	xnode_free(st);
}

static const struct xstream_cbs ic_cbs = {
	.on_open = ic_on_open,
	.on_stanza = ic_on_stanza,
	.on_close = ic_on_close,
};

static void ic_handshake(struct ic_client *c)
{
	int r = SSL_do_handshake(c->ssl);

	if (r == 1) {
		c->state = IC_FEATURES_TLS;
		ic_watch(c, EPOLLIN);
		ic_send_header(c);
		return;
	}
	switch (SSL_get_error(c->ssl, r)) {
	case SSL_ERROR_WANT_READ:
		ic_watch(c, EPOLLIN);
		break;
	case SSL_ERROR_WANT_WRITE:
		ic_watch(c, EPOLLOUT);
		break;
	default:
		ic_fail(c, "TLS handshake failed");
	}
}

/* Feeds input to the parser, handling the restarts the callbacks asked for. */
static void ic_feed(struct ic_client *c, const char *data, size_t len)
{
	while (len && c->state != IC_DEAD) {
		size_t used = 0;
		int r;

		if (!c->xs)
			return; /* idle session without parser: discard */
		r = xstream_feed(c->xs, data, len, &used);
		if (c->state == IC_DEAD)
			return;
		if (r < 0) {
			ic_fail(c, xstream_strerror(r));
			return;
		}
		if (r == XSTREAM_OK)
			return;
		data += used;
		len -= used;
		xstream_reset(c->xs);
		if (c->restart == IC_RESTART_TLS) {
			/* RFC 6120 5.4.3.3: nothing may follow <proceed/> in plaintext */
			c->restart = IC_RESTART_NONE;
			c->ssl = SSL_new(c->ic->tls);
			if (!c->ssl || !SSL_set_fd(c->ssl, c->fd)) {
				ic_fail(c, "SSL_new");
				return;
			}
			SSL_set_connect_state(c->ssl);
			SSL_ctrl(c->ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
				 unconst(c->ic->domain));
			c->state = IC_HANDSHAKE;
			ic_handshake(c);
			return;
		}
		c->restart = IC_RESTART_NONE;
		c->state = IC_FEATURES_AUTH;
		ic_send_header(c);
	}
}

static void ic_readable(struct ic_client *c)
{
	char buf[16384];
	long n;

	if (c->state == IC_HANDSHAKE) {
		ic_handshake(c);
		return;
	}
	for (;;) {
		if (c->ssl) {
			n = SSL_read(c->ssl, buf, sizeof(buf));
			if (n <= 0) {
				int e = SSL_get_error(c->ssl, (int)n);

				if (e == SSL_ERROR_WANT_READ)
					return;
				ic_fail(c, e == SSL_ERROR_ZERO_RETURN ? "TLS closed" : "TLS read");
				return;
			}
		} else {
			n = read(c->fd, buf, sizeof(buf));
			if (n < 0 && (errno == EAGAIN || errno == EINTR))
				return;
			if (n <= 0) {
				ic_fail(c, n == 0 ? "EOF" : strerror(errno));
				return;
			}
		}
		ic_feed(c, buf, (size_t)n);
		/* After <proceed/> the handshake is driven by ic_handshake() alone:
		 * an SSL_read() here would complete it unseen, and the stream
		 * header would never be sent (a login hung when the server's
		 * flight arrived that quickly). */
		if (c->state == IC_DEAD || c->state == IC_HANDSHAKE)
			return;
		if (c->state == IC_IDLE && !c->ic->rtt_n && c->xs) {
			xstream_free(c->xs);
			c->xs = NULL;
		}
	}
}

static void ic_writable(struct ic_client *c)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (c->state == IC_HANDSHAKE) {
		ic_handshake(c);
		return;
	}
	if (c->state != IC_CONNECT)
		return;
	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
		ic_fail(c, strerror(err ? err : errno));
		return;
	}
	c->state = IC_FEATURES;
	ic_watch(c, EPOLLIN);
	ic_send_header(c);
}

static void ic_start_next(struct ic *ic)
{
	ic->starting = 1;
	while (ic->inflight < ic->concurrency && ic->next < ic->count) {
		struct ic_client *c = &ic->cl[ic->next];
		struct sockaddr_in src = { .sin_family = AF_INET };
		int one = 1;

		c->ic = ic;
		c->idx = ic->next++;
		c->state = IC_CONNECT;
		c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		ic->inflight++;
		if (c->fd < 0) {
			ic_fail(c, strerror(errno));
			continue;
		}
		c->xs = xstream_new(NULL, &ic_cbs, c);
		if (!c->xs) {
			ic_fail(c, "xstream_new");
			continue;
		}
		if (ic->nsrc) {
			/* many sources: defer the port choice to connect() */
			setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
			src.sin_addr = ic->src[c->idx % ic->nsrc];
			if (bind(c->fd, (struct sockaddr *)&src, sizeof(src)) < 0) {
				ic_fail(c, strerror(errno));
				continue;
			}
		}
		if (connect(c->fd, (struct sockaddr *)&ic->dst, sizeof(ic->dst)) < 0 &&
		    errno != EINPROGRESS) {
			ic_fail(c, strerror(errno));
			continue;
		}
		ic_watch(c, EPOLLOUT);
	}
	ic->starting = 0;
	if (ic->inflight == 0 && ic->next == ic->count && ic->t_done == 0)
		ic->t_done = ic_now();
}

static int ic_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void ic_usage(void)
{
	fprintf(stderr,
		"usage: chatd_idle_clients --port N [--host A] [--count N] [--concurrency K]\n"
		"       [--source A,B,...] [--tls] [--domain D] [--prefix P] [--password PW]\n"
		"       [--hold] [--rtt N] [--timeout S]\n");
}

int main(int argc, char **argv)
{
	struct ic ic = { .ep = -1,
			 .concurrency = 64,
			 .count = 1,
			 .domain = "example.test",
			 .prefix = "idle",
			 .password = "pw" };
	const char *host = "127.0.0.1";
	char *sources = NULL;
	double timeout = 600, deadline;
	unsigned port = 0, i;
	int rc = 1;

	for (i = 1; i < (unsigned)argc; i++) {
		const char *o = argv[i], *v = i + 1 < (unsigned)argc ? argv[i + 1] : NULL;

		if (strcmp(o, "--tls") == 0) {
			ic.use_tls = 1;
			continue;
		}
		if (strcmp(o, "--hold") == 0) {
			ic.hold = 1;
			continue;
		}
		if (!v) {
			ic_usage();
			return 2;
		}
		i++;
		if (strcmp(o, "--port") == 0)
			port = (unsigned)strtoul(v, NULL, 10);
		else if (strcmp(o, "--host") == 0)
			host = v;
		else if (strcmp(o, "--count") == 0)
			ic.count = (unsigned)strtoul(v, NULL, 10);
		else if (strcmp(o, "--concurrency") == 0)
			ic.concurrency = (unsigned)strtoul(v, NULL, 10);
		else if (strcmp(o, "--source") == 0)
			sources = strdup(v);
		else if (strcmp(o, "--domain") == 0)
			ic.domain = v;
		else if (strcmp(o, "--prefix") == 0)
			ic.prefix = v;
		else if (strcmp(o, "--password") == 0)
			ic.password = v;
		else if (strcmp(o, "--rtt") == 0)
			ic.rtt_n = (unsigned)strtoul(v, NULL, 10);
		else if (strcmp(o, "--timeout") == 0)
			timeout = strtod(v, NULL);
		else {
			ic_usage();
			return 2;
		}
	}
	if (!port || port > 65535 || !ic.count || !ic.concurrency) {
		ic_usage();
		free(sources);
		return 2;
	}
	if (ic.rtt_n) {
		ic.count = 2;
		ic.rtt = calloc(ic.rtt_n, sizeof(*ic.rtt));
	}
	ic.dst.sin_family = AF_INET;
	ic.dst.sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host, &ic.dst.sin_addr) != 1) {
		ic_usage();
		goto out;
	}
	if (sources) {
		char *save = NULL, *tok;

		for (tok = strtok_r(sources, ",", &save); tok && ic.nsrc < IC_MAX_SOURCES;
		     tok = strtok_r(NULL, ",", &save))
			if (inet_pton(AF_INET, tok, &ic.src[ic.nsrc]) == 1)
				ic.nsrc++;
	}
	if (ic.use_tls) {
		/* a benchmark of the server: the certificate is not checked */
		ic.tls = SSL_CTX_new(TLS_client_method());
		if (!ic.tls)
			goto out;
		SSL_CTX_set_verify(ic.tls, SSL_VERIFY_NONE, NULL);
		SSL_CTX_set_mode(ic.tls, SSL_MODE_RELEASE_BUFFERS);
	}
	ic.cl = calloc(ic.count, sizeof(*ic.cl));
	ic.ep = epoll_create1(EPOLL_CLOEXEC);
	if (!ic.cl || ic.ep < 0 || (ic.rtt_n && !ic.rtt))
		goto out;
	for (i = 0; i < ic.count; i++)
		ic.cl[i].fd = -1;

	ic.t0 = ic_now();
	deadline = ic.t0 + timeout;
	ic_start_next(&ic);
	while (ic.t_done == 0 && ic_now() < deadline) {
		struct epoll_event evs[256];
		int n = epoll_wait(ic.ep, evs, 256, 100), k;

		for (k = 0; k < n; k++) {
			struct ic_client *c = evs[k].data.ptr;

			if (c->state == IC_DEAD)
				continue;
			if (evs[k].events & EPOLLOUT)
				ic_writable(c);
			if (c->state != IC_DEAD &&
			    (evs[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
				ic_readable(c);
		}
	}
	if (ic.t_done == 0) {
		fprintf(stderr, "chatd_idle_clients: timeout with %u of %u sessions\n", ic.done,
			ic.count);
		ic.t_done = ic_now();
	}

	if (ic.rtt_n && ic.done == 2) {
		char buf[512];

		snprintf(buf, sizeof(buf), "<message to='%s' type='chat'><body>0</body></message>",
			 ic.cl[1].jid);
		ic.rtt_sent = ic_now();
		ic_send(&ic.cl[0], buf);
		while (ic.rtt_i < ic.rtt_n && ic.done == 2 && ic_now() < deadline) {
			struct epoll_event evs[4];
			int n = epoll_wait(ic.ep, evs, 4, 100), k;

			for (k = 0; k < n; k++) {
				struct ic_client *c = evs[k].data.ptr;

				if (c->state != IC_DEAD)
					ic_readable(c);
			}
		}
		if (ic.rtt_i == ic.rtt_n) {
			double sum = 0;

			for (i = 0; i < ic.rtt_n; i++)
				sum += ic.rtt[i];
			qsort(ic.rtt, ic.rtt_n, sizeof(double), ic_cmp_double);
			printf("{\"rtt_n\":%u,\"p50_us\":%.1f,\"p99_us\":%.1f,\"mean_us\":%.1f}\n",
			       ic.rtt_n, ic.rtt[ic.rtt_n / 2], ic.rtt[(size_t)(ic.rtt_n * 0.99)],
			       sum / ic.rtt_n);
			rc = 0;
		}
		goto out;
	}

	printf("{\"sessions\":%u,\"failed\":%u,\"seconds\":%.3f,\"logins_per_s\":%.1f}\n", ic.done,
	       ic.failed, ic.t_done - ic.t0,
	       ic.t_done > ic.t0 ? ic.done / (ic.t_done - ic.t0) : 0.0);
	fflush(stdout);
	rc = ic.done == ic.count ? 0 : 1;
	if (ic.hold) {
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };

		/* hold until stdin closes, discarding whatever the server sends */
		epoll_ctl(ic.ep, EPOLL_CTL_ADD, 0, &ev);
		ic.stdin_open = 1;
		while (ic.stdin_open && ic_now() < deadline) {
			struct epoll_event evs[64];
			int n = epoll_wait(ic.ep, evs, 64, 1000), k;

			for (k = 0; k < n; k++) {
				struct ic_client *c = evs[k].data.ptr;
				char buf[256];

				if (!c) {
					if (read(0, buf, sizeof(buf)) <= 0)
						ic.stdin_open = 0;
					continue;
				}
				if (c->state != IC_DEAD)
					ic_readable(c);
			}
		}
	}

out:
	if (ic.cl) {
		for (i = 0; i < ic.count; i++) {
			if (ic.cl[i].ssl)
				SSL_free(ic.cl[i].ssl);
			if (ic.cl[i].xs)
				xstream_free(ic.cl[i].xs);
			if (ic.cl[i].fd >= 0)
				close(ic.cl[i].fd);
		}
	}
	if (ic.tls)
		SSL_CTX_free(ic.tls);
	if (ic.ep >= 0)
		close(ic.ep);
	free(ic.cl);
	free(ic.rtt);
	free(sources);
	return rc;
}
