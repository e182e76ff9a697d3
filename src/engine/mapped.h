/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Mapped mode: tensors are views of a private, writable (copy-on-write) mapping of each file.
 */
#ifndef WLIFT_MAPPED_H
#define WLIFT_MAPPED_H

#include "engine/result.h"

/* Map every file holding one of the n selected tensors t[] (result positions 0..n-1, in file
 * order), record the mappings in res, set raw[i] to tensor i's bytes and populate the pages of
 * the selected tensors for reading with `threads` threads, calling done(user, i) on the
 * calling thread for each tensor, in order, as soon as its pages are in (non-zero cancels).
 * progress (may be NULL) is called on the calling thread at least every WLIFT_PROGRESS_MS
 * while pages are populated, and once at the end; non-zero cancels (WLIFT_ECANCELED).
 * Returns 0 or the first error. */
int wlift__mapped_load(struct wlift_ckpt *ck, struct wlift_result *res, const wlift_tensor_info *t,
		       size_t n, unsigned threads, void **raw, int (*done)(void *user, size_t i),
		       void *user, wlift_progress_fn progress, void *progress_user,
		       wlift_diag *d);

#endif
