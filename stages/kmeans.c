#include "stages/kmeans.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/rng.h"

#define ROUNDS 5 /* k-means|| rounds; the paper's choice of 5 suffices */
#define BLOCK 64 /* rows per distance block */
/* rows per block of centre sums: the one-hot GEMM costs (clusters in the
 * block) x rows x dim, at most SUM_BLOCK x dim per row */
#define SUM_BLOCK 64
_Static_assert(SR_KMEANS_ROW_ALIGN % BLOCK == 0 && BLOCK % SUM_BLOCK == 0,
               "a rank's first row starts a block of either kind");

/* Sums the same on any rank count (comm.h's grid): e for the largest term
 * of any rank. */
static int grid_exponent(const semrep_comm *comm, double largest, double terms)
{
    sr_comm_max(comm, &largest, 1);
    return sr_grid_exponent(largest, terms);
}

/* The sum over all ranks of each rank's n values (total of them on all
 * ranks), the same bits on any rank count. */
static double exact_total(const semrep_comm *comm, const float *v, long n, long total)
{
    double largest = 0.0;
    for (long i = 0; i < n; i++) largest = fabs(v[i]) > largest ? fabs(v[i]) : largest;
    const int e = grid_exponent(comm, largest, (double)total);
    int64_t sum = 0;
    for (long i = 0; i < n; i++) sum += sr_on_grid(v[i], e);
    sr_comm_sum_exact(comm, &sum, 1);
    return sr_off_grid(sum, e);
}

float *sr_backend_copy(const sr_backend *be, const float *host, size_t count, const char *what)
{
    if (sr_be_host_memory(be)) return (float *)host;
    float *dev = sr_be_alloc(be, sizeof(float) * (count ? count : 1));
    SR_CHECK(dev, "out of %s memory for %s (%zu floats); use fewer images per rank or more ranks", sr_be_name(be), what,
             count);
    sr_be_to_device(be, dev, host, sizeof(float) * count);
    return dev;
}

void sr_backend_drop(const sr_backend *be, float *dev, const float *host)
{
    if (dev && dev != host) sr_be_release(be, dev);
}

float *sr_backend_work(const sr_backend *be, size_t count, const char *what)
{
    if (sr_be_host_memory(be)) return NULL;
    float *dev = sr_be_alloc(be, sizeof(float) * (count ? count : 1));
    SR_CHECK(dev, "out of %s memory for %s (%zu floats); use fewer images per rank or more ranks", sr_be_name(be), what,
             count);
    return dev;
}

void sr_squared_norms(const float *x, long n, int dim, float *norm)
{
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) norm[i] = cblas_sdot(dim, x + (size_t)i * dim, 1, x + (size_t)i * dim, 1);
}

void sr_distances(const sr_backend *be, const float *x, const float *xn, long n, const float *c, const float *cn,
                  long m, int dim, float *work, float *d2)
{
    /* d2 = -2 x c^T, then the squared norms added */
    float *out = sr_be_host_memory(be) ? d2 : work;
    sr_be_gemm(be, false, true, (int)n, (int)m, dim, -2.0f, x, dim, c, dim, 0.0f, out, (int)m);
    if (!sr_be_host_memory(be)) sr_be_to_host(be, d2, work, sizeof(float) * (size_t)n * m);
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) {
        float *row = d2 + (size_t)i * m;
        for (long j = 0; j < m; j++) {
            const float v = row[j] + xn[i] + cn[j];
            row[j] = v > 0.0f ? v : 0.0f;
        }
    }
}

void sr_kmeans_data_open(const sr_backend *be, const float *rows, long count, long first, long total, int dim,
                         sr_kmeans_data *data)
{
    *data = (sr_kmeans_data){.be = be, .rows = rows, .count = count, .first = first, .total = total, .dim = dim};
    data->dev = sr_backend_copy(be, rows, (size_t)count * dim, "the rows to cluster");
    data->norm = SR_MALLOC(sizeof(float) * (size_t)(count ? count : 1), "the rows' norms");
    sr_squared_norms(rows, count, dim, data->norm);
}

void sr_kmeans_data_close(sr_kmeans_data *data)
{
    sr_backend_drop(data->be, data->dev, data->rows);
    free(data->norm);
}

/* Each row's nearest of k centres (host) and squared distance; rows in
 * blocks so the distance matrix stays small. */
static void assign(const sr_kmeans_data *x, const float *c, int k, int *label, float *best)
{
    const sr_backend *be = x->be;
    const int dim = x->dim;
    float *cn = SR_MALLOC(sizeof(float) * (size_t)k, "centre norms");
    sr_squared_norms(c, k, dim, cn);
    float *cd = sr_backend_copy(be, c, (size_t)k * dim, "the k-means centres");
    float *scratch = SR_MALLOC(sizeof(float) * BLOCK * (size_t)k, "k-means distances");
    float *work = sr_backend_work(be, BLOCK * (size_t)k, "k-means distances");
    for (long i0 = 0; i0 < x->count; i0 += BLOCK) {
        const long b = x->count - i0 < BLOCK ? x->count - i0 : BLOCK;
        sr_distances(be, x->dev + (size_t)i0 * dim, x->norm + i0, b, cd, cn, k, dim, work, scratch);
        for (long i = 0; i < b; i++) {
            const float *row = scratch + (size_t)i * k;
            int arg = 0;
            for (int j = 1; j < k; j++)
                if (row[j] < row[arg]) arg = j;
            label[i0 + i] = arg;
            best[i0 + i] = row[arg];
        }
    }
    sr_backend_drop(be, work, NULL), sr_backend_drop(be, cd, c);
    free(scratch), free(cn);
}

/* Each cluster's sum of rows and count, added to sums [k][dim] (on the grid
 * of 2^-e) and counts: per block of rows, the one-hot matrix of the clusters
 * met in the block (at most SUM_BLOCK of them) times the block, through the
 * backend's GEMM. Blocks start at global multiples of SUM_BLOCK, so a
 * block's sum is the same on any rank count, and blocks add exactly. */
static void centre_sums(const sr_kmeans_data *x, const int *label, int k, int e, int64_t *sums, int64_t *counts)
{
    const sr_backend *be = x->be;
    const int dim = x->dim;
    int *slot = SR_MALLOC(sizeof(int) * (size_t)k, "k-means sums"), used[SUM_BLOCK];
    for (int c = 0; c < k; c++) slot[c] = -1;
    float *onehot = SR_MALLOC(sizeof(float) * SUM_BLOCK * SUM_BLOCK, "k-means sums");
    float *part = SR_MALLOC(sizeof(float) * SUM_BLOCK * (size_t)dim, "k-means sums");
    float *d_onehot = sr_be_host_memory(be) ? onehot : sr_backend_work(be, SUM_BLOCK * SUM_BLOCK, "k-means sums");
    float *d_part = sr_be_host_memory(be) ? part : sr_backend_work(be, SUM_BLOCK * (size_t)dim, "k-means sums");
    for (long i0 = 0; i0 < x->count; i0 += SUM_BLOCK) {
        const int b = (int)(x->count - i0 < SUM_BLOCK ? x->count - i0 : SUM_BLOCK);
        int u = 0;
        for (int i = 0; i < b; i++) {
            const int c = label[i0 + i];
            if (slot[c] < 0) slot[c] = u, used[u++] = c;
            counts[c] += 1;
        }
        memset(onehot, 0, sizeof(float) * (size_t)u * b);
        for (int i = 0; i < b; i++) onehot[(size_t)slot[label[i0 + i]] * b + i] = 1.0f;
        if (!sr_be_host_memory(be)) sr_be_to_device(be, d_onehot, onehot, sizeof(float) * (size_t)u * b);
        sr_be_gemm(be, false, false, u, dim, b, 1.0f, d_onehot, b, x->dev + (size_t)i0 * dim, dim, 0.0f, d_part, dim);
        if (!sr_be_host_memory(be)) sr_be_to_host(be, part, d_part, sizeof(float) * (size_t)u * dim);
        for (int j = 0; j < u; j++) {
            int64_t *s = sums + (size_t)used[j] * dim;
            for (int d = 0; d < dim; d++) s[d] += sr_on_grid(part[(size_t)j * dim + d], e);
            slot[used[j]] = -1;
        }
    }
    if (!sr_be_host_memory(be)) sr_be_release(be, d_onehot), sr_be_release(be, d_part);
    free(slot), free(onehot), free(part);
}

static float uniform_at(uint32_t seed, uint32_t restart, uint32_t round, long index)
{
    const sr_rng_stream s = {.seed = seed, .domain = SR_RNG_CLUSTER, .i0 = restart, .i1 = round};
    float u;
    sr_rng_uniform(&s, (uint64_t)index, 1, &u);
    return u;
}

/* Global row `index` to every rank (its owner broadcasts it). */
static void fetch_row(const semrep_comm *comm, const float *rows, long first, long count, long index, int dim,
                      float *out)
{
    double mine[2] = {index >= first && index < first + count ? (double)comm->rank : -1.0, 0};
    sr_comm_max(comm, mine, 1);
    if (index >= first && index < first + count) memcpy(out, rows + (size_t)(index - first) * dim, sizeof(float) * dim);
    sr_comm_bcast(comm, out, sizeof(float) * dim, (int)mine[0]);
}

/* Weighted k-means++ on the candidates: the same on every rank. */
static void weighted_plus_plus(const sr_backend *be, const float *cand, const double *weight, long m, int dim, int k,
                               uint32_t seed, uint32_t restart, float *centres)
{
    double *d2 = SR_MALLOC(sizeof(double) * (size_t)m, "k-means++");
    float *one = SR_MALLOC(sizeof(float) * (size_t)m, "k-means++");
    float *norm = SR_MALLOC(sizeof(float) * (size_t)m, "k-means++");
    sr_squared_norms(cand, m, dim, norm);
    float *d_cand = sr_backend_copy(be, cand, (size_t)m * dim, "the k-means|| candidates");
    float *d_centre = sr_backend_work(be, (size_t)dim, "a k-means++ centre");
    float *work = sr_backend_work(be, (size_t)m, "k-means++ distances");
    double total = 0.0;
    for (long i = 0; i < m; i++) total += weight[i];
    /* the first centre: by weight */
    double u = uniform_at(seed, restart, ROUNDS + 1, 0) * total, acc = 0.0;
    long pick = m - 1;
    for (long i = 0; i < m; i++)
        if ((acc += weight[i]) >= u) {
            pick = i;
            break;
        }
    memcpy(centres, cand + (size_t)pick * dim, sizeof(float) * dim);
    for (long i = 0; i < m; i++) d2[i] = DBL_MAX;
    for (int c = 1; c <= k; c++) {
        const float *centre = centres + (size_t)(c - 1) * dim;
        if (!sr_be_host_memory(be)) sr_be_to_device(be, d_centre, centre, sizeof(float) * dim);
        sr_distances(be, d_cand, norm, m, sr_be_host_memory(be) ? centre : d_centre, &norm[pick], 1, dim, work, one);
        double sum = 0.0;
        for (long i = 0; i < m; i++) {
            d2[i] = one[i] < d2[i] ? one[i] : d2[i];
            sum += weight[i] * d2[i];
        }
        if (c == k) break;
        u = uniform_at(seed, restart, ROUNDS + 2, c) * sum;
        acc = 0.0;
        pick = -1;
        for (long i = 0; i < m && pick < 0; i++)
            if (weight[i] * d2[i] > 0.0 && (acc += weight[i] * d2[i]) >= u) pick = i;
        if (pick < 0) /* every candidate is a centre already: repeat one */
            pick = c % m;
        memcpy(centres + (size_t)c * dim, cand + (size_t)pick * dim, sizeof(float) * dim);
    }
    sr_backend_drop(be, work, NULL), sr_backend_drop(be, d_centre, NULL), sr_backend_drop(be, d_cand, cand);
    free(d2), free(one), free(norm);
}

/* k-means||: candidates sampled in proportion to d^2, weighted, reduced to k. */
static void seed_centres(const semrep_comm *comm, const sr_kmeans_data *x, int k, uint32_t seed, uint32_t restart,
                         float *centres, int *label, float *best)
{
    const long count = x->count, first = x->first, total = x->total;
    const int dim = x->dim;
    const float *rows = x->rows;
    long m = 1, cap = 4 * (long)k * ROUNDS + 16;
    float *cand = SR_MALLOC(sizeof(float) * (size_t)cap * dim, "k-means|| candidates");
    fetch_row(comm, rows, first, count, (long)(uniform_at(seed, restart, 0, 0) * total) % total, dim, cand);
    assign(x, cand, 1, label, best);
    for (int round = 1; round <= ROUNDS; round++) {
        const double phi = exact_total(comm, best, count, total);
        if (phi <= 0.0) break;
        /* my sampled rows, in global order */
        float *picked = SR_MALLOC(sizeof(float) * (size_t)(count ? count : 1) * dim, "k-means|| samples");
        long npicked = 0;
        for (long i = 0; i < count; i++) {
            const double p = 2.0 * k * best[i] / phi;
            if (uniform_at(seed, restart, (uint32_t)round, first + i) < p)
                memcpy(picked + (size_t)npicked++ * dim, rows + (size_t)i * dim, sizeof(float) * dim);
        }
        char *all;
        size_t bytes;
        sr_comm_gather(comm, picked, sizeof(float) * (size_t)npicked * dim, &all, &bytes);
        long added = (long)(bytes / (sizeof(float) * dim));
        double n_added = (double)added;
        sr_comm_bcast(comm, &n_added, sizeof n_added, 0);
        added = (long)n_added;
        if (comm->rank != 0) all = SR_MALLOC(sizeof(float) * (size_t)(added ? added : 1) * dim, "k-means|| samples");
        sr_comm_bcast(comm, all, sizeof(float) * (size_t)added * dim, 0);
        if (m + added > cap) {
            cap = 2 * (m + added);
            cand = SR_REALLOC(cand, (size_t)cap * dim, sizeof(float), "the k-means|| candidates");
        }
        memcpy(cand + (size_t)m * dim, all, sizeof(float) * (size_t)added * dim);
        free(all);
        free(picked);
        /* nearest candidate distances, with the new ones in */
        if (added) {
            int *l2 = SR_MALLOC(sizeof(int) * (size_t)(count ? count : 1), "k-means||");
            float *b2 = SR_MALLOC(sizeof(float) * (size_t)(count ? count : 1), "k-means||");
            assign(x, cand + (size_t)m * dim, (int)added, l2, b2);
            for (long i = 0; i < count; i++)
                if (b2[i] < best[i]) best[i] = b2[i], label[i] = (int)m + l2[i];
            free(l2);
            free(b2);
        }
        m += added;
    }
    /* weight: how many rows each candidate is nearest to */
    assign(x, cand, (int)m, label, best);
    double *weight = SR_CALLOC((size_t)m, sizeof(double), "the candidates' weights");
    for (long i = 0; i < count; i++) weight[label[i]] += 1.0;
    sr_comm_sum(comm, weight, (int)m);
    weighted_plus_plus(x->be, cand, weight, m, dim, k, seed, restart, centres);
    free(weight);
    free(cand);
}

static double lloyd(const semrep_comm *comm, const sr_kmeans_data *x, int k, int max_iter, float *centres, int *label,
                    float *best, int *iterations)
{
    const long count = x->count, first = x->first;
    const int dim = x->dim;
    int64_t *sums = SR_MALLOC(sizeof(int64_t) * ((size_t)k * dim + k + 1), "k-means sums");
    double largest = 0.0;
    for (size_t i = 0; i < (size_t)count * dim; i++) largest = fabs(x->rows[i]) > largest ? fabs(x->rows[i]) : largest;
    const int e = grid_exponent(comm, largest, (double)x->total);
    for (int it = 0; it < max_iter; it++) {
        *iterations = it + 1;
        int *before = SR_MALLOC(sizeof(int) * (size_t)(count ? count : 1), "k-means");
        memcpy(before, label, sizeof(int) * (size_t)count);
        assign(x, centres, k, label, best);
        memset(sums, 0, sizeof(int64_t) * ((size_t)k * dim + k + 1));
        int64_t *counts = sums + (size_t)k * dim, *changed = counts + k;
        centre_sums(x, label, k, e, sums, counts);
        for (long i = 0; i < count; i++) *changed += it == 0 || before[i] != label[i];
        free(before);
        sr_comm_sum_exact(comm, sums, k * dim + k + 1);
        if (*changed == 0) break;
        for (int c = 0; c < k; c++) {
            if (counts[c] > 0) {
                for (int d = 0; d < dim; d++)
                    centres[(size_t)c * dim + d] = (float)(sr_off_grid(sums[(size_t)c * dim + d], e) / (double)counts[c]);
                continue;
            }
            /* an empty cluster takes the row farthest from its centre */
            double far[2] = {-1.0, -1.0};
            for (long i = 0; i < count; i++)
                if (best[i] > far[0]) far[0] = best[i], far[1] = (double)(first + i);
            double all[2] = {far[0], 0};
            sr_comm_max(comm, all, 1);
            /* of the rows that far, the lowest index: each rank's first, then the least of those */
            double who = far[0] == all[0] ? -far[1] : -DBL_MAX;
            sr_comm_max(comm, &who, 1);
            who = -who;
            fetch_row(comm, x->rows, first, count, (long)who, dim, centres + (size_t)c * dim);
            for (long i = 0; i < count; i++)
                if (first + i == (long)who) best[i] = 0.0f;
        }
    }
    free(sums);
    /* the assignment and distances of the final centres (an iteration cap or
     * an empty cluster's replacement may have moved them since) */
    assign(x, centres, k, label, best);
    /* the inertia from the rows themselves, in double: the GEMM's
     * |x|^2 - 2 x.c + |c|^2 in fp32 loses digits when the norms are large
     * next to the distances; summed in row order, so the same every run */
    double *each = SR_MALLOC(sizeof(double) * (size_t)(count ? count : 1), "k-means distances"), largest_d = 0.0;
    for (long i = 0; i < count; i++) {
        const float *xi = x->rows + (size_t)i * dim, *ci = centres + (size_t)label[i] * dim;
        double s = 0.0;
        for (int d = 0; d < dim; d++) s += ((double)xi[d] - ci[d]) * ((double)xi[d] - ci[d]);
        each[i] = s;
        largest_d = s > largest_d ? s : largest_d;
    }
    const int ei = grid_exponent(comm, largest_d, (double)x->total);
    int64_t sum = 0;
    for (long i = 0; i < count; i++) sum += sr_on_grid(each[i], ei);
    free(each);
    sr_comm_sum_exact(comm, &sum, 1);
    return sr_off_grid(sum, ei);
}

void sr_kmeans_run(const semrep_comm *comm, const sr_kmeans_data *x, int k, uint32_t seed, int restarts, int max_iter,
                   sr_kmeans *out)
{
    const long count = x->count;
    const int dim = x->dim;
    float *centres = SR_MALLOC(sizeof(float) * (size_t)k * dim, "k-means centres");
    int *label = SR_MALLOC(sizeof(int) * (size_t)(count ? count : 1), "k-means labels");
    float *best = SR_MALLOC(sizeof(float) * (size_t)(count ? count : 1), "k-means distances");
    *out = (sr_kmeans){.k = k, .dim = dim, .inertia = INFINITY};
    out->centres = SR_MALLOC(sizeof(float) * (size_t)k * dim, "k-means centres");
    out->assign = SR_MALLOC(sizeof(int) * (size_t)(count ? count : 1), "k-means labels");
    out->distance2 = SR_MALLOC(sizeof(float) * (size_t)(count ? count : 1), "k-means distances");
    for (int r = 0; r < restarts; r++) {
        int iterations = 0;
        seed_centres(comm, x, k, seed, (uint32_t)r, centres, label, best);
        const double inertia = lloyd(comm, x, k, max_iter, centres, label, best, &iterations);
        if (inertia < out->inertia) {
            out->inertia = inertia;
            out->iterations = iterations;
            memcpy(out->centres, centres, sizeof(float) * (size_t)k * dim);
            memcpy(out->assign, label, sizeof(int) * (size_t)count);
            memcpy(out->distance2, best, sizeof(float) * (size_t)count);
        }
    }
    free(centres), free(label), free(best);
}

void sr_kmeans_free(sr_kmeans *km)
{
    free(km->centres);
    free(km->assign);
    free(km->distance2);
}
