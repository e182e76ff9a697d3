/* SPDX-License-Identifier: Apache-2.0 */
/*
 * copylimit: the "copy into fresh memory" limit that a page-cache-hot load into CPU memory is
 * measured against. It reads the given files with N threads (pread, 8 MiB chunks handed out
 * from a shared counter) into:
 *   fresh-huge   fresh anonymous memory with MADV_HUGEPAGE (faults + zeroing + copy),
 *   fresh-plain  fresh anonymous memory, no advice (4 KiB faults unless THP is "always"),
 *   reused       the same buffer again, already faulted in (copy only),
 * and prints GB/s (10^9 bytes/s) for each, the median of --repeat runs. Time covers mmap +
 * reads (not munmap), as a loader's load time does. Whole files are read (headers included):
 * the few KiB of header do not matter at these sizes.
 *
 * usage: copylimit [--threads N] [--chunk BYTES] [--repeat N] [--json] FILE...
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_FILES 256

static int g_nfiles;
static int g_fd[MAX_FILES];
static uint64_t g_size[MAX_FILES], g_base[MAX_FILES];
static uint64_t g_total, g_chunk = 8u << 20;
static uint64_t g_nchunks;
static uint64_t g_chunk_file[1 << 16], g_chunk_off[1 << 16];
static unsigned char *g_buf;
static atomic_uint_fast64_t g_next;
static atomic_int g_err;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void *worker(void *arg)
{
	(void)arg;
	for (;;) {
		uint64_t c = atomic_fetch_add(&g_next, 1);
		if (c >= g_nchunks)
			return NULL;
		int f = (int)g_chunk_file[c];
		uint64_t off = g_chunk_off[c];
		uint64_t len = g_size[f] - off < g_chunk ? g_size[f] - off : g_chunk;
		while (len > 0) {
			ssize_t n = pread(g_fd[f], g_buf + g_base[f] + off, len, (off_t)off);
			if (n <= 0) {
				if (n < 0 && errno == EINTR)
					continue;
				atomic_store(&g_err, n < 0 ? errno : EIO);
				return NULL;
			}
			off += (uint64_t)n;
			len -= (uint64_t)n;
		}
	}
}

static int read_all(int threads)
{
	pthread_t th[256];
	atomic_store(&g_next, 0);
	for (int i = 0; i < threads; i++)
		if (pthread_create(&th[i], NULL, worker, NULL) != 0)
			return -1;
	for (int i = 0; i < threads; i++)
		pthread_join(th[i], NULL);
	return atomic_load(&g_err) ? -1 : 0;
}

/* One timed run; mode 0 fresh-huge, 1 fresh-plain, 2 reused (g_buf stays mapped). */
static double run(int mode, int threads)
{
	double t0 = now();
	if (mode != 2 || !g_buf) {
		g_buf = mmap(NULL, g_total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (g_buf == MAP_FAILED) {
			perror("mmap");
			exit(1);
		}
		if (mode != 1)
			madvise(g_buf, g_total, MADV_HUGEPAGE);
		if (mode == 2)
			memset(g_buf, 0, g_total); /* "reused": faulted in before the clock starts */
	}
	if (mode == 2)
		t0 = now(); /* the buffer is already faulted in: time the copy only */
	if (read_all(threads) != 0) {
		fprintf(stderr, "copylimit: read: %s\n", strerror(atomic_load(&g_err)));
		exit(1);
	}
	double t = now() - t0;
	if (mode != 2) {
		munmap(g_buf, g_total);
		g_buf = NULL;
	}
	return t;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	int threads = 2, repeat = 3, json = 0;
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "--threads") && i + 1 < argc)
			threads = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--chunk") && i + 1 < argc)
			g_chunk = strtoull(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--repeat") && i + 1 < argc)
			repeat = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--json"))
			json = 1;
		else {
			fprintf(stderr, "usage: copylimit [--threads N] [--chunk BYTES] [--repeat N] "
					"[--json] FILE...\n");
			return 2;
		}
	}
	if (threads < 1 || threads > 256 || repeat < 1 || repeat > 99 || g_chunk == 0 || i >= argc ||
	    argc - i > MAX_FILES) {
		fprintf(stderr, "copylimit: bad arguments\n");
		return 2;
	}
	for (; i < argc; i++) {
		struct stat st;
		int fd = open(argv[i], O_RDONLY | O_CLOEXEC);
		if (fd < 0 || fstat(fd, &st) != 0) {
			perror(argv[i]);
			return 1;
		}
		g_fd[g_nfiles] = fd;
		g_size[g_nfiles] = (uint64_t)st.st_size;
		g_base[g_nfiles] = g_total;
		g_total += (uint64_t)st.st_size;
		for (uint64_t off = 0; off < (uint64_t)st.st_size; off += g_chunk) {
			if (g_nchunks >= sizeof g_chunk_file / sizeof g_chunk_file[0]) {
				fprintf(stderr, "copylimit: too many chunks\n");
				return 2;
			}
			g_chunk_file[g_nchunks] = (uint64_t)g_nfiles;
			g_chunk_off[g_nchunks++] = off;
		}
		g_nfiles++;
	}

	static const char *names[3] = {"fresh_huge", "fresh_plain", "reused"};
	double med[3];
	/* Alternate the variants within each round so drift hits all of them alike. */
	double t[3][99];
	for (int r = 0; r < repeat; r++)
		for (int m = 0; m < 3; m++)
			t[m][r] = run(m, threads);
	if (g_buf)
		munmap(g_buf, g_total);
	for (int m = 0; m < 3; m++) {
		qsort(t[m], (size_t)repeat, sizeof(double), cmp_d);
		med[m] = t[m][repeat / 2];
	}
	if (json) {
		printf("{\"schema\":\"copylimit/1\",\"bytes\":%llu,\"threads\":%d,\"chunk\":%llu,"
		       "\"repeat\":%d",
		       (unsigned long long)g_total, threads, (unsigned long long)g_chunk, repeat);
		for (int m = 0; m < 3; m++)
			printf(",\"%s_s\":%.6f,\"%s_gb_per_s\":%.3f", names[m], med[m], names[m],
			       (double)g_total / med[m] / 1e9);
		printf("}\n");
	} else {
		printf("%llu bytes, %d threads, chunk %llu, median of %d\n",
		       (unsigned long long)g_total, threads, (unsigned long long)g_chunk, repeat);
		for (int m = 0; m < 3; m++)
			printf("  %-12s %8.3f s  %7.2f GB/s\n", names[m], med[m],
			       (double)g_total / med[m] / 1e9);
	}
	return 0;
}
