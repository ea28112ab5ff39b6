/*
 * A real chatd server context for the unit tests of server/conn.c,
 * server/session.c and server/sasl.c: srv_init() listening on 127.0.0.1
 * port 0 with a given command line, clients on loopback TCP written and
 * read by hand, and the loop run without blocking in between, so a test
 * sees exactly what chatd wrote and can look into struct conn and the
 * metrics after each step.
 *
 * Included by one test file each: the functions are static (and may go
 * unused in one of them).
 */
#ifndef TESTS_CHATD_FIX_H
#define TESTS_CHATD_FIX_H

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <uv.h>

#include "../../server/config.h"
#include "../../server/conn.h"
#include "../../server/srv.h"
#include "tlsbio.h"
#include "unconst.h"
#include "xmppns.h"

#define FIX_FN static __attribute__((unused))

#define FIX_DOMAIN "example.test"
/* How long a wait may take before the test gives up (a failure, never a
 * measurement: nothing asserts on how long anything took). */
#define FIX_GIVE_UP_MS 5000
#define FIX_HEADER                                                   \
	"<?xml version='1.0'?><stream:stream xmlns='jabber:client' " \
	"xmlns:stream='http://etherx.jabber.org/streams' to='" FIX_DOMAIN "' version='1.0'>"

/* A client: the test's end of one connection. */
struct cli {
	int fd;
	char *buf; /* what was received and not yet taken (NUL-terminated) */
	size_t len, cap;
	size_t total;	/* bytes received in all */
	int eof;	/* the server closed its side (FIN, or reset: see reset) */
	int reset;	/* ECONNRESET */
	struct conn *c; /* the server's side; valid until the conn is freed */
};

struct fix {
	uv_loop_t loop;
	struct config cfg;
	struct srv srv;
	int port;
	int started;	     /* srv_init() succeeded: fix_stop() has work */
	struct cli *open[8]; /* clients not closed yet (a failed test's too) */
};

/* Large (the server's shared buffers): not on the stack. */
static struct fix fix;

/* Starts chatd with its defaults, then these flags (NULL-terminated). */
FIX_FN void fix_start(const char *const *flags)
{
	const char *base[] = { "chatd",		  "--listen", "127.0.0.1:0", "--domain",
			       FIX_DOMAIN,	  "--http=",  "--log-level", "error",
			       "--ping-interval", "0" };
	char *argv[64];
	int argc = 0;
	struct sockaddr_in sin;
	int len = sizeof(sin);

	memset(&fix, 0, sizeof(fix));
	for (size_t i = 0; i < sizeof(base) / sizeof(base[0]); i++)
		argv[argc++] = unconst(base[i]);
	for (; flags && *flags; flags++) {
		assert_true(argc < 63);
		argv[argc++] = unconst(*flags);
	}
	argv[argc] = NULL;
	assert_int_equal(config_load(&fix.cfg, argc, argv), 0);
	log_init("chatd", fix.cfg.log_level);
	assert_int_equal(uv_loop_init(&fix.loop), 0);
	assert_int_equal(srv_init(&fix.srv, &fix.loop, &fix.cfg), 0);
	fix.started = 1;
	assert_int_equal(uv_tcp_getsockname(&fix.srv.listener, (struct sockaddr *)&sin, &len), 0);
	fix.port = ntohs(sin.sin_port);
}

/* Shuts the server down (clients should be closed first) and checks that
 * nothing of it is left on the loop. */
FIX_FN void fix_stop(void)
{
	if (!fix.started)
		return;
	fix.started = 0;
	for (int i = 0; i < 8; i++) {
		if (!fix.open[i])
			continue;
		close(fix.open[i]->fd);
		free(fix.open[i]->buf);
		free(fix.open[i]);
		fix.open[i] = NULL;
	}
	srv_shutdown(&fix.srv);
	uv_run(&fix.loop, UV_RUN_DEFAULT);
	assert_null(fix.srv.conns);
	srv_free(&fix.srv);
	assert_int_equal(uv_loop_close(&fix.loop), 0);
}

FIX_FN uint64_t fix_ms(void)
{
	return uv_hrtime() / 1000000u;
}

/* Reads what is there now; returns the bytes read. */
FIX_FN size_t cli_read(struct cli *cl)
{
	size_t got = 0;

	while (!cl->eof) {
		if (cl->cap - cl->len < 4097) {
			cl->cap = cl->cap ? cl->cap * 2 : 65536;
			cl->buf = realloc(cl->buf, cl->cap);
			assert_non_null(cl->buf);
		}
		ssize_t n = recv(cl->fd, cl->buf + cl->len, cl->cap - cl->len - 1, MSG_DONTWAIT);
		if (n > 0) {
			cl->len += (size_t)n;
			cl->total += (size_t)n;
			got += (size_t)n;
			continue;
		}
		if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
			cl->reset = n < 0 && errno == ECONNRESET;
			cl->eof = 1;
		}
		if (n < 0 && errno == EINTR)
			continue;
		break;
	}
	if (cl->buf)
		cl->buf[cl->len] = '\0';
	return got;
}

/* One loop iteration of the server, without blocking, then the client's
 * input; with wait, first up to 10 ms for something to happen. */
FIX_FN void fix_step(struct cli *cl, int wait)
{
	if (wait) {
		struct pollfd p[2] = { { uv_backend_fd(&fix.loop), POLLIN, 0 },
				       { cl && !cl->eof ? cl->fd : -1, POLLIN, 0 } };
		int t = uv_backend_timeout(&fix.loop);

		poll(p, 2, t < 0 || t > 10 ? 10 : t);
	}
	uv_run(&fix.loop, UV_RUN_NOWAIT);
	if (cl)
		cli_read(cl);
}

/* Runs the loop until done(cl, arg) holds; 0 when it never did. */
FIX_FN int fix_until(struct cli *cl, int (*done)(struct cli *, const void *), const void *arg)
{
	uint64_t end = fix_ms() + FIX_GIVE_UP_MS;

	fix_step(cl, 0);
	while (!done(cl, arg)) {
		if (fix_ms() > end)
			return 0;
		fix_step(cl, 1);
	}
	return 1;
}

FIX_FN int has_text(struct cli *cl, const void *needle)
{
	return cl->buf && strstr(cl->buf, needle) != NULL;
}

FIX_FN int at_eof(struct cli *cl, const void *unused)
{
	return cl->eof;
}

/* Waits until the input holds needle; 0 when it never came. */
FIX_FN int cli_wait(struct cli *cl, const char *needle)
{
	return fix_until(cl, has_text, needle);
}

/* Waits until the server closed its side; 0 when it never did. */
FIX_FN int cli_wait_eof(struct cli *cl)
{
	return fix_until(cl, at_eof, NULL);
}

/* The input so far, as a string, and forgets it (the next read starts
 * empty). The string stays valid until the next read. */
FIX_FN const char *cli_take(struct cli *cl)
{
	static char *last;

	free(last);
	last = strdup(cl->buf ? cl->buf : "");
	assert_non_null(last);
	cl->len = 0;
	if (cl->buf)
		cl->buf[0] = '\0';
	return last;
}

FIX_FN int accepted(struct cli *cl, const void *count)
{
	return fix.srv.metrics.accepted_total >= *(const uint64_t *)count;
}

/* Connects a client (rcvbuf > 0: its receive buffer, before connecting)
 * and runs the loop until chatd has accepted it. */
FIX_FN struct cli *cli_open_buf(int rcvbuf)
{
	struct cli *cl = calloc(1, sizeof(*cl));
	struct sockaddr_in sin = { 0 };
	uint64_t want = fix.srv.metrics.accepted_total + 1;

	assert_non_null(cl);
	cl->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(cl->fd >= 0);
	if (rcvbuf > 0)
		assert_int_equal(setsockopt(cl->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)),
				 0);
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)fix.port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(cl->fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(fcntl(cl->fd, F_SETFL, fcntl(cl->fd, F_GETFL) | O_NONBLOCK), 0);
	assert_true(fix_until(cl, accepted, &want));
	cl->c = fix.srv.conns; /* the newest is first */
	assert_non_null(cl->c);
	for (int i = 0; i < 8; i++) {
		if (!fix.open[i]) {
			fix.open[i] = cl;
			return cl;
		}
	}
	fail_msg("more than 8 clients open");
	return cl;
}

FIX_FN struct cli *cli_open(void)
{
	return cli_open_buf(0);
}

/* Writes all of data (running the loop while the socket is full). */
FIX_FN void cli_send_n(struct cli *cl, const char *data, size_t len)
{
	uint64_t end = fix_ms() + FIX_GIVE_UP_MS;

	while (len > 0) {
		ssize_t n = send(cl->fd, data, len, MSG_NOSIGNAL);

		if (n > 0) {
			data += n;
			len -= (size_t)n;
			continue;
		}
		assert_true(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
		assert_true(fix_ms() < end);
		fix_step(cl, 1);
	}
}

FIX_FN void cli_send(struct cli *cl, const char *s)
{
	cli_send_n(cl, s, strlen(s));
}

FIX_FN int conn_gone(struct cli *cl, const void *c)
{
	for (struct conn *x = fix.srv.conns; x; x = x->next)
		if (x == c)
			return 0;
	return 1;
}

/* Runs the loop until the server freed the connection; 0 when it never
 * did. */
FIX_FN int fix_wait_freed(struct cli *cl)
{
	return fix_until(cl, conn_gone, cl->c);
}

/* Closes the client and waits until the server freed its side. */
FIX_FN void cli_close(struct cli *cl)
{
	struct conn *c = cl->c;
	int fd = cl->fd;

	for (int i = 0; i < 8; i++)
		if (fix.open[i] == cl)
			fix.open[i] = NULL;
	close(fd);
	cl->fd = -1;
	cl->eof = 1;
	assert_true(fix_until(cl, conn_gone, c));
	free(cl->buf);
	free(cl);
}

/* Occurrences of needle in s. */
FIX_FN int count_of(const char *s, const char *needle)
{
	int n = 0;

	for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

/* The sum of every close reason's counter. */
FIX_FN uint64_t fix_closed_total(void)
{
	uint64_t n = 0;

	for (int r = 0; r < CLOSE_REASON_COUNT; r++)
		n += fix.srv.metrics.closed_total[r];
	return n;
}

/* A self-signed P-256 certificate for FIX_DOMAIN into cert and key (PEM
 * files); 0 or -1. */
FIX_FN int fix_make_cert(const char *cert, const char *key)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	int ok = k && x;
	FILE *f;

	if (ok) {
		ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
		X509_gmtime_adj(X509_getm_notBefore(x), -3600);
		X509_gmtime_adj(X509_getm_notAfter(x), 3600L * 24);
		X509_set_pubkey(x, k);
		X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
					   (const unsigned char *)FIX_DOMAIN, -1, -1, 0);
		X509_set_issuer_name(x, X509_get_subject_name(x));
		ok = X509_sign(x, k, EVP_sha256()) > 0;
	}
	if (ok) {
		f = fopen(cert, "w");
		ok = f && PEM_write_X509(f, x);
		ok = (f && fclose(f) == 0) && ok;
	}
	if (ok) {
		f = fopen(key, "w");
		ok = f && PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
		ok = (f && fclose(f) == 0) && ok;
	}
	X509_free(x);
	EVP_PKEY_free(k);
	return ok ? 0 : -1;
}

/* A TLS client over a fix client: ciphertext on the socket, plaintext
 * received collected in plain. */
struct tcli {
	struct cli *cl;
	struct tlsbio *t;
	char plain[65536];
	size_t len;
	int closed; /* the server's close_notify came */
};

FIX_FN void tls_flush(struct tcli *tc)
{
	size_t n;
	void *p;

	while ((p = tlsbio_steal_out(tc->t, &n))) {
		cli_send_n(tc->cl, p, n);
		free(p);
	}
}

struct tls_want {
	struct tcli *tc;
	const char *needle; /* NULL: the handshake's end */
};

/* Moves ciphertext in, plaintext out; 1 when needle is in plain. */
FIX_FN int tls_has(struct cli *cl, const void *arg)
{
	const struct tls_want *w = arg;
	struct tcli *tc = w->tc;
	const char *needle = w->needle;
	long r;

	if (cl->len) {
		assert_int_equal(tlsbio_feed(tc->t, cl->buf, cl->len), 0);
		cl->len = 0;
	}
	if (!tlsbio_handshake_done(tc->t))
		assert_true(tlsbio_handshake(tc->t) >= 0);
	while ((r = tlsbio_read(tc->t, tc->plain + tc->len, sizeof(tc->plain) - 1 - tc->len)) > 0)
		tc->len += (size_t)r;
	assert_true(r == 0 || r == TLSBIO_ERR_CLOSED);
	tc->closed |= r == TLSBIO_ERR_CLOSED;
	tc->plain[tc->len] = '\0';
	tls_flush(tc);
	return needle ? strstr(tc->plain, needle) != NULL : tlsbio_handshake_done(tc->t);
}

/* Runs until needle came over TLS (NULL: until the handshake is done). */
FIX_FN int tls_wait(struct tcli *tc, const char *needle)
{
	const struct tls_want w = { tc, needle };

	return fix_until(tc->cl, tls_has, &w);
}

FIX_FN void tls_send(struct tcli *tc, const char *s)
{
	assert_int_equal(tlsbio_write(tc->t, s, strlen(s)), 0);
	tls_flush(tc);
}

/* The plaintext received so far, and forgets it. */
FIX_FN const char *tls_take(struct tcli *tc)
{
	static char out[65536];

	memcpy(out, tc->plain, tc->len + 1);
	tc->len = 0;
	tc->plain[0] = '\0';
	return out;
}

/* Starts TLS on tc->cl (after <proceed/>) and runs the handshake. */
FIX_FN void tcli_start(struct tcli *tc)
{
	char err[256];
	SSL_CTX *ctx = tlsbio_client_ctx_new(0, NULL, err, sizeof(err));

	assert_non_null(ctx);
	tc->t = tlsbio_new(ctx, TLSBIO_CLIENT, FIX_DOMAIN);
	SSL_CTX_free(ctx);
	assert_non_null(tc->t);
	assert_true(tls_wait(tc, NULL));
}

#endif
