/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The CUDA sink end to end, against the fake driver (fake/, WLIFT_FAKECUDA names it): the
 * bytes on the "device" equal the file (read back with cuMemcpyDtoH), with a small ring
 * reused many times while copies complete out of order, buffered and O_DIRECT reads (device
 * fix-ups); every tensor 256-byte aligned; the cuMemcpyHtoDAsync sources always pinned;
 * injected copy errors (at the call and asynchronous) and out-of-device-memory fail with
 * clear messages and leave nothing behind on the device or pinned on the host; no driver,
 * no device, a bad index or device name, and out-of-range ring knobs; host memory bounded by
 * the ring while loading a checkpoint many times its size.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fake_cuda.h"
#include "common/numa.h"
#include "sink/convert_cpu.h"
#include "sink/cuda.h"
#include "sink/cuda_api.h"
#include "testutil.h"
#include "weightlift.h"

static const char *fake_path(void)
{
	const char *p = getenv("WLIFT_FAKECUDA");

	if (!p || !*p)
		exit(77); /* built without the fake */
	return p;
}

/* The fake driver, opened by path (the library already loaded it, or loads it the same). */
struct fake {
	void *h;
	fakecuda_stats_fn stats;
	CUresult (*retain)(CUcontext *, CUdevice);
	CUresult (*release)(CUdevice);
	CUresult (*push)(CUcontext);
	CUresult (*pop)(CUcontext *);
	CUresult (*dtoh)(void *, CUdeviceptr, size_t);
};

static void sym(void *h, const char *name, void *fnp, size_t n)
{
	void *p = dlsym(h, name);

	ck_assert_msg(p != NULL, "fake driver lacks %s", name);
	memcpy(fnp, &p, n);
}

static struct fake fake_open(void)
{
	struct fake f;

	f.h = dlopen(fake_path(), RTLD_NOW | RTLD_LOCAL);
	ck_assert_msg(f.h != NULL, "dlopen %s: %s", fake_path(), dlerror());
	sym(f.h, "fakecuda_stats", &f.stats, sizeof(f.stats));
	sym(f.h, "cuDevicePrimaryCtxRetain", &f.retain, sizeof(f.retain));
	sym(f.h, "cuDevicePrimaryCtxRelease_v2", &f.release, sizeof(f.release));
	sym(f.h, "cuCtxPushCurrent_v2", &f.push, sizeof(f.push));
	sym(f.h, "cuCtxPopCurrent_v2", &f.pop, sizeof(f.pop));
	sym(f.h, "cuMemcpyDtoH_v2", &f.dtoh, sizeof(f.dtoh));
	return f;
}

/* Make the fake device's primary context current on this thread (to read its memory back),
 * and undo that. */
static void dev_enter(struct fake *f, int device)
{
	CUcontext c;

	ck_assert_int_eq(f->retain(&c, device), CUDA_SUCCESS);
	ck_assert_int_eq(f->push(c), CUDA_SUCCESS);
}

static void dev_leave(struct fake *f, int device)
{
	CUcontext old;

	ck_assert_int_eq(f->pop(&old), CUDA_SUCCESS);
	ck_assert_int_eq(f->release(device), CUDA_SUCCESS);
}

/* Point the library at the fake (read at context creation) and set the fake's knobs (read
 * at its cuInit: each test runs in a process of its own). */
static wlift_ctx *ctx_fake(void)
{
	wlift_ctx *ctx;

	setenv("WEIGHTLIFT_CUDA_LIBRARY", fake_path(), 1);
	ck_assert_int_eq(wlift_ctx_create(&ctx, NULL, NULL), 0);
	return ctx;
}

/* Every tensor of r, read back from the device, equals the pattern at its data offset. */
static void check_device_bytes(struct fake *f, const wlift_result *r, int device)
{
	size_t cap = 1 << 20;
	uint8_t *buf = malloc(cap);

	ck_assert_ptr_nonnull(buf);
	dev_enter(f, device);
	for (size_t i = 0; i < wlift_result_count(r); i++) {
		wlift_tensor_view v;
		wlift_tensor_get(wlift_result_tensor(r, i), &v);
		ck_assert_int_eq(v.device, device);
		ck_assert_uint_eq(v.nbytes, v.info.nbytes);
		if (!v.nbytes)
			continue;
		ck_assert_msg((uintptr_t)v.data % 256 == 0, "%s at %p: not 256-byte aligned",
			      v.info.name, v.data);
		for (uint64_t o = 0; o < v.nbytes; o += cap) {
			size_t k = v.nbytes - o < cap ? (size_t)(v.nbytes - o) : cap;
			ck_assert_int_eq(f->dtoh(buf, (CUdeviceptr)(uintptr_t)v.data + o, k),
					 CUDA_SUCCESS);
			for (size_t j = 0; j < k; j++)
				if (buf[j] != wt_pat(v.info.data_begin + o + j))
					ck_abort_msg("%s: byte %llu is %u, the file has %u",
						     v.info.name, (unsigned long long)(o + j), buf[j],
						     wt_pat(v.info.data_begin + o + j));
		}
	}
	dev_leave(f, device);
	free(buf);
}

/* Nothing of the load is left in the driver: device memory, pinned host memory, streams,
 * events, context references; and the driver saw no misuse. */
static void check_nothing_held(struct fake *f)
{
	struct fakecuda_stats st;

	f->stats(&st);
	ck_assert_msg(st.violations == 0, "%u driver misuses; first: %s", st.violations,
		      st.violation);
	ck_assert_uint_eq(st.live_allocs, 0);
	ck_assert_uint_eq(st.live_bytes, 0);
	ck_assert_uint_eq(st.vmm_handles, 0);
	ck_assert_uint_eq(st.mapped_bytes, 0);
	ck_assert_uint_eq(st.reservations, 0);
	ck_assert_uint_eq(st.registered, 0);
	ck_assert_uint_eq(st.hostallocs, 0);
	ck_assert_uint_eq(st.streams, 0);
	ck_assert_uint_eq(st.events, 0);
	ck_assert_int_eq(st.ctx_refs, 0);
}

static const uint64_t mixed[] = { 1000, 3u << 20, 7, 0, (1u << 20) + 13, 255, 256, 4u << 20,
				  333333, 17, (2u << 20) + 1, 64, 5u << 20 };
#define NMIXED (sizeof(mixed) / sizeof(mixed[0]))

/* What the last load_check's load reported. */
static wlift_stats last_stats;

static void load_check(int strategy, int direct, const char *device, int index,
		       size_t ring_bytes, unsigned slots)
{
	const char *path = wt_path("mixed.safetensors");
	wlift_load_opts o = WLIFT_LOAD_OPTS_INIT;
	struct fakecuda_stats st;
	struct fake f;
	wlift_ctx *ctx;
	wlift_ckpt *ck;
	wlift_result *r;
	wlift_stats ls;
	wlift_diag d;
	uint64_t total;

	wt_make_u8_st(path, NMIXED, mixed, &total);
	ctx = ctx_fake();
	ck_assert_int_eq(wlift_open(ctx, path, &ck, NULL), 0);
	o.device = device;
	o.strategy = strategy;
	o.direct = direct;
	o.ring_bytes = ring_bytes;
	o.ring_slots = slots;
	o.threads = 4;
	wlift_diag_clear(&d);
	ck_assert_msg(wlift_load(ck, &o, NULL, NULL, &r, &d) == 0, "load: %s", d.message);
	f = fake_open();
	f.stats(&st);
	ck_assert_msg(st.violations == 0, "%u driver misuses; first: %s", st.violations,
		      st.violation);
	ck_assert_uint_eq(wlift_result_count(r), NMIXED);
	ck_assert_int_eq(wlift_result_stats(r, &ls), 0);
	ck_assert_uint_eq(ls.bytes, total);
	ck_assert_uint_le(ls.chunk_bytes, ring_bytes / slots);
	/* The ring was reused many times, and copies finished out of order. */
	ck_assert_uint_ge(st.htod_copies, 4 * slots);
	ck_assert_uint_ge(st.htod_bytes, total);
	ck_assert_uint_gt(st.out_of_order, 0);
	ck_assert_uint_le(st.registered_bytes, ring_bytes);
	check_device_bytes(&f, r, index);
	/* DLPack: CUDA device tensors, the device pointer itself, alive after the result's
	 * reference is gone (the export holds one). */
	{
		wlift_dl_managed_versioned *mv;
		wlift_dl_managed *m;
		wlift_tensor_view v;
		wlift_tensor_get(wlift_result_tensor(r, 1), &v);
		ck_assert_int_eq(wlift_tensor_dlpack_versioned(wlift_result_tensor(r, 1), 0, &mv,
							       NULL), 0);
		ck_assert_int_eq(wlift_tensor_dlpack(wlift_result_tensor(r, 7), 0, &m, NULL), 0);
		ck_assert_int_eq(mv->dl_tensor.device.device_type, WLIFT_DL_CUDA);
		ck_assert_int_eq(mv->dl_tensor.device.device_id, index);
		ck_assert_ptr_eq(mv->dl_tensor.data, v.data);
		ck_assert_int_eq(mv->dl_tensor.shape[0], (int64_t)mixed[1]);
		ck_assert_int_eq(m->dl_tensor.device.device_type, WLIFT_DL_CUDA);
		wlift_result_free(r);
		f.stats(&st);
		ck_assert_uint_gt(st.live_bytes, 0); /* the exports keep the memory */
		r = NULL;
		mv->deleter(mv);
		f.stats(&st);
		ck_assert_uint_gt(st.live_bytes, 0);
		m->deleter(m);
	}
	if (direct == WLIFT_DIRECT_ON)
		ck_assert_uint_gt(ls.fixups, 0); /* moved on the device */
	last_stats = ls;
	wlift_ckpt_close(ck);
	wlift_ctx_destroy(ctx);
	check_nothing_held(&f);
}

START_TEST(bytes_equal_pread)
{
	load_check(WLIFT_STRATEGY_PREAD, WLIFT_DIRECT_OFF, "cuda:1", 1, 1u << 20, 4);
}
END_TEST

START_TEST(bytes_equal_default_device)
{
	load_check(WLIFT_STRATEGY_AUTO, WLIFT_DIRECT_OFF, "cuda", 0, 2u << 20, 8);
}
END_TEST

static int odirect_ok(void)
{
	const char *p = wt_path("odirect_probe");
	int fd;

	wt_write_file(p, "x", 1);
	fd = open(p, O_RDONLY | O_DIRECT);
	if (fd < 0)
		return 0;
	close(fd);
	return 1;
}

START_TEST(bytes_equal_direct)
{
	if (!odirect_ok())
		exit(77);
	load_check(WLIFT_STRATEGY_URING, WLIFT_DIRECT_ON, "cuda:0", 0, 2u << 20, 4);
	/* Through io_uring the O_DIRECT reads go into the ring as fixed buffers. */
	if (strcmp(last_stats.strategy, "uring") == 0)
		ck_assert_uint_gt(last_stats.fixed_reads, 0);
}
END_TEST

/* WEIGHTLIFT_URING_FIXED=0: the same bytes, plain reads. */
START_TEST(direct_fixed_off)
{
	if (!odirect_ok())
		exit(77);
	setenv("WEIGHTLIFT_URING_FIXED", "0", 1);
	load_check(WLIFT_STRATEGY_URING, WLIFT_DIRECT_ON, "cuda:1", 1, 2u << 20, 4);
	ck_assert_uint_eq(last_stats.fixed_reads, 0);
	setenv("WEIGHTLIFT_URING_FIXED", "2", 1);
	{
		wlift_ctx *ctx = NULL;
		wlift_diag d;
		wlift_diag_clear(&d);
		ck_assert_int_eq(wlift_ctx_create(&ctx, NULL, &d), -EINVAL);
		ck_assert_msg(strstr(d.message, "WEIGHTLIFT_URING_FIXED must be 0 or 1"), "%s",
			      d.message);
	}
}
END_TEST

/* Registration refused (RLIMIT_MEMLOCK counts for a process without CAP_IPC_LOCK): the
 * reads fall back to plain ones, the bytes are the same. */
START_TEST(direct_fixed_refused)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct c[2];
	struct rlimit rl = { 64 << 10, 64 << 10 };

	if (!odirect_ok())
		exit(77);
	ck_assert_int_eq(syscall(SYS_capget, &h, c), 0);
	c[CAP_IPC_LOCK / 32].effective &= ~(1u << (CAP_IPC_LOCK % 32));
	ck_assert_int_eq(syscall(SYS_capset, &h, c), 0);
	if (getrlimit(RLIMIT_MEMLOCK, &rl) == 0 && rl.rlim_cur > (64 << 10)) {
		rl.rlim_cur = 64 << 10;
		ck_assert_int_eq(setrlimit(RLIMIT_MEMLOCK, &rl), 0);
	}
	load_check(WLIFT_STRATEGY_URING, WLIFT_DIRECT_ON, "cuda:0", 0, 2u << 20, 4);
	ck_assert_uint_eq(last_stats.fixed_reads, 0);
}
END_TEST

/* cuMemHostRegister refused: the ring comes from cuMemHostAlloc instead. */
START_TEST(register_fallback)
{
	setenv("FAKECUDA_FAIL_REGISTER", "1", 1);
	load_check(WLIFT_STRATEGY_PREAD, WLIFT_DIRECT_OFF, "cuda:0", 0, 1u << 20, 2);
}
END_TEST

/* A load that fails: the code, a message containing want, nothing left anywhere. */
static void expect_failure(const char *device, int code, const char *want)
{
	const char *path = wt_path("fail.safetensors");
	static const uint64_t sz[] = { 3u << 20, 1u << 20, 5u << 20, 123 };
	wlift_load_opts o = WLIFT_LOAD_OPTS_INIT;
	wlift_ctx *ctx;
	wlift_ckpt *ck;
	wlift_result *r = (wlift_result *)&o;
	wlift_diag d;
	uint64_t total;
	int ret;

	wt_make_u8_st(path, 4, sz, &total);
	ctx = ctx_fake();
	ck_assert_int_eq(wlift_open(ctx, path, &ck, NULL), 0);
	o.device = device;
	o.ring_bytes = 1u << 20;
	o.ring_slots = 4;
	wlift_diag_clear(&d);
	ret = wlift_load(ck, &o, NULL, NULL, &r, &d);
	ck_assert_msg(ret == code, "load returned %d (%s), expected %d; %s", ret,
		      wlift_errname(ret), code, d.message);
	ck_assert_ptr_null(r);
	ck_assert_int_eq(d.code, code);
	ck_assert_msg(strstr(d.message, want), "message \"%s\" lacks \"%s\"", d.message, want);
	fprintf(stderr, "%s: %s\n", wlift_errname(ret), d.message);
	wlift_ckpt_close(ck);
	wlift_ctx_destroy(ctx);
	if (code != WLIFT_ENODEV && code != -EINVAL) {
		struct fake f = fake_open();
		check_nothing_held(&f);
	}
}

START_TEST(copy_error)
{
	setenv("FAKECUDA_FAIL_COPY", "5", 1);
	expect_failure("cuda:0", WLIFT_ECUDA,
		       "cuda:0: cuMemcpyHtoDAsync of 262144 bytes to device offset");
}
END_TEST

START_TEST(async_copy_error)
{
	setenv("FAKECUDA_FAIL_ASYNC", "7", 1);
	expect_failure("cuda:1", WLIFT_ECUDA, "failed: CUDA_ERROR_ILLEGAL_ADDRESS");
}
END_TEST

START_TEST(out_of_device_memory)
{
	setenv("FAKECUDA_OOM_AT", "4M", 1);
	expect_failure("cuda:0", WLIFT_EDEVMEM,
		       "cuda:0: cannot allocate 9437312 bytes (9.0 MiB) of device memory");
}
END_TEST

/* The budget fails the load before any device memory is taken. */
START_TEST(device_budget)
{
	setenv("WEIGHTLIFT_MAX_DEVICE_BYTES", "9M", 1);
	expect_failure("cuda:0", WLIFT_EDEVMEM,
		       "cuda:0: the load needs 9437312 bytes (9.0 MiB) of device memory, more than "
		       "max_device_bytes = 9437184");
}
END_TEST

START_TEST(no_driver)
{
	wlift_ctx *ctx;
	wlift_ckpt *ck;
	wlift_result *r;
	wlift_load_opts o = WLIFT_LOAD_OPTS_INIT;
	wlift_diag d;
	uint64_t total, sz = 100;

	wt_make_u8_st(wt_path("nd.safetensors"), 1, &sz, &total);
	setenv("WEIGHTLIFT_CUDA_LIBRARY", "/nonexistent/libcuda.so.1", 1);
	ck_assert_int_eq(wlift_ctx_create(&ctx, NULL, NULL), 0);
	ck_assert_int_eq(wlift_open(ctx, wt_path("nd.safetensors"), &ck, NULL), 0);
	o.device = "cuda:0";
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift_load(ck, &o, NULL, NULL, &r, &d), WLIFT_ENODEV);
	ck_assert_ptr_null(r);
	ck_assert_msg(strstr(d.message, "device \"cuda:0\": cannot load the CUDA driver "
					"/nonexistent/libcuda.so.1"),
		      "%s", d.message);
	ck_assert_msg(strstr(d.message, "WEIGHTLIFT_CUDA_LIBRARY"), "%s", d.message);
	ck_assert(WLIFT_ERR_IS_GPU(d.code));
	wlift_ckpt_close(ck);
	wlift_ctx_destroy(ctx);
}
END_TEST

START_TEST(no_device)
{
	setenv("FAKECUDA_DEVICES", "0", 1);
	expect_failure("cuda:0", WLIFT_ENODEV, "no CUDA device (cuInit: CUDA_ERROR_NO_DEVICE");
}
END_TEST

START_TEST(bad_index)
{
	expect_failure("cuda:2", WLIFT_ENODEV,
		       "device \"cuda:2\": no such device (2 CUDA devices: cuda:0 .. cuda:1)");
}
END_TEST

START_TEST(one_device_bad_index)
{
	setenv("FAKECUDA_DEVICES", "1", 1);
	expect_failure("cuda:1", WLIFT_ENODEV, "no such device (1 CUDA device: cuda:0)");
}
END_TEST

START_TEST(bad_names)
{
	static const char *const bad[] = { "cuda:", "cuda:x", "cuda:-1", "cuda:1x", "gpu",
					   "cuda:99999999999", "cuda0", "CUDA:0" };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_failure(bad[i], -EINVAL, "not understood");
}
END_TEST

/* Ring knobs are range-checked before anything is opened. */
START_TEST(ring_knobs)
{
	static const struct {
		size_t bytes;
		unsigned slots;
		const char *want;
	} cases[] = {
		{ 1000, 4, "ring_bytes = 1000 is out of range" },
		{ 17ull << 30, 4, "out of range (1 MiB .. 16 GiB)" },
		{ 1u << 20, 1, "ring_slots = 1 is out of range (2 .. 1024)" },
		{ 1u << 20, 2000, "ring_slots = 2000" },
		{ 1u << 20, 32, "gives 32768-byte buffers (each must be 64 KiB .. 256 MiB)" },
		{ 8ull << 30, 2, "gives 4294967296-byte buffers" },
	};
	const char *path = wt_path("knobs.safetensors");
	uint64_t total, sz = 100;
	wlift_ctx *ctx;
	wlift_ckpt *ck;

	wt_make_u8_st(path, 1, &sz, &total);
	ctx = ctx_fake();
	ck_assert_int_eq(wlift_open(ctx, path, &ck, NULL), 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		wlift_load_opts o = WLIFT_LOAD_OPTS_INIT;
		wlift_result *r;
		wlift_diag d;
		o.device = "cuda:0";
		o.ring_bytes = cases[i].bytes;
		o.ring_slots = cases[i].slots;
		wlift_diag_clear(&d);
		ck_assert_int_eq(wlift_load(ck, &o, NULL, NULL, &r, &d), -EINVAL);
		ck_assert_msg(strstr(d.message, cases[i].want), "case %zu: %s", i, d.message);
	}
	wlift_ckpt_close(ck);
	wlift_ctx_destroy(ctx);
	setenv("WEIGHTLIFT_CUDA_RING_BYTES", "lots", 1);
	ck_assert_int_eq(wlift_ctx_create(&ctx, NULL, NULL), -EINVAL);
}
END_TEST

/* ---- device dtype conversion -------------------------------------------------------------- */

static const size_t conv_counts[] = { 1, 3, 7, 1000, 65537, 4099, 2 };
#define NCONV (sizeof(conv_counts) / sizeof(conv_counts[0]))

/* A checkpoint of NCONV tensors of dtype from (odd element counts: odd file offsets), random
 * bits (NaNs, infinities and subnormals among them); its data in *data. */
static void make_conv_st(const char *path, wlift_dtype from, uint8_t **data, size_t *len)
{
	unsigned eb = wlift_dtype_bits(from) / 8;
	char json[2048];
	size_t jl = 0, off = 0;
	uint32_t x = 2463534242u;

	jl += (size_t)snprintf(json + jl, sizeof(json) - jl, "{");
	for (size_t i = 0; i < NCONV; i++) {
		jl += (size_t)snprintf(json + jl, sizeof(json) - jl,
				       "%s\"c%zu\":{\"dtype\":\"%s\",\"shape\":[%zu],"
				       "\"data_offsets\":[%zu,%zu]}",
				       i ? "," : "", i, wlift_dtype_name(from), conv_counts[i], off,
				       off + conv_counts[i] * eb);
		off += conv_counts[i] * eb;
	}
	snprintf(json + jl, sizeof(json) - jl, "}");
	*data = malloc(off);
	ck_assert_ptr_nonnull(*data);
	for (size_t i = 0; i < off; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		(*data)[i] = (uint8_t)x;
	}
	*len = off;
	wt_write_st(path, json, *data, off);
}

static int fake_launches(struct fake *f)
{
	struct fakecuda_stats st;

	f->stats(&st);
	ck_assert_msg(st.violations == 0, "%u driver misuses; first: %s", st.violations,
		      st.violation);
	return (int)st.launches;
}

/* Every pair among F32, F16 and BF16, and every F8 format to each of them, converted on the
 * device (the kernels launched on the copy path once each tensor's bytes have landed;
 * narrowing in place, widening into the conversion area) equals the CPU converter bit for
 * bit, for buffered and O_DIRECT reads. */
START_TEST(device_conversion)
{
	static const wlift_dtype dt[] = { WLIFT_F32,	     WLIFT_F16,		WLIFT_BF16,
					  WLIFT_F8_E4M3,     WLIFT_F8_E5M2,	WLIFT_F8_E4M3FNUZ,
					  WLIFT_F8_E5M2FNUZ, WLIFT_F8_E8M0 };
	char path[4096]; /* wt_path's buffers rotate: odirect_ok's calls would reuse this one */
	wlift_ctx *ctx = ctx_fake();
	struct fake f;
	int launches = 0;

	snprintf(path, sizeof(path), "%s", wt_path("conv.safetensors"));
	for (size_t a = 0; a < sizeof(dt) / sizeof(dt[0]); a++) {
		uint8_t *data;
		size_t len;
		wlift_ckpt *ck;

		make_conv_st(path, dt[a], &data, &len);
		ck_assert_int_eq(wlift_open(ctx, path, &ck, NULL), 0);
		for (size_t b = 0; b < 3; b++) {
			for (int direct = 0; direct < 2; direct++) {
				wlift_load_opts o = WLIFT_LOAD_OPTS_INIT;
				unsigned ib = wlift_dtype_bits(dt[a]) / 8;
				unsigned ob = wlift_dtype_bits(dt[b]) / 8;
				size_t off = 0;
				wlift_result *r;
				wlift_diag d;

				if (direct && !odirect_ok())
					continue;
				o.device = "cuda:1";
				o.dtype = dt[b];
				o.direct = direct ? WLIFT_DIRECT_ON : WLIFT_DIRECT_OFF;
				o.threads = 3;
				o.ring_bytes = 1u << 20;
				o.ring_slots = 4;
				wlift_diag_clear(&d);
				ck_assert_msg(wlift_load(ck, &o, NULL, NULL, &r, &d) == 0,
					      "%s -> %s: %s", wlift_dtype_name(dt[a]),
					      wlift_dtype_name(dt[b]), d.message);
				f = fake_open();
				dev_enter(&f, 1);
				for (size_t i = 0; i < NCONV; i++) {
					size_t n = conv_counts[i];
					uint8_t *got = malloc(n * ob), *want = malloc(n * ob);
					wlift_tensor_view v;
					ck_assert_ptr_nonnull(got);
					ck_assert_ptr_nonnull(want);
					wlift_tensor_get(wlift_result_tensor(r, i), &v);
					ck_assert_int_eq(v.dtype, dt[b]);
					ck_assert_uint_eq(v.nbytes, n * ob);
					ck_assert_int_eq(v.device, 1);
					ck_assert_msg((uintptr_t)v.data % 256 == 0, "not aligned");
					ck_assert_int_eq(f.dtoh(got, (CUdeviceptr)(uintptr_t)v.data,
								n * ob),
							 CUDA_SUCCESS);
					ck_assert_int_eq(wlift__convert_cpu(dt[a], dt[b], data + off,
									    want, n),
							 0);
					if (memcmp(got, want, n * ob))
						ck_abort_msg("%s -> %s, tensor c%zu (%zu elements, "
							     "O_DIRECT %d): device differs from CPU",
							     wlift_dtype_name(dt[a]),
							     wlift_dtype_name(dt[b]), i, n, direct);
					off += n * ib;
					free(got);
					free(want);
				}
				dev_leave(&f, 1);
				if (a != b)
					ck_assert_int_gt(fake_launches(&f), launches);
				else
					ck_assert_int_eq(fake_launches(&f), launches);
				launches = fake_launches(&f);
				wlift_result_free(r);
			}
		}
		wlift_ckpt_close(ck);
		free(data);
	}
	wlift_ctx_destroy(ctx);
	check_nothing_held(&f);
}
END_TEST

/* Kernels that do not load, a launch that fails: WLIFT_ECUDA naming the tensor, nothing
 * left on the device. */
static void conversion_failure(const char *knob, const char *val, const char *want)
{
	const char *path = wt_path("conv.safetensors");
	wlift_load_opts o = WLIFT_LOAD_OPTS_INIT;
	wlift_ctx *ctx;
	wlift_ckpt *ck;
	wlift_result *r;
	wlift_diag d;
	uint8_t *data;
	size_t len;

	setenv(knob, val, 1);
	ctx = ctx_fake();
	make_conv_st(path, WLIFT_F16, &data, &len);
	ck_assert_int_eq(wlift_open(ctx, path, &ck, NULL), 0);
	o.device = "cuda:0";
	o.dtype = WLIFT_F32;
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift_load(ck, &o, NULL, NULL, &r, &d), WLIFT_ECUDA);
	ck_assert_ptr_null(r);
	printf("%s=%s: %s\n", knob, val, d.message);
	ck_assert_msg(strstr(d.message, "tensor \"c") && strstr(d.message, "cuda:0: ") &&
			  strstr(d.message, want),
		      "%s", d.message);
	wlift_ckpt_close(ck);
	wlift_ctx_destroy(ctx);
	free(data);
	{
		struct fake f = fake_open();
		check_nothing_held(&f);
	}
}

START_TEST(conversion_module_fails)
{
	conversion_failure("FAKECUDA_FAIL_MODULE", "1",
			   "cannot load the dtype conversion kernels: cuModuleLoadData: "
			   "CUDA_ERROR_INVALID_PTX");
}
END_TEST

START_TEST(conversion_launch_fails)
{
	conversion_failure("FAKECUDA_FAIL_LAUNCH", "3", "F16 to F32 at device offset");
}
END_TEST

/* Tensor-parallel blocks along dim 1 (both gather paths: pieces read one by one, and a
 * covering read) are gathered as they land (cuMemcpy2DAsync from the staging buffer, rows
 * to their places; no device moves, no host gather): the device bytes equal the CPU load of
 * the same block. */
/* ---- budget groups ------------------------------------------------------------------------ */

struct groups_seen {
	struct fake f;
	uint64_t budget;
	size_t ready, ngroups, tensors;
	uint64_t max_live;
	int vmm; /* the destination is VMM units (one 2 MiB unit per small group) */
};

static int groups_ready(const wlift_tensor *t, void *user)
{
	struct groups_seen *g = user;
	WLIFT_UNUSED(t);
	__atomic_add_fetch(&g->ready, 1, __ATOMIC_RELAXED);
	return 0;
}

/* Each group: its bytes are the file's, the device holds no more than the budget now (the
 * groups before were freed), then freed. */
static int groups_got(wlift_result *r, size_t group, void *user)
{
	struct groups_seen *g = user;
	struct fakecuda_stats st;

	ck_assert_uint_eq(group, g->ngroups);
	g->f.stats(&st);
	if (st.live_bytes > g->max_live)
		g->max_live = st.live_bytes;
	/* This group's one allocation (the fake rounds it to 64 KiB; a VMM unit is 2 MiB), none
	 * of earlier ones. */
	if (g->vmm) {
		ck_assert_uint_eq(st.live_allocs, 0);
		ck_assert_uint_eq(st.vmm_handles, 1);
		ck_assert_uint_le(st.live_bytes, 2u << 20);
	} else {
		ck_assert_uint_eq(st.live_allocs, 1);
		ck_assert_uint_le(st.live_bytes, (g->budget + 65535) / 65536 * 65536);
	}
	check_device_bytes(&g->f, r, 0);
	g->tensors += wlift_result_count(r);
	g->ngroups++;
	wlift_result_free(r);
	return 0;
}

/* wlift_budget_groups cuts the file-order tensors into groups of at most the budget (each
 * tensor rounded to 256 bytes, widened ones with their converted copy); wlift_load_groups
 * loads them one after another onto the fake device (without VMM: the allocation is the
 * load's bytes), never more than the budget held; a tensor over the budget names it. */
START_TEST(budget_groups)
{
	static uint64_t sizes[12];
	char path[4096];
	wlift_load_opts o = WLIFT_LOAD_OPTS_INIT;
	struct groups_seen g = { 0 };
	size_t ends[16], at = 0;
	wlift_ctx *ctx;
	wlift_ckpt *ck;
	wlift_diag d;
	uint64_t total;
	int n;

	setenv("FAKECUDA_VMM", "0", 1);
	for (size_t i = 0; i < 12; i++)
		sizes[i] = 1000 + 37 * i;
	snprintf(path, sizeof(path), "%s", wt_path("groups.safetensors"));
	wt_make_u8_st(path, 12, sizes, &total);
	ctx = ctx_fake();
	ck_assert_int_eq(wlift_open(ctx, path, &ck, NULL), 0);
	o.device = "cuda:0";
	n = wlift_budget_groups(ck, &o, 4096, ends, 16, NULL);
	ck_assert_int_gt(n, 1);
	for (int k = 0; k < n; k++) {
		uint64_t used = 0;
		ck_assert_uint_gt(ends[k], at);
		for (size_t i = at; i < ends[k]; i++)
			used += (sizes[i] + 255) / 256 * 256;
		ck_assert_uint_le(used, 4096);
		if (ends[k] < 12) /* the next tensor would not have fit */
			ck_assert_uint_gt(used + (sizes[ends[k]] + 255) / 256 * 256, 4096);
		at = ends[k];
	}
	ck_assert_uint_eq(at, 12);
	/* max smaller than the count: the count all the same */
	ck_assert_int_eq(wlift_budget_groups(ck, &o, 4096, ends, 1, NULL), n);
	/* names, in the order given; a widening dtype counts the converted copy */
	{
		const char *nm[] = { "t5", "t1", "t5" };
		o.names = nm;
		o.nnames = 3;
		ck_assert_int_eq(wlift_budget_groups(ck, &o, 2048, ends, 16, NULL), 2);
		ck_assert_uint_eq(ends[0], 1);
		o.names = NULL;
		o.nnames = 0;
	}
	g.f = fake_open();
	g.budget = 4096;
	ck_assert_int_eq(wlift_load_groups(ck, &o, 4096, groups_ready, &g, groups_got, &g, &d),
			 n);
	ck_assert_uint_eq(g.ngroups, (size_t)n);
	ck_assert_uint_eq(g.ready, 12);
	ck_assert_uint_eq(g.tensors, 12);
	ck_assert_uint_gt(g.max_live, 0);
	/* the budget from the options; over it, one tensor */
	o.max_device_bytes = 1000;
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift_load_groups(ck, &o, 0, NULL, NULL, NULL, NULL, &d), WLIFT_EDEVMEM);
	ck_assert_msg(strstr(d.message, "t0: needs 1024 bytes of device memory, more than "
					"max_device_bytes = 1000"),
		      "%s", d.message);
	ck_assert_str_eq(d.tensor, "t0");
	o.max_device_bytes = 0;
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift_budget_groups(ck, &o, 0, ends, 16, &d), -EINVAL);
	ck_assert_msg(strstr(d.message, "no budget"), "%s", d.message);
	{
		const char *nm[] = { "nope" };
		o.names = nm;
		o.nnames = 1;
		ck_assert_int_eq(wlift_budget_groups(ck, &o, 4096, ends, 16, NULL),
				 WLIFT_ENOTFOUND);
	}
	wlift_ckpt_close(ck);
	wlift_ctx_destroy(ctx);
	check_nothing_held(&g.f);
}
END_TEST

/* Out of device memory in the middle of making the destination: the 40th of the 9 MiB load's
 * 144 VMM units (64 KiB each) is refused. The same error as a device that is full; the 39
 * units created and mapped, the reservation, the ring and the context are all given back. */
START_TEST(out_of_device_memory_mid_vmm)
{
	struct fakecuda_stats st;
	struct fake f;

	setenv("FAKECUDA_GRANULE", "65536", 1);
	setenv("FAKECUDA_FAIL_ALLOC", "40", 1);
	expect_failure("cuda:0", WLIFT_EDEVMEM,
		       "cuda:0: cannot allocate 9437312 bytes (9.0 MiB) of device memory");
	f = fake_open();
	f.stats(&st);
	ck_assert_uint_eq(st.alloc_failed, 1);
	ck_assert_uint_ge(st.alloc_calls, 40);
}
END_TEST

/* Out of device memory in a later budget group (the third group's allocation and every one
 * after it refused): wlift_load_groups fails with WLIFT_EDEVMEM after handing over the two
 * groups before it (their tensors were ready and are freed by the callback), and nothing of
 * the failed group is left (with and without VMM). */
static void oom_later_group(int vmm)
{
	static uint64_t sizes[12];
	char path[4096];
	wlift_load_opts o = WLIFT_LOAD_OPTS_INIT;
	struct groups_seen g = { 0 };
	struct fakecuda_stats st;
	size_t ends[16];
	wlift_ctx *ctx;
	wlift_ckpt *ck;
	wlift_diag d;
	uint64_t total;
	int n, ret;

	setenv("FAKECUDA_VMM", vmm ? "1" : "0", 1);
	setenv("FAKECUDA_FAIL_ALLOC", "3", 1);
	setenv("FAKECUDA_FAIL_ALLOCS_ALL", "1", 1);
	for (size_t i = 0; i < 12; i++)
		sizes[i] = 1000 + 37 * i;
	snprintf(path, sizeof(path), "%s", wt_path("groups.safetensors"));
	wt_make_u8_st(path, 12, sizes, &total);
	ctx = ctx_fake();
	ck_assert_int_eq(wlift_open(ctx, path, &ck, NULL), 0);
	o.device = "cuda:0";
	n = wlift_budget_groups(ck, &o, 4096, ends, 16, NULL);
	ck_assert_int_gt(n, 3);
	g.f = fake_open();
	g.budget = 4096;
	g.vmm = vmm;
	wlift_diag_clear(&d);
	ret = wlift_load_groups(ck, &o, 4096, groups_ready, &g, groups_got, &g, &d);
	printf("vmm %d: group 3 of %d out of memory: %s (%s)\n", vmm, n, wlift_errname(ret),
	       d.message);
	ck_assert_int_eq(ret, WLIFT_EDEVMEM);
	ck_assert_msg(strstr(d.message, "cuda:0: cannot allocate") &&
			  strstr(d.message, "CUDA_ERROR_OUT_OF_MEMORY"),
		      "%s", d.message);
	ck_assert_uint_eq(g.ngroups, 2);
	ck_assert_uint_eq(g.ready, ends[1]); /* the two groups' tensors, no more */
	ck_assert_uint_eq(g.tensors, ends[1]);
	g.f.stats(&st);
	ck_assert_uint_ge(st.alloc_failed, 1);
	wlift_ckpt_close(ck);
	wlift_ctx_destroy(ctx);
	check_nothing_held(&g.f);
}

START_TEST(out_of_device_memory_later_group)
{
	oom_later_group(0);
}
END_TEST

START_TEST(out_of_device_memory_later_group_vmm)
{
	oom_later_group(1);
}
END_TEST

static int count_ready(const wlift_tensor *t, void *user)
{
	WLIFT_UNUSED(t);
	__atomic_add_fetch((size_t *)user, 1, __ATOMIC_RELAXED);
	return 0;
}

/* Out of device memory while the load runs: an O_DIRECT load (no VMM: its destination is the
 * first allocation) whose fix-ups move ranges down by a few bytes through a scratch
 * allocation, every one of which is refused. The load fails with WLIFT_EDEVMEM naming the
 * fix-up; the tensors already reported ready and the destination are freed, nothing is left. */
START_TEST(out_of_device_memory_mid_load)
{
	const char *path = wt_path("mixed.safetensors");
	wlift_load_opts o = WLIFT_LOAD_OPTS_INIT;
	struct fakecuda_stats st;
	struct fake f;
	wlift_ctx *ctx;
	wlift_ckpt *ck;
	wlift_result *r = (wlift_result *)&o;
	wlift_diag d;
	uint64_t total;
	size_t ready = 0;
	int ret;

	if (!odirect_ok())
		exit(77);
	setenv("FAKECUDA_VMM", "0", 1);
	setenv("FAKECUDA_FAIL_ALLOC", "2", 1);
	setenv("FAKECUDA_FAIL_ALLOCS_ALL", "1", 1);
	wt_make_u8_st(path, NMIXED, mixed, &total);
	ctx = ctx_fake();
	ck_assert_int_eq(wlift_open(ctx, path, &ck, NULL), 0);
	o.device = "cuda:0";
	o.direct = WLIFT_DIRECT_ON;
	o.ring_bytes = 2u << 20;
	o.ring_slots = 4;
	o.threads = 2;
	wlift_diag_clear(&d);
	ret = wlift_load(ck, &o, count_ready, &ready, &r, &d);
	printf("fix-up scratch refused after %zu tensors ready: %s (%s)\n", ready,
	       wlift_errname(ret), d.message);
	ck_assert_int_eq(ret, WLIFT_EDEVMEM);
	ck_assert_ptr_null(r);
	ck_assert_msg(strstr(d.message, "cuMemAlloc (fix-up scratch)") &&
			  strstr(d.message, "CUDA_ERROR_OUT_OF_MEMORY"),
		      "%s", d.message);
	ck_assert_uint_lt(ready, NMIXED);
	f = fake_open();
	f.stats(&st);
	ck_assert_uint_ge(st.alloc_failed, 1);
	ck_assert_uint_gt(st.htod_copies, 0); /* it failed while loading, not before */
	wlift_ckpt_close(ck);
	wlift_ctx_destroy(ctx);
	check_nothing_held(&f);
}
END_TEST

/* A widening dtype: F16 tensors to F32 take their bytes and twice them on the device. */
START_TEST(budget_groups_widening)
{
	char path[4096];
	wlift_load_opts o = WLIFT_LOAD_OPTS_INIT;
	uint8_t *data;
	size_t len, ends[16];
	wlift_ctx *ctx;
	wlift_ckpt *ck;

	snprintf(path, sizeof(path), "%s", wt_path("conv.safetensors"));
	make_conv_st(path, WLIFT_F16, &data, &len);
	ctx = ctx_fake();
	ck_assert_int_eq(wlift_open(ctx, path, &ck, NULL), 0);
	o.device = "cuda:0";
	/* c4: 65537 F16 elements: 131074 bytes -> 131328, converted 262148 -> 262400 */
	{
		const char *nm[] = { "c4" };
		o.names = nm;
		o.nnames = 1;
		ck_assert_int_eq(wlift_budget_groups(ck, &o, 131328, ends, 16, NULL), 1);
		o.dtype = WLIFT_F32;
		ck_assert_int_eq(wlift_budget_groups(ck, &o, 131328 + 262399, ends, 16, NULL),
				 WLIFT_EDEVMEM);
		ck_assert_int_eq(wlift_budget_groups(ck, &o, 131328 + 262400, ends, 16, NULL), 1);
	}
	wlift_ckpt_close(ck);
	wlift_ctx_destroy(ctx);
	free(data);
}
END_TEST

/* O_DIRECT: groups of many ranges (tensor sizes that are not multiples of 256 each start a
 * range) fit by the estimate but not once every range's reads are rounded to blocks: the
 * load's exact check refuses them before anything is read, and smaller groups load. */
START_TEST(budget_groups_direct_split)
{
	static uint64_t sizes[32];
	char path[4096];
	wlift_load_opts o = WLIFT_LOAD_OPTS_INIT;
	struct groups_seen g = { 0 };
	size_t ends[8];
	wlift_ctx *ctx;
	wlift_ckpt *ck;
	wlift_diag d;
	uint64_t total;
	int n;

	if (!odirect_ok())
		exit(77);
	setenv("FAKECUDA_VMM", "0", 1);
	for (size_t i = 0; i < 32; i++)
		sizes[i] = (64u << 10) - 100;
	snprintf(path, sizeof(path), "%s", wt_path("split.safetensors"));
	wt_make_u8_st(path, 32, sizes, &total);
	ctx = ctx_fake();
	ck_assert_int_eq(wlift_open(ctx, path, &ck, NULL), 0);
	o.device = "cuda:0";
	o.direct = WLIFT_DIRECT_ON;
	o.ring_bytes = 2u << 20;
	o.ring_slots = 4;
	ck_assert_int_eq(wlift_budget_groups(ck, &o, 1u << 20, ends, 8, NULL), 2); /* 16 + 16 */
	g.f = fake_open();
	g.budget = 1u << 20;
	wlift_diag_clear(&d);
	n = wlift_load_groups(ck, &o, 1u << 20, groups_ready, &g, groups_got, &g, &d);
	ck_assert_msg(n > 2, "%d: %s", n, d.message);
	printf("O_DIRECT: 32 tensors of 64 KiB - 100 in %d groups of at most 1 MiB\n", n);
	ck_assert_uint_eq(g.ngroups, (size_t)n);
	ck_assert_uint_eq(g.ready, 32);
	ck_assert_uint_eq(g.tensors, 32);
	wlift_ckpt_close(ck);
	/* A budget too small for the margin: 4 tensors of 16 KiB - 100 fill 64 KiB by the
	 * estimate, one group, but their O_DIRECT reads round out to whole blocks: refused,
	 * then 3 + 1. */
	for (size_t i = 0; i < 4; i++)
		sizes[i] = (16u << 10) - 100;
	wt_make_u8_st(path, 4, sizes, &total);
	ck_assert_int_eq(wlift_open(ctx, path, &ck, NULL), 0);
	ck_assert_int_eq(wlift_budget_groups(ck, &o, 64u << 10, ends, 8, NULL), 1);
	memset(&g, 0, sizeof(g));
	g.f = fake_open();
	g.budget = 64u << 10;
	wlift_diag_clear(&d);
	n = wlift_load_groups(ck, &o, 64u << 10, groups_ready, &g, groups_got, &g, &d);
	ck_assert_msg(n == 2, "%d: %s", n, d.message);
	ck_assert_uint_eq(g.ready, 4);
	ck_assert_uint_eq(g.tensors, 4);
	wlift_ckpt_close(ck);
	wlift_ctx_destroy(ctx);
	check_nothing_held(&g.f);
}
END_TEST

START_TEST(shard_gather_on_device)
{
	const char *path = wt_path("shard.safetensors");
	const size_t na = 16 * 200000, nb = 400 * 1000; /* b: over several 256 KiB slots */
	uint8_t *data = malloc(na + nb);
	static const wlift_shard_rule rule = { "*", 1 };
	wlift_ctx *ctx;
	wlift_ckpt *ck;
	struct fake f;

	ck_assert_ptr_nonnull(data);
	for (size_t i = 0; i < na + nb; i++)
		data[i] = wt_pat(i);
	wt_write_st(path,
		    "{\"a\":{\"dtype\":\"U8\",\"shape\":[16,200000],\"data_offsets\":[0,3200000]},"
		    "\"b\":{\"dtype\":\"U8\",\"shape\":[400,1000],\"data_offsets\":[3200000,3600000]}}",
		    data, na + nb);
	ctx = ctx_fake();
	ck_assert_int_eq(wlift_open(ctx, path, &ck, NULL), 0);
	for (int rank = 0; rank < 3; rank++) {
		wlift_load_opts o = WLIFT_LOAD_OPTS_INIT;
		wlift_result *rc, *rg;
		wlift_diag d;
		o.shard = &rule;
		o.nshard = 1;
		o.rank = rank;
		o.world_size = 3;
		o.ring_bytes = 1u << 20;
		o.ring_slots = 4;
		wlift_diag_clear(&d);
		ck_assert_msg(wlift_load(ck, &o, NULL, NULL, &rc, &d) == 0, "%s", d.message);
		o.device = "cuda:0";
		ck_assert_msg(wlift_load(ck, &o, NULL, NULL, &rg, &d) == 0, "%s", d.message);
		f = fake_open();
		dev_enter(&f, 0);
		for (size_t i = 0; i < 2; i++) {
			wlift_tensor_view vc, vg;
			uint8_t *buf;
			wlift_tensor_get(wlift_result_tensor(rc, i), &vc);
			wlift_tensor_get(wlift_result_tensor(rg, i), &vg);
			ck_assert_uint_eq(vc.nbytes, vg.nbytes);
			ck_assert_int_eq(vg.device, 0);
			buf = malloc(vg.nbytes + 1);
			ck_assert_int_eq(f.dtoh(buf, (CUdeviceptr)(uintptr_t)vg.data, vg.nbytes),
					 CUDA_SUCCESS);
			ck_assert_msg(memcmp(buf, vc.data, vg.nbytes) == 0,
				      "rank %d, %s: device bytes differ from the CPU block", rank,
				      vg.info.name);
			free(buf);
		}
		dev_leave(&f, 0);
		wlift_result_free(rg);
		wlift_result_free(rc);
	}
	{
		/* Gathered by 2D copies straight from the staging buffers: no device moves. */
		struct fakecuda_stats st;
		f.stats(&st);
		printf("shard_gather_on_device: %llu 2D copies, %llu device-to-device moves\n",
		       (unsigned long long)st.copies_2d, (unsigned long long)st.dtod_copies);
		ck_assert_uint_gt(st.copies_2d, 0);
		ck_assert_uint_eq(st.dtod_copies, 0);
	}
	wlift_ckpt_close(ck);
	wlift_ctx_destroy(ctx);
	free(data);
	check_nothing_held(&f);
}
END_TEST

/* ---- device memory follows the tensors kept ----------------------------------------------- */

/* The destination is a reserved range backed unit by unit (cuMemCreate + cuMemMap; 64 KiB
 * granules here), and once only one tensor is held (a DLPack export), every unit it does not
 * touch is unmapped and released; its bytes stay right. Without VMM (FAKECUDA_VMM=0) the
 * load falls back to one cuMemAlloc, held whole. */
static void keep_one(int vmm)
{
	const char *path = wt_path("mixed.safetensors");
	wlift_load_opts o = WLIFT_LOAD_OPTS_INIT;
	struct fakecuda_stats st;
	wlift_dl_managed *m;
	wlift_tensor_view v;
	struct fake f;
	wlift_ctx *ctx;
	wlift_ckpt *ck;
	wlift_result *r;
	wlift_diag d;
	uint64_t total, unit = 64u << 10, held;
	size_t keep = 7; /* 4 MiB, in the middle */

	setenv("FAKECUDA_GRANULE", "65536", 1);
	setenv("FAKECUDA_VMM", vmm ? "1" : "0", 1);
	wt_make_u8_st(path, NMIXED, mixed, &total);
	ctx = ctx_fake();
	ck_assert_int_eq(wlift_open(ctx, path, &ck, NULL), 0);
	o.device = "cuda:1";
	o.ring_bytes = 2u << 20;
	o.ring_slots = 4;
	wlift_diag_clear(&d);
	ck_assert_msg(wlift_load(ck, &o, NULL, NULL, &r, &d) == 0, "load: %s", d.message);
	f = fake_open();
	f.stats(&st);
	ck_assert_msg(st.violations == 0, "%u driver misuses; first: %s", st.violations,
		      st.violation);
	ck_assert_uint_ge(st.live_bytes, total);
	if (vmm) {
		ck_assert_uint_eq(st.live_allocs, 0);
		ck_assert_uint_gt(st.vmm_handles, 1);
		ck_assert_uint_eq(st.reservations, 1);
		ck_assert_uint_eq(st.mapped_bytes, st.vmm_bytes);
	} else {
		ck_assert_uint_eq(st.live_allocs, 1);
		ck_assert_uint_eq(st.vmm_handles, 0);
	}
	check_device_bytes(&f, r, 1);
	wlift_tensor_get(wlift_result_tensor(r, keep), &v);
	ck_assert_uint_eq(v.nbytes, mixed[keep]);
	ck_assert_int_eq(wlift_tensor_dlpack(wlift_result_tensor(r, keep), 0, &m, NULL), 0);
	wlift_result_free(r);
	f.stats(&st);
	ck_assert_msg(st.violations == 0, "%u driver misuses; first: %s", st.violations,
		      st.violation);
	held = (mixed[keep] + unit - 1) / unit * unit + unit; /* its units, one shared */
	if (vmm) {
		printf("keep_one: %llu bytes loaded; holding one %llu-byte tensor keeps %llu "
		       "bytes of device memory\n",
		       (unsigned long long)total, (unsigned long long)mixed[keep],
		       (unsigned long long)st.live_bytes);
		ck_assert_uint_le(st.live_bytes, held);
		ck_assert_uint_ge(st.live_bytes, mixed[keep]);
	} else {
		ck_assert_uint_ge(st.live_bytes, total); /* one allocation: all of it */
	}
	/* The kept tensor's bytes are still there. */
	{
		uint8_t *buf = malloc(mixed[keep]);
		ck_assert_ptr_nonnull(buf);
		dev_enter(&f, 1);
		ck_assert_int_eq(f.dtoh(buf, (CUdeviceptr)(uintptr_t)m->dl_tensor.data, v.nbytes),
				 CUDA_SUCCESS);
		for (uint64_t j = 0; j < v.nbytes; j++)
			if (buf[j] != wt_pat(v.info.data_begin + j))
				ck_abort_msg("kept tensor: byte %llu differs",
					     (unsigned long long)j);
		dev_leave(&f, 1);
		free(buf);
	}
	m->deleter(m);
	wlift_ckpt_close(ck);
	wlift_ctx_destroy(ctx);
	check_nothing_held(&f);
}

START_TEST(device_memory_follows_tensors)
{
	keep_one(1);
}
END_TEST

START_TEST(device_memory_without_vmm)
{
	keep_one(0);
}
END_TEST

/* ---- the ring kept between loads ---------------------------------------------------------- */

/* The registered ring outlives a load in its context: the next load of the same device
 * reuses it (no new cuMemHostRegister), another device or buffer size replaces it, and it
 * goes at wlift_ctx_destroy, or once idle for WEIGHTLIFT_CUDA_RING_KEEP_S (0: never kept). */
static void ring_loads(wlift_ckpt *ck, const char *device, size_t ring, unsigned slots)
{
	wlift_load_opts o = WLIFT_LOAD_OPTS_INIT;
	wlift_result *r;
	wlift_diag d;

	o.device = device;
	o.ring_bytes = ring;
	o.ring_slots = slots;
	wlift_diag_clear(&d);
	ck_assert_msg(wlift_load(ck, &o, NULL, NULL, &r, &d) == 0, "%s", d.message);
	wlift_result_free(r);
}

START_TEST(ring_kept_between_loads)
{
	const char *path = wt_path("mixed.safetensors");
	struct fakecuda_stats st;
	struct fake f;
	wlift_ctx *ctx;
	wlift_ckpt *ck;
	uint64_t total, regs;

	setenv("WEIGHTLIFT_CUDA_RING_KEEP_S", "1", 1);
	wt_make_u8_st(path, NMIXED, mixed, &total);
	ctx = ctx_fake();
	ck_assert_int_eq(wlift_open(ctx, path, &ck, NULL), 0);
	ring_loads(ck, "cuda:0", 4u << 20, 4);
	f = fake_open();
	f.stats(&st);
	regs = st.register_calls;
	ck_assert_uint_gt(st.registered, 0); /* kept, after the load */
	ck_assert_uint_eq(st.live_bytes, 0);
	for (int i = 0; i < 3; i++)
		ring_loads(ck, "cuda:0", 4u << 20, 4);
	f.stats(&st);
	ck_assert_uint_eq(st.register_calls, regs); /* reused three times */
	ring_loads(ck, "cuda:1", 4u << 20, 4);	     /* another device: its own */
	f.stats(&st);
	ck_assert_uint_gt(st.register_calls, regs);
	regs = st.register_calls;
	ring_loads(ck, "cuda:1", 2u << 20, 4); /* another buffer size: a new one */
	f.stats(&st);
	ck_assert_uint_gt(st.register_calls, regs);
	ck_assert_uint_le(st.registered_bytes, 2u << 20);
	/* Idle for the keep time: given back without a load. */
	for (int i = 0; i < 40 && st.registered; i++) {
		struct timespec ts = { 0, 100 * 1000000L };
		nanosleep(&ts, NULL);
		f.stats(&st);
	}
	ck_assert_uint_eq(st.registered, 0);
	ck_assert_uint_eq(st.events, 0);
	ck_assert_int_eq(st.ctx_refs, 0);
	ring_loads(ck, "cuda:1", 2u << 20, 4);
	wlift_ckpt_close(ck);
	wlift_ctx_destroy(ctx); /* frees the one kept since */
	check_nothing_held(&f);
}
END_TEST

START_TEST(ring_not_kept)
{
	const char *path = wt_path("mixed.safetensors");
	struct fakecuda_stats st;
	struct fake f;
	wlift_ctx *ctx;
	wlift_ckpt *ck;
	uint64_t total;

	setenv("WEIGHTLIFT_CUDA_RING_KEEP_S", "0", 1);
	wt_make_u8_st(path, NMIXED, mixed, &total);
	ctx = ctx_fake();
	ck_assert_int_eq(wlift_open(ctx, path, &ck, NULL), 0);
	ring_loads(ck, "cuda:0", 4u << 20, 4);
	f = fake_open();
	f.stats(&st);
	ck_assert_uint_eq(st.registered, 0);
	ck_assert_int_eq(st.ctx_refs, 0);
	wlift_ckpt_close(ck);
	wlift_ctx_destroy(ctx);
	setenv("WEIGHTLIFT_CUDA_RING_KEEP_S", "3601", 1);
	ck_assert_int_eq(wlift_ctx_create(&ctx, NULL, NULL), -EINVAL);
	check_nothing_held(&f);
}
END_TEST

/* ---- NUMA --------------------------------------------------------------------------------- */

static void write_node(const char *root, const char *busid, const char *text)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/bus", root);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/bus/pci", root);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/bus/pci/devices", root);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/bus/pci/devices/%s", root, busid);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/bus/pci/devices/%s/numa_node", root, busid);
	wt_write_file(path, text, strlen(text));
}

/* The GPU's NUMA node from its PCI address in a fake sysfs tree (WEIGHTLIFT_SYSFS_ROOT): the
 * fake's cuda:1 is 0000:02:00.0; -1 (not NUMA), missing or malformed files mean none. A load
 * with a node runs (placement is a no-op where libnuma is absent or there is one node). */
START_TEST(numa_node_lookup)
{
	char root[512];
	const char *path = wt_path("mixed.safetensors");
	struct wlift__sink *sk;
	struct wlift__sink_cfg sc;
	wlift_load_opts o = WLIFT_LOAD_OPTS_INIT;
	wlift_ctx *ctx;
	wlift_ckpt *ck;
	wlift_result *r;
	wlift_diag d;
	uint64_t total;

	snprintf(root, sizeof(root), "%s/sys", wt_tmpdir());
	mkdir(root, 0755);
	write_node(root, "0000:02:00.0", "1\n");
	write_node(root, "0000:01:00.0", "-1\n");
	write_node(root, "0000:03:00.0", "x\n");
	ck_assert_int_eq(wlift__numa_node_of_pci(root, "0000:02:00.0"), 1);
	ck_assert_int_eq(wlift__numa_node_of_pci(root, "0000:01:00.0"), -1);
	ck_assert_int_eq(wlift__numa_node_of_pci(root, "0000:03:00.0"), -1);
	ck_assert_int_eq(wlift__numa_node_of_pci(root, "0000:09:00.0"), -1);
	ck_assert_int_eq(wlift__numa_node_of_pci(root, "../../etc"), -1);
	setenv("WEIGHTLIFT_SYSFS_ROOT", root, 1);
	ctx = ctx_fake();
	wlift_diag_clear(&d);
	memset(&sc, 0, sizeof(sc));
	sc.cuda_library = fake_path();
	ck_assert_msg(wlift__cuda_sink_create(ctx, "cuda:1", &sc, &sk, &d) == 0, "%s", d.message);
	ck_assert_int_eq(sk->numa, 2); /* node 1 */
	sk->ops->destroy(sk);
	ck_assert_int_eq(wlift__cuda_sink_create(ctx, "cuda:0", &sc, &sk, &d), 0);
	ck_assert_int_eq(sk->numa, 0); /* -1 in sysfs: none */
	sk->ops->destroy(sk);
	wt_make_u8_st(path, NMIXED, mixed, &total);
	ck_assert_int_eq(wlift_open(ctx, path, &ck, NULL), 0);
	o.device = "cuda:1";
	ck_assert_msg(wlift_load(ck, &o, NULL, NULL, &r, &d) == 0, "%s", d.message);
	{
		struct fake f = fake_open();
		check_device_bytes(&f, r, 1);
		wlift_result_free(r);
		wlift_ckpt_close(ck);
		wlift_ctx_destroy(ctx);
		check_nothing_held(&f);
	}
}
END_TEST

/* ---- the caller's device allocator ------------------------------------------------------- */

/* An allocator of the test's own (as PyTorch's caching allocator would be): cuMemAlloc of
 * the fake, with the device's primary context pushed by the callback itself. */
struct talloc {
	struct fake f;
	CUresult (*mem_alloc)(CUdeviceptr *, size_t);
	CUresult (*mem_free)(CUdeviceptr);
	int allocs, frees, fail, device;
	size_t bytes;
	void *ptr;
};

static int t_alloc(void *user, int device, size_t bytes, void **ptr)
{
	struct talloc *a = user;
	CUcontext c, old;
	CUdeviceptr p = 0;
	CUresult r;

	a->allocs++;
	a->device = device;
	a->bytes = bytes;
	if (a->fail)
		return WLIFT_EDEVMEM;
	a->f.retain(&c, device);
	a->f.push(c);
	r = a->mem_alloc(&p, bytes);
	a->f.pop(&old);
	a->f.release(device);
	if (r != CUDA_SUCCESS)
		return WLIFT_EDEVMEM;
	*ptr = (void *)(uintptr_t)p;
	a->ptr = *ptr;
	return 0;
}

static void t_free(void *user, int device, void *ptr, size_t bytes)
{
	struct talloc *a = user;
	CUcontext c, old;

	ck_assert_ptr_eq(ptr, a->ptr);
	ck_assert_uint_eq(bytes, a->bytes);
	a->frees++;
	a->f.retain(&c, device);
	a->f.push(c);
	a->mem_free((CUdeviceptr)(uintptr_t)ptr);
	a->f.pop(&old);
	a->f.release(device);
}

START_TEST(caller_allocator)
{
	const char *path = wt_path("mixed.safetensors");
	wlift_load_opts o = WLIFT_LOAD_OPTS_INIT;
	struct talloc a;
	wlift_device_allocator al = { t_alloc, t_free, &a };
	struct fakecuda_stats st;
	wlift_ctx *ctx;
	wlift_ckpt *ck;
	wlift_result *r;
	wlift_diag d;
	uint64_t total;

	memset(&a, 0, sizeof(a));
	wt_make_u8_st(path, NMIXED, mixed, &total);
	ctx = ctx_fake();
	ck_assert_int_eq(wlift_open(ctx, path, &ck, NULL), 0);
	a.f = fake_open();
	sym(a.f.h, "cuMemAlloc_v2", &a.mem_alloc, sizeof(a.mem_alloc));
	sym(a.f.h, "cuMemFree_v2", &a.mem_free, sizeof(a.mem_free));
	o.device = "cuda:1";
	o.device_allocator = &al;
	wlift_diag_clear(&d);
	ck_assert_msg(wlift_load(ck, &o, NULL, NULL, &r, &d) == 0, "load: %s", d.message);
	ck_assert_int_eq(a.allocs, 1);
	ck_assert_int_eq(a.device, 1);
	ck_assert_uint_ge(a.bytes, total);
	ck_assert_int_eq(a.frees, 0);
	a.f.stats(&st);
	ck_assert_uint_eq(st.live_allocs, 1); /* the allocator's, nothing of the library's */
	ck_assert_uint_eq(st.vmm_handles, 0);
	check_device_bytes(&a.f, r, 1);
	{
		wlift_tensor_view v;
		wlift_tensor_get(wlift_result_tensor(r, 0), &v);
		ck_assert_ptr_eq(v.data, a.ptr);
	}
	wlift_result_free(r);
	ck_assert_int_eq(a.frees, 1);
	/* A failing allocator: WLIFT_EDEVMEM naming it, nothing left, no free. */
	a.fail = 1;
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift_load(ck, &o, NULL, NULL, &r, &d), WLIFT_EDEVMEM);
	ck_assert_ptr_null(r);
	ck_assert_msg(strstr(d.message, "caller's device allocator") != NULL, "%s", d.message);
	ck_assert_int_eq(a.frees, 1);
	/* Not for host loads, and both callbacks are needed. */
	o.device = "cpu";
	ck_assert_int_eq(wlift_load(ck, &o, NULL, NULL, &r, NULL), -EINVAL);
	o.device = "cuda:0";
	al.free = NULL;
	ck_assert_int_eq(wlift_load(ck, &o, NULL, NULL, &r, NULL), -EINVAL);
	wlift_ckpt_close(ck);
	wlift_ctx_destroy(ctx);
	check_nothing_held(&a.f);
}
END_TEST

/* ---- host memory ------------------------------------------------------------------------ */

/* Peak RssAnon growth <= ring + 64 MiB while loading a checkpoint 16x the ring (the fake's
 * device memory is a memfd mapping: shared, not anonymous). */
START_TEST(host_memory_bounded)
{
	const size_t ring = 8u << 20;
	const char *path = wt_path("big.safetensors");
	static const uint64_t sz[] = { 40u << 20, 24u << 20, (32u << 20) + 5, 32u << 20 };
	wlift_load_opts o = WLIFT_LOAD_OPTS_INIT;
	struct wt_rss s;
	struct fake f;
	wlift_ctx *ctx;
	wlift_ckpt *ck;
	wlift_result *r;
	wlift_diag d;
	uint64_t total, growth;

	wt_make_u8_st(path, 4, sz, &total);
	ck_assert_uint_ge(total, 16 * (uint64_t)ring);
	ctx = ctx_fake();
	ck_assert_int_eq(wlift_open(ctx, path, &ck, NULL), 0);
	o.device = "cuda:0";
	o.ring_bytes = ring;
	o.ring_slots = 8;
	o.strategy = WLIFT_STRATEGY_PREAD;
	wt_rss_start(&s);
	wlift_diag_clear(&d);
	ck_assert_msg(wlift_load(ck, &o, NULL, NULL, &r, &d) == 0, "%s", d.message);
	growth = wt_rss_stop(&s);
	fprintf(stderr, "host_memory_bounded: %llu MiB loaded, peak RssAnon growth %.1f MiB "
			"(ring %zu MiB)\n",
		(unsigned long long)(total >> 20), (double)growth / 1048576.0, ring >> 20);
	ck_assert_msg(growth <= ring + (64u << 20),
		      "peak RssAnon grew by %llu bytes loading %llu bytes (ring %zu)",
		      (unsigned long long)growth, (unsigned long long)total, ring);
	f = fake_open();
	check_device_bytes(&f, r, 0);
	wlift_result_free(r);
	wlift_ckpt_close(ck);
	wlift_ctx_destroy(ctx);
	check_nothing_held(&f);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("cuda");
	TCase *tc = tcase_create("fake");

	tcase_add_checked_fixture(tc, wt_cleanup_at_exit, NULL);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, bytes_equal_pread);
	tcase_add_test(tc, bytes_equal_default_device);
	tcase_add_test(tc, bytes_equal_direct);
	tcase_add_test(tc, register_fallback);
	tcase_add_test(tc, copy_error);
	tcase_add_test(tc, async_copy_error);
	tcase_add_test(tc, out_of_device_memory);
	tcase_add_test(tc, device_budget);
	tcase_add_test(tc, no_driver);
	tcase_add_test(tc, no_device);
	tcase_add_test(tc, bad_index);
	tcase_add_test(tc, one_device_bad_index);
	tcase_add_test(tc, bad_names);
	tcase_add_test(tc, ring_knobs);
	tcase_add_test(tc, device_conversion);
	tcase_add_test(tc, direct_fixed_off);
	tcase_add_test(tc, budget_groups);
	tcase_add_test(tc, budget_groups_widening);
	tcase_add_test(tc, budget_groups_direct_split);
	tcase_add_test(tc, out_of_device_memory_mid_vmm);
	tcase_add_test(tc, out_of_device_memory_later_group);
	tcase_add_test(tc, out_of_device_memory_later_group_vmm);
	tcase_add_test(tc, out_of_device_memory_mid_load);
	tcase_add_test(tc, direct_fixed_refused);
	tcase_add_test(tc, conversion_module_fails);
	tcase_add_test(tc, conversion_launch_fails);
	tcase_add_test(tc, shard_gather_on_device);
	tcase_add_test(tc, device_memory_follows_tensors);
	tcase_add_test(tc, device_memory_without_vmm);
	tcase_add_test(tc, caller_allocator);
	tcase_add_test(tc, ring_kept_between_loads);
	tcase_add_test(tc, ring_not_kept);
	tcase_add_test(tc, numa_node_lookup);
	if (!getenv("WLIFT_SKIP_BIG")) /* the TSan run */
		tcase_add_test(tc, host_memory_bounded);
	suite_add_tcase(s, tc);
	return wt_run(s);
}
