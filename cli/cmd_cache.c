/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `weightlift cache ls|clear`: list the complete entries of the local cache of remote
 * objects (URI, size, ETag, when cached and last used, the cached file), or remove them all
 * (entries another process is filling are left alone). The directory is --cache-dir, else
 * WEIGHTLIFT_CACHE_DIR.
 */
#include <getopt.h>
#include <inttypes.h>
#include <string.h>
#include <time.h>

#include "cli.h"

static void usage(FILE *out)
{
	fputs("usage: weightlift cache ls|clear [options]\n"
	      "\n"
	      "  ls      list the cached remote objects, least recently used first\n"
	      "  clear   remove every cached object (not those being filled right now)\n"
	      "\n"
	      "options:\n"
	      "  --cache-dir DIR   the cache (default: WEIGHTLIFT_CACHE_DIR)\n"
	      "  --json            ls: print {schema, dir, entries:[{uri, path, size, etag,\n"
	      "                    cached_at, used_at}], bytes}; clear: {schema, removed}\n"
	      "  -h, --help        show this help\n"
	      "\n"
	      "exit status: 0 ok, 2 usage, 3 I/O (or no cache directory)\n",
	      out);
}

struct ls_state {
	json_object *arr;
	uint64_t bytes;
};

static void when(int64_t t, char *buf, size_t cap)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (!gmtime_r(&tt, &tm) || !strftime(buf, cap, "%Y-%m-%d %H:%M:%S", &tm))
		snprintf(buf, cap, "%" PRId64, t);
}

static int on_entry(const wlift_cache_entry *e, void *user)
{
	struct ls_state *st = user;
	char b[32], t1[32], t2[32];

	st->bytes += e->size;
	if (st->arr) {
		json_object *o = json_object_new_object();
		json_object_object_add(o, "uri", json_object_new_string(e->uri));
		json_object_object_add(o, "path", json_object_new_string(e->path));
		json_object_object_add(o, "size", json_object_new_int64((int64_t)e->size));
		json_object_object_add(o, "etag", json_object_new_string(e->etag));
		json_object_object_add(o, "cached_at", json_object_new_int64(e->cached_at));
		json_object_object_add(o, "used_at", json_object_new_int64(e->used_at));
		json_object_array_add(st->arr, o);
		return 0;
	}
	when(e->cached_at, t1, sizeof(t1));
	when(e->used_at, t2, sizeof(t2));
	printf("%s\n  %s, ETag %s, cached %s UTC, used %s UTC\n  %s\n", e->uri,
	       cli_fmt_bytes(e->size, b, sizeof(b)), e->etag, t1, t2, e->path);
	return 0;
}

int cli_cache(int argc, char **argv)
{
	enum { OPT_JSON = 256, OPT_DIR };
	static const struct option opts[] = {
	    {"json", no_argument, NULL, OPT_JSON},
	    {"cache-dir", required_argument, NULL, OPT_DIR},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	wlift_ctx_opts co = WLIFT_CTX_OPTS_INIT;
	struct ls_state st = {0};
	wlift_ctx *ctx = NULL;
	const char *sub;
	bool json = false;
	int c, ret, rc = 0;
	wlift_diag d;

	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case OPT_JSON:
			json = true;
			break;
		case OPT_DIR:
			co.cache_dir = optarg;
			break;
		case 'h':
			usage(stdout);
			return CLI_EXIT_OK;
		default:
			return cli_getopt_error("cache", c, argv);
		}
	}
	if (argc - optind != 1)
		return cli_usage_error("cache", "give ls or clear");
	sub = argv[optind];
	if (strcmp(sub, "ls") != 0 && strcmp(sub, "clear") != 0)
		return cli_usage_error("cache", "unknown subcommand '%s' (ls or clear)", sub);
	wlift_diag_clear(&d);
	ret = cli_ctx_create(&ctx, &co, 0, &d);
	if (ret < 0)
		return cli_ctx_exit_code(ret, &d);
	if (strcmp(sub, "ls") == 0) {
		if (json)
			st.arr = json_object_new_array();
		ret = wlift_cache_list(ctx, NULL, on_entry, &st, &d);
		if (ret >= 0 && json) {
			json_object *o = json_object_new_object();
			json_object_object_add(o, "schema", json_object_new_int(CLI_JSON_SCHEMA));
			json_object_object_add(o, "entries", st.arr);
			st.arr = NULL;
			json_object_object_add(o, "bytes", json_object_new_int64((int64_t)st.bytes));
			cli_json_print(o);
			json_object_put(o);
		} else if (ret >= 0) {
			char b[32];
			printf("%d entr%s, %s\n", ret, ret == 1 ? "y" : "ies",
			       cli_fmt_bytes(st.bytes, b, sizeof(b)));
		}
	} else {
		ret = wlift_cache_clear(ctx, NULL, &d);
		if (ret >= 0 && json) {
			json_object *o = json_object_new_object();
			json_object_object_add(o, "schema", json_object_new_int(CLI_JSON_SCHEMA));
			json_object_object_add(o, "removed", json_object_new_int(ret));
			cli_json_print(o);
			json_object_put(o);
		} else if (ret >= 0) {
			printf("removed %d entr%s\n", ret, ret == 1 ? "y" : "ies");
		}
	}
	if (ret < 0) {
		cli_print_error(NULL, ret, &d);
		rc = cli_exit_code(ret);
	}
	json_object_put(st.arr);
	wlift_ctx_destroy(ctx);
	return rc;
}
