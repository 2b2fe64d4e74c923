/* Making a oneDNN convolution plan (core/dnnl_plan.h): for one shape, the
 * primitives for a full chunk of images and for the last, shorter one, the
 * reorders between the engine's CNHW and the primitive's blocked layout
 * (nChw16c), and the layout of a thread's buffer.
 *
 * The algorithm: Winograd (oneDNN's F(4x4, 3x3), "jit_wino_4x3") when 8 or
 * more channels are summed over (the forward's and the weight gradient's
 * input channels, the input gradient's output channels), as the engine's
 * own path does with F(2x2, 3x3); direct otherwise (the first layer, from
 * 1 or 3 channels; the last one's input gradient, to them). For the weight gradient Winograd took half the direct
 * kernel's time on every layer of the default shape but the first (oneDNN's
 * verbose timings, chunks of 16 images, one thread) and stays within the
 * gradient tests' tolerance. Where oneDNN has no Winograd for the shape,
 * direct; where it has neither, no plan (the caller's own path runs).
 *
 * Every convolution and image reorder is made for one thread (under a team
 * of one OpenMP thread): oneDNN fixes its blocking, and with it the order of
 * its sums, when the primitive is made, from the threads it may use. The
 * weights' reorders alone are made for the instance's threads
 * (make_weight_reorders). */
#include "core/dnnl_plan.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Input and output floats of one chunk of images, in the blocked layout. */
#define CHUNK_FLOATS ((size_t)1 << 22)
/* At most this many images a chunk: enough chunks for the threads to share
 * (a fixed number, not the thread count, so that results do not depend on it). */
#define CHUNK_IMAGES 16

/* Per kind, by role (T_IN0, T_IN1, T_W): the primitive's argument, the
 * query for its memory descriptor, and whether the engine's copy is written. */
static const int arg_of[3][T_COUNT] = {
    [SR_DNNL_FWD] = {DNNL_ARG_SRC, DNNL_ARG_DST, DNNL_ARG_WEIGHTS},
    [SR_DNNL_BWD_DATA] = {DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_SRC, DNNL_ARG_WEIGHTS},
    [SR_DNNL_BWD_WEIGHTS] = {DNNL_ARG_SRC, DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_WEIGHTS},
};
static const dnnl_query_t query_of[3][T_COUNT] = {
    [SR_DNNL_FWD] = {dnnl_query_src_md, dnnl_query_dst_md, dnnl_query_weights_md},
    [SR_DNNL_BWD_DATA] = {dnnl_query_diff_dst_md, dnnl_query_diff_src_md, dnnl_query_weights_md},
    [SR_DNNL_BWD_WEIGHTS] = {dnnl_query_src_md, dnnl_query_diff_dst_md, dnnl_query_diff_weights_md},
};
static const bool out_of[3][T_COUNT] = {
    [SR_DNNL_FWD] = {false, true, false},
    [SR_DNNL_BWD_DATA] = {false, true, false},
    [SR_DNNL_BWD_WEIGHTS] = {false, false, true},
};

/* What primitives are made with: scratchpads given by the caller (one per
 * thread), and, for the input gradient's reorder back, the sum post-op
 * (dx += the chunk's gradient). Made for one plan, destroyed after it. */
typedef struct {
    dnnl_engine_t engine;
    dnnl_primitive_attr_t attr, attr_sum;
} makers;

static size_t max_size(size_t a, size_t b) { return a > b ? a : b; }
static size_t round64(size_t bytes) { return (bytes + 63) / 64 * 64; }

/* The engine's CNHW as oneDNN's NCHW dims with strides: images of a chunk
 * are hw apart, channels n * hw (one channel: plain nchw). */
static void cnhw_md(dnnl_memory_desc_t *md, int images, int c, int n, int h, int w)
{
    const dnnl_dims_t dims = {images, c, h, w};
    const dnnl_dim_t hw = (dnnl_dim_t)h * w;
    const dnnl_dims_t strides = {hw, c == 1 ? hw : (dnnl_dim_t)n * hw, w, 1};
    SR_DNNL(dnnl_memory_desc_init_by_strides(md, 4, dims, dnnl_f32, strides));
}

/* The reorder between a tensor's two layouts into t->reorder (NULL when they
 * are the same and nothing is added), its scratchpad's descriptor in t->pad. */
static void make_reorder(const makers *mk, sr_dnnl_tensor *t, bool add)
{
    memset(&t->pad, 0, sizeof t->pad);
    t->reorder = NULL;
    if (!add && dnnl_memory_desc_equal(&t->user, &t->blk)) return;
    const dnnl_memory_desc_t *from = t->out ? &t->blk : &t->user, *to = t->out ? &t->user : &t->blk;
    dnnl_primitive_desc_t pd;
    SR_DNNL(dnnl_reorder_primitive_desc_create(&pd, from, mk->engine, to, mk->engine, add ? mk->attr_sum : mk->attr));
    t->pad = *dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    SR_DNNL(dnnl_primitive_create(&t->reorder, pd));
    SR_DNNL(dnnl_primitive_desc_destroy(pd));
}

/* A primitive descriptor of the plan's kind for algorithm alg (the caller
 * destroys it); NULL when oneDNN has no implementation. The backward ones
 * take the forward's as a hint. */
static dnnl_primitive_desc_t conv_pd(const makers *mk, sr_dnnl_kind kind, dnnl_alg_kind_t alg,
                                     const dnnl_memory_desc_t *src, const dnnl_memory_desc_t *wts,
                                     const dnnl_memory_desc_t *dst)
{
    const dnnl_dims_t one = {1, 1}, pad = {1, 1};
    dnnl_convolution_desc_t cd;
    dnnl_primitive_desc_t fwd, pd = NULL;
    SR_DNNL(dnnl_convolution_forward_desc_init(&cd, kind == SR_DNNL_FWD ? dnnl_forward_inference : dnnl_forward_training,
                                               alg, src, wts, NULL, dst, one, pad, pad));
    dnnl_status_t st = dnnl_primitive_desc_create(&fwd, &cd, mk->attr, mk->engine, NULL);
    if (st == dnnl_unimplemented) return NULL;
    SR_CHECK(st == dnnl_success, "oneDNN: making a %s 3x3 convolution failed (%s)", dnnl_alg_kind2str(alg),
             dnnl_status2str(st));
    if (kind == SR_DNNL_FWD) return fwd;
    if (kind == SR_DNNL_BWD_DATA)
        SR_DNNL(dnnl_convolution_backward_data_desc_init(&cd, alg, src, wts, dst, one, pad, pad));
    else
        SR_DNNL(dnnl_convolution_backward_weights_desc_init(&cd, alg, src, wts, NULL, dst, one, pad, pad));
    st = dnnl_primitive_desc_create(&pd, &cd, mk->attr, mk->engine, fwd);
    SR_DNNL(dnnl_primitive_desc_destroy(fwd));
    if (st == dnnl_unimplemented) return NULL;
    SR_CHECK(st == dnnl_success, "oneDNN: making the backward %s of a %s 3x3 convolution failed (%s)",
             kind == SR_DNNL_BWD_DATA ? "data" : "weights", dnnl_alg_kind2str(alg), dnnl_status2str(st));
    return pd;
}

/* The forward's and input gradient's weights are reordered apart, once for
 * all chunks (core/backend_dnnl.c keeps them): by a primitive made for every
 * thread (make_weight_reorders). */
static bool weights_apart(const sr_dnnl_plan *p, int r) { return r == T_W && p->kind != SR_DNNL_BWD_WEIGHTS; }

/* Slot s of the plan for chunks of `images` images; false when oneDNN has
 * no primitive for it. */
static bool make_slot(sr_dnnl_plan *p, const makers *mk, int s, int images)
{
    sr_dnnl_slot *sl = &p->slot[s];
    const dnnl_dims_t sd = {images, p->cin, p->h, p->w}, dd = {images, p->cout, p->h, p->w},
                      wd = {p->cout, p->cin, 3, 3};
    dnnl_memory_desc_t src, dst, wts;
    SR_DNNL(dnnl_memory_desc_init_by_tag(&src, 4, sd, dnnl_f32, dnnl_format_tag_any));
    SR_DNNL(dnnl_memory_desc_init_by_tag(&dst, 4, dd, dnnl_f32, dnnl_format_tag_any));
    SR_DNNL(dnnl_memory_desc_init_by_tag(&wts, 4, wd, dnnl_f32, dnnl_format_tag_any));
    const int summed = p->kind == SR_DNNL_BWD_DATA ? p->cout : p->cin;
    const dnnl_alg_kind_t algs[2] = {dnnl_convolution_winograd, dnnl_convolution_direct};
    dnnl_primitive_desc_t pd = NULL;
    for (int a = summed >= 8 ? 0 : 1; a < 2 && !pd; a++) pd = conv_pd(mk, p->kind, algs[a], &src, &wts, &dst);
    if (!pd) return false;
    if (s == 0) {
        const char *impl;
        SR_DNNL(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl));
        snprintf(p->impl, sizeof p->impl, "%s", impl);
    }
    sl->images = images;
    sl->pad = *dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    const int channels[2] = {p->kind == SR_DNNL_BWD_DATA ? p->cout : p->cin,
                             p->kind == SR_DNNL_BWD_DATA ? p->cin : p->cout};
    for (int r = 0; r < T_COUNT; r++) {
        sr_dnnl_tensor *t = &sl->t[r];
        t->arg = arg_of[p->kind][r];
        t->out = out_of[p->kind][r];
        t->blk = *dnnl_primitive_desc_query_md(pd, query_of[p->kind][r], 0);
        if (r == T_W)
            SR_DNNL(dnnl_memory_desc_init_by_tag(&t->user, 4, wd, dnnl_f32, dnnl_oihw));
        else
            cnhw_md(&t->user, images, channels[r], p->n, p->h, p->w);
        if (!weights_apart(p, r)) make_reorder(mk, t, p->kind == SR_DNNL_BWD_DATA && r == T_IN1);
    }
    SR_DNNL(dnnl_primitive_create(&sl->conv, pd));
    SR_DNNL(dnnl_primitive_desc_destroy(pd));
    return true;
}

static void destroy_slot(sr_dnnl_slot *sl)
{
    if (sl->conv) dnnl_primitive_destroy(sl->conv);
    for (int r = 0; r < T_COUNT; r++)
        if (sl->t[r].reorder) dnnl_primitive_destroy(sl->t[r].reorder);
    memset(sl, 0, sizeof *sl);
}

/* Where each piece lies in a thread's buffer: the most either slot needs. */
static void lay_out(sr_dnnl_plan *p)
{
    size_t at = 0, pad = 0;
    for (int r = 0; r < T_COUNT; r++) {
        size_t bytes = 0;
        for (int s = 0; s < 2; s++) {
            const sr_dnnl_slot *sl = &p->slot[s];
            if (!sl->conv) continue;
            const size_t blk = sl->t[r].reorder ? dnnl_memory_desc_get_size(&sl->t[r].blk) : 0;
            if (!weights_apart(p, r)) bytes = max_size(bytes, blk);
            pad = max_size(pad, dnnl_memory_desc_get_size(&sl->t[r].pad));
            pad = max_size(pad, dnnl_memory_desc_get_size(&sl->pad));
        }
        p->at[r] = at;
        at += round64(bytes);
    }
    p->at_partial = at;
    if (p->kind == SR_DNNL_BWD_WEIGHTS) at += round64((size_t)p->cout * p->cin * 9 * sizeof(float));
    p->at_pad = at;
    p->bytes = at + round64(pad);
}

static dnnl_memory_t memory(const dnnl_memory_desc_t *md, dnnl_engine_t engine)
{
    dnnl_memory_t m;
    SR_DNNL(dnnl_memory_create(&m, md, engine, DNNL_MEMORY_NONE));
    return m;
}

static void make_mems(sr_dnnl_plan *p, dnnl_engine_t engine, int threads)
{
    p->threads = threads;
    p->mems = SR_CALLOC((size_t)threads * 2, sizeof *p->mems, "oneDNN memory objects");
    for (int t = 0; t < threads; t++)
        for (int s = 0; s < 2; s++) {
            const sr_dnnl_slot *sl = &p->slot[s];
            sr_dnnl_mems *m = &p->mems[t * 2 + s];
            if (!sl->conv) continue;
            m->pad = memory(&sl->pad, engine);
            for (int r = 0; r < T_COUNT; r++) {
                m->user[r] = memory(&sl->t[r].user, engine);
                m->blk[r] = sl->t[r].reorder ? memory(&sl->t[r].blk, engine) : m->user[r];
                m->rpad[r] = memory(&sl->t[r].pad, engine);
            }
        }
}

static void makers_init(makers *mk, dnnl_engine_t engine)
{
    mk->engine = engine;
    SR_DNNL(dnnl_primitive_attr_create(&mk->attr));
    SR_DNNL(dnnl_primitive_attr_set_scratchpad_mode(mk->attr, dnnl_scratchpad_mode_user));
    SR_DNNL(dnnl_primitive_attr_create(&mk->attr_sum));
    SR_DNNL(dnnl_primitive_attr_set_scratchpad_mode(mk->attr_sum, dnnl_scratchpad_mode_user));
    dnnl_post_ops_t ops;
    SR_DNNL(dnnl_post_ops_create(&ops));
    SR_DNNL(dnnl_post_ops_append_sum(ops, 1.0f));
    SR_DNNL(dnnl_primitive_attr_set_post_ops(mk->attr_sum, ops));
    SR_DNNL(dnnl_post_ops_destroy(ops));
}

static void makers_destroy(makers *mk)
{
    SR_DNNL(dnnl_primitive_attr_destroy(mk->attr));
    SR_DNNL(dnnl_primitive_attr_destroy(mk->attr_sum));
}

static void make(sr_dnnl_plan *p, dnnl_engine_t engine)
{
    makers mk;
    makers_init(&mk, engine);
    /* input and output of one image, channels padded to oneDNN's blocks of 16 */
    const size_t per_image = (size_t)((p->cin + 15) / 16 * 16 + (p->cout + 15) / 16 * 16) * p->h * p->w;
    size_t fit = CHUNK_FLOATS / per_image;
    fit = fit < 1 ? 1 : fit > CHUNK_IMAGES ? CHUNK_IMAGES : fit;
    p->chunk = fit < (size_t)p->n ? (int)fit : p->n;
    p->last = p->n % p->chunk;
    p->ok = make_slot(p, &mk, 0, p->chunk) && (!p->last || make_slot(p, &mk, 1, p->last));
    if (!p->ok)
        for (int s = 0; s < 2; s++) destroy_slot(&p->slot[s]);
    makers_destroy(&mk);
}

/* The weights' reorders, made for `threads` threads. oneDNN's Winograd
 * weight transform (wino_reorder) shares its input channels and output
 * blocks among the threads, each value made alone, so its bits do not
 * depend on them; on one thread it took a third of a training step. */
static void make_weight_reorders(sr_dnnl_plan *p, dnnl_engine_t engine, int threads)
{
    makers mk;
    makers_init(&mk, engine);
    const int before = omp_get_max_threads();
    omp_set_num_threads(threads);
    for (int s = 0; s < 2; s++)
        if (p->slot[s].conv && weights_apart(p, T_W)) make_reorder(&mk, &p->slot[s].t[T_W], false);
    omp_set_num_threads(before);
    makers_destroy(&mk);
}

void sr_dnnl_plan_make(sr_dnnl_plan *p, dnnl_engine_t engine, int threads)
{
    /* a team of one, whose thread may use one: what oneDNN plans for */
#pragma omp parallel num_threads(1)
    {
        omp_set_num_threads(1);
        make(p, engine);
    }
    if (!p->ok) return;
    make_weight_reorders(p, engine, threads);
    lay_out(p);
    make_mems(p, engine, threads);
}

void sr_dnnl_plan_destroy(sr_dnnl_plan *p)
{
    for (int m = 0; p->mems && m < 2 * p->threads; m++) {
        sr_dnnl_mems *c = &p->mems[m];
        for (int r = 0; r < T_COUNT; r++) {
            if (c->blk[r] && c->blk[r] != c->user[r]) dnnl_memory_destroy(c->blk[r]);
            if (c->user[r]) dnnl_memory_destroy(c->user[r]);
            if (c->rpad[r]) dnnl_memory_destroy(c->rpad[r]);
        }
        if (c->pad) dnnl_memory_destroy(c->pad);
    }
    free(p->mems);
    for (int s = 0; s < 2; s++) destroy_slot(&p->slot[s]);
    p->mems = NULL;
}
