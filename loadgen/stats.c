/*
 * chatload's counters, histograms and timeline: the JSON report, its merge
 * from workers' reports and the CSV timeline.
 */
#include "stats.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "opts.h"
#include "unconst.h"
#include "version.h"

/* The plain uint64 counters, by report name: serialized and merged alike. */
static const struct {
	const char *name;
	size_t off;
} stats_counters[] = {
	{ "connections", offsetof(struct stats, connections) },
	{ "logins", offsetof(struct stats, logins) },
	{ "closed_by_client", offsetof(struct stats, closed_by_client) },
	{ "closes_unacknowledged", offsetof(struct stats, closes_unacknowledged) },
	{ "closed_by_server_total", offsetof(struct stats, closed_by_server) },
	{ "dropped", offsetof(struct stats, dropped) },
	{ "connect_failures", offsetof(struct stats, connect_failures) },
	{ "login_failures", offsetof(struct stats, login_failures) },
	{ "ping_timeouts", offsetof(struct stats, ping_timeouts) },
	{ "migrated", offsetof(struct stats, migrated) },
	{ "resumed", offsetof(struct stats, resumed) },
	{ "resume_failed", offsetof(struct stats, resume_failed) },
	{ "messages_sent", offsetof(struct stats, messages_sent) },
	{ "messages_delivered", offsetof(struct stats, messages_delivered) },
	{ "messages_lost", offsetof(struct stats, messages_lost) },
	{ "messages_duplicated", offsetof(struct stats, messages_duplicated) },
	{ "messages_bounced", offsetof(struct stats, messages_bounced) },
	{ "messages_late", offsetof(struct stats, messages_late) },
	{ "messages_misdelivered", offsetof(struct stats, messages_misdelivered) },
	{ "messages_offline", offsetof(struct stats, messages_offline) },
	{ "messages_foreign", offsetof(struct stats, messages_foreign) },
	{ "pings_sent", offsetof(struct stats, pings_sent) },
	{ "pongs", offsetof(struct stats, pongs) },
	{ "server_pings", offsetof(struct stats, server_pings) },
};
#define STATS_NCOUNTERS (sizeof(stats_counters) / sizeof(stats_counters[0]))

static uint64_t *stats_counter(struct stats *s, size_t i)
{
	return (uint64_t *)(void *)((char *)s + stats_counters[i].off);
}

static uint64_t stats_counter_get(const struct stats *s, size_t i)
{
	return *(const uint64_t *)(const void *)((const char *)s + stats_counters[i].off);
}

struct stats *stats_new(void)
{
	struct stats *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	hist_init(&s->latency_us);
	hist_init(&s->login_us);
	hist_init(&s->reconnect_gap_us);
	hist_init(&s->reconnect_gap_other_us);
	hist_init(&s->latency_window_us);
	s->ramp_s = -1;
	return s;
}

void stats_free(struct stats *s)
{
	if (!s)
		return;
	free(s->rows);
	free(s);
}

static void stats_copy_name(char *dst, const char *src)
{
	snprintf(dst, STATS_NAME_LEN, "%s", src && *src ? src : "unknown");
}

void stats_names_add(struct stats_names *n, const char *name, uint64_t count)
{
	unsigned i;

	for (i = 0; i < n->n; i++) {
		if (strncmp(n->e[i].name, name, STATS_NAME_LEN - 1) == 0) {
			n->e[i].count += count;
			return;
		}
	}
	if (n->n == STATS_MAX_NAMES) {
		stats_copy_name(n->e[STATS_MAX_NAMES - 1].name, "other");
		n->e[STATS_MAX_NAMES - 1].count += count;
		return;
	}
	stats_copy_name(n->e[n->n].name, name);
	n->e[n->n++].count = count;
}

unsigned stats_version_index(struct stats *s, const char *label)
{
	unsigned i;

	for (i = 0; i < s->nversions; i++)
		if (strncmp(s->versions[i].label, label, STATS_NAME_LEN - 1) == 0)
			return i;
	if (s->nversions == STATS_MAX_VERSIONS) {
		stats_copy_name(s->versions[STATS_MAX_VERSIONS - 1].label, "other");
		return STATS_MAX_VERSIONS - 1;
	}
	stats_copy_name(s->versions[s->nversions].label, label);
	return s->nversions++;
}

unsigned stats_instance_index(struct stats *s, unsigned version, const char *name)
{
	unsigned i;

	for (i = 0; i < s->ninstances; i++)
		if (s->instances[i].version == version &&
		    strncmp(s->instances[i].name, name, STATS_NAME_LEN - 1) == 0)
			return i;
	if (s->ninstances == STATS_MAX_INSTANCES)
		return STATS_MAX_INSTANCES - 1;
	stats_copy_name(s->instances[s->ninstances].name, name);
	s->instances[s->ninstances].version = version;
	return s->ninstances++;
}

void stats_mark_end(struct stats *s)
{
	s->connected_end = s->connected;
	for (unsigned v = 0; v < s->nversions; v++)
		s->versions[v].connected_end = s->versions[v].connected;
	for (unsigned i = 0; i < s->ninstances; i++)
		s->instances[i].connected_end = s->instances[i].connected;
}

static struct stats_row *stats_row_at(struct stats *s, size_t idx)
{
	while (s->nrows <= idx) {
		struct stats_row *r;
		if (s->nrows == s->caprows) {
			size_t cap = s->caprows ? s->caprows * 2 : 256;
			r = realloc(s->rows, cap * sizeof(*r));
			if (!r)
				return NULL;
			s->rows = r;
			s->caprows = cap;
		}
		r = &s->rows[s->nrows];
		/* A new row carries the cumulative counters of the one before. */
		if (s->nrows)
			*r = s->rows[s->nrows - 1];
		else
			memset(r, 0, sizeof(*r));
		r->connected = 0;
		memset(r->per_version, 0, sizeof(r->per_version));
		s->nrows++;
	}
	return &s->rows[idx];
}

int stats_sample(struct stats *s, size_t second)
{
	struct stats_row *r;

	if (second == 0)
		return 0;
	r = stats_row_at(s, second - 1);
	if (!r)
		return -ENOMEM;
	r->logins = s->logins;
	r->dropped = s->dropped + s->ping_timeouts;
	r->server_closed = s->closed_by_server;
	r->sent = s->messages_sent;
	r->delivered = s->messages_delivered;
	r->lost = s->messages_lost;
	r->connected = s->connected;
	for (unsigned v = 0; v < s->nversions; v++)
		r->per_version[v] = s->versions[v].connected;
	return 0;
}

/* ------------------------------------------------------------ serialization */

static json_t *stats_names_json(const struct stats_names *n)
{
	json_t *o = json_object();

	for (unsigned i = 0; i < n->n; i++)
		json_object_set_new(o, n->e[i].name, json_integer((json_int_t)n->e[i].count));
	return o;
}

static json_t *stats_hist_summary(const struct hist *h)
{
	json_t *o = json_object();

	json_object_set_new(o, "count", json_integer((json_int_t)h->count));
	json_object_set_new(o, "min", json_real(h->count ? (double)h->min / 1000.0 : 0));
	json_object_set_new(o, "mean",
			    json_real(h->count ? (double)h->sum / (double)h->count / 1000.0 : 0));
	json_object_set_new(o, "p50", json_real((double)hist_quantile(h, 0.50) / 1000.0));
	json_object_set_new(o, "p90", json_real((double)hist_quantile(h, 0.90) / 1000.0));
	json_object_set_new(o, "p99", json_real((double)hist_quantile(h, 0.99) / 1000.0));
	json_object_set_new(o, "max", json_real((double)h->max / 1000.0));
	return o;
}

static json_t *stats_hist_raw(const struct hist *h)
{
	json_t *o = json_object();
	json_t *b = json_array();

	json_object_set_new(o, "count", json_integer((json_int_t)h->count));
	json_object_set_new(o, "sum", json_integer((json_int_t)h->sum));
	json_object_set_new(o, "min", json_integer(h->count ? (json_int_t)h->min : 0));
	json_object_set_new(o, "max", json_integer((json_int_t)h->max));
	for (unsigned i = 0; i < HIST_BUCKETS; i++)
		if (h->buckets[i])
			json_array_append_new(
				b, json_pack("[II]", (json_int_t)i, (json_int_t)h->buckets[i]));
	json_object_set_new(o, "buckets", b);
	return o;
}

static json_t *stats_timeline_json(const struct stats *s)
{
	json_t *o = json_object();
	json_t *vers = json_array();
	json_t *rows = json_array();

	for (unsigned v = 0; v < s->nversions; v++)
		json_array_append_new(vers, json_string(s->versions[v].label));
	for (size_t i = 0; i < s->nrows; i++) {
		const struct stats_row *r = &s->rows[i];
		json_t *a = json_pack("[IIIIIIII]", (json_int_t)(i + 1), (json_int_t)r->connected,
				      (json_int_t)r->logins, (json_int_t)r->dropped,
				      (json_int_t)r->server_closed, (json_int_t)r->sent,
				      (json_int_t)r->delivered, (json_int_t)r->lost);
		for (unsigned v = 0; v < s->nversions; v++)
			json_array_append_new(a, json_integer(r->per_version[v]));
		json_array_append_new(rows, a);
	}
	json_object_set_new(o, "columns",
			    json_pack("[ssssssss]", "t", "connected", "logins", "dropped",
				      "server_closed", "sent", "delivered", "lost"));
	json_object_set_new(o, "versions", vers);
	json_object_set_new(o, "rows", rows);
	return o;
}

static const char *const stats_expect_names[] = { "zero-drops", "zero-loss", "no-server-close" };

unsigned stats_expect_flags(const struct load_opts *o)
{
	return (o->expect_zero_drops ? STATS_EXPECT_ZERO_DROPS : 0) |
	       (o->expect_zero_loss ? STATS_EXPECT_ZERO_LOSS : 0) |
	       (o->expect_no_server_close ? STATS_EXPECT_NO_SERVER_CLOSE : 0);
}

static json_t *stats_expectations_json(unsigned flags)
{
	json_t *a = json_array();

	for (unsigned i = 0; i < 3; i++)
		if (flags & (1u << i))
			json_array_append_new(a, json_string(stats_expect_names[i]));
	return a;
}

json_t *stats_report_json(const struct stats *s, const struct load_opts *o)
{
	json_t *r = json_object();
	json_t *pv = json_object(), *pairs = json_array(), *csb, *hists;

	json_object_set_new(r, "chatload_version", json_string(rainbow_version));
	if (o) {
		json_t *srv = json_array();
		for (unsigned i = 0; i < o->nservers; i++)
			json_array_append_new(srv, json_string(o->server_names[i]));
		json_object_set_new(r, "servers", srv);
		json_object_set_new(r, "domain", json_string(o->domain));
		json_object_set_new(r, "pods", json_integer(o->pods ? o->pods : 1));
		json_object_set_new(r, "workers",
				    json_integer(o->workers * (o->pods ? o->pods : 1)));
		json_object_set_new(r, "clients", json_integer(o->clients));
		json_object_set_new(r, "message_rate", json_real(o->message_rate));
		json_object_set_new(r, "loss_timeout_s", json_real(o->loss_timeout));
		json_object_set_new(r, "workers_failed", json_integer(s->workers_failed));
		json_object_set_new(r, "workers_failed_clients",
				    json_integer((json_int_t)s->workers_failed_clients));
		json_object_set_new(r, "expectations",
				    stats_expectations_json(stats_expect_flags(o) | s->expect));
	}
	json_object_set_new(r, "duration_s", json_real(s->elapsed_s));
	json_object_set_new(r, "ramp_s",
			    s->ramp_s >= 0 && !s->ramp_never ? json_real(s->ramp_s) : json_null());
	json_object_set_new(r, "connected_peak", json_integer(s->connected_peak));
	json_object_set_new(r, "connected_end", json_integer(s->connected_end));
	for (size_t i = 0; i < STATS_NCOUNTERS; i++)
		json_object_set_new(r, stats_counters[i].name,
				    json_integer((json_int_t)stats_counter_get(s, i)));
	csb = stats_names_json(&s->server_conditions);
	json_object_set_new(r, "closed_by_server", csb);
	json_object_set_new(r, "dropped_by_reason", stats_names_json(&s->drop_reasons));
	json_object_set_new(r, "login_failures_by_reason",
			    stats_names_json(&s->login_failure_reasons));
	json_object_set_new(r, "connect_failures_by_reason",
			    stats_names_json(&s->connect_failure_reasons));
	json_object_set_new(r, "messages_cross_worker",
			    json_pack("{sIsIsI}", "sent", (json_int_t)s->cross.sent, "delivered",
				      (json_int_t)s->cross.delivered, "lost",
				      (json_int_t)s->cross.lost));
	json_object_set_new(r, "latency_ms", stats_hist_summary(&s->latency_us));
	json_object_set_new(r, "login_ms", stats_hist_summary(&s->login_us));
	json_object_set_new(r, "reconnect_gap_ms", stats_hist_summary(&s->reconnect_gap_us));
	json_object_set_new(r, "reconnect_gap_other_ms",
			    stats_hist_summary(&s->reconnect_gap_other_us));
	json_object_set_new(r, "window",
			    s->window_us || s->window_open
				    ? json_pack("{s:f,s:o}", "seconds", (double)s->window_us / 1e6,
						"latency_ms",
						stats_hist_summary(&s->latency_window_us))
				    : json_null());

	for (unsigned v = 0; v < s->nversions; v++) {
		const struct stats_version *ver = &s->versions[v];
		json_t *e = json_object(), *inst = json_object();
		json_object_set_new(e, "logins", json_integer((json_int_t)ver->logins));
		json_object_set_new(e, "connected_end", json_integer(ver->connected_end));
		json_object_set_new(e, "connected_peak", json_integer(ver->peak));
		for (unsigned i = 0; i < s->ninstances; i++) {
			const struct stats_instance *in = &s->instances[i];
			if (in->version != v)
				continue;
			json_object_set_new(inst, in->name,
					    json_pack("{sIsI}", "logins", (json_int_t)in->logins,
						      "connected_end",
						      (json_int_t)in->connected_end));
		}
		json_object_set_new(e, "instances", inst);
		json_object_set_new(pv, ver->label, e);
	}
	json_object_set_new(r, "per_version", pv);

	for (unsigned a = 0; a < s->nversions; a++) {
		for (unsigned b = 0; b < s->nversions; b++) {
			const struct stats_pair *p = &s->pairs[a][b];
			if (!p->sent && !p->delivered && !p->bounced && !p->duplicated)
				continue;
			json_t *e = json_pack("{ssss}", "from", s->versions[a].label, "to",
					      s->versions[b].label);
			json_object_set_new(e, "sent", json_integer((json_int_t)p->sent));
			json_object_set_new(e, "delivered", json_integer((json_int_t)p->delivered));
			json_object_set_new(e, "lost", json_integer((json_int_t)p->lost));
			json_object_set_new(e, "bounced", json_integer((json_int_t)p->bounced));
			json_object_set_new(e, "duplicated",
					    json_integer((json_int_t)p->duplicated));
			json_array_append_new(pairs, e);
		}
	}
	json_object_set_new(r, "message_pairs", pairs);
	if (o) {
		json_object_set_new(r, "ok", json_boolean(stats_expectations_ok(s, o, NULL)));
	}
	hists = json_object();
	json_object_set_new(hists, "latency_us", stats_hist_raw(&s->latency_us));
	json_object_set_new(hists, "login_us", stats_hist_raw(&s->login_us));
	json_object_set_new(hists, "reconnect_gap_us", stats_hist_raw(&s->reconnect_gap_us));
	json_object_set_new(hists, "reconnect_gap_other_us",
			    stats_hist_raw(&s->reconnect_gap_other_us));
	json_object_set_new(r, "histograms", hists);
	json_object_set_new(r, "timeline", stats_timeline_json(s));
	return r;
}

json_t *stats_status_json(const struct stats *s)
{
	json_t *r = json_object(), *pv = json_object(), *hists = json_object();

	for (size_t i = 0; i < STATS_NCOUNTERS; i++)
		json_object_set_new(r, stats_counters[i].name,
				    json_integer((json_int_t)stats_counter_get(s, i)));
	json_object_set_new(r, "connected_end", json_integer(s->connected));
	for (unsigned v = 0; v < s->nversions; v++)
		json_object_set_new(
			pv, s->versions[v].label,
			json_pack("{sI}", "connected_end", (json_int_t)s->versions[v].connected));
	json_object_set_new(r, "per_version", pv);
	json_object_set_new(hists, "latency_us", stats_hist_raw(&s->latency_us));
	json_object_set_new(r, "histograms", hists);
	return r;
}

/* ------------------------------------------------------------------ merging */

static uint64_t stats_json_u64(const json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	if (!json_is_integer(v) || json_integer_value(v) <= 0)
		return 0;
	return (uint64_t)json_integer_value(v);
}

static void stats_merge_names(struct stats_names *n, const json_t *o)
{
	const char *k;
	json_t *v;

	if (!json_is_object(o))
		return;
	json_object_foreach ((json_t *)unconst(o), k, v)
		if (json_is_integer(v))
			stats_names_add(n, k, (uint64_t)json_integer_value(v));
}

static int stats_merge_hist(struct hist *h, const json_t *o)
{
	size_t i;
	json_t *b, *e;
	uint64_t count, mn, mx;

	if (!o)
		return 0;
	if (!json_is_object(o))
		return -EINVAL;
	count = stats_json_u64(o, "count");
	if (!count)
		return 0;
	mn = stats_json_u64(o, "min");
	mx = stats_json_u64(o, "max");
	h->count += count;
	h->sum += stats_json_u64(o, "sum");
	if (mn < h->min)
		h->min = mn;
	if (mx > h->max)
		h->max = mx;
	b = json_object_get(o, "buckets");
	json_array_foreach (b, i, e) {
		json_t *idx = json_array_get(e, 0), *cnt = json_array_get(e, 1);
		if (!json_is_integer(idx) || !json_is_integer(cnt) || json_integer_value(idx) < 0)
			return -EINVAL;
		hist_add_bucket(h, (unsigned)json_integer_value(idx),
				(uint64_t)json_integer_value(cnt));
	}
	return 0;
}

static int stats_merge_timeline(struct stats *s, const json_t *tl)
{
	json_t *vers = json_object_get(tl, "versions"), *rows = json_object_get(tl, "rows");
	unsigned map[STATS_MAX_VERSIONS];
	size_t nv = json_array_size(vers), nr = json_array_size(rows), i, total, old_n;
	struct stats_row last, base;

	if (!tl)
		return 0;
	if (!json_is_array(vers) || !json_is_array(rows) || nv > STATS_MAX_VERSIONS)
		return -EINVAL;
	for (i = 0; i < nv; i++) {
		const char *l = json_string_value(json_array_get(vers, i));
		map[i] = stats_version_index(s, l ? l : "unknown");
	}
	memset(&last, 0, sizeof(last));
	/* Rows this merge adds start from what the merged ones ended with. */
	old_n = s->nrows;
	if (old_n)
		base = s->rows[old_n - 1];
	else
		memset(&base, 0, sizeof(base));
	total = nr > s->nrows ? nr : s->nrows;
	for (i = 0; i < total; i++) {
		struct stats_row *r = stats_row_at(s, i);
		if (!r)
			return -EINVAL;
		if (i >= old_n) {
			r->logins = base.logins;
			r->dropped = base.dropped;
			r->server_closed = base.server_closed;
			r->sent = base.sent;
			r->delivered = base.delivered;
			r->lost = base.lost;
		}
		if (i < nr) {
			json_t *a = json_array_get(rows, i);
			if (!json_is_array(a) || json_array_size(a) < 8 + nv)
				return -EINVAL;
			memset(&last, 0, sizeof(last));
			last.connected = (uint32_t)json_integer_value(json_array_get(a, 1));
			last.logins = (uint64_t)json_integer_value(json_array_get(a, 2));
			last.dropped = (uint64_t)json_integer_value(json_array_get(a, 3));
			last.server_closed = (uint64_t)json_integer_value(json_array_get(a, 4));
			last.sent = (uint64_t)json_integer_value(json_array_get(a, 5));
			last.delivered = (uint64_t)json_integer_value(json_array_get(a, 6));
			last.lost = (uint64_t)json_integer_value(json_array_get(a, 7));
			for (size_t v = 0; v < nv; v++)
				last.per_version[v] =
					(uint32_t)json_integer_value(json_array_get(a, 8 + v));
			r->connected += last.connected;
			for (size_t v = 0; v < nv; v++)
				r->per_version[map[v]] += last.per_version[v];
		}
		/* A shorter timeline carries its cumulative counters forward. */
		r->logins += last.logins;
		r->dropped += last.dropped;
		r->server_closed += last.server_closed;
		r->sent += last.sent;
		r->delivered += last.delivered;
		r->lost += last.lost;
	}
	return 0;
}

int stats_merge_json(struct stats *s, const json_t *r)
{
	const char *k;
	json_t *v, *pv, *pairs, *hists;
	size_t i;
	double d;
	uint32_t wpeak;

	if (!json_is_object(r))
		return -EINVAL;
	for (i = 0; i < STATS_NCOUNTERS; i++)
		*stats_counter(s, i) += stats_json_u64(r, stats_counters[i].name);
	v = json_object_get(r, "messages_cross_worker");
	s->cross.sent += stats_json_u64(v, "sent");
	s->cross.delivered += stats_json_u64(v, "delivered");
	s->cross.lost += stats_json_u64(v, "lost");
	s->workers_failed += (uint32_t)stats_json_u64(r, "workers_failed");
	s->workers_failed_clients += stats_json_u64(r, "workers_failed_clients");
	json_array_foreach (json_object_get(r, "expectations"), i, v)
		for (unsigned e = 0; e < 3; e++)
			if (json_is_string(v) &&
			    strcmp(json_string_value(v), stats_expect_names[e]) == 0)
				s->expect |= 1u << e;
	/* A report's connected_end is its end snapshot; a status line's is the
	 * live gauge the progress line shows: both are sums over workers. */
	s->connected += (uint32_t)stats_json_u64(r, "connected_end");
	s->connected_end += (uint32_t)stats_json_u64(r, "connected_end");
	wpeak = (uint32_t)stats_json_u64(r, "connected_peak");
	if (wpeak > s->connected_peak)
		s->connected_peak = wpeak;
	stats_merge_names(&s->server_conditions, json_object_get(r, "closed_by_server"));
	stats_merge_names(&s->drop_reasons, json_object_get(r, "dropped_by_reason"));
	stats_merge_names(&s->login_failure_reasons,
			  json_object_get(r, "login_failures_by_reason"));
	stats_merge_names(&s->connect_failure_reasons,
			  json_object_get(r, "connect_failures_by_reason"));
	d = json_number_value(json_object_get(r, "duration_s"));
	if (d > s->elapsed_s)
		s->elapsed_s = d;
	v = json_object_get(r, "ramp_s");
	if (json_is_number(v) && json_number_value(v) > s->ramp_s)
		s->ramp_s = json_number_value(v);
	else if (json_is_null(v))
		s->ramp_never = true; /* that worker never had all its clients at once */

	pv = json_object_get(r, "per_version");
	json_object_foreach (pv, k, v) {
		unsigned vi = stats_version_index(s, k);
		const char *ik;
		json_t *iv;
		s->versions[vi].logins += stats_json_u64(v, "logins");
		s->versions[vi].connected += (uint32_t)stats_json_u64(v, "connected_end");
		s->versions[vi].connected_end += (uint32_t)stats_json_u64(v, "connected_end");
		wpeak = (uint32_t)stats_json_u64(v, "connected_peak");
		if (wpeak > s->versions[vi].peak)
			s->versions[vi].peak = wpeak;
		json_object_foreach (json_object_get(v, "instances"), ik, iv) {
			unsigned ii = stats_instance_index(s, vi, ik);
			s->instances[ii].logins += stats_json_u64(iv, "logins");
			s->instances[ii].connected += (uint32_t)stats_json_u64(iv, "connected_end");
			s->instances[ii].connected_end +=
				(uint32_t)stats_json_u64(iv, "connected_end");
		}
	}
	pairs = json_object_get(r, "message_pairs");
	json_array_foreach (pairs, i, v) {
		const char *from = json_string_value(json_object_get(v, "from"));
		const char *to = json_string_value(json_object_get(v, "to"));
		struct stats_pair *p;
		if (!from || !to)
			return -EINVAL;
		p = &s->pairs[stats_version_index(s, from)][stats_version_index(s, to)];
		p->sent += stats_json_u64(v, "sent");
		p->delivered += stats_json_u64(v, "delivered");
		p->lost += stats_json_u64(v, "lost");
		p->bounced += stats_json_u64(v, "bounced");
		p->duplicated += stats_json_u64(v, "duplicated");
	}
	hists = json_object_get(r, "histograms");
	if (stats_merge_hist(&s->latency_us, json_object_get(hists, "latency_us")) < 0 ||
	    stats_merge_hist(&s->login_us, json_object_get(hists, "login_us")) < 0)
		return -EINVAL;
	/* Older reports have none: nothing to add. */
	if (json_object_get(hists, "reconnect_gap_us") &&
	    stats_merge_hist(&s->reconnect_gap_us, json_object_get(hists, "reconnect_gap_us")) < 0)
		return -EINVAL;
	if (json_object_get(hists, "reconnect_gap_other_us") &&
	    stats_merge_hist(&s->reconnect_gap_other_us,
			     json_object_get(hists, "reconnect_gap_other_us")) < 0)
		return -EINVAL;
	if (stats_merge_timeline(s, json_object_get(r, "timeline")) < 0)
		return -EINVAL;
	/* The peak of several processes at once: at least each one's own, and
	 * the merged timeline's highest sample (per-second resolution). */
	for (i = 0; i < s->nrows; i++) {
		if (s->rows[i].connected > s->connected_peak)
			s->connected_peak = s->rows[i].connected;
		for (unsigned vv = 0; vv < s->nversions; vv++)
			if (s->rows[i].per_version[vv] > s->versions[vv].peak)
				s->versions[vv].peak = s->rows[i].per_version[vv];
	}
	return 0;
}

/* ------------------------------------------------------------------ output */

int stats_write_json(const json_t *r, const char *path)
{
	char tmp[4096];
	int rc;

	errno = 0;
	snprintf(tmp, sizeof(tmp), "%s.tmp%ld", path, (long)getpid());
	if (json_dump_file(r, tmp, JSON_INDENT(2) | JSON_REAL_PRECISION(6)) == 0 &&
	    rename(tmp, path) == 0)
		return 0;
	rc = errno ? -errno : -EIO;
	unlink(tmp);
	return rc;
}

int stats_write_report(const struct stats *s, const struct load_opts *o, const char *path)
{
	json_t *r = stats_report_json(s, o);
	int rc;

	if (!r)
		return -ENOMEM;
	rc = stats_write_json(r, path);
	json_decref(r);
	return rc;
}

void stats_verdict(const struct stats *s, char *buf, size_t len)
{
	unsigned long long drops = (unsigned long long)(s->dropped + s->ping_timeouts);
	unsigned long long lost = (unsigned long long)s->messages_lost;

	int n = snprintf(
		buf, len,
		"%llu dropped connection%s, %llu lost message%s (%llu connections, %llu "
		"messages delivered, %llu bounced, %llu closed by the server",
		drops, drops == 1 ? "" : "s", lost, lost == 1 ? "" : "s",
		(unsigned long long)s->connections, (unsigned long long)s->messages_delivered,
		(unsigned long long)s->messages_bounced, (unsigned long long)s->closed_by_server);

	if (n < 0 || (size_t)n >= len)
		return;
	if (s->migrated)
		n += snprintf(buf + n, len - (size_t)n, ", %llu migrated (%llu resumed)",
			      (unsigned long long)s->migrated, (unsigned long long)s->resumed);
	if (n >= 0 && (size_t)n < len)
		snprintf(buf + n, len - (size_t)n, ")");
}

int stats_write_timeline(const struct stats *s, const char *path)
{
	FILE *f = fopen(path, "w");
	const struct stats_row *prev = NULL;
	static const struct stats_row zero;

	if (!f)
		return -errno;
	fputs("t,connected", f);
	for (unsigned v = 0; v < s->nversions; v++) {
		/* A label is the server's text: keep the header one CSV line. */
		fputs(",connected_", f);
		for (const char *p = s->versions[v].label; *p; p++)
			fputc(*p == ',' || *p == '"' || (unsigned char)*p < 0x20 ? '_' : *p, f);
	}
	fputs(",logins,drops,server_closes,sent,delivered,lost\n", f);
	for (size_t i = 0; i < s->nrows; i++) {
		const struct stats_row *r = &s->rows[i];
		if (!prev)
			prev = &zero;
		fprintf(f, "%zu,%u", i + 1, r->connected);
		for (unsigned v = 0; v < s->nversions; v++)
			fprintf(f, ",%u", r->per_version[v]);
		fprintf(f, ",%llu,%llu,%llu,%llu,%llu,%llu\n",
			(unsigned long long)(r->logins - prev->logins),
			(unsigned long long)(r->dropped - prev->dropped),
			(unsigned long long)(r->server_closed - prev->server_closed),
			(unsigned long long)(r->sent - prev->sent),
			(unsigned long long)(r->delivered - prev->delivered),
			(unsigned long long)(r->lost - prev->lost));
		prev = r;
	}
	if (fclose(f) != 0)
		return -errno;
	return 0;
}

void stats_progress_line(const struct stats *s, double t, unsigned clients, char *buf, size_t size)
{
	size_t n = 0;
	int w;

#define PUT(...)                                              \
	do {                                                  \
		w = snprintf(buf + n, size - n, __VA_ARGS__); \
		if (w < 0 || (size_t)w >= size - n)           \
			return;                               \
		n += (size_t)w;                               \
	} while (0)
	PUT("[%6.1fs] connected %u/%u", t, s->connected, clients);
	if (s->nversions) {
		PUT(" (");
		for (unsigned v = 0; v < s->nversions; v++)
			PUT("%s%.12s:%u", v ? " " : "", s->versions[v].label,
			    s->versions[v].connected);
		PUT(")");
	}
	PUT(" logins %llu drops %llu srv-closed %llu fail %llu msgs %llu/%llu lost %llu "
	    "bounced %llu p99 %.1fms",
	    (unsigned long long)s->logins, (unsigned long long)(s->dropped + s->ping_timeouts),
	    (unsigned long long)s->closed_by_server,
	    (unsigned long long)(s->connect_failures + s->login_failures),
	    (unsigned long long)s->messages_sent, (unsigned long long)s->messages_delivered,
	    (unsigned long long)s->messages_lost, (unsigned long long)s->messages_bounced,
	    (double)hist_quantile(&s->latency_us, 0.99) / 1000.0);
#undef PUT
}

bool stats_expectations_ok(const struct stats *s, const struct load_opts *o, FILE *err)
{
	bool ok = true;

	/* Nothing was witnessed: main() prints why (connect or login failures). */
	if (s->connections > 0 && s->logins == 0)
		ok = false;
	/* A failed worker's share of the run is missing from the numbers. */
	if (s->workers_failed)
		ok = false;
	if ((o->expect_zero_drops || (s->expect & STATS_EXPECT_ZERO_DROPS)) &&
	    (s->dropped || s->ping_timeouts)) {
		ok = false;
		if (err)
			fprintf(err,
				"chatload: expected zero drops: %llu dropped, %llu ping "
				"timeouts\n",
				(unsigned long long)s->dropped,
				(unsigned long long)s->ping_timeouts);
	}
	if ((o->expect_zero_loss || (s->expect & STATS_EXPECT_ZERO_LOSS)) &&
	    (s->messages_lost || s->messages_misdelivered)) {
		ok = false;
		if (err)
			fprintf(err,
				"chatload: expected zero loss: %llu messages lost, %llu "
				"misdelivered\n",
				(unsigned long long)s->messages_lost,
				(unsigned long long)s->messages_misdelivered);
	}
	if ((o->expect_no_server_close || (s->expect & STATS_EXPECT_NO_SERVER_CLOSE)) &&
	    s->closed_by_server) {
		ok = false;
		if (err)
			fprintf(err,
				"chatload: expected no server close: %llu streams closed "
				"by the server\n",
				(unsigned long long)s->closed_by_server);
	}
	return ok;
}
