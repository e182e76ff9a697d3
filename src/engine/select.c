/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The select and partition stages: which tensors a load reads, and which bytes of each. A
 * partial tensor is a run of leading-dimension rows (what get_slice reads now, and what a
 * tensor-parallel rank will read): its bytes are contiguous in the file, so it is planned like
 * a smaller tensor at a later offset, and its view reports the loaded shape.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

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

int wlift__load_partition(const struct wlift_ckpt *ck, struct wlift__selection *s,
			  wlift_diag *d)
{
	s->ti = calloc(s->n ? s->n : 1, sizeof(*s->ti));
	s->shape = calloc(s->n ? s->n : 1, sizeof(*s->shape));
	if (!s->ti || !s->shape)
		return wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
	for (size_t i = 0; i < s->n; i++) {
		const wlift_tensor_info *t = &ck->tensors[s->idx[i]];
		const wlift_rows *r = s->rows[i];
		uint64_t row_bits;

		s->ti[i] = *t;
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
