/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `weightlift`: the command-line tool. This file dispatches to the commands (inspect, verify,
 * load, cp, cache) and handles the tool-level options
 * (--help, --version). Exit codes follow the CLI contract in README.md: 0 ok, 1 bad input,
 * 2 usage, 3 I/O or network, 4 auth, 5 device.
 */
#include <string.h>

#include "cli.h"

static void usage(FILE *out)
{
	fputs("usage: weightlift [--version] [--help] COMMAND [options] URI...\n"
	      "\n"
	      "Load safetensors checkpoints at line rate.\n"
	      "\n"
	      "commands:\n"
	      "  inspect URI...   list files, metadata and tensors (no data is read)\n"
	      "  verify URI...    validate every byte and print the sha256 of every tensor\n"
	      "  load URI         load into memory and report throughput and statistics\n"
	      "  cp URI DIR       download a checkpoint (its files, its index) into DIR\n"
	      "  cache ls|clear   list or empty the local cache of remote objects\n"
	      "\n"
	      "URI: a .safetensors file, a model.safetensors.index.json, a directory, a\n"
	      "file:// URI, or a remote object (http(s)://, hf://, s3://, gs://). Every\n"
	      "command takes --json (one JSON object with \"schema\": 1 on stdout) and --help.\n"
	      "\n"
	      "exit status: 0 ok, 1 bad input, 2 usage, 3 I/O or network, 4 auth, 5 device\n"
	      "\n"
	      "Run 'weightlift COMMAND --help' for the options of a command.\n",
	      out);
}

struct command {
	const char *name;
	int (*run)(int argc, char **argv);
};

static const struct command commands[] = {
    {"inspect", cli_inspect},
    {"verify", cli_verify},
    {"load", cli_load},
    {"cp", cli_cp},
    {"cache", cli_cache},
};

int main(int argc, char **argv)
{
	const char *cmd;

	if (argc < 2)
		return usage(stderr), CLI_EXIT_USAGE;
	cmd = argv[1];
	if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
		usage(stdout);
		return CLI_EXIT_OK;
	}
	if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) {
		printf("weightlift %s\n", WLIFT_VERSION_STRING);
		return CLI_EXIT_OK;
	}
	/* "weightlift help load" is "weightlift load --help". */
	if (strcmp(cmd, "help") == 0) {
		if (argc < 3) {
			usage(stdout);
			return CLI_EXIT_OK;
		}
		for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
			if (strcmp(argv[2], commands[i].name) == 0) {
				char *hargv[] = {argv[2], (char *)"--help", NULL};

				return commands[i].run(2, hargv);
			}
		}
		cmd = argv[2];
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(cmd, commands[i].name) != 0)
			continue;
		return commands[i].run(argc - 1, argv + 1);
	}
	if (cmd[0] == '-')
		return cli_usage_error(NULL, "unknown option '%s'", cmd);
	return cli_usage_error(NULL, "unknown command '%s'", cmd);
}
