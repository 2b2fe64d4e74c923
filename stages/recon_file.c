#include "stages/recon_file.h"

#include <netcdf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "io/nc.h"

static const sr_nc_var recon_vars[SR_RECON_NVARS] = {
    {"target_kind", NC_INT, "target", NULL, "0 an image, 1 a cluster of clusters.nc, 2 none (unconditional)"},
    {"target_id", NC_INT64, "target", NULL, "the image's position in the data set, or the cluster's number"},
    {"samples", NC_FLOAT, "target sample channel y x", "pixel units: [0, 1] as the denoiser made them, not clipped",
     "the samples"},
    {"asigma", NC_DOUBLE, "asigma", "pixel units", "the analysis sigmas"},
    {"target_phi", NC_FLOAT, "asigma target feature", NULL, "the target's phi (a cluster's: its members' mean)"},
    {"sample_phi", NC_FLOAT, "asigma target sample feature", NULL, "the samples' phi"},
    {"phi_error", NC_FLOAT, "asigma target sample", NULL,
     "|phi(sample) - phi(target)| / |phi(target)| at the analysis sigma"},
    {"steps", NC_INT, "target sample", NULL, "sampler steps taken"},
    {"failed", NC_INT, "target sample", NULL, "1: the sample failed (reason)"},
    {"reason", NC_CHAR, "target sample reason_len", NULL, "why a sample failed"},
    {"own_cluster_share", NC_FLOAT, "target", NULL,
     "share of the target's samples whose phi is nearest the centre of the target's cluster (NaN: not measured)"},
    {"nn_label_share", NC_FLOAT, "target", NULL,
     "share whose nearest data-set image in phi has the target's label (a cluster's: its commonest)"},
    {"diversity", NC_FLOAT, "target", NULL,
     "mean RMS pixel distance between two samples of the target; attribute diversity_data: the same between data-set images"},
    {"nearest_cluster", NC_INT, "target sample", NULL, "the cluster whose centre is nearest the sample's phi (-1: unknown)"},
    {"nearest_image", NC_INT64, "target sample", NULL, "the data-set image nearest the sample in phi (-1: unknown)"},
    {"channel_mask", NC_BYTE, "feature", NULL,
     "1: a channel the projection matched (attribute mask, at reconstruct.mask_sigma of stats.nc), 0: one it left free"},
};

static void define(int ncid, const sr_recon_content *c, int v[SR_RECON_NVARS], const char *path)
{
    const struct { const char *name; size_t len; } dims[] = {
        {"target", (size_t)c->targets}, {"sample", (size_t)c->samples}, {"channel", (size_t)c->channels},
        {"y", (size_t)c->size}, {"x", (size_t)c->size}, {"asigma", (size_t)c->nanalysis},
        {"feature", (size_t)c->kmid}, {"reason_len", SR_REASON_LEN}};
    int dim;
    for (size_t d = 0; d < sizeof dims / sizeof *dims; d++) SR_NC(nc_def_dim(ncid, dims[d].name, dims[d].len, &dim), path);
    sr_nc_define_vars(ncid, recon_vars, SR_RECON_NVARS, "", v, path);
    const sr_recon_measures *m = c->measures;
    SR_NC(nc_put_att_double(ncid, NC_GLOBAL, "measures_sigma", NC_DOUBLE, 1, &c->measures_sigma), path);
    SR_NC(nc_put_att_int(ncid, NC_GLOBAL, "measures_k", NC_INT, 1, &m->k), path);
    SR_NC(nc_put_att_double(ncid, v[SR_RECON_DIVERSITY], "diversity_data", NC_DOUBLE, 1, &m->diversity_data), path);
    const double stats4[4] = {m->pr_samples, m->pr_data, m->norm_samples, m->norm_data};
    SR_NC(nc_put_att_double(ncid, NC_GLOBAL, "phi_pr_samples_data_norm_samples_data", NC_DOUBLE, 4, stats4), path);
    sr_nc_put_text(ncid, NC_GLOBAL, "measures_note", m->note, path);
}

void sr_recon_write(const char *path, const sr_recon_content *c, const sr_job_identity *id)
{
    int ncid, v[SR_RECON_NVARS], version = SR_RECON_VERSION;
    const size_t pairs = (size_t)c->targets * c->samples;
    SR_NC(nc_create(path, NC_NETCDF4 | NC_CLOBBER, &ncid), path);
    sr_nc_put_text(ncid, NC_GLOBAL, "format", SR_RECON_FORMAT, path);
    sr_nc_put_ints(ncid, NC_GLOBAL, "format_version", &version, 1, path);
    sr_nc_put_text(ncid, NC_GLOBAL, "Conventions", "CF-1.8", path);
    sr_job_put_identity(ncid, id, path);
    sr_nc_put_text(ncid, NC_GLOBAL, "sampler", c->sampler, path);
    sr_nc_put_text(ncid, NC_GLOBAL, "mask", c->mask, path);
    sr_nc_put_text(ncid, NC_GLOBAL, "conf", c->conf_text, path);
    define(ncid, c, v, path);
    SR_NC(nc_enddef(ncid), path);
    SR_NC(nc_put_var_int(ncid, v[SR_RECON_TARGET_KIND], c->target_kind), path);
    SR_NC(nc_put_var_longlong(ncid, v[SR_RECON_TARGET_ID], c->target_id), path);
    SR_NC(nc_put_var_float(ncid, v[SR_RECON_SAMPLES], c->x), path);
    SR_NC(nc_put_var_double(ncid, v[SR_RECON_ASIGMA], c->asigma), path);
    SR_NC(nc_put_var_float(ncid, v[SR_RECON_TARGET_PHI], c->target_phi), path);
    SR_NC(nc_put_var_float(ncid, v[SR_RECON_SAMPLE_PHI], c->sample_phi), path);
    SR_NC(nc_put_var_float(ncid, v[SR_RECON_PHI_ERROR], c->phi_error), path);
    signed char *mask = SR_MALLOC((size_t)c->kmid, "the channel mask");
    for (int ch = 0; ch < c->kmid; ch++) mask[ch] = c->channel_mask[ch] > 0.0f;
    SR_NC(nc_put_var_schar(ncid, v[SR_RECON_CHANNEL_MASK], mask), path);
    free(mask);
    SR_NC(nc_put_var_int(ncid, v[SR_RECON_STEPS], c->steps), path);
    SR_NC(nc_put_var_int(ncid, v[SR_RECON_FAILED], c->failed), path);
    SR_NC(nc_put_var_text(ncid, v[SR_RECON_REASON], &c->reason[0][0]), path);
    const sr_recon_measures *m = c->measures;
    SR_NC(nc_put_var_float(ncid, v[SR_RECON_OWN_CLUSTER], m->own_cluster), path);
    SR_NC(nc_put_var_float(ncid, v[SR_RECON_NN_LABEL], m->nn_label), path);
    SR_NC(nc_put_var_float(ncid, v[SR_RECON_DIVERSITY], m->diversity), path);
    SR_NC(nc_put_var_int(ncid, v[SR_RECON_NEAREST_CLUSTER], m->nearest_cluster), path);
    long long *near = SR_MALLOC(sizeof(long long) * (pairs ? pairs : 1), "the nearest images");
    for (size_t p = 0; p < pairs; p++) near[p] = m->nearest_image[p];
    SR_NC(nc_put_var_longlong(ncid, v[SR_RECON_NEAREST_IMAGE], near), path);
    free(near);
    SR_NC(nc_close(ncid), path);
}

int sr_recon_open(const char *path, int ids[SR_RECON_NVARS], char *err, size_t errlen)
{
    int ncid, version = 0;
    char format[64] = "";
    const int rc = nc_open(path, NC_NOWRITE, &ncid);
    if (rc != NC_NOERR) SR_BAD("cannot open %s: %s; make it again (semrep stage reconstruct)", path, nc_strerror(rc));
    if (sr_nc_get_text(ncid, NC_GLOBAL, "format", format, sizeof format) || strcmp(format, SR_RECON_FORMAT) ||
        sr_nc_get_ints(ncid, NC_GLOBAL, "format_version", &version, 1) != 1 || version != SR_RECON_VERSION) {
        nc_close(ncid);
        SR_BAD("%s is not a recon.nc of version %d (format \"%s\", version %d); make it again (semrep stage reconstruct)",
               path, SR_RECON_VERSION, format, version);
    }
    if (sr_nc_find_vars(ncid, recon_vars, SR_RECON_NVARS, "target_kind asigma phi_error", ids, path, err, errlen)) {
        nc_close(ncid);
        return -1;
    }
    return ncid;
}

void sr_recon_target_name(int t, char name[SR_RECON_NAME_LEN])
{
    snprintf(name, SR_RECON_NAME_LEN, "reconstruct/target-%03d.png", t);
}

const char **sr_recon_target_names(int T)
{
    const char **names = SR_MALLOC((sizeof *names + SR_RECON_NAME_LEN) * (size_t)T, "the target pictures' names");
    for (int t = 0; t < T; t++) {
        char *name = (char *)(names + T) + SR_RECON_NAME_LEN * (size_t)t;
        sr_recon_target_name(t, name);
        names[t] = name;
    }
    return names;
}
