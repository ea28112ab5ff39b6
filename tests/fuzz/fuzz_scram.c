/*
 * libFuzzer target for the SCRAM parsers (common/scram.c) and strict base64.
 *
 * Input: one byte choosing the hash (low bit) and the side (next bit), then
 * up to two messages separated by a '\n':
 *   server side: client-first-message '\n' client-final-message
 *   client side: server-first-message '\n' server-final-message
 * The server uses the fixed nonce "SRV" and the user "user" / "pencil" with
 * one PBKDF2 iteration, and the client the nonce "CLIENT", so that a seed
 * corpus of real exchanges reaches the proof checks.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "b64.h"
#include "scram.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct scram_cred creds[SCRAM_HASH_COUNT];
static int have_creds[SCRAM_HASH_COUNT];

static int fuzz_lookup(void *ud, enum scram_hash hash, const char *username,
		       struct scram_cred *cred)
{
	static const unsigned char salt[] = "fuzzsalt";

	(void)ud;
	if (strcmp(username, "user") != 0)
		return SCRAM_ERR_UNKNOWN_USER;
	if (!have_creds[hash]) {
		if (scram_cred_derive(hash, "pencil", salt, sizeof(salt) - 1, 1, &creds[hash]))
			abort();
		have_creds[hash] = 1;
	}
	*cred = creds[hash];
	return 0;
}

static void fuzz_server(enum scram_hash hash, const char *m1, size_t l1, const char *m2, size_t l2)
{
	struct scram_server *s = scram_server_new(hash, fuzz_lookup, NULL);
	char *out = NULL;
	size_t len;
	int rc;

	if (!s || scram_server_set_nonce(s, "SRV"))
		abort();
	rc = scram_server_first(s, m1, l1, &out, &len);
	if (rc == 0) {
		if (!out || strlen(out) != len)
			abort();
		free(out);
		out = NULL;
		if (m2) {
			rc = scram_server_final(s, m2, l2, &out, &len);
			if ((rc == 0) != (out != NULL))
				abort();
			free(out);
		}
	} else if (out) {
		abort();
	}
	/* every error has a condition to report */
	if (!scram_sasl_condition(rc) || !scram_strerror(rc))
		abort();
	scram_server_free(s);
}

static void fuzz_client(enum scram_hash hash, const char *m1, size_t l1, const char *m2, size_t l2)
{
	struct scram_client *c = scram_client_new(hash, "user", "pencil", NULL, NULL);
	char *out = NULL;
	size_t len;

	if (!c || scram_client_set_nonce(c, "CLIENT") || scram_client_first(c, &out, &len))
		abort();
	free(out);
	out = NULL;
	if (scram_client_final(c, m1, l1, &out, &len) == 0) {
		free(out);
		if (m2)
			scram_client_verify(c, m2, l2);
	} else if (out) {
		abort();
	}
	scram_client_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *m1, *m2 = NULL, *nl;
	size_t l1, l2 = 0, n;
	unsigned char *dec;
	enum scram_hash hash;
	int client;

	if (size < 1)
		return 0;
	hash = (data[0] & 1) ? SCRAM_SHA256 : SCRAM_SHA1;
	client = (data[0] & 2) != 0;
	m1 = (const char *)data + 1;
	l1 = size - 1;
	nl = memchr(m1, '\n', l1);
	if (nl) {
		m2 = nl + 1;
		l2 = l1 - (size_t)(m2 - m1);
		l1 = (size_t)(nl - m1);
	}
	if (client)
		fuzz_client(hash, m1, l1, m2, l2);
	else
		fuzz_server(hash, m1, l1, m2, l2);

	/* strict base64 must round-trip whatever it accepts */
	dec = b64_decode_alloc(m1, l1, &n);
	if (dec) {
		char *enc = b64_encode_alloc(dec, n);

		if (!enc || strlen(enc) != l1 || memcmp(enc, m1, l1) != 0)
			abort();
		free(enc);
		free(dec);
	}
	return 0;
}
