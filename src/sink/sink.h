/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Sinks: where loaded bytes go, chosen by device (wlift__sink_open). The engine asks the sink
 * for the destination of each chunk:
 *  - a sink whose memory the readers can write (host) returns it from dest(), and reads land
 *    in place: no copy;
 *  - any other sink (a GPU: pinned staging buffers copied to device memory) returns NULL from
 *    dest() and hands out staging buffers: acquire() a buffer, read into it, commit() it to a
 *    destination offset. A commit completes asynchronously; the sink reports it through the
 *    done callback from whichever engine thread calls poll() or finish(), and only then is
 *    the buffer reused. The sink calls done without holding any lock of its own: the engine
 *    may call move() and convert() (and the user's ready callback runs) from inside it.
 * Fix-up moves (after O_DIRECT placement), dtype conversion and release (give back the memory
 * of tensors nobody holds) are sink operations, so a device sink does them on the device.
 * The destination memory is exported as a struct wlift__mem with its own free function, so
 * that the result owns it whoever allocated it. Sinks never include sources.
 */
#ifndef WLIFT_SINK_H
#define WLIFT_SINK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "common/common.h"
#include "common/mem.h"

struct wlift__sink;

/* Reports commit completions: cookie as given to commit; err 0, or a negative code with d. */
typedef void (*wlift__sink_done_fn)(void *user, uint64_t cookie, int err, const wlift_diag *d);

struct wlift__sink_ops {
	const char *kind; /* "host", later "cuda" */
	/* Allocate the load's destination: bytes of memory, addressed by offset. */
	int (*alloc)(struct wlift__sink *s, uint64_t bytes, wlift_diag *d);
	/* Final memory at off that readers may write directly, or NULL (staged sink). */
	void *(*dest)(struct wlift__sink *s, uint64_t off);
	/* Optional: when the destination is device memory, its address at off and the device
	 * ordinal, so that a source that can read straight into device memory (GPU Direct
	 * Storage) is used instead of staging. NULL (or a NULL return): no such destination. */
	void *(*device_ptr)(struct wlift__sink *s, uint64_t off, int *device);
	/* Optional, with device_ptr: make the device's context current on the calling thread
	 * (0, or a negative code with d filled), and undo it, around a source's reads into
	 * device memory (cuFile uses the calling thread's context). */
	int (*device_enter)(struct wlift__sink *s, wlift_diag *d);
	void (*device_leave)(struct wlift__sink *s);
	/* Staged sinks: a staging buffer of at least len (<= stage_bytes) bytes, aligned to
	 * stage_align. 0; -EAGAIN when every buffer is in use (poll with wait, then retry). */
	int (*acquire)(struct wlift__sink *s, size_t len, void **buf, wlift_diag *d);
	/* Optional (staged sinks, after alloc): the memory every staging buffer lies in, as
	 * up to max contiguous regions in iov, valid until destroy (for read queues to
	 * register, e.g. as io_uring fixed buffers). Returns the number of regions; 0: none. */
	unsigned (*staging)(struct wlift__sink *s, struct iovec *iov, unsigned max);
	/* Give back an acquired buffer that was not committed (a failed or canceled read). */
	void (*unacquire)(struct wlift__sink *s, void *buf);
	/* Deliver len bytes of buf to destination offset off, asynchronously; the buffer
	 * belongs to the sink from here on. Completion: the done callback with cookie. */
	int (*commit)(struct wlift__sink *s, void *buf, uint64_t off, size_t len, uint64_t cookie,
		      wlift_diag *d);
	/* Report finished commits (done callback). wait: block, briefly, until at least one
	 * commit finishes or a buffer is given back. Returns the number reported, or < 0. */
	int (*poll)(struct wlift__sink *s, int wait, wlift_diag *d);
	/* Move len destination bytes from offset from down to offset to (to <= from; the
	 * O_DIRECT fix-up). Every commit into [from, from+len) has completed. */
	int (*move)(struct wlift__sink *s, uint64_t to, uint64_t from, uint64_t len,
		    wlift_diag *d);
	/* Convert nelem elements at src (dtype from) to dst (dtype to), both destination
	 * offsets; in place when src == dst and to is not wider. */
	int (*convert)(struct wlift__sink *s, wlift_dtype from, wlift_dtype to, uint64_t src,
		       uint64_t dst, uint64_t nelem, wlift_diag *d);
	/* Optional (staged sinks): deliver what is committed into [off, off+len) gathered: the
	 * byte at off + k*stride + j (k < outer, j < piece) goes to dst + k*piece + j, and the
	 * rest of the range is not delivered at all (a tensor-parallel block along a dim > 0,
	 * its rows copied straight from the staging buffer into place, a 2D copy on a GPU).
	 * Called before the first commit, for ranges that do not overlap. 0: the sink gathers
	 * and the engine moves nothing; -ENOTSUP: the engine gathers with move(). */
	int (*remap)(struct wlift__sink *s, uint64_t off, uint64_t len, uint64_t outer,
		     uint64_t piece, uint64_t stride, uint64_t dst);
	/* Give back the memory of [off, off+len) (its bytes become undefined). */
	int (*release)(struct wlift__sink *s, uint64_t off, uint64_t len);
	/* Hand the destination memory to the caller (the result): the sink no longer frees it
	 * but may go on writing to it until destroy. */
	int (*export_mem)(struct wlift__sink *s, struct wlift__mem *out, wlift_diag *d);
	/* Every commit issued: wait for all of them and report them. */
	int (*finish)(struct wlift__sink *s, wlift_diag *d);
	/* Optional: stop and wait for the sink's own background work on the memory (the host
	 * sink's fault-ahead thread), so that the memory may be freed. */
	void (*quiesce)(struct wlift__sink *s);
	/* Wait for anything in flight, free the sink and (unless exported) its memory. */
	void (*destroy)(struct wlift__sink *s);
};

/* The common part of every sink; each kind embeds it first. */
struct wlift__sink {
	const struct wlift__sink_ops *ops;
	int in_place;		    /* 1: dest() gives host memory the readers write (after alloc);
				       0: staged (acquire/commit) */
	size_t stage_bytes;	    /* staged sinks: size of a staging buffer (caps the chunk) */
	uint32_t stage_align;	    /* staged sinks: alignment of staging buffers */
	uint32_t dest_align;	    /* alignment of every tensor in the destination (a power of
				       two >= 64; 0: WLIFT_PLAN_ALIGN); a GPU wants 256 */
	int numa;		    /* 1 + the NUMA node of the device (its readers and staging
				       belong there); 0: none, or unknown */
	int cufile;		    /* 1: device memory that cuFile (GPU Direct Storage) can write:
				       the engine opens the cuFile library for the load; 0 */
	int fault_ahead;	    /* host: fault the arena in on a thread of its own while the
				       readers fill it (set by the engine before alloc) */
	int gds_dest;		    /* set by the engine before alloc: cuFile may write the
				       destination (a GPU allocates it RDMA-capable) */
	wlift__sink_done_fn done;   /* set by the engine before the first commit */
	void *done_user;
};

struct wlift__sink_cfg {
	unsigned threads; /* the load's threads (a host sink may pre-fault with them) */
	int populate;	  /* host: 1 pre-fault the arena before reading (0, -1: no) */
	const char *cuda_library; /* GPU: the driver library (NULL: libcuda.so.1) */
	size_t ring_bytes;	  /* GPU: pinned staging ring, total (0: default) */
	unsigned ring_slots;	  /* GPU: buffers in the ring (0: default) */
	uint64_t max_device_bytes; /* GPU: budget of device memory (0: none) */
	const wlift_device_allocator *device_allocator; /* GPU: the caller's, or NULL */
	int hugepage; /* host: 1 advise arenas MADV_HUGEPAGE, 0 never (WEIGHTLIFT_HUGEPAGE) */
};

/* Device ordinals accepted in "cuda:N". */
#define WLIFT_MAX_DEVICE_INDEX 1023

/* Which device a name means: -1 for NULL, "" or "cpu"; N for "cuda" (0), "cuda:N" or "N".
 * -EINVAL for anything else. */
int wlift__device_parse(const char *device, int *index);

/* Open the sink for device: NULL, "" or "cpu" is host memory; "cuda", "cuda:N" a GPU
 * (WLIFT_ENODEV with a clear message when there is no driver or no such device); anything
 * else -EINVAL. */
int wlift__sink_open(wlift_ctx *ctx, const char *device, const struct wlift__sink_cfg *cfg,
		     struct wlift__sink **out, wlift_diag *d);

#endif
