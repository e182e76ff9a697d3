/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Helpers every command shares: the exit-code policy of the CLI contract, error and usage
 * messages, parsing of sizes and counts on the command line, the library context with its
 * log callback, and the small JSON helpers (one object on stdout, error objects).
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include "cli.h"

int cli_exit_code(int err)
{
	if (err >= 0)
		return CLI_EXIT_OK;
	/* Permission problems are "auth" whether they come from a remote service or from the
	 * local file system: the fix is the same (credentials or access rights). */
	if (err == WLIFT_EAUTH || err == -EACCES || err == -EPERM)
		return CLI_EXIT_AUTH;
	/* An object that changed while it was read (a remote object replaced, a local file
	 * rewritten) is an I/O condition, not bad input: docs/remote.md's table says 3. */
	if (err == WLIFT_ECHANGED)
		return CLI_EXIT_IO;
	switch (wlift_errclass(err)) {
	case WLIFT_ERRCLASS_GPU:
		return CLI_EXIT_DEVICE;
	case WLIFT_ERRCLASS_ERRNO:
	case WLIFT_ERRCLASS_REMOTE:
	case WLIFT_ERRCLASS_COMM:
		return CLI_EXIT_IO;
	default:
		return CLI_EXIT_INPUT;
	}
}

void cli_errorf(const char *fmt, ...)
{
	va_list ap;

	fputs("weightlift: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* Whether msg quotes the tensor name ("name" or 'name'). */
static bool mentions_tensor(const char *msg, const char *tensor)
{
	size_t n = strlen(tensor);

	for (const char *p = strstr(msg, tensor); p; p = strstr(p + 1, tensor))
		if (p > msg && (p[-1] == '"' || p[-1] == '\'') && (p[n] == '"' || p[n] == '\''))
			return true;
	return false;
}

void cli_print_error(const char *uri, int err, const wlift_diag *d)
{
	const char *file = d && d->file[0] ? d->file : uri;
	const char *msg = d && d->code && d->message[0] ? d->message : wlift_strerror(err);

	fputs("weightlift: ", stderr);
	/* Library messages are full sentences that often name the file and the tensor
	 * already ("<file>: tensor \"<name>\": ..."); print each once, in that order. */
	if (file && file[0]) {
		size_t fl = strlen(file);

		fprintf(stderr, "%s: ", file);
		if (strncmp(msg, file, fl) == 0 && msg[fl] == ':') {
			msg += fl + 1;
			while (*msg == ' ')
				msg++;
		}
	}
	if (d && d->tensor[0] && !mentions_tensor(msg, d->tensor))
		fprintf(stderr, "%s: ", d->tensor);
	fputs(msg, stderr);
	/* Byte 0 says nothing that "the file" does not (LFS pointers, HTML pages). */
	if (d && d->has_offset && d->offset)
		fprintf(stderr, " (at byte %" PRIu64 ")", d->offset);
	if (d && d->rule[0])
		fprintf(stderr, " [%s]", d->rule);
	fputc('\n', stderr);
	/* Resource limits are not I/O failures of the file: say which limit to raise. */
	if (err == -ENOMEM)
		fputs("weightlift: out of memory: free memory, or load fewer tensors at once "
		      "(--names)\n", stderr);
	else if (err == -EMFILE || err == -ENFILE)
		fputs("weightlift: too many open files: every shard is opened at once; raise the "
		      "limit (ulimit -n)\n", stderr);
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "weightlift%s%s: ", cmd ? " " : "", cmd ? cmd : "");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'weightlift %s%s--help' for more information.\n", cmd ? cmd : "",
		cmd ? " " : "");
	return CLI_EXIT_USAGE;
}

int cli_getopt_error(const char *cmd, int c, char **argv)
{
	extern int optind, optopt;
	const char *arg = optind > 0 ? argv[optind - 1] : "";

	if (c == ':')
		return cli_usage_error(cmd, "option '%s' needs a value", arg);
	if (arg[0] == '-' && arg[1] == '-' && strchr(arg, '='))
		return cli_usage_error(cmd, "option '%.*s' takes no value",
				       (int)(strchr(arg, '=') - arg), arg);
	if (optopt && !(arg[0] == '-' && arg[1] == '-'))
		return cli_usage_error(cmd, "unknown option '-%c'", optopt);
	return cli_usage_error(cmd, "unknown option '%s'", arg);
}

int cli_parse_uint(const char *s, unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long v;

	if (!s || !isdigit((unsigned char)s[0]))
		return -1;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v == 0 || v > max)
		return -1;
	*out = v;
	return 0;
}

int cli_parse_size(const char *s, uint64_t *out, bool allow_zero)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	if (!s || !isdigit((unsigned char)s[0]))
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -1;
	switch (tolower((unsigned char)*end)) {
	case '\0':
		break;
	case 'k':
		shift = 10;
		end++;
		break;
	case 'm':
		shift = 20;
		end++;
		break;
	case 'g':
		shift = 30;
		end++;
		break;
	case 't':
		shift = 40;
		end++;
		break;
	case 'b':
		break;
	default:
		return -1;
	}
	/* Accept "8M", "8MB", "8MiB", "8m" and "4096B" alike: the multiples are binary. */
	if (shift &&
	    (strcmp(end, "iB") == 0 || strcmp(end, "ib") == 0 || strcasecmp(end, "b") == 0))
		end += strlen(end);
	else if (!shift && strcasecmp(end, "b") == 0)
		end++;
	if (*end)
		return -1;
	if (shift && v > (UINT64_MAX >> shift))
		return -1;
	v <<= shift;
	if (v == 0 && !allow_zero)
		return -1;
	*out = v;
	return 0;
}

const char *cli_fmt_bytes(uint64_t n, char *buf, size_t cap)
{
	static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
	double v = (double)n;
	int u = -1;

	if (n < 1024) {
		snprintf(buf, cap, "%" PRIu64 " B", n);
		return buf;
	}
	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	snprintf(buf, cap, "%.2f %s", v, units[u]);
	return buf;
}

static void log_to_stderr(void *user, int level, const char *msg)
{
	static const char *const names[] = {"error", "warning", "info", "debug"};

	(void)user;
	if (level < 0 || level > WLIFT_LOG_DEBUG)
		level = WLIFT_LOG_DEBUG;
	fprintf(stderr, "weightlift: %s: %s\n", names[level], msg);
}

int cli_ctx_create(wlift_ctx **ctx, const wlift_ctx_opts *base, int verbosity, wlift_diag *d)
{
	wlift_ctx_opts o = WLIFT_CTX_OPTS_INIT;
	int ret;

	if (base)
		o = *base;
	o.size = sizeof(o);
	o.log = log_to_stderr;
	o.log_user = NULL;
	o.log_level = verbosity >= 2   ? WLIFT_LOG_DEBUG
		      : verbosity == 1 ? WLIFT_LOG_INFO
				       : WLIFT_LOG_WARN;
	ret = wlift_ctx_create(ctx, &o, d);
	if (ret < 0)
		cli_print_error(NULL, ret, d);
	return ret;
}

int cli_read_small_file(const char *path, size_t max, char **buf, size_t *len)
{
	struct stat st;
	char *b = NULL;
	size_t got = 0;
	int fd, ret = 0;

	*buf = NULL;
	*len = 0;
	/* O_NONBLOCK: a FIFO would block the open until a writer came. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		ret = -errno;
		cli_errorf("%s: %s", path, wlift_strerror(ret));
		return cli_exit_code(ret);
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		cli_errorf("%s: not a regular file [file.type]", path);
		ret = CLI_EXIT_INPUT;
		goto out;
	}
	if ((uint64_t)st.st_size > max) {
		cli_errorf("%s: %llu bytes is more than the %zu MiB accepted here [file.size]", path,
			   (unsigned long long)st.st_size, max >> 20);
		ret = CLI_EXIT_INPUT;
		goto out;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	b = malloc((size_t)st.st_size + 1);
	if (!b) {
		cli_errorf("%s: out of memory", path);
		ret = CLI_EXIT_IO;
		goto out;
	}
	/* Read at most max bytes even if the file grows meanwhile. */
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, b + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = -errno;
			cli_errorf("%s: %s", path, wlift_strerror(ret));
			ret = cli_exit_code(ret);
			goto out;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	b[got] = '\0';
	*buf = b;
	*len = got;
	b = NULL;
out:
	free(b);
	close(fd);
	return ret;
}

int cli_ctx_exit_code(int err, const wlift_diag *d)
{
	/* A WEIGHTLIFT_* variable out of range or malformed is a usage error like a bad flag. */
	if (d && strncmp(d->rule, "config.", 7) == 0)
		return 2;
	return cli_exit_code(err);
}

void cli_json_print(json_object *obj)
{
	int flags = JSON_C_TO_STRING_NOSLASHESCAPE;

	/* Pretty for a person at a terminal; one line for pipes and files, so that each
	 * invocation writes exactly one line that line-oriented tools can take apart. */
	flags |= isatty(STDOUT_FILENO) ? JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED
				       : JSON_C_TO_STRING_PLAIN;
	fputs(json_object_to_json_string_ext(obj, flags), stdout);
	fputc('\n', stdout);
	fflush(stdout);
}

void cli_hex32(const uint8_t *md, char out[65])
{
	static const char hex[] = "0123456789abcdef";

	for (int i = 0; i < 32; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[64] = '\0';
}

int cli_parse_rate(const char *cmd, const char *s, uint64_t *out)
{
	if (cli_parse_size(s, out, false) < 0 || *out < WLIFT_MIN_RATE || *out > WLIFT_MAX_RATE)
		return cli_usage_error(cmd, "invalid --max-rate '%s' (bytes per second, 64K .. 1024G)",
				       s);
	return 0;
}

int cli_cache_opt(const char *cmd, int c, const char *arg, wlift_ctx_opts *co)
{
	switch (c) {
	case CLI_OPT_CACHE_DIR:
		if (!*arg)
			return cli_usage_error(cmd, "--cache-dir needs a directory");
		co->cache_dir = arg;
		return 1;
	case CLI_OPT_OFFLINE:
		co->offline = 1;
		return 1;
	case CLI_OPT_CACHE_FILL:
		if (strcmp(arg, "full") == 0)
			co->cache_fill = WLIFT_CACHE_FILL_FULL;
		else if (strcmp(arg, "partial") == 0)
			co->cache_fill = WLIFT_CACHE_FILL_PARTIAL;
		else
			return cli_usage_error(cmd, "invalid --cache-fill '%s' (partial or full)", arg);
		return 1;
	case CLI_OPT_REGION:
		if (!*arg)
			return cli_usage_error(cmd, "--region needs a region name");
		co->s3_region = arg;
		return 1;
	case CLI_OPT_NO_SIGN:
		co->s3_unsigned = 1;
		return 1;
	case CLI_OPT_MAX_RATE:
		return cli_parse_rate(cmd, arg, &co->max_rate) ? CLI_EXIT_USAGE : 1;
	case CLI_OPT_FULL_DOWNLOAD:
		co->http_full_download = 1;
		return 1;
	default:
		return 0;
	}
}
