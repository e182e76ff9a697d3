/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared declarations of the `weightlift` command-line tool: the command entry points, the
 * exit-code policy of the CLI contract (README.md), error printing from a wlift_diag, option
 * parsing helpers and the JSON report that inspect and verify build. The tool uses only the
 * public header include/weightlift.h.
 */
#ifndef WLIFT_CLI_H
#define WLIFT_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <json-c/json.h>

#include "weightlift.h"

/* Exit codes of the CLI contract. */
enum {
	CLI_EXIT_OK = 0,
	CLI_EXIT_INPUT = 1,  /* bad input: format errors, tensor not found, digest mismatch */
	CLI_EXIT_USAGE = 2,  /* bad command line */
	CLI_EXIT_IO = 3,     /* I/O or network */
	CLI_EXIT_AUTH = 4,   /* authentication or permission */
	CLI_EXIT_DEVICE = 5, /* GPU / device */
};

/* The JSON schema version printed as "schema" by every --json output. */
#define CLI_JSON_SCHEMA 1

/* Command entry points. argv[0] is the command name; they return the process exit code. */
int cli_inspect(int argc, char **argv);
int cli_verify(int argc, char **argv);
int cli_load(int argc, char **argv);
int cli_cp(int argc, char **argv);
int cli_cache(int argc, char **argv);

/* Map a library error code to the exit code of the CLI contract. */
int cli_exit_code(int err);
/* Keep the most telling of two exit codes: the first failure wins over later ones. */
static inline int cli_exit_merge(int have, int next)
{
	return have ? have : next;
}

/* Print "weightlift: <file>: <tensor>: <message> [rule]" on stderr from d (falling back to
 * uri and wlift_strerror(err) where d is empty). */
void cli_print_error(const char *uri, int err, const wlift_diag *d);
/* Print "weightlift: <fmt>" on stderr. */
void cli_errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Report a usage error for command cmd (NULL: the tool) on stderr; returns CLI_EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Report getopt_long's '?' / ':' result for argv (with optstring starting with ':').
 * Returns CLI_EXIT_USAGE. */
int cli_getopt_error(const char *cmd, int c, char **argv);

/* Parse a byte size: "4096", "8M", "8MiB", "1g", "512k" (binary multiples). 0 on success,
 * -1 if malformed or 0 when !allow_zero. */
int cli_parse_size(const char *s, uint64_t *out, bool allow_zero);
/* Parse a --max-rate value of command cmd: bytes per second with K, M, G suffixes (binary,
 * as curl's --limit-rate), WLIFT_MIN_RATE .. WLIFT_MAX_RATE. 0 on success, else the usage
 * error's exit status (printed). */
int cli_parse_rate(const char *cmd, const char *s, uint64_t *out);
/* Parse a positive decimal integer not above max. 0 on success, -1 otherwise. */
int cli_parse_uint(const char *s, unsigned long max, unsigned long *out);
/* Format n bytes for humans ("1.50 GiB", "512 B") into buf. Returns buf. */
const char *cli_fmt_bytes(uint64_t n, char *buf, size_t cap);

/* Create the context every command uses. verbosity: 0 warnings, 1 info, 2 debug; library log
 * lines go to stderr. Returns 0 or an error (already printed). */
int cli_ctx_create(wlift_ctx **ctx, const wlift_ctx_opts *base, int verbosity, wlift_diag *d);
/* The local-cache options that load, inspect, verify and cp take (getopt codes 200..202):
 * --cache-dir DIR, --offline, --cache-fill partial|full. Put CLI_CACHE_LONGOPTS in the
 * command's option table and pass every code it does not know to cli_cache_opt. */
/* The same table carries the s3:// options (--region R, --no-sign) and the transfer options
 * of every remote source (--max-rate RATE, --allow-full-download). */
enum { CLI_OPT_CACHE_DIR = 200, CLI_OPT_OFFLINE, CLI_OPT_CACHE_FILL, CLI_OPT_REGION,
       CLI_OPT_NO_SIGN, CLI_OPT_MAX_RATE, CLI_OPT_FULL_DOWNLOAD };
#define CLI_CACHE_LONGOPTS                                                         \
	{"cache-dir", required_argument, NULL, CLI_OPT_CACHE_DIR},                 \
	    {"offline", no_argument, NULL, CLI_OPT_OFFLINE},                       \
	    {"cache-fill", required_argument, NULL, CLI_OPT_CACHE_FILL},           \
	    {"region", required_argument, NULL, CLI_OPT_REGION},                   \
	    {"no-sign", no_argument, NULL, CLI_OPT_NO_SIGN},                       \
	    {"max-rate", required_argument, NULL, CLI_OPT_MAX_RATE},               \
	    {"allow-full-download", no_argument, NULL, CLI_OPT_FULL_DOWNLOAD}
#define CLI_CACHE_HELP                                                                   \
	"  --cache-dir DIR         write-through cache of remote objects (default:\n"    \
	"                          WEIGHTLIFT_CACHE_DIR; none)\n"                        \
	"  --offline               serve remote objects from the cache only, asking no\n" \
	"                          server (WEIGHTLIFT_OFFLINE=1)\n"                       \
	"  --cache-fill F          partial (default): a partial load caches nothing;\n"  \
	"                          full: the rest is fetched after the load and cached\n"  \
	"  --region R              AWS region of s3:// buckets (WEIGHTLIFT_S3_REGION,\n"  \
	"                          AWS_REGION, the profile's, else asked of S3)\n"        \
	"  --no-sign               unsigned s3:// requests, for public buckets\n"          \
	"                          (WEIGHTLIFT_S3_UNSIGNED=1)\n"                      \
	"  --max-rate RATE         cap remote transfers at RATE bytes/s, e.g. 100M (binary\n" \
	"                          suffixes; default: WEIGHTLIFT_MAX_RATE or no cap)\n"  \
	"  --allow-full-download   read HTTP servers without Range support by downloading\n" \
	"                          whole objects (default: WEIGHTLIFT_HTTP_FULL_DOWNLOAD)\n"
/* 1 when c was a cache option (stored in co), 0 when it is not one, CLI_EXIT_USAGE (printed)
 * for a bad value. */
int cli_cache_opt(const char *cmd, int c, const char *arg, wlift_ctx_opts *co);

/* Batched loading (cli_batch.c) for commands that consume tensors and drop them: ck's
 * tensors (those of file `file` only, or all with CLI_ALL_FILES) load in index order in
 * batches of at most batch_bytes (a larger tensor is a batch of its own). ready is wlift_load's
 * callback; done, when set, sees each batch's result before it is freed and the next one
 * loads. 0, or the first negative error of a load or of done. */
#define CLI_ALL_FILES ((size_t)-1)
#define CLI_DEFAULT_BATCH_BYTES (1ull << 30)
struct cli_batch_ops {
	wlift_ready_fn ready;
	int (*done)(const wlift_result *res, void *user);
	void *user;
};
int cli_load_batches(wlift_ckpt *ck, const wlift_load_opts *lo, size_t file,
		     uint64_t batch_bytes, const struct cli_batch_ops *ops, wlift_diag *d);

/* Read a small user-named file whole (NUL-terminated, free with free()): a regular file of
 * at most max bytes; opening never blocks (FIFOs). 0, or an exit status with the error
 * printed. */
int cli_read_small_file(const char *path, size_t max, char **buf, size_t *len);
/* Exit status for a failed cli_ctx_create: 2 for a bad WEIGHTLIFT_* setting, else as
 * cli_exit_code. */
int cli_ctx_exit_code(int err, const wlift_diag *d);

/* Split the --names argument "a,b,c" at commas into *names (appending; empty items are
 * skipped); the strings point into s, which is modified. 0, or -ENOMEM. */
int cli_names_split(char *s, const char ***names, size_t *n);

/* A parsed --expect file: a previous `verify --json` output or a {name: sha256} object. */
struct cli_expect {
	json_object *root; /* owns everything below */
	json_object *map;  /* name -> sha256 string */
	bool full;	   /* a verify --json output: extra tensors are mismatches too */
};
/* Parse len bytes of text as an --expect file into *e (free with cli_expect_free). 0, or -1
 * with a message (ending in its [rule], quoting none of the text) in msg[0..cap). */
int cli_expect_parse(const char *text, size_t len, struct cli_expect *e, char *msg, size_t cap);
/* Free what cli_expect_parse built; e may be zeroed or already freed. */
void cli_expect_free(struct cli_expect *e);

/* A sha256 digest as 64 lowercase hex digits. */
void cli_hex32(const uint8_t *md, char out[65]);

/* A --shard-spec file: {"name or glob": dim or null, ...} in file order. */
struct cli_shard {
	json_object *root;	/* owns the patterns */
	wlift_shard_rule *rules;
	size_t n;
};
/* Parse len bytes of text as a --shard-spec file into *sh (free with cli_shard_free). 0, or -1
 * with a message (ending in its [rule], quoting none of the text) in msg[0..cap). */
int cli_shard_parse(const char *text, size_t len, struct cli_shard *sh, char *msg, size_t cap);
void cli_shard_free(struct cli_shard *sh);

/* An --experts value: "block" or "round-robin", optionally ":N" (N routed experts, 1 ..
 * 2^32-1; without it the checkpoint's count). Fills placement and nexperts of *f. 0, or -1
 * with a message in msg[0..cap). */
int cli_experts_parse(const char *s, wlift_expert_filter *f, char *msg, size_t cap);

/* Print json as the one --json object on stdout (pretty on a terminal, one line otherwise). */
void cli_json_print(json_object *obj);

/* Streaming JSON writer (cli_jw.c): one line for pipes, indented on a terminal. */
struct cli_jw {
	FILE *f;
	bool pretty;
	int depth;
	bool first;     /* no element yet in the open container */
	bool after_key; /* a key was written, its value comes next */
};
void cli_jw_init(struct cli_jw *w, FILE *f);
void cli_jw_open(struct cli_jw *w, char c); /* '{' or '[' */
void cli_jw_close(struct cli_jw *w, char c);
void cli_jw_key(struct cli_jw *w, const char *k);
void cli_jw_str(struct cli_jw *w, const char *s); /* NULL: null */
void cli_jw_str_or_null(struct cli_jw *w, const char *s); /* NULL or "": null */
void cli_jw_u64(struct cli_jw *w, uint64_t v);
void cli_jw_i64(struct cli_jw *w, int64_t v);
void cli_jw_bool(struct cli_jw *w, bool v);
void cli_jw_null(struct cli_jw *w);
/* The {code,value,message,file,tensor,offset,rule} object of an error. */
void cli_jw_error(struct cli_jw *w, const char *uri, int err, const wlift_diag *d);
/* Newline, flush; -1 if writing failed. */
int cli_jw_end(struct cli_jw *w);

/*
 * The report inspect and verify print with --json: {schema, uris, files, metadata, tensors,
 * errors, ...}. One object even when several URIs are given: files and tensors of every
 * checkpoint are concatenated (each tensor names its file's path). The report keeps the
 * opened checkpoints (their tables are all it needs) and writes the JSON as it goes, so its
 * size is no limit.
 */
struct cli_report_ckpt {
	wlift_ckpt *ck;
	uint8_t (*md)[32]; /* verify: sha256 per tensor, NULL for inspect */
	uint8_t *done;     /* verify: md[i] is set */
};
struct cli_report_error {
	const char *uri;
	int err;
	wlift_diag d;
};
struct cli_report {
	char *const *uris;
	size_t nuris;
	struct cli_report_ckpt *ckpts;
	size_t nckpts;
	struct cli_report_error *errors;
	size_t nerrors;
};
/* Members written after "errors" (verify's verdict). */
typedef void (*cli_report_tail_fn)(struct cli_jw *w, void *user);

void cli_report_init(struct cli_report *r, char *const *uris, size_t nuris);
/* Closes every kept checkpoint. */
void cli_report_free(struct cli_report *r);
/* Keep ck (and md, done: malloc'd, or NULL) for the report; they are freed with it, or at
 * once on failure (-ENOMEM). */
int cli_report_keep(struct cli_report *r, wlift_ckpt *ck, uint8_t (*md)[32], uint8_t *done);
void cli_report_add_error(struct cli_report *r, const char *uri, int err, const wlift_diag *d);
/* Write the report on stdout as one JSON object; 0, or -1 if stdout failed. */
int cli_report_print(const struct cli_report *r, cli_report_tail_fn tail, void *user);

/* Print the human-readable inspect table of ck on out. sha256: NULL, or one hex digest per
 * tensor printed as an extra column (verify). */
void cli_print_ckpt(FILE *out, const char *uri, const wlift_ckpt *ck, char *const *sha256);

/* Peak RssAnon growth sampler (10 ms period) over a baseline taken at start. */
struct cli_rss;
int cli_rss_start(struct cli_rss **out);
/* Take one sample now (so a run shorter than the period is measured too). */
void cli_rss_sample(struct cli_rss *s);
/* Stop the sampler; returns the peak growth in bytes (0 if RssAnon is not available). */
uint64_t cli_rss_stop(struct cli_rss *s);

#endif
