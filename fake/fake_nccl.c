/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A fake libnccl.so.2 for CI without GPUs (libwlift_fakenccl.so, selected with
 * WEIGHTLIFT_NCCL_LIBRARY): the entry points weightlift's NCCL backend resolves, with NCCL's
 * ABI (ncclUniqueId of 128 bytes, ncclResult_t codes), working across processes of one
 * machine. The unique id names a POSIX shared-memory segment; ncclCommInitRank meets the
 * other ranks there; ncclBroadcast copies through a staging area of the segment in chunks,
 * each chunk between process-shared barriers. "Device" buffers are plain addresses of the
 * calling process (the fake CUDA driver's device memory is host memory), so any buffer works.
 * Every wait is bounded (FAKENCCL_TIMEOUT_MS, default 30000): a rank that never arrives makes
 * the others fail with ncclSystemError ("remote process exited or there was a network
 * error"), and the segment is marked broken so that later calls fail at once.
 * FAKENCCL_FAIL_BCAST=N makes the N-th ncclBroadcast of a process fail (ncclInternalError).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define API __attribute__((visibility("default")))
#define STAGE (4u << 20)
#define MAGIC 0x6c636e6b6166ull /* "fakncl" */

typedef enum {
	ncclSuccess = 0,
	ncclUnhandledCudaError = 1,
	ncclSystemError = 2,
	ncclInternalError = 3,
	ncclInvalidArgument = 4,
	ncclInvalidUsage = 5,
	ncclRemoteError = 6,
	ncclInProgress = 7,
} ncclResult_t;

typedef struct {
	char internal[128];
} ncclUniqueId;

struct shared {
	uint64_t magic;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int nranks;
	int joined;
	int broken;
	unsigned arrived;
	uint64_t gen;
	uint64_t len; /* bytes of the chunk in the stage */
	unsigned char stage[STAGE];
};

struct ncclComm {
	struct shared *sh;
	int rank, nranks;
	char name[sizeof(ncclUniqueId)];
	ncclResult_t async;
};
typedef struct ncclComm *ncclComm_t;

static __thread char last_error[256];
static int bcast_calls;

static long timeout_ms(void)
{
	const char *s = getenv("FAKENCCL_TIMEOUT_MS");
	long v = s ? strtol(s, NULL, 10) : 0;

	return v > 0 ? v : 30000;
}

static void deadline(struct timespec *ts)
{
	long ms = timeout_ms();

	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

static int lock(struct shared *sh)
{
	int r = pthread_mutex_lock(&sh->mu);

	if (r == EOWNERDEAD) {
		/* A rank died holding the lock: the communicator cannot be trusted any more. */
		sh->broken = 1;
		pthread_mutex_consistent(&sh->mu);
		r = 0;
	}
	return r;
}

/* All nranks arrive, or the deadline passes (the segment is then broken for everyone). */
static ncclResult_t barrier(struct ncclComm *c)
{
	struct shared *sh = c->sh;
	struct timespec ts;
	uint64_t gen;
	ncclResult_t ret = ncclSuccess;

	deadline(&ts);
	if (lock(sh))
		return ncclSystemError;
	if (sh->broken)
		goto broken;
	gen = sh->gen;
	if (++sh->arrived == (unsigned)sh->nranks) {
		sh->arrived = 0;
		sh->gen++;
		pthread_cond_broadcast(&sh->cv);
	} else {
		while (sh->gen == gen && !sh->broken) {
			if (pthread_cond_timedwait(&sh->cv, &sh->mu, &ts) == ETIMEDOUT) {
				sh->broken = 1;
				pthread_cond_broadcast(&sh->cv);
				break;
			}
		}
		if (sh->gen == gen)
			goto broken;
	}
	pthread_mutex_unlock(&sh->mu);
	return ret;
broken:
	pthread_mutex_unlock(&sh->mu);
	snprintf(last_error, sizeof(last_error),
		 "fake NCCL: rank %d of %d: a peer did not arrive within %ld ms (remote process "
		 "exited or there was a network error)",
		 c->rank, c->nranks, timeout_ms());
	c->async = ncclSystemError;
	return ncclSystemError;
}

API ncclResult_t ncclGetVersion(int *v)
{
	if (!v)
		return ncclInvalidArgument;
	*v = 22105; /* 2.21.5 */
	return ncclSuccess;
}

API ncclResult_t ncclGetUniqueId(ncclUniqueId *id)
{
	static unsigned counter;
	struct timespec ts;

	if (!id)
		return ncclInvalidArgument;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	memset(id, 0, sizeof(*id));
	snprintf(id->internal, sizeof(id->internal), "/wlift-fakenccl-%d-%u-%ld", (int)getpid(),
		 __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED), (long)ts.tv_nsec);
	return ncclSuccess;
}

API ncclResult_t ncclCommInitRank(ncclComm_t *out, int nranks, ncclUniqueId id, int rank)
{
	struct ncclComm *c = NULL;
	struct shared *sh = MAP_FAILED;
	struct timespec ts;
	int fd = -1, created = 0;

	if (!out || nranks < 1 || rank < 0 || rank >= nranks || id.internal[0] != '/' ||
	    !memchr(id.internal, 0, sizeof(id.internal)))
		return ncclInvalidArgument;
	*out = NULL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return ncclSystemError;
	memcpy(c->name, id.internal, sizeof(c->name));
	/* The first rank to arrive creates and initialises the segment; the others wait for its
	 * magic. */
	fd = shm_open(c->name, O_RDWR | O_CREAT | O_EXCL, 0600);
	if (fd >= 0) {
		created = 1;
		if (ftruncate(fd, sizeof(struct shared)) < 0)
			goto fail;
	} else {
		deadline(&ts);
		for (;;) {
			struct stat st;
			fd = shm_open(c->name, O_RDWR, 0600);
			if (fd >= 0 && fstat(fd, &st) == 0 && (size_t)st.st_size >= sizeof(*sh))
				break;
			if (fd >= 0)
				close(fd);
			fd = -1;
			usleep(1000);
			struct timespec now;
			clock_gettime(CLOCK_REALTIME, &now);
			if (now.tv_sec > ts.tv_sec)
				goto fail;
		}
	}
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	fd = -1;
	if (sh == MAP_FAILED)
		goto fail;
	if (created) {
		pthread_mutexattr_t ma;
		pthread_condattr_t ca;
		pthread_mutexattr_init(&ma);
		pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
		pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST);
		pthread_mutex_init(&sh->mu, &ma);
		pthread_condattr_init(&ca);
		pthread_condattr_setpshared(&ca, PTHREAD_PROCESS_SHARED);
		pthread_cond_init(&sh->cv, &ca);
		sh->nranks = nranks;
		__atomic_store_n(&sh->magic, MAGIC, __ATOMIC_RELEASE);
	} else {
		deadline(&ts);
		while (__atomic_load_n(&sh->magic, __ATOMIC_ACQUIRE) != MAGIC) {
			struct timespec now;
			usleep(1000);
			clock_gettime(CLOCK_REALTIME, &now);
			if (now.tv_sec > ts.tv_sec)
				goto fail;
		}
		if (sh->nranks != nranks) {
			snprintf(last_error, sizeof(last_error),
				 "fake NCCL: rank %d asked for %d ranks, the communicator has %d", rank,
				 nranks, sh->nranks);
			munmap(sh, sizeof(*sh));
			free(c);
			return ncclInvalidUsage;
		}
	}
	c->sh = sh;
	c->rank = rank;
	c->nranks = nranks;
	if (barrier(c) != ncclSuccess) {
		munmap(sh, sizeof(*sh));
		free(c);
		return ncclSystemError;
	}
	/* Everyone has mapped it: the name can go (the mapping stays). */
	if (rank == 0)
		shm_unlink(c->name);
	*out = c;
	return ncclSuccess;
fail:
	snprintf(last_error, sizeof(last_error), "fake NCCL: rank %d cannot set up \"%s\": %s",
		 rank, c->name, strerror(errno ? errno : ETIMEDOUT));
	if (fd >= 0)
		close(fd);
	if (sh != MAP_FAILED)
		munmap(sh, sizeof(*sh));
	if (created)
		shm_unlink(c->name);
	free(c);
	return ncclSystemError;
}

API ncclResult_t ncclBroadcast(const void *send, void *recv, size_t count, int datatype,
			       int root, ncclComm_t c, void *stream)
{
	size_t esize = datatype == 0 || datatype == 1 ? 1 : 0; /* ncclInt8, ncclUint8 */
	uint64_t len, off = 0;
	const char *fail = getenv("FAKENCCL_FAIL_BCAST");

	(void)stream;
	if (!c || root < 0 || root >= c->nranks || !esize)
		return ncclInvalidArgument;
	if (fail && atoi(fail) == __atomic_add_fetch(&bcast_calls, 1, __ATOMIC_RELAXED)) {
		snprintf(last_error, sizeof(last_error), "fake NCCL: injected broadcast failure");
		return ncclInternalError;
	}
	len = (uint64_t)count * esize;
	do {
		uint64_t n = len - off < STAGE ? len - off : STAGE;
		if (barrier(c) != ncclSuccess)
			return ncclSystemError;
		if (c->rank == root) {
			memcpy(c->sh->stage, (const char *)send + off, n);
			if (recv != send)
				memcpy((char *)recv + off, (const char *)send + off, n);
		}
		if (barrier(c) != ncclSuccess)
			return ncclSystemError;
		if (c->rank != root)
			memcpy((char *)recv + off, c->sh->stage, n);
		off += n;
	} while (off < len);
	return barrier(c);
}

API ncclResult_t ncclBcast(void *buff, size_t count, int datatype, int root, ncclComm_t c,
			   void *stream)
{
	return ncclBroadcast(buff, buff, count, datatype, root, c, stream);
}

API ncclResult_t ncclGroupStart(void)
{
	return ncclSuccess;
}

API ncclResult_t ncclGroupEnd(void)
{
	return ncclSuccess;
}

API ncclResult_t ncclCommCount(const ncclComm_t c, int *n)
{
	if (!c || !n)
		return ncclInvalidArgument;
	*n = c->nranks;
	return ncclSuccess;
}

API ncclResult_t ncclCommUserRank(const ncclComm_t c, int *r)
{
	if (!c || !r)
		return ncclInvalidArgument;
	*r = c->rank;
	return ncclSuccess;
}

API ncclResult_t ncclCommGetAsyncError(ncclComm_t c, ncclResult_t *e)
{
	if (!c || !e)
		return ncclInvalidArgument;
	*e = c->async;
	return ncclSuccess;
}

static void comm_free(ncclComm_t c)
{
	if (!c)
		return;
	munmap(c->sh, sizeof(*c->sh));
	free(c);
}

API ncclResult_t ncclCommDestroy(ncclComm_t c)
{
	comm_free(c);
	return ncclSuccess;
}

API ncclResult_t ncclCommAbort(ncclComm_t c)
{
	if (c && lock(c->sh) == 0) {
		c->sh->broken = 1;
		pthread_cond_broadcast(&c->sh->cv);
		pthread_mutex_unlock(&c->sh->mu);
	}
	comm_free(c);
	return ncclSuccess;
}

API const char *ncclGetErrorString(ncclResult_t r)
{
	switch (r) {
	case ncclSuccess:
		return "no error";
	case ncclUnhandledCudaError:
		return "unhandled cuda error";
	case ncclSystemError:
		return "unhandled system error";
	case ncclInternalError:
		return "internal error";
	case ncclInvalidArgument:
		return "invalid argument";
	case ncclInvalidUsage:
		return "invalid usage";
	case ncclRemoteError:
		return "remote process exited or there was a network error";
	default:
		return "unknown result code";
	}
}

API const char *ncclGetLastError(ncclComm_t c)
{
	(void)c;
	return last_error;
}
