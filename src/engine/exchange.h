/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The exchange stage of a load with a communicator (wlift_load_opts.comm): who reads each
 * selected tensor, the ranks' agreement before any read and their reports after it, and the
 * broadcasts that give every rank the tensors another rank read. wlift__load (load.c) calls
 * these around its pipeline; the tensors read elsewhere are left out of its plan.
 */
#ifndef WLIFT_ENGINE_EXCHANGE_H
#define WLIFT_ENGINE_EXCHANGE_H

#include "engine/result.h"
#include "engine/stages.h"

struct wlift__xchg {
	struct wlift_comm *comm; /* NULL: no exchange (or one rank) */
	int rank, world;
	size_t n;	/* selected tensors */
	int *owner;	/* per selected tensor: the rank that reads it, -1: each rank its block */
	uint8_t *skip;	/* per selected tensor: 1 when the plan does not read it here */
	uint8_t *whole;	/* per selected tensor: 1 when its owner reads it whole and every rank
			   gathers its block from the broadcast (host blocks along dim > 0 with
			   pieces under the piece threshold, which each rank would otherwise
			   read as the covering range) */
	void **buf;	/* the owner's whole copies, read before the report round */
	int agreed;	/* the agreement round has run */
	int reported;	/* the report round after the reads has run */
};

/* Owners (contiguous runs of the whole tensors in file order, balanced by bytes), the
 * checks (host buffers for MPI, device buffers for NCCL), then the agreement round: every
 * rank's digest of its files, selection, rules and dtype, or its error. 0 or a negative
 * code (every rank fails alike). c->comm NULL or one rank: nothing to do. */
int wlift__xchg_begin(struct wlift__xchg *x, const struct wlift_ckpt *ck,
		      const struct wlift__load_cfg *c, const struct wlift__selection *sel,
		      wlift_diag *d);
/* A rank that failed before or after its reads still takes part in the round it owes
 * (comm from the options: the load may have failed before resolving them), so that the
 * others fail at once with its error rather than at the timeout. Returns ret. */
int wlift__xchg_fail(struct wlift__xchg *x, struct wlift_comm *comm, int ret, wlift_diag *d);
/* After this rank's reads: its whole tensors read (their bytes added to *read), the report
 * round, then the broadcasts, each tensor from its owner into every other rank's view (or,
 * for a whole one, into a buffer each rank gathers its block from); done(i) for each
 * tensor received. 0 or a negative code; *received counts the bytes received. */
int wlift__xchg_run(struct wlift__xchg *x, const struct wlift_ckpt *ck,
		    const struct wlift__selection *sel, struct wlift_result *res,
		    int (*done)(void *user, size_t i), void *user, uint64_t *read,
		    uint64_t *received, wlift_diag *d);
void wlift__xchg_free(struct wlift__xchg *x);

#endif
