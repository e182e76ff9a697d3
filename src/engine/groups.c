/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Loading in budget-sized groups (wlift_budget_groups, wlift_load_groups): the selected
 * tensors, in order, cut into consecutive groups whose device memory fits a budget, loaded
 * one group after another, so that a consumer that moves or drops each group's tensors needs
 * no more device memory than the budget at once. A tensor's device memory is estimated as
 * the load lays it out: its bytes rounded up to the 256-byte device alignment, plus the
 * conversion area when dtype widens it. The load itself checks the exact figure (its plan's
 * arena, O_DIRECT block rounding included) against the same budget before it allocates or
 * reads anything. Loads that may read with O_DIRECT keep a margin of one range's block
 * rounding; a group refused all the same is made smaller and retried, so the estimate never
 * makes a load fail that smaller groups would let through.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/ckpt.h"
#include "sink/convert_cpu.h"

#define GROUP_ALIGN 256u /* the device alignment of every tensor (src/sink/cuda.c) */
/* What one range's O_DIRECT reads add at most with 4 KiB blocks: rounded down to a block at
 * the start, up at the end, and the range placed block-aligned. */
#define DIRECT_MARGIN (3u * 4096u)

static uint64_t up(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}

/* The device bytes tensor t takes in a load converting to dtype. */
static uint64_t need(const wlift_tensor_info *t, wlift_dtype dtype)
{
	uint64_t n = up(t->nbytes ? t->nbytes : 1, GROUP_ALIGN);
	unsigned fb = wlift_dtype_bits(t->dtype), tb = dtype ? wlift_dtype_bits(dtype) : 0;

	if (dtype != WLIFT_DTYPE_NONE && dtype != t->dtype && wlift__dtype_is_float(t->dtype) &&
	    fb >= 8 && tb > fb)
		n += up(t->nbytes / (fb / 8) * (tb / 8), GROUP_ALIGN);
	return n;
}

/* The selection: opts->names resolved to indices, in the order given (each once), or every
 * tensor in file order. */
static int select_idx(const struct wlift_ckpt *ck, const wlift_load_opts *o, size_t **idx,
		      size_t *n, wlift_diag *d)
{
	size_t m = o->names ? o->nnames : ck->ntensors, k = 0;
	size_t *v = malloc((m ? m : 1) * sizeof(*v));

	*idx = NULL;
	*n = 0;
	if (!v)
		return wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
	for (size_t i = 0; i < m; i++) {
		int64_t t = o->names ? wlift_ckpt_find(ck, o->names[i]) : (int64_t)i;
		int dup = 0;

		if (t < 0) {
			free(v);
			return wlift__diag_set(d, WLIFT_ENOTFOUND, NULL, o->names[i], -1,
					       "load.names", "%s: no such tensor", o->names[i]);
		}
		for (size_t j = 0; o->names && j < k && !dup; j++)
			dup = v[j] == (size_t)t;
		if (!dup)
			v[k++] = (size_t)t;
	}
	*idx = v;
	*n = k;
	return 0;
}

static uint64_t budget_of(const struct wlift_ckpt *ck, const wlift_load_opts *o, uint64_t b)
{
	if (!b && o->size >= offsetof(wlift_load_opts, max_device_bytes) + sizeof(uint64_t))
		b = o->max_device_bytes;
	return b ? b : ck->ctx->max_device_bytes;
}

/* One past the last of the group that starts at from; a tensor alone over the budget is
 * WLIFT_EDEVMEM naming it. */
static int group_end(const struct wlift_ckpt *ck, const size_t *idx, size_t n, size_t from,
		     wlift_dtype dtype, uint64_t budget, size_t *end, wlift_diag *d)
{
	uint64_t used = 0;
	size_t i = from;

	for (; i < n; i++) {
		const wlift_tensor_info *t = &ck->tensors[idx[i]];
		uint64_t b = need(t, dtype);

		if (b > budget)
			return wlift__diag_set(d, WLIFT_EDEVMEM, NULL, t->name, -1, "load.budget",
					       "%s: needs %llu bytes of device memory, more than "
					       "max_device_bytes = %llu",
					       t->name, (unsigned long long)b,
					       (unsigned long long)budget);
		if (used + b > budget)
			break;
		used += b;
	}
	*end = i;
	return 0;
}

static int check_args(const struct wlift_ckpt *ck, const wlift_load_opts *o, uint64_t budget,
		      wlift_diag *d)
{
	if (!ck || !o || o->size < offsetof(wlift_load_opts, dtype) + sizeof(o->dtype))
		return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "load.args",
				       "budget groups: a checkpoint and load options are required");
	if (!budget)
		return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "load.budget",
				       "budget groups: no budget (the argument, "
				       "max_device_bytes and WEIGHTLIFT_MAX_DEVICE_BYTES are 0)");
	return 0;
}

int wlift_budget_groups(wlift_ckpt *ck, const wlift_load_opts *opts, uint64_t budget,
			size_t *ends, size_t max, wlift_diag *d)
{
	size_t *idx = NULL, n = 0, at = 0, g = 0;
	int ret;

	if (ck && opts)
		budget = budget_of(ck, opts, budget);
	ret = check_args(ck, opts, budget, d);
	if (ret)
		return ret;
	ret = select_idx(ck, opts, &idx, &n, d);
	while (!ret && at < n) {
		size_t e;
		ret = group_end(ck, idx, n, at, opts->dtype, budget, &e, d);
		if (ret)
			break;
		if (g < max)
			ends[g] = e;
		g++;
		at = e;
	}
	free(idx);
	if (ret)
		return ret;
	return g > (size_t)INT32_MAX ? -EOVERFLOW : (int)g;
}

int wlift_load_groups(wlift_ckpt *ck, const wlift_load_opts *opts, uint64_t budget,
		      wlift_ready_fn ready, void *ready_user, wlift_group_fn group,
		      void *group_user, wlift_diag *d)
{
	wlift_load_opts lo;
	wlift_diag ld;
	const char **names = NULL;
	size_t *idx = NULL, n = 0, at = 0, groups = 0;
	uint64_t margin = 0;
	int ret;

	if (ck && opts)
		budget = budget_of(ck, opts, budget);
	ret = check_args(ck, opts, budget, d);
	if (ret)
		return ret;
	if (opts->rows)
		return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "load.budget",
				       "budget groups: not with rows (partial tensors)");
	ret = select_idx(ck, opts, &idx, &n, d);
	if (ret)
		return ret;
	names = malloc((n ? n : 1) * sizeof(*names));
	if (!names) {
		ret = wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		names[i] = ck->tensors[idx[i]].name;
	memset(&lo, 0, sizeof(lo));
	memcpy(&lo, opts, opts->size < sizeof(lo) ? opts->size : sizeof(lo));
	lo.size = sizeof(lo);
	lo.max_device_bytes = budget;
	if (lo.direct != WLIFT_DIRECT_OFF && budget >= 16 * DIRECT_MARGIN)
		margin = DIRECT_MARGIN;
	while (at < n) {
		wlift_result *r = NULL;
		size_t e;

		ret = group_end(ck, idx, n, at, opts->dtype, budget, &e, d);
		if (ret)
			goto out;
		if (margin && e - at > 1) {
			/* Room for one range's O_DIRECT rounding (down to a block at its start,
			 * up at its end, the start block-aligned): without it, a group that
			 * fills the budget exactly would be refused. */
			size_t e2;
			if (group_end(ck, idx, n, at, opts->dtype, budget - margin, &e2, NULL) == 0 &&
			    e2 > at)
				e = e2;
		}
		for (;;) {
			wlift_diag_clear(&ld);
			lo.names = names + at;
			lo.nnames = e - at;
			ret = wlift_load(ck, &lo, ready, ready_user, &r, &ld);
			/* Refused by the exact check before anything was read (the estimate
			 * missed more O_DIRECT block rounding than the margin): a smaller group,
			 * again (an eighth fewer tensors, at least one). */
			if (ret == WLIFT_EDEVMEM && e - at > 1 && strcmp(ld.rule, "cuda.budget") == 0) {
				size_t cut = (e - at) / 8;
				e -= cut ? cut : 1;
				continue;
			}
			break;
		}
		if (ret) {
			if (d)
				*d = ld;
			goto out;
		}
		if (group) {
			int stop = group(r, groups, group_user); /* r is the callback's now */
			if (stop) {
				ret = wlift__diag_set(d, WLIFT_ECANCELED, NULL, NULL, -1,
						      "load.cancel",
						      "the group callback stopped the load after "
						      "group %zu",
						      groups);
				goto out;
			}
		} else {
			wlift_result_free(r);
		}
		groups++;
		at = e;
	}
	ret = groups > (size_t)INT32_MAX ? -EOVERFLOW : (int)groups;
out:
	free(names);
	free(idx);
	return ret;
}
