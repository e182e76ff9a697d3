/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The select and partition stages: which tensors a load reads, and which bytes of each. A
 * partial tensor is a run of leading-dimension rows (what get_slice reads now, and what a
 * tensor-parallel rank will read): its bytes are contiguous in the file, so it is planned like
 * a smaller tensor at a later offset, and its view reports the loaded shape.
 */
#include <errno.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

#include "common/tunables.h"
#include "engine/stages.h"

void wlift__selection_free(struct wlift__selection *s)
{
	if (!s)
		return;
	for (size_t i = 0; s->shape && i < s->n; i++)
		free(s->shape[i]);
	free(s->shape);
	free(s->idx);
	free(s->rows);
	free(s->rows_own);
	free(s->gather);
	free(s->split_dim);
	free(s->ti);
	memset(s, 0, sizeof(*s));
}

struct pick {
	size_t idx;
	size_t name; /* position in opts->names */
};

static int cmp_pick(const void *a, const void *b)
{
	const struct pick *x = a, *y = b;

	if (x->idx != y->idx)
		return x->idx < y->idx ? -1 : 1;
	return x->name < y->name ? -1 : x->name > y->name;
}

int wlift__load_select(const struct wlift_ckpt *ck, const wlift_load_opts *o,
		       struct wlift__selection *s, wlift_diag *d)
{
	size_t n = o->names ? o->nnames : ck->ntensors, k = 0;
	struct pick *p = NULL;
	int ret = 0;

	memset(s, 0, sizeof(*s));
	s->idx = calloc(n ? n : 1, sizeof(*s->idx));
	s->rows = calloc(n ? n : 1, sizeof(*s->rows));
	p = calloc(n ? n : 1, sizeof(*p));
	if (!s->idx || !s->rows || !p) {
		ret = wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
		goto out;
	}
	if (!o->names) {
		for (size_t i = 0; i < n; i++)
			s->idx[i] = i;
		s->n = n;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		int64_t idx = o->names[i] ? wlift_ckpt_find(ck, o->names[i]) : WLIFT_ENOTFOUND;
		if (idx < 0) {
			ret = wlift__diag_set(d, WLIFT_ENOTFOUND, NULL, o->names[i], -1,
					      "load.names", "tensor \"%s\" is not in the checkpoint",
					      o->names[i] ? o->names[i] : "(null)");
			goto out;
		}
		p[i].idx = (size_t)idx;
		p[i].name = i;
	}
	qsort(p, n, sizeof(*p), cmp_pick);
	for (size_t i = 0; i < n; i++) {
		const wlift_rows *r = o->rows ? &o->rows[p[i].name] : NULL;
		if (k && s->idx[k - 1] == p[i].idx) {
			const wlift_rows *q = s->rows[k - 1];
			if (r && (r->begin != q->begin || r->end != q->end)) {
				ret = wlift__diag_set(d, -EINVAL, NULL, o->names[p[i].name], -1,
						      "load.rows",
						      "tensor \"%s\" is named twice with different "
						      "rows",
						      o->names[p[i].name]);
				goto out;
			}
			continue;
		}
		s->idx[k] = p[i].idx;
		s->rows[k] = r;
		k++;
	}
	s->n = k;
out:
	free(p);
	if (ret)
		wlift__selection_free(s);
	return ret;
}

/* The rule for name: one naming it exactly, else the first glob it matches, else NULL. */
static const wlift_shard_rule *shard_rule(const wlift_load_opts *o, const char *name)
{
	for (size_t i = 0; i < o->nshard; i++)
		if (strcmp(o->shard[i].pattern, name) == 0)
			return &o->shard[i];
	for (size_t i = 0; i < o->nshard; i++)
		if (fnmatch(o->shard[i].pattern, name, 0) == 0)
			return &o->shard[i];
	return NULL;
}

/* This rank's block [*b, *e) of n entries: blocks of ceil(n / world). */
static void shard_block(uint64_t n, unsigned rank, unsigned world, uint64_t *b, uint64_t *e)
{
	uint64_t blk = n / world + (n % world != 0);

	*b = (uint64_t)rank * blk < n ? (uint64_t)rank * blk : n;
	*e = n - *b > blk ? *b + blk : n;
}

/* Tensor i's block along dim > 0: the covering range of its rows, gathered after landing. */
static int partition_gather(struct wlift__selection *s, size_t i, const wlift_tensor_info *t,
			    unsigned dim, uint64_t b, uint64_t e, size_t piece_min, wlift_diag *d)
{
	struct wlift__gather *g = &s->gather[i];
	uint64_t outer = 1, inner_bits = wlift_dtype_bits(t->dtype);

	for (unsigned k = 0; k < dim; k++)
		outer *= t->shape[k];
	for (unsigned k = dim + 1; k < t->ndim; k++)
		inner_bits *= t->shape[k];
	/* The header check guarantees shape x bits fits in 64 bits, so these do too. */
	if (inner_bits % 8)
		return wlift__diag_set(d, WLIFT_EUNSUPPORTED, NULL, t->name, -1, "load.shard",
				       "tensor \"%s\" (%s): blocks along dim %u do not start on "
				       "byte boundaries", t->name, wlift_dtype_name(t->dtype), dim);
	s->shape[i] = malloc(t->ndim * sizeof(uint64_t));
	if (!s->shape[i])
		return wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
	memcpy(s->shape[i], t->shape, t->ndim * sizeof(uint64_t));
	s->shape[i][dim] = e - b;
	s->ti[i].shape = s->shape[i];
	g->piece = (e - b) * (inner_bits / 8);
	g->stride = t->shape[dim] * (inner_bits / 8);
	g->outer = outer;
	if (!g->piece || !outer) {
		s->ti[i].nbytes = 0;
		g->outer = 0;
	} else {
		s->ti[i].nbytes = (outer - 1) * g->stride + g->piece;
		if (outer == 1)
			g->outer = 0; /* one piece: contiguous */
		else
			g->split = g->piece >= piece_min;
	}
	s->ti[i].file_offset += b * (inner_bits / 8);
	s->ti[i].data_begin += b * (inner_bits / 8);
	s->ti[i].data_end = s->ti[i].data_begin + s->ti[i].nbytes;
	return 0;
}

int wlift__load_partition(const struct wlift_ckpt *ck, const wlift_load_opts *o,
			  const struct wlift__load_cfg *c, struct wlift__selection *s,
			  wlift_diag *d)
{
	int sharded = c && c->world > 1 && o && o->nshard;

	s->ti = calloc(s->n ? s->n : 1, sizeof(*s->ti));
	s->shape = calloc(s->n ? s->n : 1, sizeof(*s->shape));
	if (sharded) {
		s->rows_own = calloc(s->n ? s->n : 1, sizeof(*s->rows_own));
		s->gather = calloc(s->n ? s->n : 1, sizeof(*s->gather));
	}
	if (sharded)
		s->split_dim = calloc(s->n ? s->n : 1, sizeof(*s->split_dim));
	if (!s->ti || !s->shape || (sharded && (!s->rows_own || !s->gather || !s->split_dim)))
		return wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
	for (size_t i = 0; i < s->n; i++) {
		const wlift_tensor_info *t = &ck->tensors[s->idx[i]];
		/* One rank (world_size 0 or 1) loads every tensor whole, a plain load; its rules
		 * are still checked against the tensors, so a spec that fails on W ranks fails
		 * on one too. */
		const wlift_shard_rule *rule = o && o->nshard ? shard_rule(o, t->name) : NULL;
		const wlift_rows *r = s->rows[i];
		uint64_t row_bits;
		int ret;

		s->ti[i] = *t;
		if (rule && rule->dim >= 0) {
			if (r)
				return wlift__diag_set(d, -EINVAL, NULL, t->name, -1, "load.shard",
						       "tensor \"%s\" has both rows and a shard rule",
						       t->name);
			if ((unsigned)rule->dim >= t->ndim)
				return wlift__diag_set(d, -EINVAL, NULL, t->name, -1, "load.shard",
						       "tensor \"%s\" has %u dimensions: it cannot "
						       "be split along dim %d (rule \"%s\")",
						       t->name, t->ndim, rule->dim, rule->pattern);
		}
		if (sharded && rule && rule->dim >= 0) {
			uint64_t b, e;
			s->split_dim[i] = rule->dim + 1;
			shard_block(t->shape[rule->dim], c->rank, c->world, &b, &e);
			if (rule->dim > 0) {
				ret = partition_gather(s, i, t, (unsigned)rule->dim, b, e,
						       c->shard_piece_min, d);
				if (ret)
					return ret;
				continue;
			}
			s->rows_own[i].begin = b;
			s->rows_own[i].end = e;
			r = s->rows[i] = &s->rows_own[i];
		}
		if (!r)
			continue;
		if (t->ndim == 0)
			return wlift__diag_set(d, -EINVAL, NULL, t->name, -1, "load.rows",
					       "tensor \"%s\" is 0-dimensional: it has no rows",
					       t->name);
		if (r->begin > r->end || r->end > t->shape[0])
			return wlift__diag_set(d, -EINVAL, NULL, t->name, -1, "load.rows",
					       "rows [%llu, %llu) of tensor \"%s\" are outside its "
					       "%llu rows",
					       (unsigned long long)r->begin,
					       (unsigned long long)r->end, t->name,
					       (unsigned long long)t->shape[0]);
		/* The header check guarantees shape x bits fits, so a row's bits do too. */
		row_bits = wlift_dtype_bits(t->dtype);
		for (uint32_t k = 1; k < t->ndim; k++)
			row_bits *= t->shape[k];
		if (row_bits % 8 && !(r->begin == 0 && r->end == t->shape[0]))
			return wlift__diag_set(d, WLIFT_EUNSUPPORTED, NULL, t->name, -1,
					       "load.rows",
					       "rows of tensor \"%s\" (%s) do not start on byte "
					       "boundaries",
					       t->name, wlift_dtype_name(t->dtype));
		s->shape[i] = malloc(t->ndim * sizeof(uint64_t));
		if (!s->shape[i])
			return wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
		memcpy(s->shape[i], t->shape, t->ndim * sizeof(uint64_t));
		s->shape[i][0] = r->end - r->begin;
		if (row_bits % 8 == 0) {
			uint64_t rb = row_bits / 8;
			s->ti[i].file_offset += r->begin * rb;
			s->ti[i].data_begin += r->begin * rb;
			s->ti[i].nbytes = (r->end - r->begin) * rb;
			s->ti[i].data_end = s->ti[i].data_begin + s->ti[i].nbytes;
		}
		s->ti[i].shape = s->shape[i];
	}
	return 0;
}
