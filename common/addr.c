/*
 * ADDR:PORT parsing and formatting (addr.h).
 */
#include "addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include <uv.h>

static int name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_';
}

/* Decimal digits only (no sign, no space: strtol would take both). */
static int parse_port(const char *s, unsigned flags, int *port)
{
	long v = 0;

	if (!*s)
		return -EINVAL;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -EINVAL;
		v = v * 10 + (*s - '0');
		if (v > 65535)
			return -EINVAL;
	}
	if (v == 0 && !(flags & ADDR_PORT_ZERO))
		return -EINVAL;
	*port = (int)v;
	return 0;
}

static int resolve(struct addr *a)
{
	struct addrinfo hints, *res = NULL;
	char port[8];
	int rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	snprintf(port, sizeof(port), "%d", a->port);
	rc = getaddrinfo(a->host, port, &hints, &res);
	if (rc != 0 || !res) {
		if (res)
			freeaddrinfo(res);
		return rc == EAI_AGAIN ? -EAGAIN : rc == EAI_MEMORY ? -ENOMEM : -ENOENT;
	}
	memcpy(&a->sa, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	return 0;
}

int addr_parse(const char *s, unsigned flags, int default_port, struct addr *out)
{
	const char *host = s, *hend, *colon;
	size_t hl, i;
	int rc;

	memset(out, 0, sizeof(*out));
	if (flags & ADDR_RESOLVE)
		flags |= ADDR_NAME;
	if (!s || !*s)
		return -EINVAL;
	if (*s == '[') {
		host = s + 1;
		hend = strchr(host, ']');
		if (!hend || (hend[1] != ':' && hend[1] != '\0'))
			return -EINVAL;
		colon = hend[1] == ':' ? hend + 1 : NULL;
	} else {
		colon = strchr(s, ':');
		if (colon && strchr(colon + 1, ':'))
			return -EINVAL; /* an IPv6 address needs brackets */
		hend = colon ? colon : s + strlen(s);
	}
	hl = (size_t)(hend - host);
	if (hl == 0 || hl > ADDR_NAME_MAX)
		return -EINVAL;
	memcpy(out->host, host, hl);
	out->host[hl] = '\0';
	if (colon) {
		rc = parse_port(colon + 1, flags, &out->port);
		if (rc < 0)
			return rc;
	} else if (flags & ADDR_PORT_OPTIONAL) {
		if (default_port < 0 || default_port > 65535 ||
		    (default_port == 0 && !(flags & ADDR_PORT_ZERO)))
			return -EINVAL;
		out->port = default_port;
	} else {
		return -EINVAL;
	}
	if (uv_ip4_addr(out->host, out->port, (struct sockaddr_in *)&out->sa) == 0) {
		if (*s == '[')
			return -EINVAL; /* brackets are for IPv6 */
		return 0;
	}
	memset(&out->sa, 0, sizeof(out->sa));
	if (*s == '[') {
		/* Only an IPv6 address goes in brackets; a zone (%eth0) is refused. */
		struct in6_addr a6;

		if (inet_pton(AF_INET6, out->host, &a6) != 1)
			return -EINVAL;
		uv_ip6_addr(out->host, out->port, (struct sockaddr_in6 *)&out->sa);
		return 0;
	}
	if (!(flags & ADDR_NAME))
		return -EINVAL;
	for (i = 0; i < hl; i++)
		if (!name_char(out->host[i]))
			return -EINVAL;
	return flags & ADDR_RESOLVE ? resolve(out) : 0;
}

int addr_join(const char *host, int port, char *buf, size_t size)
{
	int n = snprintf(buf, size, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);

	return n < 0 || (size_t)n >= size ? -ENOSPC : n;
}

int addr_format(const struct sockaddr *sa, char *buf, size_t size)
{
	char host[INET6_ADDRSTRLEN];

	if (sa->sa_family == AF_INET)
		uv_ip4_name((const struct sockaddr_in *)sa, host, sizeof(host));
	else if (sa->sa_family == AF_INET6)
		uv_ip6_name((const struct sockaddr_in6 *)sa, host, sizeof(host));
	else
		return -EAFNOSUPPORT;
	return addr_join(host, addr_port(sa), buf, size);
}

int addr_port(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)sa)->sin_port);
	if (sa->sa_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
	return 0;
}
