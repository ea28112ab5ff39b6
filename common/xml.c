/*
 * Stanza trees and their serialization. See xml.h for the contract.
 *
 * Attribute names are either plain ("to"), "xml:NAME" for the XML namespace,
 * or Clark notation "{uri}local" for any other namespaced attribute; the
 * serializer invents a prefix for the latter, so what the parser reads is
 * written back with the same meaning.
 */
#include "xml.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define XBUF_MIN_CAP 64

void xbuf_init(struct xbuf *b)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	b->failed = 0;
}

static int xbuf_fail(struct xbuf *b)
{
	free(b->data);
	xbuf_init(b);
	b->failed = 1;
	return -ENOMEM;
}

void xbuf_free(struct xbuf *b)
{
	free(b->data);
	xbuf_init(b);
}

/* Makes room for extra more bytes plus the terminating NUL. */
static int xbuf_reserve(struct xbuf *b, size_t extra)
{
	size_t need, cap;
	char *p;

	if (b->failed)
		return -ENOMEM;
	if (extra > SIZE_MAX - b->len - 1)
		return xbuf_fail(b);
	need = b->len + extra + 1;
	if (need <= b->cap)
		return 0;
	cap = b->cap ? b->cap : XBUF_MIN_CAP;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	p = realloc(b->data, cap);
	if (!p)
		return xbuf_fail(b);
	b->data = p;
	b->cap = cap;
	return 0;
}

int xbuf_append(struct xbuf *b, const char *data, size_t len)
{
	if (xbuf_reserve(b, len) < 0)
		return -ENOMEM;
	if (len)
		memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = '\0';
	return 0;
}

int xbuf_puts(struct xbuf *b, const char *s)
{
	return xbuf_append(b, s, strlen(s));
}

int xbuf_printf(struct xbuf *b, const char *fmt, ...)
{
	size_t room;
	va_list ap;
	int n;

	/* One pass when it fits in what is allocated, a second one when not. */
	if (xbuf_reserve(b, 0) < 0)
		return -ENOMEM;
	room = b->cap - b->len;
	va_start(ap, fmt);
	n = vsnprintf(b->data + b->len, room, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->data[b->len] = '\0';
		return xbuf_fail(b);
	}
	if ((size_t)n >= room) {
		if (xbuf_reserve(b, (size_t)n) < 0)
			return -ENOMEM;
		va_start(ap, fmt);
		vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
		va_end(ap);
	}
	b->len += (size_t)n;
	return 0;
}

/*
 * Escapes markup characters. CR is written as a character reference because
 * a parser turns a literal CR into LF; in attribute values TAB and LF are too,
 * because attribute value normalization would turn them into spaces. C0
 * control characters that XML 1.0 cannot carry at all are dropped rather than
 * sent: one would make the peer close the whole stream as not-well-formed.
 */
static int xbuf_escape_mode(struct xbuf *b, const char *s, size_t len, int attr)
{
	size_t i, run = 0;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		const char *rep = NULL;

		switch (c) {
		case '&':
			rep = "&amp;";
			break;
		case '<':
			rep = "&lt;";
			break;
		case '>':
			rep = "&gt;";
			break;
		case '"':
			rep = "&quot;";
			break;
		case '\'':
			rep = "&apos;";
			break;
		case '\r':
			rep = "&#13;";
			break;
		case '\n':
			rep = attr ? "&#10;" : NULL;
			break;
		case '\t':
			rep = attr ? "&#9;" : NULL;
			break;
		default:
			if (c < 0x20)
				rep = "";
			break;
		}
		if (!rep)
			continue;
		if (xbuf_append(b, s + run, i - run) < 0 || xbuf_puts(b, rep) < 0)
			return -ENOMEM;
		run = i + 1;
	}
	return xbuf_append(b, s + run, len - run);
}

int xbuf_escape(struct xbuf *b, const char *s, size_t len)
{
	return xbuf_escape_mode(b, s, len, 0);
}

struct xnode *xnode_new(const char *name, const char *ns)
{
	struct xnode *n = calloc(1, sizeof(*n));

	if (!n)
		return NULL;
	n->name = strdup(name);
	if (!n->name)
		goto out_free;
	if (ns) {
		n->ns = strdup(ns);
		if (!n->ns)
			goto out_free_name;
	}
	return n;

out_free_name:
	free(n->name);
out_free:
	free(n);
	return NULL;
}

int xnode_append(struct xnode *parent, struct xnode *child)
{
	if (parent->nchildren == parent->cap_children) {
		size_t cap = parent->cap_children ? parent->cap_children * 2 : 4;
		struct xnode **c = realloc(parent->children, cap * sizeof(*c));

		if (!c)
			return -ENOMEM;
		parent->children = c;
		parent->cap_children = cap;
	}
	if (child->parent)
		xnode_detach(child);
	parent->children[parent->nchildren++] = child;
	child->parent = parent;
	return 0;
}

struct xnode *xnode_add_text(struct xnode *parent, const char *text, size_t len)
{
	struct xnode *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->text = malloc(len + 1);
	if (!t->text)
		goto out_free;
	if (len)
		memcpy(t->text, text, len);
	t->text[len] = '\0';
	t->textlen = len;
	if (xnode_append(parent, t) < 0)
		goto out_free_text;
	return t;

out_free_text:
	free(t->text);
out_free:
	free(t);
	return NULL;
}

struct xnode *xnode_add_child(struct xnode *parent, const char *name, const char *ns)
{
	struct xnode *c = xnode_new(name, ns ? ns : xnode_ns(parent));

	if (!c)
		return NULL;
	if (xnode_append(parent, c) < 0) {
		xnode_free(c);
		return NULL;
	}
	return c;
}

void xnode_detach(struct xnode *child)
{
	struct xnode *p = child->parent;
	size_t i;

	if (!p)
		return;
	for (i = 0; i < p->nchildren; i++) {
		if (p->children[i] == child) {
			memmove(&p->children[i], &p->children[i + 1],
				(p->nchildren - i - 1) * sizeof(p->children[0]));
			p->nchildren--;
			break;
		}
	}
	child->parent = NULL;
}

static void xnode_free_rec(struct xnode *n)
{
	size_t i;

	for (i = 0; i < n->nchildren; i++)
		xnode_free_rec(n->children[i]);
	for (i = 0; i < n->nattrs; i++) {
		free(n->attrs[i].name);
		free(n->attrs[i].value);
	}
	free(n->attrs);
	free(n->children);
	free(n->name);
	free(n->ns);
	free(n->text);
	free(n);
}

void xnode_free(struct xnode *n)
{
	if (!n)
		return;
	xnode_detach(n);
	xnode_free_rec(n);
}

struct xnode *xnode_copy(const struct xnode *n)
{
	struct xnode *c = calloc(1, sizeof(*c));
	size_t i;

	if (!c)
		return NULL;
	if ((n->name && !(c->name = strdup(n->name))) || (n->ns && !(c->ns = strdup(n->ns))))
		goto out_free;
	if (n->text) {
		c->text = malloc(n->textlen + 1);
		if (!c->text)
			goto out_free;
		memcpy(c->text, n->text, n->textlen + 1);
		c->textlen = n->textlen;
	}
	if (n->nattrs) {
		c->attrs = calloc(n->nattrs, sizeof(*c->attrs));
		if (!c->attrs)
			goto out_free;
		for (i = 0; i < n->nattrs; i++) {
			c->attrs[i].name = strdup(n->attrs[i].name);
			c->attrs[i].value = strdup(n->attrs[i].value);
			c->nattrs++;
			if (!c->attrs[i].name || !c->attrs[i].value)
				goto out_free;
		}
	}
	for (i = 0; i < n->nchildren; i++) {
		struct xnode *k = xnode_copy(n->children[i]);

		if (!k)
			goto out_free;
		if (xnode_append(c, k) < 0) {
			xnode_free(k);
			goto out_free;
		}
	}
	return c;

out_free:
	xnode_free(c);
	return NULL;
}

const char *xnode_attr(const struct xnode *n, const char *name)
{
	size_t i;

	for (i = 0; i < n->nattrs; i++)
		if (strcmp(n->attrs[i].name, name) == 0)
			return n->attrs[i].value;
	return NULL;
}

int xnode_set_attr(struct xnode *n, const char *name, const char *value)
{
	struct xattr *a;
	char *v;
	size_t i;

	for (i = 0; i < n->nattrs; i++) {
		if (strcmp(n->attrs[i].name, name) != 0)
			continue;
		if (!value) {
			free(n->attrs[i].name);
			free(n->attrs[i].value);
			memmove(&n->attrs[i], &n->attrs[i + 1],
				(n->nattrs - i - 1) * sizeof(n->attrs[0]));
			n->nattrs--;
			return 0;
		}
		v = strdup(value);
		if (!v)
			return -ENOMEM;
		free(n->attrs[i].value);
		n->attrs[i].value = v;
		return 0;
	}
	if (!value)
		return 0;
	a = realloc(n->attrs, (n->nattrs + 1) * sizeof(*a));
	if (!a)
		return -ENOMEM;
	n->attrs = a;
	a[n->nattrs].name = strdup(name);
	a[n->nattrs].value = strdup(value);
	if (!a[n->nattrs].name || !a[n->nattrs].value) {
		free(a[n->nattrs].name);
		free(a[n->nattrs].value);
		return -ENOMEM;
	}
	n->nattrs++;
	return 0;
}

static int ns_equal(const char *a, const char *b)
{
	if (!a || !b)
		return a == b;
	return strcmp(a, b) == 0;
}

struct xnode *xnode_child(const struct xnode *n, const char *name, const char *ns)
{
	size_t i;

	for (i = 0; i < n->nchildren; i++) {
		struct xnode *c = n->children[i];

		if (!c->name || strcmp(c->name, name) != 0)
			continue;
		if (ns && !ns_equal(xnode_ns(c), ns))
			continue;
		return c;
	}
	return NULL;
}

char *xnode_text(const struct xnode *n)
{
	struct xbuf b;
	size_t i;

	xbuf_init(&b);
	if (xbuf_append(&b, "", 0) < 0)
		return NULL;
	for (i = 0; i < n->nchildren; i++) {
		const struct xnode *c = n->children[i];

		if (!c->name && xbuf_append(&b, c->text, c->textlen) < 0) {
			xbuf_free(&b);
			return NULL;
		}
	}
	return b.data;
}

const char *xnode_ns(const struct xnode *n)
{
	for (; n; n = n->parent)
		if (n->ns)
			return n->ns;
	return NULL;
}

/* Writes one attribute; Clark names "{uri}local" get a prefix of their own. */
static int serialize_attr(const struct xattr *a, unsigned *nprefix, struct xbuf *out)
{
	const char *name = a->name;

	if (name[0] == '{') {
		/* A URI may contain '}', a local name may not: split at the last. */
		const char *end = strrchr(name, '}');

		if (!end)
			return -EINVAL;
		if (xbuf_printf(out, " xmlns:a%u='", *nprefix) < 0 ||
		    xbuf_escape_mode(out, name + 1, (size_t)(end - name - 1), 1) < 0 ||
		    xbuf_printf(out, "' a%u:%s='", *nprefix, end + 1) < 0)
			return -ENOMEM;
		(*nprefix)++;
	} else if (xbuf_append(out, " ", 1) < 0 || xbuf_puts(out, name) < 0 ||
		   xbuf_append(out, "='", 2) < 0) {
		return -ENOMEM;
	}
	if (xbuf_escape_mode(out, a->value, strlen(a->value), 1) < 0)
		return -ENOMEM;
	return xbuf_append(out, "'", 1);
}

int xnode_serialize(const struct xnode *n, const char *parent_ns, struct xbuf *out)
{
	const char *ns = n->ns ? n->ns : parent_ns;
	unsigned nprefix = 0;
	size_t i;

	if (!n->name)
		return xbuf_escape(out, n->text, n->textlen);
	if (xbuf_append(out, "<", 1) < 0 || xbuf_puts(out, n->name) < 0)
		return -ENOMEM;
	if (n->ns && !ns_equal(n->ns, parent_ns)) {
		if (xbuf_puts(out, " xmlns='") < 0 ||
		    xbuf_escape_mode(out, n->ns, strlen(n->ns), 1) < 0 ||
		    xbuf_append(out, "'", 1) < 0)
			return -ENOMEM;
	}
	for (i = 0; i < n->nattrs; i++)
		if (serialize_attr(&n->attrs[i], &nprefix, out) < 0)
			return -ENOMEM;
	if (!n->nchildren)
		return xbuf_append(out, "/>", 2);
	if (xbuf_append(out, ">", 1) < 0)
		return -ENOMEM;
	for (i = 0; i < n->nchildren; i++)
		if (xnode_serialize(n->children[i], ns, out) < 0)
			return -ENOMEM;
	if (xbuf_append(out, "</", 2) < 0 || xbuf_puts(out, n->name) < 0)
		return -ENOMEM;
	return xbuf_append(out, ">", 1);
}
