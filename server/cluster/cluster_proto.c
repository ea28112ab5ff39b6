/*
 * The cluster link protocol: frame encoding and decoding, the handshake's
 * MACs (pure, no I/O).
 */
#include "cluster_proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

/* ---- reading ---- */

struct rd {
	const uint8_t *p;
	size_t len;
	size_t off;
	int bad;
};

static int rd_need(struct rd *r, size_t n)
{
	if (r->bad || r->len - r->off < n) {
		r->bad = 1;
		return 0;
	}
	return 1;
}

static unsigned rd_u8(struct rd *r)
{
	if (!rd_need(r, 1))
		return 0;
	return r->p[r->off++];
}

static unsigned rd_u16(struct rd *r)
{
	unsigned v;

	if (!rd_need(r, 2))
		return 0;
	v = (unsigned)r->p[r->off] << 8 | r->p[r->off + 1];
	r->off += 2;
	return v;
}

static uint32_t rd_u32(struct rd *r)
{
	uint32_t v;

	if (!rd_need(r, 4))
		return 0;
	v = (uint32_t)r->p[r->off] << 24 | (uint32_t)r->p[r->off + 1] << 16 |
	    (uint32_t)r->p[r->off + 2] << 8 | r->p[r->off + 3];
	r->off += 4;
	return v;
}

static uint64_t rd_u64(struct rd *r)
{
	uint64_t hi = rd_u32(r);

	return hi << 32 | rd_u32(r);
}

static const uint8_t *rd_bytes(struct rd *r, size_t n)
{
	const uint8_t *p;

	if (!rd_need(r, n))
		return NULL;
	p = r->p + r->off;
	r->off += n;
	return p;
}

/* Strings are used as C strings once copied: an embedded NUL would cut
 * them silently, so it is a protocol error. */
static struct cluster_str rd_str(struct rd *r, size_t len, size_t min, size_t max)
{
	struct cluster_str s = { NULL, 0 };
	const uint8_t *p;

	if (len < min || len > max) {
		r->bad = 1;
		return s;
	}
	p = rd_bytes(r, len);
	if (!p)
		return s;
	if (memchr(p, '\0', len)) {
		r->bad = 1;
		return s;
	}
	s.p = (const char *)p;
	s.len = len;
	return s;
}

/* No control characters: HELLO's strings arrive before authentication and
 * end up in log lines. */
static int label_ok(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return 0;
	return 1;
}

static struct cluster_str rd_str16(struct rd *r, size_t min, size_t max)
{
	size_t len = rd_u16(r);

	return rd_str(r, len, min, max);
}

static struct cluster_str rd_label16(struct rd *r, size_t min, size_t max)
{
	struct cluster_str s = rd_str16(r, min, max);

	if (s.p && !label_ok(s.p, s.len)) {
		r->bad = 1;
		s.p = NULL;
		s.len = 0;
	}
	return s;
}

static struct cluster_str rd_str32(struct rd *r, size_t min, size_t max)
{
	size_t len = rd_u32(r);

	return rd_str(r, len, min, max);
}

/* u32 length and that many bytes, NUL allowed. */
static struct cluster_str rd_bytes32(struct rd *r, size_t min, size_t max)
{
	struct cluster_str s = { NULL, 0 };
	size_t len = rd_u32(r);
	const uint8_t *p;

	if (len < min || len > max) {
		r->bad = 1;
		return s;
	}
	p = rd_bytes(r, len);
	if (p) {
		s.p = (const char *)p;
		s.len = len;
	}
	return s;
}

long cluster_frame_split(const uint8_t *buf, size_t len, size_t max, uint8_t *type,
			 const uint8_t **payload, size_t *plen)
{
	uint32_t flen;

	if (len < 4)
		return CLUSTER_PROTO_EAGAIN;
	flen = (uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 | (uint32_t)buf[2] << 8 | buf[3];
	if (flen == 0)
		return CLUSTER_PROTO_EINVAL;
	if (flen > max)
		return CLUSTER_PROTO_E2BIG;
	if (len - 4 < flen)
		return CLUSTER_PROTO_EAGAIN;
	*type = buf[4];
	*payload = buf + CLUSTER_FRAME_HDR;
	*plen = flen - 1;
	return (long)flen + 4;
}

static int route_rec_read(struct rd *r, uint8_t type, struct cluster_route_rec *rec)
{
	rec->jid = rd_str16(r, 1, CLUSTER_JID_MAX);
	rec->priority = 0;
	rec->flags = 0;
	if (type == CLUSTER_MSG_ROUTE_ADD) {
		rec->priority = (int)(int8_t)rd_u8(r);
		rec->flags = rd_u8(r);
		if (rec->flags & ~(unsigned)CLUSTER_ROUTE_AVAILABLE)
			r->bad = 1;
	}
	return r->bad ? CLUSTER_PROTO_EINVAL : 0;
}

int cluster_route_next(const struct cluster_msg *m, size_t *off, struct cluster_route_rec *rec)
{
	struct rd r = { m->u.routes.entries, m->u.routes.len, *off, 0 };

	if (r.off >= r.len)
		return 0;
	if (route_rec_read(&r, m->type, rec) < 0)
		return 0; /* cannot happen on a validated batch */
	*off = r.off;
	return 1;
}

int cluster_msg_decode(uint8_t type, const uint8_t *payload, size_t plen, struct cluster_msg *out)
{
	struct rd r = { payload, plen, 0, 0 };
	struct cluster_route_rec rec;
	unsigned i;

	memset(out, 0, sizeof(*out));
	out->type = type;
	switch (type) {
	case CLUSTER_MSG_HELLO:
		out->u.hello.proto = (uint8_t)rd_u8(&r);
		out->u.hello.instance = rd_label16(&r, 1, CLUSTER_ID_MAX);
		out->u.hello.version = rd_label16(&r, 0, 255);
		out->u.hello.port = (uint16_t)rd_u16(&r);
		out->u.hello.nonce = rd_bytes(&r, CLUSTER_NONCE_LEN);
		break;
	case CLUSTER_MSG_AUTH:
		out->u.auth.mac = rd_bytes(&r, CLUSTER_MAC_LEN);
		break;
	case CLUSTER_MSG_IDENT:
		out->u.ident.instance = rd_label16(&r, 1, CLUSTER_ID_MAX);
		out->u.ident.version = rd_label16(&r, 0, 255);
		out->u.ident.port = (uint16_t)rd_u16(&r);
		break;
	case CLUSTER_MSG_ROUTE_ADD:
	case CLUSTER_MSG_ROUTE_DEL:
		out->u.routes.count = (uint16_t)rd_u16(&r);
		out->u.routes.entries = payload + r.off;
		for (i = 0; i < out->u.routes.count && !r.bad; i++)
			route_rec_read(&r, type, &rec);
		out->u.routes.len = r.bad ? 0 : r.off - 2;
		break;
	case CLUSTER_MSG_SYNC:
	case CLUSTER_MSG_LEAVING:
		break;
	case CLUSTER_MSG_STANZA:
	case CLUSTER_MSG_RELAY:
		out->u.stanza.to = rd_str16(&r, 1, CLUSTER_JID_MAX);
		out->u.stanza.from = rd_str16(&r, 1, CLUSTER_JID_MAX);
		out->u.stanza.xml = rd_str32(&r, 1, CLUSTER_FRAME_MAX);
		break;
	case CLUSTER_MSG_PRESENCE:
		out->u.presence.from = rd_str16(&r, 1, CLUSTER_JID_MAX);
		out->u.presence.xml = rd_str32(&r, 1, CLUSTER_FRAME_MAX);
		break;
	case CLUSTER_MSG_PING:
	case CLUSTER_MSG_PONG:
		out->u.ping.token = rd_u64(&r);
		break;
	case CLUSTER_MSG_SESSION_REQ:
		out->u.sreq.req = rd_u64(&r);
		out->u.sreq.previd = rd_label16(&r, 1, CLUSTER_PREVID_MAX);
		out->u.sreq.bare = rd_str16(&r, 1, CLUSTER_JID_MAX);
		out->u.sreq.h = rd_u32(&r);
		break;
	case CLUSTER_MSG_SESSION_NAK:
		out->u.snak.req = rd_u64(&r);
		out->u.snak.reason = (uint8_t)rd_u8(&r);
		if (out->u.snak.reason < CLUSTER_NAK_NOT_FOUND ||
		    out->u.snak.reason > CLUSTER_NAK_FAILED)
			r.bad = 1;
		break;
	case CLUSTER_MSG_SESSION_STATE:
		out->u.sstate.req = rd_u64(&r);
		out->u.sstate.full = rd_str16(&r, 1, CLUSTER_JID_MAX);
		out->u.sstate.state = rd_bytes32(&r, 1, CLUSTER_FRAME_MAX);
		break;
	case CLUSTER_MSG_SESSION_DONE:
		out->u.sdone.full = rd_str16(&r, 1, CLUSTER_JID_MAX);
		break;
	default:
		return CLUSTER_PROTO_ETYPE;
	}
	if (r.bad || r.off != r.len)
		return CLUSTER_PROTO_EINVAL;
	return 0;
}

const char *cluster_msg_type_name(uint8_t type)
{
	static const char *const names[] = {
		[CLUSTER_MSG_HELLO] = "hello",
		[CLUSTER_MSG_AUTH] = "auth",
		[CLUSTER_MSG_ROUTE_ADD] = "route-add",
		[CLUSTER_MSG_ROUTE_DEL] = "route-del",
		[CLUSTER_MSG_SYNC] = "sync",
		[CLUSTER_MSG_STANZA] = "stanza",
		[CLUSTER_MSG_PRESENCE] = "presence",
		[CLUSTER_MSG_PING] = "ping",
		[CLUSTER_MSG_PONG] = "pong",
		[CLUSTER_MSG_LEAVING] = "leaving",
		[CLUSTER_MSG_IDENT] = "ident",
		[CLUSTER_MSG_SESSION_REQ] = "session-req",
		[CLUSTER_MSG_SESSION_NAK] = "session-nak",
		[CLUSTER_MSG_SESSION_STATE] = "session-state",
		[CLUSTER_MSG_SESSION_DONE] = "session-done",
		[CLUSTER_MSG_RELAY] = "relay",
	};

	if (type < sizeof(names) / sizeof(names[0]) && names[type])
		return names[type];
	return "unknown";
}

const char *cluster_proto_strerror(int err)
{
	switch (err) {
	case CLUSTER_PROTO_OK:
		return "ok";
	case CLUSTER_PROTO_EAGAIN:
		return "incomplete frame";
	case CLUSTER_PROTO_ENOMEM:
		return "out of memory";
	case CLUSTER_PROTO_EINVAL:
		return "malformed frame";
	case CLUSTER_PROTO_E2BIG:
		return "frame too large";
	case CLUSTER_PROTO_ETYPE:
		return "unknown frame type";
	default:
		return "unknown error";
	}
}

/* ---- writing ---- */

void cluster_buf_init(struct cluster_buf *b)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

void cluster_buf_free(struct cluster_buf *b)
{
	free(b->data);
	cluster_buf_init(b);
}

void cluster_buf_reset(struct cluster_buf *b)
{
	b->len = 0;
}

static int buf_reserve(struct cluster_buf *b, size_t n)
{
	size_t cap;
	uint8_t *d;

	if (b->cap - b->len >= n)
		return 0;
	if (n > CLUSTER_FRAME_MAX * 4u || b->len > CLUSTER_FRAME_MAX * 64u)
		return CLUSTER_PROTO_E2BIG;
	cap = b->cap ? b->cap : 256;
	while (cap - b->len < n)
		cap *= 2;
	d = realloc(b->data, cap);
	if (!d)
		return CLUSTER_PROTO_ENOMEM;
	b->data = d;
	b->cap = cap;
	return 0;
}

/* Callers reserve first; these only store. */
static void put_u8(struct cluster_buf *b, unsigned v)
{
	b->data[b->len++] = (uint8_t)v;
}

static void put_u16(struct cluster_buf *b, unsigned v)
{
	put_u8(b, v >> 8);
	put_u8(b, v);
}

static void put_u32(struct cluster_buf *b, uint32_t v)
{
	put_u16(b, v >> 16);
	put_u16(b, v & 0xffff);
}

static void put_bytes(struct cluster_buf *b, const void *p, size_t n)
{
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
}

/* A string as its 16-bit length and its bytes. */
static void put_str16(struct cluster_buf *b, const char *s, size_t len)
{
	put_u16(b, (unsigned)len);
	put_bytes(b, s, len);
}

static void set_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static int str_ok(const char *s, size_t len, size_t min, size_t max)
{
	return len >= min && len <= max && !memchr(s, '\0', len);
}

/* Reserves a frame of plen payload bytes and writes its header. */
static int frame_begin(struct cluster_buf *b, uint8_t type, size_t plen)
{
	int rc;

	if (plen + 1 > CLUSTER_FRAME_MAX)
		return CLUSTER_PROTO_E2BIG;
	rc = buf_reserve(b, CLUSTER_FRAME_HDR + plen);
	if (rc < 0)
		return rc;
	put_u32(b, (uint32_t)(plen + 1));
	put_u8(b, type);
	return 0;
}

/* HELLO and IDENT: the same instance, version and port; HELLO (nonce not
 * NULL) adds the protocol version before them and the nonce after. */
static int enc_ident(struct cluster_buf *b, uint8_t type, const char *instance, const char *version,
		     uint16_t port, const uint8_t *nonce)
{
	size_t il = strlen(instance), vl = strlen(version);
	int rc;

	if (!str_ok(instance, il, 1, CLUSTER_ID_MAX) || !str_ok(version, vl, 0, 255) ||
	    !label_ok(instance, il) || !label_ok(version, vl))
		return CLUSTER_PROTO_EINVAL;
	rc = frame_begin(b, type,
			 (nonce ? 1 + (size_t)CLUSTER_NONCE_LEN : 0) + 2 + il + 2 + vl + 2);
	if (rc < 0)
		return rc;
	if (nonce)
		put_u8(b, CLUSTER_PROTO_VERSION);
	put_str16(b, instance, il);
	put_str16(b, version, vl);
	put_u16(b, port);
	if (nonce)
		put_bytes(b, nonce, CLUSTER_NONCE_LEN);
	return 0;
}

int cluster_enc_hello(struct cluster_buf *b, const char *instance, const char *version,
		      uint16_t port, const uint8_t nonce[CLUSTER_NONCE_LEN])
{
	return enc_ident(b, CLUSTER_MSG_HELLO, instance, version, port, nonce);
}

int cluster_enc_ident(struct cluster_buf *b, const char *instance, const char *version,
		      uint16_t port)
{
	return enc_ident(b, CLUSTER_MSG_IDENT, instance, version, port, NULL);
}

int cluster_enc_auth(struct cluster_buf *b, const uint8_t mac[CLUSTER_MAC_LEN])
{
	int rc = frame_begin(b, CLUSTER_MSG_AUTH, CLUSTER_MAC_LEN);

	if (rc < 0)
		return rc;
	put_bytes(b, mac, CLUSTER_MAC_LEN);
	return 0;
}

/* STANZA (to, from, xml) and PRESENCE (from, xml): the same layout but
 * for the leading 'to'. */
static int enc_routed_xml(struct cluster_buf *b, uint8_t type, const char *to, const char *from,
			  const char *xml, size_t xmllen)
{
	size_t tl = to ? strlen(to) : 0, fl = strlen(from);
	int rc;

	if ((to && !str_ok(to, tl, 1, CLUSTER_JID_MAX)) || !str_ok(from, fl, 1, CLUSTER_JID_MAX) ||
	    !str_ok(xml, xmllen, 1, CLUSTER_FRAME_MAX))
		return CLUSTER_PROTO_EINVAL;
	rc = frame_begin(b, type, (to ? 2 + tl : 0) + 2 + fl + 4 + xmllen);
	if (rc < 0)
		return rc;
	if (to)
		put_str16(b, to, tl);
	put_str16(b, from, fl);
	put_u32(b, (uint32_t)xmllen);
	put_bytes(b, xml, xmllen);
	return 0;
}

int cluster_enc_stanza(struct cluster_buf *b, const char *to, const char *from, const char *xml,
		       size_t xmllen)
{
	return enc_routed_xml(b, CLUSTER_MSG_STANZA, to, from, xml, xmllen);
}

int cluster_enc_presence(struct cluster_buf *b, const char *from, const char *xml, size_t xmllen)
{
	return enc_routed_xml(b, CLUSTER_MSG_PRESENCE, NULL, from, xml, xmllen);
}

int cluster_enc_relay(struct cluster_buf *b, const char *to, const char *from, const char *xml,
		      size_t xmllen)
{
	return enc_routed_xml(b, CLUSTER_MSG_RELAY, to, from, xml, xmllen);
}

static void put_u64(struct cluster_buf *b, uint64_t v)
{
	put_u32(b, (uint32_t)(v >> 32));
	put_u32(b, (uint32_t)v);
}

int cluster_enc_session_req(struct cluster_buf *b, uint64_t req, const char *previd,
			    const char *bare, uint32_t h)
{
	size_t pl = strlen(previd), bl = strlen(bare);
	int rc;

	if (!str_ok(previd, pl, 1, CLUSTER_PREVID_MAX) || !label_ok(previd, pl) ||
	    !str_ok(bare, bl, 1, CLUSTER_JID_MAX))
		return CLUSTER_PROTO_EINVAL;
	rc = frame_begin(b, CLUSTER_MSG_SESSION_REQ, 8 + 2 + pl + 2 + bl + 4);
	if (rc < 0)
		return rc;
	put_u64(b, req);
	put_str16(b, previd, pl);
	put_str16(b, bare, bl);
	put_u32(b, h);
	return 0;
}

int cluster_enc_session_nak(struct cluster_buf *b, uint64_t req, unsigned reason)
{
	int rc;

	if (reason < CLUSTER_NAK_NOT_FOUND || reason > CLUSTER_NAK_FAILED)
		return CLUSTER_PROTO_EINVAL;
	rc = frame_begin(b, CLUSTER_MSG_SESSION_NAK, 8 + 1);
	if (rc < 0)
		return rc;
	put_u64(b, req);
	put_u8(b, reason);
	return 0;
}

int cluster_enc_session_state(struct cluster_buf *b, uint64_t req, const char *full,
			      const uint8_t *state, size_t len)
{
	size_t fl = strlen(full);
	int rc;

	if (!str_ok(full, fl, 1, CLUSTER_JID_MAX) || len < 1 || len > CLUSTER_FRAME_MAX)
		return CLUSTER_PROTO_EINVAL;
	rc = frame_begin(b, CLUSTER_MSG_SESSION_STATE, 8 + 2 + fl + 4 + len);
	if (rc < 0)
		return rc;
	put_u64(b, req);
	put_str16(b, full, fl);
	put_u32(b, (uint32_t)len);
	put_bytes(b, state, len);
	return 0;
}

int cluster_enc_session_done(struct cluster_buf *b, const char *full)
{
	size_t fl = strlen(full);
	int rc;

	if (!str_ok(full, fl, 1, CLUSTER_JID_MAX))
		return CLUSTER_PROTO_EINVAL;
	rc = frame_begin(b, CLUSTER_MSG_SESSION_DONE, 2 + fl);
	if (rc < 0)
		return rc;
	put_str16(b, full, fl);
	return 0;
}

int cluster_enc_ping(struct cluster_buf *b, uint8_t type, uint64_t token)
{
	int rc;

	if (type != CLUSTER_MSG_PING && type != CLUSTER_MSG_PONG)
		return CLUSTER_PROTO_EINVAL;
	rc = frame_begin(b, type, 8);
	if (rc < 0)
		return rc;
	put_u64(b, token);
	return 0;
}

int cluster_enc_empty(struct cluster_buf *b, uint8_t type)
{
	if (type != CLUSTER_MSG_SYNC && type != CLUSTER_MSG_LEAVING)
		return CLUSTER_PROTO_EINVAL;
	return frame_begin(b, type, 0);
}

int cluster_batch_begin(struct cluster_batch *bt, struct cluster_buf *b, uint8_t type)
{
	int rc;

	if (type != CLUSTER_MSG_ROUTE_ADD && type != CLUSTER_MSG_ROUTE_DEL)
		return CLUSTER_PROTO_EINVAL;
	bt->b = b;
	bt->start = b->len;
	bt->type = type;
	bt->count = 0;
	rc = frame_begin(b, type, 2);
	if (rc < 0)
		return rc;
	put_u16(b, 0);
	return 0;
}

int cluster_batch_add(struct cluster_batch *bt, const char *jid, int priority, unsigned flags)
{
	struct cluster_buf *b = bt->b;
	size_t jl = strlen(jid);
	size_t need = 2 + jl + (bt->type == CLUSTER_MSG_ROUTE_ADD ? 2 : 0);
	int rc;

	if (!str_ok(jid, jl, 1, CLUSTER_JID_MAX))
		return CLUSTER_PROTO_EINVAL;
	if (bt->count == UINT16_MAX ||
	    (bt->count > 0 && b->len - bt->start + need > CLUSTER_ROUTE_BATCH_BYTES))
		return 0;
	rc = buf_reserve(b, need);
	if (rc < 0)
		return rc;
	put_str16(b, jid, jl);
	if (bt->type == CLUSTER_MSG_ROUTE_ADD) {
		if (priority < -128)
			priority = -128;
		if (priority > 127)
			priority = 127;
		put_u8(b, (unsigned)(uint8_t)(int8_t)priority);
		put_u8(b, flags & CLUSTER_ROUTE_AVAILABLE);
	}
	bt->count++;
	return 1;
}

void cluster_batch_end(struct cluster_batch *bt)
{
	struct cluster_buf *b = bt->b;
	uint8_t *f = b->data + bt->start;

	if (bt->count == 0) {
		b->len = bt->start;
		return;
	}
	set_u32(f, (uint32_t)(b->len - bt->start - 4));
	f[CLUSTER_FRAME_HDR] = (uint8_t)(bt->count >> 8);
	f[CLUSTER_FRAME_HDR + 1] = (uint8_t)bt->count;
}

/* ---- handshake ---- */

#define AUTH_LABEL "rainbow-cluster-auth-v1"

int cluster_auth_mac(const uint8_t *secret, size_t secretlen, enum cluster_role prover,
		     const uint8_t dialer_nonce[CLUSTER_NONCE_LEN],
		     const uint8_t acceptor_nonce[CLUSTER_NONCE_LEN], const char *dialer_id,
		     const char *acceptor_id, uint8_t out[CLUSTER_MAC_LEN])
{
	uint8_t msg[sizeof(AUTH_LABEL) + 1 + 2 * CLUSTER_NONCE_LEN + 2 * (2 + CLUSTER_ID_MAX)];
	size_t dl = strlen(dialer_id), al = strlen(acceptor_id), n = 0;
	unsigned int maclen = 0;

	if (dl > CLUSTER_ID_MAX || al > CLUSTER_ID_MAX || secretlen > INT32_MAX)
		return CLUSTER_PROTO_EINVAL;
	/* The label with its NUL separates this use of the secret from any
	 * other; ids are length-prefixed so that no two (dialer, acceptor)
	 * pairs give the same input. */
	memcpy(msg, AUTH_LABEL, sizeof(AUTH_LABEL));
	n += sizeof(AUTH_LABEL);
	msg[n++] = (uint8_t)prover;
	memcpy(msg + n, dialer_nonce, CLUSTER_NONCE_LEN);
	n += CLUSTER_NONCE_LEN;
	memcpy(msg + n, acceptor_nonce, CLUSTER_NONCE_LEN);
	n += CLUSTER_NONCE_LEN;
	msg[n++] = (uint8_t)(dl >> 8);
	msg[n++] = (uint8_t)dl;
	memcpy(msg + n, dialer_id, dl);
	n += dl;
	msg[n++] = (uint8_t)(al >> 8);
	msg[n++] = (uint8_t)al;
	memcpy(msg + n, acceptor_id, al);
	n += al;
	if (!HMAC(EVP_sha256(), secret, (int)secretlen, msg, n, out, &maclen) ||
	    maclen != CLUSTER_MAC_LEN)
		return CLUSTER_PROTO_ENOMEM;
	return 0;
}

#define PSEUDONYM_LABEL "rainbow-cluster-pseudonym-v1"

int cluster_pseudonym(const uint8_t *secret, size_t secretlen, const char *instance,
		      char out[CLUSTER_PSEUDONYM_LEN + 1])
{
	uint8_t msg[sizeof(PSEUDONYM_LABEL) + CLUSTER_ID_MAX], mac[EVP_MAX_MD_SIZE];
	size_t il = strlen(instance);
	unsigned int maclen = 0;

	if (il > CLUSTER_ID_MAX || secretlen > INT32_MAX)
		return CLUSTER_PROTO_EINVAL;
	memcpy(msg, PSEUDONYM_LABEL, sizeof(PSEUDONYM_LABEL));
	memcpy(msg + sizeof(PSEUDONYM_LABEL), instance, il);
	if (!HMAC(EVP_sha256(), secret, (int)secretlen, msg, sizeof(PSEUDONYM_LABEL) + il, mac,
		  &maclen) ||
	    maclen < 8)
		return CLUSTER_PROTO_ENOMEM;
	out[0] = CLUSTER_PSEUDONYM_PREFIX;
	for (int i = 0; i < 8; i++)
		snprintf(out + 1 + 2 * i, 3, "%02x", mac[i]);
	OPENSSL_cleanse(mac, sizeof(mac));
	return 0;
}

int cluster_auth_verify(const uint8_t *secret, size_t secretlen, enum cluster_role prover,
			const uint8_t dialer_nonce[CLUSTER_NONCE_LEN],
			const uint8_t acceptor_nonce[CLUSTER_NONCE_LEN], const char *dialer_id,
			const char *acceptor_id, const uint8_t mac[CLUSTER_MAC_LEN])
{
	uint8_t want[CLUSTER_MAC_LEN];
	int ok;

	if (cluster_auth_mac(secret, secretlen, prover, dialer_nonce, acceptor_nonce, dialer_id,
			     acceptor_id, want) < 0)
		return 0;
	ok = CRYPTO_memcmp(want, mac, CLUSTER_MAC_LEN) == 0;
	OPENSSL_cleanse(want, sizeof(want));
	return ok;
}
