/* The checkpoint reader: its attributes, then a load into a small model of
 * the shape of tests/fixtures/converted_tiny.nc (the seed corpus's). */
#include <stdint.h>
#include <stdlib.h>

#include "core/backend.h"
#include "fuzz_util.h"
#include "io/checkpoint.h"

static const sr_unet_shape tiny = {.in_channels = 3, .levels = 2, .kernels = {4, 6, 8}, .enc_convs = {2, 1},
                                   .mid_convs = 2, .dec_convs = {1, 2}, .upsample_bias = {false, true},
                                   .norm = SR_NORM_LAYER, .output = SR_OUTPUT_RESIDUAL};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static sr_unet net;
    static int planned;
    char path[128], err[4600];
    if (!planned) {
        if (sr_unet_plan(&net, &tiny, err, sizeof err)) abort();
        sr_unet_alloc(&net, sr_backend_cpu_new(1)); /* kept, like the net */
        planned = 1;
    }
    sr_fuzz_file("model.nc", data, size, path, sizeof path);
    sr_checkpoint_info info;
    if (!sr_checkpoint_read_info(path, &info, err, sizeof err)) sr_checkpoint_load(path, &net, err, sizeof err);
    return 0;
}
