/*
 * JID framing and preparation. libidn does the Unicode work (nodeprep,
 * nameprep, resourceprep); what is left here is the RFC 7622 framing and the
 * host name rules nameprep does not check (it happily keeps spaces and
 * punctuation in a domain).
 */
#include "jid.h"

#include <errno.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stringprep.h>

/*
 * The three profiles on ASCII input, exactly as libidn computes them: NFKC
 * and the B.1 mapping leave ASCII alone, B.2 (nameprep, nodeprep) folds
 * A-Z, and the only prohibited ASCII code points are C.1.1 (space:
 * nodeprep) and C.2.1 (controls and DEL: nodeprep, resourceprep), plus
 * nodeprep's " & ' / : < > @. Bidi rules cannot reject ASCII. Most JIDs are
 * ASCII, and libidn's UCS-4 round trip was a fifth of a login's CPU.
 * 1 when done (0 ok, or a prohibited character: *bad), 0 for non-ASCII.
 */
static int jid_prep_ascii(char *buf, size_t len, const Stringprep_profile *profile, int *bad)
{
	int fold = profile != stringprep_xmpp_resourceprep;
	int node = profile == stringprep_xmpp_nodeprep;
	int ctrl = profile != stringprep_nameprep;
	size_t i;

	for (i = 0; i < len; i++)
		if ((unsigned char)buf[i] >= 0x80)
			return 0;
	*bad = 0;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)buf[i];

		if (ctrl && (c < 0x20 || c == 0x7f))
			*bad = 1;
		else if (node && (c == ' ' || strchr("\"&'/:<>@", c)))
			*bad = 1;
		else if (fold && c >= 'A' && c <= 'Z')
			buf[i] = (char)(c - 'A' + 'a');
	}
	return 1;
}

/* Runs one stringprep profile over in[0..len) into a new string. The buffer
 * is one part long: a result that grows past JID_PART_MAX (case folding can
 * lengthen, e.g. U+00DF to "ss") is too long. */
static int jid_stringprep(const char *in, size_t len, const Stringprep_profile *profile,
			  int empty_err, int prep_err, char **out)
{
	char buf[JID_PART_MAX + 1];
	int rc;

	*out = NULL;
	if (len == 0)
		return empty_err;
	if (len > JID_PART_MAX)
		return JID_ERR_TOO_LONG;
	if (memchr(in, '\0', len))
		return prep_err;
	memcpy(buf, in, len);
	buf[len] = '\0';
	if (jid_prep_ascii(buf, len, profile, &rc))
		rc = rc ? STRINGPREP_CONTAINS_PROHIBITED : STRINGPREP_OK;
	else
		rc = stringprep(buf, sizeof(buf), 0, profile);
	if (rc == STRINGPREP_TOO_SMALL_BUFFER)
		return JID_ERR_TOO_LONG;
	if (rc == STRINGPREP_MALLOC_ERROR)
		return JID_ERR_NOMEM;
	if (rc != STRINGPREP_OK)
		return prep_err;
	if (buf[0] == '\0')
		return empty_err;
	*out = strdup(buf);
	return *out ? 0 : JID_ERR_NOMEM;
}

static int jid_prep_node_n(const char *in, size_t len, char **out)
{
	return jid_stringprep(in, len, stringprep_xmpp_nodeprep, JID_ERR_EMPTY_NODE, JID_ERR_NODE,
			      out);
}

static int jid_prep_resource_n(const char *in, size_t len, char **out)
{
	return jid_stringprep(in, len, stringprep_xmpp_resourceprep, JID_ERR_EMPTY_RESOURCE,
			      JID_ERR_RESOURCE, out);
}

/* Label separators other than '.' that IDNA treats as dots (RFC 3490 3.1):
 * U+3002, U+FF0E, U+FF61. Rewritten in place to '.'. */
static void jid_fold_dots(char *s)
{
	char *r = s, *w = s;

	while (*r) {
		if ((unsigned char)r[0] == 0xe3 && (unsigned char)r[1] == 0x80 &&
		    (unsigned char)r[2] == 0x82) {
			*w++ = '.';
			r += 3;
		} else if ((unsigned char)r[0] == 0xef &&
			   (((unsigned char)r[1] == 0xbc && (unsigned char)r[2] == 0x8e) ||
			    ((unsigned char)r[1] == 0xbd && (unsigned char)r[2] == 0xa1))) {
			*w++ = '.';
			r += 3;
		} else {
			*w++ = *r++;
		}
	}
	*w = '\0';
}

static int jid_ip_literal_ok(const char *s, size_t len)
{
	char buf[64];
	unsigned char addr[16];

	if (len < 3 || len - 2 >= sizeof(buf) || s[len - 1] != ']')
		return 0;
	memcpy(buf, s + 1, len - 2);
	buf[len - 2] = '\0';
	return inet_pton(AF_INET6, buf, addr) == 1;
}

/* A prepared host name: labels of a-z 0-9 '-' '_' or non-ASCII, no empty
 * label, ASCII labels at most 63 bytes. Dotted IPv4 passes as such. */
static int jid_hostname_ok(const char *s)
{
	size_t label = 0;
	int ascii_only = 1;
	const char *p;

	for (p = s;; p++) {
		unsigned char c = (unsigned char)*p;

		if (c == '.' || c == '\0') {
			if (label == 0 || (ascii_only && label > 63))
				return 0;
			if (c == '\0')
				return 1;
			label = 0;
			ascii_only = 1;
			continue;
		}
		label++;
		if (c >= 0x80) {
			ascii_only = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
			return 0;
	}
}

static int jid_prep_domain_n(const char *in, size_t len, char **out)
{
	char *d;
	size_t n;
	int rc;

	*out = NULL;
	if (len > 0 && in[0] == '[') {
		if (len > JID_PART_MAX)
			return JID_ERR_TOO_LONG;
		if (!jid_ip_literal_ok(in, len))
			return JID_ERR_DOMAIN;
		d = strndup(in, len);
		if (!d)
			return JID_ERR_NOMEM;
		/* hex digits of an IPv6 literal compare case-insensitively */
		for (n = 0; n < len; n++)
			if (d[n] >= 'A' && d[n] <= 'F')
				d[n] = (char)(d[n] - 'A' + 'a');
		*out = d;
		return 0;
	}
	rc = jid_stringprep(in, len, stringprep_nameprep, JID_ERR_EMPTY_DOMAIN, JID_ERR_DOMAIN, &d);
	if (rc)
		return rc;
	/* RFC 7622 3.2: one trailing label separator is stripped (after
	 * folding, so that an ideographic full stop counts too). */
	jid_fold_dots(d);
	n = strlen(d);
	if (n > 1 && d[n - 1] == '.')
		d[n - 1] = '\0';
	if (!jid_hostname_ok(d)) {
		free(d);
		return JID_ERR_DOMAIN;
	}
	*out = d;
	return 0;
}

int jid_prep_node(const char *in, char **out)
{
	return jid_prep_node_n(in, strlen(in), out);
}

int jid_prep_domain(const char *in, char **out)
{
	return jid_prep_domain_n(in, strlen(in), out);
}

int jid_prep_resource(const char *in, char **out)
{
	return jid_prep_resource_n(in, strlen(in), out);
}

void jid_clear(struct jid *j)
{
	if (!j)
		return;
	free(j->node);
	free(j->domain);
	free(j->resource);
	j->node = j->domain = j->resource = NULL;
}

int jid_parse(const char *s, struct jid *out)
{
	const char *slash = strchr(s, '/'), *at, *dom;
	size_t dlen;
	struct jid j = { NULL, NULL, NULL };
	int rc = 0;

	memset(out, 0, sizeof(*out));
	/* RFC 7622 3.1: the resourcepart starts at the first '/'; the
	 * localpart ends at the first '@' before that. */
	dlen = slash ? (size_t)(slash - s) : strlen(s);
	at = memchr(s, '@', dlen);
	dom = at ? at + 1 : s;
	dlen -= (size_t)(dom - s);
	if (at)
		rc = jid_prep_node_n(s, (size_t)(at - s), &j.node);
	if (!rc)
		rc = jid_prep_domain_n(dom, dlen, &j.domain);
	if (!rc && slash)
		rc = jid_prep_resource_n(slash + 1, strlen(slash + 1), &j.resource);
	if (rc) {
		jid_clear(&j);
		return rc;
	}
	*out = j;
	return 0;
}

int jid_set(struct jid *out, const char *node, const char *domain, const char *resource)
{
	struct jid j = { NULL, NULL, NULL };
	int rc = 0;

	memset(out, 0, sizeof(*out));
	if (node)
		rc = jid_prep_node(node, &j.node);
	if (!rc)
		rc = jid_prep_domain(domain ? domain : "", &j.domain);
	if (!rc && resource)
		rc = jid_prep_resource(resource, &j.resource);
	if (rc) {
		jid_clear(&j);
		return rc;
	}
	*out = j;
	return 0;
}

/* Appends s[0..len) at *pos when it fits before end (one byte kept for
 * the NUL); 0 or -1. */
static int jid_put(char *buf, size_t size, size_t *pos, const char *s, size_t len)
{
	if (len >= size - *pos)
		return -ENOSPC;
	memcpy(buf + *pos, s, len);
	*pos += len;
	return 0;
}

/* By hand rather than snprintf: a JID is formatted for every stanza routed. */
static long jid_format(const struct jid *j, int full, char *buf, size_t size)
{
	size_t pos = 0;

	if (size == 0)
		return -ENOSPC;
	if (j->node && (jid_put(buf, size, &pos, j->node, strlen(j->node)) < 0 ||
			jid_put(buf, size, &pos, "@", 1) < 0))
		return -ENOSPC;
	if (j->domain && jid_put(buf, size, &pos, j->domain, strlen(j->domain)) < 0)
		return -ENOSPC;
	if (full && j->resource &&
	    (jid_put(buf, size, &pos, "/", 1) < 0 ||
	     jid_put(buf, size, &pos, j->resource, strlen(j->resource)) < 0))
		return -ENOSPC;
	buf[pos] = '\0';
	return (long)pos;
}

long jid_format_bare(const struct jid *j, char *buf, size_t size)
{
	return jid_format(j, 0, buf, size);
}

long jid_format_full(const struct jid *j, char *buf, size_t size)
{
	return jid_format(j, 1, buf, size);
}

static int jid_str_equal(const char *a, const char *b)
{
	if (!a || !b)
		return a == b;
	return strcmp(a, b) == 0;
}

int jid_bare_equal(const struct jid *a, const struct jid *b)
{
	return jid_str_equal(a->node, b->node) && jid_str_equal(a->domain, b->domain);
}

int jid_equal(const struct jid *a, const struct jid *b)
{
	return jid_bare_equal(a, b) && jid_str_equal(a->resource, b->resource);
}

const char *jid_strerror(int err)
{
	switch (err) {
	case JID_OK:
		return "valid";
	case JID_ERR_EMPTY_NODE:
		return "empty localpart";
	case JID_ERR_EMPTY_DOMAIN:
		return "empty domainpart";
	case JID_ERR_EMPTY_RESOURCE:
		return "empty resourcepart";
	case JID_ERR_TOO_LONG:
		return "part longer than 1023 bytes";
	case JID_ERR_NODE:
		return "invalid localpart";
	case JID_ERR_DOMAIN:
		return "invalid domainpart";
	case JID_ERR_RESOURCE:
		return "invalid resourcepart";
	case JID_ERR_NOMEM:
		return "out of memory";
	}
	return "unknown JID error";
}
