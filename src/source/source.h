/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Sources: where bytes come from. A source is one object (a local file, a memory image, later
 * an HTTP/S3/GCS object) that can be read at any offset from several threads at once.
 * Sources never include sinks; the engine wires them together.
 */
#ifndef WLIFT_SOURCE_H
#define WLIFT_SOURCE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/common.h"

struct wlift__source;

struct wlift__source_ops {
	const char *kind; /* "file", "memory", ... */
	/* Read exactly len bytes at off into buf. Returns 0, or a negative code with d filled
	 * (a short read is WLIFT_ETRUNCATED or WLIFT_ECHANGED). Thread-safe. */
	int (*pread)(struct wlift__source *s, void *buf, size_t len, uint64_t off,
		     wlift_diag *d);
	void (*destroy)(struct wlift__source *s);
};

struct wlift__source {
	const struct wlift__source_ops *ops;
	char *uri;             /* as given (for diagnostics) */
	uint64_t size;         /* object size in bytes */
	int fd;                /* local files: buffered fd, else -1 */
	const uint8_t *mem;    /* memory images: the bytes, else NULL */
	int64_t mtime_ns;      /* local files: modification time at open, to detect changes */
	int refs;              /* shared by a checkpoint and its results (atomic) */
	void *priv;            /* source-specific state */
};

/* Open uri (a path or file:// URI; remote schemes in later stages). */
int wlift__source_open(wlift_ctx *ctx, const char *uri, struct wlift__source **out,
		       wlift_diag *d);
/* Wrap a memory image (not copied). */
int wlift__source_open_memory(const void *buf, size_t len, const char *name,
			      struct wlift__source **out, wlift_diag *d);
static inline int wlift__source_pread(struct wlift__source *s, void *buf, size_t len,
				      uint64_t off, wlift_diag *d)
{
	return s->ops->pread(s, buf, len, off, d);
}
struct wlift__source *wlift__source_ref(struct wlift__source *s);
/* Drop a reference; destroys at zero. Accepts NULL. */
void wlift__source_unref(struct wlift__source *s);

/* Strip a file:// prefix; returns a pointer into uri. NULL for other schemes with "://". */
const char *wlift__uri_local_path(const char *uri);

#endif
