#include "stages/clusters_file.h"

#include <netcdf.h>
#include <stddef.h>

/* A space's variables, in the order of SR_CLUSTERS_*, without the sigma dimension. */
const sr_nc_var sr_clusters_space_vars[SR_CLUSTERS_N] = {
    {"inertia", NC_DOUBLE, "k", NULL, "sum over images of the squared distance to their centre"},
    {"nmi", NC_DOUBLE, "k", NULL, "normalised mutual information of clusters and labels (arithmetic mean of entropies)"},
    {"purity", NC_DOUBLE, "k", NULL, "share of images in their cluster's most common label"},
    {"ari", NC_DOUBLE, "k", NULL, "adjusted Rand index of clusters and labels"},
    {"jaccard_within", NC_DOUBLE, "k", NULL, "mean Jaccard overlap of phi's active sets, pairs in one cluster"},
    {"jaccard_across", NC_DOUBLE, "k", NULL, "mean Jaccard overlap of phi's active sets, pairs in two clusters"},
    {"assignment", NC_INT, "k image", NULL, "each image's cluster"},
    {"cluster_size", NC_INT, "k cluster", NULL, "images per cluster (0 beyond K)"},
    {"members", NC_INT64, "k cluster member", NULL, "each cluster's images nearest its centre, nearest first (-1: none)"},
    {"neighbours", NC_INT, "query neighbour", NULL, "each query's nearest images (query_index), nearest first, itself left out"},
    {"neighbour_distance", NC_FLOAT, "query neighbour", NULL, "their Euclidean distances"},
    {"knn_accuracy", NC_DOUBLE, "knn", NULL, "leave-one-out k-NN label accuracy of the queries, k = 1 and 10"},
};

const sr_nc_var sr_clusters_file_vars[SR_CLUSTERS_F_N] = {
    {"sigma", NC_DOUBLE, "sigma", "pixel units", "phi.nc's noise level"},
    {"k", NC_INT, "k", NULL, "clusters asked for"},
    {"knn", NC_INT, "knn", NULL, "neighbours voting"},
    {"query_index", NC_INT64, "query", NULL,
     "the images whose neighbours are kept and vote: every image, or the seeded sample"},
};
