/*
 * tls_conn_mem: the heap OpenSSL itself keeps for one idle TLS connection,
 * server side and client side, the floor under chatd's and chatload's RSS
 * per TLS session (bench/chatd_idle.py, phase tls-floor).
 *
 * Makes --count connections in memory with common/tlsbio.c, exactly as
 * chatd (server) and chatload (client) make theirs: the same contexts
 * (SSL_MODE_RELEASE_BUFFERS, no session cache or tickets), a full TLS
 * handshake with the --cert/--key pair, one application record each way.
 * Every allocation OpenSSL makes goes through CRYPTO_set_mem_functions()
 * into a table of live blocks tagged with the side that made it; once all
 * connections are idle, what is still live is each side's cost, printed as
 * one JSON line with the bytes per connection and the five largest
 * allocation sites. Bytes are requested sizes (malloc's own overhead, some
 * 8-16 bytes a block, is not counted).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "tlsbio.h"

#define TM_MAX_BLOCKS (1 << 20)
#define TM_MAX_SITES 512

enum tm_side { TM_OTHER, TM_SERVER, TM_CLIENT };

struct tm_block {
	void *p;
	size_t n;
	const char *file;
	int line;
	int side;
};

/* Open addressing on the block address; a deleted slot keeps p = TM_GONE. */
static struct tm_block *tm_blocks;
static size_t tm_cap = TM_MAX_BLOCKS;
static int tm_side_now = TM_OTHER;
static int tm_overflow;
#define TM_GONE ((void *)1)

static size_t tm_hash(const void *p)
{
	return ((size_t)p >> 4) * 0x9E3779B97F4A7C15ULL % tm_cap;
}

static void tm_add(void *p, size_t n, const char *file, int line)
{
	size_t i = tm_hash(p);

	while (tm_blocks[i].p && tm_blocks[i].p != TM_GONE) {
		i = (i + 1) % tm_cap;
		if (i == tm_hash(p)) {
			tm_overflow = 1;
			return;
		}
	}
	tm_blocks[i] = (struct tm_block){ p, n, file, line, tm_side_now };
}

static void tm_del(void *p)
{
	size_t i = tm_hash(p), start = i;

	while (tm_blocks[i].p) {
		if (tm_blocks[i].p == p) {
			tm_blocks[i].p = TM_GONE;
			return;
		}
		i = (i + 1) % tm_cap;
		if (i == start)
			return;
	}
}

static void *tm_malloc(size_t n, const char *file, int line)
{
	void *p = malloc(n);

	if (p)
		tm_add(p, n, file, line);
	return p;
}

static void *tm_realloc(void *old, size_t n, const char *file, int line)
{
	void *p;

	if (old)
		tm_del(old);
	p = realloc(old, n);
	if (p)
		tm_add(p, n, file, line);
	else if (old && n)
		tm_add(old, 0, file, line); /* still live, size unknown: counted as 0 */
	return p;
}

static void tm_free(void *p, const char *file, int line)
{
	if (p)
		tm_del(p);
	free(p);
}

static void tm_pump(struct tlsbio *from, struct tlsbio *to)
{
	char buf[65536];
	size_t n;

	while ((n = tlsbio_take(from, buf, sizeof(buf))) > 0)
		tlsbio_feed(to, buf, n);
}

struct tm_site {
	const char *file;
	int line;
	size_t bytes;
};

static int tm_site_cmp(const void *a, const void *b)
{
	const struct tm_site *x = a, *y = b;

	return x->bytes < y->bytes ? 1 : x->bytes > y->bytes ? -1 : 0;
}

/* Bytes still live for one side; its largest sites into the JSON line. */
static size_t tm_report(int side, unsigned count, const char *name)
{
	static struct tm_site sites[TM_MAX_SITES];
	unsigned nsites = 0, i, k;
	size_t total = 0;

	for (size_t b = 0; b < tm_cap; b++) {
		struct tm_block *bl = &tm_blocks[b];

		if (!bl->p || bl->p == TM_GONE || bl->side != side)
			continue;
		total += bl->n;
		for (k = 0; k < nsites; k++)
			if (sites[k].line == bl->line && strcmp(sites[k].file, bl->file) == 0)
				break;
		if (k == nsites && nsites < TM_MAX_SITES)
			sites[nsites++] = (struct tm_site){ bl->file, bl->line, 0 };
		if (k < nsites)
			sites[k].bytes += bl->n;
	}
	qsort(sites, nsites, sizeof(sites[0]), tm_site_cmp);
	printf("\"%s_bytes_per_conn\":%.0f,\"%s_top\":[", name, (double)total / count, name);
	for (i = 0; i < nsites && i < 5; i++)
		printf("%s{\"site\":\"%s:%d\",\"bytes_per_conn\":%.0f}", i ? "," : "",
		       strrchr(sites[i].file, '/') ? strrchr(sites[i].file, '/') + 1
						   : sites[i].file,
		       sites[i].line, (double)sites[i].bytes / count);
	printf("]");
	return total;
}

int main(int argc, char **argv)
{
	const char *cert = NULL, *key = NULL;
	unsigned count = 200, i;
	struct tlsbio **s, **c;
	SSL_CTX *sctx, *cctx;
	char err[512], plain[4096];
	int k;

	for (k = 1; k + 1 < argc; k += 2) {
		if (strcmp(argv[k], "--cert") == 0)
			cert = argv[k + 1];
		else if (strcmp(argv[k], "--key") == 0)
			key = argv[k + 1];
		else if (strcmp(argv[k], "--count") == 0)
			count = (unsigned)strtoul(argv[k + 1], NULL, 10);
		else
			break;
	}
	if (k != argc || !cert || !key || count == 0 || count > 20000) {
		fprintf(stderr,
			"usage: tls_conn_mem --cert PEM --key PEM [--count N (<= 20000)]\n");
		return 2;
	}
	tm_blocks = calloc(tm_cap, sizeof(*tm_blocks));
	if (!tm_blocks || !CRYPTO_set_mem_functions(tm_malloc, tm_realloc, tm_free)) {
		fprintf(stderr, "tls_conn_mem: cannot hook OpenSSL's allocator\n");
		return 1;
	}
	sctx = tlsbio_server_ctx_new(cert, key, err, sizeof(err));
	cctx = sctx ? tlsbio_client_ctx_new(0, NULL, err, sizeof(err)) : NULL;
	s = calloc(count, sizeof(*s));
	c = calloc(count, sizeof(*c));
	if (!sctx || !cctx || !s || !c) {
		fprintf(stderr, "tls_conn_mem: %s\n", err);
		return 1;
	}
	for (i = 0; i < count; i++) {
		tm_side_now = TM_SERVER;
		s[i] = tlsbio_new(sctx, TLSBIO_SERVER, NULL);
		tm_side_now = TM_CLIENT;
		c[i] = tlsbio_new(cctx, TLSBIO_CLIENT, "localhost");
		if (!s[i] || !c[i] || tlsbio_handshake(c[i]) < 0)
			return 1;
		for (k = 0; k < 8 && !(tlsbio_handshake_done(s[i]) && tlsbio_handshake_done(c[i]));
		     k++) {
			tm_pump(c[i], s[i]);
			tm_side_now = TM_SERVER;
			tlsbio_read(s[i], plain, sizeof(plain));
			tm_pump(s[i], c[i]);
			tm_side_now = TM_CLIENT;
			tlsbio_read(c[i], plain, sizeof(plain));
		}
		/* one application record each way, then idle */
		tm_side_now = TM_CLIENT;
		tlsbio_write(c[i], "<presence/>", 11);
		tm_pump(c[i], s[i]);
		tm_side_now = TM_SERVER;
		while (tlsbio_read(s[i], plain, sizeof(plain)) > 0)
			;
		tlsbio_write(s[i], "<presence/>", 11);
		tm_pump(s[i], c[i]);
		tm_side_now = TM_CLIENT;
		while (tlsbio_read(c[i], plain, sizeof(plain)) > 0)
			;
		tm_side_now = TM_OTHER;
		if (!tlsbio_handshake_done(s[i]) || !tlsbio_handshake_done(c[i])) {
			fprintf(stderr, "tls_conn_mem: handshake %u did not complete\n", i);
			return 1;
		}
	}
	if (tm_overflow) {
		fprintf(stderr, "tls_conn_mem: allocation table full; use a smaller --count\n");
		return 1;
	}
	printf("{\"count\":%u,\"version\":\"%s\",\"cipher\":\"%s\",\"openssl\":\"%s\",", count,
	       tlsbio_version(s[0]), tlsbio_cipher(s[0]), OpenSSL_version(OPENSSL_VERSION));
	tm_report(TM_SERVER, count, "server");
	printf(",");
	tm_report(TM_CLIENT, count, "client");
	printf("}\n");
	for (i = 0; i < count; i++) {
		tlsbio_free(s[i]);
		tlsbio_free(c[i]);
	}
	free(s);
	free(c);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
	return 0;
}
