/* Unit tests for server/users.c (the --users store and `chatd passwd`). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../server/users.h"
#include "scram.h"

#define ITER 16

static char dir[64];
static char path[128];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "%s/users-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(dir))
		return -1;
	snprintf(path, sizeof(path), "%s/users.txt", dir);
	/* run_passwd() swaps fd 0 between calls: an unbuffered stdin keeps
	 * one call's leftover input from reaching the next */
	setvbuf(stdin, NULL, _IONBF, 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(path);
	rmdir(dir);
	return 0;
}

static void write_file(const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static char *read_file(void)
{
	FILE *f = fopen(path, "r");
	char *buf = calloc(1, 65536);
	size_t n;

	assert_non_null(f);
	n = fread(buf, 1, 65535, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

/* A valid line for "alice" with password "secret", iterations ITER, made
 * once through users_file_set. */
static char *alice_line(void)
{
	char err[256], *text, *nl;

	unlink(path);
	assert_int_equal(users_file_set(path, "alice", "secret", ITER, err, sizeof(err)), 0);
	text = read_file();
	nl = strchr(text, '\n');
	assert_non_null(nl);
	nl[1] = '\0';
	return text;
}

static void expect_load_error(const char *text, const char *needle)
{
	struct users *u = (struct users *)1;
	char err[512] = "";
	int rc;

	write_file(text);
	rc = users_load(path, &u, err, sizeof(err));
	assert_int_equal(rc, -EINVAL);
	assert_null(u);
	if (!strstr(err, needle))
		fail_msg("error \"%s\" lacks \"%s\" for:\n%s", err, needle, text);
	assert_non_null(strstr(err, path));
}

static void test_set_and_load(void **state)
{
	struct users *u;
	struct scram_cred c;
	struct stat st;
	char err[256], *text;

	(void)state;
	unlink(path);
	assert_int_equal(users_file_set(path, "Alice", "secret", ITER, err, sizeof(err)), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	text = read_file();
	/* prepared name, two credentials, no password */
	assert_int_equal(strncmp(text, "alice sha1:16:", 14), 0);
	assert_non_null(strstr(text, " sha256:16:"));
	assert_null(strstr(text, "secret"));
	free(text);

	assert_int_equal(users_load(path, &u, err, sizeof(err)), 0);
	assert_int_equal(users_count(u), 1);
	assert_int_equal(users_lookup(u, "alice", SCRAM_SHA1, &c), 0);
	assert_int_equal(c.hash, SCRAM_SHA1);
	assert_int_equal(c.iterations, ITER);
	assert_int_equal(c.salt_len, SCRAM_SALT_LEN);
	assert_int_equal(scram_plain_verify(&c, "secret"), 0);
	assert_int_equal(users_lookup(u, "ALICE", SCRAM_SHA256, &c), 0);
	assert_int_equal(scram_plain_verify(&c, "secret"), 0);
	assert_int_equal(users_lookup(u, "bob", SCRAM_SHA256, &c), -ENOENT);
	assert_int_equal(users_lookup(u, "a b", SCRAM_SHA256, &c), -EINVAL);
	assert_int_equal(users_verify_plain(u, "alice", "secret"), 0);
	assert_int_equal(users_verify_plain(u, "Alice", "secret"), 0);
	assert_int_equal(users_verify_plain(u, "alice", "Secret"), -EACCES);
	assert_int_equal(users_verify_plain(u, "bob", "secret"), -EACCES);
	assert_int_equal(users_verify_plain(u, "a@b", "secret"), -EACCES);
	users_free(u);
}

static void test_replace_keeps_others(void **state)
{
	struct users *u;
	char err[256], *text, *line;

	(void)state;
	line = alice_line();
	{
		char *content = NULL;

		assert_true(asprintf(&content,
				     "# staff\n\n%.*s  # trailing text is not a comment\n",
				     (int)strlen(line) - 1, line) > 0);
		/* "#..." after credentials is a bad credential token */
		write_file(content);
		assert_int_equal(users_load(path, &u, err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, ":3:"));
		free(content);
		assert_true(asprintf(&content, "# staff\n\n%s", line) > 0);
		write_file(content);
		free(content);
	}
	assert_int_equal(users_file_set(path, "bob", "hunter2", ITER, err, sizeof(err)), 0);
	assert_int_equal(users_file_set(path, "alice", "newpass", ITER, err, sizeof(err)), 0);
	text = read_file();
	assert_int_equal(strncmp(text, "# staff\n\nalice sha1:", 20), 0);
	assert_non_null(strstr(text, "\nbob sha1:"));
	/* alice was replaced in place, not appended */
	assert_null(strstr(strstr(text, "\nbob "), "alice"));
	assert_null(strstr(text, line));
	free(text);
	free(line);

	assert_int_equal(users_load(path, &u, err, sizeof(err)), 0);
	assert_int_equal(users_count(u), 2);
	assert_int_equal(users_verify_plain(u, "alice", "newpass"), 0);
	assert_int_equal(users_verify_plain(u, "alice", "secret"), -EACCES);
	assert_int_equal(users_verify_plain(u, "bob", "hunter2"), 0);
	users_free(u);

	/* no temporary files left behind */
	{
		char cmd[256];
		FILE *p;
		char out[64] = "";

		snprintf(cmd, sizeof(cmd), "ls -A %s", dir);
		p = popen(cmd, "r");
		assert_non_null(p);
		assert_non_null(fgets(out, sizeof(out), p));
		assert_string_equal(out, "users.txt\n");
		assert_null(fgets(out, sizeof(out), p));
		pclose(p);
	}
}

static void test_load_errors(void **state)
{
	struct users *u = NULL;
	char err[512], *line, *two, *dup, *bad;
	int rc;

	(void)state;
	line = alice_line();
	/* a good file with comments, blank lines, tabs and CRLF */
	{
		char *t = NULL;
		char *sp = strchr(line, ' ');

		*sp = '\t';
		line[strlen(line) - 1] = '\0';
		assert_true(asprintf(&t, "# users\r\n\r\n   \n%s\r\n", line) > 0);
		write_file(t);
		free(t);
		assert_int_equal(users_load(path, &u, err, sizeof(err)), 0);
		assert_int_equal(users_verify_plain(u, "alice", "secret"), 0);
		users_free(u);
		*sp = ' ';
	}
	write_file("");
	assert_int_equal(users_load(path, &u, err, sizeof(err)), 0);
	assert_int_equal(users_count(u), 0);
	users_free(u);

	rc = users_load("/nonexistent/users.txt", &u, err, sizeof(err));
	assert_int_equal(rc, -ENOENT);
	assert_non_null(strstr(err, "/nonexistent/users.txt"));

	expect_load_error("alice\n", ":1: user 'alice' has no credentials");
	expect_load_error("# c\nAlice sha1:16:AAAA:AAAAAAAAAAAAAAAAAAAAAAAAAAA=:"
			  "AAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
			  ":2: user name 'Alice' is not in prepared form");
	expect_load_error("a&b sha1:16:AAAA:AAAAAAAAAAAAAAAAAAAAAAAAAAA=:"
			  "AAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
			  ":1: user name 'a&b': invalid localpart");
	expect_load_error("bob md5:16:AAAA:AAAA:AAAA\n", ":1: unknown hash 'md5'");
	expect_load_error("bob sha1:16:AAAA:AAAA\n", ":1: credentials need 5");
	expect_load_error("bob sha1:16:AAAA:AAAA:AAAA:AAAA\n", ":1: too many");
	expect_load_error("bob sha1:0:AAAA:AAAAAAAAAAAAAAAAAAAAAAAAAAA=:"
			  "AAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
			  ":1: bad sha1 iteration count '0'");
	expect_load_error("bob sha1:x1:AAAA:AAAAAAAAAAAAAAAAAAAAAAAAAAA=:"
			  "AAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
			  ":1: bad sha1 iteration count 'x1'");
	expect_load_error("bob sha1:99999999:AAAA:AAAAAAAAAAAAAAAAAAAAAAAAAAA=:"
			  "AAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
			  "bad sha1 iteration count");
	expect_load_error("bob sha1:16:A!AA:AAAAAAAAAAAAAAAAAAAAAAAAAAA=:"
			  "AAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
			  ":1: bad base64 in sha1 salt");
	expect_load_error("bob sha1:16::AAAAAAAAAAAAAAAAAAAAAAAAAAA=:"
			  "AAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
			  "bad base64 in sha1 salt");
	/* a SHA-256 key must be 32 bytes: 20 is wrong */
	expect_load_error("\n\nbob sha256:16:AAAA:AAAAAAAAAAAAAAAAAAAAAAAAAAA=:"
			  "AAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
			  ":3: bad base64 or length in sha256 stored key");
	expect_load_error("bob sha1:16:AAAA:AAAAAAAAAAAAAAAAAAAAAAAAAAA=:AAAA\n",
			  ":1: bad base64 or length in sha1 server key");
	expect_load_error("bob sha1:16:AAAA:AAAAAAAAAAAAAAAAAAAAAAAAAAA=:"
			  "AAAAAAAAAAAAAAAAAAAAAAAAAAA= sha1:16:AAAA:AAAAAAAAAAAAAAAAAAAAAAAAAAA=:"
			  "AAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
			  "sha1 credentials given twice");
	/* a plaintext password where credentials belong */
	expect_load_error("bob hunter2\n", ":1: credentials need 5");
	two = NULL;
	assert_true(asprintf(&two, "%s\n%s\n", line, line) > 0);
	expect_load_error(two, "user 'alice' appears more than once");
	free(two);
	/* an overlong line */
	bad = malloc(5000);
	memset(bad, 'a', 4999);
	bad[4998] = '\n';
	bad[4999] = '\0';
	expect_load_error(bad, ":1: line too long");
	free(bad);
	/* only sha256 is fine: SCRAM-SHA-1 then finds no credentials */
	dup = strdup(line);
	{
		char *s256 = strstr(dup, " sha256:");
		char *s1 = strstr(dup, " sha1:");

		memmove(s1, s256, strlen(s256) + 1);
		write_file(dup);
		assert_int_equal(users_load(path, &u, err, sizeof(err)), 0);
		{
			struct scram_cred c;

			assert_int_equal(users_lookup(u, "alice", SCRAM_SHA1, &c), -ENOENT);
			assert_int_equal(users_lookup(u, "alice", SCRAM_SHA256, &c), 0);
		}
		assert_int_equal(users_verify_plain(u, "alice", "secret"), 0);
		users_free(u);
	}
	free(dup);

	/* users_file_set refuses to rewrite a broken file and leaves it alone */
	write_file("bob hunter2\n");
	assert_int_equal(users_file_set(path, "carol", "pw", ITER, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, ":1:"));
	bad = read_file();
	assert_string_equal(bad, "bob hunter2\n");
	free(bad);
	assert_int_equal(users_file_set(path, "a b", "pw", ITER, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "a b"));
	free(line);
}

/* A SCRAM login through the store: what chatd does. */
static void test_scram_through_store(void **state)
{
	struct users *u;
	char err[256];
	int h;

	(void)state;
	unlink(path);
	assert_int_equal(users_file_set(path, "alice", "secret", ITER, err, sizeof(err)), 0);
	assert_int_equal(users_load(path, &u, err, sizeof(err)), 0);
	for (h = 0; h < SCRAM_HASH_COUNT; h++) {
		const char *pws[] = { "secret", "wrong" };

		for (int k = 0; k < 2; k++) {
			struct scram_client *c =
				scram_client_new((enum scram_hash)h, "Alice", pws[k], NULL, NULL);
			struct scram_server *s =
				scram_server_new((enum scram_hash)h, users_scram_lookup, u);
			char *m1, *m2, *m3, *m4;
			size_t l1, l2, l3, l4;
			int rc;

			assert_int_equal(scram_client_first(c, &m1, &l1), 0);
			assert_int_equal(scram_server_first(s, m1, l1, &m2, &l2), 0);
			assert_int_equal(scram_client_final(c, m2, l2, &m3, &l3), 0);
			rc = scram_server_final(s, m3, l3, &m4, &l4);
			if (k == 0) {
				assert_int_equal(rc, 0);
				assert_int_equal(scram_client_verify(c, m4, l4), 0);
				free(m4);
			} else {
				assert_int_equal(rc, SCRAM_ERR_NOT_AUTHORIZED);
			}
			free(m1);
			free(m2);
			free(m3);
			scram_client_free(c);
			scram_server_free(s);
		}
	}
	{
		struct scram_cred c;

		assert_int_equal(users_scram_lookup(u, SCRAM_SHA1, "nobody", &c),
				 SCRAM_ERR_UNKNOWN_USER);
	}
	users_free(u);
}

/* Runs users_passwd_command with stdin fed from text. */
static int run_passwd(const char *stdin_text, int argc, char **argv)
{
	int fds[2], saved = dup(STDIN_FILENO), rc;

	assert_int_equal(pipe(fds), 0);
	assert_int_equal(write(fds[1], stdin_text, strlen(stdin_text)),
			 (ssize_t)strlen(stdin_text));
	close(fds[1]);
	assert_true(dup2(fds[0], STDIN_FILENO) >= 0);
	close(fds[0]);
	clearerr(stdin);
	rc = users_passwd_command(argc, argv);
	assert_true(dup2(saved, STDIN_FILENO) >= 0);
	close(saved);
	clearerr(stdin);
	return rc;
}

static void test_passwd_command(void **state)
{
	struct users *u;
	char err[256];

	(void)state;
	unlink(path);
	{
		char *argv[] = { "passwd", "--iterations", "16", "--users", path, "Carol", NULL };

		assert_int_equal(run_passwd("pässwörd\n", 6, argv), 0);
	}
	assert_int_equal(users_load(path, &u, err, sizeof(err)), 0);
	assert_int_equal(users_verify_plain(u, "carol", "pässwörd"), 0);
	users_free(u);
	{
		/* options after the user; CRLF line; the second line is ignored */
		char *argv[] = { "passwd", "dave", "--users", path, "--iterations=16", NULL };

		assert_int_equal(run_passwd("pw one\r\nextra\n", 5, argv), 0);
	}
	{
		/* the file from the environment; no newline at the end */
		char *argv[] = { "passwd", "--iterations", "16", "erin", NULL };

		setenv("CHATD_USERS", path, 1);
		assert_int_equal(run_passwd("last", 4, argv), 0);
		unsetenv("CHATD_USERS");
	}
	assert_int_equal(users_load(path, &u, err, sizeof(err)), 0);
	assert_int_equal(users_count(u), 3);
	assert_int_equal(users_verify_plain(u, "dave", "pw one"), 0);
	assert_int_equal(users_verify_plain(u, "erin", "last"), 0);
	assert_int_equal(users_verify_plain(u, "carol", "pässwörd"), 0);
	users_free(u);
	{
		char *argv[] = { "passwd", "--users", path, NULL };

		assert_int_equal(run_passwd("x\n", 3, argv), 2);
	}
	{
		char *argv[] = { "passwd", "--users", path, "a", "b", NULL };

		assert_int_equal(run_passwd("x\n", 5, argv), 2);
	}
	{
		char *argv[] = { "passwd", "frank", NULL };

		assert_int_equal(run_passwd("x\n", 2, argv), 2);
	}
	{
		char *argv[] = { "passwd", "--iterations", "0", "--users", path, "frank", NULL };

		assert_int_equal(run_passwd("x\n", 6, argv), 2);
	}
	{
		char *argv[] = { "passwd", "--bogus", "--users", path, "frank", NULL };

		assert_int_equal(run_passwd("x\n", 5, argv), 2);
	}
	{
		char *argv[] = { "passwd", "--users", path, "frank", NULL };

		assert_int_equal(run_passwd("\n", 4, argv), 1);
		assert_int_equal(run_passwd("", 4, argv), 1);
	}
	{
		char *argv[] = { "passwd", "--users", path, "fr@nk", NULL };

		assert_int_equal(run_passwd("x\n", 4, argv), 1);
	}
	{
		char *argv[] = { "passwd", "--help", NULL };

		assert_int_equal(run_passwd("", 2, argv), 0);
	}
	/* frank was never added */
	assert_int_equal(users_load(path, &u, err, sizeof(err)), 0);
	assert_int_equal(users_count(u), 3);
	users_free(u);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_set_and_load),   cmocka_unit_test(test_replace_keeps_others),
		cmocka_unit_test(test_load_errors),    cmocka_unit_test(test_scram_through_store),
		cmocka_unit_test(test_passwd_command),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
