/* "What changed since the last run", for nightly runs over a growing data
 * set: every report records its images and their clusters in
 * <output_dir>/report-images.tsv (source name, label, the cluster at each
 * sigma and K; beside the report, whose size does not grow with the
 * images) and the run in tables/run.tsv; the next report reads the last one's
 * before replacing it and says which images came and went, how many phi
 * rows were computed or reused, and how far the clusters of the images
 * both runs saw moved (adjusted Rand index between the two clusterings). */
#define _GNU_SOURCE /* strdup, strtok_r */
#include <errno.h>
#include <math.h>
#include <netcdf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/check.h"
#include "io/nc.h"
#include "stages/measures.h"
#include "stages/phi_file.h"
#include "stages/report_page.h"

#define MAX_COLUMNS (64 * 16) /* sigma x K clusterings compared: the conf's most, phi.sigmas x cluster.k */
#define ADDED_SHOWN 24

typedef struct {
    int ncols;
    char col[MAX_COLUMNS][32];   /* "sigma 51 K 10" */
    long rows;
    char **source;               /* [rows] */
    int *cluster;                /* [rows][ncols] */
    long *order;                 /* rows sorted by source */
    char date[64], checkpoint[32], images[32], phi[32]; /* the run: when, its model, images, phi.nc's fingerprint */
    bool mismatch;               /* clusters.nc is not of these images: no clusterings listed */
    char damaged[256];           /* why the last report's image record is not compared with, or "" */
} listing;

static const listing *sort_by;
static int by_source(const void *a, const void *b)
{
    return strcmp(sort_by->source[*(const long *)a], sort_by->source[*(const long *)b]);
}

/* The row of `source` in a sorted listing, or -1. */
static long find(const listing *l, const char *source)
{
    long lo = 0, hi = l->rows - 1;
    while (lo <= hi) {
        const long mid = (lo + hi) / 2, at = l->order[mid];
        const int c = strcmp(l->source[at], source);
        if (!c) return at;
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

static void listing_free(listing *l)
{
    for (long i = 0; i < l->rows; i++) free(l->source[i]);
    free(l->source), free(l->cluster), free(l->order);
}

/* An integer field of images.tsv, whole, in [lo, hi); -1 when it is not. */
static int field_in(const char *field, long lo, long hi, long *value)
{
    char *end;
    errno = 0;
    *value = strtol(field, &end, 10);
    return errno || end == field || *end || *value < lo || *value >= hi ? -1 : 0;
}

/* A row of images.tsv (position, source, label, a cluster per column) into
 * row l->rows; 0, or -1 with why it is damaged. */
static int read_row(listing *l, char *line, const int *ks, char *why, size_t len)
{
    char *save = NULL, *field = strtok_r(line, "\t", &save);
    long v;
    int j = 0;
    for (; field; j++, field = strtok_r(NULL, "\t", &save)) {
        if (j == 0 && field_in(field, l->rows, l->rows + 1, &v))
            return snprintf(why, len, "the position is %.32s, not %ld", field, l->rows), -1;
        if (j == 1) l->source[l->rows] = SR_STRDUP(field, "the last report's image names");
        if (j >= 3 && j - 3 < l->ncols) {
            if (field_in(field, -1, ks[j - 3], &v)) /* -1: left out */
                return snprintf(why, len, "%.32s is not a cluster of %s", field, l->col[j - 3]), -1;
            l->cluster[l->rows * l->ncols + j - 3] = (int)v;
        }
    }
    if (j != 3 + l->ncols) return snprintf(why, len, "%d fields, not %d", j, 3 + l->ncols), -1;
    return 0;
}

/* The last report's image record and run.tsv; 0 rows when there is none.
 * A damaged record (edited, or cut) is not compared with at all: 0 rows and
 * the reason in l->damaged; this report replaces it. A report from before
 * the record moved out of report/ left it in report/tables/images.tsv. */
static void read_last(const report *r, listing *l)
{
    memset(l, 0, sizeof *l);
    char path[SR_PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/tables/run.tsv", r->final);
    FILE *f = fopen(path, "r");
    char line[8192];
    if (f) {
        if (fgets(line, sizeof line, f) && fgets(line, sizeof line, f)) /* header, then the run */
            sscanf(line, "%63[^\t]\t%31[^\t]\t%31[^\t]\t%31[^\t\n]", l->date, l->checkpoint, l->images, l->phi);
        fclose(f);
    }
    snprintf(path, sizeof path, "%s/" SR_REPORT_RECORD, r->conf->output_dir);
    if (!(f = fopen(path, "r"))) {
        snprintf(path, sizeof path, "%s/tables/images.tsv", r->final);
        if (!(f = fopen(path, "r"))) return;
    }
    int ks[MAX_COLUMNS]; /* each column's K, from its name "sigma S K k" */
    char why[160] = "", *big = SR_MALLOC(1 << 16, "a line of images.tsv"); /* the header's 1024 columns fit */
    long lines = 1;
    if (fgets(big, 1 << 16, f)) { /* position, source, label, then the clusterings */
        big[strcspn(big, "\n")] = 0;
        char *save = NULL, *field = strtok_r(big, "\t", &save);
        for (int j = 0; field && !why[0]; j++, field = strtok_r(NULL, "\t", &save)) {
            if (j < 3) continue;
            if (l->ncols == MAX_COLUMNS) snprintf(why, sizeof why, "more than %d clusterings", MAX_COLUMNS);
            else if (sscanf(field, "sigma %*g K %d", &ks[l->ncols]) != 1 || ks[l->ncols] < 1)
                snprintf(why, sizeof why, "%.32s is not a clustering", field);
            else snprintf(l->col[l->ncols++], sizeof l->col[0], "%s", field);
        }
    }
    long cap = 1024;
    l->source = SR_MALLOC(sizeof(char *) * cap, "the last run's images");
    l->cluster = SR_MALLOC(sizeof(int) * cap * (l->ncols ? l->ncols : 1), "the last run's clusters");
    while (!why[0] && fgets(big, 1 << 16, f)) {
        lines++;
        if (!strchr(big, '\n') && !feof(f)) {
            snprintf(why, sizeof why, "longer than %d characters", (1 << 16) - 1);
            break;
        }
        big[strcspn(big, "\n")] = 0;
        if (l->rows == cap) {
            cap *= 2;
            l->source = SR_REALLOC(l->source, cap, sizeof(char *), "the last report's image names");
            l->cluster = SR_REALLOC(l->cluster, cap * (l->ncols ? l->ncols : 1), sizeof(int), "the last report's clusters");
        }
        l->source[l->rows] = NULL;
        if (read_row(l, big, ks, why, sizeof why)) free(l->source[l->rows]);
        else l->rows++;
    }
    free(big);
    fclose(f);
    if (why[0]) { /* compare nothing rather than half */
        snprintf(l->damaged, sizeof l->damaged, "line %ld: %s", lines, why);
        for (long i = 0; i < l->rows; i++) free(l->source[i]);
        l->rows = 0;
    }
    l->order = SR_MALLOC(sizeof(long) * (l->rows ? l->rows : 1), "the last run's images");
    for (long i = 0; i < l->rows; i++) l->order[i] = i;
    sort_by = l;
    qsort(l->order, (size_t)l->rows, sizeof(long), by_source);
}

/* This run's listing: from the data set and clusters.nc's assignments. */
static void read_now(report *r, int clusters_id, listing *l)
{
    memset(l, 0, sizeof *l);
    l->rows = r->images;
    size_t S = 0, nk = 0;
    int var, *ks = NULL;
    char path[SR_PATH_MAX];
    if (clusters_id >= 0 && (var = var_of_rank(clusters_id, "assignment", 3)) >= 0) {
        nc_path(clusters_id, path, sizeof path);
        S = dim_len(clusters_id, "sigma"), ks = k_values(clusters_id, &nk);
        if (S > MAX_COLUMNS || S * nk > MAX_COLUMNS)
            SR_FAIL("%s: %zu sigmas x %zu K values, more than the %d clusterings a conf can ask for; make it again "
                    "(delete it and run semrep run)", path, S, nk, MAX_COLUMNS);
        /* clusters.nc of other images (the data set changed since): none */
        if (dim_len(clusters_id, "image") != (size_t)l->rows) S = nk = 0, l->mismatch = true;
    }
    l->ncols = (int)(S * nk);
    l->source = SR_MALLOC(sizeof(char *) * (l->rows ? l->rows : 1), "the images");
    l->cluster = SR_MALLOC(sizeof(int) * (l->rows ? l->rows : 1) * (l->ncols ? l->ncols : 1), "the clusters");
    double *sig = var_doubles(clusters_id, "sigma", S);
    int *one = SR_MALLOC(sizeof(int) * (l->rows ? l->rows : 1), "one clustering");
    for (size_t s = 0; s < S; s++)
        for (size_t q = 0; q < nk; q++) {
            const int c = (int)(s * nk + q);
            snprintf(l->col[c], sizeof l->col[0], "sigma %.4g K %d", sig[s] * 255.0, ks[q]);
            const size_t start[3] = {s, q, 0}, count[3] = {1, 1, (size_t)l->rows};
            SR_NC(nc_get_vara_int(clusters_id, var, start, count, one), path);
            for (long i = 0; i < l->rows; i++) {
                if (one[i] < -1 || one[i] >= ks[q]) /* -1: left out */
                    SR_FAIL("%s: assignment holds cluster %d where K is %d; make it again (delete it and run "
                            "semrep run)", path, one[i], ks[q]);
                l->cluster[i * l->ncols + c] = one[i];
            }
        }
    free(one), free(sig), free(ks);
    for (long i = 0; i < l->rows; i++) {
        char name[SR_NAME_MAX];
        sr_dataset_name(r->ds, i, name, sizeof name);
        for (char *p = name; *p; p++)
            if (*p == '\t' || *p == '\n') *p = ' '; /* the listing's separators */
        l->source[i] = SR_STRDUP(name, "the images' names");
    }
    l->order = SR_MALLOC(sizeof(long) * (l->rows ? l->rows : 1), "the images");
    for (long i = 0; i < l->rows; i++) l->order[i] = i;
    sort_by = l;
    qsort(l->order, (size_t)l->rows, sizeof(long), by_source);
}

static void write_now(report *r, const listing *l, const char *when, const char *checkpoint, const char *phi)
{
    char path[SR_PATH_MAX + 128];
    snprintf(path, sizeof path, "%s/" SR_REPORT_RECORD, r->conf->output_dir);
    sr_tmp_path(path, r->record_tmp, sizeof r->record_tmp);
    FILE *f = fopen(r->record_tmp, "w");
    SR_CHECK_WRITE(f, r->record_tmp);
    fprintf(f, "position\tsource\tlabel");
    for (int c = 0; c < l->ncols; c++) fprintf(f, "\t%s", l->col[c]);
    fputc('\n', f);
    for (long i = 0; i < l->rows; i++) {
        fprintf(f, "%ld\t%s\t%d", i, l->source[i], sr_dataset_label(r->ds, i));
        for (int c = 0; c < l->ncols; c++) fprintf(f, "\t%d", l->cluster[i * l->ncols + c]);
        fputc('\n', f);
    }
    SR_CHECK_WRITE(fclose(f) == 0, r->record_tmp);
    snprintf(path, sizeof path, "%s/tables/run.tsv", r->dir);
    f = fopen(path, "w");
    SR_CHECK_WRITE(f, path);
    fprintf(f, "date\tcheckpoint\timages\tphi_fingerprint\n%s\t%s\t%ld\t%s\n", when, checkpoint, l->rows, phi);
    SR_CHECK_WRITE(fclose(f) == 0, path);
}

/* The agreement (ARI) of each clustering both runs made, over the images both saw. */
static void cluster_agreement(report *r, const listing *last, const listing *now, const long *last_row, long kept)
{
    int rows = 1;
    char (*cells)[48] = SR_CALLOC((size_t)(MAX_COLUMNS + 1) * 2, 48, "the table of changes");
    snprintf(cells[0], 48, "clustering"), snprintf(cells[1], 48, "ARI, last run vs now");
    int *a = SR_MALLOC(sizeof(int) * (kept ? kept : 1), "clusters"), *b = SR_MALLOC(sizeof(int) * (kept ? kept : 1), "clusters");
    for (int c = 0; c < now->ncols; c++) {
        int lc = -1;
        for (int j = 0; j < last->ncols && lc < 0; j++)
            if (!strcmp(last->col[j], now->col[c])) lc = j;
        if (lc < 0) continue;
        long n = 0;
        for (long i = 0; i < now->rows; i++)
            if (last_row[i] >= 0) {
                a[n] = last->cluster[last_row[i] * last->ncols + lc];
                b[n++] = now->cluster[i * now->ncols + c];
            }
        snprintf(cells[rows * 2], 48, "%s", now->col[c]);
        snprintf(cells[rows * 2 + 1], 48, "%.3f", sr_ari_labels(a, b, n));
        rows++;
    }
    if (!kept) html(r, "<p>No image is in both runs: there is no clustering to compare.</p>\n");
    else if (rows > 1)
        table(r, "changes", "agreement of the clusters of the images in both runs (1: the same partition; "
                            "near 0: as unrelated as chance)", rows, 2, cells);
    free(a), free(b), free(cells);
}

/* The first images this run has that the last did not. */
static void added_images(report *r, const listing *now, const long *last_row, long added)
{
    if (!added) return;
    if (added > ADDED_SHOWN) html(r, "<h3>Added images (the first %d)</h3>\n", ADDED_SHOWN);
    else html(r, "<h3>Added images</h3>\n");
    html(r, "<div class=\"grid\"><div class=\"row\">");
    int shown = 0;
    for (long i = 0; i < now->rows && shown < ADDED_SHOWN; i++)
        if (last_row[i] < 0) {
            if (shown && shown % GRID_MEMBERS == 0) html(r, "</div><div class=\"row\">");
            image_cell(r, i, "added");
            shown++;
        }
    html(r, "</div></div>\n");
}

/* The line that says what the last report had and what this one has. */
static void counts(report *r, const listing *last, const listing *now, long kept, long added, const char *checkpoint,
                   const char *fingerprint, const char *phi_path)
{
    char reused[32] = "", computed[32] = "";
    sr_file_text_attr(phi_path, "images_reused", reused, sizeof reused);
    sr_file_text_attr(phi_path, "images_computed", computed, sizeof computed);
    html(r, "<p>The last report: ");
    escaped(r, last->date);
    html(r, ", %ld images%s. Now %ld images: <b>%ld added</b>, <b>%ld removed</b>, %ld in both.", last->rows,
         strcmp(last->checkpoint, checkpoint) ? " from <b>another model</b>" : "", now->rows, added,
         last->rows - kept, kept);
    if (last->phi[0] && !strcmp(last->phi, fingerprint)) html(r, " phi.nc is unchanged since the last report.");
    else if (computed[0]) {
        html(r, " phi was computed for ");
        escaped(r, computed);
        html(r, " images and copied for ");
        escaped(r, reused[0] ? reused : "0");
        html(r, ".");
    }
    html(r, "</p>\n");
}

void changes(report *r, int clusters_id)
{
    listing last, now;
    read_last(r, &last);
    read_now(r, clusters_id, &now);
    char when[64], checkpoint[32] = "", fingerprint[32] = "";
    const time_t t = time(NULL);
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", gmtime(&t));
    char phi_path[SR_PATH_MAX + 32];
    snprintf(phi_path, sizeof phi_path, "%s/phi.nc", r->conf->output_dir);
    sr_file_text_attr(phi_path, "checkpoint_checksum", checkpoint, sizeof checkpoint);
    sr_file_text_attr(phi_path, "fingerprint", fingerprint, sizeof fingerprint);
    write_now(r, &now, when, checkpoint, fingerprint);

    html(r, "<h2>What changed since the last run</h2>\n");
    if (last.damaged[0]) {
        fprintf(stderr, "semrep: note: the last report's image record in %s is damaged (%s); this report does not "
                        "compare with it and replaces it\n", r->conf->output_dir, last.damaged);
        html(r, "<p class=\"warn\">The last report's image record (" SR_REPORT_RECORD ") is damaged (");
        escaped(r, last.damaged);
        html(r, "): this report does not compare with it, and replaces it.</p>\n");
    }
    if (now.mismatch)
        html(r, "<p class=\"warn\">clusters.nc is not of the images the data set has now: run the cluster stage "
                "again (semrep run does); clusters are not compared.</p>\n");
    if (!last.rows) {
        if (!last.damaged[0])
            html(r, "<p>No earlier report in this folder: nothing to compare with. The next run will compare "
                    "itself with this one (its record: " SR_REPORT_RECORD " beside the report folder).</p>\n");
        listing_free(&last), listing_free(&now);
        return;
    }
    long kept = 0, added = 0;
    long *last_row = SR_MALLOC(sizeof(long) * (now.rows ? now.rows : 1), "matching the last run");
    for (long i = 0; i < now.rows; i++) {
        last_row[i] = find(&last, now.source[i]);
        if (last_row[i] >= 0) kept++;
        else added++;
    }
    counts(r, &last, &now, kept, added, checkpoint, fingerprint, phi_path);
    cluster_agreement(r, &last, &now, last_row, kept); /* how far the clusters of the images both runs saw moved */
    added_images(r, &now, last_row, added);
    free(last_row);
    listing_free(&last), listing_free(&now);
}
