/* Stage train (SPEC.md section 2): the blind denoiser, data-parallel.
 *
 * Every rank holds the whole model and takes its slice of each global batch
 * (sr_shard of the batch); gradients are summed over ranks, so every rank
 * takes the same Adam step and keeps the same weights (checked by checksum
 * at every checkpoint). An image's sigma and noise are pure functions of
 * (seed, epoch, image index), the epoch's order is Philox-keyed, so a run
 * killed and restarted from its training state (io/train_state.h) with as
 * many ranks repeats, bit for bit, what the uninterrupted run would do. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "comm/shard.h"
#include "core/check.h"
#include "core/clock.h"
#include "core/rng.h"
#include "io/checkpoint.h"
#include "io/outdir.h"
#include "io/train_state.h"
#include "stages/data.h"
#include "stages/heldout.h"
#include "stages/model.h"
#include "stages/stage.h"
#include "stages/train.h"

struct sr_trainer {
    const semrep_conf *conf;
    semrep_comm *comm;
    const sr_backend *be;
    sr_unet net;
    sr_unet_work wk;
    sr_adam adam;
    sr_arena arena;    /* gradient and clean-image buffers in backend memory */
    float *grad, *clean;
    float *host_clean, *host_noisy;
    long *order, *slice;
    sr_dataset *ds;
    sr_dataset *heldout;    /* the held-out images (conf->dataset), or NULL */
    long heldout_count;
    long batch, first, end; /* global batch; my slice [first, end) of it */
    long order_epoch;       /* the epoch t->order is for */
    long steps_per_epoch;
    char model_path[SR_PATH_MAX + 32], state_path[SR_PATH_MAX + 32], curve_path[SR_PATH_MAX + 32];
    sr_train_progress progress;
};
typedef sr_trainer trainer;

float sr_train_sigma(const semrep_conf *conf, float u)
{
    /* SPEC.md: inv_sqrt draws sqrt(sigma) uniformly, uniform draws sigma */
    const double lo = conf->train.sigma_min, hi = conf->train.sigma_max;
    if (!strcmp(conf->train.sigma_dist, "uniform")) return (float)(lo + u * (hi - lo));
    const double r = u * (sqrt(hi) - sqrt(lo)) + sqrt(lo);
    return (float)(r * r);
}

/* train's files in the output folder, as paths from it (the model when it is there); their count. */
static int outputs(const semrep_conf *conf, const char *model, const char *names[3])
{
    const size_t n = strlen(conf->output_dir);
    names[0] = "train-state.nc", names[1] = "train-curve.nc";
    names[2] = !strncmp(model, conf->output_dir, n) && model[n] == '/' ? model + n + 1 : NULL;
    return names[2] ? 3 : 2;
}

static float draw_sigma(const semrep_conf *conf, long epoch, long image)
{
    const sr_rng_stream s = {.seed = (uint32_t)conf->seed, .domain = SR_RNG_TRAIN_SIGMA, .i0 = (uint32_t)epoch,
                             .i1 = (uint32_t)image};
    float u;
    sr_rng_uniform(&s, 0, 1, &u);
    return sr_train_sigma(conf, u);
}

/* The learning rate of a step (counted from 0) in its epoch. Cosine decays
 * per step over train.epochs, so raising train.epochs later reshapes the
 * rest of the curve (docs/conf.md). */
static double step_lr(const semrep_conf *conf, long step, long epoch, long steps_per_epoch)
{
    const char *kind = conf->train.lr_schedule;
    if (!strcmp(kind, "constant")) return conf->train.lr;
    if (!strcmp(kind, "cosine")) {
        const double total = (double)steps_per_epoch * conf->train.epochs;
        return conf->train.lr * 0.5 * (1.0 + cos(acos(-1.0) * fmin((double)step / total, 1.0)));
    }
    return conf->train.lr * pow(0.5, (double)(epoch / conf->train.lr_step));
}

static double lr_now(const trainer *t)
{
    return step_lr(t->conf, t->progress.step, t->progress.epoch, t->steps_per_epoch);
}

/* One step: my slice of the global batch, forward, backward, the gradient
 * summed over ranks, Adam. Returns the batch's loss (sum over pixels of the
 * squared error, mean over the global batch). */
static double step(trainer *t, long epoch, long in_epoch)
{
    const semrep_conf *conf = t->conf;
    const sr_backend *be = t->net.be;
    sr_unet_work *wk = &t->wk;
    const long n = t->end - t->first;
    const size_t per_image = (size_t)t->ds->channels * t->ds->size * t->ds->size;
    char err[1024];
    for (long k = 0; k < n; k++) t->slice[k] = t->order[in_epoch * t->batch + t->first + k];
    if (sr_dataset_read_list(t->ds, t->slice, n, t->host_clean, err, sizeof err)) SR_FAIL("%s", err);
    for (long k = 0; k < n; k++) {
        const long image = sr_dataset_origin(t->ds, t->slice[k]);
        const float sigma = draw_sigma(conf, epoch, image);
        const sr_rng_stream s = {.seed = (uint32_t)conf->seed, .domain = SR_RNG_TRAIN_NOISE, .i0 = (uint32_t)epoch,
                                 .i1 = (uint32_t)image};
        sr_rng_add_gaussian(&s, t->host_clean + (size_t)k * per_image, sigma, per_image,
                            t->host_noisy + (size_t)k * per_image);
    }
    sr_unet_put_images(wk, t->host_noisy, sr_unet_input(wk));
    sr_unet_put_images(wk, t->host_clean, t->clean);
    sr_unet_forward(&t->net, wk, SR_UPTO_OUTPUT);
    /* loss = sum (D(y) - x)^2 / B; its gradient 2 (D(y) - x) / B */
    const size_t count = sr_unet_image_floats(wk);
    sr_be_axpby(be, count, 1.0f, sr_unet_output(wk), 0.0f, wk->d_output);
    sr_be_axpby(be, count, -1.0f, t->clean, 1.0f, wk->d_output);
    double loss = sr_be_dot(be, count, wk->d_output, wk->d_output);
    sr_be_axpby(be, count, 2.0f / (float)t->batch, wk->d_output, 0.0f, wk->d_output);
    sr_be_zero(be, t->grad, t->net.param_floats * sizeof(float));
    sr_unet_backward(&t->net, wk, SR_UPTO_OUTPUT, wk->d_output, NULL, t->grad, false);
    sr_comm_sum_floats(t->comm, t->be, t->grad, t->net.param_floats);
    sr_comm_sum(t->comm, &loss, 1);
    t->adam.lr = (float)lr_now(t);
    sr_adam_step(&t->adam, &t->net, t->grad);
    return loss / (double)t->batch;
}

static uint64_t weights_checksum(const sr_unet *net)
{
    float *host = SR_MALLOC(net->param_floats * sizeof(float), "a copy of the weights");
    sr_be_to_host(net->be, host, net->param, net->param_floats * sizeof(float));
    const uint64_t h = XXH3_64bits(host, net->param_floats * sizeof(float));
    free(host);
    return h;
}

/* Every rank must hold the same weights; rank 0 writes the model, then the
 * state and the curve, each atomically. */
static void checkpoint(trainer *t)
{
    if (!sr_comm_same(t->comm, weights_checksum(&t->net)))
        SR_FAIL("the ranks' weights differ at step %ld; the run is not data-parallel any more (a rank computed differently): restart it from the last checkpoint",
                t->progress.step);
    if (t->comm->rank == 0) {
        /* the model first: a state that says done is never beside an older model */
        sr_checkpoint_save(t->model_path, &t->net, t->conf->text, "semrep stage train");
        sr_train_state_save(t->state_path, &t->net, &t->adam, &t->progress, t->conf->text);
        sr_train_curve_save(t->curve_path, &t->progress, t->conf->text);
    }
    sr_comm_barrier(t->comm);
}

static void report(const trainer *t, double loss, double rate, double left)
{
    if (t->comm->rank != 0) return;
    const long total = t->steps_per_epoch * t->conf->train.epochs;
    printf("train: step %ld/%ld epoch %ld/%d loss %.4f lr %.2e %.0f images/s, %.0f min left\n", t->progress.step, total,
           t->progress.epoch + 1, t->conf->train.epochs, loss, lr_now(t), rate, left / 60.0);
    fflush(stdout);
}

/* The held-out loss has not improved for train.patience evaluations: none
 * was below the best before it by 1e-4 of it (rounding is no improvement). */
static bool patience_spent(const trainer *t)
{
    const sr_train_progress *p = &t->progress;
    if (!t->conf->train.patience || !p->heldout_len) return false;
    long best = 0;
    for (long i = 1; i < p->heldout_len; i++)
        if (p->heldout[i].loss < p->heldout[best].loss * (1.0 - 1e-4)) best = i;
    return p->heldout_len - 1 - best >= t->conf->train.patience;
}

/* Collective: the held-out loss now into the curve (once a step), and
 * whether the patience is spent. */
static bool evaluate(trainer *t)
{
    sr_train_progress *p = &t->progress;
    if (!t->heldout || (p->heldout_len && p->heldout[p->heldout_len - 1].step == (double)p->step)) return false;
    const double loss = sr_heldout_loss(t->conf, &t->net, &t->wk, t->heldout, t->heldout_count, t->comm);
    const double epoch = (double)p->epoch + (double)p->next_in_epoch / (double)t->steps_per_epoch;
    sr_train_progress_add_heldout(p, (sr_heldout_point){(double)p->step, epoch, loss});
    if (t->comm->rank == 0)
        printf("train: held-out loss %.4f on %ld images after step %ld (epoch %.2f)\n", loss, t->heldout_count, p->step,
               epoch), fflush(stdout);
    return patience_spent(t);
}

/* Training ends early: the held-out loss stopped improving. */
static int stop_early(trainer *t)
{
    t->progress.done = true;
    checkpoint(t);
    if (t->comm->rank == 0)
        printf("train: the held-out loss has not improved for %d evaluations (train.patience); training is done\n",
               t->conf->train.patience);
    return 0;
}

static int train_loop(trainer *t)
{
    const semrep_conf *conf = t->conf;
    sr_train_progress *p = &t->progress;
    double since = sr_seconds(), printed = since;
    long steps_since = 0, this_run = 0;
    while (p->epoch < conf->train.epochs) {
        for (; p->next_in_epoch < t->steps_per_epoch; p->next_in_epoch++) {
            const double loss = sr_trainer_step(t, p->epoch, p->next_in_epoch);
            if (!isfinite(loss)) /* a refusal of train.lr: the loss is summed over ranks, so every rank stops here */
                return sr_comm_error(t->comm, 1, "the training loss became %g at step %ld; lower train.lr and restart from the last checkpoint",
                                     loss, p->step);
            const double lr = lr_now(t);
            p->step++;
            steps_since++;
            const double now = sr_seconds();
            const double rate = (double)steps_since * (double)t->batch / (now - since);
            sr_train_progress_add(p, (sr_curve_point){(double)p->step, loss, lr, rate});
            const long left = t->steps_per_epoch * conf->train.epochs - p->step;
            if (now - printed > 10.0 || p->next_in_epoch + 1 == t->steps_per_epoch) {
                report(t, loss, rate, (double)left * (double)t->batch / rate);
                printed = now;
                since = now;
                steps_since = 0;
            }
            const bool stop = conf->train.run_steps && ++this_run == conf->train.run_steps;
            if (p->step % conf->train.checkpoint_every == 0 || stop) {
                p->next_in_epoch++; /* the state records where the next step starts */
                if (stop && evaluate(t)) return stop_early(t);
                checkpoint(t);
                p->next_in_epoch--;
            }
            if (stop) {
                if (t->comm->rank == 0) printf("train: stopped after %ld steps (train.run_steps); run again to resume\n", this_run);
                return 0;
            }
        }
        p->epoch++;
        p->next_in_epoch = 0;
        if (evaluate(t) && p->epoch < conf->train.epochs) return stop_early(t);
    }
    p->done = true;
    checkpoint(t);
    return 0;
}

static void paths(trainer *t)
{
    sr_model_checkpoint_path(t->conf, t->model_path, sizeof t->model_path);
    sr_train_state_path(t->conf, t->state_path, sizeof t->state_path);
    snprintf(t->curve_path, sizeof t->curve_path, "%s/train-curve.nc", t->conf->output_dir);
}

/* Everything that can be refused is refused before any work: first what
 * each rank decides alone, then (after the ranks agree) the data, which
 * every rank opens together, and the state. */
static int prepare_model(trainer *t, char *err, size_t errlen)
{
    const semrep_conf *conf = t->conf;
    semrep_comm *comm = t->comm;
    /* first: every rank of the node takes part in choosing the threads */
    const sr_backend *be = t->be = sr_stage_backend(conf, comm, 0, err, errlen);
    if (!be) return -1;
    t->batch = conf->train.batch;
    if (t->batch < comm->size)
        return sr_report(err, errlen, "train.batch = %ld is smaller than the %d ranks; each rank needs an image of every batch",
                         t->batch, comm->size);
    if (sr_output_ready(conf->output_dir, err, errlen)) return -1;
    paths(t);
    sr_shard(t->batch, 1, comm->rank, comm->size, &t->first, &t->end);
    const long mine = t->end - t->first;
    return sr_model_plan(conf, be, (int)mine, true, &t->net, err, errlen);
}

static int prepare_run(trainer *t, char *err, size_t errlen)
{
    const semrep_conf *conf = t->conf;
    semrep_comm *comm = t->comm;
    const long mine = t->end - t->first;
    const sr_backend *be = t->be;
    if (sr_data_open(&conf->train.dataset, conf->output_dir, comm, &t->ds, err, errlen)) return -1;
    if (conf->train.heldout_images) {
        if (sr_data_open(&conf->dataset, conf->output_dir, comm, &t->heldout, err, errlen)) return -1;
        t->heldout_count = t->heldout->count < conf->train.heldout_images ? t->heldout->count : conf->train.heldout_images;
    }
    t->steps_per_epoch = t->ds->count / t->batch;
    if (t->steps_per_epoch < 1)
        return sr_report(err, errlen, "train.batch = %ld is larger than the training data (%ld images)", t->batch,
                         t->ds->count);
    sr_unet_alloc(&t->net, be);
    sr_unet_work_init(&t->wk, &t->net, (int)mine, t->ds->size, t->ds->size, true);
    sr_adam_init(&t->adam, &t->net, (float)conf->train.lr);
    const size_t per_image = (size_t)t->ds->channels * t->ds->size * t->ds->size;
    sr_arena_init(&t->arena, be, (t->net.param_floats + per_image * (size_t)mine + 64) * sizeof(float),
                  "the gradients");
    t->grad = sr_arena_floats(&t->arena, t->net.param_floats);
    t->clean = sr_arena_floats(&t->arena, per_image * (size_t)mine);
    t->host_clean = SR_MALLOC(sizeof(float) * per_image * (size_t)mine, "a training batch");
    t->host_noisy = SR_MALLOC(sizeof(float) * per_image * (size_t)mine, "a training batch");
    t->order = SR_MALLOC(sizeof(long) * (size_t)t->ds->count, "the epoch's order");
    t->slice = SR_MALLOC(sizeof(long) * (size_t)mine, "a training batch");
    t->progress.ranks = comm->size;
    t->order_epoch = -1;

    /* Resume from the training state, or start from SPEC.md's initialisation. */
    if (access(t->state_path, F_OK) == 0) {
        if (sr_train_state_load(t->state_path, &t->net, &t->adam, &t->progress, err, errlen)) return -1;
        if (!t->progress.model[0]) /* a state from before states named their model */
            sr_default_checkpoint_path(conf, t->progress.model, sizeof t->progress.model);
        if (!sr_train_state_is_for(conf, t->progress.model))
            return sr_report(err, errlen, "the training state %s trains the model %s, not %s: set model.checkpoint to that file to continue it, or move the state away to train this one",
                             t->state_path, t->progress.model, t->model_path);
        if (t->progress.ranks != comm->size && comm->rank == 0)
            fprintf(stderr, "semrep: note: resuming a run of %d ranks on %d; it continues, but not bit for bit as it would have\n",
                    t->progress.ranks, comm->size);
        t->progress.ranks = comm->size;
        if (comm->rank == 0)
            printf("train: resuming %s at step %ld (epoch %ld)\n", t->state_path, t->progress.step, t->progress.epoch + 1);
    } else if (access(t->model_path, F_OK) == 0) {
        return sr_report(err, errlen, "%s exists but %s does not: that model was trained elsewhere; set model.checkpoint to a new file to train one",
                         t->model_path, t->state_path);
    } else if (conf->train.init[0]) {
        /* a fresh optimiser on another model's weights (its shape checked against the conf's) */
        if (sr_checkpoint_load(conf->train.init, &t->net, err, errlen)) return -1;
        if (comm->rank == 0) printf("train: starting from the weights of %s (train.init)\n", conf->train.init);
    } else {
        sr_unet_init_weights(&t->net, (uint32_t)conf->seed);
    }
    snprintf(t->progress.model, sizeof t->progress.model, "%s", t->model_path);
    return 0;
}

static void release(trainer *t)
{
    free(t->host_clean);
    free(t->host_noisy);
    free(t->order);
    free(t->slice);
    if (t->arena.base) sr_arena_release(&t->arena);
    if (t->adam.arena.base) sr_adam_free(&t->adam);
    if (t->wk.arena.base) sr_unet_work_free(&t->wk);
    if (t->net.params) sr_unet_free(&t->net);
    sr_dataset_close(t->ds);
    sr_dataset_close(t->heldout);
    sr_train_progress_free(&t->progress);
}

int sr_trainer_open(sr_trainer **out, const semrep_conf *conf, semrep_comm *comm, char *err, size_t errlen)
{
    trainer *t = SR_CALLOC(1, sizeof *t, "the trainer");
    t->conf = conf;
    t->comm = comm;
    int failed = sr_comm_any(comm, prepare_model(t, err, errlen));
    if (!failed) failed = sr_comm_any(comm, prepare_run(t, err, errlen));
    if (failed) {
        if (!err[0]) snprintf(err, errlen, "train: another rank could not start (its message is above)");
        sr_trainer_close(t);
        return -1;
    }
    *out = t;
    return 0;
}

double sr_trainer_step(sr_trainer *t, long epoch, long in_epoch)
{
    if (in_epoch == 0 || t->order_epoch != epoch) {
        sr_epoch_order((uint32_t)t->conf->seed, epoch, t->ds->count, t->order);
        t->order_epoch = epoch;
    }
    return step(t, epoch, in_epoch);
}

void sr_trainer_gradient(const sr_trainer *t, float *host)
{
    sr_be_to_host(t->net.be, host, t->grad, t->net.param_floats * sizeof(float));
}

size_t sr_trainer_parameter_floats(const sr_trainer *t) { return t->net.param_floats; }

void sr_trainer_close(sr_trainer *t)
{
    if (!t) return;
    release(t);
    free(t);
}

int stage_train(const semrep_conf *conf, semrep_comm *comm)
{
    sr_trainer *t;
    char err[1024] = "", model[SR_PATH_MAX + 32];
    const char *names[3];
    /* docs/architecture.md: batch norm's training mode is not built (only
     * its inference form, with running_sd), so such a model is not trained */
    if (!strcmp(conf->model.norm, "batch"))
        return sr_comm_error(comm, 1,
                             "model.norm = \"batch\": training a batch-norm model is not built yet (docs/architecture.md); "
                             "train with model.norm = \"layer\", or convert a model trained elsewhere "
                             "(pipeline/io/convert_checkpoint.py)");
    sr_model_checkpoint_path(conf, model, sizeof model);
    if (sr_outputs_ours(conf, comm, names, outputs(conf, model, names))) return 1;
    /* ours before anything is written: a run killed before its first
     * checkpoint leaves files that the next run may resume from */
    if (comm->rank == 0) sr_outdir_register(conf->output_dir, names, (size_t)outputs(conf, model, names));
    if (sr_trainer_open(&t, conf, comm, err, sizeof err)) return sr_comm_error(comm, 1, "%s", err);
    if (t->progress.epoch >= conf->train.epochs || (t->progress.done && patience_spent(t))) {
        if (comm->rank == 0 && access(t->model_path, F_OK) != 0) /* removed since: the state holds it */
            sr_checkpoint_save(t->model_path, &t->net, conf->text, "semrep stage train");
        if (comm->rank == 0) printf("train: %s is complete (%ld steps); nothing to do\n", t->model_path, t->progress.step);
        sr_trainer_close(t);
        return 0;
    }
    if (comm->rank == 0)
        printf("train: %ld images, global batch %ld over %d rank(s), %ld steps per epoch, %d epochs, %zu parameters\n",
               t->ds->count, t->batch, comm->size, t->steps_per_epoch, conf->train.epochs, t->net.trainable_count);
    t->progress.done = false; /* training on (train.epochs raised): not done until the new end */
    /* a new training's state comes before its first model: a model of this
     * training never stands without one, which would make it look finished */
    if (t->progress.step == 0 && comm->rank == 0)
        sr_train_state_save(t->state_path, &t->net, &t->adam, &t->progress, conf->text);
    const int rc = train_loop(t);
    if (comm->rank == 0 && t->progress.done) printf("train: done; model in %s, curve in %s\n", t->model_path, t->curve_path);
    sr_trainer_close(t);
    return rc;
}
