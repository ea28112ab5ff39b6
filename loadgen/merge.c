/*
 * `chatload merge PART.json...`: one report from partial reports.
 */
#include "merge.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opts.h"
#include "stats.h"

enum {
	MERGE_REPORT = 256,
	MERGE_TIMELINE,
	MERGE_EXPECT_DROPS,
	MERGE_EXPECT_LOSS,
	MERGE_EXPECT_NO_SERVER_CLOSE,
	MERGE_QUIET,
	MERGE_HELP,
};

static const struct option merge_long[] = {
	{ "report", required_argument, NULL, MERGE_REPORT },
	{ "timeline", required_argument, NULL, MERGE_TIMELINE },
	{ "expect-zero-drops", no_argument, NULL, MERGE_EXPECT_DROPS },
	{ "expect-zero-loss", no_argument, NULL, MERGE_EXPECT_LOSS },
	{ "expect-no-server-close", no_argument, NULL, MERGE_EXPECT_NO_SERVER_CLOSE },
	{ "quiet", no_argument, NULL, MERGE_QUIET },
	{ "help", no_argument, NULL, MERGE_HELP },
	{ NULL, 0, NULL, 0 },
};

static void merge_usage(FILE *f)
{
	fputs("usage: chatload merge [options] PART.json...\n"
	      "Combines chatload reports of parts of one run (or of runs side by side) into\n"
	      "one: counts summed, histograms merged, per_version and message_pairs merged,\n"
	      "timelines added second by second from each part's start.\n"
	      "\n"
	      "  --report FILE.json        write the merged report there (default: stdout)\n"
	      "  --timeline FILE.csv       write the merged timeline there\n"
	      "  --expect-zero-drops       also expect no drop (like chatload's flags; the\n"
	      "  --expect-zero-loss        parts' own expectations hold for the merged\n"
	      "  --expect-no-server-close  numbers too)\n"
	      "  --quiet                   do not print the violated expectations\n"
	      "  --help\n"
	      "\n"
	      "Exit status: 0 when every part is ok and the merged expectations hold; 1\n"
	      "otherwise (or when the output cannot be written); 2 for bad usage or a file\n"
	      "that is not a chatload report.\n",
	      f);
}

/* Adds the part's servers to the merged settings (the union, in order). */
static void merge_servers(struct load_opts *o, const json_t *servers)
{
	size_t i;
	json_t *v;

	json_array_foreach (servers, i, v) {
		const char *name = json_string_value(v);
		unsigned k;
		if (!name)
			continue;
		for (k = 0; k < o->nservers; k++)
			if (strcmp(o->server_names[k], name) == 0)
				break;
		if (k == o->nservers && o->nservers < OPTS_MAX_SERVERS)
			snprintf(o->server_names[o->nservers++], sizeof(o->server_names[0]), "%s",
				 name);
	}
}

static unsigned merge_uint(const json_t *r, const char *key)
{
	json_t *v = json_object_get(r, key);

	return json_is_integer(v) && json_integer_value(v) > 0 ? (unsigned)json_integer_value(v)
							       : 0;
}

int merge_main(int argc, char **argv)
{
	struct load_opts o;
	struct stats *st = NULL;
	const char *report = NULL, *timeline = NULL;
	unsigned workers = 0, pods = 0, nparts;
	bool quiet = false, parts_ok = true, ok;
	char *domain = NULL;
	json_t *out = NULL;
	int c, rc = 2;

	memset(&o, 0, sizeof(o));
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":", merge_long, NULL)) != -1) {
		switch (c) {
		case MERGE_REPORT:
			report = optarg;
			break;
		case MERGE_TIMELINE:
			timeline = optarg;
			break;
		case MERGE_EXPECT_DROPS:
			o.expect_zero_drops = true;
			break;
		case MERGE_EXPECT_LOSS:
			o.expect_zero_loss = true;
			break;
		case MERGE_EXPECT_NO_SERVER_CLOSE:
			o.expect_no_server_close = true;
			break;
		case MERGE_QUIET:
			quiet = true;
			break;
		case MERGE_HELP:
			merge_usage(stdout);
			return 0;
		case ':':
			fprintf(stderr, "chatload merge: %s needs a value\n", argv[optind - 1]);
			goto usage;
		default:
			fprintf(stderr, "chatload merge: unknown option %s\n", argv[optind - 1]);
			goto usage;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "chatload merge: no report to merge\n");
		goto usage;
	}
	nparts = (unsigned)(argc - optind);
	st = stats_new();
	if (!st) {
		fprintf(stderr, "chatload merge: out of memory\n");
		return 1;
	}
	o.loss_timeout = 0;
	for (int i = optind; i < argc; i++) {
		json_error_t err;
		json_t *r = json_load_file(argv[i], 0, &err), *v;
		if (!r) {
			fprintf(stderr, "chatload merge: %s: %s\n", argv[i], err.text);
			goto out;
		}
		if (!json_is_object(r) || !json_is_string(json_object_get(r, "chatload_version")) ||
		    !json_is_boolean(json_object_get(r, "ok")) ||
		    !json_is_integer(json_object_get(r, "connections"))) {
			fprintf(stderr, "chatload merge: %s: not a chatload report\n", argv[i]);
			json_decref(r);
			goto out;
		}
		if (stats_merge_json(st, r) < 0) {
			fprintf(stderr, "chatload merge: %s: malformed report\n", argv[i]);
			json_decref(r);
			goto out;
		}
		if (!json_is_true(json_object_get(r, "ok")))
			parts_ok = false;
		merge_servers(&o, json_object_get(r, "servers"));
		if (!domain && json_is_string(json_object_get(r, "domain")))
			domain = strdup(json_string_value(json_object_get(r, "domain")));
		o.clients += merge_uint(r, "clients");
		workers += merge_uint(r, "workers");
		pods += merge_uint(r, "pods") ? merge_uint(r, "pods") : 1;
		v = json_object_get(r, "message_rate");
		if (i == optind && json_is_number(v))
			o.message_rate = json_number_value(v);
		v = json_object_get(r, "loss_timeout_s");
		if (json_is_number(v) && json_number_value(v) > o.loss_timeout)
			o.loss_timeout = json_number_value(v);
		json_decref(r);
	}
	o.domain = domain ? domain : "";
	st->parts = nparts;
	ok = stats_expectations_ok(st, &o, quiet ? NULL : stderr) && parts_ok;
	if (!parts_ok && !quiet)
		fprintf(stderr, "chatload merge: a part's report is not ok\n");
	if (st->workers_failed && !quiet)
		fprintf(stderr, "chatload merge: %u workers failed\n", st->workers_failed);
	out = stats_report_json(st, &o);
	if (!out) {
		rc = 1;
		goto out;
	}
	json_object_set_new(out, "parts", json_integer(nparts));
	json_object_set_new(out, "pods", json_integer(pods));
	json_object_set_new(out, "workers", json_integer(workers));
	json_object_set_new(out, "ok", json_boolean(ok));
	rc = ok ? 0 : 1;
	if (report) {
		if (stats_write_json(out, report) < 0) {
			fprintf(stderr, "chatload merge: cannot write report %s\n", report);
			rc = 1;
		}
	} else if (json_dumpf(out, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(6)) < 0 ||
		   fputc('\n', stdout) == EOF || fflush(stdout) != 0) {
		rc = 1;
	}
	if (timeline && stats_write_timeline(st, timeline) < 0) {
		fprintf(stderr, "chatload merge: cannot write timeline %s\n", timeline);
		rc = 1;
	}
out:
	json_decref(out);
	stats_free(st);
	free(domain);
	return rc;
usage:
	fprintf(stderr, "Try 'chatload merge --help'.\n");
	return 2;
}
