/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The device conversion kernels' element code (src/kernels/convert_elem.h: what convert.cu
 * compiles, and what the fake driver runs for it) against the CPU converter
 * (src/sink/convert_cpu.c), bit for bit: every 16-bit input of F16 and BF16, and for F32
 * every sign and exponent with the mantissas around each rounding boundary (all low 16 bits
 * under several high patterns), NaNs and infinities included. The CUDA compilation itself is
 * checked on a real GPU (tests/gpu/run.sh).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/convert_elem.h"
#include "sink/convert_cpu.h"
#include "testutil.h"
#include "weightlift.h"

static const struct {
	int pair;
	wlift_dtype from, to;
} pairs[] = {
	{ WLIFT_K_F32_BF16, WLIFT_F32, WLIFT_BF16 }, { WLIFT_K_F32_F16, WLIFT_F32, WLIFT_F16 },
	{ WLIFT_K_BF16_F32, WLIFT_BF16, WLIFT_F32 }, { WLIFT_K_F16_F32, WLIFT_F16, WLIFT_F32 },
	{ WLIFT_K_F16_BF16, WLIFT_F16, WLIFT_BF16 }, { WLIFT_K_BF16_F16, WLIFT_BF16, WLIFT_F16 },
};

/* n elements of src through the kernel code and the CPU converter, compared. */
static void compare(int p, const uint8_t *src, size_t n)
{
	unsigned ob = wlift_dtype_bits(pairs[p].to) / 8, ib = wlift_dtype_bits(pairs[p].from) / 8;
	uint8_t *a = malloc(n * ob), *b = malloc(n * ob);

	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_nonnull(b);
	for (size_t i = 0; i < n; i++)
		wlift_k_one(pairs[p].pair, src, a, i);
	ck_assert_int_eq(wlift__convert_cpu(pairs[p].from, pairs[p].to, src, b, n), 0);
	for (size_t i = 0; i < n; i++)
		if (memcmp(a + i * ob, b + i * ob, ob)) {
			uint32_t in = 0, ka = 0, cb = 0;
			memcpy(&in, src + i * ib, ib);
			memcpy(&ka, a + i * ob, ob);
			memcpy(&cb, b + i * ob, ob);
			ck_abort_msg("%s -> %s of %#x: kernel %#x, CPU %#x",
				     wlift_dtype_name(pairs[p].from), wlift_dtype_name(pairs[p].to),
				     in, ka, cb);
		}
	free(a);
	free(b);
}

START_TEST(every_16bit_input)
{
	uint16_t *v = malloc(65536 * 2);

	ck_assert_ptr_nonnull(v);
	for (uint32_t i = 0; i < 65536; i++)
		v[i] = (uint16_t)i;
	for (size_t p = 0; p < sizeof(pairs) / sizeof(pairs[0]); p++)
		if (pairs[p].from != WLIFT_F32)
			compare((int)p, (const uint8_t *)v, 65536);
	free(v);
}
END_TEST

START_TEST(f32_inputs)
{
	static const uint32_t high[] = { 0, 0x10000, 0x3f0000, 0x400000, 0x7f0000 };
	size_t n = 5 * 65536;
	uint32_t *v = malloc(n * 4);

	ck_assert_ptr_nonnull(v);
	/* One sign and exponent at a time (1.3 MB, not the 670 MB of all of them at once). */
	for (uint32_t s = 0; s < 2; s++)
		for (uint32_t e = 0; e < 256; e++) {
			size_t k = 0;
			for (size_t h = 0; h < 5; h++)
				for (uint32_t lo = 0; lo < 65536; lo++)
					v[k++] = s << 31 | e << 23 | high[h] | lo;
			for (size_t p = 0; p < sizeof(pairs) / sizeof(pairs[0]); p++)
				if (pairs[p].from == WLIFT_F32)
					compare((int)p, (const uint8_t *)v, n);
		}
	free(v);
}
END_TEST

/* Unaligned element addresses (the kernels read and write byte-wise). */
START_TEST(unaligned)
{
	uint8_t buf[4 * 1001 + 3];

	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 167 + 13);
	for (size_t p = 0; p < sizeof(pairs) / sizeof(pairs[0]); p++)
		for (size_t off = 1; off < 4; off++)
			compare((int)p, buf + off, 1000);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("kernels");
	TCase *tc = tcase_create("convert");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, every_16bit_input);
	tcase_add_test(tc, f32_inputs);
	tcase_add_test(tc, unaligned);
	suite_add_tcase(s, tc);
	return wt_run(s);
}
