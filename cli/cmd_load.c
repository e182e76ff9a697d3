/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `weightlift load URI`: open and load a checkpoint into memory with the given knobs, show a
 * progress bar on a terminal, and report throughput (for a mapped load, the mapping and the
 * time to populate it), the library's stats and the peak anonymous-memory growth. --touch
 * adds the "ready time" (README.md, `load`; bench/README.md): one read pass over every byte
 * (XOR over uint64) after the load, timed from the open. --repeat runs the whole open + load
 * (+ touch) several times and reports the median run.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

static void usage(FILE *out)
{
	fputs(
	    "usage: weightlift load [options] URI\n"
	    "\n"
	    "Load a checkpoint into memory and report throughput and statistics.\n"
	    "\n"
	    "options:\n"
	    "  --threads N             I/O threads (default: WEIGHTLIFT_THREADS or tuned)\n"
	    "  --chunk-size SIZE       read unit, e.g. 8M (default: WEIGHTLIFT_CHUNK_BYTES)\n"
	    "  --max-inflight SIZE     bytes in flight (default: WEIGHTLIFT_MAX_INFLIGHT_BYTES)\n"
	    "  --strategy S            auto | pread | uring (default auto)\n"
	    "  --direct D              auto | on | off: O_DIRECT reads (default auto)\n"
	    "  --gds G                 auto | on | off: GPU Direct Storage (cuFile) for GPU\n"
	    "                          loads of local files (default: WEIGHTLIFT_GDS or auto:\n"
	    "                          true GDS mode, files read with O_DIRECT; on: every\n"
	    "                          file, compatibility mode too, or fail)\n"
	    "  --mmap                  tensors are views of a private mapping of the file\n"
	    "                          (reported as mapped, with the time to populate it)\n"
	    "  --names A,B,...         load only these tensors (repeatable)\n"
	    "  --rank R --world W      rank R of W (0 <= R < W <= 65536): with --shard-spec,\n"
	    "                          load only this rank's blocks; alone, file mode: load\n"
	    "                          this rank's share of the tensors (contiguous runs\n"
	    "                          balanced by bytes, as weightlift.distributed reads them\n"
	    "                          before its broadcast), each byte read by one rank\n"
	    "  --shard-spec FILE       JSON object {\"name or glob\": dim or null}: split the\n"
	    "                          matching tensors along dim into W blocks of ceil(n/W)\n"
	    "                          (null, or no match: replicated, loaded whole)\n"
	    "  --experts P[:N]         expert parallelism over --rank/--world: load only the\n"
	    "                          routed experts (names with experts.<e>.) this rank\n"
	    "                          owns: P = block (contiguous blocks, remainder to the\n"
	    "                          lowest ranks) or round-robin (e % W == R); N experts\n"
	    "                          (default: counted in the checkpoint); all other\n"
	    "                          tensors are loaded on every rank\n"
	    "  --comm mpi              exchange over MPI (start the ranks with mpirun -n W;\n"
	    "                          rank and world are the job's): each rank reads its\n"
	    "                          share (file mode) or its blocks and its share of the\n"
	    "                          replicated tensors (--shard-spec), then receives the\n"
	    "                          rest from the ranks that read it (host memory)\n"
	    "  --device DEV            cpu (default), cuda (= cuda:0) or cuda:N\n"
	    ,
	    out);
	/* Two strings: one would pass the 4095 characters ISO C guarantees. */
	fputs(
	    "  --dtype T               convert floating-point tensors (F8 formats included)\n"
	    "                          to F16, BF16 or F32\n"
	    "  --max-device-bytes SIZE GPU: device memory the load may use (a load that needs\n"
	    "                          more fails before it reads; WEIGHTLIFT_MAX_DEVICE_BYTES)\n"
	    "  --groups                GPU: load in groups that each fit --max-device-bytes, one\n"
	    "                          after another, each freed before the next (\"groups\")\n"
	    "  --repeat N              run open + load N times, report the median run\n"
	    "  --touch                 after loading, read every byte once (XOR over uint64)\n"
	    "                          and report ready_s = open + load + that pass (first\n"
	    "                          on the headline)\n"
	    "  --json                  print one JSON object: {schema, bytes, seconds, gb_per_s,\n"
	    "                          open_s, plan_s, read_s, strategy, direct, threads,\n"
	    "                          chunk_bytes, peak_rss_anon, ...}\n"
	    CLI_CACHE_HELP
	    "  -q, --quiet             no progress bar, no output on success\n"
	    "  -v, --verbose           library log messages on stderr (twice: debug)\n"
	    "  -h, --help              show this help\n"
	    "\n"
	    "SIZE takes K, M, G suffixes (binary). A progress bar is drawn on stderr when it is a\n"
	    "terminal (not with --json or --quiet).\n"
	    "\n"
	    "exit status: 0 ok, 1 bad input, 2 usage, 3 I/O, 4 permission, 5 device\n",
	    out);
}

struct run {
	wlift_stats st;
	double ready_s; /* open + load + touch pass (with --touch) */
	double touch_s;
	double wall_s; /* open + load as seen from here */
	uint64_t xor ;
	size_t ntensors;
	size_t nfiles; /* files holding the loaded tensors */
	size_t groups; /* --groups: how many */
};

/* --groups: each group's result adds to the run's figures, then goes. */
static int group_done(wlift_result *r, size_t g, void *user)
{
	struct run *run = user;
	wlift_stats st;

	(void)g;
	wlift_result_stats(r, &st);
	run->st.bytes += st.bytes;
	run->st.bytes_read += st.bytes_read;
	run->st.fixups += st.fixups;
	run->st.fixup_bytes += st.fixup_bytes;
	run->st.fixed_reads += st.fixed_reads;
	run->st.open_s = st.open_s;
	run->st.plan_s += st.plan_s;
	run->st.read_s += st.read_s;
	run->st.strategy = st.strategy;
	run->st.direct |= st.direct;
	run->st.threads = st.threads;
	run->st.chunk_bytes = st.chunk_bytes;
	run->ntensors += wlift_result_count(r);
	run->groups++;
	wlift_result_free(r);
	return 0;
}

/* Whether the load mapped the files instead of reading them: the "read" of the stats is then
 * populating page tables from the page cache, and no GB/s describes it. */
static bool run_mapped(const struct run *r)
{
	return r->st.strategy && strcmp(r->st.strategy, "mmap") == 0;
}

/* The number of distinct files that hold the loaded tensors. */
static size_t count_files(const wlift_ckpt *ck, const wlift_result *res)
{
	size_t nf = wlift_ckpt_nfiles(ck), n = 0;
	bool *seen = calloc(nf ? nf : 1, sizeof(*seen));

	if (!seen)
		return nf;
	for (size_t i = 0; i < wlift_result_count(res); i++) {
		wlift_tensor_view v;

		wlift_tensor_get(wlift_result_tensor(res, i), &v);
		if (v.info.file < nf && !seen[v.info.file]) {
			seen[v.info.file] = true;
			n++;
		}
	}
	free(seen);
	return n;
}

struct progress {
	bool on;
	double t0, last;
	int drawn;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int on_progress(uint64_t done, uint64_t total, void *user)
{
	struct progress *p = user;
	double t = now_s(), el = t - p->t0, frac;
	char a[32], b[32];
	int fill;

	if (!p->on)
		return 0;
	/* Redraw at most 10 times a second; the final call (done == total) always draws. */
	if (done < total && t - p->last < 0.1)
		return 0;
	p->last = t;
	frac = total ? (double)done / (double)total : 1.0;
	fill = (int)(frac * 30.0);
	fprintf(stderr, "\r[%.*s%*s] %3d%% %s / %s %.2f GB/s", fill,
		"##############################", 30 - fill, "", (int)(frac * 100.0),
		cli_fmt_bytes(done, a, sizeof(a)), cli_fmt_bytes(total, b, sizeof(b)),
		el > 0 ? (double)done / el / 1e9 : 0.0);
	fflush(stderr);
	p->drawn = 1;
	return 0;
}

static void progress_clear(struct progress *p)
{
	if (p->on && p->drawn) {
		fputs("\r\033[K", stderr);
		fflush(stderr);
	}
	p->drawn = 0;
}

/* The read pass of "ready time": XOR every 8-byte word (and the tail bytes) of every
 * tensor. memcpy keeps unaligned tensors legal; compilers turn it into plain loads. */
static uint64_t touch_pass(const wlift_result *res)
{
	size_t n = wlift_result_count(res);
	uint64_t x = 0;

	for (size_t i = 0; i < n; i++) {
		const wlift_tensor *t = wlift_result_tensor(res, i);
		wlift_tensor_view v;
		const unsigned char *p;
		uint64_t k = 0, w;

		if (!t)
			continue;
		wlift_tensor_get(t, &v);
		if (!v.data || v.device >= 0)
			continue;
		p = v.data;
		/* Four independent lanes of 8 bytes: the loop then runs at memory bandwidth
		 * (and vectorises), as the peers' numpy/torch passes do. */
		{
			uint64_t l[4] = {0, 0, 0, 0};

			for (; k + 32 <= v.nbytes; k += 32) {
				uint64_t q[4];

				memcpy(q, p + k, 32);
				l[0] ^= q[0];
				l[1] ^= q[1];
				l[2] ^= q[2];
				l[3] ^= q[3];
			}
			x ^= l[0] ^ l[1] ^ l[2] ^ l[3];
		}
		for (; k + 8 <= v.nbytes; k += 8) {
			memcpy(&w, p + k, 8);
			x ^= w;
		}
		for (; k < v.nbytes; k++)
			x ^= (uint64_t)p[k] << (8 * (k & 7));
	}
	return x;
}

static int cmp_runs(const void *a, const void *b)
{
	const struct run *x = a, *y = b;
	double kx = x->ready_s > 0 ? x->ready_s : x->st.seconds;
	double ky = y->ready_s > 0 ? y->ready_s : y->st.seconds;

	return (kx > ky) - (kx < ky);
}

static json_object *run_json(const struct run *r, bool touch)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "bytes", json_object_new_uint64(r->st.bytes));
	json_object_object_add(o, "seconds", json_object_new_double(r->st.seconds));
	json_object_object_add(o, "gb_per_s", json_object_new_double(r->st.gb_per_s));
	json_object_object_add(o, "open_s", json_object_new_double(r->st.open_s));
	json_object_object_add(o, "plan_s", json_object_new_double(r->st.plan_s));
	json_object_object_add(o, "read_s", json_object_new_double(r->st.read_s));
	/* Remote sources' requests asked again (docs/remote.md, Retries and Hedged requests). */
	json_object_object_add(o, "retries", json_object_new_uint64(r->st.retries));
	json_object_object_add(o, "hedges", json_object_new_uint64(r->st.hedges));
	json_object_object_add(o, "hedges_won", json_object_new_uint64(r->st.hedges_won));
	json_object_object_add(o, "bytes_rerequested",
			       json_object_new_uint64(r->st.bytes_rerequested));
	if (touch) {
		json_object_object_add(o, "ready_s", json_object_new_double(r->ready_s));
		json_object_object_add(o, "touch_s", json_object_new_double(r->touch_s));
	}
	return o;
}

/* --json prints one object even when the load fails: {schema, uri, errors}. */
static void print_json_error(const char *uri, int err, const wlift_diag *d)
{
	struct cli_jw w;

	cli_jw_init(&w, stdout);
	cli_jw_open(&w, '{');
	cli_jw_key(&w, "schema");
	cli_jw_i64(&w, CLI_JSON_SCHEMA);
	cli_jw_key(&w, "uri");
	cli_jw_str(&w, uri);
	cli_jw_key(&w, "errors");
	cli_jw_open(&w, '[');
	cli_jw_error(&w, uri, err, d);
	cli_jw_close(&w, ']');
	cli_jw_close(&w, '}');
	cli_jw_end(&w);
}

/* File mode (--world W without --shard-spec or --experts): this rank's share of the selected
 * tensors (sel, or every tensor when sel is NULL), as weightlift.distributed assigns them
 * before its broadcast: contiguous runs in checkpoint order balanced by bytes, a tensor
 * going to the rank whose share [r * total / W, (r + 1) * total / W) holds its midpoint. So
 * across the W ranks every byte is read once. *out (free it) may be empty. 0 or -ENOMEM. */
static int file_share(const wlift_ckpt *ck, const char *const *sel, size_t nsel, int rank,
		      int world, const char ***out, size_t *nout)
{
	size_t n = sel ? nsel : wlift_ckpt_count(ck), k = 0;
	const char **mine = calloc(n ? n : 1, sizeof(*mine));
	long double total = 0, pos = 0;

	*out = mine;
	*nout = 0;
	if (!mine)
		return -ENOMEM;
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < n; i++) {
			wlift_tensor_info ti;
			int64_t idx = sel ? wlift_ckpt_find(ck, sel[i]) : (int64_t)i;

			if (idx < 0 || wlift_ckpt_info(ck, (size_t)idx, &ti) < 0)
				continue; /* the load names it */
			if (pass == 0) {
				total += ti.nbytes;
				continue;
			}
			{
				long double mid = pos + (long double)ti.nbytes / 2;
				int owner = total > 0 ? (int)(mid * world / total) : 0;

				if ((owner < world ? owner : world - 1) == rank)
					mine[k++] = ti.name;
				pos += ti.nbytes;
			}
		}
	}
	*nout = k;
	return 0;
}

int cli_load(int argc, char **argv)
{
	enum {
		OPT_THREADS = 256,
		OPT_CHUNK,
		OPT_INFLIGHT,
		OPT_STRATEGY,
		OPT_DIRECT,
		OPT_MMAP,
		OPT_NAMES,
		OPT_DEVICE,
		OPT_DTYPE,
		OPT_REPEAT,
		OPT_TOUCH,
		OPT_JSON,
		OPT_RANK,
		OPT_WORLD,
		OPT_SHARD,
		OPT_EXPERTS,
		OPT_GDS,
		OPT_MAXDEV,
		OPT_GROUPS,
		OPT_COMM,
	};
	static const struct option opts[] = {
	    {"threads", required_argument, NULL, OPT_THREADS},
	    {"chunk-size", required_argument, NULL, OPT_CHUNK},
	    {"max-inflight", required_argument, NULL, OPT_INFLIGHT},
	    {"strategy", required_argument, NULL, OPT_STRATEGY},
	    {"direct", required_argument, NULL, OPT_DIRECT},
	    {"mmap", no_argument, NULL, OPT_MMAP},
	    {"names", required_argument, NULL, OPT_NAMES},
	    {"device", required_argument, NULL, OPT_DEVICE},
	    {"dtype", required_argument, NULL, OPT_DTYPE},
	    {"repeat", required_argument, NULL, OPT_REPEAT},
	    {"touch", no_argument, NULL, OPT_TOUCH},
	    {"json", no_argument, NULL, OPT_JSON},
	    {"rank", required_argument, NULL, OPT_RANK},
	    {"world", required_argument, NULL, OPT_WORLD},
	    {"shard-spec", required_argument, NULL, OPT_SHARD},
	    {"experts", required_argument, NULL, OPT_EXPERTS},
	    {"gds", required_argument, NULL, OPT_GDS},
	    {"max-device-bytes", required_argument, NULL, OPT_MAXDEV},
	    {"groups", no_argument, NULL, OPT_GROUPS},
	    {"comm", required_argument, NULL, OPT_COMM},
	    CLI_CACHE_LONGOPTS,
	    {"quiet", no_argument, NULL, 'q'},
	    {"verbose", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	static const char *const strategies[] = {"auto", "pread", "uring"};
	static const char *const directs[] = {"auto", "on", "off"};
	wlift_ctx_opts co = WLIFT_CTX_OPTS_INIT;
	wlift_load_opts lo = WLIFT_LOAD_OPTS_INIT;
	struct progress prog = {0};
	struct run *runs = NULL;
	struct cli_rss *rss = NULL;
	const char **names = NULL, **share = NULL;
	size_t nnames = 0, nshare = 0;
	bool file_mode = false;
	unsigned long threads = 0, repeat = 1, rank = 0, world = 0;
	struct cli_shard shard = {0};
	const char *shard_path = NULL;
	wlift_expert_filter experts = {0};
	bool use_experts = false;
	uint64_t chunk = 0, inflight = 0, peak = 0;
	const char *uri, *device = NULL;
	wlift_ctx *ctx = NULL;
	wlift_diag d;
	bool json = false, quiet = false, touch = false, groups = false, use_mpi = false;
	wlift_comm *comm = NULL;
	uint64_t maxdev = 0;
	int verbosity = 0, c, rc = 0, ret = 0, k;

	while ((c = getopt_long(argc, argv, ":qvh", opts, NULL)) != -1) {
		switch (c) {
		case OPT_THREADS:
			if (cli_parse_uint(optarg, WLIFT_MAX_THREADS, &threads) < 0) {
				rc = cli_usage_error("load", "invalid --threads '%s'", optarg);
				goto out;
			}
			break;
		case OPT_CHUNK:
		case OPT_INFLIGHT:
			if (cli_parse_size(optarg, c == OPT_CHUNK ? &chunk : &inflight, false) < 0 ||
			    (c == OPT_CHUNK ? chunk > WLIFT_MAX_CHUNK_BYTES
					    : inflight > WLIFT_MAX_INFLIGHT_BYTES)) {
				rc = cli_usage_error(
				    "load", "invalid %s '%s' (a size up to %s)",
				    c == OPT_CHUNK ? "--chunk-size" : "--max-inflight", optarg,
				    c == OPT_CHUNK ? "1G" : "1T");
				goto out;
			}
			break;
		case OPT_MAXDEV:
			if (cli_parse_size(optarg, &maxdev, false) < 0 || !maxdev) {
				rc = cli_usage_error("load", "invalid --max-device-bytes '%s' (a size)",
						     optarg);
				goto out;
			}
			lo.max_device_bytes = maxdev;
			break;
		case OPT_GROUPS:
			groups = true;
			break;
		case OPT_STRATEGY:
		case OPT_DIRECT:
			for (k = 0; k < 3; k++)
				if (strcmp(optarg, (c == OPT_STRATEGY ? strategies : directs)[k]) ==
				    0)
					break;
			if (k == 3) {
				rc = cli_usage_error(
				    "load", "invalid %s '%s' (one of %s)",
				    c == OPT_STRATEGY ? "--strategy" : "--direct", optarg,
				    c == OPT_STRATEGY ? "auto, pread, uring" : "auto, on, off");
				goto out;
			}
			/* The option strings are listed in the order of the enums. */
			if (c == OPT_STRATEGY)
				lo.strategy = k == 0   ? WLIFT_STRATEGY_AUTO
					      : k == 1 ? WLIFT_STRATEGY_PREAD
						       : WLIFT_STRATEGY_URING;
			else
				lo.direct = k == 0   ? WLIFT_DIRECT_AUTO
					    : k == 1 ? WLIFT_DIRECT_ON
						     : WLIFT_DIRECT_OFF;
			break;
		case OPT_GDS:
			for (k = 0; k < 3; k++)
				if (strcmp(optarg, directs[k]) == 0)
					break;
			if (k == 3) {
				rc = cli_usage_error("load", "invalid --gds '%s' (one of auto, on, off)",
						     optarg);
				goto out;
			}
			lo.gds = k == 0 ? WLIFT_GDS_AUTO : k == 1 ? WLIFT_GDS_ON : WLIFT_GDS_OFF;
			break;
		case OPT_MMAP:
			lo.mmap = 1;
			break;
		case OPT_NAMES:
			if (!optarg[0] || cli_names_split(optarg, &names, &nnames) < 0 || !nnames) {
				rc = cli_usage_error("load", "invalid --names '%s'", optarg);
				goto out;
			}
			break;
		case OPT_DEVICE: {
			/* cpu, cuda, cuda:N or N: the library parses it; the shape is a usage
			 * matter. */
			const char *p = strncmp(optarg, "cuda:", 5) == 0 ? optarg + 5 : optarg;
			if (strcmp(optarg, "cpu") && strcmp(optarg, "cuda") &&
			    (!*p || strspn(p, "0123456789") != strlen(p))) {
				rc = cli_usage_error("load",
						     "--device '%s' not understood (cpu, cuda or "
						     "cuda:N)",
						     optarg);
				goto out;
			}
			device = optarg;
			break;
		}
		case OPT_DTYPE:
			ret = wlift_dtype_from_name(optarg);
			if (ret != WLIFT_F16 && ret != WLIFT_BF16 && ret != WLIFT_F32) {
				rc = cli_usage_error("load",
						     "invalid --dtype '%s' (one of F16, BF16, "
						     "F32)",
						     optarg);
				goto out;
			}
			lo.dtype = (wlift_dtype)ret;
			ret = 0;
			break;
		case OPT_REPEAT:
			if (cli_parse_uint(optarg, 100000, &repeat) < 0) {
				rc = cli_usage_error("load", "invalid --repeat '%s'", optarg);
				goto out;
			}
			break;
		case OPT_TOUCH:
			touch = true;
			break;
		case OPT_JSON:
			json = true;
			break;
		case OPT_RANK:
			if (strcmp(optarg, "0") != 0 &&
			    cli_parse_uint(optarg, WLIFT_MAX_WORLD - 1, &rank) < 0) {
				rc = cli_usage_error("load", "invalid --rank '%s' (0 .. 65535)", optarg);
				goto out;
			}
			break;
		case OPT_WORLD:
			if (cli_parse_uint(optarg, WLIFT_MAX_WORLD, &world) < 0) {
				rc = cli_usage_error("load", "invalid --world '%s' (1 .. 65536)", optarg);
				goto out;
			}
			break;
		case OPT_SHARD:
			shard_path = optarg;
			break;
		case OPT_COMM:
			if (strcmp(optarg, "mpi") != 0) {
				rc = cli_usage_error("load", "invalid --comm '%s' (mpi)", optarg);
				goto out;
			}
			use_mpi = true;
			break;
		case OPT_EXPERTS: {
			char msg[128];
			if (cli_experts_parse(optarg, &experts, msg, sizeof(msg)) < 0) {
				rc = cli_usage_error("load", "invalid --experts '%s': %s", optarg,
						     msg);
				goto out;
			}
			use_experts = true;
			break;
		}
		case 'q':
			quiet = true;
			break;
		case 'v':
			verbosity++;
			break;
		case 'h':
			usage(stdout);
			goto out;
		default:
			k = cli_cache_opt("load", c, optarg, &co);
			if (k == 1)
				break;
			rc = k ? k : cli_getopt_error("load", c, argv);
			goto out;
		}
	}
	if (optind >= argc) {
		rc = cli_usage_error("load", "no URI given");
		goto out;
	}
	if (argc - optind > 1) {
		rc = cli_usage_error("load", "one URI at a time (got %d)", argc - optind);
		goto out;
	}
	if (groups && (!device || strcmp(device, "cpu") == 0)) {
		rc = cli_usage_error("load", "--groups loads onto a GPU: it needs --device cuda[:N]");
		goto out;
	}
	if (touch && device && strcmp(device, "cpu") != 0) {
		rc = cli_usage_error("load", "--touch reads host memory: it needs --device cpu");
		goto out;
	}
	/* --world 1 is a plain load (the spec is still checked against the tensors), as
	 * fastsafetensors' get_sharded on one rank. */
	if (rank >= (world ? world : 1) || (shard_path && world < 1 && !use_mpi)) {
		rc = cli_usage_error("load", "%s",
				     rank >= (world ? world : 1) ? "--rank must be below --world"
				     : "--shard-spec needs --world W (and --rank)");
		goto out;
	}
	if (use_mpi && (use_experts || groups || (lo.mmap == WLIFT_MMAP_ON))) {
		rc = cli_usage_error("load", "--comm does not combine with %s",
				     use_experts ? "--experts" : groups ? "--groups" : "--mmap");
		goto out;
	}
	file_mode = world > 1 && !shard_path && !use_experts && !use_mpi;
	if (file_mode && groups) {
		rc = cli_usage_error("load", "--groups does not combine with --world (file mode)");
		goto out;
	}
	if (use_experts) {
		/* Over the load's rank and world (ep_size 0), which --experts alone also sets. */
		lo.rank = (int)rank;
		lo.world_size = (int)world;
		lo.experts = &experts;
	}
	if (shard_path) {
		char *text = NULL, msg[256];
		size_t len = 0;

		/* Bounded and never blocking, as every user-named file (a spec is a few KiB). */
		rc = cli_read_small_file(shard_path, 16u << 20, &text, &len);
		if (rc)
			goto out;
		ret = cli_shard_parse(text, len, &shard, msg, sizeof(msg));
		free(text);
		if (ret < 0) {
			cli_errorf("%s: %s", shard_path, msg);
			rc = CLI_EXIT_INPUT;
			goto out;
		}
		ret = 0;
		lo.rank = (int)rank;
		lo.world_size = (int)world;
		lo.shard = shard.rules;
		lo.nshard = shard.n;
	}
	uri = argv[optind];

	co.threads = (unsigned)threads;
	co.chunk_bytes = (size_t)chunk;
	co.max_inflight_bytes = (size_t)inflight;
	lo.threads = (unsigned)threads;
	lo.chunk_bytes = (size_t)chunk;
	lo.max_inflight_bytes = (size_t)inflight;
	lo.device = device;
	lo.names = names;
	lo.nnames = nnames;
	prog.on = !json && !quiet && isatty(STDERR_FILENO);
	if (prog.on) {
		lo.progress = on_progress;
		lo.progress_user = &prog;
	}

	runs = calloc(repeat, sizeof(*runs));
	if (!runs) {
		cli_errorf("%s", wlift_strerror(-ENOMEM));
		rc = CLI_EXIT_IO;
		goto out;
	}
	wlift_diag_clear(&d);
	ret = cli_ctx_create(&ctx, &co, verbosity, &d);
	if (ret < 0) {
		rc = cli_ctx_exit_code(ret, &d);
		goto out;
	}
	if (use_mpi) {
		/* Rank and world are the job's (an explicit --rank/--world must agree). */
		ret = wlift_comm_mpi(ctx, &comm, &d);
		if (ret < 0) {
			cli_print_error(uri, ret, &d);
			if (json)
				print_json_error(uri, ret, &d);
			rc = cli_exit_code(ret);
			goto out;
		}
		if (world && ((int)world != wlift_comm_size(comm) ||
			      (int)rank != wlift_comm_rank(comm))) {
			cli_errorf("--rank %lu --world %lu differ from the MPI job's rank %d of %d",
				   rank, world, wlift_comm_rank(comm), wlift_comm_size(comm));
			rc = CLI_EXIT_USAGE;
			goto out;
		}
		rank = (unsigned long)wlift_comm_rank(comm);
		world = (unsigned long)wlift_comm_size(comm);
		lo.rank = (int)rank;
		lo.world_size = (int)world;
		lo.comm = comm;
	}
	/* The baseline is taken after the context exists, as README.md (`load`) defines it. */
	if (cli_rss_start(&rss) < 0)
		rss = NULL;

	for (unsigned long r = 0; r < repeat; r++) {
		struct run *run = &runs[r];
		wlift_result *res = NULL;
		wlift_ckpt *ck = NULL;
		double t0, t1, t2;
		bool ck_ok;

		wlift_diag_clear(&d);
		t0 = now_s();
		ret = wlift_open(ctx, uri, &ck, &d);
		ck_ok = ret >= 0;
		if (ret >= 0 && file_mode) {
			free(share);
			share = NULL;
			ret = file_share(ck, names, nnames, (int)rank, (int)world, &share, &nshare);
			lo.names = share;
			lo.nnames = nshare;
			lo.rank = (int)rank;
			lo.world_size = (int)world;
		}
		if (ret >= 0) {
			prog.t0 = prog.last = now_s();
			prog.last -= 1.0;
			if (groups)
				ret = wlift_load_groups(ck, &lo, 0, NULL, NULL, group_done, run, &d);
			else
				ret = wlift_load(ck, &lo, NULL, NULL, &res, &d);
			progress_clear(&prog);
		}
		t1 = now_s();
		if (ret >= 0 && groups) {
			run->wall_s = t1 - t0;
			run->st.seconds = t1 - t0 - run->st.open_s;
			run->st.gb_per_s = run->st.seconds > 0
					       ? (double)run->st.bytes / run->st.seconds / 1e9
					       : 0;
		} else if (ret >= 0) {
			if (touch)
				run->xor = touch_pass(res);
			t2 = now_s();
			if (rss)
				cli_rss_sample(rss);
			wlift_result_stats(res, &run->st);
			run->ntensors = wlift_result_count(res);
			run->nfiles = count_files(ck, res);
			run->wall_s = t1 - t0;
			if (touch) {
				run->touch_s = t2 - t1;
				run->ready_s = t2 - t0;
			}
		}
		wlift_result_free(res);
		wlift_ckpt_close(ck);
		if (ret < 0 && comm && !ck_ok) {
			/* This rank could not open the checkpoint, so it never joins the load its
			 * peers wait in: report, then end the job (MPI_Abort) rather than leave
			 * them to the timeout. */
			cli_print_error(uri, ret, &d);
			if (json)
				print_json_error(uri, ret, &d);
			fflush(stdout);
			fflush(stderr);
			wlift_comm_abort(comm, cli_exit_code(ret));
		}
		if (ret < 0) {
			cli_print_error(uri, ret, &d);
			if (json)
				print_json_error(uri, ret, &d);
			/* A shard rule that cannot apply to a tensor (a dim it lacks) is bad input,
			 * whatever its errno. */
			rc = strcmp(d.rule, "load.shard") == 0 ? CLI_EXIT_INPUT : cli_exit_code(ret);
			goto out;
		}
		if (!json && !quiet && repeat > 1) {
			if (run_mapped(run))
				printf("run %lu: pages populated in %.3f s", r + 1,
				       run->st.seconds);
			else
				printf("run %lu: %.3f s, %.2f GB/s", r + 1, run->st.seconds,
				       run->st.gb_per_s);
			if (touch)
				printf(", ready %.3f s", run->ready_s);
			putchar('\n');
		}
	}
	peak = cli_rss_stop(rss);
	rss = NULL;

	{
		struct run med;
		char b1[32], b2[32], b3[32];

		qsort(runs, repeat, sizeof(*runs), cmp_runs);
		med = runs[(repeat - 1) / 2];
		if (json) {
			json_object *o = run_json(&med, touch), *all, *root;

			root = json_object_new_object();
			json_object_object_add(root, "schema",
					       json_object_new_int(CLI_JSON_SCHEMA));
			json_object_object_add(root, "uri", json_object_new_string(uri));
			json_object_object_foreach(o, key, val)
			    json_object_object_add(root, key, json_object_get(val));
			json_object_put(o);
			json_object_object_add(
			    root, "strategy",
			    json_object_new_string(med.st.strategy ? med.st.strategy : "?"));
			json_object_object_add(root, "direct",
					       json_object_new_boolean(med.st.direct));
			json_object_object_add(root, "threads",
					       json_object_new_int((int)med.st.threads));
			json_object_object_add(root, "chunk_bytes",
					       json_object_new_uint64(med.st.chunk_bytes));
			json_object_object_add(root, "peak_rss_anon", json_object_new_uint64(peak));
			json_object_object_add(root, "tensors",
					       json_object_new_uint64(med.ntensors));
			json_object_object_add(root, "bytes_read",
					       json_object_new_uint64(med.st.bytes_read));
			if (comm) {
				json_object_object_add(root, "comm", json_object_new_string("mpi"));
				json_object_object_add(root, "bytes_received",
						       json_object_new_uint64(med.st.bytes_received));
			}
			if (lo.world_size > 1) {
				json_object_object_add(root, "rank", json_object_new_int(lo.rank));
				json_object_object_add(root, "world",
						       json_object_new_int(lo.world_size));
			}
			json_object_object_add(root, "gds",
					       json_object_new_string(med.st.gds ? med.st.gds : "off"));
			json_object_object_add(root, "gds_bytes",
					       json_object_new_uint64(med.st.gds_bytes));
			json_object_object_add(root, "gds_fallbacks",
					       json_object_new_uint64(med.st.gds_fallbacks));
			json_object_object_add(root, "fixups",
					       json_object_new_uint64(med.st.fixups));
			json_object_object_add(root, "fixup_bytes",
					       json_object_new_uint64(med.st.fixup_bytes));
			json_object_object_add(root, "fixed_reads",
					       json_object_new_uint64(med.st.fixed_reads));
			if (groups)
				json_object_object_add(root, "groups",
						       json_object_new_uint64(med.groups));
			json_object_object_add(root, "mmap", json_object_new_boolean(lo.mmap));
			json_object_object_add(root, "device",
					       json_object_new_string(device ? device : "cpu"));
			json_object_object_add(
			    root, "dtype",
			    lo.dtype ? json_object_new_string(wlift_dtype_name(lo.dtype)) : NULL);
			if (touch) {
				snprintf(b1, sizeof(b1), "%016" PRIx64, med.xor);
				json_object_object_add(root, "touch_xor",
						       json_object_new_string(b1));
			}
			json_object_object_add(root, "repeat", json_object_new_uint64(repeat));
			all = json_object_new_array();
			for (unsigned long r = 0; r < repeat; r++)
				json_object_array_add(all, run_json(&runs[r], touch));
			json_object_object_add(root, "runs", all);
			json_object_object_add(root, "errors", json_object_new_array());
			cli_json_print(root);
			json_object_put(root);
		} else if (!quiet) {
			bool mapped = run_mapped(&med);

			/* With --touch the ready time is what a caller waits for, so it leads.
			 * A mapped load has read nothing yet (its pages are page cache), so it
			 * reports the mapping and the time to populate it, not a throughput. */
			if (touch)
				printf("ready in %.3f s: ", med.ready_s);
			if (mapped)
				printf("mapped %zu tensor%s, %s in %zu file%s, pages populated in "
				       "%.3f s",
				       med.ntensors, med.ntensors == 1 ? "" : "s",
				       cli_fmt_bytes(med.st.bytes, b1, sizeof(b1)), med.nfiles,
				       med.nfiles == 1 ? "" : "s", med.st.seconds);
			else if (touch)
				printf("loaded %zu tensor%s, %s in %.3f s (%.2f GB/s)",
				       med.ntensors, med.ntensors == 1 ? "" : "s",
				       cli_fmt_bytes(med.st.bytes, b1, sizeof(b1)), med.st.seconds,
				       med.st.gb_per_s);
			else
				printf("loaded %zu tensor%s, %s in %.3f s: %.2f GB/s", med.ntensors,
				       med.ntensors == 1 ? "" : "s",
				       cli_fmt_bytes(med.st.bytes, b1, sizeof(b1)), med.st.seconds,
				       med.st.gb_per_s);
			if (touch)
				printf(", read pass %.3f s", med.touch_s);
			printf("%s\n", repeat > 1 ? " (median run)" : "");
			printf("  open %.3f s, plan %.3f s, %s %.3f s\n", med.st.open_s,
			       med.st.plan_s, mapped ? "populate" : "read", med.st.read_s);
			if (mapped)
				printf("  strategy mmap, %u thread%s, populated %s\n",
				       med.st.threads, med.st.threads == 1 ? "" : "s",
				       cli_fmt_bytes(med.st.bytes_read, b3, sizeof(b3)));
			else
				printf("  strategy %s, direct %s, %u thread%s, chunk %s, read %s\n",
				       med.st.strategy ? med.st.strategy : "?",
				       med.st.direct ? "on" : "off", med.st.threads,
				       med.st.threads == 1 ? "" : "s",
				       cli_fmt_bytes(med.st.chunk_bytes, b2, sizeof(b2)),
				       cli_fmt_bytes(med.st.bytes_read, b3, sizeof(b3)));
			if (med.st.gds_bytes || med.st.gds_fallbacks)
				printf("  GPU Direct Storage: %s, %s through cuFile, %" PRIu64
				       " fallback%s to the ring\n",
				       med.st.gds ? med.st.gds : "off",
				       cli_fmt_bytes(med.st.gds_bytes, b2, sizeof(b2)),
				       med.st.gds_fallbacks, med.st.gds_fallbacks == 1 ? "" : "s");
			if (comm)
				printf("  rank %d of %d (MPI): received %s from the other ranks\n",
				       lo.rank, lo.world_size,
				       cli_fmt_bytes(med.st.bytes_received, b2, sizeof(b2)));
			if (med.st.fixups)
				printf("  alignment fix-ups: %" PRIu64 " (%" PRIu64 " bytes)\n",
				       med.st.fixups, med.st.fixup_bytes);
			if (med.st.retries || med.st.hedges)
				printf("  requests asked again: %" PRIu64 " retries, %" PRIu64
				       " hedges (%" PRIu64 " won), %s re-requested\n",
				       med.st.retries, med.st.hedges, med.st.hedges_won,
				       cli_fmt_bytes(med.st.bytes_rerequested, b1, sizeof(b1)));
			printf("  peak RssAnon growth %s\n", cli_fmt_bytes(peak, b1, sizeof(b1)));
			if (touch)
				printf("  ready (open + load + read pass) %.3f s, pass %.3f s, "
				       "xor %016" PRIx64 "\n",
				       med.ready_s, med.touch_s, med.xor);
		}
	}
out:
	fflush(stdout);
	fflush(stderr);
	cli_rss_stop(rss);
	wlift_comm_destroy(comm); /* a broken MPI communicator ends the job here */
	wlift_ctx_destroy(ctx);
	free(runs);
	free(names);
	free(share);
	cli_shard_free(&shard);
	return rc;
}
