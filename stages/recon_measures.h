/* What the reconstruction's samples share with their target, beyond the
 * relative phi error (docs/analysis.md): at one analysis sigma, the share of
 * a target's samples whose phi falls in the target's own cluster (nearest
 * centre of clusters.nc's clustering at that sigma), the share whose
 * nearest data-set image in phi carries the target's label, and how diverse
 * the samples are (mean RMS pixel distance between two samples of a target,
 * beside that between two images of the data set); for every sampler, the
 * samples' phi statistics (participation ratio, norm) beside the data set's.
 * Failed samples take no part. Reads phi.nc and clusters.nc of the run. */
#ifndef SEMREP_STAGES_RECON_MEASURES_H
#define SEMREP_STAGES_RECON_MEASURES_H

#include <stdbool.h>
#include <stddef.h>

#include "io/dataset.h"

typedef struct {
    int targets, samples, kmid;  /* T, S: sample j of target t is row t * S + j */
    size_t per_image;
    const float *x;              /* [T * S][per_image] the samples */
    const float *phi;            /* [T * S][kmid] their phi at `sigma` */
    const int *failed;           /* [T * S] */
    const long *target_image;    /* [T] the target image's position; -1 for a cluster or none */
    const long *target_cluster;  /* [T] the target cluster (of cluster_k); -1 for an image or none */
    double sigma;                /* pixel units; must be one of phi.nc's and clusters.nc's */
    int cluster_k;               /* which K of clusters.nc; 0: its first */
    bool cluster_sigma_differs;  /* `sigma` is not the one cluster targets were chosen at: skip them */
} sr_recon_samples;

typedef struct {
    int k;                       /* the K measured against; 0 when there was no clustering */
    float *own_cluster;          /* [T] share of samples in the target's cluster; NaN when unknown */
    float *nn_label;             /* [T] share whose nearest image has the target's label; NaN when unknown */
    float *diversity;            /* [T] mean RMS pixel distance between two samples of the target */
    int *nearest_cluster;        /* [T * S] -1 when unknown or failed */
    long *nearest_image;         /* [T * S] position; -1 when unknown or failed */
    double diversity_data;       /* the same between images of the data set (up to 200, evenly spread) */
    double pr_samples, pr_data;  /* mean normalised participation ratio of phi */
    double norm_samples, norm_data; /* mean |phi| */
    char note[512];              /* what could not be measured and why; "" when everything was */
} sr_recon_measures;

/* Reads <output_dir>/phi.nc (and clusters.nc when there) and measures. */
void sr_recon_measure(const char *output_dir, sr_dataset *ds, const sr_recon_samples *in, sr_recon_measures *out);
void sr_recon_measures_free(sr_recon_measures *m);

#endif
