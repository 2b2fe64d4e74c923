/* The PNG reader: the header, then a decode shrinking to 1 channel and one
 * enlarging to 3, as the manifest check and the data sets do. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "fuzz_util.h"
#include "io/png_image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[128], err[512];
    sr_fuzz_file("input.png", data, size, path, sizeof path);
    sr_png_header hdr;
    if (sr_png_read_header(path, &hdr, err, sizeof err)) return 0;
    static float out[3 * 40 * 40];
    const long max_pixels = 1L << 20; /* bounds the work per input, as dataset.max_pixels does */
    sr_png_load(path, 1, 5, max_pixels, out, err, sizeof err);
    sr_png_load(path, 3, 40, max_pixels, out, err, sizeof err);
    return 0;
}
