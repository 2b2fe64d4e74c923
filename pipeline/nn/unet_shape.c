#include "nn/unet_shape.h"

#include <stdio.h>

static sr_unet_shape four_level(int in, int k0, int dec0, int dec1, int dec2)
{
    sr_unet_shape s = {.in_channels = in, .levels = 3, .mid_convs = 3,
                       .norm = SR_NORM_LAYER, .output = SR_OUTPUT_CLEAN};
    for (int b = 0; b <= 3; b++) s.kernels[b] = k0 << b;
    for (int b = 0; b < 3; b++) s.enc_convs[b] = 2;
    s.dec_convs[0] = dec0;
    s.dec_convs[1] = dec1;
    s.dec_convs[2] = dec2;
    return s;
}

sr_unet_shape sr_unet_shape_default(void) { return four_level(1, 32, 2, 2, 2); }
sr_unet_shape sr_unet_shape_paper(void) { return four_level(3, 64, 5, 6, 7); }

#define FAIL(...) (snprintf(err, errlen, __VA_ARGS__), -1)

static int count_ok(int value, int lo, int hi) { return value >= lo && value <= hi; }

int sr_unet_shape_check(const sr_unet_shape *s, char *err, size_t errlen)
{
    if (!count_ok(s->in_channels, 1, 4))
        return FAIL("model.in_channels is %d; it must be 1 (grey) to 4", s->in_channels);
    if (!count_ok(s->levels, 1, SR_MAX_LEVELS))
        return FAIL("model.kernels has %d entries; it needs 2 to %d (encoder blocks, then the middle block)",
                    s->levels + 1, SR_MAX_LEVELS + 1);
    for (int b = 0; b <= s->levels; b++)
        if (!count_ok(s->kernels[b], 1, SR_MAX_CHANNELS))
            return FAIL("model.kernels[%d] is %d; channel counts must be 1 to %d", b, s->kernels[b],
                        SR_MAX_CHANNELS);
    for (int b = 0; b < s->levels; b++) {
        if (!count_ok(s->enc_convs[b], 1, SR_MAX_CONVS))
            return FAIL("model.enc_convs[%d] is %d; each block needs 1 to %d convolutions", b,
                        s->enc_convs[b], SR_MAX_CONVS);
        if (!count_ok(s->dec_convs[b], 1, SR_MAX_CONVS))
            return FAIL("model.dec_convs[%d] is %d; each block needs 1 to %d convolutions", b,
                        s->dec_convs[b], SR_MAX_CONVS);
    }
    if (!count_ok(s->mid_convs, 1, SR_MAX_CONVS))
        return FAIL("model.mid_convs is %d; the middle block needs 1 to %d convolutions", s->mid_convs,
                    SR_MAX_CONVS);
    if (s->norm != SR_NORM_LAYER && s->norm != SR_NORM_BATCH)
        return FAIL("model.norm must be \"layer\" or \"batch\"");
    return 0;
}

int sr_unet_size_check(const sr_unet_shape *s, int h, int w, char *err, size_t errlen)
{
    const int step = 1 << s->levels;
    if (h < step || w < step || h % step || w % step)
        return FAIL("images of %dx%d do not fit a UNet with %d poolings: height and width must be positive multiples of %d",
                    h, w, s->levels, step);
    return 0;
}

int sr_unet_block_count(const sr_unet_shape *s) { return 2 * s->levels; }

int sr_unet_mid_block(const sr_unet_shape *s) { return s->levels; }

int sr_unet_block_channels(const sr_unet_shape *s, int block)
{
    /* encoder b -> K_b; middle -> K_n; decoder n-1 .. 1 -> K_b */
    return block <= s->levels ? s->kernels[block] : s->kernels[2 * s->levels - block];
}
