/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Source dispatch by URI scheme, reference counting, and the memory-image source.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "source/source.h"

const char *wlift__uri_local_path(const char *uri)
{
	if (strncmp(uri, "file://", 7) == 0)
		return uri + 7;
	if (strstr(uri, "://"))
		return NULL;
	return uri;
}

int wlift__source_file_open(wlift_ctx *ctx, const char *path, const char *uri,
			    struct wlift__source **out, wlift_diag *d);

int wlift__source_open(wlift_ctx *ctx, const char *uri, struct wlift__source **out,
		       wlift_diag *d)
{
	const char *path = wlift__uri_local_path(uri);

	*out = NULL;
	if (!path)
		return wlift__diag_set(d, WLIFT_EURI, uri, NULL, -1, "uri.scheme",
				       "%s: URI scheme not supported by this build", uri);
	return wlift__source_file_open(ctx, path, uri, out, d);
}

struct wlift__source *wlift__source_ref(struct wlift__source *s)
{
	if (s)
		__atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
	return s;
}

void wlift__source_unref(struct wlift__source *s)
{
	if (!s)
		return;
	if (__atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) == 0)
		s->ops->destroy(s);
}

static int mem_pread(struct wlift__source *s, void *buf, size_t len, uint64_t off,
		     wlift_diag *d)
{
	if (off > s->size || len > s->size - off)
		return wlift__diag_set(d, WLIFT_ETRUNCATED, s->uri, NULL, (int64_t)off,
				       "file.truncated",
				       "%s: read of %zu bytes at offset %llu is beyond the end "
				       "(%llu bytes)", s->uri, len, (unsigned long long)off,
				       (unsigned long long)s->size);
	memcpy(buf, s->mem + off, len);
	return 0;
}

static void mem_destroy(struct wlift__source *s)
{
	free(s->uri);
	free(s);
}

static const struct wlift__source_ops mem_ops = {
	.kind = "memory",
	.pread = mem_pread,
	.destroy = mem_destroy,
};

int wlift__source_open_memory(const void *buf, size_t len, const char *name,
			      struct wlift__source **out, wlift_diag *d)
{
	struct wlift__source *s;

	*out = NULL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return wlift__diag_set(d, -ENOMEM, name, NULL, -1, NULL, NULL);
	s->uri = strdup(name ? name : "<memory>");
	if (!s->uri) {
		free(s);
		return wlift__diag_set(d, -ENOMEM, name, NULL, -1, NULL, NULL);
	}
	s->ops = &mem_ops;
	s->size = len;
	s->fd = -1;
	s->mem = buf;
	s->refs = 1;
	*out = s;
	return 0;
}
