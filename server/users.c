/*
 * The users file: parsed whole at start into a sorted array (looked up with
 * bsearch), rewritten whole by `chatd passwd`. Files are small (people, not
 * load-test accounts, which use --auth-any), so simplicity wins.
 */
#include "users.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "b64.h"
#include "errmsg.h"
#include "jid.h"

#define USERS_MAX_LINE 4096
#define USERS_MAX_PASSWORD 1024

struct users_entry {
	char *name; /* nodeprep'ed */
	int have[SCRAM_HASH_COUNT];
	struct scram_cred cred[SCRAM_HASH_COUNT];
};

struct users {
	struct users_entry *v;
	size_t n;
};

void users_free(struct users *u)
{
	size_t i;

	if (!u)
		return;
	for (i = 0; i < u->n; i++) {
		free(u->v[i].name);
		OPENSSL_cleanse(u->v[i].cred, sizeof(u->v[i].cred));
	}
	free(u->v);
	free(u);
}

size_t users_count(const struct users *u)
{
	return u->n;
}

static int users_cmp(const void *a, const void *b)
{
	return strcmp(((const struct users_entry *)a)->name, ((const struct users_entry *)b)->name);
}

/* Decodes base64 field f[0..len) into out (exactly want bytes, or 1..max
 * when want is 0); returns the byte count or -1. */
static long users_b64_field(const char *f, size_t len, unsigned char *out, size_t max, size_t want)
{
	unsigned char buf[B64_DECODED_MAX(4 * SCRAM_MAX_SALT)];
	long n;

	if (len == 0 || len > 4 * SCRAM_MAX_SALT)
		return -EINVAL;
	n = b64_decode(f, len, buf, sizeof(buf));
	if (n <= 0 || (size_t)n > max || (want && (size_t)n != want))
		return -EINVAL;
	memcpy(out, buf, (size_t)n);
	return n;
}

/*
 * Parses "sha256:ITER:SALT:STORED:SERVER" (tok[0..len)) into e. Returns 0,
 * or -1 with a message (no file/line prefix) in msg.
 */
static int users_parse_cred(const char *tok, size_t len, struct users_entry *e, char *msg,
			    size_t msglen)
{
	const char *f[5];
	size_t fl[5], i, k = 0;
	const char *start = tok;
	enum scram_hash h;
	struct scram_cred *c;
	unsigned long it = 0;
	long n;

	for (i = 0; i <= len; i++) {
		if (i == len || tok[i] == ':') {
			if (k == 5) {
				errmsg_set(msg, msglen, "too many ':' fields in credentials");
				return -EINVAL;
			}
			f[k] = start;
			fl[k] = (size_t)(tok + i - start);
			k++;
			start = tok + i + 1;
		}
	}
	if (k != 5) {
		errmsg_set(msg, msglen,
			   "credentials need 5 ':' fields "
			   "(hash:iterations:salt:storedkey:serverkey)");
		return -EINVAL;
	}
	if (scram_hash_tag_parse(f[0], fl[0], &h) < 0) {
		errmsg_set(msg, msglen, "unknown hash '%.*s' (sha1 or sha256)", (int)fl[0], f[0]);
		return -EINVAL;
	}
	if (e->have[h]) {
		errmsg_set(msg, msglen, "%s credentials given twice", scram_hash_tag(h));
		return -EINVAL;
	}
	if (fl[1] == 0 || fl[1] > 7)
		goto bad_iter;
	for (i = 0; i < fl[1]; i++) {
		if (f[1][i] < '0' || f[1][i] > '9')
			goto bad_iter;
		it = it * 10 + (unsigned long)(f[1][i] - '0');
	}
	if (it < SCRAM_MIN_ITERATIONS || it > SCRAM_MAX_ITERATIONS)
		goto bad_iter;
	c = &e->cred[h];
	memset(c, 0, sizeof(*c));
	c->hash = h;
	c->iterations = (unsigned)it;
	n = users_b64_field(f[2], fl[2], c->salt, SCRAM_MAX_SALT, 0);
	if (n < 0) {
		errmsg_set(msg, msglen, "bad base64 in %s salt", scram_hash_tag(h));
		return -EINVAL;
	}
	c->salt_len = (size_t)n;
	if (users_b64_field(f[3], fl[3], c->stored_key, SCRAM_MAX_KEY, scram_hash_len(h)) < 0) {
		errmsg_set(msg, msglen, "bad base64 or length in %s stored key", scram_hash_tag(h));
		return -EINVAL;
	}
	if (users_b64_field(f[4], fl[4], c->server_key, SCRAM_MAX_KEY, scram_hash_len(h)) < 0) {
		errmsg_set(msg, msglen, "bad base64 or length in %s server key", scram_hash_tag(h));
		return -EINVAL;
	}
	e->have[h] = 1;
	return 0;

bad_iter:
	errmsg_set(msg, msglen, "bad %s iteration count '%.*s' (%u..%u)", scram_hash_tag(h),
		   (int)fl[1], f[1], SCRAM_MIN_ITERATIONS, SCRAM_MAX_ITERATIONS);
	return -EINVAL;
}

/* Splits the next blank-separated token off *p. */
static int users_token(const char **p, const char **tok, size_t *len)
{
	const char *s = *p;

	while (*s == ' ' || *s == '\t')
		s++;
	if (!*s)
		return 0;
	*tok = s;
	while (*s && *s != ' ' && *s != '\t')
		s++;
	*len = (size_t)(s - *tok);
	*p = s;
	return 1;
}

/*
 * Parses one line (NUL-terminated, line ending removed). Returns 1 with *e
 * filled for a user line, 0 for a blank or comment line, -1 with msg.
 */
static int users_parse_line(const char *line, struct users_entry *e, char *msg, size_t msglen)
{
	const char *p = line, *tok;
	size_t len;
	char *name = NULL, *prepped = NULL;
	int rc;

	memset(e, 0, sizeof(*e));
	if (!users_token(&p, &tok, &len) || tok[0] == '#')
		return 0;
	name = strndup(tok, len);
	if (!name) {
		errmsg_set(msg, msglen, "out of memory");
		return -EINVAL;
	}
	rc = jid_prep_node(name, &prepped);
	if (rc) {
		errmsg_set(msg, msglen, "user name '%s': %s", name, jid_strerror(rc));
		goto out_err;
	}
	if (strcmp(prepped, name) != 0) {
		errmsg_set(msg, msglen, "user name '%s' is not in prepared form (would be '%s')",
			   name, prepped);
		goto out_err;
	}
	free(prepped);
	e->name = name;
	while (users_token(&p, &tok, &len)) {
		if (users_parse_cred(tok, len, e, msg, msglen) < 0) {
			free(e->name);
			e->name = NULL;
			return -EINVAL;
		}
	}
	if (!e->have[SCRAM_SHA1] && !e->have[SCRAM_SHA256]) {
		errmsg_set(msg, msglen, "user '%s' has no credentials", e->name);
		free(e->name);
		e->name = NULL;
		return -EINVAL;
	}
	return 1;

out_err:
	free(prepped);
	free(name);
	return -EINVAL;
}

/* Reads the next line into *line (malloc'd by getline); strips "\n" and
 * "\r\n". Returns its length, -ENOENT at EOF. */
static long users_getline(FILE *f, char **line, size_t *cap)
{
	ssize_t n = getline(line, cap, f);

	if (n < 0)
		return -ENOENT; /* EOF */
	if (n > 0 && (*line)[n - 1] == '\n')
		(*line)[--n] = '\0';
	if (n > 0 && (*line)[n - 1] == '\r')
		(*line)[--n] = '\0';
	return (long)n;
}

int users_load(const char *path, struct users **out, char *err, size_t errlen)
{
	struct users *u;
	struct users_entry e, *v;
	char *line = NULL, msg[256];
	size_t cap = 0, lineno = 0, i, vcap = 0;
	long n;
	FILE *f;
	int rc = 0;

	*out = NULL;
	f = fopen(path, "r");
	if (!f) {
		rc = -errno;
		errmsg_set(err, errlen, "%s: %s", path, strerror(errno));
		return rc;
	}
	u = calloc(1, sizeof(*u));
	if (!u) {
		fclose(f);
		errmsg_set(err, errlen, "%s: out of memory", path);
		return -ENOMEM;
	}
	while ((n = users_getline(f, &line, &cap)) >= 0) {
		lineno++;
		if (n > USERS_MAX_LINE || memchr(line, '\0', (size_t)n)) {
			errmsg_set(err, errlen, "%s:%zu: line too long or holds a NUL byte", path,
				   lineno);
			rc = -EINVAL;
			goto out_fail;
		}
		rc = users_parse_line(line, &e, msg, sizeof(msg));
		if (rc < 0) {
			errmsg_set(err, errlen, "%s:%zu: %s", path, lineno, msg);
			rc = -EINVAL;
			goto out_fail;
		}
		if (rc == 0)
			continue;
		if (u->n == vcap) {
			vcap = vcap ? vcap * 2 : 16;
			v = realloc(u->v, vcap * sizeof(*v));
			if (!v) {
				free(e.name);
				errmsg_set(err, errlen, "%s: out of memory", path);
				rc = -ENOMEM;
				goto out_fail;
			}
			u->v = v;
		}
		u->v[u->n++] = e;
	}
	if (ferror(f)) {
		rc = -EIO;
		errmsg_set(err, errlen, "%s: read error", path);
		goto out_fail;
	}
	if (u->n > 1)
		qsort(u->v, u->n, sizeof(*u->v), users_cmp);
	for (i = 1; i < u->n; i++) {
		if (strcmp(u->v[i - 1].name, u->v[i].name) == 0) {
			errmsg_set(err, errlen, "%s: user '%s' appears more than once", path,
				   u->v[i].name);
			rc = -EINVAL;
			goto out_fail;
		}
	}
	free(line);
	fclose(f);
	*out = u;
	return 0;

out_fail:
	free(line);
	fclose(f);
	users_free(u);
	return rc;
}

static const struct users_entry *users_find(const struct users *u, const char *username, int *rc)
{
	struct users_entry key;
	const struct users_entry *e;
	char *prepped = NULL;

	memset(&key, 0, sizeof(key));
	if (jid_prep_node(username, &prepped)) {
		*rc = -EINVAL;
		return NULL;
	}
	key.name = prepped;
	e = u->n ? bsearch(&key, u->v, u->n, sizeof(*u->v), users_cmp) : NULL;
	free(prepped);
	*rc = e ? 0 : -ENOENT;
	return e;
}

int users_lookup(const struct users *u, const char *username, enum scram_hash hash,
		 struct scram_cred *out)
{
	const struct users_entry *e;
	int rc;

	e = users_find(u, username, &rc);
	if (!e)
		return rc;
	if (!e->have[hash])
		return -ENOENT;
	*out = e->cred[hash];
	return 0;
}

int users_scram_lookup(void *ud, enum scram_hash hash, const char *username,
		       struct scram_cred *cred)
{
	return users_lookup(ud, username, hash, cred) == 0 ? 0 : SCRAM_ERR_UNKNOWN_USER;
}

int users_verify_plain(const struct users *u, const char *username, const char *password)
{
	static const struct scram_cred dummy = {
		.hash = SCRAM_SHA256,
		.iterations = SCRAM_DEFAULT_ITERATIONS,
		.salt_len = 1,
	};
	const struct users_entry *e;
	const struct scram_cred *c;
	int rc;

	e = users_find(u, username, &rc);
	if (!e) {
		/* the same work as for a real user, so timing tells nothing */
		scram_plain_verify(&dummy, password);
		return -EACCES;
	}
	c = e->have[SCRAM_SHA256] ? &e->cred[SCRAM_SHA256] : &e->cred[SCRAM_SHA1];
	return scram_plain_verify(c, password) == 0 ? 0 : -EACCES;
}

/* ------------------------------------------------------------ writing */

/* "name sha1:... sha256:...\n" for fresh credentials, malloc'd. */
static int users_make_line(const char *name, const char *password, unsigned iterations, char **line,
			   char *err, size_t errlen)
{
	char salt[B64_ENCODED_LEN(SCRAM_MAX_SALT) + 1], sk[B64_ENCODED_LEN(SCRAM_MAX_KEY) + 1];
	char vk[B64_ENCODED_LEN(SCRAM_MAX_KEY) + 1], part[2][512];
	struct scram_cred c;
	int h, rc;

	for (h = 0; h < SCRAM_HASH_COUNT; h++) {
		rc = scram_cred_make((enum scram_hash)h, password, iterations, &c);
		if (rc) {
			errmsg_set(err, errlen, "cannot make credentials: %s", scram_strerror(rc));
			return rc == SCRAM_ERR_NOMEM ? -ENOMEM : -EINVAL;
		}
		b64_encode(c.salt, c.salt_len, salt, sizeof(salt));
		b64_encode(c.stored_key, scram_hash_len(c.hash), sk, sizeof(sk));
		b64_encode(c.server_key, scram_hash_len(c.hash), vk, sizeof(vk));
		snprintf(part[h], sizeof(part[h]), "%s:%u:%s:%s:%s", scram_hash_tag(c.hash),
			 c.iterations, salt, sk, vk);
		OPENSSL_cleanse(&c, sizeof(c));
	}
	if (asprintf(line, "%s %s %s\n", name, part[SCRAM_SHA1], part[SCRAM_SHA256]) < 0) {
		*line = NULL;
		errmsg_set(err, errlen, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

/* The first token of line equals name? */
static int users_line_is(const char *line, const char *name)
{
	const char *p = line, *tok;
	size_t len;

	return users_token(&p, &tok, &len) && tok[0] != '#' && len == strlen(name) &&
	       memcmp(tok, name, len) == 0;
}

/* Copies the lines of path (if it exists) to out, replacing name's line by
 * newline (or appending it). */
static int users_copy_replacing(const char *path, FILE *out, const char *name, const char *newline,
				char *err, size_t errlen)
{
	FILE *in = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0;
	int replaced = 0;

	if (!in && errno != ENOENT) {
		errmsg_set(err, errlen, "%s: %s", path, strerror(errno));
		return -errno;
	}
	while (in && users_getline(in, &line, &cap) >= 0) {
		if (users_line_is(line, name)) {
			if (!replaced)
				fputs(newline, out);
			replaced = 1;
			continue;
		}
		fprintf(out, "%s\n", line);
	}
	free(line);
	if (in)
		fclose(in);
	if (!replaced)
		fputs(newline, out);
	return 0;
}

int users_file_set(const char *path, const char *username, const char *password,
		   unsigned iterations, char *err, size_t errlen)
{
	struct users *u = NULL;
	char *name = NULL, *line = NULL, *tmp = NULL;
	FILE *out = NULL;
	int rc, fd = -1;

	rc = jid_prep_node(username, &name);
	if (rc) {
		errmsg_set(err, errlen, "user name '%s': %s", username, jid_strerror(rc));
		return -EINVAL;
	}
	/* Refuse to rewrite a file we cannot read back: its lines would be
	 * copied blindly, and a typo would then be the admin's surprise. */
	if (access(path, F_OK) == 0) {
		rc = users_load(path, &u, err, errlen);
		if (rc)
			goto out_free;
		users_free(u);
	}
	rc = users_make_line(name, password, iterations, &line, err, errlen);
	if (rc)
		goto out_free;
	if (asprintf(&tmp, "%s.tmp.XXXXXX", path) < 0) {
		tmp = NULL;
		rc = -ENOMEM;
		errmsg_set(err, errlen, "out of memory");
		goto out_free;
	}
	fd = mkstemp(tmp);
	if (fd < 0 || fchmod(fd, 0600) < 0) {
		rc = -errno;
		errmsg_set(err, errlen, "%s: %s", tmp, strerror(errno));
		goto out_unlink;
	}
	out = fdopen(fd, "w");
	if (!out) {
		rc = -errno;
		errmsg_set(err, errlen, "%s: %s", tmp, strerror(errno));
		goto out_unlink;
	}
	fd = -1;
	rc = users_copy_replacing(path, out, name, line, err, errlen);
	if (rc)
		goto out_unlink;
	if (fflush(out) != 0 || fsync(fileno(out)) != 0) {
		rc = -errno;
		errmsg_set(err, errlen, "%s: %s", tmp, strerror(errno));
		goto out_unlink;
	}
	if (fclose(out) != 0) {
		out = NULL;
		rc = -errno;
		errmsg_set(err, errlen, "%s: %s", tmp, strerror(errno));
		goto out_unlink;
	}
	out = NULL;
	if (rename(tmp, path) != 0) {
		rc = -errno;
		errmsg_set(err, errlen, "rename %s -> %s: %s", tmp, path, strerror(errno));
		goto out_unlink;
	}
	rc = 0;
	goto out_free;

out_unlink:
	if (out)
		fclose(out);
	if (fd >= 0)
		close(fd);
	if (tmp)
		unlink(tmp);
out_free:
	free(tmp);
	if (line) {
		OPENSSL_cleanse(line, strlen(line));
		free(line);
	}
	free(name);
	return rc;
}

/* ------------------------------------------------------------ chatd passwd */

static void users_passwd_usage(FILE *f)
{
	fprintf(f,
		"usage: chatd passwd [--iterations N] --users FILE USER\n"
		"\n"
		"Adds USER to FILE, or replaces their password, with salted SCRAM-SHA-1 and\n"
		"SCRAM-SHA-256 credentials (never the password itself). The password is read\n"
		"from standard input: the first line, or asked twice without echo on a\n"
		"terminal. FILE is rewritten atomically with mode 0600; it is created when\n"
		"missing.\n"
		"\n"
		"  --users FILE      the users file (also CHATD_USERS)\n"
		"  --iterations N    PBKDF2 iterations, %u..%u (default %u)\n"
		"  -h, --help        this text\n",
		SCRAM_MIN_ITERATIONS, SCRAM_MAX_ITERATIONS, SCRAM_DEFAULT_ITERATIONS);
}

/* Reads one line of at most USERS_MAX_PASSWORD bytes from f into buf.
 * Returns 0, or -1 at EOF / for an overlong line. */
static int users_read_line(FILE *f, char *buf, size_t size)
{
	size_t n;

	if (!fgets(buf, (int)size, f))
		return -EINVAL;
	n = strlen(buf);
	if (n > 0 && buf[n - 1] == '\n')
		buf[--n] = '\0';
	else if (!feof(f))
		return -EINVAL; /* longer than the buffer */
	if (n > 0 && buf[n - 1] == '\r')
		buf[--n] = '\0';
	return 0;
}

/* Prompts on stderr with echo off. */
static int users_prompt(const char *prompt, char *buf, size_t size)
{
	struct termios old, quiet;
	int rc, restore = 0;

	fputs(prompt, stderr);
	fflush(stderr);
	if (tcgetattr(STDIN_FILENO, &old) == 0) {
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		restore = tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) == 0;
	}
	rc = users_read_line(stdin, buf, size);
	if (restore)
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
	fputc('\n', stderr);
	return rc;
}

static int users_read_password(char *pw, size_t size)
{
	char again[USERS_MAX_PASSWORD + 2];
	int rc;

	if (!isatty(STDIN_FILENO)) {
		if (users_read_line(stdin, pw, size) < 0) {
			fprintf(stderr,
				"chatd passwd: no password on stdin (or longer than %d "
				"bytes)\n",
				USERS_MAX_PASSWORD);
			return -EINVAL;
		}
		return 0;
	}
	if (users_prompt("Password: ", pw, size) < 0 ||
	    users_prompt("Retype password: ", again, sizeof(again)) < 0) {
		fprintf(stderr, "chatd passwd: no password read\n");
		return -EINVAL;
	}
	rc = strcmp(pw, again) == 0 ? 0 : -EINVAL;
	OPENSSL_cleanse(again, sizeof(again));
	if (rc)
		fprintf(stderr, "chatd passwd: the passwords differ\n");
	return rc;
}

int users_passwd_command(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "users", required_argument, NULL, 'u' },
		{ "iterations", required_argument, NULL, 'i' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = getenv("CHATD_USERS");
	char pw[USERS_MAX_PASSWORD + 2], err[512], *end;
	unsigned long iterations = SCRAM_DEFAULT_ITERATIONS;
	int c, rc;

	/* main() may have run getopt already: start over on our argv */
	optind = 0;
	opterr = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'u':
			path = optarg;
			break;
		case 'i':
			errno = 0;
			iterations = strtoul(optarg, &end, 10);
			if (errno || *end || end == optarg || iterations < SCRAM_MIN_ITERATIONS ||
			    iterations > SCRAM_MAX_ITERATIONS) {
				fprintf(stderr, "chatd passwd: bad --iterations '%s' (%u..%u)\n",
					optarg, SCRAM_MIN_ITERATIONS, SCRAM_MAX_ITERATIONS);
				return 2;
			}
			break;
		case 'h':
			users_passwd_usage(stdout);
			return 0;
		default:
			users_passwd_usage(stderr);
			return 2;
		}
	}
	if (!path || !*path) {
		fprintf(stderr, "chatd passwd: --users FILE is required\n");
		users_passwd_usage(stderr);
		return 2;
	}
	if (argc - optind != 1) {
		fprintf(stderr, "chatd passwd: exactly one USER expected\n");
		users_passwd_usage(stderr);
		return 2;
	}
	if (users_read_password(pw, sizeof(pw)) < 0)
		return 1;
	if (pw[0] == '\0') {
		fprintf(stderr, "chatd passwd: empty password refused\n");
		return 1;
	}
	rc = users_file_set(path, argv[optind], pw, (unsigned)iterations, err, sizeof(err));
	OPENSSL_cleanse(pw, sizeof(pw));
	if (rc) {
		fprintf(stderr, "chatd passwd: %s\n", err);
		return 1;
	}
	fprintf(stderr, "chatd passwd: credentials for '%s' written to %s\n", argv[optind], path);
	return 0;
}
