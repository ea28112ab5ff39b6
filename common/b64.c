/*
 * Strict base64 over OpenSSL's block coder. EVP_DecodeBlock trims
 * whitespace, does not complain about some misplaced padding and counts
 * padding as output bytes, so the input is checked here first and the
 * padding subtracted afterwards.
 */
#include "b64.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>

#include <openssl/evp.h>

long b64_encode(const void *in, size_t len, char *out, size_t outsize)
{
	if (len > (size_t)INT_MAX / 4 * 3 - 3)
		return -ENOSPC;
	if (outsize < B64_ENCODED_LEN(len) + 1)
		return -ENOSPC;
	return EVP_EncodeBlock((unsigned char *)out, in, (int)len);
}

/* The 6-bit value of a base64 character, or -1. */
static int b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -EINVAL;
}

/* Number of '=' at the end, or -1 when the text is not canonical base64. */
static int b64_check(const char *in, size_t len)
{
	size_t i, body;
	int pad = 0;

	if (len % 4 != 0)
		return -EINVAL;
	if (len >= 1 && in[len - 1] == '=')
		pad++;
	if (len >= 2 && in[len - 2] == '=')
		pad++;
	if (pad == 1 && len >= 2 && in[len - 2] == '=')
		return -EINVAL;
	body = len - (size_t)pad;
	for (i = 0; i < body; i++)
		if (b64_value((unsigned char)in[i]) < 0)
			return -EINVAL;
	/* Canonical only: the bits that padding leaves unused must be zero,
	 * or two encodings would decode to the same bytes. */
	if (pad == 1 && (b64_value((unsigned char)in[body - 1]) & 0x3))
		return -EINVAL;
	if (pad == 2 && (b64_value((unsigned char)in[body - 1]) & 0xf))
		return -EINVAL;
	return pad;
}

long b64_decode(const char *in, size_t len, unsigned char *out, size_t outsize)
{
	int pad, n;

	if (len > INT_MAX)
		return -EINVAL;
	pad = b64_check(in, len);
	if (pad < 0)
		return -EINVAL;
	if (len == 0)
		return 0;
	if (outsize < B64_DECODED_MAX(len))
		return -ENOSPC;
	n = EVP_DecodeBlock(out, (const unsigned char *)in, (int)len);
	if (n < 0 || (size_t)n != B64_DECODED_MAX(len))
		return -EINVAL;
	return n - pad;
}

unsigned char *b64_decode_alloc(const char *in, size_t len, size_t *outlen)
{
	unsigned char *buf;
	long n;

	*outlen = 0;
	if (b64_check(in, len) < 0)
		return NULL;
	buf = malloc(B64_DECODED_MAX(len) + 1);
	if (!buf) {
		*outlen = (size_t)-1;
		return NULL;
	}
	n = b64_decode(in, len, buf, B64_DECODED_MAX(len) + 1);
	if (n < 0) {
		free(buf);
		return NULL;
	}
	buf[n] = '\0';
	*outlen = (size_t)n;
	return buf;
}

char *b64_encode_alloc(const void *in, size_t len)
{
	size_t size = B64_ENCODED_LEN(len) + 1;
	char *buf = malloc(size);

	if (!buf)
		return NULL;
	if (b64_encode(in, len, buf, size) < 0) {
		free(buf);
		return NULL;
	}
	return buf;
}
