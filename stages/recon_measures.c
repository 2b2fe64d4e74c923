#include "stages/recon_measures.h"

#include <math.h>
#include <netcdf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "stages/measures.h"
#include "stages/phi_file.h"

#define DATA_PAIRS_IMAGES 200
/* Rows of phi.nc read at a time, so that memory does not grow with the data
 * set; few enough that the tests' 256 images span three blocks, a short one
 * last (the reads cost little beside the distances to every row). */
#define PHI_ROWS 100

static double dist2(const float *a, const float *b, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return s;
}

/* The first row of `rows` nearer to v than *best (squared Euclidean
 * distance), which it lowers; -1 when none is (or v is not finite). Called
 * block after block, it finds the nearest row of them all. */
static long nearer(const float *v, const float *rows, long n, int dim, double *best)
{
    long at = -1;
    for (long i = 0; i < n; i++) {
        const double d = dist2(v, rows + (size_t)i * dim, (size_t)dim);
        if (d < *best) *best = d, at = i;
    }
    return at;
}

static void add_note(sr_recon_measures *m, const char *text)
{
    const size_t at = strlen(m->note);
    snprintf(m->note + at, sizeof m->note - at, "%s%s", at ? "; " : "", text);
}

/* clusters.nc's assignment at (sigma, cluster_k) into assign[n]; its K, or 0. */
static int read_assignment(const char *output_dir, double sigma, int cluster_k, long n, int *assign,
                           sr_recon_measures *m)
{
    char path[SR_PATH_MAX + 32], err[1024];
    snprintf(path, sizeof path, "%s/clusters.nc", output_dir);
    int ncid, var, dim, ks[64] = {0};
    size_t S = 0, nk = 0, images = 0;
    if (nc_open(path, NC_NOWRITE, &ncid) != NC_NOERR) {
        add_note(m, "no clusters.nc: the own-cluster share is not measured");
        return 0;
    }
    if (sr_made_from_phi(output_dir, "clusters.nc", err, sizeof err)) {
        nc_close(ncid);
        add_note(m, "clusters.nc is from another phi.nc: the own-cluster share is not measured");
        return 0;
    }
    double sig[SR_MAX_SIGMAS];
    nc_inq_dimid(ncid, "sigma", &dim), nc_inq_dimlen(ncid, dim, &S);
    nc_inq_dimid(ncid, "k", &dim), nc_inq_dimlen(ncid, dim, &nk);
    nc_inq_dimid(ncid, "image", &dim), nc_inq_dimlen(ncid, dim, &images);
    int s = -1, q = cluster_k ? -1 : 0;
    if (S <= SR_MAX_SIGMAS && nk <= 64 && nc_inq_varid(ncid, "sigma", &var) == NC_NOERR &&
        nc_get_var_double(ncid, var, sig) == NC_NOERR && nc_inq_varid(ncid, "k", &var) == NC_NOERR &&
        nc_get_var_int(ncid, var, ks) == NC_NOERR)
        for (size_t i = 0; i < S; i++)
            if (fabs(sig[i] - sigma) < 1e-9) s = (int)i;
    for (size_t i = 0; i < nk && q < 0; i++)
        if (ks[i] == cluster_k) q = (int)i;
    const size_t start[3] = {(size_t)s, (size_t)q, 0}, count[3] = {1, 1, (size_t)n};
    const bool ok = s >= 0 && q >= 0 && images == (size_t)n && nc_inq_varid(ncid, "assignment", &var) == NC_NOERR &&
                    nc_get_vara_int(ncid, var, start, count, assign) == NC_NOERR;
    nc_close(ncid);
    if (!ok) {
        char text[160];
        snprintf(text, sizeof text, "clusters.nc has no clustering at sigma %g with K = %d: the own-cluster share is not measured",
                 sigma, cluster_k);
        add_note(m, text);
        return 0;
    }
    return ks[q];
}

typedef struct {
    double sum;
    long count;
} running_mean;

static double mean_of(running_mean r) { return r.count ? r.sum / r.count : NAN; }

/* The normalised participation ratio and the norm of the n rows' phi
 * (skip[i]: left out), added to the running means. */
static void add_pr_norm(const float *phi, long n, int dim, const int *skip, running_mean *pr, running_mean *norm)
{
    for (long i = 0; i < n; i++) {
        if (skip && skip[i]) continue;
        const float *v = phi + (size_t)i * dim;
        const double ratio = sr_participation_ratio(v, dim);
        if (ratio >= 0) pr->sum += ratio, pr->count++;
        double sq = 0.0;
        for (int c = 0; c < dim; c++) sq += (double)v[c] * v[c];
        norm->sum += sqrt(sq), norm->count++;
    }
}

/* Mean RMS distance over pairs of the n rows (skip[i]: left out). */
static double mean_pair_distance(const float *x, long n, size_t dim, const int *skip)
{
    double sum = 0.0;
    long pairs = 0;
    for (long i = 0; i < n; i++)
        for (long j = i + 1; j < n; j++) {
            if (skip && (skip[i] || skip[j])) continue;
            sum += sqrt(dist2(x + (size_t)i * dim, x + (size_t)j * dim, dim) / (double)dim);
            pairs++;
        }
    return pairs ? sum / pairs : NAN;
}

/* The samples' own measures: their diversity, participation ratio and |phi|. */
static void measure_samples(const sr_recon_samples *in, sr_recon_measures *m)
{
    const int T = in->targets, S = in->samples;
    const long rows = (long)T * S;
    memset(m, 0, sizeof *m);
    m->pr_data = m->norm_data = NAN;
    m->own_cluster = SR_MALLOC(sizeof(float) * (size_t)T, "the own-cluster shares");
    m->nn_label = SR_MALLOC(sizeof(float) * (size_t)T, "the label shares");
    m->diversity = SR_MALLOC(sizeof(float) * (size_t)T, "the diversities");
    m->nearest_cluster = SR_MALLOC(sizeof(int) * (size_t)rows, "the samples' clusters");
    m->nearest_image = SR_MALLOC(sizeof(long) * (size_t)rows, "the samples' nearest images");
    for (int t = 0; t < T; t++) {
        m->own_cluster[t] = m->nn_label[t] = NAN;
        m->diversity[t] = (float)mean_pair_distance(in->x + (size_t)t * S * in->per_image, S, in->per_image,
                                                    in->failed + (size_t)t * S);
    }
    for (long i = 0; i < rows; i++) m->nearest_cluster[i] = -1, m->nearest_image[i] = -1;
    running_mean pr = {0}, norm = {0};
    add_pr_norm(in->phi, rows, in->kmid, in->failed, &pr, &norm);
    m->pr_samples = mean_of(pr), m->norm_samples = mean_of(norm);
}

/* The diversity baseline: the data set's images, evenly spread. */
static void measure_data_diversity(sr_dataset *ds, const sr_recon_samples *in, sr_recon_measures *m)
{
    const long n = ds->count, spread = n < DATA_PAIRS_IMAGES ? n : DATA_PAIRS_IMAGES;
    long *pick = SR_MALLOC(sizeof(long) * (size_t)(spread ? spread : 1), "images for the baseline");
    float *imgs = SR_MALLOC(sizeof(float) * in->per_image * (size_t)(spread ? spread : 1), "images for the baseline");
    char err[1024];
    for (long i = 0; i < spread; i++) pick[i] = i * n / spread;
    if (sr_dataset_read_list(ds, pick, spread, imgs, err, sizeof err)) SR_FAIL("%s", err);
    m->diversity_data = mean_pair_distance(imgs, spread, in->per_image, NULL);
    free(pick), free(imgs);
}

/* phi of the data set at sigma index s, a block of rows at a time: its
 * participation ratio and |phi|, each sample's nearest image, and the
 * cluster centres (the mean phi of each cluster's images, as k-means leaves
 * them; malloc'd, NULL without a clustering). */
static float *scan_data_phi(const sr_phi_file *f, int s, const sr_recon_samples *in, const int *assign,
                            sr_recon_measures *m)
{
    const int K = in->kmid;
    const long n = f->images, rows = (long)in->targets * in->samples;
    double *sum = m->k ? SR_CALLOC((size_t)m->k * K, sizeof(double), "the cluster centres") : NULL;
    long *size = m->k ? SR_CALLOC((size_t)m->k, sizeof(long), "the cluster sizes") : NULL;
    double *best = SR_MALLOC(sizeof(double) * (size_t)(rows ? rows : 1), "the samples' nearest distances");
    for (long i = 0; i < rows; i++) best[i] = INFINITY;
    float *block = SR_MALLOC(sizeof(float) * PHI_ROWS * (size_t)K, "a block of phi");
    running_mean pr = {0}, norm = {0};
    for (long r0 = 0; r0 < n; r0 += PHI_ROWS) {
        const long nb = n - r0 < PHI_ROWS ? n - r0 : PHI_ROWS;
        sr_phi_read(f, s, r0, nb, block);
        add_pr_norm(block, nb, K, NULL, &pr, &norm);
        for (long i = 0; i < nb && m->k; i++) {
            const int a = assign[r0 + i];
            if (a < 0 || a >= m->k) continue;
            size[a]++;
            for (int c = 0; c < K; c++) sum[(size_t)a * K + c] += block[(size_t)i * K + c];
        }
        for (long row = 0; row < rows; row++) {
            if (in->failed[row]) continue;
            const long at = nearer(in->phi + (size_t)row * K, block, nb, K, &best[row]);
            if (at >= 0) m->nearest_image[row] = r0 + at; /* stays -1 when its phi is not finite */
        }
    }
    free(block), free(best);
    m->pr_data = mean_of(pr), m->norm_data = mean_of(norm);
    float *centres = m->k ? SR_MALLOC(sizeof(float) * (size_t)m->k * K, "the cluster centres") : NULL;
    for (int k = 0; k < m->k; k++)
        for (int c = 0; c < K; c++) centres[(size_t)k * K + c] = size[k] ? (float)(sum[(size_t)k * K + c] / size[k]) : INFINITY;
    free(sum), free(size);
    return centres;
}

/* Target t's cluster and label: an image's own; a cluster's number and its commonest label (-1: unknown). */
static void target_cluster_label(const sr_recon_samples *in, int t, const sr_recon_measures *m, const int *assign,
                                 const int *label, bool labelled, long n, int *own, int *want)
{
    *own = *want = -1;
    if (in->target_image[t] >= 0) {
        *own = m->k ? assign[in->target_image[t]] : -1;
        *want = labelled ? label[in->target_image[t]] : -1;
    } else if (in->target_cluster[t] >= 0 && !in->cluster_sigma_differs) {
        *own = m->k ? (int)in->target_cluster[t] : -1;
        if (!labelled || !m->k) return;
        long votes[256] = {0};
        for (long i = 0; i < n; i++)
            if (assign[i] == *own && label[i] >= 0 && label[i] < 256) votes[label[i]]++;
        for (int l = 0; l < 256; l++)
            if (votes[l] && (*want < 0 || votes[l] > votes[*want])) *want = l;
    }
}

/* Each target's shares: samples nearest its cluster's centre, samples whose nearest image has its label. */
static void target_shares(const sr_recon_samples *in, sr_recon_measures *m, const int *assign, const int *label,
                          bool labelled, long n, const float *centres)
{
    const int S = in->samples, K = in->kmid;
    for (int t = 0; t < in->targets; t++) {
        int own, want;
        target_cluster_label(in, t, m, assign, label, labelled, n, &own, &want);
        long in_cluster = 0, same_label = 0, good = 0;
        for (int j = 0; j < S; j++) {
            const long row = (long)t * S + j;
            if (in->failed[row]) continue;
            good++;
            double d = INFINITY;
            if (m->k) m->nearest_cluster[row] = (int)nearer(in->phi + (size_t)row * K, centres, m->k, K, &d);
            in_cluster += own >= 0 && m->nearest_cluster[row] == own;
            same_label += want >= 0 && m->nearest_image[row] >= 0 && label[m->nearest_image[row]] == want;
        }
        if (good && own >= 0) m->own_cluster[t] = (float)in_cluster / good;
        if (good && want >= 0) m->nn_label[t] = (float)same_label / good;
    }
}

void sr_recon_measure(const char *output_dir, sr_dataset *ds, const sr_recon_samples *in, sr_recon_measures *m)
{
    const long n = ds->count;
    measure_samples(in, m);
    measure_data_diversity(ds, in, m);
    char path[SR_PATH_MAX + 32], err[1024];
    snprintf(path, sizeof path, "%s/phi.nc", output_dir);
    sr_phi_file f;
    if (sr_phi_open(path, &f, err, sizeof err)) {
        add_note(m, err);
        add_note(m, "so neighbours, labels and clusters are not measured");
        return;
    }
    const int s = sr_phi_sigma_index(&f, in->sigma);
    if (s < 0 || f.images != n || f.channels != in->kmid) {
        char text[160];
        snprintf(text, sizeof text, "phi.nc has no sigma %g for these images: neighbours, labels and clusters are not measured",
                 in->sigma);
        add_note(m, text);
        sr_phi_close(&f);
        return;
    }
    int *label = SR_MALLOC(sizeof(int) * (size_t)n, "the labels");
    sr_phi_read_labels(&f, 0, n, label);
    const bool labelled = f.nclasses > 0;
    if (!labelled) add_note(m, "no labels: the label share is not measured");
    if (in->cluster_sigma_differs)
        add_note(m, "cluster targets: reconstruct.cluster_sigma is not one of analysis_sigmas, so their own cluster "
                    "and label are not measured");
    int *assign = SR_MALLOC(sizeof(int) * (size_t)n, "the clustering");
    m->k = read_assignment(output_dir, in->sigma, in->cluster_k, n, assign, m);
    float *centres = scan_data_phi(&f, s, in, assign, m);
    sr_phi_close(&f);
    target_shares(in, m, assign, label, labelled, n, centres);
    free(label), free(assign), free(centres);
}

void sr_recon_measures_free(sr_recon_measures *m)
{
    free(m->own_cluster), free(m->nn_label), free(m->diversity), free(m->nearest_cluster), free(m->nearest_image);
}
