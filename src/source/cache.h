/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The local write-through cache (cache.c): a source decorator in front of any remote source.
 * Opening a remote object through it either serves a complete cached copy through the local
 * file source (after the remote source's own open has confirmed size and identity, or with
 * no request at all in offline mode), or opens the remote object and tees every byte the
 * loads read into a temporary file that becomes a cache entry when complete. docs/remote.md
 * ("Local cache") has the rules.
 */
#ifndef WLIFT_SOURCE_CACHE_H
#define WLIFT_SOURCE_CACHE_H

#include "source/source.h"

/* How a remote source of some kind is opened (wlift__http_open, ...). */
typedef int (*wlift__remote_open_fn)(wlift_ctx *ctx, const char *uri, struct wlift__source **out,
				     wlift_diag *d);

/* Open remote object uri through the context's cache (open_remote alone when the context
 * has no cache directory). */
int wlift__cache_open(wlift_ctx *ctx, const char *uri, wlift__remote_open_fn open_remote,
		      struct wlift__source **out, wlift_diag *d);

#endif
