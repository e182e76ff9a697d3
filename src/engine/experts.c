/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The expert-parallel filter of the select stage: in a mixture-of-experts checkpoint each
 * rank loads only the routed experts it owns (wlift_load_opts.experts) plus every tensor that
 * is not a routed expert's, so the bytes a rank reads follow the expert placement. It runs
 * on the selection before partition, so it composes with names and shard rules.
 */
#include <errno.h>
#include <string.h>

#include "engine/stages.h"

#define DEFAULT_MARKER "experts."

/* 1 and *e when name holds marker (at its start or after a '.') followed by a decimal
 * number and a '.', else 0. The first such occurrence counts. */
static int expert_of(const char *name, const char *marker, uint64_t *e)
{
	size_t ml = strlen(marker);

	for (const char *p = name; (p = strstr(p, marker)) != NULL; p++) {
		const char *q = p + ml;
		uint64_t v = 0;

		if (p != name && p[-1] != '.')
			continue;
		if (*q < '0' || *q > '9')
			continue;
		while (*q >= '0' && *q <= '9' && v <= UINT32_MAX)
			v = v * 10 + (uint64_t)(*q++ - '0');
		if (*q != '.' || v > UINT32_MAX)
			continue;
		*e = v;
		return 1;
	}
	return 0;
}

/* fastsafetensors' owned_expert_range: base = n / size each, the remainder one each to the
 * lowest ranks. */
static int owns_block(uint64_t e, uint64_t n, unsigned rank, unsigned size)
{
	uint64_t base = n / size, rem = n % size;
	uint64_t lo = rank * base + (rank < rem ? rank : rem);
	uint64_t hi = lo + base + (rank < rem);

	return e >= lo && e < hi;
}

int wlift__load_experts(const struct wlift_ckpt *ck, const wlift_load_opts *o,
			struct wlift__selection *s, wlift_diag *d)
{
	const wlift_expert_filter *f =
	    o->size >= offsetof(wlift_load_opts, experts) + sizeof(o->experts) ? o->experts : NULL;
	const char *marker;
	unsigned rank, size;
	uint64_t n;
	size_t k = 0;

	if (!f)
		return 0;
	marker = f->marker ? f->marker : DEFAULT_MARKER;
	if (!*marker)
		return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "load.experts",
				       "wlift_expert_filter.marker is empty");
	if (f->ep_size < 0 || f->ep_size > WLIFT_MAX_WORLD ||
	    (f->ep_size > 0 && (f->ep_rank < 0 || f->ep_rank >= f->ep_size)) ||
	    (f->ep_size == 0 && f->ep_rank != 0))
		return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "load.experts",
				       "wlift_expert_filter: ep_rank %d of ep_size %d is out of "
				       "range (0 <= ep_rank < ep_size <= 65536)",
				       f->ep_rank, f->ep_size);
	if (f->placement != WLIFT_EXPERTS_BLOCK && f->placement != WLIFT_EXPERTS_ROUND_ROBIN)
		return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "load.experts",
				       "wlift_expert_filter.placement = %d is not an enum "
				       "wlift_expert_placement", f->placement);
	size = f->ep_size ? (unsigned)f->ep_size : o->world_size > 1 ? (unsigned)o->world_size : 1;
	rank = f->ep_size ? (unsigned)f->ep_rank : o->world_size > 1 ? (unsigned)o->rank : 0;
	n = f->nexperts;
	if (!n) {
		for (size_t i = 0; i < ck->ntensors; i++) {
			uint64_t e;
			if (expert_of(ck->tensors[i].name, marker, &e) && e + 1 > n)
				n = e + 1;
		}
	}
	for (size_t i = 0; i < s->n; i++) {
		const char *name = ck->tensors[s->idx[i]].name;
		uint64_t e;
		int keep = 1;

		if (expert_of(name, marker, &e)) {
			if (e >= n)
				return wlift__diag_set(d, -EINVAL, NULL, name, -1, "load.experts",
						       "tensor \"%s\" is expert %llu, but the "
						       "filter has %llu experts",
						       name, (unsigned long long)e,
						       (unsigned long long)n);
			if (f->owns) {
				keep = f->owns((unsigned)e, f->owns_user);
				if (keep < 0)
					return wlift__diag_set(d, WLIFT_ECANCELED, NULL, name, -1,
							       "load.experts",
							       "the experts owns callback failed "
							       "(%d) for tensor \"%s\" (expert %llu)",
							       keep, name, (unsigned long long)e);
			} else if (f->placement == WLIFT_EXPERTS_ROUND_ROBIN) {
				keep = e % size == rank;
			} else {
				keep = owns_block(e, n, rank, size);
			}
		}
		if (!keep)
			continue;
		s->idx[k] = s->idx[i];
		s->rows[k] = s->rows[i];
		k++;
	}
	s->n = k;
	return 0;
}
