/*
 * Unit tests for common/tlsbio.c: a client and a server endpoint in memory,
 * pumped against each other, with a self-signed certificate made here.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "tlsbio.h"

static char dir[64];
static char cert_path[128], key_path[128], other_key_path[128];

static int write_key(const char *path, EVP_PKEY *key)
{
	FILE *f = fopen(path, "w");
	int ok;

	if (!f)
		return -1;
	ok = PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
	fclose(f);
	return ok ? 0 : -1;
}

/* A self-signed P-256 certificate for localhost and 127.0.0.1. */
static int make_cert(void **state)
{
	EVP_PKEY *key = EVP_EC_gen("P-256"), *other = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	X509_NAME *name;
	X509_EXTENSION *ext;
	X509V3_CTX v3;
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	FILE *f;

	(void)state;
	snprintf(dir, sizeof(dir), "%s/tlsbio-XXXXXX", tmp);
	if (!mkdtemp(dir) || !key || !other || !x)
		return -1;
	snprintf(cert_path, sizeof(cert_path), "%s/cert.pem", dir);
	snprintf(key_path, sizeof(key_path), "%s/key.pem", dir);
	snprintf(other_key_path, sizeof(other_key_path), "%s/other.pem", dir);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600L * 24);
	X509_set_pubkey(x, key);
	name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1,
				   -1, 0);
	X509_set_issuer_name(x, name);
	X509V3_set_ctx_nodb(&v3);
	X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1");
	if (!ext || !X509_add_ext(x, ext, -1))
		return -1;
	X509_EXTENSION_free(ext);
	if (!X509_sign(x, key, EVP_sha256()))
		return -1;
	f = fopen(cert_path, "w");
	if (!f || !PEM_write_X509(f, x))
		return -1;
	fclose(f);
	if (write_key(key_path, key) || write_key(other_key_path, other))
		return -1;
	X509_free(x);
	EVP_PKEY_free(key);
	EVP_PKEY_free(other);
	return 0;
}

static int remove_cert(void **state)
{
	(void)state;
	unlink(cert_path);
	unlink(key_path);
	unlink(other_key_path);
	rmdir(dir);
	return 0;
}

/* ------------------------------------------------------------ pumping */

struct pair {
	SSL_CTX *sctx, *cctx;
	struct tlsbio *s, *c;
};

static void pair_open(struct pair *p, int verify, const char *host)
{
	char err[256];

	p->sctx = tlsbio_server_ctx_new(cert_path, key_path, err, sizeof(err));
	if (!p->sctx)
		fail_msg("server ctx: %s", err);
	p->cctx = tlsbio_client_ctx_new(verify, verify ? cert_path : NULL, err, sizeof(err));
	if (!p->cctx)
		fail_msg("client ctx: %s", err);
	p->s = tlsbio_new(p->sctx, TLSBIO_SERVER, NULL);
	p->c = tlsbio_new(p->cctx, TLSBIO_CLIENT, host);
	assert_non_null(p->s);
	assert_non_null(p->c);
	/* the connections keep their own references to the contexts */
	SSL_CTX_free(p->sctx);
	SSL_CTX_free(p->cctx);
}

static void pair_close(struct pair *p)
{
	tlsbio_free(p->s);
	tlsbio_free(p->c);
}

/* Moves all pending ciphertext from a to b in pieces of at most chunk bytes
 * (0: all at once); returns the bytes moved. */
static size_t move(struct tlsbio *a, struct tlsbio *b, size_t chunk)
{
	size_t len, off, n, total = 0;
	char *data;

	while ((data = tlsbio_steal_out(a, &len)) != NULL) {
		for (off = 0; off < len; off += n) {
			n = chunk && len - off > chunk ? chunk : len - off;
			assert_int_equal(tlsbio_feed(b, data + off, n), 0);
		}
		total += len;
		free(data);
	}
	return total;
}

/* Pumps until quiet; plaintext read on either side is appended to the
 * given buffers (may be NULL to ignore). Returns the last read results. */
struct sink {
	unsigned char *data;
	size_t len, cap;
	long last;
};

static void sink_read(struct tlsbio *t, struct sink *k)
{
	unsigned char buf[5000];
	long r;

	while ((r = tlsbio_read(t, buf, sizeof(buf))) > 0) {
		if (!k)
			continue;
		if (k->len + (size_t)r > k->cap) {
			k->cap = (k->len + (size_t)r) * 2;
			k->data = realloc(k->data, k->cap);
			assert_non_null(k->data);
		}
		memcpy(k->data + k->len, buf, (size_t)r);
		k->len += (size_t)r;
	}
	if (k)
		k->last = r;
}

static void pump(struct pair *p, size_t chunk, struct sink *ks, struct sink *kc)
{
	int rounds;

	for (rounds = 0; rounds < 1000; rounds++) {
		size_t moved = move(p->c, p->s, chunk);

		sink_read(p->s, ks);
		moved += move(p->s, p->c, chunk);
		sink_read(p->c, kc);
		if (moved == 0 && tlsbio_pending_out(p->c) == 0 && tlsbio_pending_out(p->s) == 0)
			return;
	}
	fail_msg("pump did not settle");
}

static void handshake(struct pair *p, size_t chunk)
{
	assert_int_equal(tlsbio_handshake(p->c), 0);
	assert_true(tlsbio_pending_out(p->c) > 0);
	pump(p, chunk, NULL, NULL);
	assert_int_equal(tlsbio_handshake_done(p->c), 1);
	assert_int_equal(tlsbio_handshake_done(p->s), 1);
	assert_int_equal(tlsbio_handshake(p->c), 1);
	assert_int_equal(tlsbio_handshake(p->s), 1);
}

/* ------------------------------------------------------------ tests */

static void test_handshake(void **state)
{
	struct pair p;

	(void)state;
	pair_open(&p, 0, "localhost");
	assert_string_equal(tlsbio_version(p.c), "");
	handshake(&p, 0);
	assert_string_equal(tlsbio_version(p.c), "TLSv1.3");
	assert_string_equal(tlsbio_version(p.s), "TLSv1.3");
	assert_true(strlen(tlsbio_cipher(p.s)) > 0);
	assert_non_null(tlsbio_ssl(p.s));
	assert_string_equal(tlsbio_last_error(p.s), "");
	pair_close(&p);

	/* byte by byte and in odd pieces */
	pair_open(&p, 0, NULL);
	handshake(&p, 1);
	pair_close(&p);
	pair_open(&p, 0, "127.0.0.1");
	handshake(&p, 333);
	pair_close(&p);
}

static void test_tls12(void **state)
{
	struct pair p;
	struct sink ks = { 0 };

	(void)state;
	pair_open(&p, 0, "localhost");
	assert_int_equal(SSL_set_max_proto_version(tlsbio_ssl(p.c), TLS1_2_VERSION), 1);
	handshake(&p, 100);
	assert_string_equal(tlsbio_version(p.s), "TLSv1.2");
	assert_int_equal(tlsbio_write(p.c, "twelve", 6), 0);
	pump(&p, 0, &ks, NULL);
	assert_int_equal(ks.len, 6);
	assert_memory_equal(ks.data, "twelve", 6);
	free(ks.data);
	pair_close(&p);

	/* TLS 1.1 is refused by the server */
	pair_open(&p, 0, "localhost");
	SSL_set_min_proto_version(tlsbio_ssl(p.c), TLS1_VERSION);
	SSL_set_max_proto_version(tlsbio_ssl(p.c), TLS1_1_VERSION);
	SSL_set_security_level(tlsbio_ssl(p.c), 0);
	assert_int_equal(tlsbio_handshake(p.c), 0);
	pump(&p, 0, NULL, NULL);
	assert_int_equal(tlsbio_handshake_done(p.s), 0);
	assert_int_equal(tlsbio_read(p.s, NULL, 0), TLSBIO_ERR_PROTOCOL);
	assert_true(strlen(tlsbio_last_error(p.s)) > 0);
	pair_close(&p);
}

/* Messages of many sizes both ways, fed in many chunk sizes. */
static void test_data_both_ways(void **state)
{
	static const size_t sizes[] = { 1, 2, 7, 100, 1000, 4096, 16383, 16384, 16385, 40000 };
	static const size_t chunks[] = { 0, 1, 5, 13, 1500, 16389 };
	unsigned char *msg = malloc(40001);
	struct pair p;
	size_t i, j, k;

	(void)state;
	for (k = 0; k < 40001; k++)
		msg[k] = (unsigned char)(k * 7 + k / 251);
	for (j = 0; j < sizeof(chunks) / sizeof(chunks[0]); j++) {
		pair_open(&p, 0, "localhost");
		handshake(&p, chunks[j]);
		for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
			struct sink ks = { 0 }, kc = { 0 };

			if (chunks[j] == 1 && sizes[i] > 5000)
				continue; /* byte-by-byte over 40 kB is slow under ASan */
			assert_int_equal(tlsbio_write(p.c, msg, sizes[i]), 0);
			assert_int_equal(tlsbio_write(p.s, msg + 1, sizes[i]), 0);
			pump(&p, chunks[j], &ks, &kc);
			assert_int_equal(ks.len, sizes[i]);
			assert_memory_equal(ks.data, msg, sizes[i]);
			assert_int_equal(kc.len, sizes[i]);
			assert_memory_equal(kc.data, msg + 1, sizes[i]);
			assert_int_equal(ks.last, 0);
			free(ks.data);
			free(kc.data);
		}
		pair_close(&p);
	}
	free(msg);
}

static void test_megabyte(void **state)
{
	const size_t total = 1 << 20;
	unsigned char *msg = malloc(total);
	struct sink ks = { 0 };
	struct pair p;
	size_t off, k;

	(void)state;
	for (k = 0; k < total; k++)
		msg[k] = (unsigned char)(k ^ (k >> 8) ^ (k >> 16));
	pair_open(&p, 0, "localhost");
	handshake(&p, 0);
	/* interleave writes and pumping, as a socket would */
	for (off = 0; off < total; off += 65536) {
		assert_int_equal(tlsbio_write(p.c, msg + off, 65536), 0);
		if ((off / 65536) % 3 == 0)
			pump(&p, 8192, &ks, NULL);
	}
	pump(&p, 65536, &ks, NULL);
	assert_int_equal(ks.len, total);
	assert_memory_equal(ks.data, msg, total);
	free(ks.data);
	free(msg);
	pair_close(&p);
}

static void test_write_before_handshake(void **state)
{
	struct sink ks = { 0 };
	struct pair p;

	(void)state;
	pair_open(&p, 0, "localhost");
	assert_int_equal(tlsbio_write(p.c, "early ", 6), 0);
	assert_int_equal(tlsbio_write(p.c, "bird", 4), 0);
	assert_int_equal(tlsbio_handshake(p.c), 0);
	pump(&p, 0, &ks, NULL);
	assert_int_equal(ks.len, 10);
	assert_memory_equal(ks.data, "early bird", 10);
	free(ks.data);
	pair_close(&p);
}

static void test_garbage(void **state)
{
	static const char http[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	static const char xmpp[] = "<?xml version='1.0'?><stream:stream to='x'>";
	struct pair p;
	char buf[64];
	size_t i;

	(void)state;
	for (i = 0; i < 2; i++) {
		const char *g = i ? xmpp : http;

		pair_open(&p, 0, "localhost");
		assert_int_equal(tlsbio_feed(p.s, g, strlen(g)), 0);
		assert_int_equal(tlsbio_read(p.s, buf, sizeof(buf)), TLSBIO_ERR_PROTOCOL);
		assert_true(strlen(tlsbio_last_error(p.s)) > 0);
		/* dead from now on */
		assert_int_equal(tlsbio_read(p.s, buf, sizeof(buf)), TLSBIO_ERR_PROTOCOL);
		assert_int_equal(tlsbio_handshake(p.s), TLSBIO_ERR_PROTOCOL);
		assert_int_equal(tlsbio_write(p.s, "x", 1), TLSBIO_ERR_STATE);
		assert_int_equal(tlsbio_shutdown(p.s), TLSBIO_ERR_STATE);
		pair_close(&p);
	}

	/* garbage after a good handshake: a bad record */
	pair_open(&p, 0, "localhost");
	handshake(&p, 0);
	memset(buf, 0x17, sizeof(buf));
	assert_int_equal(tlsbio_feed(p.s, buf, sizeof(buf)), 0);
	assert_int_equal(tlsbio_read(p.s, buf, sizeof(buf)), TLSBIO_ERR_PROTOCOL);
	/* the server queued an alert for the peer */
	assert_true(tlsbio_pending_out(p.s) > 0);
	move(p.s, p.c, 0);
	assert_int_equal(tlsbio_read(p.c, buf, sizeof(buf)), TLSBIO_ERR_PROTOCOL);
	pair_close(&p);

	/* a flipped bit in an application record fails authentication */
	pair_open(&p, 0, "localhost");
	handshake(&p, 0);
	assert_int_equal(tlsbio_write(p.c, "secret message", 14), 0);
	{
		size_t len;
		unsigned char *d = tlsbio_steal_out(p.c, &len);

		assert_non_null(d);
		d[len - 3] ^= 0x40;
		assert_int_equal(tlsbio_feed(p.s, d, len), 0);
		free(d);
	}
	assert_int_equal(tlsbio_read(p.s, buf, sizeof(buf)), TLSBIO_ERR_PROTOCOL);
	pair_close(&p);
}

static void test_close_notify(void **state)
{
	struct sink ks = { 0 }, kc = { 0 };
	struct pair p;
	char buf[16];

	(void)state;
	pair_open(&p, 0, "localhost");
	handshake(&p, 0);
	assert_int_equal(tlsbio_write(p.c, "bye", 3), 0);
	assert_int_equal(tlsbio_shutdown(p.c), 0);
	assert_int_equal(tlsbio_shutdown(p.c), 0);
	assert_int_equal(tlsbio_write(p.c, "more", 4), TLSBIO_ERR_STATE);
	pump(&p, 0, &ks, &kc);
	/* data before the close_notify arrives, then the clean EOF */
	assert_int_equal(ks.len, 3);
	assert_memory_equal(ks.data, "bye", 3);
	assert_int_equal(ks.last, TLSBIO_ERR_CLOSED);
	assert_int_equal(tlsbio_read(p.s, buf, sizeof(buf)), TLSBIO_ERR_CLOSED);
	assert_int_equal(tlsbio_read(p.c, buf, sizeof(buf)), 0);
	/* the server answers with its own close_notify; the client, which
	 * can still read after its shutdown, sees it */
	assert_int_equal(tlsbio_write(p.s, "ok", 2), 0);
	assert_int_equal(tlsbio_shutdown(p.s), 0);
	pump(&p, 0, NULL, &kc);
	assert_int_equal(kc.len, 2);
	assert_memory_equal(kc.data, "ok", 2);
	assert_int_equal(kc.last, TLSBIO_ERR_CLOSED);
	assert_int_equal(tlsbio_read(p.c, buf, sizeof(buf)), TLSBIO_ERR_CLOSED);
	free(ks.data);
	free(kc.data);
	pair_close(&p);

	/* a TCP close without close_notify is not a clean close: the read just
	 * has nothing (the caller sees the socket EOF), no TLSBIO_ERR_CLOSED */
	pair_open(&p, 0, "localhost");
	handshake(&p, 0);
	assert_int_equal(tlsbio_read(p.s, buf, sizeof(buf)), 0);
	assert_int_equal(tlsbio_read(p.s, buf, sizeof(buf)), 0);
	/* shutdown before any handshake sends nothing */
	pair_close(&p);
	pair_open(&p, 0, "localhost");
	assert_int_equal(tlsbio_shutdown(p.c), 0);
	assert_int_equal(tlsbio_pending_out(p.c), 0);
	pair_close(&p);
}

static void test_verify(void **state)
{
	struct pair p;
	char err[256];
	SSL_CTX *ctx;

	(void)state;
	/* the CA file is the self-signed certificate itself */
	pair_open(&p, 1, "localhost");
	handshake(&p, 0);
	pair_close(&p);
	pair_open(&p, 1, "127.0.0.1");
	handshake(&p, 0);
	pair_close(&p);

	/* wrong name */
	pair_open(&p, 1, "chat.example.org");
	assert_int_equal(tlsbio_handshake(p.c), 0);
	pump(&p, 0, NULL, NULL);
	assert_int_equal(tlsbio_handshake_done(p.c), 0);
	assert_int_equal(tlsbio_handshake(p.c), TLSBIO_ERR_PROTOCOL);
	assert_non_null(strstr(tlsbio_last_error(p.c), "certificate"));
	pair_close(&p);

	/* not trusted: the system store does not know our certificate */
	ctx = tlsbio_client_ctx_new(1, NULL, err, sizeof(err));
	assert_non_null(ctx);
	p.sctx = tlsbio_server_ctx_new(cert_path, key_path, err, sizeof(err));
	p.s = tlsbio_new(p.sctx, TLSBIO_SERVER, NULL);
	p.c = tlsbio_new(ctx, TLSBIO_CLIENT, "localhost");
	SSL_CTX_free(ctx);
	SSL_CTX_free(p.sctx);
	assert_int_equal(tlsbio_handshake(p.c), 0);
	pump(&p, 0, NULL, NULL);
	assert_int_equal(tlsbio_handshake(p.c), TLSBIO_ERR_PROTOCOL);
	assert_non_null(strstr(tlsbio_last_error(p.c), "certificate"));
	pair_close(&p);
}

static void test_ctx_errors(void **state)
{
	char err[256];

	(void)state;
	err[0] = '\0';
	assert_null(tlsbio_server_ctx_new("/nonexistent/cert.pem", key_path, err, sizeof(err)));
	assert_non_null(strstr(err, "/nonexistent/cert.pem"));
	assert_null(tlsbio_server_ctx_new(cert_path, "/nonexistent/key.pem", err, sizeof(err)));
	assert_non_null(strstr(err, "/nonexistent/key.pem"));
	/* a key file that is not a key */
	assert_null(tlsbio_server_ctx_new(cert_path, cert_path, err, sizeof(err)));
	/* the wrong key for the certificate */
	assert_null(tlsbio_server_ctx_new(cert_path, other_key_path, err, sizeof(err)));
	assert_non_null(strstr(err, other_key_path));
	assert_null(tlsbio_client_ctx_new(1, "/nonexistent/ca.pem", err, sizeof(err)));
	assert_non_null(strstr(err, "/nonexistent/ca.pem"));
}

static void test_take(void **state)
{
	struct pair p;
	unsigned char buf[10];
	size_t before;

	(void)state;
	pair_open(&p, 0, "localhost");
	assert_int_equal(tlsbio_take(p.c, buf, sizeof(buf)), 0);
	assert_int_equal(tlsbio_handshake(p.c), 0);
	before = tlsbio_pending_out(p.c);
	assert_true(before > 10);
	/* take a little by copy, feed it, then the rest */
	assert_int_equal(tlsbio_take(p.c, buf, sizeof(buf)), 10);
	assert_int_equal(tlsbio_pending_out(p.c), before - 10);
	assert_int_equal(tlsbio_feed(p.s, buf, 10), 0);
	pump(&p, 0, NULL, NULL);
	assert_int_equal(tlsbio_handshake_done(p.s), 1);
	assert_int_equal(tlsbio_handshake_done(p.c), 1);
	{
		size_t len = 99;

		assert_null(tlsbio_steal_out(p.c, &len));
		assert_int_equal(len, 0);
	}
	pair_close(&p);
	tlsbio_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_handshake),
		cmocka_unit_test(test_tls12),
		cmocka_unit_test(test_data_both_ways),
		cmocka_unit_test(test_megabyte),
		cmocka_unit_test(test_write_before_handshake),
		cmocka_unit_test(test_garbage),
		cmocka_unit_test(test_close_notify),
		cmocka_unit_test(test_verify),
		cmocka_unit_test(test_ctx_errors),
		cmocka_unit_test(test_take),
	};

	return cmocka_run_group_tests(tests, make_cert, remove_cert);
}
