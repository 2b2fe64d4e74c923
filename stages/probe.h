/* The linear probe of the cluster stage (docs/analysis.md): a multinomial
 * logistic regression, L2-regularised, on standardised features (phi at a
 * sigma, or the pixel baseline's rows), trained on a seeded split of the
 * analysis images stratified by label and measured on the rest.
 *
 * Data-parallel: each rank holds its rows (the cluster stage's shard, cut at
 * multiples of SR_KMEANS_ROW_ALIGN); every sum over images (the features'
 * means and variances, the loss, the gradient) is made of blocks of 64
 * global rows, each block's sum put on a fixed-point grid and the integers
 * added exactly (comm/comm.h), so every rank holds the same bits of every
 * total, whatever the rank count. The optimiser (full-batch L-BFGS) then
 * takes the same steps on every rank and on 1, 2 or 3 ranks. The products
 * are OpenBLAS's dgemm, on the host whatever the backend. */
#ifndef SEMREP_STAGES_PROBE_H
#define SEMREP_STAGES_PROBE_H

#include <stdbool.h>

#include "comm/comm.h"
#include "io/conf.h"

/* A space's variables in clusters.nc (phi: with the sigma dimension first). */
enum {
    SR_PROBE_TEST, SR_PROBE_TRAIN, SR_PROBE_CLASS, SR_PROBE_LOSS, SR_PROBE_ITER, SR_PROBE_W, SR_PROBE_B, SR_PROBE_VARS
};

typedef struct {
    const semrep_conf *conf;
    bool on;              /* it runs: on in the conf, labels of at least 2 classes, both parts of the split non-empty */
    char note[160];       /* why not, when not */
    int classes;          /* the labels' count (phi.nc's classes) */
    long images;          /* all ranks' */
    long train, test;     /* images in each part, all ranks */
    long first, count;    /* this rank's rows */
    const int *labels;    /* this rank's images' labels */
    signed char *split;   /* this rank's images: 0 train, 1 test, -1 unlabelled */
    int v_split, v_phi[SR_PROBE_VARS], v_pix[SR_PROBE_VARS];
    double accuracy[SR_MAX_SIGMAS], pixel_accuracy; /* test accuracy per sigma slot, and the pixels' */
    int iterations[SR_MAX_SIGMAS], pixel_iterations;
    double seconds;       /* spent fitting */
} sr_probe;

/* Decides whether the probe runs and draws the split: in each class of n_c
 * labelled images, round(probe.test_share * n_c) are the test part, chosen
 * by selection sampling in image order (Philox: the seed, the cluster
 * domain, SR_PROBE_STREAM); the same on every rank. labels: every image's
 * (-1: none); classes: phi.nc's count; this rank's rows first .. end. */
void sr_probe_plan(sr_probe *p, const semrep_conf *conf, const int *labels, long images, int classes, long first,
                   long end);
/* The probe's dimensions, variables and attributes in clusters.nc (in
 * define mode, its sigma and image dimensions defined), or its note when it
 * does not run. channels: phi's; pixel_dim: the pixel rows' (0: none). */
void sr_probe_define(sr_probe *p, int ncid, int channels, int pixel_dim, const char *file);
/* After the definitions: this rank's images' part of the split. */
void sr_probe_write_split(const sr_probe *p, int ncid, const char *file);
/* Trains and measures the probe on this rank's rows (count x dim) of sigma
 * slot s (-1: the pixels); rank 0 writes the results. Collective. */
void sr_probe_fit(sr_probe *p, const semrep_comm *comm, int s, const float *rows, int dim, int ncid, const char *file);
/* Rank 0: the one-line summary (sigma: the slots' sigmas, pixel units). */
void sr_probe_print(const sr_probe *p, int nsigma, const double *sigma, bool pixels);
void sr_probe_free(sr_probe *p);

#define SR_PROBE_STREAM 0xFFFFFFFDu /* the cluster domain's stream of the split */

#endif
