#include "nn/adam.h"

void sr_adam_init(sr_adam *adam, const sr_unet *net, float lr)
{
    *adam = (sr_adam){.lr = lr, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .step = 0,
                      .count = net->param_floats};
    sr_arena_init(&adam->arena, net->be, 2 * adam->count * sizeof(float), "the Adam moments");
    adam->m = sr_arena_floats(&adam->arena, adam->count);
    adam->v = sr_arena_floats(&adam->arena, adam->count);
}

void sr_adam_step(sr_adam *adam, sr_unet *net, const float *grad)
{
    adam->step++;
    sr_be_adam(net->be, net->param, grad, adam->m, adam->v, adam->count, adam->lr, adam->beta1,
                  adam->beta2, adam->eps, adam->step);
}

void sr_adam_free(sr_adam *adam) { sr_arena_release(&adam->arena); }
