/*
 * Base64 (RFC 4648 section 4, standard alphabet, with '=' padding) through
 * OpenSSL's EVP_EncodeBlock / EVP_DecodeBlock, made strict: SASL payloads
 * (RFC 6120 6.4.2) and SCRAM attributes must be rejected when they are not
 * canonical base64, and EVP_DecodeBlock alone accepts surrounding
 * whitespace and reports padding as decoded zero bytes.
 */
#ifndef COMMON_B64_H
#define COMMON_B64_H

#include <stddef.h>

/* Characters b64_encode() writes for n input bytes, not counting the NUL. */
#define B64_ENCODED_LEN(n) ((((n) + 2) / 3) * 4)
/* Upper bound of the bytes b64_decode() writes for n input characters. */
#define B64_DECODED_MAX(n) (((n) / 4) * 3)

/*
 * Encodes in[0..len) into out followed by a NUL. outsize must be at least
 * B64_ENCODED_LEN(len) + 1. Returns the number of characters written (not
 * counting the NUL), or -ENOSPC when out is too small or len is too large.
 */
long b64_encode(const void *in, size_t len, char *out, size_t outsize);

/*
 * Decodes in[0..len) (no NUL needed) into out. Accepts only canonical
 * base64: length a multiple of 4, alphabet A-Z a-z 0-9 + /, at most two '='
 * and only at the end, no whitespace. The empty string decodes to 0 bytes.
 * outsize must be at least B64_DECODED_MAX(len). Returns the number of bytes
 * decoded, -EINVAL for malformed input or -ENOSPC for a too small out.
 */
long b64_decode(const char *in, size_t len, unsigned char *out, size_t outsize);

/*
 * Convenience: decodes into a new malloc'd buffer with a NUL appended (so
 * text payloads can be used as strings; *outlen excludes the NUL). Returns
 * the buffer, or NULL for malformed input (*outlen = 0) or out of memory
 * (*outlen = (size_t)-1). Free with free().
 */
unsigned char *b64_decode_alloc(const char *in, size_t len, size_t *outlen);

/* Encodes into a new malloc'd NUL-terminated string; NULL when out of memory. */
char *b64_encode_alloc(const void *in, size_t len);

#endif
