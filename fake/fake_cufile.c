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
 *
 * The batch API (cuFileBatchIOSetUp/Submit/GetStatus/Cancel/Destroy): Submit checks each
 * request on the calling thread (a current context, device memory, a registered handle) and
 * queues it; FAKECUFILE_WORKERS threads (default 3) take any queued request at random after
 * a random delay (up to FAKECUFILE_DELAY_US, default 300 us), so requests complete out of
 * order; GetStatus reaps them in completion order. Each request counts as one read for
 * FAKECUFILE_FAIL_READ (its event says CUFILE_FAILED, ret minus the cuFile error).
 * FAKECUFILE_NO_BATCH=1 reports max_batch_io_size 0 (a driver without batches),
 * FAKECUFILE_FAIL_BATCH=setup|submit fails that call.
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
#define MAX_BATCHES 256
#define MAX_BATCH_NR 256
#define MAX_QUEUED 4096

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

/* The batch API's types (cufile.h). */
typedef struct {
	int mode;
	union {
		struct {
			void *devPtr_base;
			off_t file_offset;
			off_t devPtr_offset;
			size_t size;
		} batch;
	} u;
	void *fh;
	int opcode;
	void *cookie;
} CUfileIOParams_t;

typedef struct {
	void *cookie;
	int status;
	size_t ret;
} CUfileIOEvents_t;

#define CUFILE_READ 0
#define CUFILE_BATCH 1
#define CUFILE_PENDING 0x02
#define CUFILE_CANCELED 0x08
#define CUFILE_COMPLETE 0x10
#define CUFILE_FAILED 0x40

struct bio {
	struct handle *h;
	uint8_t *dp;
	size_t size;
	off_t file_off;
	void *cookie;
	uint64_t seq;	/* submission order in the batch */
	int fail;	/* an injected failure */
	int status;	/* CUFILE_PENDING until a worker ran it */
	ssize_t ret;
};

struct batch {
	int used;
	unsigned cap;
	unsigned n;	      /* requests submitted (not yet reaped or reaped) */
	unsigned running;     /* taken by a worker, not finished */
	unsigned queued;      /* waiting for a worker */
	struct bio io[MAX_BATCH_NR];
	unsigned done[MAX_BATCH_NR]; /* indexes in completion order */
	unsigned ndone, reaped;
	uint64_t last_seq;	/* the highest sequence reaped so far (+1) */
	pthread_cond_t cv;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int opened, compat;
static int fail_handle, fail_buf, fail_reads_all;
static uint64_t fail_read, read_calls;
static struct handle handles[MAX_HANDLES];
static struct buf bufs[MAX_BUFS];
static struct fakecufile_stats st;
static fakecuda_device_range_fn device_range;
static int no_batch, fail_batch_setup, fail_batch_submit;
static struct batch batches[MAX_BATCHES];
static struct {
	struct batch *b;
	unsigned i;
} queue[MAX_QUEUED];
static unsigned nqueued;
static pthread_cond_t queue_cv = PTHREAD_COND_INITIALIZER;
static int workers_started;
static uint64_t delay_us = 300;
static unsigned nworkers = 3;

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
	no_batch = env_u64("FAKECUFILE_NO_BATCH") != 0;
	{
		const char *fb = getenv("FAKECUFILE_FAIL_BATCH");
		fail_batch_setup = fb && strcmp(fb, "setup") == 0;
		fail_batch_submit = fb && strcmp(fb, "submit") == 0;
	}
	if (getenv("FAKECUFILE_DELAY_US"))
		delay_us = env_u64("FAKECUFILE_DELAY_US");
	if (env_u64("FAKECUFILE_WORKERS"))
		nworkers = (unsigned)env_u64("FAKECUFILE_WORKERS");
	if (nworkers > 16)
		nworkers = 16;
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
	props->max_batch_io_size = no_batch ? 0 : 128;
	props->max_batch_io_timeout_msecs = 5;
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

/* ---- the batch API ---------------------------------------------------------------------- */

/* One request's pread (no lock held). */
static ssize_t do_pread(int fd, uint8_t *dp, size_t size, off_t file_off)
{
	size_t done = 0;

	while (done < size) {
		ssize_t k = pread(fd, dp + done, size - done, file_off + (off_t)done);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (k == 0)
			break;
		done += (size_t)k;
	}
	return (ssize_t)done;
}

static void *batch_worker(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg * 2654435761u + 1;

	(void)arg;
	pthread_mutex_lock(&mu);
	for (;;) {
		struct batch *b;
		struct bio *io;
		unsigned k, i;
		ssize_t ret;

		while (!nqueued)
			pthread_cond_wait(&queue_cv, &mu);
		k = (unsigned)rand_r(&seed) % nqueued; /* any queued request: out of order */
		b = queue[k].b;
		i = queue[k].i;
		queue[k] = queue[--nqueued];
		b->queued--;
		b->running++;
		io = &b->io[i];
		pthread_mutex_unlock(&mu);
		if (delay_us) {
			uint64_t us = (uint64_t)rand_r(&seed) % (delay_us + 1);
			struct timespec ts = { (time_t)(us / 1000000), (long)(us % 1000000) * 1000 };
			nanosleep(&ts, NULL);
		}
		ret = io->fail ? -CU_FILE_IO_ERROR : do_pread(io->h->fd, io->dp, io->size, io->file_off);
		pthread_mutex_lock(&mu);
		io->ret = ret;
		io->status = ret < 0 ? CUFILE_FAILED : CUFILE_COMPLETE;
		if (ret >= 0) {
			st.reads++;
			st.read_bytes += (uint64_t)ret;
			st.batch_ios++;
		}
		b->done[b->ndone++] = i;
		b->running--;
		pthread_cond_broadcast(&b->cv);
	}
	return NULL;
}

API CUfileError_t cuFileBatchIOSetUp(void **batch_idp, unsigned nr)
{
	if (!batch_idp || !nr || nr > MAX_BATCH_NR)
		return err(CU_FILE_INVALID_VALUE);
	pthread_mutex_lock(&mu);
	if (!opened) {
		violation("cuFileBatchIOSetUp before cuFileDriverOpen");
		pthread_mutex_unlock(&mu);
		return err(CU_FILE_DRIVER_NOT_INITIALIZED);
	}
	if (no_batch || nr > 128) {
		violation("cuFileBatchIOSetUp of %u requests: more than max_batch_io_size %u", nr,
			  no_batch ? 0u : 128u);
		pthread_mutex_unlock(&mu);
		return err(CU_FILE_INVALID_VALUE);
	}
	if (fail_batch_setup) {
		st.failed++;
		pthread_mutex_unlock(&mu);
		return err(CU_FILE_IO_NOT_SUPPORTED);
	}
	for (unsigned i = 0; i < MAX_BATCHES; i++) {
		struct batch *b = &batches[i];
		if (!b->used) {
			memset(b->io, 0, sizeof(b->io));
			b->used = 1;
			b->cap = nr;
			b->n = b->ndone = b->reaped = b->running = b->queued = 0;
			b->last_seq = 0;
			pthread_cond_init(&b->cv, NULL);
			*batch_idp = b;
			st.batches++;
			st.batches_ever++;
			pthread_mutex_unlock(&mu);
			return ok();
		}
	}
	pthread_mutex_unlock(&mu);
	return err(CU_FILE_INVALID_VALUE);
}

static struct batch *batch_of(void *p, const char *call)
{
	struct batch *b = p;

	if (!b || b < batches || b >= batches + MAX_BATCHES || !b->used) {
		violation("%s of a batch not set up", call);
		return NULL;
	}
	return b;
}

API CUfileError_t cuFileBatchIOSubmit(void *batch_id, unsigned nr, CUfileIOParams_t *iocbp,
				      unsigned flags)
{
	struct batch *b;

	(void)flags;
	pthread_mutex_lock(&mu);
	b = batch_of(batch_id, "cuFileBatchIOSubmit");
	if (!b) {
		pthread_mutex_unlock(&mu);
		return err(CU_FILE_INVALID_VALUE);
	}
	if (!iocbp || !nr || b->n + nr > b->cap || nqueued + nr > MAX_QUEUED) {
		violation("cuFileBatchIOSubmit of %u requests into a batch of %u (%u submitted)",
			  nr, b->cap, b->n);
		pthread_mutex_unlock(&mu);
		return err(CU_FILE_INVALID_VALUE);
	}
	if (fail_batch_submit) {
		st.failed++;
		pthread_mutex_unlock(&mu);
		return err(CU_FILE_IO_NOT_SUPPORTED);
	}
	/* Checked on the calling thread, as cuFile does: the requests, the handles, the device
	 * memory (with the caller's context current). Any bad one fails the whole submit. */
	for (unsigned i = 0; i < nr; i++) {
		CUfileIOParams_t *p = &iocbp[i];
		struct handle *h = p->fh;
		uint8_t *dp = (uint8_t *)p->u.batch.devPtr_base + p->u.batch.devPtr_offset;
		if (p->mode != CUFILE_BATCH || p->opcode != CUFILE_READ) {
			violation("cuFileBatchIOSubmit: request %u is not a batch read", i);
			pthread_mutex_unlock(&mu);
			return err(CU_FILE_INVALID_VALUE);
		}
		if (!h || h < handles || h >= handles + MAX_HANDLES || !h->used) {
			violation("cuFileBatchIOSubmit: request %u on a handle not registered", i);
			pthread_mutex_unlock(&mu);
			return err(CU_FILE_HANDLE_NOT_REGISTERED);
		}
		pthread_mutex_unlock(&mu);
		if (device_range((uintptr_t)dp, p->u.batch.size) < 0)
			return err(CU_FILE_CUDA_POINTER_INVALID);
		pthread_mutex_lock(&mu);
	}
	for (unsigned i = 0; i < nr; i++) {
		CUfileIOParams_t *p = &iocbp[i];
		struct bio *io = &b->io[b->n];
		uint64_t n = ++read_calls;
		io->h = p->fh;
		io->dp = (uint8_t *)p->u.batch.devPtr_base + p->u.batch.devPtr_offset;
		io->size = p->u.batch.size;
		io->file_off = p->u.batch.file_offset;
		io->cookie = p->cookie;
		io->seq = b->n;
		io->status = CUFILE_PENDING;
		io->fail = fail_read && (n == fail_read || (fail_reads_all && n > fail_read));
		if (io->fail)
			st.failed++;
		if ((uint64_t)io->file_off % ALIGN || (uintptr_t)io->dp % ALIGN ||
		    (io->size % ALIGN && (uint64_t)io->file_off + io->size < io->h->size)) {
			if (!st.unaligned++)
				snprintf(st.first_unaligned, sizeof(st.first_unaligned),
					 "%zu bytes at file offset %lld to %p (batch)", io->size,
					 (long long)io->file_off, (void *)io->dp);
		}
		for (unsigned j = 0; j < MAX_BUFS; j++)
			if (bufs[j].p && (uintptr_t)io->dp >= bufs[j].p &&
			    (uintptr_t)io->dp + io->size <= bufs[j].p + bufs[j].len)
				st.reads_registered++;
		queue[nqueued].b = b;
		queue[nqueued].i = b->n;
		nqueued++;
		b->queued++;
		b->n++;
	}
	st.batch_submits++;
	if (b->queued + b->running > st.batch_max_inflight)
		st.batch_max_inflight = b->queued + b->running;
	if (!workers_started) {
		workers_started = 1;
		for (unsigned w = 0; w < nworkers; w++) {
			pthread_t t;
			pthread_attr_t at;
			pthread_attr_init(&at);
			pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
			if (pthread_create(&t, &at, batch_worker, (void *)(uintptr_t)(w + 1)) != 0)
				violation("the fake cannot start its batch workers");
			pthread_attr_destroy(&at);
		}
	}
	pthread_cond_broadcast(&queue_cv);
	pthread_mutex_unlock(&mu);
	return ok();
}

API CUfileError_t cuFileBatchIOGetStatus(void *batch_id, unsigned min_nr, unsigned *nr,
					 CUfileIOEvents_t *iocbp, struct timespec *timeout)
{
	struct batch *b;
	struct timespec dl;
	unsigned k = 0;

	pthread_mutex_lock(&mu);
	b = batch_of(batch_id, "cuFileBatchIOGetStatus");
	if (!b || !nr || !iocbp) {
		pthread_mutex_unlock(&mu);
		return err(CU_FILE_INVALID_VALUE);
	}
	if (timeout) {
		clock_gettime(CLOCK_REALTIME, &dl);
		dl.tv_sec += timeout->tv_sec;
		dl.tv_nsec += timeout->tv_nsec;
		if (dl.tv_nsec >= 1000000000L) {
			dl.tv_sec++;
			dl.tv_nsec -= 1000000000L;
		}
	}
	while (b->ndone - b->reaped < min_nr && b->ndone - b->reaped < b->n - b->reaped) {
		if (!timeout)
			pthread_cond_wait(&b->cv, &mu);
		else if (pthread_cond_timedwait(&b->cv, &mu, &dl) == ETIMEDOUT)
			break;
	}
	while (k < *nr && b->reaped < b->ndone) {
		struct bio *io = &b->io[b->done[b->reaped++]];
		iocbp[k].cookie = io->cookie;
		iocbp[k].status = io->status;
		iocbp[k].ret = (size_t)io->ret;
		if (io->seq + 1 < b->last_seq)
			st.batch_out_of_order++;
		if (io->seq + 1 > b->last_seq)
			b->last_seq = io->seq + 1;
		k++;
	}
	*nr = k;
	pthread_mutex_unlock(&mu);
	return ok();
}

API CUfileError_t cuFileBatchIOCancel(void *batch_id)
{
	struct batch *b;

	pthread_mutex_lock(&mu);
	b = batch_of(batch_id, "cuFileBatchIOCancel");
	if (!b) {
		pthread_mutex_unlock(&mu);
		return err(CU_FILE_INVALID_VALUE);
	}
	/* Requests still queued are canceled; those a worker runs finish. */
	for (unsigned q = 0; q < nqueued;) {
		if (queue[q].b == b) {
			struct bio *io = &b->io[queue[q].i];
			io->status = CUFILE_CANCELED;
			io->ret = -CU_FILE_IO_ERROR;
			b->done[b->ndone++] = queue[q].i;
			b->queued--;
			queue[q] = queue[--nqueued];
		} else {
			q++;
		}
	}
	while (b->running)
		pthread_cond_wait(&b->cv, &mu);
	st.batch_cancels++;
	pthread_mutex_unlock(&mu);
	return ok();
}

API void cuFileBatchIODestroy(void *batch_id)
{
	struct batch *b;

	pthread_mutex_lock(&mu);
	b = batch_of(batch_id, "cuFileBatchIODestroy");
	if (b) {
		if (b->queued || b->running) {
			violation("cuFileBatchIODestroy with %u requests in flight",
				  b->queued + b->running);
			/* Wait for them all the same: the memory they write is the caller's. */
			while (b->queued || b->running)
				pthread_cond_wait(&b->cv, &mu);
		}
		b->used = 0;
		pthread_cond_destroy(&b->cv);
		st.batches--;
	}
	pthread_mutex_unlock(&mu);
}
