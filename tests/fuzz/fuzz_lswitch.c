/*
 * libFuzzer target for the local switch's control request parser
 * (deployer/lswitch.c, lswitch_parse_command()).
 *
 * Input: one request line (what the switch hands over after splitting on
 * '\n' and refusing NUL bytes). Besides not crashing, an accepted request
 * must satisfy the protocol's invariants (a 7-40 hex sha with 1..64
 * backends, or nothing selected) and be stable: formatting the parsed
 * request canonically and parsing that again gives the same request.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "../../deployer/lswitch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_select(const struct lswitch_cmd *c)
{
	size_t shalen = strlen(c->sha);

	if (shalen == 0) {
		if (c->n != 0)
			abort();
		return;
	}
	if (shalen < 7 || shalen > 40 || strspn(c->sha, "0123456789abcdef") != shalen)
		abort();
	if (c->n > LSWITCH_BACKENDS_MAX)
		abort(); /* 0: the colour's own replicas */
	for (size_t i = 0; i < c->n; i++) {
		const struct sockaddr_storage *sa = &c->sas[i];

		if (!c->addrs[i][0] || strchr(c->addrs[i], ',') || strchr(c->addrs[i], ' '))
			abort();
		if (sa->ss_family == AF_INET) {
			if (((const struct sockaddr_in *)sa)->sin_port == 0)
				abort();
		} else if (sa->ss_family == AF_INET6) {
			if (((const struct sockaddr_in6 *)sa)->sin6_port == 0)
				abort();
		} else {
			abort();
		}
	}
}

/* The canonical request line of c. */
static void format_cmd(const struct lswitch_cmd *c, char *buf, size_t len)
{
	size_t off;

	switch (c->kind) {
	case LSWITCH_CMD_STATUS:
		snprintf(buf, len, "status");
		return;
	case LSWITCH_CMD_STOP:
		snprintf(buf, len, "stop");
		return;
	case LSWITCH_CMD_PING:
		snprintf(buf, len, "ping");
		return;
	case LSWITCH_CMD_DOWN:
		snprintf(buf, len, "down");
		return;
	case LSWITCH_CMD_REMOVE:
		snprintf(buf, len, "remove %s", c->sha);
		return;
	case LSWITCH_CMD_REMOVE_REPLICA:
		snprintf(buf, len, "remove-replica %s %s", c->sha, c->name);
		return;
	case LSWITCH_CMD_SCALE:
		snprintf(buf, len, "scale %s %d %s", c->sha, c->replicas, c->spec);
		return;
	case LSWITCH_CMD_SELECT:
		break;
	default:
		abort();
	}
	if (!c->sha[0]) {
		snprintf(buf, len, "select -");
		return;
	}
	off = (size_t)snprintf(buf, len, "select %s%s", c->sha, c->n ? " " : "");
	for (size_t i = 0; i < c->n; i++)
		off += (size_t)snprintf(buf + off, len - off, "%s%s", i ? "," : "", c->addrs[i]);
	if (off >= len)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct lswitch_cmd a, b;
	static char line[LSWITCH_LINE_MAX + 1], again[LSWITCH_LINE_MAX + 1];
	char err[256];

	if (size > LSWITCH_LINE_MAX || memchr(data, '\n', size) || memchr(data, '\0', size))
		return 0;
	memcpy(line, data, size);
	line[size] = '\0';
	err[0] = '\0';
	if (lswitch_parse_command(line, &a, err, sizeof(err)) != 0) {
		if (!err[0])
			abort();
		return 0;
	}
	if (a.kind == LSWITCH_CMD_SELECT)
		check_select(&a);
	format_cmd(&a, again, sizeof(again));
	if (lswitch_parse_command(again, &b, err, sizeof(err)) != 0)
		abort();
	if (a.kind != b.kind || strcmp(a.sha, b.sha) != 0 || a.n != b.n ||
	    a.replicas != b.replicas || strcmp(a.name, b.name) != 0 ||
	    (a.kind == LSWITCH_CMD_SCALE && strcmp(a.spec, b.spec) != 0))
		abort();
	if (a.kind == LSWITCH_CMD_SCALE && (a.replicas < 0 || a.replicas > 32 || a.spec[0] != '{'))
		abort();
	for (size_t i = 0; i < a.n; i++)
		if (strcmp(a.addrs[i], b.addrs[i]) != 0 ||
		    memcmp(&a.sas[i], &b.sas[i], sizeof(a.sas[i])) != 0)
			abort();
	return 0;
}
