/* SPDX-License-Identifier: Apache-2.0 */
/*
 * faultfs: a read-only FUSE mirror of a backing directory that injects read faults, for the
 * I/O fault-injection test (tests/fault/test_fault.sh). The faults are chosen by the first
 * component of the path, so that one mount serves every case and a case needs no control
 * channel:
 *
 *     faultfs BACKING MOUNTPOINT        (stays in the foreground; unmount to stop it)
 *     MOUNTPOINT/<spec>/<path>          is BACKING/<path>, read through the faults of <spec>
 *
 * <spec> is "ok" or a comma-separated list of
 *     eio=N      a read covering any byte at offset >= N fails with EIO
 *     eof=N      reads stop at offset N: a read returns only the bytes before N (0 at or
 *                past N) while the file's size stays the backing file's (premature EOF)
 *     short=K    a read returns at most K bytes (K >= 1; data correct, the caller must ask
 *                again for the rest) ...
 *     from=N     ... when it reaches past offset N (default 0)
 *     delay=MS   every read sleeps MS milliseconds first (completions arrive late and, with
 *                several in flight, out of order)
 *     direct     open with FOPEN_DIRECT_IO: no page cache, every read of the caller reaches
 *                us as asked (split at the kernel's request size), short replies reach the
 *                caller as short reads. Without it, reads go through the page cache and the
 *                kernel takes a short reply for the end of the file.
 * Each spec path is its own inode, so cached pages of one case never serve another.
 * The high-level libfuse API is enough: reads are stateless preads on the backing file.
 */
#define FUSE_USE_VERSION 31

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

struct spec {
	long long eio;	/* -1: none */
	long long eof;	/* -1: none */
	long long shrt; /* 0: none */
	long long from;
	long long delay; /* milliseconds */
	int direct;
};

static char *backing;

static int parse_num(const char *s, long long *v)
{
	char *end;

	errno = 0;
	*v = strtoll(s, &end, 10);
	return errno || end == s || *v < 0 ? -1 : (int)(end - s);
}

/* Parse the spec component of path (from just past the leading '/', len bytes). */
static int parse_spec(const char *s, size_t len, struct spec *sp)
{
	char buf[256];
	char *tok, *save = NULL;

	memset(sp, 0, sizeof(*sp));
	sp->eio = sp->eof = -1;
	if (len == 0 || len >= sizeof(buf))
		return -1;
	memcpy(buf, s, len);
	buf[len] = 0;
	if (strcmp(buf, "ok") == 0)
		return 0;
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		const char *eq = strchr(tok, '=');
		long long v = 0;
		int n;

		if (strcmp(tok, "direct") == 0) {
			sp->direct = 1;
			continue;
		}
		if (!eq || (n = parse_num(eq + 1, &v)) < 0 || eq[1 + n] != 0)
			return -1;
		if (strncmp(tok, "eio=", 4) == 0)
			sp->eio = v;
		else if (strncmp(tok, "eof=", 4) == 0)
			sp->eof = v;
		else if (strncmp(tok, "short=", 6) == 0 && v > 0)
			sp->shrt = v;
		else if (strncmp(tok, "from=", 5) == 0)
			sp->from = v;
		else if (strncmp(tok, "delay=", 6) == 0)
			sp->delay = v;
		else
			return -1;
	}
	return 0;
}

/* Split "/<spec>[/rest]" into the spec and the backing path. Returns 1 for the root, 2 for a
 * spec directory itself, 3 for a path below one, -ENOENT for a bad spec. */
static int resolve(const char *path, struct spec *sp, char *real, size_t cap)
{
	const char *s = path + 1, *slash;
	size_t n;

	if (strcmp(path, "/") == 0)
		return 1;
	slash = strchr(s, '/');
	n = slash ? (size_t)(slash - s) : strlen(s);
	if (parse_spec(s, n, sp) < 0)
		return -ENOENT;
	if (snprintf(real, cap, "%s%s", backing, slash ? slash : "") >= (int)cap)
		return -ENAMETOOLONG;
	return slash && slash[1] ? 3 : 2;
}

static int ffs_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	char real[PATH_MAX];
	struct spec sp;
	int k = resolve(path, &sp, real, sizeof(real));

	(void)fi;
	if (k < 0)
		return k;
	if (lstat(k == 1 ? backing : real, st) < 0)
		return -errno;
	st->st_mode &= ~(mode_t)0222; /* read-only */
	return 0;
}

static int ffs_readlink(const char *path, char *buf, size_t size)
{
	char real[PATH_MAX];
	struct spec sp;
	ssize_t n;
	int k = resolve(path, &sp, real, sizeof(real));

	if (k < 0)
		return k;
	if (k != 3)
		return -EINVAL;
	n = readlink(real, buf, size - 1);
	if (n < 0)
		return -errno;
	buf[n] = 0;
	return 0;
}

static int ffs_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off,
		       struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
	char real[PATH_MAX];
	struct spec sp;
	struct dirent *e;
	DIR *dh;
	int k = resolve(path, &sp, real, sizeof(real));

	(void)off;
	(void)fi;
	(void)flags;
	if (k < 0)
		return k;
	fill(buf, ".", NULL, 0, 0);
	fill(buf, "..", NULL, 0, 0);
	if (k == 1) {
		fill(buf, "ok", NULL, 0, 0); /* other specs are found by name only */
		return 0;
	}
	dh = opendir(real);
	if (!dh)
		return -errno;
	while ((e = readdir(dh)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			fill(buf, e->d_name, NULL, 0, 0);
	closedir(dh);
	return 0;
}

struct open_file {
	int fd;
	struct spec sp;
};

static int ffs_open(const char *path, struct fuse_file_info *fi)
{
	char real[PATH_MAX];
	struct open_file *of;
	struct spec sp;
	int k = resolve(path, &sp, real, sizeof(real));

	if (k < 0)
		return k;
	if (k != 3)
		return -EISDIR;
	if ((fi->flags & O_ACCMODE) != O_RDONLY)
		return -EROFS;
	of = calloc(1, sizeof(*of));
	if (!of)
		return -ENOMEM;
	of->fd = open(real, O_RDONLY | O_CLOEXEC);
	if (of->fd < 0) {
		int err = -errno;
		free(of);
		return err;
	}
	of->sp = sp;
	fi->fh = (uint64_t)(uintptr_t)of;
	fi->direct_io = (unsigned)sp.direct;
	fi->keep_cache = 0;
	return 0;
}

static int ffs_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
	const struct open_file *of = (const struct open_file *)(uintptr_t)fi->fh;
	const struct spec *sp = &of->sp;
	size_t want = size, done = 0;

	(void)path;
	if (sp->delay) {
		struct timespec ts = {sp->delay / 1000, (sp->delay % 1000) * 1000000L};
		nanosleep(&ts, NULL);
	}
	if (sp->eio >= 0 && (long long)off + (long long)size > sp->eio)
		return -EIO;
	if (sp->eof >= 0)
		want = off >= sp->eof				  ? 0
		       : (long long)(off + (off_t)size) > sp->eof ? (size_t)(sp->eof - off)
								  : size;
	if (sp->shrt && (long long)off + (long long)want > sp->from && want > (size_t)sp->shrt)
		want = (size_t)sp->shrt;
	while (done < want) {
		ssize_t n = pread(of->fd, buf + done, want - done, off + (off_t)done);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (int)done;
}

static int ffs_release(const char *path, struct fuse_file_info *fi)
{
	struct open_file *of = (struct open_file *)(uintptr_t)fi->fh;

	(void)path;
	close(of->fd);
	free(of);
	return 0;
}

static int ffs_statfs(const char *path, struct statvfs *sv)
{
	(void)path;
	return statvfs(backing, sv) < 0 ? -errno : 0;
}

static void *ffs_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	(void)conn;
	/* Spec paths are fixed for the life of the mount; caching their attributes is fine,
	 * and the kernel asks again for every new spec. */
	cfg->kernel_cache = 0;
	cfg->use_ino = 0;
	return NULL;
}

static const struct fuse_operations ffs_ops = {
    .init = ffs_init,
    .getattr = ffs_getattr,
    .readlink = ffs_readlink,
    .readdir = ffs_readdir,
    .open = ffs_open,
    .read = ffs_read,
    .release = ffs_release,
    .statfs = ffs_statfs,
};

int main(int argc, char **argv)
{
	char *fargv[16];
	int fargc = 0;

	if (argc < 3) {
		fprintf(stderr, "usage: faultfs BACKING MOUNTPOINT [fuse options...]\n");
		return 2;
	}
	backing = realpath(argv[1], NULL);
	if (!backing) {
		perror(argv[1]);
		return 2;
	}
	fargv[fargc++] = argv[0];
	fargv[fargc++] = (char *)"-f"; /* foreground: the test owns the process */
	fargv[fargc++] = (char *)"-o";
	fargv[fargc++] = (char *)"ro,fsname=faultfs,subtype=faultfs";
	for (int i = 3; i < argc && fargc < 14; i++)
		fargv[fargc++] = argv[i];
	fargv[fargc++] = argv[2];
	fargv[fargc] = NULL;
	{
		int ret = fuse_main(fargc, fargv, &ffs_ops, NULL);
		free(backing);
		return ret;
	}
}
