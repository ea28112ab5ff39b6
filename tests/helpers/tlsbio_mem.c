/*
 * tlsbio_mem: measures what an idle TLS connection costs through
 * common/tlsbio.c, and the PBKDF2 price of a PLAIN check (common/scram.c).
 *
 *   BUILD/tests/tlsbio_mem [N]      (N connection pairs, default 2000)
 *
 * Build without sanitizers for meaningful heap figures (mallinfo2 does not
 * see ASan's allocator): make BUILD=build build/tests/tlsbio_mem. The pairs
 * are handshaken in memory (no sockets), one <presence/> is sent, then the
 * client sides are freed so that what remains is N idle server connections.
 * Prints figures; asserts nothing.
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "scram.h"
#include "tlsbio.h"

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static size_t heap(void)
{
	return mallinfo2().uordblks;
}

static void move(struct tlsbio *a, struct tlsbio *b)
{
	size_t len;
	char *d;

	while ((d = tlsbio_steal_out(a, &len)) != NULL) {
		tlsbio_feed(b, d, len);
		free(d);
	}
}

/* A throwaway self-signed P-256 certificate in dir. */
static int make_cert(const char *cert, const char *key)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	FILE *f;
	int ok;

	if (!k || !x)
		return -1;
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, k);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
				   (const unsigned char *)"localhost", -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	ok = X509_sign(x, k, EVP_sha256()) > 0;
	f = fopen(cert, "w");
	ok = ok && f && PEM_write_X509(f, x);
	if (f)
		fclose(f);
	f = fopen(key, "w");
	ok = ok && f && PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
	if (f)
		fclose(f);
	X509_free(x);
	EVP_PKEY_free(k);
	return ok ? 0 : -1;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 2000, i, k, m = 200;
	char dir[] = "/tmp/tlsbio-mem-XXXXXX", cert[64], key[64], err[256], buf[256];
	struct tlsbio **s, **c;
	SSL_CTX *sctx, *cctx;
	struct scram_cred cred;
	size_t h0, h1, h2;
	double t0, t1;

	if (n < 1 || !mkdtemp(dir))
		return 1;
	snprintf(cert, sizeof(cert), "%s/c.pem", dir);
	snprintf(key, sizeof(key), "%s/k.pem", dir);
	if (make_cert(cert, key) < 0)
		return 1;
	sctx = tlsbio_server_ctx_new(cert, key, err, sizeof(err));
	cctx = tlsbio_client_ctx_new(0, NULL, err, sizeof(err));
	unlink(cert);
	unlink(key);
	rmdir(dir);
	s = calloc((size_t)n, sizeof(*s));
	c = calloc((size_t)n, sizeof(*c));
	if (!sctx || !cctx || !s || !c) {
		fprintf(stderr, "tlsbio_mem: setup failed: %s\n", err);
		return 1;
	}
	h0 = heap();
	t0 = now();
	for (i = 0; i < n; i++) {
		s[i] = tlsbio_new(sctx, TLSBIO_SERVER, NULL);
		c[i] = tlsbio_new(cctx, TLSBIO_CLIENT, "localhost");
		tlsbio_handshake(c[i]);
		for (k = 0; k < 4; k++) {
			move(c[i], s[i]);
			tlsbio_read(s[i], buf, sizeof(buf));
			move(s[i], c[i]);
			tlsbio_read(c[i], buf, sizeof(buf));
		}
		tlsbio_write(c[i], "<presence/>", 11);
		move(c[i], s[i]);
		if (tlsbio_read(s[i], buf, sizeof(buf)) != 11) {
			fprintf(stderr, "tlsbio_mem: pair %d failed: %s\n", i,
				tlsbio_last_error(s[i]));
			return 1;
		}
	}
	t1 = now();
	h1 = heap();
	for (i = 0; i < n; i++)
		tlsbio_free(c[i]);
	h2 = heap();
	printf("tls_version %s\n", tlsbio_version(s[0]));
	printf("pairs %d handshakes_per_s %.0f (both ends on one core)\n", n,
	       (double)n / (t1 - t0));
	printf("heap_per_idle_pair_bytes %zu\n", (h1 - h0) / (size_t)n);
	printf("heap_per_idle_server_conn_bytes %zu\n", (h2 - h0) / (size_t)n);
	for (i = 0; i < n; i++)
		tlsbio_free(s[i]);
	free(s);
	free(c);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);

	for (k = 0; k < SCRAM_HASH_COUNT; k++) {
		scram_cred_make((enum scram_hash)k, "pw", SCRAM_DEFAULT_ITERATIONS, &cred);
		t0 = now();
		for (i = 0; i < m; i++)
			scram_plain_verify(&cred, "pw");
		t1 = now();
		printf("plain_verify_%s_%u_ms %.3f\n", scram_hash_tag((enum scram_hash)k),
		       SCRAM_DEFAULT_ITERATIONS, (t1 - t0) * 1000 / m);
	}
	return 0;
}
