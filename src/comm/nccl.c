/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The NCCL backend of the communicator: libnccl.so.2 (or the library WEIGHTLIFT_NCCL_LIBRARY
 * names: the fake one of the tests, fake/fake_nccl.c) is dlopen'ed, never linked, its entry
 * points copied out of dlsym with memcpy. NCCL's own waits never time out, so a broadcast is
 * issued on a stream of ours and completion is polled (an event, and ncclCommGetAsyncError)
 * against the comm timeout; on expiry the communicator is aborted (ncclCommAbort frees a
 * rank stuck in a collective) and the call fails with WLIFT_ECOMM. The device's primary
 * context is current around every call, which is what NCCL expects of the caller.
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "comm/comm.h"
#include "sink/cuda_drv.h"

/* NCCL's ABI: ncclResult_t, ncclUniqueId (128 bytes, by value), ncclUint8 = 1. */
typedef int ncclResult;
typedef struct {
	char internal[WLIFT_COMM_ID_BYTES];
} nccl_id;
typedef void *nccl_comm;
#define NCCL_UINT8 1
#define NCCL_IN_PROGRESS 7

struct nccl_fns {
	ncclResult (*GetUniqueId)(nccl_id *id);
	ncclResult (*CommInitRank)(nccl_comm *c, int nranks, nccl_id id, int rank);
	ncclResult (*Broadcast)(const void *s, void *r, size_t n, int type, int root, nccl_comm c,
				CUstream st);
	ncclResult (*CommDestroy)(nccl_comm c);
	ncclResult (*CommAbort)(nccl_comm c);
	const char *(*GetErrorString)(ncclResult r);
	const char *(*GetLastError)(nccl_comm c);            /* optional (NCCL >= 2.13) */
	ncclResult (*CommGetAsyncError)(nccl_comm c, ncclResult *e); /* optional */
};

struct nccl {
	const struct nccl_fns *fn;
	const struct wlift__cuda *cu;
	nccl_comm comm;
	CUcontext cuctx;
	CUdevice dev;
	CUstream stream;
	CUevent done;
};

static pthread_mutex_t lib_mu = PTHREAD_MUTEX_INITIALIZER;
static struct nccl_fns lib_fns;
static char *lib_path; /* the library loaded (one per process) */

static int load_nccl(const wlift_ctx *ctx, const struct nccl_fns **out, wlift_diag *d)
{
	const char *path = ctx->nccl_library ? ctx->nccl_library : "libnccl.so.2";
	struct nccl_fns f = {0};
	void *h;
	int ret = 0;

	pthread_mutex_lock(&lib_mu);
	if (lib_path) {
		if (strcmp(lib_path, path) != 0)
			ret = wlift__diag_set(d, WLIFT_ENODEV, path, NULL, -1, "comm.nccl",
					      "NCCL is already loaded from %s in this process",
					      lib_path);
		goto out;
	}
	h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		ret = wlift__diag_set(d, WLIFT_ENODEV, path, NULL, -1, "comm.nccl",
				      "cannot load NCCL: %s", dlerror());
		goto out;
	}
#define SYM(field, name, required)                                                        \
	do {                                                                              \
		void *p = dlsym(h, name);                                                 \
		if (!p && (required)) {                                                   \
			ret = wlift__diag_set(d, WLIFT_ENODEV, path, NULL, -1, "comm.nccl", \
					      "NCCL library lacks %s", name);             \
			dlclose(h);                                                       \
			goto out;                                                         \
		}                                                                         \
		memcpy(&f.field, &p, sizeof(p));                                          \
	} while (0)
	SYM(GetUniqueId, "ncclGetUniqueId", 1);
	SYM(CommInitRank, "ncclCommInitRank", 1);
	SYM(Broadcast, "ncclBroadcast", 1);
	SYM(CommDestroy, "ncclCommDestroy", 1);
	SYM(CommAbort, "ncclCommAbort", 1);
	SYM(GetErrorString, "ncclGetErrorString", 1);
	SYM(GetLastError, "ncclGetLastError", 0);
	SYM(CommGetAsyncError, "ncclCommGetAsyncError", 0);
#undef SYM
	lib_path = strdup(path);
	if (!lib_path) {
		dlclose(h);
		ret = wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
		goto out;
	}
	lib_fns = f; /* the library stays loaded for the process, as the CUDA driver does */
out:
	pthread_mutex_unlock(&lib_mu);
	if (!ret)
		*out = &lib_fns;
	return ret;
}

static int nccl_fail(const struct nccl_fns *fn, nccl_comm c, ncclResult r, const char *what,
		     int rank, int size, wlift_diag *d)
{
	const char *last = fn->GetLastError ? fn->GetLastError(c) : NULL;

	return wlift__diag_set(d, WLIFT_ECOMM, NULL, NULL, -1, "comm.nccl",
			       "NCCL %s failed on rank %d of %d: %s%s%s", what, rank, size,
			       fn->GetErrorString(r), last && *last ? " (" : "",
			       last && *last ? last : "");
}

int wlift_comm_nccl_id(wlift_ctx *ctx, uint8_t id[WLIFT_COMM_ID_BYTES], wlift_diag *d)
{
	const struct nccl_fns *fn;
	nccl_id u;
	ncclResult r;
	int ret;

	wlift_diag_clear(d);
	ctx = wlift__ctx_or_default(ctx);
	if (!ctx || !id)
		return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "comm.args",
				       "wlift_comm_nccl_id: id is NULL");
	ret = load_nccl(ctx, &fn, d);
	if (ret)
		return ret;
	r = fn->GetUniqueId(&u);
	if (r)
		return nccl_fail(fn, NULL, r, "ncclGetUniqueId", 0, 1, d);
	memcpy(id, u.internal, sizeof(u.internal));
	return 0;
}

static int nccl_broadcast(struct wlift_comm *c, void *buf, uint64_t len, int root, wlift_diag *d)
{
	struct nccl *n = c->impl;
	const struct wlift__cuda *cu = n->cu;
	double end = wlift__now() + c->timeout_s;
	CUcontext old;
	ncclResult r, async = 0;
	CUresult e;
	int ret = 0;

	if (cu->CtxPushCurrent(n->cuctx) != CUDA_SUCCESS)
		return wlift__diag_set(d, WLIFT_ECUDA, NULL, NULL, -1, "comm.nccl",
				       "cannot make device %d current for NCCL", (int)n->dev);
	r = n->fn->Broadcast(buf, buf, (size_t)len, NCCL_UINT8, root, n->comm, n->stream);
	if (r && r != NCCL_IN_PROGRESS) {
		ret = nccl_fail(n->fn, n->comm, r, "broadcast", c->rank, c->size, d);
		goto out;
	}
	e = cu->EventRecord(n->done, n->stream);
	/* Poll: NCCL would wait forever for a peer that is gone. */
	while (e == CUDA_SUCCESS) {
		struct timespec ts = {0, 200000};
		e = cu->EventQuery(n->done);
		if (e != CUDA_ERROR_NOT_READY)
			break;
		e = CUDA_SUCCESS;
		if (n->fn->CommGetAsyncError && n->fn->CommGetAsyncError(n->comm, &async) == 0 &&
		    async && async != NCCL_IN_PROGRESS)
			break;
		if (wlift__now() > end) {
			ret = wlift__diag_set(d, WLIFT_ECOMM, NULL, NULL, -1, "comm.timeout",
					      "NCCL broadcast of %llu bytes from rank %d: no "
					      "completion within %u s on rank %d of %d (a peer "
					      "failed or exited?); communicator aborted",
					      (unsigned long long)len, root, c->timeout_s, c->rank,
					      c->size);
			n->fn->CommAbort(n->comm);
			n->comm = NULL;
			goto out;
		}
		nanosleep(&ts, NULL);
	}
	if (async && async != NCCL_IN_PROGRESS)
		ret = nccl_fail(n->fn, n->comm, async, "broadcast", c->rank, c->size, d);
	else if (e != CUDA_SUCCESS)
		ret = wlift__diag_set(d, WLIFT_ECUDA, NULL, NULL, -1, "comm.nccl",
				      "waiting for the NCCL broadcast: CUDA error %d", (int)e);
out:
	cu->CtxPopCurrent(&old);
	return ret;
}

static void nccl_destroy(struct wlift_comm *c)
{
	struct nccl *n = c->impl;
	CUcontext old;

	if (!n)
		return;
	if (n->cuctx && n->cu->CtxPushCurrent(n->cuctx) == CUDA_SUCCESS) {
		if (n->comm)
			(c->broken ? n->fn->CommAbort : n->fn->CommDestroy)(n->comm);
		if (n->done)
			n->cu->EventDestroy(n->done);
		if (n->stream)
			n->cu->StreamDestroy(n->stream);
		n->cu->CtxPopCurrent(&old);
		n->cu->PrimaryCtxRelease(n->dev);
	}
	free(n);
	c->impl = NULL;
}

static void nccl_abort(struct wlift_comm *c, int code)
{
	struct nccl *n = c->impl;
	CUcontext old;

	(void)code;
	if (!n || !n->comm || n->cu->CtxPushCurrent(n->cuctx) != CUDA_SUCCESS)
		return;
	n->fn->CommAbort(n->comm);
	n->comm = NULL;
	n->cu->CtxPopCurrent(&old);
}

static const struct wlift__comm_ops nccl_ops = { "NCCL", 1, nccl_broadcast, nccl_abort,
						 nccl_destroy };

int wlift_comm_nccl(wlift_ctx *ctx, const uint8_t id[WLIFT_COMM_ID_BYTES], int rank,
		    int nranks, int device, wlift_comm **out, wlift_diag *d)
{
	struct wlift_comm *c = NULL;
	struct nccl *n = NULL;
	nccl_id u;
	CUcontext old;
	ncclResult r;
	int ret, pushed = 0;

	wlift_diag_clear(d);
	ctx = wlift__ctx_or_default(ctx);
	if (out)
		*out = NULL;
	if (!ctx || !id || !out || nranks < 1 || nranks > WLIFT_MAX_WORLD || rank < 0 ||
	    rank >= nranks || device < 0)
		return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "comm.args",
				       "wlift_comm_nccl: rank %d of %d on device %d is out of "
				       "range (or id/out is NULL)",
				       rank, nranks, device);
	c = calloc(1, sizeof(*c));
	n = calloc(1, sizeof(*n));
	if (!c || !n) {
		ret = wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
		goto out;
	}
	c->ops = &nccl_ops;
	c->rank = rank;
	c->size = nranks;
	c->timeout_s = ctx->comm_timeout_s ? ctx->comm_timeout_s : WLIFT_COMM_TIMEOUT_S;
	c->impl = n;
	ret = load_nccl(ctx, &n->fn, d);
	if (ret)
		goto out;
	ret = wlift__cuda_driver(ctx->cuda_library, &n->cu, d);
	if (ret)
		goto out;
	if (n->cu->DeviceGet(&n->dev, device) != CUDA_SUCCESS ||
	    n->cu->PrimaryCtxRetain(&n->cuctx, n->dev) != CUDA_SUCCESS) {
		n->cuctx = NULL;
		ret = wlift__diag_set(d, WLIFT_ENODEV, NULL, NULL, -1, "comm.nccl",
				      "CUDA device %d is not available", device);
		goto out;
	}
	if (n->cu->CtxPushCurrent(n->cuctx) != CUDA_SUCCESS) {
		ret = wlift__diag_set(d, WLIFT_ECUDA, NULL, NULL, -1, "comm.nccl",
				      "cannot make device %d current", device);
		goto out;
	}
	pushed = 1;
	if (n->cu->StreamCreate(&n->stream, CU_STREAM_NON_BLOCKING) != CUDA_SUCCESS ||
	    n->cu->EventCreate(&n->done, CU_EVENT_DISABLE_TIMING) != CUDA_SUCCESS) {
		ret = wlift__diag_set(d, WLIFT_ECUDA, NULL, NULL, -1, "comm.nccl",
				      "cannot create a stream and an event on device %d", device);
		goto out;
	}
	memcpy(u.internal, id, sizeof(u.internal));
	r = n->fn->CommInitRank(&n->comm, nranks, u, rank);
	if (r) {
		n->comm = NULL;
		ret = nccl_fail(n->fn, NULL, r, "ncclCommInitRank", rank, nranks, d);
		goto out;
	}
out:
	if (pushed)
		n->cu->CtxPopCurrent(&old);
	if (ret) {
		if (c && n)
			nccl_destroy(c); /* frees n */
		else
			free(n);
		free(c);
		return ret;
	}
	*out = c;
	return 0;
}
