#define _POSIX_C_SOURCE 200809L /* fileno, fstat, the XSI strerror_r (reentrant) */
#include "io/png_image.h"

#include "core/check.h"
#include "io/files.h"
#include "io/image_ops.h"

#include <errno.h>
#include <png.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "io/nc.h"

/* ---- messages ----------------------------------------------------------- */

/* strerror is not reentrant; several threads load images at once. */
static void describe_errno(int code, char *out, size_t len)
{
    if (strerror_r(code, out, len) != 0) snprintf(out, len, "error %d", code);
}

/* What libpng's handlers need to name the file. They reach it through
 * png_get_error_ptr, so two threads never share it. */
typedef struct {
    const char *path;
    char *err;
    size_t errlen;
    /* libpng's last warning: the detail behind errors such as "Invalid IHDR
     * data", which libpng states only as a warning just before */
    char warning[160];
} sr_png_msg;

/* libpng's errors become our message, never stderr; control returns to the
 * setjmp in guarded(). */
static void on_png_error(png_structp png, png_const_charp what)
{
    sr_png_msg *m = png_get_error_ptr(png);
    if (m->warning[0])
        snprintf(m->err, m->errlen, "%s: %s (libpng warned: %s)", m->path, what, m->warning);
    else
        snprintf(m->err, m->errlen, "%s: %s", m->path, what);
    png_longjmp(png, 1);
}

/* Warnings (a damaged ancillary chunk, an odd colour profile) do not stop the
 * decoding and are not printed; the last is kept for an error's message. */
static void on_png_warning(png_structp png, png_const_charp what)
{
    sr_png_msg *m = png_get_error_ptr(png);
    snprintf(m->warning, sizeof m->warning, "%s", what);
}

/* ---- the file and its IHDR, before libpng ----------------------------- */

typedef struct {
    uint32_t width, height;
} sr_ihdr;

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* Opens path for reading when it is a regular file: a directory (which
 * fopen accepts), a FIFO (which would block), a device or socket is refused. */
static FILE *open_file(const char *path, char *err, size_t errlen)
{
    char why[128];
    const int fd = sr_open_regular(path, "a PNG image", err, errlen);
    if (fd < 0) return NULL;
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        describe_errno(errno, why, sizeof why);
        close(fd);
        sr_report(err, errlen, "cannot open %s: %s", path, why);
    }
    return f;
}

/* The signature and IHDR (the first 33 bytes), read by hand before libpng
 * sees the file: an image too large for max_pixels is refused from them
 * before libpng reads further or anything is allocated for its pixels.
 * libpng checks all of it again; here only what our messages name. Leaves
 * the file after the signature, where libpng starts (png_set_sig_bytes). */
static int read_ihdr(FILE *f, const char *path, sr_ihdr *ihdr, char *err, size_t errlen)
{
    unsigned char b[33];
    const size_t n = fread(b, 1, sizeof b, f);
    if (n < sizeof b && ferror(f)) {
        char why[128];
        describe_errno(errno, why, sizeof why);
        return sr_report(err, errlen, "cannot read %s: %s", path, why);
    }
    if (n == 0) return sr_report(err, errlen, "%s is not a PNG file (it is empty)", path);
    if (png_sig_cmp(b, 0, n < 8 ? n : 8) != 0) return sr_report(err, errlen, "%s is not a PNG file (bad signature)", path);
    if (n < sizeof b) return sr_report(err, errlen, "%s: the file is truncated (it ends before the end of IHDR)", path);
    if (be32(b + 8) != 13 || memcmp(b + 12, "IHDR", 4) != 0)
        return sr_report(err, errlen, "%s: damaged PNG: the first chunk is not a 13-byte IHDR", path);
    /* The CRC covers the chunk type and data: bytes 12 to 28. */
    if ((uint32_t)crc32(crc32(0L, Z_NULL, 0), b + 12, 17) != be32(b + 29))
        return sr_report(err, errlen, "%s: IHDR: CRC error (the file is damaged)", path);
    ihdr->width = be32(b + 16);
    ihdr->height = be32(b + 20);
    if (ihdr->width == 0) return sr_report(err, errlen, "%s: zero width in IHDR", path);
    if (ihdr->height == 0) return sr_report(err, errlen, "%s: zero height in IHDR", path);
    if (ihdr->width > PNG_UINT_31_MAX || ihdr->height > PNG_UINT_31_MAX)
        return sr_report(err, errlen, "%s: IHDR claims %lu x %lu pixels, above PNG's limit of 2^31 - 1 per side", path,
                    (unsigned long)ihdr->width, (unsigned long)ihdr->height);
    if (fseek(f, 8, SEEK_SET) != 0) return sr_report(err, errlen, "cannot seek in %s", path);
    return 0;
}

/* ---- libpng, reading ---------------------------------------------------- */

/* Everything one read holds, freed by reader_close on every path. */
typedef struct {
    sr_png_msg msg;
    FILE *file;
    png_structp png;
    png_infop info;
    png_bytep pixels; /* decoded rows: one, or the whole image when interlaced */
    png_bytepp rows;  /* row pointers into pixels (interlaced) */
    float *square;    /* the cropped square, when it is not the caller's out */
} sr_png_reader;

static void reader_close(sr_png_reader *r)
{
    free(r->square);
    free(r->rows);
    free(r->pixels);
    if (r->png) png_destroy_read_struct(&r->png, r->info ? &r->info : NULL, NULL);
    if (r->file) fclose(r->file);
}

/* libpng reads through this rather than png_init_io so that a short file
 * says so ("Read Error" otherwise). */
static void read_bytes(png_structp png, png_bytep data, size_t length)
{
    sr_png_reader *r = png_get_io_ptr(png);
    if (fread(data, 1, length, r->file) != length)
        png_error(png, ferror(r->file) ? "read error" : "the file is truncated (unexpected end of file)");
}

/* Opens the file and checks its IHDR by hand; nothing of libpng yet. */
static int reader_open(sr_png_reader *r, const char *path, sr_ihdr *ihdr, char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    r->msg = (sr_png_msg){.path = path, .err = err, .errlen = errlen};
    r->file = open_file(path, err, errlen);
    if (!r->file) return -1;
    return read_ihdr(r->file, path, ihdr, err, errlen);
}

/* libpng's reader, reporting through r->msg. */
static int reader_create(sr_png_reader *r)
{
    r->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &r->msg, on_png_error, on_png_warning);
    if (r->png) r->info = png_create_info_struct(r->png);
    if (!r->png || !r->info)
        return sr_report(r->msg.err, r->msg.errlen, "%s: libpng could not start (out of memory)", r->msg.path);
    return 0;
}

/* Runs body under libpng's error handling: an error anywhere in it, reported
 * through on_png_error, longjmps back here and gives -1. The setjmp lives in
 * this small function so that nothing but its two unchanged arguments is
 * live across it (no volatile locals needed); everything body allocates hangs
 * from r, which is the caller's, and reader_close frees it. */
typedef void sr_png_body(sr_png_reader *r, void *arg);

static int guarded(sr_png_reader *r, sr_png_body *body, void *arg)
{
    if (setjmp(png_jmpbuf(r->png))) return -1;
    body(r, arg);
    return 0;
}

/* Hands the file to libpng after the signature and reads up to the image
 * data (IHDR, PLTE, tRNS, ...). */
static void start_reading(sr_png_reader *r)
{
    png_set_read_fn(r->png, r, read_bytes);
    png_set_sig_bytes(r->png, 8);
    /* max_pixels is the limit; libpng's own default (10^6 per side) would
     * refuse a 2000000 x 1 strip that max_pixels lets through */
    png_set_user_limits(r->png, PNG_UINT_31_MAX, PNG_UINT_31_MAX);
    png_read_info(r->png, r->info);
}

/* ---- the header --------------------------------------------------------- */

static void header_body(sr_png_reader *r, void *arg)
{
    sr_png_header *hdr = arg;
    start_reading(r);
    png_uint_32 width, height;
    int depth, type, interlace;
    if (!png_get_IHDR(r->png, r->info, &width, &height, &depth, &type, &interlace, NULL, NULL))
        png_error(r->png, "libpng returned no IHDR");
    int channels = png_get_channels(r->png, r->info);
    if (type == PNG_COLOR_TYPE_PALETTE) channels = png_get_valid(r->png, r->info, PNG_INFO_tRNS) ? 4 : 3;
    *hdr = (sr_png_header){.width = (int)width, .height = (int)height, .channels = channels,
                           .bit_depth = depth, .interlaced = interlace != PNG_INTERLACE_NONE};
}

int sr_png_read_header(const char *path, sr_png_header *hdr, char *err, size_t errlen)
{
    sr_png_reader r;
    sr_ihdr ihdr;
    int rc = reader_open(&r, path, &ihdr, err, errlen);
    if (rc == 0) rc = reader_create(&r);
    if (rc == 0) rc = guarded(&r, header_body, hdr);
    reader_close(&r);
    return rc;
}

/* ---- decoding ----------------------------------------------------------- */

/* How the decoded rows (after png_set_packing: one byte per sample below 8
 * bits, big-endian pairs at 16) become values in [0, 1]. */
typedef struct {
    int type;        /* PNG_COLOR_TYPE_* */
    int samples;     /* per pixel in a row: 1 grey or palette index, 2, 3, 4 */
    bool sixteen;    /* two bytes per sample */
    float maxval;    /* 2^bit_depth - 1 */
    png_color palette[256]; /* zero-filled: an index past the palette is black */
} sr_png_layout;

static float sample_at(const png_byte *row, size_t i, const sr_png_layout *lay)
{
    const unsigned v = lay->sixteen ? (unsigned)row[2 * i] << 8 | row[2 * i + 1] : row[i];
    return (float)v / lay->maxval; /* a division, not a reciprocal's product: exactly v / maxval rounded */
}


/* Pixels x0 .. x0 + count - 1 of a decoded row into `channels` planes
 * (dst, dst + plane, ...). */
static void convert_row(const png_byte *row, const sr_png_layout *lay, size_t x0, size_t count, int channels,
                        float *dst, size_t plane)
{
    const bool colour = lay->type & PNG_COLOR_MASK_COLOR; /* RGB, RGBA, palette */
    for (size_t x = 0; x < count; x++) {
        const size_t p = (x0 + x) * (size_t)lay->samples; /* the pixel's first sample; alpha is never read */
        float r, g, b;
        if (lay->type == PNG_COLOR_TYPE_PALETTE) {
            const png_color c = lay->palette[row[x0 + x]];
            r = c.red / 255.0f, g = c.green / 255.0f, b = c.blue / 255.0f;
        } else if (colour) {
            r = sample_at(row, p, lay), g = sample_at(row, p + 1, lay), b = sample_at(row, p + 2, lay);
        } else {
            r = g = b = sample_at(row, p, lay);
        }
        if (channels == 1) {
            dst[x] = colour ? sr_luma(r, g, b) : r;
        } else {
            dst[x] = r;
            dst[plane + x] = g;
            dst[2 * plane + x] = b;
        }
    }
}

/* Box filter (side > size). Measured in units of 1/size of an input pixel,
 * input pixel k covers [k size, (k + 1) size) and output pixel i covers
 * [i side, (i + 1) side): every overlap is an integer, so the weights
 * (overlap / side on each axis) are exact. */
static long long overlap(long long k, long long i, long long side, long long size)
{
    const long long lo = k * size > i * side ? k * size : i * side;
    const long long hi = (k + 1) * size < (i + 1) * side ? (k + 1) * size : (i + 1) * side;
    return hi > lo ? hi - lo : 0;
}

static void shrink_area(const float *src, long long side, float *dst, long long size, int channels)
{
    const double norm = (double)side * (double)side;
    for (int c = 0; c < channels; c++) {
        const float *in = src + (size_t)c * (size_t)(side * side);
        float *o = dst + (size_t)c * (size_t)(size * size);
        for (long long i = 0; i < size; i++) {
            const long long k0 = i * side / size, k1 = ((i + 1) * side + size - 1) / size;
            for (long long j = 0; j < size; j++) {
                const long long l0 = j * side / size, l1 = ((j + 1) * side + size - 1) / size;
                double sum = 0;
                for (long long k = k0; k < k1; k++) {
                    double row = 0;
                    for (long long l = l0; l < l1; l++) row += (double)overlap(l, j, side, size) * in[k * side + l];
                    sum += (double)overlap(k, i, side, size) * row;
                }
                o[i * size + j] = (float)(sum / norm);
            }
        }
    }
}

/* Half-pixel centres: src = (dst + 0.5) side / size - 0.5, clamped to the
 * square (below 0 -> 0; past the last pixel -> the last pixel). */
static void bilinear_axis(long long d, long long side, long long size, long long *k0, long long *k1, double *frac)
{
    double s = ((double)d + 0.5) * (double)side / (double)size - 0.5;
    if (s < 0) s = 0;
    long long k = (long long)s;
    if (k > side - 1) k = side - 1;
    *k0 = k;
    *k1 = k < side - 1 ? k + 1 : k;
    *frac = s - (double)k;
}

static void enlarge_bilinear(const float *src, long long side, float *dst, long long size, int channels)
{
    for (int c = 0; c < channels; c++) {
        const float *in = src + (size_t)c * (size_t)(side * side);
        float *o = dst + (size_t)c * (size_t)(size * size);
        for (long long i = 0; i < size; i++) {
            long long y0, y1;
            double fy;
            bilinear_axis(i, side, size, &y0, &y1, &fy);
            for (long long j = 0; j < size; j++) {
                long long x0, x1;
                double fx;
                bilinear_axis(j, side, size, &x0, &x1, &fx);
                const double top = (1 - fx) * in[y0 * side + x0] + fx * in[y0 * side + x1];
                const double bottom = (1 - fx) * in[y1 * side + x0] + fx * in[y1 * side + x1];
                o[i * size + j] = (float)((1 - fy) * top + fy * bottom);
            }
        }
    }
}

typedef struct {
    int channels, size;
    float *out;
    sr_ihdr ihdr; /* what read_ihdr saw */
} sr_png_job;

/* Sets the transforms and returns the layout of the decoded rows. Only
 * png_set_packing: the scaling, palette lookup and channel conversion are
 * ours, exact, and the same for every type. */
static void prepare(sr_png_reader *r, const sr_png_job *job, sr_png_layout *lay, png_uint_32 *width,
                    png_uint_32 *height, bool *interlaced)
{
    int depth, type, interlace;
    if (!png_get_IHDR(r->png, r->info, width, height, &depth, &type, &interlace, NULL, NULL))
        png_error(r->png, "libpng returned no IHDR");
    /* the size check was made on what read_ihdr saw; the same bytes, unless
     * the file changed in between */
    if (*width != job->ihdr.width || *height != job->ihdr.height)
        png_error(r->png, "the file changed while being read");
    memset(lay, 0, sizeof *lay);
    lay->type = type;
    lay->samples = png_get_channels(r->png, r->info);
    lay->sixteen = depth == 16;
    lay->maxval = (float)((1u << depth) - 1);
    if (type == PNG_COLOR_TYPE_PALETTE) {
        png_colorp palette;
        int count = 0;
        if (!png_get_PLTE(r->png, r->info, &palette, &count)) png_error(r->png, "palette image without PLTE");
        memcpy(lay->palette, palette, sizeof(png_color) * (size_t)(count < 256 ? count : 256));
    }
    if (depth < 8) png_set_packing(r->png);
    *interlaced = interlace != PNG_INTERLACE_NONE;
    /* Adam7 is undone by libpng over the whole image (png_read_image) */
    png_set_interlace_handling(r->png);
    png_read_update_info(r->png, r->info);
}

static void *alloc_or_error(png_structp png, size_t count, size_t each)
{
    if (each && count > SIZE_MAX / each) png_error(png, "the image is too large for this machine's memory");
    void *p = sr_try_realloc(NULL, count, each, "the decoded image", NULL, 0);
    if (!p) png_error(png, "out of memory for the decoded image");
    return p;
}

static void load_body(sr_png_reader *r, void *arg)
{
    const sr_png_job *job = arg;
    sr_png_layout lay;
    png_uint_32 width, height;
    bool interlaced;
    start_reading(r);
    prepare(r, job, &lay, &width, &height, &interlaced);
    const size_t rowbytes = png_get_rowbytes(r->png, r->info);
    if (rowbytes == 0) png_error(r->png, "libpng reports empty rows");
    /* the centred square */
    const size_t side = width < height ? width : height;
    const size_t x0 = (width - side) / 2, y0 = (height - side) / 2;
    const size_t size = (size_t)job->size, plane = side * side;
    float *square = job->out; /* at the same size the square is the output */
    if (side != size) square = r->square = alloc_or_error(r->png, plane, sizeof(float) * (size_t)job->channels);
    if (interlaced) {
        r->pixels = alloc_or_error(r->png, height, rowbytes);
        r->rows = alloc_or_error(r->png, height, sizeof(png_bytep));
        for (size_t y = 0; y < height; y++) r->rows[y] = r->pixels + y * rowbytes;
        png_read_image(r->png, r->rows);
        for (size_t y = 0; y < side; y++)
            convert_row(r->rows[y0 + y], &lay, x0, side, job->channels, square + y * side, plane);
    } else {
        r->pixels = alloc_or_error(r->png, 1, rowbytes);
        for (size_t y = 0; y < height; y++) {
            png_read_row(r->png, r->pixels, NULL);
            if (y >= y0 && y < y0 + side)
                convert_row(r->pixels, &lay, x0, side, job->channels, square + (y - y0) * side, plane);
        }
    }
    /* the chunks after the image data up to IEND: a file cut after its
     * last IDAT, or one with a damaged chunk there, is refused too */
    png_read_end(r->png, NULL);
    if (side > size)
        shrink_area(square, (long long)side, job->out, (long long)size, job->channels);
    else if (side < size)
        enlarge_bilinear(square, (long long)side, job->out, (long long)size, job->channels);
}

int sr_png_load(const char *path, int channels, int size, long max_pixels, float *out, char *err, size_t errlen)
{
    if (channels != 1 && channels != 3)
        return sr_report(err, errlen, "%s: cannot make %d channels from a PNG (1 or 3)", path, channels);
    if (size < 1 || max_pixels < 1 || !out)
        return sr_report(err, errlen, "%s: bad arguments (size %d, max_pixels %ld, out %p)", path, size, max_pixels,
                    (void *)out);
    sr_png_reader r;
    sr_png_job job = {.channels = channels, .size = size, .out = out};
    int rc = reader_open(&r, path, &job.ihdr, err, errlen);
    if (rc == 0) {
        /* decided from the IHDR alone, before libpng reads on */
        const long long pixels = (long long)job.ihdr.width * job.ihdr.height; /* sides < 2^31: no overflow */
        if (pixels > max_pixels)
            rc = sr_report(err, errlen,
                      "%s is %lu x %lu = %lld pixels, more than max_pixels = %ld (dataset.max_pixels); "
                      "raise dataset.max_pixels or shrink the image",
                      path, (unsigned long)job.ihdr.width, (unsigned long)job.ihdr.height, pixels, max_pixels);
    }
    if (rc == 0) rc = reader_create(&r);
    if (rc == 0) rc = guarded(&r, load_body, &job);
    reader_close(&r);
    return rc;
}

/* ---- writing ------------------------------------------------------------ */

typedef struct {
    sr_png_msg msg;
    FILE *file;
    png_structp png;
    png_infop info;
    png_bytep row;
} sr_png_writer;

typedef struct {
    const float *pixels;
    int channels, height, width;
} sr_png_image;

static void write_failed(png_structp png, const sr_png_writer *w)
{
    char why[4400], what[4500];
    snprintf(what, sizeof what, "cannot write the file: %s", sr_write_reason(errno, w->msg.path, NULL, why, sizeof why));
    png_error(png, what);
}

static void write_bytes(png_structp png, png_bytep data, size_t length)
{
    sr_png_writer *w = png_get_io_ptr(png);
    if (fwrite(data, 1, length, w->file) != length) write_failed(png, w);
}

static void flush_bytes(png_structp png)
{
    sr_png_writer *w = png_get_io_ptr(png);
    if (fflush(w->file) != 0) write_failed(png, w);
}

/* [0, 1] -> 0 .. 255, rounded to nearest; NaN and below 0 -> 0. */
static png_byte to_byte(float v)
{
    if (!(v > 0)) return 0;
    if (v >= 1) return 255;
    return (png_byte)((double)v * 255.0 + 0.5);
}

static void write_body(sr_png_writer *w, const sr_png_image *im)
{
    png_set_write_fn(w->png, w, write_bytes, flush_bytes);
    png_set_user_limits(w->png, PNG_UINT_31_MAX, PNG_UINT_31_MAX);
    png_set_IHDR(w->png, w->info, (png_uint_32)im->width, (png_uint_32)im->height, 8,
                 im->channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(w->png, w->info);
    const size_t width = (size_t)im->width, plane = width * (size_t)im->height;
    w->row = sr_try_realloc(NULL, width, (size_t)im->channels, "a row", NULL, 0);
    if (!w->row) png_error(w->png, "out of memory for a row");
    for (size_t y = 0; y < (size_t)im->height; y++) {
        for (size_t x = 0; x < width; x++)
            for (int c = 0; c < im->channels; c++)
                w->row[x * (size_t)im->channels + (size_t)c] = to_byte(im->pixels[(size_t)c * plane + y * width + x]);
        png_write_row(w->png, w->row);
    }
    png_write_end(w->png, NULL);
}

/* As guarded(), for the writer. */
static int write_guarded(sr_png_writer *w, const sr_png_image *im)
{
    if (setjmp(png_jmpbuf(w->png))) return -1;
    write_body(w, im);
    return 0;
}

int sr_png_write(const char *path, const float *pixels, int channels, int height, int width, char *err,
                 size_t errlen)
{
    if (channels != 1 && channels != 3)
        return sr_report(err, errlen, "%s: cannot write %d channels (1 or 3)", path, channels);
    if (height < 1 || width < 1 || !pixels)
        return sr_report(err, errlen, "%s: bad image to write (%d x %d, pixels %p)", path, width, height,
                    (const void *)pixels);
    char tmp[4200], why[4400];
    if (strlen(path) + 32 > sizeof tmp) return sr_report(err, errlen, "%s: path too long", path);
    sr_tmp_path(path, tmp, sizeof tmp);
    sr_png_writer w = {.msg = {.path = path, .err = err, .errlen = errlen}};
    w.file = fopen(tmp, "wb");
    if (!w.file) {
        sr_write_reason(errno, tmp, NULL, why, sizeof why);
        sr_temp_forget(tmp);
        return sr_report(err, errlen, "cannot create %s: %s", tmp, why);
    }
    int rc = -1;
    w.png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &w.msg, on_png_error, on_png_warning);
    if (w.png) w.info = png_create_info_struct(w.png);
    if (!w.png || !w.info)
        sr_report(err, errlen, "%s: libpng could not start (out of memory)", path);
    else
        rc = write_guarded(&w, &(sr_png_image){pixels, channels, height, width});
    free(w.row);
    if (w.png) png_destroy_write_struct(&w.png, w.info ? &w.info : NULL);
    /* fclose flushes: a full disk may show only here */
    if (fclose(w.file) != 0 && rc == 0) {
        sr_write_reason(errno, tmp, NULL, why, sizeof why);
        rc = sr_report(err, errlen, "cannot write %s: %s", tmp, why);
    }
    if (rc != 0) {
        sr_temp_remove(tmp);
        return -1;
    }
    sr_commit_file(tmp, path);
    return 0;
}
