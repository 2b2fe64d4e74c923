#include "core/check.h"
#include "io/train_state.h"

#include <netcdf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "io/checkpoint.h"
#include "io/nc.h"

void sr_train_progress_add(sr_train_progress *p, sr_curve_point point)
{
    if (p->curve_len == p->curve_cap) {
        p->curve_cap = p->curve_cap ? 2 * p->curve_cap : 256;
        p->curve = SR_REALLOC(p->curve, (size_t)p->curve_cap, sizeof *p->curve, "the training curve");
    }
    p->curve[p->curve_len++] = point;
}

void sr_train_progress_add_heldout(sr_train_progress *p, sr_heldout_point point)
{
    if (p->heldout_len == p->heldout_cap) {
        p->heldout_cap = p->heldout_cap ? 2 * p->heldout_cap : 16;
        p->heldout = SR_REALLOC(p->heldout, (size_t)p->heldout_cap, sizeof *p->heldout, "the held-out losses");
    }
    p->heldout[p->heldout_len++] = point;
}

void sr_train_progress_free(sr_train_progress *p)
{
    free(p->curve), free(p->heldout);
    p->curve = NULL, p->heldout = NULL;
    p->curve_len = p->curve_cap = p->heldout_len = p->heldout_cap = 0;
}

/* The curve's and the held-out evaluations' variables (docs/formats.md):
 * columns of sr_curve_point and sr_heldout_point, in their order. */
static const sr_nc_var curve_vars[4] = {
    {"step", NC_DOUBLE, "point", NULL, "steps taken"},
    {"loss", NC_DOUBLE, "point", NULL, "the mean over the step's global batch of sum over pixels (D(y) - x)^2"},
    {"lr", NC_DOUBLE, "point", NULL, "Adam's learning rate of the step"},
    {"images_per_s", NC_DOUBLE, "point", NULL, "training images per second over all ranks, since the previous point"},
};
static const sr_nc_var heldout_vars[3] = {
    {"heldout_step", NC_DOUBLE, "evaluation", NULL, "the step after which the held-out loss was measured"},
    {"heldout_epoch", NC_DOUBLE, "evaluation", NULL, "epochs finished then (a fraction at the end of a sitting)"},
    {"heldout_loss", NC_DOUBLE, "evaluation", NULL,
     "the training loss on held-out images, each at a sigma drawn as training draws them (train.heldout_images)"},
};

/* rows x n doubles (an array of structs of n doubles) as n variables along
 * an unlimited dimension; the file is left in define mode. */
static void put_columns(int ncid, const char *dim_name, const sr_nc_var *vars, int n, const double *rows, long count,
                        const char *file)
{
    int dim, var[8];
    SR_NC(nc_def_dim(ncid, dim_name, NC_UNLIMITED, &dim), file);
    sr_nc_define_vars(ncid, vars, n, "", var, file);
    SR_NC(nc_enddef(ncid), file);
    double *column = SR_MALLOC(sizeof(double) * (size_t)(count + 1), "a column of the training curve");
    const size_t start = 0, len = (size_t)count;
    for (int v = 0; v < n && count; v++) {
        for (long i = 0; i < count; i++) column[i] = rows[(size_t)i * n + v];
        SR_NC(nc_put_vara_double(ncid, var[v], &start, &len, column), file);
    }
    free(column);
    SR_NC(nc_redef(ncid), file);
}

static void put_curve(int ncid, const sr_train_progress *p, const char *file)
{
    put_columns(ncid, "point", curve_vars, 4, (const double *)p->curve, p->curve_len, file);
    put_columns(ncid, "evaluation", heldout_vars, 3, (const double *)p->heldout, p->heldout_len, file);
}

static unsigned long long state_checksum(const float *host, size_t floats)
{
    return (unsigned long long)XXH3_64bits(host, floats * sizeof(float));
}

void sr_train_state_save(const char *path, const sr_unet *net, const sr_adam *adam, const sr_train_progress *p,
                         const char *conf_text)
{
    char tmp[4200], sum[17];
    sr_tmp_path(path, tmp, sizeof tmp);
    const size_t n = net->param_floats;
    float *host = SR_MALLOC(3 * n * sizeof(float), "a host copy of the training state");
    sr_be_to_host(net->be, host, net->param, n * sizeof(float));
    sr_be_to_host(net->be, host + n, adam->m, n * sizeof(float));
    sr_be_to_host(net->be, host + 2 * n, adam->v, n * sizeof(float));
    snprintf(sum, sizeof sum, "%016llx", state_checksum(host, 3 * n));
    int ncid, dim, var[3], version = SR_TRAIN_STATE_VERSION;
    SR_NC(nc_create(tmp, NC_NETCDF4 | NC_CLOBBER, &ncid), tmp);
    sr_nc_put_text(ncid, NC_GLOBAL, "format", SR_TRAIN_STATE_FORMAT, tmp);
    sr_nc_put_ints(ncid, NC_GLOBAL, "format_version", &version, 1, tmp);
    sr_nc_put_shape(ncid, &net->shape, tmp);
    const long long counters[3] = {p->step, p->epoch, p->next_in_epoch};
    SR_NC(nc_put_att_longlong(ncid, NC_GLOBAL, "step", NC_INT64, 1, &counters[0]), tmp);
    SR_NC(nc_put_att_longlong(ncid, NC_GLOBAL, "epoch", NC_INT64, 1, &counters[1]), tmp);
    SR_NC(nc_put_att_longlong(ncid, NC_GLOBAL, "next_in_epoch", NC_INT64, 1, &counters[2]), tmp);
    const int done = p->done;
    sr_nc_put_ints(ncid, NC_GLOBAL, "done", &done, 1, tmp);
    sr_nc_put_ints(ncid, NC_GLOBAL, "ranks", &p->ranks, 1, tmp);
    if (p->model[0]) sr_nc_put_text(ncid, NC_GLOBAL, "model", p->model, tmp);
    SR_NC(nc_put_att_float(ncid, NC_GLOBAL, "adam_lr", NC_FLOAT, 1, &adam->lr), tmp);
    const long long adam_step = adam->step;
    SR_NC(nc_put_att_longlong(ncid, NC_GLOBAL, "adam_step", NC_INT64, 1, &adam_step), tmp);
    sr_nc_put_text(ncid, NC_GLOBAL, "checksum", sum, tmp);
    if (conf_text) sr_nc_put_text(ncid, NC_GLOBAL, "conf", conf_text, tmp);
    SR_NC(nc_def_dim(ncid, "parameter_floats", n, &dim), tmp);
    const char *names[3] = {"weights", "adam_m", "adam_v"};
    for (int v = 0; v < 3; v++) SR_NC(nc_def_var(ncid, names[v], NC_FLOAT, 1, &dim, &var[v]), tmp);
    sr_nc_put_text(ncid, var[0], "layout", "the parameter arena of the shape: each state-dict tensor, in the order the engine plans them, padded to 16 floats", tmp);
    put_curve(ncid, p, tmp);
    SR_NC(nc_enddef(ncid), tmp);
    for (int v = 0; v < 3; v++) SR_NC(nc_put_var_float(ncid, var[v], host + (size_t)v * n), tmp);
    SR_NC(nc_close(ncid), tmp);
    sr_commit_file(tmp, path);
    free(host);
}

static int get_long(int ncid, const char *path, const char *name, long *out, char *err, size_t errlen)
{
    long long v;
    if (nc_get_att_longlong(ncid, NC_GLOBAL, name, &v) != NC_NOERR) SR_BAD("training state %s: attribute %s is missing", path, name);
    *out = (long)v;
    return 0;
}

/* The format, then the counters and the done mark into p. */
static int read_progress(int ncid, const char *path, sr_train_progress *p, char *err, size_t errlen)
{
    char text[64];
    int version = 0, done = 0;
    if (sr_nc_get_text(ncid, NC_GLOBAL, "format", text, sizeof text) || strcmp(text, SR_TRAIN_STATE_FORMAT))
        SR_BAD("%s is not a semrep training state (no format = \"%s\")", path, SR_TRAIN_STATE_FORMAT);
    if (sr_nc_get_ints(ncid, NC_GLOBAL, "format_version", &version, 1) != 1 || version != SR_TRAIN_STATE_VERSION)
        SR_BAD("training state %s has format_version %d; this semrep reads %d", path, version, SR_TRAIN_STATE_VERSION);
    if (get_long(ncid, path, "step", &p->step, err, errlen) || get_long(ncid, path, "epoch", &p->epoch, err, errlen) ||
        get_long(ncid, path, "next_in_epoch", &p->next_in_epoch, err, errlen))
        return -1;
    if (sr_nc_get_ints(ncid, NC_GLOBAL, "done", &done, 1) != 1 || sr_nc_get_ints(ncid, NC_GLOBAL, "ranks", &p->ranks, 1) != 1)
        SR_BAD("training state %s: attribute done or ranks is missing", path);
    p->done = done != 0;
    if (sr_nc_get_text(ncid, NC_GLOBAL, "model", p->model, sizeof p->model)) p->model[0] = '\0'; /* older states */
    return 0;
}

/* n columns along dim_name into rows (an array of structs of n doubles, of
 * the dimension's length: *count); a file without the dimension has none. */
static int get_columns(int ncid, const char *path, const char *dim_name, const sr_nc_var *vars, int n, double **rows,
                       long *count, char *err, size_t errlen)
{
    int dim, var[8];
    size_t len = 0;
    *count = 0;
    if (nc_inq_dimid(ncid, dim_name, &dim) != NC_NOERR) return 0; /* a state from before it */
    nc_inq_dimlen(ncid, dim, &len);
    char required[256] = "";
    for (int v = 0; v < n; v++) strcat(strcat(required, vars[v].name), " ");
    if (sr_nc_find_vars(ncid, vars, n, required, var, path, err, errlen)) return -1;
    double *column = sr_try_realloc(NULL, len + 1, sizeof(double), "the training curve", err, errlen);
    *rows = column ? sr_try_realloc(NULL, (len + 1) * (size_t)n, sizeof(double), "the training curve", err, errlen) : NULL;
    if (!*rows) return free(column), -1;
    for (int v = 0; v < n; v++) {
        if (len && nc_get_var_double(ncid, var[v], column) != NC_NOERR) {
            free(column), free(*rows), *rows = NULL;
            SR_BAD("training state %s: the curve's %s cannot be read; the file is damaged", path, vars[v].name);
        }
        for (size_t i = 0; i < len; i++) (*rows)[i * n + v] = column[i];
    }
    free(column);
    *count = (long)len;
    return 0;
}

static int get_curve(int ncid, const char *path, sr_train_progress *p, char *err, size_t errlen)
{
    double *rows = NULL;
    long count;
    if (get_columns(ncid, path, "point", curve_vars, 4, &rows, &count, err, errlen)) return -1;
    p->curve_len = 0;
    for (long i = 0; i < count; i++) sr_train_progress_add(p, *(const sr_curve_point *)(rows + 4 * i));
    free(rows), rows = NULL;
    if (get_columns(ncid, path, "evaluation", heldout_vars, 3, &rows, &count, err, errlen)) return -1;
    p->heldout_len = 0;
    for (long i = 0; i < count; i++) sr_train_progress_add_heldout(p, *(const sr_heldout_point *)(rows + 3 * i));
    free(rows);
    return 0;
}

static int load_open(int ncid, const char *path, sr_unet *net, sr_adam *adam, sr_train_progress *p, float *host,
                     char *err, size_t errlen)
{
    char label[4200];
    if (read_progress(ncid, path, p, err, errlen)) return -1;
    sr_unet_shape shape;
    snprintf(label, sizeof label, "training state %s", path);
    if (sr_nc_read_shape(ncid, label, &shape, err, errlen) || sr_shape_compare(label, &shape, &net->shape, err, errlen))
        return -1;
    long adam_step = 0;
    if (get_long(ncid, path, "adam_step", &adam_step, err, errlen)) return -1;
    adam->step = adam_step;
    const size_t n = net->param_floats;
    const char *names[3] = {"weights", "adam_m", "adam_v"};
    for (int v = 0; v < 3; v++) {
        int varid, dim;
        size_t len = 0;
        if (nc_inq_varid(ncid, names[v], &varid) != NC_NOERR || nc_inq_vardimid(ncid, varid, &dim) != NC_NOERR ||
            nc_inq_dimlen(ncid, dim, &len) != NC_NOERR || len != n)
            SR_BAD("training state %s: variable %s is missing or not %zu floats", path, names[v], n);
        const int rc = nc_get_var_float(ncid, varid, host + (size_t)v * n);
        if (rc != NC_NOERR) SR_BAD("training state %s: cannot read %s: %s; the file is damaged", path, names[v], nc_strerror(rc));
    }
    char want[17], have[17];
    snprintf(have, sizeof have, "%016llx", state_checksum(host, 3 * n));
    if (sr_nc_get_text(ncid, NC_GLOBAL, "checksum", want, sizeof want) || strcmp(want, have))
        SR_BAD("training state %s: its values give checksum %s but the file says %s; the file is damaged: delete it to start over",
            path, have, want);
    return get_curve(ncid, path, p, err, errlen);
}

static int open_state(const char *path, int *ncid, char *err, size_t errlen)
{
    const int rc = nc_open(path, NC_NOWRITE, ncid);
    if (rc != NC_NOERR)
        SR_BAD("cannot open the training state %s: %s; it is damaged: delete it to start over", path, nc_strerror(rc));
    return 0;
}

int sr_train_state_load(const char *path, sr_unet *net, sr_adam *adam, sr_train_progress *p, char *err, size_t errlen)
{
    int ncid;
    if (open_state(path, &ncid, err, errlen)) return -1;
    const size_t n = net->param_floats;
    float *host = SR_MALLOC(3 * n * sizeof(float), "the training state");
    const int loaded = load_open(ncid, path, net, adam, p, host, err, errlen);
    nc_close(ncid);
    if (!loaded) {
        sr_be_to_device(net->be, net->param, host, n * sizeof(float));
        sr_be_to_device(net->be, adam->m, host + n, n * sizeof(float));
        sr_be_to_device(net->be, adam->v, host + 2 * n, n * sizeof(float));
    }
    free(host);
    return loaded;
}

int sr_train_state_progress(const char *path, sr_train_progress *p, char *err, size_t errlen)
{
    int ncid;
    if (open_state(path, &ncid, err, errlen)) return -1;
    const int read = read_progress(ncid, path, p, err, errlen);
    nc_close(ncid);
    return read;
}

void sr_train_curve_save(const char *path, const sr_train_progress *p, const char *conf_text)
{
    char tmp[4200];
    sr_tmp_path(path, tmp, sizeof tmp);
    int ncid, version = 1;
    SR_NC(nc_create(tmp, NC_NETCDF4 | NC_CLOBBER, &ncid), tmp);
    sr_nc_put_text(ncid, NC_GLOBAL, "format", SR_CURVE_FORMAT, tmp);
    sr_nc_put_ints(ncid, NC_GLOBAL, "format_version", &version, 1, tmp);
    if (conf_text) sr_nc_put_text(ncid, NC_GLOBAL, "conf", conf_text, tmp);
    put_curve(ncid, p, tmp);
    SR_NC(nc_close(ncid), tmp);
    sr_commit_file(tmp, path);
}
