/*
 * `rainbow dashboard`: the HTTP server (libmicrohttpd) of the live view and
 * the poll loop that publishes each observation to its viewers.
 */
#include "dashboard.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <microhttpd.h>

#include "addr.h"
#include "chart.h"
#include "evring.h"
#include "log.h"
#include "lswitch.h"
#include "run.h"
#include "status.h"
#include "unconst.h"
#include "webassets.h"

/* Events the ring keeps: a viewer further behind skips to the newest. */
#define DASH_RING 32
/* Deploy markers kept (and sent with every event). */
#define DASH_MARKERS 64
/* Colours that were selected, to tell a rollback from a switch. */
#define DASH_SELECTED_MAX 256
/* Largest --report file read (a long chatload run's report is a few MiB). */
#define DASH_REPORT_MAX (32u << 20)
/* A viewer waiting this long without an event gets a comment (keeps proxies open). */
#define DASH_KEEPALIVE_MS 15000

struct dash {
	struct platform *p;
	const struct dashboard_opts *o;
	struct evring ring;
	pthread_mutex_t mu; /* guards samples, markers, latest */
	json_t *samples;    /* [{t, c: {sha: connections}}], at most o->history */
	json_t *markers;    /* [{t, kind, sha}], at most DASH_MARKERS */
	char *latest;	    /* the newest state as JSON (for /api/state) */
	unsigned viewers;   /* open /events streams (guarded by mu) */
	off_t rec_off;	    /* bytes of record.jsonl read so far */
	char *strophe;	    /* the Strophe.js file, or NULL when missing */
	size_t strophe_len;
	char selected[DASH_SELECTED_MAX][PLATFORM_SHA_MAX];
	size_t n_selected;
};

static volatile sig_atomic_t dash_stop;

static void on_signal(int sig)
{
	dash_stop = 1;
}

/* ---- the --report file ------------------------------------------------ */

static char *read_file(const char *path, size_t max, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	size_t n;

	if (!f)
		return NULL;
	buf = malloc(max + 1);
	if (!buf) {
		fclose(f);
		return NULL;
	}
	n = fread(buf, 1, max, f);
	fclose(f);
	buf[n] = '\0';
	*len = n;
	return buf;
}

static json_t *report_from_json(json_t *r)
{
	json_t *d = json_object_get(r, "dropped"), *pt = json_object_get(r, "ping_timeouts"),
	       *lost = json_object_get(r, "messages_lost");

	if (!json_is_integer(d) || !json_is_integer(lost))
		return NULL;
	return json_pack("{s:s,s:I,s:I,s:O?,s:O?,s:s}", "state", "final", "dropped",
			 json_integer_value(d) + json_integer_value(pt), "lost",
			 json_integer_value(lost), "connections", json_object_get(r, "connections"),
			 "delivered", json_object_get(r, "messages_delivered"), "note",
			 "chatload report");
}

/* The timeline CSV: t,connected,connected_<v>...,logins,drops,server_closes,sent,delivered,lost */
static json_t *report_from_csv(char *text)
{
	char *save = NULL, *line = strtok_r(text, "\n", &save);
	int c_drops = -1, c_lost = -1, c_deliv = -1, col = 0;
	long long drops = 0, lost = 0, deliv = 0, rows = 0;

	if (!line || strncmp(line, "t,", 2) != 0)
		return NULL;
	for (char *s2 = NULL, *h = strtok_r(line, ",\r", &s2); h; h = strtok_r(NULL, ",\r", &s2)) {
		if (strcmp(h, "drops") == 0)
			c_drops = col;
		else if (strcmp(h, "lost") == 0)
			c_lost = col;
		else if (strcmp(h, "delivered") == 0)
			c_deliv = col;
		col++;
	}
	if (c_drops < 0 || c_lost < 0)
		return NULL;
	while ((line = strtok_r(NULL, "\n", &save))) {
		char *s2 = NULL;
		col = 0;
		for (char *v = strtok_r(line, ",\r", &s2); v; v = strtok_r(NULL, ",\r", &s2)) {
			long long x = strtoll(v, NULL, 10);

			if (col == c_drops)
				drops += x;
			else if (col == c_lost)
				lost += x;
			else if (col == c_deliv)
				deliv += x;
			col++;
		}
		rows++;
	}
	return json_pack("{s:s,s:I,s:I,s:n,s:I,s:s}", "state", rows ? "final" : "missing",
			 "dropped", drops, "lost", lost, "connections", "delivered", deliv, "note",
			 "chatload timeline");
}

json_t *dashboard_report(const char *path)
{
	size_t len = 0;
	char *text = read_file(path, DASH_REPORT_MAX, &len);
	json_t *out = NULL;

	if (!text)
		return json_pack("{s:s,s:n,s:n,s:n,s:s}", "state", "missing", "dropped", "lost",
				 "connections", "note", "waiting for the report");
	if (len && text[0] == '{') {
		json_t *r = json_loadb(text, len, 0, NULL);

		out = r ? report_from_json(r) : NULL;
		json_decref(r);
	} else if (len) {
		out = report_from_csv(text);
	}
	free(text);
	if (!out)
		out = json_pack("{s:s,s:n,s:n,s:n,s:s}", "state", "unreadable", "dropped", "lost",
				"connections", "note", "not a chatload report or timeline (yet)");
	return out;
}

/* ---- the chart's past from timeline.csv --------------------------------- */

/*
 * Fills the chart with what came before the dashboard: the observations
 * rainbow's deploy, rollback, prune and watch wrote to STATE/timeline.csv
 * within the window the dashboard keeps (history polls), one sample per
 * observation (its rows share one time). A row out of order (two rainbow
 * processes appending at once) or one that is not rainbow's is skipped.
 * Returns the samples loaded.
 */
static size_t load_timeline(struct dash *d, double now)
{
	char path[4200], line[512], sha[64];
	double t, last = -1, from = now - (double)d->o->history * d->o->poll_s;
	json_t *cur = NULL;
	long conns;
	size_t n;
	FILE *f;

	snprintf(path, sizeof(path), "%s/timeline.csv", d->o->state_dir);
	f = fopen(path, "r");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		if (!chart_timeline_row(line, &t, sha, &conns) || t < from || t > now || t < last)
			continue;
		if (t > last) {
			json_t *c = json_object();
			json_t *smp = json_pack("{s:f,s:o}", "t", t, "c", c);

			/* On failure the sample took c with it: this observation's rows are skipped. */
			cur = smp && json_array_append_new(d->samples, smp) == 0 ? c : NULL;
			last = t;
		}
		if (cur)
			json_object_set_new(cur, sha, json_integer(conns < 0 ? 0 : conns));
	}
	fclose(f);
	n = json_array_size(d->samples);
	if (n > d->o->history) {
		json_t *keep = json_array();

		for (size_t i = n - d->o->history; i < n; i++)
			json_array_append(keep, json_array_get(d->samples, i));
		json_decref(d->samples);
		d->samples = keep;
	}
	return json_array_size(d->samples);
}

/* ---- the deploy timeline from record.jsonl ---------------------------- */

static int was_selected(struct dash *d, const char *sha)
{
	for (size_t i = 0; i < d->n_selected; i++)
		if (strcmp(d->selected[i], sha) == 0)
			return 1;
	if (d->n_selected < DASH_SELECTED_MAX)
		snprintf(d->selected[d->n_selected++], PLATFORM_SHA_MAX, "%s", sha);
	return 0;
}

static void add_marker(struct dash *d, double t, const char *kind, const char *sha)
{
	pthread_mutex_lock(&d->mu);
	json_array_append_new(d->markers,
			      json_pack("{s:f,s:s,s:s}", "t", t, "kind", kind, "sha", sha));
	while (json_array_size(d->markers) > DASH_MARKERS)
		json_array_remove(d->markers, 0);
	pthread_mutex_unlock(&d->mu);
}

static void record_line(struct dash *d, const char *line)
{
	json_t *o = json_loads(line, 0, NULL);
	const char *ev = json_string_value(json_object_get(o, "event"));
	const char *sha = json_string_value(json_object_get(o, "sha"));
	double t = json_number_value(json_object_get(o, "t"));
	const char *kind = NULL;

	if (ev && sha && platform_sha_valid(sha)) {
		if (strcmp(ev, "create") == 0)
			kind = "create";
		else if (strcmp(ev, "select") == 0)
			kind = was_selected(d, sha) ? "rollback" : "switch";
		else if (strcmp(ev, "remove") == 0)
			kind = "delete";
		else if (strcmp(ev, "failed") == 0)
			kind = "failed";
	}
	if (kind)
		add_marker(d, t, kind, sha);
	json_decref(o);
}

/* Reads the lines appended to record.jsonl since the last call. */
static void read_record(struct dash *d)
{
	char path[4200], buf[8192];
	size_t have = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/record.jsonl", d->o->state_dir);
	f = fopen(path, "r");
	if (!f)
		return;
	if (fseeko(f, d->rec_off, SEEK_SET) != 0) {
		fclose(f);
		return;
	}
	while (fgets(buf + have, (int)(sizeof(buf) - have), f)) {
		size_t n = strlen(buf);

		if (n == 0 || buf[n - 1] != '\n') {
			if (n + 1 >= sizeof(buf)) {
				/* A line longer than any marker: skip it whole. */
				d->rec_off += (off_t)n;
				have = 0;
				continue;
			}
			break; /* an unfinished last line: read again next time */
		}
		d->rec_off += (off_t)n;
		have = 0;
		record_line(d, buf);
	}
	fclose(f);
}

/* ---- the chat page's settings ------------------------------------------ */

/*
 * {ws, ws_port, domain}: --chat-ws when given; else, on the local platform,
 * the switch's WebSocket port (the page connects to it on the host it was
 * loaded from).
 */
static json_t *chat_json(struct dash *d)
{
	json_t *c = json_pack("{s:s}", "domain", d->o->chat_domain);

	if (d->o->chat_ws) {
		json_object_set_new(c, "ws", json_string(d->o->chat_ws));
	} else if (strcmp(d->p->ops->name, "local") == 0) {
		json_t *st = NULL;
		const char *ws;
		struct addr a;

		if (lswitch_status(d->o->state_dir, &st) == 0 &&
		    (ws = json_string_value(json_object_get(st, "websocket"))) &&
		    addr_parse(ws, 0, 0, &a) == 0)
			json_object_set_new(c, "ws_port", json_integer(a.port));
		json_decref(st);
	}
	return c;
}

/* ---- one poll ---------------------------------------------------------- */

static void poll_once(struct dash *d, uint64_t seq)
{
	struct run_obs obs;
	json_t *st, *sample, *counts;
	int64_t now = run_now_ms();
	char *js;

	read_record(d);
	if (run_observe(d->p, &obs) == 0) {
		st = status_json(d->p->ops->name, &obs);
		counts = json_object();
		for (size_t i = 0; i < obs.n; i++) {
			long n = deploy_colour_connections(&obs.colours[i]);

			json_object_set_new(counts, obs.colours[i].c.sha,
					    json_integer(n < 0 ? 0 : n));
		}
		now = obs.obs.now_ms;
		run_obs_free(&obs);
		sample = json_pack("{s:f,s:o}", "t", (double)now / 1000.0, "c", counts);
		json_object_set_new(st, "error", json_null());
	} else {
		st = json_pack("{s:s,s:s,s:[],s:s}", "platform", d->p->ops->name, "selected", "",
			       "colours", "error", d->p->err);
		sample = NULL;
	}
	if (!st) {
		json_decref(sample);
		return;
	}
	json_object_set_new(st, "seq", json_integer((json_int_t)seq));
	json_object_set_new(st, "t", json_real((double)now / 1000.0));
	json_object_set_new(st, "report",
			    d->o->report ? dashboard_report(d->o->report) : json_null());
	json_object_set_new(st, "chat", chat_json(d));
	pthread_mutex_lock(&d->mu);
	if (sample) {
		json_array_append(d->samples, sample);
		while (json_array_size(d->samples) > d->o->history)
			json_array_remove(d->samples, 0);
	}
	json_object_set_new(st, "sample", sample ? sample : json_null());
	json_object_set(st, "markers", d->markers);
	js = json_dumps(st, JSON_COMPACT | JSON_REAL_PRECISION(15));
	json_object_del(st, "markers");
	if (js) {
		free(d->latest);
		d->latest = strdup(js);
	}
	pthread_mutex_unlock(&d->mu);
	json_decref(st);
	if (js) {
		size_t len = strlen(js) + 64;
		char *ev = malloc(len);

		if (ev) {
			int n = snprintf(ev, len,
					 "id: %llu\nevent: state\ndata: ", (unsigned long long)seq);
			size_t l = (size_t)n + strlen(js);

			memcpy(ev + n, js, strlen(js));
			memcpy(ev + l, "\n\n", 2);
			evring_publish(&d->ring, ev, l + 2);
			free(ev);
		}
		free(js);
	}
}

/* ---- HTTP ------------------------------------------------------------- */

struct viewer {
	struct dash *d;
	uint64_t want;	       /* the event number to send next (0: the newest) */
	struct evring_ev *cur; /* the event being sent, or NULL */
	size_t off;	       /* bytes of cur already sent */
};

static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct viewer *v = cls;
	size_t n;

	if (!v->cur) {
		static const char keepalive[] = ": keepalive\n\n";
		int rc;

		if (dash_stop)
			return MHD_CONTENT_READER_END_OF_STREAM;
		rc = evring_get(&v->d->ring, v->want, DASH_KEEPALIVE_MS, &v->cur);
		if (rc < 0)
			return MHD_CONTENT_READER_END_OF_STREAM;
		if (rc == 0) {
			n = sizeof(keepalive) - 1 < max ? sizeof(keepalive) - 1 : max;
			memcpy(buf, keepalive, n);
			return (ssize_t)n;
		}
		v->off = 0;
	}
	n = v->cur->len - v->off;
	if (n > max)
		n = max;
	memcpy(buf, v->cur->data + v->off, n);
	v->off += n;
	if (v->off == v->cur->len) {
		v->want = v->cur->seq + 1;
		evring_put(&v->d->ring, v->cur);
		v->cur = NULL;
	}
	return (ssize_t)n;
}

static void sse_free(void *cls)
{
	struct viewer *v = cls;
	struct dash *d = v->d;

	evring_put(&d->ring, v->cur);
	pthread_mutex_lock(&d->mu);
	d->viewers--;
	pthread_mutex_unlock(&d->mu);
	free(v);
}

static enum MHD_Result reply(struct MHD_Connection *mc, unsigned status, const char *ctype,
			     const char *body, size_t len, enum MHD_ResponseMemoryMode mode)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(len, unconst(body), mode);
	enum MHD_Result ret;

	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	ret = MHD_queue_response(mc, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result reply_str(struct MHD_Connection *mc, unsigned status, const char *ctype,
				 const char *body)
{
	return reply(mc, status, ctype, body, strlen(body), MHD_RESPMEM_PERSISTENT);
}

static enum MHD_Result serve_events(struct dash *d, struct MHD_Connection *mc)
{
	struct viewer *v = calloc(1, sizeof(*v));
	struct MHD_Response *r;
	enum MHD_Result ret;

	if (!v)
		return MHD_NO;
	v->d = d;
	pthread_mutex_lock(&d->mu);
	d->viewers++;
	pthread_mutex_unlock(&d->mu);
	r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, sse_read, v, sse_free);
	if (!r) {
		sse_free(v);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	ret = MHD_queue_response(mc, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result serve_locked_json(struct dash *d, struct MHD_Connection *mc, int history)
{
	char *s = NULL;

	pthread_mutex_lock(&d->mu);
	if (history) {
		json_t *h = json_pack("{s:O,s:O}", "samples", d->samples, "markers", d->markers);

		s = h ? json_dumps(h, JSON_COMPACT | JSON_REAL_PRECISION(15)) : NULL;
		json_decref(h);
	} else if (d->latest) {
		s = strdup(d->latest);
	}
	pthread_mutex_unlock(&d->mu);
	if (!s)
		return history ? MHD_NO
			       : reply_str(mc, MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain",
					   "no observation yet\n");
	return reply(mc, MHD_HTTP_OK, "application/json", s, strlen(s), MHD_RESPMEM_MUST_FREE);
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *mc, const char *url,
			       const char *method, const char *version, const char *upload,
			       size_t *upload_size, void **con_cls)
{
	struct dash *d = cls;

	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return reply_str(mc, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain",
				 "read-only: GET only\n");
	if (strcmp(url, "/") == 0)
		return reply_str(mc, MHD_HTTP_OK, "text/html; charset=utf-8", web_dashboard_html);
	if (strcmp(url, "/chat") == 0)
		return reply_str(mc, MHD_HTTP_OK, "text/html; charset=utf-8", web_chat_html);
	if (strcmp(url, "/strophe.js") == 0) {
		if (!d->strophe)
			return reply_str(mc, MHD_HTTP_NOT_FOUND, "text/plain",
					 "Strophe.js is not installed (Debian package "
					 "libjs-strophe; scripts/deps.sh installs it)\n");
		return reply(mc, MHD_HTTP_OK, "text/javascript", d->strophe, d->strophe_len,
			     MHD_RESPMEM_PERSISTENT);
	}
	if (strcmp(url, "/events") == 0)
		return serve_events(d, mc);
	if (strcmp(url, "/api/state") == 0)
		return serve_locked_json(d, mc, 0);
	if (strcmp(url, "/api/history") == 0)
		return serve_locked_json(d, mc, 1);
	if (strcmp(url, "/healthz") == 0)
		return reply_str(mc, MHD_HTTP_OK, "text/plain", "ok\n");
	return reply_str(mc, MHD_HTTP_NOT_FOUND, "text/plain", "not found\n");
}

int dashboard_listen_valid(const char *s)
{
	struct addr a;

	return addr_parse(s, ADDR_PORT_ZERO, 0, &a) == 0;
}

int dashboard_run(struct platform *p, const struct dashboard_opts *o)
{
	struct dash d = { .p = p, .o = o };
	struct MHD_Daemon *daemon = NULL;
	struct addr sa;
	struct sigaction act;
	const union MHD_DaemonInfo *info;
	double start = (double)run_now_ms() / 1000.0;
	uint64_t seq = 0;
	size_t past;
	int rc = 1;

	if (addr_parse(o->listen, ADDR_PORT_ZERO, 0, &sa) != 0) {
		fprintf(stderr, "rainbow: dashboard: --listen wants IP:PORT, not '%s'\n",
			o->listen);
		return 2;
	}
	if (evring_init(&d.ring, DASH_RING) != 0)
		return 1;
	pthread_mutex_init(&d.mu, NULL);
	d.samples = json_array();
	d.markers = json_array();
	past = load_timeline(&d, start);
	d.strophe = read_file(o->strophe, 4u << 20, &d.strophe_len);
	if (!d.strophe)
		fprintf(stderr,
			"rainbow: dashboard: %s: %s; the chat page will not work (Debian package "
			"libjs-strophe)\n",
			o->strophe, strerror(errno));
	memset(&act, 0, sizeof(act));
	act.sa_handler = on_signal;
	sigaction(SIGINT, &act, NULL);
	sigaction(SIGTERM, &act, NULL);
	/* No MHD_USE_ERROR_LOG: a viewer closing its tab is routine, not a
	 * line on the terminal; a failed start is reported below. */
	daemon = MHD_start_daemon(
		MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
			(sa.sa.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0),
		0, NULL, NULL, handler, &d, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa.sa,
		MHD_OPTION_CONNECTION_LIMIT, o->max_viewers, MHD_OPTION_CONNECTION_TIMEOUT,
		(unsigned)120, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),
		MHD_OPTION_THREAD_STACK_SIZE, (size_t)(256 * 1024), MHD_OPTION_END);
	if (!daemon) {
		fprintf(stderr, "rainbow: dashboard: cannot listen on %s: %s\n", o->listen,
			strerror(errno ? errno : EADDRINUSE));
		goto out;
	}
	info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_BIND_PORT);
	{
		char url[ADDR_STR_MAX];

		addr_join(sa.host, info ? info->port : sa.port, url, sizeof(url));
		printf("dashboard on http://%s/ (chat: /chat), %s platform; Ctrl-C stops it\n", url,
		       p->ops->name);
		if (past)
			printf("dashboard: the chart starts with %zu earlier observations from "
			       "%s/timeline.csv\n",
			       past, o->state_dir);
		fflush(stdout);
	}
	while (!dash_stop) {
		poll_once(&d, ++seq);
		if (o->duration > 0 && (double)run_now_ms() / 1000.0 - start >= o->duration)
			break;
		for (double slept = 0; slept < o->poll_s && !dash_stop; slept += 0.05)
			usleep(50000);
	}
	rc = 0;
out:
	evring_close(&d.ring);
	if (daemon)
		MHD_stop_daemon(daemon);
	evring_destroy(&d.ring);
	pthread_mutex_destroy(&d.mu);
	json_decref(d.samples);
	json_decref(d.markers);
	free(d.latest);
	free(d.strophe);
	return rc;
}
