/* The linear probe (stages/probe.h, docs/analysis.md). The objective, over
 * the n training images with standardised features z and labels y:
 *
 *     f(W, b) = (1/n) sum_i -log softmax(W^T z_i + b)_{y_i} + (lambda/2) |W|^2
 *
 * (the bias is not penalised), minimised by full-batch L-BFGS with a
 * backtracking (Armijo) line search from W = 0, b = 0. */
#include "stages/probe.h"

#include <cblas.h>
#include <math.h>
#include <netcdf.h>
#include <netcdf_par.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/clock.h"
#include "core/rng.h"
#include "io/nc.h"
#include "stages/kmeans.h"

#define BLOCK SR_KMEANS_ROW_ALIGN /* rows per block of every sum: a rank's first row starts one */
#define MEMORY 10                 /* L-BFGS's pairs kept */
#define HALVINGS 40               /* line search: the step halved at most this often */
#define ARMIJO 1e-4               /* line search: the share of the predicted decrease asked for */

/* ---- the split ----------------------------------------------------------- */

void sr_probe_plan(sr_probe *p, const semrep_conf *conf, const int *labels, long images, int classes, long first,
                   long end)
{
    *p = (sr_probe){.conf = conf, .classes = classes, .images = images, .first = first, .count = end - first,
                    .labels = labels + first};
    p->split = SR_MALLOC((size_t)(end > first ? end - first : 1), "the probe's split");
    long *n = SR_MALLOC(sizeof(long) * 3 * (size_t)(classes ? classes : 1), "the probe's class counts");
    long *want = n + classes, *seen = want + classes;
    memset(n, 0, sizeof(long) * 3 * (size_t)classes);
    int present = 0;
    for (long i = 0; i < images; i++)
        if (labels[i] >= 0 && labels[i] < classes) present += n[labels[i]]++ == 0;
    for (int c = 0; c < classes; c++) want[c] = (long)floor(conf->probe.test_share * (double)n[c] + 0.5);
    /* selection sampling in each class: image i of class c is a test image
     * when (n_c - seen_c) u_i < want_c, the test images still wanted of c */
    const sr_rng_stream st = {.seed = (uint32_t)conf->seed, .domain = SR_RNG_CLUSTER, .i0 = SR_PROBE_STREAM};
    float u[4096];
    for (long i0 = 0; i0 < images; i0 += 4096) {
        const long b = images - i0 < 4096 ? images - i0 : 4096;
        sr_rng_uniform(&st, (uint64_t)i0, (size_t)b, u);
        for (long i = i0; i < i0 + b; i++) {
            const int c = labels[i];
            signed char part = -1;
            if (c >= 0 && c < classes) {
                part = (double)(n[c] - seen[c]++) * u[i - i0] < (double)want[c];
                want[c] -= part;
                if (part) p->test++;
                else p->train++;
            }
            if (i >= first && i < end) p->split[i - first] = part;
        }
    }
    free(n);
    if (!conf->probe.enabled) snprintf(p->note, sizeof p->note, "off (probe.enabled = false)");
    else if (!classes) snprintf(p->note, sizeof p->note, "skipped: the images have no labels");
    else if (present < 2) snprintf(p->note, sizeof p->note, "skipped: the labelled images are of %d class%s", present,
                                    present ? "" : "es");
    else if (!p->train || !p->test)
        snprintf(p->note, sizeof p->note, "skipped: probe.test_share = %g leaves %ld training and %ld test images",
                 conf->probe.test_share, p->train, p->test);
    else p->on = true;
}

/* ---- the file ------------------------------------------------------------ */

/* A space's probe variables, in the order of SR_PROBE_*: phi's with the
 * sigma dimension first, the pixels' prefixed pixel_ without it; the
 * weights' features along `channel` (phi) or `pixel_feature`, set by define_space. */
static const sr_nc_var probe_vars[SR_PROBE_VARS] = {
    {"probe_test_accuracy", NC_DOUBLE, "", NULL, "the probe's accuracy on the test part"},
    {"probe_train_accuracy", NC_DOUBLE, "", NULL, "the probe's accuracy on the training part"},
    {"probe_class_accuracy", NC_DOUBLE, "class", NULL, "the probe's test accuracy per class (NaN: no test image of the class)"},
    {"probe_loss", NC_DOUBLE, "", NULL, "the objective at the end: mean cross-entropy of the training part + lambda/2 |W|^2"},
    {"probe_iterations", NC_INT, "", NULL, "L-BFGS iterations taken"},
    {"probe_weights", NC_DOUBLE, "channel class", NULL, "W: logits = z W + b, z the standardised features"},
    {"probe_bias", NC_DOUBLE, "class", NULL, "b (summing to 0)"},
};

static void define_space(int ncid, const char *prefix, const char *lead, const char *feature, int *v, const char *file)
{
    sr_nc_var rows[SR_PROBE_VARS];
    char weights_dims[64];
    memcpy(rows, probe_vars, sizeof rows);
    snprintf(weights_dims, sizeof weights_dims, "%s class", feature);
    rows[SR_PROBE_W].dims = weights_dims;
    sr_nc_define_space(ncid, rows, SR_PROBE_VARS, prefix, lead, v, file);
    for (int i = 0; i < SR_PROBE_VARS; i++) SR_NC(nc_var_par_access(ncid, v[i], NC_INDEPENDENT), file);
}

void sr_probe_define(sr_probe *p, int ncid, int channels, int pixel_dim, const char *file)
{
    const semrep_conf *c = p->conf;
    if (!p->on) {
        sr_nc_put_text(ncid, NC_GLOBAL, "probe_note", p->note, file);
        return;
    }
    int dim;
    SR_NC(nc_def_dim(ncid, "class", (size_t)p->classes, &dim), file);
    SR_NC(nc_def_dim(ncid, "channel", (size_t)channels, &dim), file);
    static const sr_nc_var split = {"probe_split", NC_BYTE, "image", NULL, "0: training part, 1: test part, -1: no label"};
    sr_nc_define_vars(ncid, &split, 1, "", &p->v_split, file);
    SR_NC(nc_var_par_access(ncid, p->v_split, NC_INDEPENDENT), file);
    define_space(ncid, "", "sigma", "channel", p->v_phi, file);
    if (pixel_dim) {
        SR_NC(nc_def_dim(ncid, "pixel_feature", (size_t)pixel_dim, &dim), file);
        define_space(ncid, "pixel_", NULL, "pixel_feature", p->v_pix, file);
    }
    const long long sizes[3] = {p->train, p->test, c->seed};
    SR_NC(nc_put_att_longlong(ncid, NC_GLOBAL, "probe_train_images", NC_INT64, 1, &sizes[0]), file);
    SR_NC(nc_put_att_longlong(ncid, NC_GLOBAL, "probe_test_images", NC_INT64, 1, &sizes[1]), file);
    SR_NC(nc_put_att_longlong(ncid, NC_GLOBAL, "probe_seed", NC_INT64, 1, &sizes[2]), file);
    SR_NC(nc_put_att_double(ncid, NC_GLOBAL, "probe_test_share", NC_DOUBLE, 1, &c->probe.test_share), file);
    SR_NC(nc_put_att_double(ncid, NC_GLOBAL, "probe_lambda", NC_DOUBLE, 1, &c->probe.lambda), file);
    SR_NC(nc_put_att_double(ncid, NC_GLOBAL, "probe_tolerance", NC_DOUBLE, 1, &c->probe.tolerance), file);
    sr_nc_put_ints(ncid, NC_GLOBAL, "probe_max_iterations", &c->probe.iterations, 1, file);
    sr_nc_put_text(ncid, NC_GLOBAL, "probe_optimiser",
                   "full-batch L-BFGS (10 pairs, Armijo backtracking) from 0, standardised features", file);
}

void sr_probe_write_split(const sr_probe *p, int ncid, const char *file)
{
    if (!p->on || !p->count) return;
    const size_t start = (size_t)p->first, count = (size_t)p->count;
    SR_NC(nc_put_vara_schar(ncid, p->v_split, &start, &count, p->split), file);
}

/* ---- the objective ------------------------------------------------------- */

typedef struct {
    const sr_probe *p;
    const semrep_comm *comm;
    const float *rows;        /* this rank's, count x dim */
    int dim, classes, params; /* params: dim x classes weights, then classes biases */
    int threads;
    long blocks, all_blocks;  /* this rank's blocks of BLOCK rows, and all ranks' */
    double *mean, *scale;     /* per feature: the training part's mean and 1/sd */
    int e_grad;               /* the gradient's grid: a block's terms are at most BLOCK x the largest |z| */
    int64_t *acc;             /* threads x (params + 1) */
    double *loss;             /* per block */
    double *work;             /* threads x stride */
    size_t stride;
} fit;

static double dot(const double *a, const double *b, int n)
{
    double s = 0.0; /* one thread, in order: the same bits on every rank */
    for (int j = 0; j < n; j++) s += a[j] * b[j];
    return s;
}

/* The largest |v| of a rank's values, over all ranks, and the grid for
 * sums of `terms` such values. */
static int grid_for(const semrep_comm *comm, double largest, double terms)
{
    sr_comm_max(comm, &largest, 1);
    return sr_grid_exponent(largest, terms);
}

/* The training part's mean and 1/sd per feature (sd the population's, as
 * scikit-learn's StandardScaler; a zero sd counts as 1), each sum exact on
 * the grid. Returns the largest |z| of a training row, over all ranks. */
static double standardise(fit *x)
{
    const int D = x->dim;
    const sr_probe *p = x->p;
    int64_t *sum = SR_MALLOC(sizeof(int64_t) * (size_t)D, "the probe's feature sums");
    for (int pass = 0; pass < 2; pass++) { /* the mean, then the variance */
        double largest = 0.0;
        for (long i = 0; i < p->count; i++)
            for (int d = 0; p->split[i] == 0 && d < D; d++) {
                const double v = x->rows[(size_t)i * D + d] - (pass ? x->mean[d] : 0.0);
                largest = fmax(largest, pass ? v * v : fabs(v));
            }
        const int e = grid_for(x->comm, largest, (double)p->train);
        memset(sum, 0, sizeof(int64_t) * (size_t)D);
        for (long i = 0; i < p->count; i++)
            for (int d = 0; p->split[i] == 0 && d < D; d++) {
                const double v = x->rows[(size_t)i * D + d] - (pass ? x->mean[d] : 0.0);
                sum[d] += sr_on_grid(pass ? v * v : v, e);
            }
        sr_comm_sum_exact(x->comm, sum, D);
        for (int d = 0; d < D; d++) {
            const double m = sr_off_grid(sum[d], e) / (double)p->train;
            if (pass) x->scale[d] = m > 0.0 ? 1.0 / sqrt(m) : 1.0;
            else x->mean[d] = m;
        }
    }
    free(sum);
    double zmax = 0.0;
    for (long i = 0; i < p->count; i++)
        for (int d = 0; p->split[i] == 0 && d < D; d++)
            zmax = fmax(zmax, fabs((x->rows[(size_t)i * D + d] - x->mean[d]) * x->scale[d]));
    sr_comm_max(x->comm, &zmax, 1);
    return zmax;
}

/* The rows of the block at local row i0 that are labelled (train_only: of
 * the training part), standardised into z, their labels into y and their
 * part into part; returns how many. */
static int block_rows(const fit *x, long i0, int train_only, double *z, int *y, int *part)
{
    const sr_probe *p = x->p;
    const long end = p->count - i0 < BLOCK ? p->count : i0 + BLOCK;
    int m = 0;
    for (long i = i0; i < end; i++) {
        if (p->split[i] < 0 || (train_only && p->split[i])) continue;
        const float *row = x->rows + (size_t)i * x->dim;
        for (int d = 0; d < x->dim; d++) z[(size_t)m * x->dim + d] = (row[d] - x->mean[d]) * x->scale[d];
        y[m] = p->labels[i];
        part[m++] = p->split[i];
    }
    return m;
}

/* l = z W + b for m rows. */
static void logits(const fit *x, const double *theta, const double *z, int m, double *l)
{
    const int C = x->classes;
    for (int r = 0; r < m; r++) memcpy(l + (size_t)r * C, theta + (size_t)x->dim * C, sizeof(double) * C);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, C, x->dim, 1.0, z, x->dim, theta, C, 1.0, l, C);
}

/* One block's training rows: returns their summed cross-entropy and adds
 * their gradient (z^T (softmax - onehot), then the bias's) to acc on the grid. */
static double block_terms(const fit *x, long i0, const double *theta, double *z, double *l, double *g, int64_t *acc)
{
    const int D = x->dim, C = x->classes;
    int y[BLOCK], part[BLOCK];
    const int m = block_rows(x, i0, 1, z, y, part);
    if (!m) return 0.0;
    logits(x, theta, z, m, l);
    double loss = 0.0;
    for (int r = 0; r < m; r++) {
        double *lr = l + (size_t)r * C, top = lr[0], s = 0.0;
        for (int c = 1; c < C; c++) top = fmax(top, lr[c]);
        for (int c = 0; c < C; c++) s += exp(lr[c] - top);
        loss += log(s) + top - lr[y[r]];
        for (int c = 0; c < C; c++) lr[c] = exp(lr[c] - top) / s - (c == y[r]);
    }
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, D, C, m, 1.0, z, D, l, C, 0.0, g, C);
    for (int c = 0; c < C; c++) {
        g[(size_t)D * C + c] = 0.0;
        for (int r = 0; r < m; r++) g[(size_t)D * C + c] += l[(size_t)r * C + c];
    }
    for (int j = 0; j < x->params; j++) acc[j] += sr_on_grid(g[j], x->e_grad);
    return loss;
}

/* f(theta) and its gradient, the same bits on every rank and rank count:
 * each block's terms on the grid, added exactly over threads and ranks. */
static double objective(fit *x, const double *theta, double *grad)
{
    const int P = x->params, D = x->dim, C = x->classes;
    memset(x->acc, 0, sizeof(int64_t) * (size_t)x->threads * (P + 1));
#pragma omp parallel num_threads(x->threads)
    {
        const int t = omp_get_thread_num();
        double *z = x->work + (size_t)t * x->stride, *l = z + (size_t)BLOCK * D, *g = l + (size_t)BLOCK * C;
#pragma omp for schedule(static)
        for (long k = 0; k < x->blocks; k++)
            x->loss[k] = block_terms(x, k * BLOCK, theta, z, l, g, x->acc + (size_t)t * (P + 1));
    }
    int64_t *acc = x->acc;
    for (int t = 1; t < x->threads; t++)
        for (int j = 0; j < P; j++) acc[j] += acc[(size_t)t * (P + 1) + j];
    double largest = 0.0;
    for (long k = 0; k < x->blocks; k++) largest = fmax(largest, x->loss[k]);
    const int e = grid_for(x->comm, largest, (double)x->all_blocks);
    acc[P] = 0;
    for (long k = 0; k < x->blocks; k++) acc[P] += sr_on_grid(x->loss[k], e);
    sr_comm_sum_exact(x->comm, acc, P + 1);
    const double n = (double)x->p->train, lambda = x->p->conf->probe.lambda;
    double w2 = 0.0;
    for (int j = 0; j < P; j++) {
        grad[j] = sr_off_grid(acc[j], x->e_grad) / n;
        if (j < D * C) grad[j] += lambda * theta[j], w2 += theta[j] * theta[j];
    }
    return sr_off_grid(acc[P], e) / n + 0.5 * lambda * w2;
}

/* ---- L-BFGS ---------------------------------------------------------------- */

/* d = -H g, H L-BFGS's inverse Hessian from the kept pairs (s, y) in ring
 * slots newest, newest - 1, ... (two-loop recursion; Nocedal & Wright 7.4). */
static void direction(const double *g, const double *S, const double *Y, const double *rho, int kept, int newest,
                      int P, double *d)
{
    double alpha[MEMORY];
    memcpy(d, g, sizeof(double) * P);
    for (int k = 0; k < kept; k++) {
        const int i = (newest - k + MEMORY) % MEMORY;
        alpha[i] = rho[i] * dot(S + (size_t)i * P, d, P);
        for (int j = 0; j < P; j++) d[j] -= alpha[i] * Y[(size_t)i * P + j];
    }
    if (kept) {
        const double *y = Y + (size_t)newest * P, gamma = dot(S + (size_t)newest * P, y, P) / dot(y, y, P);
        for (int j = 0; j < P; j++) d[j] *= gamma;
    }
    for (int k = kept - 1; k >= 0; k--) {
        const int i = (newest - k + MEMORY) % MEMORY;
        const double beta = rho[i] * dot(Y + (size_t)i * P, d, P);
        for (int j = 0; j < P; j++) d[j] += (alpha[i] - beta) * S[(size_t)i * P + j];
    }
    for (int j = 0; j < P; j++) d[j] = -d[j];
}

static double max_abs(const double *v, int n)
{
    double m = 0.0;
    for (int j = 0; j < n; j++) m = fmax(m, fabs(v[j]));
    return m;
}

/* Minimises f from theta (in place) until max |gradient| <= probe.tolerance,
 * probe.iterations, or no step decreases f; returns the iterations, f in *f. */
static int minimise(fit *x, double *theta, double *f)
{
    const int P = x->params;
    double *buf = SR_MALLOC(sizeof(double) * (size_t)P * (4 + 2 * MEMORY), "the probe's L-BFGS state");
    double *g = buf, *gn = g + P, *tn = gn + P, *d = tn + P, *S = d + P, *Y = S + (size_t)MEMORY * P, rho[MEMORY];
    *f = objective(x, theta, g);
    int it = 0, kept = 0, newest = MEMORY - 1;
    for (; it < x->p->conf->probe.iterations && max_abs(g, P) > x->p->conf->probe.tolerance; it++) {
        direction(g, S, Y, rho, kept, newest, P, d);
        double gd = dot(g, d, P), step = it ? 1.0 : fmin(1.0, 1.0 / sqrt(dot(g, g, P))), fn = *f;
        if (!(gd < 0.0)) { /* not a descent direction (rounding): start again from the gradient */
            for (int j = 0; j < P; j++) d[j] = -g[j];
            gd = -dot(g, g, P), kept = 0;
        }
        int h = 0;
        for (; h < HALVINGS; h++, step *= 0.5) {
            for (int j = 0; j < P; j++) tn[j] = theta[j] + step * d[j];
            fn = objective(x, tn, gn);
            if (fn <= *f + ARMIJO * step * gd) break;
        }
        if (h == HALVINGS) break; /* f no longer decreases in double precision */
        const int slot = (newest + 1) % MEMORY;
        double *s = S + (size_t)slot * P, *y = Y + (size_t)slot * P;
        for (int j = 0; j < P; j++) s[j] = tn[j] - theta[j], y[j] = gn[j] - g[j];
        const double sy = dot(s, y, P);
        if (sy > 0.0) newest = slot, rho[slot] = 1.0 / sy, kept += kept < MEMORY;
        else kept = 0; /* the slot may have held the oldest pair */
        memcpy(theta, tn, sizeof(double) * P), memcpy(g, gn, sizeof(double) * P);
        *f = fn;
    }
    free(buf);
    return it;
}

/* ---- measuring and writing ------------------------------------------------- */

/* counts (4 x classes, all ranks): per class, its test images, the correct
 * ones among them, then the same for the training part. The predicted
 * class is the largest logit (a tie: the lower class). */
static void evaluate(const fit *x, const double *theta, double *counts)
{
    const int C = x->classes;
    memset(counts, 0, sizeof(double) * 4 * (size_t)C);
    double *z = x->work, *l = z + (size_t)BLOCK * x->dim;
    int y[BLOCK], part[BLOCK];
    for (long k = 0; k < x->blocks; k++) {
        const int m = block_rows(x, k * BLOCK, 0, z, y, part);
        if (!m) continue;
        logits(x, theta, z, m, l);
        for (int r = 0; r < m; r++) {
            int best = 0;
            for (int c = 1; c < C; c++)
                if (l[(size_t)r * C + c] > l[(size_t)r * C + best]) best = c;
            double *at = counts + (part[r] ? 0 : 2 * (size_t)C);
            at[y[r]] += 1.0;
            at[C + y[r]] += best == y[r];
        }
    }
    sr_comm_sum(x->comm, counts, 4 * C); /* whole numbers: exact */
}

typedef struct {
    double test, train, loss, *per_class;
    int iterations;
} fit_result;

/* Rank 0: a space's results at sigma slot s (-1: the pixels). */
static void write_result(const sr_probe *p, int s, const fit_result *res, const double *theta, int dim, int ncid,
                         const char *file)
{
    const int *v = s >= 0 ? p->v_phi : p->v_pix;
    const size_t o = s >= 0, start[3] = {(size_t)(s >= 0 ? s : 0), 0, 0}, one[1] = {1},
                 cc[2] = {1, (size_t)p->classes}, cw[3] = {1, (size_t)dim, (size_t)p->classes};
    SR_NC(nc_put_vara_double(ncid, v[SR_PROBE_TEST], start, one, &res->test), file);
    SR_NC(nc_put_vara_double(ncid, v[SR_PROBE_TRAIN], start, one, &res->train), file);
    SR_NC(nc_put_vara_double(ncid, v[SR_PROBE_LOSS], start, one, &res->loss), file);
    SR_NC(nc_put_vara_int(ncid, v[SR_PROBE_ITER], start, one, &res->iterations), file);
    SR_NC(nc_put_vara_double(ncid, v[SR_PROBE_CLASS], start + 1 - o, cc + 1 - o, res->per_class), file);
    SR_NC(nc_put_vara_double(ncid, v[SR_PROBE_W], start + 1 - o, cw + 1 - o, theta), file);
    SR_NC(nc_put_vara_double(ncid, v[SR_PROBE_B], start + 1 - o, cc + 1 - o, theta + (size_t)dim * p->classes), file);
}

static void fit_open(fit *x, const sr_probe *p, const semrep_comm *comm, const float *rows, int dim)
{
    const int C = p->classes;
    *x = (fit){.p = p, .comm = comm, .rows = rows, .dim = dim, .classes = C, .params = dim * C + C,
               .threads = omp_get_max_threads(), .blocks = (p->count + BLOCK - 1) / BLOCK,
               .all_blocks = (p->images + BLOCK - 1) / BLOCK};
    x->stride = (size_t)BLOCK * dim + (size_t)BLOCK * C + (size_t)x->params;
    x->mean = SR_MALLOC(sizeof(double) * 2 * (size_t)dim, "the probe's standardisation");
    x->scale = x->mean + dim;
    x->acc = SR_MALLOC(sizeof(int64_t) * (size_t)x->threads * (x->params + 1), "the probe's gradient sums");
    x->loss = SR_MALLOC(sizeof(double) * (size_t)(x->blocks ? x->blocks : 1), "the probe's block losses");
    x->work = SR_MALLOC(sizeof(double) * (size_t)x->threads * x->stride, "the probe's blocks");
}

void sr_probe_fit(sr_probe *p, const semrep_comm *comm, int s, const float *rows, int dim, int ncid, const char *file)
{
    if (!p->on) return;
    const double t0 = sr_seconds();
    fit x;
    fit_open(&x, p, comm, rows, dim);
    const int C = p->classes;
    x.e_grad = sr_grid_exponent(BLOCK * fmax(standardise(&x), 1.0), (double)x.all_blocks);
    double *theta = SR_MALLOC(sizeof(double) * (size_t)x.params, "the probe's weights");
    memset(theta, 0, sizeof(double) * (size_t)x.params);
    fit_result res = {.per_class = SR_MALLOC(sizeof(double) * (size_t)C, "the probe's accuracy per class")};
    res.iterations = minimise(&x, theta, &res.loss);
    double *counts = SR_MALLOC(sizeof(double) * 4 * (size_t)C, "the probe's counts"), all[4] = {0};
    evaluate(&x, theta, counts);
    for (int c = 0; c < C; c++) {
        for (int j = 0; j < 4; j++) all[j] += counts[(size_t)j * C + c];
        res.per_class[c] = counts[c] > 0.0 ? counts[C + c] / counts[c] : NAN;
    }
    res.test = all[1] / all[0], res.train = all[3] / all[2];
    if (comm->rank == 0) write_result(p, s, &res, theta, dim, ncid, file);
    if (s >= 0) p->accuracy[s] = res.test, p->iterations[s] = res.iterations;
    else p->pixel_accuracy = res.test, p->pixel_iterations = res.iterations;
    p->seconds += sr_seconds() - t0;
    free(counts), free(res.per_class), free(theta);
    free(x.mean), free(x.acc), free(x.loss), free(x.work);
}

void sr_probe_print(const sr_probe *p, int nsigma, const double *sigma, bool pixels)
{
    if (!p->on) {
        printf("  probe: %s\n", p->note);
        return;
    }
    printf("  probe: test accuracy");
    for (int s = 0; s < nsigma; s++) printf("%s phi %.4g %.3f", s ? "," : "", sigma[s] * 255.0, p->accuracy[s]);
    if (pixels) printf(", pixels %.3f", p->pixel_accuracy);
    int most = pixels ? p->pixel_iterations : 0;
    for (int s = 0; s < nsigma; s++) most = p->iterations[s] > most ? p->iterations[s] : most;
    printf(" (%ld training, %ld test images; lambda %g; %d L-BFGS iterations at most%s; %.1f s)\n", p->train, p->test,
           p->conf->probe.lambda, most, most >= p->conf->probe.iterations ? ", the limit: raise probe.iterations" : "",
           p->seconds);
}

void sr_probe_free(sr_probe *p)
{
    free(p->split);
    p->split = NULL;
}
