/* Every layer's backward against central finite differences of its forward,
 * the loss L = sum_i r_i out_i summed in double for fixed random r; then the
 * whole network's input gradient (of a loss of abar_mid, through the encoder
 * and middle block) and parameter gradient (of the training loss) along
 * random directions, with steps that cross no ReLU kink. Those steps are
 * small, so float32 rounding of the loss limits the agreement to ~1e-3; the
 * PyTorch fixture (test_unet_fixture.c) checks the same gradients to 1e-6. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "nn/adam.h"
#include "nn/layers.h"
#include "nn/unet.h"
#include "test_util.h"

static const sr_backend *be;

enum { CONV, CONVT, UNIT, POOL, MEANS };

/* One layer under test with its inputs, parameters and output. */
typedef struct {
    int kind;
    int cin, cout, n, h, w;
    float *x, *weight, *bias, *gamma, *running_sd, *y, *col;
    size_t col_floats, x_count, y_count, w_count;
    sr_unit unit;
    float *u_work;
} layer;

static float *uniform(unsigned stream, float lo, float hi, size_t n)
{
    float *v = malloc(sizeof(float) * (n ? n : 1));
    sr_test_uniform(stream, lo, hi, n, v);
    return v;
}

static void forward(layer *l)
{
    switch (l->kind) {
    case CONV:
        sr_conv3x3_forward(be, l->x, l->cin, l->n, l->h, l->w, l->weight, l->cout, l->y, l->col, l->col_floats);
        break;
    case CONVT:
        sr_convt2x2_forward(be, l->x, l->cin, l->n, l->h, l->w, l->weight, l->bias, l->cout, l->y, l->col);
        break;
    case UNIT: /* the kernel adds the bias in place: work on a copy of x */
        memcpy(l->u_work, l->x, sizeof(float) * l->x_count);
        sr_be_unit_forward(be, &l->unit, l->u_work, l->y, l->col);
        break;
    case POOL: sr_be_pool2x2(be, l->x, l->cin, l->n, l->h, l->w, l->y); break;
    case MEANS: sr_be_plane_means(be, l->x, l->cin, l->n, l->h * l->w, l->y); break;
    }
}

static double loss(layer *l, const float *r)
{
    forward(l);
    double s = 0.0;
    for (size_t i = 0; i < l->y_count; i++) s += (double)r[i] * l->y[i];
    return s;
}

/* Central differences of the loss in every entry of var; prints and returns
 * ||analytic - fd|| / ||fd||. The step actually taken (after rounding to
 * float) is the divisor. */
static double fd_check(layer *l, const float *r, float *var, size_t count, const float *analytic,
                       double h, const char *what)
{
    double *fd = malloc(sizeof(double) * count), *an = malloc(sizeof(double) * count);
    for (size_t j = 0; j < count; j++) {
        const float keep = var[j];
        var[j] = (float)(keep + h);
        const float up = var[j];
        const double lp = loss(l, r);
        var[j] = (float)(keep - h);
        const float down = var[j];
        const double lm = loss(l, r);
        var[j] = keep;
        fd[j] = (lp - lm) / ((double)up - down);
        an[j] = analytic[j];
    }
    const double rel = sr_norm_rel_diff(an, fd, count);
    printf("\n    %-28s relative error %.2e over %zu entries", what, rel, count);
    free(fd);
    free(an);
    return rel;
}

static void test_conv3x3(void)
{
    layer l = {.kind = CONV, .cin = 3, .cout = 4, .n = 3, .h = 5, .w = 6};
    l.x_count = (size_t)l.cin * l.n * l.h * l.w;
    l.y_count = (size_t)l.cout * l.n * l.h * l.w;
    l.w_count = (size_t)l.cout * l.cin * 9;
    l.col_floats = (size_t)l.cin * 9 * l.h * l.w; /* one image per chunk: tests the chunking */
    l.x = uniform(1, -1, 1, l.x_count);
    l.weight = uniform(2, -1, 1, l.w_count);
    l.y = malloc(sizeof(float) * l.y_count);
    l.col = malloc(sizeof(float) * l.col_floats);
    float *r = uniform(3, -1, 1, l.y_count);
    float *dx = calloc(l.x_count, sizeof(float)), *dw = calloc(l.w_count, sizeof(float));
    sr_conv3x3_backward(be, l.x, l.cin, l.n, l.h, l.w, l.weight, l.cout, r, dw, dx, l.col, l.col_floats);
    CU_ASSERT(fd_check(&l, r, l.x, l.x_count, dx, 0.25, "conv3x3 d input") < 1e-4);
    CU_ASSERT(fd_check(&l, r, l.weight, l.w_count, dw, 0.25, "conv3x3 d weight") < 1e-4);
    /* Accumulation: a second backward adds the same again, dx = 2 once. */
    float *once_dx = calloc(l.x_count, sizeof(float)), *once_dw = calloc(l.w_count, sizeof(float));
    sr_conv3x3_backward(be, l.x, l.cin, l.n, l.h, l.w, l.weight, l.cout, r, once_dw, once_dx, l.col, l.col_floats);
    sr_conv3x3_backward(be, l.x, l.cin, l.n, l.h, l.w, l.weight, l.cout, r, dw, dx, l.col, l.col_floats);
    for (size_t i = 0; i < l.x_count; i++) once_dx[i] *= 2.0f;
    for (size_t i = 0; i < l.w_count; i++) once_dw[i] *= 2.0f;
    CU_ASSERT(sr_max_rel_diff(dx, once_dx, l.x_count) < 1e-6);
    CU_ASSERT(sr_max_rel_diff(dw, once_dw, l.w_count) < 1e-6);
    free(once_dx), free(once_dw);
    free(l.x), free(l.weight), free(l.y), free(l.col), free(r), free(dx), free(dw);
}

/* The forward pass against a direct sum in double, on shapes that take
 * Winograd (8 or more input channels, even sides; chunked scratch) and the
 * unfolding (odd sides). */
static void test_conv3x3_forward_direct(void)
{
    const struct {
        int cin, cout, n, h, w;
        size_t col_floats;
    } cases[] = {{8, 5, 3, 6, 4, 0}, {16, 12, 4, 8, 8, 16 * 16 * 12 + 4 * 28 * 64}, {9, 4, 2, 5, 7, 0}};
    for (size_t q = 0; q < sizeof cases / sizeof *cases; q++) {
        const int cin = cases[q].cin, cout = cases[q].cout, n = cases[q].n, h = cases[q].h, w = cases[q].w;
        const size_t xs = (size_t)cin * n * h * w, ys = (size_t)cout * n * h * w;
        float *x = uniform(60 + (unsigned)q, -1, 1, xs), *wt = uniform(70 + (unsigned)q, -1, 1, (size_t)cout * cin * 9);
        float *y = malloc(sizeof(float) * ys);
        const size_t col = cases[q].col_floats ? cases[q].col_floats : sr_conv3x3_scratch(cin, cout, n, h, w, 1 << 20);
        float *scratch = malloc(sizeof(float) * col);
        sr_conv3x3_forward(be, x, cin, n, h, w, wt, cout, y, scratch, col);
        double worst = 0.0, scale = 0.0;
        for (int k = 0; k < cout; k++)
            for (int i = 0; i < n; i++)
                for (int yy = 0; yy < h; yy++)
                    for (int xx = 0; xx < w; xx++) {
                        double sum = 0.0;
                        for (int c = 0; c < cin; c++)
                            for (int t = 0; t < 9; t++) {
                                const int sy = yy + t / 3 - 1, sx = xx + t % 3 - 1;
                                if (sy < 0 || sy >= h || sx < 0 || sx >= w) continue;
                                sum += (double)wt[((size_t)k * cin + c) * 9 + t] * x[(((size_t)c * n + i) * h + sy) * w + sx];
                            }
                        const double got = y[(((size_t)k * n + i) * h + yy) * w + xx];
                        worst = fmax(worst, fabs(got - sum));
                        scale = fmax(scale, fabs(sum));
                    }
        printf("\n    conv3x3 %dx%d, %d->%d: max rel diff to double %.2e", h, w, cin, cout, worst / scale);
        CU_ASSERT(worst <= 1e-5 * scale);
        free(x), free(wt), free(y), free(scratch);
    }
}

static void test_convt2x2(void)
{
    layer l = {.kind = CONVT, .cin = 3, .cout = 5, .n = 2, .h = 3, .w = 4};
    l.x_count = (size_t)l.cin * l.n * l.h * l.w;
    l.y_count = (size_t)l.cout * l.n * 4 * l.h * l.w;
    l.w_count = (size_t)l.cin * l.cout * 4;
    l.x = uniform(4, -1, 1, l.x_count);
    l.weight = uniform(5, -1, 1, l.w_count);
    l.bias = uniform(6, -1, 1, (size_t)l.cout);
    l.y = malloc(sizeof(float) * l.y_count);
    l.col = malloc(sizeof(float) * l.y_count);
    float *r = uniform(7, -1, 1, l.y_count);
    float *dx = calloc(l.x_count, sizeof(float)), *dw = calloc(l.w_count, sizeof(float));
    float *db = calloc((size_t)l.cout, sizeof(float));
    sr_convt2x2_backward(be, l.x, l.cin, l.n, l.h, l.w, l.weight, l.cout, r, dw, db, dx, l.col);
    CU_ASSERT(fd_check(&l, r, l.x, l.x_count, dx, 0.25, "convtranspose d input") < 1e-4);
    CU_ASSERT(fd_check(&l, r, l.weight, l.w_count, dw, 0.25, "convtranspose d weight") < 1e-4);
    CU_ASSERT(fd_check(&l, r, l.bias, (size_t)l.cout, db, 0.25, "convtranspose d bias") < 1e-4);
    free(l.x), free(l.weight), free(l.bias), free(l.y), free(l.col), free(r), free(dx), free(dw), free(db);
}

/* Inputs of magnitude >= 0.3 and a bias of at most 0.05 keep every
 * normalised value at least ~0.1 from the ReLU's kink, far beyond the step. */
static void check_unit(sr_norm norm, bool relu, const char *what)
{
    layer l = {.kind = UNIT, .cin = 4, .n = 3, .h = 3, .w = 5};
    const int k = l.cin;
    l.x_count = l.y_count = (size_t)k * l.n * l.h * l.w;
    l.x = uniform(8, -1, 1, l.x_count);
    for (size_t i = 0; i < l.x_count; i++) l.x[i] += l.x[i] < 0 ? -0.3f : 0.3f;
    l.bias = uniform(9, -0.05f, 0.05f, (size_t)k);
    l.gamma = uniform(10, 0.5f, 1.5f, (size_t)k);
    l.running_sd = uniform(11, 0.5f, 2.0f, (size_t)k);
    l.y = malloc(sizeof(float) * l.y_count);
    l.u_work = malloc(sizeof(float) * l.x_count);
    l.col = malloc(sizeof(float) * 3 * l.n); /* the stats */
    l.unit = (sr_unit){.k = k, .n = l.n, .hw = l.h * l.w, .norm = norm, .relu = relu,
                       .bias = l.bias, .gamma = l.gamma, .running_sd = l.running_sd};
    float *r = uniform(12, -1, 1, l.y_count);
    float *du = malloc(sizeof(float) * l.x_count);
    float *dg = calloc((size_t)k, sizeof(float)), *db = calloc((size_t)k, sizeof(float));
    forward(&l);
    memcpy(du, r, sizeof(float) * l.y_count);
    sr_be_unit_backward(be, &l.unit, l.u_work, l.y, l.col, du, dg, db);
    char name[64];
    snprintf(name, sizeof name, "%s d input", what);
    CU_ASSERT(fd_check(&l, r, l.x, l.x_count, du, 1e-2, name) < 1e-3);
    snprintf(name, sizeof name, "%s d bias", what);
    CU_ASSERT(fd_check(&l, r, l.bias, (size_t)k, db, 1e-2, name) < 1e-3);
    if (norm != SR_NORM_NONE) {
        snprintf(name, sizeof name, "%s d gamma", what);
        CU_ASSERT(fd_check(&l, r, l.gamma, (size_t)k, dg, 1e-2, name) < 1e-3);
    }
    free(l.x), free(l.bias), free(l.gamma), free(l.running_sd), free(l.y), free(l.u_work);
    free(l.col), free(r), free(du), free(dg), free(db);
}

static void test_unit_layer_norm(void) { check_unit(SR_NORM_LAYER, true, "layer StdNorm + ReLU"); }
static void test_unit_batch_norm(void) { check_unit(SR_NORM_BATCH, true, "batch StdNorm + ReLU"); }
static void test_unit_relu(void) { check_unit(SR_NORM_NONE, true, "bias + ReLU"); }
static void test_unit_plain(void) { check_unit(SR_NORM_NONE, false, "bias only"); }

static void test_pool_and_means(void)
{
    layer l = {.kind = POOL, .cin = 2, .n = 3, .h = 4, .w = 6};
    l.x_count = (size_t)l.cin * l.n * l.h * l.w;
    l.y_count = l.x_count / 4;
    l.x = uniform(13, -1, 1, l.x_count);
    l.y = malloc(sizeof(float) * l.x_count);
    float *r = uniform(14, -1, 1, l.x_count);
    float *dx = calloc(l.x_count, sizeof(float));
    sr_be_pool2x2_backward(be, r, l.cin, l.n, l.h, l.w, dx);
    CU_ASSERT(fd_check(&l, r, l.x, l.x_count, dx, 0.25, "avgpool d input") < 1e-5);
    l.kind = MEANS;
    l.y_count = (size_t)l.cin * l.n;
    memset(dx, 0, sizeof(float) * l.x_count);
    sr_be_plane_means_backward(be, r, l.cin, l.n, l.h * l.w, dx);
    CU_ASSERT(fd_check(&l, r, l.x, l.x_count, dx, 0.25, "block means d input") < 1e-5);
    free(l.x), free(l.y), free(r), free(dx);
}

/* ---- whole network ----------------------------------------------------- */

typedef struct {
    sr_unet net;
    sr_unet_work wk;
    int n, h, w;
    size_t images;
    float *target, *clean;
    const float *mean_weights; /* training loss: plus sum w . (every block mean), when set */
} model;

static void model_init(model *m, sr_output output)
{
    const sr_unet_shape shape = {.in_channels = 2, .levels = 2, .kernels = {4, 6, 8},
                                 .enc_convs = {2, 1}, .mid_convs = 2, .dec_convs = {2, 2},
                                 .norm = SR_NORM_LAYER, .output = output,
                                 .upsample_bias = {false, output == SR_OUTPUT_RESIDUAL}};
    char err[256];
    memset(m, 0, sizeof *m);
    CU_ASSERT_FATAL(sr_unet_plan(&m->net, &shape, err, sizeof err) == 0);
    sr_unet_alloc(&m->net, be);
    sr_unet_init_weights(&m->net, 3);
    /* gammas of order one, so that the normalised layers matter */
    for (int i = 0; i < m->net.nparams; i++)
        if (strstr(m->net.params[i].name, "gammas"))
            sr_test_uniform(100 + i, 0.5f, 1.5f, m->net.params[i].count,
                            m->net.param + m->net.params[i].offset);
    m->n = 2, m->h = 8, m->w = 12;
    m->images = (size_t)m->n * 2 * m->h * m->w;
    sr_unet_work_init(&m->wk, &m->net, m->n, m->h, m->w, true);
    m->target = uniform(20, 0, 1, (size_t)m->n * 8);
    m->clean = uniform(21, 0, 1, m->images);
}

static void model_free(model *m)
{
    sr_unet_work_free(&m->wk);
    sr_unet_free(&m->net);
    free(m->target);
    free(m->clean);
}

/* The ReLU pattern of every conv unit, to prove a step crossed no kink. */
static size_t relu_pattern(const model *m, unsigned char *out)
{
    size_t k = 0;
    for (int o = 0; o < m->net.nops; o++) {
        const sr_op *op = &m->net.ops[o];
        if (op->kind != SR_OP_CONV || !op->relu) continue;
        const size_t count = (size_t)op->cout * m->n * (m->h >> op->level) * (m->w >> op->level);
        for (size_t i = 0; i < count; i++) {
            if (out) out[k] = m->wk.act[op->dst][i] > 0.0f;
            k++;
        }
    }
    return k;
}

/* 0.5 sum (abar_mid - target)^2 (mid = true) or sum (D(y) - x)^2 / n
 * (plus a weighted sum of every block mean when mean_weights is set). */
static double model_loss(model *m, const float *input, bool mid, unsigned char *pattern)
{
    sr_unet_put_images(&m->wk, input, sr_unet_input(&m->wk));
    sr_unet_forward(&m->net, &m->wk, mid ? SR_UPTO_MID : SR_UPTO_OUTPUT);
    if (pattern) relu_pattern(m, pattern);
    double s = 0.0;
    if (mid) {
        const float *abar = m->wk.means + (size_t)m->n * m->net.block_offset[m->net.shape.levels];
        for (int i = 0; i < m->n * 8; i++) s += 0.5 * ((double)abar[i] - m->target[i]) * (abar[i] - m->target[i]);
        return s;
    }
    float *out = malloc(sizeof(float) * m->images);
    sr_unet_get_images(&m->wk, sr_unet_output(&m->wk), out);
    for (size_t i = 0; i < m->images; i++) s += ((double)out[i] - m->clean[i]) * (out[i] - m->clean[i]);
    free(out);
    s /= m->n;
    if (m->mean_weights)
        for (size_t i = 0; i < sr_unet_means_count(&m->wk); i++) s += (double)m->mean_weights[i] * m->wk.means[i];
    return s;
}

/* Directional central difference along v of the loss as a function of
 * var (the input or the parameters), halving the step until the ReLU
 * pattern at both ends is the same. Returns |fd - g.v| / |g.v|. */
static double directional_check(model *m, const float *input, bool mid, float *var, size_t count,
                                const float *v, const float *g, const char *what)
{
    const size_t npat = relu_pattern(m, NULL);
    unsigned char *pa = malloc(npat), *pb = malloc(npat);
    float *keep = malloc(sizeof(float) * count);
    memcpy(keep, var, sizeof(float) * count);
    double an = 0.0;
    for (size_t j = 0; j < count; j++) an += (double)g[j] * v[j];
    double h = 1e-2, fd = 0.0;
    bool clean_step = false;
    for (int tries = 0; tries < 12 && !clean_step; tries++, h *= 0.5) {
        for (size_t j = 0; j < count; j++) var[j] = keep[j] + (float)h * v[j];
        const double lp = model_loss(m, input, mid, pa);
        for (size_t j = 0; j < count; j++) var[j] = keep[j] - (float)h * v[j];
        const double lm = model_loss(m, input, mid, pb);
        fd = (lp - lm) / (2.0 * h);
        clean_step = !memcmp(pa, pb, npat);
    }
    memcpy(var, keep, sizeof(float) * count);
    CU_ASSERT(clean_step);
    const double rel = fabs(fd - an) / fabs(an);
    printf("\n    %-28s relative error %.2e (step %.1e, g.v %.3e)", what, rel, 2 * h, an);
    free(pa), free(pb), free(keep);
    return rel;
}

static void test_encoder_input_gradient(void)
{
    model m;
    model_init(&m, SR_OUTPUT_CLEAN);
    float *y = uniform(22, 0, 1, m.images), *g = malloc(sizeof(float) * m.images);
    model_loss(&m, y, true, NULL);
    /* dL/dabar_mid = abar_mid - target, in the block's [n][C] layout */
    const size_t mid = (size_t)m.n * m.net.block_offset[m.net.shape.levels];
    memset(m.wk.d_means, 0, sizeof(float) * sr_unet_means_count(&m.wk));
    for (int i = 0; i < m.n * 8; i++) m.wk.d_means[mid + i] = m.wk.means[mid + i] - m.target[i];
    sr_unet_backward(&m.net, &m.wk, SR_UPTO_MID, NULL, m.wk.d_means, NULL, true);
    sr_unet_get_images(&m.wk, sr_unet_input_grad(&m.wk), g);
    for (unsigned d = 0; d < 4; d++) {
        float *v = uniform(30 + d, -1, 1, m.images);
        CU_ASSERT(directional_check(&m, y, true, y, m.images, v, g, "encoder+mid d input") < 1e-2);
        free(v);
    }
    free(y), free(g);
    model_free(&m);
}

static void test_unet_parameter_gradient(void)
{
    model m;
    model_init(&m, SR_OUTPUT_CLEAN);
    float *y = uniform(23, 0, 1, m.images), *out = malloc(sizeof(float) * m.images);
    float *grad = calloc(m.net.param_floats, sizeof(float));
    model_loss(&m, y, false, NULL);
    sr_unet_get_images(&m.wk, sr_unet_output(&m.wk), out);
    float *dout = malloc(sizeof(float) * m.images);
    for (size_t i = 0; i < m.images; i++) dout[i] = 2.0f * (out[i] - m.clean[i]) / m.n;
    sr_unet_put_images(&m.wk, dout, m.wk.d_output);
    sr_unet_backward(&m.net, &m.wk, SR_UPTO_OUTPUT, m.wk.d_output, NULL, grad, false);
    for (unsigned d = 0; d < 4; d++) {
        float *v = uniform(40 + d, -1, 1, m.net.param_floats);
        CU_ASSERT(directional_check(&m, y, false, m.net.param, m.net.param_floats, v, grad,
                                    "UNet d parameters") < 1e-2);
        free(v);
    }
    free(y), free(out), free(grad), free(dout);
    model_free(&m);
}

/* A residual model (x_hat = y - f(y)) with an upsample bias: the input
 * gradient of the training loss plus a loss of every block mean at once,
 * through the whole network. */
static void test_residual_input_gradient(void)
{
    model m;
    model_init(&m, SR_OUTPUT_RESIDUAL);
    float *y = uniform(24, 0, 1, m.images), *out = malloc(sizeof(float) * m.images);
    float *g = malloc(sizeof(float) * m.images), *dout = malloc(sizeof(float) * m.images);
    const size_t nmeans = sr_unet_means_count(&m.wk);
    float *wmeans = uniform(25, -1, 1, nmeans);
    m.mean_weights = wmeans;
    model_loss(&m, y, false, NULL);
    sr_unet_get_images(&m.wk, sr_unet_output(&m.wk), out);
    for (size_t i = 0; i < m.images; i++) dout[i] = 2.0f * (out[i] - m.clean[i]) / m.n;
    sr_unet_put_images(&m.wk, dout, m.wk.d_output);
    memcpy(m.wk.d_means, wmeans, sizeof(float) * nmeans);
    sr_unet_backward(&m.net, &m.wk, SR_UPTO_OUTPUT, m.wk.d_output, m.wk.d_means, NULL, true);
    sr_unet_get_images(&m.wk, sr_unet_input_grad(&m.wk), g);
    for (unsigned d = 0; d < 4; d++) {
        float *v = uniform(45 + d, -1, 1, m.images);
        CU_ASSERT(directional_check(&m, y, false, y, m.images, v, g, "residual UNet d input") < 1e-2);
        free(v);
    }
    free(y), free(out), free(g), free(dout), free(wmeans);
    model_free(&m);
}

/* Two Adam steps against PyTorch's update rule evaluated by hand in double. */
static void test_adam_closed_form(void)
{
    model m;
    model_init(&m, SR_OUTPUT_CLEAN);
    const size_t n = m.net.param_floats;
    float *p0 = malloc(sizeof(float) * n), *g = uniform(50, -1, 1, n);
    memcpy(p0, m.net.param, sizeof(float) * n);
    sr_adam adam;
    sr_adam_init(&adam, &m.net, 1e-3f);
    sr_adam_step(&adam, &m.net, g);
    for (size_t i = 0; i < n; i++) g[i] *= -0.5f; /* second gradient */
    sr_adam_step(&adam, &m.net, g);
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        const double g2 = g[i], g1 = -2.0 * g2;
        const double m1 = 0.1 * g1, v1 = 0.001 * g1 * g1;
        const double p1 = p0[i] - 1e-3 * (m1 / 0.1) / (sqrt(v1 / 0.001) + 1e-8);
        const double m2 = 0.9 * m1 + 0.1 * g2, v2 = 0.999 * v1 + 0.001 * g2 * g2;
        const double bc1 = 1 - 0.81, bc2 = 1 - 0.999 * 0.999;
        const double p2 = p1 - 1e-3 * (m2 / bc1) / (sqrt(v2 / bc2) + 1e-8);
        worst = fmax(worst, fabs(p2 - m.net.param[i]));
    }
    printf("\n    Adam two steps: max |difference| %.2e", worst);
    CU_ASSERT(worst < 1e-6);
    sr_adam_free(&adam);
    free(p0), free(g);
    model_free(&m);
}

/* The projection's masked Adam: two steps with gradients g and -g/2 against
 * the rule by hand in double, on images in the engine's layout ([c][n][hw]);
 * the images not active keep their pixels and moments bit for bit. */
static void test_adam_masked_closed_form(void)
{
    enum { C = 3, N = 4, HW = 50, COUNT = C * N * HW };
    const uint8_t active[N] = {1, 0, 1, 0};
    float *p = uniform(51, -1, 1, COUNT), *g = uniform(52, -1, 1, COUNT), *p0 = malloc(sizeof(float) * COUNT);
    float *mv = calloc(2 * COUNT, sizeof(float));
    memcpy(p0, p, sizeof(float) * COUNT);
    sr_be_adam_masked(be, p, g, mv, mv + COUNT, C, N, HW, active, 0.01, 0.9f, 0.999f, 1e-8f, 1);
    for (size_t e = 0; e < COUNT; e++) g[e] *= -0.5f;
    sr_be_adam_masked(be, p, g, mv, mv + COUNT, C, N, HW, active, 0.01, 0.9f, 0.999f, 1e-8f, 2);
    double worst = 0.0;
    int kept = 1;
    for (size_t e = 0; e < COUNT; e++) {
        if (!active[(e / HW) % N]) {
            kept &= p[e] == p0[e] && mv[e] == 0.0f && mv[COUNT + e] == 0.0f;
            continue;
        }
        const double g2 = g[e], g1 = -2.0 * g2;
        const double m1 = 0.1 * g1, v1 = 0.001 * g1 * g1;
        const double p1 = p0[e] - 0.01 * (m1 / 0.1) / (sqrt(v1 / 0.001) + 1e-8);
        const double m2 = 0.9 * m1 + 0.1 * g2, v2 = 0.999 * v1 + 0.001 * g2 * g2;
        const double p2 = p1 - 0.01 * (m2 / (1 - 0.81)) / (sqrt(v2 / (1 - 0.999 * 0.999)) + 1e-8);
        worst = fmax(worst, fabs(p2 - p[e]));
    }
    printf("\n    masked Adam two steps: max |difference| %.2e", worst);
    CU_ASSERT(worst < 1e-6);
    CU_ASSERT(kept);
    free(p), free(g), free(p0), free(mv);
}

int main(void)
{
    be = sr_backend_cpu_new(0);
    const sr_test tests[] = {
        {"conv3x3 backward vs finite differences", test_conv3x3},
        {"conv3x3 forward (Winograd and unfolding) vs a direct sum", test_conv3x3_forward_direct},
        {"convtranspose2x2 backward vs finite differences", test_convt2x2},
        {"layer StdNorm + ReLU backward", test_unit_layer_norm},
        {"batch StdNorm (running sd) + ReLU backward", test_unit_batch_norm},
        {"bias + ReLU backward", test_unit_relu},
        {"bias backward", test_unit_plain},
        {"avgpool and block means backward", test_pool_and_means},
        {"encoder+mid input gradient vs finite differences", test_encoder_input_gradient},
        {"UNet parameter gradient vs finite differences", test_unet_parameter_gradient},
        {"residual UNet input gradient (output and block means)", test_residual_input_gradient},
        {"Adam vs closed form", test_adam_closed_form},
        {"masked Adam (the projection's) vs closed form", test_adam_masked_closed_form},
        {NULL, NULL},
    };
    return sr_test_run("layers", tests);
}
