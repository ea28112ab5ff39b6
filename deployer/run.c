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

/* Performs one action; 0 or the platform's error (already in p->err). */
static int perform(struct platform *p, const struct deploy_cfg *cfg, const struct deploy_act *a,
		   const struct run_obs *ro, int64_t obs_mono, int64_t waited_ms,
		   struct run_tell *t, const struct run_opts *o, struct summary *sum, size_t *n_sum)
{
	const struct deploy_colour_obs *c = deploy_obs_find(&ro->obs, a->sha);
	long conns = c ? deploy_colour_connections(c) : -1;
	long lost = colour_lost(c);
	const char *event = NULL;
	struct platform_event ev[RUN_EVENTS_MAX];
	size_t n_ev;
	int rc = 0, untold = 0, moved = 0;
	int64_t t0 = mono_ms();

	switch (a->kind) {
	case DEPLOY_ACT_CREATE:
		rc = p->ops->create(p, a->sha, a->replicas);
		if (rc == -EEXIST) {
			rc = 0;
			untold = 1; /* created by an earlier run, which told it */
		}
		event = "create";
		break;
	case DEPLOY_ACT_SCALE:
		rc = p->ops->scale(p, a->sha, a->replicas);
		event = "scale";
		break;
	case DEPLOY_ACT_SELECT:
		rc = p->ops->select(p, a->sha);
		event = "select";
		break;
	case DEPLOY_ACT_META:
		rc = p->ops->meta_set(p, a->sha, a->key, a->has_value ? a->value : NULL);
		if (rc == -ENOENT) {
			rc = 0;
			untold = 1; /* the colour is gone: nothing happened to it */
		}
		break;
	case DEPLOY_ACT_REMOVE:
		rc = p->ops->remove(p, a->sha);
		if (rc == -ENOENT) {
			rc = 0;
			untold = 1;
		}
		event = "remove";
		break;
	case DEPLOY_ACT_MOVE:
		if (!p->ops->move) {
			rc = platform_error(p, -ENOTSUP, "the %s platform cannot move sessions",
					    p->ops->name);
			break;
		}
		rc = p->ops->move(p, a->sha, a->name, a->count, &moved);
		if (rc == -ENOENT) {
			rc = 0; /* the replica went meanwhile: nothing to move there */
			moved = 0;
		}
		event = "assist";
		break;
	case DEPLOY_ACT_REMOVE_REPLICA:
		rc = p->ops->remove_replica(p, a->sha, a->name);
		/*
		 * Busy now (a client arrived, or a busy pod would go first): not a
		 * failure, the next poll decides again. Counted as one, a long wait
		 * would make the deploy give up in the middle of a drain.
		 */
		if (rc == -EBUSY) {
			log_debug("shrink-later", "sha=%s replica=%s reason=\"%s\"", a->sha,
				  a->name, p->err);
			return 0;
		}
		event = "remove-replica";
		break;
	}
	if (rc < 0) {
		fprintf(stderr, "rainbow: %s chat-%s failed: %s\n", event ? event : "meta", a->sha,
			p->err);
		return rc;
	}
	n_ev = untold ? 0 : run_action_events(cfg, &ro->obs, a, waited_ms, ev);
	for (size_t i = 0; i < n_ev; i++)
		tell(p, t, a->sha, &ev[i]);
	if (event) {
		json_t *e = json_pack("{s:s,s:s,s:s,s:I,s:I}", "event", event, "sha", a->sha, "why",
				      deploy_why_name(a->why), "connections", (json_int_t)conns,
				      "op_ms", (json_int_t)(mono_ms() - t0));

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
			const struct deploy_colour_obs *old =
				deploy_obs_find(&ro->obs, ro->obs.selected);

			json_object_set_new(e, "deselected", json_string(ro->obs.selected));
			json_object_set_new(e, "deselected_at",
					    json_real((double)ro->obs.now_ms / 1000.0));
			json_object_set_new(
				e, "deselected_connections",
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
	if (!o->quiet && a->kind == DEPLOY_ACT_REMOVE_REPLICA)
		fprintf(o->out, "  shrink chat-%s: removed replica %s (0 connections)\n", a->sha,
			a->name);
	if ((a->why == DEPLOY_WHY_DRAINED || a->why == DEPLOY_WHY_MAX_DRAIN) && *n_sum < 64) {
		struct summary *s = &sum[(*n_sum)++];

		snprintf(s->sha, sizeof(s->sha), "%s", a->sha);
		char lost_note[96] = "";

		if (lost > 0)
			snprintf(lost_note, sizeof(lost_note),
				 "; %ld connections lost in crashes (not drained)", lost);
		if (a->why == DEPLOY_WHY_DRAINED)
			snprintf(s->what, sizeof(s->what), "drained in %.1fs, %s%s",
				 (double)a->drain_ms / 1000.0,
				 a->kind == DEPLOY_ACT_SCALE ? "kept at 0 replicas" : "deleted",
				 lost_note);
		else
			snprintf(s->what, sizeof(s->what),
				 "passed --max-drain after %.1fs with %ld connections: shut down "
				 "(system-shutdown)",
				 (double)a->drain_ms / 1000.0, conns);
		if (!o->quiet)
			fprintf(o->out, "  chat-%s %s\n", s->sha, s->what);
	}
	if (!o->quiet && a->kind == DEPLOY_ACT_META && a->has_value &&
	    strcmp(a->key, DEPLOY_META_MAX_DRAIN_AT) == 0 && *n_sum < 64) {
		struct summary *s = &sum[(*n_sum)++];

		snprintf(s->sha, sizeof(s->sha), "%s", a->sha);
		snprintf(s->what, sizeof(s->what),
			 "passed --max-drain with %ld connections: "
			 "kept draining (rainbow prune deletes it once drained)",
			 conns);
		fprintf(o->out, "  chat-%s %s\n", s->sha, s->what);
	}
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
 * a read-only state directory,
 * and the switch target itself missing (namespace/Service gone, local switch
 * down). Retrying them would only print the same message again.
 */
static int run_error_is_fatal(int rc, int selecting)
{
	/* A read-only state dir stays read-only; a full one may get space back. */
	return rc == -EACCES || rc == -EROFS || (selecting && rc == -ENOENT);
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
	s->obs = ro.obs;
	for (size_t i = 0; i < ro.n && i < SIM_COLOURS; i++) {
		s->col[i] = ro.colours[i];
		s->col[i].n_rep =
			ro.colours[i].n_rep < SIM_REPLICAS ? ro.colours[i].n_rep : SIM_REPLICAS;
		memcpy(s->rep[i], ro.colours[i].rep, s->col[i].n_rep * sizeof(s->rep[i][0]));
		s->col[i].rep = s->rep[i];
		s->n++;
	}
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
			size_t before = p->dry_run ? json_array_size(p->dry_run) : 0;
			json_t *e = json_pack("{s:s,s:s,s:s}", "phase",
					      deploy_phase_name(res->phase), "action",
					      act_name(a->kind), "sha", a->sha),
			       *reqs = json_array();

			if (a->kind == DEPLOY_ACT_CREATE || a->kind == DEPLOY_ACT_SCALE)
				json_object_set_new(e, "replicas", json_integer(a->replicas));
			if (a->kind == DEPLOY_ACT_META) {
				json_object_set_new(e, "key", json_string(a->key));
				json_object_set_new(e, "value",
						    a->has_value ? json_string(a->value)
								 : json_null());
			}
			if (a->why != DEPLOY_WHY_NONE)
				json_object_set_new(e, "why", json_string(deploy_why_name(a->why)));
			rc = dry_perform(p, a);
			if (rc < 0 && rc != -EEXIST && rc != -ENOENT) {
				json_decref(e);
				json_decref(reqs);
				fprintf(stderr, "rainbow: %s chat-%s: %s\n", act_name(a->kind),
					a->sha, p->err);
				status = run_exit_for_error(rc);
				run_report_failure(report, status, p->err);
				goto out;
			}
			for (size_t k = before; p->dry_run && k < json_array_size(p->dry_run); k++)
				json_array_append(reqs, json_array_get(p->dry_run, k));
			json_object_set_new(e, "requests", reqs);
			json_array_append_new(steps, e);
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

int run_deploy(struct platform *p, const struct deploy_cfg *cfg, const struct run_opts *o)
{
	struct deploy_mem *mem = malloc(sizeof(*mem));
	struct deploy_result *res = malloc(sizeof(*res));
	struct summary sum[64];
	struct forecast_track *track = calloc(RUN_FORECAST_TRACK, sizeof(*track));
	size_t n_sum = 0, n_seen = 0;
	struct seen *seen = calloc(RUN_SEEN_MAX, sizeof(*seen));
	enum deploy_phase cur = (enum deploy_phase) - 1;
	int64_t started = mono_ms(), phase_start = started, last_print = 0;
	int64_t wait_start = 0; /* began waiting for the target to be ready (0: not) */
	struct run_tell tell_state = { 0 };
	int errors = 0, status = RUN_EXIT_FAILED, last_rc = 0, target_seen = 0;

	if (!mem || !res || !track || !seen) {
		fprintf(stderr, "rainbow: out of memory\n");
		run_report_failure(o->report, status, "out of memory");
		goto out;
	}
	deploy_mem_init(mem);
	for (;;) {
		struct run_obs ro;
		struct forecast *fc = NULL;
		int failed = 0;
		int64_t sleep_ms = (int64_t)(o->poll_s * 1000.0);
		int64_t obs_mono;
		int orc = run_observe(p, &ro);

		if (orc < 0) {
			fprintf(stderr, "rainbow: observing the platform failed: %s\n", p->err);
			if (run_error_is_fatal(orc, 1)) {
				fprintf(stderr, "rainbow: giving up: retrying cannot fix this\n");
				status = run_exit_for_error(orc);
				run_report_failure(o->report, status, p->err);
				goto out;
			}
			if (++errors >= RUN_MAX_ERRORS) {
				fprintf(stderr, "rainbow: giving up after %d failed steps\n",
					errors);
				status = RUN_EXIT_GAVE_UP;
				run_report_failure(o->report, status, p->err);
				goto out;
			}
			usleep((useconds_t)run_backoff_ms(errors, 0) * 1000);
			continue;
		}
		obs_mono = mono_ms();
		run_timeline(o->state_dir, &ro);
		if (o->report) {
			if (!json_object_get(o->report, "selected_before"))
				json_object_set_new(o->report, "selected_before",
						    json_string(ro.obs.selected));
			json_object_set_new(o->report, "selected", json_string(ro.obs.selected));
			json_object_set_new(o->report, "colours", run_colours_json(&ro));
		}
		report_replicas(o, &ro, seen, &n_seen);
		deploy_step(cfg, &ro.obs, mem, res);
		fc = calloc(ro.n ? ro.n : 1, sizeof(*fc));
		if (fc)
			forecast_all(&ro, fc, track, o);
		if (res->phase != cur) {
			int64_t now = mono_ms();

			if ((int)cur >= 0) {
				print_phase_end(o, cur, cfg->sha, now - phase_start, res);
				report_phase(o->report, cur, now - phase_start);
			}
			cur = res->phase;
			phase_start = now;
			if (!o->quiet && cur == DEPLOY_PHASE_DRAIN && res->draining)
				fprintf(o->out, "  %d old colour(s) draining\n", res->draining);
		} else if (!o->quiet && cur == DEPLOY_PHASE_DRAIN &&
			   mono_ms() - last_print >= 5000) {
			/* A heartbeat while draining: what is left per colour. */
			last_print = mono_ms();
			fprintf(o->out, "  draining:");
			for (size_t i = 0; i < ro.n; i++) {
				char eta[48];

				if (deploy_colour_state(&ro.colours[i], ro.obs.selected) !=
				    DEPLOY_STATE_DRAINING)
					continue;
				fprintf(o->out, " chat-%s=%ld%s", ro.colours[i].c.sha,
					deploy_colour_connections(&ro.colours[i]),
					platform_meta_get(&ro.colours[i].c,
							  DEPLOY_META_ASSIST_SINCE)
						? " assisted"
						: "");
				if (fc)
					fprintf(o->out, " (%s)",
						run_forecast_text(&fc[i], eta, sizeof(eta)));
			}
			fprintf(o->out, " (%.0fs)\n", (double)(mono_ms() - phase_start) / 1000.0);
			fflush(o->out);
		}
		if (!wait_start &&
		    (res->phase == DEPLOY_PHASE_CREATE || res->phase == DEPLOY_PHASE_READY))
			wait_start = obs_mono;
		target_seen = cfg->sha[0] && deploy_obs_find(&ro.obs, cfg->sha) != NULL;
		for (size_t i = 0; i < res->n_act; i++) {
			const struct deploy_act *a = &res->act[i];
			int prc = perform(p, cfg, a, &ro, obs_mono,
					  wait_start ? obs_mono - wait_start : -1, &tell_state, o,
					  sum, &n_sum);

			if (prc == 0 && a->kind == DEPLOY_ACT_SELECT)
				wait_start = 0;

			if (prc < 0) {
				failed = 1;
				last_rc = prc;
				if (run_error_is_fatal(prc, res->act[i].kind == DEPLOY_ACT_SELECT))
					failed = 2;
				break; /* decide again from what is there now */
			}
		}
		run_obs_free(&ro);
		free(fc);
		if (failed == 2) {
			fprintf(stderr, "rainbow: giving up: retrying cannot fix this\n");
			status = run_exit_for_error(last_rc);
			run_report_failure(o->report, status, p->err);
			goto out;
		}
		if (failed) {
			if (++errors >= RUN_MAX_ERRORS) {
				fprintf(stderr, "rainbow: giving up after %d failed steps\n",
					errors);
				status = RUN_EXIT_GAVE_UP;
				run_report_failure(o->report, status, p->err);
				goto out;
			}
			/* A step that failed is retried after a backoff, never at once. */
			usleep((useconds_t)run_backoff_ms(errors, 0) * 1000);
			continue;
		} else {
			errors = 0;
		}
		if (res->phase == DEPLOY_PHASE_FAILED && !failed) {
			json_t *e = json_pack("{s:s,s:s,s:s}", "event", "failed", "sha", cfg->sha,
					      "reason", res->msg);

			run_record(o->state_dir, e);
			if (target_seen) {
				struct platform_event fe = { "Warning", "Failed", "Deploy", "" };

				snprintf(fe.note, sizeof(fe.note), "%s", res->msg);
				tell(p, &tell_state, cfg->sha, &fe);
			}
			fprintf(stderr, "rainbow: deploy failed: %s\n", res->msg);
			status = res->failure == DEPLOY_FAIL_NO_TARGET ? RUN_EXIT_NO_TARGET
								       : RUN_EXIT_NOT_READY;
			run_report_failure(o->report, status, res->msg);
			goto out;
		}
		if (res->phase == DEPLOY_PHASE_DONE) {
			json_t *e = json_pack("{s:s,s:s,s:f}", "event", "done", "sha", cfg->sha,
					      "seconds", (double)(mono_ms() - started) / 1000.0);

			run_record(o->state_dir, e);
			if (!o->quiet) {
				fprintf(o->out, "done in %.2fs\n",
					(double)(mono_ms() - started) / 1000.0);
				if (n_sum)
					fprintf(o->out, "summary:\n");
				for (size_t i = 0; i < n_sum; i++)
					fprintf(o->out, "  chat-%s: %s\n", sum[i].sha, sum[i].what);
				fflush(o->out);
			}
			status = RUN_EXIT_OK;
			goto out;
		}
		if (res->phase == DEPLOY_PHASE_SWITCH || res->phase == DEPLOY_PHASE_CREATE ||
		    res->phase == DEPLOY_PHASE_SCALE)
			sleep_ms = 0; /* the next step follows at once */
		else if (res->phase == DEPLOY_PHASE_READY && sleep_ms > RUN_READY_POLL_MS)
			sleep_ms = RUN_READY_POLL_MS;
		if (sleep_ms > 0)
			usleep((useconds_t)sleep_ms * 1000);
	}
out:
	if (o->report && (int)cur >= 0)
		report_phase(o->report, cur, mono_ms() - phase_start);
	if (o->report)
		json_object_set_new(o->report, "seconds",
				    json_real((double)(double)(mono_ms() - started) / 1000.0));
	free(seen);
	free(mem);
	free(res);
	free(track);
	return status;
}
