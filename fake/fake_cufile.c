/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A fake cuFile (libwlift_fakecufile.so) so that the GPU Direct Storage path runs in CI: the
 * entry points src/source/gds.c resolves, under libcufile's exported names and with the ABI
 * declared there (CUfileError_t returned by value, CUfileDescr_t, CUfileDrvProps_t).
 * "Device" memory is the fake CUDA driver's memfd mapping, so a read is a pread into the
 * device address itself; before each read the fake asks the driver (fakecuda_device_range,
 * found in the driver WEIGHTLIFT_CUDA_LIBRARY names, already loaded) whether the calling
 * thread has a current context and the range is device memory, as the real cuFile needs.
 * True GDS mode wants O_DIRECT descriptors (a buffered one is misuse) and counts reads that
 * are not 4 KiB aligned. Errors and a slow driver open are injected by FAKECUFILE_* knobs
 * (fake_cufile.h).
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "fake_cuda.h"
#include "fake_cufile.h"

#define API __attribute__((visibility("default")))
#define MAX_HANDLES 1024
#define MAX_BUFS 256
#define ALIGN 4096u

typedef struct {
	int err;
	int cu_err;
} CUfileError_t;

typedef struct {
	int type;
	union {
		int fd;
		void *handle;
	} handle;
	const void *fs_ops;
} CUfileDescr_t;

typedef struct {
	struct {
		unsigned int major_version;
		unsigned int minor_version;
		size_t poll_thresh_size;
		size_t max_direct_io_size;
		unsigned int dstatusflags;
		unsigned int dcontrolflags;
	} nvfs;
	unsigned int fflags;
	unsigned int max_device_cache_size;
	unsigned int per_buffer_cache_size;
	unsigned int max_device_pinned_mem_size;
	unsigned int max_batch_io_size;
	unsigned int max_batch_io_timeout_msecs;
} CUfileDrvProps_t;

/* cuFile's error codes (CUfileOpError) that the fake returns. */
#define CU_FILE_SUCCESS 0
#define CU_FILE_DRIVER_NOT_INITIALIZED 5001
#define CU_FILE_IO_NOT_SUPPORTED 5008
#define CU_FILE_CUDA_DRIVER_ERROR 5011
#define CU_FILE_CUDA_POINTER_INVALID 5012
#define CU_FILE_INVALID_MAPPING_SIZE 5016
#define CU_FILE_INVALID_FILE_TYPE 5018
#define CU_FILE_INVALID_VALUE 5022
#define CU_FILE_HANDLE_NOT_REGISTERED 5027
#define CU_FILE_IO_ERROR 5034

struct handle {
	int used;
	int fd;
	int direct;
	uint64_t size;
};

struct buf {
	uintptr_t p;
	size_t len;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int opened, compat;
static int fail_handle, fail_buf, fail_reads_all;
static uint64_t fail_read, read_calls;
static struct handle handles[MAX_HANDLES];
static struct buf bufs[MAX_BUFS];
static struct fakecufile_stats st;
static fakecuda_device_range_fn device_range;

static CUfileError_t ok(void)
{
	CUfileError_t e = { CU_FILE_SUCCESS, 0 };
	return e;
}

static CUfileError_t err(int code)
{
	CUfileError_t e = { code, 0 };
	return e;
}

static uint64_t env_u64(const char *name)
{
	const char *v = getenv(name);
	return v && *v ? strtoull(v, NULL, 10) : 0;
}

static void violation(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Called with mu held. */
static void violation(const char *fmt, ...)
{
	va_list ap;

	if (!st.violations++) {
		va_start(ap, fmt);
		vsnprintf(st.violation, sizeof(st.violation), fmt, ap);
		va_end(ap);
	}
}

API void fakecufile_stats(struct fakecufile_stats *out)
{
	pthread_mutex_lock(&mu);
	*out = st;
	pthread_mutex_unlock(&mu);
}

API const char *cufileop_status_error(int status)
{
	switch (status) {
	case CU_FILE_SUCCESS:
		return "success";
	case CU_FILE_DRIVER_NOT_INITIALIZED:
		return "nvidia-fs driver is not loaded (fake)";
	case CU_FILE_IO_NOT_SUPPORTED:
		return "IO not supported (fake)";
	case CU_FILE_CUDA_DRIVER_ERROR:
		return "CUDA Driver API error (fake)";
	case CU_FILE_CUDA_POINTER_INVALID:
		return "invalid device pointer (fake)";
	case CU_FILE_INVALID_MAPPING_SIZE:
		return "invalid mapping size (fake)";
	case CU_FILE_HANDLE_NOT_REGISTERED:
		return "file handle not registered (fake)";
	case CU_FILE_IO_ERROR:
		return "injected IO failure (fake)";
	default:
		return "cuFile error (fake)";
	}
}

API CUfileError_t cuFileDriverOpen(void)
{
	const char *mode = getenv("FAKECUFILE_MODE");
	const char *cuda = getenv("WEIGHTLIFT_CUDA_LIBRARY");
	uint64_t delay = env_u64("FAKECUFILE_OPEN_DELAY_MS");
	void *h, *p;

	if (delay) {
		struct timespec ts = { (time_t)(delay / 1000), (long)(delay % 1000) * 1000000L };
		while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
			;
	}
	if (env_u64("FAKECUFILE_FAIL_OPEN"))
		return err(CU_FILE_DRIVER_NOT_INITIALIZED);
	/* The real cuFile loads libcuda itself; the fake uses the fake driver already loaded. */
	h = cuda ? dlopen(cuda, RTLD_NOW | RTLD_NOLOAD) : NULL;
	p = h ? dlsym(h, "fakecuda_device_range") : NULL;
	if (!p)
		return err(CU_FILE_CUDA_DRIVER_ERROR);
	pthread_mutex_lock(&mu);
	memcpy(&device_range, &p, sizeof(p));
	compat = mode && strcmp(mode, "compat") == 0;
	fail_handle = env_u64("FAKECUFILE_FAIL_HANDLE") != 0;
	fail_buf = env_u64("FAKECUFILE_FAIL_BUF") != 0;
	fail_read = env_u64("FAKECUFILE_FAIL_READ");
	fail_reads_all = env_u64("FAKECUFILE_FAIL_READS_ALL") != 0;
	opened = 1;
	st.opens++;
	pthread_mutex_unlock(&mu);
	return ok();
}

API CUfileError_t cuFileDriverGetProperties(CUfileDrvProps_t *props)
{
	if (!props)
		return err(CU_FILE_INVALID_VALUE);
	memset(props, 0, sizeof(*props));
	pthread_mutex_lock(&mu);
	if (!opened) {
		pthread_mutex_unlock(&mu);
		return err(CU_FILE_DRIVER_NOT_INITIALIZED);
	}
	if (!compat) {
		props->nvfs.major_version = 2;
		props->nvfs.minor_version = 17;
		props->nvfs.dstatusflags = 1u << 4; /* CU_FILE_NVME_SUPPORTED */
	}
	props->nvfs.dcontrolflags = 1u << 1; /* CU_FILE_ALLOW_COMPAT_MODE */
	props->nvfs.max_direct_io_size = 16384;
	pthread_mutex_unlock(&mu);
	return ok();
}

API CUfileError_t cuFileHandleRegister(void **fh, CUfileDescr_t *descr)
{
	struct stat sb;
	int fl;

	if (!fh || !descr || descr->type != 1)
		return err(CU_FILE_INVALID_VALUE);
	pthread_mutex_lock(&mu);
	if (!opened) {
		violation("cuFileHandleRegister before cuFileDriverOpen");
		pthread_mutex_unlock(&mu);
		return err(CU_FILE_DRIVER_NOT_INITIALIZED);
	}
	if (fail_handle) {
		pthread_mutex_unlock(&mu);
		return err(CU_FILE_IO_NOT_SUPPORTED);
	}
	fl = fcntl(descr->handle.fd, F_GETFL);
	if (fl < 0 || fstat(descr->handle.fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		violation("cuFileHandleRegister of fd %d: not an open regular file",
			  descr->handle.fd);
		pthread_mutex_unlock(&mu);
		return err(CU_FILE_INVALID_FILE_TYPE);
	}
	if (!compat && !(fl & O_DIRECT)) {
		/* True GDS reads with DMA: the descriptor must bypass the page cache. */
		violation("cuFileHandleRegister of fd %d: not opened with O_DIRECT",
			  descr->handle.fd);
		pthread_mutex_unlock(&mu);
		return err(CU_FILE_INVALID_FILE_TYPE);
	}
	for (unsigned i = 0; i < MAX_HANDLES; i++) {
		if (!handles[i].used) {
			handles[i].used = 1;
			handles[i].fd = descr->handle.fd;
			handles[i].direct = (fl & O_DIRECT) != 0;
			handles[i].size = (uint64_t)sb.st_size;
			*fh = &handles[i];
			st.handles++;
			st.handles_ever++;
			pthread_mutex_unlock(&mu);
			return ok();
		}
	}
	pthread_mutex_unlock(&mu);
	return err(CU_FILE_INVALID_VALUE);
}

API void cuFileHandleDeregister(void *fh)
{
	struct handle *h = fh;

	pthread_mutex_lock(&mu);
	if (!h || h < handles || h >= handles + MAX_HANDLES || !h->used)
		violation("cuFileHandleDeregister of a handle not registered");
	else {
		h->used = 0;
		st.handles--;
	}
	pthread_mutex_unlock(&mu);
}

API CUfileError_t cuFileBufRegister(const void *dp, size_t len, int flags)
{
	(void)flags;
	if (!opened)
		return err(CU_FILE_DRIVER_NOT_INITIALIZED);
	if (fail_buf)
		return err(CU_FILE_INVALID_MAPPING_SIZE);
	if (device_range((uintptr_t)dp, len) < 0)
		return err(CU_FILE_CUDA_POINTER_INVALID);
	pthread_mutex_lock(&mu);
	for (unsigned i = 0; i < MAX_BUFS; i++) {
		if (!bufs[i].p) {
			bufs[i].p = (uintptr_t)dp;
			bufs[i].len = len;
			st.bufs++;
			st.bufs_ever++;
			pthread_mutex_unlock(&mu);
			return ok();
		}
	}
	pthread_mutex_unlock(&mu);
	return err(CU_FILE_INVALID_VALUE);
}

API CUfileError_t cuFileBufDeregister(const void *dp)
{
	pthread_mutex_lock(&mu);
	for (unsigned i = 0; i < MAX_BUFS; i++) {
		if (bufs[i].p == (uintptr_t)dp) {
			bufs[i].p = 0;
			st.bufs--;
			pthread_mutex_unlock(&mu);
			return ok();
		}
	}
	violation("cuFileBufDeregister of %p: not registered", dp);
	pthread_mutex_unlock(&mu);
	return err(CU_FILE_INVALID_VALUE);
}

API ssize_t cuFileRead(void *fh, void *dp_base, size_t size, off_t file_off, off_t dp_off)
{
	struct handle *h = fh;
	uint8_t *dp = (uint8_t *)dp_base + dp_off;
	uint64_t n;
	int fd, registered = 0;
	size_t done = 0;

	pthread_mutex_lock(&mu);
	if (!opened) {
		violation("cuFileRead before cuFileDriverOpen");
		pthread_mutex_unlock(&mu);
		return -CU_FILE_DRIVER_NOT_INITIALIZED;
	}
	if (!h || h < handles || h >= handles + MAX_HANDLES || !h->used) {
		violation("cuFileRead on a handle not registered");
		pthread_mutex_unlock(&mu);
		return -CU_FILE_HANDLE_NOT_REGISTERED;
	}
	n = ++read_calls;
	if (fail_read && (n == fail_read || (fail_reads_all && n > fail_read))) {
		st.failed++;
		pthread_mutex_unlock(&mu);
		return -CU_FILE_IO_ERROR;
	}
	fd = h->fd;
	if ((uint64_t)file_off % ALIGN || (uintptr_t)dp % ALIGN ||
	    (size % ALIGN && (uint64_t)file_off + size < h->size)) {
		if (!st.unaligned++)
			snprintf(st.first_unaligned, sizeof(st.first_unaligned),
				 "%zu bytes at file offset %lld to %p", size, (long long)file_off,
				 (void *)dp);
	}
	for (unsigned i = 0; i < MAX_BUFS; i++)
		if (bufs[i].p && (uintptr_t)dp >= bufs[i].p &&
		    (uintptr_t)dp + size <= bufs[i].p + bufs[i].len)
			registered = 1;
	pthread_mutex_unlock(&mu);
	/* The device range (and a current context), as the driver sees it. */
	if (device_range((uintptr_t)dp, size) < 0)
		return -CU_FILE_CUDA_POINTER_INVALID;
	while (done < size) {
		ssize_t k = pread(fd, dp + done, size - done, file_off + (off_t)done);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			return -1; /* errno set */
		}
		if (k == 0)
			break;
		done += (size_t)k;
	}
	pthread_mutex_lock(&mu);
	st.reads++;
	st.read_bytes += done;
	st.reads_registered += (uint64_t)registered;
	pthread_mutex_unlock(&mu);
	return (ssize_t)done;
}
