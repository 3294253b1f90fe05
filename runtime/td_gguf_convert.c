/* tandem convert: walks the opened model (so every source format, FP8 block scales included, arrives as
 * rows of floats) and declares one GGUF tensor per llama.cpp name, each produced row by row by a job
 * while the writer streams the file out. */
#include "td_gguf_convert_impl.h"

#include "td_alloc.h"
#include "td_chat_template.h"
#include "td_dequant.h"
#include "td_gguf_model.h"
#include "td_par.h"
#include "td_quantize.h"

#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const td_mode_names[TD_CONVERT_MODE_COUNT] = {"q8_0", "q4_k", "q4_k_m", "q6_k", "bf16", "q5_k"};

const char *td_convert_mode_name(td_convert_mode m)
{
    return (m >= 0 && m < TD_CONVERT_MODE_COUNT) ? td_mode_names[m] : "?";
}

bool td_convert_mode_from_name(const char *name, td_convert_mode *out)
{
    for (int i = 0; i < TD_CONVERT_MODE_COUNT; i++) {
        if (strcasecmp(name, td_mode_names[i]) == 0) {
            *out = (td_convert_mode)i;
            return true;
        }
    }
    return false;
}

/* ------------------------------------------------------------------ the recipe */

static bool td_more_bits(const char *name)
{
    return strcmp(name, "output.weight") == 0 || strstr(name, ".ffn_down") || strstr(name, ".attn_v_b.");
}

td_type td_convert_tensor_type(td_convert_mode mode, const char *name, int n_dims, int64_t cols)
{
    if (n_dims == 1 || strstr(name, ".ffn_gate_inp.")) return TD_TYPE_F32;
    static const td_type q4[] = {TD_TYPE_Q4_K, TD_TYPE_Q5_0, TD_TYPE_Q8_0, TD_TYPE_BF16};
    static const td_type q5[] = {TD_TYPE_Q5_K, TD_TYPE_Q5_0, TD_TYPE_Q8_0, TD_TYPE_BF16};
    static const td_type q6[] = {TD_TYPE_Q6_K, TD_TYPE_Q8_0, TD_TYPE_BF16};
    static const td_type q8[] = {TD_TYPE_Q8_0, TD_TYPE_BF16};
    static const td_type bf[] = {TD_TYPE_BF16};
    const td_type *chain;
    size_t n;
    switch (mode) {
    case TD_CONVERT_Q4_K: chain = q4, n = 4; break;
    case TD_CONVERT_Q4_K_M: td_more_bits(name) ? (chain = q6, n = 3) : (chain = q4, n = 4); break;
    case TD_CONVERT_Q5_K: chain = q5, n = 4; break;
    case TD_CONVERT_Q6_K: chain = q6, n = 3; break;
    case TD_CONVERT_BF16: chain = bf, n = 1; break;
    default: chain = q8, n = 2; break;
    }
    for (size_t i = 0; i < n; i++)
        if (td_type_row_ok(chain[i], cols)) return chain[i];
    return TD_TYPE_BF16;
}

uint32_t td_convert_file_type(td_convert_mode mode)
{
    /* llama.cpp's llama_ftype values, which it shows as the file's quantization */
    switch (mode) {
    case TD_CONVERT_Q8_0: return 7;
    case TD_CONVERT_Q4_K: return 14; /* Q4_K_S */
    case TD_CONVERT_Q4_K_M: return 15;
    case TD_CONVERT_Q5_K: return 16; /* Q5_K_S */
    case TD_CONVERT_Q6_K: return 18;
    default: return 32; /* BF16 */
    }
}

/* ------------------------------------------------------------------ jobs */

typedef enum td_job_kind {
    TD_JOB_ROWS = 0,    /* the rows of a matrix */
    TD_JOB_VECTOR = 1,  /* a float vector, one row */
    TD_JOB_EXPERTS = 2, /* one projection of every expert, stacked */
    TD_JOB_K_B = 3,     /* from kv_b: per head, W_UK transposed ([kv_lora] rows of [nope]) */
    TD_JOB_V_B = 4,     /* from kv_b: per head, the W_UV rows */
    TD_JOB_KIND_COUNT
} td_job_kind;

typedef struct td_conv td_conv;

typedef struct td_job {
    td_conv *c;
    td_job_kind kind;
    td_type out;
    int64_t cols;                  /* output row length */
    const td_matrix *mat;          /* ROWS, K_B, V_B */
    const td_ffn_weights *experts; /* EXPERTS */
    int proj;                      /* 0 gate, 1 up, 2 down */
    int64_t per_expert;            /* rows of one expert */
    const float *vec;              /* VECTOR */
    char name[64];
} td_job;

/* One converting thread's scratch. */
typedef struct td_conv_worker {
    float *row;  /* [max_cols] */
    float *head; /* K_B: W_UK of one head, [nope][kv_lora] */
    const td_job *head_job;
    int64_t head_of;
} td_conv_worker;

struct td_conv {
    const td_model *m;
    td_gguf_writer *w;
    td_convert_mode mode;
    int nth;            /* threads converting each chunk of rows */
    td_conv_worker *wk; /* [nth] */
    td_job *jobs;
    size_t n_jobs, cap_jobs;
};

static td_status td_emit(const td_job *j, const float *x, int64_t r, uint8_t *dst)
{
    for (int64_t i = 0; i < j->cols; i++)
        if (!isfinite(x[i]))
            return td_fail(TD_E_FORMAT, "row %lld holds a non-finite value (%g at column %lld); the source is damaged",
                           (long long)r, x[i], (long long)i);
    td_quantize_row(j->out)(x, dst, j->cols);
    return TD_OK;
}

/* One source row, copied as stored when the type already matches, else converted through floats. */
static td_status td_row_from(const td_job *j, td_conv_worker *w, const td_matrix *src, int64_t sr, int64_t r,
                             uint8_t *dst)
{
    if (src->type == j->out && !src->scale_inv) {
        memcpy(dst, src->data + (size_t)sr * src->row_bytes, src->row_bytes);
        return TD_OK;
    }
    td_matrix_dequant_row(src, sr, w->row);
    return td_emit(j, w->row, r, dst);
}

static td_status td_fill_k_b(const td_job *j, td_conv_worker *w, int64_t r, uint8_t *dst)
{
    const td_hparams *hp = &j->c->m->hp;
    int64_t R = hp->kv_lora_rank, dn = hp->qk_nope_head_dim, dv = hp->v_head_dim;
    int64_t h = r / R, i = r % R;
    if (w->head_job != j || w->head_of != h) { /* W_UK of head h: dn rows of kv_lora */
        for (int64_t k = 0; k < dn; k++) td_matrix_dequant_row(j->mat, h * (dn + dv) + k, w->head + k * R);
        w->head_job = j;
        w->head_of = h;
    }
    for (int64_t k = 0; k < dn; k++) w->row[k] = w->head[k * R + i];
    return td_emit(j, w->row, r, dst);
}

/* Rows [row0, row0 + nrows) of job j into dst, with worker w's scratch. */
static td_status td_job_rows(const td_job *j, td_conv_worker *w, int64_t row0, int64_t nrows, uint8_t *dst)
{
    const td_hparams *hp = &j->c->m->hp;
    size_t row_bytes = td_type_row_bytes(j->out, j->cols);
    for (int64_t k = 0; k < nrows; k++) {
        int64_t r = row0 + k;
        uint8_t *out = dst + (size_t)k * row_bytes;
        td_status st = TD_OK;
        switch (j->kind) {
        case TD_JOB_ROWS: st = td_row_from(j, w, j->mat, r, r, out); break;
        case TD_JOB_VECTOR: st = td_emit(j, j->vec, r, out); break;
        case TD_JOB_EXPERTS: {
            const td_ffn_weights *f = &j->experts[r / j->per_expert];
            const td_matrix *src = j->proj == 0 ? &f->gate : j->proj == 1 ? &f->up : &f->down;
            st = td_row_from(j, w, src, r % j->per_expert, r, out);
            break;
        }
        case TD_JOB_K_B: st = td_fill_k_b(j, w, r, out); break;
        case TD_JOB_V_B: {
            int64_t dn = hp->qk_nope_head_dim, dv = hp->v_head_dim;
            st = td_row_from(j, w, j->mat, r / dv * (dn + dv) + dn + r % dv, r, out);
            break;
        }
        default: st = td_fail(TD_E_ARG, "bad job"); break;
        }
        if (st != TD_OK) return st;
    }
    return TD_OK;
}

/* One chunk of rows being filled: each part takes a contiguous slice, with its worker's scratch. */
typedef struct td_fill_chunk {
    const td_job *j;
    int64_t row0, nrows;
    uint8_t *dst;
} td_fill_chunk;

static td_status td_fill_part(void *ctx, int part, int n_parts)
{
    const td_fill_chunk *c = ctx;
    size_t row_bytes = td_type_row_bytes(c->j->out, c->j->cols);
    int64_t a = c->nrows * part / n_parts, b = c->nrows * (part + 1) / n_parts;
    return td_job_rows(c->j, &c->j->c->wk[part], c->row0 + a, b - a, c->dst + (size_t)a * row_bytes);
}

/* A chunk of rows, split in contiguous parts across the converting threads (each row is quantized on its
 * own, so the bytes do not depend on the thread count). Small chunks stay on this thread. */
static td_status td_job_fill(void *ctx, int64_t row0, int64_t nrows, uint8_t *dst)
{
    const td_job *j = ctx;
    size_t row_bytes = td_type_row_bytes(j->out, j->cols);
    int nth = j->c->nth;
    if ((int64_t)nth > nrows) nth = (int)nrows;
    if ((uint64_t)nrows * row_bytes < (64u << 10)) nth = 1;
    td_fill_chunk chunk = {.j = j, .row0 = row0, .nrows = nrows, .dst = dst};
    return td_par_run(nth, td_fill_part, &chunk);
}

/* Declares a tensor under the GGUF name of `canonical`, shaped ne (ggml order), produced by the job. */
static td_status td_declare(td_conv *c, const char *canonical, td_job proto, int n_dims, int64_t ne0, int64_t ne1,
                            int64_t ne2)
{
    char name[64];
    int expert;
    if (!td_gguf_name_from_hf(canonical, name, sizeof name, &expert))
        return td_fail(TD_E_ARG, "no GGUF name for '%s'", canonical);
    TD_ASSERT(c->n_jobs < c->cap_jobs);
    td_job *j = &c->jobs[c->n_jobs++];
    *j = proto;
    j->c = c;
    j->cols = ne0;
    snprintf(j->name, sizeof j->name, "%s", name);
    j->out = td_convert_tensor_type(c->mode, name, n_dims, ne0);
    uint32_t ggml;
    if (!td_ggml_type_from_td(j->out, &ggml)) return td_fail(TD_E_ARG, "no ggml type for %s", name);
    int64_t ne[3] = {ne0, ne1, ne2};
    return td_gguf_add_tensor_fn(c->w, name, ggml, n_dims, ne, td_job_fill, j);
}

static td_status td_matrix_job(td_conv *c, const char *canonical, const td_matrix *mat)
{
    td_job p = {.kind = TD_JOB_ROWS, .mat = mat};
    return td_declare(c, canonical, p, 2, mat->cols, mat->rows, 1);
}

static td_status td_vector_job(td_conv *c, const char *canonical, const float *v, int64_t n)
{
    td_job p = {.kind = TD_JOB_VECTOR, .vec = v};
    return td_declare(c, canonical, p, 1, n, 1, 1);
}

/* ------------------------------------------------------------------ the model, tensor by tensor */

static td_status td_attn_jobs(td_conv *c, const char *p, const td_attn_weights *a)
{
    const td_hparams *hp = &c->m->hp;
    int64_t nh = hp->n_heads, R = hp->kv_lora_rank, dn = hp->qk_nope_head_dim, dv = hp->v_head_dim;
    char n[128];
#define NAME(suffix) (snprintf(n, sizeof n, "%s.%s", p, suffix), n)
    TD_TRY(td_vector_job(c, NAME("input_layernorm.weight"), a->norm, hp->hidden_size));
    if (hp->q_lora_rank) {
        TD_TRY(td_matrix_job(c, NAME("self_attn.q_a_proj.weight"), &a->q_a));
        TD_TRY(td_vector_job(c, NAME("self_attn.q_a_layernorm.weight"), a->q_a_norm, hp->q_lora_rank));
        TD_TRY(td_matrix_job(c, NAME("self_attn.q_b_proj.weight"), &a->q_b));
    } else {
        TD_TRY(td_matrix_job(c, NAME("self_attn.q_proj.weight"), &a->q));
    }
    TD_TRY(td_matrix_job(c, NAME("self_attn.kv_a_proj_with_mqa.weight"), &a->kv_a));
    TD_TRY(td_vector_job(c, NAME("self_attn.kv_a_layernorm.weight"), a->kv_a_norm, R));
    /* the MLA layout: attn_k_b {nope, kv_lora, heads}, attn_v_b {kv_lora, v, heads} */
    td_job kb = {.kind = a->split_kv_b ? TD_JOB_ROWS : TD_JOB_K_B, .mat = a->split_kv_b ? &a->k_b : &a->kv_b};
    td_job vb = {.kind = a->split_kv_b ? TD_JOB_ROWS : TD_JOB_V_B, .mat = a->split_kv_b ? &a->v_b : &a->kv_b};
    TD_TRY(td_declare(c, NAME("self_attn.k_b_proj.weight"), kb, 3, dn, R, nh));
    TD_TRY(td_declare(c, NAME("self_attn.v_b_proj.weight"), vb, 3, R, dv, nh));
    TD_TRY(td_matrix_job(c, NAME("self_attn.o_proj.weight"), &a->o));
#undef NAME
    return TD_OK;
}

static td_status td_ffn_jobs(td_conv *c, const char *prefix, const td_ffn_weights *f)
{
    char n[128];
    snprintf(n, sizeof n, "%s.gate_proj.weight", prefix);
    TD_TRY(td_matrix_job(c, n, &f->gate));
    snprintf(n, sizeof n, "%s.up_proj.weight", prefix);
    TD_TRY(td_matrix_job(c, n, &f->up));
    snprintf(n, sizeof n, "%s.down_proj.weight", prefix);
    return td_matrix_job(c, n, &f->down);
}

static td_status td_layer_jobs(td_conv *c, const td_layer_weights *l)
{
    const td_hparams *hp = &c->m->hp;
    char p[64], n[128];
    snprintf(p, sizeof p, "model.layers.%d", l->index);
    TD_TRY(td_attn_jobs(c, p, &l->attn));
    snprintf(n, sizeof n, "%s.post_attention_layernorm.weight", p);
    TD_TRY(td_vector_job(c, n, l->ffn_norm, hp->hidden_size));
    if (!l->is_moe) {
        snprintf(n, sizeof n, "%s.mlp", p);
        return td_ffn_jobs(c, n, &l->dense);
    }
    const td_moe_weights *moe = &l->moe;
    snprintf(n, sizeof n, "%s.mlp.gate.weight", p);
    TD_TRY(td_matrix_job(c, n, &moe->router));
    if (moe->bias) {
        snprintf(n, sizeof n, "%s.mlp.gate.e_score_correction_bias", p);
        TD_TRY(td_vector_job(c, n, moe->bias, hp->n_routed_experts));
    }
    for (int proj = 0; proj < 3; proj++) {
        static const char *const names[3] = {"gate", "up", "down"};
        const td_matrix *m0 = proj == 0 ? &moe->experts[0].gate : proj == 1 ? &moe->experts[0].up : &moe->experts[0].down;
        td_job e = {.kind = TD_JOB_EXPERTS, .experts = moe->experts, .proj = proj, .per_expert = m0->rows};
        snprintf(n, sizeof n, "%s.mlp.experts.0.%s_proj.weight", p, names[proj]);
        TD_TRY(td_declare(c, n, e, 3, m0->cols, m0->rows, hp->n_routed_experts));
    }
    if (moe->has_shared) {
        snprintf(n, sizeof n, "%s.mlp.shared_experts", p);
        TD_TRY(td_ffn_jobs(c, n, &moe->shared));
    }
    return TD_OK;
}

/* True when two matrices hold the same bytes (the MTP block's own copy of the embedding or head). */
static bool td_same_matrix(const td_matrix *a, const td_matrix *b)
{
    if (a->data == b->data) return true;
    if (a->type != b->type || a->rows != b->rows || a->cols != b->cols || a->scale_inv || b->scale_inv) return false;
    return memcmp(a->data, b->data, (size_t)a->rows * a->row_bytes) == 0;
}

static td_status td_mtp_jobs(td_conv *c)
{
    const td_model *m = c->m;
    const td_mtp_weights *t = m->mtp;
    int L = m->hp.n_layers;
    int64_t H = m->hp.hidden_size;
    char n[128];
    TD_TRY(td_layer_jobs(c, &t->layer));
    snprintf(n, sizeof n, "model.layers.%d.enorm.weight", L);
    TD_TRY(td_vector_job(c, n, t->enorm, H));
    snprintf(n, sizeof n, "model.layers.%d.hnorm.weight", L);
    TD_TRY(td_vector_job(c, n, t->hnorm, H));
    snprintf(n, sizeof n, "model.layers.%d.eh_proj.weight", L);
    TD_TRY(td_matrix_job(c, n, &t->eh_proj));
    snprintf(n, sizeof n, "model.layers.%d.shared_head.norm.weight", L);
    TD_TRY(td_vector_job(c, n, t->head_norm, H));
    /* the loader falls back to the main embedding and head: write the block's own only when they differ */
    if (!td_same_matrix(&t->embed, &m->embed)) {
        snprintf(n, sizeof n, "model.layers.%d.embed_tokens.weight", L);
        TD_TRY(td_matrix_job(c, n, &t->embed));
    }
    if (!td_same_matrix(&t->head, &m->head)) {
        snprintf(n, sizeof n, "model.layers.%d.shared_head.head.weight", L);
        TD_TRY(td_matrix_job(c, n, &t->head));
    }
    return TD_OK;
}

static td_status td_model_jobs(td_conv *c, bool keep_mtp)
{
    const td_model *m = c->m;
    TD_TRY(td_matrix_job(c, "model.embed_tokens.weight", &m->embed));
    TD_TRY(td_vector_job(c, "model.norm.weight", m->norm, m->hp.hidden_size));
    if (m->head.data != m->embed.data) TD_TRY(td_matrix_job(c, "lm_head.weight", &m->head));
    for (int l = 0; l < m->hp.n_layers; l++) TD_TRY(td_layer_jobs(c, &m->layers[l]));
    if (keep_mtp) TD_TRY(td_mtp_jobs(c));
    return TD_OK;
}

/* ------------------------------------------------------------------ metadata */

/* The source's own chat template is kept unless --template names one. */
static bool td_keep_source_template(const td_convert_params *p) { return p->chat_template == NULL; }

static td_status td_no_tokenizer(const char *from, const char *where)
{
    return td_fail(TD_E_NOT_FOUND,
                   "%s has no tokenizer (%s): llama.cpp and other tools refuse a GGUF without one ('key not found in "
                   "model: tokenizer.ggml.model'); give one with --tokenizer <tokenizer.json>, or --no-tokenizer "
                   "to write the file without it on purpose",
                   from, where);
}

static td_status td_put_tokenizer(td_conv *c, const char *from, const td_convert_params *p)
{
    const td_model *m = c->m;
    if (p->no_tokenizer) return TD_OK;
    if (m->gguf && !p->tokenizer) { /* GGUF -> GGUF: every tokenizer key as it was */
        if (!td_gguf_find_kv(m->gguf, "tokenizer.ggml.model")) return td_no_tokenizer(from, "no tokenizer.ggml.* keys");
        bool keep_template = td_keep_source_template(p);
        for (size_t i = 0; i < td_gguf_kv_count(m->gguf); i++) {
            const td_gguf_kv *kv = td_gguf_kv_at(m->gguf, i);
            if (strncmp(kv->key, "tokenizer.", 10) != 0) continue;
            if (!keep_template && strcmp(kv->key, "tokenizer.chat_template") == 0) continue;
            TD_TRY(td_gguf_set_value(c->w, kv->key, &kv->v));
        }
        return TD_OK;
    }
    char path[4200];
    if (p->tokenizer) {
        snprintf(path, sizeof path, "%s", p->tokenizer);
    } else {
        char copy[4096];
        snprintf(copy, sizeof copy, "%s", from);
        snprintf(path, sizeof path, "%s/tokenizer.json", td_path_is_dir(from) ? from : dirname(copy));
        if (!td_path_exists(path)) return td_no_tokenizer(from, "no tokenizer.json beside it");
    }
    td_status st = td_convert_tokenizer_json(c->w, path, &m->hp, td_keep_source_template(p));
    if (st != TD_OK) td_err_context("tokenizer");
    return st;
}

/* tokenizer.chat_template, unless the source's was kept: tandem's Jinja for the chosen format. */
static td_status td_put_chat_template(td_conv *c, const char *model_name, const td_convert_params *p)
{
    if (td_gguf_writer_has_key(c->w, "tokenizer.chat_template")) return TD_OK;
    td_template t;
    const char *why = "--template";
    if (p->chat_template) {
        if (!td_template_from_name(p->chat_template, &t) || !td_template_jinja(t))
            return td_fail(TD_E_ARG, "--template '%s': a GGUF's chat template is one of v3, r1, v3.1", p->chat_template);
    } else {
        t = td_template_detect(NULL, model_name, &why);
        if (!p->model.quiet)
            fprintf(stderr, "tandem convert: the source has no chat template; writing tandem's %s template (%s; "
                            "--template v3|r1|v3.1 picks another)\n",
                    td_template_name(t), strncmp(why, "the default", 11) == 0 ? "the default" : why);
    }
    return td_gguf_set_str(c->w, "tokenizer.chat_template", td_template_jinja(t));
}

static void td_model_name(const td_model *m, const char *from, char *out, size_t cap)
{
    if (m->gguf && td_gguf_find_kv(m->gguf, "general.name") &&
        td_gguf_get_str_copy(m->gguf, "general.name", out, cap) == TD_OK)
        return;
    /* an HF model is named after its directory */
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", from);
    char *dir = td_path_is_dir(from) ? copy : dirname(copy);
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') dir[--n] = '\0';
    snprintf(out, cap, "%s", basename(dir));
}

static td_status td_put_metadata(td_conv *c, const char *from, const td_convert_params *p, bool keep_mtp)
{
    char name[256];
    td_model_name(c->m, from, name, sizeof name);
    td_gguf_hparams_opts o = {.name = name, .mla = true, .nextn_layers = keep_mtp ? 1 : 0, .groups = true};
    TD_TRY(td_gguf_put_hparams(c->w, &c->m->hp, &o));
    TD_TRY(td_gguf_set_u32(c->w, "general.file_type", td_convert_file_type(p->mode)));
    if (p->mode != TD_CONVERT_BF16) TD_TRY(td_gguf_set_u32(c->w, "general.quantization_version", 2));
    TD_TRY(td_put_tokenizer(c, from, p));
    return td_put_chat_template(c, name, p);
}

/* ------------------------------------------------------------------ public */

static bool td_same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

static td_status td_convert_model(td_conv *c, const char *from, const char *to, const td_convert_params *p)
{
    const td_model *m = c->m;
    const td_hparams *hp = &m->hp;
    if (p->keep_mtp && !m->mtp)
        return td_fail(TD_E_NOT_FOUND, "%s has no MTP block to keep (attach one with --mtp-from <official checkpoint>)",
                       from);
    int64_t widest = m->max_cols > hp->qk_nope_head_dim ? m->max_cols : hp->qk_nope_head_dim;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    c->nth = p->threads > 0 ? p->threads : cores > 0 ? (int)cores : 1;
    if (c->nth > TD_CONVERT_MAX_THREADS) c->nth = TD_CONVERT_MAX_THREADS;
    c->wk = td_calloc((size_t)c->nth, sizeof *c->wk);
    if (!c->wk) return td_fail(TD_E_NOMEM, "out of memory for %d converting threads", c->nth);
    for (int i = 0; i < c->nth; i++) {
        c->wk[i].row = td_malloc((size_t)widest * sizeof *c->wk[i].row);
        c->wk[i].head = td_malloc((size_t)(hp->qk_nope_head_dim * hp->kv_lora_rank) * sizeof *c->wk[i].head);
        c->wk[i].head_of = -1;
        if (!c->wk[i].row || !c->wk[i].head) return td_fail(TD_E_NOMEM, "out of memory for %d converting threads", c->nth);
    }
    c->cap_jobs = 8 + (size_t)(hp->n_layers + 1) * 32;
    c->jobs = td_calloc(c->cap_jobs, sizeof *c->jobs);
    if (!c->jobs) return td_fail(TD_E_NOMEM, "out of memory");
    TD_TRY(td_gguf_writer_create(&c->w));
    TD_TRY(td_put_metadata(c, from, p, p->keep_mtp));
    TD_TRY(td_model_jobs(c, p->keep_mtp));
    td_gguf_write_params wp = {.parts = p->parts,
                               .progress = p->progress,
                               .remove_on_signal = p->remove_on_signal,
                               .fail_after_bytes = p->fail_after_bytes};
    return td_gguf_write(c->w, to, &wp);
}

td_status td_gguf_convert(const char *from, const char *to, const td_convert_params *p)
{
    if (p->mode < 0 || p->mode >= TD_CONVERT_MODE_COUNT) return td_fail(TD_E_ARG, "bad output type %d", (int)p->mode);
    if (p->no_tokenizer && p->tokenizer)
        return td_fail(TD_E_ARG, "--tokenizer and --no-tokenizer contradict each other: give one");
    if (td_same_file(from, to)) return td_fail(TD_E_ARG, "%s is the source itself; write elsewhere", to);
    td_model *m;
    TD_TRY(td_model_open(from, &p->model, &m));
    td_conv c = {.m = m, .mode = p->mode};
    td_status st = td_convert_model(&c, from, to, p);
    if (st != TD_OK) td_err_context("converting %s to %s", from, to);
    td_gguf_writer_free(c.w);
    for (int i = 0; c.wk && i < c.nth; i++) {
        td_free(c.wk[i].row);
        td_free(c.wk[i].head);
    }
    td_free(c.wk);
    td_free(c.jobs);
    td_model_close(m);
    return st;
}
