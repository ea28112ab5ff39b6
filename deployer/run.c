/*
 * The deploy driver. Platform errors during a step are reported and the
 * step is retried at the next poll (the state machine decides again from
 * what is really there); only a run of consecutive failures gives up.
 */
#include "run.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "forecast.h"
#include "log.h"

#define RUN_MAX_ERRORS 20
#define RUN_READY_POLL_MS 50

int64_t run_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void run_obs_free(struct run_obs *ro)
{
	for (size_t i = 0; i < ro->n; i++)
		free(ro->reps[i]);
	free(ro->reps);
	free(ro->colours);
	memset(ro, 0, sizeof(*ro));
}

int run_observe(struct platform *p, struct run_obs *ro)
{
	struct platform_colour *cols = NULL;
	size_t n = 0;
	int rc;

	memset(ro, 0, sizeof(*ro));
	rc = p->ops->list(p, &cols, &n);
	if (rc < 0)
		return rc;
	ro->colours = calloc(n ? n : 1, sizeof(*ro->colours));
	ro->reps = calloc(n ? n : 1, sizeof(*ro->reps));
	if (!ro->colours || !ro->reps) {
		free(cols);
		run_obs_free(ro);
		return platform_error(p, -ENOMEM, "out of memory");
	}
	ro->n = n;
	ro->obs.now_ms = run_now_ms();
	for (size_t i = 0; i < n; i++) {
		struct deploy_colour_obs *c = &ro->colours[i];
		size_t nr = 0;

		c->c = cols[i];
		if (cols[i].selected)
			snprintf(ro->obs.selected, sizeof(ro->obs.selected), "%s", cols[i].sha);
		rc = p->ops->replicas(p, cols[i].sha, &ro->reps[i], &nr);
		if (rc == -ENOENT) {
			/* Removed between list and now: observe it as having no replica. */
			nr = 0;
			rc = 0;
		}
		if (rc < 0) {
			free(cols);
			run_obs_free(ro);
			return rc;
		}
		c->rep = ro->reps[i];
		c->n_rep = nr;
	}
	free(cols);
	ro->obs.n = n;
	ro->obs.colours = ro->colours;
	return 0;
}

static void append_line(const char *state_dir, const char *file, const char *line,
			const char *header)
{
	char path[4096];
	int fd;
	off_t end;

	static int warned; /* once per process: a full disk would say it every poll */
	ssize_t n;

	snprintf(path, sizeof(path), "%s/%s", state_dir, file);
	fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0) {
		if (!warned++)
			log_warn("write-failed", "file=%s err=\"%s\"", path, strerror(errno));
		return;
	}
	end = lseek(fd, 0, SEEK_END);
	if (end == 0 && header && write(fd, header, strlen(header)) < 0 && !warned++)
		log_warn("write-failed", "file=%s err=\"%s\"", path, strerror(errno));
	/* One write per line: O_APPEND keeps concurrent writers' lines whole. */
	n = write(fd, line, strlen(line));
	if (n != (ssize_t)strlen(line) && !warned++)
		log_warn("write-failed", "file=%s err=\"%s\"", path,
			 strerror(n < 0 ? errno : ENOSPC));
	close(fd);
}

void run_timeline(const char *state_dir, const struct run_obs *ro)
{
	char line[8192];
	size_t off = 0;

	for (size_t i = 0; i < ro->n && off < sizeof(line) - 200; i++) {
		const struct deploy_colour_obs *c = &ro->colours[i];

		enum deploy_state st = deploy_colour_state(c, ro->obs.selected);

		off += (size_t)snprintf(line + off, sizeof(line) - off,
					"%" PRId64 ".%03d,%s,%ld,%s\n", ro->obs.now_ms / 1000,
					(int)(ro->obs.now_ms % 1000), c->c.sha,
					deploy_colour_connections(c), deploy_state_name(st));
	}
	if (off)
		append_line(state_dir, "timeline.csv", line, "time,sha,connections,state\n");
}

void run_record(const char *state_dir, json_t *event)
{
	char *s;
	size_t n;

	if (!json_object_get(event, "t"))
		json_object_set_new(event, "t", json_real((double)run_now_ms() / 1000.0));
	s = json_dumps(event, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(15));
	json_decref(event);
	if (!s)
		return;
	n = strlen(s);
	{
		char *line = malloc(n + 2);

		if (line) {
			memcpy(line, s, n);
			line[n] = '\n';
			line[n + 1] = '\0';
			append_line(state_dir, "record.jsonl", line, NULL);
			free(line);
		}
	}
	free(s);
}

/* Milliseconds are plenty: a forecast is no more precise than a poll. */
static json_t *num_or_null(double v)
{
	return v >= 0 ? json_real(round(v * 1000) / 1000) : json_null();
}

json_t *run_forecast_json(const struct forecast *f, int with_curve)
{
	json_t *o = json_object();

	json_object_set_new(o, "eta_s", num_or_null(f->ok ? f->eta_s : -1));
	json_object_set_new(o, "eta_p90_s", num_or_null(f->eta_p90_s));
	json_object_set_new(o, "t50_s", num_or_null(f->t50_s));
	json_object_set_new(o, "t90_s", num_or_null(f->t90_s));
	json_object_set_new(o, "t99_s", num_or_null(f->t99_s));
	json_object_set_new(o, "note", f->note[0] ? json_string(f->note) : json_null());
	if (with_curve && f->n_curve) {
		json_t *c = json_array();

		for (size_t i = 0; i < f->n_curve; i++)
			json_array_append_new(c,
					      json_pack("[f,f]", f->curve_t[i], f->curve_frac[i]));
		json_object_set_new(o, "curve", c);
	}
	return o;
}

const char *run_forecast_text(const struct forecast *f, char *buf, size_t len)
{
	double s = f->eta_s;

	if (!f->ok)
		snprintf(buf, len, "? left");
	else if (s < 60)
		snprintf(buf, len, "~%.0fs left", s);
	else if (s < 3600)
		snprintf(buf, len, "~%.0fm%02.0fs left", floor(s / 60), floor(fmod(s, 60)));
	else
		snprintf(buf, len, "~%.0fh%02.0fm left", floor(s / 3600), floor(fmod(s / 60, 60)));
	return buf;
}

const char *run_exit_class(int code)
{
	static const char *const names[] = { "",	"failed",    "usage",	"platform",
					     "denied",	"not-ready", "gave-up", "locked",
					     "timeout", "no-target" };

	return code >= 0 && (size_t)code < sizeof(names) / sizeof(names[0]) ? names[code]
									    : "failed";
}

int run_exit_for_error(int rc)
{
	return rc == -EACCES || rc == -EPERM ? RUN_EXIT_DENIED : RUN_EXIT_PLATFORM;
}

void run_report_failure(json_t *report, int code, const char *reason)
{
	if (!report || json_object_get(report, "failure"))
		return;
	json_object_set_new(report, "failure",
			    json_pack("{s:s,s:s}", "class", run_exit_class(code), "reason",
				      reason ? reason : ""));
}

json_t *run_colours_json(const struct run_obs *ro)
{
	json_t *arr = json_array();

	for (size_t i = 0; i < ro->n; i++) {
		const struct deploy_colour_obs *c = &ro->colours[i];
		int ready = 0;

		for (size_t k = 0; k < c->n_rep; k++)
			ready += c->rep[k].ready != 0;
		json_array_append_new(
			arr, json_pack("{s:s,s:s,s:i,s:i,s:I}", "sha", c->c.sha, "state",
				       deploy_state_name(deploy_colour_state(c, ro->obs.selected)),
				       "replicas", c->c.replicas, "ready", ready, "connections",
				       (json_int_t)deploy_colour_connections(c)));
	}
	return arr;
}

/* ---- decisions as events ---- */

static void ev_put(struct platform_event *ev, size_t *n, const char *type, const char *reason,
		   const char *action, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* Appends one event to ev (the caller keeps *n under RUN_EVENTS_MAX). */
static void ev_put(struct platform_event *ev, size_t *n, const char *type, const char *reason,
		   const char *action, const char *fmt, ...)
{
	struct platform_event *e = &ev[(*n)++];
	va_list ap;

	e->type = type;
	e->reason = reason;
	e->action = action;
	va_start(ap, fmt);
	vsnprintf(e->note, sizeof(e->note), fmt, ap);
	va_end(ap);
}

/* "57 connections", "1 connection", "an unreadable number of connections". */
static const char *conns_text(char *buf, size_t len, long n)
{
	if (n < 0)
		snprintf(buf, len, "an unreadable number of connections");
	else
		snprintf(buf, len, "%ld connection%s", n, n == 1 ? "" : "s");
	return buf;
}

static void drained_event(const struct deploy_cfg *cfg, const struct deploy_colour_obs *c,
			  const struct deploy_act *a, struct platform_event *ev, size_t *n)
{
	const char *from = c ? platform_meta_get(&c->c, PLATFORM_META_DRAIN_FROM) : NULL;
	char fb[48];

	ev_put(ev, n, "Normal", "Drained", "Drain",
	       "drained in %.1fs (%s at the switch): 0 connections for the settle period "
	       "(%.1fs)",
	       (double)a->drain_ms / 1000.0,
	       from ? conns_text(fb, sizeof(fb), atol(from)) : "count unknown",
	       (double)cfg->settle_ms / 1000.0);
}

size_t run_action_events(const struct deploy_cfg *cfg, const struct deploy_obs *obs,
			 const struct deploy_act *a, int64_t waited_ms,
			 struct platform_event ev[RUN_EVENTS_MAX])
{
	const struct deploy_colour_obs *c = deploy_obs_find(obs, a->sha), *old;
	long conns = c ? deploy_colour_connections(c) : -1;
	char cb[48], fb[48];
	size_t n = 0;
	int64_t ds;

	switch (a->kind) {
	case DEPLOY_ACT_CREATE:
		ev_put(ev, &n, "Normal", "Created", "Create", "created chat-%s with %d replica%s",
		       a->sha, a->replicas, a->replicas == 1 ? "" : "s");
		break;
	case DEPLOY_ACT_SCALE:
		if (a->why == DEPLOY_WHY_DRAINED) {
			drained_event(cfg, c, a, ev, &n);
			ev_put(ev, &n, "Normal", "Kept", "Scale",
			       "scaled from %d to 0 replicas and kept for rollback "
			       "(--keep-drained %d)",
			       c ? c->c.replicas : -1, cfg->keep_drained);
		} else {
			ev_put(ev, &n, "Normal", "ScaledUp", "Scale",
			       "%sscaled from %d to %d replica%s",
			       a->why == DEPLOY_WHY_ROLLBACK ? "rollback: kept colour " : "",
			       c ? c->c.replicas : 0, a->replicas, a->replicas == 1 ? "" : "s");
		}
		break;
	case DEPLOY_ACT_SELECT:
		old = obs->selected[0] ? deploy_obs_find(obs, obs->selected) : NULL;
		if (waited_ms >= 0 && c)
			ev_put(ev, &n, "Normal", "Ready", "Wait",
			       "%d of %d replicas ready after %.1fs", c->c.ready, c->c.replicas,
			       (double)waited_ms / 1000.0);
		if (!obs->selected[0])
			snprintf(fb, sizeof(fb), "nothing");
		else
			snprintf(fb, sizeof(fb), "chat-%s", obs->selected);
		ev_put(ev, &n, "Normal",
		       cfg->mode == DEPLOY_MODE_ROLLBACK ? "RolledBack" : "Switched", "Switch",
		       "%snew connections switched from %s%s%s%s to chat-%s",
		       cfg->mode == DEPLOY_MODE_ROLLBACK ? "rollback: " : "", fb, old ? " (" : "",
		       old ? conns_text(cb, sizeof(cb), deploy_colour_connections(old)) : "",
		       old ? ")" : "", a->sha);
		break;
	case DEPLOY_ACT_META:
		if (!a->has_value)
			break;
		if (strcmp(a->key, PLATFORM_META_DRAINING_SINCE) == 0) {
			ev_put(ev, &n, "Normal", "Draining", "Drain",
			       "no longer selected, %s left to drain (new connections go to "
			       "chat-%s)",
			       conns_text(cb, sizeof(cb), conns), cfg->sha[0] ? cfg->sha : "none");
		} else if (strcmp(a->key, DEPLOY_META_ASSIST_SINCE) == 0) {
			ds = c ? deploy_meta_time(&c->c, PLATFORM_META_DRAINING_SINCE) : 0;
			ev_put(ev, &n, "Normal", "AssistedDrain", "Move",
			       "assisted drain after %.1fs of draining: moving its %s to chat-%s "
			       "at %g sessions/s (see-other-host, XEP-0198 resumption)",
			       ds ? (double)(obs->now_ms - ds) / 1000.0 : 0.0,
			       conns_text(cb, sizeof(cb), conns),
			       obs->selected[0] ? obs->selected : "none", cfg->assist_rate);
		} else if (strcmp(a->key, DEPLOY_META_MAX_DRAIN_AT) == 0) {
			ds = c ? deploy_meta_time(&c->c, PLATFORM_META_DRAINING_SINCE) : 0;
			ev_put(ev, &n, "Warning", "MaxDrainReached", "Drain",
			       "still %s after %.1fs of draining (--max-drain %.0fs): left "
			       "running, rainbow prune deletes it once drained",
			       conns_text(cb, sizeof(cb), conns),
			       ds ? (double)(obs->now_ms - ds) / 1000.0 : 0.0,
			       (double)cfg->max_drain_ms / 1000.0);
		}
		break;
	case DEPLOY_ACT_REMOVE:
		switch (a->why) {
		case DEPLOY_WHY_DRAINED:
			drained_event(cfg, c, a, ev, &n);
			ev_put(ev, &n, "Normal", "Deleted", "Delete", "deleted: drained");
			break;
		case DEPLOY_WHY_MAX_DRAIN:
			ev_put(ev, &n, "Warning", "MaxDrainReached", "Drain",
			       "still %s after %.1fs of draining (--max-drain %.0fs): shut down, "
			       "chatd ends them with a system-shutdown stream error",
			       conns_text(cb, sizeof(cb), conns), (double)a->drain_ms / 1000.0,
			       (double)cfg->max_drain_ms / 1000.0);
			ev_put(ev, &n, "Warning", "Deleted", "Delete",
			       "deleted with %s (--on-max-drain shutdown)",
			       conns_text(cb, sizeof(cb), conns));
			break;
		case DEPLOY_WHY_FAILED:
			ev_put(ev, &n, "Warning", "Deleted", "Delete",
			       "deleted: it never became ready%s",
			       cfg->mode == DEPLOY_MODE_DEPLOY && c &&
					       platform_meta_get(&c->c, PLATFORM_META_FAILED)
				       ? " in an earlier attempt; a fresh attempt follows"
				       : "");
			break;
		case DEPLOY_WHY_EXCESS_KEPT:
			ev_put(ev, &n, "Normal", "Deleted", "Delete",
			       "deleted: more kept colours than --keep-drained %d",
			       cfg->keep_drained);
			break;
		case DEPLOY_WHY_PRUNE_FAILED:
			ev_put(ev, &n, "Normal", "Deleted", "Delete",
			       "deleted by prune: a failed colour kept with --keep-failed");
			break;
		default:
			ev_put(ev, &n, "Normal", "Deleted", "Delete", "deleted");
			break;
		}
		break;
	case DEPLOY_ACT_MOVE:
		break; /* one event when the assist starts (the meta), not per batch */
	case DEPLOY_ACT_REMOVE_REPLICA:
		ev_put(ev, &n, "Normal", "Shrunk", "Shrink",
		       "removed replica %s: 0 connections for the settle period (%.1fs); the "
		       "colour holds %s on its other replicas",
		       a->name, (double)cfg->settle_ms / 1000.0, conns_text(cb, sizeof(cb), conns));
		break;
	}
	return n;
}

struct summary {
	char sha[PLATFORM_SHA_MAX];
	char what[240];
};

/* Events the platform could not record, for the rate-limited warning. */
struct run_tell {
	unsigned failed;
};

/* 1, 10, 100, ...: the failure counts worth a warning line. */
static int power_of_ten(unsigned n)
{
	while (n >= 10 && n % 10 == 0)
		n /= 10;
	return n == 1;
}

/* Hands one event to the platform; a failure is reported, never returned. */
static void tell(struct platform *p, struct run_tell *t, const char *sha,
		 const struct platform_event *e)
{
	if (!p->ops->event || p->ops->event(p, sha, e) == 0)
		return;
	t->failed++;
	if (power_of_ten(t->failed))
		fprintf(stderr,
			"rainbow: warning: event %s on chat-%s not recorded, the deploy goes on "
			"(%u event%s not recorded so far; this warning repeats at 10, 100, "
			"1000...): %s\n",
			e->reason, sha, t->failed, t->failed == 1 ? "" : "s", p->err);
}

/* Connections a colour's replicas lost in crashes (all of them, as the platform counted). */
static long colour_lost(const struct deploy_colour_obs *c)
{
	long n = 0;

	for (size_t i = 0; c && i < c->n_rep; i++)
		n += c->rep[i].lost > 0 ? c->rep[i].lost : 0;
	return n;
}

/* What the run saw of each replica, to report crashes and restarts as they happen. */
struct seen {
	char name[PLATFORM_NAME_MAX];
	int restarts;
	long lost;
};

#define RUN_SEEN_MAX 256

static void report_replicas(const struct run_opts *o, const struct run_obs *ro, struct seen *seen,
			    size_t *n_seen)
{
	for (size_t i = 0; i < ro->n; i++) {
		const struct deploy_colour_obs *c = &ro->colours[i];
		enum deploy_state st = deploy_colour_state(c, ro->obs.selected);

		for (size_t k = 0; k < c->n_rep; k++) {
			const struct platform_replica *r = &c->rep[k];
			struct seen *s = NULL;

			for (size_t j = 0; j < *n_seen; j++)
				if (strcmp(seen[j].name, r->name) == 0)
					s = &seen[j];
			if (!s) {
				if (*n_seen >= RUN_SEEN_MAX)
					continue;
				s = &seen[(*n_seen)++];
				snprintf(s->name, sizeof(s->name), "%s", r->name);
				s->restarts = r->restarts;
				s->lost = r->lost;
				continue;
			}
			if (!o->quiet && r->restarts > s->restarts)
				fprintf(o->out,
					"  chat-%s: replica %s crashed and was restarted "
					"(restart %d)%s%ld%s\n",
					c->c.sha, r->name, r->restarts,
					r->lost > s->lost ? ", " : "",
					r->lost > s->lost ? r->lost - s->lost : 0L,
					r->lost > s->lost ? " connections lost" : "");
			else if (!o->quiet && r->lost > s->lost)
				fprintf(o->out,
					"  chat-%s: replica %s crashed: %ld connections lost (not "
					"drained%s)\n",
					c->c.sha, r->name, r->lost - s->lost,
					st == DEPLOY_STATE_DRAINING
						? "; not restarted while its colour drains"
						: "");
			s->restarts = r->restarts;
			s->lost = r->lost;
		}
	}
	fflush(o->out);
}

/*
 * The platform's operation for a; 0 or its error (in p->err). What was
 * already so is no error: *untold then says nothing happened to tell.
 * *event names the record ("create", ...; NULL: none), *moved the sessions
 * an assist batch moved.
 */
static int platform_op(struct platform *p, const struct deploy_act *a, const char **event,
		       int *untold, int *moved)
{
	int rc = 0;

	switch (a->kind) {
	case DEPLOY_ACT_CREATE:
		rc = p->ops->create(p, a->sha, a->replicas);
		*untold = rc == -EEXIST; /* created by an earlier run, which told it */
		*event = "create";
		break;
	case DEPLOY_ACT_SCALE:
		rc = p->ops->scale(p, a->sha, a->replicas);
		*event = "scale";
		break;
	case DEPLOY_ACT_SELECT:
		rc = p->ops->select(p, a->sha);
		*event = "select";
		break;
	case DEPLOY_ACT_META:
		rc = p->ops->meta_set(p, a->sha, a->key, a->has_value ? a->value : NULL);
		*untold = rc == -ENOENT; /* the colour is gone: nothing happened to it */
		break;
	case DEPLOY_ACT_REMOVE:
		rc = p->ops->remove(p, a->sha);
		*untold = rc == -ENOENT;
		*event = "remove";
		break;
	case DEPLOY_ACT_MOVE:
		*event = "assist";
		if (!p->ops->move)
			return platform_error(p, -ENOTSUP, "the %s platform cannot move sessions",
					      p->ops->name);
		rc = p->ops->move(p, a->sha, a->name, a->count, moved);
		if (rc == -ENOENT) {
			rc = 0; /* the replica went meanwhile: nothing to move there */
			*moved = 0;
		}
		break;
	case DEPLOY_ACT_REMOVE_REPLICA:
		rc = p->ops->remove_replica(p, a->sha, a->name);
		*event = "remove-replica";
		break;
	}
	return *untold ? 0 : rc;
}

/* The record of an action done (and the report's "actions"). */
static void record_action(const struct deploy_cfg *cfg, const struct deploy_act *a,
			  const struct run_obs *ro, const struct run_opts *o, const char *event,
			  long conns, int moved, int64_t op_ms, int64_t obs_mono)
{
	long lost = colour_lost(deploy_obs_find(&ro->obs, a->sha));
	json_t *e = json_pack("{s:s,s:s,s:s,s:I,s:I}", "event", event, "sha", a->sha, "why",
			      deploy_why_name(a->why), "connections", (json_int_t)conns, "op_ms",
			      (json_int_t)op_ms);

	if (a->kind == DEPLOY_ACT_CREATE || a->kind == DEPLOY_ACT_SCALE)
		json_object_set_new(e, "replicas", json_integer(a->replicas));
	if (a->kind == DEPLOY_ACT_REMOVE_REPLICA || a->kind == DEPLOY_ACT_MOVE)
		json_object_set_new(e, "replica", json_string(a->name));
	if (a->kind == DEPLOY_ACT_MOVE) {
		/* One assisted-drain batch: asked of one replica, and what it did. */
		json_object_set_new(e, "requested", json_integer(a->count));
		json_object_set_new(e, "moved", json_integer(moved));
		json_object_set_new(e, "rate", json_real(cfg->assist_rate));
	}
	if (a->kind == DEPLOY_ACT_SELECT && ro->obs.selected[0] &&
	    strcmp(ro->obs.selected, a->sha) != 0) {
		/* What the drain of the colour it replaces starts from (the report's). */
		const struct deploy_colour_obs *old = deploy_obs_find(&ro->obs, ro->obs.selected);

		json_object_set_new(e, "deselected", json_string(ro->obs.selected));
		json_object_set_new(e, "deselected_at", json_real((double)ro->obs.now_ms / 1000.0));
		json_object_set_new(e, "deselected_connections",
				    json_integer(old ? deploy_colour_connections(old) : -1));
	}
	/* From the observation that decided it to the platform's confirmation. */
	json_object_set_new(e, "since_obs_ms", json_integer(mono_ms() - obs_mono));
	if (a->why == DEPLOY_WHY_DRAINED || a->why == DEPLOY_WHY_MAX_DRAIN)
		json_object_set_new(e, "drain_ms", json_integer(a->drain_ms));
	if (lost > 0)
		json_object_set_new(e, "lost", json_integer(lost));
	if (o->report) {
		json_t *acts = json_object_get(o->report, "actions");

		if (!acts)
			json_object_set_new(o->report, "actions", acts = json_array());
		json_array_append_new(acts, json_deep_copy(e));
	}
	run_record(o->state_dir, e);
}

/* What became of a drained colour (or one past --max-drain), for the
 * summary at the end and as it happens. */
static void summarize(const struct deploy_act *a, const struct run_obs *ro,
		      const struct run_opts *o, long conns, struct summary *sum, size_t *n_sum)
{
	long lost = colour_lost(deploy_obs_find(&ro->obs, a->sha));
	int drained = a->why == DEPLOY_WHY_DRAINED || a->why == DEPLOY_WHY_MAX_DRAIN;
	int kept = !o->quiet && a->kind == DEPLOY_ACT_META && a->has_value &&
		   strcmp(a->key, DEPLOY_META_MAX_DRAIN_AT) == 0;
	char lost_note[96] = "";
	struct summary *s;

	if ((!drained && !kept) || *n_sum >= 64)
		return;
	s = &sum[(*n_sum)++];
	snprintf(s->sha, sizeof(s->sha), "%s", a->sha);
	if (lost > 0)
		snprintf(lost_note, sizeof(lost_note),
			 "; %ld connections lost in crashes (not drained)", lost);
	if (a->why == DEPLOY_WHY_DRAINED)
		snprintf(s->what, sizeof(s->what), "drained in %.1fs, %s%s",
			 (double)a->drain_ms / 1000.0,
			 a->kind == DEPLOY_ACT_SCALE ? "kept at 0 replicas" : "deleted", lost_note);
	else if (a->why == DEPLOY_WHY_MAX_DRAIN)
		snprintf(s->what, sizeof(s->what),
			 "passed --max-drain after %.1fs with %ld connections: shut down "
			 "(system-shutdown)",
			 (double)a->drain_ms / 1000.0, conns);
	else
		snprintf(s->what, sizeof(s->what),
			 "passed --max-drain with %ld connections: "
			 "kept draining (rainbow prune deletes it once drained)",
			 conns);
	if (!o->quiet)
		fprintf(o->out, "  chat-%s %s\n", s->sha, s->what);
}

/* Performs one action; 0 or the platform's error (already in p->err). */
static int perform(struct platform *p, const struct deploy_cfg *cfg, const struct deploy_act *a,
		   const struct run_obs *ro, int64_t obs_mono, int64_t waited_ms,
		   struct run_tell *t, const struct run_opts *o, struct summary *sum, size_t *n_sum)
{
	const struct deploy_colour_obs *c = deploy_obs_find(&ro->obs, a->sha);
	long conns = c ? deploy_colour_connections(c) : -1;
	const char *event = NULL;
	struct platform_event ev[RUN_EVENTS_MAX];
	size_t n_ev;
	int rc, untold = 0, moved = 0;
	int64_t t0 = mono_ms();

	rc = platform_op(p, a, &event, &untold, &moved);
	if (rc == -EBUSY && a->kind == DEPLOY_ACT_REMOVE_REPLICA) {
		/*
		 * Busy now (a client arrived, or a busy pod would go first): not a
		 * failure, the next poll decides again. Counted as one, a long wait
		 * would make the deploy give up in the middle of a drain.
		 */
		log_debug("shrink-later", "sha=%s replica=%s reason=\"%s\"", a->sha, a->name,
			  p->err);
		return 0;
	}
	if (rc < 0) {
		fprintf(stderr, "rainbow: %s chat-%s failed: %s\n", event ? event : "meta", a->sha,
			p->err);
		return rc;
	}
	n_ev = untold ? 0 : run_action_events(cfg, &ro->obs, a, waited_ms, ev);
	for (size_t i = 0; i < n_ev; i++)
		tell(p, t, a->sha, &ev[i]);
	if (event)
		record_action(cfg, a, ro, o, event, conns, moved, mono_ms() - t0, obs_mono);
	if (!o->quiet && a->kind == DEPLOY_ACT_REMOVE_REPLICA)
		fprintf(o->out, "  shrink chat-%s: removed replica %s (0 connections)\n", a->sha,
			a->name);
	summarize(a, ro, o, conns, sum, n_sum);
	return 0;
}

/* Which draining colours have had a forecast recorded (run_deploy's memory). */
#define RUN_FORECAST_TRACK 32
#define RUN_FORECAST_EVERY_MS 60000

struct forecast_track {
	char sha[PLATFORM_SHA_MAX];
	int64_t last_ms; /* when the last forecast record was written */
	int had_ok;	 /* one with an eta was recorded */
};

/*
 * Forecasts every draining colour of ro into fc (by colour index) and
 * records them: at a colour's first observation, when its forecast first
 * exists, then every RUN_FORECAST_EVERY_MS.
 */
static void forecast_all(const struct run_obs *ro, struct forecast *fc, struct forecast_track *tr,
			 const struct run_opts *o)
{
	struct forecast_model *m = malloc(sizeof(*m));

	if (!m)
		return;
	forecast_model_from_obs(m, &ro->obs);
	for (size_t i = 0; i < ro->n; i++) {
		const struct deploy_colour_obs *c = &ro->colours[i];
		int64_t ds = deploy_meta_time(&c->c, PLATFORM_META_DRAINING_SINCE);
		struct forecast_track *t = NULL;
		json_t *e;

		if (deploy_colour_state(c, ro->obs.selected) != DEPLOY_STATE_DRAINING)
			continue;
		forecast_colour(m, c, &fc[i]);
		for (size_t k = 0; k < RUN_FORECAST_TRACK && !t; k++)
			if (!tr[k].sha[0] || strcmp(tr[k].sha, c->c.sha) == 0)
				t = &tr[k];
		if (!t)
			continue;
		if (t->sha[0] && !(fc[i].ok && !t->had_ok) &&
		    ro->obs.now_ms - t->last_ms < RUN_FORECAST_EVERY_MS)
			continue;
		snprintf(t->sha, sizeof(t->sha), "%s", c->c.sha);
		t->last_ms = ro->obs.now_ms;
		t->had_ok |= fc[i].ok;
		e = run_forecast_json(&fc[i], 1);
		json_object_set_new(e, "event", json_string("forecast"));
		json_object_set_new(e, "sha", json_string(c->c.sha));
		json_object_set_new(e, "t", json_real((double)ro->obs.now_ms / 1000.0));
		json_object_set_new(e, "since_deselect_s",
				    ds ? json_real((double)(ro->obs.now_ms - ds) / 1000.0)
				       : json_null());
		json_object_set_new(e, "connections", json_integer(deploy_colour_connections(c)));
		json_object_set_new(e, "ended", json_real(m->ended_total));
		run_record(o->state_dir, e);
	}
	free(m);
}

/* Adds ms to report.phases[name of ph] (seconds). */
static void report_phase(json_t *report, enum deploy_phase ph, int64_t ms)
{
	json_t *phases;
	const char *name = deploy_phase_name(ph);

	if (!report || ph == DEPLOY_PHASE_DONE || ph == DEPLOY_PHASE_FAILED)
		return;
	phases = json_object_get(report, "phases");
	if (!phases)
		json_object_set_new(report, "phases", phases = json_object());
	json_object_set_new(
		phases, name,
		json_real(json_number_value(json_object_get(phases, name)) + (double)ms / 1000.0));
}

static void print_phase_end(const struct run_opts *o, enum deploy_phase ph, const char *sha,
			    int64_t dur_ms, const struct deploy_result *r)
{
	if (o->quiet)
		return;
	switch (ph) {
	case DEPLOY_PHASE_CREATE:
		fprintf(o->out, "start chat-%s (%d replicas) ... %.2fs\n", sha, r->wanted,
			(double)dur_ms / 1000.0);
		break;
	case DEPLOY_PHASE_SCALE:
		fprintf(o->out, "scale chat-%s to %d replicas ... %.2fs\n", sha, r->wanted,
			(double)dur_ms / 1000.0);
		break;
	case DEPLOY_PHASE_READY:
		fprintf(o->out, "wait until ready ... %.2fs\n", (double)dur_ms / 1000.0);
		break;
	case DEPLOY_PHASE_SWITCH:
		fprintf(o->out, "switch traffic to chat-%s ... %.3fs\n", sha,
			(double)dur_ms / 1000.0);
		break;
	case DEPLOY_PHASE_DRAIN:
		fprintf(o->out, "drain old colours ... %.2fs\n", (double)dur_ms / 1000.0);
		break;
	default:
		break;
	}
	fflush(o->out);
}

/*
 * Errors that another attempt cannot cure: missing permissions (kube RBAC),
 * a read-only state directory, a platform or replica that cannot do what
 * was asked (-ENOTSUP: a move with no control token to move with),
 * and the switch target itself missing (namespace/Service gone, local switch
 * down). Retrying them would only print the same message again.
 */
static int run_error_is_fatal(int rc, int selecting)
{
	/* A read-only state dir stays read-only; a full one may get space back. */
	return rc == -EACCES || rc == -EROFS || rc == -ENOTSUP || (selecting && rc == -ENOENT);
}

/*
 * The wait before retrying after `errors` failures in a row: 100 ms doubled
 * each time up to 5 s (20 failures in a row take about 75 s before rainbow
 * gives up), never less than the wait planned anyway.
 */
int64_t run_backoff_ms(int errors, int64_t planned_ms)
{
	int64_t ms = 100;

	for (int i = 1; i < errors && ms < 5000; i++)
		ms *= 2;
	if (ms > 5000)
		ms = 5000;
	return ms > planned_ms ? ms : planned_ms;
}

/* ---- dry run ---- */

#define SIM_COLOURS 64
#define SIM_REPLICAS 32

struct sim {
	struct deploy_colour_obs col[SIM_COLOURS];
	struct platform_replica rep[SIM_COLOURS][SIM_REPLICAS];
	size_t n;
	struct deploy_obs obs;
};

static void sim_ready(struct sim *s, size_t i, int replicas)
{
	struct deploy_colour_obs *c = &s->col[i];
	size_t have = c->n_rep;

	c->c.replicas = replicas;
	for (size_t k = 0; k < (size_t)replicas && k < SIM_REPLICAS; k++) {
		if (k >= have) {
			snprintf(s->rep[i][k].name, sizeof(s->rep[i][k].name), "chat-%s-new-%zu",
				 c->c.sha, k);
			s->rep[i][k].connections = 0;
		}
		s->rep[i][k].ready = 1;
	}
	c->n_rep = replicas < SIM_REPLICAS ? (size_t)replicas : SIM_REPLICAS;
	c->rep = s->rep[i];
}

static long sim_find(const struct sim *s, const char *sha)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->col[i].c.sha, sha) == 0)
			return (long)i;
	return -1;
}

/* What the platform would look like once a's change is made (replicas ready at once). */
static void sim_apply(struct sim *s, const struct deploy_act *a)
{
	long i = sim_find(s, a->sha);

	switch (a->kind) {
	case DEPLOY_ACT_CREATE:
		if (i >= 0 || s->n >= SIM_COLOURS)
			return;
		i = (long)s->n++;
		memset(&s->col[i], 0, sizeof(s->col[i]));
		snprintf(s->col[i].c.sha, sizeof(s->col[i].c.sha), "%s", a->sha);
		s->col[i].c.created = s->obs.now_ms / 1000;
		sim_ready(s, (size_t)i, a->replicas);
		break;
	case DEPLOY_ACT_SCALE:
		if (i >= 0)
			sim_ready(s, (size_t)i, a->replicas);
		break;
	case DEPLOY_ACT_SELECT:
		snprintf(s->obs.selected, sizeof(s->obs.selected), "%s", a->sha);
		for (size_t k = 0; k < s->n; k++)
			s->col[k].c.selected = strcmp(s->col[k].c.sha, a->sha) == 0;
		break;
	case DEPLOY_ACT_META:
		if (i < 0)
			return;
		if (a->has_value) {
			platform_meta_put(&s->col[i].c, a->key, a->value);
		} else {
			struct platform_colour *c = &s->col[i].c;

			for (size_t k = 0; k < c->n_meta; k++)
				if (strcmp(c->meta[k].key, a->key) == 0) {
					c->meta[k] = c->meta[--c->n_meta];
					break;
				}
		}
		break;
	case DEPLOY_ACT_REMOVE:
		if (i < 0)
			return;
		s->col[i] = s->col[s->n - 1];
		memcpy(s->rep[i], s->rep[s->n - 1], sizeof(s->rep[i]));
		s->col[i].rep = s->rep[i];
		s->n--;
		break;
	case DEPLOY_ACT_REMOVE_REPLICA:
	case DEPLOY_ACT_MOVE:
		break;
	}
}

static const char *act_name(enum deploy_act_kind k)
{
	static const char *const names[] = { "create", "scale",		 "select", "meta",
					     "remove", "remove-replica", "move" };

	return (unsigned)k < sizeof(names) / sizeof(names[0]) ? names[k] : "?";
}

/* The change a's op makes, done for real only when the platform describes it. */
static int dry_perform(struct platform *p, const struct deploy_act *a)
{
	if (!p->dry_run || !p->ops->can_dry_run)
		return 0;
	switch (a->kind) {
	case DEPLOY_ACT_CREATE:
		return p->ops->create(p, a->sha, a->replicas);
	case DEPLOY_ACT_SCALE:
		return p->ops->scale(p, a->sha, a->replicas);
	case DEPLOY_ACT_SELECT:
		return p->ops->select(p, a->sha);
	case DEPLOY_ACT_META:
		return p->ops->meta_set(p, a->sha, a->key, a->has_value ? a->value : NULL);
	case DEPLOY_ACT_REMOVE:
		return p->ops->remove(p, a->sha);
	case DEPLOY_ACT_REMOVE_REPLICA:
		return p->ops->remove_replica(p, a->sha, a->name);
	case DEPLOY_ACT_MOVE:
		return 0; /* a dry run moves nothing and describes no request */
	}
	return 0;
}

/* The simulation starts from what was observed. */
static void sim_load(struct sim *s, const struct run_obs *ro)
{
	s->obs = ro->obs;
	for (size_t i = 0; i < ro->n && i < SIM_COLOURS; i++) {
		s->col[i] = ro->colours[i];
		s->col[i].n_rep =
			ro->colours[i].n_rep < SIM_REPLICAS ? ro->colours[i].n_rep : SIM_REPLICAS;
		memcpy(s->rep[i], ro->colours[i].rep, s->col[i].n_rep * sizeof(s->rep[i][0]));
		s->col[i].rep = s->rep[i];
		s->n++;
	}
}

/* One action of the dry run into steps, with the requests the platform
 * describes for it; 0, or the platform's error. */
static int dry_step(struct platform *p, enum deploy_phase ph, const struct deploy_act *a,
		    json_t *steps)
{
	size_t before = p->dry_run ? json_array_size(p->dry_run) : 0;
	json_t *e = json_pack("{s:s,s:s,s:s}", "phase", deploy_phase_name(ph), "action",
			      act_name(a->kind), "sha", a->sha),
	       *reqs = json_array();
	int rc;

	if (a->kind == DEPLOY_ACT_CREATE || a->kind == DEPLOY_ACT_SCALE)
		json_object_set_new(e, "replicas", json_integer(a->replicas));
	if (a->kind == DEPLOY_ACT_META) {
		json_object_set_new(e, "key", json_string(a->key));
		json_object_set_new(e, "value", a->has_value ? json_string(a->value) : json_null());
	}
	if (a->why != DEPLOY_WHY_NONE)
		json_object_set_new(e, "why", json_string(deploy_why_name(a->why)));
	rc = dry_perform(p, a);
	if (rc < 0 && rc != -EEXIST && rc != -ENOENT) {
		json_decref(e);
		json_decref(reqs);
		return rc;
	}
	for (size_t k = before; p->dry_run && k < json_array_size(p->dry_run); k++)
		json_array_append(reqs, json_array_get(p->dry_run, k));
	json_object_set_new(e, "requests", reqs);
	json_array_append_new(steps, e);
	return 0;
}

int run_dry_run(struct platform *p, const struct deploy_cfg *cfg, json_t *report)
{
	struct sim *s = calloc(1, sizeof(*s));
	struct deploy_mem *mem = malloc(sizeof(*mem));
	struct deploy_result *res = malloc(sizeof(*res));
	json_t *steps = json_array(), *drain = json_array();
	struct run_obs ro;
	int rc, status = RUN_EXIT_OK;

	if (!s || !mem || !res || !steps || !drain) {
		run_report_failure(report, RUN_EXIT_FAILED, "out of memory");
		status = RUN_EXIT_FAILED;
		goto out;
	}
	rc = run_observe(p, &ro);
	if (rc < 0) {
		fprintf(stderr, "rainbow: observing the platform failed: %s\n", p->err);
		status = run_exit_for_error(rc);
		run_report_failure(report, status, p->err);
		goto out;
	}
	json_object_set_new(report, "selected_before", json_string(ro.obs.selected));
	json_object_set_new(report, "colours", run_colours_json(&ro));
	sim_load(s, &ro);
	run_obs_free(&ro);
	deploy_mem_init(mem);
	for (int step = 0; step < 8; step++) {
		s->obs.colours = s->col;
		s->obs.n = s->n;
		deploy_step(cfg, &s->obs, mem, res);
		if (res->phase == DEPLOY_PHASE_FAILED) {
			status = res->failure == DEPLOY_FAIL_NO_TARGET ? RUN_EXIT_NO_TARGET
								       : RUN_EXIT_NOT_READY;
			run_report_failure(report, status, res->msg);
			break;
		}
		for (size_t i = 0; i < res->n_act; i++) {
			const struct deploy_act *a = &res->act[i];

			rc = dry_step(p, res->phase, a, steps);
			if (rc < 0) {
				fprintf(stderr, "rainbow: %s chat-%s: %s\n", act_name(a->kind),
					a->sha, p->err);
				status = run_exit_for_error(rc);
				run_report_failure(report, status, p->err);
				goto out;
			}
			sim_apply(s, a);
		}
		if (res->phase == DEPLOY_PHASE_DRAIN || res->phase == DEPLOY_PHASE_DONE)
			break;
		s->obs.now_ms += 1;
	}
	/* What the deploy would then wait for: the colours draining after the switch. */
	for (size_t i = 0; status == RUN_EXIT_OK && !cfg->no_wait && i < s->n; i++)
		if (deploy_colour_state(&s->col[i], s->obs.selected) == DEPLOY_STATE_DRAINING)
			json_array_append_new(
				drain,
				json_pack("{s:s,s:I}", "sha", s->col[i].c.sha, "connections",
					  (json_int_t)deploy_colour_connections(&s->col[i])));
out:
	json_object_set_new(report, "steps", steps);
	json_object_set_new(report, "then_drain", drain);
	free(s);
	free(mem);
	free(res);
	return status;
}

/* What run_deploy carries from one observation to the next. */
struct run_state {
	struct deploy_mem mem;
	struct deploy_result res;
	struct summary sum[64];
	size_t n_sum;
	struct forecast_track track[RUN_FORECAST_TRACK];
	struct seen seen[RUN_SEEN_MAX];
	size_t n_seen;
	struct run_tell tell;
	enum deploy_phase cur; /* -1 before the first observation */
	int64_t started, phase_start, last_print;
	int64_t wait_start; /* began waiting for the target to be ready (0: not) */
	int errors;	    /* failed steps in a row */
};

/* An error that retrying cannot fix ends the run; its exit status. */
static int give_up(const struct run_opts *o, int rc, const char *err)
{
	int status = run_exit_for_error(rc);

	fprintf(stderr, "rainbow: giving up: retrying cannot fix this\n");
	run_report_failure(o->report, status, err);
	return status;
}

/* One more failed step: 0 after the backoff (try again), or
 * RUN_EXIT_GAVE_UP after RUN_MAX_ERRORS in a row. A failed step is retried
 * after a backoff, never at once. */
static int retry(struct run_state *s, const struct run_opts *o, const char *err)
{
	if (++s->errors >= RUN_MAX_ERRORS) {
		fprintf(stderr, "rainbow: giving up after %d failed steps\n", s->errors);
		run_report_failure(o->report, RUN_EXIT_GAVE_UP, err);
		return RUN_EXIT_GAVE_UP;
	}
	usleep((useconds_t)run_backoff_ms(s->errors, 0) * 1000);
	return 0;
}

static void report_observation(json_t *report, const struct run_obs *ro)
{
	if (!report)
		return;
	if (!json_object_get(report, "selected_before"))
		json_object_set_new(report, "selected_before", json_string(ro->obs.selected));
	json_object_set_new(report, "selected", json_string(ro->obs.selected));
	json_object_set_new(report, "colours", run_colours_json(ro));
}

/* A heartbeat while draining: what is left per colour. */
static void print_draining(const struct run_opts *o, const struct run_obs *ro,
			   const struct forecast *fc, int64_t phase_ms)
{
	char eta[48];

	fprintf(o->out, "  draining:");
	for (size_t i = 0; i < ro->n; i++) {
		const struct deploy_colour_obs *c = &ro->colours[i];

		if (deploy_colour_state(c, ro->obs.selected) != DEPLOY_STATE_DRAINING)
			continue;
		fprintf(o->out, " chat-%s=%ld%s", c->c.sha, deploy_colour_connections(c),
			platform_meta_get(&c->c, DEPLOY_META_ASSIST_SINCE) ? " assisted" : "");
		if (fc)
			fprintf(o->out, " (%s)", run_forecast_text(&fc[i], eta, sizeof(eta)));
	}
	fprintf(o->out, " (%.0fs)\n", (double)phase_ms / 1000.0);
	fflush(o->out);
}

/* The end of a phase, or every 5 s of a drain, on the output and in the report. */
static void progress(struct run_state *s, const struct deploy_cfg *cfg, const struct run_opts *o,
		     const struct run_obs *ro, const struct forecast *fc)
{
	int64_t now = mono_ms();

	if (s->res.phase != s->cur) {
		if ((int)s->cur >= 0) {
			print_phase_end(o, s->cur, cfg->sha, now - s->phase_start, &s->res);
			report_phase(o->report, s->cur, now - s->phase_start);
		}
		s->cur = s->res.phase;
		s->phase_start = now;
		if (!o->quiet && s->cur == DEPLOY_PHASE_DRAIN && s->res.draining)
			fprintf(o->out, "  %d old colour(s) draining\n", s->res.draining);
	} else if (!o->quiet && s->cur == DEPLOY_PHASE_DRAIN && now - s->last_print >= 5000) {
		s->last_print = now;
		print_draining(o, ro, fc, now - s->phase_start);
	}
}

/* Performs the step's actions in order; 0, or the first failure's error
 * (*fatal when retrying cannot cure it). The rest wait: the next
 * observation decides again from what is there then. */
static int perform_all(struct platform *p, const struct deploy_cfg *cfg, const struct run_opts *o,
		       struct run_state *s, const struct run_obs *ro, int64_t obs_mono, int *fatal)
{
	for (size_t i = 0; i < s->res.n_act; i++) {
		const struct deploy_act *a = &s->res.act[i];
		int rc = perform(p, cfg, a, ro, obs_mono,
				 s->wait_start ? obs_mono - s->wait_start : -1, &s->tell, o, s->sum,
				 &s->n_sum);

		if (rc < 0) {
			*fatal = run_error_is_fatal(rc, a->kind == DEPLOY_ACT_SELECT);
			return rc;
		}
		if (a->kind == DEPLOY_ACT_SELECT)
			s->wait_start = 0;
	}
	return 0;
}

/* The deploy failed (not ready, no target): recorded, told, reported. */
static int deploy_failed(struct platform *p, const struct deploy_cfg *cfg, const struct run_opts *o,
			 struct run_state *s, int target_seen)
{
	int status =
		s->res.failure == DEPLOY_FAIL_NO_TARGET ? RUN_EXIT_NO_TARGET : RUN_EXIT_NOT_READY;

	run_record(o->state_dir, json_pack("{s:s,s:s,s:s}", "event", "failed", "sha", cfg->sha,
					   "reason", s->res.msg));
	if (target_seen) {
		struct platform_event fe = { "Warning", "Failed", "Deploy", "" };

		snprintf(fe.note, sizeof(fe.note), "%s", s->res.msg);
		tell(p, &s->tell, cfg->sha, &fe);
	}
	fprintf(stderr, "rainbow: deploy failed: %s\n", s->res.msg);
	run_report_failure(o->report, status, s->res.msg);
	return status;
}

static int deploy_done(const struct deploy_cfg *cfg, const struct run_opts *o,
		       const struct run_state *s)
{
	double secs = (double)(mono_ms() - s->started) / 1000.0;

	run_record(o->state_dir,
		   json_pack("{s:s,s:s,s:f}", "event", "done", "sha", cfg->sha, "seconds", secs));
	if (!o->quiet) {
		fprintf(o->out, "done in %.2fs\n", secs);
		if (s->n_sum)
			fprintf(o->out, "summary:\n");
		for (size_t i = 0; i < s->n_sum; i++)
			fprintf(o->out, "  chat-%s: %s\n", s->sum[i].sha, s->sum[i].what);
		fflush(o->out);
	}
	return RUN_EXIT_OK;
}

/* How long to wait before the next observation. */
static int64_t next_poll_ms(enum deploy_phase ph, const struct run_opts *o)
{
	int64_t ms = (int64_t)(o->poll_s * 1000.0);

	if (ph == DEPLOY_PHASE_SWITCH || ph == DEPLOY_PHASE_CREATE || ph == DEPLOY_PHASE_SCALE)
		return 0; /* the next step follows at once */
	if (ph == DEPLOY_PHASE_READY && ms > RUN_READY_POLL_MS)
		return RUN_READY_POLL_MS;
	return ms;
}

/*
 * One observation decided and acted on. true when the run is over (its
 * exit status in *status); false to observe again (after a backoff when a
 * step failed).
 */
static bool run_step(struct platform *p, const struct deploy_cfg *cfg, const struct run_opts *o,
		     struct run_state *s, struct run_obs *ro, int *status)
{
	int64_t obs_mono = mono_ms();
	struct forecast *fc;
	int rc, fatal = 0, target_seen;

	run_timeline(o->state_dir, ro);
	report_observation(o->report, ro);
	report_replicas(o, ro, s->seen, &s->n_seen);
	deploy_step(cfg, &ro->obs, &s->mem, &s->res);
	fc = calloc(ro->n ? ro->n : 1, sizeof(*fc));
	if (fc)
		forecast_all(ro, fc, s->track, o);
	progress(s, cfg, o, ro, fc);
	free(fc);
	if (!s->wait_start &&
	    (s->res.phase == DEPLOY_PHASE_CREATE || s->res.phase == DEPLOY_PHASE_READY))
		s->wait_start = obs_mono;
	target_seen = cfg->sha[0] && deploy_obs_find(&ro->obs, cfg->sha) != NULL;
	rc = perform_all(p, cfg, o, s, ro, obs_mono, &fatal);
	if (rc < 0) {
		*status = fatal ? give_up(o, rc, p->err) : retry(s, o, p->err);
		return *status != 0;
	}
	s->errors = 0;
	if (s->res.phase == DEPLOY_PHASE_FAILED) {
		*status = deploy_failed(p, cfg, o, s, target_seen);
		return true;
	}
	if (s->res.phase == DEPLOY_PHASE_DONE) {
		*status = deploy_done(cfg, o, s);
		return true;
	}
	return false;
}

int run_deploy(struct platform *p, const struct deploy_cfg *cfg, const struct run_opts *o)
{
	struct run_state *s = calloc(1, sizeof(*s));
	int status = RUN_EXIT_FAILED;
	struct run_obs ro;
	int64_t sleep_ms;
	int rc;

	if (!s) {
		fprintf(stderr, "rainbow: out of memory\n");
		run_report_failure(o->report, status, "out of memory");
		return status;
	}
	deploy_mem_init(&s->mem);
	s->cur = (enum deploy_phase) - 1;
	s->started = s->phase_start = mono_ms();
	for (;;) {
		rc = run_observe(p, &ro);
		if (rc < 0) {
			fprintf(stderr, "rainbow: observing the platform failed: %s\n", p->err);
			status = run_error_is_fatal(rc, 1) ? give_up(o, rc, p->err)
							   : retry(s, o, p->err);
			if (status)
				break;
			continue;
		}
		if (run_step(p, cfg, o, s, &ro, &status)) {
			run_obs_free(&ro);
			break;
		}
		sleep_ms = s->errors ? 0 : next_poll_ms(s->res.phase, o);
		run_obs_free(&ro);
		if (sleep_ms > 0)
			usleep((useconds_t)sleep_ms * 1000);
	}
	if (o->report && (int)s->cur >= 0)
		report_phase(o->report, s->cur, mono_ms() - s->phase_start);
	if (o->report)
		json_object_set_new(o->report, "seconds",
				    json_real((double)(mono_ms() - s->started) / 1000.0));
	free(s);
	return status;
}
