/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Retry and hedging policy of remote reads: exponential backoff with jitter, bounded by a
 * cap, raised by the server's Retry-After; the no-progress latency that triggers a hedged
 * request. The transfers themselves are in http.c.
 */
#include <stdlib.h>

#include "common/common.h"
#include "source/retry.h"

static double uniform(uint64_t *s)
{
	/* xorshift64: cheap, per queue, good enough for jitter. */
	uint64_t x = *s ? *s : 0x9e3779b97f4a7c15ull;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*s = x;
	return (double)(x >> 11) / 9007199254740992.0; /* [0, 1) */
}

double wlift__retry_backoff(unsigned attempt, unsigned base_ms, unsigned max_ms,
			    double retry_after_s, uint64_t *seed)
{
	double b = (double)base_ms / 1000, cap = (double)max_ms / 1000;

	for (unsigned i = 1; i < attempt && b < cap; i++)
		b *= 2;
	if (b > cap)
		b = cap;
	b = b / 2 + uniform(seed) * b / 2;
	if (retry_after_s > b)
		b = retry_after_s;
	return b > cap ? cap : b;
}

double wlift__retry_after(const char *v)
{
	double s = 0;
	int digits = 0;

	while (*v == ' ' || *v == '\t')
		v++;
	for (; *v >= '0' && *v <= '9'; v++, digits++)
		if (s < 1e9)
			s = s * 10 + (*v - '0');
	while (*v == ' ' || *v == '\t' || *v == '\r' || *v == '\n')
		v++;
	return digits && !*v ? s : -1;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

double wlift__hedge_after(double *lat, unsigned n, unsigned factor, double min_s)
{
	double t;

	if (!factor || n < WLIFT_HTTP_HEDGE_MIN_SAMPLES)
		return -1;
	qsort(lat, n, sizeof(*lat), cmp_double);
	t = lat[n / 2] * factor;
	return t < min_s ? min_s : t;
}
