/*
 * The --users FILE account store: salted SCRAM credentials only, never a
 * plaintext password (docs/chatd-users.md). One user per line:
 *
 *   USER sha1:ITER:SALT:STOREDKEY:SERVERKEY sha256:ITER:SALT:STOREDKEY:SERVERKEY
 *
 * USER is the nodeprep'ed localpart (so "Alice" logs in as alice and her JID
 * is alice@domain); SALT, STOREDKEY and SERVERKEY are base64 (RFC 4648 with
 * padding); ITER is decimal. Fields are separated by one or more spaces or
 * tabs. Each user has at least one of the two hashes (a user with only
 * sha256 cannot use SCRAM-SHA-1; PLAIN uses whichever exists, sha256 first).
 * Blank lines and lines starting with '#' are ignored. A user may appear
 * only once. Lines are at most 4096 bytes.
 *
 * Error convention: 0 or a negative errno value (-ENOENT, -EACCES, -EINVAL,
 * -ENOMEM, ...); functions that can fail for reasons a person must fix also
 * write a message into err (errlen bytes) naming the file and line.
 */
#ifndef CHATD_USERS_H
#define CHATD_USERS_H

#include <stddef.h>

#include "scram.h"

struct users;

/*
 * Loads path. On error returns a negative errno (-ENOENT for a missing file,
 * -EINVAL for a bad line, ...) and a message like
 * "users.txt:3: bad base64 in sha256 salt" in err; *out is set only on
 * success. An empty file is a valid store with no users.
 */
int users_load(const char *path, struct users **out, char *err, size_t errlen);
void users_free(struct users *u);
size_t users_count(const struct users *u);

/*
 * Credentials of username (nodeprep'ed here, so any case works) for hash.
 * 0, -ENOENT (no such user, or no credentials for that hash), -EINVAL
 * (username fails nodeprep).
 */
int users_lookup(const struct users *u, const char *username, enum scram_hash hash,
		 struct scram_cred *out);

/* A scram_lookup_fn over users_lookup(); ud is the struct users *. Returns
 * SCRAM_ERR_UNKNOWN_USER when there is no such user. */
int users_scram_lookup(void *ud, enum scram_hash hash, const char *username,
		       struct scram_cred *cred);

/*
 * SASL PLAIN: 0 when password is right for username, -EACCES when it is
 * wrong or the user is unknown (indistinguishable on purpose; an unknown user
 * still costs a PBKDF2 so that timing does not tell either).
 */
int users_verify_plain(const struct users *u, const char *username, const char *password);

/*
 * Adds or replaces username in the file at path (created when missing) with
 * fresh SCRAM-SHA-1 and SCRAM-SHA-256 credentials for password (iterations 0
 * means SCRAM_DEFAULT_ITERATIONS). The file is rewritten atomically: a
 * temporary file in the same directory, mode 0600, fsync, rename. Other
 * lines (comments included) are kept as they are. 0 or a negative errno with
 * a message in err.
 */
int users_file_set(const char *path, const char *username, const char *password,
		   unsigned iterations, char *err, size_t errlen);

/*
 * The whole `chatd passwd` subcommand; argv[0] is "passwd":
 *   chatd passwd [--iterations N] --users FILE USER
 * (FILE also from CHATD_USERS). Reads the password from stdin: the first
 * line, without its line ending; from a terminal it prompts on stderr with
 * echo off and asks twice. Returns the process exit status (0 ok, 1 error,
 * 2 usage) and prints errors to stderr.
 */
int users_passwd_command(int argc, char **argv);

#endif
