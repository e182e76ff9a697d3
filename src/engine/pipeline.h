/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The run stage: worker threads claim a plan's chunks, read each through its source's read
 * queue (one queue per worker and source kind) straight into the destination (the sink's
 * final memory, or a staging buffer the sink hands out and then commits), account for the
 * bytes landed per tensor so that a tensor is reported the moment its last byte lands, run
 * O_DIRECT fix-ups through the sink, and poll progress/cancel on the calling thread. The
 * pipeline knows chunks, buffers and completions, never file descriptors or devices.
 */
#ifndef WLIFT_PIPELINE_H
#define WLIFT_PIPELINE_H

#include <stdint.h>

#include "engine/plan.h"
#include "sink/sink.h"
#include "source/source.h"

struct wlift__pipeline {
	/* in */
	const struct wlift__plan *plan;
	const wlift_tensor_info *tensors;   /* plan order */
	struct wlift__source *const *srcs;  /* per plan file */
	struct wlift__sink *sink;
	unsigned queue_flags;		    /* WLIFT__RQ_* for the read queues */
	unsigned threads;
	unsigned qd;			    /* reads in flight per worker */
	int numa;			    /* 1 + the NUMA node the workers run on; 0: any */
	const struct iovec *staging;	    /* the sink's staging memory, for read queues to
					       register (io_uring fixed buffers); NULL: none */
	unsigned nstaging;
	/* Called once tensor i has fully landed (after any fix-up), from a worker or from the
	 * thread that polled the sink. Non-zero cancels the load with that code. */
	int (*tensor_done)(void *user, size_t i);
	void *user;
	wlift_progress_fn progress;
	void *progress_user;
	/* GPU Direct Storage: the chunks of files with gds_file[f] set are read straight into
	 * the device destination through the source's read_to_device (sink ops->device_ptr),
	 * with the cuFile library gds (NULL: a source that needs none, the seam tests), once its
	 * driver is open (until then, and for every other chunk, through the sink's staging).
	 * gds_required (--gds on): a cuFile failure fails the load, and compatibility mode is
	 * used too; 0 (auto): only true GDS, and a failure sends that chunk and the rest of the
	 * load through staging (gds_fallbacks counts it). */
	struct wlift__gds *gds;
	const uint8_t *gds_file;
	int gds_required;
	unsigned gds_batch;	/* requests per cuFile batch (WEIGHTLIFT_GDS_BATCH; 0: none) */
	/* out */
	uint64_t gds_bytes;	/* bytes read through read_to_device */
	uint64_t gds_fallbacks; /* cuFile failures that sent a chunk back to staging */
	int gds_mode;		/* the source/gds.h state of the reads made (0: none made) */
	uint64_t bytes_read;
	uint64_t fixups, fixup_bytes;
	uint64_t fixed_reads; /* reads into registered staging buffers */
	int fixed_err;	      /* the first refused registration (0: none) */
	const char *strategy; /* the read queues used: "uring" if any, else the first's name */
};

/* Run the plan. 0, or the first error (d filled); on error every worker has stopped, and no
 * read and no sink commit is in flight when this returns. */
int wlift__pipeline_run(struct wlift__pipeline *pl, wlift_diag *d);

#endif
