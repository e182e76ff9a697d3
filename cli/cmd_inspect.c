/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `weightlift inspect URI...`: open each checkpoint (which reads and strictly validates every
 * header, but no tensor data) and print its files, metadata and tensor table, or with --json
 * the report of the CLI contract. A bad file is reported (in "errors" with --json) and the
 * remaining URIs are still processed; the exit code is that of the first failure.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void usage(FILE *out)
{
	fputs("usage: weightlift inspect [options] URI...\n"
	      "\n"
	      "Read and validate the headers of each checkpoint (a .safetensors file, a\n"
	      "model.safetensors.index.json or a directory) and list its files, metadata and\n"
	      "tensors (name, dtype, shape, bytes, data offsets). No tensor data is read.\n"
	      "\n"
	      "options:\n"
	      "  --json          print one JSON object: {schema, uris, files, metadata, tensors,\n"
	      "                  errors}; a bad file still prints it, with \"errors\" filled\n"
	      CLI_CACHE_HELP
	      "  -v, --verbose   library log messages on stderr (twice: debug)\n"
	      "  -h, --help      show this help\n"
	      "\n"
	      "exit status: 0 ok, 1 bad input, 2 usage, 3 I/O, 4 permission\n",
	      out);
}

int cli_inspect(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"json", no_argument, NULL, 'j'},
	    CLI_CACHE_LONGOPTS,
	    {"verbose", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	wlift_ctx_opts co = WLIFT_CTX_OPTS_INIT;
	struct cli_report rep;
	wlift_ctx *ctx = NULL;
	wlift_diag d;
	bool json = false;
	int verbosity = 0, c, rc = 0, ret;

	while ((c = getopt_long(argc, argv, ":vh", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'v':
			verbosity++;
			break;
		case 'h':
			usage(stdout);
			return CLI_EXIT_OK;
		default:
			ret = cli_cache_opt("inspect", c, optarg, &co);
			if (ret == 1)
				break;
			return ret ? ret : cli_getopt_error("inspect", c, argv);
		}
	}
	if (optind >= argc)
		return cli_usage_error("inspect", "no URI given");

	wlift_diag_clear(&d);
	ret = cli_ctx_create(&ctx, &co, verbosity, &d);
	if (ret < 0)
		return cli_ctx_exit_code(ret, &d);
	cli_report_init(&rep, argv + optind, (size_t)(argc - optind));
	for (int i = optind; i < argc; i++) {
		const char *uri = argv[i];
		wlift_ckpt *ck = NULL;

		wlift_diag_clear(&d);
		ret = wlift_open(ctx, uri, &ck, &d);
		if (ret < 0) {
			if (json)
				cli_report_add_error(&rep, uri, ret, &d);
			else
				cli_print_error(uri, ret, &d);
			rc = cli_exit_merge(rc, cli_exit_code(ret));
			continue;
		}
		if (json) {
			/* Kept open: the report is written from the tables at the end. */
			ret = cli_report_keep(&rep, ck, NULL, NULL);
			if (ret < 0) {
				cli_report_add_error(&rep, uri, ret, NULL);
				rc = cli_exit_merge(rc, cli_exit_code(ret));
			}
			continue;
		}
		if (i > optind)
			fputc('\n', stdout);
		cli_print_ckpt(stdout, uri, ck, NULL);
		wlift_ckpt_close(ck);
	}
	if (json && cli_report_print(&rep, NULL, NULL) < 0)
		rc = cli_exit_merge(rc, CLI_EXIT_IO);
	cli_report_free(&rep);
	fflush(stdout);
	wlift_ctx_destroy(ctx);
	return rc;
}
