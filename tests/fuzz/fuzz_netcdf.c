/* The NetCDF image reader: variable "images", labels "labels" when the
 * first byte is odd (the rest is the file); opens the data set and reads
 * its first and last images. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "io/dataset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    sr_dataset_conf c = sr_fuzz_defaults()->dataset;
    snprintf(c.kind, sizeof c.kind, "netcdf");
    snprintf(c.variable, sizeof c.variable, "images");
    snprintf(c.label_variable, sizeof c.label_variable, "%s", data[0] & 1 ? "labels" : "");
    c.size = 8;
    c.channels = 3;
    c.max_pixels = 1L << 16;
    sr_fuzz_file("images.nc", data + 1, size - 1, c.file, sizeof c.file);
    sr_fuzz_dataset(&c, 2 * 3 * 8 * 8);
    return 0;
}
