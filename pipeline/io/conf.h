/* The run's configuration: one libconfig file, parsed into typed structs in
 * one place (conf_keys.c declares every key: type, default, range, meaning;
 * docs/conf.md lists them). Unknown keys, wrong types and values out of range
 * are refused with the key's name and the file's line. `--set KEY=VALUE`
 * overrides one key with a libconfig literal, checked the same way. */
#ifndef SEMREP_IO_CONF_H
#define SEMREP_IO_CONF_H

#include <stdbool.h>
#include <stddef.h>

#include "nn/unet_shape.h"

#define SR_PATH_MAX 1024
#define SR_MAX_SIGMAS 64

typedef struct {
    char kind[16];                 /* "idx", "png", "netcdf" */
    char images[SR_PATH_MAX];      /* idx: the image file */
    char labels[SR_PATH_MAX];      /* idx: the label file ("" for none) */
    char path[SR_PATH_MAX];        /* png: the folder */
    char file[SR_PATH_MAX];        /* netcdf: the file */
    char variable[128];            /* netcdf: the image variable */
    char label_variable[128];      /* netcdf: the label variable ("" for none) */
    int size, channels;            /* images are made size x size with this many channels */
    long limit;                    /* use at most `limit` images (0: all) */
    long stride;                   /* every stride-th image */
    char index_file[SR_PATH_MAX];  /* a file of indices to use ("" for all) */
    char classes[SR_PATH_MAX];     /* a file of class names ("" for none) */
    char on_bad_image[16];         /* "fail" or "skip" */
    long max_pixels;               /* refuse images with more pixels than this */
    double max_bad_share;          /* fail when a larger share of images is bad */
} sr_dataset_conf;

typedef struct semrep_conf {
    char source[SR_PATH_MAX];      /* the conf file it came from */
    char *text;                    /* the effective conf, every key, as libconfig text */
    char output_dir[SR_PATH_MAX];
    long seed;
    char backend[16];              /* "auto", "cpu", "cuda" */
    int threads;                   /* per rank; 0: the node's cores shared by its ranks */
    char gpu_math[8];              /* "fp32", "tf32", "bf16": the GPU's products */
    sr_dataset_conf dataset;       /* the analysis data */
    struct {
        sr_dataset_conf dataset;   /* the training data */
        int epochs, batch, lr_step;
        double lr;
        char lr_schedule[16];      /* "step", "cosine", "constant" */
        char init[SR_PATH_MAX];    /* weights a new training starts from; "": random */
        char sigma_dist[16];       /* "inv_sqrt" or "uniform" */
        double sigma_min, sigma_max;
        long checkpoint_every;     /* steps */
        long run_steps;            /* stop this run after this many steps (0: to the end) */
        long heldout_images;       /* images of `dataset` the held-out loss is measured on (0: none) */
        int patience;              /* evaluations without improvement that end training (0: never) */
    } train;
    struct {
        char checkpoint[SR_PATH_MAX];
        int in_channels, mid_convs;
        int nkernels, kernels[SR_MAX_LEVELS + 1];
        int nenc, enc_convs[SR_MAX_LEVELS];
        int ndec, dec_convs[SR_MAX_LEVELS];
        char norm[16];             /* "layer" or "batch" */
        char output[16];           /* "clean" or "residual" */
        bool upsample_bias;        /* a bias on upsample.b for b > 0 */
    } model;
    struct {
        int nsigmas;
        double sigmas[SR_MAX_SIGMAS]; /* pixel units: 1.0 is 255 of 255 */
        int draws, batch;
        long run_chunks;              /* stop this run after this many chunks per rank (0: to the end) */
        bool block_means;
    } phi;
    struct {
        double active_threshold;      /* active: above this share of the image's largest channel */
        double nonselective_share;    /* non-selective: active in at least this share of images */
        int pr_bins;
    } stats;
    struct {
        int nk, k[16];                /* the K values */
        int nsigmas;                  /* 0: every sigma of phi.nc */
        double sigmas[SR_MAX_SIGMAS];
        int restarts, max_iter, neighbours, members;
        bool pixels;
        long exact_max;               /* exact all-pairs measures up to this many images; sampled above */
        int queries;                  /* above exact_max: the k-NN queries sampled */
        int pixel_dims;               /* pixel baseline: random projection to this many dimensions above it */
    } cluster;
    struct {
        bool enabled;                 /* the cluster stage's linear probe */
        double test_share;            /* the share of each class held out for testing */
        double lambda;                /* L2 strength: mean cross-entropy + lambda/2 |W|^2 */
        int iterations;               /* L-BFGS iterations at most */
        double tolerance;             /* stop when every gradient component is below this */
    } probe;
    struct {
        char sampler[16], mask[16];
        int ntargets, targets[256], random, nclusters, clusters[256], cluster_k;
        double cluster_sigma, mask_sigma;
        int samples, batch, steps, draws, max_iter, max_steps, tasks, task;
        double sigma_max, sigma_min, lr, stop_ratio, sigma0, h0, beta, beta_unconditional, sigma_l;
        int nanalysis;
        double analysis_sigmas[SR_MAX_SIGMAS];
        long run_batches;
    } reconstruct;
    struct {
        int map_sample;               /* images in each sigma's 2-D map of phi */
    } report;
} semrep_conf;

/* Reads `path` (NULL: every key at its default), applies the `nsets`
 * overrides "KEY=VALUE", and checks everything. 0 on success; -1 with one
 * line in err naming the key (and the line) on any problem. */
int sr_conf_load(semrep_conf *conf, const char *path, int nsets, char *const *sets, char *err,
                 size_t errlen);
void sr_conf_free(semrep_conf *conf);

/* The model shape the conf describes (valid after a successful load). */
sr_unet_shape sr_conf_shape(const semrep_conf *conf);

/* The declared keys, for docs and tests. */
typedef enum { SR_KEY_INT, SR_KEY_FLOAT, SR_KEY_BOOL, SR_KEY_STRING, SR_KEY_INTS, SR_KEY_FLOATS } sr_key_type;

typedef struct {
    const char *path;      /* dotted, e.g. "phi.sigmas" */
    sr_key_type type;
    size_t offset;         /* of the value in semrep_conf */
    size_t count_offset;   /* lists: of their int count */
    int capacity;          /* lists: most entries; strings: buffer bytes; numbers: bytes (int, long, double) */
    double min, max;       /* numbers and list entries; lists need at least one entry */
    const char *choices;   /* strings: "a|b|c", or NULL for free text */
    const char *fallback;  /* the default, as a libconfig literal */
    const char *doc;       /* meaning and units, one line */
    bool file;             /* strings: a file or folder; relative ones are taken from the conf's folder */
} sr_conf_key;

extern const sr_conf_key sr_conf_keys[];
extern const int sr_conf_key_count;

#endif
