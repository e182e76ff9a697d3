/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Result lifetime and lookup. The last reference (the caller's wlift_result_free or the last
 * DLPack deleter, in any order, from any thread) frees the memory and drops the checkpoint.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/result.h"

struct wlift_result *wlift__result_new(struct wlift_ckpt *ck, size_t n)
{
	struct wlift_result *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->t = calloc(n ? n : 1, sizeof(*r->t));
	r->by_ckpt = calloc(ck->ntensors ? ck->ntensors : 1, sizeof(*r->by_ckpt));
	if (!r->t || !r->by_ckpt) {
		free(r->t);
		free(r->by_ckpt);
		free(r);
		return NULL;
	}
	/* The caller's reference on each tensor exists from the start: exports taken in the
	 * ready callback, while the load still runs, count on top of it. */
	for (size_t i = 0; i < n; i++) {
		r->t[i].refs = 1;
		r->t[i].mem = -1;
	}
	r->n = n;
	r->refs = 1;
	r->ck = wlift__ckpt_ref(ck);
	return r;
}

int wlift__result_own(struct wlift_result *r, const struct wlift__mem *m)
{
	if (r->nmem == r->capmem) {
		size_t nc = r->capmem ? 2 * r->capmem : 4;
		struct wlift__mem *e = realloc(r->mem, nc * sizeof(*e));
		if (!e) {
			struct wlift__mem tmp = *m;
			wlift__mem_free(&tmp);
			return -ENOMEM;
		}
		r->mem = e;
		r->capmem = nc;
	}
	r->mem[r->nmem++] = *m;
	return 0;
}

struct wlift_result *wlift__result_ref(struct wlift_result *r)
{
	if (r)
		__atomic_add_fetch(&r->refs, 1, __ATOMIC_RELAXED);
	return r;
}

void wlift__result_unref(struct wlift_result *r)
{
	if (!r || __atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	for (size_t i = 0; i < r->nmem; i++)
		wlift__mem_free(&r->mem[i]);
	free(r->mem);
	for (size_t i = 0; i < r->n; i++)
		free(r->t[i].shape);
	free(r->shape64);
	free(r->t);
	free(r->by_ckpt);
	wlift__ckpt_unref(r->ck);
	free(r);
}

void wlift__result_index_memory(struct wlift_result *r)
{
	for (size_t i = 0; i < r->n; i++) {
		struct wlift_tensor *t = &r->t[i];
		uintptr_t p = (uintptr_t)t->v.data;

		t->mem = -1;
		for (size_t k = 0; k < r->nmem && t->v.nbytes; k++) {
			uintptr_t b = (uintptr_t)r->mem[k].base;
			if (p >= b && p - b <= r->mem[k].len && t->v.nbytes <= r->mem[k].len - (p - b)) {
				t->mem = (int)k;
				t->mem_off = p - b;
				if (r->mem[k].hold)
					r->mem[k].hold(&r->mem[k], t->mem_off, t->v.nbytes);
				break;
			}
		}
	}
}

struct wlift_tensor *wlift__tensor_ref(struct wlift_tensor *t)
{
	if (t)
		__atomic_add_fetch(&t->refs, 1, __ATOMIC_RELAXED);
	return t;
}

void wlift__tensor_unref(struct wlift_tensor *t)
{
	struct wlift__mem *m;

	if (!t || __atomic_sub_fetch(&t->refs, 1, __ATOMIC_ACQ_REL) != 0 || t->mem < 0)
		return;
	/* Nobody holds the tensor any more: its pages can go (the result's other tensors
	 * keep theirs; pages shared with a neighbour stay). */
	m = &t->res->mem[t->mem];
	if (m->release)
		m->release(m, t->mem_off, t->v.nbytes);
}

void wlift_result_free(wlift_result *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n; i++)
		wlift__tensor_unref(&r->t[i]);
	wlift__result_unref(r);
}

size_t wlift_result_count(const wlift_result *r)
{
	return r ? r->n : 0;
}

const wlift_tensor *wlift_result_tensor(const wlift_result *r, size_t i)
{
	return r && i < r->n ? &r->t[i] : NULL;
}

const wlift_tensor *wlift_result_find(const wlift_result *r, const char *name)
{
	int64_t i;

	if (!r || !name)
		return NULL;
	i = wlift_ckpt_find(r->ck, name);
	if (i < 0 || (size_t)i >= r->ck->ntensors || !r->by_ckpt[i])
		return NULL;
	return &r->t[r->by_ckpt[i] - 1];
}

int wlift_result_stats(const wlift_result *r, wlift_stats *s)
{
	if (!r || !s)
		return -EINVAL;
	*s = r->stats;
	return 0;
}

void wlift_tensor_get(const wlift_tensor *t, wlift_tensor_view *v)
{
	if (!v)
		return;
	if (!t) {
		memset(v, 0, sizeof(*v));
		return;
	}
	*v = t->v;
}
