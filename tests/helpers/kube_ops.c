/*
 * kube_ops: drives the Kubernetes platform's operations table one call at a
 * time, so the integration tests can check each op (and each error path)
 * against the API double without the rest of rainbow.
 *
 *   kube_ops [--kubeconfig F] [--context C] [--namespace NS] [-P KEY=VALUE]...
 *            OP [ARGS]
 *   OP: list | lists N (list N times in one process, prints the last) |
 *       create SHA N | replicas SHA | select SHA|- | selected |
 *       remove SHA | scale SHA N | remove-replica SHA POD |
 *       meta SHA KEY [VALUE] | event SHA TYPE REASON ACTION NOTE |
 *       move SHA POD COUNT |
 *       yaml2json FILE (no API call: kubeyaml only)
 *
 * Prints the result as one JSON line on stdout; on failure prints
 * "error <code> <ERRNO NAME>: <message>" on stderr and exits 1 (2: usage).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "../../deployer/kube.h"
#include "../../deployer/kubeyaml.h"
#include "log.h"

#define KUBE_OPS_MAX_EXTRA 32

static const char *errname(int rc)
{
	switch (-rc) {
	case ENOENT:
		return "ENOENT";
	case EEXIST:
		return "EEXIST";
	case EACCES:
		return "EACCES";
	case ETIMEDOUT:
		return "ETIMEDOUT";
	case ECONNREFUSED:
		return "ECONNREFUSED";
	case EIO:
		return "EIO";
	case EINVAL:
		return "EINVAL";
	case EBUSY:
		return "EBUSY";
	case ENOMEM:
		return "ENOMEM";
	case ENOSPC:
		return "ENOSPC";
	case ENOTSUP:
		return "ENOTSUP";
	default:
		return "E?";
	}
}

static json_t *colour_json(const struct platform_colour *c)
{
	json_t *meta = json_object();

	for (size_t i = 0; i < c->n_meta; i++)
		json_object_set_new(meta, c->meta[i].key, json_string(c->meta[i].value));
	return json_pack("{s:s, s:i, s:i, s:b, s:I, s:o}", "sha", c->sha, "replicas", c->replicas,
			 "ready", c->ready, "selected", c->selected, "created",
			 (json_int_t)c->created, "meta", meta);
}

static int run(struct platform *p, int argc, char **argv, json_t **out)
{
	const char *op = argv[0];
	int rc;

	if (!strcmp(op, "list") && argc == 1) {
		struct platform_colour *cs = NULL;
		size_t n = 0;

		rc = p->ops->list(p, &cs, &n);
		if (!rc) {
			*out = json_array();
			for (size_t i = 0; i < n; i++)
				json_array_append_new(*out, colour_json(&cs[i]));
		}
		free(cs);
		return rc;
	}
	if (!strcmp(op, "lists") && argc == 2) {
		char *one[] = { "list" };

		for (int k = atoi(argv[1]); k > 0; k--) {
			json_decref(*out);
			*out = NULL;
			rc = run(p, 1, one, out);
			if (rc)
				return rc;
		}
		return 0;
	}
	if (!strcmp(op, "create") && argc == 3)
		return p->ops->create(p, argv[1], atoi(argv[2]));
	if (!strcmp(op, "replicas") && argc == 2) {
		struct platform_replica *rs = NULL;
		size_t n = 0;

		rc = p->ops->replicas(p, argv[1], &rs, &n);
		if (!rc) {
			*out = json_array();
			for (size_t i = 0; i < n; i++)
				json_array_append_new(
					*out,
					json_pack("{s:s, s:b, s:I, s:i, s:f, s:i, s:f}", "name",
						  rs[i].name, "ready", rs[i].ready, "connections",
						  (json_int_t)rs[i].connections, "lifetimes_n",
						  rs[i].lifetimes.n, "lifetimes_count",
						  rs[i].lifetimes.n >= 0
							  ? rs[i].lifetimes.cum[rs[i].lifetimes.n]
							  : -1.0,
						  "ages_n", rs[i].ages.n, "ages_count",
						  rs[i].ages.n >= 0 ? rs[i].ages.cum[rs[i].ages.n]
								    : -1.0));
		}
		free(rs);
		return rc;
	}
	if (!strcmp(op, "select") && argc == 2)
		return p->ops->select(p, strcmp(argv[1], "-") ? argv[1] : NULL);
	if (!strcmp(op, "selected") && argc == 1) {
		char sha[PLATFORM_SHA_MAX];

		rc = p->ops->selected(p, sha);
		if (!rc)
			*out = json_pack("{s:s}", "selected", sha);
		return rc;
	}
	if (!strcmp(op, "remove") && argc == 2)
		return p->ops->remove(p, argv[1]);
	if (!strcmp(op, "scale") && argc == 3)
		return p->ops->scale(p, argv[1], atoi(argv[2]));
	if (!strcmp(op, "remove-replica") && argc == 3)
		return p->ops->remove_replica(p, argv[1], argv[2]);
	if (!strcmp(op, "meta") && (argc == 3 || argc == 4))
		return p->ops->meta_set(p, argv[1], argv[2], argc == 4 ? argv[3] : NULL);
	if (!strcmp(op, "event") && argc == 6) {
		struct platform_event ev = { argv[2], argv[3], argv[4], "" };

		snprintf(ev.note, sizeof(ev.note), "%s", argv[5]);
		return p->ops->event(p, argv[1], &ev);
	}
	if (!strcmp(op, "move") && argc == 4) {
		int moved = 0;

		if (!p->ops->move)
			return platform_error(p, -ENOTSUP, "no move op");
		rc = p->ops->move(p, argv[1], argv[2], atoi(argv[3]), &moved);
		if (!rc)
			*out = json_pack("{s:i}", "moved", moved);
		return rc;
	}
	return 1;
}

int main(int argc, char **argv)
{
	struct platform_kv extra[KUBE_OPS_MAX_EXTRA];
	struct platform_opts o = { 0 };
	struct platform p = { 0 };
	json_t *out = NULL;
	int i, rc;

	log_init("kube_ops", getenv("KUBE_OPS_DEBUG") ? LOG_DEBUG : LOG_WARN);
	for (i = 1; i < argc && argv[i][0] == '-' && argv[i][1]; i += 2) {
		if (i + 1 >= argc)
			goto usage;
		if (!strcmp(argv[i], "--kubeconfig")) {
			o.kubeconfig = argv[i + 1];
		} else if (!strcmp(argv[i], "--context")) {
			o.context = argv[i + 1];
		} else if (!strcmp(argv[i], "--namespace")) {
			o.namespace = argv[i + 1];
		} else if (!strcmp(argv[i], "-P") && strchr(argv[i + 1], '=') &&
			   o.n_extra < KUBE_OPS_MAX_EXTRA) {
			char *eq = strchr(argv[i + 1], '=');

			snprintf(extra[o.n_extra].key, sizeof(extra[0].key), "%.*s",
				 (int)(eq - argv[i + 1]), argv[i + 1]);
			snprintf(extra[o.n_extra].value, sizeof(extra[0].value), "%s", eq + 1);
			o.n_extra++;
		} else {
			goto usage;
		}
	}
	o.extra = extra;
	if (i >= argc)
		goto usage;
	if (!strcmp(argv[i], "yaml2json") && i + 2 == argc) {
		char err[256];
		json_t *j = kubeyaml_load_file(argv[i + 1], err, sizeof(err));
		char *s;

		if (!j) {
			fprintf(stderr, "error: %s\n", err);
			return 1;
		}
		s = json_dumps(j, JSON_COMPACT);
		printf("%s\n", s ? s : "null");
		free(s);
		json_decref(j);
		return 0;
	}
	p.ops = kube_platform_ops();
	rc = p.ops->open(&p, &o);
	if (!rc) {
		rc = run(&p, argc - i, argv + i, &out);
		if (rc == 1) {
			p.ops->close(&p);
			goto usage;
		}
	}
	p.ops->close(&p);
	if (rc) {
		fprintf(stderr, "error %d %s: %s\n", rc, errname(rc), p.err);
		return 1;
	}
	if (out) {
		char *s = json_dumps(out, JSON_COMPACT);

		printf("%s\n", s ? s : "null");
		free(s);
		json_decref(out);
	} else {
		printf("{\"ok\":true}\n");
	}
	return 0;
usage:
	fprintf(stderr, "usage: kube_ops [--kubeconfig F] [--context C] [--namespace NS] "
			"[-P KEY=VALUE]... OP [ARGS]\n");
	return 2;
}
