/* The report's check of the paper's findings: one line each, saying whether
 * this run shows it, with the numbers (docs/analysis.md):
 *   - the participation ratio rises through the encoder and falls in the
 *     middle block;
 *   - the middle block has a few non-selective channels and more selective ones;
 *   - active sets overlap more within classes than across;
 *   - reconstructions keep the class of their target.
 * At the stats.nc sigma nearest reconstruct.cluster_sigma. */
#define _GNU_SOURCE
#include <math.h>
#include <netcdf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/check.h"
#include "io/nc.h"
#include "stages/recon_file.h"
#include "stages/report_page.h"
#include "stages/stats_file.h"

static void finding(report *r, const char *verdict, const char *what, const char *numbers)
{
    html(r, "<li><b>%s</b>: ", verdict);
    escaped(r, what);
    html(r, " (");
    escaped(r, numbers);
    html(r, ")</li>\n");
}

/* The mean normalised participation ratio of each block at sigma index s, from its histogram. */
static void block_pr(int ncid, int s, size_t B, size_t bins, double *pr)
{
    const size_t S = dim_len(ncid, "sigma");
    double *hist = var_doubles(ncid, "pr_hist", S * B * bins);
    for (size_t b = 0; b < B; b++) {
        double n = 0.0, sum = 0.0;
        for (size_t j = 0; j < bins; j++) {
            const double h = hist[((size_t)s * B + b) * bins + j];
            n += h, sum += h * (j + 0.5) / (double)bins;
        }
        pr[b] = n > 0 ? sum / n : NAN;
    }
    free(hist);
}

static void pr_shape(report *r, int ncid, int s, const char *at)
{
    const size_t B = dim_len(ncid, "block"), bins = dim_len(ncid, "bin");
    char names[1024] = "", numbers[1024] = "";
    int var;
    if (nc_inq_varid(ncid, "pr_hist", &var) == NC_NOERR) sr_nc_get_text(ncid, var, "blocks", names, sizeof names);
    const char *what = "the participation ratio rises through the encoder and falls in the middle block";
    const int mid = strstr(names, "mid") ? (int)(B / 2) : -1;
    if (!names[0] || mid < 1 || B < 3) {
        finding(r, "not measured", what, "phi.nc has no block means (phi.block_means)");
        return;
    }
    double *pr = SR_MALLOC(sizeof(double) * B, "the blocks' ratios");
    block_pr(ncid, s, B, bins, pr);
    bool rises = true;
    char *save = NULL, *tok = strtok_r(names, ",", &save);
    for (int b = 0; b <= mid && tok; b++, tok = strtok_r(NULL, ",", &save)) {
        if (b > 0 && b < mid) rises &= pr[b] > pr[b - 1];
        snprintf(numbers + strlen(numbers), sizeof numbers - strlen(numbers), "%s%s %.3f", b ? ", " : "", tok, pr[b]);
    }
    snprintf(numbers + strlen(numbers), sizeof numbers - strlen(numbers), "; %s", at);
    finding(r, rises && pr[mid] < pr[mid - 1] ? "shown" : "not shown", what, numbers);
    free(pr);
}

static void channel_kinds(report *r, int ncid, int s, const char *at)
{
    const size_t S = dim_len(ncid, "sigma"), K = dim_len(ncid, "channel");
    double *kind = var_doubles(ncid, "kind", S * K);
    long count[3] = {0};
    for (size_t c = 0; c < K; c++) {
        const int k = (int)kind[(size_t)s * K + c];
        if (k >= 0 && k < 3) count[k]++;
    }
    char numbers[256];
    snprintf(numbers, sizeof numbers, "%ld selective, %ld non-selective, %ld never active of %zu; %s",
             count[SR_KIND_SELECTIVE], count[SR_KIND_NONSELECTIVE], count[SR_KIND_DEAD], K, at);
    finding(r, count[SR_KIND_NONSELECTIVE] > 0 && count[SR_KIND_SELECTIVE] > count[SR_KIND_NONSELECTIVE] ? "shown" : "not shown",
            "a few channels are non-selective, more selective",
            numbers);
    free(kind);
}

static void set_overlap(report *r, int ncid, int s, const char *at)
{
    const size_t S = dim_len(ncid, "sigma");
    double *within = var_doubles(ncid, "jaccard_within", S), *across = var_doubles(ncid, "jaccard_across", S);
    double *se_w = var_doubles(ncid, "jaccard_within_se", S), *se_a = var_doubles(ncid, "jaccard_across_se", S);
    const char *what = "active sets overlap more within classes than across";
    const double w = within[s], a = across[s], se = sqrt(se_w[s] * se_w[s] + se_a[s] * se_a[s]);
    char numbers[256];
    snprintf(numbers, sizeof numbers, "mean Jaccard %.3f within, %.3f across%s; %s", w, a,
             se > 0 ? " (sampled pairs: a difference must exceed twice its standard error)" : "", at);
    if (!isfinite(w) || !isfinite(a)) finding(r, "not measured", what, "no labels, or no pairs of one class");
    else finding(r, w - a > 2 * se && w > a ? "shown" : "not shown", what, numbers);
    free(within), free(across), free(se_w), free(se_a);
}

static void recon_keeps_class(report *r)
{
    char path[SR_PATH_MAX + 32], why[SR_PATH_MAX + 512];
    int ids[SR_RECON_NVARS];
    const char *what = "reconstructions keep the class of their target";
    snprintf(path, sizeof path, "%s/recon.nc", r->conf->output_dir);
    const int ncid = access(path, F_OK) == 0 ? sr_recon_open(path, ids, why, sizeof why) : -1;
    if (ncid < 0) {
        finding(r, "not measured", what, "no recon.nc");
        return;
    }
    const size_t T = dim_len(ncid, "target");
    double *share = var_doubles(ncid, "nn_label_share", T);
    nc_close(ncid);
    double sum = 0.0;
    long n = 0;
    for (size_t t = 0; t < T; t++)
        if (isfinite(share[t])) sum += share[t], n++;
    char numbers[256];
    snprintf(numbers, sizeof numbers, "on average %.2f of a target's samples have a nearest image (in phi) of its class, over %ld target(s)",
             n ? sum / n : NAN, n);
    if (!n) finding(r, "not measured", what, "no labels, or no conditional targets");
    else finding(r, sum / n > 0.5 ? "shown" : "not shown", what, numbers);
    free(share);
}

void sr_report_findings(report *r, int stats_id)
{
    html(r, "<h2>The paper's findings, checked</h2>\n<ul id=\"findings\">\n");
    const size_t S = stats_id >= 0 ? dim_len(stats_id, "sigma") : 0;
    if (!S) {
        finding(r, "not measured", "the participation ratio rises through the encoder and falls in the middle block", "no stats.nc");
        finding(r, "not measured", "a few channels are non-selective, more selective", "no stats.nc");
        finding(r, "not measured", "active sets overlap more within classes than across", "no stats.nc");
    } else {
        double *sig = var_doubles(stats_id, "sigma", S);
        int s = 0;
        for (size_t q = 1; q < S; q++)
            if (fabs(sig[q] - r->conf->reconstruct.cluster_sigma) < fabs(sig[s] - r->conf->reconstruct.cluster_sigma)) s = (int)q;
        char at[64];
        snprintf(at, sizeof at, "at sigma %.4g of 255", sig[s] * 255.0);
        pr_shape(r, stats_id, s, at);
        channel_kinds(r, stats_id, s, at);
        set_overlap(r, stats_id, s, at);
        free(sig);
    }
    recon_keeps_class(r);
    html(r, "</ul>\n");
}
