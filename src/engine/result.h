/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Results: the loaded tensors, the memory that holds them (host arenas or file mappings) and
 * the load's statistics. Reference counted: the caller holds one reference, each DLPack export
 * one more, and the result holds one on its checkpoint so that names and shapes stay valid.
 */
#ifndef WLIFT_RESULT_H
#define WLIFT_RESULT_H

#include "common/mem.h"
#include "engine/ckpt.h"

struct wlift_tensor {
	wlift_tensor_view v;
	struct wlift_result *res;
	int64_t *shape64; /* loaded shape as int64 for DLPack (ndim entries in res->shape64) */
	uint64_t *shape;  /* loaded shape when rows were asked for (v.info.shape), else NULL */
	/* Memory follows the tensors the user keeps: the caller's result reference and each
	 * DLPack export count here (atomic); at zero, the whole pages of the tensor's bytes go
	 * back (mem[mem].release). */
	int refs;
	int mem;	  /* index in res->mem of the block holding v.data, -1: none */
	uint64_t mem_off; /* v.data - that block's base */
};

struct wlift_result {
	int refs;	       /* atomic */
	struct wlift_ckpt *ck; /* referenced */
	size_t n;
	struct wlift_tensor *t;		/* file order */
	uint32_t *by_ckpt;		/* ckpt tensor index -> result index + 1, 0: not loaded */
	int64_t *shape64;		/* every tensor's shape64, one allocation */
	struct wlift__mem *mem;		/* memory owned by the result, each with its free */
	size_t nmem, capmem;
	wlift_stats stats;
};

/* A result for n tensors of ck (takes a reference on ck). NULL on ENOMEM. */
struct wlift_result *wlift__result_new(struct wlift_ckpt *ck, size_t n);
/* Record memory the result owns and frees with it (m->free). 0 or -ENOMEM (the memory is
 * then freed). */
int wlift__result_own(struct wlift_result *r, const struct wlift__mem *m);
struct wlift_result *wlift__result_ref(struct wlift_result *r);
/* After a successful load: each tensor's memory block (the caller's reference per tensor
 * is taken by wlift__result_new, so exports made in the ready callback keep counting). */
void wlift__result_index_memory(struct wlift_result *r);
struct wlift_tensor *wlift__tensor_ref(struct wlift_tensor *t);
/* Drop a tensor reference; at zero its whole pages are released. */
void wlift__tensor_unref(struct wlift_tensor *t);
void wlift__result_unref(struct wlift_result *r);

#endif
