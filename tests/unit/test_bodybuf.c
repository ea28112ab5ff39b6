/*
 * Unit tests for deployer/bodybuf.c, the capped response body buffer of
 * every libcurl transfer rainbow makes: the cap is the body's bytes (a
 * body of exactly max is kept, one byte more is refused and marked), the
 * data stays NUL-terminated across growth, the curl callback's answer
 * (n, or 0 to end the transfer), and reset.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "../../deployer/bodybuf.h"

static void test_bodybuf_cap_is_the_body(void **state)
{
	struct bodybuf b = { .max = 8 };

	assert_null(b.data);
	assert_int_equal(bodybuf_append(&b, "abc", 3), 0);
	assert_int_equal(bodybuf_append(&b, "defgh", 5), 0);
	assert_int_equal(b.len, 8);
	assert_string_equal(b.data, "abcdefgh");
	assert_false(b.overflow);
	assert_int_equal(bodybuf_append(&b, "i", 1), -EFBIG);
	assert_true(b.overflow);
	assert_int_equal(b.len, 8);
	assert_string_equal(b.data, "abcdefgh");
	/* a length that would wrap the sum is refused, not wrapped */
	assert_int_equal(bodybuf_append(&b, "x", (size_t)-1), -EFBIG);
	bodybuf_reset(&b);
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	assert_false(b.overflow);
	assert_int_equal(b.max, 8);
}

static void test_bodybuf_grows_terminated(void **state)
{
	struct bodybuf b = { .max = 1u << 20 };
	char chunk[1000];

	for (size_t i = 0; i < 100; i++) {
		memset(chunk, 'a' + (int)(i % 26), sizeof(chunk));
		assert_int_equal(bodybuf_append(&b, chunk, sizeof(chunk)), 0);
		assert_int_equal(b.len, (i + 1) * sizeof(chunk));
		assert_true(b.cap > b.len);
		assert_int_equal(b.data[b.len], '\0');
		assert_int_equal(b.data[i * sizeof(chunk)], 'a' + (int)(i % 26));
	}
	assert_int_equal(strlen(b.data), 100 * sizeof(chunk));
	bodybuf_reset(&b);
}

static void test_bodybuf_curl_write(void **state)
{
	struct bodybuf b = { .max = 10 };
	char data[] = "0123456789ab";

	/* libcurl's size * nmemb: all taken, or 0 to end the transfer */
	assert_int_equal(bodybuf_curl_write(data, 1, 6, &b), 6);
	assert_int_equal(bodybuf_curl_write(data, 2, 2, &b), 4);
	assert_string_equal(b.data, "0123450123");
	assert_int_equal(bodybuf_curl_write(data, 1, 1, &b), 0);
	assert_true(b.overflow);
	bodybuf_reset(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bodybuf_cap_is_the_body),
		cmocka_unit_test(test_bodybuf_grows_terminated),
		cmocka_unit_test(test_bodybuf_curl_write),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
