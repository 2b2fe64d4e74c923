/* The shape of the blind UNet (SPEC.md section 1): everything that fixes its
 * layers and parameters, independent of image size and batch. */
#ifndef SEMREP_NN_UNET_SHAPE_H
#define SEMREP_NN_UNET_SHAPE_H

#include <stdbool.h>
#include <stddef.h>

#include "core/backend.h"

#define SR_MAX_LEVELS 6       /* encoder blocks */
#define SR_MAX_CONVS 16       /* convolutions in one block */
#define SR_MAX_CHANNELS 8192  /* channels of one layer */

typedef enum { SR_OUTPUT_CLEAN = 0, SR_OUTPUT_RESIDUAL } sr_output;

typedef struct {
    int in_channels;
    int levels;                          /* n: encoder blocks; kernels has n + 1 entries */
    int kernels[SR_MAX_LEVELS + 1];      /* K0 .. Kn; Kn is the middle block's */
    int enc_convs[SR_MAX_LEVELS];
    int mid_convs;
    int dec_convs[SR_MAX_LEVELS];        /* indexed by decoder block b = 0 .. n-1 */
    sr_norm norm;                        /* SR_NORM_LAYER or SR_NORM_BATCH */
    sr_output output;
    bool upsample_bias[SR_MAX_LEVELS];   /* a bias on upsample.b (some authors' checkpoints) */
} sr_unet_shape;

/* SPEC.md's two configurations. */
sr_unet_shape sr_unet_shape_default(void); /* Fashion-MNIST, 1x32x32, 2,507,489 parameters */
sr_unet_shape sr_unet_shape_paper(void);   /* ImageNet 64x64 RGB, 13,678,147 parameters */

/* 0 when the shape is usable; otherwise -1 with a one-line reason in err. */
int sr_unet_shape_check(const sr_unet_shape *shape, char *err, size_t errlen);
/* 0 when images of h x w fit the shape (divisible by 2^levels). */
int sr_unet_size_check(const sr_unet_shape *shape, int h, int w, char *err, size_t errlen);

/* Blocks whose means abar_b the UNet reports, in order: encoder 0 .. n-1,
 * the middle block, decoder n-1 .. 1 (SPEC.md section 3). */
int sr_unet_block_count(const sr_unet_shape *shape);
int sr_unet_block_channels(const sr_unet_shape *shape, int block);
int sr_unet_mid_block(const sr_unet_shape *shape);

#endif
