/* The bandwidth probe's buffer: by default several times the last-level cache, but never more than a
 * quarter of the available memory or what the machine fills in its share of the time (a VM reporting a
 * 1016 MiB cache once made an 8 GiB buffer and minutes per "short" run); and the measurement itself:
 * a size given is used as given, the passes stay within the asked number, at least three run. */
#include "td_roofline.h"
#include "td_test.h"

#define MiB (1ull << 20)
#define GiB (1ull << 30)

static void td_test_default_size(void)
{
    const char *why;
    /* a small cache, plenty of memory and a fast machine: the 1 GiB floor, nothing capped */
    TD_CHECK(td_membw_default_size(32 * MiB, 64 * GiB, 10e9, 1.2, &why) == 1 * GiB && why == NULL);
    /* a large cache: 8x of it */
    TD_CHECK(td_membw_default_size(256 * MiB, 64 * GiB, 50e9, 1.2, &why) == 2 * GiB && why == NULL);
    /* the VM of the report: 1016 MiB of cache, 23 GiB available, pages filled at 330 MB/s */
    uint64_t b = td_membw_default_size(1016 * MiB, 23 * GiB, 330e6, 0.4, &why);
    TD_CHECKF(b == (uint64_t)(330e6 * 0.4) && why && why[0] == 't', "%llu bytes, capped by %s",
              (unsigned long long)b, why ? why : "nothing");
    /* little memory: a quarter of it */
    TD_CHECK(td_membw_default_size(1016 * MiB, 2 * GiB, 0, 1, &why) == 512 * MiB && why && why[0] == 'm');
    /* memory and time both unknown: the cache rule alone */
    TD_CHECK(td_membw_default_size(1016 * MiB, 0, 0, 1, &why) == 8 * 1016 * MiB && why == NULL);
    /* never below 64 MiB, however slow the machine */
    TD_CHECK(td_membw_default_size(32 * MiB, 64 * GiB, 1e6, 0.1, &why) == 64 * MiB);
}

static void td_test_measure(void)
{
    td_cpu *cpu = NULL;
    td_cpu_params cp = {.kernels = TD_KERNELS_AUTO, .n_threads = 2, .max_tokens = 1, .max_cols = 256, .hidden = 256,
                        .ffn_width = 256, .n_experts = 1, .top_k = 1};
    if (!TD_CHECK(td_cpu_create(&cp, &cpu) == TD_OK)) return;
    td_membw_result r;
    td_membw_params given = {.bytes = 16 * MiB, .passes = 2, .seconds = 0.05};
    TD_CHECK(td_membw_measure(cpu, &given, &r) == TD_OK);
    TD_CHECK(r.bytes == 16 * MiB && r.wanted == 16 * MiB && !r.capped_by && r.passes == 2);
    TD_CHECK(r.gbps_median > 0 && r.gbps_best >= r.gbps_median && r.seconds > 0);
    td_membw_params dflt = {.seconds = 0.2};
    TD_CHECK(td_membw_measure(cpu, &dflt, &r) == TD_OK);
    uint64_t avail = td_mem_available_bytes();
    TD_CHECKF(r.bytes >= 64 * MiB && (!avail || r.bytes <= avail / 4 + 256), "%llu bytes, %llu available",
              (unsigned long long)r.bytes, (unsigned long long)avail);
    TD_CHECK(r.bytes <= r.wanted && (r.bytes == r.wanted) == (r.capped_by == NULL));
    TD_CHECK(r.passes >= 3 && r.passes <= 10);
    td_cpu_free(cpu);
}

int main(void)
{
    td_test_default_size();
    td_test_measure();
    return td_test_finish();
}
