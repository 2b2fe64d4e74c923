/* Model checkpoints: NetCDF-4 files with one float32 variable per parameter,
 * named by the PyTorch state-dict key, the shape as attributes, and a
 * checksum (docs/formats.md). Weights only; training state has its own file. */
#ifndef SEMREP_IO_CHECKPOINT_H
#define SEMREP_IO_CHECKPOINT_H

#include <stddef.h>

#include "nn/unet.h"

#define SR_CHECKPOINT_FORMAT "semrep-checkpoint"
#define SR_CHECKPOINT_VERSION 1

typedef struct {
    int version;
    sr_unet_shape shape;
    long long parameters;
    char checksum[17];
    char source[256];
} sr_checkpoint_info;

/* Writes net's parameters to path (under a temporary name, then renamed).
 * conf_text and source may be NULL. */
void sr_checkpoint_save(const char *path, const sr_unet *net, const char *conf_text, const char *source);
/* The attributes of a checkpoint. 0, or -1 with one line in err naming the
 * file and the problem. */
int sr_checkpoint_read_info(const char *path, sr_checkpoint_info *info, char *err, size_t errlen);
/* Loads a checkpoint into net (planned from the conf's shape and allocated),
 * checking the shape against net's, every variable's presence, shape and
 * finiteness, that no other variable is there, and the checksum. 0, or -1
 * with the first problem named in err (net's parameters are then untouched). */
int sr_checkpoint_load(const char *path, sr_unet *net, char *err, size_t errlen);
/* XXH3-64 of the parameters as docs/formats.md defines it, 16 hex digits. */
void sr_checkpoint_checksum(const sr_unet *net, const float *host_params, char out[17]);
/* The model's shape as a file's global attributes (docs/formats.md), shared
 * by the checkpoint and the training state. */
void sr_nc_put_shape(int ncid, const sr_unet_shape *shape, const char *file);
int sr_nc_read_shape(int ncid, const char *path, sr_unet_shape *shape, char *err, size_t errlen);
/* -1 with err naming the first attribute where a file's shape and the conf's differ. */
int sr_shape_compare(const char *path, const sr_unet_shape *file, const sr_unet_shape *conf, char *err, size_t errlen);
/* "[32, 64, 128]" */
void sr_format_ints(const int *v, int n, char *out, size_t len);

#endif
