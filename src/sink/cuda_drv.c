/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Loading the CUDA driver at run time. Each library path is opened once per process and kept:
 * a driver starts threads of its own and cannot be unloaded safely, and cuInit is meant to be
 * called once. The function pointers are copied out of dlsym with memcpy (casting an object
 * pointer to a function pointer is not ISO C, and -Wpedantic -Werror rejects it).
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sink/cuda_drv.h"

#define MAX_DRIVERS 4 /* distinct library paths in one process (tests use two) */

struct loaded {
	char path[512];
	struct wlift__cuda cu;
	int err;	    /* 0, or the code of the failure (kept: the same path fails the same) */
	char msg[1024];
};

static pthread_mutex_t drv_mu = PTHREAD_MUTEX_INITIALIZER;
static struct loaded *drivers[MAX_DRIVERS];

static int load(struct loaded *l)
{
	struct wlift__cuda *cu = &l->cu;
	void *h = dlopen(l->path, RTLD_NOW | RTLD_LOCAL);
	CUresult r;

	if (!h) {
		const char *e = dlerror();
		snprintf(l->msg, sizeof(l->msg), "cannot load the CUDA driver %s: %s", l->path,
			 e ? e : "dlopen failed");
		return WLIFT_ENODEV;
	}
#define WLIFT_CUDA_FN(field, sym, args)                                                       \
	{                                                                                     \
		void *p = dlsym(h, sym);                                                      \
		if (!p) {                                                                     \
			snprintf(l->msg, sizeof(l->msg),                                      \
				 "the CUDA driver %s lacks %s (too old a driver?)", l->path, sym);   \
			return WLIFT_ENODEV;                                                  \
		}                                                                             \
		memcpy(&cu->field, &p, sizeof(p));                                            \
	}
	WLIFT_CUDA_ENTRY_POINTS(WLIFT_CUDA_FN)
#undef WLIFT_CUDA_FN
#define WLIFT_CUDA_FN(field, sym, args)                                                       \
	{                                                                                     \
		void *p = dlsym(h, sym);                                                      \
		memcpy(&cu->field, &p, sizeof(p));                                            \
	}
	WLIFT_CUDA_OPTIONAL_ENTRY_POINTS(WLIFT_CUDA_FN)
#undef WLIFT_CUDA_FN
	cu->path = l->path;
	r = cu->Init(0);
	if (r == CUDA_ERROR_NO_DEVICE) {
		snprintf(l->msg, sizeof(l->msg), "no CUDA device (cuInit: %s, driver %s)",
			 wlift__cuda_errtext(cu, r, NULL, 0), l->path);
		return WLIFT_ENODEV;
	}
	if (r != CUDA_SUCCESS) {
		snprintf(l->msg, sizeof(l->msg), "the CUDA driver %s failed to initialise: %s",
			 l->path, wlift__cuda_errtext(cu, r, NULL, 0));
		return WLIFT_ENODEV;
	}
	if (cu->DriverGetVersion(&cu->version) != CUDA_SUCCESS)
		cu->version = 0;
	r = cu->DeviceGetCount(&cu->ndevices);
	if (r != CUDA_SUCCESS || cu->ndevices <= 0) {
		snprintf(l->msg, sizeof(l->msg), "no CUDA device (cuDeviceGetCount: %s, driver %s)",
			 wlift__cuda_errtext(cu, r, NULL, 0), l->path);
		return WLIFT_ENODEV;
	}
	return 0;
}

int wlift__cuda_driver(const char *path, const struct wlift__cuda **out, wlift_diag *d)
{
	struct loaded *l = NULL;
	int ret, i;

	*out = NULL;
	if (!path || !*path)
		path = "libcuda.so.1";
	if (strlen(path) >= sizeof(l->path))
		return wlift__diag_set(d, -ENAMETOOLONG, NULL, NULL, -1, "cuda.driver",
				       "CUDA driver path too long: %s", path);
	pthread_mutex_lock(&drv_mu);
	for (i = 0; i < MAX_DRIVERS && drivers[i]; i++)
		if (strcmp(drivers[i]->path, path) == 0)
			break;
	if (i < MAX_DRIVERS && drivers[i]) {
		l = drivers[i];
	} else if (i == MAX_DRIVERS) {
		pthread_mutex_unlock(&drv_mu);
		return wlift__diag_set(d, WLIFT_ENODEV, NULL, NULL, -1, "cuda.driver",
				       "cannot load the CUDA driver %s: %d other drivers are loaded",
				       path, MAX_DRIVERS);
	} else {
		/* Kept for the process, failed or not (a failure is cached: no retry per load). */
		l = calloc(1, sizeof(*l));
		if (!l) {
			pthread_mutex_unlock(&drv_mu);
			return wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
		}
		snprintf(l->path, sizeof(l->path), "%s", path);
		l->err = load(l);
		drivers[i] = l;
	}
	pthread_mutex_unlock(&drv_mu);
	ret = l->err;
	if (ret)
		return wlift__diag_set(d, ret, NULL, NULL, -1, "cuda.driver", "%s", l->msg);
	*out = &l->cu;
	return 0;
}

const char *wlift__cuda_errtext(const struct wlift__cuda *cu, CUresult e, char *buf, size_t n)
{
	static __thread char tbuf[160];
	const char *name = NULL, *str = NULL;

	if (!buf) {
		buf = tbuf;
		n = sizeof(tbuf);
	}
	if (cu && cu->GetErrorName && cu->GetErrorName(e, &name) != CUDA_SUCCESS)
		name = NULL;
	if (cu && cu->GetErrorString && cu->GetErrorString(e, &str) != CUDA_SUCCESS)
		str = NULL;
	if (name && str)
		snprintf(buf, n, "%s (%s)", name, str);
	else
		snprintf(buf, n, "CUDA error %d", e);
	return buf;
}
