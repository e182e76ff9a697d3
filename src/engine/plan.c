/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Plan construction: ranges (merged neighbours), their placement in the arena, and chunks.
 * See plan.h for the layout rules.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/plan.h"

static uint64_t up(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}

static uint64_t down(uint64_t v, uint64_t a)
{
	return v / a * a;
}

void wlift__plan_free(struct wlift__plan *p)
{
	if (!p)
		return;
	free(p->dest);
	free(p->ranges);
	free(p->chunks);
	memset(p, 0, sizeof(*p));
}

int wlift__plan_build(const wlift_tensor_info *t, size_t n, const struct wlift__plan_file *files,
		      size_t nfiles, uint64_t chunk_bytes, uint64_t max_range,
		      struct wlift__plan *out, wlift_diag *d)
{
	return wlift__plan_build_aligned(t, n, files, nfiles, chunk_bytes, max_range,
					 WLIFT_PLAN_ALIGN, out, d);
}

int wlift__plan_build_aligned(const wlift_tensor_info *t, size_t n,
			      const struct wlift__plan_file *files, size_t nfiles,
			      uint64_t chunk_bytes, uint64_t max_range, uint32_t align,
			      struct wlift__plan *out, wlift_diag *d)
{
	struct wlift__plan p = {0};
	uint64_t cursor = 0;
	size_t capc = 0;
	int ret = 0;

	memset(out, 0, sizeof(*out));
	if (align < WLIFT_PLAN_ALIGN || (align & (align - 1)))
		align = WLIFT_PLAN_ALIGN;
	if (chunk_bytes == 0)
		chunk_bytes = WLIFT_DEFAULT_CHUNK_BYTES;
	p.ntensors = n;
	p.dest = calloc(n ? n : 1, sizeof(*p.dest));
	p.ranges = calloc(n ? n : 1, sizeof(*p.ranges));
	if (!p.dest || !p.ranges) {
		ret = wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
		goto out;
	}

	/* Pass 1: merge neighbours into ranges. */
	for (size_t i = 0; i < n; i++) {
		struct wlift__plan_range *r = p.nranges ? &p.ranges[p.nranges - 1] : NULL;
		uint64_t off = t[i].file_offset, end = off + t[i].nbytes;

		if (t[i].file >= nfiles) {
			ret = wlift__diag_set(d, -EINVAL, NULL, t[i].name, -1, "plan.file",
					      "tensor names file %u of %zu", t[i].file, nfiles);
			goto out;
		}
		if (i && (t[i].file < t[i - 1].file ||
			  (t[i].file == t[i - 1].file && off < t[i - 1].file_offset))) {
			ret = wlift__diag_set(d, -EINVAL, NULL, t[i].name, -1, "plan.order",
					      "tensors are not in file order");
			goto out;
		}
		/* A zero-byte tensor joins any range (it needs no bytes, only an address). */
		if (r && r->file == t[i].file &&
		    (t[i].nbytes == 0 ||
		     (off == r->end && off % align == r->off % align &&
		      (!max_range || end - r->off <= max_range)))) {
			if (t[i].nbytes)
				r->end = end;
			r->nt++;
		} else {
			r = &p.ranges[p.nranges++];
			r->file = t[i].file;
			r->off = off;
			r->end = end;
			r->t0 = i;
			r->nt = 1;
		}
		p.tensor_bytes += t[i].nbytes;
	}

	/* Pass 2: placement and chunks. */
	for (size_t ri = 0; ri < p.nranges; ri++) {
		struct wlift__plan_range *r = &p.ranges[ri];
		uint64_t a = files[r->file].dio_align, cb = chunk_bytes, len;

		if (a) {
			r->rd_off = down(r->off, a);
			r->rd_end = up(r->end, a);
			r->dest = up(cursor, a > align ? a : align);
			r->shift = (uint32_t)((r->dest + (r->off - r->rd_off)) % align);
			cb = up(cb, a);
		} else {
			r->rd_off = r->off;
			r->rd_end = r->end;
			r->dest = up(cursor, align);
			r->shift = 0;
		}
		cursor = r->dest + (r->rd_end - r->rd_off);
		for (size_t k = r->t0; k < r->t0 + r->nt; k++) {
			uint64_t o = t[k].nbytes ? t[k].file_offset : r->off;
			if (o < r->off)
				o = r->off;
			p.dest[k] = r->dest + (o - r->rd_off) - r->shift;
		}
		len = r->rd_end - r->rd_off;
		r->c0 = p.nchunks;
		r->nc = len ? (size_t)((len + cb - 1) / cb) : 0;
		if (p.nchunks + r->nc > capc) {
			size_t nc = capc ? capc * 2 : 64;
			struct wlift__plan_chunk *c;
			while (nc < p.nchunks + r->nc)
				nc *= 2;
			c = realloc(p.chunks, nc * sizeof(*c));
			if (!c) {
				ret = wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
				goto out;
			}
			p.chunks = c;
			capc = nc;
		}
		for (size_t k = 0; k < r->nc; k++) {
			struct wlift__plan_chunk *c = &p.chunks[p.nchunks++];
			uint64_t o = r->rd_off + cb * k;
			c->range = (uint32_t)ri;
			c->file = r->file;
			c->off = o;
			c->len = r->rd_end - o < cb ? r->rd_end - o : cb;
			c->dest = r->dest + (o - r->rd_off);
			c->direct = a != 0;
			p.read_bytes += c->len;
		}
	}
	/* Every byte asked for is read: the chunks of each range tile it exactly, so their sum is
	 * at least the tensors'. Anything else is an arithmetic bug, and loading on would hand
	 * out unread memory as data. */
	{
		uint64_t span = 0;
		for (size_t ri = 0; ri < p.nranges; ri++)
			span += p.ranges[ri].rd_end - p.ranges[ri].rd_off;
		if (span != p.read_bytes || p.read_bytes < p.tensor_bytes) {
			ret = wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "plan.cover",
					      "internal error: the plan reads %llu bytes for %llu "
					      "bytes of tensors",
					      (unsigned long long)p.read_bytes,
					      (unsigned long long)p.tensor_bytes);
			goto out;
		}
	}
	p.arena_bytes = cursor;
	*out = p;
	memset(&p, 0, sizeof(p));
out:
	wlift__plan_free(&p);
	return ret;
}
