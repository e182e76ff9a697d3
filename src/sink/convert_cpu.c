/* SPDX-License-Identifier: Apache-2.0 */
/*
 * CPU dtype conversion. F32 -> BF16 rounds to nearest even and keeps NaNs quiet; F16 <-> F32
 * handles subnormals, infinities and NaNs exactly (IEEE 754 binary16). Bit manipulation only,
 * so the loops vectorise and the results do not depend on the FPU's rounding mode.
 */
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

int wlift__convert_supported(wlift_dtype from, wlift_dtype to)
{
	return from == to || (is_basic(from) && is_basic(to));
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
	} else {
		return WLIFT_EUNSUPPORTED;
	}
	return 0;
}
