/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A small io_uring reader (liburing): one ring per worker thread, reads submitted with a
 * user tag and reaped one at a time. Availability is detected at run time: io_uring_setup
 * fails with ENOSYS on old kernels and EPERM under seccomp or io_uring_disabled; the engine
 * then falls back to pread. (WEIGHTLIFT_DISABLE_URING=1, read into the context, makes the
 * file source never ask for a ring.)
 */
#ifndef WLIFT_SOURCE_URING_H
#define WLIFT_SOURCE_URING_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct wlift__uring;

/* 1 when io_uring can be used in this process (probed once), 0 otherwise. */
int wlift__uring_available(void);
/* Create a ring with queue depth qd. 0 or -errno (-ENOSYS when built without liburing). */
int wlift__uring_create(unsigned qd, struct wlift__uring **out);
void wlift__uring_destroy(struct wlift__uring *u);
/* Queue a read (submitted at the next wait). 0, or -EBUSY when qd reads are in flight. */
int wlift__uring_read(struct wlift__uring *u, int fd, void *buf, size_t len, uint64_t off,
		      uint64_t tag);
/* Register n buffers as the ring's fixed buffers (io_uring_register_buffers: their pages
 * are pinned once here, not at each read). 0 or -errno (-ENOMEM past RLIMIT_MEMLOCK without
 * CAP_IPC_LOCK, -EINVAL/-EOPNOTSUPP on kernels or memory that refuse). Unregistered when
 * the ring is destroyed. */
int wlift__uring_register(struct wlift__uring *u, const struct iovec *iov, unsigned n);
/* wlift__uring_read into [buf, buf+len), which lies inside registered buffer idx
 * (IORING_OP_READ_FIXED). */
int wlift__uring_read_fixed(struct wlift__uring *u, int fd, void *buf, size_t len, uint64_t off,
			    unsigned idx, uint64_t tag);
/* Number of reads queued or in flight. */
unsigned wlift__uring_inflight(const struct wlift__uring *u);
/* Submit what is queued and wait for one completion: its tag and result (bytes or -errno).
 * Returns 0 or -errno. */
int wlift__uring_wait(struct wlift__uring *u, uint64_t *tag, int *res);

#endif
