/* SPDX-License-Identifier: Apache-2.0 */
/*
 * weightlift._native: the thin CPython binding of libweightlift. It converts arguments, turns
 * wlift_diag into Python exceptions, releases the GIL around wlift_open and wlift_load, and
 * exposes loaded tensors as objects with __dlpack__/__dlpack_device__ so that numpy, torch and
 * JAX take zero-copy views. All logic stays in the library and in the pure-Python layer.
 *
 * Lifetimes: a Tensor holds a DLPack export of its own (a reference on the C result, freed by
 * the export's deleter), so it never needs the Result object; each __dlpack__ capsule is one
 * more export, owned by the consumer. Memory checkpoints keep the caller's buffer (a Py_buffer)
 * alive through the Checkpoint object, which every Result and Tensor made from it references.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <string.h>

#include "weightlift.h"

static PyObject *SafetensorError;
static wlift_ctx *g_ctx;
/* The context of offline opens (Checkpoint(..., offline=True)), made on first use; its cache
 * directory follows g_ctx's (set_cache_dir sets both). */
static wlift_ctx *g_ctx_offline;
static PyObject *g_cache_dir; /* the last set_cache_dir value (a str or None), or NULL */
static int g_offline;	      /* the last set_offline value */

/* ------------------------------------------------------------------------------------- */
/* Errors                                                                                 */

static PyObject *raise_diag(int ret, const wlift_diag *d)
{
	const char *msg = d && d->message[0] ? d->message : wlift_strerror(ret);
	const char *file = d && d->file[0] ? d->file : NULL;

	if (PyErr_Occurred())
		return NULL; /* a callback raised (KeyboardInterrupt, ...): keep that */
	if (ret == -EINVAL && d && (strncmp(d->rule, "load.", 5) == 0 ||
				    strncmp(d->rule, "config.", 7) == 0 ||
				    strcmp(d->rule, "api.args") == 0)) {
		/* A keyword or WEIGHTLIFT_* value out of range: the caller's mistake. */
		PyErr_SetString(PyExc_ValueError, msg);
		return NULL;
	}
	if (WLIFT_ERR_IS_ERRNO(ret)) {
		PyObject *exc;

		if (file)
			exc = PyObject_CallFunction(PyExc_OSError, "iss", -ret, msg, file);
		else
			exc = PyObject_CallFunction(PyExc_OSError, "is", -ret, msg);
		if (exc) {
			PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
			Py_DECREF(exc);
		}
		return NULL;
	}
	if (ret == WLIFT_EAUTH)
		PyErr_SetString(PyExc_PermissionError, msg);
	else if (WLIFT_ERR_IS_REMOTE(ret))
		PyErr_SetString(PyExc_OSError, msg);
	else if (WLIFT_ERR_IS_GPU(ret) || WLIFT_ERR_IS_COMM(ret))
		PyErr_SetString(PyExc_RuntimeError, msg);
	else
		PyErr_SetString(SafetensorError, msg);
	return NULL;
}

/* ------------------------------------------------------------------------------------- */
/* Checkpoint                                                                             */

typedef struct {
	PyObject_HEAD
	wlift_ckpt *ck;
	Py_buffer buf;               /* memory image, when opened from bytes */
	int has_buf;
	int busy;                    /* loads running with the GIL released */
	int closing;                 /* close() asked while busy: the last load closes */
} CkptObject;

typedef struct {
	PyObject_HEAD
	wlift_result *res;
	PyObject *owner;             /* the CkptObject */
} ResultObject;

typedef struct {
	PyObject_HEAD
	const wlift_tensor *t;
	wlift_dl_managed_versioned *keep; /* holds a reference on the C result */
	PyObject *owner;                  /* the CkptObject (memory images) */
	unsigned flags;                   /* WLIFT_DLPACK_BYTES for raw byte views */
} TensorObject;

static PyTypeObject CkptType, ResultType, TensorType;

static wlift_tensor_view tview(const wlift_tensor *t)
{
	wlift_tensor_view v;

	wlift_tensor_get(t, &v);
	return v;
}

static PyObject *tensor_new(const wlift_tensor *t, PyObject *owner, unsigned flags)
{
	TensorObject *o;
	wlift_diag d;
	int ret;

	o = PyObject_New(TensorObject, &TensorType);
	if (!o)
		return NULL;
	o->t = t;
	o->keep = NULL;
	o->owner = owner;
	Py_XINCREF(owner);
	o->flags = flags;
	wlift_diag_clear(&d);
	ret = wlift_tensor_dlpack_versioned(t, WLIFT_DLPACK_BYTES, &o->keep, &d);
	if (ret < 0) {
		Py_DECREF(o);
		return raise_diag(ret, &d);
	}
	return (PyObject *)o;
}

static void ckpt_dealloc(CkptObject *self)
{
	wlift_ckpt_close(self->ck);
	if (self->has_buf)
		PyBuffer_Release(&self->buf);
	Py_TYPE(self)->tp_free((PyObject *)self);
}

/* The library's warnings (the local cache's: a server that cannot be reached, a cache write
 * that failed) go to stderr, as the CLI prints them; nothing else is logged. */
static void log_stderr(void *user, int level, const char *msg)
{
	(void)user;
	(void)level;
	fprintf(stderr, "weightlift: warning: %s\n", msg);
}

static wlift_ctx *offline_ctx(void)
{
	wlift_ctx_opts o = WLIFT_CTX_OPTS_INIT;
	wlift_diag d;
	int ret;

	if (g_ctx_offline)
		return g_ctx_offline;
	o.log = log_stderr;
	o.offline = 1;
	wlift_diag_clear(&d);
	ret = wlift_ctx_create(&g_ctx_offline, &o, &d);
	if (ret < 0) {
		raise_diag(ret, &d);
		return NULL;
	}
	if (g_cache_dir) {
		const char *dir = g_cache_dir == Py_None ? NULL : PyUnicode_AsUTF8(g_cache_dir);
		if (g_cache_dir != Py_None && !dir)
			return NULL;
		wlift_ctx_set_cache_dir(g_ctx_offline, dir, NULL);
	}
	return g_ctx_offline;
}

/* Contexts for per-call remote options (load_file(..., region=, max_rate=,
 * allow_full_download=, cache_dir=)): one per distinct set of options (and offline flag),
 * made on first use with the cache directory and the offline setting of the others (unless
 * the call names its own cache directory), and kept for the process, as the default context
 * is (checkpoints keep using theirs). A max_rate is one bandwidth cap shared by every load
 * with that same set of options. Called with the GIL held. */
#define OPT_CTX_MAX 32
static struct opt_ctx {
	char region[64];
	int offline;
	unsigned long long max_rate;
	int full_download;
	char *cache_dir; /* the call's own (never follows set_local_cache_dir), or NULL */
	wlift_ctx *ctx;
} g_opt_ctx[OPT_CTX_MAX];

static wlift_ctx *opts_ctx(const char *region, int offline, unsigned long long max_rate,
			   int full_download, const char *cache_dir)
{
	wlift_ctx_opts o = WLIFT_CTX_OPTS_INIT;
	struct opt_ctx *e;
	wlift_diag d;
	size_t i;
	int ret;

	region = region ? region : "";
	if (strlen(region) >= sizeof(g_opt_ctx[0].region)) {
		PyErr_Format(PyExc_ValueError, "region %.80s is not a region name", region);
		return NULL;
	}
	for (i = 0; i < OPT_CTX_MAX && g_opt_ctx[i].ctx; i++) {
		e = &g_opt_ctx[i];
		if (strcmp(e->region, region) == 0 && e->offline == offline &&
		    e->max_rate == max_rate && e->full_download == full_download &&
		    !e->cache_dir == !cache_dir && (!cache_dir || strcmp(e->cache_dir, cache_dir) == 0))
			return e->ctx;
	}
	if (i == OPT_CTX_MAX) {
		PyErr_SetString(PyExc_ValueError, "more than 32 distinct sets of remote options "
				"(region, max_rate, allow_full_download, cache_dir) in one process");
		return NULL;
	}
	e = &g_opt_ctx[i];
	if (cache_dir && !(e->cache_dir = strdup(cache_dir))) {
		PyErr_NoMemory();
		return NULL;
	}
	o.s3_region = *region ? region : NULL;
	o.log = log_stderr;
	o.offline = offline;
	o.max_rate = (uint64_t)max_rate;
	o.http_full_download = full_download;
	o.cache_dir = cache_dir;
	wlift_diag_clear(&d);
	ret = wlift_ctx_create(&e->ctx, &o, &d);
	if (ret < 0) {
		free(e->cache_dir);
		e->cache_dir = NULL;
		e->ctx = NULL;
		raise_diag(ret, &d);
		return NULL;
	}
	snprintf(e->region, sizeof(e->region), "%s", region);
	e->offline = offline;
	e->max_rate = max_rate;
	e->full_download = full_download;
	if (g_cache_dir && !cache_dir) {
		const char *dir = g_cache_dir == Py_None ? NULL : PyUnicode_AsUTF8(g_cache_dir);
		if (g_cache_dir != Py_None && !dir)
			return NULL;
		wlift_ctx_set_cache_dir(e->ctx, dir, NULL);
	}
	if (!offline && g_offline)
		wlift_ctx_set_offline(e->ctx, 1);
	return e->ctx;
}

static int ckpt_init(CkptObject *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"source", "name", "offline", "region", "max_rate",
				 "full_download", "cache_dir", NULL};
	PyObject *src, *path = NULL, *cdir = NULL;
	const char *name = "<memory>", *region = NULL;
	wlift_ckpt *ck = NULL;
	wlift_ctx *ctx = g_ctx;
	unsigned long long max_rate = 0;
	int offline = 0, full_download = 0;
	wlift_diag d;
	int ret;

	if (!PyArg_ParseTupleAndKeywords(args, kw, "O|spzKpO&", kwlist, &src, &name, &offline,
					 &region, &max_rate, &full_download, PyUnicode_FSConverter,
					 &cdir))
		return -1;
	if ((region && *region) || max_rate || full_download || cdir) {
		ctx = opts_ctx(region, offline, max_rate, full_download,
			       cdir ? PyBytes_AS_STRING(cdir) : NULL);
		Py_XDECREF(cdir);
		if (!ctx)
			return -1;
	} else if (offline && !(ctx = offline_ctx()))
		return -1;
	if (self->ck) {
		PyErr_SetString(PyExc_RuntimeError, "Checkpoint already open");
		return -1;
	}
	wlift_diag_clear(&d);
	if (PyObject_CheckBuffer(src) && !PyUnicode_Check(src)) {
		if (PyObject_GetBuffer(src, &self->buf, PyBUF_SIMPLE) < 0)
			return -1;
		self->has_buf = 1;
		Py_BEGIN_ALLOW_THREADS
		ret = wlift_open_memory(g_ctx, self->buf.buf, (size_t)self->buf.len, name, &ck, &d);
		Py_END_ALLOW_THREADS
	} else {
		const char *p;

		if (!PyUnicode_FSConverter(src, &path))
			return -1;
		p = PyBytes_AS_STRING(path);
		Py_BEGIN_ALLOW_THREADS
		ret = wlift_open(ctx, p, &ck, &d);
		Py_END_ALLOW_THREADS
		Py_DECREF(path);
	}
	if (ret < 0) {
		raise_diag(ret, &d);
		return -1;
	}
	self->ck = ck;
	return 0;
}

static int ckpt_check(CkptObject *self)
{
	if (!self->ck || self->closing) {
		PyErr_SetString(SafetensorError, "File is closed");
		return -1;
	}
	return 0;
}

static PyObject *shape_tuple(const wlift_tensor_info *ti)
{
	PyObject *s = PyTuple_New(ti->ndim);

	if (!s)
		return NULL;
	for (uint32_t k = 0; k < ti->ndim; k++) {
		PyObject *v = PyLong_FromUnsignedLongLong(ti->shape[k]);

		if (!v) {
			Py_DECREF(s);
			return NULL;
		}
		PyTuple_SET_ITEM(s, k, v);
	}
	return s;
}

static PyObject *ckpt_names(CkptObject *self, PyObject *unused)
{
	PyObject *l;
	size_t n;

	if (ckpt_check(self) < 0)
		return NULL;
	n = wlift_ckpt_count(self->ck);
	l = PyList_New((Py_ssize_t)n);
	for (size_t i = 0; l && i < n; i++) {
		wlift_tensor_info ti;
		PyObject *s;

		wlift_ckpt_info(self->ck, i, &ti);
		s = PyUnicode_FromString(ti.name);
		if (!s) {
			Py_CLEAR(l);
			break;
		}
		PyList_SET_ITEM(l, (Py_ssize_t)i, s);
	}
	return l;
}

/* info(name or index) -> (name, dtype, shape, nbytes, file, file_offset, data_begin, data_end) */
static PyObject *ckpt_info(CkptObject *self, PyObject *key)
{
	wlift_tensor_info ti;
	int64_t i;

	if (ckpt_check(self) < 0)
		return NULL;
	if (PyUnicode_Check(key)) {
		const char *name = PyUnicode_AsUTF8(key);

		if (!name)
			return NULL;
		i = wlift_ckpt_find(self->ck, name);
		if (i < 0) {
			PyErr_Format(SafetensorError, "File does not contain tensor %s", name);
			return NULL;
		}
	} else {
		i = PyLong_AsLongLong(key);
		if (i == -1 && PyErr_Occurred())
			return NULL;
	}
	if (i < 0 || wlift_ckpt_info(self->ck, (size_t)i, &ti) < 0) {
		PyErr_SetString(PyExc_IndexError, "tensor index out of range");
		return NULL;
	}
	return Py_BuildValue("(ssNKIKKK)", ti.name, wlift_dtype_name(ti.dtype), shape_tuple(&ti),
			     (unsigned long long)ti.nbytes, (unsigned)ti.file,
			     (unsigned long long)ti.file_offset, (unsigned long long)ti.data_begin,
			     (unsigned long long)ti.data_end);
}

static PyObject *ckpt_contains(CkptObject *self, PyObject *key)
{
	const char *name;

	if (ckpt_check(self) < 0)
		return NULL;
	name = PyUnicode_AsUTF8(key);
	if (!name)
		return NULL;
	return PyBool_FromLong(wlift_ckpt_find(self->ck, name) >= 0);
}

static PyObject *ckpt_metadata(CkptObject *self, PyObject *args)
{
	Py_ssize_t file = 0;
	PyObject *dict;
	int n;

	if (!PyArg_ParseTuple(args, "|n", &file))
		return NULL;
	if (ckpt_check(self) < 0)
		return NULL;
	if (file < 0 || (size_t)file >= wlift_ckpt_nfiles(self->ck)) {
		PyErr_SetString(PyExc_IndexError, "file index out of range");
		return NULL;
	}
	n = wlift_ckpt_metadata_count(self->ck, (size_t)file);
	if (n == -ENOENT)
		Py_RETURN_NONE;
	if (n < 0)
		return raise_diag(n, NULL);
	dict = PyDict_New();
	for (int i = 0; dict && i < n; i++) {
		const char *k, *v;
		PyObject *pv;

		if (wlift_ckpt_metadata(self->ck, (size_t)file, (size_t)i, &k, &v) < 0)
			continue;
		pv = PyUnicode_FromString(v);
		if (!pv || PyDict_SetItemString(dict, k, pv) < 0) {
			Py_XDECREF(pv);
			Py_CLEAR(dict);
			break;
		}
		Py_DECREF(pv);
	}
	return dict;
}

static PyObject *ckpt_files(CkptObject *self, PyObject *unused)
{
	size_t n;
	PyObject *l;

	if (ckpt_check(self) < 0)
		return NULL;
	n = wlift_ckpt_nfiles(self->ck);
	l = PyList_New((Py_ssize_t)n);
	for (size_t i = 0; l && i < n; i++) {
		wlift_file_info fi;
		PyObject *t;

		wlift_ckpt_file(self->ck, i, &fi);
		t = Py_BuildValue("(sKKKK)", fi.uri, (unsigned long long)fi.size,
				  (unsigned long long)fi.header_len,
				  (unsigned long long)fi.data_offset,
				  (unsigned long long)fi.ntensors);
		if (!t) {
			Py_CLEAR(l);
			break;
		}
		PyList_SET_ITEM(l, (Py_ssize_t)i, t);
	}
	return l;
}

static PyObject *ckpt_close(CkptObject *self, PyObject *unused)
{
	/* Results keep the sources they need alive, so closing never invalidates tensors. Loads
	 * of other threads still running on this handle (GIL released) finish first: the last
	 * one closes. */
	if (self->busy) {
		self->closing = 1;
		Py_RETURN_NONE;
	}
	wlift_ckpt_close(self->ck);
	self->ck = NULL;
	Py_RETURN_NONE;
}

static PyObject *ckpt_closed(CkptObject *self, void *unused)
{
	return PyBool_FromLong(self->ck == NULL || self->closing);
}

/* Callback state of one wlift_load. */
struct load_cb {
	PyObject *ready;             /* callable(Tensor) or NULL */
	PyObject *cancel;            /* object with is_set() or NULL */
	PyObject *owner;
	int failed;                  /* a Python error is pending in exc */
	PyObject *exc_type, *exc_value, *exc_tb;
	PyThread_type_lock lock;     /* serialises ready callbacks' bookkeeping of failed/exc */
};

static void cb_store_error(struct load_cb *cb)
{
	/* GIL held. First error wins; later ones are dropped. */
	if (!cb->failed) {
		cb->failed = 1;
		PyErr_Fetch(&cb->exc_type, &cb->exc_value, &cb->exc_tb);
	} else {
		PyErr_Clear();
	}
}

static int progress_cb(uint64_t done, uint64_t total, void *user)
{
	struct load_cb *cb = user;
	PyGILState_STATE g = PyGILState_Ensure();
	int stop = cb->failed;

	/* Ctrl-C: the handler only sets a flag; running it here turns it into an exception. */
	if (!stop && PyErr_CheckSignals() < 0) {
		cb_store_error(cb);
		stop = 1;
	}
	if (!stop && cb->cancel) {
		PyObject *r = PyObject_CallMethod(cb->cancel, "is_set", NULL);

		if (!r) {
			cb_store_error(cb);
			stop = 1;
		} else {
			stop = PyObject_IsTrue(r) == 1;
			Py_DECREF(r);
		}
	}
	PyGILState_Release(g);
	return stop;
}

static int ready_cb(const wlift_tensor *t, void *user)
{
	struct load_cb *cb = user;
	PyGILState_STATE g = PyGILState_Ensure();
	int stop = cb->failed;

	if (!stop) {
		PyObject *o = tensor_new(t, cb->owner, 0), *r = NULL;

		if (o)
			r = PyObject_CallOneArg(cb->ready, o);
		Py_XDECREF(o);
		if (!r) {
			cb_store_error(cb);
			stop = 1;
		}
		Py_XDECREF(r);
	}
	PyGILState_Release(g);
	return stop;
}

/* A Python device allocator (load(device_allocator=obj)): obj.alloc(device, nbytes) returns
 * a device pointer (int); obj.free(device, ptr, nbytes) gives it back. The C allocator's
 * state outlives the load when the allocation succeeded: its free runs when the result's
 * last tensor goes, from any thread (the GIL is taken). */
struct py_alloc {
	PyObject *obj;
	int allocated, freed, load_done;
	PyObject *exc_type, *exc_value, *exc_tb; /* what alloc raised */
};

static void py_alloc_drop(struct py_alloc *a)
{
	Py_XDECREF(a->exc_type);
	Py_XDECREF(a->exc_value);
	Py_XDECREF(a->exc_tb);
	Py_XDECREF(a->obj);
	PyMem_RawFree(a);
}

static int py_alloc_cb(void *user, int device, size_t bytes, void **ptr)
{
	struct py_alloc *a = user;
	PyGILState_STATE g = PyGILState_Ensure();
	PyObject *r = PyObject_CallMethod(a->obj, "alloc", "in", device, (Py_ssize_t)bytes);
	int ret = WLIFT_EDEVMEM;

	if (r) {
		void *p = PyLong_AsVoidPtr(r);
		if (!PyErr_Occurred() && p) {
			*ptr = p;
			a->allocated = 1;
			ret = 0;
		}
		Py_DECREF(r);
	}
	if (PyErr_Occurred())
		PyErr_Fetch(&a->exc_type, &a->exc_value, &a->exc_tb);
	PyGILState_Release(g);
	return ret;
}

static void py_free_cb(void *user, int device, void *ptr, size_t bytes)
{
	struct py_alloc *a = user;
	PyGILState_STATE g = PyGILState_Ensure();
	PyObject *r = PyObject_CallMethod(a->obj, "free", "iNn", device, PyLong_FromVoidPtr(ptr),
					  (Py_ssize_t)bytes);

	if (!r)
		PyErr_WriteUnraisable(a->obj);
	Py_XDECREF(r);
	a->freed = 1;
	if (a->load_done)
		py_alloc_drop(a);
	PyGILState_Release(g);
}

/* The selection keywords of ck.load and budget_groups into o: dtype (a name; None: as
 * stored) and names (a sequence of str; None: all). *seq and *cnames are the caller's to
 * release, on failure too. Returns 0, or -1 with the exception set. */
static int parse_selection(PyObject *names, const char *dtype, wlift_load_opts *o,
			   PyObject **seq, const char ***cnames)
{
	if (dtype) {
		/* Floating-point tensors are converted to it (the library checks the pair). */
		int t = wlift_dtype_from_name(dtype);

		if (t < 0) {
			PyErr_Format(PyExc_ValueError, "unknown dtype %s", dtype);
			return -1;
		}
		o->dtype = (wlift_dtype)t;
	}
	if (names != Py_None) {
		const char **c;
		Py_ssize_t n;

		*seq = PySequence_Fast(names, "names must be a sequence of str");
		if (!*seq)
			return -1;
		n = PySequence_Fast_GET_SIZE(*seq);
		c = PyMem_Calloc((size_t)n + 1, sizeof(*c));
		*cnames = c;
		if (!c) {
			PyErr_NoMemory();
			return -1;
		}
		for (Py_ssize_t i = 0; i < n; i++) {
			c[i] = PyUnicode_AsUTF8(PySequence_Fast_GET_ITEM(*seq, i));
			if (!c[i])
				return -1;
		}
		o->names = c;
		o->nnames = (size_t)n;
	}
	return 0;
}

static PyObject *ckpt_load(CkptObject *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"names", "mmap", "strategy", "direct", "threads", "device",
				 "ready", "cancel", "rows", "device_allocator", "rank", "world",
				 "shard", "experts", "gds", "dtype", "max_device_bytes", NULL};
	const char *dtype = NULL;
	unsigned long long budget = 0;
	PyObject *names = Py_None, *ready = Py_None, *cancel = Py_None, *rows = Py_None;
	PyObject *dev_alloc = Py_None;
	struct py_alloc *pa = NULL;
	wlift_device_allocator cal = {py_alloc_cb, py_free_cb, NULL};
	PyObject *shard = Py_None, *experts = Py_None;
	PyObject *seq = NULL, *rseq = NULL, *sseq = NULL;
	wlift_shard_rule *crules = NULL;
	wlift_expert_filter ef = {0};
	int rank = 0, world = 0;
	PyObject *res_obj = NULL;
	const char **cnames = NULL;
	wlift_rows *crows = NULL;
	const char *device = NULL, *gds = NULL;
	int mmap = 0, strategy = 0, direct = 0;
	unsigned threads = 0;
	wlift_load_opts o = WLIFT_LOAD_OPTS_INIT;
	struct load_cb cb = {0};
	wlift_result *res = NULL;
	wlift_diag d;
	int ret;

	if (!PyArg_ParseTupleAndKeywords(args, kw, "|OiiiIzOOOOiiOOzzK", kwlist, &names, &mmap,
					 &strategy, &direct, &threads, &device, &ready, &cancel,
					 &rows, &dev_alloc, &rank, &world, &shard, &experts, &gds,
					 &dtype, &budget))
		return NULL;
	if (gds) {
		/* GPU Direct Storage: "auto", "on", "off"; None: the context's (WEIGHTLIFT_GDS). */
		if (strcmp(gds, "auto") == 0)
			o.gds = WLIFT_GDS_AUTO;
		else if (strcmp(gds, "on") == 0)
			o.gds = WLIFT_GDS_ON;
		else if (strcmp(gds, "off") == 0)
			o.gds = WLIFT_GDS_OFF;
		else {
			PyErr_Format(PyExc_ValueError,
				     "gds must be \"auto\", \"on\", \"off\" or None, not \"%s\"",
				     gds);
			return NULL;
		}
	}
	if (ckpt_check(self) < 0)
		return NULL;
	if (parse_selection(names, dtype, &o, &seq, &cnames) < 0)
		goto out;
	if (rows != Py_None) {
		/* rows: one (begin, end) pair of leading-dimension rows per name. */
		Py_ssize_t n;

		if (!cnames) {
			PyErr_SetString(PyExc_ValueError, "rows needs names");
			goto out;
		}
		rseq = PySequence_Fast(rows, "rows must be a sequence of (begin, end)");
		if (!rseq)
			goto out;
		n = PySequence_Fast_GET_SIZE(rseq);
		if ((size_t)n != o.nnames) {
			PyErr_SetString(PyExc_ValueError, "rows must have one (begin, end) per name");
			goto out;
		}
		crows = PyMem_Calloc((size_t)n + 1, sizeof(*crows));
		if (!crows) {
			PyErr_NoMemory();
			goto out;
		}
		for (Py_ssize_t i = 0; i < n; i++) {
			unsigned long long b, e;

			if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(rseq, i), "KK", &b, &e))
				goto out;
			crows[i].begin = b;
			crows[i].end = e;
		}
		o.rows = crows;
	}
	if (dev_alloc != Py_None) {
		if (!PyObject_HasAttrString(dev_alloc, "alloc") ||
		    !PyObject_HasAttrString(dev_alloc, "free")) {
			PyErr_SetString(PyExc_TypeError,
					"device_allocator needs alloc(device, nbytes) -> int and "
					"free(device, ptr, nbytes)");
			goto out;
		}
		pa = PyMem_RawCalloc(1, sizeof(*pa));
		if (!pa) {
			PyErr_NoMemory();
			goto out;
		}
		Py_INCREF(dev_alloc);
		pa->obj = dev_alloc;
		cal.user = pa;
		o.device_allocator = &cal;
	}
	if (shard != Py_None) {
		/* shard: a sequence of (pattern, dim) rules; dim -1 replicates. */
		Py_ssize_t n;

		sseq = PySequence_Fast(shard, "shard must be a sequence of (pattern, dim)");
		if (!sseq)
			goto out;
		n = PySequence_Fast_GET_SIZE(sseq);
		crules = PyMem_Calloc((size_t)n + 1, sizeof(*crules));
		if (!crules) {
			PyErr_NoMemory();
			goto out;
		}
		for (Py_ssize_t i = 0; i < n; i++) {
			if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(sseq, i), "si",
					      &crules[i].pattern, &crules[i].dim))
				goto out;
		}
		o.shard = crules;
		o.nshard = (size_t)n;
	}
	if (experts != Py_None) {
		/* experts: (placement, nexperts, ep_rank, ep_size, marker or None). */
		if (!PyArg_ParseTuple(experts, "iIiiz", &ef.placement, &ef.nexperts, &ef.ep_rank,
				      &ef.ep_size, &ef.marker))
			goto out;
		o.experts = &ef;
	}
	o.rank = rank;
	o.world_size = world;
	o.device = device;
	o.mmap = mmap;
	o.strategy = strategy;
	o.direct = direct;
	o.threads = threads;
	o.progress = progress_cb;
	o.progress_user = &cb;
	cb.ready = ready != Py_None ? ready : NULL;
	cb.cancel = cancel != Py_None ? cancel : NULL;
	cb.owner = (PyObject *)self;
	wlift_diag_clear(&d);
	self->busy++;
	Py_BEGIN_ALLOW_THREADS
	if (budget) /* budget-sized groups, one after another (wlift_load_groups) */
		ret = wlift_load_groups(self->ck, &o, budget, cb.ready ? ready_cb : NULL, &cb,
					NULL, NULL, &d);
	else
		ret = wlift_load(self->ck, &o, cb.ready ? ready_cb : NULL, &cb, &res, &d);
	Py_END_ALLOW_THREADS
	if (--self->busy == 0 && self->closing) {
		wlift_ckpt_close(self->ck);
		self->ck = NULL;
		self->closing = 0;
	}
	if (pa && pa->exc_type && !cb.failed) {
		/* The allocator raised: that exception, not the library's code. */
		PyErr_Restore(pa->exc_type, pa->exc_value, pa->exc_tb);
		pa->exc_type = pa->exc_value = pa->exc_tb = NULL;
		wlift_result_free(res);
		goto out;
	}
	if (cb.failed) {
		wlift_result_free(res);
		PyErr_Restore(cb.exc_type, cb.exc_value, cb.exc_tb);
		goto out;
	}
	if (ret < 0) {
		raise_diag(ret, &d);
		goto out;
	}
	if (budget) {
		res_obj = PyLong_FromLong(ret); /* the number of groups */
		goto out;
	}
	res_obj = (PyObject *)PyObject_New(ResultObject, &ResultType);
	if (!res_obj) {
		wlift_result_free(res);
		goto out;
	}
	((ResultObject *)res_obj)->res = res;
	((ResultObject *)res_obj)->owner = (PyObject *)self;
	Py_INCREF(self);
out:
	if (pa) {
		/* Owned by the memory from a successful alloc until its free. */
		pa->load_done = 1;
		if (!pa->allocated || pa->freed)
			py_alloc_drop(pa);
	}
	PyMem_Free(crules);
	PyMem_Free(crows);
	PyMem_Free(cnames);
	Py_XDECREF(sseq);
	Py_XDECREF(rseq);
	Py_XDECREF(seq);
	return res_obj;
}

/* budget_groups(budget, names=None, dtype=None) -> [[name, ...], ...] (wlift_budget_groups) */
static PyObject *ckpt_budget_groups(CkptObject *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"budget", "names", "dtype", NULL};
	unsigned long long budget = 0;
	PyObject *names = Py_None, *seq = NULL, *out = NULL;
	const char *dtype = NULL, **cnames = NULL;
	wlift_load_opts o = WLIFT_LOAD_OPTS_INIT;
	size_t *ends = NULL;
	wlift_diag d;
	int n;

	if (!PyArg_ParseTupleAndKeywords(args, kw, "K|Oz", kwlist, &budget, &names, &dtype))
		return NULL;
	if (ckpt_check(self) < 0)
		return NULL;
	if (parse_selection(names, dtype, &o, &seq, &cnames) < 0)
		goto out;
	wlift_diag_clear(&d);
	n = wlift_budget_groups(self->ck, &o, budget, NULL, 0, &d);
	if (n >= 0) {
		ends = PyMem_Calloc((size_t)n + 1, sizeof(*ends));
		if (!ends) {
			PyErr_NoMemory();
			goto out;
		}
		n = wlift_budget_groups(self->ck, &o, budget, ends, (size_t)n, &d);
	}
	if (n < 0) {
		raise_diag(n, &d);
		goto out;
	}
	out = PyList_New(n);
	for (size_t g = 0, at = 0; out && g < (size_t)n; g++) {
		PyObject *grp = PyList_New((Py_ssize_t)(ends[g] - at));

		if (!grp) {
			Py_CLEAR(out);
			break;
		}
		for (size_t i = at; i < ends[g]; i++) {
			/* Positions in the selection: the names as given (deduplicated by the
			 * library only when repeated, which budget_groups' caller does not). */
			const char *nm = cnames ? cnames[i] : NULL;
			wlift_tensor_info ti;

			if (!nm && wlift_ckpt_info(self->ck, i, &ti) == 0)
				nm = ti.name;
			PyList_SET_ITEM(grp, (Py_ssize_t)(i - at), PyUnicode_FromString(nm ? nm : ""));
		}
		PyList_SET_ITEM(out, (Py_ssize_t)g, grp);
		at = ends[g];
	}
out:
	PyMem_Free(ends);
	PyMem_Free(cnames);
	Py_XDECREF(seq);
	return out;
}

static PyMethodDef ckpt_methods[] = {
	{"budget_groups", (PyCFunction)(void (*)(void))ckpt_budget_groups,
	 METH_VARARGS | METH_KEYWORDS,
	 "budget_groups(budget, names=None, dtype=None) -> [[name, ...], ...]: the tensors "
	 "(names in order, else all in file order) in consecutive groups whose device memory "
	 "fits budget bytes (wlift_budget_groups)."},
	{"names", (PyCFunction)ckpt_names, METH_NOARGS, "Tensor names in file order."},
	{"info", (PyCFunction)ckpt_info, METH_O,
	 "info(name_or_index) -> (name, dtype, shape, nbytes, file, file_offset, begin, end)"},
	{"contains", (PyCFunction)ckpt_contains, METH_O, "True when the tensor exists."},
	{"metadata", (PyCFunction)ckpt_metadata, METH_VARARGS,
	 "metadata(file=0) -> dict, or None when the header has no __metadata__."},
	{"files", (PyCFunction)ckpt_files, METH_NOARGS,
	 "[(uri, size, header_len, data_offset, ntensors)] per file."},
	{"load", (PyCFunction)(void (*)(void))ckpt_load, METH_VARARGS | METH_KEYWORDS,
	 "load(names=None, mmap=0, strategy=0, direct=0, threads=0, device=None, ready=None, "
	 "cancel=None, rows=None, device_allocator=None, rank=0, world=0, shard=None, "
	 "experts=None, gds=None, dtype=None, max_device_bytes=0) -> Result, or with "
	 "max_device_bytes the number of budget-sized groups loaded one after another "
	 "(wlift_load_groups: the tensors only through ready). dtype: a safetensors dtype name "
	 "(F32, F16, BF16) that floating-point tensors are converted to (from the F8 formats "
	 "too). rows: one (begin, end) of "
	 "leading-dimension rows per name (only those bytes are read). device_allocator: an "
	 "object with alloc(device, nbytes) -> device pointer and free(device, ptr, nbytes) "
	 "that owns a GPU load's device memory. shard: [(pattern, dim)] rules for rank of world "
	 "(dim -1 replicates); experts: (placement, nexperts, ep_rank, ep_size, marker) "
	 "(wlift_expert_filter). gds: GPU Direct Storage \"auto\", \"on\" or \"off\" (None: "
	 "WEIGHTLIFT_GDS, else auto). The GIL is released while loading."},
	{"close", (PyCFunction)ckpt_close, METH_NOARGS, "Close; loaded tensors stay valid."},
	{NULL, NULL, 0, NULL},
};

static PyGetSetDef ckpt_getset[] = {
	{"closed", (getter)ckpt_closed, NULL, "True after close()", NULL},
	{NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject CkptType = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "weightlift._native.Checkpoint",
	.tp_basicsize = sizeof(CkptObject),
	.tp_dealloc = (destructor)ckpt_dealloc,
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "Checkpoint(source, name='<memory>'): an opened safetensors file, index.json, "
		  "directory, or bytes-like image.",
	.tp_methods = ckpt_methods,
	.tp_getset = ckpt_getset,
	.tp_init = (initproc)ckpt_init,
	.tp_new = PyType_GenericNew,
};

/* ------------------------------------------------------------------------------------- */
/* Result                                                                                 */

static void result_dealloc(ResultObject *self)
{
	wlift_result_free(self->res);
	Py_XDECREF(self->owner);
	Py_TYPE(self)->tp_free((PyObject *)self);
}

static Py_ssize_t result_len(ResultObject *self)
{
	return (Py_ssize_t)wlift_result_count(self->res);
}

static PyObject *result_tensor(ResultObject *self, PyObject *key)
{
	const wlift_tensor *t;

	if (PyUnicode_Check(key)) {
		const char *name = PyUnicode_AsUTF8(key);

		if (!name)
			return NULL;
		t = wlift_result_find(self->res, name);
		if (!t) {
			PyErr_Format(SafetensorError, "File does not contain tensor %s", name);
			return NULL;
		}
	} else {
		Py_ssize_t i = PyNumber_AsSsize_t(key, PyExc_IndexError);

		if (i == -1 && PyErr_Occurred())
			return NULL;
		t = i < 0 ? NULL : wlift_result_tensor(self->res, (size_t)i);
		if (!t) {
			PyErr_SetString(PyExc_IndexError, "tensor index out of range");
			return NULL;
		}
	}
	return tensor_new(t, self->owner, 0);
}

static PyObject *result_tensors(ResultObject *self, PyObject *unused)
{
	size_t n = wlift_result_count(self->res);
	PyObject *l = PyList_New((Py_ssize_t)n);

	for (size_t i = 0; l && i < n; i++) {
		PyObject *o = tensor_new(wlift_result_tensor(self->res, i), self->owner, 0);

		if (!o) {
			Py_CLEAR(l);
			break;
		}
		PyList_SET_ITEM(l, (Py_ssize_t)i, o);
	}
	return l;
}

static PyObject *result_stats(ResultObject *self, PyObject *unused)
{
	wlift_stats s;

	memset(&s, 0, sizeof(s));
	wlift_result_stats(self->res, &s);
	return Py_BuildValue("{s:K,s:K,s:d,s:d,s:d,s:d,s:d,s:s,s:i,s:I,s:n,s:s,s:K,s:K,s:K,s:K,"
			     "s:K,s:K}",
			     "bytes", (unsigned long long)s.bytes, "bytes_read",
			     (unsigned long long)s.bytes_read, "seconds", s.seconds, "gb_per_s",
			     s.gb_per_s, "open_s", s.open_s, "plan_s", s.plan_s, "read_s",
			     s.read_s, "strategy", s.strategy ? s.strategy : "", "direct",
			     s.direct, "threads", s.threads, "chunk_bytes",
			     (Py_ssize_t)s.chunk_bytes, "gds", s.gds ? s.gds : "off", "gds_bytes",
			     (unsigned long long)s.gds_bytes, "gds_fallbacks",
			     (unsigned long long)s.gds_fallbacks, "retries",
			     (unsigned long long)s.retries, "hedges", (unsigned long long)s.hedges,
			     "hedges_won", (unsigned long long)s.hedges_won, "bytes_rerequested",
			     (unsigned long long)s.bytes_rerequested);
}

static PySequenceMethods result_seq = {
	.sq_length = (lenfunc)result_len,
};

static PyMethodDef result_methods[] = {
	{"tensor", (PyCFunction)result_tensor, METH_O, "tensor(name_or_index) -> Tensor"},
	{"tensors", (PyCFunction)result_tensors, METH_NOARGS, "All tensors, in file order."},
	{"stats", (PyCFunction)result_stats, METH_NOARGS, "Load statistics (dict)."},
	{NULL, NULL, 0, NULL},
};

static PyTypeObject ResultType = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "weightlift._native.Result",
	.tp_basicsize = sizeof(ResultObject),
	.tp_dealloc = (destructor)result_dealloc,
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "Loaded tensors (reference counted; tensors outlive it).",
	.tp_as_sequence = &result_seq,
	.tp_methods = result_methods,
};

/* ------------------------------------------------------------------------------------- */
/* Tensor                                                                                 */

static void tensor_dealloc(TensorObject *self)
{
	if (self->keep)
		self->keep->deleter(self->keep);
	Py_XDECREF(self->owner);
	PyObject_Free(self);
}

static void capsule_legacy_del(PyObject *cap)
{
	/* A consumer renames the capsule to "used_dltensor" when it takes ownership. */
	if (PyCapsule_IsValid(cap, "dltensor")) {
		wlift_dl_managed *m = PyCapsule_GetPointer(cap, "dltensor");

		if (m && m->deleter)
			m->deleter(m);
	}
}

static void capsule_versioned_del(PyObject *cap)
{
	if (PyCapsule_IsValid(cap, "dltensor_versioned")) {
		wlift_dl_managed_versioned *m = PyCapsule_GetPointer(cap, "dltensor_versioned");

		if (m && m->deleter)
			m->deleter(m);
	}
}

static PyObject *tensor_dlpack(TensorObject *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"stream", "max_version", "dl_device", "copy", NULL};
	PyObject *stream = Py_None, *max_version = Py_None, *dl_device = Py_None, *copy = Py_None;
	int versioned = 0;
	wlift_diag d;
	int ret;

	if (!PyArg_ParseTupleAndKeywords(args, kw, "|$OOOO", kwlist, &stream, &max_version,
					 &dl_device, &copy))
		return NULL;
	if (max_version != Py_None) {
		PyObject *major = PySequence_GetItem(max_version, 0);
		long mj;

		if (!major)
			return NULL;
		mj = PyLong_AsLong(major);
		Py_DECREF(major);
		if (mj == -1 && PyErr_Occurred())
			return NULL;
		versioned = mj >= 1;
	}
	if (copy != Py_None && PyObject_IsTrue(copy) == 1) {
		PyErr_SetString(PyExc_BufferError, "weightlift tensors export without copying only");
		return NULL;
	}
	if (dl_device != Py_None) {
		int dt, id;

		if (!PyArg_ParseTuple(dl_device, "ii", &dt, &id))
			return NULL;
		if (dt != (tview(self->t).device < 0 ? WLIFT_DL_CPU : WLIFT_DL_CUDA)) {
			PyErr_SetString(PyExc_BufferError, "cannot export to another device");
			return NULL;
		}
	}
	wlift_diag_clear(&d);
	if (versioned) {
		wlift_dl_managed_versioned *m = NULL;
		PyObject *cap;

		ret = wlift_tensor_dlpack_versioned(self->t, self->flags, &m, &d);
		if (ret < 0) {
			PyErr_SetString(PyExc_BufferError, d.message);
			return NULL;
		}
		cap = PyCapsule_New(m, "dltensor_versioned", capsule_versioned_del);
		if (!cap)
			m->deleter(m);
		return cap;
	} else {
		wlift_dl_managed *m = NULL;
		PyObject *cap;

		ret = wlift_tensor_dlpack(self->t, self->flags, &m, &d);
		if (ret < 0) {
			PyErr_SetString(PyExc_BufferError, d.message);
			return NULL;
		}
		cap = PyCapsule_New(m, "dltensor", capsule_legacy_del);
		if (!cap)
			m->deleter(m);
		return cap;
	}
}

static PyObject *tensor_dlpack_device(TensorObject *self, PyObject *unused)
{
	int dev = tview(self->t).device;

	return Py_BuildValue("(ii)", dev < 0 ? WLIFT_DL_CPU : WLIFT_DL_CUDA, dev < 0 ? 0 : dev);
}

static PyObject *tensor_bytes(TensorObject *self, PyObject *unused)
{
	return tensor_new(self->t, self->owner, WLIFT_DLPACK_BYTES);
}

static PyObject *tensor_get_name(TensorObject *self, void *u)
{
	wlift_tensor_view v;

	wlift_tensor_get(self->t, &v);
	return PyUnicode_FromString(v.info.name);
}

static PyObject *tensor_get_dtype(TensorObject *self, void *u)
{
	wlift_tensor_view v;

	wlift_tensor_get(self->t, &v);
	return PyUnicode_FromString(wlift_dtype_name(v.dtype));
}

static PyObject *tensor_get_shape(TensorObject *self, void *u)
{
	wlift_tensor_view v;

	wlift_tensor_get(self->t, &v);
	return shape_tuple(&v.info);
}

static PyObject *tensor_get_nbytes(TensorObject *self, void *u)
{
	wlift_tensor_view v;

	wlift_tensor_get(self->t, &v);
	return PyLong_FromUnsignedLongLong(v.nbytes);
}

static PyObject *tensor_get_device(TensorObject *self, void *u)
{
	return PyLong_FromLong(tview(self->t).device);
}

static PyObject *tensor_get_readonly(TensorObject *self, void *u)
{
	return PyBool_FromLong(tview(self->t).readonly);
}

static PyObject *tensor_get_raw(TensorObject *self, void *u)
{
	return PyBool_FromLong((self->flags & WLIFT_DLPACK_BYTES) != 0);
}

static PyObject *tensor_get_address(TensorObject *self, void *u)
{
	return PyLong_FromVoidPtr(tview(self->t).data);
}

static PyObject *tensor_repr(TensorObject *self)
{
	wlift_tensor_view v;

	wlift_tensor_get(self->t, &v);
	return PyUnicode_FromFormat("<weightlift.Tensor %s %s%s>", v.info.name,
				    wlift_dtype_name(v.dtype),
				    (self->flags & WLIFT_DLPACK_BYTES) ? " bytes" : "");
}

static PyMethodDef tensor_methods[] = {
	{"__dlpack__", (PyCFunction)(void (*)(void))tensor_dlpack, METH_VARARGS | METH_KEYWORDS,
	 "DLPack export (zero copy); the capsule keeps the memory alive."},
	{"__dlpack_device__", (PyCFunction)tensor_dlpack_device, METH_NOARGS,
	 "(device_type, device_id)"},
	{"bytes", (PyCFunction)tensor_bytes, METH_NOARGS,
	 "The same memory as a 1-D uint8 DLPack exporter (for dtypes a consumer lacks)."},
	{NULL, NULL, 0, NULL},
};

static PyGetSetDef tensor_getset[] = {
	{"name", (getter)tensor_get_name, NULL, "tensor name", NULL},
	{"dtype", (getter)tensor_get_dtype, NULL, "safetensors dtype string of the data", NULL},
	{"shape", (getter)tensor_get_shape, NULL, "shape tuple", NULL},
	{"nbytes", (getter)tensor_get_nbytes, NULL, "bytes of data", NULL},
	{"device", (getter)tensor_get_device, NULL, "-1 for CPU, else the CUDA ordinal", NULL},
	{"readonly", (getter)tensor_get_readonly, NULL, "memory must not be written", NULL},
	{"raw", (getter)tensor_get_raw, NULL, "exports raw bytes", NULL},
	{"address", (getter)tensor_get_address, NULL, "data address", NULL},
	{NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject TensorType = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "weightlift._native.Tensor",
	.tp_basicsize = sizeof(TensorObject),
	.tp_dealloc = (destructor)tensor_dealloc,
	.tp_repr = (reprfunc)tensor_repr,
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "A loaded tensor: zero-copy DLPack exporter (numpy/torch/jax from_dlpack).",
	.tp_methods = tensor_methods,
	.tp_getset = tensor_getset,
};

/* ------------------------------------------------------------------------------------- */
/* Saving                                                                                 */

/* save(items, metadata=None, path=None) -> bytes or None.
 * items: sequence of (name, dtype_str, shape, buffer). */
static PyObject *py_save(PyObject *m, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"items", "metadata", "path", NULL};
	PyObject *items, *meta = Py_None, *path = Py_None, *seq = NULL, *mseq = NULL, *pbytes = NULL;
	PyObject *ret_obj = NULL;
	Py_ssize_t n = 0, nm = 0, nbufs = 0;
	wlift_save_tensor *st = NULL;
	uint64_t *shapes = NULL;
	Py_buffer *bufs = NULL;
	const char **kv = NULL;
	size_t nshape = 0, si = 0;
	wlift_diag d;
	int ret;

	if (!PyArg_ParseTupleAndKeywords(args, kw, "O|OO", kwlist, &items, &meta, &path))
		return NULL;
	seq = PySequence_Fast(items, "items must be a sequence");
	if (!seq)
		return NULL;
	n = PySequence_Fast_GET_SIZE(seq);
	st = PyMem_Calloc((size_t)n + 1, sizeof(*st));
	bufs = PyMem_Calloc((size_t)n + 1, sizeof(*bufs));
	if (!st || !bufs) {
		PyErr_NoMemory();
		goto out;
	}
	for (Py_ssize_t i = 0; i < n; i++) {
		PyObject *it = PySequence_Fast_GET_ITEM(seq, i), *shape;
		Py_ssize_t nd;

		if (!PyTuple_Check(it) || PyTuple_GET_SIZE(it) != 4) {
			PyErr_SetString(PyExc_TypeError, "items must be (name, dtype, shape, buffer)");
			goto out;
		}
		shape = PyTuple_GET_ITEM(it, 2);
		nd = PySequence_Size(shape);
		if (nd < 0)
			goto out;
		nshape += (size_t)nd;
	}
	shapes = PyMem_Calloc(nshape + 1, sizeof(*shapes));
	if (!shapes) {
		PyErr_NoMemory();
		goto out;
	}
	for (Py_ssize_t i = 0; i < n; i++) {
		PyObject *it = PySequence_Fast_GET_ITEM(seq, i);
		PyObject *shape = PyTuple_GET_ITEM(it, 2);
		const char *dt;
		int dtype;
		Py_ssize_t nd = PySequence_Size(shape);

		st[i].name = PyUnicode_AsUTF8(PyTuple_GET_ITEM(it, 0));
		if (!st[i].name)
			goto out;
		dt = PyUnicode_AsUTF8(PyTuple_GET_ITEM(it, 1));
		if (!dt)
			goto out;
		dtype = wlift_dtype_from_name(dt);
		if (dtype < 0) {
			PyErr_Format(PyExc_ValueError, "unknown dtype %s", dt);
			goto out;
		}
		st[i].dtype = (wlift_dtype)dtype;
		st[i].ndim = (uint32_t)nd;
		st[i].shape = shapes + si;
		for (Py_ssize_t k = 0; k < nd; k++) {
			PyObject *v = PySequence_GetItem(shape, k);
			unsigned long long x;

			if (!v)
				goto out;
			x = PyLong_AsUnsignedLongLong(v);
			Py_DECREF(v);
			if (x == (unsigned long long)-1 && PyErr_Occurred())
				goto out;
			shapes[si++] = x;
		}
		if (PyObject_GetBuffer(PyTuple_GET_ITEM(it, 3), &bufs[i], PyBUF_C_CONTIGUOUS) < 0)
			goto out;
		nbufs = i + 1;
		st[i].data = bufs[i].buf;
		st[i].nbytes = (uint64_t)bufs[i].len;
	}
	if (meta != Py_None) {
		PyObject *itemsv = PyMapping_Items(meta);

		if (!itemsv)
			goto out;
		mseq = PySequence_Fast(itemsv, "metadata");
		Py_DECREF(itemsv);
		if (!mseq)
			goto out;
		nm = PySequence_Fast_GET_SIZE(mseq);
		kv = PyMem_Calloc(2 * (size_t)nm + 1, sizeof(*kv));
		if (!kv) {
			PyErr_NoMemory();
			goto out;
		}
		for (Py_ssize_t i = 0; i < nm; i++) {
			PyObject *p = PySequence_Fast_GET_ITEM(mseq, i);
			PyObject *k = PyTuple_GET_ITEM(p, 0), *v = PyTuple_GET_ITEM(p, 1);

			if (!PyUnicode_Check(k) || !PyUnicode_Check(v)) {
				PyErr_SetString(PyExc_TypeError, "metadata keys and values must be str");
				goto out;
			}
			kv[2 * i] = PyUnicode_AsUTF8(k);
			kv[2 * i + 1] = PyUnicode_AsUTF8(v);
			if (!kv[2 * i] || !kv[2 * i + 1])
				goto out;
		}
	}
	wlift_diag_clear(&d);
	if (path != Py_None) {
		const char *p;

		if (!PyUnicode_FSConverter(path, &pbytes))
			goto out;
		p = PyBytes_AS_STRING(pbytes);
		Py_BEGIN_ALLOW_THREADS
		ret = wlift_save(p, st, (size_t)n, kv, (size_t)nm, &d);
		Py_END_ALLOW_THREADS
		if (ret < 0) {
			raise_diag(ret, &d);
			goto out;
		}
		ret_obj = Py_None;
		Py_INCREF(ret_obj);
	} else {
		void *buf = NULL;
		size_t len = 0;

		Py_BEGIN_ALLOW_THREADS
		ret = wlift_save_memory(st, (size_t)n, kv, (size_t)nm, &buf, &len, &d);
		Py_END_ALLOW_THREADS
		if (ret < 0) {
			raise_diag(ret, &d);
			goto out;
		}
		ret_obj = PyBytes_FromStringAndSize(buf, (Py_ssize_t)len);
		free(buf);
	}
out:
	for (Py_ssize_t i = 0; i < nbufs; i++)
		PyBuffer_Release(&bufs[i]);
	PyMem_Free(bufs);
	PyMem_Free(st);
	PyMem_Free(shapes);
	PyMem_Free(kv);
	Py_XDECREF(pbytes);
	Py_XDECREF(mseq);
	Py_XDECREF(seq);
	return ret_obj;
}

/* The context's bound on collective waits (WEIGHTLIFT_COMM_TIMEOUT, range-checked when the
 * module's context was made): weightlift.distributed's default timeout. */
static PyObject *py_comm_timeout(PyObject *m, PyObject *unused)
{
	(void)m;
	(void)unused;
	return PyLong_FromUnsignedLong(wlift_ctx_comm_timeout(g_ctx));
}

static PyObject *py_dtype_bits(PyObject *m, PyObject *arg)
{
	const char *s = PyUnicode_AsUTF8(arg);
	int t;

	if (!s)
		return NULL;
	t = wlift_dtype_from_name(s);
	if (t < 0) {
		PyErr_Format(PyExc_ValueError, "unknown dtype %s", s);
		return NULL;
	}
	return PyLong_FromUnsignedLong(wlift_dtype_bits((wlift_dtype)t));
}

static PyObject *py_set_cache_dir(PyObject *mod, PyObject *arg)
{
	PyObject *bytes = NULL;
	const char *dir = NULL;
	wlift_diag d;
	int ret;

	(void)mod;
	if (arg != Py_None) {
		if (!PyUnicode_FSConverter(arg, &bytes))
			return NULL;
		dir = PyBytes_AS_STRING(bytes);
		if (!*dir) {
			Py_DECREF(bytes);
			PyErr_SetString(PyExc_ValueError, "the cache directory is an empty string "
					"(None disables the cache)");
			return NULL;
		}
	}
	wlift_diag_clear(&d);
	ret = wlift_ctx_set_cache_dir(g_ctx, dir, &d);
	if (!ret && g_ctx_offline)
		ret = wlift_ctx_set_cache_dir(g_ctx_offline, dir, &d);
	for (size_t i = 0; !ret && i < OPT_CTX_MAX && g_opt_ctx[i].ctx; i++)
		if (!g_opt_ctx[i].cache_dir)
			ret = wlift_ctx_set_cache_dir(g_opt_ctx[i].ctx, dir, &d);
	if (!ret) {
		PyObject *keep = dir ? PyUnicode_DecodeFSDefault(dir) : Py_NewRef(Py_None);
		if (!keep) {
			Py_XDECREF(bytes);
			return NULL;
		}
		Py_XSETREF(g_cache_dir, keep);
	}
	Py_XDECREF(bytes);
	if (ret < 0)
		return raise_diag(ret, &d);
	Py_RETURN_NONE;
}

static PyObject *py_set_offline(PyObject *mod, PyObject *arg)
{
	int on = PyObject_IsTrue(arg);

	(void)mod;
	if (on < 0)
		return NULL;
	wlift_ctx_set_offline(g_ctx, on);
	g_offline = on;
	for (size_t i = 0; i < OPT_CTX_MAX && g_opt_ctx[i].ctx; i++)
		if (!g_opt_ctx[i].offline)
			wlift_ctx_set_offline(g_opt_ctx[i].ctx, on);
	Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
	{"set_cache_dir", (PyCFunction)py_set_cache_dir, METH_O,
	 "set_cache_dir(path or None): the local cache of remote objects for later opens."},
	{"set_offline", (PyCFunction)py_set_offline, METH_O,
	 "set_offline(flag): serve remote objects from the local cache only (later opens)."},
	{"save", (PyCFunction)(void (*)(void))py_save, METH_VARARGS | METH_KEYWORDS,
	 "save(items, metadata=None, path=None): serialise [(name, dtype, shape, buffer)]; "
	 "returns bytes, or writes path atomically and returns None."},
	{"dtype_bits", (PyCFunction)py_dtype_bits, METH_O, "bits per element of a dtype name"},
	{"comm_timeout", (PyCFunction)py_comm_timeout, METH_NOARGS,
	 "comm_timeout() -> seconds: the bound on collective waits (WEIGHTLIFT_COMM_TIMEOUT)."},
	{NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
	PyModuleDef_HEAD_INIT, "weightlift._native",
	"Thin CPython binding of libweightlift.", -1, module_methods,
	NULL, NULL, NULL, NULL,
};

/* The enum values the Python layer passes to Checkpoint.load, taken from the header so that
 * _core.py never copies a number. */
static const struct {
	const char *name;
	int value;
} int_constants[] = {
    {"MMAP_OFF", WLIFT_MMAP_OFF},
    {"MMAP_ON", WLIFT_MMAP_ON},
    {"MMAP_AUTO", WLIFT_MMAP_AUTO},
    {"EXPERTS_BLOCK", WLIFT_EXPERTS_BLOCK},
    {"EXPERTS_ROUND_ROBIN", WLIFT_EXPERTS_ROUND_ROBIN},
    {"STRATEGY_AUTO", WLIFT_STRATEGY_AUTO},
    {"STRATEGY_PREAD", WLIFT_STRATEGY_PREAD},
    {"STRATEGY_URING", WLIFT_STRATEGY_URING},
    {"DIRECT_AUTO", WLIFT_DIRECT_AUTO},
    {"DIRECT_ON", WLIFT_DIRECT_ON},
    {"DIRECT_OFF", WLIFT_DIRECT_OFF},
};

PyMODINIT_FUNC PyInit__native(void)
{
	PyObject *m;
	wlift_diag d;
	int ret;

	if (PyType_Ready(&CkptType) < 0 || PyType_Ready(&ResultType) < 0 ||
	    PyType_Ready(&TensorType) < 0)
		return NULL;
	wlift_diag_clear(&d);
	if (!g_ctx) {
		wlift_ctx_opts o = WLIFT_CTX_OPTS_INIT;
		o.log = log_stderr;
		ret = wlift_ctx_create(&g_ctx, &o, &d);
		if (ret < 0)
			return raise_diag(ret, &d);
	}
	m = PyModule_Create(&module_def);
	if (!m)
		return NULL;
	SafetensorError = PyErr_NewExceptionWithDoc(
		"weightlift.SafetensorError",
		"A safetensors file is malformed, or a request cannot be served (a ValueError).",
		PyExc_ValueError, NULL);
	if (!SafetensorError || PyModule_AddObjectRef(m, "SafetensorError", SafetensorError) < 0 ||
	    PyModule_AddObjectRef(m, "Checkpoint", (PyObject *)&CkptType) < 0 ||
	    PyModule_AddObjectRef(m, "Result", (PyObject *)&ResultType) < 0 ||
	    PyModule_AddObjectRef(m, "Tensor", (PyObject *)&TensorType) < 0 ||
	    PyModule_AddStringConstant(m, "version", WLIFT_VERSION_STRING) < 0) {
		Py_DECREF(m);
		return NULL;
	}
	for (size_t i = 0; i < sizeof(int_constants) / sizeof(int_constants[0]); i++) {
		if (PyModule_AddIntConstant(m, int_constants[i].name, int_constants[i].value) < 0) {
			Py_DECREF(m);
			return NULL;
		}
	}
	return m;
}
