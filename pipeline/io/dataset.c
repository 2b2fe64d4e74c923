#define _POSIX_C_SOURCE 200809L /* fdopen */
#include "io/dataset.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <xxhash.h>

#include "core/check.h"
#include "io/files.h"

/* A text file the conf names (its key in what), opened only when regular. */
static FILE *open_text(const char *path, const char *what, char *err, size_t errlen)
{
    const int fd = sr_open_regular(path, what, err, errlen);
    if (fd < 0) return NULL;
    FILE *f = fdopen(fd, "r");
    if (!f) {
        sr_report(err, errlen, "cannot read %s (%s): %s", path, what, strerror(errno));
        close(fd);
    }
    return f;
}

/* The selection: index_file, else every stride-th image; then at most limit. */
static int select_images(sr_dataset *ds, char *err, size_t errlen)
{
    const sr_dataset_conf *c = &ds->conf;
    long n = 0, cap = 1024;
    long *sel = NULL;
    if (c->index_file[0]) {
        FILE *f = open_text(c->index_file, "dataset.index_file", err, errlen);
        if (!f) return -1;
        sel = SR_MALLOC(sizeof(long) * (size_t)cap, "the index list");
        char line[64];
        for (long lineno = 1; fgets(line, sizeof line, f); lineno++) {
            char *end;
            const long v = strtol(line, &end, 10);
            while (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n') end++;
            if (end == line || *end || v < 0 || v >= ds->source_count) {
                line[strcspn(line, "\r\n")] = '\0';
                fclose(f);
                free(sel);
                SR_BAD("%s line %ld: \"%.20s\" is not an image index in 0..%ld", c->index_file, lineno, line,
                    ds->source_count - 1);
            }
            if (n == cap) {
                cap *= 2;
                long *grown = sr_try_realloc(sel, (size_t)cap, sizeof(long), c->index_file, NULL, 0);
                if (!grown) {
                    fclose(f);
                    free(sel);
                    SR_BAD("out of memory reading %s", c->index_file);
                }
                sel = grown;
            }
            sel[n++] = v;
            if (n > SR_MAX_IMAGES) {
                fclose(f);
                free(sel);
                SR_BAD("%s lists more than %ld images; semrep uses at most that many", c->index_file, SR_MAX_IMAGES);
            }
        }
        fclose(f);
        if (n == 0) {
            free(sel);
            SR_BAD("the index file %s lists no image", c->index_file);
        }
    } else if (c->stride > 1) {
        n = (ds->source_count + c->stride - 1) / c->stride;
        sel = SR_MALLOC(sizeof(long) * (size_t)n, "the image selection");
        for (long i = 0; i < n; i++) sel[i] = i * c->stride;
    } else {
        n = ds->source_count;
    }
    if (c->limit > 0 && c->limit < n) n = c->limit;
    ds->selection = sel;
    ds->count = n;
    if (n == 0) SR_BAD("%s holds no usable image", ds->description);
    return 0;
}

/* Class names from dataset.classes, one per line, when given. A file that
 * cannot be read is refused even when the data set has no labels to name
 * (docs/datasets.md): a wrong path is a mistake either way. */
static int read_class_names(sr_dataset *ds, char *err, size_t errlen)
{
    if (!ds->conf.classes[0]) return 0;
    FILE *f = open_text(ds->conf.classes, "dataset.classes", err, errlen);
    if (!f) return -1;
    if (!ds->labels) return fclose(f), 0;
    int n = 0;
    char line[256];
    while (n < ds->nclasses && fgets(line, sizeof line, f)) {
        /* a longer line would be read as several names, shifting every later one */
        if (!strchr(line, '\n') && !feof(f)) {
            fclose(f);
            SR_BAD("%s line %d: a class name of more than %zu characters; shorten it (%d are kept)", ds->conf.classes,
                   n + 1, sizeof line - 2, SR_CLASS_NAME_MAX - 1);
        }
        line[strcspn(line, "\r\n")] = '\0';
        snprintf(ds->class_names[n++], SR_CLASS_NAME_MAX, "%.*s", SR_CLASS_NAME_MAX - 1, line);
    }
    fclose(f);
    if (n < ds->nclasses)
        SR_BAD("%s names %d classes but the labels go up to %d; give one name per line for each", ds->conf.classes, n,
            ds->nclasses - 1);
    return 0;
}

void sr_dataset_stamp_files(sr_dataset *ds, const char *const *paths, int count)
{
    XXH3_state_t *h = XXH3_createState();
    XXH3_64bits_reset(h);
    for (int i = 0; i < count; i++) {
        sr_file_id id = {.size = -1};
        sr_file_stamp(paths[i], &id);
        XXH3_64bits_update(h, paths[i], strlen(paths[i]) + 1);
        XXH3_64bits_update(h, &id, sizeof id);
    }
    snprintf(ds->stamp, sizeof ds->stamp, "%016llx", (unsigned long long)XXH3_64bits_digest(h));
    XXH3_freeState(h);
}

int sr_dataset_open(sr_dataset **out, const sr_dataset_conf *conf, const char *work_dir, char *err, size_t errlen)
{
    sr_dataset *ds = sr_try_calloc(1, sizeof *ds, "a data set", NULL, 0);
    if (!ds) SR_BAD("out of memory opening a data set");
    ds->conf = *conf;
    int rc;
    if (!strcmp(conf->kind, "idx")) rc = sr_dataset_open_idx(ds, work_dir, err, errlen);
    else if (!strcmp(conf->kind, "netcdf")) rc = sr_dataset_open_netcdf(ds, err, errlen);
    else rc = sr_dataset_open_png(ds, work_dir, err, errlen);
    if (!rc) rc = select_images(ds, err, errlen);
    if (!rc) rc = read_class_names(ds, err, errlen);
    if (rc) {
        sr_dataset_close(ds);
        return -1;
    }
    *out = ds;
    return 0;
}

void sr_dataset_close(sr_dataset *ds)
{
    if (!ds) return;
    if (ds->source && ds->source->close) ds->source->close(ds);
    free(ds->selection);
    free(ds->labels);
    free(ds->class_names);
    free(ds);
}

long sr_dataset_origin(const sr_dataset *ds, long i) { return ds->selection ? ds->selection[i] : i; }

uint32_t sr_dataset_noise_key(const sr_dataset *ds, long i)
{
    const long origin = sr_dataset_origin(ds, i);
    return (ds->source->noise_key ? ds->source->noise_key(ds, origin) : (uint32_t)origin) & 0x7fffffffu;
}

int sr_dataset_label(const sr_dataset *ds, long i) { return ds->labels ? ds->labels[sr_dataset_origin(ds, i)] : -1; }

void sr_dataset_name(const sr_dataset *ds, long i, char *out, size_t len)
{
    ds->source->name(ds, sr_dataset_origin(ds, i), out, len);
}

int sr_dataset_read_list(sr_dataset *ds, const long *positions, long count, float *images, char *err,
                         size_t errlen)
{
    /* a few longs per batch: the source indices of the positions */
    long *index = SR_MALLOC(sizeof(long) * (size_t)(count ? count : 1), "a batch's image indices");
    for (long k = 0; k < count; k++) {
        if (positions[k] < 0 || positions[k] >= ds->count) {
            free(index);
            SR_BAD("internal: image %ld of a data set of %ld", positions[k], ds->count);
        }
        index[k] = sr_dataset_origin(ds, positions[k]);
    }
    const int rc = ds->source->read(ds, index, count, images, err, errlen);
    free(index);
    return rc;
}

int sr_dataset_read(sr_dataset *ds, long first, long count, float *images, char *err, size_t errlen)
{
    long *positions = SR_MALLOC(sizeof(long) * (size_t)(count ? count : 1), "a batch's image positions");
    for (long k = 0; k < count; k++) positions[k] = first + k;
    const int rc = sr_dataset_read_list(ds, positions, count, images, err, errlen);
    free(positions);
    return rc;
}
