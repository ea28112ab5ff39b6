/*
 * A small XML element tree for stanzas: built by the stream parser
 * (xstream.h) at depth 1 of an XMPP stream, built by hand for replies, and
 * serialized back with correct escaping and namespace declarations.
 *
 * Names are local names; each element carries its namespace URI (never a
 * prefix). Attributes in the XML namespace are stored as "xml:lang" etc.,
 * attributes in any other namespace as "{uri}local" (the serializer declares
 * a prefix for them).
 * Children are elements or text nodes (name == NULL). Every string is
 * NUL-terminated UTF-8 owned by its node. All functions that allocate return
 * NULL / -ENOMEM on out-of-memory and leave the tree valid.
 */
#ifndef COMMON_XML_H
#define COMMON_XML_H

#include <stddef.h>

struct xattr {
	char *name;  /* "to", "type", "xml:lang", ... */
	char *value; /* unescaped */
};

struct xnode {
	char *name; /* local element name; NULL for a text node */
	char *ns;   /* namespace URI, or NULL (inherits on output) */
	char *text; /* text nodes only: unescaped character data */
	size_t textlen;
	struct xattr *attrs;
	size_t nattrs;
	struct xnode **children;
	size_t nchildren;
	size_t cap_children;
	struct xnode *parent; /* NULL for a root */
};

/* A dynamic byte buffer, used for serialization. After any successful
 * append, data is NUL-terminated (data[len] == '\0'). The first failed
 * append (out of memory) frees the data and makes every later append fail
 * until xbuf_free(): a message built from several appends is whole or
 * absent (data == NULL), never sent with a piece missing. */
struct xbuf {
	char *data;
	size_t len;
	size_t cap;
	int failed; /* an append failed: data is NULL until xbuf_free() */
};

void xbuf_init(struct xbuf *b);
void xbuf_free(struct xbuf *b);
int xbuf_append(struct xbuf *b, const char *data, size_t len);
int xbuf_puts(struct xbuf *b, const char *s);
int xbuf_printf(struct xbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s with &, <, >, ", ' and CR escaped; control characters XML cannot
 * carry (C0 other than TAB, LF, CR) are dropped. */
int xbuf_escape(struct xbuf *b, const char *s, size_t len);

/* New element (ns may be NULL). */
struct xnode *xnode_new(const char *name, const char *ns);
/* New text node child of parent; returns it. */
struct xnode *xnode_add_text(struct xnode *parent, const char *text, size_t len);
/* New element child of parent (ns NULL inherits the parent's); returns it. */
struct xnode *xnode_add_child(struct xnode *parent, const char *name, const char *ns);
/* Appends an existing detached node as the last child; takes ownership. */
int xnode_append(struct xnode *parent, struct xnode *child);
/* Detaches child from its parent (ownership passes to the caller). */
void xnode_detach(struct xnode *child);
/* Frees n and its subtree; an attached n is detached first. NULL is a no-op. */
void xnode_free(struct xnode *n);
struct xnode *xnode_copy(const struct xnode *n);

const char *xnode_attr(const struct xnode *n, const char *name);
/* Sets (replaces) an attribute; value NULL removes it. */
int xnode_set_attr(struct xnode *n, const char *name, const char *value);
/* First child element with that name (and namespace, when ns != NULL). */
struct xnode *xnode_child(const struct xnode *n, const char *name, const char *ns);
/* Concatenated text of the direct text children, or "" (malloc'ed: free it). */
char *xnode_text(const struct xnode *n);
/* Effective namespace: the node's own or the nearest ancestor's. */
const char *xnode_ns(const struct xnode *n);

/*
 * Serializes n as a complete element. An xmlns="..." declaration is written
 * where the element's namespace differs from parent_ns (the namespace in
 * effect where the element is written: "jabber:client" for stanzas inside a
 * client stream).
 */
int xnode_serialize(const struct xnode *n, const char *parent_ns, struct xbuf *out);

#endif
