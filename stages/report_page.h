/* The report's page under construction and the helpers that write into it,
 * shared by report.c (the sections on this run) and report_changes.c (what
 * changed since the last run). */
#ifndef SEMREP_STAGES_REPORT_PAGE_H
#define SEMREP_STAGES_REPORT_PAGE_H

#include <stddef.h>
#include <stdio.h>

#include "io/conf.h"
#include "io/dataset.h"
#include "stages/phi_file.h"

#define GRID_MEMBERS 12 /* pictures in one row of a grid */

typedef struct {
    const semrep_conf *conf;
    char dir[SR_PATH_MAX + 64];   /* the folder being built */
    char final[SR_PATH_MAX + 32]; /* where it goes: <output_dir>/report, the last run's until then */
    FILE *html;
    sr_dataset *ds;
    char *thumb_done;             /* [images] a thumbnail is written */
    long images;
    char record_tmp[SR_PATH_MAX + 64]; /* this run's image record, committed beside the report once it is in place */
    char err[2048];
} report;

/* The report's record of its images and their clusters, one line an image,
 * for the next report to compare with: kept beside report/, not in it, so
 * the report folder does not grow with the images. */
#define SR_REPORT_RECORD "report-images.tsv"

void html(report *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* HTML element content, escaped (io/text_escape.h); attribute values use sr_html_attr. */
void escaped(report *r, const char *text);
/* A table, both in the page and as tables/NAME.csv. cells: rows x cols strings. */
void table(report *r, const char *name, const char *caption, int rows, int cols, char (*cells)[48]);
/* plots/NAME.dat, open for writing; `path` gets the name gnuplot, in that
 * folder, uses. Then plot() runs gnuplot on `script` (which names the data
 * by that name) into plots/NAME.png and shows it in the page, with `alt`. */
FILE *data_file(report *r, const char *name, char *path, size_t len);
void plot(report *r, const char *name, const char *alt, const char *script);
/* Image `position` of the data set as a thumbnail, titled. */
void image_cell(report *r, long position, const char *title);
/* A NetCDF variable as doubles (zeros when absent; a file whose variable does
 * not hold `count` values is refused, naming it); a dimension's length (0
 * when absent); the file's path, for messages. */
double *var_doubles(int ncid, const char *name, size_t count);
size_t dim_len(int ncid, const char *name);
void nc_path(int ncid, char *path, size_t len);
/* The id of a variable that must have `rank` dimensions, or -1 when absent;
 * a file where it has another rank is refused, naming it. */
int var_of_rank(int ncid, const char *name, int rank);
/* clusters.nc's K values (count of them in *count), each checked to be 1 to
 * the file's number of clusters (and 100000, cluster.k's most): a file that says otherwise is refused. */
int *k_values(int ncid, size_t *count);

/* The index of a sigma in a file's sigma variable, or -1. */
int sigma_index(int ncid, double sigma);

/* The 2-D map of phi at `sigma` (report_map.c; f: the folder's phi.nc,
 * clusters_id: clusters.nc or -1), under its heading, with its data file. */
void sr_report_map(report *r, const sr_phi_file *f, int clusters_id, double sigma, const char *label);

/* "What changed since the last run": compares this run's images and
 * clusters (clusters_id: clusters.nc, or -1) with the ones the last report
 * in the folder recorded, and records this run's for the next
 * (SR_REPORT_RECORD, written to r->record_tmp, and tables/run.tsv). */
void changes(report *r, int clusters_id);

/* "The paper's findings, checked" (report_findings.c): one line each, from
 * stats.nc (stats_id, or -1) and recon.nc, saying whether this run shows it. */
void sr_report_findings(report *r, int stats_id);

#endif
