/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The context: resolved knobs (explicit option > WEIGHTLIFT_* environment > default), the
 * log callback, and small shared utilities (environment parsing, clock).
 */
#include <errno.h>
#include <stddef.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "source/http.h"

double wlift__now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int wlift__parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	uint64_t mult = 1;

	if (!s || !*s || *s == '-')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	switch (*end) {
	case '\0':
		break;
	case 'k': case 'K': mult = 1ull << 10; end++; break;
	case 'm': case 'M': mult = 1ull << 20; end++; break;
	case 'g': case 'G': mult = 1ull << 30; end++; break;
	default:
		return -EINVAL;
	}
	if (*end == 'i' || *end == 'I')
		end++;
	if (*end == 'b' || *end == 'B')
		end++;
	if (*end != '\0')
		return -EINVAL;
	if (wlift__mul_u64(v, mult, out))
		return -EINVAL;
	return 0;
}

int wlift__env_str(const char *name, const char **out)
{
	const char *v = getenv(name);

	if (!v || !*v)
		return 0;
	*out = v;
	return 1;
}

int wlift__env_size(const char *name, uint64_t *out)
{
	const char *v;

	if (!wlift__env_str(name, &v))
		return 0;
	if (wlift__parse_size(v, out))
		return -EINVAL;
	return 1;
}

void wlift__log(const wlift_ctx *ctx, int level, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	if (!ctx || !ctx->log || level > ctx->log_level)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	ctx->log(ctx->log_user, level, buf);
}

/* A boolean environment switch: set, non-empty and not "0". */
static int env_flag(const char *name)
{
	const char *v;

	return wlift__env_str(name, &v) && strcmp(v, "0") != 0;
}

/* A 0/1 environment switch: unset is def, anything but "0" or "1" an error naming it. */
static int env01(const char *name, int def, int *out, wlift_diag *d)
{
	const char *v;

	*out = def;
	if (!wlift__env_str(name, &v))
		return 0;
	if (strcmp(v, "0") && strcmp(v, "1"))
		return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "config.env",
				       "environment variable %s must be 0 or 1", name);
	*out = v[0] - '0';
	return 0;
}

/* Resolve one size knob: explicit value (field), else environment, else default; values
 * above max are errors naming where they came from. */
static int knob(size_t explicit_v, const char *field, const char *env, size_t def,
		uint64_t max, size_t *out, wlift_diag *d)
{
	uint64_t v;
	int ret;

	if (explicit_v) {
		if (explicit_v > max)
			return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "config.range",
					       "wlift_ctx_opts.%s = %zu is out of range (0 .. %llu)",
					       field, explicit_v, (unsigned long long)max);
		*out = explicit_v;
		return 0;
	}
	ret = wlift__env_size(env, &v);
	if (ret < 0)
		return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "config.env",
				       "environment variable %s is not a valid size", env);
	if (ret == 1 && v > max)
		return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "config.env",
				       "environment variable %s = %llu is out of range (0 .. %llu)",
				       env, (unsigned long long)v, (unsigned long long)max);
	*out = ret == 1 && v ? (size_t)v : def;
	return 0;
}

/* Whether the caller's options struct (of opts->size bytes) has field f. */
#define OPT_HAS(o, f) ((o)->size >= offsetof(wlift_ctx_opts, f) + sizeof((o)->f))

/* A copy of the explicit string, else of the first environment variable that is set. 0, or
 * -ENOMEM. */
static int str_knob(const char *explicit_v, const char *const *envs, size_t nenv, char **out)
{
	const char *v = explicit_v && *explicit_v ? explicit_v : NULL;

	for (size_t i = 0; !v && i < nenv; i++)
		wlift__env_str(envs[i], &v);
	*out = NULL;
	if (!v)
		return 0;
	*out = strdup(v);
	return *out ? 0 : -ENOMEM;
}

/* s3:// sources: the region option, unsigned requests, addressing style, listing page size. */
static int s3_knobs(wlift_ctx *ctx, const wlift_ctx_opts *opts, wlift_diag *d)
{
	static const char *const region_env[] = { "WEIGHTLIFT_S3_REGION" };
	const char *a = NULL;
	size_t v = 0;
	int ret;

	if (str_knob(OPT_HAS(opts, s3_region) ? opts->s3_region : NULL, region_env, 1,
		     &ctx->s3_region))
		return wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
	ret = knob(OPT_HAS(opts, s3_unsigned) && opts->s3_unsigned ? (size_t)opts->s3_unsigned : 0,
		   "s3_unsigned", "WEIGHTLIFT_S3_UNSIGNED", 0, 1, &v, d);
	if (ret)
		return ret;
	ctx->s3_unsigned = (int)v;
	ret = knob(0, "s3_list_max_keys", "WEIGHTLIFT_S3_LIST_MAX_KEYS", WLIFT_S3_LIST_MAX_KEYS,
		   WLIFT_S3_LIST_MAX_KEYS, &v, d);
	if (ret)
		return ret;
	ctx->s3_list_max = (unsigned)v;
	ctx->s3_addressing = 0;
	if (wlift__env_str("WEIGHTLIFT_S3_ADDRESSING", &a)) {
		if (strcmp(a, "path") == 0)
			ctx->s3_addressing = 1;
		else if (strcmp(a, "virtual") == 0)
			ctx->s3_addressing = 2;
		else if (strcmp(a, "auto") != 0)
			return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "config.env",
					       "environment variable WEIGHTLIFT_S3_ADDRESSING = %s "
					       "is not one of auto, path, virtual",
					       a);
	}
	return 0;
}

/* The remote sources' knobs. */
static int remote_knobs(wlift_ctx *ctx, const wlift_ctx_opts *opts, wlift_diag *d)
{
	static const char *const token_env[] = { "WEIGHTLIFT_HTTP_TOKEN" };
	/* The Hugging Face hub client's names, newest first. */
	static const char *const hf_env[] = { "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN" };
	static const char *const ep_env[] = { "HF_ENDPOINT" };
	/* curl's tool reads CURL_CA_BUNDLE; OpenSSL's default paths SSL_CERT_FILE (libcurl sets
	 * its own bundle path, so neither reaches it unless passed on). */
	static const char *const ca_env[] = { "WEIGHTLIFT_CA_BUNDLE", "CURL_CA_BUNDLE",
					      "SSL_CERT_FILE" };
	size_t v = 0;
	int ret;

	ret = knob(OPT_HAS(opts, http_requests) ? opts->http_requests : 0, "http_requests",
		   "WEIGHTLIFT_HTTP_REQUESTS", WLIFT_HTTP_DEFAULT_REQUESTS, WLIFT_MAX_HTTP_REQUESTS,
		   &v, d);
	if (ret)
		return ret;
	ctx->http_requests = (unsigned)v;
	ret = knob(0, "http_connect_timeout", "WEIGHTLIFT_HTTP_CONNECT_TIMEOUT",
		   WLIFT_HTTP_CONNECT_S, WLIFT_HTTP_MAX_TIMEOUT_S, &v, d);
	if (ret)
		return ret;
	ctx->http_connect_s = (unsigned)v;
	ret = knob(0, "http_stall_timeout", "WEIGHTLIFT_HTTP_STALL_TIMEOUT", WLIFT_HTTP_STALL_S,
		   WLIFT_HTTP_MAX_TIMEOUT_S, &v, d);
	if (ret)
		return ret;
	ctx->http_stall_s = (unsigned)v;
	/* Retries and hedging: 0 is a value of its own here (no retries, no hedging), so an
	 * unset variable is told apart from "0". */
	{
		const struct {
			const char *env;
			unsigned def, min, max;
			unsigned *out;
		} nk[] = {
			{ "WEIGHTLIFT_HTTP_RETRIES", WLIFT_HTTP_RETRIES, 0, WLIFT_HTTP_MAX_RETRIES,
			  &ctx->http_retries },
			{ "WEIGHTLIFT_HTTP_RETRY_BASE_MS", WLIFT_HTTP_RETRY_BASE_MS, 1,
			  WLIFT_HTTP_MAX_RETRY_MS, &ctx->http_retry_base_ms },
			{ "WEIGHTLIFT_HTTP_RETRY_MAX_MS", WLIFT_HTTP_RETRY_MAX_MS, 1,
			  WLIFT_HTTP_MAX_RETRY_MS, &ctx->http_retry_max_ms },
			{ "WEIGHTLIFT_HTTP_HEDGE", WLIFT_HTTP_HEDGE, 0, WLIFT_HTTP_MAX_HEDGE,
			  &ctx->http_hedge },
		};
		const char *ev;
		for (size_t i = 0; i < WLIFT_ARRAY_SIZE(nk); i++) {
			char *end;
			unsigned long x = nk[i].def;
			if (wlift__env_str(nk[i].env, &ev)) {
				errno = 0;
				x = strtoul(ev, &end, 10);
				if (errno || end == ev || *end || *ev == '-' || x < nk[i].min ||
				    x > nk[i].max)
					return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "config.env",
							       "environment variable %s = '%s' is "
							       "out of range (%u .. %u)",
							       nk[i].env, ev, nk[i].min, nk[i].max);
			}
			*nk[i].out = (unsigned)x;
		}
		ctx->http_full_download = (OPT_HAS(opts, http_full_download) &&
					   opts->http_full_download) ||
					  env_flag("WEIGHTLIFT_HTTP_FULL_DOWNLOAD");
		ctx->http_adaptive = wlift__env_str("WEIGHTLIFT_HTTP_ADAPTIVE", &ev)
					     ? strcmp(ev, "0") != 0
					     : 1;
	}
	ret = knob(0, "max_rate", "WEIGHTLIFT_MAX_RATE", 0, WLIFT_MAX_RATE, &v, d);
	if (ret)
		return ret;
	ctx->max_rate = OPT_HAS(opts, max_rate) && opts->max_rate ? opts->max_rate : v;
	if (ctx->max_rate && (ctx->max_rate < WLIFT_MIN_RATE || ctx->max_rate > WLIFT_MAX_RATE))
		return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "config.range",
				       "%s = %llu bytes/s is out of range (%llu .. %llu, or 0 for "
				       "no cap)",
				       OPT_HAS(opts, max_rate) && opts->max_rate
					       ? "wlift_ctx_opts.max_rate"
					       : "environment variable WEIGHTLIFT_MAX_RATE",
				       (unsigned long long)ctx->max_rate,
				       (unsigned long long)WLIFT_MIN_RATE,
				       (unsigned long long)WLIFT_MAX_RATE);
	if (ctx->max_rate && wlift__rate_create(ctx->max_rate, &ctx->rate))
		return wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
	if (wlift__gate_create(WLIFT_HTTP_START_ACTIVE, WLIFT_HTTP_GROW_GAIN, &ctx->gate))
		return wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
	if (str_knob(OPT_HAS(opts, http_token) ? opts->http_token : NULL, token_env, 1,
		     &ctx->http_token) ||
	    str_knob(NULL, hf_env, 2, &ctx->hf_token) ||
	    str_knob(NULL, ep_env, 1, &ctx->hf_endpoint) ||
	    str_knob(NULL, ca_env, 3, &ctx->ca_bundle))
		return wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
	return s3_knobs(ctx, opts, d);
}

/* The local cache's knobs. */
static int cache_knobs(wlift_ctx *ctx, const wlift_ctx_opts *opts, wlift_diag *d)
{
	static const char *const dir_env[] = { "WEIGHTLIFT_CACHE_DIR" };
	const char *v;
	size_t max = 0;
	int ret;

	if (str_knob(opts->cache_dir, dir_env, 1, &ctx->cache_dir))
		return wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
	ctx->offline = OPT_HAS(opts, offline) && opts->offline ? 1
		       : env_flag("WEIGHTLIFT_OFFLINE");
	ret = knob(OPT_HAS(opts, cache_max_bytes) ? (size_t)opts->cache_max_bytes : 0,
		   "cache_max_bytes", "WEIGHTLIFT_CACHE_MAX_BYTES", 0, WLIFT_MAX_CACHE_BYTES,
		   &max, d);
	if (ret)
		return ret;
	ctx->cache_max_bytes = max;
	if (OPT_HAS(opts, cache_fill) && opts->cache_fill) {
		if (opts->cache_fill != WLIFT_CACHE_FILL_PARTIAL &&
		    opts->cache_fill != WLIFT_CACHE_FILL_FULL)
			return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "config.range",
					       "wlift_ctx_opts.cache_fill = %d is not "
					       "WLIFT_CACHE_FILL_PARTIAL or WLIFT_CACHE_FILL_FULL",
					       opts->cache_fill);
		ctx->cache_fill_full = opts->cache_fill == WLIFT_CACHE_FILL_FULL;
	} else if (wlift__env_str("WEIGHTLIFT_CACHE_FILL", &v)) {
		if (strcmp(v, "full") != 0 && strcmp(v, "partial") != 0)
			return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "config.env",
					       "environment variable WEIGHTLIFT_CACHE_FILL must be "
					       "partial or full");
		ctx->cache_fill_full = strcmp(v, "full") == 0;
	}
	return 0;
}

int wlift__ctx_cache(wlift_ctx *ctx, char **dir, int *offline, uint64_t *max_bytes)
{
	int ret = 0;

	pthread_mutex_lock(&ctx->cache_mu);
	*dir = NULL;
	if (ctx->cache_dir && !(*dir = strdup(ctx->cache_dir)))
		ret = -ENOMEM;
	*offline = ctx->offline;
	*max_bytes = ctx->cache_max_bytes;
	pthread_mutex_unlock(&ctx->cache_mu);
	return ret;
}

int wlift_ctx_set_cache_dir(wlift_ctx *ctx, const char *dir, wlift_diag *d)
{
	char *copy = NULL, *old;

	ctx = wlift__ctx_or_default(ctx);
	if (!ctx)
		return wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
	if (dir && *dir && !(copy = strdup(dir)))
		return wlift__diag_set(d, -ENOMEM, dir, NULL, -1, NULL, NULL);
	pthread_mutex_lock(&ctx->cache_mu);
	old = ctx->cache_dir;
	ctx->cache_dir = copy;
	pthread_mutex_unlock(&ctx->cache_mu);
	free(old);
	return 0;
}

unsigned wlift_ctx_comm_timeout(wlift_ctx *ctx)
{
	ctx = wlift__ctx_or_default(ctx);
	return ctx ? ctx->comm_timeout_s : 0;
}

void wlift_ctx_set_offline(wlift_ctx *ctx, int offline)
{
	ctx = wlift__ctx_or_default(ctx);
	if (!ctx)
		return;
	pthread_mutex_lock(&ctx->cache_mu);
	ctx->offline = offline ? 1 : 0;
	pthread_mutex_unlock(&ctx->cache_mu);
}

/* The gs:// sources' settings: the names Google's client libraries read (docs/remote.md). */
static int gcs_knobs(wlift_ctx *ctx)
{
	static const char *const cred_env[] = { "GOOGLE_APPLICATION_CREDENTIALS" };
	static const char *const emu_env[] = { "STORAGE_EMULATOR_HOST" };
	static const char *const md_env[] = { "GCE_METADATA_HOST", "GCE_METADATA_IP" };
	const char *v = NULL, *home = NULL;
	char path[4096];

	if (wlift__env_str("WEIGHTLIFT_GCS_TOKEN", &v))
		ctx->gcs_token_env = "WEIGHTLIFT_GCS_TOKEN";
	else if (wlift__env_str("GOOGLE_OAUTH_ACCESS_TOKEN", &v))
		ctx->gcs_token_env = "GOOGLE_OAUTH_ACCESS_TOKEN";
	if (v && !(ctx->gcs_token = strdup(v)))
		return -ENOMEM;
	/* gcloud keeps its configuration in $CLOUDSDK_CONFIG, else ~/.config/gcloud. */
	path[0] = '\0';
	if (wlift__env_str("CLOUDSDK_CONFIG", &v))
		snprintf(path, sizeof(path), "%s/application_default_credentials.json", v);
	else if (wlift__env_str("HOME", &home))
		snprintf(path, sizeof(path),
			 "%s/.config/gcloud/application_default_credentials.json", home);
	if (path[0] && !(ctx->gcs_adc_file = strdup(path)))
		return -ENOMEM;
	ctx->gcs_anonymous = env_flag("WEIGHTLIFT_GCS_ANONYMOUS");
	if (str_knob(NULL, cred_env, 1, &ctx->gcs_credentials) ||
	    str_knob(NULL, emu_env, 1, &ctx->gcs_emulator) ||
	    str_knob(NULL, md_env, 2, &ctx->gcs_metadata_host))
		return -ENOMEM;
	return 0;
}

int wlift_ctx_create(wlift_ctx **out, const wlift_ctx_opts *opts, wlift_diag *d)
{
	wlift_ctx_opts defaults = WLIFT_CTX_OPTS_INIT;
	wlift_ctx *ctx = NULL;
	size_t threads = 0;
	long ncpu;
	int ret;

	if (!out)
		return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "api.args", "out is NULL");
	*out = NULL;
	/* curl's global set-up now, once per process: off the first remote open's path (its
	 * failure is reported there). */
	(void)wlift__curl_init();
	if (!opts)
		opts = &defaults;
	if (opts->size == 0 || opts->size > sizeof(wlift_ctx_opts))
		return wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "api.size",
				       "wlift_ctx_opts.size is %zu (use WLIFT_CTX_OPTS_INIT)",
				       opts->size);
	ctx = calloc(1, sizeof(*ctx));
	if (!ctx)
		return wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
	pthread_mutex_init(&ctx->cache_mu, NULL);
	pthread_mutex_init(&ctx->kept_mu, NULL);
	pthread_cond_init(&ctx->kept_cv, NULL);

	ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	if (ncpu < 1)
		ncpu = 1;
	ret = knob(opts->threads, "threads", "WEIGHTLIFT_THREADS",
		   (size_t)ncpu < WLIFT_MIN_DEFAULT_THREADS ? WLIFT_MIN_DEFAULT_THREADS
		   : (size_t)ncpu > WLIFT_MAX_THREADS	    ? WLIFT_MAX_THREADS
							    : (size_t)ncpu,
		   WLIFT_MAX_THREADS, &threads, d);
	if (ret)
		goto out;
	ctx->threads = (unsigned)threads;
	ret = knob(opts->chunk_bytes, "chunk_bytes", "WEIGHTLIFT_CHUNK_BYTES",
		   WLIFT_DEFAULT_CHUNK_BYTES, WLIFT_MAX_CHUNK_BYTES, &ctx->chunk_bytes, d);
	if (ret)
		goto out;
	ret = knob(opts->max_inflight_bytes, "max_inflight_bytes", "WEIGHTLIFT_MAX_INFLIGHT_BYTES",
		   WLIFT_DEFAULT_INFLIGHT_BYTES, WLIFT_MAX_INFLIGHT_BYTES, &ctx->max_inflight_bytes,
		   d);
	if (ret)
		goto out;
	/* Pre-faulting the arena (MADV_POPULATE_WRITE from `threads` threads) instead of
	 * faulting it in from the reading workers measured slower or equal on the reference
	 * machine (docs/ARCHITECTURE.md), so it is off unless asked for. */
	{
		const char *v;
		ctx->populate = wlift__env_str("WEIGHTLIFT_POPULATE", &v) ? strcmp(v, "0") != 0 : -1;
	}
	ret = env01("WEIGHTLIFT_HUGEPAGE", 1, &ctx->hugepage, d);
	if (!ret)
		ret = env01("WEIGHTLIFT_CACHE_DIRECT", 1, &ctx->cache_direct, d);
	if (ret)
		goto out;
	ctx->disable_uring = env_flag("WEIGHTLIFT_DISABLE_URING");
	{
		uint64_t v = WLIFT_DEFAULT_URING_FIXED;
		int r = wlift__env_size("WEIGHTLIFT_URING_FIXED", &v);
		if (r < 0 || v > 1) {
			ret = wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "config.env",
					      "environment variable WEIGHTLIFT_URING_FIXED must be 0 "
					      "or 1");
			goto out;
		}
		ctx->uring_fixed = r == 1 ? (int)v : WLIFT_DEFAULT_URING_FIXED;
	}
	ret = knob(0, "shard_piece_min", "WEIGHTLIFT_SHARD_PIECE_MIN", WLIFT_SHARD_PIECE_MIN,
		   WLIFT_MAX_CHUNK_BYTES, &ctx->shard_piece_min, d);
	if (ret)
		goto out;
	{
		/* Distributed loading: the NCCL library (the fake one in tests) and the bound on
		 * every collective wait, 1 s .. 1 day: of wlift_comm here, and of the Python
		 * exchange layer (weightlift.distributed reads it with wlift_ctx_comm_timeout), so
		 * one knob bounds both. WEIGHTLIFT_DIST_TIMEOUT is its earlier name, read when
		 * WEIGHTLIFT_COMM_TIMEOUT is not set. */
		const char *lib, *tenv = "WEIGHTLIFT_COMM_TIMEOUT";
		size_t v = 0;
		if (wlift__env_str("WEIGHTLIFT_NCCL_LIBRARY", &lib)) {
			ctx->nccl_library = strdup(lib);
			if (!ctx->nccl_library) {
				ret = wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
				goto out;
			}
		}
		if (wlift__env_str("WEIGHTLIFT_MPI_LIBRARY", &lib)) {
			ctx->mpi_library = strdup(lib);
			if (!ctx->mpi_library) {
				ret = wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
				goto out;
			}
		}
		if (!wlift__env_str(tenv, &lib) && wlift__env_str("WEIGHTLIFT_DIST_TIMEOUT", &lib))
			tenv = "WEIGHTLIFT_DIST_TIMEOUT";
		ret = knob(0, "comm_timeout", tenv, WLIFT_COMM_TIMEOUT_S, WLIFT_MAX_COMM_TIMEOUT_S,
			   &v, d);
		if (ret)
			goto out;
		ctx->comm_timeout_s = (unsigned)v;
	}
	ret = remote_knobs(ctx, opts, d);
	if (ret)
		goto out;
	if (gcs_knobs(ctx)) {
		ret = wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
		goto out;
	}
	/* GPU loads: the driver library (the fake driver in tests) and the staging ring. 0 keeps
	 * the default; the ring's lower bounds are checked per load (config.c). */
	{
		const char *lib;
		size_t v = 0;
		if (wlift__env_str("WEIGHTLIFT_SYSFS_ROOT", &lib)) {
			ctx->sysfs_root = strdup(lib);
			if (!ctx->sysfs_root) {
				ret = wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
				goto out;
			}
		}
		if (wlift__env_str("WEIGHTLIFT_CUDA_LIBRARY", &lib)) {
			ctx->cuda_library = strdup(lib);
			if (!ctx->cuda_library) {
				ret = wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
				goto out;
			}
		}
		if (wlift__env_str("WEIGHTLIFT_CUFILE_LIBRARY", &lib)) {
			ctx->cufile_library = strdup(lib);
			if (!ctx->cufile_library) {
				ret = wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
				goto out;
			}
		}
		/* GPU Direct Storage: auto (default), on or off. */
		ctx->gds = WLIFT_GDS_AUTO;
		if (wlift__env_str("WEIGHTLIFT_GDS", &lib)) {
			if (strcmp(lib, "auto") == 0) {
				ctx->gds = WLIFT_GDS_AUTO;
			} else if (strcmp(lib, "on") == 0) {
				ctx->gds = WLIFT_GDS_ON;
			} else if (strcmp(lib, "off") == 0) {
				ctx->gds = WLIFT_GDS_OFF;
			} else {
				ret = wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "config.env",
						      "environment variable WEIGHTLIFT_GDS = \"%s\" "
						      "is not one of auto, on, off",
						      lib);
				goto out;
			}
		}
		ret = knob(0, "ring_bytes", "WEIGHTLIFT_CUDA_RING_BYTES", 0, WLIFT_MAX_RING_BYTES,
			   &ctx->ring_bytes, d);
		if (ret)
			goto out;
		if (ctx->ring_bytes && ctx->ring_bytes < WLIFT_MIN_RING_BYTES) {
			ret = wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "config.env",
					      "environment variable WEIGHTLIFT_CUDA_RING_BYTES = %zu "
					      "is out of range (1 MiB .. 16 GiB)",
					      ctx->ring_bytes);
			goto out;
		}
		ret = knob(0, "ring_slots", "WEIGHTLIFT_CUDA_RING_SLOTS", 0, WLIFT_MAX_RING_SLOTS,
			   &v, d);
		if (ret)
			goto out;
		ctx->ring_slots = (unsigned)v;
		ret = knob(0, "max_device_bytes", "WEIGHTLIFT_MAX_DEVICE_BYTES", 0, UINT64_MAX,
			   &v, d);
		if (ret)
			goto out;
		ctx->max_device_bytes = v;
		/* 0 is a value here (not kept), so not knob()'s "0: default". */
		ret = wlift__env_size("WEIGHTLIFT_CUDA_RING_KEEP_S", &v);
		if (ret < 0 || (ret == 1 && v > WLIFT_MAX_RING_KEEP_S)) {
			ret = wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "config.env",
					      "environment variable WEIGHTLIFT_CUDA_RING_KEEP_S is out "
					      "of range (0 .. %u seconds)",
					      WLIFT_MAX_RING_KEEP_S);
			goto out;
		}
		ctx->ring_keep_s = ret == 1 ? (unsigned)v : WLIFT_DEFAULT_RING_KEEP_S;
		/* cuFile batch requests per chunk: 0 (synchronous cuFileRead) .. 64. */
		ret = wlift__env_size("WEIGHTLIFT_GDS_BATCH", &v);
		if (ret < 0 || (ret == 1 && v > WLIFT_MAX_GDS_BATCH)) {
			ret = wlift__diag_set(d, -EINVAL, NULL, NULL, -1, "config.env",
					      "environment variable WEIGHTLIFT_GDS_BATCH is out of "
					      "range (0 .. %u requests per cuFile batch)",
					      WLIFT_MAX_GDS_BATCH);
			goto out;
		}
		ctx->gds_batch = ret == 1 ? (unsigned)v : WLIFT_DEFAULT_GDS_BATCH;
	}
	ret = cache_knobs(ctx, opts, d);
	if (ret)
		goto out;
	ctx->log = opts->log;
	ctx->log_user = opts->log_user;
	ctx->log_level = opts->log_level;
	*out = ctx;
	ctx = NULL;
	ret = 0;
out:
	wlift_ctx_destroy(ctx);
	return ret;
}

static wlift_ctx *default_ctx;
static pthread_once_t default_once = PTHREAD_ONCE_INIT;

void wlift_ctx_destroy(wlift_ctx *ctx)
{
	/* The default context lives for the process (checkpoints opened with a NULL ctx may
	 * still use it). */
	if (!ctx || ctx == __atomic_load_n(&default_ctx, __ATOMIC_ACQUIRE))
		return;
	free(ctx->http_token);
	free(ctx->hf_token);
	free(ctx->hf_endpoint);
	free(ctx->ca_bundle);
	wlift__rate_destroy(ctx->rate);
	wlift__gate_destroy(ctx->gate);
	free(ctx->gcs_token);
	free(ctx->gcs_credentials);
	free(ctx->gcs_adc_file);
	free(ctx->gcs_emulator);
	free(ctx->gcs_metadata_host);
	free(ctx->s3_region);
	wlift__ctx_keep_destroy(ctx);
	free(ctx->cuda_library);
	free(ctx->cufile_library);
	free(ctx->sysfs_root);
	free(ctx->nccl_library);
	free(ctx->mpi_library);
	free(ctx->cache_dir);
	pthread_mutex_destroy(&ctx->cache_mu);
	free(ctx);
}

static void default_init(void)
{
	/* A malformed WEIGHTLIFT_* size falls back to the built-in defaults here: there is no
	 * caller to report it to (wlift_ctx_create reports it). */
	if (wlift_ctx_create(&default_ctx, NULL, NULL) < 0) {
		default_ctx = calloc(1, sizeof(*default_ctx));
		if (default_ctx) {
			pthread_mutex_init(&default_ctx->cache_mu, NULL);
			default_ctx->threads = WLIFT_MIN_DEFAULT_THREADS;
			default_ctx->chunk_bytes = WLIFT_DEFAULT_CHUNK_BYTES;
			default_ctx->max_inflight_bytes = WLIFT_DEFAULT_INFLIGHT_BYTES;
			default_ctx->http_requests = WLIFT_HTTP_DEFAULT_REQUESTS;
			default_ctx->http_connect_s = WLIFT_HTTP_CONNECT_S;
			default_ctx->http_stall_s = WLIFT_HTTP_STALL_S;
			default_ctx->http_retries = WLIFT_HTTP_RETRIES;
			default_ctx->http_retry_base_ms = WLIFT_HTTP_RETRY_BASE_MS;
			default_ctx->http_retry_max_ms = WLIFT_HTTP_RETRY_MAX_MS;
			default_ctx->http_hedge = WLIFT_HTTP_HEDGE;
			default_ctx->http_adaptive = 1;
			default_ctx->s3_list_max = WLIFT_S3_LIST_MAX_KEYS;
		}
	}
}

wlift_ctx *wlift__ctx_default(void)
{
	pthread_once(&default_once, default_init);
	return default_ctx;
}
