/*
 * TLS for a libuv loop: OpenSSL drives the protocol, we move the bytes. The
 * SSL object talks to a custom BIO whose input is what the caller fed from
 * the network and whose output is a buffer the caller takes and writes to
 * the socket (the h2o uv-binding shape). Both buffers are freed when empty,
 * and the contexts set SSL_MODE_RELEASE_BUFFERS, so an idle TLS connection
 * holds little more than the SSL object itself.
 *
 * Typical use on each read callback:
 *     tlsbio_feed(t, buf, n);
 *     while ((r = tlsbio_read(t, plain, sizeof plain)) > 0) consume(plain, r);
 *     if (r == TLSBIO_ERR_CLOSED) ... peer sent close_notify
 *     else if (r < 0) ... fatal, log tlsbio_last_error(t)
 *     if (tlsbio_pending_out(t)) { p = tlsbio_steal_out(t, &len); uv_write(p, len) }
 * and after each tlsbio_write() / tlsbio_shutdown() flush the output the
 * same way. tlsbio_read() also advances the handshake, so a server needs no
 * separate handshake call; tlsbio_handshake() exists for clients that have
 * nothing to read yet (it produces the ClientHello).
 *
 * Error convention: 0 or a positive count for success, a negative enum
 * tlsbio_err otherwise. After TLSBIO_ERR_PROTOCOL the connection is dead;
 * send what tlsbio_pending_out() still holds (a TLS alert) and close.
 */
#ifndef COMMON_TLSBIO_H
#define COMMON_TLSBIO_H

#include <stddef.h>

#include <openssl/ssl.h>

enum tlsbio_err {
	TLSBIO_OK = 0,
	TLSBIO_ERR_PROTOCOL = -1, /* fatal TLS error: garbage, handshake failure,
				      certificate rejected, bad record */
	TLSBIO_ERR_CLOSED = -2,	  /* the peer sent close_notify (clean EOF) */
	TLSBIO_ERR_NOMEM = -3,
	TLSBIO_ERR_STATE = -4, /* write after shutdown or after an error */
};

/*
 * The server's TLS 1.2 ciphers by default: forward secrecy (ECDHE) and AEAD
 * (GCM, ChaCha20-Poly1305) only; no RSA key exchange, no CBC, no SHA-1 MACs.
 * TLS 1.3 suites are all ECDHE/DHE + AEAD and keep OpenSSL's defaults.
 */
#define TLSBIO_CIPHERS                                               \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:" \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:" \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

/*
 * Server context: certificate chain (PEM) and private key files, the
 * default policy of tlsbio_ctx_set_policy(), no renegotiation, no session tickets or cache (load-test clients
 * do not resume, and it keeps memory low), SSL_MODE_RELEASE_BUFFERS.
 * Returns NULL with a message in err (errlen bytes) on failure.
 * Free with SSL_CTX_free().
 */
SSL_CTX *tlsbio_server_ctx_new(const char *cert_file, const char *key_file, char *err,
			       size_t errlen);

/*
 * Sets the TLS 1.2 cipher string (OpenSSL syntax; NULL or "" for
 * TLSBIO_CIPHERS) and the minimum version ("1.2" or "1.3"; NULL for 1.2).
 * 0, or -EINVAL with a message in err.
 */
int tlsbio_ctx_set_policy(SSL_CTX *ctx, const char *ciphers, const char *min_version, char *err,
			  size_t errlen);

/*
 * Client context: TLS 1.2 minimum, SSL_MODE_RELEASE_BUFFERS. verify=0 accepts
 * any certificate (self-signed test servers); verify=1 checks the chain
 * against ca_file (PEM), or the system default store when ca_file is NULL,
 * and the host name given to tlsbio_new().
 */
SSL_CTX *tlsbio_client_ctx_new(int verify, const char *ca_file, char *err, size_t errlen);

enum tlsbio_role { TLSBIO_SERVER, TLSBIO_CLIENT };

struct tlsbio;

/*
 * A connection over ctx (which is reference-counted by OpenSSL and may be
 * freed by the caller afterwards). For a client, host (may be NULL) is sent
 * as SNI and, when the context verifies, checked against the certificate.
 * NULL when out of memory.
 */
struct tlsbio *tlsbio_new(SSL_CTX *ctx, enum tlsbio_role role, const char *host);
/* Frees everything (no close_notify; call tlsbio_shutdown() first for a
 * clean close). NULL is fine. */
void tlsbio_free(struct tlsbio *t);

/* Appends ciphertext received from the network (copied). 0 or
 * TLSBIO_ERR_NOMEM. Nothing is decrypted until tlsbio_read()/handshake(). */
int tlsbio_feed(struct tlsbio *t, const void *data, size_t len);

/*
 * Advances the handshake with what was fed. 1 when complete, 0 when it needs
 * more input from the peer (check tlsbio_pending_out() and send first),
 * negative on error.
 */
int tlsbio_handshake(struct tlsbio *t);
/* 1 once the handshake has completed. */
int tlsbio_handshake_done(const struct tlsbio *t);

/*
 * Decrypts up to len bytes of application data into buf (advancing the
 * handshake first if needed). Returns the count (> 0), 0 when no more
 * plaintext is available until more ciphertext is fed, TLSBIO_ERR_CLOSED
 * after the peer's close_notify, or another negative error.
 */
long tlsbio_read(struct tlsbio *t, void *buf, size_t len);

/*
 * Encrypts all of data (it is accepted in full or not at all). Before the
 * handshake completes the plaintext is held and encrypted as soon as it
 * does. 0, TLSBIO_ERR_STATE (after shutdown or a fatal error),
 * TLSBIO_ERR_NOMEM, TLSBIO_ERR_PROTOCOL.
 */
int tlsbio_write(struct tlsbio *t, const void *data, size_t len);

/* Bytes of ciphertext waiting to be sent to the peer. */
size_t tlsbio_pending_out(const struct tlsbio *t);
/* Copies up to len bytes of pending ciphertext into buf and drops them from
 * the queue; returns the count. */
size_t tlsbio_take(struct tlsbio *t, void *buf, size_t len);
/* Hands over the whole pending ciphertext as a malloc'd buffer (the caller
 * free()s it, e.g. in the uv_write callback); NULL and *len = 0 when there
 * is none. Avoids a copy per write. */
void *tlsbio_steal_out(struct tlsbio *t, size_t *len);

/*
 * Queues our close_notify (send tlsbio_pending_out() afterwards). 0, or
 * negative on error. Writes are refused afterwards; reads still work until
 * the peer's close_notify.
 */
int tlsbio_shutdown(struct tlsbio *t);

/* The last error, e.g. "error:0A00010B:SSL routines::wrong version number";
 * "" when none. Valid until the next call on t. */
const char *tlsbio_last_error(const struct tlsbio *t);
/* "TLSv1.3", cipher name: after the handshake, else "". */
const char *tlsbio_version(const struct tlsbio *t);
const char *tlsbio_cipher(const struct tlsbio *t);
/* The SSL object, for what this interface does not cover. */
SSL *tlsbio_ssl(struct tlsbio *t);

#endif
