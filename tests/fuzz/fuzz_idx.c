#define _GNU_SOURCE /* memmem */
/* The IDX reader (plain or gzipped images, optional labels): opens the data
 * set and reads its first and last images. An input holding the separator
 * is an image file, then a label file. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "io/dataset.h"

#define SEPARATOR "\nLABELS\n"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sr_dataset_conf c = sr_fuzz_defaults()->dataset;
    snprintf(c.kind, sizeof c.kind, "idx");
    c.size = 8;
    c.channels = 1;
    c.max_pixels = 1L << 16;
    const uint8_t *labels = memmem(data, size, SEPARATOR, strlen(SEPARATOR));
    const size_t image_bytes = labels ? (size_t)(labels - data) : size;
    sr_fuzz_file("images.idx", data, image_bytes, c.images, sizeof c.images);
    c.labels[0] = '\0';
    if (labels) {
        labels += strlen(SEPARATOR);
        sr_fuzz_file("labels.idx", labels, size - (size_t)(labels - data), c.labels, sizeof c.labels);
    }
    sr_dataset *ds;
    char err[1024];
    if (!sr_dataset_open(&ds, &c, sr_fuzz_dir(), err, sizeof err)) {
        float images[2 * 8 * 8];
        const long positions[2] = {0, ds->count - 1};
        sr_dataset_read_list(ds, positions, 2, images, err, sizeof err);
        for (long i = 0; i < ds->count; i++) {
            const int label = sr_dataset_label(ds, i);
            if (label < -1 || label >= ds->nclasses) abort(); /* a label with no class name */
        }
        sr_dataset_close(ds);
    }
    sr_fuzz_clean();
    return 0;
}
