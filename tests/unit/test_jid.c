/* Unit tests for common/jid.c. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <stringprep.h>

#include "jid.h"

/* Parses in; checks the prepared full form (or NULL for a missing part). */
static void expect_jid(const char *in, const char *node, const char *domain, const char *res)
{
	struct jid j;
	int rc = jid_parse(in, &j);

	if (rc != 0)
		fail_msg("\"%s\": %s", in, jid_strerror(rc));
	if (node)
		assert_string_equal(j.node, node);
	else
		assert_null(j.node);
	assert_string_equal(j.domain, domain);
	if (res)
		assert_string_equal(j.resource, res);
	else
		assert_null(j.resource);
	jid_clear(&j);
}

static void expect_err(const char *in, int err)
{
	struct jid j = { (char *)1, (char *)1, (char *)1 };
	int rc = jid_parse(in, &j);

	if (rc != err)
		fail_msg("\"%s\": got %d (%s), want %d (%s)", in, rc, jid_strerror(rc), err,
			 jid_strerror(err));
	assert_null(j.node);
	assert_null(j.domain);
	assert_null(j.resource);
}

static void test_valid(void **state)
{
	(void)state;
	expect_jid("example.com", NULL, "example.com", NULL);
	expect_jid("juliet@example.com", "juliet", "example.com", NULL);
	expect_jid("juliet@example.com/foo", "juliet", "example.com", "foo");
	expect_jid("example.com/foo", NULL, "example.com", "foo");
	expect_jid("juliet@example.com/foo bar", "juliet", "example.com", "foo bar");
	/* '@' and '/' are fine in a resource: framing takes the first '/' */
	expect_jid("juliet@example.com/foo@bar", "juliet", "example.com", "foo@bar");
	expect_jid("juliet@example.com/foo/bar", "juliet", "example.com", "foo/bar");
	expect_jid("example.com/juliet@example.net", NULL, "example.com", "juliet@example.net");
	expect_jid("a@localhost", "a", "localhost", NULL);
	expect_jid("a@127.0.0.1", "a", "127.0.0.1", NULL);
	expect_jid("a@[::1]/r", "a", "[::1]", "r");
	expect_jid("a@[2001:DB8::1]", "a", "[2001:db8::1]", NULL);
	expect_jid("a@chat-svc_1.ns.svc.cluster.local", "a", "chat-svc_1.ns.svc.cluster.local",
		   NULL);
}

static void test_case_folding(void **state)
{
	(void)state;
	/* node and domain fold, the resource keeps its case */
	expect_jid("Juliet@Example.COM/Balcony", "juliet", "example.com", "Balcony");
	expect_jid("ROMEO@EXAMPLE.NET", "romeo", "example.net", NULL);
	/* trailing dot on the domain is stripped (RFC 7622 3.2) */
	expect_jid("juliet@example.com./r", "juliet", "example.com", "r");
	/* Unicode: U+00C9 folds to U+00E9; U+00DF folds to "ss" */
	expect_jid("\xc3\x89lise@example.com", "\xc3\xa9lise", "example.com", NULL);
	expect_jid("Stra\xc3\x9f"
		   "e@example.com",
		   "strasse", "example.com", NULL);
	/* Unicode domain, upper case folded by nameprep */
	expect_jid("x@M\xc3\x9cNCHEN.de", "x", "m\xc3\xbcnchen.de", NULL);
	/* ideographic full stop is a label separator */
	expect_jid("x@example\xe3\x80\x82"
		   "com",
		   "x", "example.com", NULL);
	expect_jid("x@example.com\xe3\x80\x82", "x", "example.com", NULL);
	expect_jid("x@example\xef\xbc\x8e"
		   "com",
		   "x", "example.com", NULL);
	/* fullwidth resource characters are normalised (NFKC) */
	expect_jid("x@example.com/\xef\xbc\xa1", "x", "example.com", "A");
	/* soft hyphen maps to nothing in every profile */
	expect_jid("ro\xc2\xadmeo@example.com", "romeo", "example.com", NULL);
}

static void test_invalid_chars(void **state)
{
	static const char *bad_nodes[] = {
		"a\"b@example.com", "a b@example.com", "a&b@example.com", "a'b@example.com",
		"a:b@example.com",  "a<b@example.com", "a>b@example.com", "a\x01@example.com",
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad_nodes) / sizeof(bad_nodes[0]); i++)
		expect_err(bad_nodes[i], JID_ERR_NODE);
	/* the second '@' is part of the domain, which rejects it */
	expect_err("a@b@example.com", JID_ERR_DOMAIN);
	expect_err("a@exa mple.com", JID_ERR_DOMAIN);
	expect_err("a@exa\"mple.com", JID_ERR_DOMAIN);
	expect_err("a@example..com", JID_ERR_DOMAIN);
	expect_err("a@.example.com", JID_ERR_DOMAIN);
	expect_err("a@.", JID_ERR_DOMAIN);
	expect_err("a@example.com..", JID_ERR_DOMAIN);
	expect_err("a@[::1", JID_ERR_DOMAIN);
	expect_err("a@[not-v6]", JID_ERR_DOMAIN);
	expect_err("a@exa:mple.com", JID_ERR_DOMAIN);
	/* invalid UTF-8 */
	expect_err("\xc3\x28@example.com", JID_ERR_NODE);
	expect_err("a@example.com/\xff", JID_ERR_RESOURCE);
	expect_err("a@\xe2\x28\xa1.com", JID_ERR_DOMAIN);
	/* a control character in the resource is prohibited */
	expect_err("a@example.com/a\x07", JID_ERR_RESOURCE);
	/* a 64-byte ASCII label */
	expect_err("a@aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com",
		   JID_ERR_DOMAIN);
	expect_jid("a@aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com", "a",
		   "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com", NULL);
}

static void test_empty_parts(void **state)
{
	(void)state;
	expect_err("", JID_ERR_EMPTY_DOMAIN);
	expect_err("@example.com", JID_ERR_EMPTY_NODE);
	expect_err("a@", JID_ERR_EMPTY_DOMAIN);
	expect_err("a@/r", JID_ERR_EMPTY_DOMAIN);
	expect_err("/r", JID_ERR_EMPTY_DOMAIN);
	expect_err("example.com/", JID_ERR_EMPTY_RESOURCE);
	expect_err("a@example.com/", JID_ERR_EMPTY_RESOURCE);
	/* a part that prepares to nothing is empty too */
	expect_err("\xc2\xad@example.com", JID_ERR_EMPTY_NODE);
	expect_err("a@example.com/\xc2\xad", JID_ERR_EMPTY_RESOURCE);
}

static void test_lengths(void **state)
{
	char *s = malloc(4000), *out;
	struct jid j;

	(void)state;
	/* 1023 bytes of node is the limit */
	memset(s, 'a', 1023);
	strcpy(s + 1023, "@example.com");
	assert_int_equal(jid_parse(s, &j), 0);
	assert_int_equal(strlen(j.node), 1023);
	jid_clear(&j);
	memset(s, 'a', 1024);
	strcpy(s + 1024, "@example.com");
	expect_err(s, JID_ERR_TOO_LONG);
	/* resource */
	strcpy(s, "a@example.com/");
	memset(s + 14, 'R', 1024);
	s[14 + 1024] = '\0';
	expect_err(s, JID_ERR_TOO_LONG);
	s[14 + 1023] = '\0';
	assert_int_equal(jid_parse(s, &j), 0);
	assert_int_equal(strlen(j.resource), 1023);
	jid_clear(&j);
	/* growth by NFKC: U+337F (3 bytes) is four CJK ideographs (12 bytes), so
	 * 300 of them (900 bytes) prepare to 3600 bytes */
	for (int i = 0; i < 300; i++)
		memcpy(s + 3 * i, "\xe3\x8d\xbf", 3);
	s[900] = '\0';
	assert_int_equal(jid_prep_node(s, &out), JID_ERR_TOO_LONG);
	s[60] = '\0';
	assert_int_equal(jid_prep_node(s, &out), 0);
	assert_int_equal(strlen(out), 240);
	free(out);
	/* domain */
	memset(s, 'a', 1030);
	for (int i = 60; i < 1030; i += 61)
		s[i] = '.';
	s[1030] = '\0';
	expect_err(s, JID_ERR_TOO_LONG);
	free(s);
}

static void test_format(void **state)
{
	struct jid j, k, l;
	char buf[64];

	(void)state;
	assert_int_equal(jid_parse("Juliet@Example.com/Balcony", &j), 0);
	assert_int_equal(jid_format_full(&j, buf, sizeof(buf)), 26);
	assert_string_equal(buf, "juliet@example.com/Balcony");
	assert_int_equal(jid_format_bare(&j, buf, sizeof(buf)), 18);
	assert_string_equal(buf, "juliet@example.com");
	assert_int_equal(jid_format_full(&j, buf, 26), -ENOSPC);
	assert_int_equal(jid_format_full(&j, buf, 27), 26);

	assert_int_equal(jid_set(&k, "juliet", "example.com", "Other"), 0);
	assert_false(jid_equal(&j, &k));
	assert_true(jid_bare_equal(&j, &k));
	jid_clear(&k);
	assert_int_equal(jid_set(&k, "juliet", "example.com", NULL), 0);
	assert_null(k.resource);
	assert_int_equal(jid_format_full(&k, buf, sizeof(buf)), 18);
	assert_string_equal(buf, "juliet@example.com");
	jid_clear(&k);
	assert_int_equal(jid_set(&k, "juliet", "example.com", ""), JID_ERR_EMPTY_RESOURCE);
	assert_int_equal(jid_set(&k, "juliet", "example.com", "a\x07"), JID_ERR_RESOURCE);

	assert_int_equal(jid_set(&l, "JULIET", "EXAMPLE.com.", "Balcony"), 0);
	assert_true(jid_equal(&j, &l));
	jid_clear(&l);
	assert_int_equal(jid_set(&l, NULL, "example.com", NULL), 0);
	assert_int_equal(jid_format_full(&l, buf, sizeof(buf)), 11);
	assert_string_equal(buf, "example.com");
	assert_false(jid_bare_equal(&j, &l));
	jid_clear(&l);
	assert_int_equal(jid_set(&l, "a b", "example.com", NULL), JID_ERR_NODE);
	assert_null(l.domain);
	assert_int_equal(jid_set(&l, "a", NULL, NULL), JID_ERR_EMPTY_DOMAIN);
	jid_clear(&j);
	jid_clear(&k);
	jid_clear(NULL);
}

static void test_prep_parts(void **state)
{
	char *out;

	(void)state;
	assert_int_equal(jid_prep_node("Alice", &out), 0);
	assert_string_equal(out, "alice");
	free(out);
	assert_int_equal(jid_prep_node("al@ce", &out), JID_ERR_NODE);
	assert_null(out);
	assert_int_equal(jid_prep_node("", &out), JID_ERR_EMPTY_NODE);
	assert_int_equal(jid_prep_domain("Example.ORG.", &out), 0);
	assert_string_equal(out, "example.org");
	free(out);
	assert_int_equal(jid_prep_domain("", &out), JID_ERR_EMPTY_DOMAIN);
	assert_int_equal(jid_prep_resource(" Pad ", &out), 0);
	assert_string_equal(out, " Pad ");
	free(out);
	assert_string_not_equal(jid_strerror(JID_ERR_NODE), jid_strerror(JID_ERR_DOMAIN));
}

/* jid.c prepares ASCII without libidn: the result must be libidn's, byte for
 * byte, ok or refused alike. */
static void expect_as_libidn(const char *in, const Stringprep_profile *profile,
			     int (*prep)(const char *, char **))
{
	char ref[JID_PART_MAX + 1], *out = NULL;
	int want, got;

	snprintf(ref, sizeof(ref), "%s", in);
	want = stringprep(ref, sizeof(ref), 0, profile) == STRINGPREP_OK && ref[0];
	if (profile == stringprep_nameprep && strlen(ref) > 1 && ref[strlen(ref) - 1] == '.')
		ref[strlen(ref) - 1] = '\0'; /* RFC 7622 3.2: jid.c strips it */
	got = prep(in, &out);
	if (want != (got == 0))
		fail_msg("'%s' (first byte 0x%02x): libidn %s, jid.c %s", in, (unsigned char)in[0],
			 want ? "accepts" : "refuses", got == 0 ? "accepts" : "refuses");
	if (want)
		assert_string_equal(out, ref);
	free(out);
}

static void test_ascii_as_libidn(void **state)
{
	static const char host[] = "aZ09.-_Q";
	char s[8];
	unsigned a, b, i;

	(void)state;
	for (a = 1; a < 128; a++) {
		for (b = 0; b < 128; b += (b < 8 ? 1 : 13)) {
			s[0] = (char)a;
			s[1] = (char)(b ? b : 'x');
			s[2] = (char)a;
			s[3] = '\0';
			expect_as_libidn(s, stringprep_xmpp_nodeprep, jid_prep_node);
			expect_as_libidn(s, stringprep_xmpp_resourceprep, jid_prep_resource);
		}
	}
	/* Domains also pass host name rules after nameprep: letters, digits,
	 * '.', '-', '_' and upper case, in every combination of 3. */
	for (i = 0; i < 8 * 8 * 8; i++) {
		s[0] = host[i % 8];
		s[1] = host[i / 8 % 8];
		s[2] = host[i / 64];
		s[3] = '\0';
		if (strstr(s, "..") || s[0] == '.')
			continue;
		expect_as_libidn(s, stringprep_nameprep, jid_prep_domain);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid),	      cmocka_unit_test(test_case_folding),
		cmocka_unit_test(test_invalid_chars), cmocka_unit_test(test_empty_parts),
		cmocka_unit_test(test_lengths),	      cmocka_unit_test(test_format),
		cmocka_unit_test(test_prep_parts),    cmocka_unit_test(test_ascii_as_libidn),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
