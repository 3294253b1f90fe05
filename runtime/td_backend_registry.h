/* td_backend_registry: every backend this build can make, by name, for the per-backend op tests
 * (tests/test_backend_ops.c) and for tools that compare backends. Each entry says how its matrix
 * products round their operands, which sets the error the tests allow it against the reference: the
 * CPU backend on its scalar kernels. A new device adds its entries in td_backend_registry.c; the tests
 * then check it with no change of their own. */
#ifndef TD_BACKEND_REGISTRY_H
#define TD_BACKEND_REGISTRY_H

#include "td_backend.h"

#include <stdbool.h>
#include <stddef.h>

/* How a backend rounds the operands of its matrix products (the coarsest of its kernels). */
typedef enum td_backend_precision {
    TD_PRECISION_F32 = 0,  /* float32 operands, weights dequantized exactly (the reference) */
    TD_PRECISION_Q8 = 1,   /* activations in 8 bits plus an 8-bit residual per block of 256 (AVX2, AVX-512) */
    TD_PRECISION_BF16 = 2, /* activations and dequantized weights rounded to bf16 (AMX tiles, tensor cores) */
    TD_PRECISION_COUNT
} td_backend_precision;

const char *td_backend_precision_name(td_backend_precision p);

typedef struct td_backend_entry td_backend_entry;
struct td_backend_entry {
    const char *name; /* "cpu-avx2", later "cuda:0" */
    td_backend_precision precision;
    const void *params; /* the device's own parameters (td_backend_cpu_params for the CPU) */
    /* Whether this build and machine can make it; if not, why (one line into why). */
    bool (*available)(const td_backend_entry *e, char *why, size_t cap);
    /* A backend for forward calls of up to max_rows rows of `model`. */
    td_status (*create)(const td_backend_entry *e, const td_model *model, int64_t max_rows, td_backend **out);
};

/* The entries, reference first; n_out receives their count. Entries the machine cannot run are listed
 * too: ask `available`. */
const td_backend_entry *td_backend_registry(int *n_out);
/* The reference every other backend is compared against: the CPU backend with TD_KERNELS_REF. */
const td_backend_entry *td_backend_registry_reference(void);
/* The entry of that name, or NULL. */
const td_backend_entry *td_backend_registry_find(const char *name);

#endif
