/*
 * XMPP stream framing over expat. See xstream.h for the contract.
 *
 * Names come from expat as "uri SEP local SEP prefix" (namespace triplets)
 * with SEP = 0xFF: that byte never occurs in UTF-8, and expat is told the
 * input is UTF-8 whatever the XML declaration says, so the separator can
 * never be part of a namespace URI, a prefix or a local name.
 *
 * Offsets. Everything is measured in bytes of the caller's input since the
 * last xstream_reset() (the "stream offset"). expat's byte index counts what
 * one parser instance has seen, which after hibernation starts with a
 * synthetic header the caller never sent, so stream offset = expat index +
 * idx_base.
 *
 * Hibernation. Between stanzas the only state expat holds that matters is
 * the namespace bindings declared on the stream header (DTDs and entities
 * are refused, so there is nothing else). xstream_compact() frees the parser
 * there; the next feed creates one and first feeds it a header rebuilt from
 * those declarations (saved as a short string when the header was read),
 * with on_open suppressed. The same mechanism lets a caller keep feeding
 * after XSTREAM_STOPPED without a reset, because every callback runs at such
 * a boundary.
 */
#include "xmppns.h"
#include "unconst.h"
#include "xstream.h"

#include <expat.h>
#include <malloc.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define XS_SEP '\xff'
#define XS_SEP_STR "\xff"
/* Input is handed to expat in slices this large, so that bytes buffered for
 * an unfinished token can exceed max_stanza by at most this much. */
#define XS_CHUNK 4096
/* Bound on the memory a stanza tree may take, relative to its input bytes:
 * "<a/>" is 4 bytes of input and over a hundred bytes of tree. */
#define XS_TREE_FACTOR 16
#define XS_TREE_SLACK 4096

enum xs_state {
	XS_HEADER, /* waiting for <stream:stream> */
	XS_OPEN,   /* header read, stanzas flowing */
	XS_CLOSED, /* </stream:stream> read */
	XS_DEAD,   /* an error was returned; only reset or free */
};

struct xstream {
	XML_Parser p;		   /* NULL before the first feed and while hibernated */
	struct xstream_limits lim; /* never 0: defaults filled in */
	struct xstream_cbs cbs;
	void *ud;
	char *resume_hdr;     /* synthetic header for hibernation, once open */
	char *hdr_default_ns; /* default namespace of the header being read */
	struct xnode *cur;    /* innermost open element of the stanza being built */
	struct xbuf buf;      /* before the header: its namespace declarations;
				     * in a stanza: text not yet a child of cur */
	int64_t idx_base;     /* stream offset = expat byte index + idx_base */
	uint64_t fed;	      /* stream bytes handed to expat so far */
	uint64_t mark;	      /* stream offset where the pending stanza began */
	uint64_t halt_off;    /* stream offset just after the event that halted */
	size_t parser_mem;    /* heap held by expat for this stream */
	size_t tree_mem;      /* estimated heap of the stanza being built */
	size_t tree_cap;      /* bound on tree_mem, from max_stanza */
	unsigned depth;	      /* 0 before the header, 1 between stanzas */
	unsigned ndecls;      /* namespace declarations on the element being opened */
	int err;	      /* first error noted by a handler */
	uint8_t state;	      /* enum xs_state */
	bool stop_req;	      /* a callback called xstream_stop() */
	bool halted;	      /* the parser was stopped at halt_off (stop or close) */
	bool resuming;	      /* feeding the synthetic header: no on_open */
};

/*
 * expat's allocator interface has no user pointer, so allocations are
 * charged to the xstream that is calling into expat, kept in a thread-local
 * variable around each call. That gives each stream an exact figure for its
 * parser's heap (xstream_mem()).
 */
static _Thread_local struct xstream *xs_mem_owner;
/* Tests: expat allocations left before they fail; negative: never. */
static _Thread_local long xs_alloc_budget = -1;

static bool xs_alloc_fails(void)
{
	if (xs_alloc_budget < 0)
		return false;
	if (xs_alloc_budget == 0)
		return true;
	xs_alloc_budget--;
	return false;
}

static void *xs_malloc(size_t n)
{
	void *p = xs_alloc_fails() ? NULL : malloc(n);

	if (p && xs_mem_owner)
		xs_mem_owner->parser_mem += malloc_usable_size(p);
	return p;
}

static void *xs_realloc(void *p, size_t n)
{
	size_t old = p ? malloc_usable_size(p) : 0;
	void *q = xs_alloc_fails() ? NULL : realloc(p, n);

	if (q && xs_mem_owner)
		xs_mem_owner->parser_mem += malloc_usable_size(q) - old;
	return q;
}

static void xs_free(void *p)
{
	if (p && xs_mem_owner)
		xs_mem_owner->parser_mem -= malloc_usable_size(p);
	free(p);
}

static const XML_Memory_Handling_Suite xs_mm = { xs_malloc, xs_realloc, xs_free };

void xstream_test_fail_alloc(long n)
{
	xs_alloc_budget = n;
}

/*
 * Hash salts: one getrandom() per process, then a cheap mix per parser, as a
 * parser is created at every wake-up from hibernation.
 */
static uint64_t xs_mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static unsigned long xs_salt(void)
{
	static atomic_uint_fast64_t seed;
	static atomic_uint_fast64_t counter;
	uint64_t s = atomic_load(&seed);

	if (!s) {
		uint64_t r = 0;

		if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
			r = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)&r;
		r |= 1;
		atomic_compare_exchange_strong(&seed, &s, r);
		s = atomic_load(&seed);
	}
	return (unsigned long)xs_mix(s ^ atomic_fetch_add(&counter, 1));
}

static void xs_fill_limits(struct xstream_limits *dst, const struct xstream_limits *src)
{
	dst->max_stanza = src && src->max_stanza ? src->max_stanza : XSTREAM_DEFAULT_MAX_STANZA;
	dst->max_depth = src && src->max_depth ? src->max_depth : XSTREAM_DEFAULT_MAX_DEPTH;
}

static void xs_apply_limits(struct xstream *xs, const struct xstream_limits *src)
{
	xs_fill_limits(&xs->lim, src);
	if (xs->lim.max_stanza > (SIZE_MAX - XS_TREE_SLACK) / XS_TREE_FACTOR)
		xs->tree_cap = SIZE_MAX;
	else
		xs->tree_cap = xs->lim.max_stanza * XS_TREE_FACTOR + XS_TREE_SLACK;
}

static int64_t ev_start(struct xstream *xs)
{
	return (int64_t)XML_GetCurrentByteIndex(xs->p) + xs->idx_base;
}

static int64_t ev_end(struct xstream *xs)
{
	return ev_start(xs) + XML_GetCurrentByteCount(xs->p);
}

static void xs_fail(struct xstream *xs, int err)
{
	if (!xs->err)
		xs->err = err;
	XML_StopParser(xs->p, XML_FALSE);
}

/* Stops the parser after the current event; the feed loop takes it from there. */
static void xs_halt(struct xstream *xs)
{
	xs->halted = true;
	xs->halt_off = (uint64_t)ev_end(xs);
	XML_StopParser(xs->p, XML_FALSE);
}

static bool xs_busy(const struct xstream *xs)
{
	return xs->err || xs->halted;
}

/* Enforces max_stanza on what has been parsed of the pending stanza. */
static bool xs_size_ok(struct xstream *xs)
{
	if ((uint64_t)ev_end(xs) - xs->mark > xs->lim.max_stanza) {
		xs_fail(xs, XSTREAM_ERR_POLICY);
		return false;
	}
	return true;
}

static bool xs_tree_charge(struct xstream *xs, size_t bytes)
{
	xs->tree_mem += bytes;
	if (xs->tree_mem > xs->tree_cap) {
		xs_fail(xs, XSTREAM_ERR_POLICY);
		return false;
	}
	return true;
}

/* A name from expat: "local", "uri SEP local" or "uri SEP local SEP prefix". */
struct xs_name {
	const char *uri, *local, *prefix;
	size_t urilen, locallen;
};

static void xs_split(const char *s, struct xs_name *n)
{
	const char *a = strchr(s, XS_SEP);

	memset(n, 0, sizeof(*n));
	if (!a) {
		n->local = s;
		n->locallen = strlen(s);
		return;
	}
	n->uri = s;
	n->urilen = (size_t)(a - s);
	n->local = a + 1;
	a = strchr(n->local, XS_SEP);
	n->locallen = a ? (size_t)(a - n->local) : strlen(n->local);
	n->prefix = a ? a + 1 : NULL;
}

static bool xs_name_is(const struct xs_name *n, const char *uri, const char *local)
{
	return n->uri && n->urilen == strlen(uri) && memcmp(n->uri, uri, n->urilen) == 0 &&
	       n->locallen == strlen(local) && memcmp(n->local, local, n->locallen) == 0;
}

/* The stored form of an attribute name (see xml.c): plain, xml:x or {uri}x. */
static char *xs_attr_name(const char *raw)
{
	struct xs_name n;
	struct xbuf b;

	xs_split(raw, &n);
	if (!n.uri)
		return strdup(raw);
	xbuf_init(&b);
	if (n.urilen == strlen(NS_XML) && memcmp(n.uri, NS_XML, n.urilen) == 0) {
		if (xbuf_puts(&b, "xml:") < 0)
			goto out_free;
	} else if (xbuf_puts(&b, "{") < 0 || xbuf_append(&b, n.uri, n.urilen) < 0 ||
		   xbuf_puts(&b, "}") < 0) {
		goto out_free;
	}
	if (xbuf_append(&b, n.local, n.locallen) < 0)
		goto out_free;
	return b.data;

out_free:
	xbuf_free(&b);
	return NULL;
}

/* Builds a detached element from expat's name and attribute list. */
static struct xnode *xs_node(struct xstream *xs, const char *raw, const char **atts)
{
	struct xs_name n;
	struct xnode *e;
	size_t i, nattrs = 0, bytes;

	xs_split(raw, &n);
	while (atts[2 * nattrs])
		nattrs++;
	if (nattrs > XSTREAM_MAX_ATTRS) {
		xs_fail(xs, XSTREAM_ERR_POLICY);
		return NULL;
	}
	e = calloc(1, sizeof(*e));
	if (!e)
		goto out_nomem;
	e->name = strndup(n.local, n.locallen);
	/* No namespace at all is stored as "" so that it is never inherited. */
	e->ns = n.uri ? strndup(n.uri, n.urilen) : strdup("");
	if (!e->name || !e->ns)
		goto out_nomem;
	bytes = sizeof(*e) + n.locallen + n.urilen + 2;
	if (nattrs) {
		e->attrs = calloc(nattrs, sizeof(*e->attrs));
		if (!e->attrs)
			goto out_nomem;
		bytes += nattrs * sizeof(*e->attrs);
		for (i = 0; i < nattrs; i++) {
			e->attrs[i].name = xs_attr_name(atts[2 * i]);
			e->attrs[i].value = strdup(atts[2 * i + 1]);
			e->nattrs++;
			if (!e->attrs[i].name || !e->attrs[i].value)
				goto out_nomem;
			bytes += strlen(e->attrs[i].name) + strlen(e->attrs[i].value) + 2;
		}
	}
	if (!xs_tree_charge(xs, bytes))
		goto out_free;
	return e;

out_nomem:
	xs_fail(xs, XSTREAM_ERR_NOMEM);
out_free:
	xnode_free(e);
	return NULL;
}

/* Moves the collected character data into a text node under cur. */
static bool xs_flush_text(struct xstream *xs)
{
	struct xnode *t;

	if (!xs->buf.len)
		return true;
	t = calloc(1, sizeof(*t));
	if (!t || !xs_tree_charge(xs, sizeof(*t)))
		goto out_free;
	t->text = xs->buf.data;
	t->textlen = xs->buf.len;
	if (xnode_append(xs->cur, t) < 0) {
		t->text = NULL;
		goto out_free;
	}
	xbuf_init(&xs->buf);
	return true;

out_free:
	if (!xs->err)
		xs_fail(xs, XSTREAM_ERR_NOMEM);
	free(t);
	return false;
}

static void xs_free_partial(struct xstream *xs)
{
	struct xnode *root = xs->cur;

	xbuf_free(&xs->buf);
	while (root && root->parent)
		root = root->parent;
	xnode_free(root);
	xs->cur = NULL;
	xs->tree_mem = 0;
}

static void XMLCALL on_ns_decl(void *ud, const char *prefix, const char *uri)
{
	struct xstream *xs = ud;
	struct xbuf *b = &xs->buf;
	int rc;

	if (xs_busy(xs) || xs->resuming)
		return;
	/* expat keeps a binding per declaration until the element ends, and
	 * the header's are replayed at every wake-up: bound them like attributes. */
	if (++xs->ndecls > XSTREAM_MAX_ATTRS) {
		xs_fail(xs, XSTREAM_ERR_POLICY);
		return;
	}
	if (xs->depth > 0)
		return;
	if (!prefix && uri && !xs->hdr_default_ns) {
		xs->hdr_default_ns = strdup(uri);
		if (!xs->hdr_default_ns) {
			xs_fail(xs, XSTREAM_ERR_NOMEM);
			return;
		}
	}
	rc = prefix ? xbuf_printf(b, " xmlns:%s='", prefix) : xbuf_puts(b, " xmlns='");
	if (rc < 0 || (uri && xbuf_escape(b, uri, strlen(uri)) < 0) || xbuf_puts(b, "'") < 0)
		xs_fail(xs, XSTREAM_ERR_NOMEM);
}

static void xs_open_header(struct xstream *xs, const char *raw, const char **atts)
{
	struct xs_name n;
	struct xnode *hdr;
	struct xbuf synth;

	xs_split(raw, &n);
	if (!n.uri || n.urilen != strlen(NS_STREAM) || memcmp(n.uri, NS_STREAM, n.urilen)) {
		xs_fail(xs, XSTREAM_ERR_INVALID_NS);
		return;
	}
	if (!xs_name_is(&n, NS_STREAM, "stream")) {
		xs_fail(xs, XSTREAM_ERR_BAD_FORMAT);
		return;
	}
	if (!xs_size_ok(xs))
		return;
	xbuf_init(&synth);
	if (xbuf_puts(&synth, "<") < 0 || (n.prefix && xbuf_printf(&synth, "%s:", n.prefix) < 0) ||
	    xbuf_puts(&synth, "stream") < 0 || xbuf_append(&synth, xs->buf.data, xs->buf.len) < 0 ||
	    xbuf_puts(&synth, ">") < 0) {
		xbuf_free(&synth);
		xs_fail(xs, XSTREAM_ERR_NOMEM);
		return;
	}
	xbuf_free(&xs->buf);
	free(xs->resume_hdr);
	xs->resume_hdr = synth.data;
	hdr = xs_node(xs, raw, atts);
	xs->tree_mem = 0;
	if (!hdr)
		return;
	xs->depth = 1;
	xs->state = XS_OPEN;
	xs->mark = (uint64_t)ev_end(xs);
	if (xs->cbs.on_open)
		xs->cbs.on_open(xs->ud, hdr, xs->hdr_default_ns);
	xnode_free(hdr);
	free(xs->hdr_default_ns);
	xs->hdr_default_ns = NULL;
	if (xs->stop_req)
		xs_halt(xs);
}

static void XMLCALL on_start(void *ud, const char *name, const char **atts)
{
	struct xstream *xs = ud;
	struct xnode *e;

	if (xs_busy(xs))
		return;
	xs->ndecls = 0;
	if (xs->depth == 0) {
		if (xs->resuming) {
			xs->depth = 1;
			return;
		}
		xs_open_header(xs, name, atts);
		return;
	}
	if (xs->depth == 1) {
		struct xs_name n;

		/* A stream header inside the open stream can never become a
		 * stanza: say so at its start tag instead of waiting for an end
		 * tag that a client restarting its stream will never send. */
		xs_split(name, &n);
		if (xs_name_is(&n, NS_STREAM, "stream")) {
			xs_fail(xs, XSTREAM_ERR_NESTED_HEADER);
			return;
		}
		xs->mark = (uint64_t)ev_start(xs);
		xs->tree_mem = 0;
	}
	if (xs->depth > xs->lim.max_depth) {
		xs_fail(xs, XSTREAM_ERR_POLICY);
		return;
	}
	if (!xs_size_ok(xs) || (xs->cur && !xs_flush_text(xs)))
		return;
	e = xs_node(xs, name, atts);
	if (!e)
		return;
	if (xs->cur && xnode_append(xs->cur, e) < 0) {
		xnode_free(e);
		xs_fail(xs, XSTREAM_ERR_NOMEM);
		return;
	}
	xs->cur = e;
	xs->depth++;
}

static void XMLCALL on_end(void *ud, const char *name)
{
	struct xstream *xs = ud;
	struct xnode *done;

	/* An empty root <stream:stream/> ends in the event that opened it: a
	 * stop requested in on_open must not swallow its end. */
	if (xs->halted && !xs->err && xs->depth == 1 && (uint64_t)ev_end(xs) == xs->halt_off)
		xs->halted = false;
	if (xs_busy(xs))
		return;
	if (xs->depth == 1) {
		xs->depth = 0;
		xs->state = XS_CLOSED;
		xs_halt(xs);
		if (xs->cbs.on_close)
			xs->cbs.on_close(xs->ud);
		return;
	}
	if (!xs_size_ok(xs) || !xs_flush_text(xs))
		return;
	xs->depth--;
	done = xs->cur;
	xs->cur = done->parent;
	if (xs->depth > 1)
		return;
	xs->mark = (uint64_t)ev_end(xs);
	xs->tree_mem = 0;
	if (xs->cbs.on_stanza)
		xs->cbs.on_stanza(xs->ud, done);
	else
		xnode_free(done);
	if (xs->stop_req)
		xs_halt(xs);
}

static bool xs_is_space(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
			return false;
	return true;
}

static void XMLCALL on_text(void *ud, const char *s, int len)
{
	struct xstream *xs = ud;
	size_t n = (size_t)len;

	if (xs_busy(xs) || xs->resuming)
		return;
	if (xs->depth <= 1) {
		/* RFC 6120 4.7.5/8: the children of the stream are stanzas (and
		 * whitespace keepalives); other character data there is XML the
		 * server cannot process, i.e. bad-format. */
		if (!xs_is_space(s, n)) {
			xs_fail(xs, XSTREAM_ERR_BAD_FORMAT);
			return;
		}
		xs->mark = (uint64_t)ev_end(xs);
		return;
	}
	if (!xs_size_ok(xs) || !xs_tree_charge(xs, n))
		return;
	/* expat hands text over line by line: collect it in a buffer that grows
	 * geometrically and make one text node of it at the next tag. */
	if (xbuf_append(&xs->buf, s, n) < 0)
		xs_fail(xs, XSTREAM_ERR_NOMEM);
}

/* RFC 6120 11.1: no comments, PIs, DTDs or entity declarations. */
static void XMLCALL on_comment(void *ud, const char *data)
{
	xs_fail(ud, XSTREAM_ERR_RESTRICTED);
}

static void XMLCALL on_pi(void *ud, const char *target, const char *data)
{
	xs_fail(ud, XSTREAM_ERR_RESTRICTED);
}

static void XMLCALL on_doctype(void *ud, const char *name, const char *sysid, const char *pubid,
			       int has_internal_subset)
{
	xs_fail(ud, XSTREAM_ERR_RESTRICTED);
}

static void XMLCALL on_entity(void *ud, const char *name, int is_param, const char *value,
			      int value_len, const char *base, const char *sysid, const char *pubid,
			      const char *notation)
{
	xs_fail(ud, XSTREAM_ERR_RESTRICTED);
}

/* RFC 6120 11.6: UTF-8 only; a declaration naming another encoding is refused. */
static void XMLCALL on_xml_decl(void *ud, const char *version, const char *encoding, int standalone)
{
	if (encoding && strcasecmp(encoding, "UTF-8") != 0)
		xs_fail(ud, XSTREAM_ERR_ENCODING);
}

/* Calls into expat with allocations charged to xs. */
#define XS_MEM_BEGIN(xs)                              \
	struct xstream *xs_prev_owner = xs_mem_owner; \
	xs_mem_owner = (xs)
#define XS_MEM_END() xs_mem_owner = xs_prev_owner

static void xs_parser_free(struct xstream *xs)
{
	if (!xs->p)
		return;
	XS_MEM_BEGIN(xs);
	XML_ParserFree(xs->p);
	XS_MEM_END();
	xs->p = NULL;
}

/* Waking from hibernation: replays the header's namespace bindings. */
static int xs_resume_header(struct xstream *xs)
{
	size_t hlen = strlen(xs->resume_hdr);
	int rc = 0;

	xs->resuming = true;
	xs->depth = 0;
	xs->idx_base = (int64_t)xs->fed - (int64_t)hlen;
	if (XML_Parse(xs->p, xs->resume_hdr, (int)hlen, XML_FALSE) != XML_STATUS_OK ||
	    xs->depth != 1) {
		if (xs->err == XSTREAM_ERR_NOMEM || XML_GetErrorCode(xs->p) == XML_ERROR_NO_MEMORY)
			rc = XSTREAM_ERR_NOMEM;
		else
			rc = XSTREAM_ERR_NOT_WELL_FORMED;
	}
	xs->resuming = false;
	xs->depth = 1;
	return rc;
}

static int xs_parser_new(struct xstream *xs)
{
	XML_Parser p;
	int rc = 0;

	XS_MEM_BEGIN(xs);
	p = XML_ParserCreate_MM("UTF-8", &xs_mm, XS_SEP_STR);
	if (!p) {
		rc = XSTREAM_ERR_NOMEM;
		goto out;
	}
	xs->p = p;
	XML_SetHashSalt(p, xs_salt());
	XML_SetReturnNSTriplet(p, XML_TRUE);
	XML_SetUserData(p, xs);
	XML_SetElementHandler(p, on_start, on_end);
	XML_SetCharacterDataHandler(p, on_text);
	XML_SetStartNamespaceDeclHandler(p, on_ns_decl);
	XML_SetCommentHandler(p, on_comment);
	XML_SetProcessingInstructionHandler(p, on_pi);
	XML_SetStartDoctypeDeclHandler(p, on_doctype);
	XML_SetEntityDeclHandler(p, on_entity);
	XML_SetXmlDeclHandler(p, on_xml_decl);
	XML_SetParamEntityParsing(p, XML_PARAM_ENTITY_PARSING_NEVER);
#if XML_MAJOR_VERSION > 2 || (XML_MAJOR_VERSION == 2 && XML_MINOR_VERSION >= 6)
	/* Deferral would hold back small tokens until more input arrives. */
	XML_SetReparseDeferralEnabled(p, XML_FALSE);
#endif
	xs->idx_base = (int64_t)xs->fed;
	if (xs->state == XS_OPEN)
		rc = xs_resume_header(xs);
	if (rc < 0) {
		XML_ParserFree(p);
		xs->p = NULL;
	}
out:
	XS_MEM_END();
	return rc;
}

static void xs_die(struct xstream *xs, int err)
{
	xs->state = XS_DEAD;
	xs->err = err;
	xs_free_partial(xs);
	xs_parser_free(xs);
}

struct xstream *xstream_new(const struct xstream_limits *limits, const struct xstream_cbs *cbs,
			    void *ud)
{
	struct xstream *xs = calloc(1, sizeof(*xs));

	if (!xs)
		return NULL;
	xs_apply_limits(xs, limits);
	if (cbs)
		xs->cbs = *cbs;
	xs->ud = ud;
	xbuf_init(&xs->buf);
	xs->state = XS_HEADER;
	return xs;
}

static void xs_clear(struct xstream *xs)
{
	xs_free_partial(xs);
	xs_parser_free(xs);
	xbuf_free(&xs->buf);
	free(xs->hdr_default_ns);
	xs->hdr_default_ns = NULL;
	free(xs->resume_hdr);
	xs->resume_hdr = NULL;
}

void xstream_free(struct xstream *xs)
{
	if (!xs)
		return;
	xs_clear(xs);
	free(xs);
}

void xstream_set_limits(struct xstream *xs, const struct xstream_limits *limits)
{
	xs_apply_limits(xs, limits);
}

int xstream_reset(struct xstream *xs)
{
	xs_clear(xs);
	xs->idx_base = 0;
	xs->fed = 0;
	xs->mark = 0;
	xs->halt_off = 0;
	xs->depth = 0;
	xs->ndecls = 0;
	xs->err = 0;
	xs->state = XS_HEADER;
	xs->stop_req = false;
	xs->halted = false;
	xs->resuming = false;
	return 0;
}

void xstream_stop(struct xstream *xs)
{
	xs->stop_req = true;
}

static int xs_map_expat(enum XML_Error e)
{
	return e == XML_ERROR_NO_MEMORY ? XSTREAM_ERR_NOMEM : XSTREAM_ERR_NOT_WELL_FORMED;
}

/* After </stream:stream> only whitespace may follow. */
static int xs_after_close(struct xstream *xs, const char *data, size_t len, size_t *consumed)
{
	if (!xs_is_space(data, len)) {
		xs_die(xs, XSTREAM_ERR_CLOSED);
		return XSTREAM_ERR_CLOSED;
	}
	*consumed += len;
	return XSTREAM_OK;
}

int xstream_feed(struct xstream *xs, const char *data, size_t len, size_t *consumed)
{
	size_t done = 0, dummy;
	int rc = XSTREAM_OK;

	if (!consumed)
		consumed = &dummy;
	*consumed = 0;
	if (xs->state == XS_DEAD)
		return xs->err;
	if (xs->state == XS_CLOSED)
		return xs_after_close(xs, data, len, consumed);
	xs->stop_req = false;
	while (done < len) {
		size_t chunk = len - done < XS_CHUNK ? len - done : XS_CHUNK;
		enum XML_Status st;

		/* expat guesses UTF-16 from a NUL or a 0xFE/0xFF byte at the
		 * start of a document even when told the input is UTF-8; none of
		 * these bytes can occur in UTF-8 XML, so they are refused here. */
		if (memchr(data + done, '\0', chunk) ||
		    (xs->fed == 0 && (unsigned char)data[done] >= 0xfe)) {
			rc = XSTREAM_ERR_NOT_WELL_FORMED;
			goto out_die;
		}
		if (!xs->p) {
			rc = xs_parser_new(xs);
			if (rc < 0)
				goto out_die;
		}
		XS_MEM_BEGIN(xs);
		st = XML_Parse(xs->p, data + done, (int)chunk, XML_FALSE);
		XS_MEM_END();
		if (xs->err) {
			rc = xs->err;
			goto out_die;
		}
		if (xs->halted) {
			size_t used = (size_t)(xs->halt_off - xs->fed);

			xs->halted = false;
			xs->fed += used;
			done += used;
			*consumed = done;
			xs_parser_free(xs);
			if (xs->stop_req)
				return XSTREAM_STOPPED;
			/* Halted without a stop request: the stream closed. */
			return xs_after_close(xs, data + done, len - done, consumed);
		}
		if (st != XML_STATUS_OK) {
			rc = xs_map_expat(XML_GetErrorCode(xs->p));
			goto out_die;
		}
		done += chunk;
		xs->fed += chunk;
		*consumed = done;
		/* Bytes expat holds for an unfinished stanza (or header) count too. */
		if (xs->fed - xs->mark > xs->lim.max_stanza) {
			rc = XSTREAM_ERR_POLICY;
			goto out_die;
		}
	}
	return XSTREAM_OK;

out_die:
	xs_die(xs, rc);
	return rc;
}

int xstream_compact(struct xstream *xs)
{
	if (!xs->p)
		return 1;
	if (xs->state != XS_OPEN || xs->depth != 1 || xs->cur || xs->fed != xs->mark)
		return 0;
	xs_parser_free(xs);
	return 1;
}

size_t xstream_mem(const struct xstream *xs)
{
	size_t n = malloc_usable_size(unconst(xs)) + xs->parser_mem + xs->tree_mem;

	if (xs->resume_hdr)
		n += malloc_usable_size(xs->resume_hdr);
	if (xs->buf.data)
		n += malloc_usable_size(xs->buf.data);
	return n;
}

const char *xstream_condition(int err)
{
	switch (err) {
	case XSTREAM_ERR_NOT_WELL_FORMED:
		return "not-well-formed";
	case XSTREAM_ERR_RESTRICTED:
		return "restricted-xml";
	case XSTREAM_ERR_POLICY:
		return "policy-violation";
	case XSTREAM_ERR_INVALID_NS:
		return "invalid-namespace";
	case XSTREAM_ERR_BAD_FORMAT:
		return "bad-format";
	case XSTREAM_ERR_NOMEM:
		return "resource-constraint";
	case XSTREAM_ERR_CLOSED:
		return "not-well-formed";
	case XSTREAM_ERR_ENCODING:
		return "unsupported-encoding";
	case XSTREAM_ERR_NESTED_HEADER:
		return "unsupported-stanza-type";
	default:
		return "undefined-condition";
	}
}

const char *xstream_strerror(int err)
{
	switch (err) {
	case XSTREAM_OK:
		return "ok";
	case XSTREAM_STOPPED:
		return "stopped by callback";
	case XSTREAM_ERR_NOT_WELL_FORMED:
		return "XML not well-formed";
	case XSTREAM_ERR_RESTRICTED:
		return "restricted XML (DTD, entity, comment or PI)";
	case XSTREAM_ERR_POLICY:
		return "stanza too large, too deep or too many attributes";
	case XSTREAM_ERR_INVALID_NS:
		return "stream root not in the streams namespace";
	case XSTREAM_ERR_BAD_FORMAT:
		return "bad format (root name or text between stanzas)";
	case XSTREAM_ERR_NOMEM:
		return "out of memory";
	case XSTREAM_ERR_CLOSED:
		return "data after end of stream";
	case XSTREAM_ERR_ENCODING:
		return "encoding other than UTF-8 declared";
	case XSTREAM_ERR_NESTED_HEADER:
		return "stream header inside the open stream";
	default:
		return "unknown error";
	}
}

unsigned xstream_depth(const struct xstream *xs)
{
	return xs->depth;
}

int xstream_at_boundary(const struct xstream *xs)
{
	if (xs->state != XS_OPEN || xs->depth != 1)
		return 0;
	/* Without a parser the stream was compacted, which happens only at a boundary. */
	return !xs->p || (!xs->cur && xs->fed == xs->mark);
}
