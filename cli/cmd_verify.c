/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `weightlift verify URI...`: full validation (open checks every header; loading reads every
 * byte, so truncation and I/O errors surface) plus the sha256 of every tensor. Tensors are
 * hashed from the ready callback as each one lands, so hashing overlaps reading and runs on
 * the engine's threads; memory stays bounded because the checkpoint is loaded in batches of
 * at most --batch-size bytes (a tensor larger than that is a batch of its own).
 * --expect compares the digests with a previous `verify --json` output or a {name: sha256}
 * map; a mismatch exits 1.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "cli.h"

/* --expect files: a verify --json of the largest checkpoints is a few MiB. */
#define EXPECT_MAX (64u << 20)

static void usage(FILE *out)
{
	fputs("usage: weightlift verify [options] URI...\n"
	      "\n"
	      "Validate each checkpoint fully (every header and every data byte) and print the\n"
	      "sha256 of every tensor, as \"<sha256>  <name>\" lines.\n"
	      "\n"
	      "options:\n"
	      "  --json              print one JSON object (the inspect report with \"sha256\"\n"
	      "                      in each tensor, plus \"ok\" and, with --expect, "
	      "\"mismatches\")\n"
	      "  --expect FILE       compare with FILE: a previous 'verify --json' output (every\n"
	      "                      tensor must match, none missing or extra) or a JSON object\n"
	      "                      {name: sha256} (the named tensors must match); the last line\n"
	      "                      says \"all digests match\" or \"FAILED\" with the counts;\n"
	      "                      exit 1 on any mismatch\n"
	      "  --batch-size SIZE   load at most SIZE bytes at a time (default 1G)\n"
	      "  --threads N         I/O threads (default: library default)\n"
	      "  --chunk-size SIZE   read unit, e.g. 1M (default: the library's)\n"
	      CLI_CACHE_HELP
	      "  -q, --quiet         print nothing but errors\n"
	      "  -v, --verbose       library log messages on stderr (twice: debug)\n"
	      "  -h, --help          show this help\n"
	      "\n"
	      "exit status: 0 ok, 1 bad input or digest mismatch, 2 usage, 3 I/O, 4 permission\n",
	      out);
}

struct verify_state {
	const wlift_ckpt *ck;
	uint8_t (*md)[32]; /* sha256 per tensor of ck */
	uint8_t *done;     /* md[i] is set */
	int err;           /* first hashing error (set from callbacks) */
};

static int hash_tensor(struct verify_state *st, const wlift_tensor *t)
{
	wlift_tensor_view v;
	unsigned mdlen = 0;
	int64_t idx;

	wlift_tensor_get(t, &v);
	idx = wlift_ckpt_find(st->ck, v.info.name);
	if (idx < 0 || st->done[idx])
		return 0;
	if (v.device >= 0)
		return -EINVAL; /* verify loads to the CPU only */
	/* EVP_Digest takes a size_t; a tensor larger than that cannot be in memory anyway. */
	if (!EVP_Digest(v.nbytes ? v.data : "", (size_t)v.nbytes, st->md[idx], &mdlen,
			EVP_sha256(), NULL) || mdlen != 32)
		return -EIO;
	st->done[idx] = 1;
	return 0;
}

static int on_ready(const wlift_tensor *t, void *user)
{
	struct verify_state *st = user;
	int ret = hash_tensor(st, t);

	if (ret < 0) {
		__atomic_compare_exchange_n(&st->err, &(int){0}, ret, false, __ATOMIC_SEQ_CST,
					    __ATOMIC_SEQ_CST);
		return 1;
	}
	return 0;
}

/* The callback is the fast path; catch any tensor it did not see (a library may deliver
 * tensors it had no reason to announce, e.g. zero-sized ones). */
static int on_batch(const wlift_result *res, void *user)
{
	size_t count = wlift_result_count(res);
	int ret = 0;

	for (size_t i = 0; i < count && ret >= 0; i++) {
		const wlift_tensor *t = wlift_result_tensor(res, i);

		if (t)
			ret = hash_tensor(user, t);
	}
	return ret;
}

static int verify_ckpt(wlift_ckpt *ck, const wlift_load_opts *lo, uint64_t batch_bytes,
		       struct verify_state *st, wlift_diag *d)
{
	const struct cli_batch_ops ops = {.ready = on_ready, .done = on_batch, .user = st};
	int ret = cli_load_batches(ck, lo, CLI_ALL_FILES, batch_bytes, &ops, d);

	/* A hashing error stops the load through the callback: report it, not the cancel. */
	return ret < 0 && st->err ? st->err : ret;
}

/* ---- --expect ---------------------------------------------------------------------- */

/* Load path (a regular file of at most EXPECT_MAX bytes: json-c alone reads /dev/zero forever)
 * into *e. 0, or an exit status with the error printed. */
static int expect_load(const char *path, struct cli_expect *e)
{
	char *text = NULL, msg[256];
	size_t len = 0;
	int ret;

	memset(e, 0, sizeof(*e));
	ret = cli_read_small_file(path, EXPECT_MAX, &text, &len);
	if (ret)
		return ret;
	ret = cli_expect_parse(text, len, e, msg, sizeof(msg));
	free(text);
	if (ret < 0) {
		cli_errorf("%s: %s", path, msg);
		return CLI_EXIT_INPUT;
	}
	return 0;
}

/* A mismatch: expected digest (NULL: extra) against the checkpoint's (NULL: missing). */
struct mismatch {
	const char *name;
	const char *want;
	const uint8_t *got;
};

/* Mismatches found by expect_compare, by kind. */
struct expect_counts {
	size_t digest;	/* in both, different sha256 */
	size_t missing; /* expected, not in the checkpoint */
	size_t extra;	/* in the checkpoint, not in a full previous output */
};

/* The digest of tensor name in the report: from the last URI that has it (a later
 * checkpoint's tensor of the same name replaces an earlier one's). *ckpt: its index. */
static const uint8_t *report_digest(const struct cli_report *r, const char *name, size_t *ckpt)
{
	for (size_t i = r->nckpts; i-- > 0;) {
		int64_t k = wlift_ckpt_find(r->ckpts[i].ck, name);
		if (k >= 0 && r->ckpts[i].done[k]) {
			*ckpt = i;
			return r->ckpts[i].md[k];
		}
	}
	return NULL;
}

static int add_mismatch(struct mismatch **mm, size_t *n, size_t *cap, const char *name,
			const char *want, const uint8_t *got)
{
	if (*n == *cap) {
		size_t nc = *cap ? 2 * *cap : 64;
		struct mismatch *m = realloc(*mm, nc * sizeof(*m));
		if (!m)
			return -ENOMEM;
		*mm = m;
		*cap = nc;
	}
	(*mm)[(*n)++] = (struct mismatch){ .name = name, .want = want, .got = got };
	return 0;
}

/* Compare the report's digests with e: the mismatches go to *mm (*nmm of them), counted by
 * kind in *n, and are printed on stderr when print. */
static int expect_compare(const struct cli_expect *e, const struct cli_report *r, const char *path,
			  bool print, struct mismatch **mm, size_t *nmm, struct expect_counts *n)
{
	size_t cap = 0, at;
	char hex[65];
	int ret = 0;

	memset(n, 0, sizeof(*n));
	json_object_object_foreach(e->map, name, wantv)
	{
		const char *want = json_object_get_string(wantv);
		const uint8_t *got = report_digest(r, name, &at);

		if (!got) {
			if (print)
				cli_errorf("%s: missing from the checkpoint (expected by %s) "
					   "[expect.missing]",
					   name, path);
			ret = add_mismatch(mm, nmm, &cap, name, want, NULL);
			n->missing++;
		} else {
			cli_hex32(got, hex);
			if (strcasecmp(want, hex) == 0)
				continue;
			if (print)
				cli_errorf("%s: sha256 mismatch: expected %s, got %s "
					   "[expect.sha256]",
					   name, want, hex);
			ret = add_mismatch(mm, nmm, &cap, name, want, got);
			n->digest++;
		}
		if (ret)
			return ret;
	}
	if (!e->full)
		return 0;
	for (size_t i = 0; i < r->nckpts; i++) {
		const struct cli_report_ckpt *c = &r->ckpts[i];
		size_t nt = wlift_ckpt_count(c->ck);

		for (size_t k = 0; k < nt; k++) {
			wlift_tensor_info ti;

			if (!c->done[k] || wlift_ckpt_info(c->ck, k, &ti) < 0 ||
			    json_object_object_get_ex(e->map, ti.name, NULL))
				continue;
			if (report_digest(r, ti.name, &at) && at != i)
				continue; /* a later URI has it: counted there */
			if (print)
				cli_errorf("%s: not in %s [expect.extra]", ti.name, path);
			ret = add_mismatch(mm, nmm, &cap, ti.name, NULL, c->md[k]);
			if (ret)
				return ret;
			n->extra++;
		}
	}
	return 0;
}

/* What verify --json adds after the report: "expect", "mismatches" (with --expect), "ok". */
struct verdict {
	const char *expect_path;
	const struct mismatch *mm;
	size_t nmm;
	bool ok;
};

static void write_verdict(struct cli_jw *w, void *user)
{
	const struct verdict *v = user;
	char hex[65];

	if (v->expect_path) {
		cli_jw_key(w, "expect");
		cli_jw_str(w, v->expect_path);
		cli_jw_key(w, "mismatches");
		cli_jw_open(w, '[');
		for (size_t i = 0; i < v->nmm; i++) {
			cli_jw_open(w, '{');
			cli_jw_key(w, "tensor");
			cli_jw_str(w, v->mm[i].name);
			cli_jw_key(w, "expected");
			cli_jw_str_or_null(w, v->mm[i].want);
			cli_jw_key(w, "actual");
			if (v->mm[i].got) {
				cli_hex32(v->mm[i].got, hex);
				cli_jw_str(w, hex);
			} else {
				cli_jw_null(w);
			}
			cli_jw_close(w, '}');
		}
		cli_jw_close(w, ']');
	}
	cli_jw_key(w, "ok");
	cli_jw_bool(w, v->ok);
}

/* ---- command ----------------------------------------------------------------------- */

int cli_verify(int argc, char **argv)
{
	enum { OPT_JSON = 256, OPT_EXPECT, OPT_BATCH, OPT_THREADS, OPT_CHUNK };
	static const struct option opts[] = {
	    {"json", no_argument, NULL, OPT_JSON},
	    {"expect", required_argument, NULL, OPT_EXPECT},
	    {"batch-size", required_argument, NULL, OPT_BATCH},
	    {"threads", required_argument, NULL, OPT_THREADS},
	    CLI_CACHE_LONGOPTS,
	    {"chunk-size", required_argument, NULL, OPT_CHUNK},
	    {"quiet", no_argument, NULL, 'q'},
	    {"verbose", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	wlift_load_opts lo = WLIFT_LOAD_OPTS_INIT;
	wlift_ctx_opts co = WLIFT_CTX_OPTS_INIT;
	struct cli_report rep;
	struct cli_expect exp;
	struct expect_counts cnt = {0};
	size_t nbad = 0;
	struct mismatch *mm = NULL;
	size_t nmm = 0;
	const char *expect_path = NULL;
	uint64_t batch = CLI_DEFAULT_BATCH_BYTES, chunk = 0;
	unsigned long threads = 0;
	wlift_ctx *ctx = NULL;
	wlift_diag d;
	bool json = false, quiet = false;
	int verbosity = 0, c, rc = 0, ret;

	while ((c = getopt_long(argc, argv, ":qvh", opts, NULL)) != -1) {
		switch (c) {
		case OPT_JSON:
			json = true;
			break;
		case OPT_EXPECT:
			expect_path = optarg;
			break;
		case OPT_BATCH:
			if (cli_parse_size(optarg, &batch, false) < 0)
				return cli_usage_error("verify", "invalid --batch-size '%s'",
						       optarg);
			break;
		case OPT_THREADS:
			if (cli_parse_uint(optarg, WLIFT_MAX_THREADS, &threads) < 0)
				return cli_usage_error("verify", "invalid --threads '%s'", optarg);
			break;
		case OPT_CHUNK:
			if (cli_parse_size(optarg, &chunk, false) < 0 || chunk > WLIFT_MAX_CHUNK_BYTES)
				return cli_usage_error("verify", "invalid --chunk-size '%s' (a size up "
						       "to 1G)", optarg);
			break;
		case 'q':
			quiet = true;
			break;
		case 'v':
			verbosity++;
			break;
		case 'h':
			usage(stdout);
			return CLI_EXIT_OK;
		default:
			ret = cli_cache_opt("verify", c, optarg, &co);
			if (ret == 1)
				break;
			return ret ? ret : cli_getopt_error("verify", c, argv);
		}
	}
	if (optind >= argc)
		return cli_usage_error("verify", "no URI given");

	memset(&exp, 0, sizeof(exp));
	if (expect_path) {
		ret = expect_load(expect_path, &exp);
		if (ret)
			return ret;
	}
	lo.threads = (unsigned)threads;
	lo.chunk_bytes = (size_t)chunk;
	lo.device = "cpu";
	wlift_diag_clear(&d);
	ret = cli_ctx_create(&ctx, &co, verbosity, &d);
	if (ret < 0) {
		rc = cli_ctx_exit_code(ret, &d);
		goto out;
	}
	cli_report_init(&rep, argv + optind, (size_t)(argc - optind));
	for (int i = optind; i < argc; i++) {
		const char *uri = argv[i];
		struct verify_state st = {0};
		wlift_ckpt *ck = NULL;
		size_t n;

		wlift_diag_clear(&d);
		ret = wlift_open(ctx, uri, &ck, &d);
		if (ret < 0) {
			cli_report_add_error(&rep, uri, ret, &d);
			if (!json)
				cli_print_error(uri, ret, &d);
			rc = cli_exit_merge(rc, cli_exit_code(ret));
			continue;
		}
		n = wlift_ckpt_count(ck);
		st.ck = ck;
		st.md = malloc((n ? n : 1) * sizeof(*st.md));
		st.done = calloc(n ? n : 1, 1);
		ret = st.md && st.done ? verify_ckpt(ck, &lo, batch, &st, &d) : -ENOMEM;
		if (ret < 0) {
			cli_report_add_error(&rep, uri, ret, &d);
			if (!json)
				cli_print_error(uri, ret, &d);
			rc = cli_exit_merge(rc, cli_exit_code(ret));
		}
		for (size_t k = 0; k < n && st.done && !json && !quiet; k++) {
			wlift_tensor_info ti;
			char hex[65];

			if (!st.done[k] || wlift_ckpt_info(ck, k, &ti) < 0)
				continue;
			cli_hex32(st.md[k], hex);
			printf("%s  %s\n", hex, ti.name);
		}
		/* With --expect the verdict is the comparison's, printed once at the end: an
		 * "OK" here would precede a mismatch. */
		if (ret >= 0 && !json && !quiet && !expect_path)
			printf("%s: OK, %zu tensor%s\n", uri, n, n == 1 ? "" : "s");
		else if (ret >= 0 && !json && !quiet)
			printf("%s: hashed %zu tensor%s\n", uri, n, n == 1 ? "" : "s");
		if (!st.md || !st.done || (!json && !expect_path)) {
			free(st.md);
			free(st.done);
			wlift_ckpt_close(ck);
			continue;
		}
		/* Kept for the report and the comparison, which read the tables. */
		ret = cli_report_keep(&rep, ck, st.md, st.done);
		if (ret < 0) {
			cli_report_add_error(&rep, uri, ret, NULL);
			if (!json)
				cli_print_error(uri, ret, NULL);
			rc = cli_exit_merge(rc, cli_exit_code(ret));
		}
	}
	if (expect_path) {
		ret = expect_compare(&exp, &rep, expect_path, !json, &mm, &nmm, &cnt);
		if (ret < 0) {
			cli_print_error(expect_path, ret, NULL);
			rc = cli_exit_merge(rc, cli_exit_code(ret));
		}
		nbad = cnt.digest + cnt.missing + cnt.extra;
		if (nbad > 0)
			rc = cli_exit_merge(rc, CLI_EXIT_INPUT);
	}
	if (json) {
		struct verdict v = { .expect_path = expect_path, .mm = mm, .nmm = nmm,
				     .ok = rc == 0 };
		if (cli_report_print(&rep, write_verdict, &v) < 0)
			rc = cli_exit_merge(rc, CLI_EXIT_IO);
	} else if (expect_path && !quiet && nbad > 0) {
		printf("FAILED: %zu mismatch%s against %s (%zu sha256, %zu missing, %zu extra)\n",
		       nbad, nbad == 1 ? "" : "es", expect_path, cnt.digest, cnt.missing,
		       cnt.extra);
	} else if (expect_path && !quiet && rc != 0) {
		printf("FAILED: no digest mismatch against %s, but not every URI could be "
		       "verified (errors above)\n",
		       expect_path);
	} else if (expect_path && !quiet) {
		printf("all digests match %s\n", expect_path);
	}
	free(mm);
	cli_report_free(&rep);
out:
	fflush(stdout);
	cli_expect_free(&exp);
	wlift_ctx_destroy(ctx);
	return rc;
}
