/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Every tunable of the engine in one place, with the measurement behind its value
 * (bench/RESULTS.md has the runs). Knobs a user can set (threads, chunk size, bytes in flight)
 * are resolved once per load from the options and the context; these are their defaults and
 * the engine's internal thresholds.
 */
#ifndef WLIFT_COMMON_TUNABLES_H
#define WLIFT_COMMON_TUNABLES_H

/* Read unit and the cap on bytes in flight (defaults of the user knobs). */
#define WLIFT_DEFAULT_CHUNK_BYTES (8u << 20)
#define WLIFT_DEFAULT_INFLIGHT_BYTES (256u << 20)
/* Default I/O threads: at least this many, as parallel reads help even on few cores (the
 * page-cache copy is per thread, and network file systems hide latency). */
#define WLIFT_MIN_DEFAULT_THREADS 4u

/* AUTO direct: O_DIRECT when less than this fraction of the bytes a load reads from a file is
 * in the page cache; AUTO mmap maps when at least this fraction is. */
#define WLIFT_DIRECT_MAX_RESIDENT 0.5
/* GPU Direct Storage reads (cuFile) are planned 4 KiB aligned in file offset, length and
 * device address, whatever smaller O_DIRECT alignment the file system reports: NVIDIA's
 * cuFile guide asks for 4 KiB alignment for DMA straight into GPU memory (anything else goes
 * through cuFile's internal bounce buffers). */
#define WLIFT_GDS_ALIGN 4096u
/* GPU Direct Storage reads use cuFile's batch API where the library has it: a chunk read by
 * cuFile is split into up to WEIGHTLIFT_GDS_BATCH requests (default below, 0: synchronous
 * cuFileRead; at most WLIFT_MAX_GDS_BATCH and the driver's max_batch_io_size) of at least
 * WLIFT_GDS_BATCH_PIECE bytes, submitted at once, so each worker keeps several DMAs in flight
 * (synchronous reads give one per worker). Not measured on a GPU yet: the default follows
 * NVIDIA's guidance that requests of 1 MiB and up reach the link rate; bench/gpu.sh compares
 * WEIGHTLIFT_GDS_BATCH=0 with the default. */
#define WLIFT_DEFAULT_GDS_BATCH 8u
#define WLIFT_MAX_GDS_BATCH 64u
#define WLIFT_GDS_BATCH_PIECE (1u << 20)
/* AUTO direct: reading fewer bytes than this from a file always uses buffered reads (setup
 * cost dominates). */
#define WLIFT_DIRECT_MIN_BYTES (32u << 20)
/* A tensor-parallel block along a dim > 0 is outer pieces, stride apart: pieces of at least
 * this many bytes are read each on its own (the ranks together read each byte once); smaller
 * ones are read as their covering range and gathered (one large read instead of many small:
 * below this a piece costs more in per-read overhead than the bytes between pieces).
 * Measured (bench/shard_piece.py, rank 0 of 4, a 32 MiB block, bench/RESULTS.md): covering
 * time / piece-by-piece time = 0.53 (256 B), 0.71 (1 KiB), 1.36 (2 KiB), 1.55 (4 KiB),
 * 2.9 (8 KiB), 4.7 (64 KiB) from the page cache; with O_DIRECT 0.14, 0.42, 0.72, 0.99
 * (4 KiB: even), 1.72 (8 KiB), 2.1 (64 KiB). 8 KiB is the smallest size that wins both ways.
 * WEIGHTLIFT_SHARD_PIECE_MIN overrides it. */
#define WLIFT_SHARD_PIECE_MIN (8u << 10)
/* Collectives of distributed loads (WEIGHTLIFT_COMM_TIMEOUT): a peer silent this long is
 * taken for gone (NCCL itself never times out). Generous: a rank may be reading gigabytes
 * before it joins a broadcast. */
#define WLIFT_COMM_TIMEOUT_S 300u
#define WLIFT_MAX_COMM_TIMEOUT_S 86400u
/* O_DIRECT ranges are capped so that a fix-up (and the readiness it delays) stays small. */
#define WLIFT_DIRECT_MAX_RANGE (64u << 20)
/* AUTO direct only when the plan's ranges average at least this much: a layout whose tensors
 * break into many small ranges (neighbours whose offsets differ mod 64) pays a block-widened
 * read, a queue slot and a fix-up per range, where buffered reads get the kernel's read-ahead.
 * (The 87 MB MiniLM file is one range: auto O_DIRECT 1.42 GB/s cold against 0.91 GB/s
 * buffered, so it keeps O_DIRECT.) */
#define WLIFT_DIRECT_MIN_AVG_RANGE (4u << 20)
/* Network and FUSE file systems want large requests. */
#define WLIFT_REMOTE_FS_CHUNK (16u << 20)
/* io_uring queue depth per worker is max_inflight / chunk / threads, capped here. */
#define WLIFT_MAX_QD 64u
/* GPU loads through io_uring register the pinned ring's segments (at most 256 MiB each, the
 * ring at most 16 GiB) as fixed buffers: at most this many. */
#define WLIFT_MAX_STAGING_REGIONS 64u
/* io_uring fixed buffers for reads into a staged sink's ring (WEIGHTLIFT_URING_FIXED). */
#define WLIFT_DEFAULT_URING_FIXED 1
/* One io_uring read is capped at this many bytes (its length field is 32-bit); the engine
 * resubmits the rest as it does for any short read. */
#define WLIFT_MAX_URING_READ (1u << 30)

/* HTTP(S) sources. Ranged GETs of this size (the plan's chunk unless the caller set one),
 * WLIFT_HTTP_DEFAULT_REQUESTS of them in flight over the load's workers (each worker drives
 * its own curl multi handle, so the requests spread over threads and connections). */
#define WLIFT_HTTP_CHUNK (16u << 20)
#define WLIFT_HTTP_DEFAULT_REQUESTS 16u
/* The probe at open asks for the first WLIFT_HEADER_PROBE bytes; seconds to connect; a
 * transfer moving fewer than WLIFT_HTTP_STALL_RATE bytes/s for WLIFT_HTTP_STALL_S fails. */
#define WLIFT_HTTP_CONNECT_S 30u
#define WLIFT_HTTP_STALL_S 60u
#define WLIFT_HTTP_STALL_RATE 1024L
#define WLIFT_HTTP_MAX_TIMEOUT_S 86400u
#define WLIFT_HTTP_MAX_REDIRS 10L
/* curl's receive buffer (its maximum, CURL_MAX_READ_SIZE): fewer write callbacks. */
#define WLIFT_HTTP_BUFFER (512L << 10)
#define WLIFT_HF_ENDPOINT "https://huggingface.co"
/* Retries of a failed read (timeouts, resets, short bodies, 408/429/5xx): this many more
 * attempts, waiting WLIFT_HTTP_RETRY_BASE_MS doubled per attempt (with jitter) up to
 * WLIFT_HTTP_RETRY_MAX_MS, which also caps a server's Retry-After. */
#define WLIFT_HTTP_RETRIES 5u
#define WLIFT_HTTP_MAX_RETRIES 100u
#define WLIFT_HTTP_RETRY_BASE_MS 200u
#define WLIFT_HTTP_RETRY_MAX_MS 10000u
#define WLIFT_HTTP_MAX_RETRY_MS 600000u
/* Hedged requests: a read without progress for WLIFT_HTTP_HEDGE times the median duration of
 * the queue's last WLIFT_HTTP_LAT_SAMPLES completed reads (at least WLIFT_HTTP_HEDGE_MIN_S,
 * and only once WLIFT_HTTP_HEDGE_MIN_SAMPLES completed) is asked again on a fresh connection
 * into a buffer of its own; at most WLIFT_HTTP_MAX_HEDGES per queue at once. */
#define WLIFT_HTTP_HEDGE 4u
#define WLIFT_HTTP_MAX_HEDGE 100u
#define WLIFT_HTTP_HEDGE_MIN_S 0.25
#define WLIFT_HTTP_HEDGE_MIN_SAMPLES 3u
#define WLIFT_HTTP_LAT_SAMPLES 32u
#define WLIFT_HTTP_MAX_HEDGES 1u
/* Adaptive concurrency (one limit per load over all its queues, src/common/gate.c): starts
 * with this many requests active per queue, doubles while each round's total throughput grows
 * by WLIFT_HTTP_GROW_GAIN, adds one while it still grows, and halves on 429/503. */
#define WLIFT_HTTP_START_ACTIVE 1u
#define WLIFT_HTTP_GROW_GAIN 1.1
/* The bandwidth cap's bucket holds a tenth of a second of the rate, at least this much (one
 * curl buffer: a transfer delivers up to WLIFT_HTTP_BUFFER bytes per callback). */
#define WLIFT_RATE_MIN_BURST (512.0 * 1024)
/* gs:// sources: the JSON API's address (STORAGE_EMULATOR_HOST replaces it); a cached access
 * token is fetched anew this many seconds before it expires (Google's libraries use a few
 * minutes: a token handed out must outlive the request it goes with); a token request gives
 * up after WLIFT_GCS_TOKEN_TIMEOUT_S. */
#define WLIFT_GCS_ENDPOINT "https://storage.googleapis.com"
#define WLIFT_GCS_TOKEN_MARGIN_S 300
#define WLIFT_GCS_TOKEN_TIMEOUT_S 60L
/* s3://: keys per ListObjectsV2 page (S3's own maximum; WEIGHTLIFT_S3_LIST_MAX_KEYS lowers
 * it), the most keys one listing gathers, and the region when nothing names one and the
 * bucket's cannot be asked (a custom endpoint). */
#define WLIFT_S3_LIST_MAX_KEYS 1000u
#define WLIFT_S3_LIST_LIMIT 1000000u
#define WLIFT_S3_DEFAULT_REGION "us-east-1"
/* GPU loads: the pinned staging ring (WEIGHTLIFT_CUDA_RING_BYTES / _SLOTS). 16 buffers of
 * 8 MiB: one per read in flight for the default threads with room for the copies behind them
 * (the H2D copy of 8 MiB takes ~0.2 ms at 50 GB/s, so a few buffers in copy keep the link
 * busy); host memory stays at this whatever the checkpoint size. */
#define WLIFT_DEFAULT_RING_BYTES (128u << 20)
#define WLIFT_DEFAULT_RING_SLOTS 16u
/* GPU loads: seconds a context keeps a load's registered pinned ring for its next load of the
 * same device (WEIGHTLIFT_CUDA_RING_KEEP_S, 0 .. 3600; 0: not kept). Registering 128 MiB
 * costs tens of milliseconds on a real driver, a load of a small model about as much; 30 s
 * covers a run's loads one after another and gives the pinned memory back soon after. */
#define WLIFT_DEFAULT_RING_KEEP_S 30u
#define WLIFT_MAX_RING_KEEP_S 3600u

/* Mapped mode: populate spans shorter than this from one thread (thread start-up dominates). */
#define WLIFT_POPULATE_MIN_PARALLEL (64u << 20)
/* Mapped mode: longer spans are populated in pieces of this size, claimed in file order by the
 * threads, and each tensor is handed out (ready callback) as soon as the pieces up to its end
 * are in: the consumer of the first tensors overlaps the rest, and a cancel stops it. 8 MiB:
 * the device read-ahead of this machine's disk (the fault path reads that much at a time), and
 * within the noise of larger pieces cold (bench/RESULTS.md). */
#define WLIFT_POPULATE_PIECE (8u << 20)

/* Header read: the first read of a file asks for this many bytes (a longer header costs one
 * more read). 12 KiB so that the answer to a remote open fits in a new TCP connection's
 * initial window (10 segments of 1448 bytes, with room for the response's headers): 64 KiB
 * took three more round trips of slow start. Measured across the emulated 50 ms link
 * (bench/remote_bench.py, bench/RESULTS.md): time to the first tensor of a 2 KiB-header file
 * 6.4-6.9 round trips with 64 KiB, 3.7-4.4 with 12 KiB; a 30 KiB header is 3 round trips
 * either way (12 KiB, then the rest on a window that has grown). */
#define WLIFT_HEADER_PROBE (12u << 10)
/* The files of a remote checkpoint (an index's shards) are opened this many at once, each
 * on a thread (its own connection): the open then costs one file's round trips (connect +
 * the header's ranged GET) instead of one per file. Measured across the emulated 50 ms link
 * (bench/RESULTS.md): 6 shards + index 0.76 s one after another, 0.21-0.26 s at once (4-5 round trips:
 * the index, then every shard together). */
#define WLIFT_OPEN_PARALLEL 16u
/* Index files larger than this are not plausible (real ones are well under 1 MiB). */
#define WLIFT_INDEX_MAX_BYTES (256u << 20)

/* The calling thread reports progress (and polls for a cancel) at least this often. */
#define WLIFT_PROGRESS_MS 100

#endif
