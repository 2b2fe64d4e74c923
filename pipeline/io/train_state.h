/* Training state: everything a killed training run needs to continue
 * exactly where its last checkpoint was, in one file written atomically
 * (docs/formats.md): the weights, Adam's moments, the step and the position
 * in the epoch, and the training curve. The random numbers need no state:
 * they are pure functions of (seed, epoch, image). The model checkpoint is
 * written beside it, weights only. */
#ifndef SEMREP_IO_TRAIN_STATE_H
#define SEMREP_IO_TRAIN_STATE_H

#include <stdbool.h>
#include <stddef.h>

#include "nn/adam.h"
#include "nn/unet.h"

#define SR_TRAIN_STATE_FORMAT "semrep-train-state"
#define SR_TRAIN_STATE_VERSION 1
#define SR_CURVE_FORMAT "semrep-train-curve"

/* One row of the training curve. */
typedef struct {
    double step, loss, lr, images_per_s;
} sr_curve_point;

/* One held-out evaluation (stages/heldout.h): after a step, the epochs then finished. */
typedef struct {
    double step, epoch, loss;
} sr_heldout_point;

typedef struct {
    long step;          /* steps taken */
    long epoch;         /* the epoch the next step belongs to */
    long next_in_epoch; /* its position in that epoch */
    bool done;          /* every epoch finished */
    int ranks;          /* ranks the run used (an exact resume needs as many) */
    char model[4200];   /* the model checkpoint this training writes ("": a state of before it was recorded) */
    long curve_len, curve_cap;
    sr_curve_point *curve;
    long heldout_len, heldout_cap;
    sr_heldout_point *heldout;
} sr_train_progress;

void sr_train_progress_add(sr_train_progress *p, sr_curve_point point);
void sr_train_progress_add_heldout(sr_train_progress *p, sr_heldout_point point);
void sr_train_progress_free(sr_train_progress *p);

/* Writes path atomically; conf_text may be NULL. */
void sr_train_state_save(const char *path, const sr_unet *net, const sr_adam *adam, const sr_train_progress *p,
                         const char *conf_text);
/* Loads into net and adam (planned, allocated) after checking the format,
 * the shape against net's and the checksum. 0, or -1 with err. */
int sr_train_state_load(const char *path, sr_unet *net, sr_adam *adam, sr_train_progress *p, char *err, size_t errlen);
/* The counters, the done mark and the model alone (no weights, no curve):
 * whether the model it trains is finished. 0, or -1 with err. */
int sr_train_state_progress(const char *path, sr_train_progress *p, char *err, size_t errlen);
/* The curve alone, for people and plots: step, loss, lr, images/s, and the
 * held-out evaluations. */
void sr_train_curve_save(const char *path, const sr_train_progress *p, const char *conf_text);

#endif
