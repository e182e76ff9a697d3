/* SPDX-License-Identifier: Apache-2.0 */
/*
 * CPU dtype conversion. F32 -> BF16 rounds to nearest even and keeps NaNs quiet; F16 <-> F32
 * handles subnormals, infinities and NaNs exactly (IEEE 754 binary16). Bit manipulation only,
 * so the loops vectorise and the results do not depend on the FPU's rounding mode. F8 inputs
 * (E4M3FN, E5M2, E4M3FNUZ, E5M2FNUZ, E8M0FNU) go through a 256-entry table per format and
 * target, built once from each format's parameters (the device kernels decode with bit
 * arithmetic instead, src/kernels/convert_elem.h; unit/test_kernels compares the two on every
 * code, tests/python/test_convert_f8.py compares this with ml_dtypes and torch).
 */
#include <pthread.h>
#include <string.h>

#include "sink/convert_cpu.h"

int wlift__dtype_is_float(wlift_dtype t)
{
	switch (t) {
	case WLIFT_F8_E5M2:
	case WLIFT_F8_E4M3:
	case WLIFT_F8_E8M0:
	case WLIFT_F8_E4M3FNUZ:
	case WLIFT_F8_E5M2FNUZ:
	case WLIFT_F16:
	case WLIFT_BF16:
	case WLIFT_F32:
	case WLIFT_F64:
	case WLIFT_F4:
	case WLIFT_F6_E2M3:
	case WLIFT_F6_E3M2:
		return 1;
	default:
		return 0;
	}
}

static int is_basic(wlift_dtype t)
{
	return t == WLIFT_F16 || t == WLIFT_BF16 || t == WLIFT_F32;
}

/* The F8 formats, by their rules for the top codes: IEEE (E5M2: the all-ones exponent is
 * infinity or NaN), FN (E4M3FN: finite, only S.1111.111 is NaN), FNUZ (finite, one zero,
 * the negative zero's code 0x80 is the NaN; bias one more than IEEE's), E8M0 (unsigned
 * exponent only, 0xff NaN). */
enum { F8_IEEE, F8_FN, F8_FNUZ, F8_EXP };

static const struct f8fmt {
	wlift_dtype t;
	int mbits, bias, kind;
} f8fmts[] = {
	{ WLIFT_F8_E4M3, 3, 7, F8_FN },	       { WLIFT_F8_E5M2, 2, 15, F8_IEEE },
	{ WLIFT_F8_E4M3FNUZ, 3, 8, F8_FNUZ }, { WLIFT_F8_E5M2FNUZ, 2, 16, F8_FNUZ },
	{ WLIFT_F8_E8M0, 0, 127, F8_EXP },
};
#define NF8 (sizeof(f8fmts) / sizeof(f8fmts[0]))

static int f8_index(wlift_dtype t)
{
	for (size_t k = 0; k < NF8; k++)
		if (f8fmts[k].t == t)
			return (int)k;
	return -1;
}

int wlift__convert_supported(wlift_dtype from, wlift_dtype to)
{
	return from == to || (is_basic(from) && is_basic(to)) ||
	       (f8_index(from) >= 0 && is_basic(to));
}

static inline float u2f(uint32_t u)
{
	float f;
	memcpy(&f, &u, 4);
	return f;
}

static inline uint32_t f2u(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	return u;
}

static inline uint32_t bf16_to_u32(uint16_t h)
{
	return (uint32_t)h << 16;
}

static inline uint16_t u32_to_bf16(uint32_t u)
{
	if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep it a (quiet) NaN */
		return (uint16_t)((u >> 16) | 0x40);
	return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}

static inline uint32_t f16_to_u32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16;
	uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;

	if (exp == 0x1f)
		return sign | 0x7f800000u | (man << 13);
	if (exp == 0) {
		/* zero or subnormal: value = man * 2^-24, exact in float */
		float f = (float)man * 5.9604644775390625e-8f;
		return sign | f2u(f);
	}
	return sign | ((exp + 112) << 23) | (man << 13);
}

static inline uint16_t u32_to_f16(uint32_t u)
{
	uint32_t sign = (u >> 16) & 0x8000, a = u & 0x7fffffffu;

	if (a > 0x7f800000u)
		return (uint16_t)(sign | 0x7e00 | ((a >> 13) & 0x3ff));
	if (a >= 0x477ff000u) /* rounds to >= 65520: infinity */
		return (uint16_t)(sign | 0x7c00);
	if (a < 0x38800000u) {
		/* result subnormal or zero: scale so that rounding happens at 2^-24 */
		float f = u2f(a) * 16777216.0f; /* 2^24: value in units of 2^-24 */
		uint32_t m = (uint32_t)f, rem;
		float frac = f - (float)m;
		rem = frac > 0.5f || (frac == 0.5f && (m & 1));
		return (uint16_t)(sign | (m + rem));
	}
	/* normal: rebias and round to nearest even on the 13 dropped bits */
	a += ((uint32_t)(15 - 127) << 23) + 0xfffu + ((a >> 13) & 1);
	return (uint16_t)(sign | (a >> 13));
}

/* x * 2^e, exact (powers of two in double precision cover every F8 value; no libm). */
static double scale2(double x, int e)
{
	for (; e > 0; e--)
		x *= 2.0;
	for (; e < 0; e++)
		x *= 0.5;
	return x;
}

/* An F8 code's single-precision bits: sign, exponent field and mantissa field read by the
 * format's widths, the value computed in double precision and narrowed (exactly). NaNs are
 * the quiet NaN with the code's sign bit (0x80 for FNUZ), as ml_dtypes gives them. */
static uint32_t f8_decode(const struct f8fmt *f, unsigned c)
{
	unsigned ebits = 7 - (unsigned)f->mbits, emax = (1u << ebits) - 1;
	unsigned sign = f->kind == F8_EXP ? 0 : c >> 7;
	unsigned e = (c >> f->mbits) & emax, m = c & ((1u << f->mbits) - 1);
	double v;

	if (f->kind == F8_EXP) {
		if (c == 0xff)
			return 0x7fc00000u;
		return f2u((float)scale2(1.0, (int)c - f->bias));
	}
	if ((f->kind == F8_FNUZ && c == 0x80) ||
	    (f->kind == F8_FN && e == emax && m == (1u << f->mbits) - 1) ||
	    (f->kind == F8_IEEE && e == emax && m))
		return (uint32_t)sign << 31 | 0x7fc00000u;
	if (f->kind == F8_IEEE && e == emax)
		return (uint32_t)sign << 31 | 0x7f800000u;
	if (e == 0) /* subnormal: m * 2^(1 - bias - mbits) */
		v = scale2((double)m, 1 - f->bias - f->mbits);
	else
		v = scale2(1.0 + (double)m / (double)(1u << f->mbits), (int)e - f->bias);
	return (uint32_t)sign << 31 | f2u((float)v);
}

/* The tables: F32 bits, F16 and BF16 per format and code. */
static uint32_t f8_f32[NF8][256];
static uint16_t f8_f16[NF8][256], f8_bf16[NF8][256];
static pthread_once_t f8_once = PTHREAD_ONCE_INIT;


static void f8_tables(void)
{
	for (size_t k = 0; k < NF8; k++)
		for (unsigned c = 0; c < 256; c++) {
			uint32_t u = f8_decode(&f8fmts[k], c);
			f8_f32[k][c] = u;
			f8_f16[k][c] = u32_to_f16(u);
			f8_bf16[k][c] = u32_to_bf16(u);
		}
}

/* Element loads and stores through memcpy: mapped-mode tensors sit at whatever offset the file
 * gives them, which need not be aligned to the element size. Compilers turn these into plain
 * (unaligned) loads and stores and still vectorise the loops. */
static inline uint16_t ld16(const uint8_t *p, size_t i)
{
	uint16_t v;
	memcpy(&v, p + 2 * i, 2);
	return v;
}

static inline uint32_t ld32(const uint8_t *p, size_t i)
{
	uint32_t v;
	memcpy(&v, p + 4 * i, 4);
	return v;
}

static inline void st16(uint8_t *p, size_t i, uint16_t v)
{
	memcpy(p + 2 * i, &v, 2);
}

static inline void st32(uint8_t *p, size_t i, uint32_t v)
{
	memcpy(p + 4 * i, &v, 4);
}

int wlift__convert_cpu(wlift_dtype from, wlift_dtype to, const void *src, void *dst, size_t n)
{
	const uint8_t *s = src;
	uint8_t *o = dst;

	if (from == to) {
		if (src != dst)
			memmove(dst, src, n * (wlift_dtype_bits(from) / 8));
		return 0;
	}
	if (from == WLIFT_F32 && to == WLIFT_BF16) {
		for (size_t i = 0; i < n; i++)
			st16(o, i, u32_to_bf16(ld32(s, i)));
	} else if (from == WLIFT_F32 && to == WLIFT_F16) {
		for (size_t i = 0; i < n; i++)
			st16(o, i, u32_to_f16(ld32(s, i)));
	} else if (from == WLIFT_BF16 && to == WLIFT_F32) {
		for (size_t i = 0; i < n; i++)
			st32(o, i, bf16_to_u32(ld16(s, i)));
	} else if (from == WLIFT_F16 && to == WLIFT_F32) {
		for (size_t i = 0; i < n; i++)
			st32(o, i, f16_to_u32(ld16(s, i)));
	} else if (from == WLIFT_F16 && to == WLIFT_BF16) {
		for (size_t i = 0; i < n; i++)
			st16(o, i, u32_to_bf16(f16_to_u32(ld16(s, i))));
	} else if (from == WLIFT_BF16 && to == WLIFT_F16) {
		for (size_t i = 0; i < n; i++)
			st16(o, i, u32_to_f16(bf16_to_u32(ld16(s, i))));
	} else if (f8_index(from) >= 0 && is_basic(to)) {
		int k = f8_index(from);

		pthread_once(&f8_once, f8_tables);
		if (to == WLIFT_F32) {
			for (size_t i = 0; i < n; i++)
				st32(o, i, f8_f32[k][s[i]]);
		} else {
			const uint16_t *t = to == WLIFT_F16 ? f8_f16[k] : f8_bf16[k];
			for (size_t i = 0; i < n; i++)
				st16(o, i, t[s[i]]);
		}
	} else {
		return WLIFT_EUNSUPPORTED;
	}
	return 0;
}
