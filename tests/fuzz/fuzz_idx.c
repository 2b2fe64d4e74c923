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
    sr_fuzz_dataset(&c, 2 * 8 * 8);
    sr_fuzz_clean();
    return 0;
}
