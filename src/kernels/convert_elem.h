/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The device dtype conversions, one element at a time, in code that compiles both as CUDA
 * (convert.cu, the kernels) and as C (the fake driver's kernels, fake/fake_cuda.c, and the
 * test that compares them with the CPU converter, src/sink/convert_cpu.c, for every 16-bit
 * input). Bit manipulation and IEEE single-precision arithmetic only (no fast-math, no
 * flush-to-zero: nvcc's defaults), so the device results equal the CPU's bit for bit:
 * F32 -> BF16 rounds to nearest even and keeps NaNs quiet; F16 <-> F32 is exact IEEE 754
 * binary16 with subnormals, infinities and NaNs. F8 inputs (E4M3FN, E5M2, E4M3FNUZ,
 * E5M2FNUZ, E8M0FNU) widen: decoded exactly into single precision, then rounded as an F32
 * input would be (exact for every code except E8M0 -> F16, whose powers of two beyond
 * F16's range round to infinity or zero). Their NaNs become the target's quiet NaN with the
 * code's sign bit (FNUZ's one NaN, 0x80, is negative), as ml_dtypes converts them. Elements
 * are read and written byte-wise (memcpy), so any alignment works.
 */
#ifndef WLIFT_KERNELS_CONVERT_ELEM_H
#define WLIFT_KERNELS_CONVERT_ELEM_H

#include <stdint.h>
#include <string.h>

#ifdef __CUDACC__
#define WLIFT_KFN static __host__ __device__ __forceinline__
#else
#define WLIFT_KFN static inline
#endif

/* The kernels: X(id, name, input bytes, output bytes). The kernel of pair id is
 * "wlift_cvt_" name, with parameters (const uint8_t *src, uint8_t *dst, uint64_t n). */
#define WLIFT_K_PAIRS(X)                                                                    \
	X(WLIFT_K_F32_BF16, f32_bf16, 4, 2)                                                 \
	X(WLIFT_K_F32_F16, f32_f16, 4, 2)                                                   \
	X(WLIFT_K_BF16_F32, bf16_f32, 2, 4)                                                 \
	X(WLIFT_K_F16_F32, f16_f32, 2, 4)                                                   \
	X(WLIFT_K_F16_BF16, f16_bf16, 2, 2)                                                 \
	X(WLIFT_K_BF16_F16, bf16_f16, 2, 2)                                                 \
	WLIFT_K_F8_PAIRS(X, E4M3, f8e4m3)                                                   \
	WLIFT_K_F8_PAIRS(X, E5M2, f8e5m2)                                                   \
	WLIFT_K_F8_PAIRS(X, E4M3FNUZ, f8e4m3fnuz)                                           \
	WLIFT_K_F8_PAIRS(X, E5M2FNUZ, f8e5m2fnuz)                                           \
	WLIFT_K_F8_PAIRS(X, E8M0, f8e8m0)

/* The three widenings of one F8 format, in the order F32, F16, BF16 (wlift_k_one relies on
 * it), following the formats of enum wlift_k_f8 from WLIFT_K_F8_FIRST on. */
#define WLIFT_K_F8_PAIRS(X, FMT, fmt)                                                       \
	X(WLIFT_K_##FMT##_F32, fmt##_f32, 1, 4)                                             \
	X(WLIFT_K_##FMT##_F16, fmt##_f16, 1, 2)                                             \
	X(WLIFT_K_##FMT##_BF16, fmt##_bf16, 1, 2)

enum {
#define WLIFT_K_ENUM(id, name, in, out) id,
	WLIFT_K_PAIRS(WLIFT_K_ENUM)
#undef WLIFT_K_ENUM
	WLIFT_K_NPAIRS
};

/* The F8 formats, in the order of WLIFT_K_PAIRS. */
enum wlift_k_f8 { WLIFT_K_E4M3, WLIFT_K_E5M2, WLIFT_K_E4M3FNUZ, WLIFT_K_E5M2FNUZ, WLIFT_K_E8M0 };
#define WLIFT_K_F8_FIRST WLIFT_K_E4M3_F32

WLIFT_KFN float wlift_k_u2f(uint32_t u)
{
	float f;
	memcpy(&f, &u, 4);
	return f;
}

WLIFT_KFN uint32_t wlift_k_f2u(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	return u;
}

WLIFT_KFN uint32_t wlift_k_bf16_to_f32(uint16_t h)
{
	return (uint32_t)h << 16;
}

WLIFT_KFN uint16_t wlift_k_f32_to_bf16(uint32_t u)
{
	if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: stays a quiet NaN */
		return (uint16_t)((u >> 16) | 0x40);
	return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

WLIFT_KFN uint32_t wlift_k_f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
	uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;

	if (e == 0x1f)
		return sign | 0x7f800000u | (m << 13);
	if (e == 0) /* zero or subnormal: m * 2^-24, exact in single precision */
		return sign | wlift_k_f2u((float)m * 5.9604644775390625e-8f);
	return sign | ((e + 112) << 23) | (m << 13);
}

WLIFT_KFN uint16_t wlift_k_f32_to_f16(uint32_t u)
{
	uint32_t sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;

	if (a > 0x7f800000u)
		return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
	if (a >= 0x477ff000u) /* rounds to 65520 or more: infinity */
		return (uint16_t)(sign | 0x7c00u);
	if (a < 0x38800000u) {
		/* subnormal or zero: in units of 2^-24, rounded to nearest even */
		float f = wlift_k_u2f(a) * 16777216.0f;
		uint32_t m = (uint32_t)f, r;
		float frac = f - (float)m;
		r = frac > 0.5f || (frac == 0.5f && (m & 1u));
		return (uint16_t)(sign | (m + r));
	}
	a += ((uint32_t)(15 - 127) << 23) + 0xfffu + ((a >> 13) & 1u);
	return (uint16_t)(sign | (a >> 13));
}

/* An F8 code of format f as single-precision bits, exactly. Normal codes shift their
 * exponent and mantissa into place and rebias with one add; subnormal codes are their
 * mantissa times the smallest subnormal, exact in single precision. */
WLIFT_KFN uint32_t wlift_k_f8_to_f32(int f, uint8_t c)
{
	uint32_t s = (uint32_t)(c & 0x80u) << 24, a = c & 0x7fu;
	const uint32_t nan = s | 0x7fc00000u;

	switch (f) {
	case WLIFT_K_E4M3: /* bias 7, no infinity, S.1111.111 NaN */
		if (a == 0x7fu)
			return nan;
		if (a < 8u)
			return s | wlift_k_f2u((float)a * 0.001953125f); /* 2^-9 */
		return s | ((a << 20) + (120u << 23));
	case WLIFT_K_E5M2: /* bias 15, IEEE: exponent 31 is infinity or NaN */
		if (a > 0x7cu)
			return nan;
		if (a == 0x7cu)
			return s | 0x7f800000u;
		if (a < 4u)
			return s | wlift_k_f2u((float)a * 1.52587890625e-05f); /* 2^-16 */
		return s | ((a << 21) + (112u << 23));
	case WLIFT_K_E4M3FNUZ: /* bias 8, no infinity, no -0: 0x80 is the NaN */
		if (c == 0x80u)
			return nan;
		if (a < 8u)
			return s | wlift_k_f2u((float)a * 0.0009765625f); /* 2^-10 */
		return s | ((a << 20) + (119u << 23));
	case WLIFT_K_E5M2FNUZ: /* bias 16, no infinity, no -0: 0x80 is the NaN */
		if (c == 0x80u)
			return nan;
		if (a < 4u)
			return s | wlift_k_f2u((float)a * 7.62939453125e-06f); /* 2^-17 */
		return s | ((a << 21) + (111u << 23));
	default: /* E8M0: unsigned powers of two 2^(c - 127), 0xff the NaN */
		if (c == 0xffu)
			return 0x7fc00000u;
		if (c == 0)
			return 0x00400000u; /* 2^-127, a single-precision subnormal */
		return (uint32_t)c << 23;
	}
}

/* Element i of pair from src to dst. */
WLIFT_KFN void wlift_k_one(int pair, const uint8_t *src, uint8_t *dst, uint64_t i)
{
	uint16_t h;
	uint32_t w;

	switch (pair) {
	case WLIFT_K_F32_BF16:
		memcpy(&w, src + 4 * i, 4);
		h = wlift_k_f32_to_bf16(w);
		memcpy(dst + 2 * i, &h, 2);
		break;
	case WLIFT_K_F32_F16:
		memcpy(&w, src + 4 * i, 4);
		h = wlift_k_f32_to_f16(w);
		memcpy(dst + 2 * i, &h, 2);
		break;
	case WLIFT_K_BF16_F32:
		memcpy(&h, src + 2 * i, 2);
		w = wlift_k_bf16_to_f32(h);
		memcpy(dst + 4 * i, &w, 4);
		break;
	case WLIFT_K_F16_F32:
		memcpy(&h, src + 2 * i, 2);
		w = wlift_k_f16_to_f32(h);
		memcpy(dst + 4 * i, &w, 4);
		break;
	case WLIFT_K_F16_BF16:
		memcpy(&h, src + 2 * i, 2);
		h = wlift_k_f32_to_bf16(wlift_k_f16_to_f32(h));
		memcpy(dst + 2 * i, &h, 2);
		break;
	case WLIFT_K_BF16_F16:
		memcpy(&h, src + 2 * i, 2);
		h = wlift_k_f32_to_f16(wlift_k_bf16_to_f32(h));
		memcpy(dst + 2 * i, &h, 2);
		break;
	default:
		if (pair >= WLIFT_K_F8_FIRST && pair < WLIFT_K_NPAIRS) {
			/* Constant in each kernel: the compiler keeps one format and target. */
			int f = (pair - WLIFT_K_F8_FIRST) / 3, to = (pair - WLIFT_K_F8_FIRST) % 3;

			w = wlift_k_f8_to_f32(f, src[i]);
			if (to == 0) {
				memcpy(dst + 4 * i, &w, 4);
			} else {
				h = to == 1 ? wlift_k_f32_to_f16(w) : wlift_k_f32_to_bf16(w);
				memcpy(dst + 2 * i, &h, 2);
			}
		}
		break;
	}
}

#endif
