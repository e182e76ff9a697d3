/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Memory that outlives the stage that made it: a host arena or device allocation exported by
 * a sink, or a file mapping made by a source. A result owns a list of these and frees each with
 * its own function, so that neither the result nor the engine needs to know who allocated it
 * (host arena, file mapping, device memory, or later a caller-supplied allocator).
 */
#ifndef WLIFT_COMMON_MEM_H
#define WLIFT_COMMON_MEM_H

#include <stddef.h>
#include <stdint.h>

struct wlift__mem {
	void *base;   /* host or device address */
	size_t len;   /* bytes usable at base */
	int device;   /* -1: host memory; >= 0: CUDA ordinal */
	/* Free the memory (called once, by the last owner). */
	void (*free)(struct wlift__mem *m);
	/* Optional: give back the pages of [off, off+len) (tensors nobody holds any more); the
	 * bytes there become undefined. 0 or a negative code. NULL when unsupported. */
	int (*release)(struct wlift__mem *m, uint64_t off, uint64_t len);
	void *priv;   /* owner-specific */
	/* Optional: a tensor of the result covers [off, off+len); called for each once the
	 * result is complete, before any release. Memory that frees in units larger than a
	 * page (device granules) counts the tensors per unit with it, so that a unit goes
	 * when the last tensor covering it is released (pages shared with a live neighbour
	 * stay). NULL: release needs no count. */
	void (*hold)(struct wlift__mem *m, uint64_t off, uint64_t len);
};

static inline void wlift__mem_free(struct wlift__mem *m)
{
	if (m && m->free) {
		m->free(m);
		m->free = NULL;
		m->base = NULL;
	}
}

/* The usual release: give back the whole pages inside [off, off+len) of m
 * (MADV_DONTNEED; pages shared with the bytes around the range stay). 0, -EINVAL for a range
 * outside m, or -errno. */
int wlift__mem_release_pages(struct wlift__mem *m, uint64_t off, uint64_t len);

#endif
