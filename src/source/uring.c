/* SPDX-License-Identifier: Apache-2.0 */
/*
 * io_uring reader. Buffered reads of page-cache-hot data complete inline at submission, so
 * the queue depth matters mostly for cold data and O_DIRECT, where it keeps the device busy
 * from one thread. Without liburing at build time every entry point reports -ENOSYS.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "source/uring.h"

#ifdef WLIFT_HAVE_URING
#include <liburing.h>

struct wlift__uring {
	struct io_uring ring;
	unsigned qd;
	unsigned inflight;
	unsigned queued;
};

static int probe_state; /* 0 unknown, 1 available, -1 unavailable (atomic) */

int wlift__uring_available(void)
{
	int st = __atomic_load_n(&probe_state, __ATOMIC_ACQUIRE);

	if (st == 0) {
		struct io_uring ring;
		/* ENOSYS: kernel without io_uring; EPERM: seccomp or kernel.io_uring_disabled. */
		if (io_uring_queue_init(2, &ring, 0) == 0) {
			io_uring_queue_exit(&ring);
			st = 1;
		} else {
			st = -1;
		}
		__atomic_store_n(&probe_state, st, __ATOMIC_RELEASE);
	}
	return st == 1;
}

int wlift__uring_create(unsigned qd, struct wlift__uring **out)
{
	struct wlift__uring *u;
	int ret;

	*out = NULL;
	if (!wlift__uring_available())
		return -ENOSYS;
	u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	if (qd < 1)
		qd = 1;
	ret = io_uring_queue_init(qd, &u->ring, 0);
	if (ret < 0) {
		free(u);
		return ret;
	}
	u->qd = qd;
	*out = u;
	return 0;
}

void wlift__uring_destroy(struct wlift__uring *u)
{
	if (!u)
		return;
	/* Reap what is still in flight so that no read lands in freed memory. */
	while (u->inflight) {
		uint64_t tag;
		int res;
		if (wlift__uring_wait(u, &tag, &res) < 0)
			break;
	}
	io_uring_queue_exit(&u->ring);
	free(u);
}

int wlift__uring_read(struct wlift__uring *u, int fd, void *buf, size_t len, uint64_t off,
		      uint64_t tag)
{
	struct io_uring_sqe *sqe;

	if (u->inflight >= u->qd)
		return -EBUSY;
	sqe = io_uring_get_sqe(&u->ring);
	if (!sqe)
		return -EBUSY;
	io_uring_prep_read(sqe, fd, buf, (unsigned)len, off);
	io_uring_sqe_set_data64(sqe, tag);
	u->inflight++;
	u->queued++;
	return 0;
}

int wlift__uring_register(struct wlift__uring *u, const struct iovec *iov, unsigned n)
{
	return io_uring_register_buffers(&u->ring, iov, n);
}

int wlift__uring_read_fixed(struct wlift__uring *u, int fd, void *buf, size_t len, uint64_t off,
			    unsigned idx, uint64_t tag)
{
	struct io_uring_sqe *sqe;

	if (u->inflight >= u->qd)
		return -EBUSY;
	sqe = io_uring_get_sqe(&u->ring);
	if (!sqe)
		return -EBUSY;
	io_uring_prep_read_fixed(sqe, fd, buf, (unsigned)len, off, (int)idx);
	io_uring_sqe_set_data64(sqe, tag);
	u->inflight++;
	u->queued++;
	return 0;
}

unsigned wlift__uring_inflight(const struct wlift__uring *u)
{
	return u->inflight;
}

int wlift__uring_wait(struct wlift__uring *u, uint64_t *tag, int *res)
{
	struct io_uring_cqe *cqe;
	int ret;

	if (!u->inflight)
		return -EAGAIN;
	if (u->queued) {
		ret = io_uring_submit_and_wait(&u->ring, 1);
		if (ret < 0 && ret != -EINTR)
			return ret;
		u->queued = 0;
	}
	do {
		ret = io_uring_wait_cqe(&u->ring, &cqe);
	} while (ret == -EINTR);
	if (ret < 0)
		return ret;
	*tag = io_uring_cqe_get_data64(cqe);
	*res = cqe->res;
	io_uring_cqe_seen(&u->ring, cqe);
	u->inflight--;
	return 0;
}

#else /* !WLIFT_HAVE_URING */

int wlift__uring_available(void)
{
	return 0;
}
int wlift__uring_create(unsigned qd, struct wlift__uring **out)
{
	WLIFT_UNUSED(qd);
	*out = NULL;
	return -ENOSYS;
}
void wlift__uring_destroy(struct wlift__uring *u)
{
	WLIFT_UNUSED(u);
}
int wlift__uring_read(struct wlift__uring *u, int fd, void *buf, size_t len, uint64_t off,
		      uint64_t tag)
{
	WLIFT_UNUSED(u);
	WLIFT_UNUSED(fd);
	WLIFT_UNUSED(buf);
	WLIFT_UNUSED(len);
	WLIFT_UNUSED(off);
	WLIFT_UNUSED(tag);
	return -ENOSYS;
}
int wlift__uring_register(struct wlift__uring *u, const struct iovec *iov, unsigned n)
{
	WLIFT_UNUSED(u);
	WLIFT_UNUSED(iov);
	WLIFT_UNUSED(n);
	return -ENOSYS;
}
int wlift__uring_read_fixed(struct wlift__uring *u, int fd, void *buf, size_t len, uint64_t off,
			    unsigned idx, uint64_t tag)
{
	WLIFT_UNUSED(idx);
	return wlift__uring_read(u, fd, buf, len, off, tag);
}
unsigned wlift__uring_inflight(const struct wlift__uring *u)
{
	WLIFT_UNUSED(u);
	return 0;
}
int wlift__uring_wait(struct wlift__uring *u, uint64_t *tag, int *res)
{
	WLIFT_UNUSED(u);
	WLIFT_UNUSED(tag);
	WLIFT_UNUSED(res);
	return -ENOSYS;
}
#endif
