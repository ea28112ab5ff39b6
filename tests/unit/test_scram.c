/* Unit tests for common/scram.c and common/b64.c. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "b64.h"
#include "scram.h"

/* Iterations for credentials made in tests: cheap; the RFC vectors use 4096. */
#define TEST_ITER 16

/* ------------------------------------------------------------ b64 */

static void test_b64_roundtrip(void **state)
{
	unsigned char in[64], out[64];
	char enc[B64_ENCODED_LEN(64) + 1];
	size_t len;
	long n;

	(void)state;
	for (len = 0; len < sizeof(in); len++) {
		in[len] = (unsigned char)(len * 37 + 11);
		n = b64_encode(in, len, enc, sizeof(enc));
		assert_int_equal(n, B64_ENCODED_LEN(len));
		assert_int_equal(strlen(enc), (size_t)n);
		n = b64_decode(enc, (size_t)n, out, sizeof(out));
		assert_int_equal(n, (long)len);
		assert_memory_equal(in, out, len);
	}
	n = b64_encode("foob", 4, enc, sizeof(enc));
	assert_string_equal(enc, "Zm9vYg==");
	n = b64_decode("Zm9vYmE=", 8, out, sizeof(out));
	assert_int_equal(n, 5);
	assert_memory_equal(out, "fooba", 5);
	/* too small an output buffer */
	assert_int_equal(b64_encode("foob", 4, enc, 8), -ENOSPC);
	assert_int_equal(b64_decode("Zm9vYmE=", 8, out, 5), -ENOSPC);
}

static void test_b64_strict(void **state)
{
	static const char *bad[] = {
		"Zm9",	"Zm9vY", "Zm9v Yg==", " Zm9v",	  "Zm9v\n",
		"Zm=v", "Z===",	 "Zm9vYg=A",  "Zm9vY===", "=Zm9",
		"Zm9-", "Zm9_",	 "Zm9vYg=",   "Zm9vYh==", "Zm9vYmF=",
	};
	unsigned char out[64];
	size_t i, len;
	unsigned char *p;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(b64_decode(bad[i], strlen(bad[i]), out, sizeof(out)), -EINVAL);
		p = b64_decode_alloc(bad[i], strlen(bad[i]), &len);
		assert_null(p);
		assert_int_equal(len, 0);
	}
	assert_int_equal(b64_decode("", 0, out, sizeof(out)), 0);
	p = b64_decode_alloc("aGk=", 4, &len);
	assert_non_null(p);
	assert_int_equal(len, 2);
	assert_string_equal((char *)p, "hi");
	free(p);
}

/* ------------------------------------------------------------ helpers */

struct fixture_user {
	const char *name;
	const char *password;
	const char *salt_b64; /* NULL: use made credentials */
	unsigned iterations;
};

/* The lookup for tests: ud is a struct fixture_user; records the name. */
static char last_lookup[256];
static int lookup_calls;

static int test_lookup(void *ud, enum scram_hash hash, const char *username,
		       struct scram_cred *cred)
{
	const struct fixture_user *u = ud;
	unsigned char salt[64];
	long n;

	lookup_calls++;
	snprintf(last_lookup, sizeof(last_lookup), "%s", username);
	if (strcmp(username, u->name) != 0)
		return SCRAM_ERR_UNKNOWN_USER;
	if (!u->salt_b64)
		return scram_cred_make(hash, u->password, u->iterations, cred);
	n = b64_decode(u->salt_b64, strlen(u->salt_b64), salt, sizeof(salt));
	assert_true(n > 0);
	return scram_cred_derive(hash, u->password, salt, (size_t)n, u->iterations, cred);
}

static void expect_server_first_err(enum scram_hash h, const char *msg, size_t len, int err)
{
	struct fixture_user u = { "user", "pencil", NULL, TEST_ITER };
	struct scram_server *s = scram_server_new(h, test_lookup, &u);
	char *out = (char *)1;
	size_t outlen = 7;
	int rc;

	assert_non_null(s);
	rc = scram_server_first(s, msg, len, &out, &outlen);
	if (rc != err)
		fail_msg("client-first \"%.*s\": got %d (%s), want %d", (int)len, msg, rc,
			 scram_strerror(rc), err);
	if (rc == 0) {
		assert_non_null(out);
		assert_int_equal(strlen(out), outlen);
		free(out);
	} else {
		assert_null(out);
		assert_int_equal(outlen, 0);
	}
	scram_server_free(s);
}

/* Runs a server up to server-first; returns it. */
static struct scram_server *server_after_first(enum scram_hash h, struct fixture_user *u,
					       const char *cfirst, const char *snonce,
					       char **sfirst)
{
	struct scram_server *s = scram_server_new(h, test_lookup, u);
	size_t len;

	assert_non_null(s);
	if (snonce)
		assert_int_equal(scram_server_set_nonce(s, snonce), 0);
	assert_int_equal(scram_server_first(s, cfirst, strlen(cfirst), sfirst, &len), 0);
	assert_int_equal(strlen(*sfirst), len);
	return s;
}

/* ------------------------------------------------------------ RFC vectors */

struct vector {
	enum scram_hash hash;
	const char *cnonce, *snonce;
	const char *client_first, *server_first, *client_final, *server_final;
	const char *salt_b64;
};

static const struct vector rfc5802 = {
	SCRAM_SHA1,
	"fyko+d2lbbFgONRv9qkxdawL",
	"3rfcNHYJY1ZVvWVs7j",
	"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
	"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
	"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
	"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
	"QSXCR+Q6sek8bf92",
};

static const struct vector rfc7677 = {
	SCRAM_SHA256,
	"rOprNGfwEbeRWgbNEkqO",
	"%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
	"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
	"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
	"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
	"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
	"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
	"W22ZaJ0SNY7soEsUEjb6gQ==",
};

static void run_vector_client(const struct vector *v)
{
	struct scram_client *c;
	char *out;
	size_t len;
	int err = 1;

	c = scram_client_new(v->hash, "user", "pencil", NULL, &err);
	assert_non_null(c);
	assert_int_equal(err, 0);
	assert_int_equal(scram_client_set_nonce(c, v->cnonce), 0);
	assert_int_equal(scram_client_first(c, &out, &len), 0);
	assert_string_equal(out, v->client_first);
	assert_int_equal(len, strlen(v->client_first));
	free(out);
	assert_int_equal(
		scram_client_final(c, v->server_first, strlen(v->server_first), &out, &len), 0);
	assert_string_equal(out, v->client_final);
	free(out);
	assert_int_equal(scram_client_verify(c, v->server_final, strlen(v->server_final)), 0);
	scram_client_free(c);
}

static void run_vector_server(const struct vector *v)
{
	struct fixture_user u = { "user", "pencil", v->salt_b64, 4096 };
	struct scram_server *s;
	char *out;
	size_t len;

	s = server_after_first(v->hash, &u, v->client_first, v->snonce, &out);
	assert_string_equal(out, v->server_first);
	free(out);
	assert_string_equal(scram_server_username(s), "user");
	assert_null(scram_server_authzid(s));
	assert_int_equal(
		scram_server_final(s, v->client_final, strlen(v->client_final), &out, &len), 0);
	assert_string_equal(out, v->server_final);
	assert_int_equal(len, strlen(v->server_final));
	free(out);
	scram_server_free(s);
}

static void test_rfc5802_client(void **state)
{
	(void)state;
	run_vector_client(&rfc5802);
}

static void test_rfc5802_server(void **state)
{
	(void)state;
	run_vector_server(&rfc5802);
}

static void test_rfc7677_client(void **state)
{
	(void)state;
	run_vector_client(&rfc7677);
}

static void test_rfc7677_server(void **state)
{
	(void)state;
	run_vector_server(&rfc7677);
}

/* The stored keys of the RFC 5802 example, checked against the proof. */
static void test_plain_verify(void **state)
{
	struct scram_cred cred;
	unsigned char salt[16];

	(void)state;
	assert_int_equal(b64_decode("QSXCR+Q6sek8bf92", 16, salt, sizeof(salt)), 12);
	assert_int_equal(scram_cred_derive(SCRAM_SHA1, "pencil", salt, 12, 4096, &cred), 0);
	assert_int_equal(scram_plain_verify(&cred, "pencil"), 0);
	assert_int_equal(scram_plain_verify(&cred, "pencil "), SCRAM_ERR_NOT_AUTHORIZED);
	assert_int_equal(scram_plain_verify(&cred, "Pencil"), SCRAM_ERR_NOT_AUTHORIZED);
	assert_int_equal(scram_plain_verify(&cred, ""), SCRAM_ERR_NOT_AUTHORIZED);

	assert_int_equal(scram_cred_make(SCRAM_SHA256, "s3cret", TEST_ITER, &cred), 0);
	assert_int_equal(cred.hash, SCRAM_SHA256);
	assert_int_equal(cred.iterations, TEST_ITER);
	assert_int_equal(cred.salt_len, SCRAM_SALT_LEN);
	assert_int_equal(scram_plain_verify(&cred, "s3cret"), 0);
	assert_int_equal(scram_plain_verify(&cred, "s3cre"), SCRAM_ERR_NOT_AUTHORIZED);
	/* The control character U+0007 is prohibited by SASLprep. */
	assert_int_equal(scram_plain_verify(&cred, "s3\x07"
						   "cret"),
			 SCRAM_ERR_BAD_PASSWORD);
}

static void test_cred_make(void **state)
{
	struct scram_cred a, b;

	(void)state;
	assert_int_equal(scram_cred_make(SCRAM_SHA1, "pw", TEST_ITER, &a), 0);
	assert_int_equal(scram_cred_make(SCRAM_SHA1, "pw", TEST_ITER, &b), 0);
	/* fresh salt each time, hence different keys */
	assert_memory_not_equal(a.salt, b.salt, SCRAM_SALT_LEN);
	assert_memory_not_equal(a.stored_key, b.stored_key, 20);
	assert_int_equal(scram_cred_make(SCRAM_SHA1, "pw", SCRAM_MAX_ITERATIONS + 1, &a),
			 SCRAM_ERR_ITERATIONS);
	assert_int_equal(scram_cred_make(SCRAM_SHA1, "pw\x01", TEST_ITER, &a),
			 SCRAM_ERR_BAD_PASSWORD);
	/* SASLprep: soft hyphen maps to nothing, so "I<SHY>X" is "IX" (RFC 4013 3). */
	assert_int_equal(scram_cred_make(SCRAM_SHA256, "I\xc2\xadX", TEST_ITER, &a), 0);
	assert_int_equal(scram_plain_verify(&a, "IX"), 0);
	/* and non-ASCII space maps to space */
	assert_int_equal(scram_cred_make(SCRAM_SHA256,
					 "a\xc2\xa0"
					 "b",
					 TEST_ITER, &a),
			 0);
	assert_int_equal(scram_plain_verify(&a, "a b"), 0);
	/* an unassigned code point (U+0221 in Unicode 3.2) is refused when
	 * storing, accepted when querying */
	assert_int_equal(scram_cred_make(SCRAM_SHA256, "\xc8\xa1", TEST_ITER, &a),
			 SCRAM_ERR_BAD_PASSWORD);
}

static void test_names(void **state)
{
	enum scram_hash h;

	(void)state;
	assert_string_equal(scram_mech_name(SCRAM_SHA1), "SCRAM-SHA-1");
	assert_string_equal(scram_mech_name(SCRAM_SHA256), "SCRAM-SHA-256");
	assert_int_equal(scram_hash_len(SCRAM_SHA1), 20);
	assert_int_equal(scram_hash_len(SCRAM_SHA256), 32);
	assert_int_equal(scram_hash_tag_parse("sha256", 6, &h), 0);
	assert_int_equal(h, SCRAM_SHA256);
	assert_int_equal(scram_hash_tag_parse("sha25", 5, &h), -EINVAL);
	assert_string_equal(scram_sasl_condition(SCRAM_ERR_MALFORMED), "malformed-request");
	assert_string_equal(scram_sasl_condition(SCRAM_ERR_NOT_AUTHORIZED), "not-authorized");
	assert_string_equal(scram_sasl_condition(SCRAM_ERR_INVALID_AUTHZID), "invalid-authzid");
	assert_string_equal(scram_sasl_condition(SCRAM_ERR_NOMEM), "temporary-auth-failure");
	assert_string_equal(scram_sasl_condition(SCRAM_ERR_CHANNEL_BINDING), "not-authorized");
	assert_string_not_equal(scram_strerror(SCRAM_ERR_NONCE),
				scram_strerror(SCRAM_ERR_MALFORMED));
}

/* ------------------------------------------------------------ exchanges */

/* A full exchange; returns the server's result of the final step. */
static int exchange(enum scram_hash h, const char *login, const char *password,
		    struct fixture_user *u, const char *authzid, int *client_verify)
{
	struct scram_client *c;
	struct scram_server *s;
	char *m1, *m2, *m3, *m4 = NULL;
	size_t l1, l2, l3, l4;
	int rc, err;

	c = scram_client_new(h, login, password, authzid, &err);
	assert_non_null(c);
	s = scram_server_new(h, test_lookup, u);
	assert_non_null(s);
	assert_int_equal(scram_client_first(c, &m1, &l1), 0);
	assert_int_equal(scram_server_first(s, m1, l1, &m2, &l2), 0);
	assert_int_equal(scram_client_final(c, m2, l2, &m3, &l3), 0);
	rc = scram_server_final(s, m3, l3, &m4, &l4);
	*client_verify = 1;
	if (rc == 0) {
		assert_non_null(m4);
		*client_verify = scram_client_verify(c, m4, l4);
	} else {
		assert_null(m4);
	}
	free(m1);
	free(m2);
	free(m3);
	free(m4);
	scram_client_free(c);
	scram_server_free(s);
	return rc;
}

static void test_exchange_ok(void **state)
{
	struct fixture_user u = { "alice", "wonder land", NULL, TEST_ITER };
	int h, v;

	(void)state;
	for (h = 0; h < SCRAM_HASH_COUNT; h++) {
		assert_int_equal(exchange((enum scram_hash)h, "alice", "wonder land", &u, NULL, &v),
				 0);
		assert_int_equal(v, 0);
		/* SASLprep on both sides: U+00A0 in the password is a space */
		assert_int_equal(
			exchange((enum scram_hash)h, "alice", "wonder\xc2\xa0land", &u, NULL, &v),
			0);
		assert_int_equal(v, 0);
	}
}

static void test_exchange_wrong_password(void **state)
{
	struct fixture_user u = { "alice", "right", NULL, TEST_ITER };
	int h, v;

	(void)state;
	for (h = 0; h < SCRAM_HASH_COUNT; h++) {
		assert_int_equal(exchange((enum scram_hash)h, "alice", "wrong", &u, NULL, &v),
				 SCRAM_ERR_NOT_AUTHORIZED);
	}
}

static void test_exchange_unknown_user(void **state)
{
	struct fixture_user u = { "alice", "right", NULL, TEST_ITER };
	struct scram_server *s1, *s2;
	char *a, *b;
	const char *sa, *sb;
	int v;

	(void)state;
	assert_int_equal(exchange(SCRAM_SHA256, "bob", "right", &u, NULL, &v),
			 SCRAM_ERR_NOT_AUTHORIZED);
	/* The made-up salt is stable per name, so probing shows nothing. */
	s1 = server_after_first(SCRAM_SHA1, &u, "n,,n=bob,r=abc", "X", &a);
	s2 = server_after_first(SCRAM_SHA1, &u, "n,,n=bob,r=abc", "X", &b);
	assert_string_equal(a, b);
	sa = strstr(a, ",s=");
	assert_non_null(sa);
	free(a);
	free(b);
	scram_server_free(s1);
	scram_server_free(s2);
	s1 = server_after_first(SCRAM_SHA1, &u, "n,,n=carol,r=abc", "X", &a);
	s2 = server_after_first(SCRAM_SHA1, &u, "n,,n=bob,r=abc", "X", &b);
	sa = strstr(a, ",s=");
	sb = strstr(b, ",s=");
	assert_string_not_equal(sa, sb);
	assert_non_null(strstr(a, ",i=4096"));
	free(a);
	free(b);
	scram_server_free(s1);
	scram_server_free(s2);
}

/* Usernames with ',' and '=' travel escaped and arrive unescaped. */
static void test_exchange_escapes(void **state)
{
	struct fixture_user u = { "a,b=c", "pw", NULL, TEST_ITER };
	struct scram_client *c;
	char *m1;
	size_t l1;
	int v;

	(void)state;
	c = scram_client_new(SCRAM_SHA1, "a,b=c", "pw", "x=y,z", NULL);
	assert_non_null(c);
	assert_int_equal(scram_client_set_nonce(c, "N"), 0);
	assert_int_equal(scram_client_first(c, &m1, &l1), 0);
	assert_string_equal(m1, "n,a=x=3Dy=2Cz,n=a=2Cb=3Dc,r=N");
	free(m1);
	scram_client_free(c);

	assert_int_equal(exchange(SCRAM_SHA1, "a,b=c", "pw", &u, NULL, &v), 0);
	assert_int_equal(v, 0);
	assert_string_equal(last_lookup, "a,b=c");
	/* authzid is parsed and exposed, not judged */
	assert_int_equal(exchange(SCRAM_SHA256, "a,b=c", "pw", &u, "a,b=c@example.org", &v), 0);
	assert_int_equal(v, 0);
}

static void test_authzid_exposed(void **state)
{
	struct fixture_user u = { "user", "pencil", NULL, TEST_ITER };
	struct scram_server *s;
	char *out;

	(void)state;
	s = server_after_first(SCRAM_SHA1, &u, "n,a=user@ex=2Cample,n=user,r=abc", NULL, &out);
	assert_string_equal(scram_server_authzid(s), "user@ex,ample");
	free(out);
	scram_server_free(s);
	expect_server_first_err(SCRAM_SHA1, "n,a=,n=user,r=abc", 17, SCRAM_ERR_MALFORMED);
	expect_server_first_err(SCRAM_SHA1, "n,a=x=2,n=user,r=abc", 20, SCRAM_ERR_MALFORMED);
}

/* An independent client proof (plain OpenSSL calls), for messages the
 * client object does not produce (gs2 "y,,"). */
static char *proof_for(enum scram_hash h, const char *password, const char *salt_b64, unsigned iter,
		       const char *auth_message)
{
	const EVP_MD *md = h == SCRAM_SHA256 ? EVP_sha256() : EVP_sha1();
	unsigned char salt[64], salted[32], ckey[32], stored[32], sig[32];
	unsigned int hl = (unsigned int)scram_hash_len(h), n, i;
	long sl = b64_decode(salt_b64, strlen(salt_b64), salt, sizeof(salt));

	assert_true(sl > 0);
	assert_true(PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt, (int)sl, (int)iter, md,
				      (int)hl, salted));
	assert_non_null(
		HMAC(md, salted, (int)hl, (const unsigned char *)"Client Key", 10, ckey, &n));
	assert_true(EVP_Digest(ckey, hl, stored, &n, md, NULL));
	assert_non_null(HMAC(md, stored, (int)hl, (const unsigned char *)auth_message,
			     strlen(auth_message), sig, &n));
	for (i = 0; i < hl; i++)
		sig[i] ^= ckey[i];
	return b64_encode_alloc(sig, hl);
}

/* gs2 "y,,": the client could bind but believes we cannot; accepted, and
 * then c= must be the base64 of "y,," ("eSws"), not "biws". */
static void test_gs2_y(void **state)
{
	struct fixture_user u = { "user", "pencil", "QSXCR+Q6sek8bf92", TEST_ITER };
	struct scram_server *s;
	char *sfirst, *proof, *final, *am, *out;
	size_t len;
	int h;

	(void)state;
	for (h = 0; h < SCRAM_HASH_COUNT; h++) {
		s = server_after_first((enum scram_hash)h, &u, "y,,n=user,r=abc", "SRV", &sfirst);
		assert_int_equal(asprintf(&am, "n=user,r=abc,%s,c=eSws,r=abcSRV", sfirst) > 0, 1);
		proof = proof_for((enum scram_hash)h, "pencil", u.salt_b64, TEST_ITER, am);
		assert_int_equal(asprintf(&final, "c=eSws,r=abcSRV,p=%s", proof) > 0, 1);
		assert_int_equal(scram_server_final(s, final, strlen(final), &out, &len), 0);
		assert_int_equal(strncmp(out, "v=", 2), 0);
		free(out);
		scram_server_free(s);

		/* the same proof with c=biws: the binding check fails first */
		s = server_after_first((enum scram_hash)h, &u, "y,,n=user,r=abc", "SRV", &out);
		free(out);
		memcpy(final + 2, "biws", 4);
		assert_int_equal(scram_server_final(s, final, strlen(final), &out, &len),
				 SCRAM_ERR_CHANNEL_BINDING);
		scram_server_free(s);
		free(final);
		free(proof);
		free(am);
		free(sfirst);
	}
}

static void test_channel_binding_rejected(void **state)
{
	static const char m[] = "p=tls-unique,,n=user,r=abc";
	static const char m2[] = "p=tls-exporter,a=user,n=user,r=abc";

	(void)state;
	expect_server_first_err(SCRAM_SHA256, m, sizeof(m) - 1, SCRAM_ERR_CHANNEL_BINDING);
	expect_server_first_err(SCRAM_SHA1, m2, sizeof(m2) - 1, SCRAM_ERR_CHANNEL_BINDING);
	assert_string_equal(scram_sasl_condition(SCRAM_ERR_CHANNEL_BINDING), "not-authorized");
}

static void test_client_first_malformed(void **state)
{
	static const struct {
		const char *msg;
		int err;
	} cases[] = {
		{ "n", SCRAM_ERR_MALFORMED },
		{ "n,", SCRAM_ERR_MALFORMED },
		{ "n,,", SCRAM_ERR_MALFORMED },
		{ "x,,n=user,r=abc", SCRAM_ERR_MALFORMED },
		{ "nn,,n=user,r=abc", SCRAM_ERR_MALFORMED },
		{ "p,,n=user,r=abc", SCRAM_ERR_MALFORMED },
		{ "n,b=x,n=user,r=abc", SCRAM_ERR_MALFORMED },
		{ "n,,r=abc,n=user", SCRAM_ERR_MALFORMED },
		{ "n,,n=user", SCRAM_ERR_MALFORMED },
		{ "n,,n=user,r=", SCRAM_ERR_MALFORMED },
		{ "n,,n=user,r=a b", SCRAM_ERR_MALFORMED },
		{ "n,,n=user,r=a\x7f", SCRAM_ERR_MALFORMED },
		{ "n,,n=user,x=abc", SCRAM_ERR_MALFORMED },
		{ "n,,n=user,r=abc,", SCRAM_ERR_MALFORMED },
		{ "n,,n=user,r=abc,1=x", SCRAM_ERR_MALFORMED },
		{ "n,,n=user,r=abc,x", SCRAM_ERR_MALFORMED },
		{ "n,,n=,r=abc", SCRAM_ERR_BAD_USERNAME },
		{ "n,,n=us=2Xer,r=abc", SCRAM_ERR_MALFORMED },
		{ "n,,n=user=,r=abc", SCRAM_ERR_MALFORMED },
		{ "n,,n=user=3,r=abc", SCRAM_ERR_MALFORMED },
		{ "n,,n=us=2cer,r=abc", SCRAM_ERR_MALFORMED },
		{ "n,,n=\xff\xfe,r=abc", SCRAM_ERR_BAD_USERNAME },
		{ "n,,n=a\x07,r=abc", SCRAM_ERR_BAD_USERNAME },
		{ "n,,m=ext,n=user,r=abc", SCRAM_ERR_EXTENSION },
		{ ",,n=user,r=abc", SCRAM_ERR_MALFORMED },
	};
	static const char nul[] = "n,,n=us\0er,r=abc";
	char *big;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		expect_server_first_err(SCRAM_SHA1, cases[i].msg, strlen(cases[i].msg),
					cases[i].err);
	expect_server_first_err(SCRAM_SHA1, nul, sizeof(nul) - 1, SCRAM_ERR_MALFORMED);
	expect_server_first_err(SCRAM_SHA1, "", 0, SCRAM_ERR_MALFORMED);
	big = malloc(SCRAM_MAX_MESSAGE + 2);
	memset(big, 'a', SCRAM_MAX_MESSAGE + 1);
	memcpy(big, "n,,n=user,r=", 12);
	expect_server_first_err(SCRAM_SHA1, big, SCRAM_MAX_MESSAGE + 1, SCRAM_ERR_MALFORMED);
	/* a long but allowed one goes through */
	expect_server_first_err(SCRAM_SHA1, big, SCRAM_MAX_MESSAGE, 0);
	free(big);
	/* Extensions that are not mandatory are ignored. */
	expect_server_first_err(SCRAM_SHA1, "n,,n=user,r=abc,x=1,Y=", 22, 0);
	expect_server_first_err(SCRAM_SHA1, "y,,n=user,r=abc", 15, 0);
	/* the escapes decode: this is user "u,=" */
	lookup_calls = 0;
	expect_server_first_err(SCRAM_SHA1, "n,,n=u=2C=3D,r=abc", 18, 0);
	assert_int_equal(lookup_calls, 1);
	assert_string_equal(last_lookup, "u,=");
}

/* Server side final-step errors, on the RFC 5802 vector. */
static void expect_server_final_err(const char *final, int err)
{
	struct fixture_user u = { "user", "pencil", rfc5802.salt_b64, 4096 };
	struct scram_server *s;
	char *out;
	size_t len;
	int rc;

	s = server_after_first(SCRAM_SHA1, &u, rfc5802.client_first, rfc5802.snonce, &out);
	free(out);
	out = (char *)1;
	rc = scram_server_final(s, final, strlen(final), &out, &len);
	if (rc != err)
		fail_msg("client-final \"%s\": got %d (%s), want %d", final, rc, scram_strerror(rc),
			 err);
	if (rc)
		assert_null(out);
	free(rc ? NULL : out);
	/* a second attempt is refused */
	assert_int_equal(scram_server_final(s, final, strlen(final), &out, &len), SCRAM_ERR_STATE);
	scram_server_free(s);
}

#define R5802 "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j"
#define P5802 "p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="

static void test_client_final_errors(void **state)
{
	(void)state;
	expect_server_final_err("c=biws," R5802 "," P5802, 0);
	/* tampered proof: one bit */
	expect_server_final_err("c=biws," R5802 ",p=v1X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
				SCRAM_ERR_NOT_AUTHORIZED);
	/* non-canonical base64 (unused bits set) decodes to the same bytes,
	 * and is refused anyway */
	expect_server_final_err("c=biws," R5802 ",p=v0X8v3Bz2T0CJGbJQyF0X+HI4Tt=",
				SCRAM_ERR_MALFORMED);
	expect_server_final_err("c=biws," R5802 ",p=w0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
				SCRAM_ERR_NOT_AUTHORIZED);
	/* the nonce must be the whole combined one */
	expect_server_final_err("c=biws,r=fyko+d2lbbFgONRv9qkxdawL," P5802, SCRAM_ERR_NONCE);
	expect_server_final_err("c=biws," R5802 "x," P5802, SCRAM_ERR_NONCE);
	expect_server_final_err("c=biws,r=Fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j," P5802,
				SCRAM_ERR_NONCE);
	/* channel binding data must be the gs2 header */
	expect_server_final_err("c=eSws," R5802 "," P5802, SCRAM_ERR_CHANNEL_BINDING);
	expect_server_final_err("c=," R5802 "," P5802, SCRAM_ERR_CHANNEL_BINDING);
	/* malformed */
	expect_server_final_err("c=biws," R5802, SCRAM_ERR_MALFORMED);
	expect_server_final_err("c=biws," R5802 ",p=", SCRAM_ERR_MALFORMED);
	expect_server_final_err("c=biws," R5802 ",p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts",
				SCRAM_ERR_MALFORMED);
	expect_server_final_err("c=biws," R5802 ",p=v0X8v3Bz2T0CJGbJQyF0X+HI4T!=",
				SCRAM_ERR_MALFORMED);
	expect_server_final_err("c=biws," R5802 ",p=dGVzdA==", SCRAM_ERR_MALFORMED);
	expect_server_final_err(R5802 "," P5802, SCRAM_ERR_MALFORMED);
	expect_server_final_err("c=biws," P5802, SCRAM_ERR_MALFORMED);
	expect_server_final_err("c=bi ws," R5802 "," P5802, SCRAM_ERR_MALFORMED);
	expect_server_final_err(P5802, SCRAM_ERR_MALFORMED);
	expect_server_final_err("c=biws," R5802 "," P5802 ",x=1", SCRAM_ERR_MALFORMED);
	expect_server_final_err("c=biws," R5802 ",1=x," P5802, SCRAM_ERR_MALFORMED);
	expect_server_final_err("", SCRAM_ERR_MALFORMED);
	/* an extension before the proof is fine syntactically, but it is part
	 * of AuthMessage, so the RFC proof no longer matches */
	expect_server_final_err("c=biws," R5802 ",x=1," P5802, SCRAM_ERR_NOT_AUTHORIZED);
}

static void test_state_errors(void **state)
{
	struct fixture_user u = { "user", "pencil", NULL, TEST_ITER };
	struct scram_server *s = scram_server_new(SCRAM_SHA1, test_lookup, &u);
	struct scram_client *c = scram_client_new(SCRAM_SHA1, "user", "pencil", NULL, NULL);
	char *out;
	size_t len;

	(void)state;
	assert_int_equal(scram_server_final(s, "c=biws,r=a,p=AAAA", 17, &out, &len),
			 SCRAM_ERR_STATE);
	assert_int_equal(scram_server_first(s, "n,,n=user,r=a", 13, &out, &len), 0);
	free(out);
	assert_int_equal(scram_server_first(s, "n,,n=user,r=a", 13, &out, &len), SCRAM_ERR_STATE);
	assert_int_equal(scram_server_set_nonce(s, "x"), SCRAM_ERR_STATE);
	assert_int_equal(scram_client_verify(c, "v=AAAA", 6), SCRAM_ERR_STATE);
	assert_int_equal(scram_client_final(c, "r=a,s=AAAA,i=1", 14, &out, &len), SCRAM_ERR_STATE);
	assert_int_equal(scram_client_set_nonce(c, "a,b"), SCRAM_ERR_MALFORMED);
	assert_int_equal(scram_client_set_nonce(c, ""), SCRAM_ERR_MALFORMED);
	scram_server_free(s);
	scram_client_free(c);
}

static int failing_lookup(void *ud, enum scram_hash hash, const char *username,
			  struct scram_cred *cred)
{
	(void)ud;
	(void)hash;
	(void)username;
	(void)cred;
	return SCRAM_ERR_NOMEM;
}

static void test_lookup_failure(void **state)
{
	struct scram_server *s = scram_server_new(SCRAM_SHA256, failing_lookup, NULL);
	char *out;
	size_t len;

	(void)state;
	assert_int_equal(scram_server_first(s, "n,,n=user,r=a", 13, &out, &len), SCRAM_ERR_NOMEM);
	assert_null(out);
	scram_server_free(s);
}

/* Client checks on server-first and server-final. */
static int client_with_server_first(const char *sfirst)
{
	struct scram_client *c = scram_client_new(SCRAM_SHA1, "user", "pencil", NULL, NULL);
	char *out;
	size_t len;
	int rc;

	assert_int_equal(scram_client_set_nonce(c, "abc"), 0);
	assert_int_equal(scram_client_first(c, &out, &len), 0);
	free(out);
	rc = scram_client_final(c, sfirst, strlen(sfirst), &out, &len);
	if (rc == 0)
		free(out);
	else
		assert_null(out);
	scram_client_free(c);
	return rc;
}

static void test_client_checks_server_first(void **state)
{
	(void)state;
	assert_int_equal(client_with_server_first("r=abcdef,s=QSXCR+Q6sek8bf92,i=16"), 0);
	assert_int_equal(client_with_server_first("r=abcdef,s=QSXCR+Q6sek8bf92,i=16,x=y"), 0);
	/* the server must extend our nonce, not replace or merely echo it */
	assert_int_equal(client_with_server_first("r=abc,s=QSXCR+Q6sek8bf92,i=16"),
			 SCRAM_ERR_NONCE);
	assert_int_equal(client_with_server_first("r=xbcdef,s=QSXCR+Q6sek8bf92,i=16"),
			 SCRAM_ERR_NONCE);
	assert_int_equal(client_with_server_first("r=ab,s=QSXCR+Q6sek8bf92,i=16"), SCRAM_ERR_NONCE);
	/* iteration bounds */
	assert_int_equal(client_with_server_first("r=abcdef,s=QSXCR+Q6sek8bf92,i=0"),
			 SCRAM_ERR_ITERATIONS);
	assert_int_equal(client_with_server_first("r=abcdef,s=QSXCR+Q6sek8bf92,i=1000001"),
			 SCRAM_ERR_ITERATIONS);
	assert_int_equal(
		client_with_server_first("r=abcdef,s=QSXCR+Q6sek8bf92,i=99999999999999999999"),
		SCRAM_ERR_ITERATIONS);
	assert_int_equal(client_with_server_first("r=abcdef,s=QSXCR+Q6sek8bf92,i=-1"),
			 SCRAM_ERR_MALFORMED);
	assert_int_equal(client_with_server_first("r=abcdef,s=QSXCR+Q6sek8bf92,i="),
			 SCRAM_ERR_MALFORMED);
	assert_int_equal(client_with_server_first("r=abcdef,s=QSXCR+Q6sek8bf92,i=1x"),
			 SCRAM_ERR_MALFORMED);
	/* salt */
	assert_int_equal(client_with_server_first("r=abcdef,s=,i=16"), SCRAM_ERR_MALFORMED);
	assert_int_equal(client_with_server_first("r=abcdef,s=QSX,i=16"), SCRAM_ERR_MALFORMED);
	/* order, missing parts, extensions */
	assert_int_equal(client_with_server_first("s=QSXCR+Q6sek8bf92,r=abcdef,i=16"),
			 SCRAM_ERR_MALFORMED);
	assert_int_equal(client_with_server_first("r=abcdef,s=QSXCR+Q6sek8bf92"),
			 SCRAM_ERR_MALFORMED);
	assert_int_equal(client_with_server_first("m=x,r=abcdef,s=QSXCR+Q6sek8bf92,i=16"),
			 SCRAM_ERR_EXTENSION);
	assert_int_equal(client_with_server_first(""), SCRAM_ERR_MALFORMED);
}

static void test_client_checks_server_final(void **state)
{
	const struct vector *v = &rfc5802;
	static const struct {
		const char *msg;
		int err;
	} cases[] = {
		{ "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=", 0 },
		{ "v=smF9pqV8S7suAoZWja4dJRkFsKQ=", SCRAM_ERR_SERVER_SIGNATURE },
		{ "v=rmF9pqV8S7suAoZWja4dJRkFsKq=", SCRAM_ERR_MALFORMED },
		{ "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=,x=1", 0 },
		{ "v=dGVzdA==", SCRAM_ERR_SERVER_SIGNATURE },
		{ "v=", SCRAM_ERR_SERVER_SIGNATURE },
		{ "v=rmF9pqV8S7suAoZWja4dJRkFsKQ", SCRAM_ERR_MALFORMED },
		{ "e=invalid-proof", SCRAM_ERR_SERVER_ERROR },
		{ "x=rmF9pqV8S7suAoZWja4dJRkFsKQ=", SCRAM_ERR_MALFORMED },
		{ "", SCRAM_ERR_MALFORMED },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct scram_client *c = scram_client_new(v->hash, "user", "pencil", NULL, NULL);
		char *out;
		size_t len;

		assert_int_equal(scram_client_set_nonce(c, v->cnonce), 0);
		assert_int_equal(scram_client_first(c, &out, &len), 0);
		free(out);
		assert_int_equal(
			scram_client_final(c, v->server_first, strlen(v->server_first), &out, &len),
			0);
		free(out);
		assert_int_equal(scram_client_verify(c, cases[i].msg, strlen(cases[i].msg)),
				 cases[i].err);
		scram_client_free(c);
	}
}

static void test_client_new_errors(void **state)
{
	int err = 0;

	(void)state;
	assert_null(scram_client_new(SCRAM_SHA1, "", "pw", NULL, &err));
	assert_int_equal(err, SCRAM_ERR_BAD_USERNAME);
	assert_null(scram_client_new(SCRAM_SHA1, "a\x07", "pw", NULL, &err));
	assert_int_equal(err, SCRAM_ERR_BAD_USERNAME);
	assert_null(scram_client_new(SCRAM_SHA1, "user", "p\x07w", NULL, &err));
	assert_int_equal(err, SCRAM_ERR_BAD_PASSWORD);
	assert_null(scram_client_new(SCRAM_SHA1, "\xc3\x28", "pw", NULL, &err));
	assert_int_equal(err, SCRAM_ERR_BAD_USERNAME);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_b64_roundtrip),
		cmocka_unit_test(test_b64_strict),
		cmocka_unit_test(test_rfc5802_client),
		cmocka_unit_test(test_rfc5802_server),
		cmocka_unit_test(test_rfc7677_client),
		cmocka_unit_test(test_rfc7677_server),
		cmocka_unit_test(test_plain_verify),
		cmocka_unit_test(test_cred_make),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_exchange_ok),
		cmocka_unit_test(test_exchange_wrong_password),
		cmocka_unit_test(test_exchange_unknown_user),
		cmocka_unit_test(test_exchange_escapes),
		cmocka_unit_test(test_authzid_exposed),
		cmocka_unit_test(test_gs2_y),
		cmocka_unit_test(test_channel_binding_rejected),
		cmocka_unit_test(test_client_first_malformed),
		cmocka_unit_test(test_client_final_errors),
		cmocka_unit_test(test_state_errors),
		cmocka_unit_test(test_lookup_failure),
		cmocka_unit_test(test_client_checks_server_first),
		cmocka_unit_test(test_client_checks_server_final),
		cmocka_unit_test(test_client_new_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
