/*
 * SCRAM-SHA-1 (RFC 5802) and SCRAM-SHA-256 (RFC 7677), both sides, plus the
 * credential maker and a PLAIN verifier against stored SCRAM credentials, so
 * that no plaintext password is ever stored anywhere.
 *
 * All messages here are the raw SCRAM texts (the bytes inside the SASL
 * <auth/>, <challenge/>, <response/> and <success/> elements after base64
 * decoding); the caller does the base64 of the XMPP layer (common/b64.h).
 * Input messages need not be NUL-terminated; a NUL byte inside one is
 * malformed. Output messages are malloc'd, NUL-terminated, and owned by the
 * caller (free()).
 *
 * Channel binding: we never offer the -PLUS mechanisms, so the server accepts
 * the gs2 headers "n,," and "y,," (RFC 5802 6: the client supports binding
 * but thinks we do not, which is true) and rejects "p=..." with
 * SCRAM_ERR_CHANNEL_BINDING. The client always sends "n,,".
 *
 * Usernames are SaslPrep'ed (RFC 4013, libidn's "SASLprep" profile) and
 * '=2C' / '=3D' escaped on the wire; passwords are SaslPrep'ed before
 * hashing (RFC 5802 2.2 Normalize()).
 *
 * Error convention: 0 for success, a negative enum scram_err otherwise.
 * scram_sasl_condition() maps each to the RFC 6120 6.5 failure condition.
 */
#ifndef COMMON_SCRAM_H
#define COMMON_SCRAM_H

#include <stddef.h>

enum scram_hash {
	SCRAM_SHA1 = 0,
	SCRAM_SHA256 = 1,
};
#define SCRAM_HASH_COUNT 2

#define SCRAM_MAX_KEY 32  /* bytes of the largest digest (SHA-256) */
#define SCRAM_SALT_LEN 16 /* bytes of salt scram_cred_make() draws */
#define SCRAM_MAX_SALT 64 /* bytes of salt accepted anywhere */
#define SCRAM_DEFAULT_ITERATIONS 4096
/* Iteration counts accepted by the client from a server-first-message, and
 * by scram_cred_make(): below 1 is meaningless, above the cap a hostile
 * server could burn our CPU. The floor is 1 rather than RFC 7677's 4096 so
 * that tests and load runs may use cheap credentials. */
#define SCRAM_MIN_ITERATIONS 1
#define SCRAM_MAX_ITERATIONS 1000000
/* Longest SCRAM message accepted from the peer (bytes). Usernames are at
 * most 1023 bytes prepared, 3 times that escaped; this leaves room. */
#define SCRAM_MAX_MESSAGE 4096
/* Bytes of randomness in each nonce we generate (base64 on the wire). */
#define SCRAM_NONCE_BYTES 18

enum scram_err {
	SCRAM_OK = 0,
	SCRAM_ERR_MALFORMED = -1,	 /* syntax, missing or bad attribute,
					     bad base64, bad escape: malformed-request */
	SCRAM_ERR_NOT_AUTHORIZED = -2,	 /* wrong proof / password, unknown
					     user: not-authorized */
	SCRAM_ERR_INVALID_AUTHZID = -3,	 /* a= names someone else (decided by
					     the caller): invalid-authzid */
	SCRAM_ERR_CHANNEL_BINDING = -4,	 /* "p=" gs2 flag, or c= not matching
					     the gs2 header: not-authorized */
	SCRAM_ERR_BAD_USERNAME = -5,	 /* username fails SaslPrep or is empty:
					     not-authorized */
	SCRAM_ERR_NONCE = -6,		 /* nonce mismatch (server), or server
					     nonce not extending ours (client) */
	SCRAM_ERR_ITERATIONS = -7,	 /* client: i= outside the bounds above */
	SCRAM_ERR_SERVER_SIGNATURE = -8, /* client: v= does not verify */
	SCRAM_ERR_SERVER_ERROR = -9,	 /* client: server-final carried e=... */
	SCRAM_ERR_EXTENSION = -10,	 /* mandatory extension m=: we know none */
	SCRAM_ERR_STATE = -11,		 /* call out of order (a programming error,
					     or a client repeating a step) */
	SCRAM_ERR_NOMEM = -12,		 /* temporary-auth-failure */
	SCRAM_ERR_CRYPTO = -13,		 /* OpenSSL failed: temporary-auth-failure */
	SCRAM_ERR_UNKNOWN_USER = -14,	 /* only returned by a lookup callback;
					     the server turns it into
					     SCRAM_ERR_NOT_AUTHORIZED at the end */
	SCRAM_ERR_BAD_PASSWORD = -15,	 /* password fails SaslPrep (making or
					     using credentials) */
};

/* Short English description of a scram_err (for logs and <text/>). */
const char *scram_strerror(int err);
/* RFC 6120 6.5 SASL failure condition element name for a scram_err:
 * "malformed-request", "not-authorized", "invalid-authzid",
 * "temporary-auth-failure"; "not-authorized" for anything unknown. */
const char *scram_sasl_condition(int err);

/* "SCRAM-SHA-1" / "SCRAM-SHA-256". */
const char *scram_mech_name(enum scram_hash hash);
/* Digest length in bytes: 20 or 32. */
size_t scram_hash_len(enum scram_hash hash);
/* "sha1" / "sha256": the tag used in the users file, and back (0, or
 * -EINVAL for another tag). */
const char *scram_hash_tag(enum scram_hash hash);
int scram_hash_tag_parse(const char *tag, size_t len, enum scram_hash *out);

/*
 * SaslPrep (RFC 4013) of a query string (unassigned code points allowed, as
 * for authentication input; stored=1 forbids them, as for storing). Returns
 * 0 and a malloc'd string in *out, SCRAM_ERR_BAD_USERNAME when the input is
 * not valid UTF-8 or is prohibited, SCRAM_ERR_NOMEM.
 */
int scram_saslprep(const char *in, int stored, char **out);

/* Stored credentials for one user and one hash (RFC 5802 3). */
struct scram_cred {
	enum scram_hash hash;
	unsigned iterations;
	size_t salt_len; /* 1..SCRAM_MAX_SALT */
	unsigned char salt[SCRAM_MAX_SALT];
	unsigned char stored_key[SCRAM_MAX_KEY]; /* H(ClientKey), hash_len bytes */
	unsigned char server_key[SCRAM_MAX_KEY]; /* HMAC(SaltedPassword, "Server Key") */
};

/*
 * Makes credentials for a password: SaslPrep (stored-string rules), a fresh
 * SCRAM_SALT_LEN-byte random salt, the given iterations (0 means
 * SCRAM_DEFAULT_ITERATIONS; must be within the bounds above). 0 or
 * SCRAM_ERR_BAD_PASSWORD / SCRAM_ERR_ITERATIONS / SCRAM_ERR_CRYPTO.
 */
int scram_cred_make(enum scram_hash hash, const char *password, unsigned iterations,
		    struct scram_cred *out);
/* The same with a given salt (deterministic; for tests and verification). */
int scram_cred_derive(enum scram_hash hash, const char *password, const unsigned char *salt,
		      size_t salt_len, unsigned iterations, struct scram_cred *out);

/*
 * SASL PLAIN against stored SCRAM credentials: derives StoredKey from the
 * password with the stored salt and iterations and compares in constant
 * time. 0 when it matches, SCRAM_ERR_NOT_AUTHORIZED when not,
 * SCRAM_ERR_BAD_PASSWORD / SCRAM_ERR_CRYPTO. Costs one PBKDF2.
 */
int scram_plain_verify(const struct scram_cred *cred, const char *password);

/* ---------------------------------------------------------------- server */

/*
 * Credential lookup for the server. username is SaslPrep'ed and unescaped.
 * Fill *cred (its hash must be the requested one) and return 0; return
 * SCRAM_ERR_UNKNOWN_USER when there is no such user (the exchange then
 * continues with made-up credentials, derived from the name with a
 * per-process key, and fails with SCRAM_ERR_NOT_AUTHORIZED at the final
 * step, so user names cannot be probed); any other negative scram_err
 * aborts the exchange with it.
 */
typedef int (*scram_lookup_fn)(void *ud, enum scram_hash hash, const char *username,
			       struct scram_cred *cred);

struct scram_server;

/* NULL when out of memory. lookup is called from scram_server_first(). */
struct scram_server *scram_server_new(enum scram_hash hash, scram_lookup_fn lookup, void *ud);
/* Wipes the keys and frees; NULL is fine. */
void scram_server_free(struct scram_server *s);

/*
 * For tests only: use this printable nonce part instead of a random one.
 * Must be called before scram_server_first(). 0 or SCRAM_ERR_MALFORMED for
 * a nonce with ',' or non-printable bytes.
 */
int scram_server_set_nonce(struct scram_server *s, const char *nonce);

/*
 * Step 1: takes client-first-message (gs2 header + client-first-bare),
 * returns 0 with server-first-message in *out (malloc'd; *outlen its length).
 * Errors: SCRAM_ERR_MALFORMED, SCRAM_ERR_CHANNEL_BINDING, SCRAM_ERR_EXTENSION,
 * SCRAM_ERR_BAD_USERNAME, SCRAM_ERR_STATE, NOMEM, CRYPTO, or what the
 * lookup returned. An authzid (a=) is only parsed here: the caller checks it
 * against the JID the username maps to (scram_server_authzid()) and fails
 * with SCRAM_ERR_INVALID_AUTHZID / invalid-authzid when it names someone
 * else. After any error the object only accepts
 * scram_server_free().
 */
int scram_server_first(struct scram_server *s, const char *in, size_t inlen, char **out,
		       size_t *outlen);

/*
 * Step 2: takes client-final-message, checks c= (must be the base64 of the
 * gs2 header we got, "biws" for "n,,"), the nonce and the proof, and
 * returns 0 with server-final-message ("v=...") in *out, to be sent as the
 * <success/> additional data. Errors: SCRAM_ERR_MALFORMED,
 * SCRAM_ERR_CHANNEL_BINDING, SCRAM_ERR_NONCE, SCRAM_ERR_NOT_AUTHORIZED,
 * SCRAM_ERR_STATE, SCRAM_ERR_NOMEM.
 */
int scram_server_final(struct scram_server *s, const char *in, size_t inlen, char **out,
		       size_t *outlen);

/* The SaslPrep'ed username from client-first (NULL before it); after a
 * successful scram_server_final() it is the authenticated identity. */
const char *scram_server_username(const struct scram_server *s);
/* The authzid from the gs2 header, unescaped (not prepared), or NULL. */
const char *scram_server_authzid(const struct scram_server *s);

/* ---------------------------------------------------------------- client */

struct scram_client;

/*
 * username and password are SaslPrep'ed here; authzid is NULL (none) or
 * sent as a=. Returns NULL when out of memory or when SaslPrep fails
 * (then *err, if err is not NULL, says which: SCRAM_ERR_BAD_USERNAME,
 * SCRAM_ERR_BAD_PASSWORD, SCRAM_ERR_NOMEM).
 */
struct scram_client *scram_client_new(enum scram_hash hash, const char *username,
				      const char *password, const char *authzid, int *err);
void scram_client_free(struct scram_client *c);

/* For tests only: the client nonce to use (printable, no ','); before
 * scram_client_first(). */
int scram_client_set_nonce(struct scram_client *c, const char *nonce);

/* Step 1: client-first-message ("n,,n=user,r=nonce") in *out. */
int scram_client_first(struct scram_client *c, char **out, size_t *outlen);

/*
 * Step 2: takes server-first-message, checks that its nonce extends ours,
 * the salt and the iteration bounds, and returns client-final-message in
 * *out. Errors: SCRAM_ERR_MALFORMED, SCRAM_ERR_NONCE, SCRAM_ERR_ITERATIONS,
 * SCRAM_ERR_EXTENSION, SCRAM_ERR_STATE, NOMEM, CRYPTO.
 */
int scram_client_final(struct scram_client *c, const char *in, size_t inlen, char **out,
		       size_t *outlen);

/*
 * Step 3: verifies server-final-message (the <success/> data). 0 when v=
 * is the expected ServerSignature; SCRAM_ERR_SERVER_SIGNATURE when not;
 * SCRAM_ERR_SERVER_ERROR when it carries e=...; SCRAM_ERR_MALFORMED.
 * A client must treat anything but 0 as a failed login.
 */
int scram_client_verify(struct scram_client *c, const char *in, size_t inlen);

#endif
