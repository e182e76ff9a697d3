/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The device conversion kernels' element code (src/kernels/convert_elem.h: what convert.cu
 * compiles, and what the fake driver runs for it) against the CPU converter
 * (src/sink/convert_cpu.c), bit for bit: every 16-bit input of F16 and BF16, and for F32
 * every sign and exponent with the mantissas around each rounding boundary (all low 16 bits
 * under several high patterns), NaNs and infinities included; every code of the five F8
 * formats to F32, F16 and BF16, and known answers for them. The CUDA compilation itself is
 * checked on a real GPU (tests/gpu/run.sh).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/convert_elem.h"
#include "sink/convert_cpu.h"
#include "sink/cuda_kernels.h"
#include "testutil.h"
#include "weightlift.h"

static const struct {
	int pair;
	wlift_dtype from, to;
} pairs[] = {
	{ WLIFT_K_F32_BF16, WLIFT_F32, WLIFT_BF16 }, { WLIFT_K_F32_F16, WLIFT_F32, WLIFT_F16 },
	{ WLIFT_K_BF16_F32, WLIFT_BF16, WLIFT_F32 }, { WLIFT_K_F16_F32, WLIFT_F16, WLIFT_F32 },
	{ WLIFT_K_F16_BF16, WLIFT_F16, WLIFT_BF16 }, { WLIFT_K_BF16_F16, WLIFT_BF16, WLIFT_F16 },
#define F8ROWS(FMT, T)                                                                      \
	{ WLIFT_K_##FMT##_F32, T, WLIFT_F32 }, { WLIFT_K_##FMT##_F16, T, WLIFT_F16 },       \
		{ WLIFT_K_##FMT##_BF16, T, WLIFT_BF16 },
	F8ROWS(E4M3, WLIFT_F8_E4M3) F8ROWS(E5M2, WLIFT_F8_E5M2)
	F8ROWS(E4M3FNUZ, WLIFT_F8_E4M3FNUZ) F8ROWS(E5M2FNUZ, WLIFT_F8_E5M2FNUZ)
	F8ROWS(E8M0, WLIFT_F8_E8M0)
#undef F8ROWS
};
#define NPAIRS (sizeof(pairs) / sizeof(pairs[0]))

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
	for (size_t p = 0; p < NPAIRS; p++)
		if (pairs[p].from != WLIFT_F32)
			compare((int)p, (const uint8_t *)v, 65536);
	free(v);
}
END_TEST

/* Every code of every F8 format, through the kernel code and the CPU tables; and the wlift
 * pair lookup the sink uses. */
START_TEST(every_f8_code)
{
	uint8_t v[256];
	int n = 0;

	for (unsigned i = 0; i < 256; i++)
		v[i] = (uint8_t)i;
	for (size_t p = 0; p < NPAIRS; p++) {
		unsigned in = 0, out = 0;

		if (wlift_dtype_bits(pairs[p].from) != 8)
			continue;
		ck_assert_int_eq(wlift__cuda_kernel_pair(pairs[p].from, pairs[p].to, &in, &out),
				 pairs[p].pair);
		ck_assert_uint_eq(in, 1);
		ck_assert_uint_eq(out, wlift_dtype_bits(pairs[p].to) / 8);
		ck_assert(wlift__convert_supported(pairs[p].from, pairs[p].to));
		compare((int)p, v, 256);
		n++;
	}
	ck_assert_int_eq(n, 15);
	ck_assert(!wlift__convert_supported(WLIFT_F32, WLIFT_F8_E4M3));
	ck_assert_int_lt(wlift__cuda_kernel_pair(WLIFT_F16, WLIFT_F8_E5M2, NULL, NULL), 0);
}
END_TEST

/* Known answers, independent of both implementations (the values from the formats'
 * definitions: OCP 8-bit floating point, the FNUZ variants, OCP MX E8M0). */
START_TEST(f8_known)
{
	static const struct {
		wlift_dtype t;
		uint8_t c;
		uint32_t f32;
	} kv[] = {
		{ WLIFT_F8_E4M3, 0x7e, 0x43e00000 },	  /* 448, the largest */
		{ WLIFT_F8_E4M3, 0x01, 0x3b000000 },	  /* 2^-9 */
		{ WLIFT_F8_E4M3, 0x38, 0x3f800000 },	  /* 1 */
		{ WLIFT_F8_E4M3, 0xff, 0xffc00000 },	  /* NaN, negative */
		{ WLIFT_F8_E4M3, 0x80, 0x80000000 },	  /* -0 */
		{ WLIFT_F8_E5M2, 0x7b, 0x47600000 },	  /* 57344 */
		{ WLIFT_F8_E5M2, 0x7c, 0x7f800000 },	  /* inf */
		{ WLIFT_F8_E5M2, 0xfc, 0xff800000 },	  /* -inf */
		{ WLIFT_F8_E5M2, 0x7d, 0x7fc00000 },	  /* NaN */
		{ WLIFT_F8_E5M2, 0x01, 0x37800000 },	  /* 2^-16 */
		{ WLIFT_F8_E4M3FNUZ, 0x7f, 0x43700000 }, /* 240 */
		{ WLIFT_F8_E4M3FNUZ, 0x80, 0xffc00000 }, /* the NaN */
		{ WLIFT_F8_E4M3FNUZ, 0x40, 0x3f800000 }, /* 1 */
		{ WLIFT_F8_E5M2FNUZ, 0x7f, 0x47600000 }, /* 57344 */
		{ WLIFT_F8_E5M2FNUZ, 0x01, 0x37000000 }, /* 2^-17 */
		{ WLIFT_F8_E8M0, 0x7f, 0x3f800000 },	  /* 1 */
		{ WLIFT_F8_E8M0, 0x00, 0x00400000 },	  /* 2^-127 */
		{ WLIFT_F8_E8M0, 0xfe, 0x7f000000 },	  /* 2^127 */
		{ WLIFT_F8_E8M0, 0xff, 0x7fc00000 },	  /* NaN */
	};
	for (size_t k = 0; k < sizeof(kv) / sizeof(kv[0]); k++) {
		uint32_t u = 0;
		uint16_t h = 0;

		ck_assert_int_eq(wlift__convert_cpu(kv[k].t, WLIFT_F32, &kv[k].c, &u, 1), 0);
		ck_assert_msg(u == kv[k].f32, "%s %#x: %#x, want %#x", wlift_dtype_name(kv[k].t),
			      kv[k].c, u, kv[k].f32);
		ck_assert_int_eq(wlift__convert_cpu(kv[k].t, WLIFT_BF16, &kv[k].c, &h, 1), 0);
		if ((kv[k].f32 & 0x7fffffffu) <= 0x7f800000u) /* exact, even 2^-127 */
			ck_assert_uint_eq(h, kv[k].f32 >> 16);
	}
	/* E8M0 to F16: beyond F16's range, infinity; below, zero (2^-25 rounds to even). */
	{
		uint8_t c[4] = { 0x8f, 0x8e, 0x66, 0x67 };
		uint16_t h[4];
		ck_assert_int_eq(wlift__convert_cpu(WLIFT_F8_E8M0, WLIFT_F16, c, h, 4), 0);
		ck_assert_uint_eq(h[0], 0x7c00); /* 2^16 */
		ck_assert_uint_eq(h[1], 0x7800); /* 2^15 */
		ck_assert_uint_eq(h[2], 0x0000); /* 2^-25 */
		ck_assert_uint_eq(h[3], 0x0001); /* 2^-24 */
	}
}
END_TEST

START_TEST(f32_inputs)
{
	static const uint32_t high[] = { 0, 0x7f0000, 0x10000, 0x3f0000, 0x400000 };
#ifdef __SANITIZE_ADDRESS__
	/* Unoptimised and instrumented, all five take minutes on a loaded 2-core machine:
	 * the sanitizer build checks memory, not numerics, so two of them do. */
	const size_t nh = 2;
#else
	const size_t nh = 5;
#endif
	size_t n = nh * 65536;
	uint32_t *v = malloc(n * 4);

	ck_assert_ptr_nonnull(v);
	/* One sign and exponent at a time (1.3 MB, not the 670 MB of all of them at once). */
	for (uint32_t s = 0; s < 2; s++)
		for (uint32_t e = 0; e < 256; e++) {
			size_t k = 0;
			for (size_t h = 0; h < nh; h++)
				for (uint32_t lo = 0; lo < 65536; lo++)
					v[k++] = s << 31 | e << 23 | high[h] | lo;
			for (size_t p = 0; p < NPAIRS; p++)
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
	for (size_t p = 0; p < NPAIRS; p++)
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
	tcase_add_test(tc, every_f8_code);
	tcase_add_test(tc, f8_known);
	tcase_add_test(tc, f32_inputs);
	tcase_add_test(tc, unaligned);
	suite_add_tcase(s, tc);
	return wt_run(s);
}
