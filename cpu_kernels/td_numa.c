#include "td_numa.h"

#include <numa.h>
#include <numaif.h>
#include <stdint.h>
#include <unistd.h>

bool td_numa_available(void) { return numa_available() >= 0; }

bool td_numa_move(const void *addr, size_t len, int os_node)
{
    if (len == 0 || os_node < 0 || !td_numa_available() || os_node > numa_max_node()) return false;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t start = (uintptr_t)addr & ~(page - 1);
    uintptr_t end = ((uintptr_t)addr + len + page - 1) & ~(page - 1);
    unsigned long mask[16] = {0};
    unsigned long bits = sizeof(unsigned long) * 8;
    if ((size_t)os_node >= sizeof mask * 8) return false;
    mask[(size_t)os_node / bits] |= 1ul << ((size_t)os_node % bits);
    /* MPOL_PREFERRED: pages come from this node while it has room; MPOL_MF_MOVE migrates resident ones */
    return mbind((void *)start, end - start, MPOL_PREFERRED, mask, sizeof mask * 8, MPOL_MF_MOVE) == 0;
}

bool td_numa_interleave(const void *addr, size_t len)
{
    if (len == 0 || !td_numa_available()) return false;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t start = (uintptr_t)addr & ~(page - 1);
    uintptr_t end = ((uintptr_t)addr + len + page - 1) & ~(page - 1);
    struct bitmask *all = numa_all_nodes_ptr;
    return mbind((void *)start, end - start, MPOL_INTERLEAVE, all->maskp, all->size + 1, MPOL_MF_MOVE) == 0;
}
