/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The local file source (file.c): buffered preads done on the engine's workers, or one
 * io_uring ring per worker, and O_DIRECT through a second descriptor the source opens once;
 * probes of page-cache residency (cachestat(2), else mincore on sampled mappings), file system
 * kind (statfs) and O_DIRECT alignment (statx STATX_DIOALIGN); private mappings for mapped
 * mode; stat and directory listing for the locator.
 */
#ifndef WLIFT_SOURCE_FILE_H
#define WLIFT_SOURCE_FILE_H

#include <stdint.h>

#include "source/source.h"

/* Open the local file path (uri is what the user gave, for diagnostics). */
int wlift__file_open(wlift_ctx *ctx, const char *path, const char *uri,
		     struct wlift__source **out, wlift_diag *d);
/* The scheme functions of source.h for local paths. */
int wlift__file_stat(const char *path, const char *uri, int *kind, wlift_diag *d);
int wlift__file_list(const char *path, const char *uri, char ***names, size_t *n,
		     wlift_diag *d);

/* Probes of an open descriptor (also unit-tested on their own). */
int wlift__fs_kind(int fd);
/* Fraction (0..1) of [off, off+len) of fd resident in the page cache; a negative value when
 * it cannot be measured. */
double wlift__file_resident(int fd, uint64_t off, uint64_t len);
/* O_DIRECT alignment for fd: memory and file-offset alignment in bytes; 0 when the file
 * system does not support O_DIRECT. */
int wlift__file_dio_align(int fd, const char *path, uint32_t *mem_align, uint32_t *off_align);

#endif
