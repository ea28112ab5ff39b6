/*
 * libFuzzer target for the small address and duration parsers of the
 * command lines and peer lists: chatd's --listen/--http (srv_parse_addr),
 * the cluster's --peers entries (cluster_hostport_parse) and rainbow's
 * durations (cli_parse_duration).
 *
 * Input: one byte choosing the parser, then the value. Besides not
 * crashing, an accepted value is in range and stable: formatted canonically
 * it parses to the same value.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>

#include <uv.h>

#include "../../deployer/cli.h"
#include "../../server/cluster/cluster.h"
#include "../../server/srv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_srv_addr(const char *s)
{
	struct sockaddr_storage a, b;
	char host[64], buf[96];
	int port;

	if (srv_parse_addr(s, &a) != 0)
		return;
	if (a.ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)&a;

		port = ntohs(in->sin_port);
		if (uv_ip4_name(in, host, sizeof(host)) != 0)
			abort();
		snprintf(buf, sizeof(buf), "%s:%d", host, port);
	} else if (a.ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&a;

		/* The canonical form below has no zone: nothing to compare. */
		if (in6->sin6_scope_id)
			return;
		port = ntohs(in6->sin6_port);
		if (uv_ip6_name(in6, host, sizeof(host)) != 0)
			abort();
		snprintf(buf, sizeof(buf), "[%s]:%d", host, port);
	} else {
		abort();
	}
	if (srv_parse_addr(buf, &b) != 0 || memcmp(&a, &b, sizeof(a)) != 0)
		abort();
}

static void check_hostport(const char *s, int default_port)
{
	char host[256], again[256], buf[300];
	int port = -1, port2 = -1;

	if (cluster_hostport_parse(s, default_port, host, sizeof(host), &port) != 0)
		return;
	if (!host[0] || port < 1 || port > 65535 || (!default_port && !strchr(s, ':')))
		abort();
	/* Brackets when the host has a ':' or starts like a bracketed one. */
	if (strchr(host, ':') || host[0] == '[')
		snprintf(buf, sizeof(buf), "[%s]:%d", host, port);
	else
		snprintf(buf, sizeof(buf), "%s:%d", host, port);
	if (cluster_hostport_parse(buf, 0, again, sizeof(again), &port2) != 0 ||
	    strcmp(host, again) != 0 || port != port2)
		abort();
}

static void check_cli_duration(const char *s)
{
	char buf[64];
	double d, e;

	if (cli_parse_duration(s, &d) != 0)
		return;
	if (!isfinite(d) || d < 0 || d > CLI_DURATION_MAX_S)
		abort();
	snprintf(buf, sizeof(buf), "%.17gs", d);
	if (cli_parse_duration(buf, &e) != 0 || e != d)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char s[512];

	if (size < 1 || size > sizeof(s) || memchr(data + 1, '\0', size - 1))
		return 0;
	memcpy(s, data + 1, size - 1);
	s[size - 1] = '\0';
	switch (data[0] & 3) {
	case 0:
		check_srv_addr(s);
		break;
	case 1:
		check_hostport(s, 0);
		break;
	case 2:
		check_hostport(s, 7000);
		break;
	default:
		check_cli_duration(s);
		break;
	}
	return 0;
}
