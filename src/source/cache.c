/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The local write-through cache: a decorator in front of any remote source (http, later s3
 * and gs), chosen by the context's cache directory. An entry is three files named by a hash
 * of the URI: KEY.data (the object's bytes), KEY.json (the sidecar: URI, size, identity,
 * time; its modification time is the last use, for least-recently-used eviction) and KEY.lock
 * (flock'ed by the one process that fills the entry; never removed while in use). A fill
 * writes KEY.part; it becomes KEY.data only complete, after fsync, by rename, and the sidecar
 * is written the same way after it, so that an entry is valid exactly when its sidecar names
 * the URI and KEY.data has the sidecar's size. A crash leaves at most a KEY.part, which the
 * next process to take the lock truncates or removes.
 *
 * While a fill is on, each read the engine submits goes to the remote source's own read
 * queue; when it completes, its bytes are handed to a writer thread (pwrite at the read's
 * offset) and the read is reported to the engine only once written, so that the destination
 * is never touched by the engine (conversion, staging-buffer reuse, the caller's callback)
 * while the writer still copies from it, and the worker goes on driving the network in the
 * meantime. A failed write (disk full) drops the entry and never fails the load.
 *
 * The writes bypass the page cache (O_DIRECT) for the whole pages inside each read, from the
 * destination itself when it lies at the file's offset modulo the page size (else through a
 * 16 MiB aligned bounce buffer), with the partial pages at its ends written buffered through a
 * second descriptor; pages are never shared between the two kinds of write, so the page cache
 * never holds a stale copy. Measured on the 2-core VM of bench/RESULTS.md (issue 10, runs 8-9):
 * buffered writes of a 4.26 GiB object ran into the kernel's dirty-page limit and then at
 * writeback speed (dd with fsync: 0.38 GB/s; O_DIRECT 16 MiB writes: 1.5 GB/s), so a cold
 * cached load from loopback nginx took 6.9-8.0 s buffered, 3.35-3.75 s O_DIRECT, 1.7-2.9 s
 * without the cache.
 * WEIGHTLIFT_CACHE_DIRECT=0 writes everything buffered (a file system whose O_DIRECT is slow);
 * one that refuses O_DIRECT at open gets buffered writes, and a write it refuses (EINVAL) is
 * done again buffered.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "source/cache.h"
#include "source/file.h"

#define FILL_CHUNK (16u << 20) /* the background fill's read unit (cache_fill=full) */
#define BOUNCE_SZ (16u << 20)  /* the O_DIRECT bounce buffer (a misaligned destination) */

struct span {
	uint64_t b, e;
};

struct cache_rq;

/* A read in flight through the cache's queue. */
struct cslot {
	struct wlift__read r; /* as the engine submitted it (its tag) */
	struct cache_src *src;
	struct cache_rq *q;
	int64_t res;
	int used;
	struct cslot *next; /* in the writer's job list, then in the queue's done list */
};

struct cache_src {
	struct wlift__source base;
	struct wlift__source *inner;
	char *dir, *data, *meta, *part, *lockp;
	char etag[128];
	int fd;	    /* KEY.part, write only */
	int dfd;    /* KEY.part again, O_DIRECT (-1: every write buffered) */
	size_t page; /* the alignment of the O_DIRECT writes: the page size */
	uint8_t *bounce; /* BOUNCE_SZ, page-aligned, made at the first misaligned write */
	int lockfd; /* KEY.lock, flock'ed for the whole fill */
	uint64_t max_bytes;
	int fill_full;
	wlift_log_fn log;
	void *log_user;
	int log_level;

	pthread_mutex_t mu; /* everything below */
	pthread_cond_t cv;  /* the writer: a job, or stop */
	struct cslot *jobs, *jobs_tail;
	int stop;
	int failed;	/* a write failed: no entry (read atomically by the queue) */
	int committed;	/* the entry exists (or is being made) */
	struct span *cov; /* bytes written so far, sorted and disjoint */
	size_t ncov, capcov;
	pthread_t writer, filler;
	int filler_started;
};

struct cache_rq {
	struct wlift__rq base;
	struct wlift__rq *inner;
	struct cslot *slots; /* depth of them */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct cslot *done, *done_tail; /* written, to report */
	unsigned writing;		/* handed to a writer, not yet written */
};

/* ---- small helpers ---------------------------------------------------------------------- */

static void clog_(const struct cache_src *cs, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void clog_(const struct cache_src *cs, int level, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	if (!cs->log || level > cs->log_level)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	cs->log(cs->log_user, level, buf);
}

static char *cat3(const char *a, const char *b, const char *c)
{
	size_t na = strlen(a), nb = strlen(b), nc = strlen(c);
	char *p = malloc(na + nb + nc + 1);

	if (p) {
		memcpy(p, a, na);
		memcpy(p + na, b, nb);
		memcpy(p + na + nb, c, nc + 1);
	}
	return p;
}

/* The entry's name: 128 bits of two FNV-1a variants of the URI (the sidecar names the URI,
 * so a collision is a miss, never the wrong bytes). */
static void key_of(const char *uri, char out[40])
{
	uint64_t h1 = wlift__hash_str(uri), h2 = 0x84222325cbf29ce4ull;

	for (const char *p = uri; *p; p++) {
		h2 ^= (uint8_t)*p;
		h2 *= 0x100000001b3ull;
		h2 ^= h2 >> 29;
	}
	snprintf(out, 40, "/%016llx%016llx", (unsigned long long)h1, (unsigned long long)h2);
}

/* mkdir -p, mode 0755. 0 or -errno. */
static int mkdirs(const char *dir)
{
	char *p = strdup(dir);
	int ret = 0;

	if (!p)
		return -ENOMEM;
	for (char *s = p + 1;; s++) {
		if (*s == '/' || *s == '\0') {
			char c = *s;
			*s = '\0';
			if (mkdir(p, 0755) && errno != EEXIST) {
				ret = -errno;
				break;
			}
			*s = c;
			if (!c)
				break;
		}
	}
	free(p);
	return ret;
}

static int pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
	const uint8_t *b = buf;

	while (len) {
		ssize_t n = pwrite(fd, b, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		b += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/* Write [off, off + len) of the object from buf: whole pages O_DIRECT through dfd, the partial
 * pages at both ends buffered through fd (the header comment says why). The writer and the
 * filler may run at once, on disjoint ranges: a page they share is a partial page of both,
 * written buffered by each. bounce is the caller's own (NULL: a misaligned buf is written
 * buffered). 0 or -errno. */
static int write_span(struct cache_src *cs, uint8_t **bounce, const uint8_t *buf, size_t len,
		      uint64_t off)
{
	uint64_t a = (off + cs->page - 1) / cs->page * cs->page;
	uint64_t z = (off + len) / cs->page * cs->page;
	const uint8_t *p = buf + (a - off);
	int ret = 0;

	if (cs->dfd < 0 || a >= z)
		return pwrite_all(cs->fd, buf, len, off);
	if (a > off)
		ret = pwrite_all(cs->fd, buf, (size_t)(a - off), off);
	if (!ret && off + len > z)
		ret = pwrite_all(cs->fd, buf + (z - off), (size_t)(off + len - z), z);
	if (ret)
		return ret;
	if ((uintptr_t)p % cs->page == 0) {
		ret = pwrite_all(cs->dfd, p, (size_t)(z - a), a);
	} else {
		if (!bounce)
			return pwrite_all(cs->fd, p, (size_t)(z - a), a);
		if (!*bounce) {
			void *m = NULL;
			if (posix_memalign(&m, cs->page, BOUNCE_SZ))
				return pwrite_all(cs->fd, p, (size_t)(z - a), a);
			*bounce = m;
		}
		for (uint64_t o = a; !ret && o < z;) {
			size_t n = z - o < BOUNCE_SZ ? (size_t)(z - o) : BOUNCE_SZ;
			memcpy(*bounce, p + (o - a), n);
			ret = pwrite_all(cs->dfd, *bounce, n, o);
			o += n;
		}
	}
	/* Refused (a file system without O_DIRECT for this file, or a short write that left
	 * the next one misaligned): the same pages buffered; rewriting a page is harmless. */
	if (ret == -EINVAL)
		ret = pwrite_all(cs->fd, p, (size_t)(z - a), a);
	return ret;
}

static int fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), ret = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd))
		ret = -errno;
	close(fd);
	return ret;
}

/* ---- sidecars --------------------------------------------------------------------------- */

struct sidecar {
	char uri[4096];
	char etag[128];
	uint64_t size;
	int64_t time;
};

/* Read sidecar path: 0, or -1 when missing or not ours. */
static int sidecar_read(const char *path, struct sidecar *sc)
{
	json_object *o = json_object_from_file(path), *v;
	int ret = -1;

	memset(sc, 0, sizeof(*sc));
	if (!o)
		return -1;
	if (!json_object_is_type(o, json_type_object))
		goto out;
	if (!json_object_object_get_ex(o, "uri", &v) || !json_object_is_type(v, json_type_string))
		goto out;
	snprintf(sc->uri, sizeof(sc->uri), "%s", json_object_get_string(v));
	if (!json_object_object_get_ex(o, "etag", &v) || !json_object_is_type(v, json_type_string))
		goto out;
	snprintf(sc->etag, sizeof(sc->etag), "%s", json_object_get_string(v));
	if (!json_object_object_get_ex(o, "size", &v) || !json_object_is_type(v, json_type_int) ||
	    json_object_get_int64(v) < 0)
		goto out;
	sc->size = (uint64_t)json_object_get_int64(v);
	if (json_object_object_get_ex(o, "time", &v) && json_object_is_type(v, json_type_int))
		sc->time = json_object_get_int64(v);
	ret = 0;
out:
	json_object_put(o);
	return ret;
}

/* Write the sidecar of cs atomically (a temporary file, fsync, rename). 0 or -errno. */
static int sidecar_write(const struct cache_src *cs)
{
	json_object *o = json_object_new_object();
	char *tmp = cat3(cs->meta, ".tmp", "");
	const char *text;
	int fd = -1, ret = -ENOMEM;

	if (!o || !tmp)
		goto out;
	json_object_object_add(o, "uri", json_object_new_string(cs->base.uri));
	json_object_object_add(o, "size", json_object_new_int64((int64_t)cs->base.size));
	json_object_object_add(o, "etag", json_object_new_string(cs->etag));
	json_object_object_add(o, "time", json_object_new_int64((int64_t)time(NULL)));
	json_object_object_add(o, "version", json_object_new_int(1));
	text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
						      JSON_C_TO_STRING_NOSLASHESCAPE);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		ret = -errno;
		goto out;
	}
	ret = pwrite_all(fd, text, strlen(text), 0);
	if (!ret && fsync(fd))
		ret = -errno;
	if (!ret && rename(tmp, cs->meta))
		ret = -errno;
out:
	if (fd >= 0) {
		close(fd);
		if (ret)
			unlink(tmp);
	}
	free(tmp);
	json_object_put(o);
	return ret;
}

/* A valid entry for uri at base (sidecar names it, data has its size)? */
static int entry_valid(const char *uri, const char *meta, const char *data, struct sidecar *sc)
{
	struct stat st;

	if (sidecar_read(meta, sc) || strcmp(sc->uri, uri) != 0)
		return 0;
	if (stat(data, &st) || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != sc->size)
		return 0;
	return 1;
}

/* Remove an entry: the sidecar first (the entry stops being valid), then the data. */
static void entry_remove(const char *meta, const char *data)
{
	unlink(meta);
	unlink(data);
}

/* Take path's lock without waiting: the fd, -EWOULDBLOCK when another process holds it, or
 * another -errno. The lock file is re-checked after locking: a `cache clear` may have
 * removed it in between (then a new one is made). */
static int lock_nb(const char *path)
{
	for (int tries = 0; tries < 4; tries++) {
		struct stat a, b;
		int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
		if (fd < 0)
			return -errno;
		if (flock(fd, LOCK_EX | LOCK_NB)) {
			int e = errno;
			close(fd);
			return e == EWOULDBLOCK ? -EWOULDBLOCK : -e;
		}
		if (fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_ino == b.st_ino &&
		    a.st_dev == b.st_dev)
			return fd;
		close(fd);
	}
	return -EAGAIN;
}

/* ---- eviction --------------------------------------------------------------------------- */

struct victim {
	char key[40];
	int64_t used; /* ns */
	uint64_t size;
};

static int by_use(const void *a, const void *b)
{
	const struct victim *x = a, *y = b;

	return x->used < y->used ? -1 : x->used > y->used;
}

static int64_t mtime_ns(const struct stat *st)
{
	return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

/* Make room for need more bytes under max (0: no limit) by removing the least recently used
 * complete entries of dir other than skip_key. Called with the directory's lock held. */
static void evict(const struct cache_src *cs, const char *dir, const char *skip_key,
		  uint64_t need, uint64_t max)
{
	struct victim *v = NULL;
	size_t n = 0, cap = 0;
	uint64_t total = need;
	struct dirent *e;
	DIR *dd;

	if (!max || !(dd = opendir(dir)))
		return;
	while ((e = readdir(dd))) {
		size_t len = strlen(e->d_name);
		struct stat sm, sd;
		char *meta, *data;
		if (len != 37 || strcmp(e->d_name + 32, ".json") != 0)
			continue;
		meta = cat3(dir, "/", e->d_name);
		data = meta ? strdup(meta) : NULL;
		if (data)
			memcpy(data + strlen(data) - 5, ".data", 5);
		if (data && stat(meta, &sm) == 0 && stat(data, &sd) == 0) {
			if (n == cap) {
				struct victim *nv = realloc(v, (cap ? cap * 2 : 16) * sizeof(*v));
				if (!nv) {
					free(meta);
					free(data);
					break;
				}
				v = nv;
				cap = cap ? cap * 2 : 16;
			}
			snprintf(v[n].key, sizeof(v[n].key), "/%.32s", e->d_name);
			v[n].used = mtime_ns(&sm);
			v[n].size = (uint64_t)sd.st_size;
			if (strcmp(v[n].key, skip_key) != 0) {
				total += v[n].size;
				n++;
			}
		}
		free(meta);
		free(data);
	}
	closedir(dd);
	if (n)
		qsort(v, n, sizeof(*v), by_use);
	for (size_t i = 0; i < n && total > max; i++) {
		char *meta = cat3(dir, v[i].key, ".json"), *data = cat3(dir, v[i].key, ".data");
		if (meta && data) {
			entry_remove(meta, data);
			total -= v[i].size;
			clog_(cs, WLIFT_LOG_INFO, "cache %s: evicted %s%s (%llu bytes, least recently "
			      "used) to stay under %llu bytes", dir, dir, v[i].key,
			      (unsigned long long)v[i].size, (unsigned long long)max);
		}
		free(meta);
		free(data);
	}
	free(v);
}

/* ---- the fill --------------------------------------------------------------------------- */

/* Record [b, e) as written; mu held. 0 or -ENOMEM. */
static int cover_add(struct cache_src *cs, uint64_t b, uint64_t e)
{
	size_t i = 0, j;

	if (b >= e)
		return 0;
	while (i < cs->ncov && cs->cov[i].e < b)
		i++;
	/* Spans i..j-1 touch or overlap [b, e): merge them into one. */
	j = i;
	while (j < cs->ncov && cs->cov[j].b <= e) {
		if (cs->cov[j].b < b)
			b = cs->cov[j].b;
		if (cs->cov[j].e > e)
			e = cs->cov[j].e;
		j++;
	}
	if (j == i) {
		if (cs->ncov == cs->capcov) {
			size_t cap = cs->capcov ? cs->capcov * 2 : 16;
			struct span *ns = realloc(cs->cov, cap * sizeof(*ns));
			if (!ns)
				return -ENOMEM;
			cs->cov = ns;
			cs->capcov = cap;
		}
		memmove(cs->cov + i + 1, cs->cov + i, (cs->ncov - i) * sizeof(*cs->cov));
		cs->ncov++;
	} else if (j > i + 1) {
		memmove(cs->cov + i + 1, cs->cov + j, (cs->ncov - j) * sizeof(*cs->cov));
		cs->ncov -= j - i - 1;
	}
	cs->cov[i].b = b;
	cs->cov[i].e = e;
	return 0;
}

static int covered(const struct cache_src *cs)
{
	return cs->base.size == 0 ||
	       (cs->ncov == 1 && cs->cov[0].b == 0 && cs->cov[0].e == cs->base.size);
}

static uint64_t covered_bytes(const struct cache_src *cs)
{
	uint64_t n = 0;

	for (size_t i = 0; i < cs->ncov; i++)
		n += cs->cov[i].e - cs->cov[i].b;
	return n;
}

/* A write failed: drop the fill (warn once); mu held. */
static void fail_locked(struct cache_src *cs, const char *what, int err)
{
	if (cs->failed)
		return;
	__atomic_store_n(&cs->failed, 1, __ATOMIC_RELEASE);
	unlink(cs->part);
	clog_(cs, WLIFT_LOG_WARN, "%s: cache %s: %s failed (%s): the object is not cached; the "
	      "load goes on", cs->base.uri, cs->dir, what, strerror(-err));
}

/* Make the entry visible: fsync, evict for room, rename, sidecar, directory fsync. */
static void commit(struct cache_src *cs)
{
	char key[40];
	const char *what = "fsync";
	int ret = 0, dl = -1;
	char *dlock = cat3(cs->dir, "/.lock", "");

	if (fsync(cs->fd))
		ret = -errno;
	if (!ret && !dlock)
		ret = -ENOMEM;
	if (!ret) {
		/* The directory lock serialises eviction and commits of all processes. */
		dl = open(dlock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
		if (dl < 0 || flock(dl, LOCK_EX)) {
			ret = -errno;
			what = "locking the directory";
		}
	}
	if (!ret) {
		key_of(cs->base.uri, key);
		evict(cs, cs->dir, key, cs->base.size, cs->max_bytes);
		what = "rename";
		if (rename(cs->part, cs->data))
			ret = -errno;
	}
	if (!ret) {
		what = "writing the sidecar";
		ret = sidecar_write(cs);
		if (ret)
			unlink(cs->data);
	}
	if (!ret)
		fsync_dir(cs->dir);
	if (dl >= 0)
		close(dl);
	free(dlock);
	pthread_mutex_lock(&cs->mu);
	if (ret)
		fail_locked(cs, what, ret);
	pthread_mutex_unlock(&cs->mu);
	if (!ret)
		clog_(cs, WLIFT_LOG_INFO, "%s: cached in %s (%llu bytes)", cs->base.uri, cs->data,
		      (unsigned long long)cs->base.size);
}

/* Account written bytes [b, e); mu held. 1 when the object is now complete: the caller
 * then commits (after reporting the read, so that the fsync is off the load's path). */
static int written_locked(struct cache_src *cs, uint64_t b, uint64_t e, int err)
{
	if (cs->failed || cs->committed)
		return 0;
	if (!err)
		err = cover_add(cs, b, e);
	if (err) {
		fail_locked(cs, "a write", err);
		return 0;
	}
	if (!covered(cs))
		return 0;
	__atomic_store_n(&cs->committed, 1, __ATOMIC_RELEASE);
	return 1;
}

/* Hand a written read back to its queue. */
static void job_done(struct cslot *sl)
{
	struct cache_rq *q = sl->q;

	pthread_mutex_lock(&q->mu);
	sl->next = NULL;
	if (q->done_tail)
		q->done_tail->next = sl;
	else
		q->done = sl;
	q->done_tail = sl;
	q->writing--;
	pthread_cond_broadcast(&q->cv);
	pthread_mutex_unlock(&q->mu);
}

static void *writer_main(void *arg)
{
	struct cache_src *cs = arg;

	pthread_mutex_lock(&cs->mu);
	for (;;) {
		struct cslot *sl;
		int skip, err = 0, done = 0;
		while (!cs->jobs && !cs->stop)
			pthread_cond_wait(&cs->cv, &cs->mu);
		if (!cs->jobs)
			break;
		sl = cs->jobs;
		cs->jobs = sl->next;
		if (!cs->jobs)
			cs->jobs_tail = NULL;
		skip = cs->failed || cs->committed;
		pthread_mutex_unlock(&cs->mu);
		if (!skip)
			err = write_span(cs, &cs->bounce, sl->r.dst, (size_t)sl->res, sl->r.off);
		pthread_mutex_lock(&cs->mu);
		if (!skip)
			done = written_locked(cs, sl->r.off, sl->r.off + (uint64_t)sl->res, err);
		pthread_mutex_unlock(&cs->mu);
		job_done(sl);
		if (done)
			commit(cs);
		pthread_mutex_lock(&cs->mu);
	}
	pthread_mutex_unlock(&cs->mu);
	return NULL;
}

/* cache_fill=full: after a load, read what no load has read (synchronously through the
 * remote source, one range at a time) and complete the entry. */
static void *filler_main(void *arg)
{
	struct cache_src *cs = arg;
	uint8_t *mem = NULL, *buf = NULL;
	uint64_t off = 0;

	/* Page-aligned plus one page: each range is read at its offset modulo the page size, so
	 * that its whole pages go out O_DIRECT straight from it. */
	if (posix_memalign((void **)&mem, cs->page, FILL_CHUNK + cs->page))
		mem = NULL;
	buf = mem;

	for (;;) {
		uint64_t b = UINT64_MAX, e = 0;
		wlift_diag d;
		int err, done;
		pthread_mutex_lock(&cs->mu);
		if (!buf && !cs->failed)
			fail_locked(cs, "the background fill", -ENOMEM);
		if (cs->failed || cs->committed || cs->stop) {
			pthread_mutex_unlock(&cs->mu);
			break;
		}
		/* The first gap at or after off. */
		for (size_t i = 0; i <= cs->ncov; i++) {
			uint64_t gb = i ? cs->cov[i - 1].e : 0;
			uint64_t ge = i < cs->ncov ? cs->cov[i].b : cs->base.size;
			if (ge > gb && ge > off) {
				b = gb > off ? gb : off;
				e = ge;
				break;
			}
		}
		pthread_mutex_unlock(&cs->mu);
		if (b == UINT64_MAX) {
			if (!off)
				break;
			off = 0; /* gaps before off (none should remain) */
			continue;
		}
		if (e - b > FILL_CHUNK)
			e = b + FILL_CHUNK;
		wlift_diag_clear(&d);
		buf = mem + b % cs->page;
		err = wlift__source_read(cs->inner, buf, (size_t)(e - b), b, &d);
		if (!err)
			err = write_span(cs, NULL, buf, (size_t)(e - b), b);
		pthread_mutex_lock(&cs->mu);
		if (err && !cs->failed)
			clog_(cs, WLIFT_LOG_WARN, "%s: the background cache fill stopped: %s",
			      cs->base.uri, d.message[0] ? d.message : strerror(-err));
		done = written_locked(cs, b, e, err);
		pthread_mutex_unlock(&cs->mu);
		if (done)
			commit(cs);
		off = e;
	}
	free(mem);
	return NULL;
}

/* ---- the read queue --------------------------------------------------------------------- */

static int crq_submit(struct wlift__rq *rq, struct wlift__source *s, const struct wlift__read *r,
		      wlift_diag *d)
{
	struct cache_rq *q = (struct cache_rq *)rq;
	struct cache_src *cs = (struct cache_src *)s;
	struct wlift__read ir = *r;
	struct cslot *sl = NULL;
	int ret;

	if (rq->inflight >= rq->depth)
		return -EBUSY;
	for (unsigned i = 0; i < rq->depth && !sl; i++)
		if (!q->slots[i].used)
			sl = &q->slots[i];
	if (!sl)
		return -EBUSY; /* every slot waits for its write */
	ir.tag = (uint64_t)(sl - q->slots);
	ret = q->inner->ops->submit(q->inner, cs->inner, &ir, d);
	if (ret)
		return ret;
	sl->r = *r;
	sl->src = cs;
	sl->q = q;
	sl->used = 1;
	rq->inflight++;
	return 0;
}

/* Report slot sl's outcome res as a completion. */
static int report(struct cache_rq *q, struct cslot *sl, int64_t res, struct wlift__rdone *c)
{
	c->tag = sl->r.tag;
	c->res = res;
	sl->used = 0;
	q->base.inflight--;
	return 1;
}

static int crq_reap(struct wlift__rq *rq, int wait, struct wlift__rdone *c, wlift_diag *d)
{
	struct cache_rq *q = (struct cache_rq *)rq;

	for (;;) {
		struct wlift__rdone ic;
		struct cslot *sl;
		struct cache_src *cs;
		unsigned writing;
		int ret;

		pthread_mutex_lock(&q->mu);
		sl = q->done;
		if (sl) {
			q->done = sl->next;
			if (!q->done)
				q->done_tail = NULL;
		}
		writing = q->writing;
		pthread_mutex_unlock(&q->mu);
		if (sl)
			return report(q, sl, sl->res, c);
		if (!q->inner->inflight) {
			if (!writing || !wait)
				return 0;
			/* Only writes are pending: wait for the writer. */
			pthread_mutex_lock(&q->mu);
			while (!q->done && q->writing)
				pthread_cond_wait(&q->cv, &q->mu);
			pthread_mutex_unlock(&q->mu);
			continue;
		}
		/* With writes pending, poll the network and nap briefly on the writer rather
		 * than block in the remote queue while a written read waits to be reported. */
		ret = q->inner->ops->reap(q->inner, writing ? 0 : wait, &ic, d);
		if (ret < 0)
			return ret;
		if (ret == 0) {
			struct timespec ts;
			if (!wait)
				return 0;
			if (!writing)
				continue;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 200000;
			if (ts.tv_nsec >= 1000000000) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000;
			}
			pthread_mutex_lock(&q->mu);
			if (!q->done)
				pthread_cond_timedwait(&q->cv, &q->mu, &ts);
			pthread_mutex_unlock(&q->mu);
			continue;
		}
		sl = &q->slots[ic.tag];
		cs = sl->src;
		if (ic.res <= 0 || __atomic_load_n(&cs->failed, __ATOMIC_ACQUIRE) ||
		    __atomic_load_n(&cs->committed, __ATOMIC_ACQUIRE))
			return report(q, sl, ic.res, c);
		sl->res = ic.res;
		pthread_mutex_lock(&q->mu);
		q->writing++;
		pthread_mutex_unlock(&q->mu);
		pthread_mutex_lock(&cs->mu);
		sl->next = NULL;
		if (cs->jobs_tail)
			cs->jobs_tail->next = sl;
		else
			cs->jobs = sl;
		cs->jobs_tail = sl;
		pthread_cond_signal(&cs->cv);
		pthread_mutex_unlock(&cs->mu);
	}
}

static void crq_cancel(struct wlift__rq *rq)
{
	struct cache_rq *q = (struct cache_rq *)rq;

	q->inner->ops->cancel(q->inner);
}

static void crq_destroy(struct wlift__rq *rq)
{
	struct cache_rq *q = (struct cache_rq *)rq;

	if (!q)
		return;
	if (q->inner)
		q->inner->ops->destroy(q->inner);
	/* No destination may be written from after this returns. */
	pthread_mutex_lock(&q->mu);
	while (q->writing)
		pthread_cond_wait(&q->cv, &q->mu);
	pthread_mutex_unlock(&q->mu);
	pthread_mutex_destroy(&q->mu);
	pthread_cond_destroy(&q->cv);
	free(q->slots);
	free(q);
}

static const struct wlift__rq_ops cache_rq_ops = {
	.name = "cache",
	.submit = crq_submit,
	.reap = crq_reap,
	.cancel = crq_cancel,
	.destroy = crq_destroy,
};

/* ---- source ops ------------------------------------------------------------------------- */

static int cache_queue(struct wlift__source *s, unsigned depth, unsigned flags,
		       struct wlift__rq **out, wlift_diag *d)
{
	struct cache_src *cs = (struct cache_src *)s;
	struct cache_rq *q;
	int ret;

	*out = NULL;
	q = calloc(1, sizeof(*q));
	if (!q || !(q->slots = calloc(depth ? depth : 1, sizeof(*q->slots)))) {
		free(q);
		return wlift__diag_set(d, -ENOMEM, s->uri, NULL, -1, NULL, NULL);
	}
	ret = cs->inner->ops->queue(cs->inner, depth ? depth : 1, flags, &q->inner, d);
	if (ret) {
		free(q->slots);
		free(q);
		return ret;
	}
	pthread_mutex_init(&q->mu, NULL);
	pthread_cond_init(&q->cv, NULL);
	q->base.ops = &cache_rq_ops;
	q->base.depth = depth ? depth : 1;
	*out = &q->base;
	return 0;
}

static int cache_probe(struct wlift__source *s, uint64_t off, uint64_t len, unsigned flags,
		       struct wlift__source_probe *p)
{
	struct cache_src *cs = (struct cache_src *)s;

	return cs->inner->ops->probe(cs->inner, off, len, flags, p);
}

static int cache_validate(struct wlift__source *s, wlift_diag *d)
{
	struct cache_src *cs = (struct cache_src *)s;
	int ret = cs->inner->ops->validate(cs->inner, d);

	/* The end of a load: with cache_fill=full, read the rest in the background. */
	pthread_mutex_lock(&cs->mu);
	if (!ret && cs->fill_full && !cs->failed && !cs->committed && !cs->filler_started &&
	    pthread_create(&cs->filler, NULL, filler_main, cs) == 0)
		cs->filler_started = 1;
	pthread_mutex_unlock(&cs->mu);
	return ret;
}

static void cache_counters(struct wlift__source *s, struct wlift__source_counters *c)
{
	struct cache_src *cs = (struct cache_src *)s;

	if (cs->inner->ops->counters)
		cs->inner->ops->counters(cs->inner, c);
}

static void cache_destroy(struct wlift__source *s)
{
	struct cache_src *cs = (struct cache_src *)s;

	if (cs->filler_started)
		pthread_join(cs->filler, NULL);
	pthread_mutex_lock(&cs->mu);
	cs->stop = 1;
	pthread_cond_signal(&cs->cv);
	pthread_mutex_unlock(&cs->mu);
	pthread_join(cs->writer, NULL);
	if (!cs->committed && !cs->failed) {
		unlink(cs->part);
		clog_(cs, WLIFT_LOG_INFO, "%s: only %llu of %llu bytes were read: not cached (a "
		      "partial load stores nothing unless cache_fill=full)", s->uri,
		      (unsigned long long)covered_bytes(cs), (unsigned long long)s->size);
	}
	if (cs->fd >= 0)
		close(cs->fd);
	if (cs->dfd >= 0)
		close(cs->dfd);
	free(cs->bounce);
	if (cs->lockfd >= 0)
		close(cs->lockfd); /* releases the fill's lock */
	wlift__source_unref(cs->inner);
	pthread_mutex_destroy(&cs->mu);
	pthread_cond_destroy(&cs->cv);
	free(cs->cov);
	free(cs->dir);
	free(cs->data);
	free(cs->meta);
	free(cs->part);
	free(cs->lockp);
	free(s->uri);
	free(cs);
}

/* One ops table per kind of remote source: the pipeline keeps one read queue per worker and
 * ops table, so cache sources in front of the same kind share a queue (and its
 * connections), and those in front of different kinds never do. */
static struct wlift__source_ops ops_tab[8];
static const struct wlift__source_ops *ops_inner[8];
static pthread_mutex_t ops_mu = PTHREAD_MUTEX_INITIALIZER;

static const struct wlift__source_ops *ops_for(const struct wlift__source_ops *inner)
{
	const struct wlift__source_ops *r = NULL;

	pthread_mutex_lock(&ops_mu);
	for (size_t i = 0; i < WLIFT_ARRAY_SIZE(ops_tab) && !r; i++) {
		if (ops_inner[i] == inner) {
			r = &ops_tab[i];
		} else if (!ops_inner[i]) {
			ops_tab[i] = (struct wlift__source_ops){
				.kind = "cache",
				.probe = cache_probe,
				.queue = cache_queue,
				.validate = cache_validate,
				.destroy = cache_destroy,
				.counters = inner->counters ? cache_counters : NULL,
			};
			ops_inner[i] = inner;
			r = &ops_tab[i];
		}
	}
	pthread_mutex_unlock(&ops_mu);
	return r;
}

/* ---- open ------------------------------------------------------------------------------- */

struct paths {
	char *dir, *data, *meta, *part, *lock;
};

static void paths_free(struct paths *p)
{
	free(p->dir);
	free(p->data);
	free(p->meta);
	free(p->part);
	free(p->lock);
}

static int paths_of(const char *dir, const char *uri, struct paths *p)
{
	char key[40];

	memset(p, 0, sizeof(*p));
	key_of(uri, key);
	p->dir = strdup(dir);
	p->data = cat3(dir, key, ".data");
	p->meta = cat3(dir, key, ".json");
	p->part = cat3(dir, key, ".part");
	p->lock = cat3(dir, key, ".lock");
	if (!p->dir || !p->data || !p->meta || !p->part || !p->lock) {
		paths_free(p);
		return -ENOMEM;
	}
	return 0;
}

/* Serve the entry: mark it used (LRU), remove a stale fill's leftovers, open KEY.data
 * through the local file source under the remote URI's name. */
static int serve(wlift_ctx *ctx, const char *uri, const struct paths *p,
		 struct wlift__source **out, wlift_diag *d)
{
	int lk;

	utimensat(AT_FDCWD, p->meta, NULL, 0);
	lk = lock_nb(p->lock);
	if (lk >= 0) {
		unlink(p->part); /* a crashed fill's: nobody holds the lock */
		close(lk);
	}
	return wlift__file_open(ctx, p->data, uri, out, d);
}

static const char *time_text(int64_t t, char *buf, size_t cap)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (!gmtime_r(&tt, &tm) || !strftime(buf, cap, "%Y-%m-%d %H:%M:%S UTC", &tm))
		snprintf(buf, cap, "%lld", (long long)t);
	return buf;
}

int wlift__cache_open(wlift_ctx *ctx, const char *uri, wlift__remote_open_fn open_remote,
		      struct wlift__source **out, wlift_diag *d)
{
	struct wlift__source *inner = NULL;
	const struct wlift__source_ops *ops;
	struct wlift__source_probe pr;
	struct cache_src *cs = NULL;
	struct paths p = { 0 };
	struct sidecar sc;
	char *dir = NULL, when[64];
	int have, ret, lk = -1, fd = -1, offline;
	uint64_t max;
	wlift_diag d2;

	*out = NULL;
	ctx = wlift__ctx_or_default(ctx);
	if (!ctx)
		return open_remote(ctx, uri, out, d);
	ret = wlift__ctx_cache(ctx, &dir, &offline, &max);
	if (ret)
		return wlift__diag_set(d, ret, uri, NULL, -1, NULL, NULL);
	if (!dir) {
		if (offline)
			return wlift__diag_set(d, WLIFT_ECACHE, uri, NULL, -1, "cache.offline",
					       "%s: offline mode (WEIGHTLIFT_OFFLINE) needs a cache "
					       "directory (WEIGHTLIFT_CACHE_DIR) holding the object",
					       uri);
		return open_remote(ctx, uri, out, d);
	}
	ret = paths_of(dir, uri, &p);
	if (ret) {
		ret = wlift__diag_set(d, ret, uri, NULL, -1, NULL, NULL);
		goto out;
	}
	have = entry_valid(uri, p.meta, p.data, &sc);
	if (offline) {
		if (have)
			ret = serve(ctx, uri, &p, out, d);
		else
			ret = wlift__diag_set(d, WLIFT_ECACHE, uri, NULL, -1, "cache.offline",
					      "%s: offline mode (WEIGHTLIFT_OFFLINE) and the object "
					      "is not in the cache %s",
					      uri, dir);
		goto out;
	}
	wlift_diag_clear(&d2);
	ret = open_remote(ctx, uri, &inner, &d2);
	if (ret) {
		if (have && ret == WLIFT_ENET) {
			/* The Hugging Face hub client's rule: a server that cannot be reached at
			 * all does not stop a load that the cache can serve. */
			wlift__log(ctx, WLIFT_LOG_WARN,
				   "%s: the server cannot be reached (%s): serving the cached copy "
				   "of %s (ETag %s)",
				   uri, d2.message, time_text(sc.time, when, sizeof(when)), sc.etag);
			ret = serve(ctx, uri, &p, out, d);
			goto out;
		}
		if (d)
			*d = d2;
		goto out;
	}
	memset(&pr, 0, sizeof(pr));
	inner->ops->probe(inner, 0, 0, 0, &pr);
	if (have) {
		if (pr.etag[0] && strcmp(pr.etag, sc.etag) == 0 && pr.size == sc.size) {
			ret = serve(ctx, uri, &p, out, &d2);
			if (!ret)
				goto out;
			/* Evicted or cleared by another process in between: stream instead. */
			wlift__log(ctx, WLIFT_LOG_INFO, "%s: the cached copy went away (%s): "
				   "streaming", uri, d2.message);
			wlift_diag_clear(&d2);
			ret = 0;
			goto pass;
		}
		/* The server says the object changed: the copy is stale. */
		wlift__log(ctx, WLIFT_LOG_INFO,
			   "%s: changed on the server (%llu bytes, ETag %s; cached: %llu bytes, "
			   "ETag %s): the cached copy is dropped",
			   uri, (unsigned long long)pr.size, pr.etag[0] ? pr.etag : "none",
			   (unsigned long long)sc.size, sc.etag);
		entry_remove(p.meta, p.data);
	}
	if (!pr.etag[0]) {
		wlift__log(ctx, WLIFT_LOG_INFO, "%s: the server sends no ETag: not cached", uri);
		goto pass;
	}
	if (max && pr.size > max) {
		wlift__log(ctx, WLIFT_LOG_INFO,
			   "%s: %llu bytes is more than the cache's limit (%llu bytes): not cached",
			   uri, (unsigned long long)pr.size, (unsigned long long)max);
		goto pass;
	}
	ret = mkdirs(dir);
	if (!ret) {
		lk = lock_nb(p.lock);
		ret = lk < 0 ? lk : 0;
	}
	if (ret == -EWOULDBLOCK) {
		/* Another process fills this entry: stream without writing (no wait). */
		wlift__log(ctx, WLIFT_LOG_INFO,
			   "%s: another process is filling the cache entry: streaming without "
			   "writing it", uri);
		ret = 0;
		goto pass;
	}
	if (!ret) {
		/* Holding the lock, any KEY.part is a dead fill's: truncate it. */
		fd = open(p.part, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0)
			ret = -errno;
	}
	if (!ret && pr.size && fallocate(fd, 0, 0, (off_t)pr.size)) {
		/* Reserve the whole object first: a full disk (or quota, or file size limit) is
		 * found before anything is written, and costs the load nothing. File systems
		 * without fallocate are written as they are. */
		if (errno == ENOSPC || errno == EDQUOT || errno == EFBIG) {
			wlift__log(ctx, WLIFT_LOG_WARN, "%s: cache %s: reserving %llu bytes failed "
				   "(%s): the object is not cached; the load goes on", uri, dir,
				   (unsigned long long)pr.size, strerror(errno));
			ret = 0;
			goto pass;
		}
	}
	if (ret) {
		wlift__log(ctx, WLIFT_LOG_WARN, "%s: cache %s cannot be used (%s): not cached", uri,
			   dir, strerror(-ret));
		ret = 0;
		goto pass;
	}
	ops = ops_for(inner->ops);
	if (!ops) {
		wlift__log(ctx, WLIFT_LOG_WARN, "%s: too many kinds of remote source for the cache: "
			   "not cached", uri);
		goto pass;
	}
	cs = calloc(1, sizeof(*cs));
	if (!cs || wlift__source_init(&cs->base, ops, uri, inner->size)) {
		if (cs)
			free(cs->base.uri);
		free(cs);
		cs = NULL;
		ret = wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
		goto out;
	}
	cs->inner = inner;
	inner = NULL;
	cs->dir = p.dir;
	cs->data = p.data;
	cs->meta = p.meta;
	cs->part = p.part;
	cs->lockp = p.lock;
	memset(&p, 0, sizeof(p));
	snprintf(cs->etag, sizeof(cs->etag), "%s", pr.etag);
	cs->fd = fd;
	cs->page = (size_t)sysconf(_SC_PAGESIZE);
	cs->dfd = ctx->cache_direct ? open(cs->part, O_WRONLY | O_DIRECT | O_CLOEXEC) : -1;
	cs->lockfd = lk;
	fd = lk = -1;
	cs->max_bytes = max;
	cs->fill_full = ctx->cache_fill_full;
	cs->log = ctx->log;
	cs->log_user = ctx->log_user;
	cs->log_level = ctx->log_level;
	pthread_mutex_init(&cs->mu, NULL);
	pthread_cond_init(&cs->cv, NULL);
	if (pthread_create(&cs->writer, NULL, writer_main, cs)) {
		/* No writer: stream without caching. */
		inner = wlift__source_ref(cs->inner);
		cs->committed = 1; /* nothing to remove but the part */
		unlink(cs->part);
		pthread_mutex_destroy(&cs->mu);
		pthread_cond_destroy(&cs->cv);
		close(cs->fd);
		if (cs->dfd >= 0)
			close(cs->dfd);
		close(cs->lockfd);
		wlift__source_unref(cs->inner);
		free(cs->dir);
		free(cs->data);
		free(cs->meta);
		free(cs->part);
		free(cs->lockp);
		free(cs->base.uri);
		free(cs);
		cs = NULL;
		goto pass;
	}
	*out = &cs->base;
	ret = 0;
	goto out;
pass:
	*out = inner;
	inner = NULL;
out:
	if (fd >= 0) {
		close(fd);
		unlink(p.part);
	}
	if (lk >= 0)
		close(lk);
	wlift__source_unref(inner);
	paths_free(&p);
	free(dir);
	return ret;
}

/* ---- listing and clearing (weightlift cache ls|clear) ----------------------------------- */

static int dir_of(wlift_ctx *ctx, const char *dir, char **out, wlift_diag *d)
{
	int offline, ret;
	uint64_t max;

	*out = NULL;
	if (dir && *dir) {
		*out = strdup(dir);
		return *out ? 0 : wlift__diag_set(d, -ENOMEM, dir, NULL, -1, NULL, NULL);
	}
	ctx = wlift__ctx_or_default(ctx);
	if (!ctx)
		return wlift__diag_set(d, -ENOMEM, NULL, NULL, -1, NULL, NULL);
	ret = wlift__ctx_cache(ctx, out, &offline, &max);
	if (ret)
		return wlift__diag_set(d, ret, NULL, NULL, -1, NULL, NULL);
	if (!*out)
		return wlift__diag_set(d, WLIFT_ECACHE, NULL, NULL, -1, "cache.none",
				       "no cache directory (--cache-dir, WEIGHTLIFT_CACHE_DIR)");
	return 0;
}

/* The names of dir's entries with suffix suf ("KEY" only, with its leading '/'), sorted.
 * The count, or -errno. */
static int keys_of(const char *dir, char (**keys)[40], wlift_diag *d)
{
	char (*k)[40] = NULL;
	int n = 0, cap = 0;
	struct dirent *e;
	DIR *dd = opendir(dir);

	*keys = NULL;
	if (!dd) {
		if (errno == ENOENT)
			return 0;
		return wlift__diag_set(d, -errno, dir, NULL, -1, "cache.dir",
				       "cache %s: cannot list: %s", dir, strerror(errno));
	}
	while ((e = readdir(dd))) {
		size_t len = strlen(e->d_name);
		int dup = 0;
		if (len < 37 || e->d_name[32] != '.' || strspn(e->d_name, "0123456789abcdef") != 32)
			continue;
		for (int i = 0; i < n && !dup; i++)
			dup = strncmp(k[i] + 1, e->d_name, 32) == 0;
		if (dup)
			continue;
		if (n == cap) {
			char (*nk)[40] = realloc(k, (size_t)(cap ? cap * 2 : 16) * sizeof(*k));
			if (!nk) {
				closedir(dd);
				free(k);
				return wlift__diag_set(d, -ENOMEM, dir, NULL, -1, NULL, NULL);
			}
			k = nk;
			cap = cap ? cap * 2 : 16;
		}
		snprintf(k[n++], 40, "/%.32s", e->d_name);
	}
	closedir(dd);
	*keys = k;
	return n;
}

struct listed {
	struct sidecar sc;
	char *data;
	int64_t used; /* ns */
};

static int by_used(const void *a, const void *b)
{
	const struct listed *x = a, *y = b;

	return x->used < y->used ? -1 : x->used > y->used;
}

int wlift_cache_list(wlift_ctx *ctx, const char *dir,
		     int (*fn)(const wlift_cache_entry *e, void *user), void *user, wlift_diag *d)
{
	char *cdir = NULL, (*keys)[40] = NULL;
	struct listed *l = NULL;
	int n, m = 0, ret;

	ret = dir_of(ctx, dir, &cdir, d);
	if (ret)
		return ret;
	n = ret = keys_of(cdir, &keys, d);
	if (ret < 0)
		goto out;
	l = calloc(n ? (size_t)n : 1, sizeof(*l));
	if (!l) {
		ret = wlift__diag_set(d, -ENOMEM, cdir, NULL, -1, NULL, NULL);
		goto out;
	}
	for (int i = 0; i < n; i++) {
		char *meta = cat3(cdir, keys[i], ".json"), *data = cat3(cdir, keys[i], ".data");
		struct stat st;
		if (meta && data && sidecar_read(meta, &l[m].sc) == 0 &&
		    entry_valid(l[m].sc.uri, meta, data, &l[m].sc) && stat(meta, &st) == 0) {
			l[m].used = mtime_ns(&st);
			l[m].data = data;
			data = NULL;
			m++;
		}
		free(meta);
		free(data);
	}
	qsort(l, (size_t)m, sizeof(*l), by_used);
	ret = m;
	for (int i = 0; i < m && fn; i++) {
		wlift_cache_entry e = { l[i].sc.uri, l[i].data, l[i].sc.etag, l[i].sc.size,
					l[i].sc.time, l[i].used / 1000000000 };
		int r = fn(&e, user);
		if (r) {
			ret = r;
			break;
		}
	}
out:
	for (int i = 0; l && i < m; i++)
		free(l[i].data);
	free(l);
	free(keys);
	free(cdir);
	return ret;
}

int wlift_cache_clear(wlift_ctx *ctx, const char *dir, wlift_diag *d)
{
	static const char *const exts[] = { ".json", ".data", ".part", ".json.tmp" };
	char *cdir = NULL, (*keys)[40] = NULL;
	int n, removed = 0, ret;

	ret = dir_of(ctx, dir, &cdir, d);
	if (ret)
		return ret;
	n = ret = keys_of(cdir, &keys, d);
	for (int i = 0; i < n; i++) {
		char *lockp = cat3(cdir, keys[i], ".lock");
		int lk = lockp ? lock_nb(lockp) : -ENOMEM, any = 0;
		if (lk == -EWOULDBLOCK) {
			free(lockp);
			continue; /* being filled by another process */
		}
		for (size_t k = 0; k < WLIFT_ARRAY_SIZE(exts); k++) {
			char *p = cat3(cdir, keys[i], exts[k]);
			if (p && unlink(p) == 0 && k < 2)
				any = 1;
			free(p);
		}
		/* Removed while held, so that a process that opens it next makes a new one (and
		 * lock_nb re-checks that the one it locked is still there). */
		if (lockp)
			unlink(lockp);
		if (lk >= 0)
			close(lk);
		free(lockp);
		removed += any;
	}
	if (ret >= 0)
		ret = removed;
	free(keys);
	free(cdir);
	return ret;
}
