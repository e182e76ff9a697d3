/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The probe stage: per file, from what its source reports (ops->probe), whether to read it
 * with O_DIRECT, the chunk size (network and FUSE file systems want larger requests), and
 * whether the load wants io_uring; and, for WLIFT_MMAP_AUTO, whether mapping pays.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/stages.h"
#include "source/source.h"

/* What a load reads of file f: the plan ranges its selected tensors form (the plan merges
 * contiguous tensors with the same offset modulo 64, so every other neighbour starts one),
 * their bytes and the span [lo, hi) they cover. */
struct file_sel {
	size_t ranges;
	uint64_t bytes, lo, hi;
};

static void file_selection(const wlift_tensor_info *ti, size_t n, uint32_t f,
			   struct file_sel *fs)
{
	const wlift_tensor_info *prev = NULL;

	memset(fs, 0, sizeof(*fs));
	fs->lo = UINT64_MAX;
	for (size_t i = 0; i < n; i++) {
		if (ti[i].file != f || !ti[i].nbytes)
			continue;
		if (!prev || prev->data_end != ti[i].data_begin ||
		    (prev->data_begin & 63) != (ti[i].data_begin & 63))
			fs->ranges++;
		prev = &ti[i];
		fs->bytes += ti[i].nbytes;
		if (ti[i].file_offset < fs->lo)
			fs->lo = ti[i].file_offset;
		if (ti[i].file_offset + ti[i].nbytes > fs->hi)
			fs->hi = ti[i].file_offset + ti[i].nbytes;
	}
	if (fs->lo > fs->hi)
		fs->lo = fs->hi = 0;
}

static int file_used(const wlift_tensor_info *ti, size_t n, size_t f)
{
	for (size_t i = 0; i < n; i++)
		if (ti[i].file == f)
			return 1;
	return 0;
}

int wlift__load_mapped_pays(const struct wlift_ckpt *ck, const wlift_tensor_info *ti, size_t n)
{
	for (size_t f = 0; f < ck->nfiles; f++) {
		struct wlift__source *src = ck->files[f].src;
		struct wlift__source_probe p;
		struct file_sel fs;

		if (!file_used(ti, n, f))
			continue;
		file_selection(ti, n, (uint32_t)f, &fs);
		src->ops->probe(src, fs.lo, fs.hi - fs.lo, WLIFT__PROBE_RESIDENT, &p);
		if (!p.can_map)
			return 0;
		if (fs.hi > fs.lo && p.resident < WLIFT_DIRECT_MAX_RESIDENT)
			return 0;
	}
	return 1;
}

void wlift__probed_free(struct wlift__probed *p)
{
	if (!p)
		return;
	free(p->pf);
	free(p->gds);
	memset(p, 0, sizeof(*p));
}

int wlift__load_probe(const struct wlift_ckpt *ck, const struct wlift__load_cfg *c,
		      const wlift_tensor_info *ti, size_t n, int gds_sink,
		      struct wlift__probed *out, wlift_diag *d)
{
	int gds_on = gds_sink == 2 && c->gds == WLIFT_GDS_ON;
	int ret = 0;

	memset(out, 0, sizeof(*out));
	out->pf = calloc(ck->nfiles ? ck->nfiles : 1, sizeof(*out->pf));
	if (!out->pf)
		return wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
	if (gds_sink && c->gds != WLIFT_GDS_OFF) {
		out->gds = calloc(ck->nfiles ? ck->nfiles : 1, 1);
		if (!out->gds) {
			ret = wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
			goto out;
		}
	}
	out->chunk_bytes = c->chunk_bytes;
	out->all_memory = 1;
	for (size_t f = 0; f < ck->nfiles; f++) {
		struct wlift__source *src = ck->files[f].src;
		uint64_t off = ck->files[f].info.data_offset;
		uint64_t dsize = src->size > off ? src->size - off : 0;
		struct wlift__source_probe p;
		struct file_sel fs;
		uint32_t align;
		int direct = 0;

		if (!file_used(ti, n, f))
			continue;
		file_selection(ti, n, (uint32_t)f, &fs);
		src->ops->probe(src, off, dsize,
				c->direct != WLIFT_DIRECT_OFF || gds_on ? WLIFT__PROBE_DIRECT : 0, &p);
		align = p.dio_align;
		if (!p.in_memory)
			out->all_memory = 0;
		if (p.chunk > out->chunk_bytes && !c->chunk_explicit)
			out->chunk_bytes = p.chunk;
		if (p.requests > out->requests)
			out->requests = p.requests;
		if (gds_on) {
			/* cuFile reads with O_DIRECT (true GDS needs it): every file must allow it. */
			if (!src->ops->read_to_device || !align || !src->ops->direct) {
				ret = wlift__diag_set(
				    d, WLIFT_EUNSUPPORTED, src->uri, NULL, -1, "load.gds",
				    "%s: GPU Direct Storage (gds on) reads local files on a file "
				    "system that allows O_DIRECT; this one (%s) does not",
				    src->uri, wlift__fs_kind_name(p.fs_kind));
				goto out;
			}
			direct = 1;
		} else if (c->direct == WLIFT_DIRECT_ON) {
			if (!align || !src->ops->direct) {
				ret = wlift__diag_set(d, WLIFT_EUNSUPPORTED, src->uri, NULL, -1,
						      "load.direct",
						      "%s: the file system (%s) does not support "
						      "O_DIRECT",
						      src->uri, wlift__fs_kind_name(p.fs_kind));
				goto out;
			}
			direct = 1;
		} else if (c->direct == WLIFT_DIRECT_AUTO && align && src->ops->direct &&
			   p.fs_kind == WLIFT_FS_LOCAL && fs.bytes >= WLIFT_DIRECT_MIN_BYTES &&
			   fs.bytes / (fs.ranges + 1) >= WLIFT_DIRECT_MIN_AVG_RANGE) {
			/* What is read decides, not the file: a few rows of a large file are a
			 * small read (and measuring a whole large file's residency costs more than
			 * reading them: cachestat walks the page cache). */
			src->ops->probe(src, fs.lo, fs.hi - fs.lo, WLIFT__PROBE_RESIDENT, &p);
			direct = p.resident >= 0 && p.resident < WLIFT_DIRECT_MAX_RESIDENT;
		}
		if (direct) {
			wlift_diag dd;
			wlift_diag_clear(&dd);
			ret = src->ops->direct(src, &dd);
			if (ret && (c->direct == WLIFT_DIRECT_ON || gds_on)) {
				if (d && !d->code)
					*d = dd;
				goto out;
			}
			if (!ret) {
				out->pf[f].dio_align = align;
				out->any_direct = 1;
				/* Through cuFile: only files read with O_DIRECT (aligned chunks,
				 * placed so that aligned file offsets meet aligned device
				 * addresses), which auto chooses for cold local files: from the
				 * page cache the ring is faster than reading the disk again. */
				if (out->gds && gds_sink == 2 && src->ops->read_to_device) {
					out->gds[f] = 1;
					if (out->pf[f].dio_align < WLIFT_GDS_ALIGN)
						out->pf[f].dio_align = WLIFT_GDS_ALIGN;
				}
			}
			ret = 0; /* AUTO: buffered reads when O_DIRECT cannot be had */
		}
	}
	if (out->gds && gds_sink == 1)
		for (size_t f = 0; f < ck->nfiles; f++)
			out->gds[f] = ck->files[f].src->ops->read_to_device != NULL;
	if (c->strategy == WLIFT_STRATEGY_URING ||
	    (c->strategy == WLIFT_STRATEGY_AUTO && out->any_direct))
		out->queue_flags |= WLIFT__RQ_URING;
out:
	if (ret)
		wlift__probed_free(out);
	return ret;
}
