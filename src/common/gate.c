/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One adaptive concurrency limit shared by the read queues of a context's remote loads (each
 * worker drives a queue of its own): at most `limit` requests active over all of them. The
 * total throughput decides growth (a round is `limit` completions, from any queue, compared
 * with the best round so far: doubling while it grows by `gain`, then one more while it still
 * grows) and a "slow down" answer halves the limit for every queue at once (at most once per
 * completed read, so a burst of 503s is one halving). The limit starts at `start` per queue
 * that joined before the first round ended and never exceeds the sum of the queues' depths.
 * A queue that found no free place is woken (its wake callback) when a place is given back.
 * When the last queue leaves, the state starts over for the next load.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "common/common.h"

struct wlift__gate {
	pthread_mutex_t mu;
	unsigned start;
	double gain;
	struct wlift__gate_member *members;
	unsigned nmembers;
	unsigned max;	 /* the sum of the members' depths */
	unsigned limit;	 /* at most this many places taken */
	unsigned active; /* places taken */
	unsigned peak;	 /* most places taken at once since the state started */
	unsigned round_done;
	uint64_t round_bytes, completions, halved_at;
	double round_start, best;
	int slow_start, rounds;
};

int wlift__gate_create(unsigned start, double gain, struct wlift__gate **out)
{
	struct wlift__gate *g = calloc(1, sizeof(*g));

	*out = NULL;
	if (!g)
		return -ENOMEM;
	pthread_mutex_init(&g->mu, NULL);
	g->start = start ? start : 1;
	g->gain = gain;
	*out = g;
	return 0;
}

void wlift__gate_destroy(struct wlift__gate *g)
{
	if (!g)
		return;
	pthread_mutex_destroy(&g->mu);
	free(g);
}

/* Called with g->mu held: a new load's state. */
static void fresh(struct wlift__gate *g)
{
	g->limit = 0;
	g->active = 0;
	g->peak = 0;
	g->round_done = 0;
	g->round_bytes = 0;
	g->completions = 0;
	g->halved_at = UINT64_MAX;
	g->best = 0;
	g->slow_start = 1;
	g->rounds = 0;
	g->round_start = wlift__now();
}

void wlift__gate_join(struct wlift__gate *g, struct wlift__gate_member *m, unsigned depth,
		      void (*wake)(void *), void *arg)
{
	m->depth = depth ? depth : 1;
	m->wake = wake;
	m->arg = arg;
	m->wants = 0;
	pthread_mutex_lock(&g->mu);
	if (!g->nmembers)
		fresh(g);
	m->next = g->members;
	g->members = m;
	g->nmembers++;
	g->max += m->depth;
	if (!g->rounds)
		g->limit += g->start;
	if (g->limit > g->max)
		g->limit = g->max;
	pthread_mutex_unlock(&g->mu);
}

void wlift__gate_leave(struct wlift__gate *g, struct wlift__gate_member *m)
{
	struct wlift__gate_member **p;

	pthread_mutex_lock(&g->mu);
	for (p = &g->members; *p && *p != m; p = &(*p)->next)
		;
	if (*p) {
		*p = m->next;
		g->nmembers--;
		g->max -= m->depth;
		if (g->limit > g->max && g->max)
			g->limit = g->max;
	}
	pthread_mutex_unlock(&g->mu);
}

int wlift__gate_take(struct wlift__gate *g, struct wlift__gate_member *m)
{
	int ok;

	pthread_mutex_lock(&g->mu);
	ok = g->active < g->limit;
	if (ok) {
		g->active++;
		if (g->active > g->peak)
			g->peak = g->active;
	} else {
		m->wants = 1;
	}
	pthread_mutex_unlock(&g->mu);
	return ok;
}

void wlift__gate_put(struct wlift__gate *g)
{
	pthread_mutex_lock(&g->mu);
	if (g->active)
		g->active--;
	if (g->active < g->limit)
		for (struct wlift__gate_member *m = g->members; m; m = m->next)
			if (m->wants) {
				m->wants = 0;
				m->wake(m->arg); /* thread-safe and short (curl_multi_wakeup) */
			}
	pthread_mutex_unlock(&g->mu);
}

unsigned wlift__gate_done(struct wlift__gate *g, uint64_t n, double now, double *tput)
{
	unsigned grew = 0;
	double t;

	pthread_mutex_lock(&g->mu);
	g->completions++;
	if (g->limit >= g->max)
		goto out;
	g->round_bytes += n;
	if (++g->round_done < (g->limit < 2 ? 2 : g->limit))
		goto out;
	t = now > g->round_start ? (double)g->round_bytes / (now - g->round_start) : 0;
	g->rounds++;
	if (t > g->best * g->gain) {
		g->best = t;
		g->limit = g->slow_start ? g->limit * 2 : g->limit + 1;
		if (g->limit > g->max)
			g->limit = g->max;
		grew = g->limit;
		*tput = t;
	} else {
		g->slow_start = 0;
	}
	g->round_done = 0;
	g->round_bytes = 0;
	g->round_start = now;
out:
	pthread_mutex_unlock(&g->mu);
	return grew;
}

unsigned wlift__gate_slow(struct wlift__gate *g, double now)
{
	unsigned limit = 0;

	pthread_mutex_lock(&g->mu);
	if (g->halved_at != g->completions) {
		g->limit = g->limit > 1 ? g->limit / 2 : 1;
		g->halved_at = g->completions;
		g->slow_start = 0;
		g->best = 0;
		g->rounds++;
		g->round_done = 0;
		g->round_bytes = 0;
		g->round_start = now;
		limit = g->limit;
	}
	pthread_mutex_unlock(&g->mu);
	return limit;
}

void wlift__gate_state(struct wlift__gate *g, unsigned *limit, unsigned *max, unsigned *peak)
{
	pthread_mutex_lock(&g->mu);
	*limit = g->limit;
	*max = g->max;
	*peak = g->peak;
	pthread_mutex_unlock(&g->mu);
}
