/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Result lifetime and lookup. The last reference (the caller's wlift_result_free or the last
 * DLPack deleter, in any order, from any thread) frees the memory and drops the checkpoint.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "engine/result.h"
#include "sink/host.h"

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
	r->n = n;
	r->refs = 1;
	r->ck = wlift__ckpt_ref(ck);
	return r;
}

static void unmap(struct wlift__mapping *m)
{
	if (m->anon)
		wlift__host_arena_free(m->base, m->len);
	else if (m->base)
		munmap(m->base, m->len);
}

int wlift__result_own(struct wlift_result *r, void *base, size_t len, int anon)
{
	struct wlift__mapping m = {base, len, anon};

	if (!base)
		return 0;
	if (r->nmaps < WLIFT_ARRAY_SIZE(r->maps)) {
		r->maps[r->nmaps++] = m;
		return 0;
	}
	{
		struct wlift__mapping *e = realloc(r->extra_maps, (r->nextra + 1) * sizeof(*e));
		if (!e) {
			unmap(&m);
			return -ENOMEM;
		}
		r->extra_maps = e;
		r->extra_maps[r->nextra++] = m;
	}
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
	for (size_t i = 0; i < r->nmaps; i++)
		unmap(&r->maps[i]);
	for (size_t i = 0; i < r->nextra; i++)
		unmap(&r->extra_maps[i]);
	free(r->extra_maps);
	for (size_t i = 0; i < r->n; i++)
		free(r->t[i].shape64);
	free(r->t);
	free(r->by_ckpt);
	wlift__ckpt_unref(r->ck);
	free(r);
}

void wlift_result_free(wlift_result *r)
{
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
