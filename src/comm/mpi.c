/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The MPI backend of the communicator: Open MPI's libmpi.so.40 (or the library
 * WEIGHTLIFT_MPI_LIBRARY names) is dlopen'ed, never linked, so libweightlift loads where MPI
 * is absent. Open MPI's handles are addresses of its predefined objects (MPI_COMM_WORLD is
 * &ompi_mpi_comm_world, MPI_BYTE &ompi_mpi_byte, MPI_ERRORS_RETURN
 * &ompi_mpi_errors_return), found with dlsym like its functions; the few prototypes used are
 * declared here with Open MPI's ABI (handles are pointers, MPI_STATUS_IGNORE is NULL). One
 * communicator is MPI_COMM_WORLD of the job mpirun launched. A broadcast is MPI_Ibcast in
 * pieces of at most 1 GiB (MPI counts are int), completion polled with MPI_Test against the
 * comm timeout: MPI cannot cancel a collective, so a communicator that timed out or failed
 * ends the job in destroy (MPI_Abort), which frees the peers still waiting in it. Host
 * buffers only.
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "comm/comm.h"

/* Open MPI's ABI (mpi.h of 4.x): handles are pointers to its objects. */
typedef void *mpi_handle;
#define MPI_SUCCESS_ 0
#define MPI_THREAD_SERIALIZED_ 2
#define MPI_MAX_ERROR_STRING_ 256
#define MPI_PIECE ((uint64_t)1 << 30)

struct mpi_fns {
	int (*Initialized)(int *flag);
	int (*Finalized)(int *flag);
	int (*Init_thread)(int *argc, char ***argv, int required, int *provided);
	int (*Finalize)(void);
	int (*Comm_rank)(mpi_handle comm, int *rank);
	int (*Comm_size)(mpi_handle comm, int *size);
	int (*Comm_set_errhandler)(mpi_handle comm, mpi_handle eh);
	int (*Ibcast)(void *buf, int count, mpi_handle type, int root, mpi_handle comm,
		      mpi_handle *req);
	int (*Test)(mpi_handle *req, int *flag, void *status);
	int (*Abort)(mpi_handle comm, int code);
	int (*Error_string)(int code, char *s, int *len);
	mpi_handle world, byte, errors_return;
};

static pthread_mutex_t lib_mu = PTHREAD_MUTEX_INITIALIZER;
static struct mpi_fns lib_fns;
static char *lib_path;  /* the library loaded (one per process) */
static int lib_inited;  /* MPI_Init_thread was ours: the last communicator finalizes */
static int lib_users;   /* live communicators */
static int lib_done;    /* finalized by us: MPI cannot start again in this process */

static int load_mpi(const wlift_ctx *ctx, const struct mpi_fns **out, wlift_diag *d)
{
	const char *path = ctx->mpi_library ? ctx->mpi_library : "libmpi.so.40";
	struct mpi_fns f = {0};
	void *h;
	int ret = 0;

	if (lib_path) {
		if (strcmp(lib_path, path) != 0)
			return wlift__diag_set(d, WLIFT_ENODEV, path, NULL, -1, "comm.mpi",
					       "MPI is already loaded from %s in this process",
					       lib_path);
		*out = &lib_fns;
		return 0;
	}
	/* Global: Open MPI's components, loaded by MPI_Init, resolve libmpi's symbols. */
	h = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
	if (!h)
		return wlift__diag_set(d, WLIFT_ENODEV, path, NULL, -1, "comm.mpi",
				       "cannot load MPI (Open MPI's libmpi.so.40; "
				       "WEIGHTLIFT_MPI_LIBRARY names another): %s",
				       dlerror());
#define SYM(field, name)                                                                   \
	do {                                                                               \
		void *p = dlsym(h, name);                                                  \
		if (!p) {                                                                  \
			ret = wlift__diag_set(d, WLIFT_ENODEV, path, NULL, -1, "comm.mpi",   \
					      "MPI library lacks %s (weightlift needs Open "  \
					      "MPI's ABI)",                                   \
					      name);                                          \
			dlclose(h);                                                        \
			return ret;                                                        \
		}                                                                          \
		memcpy(&f.field, &p, sizeof(p));                                           \
	} while (0)
	SYM(Initialized, "MPI_Initialized");
	SYM(Finalized, "MPI_Finalized");
	SYM(Init_thread, "MPI_Init_thread");
	SYM(Finalize, "MPI_Finalize");
	SYM(Comm_rank, "MPI_Comm_rank");
	SYM(Comm_size, "MPI_Comm_size");
	SYM(Comm_set_errhandler, "MPI_Comm_set_errhandler");
	SYM(Ibcast, "MPI_Ibcast");
	SYM(Test, "MPI_Test");
	SYM(Abort, "MPI_Abort");
	SYM(Error_string, "MPI_Error_string");
	SYM(world, "ompi_mpi_comm_world");
	SYM(byte, "ompi_mpi_byte");
	SYM(errors_return, "ompi_mpi_errors_return");
#undef SYM
	lib_path = strdup(path);
	if (!lib_path) {
		dlclose(h);
		return wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
	}
	lib_fns = f; /* the library stays loaded for the process */
	*out = &lib_fns;
	return 0;
}

static int mpi_fail(const struct mpi_fns *fn, int r, const char *what, int rank, int size,
		    wlift_diag *d)
{
	char s[MPI_MAX_ERROR_STRING_ + 1] = "";
	int len = 0;

	if (fn->Error_string(r, s, &len) != MPI_SUCCESS_)
		snprintf(s, sizeof(s), "error %d", r);
	s[MPI_MAX_ERROR_STRING_] = '\0';
	return wlift__diag_set(d, WLIFT_ECOMM, NULL, NULL, -1, "comm.mpi",
			       "MPI %s failed on rank %d of %d: %s", what, rank, size, s);
}

static int mpi_broadcast(struct wlift_comm *c, void *buf, uint64_t len, int root, wlift_diag *d)
{
	const struct mpi_fns *fn = c->impl;
	double end = wlift__now() + c->timeout_s;

	for (uint64_t off = 0; off < len; off += MPI_PIECE) {
		uint64_t n = len - off < MPI_PIECE ? len - off : MPI_PIECE;
		mpi_handle req = NULL;
		int flag = 0, r;

		r = fn->Ibcast((char *)buf + off, (int)n, fn->byte, root, fn->world, &req);
		if (r != MPI_SUCCESS_)
			return mpi_fail(fn, r, "broadcast", c->rank, c->size, d);
		/* Poll: a peer that is gone would keep a blocking broadcast waiting. */
		for (;;) {
			struct timespec ts = {0, 100000};
			r = fn->Test(&req, &flag, NULL);
			if (r != MPI_SUCCESS_)
				return mpi_fail(fn, r, "broadcast", c->rank, c->size, d);
			if (flag)
				break;
			if (wlift__now() > end)
				return wlift__diag_set(
				    d, WLIFT_ECOMM, NULL, NULL, -1, "comm.timeout",
				    "MPI broadcast of %llu bytes from rank %d: no completion "
				    "within %u s on rank %d of %d (a peer failed or exited?)",
				    (unsigned long long)len, root, c->timeout_s, c->rank, c->size);
			nanosleep(&ts, NULL);
		}
	}
	return 0;
}

/* With lib_mu held: MPI_Finalize once no communicator is left, if MPI_Init_thread was ours
 * (MPI cannot start again in this process after it). */
static void finalize_ours(void)
{
	if (lib_users == 0 && lib_inited) {
		lib_fns.Finalize();
		lib_inited = 0;
		lib_done = 1;
	}
}

static void mpi_abort(struct wlift_comm *c, int code)
{
	const struct mpi_fns *fn = c->impl;

	if (fn)
		fn->Abort(fn->world, code ? code : 1);
}

static void mpi_destroy(struct wlift_comm *c)
{
	const struct mpi_fns *fn = c->impl;

	if (!fn)
		return;
	/* A collective that failed or timed out may still be pending here and on the peers:
	 * only ending the job frees them (MPI has no cancel for collectives). */
	if (c->broken)
		fn->Abort(fn->world, 1);
	pthread_mutex_lock(&lib_mu);
	--lib_users;
	finalize_ours();
	pthread_mutex_unlock(&lib_mu);
	c->impl = NULL;
}

static const struct wlift__comm_ops mpi_ops = { "MPI", 0, mpi_broadcast, mpi_abort,
						mpi_destroy };

/* Launched by mpirun (or another Open MPI launcher): its environment names the job. */
static int launched(void)
{
	return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK");
}

int wlift_comm_mpi(wlift_ctx *ctx, wlift_comm **out, wlift_diag *d)
{
	struct wlift_comm *c = NULL;
	const struct mpi_fns *fn;
	int ret = 0, flag = 0, r, rank = 0, size = 0, provided = 0, counted = 0;

	wlift_diag_clear(d);
	ctx = wlift__ctx_or_default(ctx);
	if (out)
		*out = NULL;
	if (!ctx || !out)
		return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "comm.args",
				       "wlift_comm_mpi: out is NULL");
	pthread_mutex_lock(&lib_mu);
	ret = load_mpi(ctx, &fn, d);
	if (ret)
		goto out;
	if (lib_done || (fn->Finalized(&flag) == MPI_SUCCESS_ && flag)) {
		ret = wlift__diag_set(d, WLIFT_ENODEV, NULL, NULL, -1, "comm.mpi",
				      "MPI was finalized in this process (it cannot start again)");
		goto out;
	}
	flag = 0;
	fn->Initialized(&flag);
	if (!flag) {
		/* Started here: only under a launcher (a singleton would be a world of one that
		 * silently loads alone). */
		if (!launched()) {
			ret = wlift__diag_set(d, WLIFT_ENODEV, NULL, NULL, -1, "comm.mpi",
					      "not launched by mpirun (OMPI_COMM_WORLD_SIZE is "
					      "not set): start the ranks with mpirun -n W");
			goto out;
		}
		r = fn->Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED_, &provided);
		if (r != MPI_SUCCESS_) {
			ret = wlift__diag_set(d, WLIFT_ECOMM, NULL, NULL, -1, "comm.mpi",
					      "MPI_Init_thread failed (error %d)", r);
			goto out;
		}
		lib_inited = 1;
	}
	/* Errors come back as codes (and become WLIFT_ECOMM), rather than ending the job. */
	fn->Comm_set_errhandler(fn->world, fn->errors_return);
	if ((r = fn->Comm_rank(fn->world, &rank)) != MPI_SUCCESS_ ||
	    (r = fn->Comm_size(fn->world, &size)) != MPI_SUCCESS_) {
		ret = mpi_fail(fn, r, "MPI_Comm_rank/size", 0, 1, d);
		goto out;
	}
	if (size < 1 || size > WLIFT_MAX_WORLD) {
		ret = wlift__diag_set(d, WLIFT_EUNSUPPORTED, NULL, NULL, -1, "comm.mpi",
				      "MPI world of %d ranks (1 .. %d)", size, WLIFT_MAX_WORLD);
		goto out;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		ret = wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
		goto out;
	}
	c->ops = &mpi_ops;
	c->rank = rank;
	c->size = size;
	c->timeout_s = ctx->comm_timeout_s ? ctx->comm_timeout_s : WLIFT_COMM_TIMEOUT_S;
	c->impl = (void *)fn;
	lib_users++;
	counted = 1;
out:
	if (ret && !counted)
		finalize_ours();
	pthread_mutex_unlock(&lib_mu);
	if (ret)
		return ret;
	*out = c;
	return 0;
}
