/* The training stage's steps, for the stage itself and for tests that check
 * one step's summed gradient against a run of one rank. */
#ifndef SEMREP_STAGES_TRAIN_H
#define SEMREP_STAGES_TRAIN_H

#include <stddef.h>

#include "comm/comm.h"
#include "io/conf.h"

typedef struct sr_trainer sr_trainer;

/* A training sigma from a uniform u in (0, 1), by train.sigma_dist. */
float sr_train_sigma(const semrep_conf *conf, float u);

/* Collective: the model (resumed from the training state when there is
 * one), the data, the buffers. 0, or -1 with err on every rank. */
int sr_trainer_open(sr_trainer **t, const semrep_conf *conf, semrep_comm *comm, char *err, size_t errlen);
/* One step of the given epoch (all ranks together); the global batch's mean loss. */
double sr_trainer_step(sr_trainer *t, long epoch, long in_epoch);
/* The gradient of the last step, summed over ranks, laid out like the parameters. */
void sr_trainer_gradient(const sr_trainer *t, float *host);
size_t sr_trainer_parameter_floats(const sr_trainer *t);
void sr_trainer_close(sr_trainer *t);

#endif
