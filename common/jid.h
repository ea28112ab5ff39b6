/*
 * XMPP addresses (RFC 7622 framing) prepared with libidn's stringprep
 * profiles (the RFC 6122 ones, which is what libidn implements):
 *   localpart:    stringprep_xmpp_nodeprep     (case folded; " & ' / : < > @
 *                                               and spaces are prohibited)
 *   domainpart:   stringprep_nameprep, then lower case, one trailing dot
 *                 removed, labels of letters, digits, '-' and '_' (non-ASCII
 *                 allowed), no empty label; or an IP literal "[v6]" / a
 *                 dotted IPv4 address
 *   resourcepart: stringprep_xmpp_resourceprep (case kept; '@' and '/' fine)
 *
 * Framing: the domainpart ends at the first '/', the localpart is what
 * precedes the first '@' before that. Each prepared part is 1..JID_PART_MAX
 * bytes; "@domain", "node@", "domain/" (an empty part after its separator)
 * are errors.
 *
 * Error convention: 0 for success, a negative enum jid_err otherwise. In
 * XMPP terms every error is jid-malformed (stanza error) or, for a resource
 * asked in <bind/>, bad-request; JID_ERR_NOMEM is resource-constraint.
 */
#ifndef COMMON_JID_H
#define COMMON_JID_H

#include <stddef.h>

#define JID_PART_MAX 1023
/* The longest JID as text, node@domain/resource, and a buffer that holds
 * it with its NUL: what jid_format_full() never exceeds. */
#define JID_FULL_MAX (3 * JID_PART_MAX + 2)
#define JID_BUF_SIZE (JID_FULL_MAX + 1)

enum jid_err {
	JID_OK = 0,
	JID_ERR_EMPTY_NODE = -1,     /* "@domain" */
	JID_ERR_EMPTY_DOMAIN = -2,   /* "", "node@", "/res" */
	JID_ERR_EMPTY_RESOURCE = -3, /* "domain/" */
	JID_ERR_TOO_LONG = -4,	     /* a part over JID_PART_MAX bytes (before
					 or after preparation) */
	JID_ERR_NODE = -5,	     /* nodeprep failed: prohibited character,
					 bad bidi, invalid UTF-8 */
	JID_ERR_DOMAIN = -6,	     /* nameprep failed or not a host name /
					 IP literal */
	JID_ERR_RESOURCE = -7,	     /* resourceprep failed */
	JID_ERR_NOMEM = -8,
};

/*
 * A prepared JID. Parts are malloc'd, NUL-terminated, owned by the struct;
 * node and resource are NULL when absent, domain is never NULL in a JID
 * that jid_parse()/jid_set() filled. A zeroed struct jid is empty and may
 * be passed to jid_clear().
 */
struct jid {
	char *node;
	char *domain;
	char *resource;
};

/* Parses and prepares s (NUL-terminated). On error *out is left empty. */
int jid_parse(const char *s, struct jid *out);
/* Builds from separate parts (node, resource may be NULL), preparing each
 * (e.g. the SASL username as node, the domain, a requested resource). */
int jid_set(struct jid *out, const char *node, const char *domain, const char *resource);
/* Frees the parts and empties the struct; NULL is fine. */
void jid_clear(struct jid *j);

/*
 * Prepares one part on its own: 0 and a malloc'd result in *out, or the
 * error of that part (JID_ERR_EMPTY_*, JID_ERR_TOO_LONG, JID_ERR_NODE /
 * DOMAIN / RESOURCE, JID_ERR_NOMEM).
 */
int jid_prep_node(const char *in, char **out);
int jid_prep_domain(const char *in, char **out);
int jid_prep_resource(const char *in, char **out);

/* Writes the bare / full form into buf; returns its length, or -ENOSPC when it
 * does not fit in size (including the NUL). */
long jid_format_bare(const struct jid *j, char *buf, size_t size);
long jid_format_full(const struct jid *j, char *buf, size_t size);

/* 1 when equal (both are prepared, so byte comparison is right), else 0. */
int jid_equal(const struct jid *a, const struct jid *b);
int jid_bare_equal(const struct jid *a, const struct jid *b);

const char *jid_strerror(int err);

#endif
