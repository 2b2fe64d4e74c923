/* Stage stats (SPEC.md section 4, docs/analysis.md): per sigma, the middle
 * block's channel statistics and kinds, the participation ratio of every
 * block, the active sets. One pass over each rank's images; sums, maxima and
 * histograms are reduced over ranks. The active sets (a few words an image)
 * stay on their rank: the distinct count and the overlaps pass them between
 * ranks (stages/set_overlap.h), so no rank holds every image's. */
#include <math.h>
#include <netcdf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/shard.h"
#include "core/check.h"
#include "io/nc.h"
#include "io/outdir.h"
#include "stages/measures.h"
#include "stages/phi_file.h"
#include "stages/set_overlap.h"
#include "stages/stage.h"
#include "stages/stats_file.h"

#define ROWS 512 /* images read at a time */


/* Everything one sigma gives, on rank 0 after the reductions. */
typedef struct {
    double *mean, *var, *max, *share, *selectivity; /* [channels] */
    signed char *kind;                             /* [channels] */
    double *pr_hist, *pr_zero;                     /* [blocks][bins], [blocks] */
    double *set_sizes;                             /* [channels + 1] */
    double distinct, nonselective;
    sr_overlap overlap; /* of the active sets, pairs within and across classes */
} sigma_stats;

static void one_sigma(const semrep_conf *conf, const semrep_comm *comm, const sr_phi_file *f, int s, sigma_stats *out)
{
    const int K = f->channels, B = f->nblocks, bins = conf->stats.pr_bins, C = f->nclasses, words = sr_set_words(K);
    long first, end;
    sr_shard(f->images, 1, comm->rank, comm->size, &first, &end);
    const long mine = end - first;
    /* sums: channel sum, sum of squares, active counts, class sums, class
     * counts, PR histogram and zeros, set sizes; then the maxima apart */
    const size_t nsum = 3 * (size_t)K + (size_t)C * K + (size_t)C + (size_t)B * bins + (size_t)B + (size_t)K + 1;
    double *sum = SR_CALLOC(nsum, sizeof(double), "the sums"), *max = SR_CALLOC((size_t)K, sizeof(double), "the maxima");
    double *sq = sum + K, *act = sq + K, *csum = act + K, *ccount = csum + (size_t)C * K, *hist = ccount + C;
    double *zero = hist + (size_t)B * bins, *sizes = zero + B;
    float *phi = SR_MALLOC(sizeof(float) * ROWS * (size_t)K, "a slice of phi");
    float *units = f->var_units >= 0 ? SR_MALLOC(sizeof(float) * ROWS * (size_t)f->units, "a slice of block means") : NULL;
    int *labels = SR_MALLOC(sizeof(int) * (size_t)(mine ? mine : 1), "the labels");
    uint64_t *sets = SR_MALLOC(sizeof(uint64_t) * (size_t)words * (size_t)(mine ? mine : 1), "the active sets");
    sr_phi_read_labels(f, first, mine, labels);
    for (long r0 = first; r0 < end; r0 += ROWS) {
        const long n = end - r0 < ROWS ? end - r0 : ROWS;
        sr_phi_read(f, s, r0, n, phi);
        if (units) sr_phi_read_units(f, s, r0, n, units);
        for (long i = 0; i < n; i++) {
            const float *v = phi + (size_t)i * K;
            const int label = labels[r0 - first + i];
            uint64_t *set = sets + (size_t)(r0 - first + i) * words;
            sizes[sr_active_set(v, K, conf->stats.active_threshold, set)]++;
            for (int c = 0; c < K; c++) {
                sum[c] += v[c];
                sq[c] += (double)v[c] * v[c];
                max[c] = v[c] > max[c] ? v[c] : max[c];
                act[c] += (set[c / 64] >> (c % 64)) & 1;
                if (label >= 0) csum[(size_t)label * K + c] += v[c];
            }
            if (label >= 0) ccount[label]++;
            for (int b = 0; units && b < B; b++) {
                const double pr = sr_participation_ratio(units + (size_t)i * f->units + f->block_start[b],
                                                         f->block_start[b + 1] - f->block_start[b]);
                if (pr < 0.0) zero[b]++;
                else hist[(size_t)b * bins + (pr * bins >= bins ? bins - 1 : (int)(pr * bins))]++;
            }
        }
    }
    sr_comm_sum(comm, sum, (int)nsum);
    sr_comm_max(comm, max, K);
    const sr_shard_sets shard = {sets, words, labels, first, mine, f->images};
    out->distinct = (double)sr_overlap_distinct(comm, &shard);
    out->overlap.mean[0] = out->overlap.mean[1] = NAN;
    if (C > 0) sr_overlap_jaccard(comm, &shard, conf->cluster.exact_max, (uint32_t)conf->seed, &out->overlap);
    if (comm->rank == 0) {
        const double n = (double)f->images;
        int nonselective = 0;
        double *cm = SR_MALLOC(sizeof(double) * (size_t)(C ? C : 1), "the class means");
        for (int c = 0; c < K; c++) {
            out->mean[c] = sum[c] / n;
            out->var[c] = fmax(sq[c] / n - out->mean[c] * out->mean[c], 0.0);
            out->max[c] = max[c];
            out->share[c] = act[c] / n;
            out->kind[c] = act[c] == 0 ? SR_KIND_DEAD
                         : out->share[c] >= conf->stats.nonselective_share ? SR_KIND_NONSELECTIVE : SR_KIND_SELECTIVE;
            nonselective += out->kind[c] == SR_KIND_NONSELECTIVE;
            for (int k = 0; k < C; k++) cm[k] = ccount[k] > 0 ? csum[(size_t)k * K + c] / ccount[k] : 0.0;
            out->selectivity[c] = C > 0 ? sr_class_selectivity(cm, C) : NAN;
        }
        free(cm);
        out->nonselective = (double)nonselective / K;
        memcpy(out->pr_hist, hist, sizeof(double) * (size_t)B * bins);
        memcpy(out->pr_zero, zero, sizeof(double) * (size_t)B);
        memcpy(out->set_sizes, sizes, sizeof(double) * (size_t)(K + 1));
    }
    free(sum), free(max), free(phi), free(units), free(labels), free(sets);
}

typedef struct {
    int nsig, K, B, bins;
    double *sigma;
    sigma_stats *per;
} stats_table;

static void write_stats(const semrep_conf *conf, const sr_phi_file *f, const stats_table *t, const char *path)
{
    char tmp[SR_PATH_MAX + 64];
    sr_tmp_path(path, tmp, sizeof tmp);
    int ncid, version = SR_STATS_FORMAT_VERSION, d[4], v[SR_STATS_NVARS], sampled = t->nsig > 0 && t->per[0].overlap.sampled;
    SR_NC(nc_create(tmp, NC_NETCDF4 | NC_CLOBBER, &ncid), tmp);
    sr_nc_put_text(ncid, NC_GLOBAL, "format", SR_STATS_FORMAT, tmp);
    sr_nc_put_text(ncid, NC_GLOBAL, "Conventions", "CF-1.8", tmp);
    sr_nc_put_ints(ncid, NC_GLOBAL, "format_version", &version, 1, tmp);
    sr_nc_put_text(ncid, NC_GLOBAL, "phi_fingerprint", f->fingerprint, tmp);
    sr_nc_put_text(ncid, NC_GLOBAL, "conf", conf->text, tmp);
    SR_NC(nc_put_att_double(ncid, NC_GLOBAL, "active_threshold", NC_DOUBLE, 1, &conf->stats.active_threshold), tmp);
    SR_NC(nc_put_att_double(ncid, NC_GLOBAL, "nonselective_share", NC_DOUBLE, 1, &conf->stats.nonselective_share), tmp);
    sr_nc_put_ints(ncid, NC_GLOBAL, "jaccard_sampled", &sampled, 1, tmp);
    SR_NC(nc_def_dim(ncid, "sigma", (size_t)t->nsig, &d[0]), tmp);
    SR_NC(nc_def_dim(ncid, "channel", (size_t)t->K, &d[1]), tmp);
    SR_NC(nc_def_dim(ncid, "block", (size_t)(t->B ? t->B : 1), &d[2]), tmp);
    SR_NC(nc_def_dim(ncid, "bin", (size_t)t->bins, &d[3]), tmp);
    SR_NC(nc_def_dim(ncid, "set_size", (size_t)t->K + 1, &d[0]), tmp);
    if (sampled) {
        SR_NC(nc_def_dim(ncid, "pair_kind", 2, &d[0]), tmp);
        SR_NC(nc_def_dim(ncid, "sampled_pair", (size_t)SR_OVERLAP_PAIRS, &d[0]), tmp);
        SR_NC(nc_def_dim(ncid, "pair_end", 2, &d[0]), tmp);
    }
    sr_nc_define_vars(ncid, sr_stats_vars, SR_STATS_NVARS, sampled ? "" : "jaccard_sample", v, tmp);
    if (t->B) {
        char names[SR_MAX_BLOCKS * 33] = "";
        for (int b = 0; b < t->B; b++) strcat(strcat(names, b ? "," : ""), f->block_names[b]);
        sr_nc_put_text(ncid, v[SR_STATS_PR_HIST], "blocks", names, tmp);
    }
    SR_NC(nc_enddef(ncid), tmp);
    SR_NC(nc_put_var_double(ncid, v[SR_STATS_SIGMA], t->sigma), tmp);
    if (sampled) SR_NC(nc_put_var_longlong(ncid, v[SR_STATS_JACCARD_SAMPLE], t->per[0].overlap.sample), tmp);
    for (int s = 0; s < t->nsig; s++) {
        const sigma_stats *p = &t->per[s];
        const size_t at[3] = {(size_t)s, 0, 0};
        const size_t ch[2] = {1, (size_t)t->K}, hist[3] = {1, (size_t)t->B, (size_t)t->bins}, blk[2] = {1, (size_t)t->B};
        const size_t sizes[2] = {1, (size_t)t->K + 1}, one = 1;
        SR_NC(nc_put_vara_double(ncid, v[SR_STATS_MEAN], at, ch, p->mean), tmp);
        SR_NC(nc_put_vara_double(ncid, v[SR_STATS_VAR], at, ch, p->var), tmp);
        SR_NC(nc_put_vara_double(ncid, v[SR_STATS_MAX], at, ch, p->max), tmp);
        SR_NC(nc_put_vara_double(ncid, v[SR_STATS_ACTIVE_SHARE], at, ch, p->share), tmp);
        SR_NC(nc_put_vara_schar(ncid, v[SR_STATS_KIND], at, ch, p->kind), tmp);
        SR_NC(nc_put_vara_double(ncid, v[SR_STATS_SELECTIVITY], at, ch, p->selectivity), tmp);
        if (t->B) {
            SR_NC(nc_put_vara_double(ncid, v[SR_STATS_PR_HIST], at, hist, p->pr_hist), tmp);
            SR_NC(nc_put_vara_double(ncid, v[SR_STATS_PR_ZERO], at, blk, p->pr_zero), tmp);
        }
        SR_NC(nc_put_vara_double(ncid, v[SR_STATS_SET_SIZES], at, sizes, p->set_sizes), tmp);
        const size_t s1 = (size_t)s;
        SR_NC(nc_put_vara_double(ncid, v[SR_STATS_DISTINCT], &s1, &one, &p->distinct), tmp);
        SR_NC(nc_put_vara_double(ncid, v[SR_STATS_JACCARD_WITHIN], &s1, &one, &p->overlap.mean[0]), tmp);
        SR_NC(nc_put_vara_double(ncid, v[SR_STATS_JACCARD_ACROSS], &s1, &one, &p->overlap.mean[1]), tmp);
        SR_NC(nc_put_vara_double(ncid, v[SR_STATS_NONSELECTIVE], &s1, &one, &p->nonselective), tmp);
        SR_NC(nc_put_vara_double(ncid, v[SR_STATS_WITHIN_PAIRS], &s1, &one, &p->overlap.pairs[0]), tmp);
        SR_NC(nc_put_vara_double(ncid, v[SR_STATS_ACROSS_PAIRS], &s1, &one, &p->overlap.pairs[1]), tmp);
        SR_NC(nc_put_vara_double(ncid, v[SR_STATS_WITHIN_SE], &s1, &one, &p->overlap.se[0]), tmp);
        SR_NC(nc_put_vara_double(ncid, v[SR_STATS_ACROSS_SE], &s1, &one, &p->overlap.se[1]), tmp);
    }
    SR_NC(nc_close(ncid), tmp);
    sr_outdir_commit(tmp, conf->output_dir, "stats.nc");
}

int stage_stats(const semrep_conf *conf, semrep_comm *comm)
{
    char path[SR_PATH_MAX + 32], out[SR_PATH_MAX + 32], err[2048] = "";
    snprintf(path, sizeof path, "%s/phi.nc", conf->output_dir);
    snprintf(out, sizeof out, "%s/stats.nc", conf->output_dir);
    if (sr_outputs_ours(conf, comm, (const char *[]){"stats.nc"}, 1)) return 1;
    sr_phi_file f;
    if (sr_comm_any(comm, sr_phi_open(path, &f, err, sizeof err))) {
        sr_phi_close(&f); /* opened on this rank, refused on another */
        return sr_comm_error(comm, 1, "%s", err[0] ? err : "stats: another rank could not open phi.nc");
    }
    stats_table t = {.nsig = f.nsigma, .K = f.channels, .B = f.nblocks, .bins = conf->stats.pr_bins, .sigma = f.sigma};
    t.per = SR_CALLOC((size_t)t.nsig, sizeof *t.per, "the statistics per sigma");
    for (int s = 0; s < t.nsig; s++) {
        sigma_stats *p = &t.per[s];
        double *block = SR_CALLOC((size_t)6 * t.K + (size_t)t.B * t.bins + t.B + t.K + 1, sizeof(double), "a sigma's statistics");
        p->mean = block, p->var = block + t.K, p->max = block + 2 * t.K, p->share = block + 3 * t.K;
        p->selectivity = block + 4 * t.K, p->pr_hist = block + 5 * t.K, p->pr_zero = p->pr_hist + (size_t)t.B * t.bins;
        p->set_sizes = p->pr_zero + t.B;
        p->kind = SR_CALLOC((size_t)t.K, 1, "the channels' kinds");
        one_sigma(conf, comm, &f, s, p);
        if (s > 0) free(p->overlap.sample), p->overlap.sample = NULL; /* the same pairs as sigma 0's */
    }
    if (comm->rank == 0) {
        write_stats(conf, &f, &t, out);
        printf("stats: %ld images, %d middle-block channels, active when above %.2g of the image's largest\n", f.images,
               f.channels, conf->stats.active_threshold);
        printf("  %9s %14s %16s %14s %15s %15s\n", "sigma/255", "non-selective", "mean active set", "distinct sets",
               "Jaccard within", "Jaccard across");
        for (int s = 0; s < t.nsig; s++) {
            const sigma_stats *p = &t.per[s];
            double mean_size = 0.0;
            for (int k = 0; k <= t.K; k++) mean_size += k * p->set_sizes[k] / (double)f.images;
            printf("  %9.4g %13.0f%% %16.1f %14.0f %15.3f %15.3f\n", f.sigma[s] * 255.0, 100.0 * p->nonselective,
                   mean_size, p->distinct, p->overlap.mean[0], p->overlap.mean[1]);
        }
        if (t.nsig > 0 && t.per[0].overlap.sampled)
            printf("  (Jaccard overlaps from %ld sampled pairs of each kind: more than cluster.exact_max = %ld images)\n",
                   SR_OVERLAP_PAIRS, conf->cluster.exact_max);
        printf("  written to %s\n", out);
    }
    for (int s = 0; s < t.nsig; s++) free(t.per[s].mean), free(t.per[s].kind), free(t.per[s].overlap.sample);
    free(t.per);
    sr_phi_close(&f);
    return 0;
}
