/*
 * The chatd cluster link protocol (docs/cluster.md): framing, message
 * encoding and decoding, and the handshake's MAC computation. Pure code, no
 * I/O, so that it can be unit-tested and fuzzed on its own.
 *
 * A frame is
 *
 *     u32 length (big endian, counts type + payload) | u8 type | payload
 *
 * with length >= 1 and length <= the receiver's cap (CLUSTER_FRAME_MAX once
 * authenticated, CLUSTER_FRAME_MAX_PREAUTH before). Integers are big
 * endian; str16 is u16 length + bytes, str32 u32 length + bytes; strings
 * hold no NUL byte. Every payload must be consumed exactly: trailing bytes
 * are an error.
 *
 * Error convention: 0 or a positive count for success, a negative
 * CLUSTER_PROTO_E* (errno-style) otherwise.
 */
#ifndef CHATD_CLUSTER_PROTO_H
#define CHATD_CLUSTER_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define CLUSTER_PROTO_VERSION 1
#define CLUSTER_FRAME_HDR 5
/* Stanzas are capped by chatd's --max-stanza (64 KiB by default) well below
 * this; the cap bounds what one peer can make another buffer. */
#define CLUSTER_FRAME_MAX (1u << 20)
/* Before authentication only HELLO and AUTH are valid: both are small. */
#define CLUSTER_FRAME_MAX_PREAUTH 1024u
/* Route batches are split so that a frame stays well under the cap. */
#define CLUSTER_ROUTE_BATCH_BYTES 32768u
#define CLUSTER_NONCE_LEN 32
#define CLUSTER_MAC_LEN 32
#define CLUSTER_ID_MAX 253   /* instance ids: pod names are DNS labels/subdomains */
#define CLUSTER_JID_MAX 3071 /* three parts of 1023 bytes and two separators */

enum cluster_proto_err {
	CLUSTER_PROTO_OK = 0,
	CLUSTER_PROTO_EAGAIN = -11, /* more bytes needed */
	CLUSTER_PROTO_ENOMEM = -12,
	CLUSTER_PROTO_EINVAL = -22, /* malformed payload */
	CLUSTER_PROTO_E2BIG = -7,   /* frame over the cap */
	CLUSTER_PROTO_ETYPE = -71,  /* unknown frame type (EPROTO) */
};

enum cluster_msg_type {
	CLUSTER_MSG_HELLO = 1,	   /* u8 proto, str16 instance, str16 version, u16 listen port,
					 nonce[32] */
	CLUSTER_MSG_AUTH = 2,	   /* mac[32] */
	CLUSTER_MSG_ROUTE_ADD = 3, /* u16 n, n x (str16 full jid, i8 priority, u8 flags) */
	CLUSTER_MSG_ROUTE_DEL = 4, /* u16 n, n x str16 full jid */
	CLUSTER_MSG_SYNC = 5,	   /* empty: the full dump that starts a link is complete */
	CLUSTER_MSG_STANZA = 6,	   /* str16 to, str16 from, str32 xml */
	CLUSTER_MSG_PRESENCE = 7,  /* str16 from, str32 xml: broadcast presence */
	CLUSTER_MSG_PING = 8,	   /* u64 token */
	CLUSTER_MSG_PONG = 9,	   /* u64 token */
	CLUSTER_MSG_LEAVING = 10,  /* empty: clean shutdown, drop my routes now */
	CLUSTER_MSG_IDENT = 11,	   /* str16 instance, str16 version, u16 listen port: who the
					 sender is, sent only once the peer's AUTH checked */
	/* Session moves (XEP-0198 resumption at another instance), sent only
	 * to a peer that announced CLUSTER_CAP_SESSIONS: */
	CLUSTER_MSG_SESSION_REQ = 12,	/* u64 req, str16 previd, str16 bare JID, u32 h */
	CLUSTER_MSG_SESSION_NAK = 13,	/* u64 req, u8 reason (CLUSTER_NAK_*) */
	CLUSTER_MSG_SESSION_STATE = 14, /* u64 req, str16 full JID, bytes32 state */
	CLUSTER_MSG_SESSION_DONE = 15,	/* str16 full JID: every peer has the new route */
	CLUSTER_MSG_RELAY = 16,		/* str16 to, str16 from, str32 xml: a stanza the
					   instance a session left passes on; never again */
};

/* Why a SESSION_REQ is refused. */
enum cluster_nak {
	CLUSTER_NAK_NOT_FOUND = 1,  /* no such session here */
	CLUSTER_NAK_OTHER_USER = 2, /* it belongs to another user */
	CLUSTER_NAK_BAD_H = 3,	    /* h acknowledges stanzas never sent: the session ended */
	CLUSTER_NAK_FAILED = 4,	    /* it could not be handed over (too large, out of memory) */
};

/*
 * Capabilities travel in PING tokens, which every chatd, however old,
 * echoes in its PONG: a PING whose token carries CLUSTER_CAPS_PROBE in its
 * upper 48 bits announces the sender's capability bits (the low 16); a
 * peer that knows them answers a PONG with CLUSTER_CAPS_ACK and its own
 * bits, an older one echoes the probe (no capabilities). Fences (a PONG
 * proves that everything sent before the PING was read) use
 * CLUSTER_FENCE_TAG in the upper 32 bits.
 */
#define CLUSTER_CAPS_PROBE 0x5242434150500000ull /* "RBCAPP" */
#define CLUSTER_CAPS_ACK 0x5242434150410000ull	 /* "RBCAPA" */
#define CLUSTER_CAPS_TAG_MASK 0xffffffffffff0000ull
#define CLUSTER_FENCE_TAG 0x5242464e00000000ull /* "RBFN" */
#define CLUSTER_FENCE_TAG_MASK 0xffffffff00000000ull
#define CLUSTER_CAP_SESSIONS 0x0001 /* session moves: SESSION_*, RELAY */
#define CLUSTER_PREVID_MAX 64

/* The instance field of our HELLO is a pseudonym, "~" and 16 hex digits
 * derived from the secret and the instance id: nothing identifying goes out
 * before the peer proved the secret. A peer whose HELLO carries one sends
 * IDENT after AUTH; one that sends its name in HELLO (an older chatd) does
 * not, and is told nothing more than the pseudonym. */
#define CLUSTER_PSEUDONYM_PREFIX '~'
#define CLUSTER_PSEUDONYM_LEN 17

#define CLUSTER_ROUTE_AVAILABLE 0x01 /* the resource sent available presence */

/* A byte string inside a received payload (not NUL-terminated). */
struct cluster_str {
	const char *p;
	size_t len;
};

/* One decoded frame; strings point into the frame's payload. */
struct cluster_msg {
	uint8_t type;
	union {
		struct {
			uint8_t proto;
			struct cluster_str instance;
			struct cluster_str version;
			uint16_t port;	      /* the sender's link port (0 = unknown) */
			const uint8_t *nonce; /* CLUSTER_NONCE_LEN bytes */
		} hello;
		struct {
			const uint8_t *mac; /* CLUSTER_MAC_LEN bytes */
		} auth;
		struct {
			struct cluster_str instance;
			struct cluster_str version;
			uint16_t port;
		} ident;
		struct {
			uint16_t count;
			const uint8_t *entries; /* validated; walk with cluster_route_next() */
			size_t len;
		} routes; /* ROUTE_ADD and ROUTE_DEL */
		struct {
			struct cluster_str to;
			struct cluster_str from;
			struct cluster_str xml;
		} stanza;
		struct {
			struct cluster_str from;
			struct cluster_str xml;
		} presence;
		struct {
			uint64_t token;
		} ping; /* PING and PONG */
		struct {
			uint64_t req;
			struct cluster_str previd;
			struct cluster_str bare;
			uint32_t h;
		} sreq;
		struct {
			uint64_t req;
			uint8_t reason;
		} snak;
		struct {
			uint64_t req;
			struct cluster_str full;
			struct cluster_str state; /* opaque bytes (may hold NUL) */
		} sstate;
		struct {
			struct cluster_str full;
		} sdone;
	} u; /* RELAY uses stanza */
};

/* One route record from a ROUTE_ADD or ROUTE_DEL batch. */
struct cluster_route_rec {
	struct cluster_str jid;
	int priority;	/* -128..127; 0 in ROUTE_DEL */
	unsigned flags; /* CLUSTER_ROUTE_*; 0 in ROUTE_DEL */
};

/* Walks a validated batch: *off starts at 0; returns 1 and fills rec, or 0
 * at the end. */
int cluster_route_next(const struct cluster_msg *m, size_t *off, struct cluster_route_rec *rec);

/*
 * Splits one frame off the front of buf. Returns the number of bytes the
 * whole frame takes (> 0) and sets *type, *payload and *plen;
 * CLUSTER_PROTO_EAGAIN when buf holds less than a frame; CLUSTER_PROTO_E2BIG
 * when the announced length is over max (checked from the header alone, so
 * the caller never buffers more than max + CLUSTER_FRAME_HDR); or
 * CLUSTER_PROTO_EINVAL for a zero length.
 */
long cluster_frame_split(const uint8_t *buf, size_t len, size_t max, uint8_t *type,
			 const uint8_t **payload, size_t *plen);

/* Decodes and fully validates one payload; CLUSTER_PROTO_ETYPE for an
 * unknown type, CLUSTER_PROTO_EINVAL for a malformed payload. */
int cluster_msg_decode(uint8_t type, const uint8_t *payload, size_t plen, struct cluster_msg *out);

const char *cluster_msg_type_name(uint8_t type);
const char *cluster_proto_strerror(int err);

/* A growable output buffer holding whole frames. */
struct cluster_buf {
	uint8_t *data;
	size_t len;
	size_t cap;
};

void cluster_buf_init(struct cluster_buf *b);
void cluster_buf_free(struct cluster_buf *b);
void cluster_buf_reset(struct cluster_buf *b);

/* Each appends one complete frame to b; 0, CLUSTER_PROTO_ENOMEM, or
 * CLUSTER_PROTO_EINVAL / E2BIG when a field does not fit its encoding or the
 * frame would exceed CLUSTER_FRAME_MAX (b is then left as it was). */
int cluster_enc_hello(struct cluster_buf *b, const char *instance, const char *version,
		      uint16_t port, const uint8_t nonce[CLUSTER_NONCE_LEN]);
int cluster_enc_auth(struct cluster_buf *b, const uint8_t mac[CLUSTER_MAC_LEN]);
int cluster_enc_ident(struct cluster_buf *b, const char *instance, const char *version,
		      uint16_t port);
int cluster_enc_stanza(struct cluster_buf *b, const char *to, const char *from, const char *xml,
		       size_t xmllen);
int cluster_enc_presence(struct cluster_buf *b, const char *from, const char *xml, size_t xmllen);
int cluster_enc_ping(struct cluster_buf *b, uint8_t type, uint64_t token);
int cluster_enc_empty(struct cluster_buf *b, uint8_t type); /* SYNC, LEAVING */
int cluster_enc_relay(struct cluster_buf *b, const char *to, const char *from, const char *xml,
		      size_t xmllen);
int cluster_enc_session_req(struct cluster_buf *b, uint64_t req, const char *previd,
			    const char *bare, uint32_t h);
int cluster_enc_session_nak(struct cluster_buf *b, uint64_t req, unsigned reason);
int cluster_enc_session_state(struct cluster_buf *b, uint64_t req, const char *full,
			      const uint8_t *state, size_t len);
int cluster_enc_session_done(struct cluster_buf *b, const char *full);

/*
 * Route batches: begin, then add records (ROUTE_ADD: priority and flags
 * kept; ROUTE_DEL: ignored), then end. cluster_batch_add() returns 1 when
 * the record went in, 0 when the batch is full (end it and begin another),
 * or a negative error (a JID longer than CLUSTER_JID_MAX or with a NUL).
 */
struct cluster_batch {
	struct cluster_buf *b;
	size_t start; /* offset of the frame in b */
	uint8_t type;
	uint16_t count;
};

int cluster_batch_begin(struct cluster_batch *bt, struct cluster_buf *b, uint8_t type);
int cluster_batch_add(struct cluster_batch *bt, const char *jid, int priority, unsigned flags);
/* Finishes the frame; an empty batch is removed again. */
void cluster_batch_end(struct cluster_batch *bt);

/*
 * Handshake proof (docs/cluster.md): HMAC-SHA256 keyed with the shared
 * secret over a fixed label, the prover's role (dialer or acceptor), both
 * nonces and both instance ids, each id length-prefixed. Both sides prove
 * and both verify; the role byte keeps a peer from reflecting a proof back.
 */
enum cluster_role { CLUSTER_ROLE_DIALER = 'D', CLUSTER_ROLE_ACCEPTOR = 'A' };

int cluster_auth_mac(const uint8_t *secret, size_t secretlen, enum cluster_role prover,
		     const uint8_t dialer_nonce[CLUSTER_NONCE_LEN],
		     const uint8_t acceptor_nonce[CLUSTER_NONCE_LEN], const char *dialer_id,
		     const char *acceptor_id, uint8_t out[CLUSTER_MAC_LEN]);
/* Our pseudonym (CLUSTER_PSEUDONYM_LEN chars and a NUL) for instance. */
int cluster_pseudonym(const uint8_t *secret, size_t secretlen, const char *instance,
		      char out[CLUSTER_PSEUDONYM_LEN + 1]);
/* 1 when mac is the proof expected from prover, else 0; constant time. */
int cluster_auth_verify(const uint8_t *secret, size_t secretlen, enum cluster_role prover,
			const uint8_t dialer_nonce[CLUSTER_NONCE_LEN],
			const uint8_t acceptor_nonce[CLUSTER_NONCE_LEN], const char *dialer_id,
			const char *acceptor_id, const uint8_t mac[CLUSTER_MAC_LEN]);

#endif
