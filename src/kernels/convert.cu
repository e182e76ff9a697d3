// SPDX-License-Identifier: Apache-2.0
// Device dtype conversion kernels, one per pair of WLIFT_K_PAIRS (convert_elem.h), compiled
// to PTX by tools/gen-ptx.sh (nvcc -ptx; the PTX and its C embedding, convert_ptx.c, are
// committed so that builds without the CUDA toolkit have them) and loaded at run time with
// cuModuleLoadData (src/sink/cuda_kernels.c). No CUDA runtime is involved. Each kernel is a
// grid-stride loop over n elements; in place only when the output is not wider than the
// input and not narrower either (same-size pairs: each element is read before its own bytes
// are written, by the same thread); the sink converts narrowing pairs out of place.
#include "convert_elem.h"

#define WLIFT_K_KERNEL(id, name, in, out)                                                   \
	extern "C" __global__ void wlift_cvt_##name(const uint8_t *src, uint8_t *dst,      \
						    uint64_t n)                             \
	{                                                                                   \
		uint64_t step = (uint64_t)gridDim.x * blockDim.x;                          \
		for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;   \
		     i += step)                                                             \
			wlift_k_one(id, src, dst, i);                                       \
	}
WLIFT_K_PAIRS(WLIFT_K_KERNEL)
