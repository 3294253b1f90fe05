/* tandem synth: declares every tensor of the model a config describes, each produced row by row by
 * threads that draw the row's values and quantize them while the GGUF writer streams the file out (to
 * disk, or into a memfd for td_synth_open). */
#include "td_synth.h"

#include "td_alloc.h"
#include "td_gguf_model.h"
#include "td_par.h"
#include "td_quantize.h"
#include "td_synth_impl.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define TD_SYN_MAX_THREADS TD_PAR_MAX

typedef enum td_syn_init {
    TD_SYN_WEIGHT = 0, /* N(0, std) */
    TD_SYN_NORM = 1,   /* 1 + N(0, std) */
    TD_SYN_EMBED = 2,  /* N(0, 1): see td_synth.h */
    TD_SYN_INIT_COUNT
} td_syn_init;

typedef struct td_syn td_syn;

typedef struct td_syn_tensor {
    td_syn *s;
    char name[64];  /* GGUF name */
    td_type type;
    int64_t cols;   /* ne[0] */
    uint64_t key;   /* the seed mixed with the name: row r's stream starts from key and r */
    td_syn_init init;
} td_syn_tensor;

struct td_syn {
    const td_synth_params *p;
    td_hparams hp;
    float std;
    int nth;
    float **rows;        /* [nth][widest row]: each thread's floats before quantizing */
    td_syn_tensor *t;
    size_t n_t, cap_t;
    td_gguf_writer *w;
};

/* ------------------------------------------------------------------ values */

static uint64_t td_syn_mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t td_syn_name_key(uint64_t seed, const char *name)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (const char *c = name; *c; c++) h = (h ^ (uint8_t)*c) * 0x100000001b3ull;
    return td_syn_mix(seed ^ td_syn_mix(h));
}

/* Row r: cols values, each the sum of four 16-bit uniforms centred and scaled to unit variance
 * ((sum - 2*65535) has variance 4 * 65536^2 / 12), times std, plus 1 for norms. */
static void td_syn_row(const td_syn_tensor *t, int64_t r, float *x)
{
    const float unit = 1.7320508f / 65536.0f; /* sqrt(3) / 2^16 */
    float scale = (t->init == TD_SYN_EMBED ? 1.0f : t->s->std) * unit, base = t->init == TD_SYN_NORM ? 1.0f : 0.0f;
    uint64_t z = td_syn_mix(t->key + 0x9e3779b97f4a7c15ull * (uint64_t)(r + 1));
    for (int64_t i = 0; i < t->cols; i++) {
        uint64_t b = td_syn_mix(z + (uint64_t)i * 0xd1342543de82ef95ull);
        int32_t sum = (int32_t)(b & 0xffff) + (int32_t)(b >> 16 & 0xffff) + (int32_t)(b >> 32 & 0xffff) + (int32_t)(b >> 48);
        x[i] = base + scale * (float)(sum - 131070);
    }
}

/* ------------------------------------------------------------------ producing rows */

/* One chunk of rows being filled: each part takes a contiguous slice, with its thread's row of floats. */
typedef struct td_syn_chunk {
    const td_syn_tensor *t;
    int64_t row0, nrows;
    uint8_t *dst;
} td_syn_chunk;

static td_status td_syn_part(void *ctx, int part, int n_parts)
{
    const td_syn_chunk *c = ctx;
    const td_syn_tensor *t = c->t;
    size_t rb = td_type_row_bytes(t->type, t->cols);
    td_quantize_fn q = td_quantize_row(t->type);
    float *row = t->s->rows[part];
    for (int64_t r = c->nrows * part / n_parts; r < c->nrows * (part + 1) / n_parts; r++) {
        td_syn_row(t, c->row0 + r, row);
        q(row, c->dst + (size_t)r * rb, t->cols);
    }
    return TD_OK;
}

/* A chunk of rows over the threads (rows are independent, so the bytes do not depend on the count).
 * Small chunks stay on this thread. */
static td_status td_syn_fill(void *ctx, int64_t row0, int64_t nrows, uint8_t *dst)
{
    const td_syn_tensor *t = ctx;
    int nth = (int64_t)t->s->nth > nrows ? (int)nrows : t->s->nth;
    if ((uint64_t)nrows * td_type_row_bytes(t->type, t->cols) < (64u << 10)) nth = 1;
    td_syn_chunk chunk = {.t = t, .row0 = row0, .nrows = nrows, .dst = dst};
    return td_par_run(nth, td_syn_part, &chunk);
}

/* ------------------------------------------------------------------ the tensors */

/* Declares the GGUF tensor of `canonical` (an HF-style name), shaped ne (ggml order). */
static td_status td_syn_add(td_syn *s, const char *canonical, td_syn_init init, int n_dims, int64_t ne0, int64_t ne1,
                            int64_t ne2)
{
    char name[64];
    int expert;
    if (!td_gguf_name_from_hf(canonical, name, sizeof name, &expert))
        return td_fail(TD_E_ARG, "synth: no GGUF name for '%s'", canonical);
    TD_ASSERT(s->n_t < s->cap_t); /* sized by td_syn_prepare: the writer keeps pointers into the array */
    td_syn_tensor *t = &s->t[s->n_t++];
    *t = (td_syn_tensor){.s = s, .cols = ne0, .key = td_syn_name_key(s->p->seed, name), .init = init};
    snprintf(t->name, sizeof t->name, "%s", name);
    t->type = td_convert_tensor_type(s->p->type, name, n_dims, ne0);
    uint32_t ggml;
    if (!td_ggml_type_from_td(t->type, &ggml) || !td_quantize_row(t->type))
        return td_fail(TD_E_ARG, "synth: no way to write %s as %s", name, td_type_name(t->type));
    int64_t ne[3] = {ne0, ne1, ne2};
    return td_gguf_add_tensor_fn(s->w, name, ggml, n_dims, ne, td_syn_fill, t);
}

static td_status td_syn_matrix(td_syn *s, const char *canonical, int64_t rows, int64_t cols)
{
    return td_syn_add(s, canonical, TD_SYN_WEIGHT, 2, cols, rows, 1);
}

static td_status td_syn_norm(td_syn *s, const char *canonical, int64_t n)
{
    return td_syn_add(s, canonical, TD_SYN_NORM, 1, n, 1, 1);
}

static td_status td_syn_attn(td_syn *s, const char *p)
{
    const td_hparams *hp = &s->hp;
    int64_t H = hp->hidden_size, nh = hp->n_heads, R = hp->kv_lora_rank, dn = hp->qk_nope_head_dim,
            dr = hp->qk_rope_head_dim, dv = hp->v_head_dim;
    char n[128];
#define NAME(suffix) (snprintf(n, sizeof n, "%s.%s", p, suffix), n)
    TD_TRY(td_syn_norm(s, NAME("input_layernorm.weight"), H));
    if (hp->q_lora_rank) {
        TD_TRY(td_syn_matrix(s, NAME("self_attn.q_a_proj.weight"), hp->q_lora_rank, H));
        TD_TRY(td_syn_norm(s, NAME("self_attn.q_a_layernorm.weight"), hp->q_lora_rank));
        TD_TRY(td_syn_matrix(s, NAME("self_attn.q_b_proj.weight"), nh * (dn + dr), hp->q_lora_rank));
    } else {
        TD_TRY(td_syn_matrix(s, NAME("self_attn.q_proj.weight"), nh * (dn + dr), H));
    }
    TD_TRY(td_syn_matrix(s, NAME("self_attn.kv_a_proj_with_mqa.weight"), R + dr, H));
    TD_TRY(td_syn_norm(s, NAME("self_attn.kv_a_layernorm.weight"), R));
    /* the MLA layout: attn_k_b {nope, kv_lora, heads}, attn_v_b {kv_lora, v, heads} */
    TD_TRY(td_syn_add(s, NAME("self_attn.k_b_proj.weight"), TD_SYN_WEIGHT, 3, dn, R, nh));
    TD_TRY(td_syn_add(s, NAME("self_attn.v_b_proj.weight"), TD_SYN_WEIGHT, 3, R, dv, nh));
    TD_TRY(td_syn_matrix(s, NAME("self_attn.o_proj.weight"), H, nh * dv));
#undef NAME
    return TD_OK;
}

static td_status td_syn_ffn(td_syn *s, const char *prefix, int64_t width)
{
    int64_t H = s->hp.hidden_size;
    char n[128];
    snprintf(n, sizeof n, "%s.gate_proj.weight", prefix);
    TD_TRY(td_syn_matrix(s, n, width, H));
    snprintf(n, sizeof n, "%s.up_proj.weight", prefix);
    TD_TRY(td_syn_matrix(s, n, width, H));
    snprintf(n, sizeof n, "%s.down_proj.weight", prefix);
    return td_syn_matrix(s, n, H, width);
}

static td_status td_syn_layer(td_syn *s, int l)
{
    const td_hparams *hp = &s->hp;
    int64_t H = hp->hidden_size, E = hp->n_routed_experts, W = hp->moe_intermediate_size;
    char p[64], n[128];
    snprintf(p, sizeof p, "model.layers.%d", l);
    TD_TRY(td_syn_attn(s, p));
    snprintf(n, sizeof n, "%s.post_attention_layernorm.weight", p);
    TD_TRY(td_syn_norm(s, n, H));
    if (!td_hparams_layer_is_moe(hp, l)) {
        snprintf(n, sizeof n, "%s.mlp", p);
        return td_syn_ffn(s, n, hp->intermediate_size);
    }
    snprintf(n, sizeof n, "%s.mlp.gate.weight", p);
    TD_TRY(td_syn_matrix(s, n, E, H));
    if (hp->topk_method == TD_TOPK_NOAUX_TC) {
        snprintf(n, sizeof n, "%s.mlp.gate.e_score_correction_bias", p);
        TD_TRY(td_syn_add(s, n, TD_SYN_WEIGHT, 1, E, 1, 1));
    }
    static const char *const proj[3] = {"gate", "up", "down"};
    for (int k = 0; k < 3; k++) {
        snprintf(n, sizeof n, "%s.mlp.experts.0.%s_proj.weight", p, proj[k]);
        TD_TRY(td_syn_add(s, n, TD_SYN_WEIGHT, 3, k < 2 ? H : W, k < 2 ? W : H, E));
    }
    if (hp->n_shared_experts > 0) {
        snprintf(n, sizeof n, "%s.mlp.shared_experts", p);
        TD_TRY(td_syn_ffn(s, n, hp->n_shared_experts * W));
    }
    return TD_OK;
}

static td_status td_syn_tensors(td_syn *s)
{
    const td_hparams *hp = &s->hp;
    int64_t H = hp->hidden_size, V = hp->vocab_size;
    int L = hp->n_layers;
    TD_TRY(td_syn_add(s, "model.embed_tokens.weight", TD_SYN_EMBED, 2, H, V, 1));
    TD_TRY(td_syn_norm(s, "model.norm.weight", H));
    if (!hp->tie_word_embeddings) TD_TRY(td_syn_matrix(s, "lm_head.weight", V, H));
    for (int l = 0; l < L; l++) TD_TRY(td_syn_layer(s, l));
    if (hp->n_nextn_layers > 0) { /* the MTP block: a decoder layer plus its projection and norms */
        char n[128];
        TD_TRY(td_syn_layer(s, L));
        snprintf(n, sizeof n, "model.layers.%d.enorm.weight", L);
        TD_TRY(td_syn_norm(s, n, H));
        snprintf(n, sizeof n, "model.layers.%d.hnorm.weight", L);
        TD_TRY(td_syn_norm(s, n, H));
        snprintf(n, sizeof n, "model.layers.%d.eh_proj.weight", L);
        TD_TRY(td_syn_matrix(s, n, H, 2 * H));
        snprintf(n, sizeof n, "model.layers.%d.shared_head.norm.weight", L);
        TD_TRY(td_syn_norm(s, n, H));
    }
    return TD_OK;
}

/* ------------------------------------------------------------------ hyperparameters and metadata */

static td_status td_syn_init_range(const char *config, double *std)
{
    char *text;
    uint64_t len;
    TD_TRY(td_read_text_file(config, 16u << 20, &text, &len));
    cJSON *root = cJSON_ParseWithLength(text, (size_t)len);
    td_free(text);
    if (!root) return td_fail(TD_E_FORMAT, "%s: not valid JSON", config);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "initializer_range");
    *std = cJSON_IsNumber(v) ? v->valuedouble : 0.02; /* transformers' default */
    cJSON_Delete(root);
    if (!(*std > 0 && *std < 10))
        return td_fail(TD_E_FORMAT, "%s: initializer_range %g is not a usable std (0 < std < 10)", config, *std);
    return TD_OK;
}

td_status td_synth_hparams(const td_synth_params *p, td_hparams *hp, double *std)
{
    if (!p->config) return td_fail(TD_E_ARG, "synth: no config given");
    if ((unsigned)p->type >= TD_CONVERT_MODE_COUNT) return td_fail(TD_E_ARG, "synth: bad weight type");
    TD_TRY(td_hparams_load(p->config, hp));
    if (p->layers < 0 || p->layers > hp->n_layers)
        return td_fail(TD_E_ARG, "synth: --layers %d is out of range for %s (1..%d, its num_hidden_layers)", p->layers,
                       p->config, hp->n_layers);
    if (p->layers > 0) {
        hp->n_layers = p->layers;
        if (hp->first_k_dense_replace > p->layers) hp->first_k_dense_replace = p->layers;
    }
    if (p->keep_mtp && hp->n_nextn_layers < 1)
        return td_fail(TD_E_NOT_FOUND, "synth: %s has no MTP block (num_nextn_predict_layers is 0); drop --keep-mtp",
                       p->config);
    hp->n_nextn_layers = p->keep_mtp ? 1 : 0;
    hp->quant = (td_quant_config){0}; /* written as GGUF types, not FP8 blocks */
    if (p->init_std > 0) *std = p->init_std;
    else TD_TRY(td_syn_init_range(p->config, std));
    return td_hparams_validate(hp, p->config);
}

static td_status td_syn_metadata(td_syn *s)
{
    const td_synth_params *p = s->p;
    char copy[4096], name[256];
    snprintf(copy, sizeof copy, "%s", p->config);
    snprintf(name, sizeof name, "synthetic %s, %d layers, %s, seed %llu", s->hp.model_type, s->hp.n_layers,
             td_convert_mode_name(p->type), (unsigned long long)p->seed);
    td_gguf_hparams_opts o = {.name = name, .mla = true, .nextn_layers = s->hp.n_nextn_layers, .groups = true};
    TD_TRY(td_gguf_put_hparams(s->w, &s->hp, &o));
    TD_TRY(td_gguf_set_u32(s->w, "general.file_type", td_convert_file_type(p->type)));
    if (p->type != TD_CONVERT_BF16) TD_TRY(td_gguf_set_u32(s->w, "general.quantization_version", 2));
    TD_TRY(td_gguf_set_str(s->w, "tandem.synth.config", basename(copy)));
    TD_TRY(td_gguf_set_u64(s->w, "tandem.synth.seed", p->seed));
    TD_TRY(td_gguf_set_f32(s->w, "tandem.synth.init_std", s->std));
    return td_synth_put_tokenizer(s->w, &s->hp, p->tokenizer);
}

/* ------------------------------------------------------------------ building */

static void td_syn_free(td_syn *s)
{
    td_gguf_writer_free(s->w);
    for (int i = 0; s->rows && i < s->nth; i++) td_free(s->rows[i]);
    td_free(s->rows);
    td_free(s->t);
}

/* Everything but the data: hparams, the writer with its metadata and tensors, the threads' scratch. */
static td_status td_syn_prepare(td_syn *s, const td_synth_params *p)
{
    *s = (td_syn){.p = p};
    double std;
    TD_TRY(td_synth_hparams(p, &s->hp, &std));
    s->std = (float)std;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    s->nth = p->threads > 0 ? p->threads : cores > 0 ? (int)cores : 1;
    if (s->nth > TD_SYN_MAX_THREADS) s->nth = TD_SYN_MAX_THREADS;
    s->cap_t = 8 + (size_t)(s->hp.n_layers + 1) * 32; /* a layer has at most 20 tensors, MTP adds 4 */
    s->t = td_calloc(s->cap_t, sizeof *s->t);
    if (!s->t) return td_fail(TD_E_NOMEM, "out of memory");
    TD_TRY(td_gguf_writer_create(&s->w));
    TD_TRY(td_syn_metadata(s));
    TD_TRY(td_syn_tensors(s));
    int64_t widest = 0;
    for (size_t i = 0; i < s->n_t; i++) widest = s->t[i].cols > widest ? s->t[i].cols : widest;
    s->rows = td_calloc((size_t)s->nth, sizeof *s->rows);
    if (!s->rows) return td_fail(TD_E_NOMEM, "out of memory");
    for (int i = 0; i < s->nth; i++)
        if (!(s->rows[i] = td_malloc((size_t)widest * sizeof(float))))
            return td_fail(TD_E_NOMEM, "out of memory for %d threads' rows", s->nth);
    return TD_OK;
}

td_status td_synth_size(const td_synth_params *p, uint64_t *bytes)
{
    td_syn s;
    td_status st = td_syn_prepare(&s, p);
    if (st == TD_OK) *bytes = td_gguf_writer_data_bytes(s.w);
    td_syn_free(&s);
    return st;
}

td_status td_synth_write(const td_synth_params *p, const char *to)
{
    td_syn s;
    td_status st = td_syn_prepare(&s, p);
    if (st == TD_OK) {
        td_gguf_write_params wp = {.parts = p->parts, .progress = p->progress};
        st = td_gguf_write(s.w, to, &wp);
    }
    if (st != TD_OK) td_err_context("synth %s -> %s", p->config, to);
    td_syn_free(&s);
    return st;
}

td_status td_synth_open(const td_synth_params *p, const td_model_params *mp, td_model **out)
{
    *out = NULL;
    td_syn s;
    td_status st = td_syn_prepare(&s, p);
    int fd = -1;
    if (st == TD_OK && (fd = memfd_create("tandem-synth", MFD_CLOEXEC)) < 0)
        st = td_fail(TD_E_IO, "synth: cannot create an anonymous file (memfd_create): %s", strerror(errno));
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    if (st == TD_OK) {
        td_gguf_write_params wp = {.fd = fd, .progress = p->progress};
        st = td_gguf_write(s.w, path, &wp);
    }
    td_syn_free(&s);
    if (st == TD_OK) st = td_model_open(path, mp, out); /* maps the memfd; the mapping keeps it alive */
    if (fd >= 0) close(fd);
    if (st != TD_OK) td_err_context("synth %s in memory", p->config);
    return st;
}
