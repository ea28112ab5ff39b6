/*
 * A response body read by libcurl into memory, up to a cap: the one
 * buffer behind the Kubernetes client, the local platform's replica
 * calls, the switch's probes and the kube platform's direct /metrics
 * reads. data is NUL-terminated once anything arrived (NULL before).
 */
#ifndef RAINBOW_BODYBUF_H
#define RAINBOW_BODYBUF_H

#include <stddef.h>

struct bodybuf {
	char *data;
	size_t len, cap;
	size_t max;   /* the most body bytes kept */
	int overflow; /* 1 once an append went past max */
};

/* Appends n bytes: 0, -EFBIG past max (overflow set, nothing kept of them), -ENOMEM. */
int bodybuf_append(struct bodybuf *b, const char *p, size_t n);

/* CURLOPT_WRITEFUNCTION with a struct bodybuf as CURLOPT_WRITEDATA: a
 * failed append ends the transfer with CURLE_WRITE_ERROR. */
size_t bodybuf_curl_write(char *p, size_t size, size_t nmemb, void *ud);

/* Frees the data and empties the buffer; max stays. */
void bodybuf_reset(struct bodybuf *b);

#endif
