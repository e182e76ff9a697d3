/* SPDX-License-Identifier: Apache-2.0 */
/*
 * NUMA placement for GPU loads: the GPU's node comes from the kernel's view of its PCI
 * device (sysfs numa_node); libnuma is dlopen'ed once ("libnuma.so.1"), so the library
 * builds and runs without it. With one node (numa_max_node() == 0) nothing is done.
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/numa.h"

static struct {
	int (*available)(void);
	int (*max_node)(void);
	int (*run_on_node)(int node);
	void (*tonode_memory)(void *p, size_t len, int node);
	int active;
} nm;
static pthread_once_t nm_once = PTHREAD_ONCE_INIT;

static void sym(void *h, const char *name, void *fnp, size_t n)
{
	void *p = dlsym(h, name);

	memcpy(fnp, &p, n);
}

static void nm_load(void)
{
	void *h = dlopen("libnuma.so.1", RTLD_NOW | RTLD_LOCAL);

	if (!h)
		return;
	sym(h, "numa_available", &nm.available, sizeof(nm.available));
	sym(h, "numa_max_node", &nm.max_node, sizeof(nm.max_node));
	sym(h, "numa_run_on_node", &nm.run_on_node, sizeof(nm.run_on_node));
	sym(h, "numa_tonode_memory", &nm.tonode_memory, sizeof(nm.tonode_memory));
	nm.active = nm.available && nm.max_node && nm.run_on_node && nm.tonode_memory &&
		    nm.available() >= 0 && nm.max_node() > 0;
	/* Kept loaded for the process. */
}

int wlift__numa_active(void)
{
	pthread_once(&nm_once, nm_load);
	return nm.active;
}

int wlift__numa_node_of_pci(const char *root, const char *busid)
{
	char path[512], buf[32], *end;
	FILE *f;
	long v;

	if (!busid || !*busid || strchr(busid, '/') || strstr(busid, ".."))
		return -1;
	snprintf(path, sizeof(path), "%s/bus/pci/devices/%s/numa_node",
		 root && *root ? root : "/sys", busid);
	f = fopen(path, "re");
	if (!f)
		return -1;
	if (!fgets(buf, sizeof(buf), f)) {
		fclose(f);
		return -1;
	}
	fclose(f);
	v = strtol(buf, &end, 10);
	if (end == buf || (*end && *end != '\n') || v < 0 || v > 4095)
		return -1;
	return (int)v;
}

int wlift__numa_run_on_node(int node)
{
	if (node < 0 || !wlift__numa_active())
		return 0;
	return nm.run_on_node(node) == 0 ? 0 : -errno;
}

void wlift__numa_tonode(void *p, size_t len, int node)
{
	if (node >= 0 && len && wlift__numa_active())
		nm.tonode_memory(p, len, node);
}
