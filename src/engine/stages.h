/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The stages of wlift_load before the run (each unit-testable on its own):
 *   resolve (config.c): options + context -> one resolved configuration, range-checked;
 *   select, partition (select.c): which tensors, and which bytes of each (whole tensors, or
 *     the leading-dimension rows a caller asks for);
 *   probe (probe.c): per file, through source ops only: O_DIRECT or buffered, chunk size,
 *     io_uring or not, and whether mapped mode pays.
 * Then plan (plan.c), the sink (sink/sink.c), run (pipeline.c or mapped.c), finish (load.c).
 */
#ifndef WLIFT_ENGINE_STAGES_H
#define WLIFT_ENGINE_STAGES_H

#include "engine/ckpt.h"
#include "engine/plan.h"

/* ---- resolve ---------------------------------------------------------------------------- */

/* The knobs' maxima are public (weightlift.h, WLIFT_MAX_*): beyond them a value is a
 * mistake, and chunk sizes near 2^64 would overflow the plan's arithmetic. */

struct wlift__load_cfg {
	const char *device; /* NULL or "cpu", "cuda", "cuda:N" */
	int device_index;   /* -1: host; else the CUDA ordinal */
	size_t ring_bytes;  /* GPU: staging ring (resolved, range-checked) */
	unsigned ring_slots;
	uint64_t max_device_bytes; /* GPU: 0 none */
	const wlift_device_allocator *device_allocator; /* GPU: the caller's, or NULL */
	int gds;	    /* GPU: enum wlift_gds, resolved (AUTO, ON or OFF) */
	wlift_dtype dtype;  /* WLIFT_DTYPE_NONE: keep */
	int strategy;	    /* enum wlift_strategy */
	int direct;	    /* enum wlift_direct */
	int mmap;	    /* enum wlift_mmap */
	unsigned threads;
	size_t chunk_bytes;
	int chunk_explicit; /* set by the caller: a file system's preference does not change it */
	size_t max_inflight_bytes;
	int populate; /* host arenas: 1 pre-faulted before reading, 0 never, -1 ahead of remote reads */
	unsigned rank, world; /* world 1: not sharded */
	struct wlift_comm *comm; /* the exchange's communicator, or NULL */
	size_t shard_piece_min; /* strided shard pieces of at least this are read one by one */
	wlift_progress_fn progress;
	void *progress_user;
};

/* Explicit option > context (which read WEIGHTLIFT_* once) > default. -EINVAL (d filled,
 * naming the field) for a value out of range. */
int wlift__load_resolve(const wlift_ctx *ctx, const wlift_load_opts *o,
			struct wlift__load_cfg *c, wlift_diag *d);

/* ---- select and partition --------------------------------------------------------------- */

struct wlift__selection {
	size_t n;
	size_t *idx;	       /* checkpoint index of each selected tensor: file order, unique */
	const wlift_rows **rows; /* per selected tensor: the rows asked for, or NULL (whole) */
	wlift_tensor_info *ti; /* after partition: the part of each tensor to load */
	uint64_t **shape;      /* after partition: the loaded shape when partial, else NULL */
	wlift_rows *rows_own;  /* rows computed for dim-0 shards (rows points here) */
	struct wlift__gather *gather; /* after partition: per tensor; outer 0: contiguous */
	int *split_dim;	       /* after partition on W > 1 ranks with rules: the dim + 1 this
				  rank's block is cut along, 0: whole (NULL: none split) */
};

/* A block along a dim > 0: outer pieces of piece bytes, stride apart in the file; ti covers
 * [first piece's start, last piece's end). split 0: the covering range is read and, once it
 * has landed, piece i moves from i * stride to i * piece. split 1 (pieces of at least
 * WLIFT_SHARD_PIECE_MIN): each piece is read on its own and moved after the first. */
struct wlift__gather {
	uint64_t outer, piece, stride;
	int split;
};

/* All tensors, or opts->names (deduplicated, in file order; with opts->rows, each name's
 * rows, which must agree for a name given twice). */
int wlift__load_select(const struct wlift_ckpt *ck, const wlift_load_opts *o,
		       struct wlift__selection *s, wlift_diag *d);
/* The byte range of each selected tensor to read: the whole tensor, its rows, or this rank's
 * block of it (opts->shard, c->rank of c->world). */
int wlift__load_partition(const struct wlift_ckpt *ck, const wlift_load_opts *o,
			  const struct wlift__load_cfg *c, struct wlift__selection *s,
			  wlift_diag *d);
void wlift__selection_free(struct wlift__selection *s);
/* opts->experts (experts.c): drop the routed experts this rank does not own from s, keeping
 * its order; every other tensor stays. */
int wlift__load_experts(const struct wlift_ckpt *ck, const wlift_load_opts *o,
			struct wlift__selection *s, wlift_diag *d);

/* ---- probe ------------------------------------------------------------------------------ */

struct wlift__probed {
	struct wlift__plan_file *pf; /* per checkpoint file: dio_align when read with O_DIRECT */
	size_t chunk_bytes;	     /* the read unit (a file system may ask for larger) */
	int any_direct;
	int all_memory; /* every file read is already in memory */
	unsigned queue_flags; /* WLIFT__RQ_URING when io_uring is wanted */
	unsigned requests;    /* remote sources: reads in flight over all workers; 0: none */
	uint8_t *gds;	      /* per checkpoint file: 1 when its reads may go through cuFile
				 (read_to_device), NULL when none may */
};

/* 1 when WLIFT_MMAP_AUTO should map: every file with selected tensors can be mapped and its
 * data is mostly in the page cache. */
int wlift__load_mapped_pays(const struct wlift_ckpt *ck, const wlift_tensor_info *ti, size_t n);
/* Decide per file. May make the sources ready for O_DIRECT reads (ops->direct). gds_sink: the
 * sink's destination is device memory a source can read into (sink device_ptr; 2 when the
 * reads need cuFile, a CUDA sink), 0 when none: then no file is read through cuFile. */
int wlift__load_probe(const struct wlift_ckpt *ck, const struct wlift__load_cfg *c,
		      const wlift_tensor_info *ti, size_t n, int gds_sink,
		      struct wlift__probed *p, wlift_diag *d);
void wlift__probed_free(struct wlift__probed *p);

#endif
