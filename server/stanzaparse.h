/*
 * Stanzas chatd serialized itself, parsed back one piece at a time with the
 * same stream layer as client input: a stream-managed session's queue and
 * state, and the stanzas a cluster peer forwards. A jabber:client stream is
 * opened once; each piece must then be exactly one top-level element.
 */
#ifndef CHATD_STANZAPARSE_H
#define CHATD_STANZAPARSE_H

#include <stddef.h>

#include "xml.h"
#include "xstream.h"

struct stanza_parser;

/* lim bounds each piece. NULL when out of memory. */
struct stanza_parser *stanza_parser_new(const struct xstream_limits *lim);

/*
 * The one element in data (the caller's to free), or NULL when data is not
 * exactly one; then, where err and count are not NULL, the stream's error
 * (XSTREAM_OK when it parsed but held other than one element) and the
 * elements it held. The parser starts over after a failure.
 */
struct xnode *stanza_parse(struct stanza_parser *sp, const char *data, size_t len, int *err,
			   unsigned *count);

void stanza_parser_free(struct stanza_parser *sp);

#endif
