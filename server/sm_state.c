#include "sm_state.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "presence.h"
#include "session.h"
#include "stanzaparse.h"
#include "xmppns.h"

/* ---- encoding ---- */

static int put_u8(struct xbuf *b, unsigned v)
{
	char c = (char)(uint8_t)v;

	return xbuf_append(b, &c, 1);
}

static int put_u16(struct xbuf *b, unsigned v)
{
	char c[2] = { (char)(uint8_t)(v >> 8), (char)(uint8_t)v };

	return xbuf_append(b, c, 2);
}

static int put_u32(struct xbuf *b, uint32_t v)
{
	char c[4] = { (char)(uint8_t)(v >> 24), (char)(uint8_t)(v >> 16), (char)(uint8_t)(v >> 8),
		      (char)(uint8_t)v };

	return xbuf_append(b, c, 4);
}

int sm_state_encode(const struct conn *c, struct xbuf *out)
{
	const struct smq *q = c->sm;
	struct xbuf pres;
	unsigned nd = 0;
	size_t idl = strlen(q->id);
	int bad = 0;

	xbuf_init(&pres);
	if (c->presence && xnode_serialize(c->presence, NS_CLIENT, &pres) != 0)
		bad = 1;
	for (const struct presence_dir *d = c->directed; d; d = d->next)
		nd++;
	bad |= put_u8(out, SM_STATE_VERSION) || put_u32(out, q->h_in) || put_u32(out, q->h_out) ||
	       put_u32(out, q->window_s) || put_u8(out, (unsigned)(uint8_t)c->priority) ||
	       put_u8(out, c->available ? 1 : 0) || put_u8(out, (unsigned)idl) ||
	       xbuf_append(out, q->id, idl) || put_u32(out, (uint32_t)pres.len) ||
	       (pres.len && xbuf_append(out, pres.data, pres.len)) || put_u16(out, nd);
	for (const struct presence_dir *d = c->directed; d && !bad; d = d->next) {
		size_t l = strlen(d->jid);

		bad |= put_u16(out, (unsigned)l) || xbuf_append(out, d->jid, l);
	}
	bad |= put_u32(out, q->count);
	for (const struct smq_item *it = q->head; it && !bad; it = it->next)
		bad |= put_u32(out, it->len) || xbuf_append(out, it->data, it->len);
	xbuf_free(&pres);
	return bad || !out->data ? -ENOMEM : 0;
}

/* ---- decoding ---- */

struct rd {
	const uint8_t *p;
	size_t len, off;
	int bad;
};

static const uint8_t *rd_take(struct rd *r, size_t n)
{
	const uint8_t *p;

	if (r->bad || r->len - r->off < n) {
		r->bad = 1;
		return NULL;
	}
	p = r->p + r->off;
	r->off += n;
	return p;
}

static uint32_t rd_u(struct rd *r, size_t n)
{
	const uint8_t *p = rd_take(r, n);
	uint32_t v = 0;

	for (size_t i = 0; p && i < n; i++)
		v = v << 8 | p[i];
	return v;
}

void sm_state_free(struct sm_state *st)
{
	struct presence_dir *d;

	xnode_free(st->presence);
	while ((d = st->directed)) {
		st->directed = d->next;
		free(d);
	}
	smq_clear(&st->q);
	memset(st, 0, sizeof(*st));
}

int sm_state_decode(const uint8_t *p, size_t len, const struct xstream_limits *lim,
		    struct sm_state *st)
{
	struct rd r = { p, len, 0, 0 };
	struct stanza_parser *sp = stanza_parser_new(lim);
	struct presence_dir **tail;
	const uint8_t *s;
	uint32_t n, i, l, h_in, h_out;
	int rc = -EINVAL;

	memset(st, 0, sizeof(*st));
	if (!sp)
		return -ENOMEM;
	if (rd_u(&r, 1) != SM_STATE_VERSION)
		goto out;
	h_in = rd_u(&r, 4);
	h_out = rd_u(&r, 4);
	st->window_s = rd_u(&r, 4);
	st->priority = (int8_t)rd_u(&r, 1);
	l = rd_u(&r, 1);
	if (r.bad || l > 1)
		goto out;
	st->available = (int)l;
	l = rd_u(&r, 1);
	s = rd_take(&r, l);
	if (!s || l != SMQ_ID_LEN)
		goto out;
	memcpy(st->id, s, l);
	if (!smq_id_valid(st->id))
		goto out;
	l = rd_u(&r, 4);
	s = rd_take(&r, l);
	if (!s)
		goto out;
	if (l) {
		st->presence = stanza_parse(sp, (const char *)s, l, NULL, NULL);
		if (!st->presence || strcmp(st->presence->name, "presence") != 0)
			goto out;
	}
	n = rd_u(&r, 2);
	if (r.bad || n > PRESENCE_DIRECTED_MAX)
		goto out;
	tail = &st->directed;
	for (i = 0; i < n; i++) {
		struct presence_dir *d;

		l = rd_u(&r, 2);
		s = rd_take(&r, l);
		if (!s || l == 0 || l > 3071 || memchr(s, '\0', l))
			goto out;
		d = malloc(sizeof(*d) + l + 1);
		if (!d) {
			rc = -ENOMEM;
			goto out;
		}
		memcpy(d->jid, s, l);
		d->jid[l] = '\0';
		d->next = NULL;
		*tail = d;
		tail = &d->next;
		st->ndirected++;
	}
	n = rd_u(&r, 4);
	if (r.bad)
		goto out;
	/* the counters with the queue they describe: h_out counts the last */
	st->q.h_out = h_out - n;
	for (i = 0; i < n; i++) {
		struct xnode *x;

		l = rd_u(&r, 4);
		s = rd_take(&r, l);
		if (!s || l == 0)
			goto out;
		x = stanza_parse(sp, (const char *)s, l, NULL, NULL);
		if (!x)
			goto out;
		xnode_free(x);
		if (smq_push(&st->q, (const char *)s, l, 0) != 0) {
			rc = -ENOMEM;
			goto out;
		}
	}
	if (r.bad || r.off != r.len || st->q.h_out != h_out)
		goto out;
	st->q.h_in = h_in;
	st->q.window_s = st->window_s;
	memcpy(st->q.id, st->id, sizeof(st->id));
	rc = 0;
out:
	stanza_parser_free(sp);
	if (rc != 0)
		sm_state_free(st);
	return rc;
}
