/* semrep info CONF|FILE: what a conf describes (its model, its data, its
 * checkpoint's state) or what a file of this project holds. */
#define _GNU_SOURCE /* mkdtemp */
#include <dirent.h>
#include <fnmatch.h>
#include <netcdf.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "cli/commands.h"
#include "io/files.h"
#include "io/checkpoint.h"
#include "io/files.h"
#include "io/manifest.h"
#include "io/nc.h"
#include "io/outdir.h"
#include "stages/data.h"
#include "stages/model.h"

static void print_shape(const sr_unet_shape *s, size_t parameters)
{
    char k[128], e[64], d[64];
    sr_format_ints(s->kernels, s->levels + 1, k, sizeof k);
    sr_format_ints(s->enc_convs, s->levels, e, sizeof e);
    sr_format_ints(s->dec_convs, s->levels, d, sizeof d);
    int bias[SR_MAX_LEVELS], any = 0;
    for (int b = 0; b < s->levels; b++) any |= bias[b] = s->upsample_bias[b];
    char ub[64] = "none";
    if (any) sr_format_ints(bias, s->levels, ub, sizeof ub);
    printf("  model: %d input channel(s), kernels %s, enc_convs %s, mid_convs %d, dec_convs %s\n", s->in_channels, k,
           e, s->mid_convs, d);
    printf("         norm %s, output %s, upsample bias %s, %zu parameters\n",
           s->norm == SR_NORM_BATCH ? "batch" : "layer", s->output == SR_OUTPUT_RESIDUAL ? "residual" : "clean", ub,
           parameters);
}

/* NetCDF-4 (HDF5) and classic NetCDF files begin with these bytes. */
static int is_netcdf(const char *path)
{
    unsigned char head[8] = {0};
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    const size_t n = fread(head, 1, sizeof head, f);
    fclose(f);
    return (n == 8 && !memcmp(head, "\x89HDF\r\n\x1a\n", 8)) || (n >= 4 && !memcmp(head, "CDF", 3));
}

static int info_checkpoint(const char *path, const semrep_comm *comm)
{
    char err[1024];
    sr_checkpoint_info info;
    if (sr_checkpoint_read_info(path, &info, err, sizeof err)) return sr_comm_error(comm, SR_EXIT_FAILED, "%s", err);
    /* A full load proves every variable present, finite and as checksummed. */
    sr_unet net;
    if (sr_unet_plan(&net, &info.shape, err, sizeof err)) return sr_comm_error(comm, SR_EXIT_FAILED, "%s: %s", path, err);
    sr_backend *cpu = sr_backend_cpu_new(0);
    sr_unet_alloc(&net, cpu);
    const int rc = sr_checkpoint_load(path, &net, err, sizeof err);
    if (!rc && comm->rank == 0) {
        printf("%s: semrep checkpoint, format version %d\n", path, info.version);
        print_shape(&info.shape, net.trainable_count);
        printf("  checksum %s (verified), %d variables, every value finite\n", info.checksum, net.nparams);
        if (info.source[0]) printf("  source: %s\n", info.source);
    }
    sr_unet_free(&net);
    sr_backend_free(cpu);
    return rc ? sr_comm_error(comm, SR_EXIT_FAILED, "%s", err) : SR_EXIT_OK;
}

/* XXH3 of a float variable's values: two files hold the same numbers when
 * these agree (how runs on different rank counts are compared). */
static int variable_digest(int ncid, const char *name, size_t *count, char out[17])
{
    int varid, ndims, dims[NC_MAX_VAR_DIMS];
    if (nc_inq_varid(ncid, name, &varid) != NC_NOERR || nc_inq_varndims(ncid, varid, &ndims) != NC_NOERR ||
        nc_inq_vardimid(ncid, varid, dims) != NC_NOERR)
        return -1;
    *count = 1;
    for (int d = 0; d < ndims; d++) {
        size_t len;
        nc_inq_dimlen(ncid, dims[d], &len);
        *count *= len;
    }
    float *values = sr_try_realloc(NULL, *count, sizeof(float), "a variable", NULL, 0);
    if (!values || nc_get_var_float(ncid, varid, values) != NC_NOERR) return free(values), -1;
    snprintf(out, 17, "%016llx", (unsigned long long)XXH3_64bits(values, sizeof(float) * *count));
    free(values);
    return 0;
}

static int info_phi(const char *path, int ncid, const semrep_comm *comm)
{
    char checksum[17] = "", data[2 * SR_PATH_MAX] = "", digest[17];
    size_t nsig = 0, nimg = 0, nch = 0, count;
    int dim;
    if (!nc_inq_dimid(ncid, "sigma", &dim)) nc_inq_dimlen(ncid, dim, &nsig);
    if (!nc_inq_dimid(ncid, "image", &dim)) nc_inq_dimlen(ncid, dim, &nimg);
    if (!nc_inq_dimid(ncid, "channel", &dim)) nc_inq_dimlen(ncid, dim, &nch);
    sr_nc_get_text(ncid, NC_GLOBAL, "checkpoint_checksum", checksum, sizeof checksum);
    sr_nc_get_text(ncid, NC_GLOBAL, "dataset", data, sizeof data);
    if (comm->rank != 0) return SR_EXIT_OK;
    printf("%s: semrep phi, %zu sigmas x %zu images x %zu channels\n", path, nsig, nimg, nch);
    double sigmas[SR_MAX_SIGMAS];
    int draws[SR_MAX_SIGMAS], var;
    if (nsig <= SR_MAX_SIGMAS && !nc_inq_varid(ncid, "sigma", &var) && !nc_get_var_double(ncid, var, sigmas) &&
        !nc_inq_varid(ncid, "draws", &var) && !nc_get_var_int(ncid, var, draws)) {
        printf("  sigma (of 255):");
        for (size_t s = 0; s < nsig; s++) printf(" %.4g (%d)", sigmas[s] * 255.0, draws[s]);
        printf("  (draws)\n");
    }
    printf("  data: %s\n  checkpoint checksum %s\n", data, checksum);
    if (!variable_digest(ncid, "phi", &count, digest)) printf("  phi values: %zu, digest %s\n", count, digest);
    if (!variable_digest(ncid, "block_mean", &count, digest)) printf("  block_mean values: %zu, digest %s\n", count, digest);
    return SR_EXIT_OK;
}

/* Any other file of this project: its format, dimensions and variables. */
static int info_generic(const char *path, int ncid, const char *format, const semrep_comm *comm)
{
    if (comm->rank != 0) return SR_EXIT_OK;
    int version = 0, ndims = 0, nvars = 0;
    sr_nc_get_ints(ncid, NC_GLOBAL, "format_version", &version, 1);
    nc_inq_ndims(ncid, &ndims);
    nc_inq_nvars(ncid, &nvars);
    printf("%s: %s, format version %d\n  dimensions:", path, format, version);
    for (int d = 0; d < ndims; d++) {
        char name[NC_MAX_NAME + 1];
        size_t len;
        nc_inq_dim(ncid, d, name, &len);
        printf(" %s %zu", name, len);
    }
    printf("\n  variables:\n");
    for (int v = 0; v < nvars; v++) {
        char name[NC_MAX_NAME + 1], meaning[256] = "";
        int nd, dims[NC_MAX_VAR_DIMS];
        nc_inq_var(ncid, v, name, NULL, &nd, dims, NULL);
        sr_nc_get_text(ncid, v, "meaning", meaning, sizeof meaning);
        printf("    %s(", name);
        for (int d = 0; d < nd; d++) {
            char dn[NC_MAX_NAME + 1];
            nc_inq_dimname(ncid, dims[d], dn);
            printf("%s%s", d ? ", " : "", dn);
        }
        printf(")%s%s", meaning[0] ? "  " : "", meaning);
        nc_type type;
        size_t count;
        char digest[17];
        nc_inq_vartype(ncid, v, &type);
        if ((type == NC_FLOAT || type == NC_DOUBLE) && !variable_digest(ncid, name, &count, digest))
            printf(" [digest %s]", digest);
        printf("\n");
    }
    return SR_EXIT_OK;
}

static int info_netcdf(const char *path, const semrep_comm *comm)
{
    int ncid;
    char format[64] = "";
    if (nc_open(path, NC_NOWRITE, &ncid) != NC_NOERR)
        return sr_comm_error(comm, SR_EXIT_FAILED, "%s looks like NetCDF but cannot be opened; it is damaged", path);
    const int known = !sr_nc_get_text(ncid, NC_GLOBAL, "format", format, sizeof format);
    if (known && !strcmp(format, "semrep-phi")) {
        const int status = info_phi(path, ncid, comm);
        nc_close(ncid);
        return status;
    }
    if (known && !strncmp(format, "semrep-", 7) && strcmp(format, SR_CHECKPOINT_FORMAT)) {
        const int status = info_generic(path, ncid, format, comm);
        nc_close(ncid);
        return status;
    }
    nc_close(ncid);
    if (known && !strcmp(format, SR_CHECKPOINT_FORMAT)) return info_checkpoint(path, comm);
    return sr_comm_error(comm, SR_EXIT_FAILED, "%s is a NetCDF file, not one of semrep's (format \"%s\")", path,
                        known ? format : "none");
}

/* Opens the data set (building a PNG folder's manifest if it must) and
 * says what it holds; a data set that cannot be opened is an error.
 * work_dir is a scratch folder: info writes nothing into output_dir. */
static int print_dataset(const char *name, const sr_dataset_conf *d, const char *work_dir, const semrep_comm *comm)
{
    sr_dataset *ds;
    char err[1024];
    if (sr_data_open(d, work_dir, comm, &ds, err, sizeof err)) return sr_comm_error(comm, SR_EXIT_FAILED, "%s: %s", name, err);
    if (comm->rank == 0) {
        printf("  %s: %s\n", name, ds->description);
        printf("         %ld images used, %dx%d, %d channel(s)", ds->count, ds->size, ds->size, ds->channels);
        if (ds->nclasses) {
            printf(", %d classes (", ds->nclasses);
            for (int c = 0; c < ds->nclasses && c < 6; c++) printf("%s%s", c ? ", " : "", ds->class_names[c]);
            printf("%s)", ds->nclasses > 6 ? ", ..." : "");
        } else {
            printf(", unlabelled");
        }
        printf("\n");
        if (ds->skipped) {
            char manifest[2 * SR_PATH_MAX];
            sr_manifest_path(work_dir, d->path, manifest, sizeof manifest);
            printf("         %ld bad images left out (a run lists them all in its output_dir's manifest):\n", ds->skipped);
            sr_manifest m;
            if (!sr_manifest_read(manifest, &m, err, sizeof err)) {
                for (long i = 0, shown = 0; i < m.count && shown < 5; i++)
                    if (m.entries[i].reason[0]) printf("           %s: %s\n", m.entries[i].name, m.entries[i].reason), shown++;
                if (ds->skipped > 5) printf("           ...\n");
                sr_manifest_free(&m);
            }
        }
    }
    sr_dataset_close(ds);
    return SR_EXIT_OK;
}

/* The scratch folder starts with links to output_dir's manifests and
 * uncompressed IDX copies, so that info reuses them without writing there (a
 * manifest brought up to date replaces its link, not the file, which the
 * scratch folder's record lists as its own). A link
 * that cannot be made only costs the time to build that file again. */
static void link_work_files(const char *output_dir, const char *scratch)
{
    static const char *const subs[] = {"", "/cache"};
    char from_dir[SR_PATH_MAX];
    if (!realpath(output_dir, from_dir)) return; /* no output folder yet: nothing to reuse */
    for (int i = 0; i < 2; i++) {
        char dir[SR_PATH_MAX + 16], to_dir[SR_PATH_MAX + 16];
        snprintf(dir, sizeof dir, "%s%s", from_dir, subs[i]);
        snprintf(to_dir, sizeof to_dir, "%s%s", scratch, subs[i]);
        DIR *d = opendir(dir);
        if (!d || (i && mkdir(to_dir, 0755) != 0)) {
            if (d) closedir(d);
            continue;
        }
        for (struct dirent *e; (e = readdir(d));) {
            if (e->d_name[0] == '.' || (!i && fnmatch("manifest-*.tsv", e->d_name, 0))) continue;
            char target[2 * SR_PATH_MAX], link[2 * SR_PATH_MAX];
            snprintf(target, sizeof target, "%s/%s", dir, e->d_name);
            snprintf(link, sizeof link, "%s/%s", to_dir, e->d_name);
            if (symlink(target, link) != 0) break;
            if (!i) sr_outdir_register(scratch, (const char *[]){e->d_name}, 1); /* the scratch copy's own */
        }
        closedir(d);
    }
}

static int info_conf(const char *path, const sr_args *args, semrep_comm *comm)
{
    semrep_conf conf;
    int status = sr_cli_conf(path, args, comm, &conf);
    if (status) return status;
    char err[1024], ckpt[SR_PATH_MAX + 32];
    const sr_backend *be = sr_stage_backend(&conf, comm, 1, err, sizeof err);
    sr_unet net;
    if (!be || sr_model_plan(&conf, be, conf.phi.batch, false, &net, err, sizeof err)) {
        sr_conf_free(&conf);
        return sr_comm_error(comm, SR_EXIT_FAILED, "%s", err);
    }
    sr_model_checkpoint_path(&conf, ckpt, sizeof ckpt);
    const int have_checkpoint = access(ckpt, F_OK) == 0;
    if (have_checkpoint) {
        sr_unet_alloc(&net, be);
        if (sr_checkpoint_load(ckpt, &net, err, sizeof err)) status = sr_comm_error(comm, SR_EXIT_FAILED, "%s", err);
    }
    if (comm->rank == 0) {
        printf("%s: semrep conf, output in %s, backend %s, seed %ld\n", conf.source, conf.output_dir, conf.backend,
               conf.seed);
        const sr_unet_shape shape = sr_conf_shape(&conf);
        print_shape(&shape, net.trainable_count);
        printf("         %.1f MiB of parameters; %.1f MiB of activations for a phi batch of %d\n",
               net.param_floats * 4.0 / 1048576.0,
               sr_unet_work_bytes(&net, conf.phi.batch, conf.dataset.size, conf.dataset.size, false) / 1048576.0,
               conf.phi.batch);
        if (!have_checkpoint) printf("  checkpoint: none yet at %s (the train stage makes it)\n", ckpt);
        else if (!status) printf("  checkpoint: %s, matches the conf, verified\n", ckpt);
        /* job_scripts/submit.sh reads this line to chain the train stage again */
        const int finished = have_checkpoint && !status ? sr_model_finished(&conf, err, sizeof err) : 1;
        if (finished != 1) printf("  training: %s: %s\n", finished ? "its state cannot be read" : "unfinished", err);
    }
    /* the data sets' manifest and uncompressed copies go to a scratch folder, removed after */
    char scratch[SR_PATH_MAX] = "";
    if (comm->rank == 0) {
        const char *tmp = getenv("TMPDIR");
        snprintf(scratch, sizeof scratch, "%s/semrep-info.XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(scratch)) scratch[0] = '\0';
    }
    if (comm->rank == 0 && scratch[0]) link_work_files(conf.output_dir, scratch);
    sr_comm_bcast(comm, scratch, sizeof scratch, 0);
    if (!status && !scratch[0])
        status = sr_comm_error(comm, SR_EXIT_FAILED, "cannot make a scratch folder in %s; set TMPDIR to a writable folder",
                               getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!status) status = print_dataset("analysis data", &conf.dataset, scratch, comm);
    if (!status) status = print_dataset("training data", &conf.train.dataset, scratch, comm);
    sr_comm_barrier(comm);
    if (comm->rank == 0 && scratch[0] && sr_remove_tree(scratch))
        fprintf(stderr, "semrep: note: could not remove the scratch folder %s\n", scratch);
    sr_unet_free(&net);
    sr_conf_free(&conf);
    return status;
}

int sr_cmd_info(int argc, char **argv, semrep_comm *comm)
{
    static const char usage[] =
        "usage: semrep info CONF|FILE [--set KEY=VALUE]...\n"
        "  a conf: its model (shape, parameters, memory), its checkpoint's state, its data\n"
        "  a file this project wrote (a checkpoint, ...): what it holds, verified\n";
    sr_args args;
    static const char *const options[] = {"--adopt!", NULL}; /* as run takes it; info writes nothing */
    int done, status = sr_cli_args(argc, argv, options, 1, 1, usage, comm, &args, &done);
    if (status || done) return status;
    const char *path = args.positional[0];
    if (access(path, R_OK) != 0)
        return sr_comm_error(comm, SR_EXIT_FAILED, "cannot read %s; check the path", path);
    char err[1024]; /* a FIFO would block the reading of its first bytes */
    if (sr_check_regular(path, "semrep info", err, sizeof err)) return sr_comm_error(comm, SR_EXIT_FAILED, "%s", err);
    return is_netcdf(path) ? info_netcdf(path, comm) : info_conf(path, &args, comm);
}
