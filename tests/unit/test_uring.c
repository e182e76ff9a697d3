/* SPDX-License-Identifier: Apache-2.0 */
/* The io_uring reader: reads with tags, queue-depth limit, forced unavailability. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>
#include <unistd.h>

#include "source/file.h"
#include "source/source.h"
#include "source/uring.h"
#include "testutil.h"

START_TEST(reads)
{
	const char *p = wt_path("u.bin");
	uint8_t data[65536], buf[4][16384];
	struct wlift__uring *u;
	int fd, seen = 0;

	if (!wlift__uring_available())
		exit(77);
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7);
	wt_write_file(p, data, sizeof(data));
	fd = open(p, O_RDONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(wlift__uring_create(2, &u), 0);
	ck_assert_int_eq(wlift__uring_read(u, fd, buf[0], 16384, 0, 0), 0);
	ck_assert_int_eq(wlift__uring_read(u, fd, buf[1], 16384, 16384, 1), 0);
	ck_assert_int_eq(wlift__uring_read(u, fd, buf[2], 16384, 32768, 2), -EBUSY);
	ck_assert_uint_eq(wlift__uring_inflight(u), 2);
	while (wlift__uring_inflight(u)) {
		uint64_t tag;
		int res;
		ck_assert_int_eq(wlift__uring_wait(u, &tag, &res), 0);
		ck_assert_int_eq(res, 16384);
		ck_assert_int_eq(memcmp(buf[tag], data + tag * 16384, 16384), 0);
		seen |= 1 << tag;
	}
	ck_assert_int_eq(seen, 3);
	/* beyond EOF: 0 bytes */
	ck_assert_int_eq(wlift__uring_read(u, fd, buf[3], 16384, 65536, 9), 0);
	{
		uint64_t tag;
		int res;
		ck_assert_int_eq(wlift__uring_wait(u, &tag, &res), 0);
		ck_assert_uint_eq(tag, 9);
		ck_assert_int_eq(res, 0);
	}
	/* destroy with a read in flight reaps it */
	ck_assert_int_eq(wlift__uring_read(u, fd, buf[0], 16384, 0, 0), 0);
	wlift__uring_destroy(u);
	close(fd);
}
END_TEST

/* WEIGHTLIFT_DISABLE_URING=1 is read into the context once; the file source then never
 * makes a ring, whatever the load asks for. */
START_TEST(forced_unavailable)
{
	const char *p = wt_path("u.bin");
	static uint8_t data[8192];
	struct wlift__source *s;
	struct wlift__rq *q;
	wlift_ctx *ctx;

	wt_write_file(p, data, sizeof(data));
	setenv("WEIGHTLIFT_DISABLE_URING", "1", 1);
	ck_assert_int_eq(wlift_ctx_create(&ctx, NULL, NULL), 0);
	setenv("WEIGHTLIFT_DISABLE_URING", "0", 1);
	ck_assert_int_eq(wlift__source_open(ctx, p, &s, NULL), 0);
	ck_assert_int_eq(s->ops->queue(s, 4, WLIFT__RQ_URING, &q, NULL), 0);
	ck_assert_str_eq(wlift__rq_name(q), "pread");
	q->ops->destroy(q);
	wlift__source_unref(s);
	wlift_ctx_destroy(ctx);
}
END_TEST

START_TEST(probes)
{
	const char *p = wt_path("probe.bin");
	static uint8_t data[1 << 20];
	uint32_t ma, oa;
	double r;
	int fd;

	wt_write_file(p, data, sizeof(data));
	fd = open(p, O_RDONLY);
	ck_assert_int_ge(fd, 0);
	r = wlift__file_resident(fd, 0, sizeof(data));
	ck_assert(r > 0.9); /* just written: in the page cache */
	ck_assert_int_ge(wlift__fs_kind(fd), 0);
	ck_assert_int_eq(wlift__file_dio_align(fd, p, &ma, &oa), 0);
	if (ma)
		ck_assert_uint_eq(ma & (ma - 1), 0);
	close(fd);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("uring");
	TCase *tc = tcase_create("uring");

	tcase_add_checked_fixture(tc, wt_cleanup_at_exit, NULL);
	tcase_add_test(tc, reads);
	tcase_add_test(tc, forced_unavailable);
	tcase_add_test(tc, probes);
	suite_add_tcase(s, tc);
	return wt_run(s);
}
