/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The engine proper: run a plan's chunks with worker threads (pread, or one io_uring ring per
 * worker with a queue depth), reading each chunk straight into its destination, counting
 * per-tensor remaining bytes atomically so that a tensor is reported the moment its last byte
 * lands, doing O_DIRECT fix-ups, and polling progress/cancel on the calling thread.
 */
#ifndef WLIFT_PIPELINE_H
#define WLIFT_PIPELINE_H

#include <stdint.h>

#include "engine/plan.h"
#include "sink/sink.h"
#include "source/source.h"

struct wlift__pipe_file {
	struct wlift__source *src; /* for diagnostics and memory images */
	int fd;			   /* buffered fd, -1 for memory images */
	int dfd;		   /* O_DIRECT fd, -1 when not used */
};

struct wlift__pipeline {
	/* in */
	const struct wlift__plan *plan;
	const wlift_tensor_info *tensors; /* plan order */
	struct wlift__pipe_file *files;
	struct wlift__sink *sink;
	int uring; /* 1: io_uring workers (fall back to pread) */
	unsigned threads;
	unsigned qd; /* io_uring queue depth per worker */
	/* Called from a worker once tensor i has fully landed (after any fix-up). Non-zero
	 * cancels the load with that code (WLIFT_ECANCELED for a callback's request). */
	int (*tensor_done)(void *user, size_t i);
	void *user;
	wlift_progress_fn progress;
	void *progress_user;
	/* out */
	uint64_t bytes_read;
	uint64_t fixups, fixup_bytes;
	int used_uring; /* 1 if any worker ran io_uring */
};

/* Run the plan. 0, or the first error (d filled); on error every worker has stopped and no
 * read is in flight when this returns. */
int wlift__pipeline_run(struct wlift__pipeline *pl, wlift_diag *d);

#endif
