#define _POSIX_C_SOURCE 200809L /* strtok_r */
#include "stages/phi_file.h"

#include <netcdf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/rng.h"
#include "io/nc.h"

#define MAX_CLASSES (1 << 20) /* a label beyond this is a damaged file, not a data set */

static const sr_nc_var phi_vars[SR_PHI_NVARS] = {
    {"sigma", NC_DOUBLE, "sigma", "pixel units: pixels in [0, 1], so 0.2 is 51 of 255", "noise level of phi"},
    {"draws", NC_INT, "sigma", NULL, "noise draws averaged at this sigma"},
    {"image", NC_INT64, "image", NULL, "the image's index in the data set's source (the image coordinate)"},
    {"index", NC_INT64, "image", NULL, "the image's index in the data set's source"},
    {"image_key", NC_UINT64, "image", NULL,
     "the image's identity: XXH3-64 of its pixels (float32, NCHW) seeded with its noise key; a later run reuses the row of an image with the same identity"},
    {"label", NC_INT, "image", NULL, "the image's class (class_names, flag_meanings)"},
    {"source", NC_CHAR, "image name_len", NULL, "the image's file or position in its source"},
    {"phi", NC_FLOAT, "sigma image channel", NULL,
     "mean over draws of the middle block's channel means of D's input x + sigma z"},
    {"block_mean", NC_FLOAT, "sigma image unit", NULL, "mean over draws of every block's channel means (block_start)"},
};

/* The labels' class names: one per line (class_names), and as CF's
 * flag_values and flag_meanings (one word per class: blanks become _). */
static void put_classes(int ncid, int var, const sr_dataset *ds, const char *file)
{
    const size_t len = ((size_t)ds->nclasses + 1) * (SR_CLASS_NAME_MAX + 1);
    char *names = SR_CALLOC(len, 1, "the class names"), *words = SR_CALLOC(len, 1, "the class names' words");
    int *values = SR_CALLOC((size_t)ds->nclasses + 1, sizeof(int), "the class numbers");
    for (int k = 0; k < ds->nclasses; k++) {
        strcat(names, k ? "\n" : "");
        strcat(names, ds->class_names[k]);
        char *word = words + strlen(words) + (k ? 1 : 0);
        if (k) word[-1] = ' ';
        strcat(word, ds->class_names[k][0] ? ds->class_names[k] : "_");
        for (char *c = word; *c; c++)
            if (*c == ' ' || *c == '\t' || *c == '\n') *c = '_';
        values[k] = k;
    }
    sr_nc_put_text(ncid, var, "class_names", names, file);
    sr_nc_put_ints(ncid, var, "flag_values", values, (size_t)ds->nclasses, file);
    sr_nc_put_text(ncid, var, "flag_meanings", words, file);
    free(names), free(words), free(values);
}

/* The blocks' names, comma-separated: encoder.0, ..., mid, decoder.n-1, ..., decoder.1. */
static void block_names(const sr_unet *net, char *names, size_t len)
{
    const int n = net->shape.levels;
    names[0] = '\0';
    for (int b = 0; b < net->nblocks; b++) {
        char one[32];
        if (b < n) snprintf(one, sizeof one, "encoder.%d", b);
        else if (b == n) snprintf(one, sizeof one, "mid");
        else snprintf(one, sizeof one, "decoder.%d", 2 * n - b);
        if (strlen(names) + strlen(one) + 2 < len) strcat(strcat(names, b ? "," : ""), one);
    }
}

void sr_phi_define(int ncid, const sr_phi_layout *l, const char *file, int ids[SR_PHI_NVARS])
{
    const sr_unet *net = l->net;
    const int units = l->block_means ? net->block_offset[net->nblocks] : 0;
    int dim, version = SR_PHI_VERSION;
    sr_nc_put_text(ncid, NC_GLOBAL, "format", SR_PHI_FORMAT, file);
    sr_nc_put_ints(ncid, NC_GLOBAL, "format_version", &version, 1, file);
    sr_nc_put_text(ncid, NC_GLOBAL, "Conventions", "CF-1.8", file);
    SR_NC(nc_def_dim(ncid, "sigma", (size_t)l->nsigma, &dim), file);
    SR_NC(nc_def_dim(ncid, "image", (size_t)l->images, &dim), file);
    SR_NC(nc_def_dim(ncid, "channel", (size_t)sr_unet_block_channels(&net->shape, net->shape.levels), &dim), file);
    SR_NC(nc_def_dim(ncid, "name_len", SR_NAME_MAX, &dim), file);
    if (units) SR_NC(nc_def_dim(ncid, "unit", (size_t)units, &dim), file);
    char leave_out[32] = "", names[1024];
    if (!l->ds->labels) strcat(leave_out, "label ");
    if (!units) strcat(leave_out, "block_mean");
    sr_nc_define_vars(ncid, phi_vars, SR_PHI_NVARS, leave_out, ids, file);
    if (ids[SR_PHI_VAR_LABEL] >= 0) put_classes(ncid, ids[SR_PHI_VAR_LABEL], l->ds, file);
    if (units) {
        block_names(net, names, sizeof names);
        sr_nc_put_ints(ncid, ids[SR_PHI_VAR_BLOCK_MEAN], "block_start", net->block_offset, (size_t)net->nblocks + 1, file);
        sr_nc_put_text(ncid, ids[SR_PHI_VAR_BLOCK_MEAN], "blocks", names, file);
    }
}

static size_t dim_length(int ncid, const char *name)
{
    int dim;
    size_t len = 0;
    if (nc_inq_dimid(ncid, name, &dim) == NC_NOERR) nc_inq_dimlen(ncid, dim, &len);
    return len;
}

static int open_checked(const char *path, sr_phi_file *f, char *err, size_t errlen)
{
    char format[64] = "";
    int version = 0;
    if (sr_nc_get_text(f->ncid, NC_GLOBAL, "format", format, sizeof format) || strcmp(format, SR_PHI_FORMAT))
        SR_BAD("%s is not a phi file (format \"%s\"); compute it with semrep stage phi", path, format);
    if (sr_nc_get_ints(f->ncid, NC_GLOBAL, "format_version", &version, 1) != 1 || version != SR_PHI_VERSION)
        SR_BAD("%s has format_version %d; this semrep reads phi files of version %d: compute phi again", path, version,
               SR_PHI_VERSION);
    f->nsigma = (int)dim_length(f->ncid, "sigma");
    f->images = (long)dim_length(f->ncid, "image");
    f->channels = (int)dim_length(f->ncid, "channel");
    if (f->nsigma < 1 || f->nsigma > SR_MAX_SIGMAS || f->images < 1 || f->channels < 1)
        SR_BAD("%s has %d sigmas, %ld images and %d channels; it is damaged", path, f->nsigma, f->images, f->channels);
    int ids[SR_PHI_NVARS];
    if (sr_nc_find_vars(f->ncid, phi_vars, SR_PHI_NVARS, "sigma index phi", ids, path, err, errlen))
        return -1;
    if (nc_get_var_double(f->ncid, ids[SR_PHI_VAR_SIGMA], f->sigma) != NC_NOERR)
        SR_BAD("%s: cannot read its sigma variable; it is damaged", path);
    f->var_phi = ids[SR_PHI_VAR_PHI];
    f->var_units = ids[SR_PHI_VAR_BLOCK_MEAN];
    f->var_label = ids[SR_PHI_VAR_LABEL];
    f->var_index = ids[SR_PHI_VAR_INDEX];
    f->var_key = ids[SR_PHI_VAR_KEY];
    sr_nc_get_text(f->ncid, NC_GLOBAL, "fingerprint", f->fingerprint, sizeof f->fingerprint);
    if (f->var_units >= 0) {
        f->units = (int)dim_length(f->ncid, "unit");
        const int n = sr_nc_get_ints(f->ncid, f->var_units, "block_start", f->block_start, SR_MAX_BLOCKS + 1);
        if (n < 2 || f->block_start[n - 1] != f->units)
            SR_BAD("%s: block_mean's block_start attribute is missing or does not end at %d units", path, f->units);
        f->nblocks = n - 1;
        char names[1024] = "";
        sr_nc_get_text(f->ncid, f->var_units, "blocks", names, sizeof names);
        char *save = NULL, *tok = strtok_r(names, ",", &save);
        for (int b = 0; b < f->nblocks; b++, tok = tok ? strtok_r(NULL, ",", &save) : NULL)
            snprintf(f->block_names[b], sizeof f->block_names[b], "%s", tok ? tok : "block");
    }
    if (f->var_label >= 0) {
        static char names[65536];
        names[0] = '\0';
        sr_nc_get_text(f->ncid, f->var_label, "class_names", names, sizeof names);
        int *labels = SR_MALLOC(sizeof(int) * (size_t)f->images, "the labels");
        const int rc = nc_get_var_int(f->ncid, f->var_label, labels);
        for (long i = 0; i < f->images && rc == NC_NOERR; i++)
            f->nclasses = labels[i] + 1 > f->nclasses ? labels[i] + 1 : f->nclasses;
        free(labels);
        if (rc != NC_NOERR || f->nclasses > MAX_CLASSES)
            SR_BAD("%s: its labels cannot be read or name more than %d classes; it is damaged", path, MAX_CLASSES);
        f->class_names = SR_CALLOC((size_t)(f->nclasses ? f->nclasses : 1), SR_CLASS_NAME_MAX, "the class names");
        char *save = NULL, *tok = strtok_r(names, "\n", &save);
        for (int k = 0; k < f->nclasses; k++, tok = tok ? strtok_r(NULL, "\n", &save) : NULL)
            snprintf(f->class_names[k], SR_CLASS_NAME_MAX, "%.*s", SR_CLASS_NAME_MAX - 1, tok ? tok : "?");
    }
    return 0;
}

int sr_phi_open(const char *path, sr_phi_file *f, char *err, size_t errlen)
{
    memset(f, 0, sizeof *f);
    snprintf(f->path, sizeof f->path, "%s", path);
    const int rc = nc_open(path, NC_NOWRITE, &f->ncid);
    if (rc != NC_NOERR) SR_BAD("cannot open %s: %s; compute phi first (semrep stage phi)", path, nc_strerror(rc));
    if (open_checked(path, f, err, errlen)) {
        sr_phi_close(f);
        return -1;
    }
    return 0;
}

void sr_phi_close(sr_phi_file *f)
{
    if (f->ncid) nc_close(f->ncid);
    free(f->class_names);
    memset(f, 0, sizeof *f);
}

int sr_phi_sigma_index(const sr_phi_file *f, double sigma)
{
    for (int s = 0; s < f->nsigma; s++)
        if (f->sigma[s] - sigma < 1e-9 && sigma - f->sigma[s] < 1e-9) return s;
    return -1;
}

static void read_slab(const sr_phi_file *f, int var, int s, long first, long count, size_t width, float *out)
{
    const size_t start[3] = {(size_t)s, (size_t)first, 0}, shape[3] = {1, (size_t)count, width};
    SR_NC(nc_get_vara_float(f->ncid, var, start, shape, out), f->path);
}

void sr_phi_read(const sr_phi_file *f, int s, long first, long count, float *phi)
{
    read_slab(f, f->var_phi, s, first, count, (size_t)f->channels, phi);
}

void sr_phi_read_units(const sr_phi_file *f, int s, long first, long count, float *units)
{
    read_slab(f, f->var_units, s, first, count, (size_t)f->units, units);
}

void sr_phi_read_labels(const sr_phi_file *f, long first, long count, int *labels)
{
    if (f->var_label < 0) {
        for (long i = 0; i < count; i++) labels[i] = -1;
        return;
    }
    const size_t start = (size_t)first, shape = (size_t)count;
    SR_NC(nc_get_vara_int(f->ncid, f->var_label, &start, &shape, labels), f->path);
}

void sr_phi_read_index(const sr_phi_file *f, long first, long count, long long *index)
{
    const size_t start = (size_t)first, shape = (size_t)count;
    SR_NC(nc_get_vara_longlong(f->ncid, f->var_index, &start, &shape, index), f->path);
}

void sr_phi_read_keys(const sr_phi_file *f, long first, long count, unsigned long long *keys)
{
    const size_t start = (size_t)first, shape = (size_t)count;
    SR_CHECK(f->var_key >= 0, "%s has no image_key variable; move it away to compute phi again", f->path);
    SR_NC(nc_get_vara_ulonglong(f->ncid, f->var_key, &start, &shape, keys), f->path);
}

int sr_file_text_attr(const char *path, const char *attr, char *out, size_t len)
{
    int ncid;
    if (nc_open(path, NC_NOWRITE, &ncid) != NC_NOERR) return -1;
    const int rc = sr_nc_get_text(ncid, NC_GLOBAL, attr, out, len);
    nc_close(ncid);
    return rc;
}

void sr_nc_put_noise_version(int ncid, const char *file)
{
    const int version = SR_RNG_NOISE_VERSION;
    sr_nc_put_ints(ncid, NC_GLOBAL, "noise_version", &version, 1, file);
}

int sr_made_from_phi(const char *output_dir, const char *file, char *err, size_t errlen)
{
    char phi[SR_PATH_MAX + 32], path[SR_PATH_MAX + 32], want[17] = "", have[17] = "";
    snprintf(phi, sizeof phi, "%s/phi.nc", output_dir);
    snprintf(path, sizeof path, "%s/%s", output_dir, file);
    if (sr_file_text_attr(phi, "fingerprint", want, sizeof want))
        SR_BAD("%s needs %s to check what it was made from; compute phi first", path, phi);
    if (sr_file_text_attr(path, "phi_fingerprint", have, sizeof have) || strcmp(want, have))
        SR_BAD("%s was made from another phi.nc than %s; run its stage again", path, phi);
    return 0;
}
