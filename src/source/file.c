/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Local file source. Reads are buffered preads done inside reap on the engine's worker (a
 * synchronous queue), or io_uring reads with one ring per worker (queue flag
 * WLIFT__RQ_URING), through the buffered descriptor or, for WLIFT__READ_DIRECT reads, a second
 * O_DIRECT descriptor opened once by ops->direct. Probes: page-cache residency, file system
 * kind, O_DIRECT alignment. Mapped mode gets a private writable mapping (ops->map). The
 * locator's stat and list for local paths are here too.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sys/mman.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <linux/magic.h>

#include "source/file.h"
#include "source/gds.h"
#include "source/uring.h"

struct file_source {
	struct wlift__source base;
	char *path;
	int fd;		   /* buffered */
	int dfd;	   /* O_DIRECT, -1 until ops->direct succeeds */
	int direct_err;	   /* ops->direct failed with this (0: not tried or fine) */
	pthread_mutex_t mu; /* guards dfd's opening */
	int64_t mtime_ns;  /* at open, to detect changes */
	int no_uring;	   /* the context disabled io_uring */
	/* Facts of the open file, probed once (a get_slice loads once per call): */
	int fs_kind;	    /* statfs, at open */
	uint32_t dio_align; /* statx, on the first probe that asks; atomic */
	int dio_known;	    /* atomic: dio_align is set */
	/* GPU Direct Storage: the cuFile handle of the O_DIRECT descriptor, registered on the
	 * first read_to_device (under mu) with the cuFile library gds. */
	struct wlift__gds *gds;
	void *gfh;
	int gds_err;	   /* registration failed with this (kept: not retried per read) */
	wlift_diag gds_diag;
};

static int64_t mtime_of(const struct stat *st)
{
	return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

/* ---- reads ------------------------------------------------------------------------------ */

static int64_t read_error(struct wlift__source *s, const struct wlift__read *r, uint64_t at,
			  int err, wlift_diag *d)
{
	return wlift__diag_set(d, err, s->uri, NULL, (int64_t)at, "io.read",
			       "%s: read of %zu bytes at offset %llu failed: %s%s", s->uri, r->len,
			       (unsigned long long)at, strerror(-err),
			       r->flags & WLIFT__READ_DIRECT ? " (O_DIRECT)" : "");
}

/* pread until len bytes or the end of the file. */
static int64_t file_read(struct wlift__source *s, const struct wlift__read *r, wlift_diag *d)
{
	const struct file_source *f = (const struct file_source *)s;
	int fd = r->flags & WLIFT__READ_DIRECT ? f->dfd : f->fd;
	uint8_t *p = r->dst;
	size_t done = 0;

	while (done < r->len) {
		ssize_t n = pread(fd, p + done, r->len - done, (off_t)(r->off + done));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return read_error(s, r, r->off + done, -errno, d);
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (int64_t)done;
}

/* io_uring queue: each read in flight occupies a slot whose index is the ring's tag. */
struct uring_slot {
	struct wlift__read r;
	struct wlift__source *s;
	int used;
};

struct uring_rq {
	struct wlift__rq base;
	struct wlift__uring *u;
	struct uring_slot *slots; /* depth entries */
	struct iovec *fixed;	  /* the registered buffers (register_buffers), or NULL */
	unsigned nfixed;
};

/* The registered buffer holding [p, p+len), or -1. */
static int fixed_index(const struct uring_rq *q, const void *p, size_t len)
{
	uintptr_t a = (uintptr_t)p;

	for (unsigned i = 0; i < q->nfixed; i++) {
		uintptr_t b = (uintptr_t)q->fixed[i].iov_base;
		if (a >= b && a - b <= q->fixed[i].iov_len && len <= q->fixed[i].iov_len - (a - b))
			return (int)i;
	}
	return -1;
}

static int uring_submit(struct wlift__rq *rq, struct wlift__source *s, const struct wlift__read *r,
			wlift_diag *d)
{
	struct uring_rq *q = (struct uring_rq *)rq;
	const struct file_source *f = (const struct file_source *)s;
	size_t len = r->len < WLIFT_MAX_URING_READ ? r->len : WLIFT_MAX_URING_READ;
	unsigned i;
	int ret, fx;

	WLIFT_UNUSED(d);
	if (rq->inflight >= rq->depth)
		return -EBUSY;
	for (i = 0; i < rq->depth && q->slots[i].used; i++)
		;
	if (i == rq->depth)
		return -EBUSY;
	/* A longer read completes short and the engine asks for the rest. */
	/* Fixed buffers only for O_DIRECT reads (the DMA then skips pinning the pages each
	 * time): buffered reads measured no better with them (bench/uringfixed.c, RESULTS). */
	fx = q->nfixed && (r->flags & WLIFT__READ_DIRECT) ? fixed_index(q, r->dst, len) : -1;
	if (fx >= 0)
		ret = wlift__uring_read_fixed(q->u, r->flags & WLIFT__READ_DIRECT ? f->dfd : f->fd,
					      r->dst, len, r->off, (unsigned)fx, i);
	else
		ret = wlift__uring_read(q->u, r->flags & WLIFT__READ_DIRECT ? f->dfd : f->fd,
					r->dst, len, r->off, i);
	if (ret < 0)
		return ret;
	if (fx >= 0)
		rq->fixed_reads++;
	q->slots[i].r = *r;
	q->slots[i].s = s;
	q->slots[i].used = 1;
	rq->inflight++;
	return 0;
}

static int uring_reap(struct wlift__rq *rq, int wait, struct wlift__rdone *c, wlift_diag *d)
{
	struct uring_rq *q = (struct uring_rq *)rq;
	struct uring_slot *sl;
	uint64_t tag;
	int res, ret;

	WLIFT_UNUSED(wait); /* local reads complete in bounded time: always wait */
	if (!rq->inflight)
		return 0;
	ret = wlift__uring_wait(q->u, &tag, &res);
	if (ret < 0)
		return wlift__diag_set(d, ret, NULL, NULL, -1, "io.uring",
				       "io_uring wait failed: %s", strerror(-ret));
	sl = &q->slots[tag];
	sl->used = 0;
	rq->inflight--;
	c->tag = sl->r.tag;
	c->res = res < 0 ? read_error(sl->s, &sl->r, sl->r.off, res, d) : res;
	return 1;
}

static void uring_cancel(struct wlift__rq *rq)
{
	/* Local reads finish in bounded time; destroy reaps them. */
	WLIFT_UNUSED(rq);
}

static void uring_destroy(struct wlift__rq *rq)
{
	struct uring_rq *q = (struct uring_rq *)rq;

	if (!q)
		return;
	wlift__uring_destroy(q->u); /* reaps anything still in flight */
	free(q->fixed);
	free(q->slots);
	free(q);
}

/* io_uring fixed buffers: the staging ring's pages pinned once for this ring. A refusal
 * (RLIMIT_MEMLOCK, an old kernel) leaves plain reads. */
static int uring_register(struct wlift__rq *rq, const struct iovec *iov, unsigned n)
{
	struct uring_rq *q = (struct uring_rq *)rq;
	struct iovec *c;
	int ret;

	if (!n || q->nfixed)
		return -EINVAL;
	c = malloc(n * sizeof(*c));
	if (!c)
		return -ENOMEM;
	memcpy(c, iov, n * sizeof(*c));
	ret = wlift__uring_register(q->u, c, n);
	if (ret < 0) {
		free(c);
		return ret;
	}
	q->fixed = c;
	q->nfixed = n;
	return 0;
}

static const struct wlift__rq_ops uring_rq_ops = {
	.name = "uring",
	.submit = uring_submit,
	.reap = uring_reap,
	.cancel = uring_cancel,
	.destroy = uring_destroy,
	.register_buffers = uring_register,
};

static int uring_queue(unsigned depth, struct wlift__rq **out)
{
	struct uring_rq *q = calloc(1, sizeof(*q));
	int ret = -ENOMEM;

	*out = NULL;
	if (!q)
		return -ENOMEM;
	q->slots = calloc(depth, sizeof(*q->slots));
	if (q->slots)
		ret = wlift__uring_create(depth, &q->u);
	if (ret < 0) {
		free(q->slots);
		free(q);
		return ret;
	}
	q->base.ops = &uring_rq_ops;
	q->base.depth = depth;
	*out = &q->base;
	return 0;
}

static int file_queue(struct wlift__source *s, unsigned depth, unsigned flags,
		      struct wlift__rq **out, wlift_diag *d)
{
	const struct file_source *f = (const struct file_source *)s;

	if (depth < 1)
		depth = 1;
	/* io_uring is probed at run time (ENOSYS on old kernels, EPERM under seccomp or
	 * io_uring_disabled): without it the reads are preads. */
	if ((flags & WLIFT__RQ_URING) && !f->no_uring && uring_queue(depth, out) == 0)
		return 0;
	if (wlift__syncq_create(depth, "pread", file_read, out))
		return wlift__diag_set(d, -ENOMEM, s->uri, NULL, -1, NULL, NULL);
	return 0;
}

/* ---- the other source operations -------------------------------------------------------- */

static int file_probe(struct wlift__source *s, uint64_t off, uint64_t len, unsigned flags,
		      struct wlift__source_probe *p)
{
	struct file_source *f = (struct file_source *)s;

	memset(p, 0, sizeof(*p));
	p->size = s->size;
	p->mtime_ns = f->mtime_ns;
	p->can_map = s->size > 0;
	p->fs_kind = f->fs_kind;
	p->resident = -1.0;
	if (p->fs_kind == WLIFT_FS_NETWORK || p->fs_kind == WLIFT_FS_FUSE)
		p->chunk = WLIFT_REMOTE_FS_CHUNK;
	if ((flags & WLIFT__PROBE_DIRECT) && !__atomic_load_n(&f->dio_known, __ATOMIC_ACQUIRE)) {
		uint32_t ma = 0, oa = 0;
		wlift__file_dio_align(f->fd, f->path, &ma, &oa);
		__atomic_store_n(&f->dio_align, ma > oa ? ma : oa, __ATOMIC_RELAXED);
		__atomic_store_n(&f->dio_known, 1, __ATOMIC_RELEASE);
	}
	if (flags & WLIFT__PROBE_DIRECT)
		p->dio_align = __atomic_load_n(&f->dio_align, __ATOMIC_RELAXED);
	if (flags & WLIFT__PROBE_RESIDENT)
		p->resident = wlift__file_resident(f->fd, off, len);
	return 0;
}

static int file_direct(struct wlift__source *s, wlift_diag *d)
{
	struct file_source *f = (struct file_source *)s;
	int ret = 0;

	pthread_mutex_lock(&f->mu);
	if (f->dfd < 0 && !f->direct_err) {
		f->dfd = open(f->path, O_RDONLY | O_DIRECT | O_CLOEXEC);
		if (f->dfd < 0)
			f->direct_err = -errno;
	}
	ret = f->direct_err;
	pthread_mutex_unlock(&f->mu);
	if (ret)
		return wlift__diag_set(d, ret, s->uri, NULL, -1, "load.direct",
				       "%s: cannot open with O_DIRECT: %s", s->uri, strerror(-ret));
	return 0;
}

static int file_validate(struct wlift__source *s, wlift_diag *d)
{
	const struct file_source *f = (const struct file_source *)s;
	struct stat st;

	if (fstat(f->fd, &st) < 0)
		return wlift__diag_set(d, -errno, s->uri, NULL, -1, "io.stat", "%s: cannot stat: %s",
				       s->uri, strerror(errno));
	if ((uint64_t)st.st_size != s->size || mtime_of(&st) != f->mtime_ns)
		return wlift__diag_set(d, WLIFT_ECHANGED, s->uri, NULL, -1, "file.changed",
				       "%s: the file changed while loading (size %llu -> %llu%s)",
				       s->uri, (unsigned long long)s->size,
				       (unsigned long long)st.st_size,
				       mtime_of(&st) != f->mtime_ns ? ", modification time changed"
								    : "");
	return 0;
}

static void unmap_mem(struct wlift__mem *m)
{
	munmap(m->base, m->len);
}

static int file_map(struct wlift__source *s, struct wlift__mem *out, wlift_diag *d)
{
	const struct file_source *f = (const struct file_source *)s;
	void *base;

	memset(out, 0, sizeof(*out));
	if (!s->size)
		return wlift__diag_set(d, WLIFT_EUNSUPPORTED, s->uri, NULL, -1, "load.mmap",
				       "%s: an empty file cannot be mapped", s->uri);
	/* Private and writable: tensors are writable and a write never reaches the file. */
	base = mmap(NULL, (size_t)s->size, PROT_READ | PROT_WRITE, MAP_PRIVATE, f->fd, 0);
	if (base == MAP_FAILED)
		return wlift__diag_set(d, -errno, s->uri, NULL, -1, "io.mmap",
				       "%s: cannot map the file: %s", s->uri, strerror(errno));
	out->base = base;
	out->len = (size_t)s->size;
	out->device = -1;
	out->free = unmap_mem;
	/* Release: written (copied) pages are freed, file pages unmapped; touching them
	 * again would read the file. */
	out->release = wlift__mem_release_pages;
	return 0;
}

/* GPU Direct Storage: cuFile reads straight into device memory, on the calling worker (the
 * engine has made the device's context current). The handle is registered once per file,
 * on the O_DIRECT descriptor (true GDS needs it; the file system must allow O_DIRECT, which
 * the engine checked: it reads only direct chunks this way). */
static int64_t file_read_to_device(struct wlift__source *s, struct wlift__gds *g, uint64_t off,
				   size_t len, void *devbase, size_t devoff, int device,
				   unsigned batch, wlift_diag *d)
{
	struct file_source *f = (struct file_source *)s;
	void *fh;
	int ret;

	WLIFT_UNUSED(device);
	ret = file_direct(s, d);
	if (ret)
		return ret;
	pthread_mutex_lock(&f->mu);
	if (!f->gds && !f->gds_err) {
		wlift_diag_clear(&f->gds_diag);
		f->gds_err = wlift__gds_handle_register(g, f->dfd, s->uri, &f->gfh, &f->gds_diag);
		if (!f->gds_err)
			f->gds = g;
	}
	if (!f->gds_err && f->gds != g) {
		pthread_mutex_unlock(&f->mu);
		return wlift__diag_set(d, WLIFT_ECUFILE, s->uri, NULL, -1, "gds.handle",
				       "%s: the file is registered with another cuFile library",
				       s->uri);
	}
	ret = f->gds_err;
	if (ret && d)
		*d = f->gds_diag;
	fh = f->gfh;
	pthread_mutex_unlock(&f->mu);
	if (ret)
		return ret;
	return wlift__gds_read(g, fh, devbase, devoff, len, off, batch, s->uri, d);
}

static void file_destroy(struct wlift__source *s)
{
	struct file_source *f = (struct file_source *)s;

	if (f->gds)
		wlift__gds_handle_deregister(f->gds, f->gfh);
	if (f->fd >= 0)
		close(f->fd);
	if (f->dfd >= 0)
		close(f->dfd);
	pthread_mutex_destroy(&f->mu);
	free(f->path);
	free(s->uri);
	free(f);
}

static const struct wlift__source_ops file_ops = {
	.kind = "file",
	.probe = file_probe,
	.queue = file_queue,
	.direct = file_direct,
	.validate = file_validate,
	.map = file_map,
	.read_to_device = file_read_to_device,
	.destroy = file_destroy,
};

int wlift__file_open(wlift_ctx *ctx, const char *path, const char *uri,
		     struct wlift__source **out, wlift_diag *d)
{
	struct file_source *f;
	struct stat st;
	int ret;

	*out = NULL;
	f = calloc(1, sizeof(*f));
	if (!f)
		return wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
	f->fd = f->dfd = -1;
	pthread_mutex_init(&f->mu, NULL);
	f->no_uring = ctx && ctx->disable_uring;
	f->path = strdup(path);
	if (!f->path || wlift__source_init(&f->base, &file_ops, uri, 0)) {
		ret = wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
		goto out;
	}
	/* O_NONBLOCK: opening a FIFO would otherwise wait for a writer forever. */
	f->fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (f->fd < 0) {
		ret = wlift__diag_set(d, -errno, uri, NULL, -1, "io.open", "%s: cannot open: %s",
				      uri, strerror(errno));
		goto out;
	}
	if (fstat(f->fd, &st) < 0) {
		ret = wlift__diag_set(d, -errno, uri, NULL, -1, "io.stat", "%s: cannot stat: %s",
				      uri, strerror(errno));
		goto out;
	}
	if (S_ISDIR(st.st_mode)) {
		ret = wlift__diag_set(d, -EISDIR, uri, NULL, -1, "io.open",
				      "%s: is a directory", uri);
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		/* FIFOs, sockets and devices: no size, no offsets, possibly endless. ENODEV
		 * is what the reference reports (its mmap of /dev/null fails so). */
		ret = wlift__diag_set(d, -ENODEV, uri, NULL, -1, "io.type",
				      "%s: not a regular file (%s)", uri,
				      S_ISFIFO(st.st_mode)   ? "a FIFO"
				      : S_ISCHR(st.st_mode)  ? "a character device"
				      : S_ISBLK(st.st_mode)  ? "a block device"
				      : S_ISSOCK(st.st_mode) ? "a socket"
							     : "not a file");
		goto out;
	}
	fcntl(f->fd, F_SETFL, fcntl(f->fd, F_GETFL) & ~O_NONBLOCK);
	f->base.size = (uint64_t)st.st_size;
	f->mtime_ns = mtime_of(&st);
	f->fs_kind = wlift__fs_kind(f->fd);
	*out = &f->base;
	return 0;
out:
	file_destroy(&f->base);
	return ret;
}

/* ---- the locator's scheme functions ----------------------------------------------------- */

int wlift__file_stat(const char *path, const char *uri, int *kind, wlift_diag *d)
{
	struct stat st;

	if (stat(path, &st) != 0)
		return wlift__diag_set(d, -errno, uri, NULL, -1, "io.stat", "%s: %s", uri,
				       strerror(errno));
	*kind = S_ISDIR(st.st_mode) ? WLIFT_STAT_CONTAINER : WLIFT_STAT_OBJECT;
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int wlift__file_list(const char *path, const char *uri, char ***names, size_t *n,
		     wlift_diag *d)
{
	DIR *dh = opendir(path);
	struct dirent *e;
	char **v = NULL;
	size_t cap = 0, k = 0;
	int ret = 0;

	if (!dh)
		return wlift__diag_set(d, -errno, uri, NULL, -1, "io.open",
				       "%s: cannot open directory: %s", uri, strerror(errno));
	while ((e = readdir(dh))) {
		char *s;
		if (e->d_name[0] == '.')
			continue;
		if (k == cap) {
			size_t nc = cap ? 2 * cap : 16;
			char **nv = realloc(v, nc * sizeof(*nv));
			if (!nv) {
				ret = -ENOMEM;
				break;
			}
			v = nv;
			cap = nc;
		}
		s = strdup(e->d_name);
		if (!s) {
			ret = -ENOMEM;
			break;
		}
		v[k++] = s;
	}
	closedir(dh);
	if (ret) {
		wlift__strv_free(v, k);
		return wlift__diag_set(d, ret, uri, NULL, -1, NULL, NULL);
	}
	if (k)
		qsort(v, k, sizeof(*v), cmp_str);
	*names = v;
	*n = k;
	return 0;
}

/* ---- probes ----------------------------------------------------------------------------- */

#ifndef FUSE_SUPER_MAGIC
#define FUSE_SUPER_MAGIC 0x65735546
#endif
#ifndef NFS_SUPER_MAGIC
#define NFS_SUPER_MAGIC 0x6969
#endif
#define WLIFT_LUSTRE_MAGIC 0x0BD00BD0
#define WLIFT_CIFS_MAGIC 0xFF534D42
#define WLIFT_SMB2_MAGIC 0xFE534D42
#define WLIFT_CEPH_MAGIC 0x00C36400
#define WLIFT_9P_MAGIC 0x01021997
#define WLIFT_GPFS_MAGIC 0x47504653
#ifndef RAMFS_MAGIC
#define RAMFS_MAGIC 0x858458f6
#endif
#ifndef TMPFS_MAGIC
#define TMPFS_MAGIC 0x01021994
#endif

int wlift__fs_kind(int fd)
{
	struct statfs sf;

	if (fstatfs(fd, &sf) < 0)
		return WLIFT_FS_LOCAL;
	switch ((unsigned long)sf.f_type) {
	case TMPFS_MAGIC:
	case RAMFS_MAGIC:
		return WLIFT_FS_TMPFS;
	case NFS_SUPER_MAGIC:
	case WLIFT_LUSTRE_MAGIC:
	case WLIFT_CIFS_MAGIC:
	case WLIFT_SMB2_MAGIC:
	case WLIFT_CEPH_MAGIC:
	case WLIFT_9P_MAGIC:
	case WLIFT_GPFS_MAGIC:
		return WLIFT_FS_NETWORK;
	case FUSE_SUPER_MAGIC:
		return WLIFT_FS_FUSE;
	default:
		return WLIFT_FS_LOCAL;
	}
}

const char *wlift__fs_kind_name(int kind)
{
	static const char *names[] = { "local", "tmpfs", "network", "fuse" };

	if (kind == WLIFT_FS_NONE)
		return "none";
	return kind >= 0 && kind < 4 ? names[kind] : "?";
}

#ifndef __NR_cachestat
#define __NR_cachestat 451 /* same number on every architecture (added in 6.5) */
#endif

struct wlift_cachestat_range { uint64_t off, len; };
struct wlift_cachestat {
	uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted;
};

/* mincore over a few small mappings spread across the range: cheap on huge files, and
 * enough to tell "mostly cached" from "mostly cold". */
static double resident_mincore(int fd, uint64_t off, uint64_t len)
{
	long pg = sysconf(_SC_PAGESIZE);
	const uint64_t win = 64 * (uint64_t)pg;
	unsigned char vec[64];
	uint64_t in = 0, total = 0;
	int samples = 16;

	if (len == 0)
		return 1.0;
	off -= off % (uint64_t)pg;
	for (int i = 0; i < samples; i++) {
		uint64_t o = off + (len / (uint64_t)samples) * (uint64_t)i;
		uint64_t l = win;
		void *m;

		o -= o % (uint64_t)pg;
		if (o >= off + len)
			break;
		if (o + l > off + len)
			l = off + len - o;
		m = mmap(NULL, l, PROT_READ, MAP_SHARED, fd, (off_t)o);
		if (m == MAP_FAILED)
			return -1.0;
		if (mincore(m, l, vec) == 0) {
			for (uint64_t p = 0; p < (l + (uint64_t)pg - 1) / (uint64_t)pg; p++) {
				in += vec[p] & 1;
				total++;
			}
		}
		munmap(m, l);
	}
	return total ? (double)in / (double)total : -1.0;
}

double wlift__file_resident(int fd, uint64_t off, uint64_t len)
{
	struct wlift_cachestat_range r = { off, len };
	struct wlift_cachestat cs;
	long pg = sysconf(_SC_PAGESIZE);

	if (len == 0)
		return 1.0;
	if (syscall(__NR_cachestat, fd, &r, &cs, 0) == 0) {
		uint64_t pages = (len + (uint64_t)pg - 1) / (uint64_t)pg;
		double f = (double)cs.nr_cache / (double)pages;
		return f > 1.0 ? 1.0 : f;
	}
	return resident_mincore(fd, off, len);
}

int wlift__file_dio_align(int fd, const char *path, uint32_t *mem_align, uint32_t *off_align)
{
	struct statx sx;

	*mem_align = 0;
	*off_align = 0;
	if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 &&
	    (sx.stx_mask & STATX_DIOALIGN)) {
		*mem_align = sx.stx_dio_mem_align;
		*off_align = sx.stx_dio_offset_align;
		return 0;
	}
	/* Older kernels or file systems without STATX_DIOALIGN: probe with an open and assume
	 * the conservative page size for both alignments. */
	{
		int dfd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
		if (dfd < 0)
			return 0;
		close(dfd);
		*mem_align = *off_align = (uint32_t)sysconf(_SC_PAGESIZE);
	}
	return 0;
}
