/*
 * A small Kubernetes REST client over libcurl's easy API, with jansson for
 * bodies. Synchronous: one request at a time on one reused handle (keep-alive).
 *
 * Error convention: 0 on a 2xx answer, otherwise a negative errno-style code
 * and one sentence in err that says what to do:
 *   -EACCES        401: the credentials were rejected
 *   -EPERM         403: RBAC; the message names the verb, resource, API group
 *                  and namespace the Role lacks
 *   -ENOENT        404: names the resource, object and namespace
 *   -EEXIST        409 AlreadyExists (a create raced or was retried)
 *   -ESTALE        409 Conflict (stale metadata.resourceVersion: re-read, retry)
 *                  or 410 Gone (a watch's resourceVersion expired: re-list)
 *   -EINVAL        400/422 and other 4xx: the API server's message
 *   -EIO           5xx (after the bounded retries)
 *   -ETIMEDOUT     no complete answer in time (after the bounded retries)
 *   -ECONNREFUSED  the API server is unreachable (after the bounded retries)
 *   -EFBIG         the response passed the size cap
 *   -ENOMEM
 * 5xx, 429 and transport failures are retried with exponential backoff
 * (opts.retries extra attempts); other answers are returned at once.
 */
#ifndef RAINBOW_KUBECLIENT_H
#define RAINBOW_KUBECLIENT_H

#include <stddef.h>

#include <jansson.h>

#include "kubeconfig.h"

#define KUBECLIENT_MAX_RESPONSE (16u << 20)
#define KUBECLIENT_MERGE_PATCH "application/merge-patch+json"
#define KUBECLIENT_JSON_PATCH "application/json-patch+json"
#define KUBECLIENT_STRATEGIC_PATCH "application/strategic-merge-patch+json"

struct kubeclient_opts {
	int timeout_ms;		/* whole request, default 30000 */
	int connect_timeout_ms; /* default 5000 */
	int retries;		/* extra attempts on 5xx/429/transport errors, default 4 */
	int backoff_ms;		/* first backoff, doubled per attempt (cap 5 s), default 250 */
	size_t max_response;	/* response body cap, default KUBECLIENT_MAX_RESPONSE */
};

/* What a request acts on, so that errors can name it (RBAC terms). */
struct kubeclient_target {
	const char *verb;     /* get list watch create update patch delete */
	const char *resource; /* "deployments", "services", "pods/proxy", "deployments/scale" */
	const char *group;    /* "" for the core group, "apps" */
	const char *ns;	      /* namespace or NULL */
	const char *name;     /* object name or NULL (collections) */
};

struct kubeclient_result {
	long status;	 /* HTTP status; 0 when no answer arrived */
	json_t *body;	 /* parsed JSON body (owned), or NULL when not JSON */
	char *text;	 /* raw body, NUL-terminated (owned), or NULL */
	size_t len;	 /* bytes in text */
	char reason[48]; /* Status.reason of an error answer ("NotFound"...) or "" */
};

struct kubeclient;

/*
 * Creates a client. kc is moved into the client (the caller's struct is
 * zeroed and must not be freed); opts may be NULL for the defaults.
 */
int kubeclient_new(struct kubeclient **out, struct kubeconfig *kc,
		   const struct kubeclient_opts *opts);
void kubeclient_free(struct kubeclient *c);

/*
 * One request. path starts with "/" (API path plus query). body may be NULL;
 * content_type defaults to application/json when a body is given. res may
 * be NULL; when given, it is filled for every answer, success or not, and
 * must be released with kubeclient_result_free().
 */
int kubeclient_request(struct kubeclient *c, const char *method, const char *path,
		       const char *content_type, json_t *body, const struct kubeclient_target *t,
		       struct kubeclient_result *res, char *err, size_t errlen);

/*
 * kubeclient_request() with one more request header, header a whole
 * "Name: value" line (NULL: none). The header is never logged nor recorded
 * by the dry run (it may carry a secret); the API server's pod proxy passes
 * it on to the pod.
 */
int kubeclient_request_header(struct kubeclient *c, const char *method, const char *path,
			      const char *content_type, json_t *body, const char *header,
			      const struct kubeclient_target *t, struct kubeclient_result *res,
			      char *err, size_t errlen);

void kubeclient_result_free(struct kubeclient_result *res);

/*
 * One watch event; type is ADDED, MODIFIED, DELETED or BOOKMARK (ERROR
 * events are handled by kubeclient_watch). Return 0 to go on, 1 to stop,
 * or a negative code to abort the watch with that code.
 */
typedef int (*kubeclient_watch_cb)(const char *type, json_t *object, void *arg);

/*
 * Streams a watch on the collection at path (no query; label_selector may
 * be NULL) from resource_version. The server ends it after timeout_s; the
 * client ends it when nothing arrived for silence_s (a watch can stop
 * delivering without closing). Returns 1 when the callback stopped it, 0
 * when it ended (timeout, close or silence: the caller re-lists and
 * watches again), -ESTALE on 410 Gone, or an error as kubeclient_request().
 */
int kubeclient_watch(struct kubeclient *c, const char *path, const char *label_selector,
		     const char *resource_version, int timeout_s, int silence_s,
		     kubeclient_watch_cb cb, void *arg, const struct kubeclient_target *t,
		     char *err, size_t errlen);

/*
 * Dry run: with log set (a JSON array, borrowed), every request but GET is
 * not sent but appended to log as {"method", "path", "content_type",
 * "body"}, and answered as a 200 echoing the body. NULL ends it.
 */
void kubeclient_set_dry_run(struct kubeclient *c, json_t *log);
int kubeclient_dry_run(const struct kubeclient *c);

/* Sets the extra attempts of later requests; returns the previous value. */
int kubeclient_set_retries(struct kubeclient *c, int retries);

/* Percent-encodes s for a query value into a new string (NULL on ENOMEM). */
char *kubeclient_escape(const char *s);

#endif
