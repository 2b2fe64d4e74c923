/* The report's 2-D map of phi at each sigma (docs/analysis.md): a PCA of a
 * seeded sample of report.map_sample images, coloured by cluster and by
 * label, drawn by gnuplot from a data file. */
#define _GNU_SOURCE
#include <cblas.h>
#include <math.h>
#include <netcdf.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/rng.h"
#include "io/nc.h"
#include "io/text_escape.h"
#include "stages/phi_file.h"
#include "stages/report_page.h"

/* The 2-D map of phi: a PCA of a seeded sample of report.map_sample images,
 * the same sample at every sigma and on every run with the seed. Memory is
 * O(sample x channels): the sample is the smallest keys of a keyed hash of
 * the positions, kept in a heap, and its rows are read in runs of nearby
 * positions, never the whole slice. */
#define MAP_TAG 0x504d4150u /* "PMAP": the sample's stream, apart from k-means' */
#define MAP_RUN 1024        /* rows read at once at most */
#define MAP_GAP 32          /* unsampled rows read to join two sampled ones in one read */
#define MAP_SERIES 12       /* categories drawn each with its colour and title; more share colours */

typedef struct {
    uint64_t key;
    long position;
} map_key;

static int key_after(map_key a, map_key b) { return a.key > b.key || (a.key == b.key && a.position > b.position); }

static int by_position(const void *a, const void *b)
{
    const long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

/* The sampled positions, ascending: all n when n <= want. */
static long *map_sample(uint32_t seed, long n, long want, long *count)
{
    const long m = n < want ? n : want;
    long *out = SR_MALLOC(sizeof(long) * (size_t)(m ? m : 1), "the map's sample");
    *count = m;
    if (m == n) {
        for (long i = 0; i < n; i++) out[i] = i;
        return out;
    }
    map_key *heap = SR_MALLOC(sizeof(map_key) * (size_t)m, "the map's sample"); /* max-heap of the m smallest */
    uint32_t w[2 * MAP_RUN];
    const sr_rng_stream st = {.seed = seed, .domain = SR_RNG_CLUSTER, .i0 = MAP_TAG};
    long held = 0;
    for (long first = 0; first < n; first += MAP_RUN) {
        const long count_here = n - first < MAP_RUN ? n - first : MAP_RUN;
        sr_rng_words(&st, 2 * (uint64_t)first, 2 * (size_t)count_here, w);
        for (long j = 0; j < count_here; j++) {
            map_key k = {((uint64_t)w[2 * j] << 32) | w[2 * j + 1], first + j};
            long at;
            if (held < m) { /* sift up */
                for (at = held++; at > 0 && key_after(k, heap[(at - 1) / 2]); at = (at - 1) / 2)
                    heap[at] = heap[(at - 1) / 2];
            } else if (key_after(heap[0], k)) { /* replaces the largest: sift down */
                for (at = 0;;) {
                    long c = 2 * at + 1;
                    if (c >= m) break;
                    if (c + 1 < m && key_after(heap[c + 1], heap[c])) c++;
                    if (!key_after(heap[c], k)) break;
                    heap[at] = heap[c], at = c;
                }
            } else
                continue;
            heap[at] = k;
        }
    }
    for (long i = 0; i < m; i++) out[i] = heap[i].position;
    free(heap);
    qsort(out, (size_t)m, sizeof(long), by_position);
    return out;
}

/* The end of the read that starts at sampled row j: the sampled rows close enough to share it. */
static long map_run_end(const long *pos, long m, long j)
{
    long k = j + 1;
    while (k < m && pos[k] - pos[k - 1] <= MAP_GAP && pos[k] - pos[j] < MAP_RUN) k++;
    return k;
}

/* phi at sigma index s of the sampled rows (m x C, doubles) and their labels. */
static void map_read_phi(const sr_phi_file *f, int s, const long *pos, long m, double *x, int *label)
{
    const size_t C = (size_t)f->channels;
    float *rows = SR_MALLOC(sizeof(float) * MAP_RUN * C, "the map's rows");
    int *labels = SR_MALLOC(sizeof(int) * MAP_RUN, "the map's labels");
    for (long j = 0, k; j < m; j = k) {
        k = map_run_end(pos, m, j);
        const long first = pos[j], count = pos[k - 1] - first + 1;
        sr_phi_read(f, s, first, count, rows);
        sr_phi_read_labels(f, first, count, labels);
        for (long q = j; q < k; q++) {
            const float *row = rows + (size_t)(pos[q] - first) * C;
            for (size_t c = 0; c < C; c++) x[(size_t)q * C + c] = row[c];
            const int l = labels[pos[q] - first];
            label[q] = l >= 0 && l < f->nclasses ? l : -1;
        }
    }
    free(rows), free(labels);
}

/* The sampled rows' clusters at the smallest K of clusters.nc at `sigma`
 * (-1: left out); 0 when there is no such clustering of these images. */
static int map_read_clusters(int ncid, double sigma, long images, const long *pos, long m, int *cluster)
{
    const int cs = ncid >= 0 ? sigma_index(ncid, sigma) : -1;
    const int var = cs >= 0 ? var_of_rank(ncid, "assignment", 3) : -1;
    if (var < 0 || dim_len(ncid, "image") != (size_t)images) return 0;
    size_t nk, q = 0;
    int *ks = k_values(ncid, &nk);
    for (size_t i = 1; i < nk; i++)
        if (ks[i] < ks[q]) q = i;
    const int K = nk ? ks[q] : 0;
    free(ks);
    if (!K) return 0;
    char path[SR_PATH_MAX];
    nc_path(ncid, path, sizeof path);
    int *one = SR_MALLOC(sizeof(int) * MAP_RUN, "the map's clusters");
    for (long j = 0, k; j < m; j = k) {
        k = map_run_end(pos, m, j);
        const size_t start[3] = {(size_t)cs, q, (size_t)pos[j]}, count[3] = {1, 1, (size_t)(pos[k - 1] - pos[j] + 1)};
        SR_NC(nc_get_vara_int(ncid, var, start, count, one), path);
        for (long i = j; i < k; i++) {
            cluster[i] = one[pos[i] - pos[j]];
            if (cluster[i] < -1 || cluster[i] >= K) /* -1: left out */
                SR_FAIL("%s: assignment holds cluster %d where K is %d; make it again (delete it and run semrep run)",
                        path, cluster[i], K);
        }
    }
    free(one);
    return K;
}

/* LAPACK, in the OpenBLAS semrep links; Fortran's hidden lengths of the two
 * character arguments are passed, as gfortran's calling convention wants. */
void dsyev_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda, double *w, double *work,
            const int *lwork, int *info, size_t jobz_len, size_t uplo_len);

/* Centres x (m x C) and writes its projection on the top two principal
 * components into xy (m x 2), each component's sign fixed so that its
 * largest loading is positive; explained[2]: their shares of the variance. */
static void map_pca(double *x, long m, int C, double *xy, double explained[2])
{
    double *cov = SR_CALLOC((size_t)C * C, sizeof(double), "the map's covariance"), *w = SR_MALLOC(sizeof(double) * C, "the map's PCA"), size;
    for (int c = 0; c < C; c++) {
        double mean = 0.0;
        for (long i = 0; i < m; i++) mean += x[(size_t)i * C + c];
        mean /= (double)m;
        for (long i = 0; i < m; i++) x[(size_t)i * C + c] -= mean;
    }
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, C, (int)m, 1.0 / (double)(m - 1), x, C, 0.0, cov, C);
    int lwork = -1, info = 0;
    dsyev_("V", "L", &C, cov, &C, w, &size, &lwork, &info, 1, 1); /* row-major upper is column-major lower */
    lwork = info == 0 ? (int)size : 0;
    double *work = SR_MALLOC(sizeof(double) * (size_t)(lwork > 1 ? lwork : 1), "the map's PCA");
    if (info == 0) dsyev_("V", "L", &C, cov, &C, w, work, &lwork, &info, 1, 1);
    SR_CHECK(info == 0, "LAPACK's dsyev failed (info %d) on the map's covariance", info);
    double total = 0.0;
    for (int c = 0; c < C; c++) total += w[c] > 0.0 ? w[c] : 0.0;
    for (int p = 0; p < 2; p++) { /* ascending eigenvalues: the last two, largest first */
        const int e = C - 1 - p;
        double *v = cov + (size_t)e * C; /* eigenvector e: column e, a row here */
        int big = 0;
        for (int c = 1; c < C; c++)
            if (fabs(v[c]) > fabs(v[big])) big = c;
        const double sign = v[big] < 0.0 ? -1.0 : 1.0;
        explained[p] = total > 0.0 && w[e] > 0.0 ? w[e] / total : 0.0;
        for (long i = 0; i < m; i++) xy[2 * i + p] = sign * cblas_ddot(C, x + (size_t)i * C, 1, v, 1);
    }
    free(cov), free(w), free(work);
}

/* One scatter of the map coloured by column `col` of its data file (4:
 * cluster, 5: label), `n` categories named by `names` (NULL: "cluster c");
 * one colour when n is 0. */
static void map_plot(report *r, const char *name, const char *dat, int col, int n, char (*names)[SR_CLASS_NAME_MAX],
                     const char *alt)
{
    char *gp = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&gp, &len);
    SR_CHECK(m, "out of memory for the plot %s", name);
    fputs("set xlabel 'principal component 1'\nset ylabel 'principal component 2'\nset key outside right\n", m);
    static const char *const colours[MAP_SERIES] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                                                    "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#000080", "#808000"};
    for (int c = 0; c < MAP_SERIES; c++) fprintf(m, "set linetype %d lc rgb '%s'\n", c + 1, colours[c]);
    fprintf(m, "set linetype cycle %d\n", MAP_SERIES);
    if (n == 0) {
        fprintf(m, "unset key\nplot '%s' using 2:3 with points pt 7 ps 0.4\n", dat);
    } else if (n <= MAP_SERIES) {
        fputs("plot", m);
        for (int c = 0; c < n; c++) {
            fprintf(m, "%s '%s' using 2:($%d==%d?$3:1/0) with points pt 7 ps 0.4 lt %d title ", c ? "," : "", dat,
                    col, c, c + 1);
            if (names) sr_gnuplot_string(m, names[c]);
            else fprintf(m, "'cluster %d'", c);
        }
    } else /* too many for a key: colours by number, repeating */
        fprintf(m, "unset key\nplot '%s' using 2:($%d>=0?$3:1/0):($%d+1) with points pt 7 ps 0.4 lc variable", dat, col,
                col + 1);
    if (n > 0) /* left out of the clustering, or unlabelled */
        fprintf(m, ", '%s' using 2:($%d<0?$3:1/0) with points pt 7 ps 0.4 lc rgb '#bbbbbb' title 'none'\n", dat, col);
    SR_CHECK(fclose(m) == 0, "out of memory for the plot %s", name);
    plot(r, name, alt, gp);
    free(gp);
}

/* The map of phi at `sigma` (f: the folder's phi.nc), coloured by
 * clusters.nc's smallest K there (clusters_id >= 0) and by label (a labelled
 * phi.nc); its data in plots/map_<phi's sigma index>.dat: position, the two
 * coordinates, cluster, label (-1: none). */
void sr_report_map(report *r, const sr_phi_file *f, int clusters_id, double sigma, const char *label)
{
    const int s = sr_phi_sigma_index(f, sigma), C = f->channels;
    long m;
    if (s < 0 || f->images < 3 || C < 2) return; /* no map to draw */
    long *pos = map_sample((uint32_t)r->conf->seed, f->images, r->conf->report.map_sample, &m);
    double *x = SR_MALLOC(sizeof(double) * (size_t)m * C, "the map's sample"), ex[2];
    double *xy = SR_MALLOC(sizeof(double) * 2 * (size_t)m, "the map");
    int *lab = SR_MALLOC(sizeof(int) * (size_t)m, "the map's labels");
    int *cl = SR_MALLOC(sizeof(int) * (size_t)m, "the map's clusters");
    map_read_phi(f, s, pos, m, x, lab);
    const int K = map_read_clusters(clusters_id, sigma, f->images, pos, m, cl);
    map_pca(x, m, C, xy, ex);
    char dat[2 * SR_PATH_MAX], name[64], alt[512];
    snprintf(name, sizeof name, "map_%d", s);
    FILE *out = data_file(r, name, dat, sizeof dat);
    fprintf(out, "# sample %ld of %ld images, sigma %.9g, explained %.9g %.9g\n# position pc1 pc2 cluster label\n", m,
            f->images, sigma, ex[0], ex[1]);
    for (long i = 0; i < m; i++)
        fprintf(out, "%ld %.9g %.9g %d %d\n", pos[i], xy[2 * i], xy[2 * i + 1], K ? cl[i] : -1, lab[i]);
    SR_CHECK_WRITE(fclose(out) == 0, dat);
    html(r, "<h3>A map of phi, %s</h3>\n", label);
    char sample[96];
    if (m < f->images)
        snprintf(sample, sizeof sample, "a sample of %ld of the %ld images, drawn by the seed", m, f->images);
    else snprintf(sample, sizeof sample, "all %ld images", m);
    for (int by = 0; by < 3; by++) { /* by cluster, by label; uncoloured when neither */
        const int n = by == 0 ? K : by == 1 ? f->nclasses : 0;
        if (by < 2 ? n < 1 : K || f->nclasses > 0) continue;
        char colour[48] = "";
        if (by == 0) snprintf(colour, sizeof colour, ", coloured by cluster (K = %d)", K);
        if (by == 1) snprintf(colour, sizeof colour, ", coloured by label");
        snprintf(alt, sizeof alt, "phi at %s on its two principal components: %s%s; they explain %.1f%% and %.1f%% of "
                 "the variance", label, sample, colour, 100.0 * ex[0], 100.0 * ex[1]);
        snprintf(name, sizeof name, "map_%d_%s", s, by == 0 ? "clusters" : by == 1 ? "labels" : "plain");
        map_plot(r, name, dat, by == 0 ? 4 : 5, n, by == 1 ? f->class_names : NULL, alt);
    }
    free(pos), free(x), free(xy), free(lab), free(cl);
}
