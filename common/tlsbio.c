/*
 * TLS through a custom BIO (the shape of h2o's uv-binding): OpenSSL reads
 * ciphertext from our input buffer and writes ciphertext into our output
 * buffer; the event loop moves those bytes. A custom BIO rather than a
 * BIO_s_mem pair because memory BIOs keep their high-water allocation for
 * the life of the connection, while these buffers are freed as soon as they
 * are empty: with many idle TLS connections that is most of the memory.
 */
#include "tlsbio.h"

#include <errno.h>
#include <arpa/inet.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "unconst.h"

#define TLSBIO_ERR_LEN 256

/* A byte queue: data[off..len) is pending; freed when emptied. */
struct tlsbio_buf {
	char *data;
	size_t off;
	size_t len;
	size_t cap;
};

struct tlsbio {
	SSL *ssl;
	struct tlsbio_buf in;	 /* ciphertext fed, not yet read by OpenSSL */
	struct tlsbio_buf out;	 /* ciphertext OpenSSL wrote, not yet taken */
	struct tlsbio_buf early; /* plaintext written before the handshake ended */
	int handshake_done;
	int failed; /* a fatal error happened: only free remains */
	int shutdown_sent;
	int peer_closed;
	int nomem; /* the BIO could not grow a buffer */
	char *err; /* TLSBIO_ERR_LEN bytes, allocated at the first error: not
		      every idle connection needs room for a message */
};

static size_t tlsbio_buf_pending(const struct tlsbio_buf *b)
{
	return b->len - b->off;
}

static void tlsbio_buf_free(struct tlsbio_buf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

static int tlsbio_buf_append(struct tlsbio_buf *b, const void *data, size_t len)
{
	size_t need, cap;
	char *p;

	if (len == 0)
		return 0;
	if (b->off > 0 && b->off == b->len)
		b->off = b->len = 0;
	if (b->len + len > b->cap && b->off > 0) {
		/* reclaim consumed space before growing */
		memmove(b->data, b->data + b->off, b->len - b->off);
		b->len -= b->off;
		b->off = 0;
	}
	need = b->len + len;
	if (need < b->len)
		return -ENOMEM;
	if (need > b->cap) {
		cap = b->cap ? b->cap : 4096;
		while (cap < need)
			cap *= 2;
		p = realloc(b->data, cap);
		if (!p)
			return -ENOMEM;
		b->data = p;
		b->cap = cap;
	}
	memcpy(b->data + b->len, data, len);
	b->len += len;
	return 0;
}

/* Drops n bytes from the front; frees the buffer when it becomes empty. */
static void tlsbio_buf_consume(struct tlsbio_buf *b, size_t n)
{
	b->off += n;
	if (b->off >= b->len)
		tlsbio_buf_free(b);
}

/* ------------------------------------------------------------ the BIO */

static int tlsbio_bio_write(BIO *bio, const char *data, int len)
{
	struct tlsbio *t = BIO_get_data(bio);

	BIO_clear_retry_flags(bio);
	if (len <= 0)
		return 0;
	if (tlsbio_buf_append(&t->out, data, (size_t)len) < 0) {
		t->nomem = 1;
		return -1;
	}
	return len;
}

static int tlsbio_bio_read(BIO *bio, char *buf, int len)
{
	struct tlsbio *t = BIO_get_data(bio);
	size_t n = tlsbio_buf_pending(&t->in);

	BIO_clear_retry_flags(bio);
	if (len <= 0)
		return 0;
	if (n == 0) {
		/* no data yet, which is not EOF: tell OpenSSL to retry later */
		BIO_set_retry_read(bio);
		return -1;
	}
	if (n > (size_t)len)
		n = (size_t)len;
	memcpy(buf, t->in.data + t->in.off, n);
	tlsbio_buf_consume(&t->in, n);
	return (int)n;
}

static long tlsbio_bio_ctrl(BIO *bio, int cmd, long num, void *ptr)
{
	struct tlsbio *t = BIO_get_data(bio);

	(void)num;
	(void)ptr;
	switch (cmd) {
	case BIO_CTRL_FLUSH:
		return 1;
	case BIO_CTRL_PENDING:
		return t ? (long)tlsbio_buf_pending(&t->in) : 0;
	case BIO_CTRL_WPENDING:
		return t ? (long)tlsbio_buf_pending(&t->out) : 0;
	}
	return 0;
}

static int tlsbio_bio_create(BIO *bio)
{
	BIO_set_init(bio, 1);
	return 1;
}

static int tlsbio_bio_destroy(BIO *bio)
{
	BIO_set_data(bio, NULL);
	return 1;
}

/* The method table is made once and kept for the process: OpenSSL holds
 * pointers to it from every BIO. */
static BIO_METHOD *tlsbio_method(void)
{
	static BIO_METHOD *method;
	BIO_METHOD *m;

	if (method)
		return method;
	m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "rainbow tlsbio");
	if (!m)
		return NULL;
	if (!BIO_meth_set_write(m, tlsbio_bio_write) || !BIO_meth_set_read(m, tlsbio_bio_read) ||
	    !BIO_meth_set_ctrl(m, tlsbio_bio_ctrl) || !BIO_meth_set_create(m, tlsbio_bio_create) ||
	    !BIO_meth_set_destroy(m, tlsbio_bio_destroy)) {
		BIO_meth_free(m);
		return NULL;
	}
	method = m;
	return method;
}

/* ------------------------------------------------------------ contexts */

/* The first queued OpenSSL error, or fallback, into buf. */
static void tlsbio_err_string(char *buf, size_t len, const char *what, const char *fallback)
{
	unsigned long e = ERR_get_error();
	char detail[200];

	if (!buf || len == 0) {
		ERR_clear_error();
		return;
	}
	if (e)
		ERR_error_string_n(e, detail, sizeof(detail));
	snprintf(buf, len, "%s: %s", what, e ? detail : fallback);
	ERR_clear_error();
}

/* A context with the settings both sides share, or NULL with err set. */
static SSL_CTX *tlsbio_ctx_new(const SSL_METHOD *method, char *err, size_t errlen)
{
	SSL_CTX *ctx;

	ERR_clear_error();
	ctx = SSL_CTX_new(method);
	if (!ctx) {
		tlsbio_err_string(err, errlen, "SSL_CTX_new", "failed");
		return NULL;
	}
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION)) {
		tlsbio_err_string(err, errlen, "TLS settings", "failed");
		SSL_CTX_free(ctx);
		return NULL;
	}
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
	/* The read and write buffers are released between records: idle
	 * connections are the common case here. */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	return ctx;
}

SSL_CTX *tlsbio_server_ctx_new(const char *cert_file, const char *key_file, char *err,
			       size_t errlen)
{
	SSL_CTX *ctx = tlsbio_ctx_new(TLS_server_method(), err, errlen);

	if (!ctx)
		return NULL;
	if (tlsbio_ctx_set_policy(ctx, NULL, NULL, err, errlen) != 0)
		goto out_free_ctx;
	/* Load clients do not resume sessions: no cache, no tickets. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	SSL_CTX_set_num_tickets(ctx, 0);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
		tlsbio_err_string(err, errlen, cert_file, "cannot load certificate");
		goto out_free_ctx;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
		tlsbio_err_string(err, errlen, key_file, "cannot load private key");
		goto out_free_ctx;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		tlsbio_err_string(err, errlen, key_file, "key does not match the certificate");
		goto out_free_ctx;
	}
	return ctx;

out_free_ctx:
	SSL_CTX_free(ctx);
	return NULL;
}

int tlsbio_ctx_set_policy(SSL_CTX *ctx, const char *ciphers, const char *min_version, char *err,
			  size_t errlen)
{
	int v;

	ERR_clear_error();
	if (!min_version || strcmp(min_version, "1.2") == 0) {
		v = TLS1_2_VERSION;
	} else if (strcmp(min_version, "1.3") == 0) {
		v = TLS1_3_VERSION;
	} else {
		snprintf(err, errlen, "TLS minimum version \"%s\": 1.2 or 1.3", min_version);
		return -EINVAL;
	}
	if (!SSL_CTX_set_min_proto_version(ctx, v)) {
		tlsbio_err_string(err, errlen, "TLS minimum version", "not supported");
		return -EINVAL;
	}
	if (SSL_CTX_set_cipher_list(ctx, ciphers && *ciphers ? ciphers : TLSBIO_CIPHERS) != 1) {
		tlsbio_err_string(err, errlen, "TLS 1.2 cipher string", "matches no cipher");
		return -EINVAL;
	}
	return 0;
}

SSL_CTX *tlsbio_client_ctx_new(int verify, const char *ca_file, char *err, size_t errlen)
{
	SSL_CTX *ctx = tlsbio_ctx_new(TLS_client_method(), err, errlen);

	if (!ctx)
		return NULL;
	if (!verify) {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
		return ctx;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (ca_file) {
		if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
			tlsbio_err_string(err, errlen, ca_file, "cannot load CA file");
			goto out_free_ctx;
		}
	} else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
		tlsbio_err_string(err, errlen, "default CA store", "cannot load");
		goto out_free_ctx;
	}
	return ctx;

out_free_ctx:
	SSL_CTX_free(ctx);
	return NULL;
}

/* ------------------------------------------------------------ connections */

static int tlsbio_is_ip(const char *host)
{
	unsigned char addr[16];

	return inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
}

struct tlsbio *tlsbio_new(SSL_CTX *ctx, enum tlsbio_role role, const char *host)
{
	struct tlsbio *t;
	BIO_METHOD *method = tlsbio_method();
	BIO *bio;

	if (!method)
		return NULL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->ssl = SSL_new(ctx);
	if (!t->ssl)
		goto out_free_t;
	bio = BIO_new(method);
	if (!bio)
		goto out_free_ssl;
	BIO_set_data(bio, t);
	/* one reference, owned by the SSL object from here on */
	SSL_set_bio(t->ssl, bio, bio);
	if (role == TLSBIO_SERVER) {
		SSL_set_accept_state(t->ssl);
		return t;
	}
	SSL_set_connect_state(t->ssl);
	if (host && *host) {
		int is_ip = tlsbio_is_ip(host);

		/* RFC 6066 3: SNI carries host names, never addresses. */
		/* SSL_set_tlsext_host_name() without its macro's const cast */
		if (!is_ip && SSL_ctrl(t->ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME,
				       TLSEXT_NAMETYPE_host_name, unconst(host)) != 1)
			goto out_free_ssl;
		if (SSL_CTX_get_verify_mode(ctx) & SSL_VERIFY_PEER) {
			X509_VERIFY_PARAM *param = SSL_get0_param(t->ssl);
			int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, host)
				       : SSL_set1_host(t->ssl, host);

			if (ok != 1)
				goto out_free_ssl;
		}
	}
	return t;

out_free_ssl:
	SSL_free(t->ssl);
out_free_t:
	free(t);
	ERR_clear_error();
	return NULL;
}

void tlsbio_free(struct tlsbio *t)
{
	if (!t)
		return;
	SSL_free(t->ssl);
	tlsbio_buf_free(&t->in);
	tlsbio_buf_free(&t->out);
	if (t->early.data)
		OPENSSL_cleanse(t->early.data, t->early.cap);
	tlsbio_buf_free(&t->early);
	free(t->err);
	free(t);
}

int tlsbio_feed(struct tlsbio *t, const void *data, size_t len)
{
	return tlsbio_buf_append(&t->in, data, len) < 0 ? TLSBIO_ERR_NOMEM : 0;
}

/* Records a fatal error from SSL_get_error() code e; returns the tlsbio_err. */
static int tlsbio_fail(struct tlsbio *t, int e)
{
	unsigned long code = ERR_peek_error();
	long vr;

	t->failed = 1;
	if (!t->err)
		t->err = malloc(TLSBIO_ERR_LEN);
	if (t->nomem || !t->err) {
		t->nomem = 1;
		ERR_clear_error();
		return TLSBIO_ERR_NOMEM;
	}
	if (code) {
		ERR_error_string_n(code, t->err, TLSBIO_ERR_LEN);
	} else if (e == SSL_ERROR_SYSCALL) {
		snprintf(t->err, TLSBIO_ERR_LEN, "unexpected end of TLS data");
	} else {
		snprintf(t->err, TLSBIO_ERR_LEN, "TLS error %d", e);
	}
	vr = SSL_get_verify_result(t->ssl);
	if (vr != X509_V_OK) {
		size_t n = strlen(t->err);

		snprintf(t->err + n, TLSBIO_ERR_LEN - n, " (certificate: %s)",
			 X509_verify_cert_error_string(vr));
	}
	ERR_clear_error();
	return TLSBIO_ERR_PROTOCOL;
}

/* Encrypts the plaintext held back during the handshake. */
static int tlsbio_flush_early(struct tlsbio *t)
{
	size_t n = tlsbio_buf_pending(&t->early);
	int rc;

	if (n == 0)
		return 0;
	rc = tlsbio_write(t, t->early.data + t->early.off, n);
	OPENSSL_cleanse(t->early.data, t->early.cap);
	tlsbio_buf_free(&t->early);
	return rc;
}

int tlsbio_handshake(struct tlsbio *t)
{
	int r, e;

	if (t->failed)
		return TLSBIO_ERR_PROTOCOL;
	if (t->handshake_done)
		return 1;
	ERR_clear_error();
	r = SSL_do_handshake(t->ssl);
	if (r == 1) {
		t->handshake_done = 1;
		r = tlsbio_flush_early(t);
		return r < 0 ? r : 1;
	}
	e = SSL_get_error(t->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return 0;
	return tlsbio_fail(t, e);
}

int tlsbio_handshake_done(const struct tlsbio *t)
{
	return t->handshake_done;
}

long tlsbio_read(struct tlsbio *t, void *buf, size_t len)
{
	int r, e;

	if (t->failed)
		return TLSBIO_ERR_PROTOCOL;
	if (t->peer_closed)
		return TLSBIO_ERR_CLOSED;
	if (!t->handshake_done) {
		r = tlsbio_handshake(t);
		if (r <= 0)
			return r;
	}
	if (len == 0)
		return 0;
	if (len > INT_MAX)
		len = INT_MAX;
	ERR_clear_error();
	r = SSL_read(t->ssl, buf, (int)len);
	if (r > 0)
		return r;
	e = SSL_get_error(t->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return 0;
	if (e == SSL_ERROR_ZERO_RETURN) {
		t->peer_closed = 1;
		return TLSBIO_ERR_CLOSED;
	}
	return tlsbio_fail(t, e);
}

int tlsbio_write(struct tlsbio *t, const void *data, size_t len)
{
	const char *p = data;
	int r, e, chunk;

	if (t->failed || t->shutdown_sent)
		return TLSBIO_ERR_STATE;
	if (len == 0)
		return 0;
	if (!t->handshake_done)
		return tlsbio_buf_append(&t->early, data, len) < 0 ? TLSBIO_ERR_NOMEM : 0;
	while (len > 0) {
		chunk = len > INT_MAX ? INT_MAX : (int)len;
		ERR_clear_error();
		/* Our BIO never refuses a write, so without partial-write mode
		 * SSL_write takes the whole chunk or fails. */
		r = SSL_write(t->ssl, p, chunk);
		if (r <= 0) {
			e = SSL_get_error(t->ssl, r);
			return tlsbio_fail(t, e);
		}
		p += r;
		len -= (size_t)r;
	}
	return 0;
}

size_t tlsbio_pending_out(const struct tlsbio *t)
{
	return tlsbio_buf_pending(&t->out);
}

size_t tlsbio_take(struct tlsbio *t, void *buf, size_t len)
{
	size_t n = tlsbio_buf_pending(&t->out);

	if (n > len)
		n = len;
	if (n == 0)
		return 0;
	memcpy(buf, t->out.data + t->out.off, n);
	tlsbio_buf_consume(&t->out, n);
	return n;
}

void *tlsbio_steal_out(struct tlsbio *t, size_t *len)
{
	char *p;

	*len = tlsbio_buf_pending(&t->out);
	if (*len == 0)
		return NULL;
	if (t->out.off > 0)
		memmove(t->out.data, t->out.data + t->out.off, *len);
	p = t->out.data;
	memset(&t->out, 0, sizeof(t->out));
	return p;
}

int tlsbio_shutdown(struct tlsbio *t)
{
	int r, e;

	if (t->failed)
		return TLSBIO_ERR_STATE;
	if (t->shutdown_sent)
		return 0;
	t->shutdown_sent = 1;
	/* Before the handshake there is no session to close: nothing to send. */
	if (!t->handshake_done)
		return 0;
	ERR_clear_error();
	r = SSL_shutdown(t->ssl);
	if (r >= 0)
		return 0;
	e = SSL_get_error(t->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return 0;
	return tlsbio_fail(t, e);
}

const char *tlsbio_last_error(const struct tlsbio *t)
{
	if (t->nomem)
		return "out of memory";
	return t->err ? t->err : "";
}

const char *tlsbio_version(const struct tlsbio *t)
{
	return t->handshake_done ? SSL_get_version(t->ssl) : "";
}

const char *tlsbio_cipher(const struct tlsbio *t)
{
	const char *c = t->handshake_done ? SSL_get_cipher_name(t->ssl) : NULL;

	return c ? c : "";
}

SSL *tlsbio_ssl(struct tlsbio *t)
{
	return t->ssl;
}
