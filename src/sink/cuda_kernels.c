/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Loading and launching the device conversion kernels. The image is the PTX of
 * src/kernels/convert.cu, embedded line by line (kernels/convert_ptx.c) and joined here; the
 * driver JIT-compiles it for the device at cuModuleLoadData (and caches the result itself).
 * Launches: 256 threads a block, a grid-stride loop, at most 65535 blocks.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/convert_elem.h"
#include "kernels/kernels.h"
#include "sink/cuda_kernels.h"

#define BLOCK 256u
#define MAX_GRID 65535u

static const struct {
	const char *fn;
	unsigned in, out;
} pairs[WLIFT_K_NPAIRS] = {
#define WLIFT_K_ROW(id, name, i, o) [id] = { "wlift_cvt_" #name, i, o },
	WLIFT_K_PAIRS(WLIFT_K_ROW)
#undef WLIFT_K_ROW
};

struct wlift__cuda_kernels {
	const struct wlift__cuda *cu;
	CUmodule mod;
	CUfunction fn[WLIFT_K_NPAIRS];
};

int wlift__cuda_kernel_pair(wlift_dtype from, wlift_dtype to, unsigned *in, unsigned *out)
{
	int p = -1;

	if (from == WLIFT_F32 && to == WLIFT_BF16)
		p = WLIFT_K_F32_BF16;
	else if (from == WLIFT_F32 && to == WLIFT_F16)
		p = WLIFT_K_F32_F16;
	else if (from == WLIFT_BF16 && to == WLIFT_F32)
		p = WLIFT_K_BF16_F32;
	else if (from == WLIFT_F16 && to == WLIFT_F32)
		p = WLIFT_K_F16_F32;
	else if (from == WLIFT_F16 && to == WLIFT_BF16)
		p = WLIFT_K_F16_BF16;
	else if (from == WLIFT_BF16 && to == WLIFT_F16)
		p = WLIFT_K_BF16_F16;
	else if (to == WLIFT_F32 || to == WLIFT_F16 || to == WLIFT_BF16) {
		/* F8: three pairs per format, to F32, F16, BF16 (convert_elem.h) */
		static const wlift_dtype f8[] = { WLIFT_F8_E4M3, WLIFT_F8_E5M2, WLIFT_F8_E4M3FNUZ,
						  WLIFT_F8_E5M2FNUZ, WLIFT_F8_E8M0 };
		for (int f = 0; f < 5; f++)
			if (from == f8[f])
				p = WLIFT_K_F8_FIRST + 3 * f +
				    (to == WLIFT_F32 ? 0 : to == WLIFT_F16 ? 1 : 2);
	}
	if (p >= 0) {
		*in = pairs[p].in;
		*out = pairs[p].out;
	}
	return p;
}

int wlift__cuda_kernels_load(const struct wlift__cuda *cu, const char *name,
			     struct wlift__cuda_kernels **out, wlift_diag *d)
{
	struct wlift__cuda_kernels *k = NULL;
	size_t len = 0;
	char *img = NULL;
	const char *what = "cuModuleLoadData";
	CUresult r;
	int ret = 0;

	*out = NULL;
	if (!cu->ModuleLoadData || !cu->ModuleUnload || !cu->ModuleGetFunction ||
	    !cu->LaunchKernel)
		return wlift__diag_set(d, WLIFT_EUNSUPPORTED, NULL, NULL, -1, "cuda.kernels",
				       "%s: the CUDA driver %s lacks the module entry points, so "
				       "dtype conversion on the device is not supported",
				       name, cu->path);
	for (size_t i = 0; wlift__convert_ptx[i]; i++)
		len += strlen(wlift__convert_ptx[i]);
	k = calloc(1, sizeof(*k));
	img = malloc(len + 1);
	if (!k || !img) {
		ret = wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
		goto out;
	}
	len = 0;
	for (size_t i = 0; wlift__convert_ptx[i]; i++) {
		size_t n = strlen(wlift__convert_ptx[i]);
		memcpy(img + len, wlift__convert_ptx[i], n);
		len += n;
	}
	img[len] = 0;
	k->cu = cu;
	r = cu->ModuleLoadData(&k->mod, img);
	for (int p = 0; r == CUDA_SUCCESS && p < WLIFT_K_NPAIRS; p++) {
		what = pairs[p].fn;
		r = cu->ModuleGetFunction(&k->fn[p], k->mod, pairs[p].fn);
	}
	if (r != CUDA_SUCCESS) {
		int getfn = strncmp(what, "wlift_", 6) == 0;
		ret = wlift__diag_set(d, WLIFT_ECUDA, NULL, NULL, -1, "cuda.kernels",
				      "%s: cannot load the dtype conversion kernels: %s%s%s: %s",
				      name, getfn ? "cuModuleGetFunction(" : "", what,
				      getfn ? ")" : "", wlift__cuda_errtext(cu, r, NULL, 0));
		if (k->mod)
			cu->ModuleUnload(k->mod);
		goto out;
	}
	*out = k;
	k = NULL;
out:
	free(img);
	free(k);
	return ret;
}

static CUresult launch(const struct wlift__cuda_kernels *k, int pair, CUdeviceptr src,
		       CUdeviceptr dst, uint64_t n, CUstream s)
{
	uint64_t blocks = (n + BLOCK - 1) / BLOCK;
	void *args[3];

	args[0] = &src;
	args[1] = &dst;
	args[2] = &n;
	if (blocks > MAX_GRID)
		blocks = MAX_GRID;
	return k->cu->LaunchKernel(k->fn[pair], (unsigned)blocks, 1, 1, BLOCK, 1, 1, 0, s, args,
				   NULL);
}

CUresult wlift__cuda_convert(const struct wlift__cuda_kernels *k, int pair, CUdeviceptr src,
			     CUdeviceptr dst, uint64_t n, CUstream s)
{
	uint64_t a;
	CUresult r;

	if (!n)
		return CUDA_SUCCESS;
	if (src != dst || pairs[pair].out >= pairs[pair].in)
		return launch(k, pair, src, dst, n, s);
	/* In place, narrowing (4 -> 2 bytes): elements [a, 2a) write bytes [2a, 4a), which
	 * only elements below a (converted by earlier launches on the same stream) read. */
	r = launch(k, pair, src, dst, 1, s);
	for (a = 1; a < n && r == CUDA_SUCCESS; a *= 2) {
		uint64_t b = 2 * a < n ? 2 * a : n;
		r = launch(k, pair, src + a * pairs[pair].in, dst + a * pairs[pair].out, b - a, s);
	}
	return r;
}

void wlift__cuda_kernels_free(struct wlift__cuda_kernels *k)
{
	if (!k)
		return;
	if (k->mod)
		k->cu->ModuleUnload(k->mod);
	free(k);
}
