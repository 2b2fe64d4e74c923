/* A folder of PNG files, through its manifest (io/manifest.h): the valid
 * files in sorted order are the images; bad ones are left out, listed, and
 * counted against dataset.on_bad_image and dataset.max_bad_share. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "core/check.h"
#include "io/dataset.h"
#include "io/manifest.h"
#include "io/png_image.h"

typedef struct {
    sr_manifest m;
    long *valid; /* [source_count] manifest entry of each image */
} png_impl;

static void png_name(const sr_dataset *ds, long index, char *out, size_t len)
{
    const png_impl *im = ds->impl;
    snprintf(out, len, "%s/%s", im->m.folder, im->m.entries[im->valid[index]].name);
}

static int png_read(sr_dataset *ds, const long *index, long count, float *images, char *err, size_t errlen)
{
    const size_t out = (size_t)ds->channels * ds->size * ds->size;
    for (long k = 0; k < count; k++) {
        char path[SR_PATH_MAX * 2];
        png_name(ds, index[k], path, sizeof path);
        /* The manifest found it valid: failing now means it changed since. */
        if (sr_png_load(path, ds->channels, ds->size, ds->conf.max_pixels, images + (size_t)k * out, err, errlen)) {
            for (char *p = err; *p; p++) /* the message stays one line whatever the name holds */
                if ((unsigned char)*p < 0x20) *p = ' ';
            return -1;
        }
    }
    return 0;
}

static void png_close(sr_dataset *ds)
{
    png_impl *im = ds->impl;
    if (!im) return;
    sr_manifest_free(&im->m);
    free(im->valid);
    free(im);
}

/* The file's name within the folder: it does not move when files are added. */
static uint32_t png_noise_key(const sr_dataset *ds, long index)
{
    const png_impl *im = ds->impl;
    const char *name = im->m.entries[im->valid[index]].name;
    return XXH32(name, strlen(name), 0);
}

static const sr_dataset_source png_source = {
    .read = png_read, .name = png_name, .close = png_close, .noise_key = png_noise_key};

int sr_dataset_open_png(sr_dataset *ds, const char *work_dir, char *err, size_t errlen)
{
    const sr_dataset_conf *c = &ds->conf;
    png_impl *im = sr_try_calloc(1, sizeof *im, c->path, NULL, 0);
    if (!im) SR_BAD("out of memory opening %s", c->path);
    ds->source = &png_source;
    ds->impl = im;
    char path[SR_PATH_MAX * 2], why[512];
    sr_manifest_path(work_dir, c->path, path, sizeof path);
    if (sr_manifest_read(path, &im->m, why, sizeof why))
        SR_BAD("the PNG folder %s has no manifest yet (%s); semrep's stages build it", c->path, why);
    if (im->m.count > SR_MAX_IMAGES)
        SR_BAD("the PNG folder %s holds %ld PNG files; semrep reads at most %ld: split it", c->path, im->m.count,
               SR_MAX_IMAGES);
    long bad = 0;
    const sr_manifest_entry *first_bad = NULL;
    im->valid = SR_MALLOC(sizeof(long) * (size_t)(im->m.count ? im->m.count : 1), "the image list");
    for (long i = 0; i < im->m.count; i++) {
        if (im->m.entries[i].reason[0]) {
            if (!first_bad) first_bad = &im->m.entries[i];
            bad++;
        } else {
            im->valid[ds->source_count++] = i;
        }
    }
    char bad_name[4 * SR_NAME_MAX + 1]; /* one line, whatever the name holds */
    if (first_bad) sr_escape_name(first_bad->name, bad_name, sizeof bad_name);
    if (bad && !strcmp(c->on_bad_image, "fail"))
        SR_BAD("%s/%s: %s (dataset.on_bad_image = \"fail\"; %ld bad of %ld; the list is in %s)", c->path,
            bad_name, first_bad->reason, bad, im->m.count, path);
    if ((double)bad > c->max_bad_share * (double)im->m.count)
        SR_BAD("%ld of %ld images in %s are bad, above dataset.max_bad_share = %g; first: %s: %s (the list is in %s)", bad,
            im->m.count, c->path, c->max_bad_share, bad_name, first_bad->reason, path);
    ds->skipped = bad;
    ds->channels = c->channels;
    ds->size = c->size;
    if (im->m.nclasses > 0) {
        ds->nclasses = im->m.nclasses;
        ds->labels = SR_MALLOC(sizeof(int) * (size_t)(ds->source_count ? ds->source_count : 1), "the labels");
        for (long i = 0; i < ds->source_count; i++) ds->labels[i] = im->m.entries[im->valid[i]].cls;
        ds->class_names = SR_CALLOC((size_t)ds->nclasses, SR_CLASS_NAME_MAX, "the class names");
        memcpy(ds->class_names, im->m.class_names, (size_t)ds->nclasses * SR_CLASS_NAME_MAX);
    }
    /* the content: every file's name, identity (sr_file_id) and verdict */
    XXH3_state_t *h = XXH3_createState();
    XXH3_64bits_reset(h);
    for (long i = 0; i < im->m.count; i++) {
        const sr_manifest_entry *e = &im->m.entries[i];
        XXH3_64bits_update(h, e->name, strlen(e->name) + 1);
        XXH3_64bits_update(h, &e->id, sizeof e->id);
        XXH3_64bits_update(h, e->reason, strlen(e->reason) + 1);
    }
    snprintf(ds->stamp, sizeof ds->stamp, "%016llx", (unsigned long long)XXH3_64bits_digest(h));
    XXH3_freeState(h);
    snprintf(ds->description, sizeof ds->description, "PNG folder %.*s (%ld images%s, %ld bad left out)",
             SR_PATH_MAX - 1, c->path, ds->source_count, ds->nclasses ? " in class folders" : "", bad);
    return 0;
}
