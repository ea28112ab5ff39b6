/*
 * Unit tests for the cluster module: frame encoding and decoding (whole,
 * byte by byte, malformed), the handshake MAC (a known answer computed
 * independently with Python's hmac module), the route table, and live links
 * between several struct cluster on one loop over 127.0.0.1.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../server/cluster/cluster.h"
#include "../../server/cluster/cluster_int.h"
#include "../../server/cluster/cluster_proto.h"
#include "../../server/cluster/cluster_routes.h"
#include "log.h"

/* ---- frames ---- */

static void split_one(const struct cluster_buf *b, size_t off, struct cluster_msg *m, long *n)
{
	const uint8_t *payload;
	size_t plen;
	uint8_t type;

	*n = cluster_frame_split(b->data + off, b->len - off, CLUSTER_FRAME_MAX, &type, &payload,
				 &plen);
	assert_true(*n > 0);
	assert_int_equal(cluster_msg_decode(type, payload, plen, m), 0);
}

static void test_ident_and_pseudonym(void **state)
{
	static const uint8_t sa[] = "0123456789abcdef0123", sb[] = "0123456789abcdef0124";
	char p1[CLUSTER_PSEUDONYM_LEN + 1], p2[CLUSTER_PSEUDONYM_LEN + 1];
	struct cluster_buf b;
	struct cluster_msg m;
	long n;

	cluster_buf_init(&b);
	assert_int_equal(cluster_enc_ident(&b, "chat-aaa-1", "v1.2", 7946), 0);
	split_one(&b, 0, &m, &n);
	assert_int_equal(m.type, CLUSTER_MSG_IDENT);
	assert_int_equal(m.u.ident.instance.len, 10);
	assert_memory_equal(m.u.ident.instance.p, "chat-aaa-1", 10);
	assert_int_equal(m.u.ident.version.len, 4);
	assert_int_equal(m.u.ident.port, 7946);
	assert_string_equal(cluster_msg_type_name(CLUSTER_MSG_IDENT), "ident");
	cluster_buf_free(&b);
	cluster_buf_init(&b);
	assert_int_equal(cluster_enc_ident(&b, "", "v", 1), CLUSTER_PROTO_EINVAL);
	assert_int_equal(cluster_enc_ident(&b, "a\nb", "v", 1), CLUSTER_PROTO_EINVAL);
	cluster_buf_free(&b);

	/* stable, "~" + 16 hex digits, different per instance and per secret */
	assert_int_equal(cluster_pseudonym(sa, 20, "chat-aaa-1", p1), 0);
	assert_int_equal(strlen(p1), CLUSTER_PSEUDONYM_LEN);
	assert_int_equal(p1[0], CLUSTER_PSEUDONYM_PREFIX);
	assert_int_equal(strspn(p1 + 1, "0123456789abcdef"), 16);
	assert_null(strstr(p1, "chat"));
	assert_int_equal(cluster_pseudonym(sa, 20, "chat-aaa-1", p2), 0);
	assert_string_equal(p1, p2);
	assert_int_equal(cluster_pseudonym(sa, 20, "chat-aaa-2", p2), 0);
	assert_string_not_equal(p1, p2);
	assert_int_equal(cluster_pseudonym(sb, 20, "chat-aaa-1", p2), 0);
	assert_string_not_equal(p1, p2);
}

static void test_dial_backoff(void **state)
{
	/* doubling from 200 ms; a peer seen before is retried within 5 s, one
	 * never reached backs off to a minute */
	assert_int_equal(cluster_backoff_ms(0, 0), 200);
	assert_int_equal(cluster_backoff_ms(1, 0), 400);
	assert_int_equal(cluster_backoff_ms(4, 1), 3200);
	assert_int_equal(cluster_backoff_ms(5, 1), CLUSTER_BACKOFF_MAX_MS);
	assert_int_equal(cluster_backoff_ms(1000, 1), CLUSTER_BACKOFF_MAX_MS);
	assert_int_equal(cluster_backoff_ms(5, 0), 6400);
	assert_int_equal(cluster_backoff_ms(8, 0), 51200);
	assert_int_equal(cluster_backoff_ms(9, 0), CLUSTER_BACKOFF_NEVER_UP_MAX_MS);
	assert_int_equal(cluster_backoff_ms(4000000000u, 0), CLUSTER_BACKOFF_NEVER_UP_MAX_MS);
	/* failures logged at info: 1, 2, 4, 8, ...; the rest at debug */
	assert_int_equal(cluster_dial_log_level(1), LOG_INFO);
	assert_int_equal(cluster_dial_log_level(2), LOG_INFO);
	assert_int_equal(cluster_dial_log_level(3), LOG_DEBUG);
	assert_int_equal(cluster_dial_log_level(64), LOG_INFO);
	assert_int_equal(cluster_dial_log_level(65), LOG_DEBUG);
	assert_int_equal(cluster_dial_log_level(0), LOG_DEBUG);
}

/* The session-move frames: encoded, split, decoded back; a state may hold
 * NUL bytes; an unknown refusal reason is malformed. */
static void test_session_frames(void **state)
{
	static const uint8_t blob[] = { 1, 0, 2, 'x', 0 };
	struct cluster_buf b;
	struct cluster_msg m;
	size_t off = 0;
	long n;

	cluster_buf_init(&b);
	assert_int_equal(cluster_enc_session_req(&b, 0x1122334455667788ull, "0a1b", "x@d", 7), 0);
	assert_int_equal(cluster_enc_session_nak(&b, 5, CLUSTER_NAK_BAD_H), 0);
	assert_int_equal(cluster_enc_session_state(&b, 6, "x@d/r", blob, sizeof(blob)), 0);
	assert_int_equal(cluster_enc_session_done(&b, "x@d/r"), 0);
	assert_int_equal(cluster_enc_relay(&b, "x@d/r", "y@d/s", "<message/>", 10), 0);
	split_one(&b, off, &m, &n);
	off += (size_t)n;
	assert_int_equal(m.type, CLUSTER_MSG_SESSION_REQ);
	assert_true(m.u.sreq.req == 0x1122334455667788ull);
	assert_memory_equal(m.u.sreq.previd.p, "0a1b", 4);
	assert_memory_equal(m.u.sreq.bare.p, "x@d", 3);
	assert_int_equal(m.u.sreq.h, 7);
	split_one(&b, off, &m, &n);
	off += (size_t)n;
	assert_int_equal(m.type, CLUSTER_MSG_SESSION_NAK);
	assert_int_equal(m.u.snak.reason, CLUSTER_NAK_BAD_H);
	split_one(&b, off, &m, &n);
	off += (size_t)n;
	assert_int_equal(m.type, CLUSTER_MSG_SESSION_STATE);
	assert_int_equal(m.u.sstate.req, 6);
	assert_int_equal(m.u.sstate.state.len, sizeof(blob));
	assert_memory_equal(m.u.sstate.state.p, blob, sizeof(blob));
	split_one(&b, off, &m, &n);
	off += (size_t)n;
	assert_int_equal(m.type, CLUSTER_MSG_SESSION_DONE);
	assert_memory_equal(m.u.sdone.full.p, "x@d/r", 5);
	split_one(&b, off, &m, &n);
	off += (size_t)n;
	assert_int_equal(m.type, CLUSTER_MSG_RELAY);
	assert_memory_equal(m.u.stanza.from.p, "y@d/s", 5);
	assert_int_equal(off, b.len);
	/* bad arguments are refused at encoding */
	assert_int_equal(cluster_enc_session_nak(&b, 1, 0), CLUSTER_PROTO_EINVAL);
	assert_int_equal(cluster_enc_session_nak(&b, 1, 9), CLUSTER_PROTO_EINVAL);
	assert_int_equal(cluster_enc_session_req(&b, 1, "", "x@d", 0), CLUSTER_PROTO_EINVAL);
	assert_int_equal(cluster_enc_session_state(&b, 1, "x@d/r", blob, 0), CLUSTER_PROTO_EINVAL);
	/* and at decoding: a reason out of range, a control character in the id */
	{
		uint8_t nak[9] = { 0, 0, 0, 0, 0, 0, 0, 1, 7 };
		uint8_t req[] = { 0,	0, 0, 0,   0,	0,   0, 1, 0, 2, 'a',
				  '\n', 0, 3, 'x', '@', 'd', 0, 0, 0, 0 };

		assert_int_equal(cluster_msg_decode(CLUSTER_MSG_SESSION_NAK, nak, sizeof(nak), &m),
				 CLUSTER_PROTO_EINVAL);
		assert_int_equal(cluster_msg_decode(CLUSTER_MSG_SESSION_REQ, req, sizeof(req), &m),
				 CLUSTER_PROTO_EINVAL);
		req[11] = 'b';
		assert_int_equal(cluster_msg_decode(CLUSTER_MSG_SESSION_REQ, req, sizeof(req), &m),
				 0);
	}
	cluster_buf_free(&b);
}

static void test_frame_roundtrip(void **state)
{
	struct cluster_buf b;
	struct cluster_msg m;
	uint8_t nonce[CLUSTER_NONCE_LEN], mac[CLUSTER_MAC_LEN];
	size_t off = 0;
	long n;

	for (int i = 0; i < CLUSTER_NONCE_LEN; i++)
		nonce[i] = (uint8_t)(i * 7);
	memset(mac, 0xab, sizeof(mac));
	cluster_buf_init(&b);
	assert_int_equal(cluster_enc_hello(&b, "chat-aaa-1", "v1.2", 7946, nonce), 0);
	assert_int_equal(cluster_enc_auth(&b, mac), 0);
	assert_int_equal(cluster_enc_stanza(&b, "bob@x/r", "alice@x/a", "<message/>", 10), 0);
	assert_int_equal(cluster_enc_presence(&b, "alice@x/a", "<presence/>", 11), 0);
	assert_int_equal(cluster_enc_ping(&b, CLUSTER_MSG_PING, 0x0102030405060708ull), 0);
	assert_int_equal(cluster_enc_ping(&b, CLUSTER_MSG_PONG, 42), 0);
	assert_int_equal(cluster_enc_empty(&b, CLUSTER_MSG_SYNC), 0);
	assert_int_equal(cluster_enc_empty(&b, CLUSTER_MSG_LEAVING), 0);

	split_one(&b, off, &m, &n);
	off += (size_t)n;
	assert_int_equal(m.type, CLUSTER_MSG_HELLO);
	assert_int_equal(m.u.hello.proto, CLUSTER_PROTO_VERSION);
	assert_int_equal(m.u.hello.instance.len, 10);
	assert_memory_equal(m.u.hello.instance.p, "chat-aaa-1", 10);
	assert_memory_equal(m.u.hello.version.p, "v1.2", 4);
	assert_int_equal(m.u.hello.port, 7946);
	assert_memory_equal(m.u.hello.nonce, nonce, CLUSTER_NONCE_LEN);

	split_one(&b, off, &m, &n);
	off += (size_t)n;
	assert_int_equal(m.type, CLUSTER_MSG_AUTH);
	assert_memory_equal(m.u.auth.mac, mac, CLUSTER_MAC_LEN);

	split_one(&b, off, &m, &n);
	off += (size_t)n;
	assert_int_equal(m.type, CLUSTER_MSG_STANZA);
	assert_int_equal(m.u.stanza.to.len, 7);
	assert_memory_equal(m.u.stanza.to.p, "bob@x/r", 7);
	assert_memory_equal(m.u.stanza.from.p, "alice@x/a", 9);
	assert_int_equal(m.u.stanza.xml.len, 10);
	assert_memory_equal(m.u.stanza.xml.p, "<message/>", 10);

	split_one(&b, off, &m, &n);
	off += (size_t)n;
	assert_int_equal(m.type, CLUSTER_MSG_PRESENCE);
	assert_memory_equal(m.u.presence.xml.p, "<presence/>", 11);

	split_one(&b, off, &m, &n);
	off += (size_t)n;
	assert_int_equal(m.type, CLUSTER_MSG_PING);
	assert_true(m.u.ping.token == 0x0102030405060708ull);

	split_one(&b, off, &m, &n);
	off += (size_t)n;
	assert_int_equal(m.type, CLUSTER_MSG_PONG);
	assert_true(m.u.ping.token == 42);

	split_one(&b, off, &m, &n);
	off += (size_t)n;
	assert_int_equal(m.type, CLUSTER_MSG_SYNC);
	split_one(&b, off, &m, &n);
	off += (size_t)n;
	assert_int_equal(m.type, CLUSTER_MSG_LEAVING);
	assert_int_equal(off, b.len);
	cluster_buf_free(&b);
}

/* Every prefix of a frame is "need more"; the whole one splits. */
static void test_frame_bytewise(void **state)
{
	struct cluster_buf b;
	const uint8_t *payload;
	size_t plen, i;
	uint8_t type;

	cluster_buf_init(&b);
	assert_int_equal(cluster_enc_stanza(&b, "b@x/r", "a@x/r", "<message>hi</message>", 21), 0);
	for (i = 0; i < b.len; i++)
		assert_int_equal(
			cluster_frame_split(b.data, i, CLUSTER_FRAME_MAX, &type, &payload, &plen),
			CLUSTER_PROTO_EAGAIN);
	assert_int_equal(
		cluster_frame_split(b.data, b.len, CLUSTER_FRAME_MAX, &type, &payload, &plen),
		(long)b.len);
	assert_int_equal(type, CLUSTER_MSG_STANZA);
	assert_int_equal(plen, b.len - CLUSTER_FRAME_HDR);
	cluster_buf_free(&b);
}

static void test_frame_malformed(void **state)
{
	static const uint8_t zero[] = { 0, 0, 0, 0, 1 };
	static const uint8_t huge[] = { 0x7f, 0xff, 0xff, 0xff, 1 };
	static const uint8_t http[] = "GET / HTTP/1.1\r\n";
	/* HELLO whose instance string holds a NUL */
	static const uint8_t nul_id[] = { 1, 0, 3, 'a', 0, 'b', 0, 0, 0, 0 };
	/* STANZA with a trailing byte */
	static const uint8_t trailing[] = { 0, 1, 'a', 0, 1, 'b', 0, 0, 0, 1, 'x', 9 };
	/* ROUTE_ADD announcing 2 entries, holding 1 */
	static const uint8_t short_batch[] = { 0, 2, 0, 3, 'a', '/', 'b', 0, 1 };
	/* ROUTE_ADD with an unknown flag */
	static const uint8_t bad_flag[] = { 0, 1, 0, 3, 'a', '/', 'b', 0, 0x80 };
	const uint8_t *payload;
	struct cluster_msg m;
	struct cluster_buf b;
	uint8_t type, nonce[CLUSTER_NONCE_LEN] = { 0 };
	size_t plen;
	char big[CLUSTER_ID_MAX + 2];

	assert_int_equal(
		cluster_frame_split(zero, sizeof(zero), CLUSTER_FRAME_MAX, &type, &payload, &plen),
		CLUSTER_PROTO_EINVAL);
	assert_int_equal(
		cluster_frame_split(huge, sizeof(huge), CLUSTER_FRAME_MAX, &type, &payload, &plen),
		CLUSTER_PROTO_E2BIG);
	/* an HTTP client on the link port: "GET " is a 1.2 GB frame */
	assert_int_equal(cluster_frame_split(http, sizeof(http) - 1, CLUSTER_FRAME_MAX_PREAUTH,
					     &type, &payload, &plen),
			 CLUSTER_PROTO_E2BIG);
	assert_int_equal(cluster_msg_decode(CLUSTER_MSG_HELLO, nul_id, sizeof(nul_id), &m),
			 CLUSTER_PROTO_EINVAL);
	assert_int_equal(cluster_msg_decode(CLUSTER_MSG_STANZA, trailing, sizeof(trailing), &m),
			 CLUSTER_PROTO_EINVAL);
	assert_int_equal(cluster_msg_decode(CLUSTER_MSG_STANZA, trailing, sizeof(trailing) - 1, &m),
			 0);
	assert_int_equal(
		cluster_msg_decode(CLUSTER_MSG_ROUTE_ADD, short_batch, sizeof(short_batch), &m),
		CLUSTER_PROTO_EINVAL);
	assert_int_equal(cluster_msg_decode(CLUSTER_MSG_ROUTE_ADD, bad_flag, sizeof(bad_flag), &m),
			 CLUSTER_PROTO_EINVAL);
	assert_int_equal(cluster_msg_decode(200, NULL, 0, &m), CLUSTER_PROTO_ETYPE);
	assert_int_equal(cluster_msg_decode(CLUSTER_MSG_AUTH, nonce, 31, &m), CLUSTER_PROTO_EINVAL);
	assert_int_equal(cluster_msg_decode(CLUSTER_MSG_SYNC, nonce, 1, &m), CLUSTER_PROTO_EINVAL);

	/* the encoder refuses what the decoder would refuse */
	cluster_buf_init(&b);
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(cluster_enc_hello(&b, big, "v", 1, nonce), CLUSTER_PROTO_EINVAL);
	assert_int_equal(cluster_enc_hello(&b, "", "v", 1, nonce), CLUSTER_PROTO_EINVAL);
	/* HELLO comes before authentication and its strings are logged: no
	 * control characters (a newline would forge a log line) */
	assert_int_equal(cluster_enc_hello(&b, "a\nb", "v", 1, nonce), CLUSTER_PROTO_EINVAL);
	assert_int_equal(cluster_enc_hello(&b, "a", "v\x1b", 1, nonce), CLUSTER_PROTO_EINVAL);
	{
		static const char inst[] = "x\nts=0 level=error event=forged";
		uint8_t hp[1 + 2 + sizeof(inst) - 1 + 2 + 2 + CLUSTER_NONCE_LEN] = { 0 };
		size_t il = sizeof(inst) - 1;

		hp[0] = CLUSTER_PROTO_VERSION;
		hp[1] = (uint8_t)(il >> 8);
		hp[2] = (uint8_t)il;
		memcpy(hp + 3, inst, il);
		assert_int_equal(cluster_msg_decode(CLUSTER_MSG_HELLO, hp, sizeof(hp), &m),
				 CLUSTER_PROTO_EINVAL);
		hp[3] = 'y'; /* the same frame with a printable id is fine */
		hp[4] = 'y';
		assert_int_equal(cluster_msg_decode(CLUSTER_MSG_HELLO, hp, sizeof(hp), &m), 0);
	}
	assert_int_equal(cluster_enc_stanza(&b, "a@x/r", "b@x/r", "a\0b", 3), CLUSTER_PROTO_EINVAL);
	assert_int_equal(cluster_enc_ping(&b, CLUSTER_MSG_SYNC, 1), CLUSTER_PROTO_EINVAL);
	assert_int_equal(b.len, 0);
	cluster_buf_free(&b);
}

static void test_route_batches(void **state)
{
	struct cluster_buf b;
	struct cluster_batch bt;
	struct cluster_route_rec rec;
	struct cluster_msg m;
	char jid[64];
	size_t off = 0, roff;
	int i, rc, frames = 0, seen = 0;
	long n;

	cluster_buf_init(&b);
	assert_int_equal(cluster_batch_begin(&bt, &b, CLUSTER_MSG_ROUTE_ADD), 0);
	for (i = 0; i < 3000; i++) {
		snprintf(jid, sizeof(jid), "user%d@example.org/res%d", i, i);
		rc = cluster_batch_add(&bt, jid, i % 5 - 2, i & 1);
		if (rc == 0) {
			cluster_batch_end(&bt);
			assert_int_equal(cluster_batch_begin(&bt, &b, CLUSTER_MSG_ROUTE_ADD), 0);
			rc = cluster_batch_add(&bt, jid, i % 5 - 2, i & 1);
		}
		assert_int_equal(rc, 1);
	}
	cluster_batch_end(&bt);
	/* an empty batch leaves nothing behind */
	roff = b.len;
	assert_int_equal(cluster_batch_begin(&bt, &b, CLUSTER_MSG_ROUTE_DEL), 0);
	cluster_batch_end(&bt);
	assert_int_equal(b.len, roff);

	while (off < b.len) {
		split_one(&b, off, &m, &n);
		off += (size_t)n;
		assert_true((size_t)n <= CLUSTER_ROUTE_BATCH_BYTES + CLUSTER_FRAME_HDR);
		assert_int_equal(m.type, CLUSTER_MSG_ROUTE_ADD);
		frames++;
		roff = 0;
		while (cluster_route_next(&m, &roff, &rec)) {
			snprintf(jid, sizeof(jid), "user%d@example.org/res%d", seen, seen);
			assert_int_equal(rec.jid.len, strlen(jid));
			assert_memory_equal(rec.jid.p, jid, rec.jid.len);
			assert_int_equal(rec.priority, seen % 5 - 2);
			assert_int_equal(rec.flags, (unsigned)(seen & 1));
			seen++;
		}
	}
	assert_int_equal(seen, 3000);
	assert_true(frames > 1);
	cluster_buf_free(&b);
}

/* ---- handshake ---- */

static void hex(const uint8_t *p, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", p[i]);
}

static void test_auth_mac(void **state)
{
	static const char secret[] = "0123456789abcdef-test-secret";
	static const char other[] = "0123456789abcdef-test-secreT";
	uint8_t dn[CLUSTER_NONCE_LEN], an[CLUSTER_NONCE_LEN], mac[CLUSTER_MAC_LEN];
	uint8_t amac[CLUSTER_MAC_LEN];
	char h[2 * CLUSTER_MAC_LEN + 1];
	const uint8_t *s = (const uint8_t *)secret;
	size_t sl = strlen(secret);

	for (int i = 0; i < CLUSTER_NONCE_LEN; i++) {
		dn[i] = (uint8_t)i;
		an[i] = (uint8_t)(32 + i);
	}
	/* Known answers from Python: hmac.new(secret, b'rainbow-cluster-auth-v1\0' + role
	 * + dn + an + len16(did) + did + len16(aid) + aid, sha256) */
	assert_int_equal(cluster_auth_mac(s, sl, CLUSTER_ROLE_DIALER, dn, an, "chat-aaa-1",
					  "chat-bbb-2", mac),
			 0);
	hex(mac, sizeof(mac), h);
	assert_string_equal(h, "c5c76da0b8ef68237e41044b8b467c054f652472bffc8b6c586a8ea7acf00118");
	assert_int_equal(cluster_auth_mac(s, sl, CLUSTER_ROLE_ACCEPTOR, dn, an, "chat-aaa-1",
					  "chat-bbb-2", amac),
			 0);
	hex(amac, sizeof(amac), h);
	assert_string_equal(h, "634752410dae8a301f19b90fcae96d854ac0a701dac11b283f138254417cde51");

	assert_true(cluster_auth_verify(s, sl, CLUSTER_ROLE_DIALER, dn, an, "chat-aaa-1",
					"chat-bbb-2", mac));
	/* reflected: the dialer's proof is not the acceptor's */
	assert_false(cluster_auth_verify(s, sl, CLUSTER_ROLE_ACCEPTOR, dn, an, "chat-aaa-1",
					 "chat-bbb-2", mac));
	/* wrong secret, swapped nonces, swapped or shifted ids */
	assert_false(cluster_auth_verify((const uint8_t *)other, sl, CLUSTER_ROLE_DIALER, dn, an,
					 "chat-aaa-1", "chat-bbb-2", mac));
	assert_false(cluster_auth_verify(s, sl, CLUSTER_ROLE_DIALER, an, dn, "chat-aaa-1",
					 "chat-bbb-2", mac));
	assert_false(cluster_auth_verify(s, sl, CLUSTER_ROLE_DIALER, dn, an, "chat-bbb-2",
					 "chat-aaa-1", mac));
	assert_false(cluster_auth_verify(s, sl, CLUSTER_ROLE_DIALER, dn, an, "chat-aaa-1c",
					 "hat-bbb-2", mac));
	mac[31] ^= 1;
	assert_false(cluster_auth_verify(s, sl, CLUSTER_ROLE_DIALER, dn, an, "chat-aaa-1",
					 "chat-bbb-2", mac));
}

/* ---- route table ---- */

static void test_routes(void **state)
{
	struct cluster_routes rt;
	struct cluster_rt_owner a, b;
	const struct cluster_route *r;
	char jid[64];
	int n, i;

	cluster_routes_init(&rt);
	cluster_rt_owner_init(&a, (void *)1);
	cluster_rt_owner_init(&b, (void *)2);
	assert_int_equal(cluster_routes_set(&rt, &a, "alice@x", 0, 1), -EINVAL);
	assert_int_equal(cluster_routes_set(&rt, &a, "alice@x/", 0, 1), -EINVAL);
	assert_int_equal(cluster_routes_set(&rt, &a, "/r", 0, 1), -EINVAL);
	assert_int_equal(cluster_routes_set(&rt, &a, "alice@x/phone", 5, 1), 1);
	assert_int_equal(cluster_routes_set(&rt, &a, "alice@x/desk", 1, 0), 1);
	assert_int_equal(cluster_routes_set(&rt, &b, "alice@x/laptop", 7, 1), 1);
	assert_int_equal(cluster_routes_set(&rt, &a, "alice@x/phone", 3, 1), 0); /* update */
	assert_int_equal(rt.count, 3);
	assert_int_equal(a.count, 2);

	r = cluster_routes_find(&rt, "alice@x/phone", NULL);
	assert_non_null(r);
	assert_ptr_equal(r->owner, &a);
	assert_int_equal(r->priority, 3);
	assert_string_equal(r->resource, "phone");
	assert_null(cluster_routes_find(&rt, "alice@x/tablet", NULL));
	assert_null(cluster_routes_find(&rt, "alice@y/phone", NULL));
	assert_null(cluster_routes_find(&rt, "alice@x", NULL));
	assert_null(cluster_routes_find(&rt, "alice@x/phone", &a));

	n = 0;
	for (r = cluster_routes_bare(&rt, "alice@x"); r; r = r->bnext)
		n++;
	assert_int_equal(n, 3);
	assert_null(cluster_routes_bare(&rt, "alice@xx"));
	assert_null(cluster_routes_bare(&rt, "alice"));

	/* the same full JID on two owners: the newest wins, removal is per owner */
	assert_int_equal(cluster_routes_set(&rt, &b, "alice@x/phone", 0, 1), 1);
	assert_ptr_equal(cluster_routes_find(&rt, "alice@x/phone", NULL)->owner, &b);
	assert_int_equal(cluster_routes_del(&rt, &a, "alice@x/phone"), 1);
	assert_int_equal(cluster_routes_del(&rt, &a, "alice@x/phone"), 0);
	assert_ptr_equal(cluster_routes_find(&rt, "alice@x/phone", NULL)->owner, &b);

	/* an owner going away takes exactly its entries */
	assert_int_equal(cluster_routes_drop_owner(&rt, &b), 2);
	assert_int_equal(b.count, 0);
	assert_null(b.head);
	assert_int_equal(rt.count, 1);
	assert_non_null(cluster_routes_find(&rt, "alice@x/desk", NULL));
	assert_int_equal(cluster_routes_del(&rt, &a, "alice@x/desk"), 1);
	assert_null(cluster_routes_bare(&rt, "alice@x"));
	assert_int_equal(rt.nbare, 0);

	/* growth keeps everything findable */
	for (i = 0; i < 5000; i++) {
		snprintf(jid, sizeof(jid), "u%d@x/r%d", i / 2, i);
		assert_int_equal(cluster_routes_set(&rt, i & 1 ? &a : &b, jid, 0, 1), 1);
	}
	assert_int_equal(rt.count, 5000);
	assert_int_equal(rt.nbare, 2500);
	for (i = 0; i < 5000; i++) {
		snprintf(jid, sizeof(jid), "u%d@x/r%d", i / 2, i);
		r = cluster_routes_find(&rt, jid, NULL);
		assert_non_null(r);
		assert_ptr_equal(r->owner, i & 1 ? &a : &b);
	}
	assert_int_equal(cluster_routes_drop_owner(&rt, &a), 2500);
	assert_int_equal(rt.count, 2500);
	cluster_routes_free(&rt);
}

static void test_secret_load(void **state)
{
	char path[] = "/tmp/test_cluster_secretXXXXXX";
	uint8_t *s = NULL;
	size_t len = 0;
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, "short\n", 6), 6);
	assert_int_equal(cluster_secret_load(path, &s, &len), -EINVAL);
	assert_int_equal(ftruncate(fd, 0), 0);
	assert_int_equal(pwrite(fd, "0123456789abcdef0123\n", 21, 0), 21);
	assert_int_equal(cluster_secret_load(path, &s, &len), 0);
	assert_int_equal(len, 20);
	assert_memory_equal(s, "0123456789abcdef0123", 20);
	free(s);
	close(fd);
	unlink(path);
	assert_int_equal(cluster_secret_load(path, &s, &len), -ENOENT);
}

/* ---- live links on loopback ---- */

#define NODES 3

struct node {
	struct cluster *cl;
	char listen[32];
	char name[16];
	int delivered;
	int presences;
	int gone;
	char last_to[128];
	char last_xml[256];
	/* session moves */
	int reqs, naks, states;
	uint64_t last_req;
	unsigned last_nak;
	uint32_t last_h;
	char last_peer[32];
	char last_previd[80];
	char last_bare[128];
	char last_full[128];
	char last_state[64];
};

static const uint8_t SECRET[] = "unit-test-cluster-secret-0123456789";

static int deliver_cb(void *ud, const char *to, const char *from, const char *xml, size_t len)
{
	struct node *n = ud;

	n->delivered++;
	snprintf(n->last_to, sizeof(n->last_to), "%s", to);
	snprintf(n->last_xml, sizeof(n->last_xml), "%.*s", (int)len, xml);
	return 0;
}

static void presence_cb(void *ud, const char *from, const char *xml, size_t len)
{
	struct node *n = ud;

	n->presences++;
}

/* Set around a cluster_* call: a hook that runs inside it counts here. */
static int in_call, hooks_in_call;

static void gone_cb(void *ud, const char *full)
{
	struct node *n = ud;

	hooks_in_call += in_call;
	if (n)
		n->gone++;
}

static void sreq_cb(void *ud, const char *peer, uint64_t req, const char *previd, const char *bare,
		    uint32_t h)
{
	struct node *n = ud;

	n->reqs++;
	n->last_req = req;
	n->last_h = h;
	snprintf(n->last_peer, sizeof(n->last_peer), "%s", peer);
	snprintf(n->last_previd, sizeof(n->last_previd), "%s", previd);
	snprintf(n->last_bare, sizeof(n->last_bare), "%s", bare);
}

static void snak_cb(void *ud, const char *peer, uint64_t req, unsigned reason)
{
	struct node *n = ud;

	n->naks++;
	n->last_req = req;
	n->last_nak = reason;
}

static void sstate_cb(void *ud, const char *peer, uint64_t req, const char *full,
		      const uint8_t *state, size_t len)
{
	struct node *n = ud;

	n->states++;
	n->last_req = req;
	snprintf(n->last_peer, sizeof(n->last_peer), "%s", peer);
	snprintf(n->last_full, sizeof(n->last_full), "%s", full);
	snprintf(n->last_state, sizeof(n->last_state), "%.*s", (int)len, (const char *)state);
}

static int free_port(void)
{
	struct sockaddr_in a;
	socklen_t al = sizeof(a);
	int s = socket(AF_INET, SOCK_STREAM, 0), port;

	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(s, (struct sockaddr *)&a, &al), 0);
	port = ntohs(a.sin_port);
	close(s);
	return port;
}

static void on_wake(uv_timer_t *t)
{
}

typedef int (*pred_fn)(void *arg);

/* Runs the loop until pred(arg) or timeout_ms; returns pred's last value. */
static int run_until(uv_loop_t *loop, pred_fn pred, void *arg, uint64_t timeout_ms)
{
	uv_timer_t wake;
	uint64_t end;
	int ok;

	uv_timer_init(loop, &wake);
	uv_timer_start(&wake, on_wake, 5, 5);
	uv_update_time(loop);
	end = uv_now(loop) + timeout_ms;
	while (!(ok = pred(arg)) && uv_now(loop) < end)
		uv_run(loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&wake, NULL);
	uv_run(loop, UV_RUN_NOWAIT);
	return ok;
}

static struct node nodes[NODES];

static int all_linked(void *arg)
{
	int want = *(int *)arg;
	struct cluster_stats s;

	for (int i = 0; i < NODES; i++) {
		if (!nodes[i].cl)
			continue;
		cluster_get_stats(nodes[i].cl, &s);
		if ((int)s.peers != want)
			return 0;
	}
	return 1;
}

struct route_wait {
	int node;
	const char *jid;
	int present;
};

static int route_is(void *arg)
{
	struct route_wait *w = arg;

	return cluster_has_route(nodes[w->node].cl, w->jid) == w->present;
}

static int is_ready(void *arg)
{
	return cluster_ready(arg);
}

static int delivered_is(void *arg)
{
	int *want = arg;

	return nodes[want[0]].delivered == want[1];
}

static void start_nodes(uv_loop_t *loop, int n, const uint8_t *secret, size_t secretlen)
{
	struct cluster_hooks hooks = { .deliver = deliver_cb,
				       .presence = presence_cb,
				       .route_gone = gone_cb,
				       .session_req = sreq_cb,
				       .session_nak = snak_cb,
				       .session_state = sstate_cb };
	char peers[256];
	int i;

	memset(nodes, 0, sizeof(nodes));
	for (i = 0; i < n; i++) {
		snprintf(nodes[i].listen, sizeof(nodes[i].listen), "127.0.0.1:%d", free_port());
		snprintf(nodes[i].name, sizeof(nodes[i].name), "node-%c", 'a' + i);
	}
	for (i = 0; i < n; i++) {
		struct cluster_config cfg = { 0 };

		/* everyone lists everyone, itself included: self is skipped */
		peers[0] = '\0';
		for (int j = 0; j < n; j++)
			snprintf(peers + strlen(peers), sizeof(peers) - strlen(peers), "%s%s",
				 j ? "," : "", nodes[j].listen);
		cfg.listen = nodes[i].listen;
		cfg.instance = nodes[i].name;
		cfg.version = "test";
		cfg.peers = peers;
		cfg.secret = secret;
		cfg.secretlen = secretlen;
		cfg.keepalive = 2.0;
		assert_int_equal(cluster_new(loop, &cfg, &hooks, &nodes[i], &nodes[i].cl), 0);
		assert_int_equal(cluster_start(nodes[i].cl), 0);
	}
}

static void stop_node(uv_loop_t *loop, int i)
{
	cluster_leave(nodes[i].cl);
	for (int k = 0; k < 50; k++)
		uv_run(loop, UV_RUN_NOWAIT);
	cluster_free(nodes[i].cl);
	nodes[i].cl = NULL;
}

static void stop_all(uv_loop_t *loop)
{
	for (int i = 0; i < NODES; i++)
		if (nodes[i].cl)
			cluster_leave(nodes[i].cl);
	assert_int_equal(uv_run(loop, UV_RUN_DEFAULT), 0);
	for (int i = 0; i < NODES; i++) {
		cluster_free(nodes[i].cl);
		nodes[i].cl = NULL;
	}
}

static void test_links(void **state)
{
	uv_loop_t loop;
	int want = NODES - 1, dw[2];
	struct route_wait w;
	struct cluster_stats s;
	char metrics[2048];
	int best = -99;

	uv_loop_init(&loop);
	start_nodes(&loop, NODES, SECRET, sizeof(SECRET) - 1);
	assert_false(cluster_ready(nodes[0].cl)); /* nobody dialed yet */
	/* mutual dialing: exactly one link per pair survives */
	assert_true(run_until(&loop, all_linked, &want, 5000));
	for (int i = 0; i < NODES; i++)
		assert_true(run_until(&loop, is_ready, nodes[i].cl, 3000));

	/* routes: a bind on a is announced to b and c */
	assert_int_equal(cluster_local_set(nodes[0].cl, "alice@x/phone", 0, 0), 0);
	assert_int_equal(cluster_local_set(nodes[2].cl, "alice@x/desk", 5, 1), 0);
	w = (struct route_wait){ 1, "alice@x/phone", 1 };
	assert_true(run_until(&loop, route_is, &w, 3000));
	w = (struct route_wait){ 0, "alice@x/desk", 1 };
	assert_true(run_until(&loop, route_is, &w, 3000));
	assert_false(cluster_has_route(nodes[0].cl, "alice@x/phone")); /* local is not remote */

	/* forward to a full JID: delivered once, on c only */
	assert_int_equal(cluster_forward(nodes[1].cl, "alice@x/desk", "bob@x/r",
					 "<message to='alice@x/desk'/>", 28),
			 0);
	dw[0] = 2;
	dw[1] = 1;
	assert_true(run_until(&loop, delivered_is, dw, 3000));
	assert_string_equal(nodes[2].last_to, "alice@x/desk");
	assert_string_equal(nodes[2].last_xml, "<message to='alice@x/desk'/>");
	assert_int_equal(nodes[0].delivered, 0);
	assert_int_equal(cluster_forward(nodes[1].cl, "nobody@x/r", "bob@x/r", "<message/>", 10),
			 -ENOENT);

	/* bare JID: only the available resource with the best priority */
	assert_int_equal(cluster_bare_best(nodes[1].cl, "alice@x", &best), 1);
	assert_int_equal(best, 5);
	assert_int_equal(cluster_local_set(nodes[0].cl, "alice@x/phone", 5, 1), 0);
	w = (struct route_wait){ 1, "alice@x/phone", 1 };
	dw[0] = 1;
	assert_true(run_until(&loop, route_is, &w, 3000));
	for (int k = 0; k < 100 && cluster_bare_best(nodes[1].cl, "alice@x", &best) != 2; k++)
		uv_run(&loop, UV_RUN_ONCE);
	assert_int_equal(cluster_bare_best(nodes[1].cl, "alice@x", &best), 2);
	assert_int_equal(cluster_forward_bare(nodes[1].cl, "alice@x", CLUSTER_BARE_PRIO, 5,
					      "bob@x/r", "<message to='alice@x'/>", 23),
			 2);
	dw[0] = 0;
	dw[1] = 1;
	assert_true(run_until(&loop, delivered_is, dw, 3000));
	assert_string_equal(nodes[0].last_to, "alice@x/phone");
	dw[0] = 2;
	dw[1] = 2;
	assert_true(run_until(&loop, delivered_is, dw, 3000));

	/* broadcast presence goes to the peers holding the user's other
	 * resources: alice has one on a and one on c, bob none anywhere */
	assert_int_equal(cluster_broadcast_presence(nodes[1].cl, "bob@x/r", "<presence/>", 11), 0);
	assert_int_equal(cluster_broadcast_presence(nodes[1].cl, "alice@x/tab", "<presence/>", 11),
			 2);
	for (int k = 0; k < 200 && (nodes[0].presences < 1 || nodes[2].presences < 1); k++)
		uv_run(&loop, UV_RUN_ONCE);
	assert_int_equal(nodes[0].presences, 1);
	assert_int_equal(nodes[2].presences, 1);

	/* unbind is announced */
	cluster_local_del(nodes[2].cl, "alice@x/desk");
	w = (struct route_wait){ 1, "alice@x/desk", 0 };
	assert_true(run_until(&loop, route_is, &w, 3000));
	assert_int_equal(nodes[1].gone, 1); /* it was available: its user's resources hear */
	assert_int_equal(cluster_route_available(nodes[1].cl, "alice@x/phone"), 1);
	assert_int_equal(cluster_route_available(nodes[1].cl, "alice@x/desk"), -ENOENT);

	cluster_get_stats(nodes[1].cl, &s);
	assert_int_equal(s.peers, 2);
	assert_int_equal(s.routes, 1);
	assert_int_equal(s.forwarded, 5);
	assert_true(cluster_metrics_print(nodes[1].cl, metrics, sizeof(metrics)) <
		    (int)sizeof(metrics));
	assert_non_null(strstr(metrics, "\nchatd_cluster_peers 2\n"));
	assert_non_null(strstr(metrics, "\nchatd_cluster_routes 1\n"));
	assert_non_null(strstr(metrics, "\nchatd_cluster_stanzas_forwarded_total 5\n"));

	/* a clean leave: the others drop a's routes at once, links to a go */
	stop_node(&loop, 0);
	w = (struct route_wait){ 1, "alice@x/phone", 0 };
	assert_true(run_until(&loop, route_is, &w, 1000));
	want = 1;
	assert_true(run_until(&loop, all_linked, &want, 1000));
	cluster_get_stats(nodes[1].cl, &s);
	assert_int_equal(s.link_failures, 0);
	assert_int_equal(nodes[1].gone, 2);

	stop_all(&loop);
	assert_int_equal(uv_loop_close(&loop), 0);
}

/* A late joiner gets the full table dump when its link comes up. */
static void test_dump_on_join(void **state)
{
	uv_loop_t loop;
	int want = 1;
	struct route_wait w;
	char jid[64];

	uv_loop_init(&loop);
	start_nodes(&loop, 2, SECRET, sizeof(SECRET) - 1);
	/* sessions bound before the link exists */
	for (int i = 0; i < 2000; i++) {
		snprintf(jid, sizeof(jid), "u%d@x/r", i);
		assert_int_equal(cluster_local_set(nodes[0].cl, jid, 0, 1), 0);
	}
	assert_true(run_until(&loop, all_linked, &want, 5000));
	w = (struct route_wait){ 1, "u1999@x/r", 1 };
	assert_true(run_until(&loop, route_is, &w, 3000));
	w = (struct route_wait){ 1, "u0@x/r", 1 };
	assert_true(run_until(&loop, route_is, &w, 3000));
	stop_all(&loop);
	assert_int_equal(uv_loop_close(&loop), 0);
}

/* Different secrets: no link comes up, refusals are counted. */
static void test_wrong_secret(void **state)
{
	static const uint8_t other[] = "another-secret-of-enough-length";
	struct cluster_hooks hooks = { .deliver = deliver_cb,
				       .presence = presence_cb,
				       .route_gone = gone_cb };
	struct cluster_config cfg = { 0 };
	struct cluster_stats s0, s1;
	struct cluster *bad;
	uv_loop_t loop;
	char listen[32];
	int zero = 0;

	uv_loop_init(&loop);
	start_nodes(&loop, 1, SECRET, sizeof(SECRET) - 1);
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", free_port());
	cfg.listen = listen;
	cfg.instance = "intruder";
	cfg.peers = nodes[0].listen;
	cfg.secret = other;
	cfg.secretlen = sizeof(other) - 1;
	cfg.keepalive = 2.0;
	assert_int_equal(cluster_new(&loop, &cfg, &hooks, NULL, &bad), 0);
	assert_int_equal(cluster_start(bad), 0);
	for (int k = 0; k < 400; k++) {
		cluster_get_stats(nodes[0].cl, &s0);
		if (s0.refused > 0)
			break;
		uv_run(&loop, UV_RUN_ONCE);
	}
	cluster_get_stats(nodes[0].cl, &s0);
	cluster_get_stats(bad, &s1);
	assert_true(s0.refused > 0);
	assert_true(all_linked(&zero));
	assert_int_equal(s1.peers, 0);
	cluster_leave(bad);
	stop_all(&loop);
	cluster_free(bad);
	assert_int_equal(uv_loop_close(&loop), 0);

	/* no secret, no cluster */
	cfg.secret = NULL;
	cfg.secretlen = 0;
	assert_int_equal(cluster_new(&loop, &cfg, &hooks, NULL, &bad), -EINVAL);
}

static int field_is(void *arg)
{
	int **p = arg;

	return *p[0] == *p[1];
}

static int wait_field(uv_loop_t *loop, int *field, int want)
{
	int *p[2] = { field, &want };

	return run_until(loop, field_is, p, 3000);
}

static int request_reaches(void *arg)
{
	/* the capability probe may still be on its way */
	return cluster_session_request(nodes[1].cl, 7, "0123456789abcdef0123456789abcdef", "x@d",
				       3) == 1;
}

/* A session moves from a to b: the request goes only to the instance that
 * holds a resource of the user; after the give, what reaches a for the
 * JID (from c by a's old route, or from a local sender) goes on to b; once
 * b announced it and its fence is through, a withdraws its route and c
 * routes to b, without a route_gone for the session. */
static void test_session_move(void **state)
{
	uv_loop_t loop;
	int want = NODES - 1;
	struct route_wait w;
	struct cluster_stats s;

	uv_loop_init(&loop);
	start_nodes(&loop, NODES, SECRET, sizeof(SECRET) - 1);
	assert_true(run_until(&loop, all_linked, &want, 5000));
	assert_int_equal(cluster_local_set(nodes[0].cl, "x@d/r", 0, 1), 0);
	w = (struct route_wait){ 2, "x@d/r", 1 };
	assert_true(run_until(&loop, route_is, &w, 3000));
	w = (struct route_wait){ 1, "x@d/r", 1 };
	assert_true(run_until(&loop, route_is, &w, 3000));

	/* b asks; only a holds a resource of x@d */
	assert_true(run_until(&loop, request_reaches, NULL, 3000));
	assert_true(wait_field(&loop, &nodes[0].reqs, 1));
	assert_string_equal(nodes[0].last_peer, "node-b");
	assert_string_equal(nodes[0].last_previd, "0123456789abcdef0123456789abcdef");
	assert_string_equal(nodes[0].last_bare, "x@d");
	assert_int_equal(nodes[0].last_h, 3);
	assert_int_equal(nodes[2].reqs, 0);
	/* nobody holds y@d: nobody is asked */
	assert_int_equal(cluster_session_request(nodes[1].cl, 8, "ab", "y@d", 0), 0);
	/* a refusal reaches b */
	assert_int_equal(cluster_session_nak(nodes[0].cl, "node-b", 9, CLUSTER_NAK_OTHER_USER), 0);
	assert_true(wait_field(&loop, &nodes[1].naks, 1));
	assert_int_equal(nodes[1].last_nak, CLUSTER_NAK_OTHER_USER);
	assert_int_equal(nodes[1].last_req, 9);

	/* a gives it: the state reaches b with the request's id */
	assert_int_equal(cluster_session_give(nodes[0].cl, "node-b", 7, "x@d/r",
					      (const uint8_t *)"STATE", 5),
			 0);
	assert_true(wait_field(&loop, &nodes[1].states, 1));
	assert_int_equal(nodes[1].last_req, 7);
	assert_string_equal(nodes[1].last_full, "x@d/r");
	assert_string_equal(nodes[1].last_state, "STATE");
	assert_true(cluster_has_route(nodes[0].cl, "x@d/r")); /* a tombstone */

	/* b has not announced it: c still routes to a, which relays to b */
	assert_int_equal(cluster_forward(nodes[2].cl, "x@d/r", "y@d/r", "<message/>", 10), 0);
	assert_true(wait_field(&loop, &nodes[1].delivered, 1));
	assert_int_equal(nodes[0].delivered, 0);
	/* a local sender on a: straight to b */
	assert_int_equal(cluster_forward(nodes[0].cl, "x@d/r", "z@d/r", "<message/>", 10), 0);
	assert_true(wait_field(&loop, &nodes[1].delivered, 2));
	cluster_get_stats(nodes[0].cl, &s);
	assert_int_equal(s.relayed, 1);
	assert_int_equal(s.moved_out, 1);

	/* b announces it and fences: a withdraws its route, c routes to b */
	assert_int_equal(cluster_local_set(nodes[1].cl, "x@d/r", 0, 1), 0);
	assert_int_equal(cluster_session_taken(nodes[1].cl, "x@d/r", "node-a"), 0);
	w = (struct route_wait){ 0, "x@d/r", 1 }; /* b's route on a */
	assert_true(run_until(&loop, route_is, &w, 3000));
	for (int k = 0; k < 200; k++) {
		cluster_get_stats(nodes[2].cl, &s);
		if (s.routes == 1)
			break;
		uv_run(&loop, UV_RUN_ONCE);
	}
	assert_int_equal(s.routes, 1); /* c: only b's entry is left */
	assert_int_equal(cluster_forward(nodes[2].cl, "x@d/r", "y@d/r", "<message/>", 10), 0);
	assert_true(wait_field(&loop, &nodes[1].delivered, 3));
	cluster_get_stats(nodes[0].cl, &s);
	assert_int_equal(s.relayed, 1);
	assert_int_equal(nodes[2].gone, 0); /* no unavailable for a session that moved */
	cluster_get_stats(nodes[1].cl, &s);
	assert_int_equal(s.moved_in, 1);
	stop_all(&loop);
	uv_loop_close(&loop);
}

static int gone_is(void *arg)
{
	int *want = arg;

	return nodes[want[0]].gone == want[1];
}

/* A write that fails does not close its link inside the call that wrote:
 * cluster_local_set() broadcasts to a link whose socket can no longer be
 * written; the link (and with it the peer's available route, whose end is
 * the route_gone hook) goes only after the call, from the loop. */
static void test_failed_write_closes_after_the_call(void **state)
{
	uv_loop_t loop;
	int want = 1, gw[2] = { 0, 1 }, fd = -1;
	struct route_wait w = { 0, "bob@x/r", 1 };

	uv_loop_init(&loop);
	start_nodes(&loop, 2, SECRET, sizeof(SECRET) - 1);
	assert_true(run_until(&loop, all_linked, &want, 5000));
	assert_int_equal(cluster_local_set(nodes[1].cl, "bob@x/r", 0, 1), 0);
	assert_true(run_until(&loop, route_is, &w, 3000));
	/* a's end of the link can no longer send: the next write fails at once */
	assert_non_null(nodes[0].cl->links);
	assert_int_equal(uv_fileno((uv_handle_t *)&nodes[0].cl->links->tcp, &fd), 0);
	assert_int_equal(shutdown(fd, SHUT_WR), 0);
	in_call = 1;
	assert_int_equal(cluster_local_set(nodes[0].cl, "alice@x/r", 0, 1), 0);
	in_call = 0;
	assert_int_equal(hooks_in_call, 0);
	assert_int_equal(nodes[0].gone, 0);
	assert_true(run_until(&loop, gone_is, gw, 3000));
	assert_int_equal(hooks_in_call, 0);
	stop_all(&loop);
	assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_frame_roundtrip),
		cmocka_unit_test(test_ident_and_pseudonym),
		cmocka_unit_test(test_session_frames),
		cmocka_unit_test(test_dial_backoff),
		cmocka_unit_test(test_frame_bytewise),
		cmocka_unit_test(test_frame_malformed),
		cmocka_unit_test(test_route_batches),
		cmocka_unit_test(test_auth_mac),
		cmocka_unit_test(test_routes),
		cmocka_unit_test(test_secret_load),
		cmocka_unit_test(test_links),
		cmocka_unit_test(test_dump_on_join),
		cmocka_unit_test(test_wrong_secret),
		cmocka_unit_test(test_session_move),
		cmocka_unit_test(test_failed_write_closes_after_the_call),
	};

	signal(SIGPIPE, SIG_IGN); /* as chatd: a write to a dead link is an error */
	log_init("test_cluster", getenv("TEST_LOG") ? LOG_DEBUG : LOG_WARN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
