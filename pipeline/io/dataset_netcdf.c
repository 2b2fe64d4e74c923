/* NetCDF arrays: a variable (image, channel, y, x) of uint8 (0..255) or
 * float (0..1), and an optional integer label variable (image). Any image
 * is one hyperslab read. Channels convert like PNG's, sides are centred and
 * padded or cropped like IDX's. */
#include <limits.h>
#include <math.h>
#include <netcdf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "io/dataset.h"
#include "io/files.h"
#include "io/image_ops.h"

typedef struct {
    int ncid, varid;
    int channels, height, width;
    nc_type type;
    float *plane, *fit; /* one image as stored, then fitted */
} netcdf_impl;

static int netcdf_read(sr_dataset *ds, const long *index, long count, float *images, char *err, size_t errlen)
{
    netcdf_impl *im = ds->impl;
    const size_t hw = (size_t)im->height * im->width, out = (size_t)ds->channels * ds->size * ds->size;
    for (long k = 0; k < count; k++) {
        const size_t start[4] = {(size_t)index[k], 0, 0, 0};
        const size_t shape[4] = {1, (size_t)im->channels, (size_t)im->height, (size_t)im->width};
        const int rc = nc_get_vara_float(im->ncid, im->varid, start, shape, im->plane);
        if (rc != NC_NOERR)
            SR_BAD("%s: cannot read image %ld of %s: %s", ds->conf.file, index[k], ds->conf.variable, nc_strerror(rc));
        const float scale = im->type == NC_UBYTE ? 1.0f / 255.0f : 1.0f;
        for (size_t p = 0; p < (size_t)im->channels * hw; p++) {
            const float v = im->plane[p] * scale;
            if (!(v >= 0.0f && v <= 1.0f))
                SR_BAD("%s: image %ld of %s holds %g, outside [0, 1]; store floats in [0, 1] or bytes", ds->conf.file,
                    index[k], ds->conf.variable, (double)v);
            im->plane[p] = v;
        }
        sr_image_pad_or_crop(im->plane, im->channels, im->height, im->width, ds->size, im->fit);
        sr_image_channels(im->fit, im->channels, ds->size * ds->size, ds->channels, images + (size_t)k * out);
    }
    return 0;
}

static void netcdf_name(const sr_dataset *ds, long index, char *out, size_t len)
{
    snprintf(out, len, "%s:%s[%ld]", ds->conf.file, ds->conf.variable, index);
}

static void netcdf_close(sr_dataset *ds)
{
    netcdf_impl *im = ds->impl;
    if (!im) return;
    if (im->ncid >= 0) nc_close(im->ncid);
    free(im->plane);
    free(im->fit);
    free(im);
}

static const sr_dataset_source netcdf_source = {.read = netcdf_read, .name = netcdf_name, .close = netcdf_close};

static int read_labels(sr_dataset *ds, netcdf_impl *im, long count, char *err, size_t errlen)
{
    const char *file = ds->conf.file, *name = ds->conf.label_variable;
    int varid, ndims, dim;
    nc_type type;
    size_t len = 0;
    if (nc_inq_varid(im->ncid, name, &varid) != NC_NOERR)
        SR_BAD("%s has no label variable %s (dataset.label_variable)", file, name);
    if (nc_inq_var(im->ncid, varid, NULL, &type, &ndims, &dim, NULL) != NC_NOERR || ndims != 1 ||
        nc_inq_dimlen(im->ncid, dim, &len) != NC_NOERR || (long)len != count || type == NC_FLOAT ||
        type == NC_DOUBLE || type == NC_CHAR || type == NC_STRING)
        SR_BAD("%s: %s must be one integer per image (%ld)", file, name, count);
    ds->labels = SR_MALLOC(sizeof(int) * (size_t)count, "the labels");
    const int rc = nc_get_var_int(im->ncid, varid, ds->labels);
    if (rc != NC_NOERR) SR_BAD("%s: cannot read %s: %s", file, name, nc_strerror(rc));
    for (long i = 0; i < count; i++) {
        if (ds->labels[i] < 0 || ds->labels[i] > 65535)
            SR_BAD("%s: label %d of image %ld is not a class number 0..65535", file, ds->labels[i], i);
        if (ds->labels[i] + 1 > ds->nclasses) ds->nclasses = ds->labels[i] + 1;
    }
    ds->class_names = SR_CALLOC((size_t)ds->nclasses, SR_CLASS_NAME_MAX, "the class names");
    for (int c = 0; c < ds->nclasses; c++) snprintf(ds->class_names[c], SR_CLASS_NAME_MAX, "%d", c);
    return 0;
}

int sr_dataset_open_netcdf(sr_dataset *ds, char *err, size_t errlen)
{
    const sr_dataset_conf *c = &ds->conf;
    netcdf_impl *im = sr_try_calloc(1, sizeof *im, c->file, NULL, 0);
    if (!im) SR_BAD("out of memory opening %s", c->file);
    im->ncid = -1;
    ds->source = &netcdf_source;
    ds->impl = im;
    if (sr_check_regular(c->file, "dataset.file", err, errlen)) return -1;
    int rc = nc_open(c->file, NC_NOWRITE, &im->ncid);
    if (rc != NC_NOERR) {
        im->ncid = -1;
        SR_BAD("cannot open %s (dataset.file): %s", c->file, nc_strerror(rc));
    }
    int ndims, dims[NC_MAX_VAR_DIMS];
    if (nc_inq_varid(im->ncid, c->variable, &im->varid) != NC_NOERR)
        SR_BAD("%s has no variable %s (dataset.variable)", c->file, c->variable);
    SR_CHECK(nc_inq_var(im->ncid, im->varid, NULL, &im->type, &ndims, dims, NULL) == NC_NOERR, "%s: cannot inquire %s",
             c->file, c->variable);
    if (ndims != 4 || (im->type != NC_UBYTE && im->type != NC_FLOAT && im->type != NC_DOUBLE))
        SR_BAD("%s: %s must be (image, channel, y, x) of uint8 or float", c->file, c->variable);
    size_t len[4];
    for (int d = 0; d < 4; d++) nc_inq_dimlen(im->ncid, dims[d], &len[d]);
    /* sizes are checked before they are narrowed to int or anything is allocated */
    if (len[0] > (size_t)SR_MAX_IMAGES)
        SR_BAD("%s: %s declares %zu images; semrep reads at most %ld from one file: split it", c->file, c->variable,
               len[0], SR_MAX_IMAGES);
    if (len[2] > (size_t)c->max_pixels || len[3] > (size_t)c->max_pixels || len[2] > INT_MAX || len[3] > INT_MAX)
        SR_BAD("%s: images of %zux%zu exceed dataset.max_pixels = %ld", c->file, len[2], len[3], c->max_pixels);
    if (len[1] > 3)
        SR_BAD("%s: %s holds images of %zu channels; semrep reads 1 or 3", c->file, c->variable, len[1]);
    im->channels = (int)len[1];
    im->height = (int)len[2];
    im->width = (int)len[3];
    if (im->channels != 1 && im->channels != 3)
        SR_BAD("%s: %s has %d channels; semrep reads 1 (grey) or 3 (RGB)", c->file, c->variable, im->channels);
    if (im->height < 1 || im->width < 1 || (long)im->height * im->width > c->max_pixels)
        SR_BAD("%s: images of %dx%d are empty or exceed dataset.max_pixels = %ld", c->file, im->height, im->width,
            c->max_pixels);
    im->plane = SR_MALLOC(sizeof(float) * len[1] * len[2] * len[3], "a NetCDF image");
    im->fit = SR_MALLOC(sizeof(float) * len[1] * (size_t)c->size * c->size, "a NetCDF image");
    ds->source_count = (long)len[0];
    ds->channels = c->channels;
    ds->size = c->size;
    snprintf(ds->description, sizeof ds->description, "NetCDF %s:%s (%ld images of %dx%dx%d)", c->file, c->variable,
             ds->source_count, im->channels, im->height, im->width);
    if (c->label_variable[0] && read_labels(ds, im, ds->source_count, err, errlen)) return -1;
    const char *file = c->file;
    sr_dataset_stamp_files(ds, &file, 1);
    return 0;
}
