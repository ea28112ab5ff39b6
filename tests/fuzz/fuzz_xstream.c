/*
 * libFuzzer target for the XML stream layer (common/xstream.c, common/xml.c).
 *
 * Input: byte 0 and 1 choose two split points, byte 2 the limits, the rest is
 * the stream. The stream is parsed twice: whole without compaction, and in
 * three pieces with xstream_compact() between them. Callbacks stop the parser
 * at every header and <stop/> stanza and parsing continues from *consumed. Both runs must
 * agree: same success or failure, and on success the same events. Every
 * stanza is serialized and re-parsed, and must serialize the same again; a
 * deep copy must serialize the same too.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "xml.h"
#include "xstream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct run {
	struct xbuf log;
	struct xstream *xs;
};

static void reparse_check(const struct xbuf *ser);

static void on_open(void *ud, const struct xnode *h, const char *default_ns)
{
	struct run *r = ud;

	xbuf_printf(&r->log, "open %s", default_ns ? default_ns : "-");
	for (size_t i = 0; i < h->nattrs; i++)
		xbuf_printf(&r->log, " %s=%s", h->attrs[i].name, h->attrs[i].value);
	xbuf_puts(&r->log, "\n");
	xstream_stop(r->xs);
}

static void on_stanza(void *ud, struct xnode *st)
{
	struct run *r = ud;
	struct xnode *copy = xnode_copy(st);
	struct xbuf one, two;

	xbuf_init(&one);
	xbuf_init(&two);
	if (xnode_serialize(st, "jabber:client", &one) == 0) {
		xbuf_append(&r->log, one.data, one.len);
		reparse_check(&one);
		/* A deep copy serializes the same. */
		if (copy && xnode_serialize(copy, "jabber:client", &two) == 0 &&
		    (two.len != one.len || memcmp(one.data, two.data, one.len) != 0))
			abort();
	}
	xnode_free(copy);
	xbuf_free(&two);
	xbuf_puts(&r->log, "\n");
	if (strcmp(st->name, "stop") == 0)
		xstream_stop(r->xs);
	xnode_free(st);
	xbuf_free(&one);
}

static void on_close(void *ud)
{
	struct run *r = ud;

	xbuf_puts(&r->log, "close\n");
}

static const struct xstream_cbs cbs = { on_open, on_stanza, on_close };

/* What we serialize must parse back to the same serialization. */
static struct xbuf reparsed;

static void re_stanza(void *ud, struct xnode *st)
{
	xnode_serialize(st, "jabber:client", &reparsed);
	xnode_free(st);
}

static void reparse_check(const struct xbuf *ser)
{
	static const char hdr[] = "<stream:stream xmlns='jabber:client' "
				  "xmlns:stream='http://etherx.jabber.org/streams'>";
	struct xstream_cbs rc = { NULL, re_stanza, NULL };
	struct xstream_limits lim = { ser->len + sizeof(hdr) + 16, 1000 };
	struct xstream *xs = xstream_new(&lim, &rc, NULL);

	if (!xs)
		return;
	xbuf_init(&reparsed);
	if (xstream_feed(xs, hdr, sizeof(hdr) - 1, NULL) != XSTREAM_OK ||
	    xstream_feed(xs, ser->data, ser->len, NULL) != XSTREAM_OK)
		abort();
	if (reparsed.len != ser->len || memcmp(reparsed.data, ser->data, ser->len) != 0)
		abort();
	xbuf_free(&reparsed);
	xstream_free(xs);
}

/* Feeds one piece, following stops; returns the final result. */
static int feed_piece(struct run *r, const char *p, size_t n)
{
	size_t used;
	int rc;

	for (;;) {
		rc = xstream_feed(r->xs, p, n, &used);
		if (rc != XSTREAM_STOPPED)
			return rc;
		if (used > n)
			abort();
		p += used;
		n -= used;
	}
}

static int run_stream(struct run *r, const struct xstream_limits *lim, const char *p, size_t n,
		      const size_t *cuts, int ncuts)
{
	size_t off = 0;
	int rc = XSTREAM_OK;

	xbuf_init(&r->log);
	xbuf_puts(&r->log, "");
	r->xs = xstream_new(lim, &cbs, r);
	if (!r->xs)
		abort();
	for (int i = 0; i <= ncuts && rc == XSTREAM_OK; i++) {
		size_t end = i < ncuts ? cuts[i] : n;

		rc = feed_piece(r, p + off, end - off);
		off = end;
		if (ncuts)
			xstream_compact(r->xs);
	}
	xstream_free(r->xs);
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct xstream_limits lim;
	struct run whole, split;
	size_t cuts[2], n;
	const char *p;
	int rc1, rc2;

	if (size < 3)
		return 0;
	p = (const char *)data + 3;
	n = size - 3;
	cuts[0] = n * data[0] / 256;
	cuts[1] = cuts[0] + (n - cuts[0]) * data[1] / 256;
	lim.max_stanza = 256 + (size_t)(data[2] & 0x0f) * 1024;
	lim.max_depth = 1 + (data[2] >> 4);

	rc1 = run_stream(&whole, &lim, p, n, NULL, 0);
	rc2 = run_stream(&split, &lim, p, n, cuts, 2);
	if ((rc1 == XSTREAM_OK) != (rc2 == XSTREAM_OK))
		abort();
	if (rc1 == XSTREAM_OK && (whole.log.len != split.log.len ||
				  memcmp(whole.log.data, split.log.data, whole.log.len) != 0))
		abort();
	xbuf_free(&whole.log);
	xbuf_free(&split.log);
	return 0;
}
