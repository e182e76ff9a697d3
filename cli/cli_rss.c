/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Host-memory measurement for `load`: a thread samples RssAnon from /proc/self/status every
 * 10 ms and keeps the peak growth over a baseline taken when sampling starts (after the
 * context is created), as README.md (`load`) defines it. Anonymous memory is what a copy
 * costs; page-cache-backed mappings (the --mmap mode) are not anonymous and do not count.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

struct cli_rss {
	pthread_t thread;
	atomic_bool stop;
	atomic_uint_fast64_t peak; /* bytes */
	uint64_t baseline;
	bool started;
};

/* RssAnon in bytes, 0 when unavailable (kernels before 4.5, non-Linux). */
static uint64_t rss_anon(void)
{
	char line[256];
	uint64_t kb = 0;
	FILE *f = fopen("/proc/self/status", "re");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "RssAnon:", 8) == 0) {
			kb = strtoull(line + 8, NULL, 10);
			break;
		}
	}
	fclose(f);
	return kb * 1024;
}

void cli_rss_sample(struct cli_rss *s)
{
	uint64_t v = rss_anon();
	uint_fast64_t cur = atomic_load(&s->peak);

	while (v > cur && !atomic_compare_exchange_weak(&s->peak, &cur, v))
		;
}

static void *sampler(void *arg)
{
	struct cli_rss *s = arg;
	const struct timespec period = {0, 10 * 1000 * 1000};

	while (!atomic_load(&s->stop)) {
		cli_rss_sample(s);
		nanosleep(&period, NULL);
	}
	return NULL;
}

int cli_rss_start(struct cli_rss **out)
{
	struct cli_rss *s = calloc(1, sizeof(*s));
	int ret;

	*out = NULL;
	if (!s)
		return -ENOMEM;
	atomic_init(&s->stop, false);
	s->baseline = rss_anon();
	atomic_init(&s->peak, s->baseline);
	ret = pthread_create(&s->thread, NULL, sampler, s);
	s->started = ret == 0;
	*out = s;
	return ret ? -ret : 0;
}

uint64_t cli_rss_stop(struct cli_rss *s)
{
	uint64_t peak;

	if (!s)
		return 0;
	atomic_store(&s->stop, true);
	if (s->started)
		pthread_join(s->thread, NULL);
	cli_rss_sample(s);
	peak = atomic_load(&s->peak);
	peak = peak > s->baseline ? peak - s->baseline : 0;
	free(s);
	return peak;
}
