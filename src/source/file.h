/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Local-file probes and helpers used by the engine to choose an I/O strategy per file:
 * page-cache residency (cachestat(2), else mincore on sampled mappings), the file system kind
 * (statfs), O_DIRECT alignment (statx STATX_DIOALIGN) and a lazily opened O_DIRECT fd.
 */
#ifndef WLIFT_SOURCE_FILE_H
#define WLIFT_SOURCE_FILE_H

#include <stdint.h>

#include "source/source.h"

enum wlift__fs_kind {
	WLIFT_FS_LOCAL = 0, /* ext4, xfs, btrfs, ... */
	WLIFT_FS_TMPFS,	    /* tmpfs/ramfs: always "cached", no O_DIRECT */
	WLIFT_FS_NETWORK,   /* NFS, Lustre, CIFS, ceph, 9p: large parallel preads */
	WLIFT_FS_FUSE,	    /* gcsfuse, s3fs, ...: large parallel preads, never mmap faults */
};

/* File system kind of fd. */
int wlift__fs_kind(int fd);
const char *wlift__fs_kind_name(int kind);

/* Fraction (0..1) of [off, off+len) of fd resident in the page cache; a negative value when
 * it cannot be measured. Uses cachestat(2) when the kernel has it, else mincore on a sample of
 * small mappings spread over the range. */
double wlift__file_resident(int fd, uint64_t off, uint64_t len);

/* O_DIRECT alignment for fd: memory and file-offset alignment in bytes (statx
 * STATX_DIOALIGN); 0 when the file system does not support O_DIRECT. */
int wlift__file_dio_align(int fd, const char *path, uint32_t *mem_align, uint32_t *off_align);

/* Open path again with O_DIRECT. Returns the fd or -errno. */
int wlift__file_open_direct(const char *path);

/* Re-check size and mtime of a local file source against those seen at open.
 * Returns 0 or WLIFT_ECHANGED with d filled. */
int wlift__file_check_unchanged(struct wlift__source *s, wlift_diag *d);

/* Read len bytes at off from fd into buf, retrying short reads; reads past EOF stop at EOF
 * (*got holds the bytes read). Returns 0 or -errno. */
int wlift__pread_full(int fd, void *buf, size_t len, uint64_t off, size_t *got);

#endif
