/* SPDX-License-Identifier: Apache-2.0 */
/*
 * weightlift: load safetensors checkpoints into CPU or GPU memory at line rate.
 *
 * This header is the whole public C API and its reference. Conventions:
 *  - every fallible function returns int: >= 0 on success (or a count), a negative error code
 *    on failure: -1..-4095 are -errno, our own codes are the WLIFT_E* constants below;
 *  - every fallible function takes a trailing, nullable wlift_diag * that receives the context
 *    of the first error (file, tensor, byte offset, rule broken, message);
 *  - options structs are open and start with `size_t size`; initialise them with the
 *    *_INIT macros so they can grow without breaking callers (size 0 gives -EINVAL);
 *  - handles are opaque; destroy/close/free functions accept NULL;
 *  - the library never prints, never exits; logs go through the context's log callback.
 */
#ifndef WEIGHTLIFT_H
#define WEIGHTLIFT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(WLIFT_BUILDING) && defined(__GNUC__)
#define WLIFT_API __attribute__((visibility("default")))
#else
#define WLIFT_API
#endif

#define WLIFT_VERSION_MAJOR 0
#define WLIFT_VERSION_MINOR 1
#define WLIFT_VERSION_PATCH 0
#define WLIFT_VERSION_STRING "0.1.0"

/* ---------------------------------------------------------------------------------------
 * Errors. Pinned values, never renumbered. Blocks: -5000 format/common, -5100 remote,
 * -5200 GPU, -5300 communication.
 * ------------------------------------------------------------------------------------- */
enum wlift_error {
	WLIFT_EFORMAT = -5000,       /* malformed safetensors file (generic) */
	WLIFT_EHEADER_LEN = -5001,   /* header length field invalid / beyond the file / > limit */
	WLIFT_EJSON = -5002,         /* header is not valid JSON / not UTF-8 / wrong JSON types */
	WLIFT_EDTYPE = -5003,        /* unknown dtype */
	WLIFT_ESHAPE = -5004,        /* shape × dtype size overflows or does not match offsets */
	WLIFT_EOFFSETS = -5005,      /* data_offsets overlap, leave gaps or miss the data area */
	WLIFT_ETRUNCATED = -5006,    /* file shorter than its header claims */
	WLIFT_EINDEX = -5007,        /* model.safetensors.index.json inconsistent */
	WLIFT_ENOTFOUND = -5008,     /* tensor name not found */
	WLIFT_ECANCELED = -5009,     /* a callback asked to stop */
	WLIFT_ECHANGED = -5010,      /* file changed (size/mtime) while loading */
	WLIFT_EUNSUPPORTED = -5011,  /* feature not available in this build or on this system */
	WLIFT_EDUPLICATE = -5012,    /* the same tensor name twice (sharded sets, save) */
	WLIFT_ELFS = -5013,          /* file is a Git LFS pointer, not the data */
	WLIFT_EHTML = -5014,         /* file is an HTML/text error page, not safetensors */
	WLIFT_EURI = -5015,          /* URI scheme or syntax not understood */
	WLIFT_EEMPTY = -5016,        /* a directory (or prefix) holds no checkpoint */

	WLIFT_EHTTP = -5100,         /* HTTP error status */
	WLIFT_EAUTH = -5101,         /* authentication or authorisation failed */
	WLIFT_ENET = -5102,          /* network failure (connect, reset, timeout) */
	WLIFT_ECACHE = -5103,        /* local cache failure */

	WLIFT_ECUDA = -5200,         /* CUDA driver call failed */
	WLIFT_ENODEV = -5201,        /* no such device / no CUDA driver */
	WLIFT_ECUFILE = -5202,       /* cuFile (GDS) call failed */
	WLIFT_EDEVMEM = -5203,       /* out of device memory (the message names the bytes needed) */

	WLIFT_ECOMM = -5300,         /* collective communication failed */
};

/* Error classes. Each macro takes a return value and is true when it falls in that block:
 * -errno (-1..-4095), format/common (-5000..-5099), remote (-5100..-5199), GPU
 * (-5200..-5299), communication (-5300..-5399). They test the range only, so they also
 * accept codes a newer library adds to a block. The argument is evaluated more than once. */
#define WLIFT_ERR_IS_ERRNO(e) ((e) <= -1 && (e) >= -4095)
#define WLIFT_ERR_IS_FORMAT(e) ((e) <= -5000 && (e) >= -5099)
#define WLIFT_ERR_IS_REMOTE(e) ((e) <= -5100 && (e) >= -5199)
#define WLIFT_ERR_IS_GPU(e) ((e) <= -5200 && (e) >= -5299)
#define WLIFT_ERR_IS_COMM(e) ((e) <= -5300 && (e) >= -5399)

enum wlift_errclass {
	WLIFT_ERRCLASS_NONE = 0, /* not an error: err >= 0 */
	WLIFT_ERRCLASS_ERRNO,    /* -errno */
	WLIFT_ERRCLASS_FORMAT,   /* the -5000 block: format and common */
	WLIFT_ERRCLASS_REMOTE,   /* the -5100 block: HTTP, auth, network, cache */
	WLIFT_ERRCLASS_GPU,      /* the -5200 block: CUDA, devices, cuFile */
	WLIFT_ERRCLASS_COMM,     /* the -5300 block: collective communication */
	WLIFT_ERRCLASS_UNKNOWN,  /* negative but in no block */
};

/* The class of a return value (enum wlift_errclass), by the same ranges as the
 * WLIFT_ERR_IS_* macros. Never fails; thread-safe. */
WLIFT_API int wlift_errclass(int err);

/* Human-readable text for any code returned by this library (including -errno).
 * Never NULL; the string is static. */
WLIFT_API const char *wlift_strerror(int err);
/* Symbolic name ("WLIFT_EFORMAT", "ENOENT"), static, never NULL. */
WLIFT_API const char *wlift_errname(int err);

/* Diagnostic filled on failure by every fallible call that receives one. Caller-owned;
 * zero it (or wlift_diag_clear) before use. Only the first error of a call is kept.
 * Strings are NUL-terminated and truncated to fit. */
typedef struct wlift_diag {
	int code;             /* the error code returned, 0 if none */
	int has_offset;       /* 1 when offset is meaningful */
	uint64_t offset;      /* byte offset in file the error refers to */
	char file[1024];      /* file or URI, "" if none */
	char tensor[512];     /* tensor name, "" if none */
	char rule[64];        /* short rule id, e.g. "offsets.contiguous", "" if none */
	char message[1024];   /* full sentence describing the failure */
} wlift_diag;

WLIFT_API void wlift_diag_clear(wlift_diag *d);

/* ---------------------------------------------------------------------------------------
 * Data types: every dtype of the reference safetensors format.
 * ------------------------------------------------------------------------------------- */
typedef enum wlift_dtype {
	WLIFT_DTYPE_NONE = 0, /* "keep as stored" in options */
	WLIFT_BOOL = 1,
	WLIFT_U8,
	WLIFT_I8,
	WLIFT_F8_E5M2,
	WLIFT_F8_E4M3,
	WLIFT_F8_E8M0,
	WLIFT_F8_E4M3FNUZ,
	WLIFT_F8_E5M2FNUZ,
	WLIFT_I16,
	WLIFT_U16,
	WLIFT_F16,
	WLIFT_BF16,
	WLIFT_I32,
	WLIFT_U32,
	WLIFT_F32,
	WLIFT_F64,
	WLIFT_I64,
	WLIFT_U64,
	WLIFT_C64,
	WLIFT_F4,
	WLIFT_F6_E2M3,
	WLIFT_F6_E3M2,
	WLIFT_DTYPE_COUNT
} wlift_dtype;

/* "F32", ... as written in headers; NULL for an invalid value. */
WLIFT_API const char *wlift_dtype_name(wlift_dtype t);
/* Parse a header dtype string; returns the dtype (> 0) or WLIFT_EDTYPE. */
WLIFT_API int wlift_dtype_from_name(const char *name);
/* Size of one element in bits (1..128); 0 for an invalid value. */
WLIFT_API unsigned wlift_dtype_bits(wlift_dtype t);

/* ---------------------------------------------------------------------------------------
 * Context: threads, knobs, logging. Thread-safe to share between loads.
 * Knob precedence: explicit option > WEIGHTLIFT_* environment variable > default.
 * ------------------------------------------------------------------------------------- */
typedef struct wlift_ctx wlift_ctx;

/* The accepted range of every knob, wherever it is set (options structs, WEIGHTLIFT_*
 * variables, CLI flags, Python keywords): 0 means "the default"; a value above the maximum is
 * -EINVAL with a message naming the knob. */
#define WLIFT_MAX_THREADS 256u
#define WLIFT_MAX_WORLD 65536
#define WLIFT_MAX_CHUNK_BYTES (1ull << 30)
#define WLIFT_MAX_INFLIGHT_BYTES (1ull << 40)
#define WLIFT_MAX_HTTP_REQUESTS 1024u
/* The bandwidth cap (max_rate, bytes per second): 64 KiB/s .. 1 TiB/s, or 0 for none. */
#define WLIFT_MIN_RATE (64ull << 10)
#define WLIFT_MAX_RATE (1ull << 40)
/* GPU loads: the pinned staging ring, 1 MiB .. 16 GiB in 2 .. 1024 buffers of 64 KiB ..
 * 256 MiB each. */
#define WLIFT_MIN_RING_BYTES (1ull << 20)
#define WLIFT_MAX_RING_BYTES (16ull << 30)
#define WLIFT_MAX_RING_SLOTS 1024u
/* The local cache's size limit (cache_max_bytes, WEIGHTLIFT_CACHE_MAX_BYTES): up to 1 EiB. */
#define WLIFT_MAX_CACHE_BYTES (1ull << 60)

enum wlift_log_level { WLIFT_LOG_ERROR = 0, WLIFT_LOG_WARN, WLIFT_LOG_INFO, WLIFT_LOG_DEBUG };
typedef void (*wlift_log_fn)(void *user, int level, const char *msg);

typedef struct wlift_ctx_opts {
	size_t size;                /* sizeof(wlift_ctx_opts) */
	unsigned threads;           /* I/O threads; 0: WEIGHTLIFT_THREADS or default */
	size_t chunk_bytes;         /* read unit; 0: WEIGHTLIFT_CHUNK_BYTES or default */
	size_t max_inflight_bytes;  /* bytes in flight; 0: WEIGHTLIFT_MAX_INFLIGHT_BYTES or default */
	const char *cache_dir;      /* write-through cache for remote sources; NULL: none */
	wlift_log_fn log;           /* NULL: no logging */
	void *log_user;
	int log_level;              /* messages above this level are dropped */
	/* Remote sources (read only when size covers them): */
	const char *http_token;     /* "Authorization: Bearer" for every http(s) request; NULL:
	                               WEIGHTLIFT_HTTP_TOKEN (HF_TOKEN goes to the Hugging Face
	                               endpoint only) */
	unsigned http_requests;     /* HTTP requests in flight per load; 0: WEIGHTLIFT_HTTP_REQUESTS
	                               or default; at most WLIFT_MAX_HTTP_REQUESTS */
	uint64_t max_rate;          /* bandwidth cap in bytes per second over every remote transfer
	                               of every load of this context (its workers share it);
	                               0: WEIGHTLIFT_MAX_RATE ("100M": binary suffixes, as
	                               curl's --limit-rate) or none; WLIFT_MIN_RATE ..
	                               WLIFT_MAX_RATE */
	/* The local cache of remote objects (cache_dir above; docs/remote.md "Local cache"): */
	int offline;                /* 1: never ask a server, serve remote objects from the cache
	                               only; 0: WEIGHTLIFT_OFFLINE (1/0) or off */
	uint64_t cache_max_bytes;   /* evict least recently used entries above this; 0:
	                               WEIGHTLIFT_CACHE_MAX_BYTES or no limit */
	int cache_fill;             /* WLIFT_CACHE_FILL_*; 0: WEIGHTLIFT_CACHE_FILL (partial|full)
	                               or partial */
	int http_full_download;     /* 1: a server without Range support (a 200 with the whole
	                               object to a ranged GET) is read by whole-object GETs,
	                               streamed into the tensors in order (each range of a load
	                               reads the object from its start); 0:
	                               WEIGHTLIFT_HTTP_FULL_DOWNLOAD=1, else refused (WLIFT_EHTTP) */
	const char *s3_region;      /* AWS region of s3:// buckets; NULL: WEIGHTLIFT_S3_REGION,
	                               AWS_REGION, AWS_DEFAULT_REGION, the profile's region, else
	                               asked of S3 (the bucket's x-amz-bucket-region) */
	int s3_unsigned;            /* 1: s3:// requests are not signed (public buckets); 0:
	                               WEIGHTLIFT_S3_UNSIGNED */
} wlift_ctx_opts;
/* cache_fill: a load that reads only part of an object stores nothing (PARTIAL), or the rest
 * is fetched in the background after the load and the whole object cached (FULL). */
#define WLIFT_CACHE_FILL_PARTIAL 1
#define WLIFT_CACHE_FILL_FULL 2
#define WLIFT_CTX_OPTS_INIT { .size = sizeof(wlift_ctx_opts), .log_level = WLIFT_LOG_WARN }

/* Create a context. opts may be NULL for defaults. Every call that takes a wlift_ctx * also
 * accepts NULL: it then uses a process-wide default context, created on first use from the
 * WEIGHTLIFT_* environment and never destroyed (wlift_ctx_destroy ignores it). */
WLIFT_API int wlift_ctx_create(wlift_ctx **out, const wlift_ctx_opts *opts, wlift_diag *d);
WLIFT_API void wlift_ctx_destroy(wlift_ctx *ctx);

/* Change ctx's cache directory for the objects opened from now on (NULL or "": no cache;
 * checkpoints already open keep what they have). ctx NULL: the default context. Thread-safe.
 * 0, or -ENOMEM. */
WLIFT_API int wlift_ctx_set_cache_dir(wlift_ctx *ctx, const char *dir, wlift_diag *d);
/* Offline mode on (1) or off (0) for the objects opened from now on. Thread-safe. */
WLIFT_API void wlift_ctx_set_offline(wlift_ctx *ctx, int offline);
/* The bound on every collective wait of distributed loading, in seconds, as ctx resolved it
 * (WEIGHTLIFT_COMM_TIMEOUT, or its earlier name WEIGHTLIFT_DIST_TIMEOUT; 1 .. 86400, default
 * 300): wlift_comm's waits, and those of the Python exchange layer. NULL ctx: the default
 * context. 0 only when the default context cannot be made. Thread-safe. */
WLIFT_API unsigned wlift_ctx_comm_timeout(wlift_ctx *ctx);

/* One entry of the local cache (wlift_cache_list); the strings live for the callback. */
typedef struct wlift_cache_entry {
	const char *uri;            /* the remote object */
	const char *path;           /* its cached copy */
	const char *etag;           /* its identity when cached */
	uint64_t size;
	int64_t cached_at;          /* seconds since the epoch */
	int64_t used_at;            /* last use (what eviction orders by) */
} wlift_cache_entry;
/* Call fn for every complete entry of ctx's cache directory (dir NULL: ctx's), least
 * recently used first; a non-zero return from fn stops and is returned. The number of
 * entries, or a negative code (WLIFT_ECACHE when there is no cache directory). */
WLIFT_API int wlift_cache_list(wlift_ctx *ctx, const char *dir,
			       int (*fn)(const wlift_cache_entry *e, void *user), void *user,
			       wlift_diag *d);
/* Remove every entry (and the leftovers of crashed fills) of the cache directory (dir NULL:
 * ctx's), except those another process is filling now. The number removed, or a negative
 * code. */
WLIFT_API int wlift_cache_clear(wlift_ctx *ctx, const char *dir, wlift_diag *d);

/* ---------------------------------------------------------------------------------------
 * Checkpoints: one file, a sharded set (model.safetensors.index.json) or a directory.
 * wlift_open reads and strictly validates every header; no tensor data is read.
 * A checkpoint is immutable after open and may be used from several threads.
 * ------------------------------------------------------------------------------------- */
typedef struct wlift_ckpt wlift_ckpt;

typedef struct wlift_tensor_info {
	const char *name;
	wlift_dtype dtype;          /* stored dtype */
	uint32_t ndim;
	const uint64_t *shape;      /* ndim entries (NULL when ndim == 0) */
	uint64_t nbytes;            /* data_end - data_begin */
	uint32_t file;              /* index of the file holding it, see wlift_ckpt_file */
	uint64_t data_begin;        /* data_offsets[0] as in the header (relative to the data area) */
	uint64_t data_end;          /* data_offsets[1] */
	uint64_t file_offset;       /* absolute offset of the first byte within the file */
} wlift_tensor_info;

typedef struct wlift_file_info {
	const char *uri;            /* path or URI of the file */
	uint64_t size;              /* file size in bytes */
	uint64_t header_len;        /* N, the JSON header length */
	uint64_t data_offset;       /* 8 + N: where the data area starts */
	uint64_t ntensors;          /* tensors stored in this file */
} wlift_file_info;

/* Open a checkpoint: a path or file:// URI naming a .safetensors file, an index.json, or a
 * directory (loads what its index.json names if it has one, else every *.safetensors in name
 * order); an http(s):// URL of a file or of an index.json (its shards are fetched relative to
 * it; the server must support Range requests), or hf://org/repo[@revision]/path (the Hugging
 * Face hub, or HF_ENDPOINT). Later stages add s3://, gs://. docs/remote.md has the knobs. */
WLIFT_API int wlift_open(wlift_ctx *ctx, const char *uri, wlift_ckpt **out, wlift_diag *d);
/* Open a safetensors image held in memory (not copied: buf must outlive the checkpoint and
 * every result loaded from it). name is used in diagnostics. */
WLIFT_API int wlift_open_memory(wlift_ctx *ctx, const void *buf, size_t len, const char *name,
				wlift_ckpt **out, wlift_diag *d);
WLIFT_API void wlift_ckpt_close(wlift_ckpt *ck);

/* Tensors are numbered 0..count-1 in file order (file index, then data offset). */
WLIFT_API size_t wlift_ckpt_count(const wlift_ckpt *ck);
/* Fill info for tensor i; pointers stay valid while ck is open. -EINVAL if out of range. */
WLIFT_API int wlift_ckpt_info(const wlift_ckpt *ck, size_t i, wlift_tensor_info *info);
/* O(1) lookup by name: the tensor's index, or WLIFT_ENOTFOUND. */
WLIFT_API int64_t wlift_ckpt_find(const wlift_ckpt *ck, const char *name);
WLIFT_API size_t wlift_ckpt_nfiles(const wlift_ckpt *ck);
WLIFT_API int wlift_ckpt_file(const wlift_ckpt *ck, size_t i, wlift_file_info *info);
/* __metadata__ of file `file`: the number of entries, or -ENOENT when the header has none
 * (which differs from an empty __metadata__ object). Entries are in header order. */
WLIFT_API int wlift_ckpt_metadata_count(const wlift_ckpt *ck, size_t file);
WLIFT_API int wlift_ckpt_metadata(const wlift_ckpt *ck, size_t file, size_t i, const char **key,
				  const char **value);
/* Seconds spent in wlift_open. */
WLIFT_API double wlift_ckpt_open_seconds(const wlift_ckpt *ck);
/* Copy len raw bytes at offset off of file `file` of ck into buf (headers included; through
 * the file's source, so a remote file is read by range). 0, or a negative code (a range
 * beyond the end is WLIFT_ETRUNCATED). */
WLIFT_API int wlift_ckpt_read(const wlift_ckpt *ck, size_t file, uint64_t off, void *buf,
			      size_t len, wlift_diag *d);
/* Read a whole small object (a path or URI of any scheme, e.g. an index.json; through the
 * local cache like any remote object) into *buf (malloc'd, NUL-terminated; free with free()),
 * its length in *len. Objects over max bytes fail with -EFBIG. */
WLIFT_API int wlift_read_object(wlift_ctx *ctx, const char *uri, size_t max, char **buf,
				size_t *len, wlift_diag *d);

/* ---------------------------------------------------------------------------------------
 * Loading.
 * ------------------------------------------------------------------------------------- */
typedef struct wlift_result wlift_result;
typedef struct wlift_tensor wlift_tensor;
typedef struct wlift_comm wlift_comm; /* a communicator, see "Communicators" below */

enum wlift_strategy {
	WLIFT_STRATEGY_AUTO = 0,  /* decide per file from page-cache residency, fs type, size */
	WLIFT_STRATEGY_PREAD,     /* pread from a thread pool */
	WLIFT_STRATEGY_URING,     /* io_uring with a queue depth (falls back to pread if absent) */
};
enum wlift_direct {
	WLIFT_DIRECT_AUTO = 0,    /* O_DIRECT when the data is not in the page cache */
	WLIFT_DIRECT_ON,
	WLIFT_DIRECT_OFF,
};

/* GPU Direct Storage (wlift_load_opts.gds, CLI --gds, WEIGHTLIFT_GDS): local files read by
 * cuFile straight into device memory on GPU loads (docs/gpu.md). */
enum wlift_gds {
	WLIFT_GDS_DEFAULT = 0,    /* the context's value: WEIGHTLIFT_GDS, else auto */
	WLIFT_GDS_AUTO = 1,       /* cuFile in true GDS mode for files read with O_DIRECT (cold
				     local files): where GDS can beat the pinned ring; a cuFile
				     failure sends the rest of the load through the ring */
	WLIFT_GDS_ON = 2,         /* every local file through cuFile (compatibility mode too);
				     fails (WLIFT_ENODEV, WLIFT_ECUFILE, WLIFT_EUNSUPPORTED)
				     when it cannot */
	WLIFT_GDS_OFF = 3,        /* never */
};

enum wlift_mmap {
	WLIFT_MMAP_OFF = 0,       /* copy into owned host memory */
	WLIFT_MMAP_ON = 1,        /* views of a private mapping of each local file */
	WLIFT_MMAP_AUTO = 2,      /* mapped when the selected data of every file is mostly in the
				     page cache (a populated mapping is then nearly free), else copy
				     (O_DIRECT/io_uring reads beat page faults on a cold file) */
};

/* Called on the calling thread at least every 100 ms while a load runs, and once at the end.
 * Non-zero return cancels the load (WLIFT_ECANCELED). */
typedef int (*wlift_progress_fn)(uint64_t done_bytes, uint64_t total_bytes, void *user);
/* Called as each tensor's bytes have all landed, from any thread, possibly concurrently.
 * t is valid until wlift_result_free; it may be exported from here. Non-zero return cancels. */
typedef int (*wlift_ready_fn)(const wlift_tensor *t, void *user);

/* Tensor-parallel sharding (wlift_load_opts.shard): tensors whose name matches pattern (an
 * exact name or an fnmatch(3) glob; a rule naming the tensor exactly wins, else the first
 * glob that matches) are split along dim into
 * world_size blocks of ceil(n / world_size) entries (fastsafetensors' get_sharded: trailing
 * ranks may get short or empty blocks), and this rank loads only its block; dim -1 (and a
 * tensor no rule matches) means replicated: loaded whole. */
typedef struct wlift_shard_rule {
	const char *pattern;
	int dim;
} wlift_shard_rule;

/* Expert-parallel filter (wlift_load_opts.experts): a tensor whose name holds marker followed
 * by a decimal number and a dot ("experts." by default: "model.layers.3.mlp.experts.42.w1",
 * or a name starting "experts.42.") is routed expert 42's; it is loaded only when this rank
 * owns that expert. Every other tensor (attention, router, shared experts) is loaded on every
 * rank. The filter applies after names (an unowned expert named there is dropped too).
 * Placement: WLIFT_EXPERTS_BLOCK gives rank r of ep_size a contiguous block of nexperts /
 * ep_size experts, the remainder going one each to the lowest ranks (fastsafetensors'
 * owned_expert_range); WLIFT_EXPERTS_ROUND_ROBIN gives it experts e with e % ep_size == r;
 * owns, when set, decides instead (called from the loading thread, once per expert tensor).
 * nexperts 0: one more than the largest expert number in the checkpoint. ep_size 0: the
 * load's rank and world_size. An expert number >= nexperts is -EINVAL naming the tensor. */
enum wlift_expert_placement { WLIFT_EXPERTS_BLOCK = 0, WLIFT_EXPERTS_ROUND_ROBIN = 1 };
typedef struct wlift_expert_filter {
	const char *marker;          /* NULL: "experts." */
	unsigned nexperts;           /* 0: found in the checkpoint */
	int ep_rank, ep_size;        /* 0 <= ep_rank < ep_size <= WLIFT_MAX_WORLD; size 0: load's */
	int placement;               /* enum wlift_expert_placement */
	int (*owns)(unsigned expert, void *user); /* non-NULL: 1 owns, 0 not, < 0 fails */
	void *owns_user;
} wlift_expert_filter;

/* Leading-dimension rows [begin, end) of one tensor (wlift_load_opts.rows). */
typedef struct wlift_rows {
	uint64_t begin, end;
} wlift_rows;

/* A caller-supplied device allocator (wlift_load_opts.device_allocator). alloc gives bytes
 * of memory on CUDA device ordinal device, at least 256-byte aligned, in *ptr: 0, or a
 * negative code (WLIFT_EDEVMEM when out of memory). free gives back what alloc gave, once,
 * when the load fails or the last tensor of its result is gone, from any thread. One load
 * calls alloc at most once. The memory must be usable on the device's primary context
 * (what PyTorch and JAX use); the library writes it on streams of its own and synchronises
 * them before the load returns. */
typedef struct wlift_device_allocator {
	int (*alloc)(void *user, int device, size_t bytes, void **ptr);
	void (*free)(void *user, int device, void *ptr, size_t bytes);
	void *user;
} wlift_device_allocator;

typedef struct wlift_load_opts {
	size_t size;                 /* sizeof(wlift_load_opts) */
	const char *device;          /* NULL or "cpu"; "cuda" (= "cuda:0"), "cuda:N" */
	const char *const *names;    /* subset to load (only their bytes are read); NULL: all */
	size_t nnames;
	wlift_dtype dtype;           /* convert floating-point tensors to this (F32, F16 or
					BF16, from those and the F8 formats; other pairs are
					WLIFT_EUNSUPPORTED); NONE keeps */
	int strategy;                /* enum wlift_strategy */
	int direct;                  /* enum wlift_direct */
	int mmap;                    /* enum wlift_mmap: 0 copy into owned memory; 1 tensors are
					views of a private (copy-on-write) mapping of each local
					file, populated for reading; CPU only; 2 auto */
	unsigned threads;            /* 0: context value */
	size_t chunk_bytes;          /* 0: context value */
	size_t max_inflight_bytes;   /* 0: context value */
	int rank;                    /* with shard: this rank, 0 <= rank < world_size */
	int world_size;              /* 0 or 1: not distributed */
	wlift_progress_fn progress;  /* NULL: none */
	void *progress_user;
	/* Partial tensors: NULL loads whole tensors. Else rows[i] selects the leading-dimension
	 * rows [begin, end) of names[i] (names is then required; begin <= end <= shape[0]; the
	 * tensor must have ndim >= 1 and whole bytes per row; a name given twice must give the
	 * same rows). Only those rows' bytes are read, and the loaded tensor's view reports the
	 * loaded part: info.shape[0] = end - begin, info.nbytes, data_begin, data_end and
	 * file_offset of those rows. */
	const wlift_rows *rows;
	/* Sharding rules for rank of world_size (world_size >= 2). Along dim 0 a block is
	 * contiguous and only its bytes are read; along a later dim the block is a strided set
	 * of rows: the covering range is read and gathered in place (bytes_read reports it).
	 * The loaded view reports the block: info.shape[dim] and info.nbytes are the block's,
	 * data_begin/data_end/file_offset the covering range's. Not with rows for the same
	 * tensor, not in mapped mode for a dim > 0 block. */
	const wlift_shard_rule *shard;
	size_t nshard;
	/* GPU loads (device "cuda[:N]"): host memory stays at a ring of pinned staging buffers
	 * of ring_bytes in all, split into ring_slots buffers (the read unit is capped at one
	 * buffer). 0: the context's value (WEIGHTLIFT_CUDA_RING_BYTES, _SLOTS; default 128 MiB
	 * in 16). */
	size_t ring_bytes;
	unsigned ring_slots;
	/* GPU loads: a budget of device memory; a load that needs more fails before it reads
	 * (WLIFT_EDEVMEM, naming the bytes needed). 0: the context's value
	 * (WEIGHTLIFT_MAX_DEVICE_BYTES), else no budget but the device's own memory. */
	uint64_t max_device_bytes;
	/* GPU loads: the caller's allocator for the load's device memory (for example
	 * PyTorch's caching allocator), or NULL: the library's own (virtual memory management
	 * where the device supports it, so that dropping tensors returns their memory; else
	 * cuMemAlloc). */
	const struct wlift_device_allocator *device_allocator;
	/* Expert parallelism: load only the routed experts this rank owns (see
	 * wlift_expert_filter); NULL: all. */
	const wlift_expert_filter *experts;
	/* GPU loads: GPU Direct Storage, enum wlift_gds (0: the context's, WEIGHTLIFT_GDS). */
	int gds;
	/* The exchange (docs/distributed.md): NULL, or a communicator (wlift_comm_mpi for host
	 * destinations, wlift_comm_nccl for "cuda:N") over which the ranks of one job share
	 * their reads. Collective: every rank of the communicator calls wlift_load with the
	 * same checkpoint and options (rank and world_size 0, or the communicator's). Without
	 * shard rules (file mode) every selected tensor is read by one rank (contiguous runs
	 * in file order balanced by bytes) and broadcast: each rank ends with every tensor,
	 * the ranks together read each byte once. With shard rules each rank reads its own
	 * blocks of the split tensors and the replicated tensors are read once (balanced the
	 * same way) and broadcast. Before any read the ranks compare a digest of their files,
	 * selection and rules (a mismatch or a rank's failure fails every rank, WLIFT_ECOMM
	 * naming it); after the reads every rank reports success or its error. Copy mode
	 * only (mmap on is WLIFT_EUNSUPPORTED; auto copies); not with experts. */
	wlift_comm *comm;
} wlift_load_opts;
#define WLIFT_LOAD_OPTS_INIT { .size = sizeof(wlift_load_opts) }

typedef struct wlift_stats {
	uint64_t bytes;              /* tensor bytes delivered */
	uint64_t bytes_read;         /* bytes read from sources (>= bytes with O_DIRECT rounding) */
	double seconds;              /* wall time of wlift_load */
	double gb_per_s;             /* bytes / seconds / 1e9 */
	double open_s;               /* time in wlift_open */
	double plan_s;               /* time planning */
	double read_s;               /* time reading (engine run) */
	const char *strategy;        /* "pread", "uring", "mmap", "memory", ... (static string) */
	int direct;                  /* 1 if O_DIRECT was used for any file */
	unsigned threads;
	size_t chunk_bytes;
	uint64_t fixups;             /* tensors moved in place after an O_DIRECT read to align */
	uint64_t fixup_bytes;
	const char *gds;             /* GPU Direct Storage: "cufile" (reads by cuFile in true GDS
					mode), "compat" (cuFile in compatibility mode), "off" (none) */
	uint64_t gds_bytes;          /* bytes read by cuFile */
	uint64_t gds_fallbacks;      /* cuFile failures whose reads went through the ring */
	/* Remote sources (HTTP, S3, GCS; docs/remote.md), counted on the checkpoint's sources
	 * during this load (concurrent loads of one checkpoint count each other's): */
	uint64_t retries;            /* requests made again after a transient failure */
	uint64_t hedges;             /* hedged requests started */
	uint64_t hedges_won;         /* hedges whose answer was taken */
	uint64_t bytes_rerequested;  /* bytes of the ranges asked again (retries and hedges) */
	uint64_t fixed_reads;        /* GPU loads: io_uring reads into the pinned ring registered
					as fixed buffers (WEIGHTLIFT_URING_FIXED) */
	uint64_t bytes_received;     /* loads with a communicator: tensor bytes this rank got
					from the others (bytes_read counts its own reads) */
} wlift_stats;

/* Load tensors of ck (all, or opts->names) into the destination device. On success *out
 * holds the result (free with wlift_result_free). On failure everything allocated is freed
 * and *out is NULL. ready may be NULL. The result keeps ck's data sources alive as needed;
 * ck may be closed before the result is freed. */
WLIFT_API int wlift_load(wlift_ckpt *ck, const wlift_load_opts *opts, wlift_ready_fn ready,
			 void *ready_user, wlift_result **out, wlift_diag *d);

/* Budget-sized groups (GPU loads whose tensors together exceed the device memory one may
 * use at once). The tensors opts selects (opts->names in the order given, else every tensor
 * in file order) are cut into consecutive groups whose device memory fits budget bytes
 * (0: opts->max_device_bytes, else WEIGHTLIFT_MAX_DEVICE_BYTES; all 0 is -EINVAL): each
 * tensor counts its bytes rounded up to the 256-byte device alignment, plus its converted
 * copy when opts->dtype widens it. A tensor that alone does not fit is WLIFT_EDEVMEM naming
 * it and the bytes it needs. */

/* The groups: ends[g] is one past the position (in the selection) of group g's last tensor,
 * for the first max groups. Returns the number of groups (which may exceed max), or a
 * negative code. */
WLIFT_API int wlift_budget_groups(wlift_ckpt *ck, const wlift_load_opts *opts, uint64_t budget,
				  size_t *ends, size_t max, wlift_diag *d);

/* Receives group g's result (the caller's to free with wlift_result_free) once all of its
 * tensors have landed. Non-zero stops: no further group is loaded (WLIFT_ECANCELED). */
typedef int (*wlift_group_fn)(wlift_result *r, size_t group, void *user);

/* Load the groups one after another with opts (and opts->max_device_bytes = the budget):
 * ready fires for each tensor as it lands, in any order within a group, the groups in order;
 * a group's device memory is allocated only when the group before it has been handed to
 * group (NULL: its result is freed at once, so only tensors exported from ready, e.g. with
 * wlift_tensor_dlpack, stay). A consumer that frees or moves each group's tensors before
 * the next group needs no more than the budget of device memory at once. A group the
 * load's exact check refuses (O_DIRECT block rounding beyond the estimate and its margin
 * of one range's rounding) is made smaller and retried; nothing is read for a refused
 * group. Returns the number of groups, or the first
 * error (earlier groups stay delivered). Not with opts->rows. */
WLIFT_API int wlift_load_groups(wlift_ckpt *ck, const wlift_load_opts *opts, uint64_t budget,
				wlift_ready_fn ready, void *ready_user, wlift_group_fn group,
				void *group_user, wlift_diag *d);

/* ---------------------------------------------------------------------------------------
 * Communicators (the exchange seam of distributed loading, docs/distributed.md): ranks of
 * one job moving bytes between them. Backends are loaded at run time, never linked: NCCL
 * (dlopen of the library WEIGHTLIFT_NCCL_LIBRARY names, else "libnccl.so.2"; device
 * buffers, the current device's primary context) and MPI (dlopen of Open MPI's
 * "libmpi.so.40", or WEIGHTLIFT_MPI_LIBRARY; host buffers). Every wait is bounded by the context's
 * comm timeout (wlift_ctx_comm_timeout, WEIGHTLIFT_COMM_TIMEOUT seconds, default 300): a
 * peer that never arrives is WLIFT_ECOMM on the others (the communicator is then aborted and
 * only good for destroy).
 * A communicator is used by one thread at a time.
 * ------------------------------------------------------------------------------------- */
#define WLIFT_COMM_ID_BYTES 128

/* A new unique id (NCCL's ncclUniqueId) for wlift_comm_nccl: created on one rank and given
 * to every rank by the caller (a file, a socket, an MPI or torch broadcast). 0, or
 * WLIFT_ENODEV when NCCL cannot be loaded, WLIFT_ECOMM when it fails. */
WLIFT_API int wlift_comm_nccl_id(wlift_ctx *ctx, uint8_t id[WLIFT_COMM_ID_BYTES],
				 wlift_diag *d);
/* Join the NCCL communicator of id as rank of nranks on CUDA device `device` (its primary
 * context is made current around every call). Blocks until every rank has joined (bounded by
 * the comm timeout). */
WLIFT_API int wlift_comm_nccl(wlift_ctx *ctx, const uint8_t id[WLIFT_COMM_ID_BYTES], int rank,
			      int nranks, int device, wlift_comm **out, wlift_diag *d);
/* Join MPI_COMM_WORLD of the job mpirun launched (MPI_Init_thread, MPI_THREAD_SERIALIZED,
 * when the process has not initialised MPI itself; the last communicator destroyed then
 * finalizes it, after which MPI cannot start again in the process). Rank and size are the
 * job's. WLIFT_ENODEV when Open MPI's library cannot be loaded, the process was not started
 * by mpirun, or MPI was finalized; WLIFT_ECOMM when MPI fails. A broadcast that times out
 * or fails leaves the communicator broken, and destroying a broken MPI communicator ends
 * the job (MPI_Abort: MPI cannot cancel a collective its peers still wait in). */
WLIFT_API int wlift_comm_mpi(wlift_ctx *ctx, wlift_comm **out, wlift_diag *d);
WLIFT_API int wlift_comm_rank(const wlift_comm *c);
WLIFT_API int wlift_comm_size(const wlift_comm *c);
/* Broadcast len bytes at buf from root to every rank's buf (device memory for NCCL).
 * Collective: every rank calls it with the same len and root. 0, or WLIFT_ECOMM naming the
 * backend's error (a peer gone, a timeout), -EINVAL for bad arguments. */
WLIFT_API int wlift_comm_broadcast(wlift_comm *c, void *buf, uint64_t len, int root,
				   wlift_diag *d);
/* This rank has failed and will not take part in further collectives: tell the peers, so
 * that they do not wait out the timeout (NCCL: ncclCommAbort, the peers' next collective
 * fails; MPI: MPI_Abort with code, which ends every rank of the job, this one included).
 * The communicator is then only good for destroy. */
WLIFT_API void wlift_comm_abort(wlift_comm *c, int code);
/* Leave and free the communicator (NULL: nothing). */
WLIFT_API void wlift_comm_destroy(wlift_comm *c);

/* Results are reference counted: wlift_result_free drops the caller's reference; DLPack
 * exports hold their own until their deleter runs. Thread-safe. */
WLIFT_API void wlift_result_free(wlift_result *r);
WLIFT_API size_t wlift_result_count(const wlift_result *r);
/* i-th loaded tensor, in file order; NULL if out of range. */
WLIFT_API const wlift_tensor *wlift_result_tensor(const wlift_result *r, size_t i);
/* By name, O(1); NULL if not loaded. */
WLIFT_API const wlift_tensor *wlift_result_find(const wlift_result *r, const char *name);
WLIFT_API int wlift_result_stats(const wlift_result *r, wlift_stats *s);

typedef struct wlift_tensor_view {
	wlift_tensor_info info;      /* as in the checkpoint (info.dtype is the stored dtype) */
	wlift_dtype dtype;           /* dtype of the bytes at data (after any conversion) */
	uint64_t nbytes;             /* bytes at data */
	void *data;                  /* host or device address; may be NULL when nbytes == 0 */
	int device;                  /* -1: CPU; >= 0: CUDA ordinal */
	int readonly;                /* 1 when the memory must not be written */
} wlift_tensor_view;
WLIFT_API void wlift_tensor_get(const wlift_tensor *t, wlift_tensor_view *v);

/* ---------------------------------------------------------------------------------------
 * DLPack 1.x structs, defined here from the DLPack specification (prefixed so that they never
 * clash with a dlpack.h the user includes; the layouts are identical).
 * ------------------------------------------------------------------------------------- */
typedef struct wlift_dl_version { uint32_t major, minor; } wlift_dl_version;
enum { WLIFT_DL_CPU = 1, WLIFT_DL_CUDA = 2, WLIFT_DL_CUDA_HOST = 3 };
enum {
	WLIFT_DL_INT = 0, WLIFT_DL_UINT = 1, WLIFT_DL_FLOAT = 2, WLIFT_DL_OPAQUE = 3,
	WLIFT_DL_BFLOAT = 4, WLIFT_DL_COMPLEX = 5, WLIFT_DL_BOOL = 6,
	WLIFT_DL_FLOAT8_E3M4 = 7, WLIFT_DL_FLOAT8_E4M3 = 8, WLIFT_DL_FLOAT8_E4M3B11FNUZ = 9,
	WLIFT_DL_FLOAT8_E4M3FN = 10, WLIFT_DL_FLOAT8_E4M3FNUZ = 11, WLIFT_DL_FLOAT8_E5M2 = 12,
	WLIFT_DL_FLOAT8_E5M2FNUZ = 13, WLIFT_DL_FLOAT8_E8M0FNU = 14, WLIFT_DL_FLOAT6_E2M3FN = 15,
	WLIFT_DL_FLOAT6_E3M2FN = 16, WLIFT_DL_FLOAT4_E2M1FN = 17,
};
typedef struct wlift_dl_device { int32_t device_type; int32_t device_id; } wlift_dl_device;
typedef struct wlift_dl_dtype { uint8_t code; uint8_t bits; uint16_t lanes; } wlift_dl_dtype;
typedef struct wlift_dl_tensor {
	void *data;
	wlift_dl_device device;
	int32_t ndim;
	wlift_dl_dtype dtype;
	int64_t *shape;
	int64_t *strides;            /* NULL: compact row-major */
	uint64_t byte_offset;
} wlift_dl_tensor;
typedef struct wlift_dl_managed {           /* DLManagedTensor (legacy, capsule "dltensor") */
	wlift_dl_tensor dl_tensor;
	void *manager_ctx;
	void (*deleter)(struct wlift_dl_managed *self);
} wlift_dl_managed;
#define WLIFT_DL_FLAG_READ_ONLY (1ULL << 0)
#define WLIFT_DL_FLAG_IS_COPIED (1ULL << 1)
typedef struct wlift_dl_managed_versioned { /* DLManagedTensorVersioned ("dltensor_versioned") */
	wlift_dl_version version;
	void *manager_ctx;
	void (*deleter)(struct wlift_dl_managed_versioned *self);
	uint64_t flags;
	wlift_dl_tensor dl_tensor;
} wlift_dl_managed_versioned;

/* Export flags. */
#define WLIFT_DLPACK_BYTES 1u  /* export as a 1-D uint8 tensor of the raw bytes (for dtypes
				  that the consumer has no code for; view it as the dtype) */
/* Zero-copy export of t. The export holds a reference on the result; call its deleter
 * exactly once. Sub-byte and float8 dtypes get the DLPack 1.1 codes; use WLIFT_DLPACK_BYTES
 * for consumers that lack them. */
WLIFT_API int wlift_tensor_dlpack(const wlift_tensor *t, unsigned flags, wlift_dl_managed **out,
				  wlift_diag *d);
WLIFT_API int wlift_tensor_dlpack_versioned(const wlift_tensor *t, unsigned flags,
					    wlift_dl_managed_versioned **out, wlift_diag *d);

/* ---------------------------------------------------------------------------------------
 * Writing: byte-identical to the reference writer (same tensor ordering, header layout and
 * padding) for the same tensors and metadata.
 * ------------------------------------------------------------------------------------- */
typedef struct wlift_save_tensor {
	const char *name;
	wlift_dtype dtype;
	uint32_t ndim;
	const uint64_t *shape;
	const void *data;            /* nbytes bytes, host memory */
	uint64_t nbytes;
} wlift_save_tensor;

/* Serialise into a malloc'd buffer (*buf, *len; free with free()). meta holds nmeta key/value
 * pairs as meta[2*i], meta[2*i+1]; meta NULL and nmeta 0 for none. */
WLIFT_API int wlift_save_memory(const wlift_save_tensor *t, size_t n, const char *const *meta,
				size_t nmeta, void **buf, size_t *len, wlift_diag *d);
/* Write to path: written to a temporary file in the same directory, fsync'd, then renamed
 * over path, so a reader of the old file is never disturbed and no partial file is left. */
WLIFT_API int wlift_save(const char *path, const wlift_save_tensor *t, size_t n,
			 const char *const *meta, size_t nmeta, wlift_diag *d);

#ifdef __cplusplus
}
#endif
#endif /* WEIGHTLIFT_H */
