/*
 * The events.k8s.io/v1 Event body for one of rainbow's decisions (pure).
 */
#include "kubeevent.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Kubernetes' limits for reason and action. */
#define KUBEEVENT_FIELD_MAX 128

void kubeevent_time(char *buf, size_t len, int64_t unix_us)
{
	time_t t = (time_t)(unix_us / 1000000);
	struct tm tm;
	char sec[32];

	gmtime_r(&t, &tm);
	strftime(sec, sizeof(sec), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, len, "%s.%06dZ", sec, (int)(unix_us % 1000000));
}

void kubeevent_instance(char buf[KUBEEVENT_INSTANCE_MAX])
{
	char host[256] = "";

	if (gethostname(host, sizeof(host) - 1) != 0 || !host[0])
		snprintf(host, sizeof(host), "unknown");
	/* Cut to the API's 128 characters (a long FQDN keeps its start). */
	snprintf(buf, KUBEEVENT_INSTANCE_MAX, "rainbow-%.*s", KUBEEVENT_INSTANCE_MAX - 9, host);
}

/*
 * Length of s cut to at most max bytes, never ending inside a UTF-8
 * character (one cut by max, or one already incomplete at the end).
 */
static size_t utf8_cut(const char *s, size_t max)
{
	size_t n = strlen(s), i, need;
	unsigned char lead;

	if (n > max)
		n = max;
	/* Back over continuation bytes to the last character's first byte. */
	for (i = n; i > 0 && ((unsigned char)s[i - 1] & 0xC0) == 0x80; i--)
		;
	if (i == 0)
		return n;
	lead = (unsigned char)s[i - 1];
	need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
	return i - 1 + need > n ? i - 1 : n;
}

/* A JSON string of s cut to max bytes; invalid UTF-8 bytes become '?'. */
static json_t *jstr_cut(const char *s, size_t max)
{
	size_t n = utf8_cut(s ? s : "", max);
	json_t *v = json_stringn(s ? s : "", n);
	char *copy;

	if (v || !n)
		return v;
	copy = strndup(s, n);
	if (!copy)
		return NULL;
	for (char *c = copy; *c; c++)
		if ((unsigned char)*c >= 0x80)
			*c = '?';
	v = json_string(copy);
	free(copy);
	return v;
}

json_t *kubeevent_body(const char *ns, const char *deployment, const char *uid,
		       const struct platform_event *ev, const char *instance, int64_t unix_us)
{
	char name[PLATFORM_NAME_MAX + 32], when[48];
	json_t *regarding, *body;

	snprintf(name, sizeof(name), "%s.%llx", deployment, (unsigned long long)unix_us * 1000ULL);
	kubeevent_time(when, sizeof(when), unix_us);
	regarding = json_pack("{s:s, s:s, s:s, s:s}", "apiVersion", "apps/v1", "kind", "Deployment",
			      "namespace", ns, "name", deployment);
	if (!regarding)
		return NULL;
	if (uid && *uid && json_object_set_new(regarding, "uid", json_string(uid))) {
		json_decref(regarding);
		return NULL;
	}
	/* "o" steals every reference, also when packing fails (a NULL from ENOMEM). */
	body = json_pack("{s:s, s:s, s:{s:s, s:s}, s:s, s:s, s:o, s:o, s:o, s:s, s:o, s:o}",
			 "apiVersion", "events.k8s.io/v1", "kind", "Event", "metadata", "name",
			 name, "namespace", ns, "eventTime", when, "reportingController",
			 KUBEEVENT_CONTROLLER, "reportingInstance", jstr_cut(instance, 128),
			 "action", jstr_cut(ev->action, KUBEEVENT_FIELD_MAX), "reason",
			 jstr_cut(ev->reason, KUBEEVENT_FIELD_MAX), "type", ev->type, "note",
			 jstr_cut(ev->note, PLATFORM_EVENT_NOTE_MAX - 1), "regarding", regarding);
	return body;
}

void kubeevent_uid_put(struct kubeevent_uids *u, const char *sha, const char *uid)
{
	size_t i;

	if (!sha || !uid || !*uid)
		return;
	for (i = 0; i < u->n; i++)
		if (strcmp(u->e[i].sha, sha) == 0)
			break;
	if (i == u->n) {
		if (u->n < KUBEEVENT_UIDS) {
			u->n++;
		} else {
			i = u->next;
			u->next = (u->next + 1) % KUBEEVENT_UIDS;
		}
	}
	snprintf(u->e[i].sha, sizeof(u->e[i].sha), "%s", sha);
	snprintf(u->e[i].uid, sizeof(u->e[i].uid), "%s", uid);
}

const char *kubeevent_uid_get(const struct kubeevent_uids *u, const char *sha)
{
	for (size_t i = 0; i < u->n; i++)
		if (strcmp(u->e[i].sha, sha) == 0)
			return u->e[i].uid;
	return NULL;
}
