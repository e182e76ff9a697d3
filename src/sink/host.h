/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Host sink: one anonymous arena per load, backed by transparent huge pages.
 */
#ifndef WLIFT_SINK_HOST_H
#define WLIFT_SINK_HOST_H

#include "sink/sink.h"

/* populate: 0 fault pages in while reading (workers fault in parallel), 1 pre-fault with
 * MADV_POPULATE_WRITE from `threads` threads before the reads. */
int wlift__host_sink_create(int populate, unsigned threads, struct wlift__sink **out,
			    wlift_diag *d);
/* Take ownership of the arena (base, length in bytes); the sink no longer frees it. */
void wlift__host_sink_take(struct wlift__sink *s, void **base, size_t *len);
/* Point a sink at an arena it does not own (after take): writes land there, destroy leaves
 * it alone. */
void wlift__host_sink_lend(struct wlift__sink *s, void *base, size_t len);
/* Free an arena taken from a host sink. Accepts NULL. */
void wlift__host_arena_free(void *base, size_t len);
/* Map an anonymous arena of len bytes with huge pages advised. NULL on failure (errno). */
void *wlift__host_arena_alloc(size_t len);

#endif
