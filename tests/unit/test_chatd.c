/* Unit tests for chatd's parts that need no sockets: server/config.c
 * (defaults, environment, flags), server/metrics.c (the exposition) and
 * the routing table of server/router.c (addresses: test_addr.c). The delivery
 * rules are tested in test_router.c. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../server/config.h"
#include "unconst.h"
#include "../../server/conn.h"
#include "../../server/metrics.h"
#include "../../server/router.h"
#include "../../server/srv.h"

static const char *const env_names[] = {
	"CHATD_LISTEN",
	"CHATD_DOMAIN",
	"CHATD_AUTH_ANY",
	"CHATD_MAX_STANZA",
	"POD_NAME",
	"CHATD_VERSION",
	"CHATD_INSTANCE",
	"CHATD_LOG_LEVEL",
	"CHATD_TLS_CERT",
	"CHATD_TLS_KEY",
	"CHATD_REQUIRE_TLS",
	"CHATD_USERS",
	"CHATD_VERSION_LABEL",
	"CHATD_DRAIN_TIMEOUT",
};

static int clear_env(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(env_names) / sizeof(env_names[0]); i++)
		unsetenv(env_names[i]);
	return 0;
}

static int load(struct config *cfg, int argc, const char **argv)
{
	/* getopt may permute argv: give it a copy. */
	char *copy[32];

	assert_true(argc < 32);
	for (int i = 0; i < argc; i++)
		copy[i] = unconst(argv[i]);
	copy[argc] = NULL;
	return config_load(cfg, argc, copy);
}

static void test_config_defaults(void **state)
{
	const char *argv[] = { "chatd" };
	struct config cfg;

	(void)state;
	assert_int_equal(load(&cfg, 1, argv), 0);
	assert_string_equal(cfg.listen, "0.0.0.0:5222");
	assert_string_equal(cfg.domain, "localhost");
	assert_int_equal(cfg.max_stanza, 65536);
	assert_int_equal(cfg.ping_interval, 60);
	assert_int_equal(cfg.drain_timeout, 300);
	assert_int_equal(cfg.auth_any, 0);
	assert_int_equal(cfg.log_level, LOG_INFO);
	assert_true(cfg.max_connections >= 1);
}

static void test_config_env_and_flags(void **state)
{
	const char *argv[] = { "chatd", "--domain",    "flag.test", "--max-stanza",
			       "4096",	"--log-level", "debug" };
	struct config cfg;

	(void)state;
	setenv("CHATD_DOMAIN", "env.test", 1);
	setenv("CHATD_LISTEN", "127.0.0.1:6000", 1);
	setenv("CHATD_AUTH_ANY", "true", 1);
	setenv("POD_NAME", "chat-abc-1", 1);
	setenv("CHATD_VERSION", "v-env", 1);
	assert_int_equal(load(&cfg, 7, argv), 0);
	assert_string_equal(cfg.domain, "flag.test"); /* the flag wins */
	assert_string_equal(cfg.listen, "127.0.0.1:6000");
	assert_int_equal(cfg.auth_any, 1);
	assert_string_equal(cfg.instance, "chat-abc-1");
	assert_string_equal(cfg.version_label, "v-env");
	assert_int_equal(cfg.max_stanza, 4096);
	assert_int_equal(cfg.log_level, LOG_DEBUG);
	/* CHATD_INSTANCE names the flag itself and beats POD_NAME. */
	setenv("CHATD_INSTANCE", "explicit", 1);
	assert_int_equal(load(&cfg, 1, argv), 0);
	assert_string_equal(cfg.instance, "explicit");
	clear_env(NULL);
}

static void test_config_bool_forms(void **state)
{
	const char *on[] = { "chatd", "--auth-any" };
	const char *off[] = { "chatd", "--auth-any=0" };
	struct config cfg;

	(void)state;
	assert_int_equal(load(&cfg, 2, on), 0);
	assert_int_equal(cfg.auth_any, 1);
	assert_int_equal(load(&cfg, 2, off), 0);
	assert_int_equal(cfg.auth_any, 0);
	setenv("CHATD_AUTH_ANY", "maybe", 1);
	assert_int_equal(load(&cfg, 1, on), 2);
	clear_env(NULL);
}

/* Durations like rainbow's and chatload's: "10s" was "bad value". */
static void test_config_durations(void **state)
{
	const char *argv[] = { "chatd", "--ping-interval", "10s", "--auth-timeout",
			       "2m",	"--drain-timeout", "1h",  "--ping-timeout",
			       "45",	"--http-timeout",  "5s" };
	const char *frac[] = { "chatd", "--ping-interval", "1.5s" };
	const char *ms[] = { "chatd", "--drain-timeout", "500ms" };
	const char *junk[] = { "chatd", "--auth-timeout", "10 s" };
	struct config cfg;

	(void)state;
	assert_int_equal(load(&cfg, 11, argv), 0);
	assert_int_equal(cfg.ping_interval, 10);
	assert_int_equal(cfg.auth_timeout, 120);
	assert_int_equal(cfg.drain_timeout, 3600);
	assert_int_equal(cfg.ping_timeout, 45);
	assert_int_equal(cfg.http_timeout, 5);
	setenv("CHATD_DRAIN_TIMEOUT", "10m", 1);
	assert_int_equal(load(&cfg, 1, argv), 0);
	assert_int_equal(cfg.drain_timeout, 600);
	clear_env(NULL);
	/* Whole seconds only: a fraction is refused, not rounded. */
	assert_int_equal(load(&cfg, 3, frac), 2);
	assert_int_equal(load(&cfg, 3, ms), 2);
	assert_int_equal(load(&cfg, 3, junk), 2);
}

static void test_config_errors(void **state)
{
	const char *bad_num[] = { "chatd", "--max-stanza", "12x" };
	const char *neg[] = { "chatd", "--ping-timeout", "-1" };
	const char *unknown[] = { "chatd", "--no-such-flag" };
	const char *extra[] = { "chatd", "stray" };
	const char *half_tls[] = { "chatd", "--tls-cert", "c.pem" };
	const char *req_tls[] = { "chatd", "--require-tls" };
	const char *both[] = { "chatd", "--auth-any", "--users", "u.txt" };
	const char *tiny[] = { "chatd", "--max-stanza", "10" };
	const char *level[] = { "chatd", "--log-level", "loud" };
	struct config cfg;

	(void)state;
	assert_int_equal(load(&cfg, 3, bad_num), 2);
	assert_int_equal(load(&cfg, 3, neg), 2);
	assert_int_equal(load(&cfg, 2, unknown), 2);
	assert_int_equal(load(&cfg, 2, extra), 2);
	assert_int_equal(load(&cfg, 3, half_tls), 2);
	assert_int_equal(load(&cfg, 2, req_tls), 2);
	assert_int_equal(load(&cfg, 4, both), 2);
	assert_int_equal(load(&cfg, 3, tiny), 2);
	assert_int_equal(load(&cfg, 3, level), 2);
}

static void test_metrics_format(void **state)
{
	struct metrics m;
	char buf[32768];
	long n;

	(void)state;
	memset(&m, 0, sizeof(m));
	m.connections = 3;
	m.sessions = 2;
	m.accepted_total = 10;
	m.closed_total[CLOSE_CLIENT] = 5;
	m.closed_total[CLOSE_POLICY_VIOLATION] = 2;
	m.draining = 1;
	n = metrics_format(&m, 0, "v\"1", "pod\\a\nb", buf, sizeof(buf));
	assert_true(n > 0 && (size_t)n < sizeof(buf));
	assert_int_equal(strlen(buf), (size_t)n);
	assert_non_null(strstr(buf, "# TYPE chatd_connections gauge\nchatd_connections 3\n"));
	assert_non_null(strstr(buf, "\nchatd_sessions 2\n"));
	assert_non_null(strstr(buf, "\nchatd_connections_accepted_total 10\n"));
	assert_non_null(strstr(buf, "chatd_connections_closed_total{reason=\"client\"} 5\n"));
	assert_non_null(
		strstr(buf, "chatd_connections_closed_total{reason=\"policy-violation\"} 2\n"));
	/* every reason is present, zero or not */
	assert_non_null(
		strstr(buf, "chatd_connections_closed_total{reason=\"system-shutdown\"} 0\n"));
	assert_non_null(
		strstr(buf, "chatd_build_info{version=\"v\\\"1\",instance=\"pod\\\\a\\nb\"} 1\n"));
	assert_non_null(strstr(buf, "\nchatd_draining 1\n"));
	/* uptime from start_ms to now, in seconds */
	m.start_ms = 1000;
	n = metrics_format(&m, 62500, "v", "i", buf, sizeof(buf));
	assert_true(n > 0);
	assert_non_null(strstr(buf, "\nchatd_uptime_seconds 61.500\n"));
	/* the lifetime histogram and the age buckets follow */
	assert_non_null(strstr(buf, "\nchatd_connection_duration_seconds_count 0\n"));
	assert_non_null(strstr(buf, "\nchatd_connection_age_seconds_bucket{le=\"+Inf\"} 0\n"));
	/* too small a buffer is an error, not a truncated page */
	assert_int_equal(metrics_format(&m, 0, "v", "i", buf, 100), -ENOSPC);
	assert_int_equal(metrics_format(&m, 0, "v", "i", buf, (size_t)n - 40), -ENOSPC);
	/* every counter at its widest still fits the HTTP handler's 32 KiB with
	 * room for the cluster's metrics */
	memset(&m, 0xff, sizeof(m));
	m.life.oldest = m.life.newest = NULL;
	memset(m.life.cursor, 0, sizeof(m.life.cursor));
	n = metrics_format(&m, 0, "v", "i", buf, sizeof(buf));
	assert_true(n > 0 && n < 30720);
}

static void test_close_reasons(void **state)
{
	(void)state;
	assert_string_equal(close_reason_name(CLOSE_CLIENT), "client");
	assert_string_equal(close_reason_name(CLOSE_RESET), "reset");
	for (int r = CLOSE_BAD_FORMAT; r < CLOSE_REASON_COUNT; r++)
		assert_int_equal(
			close_reason_from_condition(close_reason_name((enum close_reason)r)), r);
	assert_int_equal(close_reason_from_condition("see-other-host"), CLOSE_SEE_OTHER_HOST);
	/* a condition chatd never sends */
	assert_int_equal(close_reason_from_condition("gone"), CLOSE_BAD_FORMAT);
}

/* ---------------------------------------------------------------- router */

static struct srv test_srv; /* large (shared buffers): not on the stack */

static struct conn *session(const char *node, const char *res)
{
	struct conn *c = calloc(1, sizeof(*c));

	assert_non_null(c);
	c->srv = &test_srv;
	assert_int_equal(jid_set(&c->jid, node, "example.test", res), 0);
	return c;
}

static void test_router_table(void **state)
{
	struct conn *a1, *a2, *b, *dup, *old;
	struct router *r;
	struct jid j = { 0 };
	struct route *e;
	char name[32];

	(void)state;
	memset(&test_srv, 0, sizeof(test_srv));
	r = router_new(&test_srv);
	assert_non_null(r);
	a1 = session("alice", "one");
	a2 = session("alice", "two");
	b = session("bob", "x");
	assert_int_equal(router_add(r, a1, &old), 0);
	assert_null(old);
	assert_int_equal(router_add(r, a2, &old), 0);
	assert_null(old);
	assert_int_equal(router_add(r, b, &old), 0);
	assert_int_equal(test_srv.metrics.sessions, 3);
	e = router_lookup(r, "alice@example.test");
	assert_non_null(e);
	assert_int_equal(e->count, 2);
	assert_null(router_lookup(r, "carol@example.test"));
	assert_int_equal(jid_parse("ALICE@example.test/two", &j), 0);
	assert_ptr_equal(router_find_full(r, &j), a2);
	jid_clear(&j);
	assert_int_equal(jid_parse("alice@example.test/three", &j), 0);
	assert_null(router_find_full(r, &j));
	jid_clear(&j);
	/* the same full JID again: the old session is reported for <conflict/> */
	dup = session("alice", "one");
	assert_int_equal(router_add(r, dup, &old), 0);
	assert_ptr_equal(old, a1);
	router_remove(r, old);
	assert_int_equal(jid_parse("alice@example.test/one", &j), 0);
	assert_ptr_equal(router_find_full(r, &j), dup);
	jid_clear(&j);
	/* removing every session of a user removes the user */
	router_remove(r, dup);
	router_remove(r, a2);
	router_remove(r, a2); /* idempotent */
	assert_null(router_lookup(r, "alice@example.test"));
	assert_non_null(router_lookup(r, "bob@example.test"));
	assert_int_equal(test_srv.metrics.sessions, 1);
	/* many users: the table grows and still finds everyone */
	struct conn **many = calloc(5000, sizeof(*many));
	assert_non_null(many);
	for (int i = 0; i < 5000; i++) {
		snprintf(name, sizeof(name), "u%d", i);
		many[i] = session(name, "r");
		assert_int_equal(router_add(r, many[i], &old), 0);
	}
	for (int i = 0; i < 5000; i += 37) {
		snprintf(name, sizeof(name), "u%d@example.test", i);
		e = router_lookup(r, name);
		assert_non_null(e);
		assert_ptr_equal(e->first, many[i]);
	}
	for (int i = 0; i < 5000; i++) {
		router_remove(r, many[i]);
		jid_clear(&many[i]->jid);
		free(many[i]);
	}
	free(many);
	router_remove(r, b);
	assert_int_equal(test_srv.metrics.sessions, 0);
	assert_null(router_lookup(r, "bob@example.test"));
	router_free(r);
	jid_clear(&a1->jid);
	jid_clear(&a2->jid);
	jid_clear(&b->jid);
	jid_clear(&dup->jid);
	free(a1);
	free(a2);
	free(b);
	free(dup);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_config_defaults, clear_env),
		cmocka_unit_test_setup(test_config_env_and_flags, clear_env),
		cmocka_unit_test_setup(test_config_bool_forms, clear_env),
		cmocka_unit_test_setup(test_config_durations, clear_env),
		cmocka_unit_test_setup(test_config_errors, clear_env),
		cmocka_unit_test(test_metrics_format),
		cmocka_unit_test(test_close_reasons),
		cmocka_unit_test(test_router_table),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
