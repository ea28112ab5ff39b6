/*
 * Kubernetes Events for rainbow's decisions: the events.k8s.io/v1 Event that
 * tells one platform_event (platform.h) regarding a colour's Deployment, so
 * that `kubectl describe deployment chat-<sha>` and `kubectl get events
 * --field-selector involvedObject.name=chat-<sha>` tell the deploy's story.
 * Pure (no I/O): deployer/kube_platform.c posts the body.
 *
 * An Event created through events.k8s.io/v1 must carry (API server
 * validation, else 422): metadata.name (a DNS subdomain), eventTime,
 * reportingController (a qualified name), reportingInstance (<= 128),
 * action and reason (1-128 each), type Normal or Warning, note <= 1 kB, and
 * none of the deprecated* fields. regarding.uid is what `kubectl describe`
 * selects on, next to name, namespace and kind.
 */
#ifndef RAINBOW_KUBEEVENT_H
#define RAINBOW_KUBEEVENT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "platform.h"

#define KUBEEVENT_CONTROLLER "rainbow.chat/rainbow"
#define KUBEEVENT_INSTANCE_MAX 129 /* 128 + NUL */
#define KUBEEVENT_UID_MAX 64
#define KUBEEVENT_UIDS 64

/*
 * The Event body for ev regarding Deployment `deployment` (uid may be NULL
 * when unknown) in namespace ns, observed at unix_us (microseconds). Its
 * name is "<deployment>.<unix nanoseconds in hex>", as client-go names
 * Events: the caller gives strictly increasing times to keep names unique.
 * Fields longer than the API allows are cut (the note on a UTF-8 character
 * boundary). NULL on ENOMEM.
 */
json_t *kubeevent_body(const char *ns, const char *deployment, const char *uid,
		       const struct platform_event *ev, const char *instance, int64_t unix_us);

/* eventTime's MicroTime form: "2026-11-27T03:50:00.123456Z". */
void kubeevent_time(char *buf, size_t len, int64_t unix_us);

/* reportingInstance: "rainbow-<hostname>" (the pod name in a Job), cut to 128. */
void kubeevent_instance(char buf[KUBEEVENT_INSTANCE_MAX]);

/*
 * The uids of the Deployments seen by the last lists, so that an Event about
 * a colour deleted a moment ago still regards the right object. A small
 * table; the oldest entry makes room.
 */
struct kubeevent_uids {
	size_t n, next;
	struct {
		char sha[PLATFORM_SHA_MAX];
		char uid[KUBEEVENT_UID_MAX];
	} e[KUBEEVENT_UIDS];
};

void kubeevent_uid_put(struct kubeevent_uids *u, const char *sha, const char *uid);
/* The uid last put for sha, or NULL. */
const char *kubeevent_uid_get(const struct kubeevent_uids *u, const char *sha);

#endif
