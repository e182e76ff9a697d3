/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `weightlift cp URI DIR`: download a checkpoint (one file, or a sharded set by its index:
 * the index and every shard) into DIR with the loading engine: each file's tensors are
 * loaded (ranged reads, many in flight, through the local cache when one is set), its
 * header read raw, and the file written under a temporary name, fsynced and renamed, so
 * that DIR never holds a partial file under the final name. Memory: one file's tensors at a
 * time.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

static void usage(FILE *out)
{
	fputs("usage: weightlift cp [options] URI DIR\n"
	      "\n"
	      "Download a checkpoint (a file, or an index.json and every shard it names) into\n"
	      "the directory DIR (created if needed) with the loading engine, and print the\n"
	      "throughput. Files appear complete or not at all (written to a temporary name,\n"
	      "fsynced, renamed).\n"
	      "\n"
	      "options:\n" CLI_CACHE_HELP
	      "  --batch-size SIZE       hold at most SIZE bytes of tensors in memory at a time\n"
	      "                          (default 1G; a larger tensor is a batch of its own)\n"
	      "  --json                  print {schema, files:[{uri, path, size}], bytes,\n"
	      "                          seconds, gb_per_s}\n"
	      "  -q, --quiet             print nothing but errors\n"
	      "  -v, --verbose           library log messages on stderr (twice: debug)\n"
	      "  -h, --help              show this help\n"
	      "\n"
	      "exit status: 0 ok, 1 bad input, 2 usage, 3 I/O or network, 4 auth\n",
	      out);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0'
	       : c >= 'a' && c <= 'f' ? c - 'a' + 10
	       : c >= 'A' && c <= 'F' ? c - 'A' + 10
				      : -1;
}

/* The local name of uri: its last component, percent-decoded (kept encoded when decoding
 * would give a '/', a NUL, "." or ".."); malloc'd. */
static char *local_name(const char *uri)
{
	const char *b = strrchr(uri, '/');
	char *out, *o;
	int remote = strstr(uri, "://") != NULL;

	b = b ? b + 1 : uri;
	out = malloc(strlen(b) + 1);
	if (!out)
		return NULL;
	o = out;
	for (const char *p = b; *p; p++) {
		int hi, lo;
		if (remote && p[0] == '%' && (hi = hexval(p[1])) >= 0 && (lo = hexval(p[2])) >= 0 &&
		    hi * 16 + lo != '/' && hi * 16 + lo != 0) {
			*o++ = (char)(hi * 16 + lo);
			p += 2;
		} else {
			*o++ = *p;
		}
	}
	*o = '\0';
	if (!*out || strcmp(out, ".") == 0 || strcmp(out, "..") == 0) {
		free(out);
		return NULL;
	}
	return out;
}

static int mkdirs(const char *dir)
{
	char *p = strdup(dir);
	int ret = 0;

	if (!p)
		return -ENOMEM;
	for (char *s = p + 1;; s++) {
		if (*s == '/' || *s == '\0') {
			char c = *s;
			*s = '\0';
			if (mkdir(p, 0755) && errno != EEXIST) {
				ret = -errno;
				break;
			}
			*s = c;
			if (!c)
				break;
		}
	}
	free(p);
	return ret;
}

static int pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
	const char *b = buf;

	while (len) {
		ssize_t n = pwrite(fd, b, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		b += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/* An output file under construction: DIR/.NAME.part, renamed to DIR/NAME when complete. */
struct out_file {
	char *path, *tmp;
	int fd;
};

static int out_open(struct out_file *f, const char *dir, const char *name)
{
	size_t n = strlen(dir) + strlen(name) + 16;

	f->fd = -1;
	f->path = malloc(n);
	f->tmp = malloc(n);
	if (!f->path || !f->tmp)
		return -ENOMEM;
	snprintf(f->path, n, "%s/%s", dir, name);
	snprintf(f->tmp, n, "%s/.%s.part", dir, name);
	f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	return f->fd < 0 ? -errno : 0;
}

/* Finish (ok: fsync + rename) or abandon f. 0 or -errno. */
static int out_close(struct out_file *f, int ok)
{
	int ret = 0;

	if (f->fd >= 0) {
		if (ok && fsync(f->fd))
			ret = -errno;
		close(f->fd);
		if (ok && !ret && rename(f->tmp, f->path))
			ret = -errno;
		if (!ok || ret)
			unlink(f->tmp);
	}
	free(f->tmp);
	f->tmp = NULL;
	f->fd = -1;
	return ret;
}

/* A file being copied: each batch of its tensors is written at their offsets as it
 * completes; werr keeps a write error apart from the load's own. */
struct copy_out {
	struct out_file f;
	int werr;
};

static int write_batch(const wlift_result *res, void *user)
{
	struct copy_out *o = user;

	for (size_t k = 0; !o->werr && k < wlift_result_count(res); k++) {
		wlift_tensor_view v;

		wlift_tensor_get(wlift_result_tensor(res, k), &v);
		if (v.nbytes)
			o->werr = pwrite_all(o->f.fd, v.data, (size_t)v.nbytes, v.info.file_offset);
	}
	return o->werr;
}

/* Copy file i of ck to dir, holding at most batch_bytes of its tensors at a time. Bytes
 * written, or an exit status (error printed). */
static int copy_file(wlift_ckpt *ck, const wlift_load_opts *lo, uint64_t batch_bytes, size_t i,
		     const char *dir, json_object *files, bool quiet, uint64_t *bytes)
{
	struct copy_out o = {.f = {.fd = -1}};
	const struct cli_batch_ops ops = {.done = write_batch, .user = &o};
	wlift_file_info fi;
	char *name = NULL, *hdr = NULL;
	wlift_diag d;
	int ret, rc = 0;

	wlift_diag_clear(&d);
	wlift_ckpt_file(ck, i, &fi);
	name = local_name(fi.uri);
	if (!name) {
		cli_errorf("%s: no file name to copy it to", fi.uri);
		return CLI_EXIT_INPUT;
	}
	hdr = malloc(fi.data_offset ? (size_t)fi.data_offset : 1);
	ret = hdr ? wlift_ckpt_read(ck, i, 0, hdr, (size_t)fi.data_offset, &d) : -ENOMEM;
	if (!ret) {
		o.werr = out_open(&o.f, dir, name);
		if (!o.werr)
			o.werr = pwrite_all(o.f.fd, hdr, (size_t)fi.data_offset, 0);
		ret = o.werr ? o.werr : cli_load_batches(ck, lo, i, batch_bytes, &ops, &d);
	}
	if (!ret && ftruncate(o.f.fd, (off_t)fi.size))
		ret = o.werr = -errno;
	if (!ret)
		ret = o.werr = out_close(&o.f, 1);
	if (ret && o.werr) {
		cli_errorf("%s: %s", o.f.path ? o.f.path : dir, strerror(-o.werr));
		rc = CLI_EXIT_IO;
		goto out;
	}
	if (ret) {
		cli_print_error(fi.uri, ret, &d);
		rc = cli_exit_code(ret);
		goto out;
	}
	if (files) {
		json_object *j = json_object_new_object();
		json_object_object_add(j, "uri", json_object_new_string(fi.uri));
		json_object_object_add(j, "path", json_object_new_string(o.f.path));
		json_object_object_add(j, "size", json_object_new_int64((int64_t)fi.size));
		json_object_array_add(files, j);
	} else if (!quiet) {
		printf("%s -> %s\n", fi.uri, o.f.path);
	}
	*bytes += fi.size;
out:
	out_close(&o.f, 0);
	free(o.f.path);
	free(hdr);
	free(name);
	return rc;
}

static int has_suffix(const char *s, const char *suf)
{
	size_t n = strlen(s), m = strlen(suf);

	return n >= m && strcmp(s + n - m, suf) == 0;
}

/* Copy the index object uri to dir. 0 or an exit status (printed). */
static int copy_index(wlift_ctx *ctx, const char *uri, const char *dir, json_object *files,
		      bool quiet, uint64_t *bytes)
{
	struct out_file f = {0};
	char *name = local_name(uri), *text = NULL;
	size_t len = 0;
	wlift_diag d;
	int ret;

	wlift_diag_clear(&d);
	if (!name) {
		cli_errorf("%s: no file name to copy it to", uri);
		return CLI_EXIT_INPUT;
	}
	ret = wlift_read_object(ctx, uri, 64u << 20, &text, &len, &d);
	if (ret) {
		cli_print_error(uri, ret, &d);
		free(name);
		return cli_exit_code(ret);
	}
	ret = out_open(&f, dir, name);
	if (!ret)
		ret = pwrite_all(f.fd, text, len, 0);
	{
		int r2 = out_close(&f, !ret);
		if (!ret)
			ret = r2;
	}
	if (ret) {
		cli_errorf("%s: %s", f.path ? f.path : dir, strerror(-ret));
	} else if (files) {
		json_object *o = json_object_new_object();
		json_object_object_add(o, "uri", json_object_new_string(uri));
		json_object_object_add(o, "path", json_object_new_string(f.path));
		json_object_object_add(o, "size", json_object_new_int64((int64_t)len));
		json_object_array_add(files, o);
	} else if (!quiet) {
		printf("%s -> %s\n", uri, f.path);
	}
	if (!ret)
		*bytes += len;
	free(f.path);
	free(text);
	free(name);
	return ret ? CLI_EXIT_IO : 0;
}

int cli_cp(int argc, char **argv)
{
	enum { OPT_JSON = 256, OPT_BATCH };
	static const struct option opts[] = {
	    {"json", no_argument, NULL, OPT_JSON},
	    {"batch-size", required_argument, NULL, OPT_BATCH},
	    CLI_CACHE_LONGOPTS,
	    {"quiet", no_argument, NULL, 'q'},
	    {"verbose", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	wlift_ctx_opts co = WLIFT_CTX_OPTS_INIT;
	json_object *files = NULL;
	wlift_ctx *ctx = NULL;
	wlift_ckpt *ck = NULL;
	const char *uri, *dir;
	wlift_load_opts lo = WLIFT_LOAD_OPTS_INIT;
	uint64_t bytes = 0, batch = CLI_DEFAULT_BATCH_BYTES;
	bool json = false, quiet = false;
	int verbosity = 0, c, rc = 0, ret;
	double t0;
	wlift_diag d;

	while ((c = getopt_long(argc, argv, ":qvh", opts, NULL)) != -1) {
		switch (c) {
		case OPT_JSON:
			json = true;
			break;
		case OPT_BATCH:
			if (cli_parse_size(optarg, &batch, false) < 0)
				return cli_usage_error("cp", "invalid --batch-size '%s'", optarg);
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
			ret = cli_cache_opt("cp", c, optarg, &co);
			if (ret == 1)
				break;
			return ret ? ret : cli_getopt_error("cp", c, argv);
		}
	}
	if (optind >= argc)
		return cli_usage_error("cp", "no URI given");
	if (argc - optind != 2)
		return cli_usage_error("cp", "give one URI and one directory");
	uri = argv[optind];
	dir = argv[optind + 1];
	wlift_diag_clear(&d);
	ret = cli_ctx_create(&ctx, &co, verbosity, &d);
	if (ret < 0)
		return cli_ctx_exit_code(ret, &d);
	ret = mkdirs(dir);
	if (ret) {
		cli_errorf("%s: cannot create: %s", dir, strerror(-ret));
		rc = CLI_EXIT_IO;
		goto out;
	}
	if (json)
		files = json_object_new_array();
	t0 = now_s();
	ret = wlift_open(ctx, uri, &ck, &d);
	if (ret) {
		cli_print_error(uri, ret, &d);
		rc = cli_exit_code(ret);
		goto out;
	}
	if (has_suffix(uri, ".index.json"))
		rc = copy_index(ctx, uri, dir, files, quiet, &bytes);
	for (size_t i = 0; !rc && i < wlift_ckpt_nfiles(ck); i++)
		rc = copy_file(ck, &lo, batch, i, dir, files, quiet, &bytes);
	if (!rc) {
		double s = now_s() - t0;
		double gbs = s > 0 ? (double)bytes / s / 1e9 : 0;
		if (json) {
			json_object *o = json_object_new_object();
			json_object_object_add(o, "schema", json_object_new_int(CLI_JSON_SCHEMA));
			json_object_object_add(o, "files", files);
			files = NULL;
			json_object_object_add(o, "bytes", json_object_new_int64((int64_t)bytes));
			json_object_object_add(o, "seconds", json_object_new_double(s));
			json_object_object_add(o, "gb_per_s", json_object_new_double(gbs));
			cli_json_print(o);
			json_object_put(o);
		} else if (!quiet) {
			char b[32];
			printf("copied %s in %.3f s: %.2f GB/s\n",
			       cli_fmt_bytes(bytes, b, sizeof(b)), s, gbs);
		}
	}
out:
	json_object_put(files);
	wlift_ckpt_close(ck);
	wlift_ctx_destroy(ctx);
	return rc;
}
