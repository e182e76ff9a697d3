/* SPDX-License-Identifier: Apache-2.0 */
/*
 * An object a context keeps between loads (a GPU sink's registered pinned ring, so that the
 * next load of the same device does not register it again). One slot per context; a keeper
 * thread, started with the first keep, frees the object once it has been unused for
 * ring_keep_s seconds; wlift_ctx_destroy frees it at the latest. common/ knows nothing of
 * what it keeps: the owner passes its free function, which also tags the kind.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "common/common.h"

static void *keeper(void *arg)
{
	wlift_ctx *ctx = arg;

	pthread_mutex_lock(&ctx->kept_mu);
	while (!ctx->kept_stop) {
		struct timespec now;

		if (!ctx->kept) {
			pthread_cond_wait(&ctx->kept_cv, &ctx->kept_mu);
			continue;
		}
		clock_gettime(CLOCK_REALTIME, &now);
		if (now.tv_sec > ctx->kept_deadline.tv_sec ||
		    (now.tv_sec == ctx->kept_deadline.tv_sec &&
		     now.tv_nsec >= ctx->kept_deadline.tv_nsec)) {
			void *obj = ctx->kept;
			void (*f)(void *) = ctx->kept_free;
			ctx->kept = NULL;
			ctx->kept_free = NULL;
			pthread_mutex_unlock(&ctx->kept_mu);
			f(obj);
			pthread_mutex_lock(&ctx->kept_mu);
			continue;
		}
		pthread_cond_timedwait(&ctx->kept_cv, &ctx->kept_mu, &ctx->kept_deadline);
	}
	pthread_mutex_unlock(&ctx->kept_mu);
	return NULL;
}

int wlift__ctx_keep(wlift_ctx *ctx, void *obj, void (*free_fn)(void *obj))
{
	void *old = NULL;
	void (*old_free)(void *) = NULL;
	int ret = 0;

	if (!ctx || !ctx->ring_keep_s)
		return -ENOTSUP;
	pthread_mutex_lock(&ctx->kept_mu);
	if (!ctx->kept_started) {
		ret = -pthread_create(&ctx->kept_thread, NULL, keeper, ctx);
		ctx->kept_started = ret == 0;
	}
	if (!ret) {
		old = ctx->kept;
		old_free = ctx->kept_free;
		ctx->kept = obj;
		ctx->kept_free = free_fn;
		clock_gettime(CLOCK_REALTIME, &ctx->kept_deadline);
		ctx->kept_deadline.tv_sec += ctx->ring_keep_s;
		pthread_cond_broadcast(&ctx->kept_cv);
	}
	pthread_mutex_unlock(&ctx->kept_mu);
	if (old)
		old_free(old);
	return ret;
}

void *wlift__ctx_take_kept(wlift_ctx *ctx, void (*free_fn)(void *obj))
{
	void *obj = NULL;

	if (!ctx)
		return NULL;
	pthread_mutex_lock(&ctx->kept_mu);
	if (ctx->kept && ctx->kept_free == free_fn) {
		obj = ctx->kept;
		ctx->kept = NULL;
		ctx->kept_free = NULL;
	}
	pthread_mutex_unlock(&ctx->kept_mu);
	return obj;
}

void wlift__ctx_keep_destroy(wlift_ctx *ctx)
{
	pthread_mutex_lock(&ctx->kept_mu);
	ctx->kept_stop = 1;
	pthread_cond_broadcast(&ctx->kept_cv);
	pthread_mutex_unlock(&ctx->kept_mu);
	if (ctx->kept_started)
		pthread_join(ctx->kept_thread, NULL);
	if (ctx->kept)
		ctx->kept_free(ctx->kept);
	ctx->kept = NULL;
	pthread_cond_destroy(&ctx->kept_cv);
	pthread_mutex_destroy(&ctx->kept_mu);
}
