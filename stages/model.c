#include "stages/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/check.h"
#include "io/checkpoint.h"
#include "io/train_state.h"

/* The stages' backends: one per distinct request, made when first asked
 * for and kept while the process runs, so that the stages semrep run runs
 * one after another share it (a GPU's stream, cuBLAS handle and scratch are
 * made once). */
typedef struct stage_backend {
    struct stage_backend *next;
    char name[32], gpu_math[16];
    int threads, device;
    sr_backend *be;
} stage_backend;

static stage_backend *stage_backends;

const sr_backend *sr_stage_backend(const semrep_conf *conf, const semrep_comm *comm, int threads, char *err,
                                   size_t errlen)
{
    if (threads == 0) threads = conf->threads ? conf->threads : sr_comm_default_threads(comm);
    const sr_backend_request request = {
        .name = conf->backend, .threads = threads, .device = comm->local_rank, .gpu_math = conf->gpu_math};
    stage_backend *s = stage_backends;
    while (s && (strcmp(s->name, conf->backend) || strcmp(s->gpu_math, conf->gpu_math) || s->threads != threads ||
                 s->device != comm->local_rank))
        s = s->next;
    if (!s) {
        sr_backend *be = sr_backend_select(&request, err, errlen);
        if (!be) return NULL;
        s = SR_MALLOC(sizeof *s, "a stage's backend");
        *s = (stage_backend){.next = stage_backends, .threads = threads, .device = comm->local_rank, .be = be};
        snprintf(s->name, sizeof s->name, "%s", conf->backend);
        snprintf(s->gpu_math, sizeof s->gpu_math, "%s", conf->gpu_math);
        stage_backends = s;
    }
    /* the CPU's threads are the run's: the stage's own loops take them too */
    if (threads > 0 && sr_be_host_memory(s->be)) sr_backend_cpu_default_threads(threads);
    return s->be;
}

void sr_default_checkpoint_path(const semrep_conf *conf, char *path, size_t len)
{
    snprintf(path, len, "%s/checkpoint.nc", conf->output_dir);
}

void sr_model_checkpoint_path(const semrep_conf *conf, char *path, size_t len)
{
    if (conf->model.checkpoint[0]) snprintf(path, len, "%s", conf->model.checkpoint);
    else sr_default_checkpoint_path(conf, path, len);
}

void sr_train_state_path(const semrep_conf *conf, char *path, size_t len)
{
    snprintf(path, len, "%s/train-state.nc", conf->output_dir);
}

bool sr_train_state_is_for(const semrep_conf *conf, const char *state_model)
{
    char model[SR_PATH_MAX + 32];
    sr_model_checkpoint_path(conf, model, sizeof model);
    struct stat a, b;
    char fallback[SR_PATH_MAX + 32];
    if (!state_model[0]) { /* a state from before states named their model: it trained the default one */
        sr_default_checkpoint_path(conf, fallback, sizeof fallback);
        state_model = fallback;
    }
    /* the same file however its path is spelled (relative, absolute, links) */
    if (stat(state_model, &a) == 0 && stat(model, &b) == 0) return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
    return !strcmp(state_model, model);
}

int sr_model_finished(const semrep_conf *conf, char *err, size_t errlen)
{
    char model[SR_PATH_MAX + 32], state[SR_PATH_MAX + 32];
    sr_model_checkpoint_path(conf, model, sizeof model);
    sr_train_state_path(conf, state, sizeof state);
    if (access(state, F_OK) != 0) return 1; /* a model from elsewhere, or none yet */
    sr_train_progress p = {0};
    if (sr_train_state_progress(state, &p, err, errlen)) return -1;
    if (p.done || p.epoch >= conf->train.epochs || !sr_train_state_is_for(conf, p.model)) return 1;
    snprintf(err, errlen,
             "the model %s is not fully trained: its training state %s stopped at step %ld, in epoch %ld of %d; "
             "finish it with semrep run or semrep stage train and the same conf",
             model, state, p.step, p.epoch + 1, conf->train.epochs);
    return 0;
}

int sr_model_plan(const semrep_conf *conf, const sr_backend *be, int batch, bool train, sr_unet *net,
                  char *err, size_t errlen)
{
    const sr_unet_shape shape = sr_conf_shape(conf);
    if (sr_unet_plan(net, &shape, err, errlen)) return -1;
    const int size = conf->dataset.size > conf->train.dataset.size ? conf->dataset.size : conf->train.dataset.size;
    if (sr_unet_work_check(net, batch, size, size, err, errlen)) {
        sr_unet_free(net);
        return -1;
    }
    /* parameters; for training also gradients and two Adam moments */
    const double params = (double)net->param_floats * sizeof(float) * (train ? 4 : 1);
    const double work = (double)sr_unet_work_bytes(net, batch, size, size, train);
    const double have = (double)sr_be_memory_bytes(be);
    if (params + work > have) {
        char kernels[128];
        sr_format_ints(shape.kernels, shape.levels + 1, kernels, sizeof kernels);
        snprintf(err, errlen,
                 "model.kernels = %s needs %.1f GiB (%.1f GiB of parameters%s, %.1f GiB for %d images of %dx%d) "
                 "but the %s backend has %.1f GiB; use fewer channels or a smaller batch",
                 kernels, (params + work) / 1073741824.0, params / 1073741824.0,
                 train ? " with gradients and Adam" : "", work / 1073741824.0, batch, size, size, sr_be_name(be),
                 have / 1073741824.0);
        sr_unet_free(net);
        return -1;
    }
    return 0;
}

int sr_model_open(const semrep_conf *conf, const sr_backend *be, int batch, bool train, sr_unet *net,
                  char *err, size_t errlen)
{
    if (sr_model_finished(conf, err, errlen) != 1) return -1;
    if (sr_model_plan(conf, be, batch, train, net, err, errlen)) return -1;
    char path[SR_PATH_MAX + 32];
    sr_model_checkpoint_path(conf, path, sizeof path);
    sr_unet_alloc(net, be);
    if (sr_checkpoint_load(path, net, err, errlen)) {
        sr_unet_free(net);
        return -1;
    }
    return 0;
}

void sr_model_checksum(const sr_unet *net, char out[17])
{
    float *host = SR_MALLOC(net->param_floats * sizeof(float), "a copy of the weights");
    sr_be_to_host(net->be, host, net->param, net->param_floats * sizeof(float));
    sr_checkpoint_checksum(net, host, out);
    free(host);
}
