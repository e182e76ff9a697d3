/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers shared by the unit tests: temporary files and raw safetensors images. */
#ifndef WLIFT_TESTUTIL_H
#define WLIFT_TESTUTIL_H

#include <check.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

/* A fresh directory for this test process (under $WLIFT_TEST_TMP or /tmp); never NULL. */
const char *wt_tmpdir(void);
/* Path of name inside wt_tmpdir(), in a static rotating buffer (8 slots). */
const char *wt_path(const char *name);
/* Write bytes to path; aborts the test on failure. */
void wt_write_file(const char *path, const void *buf, size_t len);
/* Write a raw safetensors file: 8-byte little-endian length of json, json, then data. */
void wt_write_st(const char *path, const char *json, const void *data, size_t datalen);
/* Same in memory: malloc'd image, *len set. */
/* The byte at data offset i of wt_make_u8_st's files (a multiplicative hash of i). */
uint8_t wt_pat(uint64_t i);
/* Write a U8 checkpoint of n tensors "t0".. of the given sizes, contiguous, their bytes
 * wt_pat(offset), in pieces (a test of host memory must not hold the data itself); *total
 * is the data size. Odd sizes give offsets that are not 256-byte aligned. */
void wt_make_u8_st(const char *path, size_t n, const uint64_t *sizes, uint64_t *total);
uint8_t *wt_st_image(const char *json, const void *data, size_t datalen, size_t *len);
/* Run a suite in fork mode; returns the process exit code (0 all passed, 1 otherwise). */
int wt_run(Suite *s);
/* Checked fixture: remove this test process's wt_tmpdir() when it exits (each test runs
 * in its own process, so every test cleans up after itself). */
void wt_cleanup_at_exit(void);

/* Peak host memory while something runs: wt_rss_start samples this process's RssAnon every
 * 5 ms on a thread of its own, from its value now; wt_rss_stop joins it and returns the peak
 * growth over that start value, in bytes. */
struct wt_rss {
	pthread_t th;
	int stop; /* atomic */
	uint64_t base, peak;
};
uint64_t wt_rss_anon(void);
void wt_rss_start(struct wt_rss *s);
uint64_t wt_rss_stop(struct wt_rss *s);

#endif
