/* SPDX-License-Identifier: Apache-2.0 */
/*
 * uringfixed: whether io_uring fixed buffers (IORING_OP_READ_FIXED into memory registered
 * once with io_uring_register_buffers) read faster than plain IORING_OP_READ into the same
 * memory, the way a GPU load reads into its pinned ring (src/source/file.c,
 * WEIGHTLIFT_URING_FIXED). One thread reads FILE whole in CHUNK-sized reads, QD in flight,
 * into a ring of RING bytes (slots of CHUNK, reused round robin, as the sink's staging
 * buffers), buffered or O_DIRECT, plain and fixed alternating, --repeat times each; prints
 * the median GB/s of each, their ratio (fixed / plain) and the registration's own cost (its
 * median time for the ring, paid once per read queue, that is per worker and per load).
 *
 * usage: uringfixed [--direct] [--chunk BYTES] [--ring BYTES] [--qd N] [--repeat N] FILE
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#if __has_include(<liburing.h>)
#include <liburing.h>

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* One pass over the file; seconds, or < 0. */
static double pass(int fd, uint64_t size, uint8_t *ring, size_t ring_bytes, size_t chunk,
		   unsigned qd, int fixed)
{
	struct io_uring u;
	unsigned nslots = (unsigned)(ring_bytes / chunk), inflight = 0, slot = 0;
	uint64_t off = 0, done = 0;
	double t0;

	if (io_uring_queue_init(qd, &u, 0) < 0)
		return -1;
	if (fixed) {
		struct iovec iov = { ring, ring_bytes };
		int r = io_uring_register_buffers(&u, &iov, 1);
		if (r < 0) {
			fprintf(stderr, "io_uring_register_buffers: %s\n", strerror(-r));
			io_uring_queue_exit(&u);
			return -1;
		}
	}
	t0 = now();
	while (done < size) {
		while (inflight < qd && off < size) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(&u);
			size_t len = size - off < chunk ? (size_t)(size - off) : chunk;
			uint8_t *dst = ring + (size_t)(slot++ % nslots) * chunk;
			if (!sqe)
				break;
			if (fixed)
				io_uring_prep_read_fixed(sqe, fd, dst, (unsigned)len, off, 0);
			else
				io_uring_prep_read(sqe, fd, dst, (unsigned)len, off);
			off += len;
			inflight++;
		}
		{
			struct io_uring_cqe *cqe;
			if (io_uring_submit_and_wait(&u, 1) < 0 || io_uring_wait_cqe(&u, &cqe) < 0)
				return -1;
			if (cqe->res <= 0) {
				fprintf(stderr, "read: %s\n", strerror(-cqe->res));
				return -1;
			}
			done += (uint64_t)cqe->res; /* short reads only at the end of the file */
			io_uring_cqe_seen(&u, cqe);
			inflight--;
		}
	}
	t0 = now() - t0;
	io_uring_queue_exit(&u);
	return t0;
}

int main(int argc, char **argv)
{
	size_t chunk = 8u << 20, ring_bytes = 128u << 20;
	unsigned qd = 4, repeat = 5;
	int direct = 0, fd;
	const char *path = NULL;
	struct stat st;
	uint8_t *ring;
	double *tp, *tf, *treg;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--direct"))
			direct = 1;
		else if (!strcmp(argv[i], "--chunk") && i + 1 < argc)
			chunk = strtoull(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--ring") && i + 1 < argc)
			ring_bytes = strtoull(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--qd") && i + 1 < argc)
			qd = (unsigned)strtoul(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--repeat") && i + 1 < argc)
			repeat = (unsigned)strtoul(argv[++i], NULL, 0);
		else
			path = argv[i];
	}
	if (!path || !chunk || chunk % 4096 || ring_bytes < chunk || !qd || !repeat) {
		fprintf(stderr, "usage: uringfixed [--direct] [--chunk BYTES] [--ring BYTES] "
				"[--qd N] [--repeat N] FILE\n");
		return 2;
	}
	fd = open(path, O_RDONLY | (direct ? O_DIRECT : 0));
	if (fd < 0 || fstat(fd, &st) < 0) {
		perror(path);
		return 1;
	}
	if (direct)
		st.st_size = st.st_size / 4096 * 4096; /* whole blocks only */
	ring = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (ring == MAP_FAILED)
		return 1;
	madvise(ring, ring_bytes, MADV_HUGEPAGE);
	memset(ring, 1, ring_bytes); /* faulted in, as a pinned ring is */
	tp = calloc(repeat, sizeof(double));
	tf = calloc(repeat, sizeof(double));
	treg = calloc(repeat, sizeof(double));
	for (unsigned r = 0; r < repeat; r++) {
		struct io_uring u;
		struct iovec iov = { ring, ring_bytes };
		double t0;

		tp[r] = pass(fd, (uint64_t)st.st_size, ring, ring_bytes, chunk, qd, 0);
		tf[r] = pass(fd, (uint64_t)st.st_size, ring, ring_bytes, chunk, qd, 1);
		if (tp[r] < 0 || tf[r] < 0)
			return 1;
		if (io_uring_queue_init(qd, &u, 0) < 0)
			return 1;
		t0 = now();
		if (io_uring_register_buffers(&u, &iov, 1) < 0)
			return 1;
		treg[r] = now() - t0;
		io_uring_queue_exit(&u);
	}
	qsort(tp, repeat, sizeof(double), cmp);
	qsort(tf, repeat, sizeof(double), cmp);
	qsort(treg, repeat, sizeof(double), cmp);
	printf("{\"file_bytes\": %lld, \"direct\": %d, \"chunk\": %zu, \"ring\": %zu, \"qd\": %u, "
	       "\"repeat\": %u, \"plain_gb_per_s\": %.3f, \"fixed_gb_per_s\": %.3f, "
	       "\"fixed_over_plain\": %.3f, \"register_ms\": %.2f}\n",
	       (long long)st.st_size, direct, chunk, ring_bytes, qd, repeat,
	       (double)st.st_size / tp[repeat / 2] / 1e9, (double)st.st_size / tf[repeat / 2] / 1e9,
	       tp[repeat / 2] / tf[repeat / 2], treg[repeat / 2] * 1e3);
	return 0;
}

#else
int main(void)
{
	fprintf(stderr, "uringfixed: built without liburing\n");
	return 77;
}
#endif
