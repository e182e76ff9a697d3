/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Sinks: where loaded bytes go. The engine sees only this interface, so a device sink (a ring
 * of pinned host buffers copied to GPU memory) plugs in beside the host arena: a sink whose
 * `ptr` returns NULL gets its bytes through `write` from a bounce buffer instead of having the
 * reads land in place. Sinks never include sources; the engine wires them.
 */
#ifndef WLIFT_SINK_H
#define WLIFT_SINK_H

#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

struct wlift__sink;

struct wlift__sink_ops {
	const char *kind; /* "host", later "cuda" */
	/* Reserve bytes of destination memory (one arena per load). */
	int (*alloc)(struct wlift__sink *s, uint64_t bytes, wlift_diag *d);
	/* Host-addressable destination at off, or NULL when reads must go through write. */
	void *(*ptr)(struct wlift__sink *s, uint64_t off);
	/* Deliver len bytes for destination offset off (sinks without ptr). Thread-safe. */
	int (*write)(struct wlift__sink *s, uint64_t off, const void *buf, size_t len,
		     wlift_diag *d);
	/* All writes issued: wait for them to complete. */
	int (*finish)(struct wlift__sink *s, wlift_diag *d);
	/* Free the sink and, unless ownership was taken, its memory. Accepts NULL. */
	void (*destroy)(struct wlift__sink *s);
};

struct wlift__sink {
	const struct wlift__sink_ops *ops;
	int device; /* -1 CPU, >= 0 CUDA ordinal */
};

#endif
