/* SPDX-License-Identifier: Apache-2.0 */
/*
 * NUMA placement (numa.c): the node of a PCI device from sysfs, and libnuma (Debian's
 * libnuma1, loaded at run time; absent or a single-node machine: every call is a no-op) to
 * run a thread on a node and to place memory there.
 */
#ifndef WLIFT_COMMON_NUMA_H
#define WLIFT_COMMON_NUMA_H

#include <stddef.h>

/* The NUMA node of PCI device busid ("0000:3b:00.0") from root/bus/pci/devices/BUSID/
 * numa_node (root: "/sys", or a test's fake tree); -1 when unknown or not NUMA. */
int wlift__numa_node_of_pci(const char *root, const char *busid);

/* 1 when libnuma loaded and the machine has more than one node (placement matters). */
int wlift__numa_active(void);

/* Run the calling thread on node's CPUs (no-op when not active or node < 0). 0 or -errno. */
int wlift__numa_run_on_node(int node);

/* Place [p, p+len) (not yet touched) on node (no-op when not active or node < 0). */
void wlift__numa_tonode(void *p, size_t len, int node);

#endif
