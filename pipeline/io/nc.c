#define _POSIX_C_SOURCE 200809L /* strtok_r */
#include "io/nc.h"

#include <errno.h>
#include <netcdf.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/statvfs.h>
#include <unistd.h>

/* Whether a failed NetCDF call on file came from a full disk: only a write
 * can (files are written under a .tmp. name). NetCDF reports one as an HDF5
 * or I/O error: errno still says ENOSPC in a serial write, but not after a
 * parallel one, where another rank's write failed, so less than 1 MiB left
 * in the file's folder counts as one too. */
static bool failed_on_full_disk(const char *file)
{
    if (!strstr(file, ".tmp.")) return false;
    if (sr_disk_full(errno)) return true;
    char folder[4200];
    snprintf(folder, sizeof folder, "%s", file);
    char *slash = strrchr(folder, '/');
    if (slash) *slash = '\0';
    struct statvfs fs;
    return statvfs(slash ? folder : ".", &fs) == 0 && (double)fs.f_bavail * (double)fs.f_frsize < 1048576.0;
}

void sr_nc_check(int status, const char *call, const char *file, const char *src, int line)
{
    if (status == NC_NOERR) return;
    char why[4200];
    if (failed_on_full_disk(file))
        sr_die(src, line, "%s: %s failed: %s", file, call, sr_write_reason(ENOSPC, file, NULL, why, sizeof why));
    sr_die(src, line, "%s: %s failed: %s; check that the file is a complete NetCDF-4 file and the disk has room", file,
           call, nc_strerror(status));
}

void sr_tmp_path(const char *path, char *tmp, size_t len)
{
    const int n = snprintf(tmp, len, "%s.tmp.%ld", path, (long)getpid());
    SR_CHECK(n > 0 && (size_t)n < len, "path too long: %s", path);
    sr_temp_add(tmp);
}

void sr_commit_file(const char *tmp, const char *path)
{
    /* on the disk before it takes the final name: a crash leaves the old
     * file or the new one, never an empty one */
    const int fd = open(tmp, O_RDONLY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    if (rename(tmp, path) != 0) {
        char why[4200];
        SR_FAIL("cannot rename %s to %s: %s", tmp, path, sr_write_reason(errno, path, "check the folder's permissions", why, sizeof why));
    }
    sr_temp_forget(tmp);
}

void sr_nc_put_text(int ncid, int varid, const char *name, const char *text, const char *file)
{
    SR_NC(nc_put_att_text(ncid, varid, name, strlen(text), text), file);
}

void sr_nc_put_ints(int ncid, int varid, const char *name, const int *values, size_t count, const char *file)
{
    SR_NC(nc_put_att_int(ncid, varid, name, NC_INT, count, values), file);
}

int sr_nc_get_text(int ncid, int varid, const char *name, char *out, size_t len)
{
    nc_type type;
    size_t n;
    if (nc_inq_att(ncid, varid, name, &type, &n) != NC_NOERR) return -1;
    if (type == NC_CHAR) {
        if (n >= len) return -1;
        if (nc_get_att_text(ncid, varid, name, out) != NC_NOERR) return -1;
        out[n] = '\0';
        return 0;
    }
    if (type == NC_STRING && n == 1) {
        char *s = NULL;
        if (nc_get_att_string(ncid, varid, name, &s) != NC_NOERR) return -1;
        const int fits = strlen(s) < len;
        if (fits) strcpy(out, s);
        nc_free_string(1, &s);
        return fits ? 0 : -1;
    }
    return -1;
}

int sr_nc_get_ints(int ncid, int varid, const char *name, int *out, int cap)
{
    nc_type type;
    size_t n;
    if (nc_inq_att(ncid, varid, name, &type, &n) != NC_NOERR) return -1;
    const int integral = type == NC_BYTE || type == NC_UBYTE || type == NC_SHORT || type == NC_USHORT ||
                         type == NC_INT || type == NC_UINT || type == NC_INT64 || type == NC_UINT64;
    if (!integral || n > (size_t)cap) return -1;
    if (nc_get_att_int(ncid, varid, name, out) != NC_NOERR) return -1;
    return (int)n;
}

int sr_nc_dim_of_length(int ncid, size_t length, const char *file)
{
    char name[32];
    int dim;
    snprintf(name, sizeof name, "n%zu", length);
    if (nc_inq_dimid(ncid, name, &dim) == NC_NOERR) return dim;
    SR_NC(nc_def_dim(ncid, name, length, &dim), file);
    return dim;
}

/* The ids of a row's dimensions; their count, or -1 when one is not defined. */
static int row_dims(int ncid, const char *names, int ids[NC_MAX_VAR_DIMS])
{
    char copy[256];
    snprintf(copy, sizeof copy, "%s", names);
    int n = 0;
    for (char *save = NULL, *tok = strtok_r(copy, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        if (n == NC_MAX_VAR_DIMS || nc_inq_dimid(ncid, tok, &ids[n]) != NC_NOERR) return -1;
        n++;
    }
    return n;
}

static bool listed(const char *list, const char *name);

void sr_nc_define_vars(int ncid, const sr_nc_var *vars, int n, const char *leave_out, int *ids, const char *file)
{
    for (int i = 0; i < n; i++) {
        int dims[NC_MAX_VAR_DIMS];
        ids[i] = -1;
        if (listed(leave_out, vars[i].name)) continue;
        const int ndims = row_dims(ncid, vars[i].dims, dims);
        SR_CHECK(ndims >= 0, "%s: a dimension of the variable %s (%s) is not defined (a bug in semrep)", file,
                 vars[i].name, vars[i].dims);
        SR_NC(nc_def_var(ncid, vars[i].name, vars[i].type, ndims, dims, &ids[i]), file);
        if (vars[i].meaning) {
            sr_nc_put_text(ncid, ids[i], "long_name", vars[i].meaning, file);
            sr_nc_put_text(ncid, ids[i], "meaning", vars[i].meaning, file);
        }
        if (vars[i].units) sr_nc_put_text(ncid, ids[i], "units", vars[i].units, file);
    }
}

/* A space's row: the name prefixed, the lead dimension first. */
static sr_nc_var space_row(const sr_nc_var *var, const char *prefix, const char *lead, char *name, char *dims,
                           const char *file)
{
    SR_CHECK(snprintf(name, NC_MAX_NAME + 1, "%s%s", prefix, var->name) <= NC_MAX_NAME &&
                 snprintf(dims, 256, "%s%s%s", lead ? lead : "", lead && var->dims[0] ? " " : "", var->dims) < 256,
             "%s: the variable %s%s's name or dimensions are too long (a bug in semrep)", file, prefix, var->name);
    sr_nc_var row = *var;
    row.name = name, row.dims = dims;
    return row;
}

void sr_nc_define_space(int ncid, const sr_nc_var *vars, int n, const char *prefix, const char *lead, int *ids,
                        const char *file)
{
    for (int i = 0; i < n; i++) {
        char name[NC_MAX_NAME + 1], dims[256];
        const sr_nc_var row = space_row(&vars[i], prefix, lead, name, dims, file);
        sr_nc_define_vars(ncid, &row, 1, "", &ids[i], file);
    }
}

int sr_nc_find_space(int ncid, const sr_nc_var *vars, int n, const char *prefix, const char *lead, const char *required,
                     int *ids, const char *file, char *err, size_t errlen)
{
    for (int i = 0; i < n; i++) {
        char name[NC_MAX_NAME + 1], dims[256];
        const sr_nc_var row = space_row(&vars[i], prefix, lead, name, dims, file);
        if (sr_nc_find_vars(ncid, &row, 1, listed(required, vars[i].name) ? name : "", &ids[i], file, err, errlen))
            return -1;
    }
    return 0;
}

static bool listed(const char *list, const char *name)
{
    const size_t n = strlen(name);
    for (const char *at = list; at && (at = strstr(at, name)); at += n)
        if ((at == list || at[-1] == ' ') && (at[n] == ' ' || at[n] == '\0')) return true;
    return false;
}

int sr_nc_find_vars(int ncid, const sr_nc_var *vars, int n, const char *required, int *ids, const char *file,
                    char *err, size_t errlen)
{
    for (int i = 0; i < n; i++) {
        ids[i] = -1;
        if (nc_inq_varid(ncid, vars[i].name, &ids[i]) != NC_NOERR) {
            ids[i] = -1;
            if (listed(required, vars[i].name))
                SR_BAD("%s lacks the variable %s; it is damaged or not semrep's: make it again", file, vars[i].name);
            continue;
        }
        int want[NC_MAX_VAR_DIMS], have[NC_MAX_VAR_DIMS], ndims = 0;
        nc_type type;
        const int nwant = row_dims(ncid, vars[i].dims, want);
        bool same = nc_inq_vartype(ncid, ids[i], &type) == NC_NOERR && type == vars[i].type &&
                    nc_inq_varndims(ncid, ids[i], &ndims) == NC_NOERR && ndims == nwant &&
                    nc_inq_vardimid(ncid, ids[i], have) == NC_NOERR;
        for (int d = 0; same && d < ndims; d++) same = have[d] == want[d];
        if (!same)
            SR_BAD("%s: the variable %s is not of the type and dimensions (%s) semrep writes; the file is damaged: make it again",
                   file, vars[i].name, vars[i].dims);
    }
    return 0;
}
