/* Reading phi.nc (docs/formats.md) a slice at a time, for the stages after
 * phi: every rank opens it read-only and reads only its own images. */
#ifndef SEMREP_STAGES_PHI_FILE_H
#define SEMREP_STAGES_PHI_FILE_H

#include <stdbool.h>
#include <stddef.h>

#include "io/dataset.h"
#include "nn/unet.h"

#define SR_PHI_FORMAT "semrep-phi"
#define SR_PHI_VERSION 1
#define SR_MAX_BLOCKS (2 * SR_MAX_LEVELS)

/* phi.nc's variables (docs/formats.md), in the order of its table. */
enum {
    SR_PHI_VAR_SIGMA, SR_PHI_VAR_DRAWS, SR_PHI_VAR_IMAGE, SR_PHI_VAR_INDEX, SR_PHI_VAR_KEY, SR_PHI_VAR_LABEL,
    SR_PHI_VAR_SOURCE, SR_PHI_VAR_PHI, SR_PHI_VAR_BLOCK_MEAN, SR_PHI_NVARS
};

/* What phi.nc's layout needs to be defined. */
typedef struct {
    int nsigma;
    long images;
    bool block_means;            /* every block's means too */
    const sr_dataset *ds;        /* its labels and class names */
    const sr_unet *net;          /* its blocks and channels */
} sr_phi_layout;

/* Defines phi.nc's format attributes, dimensions and variables (ids[SR_PHI_NVARS],
 * -1 for those left out: label without labels, block_mean without units). */
void sr_phi_define(int ncid, const sr_phi_layout *layout, const char *file, int ids[SR_PHI_NVARS]);

typedef struct {
    char path[SR_PATH_MAX + 32];
    int ncid, var_phi, var_units, var_label, var_index, var_key;
    int nsigma, channels, units, nblocks;
    long images;
    double sigma[SR_MAX_SIGMAS];
    int block_start[SR_MAX_BLOCKS + 1]; /* where each block's units start, and the total */
    char block_names[SR_MAX_BLOCKS][32];
    int nclasses;                       /* 0: unlabelled */
    char (*class_names)[SR_CLASS_NAME_MAX];
    char fingerprint[17];
} sr_phi_file;

/* A text attribute of a file's (NC_GLOBAL); -1 when the file or it is absent. */
int sr_file_text_attr(const char *path, const char *attr, char *out, size_t len);

/* Writes the current noise version into an open file. */
void sr_nc_put_noise_version(int ncid, const char *file);
/* 0 when `file` (stats.nc, clusters.nc: its phi_fingerprint) was made from
 * the output folder's phi.nc; -1 with err naming what to run again. */
int sr_made_from_phi(const char *output_dir, const char *file, char *err, size_t errlen);

/* 0, or -1 with err (not a phi file, another format version). */
int sr_phi_open(const char *path, sr_phi_file *f, char *err, size_t errlen);
void sr_phi_close(sr_phi_file *f);
/* The index of a sigma in the file (within 1e-9), or -1. */
int sr_phi_sigma_index(const sr_phi_file *f, double sigma);
/* Images [first, first + count) at sigma index s: phi (count x channels),
 * block means (count x units), labels (count; -1 when unlabelled),
 * source indices (count). */
void sr_phi_read(const sr_phi_file *f, int s, long first, long count, float *phi);
void sr_phi_read_units(const sr_phi_file *f, int s, long first, long count, float *units);
void sr_phi_read_labels(const sr_phi_file *f, long first, long count, int *labels);
void sr_phi_read_index(const sr_phi_file *f, long first, long count, long long *index);
/* The images' identities (image_key); dies naming the file when it has none. */
void sr_phi_read_keys(const sr_phi_file *f, long first, long count, unsigned long long *keys);

#endif
