/* semrep: the command line. `semrep run | stage | bench | info`. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "comm/comm.h"
#include "core/backend.h"
#include "core/check.h"

static void usage(FILE *out)
{
    fputs("usage: semrep COMMAND [ARGS] [--set KEY=VALUE]...\n"
          "  run CONF          run the stages the conf enables, in order\n"
          "  stage NAME CONF   run one stage (train, phi, stats, cluster, reconstruct, report)\n"
          "  bench [CONF]      measure the engine's passes against the machine's sgemm\n"
          "  info CONF|FILE    what a conf or a file of this project holds\n"
          "--set KEY=VALUE overrides one conf key (docs/conf.md); semrep COMMAND --help for each command.\n"
          "Exit status: 0 done, 1 failed, 2 bad command line.\n",
          out);
}

int sr_cli_args(int argc, char **argv, const char *const *options, int positional_min, int positional_max,
                const char *text, const semrep_comm *comm, sr_args *args, int *done)
{
    char err[256];
    *done = 0;
    int bad = sr_args_parse(argc, argv, options, args, err, sizeof err);
    if (!bad && args->help) {
        if (comm->rank == 0) fputs(text, stdout);
        *done = 1;
        return SR_EXIT_OK;
    }
    if (!bad && (args->npositional < positional_min || args->npositional > positional_max))
        bad = sr_report(err, sizeof err, "takes %d to %d arguments besides options, not %d", positional_min,
                        positional_max, args->npositional);
    if (bad) {
        sr_comm_error(comm, SR_EXIT_USAGE, "semrep %s: %s", argv[0], err);
        if (comm->rank == 0) fputs(text, stderr);
        return SR_EXIT_USAGE;
    }
    return SR_EXIT_OK;
}

int sr_cli_conf(const char *path, const sr_args *args, const semrep_comm *comm, semrep_conf *conf)
{
    char err[1024];
    if (sr_conf_load(conf, path, args->nsets, args->sets, err, sizeof err))
        return sr_comm_error(comm, SR_EXIT_FAILED, "%s", err);
    return SR_EXIT_OK;
}

int main(int argc, char **argv)
{
    sr_backend_cpu_prepare(argv);
    static const struct {
        const char *name;
        int (*run)(int, char **, semrep_comm *);
    } commands[] = {
        {"run", sr_cmd_run}, {"stage", sr_cmd_stage}, {"bench", sr_cmd_bench}, {"info", sr_cmd_info},
    };
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? SR_EXIT_USAGE : SR_EXIT_OK;
    }
    for (size_t c = 0; c < sizeof commands / sizeof *commands; c++) {
        if (strcmp(argv[1], commands[c].name)) continue;
        semrep_comm comm;
        sr_comm_init(&comm, &argc, &argv);
        const int status = commands[c].run(argc - 1, argv + 1, &comm);
        sr_comm_finalize(&comm);
        return status;
    }
    fprintf(stderr, "semrep: error: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return SR_EXIT_USAGE;
}
