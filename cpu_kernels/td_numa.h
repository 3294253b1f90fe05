/* td_numa: placing memory on NUMA nodes with libnuma. Every call is best effort and a no-op where the
 * machine or the kernel has no NUMA support: placement changes speed, never results. */
#ifndef TD_NUMA_H
#define TD_NUMA_H

#include <stdbool.h>
#include <stddef.h>

bool td_numa_available(void);
/* Binds the pages of [addr, addr + len) to node `os_node` and migrates the ones already resident.
 * Returns false when the kernel refused (the memory stays where it was). */
bool td_numa_move(const void *addr, size_t len, int os_node);

/* Spreads the pages of [addr, addr + len) round-robin over every node, moving the resident ones. */
bool td_numa_interleave(const void *addr, size_t len);

#endif
