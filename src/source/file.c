/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Local file source: buffered pread. The engine uses the fd directly for io_uring, O_DIRECT
 * and mapped mode; this file provides the plain, always-available path.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "source/source.h"

static int file_pread(struct wlift__source *s, void *buf, size_t len, uint64_t off,
		      wlift_diag *d)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = pread(s->fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return wlift__diag_set(d, -errno, s->uri, NULL, (int64_t)off, "io.read",
					       "%s: read failed at offset %llu: %s", s->uri,
					       (unsigned long long)off, strerror(errno));
		}
		if (n == 0)
			return wlift__diag_set(d, WLIFT_ECHANGED, s->uri, NULL, (int64_t)off,
					       "file.changed",
					       "%s: unexpected end of file at offset %llu (the file "
					       "was %llu bytes when opened; was it truncated?)",
					       s->uri, (unsigned long long)off,
					       (unsigned long long)s->size);
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

static void file_destroy(struct wlift__source *s)
{
	if (s->fd >= 0)
		close(s->fd);
	free(s->uri);
	free(s);
}

static const struct wlift__source_ops file_ops = {
	.kind = "file",
	.pread = file_pread,
	.destroy = file_destroy,
};

int wlift__source_file_open(wlift_ctx *ctx, const char *path, const char *uri,
			    struct wlift__source **out, wlift_diag *d)
{
	struct wlift__source *s = NULL;
	struct stat st;
	int ret;

	WLIFT_UNUSED(ctx);
	*out = NULL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
	s->fd = -1;
	s->refs = 1;
	s->ops = &file_ops;
	s->uri = strdup(uri);
	if (!s->uri) {
		ret = wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
		goto out;
	}
	s->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (s->fd < 0) {
		ret = wlift__diag_set(d, -errno, uri, NULL, -1, "io.open", "%s: cannot open: %s",
				      uri, strerror(errno));
		goto out;
	}
	if (fstat(s->fd, &st) < 0) {
		ret = wlift__diag_set(d, -errno, uri, NULL, -1, "io.stat", "%s: cannot stat: %s",
				      uri, strerror(errno));
		goto out;
	}
	if (S_ISDIR(st.st_mode)) {
		ret = wlift__diag_set(d, -EISDIR, uri, NULL, -1, "io.open",
				      "%s: is a directory", uri);
		goto out;
	}
	s->size = (uint64_t)st.st_size;
	s->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
	*out = s;
	s = NULL;
	ret = 0;
out:
	if (s)
		file_destroy(s);
	return ret;
}
