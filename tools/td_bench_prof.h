/* td_bench_prof: where a forward pass's time goes, per layer and module kind, measured from outside the
 * engine. It interposes on the CPU backend's operation table (td_backend.h): every operation the forward
 * pass issues is timed and booked to the layer and module whose weights it was given (the attention of
 * layer 7, the shared expert of layer 12, the head). Operations without weights (add, copy, host copies)
 * go to the layer of the operation before them. moe_submit and moe_wait both count as the routed experts,
 * so the split holds whether the experts run inside moe_submit or on the driver thread. The interposer
 * also counts the distinct experts of every moe_submit, whatever the batch.
 *
 * One profiled engine per process (the operations find the profiler through a file-scope pointer). */
#ifndef TD_BENCH_PROF_H
#define TD_BENCH_PROF_H

#include "td_engine.h"

#include <stdbool.h>
#include <stdint.h>

typedef enum td_prof_kind {
    TD_PROF_EMBED = 0,
    TD_PROF_ATTN = 1,    /* attention, its input norm included */
    TD_PROF_DENSE = 2,   /* a dense layer's MLP, its input norm included */
    TD_PROF_ROUTER = 3,  /* a MoE layer's input norm and router */
    TD_PROF_EXPERTS = 4, /* routed experts: moe_submit + moe_wait */
    TD_PROF_SHARED = 5,  /* shared experts */
    TD_PROF_HEAD = 6,    /* final norm and head */
    TD_PROF_MTP = 7,     /* the MTP block's own projection and norms */
    TD_PROF_OTHER = 8,   /* adds, copies, host transfers */
    TD_PROF_KIND_COUNT
} td_prof_kind;

const char *td_prof_kind_name(td_prof_kind k);

typedef struct td_prof {
    const td_model *model;
    int n_slots;          /* n_layers + 2: the main layers, the MTP block's layer, then "outside" */
    double *t;            /* [n_slots][TD_PROF_KIND_COUNT] seconds */
    int64_t *moe_calls;   /* [n_slots] moe_submit calls */
    int64_t *moe_distinct;/* [n_slots] distinct experts over those calls, summed */
    int64_t *moe_rows;    /* [n_slots] rows over those calls, summed */
    /* internals */
    td_backend *b;
    const td_backend_i *orig;
    td_backend_i table;
    int cur;              /* the slot of the last operation with weights */
    int moe_slot;         /* the slot of the last moe_submit (for its wait) */
    bool on;
} td_prof;

/* Interposes on the engine's CPU backend (the only one today). Counting starts off. */
td_status td_prof_attach(td_prof *p, td_engine *e);
/* Restores the backend's table and frees the counters. */
void td_prof_detach(td_prof *p);
void td_prof_reset(td_prof *p);
/* A copy of p's books, not attached (to keep one phase's numbers while another runs); free it with
 * td_prof_detach. */
td_status td_prof_snapshot(const td_prof *p, td_prof *out);
void td_prof_enable(td_prof *p, bool on);

/* The slot of the layers outside any decoder layer (embedding, final norm, head). */
static inline int td_prof_outside(const td_prof *p) { return p->n_slots - 1; }
double td_prof_slot_total(const td_prof *p, int slot);
static inline double td_prof_at(const td_prof *p, int slot, td_prof_kind k) { return p->t[slot * TD_PROF_KIND_COUNT + k]; }

/* Mean seconds per layer of each kind over the main layers of one kind (dense or MoE): into
 * kinds[TD_PROF_KIND_COUNT] and the total; false when the model has no such layer. */
bool td_prof_layer_mean(const td_prof *p, bool moe, double kinds[TD_PROF_KIND_COUNT], double *total);

#endif
