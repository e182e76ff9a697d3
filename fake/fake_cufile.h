/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The fake cuFile's own interface, for tests (fake_cufile.c, libwlift_fakecufile.so, selected
 * with WEIGHTLIFT_CUFILE_LIBRARY): what it holds and saw. Look fakecufile_stats up with dlsym
 * on that library. It writes the fake CUDA driver's memfd-backed "device" memory (it finds
 * the driver that WEIGHTLIFT_CUDA_LIBRARY names, already loaded).
 *
 * Knobs (read at cuFileDriverOpen):
 *   FAKECUFILE_MODE=gds|compat   the properties' mode (default gds: nvidia-fs 2.x loaded,
 *                                NVMe supported; compat: no nvidia-fs, no storage kind)
 *   FAKECUFILE_OPEN_DELAY_MS=N   cuFileDriverOpen sleeps N ms first (a slow driver open)
 *   FAKECUFILE_FAIL_OPEN=1       cuFileDriverOpen fails (CU_FILE_DRIVER_NOT_INITIALIZED)
 *   FAKECUFILE_FAIL_HANDLE=1     cuFileHandleRegister fails (CU_FILE_IO_NOT_SUPPORTED)
 *   FAKECUFILE_FAIL_BUF=1        cuFileBufRegister fails (CU_FILE_INVALID_MAPPING_SIZE)
 *   FAKECUFILE_FAIL_READ=N       the Nth read (1-based; a cuFileRead or one request of a
 *                                batch) fails (CU_FILE_IO_ERROR), and with
 *                                FAKECUFILE_FAIL_READS_ALL=1 every one from there on
 *   FAKECUFILE_NO_BATCH=1        the driver allows no batches (max_batch_io_size 0)
 *   FAKECUFILE_FAIL_BATCH=setup|submit  that batch call fails (CU_FILE_IO_NOT_SUPPORTED)
 *   FAKECUFILE_WORKERS=N, FAKECUFILE_DELAY_US=N  the batch workers (3) and their random
 *                                delay before each request (up to 300 us)
 */
#ifndef WLIFT_FAKE_CUFILE_H
#define WLIFT_FAKE_CUFILE_H

#include <stdint.h>

struct fakecufile_stats {
	unsigned opens;		   /* cuFileDriverOpen calls that succeeded */
	unsigned handles;	   /* file handles registered now */
	unsigned handles_ever;
	unsigned bufs;		   /* device buffers registered now */
	unsigned bufs_ever;
	uint64_t reads, read_bytes; /* cuFileRead calls that succeeded, their bytes */
	uint64_t reads_registered;  /* of them, into a registered buffer */
	uint64_t unaligned;	   /* reads whose file offset, device address or length (but at
				      the end of the file) is not 4 KiB aligned */
	char first_unaligned[128]; /* the first of them */
	uint64_t failed;	   /* injected failures */
	unsigned batches;	   /* batches set up now (not destroyed) */
	unsigned batches_ever;
	uint64_t batch_submits;	   /* cuFileBatchIOSubmit calls that succeeded */
	uint64_t batch_ios;	   /* batch requests that completed (also in reads) */
	uint64_t batch_out_of_order; /* requests reaped after a later-submitted one */
	uint64_t batch_cancels;
	unsigned batch_max_inflight; /* most requests of one batch queued or running at once */
	unsigned violations;	   /* misuse: no driver, a bad handle, memory outside the
				      device's, no current context, a read on a buffered fd */
	char violation[256];	   /* the first */
};

typedef void (*fakecufile_stats_fn)(struct fakecufile_stats *out);

#endif
