/* PNG images for the data sets: the header, decoding into the model's input
 * (channels x size x size floats in [0, 1]) and writing 8-bit images.
 *
 * Every bit depth and colour type PNG has is read, interlaced or not. The
 * channels the caller asks for are made from the file's:
 *   - grey to 3 channels: the grey value three times;
 *   - colour (RGB or palette) to 1 channel: luma 0.299 R + 0.587 G + 0.114 B
 *     (ITU-R BT.601, the weights of PIL's convert("L"), computed in float
 *     without PIL's rounding to 8 bits);
 *   - alpha (an alpha channel, or a palette's tRNS) is dropped, not
 *     composited over any background: a fully transparent pixel keeps the
 *     colour stored under it. A grey or RGB image's tRNS colour key is
 *     ignored for the same reason.
 * A sample is sample / (2^bit_depth - 1) (a palette entry: entry / 255),
 * with no gamma or colour-profile correction (gAMA, cHRM, iCCP, sRGB and
 * sBIT are ignored, as PIL and torchvision ignore them).
 *
 * Geometry: the centred square of side min(width, height) (its corner at
 * floor((width - side) / 2), floor((height - side) / 2)) is resized to
 * size x size: an exact box filter when shrinking (each output pixel is the
 * mean of the input area it covers, partial pixels weighted by the part
 * covered), bilinear with half-pixel centres when enlarging (PIL's and
 * torch's align_corners=False without antialiasing, clamped at the borders),
 * a plain copy at the same size.
 *
 * Errors return -1 with one line in err naming the file; libpng prints
 * nothing. The functions keep no global state: threads may call them at once
 * on different files. */
#ifndef SEMREP_IO_PNG_IMAGE_H
#define SEMREP_IO_PNG_IMAGE_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    int width, height;
    /* in the file: 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA; a palette counts
     * as 3, or 4 when it has a tRNS chunk (what expanding it gives) */
    int channels;
    int bit_depth; /* 1, 2, 4, 8 or 16 (a palette's: the index's) */
    bool interlaced; /* Adam7 */
} sr_png_header;

/* Reads and checks the signature and IHDR (and, through libpng, the chunks
 * before the image data, which say whether a palette has tRNS). 0, or -1
 * with a one-line reason in err naming the file, e.g. "x.png is not a PNG
 * file (bad signature)", "x.png: zero width". */
int sr_png_read_header(const char *path, sr_png_header *hdr, char *err, size_t errlen);

/* Decodes the PNG at path into out: channels (1 or 3) x size x size floats
 * in [0, 1], channel-major (C, H, W), made as the top of this file says.
 * An image of more than max_pixels pixels (width x height) is refused from
 * its IHDR, before anything is allocated for its pixels. 0, or -1 with a
 * one-line reason in err naming the file (out's contents are then
 * unspecified). Memory: libpng's row buffer (the whole decoded image when
 * interlaced) and, unless size equals the square's side, one float copy of
 * the cropped square. */
int sr_png_load(const char *path, int channels, int size, long max_pixels, float *out, char *err, size_t errlen);

/* Writes channels (1 grey or 3 RGB) x height x width floats (C, H, W) as an
 * 8-bit PNG: each value clamped to [0, 1] (NaN as 0), times 255, rounded to
 * nearest. Written under path.tmp.<pid> and renamed into place when
 * complete. 0, or -1 with one line in err (the temporary file is removed). */
int sr_png_write(const char *path, const float *pixels, int channels, int height, int width, char *err,
                 size_t errlen);

#endif
