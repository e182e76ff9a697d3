/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The exchange seam of distributed loading: a communicator is an ops table and its backend's
 * state. comm.c holds the public functions, which check arguments and dispatch; each backend
 * (nccl.c, mpi.c) is one file behind these ops, so that the engine's distributed modes
 * never see which transport moves the bytes.
 */
#ifndef WLIFT_COMM_COMM_H
#define WLIFT_COMM_COMM_H

#include "common/common.h"

struct wlift_comm;

struct wlift__comm_ops {
	const char *name; /* "NCCL", "MPI" (for messages) */
	int device_buffers; /* 1: buffers are device memory (NCCL); 0: host memory (MPI) */
	/* Broadcast len bytes at buf from root; every wait bounded by c->timeout_s. 0, or a
	 * negative code with d naming the backend's error. */
	int (*broadcast)(struct wlift_comm *c, void *buf, uint64_t len, int root, wlift_diag *d);
	/* This rank has failed: tell the peers (NCCL: abort the communicator; MPI: end the
	 * job with code). The communicator is then only good for destroy. */
	void (*abort)(struct wlift_comm *c, int code);
	void (*destroy)(struct wlift_comm *c);
};

struct wlift_comm {
	const struct wlift__comm_ops *ops;
	int rank, size;
	unsigned timeout_s;
	int broken; /* a collective failed or timed out: only destroy is allowed */
	int aborted; /* wlift_comm_abort was called */
	void *impl;
};

#endif
