#include "nn/unet.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/rng.h"
#include "nn/layers.h"

/* Unfolding scratch per convolution: enough images at a time that every GEMM
 * is large, few enough that the scratch stays near the caches' reach. */
#define SR_COL_BUDGET_FLOATS ((size_t)1 << 22)

/* ---- plan ---------------------------------------------------------------- */

typedef struct {
    sr_unet *net;
    size_t offset;
} planner;

static int add_param(planner *pl, bool trainable, int ndim, const int *dims, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int add_param(planner *pl, bool trainable, int ndim, const int *dims, const char *fmt, ...)
{
    sr_unet *net = pl->net;
    sr_param *p = &net->params[net->nparams];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->name, sizeof p->name, fmt, ap);
    va_end(ap);
    p->ndim = ndim;
    p->count = 1;
    for (int d = 0; d < ndim; d++) {
        p->dims[d] = dims[d];
        p->count *= (size_t)dims[d];
    }
    p->offset = pl->offset;
    p->trainable = trainable;
    pl->offset += sr_arena_floats_padded(p->count);
    if (trainable) net->trainable_count += p->count;
    return net->nparams++;
}

static int add_slot(sr_unet *net, int c, int level, int parent, int c0)
{
    net->slots[net->nslots] = (sr_slot){.c = c, .level = level, .parent = parent, .c0 = c0};
    return net->nslots++;
}

/* conv3x3 [+ norm] + relu (or the final conv), named `prefix.index` in the
 * state dict; its norm layer is `prefix.(index + 1)`. */
static void add_conv(planner *pl, const char *prefix, int index, int level, int cin, int cout,
                     int src, int dst, sr_norm norm, bool relu, int block)
{
    sr_unet *net = pl->net;
    sr_op op = {.kind = SR_OP_CONV, .level = level, .cin = cin, .cout = cout, .src = src,
                .dst = dst, .norm = norm, .relu = relu, .block = block, .gamma = -1,
                .running_sd = -1};
    op.weight = add_param(pl, true, 4, (int[]){cout, cin, 3, 3}, "%s.%d.weight", prefix, index);
    op.bias = add_param(pl, true, 1, (int[]){cout}, "%s.%d.bias", prefix, index);
    const int *per_channel = (int[]){1, cout, 1, 1};
    if (norm != SR_NORM_NONE)
        op.gamma = add_param(pl, true, 4, per_channel, "%s.%d.gammas", prefix, index + 1);
    if (norm == SR_NORM_BATCH)
        op.running_sd = add_param(pl, false, 4, per_channel, "%s.%d.running_sd", prefix, index + 1);
    net->ops[net->nops++] = op;
}

/* A block of `convs` x [conv, N, R] from slot src into slot out; returns the
 * state-dict index after it. Block 0 of the encoder starts with a bare conv. */
static int add_block(planner *pl, const char *prefix, int level, int cin, int k, int convs,
                     bool bare_first, int src, int out, int block)
{
    sr_unet *net = pl->net;
    int index = 0;
    for (int i = 0; i < convs; i++) {
        const bool last = i == convs - 1, bare = bare_first && i == 0;
        const int dst = last ? out : add_slot(net, k, level, -1, 0);
        add_conv(pl, prefix, index, level, i == 0 ? cin : k, k, src, dst,
                 bare ? SR_NORM_NONE : net->shape.norm, true, last ? block : -1);
        index += bare ? 2 : 3;
        src = dst;
    }
    return index;
}

int sr_unet_plan(sr_unet *net, const sr_unet_shape *shape, char *err, size_t errlen)
{
    memset(net, 0, sizeof *net); /* a fresh net: plan each once, sr_unet_free before planning again */
    if (sr_unet_shape_check(shape, err, errlen)) return -1;
    net->shape = *shape;
    const int n = shape->levels, *K = shape->kernels;
    int convs = shape->mid_convs;
    for (int b = 0; b < n; b++) convs += shape->enc_convs[b] + shape->dec_convs[b];
    const int max_ops = convs + 2 * n;
    net->params = SR_MALLOC(sizeof(sr_param) * (size_t)(4 * convs + 2 * n), "the parameter table");
    net->ops = SR_MALLOC(sizeof(sr_op) * (size_t)max_ops, "the UNet plan");
    net->slots = SR_MALLOC(sizeof(sr_slot) * (size_t)(2 * max_ops + 1), "the UNet plan");
    planner pl = {.net = net, .offset = 0};
    char prefix[32];

    /* Encoder: block b writes its output straight into the skip half of the
     * decoder's concatenation buffer, then pools. */
    int cat[SR_MAX_LEVELS], src = add_slot(net, shape->in_channels, 0, -1, 0);
    for (int b = 0; b < n; b++) {
        cat[b] = add_slot(net, 2 * K[b], b, -1, 0);
        const int skip = add_slot(net, K[b], b, cat[b], K[b]);
        snprintf(prefix, sizeof prefix, "encoder.%d", b);
        add_block(&pl, prefix, b, b == 0 ? shape->in_channels : K[b - 1], K[b], shape->enc_convs[b],
                  b == 0, src, skip, b);
        const int pooled = add_slot(net, K[b], b + 1, -1, 0);
        net->ops[net->nops++] = (sr_op){.kind = SR_OP_POOL, .level = b, .cin = K[b], .cout = K[b],
                                        .src = skip, .dst = pooled, .weight = -1, .bias = -1,
                                        .gamma = -1, .running_sd = -1, .block = -1};
        src = pooled;
    }
    const int mid_out = add_slot(net, K[n], n, -1, 0);
    add_block(&pl, "mid", n, K[n - 1], K[n], shape->mid_convs, false, src, mid_out, n);
    net->mid_last_op = net->nops - 1;
    src = mid_out;

    /* Decoder n-1 .. 0: upsample into the first half of the concatenation. */
    net->output_slot = -1;
    for (int b = n - 1; b >= 0; b--) {
        const int up = add_slot(net, K[b], b, cat[b], 0);
        sr_op op = {.kind = SR_OP_UP, .level = b + 1, .cin = K[b + 1], .cout = K[b], .src = src,
                    .dst = up, .bias = -1, .gamma = -1, .running_sd = -1, .block = -1};
        op.weight = add_param(&pl, true, 4, (int[]){K[b + 1], K[b], 2, 2}, "upsample.%d.weight", b);
        if (shape->upsample_bias[b])
            op.bias = add_param(&pl, true, 1, (int[]){K[b]}, "upsample.%d.bias", b);
        net->ops[net->nops++] = op;
        snprintf(prefix, sizeof prefix, "decoder.%d", b);
        if (b > 0) {
            const int out = add_slot(net, K[b], b, -1, 0);
            add_block(&pl, prefix, b, 2 * K[b], K[b], shape->dec_convs[b], false, cat[b], out,
                      2 * n - b);
            src = out;
            continue;
        }
        /* Decoder 0: its convs, then the final conv to the image, no N, no R. */
        int cin = 2 * K[0], index = 0;
        src = cat[0];
        if (shape->dec_convs[0] > 1) {
            const int out = add_slot(net, K[0], 0, -1, 0);
            index = add_block(&pl, prefix, 0, 2 * K[0], K[0], shape->dec_convs[0] - 1, false, src,
                              out, -1);
            cin = K[0];
            src = out;
        }
        net->output_slot = add_slot(net, shape->in_channels, 0, -1, 0);
        add_conv(&pl, prefix, index, 0, cin, shape->in_channels, src, net->output_slot,
                 SR_NORM_NONE, false, -1);
    }
    net->param_floats = pl.offset;
    net->nblocks = sr_unet_block_count(shape);
    for (int b = 0; b < net->nblocks; b++)
        net->block_offset[b + 1] = net->block_offset[b] + sr_unet_block_channels(shape, b);
    return 0;
}

void sr_unet_alloc(sr_unet *net, const sr_backend *be)
{
    net->be = be;
    sr_arena_init(&net->param_arena, be, net->param_floats * sizeof(float), "the model parameters");
    net->param = sr_arena_floats(&net->param_arena, net->param_floats);
}

void sr_unet_free(sr_unet *net)
{
    if (net->be) sr_arena_release(&net->param_arena);
    free(net->params);
    free(net->ops);
    free(net->slots);
    memset(net, 0, sizeof *net);
}

const sr_param *sr_unet_param(const sr_unet *net, const char *name)
{
    for (int i = 0; i < net->nparams; i++)
        if (!strcmp(net->params[i].name, name)) return &net->params[i];
    return NULL;
}

/* fan_in as PyTorch computes it: dims[1] * receptive field (so out * 4 for a
 * ConvTranspose2d's (in, out, 2, 2) weight). */
static double fan_in(const sr_param *weight)
{
    return (double)weight->dims[1] * weight->dims[2] * weight->dims[3];
}

void sr_unet_init_weights(sr_unet *net, uint32_t seed)
{
    float *host = SR_MALLOC(net->param_floats * sizeof(float), "the initial weights");
    memset(host, 0, net->param_floats * sizeof(float));
    const sr_param *last_weight = NULL;
    for (int i = 0; i < net->nparams; i++) {
        const sr_param *p = &net->params[i];
        float *v = host + p->offset;
        const sr_rng_stream s = {.seed = seed, .domain = SR_RNG_INIT, .i0 = (uint32_t)i};
        const char *kind = strrchr(p->name, '.') + 1;
        if (!strcmp(kind, "weight")) {
            last_weight = p;
            const float std = (float)sqrt(2.0 / fan_in(p));
            sr_rng_gaussian(&s, 0, p->count, v);
            for (size_t j = 0; j < p->count; j++) v[j] *= std;
        } else if (!strcmp(kind, "bias")) {
            const float bound = (float)(1.0 / sqrt(fan_in(last_weight)));
            sr_rng_uniform(&s, 0, p->count, v);
            for (size_t j = 0; j < p->count; j++) v[j] = bound * (2.0f * v[j] - 1.0f);
        } else if (!strcmp(kind, "gammas")) {
            sr_rng_gaussian(&s, 0, p->count, v);
            for (size_t j = 0; j < p->count; j++)
                v[j] = fminf(fmaxf(v[j] * (2.0f / 9.0f / 64.0f), -0.025f), 0.025f);
        } else { /* running_sd */
            for (size_t j = 0; j < p->count; j++) v[j] = 1.0f;
        }
    }
    sr_be_to_device(net->be, net->param, host, net->param_floats * sizeof(float));
    free(host);
}

/* ---- workspace ----------------------------------------------------------- */

static size_t slot_floats(const sr_unet_work *wk, const sr_slot *s)
{
    return (size_t)s->c * wk->n * (size_t)(wk->h >> s->level) * (size_t)(wk->w >> s->level);
}

/* Pointers of every slot: own storage carved from the arena, views after. */
static float *carve_slots(sr_unet_work *wk, sr_arena *arena, float **ptr, size_t *floats)
{
    const sr_unet *net = wk->net;
    float *base = NULL;
    size_t total = 0;
    for (int s = 0; s < net->nslots; s++) {
        const sr_slot *sl = &net->slots[s];
        if (sl->parent >= 0) continue;
        const size_t count = sr_arena_floats_padded(slot_floats(wk, sl));
        total += count;
        ptr[s] = sr_arena_floats(arena, count);
        if (!base) base = ptr[s];
    }
    for (int s = 0; s < net->nslots; s++) {
        const sr_slot *sl = &net->slots[s];
        if (sl->parent < 0) continue;
        const size_t plane = (size_t)wk->n * (wk->h >> sl->level) * (wk->w >> sl->level);
        ptr[s] = ptr[sl->parent] ? ptr[sl->parent] + (size_t)sl->c0 * plane : NULL;
    }
    if (floats) *floats = total;
    return base;
}

static size_t col_floats_needed(const sr_unet_work *wk)
{
    const sr_unet *net = wk->net;
    size_t need = 0;
    for (int o = 0; o < net->nops; o++) {
        const sr_op *op = &net->ops[o];
        const size_t hw = (size_t)(wk->h >> op->level) * (wk->w >> op->level);
        size_t floats = 0;
        if (op->kind == SR_OP_CONV) {
            floats = sr_conv3x3_scratch(op->cin, op->cout, wk->n, wk->h >> op->level, wk->w >> op->level,
                                        SR_COL_BUDGET_FLOATS);
        } else if (op->kind == SR_OP_UP) {
            floats = (size_t)op->cout * 4 * wk->n * hw;
        }
        if (floats > need) need = floats;
    }
    return need;
}

size_t sr_unet_image_floats(const sr_unet_work *wk)
{
    return (size_t)wk->n * wk->net->shape.in_channels * wk->h * wk->w;
}

/* Carves the whole workspace from `arena` (a measuring one on the first call). */
static void layout(sr_unet_work *wk, sr_arena *arena)
{
    const sr_unet *net = wk->net;
    const size_t images = sr_unet_image_floats(wk);
    const size_t means = (size_t)wk->n * net->block_offset[net->nblocks];
    wk->staging = sr_arena_floats(arena, images);
    carve_slots(wk, arena, wk->act, NULL);
    for (int o = 0; o < net->nops; o++) {
        const sr_op *op = &net->ops[o];
        wk->pre[o] = wk->stats[o] = NULL;
        if (op->kind != SR_OP_CONV) continue;
        wk->stats[o] = sr_arena_floats(arena, 3 * (size_t)wk->n);
        if (wk->grad && op->norm != SR_NORM_NONE)
            wk->pre[o] = sr_arena_floats(arena, slot_floats(wk, &net->slots[op->dst]));
    }
    wk->col_floats = col_floats_needed(wk);
    wk->col = sr_arena_floats(arena, wk->col_floats);
    wk->means = sr_arena_floats(arena, means);
    if (wk->grad) {
        wk->dact_base = carve_slots(wk, arena, wk->dact, &wk->dact_floats);
        wk->d_means = sr_arena_floats(arena, means);
        wk->d_output = sr_arena_floats(arena, images);
    }
}

static void work_tables(sr_unet_work *wk, const sr_unet *net, int n, int h, int w, bool grad)
{
    memset(wk, 0, sizeof *wk);
    wk->net = net;
    wk->n = n;
    wk->h = h;
    wk->w = w;
    wk->grad = grad;
    wk->act = SR_MALLOC(sizeof(float *) * (size_t)net->nslots, "the workspace tables");
    wk->dact = SR_MALLOC(sizeof(float *) * (size_t)net->nslots, "the workspace tables");
    wk->pre = SR_MALLOC(sizeof(float *) * (size_t)net->nops, "the workspace tables");
    wk->stats = SR_MALLOC(sizeof(float *) * (size_t)net->nops, "the workspace tables");
}

static void free_tables(sr_unet_work *wk)
{
    free(wk->act);
    free(wk->dact);
    free(wk->pre);
    free(wk->stats);
}

size_t sr_unet_work_bytes(const sr_unet *net, int n, int h, int w, bool grad)
{
    sr_unet_work wk;
    sr_arena measure;
    work_tables(&wk, net, n, h, w, grad);
    sr_arena_measure(&measure);
    layout(&wk, &measure);
    free_tables(&wk);
    return measure.used;
}

int sr_unet_work_check(const sr_unet *net, int n, int h, int w, char *err, size_t errlen)
{
    if (sr_unet_size_check(&net->shape, h, w, err, errlen)) return -1;
    /* BLAS takes int sizes: every image's pixels of a batch must fit in one. */
    if (n < 1 || (size_t)n * (size_t)h * (size_t)w > (size_t)INT_MAX) {
        snprintf(err, errlen, "a batch of %d images of %dx%d cannot run as one pass (1 to 2^31 pixels); lower the batch", n,
                 h, w);
        return -1;
    }
    return 0;
}

void sr_unet_work_init(sr_unet_work *wk, const sr_unet *net, int n, int h, int w, bool grad)
{
    char err[256];
    if (sr_unet_work_check(net, n, h, w, err, sizeof err)) SR_FAIL("%s", err);
    const size_t bytes = sr_unet_work_bytes(net, n, h, w, grad);
    work_tables(wk, net, n, h, w, grad);
    sr_arena_init(&wk->arena, net->be, bytes, "the UNet activations");
    layout(wk, &wk->arena);
    wk->capacity = n;
}

void sr_unet_work_resize(sr_unet_work *wk, int n)
{
    SR_CHECK(n >= 1 && n <= wk->capacity, "a workspace made for %d images cannot run %d (a bug in semrep)",
             wk->capacity, n);
    if (n == wk->n) return;
    wk->n = n;
    wk->arena.used = 0; /* every size is at most the capacity's: the same memory holds them */
    layout(wk, &wk->arena);
}

void sr_unet_work_free(sr_unet_work *wk)
{
    sr_arena_release(&wk->arena);
    free_tables(wk);
    memset(wk, 0, sizeof *wk);
}

void sr_unet_put_images(sr_unet_work *wk, const float *host_nchw, float *dev_cnhw)
{
    const sr_backend *be = wk->net->be;
    const int c = wk->net->shape.in_channels, hw = wk->h * wk->w;
    sr_be_to_device(be, wk->staging, host_nchw, sizeof(float) * sr_unet_image_floats(wk));
    sr_be_nchw_to_cnhw(be, wk->staging, wk->n, c, hw, dev_cnhw);
}

void sr_unet_get_images(sr_unet_work *wk, const float *dev_cnhw, float *host_nchw)
{
    const sr_backend *be = wk->net->be;
    const int c = wk->net->shape.in_channels, hw = wk->h * wk->w;
    sr_be_cnhw_to_nchw(be, dev_cnhw, wk->n, c, hw, wk->staging);
    sr_be_to_host(be, host_nchw, wk->staging, sizeof(float) * sr_unet_image_floats(wk));
}

float *sr_unet_input(const sr_unet_work *wk) { return wk->act[0]; }
float *sr_unet_output(const sr_unet_work *wk) { return wk->act[wk->net->output_slot]; }
float *sr_unet_input_grad(const sr_unet_work *wk) { return wk->grad ? wk->dact[0] : NULL; }

size_t sr_unet_means_count(const sr_unet_work *wk)
{
    return (size_t)wk->n * wk->net->block_offset[wk->net->nblocks];
}

/* ---- forward and backward ------------------------------------------------ */

/* Parameter `index` (or its gradient) within an arena laid out like the
 * parameters; NULL for an absent parameter or arena. */
static float *param_at(const sr_unet *net, float *base, int index)
{
    return index >= 0 && base ? base + net->params[index].offset : NULL;
}

static sr_unit op_unit(const sr_unet *net, const sr_op *op, int n, int hw)
{
    return (sr_unit){.k = op->cout, .n = n, .hw = hw, .norm = op->norm, .relu = op->relu,
                     .bias = param_at(net, net->param, op->bias),
                     .gamma = param_at(net, net->param, op->gamma),
                     .running_sd = param_at(net, net->param, op->running_sd)};
}

static int last_op(const sr_unet *net, sr_upto upto)
{
    return upto == SR_UPTO_MID ? net->mid_last_op : net->nops - 1;
}


void sr_unet_forward(const sr_unet *net, sr_unet_work *wk, sr_upto upto)
{
    const sr_backend *be = net->be;
    const int n = wk->n;
    for (int o = 0; o <= last_op(net, upto); o++) {
        const sr_op *op = &net->ops[o];
        const int h = wk->h >> op->level, w = wk->w >> op->level;
        const float *x = wk->act[op->src], *weight = param_at(net, net->param, op->weight);
        float *y = wk->act[op->dst];
        switch (op->kind) {
        case SR_OP_CONV: {
            float *u = wk->pre[o] ? wk->pre[o] : y;
            const sr_unit unit = op_unit(net, op, n, h * w);
            sr_conv3x3_forward(be, x, op->cin, n, h, w, weight, op->cout, u, wk->col, wk->col_floats);
            sr_be_unit_forward(be, &unit, u, y, wk->stats[o]);
            if (op->block >= 0)
                sr_be_plane_means(be, y, op->cout, n, h * w, wk->means + (size_t)n * net->block_offset[op->block]);
            break;
        }
        case SR_OP_POOL: sr_be_pool2x2(be, x, op->cin, n, h, w, y); break;
        case SR_OP_UP:
            sr_convt2x2_forward(be, x, op->cin, n, h, w, weight,
                                param_at(net, net->param, op->bias), op->cout, y, wk->col);
            break;
        }
    }
    /* Residual models predict the noise: x_hat = y - f(y). */
    if (upto == SR_UPTO_OUTPUT && net->shape.output == SR_OUTPUT_RESIDUAL)
        sr_be_axpby(be, sr_unet_image_floats(wk), 1.0f, sr_unet_input(wk), -1.0f, sr_unet_output(wk));
}

void sr_unet_backward(const sr_unet *net, sr_unet_work *wk, sr_upto from, const float *d_output,
                      const float *d_means, float *param_grad, bool input_grad)
{
    const sr_backend *be = net->be;
    const int n = wk->n;
    SR_CHECK(wk->grad, "internal: backward on a workspace made without gradients");
    sr_be_zero(be, wk->dact_base, wk->dact_floats * sizeof(float));
    if (from == SR_UPTO_OUTPUT && d_output) {
        const bool residual = net->shape.output == SR_OUTPUT_RESIDUAL;
        sr_be_axpby(be, sr_unet_image_floats(wk), residual ? -1.0f : 1.0f, d_output, 0.0f, wk->dact[net->output_slot]);
        if (residual) sr_be_axpby(be, sr_unet_image_floats(wk), 1.0f, d_output, 1.0f, wk->dact[0]);
    }
    for (int o = last_op(net, from); o >= 0; o--) {
        const sr_op *op = &net->ops[o];
        const int h = wk->h >> op->level, w = wk->w >> op->level;
        const float *x = wk->act[op->src], *weight = param_at(net, net->param, op->weight);
        float *dy = wk->dact[op->dst];
        float *dx = op->src != 0 || input_grad ? wk->dact[op->src] : NULL;
        switch (op->kind) {
        case SR_OP_CONV: {
            const sr_unit unit = op_unit(net, op, n, h * w);
            if (op->block >= 0 && d_means)
                sr_be_plane_means_backward(be, d_means + (size_t)n * net->block_offset[op->block],
                                         op->cout, n, h * w, dy);
            sr_be_unit_backward(be, &unit, wk->pre[o] ? wk->pre[o] : wk->act[op->dst], wk->act[op->dst],
                              wk->stats[o], dy, param_at(net, param_grad, op->gamma),
                              param_at(net, param_grad, op->bias));
            sr_conv3x3_backward(be, x, op->cin, n, h, w, weight, op->cout, dy,
                                param_at(net, param_grad, op->weight), dx, wk->col, wk->col_floats);
            break;
        }
        case SR_OP_POOL: sr_be_pool2x2_backward(be, dy, op->cin, n, h, w, dx); break;
        case SR_OP_UP:
            sr_convt2x2_backward(be, x, op->cin, n, h, w, weight, op->cout, dy,
                                 param_at(net, param_grad, op->weight),
                                 param_at(net, param_grad, op->bias), dx, wk->col);
            break;
        }
    }
}

void sr_unet_denoise(const sr_unet *net, sr_unet_work *wk, const float *host_y, float *host_out)
{
    sr_unet_put_images(wk, host_y, sr_unet_input(wk));
    sr_unet_forward(net, wk, SR_UPTO_OUTPUT);
    sr_unet_get_images(wk, sr_unet_output(wk), host_out);
}

double sr_unet_forward_flops(const sr_unet *net, int h, int w, sr_upto upto)
{
    double flops = 0.0;
    for (int o = 0; o <= last_op(net, upto); o++) {
        const sr_op *op = &net->ops[o];
        const double hw = (double)(h >> op->level) * (w >> op->level);
        if (op->kind == SR_OP_CONV) flops += 2.0 * op->cout * op->cin * 9.0 * hw;
        if (op->kind == SR_OP_UP) flops += 2.0 * op->cout * 4.0 * op->cin * hw;
    }
    return flops;
}
