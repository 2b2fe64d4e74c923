#include "stages/stats_file.h"

#include <netcdf.h>
#include <stddef.h>

const sr_nc_var sr_stats_vars[SR_STATS_NVARS] = {
    {"sigma", NC_DOUBLE, "sigma", "pixel units", "phi.nc's noise level"},
    {"mean", NC_DOUBLE, "sigma channel", NULL, "mean over images of phi_c"},
    {"var", NC_DOUBLE, "sigma channel", NULL, "population variance over images of phi_c"},
    {"max", NC_DOUBLE, "sigma channel", NULL, "largest phi_c"},
    {"active_share", NC_DOUBLE, "sigma channel", NULL, "share of images in which the channel is active (docs/analysis.md)"},
    {"kind", NC_BYTE, "sigma channel", NULL, "0 selective, 1 non-selective, 2 never active"},
    {"class_selectivity", NC_DOUBLE, "sigma channel", NULL,
     "1 - H(per-class mean activity) / ln(classes): 0 every class alike, 1 one class"},
    {"pr_hist", NC_DOUBLE, "sigma block bin", NULL,
     "images by normalised participation ratio of the block's channel means, bins over [0, 1]"},
    {"pr_zero", NC_DOUBLE, "sigma block", NULL, "images whose block's channel means are all zero (no ratio)"},
    {"set_sizes", NC_DOUBLE, "sigma set_size", NULL, "images by active-set size"},
    {"distinct_sets", NC_DOUBLE, "sigma", NULL, "distinct active sets among the images"},
    {"jaccard_within", NC_DOUBLE, "sigma", NULL, "mean Jaccard overlap of active sets, pairs of one class"},
    {"jaccard_across", NC_DOUBLE, "sigma", NULL, "mean Jaccard overlap of active sets, pairs of two classes"},
    {"nonselective_share", NC_DOUBLE, "sigma", NULL, "share of the channels that are non-selective"},
    {"jaccard_within_pairs", NC_DOUBLE, "sigma", NULL,
     "pairs of one class that jaccard_within averages: all of them, or the sample's"},
    {"jaccard_across_pairs", NC_DOUBLE, "sigma", NULL,
     "pairs of two classes that jaccard_across averages: all of them, or the sample's"},
    {"jaccard_within_se", NC_DOUBLE, "sigma", NULL, "standard error of jaccard_within: 0 when exact"},
    {"jaccard_across_se", NC_DOUBLE, "sigma", NULL, "standard error of jaccard_across: 0 when exact"},
    {"jaccard_sample", NC_INT64, "pair_kind sampled_pair pair_end", NULL,
     "the sampled pairs of images (positions in phi.nc), kind 0 one class, 1 two classes; the same at every sigma"},
};
