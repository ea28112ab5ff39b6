/*
 * SASL for client streams: the mechanisms feature and the SCRAM, PLAIN and
 * ANONYMOUS exchanges.
 */
#include "sasl.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authlimit.h"
#include "b64.h"
#include "conn.h"
#include "jid.h"
#include "log.h"
#include "scram.h"
#include "srv.h"
#include "users.h"
#include "xmppns.h"

/* Entries per hash in the --auth-any credential cache (direct-mapped). */
#define SASL_CACHE_SLOTS 1024
#define SASL_AUTH_ANY_SALT "chatd auth-any salt v1:"

enum sasl_mech { MECH_SCRAM_SHA256, MECH_SCRAM_SHA1, MECH_PLAIN, MECH_ANONYMOUS, MECH_COUNT };

static const char *const mech_names[MECH_COUNT] = {
	"SCRAM-SHA-256",
	"SCRAM-SHA-1",
	"PLAIN",
	"ANONYMOUS",
};

struct sasl {
	enum sasl_mech mech;
	int started;		    /* the first message was seen */
	int blocked;		    /* the SCRAM lookup found the name blocked */
	struct scram_server *scram; /* SCRAM mechanisms */
	char *tried;		    /* the user name tried, once known (for throttling) */
};

struct cache_slot {
	char *user; /* NULL when empty */
	struct scram_cred cred;
};

struct sasl_cache {
	struct cache_slot slots[SCRAM_HASH_COUNT][SASL_CACHE_SLOTS];
};

struct sasl_cache *sasl_cache_new(void)
{
	return calloc(1, sizeof(struct sasl_cache));
}

void sasl_cache_free(struct sasl_cache *cache)
{
	if (!cache)
		return;
	for (int h = 0; h < SCRAM_HASH_COUNT; h++)
		for (int i = 0; i < SASL_CACHE_SLOTS; i++)
			free(cache->slots[h][i].user);
	OPENSSL_cleanse(cache, sizeof(*cache));
	free(cache);
}

void sasl_free(struct sasl *s)
{
	if (!s)
		return;
	scram_server_free(s->scram);
	free(s->tried);
	free(s);
}

static int mech_offered(const struct conn *c, enum sasl_mech m)
{
	const struct config *cfg = c->srv->cfg;

	if (cfg->require_tls && !c->tls)
		return 0;
	switch (m) {
	case MECH_SCRAM_SHA256:
	case MECH_SCRAM_SHA1:
		return cfg->auth_any || c->srv->users;
	case MECH_PLAIN:
		return (cfg->auth_any || c->srv->users) &&
		       (c->tls || cfg->allow_plaintext_auth || cfg->auth_any);
	case MECH_ANONYMOUS:
		return cfg->allow_anonymous;
	default:
		return 0;
	}
}

void sasl_features(struct conn *c, struct xbuf *out)
{
	int any = 0;

	for (int m = 0; m < MECH_COUNT; m++) {
		if (!mech_offered(c, (enum sasl_mech)m))
			continue;
		if (!any++)
			xbuf_puts(out, "<mechanisms xmlns='" NS_SASL "'>");
		xbuf_puts(out, "<mechanism>");
		xbuf_puts(out, mech_names[m]);
		xbuf_puts(out, "</mechanism>");
	}
	if (any)
		xbuf_puts(out, "</mechanisms>");
}

/* ------------------------------------------------------------- replies */

/* Whether a failure counts against the address and name: guesses and
 * garbage do, a client's own abort or our lack of memory do not. */
static int sasl_fail_counts(const char *cond)
{
	return strcmp(cond, "aborted") != 0 && strcmp(cond, "temporary-auth-failure") != 0 &&
	       strcmp(cond, "invalid-mechanism") != 0 && strcmp(cond, "encryption-required") != 0;
}

static enum sasl_result sasl_fail(struct conn *c, const char *cond, const char *why)
{
	char q[256];

	if (sasl_fail_counts(cond))
		authlimit_failed(c->srv->authlimit, &c->peer.sa, c->sasl ? c->sasl->tried : NULL,
				 conn_now(c));
	c->srv->metrics.auth_failures_total++;
	conn_log(c, LOG_INFO, "auth_failed", "mech=%s condition=%s why=%s",
		 c->sasl ? mech_names[c->sasl->mech] : "-", cond, log_quote(q, sizeof(q), why));
	sasl_free(c->sasl);
	c->sasl = NULL;
	conn_send_str(c, "<failure xmlns='" NS_SASL "'><");
	conn_send_str(c, cond);
	conn_send_str(c, "/></failure>");
	return SASL_FAILURE;
}

/* Sends <challenge> or <success> with data base64-encoded ("=" for none in a
 * challenge is not needed: an empty element means empty data). */
static int sasl_send(struct conn *c, const char *elem, const char *data, size_t len)
{
	char *b64 = NULL;
	struct xbuf b;

	if (len) {
		b64 = b64_encode_alloc(data, len);
		if (!b64)
			return -ENOMEM;
	}
	xbuf_init(&b);
	xbuf_puts(&b, "<");
	xbuf_puts(&b, elem);
	xbuf_puts(&b, " xmlns='" NS_SASL "'>");
	xbuf_puts(&b, b64 ? b64 : "");
	xbuf_puts(&b, "</");
	xbuf_puts(&b, elem);
	xbuf_puts(&b, ">");
	free(b64);
	if (!b.data)
		return -ENOMEM;
	conn_send(c, b.data, b.len);
	xbuf_free(&b);
	return 0;
}

/* Too many failures from this address or for this name: nothing is
 * evaluated or answered; the session holds the stream, then closes it. */
static enum sasl_result sasl_block(struct conn *c)
{
	const char *user = c->sasl ? c->sasl->tried : NULL;
	char q[160];

	authlimit_failed(c->srv->authlimit, &c->peer.sa, user, conn_now(c));
	c->srv->metrics.auth_blocked_total++;
	conn_log(c, LOG_INFO, "auth_blocked", "user=%s", log_quote(q, sizeof(q), user ? user : ""));
	sasl_free(c->sasl);
	c->sasl = NULL;
	return SASL_BLOCKED;
}

/* Remembers the name tried; 1 when it is blocked. */
static int sasl_tried(struct conn *c, const char *user)
{
	if (!c->sasl->tried)
		c->sasl->tried = strndup(user, 1024);
	return authlimit_blocked(c->srv->authlimit, &c->peer.sa, user, conn_now(c));
}

static enum sasl_result sasl_succeed(struct conn *c, char *user, const char *data, size_t len)
{
	free(c->user);
	c->user = user;
	if (sasl_send(c, "success", data, len) != 0) {
		free(c->user);
		c->user = NULL;
		return sasl_fail(c, "temporary-auth-failure", "out of memory");
	}
	c->srv->metrics.logins_total++;
	authlimit_succeeded(c->srv->authlimit, user);
	conn_log(c, LOG_DEBUG, "auth", "mech=%s user=%s", mech_names[c->sasl->mech], user);
	sasl_free(c->sasl);
	c->sasl = NULL;
	return SASL_SUCCESS;
}

/* --------------------------------------------------------------- PLAIN */

/* An authorization identity may only name the authenticated user itself
 * ("user@domain" or "user"): chatd has no rules to act as someone else
 * (RFC 6120 6.4.6). */
static int authzid_ok(const struct conn *c, const char *authzid, const char *node)
{
	struct jid z = { 0 };
	int ok;

	if (!authzid || !authzid[0])
		return 1;
	ok = jid_parse(authzid, &z) == 0 &&
	     ((z.node && strcmp(z.node, node) == 0 && !z.resource &&
	       strcmp(z.domain, c->srv->domain) == 0) ||
	      (!z.node && !z.resource && strcmp(z.domain, node) == 0));
	jid_clear(&z);
	return ok;
}

static enum sasl_result sasl_plain(struct conn *c, const unsigned char *msg, size_t len)
{
	const char *authzid = (const char *)msg, *authcid, *pass;
	size_t zlen, clen;
	char *node = NULL;
	int r;

	/* authzid NUL authcid NUL passwd (RFC 4616); no other NUL. */
	zlen = strnlen(authzid, len);
	if (zlen >= len)
		return sasl_fail(c, "malformed-request", "PLAIN without separators");
	authcid = authzid + zlen + 1;
	clen = strnlen(authcid, len - zlen - 1);
	if (zlen + 1 + clen >= len)
		return sasl_fail(c, "malformed-request", "PLAIN without password");
	pass = authcid + clen + 1;
	if (strlen(pass) != len - zlen - clen - 2)
		return sasl_fail(c, "malformed-request", "NUL in PLAIN password");
	if (clen == 0)
		return sasl_fail(c, "not-authorized", "empty user name");
	r = jid_prep_node(authcid, &node);
	if (sasl_tried(c, r == 0 ? node : authcid)) {
		free(node);
		return sasl_block(c);
	}
	if (r != 0)
		return sasl_fail(c, "not-authorized", "user name is not a valid localpart");
	if (!authzid_ok(c, authzid, node)) {
		free(node);
		return sasl_fail(c, "invalid-authzid", "authzid names someone else");
	}
	if (c->srv->cfg->auth_any)
		return sasl_succeed(c, node, NULL, 0);
	if (!c->srv->users || users_verify_plain(c->srv->users, node, pass) != 0) {
		free(node);
		return sasl_fail(c, "not-authorized", "wrong user name or password");
	}
	return sasl_succeed(c, node, NULL, 0);
}

/* ---------------------------------------------------------------- SCRAM */

/* --auth-any: credentials with the user name as password and a salt derived
 * from the name, so every login of a name gets the same ones. */
static int auth_any_lookup(void *ud, enum scram_hash hash, const char *username,
			   struct scram_cred *cred)
{
	struct sasl_cache *cache = ud;
	unsigned char salt[EVP_MAX_MD_SIZE];
	unsigned int saltlen = 0;
	uint64_t h = 1469598103934665603ull;
	struct cache_slot *slot;
	EVP_MD_CTX *md;
	int r;

	for (const char *p = username; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ull;
	slot = &cache->slots[hash][h % SASL_CACHE_SLOTS];
	if (slot->user && strcmp(slot->user, username) == 0) {
		*cred = slot->cred;
		return 0;
	}
	md = EVP_MD_CTX_new();
	if (!md)
		return SCRAM_ERR_NOMEM;
	r = EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
	    EVP_DigestUpdate(md, SASL_AUTH_ANY_SALT, strlen(SASL_AUTH_ANY_SALT)) == 1 &&
	    EVP_DigestUpdate(md, username, strlen(username)) == 1 &&
	    EVP_DigestFinal_ex(md, salt, &saltlen) == 1;
	EVP_MD_CTX_free(md);
	if (!r)
		return SCRAM_ERR_CRYPTO;
	r = scram_cred_derive(hash, username, salt, SCRAM_SALT_LEN, SCRAM_DEFAULT_ITERATIONS, cred);
	if (r != 0)
		return r == SCRAM_ERR_BAD_PASSWORD ? SCRAM_ERR_UNKNOWN_USER : r;
	char *copy = strdup(username);
	if (copy) {
		free(slot->user);
		slot->user = copy;
		slot->cred = *cred;
	}
	return 0;
}

static enum sasl_result sasl_scram_step(struct conn *c, const unsigned char *msg, size_t len)
{
	struct sasl *s = c->sasl;
	char *out = NULL, *node = NULL;
	size_t outlen = 0;
	int r;

	if (!s->started) {
		s->started = 1;
		r = scram_server_first(s->scram, (const char *)msg, len, &out, &outlen);
		if (r != 0 && s->blocked)
			return sasl_block(c);
		if (r != 0)
			return sasl_fail(c, scram_sasl_condition(r), scram_strerror(r));
		r = sasl_send(c, "challenge", out, outlen);
		free(out);
		if (r != 0)
			return sasl_fail(c, "temporary-auth-failure", "out of memory");
		return SASL_CONTINUE;
	}
	r = scram_server_final(s->scram, (const char *)msg, len, &out, &outlen);
	if (r != 0)
		return sasl_fail(c, scram_sasl_condition(r), scram_strerror(r));
	if (jid_prep_node(scram_server_username(s->scram), &node) != 0) {
		free(out);
		return sasl_fail(c, "not-authorized", "user name is not a valid localpart");
	}
	if (!authzid_ok(c, scram_server_authzid(s->scram), node)) {
		free(out);
		free(node);
		return sasl_fail(c, "invalid-authzid", "authzid names someone else");
	}
	enum sasl_result res = sasl_succeed(c, node, out, outlen);
	free(out);
	return res;
}

/* The SCRAM lookup: a blocked name costs nothing (not even the PBKDF2 of
 * an --auth-any name); others go to --users or the --auth-any cache. */
static int sasl_lookup(void *ud, enum scram_hash hash, const char *username,
		       struct scram_cred *cred)
{
	struct conn *c = ud;
	char *node = NULL;
	int blocked;

	/* Counted under the account's name, as PLAIN does: the store
	 * nodepreps, so "ALICE" logs in as alice and shares her count. */
	if (jid_prep_node(username, &node) != 0)
		node = NULL;
	blocked = sasl_tried(c, node ? node : username);
	free(node);
	if (blocked) {
		c->sasl->blocked = 1;
		return SCRAM_ERR_NOT_AUTHORIZED;
	}
	if (c->srv->cfg->auth_any)
		return auth_any_lookup(c->srv->sasl_cache, hash, username, cred);
	return users_scram_lookup(c->srv->users, hash, username, cred);
}

/* ----------------------------------------------------------- exchange */

/* Decodes the text of an <auth/> or <response/>. *present = 0 when the
 * element is empty (no initial response), "=" is a present empty message.
 * Returns the buffer (malloc'd, NUL-terminated), or NULL on bad base64
 * (*len = 0) or out of memory (*len = (size_t)-1). */
static unsigned char *sasl_payload(const struct xnode *n, int *present, size_t *len)
{
	char *text = xnode_text(n);
	unsigned char *out;

	*present = 0;
	*len = (size_t)-1;
	if (!text)
		return NULL;
	if (text[0] == '\0' || strcmp(text, "=") == 0) {
		*present = text[0] == '=';
		free(text);
		*len = 0;
		return (unsigned char *)calloc(1, 1);
	}
	*present = 1;
	out = b64_decode_alloc(text, strlen(text), len);
	free(text);
	return out;
}

static enum sasl_result sasl_message(struct conn *c, const unsigned char *msg, size_t len)
{
	char name[40];

	switch (c->sasl->mech) {
	case MECH_PLAIN:
		return sasl_plain(c, msg, len);
	case MECH_ANONYMOUS: {
		unsigned char rnd[8];
		if (RAND_bytes(rnd, sizeof(rnd)) != 1)
			return sasl_fail(c, "temporary-auth-failure", "no randomness");
		snprintf(name, sizeof(name), "anon-%02x%02x%02x%02x%02x%02x%02x%02x", rnd[0],
			 rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
		char *user = strdup(name);
		if (!user)
			return sasl_fail(c, "temporary-auth-failure", "out of memory");
		return sasl_succeed(c, user, NULL, 0);
	}
	default:
		return sasl_scram_step(c, msg, len);
	}
}

enum sasl_result sasl_auth(struct conn *c, const struct xnode *auth)
{
	const char *mech = xnode_attr(auth, "mechanism");
	enum sasl_mech m = MECH_COUNT;
	unsigned char *msg;
	size_t len;
	int present;

	sasl_free(c->sasl);
	c->sasl = NULL;
	if (authlimit_blocked(c->srv->authlimit, &c->peer.sa, NULL, conn_now(c)))
		return sasl_block(c);
	if (c->srv->cfg->require_tls && !c->tls)
		return sasl_fail(c, "encryption-required", "TLS is required first");
	for (int i = 0; mech && i < MECH_COUNT; i++)
		if (strcmp(mech, mech_names[i]) == 0)
			m = (enum sasl_mech)i;
	if (m == MECH_PLAIN && !mech_offered(c, m) && !c->tls && c->srv->tls_ctx &&
	    (c->srv->cfg->auth_any || c->srv->users))
		/* RFC 6120 6.5.4: PLAIN is fine once TLS protects it. */
		return sasl_fail(c, "encryption-required", "PLAIN needs TLS");
	if (m == MECH_COUNT || !mech_offered(c, m))
		return sasl_fail(c, "invalid-mechanism", mech ? mech : "no mechanism");
	c->sasl = calloc(1, sizeof(*c->sasl));
	if (!c->sasl)
		return sasl_fail(c, "temporary-auth-failure", "out of memory");
	c->sasl->mech = m;
	if (m == MECH_SCRAM_SHA256 || m == MECH_SCRAM_SHA1) {
		enum scram_hash h = m == MECH_SCRAM_SHA256 ? SCRAM_SHA256 : SCRAM_SHA1;
		c->sasl->scram = scram_server_new(h, sasl_lookup, c);
		if (!c->sasl->scram)
			return sasl_fail(c, "temporary-auth-failure", "out of memory");
	}
	msg = sasl_payload(auth, &present, &len);
	if (!msg)
		return sasl_fail(c, len == 0 ? "incorrect-encoding" : "temporary-auth-failure",
				 "bad base64 in auth");
	if (!present && m != MECH_ANONYMOUS) {
		/* No initial response: an empty challenge asks for it. */
		free(msg);
		if (sasl_send(c, "challenge", NULL, 0) != 0)
			return sasl_fail(c, "temporary-auth-failure", "out of memory");
		return SASL_CONTINUE;
	}
	enum sasl_result r = sasl_message(c, msg, len);
	free(msg);
	return r;
}

enum sasl_result sasl_response(struct conn *c, const struct xnode *resp)
{
	unsigned char *msg;
	size_t len;
	int present;

	if (!c->sasl)
		return sasl_fail(c, "malformed-request", "response outside an exchange");
	msg = sasl_payload(resp, &present, &len);
	if (!msg)
		return sasl_fail(c, len == 0 ? "incorrect-encoding" : "temporary-auth-failure",
				 "bad base64 in response");
	enum sasl_result r = sasl_message(c, msg, len);
	free(msg);
	return r;
}

void sasl_abort(struct conn *c)
{
	sasl_fail(c, "aborted", "client aborted");
}
