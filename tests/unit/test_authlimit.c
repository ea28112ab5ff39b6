/* Unit tests for server/authlimit.c: failed-login counts per address and
 * per user name, their limits, their halving every minute, and a success
 * forgetting the name. Times are given, not read from a clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "../../server/authlimit.h"

static struct sockaddr *v4(struct sockaddr_in *sa, const char *ip)
{
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	inet_pton(AF_INET, ip, &sa->sin_addr);
	return (struct sockaddr *)sa;
}

static void test_limits(void **state)
{
	struct sockaddr_in a, b;
	struct sockaddr_in6 c;
	struct authlimit *al = authlimit_new(4, 2);

	assert_non_null(al);
	/* the name limit: 2 failures block the name from anywhere */
	authlimit_failed(al, v4(&a, "10.0.0.1"), "alice", 0);
	assert_false(authlimit_blocked(al, v4(&a, "10.0.0.1"), "alice", 0));
	authlimit_failed(al, v4(&a, "10.0.0.2"), "alice", 0);
	assert_true(authlimit_blocked(al, v4(&b, "10.0.0.3"), "alice", 0));
	assert_false(authlimit_blocked(al, v4(&b, "10.0.0.3"), "bob", 0));
	assert_false(authlimit_blocked(al, v4(&b, "10.0.0.1"), NULL, 0));
	/* the address limit: 4 failures, whatever the names */
	authlimit_failed(al, v4(&a, "10.0.0.1"), "x1", 0);
	authlimit_failed(al, v4(&a, "10.0.0.1"), NULL, 0);
	assert_false(authlimit_blocked(al, v4(&a, "10.0.0.1"), NULL, 0));
	authlimit_failed(al, v4(&a, "10.0.0.1"), "x3", 0);
	assert_true(authlimit_blocked(al, v4(&a, "10.0.0.1"), NULL, 0));
	assert_true(authlimit_blocked(al, v4(&a, "10.0.0.1"), "bob", 0));
	assert_false(authlimit_blocked(al, v4(&a, "10.0.0.2"), "bob", 0));
	/* IPv6 addresses are their own keys */
	memset(&c, 0, sizeof(c));
	c.sin6_family = AF_INET6;
	inet_pton(AF_INET6, "::1", &c.sin6_addr);
	assert_false(authlimit_blocked(al, (struct sockaddr *)&c, NULL, 0));
	authlimit_free(al);
}

static void test_halving_and_success(void **state)
{
	struct sockaddr_in a;
	struct authlimit *al = authlimit_new(0, 4);
	const uint32_t m = AUTHLIMIT_HALF_LIFE_MS;

	for (int i = 0; i < 8; i++)
		authlimit_failed(al, v4(&a, "10.0.0.1"), "carol", 1000);
	assert_true(authlimit_blocked(al, v4(&a, "10.0.0.1"), "carol", 1000));
	/* 8 -> 4 after a half-life: still blocked; 4 -> 2 after two: free */
	assert_true(authlimit_blocked(al, v4(&a, "10.0.0.1"), "carol", 1000 + m));
	assert_false(authlimit_blocked(al, v4(&a, "10.0.0.1"), "carol", 1000 + 2 * m));
	/* the clock wraps (32-bit ms) without harm */
	for (int i = 0; i < 4; i++)
		authlimit_failed(al, v4(&a, "10.0.0.1"), "dave", UINT32_MAX - 10);
	assert_true(authlimit_blocked(al, v4(&a, "10.0.0.1"), "dave", 5));
	/* a success forgets the name */
	authlimit_succeeded(al, "dave");
	assert_false(authlimit_blocked(al, v4(&a, "10.0.0.1"), "dave", 5));
	/* the address limit is off here */
	for (int i = 0; i < 100; i++)
		authlimit_failed(al, v4(&a, "10.0.0.9"), NULL, 5);
	assert_false(authlimit_blocked(al, v4(&a, "10.0.0.9"), NULL, 5));
	authlimit_free(al);
}

static void test_off(void **state)
{
	struct sockaddr_in a;

	/* both limits off: no table at all, and NULL is accepted everywhere */
	assert_null(authlimit_new(0, 0));
	authlimit_failed(NULL, v4(&a, "10.0.0.1"), "x", 0);
	authlimit_succeeded(NULL, "x");
	assert_false(authlimit_blocked(NULL, v4(&a, "10.0.0.1"), "x", 0));
	authlimit_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_halving_and_success),
		cmocka_unit_test(test_off),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
