/* The held-out loss: the training loss, sum over pixels of (D(y) - x)^2
 * averaged over images, on images training never saw, each at a sigma
 * drawn as training draws them (train.sigma_dist) and with noise that is
 * a pure function of (seed, image): the same numbers for any rank count up
 * to the rounding of one sum. denoise-eval reports it; train records it in
 * its curve after every epoch and sitting (train.heldout_images). */
#ifndef SEMREP_STAGES_HELDOUT_H
#define SEMREP_STAGES_HELDOUT_H

#include "comm/comm.h"
#include "io/conf.h"
#include "io/dataset.h"
#include "nn/unet.h"

/* Collective: the loss over the first `count` images of ds, each rank
 * taking its share in batches of up to wk's capacity (wk is laid out again
 * for a short batch and left at its capacity). */
double sr_heldout_loss(const semrep_conf *conf, const sr_unet *net, sr_unet_work *wk, sr_dataset *ds, long count,
                       const semrep_comm *comm);

#endif
