/*
 * SCRAM (RFC 5802, RFC 7677). The parsers work on length-delimited input
 * split at commas; attribute order is fixed by the RFC, so each message is
 * read field by field and anything out of place is SCRAM_ERR_MALFORMED.
 */
#include "scram.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stringprep.h>

#include "b64.h"

/* ------------------------------------------------------------ basics */

const char *scram_strerror(int err)
{
	switch (err) {
	case SCRAM_OK:
		return "success";
	case SCRAM_ERR_MALFORMED:
		return "malformed SCRAM message";
	case SCRAM_ERR_NOT_AUTHORIZED:
		return "authentication failed";
	case SCRAM_ERR_INVALID_AUTHZID:
		return "invalid authorization identity";
	case SCRAM_ERR_CHANNEL_BINDING:
		return "channel binding not supported or not matching";
	case SCRAM_ERR_BAD_USERNAME:
		return "username fails SASLprep";
	case SCRAM_ERR_NONCE:
		return "nonce mismatch";
	case SCRAM_ERR_ITERATIONS:
		return "iteration count out of bounds";
	case SCRAM_ERR_SERVER_SIGNATURE:
		return "server signature does not verify";
	case SCRAM_ERR_SERVER_ERROR:
		return "server reported an error";
	case SCRAM_ERR_EXTENSION:
		return "unsupported mandatory extension";
	case SCRAM_ERR_STATE:
		return "SCRAM step out of order";
	case SCRAM_ERR_NOMEM:
		return "out of memory";
	case SCRAM_ERR_CRYPTO:
		return "cryptographic library failure";
	case SCRAM_ERR_UNKNOWN_USER:
		return "unknown user";
	case SCRAM_ERR_BAD_PASSWORD:
		return "password fails SASLprep";
	}
	return "unknown SCRAM error";
}

const char *scram_sasl_condition(int err)
{
	switch (err) {
	case SCRAM_ERR_MALFORMED:
	case SCRAM_ERR_EXTENSION:
	case SCRAM_ERR_STATE:
		return "malformed-request";
	case SCRAM_ERR_INVALID_AUTHZID:
		return "invalid-authzid";
	case SCRAM_ERR_NOMEM:
	case SCRAM_ERR_CRYPTO:
		return "temporary-auth-failure";
	}
	return "not-authorized";
}

const char *scram_mech_name(enum scram_hash hash)
{
	return hash == SCRAM_SHA256 ? "SCRAM-SHA-256" : "SCRAM-SHA-1";
}

size_t scram_hash_len(enum scram_hash hash)
{
	return hash == SCRAM_SHA256 ? 32 : 20;
}

const char *scram_hash_tag(enum scram_hash hash)
{
	return hash == SCRAM_SHA256 ? "sha256" : "sha1";
}

int scram_hash_tag_parse(const char *tag, size_t len, enum scram_hash *out)
{
	if (len == 4 && memcmp(tag, "sha1", 4) == 0)
		*out = SCRAM_SHA1;
	else if (len == 6 && memcmp(tag, "sha256", 6) == 0)
		*out = SCRAM_SHA256;
	else
		return -EINVAL;
	return 0;
}

static const EVP_MD *scram_md(enum scram_hash hash)
{
	return hash == SCRAM_SHA256 ? EVP_sha256() : EVP_sha1();
}

int scram_saslprep(const char *in, int stored, char **out)
{
	char *p = NULL;
	int rc;

	*out = NULL;
	rc = stringprep_profile(in, &p, "SASLprep", stored ? STRINGPREP_NO_UNASSIGNED : 0);
	if (rc == STRINGPREP_MALLOC_ERROR)
		return SCRAM_ERR_NOMEM;
	if (rc != STRINGPREP_OK) {
		free(p);
		return SCRAM_ERR_BAD_USERNAME;
	}
	*out = p;
	return 0;
}

static int scram_hmac(enum scram_hash hash, const unsigned char *key, size_t keylen,
		      const void *msg, size_t msglen, unsigned char *out)
{
	unsigned int n = 0;

	if (!HMAC(scram_md(hash), key, (int)keylen, msg, msglen, out, &n) ||
	    n != scram_hash_len(hash))
		return SCRAM_ERR_CRYPTO;
	return 0;
}

static int scram_digest(enum scram_hash hash, const unsigned char *in, size_t len,
			unsigned char *out)
{
	unsigned int n = 0;

	if (!EVP_Digest(in, len, out, &n, scram_md(hash), NULL) || n != scram_hash_len(hash))
		return SCRAM_ERR_CRYPTO;
	return 0;
}

/* SaltedPassword = Hi(Normalize(password), salt, i) with an already
 * normalized password. */
static int scram_salted_password(enum scram_hash hash, const char *prepped,
				 const unsigned char *salt, size_t salt_len, unsigned iterations,
				 unsigned char *out)
{
	if (!PKCS5_PBKDF2_HMAC(prepped, (int)strlen(prepped), salt, (int)salt_len, (int)iterations,
			       scram_md(hash), (int)scram_hash_len(hash), out))
		return SCRAM_ERR_CRYPTO;
	return 0;
}

/* ClientKey, StoredKey and ServerKey from SaltedPassword. */
static int scram_keys(enum scram_hash hash, const unsigned char *salted, unsigned char *client_key,
		      unsigned char *stored_key, unsigned char *server_key)
{
	size_t hl = scram_hash_len(hash);
	int rc;

	rc = scram_hmac(hash, salted, hl, "Client Key", 10, client_key);
	if (!rc)
		rc = scram_digest(hash, client_key, hl, stored_key);
	if (!rc)
		rc = scram_hmac(hash, salted, hl, "Server Key", 10, server_key);
	return rc;
}

static int scram_prep_password(const char *password, int stored, char **out)
{
	int rc = scram_saslprep(password, stored, out);

	return rc == SCRAM_ERR_BAD_USERNAME ? SCRAM_ERR_BAD_PASSWORD : rc;
}

int scram_cred_derive(enum scram_hash hash, const char *password, const unsigned char *salt,
		      size_t salt_len, unsigned iterations, struct scram_cred *out)
{
	unsigned char salted[SCRAM_MAX_KEY], client_key[SCRAM_MAX_KEY];
	char *prepped = NULL;
	int rc;

	if (iterations == 0)
		iterations = SCRAM_DEFAULT_ITERATIONS;
	if (iterations < SCRAM_MIN_ITERATIONS || iterations > SCRAM_MAX_ITERATIONS)
		return SCRAM_ERR_ITERATIONS;
	if (salt_len == 0 || salt_len > SCRAM_MAX_SALT)
		return SCRAM_ERR_MALFORMED;
	rc = scram_prep_password(password, 0, &prepped);
	if (rc)
		return rc;
	memset(out, 0, sizeof(*out));
	out->hash = hash;
	out->iterations = iterations;
	out->salt_len = salt_len;
	memcpy(out->salt, salt, salt_len);
	rc = scram_salted_password(hash, prepped, salt, salt_len, iterations, salted);
	if (!rc)
		rc = scram_keys(hash, salted, client_key, out->stored_key, out->server_key);
	OPENSSL_cleanse(salted, sizeof(salted));
	OPENSSL_cleanse(client_key, sizeof(client_key));
	OPENSSL_cleanse(prepped, strlen(prepped));
	free(prepped);
	return rc;
}

int scram_cred_make(enum scram_hash hash, const char *password, unsigned iterations,
		    struct scram_cred *out)
{
	unsigned char salt[SCRAM_SALT_LEN];
	char *prepped = NULL;
	int rc;

	/* Stored strings must not hold unassigned code points (RFC 4013 2.5):
	 * a later Unicode version could map them differently. */
	rc = scram_prep_password(password, 1, &prepped);
	if (rc)
		return rc;
	OPENSSL_cleanse(prepped, strlen(prepped));
	free(prepped);
	if (RAND_bytes(salt, sizeof(salt)) != 1)
		return SCRAM_ERR_CRYPTO;
	return scram_cred_derive(hash, password, salt, sizeof(salt), iterations, out);
}

int scram_plain_verify(const struct scram_cred *cred, const char *password)
{
	struct scram_cred got;
	size_t hl = scram_hash_len(cred->hash);
	int rc;

	rc = scram_cred_derive(cred->hash, password, cred->salt, cred->salt_len, cred->iterations,
			       &got);
	if (rc == 0 && CRYPTO_memcmp(got.stored_key, cred->stored_key, hl) != 0)
		rc = SCRAM_ERR_NOT_AUTHORIZED;
	OPENSSL_cleanse(&got, sizeof(got));
	return rc;
}

/* ------------------------------------------------------------ parsing */

/* A cursor over one message; fields are separated by ','. */
struct scram_cur {
	const char *p;
	const char *end;
};

/* Takes the next field (up to ',' or the end). 0, or -1 when none is left. */
static int scram_field(struct scram_cur *c, const char **f, size_t *flen)
{
	const char *comma;

	if (!c->p)
		return -EINVAL;
	comma = memchr(c->p, ',', (size_t)(c->end - c->p));
	*f = c->p;
	if (comma) {
		*flen = (size_t)(comma - c->p);
		c->p = comma + 1;
	} else {
		*flen = (size_t)(c->end - c->p);
		c->p = NULL;
	}
	return 0;
}

/* The field must be "<name>=<value>"; returns the value. */
static int scram_attr(struct scram_cur *c, char name, const char **v, size_t *vlen)
{
	const char *f;
	size_t flen;

	if (scram_field(c, &f, &flen) < 0 || flen < 2 || f[0] != name || f[1] != '=')
		return SCRAM_ERR_MALFORMED;
	*v = f + 2;
	*vlen = flen - 2;
	return 0;
}

/* What remains must be extensions: attr-val = ALPHA "=" value. */
static int scram_check_extensions(struct scram_cur *c)
{
	const char *f;
	size_t flen;

	while (scram_field(c, &f, &flen) == 0) {
		if (flen < 2 || f[1] != '=' ||
		    !((f[0] >= 'a' && f[0] <= 'z') || (f[0] >= 'A' && f[0] <= 'Z')))
			return SCRAM_ERR_MALFORMED;
	}
	return 0;
}

/* Common checks on any received message: bounded, no NUL, not empty. */
static int scram_check_message(const char *in, size_t inlen)
{
	if (inlen == 0 || inlen > SCRAM_MAX_MESSAGE || memchr(in, '\0', inlen))
		return SCRAM_ERR_MALFORMED;
	return 0;
}

/* printable = %x21-2B / %x2D-7E: a nonce. */
static int scram_nonce_ok(const char *n, size_t len)
{
	size_t i;

	if (len == 0)
		return 0;
	for (i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)n[i];

		if (ch < 0x21 || ch > 0x7e || ch == ',')
			return 0;
	}
	return 1;
}

/* saslname -> malloc'd string: "=2C" is ',', "=3D" is '='; any other '='
 * is an error (RFC 5802 5.1). */
static int scram_unescape(const char *in, size_t len, char **out)
{
	char *s = malloc(len + 1), *d;
	size_t i;

	if (!s)
		return SCRAM_ERR_NOMEM;
	d = s;
	for (i = 0; i < len; i++) {
		if (in[i] != '=') {
			*d++ = in[i];
			continue;
		}
		if (i + 2 < len && in[i + 1] == '2' && in[i + 2] == 'C')
			*d++ = ',';
		else if (i + 2 < len && in[i + 1] == '3' && in[i + 2] == 'D')
			*d++ = '=';
		else {
			free(s);
			return SCRAM_ERR_MALFORMED;
		}
		i += 2;
	}
	*d = '\0';
	*out = s;
	return 0;
}

/* The reverse, for the client. */
static char *scram_escape(const char *in)
{
	size_t n = 0, i;
	char *s, *d;

	for (i = 0; in[i]; i++)
		n += (in[i] == ',' || in[i] == '=') ? 3 : 1;
	s = malloc(n + 1);
	if (!s)
		return NULL;
	d = s;
	for (i = 0; in[i]; i++) {
		if (in[i] == ',') {
			memcpy(d, "=2C", 3);
			d += 3;
		} else if (in[i] == '=') {
			memcpy(d, "=3D", 3);
			d += 3;
		} else {
			*d++ = in[i];
		}
	}
	*d = '\0';
	return s;
}

/* A random printable nonce: base64 of SCRAM_NONCE_BYTES (a multiple of 3,
 * so no padding and never a ','). */
static int scram_random_nonce(char **out)
{
	unsigned char raw[SCRAM_NONCE_BYTES];

	if (RAND_bytes(raw, sizeof(raw)) != 1)
		return SCRAM_ERR_CRYPTO;
	*out = b64_encode_alloc(raw, sizeof(raw));
	return *out ? 0 : SCRAM_ERR_NOMEM;
}

static int scram_set_nonce(char **slot, const char *nonce)
{
	char *copy;

	if (!scram_nonce_ok(nonce, strlen(nonce)))
		return SCRAM_ERR_MALFORMED;
	copy = strdup(nonce);
	if (!copy)
		return SCRAM_ERR_NOMEM;
	free(*slot);
	*slot = copy;
	return 0;
}

/* Joins parts into a new string (returns NULL when out of memory). */
static char *scram_join(const char *a, size_t alen, const char *b, size_t blen, const char *c,
			size_t clen)
{
	char *s = malloc(alen + blen + clen + 1);

	if (!s)
		return NULL;
	memcpy(s, a, alen);
	memcpy(s + alen, b, blen);
	memcpy(s + alen + blen, c, clen);
	s[alen + blen + clen] = '\0';
	return s;
}

/* AuthMessage = client-first-bare "," server-first "," client-final-without-proof */
static char *scram_auth_message(const char *cfb, const char *sf, const char *cfwp, size_t cfwplen)
{
	size_t a = strlen(cfb), b = strlen(sf);
	char *s = malloc(a + b + cfwplen + 3);

	if (!s)
		return NULL;
	memcpy(s, cfb, a);
	s[a] = ',';
	memcpy(s + a + 1, sf, b);
	s[a + 1 + b] = ',';
	memcpy(s + a + b + 2, cfwp, cfwplen);
	s[a + b + 2 + cfwplen] = '\0';
	return s;
}

/* ------------------------------------------------------------ server */

enum scram_server_state { SS_INIT, SS_FIRST, SS_DONE, SS_FAILED };

struct scram_server {
	enum scram_hash hash;
	enum scram_server_state state;
	scram_lookup_fn lookup;
	void *ud;
	int unknown_user; /* made-up credentials: fail at the end */
	char *snonce;	  /* our nonce part (set for tests, else random) */
	char *username;	  /* SaslPrep'ed */
	char *authzid;	  /* unescaped, NULL when none */
	char *gs2_header; /* e.g. "n,," to check c= against */
	char *nonce;	  /* client nonce + our nonce */
	char *client_first_bare;
	char *server_first;
	struct scram_cred cred;
};

struct scram_server *scram_server_new(enum scram_hash hash, scram_lookup_fn lookup, void *ud)
{
	struct scram_server *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->hash = hash;
	s->lookup = lookup;
	s->ud = ud;
	return s;
}

void scram_server_free(struct scram_server *s)
{
	if (!s)
		return;
	free(s->snonce);
	free(s->username);
	free(s->authzid);
	free(s->gs2_header);
	free(s->nonce);
	free(s->client_first_bare);
	free(s->server_first);
	OPENSSL_cleanse(&s->cred, sizeof(s->cred));
	free(s);
}

int scram_server_set_nonce(struct scram_server *s, const char *nonce)
{
	if (s->state != SS_INIT)
		return SCRAM_ERR_STATE;
	return scram_set_nonce(&s->snonce, nonce);
}

const char *scram_server_username(const struct scram_server *s)
{
	return s->username;
}

const char *scram_server_authzid(const struct scram_server *s)
{
	return s->authzid;
}

/*
 * Credentials for a user that does not exist: a salt that is the same on
 * every attempt for the same name (so a prober sees nothing change) yet
 * unpredictable, from a key drawn once per process. The one mutable static
 * of this module; chatd is single-threaded.
 */
static int scram_mock_cred(enum scram_hash hash, const char *username, struct scram_cred *cred)
{
	static unsigned char key[32];
	static int have_key;
	unsigned char mac[SCRAM_MAX_KEY];

	if (!have_key) {
		if (RAND_bytes(key, sizeof(key)) != 1)
			return SCRAM_ERR_CRYPTO;
		have_key = 1;
	}
	memset(cred, 0, sizeof(*cred));
	cred->hash = hash;
	cred->iterations = SCRAM_DEFAULT_ITERATIONS;
	cred->salt_len = SCRAM_SALT_LEN;
	if (scram_hmac(SCRAM_SHA256, key, sizeof(key), username, strlen(username), mac))
		return SCRAM_ERR_CRYPTO;
	memcpy(cred->salt, mac, SCRAM_SALT_LEN);
	if (RAND_bytes(cred->stored_key, sizeof(cred->stored_key)) != 1 ||
	    RAND_bytes(cred->server_key, sizeof(cred->server_key)) != 1)
		return SCRAM_ERR_CRYPTO;
	return 0;
}

/* Parses the gs2 header and client-first-bare into s. */
static int scram_server_parse_first(struct scram_server *s, const char *in, size_t inlen)
{
	struct scram_cur c = { in, in + inlen };
	const char *f, *bare, *v;
	size_t flen, vlen;
	char *name = NULL;
	int rc;

	/* gs2-cbind-flag */
	if (scram_field(&c, &f, &flen) < 0)
		return SCRAM_ERR_MALFORMED;
	if (flen >= 1 && f[0] == 'p')
		return flen >= 3 && f[1] == '=' ? SCRAM_ERR_CHANNEL_BINDING : SCRAM_ERR_MALFORMED;
	if (flen != 1 || (f[0] != 'n' && f[0] != 'y'))
		return SCRAM_ERR_MALFORMED;
	/* [authzid] */
	if (scram_field(&c, &f, &flen) < 0)
		return SCRAM_ERR_MALFORMED;
	if (flen > 0) {
		if (flen < 3 || f[0] != 'a' || f[1] != '=')
			return SCRAM_ERR_MALFORMED;
		rc = scram_unescape(f + 2, flen - 2, &s->authzid);
		if (rc)
			return rc;
	}
	if (!c.p)
		return SCRAM_ERR_MALFORMED;
	bare = c.p;
	s->gs2_header = strndup(in, (size_t)(bare - in));
	s->client_first_bare = strndup(bare, (size_t)(c.end - bare));
	if (!s->gs2_header || !s->client_first_bare)
		return SCRAM_ERR_NOMEM;
	/* [reserved-mext ","] username */
	if (c.p < c.end && c.end - c.p >= 2 && c.p[0] == 'm' && c.p[1] == '=')
		return SCRAM_ERR_EXTENSION;
	rc = scram_attr(&c, 'n', &v, &vlen);
	if (rc)
		return rc;
	if (vlen == 0)
		return SCRAM_ERR_BAD_USERNAME;
	rc = scram_unescape(v, vlen, &name);
	if (rc)
		return rc;
	rc = scram_saslprep(name, 0, &s->username);
	free(name);
	if (rc)
		return rc;
	if (s->username[0] == '\0')
		return SCRAM_ERR_BAD_USERNAME;
	/* nonce */
	rc = scram_attr(&c, 'r', &v, &vlen);
	if (rc)
		return rc;
	if (!scram_nonce_ok(v, vlen))
		return SCRAM_ERR_MALFORMED;
	if (!s->snonce) {
		rc = scram_random_nonce(&s->snonce);
		if (rc)
			return rc;
	}
	s->nonce = scram_join(v, vlen, s->snonce, strlen(s->snonce), "", 0);
	if (!s->nonce)
		return SCRAM_ERR_NOMEM;
	return scram_check_extensions(&c);
}

int scram_server_first(struct scram_server *s, const char *in, size_t inlen, char **out,
		       size_t *outlen)
{
	char salt[B64_ENCODED_LEN(SCRAM_MAX_SALT) + 1];
	int rc, n;

	*out = NULL;
	*outlen = 0;
	if (s->state != SS_INIT)
		return SCRAM_ERR_STATE;
	s->state = SS_FAILED;
	rc = scram_check_message(in, inlen);
	if (!rc)
		rc = scram_server_parse_first(s, in, inlen);
	if (rc)
		return rc;

	memset(&s->cred, 0, sizeof(s->cred));
	rc = s->lookup(s->ud, s->hash, s->username, &s->cred);
	if (rc == SCRAM_ERR_UNKNOWN_USER) {
		s->unknown_user = 1;
		rc = scram_mock_cred(s->hash, s->username, &s->cred);
	}
	if (rc)
		return rc;
	if (s->cred.hash != s->hash || s->cred.salt_len == 0 || s->cred.salt_len > SCRAM_MAX_SALT ||
	    s->cred.iterations < 1)
		return SCRAM_ERR_CRYPTO;

	if (b64_encode(s->cred.salt, s->cred.salt_len, salt, sizeof(salt)) < 0)
		return SCRAM_ERR_CRYPTO;
	n = asprintf(&s->server_first, "r=%s,s=%s,i=%u", s->nonce, salt, s->cred.iterations);
	if (n < 0) {
		s->server_first = NULL;
		return SCRAM_ERR_NOMEM;
	}
	*out = strdup(s->server_first);
	if (!*out)
		return SCRAM_ERR_NOMEM;
	*outlen = (size_t)n;
	s->state = SS_FIRST;
	return 0;
}

/* Checks client-final-message; on success fills the proof and the length of
 * client-final-message-without-proof. */
static int scram_server_parse_final(struct scram_server *s, const char *in, size_t inlen,
				    unsigned char *proof, size_t *wplen)
{
	struct scram_cur c;
	const char *v, *last;
	size_t vlen, hl = scram_hash_len(s->hash);
	unsigned char cb[B64_DECODED_MAX(SCRAM_MAX_MESSAGE)];
	unsigned char p[B64_DECODED_MAX(4 * SCRAM_MAX_KEY)];
	long n;
	int rc;

	/* proof = "p=" base64 is the last attribute. */
	last = NULL;
	for (v = in + inlen; v > in; v--)
		if (v[-1] == ',') {
			last = v - 1;
			break;
		}
	if (!last)
		return SCRAM_ERR_MALFORMED;
	*wplen = (size_t)(last - in);
	c.p = last + 1;
	c.end = in + inlen;
	rc = scram_attr(&c, 'p', &v, &vlen);
	if (rc)
		return rc;
	if (vlen > 4 * SCRAM_MAX_KEY)
		return SCRAM_ERR_MALFORMED;
	n = b64_decode(v, vlen, p, sizeof(p));
	if (n < 0 || (size_t)n != hl)
		return SCRAM_ERR_MALFORMED;
	memcpy(proof, p, hl);

	c.p = in;
	c.end = last;
	/* channel-binding: c= base64(gs2 header), no cbind-data for n/y. */
	rc = scram_attr(&c, 'c', &v, &vlen);
	if (rc)
		return rc;
	n = b64_decode(v, vlen, cb, sizeof(cb));
	if (n < 0)
		return SCRAM_ERR_MALFORMED;
	if ((size_t)n != strlen(s->gs2_header) || memcmp(cb, s->gs2_header, (size_t)n) != 0)
		return SCRAM_ERR_CHANNEL_BINDING;
	rc = scram_attr(&c, 'r', &v, &vlen);
	if (rc)
		return rc;
	if (vlen != strlen(s->nonce) || memcmp(v, s->nonce, vlen) != 0)
		return SCRAM_ERR_NONCE;
	return scram_check_extensions(&c);
}

int scram_server_final(struct scram_server *s, const char *in, size_t inlen, char **out,
		       size_t *outlen)
{
	unsigned char proof[SCRAM_MAX_KEY], sig[SCRAM_MAX_KEY], key[SCRAM_MAX_KEY];
	unsigned char stored[SCRAM_MAX_KEY], ssig[SCRAM_MAX_KEY];
	char v[B64_ENCODED_LEN(SCRAM_MAX_KEY) + 1];
	size_t hl = scram_hash_len(s->hash), wplen = 0, i;
	char *am = NULL;
	int rc;

	*out = NULL;
	*outlen = 0;
	if (s->state != SS_FIRST)
		return SCRAM_ERR_STATE;
	s->state = SS_FAILED;
	rc = scram_check_message(in, inlen);
	if (!rc)
		rc = scram_server_parse_final(s, in, inlen, proof, &wplen);
	if (rc)
		return rc;

	am = scram_auth_message(s->client_first_bare, s->server_first, in, wplen);
	if (!am)
		return SCRAM_ERR_NOMEM;
	/* ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage);
	 * the proof holds when H(ClientKey) == StoredKey. */
	rc = scram_hmac(s->hash, s->cred.stored_key, hl, am, strlen(am), sig);
	if (rc)
		goto out_free_am;
	for (i = 0; i < hl; i++)
		key[i] = proof[i] ^ sig[i];
	rc = scram_digest(s->hash, key, hl, stored);
	if (rc)
		goto out_free_am;
	if (CRYPTO_memcmp(stored, s->cred.stored_key, hl) != 0 || s->unknown_user) {
		rc = SCRAM_ERR_NOT_AUTHORIZED;
		goto out_free_am;
	}
	rc = scram_hmac(s->hash, s->cred.server_key, hl, am, strlen(am), ssig);
	if (rc)
		goto out_free_am;
	if (b64_encode(ssig, hl, v, sizeof(v)) < 0) {
		rc = SCRAM_ERR_CRYPTO;
		goto out_free_am;
	}
	if (asprintf(out, "v=%s", v) < 0) {
		*out = NULL;
		rc = SCRAM_ERR_NOMEM;
		goto out_free_am;
	}
	*outlen = strlen(*out);
	s->state = SS_DONE;
out_free_am:
	OPENSSL_cleanse(key, sizeof(key));
	free(am);
	return rc;
}

/* ------------------------------------------------------------ client */

enum scram_client_state { SC_INIT, SC_FIRST, SC_FINAL, SC_DONE, SC_FAILED };

struct scram_client {
	enum scram_hash hash;
	enum scram_client_state state;
	char *username; /* SaslPrep'ed, unescaped */
	char *password; /* SaslPrep'ed; wiped once used */
	char *authzid;	/* NULL when none */
	char *cnonce;
	char *gs2_header;
	char *client_first_bare;
	unsigned char server_signature[SCRAM_MAX_KEY];
};

static void scram_free_secret(char *s)
{
	if (s) {
		OPENSSL_cleanse(s, strlen(s));
		free(s);
	}
}

struct scram_client *scram_client_new(enum scram_hash hash, const char *username,
				      const char *password, const char *authzid, int *err)
{
	struct scram_client *c = calloc(1, sizeof(*c));
	int rc = SCRAM_ERR_NOMEM;

	if (!c)
		goto out_err;
	c->hash = hash;
	rc = scram_saslprep(username, 0, &c->username);
	if (!rc && c->username[0] == '\0')
		rc = SCRAM_ERR_BAD_USERNAME;
	if (!rc)
		rc = scram_prep_password(password, 0, &c->password);
	if (!rc && authzid) {
		c->authzid = strdup(authzid);
		if (!c->authzid)
			rc = SCRAM_ERR_NOMEM;
	}
	if (rc) {
		scram_client_free(c);
		c = NULL;
	}
out_err:
	if (err)
		*err = rc;
	return c;
}

void scram_client_free(struct scram_client *c)
{
	if (!c)
		return;
	free(c->username);
	scram_free_secret(c->password);
	free(c->authzid);
	free(c->cnonce);
	free(c->gs2_header);
	free(c->client_first_bare);
	OPENSSL_cleanse(c->server_signature, sizeof(c->server_signature));
	free(c);
}

int scram_client_set_nonce(struct scram_client *c, const char *nonce)
{
	if (c->state != SC_INIT)
		return SCRAM_ERR_STATE;
	return scram_set_nonce(&c->cnonce, nonce);
}

int scram_client_first(struct scram_client *c, char **out, size_t *outlen)
{
	char *user = NULL, *authz = NULL;
	int rc = SCRAM_ERR_NOMEM;

	*out = NULL;
	*outlen = 0;
	if (c->state != SC_INIT)
		return SCRAM_ERR_STATE;
	c->state = SC_FAILED;
	if (!c->cnonce) {
		rc = scram_random_nonce(&c->cnonce);
		if (rc)
			return rc;
	}
	user = scram_escape(c->username);
	if (!user)
		goto out_free;
	if (c->authzid) {
		authz = scram_escape(c->authzid);
		if (!authz)
			goto out_free;
		if (asprintf(&c->gs2_header, "n,a=%s,", authz) < 0)
			c->gs2_header = NULL;
	} else {
		c->gs2_header = strdup("n,,");
	}
	if (!c->gs2_header)
		goto out_free;
	if (asprintf(&c->client_first_bare, "n=%s,r=%s", user, c->cnonce) < 0) {
		c->client_first_bare = NULL;
		goto out_free;
	}
	*out = scram_join(c->gs2_header, strlen(c->gs2_header), c->client_first_bare,
			  strlen(c->client_first_bare), "", 0);
	if (!*out)
		goto out_free;
	*outlen = strlen(*out);
	c->state = SC_FIRST;
	rc = 0;
out_free:
	free(authz);
	free(user);
	return rc;
}

/* Reads server-first-message: nonce, salt, iterations. */
static int scram_client_parse_first(struct scram_client *c, const char *in, size_t inlen,
				    const char **nonce, size_t *nonce_len, unsigned char *salt,
				    size_t *salt_len, unsigned *iterations)
{
	struct scram_cur cur = { in, in + inlen };
	unsigned char sbuf[B64_DECODED_MAX(SCRAM_MAX_MESSAGE)];
	const char *v;
	size_t vlen, cl = strlen(c->cnonce), i;
	unsigned long it = 0;
	long n;
	int rc;

	if (inlen >= 2 && in[0] == 'm' && in[1] == '=')
		return SCRAM_ERR_EXTENSION;
	rc = scram_attr(&cur, 'r', &v, &vlen);
	if (rc)
		return rc;
	if (!scram_nonce_ok(v, vlen))
		return SCRAM_ERR_MALFORMED;
	if (vlen <= cl || memcmp(v, c->cnonce, cl) != 0)
		return SCRAM_ERR_NONCE;
	*nonce = v;
	*nonce_len = vlen;
	rc = scram_attr(&cur, 's', &v, &vlen);
	if (rc)
		return rc;
	n = b64_decode(v, vlen, sbuf, sizeof(sbuf));
	if (n <= 0 || n > SCRAM_MAX_SALT)
		return SCRAM_ERR_MALFORMED;
	memcpy(salt, sbuf, (size_t)n);
	*salt_len = (size_t)n;
	rc = scram_attr(&cur, 'i', &v, &vlen);
	if (rc)
		return rc;
	if (vlen == 0)
		return SCRAM_ERR_MALFORMED;
	for (i = 0; i < vlen; i++) {
		if (v[i] < '0' || v[i] > '9')
			return SCRAM_ERR_MALFORMED;
		/* Saturate: anything this long is out of bounds anyway. */
		if (it <= SCRAM_MAX_ITERATIONS)
			it = it * 10 + (unsigned long)(v[i] - '0');
	}
	if (it < SCRAM_MIN_ITERATIONS || it > SCRAM_MAX_ITERATIONS)
		return SCRAM_ERR_ITERATIONS;
	*iterations = (unsigned)it;
	return scram_check_extensions(&cur);
}

int scram_client_final(struct scram_client *c, const char *in, size_t inlen, char **out,
		       size_t *outlen)
{
	unsigned char salt[SCRAM_MAX_SALT], salted[SCRAM_MAX_KEY], ckey[SCRAM_MAX_KEY];
	unsigned char stored[SCRAM_MAX_KEY], skey[SCRAM_MAX_KEY], sig[SCRAM_MAX_KEY];
	char proof[B64_ENCODED_LEN(SCRAM_MAX_KEY) + 1];
	char *cb = NULL, *wp = NULL, *sf = NULL, *am = NULL;
	size_t hl = scram_hash_len(c->hash), nonce_len = 0, salt_len = 0, i;
	const char *nonce = NULL;
	unsigned iterations = 0;
	int rc;

	*out = NULL;
	*outlen = 0;
	if (c->state != SC_FIRST)
		return SCRAM_ERR_STATE;
	c->state = SC_FAILED;
	rc = scram_check_message(in, inlen);
	if (!rc)
		rc = scram_client_parse_first(c, in, inlen, &nonce, &nonce_len, salt, &salt_len,
					      &iterations);
	if (rc)
		return rc;

	rc = SCRAM_ERR_NOMEM;
	sf = strndup(in, inlen);
	cb = b64_encode_alloc(c->gs2_header, strlen(c->gs2_header));
	if (!sf || !cb)
		goto out_free;
	if (asprintf(&wp, "c=%s,r=%.*s", cb, (int)nonce_len, nonce) < 0) {
		wp = NULL;
		goto out_free;
	}
	am = scram_auth_message(c->client_first_bare, sf, wp, strlen(wp));
	if (!am)
		goto out_free;

	rc = scram_salted_password(c->hash, c->password, salt, salt_len, iterations, salted);
	if (!rc)
		rc = scram_keys(c->hash, salted, ckey, stored, skey);
	if (!rc)
		rc = scram_hmac(c->hash, stored, hl, am, strlen(am), sig);
	if (!rc)
		rc = scram_hmac(c->hash, skey, hl, am, strlen(am), c->server_signature);
	if (rc)
		goto out_free;
	for (i = 0; i < hl; i++)
		sig[i] ^= ckey[i];
	if (b64_encode(sig, hl, proof, sizeof(proof)) < 0) {
		rc = SCRAM_ERR_CRYPTO;
		goto out_free;
	}
	if (asprintf(out, "%s,p=%s", wp, proof) < 0) {
		*out = NULL;
		rc = SCRAM_ERR_NOMEM;
		goto out_free;
	}
	*outlen = strlen(*out);
	c->state = SC_FINAL;
	/* the password is not needed any more: only the signature to check */
	scram_free_secret(c->password);
	c->password = NULL;
out_free:
	OPENSSL_cleanse(salted, sizeof(salted));
	OPENSSL_cleanse(ckey, sizeof(ckey));
	OPENSSL_cleanse(skey, sizeof(skey));
	free(am);
	free(wp);
	free(cb);
	free(sf);
	return rc;
}

int scram_client_verify(struct scram_client *c, const char *in, size_t inlen)
{
	unsigned char v[B64_DECODED_MAX(SCRAM_MAX_MESSAGE)];
	struct scram_cur cur = { in, in + inlen };
	const char *val;
	size_t vlen, hl = scram_hash_len(c->hash);
	long n;
	int rc;

	if (c->state != SC_FINAL)
		return SCRAM_ERR_STATE;
	c->state = SC_FAILED;
	rc = scram_check_message(in, inlen);
	if (rc)
		return rc;
	if (inlen >= 2 && in[0] == 'e' && in[1] == '=')
		return SCRAM_ERR_SERVER_ERROR;
	rc = scram_attr(&cur, 'v', &val, &vlen);
	if (rc)
		return rc;
	n = b64_decode(val, vlen, v, sizeof(v));
	if (n < 0)
		return SCRAM_ERR_MALFORMED;
	rc = scram_check_extensions(&cur);
	if (rc)
		return rc;
	if ((size_t)n != hl || CRYPTO_memcmp(v, c->server_signature, hl) != 0)
		return SCRAM_ERR_SERVER_SIGNATURE;
	c->state = SC_DONE;
	return 0;
}
