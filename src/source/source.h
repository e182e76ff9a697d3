/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Sources: where bytes come from. A source is one object (a local file, a memory image, later
 * an HTTP/S3/GCS object or a cache in front of one) and owns everything about its bytes: file
 * descriptors (buffered and O_DIRECT), io_uring rings, the memory image, later sockets. The
 * engine owns the worker threads and the bytes-in-flight budget; a source offers
 *  - probe: size, identity (for change detection), whether it can be mapped, its preferred
 *    chunk and alignment, page-cache residency where that means something;
 *  - an asynchronous read interface: a read queue (struct wlift__rq) that a worker creates and
 *    drives: submit reads of [off, off+len) into a destination, reap completions in any order,
 *    cancel. Sources with no completion mechanism of their own do their I/O inside reap, on
 *    the engine's worker (pread); others (io_uring, later curl's multi interface) are driven
 *    from it;
 *  - validate: has the object changed since it was opened;
 *  - optionally map (a private mapping of the whole object) and read_to_device (GPU Direct
 *    Storage: the file and the device pointer together).
 * The scheme functions at the end (stat, list, open, read a small object) are what the
 * locator uses to turn a URI into objects. Sources never include sinks; the engine wires them.
 */
#ifndef WLIFT_SOURCE_H
#define WLIFT_SOURCE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "common/common.h"
#include "common/mem.h"

struct wlift__source;
struct wlift__rq;
struct wlift__gds;

/* File system kinds (probe.fs_kind). */
enum wlift__fs_kind {
	WLIFT_FS_NONE = -1, /* not a file (memory image, remote object) */
	WLIFT_FS_LOCAL = 0, /* ext4, xfs, btrfs, ... */
	WLIFT_FS_TMPFS,	    /* tmpfs/ramfs: always "cached", no O_DIRECT */
	WLIFT_FS_NETWORK,   /* NFS, Lustre, CIFS, ceph, 9p: large parallel preads */
	WLIFT_FS_FUSE,	    /* gcsfuse, s3fs, ...: large parallel preads, never mmap faults */
};
const char *wlift__fs_kind_name(int kind);

/* probe flags: what to measure beyond the cheap facts. */
#define WLIFT__PROBE_RESIDENT 1u /* page-cache residency of [off, off+len) */
#define WLIFT__PROBE_DIRECT 2u	 /* O_DIRECT alignment */

struct wlift__source_probe {
	uint64_t size;	   /* object size in bytes */
	int64_t mtime_ns;  /* identity of a local file (with size); 0 when not a file */
	char etag[128];	   /* identity of a remote object; "" when none */
	int in_memory;	   /* 1: the bytes are already in memory (a memcpy per read) */
	int can_map;	   /* 1: map() works */
	int fs_kind;	   /* enum wlift__fs_kind */
	uint32_t dio_align; /* with WLIFT__PROBE_DIRECT: O_DIRECT alignment of memory and file
			       offsets (a power of two); 0 when direct reads are impossible */
	size_t chunk;	   /* preferred read unit; 0: no preference */
	double resident;   /* with WLIFT__PROBE_RESIDENT: fraction 0..1 of the range in the page
			      cache; < 0 when unknown or meaningless (memory, remote) */
	unsigned requests; /* remote objects: reads the load should keep in flight over all its
			      workers (each a request); 0: a local source */
};

/* One read: len bytes at offset off of the source into dst. A read may complete short only
 * at the end of the object (O_DIRECT reads are widened past it); the engine resubmits the
 * remainder of any other short read. */
#define WLIFT__READ_DIRECT 1u /* through the O_DIRECT path (see ops->direct) */
struct wlift__read {
	void *dst;
	uint64_t off;
	size_t len;
	uint64_t tag;	/* returned with the completion */
	unsigned flags; /* WLIFT__READ_* */
};

struct wlift__rdone {
	uint64_t tag;
	int64_t res; /* bytes read (0..len; fewer only at the end of the object), or a negative
			code with the reap's diagnostic filled */
};

/* Read queue flags (ops->queue). */
#define WLIFT__RQ_URING 1u /* prefer io_uring (falls back to synchronous reads) */

struct wlift__rq_ops {
	const char *name; /* "pread", "uring", "memory", ...: reported as the load's strategy */
	/* Queue a read of source s (a source of the kind that made the queue). 0, -EBUSY when
	 * depth reads are in flight, or another negative code with d filled. */
	int (*submit)(struct wlift__rq *q, struct wlift__source *s, const struct wlift__read *r,
		      wlift_diag *d);
	/* Report one completed read in *c: 1 when one was reported, 0 when none is in flight
	 * (or, with wait == 0, none has completed yet), a negative code when the queue itself
	 * failed (every read in flight is then lost: the engine stops). A failed read is
	 * reported as c->res < 0 with d filled (the source's own message). */
	int (*reap)(struct wlift__rq *q, int wait, struct wlift__rdone *c, wlift_diag *d);
	/* Ask every read in flight to stop soon; they are still reaped (res may be
	 * -ECANCELED). Thread-safe: called from any thread, also while the worker that drives
	 * the queue waits in reap (which must then return promptly). */
	void (*cancel)(struct wlift__rq *q);
	/* Wait for every read in flight (none lands after this returns), then free. */
	void (*destroy)(struct wlift__rq *q);
	/* Optional: the memory that reads will land in (a staged sink's buffers), n regions,
	 * alive until destroy; reads inside one are then issued against it (io_uring fixed
	 * buffers: pinned once, not at each read). 0, or a negative code: not registered, the
	 * queue reads as before. NULL: the queue has no use for it. */
	int (*register_buffers)(struct wlift__rq *q, const struct iovec *iov, unsigned n);
};

struct wlift__rq {
	const struct wlift__rq_ops *ops;
	unsigned depth;	      /* most reads in flight at once */
	unsigned inflight;    /* submitted and not yet reaped (maintained by the queue) */
	uint64_t fixed_reads; /* reads issued into registered buffers (maintained by the queue) */
};

/* A remote source's request counters (wlift_stats' retries, hedges, hedges_won,
 * bytes_rerequested). */
struct wlift__source_counters {
	uint64_t retries;	    /* attempts made again after a transient failure */
	uint64_t hedges;	    /* hedged requests started */
	uint64_t hedges_won;	    /* hedges whose answer was taken */
	uint64_t bytes_rerequested; /* bytes of the ranges asked again (retries and hedges) */
};

struct wlift__source_ops {
	const char *kind; /* "file", "memory", ... */
	int (*probe)(struct wlift__source *s, uint64_t off, uint64_t len, unsigned flags,
		     struct wlift__source_probe *p);
	/* A read queue for sources with these ops, of the given depth (>= 1). One worker
	 * drives it; reads of several sources of the same kind may share it. */
	int (*queue)(struct wlift__source *s, unsigned depth, unsigned flags,
		     struct wlift__rq **out, wlift_diag *d);
	/* Make WLIFT__READ_DIRECT reads possible (e.g. open the O_DIRECT descriptor once).
	 * 0, or a negative code with d filled when they are not. NULL: never possible. */
	int (*direct)(struct wlift__source *s, wlift_diag *d);
	/* 0 when the object is unchanged since open, else WLIFT_ECHANGED with d filled. */
	int (*validate)(struct wlift__source *s, wlift_diag *d);
	/* Map the whole object private and writable (copy-on-write), for mapped mode. NULL
	 * when the source cannot (probe.can_map is 0). */
	int (*map)(struct wlift__source *s, struct wlift__mem *out, wlift_diag *d);
	/* GPU Direct Storage: read [off, off+len) straight into device memory at devbase +
	 * devoff (devbase: the start of the range registered with cuFile, else the destination
	 * itself; on CUDA device `device`, whose context the engine has made current) through the
	 * cuFile library g (source/gds.h), on the calling worker, which waits for it: up to
	 * `batch` requests in one cuFile batch (0 or 1: one cuFileRead). The engine asks only
	 * for WLIFT__READ_DIRECT-aligned ranges of sources whose ops->direct succeeded. Bytes
	 * read (fewer only at the end of the object), or a negative code with d filled. NULL
	 * when the source cannot; the engine uses it only when the sink's destination is device
	 * memory (sink ops->device_ptr). */
	int64_t (*read_to_device)(struct wlift__source *s, struct wlift__gds *g, uint64_t off,
				  size_t len, void *devbase, size_t devoff, int device,
				  unsigned batch, wlift_diag *d);
	void (*destroy)(struct wlift__source *s);
	/* Add the source's request counters since open (remote sources: retries, hedges) into
	 * c; the engine reports a load's difference in wlift_stats. NULL: none. */
	void (*counters)(struct wlift__source *s, struct wlift__source_counters *c);
};

/* The common part of every source; each kind embeds it first. */
struct wlift__source {
	const struct wlift__source_ops *ops;
	char *uri;     /* as given (for diagnostics) */
	uint64_t size; /* object size in bytes, fixed at open */
	int refs;      /* shared by a checkpoint and its results (atomic) */
};

/* Initialise the common part (refs = 1, uri copied). 0 or -ENOMEM. */
int wlift__source_init(struct wlift__source *s, const struct wlift__source_ops *ops,
		       const char *uri, uint64_t size);
struct wlift__source *wlift__source_ref(struct wlift__source *s);
/* Drop a reference; destroys at zero. Accepts NULL. */
void wlift__source_unref(struct wlift__source *s);

/* Read exactly len bytes at off (a synchronous helper over the source's read queue).
 * 0, or a negative code with d filled (a read past the end is WLIFT_ETRUNCATED). */
int wlift__source_read(struct wlift__source *s, void *buf, size_t len, uint64_t off,
		       wlift_diag *d);

/* For sources without a completion mechanism of their own: a read queue that performs each
 * read inside reap, in submission order, on the reaping worker, with do_read (bytes read, or
 * a negative code with d filled). name is the strategy it reports. 0 or -ENOMEM. */
int wlift__syncq_create(unsigned depth, const char *name,
			int64_t (*do_read)(struct wlift__source *s, const struct wlift__read *r,
					   wlift_diag *d),
			struct wlift__rq **out);
/* The strategy name of a queue ("pread", "uring", "memory", ...). */
const char *wlift__rq_name(const struct wlift__rq *q);

/* Wrap a memory image (not copied). */
int wlift__source_open_memory(const void *buf, size_t len, const char *name,
			      struct wlift__source **out, wlift_diag *d);

/* ---- schemes: what the locator needs from a URI ---------------------------------------- */

enum wlift__stat_kind {
	WLIFT_STAT_OBJECT = 1, /* something to read (a file) */
	WLIFT_STAT_CONTAINER,  /* something to list (a directory, later a bucket prefix) */
};

/* What uri names: *kind is a WLIFT_STAT_* value. A negative code (d filled) when it cannot
 * be told (-ENOENT when nothing is there; WLIFT_EUNSUPPORTED for schemes this build lacks;
 * WLIFT_EURI for URIs it does not understand). */
int wlift__source_stat(wlift_ctx *ctx, const char *uri, int *kind, wlift_diag *d);
/* The names directly inside container uri (no "." entries), sorted; free with
 * wlift__strv_free. */
int wlift__source_list(wlift_ctx *ctx, const char *uri, char ***names, size_t *n,
		       wlift_diag *d);
/* Open the object uri. */
int wlift__source_open(wlift_ctx *ctx, const char *uri, struct wlift__source **out,
		       wlift_diag *d);
/* Read the whole (small) object uri into a NUL-terminated malloc'd buffer; objects larger
 * than max bytes fail with -EFBIG (d filled). */
int wlift__source_read_all(wlift_ctx *ctx, const char *uri, size_t max, char **buf,
			   size_t *len, wlift_diag *d);
void wlift__strv_free(char **v, size_t n);

/* URI helpers. A local path or file:// URI (empty or localhost authority, RFC 8089) maps to a
 * path (a pointer into uri); NULL for other schemes and other hosts. */
const char *wlift__uri_local_path(const char *uri);
/* The n bytes of s percent-encoded for a URL path (RFC 3986: unreserved characters and
 * sub-delimiters kept, '/' kept when keep_slash); malloc'd, NULL on ENOMEM. */
char *wlift__uri_encode(const char *s, size_t n, int keep_slash);
/* "dir/name" (one '/' between them; name percent-encoded when dir is a remote URL); malloc'd,
 * NULL on ENOMEM. */
char *wlift__uri_join(const char *dir, const char *name);
/* The container part of uri ("." for a bare local name); malloc'd, NULL on ENOMEM. */
char *wlift__uri_dirname(const char *uri);
/* The last component of uri (a pointer into it). */
const char *wlift__uri_basename(const char *uri);

#endif
