/* Data sets: one interface over the sources (IDX files, PNG folders, NetCDF
 * arrays), docs/datasets.md. A data set is a list of images in a fixed order
 * (an image's index never depends on the file system or the rank count),
 * each size x size with `channels` channels, values in [0, 1], optionally
 * labelled. Reads stream: memory does not grow with the data set.
 *
 * The conf's selection (limit, stride, index_file) picks which images of the
 * source a run uses; `count` and the read functions see only those, and
 * sr_dataset_origin maps back to the image's index in the whole source. */
#ifndef SEMREP_IO_DATASET_H
#define SEMREP_IO_DATASET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/conf.h"

#define SR_NAME_MAX 256    /* an image's source name, as phi.nc stores it */
#define SR_CLASS_NAME_MAX 64
/* Images one data set may hold: an image's position is a long, but counts
 * and indices pass through int fields (labels, MPI counts); larger data
 * sets are refused by name rather than wrapped. */
#define SR_MAX_IMAGES 2147483647L

typedef struct sr_dataset sr_dataset;

/* What a source must provide: read `count` images by their source index. */
typedef struct {
    int (*read)(sr_dataset *ds, const long *index, long count, float *images, char *err, size_t errlen);
    void (*name)(const sr_dataset *ds, long index, char *out, size_t len);
    void (*close)(sr_dataset *ds);
    /* The image's noise key when its source index is not stable (a folder
     * that grows shifts its sorted indices): NULL to key by the index. */
    uint32_t (*noise_key)(const sr_dataset *ds, long index);
} sr_dataset_source;

struct sr_dataset {
    sr_dataset_conf conf;
    const sr_dataset_source *source;
    void *impl;
    long source_count;   /* images in the source (valid ones, for a PNG folder) */
    long count;          /* images selected */
    long *selection;     /* [count] source indices, or NULL for 0 .. count-1 */
    int channels, size;
    int *labels;         /* [source_count] class per image, or NULL when unlabelled */
    int nclasses;
    char (*class_names)[SR_CLASS_NAME_MAX]; /* [nclasses] */
    long skipped;        /* images the source left out as bad (PNG folders) */
    char stamp[17];      /* XXH3 of what identifies the source's content: its files' sizes and times */
    char description[2 * SR_PATH_MAX];
};

/* Opens the data set a dataset conf describes. work_dir is the run's output
 * folder: a PNG folder's manifest (already built, stages/data.c) and the
 * uncompressed copy of a gzipped IDX file live there. 0, or -1 with one line
 * in err naming the file and the problem. */
int sr_dataset_open(sr_dataset **ds, const sr_dataset_conf *conf, const char *work_dir, char *err, size_t errlen);
void sr_dataset_close(sr_dataset *ds);

/* Images [first, first + count) of the selection as NCHW floats in [0, 1]. */
int sr_dataset_read(sr_dataset *ds, long first, long count, float *images, char *err, size_t errlen);
/* The same for a list of selection positions (any order, e.g. a permutation). */
int sr_dataset_read_list(sr_dataset *ds, const long *positions, long count, float *images, char *err,
                         size_t errlen);
/* The source index of selection position i; its label (-1 when unlabelled);
 * its source name (a file path, or file and record). */
long sr_dataset_origin(const sr_dataset *ds, long i);
int sr_dataset_label(const sr_dataset *ds, long i);
/* What names the noise of position i (phi's draws, SPEC.md section 3): its
 * source index for files of fixed order (IDX, NetCDF), a hash of its file
 * name in a PNG folder, so that an image keeps its noise when others are
 * added around it. Below 2^31: the reconstruction's samples use the rest. */
uint32_t sr_dataset_noise_key(const sr_dataset *ds, long i);
void sr_dataset_name(const sr_dataset *ds, long i, char *out, size_t len);

/* Sets ds->stamp from the paths and identities (sr_file_id) of a source's files. */
void sr_dataset_stamp_files(sr_dataset *ds, const char *const *paths, int count);

/* Sources, for sr_dataset_open. Each sets source, impl, source_count,
 * channels, size, labels and classes, and description. */
int sr_dataset_open_idx(sr_dataset *ds, const char *work_dir, char *err, size_t errlen);
int sr_dataset_open_netcdf(sr_dataset *ds, char *err, size_t errlen);
int sr_dataset_open_png(sr_dataset *ds, const char *work_dir, char *err, size_t errlen);

#endif
