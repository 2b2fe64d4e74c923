/* The model a stage (or `semrep info`, `semrep bench`) works with: planned
 * from the conf's shape, refused before allocating when it and its workspace
 * would not fit in the backend's memory, then allocated and loaded. */
#ifndef SEMREP_STAGES_MODEL_H
#define SEMREP_STAGES_MODEL_H

#include <stdbool.h>
#include <stddef.h>

#include "io/conf.h"
#include "nn/unet.h"

#include "comm/comm.h"

/* The backend the conf asks for on this rank: its `backend` and `gpu_math`,
 * `threads` (0: the conf's, and when that is 0 too, the node's cores shared
 * by its ranks), the GPU of the rank's node-local rank. NULL with the reason.
 * The instance is the stages': the same request gets the same instance
 * again, and it lives until the process ends (never sr_backend_free it). */
const sr_backend *sr_stage_backend(const semrep_conf *conf, const semrep_comm *comm, int threads, char *err,
                                   size_t errlen);

/* <output_dir>/checkpoint.nc: where train writes when model.checkpoint is "". */
void sr_default_checkpoint_path(const semrep_conf *conf, char *path, size_t len);
/* model.checkpoint, or <output_dir>/checkpoint.nc when that is empty. */
void sr_model_checkpoint_path(const semrep_conf *conf, char *path, size_t len);

/* <output_dir>/train-state.nc: where the train stage keeps what a resumed
 * training needs (io/train_state.h), for the model the conf names. */
void sr_train_state_path(const semrep_conf *conf, char *path, size_t len);

/* Whether a training state that trains the model at state_model (its
 * `model` attribute; "" in older states) trains the conf's model. */
bool sr_train_state_is_for(const semrep_conf *conf, const char *state_model);

/* Whether the conf's model may be used: 1 when no training state is there
 * (a model from elsewhere, like conf/models/fashion-mnist.nc), the state
 * trains another model, or the state says training is done (or has reached
 * train.epochs); 0 when training is unfinished, with a line in err that says
 * how far it got and how to finish it; -1 when the state cannot be read,
 * with the reason in err. */
int sr_model_finished(const semrep_conf *conf, char *err, size_t errlen);

/* Plans the conf's model and checks that its parameters (and, for training,
 * gradients and Adam moments) plus a workspace of `batch` images fit in the
 * backend's memory. 0, or -1 with one line in err naming model.kernels and
 * the sizes. */
int sr_model_plan(const semrep_conf *conf, const sr_backend *be, int batch, bool train, sr_unet *net,
                  char *err, size_t errlen);

/* sr_model_plan, then allocation and the checkpoint's weights; -1 with the
 * reason in err (an unfinished training, no checkpoint, or one that does
 * not fit the conf). */
int sr_model_open(const semrep_conf *conf, const sr_backend *be, int batch, bool train, sr_unet *net,
                  char *err, size_t errlen);

/* The checksum of the weights a model holds, as its checkpoint states it. */
void sr_model_checksum(const sr_unet *net, char out[17]);

#endif
