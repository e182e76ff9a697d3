/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gpucheck: the GPU path against whatever driver is installed (libcuda.so.1, or the library
 * WEIGHTLIFT_CUDA_LIBRARY names: the fake driver in CI), for bench/gpu.sh on a lent GPU.
 *
 *   gpucheck info                       driver version, devices, names, memory
 *   gpucheck verify CKPT [DEVICE...]    load CKPT onto each device (default cuda:0), copy every
 *                                       tensor back (cuMemcpyDtoH) and compare with a CPU load
 *   gpucheck h2d [MIB] [DEVICE]         the pinned host-to-device limit: MIB (default 4096)
 *                                       copied from one 256 MiB pinned buffer in 8 MiB pieces
 *                                       on 4 streams, best of 3; prints GB/s
 *
 * Public API plus the driver loaded with dlopen (its few prototypes declared here), so the
 * binary built on a machine without CUDA runs on one with it. Exit 0 on success, 1 on a
 * mismatch or failure, 77 when there is no driver.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "weightlift.h"

typedef int CUresult;
typedef unsigned long long CUdeviceptr;
typedef void *CUcontext, *CUstream, *CUevent;

static struct {
	CUresult (*init)(unsigned);
	CUresult (*version)(int *);
	CUresult (*count)(int *);
	CUresult (*name)(char *, int, int);
	CUresult (*total)(size_t *, int);
	CUresult (*retain)(CUcontext *, int);
	CUresult (*release)(int);
	CUresult (*push)(CUcontext);
	CUresult (*pop)(CUcontext *);
	CUresult (*alloc)(CUdeviceptr *, size_t);
	CUresult (*free_)(CUdeviceptr);
	CUresult (*hostalloc)(void **, size_t, unsigned);
	CUresult (*freehost)(void *);
	CUresult (*htod)(CUdeviceptr, const void *, size_t, CUstream);
	CUresult (*dtoh)(void *, CUdeviceptr, size_t);
	CUresult (*screate)(CUstream *, unsigned);
	CUresult (*sdestroy)(CUstream);
	CUresult (*ssync)(CUstream);
} cu;

static int resolve(void *h, const char *name, void *fnp, size_t n)
{
	void *p = dlsym(h, name);

	if (!p) {
		fprintf(stderr, "gpucheck: the driver lacks %s\n", name);
		return -1;
	}
	memcpy(fnp, &p, n);
	return 0;
}

#define R(field, sym) (resolve(h, sym, &cu.field, sizeof(cu.field)) ? -1 : 0)

static int driver(void)
{
	const char *lib = getenv("WEIGHTLIFT_CUDA_LIBRARY");
	void *h = dlopen(lib && *lib ? lib : "libcuda.so.1", RTLD_NOW | RTLD_LOCAL);

	if (!h) {
		fprintf(stderr, "gpucheck: no CUDA driver: %s\n", dlerror());
		return 77;
	}
	if (R(init, "cuInit") || R(version, "cuDriverGetVersion") || R(count, "cuDeviceGetCount") ||
	    R(name, "cuDeviceGetName") || R(total, "cuDeviceTotalMem_v2") ||
	    R(retain, "cuDevicePrimaryCtxRetain") || R(release, "cuDevicePrimaryCtxRelease_v2") ||
	    R(push, "cuCtxPushCurrent_v2") || R(pop, "cuCtxPopCurrent_v2") ||
	    R(alloc, "cuMemAlloc_v2") || R(free_, "cuMemFree_v2") ||
	    R(hostalloc, "cuMemHostAlloc") || R(freehost, "cuMemFreeHost") ||
	    R(htod, "cuMemcpyHtoDAsync_v2") || R(dtoh, "cuMemcpyDtoH_v2") ||
	    R(screate, "cuStreamCreate") || R(sdestroy, "cuStreamDestroy_v2") ||
	    R(ssync, "cuStreamSynchronize"))
		return 1;
	if (cu.init(0)) {
		fprintf(stderr, "gpucheck: cuInit failed (no device?)\n");
		return 77;
	}
	return 0;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int ordinal(const char *dev)
{
	if (strcmp(dev, "cuda") == 0)
		return 0;
	return atoi(strncmp(dev, "cuda:", 5) == 0 ? dev + 5 : dev);
}

static int info(void)
{
	int v = 0, n = 0;

	cu.version(&v);
	cu.count(&n);
	printf("driver %d.%d, %d device%s\n", v / 1000, v % 1000 / 10, n, n == 1 ? "" : "s");
	for (int i = 0; i < n; i++) {
		char name[256] = "";
		size_t tot = 0;
		cu.name(name, sizeof(name), i);
		cu.total(&tot, i);
		printf("cuda:%d %s, %.1f GiB\n", i, name, (double)tot / (1 << 30));
	}
	return 0;
}

static int verify(const char *path, const char *dev)
{
	wlift_load_opts o = WLIFT_LOAD_OPTS_INIT;
	wlift_result *cpu = NULL, *gpu = NULL;
	wlift_ckpt *ck = NULL;
	wlift_stats st;
	wlift_diag d;
	CUcontext c = NULL, old;
	uint8_t *buf = NULL;
	size_t cap = 64u << 20;
	int rc = 1, idx = ordinal(dev), pushed = 0;
	uint64_t bytes = 0;

	wlift_diag_clear(&d);
	if (getenv("GPUCHECK_DTYPE") && *getenv("GPUCHECK_DTYPE")) {
		/* Both loads convert: the device kernels must equal the CPU converter. */
		int t = wlift_dtype_from_name(getenv("GPUCHECK_DTYPE"));
		if (t < 0) {
			fprintf(stderr, "gpucheck: GPUCHECK_DTYPE=%s is not a dtype\n",
				getenv("GPUCHECK_DTYPE"));
			goto out;
		}
		o.dtype = (wlift_dtype)t;
	}
	if (wlift_open(NULL, path, &ck, &d) || wlift_load(ck, &o, NULL, NULL, &cpu, &d)) {
		fprintf(stderr, "gpucheck: %s\n", d.message);
		goto out;
	}
	o.device = dev;
	if (getenv("GPUCHECK_GDS") && *getenv("GPUCHECK_GDS")) {
		/* GPU Direct Storage for the device load: auto, on or off. */
		const char *g = getenv("GPUCHECK_GDS");
		o.gds = strcmp(g, "on") == 0	? WLIFT_GDS_ON
			: strcmp(g, "off") == 0 ? WLIFT_GDS_OFF
						: WLIFT_GDS_AUTO;
	}
	if (wlift_load(ck, &o, NULL, NULL, &gpu, &d)) {
		fprintf(stderr, "gpucheck: %s: %s\n", dev, d.message);
		goto out;
	}
	wlift_result_stats(gpu, &st);
	buf = malloc(cap);
	if (!buf || cu.retain(&c, idx) || cu.push(c))
		goto out;
	pushed = 1;
	for (size_t i = 0; i < wlift_result_count(gpu); i++) {
		wlift_tensor_view g, h;
		wlift_tensor_get(wlift_result_tensor(gpu, i), &g);
		wlift_tensor_get(wlift_result_tensor(cpu, i), &h);
		if (g.device != idx || g.nbytes != h.nbytes || (uintptr_t)g.data % 256) {
			fprintf(stderr, "gpucheck: %s: device %d, %llu bytes at %p\n", g.info.name,
				g.device, (unsigned long long)g.nbytes, g.data);
			goto out;
		}
		for (uint64_t off = 0; off < g.nbytes; off += cap) {
			size_t k = g.nbytes - off < cap ? (size_t)(g.nbytes - off) : cap;
			if (cu.dtoh(buf, (CUdeviceptr)(uintptr_t)g.data + off, k) ||
			    memcmp(buf, (const uint8_t *)h.data + off, k)) {
				fprintf(stderr, "gpucheck: %s: bytes differ at %llu\n", g.info.name,
					(unsigned long long)off);
				goto out;
			}
		}
		bytes += g.nbytes;
	}
	printf("verify %s: %zu tensors, %llu bytes equal the CPU load%s%s; %.2f GB/s (%s, chunk "
	       "%zu, gds %s: %llu bytes by cuFile)\n",
	       dev, wlift_result_count(gpu), (unsigned long long)bytes,
	       o.dtype != WLIFT_DTYPE_NONE ? ", converted to " : "",
	       o.dtype != WLIFT_DTYPE_NONE ? wlift_dtype_name(o.dtype) : "", st.gb_per_s,
	       st.strategy, st.chunk_bytes, st.gds ? st.gds : "off",
	       (unsigned long long)st.gds_bytes);
	rc = 0;
out:
	if (pushed)
		cu.pop(&old);
	if (c)
		cu.release(idx);
	free(buf);
	wlift_result_free(gpu);
	wlift_result_free(cpu);
	wlift_ckpt_close(ck);
	return rc;
}

static int h2d(size_t mib, const char *dev)
{
	const size_t piece = 8u << 20, host_bytes = 256u << 20;
	size_t total = mib << 20, dev_bytes = total < (1u << 30) ? total : (1u << 30);
	CUcontext c, old;
	CUstream s[4] = { 0 };
	CUdeviceptr dp = 0;
	void *hp = NULL;
	double best = 0;
	int idx = ordinal(dev), rc = 1;

	if (cu.retain(&c, idx) || cu.push(c))
		return 1;
	if (cu.alloc(&dp, dev_bytes) || cu.hostalloc(&hp, host_bytes, 1))
		goto out;
	memset(hp, 0x5a, host_bytes);
	for (int i = 0; i < 4; i++)
		if (cu.screate(&s[i], 1))
			goto out;
	for (int round = 0; round < 3; round++) {
		double t0 = now(), gbs;
		for (size_t off = 0, i = 0; off < total; off += piece, i++)
			if (cu.htod(dp + off % dev_bytes, (uint8_t *)hp + off % host_bytes, piece,
				    s[i % 4]))
				goto out;
		for (int i = 0; i < 4; i++)
			cu.ssync(s[i]);
		gbs = (double)total / (now() - t0) / 1e9;
		if (gbs > best)
			best = gbs;
	}
	printf("h2d %s: pinned host-to-device limit %.2f GB/s (%zu MiB in 8 MiB pieces, 4 "
	       "streams, best of 3)\n",
	       dev, best, mib);
	rc = 0;
out:
	for (int i = 0; i < 4; i++)
		if (s[i])
			cu.sdestroy(s[i]);
	if (hp)
		cu.freehost(hp);
	if (dp)
		cu.free_(dp);
	cu.pop(&old);
	cu.release(idx);
	if (rc)
		fprintf(stderr, "gpucheck: h2d failed\n");
	return rc;
}

int main(int argc, char **argv)
{
	int rc;

	if (argc < 2) {
		fprintf(stderr, "usage: gpucheck info | verify CKPT [DEVICE...] | h2d [MIB] [DEVICE]\n");
		return 2;
	}
	rc = driver();
	if (rc)
		return rc;
	if (strcmp(argv[1], "info") == 0)
		return info();
	if (strcmp(argv[1], "verify") == 0 && argc >= 3) {
		if (argc == 3)
			return verify(argv[2], "cuda:0");
		for (int i = 3; i < argc; i++)
			if ((rc = verify(argv[2], argv[i])) != 0)
				return rc;
		return 0;
	}
	if (strcmp(argv[1], "h2d") == 0)
		return h2d(argc > 2 ? (size_t)atoi(argv[2]) : 4096, argc > 3 ? argv[3] : "cuda:0");
	fprintf(stderr, "gpucheck: unknown command %s\n", argv[1]);
	return 2;
}
