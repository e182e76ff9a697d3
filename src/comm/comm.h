/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The exchange seam of distributed loading: a communicator is an ops table and its backend's
 * state. comm.c holds the public functions, which check arguments and dispatch; each backend
 * (nccl.c; MPI next) is one file behind these ops, so that the engine's distributed modes
 * never see which transport moves the bytes.
 */
#ifndef WLIFT_COMM_COMM_H
#define WLIFT_COMM_COMM_H

#include "common/common.h"

struct wlift_comm;

struct wlift__comm_ops {
	const char *name; /* "NCCL", ... (for messages) */
	/* Broadcast len bytes at buf from root; every wait bounded by c->timeout_s. 0, or a
	 * negative code with d naming the backend's error. */
	int (*broadcast)(struct wlift_comm *c, void *buf, uint64_t len, int root, wlift_diag *d);
	void (*destroy)(struct wlift_comm *c);
};

struct wlift_comm {
	const struct wlift__comm_ops *ops;
	int rank, size;
	unsigned timeout_s;
	int broken; /* a collective failed or timed out: only destroy is allowed */
	void *impl;
};

#endif
