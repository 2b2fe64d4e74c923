#include "stages/measures.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"

int sr_set_words(int channels) { return (channels + 63) / 64; }

int sr_active_set(const float *phi, int channels, double theta, uint64_t *set)
{
    float top = 0.0f;
    for (int c = 0; c < channels; c++) top = phi[c] > top ? phi[c] : top;
    memset(set, 0, sizeof(uint64_t) * (size_t)sr_set_words(channels));
    int size = 0;
    for (int c = 0; c < channels; c++)
        if (phi[c] > 0.0f && phi[c] > theta * top) {
            set[c / 64] |= (uint64_t)1 << (c % 64);
            size++;
        }
    return size;
}

double sr_participation_ratio(const float *v, int channels)
{
    double s1 = 0.0, s2 = 0.0;
    for (int c = 0; c < channels; c++) {
        s1 += v[c];
        s2 += (double)v[c] * v[c];
    }
    return s2 > 0.0 ? s1 * s1 / (channels * s2) : -1.0;
}

double sr_jaccard(const uint64_t *a, const uint64_t *b, int words)
{
    int both = 0, either = 0;
    for (int w = 0; w < words; w++) {
        both += __builtin_popcountll(a[w] & b[w]);
        either += __builtin_popcountll(a[w] | b[w]);
    }
    return either ? (double)both / either : 1.0;
}

double sr_class_selectivity(const double *class_mean, int classes)
{
    double total = 0.0, h = 0.0;
    for (int k = 0; k < classes; k++) total += class_mean[k];
    if (total <= 0.0 || classes < 2) return 0.0;
    for (int k = 0; k < classes; k++) {
        const double p = class_mean[k] / total;
        if (p > 0.0) h -= p * log(p);
    }
    return 1.0 - h / log((double)classes);
}

/* Entropy (natural log) of counts that sum to n. */
static double entropy(const double *counts, int m, double n)
{
    double h = 0.0;
    for (int i = 0; i < m; i++)
        if (counts[i] > 0.0) h -= counts[i] / n * log(counts[i] / n);
    return h;
}

/* Row sums, column sums (allocated together in *rows, cols after them) and
 * the total of a contingency table. */
static double margins(const double *table, int k, int classes, double **rows_out)
{
    double *rows = SR_MALLOC(sizeof(double) * (size_t)(k + classes), "a contingency table's margins");
    double *cols = rows + k, n = 0.0;
    *rows_out = rows;
    memset(cols, 0, sizeof(double) * (size_t)classes);
    for (int i = 0; i < k; i++) {
        rows[i] = 0.0;
        for (int j = 0; j < classes; j++) {
            rows[i] += table[(size_t)i * classes + j];
            cols[j] += table[(size_t)i * classes + j];
        }
        n += rows[i];
    }
    return n;
}

double sr_nmi(const double *table, int k, int classes)
{
    double *rows;
    const double n = margins(table, k, classes, &rows), *cols = rows + k;
    double mi = 0.0;
    for (int i = 0; i < k; i++)
        for (int j = 0; j < classes; j++) {
            const double nij = table[(size_t)i * classes + j];
            if (nij > 0.0) mi += nij / n * log(n * nij / (rows[i] * cols[j]));
        }
    const double hu = entropy(rows, k, n), hv = entropy(cols, classes, n);
    free(rows);
    if (hu == 0.0 && hv == 0.0) return 1.0;
    return mi / (0.5 * (hu + hv));
}

double sr_purity(const double *table, int k, int classes)
{
    double n = 0.0, best = 0.0;
    for (int i = 0; i < k; i++) {
        double top = 0.0;
        for (int j = 0; j < classes; j++) {
            const double nij = table[(size_t)i * classes + j];
            n += nij;
            top = nij > top ? nij : top;
        }
        best += top;
    }
    return n > 0.0 ? best / n : NAN;
}

static double pairs_of(double x) { return x * (x - 1.0) / 2.0; }

/* The adjusted Rand index from its pair counts: index (pairs together in
 * both), a and b (pairs together in each), n (items). */
static double ari_of(double index, double a, double b, double n)
{
    const double expected = a * b / pairs_of(n), top = 0.5 * (a + b);
    if (top == expected) return 1.0; /* both partitions trivial: identical */
    return (index - expected) / (top - expected);
}

double sr_ari(const double *table, int k, int classes)
{
    double *rows;
    const double n = margins(table, k, classes, &rows), *cols = rows + k;
    double index = 0.0, a = 0.0, b = 0.0;
    for (int i = 0; i < k; i++)
        for (int j = 0; j < classes; j++) index += pairs_of(table[(size_t)i * classes + j]);
    for (int i = 0; i < k; i++) a += pairs_of(rows[i]);
    for (int j = 0; j < classes; j++) b += pairs_of(cols[j]);
    free(rows);
    return ari_of(index, a, b, n);
}

static int by_pair(const void *x, const void *y)
{
    const uint64_t p = *(const uint64_t *)x, q = *(const uint64_t *)y;
    return (p > q) - (p < q);
}

double sr_ari_labels(const int *a, const int *b, long n)
{
    uint64_t *pair = SR_MALLOC(sizeof(uint64_t) * (size_t)(n > 0 ? n : 1), "the pairs of two clusterings");
    long m = 0;
    int ka = 0, kb = 0;
    for (long i = 0; i < n; i++)
        if (a[i] >= 0 && b[i] >= 0) {
            pair[m++] = (uint64_t)a[i] << 32 | (uint32_t)b[i];
            ka = a[i] + 1 > ka ? a[i] + 1 : ka;
            kb = b[i] + 1 > kb ? b[i] + 1 : kb;
        }
    double index = 0.0, sa = 0.0, sb = 0.0;
    double *rows = SR_CALLOC((size_t)ka + kb + 1, sizeof(double), "the clusters' margins"), *cols = rows + ka;
    qsort(pair, (size_t)m, sizeof *pair, by_pair); /* equal pairs in runs: the table's nonzero cells */
    for (long i = 0, run = 1; i < m; i++, run++) {
        rows[pair[i] >> 32] += 1.0, cols[pair[i] & 0xffffffffu] += 1.0;
        if (i + 1 == m || pair[i + 1] != pair[i]) index += pairs_of((double)run), run = 0;
    }
    for (int i = 0; i < ka; i++) sa += pairs_of(rows[i]);
    for (int j = 0; j < kb; j++) sb += pairs_of(cols[j]);
    free(pair), free(rows);
    return m > 0 ? ari_of(index, sa, sb, (double)m) : NAN;
}
