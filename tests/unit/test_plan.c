/* SPDX-License-Identifier: Apache-2.0 */
/* Plan construction over arrays of wlift_tensor_info: merging, placement, alignment, O_DIRECT
 * widening and fix-ups, chunking. */
#include <errno.h>
#include <stdlib.h>

#include "engine/plan.h"
#include "testutil.h"

static wlift_tensor_info T(uint32_t file, uint64_t off, uint64_t n)
{
	wlift_tensor_info t = {0};

	t.name = "t";
	t.file = file;
	t.file_offset = off;
	t.nbytes = n;
	return t;
}

/* The range holding tensor i. */
static size_t range_of(const struct wlift__plan *p, size_t i)
{
	for (size_t r = 0; r < p->nranges; r++)
		if (i >= p->ranges[r].t0 && i < p->ranges[r].t0 + p->ranges[r].nt)
			return r;
	ck_abort_msg("tensor %zu is in no range", i);
	return 0;
}

/* Every tensor's bytes are covered by chunks of its range, mapped to its final place. */
static void check_cover(const struct wlift__plan *p, const wlift_tensor_info *t)
{
	for (size_t i = 0; i < p->ntensors; i++) {
		const struct wlift__plan_range *r = &p->ranges[range_of(p, i)];
		uint64_t covered = 0;
		ck_assert_uint_ge(t[i].file_offset, r->off);
		ck_assert_uint_le(t[i].file_offset + t[i].nbytes, r->end);
		for (size_t c = r->c0; c < r->c0 + r->nc; c++) {
			const struct wlift__plan_chunk *ch = &p->chunks[c];
			uint64_t lo = ch->off > t[i].file_offset ? ch->off : t[i].file_offset;
			uint64_t hi = ch->off + ch->len;
			if (hi > t[i].file_offset + t[i].nbytes)
				hi = t[i].file_offset + t[i].nbytes;
			if (hi > lo) {
				covered += hi - lo;
				/* pre-fix-up position + shift == final position */
				ck_assert_uint_eq(ch->dest + (lo - ch->off) - r->shift,
						  p->dest[i] + (lo - t[i].file_offset));
			}
		}
		ck_assert_uint_eq(covered, t[i].nbytes);
		ck_assert_uint_le(p->dest[i] + t[i].nbytes, p->arena_bytes);
	}
}

START_TEST(merge_and_align)
{
	wlift_tensor_info t[] = {T(0, 80, 64), T(0, 144, 128), T(0, 272, 10), T(0, 282, 6),
				 T(0, 288, 0), T(0, 1000, 64), T(1, 8, 100)};
	struct wlift__plan_file f[2] = {{0}, {0}};
	struct wlift__plan p;

	ck_assert_int_eq(wlift__plan_build(t, 7, f, 2, 64, 0, &p, NULL), 0);
	/* [80..282) merges (residue 16 kept); 282 has another residue; 288 (empty) joins it;
	 * 1000 is not contiguous; file 1 is separate. */
	ck_assert_uint_eq(p.nranges, 4);
	ck_assert_uint_eq(p.ranges[0].nt, 3);
	ck_assert_uint_eq(p.ranges[1].nt, 2);
	for (size_t i = 0; i < 7; i++)
		if (i != 2 && t[i].nbytes)
			ck_assert_uint_eq(
			    p.dest[i] % 64,
			    (t[i].file_offset - t[p.ranges[range_of(&p, i)].t0].file_offset) % 64);
	ck_assert_uint_eq(p.dest[0] % 64, 0);
	ck_assert_uint_eq(p.dest[3] % 64, 0);
	ck_assert_uint_eq(p.tensor_bytes, 64 + 128 + 10 + 6 + 64 + 100);
	ck_assert_uint_eq(p.read_bytes, p.tensor_bytes);
	check_cover(&p, t);
	wlift__plan_free(&p);
}
END_TEST

START_TEST(direct_widening)
{
	wlift_tensor_info t[] = {T(0, 8 + 1000, 4096), T(0, 8 + 1000 + 4096, 10000)};
	struct wlift__plan_file f[1] = {{512}};
	struct wlift__plan p;

	ck_assert_int_eq(wlift__plan_build(t, 2, f, 1, 3000, 0, &p, NULL), 0);
	ck_assert_uint_eq(p.nranges, 1);
	ck_assert_uint_eq(p.ranges[0].rd_off % 512, 0);
	ck_assert_uint_eq(p.ranges[0].rd_end % 512, 0);
	ck_assert_uint_eq(p.ranges[0].dest % 512, 0);
	ck_assert_uint_eq(p.ranges[0].shift, 1008 % 64);
	for (size_t c = 0; c < p.nchunks; c++) {
		ck_assert_uint_eq(p.chunks[c].off % 512, 0);
		ck_assert_uint_eq(p.chunks[c].len % 512, 0);
		ck_assert_uint_eq(p.chunks[c].dest % 512, 0);
		ck_assert_int_eq(p.chunks[c].direct, 1);
	}
	ck_assert_uint_eq(p.dest[0] % 64, 0);
	ck_assert_uint_eq(p.dest[1] % 64, 0);
	check_cover(&p, t);
	wlift__plan_free(&p);
}
END_TEST

START_TEST(range_cap_and_errors)
{
	wlift_tensor_info t[] = {T(0, 0, 1 << 20), T(0, 1 << 20, 1 << 20), T(0, 2 << 20, 1 << 20)};
	wlift_tensor_info bad[] = {T(0, 100, 1), T(0, 50, 1)};
	struct wlift__plan_file f[1] = {{0}};
	struct wlift__plan p;

	ck_assert_int_eq(wlift__plan_build(t, 3, f, 1, 1 << 19, 2 << 20, &p, NULL), 0);
	ck_assert_uint_eq(p.nranges, 2);
	ck_assert_uint_eq(p.nchunks, 6);
	check_cover(&p, t);
	wlift__plan_free(&p);
	ck_assert_int_eq(wlift__plan_build(bad, 2, f, 1, 0, 0, &p, NULL), -EINVAL);
	bad[0].file = 3;
	ck_assert_int_eq(wlift__plan_build(bad, 1, f, 1, 0, 0, &p, NULL), -EINVAL);
	ck_assert_int_eq(wlift__plan_build(NULL, 0, f, 1, 0, 0, &p, NULL), 0);
	ck_assert_uint_eq(p.nchunks, 0);
	wlift__plan_free(&p);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("plan");
	TCase *tc = tcase_create("plan");

	tcase_add_test(tc, merge_and_align);
	tcase_add_test(tc, direct_widening);
	tcase_add_test(tc, range_cap_and_errors);
	suite_add_tcase(s, tc);
	return wt_run(s);
}
