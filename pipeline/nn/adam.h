/* Adam (PyTorch's form, with bias correction) over a model's whole parameter
 * arena in one call. Buffers such as running_sd get no gradient, so their
 * moments stay zero and Adam leaves them unchanged. */
#ifndef SEMREP_NN_ADAM_H
#define SEMREP_NN_ADAM_H

#include "core/arena.h"
#include "nn/unet.h"

typedef struct {
    float lr, beta1, beta2, eps;
    long step;   /* steps taken */
    sr_arena arena;
    float *m, *v; /* backend memory laid out like the parameters */
    size_t count;
} sr_adam;

/* The paper's defaults: beta 0.9, 0.999, eps 1e-8. */
void sr_adam_init(sr_adam *adam, const sr_unet *net, float lr);
void sr_adam_step(sr_adam *adam, sr_unet *net, const float *grad);
void sr_adam_free(sr_adam *adam);

#endif
