/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Retry and hedging policy of remote reads (retry.c), kept apart from the transfers so that
 * it can be tested without a server: the backoff before another attempt, the Retry-After
 * header's value, the latency above which a read is hedged.
 */
#ifndef WLIFT_SOURCE_RETRY_H
#define WLIFT_SOURCE_RETRY_H

#include <stdint.h>

/* Seconds to wait before attempt `attempt` + 1 (attempt >= 1 attempts failed): exponential
 * from base_ms (base_ms * 2^(attempt-1)), capped at max_ms, with "equal jitter" (a uniform
 * draw in [b/2, b], so that readers that failed together do not retry together, and never
 * much sooner than the exponential says); a server's Retry-After (retry_after_s >= 0)
 * raises it, still within max_ms. *seed is a per-queue xorshift state (never 0). */
double wlift__retry_backoff(unsigned attempt, unsigned base_ms, unsigned max_ms,
			    double retry_after_s, uint64_t *seed);

/* The seconds of a Retry-After value: delay-seconds ("120") → that; an HTTP-date or anything
 * else → -1 (then the backoff alone counts). */
double wlift__retry_after(const char *v);

/* The latency (seconds without progress) after which a read is hedged: factor times the
 * median of the n latest completed reads' durations lat[0..n), at least min_s; -1 when
 * hedging is off (factor 0) or fewer than WLIFT_HTTP_HEDGE_MIN_SAMPLES reads completed.
 * lat is reordered. */
double wlift__hedge_after(double *lat, unsigned n, unsigned factor, double min_s);

#endif
