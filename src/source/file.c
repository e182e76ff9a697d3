/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Local file source: buffered pread. The engine uses the fd directly for io_uring, O_DIRECT
 * and mapped mode; this file provides the plain, always-available path and the probes the
 * engine's AUTO strategy uses (page-cache residency, file system kind, O_DIRECT alignment).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sys/mman.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <linux/magic.h>

#include "source/file.h"
#include "source/source.h"

static int file_pread(struct wlift__source *s, void *buf, size_t len, uint64_t off,
		      wlift_diag *d)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = pread(s->fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return wlift__diag_set(d, -errno, s->uri, NULL, (int64_t)off, "io.read",
					       "%s: read failed at offset %llu: %s", s->uri,
					       (unsigned long long)off, strerror(errno));
		}
		if (n == 0)
			return wlift__diag_set(d, WLIFT_ECHANGED, s->uri, NULL, (int64_t)off,
					       "file.changed",
					       "%s: unexpected end of file at offset %llu (the file "
					       "was %llu bytes when opened; was it truncated?)",
					       s->uri, (unsigned long long)off,
					       (unsigned long long)s->size);
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

static void file_destroy(struct wlift__source *s)
{
	if (s->fd >= 0)
		close(s->fd);
	free(s->uri);
	free(s);
}

static const struct wlift__source_ops file_ops = {
	.kind = "file",
	.pread = file_pread,
	.destroy = file_destroy,
};

int wlift__source_file_open(wlift_ctx *ctx, const char *path, const char *uri,
			    struct wlift__source **out, wlift_diag *d)
{
	struct wlift__source *s = NULL;
	struct stat st;
	int ret;

	WLIFT_UNUSED(ctx);
	*out = NULL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
	s->fd = -1;
	s->refs = 1;
	s->ops = &file_ops;
	s->uri = strdup(uri);
	if (!s->uri) {
		ret = wlift__diag_set(d, -ENOMEM, uri, NULL, -1, NULL, NULL);
		goto out;
	}
	s->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (s->fd < 0) {
		ret = wlift__diag_set(d, -errno, uri, NULL, -1, "io.open", "%s: cannot open: %s",
				      uri, strerror(errno));
		goto out;
	}
	if (fstat(s->fd, &st) < 0) {
		ret = wlift__diag_set(d, -errno, uri, NULL, -1, "io.stat", "%s: cannot stat: %s",
				      uri, strerror(errno));
		goto out;
	}
	if (S_ISDIR(st.st_mode)) {
		ret = wlift__diag_set(d, -EISDIR, uri, NULL, -1, "io.open",
				      "%s: is a directory", uri);
		goto out;
	}
	s->size = (uint64_t)st.st_size;
	s->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
	*out = s;
	s = NULL;
	ret = 0;
out:
	if (s)
		file_destroy(s);
	return ret;
}

/* ---- probes used by the engine (declared in source/file.h) ----------------------------- */


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

int wlift__file_open_direct(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);

	return fd < 0 ? -errno : fd;
}

int wlift__file_check_unchanged(struct wlift__source *s, wlift_diag *d)
{
	struct stat st;
	int64_t mt;

	if (s->fd < 0)
		return 0;
	if (fstat(s->fd, &st) < 0)
		return wlift__diag_set(d, -errno, s->uri, NULL, -1, "io.stat", "%s: cannot stat: %s",
				       s->uri, strerror(errno));
	mt = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
	if ((uint64_t)st.st_size != s->size || mt != s->mtime_ns)
		return wlift__diag_set(d, WLIFT_ECHANGED, s->uri, NULL, -1, "file.changed",
				       "%s: the file changed while loading (size %llu -> %llu%s)",
				       s->uri, (unsigned long long)s->size,
				       (unsigned long long)st.st_size,
				       mt != s->mtime_ns ? ", modification time changed" : "");
	return 0;
}

int wlift__pread_full(int fd, void *buf, size_t len, uint64_t off, size_t *got)
{
	uint8_t *p = buf;
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, p + done, len - done, (off_t)(off + done));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			*got = done;
			return -errno;
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	*got = done;
	return 0;
}
