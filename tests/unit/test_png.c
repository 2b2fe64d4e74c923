#define _POSIX_C_SOURCE 200809L /* mkdtemp, dup, fileno */
/* PNG images (io/png_image.h). The corpus is written here, in a temporary
 * folder, with libpng's writer called directly and known samples; decoded
 * values are checked against closed forms or values worked out by hand. */
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <omp.h>
#include <png.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "io/png_image.h"
#include "test_util.h"

static char dir[64]; /* the corpus folder, made by main */
static char err[1024];

#define PATH(var, name)                                                                                          \
    char var[512];                                                                                              \
    snprintf(var, sizeof var, "%s/%s", dir, name)

#define BIG_MAX_PIXELS 100000000L /* dataset.max_pixels' default */

/* ---- an image in the file's own units ----------------------------------- */

typedef struct {
    int w, h, type, depth;
    int ns;      /* samples per pixel in the file */
    uint16_t *s; /* h x w x ns samples, as in the file (palette: indices) */
    png_color pal[256];
    int npal;
    png_byte trans[256];
    int ntrans;
} image;

static int samples_of(int type)
{
    switch (type) {
    case PNG_COLOR_TYPE_GRAY: return 1;
    case PNG_COLOR_TYPE_GRAY_ALPHA: return 2;
    case PNG_COLOR_TYPE_RGB: return 3;
    case PNG_COLOR_TYPE_RGB_ALPHA: return 4;
    default: return 1; /* palette */
    }
}

static unsigned maxval_of(int depth) { return (1u << depth) - 1; }

/* A fixed pattern that reaches 0 and the largest value of every channel. */
static image make_image(int w, int h, int type, int depth)
{
    image im = {.w = w, .h = h, .type = type, .depth = depth, .ns = samples_of(type)};
    im.s = calloc((size_t)w * h * im.ns, sizeof(uint16_t));
    const unsigned top = type == PNG_COLOR_TYPE_PALETTE ? (1u << depth) - 1 : maxval_of(depth);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < im.ns; c++) {
                const unsigned long v = (unsigned long)x * 37 + (unsigned long)y * 101 + (unsigned long)c * 59 +
                                        (unsigned long)x * y * 13 + (depth == 16 ? (unsigned long)x * 4099 : 0);
                im.s[((size_t)y * w + x) * im.ns + c] = (uint16_t)(v % (top + 1));
            }
    for (int c = 0; c < im.ns; c++) im.s[((size_t)(h - 1) * w + (w - 1)) * im.ns + c] = (uint16_t)top;
    if (type == PNG_COLOR_TYPE_PALETTE) {
        im.npal = 1 << depth;
        for (int i = 0; i < im.npal; i++)
            im.pal[i] = (png_color){(png_byte)((i * 53 + 7) % 256), (png_byte)((i * 97 + 31) % 256),
                                    (png_byte)((i * 13 + 200) % 256)};
    }
    return im;
}

static void image_free(image *im) { free(im->s); }

/* The value a decoder must give for channel c of pixel (x, y), in the file's
 * own channels: sample / (2^depth - 1); a palette entry / 255. */
static float file_value(const image *im, int x, int y, int c)
{
    const uint16_t *p = im->s + ((size_t)y * im->w + x) * im->ns;
    if (im->type == PNG_COLOR_TYPE_PALETTE) {
        const png_color e = im->pal[p[0]];
        return (c == 0 ? e.red : c == 1 ? e.green : e.blue) / 255.0f;
    }
    return (float)p[c] / (float)maxval_of(im->depth);
}

static bool is_colour(const image *im) { return im->type & PNG_COLOR_MASK_COLOR; }

/* The expected decoding of the side x side square at (x0, y0) with no
 * resizing: grey replicated, colour to luma, alpha ignored. */
static void expect_square(const image *im, int channels, int x0, int y0, int side, float *out)
{
    const size_t plane = (size_t)side * side;
    for (int y = 0; y < side; y++)
        for (int x = 0; x < side; x++) {
            const size_t o = (size_t)y * side + x;
            const int sx = x0 + x, sy = y0 + y;
            if (channels == 3)
                for (int c = 0; c < 3; c++) out[c * plane + o] = file_value(im, sx, sy, is_colour(im) ? c : 0);
            else if (is_colour(im))
                out[o] = (float)(0.299 * file_value(im, sx, sy, 0) + 0.587 * file_value(im, sx, sy, 1) +
                                 0.114 * file_value(im, sx, sy, 2));
            else
                out[o] = file_value(im, sx, sy, 0);
        }
}

/* ---- writing the corpus with libpng ------------------------------------- */

typedef struct {
    bool interlaced;
    int level;     /* zlib level, -1 for libpng's default */
    int idat_size; /* the largest IDAT chunk, 0 for libpng's default */
    bool no_filter;
} wopts;

static const wopts plain = {.level = -1};

/* Packs the samples into PNG rows (below 8 bits: most significant first;
 * 16 bits: big-endian) and writes them with libpng. */
static void write_image(const char *path, const image *im, const wopts *o)
{
    const size_t rowbytes = ((size_t)im->w * im->ns * im->depth + 7) / 8;
    png_bytep data = calloc((size_t)im->h, rowbytes);
    png_bytepp rows = malloc(sizeof(png_bytep) * (size_t)im->h);
    for (int y = 0; y < im->h; y++) {
        rows[y] = data + (size_t)y * rowbytes;
        for (size_t i = 0; i < (size_t)im->w * im->ns; i++) {
            const unsigned v = im->s[(size_t)y * im->w * im->ns + i];
            if (im->depth == 16) {
                rows[y][2 * i] = (png_byte)(v >> 8);
                rows[y][2 * i + 1] = (png_byte)(v & 255);
            } else if (im->depth == 8) {
                rows[y][i] = (png_byte)v;
            } else {
                const size_t bit = i * (size_t)im->depth;
                rows[y][bit / 8] |= (png_byte)(v << (8 - im->depth - bit % 8));
            }
        }
    }
    FILE *f = fopen(path, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    volatile int ok = 0;
    if (png && info && setjmp(png_jmpbuf(png)) == 0) {
        png_init_io(png, f);
        if (o->level >= 0) png_set_compression_level(png, o->level);
        if (o->idat_size) png_set_compression_buffer_size(png, (size_t)o->idat_size);
        if (o->no_filter) png_set_filter(png, 0, PNG_FILTER_NONE);
        png_set_IHDR(png, info, (png_uint_32)im->w, (png_uint_32)im->h, im->depth, im->type,
                     o->interlaced ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                     PNG_FILTER_TYPE_DEFAULT);
        if (im->npal) png_set_PLTE(png, info, im->pal, im->npal);
        if (im->ntrans) png_set_tRNS(png, info, im->trans, im->ntrans, NULL);
        png_write_info(png, info);
        png_write_image(png, rows); /* does the Adam7 passes itself */
        png_write_end(png, NULL);
        ok = 1;
    }
    png_destroy_write_struct(&png, &info);
    fclose(f);
    free(rows);
    free(data);
    CU_ASSERT_FATAL(ok);
}

static float *floats(size_t n) { return calloc(n, sizeof(float)); }

/* Exact comparison; prints the first difference. */
static int count_unequal(const float *got, const float *want, size_t n, const char *what)
{
    int bad = 0;
    for (size_t i = 0; i < n; i++)
        if (got[i] != want[i] && bad++ == 0)
            printf("\n    %s: [%zu] is %.9g, expected %.9g", what, i, got[i], want[i]);
    return bad;
}

static double max_abs_diff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

static int load(const char *path, int channels, int size, float *out)
{
    err[0] = '\0';
    const int rc = sr_png_load(path, channels, size, BIG_MAX_PIXELS, out, err, sizeof err);
    if (rc) printf("\n    %s", err);
    return rc;
}

/* ---- every colour type and bit depth, exact ----------------------------- */

typedef struct {
    int type, depth;
    bool trns;
} kind;

static const kind kinds[] = {
    {PNG_COLOR_TYPE_GRAY, 1, false},       {PNG_COLOR_TYPE_GRAY, 2, false},       {PNG_COLOR_TYPE_GRAY, 4, false},
    {PNG_COLOR_TYPE_GRAY, 8, false},       {PNG_COLOR_TYPE_GRAY, 16, false},      {PNG_COLOR_TYPE_GRAY_ALPHA, 8, false},
    {PNG_COLOR_TYPE_GRAY_ALPHA, 16, false}, {PNG_COLOR_TYPE_RGB, 8, false},       {PNG_COLOR_TYPE_RGB, 16, false},
    {PNG_COLOR_TYPE_RGB_ALPHA, 8, false},  {PNG_COLOR_TYPE_RGB_ALPHA, 16, false}, {PNG_COLOR_TYPE_PALETTE, 1, false},
    {PNG_COLOR_TYPE_PALETTE, 2, false},    {PNG_COLOR_TYPE_PALETTE, 4, false},    {PNG_COLOR_TYPE_PALETTE, 8, false},
    {PNG_COLOR_TYPE_PALETTE, 4, true},     {PNG_COLOR_TYPE_PALETTE, 8, true},
};

static image make_kind(const kind *k, int w, int h)
{
    image im = make_image(w, h, k->type, k->depth);
    if (k->trns) {
        /* tRNS for some entries, 0 (fully transparent) among them: alpha is
         * dropped, so the colours must come out unchanged */
        im.ntrans = im.npal / 2 + 1;
        for (int i = 0; i < im.ntrans; i++) im.trans[i] = (png_byte)(i * 40 % 256);
    }
    return im;
}

static void test_every_type_exact(void)
{
    for (size_t t = 0; t < sizeof kinds / sizeof *kinds; t++) {
        const kind *k = &kinds[t];
        image im = make_kind(k, 9, 9);
        char name[64], what[96];
        snprintf(name, sizeof name, "type%d_depth%d%s.png", k->type, k->depth, k->trns ? "_trns" : "");
        PATH(path, name);
        write_image(path, &im, &plain);

        sr_png_header h;
        CU_ASSERT_EQUAL_FATAL(sr_png_read_header(path, &h, err, sizeof err), 0);
        const int want_channels = k->type == PNG_COLOR_TYPE_PALETTE ? (k->trns ? 4 : 3) : im.ns;
        CU_ASSERT(h.width == 9 && h.height == 9 && h.bit_depth == k->depth && !h.interlaced);
        CU_ASSERT_EQUAL(h.channels, want_channels);

        /* the file's own channel count (alpha dropped) at the native size */
        const int channels = is_colour(&im) ? 3 : 1;
        float *got = floats(3 * 81), *want = floats(3 * 81);
        CU_ASSERT_EQUAL_FATAL(load(path, channels, 9, got), 0);
        expect_square(&im, channels, 0, 0, 9, want);
        snprintf(what, sizeof what, "%s, %d channels", name, channels);
        CU_ASSERT_EQUAL(count_unequal(got, want, (size_t)channels * 81, what), 0);
        /* the values reach both ends of [0, 1] */
        float lo = 1, hi = 0;
        for (int i = 0; i < channels * 81; i++) lo = fminf(lo, got[i]), hi = fmaxf(hi, got[i]);
        if (k->type != PNG_COLOR_TYPE_PALETTE) CU_ASSERT(lo == 0.0f && hi == 1.0f);
        free(got);
        free(want);
        image_free(&im);
    }
}

/* A pixel with alpha 0 keeps its colour: nothing is composited. */
static void test_alpha_dropped(void)
{
    image im = make_image(2, 2, PNG_COLOR_TYPE_RGB_ALPHA, 8);
    const uint16_t px[4][4] = {{255, 128, 0, 0}, {10, 20, 30, 255}, {255, 255, 255, 0}, {0, 0, 0, 0}};
    memcpy(im.s, px, sizeof px);
    PATH(path, "rgba_alpha0.png");
    write_image(path, &im, &plain);
    float got[12];
    CU_ASSERT_EQUAL_FATAL(load(path, 3, 2, got), 0);
    const float want[12] = {1.0f, 10 / 255.0f, 1.0f, 0, 128 / 255.0f, 20 / 255.0f, 1.0f, 0, 0, 30 / 255.0f, 1.0f, 0};
    CU_ASSERT_EQUAL(count_unequal(got, want, 12, "RGBA with alpha 0"), 0);
    image_free(&im);
}

/* ---- interlacing -------------------------------------------------------- */

static void test_interlaced_equals_plain(void)
{
    const kind ks[] = {{PNG_COLOR_TYPE_GRAY, 1, false}, {PNG_COLOR_TYPE_GRAY, 4, false},
                       {PNG_COLOR_TYPE_GRAY_ALPHA, 16, false}, {PNG_COLOR_TYPE_RGB, 16, false},
                       {PNG_COLOR_TYPE_RGB_ALPHA, 8, false}, {PNG_COLOR_TYPE_PALETTE, 2, true}};
    const int sizes[] = {11, 5, 17}; /* the square's side, shrunk, enlarged */
    for (size_t t = 0; t < sizeof ks / sizeof *ks; t++) {
        image im = make_kind(&ks[t], 13, 11); /* odd and not square: partial Adam7 blocks */
        char name[64];
        snprintf(name, sizeof name, "adam7_%zu.png", t);
        PATH(a7, name);
        snprintf(name, sizeof name, "plain_%zu.png", t);
        PATH(pl, name);
        write_image(a7, &im, &(wopts){.interlaced = true, .level = -1});
        write_image(pl, &im, &plain);
        sr_png_header h;
        CU_ASSERT_EQUAL_FATAL(sr_png_read_header(a7, &h, err, sizeof err), 0);
        CU_ASSERT(h.interlaced && h.width == 13 && h.height == 11);
        const int channels = is_colour(&im) ? 3 : 1;
        for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
            const size_t n = (size_t)channels * sizes[s] * sizes[s];
            float *x = floats(n), *y = floats(n);
            CU_ASSERT_EQUAL_FATAL(load(a7, channels, sizes[s], x), 0);
            CU_ASSERT_EQUAL_FATAL(load(pl, channels, sizes[s], y), 0);
            CU_ASSERT_EQUAL(count_unequal(x, y, n, "Adam7 against plain"), 0);
            if (sizes[s] == 11) { /* and right: the square at x = 1 */
                expect_square(&im, channels, 1, 0, 11, y);
                CU_ASSERT_EQUAL(count_unequal(x, y, n, "Adam7 against the samples"), 0);
            }
            free(x);
            free(y);
        }
        image_free(&im);
    }
}

/* ---- geometry ----------------------------------------------------------- */

/* Grey 8-bit w x h with sample (y * w + x) * 3 % 256: every pixel distinct
 * enough to tell a shifted crop. */
static image grey_ramp(int w, int h)
{
    image im = make_image(w, h, PNG_COLOR_TYPE_GRAY, 8);
    for (int i = 0; i < w * h; i++) im.s[i] = (uint16_t)(i * 3 % 256);
    return im;
}

static void test_centre_crop(void)
{
    /* (w, h) and the square's corner: floor((w - side) / 2), floor((h - side) / 2) */
    const int cases[][4] = {{7, 5, 1, 0}, {8, 5, 1, 0}, {5, 7, 0, 1}, {6, 9, 0, 1}, {10, 4, 3, 0}};
    for (size_t t = 0; t < sizeof cases / sizeof *cases; t++) {
        const int w = cases[t][0], h = cases[t][1], x0 = cases[t][2], y0 = cases[t][3];
        const int side = w < h ? w : h;
        image im = grey_ramp(w, h);
        char name[64];
        snprintf(name, sizeof name, "crop_%dx%d.png", w, h);
        PATH(path, name);
        write_image(path, &im, &plain);
        float got[100], want[100];
        CU_ASSERT_EQUAL_FATAL(load(path, 1, side, got), 0);
        for (int y = 0; y < side; y++)
            for (int x = 0; x < side; x++) want[y * side + x] = (float)im.s[(y + y0) * w + (x + x0)] / 255.0f;
        CU_ASSERT_EQUAL(count_unequal(got, want, (size_t)side * side, name), 0);
        image_free(&im);
    }
}

/* 8 x 8 -> 4 x 4 is the mean of each 2 x 2 block, in every channel. */
static void test_shrink_by_two(void)
{
    image im = make_image(8, 8, PNG_COLOR_TYPE_RGB, 8);
    PATH(path, "shrink8.png");
    write_image(path, &im, &plain);
    float got[3 * 16], want[3 * 16];
    CU_ASSERT_EQUAL_FATAL(load(path, 3, 4, got), 0);
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++) {
                double sum = 0;
                for (int dy = 0; dy < 2; dy++)
                    for (int dx = 0; dx < 2; dx++) sum += im.s[((2 * i + dy) * 8 + 2 * j + dx) * 3 + c] / 255.0;
                want[c * 16 + i * 4 + j] = (float)(sum / 4);
            }
    CU_ASSERT(max_abs_diff(got, want, 48) < 1e-6);
    image_free(&im);
}

/* Out[i][j] = sum_k sum_l W[i][k] W[j][l] in[k][l] with W written by hand. */
static void box_expect(const double *W, int side, int size, const float *in, float *out)
{
    for (int i = 0; i < size; i++)
        for (int j = 0; j < size; j++) {
            double sum = 0;
            for (int k = 0; k < side; k++)
                for (int l = 0; l < side; l++) sum += W[i * side + k] * W[j * side + l] * in[k * side + l];
            out[i * size + j] = (float)sum;
        }
}

/* Non-integer factors. 6 -> 4: output pixel i covers [1.5 i, 1.5 i + 1.5),
 * so the weights are 2/3 and 1/3. 5 -> 3: [5i/3, 5(i+1)/3), weights 3/5,
 * 2/5 | 1/5, 3/5, 1/5 | 2/5, 3/5. */
static void test_shrink_fractional(void)
{
    const double W64[4 * 6] = {2. / 3, 1. / 3, 0, 0, 0, 0,      0, 1. / 3, 2. / 3, 0, 0, 0,
                               0, 0, 0, 2. / 3, 1. / 3, 0,      0, 0, 0, 0, 1. / 3, 2. / 3};
    const double W53[3 * 5] = {3. / 5, 2. / 5, 0, 0, 0, 0, 1. / 5, 3. / 5, 1. / 5, 0, 0, 0, 0, 2. / 5, 3. / 5};
    /* 9 x 6, 16-bit grey: the square is columns 1..6 */
    image im = make_image(9, 6, PNG_COLOR_TYPE_GRAY, 16);
    PATH(path, "shrink6to4.png");
    write_image(path, &im, &plain);
    float sq[36], got[16], want[16];
    for (int y = 0; y < 6; y++)
        for (int x = 0; x < 6; x++) sq[y * 6 + x] = (float)im.s[y * 9 + x + 1] / 65535.0f;
    CU_ASSERT_EQUAL_FATAL(load(path, 1, 4, got), 0);
    box_expect(W64, 6, 4, sq, want);
    const double d64 = max_abs_diff(got, want, 16);
    printf("\n    6 -> 4: max |diff| %.2g", d64);
    CU_ASSERT(d64 < 1e-6);
    image_free(&im);

    im = grey_ramp(5, 5);
    PATH(p5, "shrink5to3.png");
    write_image(p5, &im, &plain);
    float sq5[25], got5[9], want5[9];
    for (int i = 0; i < 25; i++) sq5[i] = im.s[i] / 255.0f;
    CU_ASSERT_EQUAL_FATAL(load(p5, 1, 3, got5), 0);
    box_expect(W53, 5, 3, sq5, want5);
    CU_ASSERT(max_abs_diff(got5, want5, 9) < 1e-6);
    /* a corner by hand: (0, 0) = .36 in00 + .24 (in01 + in10) + .16 in11,
     * in = 0, 3, 15, 18 (/ 255) */
    CU_ASSERT_DOUBLE_EQUAL(got5[0], (0.24 * 3 + 0.24 * 15 + 0.16 * 18) / 255, 1e-6);
    image_free(&im);
}

/* 2 x 2 -> 4 x 4 bilinear, half-pixel centres: rows and columns take the
 * weights (1, 0), (.75, .25), (.25, .75), (0, 1). in = 0, .4 / .8, 1. */
static void test_enlarge_bilinear(void)
{
    image im = make_image(2, 2, PNG_COLOR_TYPE_GRAY, 8);
    const uint16_t px[4] = {0, 102, 204, 255};
    memcpy(im.s, px, sizeof px);
    PATH(path, "enlarge2.png");
    write_image(path, &im, &plain);
    float got[16];
    CU_ASSERT_EQUAL_FATAL(load(path, 1, 4, got), 0);
    const float want[16] = {0.0f, 0.1f,    0.3f,    0.4f,  /* */
                            0.2f, 0.2875f, 0.4625f, 0.55f, /* */
                            0.6f, 0.6625f, 0.7875f, 0.85f, /* */
                            0.8f, 0.85f,   0.95f,   1.0f};
    const double d = max_abs_diff(got, want, 16);
    if (d >= 1e-6) printf("\n    2 -> 4: max |diff| %.3g", d);
    CU_ASSERT(d < 1e-6);
    image_free(&im);

    /* 3 -> 5 along x: src = 0.6 (dst + 0.5) - 0.5 = -0.2 (clamped to 0),
     * 0.4, 1, 1.6, 2.2 (past the last pixel: the last pixel) */
    im = make_image(3, 3, PNG_COLOR_TYPE_GRAY, 8);
    for (int y = 0; y < 3; y++) im.s[y * 3] = 0, im.s[y * 3 + 1] = 102, im.s[y * 3 + 2] = 255;
    PATH(p3, "enlarge3.png");
    write_image(p3, &im, &plain);
    float got5[25];
    CU_ASSERT_EQUAL_FATAL(load(p3, 1, 5, got5), 0);
    const float row[5] = {0.0f, 0.16f, 0.4f, 0.76f, 1.0f};
    for (int y = 0; y < 5; y++) CU_ASSERT(max_abs_diff(got5 + 5 * y, row, 5) < 1e-6);
    image_free(&im);
}

/* A constant image stays constant at any size, shrunk or enlarged. */
static void test_constant_stays(void)
{
    image im = make_image(7, 7, PNG_COLOR_TYPE_GRAY, 8);
    for (int i = 0; i < 49; i++) im.s[i] = 77;
    PATH(path, "constant.png");
    write_image(path, &im, &plain);
    const int sizes[] = {1, 2, 3, 4, 5, 6, 7, 8, 13, 29};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        const size_t n = (size_t)sizes[s] * sizes[s];
        float *got = floats(n), *want = floats(n);
        for (size_t i = 0; i < n; i++) want[i] = 77 / 255.0f;
        CU_ASSERT_EQUAL_FATAL(load(path, 1, sizes[s], got), 0);
        CU_ASSERT(max_abs_diff(got, want, n) < 1e-6);
        free(got);
        free(want);
    }
    image_free(&im);
}

/* ---- channels ----------------------------------------------------------- */

static void test_channel_conversion(void)
{
    /* 3 -> 1: luma 0.299 R + 0.587 G + 0.114 B */
    image im = make_image(2, 2, PNG_COLOR_TYPE_RGB, 8);
    const uint16_t px[12] = {255, 0, 0, 0, 255, 0, 0, 0, 255, 51, 102, 153};
    memcpy(im.s, px, sizeof px);
    PATH(path, "luma.png");
    write_image(path, &im, &plain);
    float got[4];
    CU_ASSERT_EQUAL_FATAL(load(path, 1, 2, got), 0);
    const float want[4] = {0.299f, 0.587f, 0.114f, 0.363f}; /* .299 .2 + .587 .4 + .114 .6 */
    CU_ASSERT(max_abs_diff(got, want, 4) < 1e-6);
    image_free(&im);

    /* RGBA and palette to 1 channel: luma too, alpha ignored */
    im = make_image(1, 1, PNG_COLOR_TYPE_RGB_ALPHA, 16);
    const uint16_t white_clear[4] = {65535, 65535, 65535, 0};
    memcpy(im.s, white_clear, sizeof white_clear);
    PATH(pw, "luma_rgba.png");
    write_image(pw, &im, &plain);
    CU_ASSERT_EQUAL_FATAL(load(pw, 1, 1, got), 0);
    CU_ASSERT_EQUAL(got[0], 1.0f); /* white, not composited to black */
    image_free(&im);

    im = make_image(2, 1, PNG_COLOR_TYPE_PALETTE, 1);
    im.npal = 2;
    im.pal[0] = (png_color){0, 0, 255};
    im.pal[1] = (png_color){255, 255, 0};
    im.s[0] = 0, im.s[1] = 1;
    PATH(pp, "luma_palette.png");
    write_image(pp, &im, &plain);
    CU_ASSERT_EQUAL_FATAL(load(pp, 1, 1, got), 0); /* the square is pixel (0, 0): blue */
    CU_ASSERT_DOUBLE_EQUAL(got[0], 0.114, 1e-6);
    image_free(&im);

    /* 1 -> 3: the grey value three times */
    im = make_image(5, 5, PNG_COLOR_TYPE_GRAY, 4);
    PATH(pg, "grey_to_rgb.png");
    write_image(pg, &im, &plain);
    float rgb[75];
    CU_ASSERT_EQUAL_FATAL(load(pg, 3, 5, rgb), 0);
    int bad = 0;
    for (int i = 0; i < 25; i++)
        for (int c = 0; c < 3; c++) bad += rgb[c * 25 + i] != (float)im.s[i] / 15.0f;
    CU_ASSERT_EQUAL(bad, 0);
    image_free(&im);
}

/* ---- sr_png_write ------------------------------------------------------- */

/* Reads an 8-bit grey or RGB file with libpng's simplified API: a second,
 * independent reader of what sr_png_write wrote. */
static int read_simple(const char *path, int channels, png_bytep out, size_t cap)
{
    png_image pi;
    memset(&pi, 0, sizeof pi);
    pi.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&pi, path)) return -1;
    pi.format = channels == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
    if (PNG_IMAGE_SIZE(pi) > cap) {
        png_image_free(&pi);
        return -1;
    }
    return png_image_finish_read(&pi, NULL, out, 0, NULL) ? 0 : -1;
}

static void test_write_round_trip(void)
{
    for (int channels = 1; channels <= 3; channels += 2) {
        const int h = 6, w = 6;
        const size_t n = (size_t)channels * h * w;
        float *px = floats(n), *got = floats(n);
        sr_test_uniform(40u + (unsigned)channels, 0.0f, 1.0f, n, px);
        px[0] = -0.5f, px[1] = 1.5f, px[2] = NAN, px[3] = 1.0f, px[4] = 0.0f; /* clamped */
        char name[64];
        snprintf(name, sizeof name, "written_%d.png", channels);
        PATH(path, name);
        CU_ASSERT_EQUAL_FATAL(sr_png_write(path, px, channels, h, w, err, sizeof err), 0);
        sr_png_header hd;
        CU_ASSERT_EQUAL_FATAL(sr_png_read_header(path, &hd, err, sizeof err), 0);
        CU_ASSERT(hd.width == w && hd.height == h && hd.channels == channels && hd.bit_depth == 8 && !hd.interlaced);
        CU_ASSERT_EQUAL_FATAL(load(path, channels, 6, got), 0);
        CU_ASSERT(got[0] == 0.0f && got[1] == 1.0f && got[2] == 0.0f && got[3] == 1.0f && got[4] == 0.0f);
        double worst = 0;
        for (size_t i = 5; i < n; i++) worst = fmax(worst, fabs((double)got[i] - px[i]));
        printf("\n    %d channel(s): max |decoded - written| = %.3g (bound 0.5/255 = %.3g)", channels, worst,
               0.5 / 255);
        CU_ASSERT(worst <= 0.5 / 255 + 1e-7);
        /* libpng's own reader sees round(255 v), interleaved */
        png_byte bytes[108];
        CU_ASSERT_EQUAL_FATAL(read_simple(path, channels, bytes, sizeof bytes), 0);
        int bad = 0;
        for (int i = 5; i < h * w * channels; i++) {
            const int c = i % channels, p = i / channels;
            bad += bytes[i] != (png_byte)lround(255.0 * px[(size_t)c * h * w + (size_t)p]);
        }
        CU_ASSERT_EQUAL(bad, 0);
        free(px);
        free(got);
    }

    /* not square: 4 x 7 (height x width), read back as the centred 4 x 4 */
    float px[3 * 28], got[3 * 16];
    sr_test_uniform(44, 0.0f, 1.0f, 3 * 28, px);
    PATH(path, "written_4x7.png");
    CU_ASSERT_EQUAL_FATAL(sr_png_write(path, px, 3, 4, 7, err, sizeof err), 0);
    sr_png_header hd;
    CU_ASSERT_EQUAL_FATAL(sr_png_read_header(path, &hd, err, sizeof err), 0);
    CU_ASSERT(hd.width == 7 && hd.height == 4 && hd.channels == 3);
    CU_ASSERT_EQUAL_FATAL(load(path, 3, 4, got), 0);
    double worst = 0;
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < 4; y++)
            for (int x = 0; x < 4; x++)
                worst = fmax(worst, fabs((double)got[c * 16 + y * 4 + x] - px[c * 28 + y * 7 + x + 1]));
    CU_ASSERT(worst <= 0.5 / 255 + 1e-7);

    /* no temporary file is left behind */
    DIR *d = opendir(dir);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    int tmps = 0;
    for (struct dirent *e; (e = readdir(d));) tmps += strstr(e->d_name, ".tmp.") != NULL;
    closedir(d);
    CU_ASSERT_EQUAL(tmps, 0);

    /* refusals */
    CU_ASSERT_EQUAL(sr_png_write("/nonexistent-dir/x.png", px, 3, 4, 7, err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "cannot create /nonexistent-dir/x.png.tmp."));
    CU_ASSERT_EQUAL(sr_png_write(path, px, 2, 4, 7, err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "cannot write 2 channels"));
    CU_ASSERT_EQUAL(sr_png_write(path, px, 3, 0, 7, err, sizeof err), -1);
}

/* ---- damaged and hostile files ------------------------------------------ */

typedef struct {
    unsigned char *b;
    size_t n;
} bytes;

static bytes read_all(const char *path)
{
    bytes r = {0};
    FILE *f = fopen(path, "rb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fseek(f, 0, SEEK_END);
    r.n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    r.b = malloc(r.n);
    CU_ASSERT_FATAL(fread(r.b, 1, r.n, f) == r.n);
    fclose(f);
    return r;
}

static void write_all(const char *path, const unsigned char *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_FATAL(fwrite(b, 1, n, f) == n);
    fclose(f);
}

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16), p[2] = (unsigned char)(v >> 8),
    p[3] = (unsigned char)v;
}

/* The offset of the nth chunk of this type (its length field), or 0. */
static size_t find_chunk(const bytes *f, const char *type, int nth)
{
    for (size_t at = 8; at + 12 <= f->n; at += 12 + get32(f->b + at))
        if (!memcmp(f->b + at + 4, type, 4) && nth-- == 0) return at;
    return 0;
}

/* Recomputes a chunk's CRC over its type and data. */
static void fix_crc(bytes *f, size_t at)
{
    const uint32_t len = get32(f->b + at);
    put32(f->b + at + 8 + len, (uint32_t)crc32(0L, f->b + at + 4, len + 4));
}

/* stderr goes to a file while libpng might print; returns what was printed. */
static int stderr_fd = -1;
static char stderr_path[600];

static void capture_stderr(void)
{
    snprintf(stderr_path, sizeof stderr_path, "%s/stderr.txt", dir);
    fflush(stderr);
    stderr_fd = dup(2);
    const int fd = open(stderr_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fd, 2);
    close(fd);
}

static long release_stderr(void)
{
    fflush(stderr);
    dup2(stderr_fd, 2);
    close(stderr_fd);
    struct stat st;
    const long size = stat(stderr_path, &st) == 0 ? (long)st.st_size : -1;
    remove(stderr_path);
    return size;
}

/* Loading is refused with a message naming the file and holding `want`; the
 * header is refused too unless header_ok (damage in the image data only). */
static void expect_bad(const char *path, const char *want, bool header_ok)
{
    float out[3 * 16];
    err[0] = '\0';
    const int rc = sr_png_load(path, 3, 4, BIG_MAX_PIXELS, out, err, sizeof err);
    printf("\n    %s", err);
    CU_ASSERT_EQUAL(rc, -1);
    const bool has = strstr(err, want) && strstr(err, path) && !strchr(err, '\n');
    if (!has) printf("\n    expected \"%s\" and the path, one line", want);
    CU_ASSERT(has);
    sr_png_header h;
    char herr[1024] = "";
    const int hrc = sr_png_read_header(path, &h, herr, sizeof herr);
    CU_ASSERT_EQUAL(hrc, header_ok ? 0 : -1);
    if (!header_ok) CU_ASSERT(strstr(herr, path) != NULL);
}

/* A valid 16 x 16 RGB file to damage. */
static bytes good_file(const char *name, const wopts *o, int type)
{
    image im = make_image(16, 16, type, 8);
    PATH(path, name);
    write_image(path, &im, o);
    image_free(&im);
    return read_all(path);
}

/* Bad CRC: a stored (level 0), unfiltered stream in 64-byte IDATs, all
 * samples 0xA5; one sample byte of the first IDAT flipped. zlib cannot see
 * it (stored data; its checksum comes at the end): the IDAT's CRC must. */
static void write_bad_crc(const char *path)
{
    image im = make_image(32, 32, PNG_COLOR_TYPE_GRAY, 8);
    for (int i = 0; i < 32 * 32; i++) im.s[i] = 0xA5;
    write_image(path, &im, &(wopts){.level = 0, .idat_size = 64, .no_filter = true});
    image_free(&im);
    bytes f = read_all(path);
    const size_t at = find_chunk(&f, "IDAT", 0);
    CU_ASSERT_FATAL(at > 0 && find_chunk(&f, "IDAT", 1) > 0);
    unsigned char *data = f.b + at + 8;
    size_t flip = 0;
    for (size_t i = 8; i + 1 < get32(f.b + at) && !flip; i++)
        if (data[i - 1] == 0xA5 && data[i] == 0xA5 && data[i + 1] == 0xA5) flip = i;
    CU_ASSERT_FATAL(flip > 0);
    data[flip] ^= 0xFF;
    write_all(path, f.b, f.n);
    free(f.b);
}

static void test_damaged_files(void)
{
    capture_stderr();

    /* truncated: cut in the middle of the (only) IDAT */
    bytes f = good_file("cut.png", &plain, PNG_COLOR_TYPE_RGB);
    size_t at = find_chunk(&f, "IDAT", 0);
    CU_ASSERT_FATAL(at > 0);
    PATH(cut, "cut.png");
    write_all(cut, f.b, at + 8 + get32(f.b + at) / 2);
    expect_bad(cut, "truncated", true);
    /* the last IDAT complete but no IEND */
    const size_t iend = find_chunk(&f, "IEND", 0);
    CU_ASSERT_FATAL(iend > 0);
    PATH(noend, "no_iend.png");
    write_all(noend, f.b, iend);
    expect_bad(noend, "truncated", true);
    free(f.b);

    /* bad CRC */
    PATH(crc, "bad_crc.png");
    write_bad_crc(crc);
    expect_bad(crc, "IDAT: CRC error", true);

    /* corrupt zlib data under a valid CRC: a zlib header, then garbage */
    f = good_file("zlib.png", &plain, PNG_COLOR_TYPE_RGB);
    at = find_chunk(&f, "IDAT", 0);
    const uint32_t len = get32(f.b + at);
    for (uint32_t i = 2; i < len; i++) f.b[at + 8 + i] = (unsigned char)(0xFF - i * 7);
    fix_crc(&f, at);
    PATH(zl, "zlib.png");
    write_all(zl, f.b, f.n);
    expect_bad(zl, "IDAT: invalid", true);
    free(f.b);

    /* IHDR: zero width, zero height (valid CRCs), a wrong CRC, an
     * impossible bit depth (RGB at 4 bits, libpng's own refusal) */
    f = good_file("ihdr.png", &plain, PNG_COLOR_TYPE_RGB);
    const struct {
        const char *name, *want;
        int offset, width; /* the field's place in the file and its bytes */
        uint32_t value;
        bool crc; /* recompute the CRC */
    } ihdr[] = {{"zero_width.png", "zero width", 16, 4, 0, true},
                {"zero_height.png", "zero height", 20, 4, 0, true},
                {"ihdr_crc.png", "IHDR: CRC error", 16, 4, 17, false},
                {"rgb4.png", "Invalid IHDR data", 24, 1, 4, true}}; /* bit depth 4 */
    for (size_t i = 0; i < sizeof ihdr / sizeof *ihdr; i++) {
        bytes g = {malloc(f.n), f.n};
        memcpy(g.b, f.b, f.n);
        if (ihdr[i].width == 4)
            put32(g.b + ihdr[i].offset, ihdr[i].value);
        else
            g.b[ihdr[i].offset] = (unsigned char)ihdr[i].value;
        if (ihdr[i].crc) fix_crc(&g, 8);
        PATH(p, ihdr[i].name);
        write_all(p, g.b, g.n);
        expect_bad(p, ihdr[i].want, false);
        free(g.b);
    }
    free(f.b);

    /* not a PNG, empty, missing, a folder, only half a signature */
    PATH(text, "text.png");
    write_all(text, (const unsigned char *)"hello, I am not an image\n", 25);
    expect_bad(text, "is not a PNG file (bad signature)", false);
    PATH(empty, "empty.png");
    write_all(empty, (const unsigned char *)"", 0);
    expect_bad(empty, "is not a PNG file (it is empty)", false);
    PATH(missing, "missing.png");
    expect_bad(missing, "cannot open", false);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "No such file or directory"));
    expect_bad(dir, "is a folder", false);
    PATH(half, "half_signature.png");
    write_all(half, (const unsigned char *)"\x89PNG", 4);
    expect_bad(half, "truncated", false);

    CU_ASSERT_EQUAL(release_stderr(), 0); /* libpng printed nothing */
}

/* IHDR claiming 100000 x 100000 RGB with a valid CRC and nothing after it. */
static void write_enormous(const char *path)
{
    unsigned char b[33] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R'};
    put32(b + 16, 100000);
    put32(b + 20, 100000);
    b[24] = 8, b[25] = PNG_COLOR_TYPE_RGB; /* compression, filter, interlace: 0 */
    put32(b + 29, (uint32_t)crc32(0L, b + 12, 17));
    write_all(path, b, sizeof b);
}

static void test_enormous_refused(void)
{
    PATH(path, "enormous.png");
    write_enormous(path);
    float out[3];
    capture_stderr();
    /* max_pixels decides from the IHDR alone: the file has no image data,
     * so any other message would show the check came too late */
    CU_ASSERT_EQUAL(sr_png_load(path, 3, 1, BIG_MAX_PIXELS, out, err, sizeof err), -1);
    printf("\n    %s", err);
    char want[700];
    snprintf(want, sizeof want, "%s is 100000 x 100000 = 10000000000 pixels, more than max_pixels = 100000000 "
             "(dataset.max_pixels)", path);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, want));
    /* with a limit above it, decoding starts and stops at the missing data,
     * before allocating 10^10 pixels (the sanitizers would report that) */
    CU_ASSERT_EQUAL(sr_png_load(path, 3, 1, 20000000000L, out, err, sizeof err), -1);
    printf("\n    %s", err);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "truncated"));
    /* one pixel over the limit is refused, at the limit it is not (a 3 x 3
     * file, limit 8 and 9) */
    image im = make_image(3, 3, PNG_COLOR_TYPE_GRAY, 8);
    PATH(small, "nine_pixels.png");
    write_image(small, &im, &plain);
    image_free(&im);
    float px[9];
    CU_ASSERT_EQUAL(sr_png_load(small, 1, 3, 8, px, err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "3 x 3 = 9 pixels, more than max_pixels = 8"));
    CU_ASSERT_EQUAL(sr_png_load(small, 1, 3, 9, px, err, sizeof err), 0);
    /* the header of the enormous file: the IHDR is fine, the data missing */
    sr_png_header h;
    CU_ASSERT_EQUAL(sr_png_read_header(path, &h, err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "truncated"));
    CU_ASSERT_EQUAL(release_stderr(), 0);
    /* bad arguments */
    CU_ASSERT_EQUAL(sr_png_load(small, 2, 3, 9, px, err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "cannot make 2 channels"));
    CU_ASSERT_EQUAL(sr_png_load(small, 1, 0, 9, px, err, sizeof err), -1);
}

/* ---- threads ------------------------------------------------------------ */

/* Two OpenMP threads decode different files at once, over and over; one of
 * them also meets a damaged file each round (libpng's error path, longjmp
 * included, under concurrency). */
static void test_two_threads(void)
{
    image a = make_image(50, 50, PNG_COLOR_TYPE_GRAY, 8);
    image b = make_image(41, 41, PNG_COLOR_TYPE_RGB, 16);
    PATH(pa, "thread_a.png");
    PATH(pb, "thread_b.png");
    write_image(pa, &a, &plain);
    write_image(pb, &b, &(wopts){.interlaced = true, .level = -1});
    float *wa = floats(2500), *wb = floats(3 * 1681);
    expect_square(&a, 1, 0, 0, 50, wa);
    expect_square(&b, 3, 0, 0, 41, wb);
    PATH(bad, "thread_bad_crc.png");
    write_bad_crc(bad);
    const int rounds = 40;
    int wrong[2] = {0, 0}, threads = 0;
    capture_stderr();
#pragma omp parallel num_threads(2)
    {
        const int t = omp_get_thread_num();
#pragma omp single
        threads = omp_get_num_threads();
        const int n = t == 0 ? 2500 : 3 * 1681;
        float *got = floats((size_t)n);
        char msg[1024];
        for (int r = 0; r < rounds; r++) {
            const char *p = t == 0 ? pa : pb;
            if (sr_png_load(p, t == 0 ? 1 : 3, t == 0 ? 50 : 41, BIG_MAX_PIXELS, got, msg, sizeof msg) != 0 ||
                memcmp(got, t == 0 ? wa : wb, sizeof(float) * (size_t)n) != 0)
                wrong[t]++;
            if (t == 1 && (sr_png_load(bad, 1, 8, BIG_MAX_PIXELS, got, msg, sizeof msg) != -1 ||
                           !strstr(msg, "IDAT: CRC error") || !strstr(msg, bad)))
                wrong[t]++;
        }
        free(got);
    }
    CU_ASSERT_EQUAL(release_stderr(), 0);
    CU_ASSERT_EQUAL(threads, 2);
    CU_ASSERT_EQUAL(wrong[0], 0);
    CU_ASSERT_EQUAL(wrong[1], 0);
    free(wa);
    free(wb);
    image_free(&a);
    image_free(&b);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/semrep_test_png_XXXXXX");
    sr_test_temp_dir(dir);
    const sr_test tests[] = {
        {"every colour type and bit depth, exact", test_every_type_exact},
        {"alpha is dropped, not composited", test_alpha_dropped},
        {"Adam7 decodes as the plain file", test_interlaced_equals_plain},
        {"centre crop offsets", test_centre_crop},
        {"shrink 8 -> 4 is 2 x 2 block means", test_shrink_by_two},
        {"shrink 6 -> 4 and 5 -> 3 with hand box weights", test_shrink_fractional},
        {"enlarge 2 -> 4 and 3 -> 5 bilinear by hand", test_enlarge_bilinear},
        {"a constant image stays constant at any size", test_constant_stays},
        {"channels: luma 3 -> 1, replication 1 -> 3", test_channel_conversion},
        {"sr_png_write round trip", test_write_round_trip},
        {"damaged files refused with their reason", test_damaged_files},
        {"enormous IHDR refused by max_pixels", test_enormous_refused},
        {"two threads at once", test_two_threads},
        {NULL, NULL},
    };
    const int rc = sr_test_run("png", tests);
    sr_test_remove_tree(dir);
    return rc;
}
