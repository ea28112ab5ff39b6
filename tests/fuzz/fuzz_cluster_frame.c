/*
 * libFuzzer target for the cluster link frame decoder (server/cluster/cluster_proto.c).
 *
 * The input is read as a stream of frames, as a link reads it: split, then
 * decode each payload. The first input byte picks the frame cap (before or
 * after authentication). Every frame that decodes is encoded again and must
 * give back exactly the same bytes, so the decoder accepts nothing the
 * encoder would not produce and reads every field where the encoder put it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../server/cluster/cluster_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void reencode(const struct cluster_msg *m, const uint8_t *frame, size_t flen)
{
	struct cluster_buf b;
	struct cluster_batch bt;
	struct cluster_route_rec rec;
	char *s1 = NULL, *s2 = NULL;
	size_t off = 0;
	int rc = 0;

	cluster_buf_init(&b);
	switch (m->type) {
	case CLUSTER_MSG_HELLO:
		if (m->u.hello.proto != CLUSTER_PROTO_VERSION)
			goto out;
		s1 = strndup(m->u.hello.instance.p, m->u.hello.instance.len);
		s2 = strndup(m->u.hello.version.p, m->u.hello.version.len);
		rc = cluster_enc_hello(&b, s1, s2, m->u.hello.port, m->u.hello.nonce);
		break;
	case CLUSTER_MSG_AUTH:
		rc = cluster_enc_auth(&b, m->u.auth.mac);
		break;
	case CLUSTER_MSG_IDENT:
		s1 = strndup(m->u.ident.instance.p, m->u.ident.instance.len);
		s2 = strndup(m->u.ident.version.p, m->u.ident.version.len);
		rc = cluster_enc_ident(&b, s1, s2, m->u.ident.port);
		break;
	case CLUSTER_MSG_ROUTE_ADD:
	case CLUSTER_MSG_ROUTE_DEL:
		/* an empty batch is valid on the wire but never encoded */
		if (m->u.routes.count == 0)
			goto out;
		rc = cluster_batch_begin(&bt, &b, m->type);
		while (rc >= 0 && cluster_route_next(m, &off, &rec)) {
			free(s1);
			s1 = strndup(rec.jid.p, rec.jid.len);
			rc = cluster_batch_add(&bt, s1, rec.priority, rec.flags);
			if (rc == 0)
				goto out; /* the encoder splits sooner than the wire allows */
		}
		cluster_batch_end(&bt);
		break;
	case CLUSTER_MSG_STANZA:
		s1 = strndup(m->u.stanza.to.p, m->u.stanza.to.len);
		s2 = strndup(m->u.stanza.from.p, m->u.stanza.from.len);
		rc = cluster_enc_stanza(&b, s1, s2, m->u.stanza.xml.p, m->u.stanza.xml.len);
		break;
	case CLUSTER_MSG_PRESENCE:
		s1 = strndup(m->u.presence.from.p, m->u.presence.from.len);
		rc = cluster_enc_presence(&b, s1, m->u.presence.xml.p, m->u.presence.xml.len);
		break;
	case CLUSTER_MSG_PING:
	case CLUSTER_MSG_PONG:
		rc = cluster_enc_ping(&b, m->type, m->u.ping.token);
		break;
	default:
		rc = cluster_enc_empty(&b, m->type);
		break;
	}
	if (rc < 0 || b.len != flen || memcmp(b.data, frame, flen) != 0)
		abort();
out:
	free(s1);
	free(s2);
	cluster_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t cap, off = 1;

	if (size < 1)
		return 0;
	cap = data[0] & 1 ? CLUSTER_FRAME_MAX : CLUSTER_FRAME_MAX_PREAUTH;
	while (off < size) {
		const uint8_t *payload;
		struct cluster_msg m;
		size_t plen;
		uint8_t type;
		long n = cluster_frame_split(data + off, size - off, cap, &type, &payload, &plen);

		if (n < 0)
			break;
		if (cluster_msg_decode(type, payload, plen, &m) == 0)
			reencode(&m, data + off, (size_t)n);
		off += (size_t)n;
	}
	return 0;
}
