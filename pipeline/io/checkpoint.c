#include "core/check.h"
#include "io/checkpoint.h"
#include "io/files.h"

#include <math.h>
#include <netcdf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "io/nc.h"

void sr_format_ints(const int *v, int n, char *out, size_t len)
{
    size_t used = (size_t)snprintf(out, len, "[");
    for (int i = 0; i < n && used < len; i++)
        used += (size_t)snprintf(out + used, len - used, "%s%d", i ? ", " : "", v[i]);
    if (used < len) snprintf(out + used, len - used, "]");
}

static int by_name(const void *a, const void *b)
{
    return strcmp((*(const sr_param *const *)a)->name, (*(const sr_param *const *)b)->name);
}

void sr_checkpoint_checksum(const sr_unet *net, const float *host_params, char out[17])
{
    const sr_param **sorted = SR_MALLOC(sizeof(sr_param *) * (size_t)net->nparams, "the checksum");
    for (int i = 0; i < net->nparams; i++) sorted[i] = &net->params[i];
    qsort(sorted, (size_t)net->nparams, sizeof *sorted, by_name);
    XXH3_state_t *state = XXH3_createState();
    SR_CHECK(state && XXH3_64bits_reset(state) == XXH_OK, "xxHash could not start a checksum");
    for (int i = 0; i < net->nparams; i++) {
        const sr_param *p = sorted[i];
        XXH3_64bits_update(state, p->name, strlen(p->name) + 1); /* with its 0 byte */
        XXH3_64bits_update(state, host_params + p->offset, p->count * sizeof(float));
    }
    snprintf(out, 17, "%016llx", (unsigned long long)XXH3_64bits_digest(state));
    XXH3_freeState(state);
    free(sorted);
}

static float *params_to_host(const sr_unet *net)
{
    float *host = SR_MALLOC(net->param_floats * sizeof(float), "a host copy of the parameters");
    sr_be_to_host(net->be, host, net->param, net->param_floats * sizeof(float));
    return host;
}

void sr_nc_put_shape(int ncid, const sr_unet_shape *s, const char *file)
{
    const int n = s->levels;
    int bias[SR_MAX_LEVELS];
    for (int b = 0; b < n; b++) bias[b] = s->upsample_bias[b];
    sr_nc_put_ints(ncid, NC_GLOBAL, "in_channels", &s->in_channels, 1, file);
    sr_nc_put_ints(ncid, NC_GLOBAL, "kernels", s->kernels, (size_t)n + 1, file);
    sr_nc_put_ints(ncid, NC_GLOBAL, "enc_convs", s->enc_convs, (size_t)n, file);
    sr_nc_put_ints(ncid, NC_GLOBAL, "mid_convs", &s->mid_convs, 1, file);
    sr_nc_put_ints(ncid, NC_GLOBAL, "dec_convs", s->dec_convs, (size_t)n, file);
    sr_nc_put_text(ncid, NC_GLOBAL, "norm", s->norm == SR_NORM_BATCH ? "batch" : "layer", file);
    sr_nc_put_text(ncid, NC_GLOBAL, "output", s->output == SR_OUTPUT_RESIDUAL ? "residual" : "clean", file);
    sr_nc_put_ints(ncid, NC_GLOBAL, "upsample_bias", bias, (size_t)n, file);
}

void sr_checkpoint_save(const char *path, const sr_unet *net, const char *conf_text, const char *source)
{
    char tmp[4200], sum[17];
    sr_tmp_path(path, tmp, sizeof tmp);
    float *host = params_to_host(net);
    sr_checkpoint_checksum(net, host, sum);
    int ncid, version = SR_CHECKPOINT_VERSION;
    SR_NC(nc_create(tmp, NC_NETCDF4 | NC_CLOBBER, &ncid), tmp);
    sr_nc_put_text(ncid, NC_GLOBAL, "format", SR_CHECKPOINT_FORMAT, tmp);
    sr_nc_put_ints(ncid, NC_GLOBAL, "format_version", &version, 1, tmp);
    sr_nc_put_shape(ncid, &net->shape, tmp);
    const long long count = (long long)net->trainable_count;
    SR_NC(nc_put_att_longlong(ncid, NC_GLOBAL, "parameters", NC_INT64, 1, &count), tmp);
    sr_nc_put_text(ncid, NC_GLOBAL, "checksum", sum, tmp);
    if (conf_text) sr_nc_put_text(ncid, NC_GLOBAL, "conf", conf_text, tmp);
    if (source) sr_nc_put_text(ncid, NC_GLOBAL, "source", source, tmp);
    int *varids = SR_MALLOC(sizeof(int) * (size_t)net->nparams, "the checkpoint's variables");
    for (int i = 0; i < net->nparams; i++) {
        const sr_param *p = &net->params[i];
        int dims[4];
        for (int d = 0; d < p->ndim; d++) dims[d] = sr_nc_dim_of_length(ncid, (size_t)p->dims[d], tmp);
        SR_NC(nc_def_var(ncid, p->name, NC_FLOAT, p->ndim, dims, &varids[i]), tmp);
    }
    SR_NC(nc_enddef(ncid), tmp);
    for (int i = 0; i < net->nparams; i++)
        SR_NC(nc_put_var_float(ncid, varids[i], host + net->params[i].offset), tmp);
    SR_NC(nc_close(ncid), tmp);
    sr_commit_file(tmp, path);
    free(varids);
    free(host);
}

/* Loading reports problems instead of dying: a caller may try another file,
 * and tests check each message. */
static int open_checkpoint(const char *path, int *ncid, char *err, size_t errlen)
{
    if (access(path, R_OK) != 0)
        SR_BAD("no readable checkpoint at %s; train one (semrep stage train CONF) or set model.checkpoint", path);
    if (sr_check_regular(path, "model.checkpoint", err, errlen)) return -1;
    const int rc = nc_open(path, NC_NOWRITE, ncid);
    if (rc != NC_NOERR)
        SR_BAD("cannot open the checkpoint %s: %s; it is damaged or not a NetCDF file: copy or convert it again", path,
            nc_strerror(rc));
    char format[64];
    if (sr_nc_get_text(*ncid, NC_GLOBAL, "format", format, sizeof format) || strcmp(format, SR_CHECKPOINT_FORMAT)) {
        nc_close(*ncid);
        SR_BAD("%s is not a semrep checkpoint (no format = \"%s\" attribute); convert PyTorch models with pipeline/io/convert_checkpoint.py",
            path, SR_CHECKPOINT_FORMAT);
    }
    return 0;
}

static int need_ints(int ncid, const char *path, const char *name, int *out, int want, char *err, size_t errlen)
{
    const int n = sr_nc_get_ints(ncid, NC_GLOBAL, name, out, SR_MAX_LEVELS + 1);
    if (n < 1 || (want > 0 && n != want)) SR_BAD("%s: attribute %s is missing or has the wrong length", path, name);
    return 0;
}

int sr_nc_read_shape(int ncid, const char *path, sr_unet_shape *s, char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    int bias[SR_MAX_LEVELS + 1];
    const int nk = sr_nc_get_ints(ncid, NC_GLOBAL, "kernels", s->kernels, SR_MAX_LEVELS + 1);
    if (nk < 2) SR_BAD("%s: attribute kernels is missing or has fewer than 2 entries", path);
    s->levels = nk - 1;
    if (need_ints(ncid, path, "in_channels", &s->in_channels, 1, err, errlen) ||
        need_ints(ncid, path, "enc_convs", s->enc_convs, s->levels, err, errlen) ||
        need_ints(ncid, path, "mid_convs", &s->mid_convs, 1, err, errlen) ||
        need_ints(ncid, path, "dec_convs", s->dec_convs, s->levels, err, errlen) ||
        need_ints(ncid, path, "upsample_bias", bias, s->levels, err, errlen))
        return -1;
    for (int b = 0; b < s->levels; b++) s->upsample_bias[b] = bias[b] != 0;
    char text[64];
    if (sr_nc_get_text(ncid, NC_GLOBAL, "norm", text, sizeof text) || (strcmp(text, "layer") && strcmp(text, "batch")))
        SR_BAD("%s: attribute norm must be \"layer\" or \"batch\"", path);
    s->norm = strcmp(text, "batch") ? SR_NORM_LAYER : SR_NORM_BATCH;
    if (sr_nc_get_text(ncid, NC_GLOBAL, "output", text, sizeof text) || (strcmp(text, "clean") && strcmp(text, "residual")))
        SR_BAD("%s: attribute output must be \"clean\" or \"residual\"", path);
    s->output = strcmp(text, "residual") ? SR_OUTPUT_CLEAN : SR_OUTPUT_RESIDUAL;
    char why[256];
    if (sr_unet_shape_check(s, why, sizeof why)) SR_BAD("%s: %s", path, why);
    return 0;
}

static int read_info(int ncid, const char *path, sr_checkpoint_info *info, char *err, size_t errlen)
{
    memset(info, 0, sizeof *info);
    if (need_ints(ncid, path, "format_version", &info->version, 1, err, errlen)) return -1;
    if (info->version != SR_CHECKPOINT_VERSION)
        SR_BAD("checkpoint %s has format_version %d; this semrep reads version %d", path, info->version,
            SR_CHECKPOINT_VERSION);
    if (sr_nc_read_shape(ncid, path, &info->shape, err, errlen)) return -1;
    if (sr_nc_get_text(ncid, NC_GLOBAL, "checksum", info->checksum, sizeof info->checksum))
        SR_BAD("checkpoint %s: attribute checksum is missing", path);
    if (nc_get_att_longlong(ncid, NC_GLOBAL, "parameters", &info->parameters) != NC_NOERR)
        SR_BAD("checkpoint %s: attribute parameters is missing", path);
    if (sr_nc_get_text(ncid, NC_GLOBAL, "source", info->source, sizeof info->source)) info->source[0] = '\0';
    return 0;
}

int sr_checkpoint_read_info(const char *path, sr_checkpoint_info *info, char *err, size_t errlen)
{
    int ncid;
    if (open_checkpoint(path, &ncid, err, errlen)) return -1;
    const int rc = read_info(ncid, path, info, err, errlen);
    nc_close(ncid);
    return rc;
}

/* Names the first shape attribute where the file and the conf differ. */
int sr_shape_compare(const char *path, const sr_unet_shape *file, const sr_unet_shape *conf, char *err,
                     size_t errlen)
{
    char a[128], b[128];
    const int nf = file->levels, nc = conf->levels;
    int fb[SR_MAX_LEVELS], cb[SR_MAX_LEVELS];
    for (int i = 0; i < SR_MAX_LEVELS; i++) fb[i] = file->upsample_bias[i], cb[i] = conf->upsample_bias[i];
    const struct {
        const char *key;
        const int *f, *c;
        int nf, nc; /* 0: a single number */
    } fields[] = {
        {"in_channels", &file->in_channels, &conf->in_channels, 0, 0},
        {"kernels", file->kernels, conf->kernels, nf + 1, nc + 1},
        {"enc_convs", file->enc_convs, conf->enc_convs, nf, nc},
        {"mid_convs", &file->mid_convs, &conf->mid_convs, 0, 0},
        {"dec_convs", file->dec_convs, conf->dec_convs, nf, nc},
        {"upsample_bias", fb, cb, nf, nc},
    };
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
        const int single = fields[i].nf == 0, count = single ? 1 : fields[i].nf;
        if (fields[i].nf == fields[i].nc && !memcmp(fields[i].f, fields[i].c, sizeof(int) * (size_t)count)) continue;
        if (single) {
            snprintf(a, sizeof a, "%d", *fields[i].f);
            snprintf(b, sizeof b, "%d", *fields[i].c);
        } else {
            sr_format_ints(fields[i].f, fields[i].nf, a, sizeof a);
            sr_format_ints(fields[i].c, fields[i].nc, b, sizeof b);
        }
        SR_BAD("%s has %s = %s but the conf's model.%s is %s; make the conf match the model", path,
            fields[i].key, a, fields[i].key, b);
    }
    if (file->norm != conf->norm)
        SR_BAD("%s has norm \"%s\" but the conf's model.norm differs; make the conf match the model", path,
            file->norm == SR_NORM_BATCH ? "batch" : "layer");
    if (file->output != conf->output)
        SR_BAD("%s has output \"%s\" but the conf's model.output differs; make the conf match the model",
            path, file->output == SR_OUTPUT_RESIDUAL ? "residual" : "clean");
    return 0;
}

static int read_variable(int ncid, const char *path, const sr_param *p, float *dst, char *err, size_t errlen)
{
    int varid, ndims, dimids[NC_MAX_VAR_DIMS];
    nc_type type;
    if (nc_inq_varid(ncid, p->name, &varid) != NC_NOERR)
        SR_BAD("checkpoint %s lacks the variable %s that the model's shape needs", path, p->name);
    int ok = nc_inq_var(ncid, varid, NULL, &type, &ndims, dimids, NULL) == NC_NOERR && type == NC_FLOAT &&
             ndims == p->ndim;
    for (int d = 0; ok && d < ndims; d++) {
        size_t len = 0;
        ok = nc_inq_dimlen(ncid, dimids[d], &len) == NC_NOERR && len == (size_t)p->dims[d];
    }
    if (!ok) {
        char want[64];
        sr_format_ints(p->dims, p->ndim, want, sizeof want);
        SR_BAD("checkpoint %s: variable %s is not float32 of shape %s as the model's shape needs", path, p->name, want);
    }
    const int rc = nc_get_var_float(ncid, varid, dst);
    if (rc != NC_NOERR)
        SR_BAD("checkpoint %s: cannot read variable %s: %s; the file is damaged", path, p->name, nc_strerror(rc));
    for (size_t i = 0; i < p->count; i++)
        if (!isfinite(dst[i]))
            SR_BAD("checkpoint %s: variable %s holds %s at index %zu; the model is broken, use another checkpoint", path,
                p->name, isnan(dst[i]) ? "NaN" : "Inf", i);
    return 0;
}

static int load_open(int ncid, const char *path, sr_unet *net, float *host, char *err, size_t errlen)
{
    sr_checkpoint_info info;
    char label[4200];
    snprintf(label, sizeof label, "checkpoint %s", path);
    if (read_info(ncid, path, &info, err, errlen) || sr_shape_compare(label, &info.shape, &net->shape, err, errlen))
        return -1;
    int nvars;
    if (nc_inq_nvars(ncid, &nvars) != NC_NOERR) SR_BAD("checkpoint %s: cannot list its variables; the file is damaged", path);
    for (int v = 0; v < nvars; v++) {
        char name[NC_MAX_NAME + 1] = "";
        nc_inq_varname(ncid, v, name);
        if (!sr_unet_param(net, name))
            SR_BAD("checkpoint %s holds a variable %s that the conf's model shape has no place for", path, name);
    }
    for (int i = 0; i < net->nparams; i++)
        if (read_variable(ncid, path, &net->params[i], host + net->params[i].offset, err, errlen)) return -1;
    char sum[17];
    sr_checkpoint_checksum(net, host, sum);
    if (strcmp(sum, info.checksum))
        SR_BAD("checkpoint %s: its values give checksum %s but the file says %s; the file is damaged", path, sum,
            info.checksum);
    return 0;
}

int sr_checkpoint_load(const char *path, sr_unet *net, char *err, size_t errlen)
{
    int ncid;
    if (open_checkpoint(path, &ncid, err, errlen)) return -1;
    float *host = SR_MALLOC(net->param_floats * sizeof(float), "the checkpoint's values");
    memset(host, 0, net->param_floats * sizeof(float));
    const int rc = load_open(ncid, path, net, host, err, errlen);
    nc_close(ncid);
    if (!rc) sr_be_to_device(net->be, net->param, host, net->param_floats * sizeof(float));
    free(host);
    return rc;
}
