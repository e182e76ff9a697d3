/* SPDX-License-Identifier: Apache-2.0 */
/*
 * wlift_load: select the tensors, choose the strategy per file (page-cache residency, file
 * system, size), plan, allocate the destination, run the pipeline (or map the files), convert
 * dtypes, and hand back a reference-counted result. Any failure frees everything.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/convert_cpu.h"
#include "engine/mapped.h"
#include "engine/pipeline.h"
#include "engine/plan.h"
#include "engine/result.h"
#include "sink/host.h"
#include "source/file.h"
#include "source/uring.h"

/* AUTO: O_DIRECT when less than this fraction of a file's data is in the page cache. */
#define DIRECT_MAX_RESIDENT 0.5
/* AUTO: files smaller than this always use buffered reads (setup cost dominates). */
#define DIRECT_MIN_BYTES (32u << 20)
/* O_DIRECT ranges are capped so that a fix-up (and the readiness it delays) stays small. */
#define DIRECT_MAX_RANGE (64u << 20)
/* AUTO: O_DIRECT only when the plan's ranges average at least this much: a layout whose
 * tensors break into many small ranges (neighbours whose offsets differ mod 64) pays a
 * block-widened read, a queue slot and a fix-up per range, where buffered reads get the
 * kernel's read-ahead. (The 87 MB MiniLM file is one range: auto O_DIRECT 1.42 GB/s cold
 * against 0.91 GB/s buffered, so it keeps O_DIRECT.) */
#define DIRECT_MIN_AVG_RANGE (4u << 20)
/* Network and FUSE file systems want large requests. */
#define REMOTE_FS_CHUNK (16u << 20)
#define MAX_QD 64u

struct load {
	struct wlift_result *res;
	const wlift_tensor_info *t;
	void **raw; /* where tensor i's stored bytes landed */
	wlift_ready_fn ready;
	void *ready_user;
};

static int tensor_done(void *user, size_t i)
{
	struct load *l = user;
	struct wlift_tensor *t = &l->res->t[i];

	if (!t->v.data) /* mapped mode: the view is the mapping */
		t->v.data = l->raw[i];
	if (t->v.dtype != t->v.info.dtype) {
		size_t nelem = (size_t)(t->v.info.nbytes * 8 / wlift_dtype_bits(t->v.info.dtype));
		wlift__convert_cpu(t->v.info.dtype, t->v.dtype, l->raw[i], t->v.data, nelem);
	}
	if (l->ready && l->ready(t, l->ready_user))
		return WLIFT_ECANCELED;
	return 0;
}

static int cmp_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;

	return x < y ? -1 : x > y;
}

static int parse_device(const char *dev, wlift_diag *d)
{
	if (!dev || !*dev || strcmp(dev, "cpu") == 0)
		return 0;
	if (strcmp(dev, "cuda") == 0 || strncmp(dev, "cuda:", 5) == 0)
		return wlift__diag_set(d, WLIFT_ENODEV, NULL, NULL, -1, "load.device",
				       "device \"%s\": the GPU path is not built yet (only \"cpu\" "
				       "is supported by this version)",
				       dev);
	return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "load.device",
			       "device \"%s\" not understood (use \"cpu\", \"cuda\" or \"cuda:N\")",
			       dev);
}

/* Indices of the selected tensors in file order, deduplicated. */
static int select_tensors(const struct wlift_ckpt *ck, const wlift_load_opts *o, size_t **sel,
			  size_t *n, wlift_diag *d)
{
	size_t *s, k = 0;

	*sel = NULL;
	*n = 0;
	if (!o->names) {
		s = malloc((ck->ntensors ? ck->ntensors : 1) * sizeof(*s));
		if (!s)
			return wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
		for (size_t i = 0; i < ck->ntensors; i++)
			s[i] = i;
		*sel = s;
		*n = ck->ntensors;
		return 0;
	}
	s = malloc((o->nnames ? o->nnames : 1) * sizeof(*s));
	if (!s)
		return wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
	for (size_t i = 0; i < o->nnames; i++) {
		int64_t idx = o->names[i] ? wlift_ckpt_find(ck, o->names[i]) : WLIFT_ENOTFOUND;
		if (idx < 0) {
			free(s);
			return wlift__diag_set(d, WLIFT_ENOTFOUND, NULL, o->names[i], -1,
					       "load.names",
					       "tensor \"%s\" is not in the checkpoint",
					       o->names[i] ? o->names[i] : "(null)");
		}
		s[k++] = (size_t)idx;
	}
	qsort(s, k, sizeof(*s), cmp_size);
	*n = 0;
	for (size_t i = 0; i < k; i++)
		if (i == 0 || s[i] != s[i - 1])
			s[(*n)++] = s[i];
	*sel = s;
	return 0;
}

/* Number of plan ranges file f's selected tensors form: the plan merges contiguous tensors
 * with the same offset modulo 64 (src/engine/plan.c), so every other neighbour starts one. */
static size_t file_ranges(const wlift_tensor_info *ti, size_t n, uint32_t f)
{
	size_t ranges = 0;
	const wlift_tensor_info *prev = NULL;

	for (size_t i = 0; i < n; i++) {
		if (ti[i].file != f || !ti[i].nbytes)
			continue;
		if (!prev || prev->data_end != ti[i].data_begin ||
		    (prev->data_begin & 63) != (ti[i].data_begin & 63))
			ranges++;
		prev = &ti[i];
	}
	return ranges;
}

/* WLIFT_MMAP_AUTO: map when every local file's data is mostly in the page cache. */
static int mapped_pays(const wlift_ckpt *ck, const wlift_tensor_info *ti, size_t n)
{
	for (size_t f = 0; f < ck->nfiles; f++) {
		const struct wlift__source *src = ck->files[f].src;
		uint64_t off = ck->files[f].info.data_offset;
		int used = 0;

		for (size_t i = 0; i < n && !used; i++)
			used = ti[i].file == f;
		if (!used)
			continue;
		if (src->fd < 0)
			return 0; /* memory images and remote sources cannot be mapped */
		if (src->size <= off)
			continue;
		if (wlift__file_resident(src->fd, off, src->size - off) < DIRECT_MAX_RESIDENT)
			return 0;
	}
	return 1;
}

int wlift_load(wlift_ckpt *ck, const wlift_load_opts *opts, wlift_ready_fn ready, void *ready_user,
	       wlift_result **out, wlift_diag *d)
{
	wlift_load_opts defaults = WLIFT_LOAD_OPTS_INIT;
	const wlift_load_opts *o = opts ? opts : &defaults;
	double t_start = wlift__now(), t_plan, t_read;
	struct wlift__plan plan = {0};
	struct wlift__plan_file *pf = NULL;
	struct wlift__pipe_file *files = NULL;
	struct wlift__sink *sink = NULL;
	struct wlift_result *res = NULL;
	wlift_tensor_info *ti = NULL;
	size_t *sel = NULL, n = 0, nfiles = 0;
	void **raw = NULL;
	uint64_t *conv_off = NULL, conv_bytes = 0;
	unsigned threads;
	size_t chunk, inflight;
	int use_uring = 0, any_direct = 0, all_memory = 1, ret;
	const char *strategy;
	struct load l;

	if (out)
		*out = NULL;
	if (!ck || !out)
		return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "api.args",
				       "wlift_load: ck and out must not be NULL");
	if (o->size == 0 || o->size > sizeof(wlift_load_opts))
		return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "api.size",
				       "wlift_load_opts.size is %zu (use WLIFT_LOAD_OPTS_INIT)",
				       o->size);
	ret = parse_device(o->device, d);
	if (ret)
		return ret;
	if (o->strategy < WLIFT_STRATEGY_AUTO || o->strategy > WLIFT_STRATEGY_URING ||
	    o->direct < WLIFT_DIRECT_AUTO || o->direct > WLIFT_DIRECT_OFF || (int)o->dtype < 0 ||
	    o->dtype >= WLIFT_DTYPE_COUNT || o->mmap < WLIFT_MMAP_OFF || o->mmap > WLIFT_MMAP_AUTO)
		return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "api.args",
				       "wlift_load: strategy, direct, mmap or dtype out of range");
	if (o->world_size > 1)
		return wlift__diag_set(d, WLIFT_EUNSUPPORTED, NULL, NULL, -1, "load.rank",
				       "distributed loading is not built yet");
	threads = o->threads ? o->threads : ck->ctx->threads;
	chunk = o->chunk_bytes ? o->chunk_bytes : ck->ctx->chunk_bytes;
	inflight = o->max_inflight_bytes ? o->max_inflight_bytes : ck->ctx->max_inflight_bytes;
	if (!threads)
		threads = 1;
	if (!chunk)
		chunk = WLIFT_DEFAULT_CHUNK_BYTES;
	if (inflight < chunk)
		inflight = chunk;

	ret = select_tensors(ck, o, &sel, &n, d);
	if (ret)
		goto out;
	nfiles = ck->nfiles;
	ti = calloc(n ? n : 1, sizeof(*ti));
	raw = calloc(n ? n : 1, sizeof(*raw));
	conv_off = calloc(n ? n : 1, sizeof(*conv_off));
	pf = calloc(nfiles ? nfiles : 1, sizeof(*pf));
	files = calloc(nfiles ? nfiles : 1, sizeof(*files));
	if (!ti || !raw || !conv_off || !pf || !files) {
		ret = wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
		goto out;
	}
	for (size_t f = 0; f < nfiles; f++)
		files[f].fd = files[f].dfd = -1;
	for (size_t i = 0; i < n; i++)
		ti[i] = ck->tensors[sel[i]];

	/* dtype conversion: floating tensors only; wider targets get their own arena. */
	for (size_t i = 0; i < n; i++) {
		wlift_dtype from = ti[i].dtype;
		if (o->dtype == WLIFT_DTYPE_NONE || !wlift__dtype_is_float(from) ||
		    from == o->dtype)
			continue;
		if (!wlift__convert_supported(from, o->dtype)) {
			ret = wlift__diag_set(
			    d, WLIFT_EUNSUPPORTED, NULL, ti[i].name, -1, "load.dtype",
			    "%s: converting %s to %s is not supported on the CPU", ti[i].name,
			    wlift_dtype_name(from), wlift_dtype_name(o->dtype));
			goto out;
		}
		if (wlift_dtype_bits(o->dtype) > wlift_dtype_bits(from)) {
			uint64_t nb = ti[i].nbytes / (wlift_dtype_bits(from) / 8) *
				      (wlift_dtype_bits(o->dtype) / 8);
			conv_off[i] = conv_bytes + 1; /* +1: 0 means "in place" */
			conv_bytes = (conv_bytes + nb + WLIFT_PLAN_ALIGN - 1) / WLIFT_PLAN_ALIGN *
				     WLIFT_PLAN_ALIGN;
		}
	}

	res = wlift__result_new(ck, n);
	if (!res) {
		ret = wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		struct wlift_tensor *t = &res->t[i];
		res->by_ckpt[sel[i]] = (uint32_t)(i + 1);
		t->res = res;
		t->v.info = ti[i];
		t->v.dtype = ti[i].dtype;
		t->v.nbytes = ti[i].nbytes;
		t->v.device = -1;
		t->v.readonly = 0;
		if (o->dtype != WLIFT_DTYPE_NONE && wlift__dtype_is_float(ti[i].dtype)) {
			t->v.dtype = o->dtype;
			t->v.nbytes = ti[i].nbytes / (wlift_dtype_bits(ti[i].dtype) / 8) *
				      (wlift_dtype_bits(o->dtype) / 8);
		}
		if (ti[i].ndim) {
			t->shape64 = malloc(ti[i].ndim * sizeof(int64_t));
			if (!t->shape64) {
				ret = wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
				goto out;
			}
			for (uint32_t k = 0; k < ti[i].ndim; k++)
				t->shape64[k] = (int64_t)ti[i].shape[k];
		}
	}
	if (conv_bytes) {
		void *cm = wlift__host_arena_alloc((size_t)conv_bytes);
		if (!cm) {
			ret = wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, "sink.alloc",
					      "cannot allocate %llu bytes for converted tensors",
					      (unsigned long long)conv_bytes);
			goto out;
		}
		ret = wlift__result_own(res, cm, (size_t)conv_bytes, 1);
		if (ret) {
			wlift__diag_set(d, ret, NULL, NULL, -1, NULL, NULL);
			goto out;
		}
		for (size_t i = 0; i < n; i++)
			if (conv_off[i])
				res->t[i].v.data = (uint8_t *)cm + conv_off[i] - 1;
	}
	l.res = res;
	l.t = ti;
	l.raw = raw;
	l.ready = ready;
	l.ready_user = ready_user;

	if (o->mmap == WLIFT_MMAP_ON || (o->mmap == WLIFT_MMAP_AUTO && mapped_pays(ck, ti, n))) {
		int anyfile = 0;
		for (size_t i = 0; i < n; i++)
			anyfile |= ck->files[ti[i].file].src->fd >= 0;
		if (anyfile || n == 0) {
			t_plan = wlift__now();
			for (size_t i = 0; i < n; i++)
				if (ck->files[ti[i].file].src->fd < 0) {
					ret = wlift__diag_set(
					    d, WLIFT_EUNSUPPORTED, ck->files[ti[i].file].src->uri,
					    NULL, -1, "load.mmap", "mapped mode needs local files");
					goto out;
				}
			/* Tensors whose data is not converted into a new arena are the mapping. */
			ret = wlift__mapped_load(ck, res, ti, n, threads, raw, tensor_done, &l, d);
			if (ret)
				goto out;
			strategy = "mmap";
			t_read = wlift__now();
			for (size_t f = 0; f < nfiles; f++) {
				ret = wlift__file_check_unchanged(ck->files[f].src, d);
				if (ret)
					goto out;
			}
			goto done_mapped;
		}
	}

	/* Per-file strategy. */
	for (size_t f = 0; f < nfiles; f++) {
		struct wlift__source *src = ck->files[f].src;
		int used = 0, kind, direct = 0;
		uint32_t ma = 0, oa = 0;
		double resident = 1.0;
		uint64_t dsize;

		for (size_t i = 0; i < n && !used; i++)
			used = ti[i].file == f;
		files[f].src = src;
		files[f].fd = src->fd;
		if (!used || src->fd < 0)
			continue;
		all_memory = 0;
		kind = wlift__fs_kind(src->fd);
		dsize = src->size > ck->files[f].info.data_offset
			    ? src->size - ck->files[f].info.data_offset
			    : 0;
		if (kind == WLIFT_FS_NETWORK || kind == WLIFT_FS_FUSE) {
			if (!o->chunk_bytes && chunk < REMOTE_FS_CHUNK)
				chunk = REMOTE_FS_CHUNK;
		}
		if (o->direct != WLIFT_DIRECT_OFF)
			wlift__file_dio_align(src->fd, wlift__uri_local_path(src->uri), &ma, &oa);
		if (o->direct == WLIFT_DIRECT_ON) {
			if (!ma) {
				ret = wlift__diag_set(d, WLIFT_EUNSUPPORTED, src->uri, NULL, -1,
						      "load.direct",
						      "%s: the file system (%s) does not support "
						      "O_DIRECT",
						      src->uri, wlift__fs_kind_name(kind));
				goto out;
			}
			direct = 1;
		} else if (o->direct == WLIFT_DIRECT_AUTO && ma && kind == WLIFT_FS_LOCAL &&
			   dsize >= DIRECT_MIN_BYTES &&
			   dsize / (file_ranges(ti, n, (uint32_t)f) + 1) >= DIRECT_MIN_AVG_RANGE) {
			resident =
			    wlift__file_resident(src->fd, ck->files[f].info.data_offset, dsize);
			direct = resident >= 0 && resident < DIRECT_MAX_RESIDENT;
		}
		if (direct) {
			int dfd = wlift__file_open_direct(wlift__uri_local_path(src->uri));
			if (dfd < 0) {
				if (o->direct == WLIFT_DIRECT_ON) {
					ret = wlift__diag_set(d, dfd, src->uri, NULL, -1,
							      "load.direct",
							      "%s: cannot open with O_DIRECT: %s",
							      src->uri, strerror(-dfd));
					goto out;
				}
				direct = 0;
			} else {
				files[f].dfd = dfd;
				pf[f].dio_align = ma > oa ? ma : oa;
				any_direct = 1;
			}
		}
	}
	if (o->strategy == WLIFT_STRATEGY_URING ||
	    (o->strategy == WLIFT_STRATEGY_AUTO && any_direct))
		use_uring = wlift__uring_available() && !all_memory;

	ret = wlift__plan_build(ti, n, pf, nfiles, chunk, any_direct ? DIRECT_MAX_RANGE : 0, &plan,
				d);
	if (ret)
		goto out;
	{
		/* Pre-faulting the arena (MADV_POPULATE_WRITE from `threads` threads) instead of
		 * faulting it in from the reading workers: measured slower or equal on the
		 * reference machine (see docs/ARCHITECTURE.md), so off unless
		 * WEIGHTLIFT_POPULATE=1. */
		const char *pv;
		int populate = wlift__env_str("WEIGHTLIFT_POPULATE", &pv) && strcmp(pv, "0") != 0;
		ret = wlift__host_sink_create(populate, threads, &sink, d);
	}
	if (ret)
		goto out;
	ret = sink->ops->alloc(sink, plan.arena_bytes, d);
	if (ret)
		goto out;
	{
		void *base;
		size_t len;
		uint8_t *p = sink->ops->ptr(sink, 0);
		for (size_t i = 0; i < n; i++) {
			raw[i] = p + plan.dest[i];
			if (!res->t[i].v.data)
				res->t[i].v.data = raw[i];
		}
		/* The result owns the arena from here on, so any failure frees it. The sink keeps
		 * writing through its pointer until the pipeline returns. */
		wlift__host_sink_take(sink, &base, &len);
		ret = wlift__result_own(res, base, len, 1);
		if (ret) {
			wlift__diag_set(d, ret, NULL, NULL, -1, NULL, NULL);
			goto out;
		}
		/* take() cleared the sink's pointer: re-point it for the pipeline. */
		wlift__host_sink_lend(sink, base, len);
	}
	t_plan = wlift__now();
	{
		struct wlift__pipeline pl = {0};
		unsigned qd = 1;

		if (use_uring) {
			qd = (unsigned)(inflight / chunk / threads);
			if (qd < 1)
				qd = 1;
			if (qd > MAX_QD)
				qd = MAX_QD;
		} else if (threads > inflight / chunk) {
			threads = (unsigned)(inflight / chunk);
			if (!threads)
				threads = 1;
		}
		pl.plan = &plan;
		pl.tensors = ti;
		pl.files = files;
		pl.sink = sink;
		pl.uring = use_uring;
		pl.threads = threads;
		pl.qd = qd;
		pl.tensor_done = tensor_done;
		pl.user = &l;
		pl.progress = o->progress;
		pl.progress_user = o->progress_user;
		ret = wlift__pipeline_run(&pl, d);
		if (ret)
			goto out;
		res->stats.bytes_read = pl.bytes_read;
		res->stats.fixups = pl.fixups;
		res->stats.fixup_bytes = pl.fixup_bytes;
		use_uring = pl.used_uring;
	}
	t_read = wlift__now();
	for (size_t f = 0; f < nfiles; f++) {
		if (!files[f].src || files[f].fd < 0)
			continue;
		ret = wlift__file_check_unchanged(files[f].src, d);
		if (ret)
			goto out;
	}
	strategy = all_memory ? "memory" : use_uring ? "uring" : "pread";
done_mapped:
	res->stats.bytes = 0;
	for (size_t i = 0; i < n; i++)
		res->stats.bytes += ti[i].nbytes;
	if (o->mmap && !res->stats.bytes_read)
		res->stats.bytes_read = res->stats.bytes;
	res->stats.seconds = wlift__now() - t_start;
	res->stats.gb_per_s =
	    res->stats.seconds > 0 ? (double)res->stats.bytes / res->stats.seconds / 1e9 : 0;
	res->stats.open_s = ck->open_s;
	res->stats.plan_s = t_plan - t_start;
	res->stats.read_s = t_read - t_plan;
	res->stats.strategy = strategy;
	res->stats.direct = any_direct;
	res->stats.threads = threads;
	res->stats.chunk_bytes = chunk;
	*out = res;
	res = NULL;
	ret = 0;
out:
	wlift__result_unref(res);
	if (sink)
		sink->ops->destroy(sink);
	wlift__plan_free(&plan);
	if (files)
		for (size_t f = 0; f < nfiles; f++)
			if (files[f].dfd >= 0)
				close(files[f].dfd);
	free(files);
	free(pf);
	free(conv_off);
	free(raw);
	free(ti);
	free(sel);
	return ret;
}
