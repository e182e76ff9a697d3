/* SPDX-License-Identifier: Apache-2.0 */
/*
 * GPU Direct Storage through cuFile, loaded at run time. The cuFile header is not needed to
 * build: the few types and entry points used are declared below from NVIDIA's cuFile API
 * reference (cufile.h: CUfileError_t, CUfileDescr_t, CUfileDrvProps_t; cuFileDriverOpen,
 * cuFileDriverGetProperties, cuFileHandleRegister/Deregister, cuFileBufRegister/Deregister,
 * cuFileRead; and, where the library has them, the batch API: cuFileBatchIOSetUp, Submit,
 * GetStatus, Cancel, Destroy, with CUfileIOParams_t and CUfileIOEvents_t). Each library path is opened once per process and kept, like the CUDA driver
 * (cuFile starts threads of its own and is not meant to be unloaded). cuFileDriverOpen runs
 * on a detached thread started by the first wlift__gds_get, because it can cost seconds
 * (peers measured 1-3 s on a cold driver): a load asks wlift__gds_state without waiting and
 * reads through the pinned ring until the driver is open. The driver is never closed (the
 * library's own exit handler does it). Function pointers are copied out of dlsym with
 * memcpy (-Wpedantic forbids the cast).
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#include "common/tunables.h"
#include "source/gds.h"

/* ---- the cuFile ABI (cufile.h, declared from the API reference) ------------------------- */

typedef struct {
	int err;    /* CUfileOpError: 0 success, 5000 + n a cuFile error */
	int cu_err; /* CUresult when err is CU_FILE_CUDA_DRIVER_ERROR */
} CUfileError_t;

#define CU_FILE_SUCCESS 0
#define CU_FILE_HANDLE_TYPE_OPAQUE_FD 1

typedef struct {
	int type; /* enum CUfileFileHandleType */
	union {
		int fd;
		void *handle;
	} handle;
	const void *fs_ops; /* NULL: discovered by cuFile (fstat) */
} CUfileDescr_t;

typedef struct {
	struct {
		unsigned int major_version; /* nvidia-fs kernel module; 0 when not loaded */
		unsigned int minor_version;
		size_t poll_thresh_size;
		size_t max_direct_io_size;
		unsigned int dstatusflags; /* bit per storage kind reachable directly */
		unsigned int dcontrolflags;
	} nvfs;
	unsigned int fflags;
	unsigned int max_device_cache_size;
	unsigned int per_buffer_cache_size;
	unsigned int max_device_pinned_mem_size;
	unsigned int max_batch_io_size;
	unsigned int max_batch_io_timeout_msecs;
	unsigned int reserved[32]; /* room for fields later versions add */
} CUfileDrvProps_t;

/* The batch API (cuFile 1.6+, CUDA 12.2): one batch of nr reads submitted at once, their
 * completions reaped in any order. */
typedef void *CUfileBatchHandle_t;
#define CUFILE_READ 0  /* CUfileOpcode_t */
#define CUFILE_BATCH 1 /* CUfileBatchMode_t */
/* CUfileStatus_t */
#define CUFILE_WAITING 0x01
#define CUFILE_PENDING 0x02
#define CUFILE_INVALID 0x04
#define CUFILE_CANCELED 0x08
#define CUFILE_COMPLETE 0x10
#define CUFILE_TIMEOUT 0x20
#define CUFILE_FAILED 0x40

typedef struct {
	int mode; /* CUfileBatchMode_t: CUFILE_BATCH; the very first field */
	union {
		struct {
			void *devPtr_base;
			off_t file_offset;
			off_t devPtr_offset;
			size_t size;
		} batch;
	} u;
	void *fh;   /* CUfileHandle_t */
	int opcode; /* CUfileOpcode_t */
	void *cookie;
} CUfileIOParams_t;

typedef struct {
	void *cookie;
	int status; /* CUfileStatus_t */
	size_t ret; /* bytes done, or minus an error (a cuFile code, or -errno) */
} CUfileIOEvents_t;

struct cufile_api {
	CUfileError_t (*DriverOpen)(void);
	CUfileError_t (*DriverGetProperties)(CUfileDrvProps_t *props);
	CUfileError_t (*HandleRegister)(void **fh, CUfileDescr_t *descr);
	void (*HandleDeregister)(void *fh);
	CUfileError_t (*BufRegister)(const void *dp, size_t len, int flags);
	CUfileError_t (*BufDeregister)(const void *dp);
	ssize_t (*Read)(void *fh, void *dp, size_t len, off_t file_off, off_t dp_off);
	const char *(*StatusError)(int err); /* optional: cufileop_status_error */
	/* Optional, all or none: the batch API. */
	CUfileError_t (*BatchSetUp)(CUfileBatchHandle_t *b, unsigned nr);
	CUfileError_t (*BatchSubmit)(CUfileBatchHandle_t b, unsigned nr, CUfileIOParams_t *io,
				     unsigned flags);
	CUfileError_t (*BatchGetStatus)(CUfileBatchHandle_t b, unsigned min_nr, unsigned *nr,
					CUfileIOEvents_t *ev, struct timespec *timeout);
	CUfileError_t (*BatchCancel)(CUfileBatchHandle_t b);
	void (*BatchDestroy)(CUfileBatchHandle_t b);
};

/* ---- loading ---------------------------------------------------------------------------- */

#define MAX_LIBS 4 /* distinct library paths in one process (tests use two or three) */

struct wlift__gds {
	char path[512];
	struct cufile_api api;
	int load_err;	/* the library did not load: this code, msg says why */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int state; /* WLIFT__GDS_*, or < 0: the open failed */
	int started;
	unsigned batch_max; /* requests one batch may hold (0: no batch API; from the library's
			       entry points and the driver's max_batch_io_size) */
	int batch_broken;   /* atomic: a batch could not be set up or submitted; synchronous
			       reads from then on */
	char msg[1024];
};

static pthread_mutex_t libs_mu = PTHREAD_MUTEX_INITIALIZER;
static struct wlift__gds *libs[MAX_LIBS];

static const char *errtext(const struct wlift__gds *g, CUfileError_t e, char *buf, size_t n)
{
	const char *s = g->api.StatusError ? g->api.StatusError(e.err) : NULL;

	if (e.cu_err)
		snprintf(buf, n, "cuFile error %d (%s), CUDA error %d", e.err, s ? s : "?",
			 e.cu_err);
	else
		snprintf(buf, n, "cuFile error %d (%s)", e.err, s ? s : "?");
	return buf;
}

static int resolve(struct wlift__gds *g)
{
	void *h = dlopen(g->path, RTLD_NOW | RTLD_LOCAL);
	struct {
		const char *sym;
		void *field;
		size_t size;
		int optional;
	} eps[] = {
		{ "cuFileDriverOpen", &g->api.DriverOpen, sizeof(g->api.DriverOpen), 0 },
		{ "cuFileDriverGetProperties", &g->api.DriverGetProperties,
		  sizeof(g->api.DriverGetProperties), 0 },
		{ "cuFileHandleRegister", &g->api.HandleRegister, sizeof(g->api.HandleRegister), 0 },
		{ "cuFileHandleDeregister", &g->api.HandleDeregister,
		  sizeof(g->api.HandleDeregister), 0 },
		{ "cuFileBufRegister", &g->api.BufRegister, sizeof(g->api.BufRegister), 0 },
		{ "cuFileBufDeregister", &g->api.BufDeregister, sizeof(g->api.BufDeregister), 0 },
		{ "cuFileRead", &g->api.Read, sizeof(g->api.Read), 0 },
		{ "cufileop_status_error", &g->api.StatusError, sizeof(g->api.StatusError), 1 },
		{ "cuFileBatchIOSetUp", &g->api.BatchSetUp, sizeof(g->api.BatchSetUp), 1 },
		{ "cuFileBatchIOSubmit", &g->api.BatchSubmit, sizeof(g->api.BatchSubmit), 1 },
		{ "cuFileBatchIOGetStatus", &g->api.BatchGetStatus, sizeof(g->api.BatchGetStatus),
		  1 },
		{ "cuFileBatchIOCancel", &g->api.BatchCancel, sizeof(g->api.BatchCancel), 1 },
		{ "cuFileBatchIODestroy", &g->api.BatchDestroy, sizeof(g->api.BatchDestroy), 1 },
	};

	if (!h) {
		const char *e = dlerror();
		snprintf(g->msg, sizeof(g->msg), "cannot load the cuFile library %s: %s", g->path,
			 e ? e : "dlopen failed");
		return WLIFT_ENODEV;
	}
	for (size_t i = 0; i < sizeof(eps) / sizeof(eps[0]); i++) {
		void *p = dlsym(h, eps[i].sym);
		if (!p && !eps[i].optional) {
			snprintf(g->msg, sizeof(g->msg),
				 "the cuFile library %s lacks %s (too old a cuFile?)", g->path,
				 eps[i].sym);
			return WLIFT_ENODEV;
		}
		memcpy(eps[i].field, &p, eps[i].size);
	}
	/* The batch API only when the library has all of it (cuFile before 1.6 has none). */
	if (!g->api.BatchSetUp || !g->api.BatchSubmit || !g->api.BatchGetStatus ||
	    !g->api.BatchCancel || !g->api.BatchDestroy) {
		g->api.BatchSetUp = NULL;
		g->api.BatchSubmit = NULL;
		g->api.BatchGetStatus = NULL;
		g->api.BatchCancel = NULL;
		g->api.BatchDestroy = NULL;
	}
	return 0;
}

/* The driver's open, off the loads' critical path. */
static void *open_main(void *arg)
{
	struct wlift__gds *g = arg;
	CUfileError_t e = g->api.DriverOpen();
	CUfileDrvProps_t props;
	int state;
	char buf[160];

	if (e.err != CU_FILE_SUCCESS) {
		pthread_mutex_lock(&g->mu);
		snprintf(g->msg, sizeof(g->msg), "cuFileDriverOpen (%s) failed: %s", g->path,
			 errtext(g, e, buf, sizeof(buf)));
		g->state = WLIFT_ECUFILE;
		pthread_cond_broadcast(&g->cv);
		pthread_mutex_unlock(&g->mu);
		return NULL;
	}
	/* The mode: true GDS needs the nvidia-fs kernel module (its version is 0 when it is not
	 * loaded) and at least one storage kind it reaches directly (dstatusflags); anything
	 * else reads in compatibility mode (POSIX reads into cuFile's host bounce buffers, then
	 * copies: no faster than the pinned ring). Properties that cannot be read count as
	 * compatibility mode. */
	memset(&props, 0, sizeof(props));
	e = g->api.DriverGetProperties(&props);
	state = e.err == CU_FILE_SUCCESS && props.nvfs.major_version && props.nvfs.dstatusflags
			? WLIFT__GDS_TRUE
			: WLIFT__GDS_COMPAT;
	pthread_mutex_lock(&g->mu);
	/* Batches hold at most what the driver allows (cufile.json's max_batch_io_size, 128 by
	 * default; properties that cannot be read or say 0: the batch API is not used). */
	if (g->api.BatchSetUp && e.err == CU_FILE_SUCCESS && props.max_batch_io_size)
		g->batch_max = props.max_batch_io_size < WLIFT_MAX_GDS_BATCH
				   ? props.max_batch_io_size
				   : WLIFT_MAX_GDS_BATCH;
	g->state = state;
	pthread_cond_broadcast(&g->cv);
	pthread_mutex_unlock(&g->mu);
	return NULL;
}

int wlift__gds_get(const char *path, struct wlift__gds **out, wlift_diag *d)
{
	struct wlift__gds *g = NULL;
	int i, ret;

	*out = NULL;
	if (!path || !*path)
		path = "libcufile.so.0";
	if (strlen(path) >= sizeof(g->path))
		return wlift__diag_set(d, -ENAMETOOLONG, NULL, NULL, -1, "gds.library",
				       "cuFile library path too long: %s", path);
	pthread_mutex_lock(&libs_mu);
	for (i = 0; i < MAX_LIBS && libs[i]; i++)
		if (strcmp(libs[i]->path, path) == 0)
			break;
	if (i == MAX_LIBS) {
		pthread_mutex_unlock(&libs_mu);
		return wlift__diag_set(d, WLIFT_ENODEV, NULL, NULL, -1, "gds.library",
				       "cannot load the cuFile library %s: %d others are loaded",
				       path, MAX_LIBS);
	}
	if (!libs[i]) {
		/* Kept for the process, loaded or not (a failure is not retried per load). */
		g = calloc(1, sizeof(*g));
		if (!g) {
			pthread_mutex_unlock(&libs_mu);
			return wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
		}
		snprintf(g->path, sizeof(g->path), "%s", path);
		pthread_mutex_init(&g->mu, NULL);
		pthread_cond_init(&g->cv, NULL);
		g->load_err = resolve(g);
		libs[i] = g;
	}
	g = libs[i];
	if (!g->load_err && !g->started) {
		pthread_t t;
		pthread_attr_t at;
		g->started = 1;
		pthread_attr_init(&at);
		pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
		if (pthread_create(&t, &at, open_main, g) != 0) {
			snprintf(g->msg, sizeof(g->msg),
				 "cannot start the thread that opens the cuFile driver (%s)", path);
			g->state = -EAGAIN;
		}
		pthread_attr_destroy(&at);
	}
	pthread_mutex_unlock(&libs_mu);
	ret = g->load_err;
	if (ret)
		return wlift__diag_set(d, ret, NULL, NULL, -1, "gds.library", "%s", g->msg);
	*out = g;
	return 0;
}

int wlift__gds_state(struct wlift__gds *g, int wait, wlift_diag *d)
{
	int s;

	pthread_mutex_lock(&g->mu);
	while (wait && g->state == WLIFT__GDS_OPENING)
		pthread_cond_wait(&g->cv, &g->mu);
	s = g->state;
	pthread_mutex_unlock(&g->mu);
	if (s < 0)
		return wlift__diag_set(d, s, NULL, NULL, -1, "gds.open", "%s", g->msg);
	return s;
}

const char *wlift__gds_mode_name(int state)
{
	return state == WLIFT__GDS_TRUE ? "cufile" : state == WLIFT__GDS_COMPAT ? "compat" : "off";
}

/* ---- registration and reads ------------------------------------------------------------- */

int wlift__gds_buf_register(struct wlift__gds *g, void *dp, size_t len, wlift_diag *d)
{
	CUfileError_t e = g->api.BufRegister(dp, len, 0);
	char buf[160];

	if (e.err != CU_FILE_SUCCESS)
		return wlift__diag_set(d, WLIFT_ECUFILE, NULL, NULL, -1, "gds.buffer",
				       "cuFileBufRegister of %zu bytes of device memory: %s", len,
				       errtext(g, e, buf, sizeof(buf)));
	return 0;
}

void wlift__gds_buf_deregister(struct wlift__gds *g, void *dp)
{
	g->api.BufDeregister(dp);
}

int wlift__gds_handle_register(struct wlift__gds *g, int fd, const char *uri, void **fh,
			       wlift_diag *d)
{
	CUfileDescr_t desc;
	CUfileError_t e;
	char buf[160];

	memset(&desc, 0, sizeof(desc));
	desc.type = CU_FILE_HANDLE_TYPE_OPAQUE_FD;
	desc.handle.fd = fd;
	*fh = NULL;
	e = g->api.HandleRegister(fh, &desc);
	if (e.err != CU_FILE_SUCCESS) {
		*fh = NULL;
		return wlift__diag_set(d, WLIFT_ECUFILE, uri, NULL, -1, "gds.handle",
				       "%s: cuFileHandleRegister: %s", uri,
				       errtext(g, e, buf, sizeof(buf)));
	}
	return 0;
}

void wlift__gds_handle_deregister(struct wlift__gds *g, void *fh)
{
	if (fh)
		g->api.HandleDeregister(fh);
}

/* A read's failure, as cuFile reports it: n is -1 with errno (cuFileRead's system error),
 * another negative errno (a batch event), or minus a cuFile error code (5000 and up). */
static int64_t read_error(struct wlift__gds *g, int64_t n, int err, size_t len, uint64_t off,
			  const char *how, const char *uri, wlift_diag *d)
{
	char buf[160];

	if (n > -5000) {
		if (n != -1)
			err = (int)-n;
		if (!err)
			err = EIO;
		return wlift__diag_set(d, -err, uri, NULL, (int64_t)off, "gds.read",
				       "%s: %s of %zu bytes at offset %llu failed: %s", uri, how,
				       len, (unsigned long long)off, strerror(err));
	}
	{
		CUfileError_t e = { (int)-n, 0 };
		return wlift__diag_set(d, WLIFT_ECUFILE, uri, NULL, (int64_t)off, "gds.read",
				       "%s: %s of %zu bytes at offset %llu failed: %s", uri, how,
				       len, (unsigned long long)off,
				       errtext(g, e, buf, sizeof(buf)));
	}
}

/* The batch API: [off, off+len) as up to `batch` requests of at least WLIFT_GDS_BATCH_PIECE
 * bytes (4 KiB multiples, so each stays as aligned as the whole), submitted at once and
 * reaped as they complete, in any order. Returns the bytes read up to the first short
 * request (the caller reads on from there, as after a short cuFileRead), a negative code
 * with d filled, or 1 in *unavailable when no batch could be set up or submitted (nothing
 * was read: the caller reads synchronously, and so does every later read). */
static int64_t read_batch(struct wlift__gds *g, void *fh, void *base, size_t dev_off,
			  size_t len, uint64_t off, unsigned batch, const char *uri,
			  int *unavailable, wlift_diag *d)
{
	CUfileIOParams_t io[WLIFT_MAX_GDS_BATCH];
	CUfileIOEvents_t ev[WLIFT_MAX_GDS_BATCH];
	size_t got[WLIFT_MAX_GDS_BATCH];
	CUfileBatchHandle_t b = NULL;
	CUfileError_t e;
	unsigned nr, i, done = 0, failed = WLIFT_MAX_GDS_BATCH;
	int64_t fail_ret = 0, total = 0;
	size_t piece;

	*unavailable = 0;
	nr = batch < g->batch_max ? batch : g->batch_max;
	if (nr > len / WLIFT_GDS_BATCH_PIECE)
		nr = (unsigned)(len / WLIFT_GDS_BATCH_PIECE);
	if (nr < 2) {
		*unavailable = 1; /* one request: cuFileRead does it with less ceremony */
		return 0;
	}
	piece = (len + nr - 1) / nr;
	piece = (piece + WLIFT_GDS_ALIGN - 1) / WLIFT_GDS_ALIGN * WLIFT_GDS_ALIGN;
	nr = (unsigned)((len + piece - 1) / piece);
	e = g->api.BatchSetUp(&b, nr);
	if (e.err != CU_FILE_SUCCESS) {
		__atomic_store_n(&g->batch_broken, 1, __ATOMIC_RELAXED);
		*unavailable = 1;
		return 0;
	}
	memset(io, 0, sizeof(io[0]) * nr);
	for (i = 0; i < nr; i++) {
		size_t at = (size_t)i * piece;
		io[i].mode = CUFILE_BATCH;
		io[i].u.batch.devPtr_base = base;
		io[i].u.batch.file_offset = (off_t)(off + at);
		io[i].u.batch.devPtr_offset = (off_t)(dev_off + at);
		io[i].u.batch.size = len - at < piece ? len - at : piece;
		io[i].fh = fh;
		io[i].opcode = CUFILE_READ;
		io[i].cookie = &io[i];
		got[i] = 0;
	}
	e = g->api.BatchSubmit(b, nr, io, 0);
	if (e.err != CU_FILE_SUCCESS) {
		g->api.BatchDestroy(b);
		__atomic_store_n(&g->batch_broken, 1, __ATOMIC_RELAXED);
		*unavailable = 1;
		return 0;
	}
	while (done < nr) {
		struct timespec to = { 1, 0 };
		unsigned k = nr - done;
		e = g->api.BatchGetStatus(b, 1, &k, ev, &to);
		if (e.err != CU_FILE_SUCCESS) {
			char buf[160];
			g->api.BatchCancel(b);
			g->api.BatchDestroy(b);
			return wlift__diag_set(d, WLIFT_ECUFILE, uri, NULL, (int64_t)off, "gds.read",
					       "%s: cuFileBatchIOGetStatus (%u reads from offset %llu): %s",
					       uri, nr, (unsigned long long)off,
					       errtext(g, e, buf, sizeof(buf)));
		}
		for (unsigned j = 0; j < k && j < nr; j++) {
			CUfileIOParams_t *p = ev[j].cookie;
			if (p < io || p >= io + nr)
				continue; /* not ours: cannot happen */
			i = (unsigned)(p - io);
			if (ev[j].status == CUFILE_COMPLETE) {
				got[i] = ev[j].ret;
				done++;
			} else if (ev[j].status & (CUFILE_FAILED | CUFILE_CANCELED | CUFILE_INVALID |
						   CUFILE_TIMEOUT)) {
				if (i < failed) {
					failed = i;
					fail_ret = (int64_t)(ssize_t)ev[j].ret;
					if (fail_ret >= 0)
						fail_ret = -EIO;
				}
				done++;
			}
		}
	}
	g->api.BatchDestroy(b);
	/* The bytes in order, up to the first short request. */
	for (i = 0; i < nr && failed == WLIFT_MAX_GDS_BATCH; i++) {
		if (got[i] > io[i].u.batch.size)
			got[i] = io[i].u.batch.size;
		total += (int64_t)got[i];
		if (got[i] < io[i].u.batch.size)
			return total;
	}
	if (failed < nr) /* reported even after a good prefix: a retry could hide it */
		return read_error(g, fail_ret, 0, io[failed].u.batch.size,
				  (uint64_t)io[failed].u.batch.file_offset, "cuFile batch read",
				  uri, d);
	return total;
}

int64_t wlift__gds_read(struct wlift__gds *g, void *fh, void *base, size_t dev_off, size_t len,
			uint64_t off, unsigned batch, const char *uri, wlift_diag *d)
{
	ssize_t n;

	wlift_diag bd;
	int64_t r = 0;
	int ret;

	wlift_diag_clear(&bd);
	if (batch >= 2 && g->batch_max >= 2 && len >= 2 * (size_t)WLIFT_GDS_BATCH_PIECE &&
	    !__atomic_load_n(&g->batch_broken, __ATOMIC_RELAXED)) {
		int unavailable = 0;
		r = read_batch(g, fh, base, dev_off, len, off, batch, uri, &unavailable, &bd);
		if (!unavailable && r >= 0)
			return r;
		/* A batch that failed is read once more with cuFileRead (a library or file system
		 * whose batches fail where plain reads work, compatibility mode for one, must not
		 * fail the load); when that works, batches are off for the process. */
	}
	errno = 0;
	n = g->api.Read(fh, base, len, (off_t)off, (off_t)dev_off);
	if (n >= 0) {
		if (r < 0)
			__atomic_store_n(&g->batch_broken, 1, __ATOMIC_RELAXED);
		return (int64_t)n;
	}
	/* -1: a system error in errno; below: minus a cuFile error code. */
	ret = (int)read_error(g, (int64_t)n, errno, len, off, "cuFileRead", uri, d);
	if (r < 0 && d) {
		size_t k = strlen(d->message);
		snprintf(d->message + k, sizeof(d->message) - k, " (after a cuFile batch read failed: %s)",
			 bd.message);
	}
	return ret;
}

int wlift__gds_batch_max(struct wlift__gds *g)
{
	return __atomic_load_n(&g->batch_broken, __ATOMIC_RELAXED) ? 0 : (int)g->batch_max;
}
