/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The plan: which byte ranges to read for a set of tensors, where each lands in the
 * destination arena, and the chunks the engine reads. Pure computation over an array of
 * wlift_tensor_info (no I/O), so it is unit-tested on its own.
 *
 * Tensors that touch in the file (and keep the same offset modulo 64) are merged into one
 * range read into one contiguous destination, so the destination keeps the file's relative
 * layout and a read never has to be split at tensor boundaries. Each range starts 64-byte
 * aligned in the arena, so its tensors land 64-byte aligned when the file layout allows.
 * With O_DIRECT a range is widened to the alignment the file system demands and placed so that
 * aligned file offsets meet aligned memory; a range whose tensors then sit off a 64-byte
 * boundary is moved down in place once it has landed (a "fix-up"; never a second buffer).
 */
#ifndef WLIFT_PLAN_H
#define WLIFT_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

#define WLIFT_PLAN_ALIGN 64u

struct wlift__plan_file {
	uint32_t dio_align; /* 0: buffered reads; else O_DIRECT with this alignment (memory and
			       file offset, a power of two) */
};

struct wlift__plan_range {
	uint32_t file;
	uint64_t off, end;	 /* tensor bytes covered, in the file */
	uint64_t rd_off, rd_end; /* bytes read (widened for O_DIRECT) */
	uint64_t dest;		 /* arena offset where rd_off lands */
	uint32_t shift;		 /* fix-up: move the range down by this many bytes after reading */
	size_t t0, nt;		 /* tensors [t0, t0+nt) of the plan */
	size_t c0, nc;		 /* chunks [c0, c0+nc) */
};

struct wlift__plan_chunk {
	uint32_t range;
	uint32_t file;
	uint64_t off; /* file offset */
	uint64_t len;
	uint64_t dest; /* arena offset */
	int direct;    /* read through the O_DIRECT fd */
};

struct wlift__plan {
	size_t ntensors;
	uint64_t *dest;	  /* final arena offset of each tensor */
	size_t nranges;
	struct wlift__plan_range *ranges;
	size_t nchunks;
	struct wlift__plan_chunk *chunks;
	uint64_t arena_bytes;  /* destination bytes needed */
	uint64_t tensor_bytes; /* sum of tensor sizes */
	uint64_t read_bytes;   /* sum of chunk lengths (>= tensor_bytes, checked) */
};

/* Build a plan for tensors t[0..n) (sorted by file, then file_offset; files index into
 * files[]). chunk_bytes: read unit (rounded up to each file's O_DIRECT alignment);
 * max_range: cap on a range's size (bounds fix-up latency; 0 for none). */
int wlift__plan_build(const wlift_tensor_info *t, size_t n, const struct wlift__plan_file *files,
		      size_t nfiles, uint64_t chunk_bytes, uint64_t max_range,
		      struct wlift__plan *out, wlift_diag *d);
/* The same with every range (so every tensor) starting align-aligned in the arena: tensors
 * merge into a range only when their file offsets agree modulo align (a power of two >= 64;
 * 0 means WLIFT_PLAN_ALIGN). Device sinks ask for 256. */
int wlift__plan_build_aligned(const wlift_tensor_info *t, size_t n,
			      const struct wlift__plan_file *files, size_t nfiles,
			      uint64_t chunk_bytes, uint64_t max_range, uint32_t align,
			      struct wlift__plan *out, wlift_diag *d);
void wlift__plan_free(struct wlift__plan *p);

#endif
