/* SPDX-License-Identifier: Apache-2.0 */
/*
 * GPU Direct Storage against the fake cuFile (WLIFT_FAKECUFILE) over the fake CUDA driver
 * (WLIFT_FAKECUDA): the bytes on the "device" equal the file for tensors at aligned and
 * unaligned offsets, every cuFile read 4 KiB aligned (O_DIRECT placement, device fix-ups)
 * into the registered destination; auto uses only true GDS and only for O_DIRECT reads;
 * a cuFile failure mid-load falls back to the ring (auto) or fails naming the file and the
 * offset (on), leaving nothing registered, allocated or pinned; on with no library, or a
 * driver that does not open, is a clear error; a slow cuFileDriverOpen does not delay the
 * first tensor; host memory stays bounded by the ring; the knobs are range-checked.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fake_cuda.h"
#include "fake_cufile.h"
#include "sink/cuda_api.h"
#include "common/tunables.h"
#include "source/gds.h"
#include "testutil.h"
#include "weightlift.h"

static const char *env_or_skip(const char *name)
{
	const char *p = getenv(name);

	if (!p || !*p)
		exit(77); /* built without the fakes */
	return p;
}

/* Plain calls, no test directory: main asks too, before any test (a directory made there
 * would be shared by every forked test and removed by the first). */
static int odirect_ok(void)
{
	const char *base = getenv("WLIFT_TEST_TMP");
	char p[4096];
	int fd, ok;

	if (!base || !*base)
		base = "/tmp";
	mkdir(base, 0755);
	snprintf(p, sizeof(p), "%s/odirect_probe.%d", base, (int)getpid());
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	if (fd < 0)
		return 0;
	ok = write(fd, "x", 1) == 1;
	close(fd);
	fd = ok ? open(p, O_RDONLY | O_DIRECT) : -1;
	unlink(p);
	if (fd < 0)
		return 0;
	close(fd);
	return 1;
}

struct fakes {
	void *cuda, *cufile;
	fakecuda_stats_fn cstats;
	fakecufile_stats_fn fstats;
	CUresult (*retain)(CUcontext *, CUdevice);
	CUresult (*release)(CUdevice);
	CUresult (*push)(CUcontext);
	CUresult (*pop)(CUcontext *);
	CUresult (*dtoh)(void *, CUdeviceptr, size_t);
};

static void sym(void *h, const char *name, void *fnp, size_t n)
{
	void *p = dlsym(h, name);

	ck_assert_msg(p != NULL, "fake lacks %s", name);
	memcpy(fnp, &p, n);
}

static struct fakes fakes_open(void)
{
	struct fakes f;

	f.cuda = dlopen(getenv("WLIFT_FAKECUDA"), RTLD_NOW | RTLD_LOCAL);
	f.cufile = dlopen(getenv("WLIFT_FAKECUFILE"), RTLD_NOW | RTLD_LOCAL);
	ck_assert_ptr_nonnull(f.cuda);
	ck_assert_ptr_nonnull(f.cufile);
	sym(f.cuda, "fakecuda_stats", &f.cstats, sizeof(f.cstats));
	sym(f.cufile, "fakecufile_stats", &f.fstats, sizeof(f.fstats));
	sym(f.cuda, "cuDevicePrimaryCtxRetain", &f.retain, sizeof(f.retain));
	sym(f.cuda, "cuDevicePrimaryCtxRelease_v2", &f.release, sizeof(f.release));
	sym(f.cuda, "cuCtxPushCurrent_v2", &f.push, sizeof(f.push));
	sym(f.cuda, "cuCtxPopCurrent_v2", &f.pop, sizeof(f.pop));
	sym(f.cuda, "cuMemcpyDtoH_v2", &f.dtoh, sizeof(f.dtoh));
	return f;
}

/* The library on the fakes (read at context creation; the fakes' knobs are read at cuInit
 * and cuFileDriverOpen: each test runs in a process of its own). */
static wlift_ctx *ctx_fake(void)
{
	wlift_ctx *ctx;

	setenv("WEIGHTLIFT_CUDA_LIBRARY", env_or_skip("WLIFT_FAKECUDA"), 1);
	setenv("WEIGHTLIFT_CUFILE_LIBRARY", env_or_skip("WLIFT_FAKECUFILE"), 1);
	if (!odirect_ok())
		exit(77);
	ck_assert_int_eq(wlift_ctx_create(&ctx, NULL, NULL), 0);
	return ctx;
}

/* Wait until the fake cuFile's driver is open (the library opens it in the background). */
static void wait_driver_open(void)
{
	struct wlift__gds *g;

	/* The fake cuFile finds the fake driver loaded (the real one loads libcuda itself). */
	ck_assert_ptr_nonnull(dlopen(getenv("WLIFT_FAKECUDA"), RTLD_NOW | RTLD_LOCAL));
	ck_assert_int_eq(wlift__gds_get(getenv("WLIFT_FAKECUFILE"), &g, NULL), 0);
	ck_assert_int_gt(wlift__gds_state(g, 1, NULL), 0);
}

static void check_device_bytes(struct fakes *f, const wlift_result *r, int device)
{
	size_t cap = 1 << 20;
	uint8_t *buf = malloc(cap);
	CUcontext c, old;

	ck_assert_ptr_nonnull(buf);
	ck_assert_int_eq(f->retain(&c, device), CUDA_SUCCESS);
	ck_assert_int_eq(f->push(c), CUDA_SUCCESS);
	for (size_t i = 0; i < wlift_result_count(r); i++) {
		wlift_tensor_view v;
		wlift_tensor_get(wlift_result_tensor(r, i), &v);
		ck_assert_int_eq(v.device, device);
		if (!v.nbytes)
			continue;
		ck_assert_msg((uintptr_t)v.data % 256 == 0, "%s: not 256-byte aligned",
			      v.info.name);
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
	ck_assert_int_eq(f->pop(&old), CUDA_SUCCESS);
	ck_assert_int_eq(f->release(device), CUDA_SUCCESS);
	free(buf);
}

/* Nothing of the load is left in either fake, and neither saw misuse. */
static void check_nothing_held(struct fakes *f)
{
	struct fakecuda_stats cs;
	struct fakecufile_stats fs;

	f->cstats(&cs);
	f->fstats(&fs);
	ck_assert_msg(cs.violations == 0, "%u driver misuses; first: %s", cs.violations,
		      cs.violation);
	ck_assert_msg(fs.violations == 0, "%u cuFile misuses; first: %s", fs.violations,
		      fs.violation);
	ck_assert_uint_eq(cs.live_bytes, 0);
	ck_assert_uint_eq(cs.live_allocs, 0);
	ck_assert_uint_eq(cs.vmm_handles, 0);
	ck_assert_uint_eq(cs.registered, 0);
	ck_assert_uint_eq(cs.hostallocs, 0);
	ck_assert_uint_eq(cs.streams, 0);
	ck_assert_uint_eq(cs.events, 0);
	ck_assert_int_eq(cs.ctx_refs, 0);
	ck_assert_uint_eq(fs.handles, 0);
	ck_assert_uint_eq(fs.bufs, 0);
	ck_assert_uint_eq(fs.batches, 0);
}

/* Odd sizes: most tensors start at offsets that are neither 256- nor 4096-aligned. */
static const uint64_t mixed[] = { 1000, 3u << 20, 7, 0, (1u << 20) + 13, 255, 256, 4u << 20,
				  333333, 17, (2u << 20) + 1, 64, 5u << 20 };
#define NMIXED (sizeof(mixed) / sizeof(mixed[0]))

/* The usual case: a context on the fakes (their FAKECUFILE_* knobs set before) and the
 * mixed checkpoint at path, its data bytes in *total. */
static wlift_ctx *mixed_case(const char *path, uint64_t *total)
{
	wlift_ctx *ctx = ctx_fake();

	wt_make_u8_st(path, NMIXED, mixed, total);
	return ctx;
}

/* The usual end: r's device bytes equal the file (r may be NULL), then with r freed and
 * the context gone nothing is left in either fake. Returns the fakes for checks after. */
static struct fakes finish(wlift_ctx *ctx, wlift_result *r)
{
	struct fakes f = fakes_open();

	if (r) {
		check_device_bytes(&f, r, 0);
		wlift_result_free(r);
	}
	wlift_ctx_destroy(ctx);
	check_nothing_held(&f);
	return f;
}

struct run {
	wlift_result *r;
	wlift_stats st;
	int ret;
	wlift_diag d;
};

static struct run load_ring(wlift_ctx *ctx, const char *path, int gds, int direct, int threads,
			    size_t ring_bytes)
{
	wlift_load_opts o = WLIFT_LOAD_OPTS_INIT;
	struct run x;
	wlift_ckpt *ck;

	memset(&x, 0, sizeof(x));
	ck_assert_int_eq(wlift_open(ctx, path, &ck, NULL), 0);
	o.device = "cuda:0";
	o.gds = gds;
	o.direct = direct;
	o.threads = (unsigned)threads;
	o.ring_bytes = ring_bytes;
	o.ring_slots = 4;
	wlift_diag_clear(&x.d);
	x.ret = wlift_load(ck, &o, NULL, NULL, &x.r, &x.d);
	if (x.ret == 0)
		ck_assert_int_eq(wlift_result_stats(x.r, &x.st), 0);
	else
		ck_assert_ptr_null(x.r);
	wlift_ckpt_close(ck);
	return x;
}

static struct run load(wlift_ctx *ctx, const char *path, int gds, int direct, int threads)
{
	return load_ring(ctx, path, gds, direct, threads, 2u << 20);
}

/* gds on: every byte through cuFile, 4 KiB-aligned reads into the registered destination,
 * the device bytes equal to the file for aligned and unaligned tensors. */
START_TEST(on_bytes_equal)
{
	const char *path = wt_path("mixed.safetensors");
	wlift_ctx *ctx;
	struct fakecufile_stats fs;
	struct fakes f;
	struct run x;
	uint64_t total;

	ctx = mixed_case(path, &total);
	x = load(ctx, path, WLIFT_GDS_ON, WLIFT_DIRECT_AUTO, 4);
	ck_assert_msg(x.ret == 0, "load: %s", x.d.message);
	f = fakes_open();
	f.fstats(&fs);
	ck_assert_str_eq(x.st.gds, "cufile");
	ck_assert_uint_ge(x.st.gds_bytes, total);
	ck_assert_uint_eq(x.st.gds_fallbacks, 0);
	ck_assert_int_eq(x.st.direct, 1);
	ck_assert_uint_gt(x.st.fixups, 0); /* unaligned tensors moved on the device */
	ck_assert_uint_gt(fs.reads, 4);
	ck_assert_msg(fs.unaligned == 0, "%llu unaligned cuFile reads; first: %s",
		      (unsigned long long)fs.unaligned, fs.first_unaligned);
	ck_assert_uint_eq(fs.reads_registered, fs.reads);
	ck_assert_uint_eq(fs.bufs, 0); /* deregistered at the end of the load */
	ck_assert_uint_eq(fs.handles_ever, 1);
	{
		struct fakecuda_stats cs;
		f.cstats(&cs);
		ck_assert_uint_eq(cs.htod_copies, 0); /* nothing through the ring */
		ck_assert_uint_gt(cs.rdma_creates, 0); /* VMM units cuFile can DMA into */
	}
	finish(ctx, x.r);
}
END_TEST

/* auto: cuFile in true GDS mode for a file read with O_DIRECT (once the driver is open). */
START_TEST(auto_true_gds_direct)
{
	const char *path = wt_path("mixed.safetensors");
	wlift_ctx *ctx;
	struct fakes f;
	struct run x;
	uint64_t total;

	ctx = mixed_case(path, &total);
	x = load(ctx, path, WLIFT_GDS_AUTO, WLIFT_DIRECT_ON, 2);
	ck_assert_msg(x.ret == 0, "load: %s", x.d.message);
	wlift_result_free(x.r);
	wait_driver_open();
	x = load(ctx, path, WLIFT_GDS_DEFAULT, WLIFT_DIRECT_ON, 2);
	ck_assert_msg(x.ret == 0, "load: %s", x.d.message);
	ck_assert_str_eq(x.st.gds, "cufile");
	ck_assert_uint_ge(x.st.gds_bytes, total);
	f = fakes_open();
	check_device_bytes(&f, x.r, 0);
	wlift_result_free(x.r);
	/* Buffered reads (from the page cache) stay on the ring: faster than the disk. */
	x = load(ctx, path, WLIFT_GDS_AUTO, WLIFT_DIRECT_OFF, 2);
	ck_assert_msg(x.ret == 0, "load: %s", x.d.message);
	ck_assert_str_eq(x.st.gds, "off");
	ck_assert_uint_eq(x.st.gds_bytes, 0);
	check_device_bytes(&f, x.r, 0);
	wlift_result_free(x.r);
	/* off: never. */
	{
		struct fakecuda_stats a, b;
		f.cstats(&a);
		x = load(ctx, path, WLIFT_GDS_OFF, WLIFT_DIRECT_ON, 2);
		f.cstats(&b);
		ck_assert_uint_eq(b.rdma_creates, a.rdma_creates); /* not without cuFile */
	}
	ck_assert_msg(x.ret == 0, "load: %s", x.d.message);
	ck_assert_str_eq(x.st.gds, "off");
	finish(ctx, x.r);
}
END_TEST

/* auto, buffered reads (a hot file): cuFile's driver is never opened. */
START_TEST(auto_hot_never_opens)
{
	const char *path = wt_path("mixed.safetensors");
	wlift_ctx *ctx;
	struct fakecufile_stats fs;
	struct fakes f;
	struct run x;
	uint64_t total;

	ctx = mixed_case(path, &total);
	x = load(ctx, path, WLIFT_GDS_AUTO, WLIFT_DIRECT_OFF, 2);
	ck_assert_msg(x.ret == 0, "load: %s", x.d.message);
	ck_assert_str_eq(x.st.gds, "off");
	f = fakes_open();
	usleep(200 * 1000); /* an open started in the background would be done by now */
	f.fstats(&fs);
	ck_assert_uint_eq(fs.opens, 0);
	finish(ctx, x.r);
}
END_TEST

/* Compatibility mode: auto leaves it alone (no faster than the ring); on uses it and says so. */
START_TEST(compat_mode)
{
	const char *path = wt_path("mixed.safetensors");
	wlift_ctx *ctx;
	struct run x;
	uint64_t total;

	setenv("FAKECUFILE_MODE", "compat", 1);
	ctx = mixed_case(path, &total);
	wait_driver_open();
	x = load(ctx, path, WLIFT_GDS_AUTO, WLIFT_DIRECT_ON, 2);
	ck_assert_msg(x.ret == 0, "load: %s", x.d.message);
	ck_assert_str_eq(x.st.gds, "off");
	ck_assert_uint_eq(x.st.gds_bytes, 0);
	wlift_result_free(x.r);
	x = load(ctx, path, WLIFT_GDS_ON, WLIFT_DIRECT_AUTO, 2);
	ck_assert_msg(x.ret == 0, "load: %s", x.d.message);
	ck_assert_str_eq(x.st.gds, "compat");
	ck_assert_uint_ge(x.st.gds_bytes, total);
	finish(ctx, x.r);
}
END_TEST

/* auto: a cuFile read failing mid-load sends that chunk and the rest through the ring. */
START_TEST(auto_fallback_on_read_failure)
{
	const char *path = wt_path("mixed.safetensors");
	wlift_ctx *ctx;
	struct run x;
	uint64_t total;

	setenv("FAKECUFILE_FAIL_READ", "3", 1);
	setenv("FAKECUFILE_FAIL_READS_ALL", "1", 1);
	ctx = mixed_case(path, &total);
	wait_driver_open();
	x = load(ctx, path, WLIFT_GDS_AUTO, WLIFT_DIRECT_ON, 1);
	ck_assert_msg(x.ret == 0, "load: %s", x.d.message);
	ck_assert_str_eq(x.st.gds, "cufile");
	ck_assert_uint_gt(x.st.gds_bytes, 0);
	ck_assert_uint_lt(x.st.gds_bytes, total);
	ck_assert_uint_eq(x.st.gds_fallbacks, 1);
	finish(ctx, x.r);
}
END_TEST

/* on: the same failure is an error naming the file and the offset; nothing is left. */
START_TEST(on_read_failure_is_error)
{
	const char *path = wt_path("mixed.safetensors");
	wlift_ctx *ctx;
	struct run x;
	uint64_t total;

	setenv("FAKECUFILE_FAIL_READ", "3", 1);
	ctx = mixed_case(path, &total);
	x = load(ctx, path, WLIFT_GDS_ON, WLIFT_DIRECT_AUTO, 4);
	ck_assert_int_eq(x.ret, WLIFT_ECUFILE);
	ck_assert_msg(strstr(x.d.message, "mixed.safetensors") &&
			  strstr(x.d.message, "cuFileRead") && strstr(x.d.message, "offset"),
		      "message: %s", x.d.message);
	ck_assert_int_eq(x.d.has_offset, 1);
	ck_assert_str_ne(x.d.tensor, "");
	finish(ctx, NULL);
}
END_TEST

/* on, but no cuFile library, or a driver that does not open: clear errors. */
START_TEST(on_without_library)
{
	const char *path = wt_path("mixed.safetensors");
	wlift_ctx *ctx;
	struct run x;
	uint64_t total;

	ctx = ctx_fake();
	wlift_ctx_destroy(ctx);
	setenv("WEIGHTLIFT_CUFILE_LIBRARY", "/nonexistent/libcufile.so.0", 1);
	ck_assert_int_eq(wlift_ctx_create(&ctx, NULL, NULL), 0);
	wt_make_u8_st(path, NMIXED, mixed, &total);
	x = load(ctx, path, WLIFT_GDS_ON, WLIFT_DIRECT_AUTO, 2);
	ck_assert_int_eq(x.ret, WLIFT_ENODEV);
	ck_assert_msg(strstr(x.d.message, "GPU Direct Storage (gds on)") &&
			  strstr(x.d.message, "cannot load the cuFile library") &&
			  strstr(x.d.message, "/nonexistent/libcufile.so.0"),
		      "message: %s", x.d.message);
	/* auto: the ring, quietly. */
	x = load(ctx, path, WLIFT_GDS_AUTO, WLIFT_DIRECT_ON, 2);
	ck_assert_msg(x.ret == 0, "load: %s", x.d.message);
	ck_assert_str_eq(x.st.gds, "off");
	finish(ctx, x.r);
}
END_TEST

START_TEST(on_driver_open_fails)
{
	const char *path = wt_path("mixed.safetensors");
	wlift_ctx *ctx;
	struct run x;
	uint64_t total;

	setenv("FAKECUFILE_FAIL_OPEN", "1", 1);
	ctx = mixed_case(path, &total);
	x = load(ctx, path, WLIFT_GDS_ON, WLIFT_DIRECT_AUTO, 2);
	ck_assert_int_eq(x.ret, WLIFT_ECUFILE);
	ck_assert_msg(strstr(x.d.message, "cuFileDriverOpen"), "message: %s", x.d.message);
	x = load(ctx, path, WLIFT_GDS_AUTO, WLIFT_DIRECT_ON, 2);
	ck_assert_msg(x.ret == 0, "load: %s", x.d.message);
	ck_assert_str_eq(x.st.gds, "off");
	wlift_result_free(x.r);
	finish(ctx, NULL);
}
END_TEST

/* A file cuFile will not register: auto falls back, on fails naming the file. A refused
 * buffer registration is not an error (cuFile's own bounce buffers). */
START_TEST(handle_and_buffer_refused)
{
	const char *path = wt_path("mixed.safetensors");
	wlift_ctx *ctx;
	struct fakecufile_stats fs;
	struct fakes f;
	struct run x;
	uint64_t total;

	setenv("FAKECUFILE_FAIL_HANDLE", "1", 1);
	ctx = mixed_case(path, &total);
	wait_driver_open();
	x = load(ctx, path, WLIFT_GDS_AUTO, WLIFT_DIRECT_ON, 2);
	ck_assert_msg(x.ret == 0, "load: %s", x.d.message);
	ck_assert_str_eq(x.st.gds, "off");
	/* One per worker that tried before the first failure turned cuFile off. */
	ck_assert_uint_ge(x.st.gds_fallbacks, 1);
	ck_assert_uint_le(x.st.gds_fallbacks, 2);
	f = fakes_open();
	check_device_bytes(&f, x.r, 0);
	wlift_result_free(x.r);
	x = load(ctx, path, WLIFT_GDS_ON, WLIFT_DIRECT_AUTO, 2);
	ck_assert_int_eq(x.ret, WLIFT_ECUFILE);
	ck_assert_msg(strstr(x.d.message, "mixed.safetensors") &&
			  strstr(x.d.message, "cuFileHandleRegister"),
		      "message: %s", x.d.message);
	f = finish(ctx, NULL);
	f.fstats(&fs);
	ck_assert_uint_eq(fs.reads, 0);
}
END_TEST

START_TEST(buffer_refused)
{
	const char *path = wt_path("mixed.safetensors");
	wlift_ctx *ctx;
	struct fakecufile_stats fs;
	struct fakes f;
	struct run x;
	uint64_t total;

	setenv("FAKECUFILE_FAIL_BUF", "1", 1);
	ctx = mixed_case(path, &total);
	x = load(ctx, path, WLIFT_GDS_ON, WLIFT_DIRECT_AUTO, 2);
	ck_assert_msg(x.ret == 0, "load: %s", x.d.message);
	ck_assert_str_eq(x.st.gds, "cufile");
	f = fakes_open();
	f.fstats(&fs);
	ck_assert_uint_gt(fs.reads, 0);
	ck_assert_uint_eq(fs.reads_registered, 0);
	finish(ctx, x.r);
}
END_TEST

/* A slow cuFileDriverOpen (3 s here; peers measured seconds) is off the critical path: the
 * first tensor is ready long before it returns, the load reads through the ring. */
struct first {
	double t0, first;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int on_ready(const wlift_tensor *t, void *user)
{
	struct first *f = user;
	double n = now_s();
	double z = 0;

	(void)t;
	__atomic_compare_exchange(&f->first, &z, &n, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
	return 0;
}

START_TEST(slow_driver_open_off_critical_path)
{
	const char *path = wt_path("mixed.safetensors");
	wlift_load_opts o = WLIFT_LOAD_OPTS_INIT;
	struct first fr = { 0, 0 };
	wlift_ctx *ctx;
	wlift_ckpt *ck;
	wlift_result *r;
	wlift_stats st;
	wlift_diag d;
	uint64_t total;
	double t_end;

	setenv("FAKECUFILE_OPEN_DELAY_MS", "3000", 1);
	ctx = mixed_case(path, &total);
	ck_assert_int_eq(wlift_open(ctx, path, &ck, NULL), 0);
	o.device = "cuda:0";
	o.direct = WLIFT_DIRECT_ON;
	o.ring_bytes = 2u << 20;
	o.ring_slots = 4;
	fr.t0 = now_s();
	wlift_diag_clear(&d);
	ck_assert_msg(wlift_load(ck, &o, on_ready, &fr, &r, &d) == 0, "%s", d.message);
	t_end = now_s();
	fprintf(stderr, "slow_driver_open: first tensor after %.3f s, load %.3f s "
			"(cuFileDriverOpen 3 s)\n",
		fr.first - fr.t0, t_end - fr.t0);
	ck_assert_double_gt(fr.first, 0);
	ck_assert_double_lt(fr.first - fr.t0, 1.5);
	ck_assert_double_lt(t_end - fr.t0, 2.5);
	ck_assert_int_eq(wlift_result_stats(r, &st), 0);
	ck_assert_str_eq(st.gds, "off"); /* all of it through the ring meanwhile */
	wlift_ckpt_close(ck);
	finish(ctx, r);
}
END_TEST

/* ---- host memory ------------------------------------------------------------------------ */

/* 128 MiB through cuFile (gds on) with an 8 MiB ring: peak RssAnon growth <= ring + 64 MiB
 * (the fake's device memory is a memfd mapping, not anonymous). */
START_TEST(host_memory_bounded)
{
	const size_t ring = 8u << 20;
	const char *path = wt_path("big.safetensors");
	static const uint64_t sz[] = { 40u << 20, 24u << 20, (32u << 20) + 5, 32u << 20 };
	wlift_load_opts o = WLIFT_LOAD_OPTS_INIT;
	struct wt_rss s;
	wlift_ctx *ctx;
	wlift_ckpt *ck;
	wlift_result *r;
	wlift_stats st;
	wlift_diag d;
	uint64_t total, growth;

	ctx = ctx_fake();
	wt_make_u8_st(path, 4, sz, &total);
	ck_assert_int_eq(wlift_open(ctx, path, &ck, NULL), 0);
	o.device = "cuda:0";
	o.gds = WLIFT_GDS_ON;
	o.ring_bytes = ring;
	o.ring_slots = 8;
	wt_rss_start(&s);
	wlift_diag_clear(&d);
	ck_assert_msg(wlift_load(ck, &o, NULL, NULL, &r, &d) == 0, "%s", d.message);
	growth = wt_rss_stop(&s);
	ck_assert_int_eq(wlift_result_stats(r, &st), 0);
	fprintf(stderr, "gds host_memory_bounded: %llu MiB through cuFile, peak RssAnon growth "
			"%.1f MiB (ring %zu MiB)\n",
		(unsigned long long)(st.gds_bytes >> 20), (double)growth / 1048576.0, ring >> 20);
	ck_assert_uint_ge(st.gds_bytes, total);
	ck_assert_msg(growth <= ring + (64u << 20), "peak RssAnon grew by %llu bytes",
		      (unsigned long long)growth);
	wlift_ckpt_close(ck);
	finish(ctx, r);
}
END_TEST

/* ---- the batch API ------------------------------------------------------------------------ */

/* Tensors of a few MiB (odd sizes: unaligned starts), read in 8 MiB chunks (a 32 MiB ring of
 * 4 buffers): each chunk is one batch of 1 MiB+ requests. */
static const uint64_t big[] = { (8u << 20) + 5, 3u << 20, 777, (5u << 20) + 4097, 12u << 20,
				(2u << 20) - 3, 9u << 20 };
#define NBIG (sizeof(big) / sizeof(big[0]))

static struct run load_big_t(wlift_ctx *ctx, const char *path, int gds, uint64_t *total,
			     int threads)
{
	wt_make_u8_st(path, NBIG, big, total);
	return load_ring(ctx, path, gds, WLIFT_DIRECT_ON, threads, 32u << 20);
}

static struct run load_big(wlift_ctx *ctx, const char *path, int gds, uint64_t *total)
{
	return load_big_t(ctx, path, gds, total, 3);
}

/* gds on: chunks go as cuFile batches (up to WEIGHTLIFT_GDS_BATCH = 8 requests), reaped out
 * of order; every request 4 KiB aligned into the registered range (its base + an offset);
 * the device bytes equal the file; no batch is left set up. */
START_TEST(batch_reads)
{
	const char *path = wt_path("big.safetensors");
	struct fakecufile_stats fs;
	wlift_ctx *ctx;
	struct fakes f;
	struct run x;
	uint64_t total;

	setenv("FAKECUFILE_DELAY_US", "2000", 1); /* wide enough for any order */
	ctx = ctx_fake();
	x = load_big(ctx, path, WLIFT_GDS_ON, &total);
	ck_assert_msg(x.ret == 0, "load: %s", x.d.message);
	ck_assert_str_eq(x.st.gds, "cufile");
	ck_assert_uint_ge(x.st.gds_bytes, total);
	f = fakes_open();
	f.fstats(&fs);
	printf("batch: %llu submits, %llu requests (%llu reaped out of order, at most %u in one "
	       "batch), %llu reads in all, %u batches set up\n",
	       (unsigned long long)fs.batch_submits, (unsigned long long)fs.batch_ios,
	       (unsigned long long)fs.batch_out_of_order, fs.batch_max_inflight,
	       (unsigned long long)fs.reads, fs.batches_ever);
	ck_assert_uint_gt(fs.batch_submits, 3);
	ck_assert_uint_ge(fs.batch_ios, 2 * fs.batch_submits);
	ck_assert_uint_le(fs.batch_max_inflight, WLIFT_DEFAULT_GDS_BATCH);
	ck_assert_uint_gt(fs.batch_max_inflight, 1);
	ck_assert_uint_gt(fs.batch_out_of_order, 0);
	ck_assert_uint_eq(fs.batches_ever, fs.batch_submits); /* one batch per chunk */
	ck_assert_msg(fs.unaligned == 0, "%llu unaligned cuFile reads; first: %s",
		      (unsigned long long)fs.unaligned, fs.first_unaligned);
	ck_assert_uint_eq(fs.reads_registered, fs.reads);
	ck_assert_uint_eq(fs.read_bytes, x.st.gds_bytes);
	check_device_bytes(&f, x.r, 0);
	wlift_result_free(x.r);
	wlift_ctx_destroy(ctx);
	check_nothing_held(&f);
}
END_TEST

/* No batches (WEIGHTLIFT_GDS_BATCH=0, a driver that allows none, a batch refused at set-up
 * or submit): synchronous cuFileReads, the same bytes. */
static void sync_reads(const char *knob, const char *val)
{
	const char *path = wt_path("big.safetensors");
	struct fakecufile_stats fs;
	wlift_ctx *ctx;
	struct fakes f;
	struct run x;
	uint64_t total;

	setenv(knob, val, 1);
	ctx = ctx_fake();
	x = load_big(ctx, path, WLIFT_GDS_ON, &total);
	ck_assert_msg(x.ret == 0, "%s=%s: load: %s", knob, val, x.d.message);
	ck_assert_str_eq(x.st.gds, "cufile");
	ck_assert_uint_ge(x.st.gds_bytes, total);
	f = fakes_open();
	f.fstats(&fs);
	ck_assert_uint_eq(fs.batch_submits, 0);
	ck_assert_uint_eq(fs.batch_ios, 0);
	ck_assert_uint_gt(fs.reads, 4);
	ck_assert_uint_eq(fs.read_bytes, x.st.gds_bytes);
	check_device_bytes(&f, x.r, 0);
	wlift_result_free(x.r);
	wlift_ctx_destroy(ctx);
	check_nothing_held(&f);
}

START_TEST(batch_off)
{
	sync_reads("WEIGHTLIFT_GDS_BATCH", "0");
}
END_TEST

START_TEST(batch_not_allowed)
{
	sync_reads("FAKECUFILE_NO_BATCH", "1");
}
END_TEST

START_TEST(batch_setup_refused)
{
	sync_reads("FAKECUFILE_FAIL_BATCH", "setup");
}
END_TEST

START_TEST(batch_submit_refused)
{
	sync_reads("FAKECUFILE_FAIL_BATCH", "submit");
}
END_TEST

/* Requests of batches fail (their events CUFILE_FAILED), and the cuFileReads after them: auto
 * sends that chunk and the rest through the ring (the bytes still equal); no batch is left
 * set up and nothing is held. */
START_TEST(batch_request_fails_auto)
{
	const char *path = wt_path("big.safetensors");
	wlift_ctx *ctx;
	struct fakes f;
	struct run x;
	uint64_t total;

	setenv("FAKECUFILE_FAIL_READ", "5", 1);
	setenv("FAKECUFILE_FAIL_READS_ALL", "1", 1);
	ctx = ctx_fake();
	wait_driver_open();
	x = load_big(ctx, path, WLIFT_GDS_AUTO, &total);
	ck_assert_msg(x.ret == 0, "load: %s", x.d.message);
	/* Each of the 3 workers may have had a batch failing before the first one stopped
	 * cuFile for the load. */
	ck_assert_uint_ge(x.st.gds_fallbacks, 1);
	ck_assert_uint_le(x.st.gds_fallbacks, 3);
	ck_assert_uint_lt(x.st.gds_bytes, total);
	f = fakes_open();
	check_device_bytes(&f, x.r, 0);
	wlift_result_free(x.r);
	wlift_ctx_destroy(ctx);
	check_nothing_held(&f);
}
END_TEST

/* on: one request of a batch fails; the chunk is read again with cuFileRead, which works, so
 * the load does (the bytes equal) and batches are off for the process from then on. */
START_TEST(batch_request_fails_retried)
{
	const char *path = wt_path("big.safetensors");
	struct fakecufile_stats fs;
	wlift_ctx *ctx;
	struct fakes f;
	struct run x;
	uint64_t total;

	setenv("FAKECUFILE_FAIL_READ", "5", 1);
	ctx = ctx_fake();
	x = load_big(ctx, path, WLIFT_GDS_ON, &total);
	ck_assert_msg(x.ret == 0, "load: %s", x.d.message);
	ck_assert_uint_ge(x.st.gds_bytes, total);
	f = fakes_open();
	f.fstats(&fs);
	printf("a failed batch request, then cuFileRead: %llu submits, %llu reads, %llu failed\n",
	       (unsigned long long)fs.batch_submits, (unsigned long long)fs.reads,
	       (unsigned long long)fs.failed);
	ck_assert_uint_eq(fs.failed, 1);
	ck_assert_uint_gt(fs.reads, fs.batch_ios);
	check_device_bytes(&f, x.r, 0);
	wlift_result_free(x.r);
	/* The next load of the process reads without batches. */
	{
		struct fakecufile_stats fs2;
		x = load_big(ctx, path, WLIFT_GDS_ON, &total);
		ck_assert_msg(x.ret == 0, "load: %s", x.d.message);
		f.fstats(&fs2);
		ck_assert_uint_eq(fs2.batch_submits, fs.batch_submits);
		ck_assert_uint_gt(fs2.reads, fs.reads);
		check_device_bytes(&f, x.r, 0);
		wlift_result_free(x.r);
	}
	wlift_ctx_destroy(ctx);
	check_nothing_held(&f);
}
END_TEST

/* on: the batch request and the cuFileRead after it fail: an error naming the file, the
 * tensor, the offset and both failures; nothing is left. */
START_TEST(batch_request_fails_on)
{
	const char *path = wt_path("big.safetensors");
	wlift_ctx *ctx;
	struct fakes f;
	struct run x;
	uint64_t total;

	setenv("FAKECUFILE_FAIL_READ", "5", 1);
	setenv("FAKECUFILE_FAIL_READS_ALL", "1", 1);
	ctx = ctx_fake();
	x = load_big_t(ctx, path, WLIFT_GDS_ON, &total, 1); /* one worker: the first chunk's batch */
	ck_assert_int_eq(x.ret, WLIFT_ECUFILE);
	printf("batch request failure: %s\n", x.d.message);
	ck_assert_msg(strstr(x.d.message, "big.safetensors") &&
			  strstr(x.d.message, "cuFileRead of") && strstr(x.d.message, "at offset") &&
			  strstr(x.d.message, "5034") &&
			  strstr(x.d.message, "after a cuFile batch read failed") &&
			  strstr(x.d.message, "cuFile batch read of"),
		      "message: %s", x.d.message);
	ck_assert_int_eq(x.d.has_offset, 1);
	ck_assert_str_ne(x.d.tensor, "");
	wlift_ctx_destroy(ctx);
	f = fakes_open();
	check_nothing_held(&f);
}
END_TEST

/* WEIGHTLIFT_GDS and wlift_load_opts.gds are range-checked. */
START_TEST(knobs)
{
	const char *path = wt_path("mixed.safetensors");
	wlift_ctx *ctx;
	wlift_diag d;
	struct run x;
	uint64_t total;

	setenv("WEIGHTLIFT_GDS", "sometimes", 1);
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift_ctx_create(&ctx, NULL, &d), -EINVAL);
	ck_assert_msg(strstr(d.message, "WEIGHTLIFT_GDS"), "%s", d.message);
	setenv("WEIGHTLIFT_GDS", "auto", 1);
	setenv("WEIGHTLIFT_GDS_BATCH", "65", 1);
	wlift_diag_clear(&d);
	ck_assert_int_eq(wlift_ctx_create(&ctx, NULL, &d), -EINVAL);
	ck_assert_msg(strstr(d.message, "WEIGHTLIFT_GDS_BATCH is out of range (0 .. 64"), "%s",
		      d.message);
	setenv("WEIGHTLIFT_GDS_BATCH", "8x", 1);
	ck_assert_int_eq(wlift_ctx_create(&ctx, NULL, &d), -EINVAL);
	setenv("WEIGHTLIFT_GDS_BATCH", "64", 1);
	ck_assert_int_eq(wlift_ctx_create(&ctx, NULL, NULL), 0);
	wlift_ctx_destroy(ctx);
	unsetenv("WEIGHTLIFT_GDS_BATCH");
	setenv("WEIGHTLIFT_GDS", "off", 1);
	ctx = mixed_case(path, &total);
	x = load(ctx, path, WLIFT_GDS_DEFAULT, WLIFT_DIRECT_ON, 2);
	ck_assert_msg(x.ret == 0, "load: %s", x.d.message);
	ck_assert_str_eq(x.st.gds, "off");
	wlift_result_free(x.r);
	x = load(ctx, path, 7, WLIFT_DIRECT_ON, 2);
	ck_assert_int_eq(x.ret, -EINVAL);
	ck_assert_msg(strstr(x.d.message, "gds"), "%s", x.d.message);
	x = load(ctx, path, -1, WLIFT_DIRECT_ON, 2);
	ck_assert_int_eq(x.ret, -EINVAL);
	wlift_ctx_destroy(ctx);
}
END_TEST

int main(void)
{
	Suite *s;
	TCase *tc;

	/* Skips are decided here: an exit(77) inside a forked test would count as an error. */
	if (!getenv("WLIFT_FAKECUDA") || !getenv("WLIFT_FAKECUFILE") || !odirect_ok()) {
		fprintf(stderr, "SKIP: no fake driver, no fake cuFile, or no O_DIRECT here\n");
		return 77;
	}
	s = suite_create("gds");
	tc = tcase_create("gds");

	tcase_add_checked_fixture(tc, wt_cleanup_at_exit, NULL);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, on_bytes_equal);
	tcase_add_test(tc, auto_true_gds_direct);
	tcase_add_test(tc, auto_hot_never_opens);
	tcase_add_test(tc, compat_mode);
	tcase_add_test(tc, auto_fallback_on_read_failure);
	tcase_add_test(tc, on_read_failure_is_error);
	tcase_add_test(tc, on_without_library);
	tcase_add_test(tc, on_driver_open_fails);
	tcase_add_test(tc, handle_and_buffer_refused);
	tcase_add_test(tc, buffer_refused);
	tcase_add_test(tc, slow_driver_open_off_critical_path);
	if (!getenv("WLIFT_SKIP_BIG")) /* the TSan run (its shadow memory is anonymous) */
		tcase_add_test(tc, host_memory_bounded);
	tcase_add_test(tc, batch_reads);
	tcase_add_test(tc, batch_off);
	tcase_add_test(tc, batch_not_allowed);
	tcase_add_test(tc, batch_setup_refused);
	tcase_add_test(tc, batch_submit_refused);
	tcase_add_test(tc, batch_request_fails_auto);
	tcase_add_test(tc, batch_request_fails_retried);
	tcase_add_test(tc, batch_request_fails_on);
	tcase_add_test(tc, knobs);
	suite_add_tcase(s, tc);
	return wt_run(s);
}
