/* NetCDF helpers: checked calls that name the file, attributes, and files
 * written under a temporary name and renamed into place when complete. */
#ifndef SEMREP_IO_NC_H
#define SEMREP_IO_NC_H

#include <stddef.h>

#include "core/check.h"

/* Every NetCDF call: on failure one line with the call, the file and NetCDF's reason. */
#define SR_NC(call, file) sr_nc_check((call), #call, (file), __FILE__, __LINE__)
void sr_nc_check(int status, const char *call, const char *file, const char *src, int line);

/* "PATH.tmp.PID": where a file (or folder) is written before it is complete;
 * registered as a temporary (core/check.h), so that a failure removes it. */
void sr_tmp_path(const char *path, char *tmp, size_t len);
/* Renames tmp to path (atomically, same folder) and forgets the temporary;
 * dies naming both on failure. */
void sr_commit_file(const char *tmp, const char *path);

/* Attributes of a variable (varid) or of the file (NC_GLOBAL). */
void sr_nc_put_text(int ncid, int varid, const char *name, const char *text, const char *file);
void sr_nc_put_ints(int ncid, int varid, const char *name, const int *values, size_t count, const char *file);
/* A text attribute (NC_CHAR or NC_STRING) into out; -1 if absent or not text. */
int sr_nc_get_text(int ncid, int varid, const char *name, char *out, size_t len);
/* An integer attribute of up to `cap` values; returns the count, -1 if absent or not integer. */
int sr_nc_get_ints(int ncid, int varid, const char *name, int *out, int cap);

/* One variable of a file format, a row of the format's table: the writer
 * defines the variable from it and the reader checks the variable against
 * it, so a format is written down once (docs/formats.md). */
typedef struct {
    const char *name;
    int type;            /* NC_FLOAT, NC_INT64, ... */
    const char *dims;    /* its dimensions' names, slowest first, separated by spaces */
    const char *units;   /* NULL: none */
    const char *meaning; /* one line, the `long_name` xarray shows (also kept as `meaning`) */
} sr_nc_var;

/* Defines each row (ids[i] = its id) and gives it its attributes, but for
 * the optional variables named in leave_out (space-separated; ids[i] = -1).
 * The rows' dimensions must be defined. */
void sr_nc_define_vars(int ncid, const sr_nc_var *vars, int n, const char *leave_out, int *ids, const char *file);
/* The same rows for one "space" of a file: each variable named prefix +
 * row name, with the lead dimension (e.g. "sigma"; NULL: none) before the
 * row's dimensions. clusters.nc holds phi's space (per sigma) and the
 * pixels' ("pixel_", without sigma) from one table. */
void sr_nc_define_space(int ncid, const sr_nc_var *vars, int n, const char *prefix, const char *lead, int *ids,
                        const char *file);

/* sr_nc_find_vars for one space's rows (named and dimensioned as
 * sr_nc_define_space makes them); `required` names rows without the prefix. */
int sr_nc_find_space(int ncid, const sr_nc_var *vars, int n, const char *prefix, const char *lead, const char *required,
                     int *ids, const char *file, char *err, size_t errlen);

/* Finds each row's variable (ids[i], or -1 when absent) and checks that a
 * present one has the row's type and dimensions; -1 with err naming the
 * file and the variable when one does not, and when a `required` row
 * (a space-separated list of names) is absent. */
int sr_nc_find_vars(int ncid, const sr_nc_var *vars, int n, const char *required, int *ids, const char *file,
                    char *err, size_t errlen);

/* The dimension of this length named "n<length>", defined on first use. */
int sr_nc_dim_of_length(int ncid, size_t length, const char *file);

#endif
