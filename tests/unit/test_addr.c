/* Unit tests for common/addr.c: every form, every flag, the errors, and
 * formatting back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "addr.h"

static void test_numeric(void **state)
{
	struct addr a;
	char buf[ADDR_STR_MAX];

	(void)state;
	assert_int_equal(addr_parse("127.0.0.1:5222", 0, 0, &a), 0);
	assert_string_equal(a.host, "127.0.0.1");
	assert_int_equal(a.port, 5222);
	assert_int_equal(a.sa.ss_family, AF_INET);
	assert_int_equal(addr_port((struct sockaddr *)&a.sa), 5222);
	assert_int_equal(addr_format((struct sockaddr *)&a.sa, buf, sizeof(buf)), 14);
	assert_string_equal(buf, "127.0.0.1:5222");

	assert_int_equal(addr_parse("[::1]:80", 0, 0, &a), 0);
	assert_string_equal(a.host, "::1");
	assert_int_equal(a.sa.ss_family, AF_INET6);
	assert_int_equal(addr_format((struct sockaddr *)&a.sa, buf, sizeof(buf)), 8);
	assert_string_equal(buf, "[::1]:80");
	assert_int_equal(addr_format((struct sockaddr *)&a.sa, buf, 8), -ENOSPC);

	assert_int_equal(addr_parse("0.0.0.0:65535", 0, 0, &a), 0);
	assert_int_equal(a.port, 65535);
}

static void test_port_rules(void **state)
{
	struct addr a;

	(void)state;
	assert_int_equal(addr_parse("0.0.0.0:0", 0, 0, &a), -EINVAL);
	assert_int_equal(addr_parse("0.0.0.0:0", ADDR_PORT_ZERO, 0, &a), 0);
	assert_int_equal(a.port, 0);
	assert_int_equal(addr_parse("1.2.3.4:65536", ADDR_PORT_ZERO, 0, &a), -EINVAL);
	assert_int_equal(addr_parse("1.2.3.4:", 0, 0, &a), -EINVAL);
	assert_int_equal(addr_parse("1.2.3.4:5x", 0, 0, &a), -EINVAL);
	assert_int_equal(addr_parse("1.2.3.4:+80", 0, 0, &a), -EINVAL);
	assert_int_equal(addr_parse("1.2.3.4: 80", 0, 0, &a), -EINVAL);
	assert_int_equal(addr_parse("1.2.3.4:-1", 0, 0, &a), -EINVAL);
	assert_int_equal(addr_parse("1.2.3.4:99999999999999999999", 0, 0, &a), -EINVAL);
	/* without a port: only with ADDR_PORT_OPTIONAL, and then the default */
	assert_int_equal(addr_parse("1.2.3.4", 0, 7000, &a), -EINVAL);
	assert_int_equal(addr_parse("1.2.3.4", ADDR_PORT_OPTIONAL, 7000, &a), 0);
	assert_int_equal(a.port, 7000);
	assert_int_equal(addr_parse("[::1]", ADDR_PORT_OPTIONAL, 7000, &a), 0);
	assert_int_equal(a.port, 7000);
	assert_int_equal(addr_parse("1.2.3.4", ADDR_PORT_OPTIONAL, 0, &a), -EINVAL);
	assert_int_equal(addr_parse("1.2.3.4", ADDR_PORT_OPTIONAL | ADDR_PORT_ZERO, 0, &a), 0);
}

static void test_malformed(void **state)
{
	static const char *const bad[] = {
		"",	  ":80",	  "[::1]80",	     "[::1",
		"::1:80", "[1.2.3.4]:80", "[fe80::1%lo]:80", "[]:80",
		"a b:80", "host/x:80",	  "1.2.3.4:80:",     "[::1]:80x",
	};
	struct addr a;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (addr_parse(bad[i], ADDR_NAME | ADDR_PORT_ZERO, 0, &a) != -EINVAL)
			fail_msg("accepted '%s'", bad[i]);
	}
	assert_int_equal(addr_parse(NULL, 0, 0, &a), -EINVAL);
}

static void test_names(void **state)
{
	struct addr a;
	char name[300], buf[ADDR_STR_MAX];

	(void)state;
	/* names only where allowed; not resolved unless asked */
	assert_int_equal(addr_parse("host.example:80", 0, 0, &a), -EINVAL);
	assert_int_equal(addr_parse("chat-peers.ns.svc", ADDR_NAME | ADDR_PORT_OPTIONAL, 7946, &a),
			 0);
	assert_string_equal(a.host, "chat-peers.ns.svc");
	assert_int_equal(a.port, 7946);
	assert_int_equal(a.sa.ss_family, AF_UNSPEC);
	assert_int_equal(addr_parse("under_score-1:9", ADDR_NAME, 0, &a), 0);
	/* the longest name, and one byte more */
	memset(name, 'a', ADDR_NAME_MAX);
	strcpy(name + ADDR_NAME_MAX, ":1");
	assert_int_equal(addr_parse(name, ADDR_NAME, 0, &a), 0);
	assert_int_equal(addr_join(a.host, a.port, buf, sizeof(buf)), ADDR_NAME_MAX + 2);
	memset(name, 'a', ADDR_NAME_MAX + 1);
	strcpy(name + ADDR_NAME_MAX + 1, ":1");
	assert_int_equal(addr_parse(name, ADDR_NAME, 0, &a), -EINVAL);
	/* resolution: localhost always resolves, an .invalid name never */
	assert_int_equal(addr_parse("localhost:5222", ADDR_RESOLVE, 0, &a), 0);
	assert_true(a.sa.ss_family == AF_INET || a.sa.ss_family == AF_INET6);
	assert_int_equal(addr_port((struct sockaddr *)&a.sa), 5222);
	{
		/* -EAGAIN where no resolver answers at all (a container without DNS) */
		int rc = addr_parse("no-such-host.invalid:5222", ADDR_RESOLVE, 0, &a);

		assert_true(rc == -ENOENT || rc == -EAGAIN);
	}
	/* a numeric address needs no resolver */
	assert_int_equal(addr_parse("10.1.2.3:5222", ADDR_RESOLVE, 0, &a), 0);
	assert_int_equal(a.sa.ss_family, AF_INET);
}

static void test_join(void **state)
{
	char buf[32];

	(void)state;
	assert_int_equal(addr_join("::1", 5270, buf, sizeof(buf)), 10);
	assert_string_equal(buf, "[::1]:5270");
	assert_int_equal(addr_join("10.0.0.1", 0, buf, sizeof(buf)), 10);
	assert_string_equal(buf, "10.0.0.1:0");
	assert_int_equal(addr_join("10.0.0.1", 5270, buf, 10), -ENOSPC);
	{
		struct sockaddr_storage ss = { .ss_family = AF_UNIX };

		assert_int_equal(addr_format((struct sockaddr *)&ss, buf, sizeof(buf)),
				 -EAFNOSUPPORT);
		assert_int_equal(addr_port((struct sockaddr *)&ss), 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_numeric),	  cmocka_unit_test(test_port_rules),
		cmocka_unit_test(test_malformed), cmocka_unit_test(test_names),
		cmocka_unit_test(test_join),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
