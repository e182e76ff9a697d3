/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A token bucket shared by threads: the bandwidth cap of a context (max_rate), taken by every
 * remote transfer of every load of that context. Bytes are taken after they arrive (a
 * receiver cannot refuse bytes already in its socket buffer), so the bucket may go into debt;
 * while it is in debt the takers pause their transfers (the kernel's receive window then
 * throttles the senders) for as long as the debt takes to repay. The burst is small (a tenth
 * of a second of the rate) so that the rate holds over short windows too.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "common/common.h"

struct wlift__rate {
	pthread_mutex_t mu;
	double rate;   /* bytes per second */
	double burst;  /* most tokens saved up */
	double tokens; /* may be negative: debt */
	double last;   /* wlift__now() of the last refill */
};

int wlift__rate_create(uint64_t bytes_per_s, struct wlift__rate **out)
{
	struct wlift__rate *r = calloc(1, sizeof(*r));

	*out = NULL;
	if (!r)
		return -ENOMEM;
	pthread_mutex_init(&r->mu, NULL);
	r->rate = (double)bytes_per_s;
	r->burst = r->rate / 10 > WLIFT_RATE_MIN_BURST ? r->rate / 10 : WLIFT_RATE_MIN_BURST;
	r->tokens = 0;
	r->last = wlift__now();
	*out = r;
	return 0;
}

void wlift__rate_destroy(struct wlift__rate *r)
{
	if (!r)
		return;
	pthread_mutex_destroy(&r->mu);
	free(r);
}

static void refill(struct wlift__rate *r, double now)
{
	if (now > r->last) {
		r->tokens += (now - r->last) * r->rate;
		if (r->tokens > r->burst)
			r->tokens = r->burst;
		r->last = now;
	}
}

double wlift__rate_take(struct wlift__rate *r, size_t n)
{
	double wait = 0;

	pthread_mutex_lock(&r->mu);
	refill(r, wlift__now());
	if (r->tokens <= 0)
		wait = -r->tokens / r->rate + 1e-4;
	else
		r->tokens -= (double)n;
	pthread_mutex_unlock(&r->mu);
	return wait;
}

double wlift__rate_wait(struct wlift__rate *r)
{
	double wait = 0;

	pthread_mutex_lock(&r->mu);
	refill(r, wlift__now());
	if (r->tokens <= 0)
		wait = -r->tokens / r->rate + 1e-4;
	pthread_mutex_unlock(&r->mu);
	return wait;
}
