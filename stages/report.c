/* Stage report: a self-contained folder, <output_dir>/report/index.html,
 * that a person opens in a browser (relative links, no network): provenance,
 * the denoiser's PSNR table and training curve, and for each sigma the
 * clusters as picture grids (the members nearest each centre, biggest
 * clusters first), neighbour rows, the participation-ratio histograms per
 * block, channel activity with the selective and non-selective channels
 * marked, the active-set sizes, and phi's measures and linear probe beside
 * the pixels'. Plots are drawn by gnuplot; every table is also a CSV file beside the page. The
 * folder is built under a temporary name and renamed into place. Rank 0
 * does the work; the report is small. */
#define _GNU_SOURCE
#include <math.h>
#include <netcdf.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/check.h"
#include "io/checkpoint.h"
#include "io/files.h"
#include "io/nc.h"
#include "io/outdir.h"
#include "io/png_image.h"
#include "io/text_escape.h"
#include "stages/data.h"
#include "stages/model.h"
#include "stages/phi_file.h"
#include "stages/recon_file.h"
#include "stages/stage.h"

#include "stages/report_page.h"

#define GRID_CLUSTERS 20 /* clusters shown per grid, biggest first */
#define NEIGHBOUR_ROWS 8
#define MAX_K 100000     /* cluster.k's most (docs/conf.md) */

void html(report *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(r->html, fmt, ap);
    va_end(ap);
}

void escaped(report *r, const char *text) { sr_html_text(r->html, text); }

static int file_exists(const char *dir, const char *name, char *path, size_t len)
{
    snprintf(path, len, "%s/%s", dir, name);
    return access(path, R_OK) == 0;
}

void nc_path(int ncid, char *path, size_t len)
{
    size_t n = 0;
    if (nc_inq_path(ncid, &n, NULL) != NC_NOERR || n >= len || nc_inq_path(ncid, &n, path) != NC_NOERR)
        snprintf(path, len, "a NetCDF file of the output folder");
}

/* The values a variable holds, all of them, or the whole read would run
 * past `count`: a file whose variable and dimensions disagree is refused. */
double *var_doubles(int ncid, const char *name, size_t count)
{
    int var, rank, dims[NC_MAX_VAR_DIMS];
    double *v = SR_CALLOC(count ? count : 1, sizeof(double), name);
    char path[SR_PATH_MAX];
    if (nc_inq_varid(ncid, name, &var) != NC_NOERR) return v;
    nc_path(ncid, path, sizeof path);
    size_t held = 1, len;
    SR_NC(nc_inq_var(ncid, var, NULL, NULL, &rank, dims, NULL), path);
    for (int d = 0; d < rank; d++) {
        SR_NC(nc_inq_dimlen(ncid, dims[d], &len), path);
        held = len && held > SIZE_MAX / len ? SIZE_MAX : held * len;
    }
    if (held != count)
        SR_FAIL("%s: %s holds %zu values where its dimensions say %zu; make the file again (delete it and run "
                "semrep run)", path, name, held, count);
    SR_NC(nc_get_var_double(ncid, var, v), path);
    return v;
}

int var_of_rank(int ncid, const char *name, int rank)
{
    int var, have;
    char path[SR_PATH_MAX];
    if (nc_inq_varid(ncid, name, &var) != NC_NOERR) return -1;
    nc_path(ncid, path, sizeof path);
    SR_NC(nc_inq_varndims(ncid, var, &have), path);
    if (have != rank)
        SR_FAIL("%s: %s has %d dimensions, not %d; make it again (delete it and run semrep run)", path, name, have,
                rank);
    return var;
}

int *k_values(int ncid, size_t *count)
{
    char path[SR_PATH_MAX];
    const size_t clusters = dim_len(ncid, "cluster"), most = clusters < MAX_K ? clusters : MAX_K;
    double *k = var_doubles(ncid, "k", *count = dim_len(ncid, "k"));
    int *ks = SR_MALLOC(sizeof(int) * (*count ? *count : 1), "the K values");
    for (size_t q = 0; q < *count; q++) {
        if (!(k[q] >= 1 && k[q] <= (double)most)) {
            nc_path(ncid, path, sizeof path);
            SR_FAIL("%s: k holds %.0f, not a number of clusters from 1 to %zu; make it again (delete it and run "
                    "semrep run)", path, k[q], most);
        }
        ks[q] = (int)k[q];
    }
    free(k);
    return ks;
}

size_t dim_len(int ncid, const char *name)
{
    int d;
    size_t len = 0;
    if (nc_inq_dimid(ncid, name, &d) == NC_NOERR) nc_inq_dimlen(ncid, d, &len);
    return len;
}

/* A table, both in the page and as tables/NAME.csv. cells: rows x cols strings. */
void table(report *r, const char *name, const char *caption, int rows, int cols, char (*cells)[48])
{
    char path[SR_PATH_MAX + 128];
    snprintf(path, sizeof path, "%s/tables/%s.csv", r->dir, name);
    FILE *csv = fopen(path, "w");
    SR_CHECK_WRITE(csv, path);
    html(r, "<table><caption>");
    escaped(r, caption);
    html(r, " (<a href=\"tables/%s.csv\">CSV</a>)</caption>\n", name);
    for (int i = 0; i < rows; i++) {
        html(r, "<tr>");
        for (int j = 0; j < cols; j++) {
            html(r, i ? "<td>" : "<th>");
            escaped(r, cells[i * cols + j]);
            html(r, i ? "</td>" : "</th>");
            if (j) fputc(',', csv);
            sr_csv_field(csv, cells[i * cols + j]);
        }
        html(r, "</tr>\n");
        fputc('\n', csv);
    }
    html(r, "</table>\n");
    SR_CHECK_WRITE(fclose(csv) == 0, path);
}

/* gnuplot, run in the plots folder (so its script names files by their
 * short names), draws plots/NAME.png; the page shows it. */
void plot(report *r, const char *name, const char *alt, const char *script)
{
    char dir[SR_PATH_MAX + 80], gp[SR_PATH_MAX + 128], log[SR_PATH_MAX + 128], script_name[96];
    snprintf(dir, sizeof dir, "%s/plots", r->dir);
    snprintf(gp, sizeof gp, "%s/%s.gp", dir, name);
    snprintf(script_name, sizeof script_name, "%s.gp", name);
    snprintf(log, sizeof log, "%s/%s.log", dir, name);
    FILE *f = fopen(gp, "w");
    SR_CHECK_WRITE(f, gp);
    /* noenhanced: titles are shown as they are, not read as markup */
    fprintf(f, "set terminal pngcairo size 640,360 font 'sans,9' noenhanced\nset output '%s.png'\nset grid\n%s\n", name,
            script);
    SR_CHECK_WRITE(fclose(f) == 0, gp);
    const pid_t pid = fork();
    SR_CHECK(pid >= 0, "cannot start gnuplot: out of processes");
    if (pid == 0) {
        const int out = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (chdir(dir) != 0 || out < 0 || dup2(out, 2) < 0) _exit(126);
        execlp("gnuplot", "gnuplot", script_name, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) { /* its log goes with the temporary folder: quote its last line */
        char said[256] = "", line[256];
        FILE *l = fopen(log, "r");
        while (l && fgets(line, sizeof line, l))
            if (line[strspn(line, " \t\n")]) snprintf(said, sizeof said, "%.*s", (int)strcspn(line, "\n"), line);
        if (l) fclose(l);
        SR_FAIL("gnuplot could not draw %s (%s); install Debian's gnuplot-nox", name,
                WIFEXITED(status) && WEXITSTATUS(status) == 127 ? "gnuplot is not installed" : said[0] ? said : "no message");
    }
    html(r, "<figure><img src=\"plots/%s.png\" alt=\"", name);
    sr_html_attr(r->html, alt);
    html(r, "\"><figcaption>");
    escaped(r, alt);
    html(r, "</figcaption></figure>\n");
}

/* plots/NAME.dat; `path` gets the name gnuplot, in that folder, uses. */
FILE *data_file(report *r, const char *name, char *path, size_t len)
{
    char full[2 * SR_PATH_MAX];
    snprintf(full, sizeof full, "%s/plots/%s.dat", r->dir, name);
    snprintf(path, len, "%s.dat", name);
    FILE *f = fopen(full, "w");
    SR_CHECK_WRITE(f, full);
    return f;
}

/* An image of the data set as images/<position>.png, once. */
static void thumbnail(report *r, long position)
{
    if (r->thumb_done[position]) return;
    const int c = r->ds->channels, s = r->ds->size;
    float *img = SR_MALLOC(sizeof(float) * (size_t)c * s * s, "a thumbnail");
    char path[SR_PATH_MAX + 128];
    if (sr_dataset_read(r->ds, position, 1, img, r->err, sizeof r->err)) SR_FAIL("%s", r->err);
    snprintf(path, sizeof path, "%s/images/%ld.png", r->dir, position);
    if (sr_png_write(path, img, c, s, s, r->err, sizeof r->err)) SR_FAIL("%s", r->err);
    free(img);
    r->thumb_done[position] = 1;
}

void image_cell(report *r, long position, const char *title)
{
    if (position < 0 || position >= r->images) return; /* not an image of this data set */
    thumbnail(r, position);
    char name[SR_NAME_MAX];
    sr_dataset_name(r->ds, position, name, sizeof name);
    html(r, "<img class=\"t\" src=\"images/%ld.png\" title=\"", position);
    sr_html_attr(r->html, title);
    html(r, " ");
    sr_html_attr(r->html, name);
    html(r, "\">");
}

/* A table cell holding `text`, cut at a character (not inside a UTF-8
 * sequence) and marked "..." when it does not fit. */
static void cell_text(char cell[48], const char *text)
{
    size_t n = strlen(text);
    if (n < 48) {
        memcpy(cell, text, n + 1);
        return;
    }
    n = 44;
    while (n > 0 && ((unsigned char)text[n] & 0xC0) == 0x80) n--;
    snprintf(cell, 48, "%.*s...", (int)n, text);
}

/* The classes of a labelled data set: each label's name and its images in this run. */
static void classes(report *r)
{
    const sr_dataset *ds = r->ds;
    if (ds->nclasses < 1 || !ds->labels) return;
    long *count = SR_CALLOC((size_t)ds->nclasses, sizeof(long), "the classes' counts");
    char (*cells)[48] = SR_CALLOC((size_t)(ds->nclasses + 1) * 3, 48, "the table of classes");
    for (long i = 0; i < ds->count; i++) {
        const int label = sr_dataset_label(ds, i);
        if (label >= 0 && label < ds->nclasses) count[label]++;
    }
    snprintf(cells[0], 48, "label"), snprintf(cells[1], 48, "class"), snprintf(cells[2], 48, "images");
    for (int c = 0; c < ds->nclasses; c++) {
        snprintf(cells[(c + 1) * 3], 48, "%d", c);
        cell_text(cells[(c + 1) * 3 + 1], ds->class_names[c]);
        snprintf(cells[(c + 1) * 3 + 2], 48, "%ld", count[c]);
    }
    html(r, "<details><summary>the %d classes</summary>\n", ds->nclasses); /* folded: ImageNet has 1000 */
    table(r, "classes", "each label's class name and its images in this run", ds->nclasses + 1, 3, cells);
    html(r, "</details>\n");
    free(count), free(cells);
}

static void provenance(report *r, const char *model, double seconds)
{
    const semrep_conf *c = r->conf;
    sr_checkpoint_info info;
    time_t now = time(NULL);
    char when[64];
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", gmtime(&now));
    html(r, "<h1>semrep report</h1>\n<p>Made %s from <code>", when);
    escaped(r, c->source[0] ? c->source : "(defaults)");
    html(r, "</code>; output folder <code>");
    escaped(r, c->output_dir);
    html(r, "</code>; phi.nc was written %.0f s before this report.</p>\n<ul>\n", seconds);
    if (!sr_checkpoint_read_info(model, &info, r->err, sizeof r->err)) {
        char k[128];
        sr_format_ints(info.shape.kernels, info.shape.levels + 1, k, sizeof k);
        html(r, "<li>model <code>");
        escaped(r, model);
        html(r, "</code>: kernels %s, %lld parameters, checksum ", k, info.parameters);
        escaped(r, info.checksum);
        html(r, "</li>\n");
    }
    html(r, "<li>data: ");
    escaped(r, r->ds->description);
    html(r, ", %ld images used</li>\n</ul>\n", r->ds->count);
    classes(r);
    html(r, "<details><summary>the conf</summary><pre>");
    escaped(r, c->text);
    html(r, "</pre></details>\n");
}

/* Columns x and y of n points as plots/NAME.dat; its name in dat. */
static void xy_file(report *r, const char *name, const double *x, const double *y, size_t n, char *dat, size_t len)
{
    FILE *f = data_file(r, name, dat, len);
    for (size_t i = 0; i < n; i++) fprintf(f, "%g %g\n", x[i], y[i]);
    SR_CHECK_WRITE(fclose(f) == 0, dat);
}

/* The training curve, this run's or the one shipped beside the model, with
 * its held-out losses where it has them. */
static void training_curve(report *r, const char *model)
{
    char path[SR_PATH_MAX + 64], shipped[SR_PATH_MAX + 64], dat[2 * SR_PATH_MAX], held[2 * SR_PATH_MAX],
        script[5 * SR_PATH_MAX];
    int ncid;
    snprintf(shipped, sizeof shipped, "%.*s.curve.nc", (int)(strlen(model) > 3 ? strlen(model) - 3 : strlen(model)),
             model);
    if (!file_exists(r->conf->output_dir, "train-curve.nc", path, sizeof path)) snprintf(path, sizeof path, "%s", shipped);
    if (nc_open(path, NC_NOWRITE, &ncid) != NC_NOERR) return;
    const size_t n = dim_len(ncid, "point"), m = dim_len(ncid, "evaluation");
    double *step = var_doubles(ncid, "step", n), *loss = var_doubles(ncid, "loss", n);
    double *hstep = var_doubles(ncid, "heldout_step", m), *hloss = var_doubles(ncid, "heldout_loss", m);
    nc_close(ncid);
    xy_file(r, "curve", step, loss, n, dat, sizeof dat);
    if (m) xy_file(r, "heldout", hstep, hloss, m, held, sizeof held);
    const int at = snprintf(script, sizeof script,
                            "set xlabel 'step'\nset ylabel 'loss (sum over pixels, mean over images)'\n"
                            "set logscale y\nplot '%s' using 1:2 with lines title 'training loss'", dat);
    if (m) snprintf(script + at, sizeof script - (size_t)at, ", '%s' using 1:2 with linespoints title 'held-out loss'", held);
    plot(r, "curve", m ? "training curve, with the held-out loss" : "training curve", script);
    free(step), free(loss), free(hstep), free(hloss);
}

static void denoiser(report *r, const char *model)
{
    char path[SR_PATH_MAX + 64], dat[2 * SR_PATH_MAX], script[3 * SR_PATH_MAX];
    int ncid;
    html(r, "<h2>The denoiser</h2>\n");
    if (file_exists(r->conf->output_dir, "denoise.nc", path, sizeof path) && nc_open(path, NC_NOWRITE, &ncid) == NC_NOERR) {
        const size_t n = dim_len(ncid, "sigma");
        double *sig = var_doubles(ncid, "sigma", n), *in = var_doubles(ncid, "input_psnr", n),
               *out = var_doubles(ncid, "output_psnr", n);
        nc_close(ncid);
        char (*cells)[48] = SR_CALLOC((n + 1) * 3, 48, "the table of PSNRs");
        snprintf(cells[0], 48, "sigma (of 255)"), snprintf(cells[1], 48, "input PSNR (dB)"),
            snprintf(cells[2], 48, "output PSNR (dB)");
        FILE *f = data_file(r, "psnr", dat, sizeof dat);
        for (size_t i = 0; i < n; i++) {
            snprintf(cells[(i + 1) * 3], 48, "%.0f", sig[i] * 255.0);
            snprintf(cells[(i + 1) * 3 + 1], 48, "%.2f", in[i]);
            snprintf(cells[(i + 1) * 3 + 2], 48, "%.2f", out[i]);
            fprintf(f, "%g %g\n", in[i], out[i]);
        }
        SR_CHECK_WRITE(fclose(f) == 0, dat);
        table(r, "psnr", "PSNR of the noisy input and of D(input), held-out images", (int)n + 1, 3, cells);
        snprintf(script, sizeof script,
                 "set xlabel 'input PSNR (dB)'\nset ylabel 'output PSNR (dB)'\nset key left\n"
                 "plot '%s' using 1:2 with linespoints title 'D', x title 'identity' dashtype 2",
                 dat);
        plot(r, "psnr", "output against input PSNR", script);
        free(cells), free(sig), free(in), free(out);
    }
    training_curve(r, model);
}

/* stats.nc at sigma index s: PR histograms, channel activity, set sizes. */
static void statistics(report *r, int ncid, int s, const char *label)
{
    char dat[2 * SR_PATH_MAX], script[4 * SR_PATH_MAX], name[64];
    const size_t S = dim_len(ncid, "sigma"), K = dim_len(ncid, "channel"), B = dim_len(ncid, "block"),
                 bins = dim_len(ncid, "bin");
    double *hist = var_doubles(ncid, "pr_hist", S * B * bins), *share = var_doubles(ncid, "active_share", S * K);
    double *kind = var_doubles(ncid, "kind", S * K), *sizes = var_doubles(ncid, "set_sizes", S * (K + 1));
    char blocks[1024] = "";
    int var;
    if (nc_inq_varid(ncid, "pr_hist", &var) == NC_NOERR) sr_nc_get_text(ncid, var, "blocks", blocks, sizeof blocks);
    if (blocks[0]) {
        snprintf(name, sizeof name, "pr_%d", s);
        FILE *f = data_file(r, name, dat, sizeof dat);
        for (size_t j = 0; j < bins; j++) {
            fprintf(f, "%g", (j + 0.5) / bins);
            for (size_t b = 0; b < B; b++) fprintf(f, " %g", hist[((size_t)s * B + b) * bins + j]);
            fprintf(f, "\n");
        }
        SR_CHECK_WRITE(fclose(f) == 0, dat);
        /* the block names come from the file: gnuplot strings, never commands */
        char *pr = NULL;
        size_t len = 0;
        FILE *m = open_memstream(&pr, &len);
        SR_CHECK(m, "out of memory for the plot %s", name);
        fputs("set xlabel 'normalised participation ratio (small: sparse)'\nset ylabel 'images'\nplot", m);
        char *save = NULL, *tok = strtok_r(blocks, ",", &save);
        for (size_t b = 0; b < B && tok; b++, tok = strtok_r(NULL, ",", &save)) {
            fprintf(m, "%s '%s' using 1:%zu with lines title ", b ? "," : "", dat, b + 2);
            sr_gnuplot_string(m, tok);
        }
        SR_CHECK(fclose(m) == 0, "out of memory for the plot %s", name);
        char alt[128];
        snprintf(alt, sizeof alt, "participation ratio of each block's channel means, %s", label);
        plot(r, name, alt, pr);
        free(pr);
    }
    /* channels by active share, the kinds apart */
    snprintf(name, sizeof name, "channels_%d", s);
    FILE *f = data_file(r, name, dat, sizeof dat);
    int *order = SR_MALLOC(sizeof(int) * K, "channel order");
    for (size_t c = 0; c < K; c++) order[c] = (int)c;
    for (size_t a = 1; a < K; a++) /* insertion sort, by share descending */
        for (size_t b = a; b > 0 && share[s * K + order[b]] > share[s * K + order[b - 1]]; b--) {
            const int t = order[b];
            order[b] = order[b - 1];
            order[b - 1] = t;
        }
    for (size_t c = 0; c < K; c++) fprintf(f, "%zu %g %g\n", c, share[s * K + order[c]], kind[s * K + order[c]]);
    SR_CHECK_WRITE(fclose(f) == 0, dat);
    snprintf(script, sizeof script,
             "set xlabel 'middle-block channel, by share of images where active'\nset ylabel 'share of images'\n"
             "set yrange [0:1]\nset style fill solid\nset boxwidth 0.8\n"
             "plot '%s' using 1:($3==1?$2:1/0) with boxes lc rgb '#d95f02' title 'non-selective', "
             "'' using 1:($3==0?$2:1/0) with boxes lc rgb '#1b9e77' title 'selective', "
             "'' using 1:($3==2?0.01:1/0) with boxes lc rgb '#999999' title 'never active'", dat);
    char alt[128];
    snprintf(alt, sizeof alt, "channel activity, %s", label);
    plot(r, name, alt, script);
    snprintf(name, sizeof name, "sets_%d", s);
    f = data_file(r, name, dat, sizeof dat);
    for (size_t k = 0; k <= K; k++) fprintf(f, "%zu %g\n", k, sizes[s * (K + 1) + k]);
    SR_CHECK_WRITE(fclose(f) == 0, dat);
    snprintf(script, sizeof script,
             "set xlabel 'active channels'\nset ylabel 'images'\nset style fill solid\nset boxwidth 0.8\n"
             "plot '%s' using 1:2 with boxes title 'active-set sizes'", dat);
    snprintf(alt, sizeof alt, "active-set sizes, %s", label);
    plot(r, name, alt, script);
    free(order), free(hist), free(share), free(kind), free(sizes);
}

/* clusters.nc at sigma index s, for the first K: grids and neighbour rows. */
static void grids(report *r, int ncid, int s, const char *label)
{
    const size_t m = dim_len(ncid, "member"), n = dim_len(ncid, "query"), nn = dim_len(ncid, "neighbour"),
                 mm = m < GRID_MEMBERS ? m : GRID_MEMBERS, mn = nn < GRID_MEMBERS ? nn : GRID_MEMBERS;
    char path[SR_PATH_MAX];
    nc_path(ncid, path, sizeof path);
    size_t nk;
    int *ks = k_values(ncid, &nk), k0 = nk ? ks[0] : 0, var;
    free(ks);
    /* the first K's clusters: their sizes and the members a grid shows */
    int *sizes = SR_CALLOC((size_t)k0 + 1, sizeof(int), "the clusters' sizes");
    long long *members = SR_CALLOC(((size_t)k0 + 1) * (mm ? mm : 1), sizeof(long long), "the clusters' members");
    char *shown = SR_CALLOC((size_t)k0 + 1, 1, "the clusters shown");
    const size_t start[4] = {(size_t)s, 0, 0, 0}, cs[3] = {1, 1, (size_t)k0}, cm[4] = {1, 1, (size_t)k0, mm};
    if (k0 && (var = var_of_rank(ncid, "cluster_size", 3)) >= 0) SR_NC(nc_get_vara_int(ncid, var, start, cs, sizes), path);
    if (k0 && mm && (var = var_of_rank(ncid, "members", 4)) >= 0)
        SR_NC(nc_get_vara_longlong(ncid, var, start, cm, members), path);
    html(r, "<h3>%d clusters, %s: the biggest, each with its images nearest the centre</h3>\n<div class=\"grid\">\n", k0,
         label);
    for (int row = 0; row < GRID_CLUSTERS && row < k0; row++) {
        int best = -1;
        for (int c = 0; c < k0; c++)
            if (!shown[c] && (best < 0 || sizes[c] > sizes[best])) best = c;
        shown[best] = 1;
        html(r, "<div class=\"row\"><span class=\"lab\">cluster %d<br>%d images</span>", best, sizes[best]);
        for (size_t j = 0; j < mm; j++) {
            const long long i = members[(size_t)best * mm + j];
            if (i < 0 || i >= r->images) continue;
            char title[64];
            snprintf(title, sizeof title, "image %lld", i);
            image_cell(r, (long)i, title);
        }
        html(r, "</div>\n");
    }
    html(r, "</div>\n<h3>Nearest neighbours in phi, %s</h3>\n<div class=\"grid\">\n", label);
    int nbr[GRID_MEMBERS];
    var = mn ? var_of_rank(ncid, "neighbours", 3) : -1;
    const int vq = var_of_rank(ncid, "query_index", 1);
    for (long q = 0; var >= 0 && vq >= 0 && q < NEIGHBOUR_ROWS && (size_t)q < n; q++) {
        /* the kept lists are of query_index's images: every image, or a sample */
        const size_t row = (size_t)q * (n / NEIGHBOUR_ROWS);
        long long query = -1;
        SR_NC(nc_get_var1_longlong(ncid, vq, &row, &query), path);
        if (query < 0 || query >= r->images) break;
        const size_t ns[3] = {(size_t)s, row, 0}, nc[3] = {1, 1, mn};
        SR_NC(nc_get_vara_int(ncid, var, ns, nc, nbr), path);
        html(r, "<div class=\"row\"><span class=\"lab\">image %lld<br>and its nearest</span>", query);
        image_cell(r, (long)query, "query");
        html(r, "<span class=\"sep\"></span>");
        for (size_t j = 0; j < mn; j++) {
            char title[64];
            snprintf(title, sizeof title, "neighbour %zu", j + 1);
            image_cell(r, nbr[j], title);
        }
        html(r, "</div>\n");
    }
    html(r, "</div>\n");
    free(shown), free(sizes), free(members);
}

/* phi's measures beside the pixels', for every sigma and K. */
static void measures(report *r, int ncid)
{
    const size_t S = dim_len(ncid, "sigma");
    double *sig = var_doubles(ncid, "sigma", S), *knn = var_doubles(ncid, "knn_accuracy", S * 2);
    const char *names[3] = {"nmi", "purity", "ari"};
    double *v[3], *pv[3], *pknn = var_doubles(ncid, "pixel_knn_accuracy", 2);
    size_t nk;
    int var, pixels = nc_inq_varid(ncid, "pixel_nmi", &var) == NC_NOERR, *ks = k_values(ncid, &nk);
    for (int i = 0; i < 3; i++) {
        char pname[32];
        snprintf(pname, sizeof pname, "pixel_%s", names[i]);
        v[i] = var_doubles(ncid, names[i], S * nk);
        pv[i] = var_doubles(ncid, pname, nk);
    }
    const int rows = 1 + (int)((S + (size_t)pixels) * nk), cols = 7;
    char (*cells)[48] = SR_CALLOC((size_t)rows * cols, 48, "the table of measures");
    const char *head[7] = {"space", "K", "NMI", "purity", "ARI", "1-NN accuracy", "10-NN accuracy"};
    for (int j = 0; j < cols; j++) snprintf(cells[j], 48, "%s", head[j]);
    int row = 1;
    for (size_t s = 0; s <= S; s++) {
        if (s == S && !pixels) break;
        for (size_t q = 0; q < nk; q++, row++) {
            char (*c)[48] = cells + (size_t)row * cols;
            if (s < S) snprintf(c[0], 48, "phi, sigma %.4g", sig[s] * 255.0);
            else snprintf(c[0], 48, "pixels");
            snprintf(c[1], 48, "%d", ks[q]);
            for (int i = 0; i < 3; i++) snprintf(c[2 + i], 48, "%.3f", s < S ? v[i][s * nk + q] : pv[i][q]);
            snprintf(c[5], 48, "%.3f", s < S ? knn[s * 2] : pknn[0]);
            snprintf(c[6], 48, "%.3f", s < S ? knn[s * 2 + 1] : pknn[1]);
        }
    }
    table(r, "measures", "clusters and neighbours against the labels: phi beside the pixels (sigma in 0-255 units)",
          rows, cols, cells);
    /* how the neighbours and the pixels were measured at scale (docs/analysis.md) */
    char search[16] = "";
    long long queries = 0;
    int pdims = 0, psource = 0;
    if (sr_nc_get_text(ncid, NC_GLOBAL, "neighbour_search", search, sizeof search) == 0 && !strcmp(search, "sampled") &&
        nc_get_att_longlong(ncid, NC_GLOBAL, "knn_queries", &queries) == NC_NOERR)
        html(r, "<p>k-NN accuracy of a seeded sample of %lld images (cluster.queries), each against all %zu.</p>\n",
             queries, dim_len(ncid, "image"));
    if (pixels && sr_nc_get_ints(ncid, NC_GLOBAL, "pixel_dims", &pdims, 1) == 1 &&
        sr_nc_get_ints(ncid, NC_GLOBAL, "pixel_source_dims", &psource, 1) == 1 && pdims < psource)
        html(r, "<p>Pixels: %d per image, randomly projected to %d dimensions (Johnson-Lindenstrauss; cluster.pixel_dims).</p>\n",
             psource, pdims);
    for (int i = 0; i < 3; i++) free(v[i]), free(pv[i]);
    free(cells), free(sig), free(knn), free(pknn), free(ks);
}

/* The probe's test accuracy of each class (a column per space), folded
 * like the classes table: ImageNet has 1000. */
static void probe_classes(report *r, int ncid, size_t S, const double *sig, int pixels)
{
    const size_t C = dim_len(ncid, "class");
    const int rows = 1 + (int)C, cols = 2 + (int)S + pixels;
    double *acc = var_doubles(ncid, "probe_class_accuracy", S * C),
           *pacc = var_doubles(ncid, "pixel_probe_class_accuracy", pixels ? C : 0);
    char(*cells)[48] = SR_MALLOC((size_t)rows * cols * 48, "the probe's table of classes");
    snprintf(cells[0], 48, "label"), snprintf(cells[1], 48, "class");
    for (size_t s = 0; s < S; s++) snprintf(cells[2 + s], 48, "phi, sigma %.4g", sig[s] * 255.0);
    if (pixels) snprintf(cells[cols - 1], 48, "pixels");
    const int named = r->ds && r->ds->class_names && (size_t)r->ds->nclasses == C;
    for (size_t c = 0; c < C; c++) {
        char (*row)[48] = cells + (c + 1) * cols;
        snprintf(row[0], 48, "%zu", c);
        if (named) cell_text(row[1], r->ds->class_names[c]);
        else snprintf(row[1], 48, "%zu", c);
        for (size_t s = 0; s < S; s++) snprintf(row[2 + s], 48, "%.3f", acc[s * C + c]);
        if (pixels) snprintf(row[cols - 1], 48, "%.3f", pacc[c]);
    }
    html(r, "<details><summary>the probe's test accuracy per class</summary>\n");
    table(r, "probe_classes", "linear probe: test accuracy of each class's test images (nan: none)", rows, cols, cells);
    html(r, "</details>\n");
    free(cells), free(acc), free(pacc);
}

/* The linear probe's test accuracy per sigma beside the pixels', or the
 * note saying why it did not run. */
static void probe_table(report *r, int ncid)
{
    int var;
    char note[256] = "";
    if (nc_inq_varid(ncid, "probe_test_accuracy", &var) != NC_NOERR) {
        if (sr_nc_get_text(ncid, NC_GLOBAL, "probe_note", note, sizeof note) == 0) {
            html(r, "<p>Linear probe: ");
            escaped(r, note);
            html(r, "</p>\n");
        }
        return;
    }
    const size_t S = dim_len(ncid, "sigma");
    const int pixels = nc_inq_varid(ncid, "pixel_probe_test_accuracy", &var) == NC_NOERR;
    double *sig = var_doubles(ncid, "sigma", S), *test = var_doubles(ncid, "probe_test_accuracy", S),
           *train = var_doubles(ncid, "probe_train_accuracy", S),
           *ptest = var_doubles(ncid, "pixel_probe_test_accuracy", 1),
           *ptrain = var_doubles(ncid, "pixel_probe_train_accuracy", 1);
    const int rows = 1 + (int)S + pixels, cols = 3;
    char(*cells)[48] = SR_MALLOC((size_t)rows * cols * 48, "the probe's table");
    snprintf(cells[0], 48, "space"), snprintf(cells[1], 48, "test accuracy");
    snprintf(cells[2], 48, "training accuracy");
    for (int i = 1; i < rows; i++) {
        const size_t s = (size_t)i - 1;
        if (s < S) snprintf(cells[i * cols], 48, "phi, sigma %.4g", sig[s] * 255.0);
        else snprintf(cells[i * cols], 48, "pixels");
        snprintf(cells[i * cols + 1], 48, "%.3f", s < S ? test[s] : ptest[0]);
        snprintf(cells[i * cols + 2], 48, "%.3f", s < S ? train[s] : ptrain[0]);
    }
    long long ntrain = 0, ntest = 0;
    char path[SR_PATH_MAX], caption[160];
    nc_path(ncid, path, sizeof path);
    SR_NC(nc_get_att_longlong(ncid, NC_GLOBAL, "probe_train_images", &ntrain), path);
    SR_NC(nc_get_att_longlong(ncid, NC_GLOBAL, "probe_test_images", &ntest), path);
    snprintf(caption, sizeof caption,
             "linear probe: test accuracy (logistic regression trained on %lld images, tested on %lld others; sigma in "
             "0-255 units)", ntrain, ntest);
    table(r, "probe", caption, rows, cols, cells);
    probe_classes(r, ncid, S, sig, pixels);
    free(cells), free(sig), free(test), free(train), free(ptest), free(ptrain);
}

int sigma_index(int ncid, double sigma)
{
    const size_t n = dim_len(ncid, "sigma");
    double *v = var_doubles(ncid, "sigma", n);
    int at = -1;
    for (size_t i = 0; i < n && at < 0; i++)
        if (fabs(v[i] - sigma) < 1e-9) at = (int)i;
    free(v);
    return at;
}

/* stats.nc or clusters.nc, when made from the folder's phi.nc; a warning
 * in the page when they are left over from another one. */
static int open_analysis(report *r, const char *file)
{
    char path[SR_PATH_MAX + 64];
    int ncid = -1;
    if (!file_exists(r->conf->output_dir, file, path, sizeof path)) return -1;
    if (sr_made_from_phi(r->conf->output_dir, file, r->err, sizeof r->err)) {
        html(r, "<p class=\"warn\">Not shown: ");
        escaped(r, r->err);
        html(r, "</p>\n");
        return -1;
    }
    return nc_open(path, NC_NOWRITE, &ncid) == NC_NOERR ? ncid : -1;
}

/* recon.nc's rows: each target beside its samples, copied into the folder. */
static void reconstructions(report *r)
{
    char path[SR_PATH_MAX + 64], why[SR_PATH_MAX + 512];
    int ids[SR_RECON_NVARS];
    if (!file_exists(r->conf->output_dir, "recon.nc", path, sizeof path)) return;
    const int ncid = sr_recon_open(path, ids, why, sizeof why);
    if (ncid < 0) SR_FAIL("%s", why);
    char sampler[32] = "";
    sr_nc_get_text(ncid, NC_GLOBAL, "sampler", sampler, sizeof sampler);
    const size_t T = dim_len(ncid, "target"), S = dim_len(ncid, "sample"), A = dim_len(ncid, "asigma");
    double *err = var_doubles(ncid, "phi_error", A * T * S), *asig = var_doubles(ncid, "asigma", A);
    nc_close(ncid);
    html(r, "<h2>Samples of p(x | phi): the ");
    escaped(r, sampler);
    html(r, " sampler</h2>\n<p>Each row: the target (or a cluster's members), then %zu samples whose phi was pulled towards the target's.</p>\n",
         S);
    for (size_t t = 0; t < T; t++) {
        char from[SR_PATH_MAX + 96], to[2 * SR_PATH_MAX];
        char name[SR_RECON_NAME_LEN];
        sr_recon_target_name((int)t, name);
        snprintf(from, sizeof from, "%s/%s", r->conf->output_dir, name);
        snprintf(to, sizeof to, "%s/images/recon-%03zu.png", r->dir, t);
        FILE *in = fopen(from, "rb"), *out = in ? fopen(to, "wb") : NULL;
        if (!in || !out) {
            if (in) fclose(in);
            continue;
        }
        char buf[65536];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, in)) > 0) SR_CHECK_WRITE(fwrite(buf, 1, n, out) == n, to);
        fclose(in);
        SR_CHECK_WRITE(fclose(out) == 0, to);
        html(r, "<div class=\"row\"><img class=\"recon\" src=\"images/recon-%03zu.png\" alt=\"target %zu and its samples\"><span class=\"lab\">", t, t);
        for (size_t a = 0; a < A; a++) {
            double mean = 0.0;
            for (size_t j = 0; j < S; j++) mean += err[(a * T + t) * S + j] / S;
            html(r, "phi error %.3f at sigma %.4g<br>", mean, asig[a] * 255.0);
        }
        html(r, "</span></div>\n");
    }
    free(err), free(asig);
}

static void build(report *r, const char *model, double seconds)
{
    provenance(r, model, seconds);
    denoiser(r, model);
    reconstructions(r);
    const int stats_id = open_analysis(r, "stats.nc"), clusters_id = open_analysis(r, "clusters.nc");
    changes(r, clusters_id);
    if (clusters_id >= 0) {
        html(r, "<h2>What phi groups together</h2>\n");
        measures(r, clusters_id);
        probe_table(r, clusters_id);
    }
    sr_report_findings(r, stats_id);
    /* each sigma of either file, looked up by value in both */
    const int lead = stats_id >= 0 ? stats_id : clusters_id;
    const size_t S = lead >= 0 ? dim_len(lead, "sigma") : 0;
    double *sig = lead >= 0 ? var_doubles(lead, "sigma", S) : NULL;
    char phi_path[SR_PATH_MAX + 32];
    sr_phi_file phi;
    snprintf(phi_path, sizeof phi_path, "%s/phi.nc", r->conf->output_dir);
    const int have_phi = S && !sr_phi_open(phi_path, &phi, r->err, sizeof r->err);
    if (S && !have_phi) {
        html(r, "<p class=\"warn\">No maps of phi: ");
        escaped(r, r->err);
        html(r, "</p>\n");
        r->err[0] = '\0';
    }
    for (size_t s = 0; s < S; s++) {
        char label[64];
        snprintf(label, sizeof label, "sigma %.4g of 255", sig[s] * 255.0);
        html(r, "<h2>phi at %s</h2>\n", label);
        const int cs = clusters_id >= 0 ? sigma_index(clusters_id, sig[s]) : -1;
        if (have_phi) sr_report_map(r, &phi, clusters_id, sig[s], label);
        if (cs >= 0) grids(r, clusters_id, cs, label);
        if (stats_id >= 0) statistics(r, stats_id, (int)s, label);
    }
    if (have_phi) sr_phi_close(&phi);
    free(sig);
    if (stats_id >= 0) nc_close(stats_id);
    if (clusters_id >= 0) nc_close(clusters_id);
}

static const char style[] =
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right}"
    "caption{text-align:left;font-style:italic}figure{display:inline-block;margin:.5em}"
    ".grid .row,.row{display:flex;align-items:center;gap:3px;margin:3px 0}.lab{min-width:7em;font-size:.8em}"
    "img.t{width:56px;height:56px;image-rendering:pixelated;border:1px solid #ddd}.sep{width:1em}"
    "pre{font-size:.75em;background:#f6f6f6;padding:.5em}.warn{color:#a00}";

int stage_report(const semrep_conf *conf, semrep_comm *comm)
{
    report r = {.conf = conf};
    int status = 0;
    if (comm->rank == 0) {
        char model[SR_PATH_MAX + 32], page[SR_PATH_MAX + 128], *final = r.final;
        sr_model_checkpoint_path(conf, model, sizeof model);
        snprintf(r.final, sizeof r.final, "%s/report", conf->output_dir);
        sr_tmp_path(final, r.dir, sizeof r.dir);
        status = sr_model_finished(conf, r.err, sizeof r.err) == 1 ? 0 : -1; /* it describes the model */
        semrep_comm self;
        sr_comm_self(comm, &self);
        const char *subs[] = {"", "/tables", "/plots", "/images"};
        for (int i = 0; i < 4 && !status; i++) {
            snprintf(page, sizeof page, "%s%s", r.dir, subs[i]);
            status = sr_make_dirs(page, r.err, sizeof r.err);
        }
        if (!status) status = sr_data_open(&conf->dataset, conf->output_dir, &self, &r.ds, r.err, sizeof r.err);
        if (!status) {
            r.images = r.ds->count;
            r.thumb_done = SR_CALLOC((size_t)r.images, 1, "the thumbnails' marks");
            snprintf(page, sizeof page, "%s/index.html", r.dir);
            r.html = fopen(page, "w");
            SR_CHECK_WRITE(r.html, page);
            html(&r, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>semrep report</title>"
                     "<style>%s</style></head><body>\n", style);
            struct stat st;
            char phi[SR_PATH_MAX + 32];
            snprintf(phi, sizeof phi, "%s/phi.nc", conf->output_dir);
            const double seconds = stat(phi, &st) == 0 ? difftime(time(NULL), st.st_mtime) : 0.0;
            build(&r, model, seconds);
            html(&r, "</body></html>\n");
            SR_CHECK_WRITE(fclose(r.html) == 0, page);
            /* the complete folder replaces the last report's files; files semrep did not write stay */
            status = sr_outdir_replace(conf->output_dir, "report", r.dir, r.err, sizeof r.err);
            if (!status && r.record_tmp[0]) sr_outdir_commit(r.record_tmp, conf->output_dir, SR_REPORT_RECORD);
            if (!status) printf("report: %s/index.html\n", final);
        }
        sr_temp_remove(r.dir); /* what is left of the new folder: empty, or a failed report's */
        if (status && r.record_tmp[0]) sr_temp_remove(r.record_tmp);
        sr_dataset_close(r.ds);
        free(r.thumb_done);
    }
    if (sr_comm_any(comm, status)) return sr_comm_error(comm, 1, "%s", r.err[0] ? r.err : "report: rank 0 failed");
    return 0;
}
