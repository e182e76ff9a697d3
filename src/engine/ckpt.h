/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The opened checkpoint: its files (each with an open source and parsed header) and the
 * tensor table in file order with an O(1) name index. Immutable after wlift_open.
 * Reference counted: results loaded from a checkpoint keep it (and so its names, shapes and
 * sources) alive after the caller's wlift_ckpt_close.
 */
#ifndef WLIFT_CKPT_H
#define WLIFT_CKPT_H

#include "common/common.h"
#include "format/header.h"
#include "source/source.h"

struct wlift__ckpt_file {
	wlift_file_info info;          /* info.uri owned */
	struct wlift__source *src;     /* open for the checkpoint's lifetime */
	struct wlift__header hdr;      /* parsed header: owns names, shapes and metadata
					  (hdr.nmeta -1: the header has no __metadata__) */
};

struct wlift_ckpt {
	wlift_ctx *ctx;                /* never NULL (the default context for a NULL ctx) */
	int refs;                      /* atomic; 1 for the caller + 1 per live result */
	size_t nfiles;
	struct wlift__ckpt_file *files;
	size_t ntensors;
	wlift_tensor_info *tensors;    /* file order: file index, then data_begin */
	uint32_t *slots;               /* open-addressing name index: tensor index + 1, 0 empty */
	size_t nslots;                 /* power of two, >= 2 * ntensors */
	double open_s;
};

/* A checkpoint of already open sources (one file each, in this order): reads and validates
 * their headers. Takes a reference on each source. Tests use it to load through sources of
 * their own; wlift_open and wlift_open_memory end here too. */
int wlift__ckpt_open_sources(wlift_ctx *ctx, struct wlift__source *const *srcs, size_t n,
			     struct wlift_ckpt **out, wlift_diag *d);

struct wlift_ckpt *wlift__ckpt_ref(struct wlift_ckpt *ck);
void wlift__ckpt_unref(struct wlift_ckpt *ck);

#endif
