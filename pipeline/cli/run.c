/* semrep run and semrep stage. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "stages/stage.h"

int sr_cmd_run(int argc, char **argv, semrep_comm *comm)
{
    static const char usage[] = "usage: semrep run CONF [--set KEY=VALUE]...\n";
    sr_args args;
    int done, status = sr_cli_args(argc, argv, NULL, usage, comm, &args, &done);
    if (status || done) return status;
    if (args.npositional != 1) {
        if (comm->rank == 0) fputs(usage, stderr);
        return SR_EXIT_USAGE;
    }
    semrep_conf conf;
    if ((status = sr_cli_conf(args.positional[0], &args, comm, &conf))) return status;
    if (comm->rank == 0) {
        printf("semrep run %s: %d rank(s), output in %s\n", conf.source, comm->size, conf.output_dir);
        printf("not built yet: the stages");
        for (int s = 0; s < sr_stage_count; s++)
            if (!sr_stages[s].run) printf(" %s", sr_stages[s].name);
        printf(".\nrunning what exists: the engine benchmark on the conf's model.\n\n");
        fflush(stdout);
    }
    sr_conf_free(&conf);
    char *bench_argv[SR_ARGS_MAX + 2] = {"bench", args.positional[0]};
    int bench_argc = 2;
    for (int i = 0; i < args.nsets && bench_argc + 2 <= SR_ARGS_MAX; i++) {
        bench_argv[bench_argc++] = "--set";
        bench_argv[bench_argc++] = args.sets[i];
    }
    return sr_cmd_bench(bench_argc, bench_argv, comm);
}

int sr_cmd_stage(int argc, char **argv, semrep_comm *comm)
{
    static const char usage[] =
        "usage: semrep stage NAME CONF [--set KEY=VALUE]...\n"
        "  NAME: train, denoise-eval, phi, stats, cluster, reconstruct or report\n";
    sr_args args;
    int done, status = sr_cli_args(argc, argv, NULL, usage, comm, &args, &done);
    if (status || done) return status;
    if (args.npositional != 2) {
        if (comm->rank == 0) fputs(usage, stderr);
        return SR_EXIT_USAGE;
    }
    const sr_stage *stage = sr_stage_find(args.positional[0]);
    if (!stage) {
        sr_cli_error(comm, SR_EXIT_USAGE, "unknown stage '%s'", args.positional[0]);
        if (comm->rank == 0) fputs(usage, stderr);
        return SR_EXIT_USAGE;
    }
    semrep_conf conf;
    if ((status = sr_cli_conf(args.positional[1], &args, comm, &conf))) return status;
    status = stage->run ? (stage->run(&conf, comm) ? SR_EXIT_FAILED : SR_EXIT_OK)
                        : sr_cli_error(comm, SR_EXIT_FAILED, "stage %s is not built yet", stage->name);
    sr_conf_free(&conf);
    return status;
}
