/*
 * ADDR:PORT on command lines and in peer lists: one parser for every
 * program, with options for what each caller allows.
 *
 * Forms: "IPV4:PORT", "[IPV6]:PORT" and, with ADDR_NAME, "NAME:PORT"; with
 * ADDR_PORT_OPTIONAL also each of them without ":PORT" (the caller's
 * default port then). An IPv6 address needs its brackets (without them the
 * last ':' could be the port's or the address's). The port is decimal
 * digits, 1..65535, or 0 with ADDR_PORT_ZERO (a listener whose port the
 * kernel picks). A name is letters, digits, '-', '.' and '_', at most
 * ADDR_NAME_MAX bytes.
 *
 * A numeric host is converted at once into sa. A name is resolved into sa
 * only with ADDR_RESOLVE (getaddrinfo: blocking, for command lines, never
 * on a loop); otherwise sa stays AF_UNSPEC and the caller resolves later
 * (the cluster's dialer, with uv_getaddrinfo, at every dial).
 *
 * Errors: -EINVAL for a malformed value or a form the flags do not allow;
 * with ADDR_RESOLVE, -ENOENT when the name does not resolve, -EAGAIN when
 * the resolver could not answer now, -ENOMEM.
 */
#ifndef COMMON_ADDR_H
#define COMMON_ADDR_H

#include <stddef.h>
#include <sys/socket.h>

enum addr_flags {
	ADDR_PORT_ZERO = 1 << 0,     /* port 0 is allowed */
	ADDR_NAME = 1 << 1,	     /* the host may be a name */
	ADDR_RESOLVE = 1 << 2,	     /* resolve a name now (implies ADDR_NAME) */
	ADDR_PORT_OPTIONAL = 1 << 3, /* "HOST" alone takes default_port */
};

#define ADDR_NAME_MAX 253
/* Longest text addr_format() and addr_join() write, with the NUL. */
#define ADDR_STR_MAX (ADDR_NAME_MAX + sizeof("[]:65535"))

struct addr {
	char host[ADDR_NAME_MAX + 1]; /* as given, without brackets */
	int port;
	struct sockaddr_storage sa; /* AF_UNSPEC: a name, not resolved */
};

int addr_parse(const char *s, unsigned flags, int default_port, struct addr *out);

/* "1.2.3.4:5" or "[::1]:5" of an AF_INET or AF_INET6 address into buf;
 * the length, -EAFNOSUPPORT for another family, -ENOSPC when it does not
 * fit. */
int addr_format(const struct sockaddr *sa, char *buf, size_t size);
/* host and port as one value ("[host]:port" when host has a ':'); the
 * length or -ENOSPC. */
int addr_join(const char *host, int port, char *buf, size_t size);
/* The port of an AF_INET or AF_INET6 address (host order), else 0. */
int addr_port(const struct sockaddr *sa);

#endif
