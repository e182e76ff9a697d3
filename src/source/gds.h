/* SPDX-License-Identifier: Apache-2.0 */
/*
 * GPU Direct Storage (gds.c): NVIDIA's cuFile library loaded at run time (dlopen of
 * libcufile.so.0, or the library WEIGHTLIFT_CUFILE_LIBRARY names, such as the fake of the
 * tests), its driver opened once per process on a thread of its own (cuFileDriverOpen can
 * take seconds: a load reads through the pinned ring meanwhile), the mode it opened in
 * (true GDS or compatibility mode, from cuFileDriverGetProperties), file handles and device
 * buffers registered, and reads straight into device memory (batches of asynchronous
 * requests where the library has the batch API, else synchronous cuFileReads). The caller makes
 * the device's CUDA context current around buffer registration and reads (cuFile uses the
 * calling thread's context). The file source (file.c) registers its descriptors; the engine
 * decides when to read through it.
 */
#ifndef WLIFT_SOURCE_GDS_H
#define WLIFT_SOURCE_GDS_H

#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

struct wlift__gds;

/* wlift__gds_state: the driver is still opening; it opened in true GDS mode (nvidia-fs
 * loaded and a storage kind it can reach); it opened in compatibility mode (cuFile reads
 * through host bounce buffers with POSIX I/O). */
#define WLIFT__GDS_OPENING 0
#define WLIFT__GDS_TRUE 1
#define WLIFT__GDS_COMPAT 2

/* The cuFile library at path (NULL or "": libcufile.so.0), loaded once per process and
 * kept, its driver's open started in the background (once). WLIFT_ENODEV with d naming the
 * library and the reason when it cannot be loaded or lacks an entry point (the failure is
 * kept: the same path fails the same). Thread-safe; returns at once. */
int wlift__gds_get(const char *path, struct wlift__gds **out, wlift_diag *d);

/* Where the driver's open stands: WLIFT__GDS_OPENING (only with wait 0: wait blocks until
 * it is decided), WLIFT__GDS_TRUE or WLIFT__GDS_COMPAT once open, or the negative code of
 * its failure (WLIFT_ECUFILE, d naming the library and cuFile's error). Thread-safe. */
int wlift__gds_state(struct wlift__gds *g, int wait, wlift_diag *d);

/* "cufile", "compat" or "off" for a wlift__gds_state value (negative: "off"). */
const char *wlift__gds_mode_name(int state);

/* cuFileBufRegister of [dp, dp+len) of device memory (the device's context current): 0, or
 * WLIFT_ECUFILE with d filled (reads into unregistered memory still work, through cuFile's
 * own bounce buffers). */
int wlift__gds_buf_register(struct wlift__gds *g, void *dp, size_t len, wlift_diag *d);
void wlift__gds_buf_deregister(struct wlift__gds *g, void *dp);

/* cuFileHandleRegister of descriptor fd (of uri, for messages) into *fh. 0, or
 * WLIFT_ECUFILE with d naming uri and cuFile's error (for example a file system cuFile
 * cannot read directly in true GDS mode). */
int wlift__gds_handle_register(struct wlift__gds *g, int fd, const char *uri, void **fh,
			       wlift_diag *d);
void wlift__gds_handle_deregister(struct wlift__gds *g, void *fh);

/* Read len bytes at file offset off of handle fh into device memory at base + dev_off (base:
 * the registered range's start when it is registered, as cuFile wants; the device's context
 * current). With batch >= 2, a library that has the batch API and len of at least two
 * WLIFT_GDS_BATCH_PIECE: up to `batch` requests in one cuFileBatchIOSubmit, reaped out of
 * order with cuFileBatchIOGetStatus; else (or once a batch cannot be set up or submitted:
 * for the rest of the process) one synchronous cuFileRead. A batch whose requests fail is
 * read again with cuFileRead (working, it turns batches off for the process; failing, d
 * names both failures). Bytes read (fewer only at the end
 * of the file), or a negative code with d naming uri, the offset and cuFile's error
 * (WLIFT_ECUFILE, or -errno for a system error). */
int64_t wlift__gds_read(struct wlift__gds *g, void *fh, void *base, size_t dev_off, size_t len,
			uint64_t off, unsigned batch, const char *uri, wlift_diag *d);

/* The requests a batch may hold in this library (0: reads are synchronous cuFileReads, the
 * library lacking the batch API, its driver allowing none, or a batch having failed to set
 * up). Meaningful once the driver is open. */
int wlift__gds_batch_max(struct wlift__gds *g);

#endif
