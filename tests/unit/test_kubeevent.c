/*
 * Unit tests for the Kubernetes Event body (deployer/kubeevent.c): every
 * field the API server requires of an events.k8s.io/v1 create, the name
 * and time forms, the limits (reason/action 128, note 1 kB cut on a UTF-8
 * boundary), and the uid table used for Events about deleted colours.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "../../deployer/kubeevent.h"

static const char *str(json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

/* 2026-11-27T03:50:00.000123Z */
#define T_US (1795751400LL * 1000000 + 123)

static void test_body_fields(void **state)
{
	struct platform_event ev = { "Normal", "Switched", "Switch",
				     "new connections switched from chat-aaaaaaa (5 connections) "
				     "to chat-bbbbbbb" };
	json_t *b = kubeevent_body("rainbow", "chat-bbbbbbb", "u-1", &ev, "rainbow-host", T_US);
	json_t *md, *reg;

	(void)state;
	assert_non_null(b);
	assert_string_equal(str(b, "apiVersion"), "events.k8s.io/v1");
	assert_string_equal(str(b, "kind"), "Event");
	md = json_object_get(b, "metadata");
	assert_string_equal(str(md, "namespace"), "rainbow");
	/* client-go's naming: object name, a dot, the time in nanoseconds as hex */
	{
		char want[64];

		snprintf(want, sizeof(want), "chat-bbbbbbb.%llx",
			 (unsigned long long)T_US * 1000ULL);
		assert_string_equal(str(md, "name"), want);
	}
	assert_string_equal(str(b, "eventTime"), "2026-11-27T03:50:00.000123Z");
	assert_string_equal(str(b, "reportingController"), "rainbow.chat/rainbow");
	assert_string_equal(str(b, "reportingInstance"), "rainbow-host");
	assert_string_equal(str(b, "action"), "Switch");
	assert_string_equal(str(b, "reason"), "Switched");
	assert_string_equal(str(b, "type"), "Normal");
	assert_string_equal(str(b, "note"), ev.note);
	reg = json_object_get(b, "regarding");
	assert_string_equal(str(reg, "apiVersion"), "apps/v1");
	assert_string_equal(str(reg, "kind"), "Deployment");
	assert_string_equal(str(reg, "namespace"), "rainbow");
	assert_string_equal(str(reg, "name"), "chat-bbbbbbb");
	assert_string_equal(str(reg, "uid"), "u-1");
	/* The deprecated core fields must stay unset on a v1 create. */
	assert_null(json_object_get(b, "deprecatedSource"));
	assert_null(json_object_get(b, "deprecatedCount"));
	assert_null(json_object_get(b, "deprecatedFirstTimestamp"));
	assert_null(json_object_get(b, "series"));
	json_decref(b);

	/* Unknown uid: regarding still names the object. */
	b = kubeevent_body("rainbow", "chat-bbbbbbb", NULL, &ev, "rainbow-host", T_US);
	assert_non_null(b);
	reg = json_object_get(b, "regarding");
	assert_null(json_object_get(reg, "uid"));
	assert_string_equal(str(reg, "name"), "chat-bbbbbbb");
	json_decref(b);
}

static void test_limits(void **state)
{
	struct platform_event ev = { "Warning", NULL, NULL, "" };
	char longf[300], inst[300];
	json_t *b;
	size_t n;

	(void)state;
	memset(longf, 'R', sizeof(longf) - 1);
	longf[sizeof(longf) - 1] = '\0';
	memset(inst, 'i', sizeof(inst) - 1);
	inst[sizeof(inst) - 1] = '\0';
	ev.reason = longf;
	ev.action = longf;
	/* A note that fills the buffer and ends in a 2-byte character cut in two. */
	memset(ev.note, 'x', sizeof(ev.note) - 1);
	ev.note[sizeof(ev.note) - 1] = '\0';
	ev.note[sizeof(ev.note) - 2] = (char)0xC3; /* first byte of U+00E9, its second is gone */
	b = kubeevent_body("rainbow", "chat-aaaaaaa", "u", &ev, inst, T_US);
	assert_non_null(b);
	assert_int_equal(strlen(str(b, "reason")), 128);
	assert_int_equal(strlen(str(b, "action")), 128);
	assert_int_equal(strlen(str(b, "reportingInstance")), 128);
	n = strlen(str(b, "note"));
	assert_true(n <= 1024);
	assert_int_equal(n, sizeof(ev.note) - 2); /* the broken character dropped */
	json_decref(b);

	/* A whole multi-byte character on the cut: kept out whole, never split. */
	memset(ev.note, 'x', sizeof(ev.note) - 1);
	ev.note[sizeof(ev.note) - 1] = '\0';
	ev.note[1021] = (char)0xE2; /* U+20AC at bytes 1021-1023 would straddle 1023 */
	ev.note[1022] = (char)0x82;
	ev.note[1023] = '\0';
	b = kubeevent_body("rainbow", "chat-aaaaaaa", "u", &ev, "i", T_US);
	assert_non_null(b);
	assert_int_equal(strlen(str(b, "note")), 1021);
	json_decref(b);
}

static void test_time(void **state)
{
	char buf[48];

	(void)state;
	kubeevent_time(buf, sizeof(buf), 0);
	assert_string_equal(buf, "1970-01-01T00:00:00.000000Z");
	kubeevent_time(buf, sizeof(buf), 1795751400LL * 1000000 + 999999);
	assert_string_equal(buf, "2026-11-27T03:50:00.999999Z");
}

static void test_instance(void **state)
{
	char buf[KUBEEVENT_INSTANCE_MAX];

	(void)state;
	kubeevent_instance(buf);
	assert_int_equal(strncmp(buf, "rainbow-", 8), 0);
	assert_true(strlen(buf) > 8);
}

static void test_uids(void **state)
{
	struct kubeevent_uids u = { 0 };
	char sha[PLATFORM_SHA_MAX], uid[32];

	(void)state;
	assert_null(kubeevent_uid_get(&u, "aaaaaaa"));
	kubeevent_uid_put(&u, "aaaaaaa", "u-a");
	kubeevent_uid_put(&u, "bbbbbbb", "u-b");
	kubeevent_uid_put(&u, "aaaaaaa", "u-a2"); /* recreated colour: new uid */
	kubeevent_uid_put(&u, "ccccccc", NULL);
	kubeevent_uid_put(&u, "ccccccc", "");
	assert_string_equal(kubeevent_uid_get(&u, "aaaaaaa"), "u-a2");
	assert_string_equal(kubeevent_uid_get(&u, "bbbbbbb"), "u-b");
	assert_null(kubeevent_uid_get(&u, "ccccccc"));
	/* Full: the oldest entries make room, the newest stay. */
	for (int i = 0; i < KUBEEVENT_UIDS; i++) {
		snprintf(sha, sizeof(sha), "%07x", 0x1000000 + i);
		snprintf(uid, sizeof(uid), "u-%d", i);
		kubeevent_uid_put(&u, sha, uid);
	}
	assert_int_equal(u.n, KUBEEVENT_UIDS);
	assert_null(kubeevent_uid_get(&u, "aaaaaaa"));
	snprintf(sha, sizeof(sha), "%07x", 0x1000000 + KUBEEVENT_UIDS - 1);
	snprintf(uid, sizeof(uid), "u-%d", KUBEEVENT_UIDS - 1);
	assert_string_equal(kubeevent_uid_get(&u, sha), uid);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_body_fields), cmocka_unit_test(test_limits),
		cmocka_unit_test(test_time),	    cmocka_unit_test(test_instance),
		cmocka_unit_test(test_uids),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
