// SPDX-License-Identifier: Apache-2.0
/* delayline: a packet-level delay line between two network namespaces, for bench/remote.sh.
 *
 * It creates one TUN device in each of two namespaces (A, then B) and forwards every IP packet
 * read from one to the other after holding it for a fixed delay, in both directions, in order.
 * TCP runs end to end through it (nothing is terminated or acknowledged here), so the sender's
 * congestion window sees the whole round trip, which a relay that terminates TCP would hide.
 * This kernel has neither netem nor fq, hence a program of ours. The rate cap is not done here
 * but by tc tbf on the devices' egress (set up by the script).
 *
 * With --gso the devices carry virtio-net headers and TSO/checksum offload (IFF_VNET_HDR,
 * TUNSETOFFLOAD): the kernel hands over TCP super-packets of up to 64 KiB that are still
 * segmented at the MSS of the 1500-byte MTU in the sender's accounting (the way a virtio NIC
 * passes them to a hypervisor), which keeps the packet rate, and so this program's CPU cost,
 * low at gigabits per second. The header is forwarded unchanged with its packet.
 *
 * Each direction is one thread with a byte ring (--queue MiB) of [due time, length, packet]
 * records: a packet is read as soon as it arrives, stamped with arrival + delay, and written
 * out when that time has come. A full ring drops the packet (counted), like a full router
 * queue. On SIGINT/SIGTERM, or when its parent dies, it prints its counters and exits; the
 * devices disappear with it.
 *
 * usage: delayline --ns-a /run/netns/X --ns-b /run/netns/Y --dev-a NAME --dev-b NAME
 *                  [--delay-ms 25] [--queue-mib 64] [--gso] [--rt]
 * Prints "ready" on stdout once both devices exist (down, without addresses: the caller
 * configures them). --rt runs the two threads at SCHED_FIFO priority 10. Linux only; needs
 * CAP_NET_ADMIN and CAP_SYS_ADMIN (setns), and CAP_SYS_NICE for --rt.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#define PKT_MAX (65536 + 64) /* a 64 KiB GSO packet plus its virtio-net header */
#define REC_HDR 16u          /* due (8 bytes) + length (4) + pad (4) */
#define WRAP 0xffffffffu     /* length of a record that says "continue at the ring's start" */

struct dir {
	const char *name;
	int in, out;
	uint64_t delay_ns;
	unsigned char *ring;
	size_t cap, head, tail, used; /* head: oldest record; tail: next free byte */
	int rt;
	unsigned long long pkts, bytes, drops, werr;
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static size_t align16(size_t n)
{
	return (n + 15u) & ~(size_t)15u;
}

/* Where the next record of up to PKT_MAX bytes goes, or NULL when the ring has no room.
 * Records never wrap: if the end of the ring is too short, a WRAP marker sends the reader
 * back to the start. */
static unsigned char *ring_slot(struct dir *d)
{
	size_t need = REC_HDR + PKT_MAX;
	if (!d->used) {
		d->head = d->tail = 0;
		return d->cap >= need ? d->ring : NULL;
	}
	if (d->tail == d->head)
		return NULL; /* full */
	if (d->tail > d->head) {
		if (d->cap - d->tail >= need)
			return d->ring + d->tail;
		if (d->head < need)
			return NULL;
		/* The bytes from tail to the end become dead space that the reader skips. */
		uint32_t w = WRAP;
		memcpy(d->ring + d->tail + 8, &w, 4);
		d->used += d->cap - d->tail;
		d->tail = 0;
		return d->ring;
	}
	return d->head - d->tail >= need ? d->ring + d->tail : NULL;
}

static void ring_push(struct dir *d, uint64_t due, uint32_t len)
{
	unsigned char *r = d->ring + d->tail;
	size_t sz = align16(REC_HDR + len);
	memcpy(r, &due, 8);
	memcpy(r + 8, &len, 4);
	d->tail += sz;
	d->used += sz;
	if (d->tail == d->cap)
		d->tail = 0;
}

/* The oldest record (skipping a wrap marker), or NULL. */
static unsigned char *ring_peek(struct dir *d)
{
	uint32_t len;
	if (!d->used)
		return NULL;
	if (d->cap - d->head < REC_HDR) {
		d->used -= d->cap - d->head;
		d->head = 0;
	} else {
		memcpy(&len, d->ring + d->head + 8, 4);
		if (len == WRAP) {
			d->used -= d->cap - d->head;
			d->head = 0;
		}
	}
	return d->used ? d->ring + d->head : NULL;
}

static void ring_pop(struct dir *d, uint32_t len)
{
	size_t sz = align16(REC_HDR + len);
	d->head += sz;
	d->used -= sz;
	if (d->head == d->cap)
		d->head = 0;
}

static void *run(void *arg)
{
	struct dir *d = arg;
	if (d->rt) {
		/* Realtime priority: on a loaded machine a normal thread wakes up milliseconds late
		 * (measured: ping over a 25 ms line 50.4-75 ms at load average 12), which would add
		 * jitter the link is not meant to have. The threads sleep in ppoll between packets. */
		struct sched_param sp = { .sched_priority = 10 };
		if (pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp))
			fprintf(stderr, "delayline: no realtime priority (continuing without)\n");
	}
	for (;;) {
		uint64_t now = now_ns(), due = 0;
		unsigned char *r;
		uint32_t len;
		/* Everything whose time has come goes out first. */
		while ((r = ring_peek(d))) {
			memcpy(&due, r, 8);
			if (due > now)
				break;
			memcpy(&len, r + 8, 4);
			if (write(d->out, r + REC_HDR, len) != (ssize_t)len)
				d->werr++;
			d->pkts++;
			d->bytes += len;
			ring_pop(d, len);
		}
		struct pollfd p = { .fd = d->in, .events = POLLIN };
		struct timespec to = { 1, 0 }; /* nothing queued: wake up now and then anyway */
		if (r) {
			uint64_t w = due - now;
			to.tv_sec = (time_t)(w / 1000000000u);
			to.tv_nsec = (long)(w % 1000000000u);
		}
		int n = ppoll(&p, 1, &to, NULL);
		if (n < 0 && errno != EINTR)
			return NULL;
		if (n <= 0)
			continue;
		/* Take what has arrived (a bounded burst, so that due packets are not starved). */
		for (int i = 0; i < 256; i++) {
			unsigned char *s = ring_slot(d);
			unsigned char drop[PKT_MAX];
			ssize_t got = read(d->in, s ? s + REC_HDR : drop, PKT_MAX);
			if (got < 0)
				break; /* EAGAIN: drained */
			if (!s) {
				d->drops++;
				continue;
			}
			ring_push(d, now_ns() + d->delay_ns, (uint32_t)got);
		}
	}
}

static int tun_open(const char *ns, const char *dev, int gso)
{
	int nsfd = open(ns, O_RDONLY | O_CLOEXEC);
	if (nsfd < 0 || setns(nsfd, CLONE_NEWNET) < 0) {
		fprintf(stderr, "delayline: namespace %s: %s\n", ns, strerror(errno));
		if (nsfd >= 0)
			close(nsfd);
		return -1;
	}
	close(nsfd);
	int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "delayline: /dev/net/tun: %s\n", strerror(errno));
		return -1;
	}
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TUN | IFF_NO_PI | (gso ? IFF_VNET_HDR : 0);
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", dev);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0 ||
	    (gso && ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) < 0)) {
		fprintf(stderr, "delayline: %s in %s: %s\n", dev, ns, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static struct dir dirs[2];

static void report(void)
{
	for (int i = 0; i < 2; i++)
		fprintf(stderr, "delayline %s: %llu packets, %llu bytes, %llu dropped, %llu write errors\n",
			dirs[i].name, dirs[i].pkts, dirs[i].bytes, dirs[i].drops, dirs[i].werr);
}

int main(int argc, char **argv)
{
	const char *nsa = NULL, *nsb = NULL, *deva = NULL, *devb = NULL;
	double delay_ms = 25;
	long queue_mib = 64;
	int gso = 0, rt = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--gso") || !strcmp(a, "--rt")) {
			*(a[2] == 'g' ? &gso : &rt) = 1;
			continue;
		}
		if (!v)
			goto usage;
		if (!strcmp(a, "--ns-a"))
			nsa = v;
		else if (!strcmp(a, "--ns-b"))
			nsb = v;
		else if (!strcmp(a, "--dev-a"))
			deva = v;
		else if (!strcmp(a, "--dev-b"))
			devb = v;
		else if (!strcmp(a, "--delay-ms"))
			delay_ms = atof(v);
		else if (!strcmp(a, "--queue-mib"))
			queue_mib = atol(v);
		else
			goto usage;
		i++;
	}
	if (!nsa || !nsb || !deva || !devb || delay_ms < 0 || delay_ms > 10000 || queue_mib < 1 ||
	    queue_mib > 4096)
		goto usage;
	int fa = tun_open(nsa, deva, gso);
	int fb = fa < 0 ? -1 : tun_open(nsb, devb, gso);
	if (fb < 0)
		return 1;
	uint64_t delay_ns = (uint64_t)(delay_ms * 1e6);
	size_t cap = (size_t)queue_mib << 20;
	dirs[0] = (struct dir){ .name = "a->b", .in = fa, .out = fb, .delay_ns = delay_ns, .cap = cap, .rt = rt };
	dirs[1] = (struct dir){ .name = "b->a", .in = fb, .out = fa, .delay_ns = delay_ns, .cap = cap, .rt = rt };
	for (int i = 0; i < 2; i++) {
		dirs[i].ring = malloc(cap);
		if (!dirs[i].ring) {
			fprintf(stderr, "delayline: out of memory\n");
			return 1;
		}
	}
	sigset_t ss;
	sigemptyset(&ss);
	sigaddset(&ss, SIGINT);
	sigaddset(&ss, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &ss, NULL); /* the threads inherit the mask; main waits */
	prctl(PR_SET_PDEATHSIG, SIGTERM);      /* a killed benchmark does not leave us behind */
	pthread_t t[2];
	for (int i = 0; i < 2; i++)
		if (pthread_create(&t[i], NULL, run, &dirs[i])) {
			fprintf(stderr, "delayline: cannot start a thread\n");
			return 1;
		}
	printf("ready\n");
	fflush(stdout);
	int sig;
	sigwait(&ss, &sig);
	report();
	return 0;
usage:
	fprintf(stderr, "usage: delayline --ns-a PATH --ns-b PATH --dev-a NAME --dev-b NAME "
			"[--delay-ms 25] [--queue-mib 64] [--gso] [--rt]\n");
	return 2;
}
