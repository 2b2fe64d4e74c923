#define _POSIX_C_SOURCE 200809L /* strtok_r */
#include "stages/phi_file.h"

#include <netcdf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/rng.h"
#include "io/nc.h"

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
    int version = 0, var;
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
    if (nc_inq_varid(f->ncid, "sigma", &var) || nc_get_var_double(f->ncid, var, f->sigma) ||
        nc_inq_varid(f->ncid, "phi", &f->var_phi))
        SR_BAD("%s lacks its sigma or phi variable; it is damaged", path);
    sr_nc_get_text(f->ncid, NC_GLOBAL, "fingerprint", f->fingerprint, sizeof f->fingerprint);
    f->var_units = f->var_label = -1;
    if (nc_inq_varid(f->ncid, "block_mean", &f->var_units) == NC_NOERR) {
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
    } else {
        f->var_units = -1;
    }
    if (nc_inq_varid(f->ncid, "label", &f->var_label) == NC_NOERR) {
        static char names[65536];
        names[0] = '\0';
        sr_nc_get_text(f->ncid, f->var_label, "class_names", names, sizeof names);
        int *labels = SR_MALLOC(sizeof(int) * (size_t)f->images, "the labels");
        nc_get_var_int(f->ncid, f->var_label, labels);
        for (long i = 0; i < f->images; i++) f->nclasses = labels[i] + 1 > f->nclasses ? labels[i] + 1 : f->nclasses;
        free(labels);
        f->class_names = calloc((size_t)(f->nclasses ? f->nclasses : 1), SR_CLASS_NAME_MAX);
        char *save = NULL, *tok = strtok_r(names, "\n", &save);
        for (int k = 0; k < f->nclasses; k++, tok = tok ? strtok_r(NULL, "\n", &save) : NULL)
            snprintf(f->class_names[k], SR_CLASS_NAME_MAX, "%.*s", SR_CLASS_NAME_MAX - 1, tok ? tok : "?");
    } else {
        f->var_label = -1;
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
    int var;
    const size_t start = (size_t)first, shape = (size_t)count;
    SR_NC(nc_inq_varid(f->ncid, "index", &var), f->path);
    SR_NC(nc_get_vara_longlong(f->ncid, var, &start, &shape, index), f->path);
}

int sr_file_text_attr(const char *path, const char *attr, char *out, size_t len)
{
    int ncid;
    if (nc_open(path, NC_NOWRITE, &ncid) != NC_NOERR) return -1;
    const int rc = sr_nc_get_text(ncid, NC_GLOBAL, attr, out, len);
    nc_close(ncid);
    return rc;
}

int sr_file_noise_version(const char *path)
{
    int ncid, version = 1;
    if (nc_open(path, NC_NOWRITE, &ncid) != NC_NOERR) return 1;
    if (sr_nc_get_ints(ncid, NC_GLOBAL, "noise_version", &version, 1) != 1) version = 1;
    nc_close(ncid);
    return version;
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
