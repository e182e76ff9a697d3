/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Internal helpers shared by every part of the library: diagnostics, logging, context knobs,
 * time. Depends on nothing but libc and the public header.
 */
#ifndef WLIFT_COMMON_H
#define WLIFT_COMMON_H

#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "common/tunables.h"
#include "weightlift.h"

#define WLIFT_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define WLIFT_UNUSED(x) ((void)(x))

/* Record the first error of a call in d (no-op if d is NULL or already holds an error).
 * file, tensor and rule may be NULL; offset < 0 means no offset. Returns code so that callers
 * can write `return wlift__diag_set(...)`. */
int wlift__diag_set(wlift_diag *d, int code, const char *file, const char *tensor,
		    int64_t offset, const char *rule, const char *fmt, ...)
	__attribute__((format(printf, 7, 8)));
int wlift__diag_vset(wlift_diag *d, int code, const char *file, const char *tensor,
		     int64_t offset, const char *rule, const char *fmt, va_list ap);

/* The context: every knob resolved once at creation (explicit option > WEIGHTLIFT_*
 * environment variable > default), so that no other part of the library reads the
 * environment. */
struct wlift_ctx {
	unsigned threads;
	size_t chunk_bytes;
	size_t max_inflight_bytes;
	int populate;      /* WEIGHTLIFT_POPULATE: 1 pre-fault host arenas before reading, 0 never,
			      -1 (unset) fault them in on a thread of their own while remote
			      sources fill them */
	int hugepage;      /* WEIGHTLIFT_HUGEPAGE (0/1, default 1): advise host arenas
			      MADV_HUGEPAGE (sink/host.c) */
	int disable_uring; /* WEIGHTLIFT_DISABLE_URING=1: never use io_uring */
	int uring_fixed;   /* WEIGHTLIFT_URING_FIXED (0/1): register a GPU load's pinned ring
			      with its io_uring readers as fixed buffers */
	/* Remote (HTTP) sources: */
	unsigned http_requests;	    /* requests in flight per load */
	unsigned http_connect_s;    /* WEIGHTLIFT_HTTP_CONNECT_TIMEOUT: seconds to connect */
	unsigned http_stall_s;	    /* WEIGHTLIFT_HTTP_STALL_TIMEOUT: a transfer slower than
				       WLIFT_HTTP_STALL_RATE for this long fails */
	char *http_token;	    /* bearer token for every http(s) request, or NULL */
	char *hf_token;		    /* HF_TOKEN: for the Hugging Face endpoint only, or NULL */
	char *hf_endpoint;	    /* HF_ENDPOINT, or NULL: WLIFT_HF_ENDPOINT */
	char *ca_bundle;	    /* WEIGHTLIFT_CA_BUNDLE, CURL_CA_BUNDLE or SSL_CERT_FILE */
	unsigned http_retries;	    /* WEIGHTLIFT_HTTP_RETRIES: more attempts per read */
	unsigned http_retry_base_ms; /* WEIGHTLIFT_HTTP_RETRY_BASE_MS: first backoff */
	unsigned http_retry_max_ms; /* WEIGHTLIFT_HTTP_RETRY_MAX_MS: backoff and Retry-After cap */
	unsigned http_hedge;	    /* WEIGHTLIFT_HTTP_HEDGE: hedge factor (0: off) */
	int http_adaptive;
	int http_full_download;	    /* WEIGHTLIFT_HTTP_FULL_DOWNLOAD / http_full_download: read
				       servers without Range support by whole-object GETs */	    /* WEIGHTLIFT_HTTP_ADAPTIVE (default 1): adaptive concurrency */
	uint64_t max_rate;	    /* WEIGHTLIFT_MAX_RATE: bytes/s over all remote transfers of
				       this context (0: no cap) */
	struct wlift__rate *rate;   /* the bucket of max_rate, or NULL */
	struct wlift__gate *gate;   /* the adaptive concurrency limit of its remote loads */
	/* GCS (gs://) sources (src/source/gcs_auth.h has the credential order): */
	char *gcs_token;	    /* WEIGHTLIFT_GCS_TOKEN, else GOOGLE_OAUTH_ACCESS_TOKEN */
	const char *gcs_token_env;  /* the variable it came from (static), or NULL */
	char *gcs_credentials;	    /* GOOGLE_APPLICATION_CREDENTIALS: a key file, or NULL */
	char *gcs_adc_file;	    /* gcloud's application_default_credentials.json path */
	char *gcs_emulator;	    /* STORAGE_EMULATOR_HOST, or NULL */
	char *gcs_metadata_host;    /* GCE_METADATA_HOST, else GCE_METADATA_IP, or NULL */
	int gcs_anonymous;	    /* WEIGHTLIFT_GCS_ANONYMOUS=1: never send a token */
	/* s3:// sources (AWS's own variables, AWS_*, are read where they are used, as boto3
	 * does: credentials and profiles change under a long-lived process): */
	char *s3_region;	    /* option s3_region or WEIGHTLIFT_S3_REGION, or NULL */
	int s3_unsigned;	    /* option s3_unsigned or WEIGHTLIFT_S3_UNSIGNED=1 */
	int s3_addressing;	    /* WEIGHTLIFT_S3_ADDRESSING: 0 auto, 1 path, 2 virtual */
	unsigned s3_list_max;	    /* WEIGHTLIFT_S3_LIST_MAX_KEYS: keys per listing page */
	char *cuda_library; /* WEIGHTLIFT_CUDA_LIBRARY: the CUDA driver to load (NULL: libcuda.so.1) */
	char *cufile_library; /* WEIGHTLIFT_CUFILE_LIBRARY: cuFile to load (NULL: libcufile.so.0) */
	int gds;	      /* WEIGHTLIFT_GDS: enum wlift_gds (auto, on, off; never DEFAULT) */
	unsigned gds_batch;   /* WEIGHTLIFT_GDS_BATCH: requests per cuFile batch (0: none) */
	size_t ring_bytes;  /* WEIGHTLIFT_CUDA_RING_BYTES (0: default; range-checked per load) */
	unsigned ring_slots; /* WEIGHTLIFT_CUDA_RING_SLOTS (0: default) */
	uint64_t max_device_bytes; /* WEIGHTLIFT_MAX_DEVICE_BYTES (0: none) */
	unsigned ring_keep_s;	   /* WEIGHTLIFT_CUDA_RING_KEEP_S: a ring kept idle (0: never) */
	char *sysfs_root;	   /* WEIGHTLIFT_SYSFS_ROOT: where sysfs is (NULL: /sys; tests) */
	/* One object kept between loads (keep.c): a GPU sink's pinned ring. */
	pthread_mutex_t kept_mu;
	pthread_cond_t kept_cv;
	pthread_t kept_thread; /* frees it after ring_keep_s idle; started with the first keep */
	int kept_started, kept_stop;
	void *kept;
	void (*kept_free)(void *obj);
	struct timespec kept_deadline;
	/* The local cache of remote objects (src/source/cache.c): */
	pthread_mutex_t cache_mu; /* cache_dir and offline change at run time */
	char *cache_dir;	  /* opts->cache_dir or WEIGHTLIFT_CACHE_DIR; NULL: none */
	int offline;		  /* opts->offline or WEIGHTLIFT_OFFLINE */
	uint64_t cache_max_bytes; /* WEIGHTLIFT_CACHE_MAX_BYTES (0: no limit) */
	int cache_fill_full;	  /* WEIGHTLIFT_CACHE_FILL=full */
	int cache_direct;	  /* WEIGHTLIFT_CACHE_DIRECT (0/1, default 1): O_DIRECT cache
				     writes (source/cache.c) */
	size_t shard_piece_min; /* WEIGHTLIFT_SHARD_PIECE_MIN: strided shard pieces read alone */
	char *nccl_library;	/* WEIGHTLIFT_NCCL_LIBRARY (NULL: libnccl.so.2) */
	char *mpi_library;	/* WEIGHTLIFT_MPI_LIBRARY (NULL: libmpi.so.40) */
	unsigned comm_timeout_s; /* WEIGHTLIFT_COMM_TIMEOUT: every collective wait */
	wlift_log_fn log;
	void *log_user;
	int log_level;
};

/* The process-wide default context, used wherever the caller passed a NULL ctx: created on
 * first use from the environment, never destroyed. NULL only if that allocation failed. */
wlift_ctx *wlift__ctx_default(void);
/* ctx, or the default context when ctx is NULL. */
static inline wlift_ctx *wlift__ctx_or_default(wlift_ctx *ctx)
{
	return ctx ? ctx : wlift__ctx_default();
}

/* Keep obj (freed with free_fn) in ctx for a later load: the previous object is freed; obj
 * is freed when ctx is destroyed or after ctx->ring_keep_s seconds unused. 0, or -errno
 * (not kept: the caller frees it). */
int wlift__ctx_keep(wlift_ctx *ctx, void *obj, void (*free_fn)(void *obj));
/* Take back the kept object if it was kept with free_fn (the caller owns it now), or NULL. */
void *wlift__ctx_take_kept(wlift_ctx *ctx, void (*free_fn)(void *obj));
/* At context destruction: stop the keeper thread and free what is kept. */
void wlift__ctx_keep_destroy(wlift_ctx *ctx);

/* A copy of ctx's cache directory (NULL: none) and its offline switch and size limit, read
 * together. 0 or -ENOMEM. */
int wlift__ctx_cache(wlift_ctx *ctx, char **dir, int *offline, uint64_t *max_bytes);

void wlift__log(const wlift_ctx *ctx, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Parse a size with optional K/M/G suffix (binary) from the environment variable name.
 * Returns 1 and sets *out if set and valid, 0 if unset, -EINVAL if malformed. */
int wlift__env_size(const char *name, uint64_t *out);
/* Returns 1 and sets *out to a string from the environment if set and non-empty, else 0. */
int wlift__env_str(const char *name, const char **out);
/* Parse "123", "4k", "8M", "1G" (binary multiples). 0 on success, -EINVAL otherwise. */
int wlift__parse_size(const char *s, uint64_t *out);

/* A token bucket shared by threads (rate.c): the context's bandwidth cap. */
struct wlift__rate;
int wlift__rate_create(uint64_t bytes_per_s, struct wlift__rate **out);
void wlift__rate_destroy(struct wlift__rate *r);
/* Take n bytes that arrived: 0 when taken, else the seconds until the bucket's debt is
 * repaid (nothing taken; pause until then). Thread-safe. */
double wlift__rate_take(struct wlift__rate *r, size_t n);
/* The seconds until bytes may be taken again (0: now). Thread-safe. */
double wlift__rate_wait(struct wlift__rate *r);

/* An adaptive concurrency limit shared by threads (gate.c): the context's remote read queues
 * together keep at most `limit` requests active; see gate.c for the rules. A member is a read
 * queue (its storage is the caller's, alive from join to leave). */
struct wlift__gate;
struct wlift__gate_member {
	struct wlift__gate_member *next;
	unsigned depth;		/* the queue's most requests in flight */
	void (*wake)(void *); /* called (thread-safe) when a place it wanted is given back */
	void *arg;
	int wants; /* it found no free place (under the gate's lock) */
};
int wlift__gate_create(unsigned start, double gain, struct wlift__gate **out);
void wlift__gate_destroy(struct wlift__gate *g);
void wlift__gate_join(struct wlift__gate *g, struct wlift__gate_member *m, unsigned depth,
		      void (*wake)(void *), void *arg);
void wlift__gate_leave(struct wlift__gate *g, struct wlift__gate_member *m);
/* 1 when a place was taken (give it back with put), else 0: m is woken when one frees. */
int wlift__gate_take(struct wlift__gate *g, struct wlift__gate_member *m);
void wlift__gate_put(struct wlift__gate *g);
/* A read of n bytes completed: the new limit when this ended a round that grew it (*tput:
 * that round's bytes/s), else 0. */
unsigned wlift__gate_done(struct wlift__gate *g, uint64_t n, double now, double *tput);
/* The server asked to slow down: the halved limit, or 0 when no read completed since the
 * last halving (a burst of such answers halves once). */
unsigned wlift__gate_slow(struct wlift__gate *g, double now);
/* The limit, the sum of the members' depths, the most places taken at once this load. */
void wlift__gate_state(struct wlift__gate *g, unsigned *limit, unsigned *max, unsigned *peak);

/* Monotonic seconds. */
double wlift__now(void);

/* FNV-1a over n more bytes into *h (64-bit prime; the caller chooses the start). */
static inline void wlift__fnv1a(uint64_t *h, const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		*h = (*h ^ b[i]) * 1099511628211ull;
}

/* FNV-1a of a C string: name tables (checkpoint index, header duplicates), cache keys. Its
 * start is not FNV's offset basis (a digit short), kept so that cache entry names stay. */
static inline uint64_t wlift__hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	for (; *s; s++)
		wlift__fnv1a(&h, s, 1);
	return h;
}

/* Overflow-checked arithmetic: 0 on success, -EOVERFLOW on overflow. */
static inline int wlift__mul_u64(uint64_t a, uint64_t b, uint64_t *out)
{
	return __builtin_mul_overflow(a, b, out) ? -75 /* EOVERFLOW */ : 0;
}
static inline int wlift__add_u64(uint64_t a, uint64_t b, uint64_t *out)
{
	return __builtin_add_overflow(a, b, out) ? -75 : 0;
}

#endif
