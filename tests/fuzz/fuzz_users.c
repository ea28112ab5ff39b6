/*
 * libFuzzer target for the --users file loader (server/users.c).
 *
 * Input: the file's content, written to a memfd that users_load() opens by
 * its /proc/self/fd path (the loader only has a path API). Besides not
 * crashing: a failure names the file; a success holds exactly one user per
 * user line, every one found by its name with credentials in the bounds
 * SCRAM relies on; and the store is stable: written back as canonical lines
 * and loaded again, it holds the same credentials.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "b64.h"
#include "scram.h"
#include "../../server/users.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fd_in = -1, fd_out = -1;
static char path_in[64], path_out[64];

static void put(int fd, const void *data, size_t size)
{
	if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
		abort();
}

static void setup(void)
{
	fd_in = memfd_create("fuzz-users-in", 0);
	fd_out = memfd_create("fuzz-users-out", 0);
	if (fd_in < 0 || fd_out < 0)
		abort();
	snprintf(path_in, sizeof(path_in), "/proc/self/fd/%d", fd_in);
	snprintf(path_out, sizeof(path_out), "/proc/self/fd/%d", fd_out);
}

static void check_cred(const struct scram_cred *c, enum scram_hash h)
{
	if (c->hash != h || c->iterations < SCRAM_MIN_ITERATIONS ||
	    c->iterations > SCRAM_MAX_ITERATIONS || c->salt_len < 1 || c->salt_len > SCRAM_MAX_SALT)
		abort();
}

static int same_cred(const struct scram_cred *a, const struct scram_cred *b)
{
	return a->hash == b->hash && a->iterations == b->iterations && a->salt_len == b->salt_len &&
	       !memcmp(a->salt, b->salt, a->salt_len) &&
	       !memcmp(a->stored_key, b->stored_key, scram_hash_len(a->hash)) &&
	       !memcmp(a->server_key, b->server_key, scram_hash_len(a->hash));
}

/* " TAG:ITER:SALT:STORED:SERVER" of c appended to out (a buffer of outlen). */
static void append_cred(char *out, size_t outlen, const struct scram_cred *c)
{
	char salt[B64_ENCODED_LEN(SCRAM_MAX_SALT) + 1], sk[B64_ENCODED_LEN(SCRAM_MAX_KEY) + 1];
	char sv[B64_ENCODED_LEN(SCRAM_MAX_KEY) + 1];
	size_t hl = scram_hash_len(c->hash), off = strlen(out);

	if (b64_encode(c->salt, c->salt_len, salt, sizeof(salt)) < 0 ||
	    b64_encode(c->stored_key, hl, sk, sizeof(sk)) < 0 ||
	    b64_encode(c->server_key, hl, sv, sizeof(sv)) < 0)
		abort();
	if ((size_t)snprintf(out + off, outlen - off, " %s:%u:%s:%s:%s", scram_hash_tag(c->hash),
			     c->iterations, salt, sk, sv) >= outlen - off)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum scram_hash hashes[] = { SCRAM_SHA1, SCRAM_SHA256 };
	struct users *u = NULL, *w = NULL;
	struct scram_cred c, d;
	char err[512], *text, *line, *save = NULL, *canon;
	size_t nusers = 0, canon_len = 0, canon_cap;
	int have;

	if (size > 64 * 1024)
		return 0;
	if (fd_in < 0)
		setup();
	put(fd_in, data, size);
	err[0] = '\0';
	if (users_load(path_in, &u, err, sizeof(err)) != 0) {
		if (u || !strstr(err, path_in))
			abort();
		return 0;
	}
	/* Loaded: no NUL byte in any line, so the input is one C string. */
	text = strndup((const char *)data, size);
	canon_cap = size * 2 + 1024;
	canon = malloc(canon_cap);
	if (!text || !canon || memchr(data, '\0', size))
		abort();
	canon[0] = '\0';
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		size_t skip = strspn(line, " \t"), nlen = strcspn(line + skip, " \t\r");
		char name[4200];

		/* A line's last '\r' is its line ending; blank and '#' lines hold no user. */
		if (line[skip] == '\0' || line[skip] == '#' ||
		    (line[skip] == '\r' && line[skip + 1] == '\0'))
			continue;
		if (nlen == 0 || nlen >= sizeof(name))
			abort();
		memcpy(name, line + skip, nlen);
		name[nlen] = '\0';
		nusers++;
		snprintf(canon + canon_len, canon_cap - canon_len, "%s", name);
		have = 0;
		for (size_t i = 0; i < 2; i++) {
			if (users_lookup(u, name, hashes[i], &c) != 0)
				continue;
			check_cred(&c, hashes[i]);
			append_cred(canon, canon_cap, &c);
			have++;
		}
		if (!have)
			abort();
		canon_len = strlen(canon);
		if (canon_len + 2 >= canon_cap)
			abort();
		canon[canon_len++] = '\n';
		canon[canon_len] = '\0';
	}
	if (users_count(u) != nusers)
		abort();
	put(fd_out, canon, canon_len);
	if (users_load(path_out, &w, err, sizeof(err)) != 0 || users_count(w) != nusers)
		abort();
	/* Every credential of the first store is in the second, and no other. */
	save = NULL;
	for (line = strtok_r(canon, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		*strchr(line, ' ') = '\0';
		for (size_t i = 0; i < 2; i++) {
			int a = users_lookup(u, line, hashes[i], &c);
			int b = users_lookup(w, line, hashes[i], &d);

			if (a != b || (a == 0 && !same_cred(&c, &d)))
				abort();
		}
	}
	users_free(u);
	users_free(w);
	free(canon);
	free(text);
	return 0;
}
