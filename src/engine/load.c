/* SPDX-License-Identifier: Apache-2.0 */
/*
 * wlift_load: the stages in order (see engine/stages.h): resolve options, open the sink for
 * the device, select and partition, lay out dtype conversions and build the result's views,
 * then either map (mapped.c) or probe, plan, allocate through the sink and run the pipeline;
 * finish by validating the sources and filling the statistics. The result owns its memory
 * from the moment it exists, so any failure frees everything.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "engine/exchange.h"
#include "engine/load.h"
#include "engine/mapped.h"
#include "engine/pipeline.h"
#include "source/gds.h"
#include "engine/result.h"
#include "engine/stages.h"
#include "sink/convert_cpu.h"

struct load {
	struct wlift_result *res;
	struct wlift__sink *sink;
	const uint64_t *raw_off;  /* copy mode: sink offset where tensor i's stored bytes land */
	const uint64_t *data_off; /* copy mode: sink offset of its (converted) bytes */
	void **raw;		  /* mapped mode: where tensor i's stored bytes are */
	const struct wlift__gather *gather; /* per tensor, or NULL */
	/* Split gathers: the plan reads each piece as an entry of its own. NULL: plan entry i is
	 * tensor i. */
	const size_t *owner;	  /* plan entry -> tensor */
	const size_t *first;	  /* tensor -> its first plan entry */
	const uint64_t *entry_dest; /* plan entry -> sink offset */
	uint64_t *left;		  /* split gathers: pieces still to land */
	uint8_t *sink_gathers;	  /* per tensor: 1 when the sink gathers it (remap) */
	wlift_ready_fn ready;
	void *ready_user;
	/* The first fix-up or conversion failure's message (the pipeline knows only its code). */
	int have_diag;
	wlift_diag diag;
};

/* Keep the first failure of a sink operation on tensor t, naming it. */
static int op_failed(struct load *l, const struct wlift_tensor *t, int ret, const wlift_diag *e)
{
	if (e->code && !__atomic_exchange_n(&l->have_diag, 1, __ATOMIC_ACQ_REL))
		wlift__diag_set(&l->diag, ret, NULL, t->v.info.name, -1, e->rule[0] ? e->rule : NULL,
				"tensor \"%s\": %s", t->v.info.name, e->message);
	return ret;
}

static size_t nelem(const wlift_tensor_info *t)
{
	return (size_t)(t->nbytes * 8 / wlift_dtype_bits(t->dtype));
}

static int ready(struct load *l, const struct wlift_tensor *t)
{
	if (l->ready && l->ready(t, l->ready_user))
		return WLIFT_ECANCELED;
	return 0;
}

/* Copy mode: tensor i has landed in the sink; convert it there. */
static int copy_done(void *user, size_t i)
{
	struct load *l = user;
	const struct wlift__gather *g;
	struct wlift_tensor *t;

	if (l->owner)
		i = l->owner[i];
	t = &l->res->t[i];
	g = l->gather ? &l->gather[i] : NULL;
	/* A split block lands piece by piece: the last one to land gathers. */
	if (g && g->split && __atomic_sub_fetch(&l->left[i], 1, __ATOMIC_ACQ_REL) != 0)
		return 0;
	/* A block along a later dim: its pieces together, in place (each moves down), unless
	 * the sink delivered them gathered. */
	if (l->sink_gathers && l->sink_gathers[i])
		g = NULL;
	for (uint64_t k = 1; g && k < g->outer; k++) {
		uint64_t from = g->split ? l->entry_dest[l->first[i] + k]
					 : l->raw_off[i] + k * g->stride;
		wlift_diag e;
		int ret;
		wlift_diag_clear(&e);
		ret = l->sink->ops->move(l->sink, l->raw_off[i] + k * g->piece, from, g->piece, &e);
		if (ret)
			return op_failed(l, t, ret, &e);
	}
	if (t->v.dtype != t->v.info.dtype) {
		wlift_diag e;
		int ret;
		wlift_diag_clear(&e);
		ret = l->sink->ops->convert(l->sink, t->v.info.dtype, t->v.dtype, l->raw_off[i],
					    l->data_off[i], nelem(&t->v.info), &e);
		if (ret)
			return op_failed(l, t, ret, &e);
		/* Widened into the conversion area: the stored bytes are dead (host memory stays
		 * at the loaded bytes, not both copies). */
		if (l->data_off[i] != l->raw_off[i] && l->sink->ops->release)
			l->sink->ops->release(l->sink, l->raw_off[i], t->v.info.nbytes);
	}
	return ready(l, t);
}

/* The exchange: tensor i came from the rank that read it (already converted). */
static int xchg_done(void *user, size_t i)
{
	struct load *l = user;

	return ready(l, &l->res->t[i]);
}

/* Mapped mode: the view is the mapping, unless converted into the host arena. */
static int mapped_done(void *user, size_t i)
{
	struct load *l = user;
	struct wlift_tensor *t = &l->res->t[i];

	if (!t->v.data)
		t->v.data = l->raw[i];
	if (t->v.dtype != t->v.info.dtype)
		wlift__convert_cpu(t->v.info.dtype, t->v.dtype, l->raw[i], t->v.data,
				   nelem(&t->v.info));
	return ready(l, t);
}

/* Where each converted tensor goes: in place when the target is not wider, else at
 * conv_off[i] - 1 in an area of *conv_bytes after the stored bytes (0: in place). */
static int layout_conversions(const struct wlift__load_cfg *c, const struct wlift__sink *sink,
			      const wlift_tensor_info *ti, size_t n, uint64_t *conv_off,
			      uint64_t *conv_bytes, wlift_diag *d)
{
	/* Converted tensors start as aligned as the sink's stored ones (256 on a GPU). */
	uint64_t al = sink->dest_align > WLIFT_PLAN_ALIGN ? sink->dest_align : WLIFT_PLAN_ALIGN;

	*conv_bytes = 0;
	for (size_t i = 0; i < n; i++) {
		wlift_dtype from = ti[i].dtype;
		uint64_t nb;

		conv_off[i] = 0;
		if (c->dtype == WLIFT_DTYPE_NONE || !wlift__dtype_is_float(from) || from == c->dtype)
			continue;
		if (!sink->ops->convert)
			return wlift__diag_set(d, WLIFT_EUNSUPPORTED, NULL, ti[i].name, -1,
					       "load.dtype",
					       "%s: converting %s to %s on device \"%s\" is not "
					       "supported by this build (device conversion kernels "
					       "are not built in)",
					       ti[i].name, wlift_dtype_name(from),
					       wlift_dtype_name(c->dtype), c->device);
		if (!wlift__convert_supported(from, c->dtype))
			return wlift__diag_set(d, WLIFT_EUNSUPPORTED, NULL, ti[i].name, -1,
					       "load.dtype",
					       "%s: converting %s to %s is not supported on the CPU",
					       ti[i].name, wlift_dtype_name(from),
					       wlift_dtype_name(c->dtype));
		if (wlift_dtype_bits(c->dtype) <= wlift_dtype_bits(from))
			continue;
		nb = ti[i].nbytes / (wlift_dtype_bits(from) / 8) * (wlift_dtype_bits(c->dtype) / 8);
		conv_off[i] = *conv_bytes + 1;
		*conv_bytes = (*conv_bytes + nb + al - 1) / al * al;
	}
	return 0;
}

/* The result's views (data pointers come later, from the sink or the mappings). The loaded
 * shapes of partial tensors move from the selection into the result. */
static int build_result(struct wlift_ckpt *ck, struct wlift__selection *sel,
			const struct wlift__load_cfg *c, struct wlift_result **out, wlift_diag *d)
{
	struct wlift_result *res = wlift__result_new(ck, sel->n);
	size_t ndims = 0;

	*out = NULL;
	for (size_t i = 0; i < sel->n; i++)
		ndims += sel->ti[i].ndim;
	/* One array for every shape: with millions of tensors a malloc each costs more than
	 * the shapes. */
	if (res)
		res->shape64 = malloc((ndims ? ndims : 1) * sizeof(int64_t));
	if (!res || !res->shape64) {
		wlift__result_unref(res);
		return wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
	}
	ndims = 0;
	for (size_t i = 0; i < sel->n; i++) {
		struct wlift_tensor *t = &res->t[i];
		const wlift_tensor_info *ti = &sel->ti[i];

		res->by_ckpt[sel->idx[i]] = (uint32_t)(i + 1);
		t->res = res;
		t->v.info = *ti;
		t->v.dtype = ti->dtype;
		t->v.nbytes = ti->nbytes;
		t->v.device = -1;
		t->shape = sel->shape[i];
		sel->shape[i] = NULL;
		if (sel->gather && sel->gather[i].outer) {
			t->v.info.nbytes = sel->gather[i].outer * sel->gather[i].piece;
			t->v.nbytes = t->v.info.nbytes;
		}
		if (c->dtype != WLIFT_DTYPE_NONE && wlift__dtype_is_float(ti->dtype)) {
			t->v.dtype = c->dtype;
			t->v.nbytes = t->v.info.nbytes / (wlift_dtype_bits(ti->dtype) / 8) *
				      (wlift_dtype_bits(c->dtype) / 8);
		}
		if (ti->ndim) {
			t->shape64 = res->shape64 + ndims;
			for (uint32_t k = 0; k < ti->ndim; k++)
				t->shape64[k] = (int64_t)ti->shape[k];
			ndims += ti->ndim;
		}
	}
	*out = res;
	return 0;
}

/* Allocate bytes through the sink and give the memory to the result. */
static int sink_memory(struct wlift__sink *sink, struct wlift_result *res, uint64_t bytes,
		       struct wlift__mem *m, wlift_diag *d)
{
	int ret = sink->ops->alloc(sink, bytes, d);

	if (ret)
		return ret;
	ret = sink->ops->export_mem(sink, m, d);
	if (ret)
		return ret;
	ret = wlift__result_own(res, m);
	if (ret)
		return wlift__diag_set(d, ret, NULL, NULL, -1, NULL, NULL);
	return 0;
}

/* The sum of the checkpoint's sources' request counters (retries, hedges) now. */
static void counters(struct wlift_ckpt *ck, struct wlift__source_counters *c)
{
	memset(c, 0, sizeof(*c));
	for (size_t f = 0; f < ck->nfiles; f++) {
		struct wlift__source *s = ck->files[f].src;
		if (s && s->ops->counters)
			s->ops->counters(s, c);
	}
}

static int validate_sources(struct wlift_ckpt *ck, const wlift_tensor_info *ti, size_t n,
			    wlift_diag *d)
{
	for (size_t f = 0; f < ck->nfiles; f++) {
		struct wlift__source *s = ck->files[f].src;
		int used = 0, ret;

		for (size_t i = 0; i < n && !used; i++)
			used = ti[i].file == f;
		if (!used)
			continue;
		ret = s->ops->validate(s, d);
		if (ret)
			return ret;
	}
	return 0;
}

static int want_mapped(struct wlift_ckpt *ck, const struct wlift__load_cfg *c,
		       const struct wlift__sink *sink, const wlift_tensor_info *ti,
		       const struct wlift__gather *gather, size_t n, wlift_diag *d)
{
	int any = 0;

	if (c->mmap == WLIFT_MMAP_OFF || !sink->in_place)
		return 0;
	for (size_t i = 0; gather && i < n; i++)
		if (gather[i].outer) {
			if (c->mmap == WLIFT_MMAP_AUTO)
				return 0; /* a strided block is gathered: copy */
			return wlift__diag_set(d, WLIFT_EUNSUPPORTED, NULL, ti[i].name, -1,
					       "load.mmap",
					       "tensor \"%s\": a block along a dim > 0 is not "
					       "contiguous in the file, so it cannot be a view of "
					       "the mapping (load it in copy mode)", ti[i].name);
		}
	if (c->mmap == WLIFT_MMAP_AUTO)
		return wlift__load_mapped_pays(ck, ti, n);
	/* ON: map when the files can be (memory images are copied: they are memory). */
	for (size_t i = 0; i < n; i++)
		any |= ck->files[ti[i].file].src->ops->map != NULL;
	if (!any && n)
		return 0;
	for (size_t i = 0; i < n; i++) {
		const struct wlift__source *s = ck->files[ti[i].file].src;
		if (!s->ops->map)
			return wlift__diag_set(d, WLIFT_EUNSUPPORTED, s->uri, NULL, -1, "load.mmap",
					       "mapped mode needs local files");
	}
	return 1;
}

/* What the plan reads: the selected tensors, with each split block (struct wlift__gather)
 * expanded into its pieces, still in file order. */
struct entries {
	wlift_tensor_info *ti; /* sel->ti when nothing is split */
	size_t n;
	size_t *owner, *first; /* NULL when nothing is split */
	uint64_t *left;
	uint64_t *raw_off; /* per tensor: where its first entry lands */
};

static int plan_entries(const struct wlift__selection *sel, const uint8_t *skip,
			struct entries *e, wlift_diag *d)
{
	size_t m = 0, j = 0;
	int skipped = 0;

	e->raw_off = calloc(sel->n ? sel->n : 1, sizeof(*e->raw_off));
	if (!e->raw_off)
		return wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
	for (size_t i = 0; i < sel->n; i++) {
		if (skip && skip[i]) {
			skipped = 1; /* read by another rank (the exchange) */
			continue;
		}
		m += sel->gather && sel->gather[i].split ? sel->gather[i].outer : 1;
	}
	e->ti = sel->ti;
	e->n = sel->n;
	if (m == sel->n && !skipped)
		return 0;
	e->ti = calloc(m ? m : 1, sizeof(*e->ti));
	e->owner = calloc(m ? m : 1, sizeof(*e->owner));
	e->first = calloc(sel->n, sizeof(*e->first));
	e->left = calloc(sel->n, sizeof(*e->left));
	if (!e->ti || !e->owner || !e->first || !e->left)
		return wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
	for (size_t i = 0; i < sel->n; i++) {
		const struct wlift__gather *g = sel->gather ? &sel->gather[i] : NULL;
		size_t k = g && g->split ? g->outer : 1;

		e->first[i] = j;
		if (skip && skip[i]) {
			e->first[i] = SIZE_MAX; /* no entry: its bytes come from its owner */
			continue;
		}
		e->left[i] = k;
		for (size_t p = 0; p < k; p++, j++) {
			e->ti[j] = sel->ti[i];
			e->owner[j] = i;
			if (!g || !g->split)
				continue;
			e->ti[j].file_offset += p * g->stride;
			e->ti[j].data_begin += p * g->stride;
			e->ti[j].nbytes = g->piece;
			e->ti[j].data_end = e->ti[j].data_begin + g->piece;
		}
	}
	e->n = m;
	return 0;
}

static void entries_free(struct entries *e, const struct wlift__selection *sel)
{
	if (e->ti != sel->ti)
		free(e->ti);
	free(e->owner);
	free(e->first);
	free(e->left);
	free(e->raw_off);
	memset(e, 0, sizeof(*e));
}

/* Strided blocks that the sink can gather as their bytes land (remap: a GPU's 2D copies from
 * the staging buffer, so nothing moves on the device afterwards). Not where O_DIRECT
 * placement shifts a range (its fix-up moves the whole range once it has landed). A sink
 * that cannot (-ENOTSUP at its first remap) leaves the moves to copy_done. */
static int sink_gathers(struct load *l, const struct wlift__selection *sel,
			const struct entries *pe, const struct wlift__plan *plan,
			struct wlift__sink *sink, wlift_diag *d)
{
	int any = 0, ret;

	if (!sel->gather || !sink->ops->remap)
		return 0;
	for (size_t r = 0; r < plan->nranges; r++)
		if (plan->ranges[r].shift)
			return 0;
	for (size_t i = 0; i < sel->n; i++) {
		const struct wlift__gather *g = &sel->gather[i];
		size_t e = pe->first ? pe->first[i] : i;

		if (g->outer < 2 || e == SIZE_MAX)
			continue;
		if (!l->sink_gathers) {
			l->sink_gathers = calloc(sel->n, 1);
			if (!l->sink_gathers)
				return wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
		}
		if (!g->split) {
			ret = sink->ops->remap(sink, plan->dest[e], sel->ti[i].nbytes, g->outer,
					       g->piece, g->stride, pe->raw_off[i]);
		} else {
			ret = 0;
			for (uint64_t k = 1; k < g->outer && !ret; k++)
				ret = sink->ops->remap(sink, plan->dest[e + k], g->piece, 1, g->piece,
						       g->piece, pe->raw_off[i] + k * g->piece);
		}
		if (ret == -ENOTSUP && !any)
			return 0;
		if (ret)
			return wlift__diag_set(d, ret, NULL, sel->ti[i].name, -1, "load.gather",
					       "tensor \"%s\": internal error: the sink refused to "
					       "gather its block (%s)",
					       sel->ti[i].name, wlift_strerror(ret));
		l->sink_gathers[i] = 1;
		any = 1;
	}
	return 0;
}

int wlift__load(struct wlift_ckpt *ck, const wlift_load_opts *opts, struct wlift__sink *sink,
		wlift_ready_fn ready_fn, void *ready_user, wlift_result **out, wlift_diag *d)
{
	wlift_load_opts defaults = WLIFT_LOAD_OPTS_INIT;
	const wlift_load_opts *o = opts ? opts : &defaults;
	double t_start = wlift__now(), t_plan, t_read;
	struct wlift__load_cfg cfg;
	struct wlift__selection sel = { 0 };
	struct wlift__probed pr = { 0 };
	struct wlift__plan plan = { 0 };
	struct wlift__pipeline pl = { 0 };
	struct wlift__source_counters n0, n1;
	struct iovec staging[WLIFT_MAX_STAGING_REGIONS];
	struct wlift_result *res = NULL;
	struct wlift__source **srcs = NULL;
	uint64_t *conv_off = NULL, *data_off = NULL, conv_bytes = 0;
	void **raw = NULL;
	const char *strategy;
	struct wlift__gds *gds = NULL;
	int gds_sink = 0;
	struct load l = { 0 };
	struct entries pe = { 0 };
	struct wlift__xchg xc = { 0 };
	struct wlift_comm *comm = NULL;
	uint64_t received = 0;
	size_t n, chunk_used = 0;
	int ret, mapped;

	if (out)
		*out = NULL;
	if (!ck || !out) {
		ret = wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "api.args",
				      "wlift_load: ck and out must not be NULL");
		goto out;
	}
	if (o->size >= offsetof(wlift_load_opts, comm) + sizeof(void *) &&
	    o->size <= sizeof(*o))
		comm = o->comm; /* a failure before the exchange resolves still reports to it */
	/* resolve, sink, select, partition, exchange */
	ret = wlift__load_resolve(ck->ctx, o, &cfg, d);
	if (ret)
		goto out;
	if (!sink) {
		struct wlift__sink_cfg sc = { cfg.threads,	   cfg.populate,
					      ck->ctx->cuda_library, cfg.ring_bytes,
					      cfg.ring_slots,	   cfg.max_device_bytes,
					      cfg.device_allocator, ck->ctx->hugepage };
		ret = wlift__sink_open(ck->ctx, cfg.device, &sc, &sink, d);
		if (ret)
			goto out;
	}
	if (sink->ops->device_ptr && !sink->cufile && cfg.gds != WLIFT_GDS_OFF)
		gds_sink = 1; /* a device sink whose sources need no cuFile (the seam tests) */
	if (sink->cufile && cfg.gds == WLIFT_GDS_ON) {
		/* Asked for: load cuFile and start its driver's open now, in the background
		 * (once per process); a library that does not load fails the load here. */
		wlift_diag gd;
		wlift_diag_clear(&gd);
		ret = wlift__gds_get(ck->ctx->cufile_library, &gds, &gd);
		if (ret) {
			ret = wlift__diag_set(d, ret, NULL, NULL, -1, "load.gds",
					      "device \"%s\": GPU Direct Storage (gds on): %s (set "
					      "WEIGHTLIFT_CUFILE_LIBRARY, or gds auto/off)",
					      cfg.device, gd.message);
			goto out;
		}
		sink->gds_dest = 1;
	}
	if (sink->cufile && cfg.gds != WLIFT_GDS_OFF)
		gds_sink = 2;
	ret = wlift__load_select(ck, o, &sel, d);
	if (ret)
		goto out;
	ret = wlift__load_experts(ck, o, &sel, d);
	if (ret)
		goto out;
	ret = wlift__load_partition(ck, o, &cfg, &sel, d);
	if (ret)
		goto out;
	ret = wlift__xchg_begin(&xc, ck, &cfg, &sel, d);
	if (ret)
		goto out;
	n = sel.n;
	conv_off = calloc(n ? n : 1, sizeof(*conv_off));
	data_off = calloc(n ? n : 1, sizeof(*data_off));
	raw = calloc(n ? n : 1, sizeof(*raw));
	srcs = calloc(ck->nfiles ? ck->nfiles : 1, sizeof(*srcs));
	if (!conv_off || !data_off || !raw || !srcs) {
		ret = wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
		goto out;
	}
	ret = layout_conversions(&cfg, sink, sel.ti, n, conv_off, &conv_bytes, d);
	if (ret)
		goto out;
	ret = build_result(ck, &sel, &cfg, &res, d);
	if (ret)
		goto out;
	l.res = res;
	l.sink = sink;
	l.raw = raw;
	l.gather = sel.gather;
	l.ready = ready_fn;
	l.ready_user = ready_user;

	mapped = xc.comm ? 0 : want_mapped(ck, &cfg, sink, sel.ti, sel.gather, n, d);
	if (mapped < 0) {
		ret = mapped;
		goto out;
	}
	if (mapped) {
		/* run (mapped): widening conversions go to a host arena from the sink. */
		t_plan = wlift__now();
		if (conv_bytes) {
			struct wlift__mem m;
			ret = sink_memory(sink, res, conv_bytes, &m, d);
			if (ret)
				goto out;
			for (size_t i = 0; i < n; i++)
				if (conv_off[i])
					res->t[i].v.data = (uint8_t *)m.base + conv_off[i] - 1;
		}
		ret = wlift__mapped_load(ck, res, sel.ti, n, cfg.threads, raw, mapped_done, &l,
					 cfg.progress, cfg.progress_user, d);
		if (ret)
			goto out;
		strategy = "mmap";
	} else {
		/* probe, plan */
		struct wlift__mem m;
		uint64_t conv_base, xfer_base, xfer_bytes;
		size_t chunk;
		unsigned threads = cfg.threads, qd = 1;

		ret = wlift__load_probe(ck, &cfg, sel.ti, n, gds_sink, &pr, d);
		if (ret)
			goto out;
		if (gds_sink == 2 && !gds && pr.gds) {
			/* auto: cuFile only when the probe found a file it may read (cold, read
			 * with O_DIRECT); its driver opens in the background (once per process)
			 * while the first reads go through the ring. No cuFile: the ring. */
			size_t f;
			for (f = 0; f < ck->nfiles && !pr.gds[f]; f++)
				;
			if (f < ck->nfiles && wlift__gds_get(ck->ctx->cufile_library, &gds, NULL))
				gds = NULL;
			if (!gds)
				memset(pr.gds, 0, ck->nfiles ? ck->nfiles : 1);
			sink->gds_dest = gds != NULL;
		}
		if (gds && cfg.gds == WLIFT_GDS_ON) {
			/* Asked for: every read through cuFile, so its driver must be open. */
			int st = wlift__gds_state(gds, 1, d);
			if (st < 0) {
				ret = st;
				goto out;
			}
		}
		chunk = pr.chunk_bytes;
		if (!sink->in_place && chunk > sink->stage_bytes)
			chunk = sink->stage_bytes; /* a chunk is read into one staging buffer */
		ret = plan_entries(&sel, xc.skip, &pe, d);
		if (ret)
			goto out;
		ret = wlift__plan_build_aligned(pe.ti, pe.n, pr.pf, ck->nfiles, chunk,
						pr.any_direct ? WLIFT_DIRECT_MAX_RANGE : 0,
						sink->dest_align, &plan, d);
		if (ret)
			goto out;
		for (size_t i = 0; i < n; i++)
			if (!xc.skip || !xc.skip[i])
				pe.raw_off[i] = plan.dest[pe.first ? pe.first[i] : i];
		/* sink: the stored bytes, then the widened conversions, then (the exchange)
		 * the tensors other ranks read and broadcast, already converted. */
		{
			uint64_t al = (conv_bytes || xc.skip) && sink->dest_align > WLIFT_PLAN_ALIGN
					  ? sink->dest_align
					  : WLIFT_PLAN_ALIGN;
			conv_base = (plan.arena_bytes + al - 1) / al * al;
			xfer_base = (conv_base + conv_bytes + al - 1) / al * al;
			xfer_bytes = 0;
			for (size_t i = 0; xc.skip && i < n; i++) {
				if (!xc.skip[i])
					continue;
				if (conv_off[i]) {
					pe.raw_off[i] = conv_base + conv_off[i] - 1;
					continue;
				}
				pe.raw_off[i] = xfer_base + xfer_bytes;
				xfer_bytes += (sel.ti[i].nbytes + al - 1) / al * al;
			}
		}
		/* Remote sources leave a core idle while the network fills the tensors: the host
		 * sink faults the memory in ahead of them (unless WEIGHTLIFT_POPULATE says). */
		sink->fault_ahead = pr.requests > 0;
		ret = sink_memory(sink, res, xfer_bytes ? xfer_base + xfer_bytes
						        : conv_base + conv_bytes, &m, d);
		if (ret)
			goto out;
		for (size_t i = 0; i < n; i++) {
			data_off[i] = conv_off[i] ? conv_base + conv_off[i] - 1 : pe.raw_off[i];
			res->t[i].v.data = (uint8_t *)m.base + data_off[i];
			res->t[i].v.device = m.device;
		}
		chunk_used = chunk;
		l.raw_off = pe.raw_off;
		l.data_off = data_off;
		l.owner = pe.owner;
		l.first = pe.first;
		l.entry_dest = plan.dest;
		l.left = pe.left;
		ret = sink_gathers(&l, &sel, &pe, &plan, sink, d);
		if (ret)
			goto out;
		t_plan = wlift__now();
		/* run */
		/* Bytes in flight stay under max_inflight_bytes: threads x qd x chunk. */
		if (threads > cfg.max_inflight_bytes / chunk) {
			threads = (unsigned)(cfg.max_inflight_bytes / chunk);
			if (!threads)
				threads = 1;
		}
		if (pr.queue_flags & WLIFT__RQ_URING) {
			size_t q = cfg.max_inflight_bytes / chunk / threads;
			qd = q < 1 ? 1 : q > WLIFT_MAX_QD ? WLIFT_MAX_QD : (unsigned)q;
		}
		if (pr.requests) {
			/* Remote sources: the requests in flight spread over the workers (each
			 * drives its own transfers), within the bytes-in-flight cap. */
			size_t cap, q;
			if (threads > pr.requests)
				threads = pr.requests;
			cap = cfg.max_inflight_bytes / chunk / threads;
			q = (pr.requests + threads - 1) / threads;
			if (q > cap)
				q = cap;
			qd = q < 1 ? 1 : q > WLIFT_MAX_QD ? WLIFT_MAX_QD : (unsigned)q;
		}
		for (size_t f = 0; f < ck->nfiles; f++)
			srcs[f] = ck->files[f].src;
		pl.plan = &plan;
		pl.tensors = pe.ti;
		pl.srcs = srcs;
		pl.sink = sink;
		pl.queue_flags = pr.queue_flags;
		pl.threads = threads;
		pl.qd = qd;
		pl.numa = sink->numa; /* a GPU's node: its readers run there */
		if (ck->ctx->uring_fixed && sink->ops->staging &&
		    (pr.queue_flags & WLIFT__RQ_URING)) {
			pl.nstaging = sink->ops->staging(sink, staging, WLIFT_MAX_STAGING_REGIONS);
			pl.staging = staging;
		}
		pl.tensor_done = copy_done;
		pl.user = &l;
		pl.progress = cfg.progress;
		pl.progress_user = cfg.progress_user;
		pl.gds = gds;
		pl.gds_file = gds_sink ? pr.gds : NULL;
		pl.gds_required = cfg.gds == WLIFT_GDS_ON;
		pl.gds_batch = ck->ctx->gds_batch;
		counters(ck, &n0);
		ret = wlift__pipeline_run(&pl, d);
		if (ret && l.have_diag && d && d->code == l.diag.code)
			*d = l.diag; /* the sink's own account of the failure */
		if (ret)
			goto out;
		counters(ck, &n1);
		res->stats.retries = n1.retries - n0.retries;
		res->stats.hedges = n1.hedges - n0.hedges;
		res->stats.hedges_won = n1.hedges_won - n0.hedges_won;
		res->stats.bytes_rerequested = n1.bytes_rerequested - n0.bytes_rerequested;
		res->stats.bytes_read = pl.bytes_read;
		res->stats.fixups = pl.fixups;
		res->stats.fixup_bytes = pl.fixup_bytes;
		res->stats.fixed_reads = pl.fixed_reads;
		if (pl.fixed_err)
			wlift__log(ck->ctx, WLIFT_LOG_DEBUG,
				   "io_uring fixed buffers refused (%s): reads into the ring were "
				   "plain reads",
				   strerror(-pl.fixed_err));
		res->stats.threads = threads;
		res->stats.gds_bytes = pl.gds_bytes;
		res->stats.gds_fallbacks = pl.gds_fallbacks;
		res->stats.gds = wlift__gds_mode_name(pl.gds_mode);
		strategy = pl.strategy ? pl.strategy : pr.all_memory ? "memory" : "pread";
	}
	t_read = wlift__now();
	/* finish */
	ret = validate_sources(ck, sel.ti, n, d);
	if (ret)
		goto out;
	if (xc.comm) {
		/* exchange: every rank's report, then the tensors read elsewhere (the sink's
		 * background work stopped first: nothing else writes the memory) */
		if (sink->ops->quiesce)
			sink->ops->quiesce(sink);
		ret = wlift__xchg_run(&xc, ck, &sel, res, xchg_done, &l, &res->stats.bytes_read,
				      &received, d);
		if (ret)
			goto out;
		res->stats.bytes_received = received;
	}
	res->stats.bytes = 0;
	for (size_t i = 0; i < n; i++)
		res->stats.bytes += res->t[i].v.info.nbytes;
	if (mapped)
		res->stats.bytes_read = res->stats.bytes;
	res->stats.seconds = wlift__now() - t_start;
	res->stats.gb_per_s =
	    res->stats.seconds > 0 ? (double)res->stats.bytes / res->stats.seconds / 1e9 : 0;
	res->stats.open_s = ck->open_s;
	res->stats.plan_s = t_plan - t_start;
	res->stats.read_s = t_read - t_plan;
	res->stats.strategy = strategy;
	res->stats.direct = pr.any_direct;
	if (!res->stats.gds)
		res->stats.gds = "off";
	if (!res->stats.threads)
		res->stats.threads = cfg.threads;
	res->stats.chunk_bytes = chunk_used ? chunk_used : cfg.chunk_bytes;
	wlift__result_index_memory(res);
	*out = res;
	res = NULL;
	ret = 0;
out:
	if (ret)
		wlift__xchg_fail(&xc, comm, ret, d);
	wlift__xchg_free(&xc);
	if (sink && sink->ops->quiesce)
		sink->ops->quiesce(sink); /* nothing of the sink's touches the memory after this */
	wlift__result_unref(res);
	if (sink)
		sink->ops->destroy(sink);
	wlift__plan_free(&plan);
	entries_free(&pe, &sel);
	wlift__probed_free(&pr);
	wlift__selection_free(&sel);
	free(srcs);
	free(raw);
	free(data_off);
	free(conv_off);
	free(l.sink_gathers);
	return ret;
}

int wlift_load(wlift_ckpt *ck, const wlift_load_opts *opts, wlift_ready_fn ready_fn,
	       void *ready_user, wlift_result **out, wlift_diag *d)
{
	return wlift__load(ck, opts, NULL, ready_fn, ready_user, out, d);
}
