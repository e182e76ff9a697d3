/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The resolve stage: one configuration for the load from its options and the context (which
 * read the WEIGHTLIFT_* environment once, at creation), every value range-checked here so
 * that the later stages can trust it.
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "engine/stages.h"
#include "sink/sink.h"

static int bad(wlift_diag *d, const char *field, unsigned long long v, const char *range)
{
	return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "load.options",
			       "wlift_load_opts.%s = %llu is out of range (%s)", field, v, range);
}

int wlift__load_resolve(const wlift_ctx *ctx, const wlift_load_opts *o,
			struct wlift__load_cfg *c, wlift_diag *d)
{
	memset(c, 0, sizeof(*c));
	if (o->size == 0 || o->size > sizeof(wlift_load_opts))
		return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "api.size",
				       "wlift_load_opts.size is %zu (use WLIFT_LOAD_OPTS_INIT)",
				       o->size);
	if (o->strategy < WLIFT_STRATEGY_AUTO || o->strategy > WLIFT_STRATEGY_URING)
		return bad(d, "strategy", (unsigned long long)o->strategy, "enum wlift_strategy");
	if (o->direct < WLIFT_DIRECT_AUTO || o->direct > WLIFT_DIRECT_OFF)
		return bad(d, "direct", (unsigned long long)o->direct, "enum wlift_direct");
	if (o->mmap < WLIFT_MMAP_OFF || o->mmap > WLIFT_MMAP_AUTO)
		return bad(d, "mmap", (unsigned long long)o->mmap, "enum wlift_mmap");
	if ((int)o->dtype < 0 || o->dtype >= WLIFT_DTYPE_COUNT)
		return bad(d, "dtype", (unsigned long long)o->dtype, "enum wlift_dtype");
	if (o->threads > WLIFT_MAX_THREADS)
		return bad(d, "threads", o->threads, "0 .. 256 (WLIFT_MAX_THREADS)");
	if (o->chunk_bytes > WLIFT_MAX_CHUNK_BYTES)
		return bad(d, "chunk_bytes", (unsigned long long)o->chunk_bytes, "0 .. 1 GiB");
	if (o->max_inflight_bytes > WLIFT_MAX_INFLIGHT_BYTES)
		return bad(d, "max_inflight_bytes", (unsigned long long)o->max_inflight_bytes,
			   "0 .. 1 TiB");
	if (o->world_size < 0 || o->world_size > WLIFT_MAX_WORLD)
		return bad(d, "world_size", (unsigned long long)o->world_size,
			   "0 .. 65536 (WLIFT_MAX_WORLD)");
	if (o->rank < 0 || (o->world_size > 1 && o->rank >= o->world_size) ||
	    (o->world_size <= 1 && o->rank != 0))
		return bad(d, "rank", (unsigned long long)o->rank, "0 .. world_size - 1");
	if (o->nshard && !o->shard)
		return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "load.shard",
				       "wlift_load_opts.nshard is %zu but shard is NULL", o->nshard);
	for (size_t i = 0; i < o->nshard; i++)
		if (!o->shard[i].pattern || o->shard[i].dim < -1)
			return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "load.shard",
					       "wlift_load_opts.shard[%zu]: %s", i,
					       o->shard[i].pattern ? "dim must be >= 0, or -1 to "
								     "replicate"
								   : "pattern is NULL");
	if (o->rows && !o->names)
		return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "load.rows",
				       "wlift_load_opts.rows needs names (one range per name)");
	if (wlift__device_parse(o->device, &c->device_index))
		return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "load.device",
				       "wlift_load_opts.device = \"%s\" not understood (use \"cpu\", "
				       "\"cuda\" or \"cuda:N\", N <= %d)",
				       o->device, WLIFT_MAX_DEVICE_INDEX);
	c->device = o->device;
	{
		/* The ring: explicit option > WEIGHTLIFT_CUDA_RING_* > default; each buffer
		 * between 64 KiB and 256 MiB (one cuMemHostRegister segment). */
		int has_field = o->size >= offsetof(wlift_load_opts, ring_slots) + sizeof(unsigned);
		size_t rb = has_field && o->ring_bytes ? o->ring_bytes : ctx->ring_bytes;
		unsigned rs = has_field && o->ring_slots ? o->ring_slots : ctx->ring_slots;
		const char *src = has_field && o->ring_bytes ? "wlift_load_opts.ring_bytes"
							     : "WEIGHTLIFT_CUDA_RING_BYTES";
		if (!rb)
			rb = WLIFT_DEFAULT_RING_BYTES;
		if (!rs)
			rs = WLIFT_DEFAULT_RING_SLOTS;
		if (rb < WLIFT_MIN_RING_BYTES || rb > WLIFT_MAX_RING_BYTES)
			return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "load.options",
					       "%s = %zu is out of range (1 MiB .. 16 GiB)", src, rb);
		if (rs < 2 || rs > WLIFT_MAX_RING_SLOTS)
			return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "load.options",
					       "ring_slots = %u is out of range (2 .. %u)", rs,
					       WLIFT_MAX_RING_SLOTS);
		if (rb / rs < (64u << 10) || rb / rs > (256u << 20))
			return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "load.options",
					       "a ring of %zu bytes in %u buffers gives %zu-byte "
					       "buffers (each must be 64 KiB .. 256 MiB)",
					       rb, rs, rb / rs);
		c->ring_bytes = rb;
		c->ring_slots = rs;
		c->max_device_bytes =
		    o->size >= offsetof(wlift_load_opts, max_device_bytes) + sizeof(uint64_t) &&
			    o->max_device_bytes
			? o->max_device_bytes
			: ctx->max_device_bytes;
		c->device_allocator =
		    o->size >= offsetof(wlift_load_opts, device_allocator) + sizeof(void *)
			? o->device_allocator
			: NULL;
		if (c->device_allocator &&
		    (!c->device_allocator->alloc || !c->device_allocator->free))
			return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "load.options",
					       "wlift_load_opts.device_allocator needs both alloc "
					       "and free");
		if (c->device_allocator && c->device_index < 0)
			return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "load.options",
					       "wlift_load_opts.device_allocator is for GPU loads "
					       "(device \"cuda:N\"), not host memory");
	}
	{
		int has_field = o->size >= offsetof(wlift_load_opts, gds) + sizeof(int);
		int g = has_field ? o->gds : WLIFT_GDS_DEFAULT;
		if (g < WLIFT_GDS_DEFAULT || g > WLIFT_GDS_OFF)
			return bad(d, "gds", (unsigned long long)g, "enum wlift_gds");
		c->gds = g == WLIFT_GDS_DEFAULT ? ctx->gds : g;
		if (c->gds == WLIFT_GDS_DEFAULT)
			c->gds = WLIFT_GDS_AUTO;
	}
	c->dtype = o->dtype;
	c->strategy = o->strategy;
	c->direct = o->direct;
	c->mmap = o->mmap;
	c->threads = o->threads ? o->threads : ctx->threads;
	c->chunk_explicit = o->chunk_bytes != 0;
	c->chunk_bytes = o->chunk_bytes ? o->chunk_bytes : ctx->chunk_bytes;
	c->max_inflight_bytes = o->max_inflight_bytes ? o->max_inflight_bytes
						      : ctx->max_inflight_bytes;
	if (!c->threads)
		c->threads = 1;
	if (!c->chunk_bytes)
		c->chunk_bytes = WLIFT_DEFAULT_CHUNK_BYTES;
	if (c->max_inflight_bytes < c->chunk_bytes)
		c->max_inflight_bytes = c->chunk_bytes;
	c->populate = ctx->populate;
	c->shard_piece_min = ctx->shard_piece_min ? ctx->shard_piece_min : WLIFT_SHARD_PIECE_MIN;
	c->rank = o->world_size > 1 ? (unsigned)o->rank : 0;
	c->world = o->world_size > 1 ? (unsigned)o->world_size : 1;
	if (o->size >= offsetof(wlift_load_opts, comm) + sizeof(void *) && o->comm) {
		/* The exchange: the communicator's ranks (an explicit rank/world must agree). */
		int r = wlift_comm_rank(o->comm), w = wlift_comm_size(o->comm);
		if (o->world_size > 1 && (o->world_size != w || o->rank != r))
			return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "load.options",
					       "wlift_load_opts: rank %d of %d differs from the "
					       "communicator's rank %d of %d",
					       o->rank, o->world_size, r, w);
		if (o->experts)
			return wlift__diag_set(d, WLIFT_EUNSUPPORTED, NULL, NULL, -1,
					       "load.options",
					       "wlift_load_opts: experts do not combine with comm "
					       "(the ranks' selections differ)");
		c->comm = o->comm;
		c->rank = w > 1 ? (unsigned)r : 0;
		c->world = w > 1 ? (unsigned)w : 1;
	}
	c->progress = o->progress;
	c->progress_user = o->progress_user;
	return 0;
}
