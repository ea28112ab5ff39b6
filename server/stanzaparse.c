/*
 * Parsing chatd's own serialized stanzas back (see stanzaparse.h).
 */
#include "stanzaparse.h"

#include <stdlib.h>

#include "xmppns.h"

static const char STANZAPARSE_HEADER[] = XMPP_STREAM_OPEN " version='1.0'>";

struct stanza_parser {
	struct xstream *xs;
	int opened;	  /* the header was fed since the last reset */
	struct xnode *st; /* the first element of the current piece */
	unsigned n;	  /* elements in the current piece: must be 1 */
};

static void parse_open(void *ud, const struct xnode *header, const char *default_ns)
{
}

static void parse_stanza(void *ud, struct xnode *st)
{
	struct stanza_parser *sp = ud;

	if (sp->n++ == 0)
		sp->st = st;
	else
		xnode_free(st);
}

static void parse_close(void *ud)
{
}

static const struct xstream_cbs parse_cbs = { parse_open, parse_stanza, parse_close };

struct stanza_parser *stanza_parser_new(const struct xstream_limits *lim)
{
	struct stanza_parser *sp = calloc(1, sizeof(*sp));

	if (!sp)
		return NULL;
	sp->xs = xstream_new(lim, &parse_cbs, sp);
	if (!sp->xs) {
		free(sp);
		return NULL;
	}
	return sp;
}

struct xnode *stanza_parse(struct stanza_parser *sp, const char *data, size_t len, int *err,
			   unsigned *count)
{
	int rc = XSTREAM_OK;

	sp->st = NULL;
	sp->n = 0;
	if (!sp->opened) {
		rc = xstream_feed(sp->xs, STANZAPARSE_HEADER, sizeof(STANZAPARSE_HEADER) - 1, NULL);
		if (rc != XSTREAM_OK)
			goto bad;
		sp->opened = 1;
	}
	rc = xstream_feed(sp->xs, data, len, NULL);
	if (rc == XSTREAM_OK && sp->n == 1 && xstream_depth(sp->xs) == 1)
		return sp->st;
bad:
	if (err)
		*err = rc;
	if (count)
		*count = sp->n;
	xnode_free(sp->st);
	sp->st = NULL;
	xstream_reset(sp->xs);
	sp->opened = 0;
	return NULL;
}

void stanza_parser_free(struct stanza_parser *sp)
{
	if (!sp)
		return;
	xstream_free(sp->xs);
	free(sp);
}
