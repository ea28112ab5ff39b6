/*
 * Unit tests for server/sasl.c: sasl_auth(), sasl_response() and
 * sasl_abort() called on a real accepted connection (chatd_fix.h) with
 * <auth/> and <response/> trees, the result and the exact bytes sent
 * checked. PLAIN's parsing (authzid, empty parts, NULs), base64,
 * mechanisms offered and refused, ANONYMOUS, failed-login throttling, and
 * SCRAM-SHA-1 / SCRAM-SHA-256 against a client computed here from RFC 5802
 * section 3 with OpenSSL alone (checked first against the RFC 5802 and
 * RFC 7677 examples), so common/scram.c is not checked against itself.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "../../server/sasl.h"
#include "../../server/users.h"
#include "b64.h"
#include "chatd_fix.h"

#define SASL_NS "urn:ietf:params:xml:ns:xmpp-sasl"
#define ITER 64 /* iterations of the test accounts: cheap */

static char dir[128], users_path[160], cert_path[160], key_path[160];

/* The accounts (alice/wonderland, bob/builder) and a self-signed
 * certificate, once for every test. */
static int make_files(void **state)
{
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	char err[256];

	snprintf(dir, sizeof(dir), "%s/test_sasl-XXXXXX", tmp);
	if (!mkdtemp(dir))
		return -1;
	snprintf(users_path, sizeof(users_path), "%s/users", dir);
	snprintf(cert_path, sizeof(cert_path), "%s/cert.pem", dir);
	snprintf(key_path, sizeof(key_path), "%s/key.pem", dir);
	if (users_file_set(users_path, "alice", "wonderland", ITER, err, sizeof(err)) != 0 ||
	    users_file_set(users_path, "bob", "builder", ITER, err, sizeof(err)) != 0) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	return fix_make_cert(cert_path, key_path);
}

static int remove_files(void **state)
{
	unlink(users_path);
	unlink(cert_path);
	unlink(key_path);
	rmdir(dir);
	return 0;
}

static int teardown(void **state)
{
	fix_stop();
	return 0;
}

/* chatd with the accounts, PLAIN without TLS and ANONYMOUS, no throttling,
 * then more flags. */
static void start(const char *more1, const char *more2)
{
	const char *flags[] = { "--users",
				users_path,
				"--allow-plaintext-auth",
				"--allow-anonymous",
				"--auth-fail-ip-max",
				"0",
				"--auth-fail-user-max",
				"0",
				more1,
				more2,
				NULL };

	fix_start(flags);
}

/* ------------------------------------------------------------ helpers */

/* <auth mechanism=mech>text</auth> (mech NULL: no attribute; text NULL or
 * "": an empty element). */
static enum sasl_result auth_text(struct cli *cl, const char *mech, const char *text)
{
	struct xnode *n = xnode_new("auth", NS_SASL);
	enum sasl_result r;

	assert_non_null(n);
	if (mech)
		assert_int_equal(xnode_set_attr(n, "mechanism", mech), 0);
	if (text && text[0])
		assert_non_null(xnode_add_text(n, text, strlen(text)));
	r = sasl_auth(cl->c, n);
	xnode_free(n);
	return r;
}

static enum sasl_result response_text(struct cli *cl, const char *text)
{
	struct xnode *n = xnode_new("response", NS_SASL);
	enum sasl_result r;

	assert_non_null(n);
	if (text && text[0])
		assert_non_null(xnode_add_text(n, text, strlen(text)));
	r = sasl_response(cl->c, n);
	xnode_free(n);
	return r;
}

/* The base64 of len bytes ("=" for none), malloc'd. */
static char *b64(const void *msg, size_t len)
{
	char *s = len ? b64_encode_alloc(msg, len) : strdup("=");

	assert_non_null(s);
	return s;
}

static enum sasl_result auth_msg(struct cli *cl, const char *mech, const void *msg, size_t len)
{
	char *s = b64(msg, len);
	enum sasl_result r = auth_text(cl, mech, s);

	free(s);
	return r;
}

static enum sasl_result response_msg(struct cli *cl, const void *msg, size_t len)
{
	char *s = b64(msg, len);
	enum sasl_result r = response_text(cl, s);

	free(s);
	return r;
}

/* Everything sent to the client since the last call: a marker is sent
 * after it, so that "nothing" is a result too. */
static const char *reply(struct cli *cl)
{
	static char out[8192];
	const char *got;
	size_t n;

	conn_send_str(cl->c, "<mark/>");
	assert_true(cli_wait(cl, "<mark/>"));
	got = cli_take(cl);
	n = strlen(got);
	assert_true(n >= 7 && n - 7 < sizeof(out));
	assert_string_equal(got + n - 7, "<mark/>");
	memcpy(out, got, n - 7);
	out[n - 7] = '\0';
	return out;
}

static const char *failure(const char *cond)
{
	static char want[256];

	snprintf(want, sizeof(want), "<failure xmlns='" SASL_NS "'><%s/></failure>", cond);
	return want;
}

#define SUCCESS_EMPTY "<success xmlns='" SASL_NS "'></success>"
#define CHALLENGE_EMPTY "<challenge xmlns='" SASL_NS "'></challenge>"

/* The decoded data of a <challenge/> or <success/> reply, NUL-terminated. */
static char *reply_data(const char *r, const char *elem)
{
	char open[64], close[64];
	const char *a, *b;
	size_t len;
	unsigned char *out;

	snprintf(open, sizeof(open), "<%s xmlns='" SASL_NS "'>", elem);
	snprintf(close, sizeof(close), "</%s>", elem);
	a = strstr(r, open);
	if (!a || strncmp(r, open, strlen(open)) != 0)
		fail_msg("want <%s>, got %s", elem, r);
	a += strlen(open);
	b = strstr(a, close);
	assert_non_null(b);
	assert_string_equal(b, close); /* nothing after it */
	out = b64_decode_alloc(a, (size_t)(b - a), &len);
	assert_non_null(out);
	assert_int_equal(strlen((char *)out), len);
	return (char *)out;
}

/* ---------------------------------------------------- mechanisms offered */

static const char *features(struct cli *cl)
{
	static char out[1024];
	struct xbuf b;

	xbuf_init(&b);
	sasl_features(cl->c, &b);
	snprintf(out, sizeof(out), "%s", b.data ? b.data : "");
	xbuf_free(&b);
	return out;
}

#define MECHS(list) "<mechanisms xmlns='" SASL_NS "'>" list "</mechanisms>"
#define MECH(name) "<mechanism>" name "</mechanism>"

static void test_sasl_mechanisms_offered(void **state)
{
	const char *const users[] = { "--users", users_path, NULL };
	const char *const nobody[] = { NULL };
	const char *const tls_required[] = { "--users",	  users_path, "--tls-cert",    cert_path,
					     "--tls-key", key_path,   "--require-tls", NULL };
	struct cli *cl;

	fix_start(users);
	cl = cli_open();
	/* PLAIN only where TLS protects it, SCRAM strongest first */
	assert_string_equal(features(cl), MECHS(MECH("SCRAM-SHA-256") MECH("SCRAM-SHA-1")));
	cli_close(cl);
	fix_stop();

	start(NULL, NULL);
	cl = cli_open();
	assert_string_equal(features(cl), MECHS(MECH("SCRAM-SHA-256") MECH("SCRAM-SHA-1")
							MECH("PLAIN") MECH("ANONYMOUS")));
	cli_close(cl);
	fix_stop();

	fix_start(nobody);
	cl = cli_open();
	assert_string_equal(features(cl), "");
	cli_close(cl);
	fix_stop();

	/* TLS required and not active: none at all */
	fix_start(tls_required);
	cl = cli_open();
	assert_string_equal(features(cl), "");
	cli_close(cl);
}

/* Mechanisms that are unknown, not offered, or need TLS first: refused
 * without counting as a failed login. */
static void test_sasl_mechanism_refusals(void **state)
{
	const char *const users_tls[] = { "--users",   users_path, "--tls-cert",	 cert_path,
					  "--tls-key", key_path,   "--auth-fail-ip-max", "1",
					  NULL };
	const char *const tls_required[] = { "--users",	  users_path, "--tls-cert",    cert_path,
					     "--tls-key", key_path,   "--require-tls", NULL };
	static const char plain[] = "\0alice\0wonderland";
	struct cli *cl;

	fix_start(users_tls);
	cl = cli_open();
	/* RFC 6120 6.5.4: PLAIN would be fine once TLS protects it */
	assert_int_equal(auth_msg(cl, "PLAIN", plain, sizeof(plain) - 1), SASL_FAILURE);
	assert_string_equal(reply(cl), failure("encryption-required"));
	assert_null(cl->c->user);
	assert_int_equal(auth_text(cl, "DIGEST-MD5", "AAAA"), SASL_FAILURE);
	assert_string_equal(reply(cl), failure("invalid-mechanism"));
	assert_int_equal(auth_text(cl, "scram-sha-1", "AAAA"), SASL_FAILURE);
	assert_string_equal(reply(cl), failure("invalid-mechanism"));
	assert_int_equal(auth_text(cl, NULL, "AAAA"), SASL_FAILURE);
	assert_string_equal(reply(cl), failure("invalid-mechanism"));
	assert_int_equal(auth_text(cl, "ANONYMOUS", NULL), SASL_FAILURE);
	assert_string_equal(reply(cl), failure("invalid-mechanism"));
	assert_int_equal(fix.srv.metrics.auth_failures_total, 5);
	/* none of them counted against the address (its limit is 1) */
	assert_int_equal(fix.srv.metrics.auth_blocked_total, 0);
	assert_int_equal(auth_text(cl, "SCRAM-SHA-1", NULL), SASL_CONTINUE);
	assert_string_equal(reply(cl), CHALLENGE_EMPTY);
	cli_close(cl);
	fix_stop();

	/* PLAIN offered without TLS is no reason to refuse it */
	start(NULL, NULL);
	cl = cli_open();
	assert_int_equal(auth_msg(cl, "PLAIN", plain, sizeof(plain) - 1), SASL_SUCCESS);
	assert_string_equal(reply(cl), SUCCESS_EMPTY);
	cli_close(cl);
	fix_stop();

	fix_start(tls_required);
	cl = cli_open();
	assert_int_equal(auth_text(cl, "SCRAM-SHA-256", NULL), SASL_FAILURE);
	assert_string_equal(reply(cl), failure("encryption-required"));
	assert_null(cl->c->sasl);
	cli_close(cl);
}

/* --------------------------------------------------------------- PLAIN */

struct plain_case {
	const char *msg;
	size_t len; /* sizeof - 1 of the literal: NULs included */
	enum sasl_result result;
	const char *cond; /* NULL: success */
};

#define PC(lit, res, cond)                      \
	{                                       \
		lit, sizeof(lit) - 1, res, cond \
	}

static void run_plain(struct cli *cl, const struct plain_case *cases, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		enum sasl_result r = auth_msg(cl, "PLAIN", cases[i].msg, cases[i].len);
		const char *got = reply(cl);

		if (r != cases[i].result)
			fail_msg("case %zu: result %d, want %d (%s)", i, r, cases[i].result, got);
		assert_string_equal(got, cases[i].cond ? failure(cases[i].cond) : SUCCESS_EMPTY);
		assert_null(cl->c->sasl);
		if (cases[i].cond) {
			assert_null(cl->c->user);
		} else {
			assert_string_equal(cl->c->user, "alice");
			free(cl->c->user);
			cl->c->user = NULL;
		}
	}
}

static void test_sasl_plain_accepted(void **state)
{
	static const struct plain_case cases[] = {
		PC("\0alice\0wonderland", SASL_SUCCESS, NULL),
		/* the user name is nodeprep'ed: the account is alice */
		PC("\0ALICE\0wonderland", SASL_SUCCESS, NULL),
		/* an authzid naming the same user, as a JID or as the name */
		PC("alice@" FIX_DOMAIN "\0alice\0wonderland", SASL_SUCCESS, NULL),
		PC("Alice@EXAMPLE.test\0alice\0wonderland", SASL_SUCCESS, NULL),
		PC("alice\0alice\0wonderland", SASL_SUCCESS, NULL),
	};
	static const char plain[] = "\0alice\0wonderland";
	struct cli *cl;

	start(NULL, NULL);
	cl = cli_open();
	run_plain(cl, cases, sizeof(cases) / sizeof(cases[0]));
	assert_int_equal(fix.srv.metrics.logins_total, 5);
	/* no initial response: an empty challenge asks for it */
	assert_int_equal(auth_text(cl, "PLAIN", NULL), SASL_CONTINUE);
	assert_string_equal(reply(cl), CHALLENGE_EMPTY);
	assert_non_null(cl->c->sasl);
	assert_int_equal(response_msg(cl, plain, sizeof(plain) - 1), SASL_SUCCESS);
	assert_string_equal(reply(cl), SUCCESS_EMPTY);
	assert_string_equal(cl->c->user, "alice");
	assert_int_equal(fix.srv.metrics.auth_failures_total, 0);
	cli_close(cl);
}

static void test_sasl_plain_refused(void **state)
{
	static const struct plain_case cases[] = {
		/* RFC 4616: authzid NUL authcid NUL passwd, no other NUL */
		PC("alicewonderland", SASL_FAILURE, "malformed-request"),
		PC("\0alice", SASL_FAILURE, "malformed-request"),
		PC("\0alice\0wonder\0land", SASL_FAILURE, "malformed-request"),
		PC("\0alice\0wonderland\0", SASL_FAILURE, "malformed-request"),
		PC("", SASL_FAILURE, "malformed-request"), /* "=": present, empty */
		/* empty parts */
		PC("\0\0wonderland", SASL_FAILURE, "not-authorized"),
		PC("\0alice\0", SASL_FAILURE, "not-authorized"),
		/* wrong password, unknown user: the same answer */
		PC("\0alice\0builder", SASL_FAILURE, "not-authorized"),
		PC("\0carol\0wonderland", SASL_FAILURE, "not-authorized"),
		/* not a localpart: '@', bad UTF-8 */
		PC("\0al@ce\0wonderland", SASL_FAILURE, "not-authorized"),
		PC("\0\xff\xfe\0wonderland", SASL_FAILURE, "not-authorized"),
		/* an authzid naming anyone else, or not a bare JID of ours */
		PC("bob@" FIX_DOMAIN "\0alice\0wonderland", SASL_FAILURE, "invalid-authzid"),
		PC("alice@other.test\0alice\0wonderland", SASL_FAILURE, "invalid-authzid"),
		PC("alice@" FIX_DOMAIN "/r\0alice\0wonderland", SASL_FAILURE, "invalid-authzid"),
		PC(FIX_DOMAIN "\0alice\0wonderland", SASL_FAILURE, "invalid-authzid"),
		PC("@@\0alice\0wonderland", SASL_FAILURE, "invalid-authzid"),
	};
	size_t n = sizeof(cases) / sizeof(cases[0]);
	static char longname[2100];
	struct cli *cl;

	start(NULL, NULL);
	cl = cli_open();
	run_plain(cl, cases, n);
	assert_int_equal(fix.srv.metrics.auth_failures_total, n);
	assert_int_equal(fix.srv.metrics.logins_total, 0);
	/* a name longer than any localpart (1023 bytes) */
	longname[0] = '\0';
	memset(longname + 1, 'a', 2000);
	memcpy(longname + 2001, "\0pw", 3);
	assert_int_equal(auth_msg(cl, "PLAIN", longname, 2004), SASL_FAILURE);
	assert_string_equal(reply(cl), failure("not-authorized"));
	/* not base64, or not canonical base64 (RFC 6120 6.4.2) */
	assert_int_equal(auth_text(cl, "PLAIN", "AGFsaWNl!HdvbmRlcmxhbmQ="), SASL_FAILURE);
	assert_string_equal(reply(cl), failure("incorrect-encoding"));
	assert_int_equal(auth_text(cl, "PLAIN", "AGFsaWNlAHdvbmRlcmxhbmQ"), SASL_FAILURE);
	assert_string_equal(reply(cl), failure("incorrect-encoding"));
	assert_int_equal(auth_text(cl, "PLAIN", NULL), SASL_CONTINUE);
	assert_string_equal(reply(cl), CHALLENGE_EMPTY);
	assert_int_equal(response_text(cl, "AGFsaWNl AHdvbmRlcmxhbmQ="), SASL_FAILURE);
	assert_string_equal(reply(cl), failure("incorrect-encoding"));
	assert_null(cl->c->sasl);
	assert_null(cl->c->user);
	cli_close(cl);
}

/* ----------------------------------------------------- ANONYMOUS, abort */

static void test_sasl_anonymous(void **state)
{
	char first[64];
	struct cli *cl;

	start(NULL, NULL);
	cl = cli_open();
	/* any trace data (RFC 4505), or none */
	assert_int_equal(auth_text(cl, "ANONYMOUS", NULL), SASL_SUCCESS);
	assert_string_equal(reply(cl), SUCCESS_EMPTY);
	assert_int_equal(strlen(cl->c->user), 5 + 16);
	assert_int_equal(strncmp(cl->c->user, "anon-", 5), 0);
	assert_int_equal(strspn(cl->c->user + 5, "0123456789abcdef"), 16);
	snprintf(first, sizeof(first), "%s", cl->c->user);
	assert_int_equal(auth_msg(cl, "ANONYMOUS", "trace", 5), SASL_SUCCESS);
	assert_string_equal(reply(cl), SUCCESS_EMPTY);
	assert_string_not_equal(cl->c->user, first);
	cli_close(cl);
}

static void test_sasl_abort_and_stray_response(void **state)
{
	struct cli *cl;

	start(NULL, NULL);
	cl = cli_open();
	assert_int_equal(response_text(cl, "AAAA"), SASL_FAILURE);
	assert_string_equal(reply(cl), failure("malformed-request"));
	assert_int_equal(auth_text(cl, "SCRAM-SHA-256", NULL), SASL_CONTINUE);
	assert_string_equal(reply(cl), CHALLENGE_EMPTY);
	sasl_abort(cl->c);
	assert_string_equal(reply(cl), failure("aborted"));
	assert_null(cl->c->sasl);
	/* the exchange is over: its next step is a stray response */
	assert_int_equal(response_msg(cl, "n,,n=alice,r=abc", 16), SASL_FAILURE);
	assert_string_equal(reply(cl), failure("malformed-request"));
	assert_int_equal(fix.srv.metrics.auth_failures_total, 3);
	cli_close(cl);
}

/* ------------------------------------------------------------ throttling */

static void test_sasl_throttle(void **state)
{
	const char *const flags[] = { "--users",
				      users_path,
				      "--allow-plaintext-auth",
				      "--auth-fail-user-max",
				      "2",
				      "--auth-fail-ip-max",
				      "5",
				      NULL };
	static const char good[] = "\0alice\0wonderland", bad[] = "\0alice\0nope";
	static const char bob[] = "\0bob\0builder";
	struct cli *cl;

	fix_start(flags);
	cl = cli_open();
	assert_int_equal(auth_msg(cl, "PLAIN", bad, sizeof(bad) - 1), SASL_FAILURE);
	assert_string_equal(reply(cl), failure("not-authorized"));
	/* aborts and unknown mechanisms are not guesses */
	for (int i = 0; i < 3; i++) {
		sasl_abort(cl->c);
		assert_string_equal(reply(cl), failure("aborted"));
		assert_int_equal(auth_text(cl, "X-NONE", "AAAA"), SASL_FAILURE);
		assert_string_equal(reply(cl), failure("invalid-mechanism"));
	}
	/* a success forgets the name's failures */
	assert_int_equal(auth_msg(cl, "PLAIN", good, sizeof(good) - 1), SASL_SUCCESS);
	assert_string_equal(reply(cl), SUCCESS_EMPTY);
	assert_int_equal(auth_msg(cl, "PLAIN", bad, sizeof(bad) - 1), SASL_FAILURE);
	assert_string_equal(reply(cl), failure("not-authorized"));
	assert_int_equal(auth_msg(cl, "PLAIN", bad, sizeof(bad) - 1), SASL_FAILURE);
	assert_string_equal(reply(cl), failure("not-authorized"));
	/* another name from the same address is still evaluated */
	assert_int_equal(auth_msg(cl, "PLAIN", bob, sizeof(bob) - 1), SASL_SUCCESS);
	assert_string_equal(reply(cl), SUCCESS_EMPTY);
	/* the name is blocked: not evaluated, nothing answered, even when right */
	assert_int_equal(auth_msg(cl, "PLAIN", good, sizeof(good) - 1), SASL_BLOCKED);
	assert_string_equal(reply(cl), "");
	assert_null(cl->c->sasl);
	assert_int_equal(fix.srv.metrics.auth_blocked_total, 1);
	/* SCRAM too, before any challenge (and before any PBKDF2) */
	assert_int_equal(auth_msg(cl, "SCRAM-SHA-1", "n,,n=alice,r=abcdef", 19), SASL_BLOCKED);
	assert_string_equal(reply(cl), "");
	assert_int_equal(fix.srv.metrics.auth_blocked_total, 2);
	/* the address has failed 5 times now (3 guesses, 2 blocked attempts):
	 * nothing from it is evaluated any more */
	assert_int_equal(auth_msg(cl, "PLAIN", bob, sizeof(bob) - 1), SASL_BLOCKED);
	assert_string_equal(reply(cl), "");
	assert_int_equal(fix.srv.metrics.auth_blocked_total, 3);
	assert_int_equal(fix.srv.metrics.logins_total, 2);
	cli_close(cl);
}

/* ---------------------------------------------------------------- SCRAM */

/* RFC 5802 3: the client's proof and the server's signature for an
 * AuthMessage, from the password, salt and iterations. */
static void scram_calc(enum scram_hash h, const char *password, const unsigned char *salt,
		       size_t salt_len, unsigned iter, const char *auth_message,
		       unsigned char *proof, unsigned char *server_sig)
{
	const EVP_MD *md = h == SCRAM_SHA256 ? EVP_sha256() : EVP_sha1();
	size_t n = h == SCRAM_SHA256 ? 32 : 20;
	unsigned char salted[32], client_key[32], stored_key[32], client_sig[32], server_key[32];
	unsigned len;

	assert_int_equal(PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt, (int)salt_len,
					   (int)iter, md, (int)n, salted),
			 1);
	assert_non_null(HMAC(md, salted, (int)n, (const unsigned char *)"Client Key", 10,
			     client_key, &len));
	assert_int_equal(EVP_Digest(client_key, n, stored_key, &len, md, NULL), 1);
	assert_non_null(HMAC(md, stored_key, (int)n, (const unsigned char *)auth_message,
			     strlen(auth_message), client_sig, &len));
	for (size_t i = 0; i < n; i++)
		proof[i] = client_key[i] ^ client_sig[i];
	assert_non_null(HMAC(md, salted, (int)n, (const unsigned char *)"Server Key", 10,
			     server_key, &len));
	assert_non_null(HMAC(md, server_key, (int)n, (const unsigned char *)auth_message,
			     strlen(auth_message), server_sig, &len));
}

/* The value of attribute a ("r", "s", "i") in a SCRAM message, in out. */
static void scram_attr(const char *msg, char a, char *out, size_t size)
{
	const char *p = msg;

	while (p && !(p[0] == a && p[1] == '='))
		p = (p = strchr(p, ',')) ? p + 1 : NULL;
	if (!p)
		fail_msg("no %c= in %s", a, msg);
	p += 2;
	size_t n = strcspn(p, ",");
	assert_true(n < size);
	memcpy(out, p, n);
	out[n] = '\0';
}

/* client-final-message-without-proof + ",p=" proof for a server-first
 * message, and the v= the server must answer; into final / want_v. */
static void scram_final_for(enum scram_hash h, const char *password, const char *first_bare,
			    const char *server_first, const char *cbind, const char *nonce,
			    char *final, size_t size, char *want_v, size_t vsize)
{
	char salt_b64[128], iter[16], r[256], auth_message[1024];
	char proof_b64[B64_ENCODED_LEN(32) + 1], sig_b64[B64_ENCODED_LEN(32) + 1];
	unsigned char salt[64], proof[32], sig[32];
	size_t n = h == SCRAM_SHA256 ? 32 : 20;
	long salt_len;

	scram_attr(server_first, 's', salt_b64, sizeof(salt_b64));
	scram_attr(server_first, 'i', iter, sizeof(iter));
	scram_attr(server_first, 'r', r, sizeof(r));
	salt_len = b64_decode(salt_b64, strlen(salt_b64), salt, sizeof(salt));
	assert_true(salt_len > 0);
	snprintf(final, size, "c=%s,r=%s", cbind, nonce ? nonce : r);
	snprintf(auth_message, sizeof(auth_message), "%s,%s,%s", first_bare, server_first, final);
	scram_calc(h, password, salt, (size_t)salt_len, (unsigned)atoi(iter), auth_message, proof,
		   sig);
	assert_true(b64_encode(proof, n, proof_b64, sizeof(proof_b64)) > 0);
	assert_true(b64_encode(sig, n, sig_b64, sizeof(sig_b64)) > 0);
	snprintf(final + strlen(final), size - strlen(final), ",p=%s", proof_b64);
	snprintf(want_v, vsize, "v=%s", sig_b64);
}

/* The helper itself against the examples of RFC 5802 5 and RFC 7677 3. */
static void test_sasl_scram_calc_rfc_vectors(void **state)
{
	char final[256], v[64];

	scram_final_for(SCRAM_SHA1, "pencil", "n=user,r=fyko+d2lbbFgONRv9qkxdawL",
			"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
			"biws", NULL, final, sizeof(final), v, sizeof(v));
	assert_string_equal(final, "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p="
				   "v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=");
	assert_string_equal(v, "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=");
	scram_final_for(SCRAM_SHA256, "pencil", "n=user,r=rOprNGfwEbeRWgbNEkqO",
			"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
			"s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
			"biws", NULL, final, sizeof(final), v, sizeof(v));
	assert_string_equal(final, "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
				   "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
	assert_string_equal(v, "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
}

#define CNONCE "rOprNGfwEbeRWgbNEkqO"

struct scram_try {
	enum scram_hash h;
	const char *gs2;      /* "n,," */
	const char *user;     /* n= */
	const char *password; /* for the proof */
	const char *cbind;    /* c=, NULL: the base64 of gs2 */
	const char *nonce;    /* r= of the final message, NULL: the server's */
	int initial;	      /* client-first in <auth/> (else in a <response/>) */
};

/* Runs an exchange up to the end; returns the result of the last step and
 * leaves its reply (decoded v= on success) in out. */
static enum sasl_result scram_run(struct cli *cl, const struct scram_try *t, char *out, size_t size)
{
	const char *mech = t->h == SCRAM_SHA256 ? "SCRAM-SHA-256" : "SCRAM-SHA-1";
	char first[1200], final[512], want_v[64], r[256], cbind[64];
	const char *bare;
	enum sasl_result res;
	char *server_first;

	snprintf(first, sizeof(first), "%sn=%s,r=" CNONCE, t->gs2, t->user);
	bare = strstr(first, "n=");
	if (t->initial) {
		res = auth_msg(cl, mech, first, strlen(first));
	} else {
		assert_int_equal(auth_text(cl, mech, NULL), SASL_CONTINUE);
		assert_string_equal(reply(cl), CHALLENGE_EMPTY);
		res = response_msg(cl, first, strlen(first));
	}
	if (res != SASL_CONTINUE) {
		snprintf(out, size, "%s", reply(cl));
		return res;
	}
	server_first = reply_data(reply(cl), "challenge");
	/* r= extends our nonce; salt and iterations are the account's */
	scram_attr(server_first, 'r', r, sizeof(r));
	assert_int_equal(strncmp(r, CNONCE, strlen(CNONCE)), 0);
	assert_true(strlen(r) >= strlen(CNONCE) + 16);
	assert_null(strchr(r, ','));
	if (t->cbind)
		snprintf(cbind, sizeof(cbind), "%s", t->cbind);
	else
		assert_true(b64_encode(t->gs2, strlen(t->gs2), cbind, sizeof(cbind)) > 0);
	scram_final_for(t->h, t->password, bare, server_first, cbind, t->nonce, final,
			sizeof(final), want_v, sizeof(want_v));
	free(server_first);
	res = response_msg(cl, final, strlen(final));
	const char *got = reply(cl);
	if (res == SASL_SUCCESS) {
		char *v = reply_data(got, "success");
		/* the server proves it knows the credentials too */
		assert_string_equal(v, want_v);
		snprintf(out, size, "%s", v);
		free(v);
	} else {
		snprintf(out, size, "%s", got);
	}
	return res;
}

static void test_sasl_scram_login(void **state)
{
	static const struct scram_try ok[] = {
		{ SCRAM_SHA256, "n,,", "alice", "wonderland", NULL, NULL, 1 },
		{ SCRAM_SHA1, "n,,", "alice", "wonderland", NULL, NULL, 1 },
		{ SCRAM_SHA256, "n,,", "bob", "builder", NULL, NULL, 0 },
		{ SCRAM_SHA1, "n,,", "bob", "builder", NULL, NULL, 0 },
		/* the client could bind but thinks we cannot: true (RFC 5802 6) */
		{ SCRAM_SHA256, "y,,", "alice", "wonderland", NULL, NULL, 1 },
		/* an authzid naming the user itself */
		{ SCRAM_SHA256, "n,a=alice@" FIX_DOMAIN ",", "alice", "wonderland", NULL, NULL, 1 },
	};
	char out[512];
	struct cli *cl;

	start(NULL, NULL);
	cl = cli_open();
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		enum sasl_result r = scram_run(cl, &ok[i], out, sizeof(out));

		if (r != SASL_SUCCESS)
			fail_msg("case %zu: %d %s", i, r, out);
		assert_string_equal(cl->c->user, ok[i].user);
		assert_null(cl->c->sasl);
	}
	/* the name in any case logs in to the account (the store nodepreps) */
	const struct scram_try upper = {
		SCRAM_SHA256, "n,,", "ALICE", "wonderland", NULL, NULL, 1
	};
	assert_int_equal(scram_run(cl, &upper, out, sizeof(out)), SASL_SUCCESS);
	assert_string_equal(cl->c->user, "alice");
	assert_int_equal(fix.srv.metrics.logins_total, sizeof(ok) / sizeof(ok[0]) + 1);
	assert_int_equal(fix.srv.metrics.auth_failures_total, 0);
	cli_close(cl);
}

struct scram_bad {
	struct scram_try t;
	int at_first; /* refused at client-first: no challenge */
	const char *cond;
};

static void test_sasl_scram_refused(void **state)
{
	static const struct scram_bad bad[] = {
		/* wrong password; unknown user: the same, and only at the end */
		{ { SCRAM_SHA256, "n,,", "alice", "builder", NULL, NULL, 1 }, 0, "not-authorized" },
		{ { SCRAM_SHA1, "n,,", "alice", "builder", NULL, NULL, 0 }, 0, "not-authorized" },
		{ { SCRAM_SHA256, "n,,", "carol", "carol", NULL, NULL, 1 }, 0, "not-authorized" },
		/* a nonce other than the combined one */
		{ { SCRAM_SHA256, "n,,", "alice", "wonderland", NULL, CNONCE, 1 },
		  0,
		  "not-authorized" },
		{ { SCRAM_SHA1, "n,,", "alice", "wonderland", NULL, CNONCE "x", 1 },
		  0,
		  "not-authorized" },
		/* c= that is not our gs2 header */
		{ { SCRAM_SHA256, "y,,", "alice", "wonderland", "biws", NULL, 1 },
		  0,
		  "not-authorized" },
		{ { SCRAM_SHA256, "n,,", "alice", "wonderland", "eSws", NULL, 1 },
		  0,
		  "not-authorized" },
		{ { SCRAM_SHA256, "n,,", "alice", "wonderland", "bi#s", NULL, 1 },
		  0,
		  "malformed-request" },
		/* an authzid naming someone else: decided once the user is proven */
		{ { SCRAM_SHA256, "n,a=bob@" FIX_DOMAIN ",", "alice", "wonderland", NULL, NULL, 1 },
		  0,
		  "invalid-authzid" },
		/* channel binding asked for: we offer no -PLUS mechanism */
		{ { SCRAM_SHA256, "p=tls-unique,,", "alice", "wonderland", NULL, NULL, 1 },
		  1,
		  "not-authorized" },
		/* client-first syntax */
		{ { SCRAM_SHA256, "x,,", "alice", "wonderland", NULL, NULL, 1 },
		  1,
		  "malformed-request" },
		{ { SCRAM_SHA256, "n,", "alice", "wonderland", NULL, NULL, 1 },
		  1,
		  "malformed-request" },
		{ { SCRAM_SHA1, "n,,m=ext,", "alice", "wonderland", NULL, NULL, 1 },
		  1,
		  "malformed-request" },
		{ { SCRAM_SHA256, "n,,", "", "wonderland", NULL, NULL, 1 }, 1, "not-authorized" },
		{ { SCRAM_SHA256, "n,,", "al=ice", "wonderland", NULL, NULL, 1 },
		  1,
		  "malformed-request" },
	};
	static char huge[5000];
	char out[512];
	struct cli *cl;

	start(NULL, NULL);
	cl = cli_open();
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint64_t challenges = fix.srv.metrics.bytes_out_total;
		enum sasl_result r = scram_run(cl, &bad[i].t, out, sizeof(out));

		if (r != SASL_FAILURE || strcmp(out, failure(bad[i].cond)) != 0)
			fail_msg("case %zu: %d %s, want %s", i, r, out, failure(bad[i].cond));
		/* refused at client-first: only the <failure/> was sent */
		if (bad[i].at_first)
			assert_int_equal(fix.srv.metrics.bytes_out_total - challenges,
					 strlen(out) + strlen("<mark/>"));
		assert_null(cl->c->sasl);
		assert_null(cl->c->user);
	}
	/* longer than any SCRAM message */
	memcpy(huge, "n,,n=", 5);
	memset(huge + 5, 'a', sizeof(huge) - 5 - 1);
	assert_int_equal(auth_msg(cl, "SCRAM-SHA-256", huge, sizeof(huge) - 1), SASL_FAILURE);
	assert_string_equal(reply(cl), failure("malformed-request"));
	/* a second response after the exchange is over */
	assert_int_equal(response_msg(cl, "c=biws", 6), SASL_FAILURE);
	assert_string_equal(reply(cl), failure("malformed-request"));
	/* bad base64 in a response */
	assert_int_equal(auth_text(cl, "SCRAM-SHA-1", NULL), SASL_CONTINUE);
	assert_string_equal(reply(cl), CHALLENGE_EMPTY);
	assert_int_equal(response_text(cl, "bi,,"), SASL_FAILURE);
	assert_string_equal(reply(cl), failure("incorrect-encoding"));
	assert_int_equal(fix.srv.metrics.logins_total, 0);
	cli_close(cl);
}

/* --auth-any: SCRAM with the user name as password, credentials cached. */
static void test_sasl_scram_auth_any(void **state)
{
	const char *const flags[] = { "--auth-any", NULL };
	static const struct scram_try t[] = {
		{ SCRAM_SHA256, "n,,", "dave", "dave", NULL, NULL, 1 },
		{ SCRAM_SHA256, "n,,", "dave", "dave", NULL, NULL, 1 },
		{ SCRAM_SHA1, "n,,", "dave", "dave", NULL, NULL, 0 },
		{ SCRAM_SHA256, "n,,", "erin", "dave", NULL, NULL, 1 },
	};
	char out[512];
	struct cli *cl;

	fix_start(flags);
	cl = cli_open();
	for (int i = 0; i < 3; i++) {
		assert_int_equal(scram_run(cl, &t[i], out, sizeof(out)), SASL_SUCCESS);
		assert_string_equal(cl->c->user, "dave");
	}
	assert_int_equal(scram_run(cl, &t[3], out, sizeof(out)), SASL_FAILURE);
	assert_string_equal(out, failure("not-authorized"));
	cli_close(cl);
}

/* SCRAM names are counted under the account they log in to: "ALICE" is
 * alice (the store nodepreps), so case variants share alice's count. */
static void test_sasl_throttle_scram_name_case(void **state)
{
	const char *const flags[] = { "--users",
				      users_path,
				      "--allow-plaintext-auth",
				      "--auth-fail-user-max",
				      "2",
				      "--auth-fail-ip-max",
				      "0",
				      NULL };
	static const struct scram_try wrong[] = {
		{ SCRAM_SHA256, "n,,", "Alice", "nope", NULL, NULL, 1 },
		{ SCRAM_SHA1, "n,,", "aLICE", "nope", NULL, NULL, 1 },
	};
	static const char good[] = "\0alice\0wonderland";
	char out[512];
	struct cli *cl;

	fix_start(flags);
	cl = cli_open();
	for (int i = 0; i < 2; i++) {
		assert_int_equal(scram_run(cl, &wrong[i], out, sizeof(out)), SASL_FAILURE);
		assert_string_equal(out, failure("not-authorized"));
	}
	/* alice has failed twice: no more evaluations, in any case or mechanism */
	assert_int_equal(auth_msg(cl, "SCRAM-SHA-256", "n,,n=ALICE,r=abcdef", 19), SASL_BLOCKED);
	assert_string_equal(reply(cl), "");
	assert_int_equal(auth_msg(cl, "PLAIN", good, sizeof(good) - 1), SASL_BLOCKED);
	assert_string_equal(reply(cl), "");
	assert_int_equal(fix.srv.metrics.auth_blocked_total, 2);
	assert_int_equal(fix.srv.metrics.logins_total, 0);
	cli_close(cl);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_sasl_mechanisms_offered, teardown),
		cmocka_unit_test_teardown(test_sasl_mechanism_refusals, teardown),
		cmocka_unit_test_teardown(test_sasl_plain_accepted, teardown),
		cmocka_unit_test_teardown(test_sasl_plain_refused, teardown),
		cmocka_unit_test_teardown(test_sasl_anonymous, teardown),
		cmocka_unit_test_teardown(test_sasl_abort_and_stray_response, teardown),
		cmocka_unit_test_teardown(test_sasl_throttle, teardown),
		cmocka_unit_test_teardown(test_sasl_throttle_scram_name_case, teardown),
		cmocka_unit_test(test_sasl_scram_calc_rfc_vectors),
		cmocka_unit_test_teardown(test_sasl_scram_login, teardown),
		cmocka_unit_test_teardown(test_sasl_scram_refused, teardown),
		cmocka_unit_test_teardown(test_sasl_scram_auth_any, teardown),
	};

	return cmocka_run_group_tests(tests, make_files, remove_files);
}
