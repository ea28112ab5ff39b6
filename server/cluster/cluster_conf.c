/*
 * Cluster settings: the secret file, peer lists.
 */
#include "cluster.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "cluster_int.h"
#include "cluster_proto.h"
#include "cluster_routes.h"
#include "log.h"

/* ---- configuration helpers ---- */

int cluster_secret_load(const char *path, uint8_t **out, size_t *len)
{
	uint8_t *buf = NULL;
	size_t n = 0;
	ssize_t r;
	int fd, rc = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	buf = malloc(CLUSTER_SECRET_MAX + 2);
	if (!buf) {
		rc = -ENOMEM;
		goto out_close;
	}
	while (n < CLUSTER_SECRET_MAX + 1) {
		r = read(fd, buf + n, CLUSTER_SECRET_MAX + 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = -errno;
			goto out_free;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' ||
			 buf[n - 1] == '\t'))
		n--;
	if (n < CLUSTER_SECRET_MIN || n > CLUSTER_SECRET_MAX) {
		rc = -EINVAL;
		goto out_free;
	}
	*out = buf;
	*len = n;
	goto out_close;
out_free:
	OPENSSL_cleanse(buf, CLUSTER_SECRET_MAX + 2);
	free(buf);
out_close:
	close(fd);
	return rc;
}

int cluster__split_list(const char *s, char ***out, size_t *n)
{
	char **v = NULL, **nv;
	const char *p = s;
	size_t cnt = 0;

	while (p && *p) {
		const char *e = strchr(p, ',');
		size_t len = e ? (size_t)(e - p) : strlen(p);

		while (len && (*p == ' ' || *p == '\t')) {
			p++;
			len--;
		}
		while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
			len--;
		if (len) {
			nv = realloc(v, (cnt + 1) * sizeof(*v));
			if (!nv)
				goto fail;
			v = nv;
			v[cnt] = strndup(p, len);
			if (!v[cnt])
				goto fail;
			cnt++;
		}
		p = e ? e + 1 : NULL;
	}
	*out = v;
	*n = cnt;
	return 0;
fail:
	while (cnt)
		free(v[--cnt]);
	free(v);
	return -ENOMEM;
}

void cluster__free_list(char **v, size_t n)
{
	while (n)
		free(v[--n]);
	free(v);
}
