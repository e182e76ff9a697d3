/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The device dtype conversions, one element at a time, in code that compiles both as CUDA
 * (convert.cu, the kernels) and as C (the fake driver's kernels, fake/fake_cuda.c, and the
 * test that compares them with the CPU converter, src/sink/convert_cpu.c, for every 16-bit
 * input). Bit manipulation and IEEE single-precision arithmetic only (no fast-math, no
 * flush-to-zero: nvcc's defaults), so the device results equal the CPU's bit for bit:
 * F32 -> BF16 rounds to nearest even and keeps NaNs quiet; F16 <-> F32 is exact IEEE 754
 * binary16 with subnormals, infinities and NaNs. Elements are read and written byte-wise
 * (memcpy), so any alignment works.
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
	X(WLIFT_K_BF16_F16, bf16_f16, 2, 2)

enum {
#define WLIFT_K_ENUM(id, name, in, out) id,
	WLIFT_K_PAIRS(WLIFT_K_ENUM)
#undef WLIFT_K_ENUM
	WLIFT_K_NPAIRS
};

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
		break;
	}
}

#endif
