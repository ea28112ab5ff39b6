/*
 * The local platform's operations (platform.h). The switch daemon
 * (lswitch.h) owns the replicas: it starts, watches, probes and restarts
 * them, and keeps their records; rainbow asks it through the control
 * socket and reads its status. What is rainbow's own lives in one JSON
 * file per colour (STATE/colours/SHA.json: created, the replicas wanted,
 * meta), written atomically (temp file + rename). Connection counts are
 * read from each replica's /metrics by rainbow itself, exact at each
 * observation.
 */
#include "local.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "bodybuf.h"
#include "log.h"
#include "lswitch.h"
#include "promtext.h"
#include "unconst.h"

#define LOCAL_HTTP_MAX (256 * 1024)
#define LOCAL_REPLICAS_MAX 32
#define LOCAL_PATH_MAX 4096
#define LOCAL_REMOVE_WAIT_MS 6000

struct local {
	char state[LOCAL_PATH_MAX / 2]; /* half: room for every file name below it */
	char chatd[2048];
	int auth_any;
	char chatd_args[1024];
	int cluster;	    /* chatd takes --cluster-listen/--peers-file */
	int cluster_secret; /* chatd takes --cluster-secret-file */
	int control;	    /* chatd takes --control-token-file (moving sessions) */
	CURL *curl;
};

/* rainbow's own record of a colour. */
struct local_colour {
	struct platform_colour c;
};

static struct local *L(struct platform *p)
{
	return p->ctx;
}

static int mkdir_p(const char *path)
{
	char buf[LOCAL_PATH_MAX];
	size_t n = strlen(path);

	if (n == 0 || n >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, n + 1);
	for (char *s = buf + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(buf, 0755) != 0 && errno != EEXIST)
			return -errno;
		*s = '/';
	}
	if (mkdir(buf, 0755) != 0 && errno != EEXIST)
		return -errno;
	return 0;
}

int local_state_init(const char *state_dir)
{
	char sub[LOCAL_PATH_MAX];
	int rc = mkdir_p(state_dir);

	if (rc < 0)
		return rc;
	snprintf(sub, sizeof(sub), "%s/colours", state_dir);
	rc = mkdir_p(sub);
	if (rc < 0)
		return rc;
	snprintf(sub, sizeof(sub), "%s/logs", state_dir);
	return mkdir_p(sub);
}

/* ---- colour files ------------------------------------------------------- */

static void colour_path(const char *state, const char *sha, char *buf, size_t len)
{
	snprintf(buf, len, "%s/colours/%s.json", state, sha);
}

static int colour_load(struct platform *p, const char *sha, struct local_colour *lc)
{
	char path[LOCAL_PATH_MAX];
	json_error_t jerr;
	json_t *o, *meta, *v;
	const char *k;

	memset(lc, 0, sizeof(*lc));
	colour_path(L(p)->state, sha, path, sizeof(path));
	o = json_load_file(path, 0, &jerr);
	if (!o) {
		if (access(path, F_OK) != 0)
			return platform_error(p, -ENOENT, "colour %s does not exist", sha);
		return platform_error(p, -EIO, "%s: %s", path, jerr.text);
	}
	snprintf(lc->c.sha, sizeof(lc->c.sha), "%s", sha);
	lc->c.created = json_integer_value(json_object_get(o, "created"));
	lc->c.replicas = (int)json_integer_value(json_object_get(o, "replicas_wanted"));
	meta = json_object_get(o, "meta");
	json_object_foreach (meta, k, v) {
		if (json_is_string(v))
			platform_meta_put(&lc->c, k, json_string_value(v));
	}
	json_decref(o);
	return 0;
}

/*
 * Writes o to path through a temp file renamed into place. 0, or the real
 * -errno (ENOSPC, EROFS, ...): the caller's message names it.
 */
int local_write_json(json_t *o, const char *path)
{
	char tmp[LOCAL_PATH_MAX + 32];
	char *s = json_dumps(o, JSON_INDENT(1) | JSON_SORT_KEYS);
	size_t len;
	ssize_t n;
	int fd, rc = 0;

	if (!s)
		return -ENOMEM;
	len = strlen(s);
	/* The pid keeps two writers from sharing (and mixing) one temp file. */
	snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	n = write(fd, s, len);
	if (n < 0 || (size_t)n != len)
		rc = n < 0 ? -errno : -ENOSPC;
	if (close(fd) != 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, path) != 0)
		rc = -errno;
	if (rc < 0)
		unlink(tmp);
out:
	free(s);
	return rc;
}

static int colour_save(struct platform *p, const struct local_colour *lc)
{
	char path[LOCAL_PATH_MAX];
	json_t *o = json_object(), *meta = json_object();
	int rc;

	for (size_t i = 0; i < lc->c.n_meta; i++)
		json_object_set_new(meta, lc->c.meta[i].key, json_string(lc->c.meta[i].value));
	json_object_set_new(o, "sha", json_string(lc->c.sha));
	json_object_set_new(o, "created", json_integer(lc->c.created));
	json_object_set_new(o, "replicas_wanted", json_integer(lc->c.replicas));
	json_object_set_new(o, "meta", meta);
	colour_path(L(p)->state, lc->c.sha, path, sizeof(path));
	rc = local_write_json(o, path);
	json_decref(o);
	if (rc < 0)
		return platform_error(p, rc, "cannot write %s: %s", path, strerror(-rc));
	return 0;
}

static int sha_file(const char *name, char *sha)
{
	size_t n = strlen(name);

	if (n < 6 || strcmp(name + n - 5, ".json") != 0 || n - 5 >= PLATFORM_SHA_MAX)
		return 0;
	memcpy(sha, name, n - 5);
	sha[n - 5] = '\0';
	return platform_sha_valid(sha);
}

/* ---- the switch ------------------------------------------------------------ */

/* The switch's status (*st: a new reference), or the platform error. */
static int switch_status_get(struct platform *p, json_t **st)
{
	int rc = lswitch_status(L(p)->state, st);

	if (rc == 0)
		return 0;
	if (rc == -ENOENT)
		return platform_error(p, -ENOENT,
				      "the local switch is not running "
				      "(rainbow local up --state-dir %s)",
				      L(p)->state);
	if (rc == -EAGAIN)
		return platform_error(p, -EAGAIN,
				      "the local switch did not answer in time (busy, or this "
				      "process is out of descriptors)");
	return platform_error(p, -EIO, "the local switch answered status badly");
}

/* A request to the switch; its error reply (or the failure) in p->err. */
static int switch_call(struct platform *p, const char *req, int timeout_ms)
{
	char reply[1024];
	int rc = lswitch_call_timeout(L(p)->state, req, reply, sizeof(reply), timeout_ms);

	if (rc == 0)
		return 0;
	if (rc == -EPROTO)
		return platform_error(p, strstr(reply, "selected") ? -EBUSY : -EIO, "switch: %s",
				      reply + (strncmp(reply, "error ", 6) == 0 ? 6 : 0));
	if (rc == -ENOENT)
		return platform_error(p, -ENOENT, "the local switch is not running");
	return platform_error(p, -EAGAIN, "the local switch did not answer in time");
}

static json_t *status_colour(json_t *st, const char *sha)
{
	size_t i;
	json_t *c;

	json_array_foreach (json_object_get(st, "colours"), i, c) {
		const char *s = json_string_value(json_object_get(c, "sha"));

		if (s && strcmp(s, sha) == 0)
			return c;
	}
	return NULL;
}

static int rep_is(json_t *r, const char *state)
{
	const char *s = json_string_value(json_object_get(r, "state"));

	return s && strcmp(s, state) == 0;
}

/* ---- HTTP: the replicas' counts ----------------------------------------------- */

/*
 * HTTP status of a GET of url, or of an empty POST with post_headers when
 * those are not NULL (0 when nothing answered); the body goes to b.
 */
static long http_request(struct local *l, const char *url, struct curl_slist *post_headers,
			 long timeout_ms, struct bodybuf *b)
{
	long code = 0;

	curl_easy_reset(l->curl);
	curl_easy_setopt(l->curl, CURLOPT_URL, url);
	if (post_headers) {
		curl_easy_setopt(l->curl, CURLOPT_POST, 1L);
		curl_easy_setopt(l->curl, CURLOPT_POSTFIELDS, "");
		curl_easy_setopt(l->curl, CURLOPT_HTTPHEADER, post_headers);
	}
	curl_easy_setopt(l->curl, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(l->curl, CURLOPT_CONNECTTIMEOUT_MS, 500L);
	curl_easy_setopt(l->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(l->curl, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(l->curl, CURLOPT_WRITEFUNCTION, bodybuf_curl_write);
	curl_easy_setopt(l->curl, CURLOPT_WRITEDATA, b);
	if (curl_easy_perform(l->curl) == CURLE_OK)
		curl_easy_getinfo(l->curl, CURLINFO_RESPONSE_CODE, &code);
	return code;
}

/* HTTP status of GET http://hostport/path (0 when nothing answered); body optional. */
static long http_get(struct local *l, const char *hostport, const char *path, char **body)
{
	char url[256];
	struct bodybuf b = { .max = LOCAL_HTTP_MAX };
	long code;

	snprintf(url, sizeof(url), "http://%s%s", hostport, path);
	code = http_request(l, url, NULL, 1500L, &b);
	if (body && code)
		*body = b.data;
	else
		free(b.data);
	return code;
}

/*
 * A replica's count and histograms from its /metrics: connections 0 when it
 * runs no process (or is not listening yet), -1 when unreadable.
 */
static void rep_metrics(struct local *l, json_t *r, struct platform_replica *out)
{
	const char *http = json_string_value(json_object_get(r, "http"));
	char *body = NULL;

	if (json_integer_value(json_object_get(r, "pid")) <= 0 || rep_is(r, "spawned") || !http ||
	    !*http) {
		platform_replica_metrics(out, NULL);
		/* Not running, or not listening yet: it holds nothing. */
		if (json_integer_value(json_object_get(r, "pid")) <= 0 || rep_is(r, "spawned"))
			out->connections = 0;
		return;
	}
	platform_replica_metrics(out, http_get(l, http, "/metrics", &body) == 200 ? body : NULL);
	free(body);
}

static void rep_fill(struct local *l, json_t *r, struct platform_replica *out, int count)
{
	memset(out, 0, sizeof(*out));
	snprintf(out->name, sizeof(out->name), "%s",
		 json_string_value(json_object_get(r, "name")) ?: "");
	out->ready = json_is_true(json_object_get(r, "ready"));
	if (count)
		rep_metrics(l, r, out);
	else
		platform_replica_metrics(out, NULL);
	out->restarts = (int)json_integer_value(json_object_get(r, "restarts"));
	out->lost = (long)json_integer_value(json_object_get(r, "lost"));
	out->failed = rep_is(r, "failed");
	if (out->failed || rep_is(r, "crashed") || rep_is(r, "backoff"))
		snprintf(out->fault, sizeof(out->fault), "%s",
			 json_string_value(json_object_get(r, "fault")) ?: "");
}

/* ---- ops ------------------------------------------------------------------------ */

static void chatd_default(char *buf, size_t len)
{
	char exe[1024];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	char *slash;

	if (n > 0) {
		exe[n] = '\0';
		slash = strrchr(exe, '/');
		if (slash) {
			*slash = '\0';
			snprintf(buf, len, "%s/chatd", exe);
			if (access(buf, X_OK) == 0)
				return;
		}
	}
	snprintf(buf, len, "chatd");
}

/* Which cluster flags this chatd knows (from its --help). */
static void chatd_features(struct local *l)
{
	char *argv[] = { l->chatd, "--help", NULL };
	char buf[16384];
	size_t off = 0;
	int pfd[2], status;
	pid_t pid;

	if (pipe2(pfd, O_CLOEXEC) != 0)
		return;
	pid = fork();
	if (pid == 0) {
		dup2(pfd[1], 1);
		dup2(pfd[1], 2);
		execvp(argv[0], argv);
		_exit(127);
	}
	close(pfd[1]);
	if (pid > 0) {
		ssize_t n;

		while (off + 1 < sizeof(buf) &&
		       (n = read(pfd[0], buf + off, sizeof(buf) - 1 - off)) > 0)
			off += (size_t)n;
		waitpid(pid, &status, 0);
	}
	close(pfd[0]);
	buf[off] = '\0';
	l->cluster = strstr(buf, "--cluster-listen") && strstr(buf, "--peers-file");
	l->cluster_secret = strstr(buf, "--cluster-secret-file") != NULL;
	l->control = strstr(buf, "--control-token-file") != NULL;
}

/* STATE/name with 24 random bytes in hex, mode 0600, unless it exists. */
static int ensure_secret(struct local *l, const char *name)
{
	char path[LOCAL_PATH_MAX];
	unsigned char raw[24];
	FILE *f;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", l->state, name);
	if (access(path, R_OK) == 0)
		return 0;
	fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (fd < 0 || read(fd, raw, sizeof(raw)) != (ssize_t)sizeof(raw)) {
		if (fd >= 0)
			close(fd);
		return -EIO;
	}
	close(fd);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return errno == EEXIST ? 0 : -errno;
	f = fdopen(fd, "w");
	if (!f) {
		close(fd);
		return -errno;
	}
	for (size_t i = 0; i < sizeof(raw); i++)
		fprintf(f, "%02x", raw[i]);
	fprintf(f, "\n");
	return fclose(f) == 0 ? 0 : -errno;
}

static int local_open(struct platform *p, const struct platform_opts *o)
{
	struct local *l = calloc(1, sizeof(*l));
	char reply[256], down[1024];
	const char *env;
	int rc;

	if (!l)
		return platform_error(p, -ENOMEM, "out of memory");
	p->ctx = l;
	snprintf(l->state, sizeof(l->state), "%s", o->state_dir);
	env = getenv("RAINBOW_CHATD");
	if (o->chatd)
		snprintf(l->chatd, sizeof(l->chatd), "%s", o->chatd);
	else if (env && *env)
		snprintf(l->chatd, sizeof(l->chatd), "%s", env);
	else
		chatd_default(l->chatd, sizeof(l->chatd));
	if (strchr(l->chatd, '/')) {
		char abs[PATH_MAX];

		if (access(l->chatd, X_OK) != 0 || !realpath(l->chatd, abs))
			return platform_error(p, -ENOENT,
					      "chatd not found at %s (--chatd or RAINBOW_CHATD)",
					      l->chatd);
		/* The switch starts it from its own directory: an absolute path. */
		if (strlen(abs) >= sizeof(l->chatd))
			return platform_error(p, -ENAMETOOLONG, "chatd path too long: %s", abs);
		memcpy(l->chatd, abs, strlen(abs) + 1);
	}
	l->auth_any = o->auth_any;
	snprintf(l->chatd_args, sizeof(l->chatd_args), "%s", o->chatd_args ? o->chatd_args : "");
	if (o->n_extra)
		return platform_error(p, -EINVAL, "the local platform takes no option %s",
				      o->extra[0].key);
	l->curl = curl_easy_init();
	if (!l->curl)
		return platform_error(p, -ENOMEM, "curl_easy_init failed");
	rc = lswitch_call(l->state, "ping", reply, sizeof(reply));
	if (rc == -EAGAIN)
		return platform_error(p, -EAGAIN,
				      "the local switch (%s/switch.sock) did not answer in time",
				      l->state);
	if (rc != 0) {
		if (local_switch_died(l->state, down, sizeof(down), NULL) > 0)
			return platform_error(p, -ENOENT, "%s", down);
		return platform_error(p, -ENOENT,
				      "the local platform is not up (no switch "
				      "answers on %s/switch.sock): run `rainbow local up "
				      "--state-dir %s` first",
				      l->state, l->state);
	}
	rc = local_state_init(l->state);
	if (rc < 0)
		return platform_error(p, rc, "state dir %s: %s", l->state, strerror(-rc));
	chatd_features(l);
	if (l->cluster && l->cluster_secret && (rc = ensure_secret(l, "cluster.secret")) != 0)
		return platform_error(p, rc < 0 ? rc : -EIO, "cannot create %s/cluster.secret: %s",
				      l->state, strerror(rc < 0 ? -rc : EIO));
	/* The control token: only rainbow and the replicas it starts read the
	 * private state dir, so only they can ask a replica to move sessions. */
	if (l->control && (rc = ensure_secret(l, "control.token")) != 0)
		return platform_error(p, rc < 0 ? rc : -EIO, "cannot create %s/control.token: %s",
				      l->state, strerror(rc < 0 ? -rc : EIO));
	return 0;
}

static void local_close(struct platform *p)
{
	struct local *l = p->ctx;

	if (!l)
		return;
	if (l->curl)
		curl_easy_cleanup(l->curl);
	free(l);
	p->ctx = NULL;
}

static int local_selected(struct platform *p, char out[PLATFORM_SHA_MAX])
{
	json_t *o;
	int rc;

	out[0] = '\0';
	rc = switch_status_get(p, &o);
	if (rc < 0)
		return rc;
	snprintf(out, PLATFORM_SHA_MAX, "%s",
		 json_string_value(json_object_get(o, "selected")) ?: "");
	json_decref(o);
	return 0;
}

/* Routed backends that are not this colour's ready replicas, plus ready replicas not routed. */
static int route_drift(json_t *col, json_t *routed)
{
	int drift = 0;
	size_t i, k;
	json_t *v, *r;

	json_array_foreach (routed, i, v) {
		int found = 0;

		json_array_foreach (json_object_get(col, "replicas"), k, r)
			found |= json_is_true(json_object_get(r, "ready")) &&
				 json_equal(json_object_get(r, "listen"), v);
		drift += !found;
	}
	json_array_foreach (json_object_get(col, "replicas"), k, r) {
		int found = 0;

		if (!json_is_true(json_object_get(r, "ready")))
			continue;
		json_array_foreach (routed, i, v)
			found |= json_equal(json_object_get(r, "listen"), v);
		drift += !found;
	}
	return drift;
}

static int list_add(struct platform *p, struct platform_colour **arr, size_t *cnt, size_t *cap,
		    const struct platform_colour *c)
{
	if (*cnt == *cap) {
		struct platform_colour *na;

		*cap = *cap ? *cap * 2 : 8;
		na = realloc(*arr, *cap * sizeof(**arr));
		if (!na)
			return platform_error(p, -ENOMEM, "out of memory");
		*arr = na;
	}
	(*arr)[(*cnt)++] = *c;
	return 0;
}

static void fill_from_switch(struct platform_colour *c, json_t *col, json_t *st, const char *sel)
{
	size_t k;
	json_t *r;

	c->selected = strcmp(sel, c->sha) == 0;
	c->ready = 0;
	json_array_foreach (json_object_get(col, "replicas"), k, r)
		c->ready += json_is_true(json_object_get(r, "ready"));
	c->route_drift = c->selected && col ? route_drift(col, json_object_get(st, "backends")) : 0;
}

static int local_list(struct platform *p, struct platform_colour **out, size_t *n)
{
	char dir[LOCAL_PATH_MAX], sha[PLATFORM_SHA_MAX], sel[PLATFORM_SHA_MAX];
	struct platform_colour *arr = NULL;
	struct local_colour *lc = malloc(sizeof(*lc));
	size_t cnt = 0, cap = 0, i;
	struct dirent *de;
	json_t *st = NULL, *col;
	DIR *d;
	int rc;

	*out = NULL;
	*n = 0;
	if (!lc)
		return platform_error(p, -ENOMEM, "out of memory");
	rc = switch_status_get(p, &st);
	if (rc < 0)
		goto out;
	snprintf(sel, sizeof(sel), "%s", json_string_value(json_object_get(st, "selected")) ?: "");
	snprintf(dir, sizeof(dir), "%s/colours", L(p)->state);
	d = opendir(dir);
	if (!d) {
		rc = platform_error(p, -errno, "%s: %s", dir, strerror(errno));
		goto out;
	}
	while ((de = readdir(d))) {
		if (!sha_file(de->d_name, sha) || colour_load(p, sha, lc) != 0)
			continue;
		col = status_colour(st, sha);
		/* Being removed (its replicas are stopping): gone already for rainbow. */
		if (json_is_true(json_object_get(col, "removing")))
			continue;
		fill_from_switch(&lc->c, col, st, sel);
		rc = list_add(p, &arr, &cnt, &cap, &lc->c);
		if (rc < 0) {
			closedir(d);
			goto out;
		}
	}
	closedir(d);
	/* Replicas the switch runs for a colour rainbow has no file of: listed, so they drain. */
	json_array_foreach (json_object_get(st, "colours"), i, col) {
		const char *s = json_string_value(json_object_get(col, "sha"));
		int known = 0;

		if (!s || !platform_sha_valid(s) || json_is_true(json_object_get(col, "removing")))
			continue;
		for (size_t k = 0; k < cnt; k++)
			known |= strcmp(arr[k].sha, s) == 0;
		if (known)
			continue;
		memset(&lc->c, 0, sizeof(lc->c));
		snprintf(lc->c.sha, sizeof(lc->c.sha), "%s", s);
		lc->c.replicas = (int)json_integer_value(json_object_get(col, "wanted"));
		fill_from_switch(&lc->c, col, st, sel);
		rc = list_add(p, &arr, &cnt, &cap, &lc->c);
		if (rc < 0)
			goto out;
	}
	*out = arr;
	*n = cnt;
	arr = NULL;
	rc = 0;
out:
	json_decref(st);
	free(arr);
	free(lc);
	return rc;
}

static int local_replicas(struct platform *p, const char *sha, struct platform_replica **out,
			  size_t *n)
{
	struct platform_replica *arr;
	json_t *st = NULL, *col, *reps, *r;
	char path[LOCAL_PATH_MAX];
	size_t i, cnt;
	int rc;

	*out = NULL;
	*n = 0;
	rc = switch_status_get(p, &st);
	if (rc < 0)
		return rc;
	col = status_colour(st, sha);
	colour_path(L(p)->state, sha, path, sizeof(path));
	if (!col && access(path, F_OK) != 0) {
		json_decref(st);
		return platform_error(p, -ENOENT, "colour %s does not exist", sha);
	}
	reps = json_object_get(col, "replicas");
	cnt = json_array_size(reps);
	arr = calloc(cnt ? cnt : 1, sizeof(*arr));
	if (!arr) {
		json_decref(st);
		return platform_error(p, -ENOMEM, "out of memory");
	}
	json_array_foreach (reps, i, r)
		rep_fill(L(p), r, &arr[i], 1);
	json_decref(st);
	*out = arr;
	*n = cnt;
	return 0;
}

static char *spec_json(struct local *l)
{
	json_t *o = json_pack("{s:s,s:s,s:b,s:b,s:b,s:b}", "chatd", l->chatd, "args", l->chatd_args,
			      "auth_any", l->auth_any, "cluster", l->cluster, "cluster_secret",
			      l->cluster_secret, "control", l->control);
	char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;

	json_decref(o);
	return s;
}

/* Asks the switch for n replicas of sha. */
static int switch_scale(struct platform *p, const char *sha, int n)
{
	char *spec = spec_json(L(p)), req[LSWITCH_LINE_MAX];
	int rc;

	if (!spec)
		return platform_error(p, -ENOMEM, "out of memory");
	if (snprintf(req, sizeof(req), "scale %s %d %s", sha, n, spec) >= (int)sizeof(req)) {
		free(spec);
		return platform_error(p, -E2BIG, "chatd path and arguments too long");
	}
	free(spec);
	rc = switch_call(p, req, 10000);
	return rc;
}

static int local_create(struct platform *p, const char *sha, int replicas)
{
	struct local_colour *lc;
	int rc;

	if (!platform_sha_valid(sha))
		return platform_error(p, -EINVAL, "bad sha %s", sha);
	if (replicas < 1 || replicas > LOCAL_REPLICAS_MAX)
		return platform_error(p, -EINVAL, "replicas must be 1..%d", LOCAL_REPLICAS_MAX);
	lc = malloc(sizeof(*lc));
	if (!lc)
		return platform_error(p, -ENOMEM, "out of memory");
	rc = colour_load(p, sha, lc);
	if (rc == 0) {
		free(lc);
		return platform_error(p, -EEXIST, "colour %s exists", sha);
	}
	/* rainbow's record first: a kill in between leaves a colour to converge from. */
	memset(lc, 0, sizeof(*lc));
	snprintf(lc->c.sha, sizeof(lc->c.sha), "%s", sha);
	lc->c.created = (int64_t)time(NULL);
	lc->c.replicas = replicas;
	rc = colour_save(p, lc);
	if (rc == 0)
		rc = switch_scale(p, sha, replicas);
	free(lc);
	return rc;
}

static int local_select(struct platform *p, const char *sha)
{
	char req[128], now[PLATFORM_SHA_MAX];
	int rc;

	snprintf(req, sizeof(req), "select %s", sha && *sha ? sha : "-");
	rc = switch_call(p, req, 5000);
	if (rc < 0)
		return platform_error(p, rc == -EBUSY ? -EIO : rc,
				      "switch refused the selection: %s", p->err);
	rc = local_selected(p, now);
	if (rc == 0 && strcmp(now, sha ? sha : "") != 0)
		rc = platform_error(p, -EIO, "switch reads back %s after selecting %s", now,
				    sha ? sha : "-");
	return rc;
}

/* Waits (bounded) until the switch has no record of sha: its replicas exited. */
static void wait_colour_gone(struct platform *p, const char *sha)
{
	for (int waited = 0; waited < LOCAL_REMOVE_WAIT_MS; waited += 50) {
		json_t *st = NULL;

		if (lswitch_status(L(p)->state, &st) != 0)
			return;
		if (!status_colour(st, sha)) {
			json_decref(st);
			return;
		}
		json_decref(st);
		usleep(50 * 1000);
	}
	log_warn("replicas-still-running",
		 "sha=%s (they exit by themselves after their drain "
		 "timeout)",
		 sha);
}

static int local_remove(struct platform *p, const char *sha)
{
	char req[128], path[LOCAL_PATH_MAX];
	int rc;

	snprintf(req, sizeof(req), "remove %s", sha);
	rc = switch_call(p, req, 5000);
	if (rc < 0)
		return rc;
	wait_colour_gone(p, sha);
	colour_path(L(p)->state, sha, path, sizeof(path));
	if (unlink(path) != 0 && errno != ENOENT)
		return platform_error(p, -errno, "cannot remove %s: %s", path, strerror(errno));
	return 0;
}

static int local_scale(struct platform *p, const char *sha, int replicas)
{
	struct local_colour *lc = malloc(sizeof(*lc));
	int rc;

	if (!lc)
		return platform_error(p, -ENOMEM, "out of memory");
	if (replicas < 0 || replicas > LOCAL_REPLICAS_MAX) {
		free(lc);
		return platform_error(p, -EINVAL, "replicas must be 0..%d", LOCAL_REPLICAS_MAX);
	}
	rc = colour_load(p, sha, lc);
	if (rc == 0) {
		lc->c.replicas = replicas;
		rc = colour_save(p, lc);
	}
	if (rc == 0)
		rc = switch_scale(p, sha, replicas);
	free(lc);
	return rc;
}

static int local_remove_replica(struct platform *p, const char *sha, const char *name)
{
	struct local_colour *lc = malloc(sizeof(*lc));
	struct platform_replica pr;
	json_t *st = NULL, *col, *r, *found = NULL;
	char req[320];
	size_t i;
	int rc;

	if (!lc)
		return platform_error(p, -ENOMEM, "out of memory");
	rc = switch_status_get(p, &st);
	if (rc < 0)
		goto out;
	col = status_colour(st, sha);
	json_array_foreach (json_object_get(col, "replicas"), i, r)
		if (json_string_value(json_object_get(r, "name")) &&
		    strcmp(json_string_value(json_object_get(r, "name")), name) == 0)
			found = r;
	if (!found) {
		rc = platform_error(p, -ENOENT, "colour %s has no replica %s", sha, name);
		goto out;
	}
	if (rep_is(found, "terminating")) {
		rc = 0; /* asked before: it is on its way out */
		goto out;
	}
	rep_fill(L(p), found, &pr, 1);
	if (pr.connections != 0) {
		rc = platform_error(p, -EBUSY, "replica %s holds %ld connections", name,
				    pr.connections);
		goto out;
	}
	snprintf(req, sizeof(req), "remove-replica %s %s", sha, name);
	rc = switch_call(p, req, 5000);
	if (rc < 0)
		goto out;
	if (colour_load(p, sha, lc) == 0) {
		if (lc->c.replicas > 0)
			lc->c.replicas--;
		rc = colour_save(p, lc);
	}
out:
	json_decref(st);
	free(lc);
	return rc;
}

static int local_meta_set(struct platform *p, const char *sha, const char *key, const char *value)
{
	struct local_colour *lc = malloc(sizeof(*lc));
	int rc;

	if (!lc)
		return platform_error(p, -ENOMEM, "out of memory");
	rc = colour_load(p, sha, lc);
	if (rc == 0 && platform_meta_put(&lc->c, key, value) != 0)
		rc = platform_error(p, -ENOSPC, "colour %s: too many meta keys", sha);
	if (rc == 0)
		rc = colour_save(p, lc);
	free(lc);
	return rc;
}

/*
 * Assisted drain: POST http://REPLICA_HTTP/control/move?count=N with the
 * token of STATE/control.token (chatd answers with how many it moved).
 */
static int local_move(struct platform *p, const char *sha, const char *name, int count, int *moved)
{
	struct local *l = L(p);
	json_t *st = NULL, *col, *r, *reply;
	char path[LOCAL_PATH_MAX], url[320], hdr[4200], token[4100] = "";
	const char *http = NULL;
	struct curl_slist *h = NULL;
	struct bodybuf b = { .max = LOCAL_HTTP_MAX };
	long code;
	size_t i;
	FILE *f;
	int rc;

	*moved = 0;
	if (!l->control)
		return platform_error(p, -ENOTSUP,
				      "this chatd has no --control-token-file: it cannot move "
				      "sessions");
	rc = switch_status_get(p, &st);
	if (rc < 0)
		return rc;
	col = status_colour(st, sha);
	json_array_foreach (json_object_get(col, "replicas"), i, r)
		if (strcmp(json_string_value(json_object_get(r, "name")) ?: "", name) == 0)
			http = json_string_value(json_object_get(r, "http"));
	if (!http || !*http) {
		json_decref(st);
		return platform_error(p, -ENOENT, "colour %s has no replica %s listening", sha,
				      name);
	}
	snprintf(url, sizeof(url), "http://%s/control/move?count=%d", http, count);
	json_decref(st);
	snprintf(path, sizeof(path), "%s/control.token", l->state);
	f = fopen(path, "r");
	if (!f || !fgets(token, sizeof(token), f)) {
		if (f)
			fclose(f);
		return platform_error(p, -EIO, "cannot read %s", path);
	}
	fclose(f);
	token[strcspn(token, " \t\r\n")] = '\0';
	snprintf(hdr, sizeof(hdr), "X-Chatd-Control-Token: %s", token);
	h = curl_slist_append(NULL, hdr);
	code = http_request(l, url, h, 3000L, &b);
	curl_slist_free_all(h);
	explicit_bzero(token, sizeof(token));
	explicit_bzero(hdr, sizeof(hdr));
	reply = code == 200 && b.data ? json_loads(b.data, 0, NULL) : NULL;
	free(b.data);
	if (code == 403)
		return platform_error(p, -EACCES, "replica %s refused the control token", name);
	if (code == 404)
		return platform_error(p, -ENOTSUP, "replica %s has no control endpoint", name);
	if (code == 0)
		return platform_error(p, -ENOENT, "replica %s did not answer", name);
	if (!reply)
		return platform_error(p, -EIO, "replica %s answered %ld to a move", name, code);
	*moved = (int)json_integer_value(json_object_get(reply, "moved"));
	json_decref(reply);
	return 0;
}

static const struct platform_ops local_ops = {
	.name = "local",
	.open = local_open,
	.close = local_close,
	.list = local_list,
	.create = local_create,
	.replicas = local_replicas,
	.select = local_select,
	.selected = local_selected,
	.remove = local_remove,
	.scale = local_scale,
	.remove_replica = local_remove_replica,
	.meta_set = local_meta_set,
	.move = local_move,
};

const struct platform_ops *local_platform_ops(void)
{
	return &local_ops;
}

/* ---- up / down ---------------------------------------------------------- */

/*
 * Starts argv detached: double fork so the process is re-parented (never
 * our zombie), setsid so it is in no terminal's process group, output to
 * log. Returns the pid or -errno.
 */
static int spawn_detached(char *const argv[], const char *log)
{
	int pfd[2], status;
	pid_t child;
	int pid = -1;

	if (pipe2(pfd, O_CLOEXEC) != 0)
		return -errno;
	child = fork();
	if (child < 0) {
		close(pfd[0]);
		close(pfd[1]);
		return -errno;
	}
	if (child == 0) {
		pid_t gc;
		int fd;

		setsid();
		gc = fork();
		if (gc != 0) {
			int v = gc > 0 ? (int)gc : -1;

			if (write(pfd[1], &v, sizeof(v)) != sizeof(v))
				_exit(1);
			_exit(0);
		}
		fd = open("/dev/null", O_RDONLY);
		if (fd >= 0) {
			dup2(fd, 0);
			close(fd);
		}
		fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		signal(SIGPIPE, SIG_DFL);
		execvp(argv[0], argv);
		dprintf(2, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(pfd[1]);
	if (read(pfd[0], &pid, sizeof(pid)) != sizeof(pid))
		pid = -1;
	close(pfd[0]);
	waitpid(child, &status, 0);
	return pid > 0 ? pid : -ECHILD;
}

int local_switch_died(const char *state_dir, char *msg, size_t len, json_t **beat)
{
	char path[LOCAL_PATH_MAX];
	json_t *o;
	int pid;
	double t, ago;
	long conns, reps;
	const char *sel;

	if (len)
		msg[0] = '\0';
	if (beat)
		*beat = NULL;
	snprintf(path, sizeof(path), "%s/switch.beat", state_dir);
	o = json_load_file(path, 0, NULL);
	if (!o)
		return 0;
	pid = (int)json_integer_value(json_object_get(o, "pid"));
	/* Still running (and still the switch, not a reused pid): not dead. */
	if (pid > 0 && lswitch_pid_runs(pid, "serve")) {
		json_decref(o);
		return 0;
	}
	t = json_number_value(json_object_get(o, "t"));
	ago = (double)time(NULL) - t;
	conns = (long)json_integer_value(json_object_get(o, "connections"));
	reps = (long)json_integer_value(json_object_get(o, "replicas"));
	sel = json_string_value(json_object_get(o, "selected"));
	snprintf(msg, len,
		 "THE LOCAL SWITCH IS DOWN: it died (pid %d, last heard from %.0fs ago) without "
		 "`rainbow local down`. Every connection through it was dropped (%ld at its last "
		 "heartbeat). Its %ld replica(s) keep running, but nothing routes to them and "
		 "nobody restarts them. `rainbow local up --state-dir %s` starts a new switch: it "
		 "adopts them and resumes the selection (%s%s).",
		 pid, ago > 0 ? ago : 0, conns, reps, state_dir, sel && *sel ? "chat-" : "",
		 sel && *sel ? sel : "nothing");
	if (beat)
		*beat = o;
	else
		json_decref(o);
	return 1;
}

int local_up(const char *exe, const char *state_dir, const char *listen, const char *websocket,
	     int switches, int *already, char *err, size_t errlen)
{
	char reply[256], log[LOCAL_PATH_MAX], n[16];
	char *argv[] = { unconst(exe),
			 "local",
			 "serve",
			 "--state-dir",
			 unconst(state_dir),
			 "--listen",
			 unconst(listen),
			 NULL,
			 NULL,
			 NULL,
			 NULL,
			 NULL };
	int k = 7, rc, pid;

	if (switches > 0) {
		snprintf(n, sizeof(n), "%d", switches);
		argv[k++] = "--switches";
		argv[k++] = n;
	}
	if (websocket) {
		argv[k++] = "--websocket";
		argv[k++] = unconst(websocket);
	}

	*already = 0;
	rc = local_state_init(state_dir);
	if (rc < 0) {
		snprintf(err, errlen, "state dir %s: %s", state_dir, strerror(-rc));
		return rc;
	}
	if (lswitch_call(state_dir, "ping", reply, sizeof(reply)) == 0) {
		*already = 1;
		return 0;
	}
	snprintf(log, sizeof(log), "%s/switch.log", state_dir);
	pid = spawn_detached(argv, log);
	if (pid < 0) {
		snprintf(err, errlen, "cannot start the switch: %s", strerror(-pid));
		return pid;
	}
	for (int i = 0; i < 500; i++) {
		if (lswitch_call(state_dir, "ping", reply, sizeof(reply)) == 0)
			return 0;
		if (!lswitch_pid_runs(pid, NULL))
			break;
		usleep(20 * 1000);
	}
	snprintf(err, errlen, "the switch did not come up (see %s)", log);
	return -EIO;
}

/* Without a switch: stops the replicas its saved state names (SIGTERM twice, waits). */
static void down_without_switch(const char *state_dir)
{
	char path[LOCAL_PATH_MAX];
	json_t *o, *c, *r;
	size_t i, k;
	int pids[256], n = 0;

	snprintf(path, sizeof(path), "%s/switch.json", state_dir);
	o = json_load_file(path, 0, NULL);
	json_array_foreach (json_object_get(o, "colours"), i, c)
		json_array_foreach (json_object_get(c, "replicas"), k, r) {
			int pid = (int)json_integer_value(json_object_get(r, "pid"));
			const char *name = json_string_value(json_object_get(r, "name"));

			if (n < 256 && lswitch_pid_runs(pid, name)) {
				kill(pid, SIGTERM);
				pids[n++] = pid;
			}
		}
	json_decref(o);
	usleep(100 * 1000);
	for (int j = 0; j < n; j++)
		kill(pids[j], SIGTERM);
	for (int waited = 0; waited < 5000; waited += 50) {
		int alive = 0;

		for (int j = 0; j < n; j++)
			alive += lswitch_pid_runs(pids[j], NULL);
		if (!alive)
			break;
		usleep(50 * 1000);
	}
}

static void remove_colour_files(const char *state_dir)
{
	char dir[LOCAL_PATH_MAX], path[LOCAL_PATH_MAX], sha[PLATFORM_SHA_MAX];
	struct dirent *de;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/colours", state_dir);
	d = opendir(dir);
	while (d && (de = readdir(d))) {
		if (!sha_file(de->d_name, sha))
			continue;
		colour_path(state_dir, sha, path, sizeof(path));
		unlink(path);
	}
	if (d)
		closedir(d);
}

int local_down(const char *state_dir, int keep_colours, char *err, size_t errlen)
{
	char reply[256];
	json_t *o;
	int pid = 0, rc;

	if (lswitch_status(state_dir, &o) == 0)
		pid = (int)json_integer_value(json_object_get(o, "pid"));
	json_decref(o);
	if (!pid) {
		if (!keep_colours) {
			down_without_switch(state_dir);
			remove_colour_files(state_dir);
		}
		snprintf(err, errlen, "no switch answers in %s", state_dir);
		return -ENOENT;
	}
	rc = lswitch_call_timeout(state_dir, keep_colours ? "stop" : "down", reply, sizeof(reply),
				  15000);
	if (rc != 0) {
		snprintf(err, errlen, "the switch did not stop: %s",
			 rc == -EPROTO ? reply : strerror(-rc));
		return rc;
	}
	if (!keep_colours)
		remove_colour_files(state_dir);
	for (int i = 0; pid > 0 && i < 250 && lswitch_pid_runs(pid, NULL); i++)
		usleep(20 * 1000);
	return 0;
}
