/*
 * The local platform's operations (platform.h) over chatd processes and the
 * switch. Every change is written to the colour's JSON file (atomically:
 * temp file + rename) right after the process change it describes, so a
 * kill leaves at worst one replica unrecorded for a few microseconds.
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
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "log.h"
#include "lswitch.h"
#include "promtext.h"

#define LOCAL_HTTP_MAX (256 * 1024)
#define LOCAL_REPLICAS_MAX 32
#define LOCAL_PATH_MAX 4096

struct local_rep {
	char name[PLATFORM_NAME_MAX];
	int index;
	int pid;
	char listen[64];
	char http[64];
	char cluster[64]; /* "" when chatd has no cluster flags */
	long long started;
};

struct local_colour {
	struct platform_colour c;
	int next_index;
	size_t n_rep;
	struct local_rep rep[LOCAL_REPLICAS_MAX];
};

struct local {
	char state[LOCAL_PATH_MAX / 2]; /* half: room for every file name below it */
	char chatd[LOCAL_PATH_MAX];
	int auth_any;
	char chatd_args[1024];
	int cluster;	    /* chatd takes --cluster-listen/--peers-file */
	int cluster_secret; /* chatd takes --cluster-secret-file */
	CURL *curl;
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

static void colour_path(struct local *l, const char *sha, char *buf, size_t len)
{
	snprintf(buf, len, "%s/colours/%s.json", l->state, sha);
}

static int colour_load(struct platform *p, const char *sha, struct local_colour *lc)
{
	char path[LOCAL_PATH_MAX];
	json_error_t jerr;
	json_t *o, *reps, *meta, *v;
	const char *k;
	size_t i;

	memset(lc, 0, sizeof(*lc));
	colour_path(L(p), sha, path, sizeof(path));
	o = json_load_file(path, 0, &jerr);
	if (!o) {
		if (access(path, F_OK) != 0)
			return platform_error(p, -ENOENT, "colour %s does not exist", sha);
		return platform_error(p, -EIO, "%s: %s", path, jerr.text);
	}
	snprintf(lc->c.sha, sizeof(lc->c.sha), "%s", sha);
	lc->c.created = json_integer_value(json_object_get(o, "created"));
	lc->c.replicas = (int)json_integer_value(json_object_get(o, "replicas_wanted"));
	lc->next_index = (int)json_integer_value(json_object_get(o, "next_index"));
	reps = json_object_get(o, "replicas");
	json_array_foreach (reps, i, v) {
		struct local_rep *r;

		if (lc->n_rep >= LOCAL_REPLICAS_MAX)
			break;
		r = &lc->rep[lc->n_rep++];
		snprintf(r->name, sizeof(r->name), "%s",
			 json_string_value(json_object_get(v, "name")) ?: "");
		r->index = (int)json_integer_value(json_object_get(v, "index"));
		r->pid = (int)json_integer_value(json_object_get(v, "pid"));
		snprintf(r->listen, sizeof(r->listen), "%s",
			 json_string_value(json_object_get(v, "listen")) ?: "");
		snprintf(r->http, sizeof(r->http), "%s",
			 json_string_value(json_object_get(v, "http")) ?: "");
		snprintf(r->cluster, sizeof(r->cluster), "%s",
			 json_string_value(json_object_get(v, "cluster")) ?: "");
		r->started = json_integer_value(json_object_get(v, "started"));
	}
	meta = json_object_get(o, "meta");
	json_object_foreach (meta, k, v) {
		if (json_is_string(v))
			platform_meta_put(&lc->c, k, json_string_value(v));
	}
	json_decref(o);
	return 0;
}

static int write_json_atomic(json_t *o, const char *path)
{
	char tmp[LOCAL_PATH_MAX + 32];
	int rc;

	/* The pid keeps two writers from sharing (and mixing) one temp file. */
	snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)getpid());
	if (json_dump_file(o, tmp, JSON_INDENT(1) | JSON_SORT_KEYS) != 0) {
		unlink(tmp);
		return -EIO;
	}
	if (rename(tmp, path) != 0) {
		rc = -errno;
		unlink(tmp);
		return rc;
	}
	return 0;
}

static int colour_save(struct platform *p, const struct local_colour *lc)
{
	char path[LOCAL_PATH_MAX];
	json_t *o = json_object(), *reps = json_array(), *meta = json_object();
	int rc;

	for (size_t i = 0; i < lc->n_rep; i++) {
		const struct local_rep *r = &lc->rep[i];

		json_array_append_new(reps,
				      json_pack("{s:s,s:i,s:i,s:s,s:s,s:s,s:I}", "name", r->name,
						"index", r->index, "pid", r->pid, "listen",
						r->listen, "http", r->http, "cluster", r->cluster,
						"started", (json_int_t)r->started));
	}
	for (size_t i = 0; i < lc->c.n_meta; i++)
		json_object_set_new(meta, lc->c.meta[i].key, json_string(lc->c.meta[i].value));
	json_object_set_new(o, "sha", json_string(lc->c.sha));
	json_object_set_new(o, "created", json_integer(lc->c.created));
	json_object_set_new(o, "replicas_wanted", json_integer(lc->c.replicas));
	json_object_set_new(o, "next_index", json_integer(lc->next_index));
	json_object_set_new(o, "replicas", reps);
	json_object_set_new(o, "meta", meta);
	colour_path(L(p), lc->c.sha, path, sizeof(path));
	rc = write_json_atomic(o, path);
	json_decref(o);
	if (rc < 0)
		return platform_error(p, rc, "cannot write %s: %s", path, strerror(-rc));
	return 0;
}

/* ---- processes ---------------------------------------------------------- */

/* 1 when pid is alive (not a zombie) and still runs replica `name` (if named). */
static int rep_alive(const struct local_rep *r)
{
	char path[64], buf[4096], st[512];
	ssize_t n;
	int fd;
	char *paren;

	if (r->pid <= 0 || kill(r->pid, 0) != 0)
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/stat", r->pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, st, sizeof(st) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	st[n] = '\0';
	paren = strrchr(st, ')');
	if (!paren || paren[1] != ' ' || paren[2] == 'Z' || paren[2] == 'X')
		return 0;
	if (!r->name[0])
		return 1; /* any live process with that pid */
	snprintf(path, sizeof(path), "/proc/%d/cmdline", r->pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	for (ssize_t i = 0; i < n; i++)
		if (buf[i] == '\0')
			buf[i] = ' ';
	buf[n] = '\0';
	return strstr(buf, r->name) != NULL;
}

static int free_port(void)
{
	struct sockaddr_in a;
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = -1;

	if (fd < 0)
		return -1;
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	close(fd);
	return port;
}

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

static int rep_wait_exit(const struct local_rep *r, int ms)
{
	for (int waited = 0; waited < ms; waited += 20) {
		if (!rep_alive(r))
			return 0;
		usleep(20 * 1000);
	}
	return -ETIMEDOUT;
}

/*
 * SIGTERM: chatd stops accepting and keeps what it holds until it closes or
 * --drain-timeout. `now` adds the second SIGTERM (close everything at once
 * with system-shutdown). Never SIGKILL: that would drop connections.
 */
static void rep_stop(const struct local_rep *r, int now)
{
	if (!rep_alive(r))
		return;
	kill(r->pid, SIGTERM);
	if (now) {
		usleep(100 * 1000);
		if (rep_alive(r))
			kill(r->pid, SIGTERM);
	}
	if (rep_wait_exit(r, 5000) != 0)
		log_warn("replica-still-running",
			 "name=%s pid=%d (it exits by itself after "
			 "its drain timeout)",
			 r->name, r->pid);
}

static int rep_start(struct platform *p, struct local_colour *lc)
{
	struct local *l = L(p);
	struct local_rep *r;
	char *argv[64], log[LOCAL_PATH_MAX], peers[LOCAL_PATH_MAX], secret[LOCAL_PATH_MAX];
	char args[sizeof(l->chatd_args)], *save = NULL, *tok;
	size_t n = 0;
	int hp, lp, cp = 0, pid;

	if (lc->n_rep >= LOCAL_REPLICAS_MAX)
		return platform_error(p, -EINVAL, "at most %d replicas per colour",
				      LOCAL_REPLICAS_MAX);
	r = &lc->rep[lc->n_rep];
	memset(r, 0, sizeof(*r));
	r->index = lc->next_index;
	{
		char sha[PLATFORM_SHA_MAX];

		memcpy(sha, lc->c.sha, sizeof(sha));
		snprintf(r->name, sizeof(r->name), "chat-%s-%d", sha, r->index);
	}
	lp = free_port();
	hp = free_port();
	if (l->cluster)
		cp = free_port();
	if (lp < 0 || hp < 0 || cp < 0)
		return platform_error(p, -EADDRNOTAVAIL, "no free loopback port");
	snprintf(r->listen, sizeof(r->listen), "127.0.0.1:%d", lp);
	snprintf(r->http, sizeof(r->http), "127.0.0.1:%d", hp);
	if (l->cluster)
		snprintf(r->cluster, sizeof(r->cluster), "127.0.0.1:%d", cp);
	snprintf(log, sizeof(log), "%s/logs/%s.log", l->state, r->name);
	snprintf(peers, sizeof(peers), "%s/peers", l->state);
	snprintf(secret, sizeof(secret), "%s/cluster.secret", l->state);

	argv[n++] = l->chatd;
	argv[n++] = "--listen";
	argv[n++] = r->listen;
	argv[n++] = "--http";
	argv[n++] = r->http;
	argv[n++] = "--version-label";
	argv[n++] = lc->c.sha;
	argv[n++] = "--instance";
	argv[n++] = r->name;
	if (l->auth_any)
		argv[n++] = "--auth-any";
	if (l->cluster) {
		argv[n++] = "--cluster-listen";
		argv[n++] = r->cluster;
		argv[n++] = "--peers-file";
		argv[n++] = peers;
		if (l->cluster_secret) {
			argv[n++] = "--cluster-secret-file";
			argv[n++] = secret;
		}
	}
	snprintf(args, sizeof(args), "%s", l->chatd_args);
	for (tok = strtok_r(args, " \t", &save); tok && n < 62; tok = strtok_r(NULL, " \t", &save))
		argv[n++] = tok;
	argv[n] = NULL;

	pid = spawn_detached(argv, log);
	if (pid < 0)
		return platform_error(p, pid, "cannot start %s: %s", l->chatd, strerror(-pid));
	r->pid = pid;
	r->started = (long long)time(NULL);
	lc->n_rep++;
	lc->next_index++;
	log_info("replica-started", "name=%s pid=%d listen=%s http=%s", r->name, pid, r->listen,
		 r->http);
	return 0;
}

/* ---- HTTP probes -------------------------------------------------------- */

struct http_buf {
	char *data;
	size_t len;
};

static size_t http_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct http_buf *b = ud;
	size_t n = size * nmemb;

	if (b->len + n > LOCAL_HTTP_MAX)
		return 0; /* capped: the transfer fails */
	char *d = realloc(b->data, b->len + n + 1);
	if (!d)
		return 0;
	memcpy(d + b->len, ptr, n);
	b->len += n;
	d[b->len] = '\0';
	b->data = d;
	return n;
}

/* HTTP status of GET http://hostport/path (0 when nothing answered); body optional. */
static long http_get(struct local *l, const char *hostport, const char *path, char **body)
{
	char url[256];
	struct http_buf b = { 0 };
	long code = 0;

	snprintf(url, sizeof(url), "http://%s%s", hostport, path);
	curl_easy_reset(l->curl);
	curl_easy_setopt(l->curl, CURLOPT_URL, url);
	curl_easy_setopt(l->curl, CURLOPT_TIMEOUT_MS, 1500L);
	curl_easy_setopt(l->curl, CURLOPT_CONNECTTIMEOUT_MS, 500L);
	curl_easy_setopt(l->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(l->curl, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(l->curl, CURLOPT_WRITEFUNCTION, http_write);
	curl_easy_setopt(l->curl, CURLOPT_WRITEDATA, &b);
	if (curl_easy_perform(l->curl) == CURLE_OK)
		curl_easy_getinfo(l->curl, CURLINFO_RESPONSE_CODE, &code);
	if (body && code)
		*body = b.data;
	else
		free(b.data);
	return code;
}

static void rep_probe(struct local *l, const struct local_rep *r, struct platform_replica *out)
{
	char *body = NULL;

	memset(out, 0, sizeof(*out));
	snprintf(out->name, sizeof(out->name), "%s", r->name);
	if (!rep_alive(r)) {
		/* A dead replica holds no connection. */
		platform_replica_metrics(out, NULL);
		out->ready = 0;
		out->connections = 0;
		return;
	}
	out->ready = http_get(l, r->http, "/readyz", NULL) == 200;
	platform_replica_metrics(out, http_get(l, r->http, "/metrics", &body) == 200 ? body : NULL);
	free(body);
}

/* ---- peers file --------------------------------------------------------- */

static int sha_file(const char *name, char *sha)
{
	size_t n = strlen(name);

	if (n < 6 || strcmp(name + n - 5, ".json") != 0 || n - 5 >= PLATFORM_SHA_MAX)
		return 0;
	memcpy(sha, name, n - 5);
	sha[n - 5] = '\0';
	return platform_sha_valid(sha);
}

/* Rewrites STATE/peers with every recorded replica's cluster address. */
static void peers_update(struct platform *p)
{
	struct local *l = L(p);
	char dir[LOCAL_PATH_MAX], path[LOCAL_PATH_MAX], tmp[LOCAL_PATH_MAX + 32];
	char sha[PLATFORM_SHA_MAX];
	struct local_colour *lc;
	struct dirent *de;
	DIR *d;
	FILE *f;

	if (!l->cluster)
		return;
	lc = malloc(sizeof(*lc));
	snprintf(dir, sizeof(dir), "%s/colours", l->state);
	snprintf(path, sizeof(path), "%s/peers", l->state);
	snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)getpid());
	d = opendir(dir);
	f = fopen(tmp, "w");
	if (!lc || !d || !f)
		goto out;
	while ((de = readdir(d))) {
		if (!sha_file(de->d_name, sha) || colour_load(p, sha, lc) != 0)
			continue;
		for (size_t i = 0; i < lc->n_rep; i++)
			if (lc->rep[i].cluster[0])
				fprintf(f, "%s\n", lc->rep[i].cluster);
	}
	if (fclose(f) != 0 || rename(tmp, path) != 0) {
		log_warn("peers-file", "err=\"%s\"", strerror(errno));
		unlink(tmp);
	}
	f = NULL;
out:
	if (f) {
		fclose(f);
		unlink(tmp);
	}
	if (d)
		closedir(d);
	free(lc);
}

/* ---- ops ---------------------------------------------------------------- */

static void chatd_default(char *buf, size_t len)
{
	char exe[LOCAL_PATH_MAX / 2];
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
}

static int ensure_secret(struct local *l)
{
	char path[LOCAL_PATH_MAX];
	unsigned char raw[24];
	FILE *f;
	int fd;

	snprintf(path, sizeof(path), "%s/cluster.secret", l->state);
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
	return fclose(f) == 0 ? 0 : -EIO;
}

static int local_open(struct platform *p, const struct platform_opts *o)
{
	struct local *l = calloc(1, sizeof(*l));
	char reply[256];
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
	if (strchr(l->chatd, '/') && access(l->chatd, X_OK) != 0)
		return platform_error(p, -ENOENT,
				      "chatd not found at %s (--chatd or RAINBOW_CHATD)", l->chatd);
	l->auth_any = o->auth_any;
	snprintf(l->chatd_args, sizeof(l->chatd_args), "%s", o->chatd_args ? o->chatd_args : "");
	if (o->n_extra)
		return platform_error(p, -EINVAL, "the local platform takes no option %s",
				      o->extra[0].key);
	l->curl = curl_easy_init();
	if (!l->curl)
		return platform_error(p, -ENOMEM, "curl_easy_init failed");
	rc = lswitch_call(l->state, "ping", reply, sizeof(reply));
	if (rc != 0)
		return platform_error(p, -ENOENT,
				      "the local platform is not up (no switch "
				      "answers on %s/switch.sock): run `rainbow local up "
				      "--state-dir %s` first",
				      l->state, l->state);
	rc = local_state_init(l->state);
	if (rc < 0)
		return platform_error(p, rc, "state dir %s: %s", l->state, strerror(-rc));
	chatd_features(l);
	if (l->cluster && l->cluster_secret && ensure_secret(l) != 0)
		return platform_error(p, -EIO, "cannot create %s/cluster.secret", l->state);
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

/* The switch's status (*st: a new reference), or the platform error. */
static int switch_status_get(struct platform *p, json_t **st)
{
	int rc = lswitch_status(L(p)->state, st);

	if (rc == -EIO || rc == -EPROTO || rc == -ENOMEM)
		return platform_error(p, -EIO, "the local switch answered status badly");
	if (rc != 0)
		return platform_error(p, -ENOENT,
				      "the local switch is not running "
				      "(rainbow local up --state-dir %s)",
				      L(p)->state);
	return 0;
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

static int rep_ready(struct local *l, const struct local_rep *r)
{
	return rep_alive(r) && http_get(l, r->http, "/readyz", NULL) == 200;
}

/* Backends of the switch that are not ready replicas, plus ready replicas that are not backends. */
static int route_drift(const struct local_colour *lc, const int *ready, json_t *backends)
{
	int drift = 0;
	size_t i;
	json_t *v;

	json_array_foreach (backends, i, v) {
		const char *a = json_string_value(v);
		size_t k;

		for (k = 0; k < lc->n_rep; k++)
			if (ready[k] && a && strcmp(a, lc->rep[k].listen) == 0)
				break;
		drift += k == lc->n_rep;
	}
	for (size_t k = 0; k < lc->n_rep; k++) {
		int found = 0;

		json_array_foreach (backends, i, v)
			found |= json_string_value(v) &&
				 strcmp(json_string_value(v), lc->rep[k].listen) == 0;
		drift += ready[k] && !found;
	}
	return drift;
}

static int local_list(struct platform *p, struct platform_colour **out, size_t *n)
{
	char dir[LOCAL_PATH_MAX], sha[PLATFORM_SHA_MAX], sel[PLATFORM_SHA_MAX];
	struct platform_colour *arr = NULL;
	struct local_colour *lc = malloc(sizeof(*lc));
	size_t cnt = 0, cap = 0;
	struct dirent *de;
	json_t *st = NULL;
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
		int ready[LOCAL_REPLICAS_MAX];

		if (!sha_file(de->d_name, sha) || colour_load(p, sha, lc) != 0)
			continue;
		if (cnt == cap) {
			struct platform_colour *na;

			cap = cap ? cap * 2 : 8;
			na = realloc(arr, cap * sizeof(*arr));
			if (!na) {
				closedir(d);
				rc = platform_error(p, -ENOMEM, "out of memory");
				goto out;
			}
			arr = na;
		}
		lc->c.selected = strcmp(sel, sha) == 0;
		lc->c.ready = 0;
		for (size_t i = 0; i < lc->n_rep; i++) {
			ready[i] = rep_ready(L(p), &lc->rep[i]);
			lc->c.ready += ready[i];
		}
		lc->c.route_drift =
			lc->c.selected ? route_drift(lc, ready, json_object_get(st, "backends"))
				       : 0;
		arr[cnt++] = lc->c;
	}
	closedir(d);
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
	memset(lc, 0, sizeof(*lc));
	snprintf(lc->c.sha, sizeof(lc->c.sha), "%s", sha);
	lc->c.created = (int64_t)time(NULL);
	lc->c.replicas = replicas;
	rc = colour_save(p, lc);
	for (int i = 0; rc == 0 && i < replicas; i++) {
		rc = rep_start(p, lc);
		if (rc == 0)
			rc = colour_save(p, lc);
	}
	peers_update(p);
	free(lc);
	return rc;
}

static int local_replicas(struct platform *p, const char *sha, struct platform_replica **out,
			  size_t *n)
{
	struct local_colour *lc = malloc(sizeof(*lc));
	struct platform_replica *arr;
	int rc;

	*out = NULL;
	*n = 0;
	if (!lc)
		return platform_error(p, -ENOMEM, "out of memory");
	rc = colour_load(p, sha, lc);
	if (rc < 0)
		goto out;
	arr = calloc(lc->n_rep ? lc->n_rep : 1, sizeof(*arr));
	if (!arr) {
		rc = platform_error(p, -ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < lc->n_rep; i++)
		rep_probe(L(p), &lc->rep[i], &arr[i]);
	*out = arr;
	*n = lc->n_rep;
out:
	free(lc);
	return rc;
}

static int local_select(struct platform *p, const char *sha)
{
	char req[LSWITCH_LINE_MAX], reply[LSWITCH_LINE_MAX], now[PLATFORM_SHA_MAX];
	struct local_colour *lc;
	size_t off;
	int rc;

	if (!sha || !*sha) {
		rc = lswitch_call(L(p)->state, "select -", reply, sizeof(reply));
		return rc ? platform_error(p, -EIO, "switch: %s", reply) : 0;
	}
	lc = malloc(sizeof(*lc));
	if (!lc)
		return platform_error(p, -ENOMEM, "out of memory");
	rc = colour_load(p, sha, lc);
	if (rc < 0)
		goto out;
	/* The ready replicas: the switch's backends must be exactly those. */
	off = (size_t)snprintf(req, sizeof(req), "select %s ", sha);
	for (size_t i = 0; i < lc->n_rep; i++) {
		if (!rep_ready(L(p), &lc->rep[i]))
			continue;
		off += (size_t)snprintf(req + off, sizeof(req) - off, "%s%s",
					req[off - 1] == ' ' ? "" : ",", lc->rep[i].listen);
		if (off >= sizeof(req)) {
			rc = platform_error(p, -E2BIG, "too many replicas to select");
			goto out;
		}
	}
	if (req[off - 1] == ' ') {
		rc = platform_error(p, -EIO, "colour %s has no ready replica", sha);
		goto out;
	}
	rc = lswitch_call(L(p)->state, req, reply, sizeof(reply));
	if (rc != 0) {
		rc = platform_error(p, -EIO, "switch refused the selection: %s",
				    rc == -EPROTO ? reply : strerror(-rc));
		goto out;
	}
	rc = local_selected(p, now);
	if (rc == 0 && strcmp(now, sha) != 0)
		rc = platform_error(p, -EIO, "switch reads back %s after selecting %s", now, sha);
out:
	free(lc);
	return rc;
}

static int local_remove(struct platform *p, const char *sha)
{
	struct local_colour *lc = malloc(sizeof(*lc));
	char path[LOCAL_PATH_MAX], sel[PLATFORM_SHA_MAX];
	int rc;

	if (!lc)
		return platform_error(p, -ENOMEM, "out of memory");
	rc = colour_load(p, sha, lc);
	if (rc < 0)
		goto out;
	if (local_selected(p, sel) == 0 && strcmp(sel, sha) == 0) {
		rc = platform_error(p, -EBUSY, "colour %s is selected; select another first", sha);
		goto out;
	}
	/* Stop every replica at once, then wait: parallel drains. */
	for (size_t i = 0; i < lc->n_rep; i++)
		if (rep_alive(&lc->rep[i]))
			kill(lc->rep[i].pid, SIGTERM);
	for (size_t i = 0; i < lc->n_rep; i++)
		rep_stop(&lc->rep[i], 1);
	colour_path(L(p), sha, path, sizeof(path));
	if (unlink(path) != 0 && errno != ENOENT)
		rc = platform_error(p, -errno, "cannot remove %s: %s", path, strerror(errno));
	peers_update(p);
out:
	free(lc);
	return rc;
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
	if (rc < 0)
		goto out;
	/* Dead replicas are forgotten first: scaling up replaces them. */
	for (size_t i = 0; i < lc->n_rep;) {
		if (!rep_alive(&lc->rep[i]))
			lc->rep[i] = lc->rep[--lc->n_rep];
		else
			i++;
	}
	lc->c.replicas = replicas;
	while ((int)lc->n_rep > replicas) {
		struct local_rep r = lc->rep[lc->n_rep - 1];

		rep_stop(&r, 0);
		lc->n_rep--;
		rc = colour_save(p, lc);
		if (rc < 0)
			goto out;
	}
	rc = colour_save(p, lc);
	while (rc == 0 && (int)lc->n_rep < replicas) {
		rc = rep_start(p, lc);
		if (rc == 0)
			rc = colour_save(p, lc);
	}
	peers_update(p);
out:
	free(lc);
	return rc;
}

static int local_remove_replica(struct platform *p, const char *sha, const char *name)
{
	struct local_colour *lc = malloc(sizeof(*lc));
	struct platform_replica pr;
	size_t i;
	int rc;

	if (!lc)
		return platform_error(p, -ENOMEM, "out of memory");
	rc = colour_load(p, sha, lc);
	if (rc < 0)
		goto out;
	for (i = 0; i < lc->n_rep; i++)
		if (strcmp(lc->rep[i].name, name) == 0)
			break;
	if (i == lc->n_rep) {
		rc = platform_error(p, -ENOENT, "colour %s has no replica %s", sha, name);
		goto out;
	}
	rep_probe(L(p), &lc->rep[i], &pr);
	if (pr.connections != 0) {
		rc = platform_error(p, -EBUSY, "replica %s holds %ld connections", name,
				    pr.connections);
		goto out;
	}
	rep_stop(&lc->rep[i], 0);
	lc->rep[i] = lc->rep[--lc->n_rep];
	if (lc->c.replicas > 0)
		lc->c.replicas--;
	rc = colour_save(p, lc);
	peers_update(p);
out:
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
};

const struct platform_ops *local_platform_ops(void)
{
	return &local_ops;
}

/* ---- up / down ---------------------------------------------------------- */

int local_up(const char *exe, const char *state_dir, const char *listen, int *already, char *err,
	     size_t errlen)
{
	char reply[256], log[LOCAL_PATH_MAX];
	char *argv[] = { (char *)exe,	    "local",	"serve",	"--state-dir",
			 (char *)state_dir, "--listen", (char *)listen, NULL };
	int rc, pid;

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
	for (int i = 0; i < 250; i++) {
		struct local_rep r = { .pid = pid };

		if (lswitch_call(state_dir, "ping", reply, sizeof(reply)) == 0)
			return 0;
		if (!rep_alive(&r))
			break;
		usleep(20 * 1000);
	}
	snprintf(err, errlen, "the switch did not come up (see %s)", log);
	return -EIO;
}

int local_down(const char *state_dir, int keep_colours, char *err, size_t errlen)
{
	struct platform p = { .ops = &local_ops };
	char dir[LOCAL_PATH_MAX], sha[PLATFORM_SHA_MAX], reply[256];
	struct local l;
	struct local_colour *lc = malloc(sizeof(*lc));
	struct dirent *de;
	int pid = 0, rc;
	DIR *d;

	if (!lc)
		return -ENOMEM;
	memset(&l, 0, sizeof(l));
	snprintf(l.state, sizeof(l.state), "%s", state_dir);
	p.ctx = &l;
	snprintf(dir, sizeof(dir), "%s/colours", state_dir);
	d = keep_colours ? NULL : opendir(dir);
	while (d && (de = readdir(d))) {
		if (!sha_file(de->d_name, sha) || colour_load(&p, sha, lc) != 0)
			continue;
		for (size_t i = 0; i < lc->n_rep; i++)
			if (rep_alive(&lc->rep[i]))
				kill(lc->rep[i].pid, SIGTERM);
		for (size_t i = 0; i < lc->n_rep; i++)
			rep_stop(&lc->rep[i], 1);
		colour_path(&l, sha, dir, sizeof(dir));
		unlink(dir);
		snprintf(dir, sizeof(dir), "%s/colours", state_dir);
	}
	if (d)
		closedir(d);
	free(lc);
	{
		json_t *o;

		if (lswitch_status(state_dir, &o) == 0)
			pid = (int)json_integer_value(json_object_get(o, "pid"));
		json_decref(o);
	}
	rc = lswitch_call(state_dir, "stop", reply, sizeof(reply));
	if (rc != 0) {
		snprintf(err, errlen, "no switch answers in %s", state_dir);
		return -ENOENT;
	}
	for (int i = 0; pid > 0 && i < 250 && kill(pid, 0) == 0; i++)
		usleep(20 * 1000);
	return 0;
}
