/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The page-granular release shared by every memory block that is plain host pages (host
 * arenas, private file mappings).
 */
#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/mem.h"

int wlift__mem_release_pages(struct wlift__mem *m, uint64_t off, uint64_t len)
{
	uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
	uintptr_t lo = ((uintptr_t)m->base + off + pg - 1) / pg * pg;
	uintptr_t hi = ((uintptr_t)m->base + off + len) / pg * pg;

	if (off > m->len || len > m->len - off)
		return -EINVAL;
	if (hi > lo && madvise((void *)lo, hi - lo, MADV_DONTNEED) < 0)
		return -errno;
	return 0;
}
