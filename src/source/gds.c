/* SPDX-License-Identifier: Apache-2.0 */
/*
 * GPU Direct Storage through cuFile, loaded at run time. The cuFile header is not needed to
 * build: the few types and entry points used are declared below from NVIDIA's cuFile API
 * reference (cufile.h: CUfileError_t, CUfileDescr_t, CUfileDrvProps_t; cuFileDriverOpen,
 * cuFileDriverGetProperties, cuFileHandleRegister/Deregister, cuFileBufRegister/Deregister,
 * cuFileRead). Each library path is opened once per process and kept, like the CUDA driver
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

struct cufile_api {
	CUfileError_t (*DriverOpen)(void);
	CUfileError_t (*DriverGetProperties)(CUfileDrvProps_t *props);
	CUfileError_t (*HandleRegister)(void **fh, CUfileDescr_t *descr);
	void (*HandleDeregister)(void *fh);
	CUfileError_t (*BufRegister)(const void *dp, size_t len, int flags);
	CUfileError_t (*BufDeregister)(const void *dp);
	ssize_t (*Read)(void *fh, void *dp, size_t len, off_t file_off, off_t dp_off);
	const char *(*StatusError)(int err); /* optional: cufileop_status_error */
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

int64_t wlift__gds_read(struct wlift__gds *g, void *fh, void *dp, size_t len, uint64_t off,
			const char *uri, wlift_diag *d)
{
	ssize_t n = g->api.Read(fh, dp, len, (off_t)off, 0);
	char buf[160];

	if (n >= 0)
		return (int64_t)n;
	/* -1: a system error in errno; below: minus a cuFile error code. */
	if (n == -1) {
		int err = errno ? errno : EIO;
		return wlift__diag_set(d, -err, uri, NULL, (int64_t)off, "gds.read",
				       "%s: cuFileRead of %zu bytes at offset %llu failed: %s", uri,
				       len, (unsigned long long)off, strerror(err));
	}
	{
		CUfileError_t e = { (int)-n, 0 };
		return wlift__diag_set(d, WLIFT_ECUFILE, uri, NULL, (int64_t)off, "gds.read",
				       "%s: cuFileRead of %zu bytes at offset %llu failed: %s", uri,
				       len, (unsigned long long)off,
				       errtext(g, e, buf, sizeof(buf)));
	}
}
