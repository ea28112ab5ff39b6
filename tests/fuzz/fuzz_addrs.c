/*
 * libFuzzer target for the small parsers of the command lines and peer
 * lists: ADDR:PORT (common/addr.c, with the flags chatd's listeners, the
 * cluster's peers and any mix of them use; never ADDR_RESOLVE: no network
 * here) and rainbow's durations (cli_parse_duration).
 *
 * Input: one byte choosing the parser (low two bits: 0 listener,
 * 1 peer, 2 peer with a default port, 3 duration; bits 2-4 add flags, bit 6
 * makes the default port 0), then the value. Besides not crashing, an
 * accepted value is in range and stable: written back (addr_join, and
 * addr_format for a numeric address) it parses to the same value.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>

#include "../../common/addr.h"
#include "../../deployer/cli.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_addr(const char *s, unsigned flags, int default_port)
{
	struct addr a, b;
	char buf[ADDR_STR_MAX];

	if (addr_parse(s, flags, default_port, &a) != 0)
		return;
	if (!a.host[0] || strlen(a.host) > ADDR_NAME_MAX || a.port < 0 || a.port > 65535)
		abort();
	if (a.port == 0 && !(flags & ADDR_PORT_ZERO))
		abort();
	if (!strchr(s, ':') && !(flags & ADDR_PORT_OPTIONAL) && s[0] != '[')
		abort();
	if (a.sa.ss_family == AF_UNSPEC) {
		if (!(flags & ADDR_NAME))
			abort();
	} else if (addr_port((const struct sockaddr *)&a.sa) != a.port) {
		abort();
	}
	if (addr_join(a.host, a.port, buf, sizeof(buf)) < 0)
		abort();
	if (addr_parse(buf, flags & ~ADDR_PORT_OPTIONAL, 0, &b) != 0 || strcmp(a.host, b.host) ||
	    a.port != b.port || memcmp(&a.sa, &b.sa, sizeof(a.sa)) != 0)
		abort();
	if (a.sa.ss_family != AF_UNSPEC) {
		if (addr_format((const struct sockaddr *)&a.sa, buf, sizeof(buf)) < 0)
			abort();
		if (addr_parse(buf, flags & ~ADDR_PORT_OPTIONAL, 0, &b) != 0 ||
		    memcmp(&a.sa, &b.sa, sizeof(a.sa)) != 0)
			abort();
	}
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
	static const unsigned base[3] = { ADDR_PORT_ZERO, ADDR_NAME,
					  ADDR_NAME | ADDR_PORT_OPTIONAL };
	unsigned extra = (data[0] >> 2) & (ADDR_PORT_ZERO | ADDR_NAME | ADDR_PORT_OPTIONAL);

	if ((data[0] & 3) == 3)
		check_cli_duration(s);
	else
		check_addr(s, base[data[0] & 3] | extra, data[0] & 0x40 ? 0 : 7000);
	return 0;
}
